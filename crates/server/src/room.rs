//! One task per live space: the authoritative [`Room`] plus the SFU wiring for it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use confab_core::{MediaChange, Output, Room};
use confab_proto::{
    EndReason, ErrorCode, ParticipantId, Role, ServerMsg, SpaceId, SpaceInfo, SpaceSummary, UserId,
};
use confab_rtc::{LocalAudio, RECV_SLOTS, RemoteAudio};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Shared;
use crate::loudest::{Candidate, EVALUATE_EVERY, SILENT_DB, Selection, assign};
use crate::sfu::Forwarder;

/// A refusal: the stable code and a message for people.
pub(crate) type Refusal = (ErrorCode, String);

/// Outbound signaling to one connection. Bounded: a client that stops reading is cut off
/// rather than making the room buffer without limit.
pub(crate) type Conn = mpsc::Sender<Outbound>;

/// A message on its way to connections: encoded once, however many it goes to (a roster
/// batch goes to every participant each tick; the text is reference-counted, not copied).
#[derive(Clone, Debug)]
pub(crate) struct Outbound {
    pub(crate) text: axum::extract::ws::Utf8Bytes,
    /// For [`ServerMsg::Ended`]: the space the connection is no longer in once it sends this.
    pub(crate) ended: Option<SpaceId>,
}

impl Outbound {
    pub(crate) fn new(msg: &ServerMsg) -> Outbound {
        Outbound {
            text: confab_proto::encode(msg).into(),
            ended: match msg {
                ServerMsg::Ended { space, .. } => Some(space.clone()),
                _ => None,
            },
        }
    }
}

pub(crate) enum RoomCmd {
    Join {
        who: ParticipantId,
        name: String,
        user: Option<UserId>,
        conn: Conn,
        reply: oneshot::Sender<Result<SpaceInfo, Refusal>>,
    },
    Resume {
        who: ParticipantId,
        name: String,
        token: String,
        conn: Conn,
        reply: oneshot::Sender<Result<SpaceInfo, Refusal>>,
    },
    Leave {
        who: ParticipantId,
    },
    Disconnected {
        who: ParticipantId,
    },
    End {
        who: ParticipantId,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A stage request (`input` names who acts); refused ones change nothing.
    Stage {
        input: confab_core::Input,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// The participant's media session is up: these are its receive-slot tracks.
    MediaReady {
        who: ParticipantId,
        slots: Vec<LocalAudio>,
    },
    /// The participant started sending audio.
    Uplink {
        who: ParticipantId,
        audio: RemoteAudio,
    },
    /// Another node's relay for this room is up: one track per receive slot, each carrying
    /// what that slot carries to everyone here, once for all of that node's listeners.
    RelayReady {
        node: String,
        id: u64,
        slots: Vec<LocalAudio>,
    },
    /// That relay is gone (closed, failed, or replaced by a newer one from the same node).
    RelayGone {
        node: String,
        id: u64,
    },
    /// Server shutdown: stop without ending the space.
    Stop,
}

/// The handle the rest of the server keeps for a room task.
pub(crate) struct RoomHandle {
    tx: mpsc::Sender<RoomCmd>,
    task: JoinHandle<()>,
}

impl RoomHandle {
    pub(crate) fn sender(&self) -> mpsc::Sender<RoomCmd> {
        self.tx.clone()
    }

    pub(crate) async fn stop(self) {
        let _ = self.tx.send(RoomCmd::Stop).await;
        let _ = self.task.await;
    }
}

/// Starts the task for `room`. `host` is the creator's connection for a new space, `None` for
/// one restored after a restart.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    room: Room,
    token: String,
    topics: Vec<String>,
    host: Option<(ParticipantId, Conn)>,
) -> RoomHandle {
    let (tx, rx) = mpsc::channel(256);
    let host_user = room
        .host()
        .and_then(|h| room.participant(h))
        .and_then(|p| p.user.clone());
    let forwarded_speakers = shared.config.max_forwarded_speakers.clamp(1, RECV_SLOTS);
    let mut actor = RoomActor {
        shared,
        host_user,
        room,
        token,
        topics,
        conns: HashMap::new(),
        speakers: Vec::new(),
        receivers: HashSet::new(),
        slots: HashMap::new(),
        uplinks: HashMap::new(),
        relays: HashMap::new(),
        slot_maps: HashMap::new(),
        listener_map: [None; RECV_SLOTS],
        selection: Selection::new(forwarded_speakers),
        forwarded_speakers,
        epoch: Instant::now(),
        ended: false,
    };
    if let Some((who, conn)) = host {
        actor.conns.insert(who, conn);
    }
    actor.after_input();
    let task = tokio::spawn(actor.run(rx));
    RoomHandle { tx, task }
}

/// Reloads every space the database still calls live; each gets the host grace period.
pub(crate) fn restore_live_spaces(shared: &Arc<Shared>) -> anyhow::Result<()> {
    let now = Instant::now();
    for rec in shared.db.live_spaces()? {
        let mut room = Room::restored(
            rec.id.clone(),
            rec.title.clone(),
            rec.host_name.clone(),
            shared.config.room,
            now,
        );
        // The host's account and blocks come back with the room; a handle that no longer
        // parses (a hand edit) restores the room without them rather than not at all.
        if let Some(user) = rec.host_user.as_deref().and_then(|u| UserId::new(u).ok()) {
            let blocked = shared.db.blocked_by(user.as_str())?;
            room = room
                .with_host_user(user)
                .with_blocked(blocked.into_iter().filter_map(|b| UserId::new(b).ok()));
        }
        tracing::info!(space = %rec.id, "restored live space; waiting for its host");
        let handle = spawn(Arc::clone(shared), room, rec.host_token, rec.topics, None);
        lock(&shared.rooms).insert(rec.id, handle);
    }
    Ok(())
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it: the maps it
/// guards stay consistent between statements, so the data is still good.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct RoomActor {
    shared: Arc<Shared>,
    /// The host's account, whose blocks this room records (none: a signed-out host).
    host_user: Option<UserId>,
    room: Room,
    token: String,
    topics: Vec<String>,
    conns: HashMap<ParticipantId, Conn>,
    /// Speakers (on the mic, not muted) in the order they started: ties in loudness go to
    /// the earlier.
    speakers: Vec<ParticipantId>,
    receivers: HashSet<ParticipantId>,
    slots: HashMap<ParticipantId, Vec<LocalAudio>>,
    uplinks: HashMap<ParticipantId, Forwarder>,
    /// Other nodes' relays (see `cluster`), by node: `(relay id, slot tracks)`.
    relays: HashMap<String, (u64, Vec<LocalAudio>)>,
    /// Which speaker each receiver's slots carry, as last told to that receiver.
    slot_maps: HashMap<ParticipantId, [Option<ParticipantId>; RECV_SLOTS]>,
    /// The layout every receiver who is not a forwarded speaker shares, and every other
    /// node's relay: a relay's slot carries the same speaker as its listeners' slot.
    listener_map: [Option<ParticipantId>; RECV_SLOTS],
    /// The loudest speakers, forwarded to everyone (see [`crate::loudest`]).
    selection: Selection,
    /// How many speakers each receiver gets at most (1..=RECV_SLOTS).
    forwarded_speakers: usize,
    /// The zero of the forwarders' loudness clocks.
    epoch: Instant,
    ended: bool,
}

impl RoomActor {
    async fn run(mut self, mut rx: mpsc::Receiver<RoomCmd>) {
        let mut evaluate = tokio::time::interval(EVALUATE_EVERY);
        evaluate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.ended {
            let deadline = self.room.poll_timeout();
            let cmd = tokio::select! {
                cmd = rx.recv() => cmd,
                _ = sleep_until_opt(deadline) => {
                    self.room.handle_timeout(Instant::now());
                    self.after_input();
                    continue;
                }
                _ = evaluate.tick() => {
                    // Who is loudest only matters when not every speaker fits.
                    if self.speakers.len() > self.forwarded_speakers && self.reselect() {
                        self.rewire();
                    }
                    continue;
                }
            };
            let Some(cmd) = cmd else { break };
            if matches!(cmd, RoomCmd::Stop) {
                break;
            }
            self.handle(cmd);
            self.after_input();
        }
        // Forwarders stop with the room; connections learn of the end from `Ended`.
        self.clear_uplinks();
        let id = self.room.id().clone();
        if lock(&self.shared.directory).remove(&id).is_some() {
            self.shared.directory_changed.send_modify(|v| *v += 1);
        }
        if self.ended {
            lock(&self.shared.rooms).remove(&id);
        }
    }

    fn handle(&mut self, cmd: RoomCmd) {
        let now = Instant::now();
        match cmd {
            RoomCmd::Join {
                who,
                name,
                user,
                conn,
                reply,
            } => {
                self.conns.insert(who, conn);
                let result = self
                    .room
                    .handle(confab_core::Input::Join { who, name, user }, now);
                let answer = match result {
                    Ok(()) => Ok(self.room.info()),
                    Err(e) => {
                        self.conns.remove(&who);
                        Err((e.code(), e.to_string()))
                    }
                };
                let _ = reply.send(answer);
            }
            RoomCmd::Resume {
                who,
                name,
                token,
                conn,
                reply,
            } => {
                if !constant_time_eq(token.as_bytes(), self.token.as_bytes()) {
                    let _ = reply.send(Err((ErrorCode::BadToken, "wrong host token".into())));
                    return;
                }
                self.conns.insert(who, conn);
                let answer = match self
                    .room
                    .handle(confab_core::Input::Resume { who, name }, now)
                {
                    Ok(()) => Ok(self.room.info()),
                    Err(e) => {
                        self.conns.remove(&who);
                        Err((e.code(), e.to_string()))
                    }
                };
                let _ = reply.send(answer);
            }
            RoomCmd::Leave { who } => {
                self.forget(who);
                let _ = self.room.handle(confab_core::Input::Leave { who }, now);
            }
            RoomCmd::Disconnected { who } => {
                self.forget(who);
                let _ = self
                    .room
                    .handle(confab_core::Input::Disconnected { who }, now);
            }
            RoomCmd::End { who, reply } => {
                let result = self
                    .room
                    .handle(confab_core::Input::End { who }, now)
                    .map_err(|e| (e.code(), e.to_string()));
                let _ = reply.send(result);
            }
            RoomCmd::Stage { input, reply } => {
                let result = self
                    .room
                    .handle(input, now)
                    .map_err(|e| (e.code(), e.to_string()));
                let _ = reply.send(result);
            }
            RoomCmd::MediaReady { who, slots } => {
                if self.room.role_of(who).is_some() {
                    self.slots.insert(who, slots);
                    self.rewire();
                }
            }
            RoomCmd::Uplink { who, audio } => {
                if self.room.role_of(who).is_some() {
                    let fwd = Forwarder::spawn(who, audio, self.epoch);
                    lock(&self.shared.uplink_stats).insert(who, Arc::clone(&fwd.stats));
                    self.uplinks.insert(who, fwd);
                    self.rewire();
                }
            }
            RoomCmd::RelayReady { node, id, slots } => {
                self.relays.insert(node, (id, slots));
                self.rewire();
            }
            RoomCmd::RelayGone { node, id } => {
                if self
                    .relays
                    .get(&node)
                    .is_some_and(|(current, _)| *current == id)
                {
                    self.relays.remove(&node);
                    self.rewire();
                }
            }
            RoomCmd::Stop => {}
        }
    }

    /// Keeps a block against the host's account, so their later spaces refuse the user too.
    fn persist_block(&self, user: UserId) {
        let Some(host) = self.host_user.clone() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = shared.db.insert_block(host.as_str(), user.as_str()) {
                tracing::error!(error = %e, "could not record a block");
            }
        });
    }

    /// Drops everything media-related about `who`, who is leaving.
    fn forget(&mut self, who: ParticipantId) {
        self.conns.remove(&who);
        self.slots.remove(&who);
        if let Some(fwd) = self.uplinks.remove(&who) {
            lock(&self.shared.uplink_stats).remove(&who);
            let s = &fwd.stats;
            tracing::debug!(
                participant = %who,
                received = s.received.load(std::sync::atomic::Ordering::Relaxed),
                forwarded = s.forwarded.load(std::sync::atomic::Ordering::Relaxed),
                refused = s.refused.load(std::sync::atomic::Ordering::Relaxed),
                silent = s.silent.load(std::sync::atomic::Ordering::Relaxed),
                "uplink closed"
            );
        }
    }

    /// Stops every forwarder.
    fn clear_uplinks(&mut self) {
        let mut stats = lock(&self.shared.uplink_stats);
        for who in self.uplinks.keys() {
            stats.remove(who);
        }
        drop(stats);
        self.uplinks.clear();
    }

    /// Applies the room's outputs, then refreshes the directory entry.
    fn after_input(&mut self) {
        let mut rewire = false;
        while let Some(out) = self.room.poll_output() {
            match out {
                Output::Broadcast { msg, except } => self.broadcast(&msg, except),
                Output::Send { to, msg } => self.send(to, msg),
                Output::Media(change) => {
                    rewire = true;
                    match change {
                        MediaChange::StartSpeaking(p) if !self.speakers.contains(&p) => {
                            self.speakers.push(p);
                        }
                        MediaChange::StopSpeaking(p) => self.speakers.retain(|s| *s != p),
                        MediaChange::StartReceiving(p) => {
                            self.receivers.insert(p);
                        }
                        MediaChange::StopReceiving(p) => {
                            self.receivers.remove(&p);
                        }
                        _ => {}
                    }
                }
                Output::Ended { reason } => self.on_ended(reason),
                Output::Blocked { user } => self.persist_block(user),
                _ => {}
            }
        }
        if rewire {
            self.reselect();
            self.rewire();
        }
        let id = self.room.id().clone();
        let changed = if self.ended {
            lock(&self.shared.directory).remove(&id).is_some()
        } else {
            let summary = SpaceSummary {
                id: id.clone(),
                title: self.room.title().to_owned(),
                host: self.room.host_name().to_owned(),
                topics: self.topics.clone(),
                listeners: self.room.listener_count(),
                host_handle: self.room.host_user().map(|u| u.as_str().to_owned()),
                speakers: self
                    .room
                    .stage()
                    .filter(|p| p.role != Role::Host)
                    .map(|p| p.name.clone())
                    .collect(),
            };
            let mut dir = lock(&self.shared.directory);
            if dir.get(&id) == Some(&summary) {
                false
            } else {
                dir.insert(id, summary);
                true
            }
        };
        if changed {
            self.shared.directory_changed.send_modify(|v| *v += 1);
        }
    }

    fn on_ended(&mut self, reason: EndReason) {
        self.ended = true;
        tracing::info!(space = %self.room.id(), ?reason, "space ended");
        let id = self.room.id().clone();
        if let Err(e) = self.shared.db.end_space(&id) {
            tracing::error!(space = %id, error = %e, "could not record the end of a space");
        }
        self.clear_uplinks();
        self.slots.clear();
        self.relays.clear();
    }

    fn send(&self, to: ParticipantId, msg: ServerMsg) {
        self.send_encoded(to, &Outbound::new(&msg));
    }

    fn send_encoded(&self, to: ParticipantId, out: &Outbound) {
        if let Some(conn) = self.conns.get(&to)
            && conn.try_send(out.clone()).is_err()
        {
            // Counted, not logged one by one: under overload that would be a line per message.
            crate::overload::signaling_dropped();
        }
    }

    fn broadcast(&self, msg: &ServerMsg, except: Option<ParticipantId>) {
        let out = Outbound::new(msg);
        for (who, conn) in &self.conns {
            if Some(*who) != except && conn.try_send(out.clone()).is_err() {
                crate::overload::signaling_dropped();
            }
        }
    }

    /// Re-evaluates who is loudest. Returns whether the selection changed.
    fn reselect(&mut self) -> bool {
        let now = Instant::now();
        let candidates: Vec<Candidate> = self
            .speakers
            .iter()
            .map(|&who| Candidate {
                who,
                db: self
                    .uplinks
                    .get(&who)
                    .map_or(SILENT_DB, |f| f.loudness.db(now)),
            })
            .collect();
        self.selection.update(&candidates, now)
    }

    /// Recomputes which speaker each receiver's slots carry (telling each receiver what
    /// changed for it) and who each uplink is copied to.
    fn rewire(&mut self) {
        let listeners_want = self.selection.wanted_by_listeners();
        self.listener_map = assign(&self.listener_map, &listeners_want, self.forwarded_speakers);
        let receivers: Vec<ParticipantId> = self.receivers.iter().copied().collect();
        for r in receivers {
            let old = self.slot_maps.get(&r).copied();
            // Forwarded speakers hear the others and the reserve, in a layout of their own;
            // everyone else (other nodes' listeners among them) shares the relays' layout.
            let new = if self.selection.is_forwarded(r) {
                assign(
                    &old.unwrap_or([None; RECV_SLOTS]),
                    &self.selection.wanted_by(r),
                    self.forwarded_speakers,
                )
            } else {
                self.listener_map
            };
            for (slot, speaker) in new.iter().enumerate() {
                // A new receiver hears about every slot; others about the ones that changed.
                if old.is_none_or(|o| o[slot] != *speaker) {
                    self.send(
                        r,
                        ServerMsg::Slot {
                            slot: slot as u8,
                            speaker: *speaker,
                        },
                    );
                }
            }
            self.slot_maps.insert(r, new);
        }
        let receivers = &self.receivers;
        self.slot_maps.retain(|r, _| receivers.contains(r));
        for (who, fwd) in &self.uplinks {
            fwd.set_allowed(self.speakers.contains(who));
            let relayed = self
                .listener_map
                .iter()
                .position(|s| s == &Some(*who))
                .map(|slot| {
                    self.relays
                        .values()
                        .filter_map(move |(_, tracks)| tracks.get(slot).cloned())
                });
            let subs = self
                .slot_maps
                .iter()
                .filter(|(r, _)| *r != who)
                .filter_map(|(r, map)| {
                    let slot = map.iter().position(|s| s == &Some(*who))?;
                    self.slots.get(r)?.get(slot).cloned()
                })
                .chain(relayed.into_iter().flatten())
                .collect();
            fwd.set_subscribers(subs);
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Compares secrets without leaking where they differ through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Looks up a live room's command sender.
pub(crate) fn find(shared: &Shared, id: &SpaceId) -> Option<mpsc::Sender<RoomCmd>> {
    lock(&shared.rooms).get(id).map(RoomHandle::sender)
}
