//! What can happen to a room.

use confab_proto::{ChatId, ParticipantId, UserId};

/// One thing that happened to a room, fed to [`Room::handle`](crate::Room::handle).
///
/// Every stage action names `who` acts. Apart from [`Input::Join`], [`Input::Leave`] and
/// [`Input::Disconnected`], an action from a signed-out participant (no [`UserId`]) is refused
/// with [`RoomError::SignInRequired`](crate::RoomError): signed-out people may listen only. The
/// host is the exception: its authority is its seat (the server checked the host token).
/// "Moderator" below means the host or a co-host.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// `who` joins as a listener under `name` (trimmed; 1 to
    /// [`MAX_NAME_CHARS`](confab_proto::MAX_NAME_CHARS) characters), signed in as `user` or
    /// signed out. Refused for a blocked account, a removed connection or account, or an
    /// account already in the room.
    Join {
        who: ParticipantId,
        name: String,
        user: Option<UserId>,
    },
    /// `who` leaves on purpose. The host leaving on purpose ends the space
    /// ([`EndReason::HostEnded`](confab_proto::EndReason)).
    Leave { who: ParticipantId },
    /// `who`'s connection was lost. For anyone else this is a [`Input::Leave`]; the host's
    /// seat is emptied and held for [`RoomConfig::host_grace`](crate::RoomConfig) instead.
    Disconnected { who: ParticipantId },
    /// Connection `who` takes the empty host seat (the server has checked the host token).
    Resume { who: ParticipantId, name: String },
    /// `who` ends the space; only the host may.
    End { who: ParticipantId },
    /// The server is shutting down: the space ends with
    /// [`EndReason::ServerShutdown`](confab_proto::EndReason).
    Shutdown,
    /// A listener asks to speak. Raising a raised hand does nothing.
    RaiseHand { who: ParticipantId },
    /// A listener withdraws its hand. Lowering a lowered hand does nothing.
    LowerHand { who: ParticipantId },
    /// A moderator brings `target`, a listener with a raised hand, up as a speaker (muted).
    ApproveHand {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// A moderator lowers `target`'s raised hand.
    DismissHand {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// A moderator invites `target`, a signed-in listener, up to speak.
    Invite {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// The invited listener `who` comes up as a speaker (muted).
    AcceptInvite { who: ParticipantId },
    /// The invited listener `who` stays in the audience.
    DeclineInvite { who: ParticipantId },
    /// A speaker or co-host goes back to the audience. The host cannot.
    StepDown { who: ParticipantId },
    /// Someone on the mic mutes themself.
    MuteSelf { who: ParticipantId },
    /// Someone on the mic unmutes themself (also after a moderator muted them).
    UnmuteSelf { who: ParticipantId },
    /// A moderator mutes `target`, who is on the mic. A co-host cannot mute the host.
    Mute {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// A moderator mutes everyone else on the mic (a co-host: everyone but the host).
    MuteAll { who: ParticipantId },
    /// A moderator removes `target` from the space; it may not come back to this space. Nobody
    /// removes the host, and a co-host does not remove another co-host.
    Remove {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// [`Input::Remove`], and `target`'s account is blocked from the host's spaces
    /// ([`Output::Blocked`](crate::Output) asks the server to persist it).
    Block {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// The host makes `target` (a signed-in speaker or listener) a co-host.
    MakeCohost {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// The host makes co-host `target` a speaker again (a listener if no speaker seat is free).
    UnmakeCohost {
        who: ParticipantId,
        target: ParticipantId,
    },
    /// A moderator pins an http(s) link, or clears the pin with `None`.
    Pin {
        who: ParticipantId,
        link: Option<String>,
    },
    /// Anyone signed in reacts with one of [`REACTIONS`](confab_proto::REACTIONS).
    React { who: ParticipantId, emoji: String },
    /// Anyone signed in sends a chat message.
    Chat { who: ParticipantId, text: String },
    /// The author or a moderator deletes a recent chat message.
    DeleteChat { who: ParticipantId, id: ChatId },
}
