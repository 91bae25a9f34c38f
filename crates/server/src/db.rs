//! The server's SQLite database: every space ever opened.
//!
//! Calls are short and rare (a space opens or ends), so one connection behind a mutex is
//! enough; callers on tokio run them through `spawn_blocking` only where latency matters.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use confab_proto::{SpaceId, SpaceState};
use rusqlite::{Connection, OptionalExtension, params};

/// One row of `spaces`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpaceRecord {
    pub id: SpaceId,
    pub title: String,
    pub host_name: String,
    pub topics: Vec<String>,
    pub host_token: String,
    /// The host's account handle, when the host was signed in.
    pub host_user: Option<String>,
    pub state: SpaceState,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

/// The database handle.
pub struct Db {
    conn: Mutex<Connection>,
}

/// Schema migrations, applied in order; `PRAGMA user_version` counts those applied.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE spaces (
        id TEXT PRIMARY KEY NOT NULL,
        title TEXT NOT NULL,
        host_name TEXT NOT NULL,
        host_token TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('live', 'ended')),
        created_at INTEGER NOT NULL,
        ended_at INTEGER
    );
    CREATE INDEX spaces_by_state ON spaces(state);",
    // Topics as a JSON array of strings.
    "ALTER TABLE spaces ADD COLUMN topics TEXT NOT NULL DEFAULT '[]';",
    // Accounts: a handle (lower case, unique), a profile, each device's Ed25519 public key, and
    // bearer tokens kept only as SHA-256 hashes.
    "CREATE TABLE users (
        handle TEXT PRIMARY KEY NOT NULL,
        display_name TEXT NOT NULL,
        bio TEXT NOT NULL DEFAULT '',
        avatar BLOB,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE device_keys (
        public_key BLOB PRIMARY KEY NOT NULL,
        handle TEXT NOT NULL REFERENCES users(handle),
        added_at INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        hash BLOB PRIMARY KEY NOT NULL,
        handle TEXT NOT NULL REFERENCES users(handle),
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX tokens_by_expiry ON tokens(expires_at);",
    // Accounts a host blocked from all their spaces.
    "CREATE TABLE blocks (
        host TEXT NOT NULL,
        blocked TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (host, blocked)
    );",
    // Abuse reports, for the operator (`confab-server reports`).
    "CREATE TABLE reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        reporter TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('user', 'space')),
        target TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        resolved_at INTEGER,
        resolution TEXT
    );
    CREATE INDEX reports_open ON reports(resolved_at);",
    // Spaces scheduled ahead by signed-in hosts; a scheduled space goes live under its own id.
    "CREATE TABLE schedules (
        id TEXT PRIMARY KEY NOT NULL,
        host TEXT NOT NULL,
        title TEXT NOT NULL,
        topics TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('scheduled', 'live', 'cancelled'))
    );
    CREATE INDEX schedules_upcoming ON schedules(state, starts_at);
    CREATE TABLE reminders (
        schedule TEXT NOT NULL REFERENCES schedules(id),
        user TEXT NOT NULL,
        PRIMARY KEY (schedule, user)
    );",
    // The host's account, so a space restored after a restart keeps its host's identity (and
    // so the host's blocks).
    "ALTER TABLE spaces ADD COLUMN host_user TEXT;",
];

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Db> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> anyhow::Result<Db> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> anyhow::Result<Db> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            anyhow::bail!(
                "database schema version {version} is newer than this server ({}); upgrade the server",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)
                .with_context(|| format!("migration {}", i + 1))?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Db {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| anyhow::anyhow!("database lock poisoned"))
    }

    /// Records a new live space.
    pub fn insert_space(
        &self,
        id: &SpaceId,
        title: &str,
        topics: &[String],
        host_name: &str,
        host_token: &str,
        host_user: Option<&str>,
    ) -> anyhow::Result<SpaceRecord> {
        let created_at = crate::unix_now();
        let topics_json = serde_json::to_string(topics)?;
        self.conn()?.execute(
            "INSERT INTO spaces (id, title, topics, host_name, host_token, state, created_at, host_user) VALUES (?1, ?2, ?3, ?4, ?5, 'live', ?6, ?7)",
            params![id.as_str(), title, topics_json, host_name, host_token, created_at, host_user],
        )?;
        Ok(SpaceRecord {
            id: id.clone(),
            title: title.to_owned(),
            host_name: host_name.to_owned(),
            topics: topics.to_vec(),
            host_token: host_token.to_owned(),
            host_user: host_user.map(str::to_owned),
            state: SpaceState::Live,
            created_at,
            ended_at: None,
        })
    }

    /// Marks a space ended (once: a second call keeps the first end time).
    pub fn end_space(&self, id: &SpaceId) -> anyhow::Result<()> {
        self.conn()?.execute(
            "UPDATE spaces SET state = 'ended', ended_at = ?2 WHERE id = ?1 AND state = 'live'",
            params![id.as_str(), crate::unix_now()],
        )?;
        Ok(())
    }

    /// One space by id.
    pub fn space(&self, id: &SpaceId) -> anyhow::Result<Option<SpaceRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, title, host_name, host_token, state, created_at, ended_at, topics, host_user FROM spaces WHERE id = ?1",
        )?;
        Ok(stmt
            .query_row([id.as_str()], row_to_record)
            .optional()?
            .flatten())
    }

    /// Every space still marked live.
    pub fn live_spaces(&self) -> anyhow::Result<Vec<SpaceRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, title, host_name, host_token, state, created_at, ended_at, topics, host_user FROM spaces WHERE state = 'live' ORDER BY created_at",
        )?;
        let rows = stmt.query_map([], row_to_record)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(rec) = row? {
                out.push(rec);
            }
        }
        Ok(out)
    }
}

/// A row whose id or state is not valid (only possible if someone edited the file by hand) is
/// skipped with a log line rather than failing every query.
/// One row of `users`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub handle: String,
    pub display_name: String,
    pub bio: String,
    pub avatar: Option<Vec<u8>>,
    pub created_at: i64,
}

/// Why an account row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AccountWrite {
    #[error("the handle is taken")]
    HandleTaken,
    #[error("this device key is registered already")]
    KeyTaken,
    #[error("no such user")]
    NoSuchUser,
    #[error(transparent)]
    Db(#[from] anyhow::Error),
}

impl From<rusqlite::Error> for AccountWrite {
    fn from(e: rusqlite::Error) -> AccountWrite {
        AccountWrite::Db(e.into())
    }
}

const USER_COLUMNS: &str =
    "users.handle, users.display_name, users.bio, users.avatar, users.created_at";

fn row_to_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        handle: row.get(0)?,
        display_name: row.get(1)?,
        bio: row.get(2)?,
        avatar: row.get(3)?,
        created_at: row.get(4)?,
    })
}

impl Db {
    /// Creates a user with its first device key, both or neither.
    pub fn insert_user(&self, user: &UserRecord, key: &[u8; 32]) -> Result<(), AccountWrite> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE handle = ?1)",
            params![user.handle],
            |r| r.get(0),
        )?;
        if taken {
            return Err(AccountWrite::HandleTaken);
        }
        let key_taken: bool = tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM device_keys WHERE public_key = ?1)",
            params![&key[..]],
            |r| r.get(0),
        )?;
        if key_taken {
            return Err(AccountWrite::KeyTaken);
        }
        tx.execute(
            "INSERT INTO users (handle, display_name, bio, avatar, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![user.handle, user.display_name, user.bio, user.avatar, user.created_at],
        )?;
        tx.execute(
            "INSERT INTO device_keys (public_key, handle, added_at) VALUES (?1, ?2, ?3)",
            params![&key[..], user.handle, user.created_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Registers another device key for an existing user.
    pub fn add_device_key(
        &self,
        handle: &str,
        key: &[u8; 32],
        now: i64,
    ) -> Result<(), AccountWrite> {
        let conn = self.conn()?;
        let exists: bool = conn.query_row(
            "SELECT EXISTS(SELECT 1 FROM users WHERE handle = ?1)",
            params![handle],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(AccountWrite::NoSuchUser);
        }
        match conn.execute(
            "INSERT INTO device_keys (public_key, handle, added_at) VALUES (?1, ?2, ?3)",
            params![&key[..], handle, now],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(AccountWrite::KeyTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The user a device key belongs to.
    pub fn user_by_key(&self, key: &[u8; 32]) -> anyhow::Result<Option<UserRecord>> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users JOIN device_keys ON device_keys.handle = users.handle
                     WHERE device_keys.public_key = ?1"
                ),
                params![&key[..]],
                row_to_user,
            )
            .optional()?)
    }

    /// A user by handle.
    pub fn user(&self, handle: &str) -> anyhow::Result<Option<UserRecord>> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE handle = ?1"),
                params![handle],
                row_to_user,
            )
            .optional()?)
    }

    /// Replaces a user's profile (display name, bio, avatar).
    pub fn update_profile(&self, user: &UserRecord) -> Result<(), AccountWrite> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE users SET display_name = ?2, bio = ?3, avatar = ?4 WHERE handle = ?1",
            params![user.handle, user.display_name, user.bio, user.avatar],
        )?;
        if n == 0 {
            return Err(AccountWrite::NoSuchUser);
        }
        Ok(())
    }

    /// Stores a token's hash; expired tokens are swept on the way.
    pub fn insert_token(
        &self,
        hash: &[u8; 32],
        handle: &str,
        expires_at: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        let conn = self.conn()?;
        conn.execute("DELETE FROM tokens WHERE expires_at <= ?1", params![now])?;
        conn.execute(
            "INSERT INTO tokens (hash, handle, expires_at) VALUES (?1, ?2, ?3)",
            params![&hash[..], handle, expires_at],
        )?;
        Ok(())
    }

    /// The user holding an unexpired token with this hash.
    pub fn user_by_token(&self, hash: &[u8; 32], now: i64) -> anyhow::Result<Option<UserRecord>> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS} FROM users JOIN tokens ON tokens.handle = users.handle
                     WHERE tokens.hash = ?1 AND tokens.expires_at > ?2"
                ),
                params![&hash[..], now],
                row_to_user,
            )
            .optional()?)
    }

    /// Records that `host` blocked `blocked` from their spaces (again is fine).
    pub fn insert_block(&self, host: &str, blocked: &str) -> anyhow::Result<()> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT OR IGNORE INTO blocks (host, blocked, created_at) VALUES (?1, ?2, ?3)",
            params![host, blocked, crate::unix_now()],
        )?;
        Ok(())
    }

    /// The accounts `host` blocked.
    pub fn blocked_by(&self, host: &str) -> anyhow::Result<Vec<String>> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT blocked FROM blocks WHERE host = ?1 ORDER BY blocked")?;
        let rows = stmt.query_map(params![host], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Files a report; returns its id.
    pub fn insert_report(
        &self,
        reporter: &str,
        kind: &str,
        target: &str,
        reason: &str,
        now: i64,
    ) -> anyhow::Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO reports (reporter, kind, target, reason, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![reporter, kind, target, reason, now],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// Reports, oldest first; only open ones unless `all`.
    pub fn reports(&self, all: bool) -> anyhow::Result<Vec<ReportRecord>> {
        let conn = self.conn()?;
        let sql = if all {
            "SELECT id, reporter, kind, target, reason, created_at, resolved_at, resolution FROM reports ORDER BY id"
        } else {
            "SELECT id, reporter, kind, target, reason, created_at, resolved_at, resolution FROM reports WHERE resolved_at IS NULL ORDER BY id"
        };
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], row_to_report)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One report.
    pub fn report(&self, id: i64) -> anyhow::Result<Option<ReportRecord>> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT id, reporter, kind, target, reason, created_at, resolved_at, resolution FROM reports WHERE id = ?1",
                params![id],
                row_to_report,
            )
            .optional()?)
    }

    /// Marks an open report resolved; false if there is no such open report.
    pub fn resolve_report(&self, id: i64, resolution: &str, now: i64) -> anyhow::Result<bool> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE reports SET resolved_at = ?2, resolution = ?3 WHERE id = ?1 AND resolved_at IS NULL",
            params![id, now, resolution],
        )?;
        Ok(n == 1)
    }

    /// Stores a new scheduled space.
    pub fn insert_schedule(&self, s: &ScheduleRecord) -> anyhow::Result<()> {
        self.conn()?.execute(
            "INSERT INTO schedules (id, host, title, topics, starts_at, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![s.id, s.host, s.title, serde_json::to_string(&s.topics)?, s.starts_at, s.state],
        )?;
        Ok(())
    }

    /// One scheduled space.
    pub fn schedule(&self, id: &str) -> anyhow::Result<Option<ScheduleRecord>> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT id, host, title, topics, starts_at, state FROM schedules WHERE id = ?1",
                params![id],
                row_to_schedule,
            )
            .optional()?)
    }

    /// Spaces still scheduled, soonest first.
    pub fn upcoming_schedules(&self) -> anyhow::Result<Vec<ScheduleRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT id, host, title, topics, starts_at, state FROM schedules WHERE state = 'scheduled' ORDER BY starts_at, id",
        )?;
        let rows = stmt.query_map([], row_to_schedule)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Moves a schedule from `scheduled` to `state`; false if it was not scheduled.
    pub fn set_schedule_state(&self, id: &str, state: &str) -> anyhow::Result<bool> {
        let n = self.conn()?.execute(
            "UPDATE schedules SET state = ?2 WHERE id = ?1 AND state = 'scheduled'",
            params![id, state],
        )?;
        Ok(n == 1)
    }

    /// Turns `user`'s reminder for a schedule on or off.
    pub fn set_reminder(&self, schedule: &str, user: &str, on: bool) -> anyhow::Result<()> {
        let conn = self.conn()?;
        if on {
            conn.execute(
                "INSERT OR IGNORE INTO reminders (schedule, user) VALUES (?1, ?2)",
                params![schedule, user],
            )?;
        } else {
            conn.execute(
                "DELETE FROM reminders WHERE schedule = ?1 AND user = ?2",
                params![schedule, user],
            )?;
        }
        Ok(())
    }

    /// The scheduled spaces `user` asked to be reminded of (any state), soonest first.
    pub fn reminders_of(&self, user: &str) -> anyhow::Result<Vec<ScheduleRecord>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT s.id, s.host, s.title, s.topics, s.starts_at, s.state FROM schedules s
             JOIN reminders r ON r.schedule = s.id WHERE r.user = ?1 ORDER BY s.starts_at, s.id",
        )?;
        let rows = stmt.query_map(params![user], row_to_schedule)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every stored token hash (tests check that no raw token is kept).
    pub fn token_hashes(&self) -> anyhow::Result<Vec<Vec<u8>>> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT hash FROM tokens")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One row of `schedules`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleRecord {
    pub id: String,
    pub host: String,
    pub title: String,
    pub topics: Vec<String>,
    pub starts_at: i64,
    pub state: String,
}

fn row_to_schedule(row: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRecord> {
    let topics: String = row.get(3)?;
    Ok(ScheduleRecord {
        id: row.get(0)?,
        host: row.get(1)?,
        title: row.get(2)?,
        topics: serde_json::from_str(&topics).unwrap_or_default(),
        starts_at: row.get(4)?,
        state: row.get(5)?,
    })
}

/// One row of `reports`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportRecord {
    pub id: i64,
    pub reporter: String,
    pub kind: String,
    pub target: String,
    pub reason: String,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
}

fn row_to_report(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReportRecord> {
    Ok(ReportRecord {
        id: row.get(0)?,
        reporter: row.get(1)?,
        kind: row.get(2)?,
        target: row.get(3)?,
        reason: row.get(4)?,
        created_at: row.get(5)?,
        resolved_at: row.get(6)?,
        resolution: row.get(7)?,
    })
}

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Option<SpaceRecord>> {
    let id: String = row.get(0)?;
    let state: String = row.get(4)?;
    let (Ok(id), Some(state)) = (id.parse::<SpaceId>(), SpaceState::parse(&state)) else {
        tracing::warn!(id, state, "skipping an unreadable spaces row");
        return Ok(None);
    };
    // Topics are ours to write; a hand-edited value that does not parse just loses its topics.
    let topics_json: String = row.get(7)?;
    let topics = serde_json::from_str(&topics_json).unwrap_or_default();
    Ok(Some(SpaceRecord {
        id,
        title: row.get(1)?,
        host_name: row.get(2)?,
        topics,
        host_token: row.get(3)?,
        host_user: row.get(8)?,
        state,
        created_at: row.get(5)?,
        ended_at: row.get(6)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SpaceId {
        s.parse().unwrap()
    }

    #[test]
    fn spaces_survive_reopening_and_end_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let db = Db::open(&path).unwrap();
            db.insert_space(
                &id("aaaaaaaaaaaa"),
                "One",
                &["rust".to_string()],
                "ada",
                "t1",
                Some("ada"),
            )
            .unwrap();
            db.insert_space(
                &id("bbbbbbbbbbbb"),
                "Two",
                &["rust".to_string()],
                "bob",
                "t2",
                None,
            )
            .unwrap();
            db.end_space(&id("bbbbbbbbbbbb")).unwrap();
        }
        let db = Db::open(&path).unwrap();
        let live = db.live_spaces().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].title, "One");
        assert_eq!(live[0].host_token, "t1");
        assert_eq!(live[0].host_user.as_deref(), Some("ada"));
        assert_eq!(live[0].topics, vec!["rust".to_string()]);
        let two = db.space(&id("bbbbbbbbbbbb")).unwrap().unwrap();
        assert_eq!(two.state, SpaceState::Ended);
        let ended_at = two.ended_at.unwrap();
        db.end_space(&id("bbbbbbbbbbbb")).unwrap();
        assert_eq!(
            db.space(&id("bbbbbbbbbbbb")).unwrap().unwrap().ended_at,
            Some(ended_at)
        );
        assert_eq!(db.space(&id("cccccccccccc")).unwrap(), None);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let db = Db::open_in_memory().unwrap();
        db.insert_space(
            &id("aaaaaaaaaaaa"),
            "One",
            &["rust".to_string()],
            "ada",
            "t1",
            None,
        )
        .unwrap();
        assert!(
            db.insert_space(
                &id("aaaaaaaaaaaa"),
                "Again",
                &["rust".to_string()],
                "eve",
                "t2",
                None,
            )
            .is_err()
        );
        assert_eq!(
            db.space(&id("aaaaaaaaaaaa")).unwrap().unwrap().host_name,
            "ada"
        );
    }

    #[test]
    fn a_version_1_database_is_migrated_keeping_its_spaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO spaces (id, title, host_name, host_token, state, created_at) VALUES ('aaaaaaaaaaaa', 'Old', 'ada', 't', 'live', 1)",
                [],
            )
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        let old = db.space(&id("aaaaaaaaaaaa")).unwrap().unwrap();
        assert_eq!(old.title, "Old");
        assert!(old.topics.is_empty());
        assert_eq!(db.live_spaces().unwrap().len(), 1);
    }

    #[test]
    fn a_newer_schema_is_refused_not_clobbered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Db::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer"), "{err}");
    }
}
