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
    #[error("only the host may do this")]
    NotAllowed,
    #[error("the host is already in the space")]
    HostPresent,
    #[error("a name must have 1 to {max} characters", max = confab_proto::MAX_NAME_CHARS)]
    InvalidName,
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
            RoomError::InvalidName => ErrorCode::InvalidInput,
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
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(
            RoomError::InvalidName.to_string(),
            "a name must have 1 to 64 characters"
        );
    }
}
