//! The hosts the user follows.
//!
//! A host is the pair (server URL, the host's name as that server reports it in
//! `SpaceSummary::host`). Both are compared exactly, byte for byte: `Ada` and `ada` are two
//! hosts, and the caller passes the server URL in one spelling (the configured one).

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::rows::readable_rows;
use crate::{Store, StoreError};

/// One followed host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowedHost {
    pub server: String,
    pub host: String,
    /// When the user followed them (seconds since the Unix epoch).
    pub followed_at: i64,
    /// The last poll that saw one of their spaces live, if the store has seen one.
    pub last_live_at: Option<i64>,
}

impl Store {
    /// Follows `host` on `server` as of `now`. Returns `true` if they were not followed before;
    /// following again is a no-op that keeps the first `followed_at`.
    pub fn follow(&mut self, server: &str, host: &str, now: i64) -> Result<bool, StoreError> {
        let added = self.conn.execute(
            "INSERT INTO follows (server, host, followed_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (server, host) DO NOTHING",
            params![server, host, now],
        )?;
        Ok(added == 1)
    }

    /// Stops following `host` on `server`. Returns `true` if they were followed.
    pub fn unfollow(&mut self, server: &str, host: &str) -> Result<bool, StoreError> {
        let removed = self.conn.execute(
            "DELETE FROM follows WHERE server = ?1 AND host = ?2",
            params![server, host],
        )?;
        Ok(removed == 1)
    }

    /// Whether `host` on `server` is followed.
    pub fn is_following(&self, server: &str, host: &str) -> Result<bool, StoreError> {
        let found = self
            .conn
            .prepare_cached("SELECT 1 FROM follows WHERE server = ?1 AND host = ?2")?
            .query_row(params![server, host], |_| Ok(()))
            .optional()?;
        Ok(found.is_some())
    }

    /// The hosts followed on `server`, ordered by name ignoring case (Unicode lowercase, then
    /// the exact name, so the order is total and stable).
    pub fn followed(&self, server: &str) -> Result<Vec<FollowedHost>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT f.server, f.host, f.followed_at,
                    (SELECT MAX(s.last_seen_at) FROM spaces s
                     WHERE s.server = f.server AND s.host = f.host)
             FROM follows f WHERE f.server = ?1",
        )?;
        let mut hosts = readable_rows(&mut stmt, [server], |row| {
            Some(FollowedHost {
                server: row.get(0).ok()?,
                host: row.get(1).ok()?,
                followed_at: row.get(2).ok()?,
                // Derived from `spaces`: a bad value there loses the hint, not the follow.
                last_live_at: row.get(3).ok().flatten(),
            })
        })?;
        hosts.sort_by_cached_key(|h| (h.host.to_lowercase(), h.host.clone()));
        Ok(hosts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "https://confab.example";

    #[test]
    fn follow_is_idempotent_and_keeps_the_first_time() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.follow(S, "ada", 100).unwrap());
        assert!(!store.follow(S, "ada", 200).unwrap());
        let hosts = store.followed(S).unwrap();
        assert_eq!(
            hosts,
            [FollowedHost {
                server: S.into(),
                host: "ada".into(),
                followed_at: 100,
                last_live_at: None,
            }]
        );
    }

    #[test]
    fn unfollow_reports_whether_anything_changed() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(!store.unfollow(S, "ada").unwrap());
        store.follow(S, "ada", 1).unwrap();
        assert!(store.is_following(S, "ada").unwrap());
        assert!(store.unfollow(S, "ada").unwrap());
        assert!(!store.is_following(S, "ada").unwrap());
        assert!(!store.unfollow(S, "ada").unwrap());
        assert!(store.followed(S).unwrap().is_empty());
    }

    #[test]
    fn hosts_are_per_server_and_case_sensitive() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 1).unwrap();
        assert!(!store.is_following("https://other.example", "ada").unwrap());
        assert!(!store.is_following(S, "Ada").unwrap());
        assert!(store.followed("https://other.example").unwrap().is_empty());
    }

    #[test]
    fn followed_is_sorted_ignoring_case() {
        let mut store = Store::open_in_memory().unwrap();
        for host in ["bob", "Carol", "ada", "Bob", "alan"] {
            store.follow(S, host, 1).unwrap();
        }
        let names: Vec<String> = store
            .followed(S)
            .unwrap()
            .into_iter()
            .map(|h| h.host)
            .collect();
        assert_eq!(names, ["ada", "alan", "Bob", "bob", "Carol"]);
    }
}
