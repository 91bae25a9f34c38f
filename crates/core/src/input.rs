//! What can happen to a room.

use confab_proto::ParticipantId;

/// One thing that happened to a room, fed to [`Room::handle`](crate::Room::handle).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// `who` joins as a listener under `name` (trimmed; 1 to
    /// [`MAX_NAME_CHARS`](confab_proto::MAX_NAME_CHARS) characters).
    Join { who: ParticipantId, name: String },
    /// `who` leaves on purpose. The host leaving on purpose ends the space
    /// ([`EndReason::HostEnded`](confab_proto::EndReason)).
    Leave { who: ParticipantId },
    /// `who`'s connection was lost. For a listener this is a [`Input::Leave`]; the host's seat
    /// is emptied and held for [`RoomConfig::host_grace`](crate::RoomConfig) instead.
    Disconnected { who: ParticipantId },
    /// Connection `who` takes the empty host seat (the server has checked the host token).
    Resume { who: ParticipantId, name: String },
    /// `who` ends the space; only the host may.
    End { who: ParticipantId },
    /// The server is shutting down: the space ends with
    /// [`EndReason::ServerShutdown`](confab_proto::EndReason).
    Shutdown,
}
