//! The limits a room enforces.

use std::time::Duration;

use crate::rate::RateLimit;

/// Limits and timings of one room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomConfig {
    /// Most people in the room at once, the host included. The host's seat is always kept for
    /// the host, so listeners get `max_participants - 1` seats; a value of 0 acts as 1.
    pub max_participants: usize,
    /// How long the host's seat stays open after the host's connection is lost (or after a
    /// server restart) before the room ends with [`EndReason::HostGone`](confab_proto::EndReason).
    pub host_grace: Duration,
    /// Most co-hosts at once.
    pub max_cohosts: usize,
    /// Most speakers at once, not counting the host and co-hosts.
    pub max_speakers: usize,
    /// How fast one account may react.
    pub reaction_limit: RateLimit,
    /// How fast one account may chat.
    pub chat_limit: RateLimit,
    /// How long listeners' joins and leaves are gathered before one
    /// [`ServerMsg::Participants`](confab_proto::ServerMsg) announces them all (zero: at once).
    pub roster_tick: Duration,
}

impl RoomConfig {
    /// Seats open to everyone but the host (listeners, and whoever goes up to speak).
    pub(crate) fn listener_seats(&self) -> usize {
        self.max_participants.saturating_sub(1)
    }
}

impl Default for RoomConfig {
    /// 10 000 people; 2 co-hosts and 10 speakers, so 13 on the mic with the host; reactions in
    /// bursts of 5 then one a second; chat in bursts of 3 then one every 2 seconds; roster news
    /// every 150 ms at most.
    fn default() -> Self {
        RoomConfig {
            max_participants: 10_000,
            host_grace: Duration::from_secs(30),
            max_cohosts: 2,
            max_speakers: 10,
            reaction_limit: RateLimit {
                burst: 5,
                every: Duration::from_secs(1),
            },
            chat_limit: RateLimit {
                burst: 3,
                every: Duration::from_secs(2),
            },
            roster_tick: Duration::from_millis(150),
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
        assert_eq!(config.roster_tick, Duration::from_millis(150));
        assert_eq!(config.listener_seats(), 9_999);
        assert_eq!(1 + config.max_cohosts + config.max_speakers, 13);
        let tiny = RoomConfig {
            max_participants: 0,
            ..config
        };
        assert_eq!(tiny.listener_seats(), 0);
    }
}
