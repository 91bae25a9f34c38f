//! `confab-server`: the directory, WebSocket signaling, the SFU and persistence.
//!
//! The server is the authority for every room: each space runs a [`confab_core::Room`] in its
//! own task, and every request (join, end, resume) is checked there, never trusted because a
//! client hid a button. The SFU forwards the loudest few speakers' Opus RTP (by the RFC 6464
//! levels their packets carry), untouched, to every other participant's receive slots; it
//! never decodes or transcodes audio, and forwards nothing for silence.
//!
//! It is a library first, so the desktop app can embed it: [`start`] binds, spawns and returns
//! a [`ServerHandle`] whose [`ServerHandle::shutdown`] stops it cleanly. Spaces live in a SQLite
//! file: after a restart every space is still known, and a live space whose host does not come
//! back within the grace period is marked ended.
//!
//! With a `cluster` section in its config, several servers share rooms over a NATS bus: a room
//! lives on the node where its host opened it, and listeners on other nodes hear it through one
//! relay per node (see the `cluster` module). Without it, the server runs alone.
//!
//! Nothing that arrives from the network may panic the process or affect another room.

pub mod accounts;
mod cluster;
mod config;
mod db;
mod http;
mod loudest;
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
use confab_proto::{ParticipantId, SpaceId, SpaceSummary};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use cluster::ClusterStats;
pub use config::{
    ClusterConfig, DEFAULT_FORWARDED_SPEAKERS, DEFAULT_PORT, FileConfig, ServerConfig,
};
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
    /// The bus to other nodes, when this server is one of several.
    pub(crate) cluster: Option<Arc<cluster::Cluster>>,
    /// Every live uplink's counters, for [`ServerHandle::uplink_stats`].
    pub(crate) uplink_stats: Mutex<HashMap<ParticipantId, Arc<sfu::ForwardStats>>>,
    /// Every participant's peer connection runs on this one socket and thread.
    pub(crate) mux: confab_rtc::Mux,
}

/// What the SFU did with one participant's uplink so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UplinkStats {
    pub participant: ParticipantId,
    /// RTP packets that arrived.
    pub received: u64,
    /// Copies sent to listeners (one per listener per packet).
    pub forwarded: u64,
    /// Packets dropped because the participant may not speak.
    pub refused: u64,
    /// Packets dropped because their audio level said silence.
    pub silent: u64,
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

    /// What this node relayed to and from other nodes; `None` when it runs alone.
    pub fn cluster_stats(&self) -> Option<ClusterStats> {
        self.shared.cluster.as_ref().map(|c| c.stats())
    }

    /// The counters of every uplink now open, by participant.
    pub fn uplink_stats(&self) -> Vec<UplinkStats> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut all: Vec<UplinkStats> = room::lock(&self.shared.uplink_stats)
            .iter()
            .map(|(who, s)| UplinkStats {
                participant: *who,
                received: s.received.load(Relaxed),
                forwarded: s.forwarded.load(Relaxed),
                refused: s.refused.load(Relaxed),
                silent: s.silent.load(Relaxed),
            })
            .collect();
        all.sort_by_key(|s| s.participant);
        all
    }

    /// Stops accepting, closes every connection and peer, and waits for the server task.
    /// Live spaces stay live in the database so their hosts can resume after a restart.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
        if let Some(cluster) = &self.shared.cluster {
            cluster.shutdown().await;
        }
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
    let cluster = match &config.cluster {
        Some(c) => Some(Arc::new(cluster::Cluster::connect(c).await?)),
        None => None,
    };
    // Participant ids must not collide between nodes sharing a room, nor across one node's
    // restarts (the home may still hold the previous run's ids for a moment): a clustered node
    // starts its counter at a random point below 2^52, far apart with overwhelming odds and
    // still exact as a JavaScript number.
    let first_participant = if cluster.is_some() {
        rand::random_range((1u64 << 32)..(1u64 << 52))
    } else {
        1
    };
    let mux = confab_rtc::Mux::start(config.media_ip).context("starting the media thread")?;
    tracing::info!(media = %mux.local_addr(), "media socket");
    let shared = Arc::new(Shared {
        mux,
        config,
        accounts: accounts::Accounts::new(Arc::clone(&db)),
        reports: reports::Reports::new(Arc::clone(&db)),
        schedules: schedules::Schedules::new(Arc::clone(&db)),
        db,
        rooms: Mutex::new(HashMap::new()),
        directory: Mutex::new(HashMap::new()),
        directory_changed: watch::channel(0).0,
        next_participant: AtomicU64::new(first_participant),
        shutdown: shutdown_rx.clone(),
        cluster,
        uplink_stats: Mutex::new(HashMap::new()),
    });
    room::restore_live_spaces(&shared).context("restoring live spaces")?;
    if let Some(cluster) = &shared.cluster {
        cluster.start(&shared).await?;
    }
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
