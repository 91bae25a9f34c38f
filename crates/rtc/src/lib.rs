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
//! Each Opus packet a client sends carries its RFC 6464 audio level (the client-to-mixer
//! `ssrc-audio-level` header extension, with the voice activity bit) when the peer negotiated
//! it, so a server can pick the loudest speakers without decoding anything.
//!
//! This crate never decodes or encodes audio and never blocks a thread.

mod batch;
mod mux;
mod session;
mod srtp_tap;

pub use batch::{BatchSent, DatagramBatch, SEND_BATCH};
pub use mux::{Mux, MuxSession, MuxStats, forward};

pub use session::{
    LocalAudio, NetworkStats, PeerSession, RemoteAudio, RtcConfig, RtcError, RtpPacket,
    SessionEvent, SlotNetworkStats, media_engine,
};

/// The RFC 6464 client-to-mixer audio level header extension.
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// One packet's audio level as RFC 6464 carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AudioLevel {
    /// The level in -dBov: 0 is the loudest a packet can be, [`AudioLevel::SILENT`] (127) is
    /// silence. Always 0..=127.
    dbov: u8,
    /// The sender's voice activity bit.
    pub voice: bool,
}

impl AudioLevel {
    /// -127 dBov: digital silence (what a muted microphone sends).
    pub const SILENT: u8 = 127;

    /// A level of `-dbov` dBov (clamped to 0..=127).
    pub fn new(dbov: u8, voice: bool) -> Self {
        AudioLevel {
            dbov: dbov.min(Self::SILENT),
            voice,
        }
    }

    /// The level in -dBov (0 loudest, 127 silence).
    pub fn dbov(self) -> u8 {
        self.dbov
    }

    /// Whether this is silence (-127 dBov).
    pub fn is_silent(self) -> bool {
        self.dbov >= Self::SILENT
    }

    /// The one-byte form: the V bit, then seven bits of level.
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice) << 7) | self.dbov
    }

    /// Parses the one-byte form; every byte is a valid level.
    pub fn from_byte(b: u8) -> Self {
        AudioLevel {
            dbov: b & 0x7f,
            voice: b & 0x80 != 0,
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_byte_round_trips() {
        for b in 0..=255u8 {
            let level = AudioLevel::from_byte(b);
            assert_eq!(level.to_byte(), b);
            assert!(level.dbov() <= AudioLevel::SILENT);
        }
        assert_eq!(AudioLevel::new(200, true).dbov(), 127);
        assert!(AudioLevel::new(127, false).is_silent());
        assert!(!AudioLevel::new(126, true).is_silent());
    }
}
