//! What can go wrong opening or querying the cache.

use std::path::PathBuf;

/// An error from the store. Rows that cannot be read are not errors (they are skipped; see the
/// crate docs), so everything here is about the file, the schema or SQLite itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A profile name outside 1 to 32 characters of `a-z`, `0-9`, `_` and `-`. Holds the
    /// (shortened) name as given.
    #[error(
        "profile name {0:?} is not 1 to 32 characters of lowercase letters, digits, '_' and '-'"
    )]
    BadProfile(String),
    /// The platform reports no home directory, so there is nowhere to keep the data.
    #[error("no home directory to keep Confab's data in")]
    NoDataDir,
    /// The directory that should hold the database could not be created.
    #[error("could not create the directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but is not a SQLite database. It was not modified.
    #[error("{path} is not a SQLite database; it was left untouched")]
    NotADatabase { path: PathBuf },
    /// The file's schema is newer than this build understands (a newer Confab wrote it), or
    /// its version is not one Confab ever wrote. It was not modified.
    #[error(
        "{path} has schema version {found}, but this build of Confab understands versions up to \
         {supported}; it was left untouched (was it written by a newer Confab?)"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// Migration `version` failed; all migrations of this open were rolled back, so the file
    /// keeps the version it had.
    #[error("could not migrate the database to schema version {version}")]
    Migration {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    /// SQLite reported an error (a damaged file, a lock held too long, a full disk, ...).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}
