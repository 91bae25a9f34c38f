//! Bodies of the HTTP directory API (`GET /api/spaces`, `GET /api/spaces/{id}`).

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, SpaceId, SpaceState};

/// One line of the live directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SpaceSummary {
    pub id: SpaceId,
    pub title: String,
    /// The host's display name.
    pub host: String,
    #[serde(default)]
    pub topics: Vec<String>,
    pub listeners: u32,
    /// The host's account handle, when the host is signed in (what a follow is keyed by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_handle: Option<String>,
    /// The names of everyone on the mic besides the host, in listing order.
    // `default` last: optional in the generated TypeScript too, as on the wire.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub speakers: Vec<String>,
}

/// One space, live or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceDetails {
    pub id: SpaceId,
    pub title: String,
    pub host: String,
    #[serde(default)]
    pub topics: Vec<String>,
    pub state: SpaceState,
    pub listeners: u32,
    /// Seconds since the Unix epoch.
    pub created_at: i64,
    /// Seconds since the Unix epoch; set once the space has ended.
    pub ended_at: Option<i64>,
}

/// The body of every HTTP error: a stable code the UI can match on, and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// `POST /api/auth/challenge`: a device asks for something to sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChallengeRequest {
    /// The device's Ed25519 public key, 32 bytes in unpadded base64url.
    pub public_key: String,
}

/// The answer to [`ChallengeRequest`]: sign it within `expires_at` (Unix seconds), once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub challenge: String,
    pub expires_at: i64,
}

/// `POST /api/accounts`: a new account for the device that signed `challenge` with the text
/// `confab-auth-v1\nregister\n<challenge>\n<handle in lower case>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    pub handle: String,
    pub display_name: String,
    pub challenge: String,
    /// The Ed25519 signature, 64 bytes in unpadded base64url.
    pub signature: String,
}

/// `POST /api/auth/sign-in`: the device signed `confab-auth-v1\nsign-in\n<challenge>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInRequest {
    pub challenge: String,
    pub signature: String,
}

/// A user as others see them. The avatar is a small PNG or JPEG in standard base64.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Profile {
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub avatar: Option<String>,
}

/// A successful registration or sign-in: send `token` as `Authorization: Bearer <token>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: Profile,
    pub token: String,
    pub expires_at: i64,
}

/// `PUT /api/me`: the whole new profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileUpdate {
    pub display_name: String,
    #[serde(default)]
    pub bio: String,
    /// Standard base64 of a PNG or JPEG of at most 64 KiB, or none.
    #[serde(default)]
    pub avatar: Option<String>,
}

/// `POST /api/me/devices`: register another device's key for the signed-in account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddDeviceRequest {
    pub public_key: String,
}

/// `POST /api/reports` (signed in): report a user (`kind` "user", `target` a handle) or a space
/// (`kind` "space", `target` its id) to the server's operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub kind: String,
    pub target: String,
    pub reason: String,
}

/// The answer to [`ReportRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportFiled {
    pub id: i64,
}

/// `POST /api/schedules` (signed in): a space to start at `starts_at` (Unix seconds, within
/// 30 days).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRequest {
    pub title: String,
    #[serde(default)]
    pub topics: Vec<String>,
    pub starts_at: i64,
}

/// A scheduled space. `id` is also the id of the live space when its host starts it; `state` is
/// `scheduled`, `live` or `cancelled`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Scheduled {
    pub id: String,
    pub host: String,
    pub title: String,
    pub topics: Vec<String>,
    pub starts_at: i64,
    pub state: String,
}
