//! WebRTC audio sessions for Confab, behind an API small enough that the engine can change.
//!
//! Today the engine is the `webrtc` crate (0.21, over the sans-IO `rtc` core). Everything
//! Confab needs is here: a [`PeerSession`] that offers or answers with full (non-trickle) ICE
//! gathering, Opus-only audio transceivers, a [`LocalAudio`] to send RTP on and a
//! [`RemoteAudio`] to read RTP from. Media is always DTLS-SRTP.
//!
//! The layout of a session is fixed so that nobody ever renegotiates: the client's offer has
//! [`RECV_SLOTS`] audio m-lines. The first is `sendrecv` (the client's microphone up, slot 0
//! down); the rest are `recvonly`. The server answers by attaching one forwarding track per
//! slot, in m-line order. Which speaker a slot carries is said over signaling.
//!
//! This crate never decodes or encodes audio and never blocks a thread.

mod session;

pub use session::{
    LocalAudio, NetworkStats, PeerSession, RemoteAudio, RtcConfig, RtcError, RtpPacket,
    SessionEvent, SlotNetworkStats,
};

/// RTP payload type Confab uses for Opus (the WebRTC convention).
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// How many audio streams a participant receives at once (the loudest few speakers).
pub const RECV_SLOTS: usize = 3;

/// The id of the server's forwarding track for receive slot `slot`.
pub fn slot_track_id(slot: usize) -> String {
    format!("confab-slot-{slot}")
}

/// The inverse of [`slot_track_id`].
pub fn parse_slot_track_id(id: &str) -> Option<usize> {
    id.strip_prefix("confab-slot-")?
        .parse()
        .ok()
        .filter(|s| *s < RECV_SLOTS)
}
