//! Bodies of the HTTP directory API (`GET /api/spaces`, `GET /api/spaces/{id}`).

use serde::{Deserialize, Serialize};

use crate::{ErrorCode, SpaceId, SpaceState};

/// One line of the live directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SpaceSummary {
    pub id: SpaceId,
    pub title: String,
    pub host: String,
    #[serde(default)]
    pub topics: Vec<String>,
    pub listeners: u32,
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
