//! What a room asks of the world around it.

use confab_proto::{EndReason, ParticipantId, ServerMsg};

/// One thing the room needs done, drained with [`Room::poll_output`](crate::Room::poll_output)
/// and acted on in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send `msg` to everyone in the room except `except`. "In the room" is read at this point
    /// of the output sequence: a participant is in from its
    /// [`MediaChange::StartReceiving`] until its [`MediaChange::StopReceiving`].
    Broadcast {
        msg: ServerMsg,
        except: Option<ParticipantId>,
    },
    /// The media plane must change.
    Media(MediaChange),
    /// The room ended. Emitted exactly once, last, after the broadcast of
    /// [`ServerMsg::Ended`] and the media changes that release everyone. The server persists it.
    Ended { reason: EndReason },
}

/// A change to what the SFU forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaChange {
    /// Forward this participant's audio to the room.
    StartSpeaking(ParticipantId),
    /// Stop forwarding this participant's audio.
    StopSpeaking(ParticipantId),
    /// Forward the room's audio to this participant; it is now in the room.
    StartReceiving(ParticipantId),
    /// Stop forwarding audio to this participant; it is no longer in the room.
    StopReceiving(ParticipantId),
}
