//! Spaces the app has seen live, so followed hosts' spaces still show once they end.
//!
//! The app polls a server's directory and hands the live list to [`Store::record_spaces`].
//! Every live space is recorded (a space seen before its host was followed must not count as
//! new later); ended spaces are kept only for followed hosts, so the file grows with the people
//! the user follows, not with the size of the directory.

use std::collections::HashSet;

use confab_proto::{SpaceId, SpaceState, SpaceSummary};
use rusqlite::{OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use crate::rows::readable_rows;
use crate::{Store, StoreError};

/// The last thing the app knows about a space of a followed host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenSpace {
    pub id: SpaceId,
    pub title: String,
    pub host: String,
    /// The listener count of the last poll that saw the space live.
    pub listeners: u32,
    pub state: SpaceState,
    /// The first poll that saw the space live.
    pub first_seen_at: i64,
    /// The last poll that saw the space live.
    pub last_seen_at: i64,
    /// The first poll that no longer listed it; `None` while it is live.
    pub ended_at: Option<i64>,
}

impl Store {
    /// Records the directory of `server` as polled at `now`: `live` is every space it lists.
    ///
    /// Each listed space is stored (or refreshed: title, host, listener count, last seen) as
    /// live; a space of `server` stored as live but missing from `live` is marked ended at
    /// `now`. Returns the listed spaces, in their order, whose id this store has never seen
    /// live before and whose host is followed: the ones worth a "went live" notification.
    /// A space that ends and comes back under the same id is not new; a new id from the same
    /// host is. The whole poll is one transaction.
    pub fn record_spaces(
        &mut self,
        server: &str,
        live: &[SpaceSummary],
        now: i64,
    ) -> Result<Vec<SpaceSummary>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut newly_live = Vec::new();
        {
            // Read as plain text, not `SpaceId`, so a hand-edited id still gets ended.
            let mut stmt =
                tx.prepare_cached("SELECT id FROM spaces WHERE server = ?1 AND state = 'live'")?;
            let mut missing: HashSet<String> =
                readable_rows(&mut stmt, [server], |row| row.get(0).ok())?
                    .into_iter()
                    .collect();

            let mut seen =
                tx.prepare_cached("SELECT 1 FROM spaces WHERE server = ?1 AND id = ?2")?;
            let mut followed =
                tx.prepare_cached("SELECT 1 FROM follows WHERE server = ?1 AND host = ?2")?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO spaces
                    (server, id, title, host, listeners, state, first_seen_at, last_seen_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, 'live', ?6, ?6)
                 ON CONFLICT (server, id) DO UPDATE SET
                    title = excluded.title,
                    host = excluded.host,
                    listeners = excluded.listeners,
                    state = 'live',
                    last_seen_at = excluded.last_seen_at,
                    ended_at = NULL",
            )?;
            for space in live {
                let id = space.id.as_str();
                missing.remove(id);
                let seen_before = seen
                    .query_row(params![server, id], |_| Ok(()))
                    .optional()?
                    .is_some();
                upsert.execute(params![
                    server,
                    id,
                    space.title,
                    space.host,
                    space.listeners,
                    now
                ])?;
                if !seen_before
                    && followed
                        .query_row(params![server, space.host], |_| Ok(()))
                        .optional()?
                        .is_some()
                {
                    newly_live.push(space.clone());
                }
            }

            let mut end = tx.prepare_cached(
                "UPDATE spaces SET state = 'ended', ended_at = ?3
                 WHERE server = ?1 AND id = ?2 AND state = 'live'",
            )?;
            for id in &missing {
                end.execute(params![server, id, now])?;
            }
            tx.execute(
                "DELETE FROM spaces
                 WHERE server = ?1 AND state = 'ended' AND NOT EXISTS
                    (SELECT 1 FROM follows f WHERE f.server = spaces.server AND f.host = spaces.host)",
                [server],
            )?;
        }
        tx.commit()?;
        Ok(newly_live)
    }

    /// The known spaces of the hosts followed on `server`, live and ended, newest first (by
    /// the last poll that saw them live; live spaces therefore come first).
    pub fn last_spaces_of_followed(&self, server: &str) -> Result<Vec<SeenSpace>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT s.id, s.title, s.host, s.listeners, s.state,
                    s.first_seen_at, s.last_seen_at, s.ended_at
             FROM spaces s JOIN follows f ON f.server = s.server AND f.host = s.host
             WHERE s.server = ?1
             ORDER BY s.last_seen_at DESC, s.first_seen_at DESC, s.id",
        )?;
        readable_rows(&mut stmt, [server], |row| {
            Some(SeenSpace {
                id: row.get::<_, String>(0).ok()?.parse().ok()?,
                title: row.get(1).ok()?,
                host: row.get(2).ok()?,
                listeners: u32::try_from(row.get::<_, i64>(3).ok()?).ok()?,
                state: SpaceState::parse(&row.get::<_, String>(4).ok()?)?,
                first_seen_at: row.get(5).ok()?,
                last_seen_at: row.get(6).ok()?,
                ended_at: row.get(7).ok()?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "https://confab.example";

    /// A directory line as the app receives it: decoded from the server's JSON.
    fn summary(id: &str, host: &str, listeners: u32) -> SpaceSummary {
        serde_json::from_value(serde_json::json!({
            "id": id,
            "title": format!("{host}'s space"),
            "host": host,
            "listeners": listeners,
        }))
        .unwrap()
    }

    fn ids(spaces: &[SpaceSummary]) -> Vec<&str> {
        spaces.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn a_followed_hosts_new_space_is_returned_once() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 0).unwrap();
        let a = summary("aaaaaaaaaaaa", "ada", 3);
        let b = summary("bbbbbbbbbbbb", "bob", 1);
        let new = store.record_spaces(S, &[a.clone(), b.clone()], 10).unwrap();
        assert_eq!(ids(&new), ["aaaaaaaaaaaa"]);
        let new = store.record_spaces(S, &[a.clone(), b], 20).unwrap();
        assert!(new.is_empty(), "{new:?}");
    }

    #[test]
    fn listed_twice_in_one_poll_is_returned_once() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 0).unwrap();
        let a = summary("aaaaaaaaaaaa", "ada", 3);
        let new = store.record_spaces(S, &[a.clone(), a.clone()], 10).unwrap();
        assert_eq!(ids(&new), ["aaaaaaaaaaaa"]);
    }

    #[test]
    fn spaces_refresh_while_live_and_end_when_missing() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 0).unwrap();
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "ada", 3)], 10)
            .unwrap();
        let mut renamed = summary("aaaaaaaaaaaa", "ada", 7);
        renamed.title = "Renamed".into();
        store.record_spaces(S, &[renamed], 20).unwrap();
        let seen = store.last_spaces_of_followed(S).unwrap();
        assert_eq!(
            seen,
            [SeenSpace {
                id: "aaaaaaaaaaaa".parse().unwrap(),
                title: "Renamed".into(),
                host: "ada".into(),
                listeners: 7,
                state: SpaceState::Live,
                first_seen_at: 10,
                last_seen_at: 20,
                ended_at: None,
            }]
        );

        store.record_spaces(S, &[], 30).unwrap();
        let seen = store.last_spaces_of_followed(S).unwrap();
        assert_eq!(seen[0].state, SpaceState::Ended);
        assert_eq!(seen[0].ended_at, Some(30));
        assert_eq!(seen[0].last_seen_at, 20);

        // A later empty poll keeps the first end time.
        store.record_spaces(S, &[], 40).unwrap();
        assert_eq!(
            store.last_spaces_of_followed(S).unwrap()[0].ended_at,
            Some(30)
        );
    }

    #[test]
    fn a_space_back_under_the_same_id_is_live_again_but_not_new() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 0).unwrap();
        let a = summary("aaaaaaaaaaaa", "ada", 3);
        assert_eq!(
            store
                .record_spaces(S, std::slice::from_ref(&a), 10)
                .unwrap()
                .len(),
            1
        );
        store.record_spaces(S, &[], 20).unwrap();
        assert!(store.record_spaces(S, &[a], 30).unwrap().is_empty());
        let seen = store.last_spaces_of_followed(S).unwrap();
        assert_eq!(seen[0].state, SpaceState::Live);
        assert_eq!(seen[0].ended_at, None);
        assert_eq!(seen[0].first_seen_at, 10);
    }

    #[test]
    fn newest_first_and_only_followed_hosts() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 0).unwrap();
        store.follow(S, "cy", 0).unwrap();
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "ada", 1)], 10)
            .unwrap();
        store
            .record_spaces(
                S,
                &[
                    summary("cccccccccccc", "cy", 1),
                    summary("bbbbbbbbbbbb", "bob", 1),
                ],
                20,
            )
            .unwrap();
        let seen: Vec<String> = store
            .last_spaces_of_followed(S)
            .unwrap()
            .into_iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(seen, ["cccccccccccc", "aaaaaaaaaaaa"]);
    }

    #[test]
    fn servers_do_not_end_each_others_spaces() {
        let mut store = Store::open_in_memory().unwrap();
        store.follow(S, "ada", 0).unwrap();
        store.follow("https://b.example", "ada", 0).unwrap();
        store
            .record_spaces(S, &[summary("aaaaaaaaaaaa", "ada", 1)], 10)
            .unwrap();
        store.record_spaces("https://b.example", &[], 20).unwrap();
        assert_eq!(
            store.last_spaces_of_followed(S).unwrap()[0].state,
            SpaceState::Live
        );
        assert!(
            store
                .last_spaces_of_followed("https://b.example")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn ended_spaces_of_hosts_not_followed_are_dropped() {
        let mut store = Store::open_in_memory().unwrap();
        store
            .record_spaces(S, &[summary("bbbbbbbbbbbb", "bob", 1)], 10)
            .unwrap();
        // Seen while live, so following now does not make it new.
        store.follow(S, "bob", 15).unwrap();
        assert!(
            store
                .record_spaces(S, &[summary("bbbbbbbbbbbb", "bob", 1)], 20)
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.followed(S).unwrap()[0].last_live_at, Some(20));
        store.unfollow(S, "bob").unwrap();
        store.record_spaces(S, &[], 30).unwrap();
        store.follow(S, "bob", 40).unwrap();
        assert!(store.last_spaces_of_followed(S).unwrap().is_empty());
        assert_eq!(store.followed(S).unwrap()[0].last_live_at, None);
    }
}
