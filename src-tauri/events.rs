//! The events the shell sends to the webview, typed for the generated bindings.

use confab_proto::ipc::{AppEvent, IpcError};
use serde::{Deserialize, Serialize};

/// Every [`AppEvent`] of the app, as it is, under the Tauri event name `app-event`.
#[derive(Clone, Debug, Serialize, Deserialize, specta::Type)]
#[serde(transparent)]
pub struct AppEventMessage(pub AppEvent);

impl tauri_specta::Event for AppEventMessage {
    const NAME: &'static str = "app-event";
}

/// A space opened from outside the window (a link, a notification, the tray) could not be
/// joined; the UI shows why. Event name `open-space-failed`.
#[derive(Clone, Debug, Serialize, Deserialize, specta::Type)]
#[serde(transparent)]
pub struct OpenSpaceFailed(pub IpcError);

impl tauri_specta::Event for OpenSpaceFailed {
    const NAME: &'static str = "open-space-failed";
}
