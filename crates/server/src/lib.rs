//! `confab-server`: the directory, WebSocket signaling, the SFU and persistence.
//!
//! The server is the authority for every room: each space runs a [`confab_core::Room`] in its
//! own task, and every request (join, end, resume) is checked there, never trusted because a
//! client hid a button. The SFU forwards each speaker's Opus RTP, untouched, to every other
//! participant's receive slot; it never decodes or transcodes audio.
//!
//! It is a library first, so the desktop app can embed it: [`start`] binds, spawns and returns
//! a [`ServerHandle`] whose [`ServerHandle::shutdown`] stops it cleanly. Spaces live in a SQLite
//! file: after a restart every space is still known, and a live space whose host does not come
//! back within the grace period is marked ended.
//!
//! Nothing that arrives from the network may panic the process or affect another room.

pub mod accounts;
mod config;
mod db;
mod http;
pub mod overload;
pub mod reports;
mod room;
pub mod schedules;
mod sfu;
mod signaling;

/// Seconds since the Unix epoch (0 for a clock set before it): the server's one wall clock for
/// records, tokens and schedules.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The database's file name inside the data directory.
pub const DB_FILE: &str = "confab-server.sqlite3";

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use confab_proto::{SpaceId, SpaceSummary};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{DEFAULT_PORT, FileConfig, ServerConfig};
pub use db::{Db, SpaceRecord};

/// State shared by every connection and room task.
pub(crate) struct Shared {
    pub(crate) config: ServerConfig,
    pub(crate) db: Arc<Db>,
    pub(crate) accounts: accounts::Accounts,
    pub(crate) reports: reports::Reports,
    pub(crate) schedules: schedules::Schedules,
    pub(crate) rooms: Mutex<HashMap<SpaceId, room::RoomHandle>>,
    /// What the live directory shows, kept current by each room task.
    pub(crate) directory: Mutex<HashMap<SpaceId, SpaceSummary>>,
    /// Bumped on every change of `directory`, so watchers know to send a new snapshot.
    pub(crate) directory_changed: watch::Sender<u64>,
    pub(crate) next_participant: AtomicU64,
    pub(crate) shutdown: watch::Receiver<bool>,
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// The address the server listens on (with the real port when asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes every connection and peer, and waits for the server task.
    /// Live spaces stay live in the database so their hosts can resume after a restart.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        let rooms: Vec<room::RoomHandle> = self
            .shared
            .rooms
            .lock()
            .map(|mut r| r.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        for room in rooms {
            room.stop().await;
        }
    }
}

/// Opens the database, restores live spaces, binds the listener and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let db_path = config.data_dir.join(DB_FILE);
    let db =
        Arc::new(Db::open(&db_path).with_context(|| format!("opening {}", db_path.display()))?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        config,
        accounts: accounts::Accounts::new(Arc::clone(&db)),
        reports: reports::Reports::new(Arc::clone(&db)),
        schedules: schedules::Schedules::new(Arc::clone(&db)),
        db,
        rooms: Mutex::new(HashMap::new()),
        directory: Mutex::new(HashMap::new()),
        directory_changed: watch::channel(0).0,
        next_participant: AtomicU64::new(1),
        shutdown: shutdown_rx.clone(),
    });
    room::restore_live_spaces(&shared).context("restoring live spaces")?;
    let app = http::router(Arc::clone(&shared));
    let mut stop = shutdown_rx;
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    tracing::info!(%addr, "listening");
    Ok(ServerHandle {
        addr,
        shutdown: shutdown_tx,
        task,
        shared,
    })
}
