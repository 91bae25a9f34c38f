//! Abuse reports. A signed-in user reports another user (by handle) or a space (by id) with a
//! reason; reports persist in the server's database; the operator reads and resolves them with
//! `confab-server reports list|show|resolve`, which opens the same database (safe while the
//! server runs: SQLite in WAL mode).

use std::path::Path;
use std::sync::Arc;

use crate::db::{Db, ReportRecord};

/// The longest reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 1000;

/// What a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    User,
    Space,
}

impl ReportKind {
    fn as_str(self) -> &'static str {
        match self {
            ReportKind::User => "user",
            ReportKind::Space => "space",
        }
    }

    /// `user` or `space`.
    pub fn parse(s: &str) -> Option<ReportKind> {
        match s {
            "user" => Some(ReportKind::User),
            "space" => Some(ReportKind::Space),
            _ => None,
        }
    }
}

/// Why a report could not be filed or resolved.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("a reason is 1 to {MAX_REASON_CHARS} characters")]
    BadReason,
    #[error("there is no {0} {1:?} to report")]
    NoTarget(&'static str, String),
    #[error("report {0} does not exist or is resolved already")]
    NotOpen(i64),
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

/// The reports of one server's database.
pub struct Reports {
    db: Arc<Db>,
}

impl Reports {
    pub(crate) fn new(db: Arc<Db>) -> Reports {
        Reports { db }
    }

    /// Opens the database in `data_dir` (as the server keeps it) for the operator's commands.
    pub fn open(data_dir: &Path) -> anyhow::Result<Reports> {
        let path = data_dir.join(crate::DB_FILE);
        anyhow::ensure!(path.exists(), "no server database at {}", path.display());
        Ok(Reports::new(Arc::new(Db::open(&path)?)))
    }

    /// Files a report by `reporter` (a signed-in handle) about an existing user or space.
    pub fn file(
        &self,
        reporter: &str,
        kind: ReportKind,
        target: &str,
        reason: &str,
        now: i64,
    ) -> Result<i64, ReportError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > MAX_REASON_CHARS {
            return Err(ReportError::BadReason);
        }
        let target = target.trim();
        let exists = match kind {
            ReportKind::User => self.db.user(&target.to_ascii_lowercase())?.is_some(),
            ReportKind::Space => match target.parse() {
                Ok(id) => self.db.space(&id)?.is_some(),
                Err(_) => false,
            },
        };
        if !exists {
            return Err(ReportError::NoTarget(kind.as_str(), target.to_owned()));
        }
        let target = match kind {
            ReportKind::User => target.to_ascii_lowercase(),
            ReportKind::Space => target.to_owned(),
        };
        Ok(self
            .db
            .insert_report(reporter, kind.as_str(), &target, reason, now)?)
    }

    /// Open reports, oldest first (all of them with `all`).
    pub fn list(&self, all: bool) -> anyhow::Result<Vec<ReportRecord>> {
        self.db.reports(all)
    }

    /// One report.
    pub fn show(&self, id: i64) -> anyhow::Result<Option<ReportRecord>> {
        self.db.report(id)
    }

    /// Resolves an open report with the operator's note.
    pub fn resolve(&self, id: i64, note: &str, now: i64) -> Result<ReportRecord, ReportError> {
        if !self.db.resolve_report(id, note.trim(), now)? {
            return Err(ReportError::NotOpen(id));
        }
        self.db.report(id)?.ok_or(ReportError::NotOpen(id))
    }
}

/// One line per report for `reports list`.
pub fn list_line(r: &ReportRecord) -> String {
    let state = if r.resolved_at.is_some() {
        "resolved"
    } else {
        "open"
    };
    let reason: String = r.reason.chars().take(60).collect();
    format!(
        "{}\t{}\t{} {}\tby {}\t{}",
        r.id, state, r.kind, r.target, r.reporter, reason
    )
}

/// The whole report for `reports show`.
pub fn details(r: &ReportRecord) -> String {
    let mut s = format!(
        "report {}\nabout: {} {}\nby: {}\nfiled at: {} (Unix seconds)\nreason: {}\n",
        r.id, r.kind, r.target, r.reporter, r.created_at, r.reason
    );
    match (r.resolved_at, &r.resolution) {
        (Some(at), note) => s.push_str(&format!(
            "resolved at: {at}\nresolution: {}\n",
            note.as_deref().unwrap_or("")
        )),
        _ => s.push_str("state: open\n"),
    }
    s
}
