//! What a room asks of the world around it.

use confab_proto::{EndReason, ParticipantId, ServerMsg, UserId};

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
    /// Send `msg` to participant `to` only (an invitation; a removal notice). `to` is in the
    /// room at this point of the output sequence.
    Send { to: ParticipantId, msg: ServerMsg },
    /// The media plane must change.
    Media(MediaChange),
    /// `user` is now blocked from the host's spaces: the server persists it with the host's
    /// account.
    Blocked { user: UserId },
    /// The room ended. Emitted exactly once, last, after the broadcast of
    /// [`ServerMsg::Ended`] and the media changes that release everyone. The server persists it.
    Ended { reason: EndReason },
}

/// A change to what the SFU forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MediaChange {
    /// Forward this participant's audio to the room: it is on the mic and not muted.
    StartSpeaking(ParticipantId),
    /// Stop forwarding this participant's audio (muted, off the mic, or gone).
    StopSpeaking(ParticipantId),
    /// Forward the room's audio to this participant; it is now in the room.
    StartReceiving(ParticipantId),
    /// Stop forwarding audio to this participant; it is no longer in the room.
    StopReceiving(ParticipantId),
}
