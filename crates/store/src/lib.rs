//! The Confab desktop app's local cache: the hosts you follow, the accounts you blocked, the spaces of theirs the app has
//! seen (so the list still shows them when they are offline), notification dedupe, and settings.
//!
//! Contract: one SQLite file per profile (see [`default_path`]), opened in WAL mode and migrated
//! forward by `PRAGMA user_version`. A file written by a newer Confab (a higher version than
//! [`SCHEMA_VERSION`]) is refused with [`StoreError::SchemaTooNew`] before anything is written
//! to it. All SQL lives in this crate; callers see typed records. Every time is `i64` seconds
//! since the Unix epoch, passed in by the caller: the store never reads a clock, so behaviour is
//! a function of its inputs.
//!
//! What it never does: panic on what it reads back. A row that a hand edit or a corrupt file
//! made unreadable (a space id that is not an id, an unknown state, a negative listener count, a
//! value of the wrong type) is skipped by the query that meets it, silently and without logging:
//! the rest of the cache stays usable and the next write of that key replaces the bad row.
//! Errors SQLite itself reports (a damaged page, a locked file) are returned as [`StoreError`].
//! It also never talks to the network, and it never runs a migration on a file it does not
//! understand.
//!
//! A [`Store`] owns one connection: it is `Send` but not `Sync`, so share it behind a mutex.
//! Methods that write take `&mut self`, and each runs in one transaction.

mod blocks;
mod error;
mod follows;
mod notifications;
mod paths;
mod rows;
mod schema;
mod settings;
mod spaces;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use error::StoreError;
pub use follows::FollowedHost;
pub use paths::{MAX_PROFILE_CHARS, default_path};
pub use schema::SCHEMA_VERSION;
pub use spaces::SeenSpace;

/// The open cache.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens the cache at `path`, creating the file and its parent directories if needed, and
    /// migrates it to [`SCHEMA_VERSION`].
    ///
    /// `path` is taken literally (never as a `file:` URI). A file that is not a SQLite database
    /// is [`StoreError::NotADatabase`]; one from a newer Confab is [`StoreError::SchemaTooNew`];
    /// in both cases the file is left as it was.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: parent.to_owned(),
                source,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        Self::init(conn, path)
    }

    /// A cache that lives only as long as the value (tests, and a profile-less preview).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?, Path::new(":memory:"))
    }

    fn init(mut conn: Connection, path: &Path) -> Result<Store, StoreError> {
        schema::migrate(&mut conn, path).map_err(|e| match e {
            StoreError::Sqlite(e) if is_not_a_database(&e) => StoreError::NotADatabase {
                path: PathBuf::from(path),
            },
            e => e,
        })?;
        Ok(Store { conn })
    }
}

fn is_not_a_database(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_can_move_to_another_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Store>();
        assert_send::<StoreError>();
    }

    #[test]
    fn open_creates_missing_parent_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("profiles")
            .join("default")
            .join("confab.sqlite3");
        let mut store = Store::open(&path).unwrap();
        store.follow("https://c.example", "ada", 1).unwrap();
        assert!(path.is_file());
    }

    #[test]
    fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confab.sqlite3");
        let junk = b"this is a text file, not a database, and it is long enough to have a header \
                     that SQLite will read and reject as not being one of its own files at all";
        std::fs::write(&path, junk).unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::NotADatabase { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }
}
