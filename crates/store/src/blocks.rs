//! Accounts the user blocked for themself, per server: the app hides their audio, reactions
//! and chat. (Blocking someone from your own spaces is the server's business, not this.)

use rusqlite::params;

use crate::rows::readable_rows;
use crate::{Store, StoreError};

impl Store {
    /// Blocks `handle` on `server` as of `now`. Returns `true` if it was not blocked before.
    pub fn block(&mut self, server: &str, handle: &str, now: i64) -> Result<bool, StoreError> {
        let added = self.conn.execute(
            "INSERT INTO blocked (server, handle, blocked_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (server, handle) DO NOTHING",
            params![server, handle, now],
        )?;
        Ok(added == 1)
    }

    /// Unblocks `handle` on `server`. Returns `true` if it was blocked.
    pub fn unblock(&mut self, server: &str, handle: &str) -> Result<bool, StoreError> {
        let removed = self.conn.execute(
            "DELETE FROM blocked WHERE server = ?1 AND handle = ?2",
            params![server, handle],
        )?;
        Ok(removed == 1)
    }

    /// The handles blocked on `server`, in order of handle.
    pub fn blocked(&self, server: &str) -> Result<Vec<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT handle FROM blocked WHERE server = ?1 ORDER BY handle")?;
        readable_rows(&mut stmt, [server], |row| row.get(0).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "https://confab.example";

    #[test]
    fn blocks_are_per_server_idempotent_and_undone_by_unblock() {
        let mut store = Store::open_in_memory().unwrap();
        assert!(store.block(S, "bob", 1).unwrap());
        assert!(!store.block(S, "bob", 2).unwrap());
        assert!(store.block(S, "al", 3).unwrap());
        assert_eq!(store.blocked(S).unwrap(), ["al", "bob"]);
        assert!(store.blocked("https://other.example").unwrap().is_empty());
        assert!(store.unblock(S, "bob").unwrap());
        assert!(!store.unblock(S, "bob").unwrap());
        assert_eq!(store.blocked(S).unwrap(), ["al"]);
    }
}
