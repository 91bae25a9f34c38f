//! WebSocket signaling messages and their codec.

use serde::{Deserialize, Serialize};

use crate::{MAX_FRAME_BYTES, ParticipantId, SpaceId, SpaceSummary};

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ClientMsg {
    /// The first frame on every connection.
    Hello { version: u32, name: String },
    /// Open a new space with the sender as its host.
    Create {
        title: String,
        /// Up to [`crate::MAX_TOPICS`] topics, each up to [`crate::MAX_TOPIC_CHARS`] characters.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        topics: Vec<String>,
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
    Joined {
        space: SpaceInfo,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host_token: Option<String>,
    },
    /// The server's WebRTC answer to [`ClientMsg::Offer`].
    Answer { sdp: String },
    /// Someone came into the space.
    ParticipantJoined { participant: ParticipantInfo },
    /// Someone left the space.
    ParticipantLeft { participant: ParticipantId },
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
    pub participants: Vec<ParticipantInfo>,
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
}

/// What a participant may do in a space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    Host,
    Listener,
}

impl Role {
    /// Whether this role's audio is forwarded to the room.
    pub fn speaks(self) -> bool {
        matches!(self, Role::Host)
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
    "hello", "create", "watch", "join", "resume", "offer", "leave", "end",
];
const SERVER_TYPES: &[&str] = &[
    "welcome",
    "joined",
    "answer",
    "participant_joined",
    "participant_left",
    "slot",
    "ended",
    "directory",
    "error",
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
                ParticipantInfo {
                    id: ParticipantId(1),
                    name: "ada".into(),
                    role: Role::Host,
                },
                ParticipantInfo {
                    id: ParticipantId(2),
                    name: "bob".into(),
                    role: Role::Listener,
                },
            ],
        }
    }

    fn all_client() -> Vec<ClientMsg> {
        vec![
            ClientMsg::Hello {
                version: PROTOCOL_VERSION,
                name: "ada".into(),
            },
            ClientMsg::Create {
                title: "Morning show".into(),
                topics: vec!["rust".into(), "audio".into()],
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
            },
            ServerMsg::Joined {
                space: space(),
                role: Role::Listener,
                host_token: None,
            },
            ServerMsg::Answer {
                sdp: "v=0\r\n".into(),
            },
            ServerMsg::ParticipantJoined {
                participant: space().participants[1].clone(),
            },
            ServerMsg::ParticipantLeft {
                participant: ParticipantId(2),
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
                }],
            },
            ServerMsg::Error {
                code: ErrorCode::NoSuchSpace,
                message: "no space abcdefgh2345".into(),
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
    fn decoder_survives_arbitrary_bytes() {
        // A cheap deterministic fuzz: mutate valid frames byte by byte; nothing may panic.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds: Vec<String> = all_client().iter().map(encode).collect();
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
