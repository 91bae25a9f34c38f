//! Why a room refused an input.

use confab_proto::ErrorCode;

/// Why [`Room::handle`](crate::Room::handle) refused an input. A refusal changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    #[error("the space has ended")]
    Ended,
    #[error("the space is full")]
    Full,
    #[error("already in the space")]
    AlreadyIn,
    #[error("not in the space")]
    NotIn,
    #[error("your role does not allow this")]
    NotAllowed,
    #[error("the host is already in the space")]
    HostPresent,
    #[error("a name must have 1 to {max} characters", max = confab_proto::MAX_NAME_CHARS)]
    InvalidName,
    #[error("sign in to do more than listen")]
    SignInRequired,
    #[error("this account is blocked from the host's spaces")]
    Blocked,
    #[error("you were removed from this space")]
    Removed,
    #[error("that person is not in the space")]
    NoSuchParticipant,
    #[error("that person's role or state does not allow this")]
    InvalidTarget,
    #[error("there is no invitation to answer")]
    NoInvite,
    #[error("every seat of that kind on the stage is taken")]
    StageFull,
    #[error("too many too quickly; try again in a moment")]
    RateLimited,
    #[error(
        "a chat message must have 1 to {max} printable characters",
        max = confab_proto::MAX_CHAT_CHARS
    )]
    InvalidChat,
    #[error(
        "a pinned link must be http or https, up to {max} characters",
        max = confab_proto::MAX_LINK_CHARS
    )]
    InvalidLink,
    #[error("that is not one of the reactions")]
    InvalidReaction,
    #[error("no such chat message (or it is too old)")]
    NoSuchMessage,
}

impl RoomError {
    /// The stable code the server sends back for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            RoomError::Ended => ErrorCode::SpaceEnded,
            RoomError::Full => ErrorCode::SpaceFull,
            RoomError::AlreadyIn => ErrorCode::AlreadyInSpace,
            RoomError::NotIn => ErrorCode::NotInSpace,
            RoomError::NotAllowed | RoomError::HostPresent => ErrorCode::NotAllowed,
            RoomError::InvalidName
            | RoomError::InvalidChat
            | RoomError::InvalidLink
            | RoomError::InvalidReaction => ErrorCode::InvalidInput,
            RoomError::SignInRequired => ErrorCode::SignInRequired,
            RoomError::Blocked => ErrorCode::Blocked,
            RoomError::Removed => ErrorCode::Removed,
            RoomError::NoSuchParticipant => ErrorCode::NoSuchParticipant,
            RoomError::InvalidTarget => ErrorCode::InvalidTarget,
            RoomError::NoInvite => ErrorCode::NoInvite,
            RoomError::StageFull => ErrorCode::StageFull,
            RoomError::RateLimited => ErrorCode::RateLimited,
            RoomError::NoSuchMessage => ErrorCode::NoSuchMessage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_wire_code() {
        let cases = [
            (RoomError::Ended, ErrorCode::SpaceEnded),
            (RoomError::Full, ErrorCode::SpaceFull),
            (RoomError::AlreadyIn, ErrorCode::AlreadyInSpace),
            (RoomError::NotIn, ErrorCode::NotInSpace),
            (RoomError::NotAllowed, ErrorCode::NotAllowed),
            (RoomError::HostPresent, ErrorCode::NotAllowed),
            (RoomError::InvalidName, ErrorCode::InvalidInput),
            (RoomError::SignInRequired, ErrorCode::SignInRequired),
            (RoomError::Blocked, ErrorCode::Blocked),
            (RoomError::Removed, ErrorCode::Removed),
            (RoomError::NoSuchParticipant, ErrorCode::NoSuchParticipant),
            (RoomError::InvalidTarget, ErrorCode::InvalidTarget),
            (RoomError::NoInvite, ErrorCode::NoInvite),
            (RoomError::StageFull, ErrorCode::StageFull),
            (RoomError::RateLimited, ErrorCode::RateLimited),
            (RoomError::InvalidChat, ErrorCode::InvalidInput),
            (RoomError::InvalidLink, ErrorCode::InvalidInput),
            (RoomError::InvalidReaction, ErrorCode::InvalidInput),
            (RoomError::NoSuchMessage, ErrorCode::NoSuchMessage),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(
            RoomError::InvalidName.to_string(),
            "a name must have 1 to 64 characters"
        );
        assert_eq!(
            RoomError::InvalidChat.to_string(),
            "a chat message must have 1 to 500 printable characters"
        );
    }
}
