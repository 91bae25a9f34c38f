//! The Confab client: everything the desktop app, the CLI and the tests do with a server.
//!
//! [`Client::connect`] opens signaling and spawns one task that owns the WebSocket, the WebRTC
//! session and the codec tasks; the [`Client`] handle is a cheap channel sender, and what
//! happens arrives on [`Streams`]: typed [`Event`]s for the UI and decoded [`AudioFrame`]s for
//! whatever plays or records them. There is no Tauri here and no device code in the
//! connection: the caller decides where audio comes from ([`Mic`]) and goes.

pub mod app;
pub mod cli;
mod connection;
pub mod identity;
mod recorder;

pub use connection::{
    AudioFrame, Client, ClientConfig, ClientError, Event, Joined, Mic, Streams, list_spaces,
};
pub use recorder::Recorder;
