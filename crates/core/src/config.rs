//! The limits a room enforces.

use std::time::Duration;

/// Limits and timings of one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    /// Most people in the room at once, the host included. The host's seat is always kept for
    /// the host, so listeners get `max_participants - 1` seats; a value of 0 acts as 1.
    pub max_participants: usize,
    /// How long the host's seat stays open after the host's connection is lost (or after a
    /// server restart) before the room ends with [`EndReason::HostGone`](confab_proto::EndReason).
    pub host_grace: Duration,
}

impl RoomConfig {
    /// Seats open to listeners.
    pub(crate) fn listener_seats(&self) -> usize {
        self.max_participants.saturating_sub(1)
    }
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            max_participants: 10_000,
            host_grace: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_host_seat() {
        let config = RoomConfig::default();
        assert_eq!(config.max_participants, 10_000);
        assert_eq!(config.host_grace, Duration::from_secs(30));
        assert_eq!(config.listener_seats(), 9_999);
        let tiny = RoomConfig {
            max_participants: 0,
            ..config
        };
        assert_eq!(tiny.listener_seats(), 0);
    }
}
