//! What crosses the desktop app's IPC boundary (Tauri commands and events). The web UI's
//! TypeScript types are generated from these, so the UI never guesses a shape.
//!
//! IPC types use camelCase field names (the UI's convention); the nested wire types
//! ([`SpaceSummary`], [`SpaceInfo`], ...) keep their wire names.

use serde::{Deserialize, Serialize};

use crate::{
    EndReason, ErrorCode, ParticipantId, ParticipantInfo, Role, SpaceId, SpaceInfo, SpaceSummary,
};

/// Everything the UI needs to draw itself from scratch (on start or after a reload).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct AppState {
    /// The profile this instance runs as (`confab --profile NAME`).
    pub profile: String,
    /// The server in use.
    pub server_url: String,
    /// Whether that server is the one embedded in this app.
    pub embedded_server: bool,
    /// Whether signaling is connected right now.
    pub connected: bool,
    pub display_name: String,
    /// Live spaces, busiest first.
    pub live: Vec<SpaceSummary>,
    /// Followed hosts with what is known of them, even offline.
    pub followed: Vec<FollowedHost>,
    /// The space this instance is in, if any.
    pub current: Option<CurrentSpace>,
}

/// A followed host as the UI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct FollowedHost {
    pub host: String,
    /// The host's live space right now, if any.
    pub live_space: Option<SpaceSummary>,
    /// The title of the host's most recent space seen (live or ended).
    pub last_title: Option<String>,
    /// When the host was last seen live (seconds since the Unix epoch).
    pub last_live_at: Option<i64>,
}

/// The space this instance is in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct CurrentSpace {
    pub space: SpaceInfo,
    pub role: Role,
    /// Whether our microphone is muted (only meaningful for a speaker).
    pub muted: bool,
    /// Whether media (audio) is connected.
    pub media_connected: bool,
}

/// Something the UI should redraw or show. Sent as the Tauri event `app-event`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "type", rename_all = "camelCase")]
#[non_exhaustive]
pub enum AppEvent {
    /// The whole state changed in a way the other events do not describe.
    State { state: Box<AppState> },
    /// The live directory changed.
    Directory { live: Vec<SpaceSummary> },
    /// The followed hosts or what is known of them changed.
    Followed { followed: Vec<FollowedHost> },
    /// We are in a space now (or its participants changed).
    Current { current: Option<CurrentSpace> },
    /// The space we were in ended.
    Ended { space: SpaceId, reason: EndReason },
    /// Signaling connected or lost.
    Connection {
        connected: bool,
        message: Option<String>,
    },
    /// The microphone level, about 20 times a second while a level is wanted.
    InputLevel { rms: f32, peak: f32 },
    /// A followed host went live: the shell shows a system notification.
    FollowedLive { space: SpaceSummary },
    /// Someone joined or left (for a toast; `Current` carries the list).
    Participant {
        participant: ParticipantInfo,
        joined: bool,
    },
    /// Who speaks in a receive slot changed.
    Speaking {
        slot: u8,
        speaker: Option<ParticipantId>,
    },
}

/// User settings, as the settings page edits them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Another server to use; `None` means the embedded one.
    pub server_url: Option<String>,
    pub display_name: String,
    /// Microphone by id; `None` follows the system default.
    pub input_device: Option<String>,
    /// Speaker by id; `None` follows the system default.
    pub output_device: Option<String>,
}

/// One audio device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    pub description: String,
}

/// The devices the settings page offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    pub inputs: Vec<Device>,
    pub outputs: Vec<Device>,
}

/// Every failed IPC command returns this: a stable code for the UI and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "camelCase")]
#[error("{message}")]
pub struct IpcError {
    pub code: IpcErrorCode,
    pub message: String,
}

/// Codes of [`IpcError`]: the server's codes plus the app's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(tag = "kind", content = "code", rename_all = "camelCase")]
#[non_exhaustive]
pub enum IpcErrorCode {
    /// The server refused.
    Server(ErrorCode),
    /// The server cannot be reached.
    Offline,
    /// An audio device could not be opened.
    Device,
    /// The input is out of bounds.
    InvalidInput,
    /// The local database failed.
    Storage,
    /// Anything else; the message says what.
    Internal,
}
