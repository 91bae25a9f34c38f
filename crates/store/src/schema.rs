//! The schema and its migrations.
//!
//! `PRAGMA user_version` counts the migrations applied. A migration is appended, never edited:
//! files in the wild were built by the old text.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// Migrations, in order. Tables are `STRICT` so a value of the wrong type cannot be written by
/// any client that respects the schema; readers still skip rows they cannot read (crate docs).
const MIGRATIONS: &[&str] = &[
    "
    CREATE TABLE follows (
        server TEXT NOT NULL,
        host TEXT NOT NULL,
        followed_at INTEGER NOT NULL,
        PRIMARY KEY (server, host)
    ) STRICT;

    CREATE TABLE spaces (
        server TEXT NOT NULL,
        id TEXT NOT NULL,
        title TEXT NOT NULL,
        host TEXT NOT NULL,
        listeners INTEGER NOT NULL CHECK (listeners >= 0),
        state TEXT NOT NULL CHECK (state IN ('live', 'ended')),
        first_seen_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        ended_at INTEGER,
        PRIMARY KEY (server, id)
    ) STRICT;
    CREATE INDEX spaces_by_host ON spaces (server, host);
    CREATE INDEX spaces_by_state ON spaces (server, state);

    CREATE TABLE notified (
        server TEXT NOT NULL,
        host TEXT NOT NULL,
        notified_at INTEGER NOT NULL,
        PRIMARY KEY (server, host)
    ) STRICT;

    CREATE TABLE settings (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;
",
    "
    CREATE TABLE blocked (
        server TEXT NOT NULL,
        handle TEXT NOT NULL,
        blocked_at INTEGER NOT NULL,
        PRIMARY KEY (server, handle)
    ) STRICT;
",
];

/// The schema version this build writes and the highest it opens.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings `conn` to [`SCHEMA_VERSION`], refusing (without writing) a file it does not understand.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    // Check before anything writes: even switching to WAL rewrites the file header, and a file
    // from a newer Confab must come back to it byte for byte.
    let applied = applied_migrations(user_version(conn)?, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // The cache is rebuilt from the server on the next poll, so a crash may lose the last
    // transaction (NORMAL) but never corrupts the file (WAL).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    if applied == MIGRATIONS.len() {
        return Ok(());
    }

    // IMMEDIATE takes the write lock now, so a second process opening the same file waits
    // here and then sees the migrated version instead of running the migrations twice.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let applied = applied_migrations(user_version(&tx)?, path)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.execute_batch(sql)
            .map_err(|source| StoreError::Migration {
                version: i as i64 + 1,
                source,
            })?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// How many migrations a file at `version` has had, or the refusal if it is not ours to touch.
fn applied_migrations(version: i64, path: &Path) -> Result<usize, StoreError> {
    usize::try_from(version)
        .ok()
        .filter(|&n| n <= MIGRATIONS.len())
        .ok_or_else(|| StoreError::SchemaTooNew {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_database_reaches_the_latest_version() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            ["blocked", "follows", "notified", "settings", "spaces"]
        );
    }

    #[test]
    fn a_version_1_file_gains_the_block_list_and_keeps_its_follows() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO follows (server, host, followed_at) VALUES ('s', 'ada', 5)",
            [],
        )
        .unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let follows: i64 = conn
            .query_row("SELECT COUNT(*) FROM follows WHERE host = 'ada'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(follows, 1);
        conn.execute(
            "INSERT INTO blocked (server, handle, blocked_at) VALUES ('s', 'bob', 6)",
            [],
        )
        .unwrap();
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        conn.execute("INSERT INTO settings VALUES ('k', 'v')", [])
            .unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        let v: String = conn
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, "v");
    }

    #[test]
    fn unknown_versions_are_refused() {
        for bad in [SCHEMA_VERSION + 1, 99, -1, i64::MIN, i64::MAX] {
            let err = applied_migrations(bad, Path::new("x")).unwrap_err();
            assert!(
                matches!(err, StoreError::SchemaTooNew { found, supported, .. }
                    if found == bad && supported == SCHEMA_VERSION),
                "{bad}: {err:?}"
            );
        }
        for good in 0..=SCHEMA_VERSION {
            assert_eq!(
                applied_migrations(good, Path::new("x")).unwrap() as i64,
                good
            );
        }
    }

    #[test]
    fn strict_tables_refuse_wrong_types_and_bad_states() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Path::new(":memory:")).unwrap();
        assert!(
            conn.execute("INSERT INTO follows VALUES ('s', 'h', 'yesterday')", [])
                .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO spaces VALUES ('s', 'abcdefghijkl', 't', 'h', 1, 'paused', 1, 1, NULL)",
                [],
            )
            .is_err()
        );
        assert!(
            conn.execute(
                "INSERT INTO spaces VALUES ('s', 'abcdefghijkl', 't', 'h', -1, 'live', 1, 1, NULL)",
                [],
            )
            .is_err()
        );
    }
}
