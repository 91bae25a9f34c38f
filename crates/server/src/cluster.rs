//! One room across several server nodes, over a NATS bus.
//!
//! A room lives on the node where its host opened it, its **home**: the home's room task runs
//! the [`confab_core::Room`] and stays the only authority for it. Every node announces its live
//! spaces on the bus (on each change and once a second), so every node's directory lists the
//! whole cluster's spaces. A listener who joins a space on another node talks to a **proxy** on
//! its own node: the proxy takes the same [`RoomCmd`]s a room task takes and carries them to the
//! home as bus requests (join, leave, end, every stage request), so each check runs on the home
//! against the home's state. The home answers, and sends what the room says to each remote
//! participant back over the bus, to that participant's node, which hands it to the connection.
//!
//! Media crosses between nodes once per speaker per node: a node with listeners in a remote room
//! opens one WebRTC relay session to the home (the node acts as one subscriber, with the same
//! fixed slot layout a client has) and copies each slot's packets to its own listeners' slot
//! tracks. The home forwards a speaker's packet to that relay once, however many listeners the
//! node has. The relay's offer and answer go over the bus; media goes over DTLS-SRTP like any
//! other session.
//!
//! What comes off the bus is input like any other: it is size-bounded and parsed with serde into
//! typed messages, bad frames are dropped (never a panic), node names are checked before they
//! become subjects, names are cleaned again on the home, and a remote node may only act for the
//! participants it joined itself. The bus itself is trusted to carry only the cluster's nodes
//! (secure it with the NATS server's own accounts or TLS).
//!
//! A participant of a node who sends audio (the home brought it on stage) gets a session of its
//! own with the home ([`Op::Speak`]): its microphone goes up, and the home's room takes it, and
//! answers its receive slots, as it would a local participant's; that participant then hears the
//! room through that session (the others, not itself) instead of through the node's relay.
//!
//! Not done yet: a host resuming on another node (refused). Hosts connect to the home node.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use async_nats::{Message, Subject};
use bytes::Bytes;
use confab_core::Input;
use confab_proto::{
    ClientMsg, ErrorCode, MAX_NAME_CHARS, ParticipantId, ServerMsg, SpaceId, SpaceInfo,
    SpaceSummary, UserId,
};
use confab_rtc::{LocalAudio, PeerSession, RECV_SLOTS, RemoteAudio, RtcConfig, SessionEvent};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;
use crate::room::{self, Conn, Outbound, Refusal, RoomCmd, lock};
use crate::{Shared, signaling};

/// How often a node announces its spaces even when nothing changed (so a node that starts or
/// restarts learns the cluster's directory within this long).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);

/// A node not heard from for this long is gone: its spaces leave the directory and its
/// participants leave our rooms.
const NODE_SILENT_AFTER: Duration = Duration::from_secs(4);

/// How long a request to a home node may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a proxy waits before opening its relay again after one failed or closed.
const RELAY_RETRY: Duration = Duration::from_secs(1);

/// Bus messages larger than this are dropped unread (a full directory or an SDP is far smaller).
const MAX_BUS_MESSAGE: usize = 512 * 1024;

/// Every node's live spaces, as [`Announce`]s.
const DIRECTORY_SUBJECT: &str = "confab.directory";

/// A node that just started says so: every other node announces its spaces at once.
const HELLO_SUBJECT: &str = "confab.hello";

/// Requests to the rooms whose home is `node`.
fn requests_subject(node: &str) -> String {
    format!("confab.node.{node}.requests")
}

/// What the home of `space` sends to `node`'s participants in it.
fn deliveries_subject(node: &str, space: &SpaceId) -> String {
    format!("confab.node.{node}.room.{space}")
}

/// Whether `node` may name a node: it becomes part of subjects, so no dots, spaces or wildcards.
pub(crate) fn valid_node(node: &str) -> bool {
    (1..=64).contains(&node.len())
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What this node relayed to and from other nodes, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Relay sessions other nodes hold now to rooms whose home is here.
    pub relays_out: u64,
    /// RTP packets this node wrote to those relays (a speaker's packet once per relay).
    pub relay_packets_out: u64,
    /// Relay sessions this node holds now to rooms whose home is elsewhere.
    pub relays_in: u64,
    /// RTP packets that arrived on them.
    pub relay_packets_in: u64,
    /// Copies of those packets this node wrote to its own listeners.
    pub fanout_packets: u64,
}

#[derive(Default)]
struct Counters {
    relays_out: AtomicU64,
    relay_packets_out: Arc<AtomicU64>,
    relays_in: AtomicU64,
    relay_packets_in: AtomicU64,
    fanout_packets: AtomicU64,
}

// ---- What goes over the bus (JSON). ----

/// A node's live spaces (the ones whose home it is).
#[derive(Debug, Serialize, Deserialize)]
struct Announce {
    node: String,
    /// Random per start: a new value means the node restarted and forgot its participants.
    boot: u64,
    spaces: Vec<SpaceSummary>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Hello {
    node: String,
    boot: u64,
}

/// From a node to the home of `space`.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    node: String,
    boot: u64,
    space: SpaceId,
    op: Op,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Op {
    Join {
        who: ParticipantId,
        name: String,
        #[serde(default)]
        user: Option<UserId>,
    },
    Leave {
        who: ParticipantId,
    },
    Disconnected {
        who: ParticipantId,
    },
    End {
        who: ParticipantId,
    },
    Stage {
        who: ParticipantId,
        msg: ClientMsg,
    },
    /// The node's relay offer (the client layout: slot 0 sendrecv, the others recvonly).
    Relay {
        offer: String,
    },
    /// A participant of the node sends audio (it was brought on stage): the node's offer for
    /// that participant's own session with the home (the client layout), which carries its
    /// microphone up and its own receive slots down, as a session on the home would.
    Speak {
        who: ParticipantId,
        offer: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
enum Reply {
    Done,
    Joined { space: SpaceInfo },
    Answer { sdp: String },
    Refused { code: ErrorCode, message: String },
}

/// From the home to one remote participant.
#[derive(Debug, Serialize, Deserialize)]
struct Deliver {
    to: ParticipantId,
    msg: ServerMsg,
}

fn decode<T: serde::de::DeserializeOwned>(payload: &[u8]) -> anyhow::Result<T> {
    anyhow::ensure!(
        payload.len() <= MAX_BUS_MESSAGE,
        "a bus message of {} bytes",
        payload.len()
    );
    Ok(serde_json::from_slice(payload)?)
}

fn encode<T: Serialize>(msg: &T) -> Bytes {
    // Plain data with string keys: serialising cannot fail; an empty payload would be refused
    // by the receiver's decoder, never misread.
    serde_json::to_vec(msg).map(Bytes::from).unwrap_or_default()
}

fn refused(code: ErrorCode, message: impl Into<String>) -> Reply {
    Reply::Refused {
        code,
        message: message.into(),
    }
}

// ---- The cluster. ----

struct RemoteNode {
    boot: u64,
    spaces: Vec<SpaceSummary>,
    seen: Instant,
}

/// The participants a remote node has in rooms homed here.
struct Members {
    boot: u64,
    joined: HashSet<(SpaceId, ParticipantId)>,
}

struct ProxyEntry {
    tx: mpsc::Sender<RoomCmd>,
    task: JoinHandle<()>,
}

/// A relay another node holds to a room homed here; `stop` ends it.
struct RelayEntry {
    id: u64,
    _stop: oneshot::Sender<()>,
}

/// This node's place in the cluster: the bus connection and what it learned from it.
pub(crate) struct Cluster {
    bus: async_nats::Client,
    node: String,
    boot: u64,
    remote: Mutex<HashMap<String, RemoteNode>>,
    /// Proxies for rooms whose home is another node, by space.
    proxies: Mutex<HashMap<SpaceId, ProxyEntry>>,
    /// Home side: remote nodes' participants in our rooms, by node.
    members: Mutex<HashMap<String, Members>>,
    /// Home side: relays by (space, node).
    relays: Mutex<HashMap<(SpaceId, String), RelayEntry>>,
    /// Home side: remote participants' own sessions (see [`Op::Speak`]), by (space, who).
    speakers: Mutex<HashMap<(SpaceId, ParticipantId), RelayEntry>>,
    next_relay: AtomicU64,
    counters: Counters,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Cluster {
    /// Connects to the bus. Nothing is subscribed until [`Cluster::start`].
    pub(crate) async fn connect(config: &ClusterConfig) -> anyhow::Result<Cluster> {
        config.validate()?;
        let bus = async_nats::ConnectOptions::new()
            .name(format!("confab-server {}", config.node))
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(REQUEST_TIMEOUT))
            .connect(config.bus.as_str())
            .await
            .with_context(|| format!("connecting to the cluster bus at {}", config.bus))?;
        Ok(Cluster {
            bus,
            node: config.node.clone(),
            boot: rand::random(),
            remote: Mutex::new(HashMap::new()),
            proxies: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
            relays: Mutex::new(HashMap::new()),
            speakers: Mutex::new(HashMap::new()),
            next_relay: AtomicU64::new(1),
            counters: Counters::default(),
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// Subscribes, starts announcing, and says hello so the others announce at once.
    pub(crate) async fn start(self: &Arc<Self>, shared: &Arc<Shared>) -> anyhow::Result<()> {
        let mut directory = self.bus.subscribe(DIRECTORY_SUBJECT).await?;
        let mut hellos = self.bus.subscribe(HELLO_SUBJECT).await?;
        let mut requests = self.bus.subscribe(requests_subject(&self.node)).await?;
        let listen = {
            let (cluster, shared) = (Arc::clone(self), Arc::clone(shared));
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        Some(m) = directory.next() => cluster.on_announce(&shared, &m.payload),
                        Some(m) = hellos.next() => cluster.on_hello(&shared, &m.payload).await,
                        else => break,
                    }
                }
            })
        };
        let serve = {
            let (cluster, shared) = (Arc::clone(self), Arc::clone(shared));
            tokio::spawn(async move {
                while let Some(m) = requests.next().await {
                    cluster.on_request(&shared, m).await;
                }
            })
        };
        let announce = {
            let (cluster, shared) = (Arc::clone(self), Arc::clone(shared));
            tokio::spawn(async move { cluster.announce_loop(&shared).await })
        };
        lock(&self.tasks).extend([listen, serve, announce]);
        let hello = Hello {
            node: self.node.clone(),
            boot: self.boot,
        };
        self.bus.publish(HELLO_SUBJECT, encode(&hello)).await?;
        tracing::info!(node = %self.node, "joined the cluster");
        Ok(())
    }

    /// Tells the homes our participants are gone, stops the proxies and the bus tasks.
    pub(crate) async fn shutdown(&self) {
        let proxies: Vec<ProxyEntry> = lock(&self.proxies).drain().map(|(_, p)| p).collect();
        for p in proxies {
            let _ = p.tx.send(RoomCmd::Stop).await;
            let _ = p.task.await;
        }
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Err(e) = self.bus.flush().await {
            tracing::warn!(error = %e, "flushing the cluster bus");
        }
    }

    pub(crate) fn stats(&self) -> ClusterStats {
        let c = &self.counters;
        ClusterStats {
            relays_out: c.relays_out.load(Ordering::Relaxed),
            relay_packets_out: c.relay_packets_out.load(Ordering::Relaxed),
            relays_in: c.relays_in.load(Ordering::Relaxed),
            relay_packets_in: c.relay_packets_in.load(Ordering::Relaxed),
            fanout_packets: c.fanout_packets.load(Ordering::Relaxed),
        }
    }

    /// The live spaces other nodes are home to.
    pub(crate) fn remote_spaces(&self) -> Vec<SpaceSummary> {
        lock(&self.remote)
            .values()
            .flat_map(|n| n.spaces.iter().cloned())
            .collect()
    }

    fn home_of(&self, space: &SpaceId) -> Option<String> {
        lock(&self.remote)
            .iter()
            .find(|(_, n)| n.spaces.iter().any(|s| &s.id == space))
            .map(|(node, _)| node.clone())
    }

    // ---- Directory. ----

    async fn announce_loop(&self, shared: &Arc<Shared>) {
        let mut changed = shared.directory_changed.subscribe();
        let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = changed.changed() => if r.is_err() { break },
                _ = tick.tick() => self.forget_silent_nodes(shared),
            }
            let announce = Announce {
                node: self.node.clone(),
                boot: self.boot,
                spaces: lock(&shared.directory).values().cloned().collect(),
            };
            if let Err(e) = self.bus.publish(DIRECTORY_SUBJECT, encode(&announce)).await {
                tracing::warn!(error = %e, "announcing our spaces");
            }
        }
    }

    fn on_announce(&self, shared: &Arc<Shared>, payload: &[u8]) {
        let announce: Announce = match decode(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "dropped a bad directory announcement");
                return;
            }
        };
        if announce.node == self.node || !valid_node(&announce.node) {
            return;
        }
        self.note_boot(shared, &announce.node, announce.boot);
        // A node may only announce spaces that are not ours.
        let local = lock(&shared.directory);
        let spaces: Vec<SpaceSummary> = announce
            .spaces
            .into_iter()
            .filter(|s| !local.contains_key(&s.id))
            .collect();
        drop(local);
        let mut remote = lock(&self.remote);
        let changed = remote
            .get(&announce.node)
            .is_none_or(|n| n.spaces != spaces);
        remote.insert(
            announce.node,
            RemoteNode {
                boot: announce.boot,
                spaces,
                seen: Instant::now(),
            },
        );
        drop(remote);
        if changed {
            shared.directory_changed.send_modify(|v| *v += 1);
        }
    }

    async fn on_hello(&self, shared: &Arc<Shared>, payload: &[u8]) {
        let Ok(hello) = decode::<Hello>(payload) else {
            tracing::warn!("dropped a bad hello");
            return;
        };
        if hello.node == self.node || !valid_node(&hello.node) {
            return;
        }
        self.note_boot(shared, &hello.node, hello.boot);
        // Let the newcomer see our spaces now rather than at the next tick.
        shared.directory_changed.send_modify(|v| *v += 1);
    }

    /// Drops the spaces and participants of nodes that went quiet.
    fn forget_silent_nodes(&self, shared: &Arc<Shared>) {
        let gone: Vec<String> = {
            let mut remote = lock(&self.remote);
            let gone: Vec<String> = remote
                .iter()
                .filter(|(_, n)| n.seen.elapsed() > NODE_SILENT_AFTER)
                .map(|(node, _)| node.clone())
                .collect();
            for node in &gone {
                remote.remove(node);
            }
            gone
        };
        for node in &gone {
            tracing::warn!(%node, "cluster node went silent");
            self.forget_members(shared, node);
        }
        if !gone.is_empty() {
            shared.directory_changed.send_modify(|v| *v += 1);
        }
    }

    /// A node that restarted lost its connections: its old participants leave our rooms and its
    /// old relays close. Every message from a node carries its boot, so whichever arrives first
    /// (hello, announcement or request) notices, and only once.
    fn note_boot(&self, shared: &Arc<Shared>, node: &str, boot: u64) {
        let mut restarted = false;
        if let Some(n) = lock(&self.remote).get_mut(node)
            && n.boot != boot
        {
            n.boot = boot;
            restarted = true;
        }
        if lock(&self.members)
            .get(node)
            .is_some_and(|m| m.boot != boot)
        {
            restarted = true;
        }
        if restarted {
            tracing::info!(%node, "cluster node restarted");
            self.forget_members(shared, node);
        }
        lock(&self.members)
            .entry(node.to_owned())
            .or_insert_with(|| Members {
                boot,
                joined: HashSet::new(),
            })
            .boot = boot;
    }

    fn forget_members(&self, shared: &Arc<Shared>, node: &str) {
        let joined = lock(&self.members)
            .remove(node)
            .map(|m| m.joined)
            .unwrap_or_default();
        lock(&self.relays).retain(|(_, n), _| n != node);
        for (space, who) in joined {
            if let Some(room) = room::find(shared, &space) {
                tokio::spawn(async move {
                    let _ = room.send(RoomCmd::Disconnected { who }).await;
                });
            }
        }
    }

    fn is_member(&self, node: &str, space: &SpaceId, who: ParticipantId) -> bool {
        lock(&self.members)
            .get(node)
            .is_some_and(|m| m.joined.contains(&(space.clone(), who)))
    }

    // ---- Home side: requests from other nodes. ----

    async fn respond(&self, to: Option<Subject>, reply: Reply) {
        if let Some(to) = to
            && let Err(e) = self.bus.publish(to, encode(&reply)).await
        {
            tracing::warn!(error = %e, "answering a cluster request");
        }
    }

    async fn on_request(self: &Arc<Self>, shared: &Arc<Shared>, m: Message) {
        let reply_to = m.reply.clone();
        let req: Request = match decode(&m.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "dropped a bad cluster request");
                let reply = refused(ErrorCode::BadFrame, "not a cluster request");
                self.respond(reply_to, reply).await;
                return;
            }
        };
        let node = req.node;
        if node == self.node || !valid_node(&node) {
            let reply = refused(ErrorCode::BadFrame, "bad node name");
            self.respond(reply_to, reply).await;
            return;
        }
        self.note_boot(shared, &node, req.boot);
        let space = req.space;
        let Some(room) = room::find(shared, &space) else {
            let reply = refused(
                ErrorCode::NoSuchSpace,
                format!("no live space {space} here"),
            );
            self.respond(reply_to, reply).await;
            return;
        };
        match req.op {
            Op::Join { who, name, user } => {
                // The other node cleaned the name; the home does not take its word for it.
                let name = match signaling::clean("name", &name, MAX_NAME_CHARS) {
                    Ok(n) => n,
                    Err((code, message)) => {
                        return self.respond(reply_to, refused(code, message)).await;
                    }
                };
                let taken = lock(&self.members)
                    .values()
                    .any(|m| m.joined.iter().any(|(_, p)| *p == who));
                if taken {
                    let reply = refused(ErrorCode::InvalidInput, "participant id already in use");
                    return self.respond(reply_to, reply).await;
                }
                // Recorded before the room sees the join, so a leave right behind it is honoured.
                self.add_member(&node, &space, who);
                let conn = self.deliverer(&node, &space, who);
                let (reply, answer) = oneshot::channel();
                let cmd = RoomCmd::Join {
                    who,
                    name,
                    user,
                    conn,
                    reply,
                };
                if room.send(cmd).await.is_err() {
                    self.remove_member(&node, &space, who);
                    let reply = refused(ErrorCode::SpaceEnded, "the space has ended");
                    return self.respond(reply_to, reply).await;
                }
                let cluster = Arc::clone(self);
                tokio::spawn(async move {
                    let reply = match answer.await {
                        Ok(Ok(info)) => Reply::Joined { space: info },
                        Ok(Err((code, message))) => {
                            cluster.remove_member(&node, &space, who);
                            refused(code, message)
                        }
                        Err(_) => {
                            cluster.remove_member(&node, &space, who);
                            refused(ErrorCode::SpaceEnded, "the space has ended")
                        }
                    };
                    cluster.respond(reply_to, reply).await;
                });
            }
            Op::Leave { who } => {
                lock(&self.speakers).remove(&(space.clone(), who));
                if self.remove_member(&node, &space, who) {
                    let _ = room.send(RoomCmd::Leave { who }).await;
                }
            }
            Op::Disconnected { who } => {
                lock(&self.speakers).remove(&(space.clone(), who));
                if self.remove_member(&node, &space, who) {
                    let _ = room.send(RoomCmd::Disconnected { who }).await;
                }
            }
            Op::End { who } => {
                if !self.is_member(&node, &space, who) {
                    let reply = refused(ErrorCode::NotInSpace, "not in this space");
                    return self.respond(reply_to, reply).await;
                }
                let (reply, answer) = oneshot::channel();
                self.ask_room(&room, RoomCmd::End { who, reply }, answer, reply_to)
                    .await;
            }
            Op::Stage { who, msg } => {
                if !self.is_member(&node, &space, who) {
                    let reply = refused(ErrorCode::NotInSpace, "not in this space");
                    return self.respond(reply_to, reply).await;
                }
                let Some(input) = signaling::stage_input(who, msg) else {
                    let reply = refused(ErrorCode::UnknownType, "not a stage request");
                    return self.respond(reply_to, reply).await;
                };
                let (reply, answer) = oneshot::channel();
                self.ask_room(&room, RoomCmd::Stage { input, reply }, answer, reply_to)
                    .await;
            }
            Op::Relay { offer } => {
                let (cluster, shared) = (Arc::clone(self), Arc::clone(shared));
                tokio::spawn(async move {
                    cluster
                        .serve_relay(&shared, node, space, room, offer, reply_to)
                        .await;
                });
            }
            Op::Speak { who, offer } => {
                if !self.is_member(&node, &space, who) {
                    let reply = refused(ErrorCode::NotInSpace, "not in this space");
                    return self.respond(reply_to, reply).await;
                }
                let (cluster, shared) = (Arc::clone(self), Arc::clone(shared));
                tokio::spawn(async move {
                    cluster
                        .serve_speaker(&shared, space, room, who, offer, reply_to)
                        .await;
                });
            }
        }
    }

    /// A remote participant's own session, answered on this node's mux like a local one: its
    /// receive slots and its microphone go to the room as a local participant's would, so the
    /// room decides what it hears and whether it is heard, here, with its own checks.
    async fn serve_speaker(
        &self,
        shared: &Arc<Shared>,
        space: SpaceId,
        room: mpsc::Sender<RoomCmd>,
        who: ParticipantId,
        offer: String,
        reply_to: Option<Subject>,
    ) {
        let (mut session, answer, slots) = match shared.mux.answer_client(offer, true).await {
            Ok(a) => a,
            Err(e) => {
                let reply = refused(ErrorCode::MediaFailed, format!("bad speaker offer: {e}"));
                return self.respond(reply_to, reply).await;
            }
        };
        let id = self.next_relay.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, mut stop) = oneshot::channel();
        let key = (space.clone(), who);
        // A newer session for the same participant replaces this one.
        lock(&self.speakers).insert(key.clone(), RelayEntry { id, _stop: stop_tx });
        if room.send(RoomCmd::MediaReady { who, slots }).await.is_err() {
            let reply = refused(ErrorCode::SpaceEnded, "the space has ended");
            return self.respond(reply_to, reply).await;
        }
        self.respond(reply_to, Reply::Answer { sdp: answer }).await;
        tracing::info!(%space, participant = %who, "a remote participant's session opened");
        loop {
            tokio::select! {
                event = session.next_event() => match event {
                    None | Some(SessionEvent::Closed) => break,
                    Some(SessionEvent::RemoteAudio(audio)) => {
                        if room.send(RoomCmd::Uplink { who, audio }).await.is_err() {
                            break;
                        }
                    }
                    Some(_) => {}
                },
                _ = room.closed() => break,
                _ = &mut stop => break,
            }
        }
        session.close();
        let current = {
            let mut speakers = lock(&self.speakers);
            let current = speakers.get(&key).is_some_and(|r| r.id == id);
            if current {
                speakers.remove(&key);
            }
            current
        };
        if current {
            // Nothing goes to the closed session's slots any more.
            let _ = room
                .send(RoomCmd::MediaReady {
                    who,
                    slots: Vec::new(),
                })
                .await;
        }
        tracing::info!(%space, participant = %who, "a remote participant's session closed");
    }

    /// Sends `cmd` in order, then answers the request once the room has decided.
    async fn ask_room(
        self: &Arc<Self>,
        room: &mpsc::Sender<RoomCmd>,
        cmd: RoomCmd,
        answer: oneshot::Receiver<Result<(), Refusal>>,
        reply_to: Option<Subject>,
    ) {
        if room.send(cmd).await.is_err() {
            let reply = refused(ErrorCode::SpaceEnded, "the space has ended");
            return self.respond(reply_to, reply).await;
        }
        let cluster = Arc::clone(self);
        tokio::spawn(async move {
            let reply = match answer.await {
                Ok(Ok(())) => Reply::Done,
                Ok(Err((code, message))) => refused(code, message),
                Err(_) => refused(ErrorCode::SpaceEnded, "the space has ended"),
            };
            cluster.respond(reply_to, reply).await;
        });
    }

    fn add_member(&self, node: &str, space: &SpaceId, who: ParticipantId) {
        if let Some(m) = lock(&self.members).get_mut(node) {
            m.joined.insert((space.clone(), who));
        }
    }

    fn remove_member(&self, node: &str, space: &SpaceId, who: ParticipantId) -> bool {
        lock(&self.members)
            .get_mut(node)
            .is_some_and(|m| m.joined.remove(&(space.clone(), who)))
    }

    /// The connection the room writes to for a remote participant: each message goes to the
    /// participant's node. It ends when the room drops it.
    fn deliverer(&self, node: &str, space: &SpaceId, who: ParticipantId) -> Conn {
        let (tx, mut rx) = mpsc::channel::<Outbound>(256);
        let subject = deliveries_subject(node, space);
        let bus = self.bus.clone();
        tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                // The room encodes each message once for all its connections; the bus carries
                // it as a message again (our own encoding: it decodes).
                let Ok(msg) = confab_proto::decode_server(&out.text) else {
                    continue;
                };
                let payload = encode(&Deliver { to: who, msg });
                if let Err(e) = bus.publish(subject.clone(), payload).await {
                    tracing::warn!(error = %e, participant = %who, "delivering over the bus");
                }
            }
        });
        tx
    }

    /// Answers a node's relay offer, hands the relay's slot tracks to the room, and keeps the
    /// session until it closes, the room ends, or the node opens a newer one.
    async fn serve_relay(
        &self,
        shared: &Arc<Shared>,
        node: String,
        space: SpaceId,
        room: mpsc::Sender<RoomCmd>,
        offer: String,
        reply_to: Option<Subject>,
    ) {
        let config = RtcConfig {
            bind_ip: shared.config.media_ip,
            ..RtcConfig::default()
        };
        let mut session = match PeerSession::new(&config).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "creating a relay peer connection");
                let reply = refused(ErrorCode::MediaFailed, "could not open media");
                return self.respond(reply_to, reply).await;
            }
        };
        let (answer, mut slots) = match session.answer_client(offer).await {
            Ok(a) => a,
            Err(e) => {
                session.close().await;
                let reply = refused(ErrorCode::MediaFailed, format!("bad relay offer: {e}"));
                return self.respond(reply_to, reply).await;
            }
        };
        for slot in &mut slots {
            slot.count_sent(Arc::clone(&self.counters.relay_packets_out));
        }
        let id = self.next_relay.fetch_add(1, Ordering::Relaxed);
        let (stop_tx, mut stop) = oneshot::channel();
        let key = (space.clone(), node.clone());
        // A newer relay from the same node replaces the old one (dropping its stop sender).
        lock(&self.relays).insert(key.clone(), RelayEntry { id, _stop: stop_tx });
        let ready = RoomCmd::RelayReady {
            node: node.clone(),
            id,
            slots,
        };
        if room.send(ready).await.is_err() {
            session.close().await;
            let reply = refused(ErrorCode::SpaceEnded, "the space has ended");
            return self.respond(reply_to, reply).await;
        }
        self.respond(reply_to, Reply::Answer { sdp: answer }).await;
        self.counters.relays_out.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%space, %node, relay = id, "relay to a node opened");
        loop {
            tokio::select! {
                event = session.next_event() => match event {
                    None | Some(SessionEvent::Closed) => break,
                    Some(_) => {}
                },
                _ = room.closed() => break,
                _ = &mut stop => break,
            }
        }
        self.counters.relays_out.fetch_sub(1, Ordering::Relaxed);
        session.close().await;
        {
            let mut relays = lock(&self.relays);
            if relays.get(&key).is_some_and(|r| r.id == id) {
                relays.remove(&key);
            }
        }
        let _ = room.send(RoomCmd::RelayGone { node, id }).await;
        tracing::info!(%space, relay = id, "relay to a node closed");
    }

    // ---- Remote side: requests to a home node. ----

    fn request_for(&self, space: &SpaceId, op: Op) -> Bytes {
        encode(&Request {
            node: self.node.clone(),
            boot: self.boot,
            space: space.clone(),
            op,
        })
    }

    async fn request(&self, home: &str, space: &SpaceId, op: Op) -> anyhow::Result<Reply> {
        let answer = self
            .bus
            .request(requests_subject(home), self.request_for(space, op))
            .await
            .with_context(|| format!("asking node {home}"))?;
        decode(&answer.payload)
    }

    async fn publish(&self, home: &str, space: &SpaceId, op: Op) {
        let payload = self.request_for(space, op);
        if let Err(e) = self.bus.publish(requests_subject(home), payload).await {
            tracing::warn!(error = %e, %home, "telling a home node");
        }
    }
}

/// The command sender for a space whose home is another node: this node's proxy for it,
/// started on first use. `None` when no node announces the space.
pub(crate) fn find(shared: &Arc<Shared>, space: &SpaceId) -> Option<mpsc::Sender<RoomCmd>> {
    let cluster = shared.cluster.as_ref()?;
    let mut proxies = lock(&cluster.proxies);
    if let Some(p) = proxies.get(space)
        && !p.tx.is_closed()
    {
        return Some(p.tx.clone());
    }
    let home = cluster.home_of(space)?;
    let (tx, rx) = mpsc::channel(256);
    let (news_tx, news_rx) = mpsc::unbounded_channel();
    let proxy = Proxy {
        cluster: Arc::clone(cluster),
        media_ip: shared.config.media_ip,
        space: space.clone(),
        home,
        conns: HashMap::new(),
        slots: HashMap::new(),
        fanout: std::array::from_fn(|_| Arc::new(ArcSwap::from_pointee(Vec::new()))),
        relay: None,
        relay_tasks: Vec::new(),
        opening: false,
        retry_at: None,
        links: HashMap::new(),
        linked: std::collections::HashSet::new(),
        next_link: 1,
        link_news: news_tx,
    };
    let task = tokio::spawn(proxy.run(tx.clone(), rx, news_rx));
    proxies.insert(
        space.clone(),
        ProxyEntry {
            tx: tx.clone(),
            task,
        },
    );
    Some(tx)
}

/// The client message a stage input stands for, and who sends it (the inverse of
/// [`signaling::stage_input`]).
fn stage_msg(input: Input) -> Option<(ParticipantId, ClientMsg)> {
    Some(match input {
        Input::RaiseHand { who } => (who, ClientMsg::RaiseHand),
        Input::LowerHand { who } => (who, ClientMsg::LowerHand),
        Input::ApproveHand { who, target } => (
            who,
            ClientMsg::ApproveHand {
                participant: target,
            },
        ),
        Input::DismissHand { who, target } => (
            who,
            ClientMsg::DismissHand {
                participant: target,
            },
        ),
        Input::Invite { who, target } => (
            who,
            ClientMsg::Invite {
                participant: target,
            },
        ),
        Input::AcceptInvite { who } => (who, ClientMsg::AcceptInvite),
        Input::DeclineInvite { who } => (who, ClientMsg::DeclineInvite),
        Input::StepDown { who } => (who, ClientMsg::StepDown),
        Input::MuteSelf { who } => (who, ClientMsg::MuteSelf),
        Input::UnmuteSelf { who } => (who, ClientMsg::UnmuteSelf),
        Input::Mute { who, target } => (
            who,
            ClientMsg::Mute {
                participant: target,
            },
        ),
        Input::MuteAll { who } => (who, ClientMsg::MuteAll),
        Input::Remove { who, target } => (
            who,
            ClientMsg::Remove {
                participant: target,
            },
        ),
        Input::Block { who, target } => (
            who,
            ClientMsg::Block {
                participant: target,
            },
        ),
        Input::MakeCohost { who, target } => (
            who,
            ClientMsg::MakeCohost {
                participant: target,
            },
        ),
        Input::UnmakeCohost { who, target } => (
            who,
            ClientMsg::UnmakeCohost {
                participant: target,
            },
        ),
        Input::Pin { who, link } => (who, ClientMsg::Pin { link }),
        Input::React { who, emoji } => (who, ClientMsg::React { emoji }),
        Input::Chat { who, text } => (who, ClientMsg::Chat { text }),
        Input::DeleteChat { who, id } => (who, ClientMsg::DeleteChat { id }),
        _ => return None,
    })
}

/// This node's stand-in for a room whose home is another node: it keeps the local
/// connections and media tracks, carries every decision to the home, and fans the relay's
/// audio out to the local listeners.
struct Proxy {
    cluster: Arc<Cluster>,
    media_ip: std::net::IpAddr,
    space: SpaceId,
    home: String,
    conns: HashMap<ParticipantId, Conn>,
    slots: HashMap<ParticipantId, Vec<LocalAudio>>,
    /// Per receive slot: the local tracks the relay's slot is copied to.
    fanout: [Arc<ArcSwap<Vec<LocalAudio>>>; RECV_SLOTS],
    relay: Option<PeerSession>,
    relay_tasks: Vec<JoinHandle<()>>,
    opening: bool,
    retry_at: Option<Instant>,
    /// Participants here who send audio: each one's own session with the home (see
    /// [`Op::Speak`]), ended by dropping its stop sender. By id, to tell a replaced one's
    /// news from its successor's.
    links: HashMap<ParticipantId, (u64, oneshot::Sender<()>)>,
    /// Those whose own session is up: they hear the room through it, not through the relay.
    linked: std::collections::HashSet<ParticipantId>,
    next_link: u64,
    /// A link's news: (who, id, up).
    link_news: mpsc::UnboundedSender<(ParticipantId, u64, bool)>,
}

type Opened = anyhow::Result<PeerSession>;

impl Proxy {
    async fn run(
        mut self,
        me: mpsc::Sender<RoomCmd>,
        mut rx: mpsc::Receiver<RoomCmd>,
        mut link_news: mpsc::UnboundedReceiver<(ParticipantId, u64, bool)>,
    ) {
        let subject = deliveries_subject(&self.cluster.node, &self.space);
        match self.cluster.bus.subscribe(subject).await {
            Ok(mut deliveries) => {
                let (opened_tx, mut opened) = mpsc::channel::<Opened>(1);
                loop {
                    tokio::select! {
                        cmd = rx.recv() => match cmd {
                            None => break,
                            Some(RoomCmd::Stop) => {
                                self.stop().await;
                                break;
                            }
                            Some(cmd) => self.handle(cmd, &opened_tx).await,
                        },
                        m = deliveries.next() => match m {
                            Some(m) => if self.deliver(&m.payload) { break },
                            None => break,
                        },
                        Some(result) = opened.recv() => self.relay_opened(result),
                        Some((who, id, up)) = link_news.recv() => self.link_news(who, id, up),
                        event = next_event(&mut self.relay) => self.on_relay_event(event),
                        _ = sleep_until_opt(self.retry_at) => {
                            self.retry_at = None;
                            self.ensure_relay(&opened_tx);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, space = %self.space, "subscribing for a remote space")
            }
        }
        {
            let mut proxies = lock(&self.cluster.proxies);
            if proxies
                .get(&self.space)
                .is_some_and(|p| p.tx.same_channel(&me))
            {
                proxies.remove(&self.space);
            }
        }
        drop(me);
        self.close_relay();
        // Whoever raced in after the end is told so.
        rx.close();
        while let Some(cmd) = rx.recv().await {
            let gone = (ErrorCode::SpaceEnded, "the space has ended".to_owned());
            match cmd {
                RoomCmd::Join { reply, .. } | RoomCmd::Resume { reply, .. } => {
                    let _ = reply.send(Err(gone));
                }
                RoomCmd::End { reply, .. } | RoomCmd::Stage { reply, .. } => {
                    let _ = reply.send(Err(gone));
                }
                _ => {}
            }
        }
        tracing::debug!(space = %self.space, "proxy for a remote space stopped");
    }

    async fn handle(&mut self, cmd: RoomCmd, opened: &mpsc::Sender<Opened>) {
        match cmd {
            RoomCmd::Join {
                who,
                name,
                user,
                conn,
                reply,
            } => {
                // In first: what the home says to the newcomer may arrive before its answer.
                self.conns.insert(who, conn);
                let op = Op::Join { who, name, user };
                let answer = match self.cluster.request(&self.home, &self.space, op).await {
                    Ok(Reply::Joined { space }) => Ok(space),
                    Ok(Reply::Refused { code, message }) => Err((code, message)),
                    Ok(other) => Err((ErrorCode::Internal, format!("unexpected {other:?}"))),
                    Err(e) => {
                        tracing::warn!(error = %e, space = %self.space, "joining on the home node");
                        Err((
                            ErrorCode::Internal,
                            "the space's home server did not answer; try again".into(),
                        ))
                    }
                };
                if answer.is_err() {
                    self.conns.remove(&who);
                } else {
                    self.ensure_relay(opened);
                }
                let _ = reply.send(answer);
            }
            RoomCmd::Resume { reply, .. } => {
                let _ = reply.send(Err((
                    ErrorCode::NotAllowed,
                    "resume this space on the server where it was opened".into(),
                )));
            }
            RoomCmd::Leave { who } => self.forget(who, Op::Leave { who }).await,
            RoomCmd::Disconnected { who } => self.forget(who, Op::Disconnected { who }).await,
            RoomCmd::End { who, reply } => {
                self.ask(who, Op::End { who }, reply);
            }
            RoomCmd::Stage { input, reply } => match stage_msg(input) {
                Some((who, msg)) => self.ask(who, Op::Stage { who, msg }, reply),
                None => {
                    let _ = reply.send(Err((
                        ErrorCode::UnknownType,
                        "this server does not handle that message".into(),
                    )));
                }
            },
            RoomCmd::MediaReady { who, slots } => {
                if self.conns.contains_key(&who) {
                    self.slots.insert(who, slots);
                    self.refresh_fanout();
                }
            }
            RoomCmd::Uplink { who, audio } => {
                // The home decides who is heard: the participant's audio goes there on a
                // session of its own, which also brings what it hears (a speaker hears the
                // others, not itself, which the relay's mix for this node's listeners may be).
                let Some(tracks) = self.slots.get(&who).cloned() else {
                    return;
                };
                if !self.conns.contains_key(&who) {
                    return;
                }
                let id = self.next_link;
                self.next_link += 1;
                let (stop_tx, stop) = oneshot::channel();
                // A newer uplink (the client renewed its session) replaces the old link.
                self.links.insert(who, (id, stop_tx));
                let config = RtcConfig {
                    bind_ip: self.media_ip,
                    ..RtcConfig::default()
                };
                tokio::spawn(speaker_link(
                    Arc::clone(&self.cluster),
                    config,
                    (self.home.clone(), self.space.clone()),
                    (who, id),
                    audio,
                    tracks,
                    self.link_news.clone(),
                    stop,
                ));
            }
            RoomCmd::RelayReady { .. } | RoomCmd::RelayGone { .. } | RoomCmd::Stop => {}
        }
    }

    /// Asks the home and answers `reply` when it has, without holding up this proxy.
    fn ask(&self, who: ParticipantId, op: Op, reply: oneshot::Sender<Result<(), Refusal>>) {
        if !self.conns.contains_key(&who) {
            let _ = reply.send(Err((ErrorCode::NotInSpace, "you are in no space".into())));
            return;
        }
        let (cluster, home, space) = (
            Arc::clone(&self.cluster),
            self.home.clone(),
            self.space.clone(),
        );
        tokio::spawn(async move {
            let answer = match cluster.request(&home, &space, op).await {
                Ok(Reply::Done) => Ok(()),
                Ok(Reply::Refused { code, message }) => Err((code, message)),
                Ok(other) => Err((ErrorCode::Internal, format!("unexpected {other:?}"))),
                Err(e) => Err((
                    ErrorCode::Internal,
                    format!("the space's home server did not answer: {e:#}"),
                )),
            };
            let _ = reply.send(answer);
        });
    }

    async fn forget(&mut self, who: ParticipantId, op: Op) {
        if self.conns.remove(&who).is_none() {
            return;
        }
        self.links.remove(&who);
        self.linked.remove(&who);
        self.slots.remove(&who);
        self.refresh_fanout();
        self.cluster.publish(&self.home, &self.space, op).await;
        if self.conns.is_empty() {
            // Nobody here listens: no reason to pull the room's audio across.
            self.close_relay();
        }
    }

    /// Server shutdown: the home learns our participants are gone.
    async fn stop(&mut self) {
        let who: Vec<ParticipantId> = self.conns.keys().copied().collect();
        for who in who {
            self.forget(who, Op::Disconnected { who }).await;
        }
        self.close_relay();
    }

    /// Hands one message from the home to its participant; true when the space ended.
    fn deliver(&mut self, payload: &[u8]) -> bool {
        let Deliver { to, msg } = match decode::<Deliver>(payload) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, space = %self.space, "dropped a bad delivery");
                return false;
            }
        };
        match &msg {
            ServerMsg::Ended { space, .. } if space == &self.space => {
                // Everyone here hears it once, and this proxy is done.
                let out = Outbound::new(&msg);
                for conn in self.conns.values() {
                    let _ = conn.try_send(out.clone());
                }
                self.conns.clear();
                return true;
            }
            ServerMsg::Removed { .. } => {
                // It stops receiving here as it would on the home.
                self.slots.remove(&to);
                self.refresh_fanout();
            }
            _ => {}
        }
        if let Some(conn) = self.conns.get(&to)
            && conn.try_send(Outbound::new(&msg)).is_err()
        {
            tracing::warn!(participant = %to, "signaling queue full or closed; message dropped");
        }
        false
    }

    /// A participant's own session with the home came up or went: while it is up, that
    /// participant hears the room through it instead of through the relay.
    fn link_news(&mut self, who: ParticipantId, id: u64, up: bool) {
        if self
            .links
            .get(&who)
            .is_none_or(|(current, _)| *current != id)
        {
            return;
        }
        if up {
            self.linked.insert(who);
        } else {
            self.links.remove(&who);
            self.linked.remove(&who);
        }
        self.refresh_fanout();
    }

    fn refresh_fanout(&self) {
        for (slot, list) in self.fanout.iter().enumerate() {
            let tracks: Vec<LocalAudio> = self
                .slots
                .iter()
                .filter(|(who, _)| !self.linked.contains(who))
                .filter_map(|(_, s)| s.get(slot).cloned())
                .collect();
            list.store(Arc::new(tracks));
        }
    }

    fn ensure_relay(&mut self, opened: &mpsc::Sender<Opened>) {
        if self.relay.is_some() || self.opening || self.conns.is_empty() {
            return;
        }
        self.opening = true;
        let (cluster, home, space, opened) = (
            Arc::clone(&self.cluster),
            self.home.clone(),
            self.space.clone(),
            opened.clone(),
        );
        let config = RtcConfig {
            bind_ip: self.media_ip,
            ..RtcConfig::default()
        };
        tokio::spawn(async move {
            let result = open_relay(&cluster, &config, &home, &space).await;
            let _ = opened.send(result).await;
        });
    }

    fn relay_opened(&mut self, result: Opened) {
        self.opening = false;
        match result {
            Ok(session) if self.conns.is_empty() => {
                tokio::spawn(async move { session.close().await });
            }
            Ok(session) => {
                self.cluster
                    .counters
                    .relays_in
                    .fetch_add(1, Ordering::Relaxed);
                self.relay = Some(session);
                tracing::info!(space = %self.space, home = %self.home, "relay from the home node opened");
            }
            Err(e) => {
                tracing::warn!(error = %e, space = %self.space, "opening the relay; retrying");
                self.retry_at = Some(Instant::now() + RELAY_RETRY);
            }
        }
    }

    fn on_relay_event(&mut self, event: Option<SessionEvent>) {
        match event {
            Some(SessionEvent::RemoteAudio(audio)) => {
                let Some(slot) = audio.slot() else { return };
                let Some(list) = self.fanout.get(slot) else {
                    return;
                };
                let task =
                    tokio::spawn(fan_out(audio, Arc::clone(list), Arc::clone(&self.cluster)));
                self.relay_tasks.push(task);
            }
            None | Some(SessionEvent::Closed) => {
                tracing::warn!(space = %self.space, "relay from the home node closed");
                self.close_relay();
                self.retry_at = Some(Instant::now() + RELAY_RETRY);
            }
            Some(_) => {}
        }
    }

    fn close_relay(&mut self) {
        for task in self.relay_tasks.drain(..) {
            task.abort();
        }
        if let Some(session) = self.relay.take() {
            self.cluster
                .counters
                .relays_in
                .fetch_sub(1, Ordering::Relaxed);
            tokio::spawn(async move { session.close().await });
        }
    }
}

/// Opens a relay session to `home` for `space`: we offer the client layout, the home answers
/// with one forwarding track per receive slot.
async fn open_relay(cluster: &Cluster, config: &RtcConfig, home: &str, space: &SpaceId) -> Opened {
    let mut session = PeerSession::new(config).await?;
    // The microphone track stays silent: a relay only receives.
    let opened = async {
        session.add_client_transceivers().await?;
        let offer = session.create_offer().await?;
        match cluster.request(home, space, Op::Relay { offer }).await? {
            Reply::Answer { sdp } => Ok(session.accept_answer(sdp).await?),
            Reply::Refused { code, message } => {
                anyhow::bail!("the home refused the relay: {code:?}: {message}")
            }
            other => anyhow::bail!("unexpected answer to a relay offer: {other:?}"),
        }
    }
    .await;
    match opened {
        Ok(()) => Ok(session),
        Err(e) => {
            session.close().await;
            Err(e)
        }
    }
}

/// One participant's own session with the home (see [`Op::Speak`]): its microphone's
/// packets go up, and what the home sends on its receive slots comes down to its own slot
/// tracks here. Ends when `stop`'s sender is dropped, the uplink ends or the session closes.
#[allow(clippy::too_many_arguments)]
async fn speaker_link(
    cluster: Arc<Cluster>,
    config: RtcConfig,
    (home, space): (String, SpaceId),
    (who, id): (ParticipantId, u64),
    audio: RemoteAudio,
    tracks: Vec<LocalAudio>,
    news: mpsc::UnboundedSender<(ParticipantId, u64, bool)>,
    mut stop: oneshot::Receiver<()>,
) {
    let opened = async {
        let mut session = PeerSession::new(&config).await?;
        let result = async {
            let mic = session.add_client_transceivers().await?;
            let offer = session.create_offer().await?;
            match cluster
                .request(&home, &space, Op::Speak { who, offer })
                .await?
            {
                Reply::Answer { sdp } => session.accept_answer(sdp).await?,
                Reply::Refused { code, message } => {
                    anyhow::bail!("the home refused: {code:?}: {message}")
                }
                other => anyhow::bail!("unexpected answer to a speaker offer: {other:?}"),
            }
            Ok(mic)
        }
        .await;
        match result {
            Ok(mic) => Ok((session, mic)),
            Err(e) => {
                session.close().await;
                Err(e)
            }
        }
    };
    let (mut session, mic) = tokio::select! {
        opened = opened => match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, participant = %who, %space, "opening a speaker's session with the home");
                let _ = news.send((who, id, false));
                return;
            }
        },
        _ = &mut stop => return,
    };
    let _ = news.send((who, id, true));
    let mut downs = Vec::new();
    loop {
        tokio::select! {
            packet = audio.recv() => match packet {
                Some(p) => {
                    let _ = mic.send(&p).await;
                }
                None => break,
            },
            event = session.next_event() => match event {
                Some(SessionEvent::RemoteAudio(down)) => {
                    let Some(track) = down.slot().and_then(|s| tracks.get(s)) else {
                        continue;
                    };
                    let list = Arc::new(ArcSwap::from_pointee(vec![track.clone()]));
                    downs.push(tokio::spawn(fan_out(down, list, Arc::clone(&cluster))));
                }
                None | Some(SessionEvent::Closed) => break,
                Some(_) => {}
            },
            _ = &mut stop => break,
        }
    }
    for task in downs {
        task.abort();
    }
    session.close().await;
    let _ = news.send((who, id, false));
}

/// Copies one relay slot's packets to this node's listeners on that slot.
async fn fan_out(audio: RemoteAudio, list: Arc<ArcSwap<Vec<LocalAudio>>>, cluster: Arc<Cluster>) {
    let counters = &cluster.counters;
    while let Some(packet) = audio.recv().await {
        counters.relay_packets_in.fetch_add(1, Ordering::Relaxed);
        let n = confab_rtc::forward(&list.load_full(), &packet).await;
        counters
            .fanout_packets
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

async fn next_event(session: &mut Option<PeerSession>) -> Option<SessionEvent> {
    match session {
        Some(s) => s.next_event().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_that_would_break_a_subject_are_refused() {
        assert!(valid_node("node-a_1"));
        for bad in ["", "a.b", "*", ">", "a b", "ä", &"x".repeat(65)] {
            assert!(!valid_node(bad), "{bad:?}");
        }
    }

    #[test]
    fn bad_bus_messages_are_errors_not_panics() {
        for payload in [
            &b""[..],
            b"{",
            b"null",
            b"{\"node\":\"b\",\"boot\":1,\"space\":\"nope\",\"op\":{\"op\":\"leave\",\"who\":1}}",
            b"{\"node\":\"b\",\"boot\":1,\"space\":\"abcdefghijkl\",\"op\":\"join\"}",
            b"{\"to\":1,\"msg\":{\"type\":\"nonsense\"}}",
            b"\xff\xfe",
        ] {
            assert!(decode::<Request>(payload).is_err());
            assert!(decode::<Deliver>(payload).is_err());
            assert!(decode::<Announce>(payload).is_err());
        }
        let huge = vec![b' '; MAX_BUS_MESSAGE + 1];
        assert!(decode::<Hello>(&huge).is_err());
    }

    #[test]
    fn a_request_survives_the_bus() {
        let space: SpaceId = "abcdefghijkl".parse().unwrap();
        let op = Op::Stage {
            who: ParticipantId(7),
            msg: ClientMsg::Mute {
                participant: ParticipantId(3),
            },
        };
        let bytes = encode(&Request {
            node: "b".into(),
            boot: 9,
            space: space.clone(),
            op,
        });
        let back: Request = decode(&bytes).unwrap();
        assert_eq!(
            (back.node.as_str(), back.boot, &back.space),
            ("b", 9, &space)
        );
        assert!(matches!(
            back.op,
            Op::Stage {
                who: ParticipantId(7),
                msg: ClientMsg::Mute {
                    participant: ParticipantId(3)
                }
            }
        ));
    }

    #[test]
    fn every_stage_request_maps_there_and_back() {
        let who = ParticipantId(5);
        let target = ParticipantId(6);
        let msgs = [
            ClientMsg::RaiseHand,
            ClientMsg::LowerHand,
            ClientMsg::ApproveHand {
                participant: target,
            },
            ClientMsg::DismissHand {
                participant: target,
            },
            ClientMsg::Invite {
                participant: target,
            },
            ClientMsg::AcceptInvite,
            ClientMsg::DeclineInvite,
            ClientMsg::StepDown,
            ClientMsg::MuteSelf,
            ClientMsg::UnmuteSelf,
            ClientMsg::Mute {
                participant: target,
            },
            ClientMsg::MuteAll,
            ClientMsg::Remove {
                participant: target,
            },
            ClientMsg::Block {
                participant: target,
            },
            ClientMsg::MakeCohost {
                participant: target,
            },
            ClientMsg::UnmakeCohost {
                participant: target,
            },
            ClientMsg::Pin {
                link: Some("https://example.org".into()),
            },
            ClientMsg::React {
                emoji: "👏".into()
            },
            ClientMsg::Chat { text: "hi".into() },
        ];
        for msg in msgs {
            let input = signaling::stage_input(who, msg.clone()).unwrap();
            assert_eq!(stage_msg(input), Some((who, msg)));
        }
        assert_eq!(stage_msg(Input::Leave { who }), None);
    }
}
