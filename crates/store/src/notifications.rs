//! "Went live" notification dedupe, so a host restarting a space five times in a minute
//! raises one notification.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::{Store, StoreError};

impl Store {
    /// Whether to notify about `host` on `server` now: `true` (and `now` is recorded) unless a
    /// notification for them was recorded less than `window_secs` ago; `false` records
    /// nothing, so the window runs from the notification that was shown, not from the last
    /// attempt. A `window_secs` of zero or less never suppresses.
    ///
    /// A recorded time *after* `now` (the caller's clock stepped back) also suppresses while
    /// it is less than `window_secs` away, and is replaced once it is further: a clock that
    /// jumped back an hour must not silence a host for that hour.
    pub fn should_notify(
        &mut self,
        server: &str,
        host: &str,
        now: i64,
        window_secs: i64,
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx
            .prepare_cached("SELECT notified_at FROM notified WHERE server = ?1 AND host = ?2")?
            // An unreadable time counts as no record, and is overwritten below.
            .query_row(params![server, host], |row| Ok(row.get(0).ok()))
            .optional()?
            .flatten();
        if last.is_some_and(|last| within(last, now, window_secs)) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO notified (server, host, notified_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (server, host) DO UPDATE SET notified_at = excluded.notified_at",
            params![server, host, now],
        )?;
        tx.commit()?;
        Ok(true)
    }
}

/// Whether `last` is less than `window_secs` from `now`, either way. `abs_diff` cannot
/// overflow, whatever the caller passes.
fn within(last: i64, now: i64, window_secs: i64) -> bool {
    window_secs > 0 && last.abs_diff(now) < window_secs.unsigned_abs()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "https://confab.example";

    #[test]
    fn the_window_runs_from_the_shown_notification() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.should_notify(S, "ada", 1000, 60).unwrap());
        assert!(!store.should_notify(S, "ada", 1030, 60).unwrap());
        assert!(!store.should_notify(S, "ada", 1059, 60).unwrap());
        assert!(store.should_notify(S, "ada", 1060, 60).unwrap());
        assert!(!store.should_notify(S, "ada", 1061, 60).unwrap());
    }

    #[test]
    fn hosts_and_servers_have_their_own_windows() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.should_notify(S, "ada", 0, 60).unwrap());
        assert!(store.should_notify(S, "bob", 1, 60).unwrap());
        assert!(
            store
                .should_notify("https://b.example", "ada", 2, 60)
                .unwrap()
        );
        assert!(!store.should_notify(S, "ada", 3, 60).unwrap());
    }

    #[test]
    fn a_clock_stepping_back_far_does_not_silence_a_host() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.should_notify(S, "ada", 10_000, 60).unwrap());
        assert!(!store.should_notify(S, "ada", 9_990, 60).unwrap());
        assert!(store.should_notify(S, "ada", 6_400, 60).unwrap());
        assert!(!store.should_notify(S, "ada", 6_401, 60).unwrap());
    }

    #[test]
    fn a_zero_or_negative_window_never_suppresses() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.should_notify(S, "ada", 5, 0).unwrap());
        assert!(store.should_notify(S, "ada", 5, 0).unwrap());
        assert!(store.should_notify(S, "ada", 5, -10).unwrap());
    }

    #[test]
    fn extreme_times_do_not_overflow() {
        assert!(!within(i64::MIN, i64::MAX, i64::MAX));
        assert!(within(i64::MAX, i64::MAX, i64::MAX));
        assert!(!within(0, 0, i64::MIN));
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.should_notify(S, "ada", i64::MIN, i64::MAX).unwrap());
        assert!(store.should_notify(S, "ada", i64::MAX, i64::MAX).unwrap());
        assert!(
            !store
                .should_notify(S, "ada", i64::MAX - 1, i64::MAX)
                .unwrap()
        );
    }
}
