//! Rate limits over the `now` the room is given: a generic cell rate algorithm (GCRA), which is
//! a token bucket kept as one instant, so the state is tiny, exact and comparable.

use std::time::{Duration, Instant};

/// At most `burst` at once, then one per `every`. A `burst` of 0 acts as 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub every: Duration,
}

impl RateLimit {
    /// Whether one more event at `now` fits, given the theoretical arrival time `tat` the last
    /// admitted event left behind (`None`: nothing yet). Returns the new `tat` if it fits.
    /// Instants may come out of order: an earlier `now` is only ever stricter.
    pub(crate) fn admit(&self, tat: Option<Instant>, now: Instant) -> Option<Instant> {
        let tat = tat.map_or(now, |t| t.max(now));
        let tolerance = self.every.saturating_mul(self.burst.saturating_sub(1));
        if tat.saturating_duration_since(now) > tolerance {
            return None;
        }
        // An interval too long for an `Instant` admits nothing: refusing is the safe reading.
        tat.checked_add(self.every)
    }

    /// Whether a limiter left at `tat` has fully recovered by `now`, so forgetting it changes
    /// nothing.
    pub(crate) fn is_idle(tat: Instant, now: Instant) -> bool {
        tat <= now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_per_interval() {
        let limit = RateLimit {
            burst: 3,
            every: Duration::from_secs(2),
        };
        let t0 = Instant::now();
        let mut tat = None;
        for _ in 0..3 {
            tat = Some(limit.admit(tat, t0).unwrap());
        }
        assert_eq!(limit.admit(tat, t0), None);
        assert_eq!(limit.admit(tat, t0 + Duration::from_millis(1999)), None);
        let t2 = t0 + Duration::from_secs(2);
        tat = Some(limit.admit(tat, t2).unwrap());
        assert_eq!(limit.admit(tat, t2), None);
        // A long pause refills the whole burst, and no more than it.
        let later = t0 + Duration::from_secs(3600);
        assert!(RateLimit::is_idle(tat.unwrap(), later));
        for _ in 0..3 {
            tat = Some(limit.admit(tat, later).unwrap());
        }
        assert_eq!(limit.admit(tat, later), None);
    }

    #[test]
    fn edge_limits_never_panic() {
        let t0 = Instant::now();
        let zero = RateLimit {
            burst: 0,
            every: Duration::from_secs(1),
        };
        let tat = zero.admit(None, t0);
        assert!(tat.is_some(), "a burst of 0 acts as 1");
        assert_eq!(zero.admit(tat, t0), None);
        let free = RateLimit {
            burst: 1,
            every: Duration::ZERO,
        };
        let mut tat = None;
        for _ in 0..1000 {
            tat = Some(free.admit(tat, t0).unwrap());
        }
        let huge = RateLimit {
            burst: u32::MAX,
            every: Duration::MAX,
        };
        assert_eq!(huge.admit(None, t0), None);
        // Time running backwards is only stricter.
        let one = RateLimit {
            burst: 1,
            every: Duration::from_secs(1),
        };
        let tat = one.admit(None, t0 + Duration::from_secs(10));
        assert_eq!(one.admit(tat, t0), None);
    }
}
