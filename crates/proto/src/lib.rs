//! Every message that crosses a wire between a Confab client and server.
//!
//! The signaling channel is a WebSocket carrying one JSON object per text frame, tagged by
//! `"type"` (snake_case). The first frame a client sends is [`ClientMsg::Hello`] naming
//! [`PROTOCOL_VERSION`]; a server that speaks another version answers with an
//! [`ServerMsg::Error`] whose code is [`ErrorCode::UnsupportedVersion`] and closes.
//!
//! Contract: decoding never panics. Anything that came from the network goes through
//! [`decode_client`] / [`decode_server`], which return a [`DecodeError`] for oversized,
//! malformed or unknown frames, and that error maps onto a stable [`ErrorCode`].

mod http;
mod ids;
pub mod ipc;
mod signal;

pub use http::{
    AddDeviceRequest, ApiError, Challenge, ChallengeRequest, Profile, ProfileUpdate,
    RegisterRequest, ReportFiled, ReportRequest, ScheduleRequest, Scheduled, Session,
    SignInRequest, SpaceDetails, SpaceSummary,
};
pub use ids::{ChatId, ParticipantId, SpaceId, SpaceIdError, UserId, UserIdError};
pub use signal::{
    ChatMessage, ClientMsg, DecodeError, EndReason, ErrorCode, JOINED_PAGE_BYTES, ParticipantInfo,
    ROSTER_PAGE_BYTES, Role, ServerMsg, SpaceInfo, SpaceState, decode_client, decode_server,
    encode, joined_frames, participants_frames,
};

/// The signaling protocol version this build speaks. Version 2 pages the roster on joining and
/// batches roster news ([`ServerMsg::Participants`]) instead of one message per join or leave.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest signaling frame either side accepts, in bytes. An SDP offer for Confab's few
/// audio transceivers is a few kilobytes; 64 KiB leaves room without letting a peer make the
/// other side buffer megabytes.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Longest space title, in characters.
pub const MAX_TITLE_CHARS: usize = 120;

/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// Most topics a space may have.
pub const MAX_TOPICS: usize = 3;

/// Longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 32;

/// Longest chat message, in characters (after trimming surrounding whitespace).
pub const MAX_CHAT_CHARS: usize = 500;

/// Longest pinned link, in characters. Links longer than this are not worth showing anyway.
pub const MAX_LINK_CHARS: usize = 512;

/// The reactions a participant may send: a fixed set, so a reaction is never a message.
pub const REACTIONS: [&str; 6] = ["💯", "😂", "👏", "❤️", "🙌", "👋"];
