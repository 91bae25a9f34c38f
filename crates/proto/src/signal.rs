//! WebSocket signaling messages and their codec.

use serde::{Deserialize, Serialize};

use crate::{ChatId, MAX_FRAME_BYTES, ParticipantId, SpaceId, SpaceSummary, UserId};

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMsg {
    /// The first frame on every connection.
    Hello {
        version: u32,
        name: String,
        /// A bearer token from `POST /api/auth/sign-in`: the sender is that account. Without it
        /// the sender is signed out and may only listen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Open a new space with the sender as its host.
    Create {
        title: String,
        /// Up to [`crate::MAX_TOPICS`] topics, each up to [`crate::MAX_TOPIC_CHARS`] characters.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        topics: Vec<String>,
        /// Start this scheduled space (see `POST /api/schedules`): the live space takes its id.
        /// Only the signed-in host who scheduled it may.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<SpaceId>,
    },
    /// Subscribe to the live directory: a [`ServerMsg::Directory`] now and after every change.
    Watch,
    /// Join a live space as a listener.
    Join { space: SpaceId },
    /// Take the host's seat again after a lost connection or a server restart.
    Resume { space: SpaceId, host_token: String },
    /// A WebRTC offer (full ICE gathering, no trickle) for the sender's media session.
    Offer { sdp: String },
    /// Leave the space the sender is in.
    Leave,
    /// End the space (host only).
    End,
    /// A listener asks to speak.
    RaiseHand,
    /// A listener withdraws its request to speak.
    LowerHand,
    /// The host or a co-host brings a listener with a raised hand up to speak.
    ApproveHand { participant: ParticipantId },
    /// The host or a co-host lowers a listener's hand without bringing it up.
    DismissHand { participant: ParticipantId },
    /// The host or a co-host invites a listener up to speak; the listener accepts or declines.
    Invite { participant: ParticipantId },
    /// The sender accepts its pending invitation to speak.
    AcceptInvite,
    /// The sender declines its pending invitation to speak.
    DeclineInvite,
    /// A speaker or co-host goes back to the audience.
    StepDown,
    /// Someone on the mic mutes their own microphone.
    MuteSelf,
    /// Someone on the mic unmutes their own microphone.
    UnmuteSelf,
    /// The host or a co-host mutes one person on the mic.
    Mute { participant: ParticipantId },
    /// The host or a co-host mutes everyone else on the mic.
    MuteAll,
    /// The host or a co-host removes someone from the space.
    Remove { participant: ParticipantId },
    /// The host or a co-host removes someone and blocks their account from the host's spaces.
    Block { participant: ParticipantId },
    /// The host makes someone a co-host.
    MakeCohost { participant: ParticipantId },
    /// The host takes co-host rights away.
    UnmakeCohost { participant: ParticipantId },
    /// The host or a co-host pins a link (http or https), or clears the pin with `null`.
    Pin { link: Option<String> },
    /// A reaction from [`crate::REACTIONS`].
    React { emoji: String },
    /// A chat message of up to [`crate::MAX_CHAT_CHARS`] characters.
    Chat { text: String },
    /// Delete a chat message (its author, the host or a co-host).
    DeleteChat { id: ChatId },
}

/// What a server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMsg {
    /// Answer to [`ClientMsg::Hello`].
    Welcome { version: u32, you: ParticipantId },
    /// The sender is now in `space` with `role`. A host also receives the secret that lets it
    /// [`ClientMsg::Resume`] the space later.
    ///
    /// `space.participants` holds the whole stage but only the first listeners: a roster of
    /// thousands does not fit one frame. The next `more` frames on the connection are
    /// [`ServerMsg::Participants`] pages with the rest; the snapshot is complete after them.
    /// [`joined_frames`] builds the lot.
    Joined {
        space: SpaceInfo,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_token: Option<String>,
        /// How many listeners the whole snapshot holds.
        #[serde(default)]
        listeners: u32,
        /// How many [`ServerMsg::Participants`] pages follow at once to complete the snapshot.
        #[serde(default, skip_serializing_if = "is_zero")]
        more: u32,
    },
    /// The server's WebRTC answer to [`ClientMsg::Offer`].
    Answer { sdp: String },
    /// Who came and went: apply `left` first, then `joined` (an entry whose id is known
    /// replaces it). Applying the same news twice changes nothing, so a page that repeats what a
    /// snapshot already held is harmless. Listeners' comings and goings are gathered for a
    /// short tick and sent in one batch (more than one frame only if they do not fit one);
    /// the stage's are sent at once. `listeners` is the listener count after this news.
    Participants {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<ParticipantInfo>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<ParticipantId>,
        listeners: u32,
    },
    /// Receive slot `slot` now carries `speaker`'s voice (or nothing).
    Slot {
        slot: u8,
        speaker: Option<ParticipantId>,
    },
    /// The space is over; no more media or events will come for it.
    Ended { space: SpaceId, reason: EndReason },
    /// The live directory (answer to [`ClientMsg::Watch`], then after every change).
    Directory { spaces: Vec<SpaceSummary> },
    /// A request failed or a frame was refused. The connection stays open unless the error
    /// is [`ErrorCode::UnsupportedVersion`].
    Error { code: ErrorCode, message: String },
    /// Someone's role, mute or raised hand changed; `participant` is the whole new entry.
    ParticipantUpdated { participant: ParticipantInfo },
    /// The raised hands, oldest first (sent whenever the queue changes).
    HandQueue { hands: Vec<ParticipantId> },
    /// Sent to a listener only: `by` invites it up to speak.
    Invited { by: ParticipantId },
    /// `participant` declined an invitation to speak.
    InviteDeclined { participant: ParticipantId },
    /// `participant` reacted with `emoji` (one of [`crate::REACTIONS`]).
    Reaction {
        participant: ParticipantId,
        emoji: String,
    },
    /// A chat message.
    Chat { message: ChatMessage },
    /// A chat message was deleted.
    ChatDeleted { id: ChatId },
    /// The pinned link changed (`None`: nothing is pinned).
    Pinned { link: Option<String> },
    /// Sent to the removed participant only, just before it stops receiving: it was removed
    /// from `space` (and its account blocked from the host's spaces if `blocked`).
    Removed { space: SpaceId, blocked: bool },
}

/// One chat message in a space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ChatMessage {
    pub id: ChatId,
    pub author: ParticipantId,
    pub text: String,
    /// When it was sent, in milliseconds since the room opened on the server (the room core
    /// knows no wall clock; the order and spacing of messages is what it can vouch for).
    pub at_ms: u64,
}

/// Why a space ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndReason {
    /// The host ended it.
    HostEnded,
    /// The host left or lost its connection and did not come back in time.
    HostGone,
    /// The server is shutting down.
    ServerShutdown,
}

/// A space as a participant sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SpaceInfo {
    pub id: SpaceId,
    pub title: String,
    pub host: String,
    pub state: SpaceState,
    /// Host, co-hosts, speakers, then listeners, each group in join order.
    pub participants: Vec<ParticipantInfo>,
    /// The pinned link, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<String>,
    /// The raised hands, oldest first.
    // `default` last, as in `ParticipantInfo`: optional in the TypeScript, as on the wire.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub hands: Vec<ParticipantId>,
}

/// Whether a space is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SpaceState {
    Live,
    Ended,
}

impl SpaceState {
    /// The name stored and shown for this state.
    pub fn as_str(self) -> &'static str {
        match self {
            SpaceState::Live => "live",
            SpaceState::Ended => "ended",
        }
    }

    /// Parses [`SpaceState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "live" => Some(SpaceState::Live),
            "ended" => Some(SpaceState::Ended),
            _ => None,
        }
    }
}

/// One person in a space.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct ParticipantInfo {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// The account, or `None` for a signed-out listener. Absent on the wire when `None`, so
    /// older peers read the same frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<UserId>,
    /// Whether this person's microphone is muted (only meaningful on the mic).
    // `default` last: specta reads serde's attributes in order, and this makes the field
    // (and the next) optional in the generated TypeScript too, as it is on the wire.
    #[serde(skip_serializing_if = "is_false", default)]
    pub muted: bool,
    /// Whether this listener has a hand raised.
    #[serde(skip_serializing_if = "is_false", default)]
    pub hand_raised: bool,
}

impl ParticipantInfo {
    /// A signed-out listener's entry with nothing raised or muted.
    pub fn new(id: ParticipantId, name: String, role: Role) -> ParticipantInfo {
        ParticipantInfo {
            id,
            name,
            role,
            user: None,
            muted: false,
            hand_raised: false,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most bytes of participant entries (and left ids) one [`ServerMsg::Participants`] frame
/// carries: the rest of [`MAX_FRAME_BYTES`] is ample for the message around them.
pub const ROSTER_PAGE_BYTES: usize = 48 * 1024;

/// The most bytes of listener entries [`ServerMsg::Joined`] carries itself: it also holds the
/// stage, the title, the pinned link and the raised hands.
pub const JOINED_PAGE_BYTES: usize = 16 * 1024;

/// The bytes `p` takes in a JSON array, its comma included.
fn entry_bytes(p: &ParticipantInfo) -> usize {
    serde_json::to_string(p).map_or(MAX_FRAME_BYTES, |s| s.len()) + 1
}

/// What `n` listeners count as on the wire (saturating: no room holds 4 billion).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The frames that bring someone into `space` (a full snapshot): [`ServerMsg::Joined`] with the
/// stage and the first listeners, then as many [`ServerMsg::Participants`] pages as the other
/// listeners need, each under [`MAX_FRAME_BYTES`]. They must be sent in this order with
/// nothing between them.
pub fn joined_frames(
    mut space: SpaceInfo,
    role: Role,
    host_token: Option<String>,
) -> Vec<ServerMsg> {
    let everyone = std::mem::take(&mut space.participants);
    let listeners = count(everyone.iter().filter(|p| p.role == Role::Listener).count());
    let (stage, audience): (Vec<_>, Vec<_>) =
        everyone.into_iter().partition(|p| p.role != Role::Listener);
    space.participants = stage;
    let mut audience = audience.into_iter().peekable();
    let mut used = 0;
    while let Some(p) = audience.peek() {
        used += entry_bytes(p);
        if used > JOINED_PAGE_BYTES {
            break;
        }
        space.participants.extend(audience.next());
    }
    let pages = pages(audience.collect(), Vec::new(), listeners);
    let mut frames = Vec::with_capacity(pages.len() + 1);
    frames.push(ServerMsg::Joined {
        space,
        role,
        host_token,
        listeners,
        more: count(pages.len()),
    });
    frames.extend(pages);
    frames
}

/// Roster news as [`ServerMsg::Participants`] frames, each under [`MAX_FRAME_BYTES`]: every
/// `left` id before any `joined` entry, so applying the frames in order is applying the news.
/// No frame for no news.
pub fn participants_frames(
    joined: Vec<ParticipantInfo>,
    left: Vec<ParticipantId>,
    listeners: u32,
) -> Vec<ServerMsg> {
    if joined.is_empty() && left.is_empty() {
        return Vec::new();
    }
    pages(joined, left, listeners)
}

fn pages(joined: Vec<ParticipantInfo>, left: Vec<ParticipantId>, listeners: u32) -> Vec<ServerMsg> {
    let mut frames = Vec::new();
    let mut page_joined = Vec::new();
    let mut page_left = Vec::new();
    let mut used = 0;
    let mut flush = |joined: &mut Vec<ParticipantInfo>, left: &mut Vec<ParticipantId>| {
        frames.push(ServerMsg::Participants {
            joined: std::mem::take(joined),
            left: std::mem::take(left),
            listeners,
        });
    };
    for id in left {
        // An id is at most 20 digits and a comma.
        used += 21;
        if used > ROSTER_PAGE_BYTES {
            flush(&mut page_joined, &mut page_left);
            used = 21;
        }
        page_left.push(id);
    }
    for p in joined {
        let bytes = entry_bytes(&p);
        used += bytes;
        if used > ROSTER_PAGE_BYTES && !(page_joined.is_empty() && page_left.is_empty()) {
            flush(&mut page_joined, &mut page_left);
            used = bytes;
        }
        page_joined.push(p);
    }
    if !(page_joined.is_empty() && page_left.is_empty()) {
        flush(&mut page_joined, &mut page_left);
    }
    frames
}

/// What a participant may do in a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// Opened the space; exactly one while it is live. Listed first.
    Host,
    /// Moderates with the host (a few per space).
    Cohost,
    /// On the mic, without moderation rights.
    Speaker,
    /// In the audience.
    Listener,
}

impl Role {
    /// Whether this role is on the mic: its audio is forwarded unless muted.
    pub fn speaks(self) -> bool {
        matches!(self, Role::Host | Role::Cohost | Role::Speaker)
    }

    /// Whether this role may moderate (approve hands, invite, mute, remove, pin).
    pub fn moderates(self) -> bool {
        matches!(self, Role::Host | Role::Cohost)
    }
}

/// Stable error codes: clients match on these, never on message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame was not a JSON object of a known shape.
    BadFrame,
    /// The frame was larger than [`MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// The frame's `type` names no message this server knows.
    UnknownType,
    /// The client's protocol version is not this server's.
    UnsupportedVersion,
    /// A message came before `hello`, or `hello` came twice.
    HelloFirst,
    /// A field's value is out of bounds (an empty title, an overlong name, ...).
    InvalidInput,
    /// No space has this id.
    NoSuchSpace,
    /// The space has ended.
    SpaceEnded,
    /// The space has as many participants as it may hold.
    SpaceFull,
    /// The sender is already in a space.
    AlreadyInSpace,
    /// The sender is in no space.
    NotInSpace,
    /// The sender's role does not allow this.
    NotAllowed,
    /// The host token does not match.
    BadToken,
    /// The WebRTC offer could not be answered.
    MediaFailed,
    /// The server failed; the request may be retried.
    Internal,
    /// Only signed-in participants may do this; signed-out ones may listen.
    SignInRequired,
    /// The sender's account is blocked from this host's spaces.
    Blocked,
    /// The sender was removed from this space and may not come back.
    Removed,
    /// The participant the request names is not in the space.
    NoSuchParticipant,
    /// The participant the request names is not in a state this applies to (no raised hand,
    /// not on the mic, already a co-host, signed out, ...).
    InvalidTarget,
    /// There is no pending invitation to answer.
    NoInvite,
    /// Every seat of that kind on the stage is taken.
    StageFull,
    /// Too many requests of this kind too quickly; retry a little later.
    RateLimited,
    /// No chat message has this id (or it is too old to delete).
    NoSuchMessage,
}

/// Why a frame could not be decoded. Each maps onto an [`ErrorCode`] for the reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("frame of {len} bytes is larger than the {max} byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("frame is not a JSON object with a string \"type\": {0}")]
    NotAnObject(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("malformed {kind:?} message: {reason}")]
    Malformed { kind: String, reason: String },
}

impl DecodeError {
    /// The code to send back for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::FrameTooLarge,
            DecodeError::NotAnObject(_) | DecodeError::Malformed { .. } => ErrorCode::BadFrame,
            DecodeError::UnknownType(_) => ErrorCode::UnknownType,
        }
    }
}

const CLIENT_TYPES: &[&str] = &[
    "hello",
    "create",
    "watch",
    "join",
    "resume",
    "offer",
    "leave",
    "end",
    "raise_hand",
    "lower_hand",
    "approve_hand",
    "dismiss_hand",
    "invite",
    "accept_invite",
    "decline_invite",
    "step_down",
    "mute_self",
    "unmute_self",
    "mute",
    "mute_all",
    "remove",
    "block",
    "make_cohost",
    "unmake_cohost",
    "pin",
    "react",
    "chat",
    "delete_chat",
];
const SERVER_TYPES: &[&str] = &[
    "welcome",
    "joined",
    "answer",
    "participants",
    "slot",
    "ended",
    "directory",
    "error",
    "participant_updated",
    "hand_queue",
    "invited",
    "invite_declined",
    "reaction",
    "chat",
    "chat_deleted",
    "pinned",
    "removed",
];

fn decode<T: serde::de::DeserializeOwned>(frame: &str, known: &[&str]) -> Result<T, DecodeError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    // Two passes so an unknown type and a malformed known type get different codes: a client
    // newer than this server deserves "unknown_type", not "bad_frame".
    let value: serde_json::Value =
        serde_json::from_str(frame).map_err(|e| DecodeError::NotAnObject(e.to_string()))?;
    let kind = value
        .as_object()
        .and_then(|o| o.get("type"))
        .and_then(|t| t.as_str())
        .ok_or_else(|| DecodeError::NotAnObject("no \"type\" field".into()))?
        .to_owned();
    if !known.contains(&kind.as_str()) {
        let shown: String = kind.chars().take(40).collect();
        return Err(DecodeError::UnknownType(shown));
    }
    serde_json::from_value(value).map_err(|e| DecodeError::Malformed {
        kind,
        reason: e.to_string(),
    })
}

/// Decodes a frame a client sent. Never panics.
pub fn decode_client(frame: &str) -> Result<ClientMsg, DecodeError> {
    decode(frame, CLIENT_TYPES)
}

/// Decodes a frame a server sent. Never panics.
pub fn decode_server(frame: &str) -> Result<ServerMsg, DecodeError> {
    decode(frame, SERVER_TYPES)
}

/// Encodes a message as one text frame.
pub fn encode<T: Serialize>(msg: &T) -> String {
    // Serialising these plain data types to a String cannot fail: no maps with non-string keys,
    // no custom serialisers that error.
    serde_json::to_string(msg).unwrap_or_else(|_| String::from("{}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PROTOCOL_VERSION;

    fn space() -> SpaceInfo {
        SpaceInfo {
            id: "abcdefgh2345".parse().unwrap(),
            title: "Morning show".into(),
            host: "ada".into(),
            state: SpaceState::Live,
            participants: vec![
                ParticipantInfo::new(ParticipantId(1), "ada".into(), Role::Host),
                ParticipantInfo::new(ParticipantId(2), "bob".into(), Role::Listener),
            ],
            pinned: None,
            hands: Vec::new(),
        }
    }

    fn all_client() -> Vec<ClientMsg> {
        vec![
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: "ada".into(),
                token: None,
            },
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: "ada".into(),
                token: Some("6GQx0nq1Zb".into()),
            },
            ClientMsg::Create {
                title: "Morning show".into(),
                topics: vec!["rust".into(), "audio".into()],
                schedule: None,
            },
            ClientMsg::Create {
                title: "Evening show".into(),
                topics: Vec::new(),
                schedule: Some("abcdefgh2345".parse().unwrap_or_else(|_| unreachable!())),
            },
            ClientMsg::Watch,
            ClientMsg::Join {
                space: "abcdefgh2345".parse().unwrap(),
            },
            ClientMsg::Resume {
                space: "abcdefgh2345".parse().unwrap(),
                host_token: "s3cret".into(),
            },
            ClientMsg::Offer {
                sdp: "v=0\r\n".into(),
            },
            ClientMsg::Leave,
            ClientMsg::End,
            ClientMsg::RaiseHand,
            ClientMsg::LowerHand,
            ClientMsg::ApproveHand {
                participant: ParticipantId(2),
            },
            ClientMsg::DismissHand {
                participant: ParticipantId(2),
            },
            ClientMsg::Invite {
                participant: ParticipantId(2),
            },
            ClientMsg::AcceptInvite,
            ClientMsg::DeclineInvite,
            ClientMsg::StepDown,
            ClientMsg::MuteSelf,
            ClientMsg::UnmuteSelf,
            ClientMsg::Mute {
                participant: ParticipantId(2),
            },
            ClientMsg::MuteAll,
            ClientMsg::Remove {
                participant: ParticipantId(2),
            },
            ClientMsg::Block {
                participant: ParticipantId(2),
            },
            ClientMsg::MakeCohost {
                participant: ParticipantId(2),
            },
            ClientMsg::UnmakeCohost {
                participant: ParticipantId(2),
            },
            ClientMsg::Pin {
                link: Some("https://example.org/notes".into()),
            },
            ClientMsg::Pin { link: None },
            ClientMsg::React {
                emoji: "👏".into()
            },
            ClientMsg::Chat {
                text: "hello, room".into(),
            },
            ClientMsg::DeleteChat { id: ChatId(4) },
        ]
    }

    fn all_server() -> Vec<ServerMsg> {
        vec![
            ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                you: ParticipantId(7),
            },
            ServerMsg::Joined {
                space: space(),
                role: Role::Host,
                host_token: Some("s3cret".into()),
                listeners: 1,
                more: 0,
            },
            ServerMsg::Joined {
                space: space(),
                role: Role::Listener,
                host_token: None,
                listeners: 1,
                more: 0,
            },
            ServerMsg::Joined {
                space: SpaceInfo {
                    pinned: Some("https://example.org/notes".into()),
                    hands: vec![ParticipantId(2)],
                    ..space()
                },
                role: Role::Listener,
                host_token: None,
                listeners: 900,
                more: 2,
            },
            ServerMsg::Answer {
                sdp: "v=0\r\n".into(),
            },
            ServerMsg::Participants {
                joined: vec![space().participants[1].clone()],
                left: Vec::new(),
                listeners: 1,
            },
            ServerMsg::Participants {
                joined: Vec::new(),
                left: vec![ParticipantId(2)],
                listeners: 0,
            },
            ServerMsg::Participants {
                joined: vec![ParticipantInfo::new(
                    ParticipantId(5),
                    "eve".into(),
                    Role::Listener,
                )],
                left: vec![ParticipantId(2), ParticipantId(3)],
                listeners: 7,
            },
            ServerMsg::Slot {
                slot: 0,
                speaker: Some(ParticipantId(1)),
            },
            ServerMsg::Ended {
                space: "abcdefgh2345".parse().unwrap(),
                reason: EndReason::HostEnded,
            },
            ServerMsg::Directory {
                spaces: vec![SpaceSummary {
                    id: "abcdefgh2345".parse().unwrap(),
                    title: "Morning show".into(),
                    host: "ada".into(),
                    topics: vec!["rust".into()],
                    listeners: 3,
                    host_handle: Some("ada".into()),
                    speakers: vec!["Bob".into()],
                }],
            },
            ServerMsg::Error {
                code: ErrorCode::NoSuchSpace,
                message: "no space abcdefgh2345".into(),
            },
            ServerMsg::Error {
                code: ErrorCode::SignInRequired,
                message: "sign in to do this".into(),
            },
            ServerMsg::ParticipantUpdated {
                participant: ParticipantInfo {
                    id: ParticipantId(2),
                    name: "bob".into(),
                    role: Role::Speaker,
                    user: Some(UserId::new("bob").unwrap()),
                    muted: true,
                    hand_raised: false,
                },
            },
            ServerMsg::ParticipantUpdated {
                participant: ParticipantInfo {
                    user: Some(UserId::new("cy").unwrap()),
                    hand_raised: true,
                    ..ParticipantInfo::new(ParticipantId(3), "cy".into(), Role::Listener)
                },
            },
            ServerMsg::ParticipantUpdated {
                participant: ParticipantInfo::new(ParticipantId(4), "di".into(), Role::Cohost),
            },
            ServerMsg::HandQueue {
                hands: vec![ParticipantId(3), ParticipantId(5)],
            },
            ServerMsg::Invited {
                by: ParticipantId(1),
            },
            ServerMsg::InviteDeclined {
                participant: ParticipantId(3),
            },
            ServerMsg::Reaction {
                participant: ParticipantId(3),
                emoji: "❤️".into(),
            },
            ServerMsg::Chat {
                message: ChatMessage {
                    id: ChatId(4),
                    author: ParticipantId(3),
                    text: "hello, room".into(),
                    at_ms: 61_500,
                },
            },
            ServerMsg::ChatDeleted { id: ChatId(4) },
            ServerMsg::Pinned {
                link: Some("https://example.org/notes".into()),
            },
            ServerMsg::Pinned { link: None },
            ServerMsg::Removed {
                space: "abcdefgh2345".parse().unwrap(),
                blocked: true,
            },
        ]
    }

    #[test]
    fn wire_format_snapshot() {
        let client: Vec<String> = all_client().iter().map(encode).collect();
        let server: Vec<String> = all_server().iter().map(encode).collect();
        insta::assert_snapshot!("client_messages", client.join("\n"));
        insta::assert_snapshot!("server_messages", server.join("\n"));
    }

    #[test]
    fn every_message_round_trips_and_every_type_is_listed() {
        for msg in all_client() {
            let frame = encode(&msg);
            assert_eq!(decode_client(&frame), Ok(msg));
        }
        for msg in all_server() {
            let frame = encode(&msg);
            assert_eq!(decode_server(&frame), Ok(msg));
        }
        // Each listed type is produced by some message, so the lists cannot drift silently.
        for t in CLIENT_TYPES {
            assert!(
                all_client()
                    .iter()
                    .any(|m| encode(m).contains(&format!("\"type\":\"{t}\"")))
            );
        }
        for t in SERVER_TYPES {
            assert!(
                all_server()
                    .iter()
                    .any(|m| encode(m).contains(&format!("\"type\":\"{t}\"")))
            );
        }
    }

    #[test]
    fn bad_frames_get_the_right_code() {
        let cases: &[(&str, ErrorCode)] = &[
            ("", ErrorCode::BadFrame),
            ("not json", ErrorCode::BadFrame),
            ("[1,2]", ErrorCode::BadFrame),
            ("{\"type\":3}", ErrorCode::BadFrame),
            ("{\"kind\":\"hello\"}", ErrorCode::BadFrame),
            ("{\"type\":\"fly\"}", ErrorCode::UnknownType),
            ("{\"type\":\"hello\"}", ErrorCode::BadFrame),
            (
                "{\"type\":\"hello\",\"version\":-1,\"name\":\"a\"}",
                ErrorCode::BadFrame,
            ),
            (
                "{\"type\":\"join\",\"space\":\"../../etc\"}",
                ErrorCode::BadFrame,
            ),
        ];
        for (frame, code) in cases {
            let err = decode_client(frame).expect_err(frame);
            assert_eq!(err.code(), *code, "{frame}: {err}");
        }
        // Unknown extra fields are ignored, so a newer peer can add optional fields.
        assert_eq!(
            decode_client("{\"type\":\"leave\",\"extra\":1}"),
            Ok(ClientMsg::Leave)
        );
        let huge = format!(
            "{{\"type\":\"offer\",\"sdp\":\"{}\"}}",
            "a".repeat(MAX_FRAME_BYTES)
        );
        assert_eq!(
            decode_client(&huge).unwrap_err().code(),
            ErrorCode::FrameTooLarge
        );
    }

    #[test]
    fn stage_fields_are_optional_on_the_wire_and_checked() {
        // An entry from before the stage existed still decodes, with the new fields at rest.
        let old = r#"{"type":"participants","joined":[{"id":2,"name":"bob","role":"listener"}],"listeners":1}"#;
        assert_eq!(
            decode_server(old),
            Ok(ServerMsg::Participants {
                joined: vec![ParticipantInfo::new(
                    ParticipantId(2),
                    "bob".into(),
                    Role::Listener
                )],
                left: Vec::new(),
                listeners: 1,
            })
        );
        let bad_user = r#"{"type":"participant_updated","participant":{"id":2,"name":"b","role":"speaker","user":"Not An Id"}}"#;
        assert_eq!(
            decode_server(bad_user).unwrap_err().code(),
            ErrorCode::BadFrame
        );
        for frame in [
            r#"{"type":"react"}"#,
            r#"{"type":"approve_hand"}"#,
            r#"{"type":"delete_chat","id":-1}"#,
            r#"{"type":"pin","link":3}"#,
        ] {
            assert_eq!(
                decode_client(frame).unwrap_err().code(),
                ErrorCode::BadFrame,
                "{frame}"
            );
        }
        // A pin without a link clears it.
        assert_eq!(
            decode_client(r#"{"type":"pin"}"#),
            Ok(ClientMsg::Pin { link: None })
        );
        assert!(Role::Speaker.speaks() && Role::Cohost.speaks() && !Role::Listener.speaks());
        assert!(Role::Cohost.moderates() && !Role::Speaker.moderates());
    }

    /// A space with the host, two speakers and `n` listeners with long, escaped, multi-byte
    /// names and accounts: the worst entries a roster can hold.
    fn crowded(n: u64) -> SpaceInfo {
        let mut participants = vec![ParticipantInfo::new(
            ParticipantId(1),
            "ada".into(),
            Role::Host,
        )];
        for id in 2..4 {
            participants.push(ParticipantInfo::new(
                ParticipantId(id),
                format!("speaker {id}"),
                Role::Speaker,
            ));
        }
        for i in 0..n {
            let name: String = format!("\"{i}\"é😂").chars().cycle().take(64).collect();
            participants.push(ParticipantInfo {
                user: Some(UserId::new(format!("u{i}")).unwrap()),
                hand_raised: i % 7 == 0,
                ..ParticipantInfo::new(ParticipantId(u64::MAX - i), name, Role::Listener)
            });
        }
        SpaceInfo {
            participants,
            hands: (0..n)
                .step_by(7)
                .map(|i| ParticipantId(u64::MAX - i))
                .collect(),
            ..space()
        }
    }

    /// Applies frames as a client does: left first, then joined (replacing by id).
    fn apply(roster: &mut Vec<ParticipantInfo>, frame: &ServerMsg) {
        if let ServerMsg::Participants { joined, left, .. } = frame {
            roster.retain(|p| !left.contains(&p.id));
            for p in joined {
                match roster.iter_mut().find(|q| q.id == p.id) {
                    Some(q) => *q = p.clone(),
                    None => roster.push(p.clone()),
                }
            }
        }
    }

    #[test]
    fn a_big_roster_is_paged_under_the_frame_limit_and_reassembles() {
        for n in [0, 1, 50, 3_000] {
            let space = crowded(n);
            let frames = joined_frames(space.clone(), Role::Listener, None);
            let ServerMsg::Joined {
                space: first,
                listeners,
                more,
                ..
            } = &frames[0]
            else {
                panic!("the first frame is not joined: {:?}", frames[0]);
            };
            assert_eq!(*listeners as u64, n);
            assert_eq!(*more as usize, frames.len() - 1);
            // The whole stage is in the first frame.
            assert_eq!(
                first
                    .participants
                    .iter()
                    .filter(|p| p.role.speaks())
                    .count(),
                3
            );
            let mut roster = first.participants.clone();
            for f in &frames {
                let text = encode(f);
                assert!(text.len() <= MAX_FRAME_BYTES, "{n}: {} bytes", text.len());
                assert_eq!(decode_server(&text).as_ref(), Ok(f));
                apply(&mut roster, f);
                if let ServerMsg::Participants { listeners, .. } = f {
                    assert_eq!(*listeners as u64, n);
                }
            }
            assert_eq!(roster, space.participants, "{n} listeners");
        }
        // 3,000 listeners of the longest names take several pages.
        assert!(joined_frames(crowded(3_000), Role::Listener, None).len() > 5);
    }

    #[test]
    fn news_is_paged_leaves_first() {
        assert!(participants_frames(Vec::new(), Vec::new(), 4).is_empty());
        let joined = crowded(2_000).participants;
        let left: Vec<ParticipantId> = (0..10_000).map(ParticipantId).collect();
        let frames = participants_frames(joined.clone(), left.clone(), 2_000);
        assert!(frames.len() > 2);
        let mut roster: Vec<ParticipantInfo> = (0..10_000)
            .map(|i| ParticipantInfo::new(ParticipantId(i), "x".into(), Role::Listener))
            .collect();
        let mut seen_joined = false;
        for f in &frames {
            assert!(encode(f).len() <= MAX_FRAME_BYTES);
            let ServerMsg::Participants { joined, left, .. } = f else {
                panic!("{f:?}");
            };
            assert!(!seen_joined || left.is_empty(), "a leave after a join");
            seen_joined |= !joined.is_empty();
            apply(&mut roster, f);
        }
        assert_eq!(roster, joined);
    }

    #[test]
    fn decoder_survives_arbitrary_bytes() {
        // A cheap deterministic fuzz: mutate valid frames byte by byte; nothing may panic.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<String> = all_client()
            .iter()
            .map(encode)
            .chain(all_server().iter().map(encode))
            .collect();
        for i in 0..20_000 {
            let mut bytes = seeds[i % seeds.len()].clone().into_bytes();
            for _ in 0..(next() % 4 + 1) {
                let pos = (next() as usize) % bytes.len();
                bytes[pos] = (next() & 0xff) as u8;
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = decode_client(&text);
            let _ = decode_server(&text);
        }
    }
}
