//! Spaces scheduled ahead. A signed-in host schedules a space (title, topics, start time up to
//! [`MAX_AHEAD`] away), may cancel it, and starts it with `create {schedule}`: the live space
//! then has the schedule's id, so whoever asked to be reminded of that id knows it went live
//! from the directory alone. Listeners (signed in) turn a reminder on or off.

use std::sync::Arc;

use confab_proto::{ErrorCode, MAX_TITLE_CHARS, Scheduled, SpaceId};
use rand::RngExt as _;

use crate::db::{Db, ScheduleRecord};
use crate::signaling::{clean, clean_topics};

/// How far ahead a space may be scheduled, in seconds (30 days).
pub const MAX_AHEAD: i64 = 30 * 24 * 60 * 60;

/// Why a schedule request was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("{1}")]
    Invalid(ErrorCode, String),
    #[error("no scheduled space has this id")]
    NotFound,
    #[error("only the host who scheduled it may do this")]
    NotHost,
    #[error("the space is not scheduled any more (live or cancelled)")]
    NotScheduled,
    #[error(transparent)]
    Storage(#[from] anyhow::Error),
}

impl ScheduleError {
    /// The stable code sent to clients.
    pub fn code(&self) -> ErrorCode {
        match self {
            ScheduleError::Invalid(code, _) => *code,
            ScheduleError::NotFound => ErrorCode::NoSuchSpace,
            ScheduleError::NotHost => ErrorCode::NotAllowed,
            ScheduleError::NotScheduled => ErrorCode::SpaceEnded,
            ScheduleError::Storage(_) => ErrorCode::Internal,
        }
    }
}

pub(crate) fn to_wire(r: ScheduleRecord) -> Scheduled {
    Scheduled {
        id: r.id,
        host: r.host,
        title: r.title,
        topics: r.topics,
        starts_at: r.starts_at,
        state: r.state,
    }
}

/// The schedules of one server.
pub struct Schedules {
    db: Arc<Db>,
}

impl Schedules {
    pub(crate) fn new(db: Arc<Db>) -> Schedules {
        Schedules { db }
    }

    /// Schedules a space by `host` to start at `starts_at` (Unix seconds, in the next 30 days).
    pub fn schedule(
        &self,
        host: &str,
        title: &str,
        topics: &[String],
        starts_at: i64,
        now: i64,
    ) -> Result<ScheduleRecord, ScheduleError> {
        let invalid = |(code, msg): (ErrorCode, String)| ScheduleError::Invalid(code, msg);
        let title = clean("title", title, MAX_TITLE_CHARS).map_err(invalid)?;
        let topics = clean_topics(topics).map_err(invalid)?;
        if starts_at <= now || starts_at > now + MAX_AHEAD {
            return Err(ScheduleError::Invalid(
                ErrorCode::InvalidInput,
                "a space starts in the future, at most 30 days ahead".to_owned(),
            ));
        }
        let bytes: [u8; SpaceId::LEN] = rand::rng().random();
        let record = ScheduleRecord {
            id: SpaceId::from_entropy(bytes).as_str().to_owned(),
            host: host.to_owned(),
            title,
            topics,
            starts_at,
            state: "scheduled".to_owned(),
        };
        self.db.insert_schedule(&record)?;
        Ok(record)
    }

    /// Spaces still scheduled, soonest first.
    pub fn upcoming(&self) -> anyhow::Result<Vec<ScheduleRecord>> {
        self.db.upcoming_schedules()
    }

    /// The host cancels a scheduled space.
    pub fn cancel(&self, host: &str, id: &str) -> Result<(), ScheduleError> {
        self.owned(host, id)?;
        if !self.db.set_schedule_state(id, "cancelled")? {
            return Err(ScheduleError::NotScheduled);
        }
        Ok(())
    }

    /// Checks that `host` may start `id` now; the caller then opens the space under that id
    /// and calls [`Schedules::started`].
    pub fn startable(&self, host: &str, id: &str) -> Result<ScheduleRecord, ScheduleError> {
        let record = self.owned(host, id)?;
        if record.state != "scheduled" {
            return Err(ScheduleError::NotScheduled);
        }
        Ok(record)
    }

    /// Marks a schedule live (its space is open).
    pub fn started(&self, id: &str) -> Result<(), ScheduleError> {
        if !self.db.set_schedule_state(id, "live")? {
            return Err(ScheduleError::NotScheduled);
        }
        Ok(())
    }

    /// `user` turns their reminder for a scheduled space on or off.
    pub fn remind(&self, user: &str, id: &str, on: bool) -> Result<(), ScheduleError> {
        let record = self.db.schedule(id)?.ok_or(ScheduleError::NotFound)?;
        if on && record.state != "scheduled" {
            return Err(ScheduleError::NotScheduled);
        }
        self.db.set_reminder(id, user, on)?;
        Ok(())
    }

    /// What `user` asked to be reminded of.
    pub fn reminders(&self, user: &str) -> anyhow::Result<Vec<ScheduleRecord>> {
        self.db.reminders_of(user)
    }

    fn owned(&self, host: &str, id: &str) -> Result<ScheduleRecord, ScheduleError> {
        let record = self.db.schedule(id)?.ok_or(ScheduleError::NotFound)?;
        if record.host != host {
            return Err(ScheduleError::NotHost);
        }
        Ok(record)
    }
}
