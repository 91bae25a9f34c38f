//! A server's peer connections, many on one UDP socket and one thread.
//!
//! [`PeerSession`](crate::PeerSession) gives every connection the `webrtc` crate's async
//! driver: its own socket, its own task, channels between them, a wake-up per packet. For a
//! listener that only receives a speaker's 50 packets a second, that machinery costs several
//! times the packet itself (issue 6's profile: most of the SFU's CPU). A [`Mux`] drives the
//! same sans-IO core (`rtc::RTCPeerConnection`, which `webrtc` wraps) for every connection
//! itself, on one thread:
//! - one UDP socket for all of them, whose address is every answer's only ICE candidate;
//!   datagrams are told apart by their source address, and the first ones from a new address
//!   (ICE binding requests) by the STUN username, which starts with the connection's own
//!   ICE username fragment;
//! - a forwarded packet is one message to the thread with the whole list of tracks it goes
//!   to; each copy is renumbered, SRTP-protected and sent there, with no task or channel per
//!   listener;
//! - each connection's timers (ICE consent, DTLS, RTCP reports) are kept as deadlines the
//!   thread sleeps until.
//!
//! Only answering is supported (the server's side); clients keep [`PeerSession`].
//!
//! [`PeerSession`]: crate::PeerSession

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::interceptor::{ReceiverReportBuilder, Registry, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::sync::{mpsc, oneshot};

use crate::batch::DatagramBatch;
use crate::session::{LevelId, LocalAudio, RemoteAudio, Sink, media_engine, opus_codec, rand_ssrc};
use crate::srtp_tap::{KeyTap, SrtpSender};
use crate::{AUDIO_LEVEL_URI, RECV_SLOTS, RtcError, RtpPacket, SessionEvent};

/// Whatever a connection's timers say, the thread looks at it at least this often.
const MAX_SLEEP: Duration = Duration::from_millis(250);
/// The soonest a connection's timer is looked at again.
const MIN_TIMER: Duration = Duration::from_millis(1);
/// The same for a connected connection. Its ICE agent asks for a look every 200 ms whatever
/// its settings (rtc-ice 0.21 takes the minimum of its check interval and the keepalive,
/// disconnect and failure timeouts, starting from the check interval), and each look walks
/// the connection's whole handler pipeline: at 1,000 listeners that was about 7 % of the
/// thread. Connected, the timers are a 2 s keepalive, 5 s disconnect detection and 1 s
/// receiver reports, which a look a second serves (keepalives go at 2 to 3 s, well inside
/// RFC 7675's 30 s consent).
const CONNECTED_TIMER: Duration = Duration::from_secs(1);
/// What the media socket asks of the kernel for each of its buffers.
const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams held aside during one forward, at most.
const MAX_BACKLOG: usize = 4096;
/// Copies sent between two looks at the socket while one packet goes to many listeners.
const COPIES_BETWEEN_READS: usize = 64;
/// Source addresses remembered per connection.
const MAX_ADDRS_PER_CONNECTION: usize = 4;
/// Datagrams read in one go before the thread looks at its other work.
const READ_BATCH: usize = 256;
/// Commands taken in one go before the thread reads its socket again.
const COMMAND_BATCH: usize = 256;
/// Deadlines are refreshed from each connection's timers at least this often, because a
/// forwarded packet (which does not refresh them, to stay cheap) can start a timer.
const DEADLINE_SWEEP: Duration = Duration::from_secs(1);

/// The counters of a [`Mux`], readable while it runs.
#[derive(Debug, Default)]
pub struct MuxStats {
    /// Connections alive now.
    pub connections: AtomicU64,
    /// Datagrams sent / that the socket refused (its send buffer was full).
    pub datagrams_out: AtomicU64,
    pub send_failures: AtomicU64,
    /// Datagrams read / dropped because no connection owned their source.
    pub datagrams_in: AtomicU64,
    pub strays: AtomicU64,
    /// Datagrams read off the socket in the middle of a forward (handled right after it).
    pub stashed: AtomicU64,
    /// Connections dropped because the engine panicked on them (0 unless there is a bug).
    pub panics: AtomicU64,
    /// Forwarded copies the thread protected and sent itself; the others went through the
    /// engine's per-connection pipeline (see [`crate::srtp_tap`]).
    pub direct_copies: AtomicU64,
}

/// A handle on the thread that drives many peer connections over one socket. Clones share
/// it; the thread ends when the last handle and the last session are gone.
#[derive(Clone)]
pub struct Mux {
    inner: Arc<MuxInner>,
}

pub(crate) struct MuxInner {
    /// Unique in the process: tells this mux's connection keys from another's.
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
    local: SocketAddr,
    stats: Arc<MuxStats>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("local", &self.inner.local)
            .finish()
    }
}

/// Where a muxed track's packets go: the thread and the connection.
#[derive(Clone)]
pub(crate) struct MuxTarget {
    pub(crate) mux: Arc<MuxInner>,
    pub(crate) key: u64,
    pub(crate) sender: RTCRtpSenderId,
}

pub(crate) enum Command {
    Answer {
        offer: String,
        audio_level: bool,
        level_id: LevelId,
        events: mpsc::UnboundedSender<SessionEvent>,
        reply: oneshot::Sender<Result<Answered, RtcError>>,
    },
    /// One packet to every muxed track of `to` that is this thread's.
    Forward {
        packet: RtpPacket,
        to: Arc<Vec<LocalAudio>>,
    },
    Close {
        key: u64,
    },
}

pub(crate) struct Answered {
    key: u64,
    sdp: String,
    senders: Vec<(RTCRtpSenderId, u32)>,
}

impl Mux {
    /// Binds a UDP socket on `ip` (an ephemeral port) and starts the thread.
    pub fn start(ip: IpAddr) -> Result<Mux, RtcError> {
        let socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))
            .map_err(|e| RtcError::Engine(format!("binding the media socket: {e}")))?;
        // Every connection's incoming traffic queues here while the thread sends a packet's
        // copies: ask for room (the kernel caps it at net.core.rmem_max / wmem_max).
        let socket = {
            let s = socket2::Socket::from(socket);
            for (what, r) in [
                ("receive", s.set_recv_buffer_size(SOCKET_BUFFER)),
                ("send", s.set_send_buffer_size(SOCKET_BUFFER)),
            ] {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "the media socket's {what} buffer stays at the default");
                }
            }
            std::net::UdpSocket::from(s)
        };
        socket
            .set_nonblocking(true)
            .map_err(|e| RtcError::Engine(format!("media socket: {e}")))?;
        let local = socket
            .local_addr()
            .map_err(|e| RtcError::Engine(format!("media socket: {e}")))?;
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(MuxStats::default());
        let thread_stats = Arc::clone(&stats);
        std::thread::Builder::new()
            .name("confab-mux".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "the media thread could not start");
                        return;
                    }
                };
                rt.block_on(async move {
                    let socket = match tokio::net::UdpSocket::from_std(socket) {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "the media socket");
                            return;
                        }
                    };
                    Engine::new(id, socket, local, thread_stats).run(rx).await;
                });
            })
            .map_err(|e| RtcError::Engine(format!("starting the media thread: {e}")))?;
        Ok(Mux {
            inner: Arc::new(MuxInner {
                id,
                commands: tx,
                local,
                stats,
            }),
        })
    }

    /// The socket every connection of this mux uses.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    pub fn stats(&self) -> &MuxStats {
        &self.inner.stats
    }

    /// Answers a client's offer (the fixed layout of [`crate`]): one forwarding track per
    /// receive slot, in m-line order. Returns the session, the answer SDP (complete: its one
    /// candidate is the mux's socket) and the slot tracks.
    pub async fn answer_client(
        &self,
        offer: String,
        audio_level: bool,
    ) -> Result<(MuxSession, String, Vec<LocalAudio>), RtcError> {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let level_id = LevelId::default();
        self.inner
            .commands
            .send(Command::Answer {
                offer,
                audio_level,
                level_id: Arc::clone(&level_id),
                events: events_tx,
                reply: reply_tx,
            })
            .map_err(|_| RtcError::Closed)?;
        let answered = reply_rx.await.map_err(|_| RtcError::Closed)??;
        let slots = answered
            .senders
            .iter()
            .map(|(sender, ssrc)| {
                LocalAudio::muxed(
                    *ssrc,
                    Arc::clone(&level_id),
                    MuxTarget {
                        mux: Arc::clone(&self.inner),
                        key: answered.key,
                        sender: *sender,
                    },
                )
            })
            .collect();
        Ok((
            MuxSession {
                mux: Arc::clone(&self.inner),
                key: answered.key,
                events: events_rx,
            },
            answered.sdp,
            slots,
        ))
    }
}

/// Sends `packet` on every track of `to`: the muxed ones with one message per mux (its thread
/// makes every copy), the others one by one. Returns how many tracks it went to, or was
/// handed over for.
pub async fn forward(to: &Arc<Vec<LocalAudio>>, packet: &RtpPacket) -> usize {
    let mut done = 0;
    let mut muxes: Vec<&Arc<MuxInner>> = Vec::new();
    for track in to.iter() {
        match &track.sink {
            Sink::Mux(target) => {
                if !muxes.iter().any(|m| MuxInner::same(m, &target.mux)) {
                    muxes.push(&target.mux);
                }
            }
            Sink::Track(_) => {
                if track.send(packet).await.is_ok() {
                    done += 1;
                }
            }
        }
    }
    for mux in muxes {
        if mux.forward(packet.clone(), Arc::clone(to)) {
            done += to
                .iter()
                .filter(|t| matches!(&t.sink, Sink::Mux(m) if MuxInner::same(&m.mux, mux)))
                .count();
        }
    }
    done
}

impl MuxInner {
    pub(crate) fn forward(&self, packet: RtpPacket, to: Arc<Vec<LocalAudio>>) -> bool {
        self.commands.send(Command::Forward { packet, to }).is_ok()
    }

    pub(crate) fn same(a: &Arc<MuxInner>, b: &Arc<MuxInner>) -> bool {
        a.id == b.id
    }
}

/// One connection on a [`Mux`]. Dropping it closes the connection.
pub struct MuxSession {
    mux: Arc<MuxInner>,
    key: u64,
    events: mpsc::UnboundedReceiver<SessionEvent>,
}

impl MuxSession {
    /// The next event, or `None` once the connection is gone.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// Closes the connection (also done on drop).
    pub fn close(&self) {
        let _ = self.mux.commands.send(Command::Close { key: self.key });
    }
}

impl Drop for MuxSession {
    fn drop(&mut self) {
        self.close();
    }
}

struct Peer {
    pc: RTCPeerConnection,
    events: mpsc::UnboundedSender<SessionEvent>,
    level_id: LevelId,
    /// When the connection's timers next want it.
    deadline: Instant,
    /// Remote track id to the channel its packets go to.
    tracks: HashMap<String, mpsc::UnboundedSender<RtpPacket>>,
    ufrag: String,
    addrs: Vec<SocketAddr>,
    closed: bool,
    /// Past the handshake: its timers are only keepalives and reports.
    connected: bool,
    /// Connected without keys the tap understands (another SRTP profile): its copies go
    /// through the engine, and the tap is not asked again for every copy.
    engine_only: bool,
    /// Where the connection's own outgoing SRTP keys are noted.
    tap: Arc<KeyTap>,
    /// Where media goes: the address of the last DTLS or SRTP(C) datagram that went out to
    /// the connection or that it accepted from there (ICE's selected pair).
    media_to: Option<SocketAddr>,
}

/// What a forwarded copy to a connection needs, apart from everything else of it: few
/// bytes, so a thousand copies touch little memory.
struct Direct {
    /// Protection with the connection's own outgoing SRTP keys.
    srtp: SrtpSender,
    /// The connection's media address (its `Peer::media_to`).
    to: SocketAddr,
}

struct Engine {
    id: u64,
    socket: tokio::net::UdpSocket,
    local: SocketAddr,
    stats: Arc<MuxStats>,
    peers: HashMap<u64, Peer>,
    /// Connections whose forwarded copies the thread protects and sends itself: those whose
    /// DTLS handshake produced keys the tap understands (see [`crate::srtp_tap`]).
    direct: HashMap<u64, Direct>,
    /// Direct copies on their way out (see [`crate::batch`]).
    batch: DatagramBatch,
    by_addr: HashMap<SocketAddr, u64>,
    by_ufrag: HashMap<String, u64>,
    next_key: u64,
    last_sweep: Instant,
    /// Datagrams taken off the socket in the middle of a forward, handled right after it.
    backlog: VecDeque<(Vec<u8>, SocketAddr)>,
    /// Each connection's deadline, earliest first. An entry whose connection has since been
    /// given another deadline (or is gone) is stale and skipped when it comes up.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Engine {
    fn new(
        id: u64,
        socket: tokio::net::UdpSocket,
        local: SocketAddr,
        stats: Arc<MuxStats>,
    ) -> Self {
        Engine {
            id,
            socket,
            local,
            stats,
            peers: HashMap::new(),
            direct: HashMap::new(),
            batch: DatagramBatch::new(crate::SEND_BATCH),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            next_key: 1,
            last_sweep: Instant::now(),
            timers: BinaryHeap::new(),
            backlog: VecDeque::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            let wake = self
                .timers
                .peek()
                .map_or(now + MAX_SLEEP, |Reverse((at, _))| *at)
                .min(now + MAX_SLEEP)
                .min(self.last_sweep + DEADLINE_SWEEP);
            tokio::select! {
                biased;
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    self.command(command);
                    for _ in 1..COMMAND_BATCH {
                        match commands.try_recv() {
                            Ok(c) => self.command(c),
                            Err(_) => break,
                        }
                    }
                }
                ready = self.socket.readable() => {
                    if let Err(e) = ready {
                        tracing::error!(error = %e, "the media socket failed");
                        break;
                    }
                    for _ in 0..READ_BATCH {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.datagram(&buf[..n], from),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                // ICMP errors from a peer that went away surface here.
                                tracing::debug!(error = %e, "media socket read");
                                break;
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            self.timers();
        }
        for (_, mut p) in self.peers.drain() {
            let _ = p.pc.close();
            let _ = p.events.send(SessionEvent::Closed);
        }
        tracing::debug!("media thread ended");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Answer {
                offer,
                audio_level,
                level_id,
                events,
                reply,
            } => {
                // A malformed offer is refused with an error; should the engine panic on
                // one, it is refused all the same and the thread goes on.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.answer(offer, audio_level, level_id, events)
                }))
                .unwrap_or_else(|_| {
                    self.stats.panics.fetch_add(1, Ordering::Relaxed);
                    Err(RtcError::Engine("the offer made the engine panic".into()))
                });
                let _ = reply.send(result);
            }
            Command::Forward { packet, to } => {
                self.forward(&packet, &to);
                while let Some((data, from)) = self.backlog.pop_front() {
                    self.datagram(&data, from);
                }
            }
            Command::Close { key } => self.remove(key),
        }
    }

    fn answer(
        &mut self,
        offer: String,
        audio_level: bool,
        level_id: LevelId,
        events: mpsc::UnboundedSender<SessionEvent>,
    ) -> Result<Answered, RtcError> {
        let key = self.next_key;
        self.next_key += 1;
        // The key makes it unique; the random part makes it unguessable, so a stranger cannot
        // name a connection to claim an address for it (ICE's integrity check would refuse
        // their request anyway; this keeps them out of the address map too).
        let ufrag = format!("cfx{key:x}{}", random_hex(8));
        let password = random_hex(32);
        let now = Instant::now();
        let tap = KeyTap::new(
            rtc::crypto::default_provider()
                .map_err(|e| RtcError::Engine(format!("no crypto provider: {e}")))?,
        );
        let setting_engine = SettingEngineBuilder::new()
            .with_crypto_provider(Arc::clone(&tap) as _)
            .with_ice_credentials(ufrag.clone(), password)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine(audio_level)?)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(
                // Receiver reports tell a speaker what its uplink lost. No sender reports to
                // listeners: the sender-report interceptor walks every forwarded packet (about
                // 8 % of this thread at 600 listeners), and what they carry (an NTP clock for
                // lip sync, counts for remote stats) nothing of Confab's reads.
                Registry::new().with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
            )
            .build(now)
            .map_err(engine)?;
        pc.set_remote_description(now, RTCSessionDescription::offer(offer).map_err(engine)?)
            .map_err(engine)?;
        let mut senders = Vec::with_capacity(RECV_SLOTS);
        for slot in 0..RECV_SLOTS {
            let ssrc = rand_ssrc();
            let id = crate::slot_track_id(slot);
            let track = MediaStreamTrack::new(
                "confab".to_owned(),
                id.clone(),
                id,
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus_codec(),
                    ..Default::default()
                }],
            );
            senders.push((pc.add_track(track).map_err(engine)?, ssrc));
        }
        pc.add_local_candidate(RTCIceCandidateInit {
            candidate: format!(
                "candidate:1 1 udp 2130706431 {} {} typ host",
                self.local.ip(),
                self.local.port()
            ),
            ..Default::default()
        })
        .map_err(engine)?;
        let answer = pc.create_answer(None).map_err(engine)?;
        pc.set_local_description(now, answer).map_err(engine)?;
        let sdp = pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or(RtcError::NoLocalDescription)?;
        level_id.store(level_extension_id(&sdp), Ordering::Relaxed);
        let deadline = next_deadline(&mut pc, false);
        self.by_ufrag.insert(ufrag.clone(), key);
        self.timers.push(Reverse((deadline, key)));
        self.peers.insert(
            key,
            Peer {
                pc,
                events,
                level_id,
                deadline,
                tracks: HashMap::new(),
                ufrag,
                addrs: Vec::new(),
                closed: false,
                connected: false,
                engine_only: false,
                tap,
                media_to: None,
            },
        );
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.drain(key);
        Ok(Answered { key, sdp, senders })
    }

    fn datagram(&mut self, data: &[u8], from: SocketAddr) {
        self.stats.datagrams_in.fetch_add(1, Ordering::Relaxed);
        let key = match self.by_addr.get(&from) {
            Some(k) => *k,
            None => {
                let Some(key) = stun_local_ufrag(data)
                    .and_then(|u| self.by_ufrag.get(u))
                    .copied()
                else {
                    self.stats.strays.fetch_add(1, Ordering::Relaxed);
                    return;
                };
                let Some(p) = self.peers.get_mut(&key) else {
                    return;
                };
                // A connection's addresses are few (its candidates). Past that a request is
                // still handed to it (its ICE agent checks it) but its address is not
                // remembered: nobody can grow the map or push a working address out of it.
                if p.addrs.len() < MAX_ADDRS_PER_CONNECTION {
                    p.addrs.push(from);
                    self.by_addr.insert(from, key);
                }
                key
            }
        };
        if !self.peers.contains_key(&key) {
            return;
        }
        let message = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.local,
                peer_addr: from,
                transport_protocol: TransportProtocol::UDP,
                ecn: None,
            },
            message: BytesMut::from(data),
        };
        self.contained(key, |engine| {
            if let Some(peer) = engine.peers.get_mut(&key) {
                match peer.pc.handle_read(message) {
                    // Accepted DTLS or SRTCP (which a client's receiver reports are) comes
                    // from the pair ICE chose.
                    Ok(()) if !is_stun(data) => peer.media_to = Some(from),
                    Ok(()) => {}
                    // A datagram the connection could not use (garbled, replayed, out of
                    // order in the handshake): its problem to recover from, never the
                    // thread's.
                    Err(e) => tracing::debug!(error = %e, "media datagram refused"),
                }
            }
            engine.drain(key);
        });
    }

    /// Runs `f` on connection `key`; should the engine underneath panic on it, that one
    /// connection is dropped (its session sees `Closed`) and every other goes on.
    fn contained(&mut self, key: u64, f: impl FnOnce(&mut Self)) {
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if run.is_err() {
            tracing::error!(key, "a peer connection panicked; dropping it");
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            self.forget(key);
        }
    }

    /// Drops a connection without asking its engine anything (it may be inconsistent).
    fn forget(&mut self, key: u64) {
        self.direct.remove(&key);
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        for a in &peer.addrs {
            self.by_addr.remove(a);
        }
        self.by_ufrag.remove(&peer.ufrag);
        let _ = peer.events.send(SessionEvent::Closed);
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
        // The connection's state may be what panicked; leak nothing, touch nothing.
        drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(
            || drop(peer),
        )));
    }

    /// Everything a connection has to say after it was touched: datagrams, events, media.
    fn drain(&mut self, key: u64) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        flush(peer, &self.socket, &self.stats);
        while let Some(event) = peer.pc.poll_event() {
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                    tracing::debug!(%state, key, "muxed connection state");
                    match state {
                        RTCPeerConnectionState::Connected => {
                            peer.connected = true;
                            let _ = peer.events.send(SessionEvent::Connected);
                        }
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            peer.closed = true;
                        }
                        _ => {}
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init)) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    let track_id = init.track_id.to_string();
                    peer.tracks.insert(track_id.clone(), tx);
                    let _ = peer
                        .events
                        .send(SessionEvent::RemoteAudio(RemoteAudio::muxed(
                            rx,
                            track_id,
                            Arc::clone(&peer.level_id),
                        )));
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) => {
                    peer.tracks.remove(&track_id.to_string());
                }
                _ => {}
            }
        }
        while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
            if let RTCMessage::RtpPacket(track_id, packet) = message {
                let id = peer.level_id.load(Ordering::Relaxed);
                if let Some(tx) = peer.tracks.get(&track_id.to_string()) {
                    let _ = tx.send(RtpPacket::from_rtp(packet, id));
                }
            }
        }
        // Anything the events or reads queued goes out now.
        flush(peer, &self.socket, &self.stats);
        if let (Some(to), Some(d)) = (peer.media_to, self.direct.get_mut(&key)) {
            d.to = to;
        }
        let deadline = next_deadline(&mut peer.pc, peer.connected);
        if deadline != peer.deadline {
            peer.deadline = deadline;
            self.timers.push(Reverse((deadline, key)));
        }
        if peer.closed {
            self.remove(key);
        }
    }

    fn timers(&mut self) {
        let now = Instant::now();
        if now >= self.last_sweep + DEADLINE_SWEEP {
            // Forwarding does not look at timers (to stay cheap); a packet sent may have
            // started one, so every connection's deadline is read again now and then.
            self.last_sweep = now;
            for (key, peer) in &mut self.peers {
                let deadline = next_deadline(&mut peer.pc, peer.connected);
                if deadline < peer.deadline {
                    peer.deadline = deadline;
                    self.timers.push(Reverse((deadline, *key)));
                }
            }
        }
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers.get_mut(&key) else {
                continue;
            };
            if peer.deadline != at {
                continue;
            }
            self.contained(key, |engine| {
                if let Some(peer) = engine.peers.get_mut(&key)
                    && let Err(e) = peer.pc.handle_timeout(now)
                {
                    tracing::debug!(error = %e, key, "muxed connection timer");
                }
                engine.drain(key);
            });
        }
    }

    fn forward(&mut self, packet: &RtpPacket, to: &[LocalAudio]) {
        let now = Instant::now();
        let mut failed = None;
        // Direct copies are built and sealed in the batch's buffers, sent a batch at a time,
        // and counted once at the end.
        let (mut sent, mut refused) = (0u64, 0u64);
        // One guard around the whole list: unwinding costs nothing until something panics,
        // and then only the connection it panicked on is dropped (the rest of this packet's
        // copies are lost, not the listeners).
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for (i, track) in to.iter().enumerate() {
                let Sink::Mux(target) = &track.sink else {
                    continue;
                };
                if target.mux.id != self.id {
                    continue;
                }
                if i % COPIES_BETWEEN_READS == COPIES_BETWEEN_READS - 1 {
                    // A packet to a thousand listeners keeps the thread busy for
                    // milliseconds; what arrives meanwhile (a speaker's next packet among
                    // it) is taken off the socket before its buffer can overflow.
                    stash(&self.socket, &mut self.backlog, &self.stats);
                }
                failed = Some(target.key);
                let direct = match self.direct.get_mut(&target.key) {
                    Some(d) => Some(d),
                    None => {
                        // Keys appear once, when the DTLS handshake completes. From then on
                        // every copy on the slots goes this way (none could go out before), so
                        // the engine's own context never sees these SSRCs and the two cannot
                        // disagree on a rollover counter.
                        let Some(peer) = self.peers.get_mut(&target.key) else {
                            continue;
                        };
                        let srtp = if peer.engine_only {
                            None
                        } else {
                            let srtp = peer.tap.local_sender();
                            // Connected means the DTLS handshake is done: no keys now, none later.
                            peer.engine_only = srtp.is_none() && peer.connected;
                            srtp
                        };
                        match (peer.media_to, srtp) {
                            (Some(to), Some(srtp)) => {
                                Some(self.direct.entry(target.key).or_insert(Direct { srtp, to }))
                            }
                            _ => None,
                        }
                    }
                };
                if let Some(d) = direct {
                    let buf = self.batch.buffer();
                    let header_len = track.write_rtp(packet, buf);
                    match d.srtp.protect(buf, header_len) {
                        Ok(()) => {
                            self.batch.push(d.to);
                            track.count_one();
                        }
                        Err(e) => tracing::trace!(error = %e, "protecting a forwarded copy"),
                    }
                    if self.batch.is_full() {
                        let done = self.batch.send(&self.socket);
                        sent += done.sent;
                        refused += done.refused;
                    }
                    continue;
                }
                let Some(peer) = self.peers.get_mut(&target.key) else {
                    continue;
                };
                let rtp = track.to_rtp(packet);
                let Some(mut sender) = peer.pc.rtp_sender(target.sender) else {
                    continue;
                };
                if let Err(e) = sender.write_rtp(now, rtp) {
                    tracing::trace!(error = %e, "forwarding to a muxed connection");
                    continue;
                }
                track.count_one();
                flush(peer, &self.socket, &self.stats);
            }
            failed = None;
        }));
        // What the batch holds is whole, sealed datagrams, even after a panic.
        let done = self.batch.send(&self.socket);
        sent += done.sent;
        refused += done.refused;
        self.stats.datagrams_out.fetch_add(sent, Ordering::Relaxed);
        self.stats.direct_copies.fetch_add(sent, Ordering::Relaxed);
        self.stats
            .send_failures
            .fetch_add(refused, Ordering::Relaxed);
        if let (Err(_), Some(key)) = (run, failed) {
            tracing::error!(
                key,
                "a peer connection panicked on a forwarded packet; dropping it"
            );
            self.stats.panics.fetch_add(1, Ordering::Relaxed);
            self.forget(key);
        }
    }

    fn remove(&mut self, key: u64) {
        self.direct.remove(&key);
        let Some(mut peer) = self.peers.remove(&key) else {
            return;
        };
        let _ = peer.pc.close();
        flush(&mut peer, &self.socket, &self.stats);
        for a in &peer.addrs {
            self.by_addr.remove(a);
        }
        self.by_ufrag.remove(&peer.ufrag);
        let _ = peer.events.send(SessionEvent::Closed);
        self.stats.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When a connection's timers next want it: never sooner than a millisecond from now, since
/// they are millisecond-grained and a timer already due must not spin the thread; once
/// connected, never sooner than [`CONNECTED_TIMER`].
fn next_deadline(pc: &mut RTCPeerConnection, connected: bool) -> Instant {
    let now = Instant::now();
    let soonest = now
        + if connected {
            CONNECTED_TIMER
        } else {
            MIN_TIMER
        };
    pc.poll_timeout()
        .unwrap_or(now + MAX_SLEEP)
        .clamp(soonest, soonest.max(now + MAX_SLEEP))
}

/// Moves what the socket holds now into `backlog` (up to [`MAX_BACKLOG`]; past that the
/// kernel keeps it, or drops it when its own buffer is full).
fn stash(
    socket: &tokio::net::UdpSocket,
    backlog: &mut VecDeque<(Vec<u8>, SocketAddr)>,
    stats: &MuxStats,
) {
    let mut buf = [0u8; 2048];
    while backlog.len() < MAX_BACKLOG {
        match socket.try_recv_from(&mut buf) {
            Ok((n, from)) => {
                stats.stashed.fetch_add(1, Ordering::Relaxed);
                backlog.push_back((buf[..n].to_vec(), from));
            }
            Err(_) => break,
        }
    }
}

/// Sends everything a connection's engine has queued.
fn flush(peer: &mut Peer, socket: &tokio::net::UdpSocket, stats: &MuxStats) {
    while let Some(out) = peer.pc.poll_write() {
        if !is_stun(&out.message) {
            peer.media_to = Some(out.transport.peer_addr);
        }
        send(socket, stats, &out.message, out.transport.peer_addr);
    }
}

/// Whether a datagram is STUN, by its first byte (RFC 7983: 0..=3; DTLS and SRTP start
/// higher). STUN goes to and comes from every candidate ICE checks, not only the chosen one.
fn is_stun(data: &[u8]) -> bool {
    data.first().is_none_or(|b| *b < 4)
}

fn send(socket: &tokio::net::UdpSocket, stats: &MuxStats, data: &[u8], to: SocketAddr) {
    if try_send(socket, data, to) {
        stats.datagrams_out.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.send_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends one datagram without waiting; false if the socket refused it (its buffer full).
fn try_send(socket: &tokio::net::UdpSocket, data: &[u8], to: SocketAddr) -> bool {
    match socket.try_send_to(data, to) {
        Ok(_) => true,
        Err(e) => {
            tracing::trace!(error = %e, %to, "media send");
            false
        }
    }
}

fn engine(e: rtc::shared::error::Error) -> RtcError {
    RtcError::Engine(e.to_string())
}

/// The id `sdp` gives the audio level extension (0: none).
fn level_extension_id(sdp: &str) -> u8 {
    sdp.lines()
        .filter_map(|l| l.trim().strip_prefix("a=extmap:"))
        .find_map(|rest| {
            let (id, uri) = rest.split_once(' ')?;
            if uri.split_whitespace().next()? != AUDIO_LEVEL_URI {
                return None;
            }
            id.split('/').next()?.parse().ok()
        })
        .unwrap_or(0)
}

/// The ICE username fragment of ours that a STUN binding request names: its USERNAME is
/// "ours:theirs" (RFC 8445 §7.2.2). `None` for anything that is not such a request.
///
/// Hand-written rather than a full STUN decode: only the one attribute is wanted, before any
/// connection is chosen, and the connection's own ICE agent checks the message properly.
fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    if data.len() < 20 || data[0] & 0xc0 != 0 || data[4..8] != MAGIC {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
    let attrs = data.get(20..20 + len)?;
    let mut at = 0;
    while at + 4 <= attrs.len() {
        let kind = u16::from_be_bytes([attrs[at], attrs[at + 1]]);
        let n = usize::from(u16::from_be_bytes([attrs[at + 2], attrs[at + 3]]));
        let value = attrs.get(at + 4..at + 4 + n)?;
        if kind == USERNAME {
            let name = std::str::from_utf8(value).ok()?;
            return name.split(':').next();
        }
        at += 4 + n.div_ceil(4) * 4;
    }
    None
}

fn random_hex(n: usize) -> String {
    let mut s = String::with_capacity(n);
    while s.len() < n {
        s.push_str(&format!("{:08x}", rand_ssrc()));
    }
    s.truncate(n);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_extension_id_is_read_from_the_answer() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
                   a=extmap:5/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n";
        assert_eq!(level_extension_id(sdp), 5);
        assert_eq!(level_extension_id("v=0\r\n"), 0);
    }

    #[test]
    fn a_binding_request_names_its_connection_and_garbage_names_none() {
        // A binding request with USERNAME "cfx1a:abcd" (10 bytes, padded to 12).
        let mut m = vec![0x00, 0x01, 0x00, 16, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 10]);
        m.extend_from_slice(b"cfx1a:abcd\0\0");
        assert_eq!(stun_local_ufrag(&m), Some("cfx1a"));
        // Truncated, not STUN (an RTP packet), empty.
        assert_eq!(stun_local_ufrag(&m[..30]), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        assert_eq!(stun_local_ufrag(&[]), None);
        // A length field that points past the end.
        let mut bad = m.clone();
        bad[3] = 200;
        assert_eq!(stun_local_ufrag(&bad), None);
    }

    fn packet(seq: u16, level: u8) -> RtpPacket {
        RtpPacket {
            sequence: seq,
            timestamp: u32::from(seq) * 960,
            ssrc: 7,
            marker: false,
            payload: bytes::Bytes::from(vec![seq as u8; 40]),
            level: Some(crate::AudioLevel::new(level, true)),
        }
    }

    /// A client's session against a muxed one: the microphone arrives with its levels, and
    /// what the server forwards on each slot arrives on that slot, renumbered into one stream.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_and_a_muxed_server_hear_each_other() {
        let mux = Mux::start(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).unwrap();
        let mut clients = Vec::new();
        let mut servers = Vec::new();
        // Two clients on the one socket: each must get its own packets.
        for _ in 0..2 {
            let mut client = crate::PeerSession::new(&crate::RtcConfig::default())
                .await
                .unwrap();
            let mic = client.add_client_transceivers().await.unwrap();
            let offer = client.create_offer().await.unwrap();
            let (server, answer, slots) = mux.answer_client(offer, true).await.unwrap();
            assert_eq!(slots.len(), RECV_SLOTS);
            assert!(answer.contains(&mux.local_addr().port().to_string()));
            client.accept_answer(answer).await.unwrap();
            clients.push((client, mic));
            servers.push((server, slots));
        }
        let wait = Duration::from_secs(10);
        // Server side: the uplink of each client.
        let mut uplinks = Vec::new();
        for (i, (server, _)) in servers.iter_mut().enumerate() {
            let mic = &clients[i].1;
            let remote = tokio::time::timeout(wait, async {
                loop {
                    // Keep sending until the server has the track.
                    let _ = mic.send(&packet(1, 30)).await;
                    tokio::select! {
                        e = server.next_event() => match e {
                            Some(SessionEvent::RemoteAudio(r)) => break r,
                            Some(_) => {}
                            None => panic!("server session ended"),
                        },
                        () = tokio::time::sleep(Duration::from_millis(20)) => {}
                    }
                }
            })
            .await
            .expect("the server never saw the microphone");
            uplinks.push(remote);
        }
        for (i, up) in uplinks.iter().enumerate() {
            clients[i]
                .1
                .send(&packet(500 + i as u16, 20 + i as u8))
                .await
                .unwrap();
            let got = tokio::time::timeout(wait, async {
                loop {
                    let p = up.recv().await.expect("uplink ended");
                    if p.sequence == 500 + i as u16 {
                        break p;
                    }
                }
            })
            .await
            .expect("the microphone packet never arrived");
            assert_eq!(got.payload.len(), 40);
            assert_eq!(got.level.map(|l| l.dbov()), Some(20 + i as u8));
        }
        // Downlink: client 0's slot 1 and client 1's slot 1, one message to the mux.
        let mut remotes = Vec::new();
        for (client, _) in &mut clients {
            let r = tokio::time::timeout(wait, async {
                loop {
                    match client.next_event().await {
                        Some(SessionEvent::RemoteAudio(r)) if r.slot() == Some(1) => break r,
                        Some(_) => {}
                        None => panic!("client ended"),
                    }
                }
            });
            remotes.push(r);
        }
        let to = Arc::new(vec![servers[0].1[1].clone(), servers[1].1[1].clone()]);
        // The remote track only opens once a packet arrived: send while waiting.
        let sending = {
            let to = Arc::clone(&to);
            tokio::spawn(async move {
                for seq in 1000u16..1200 {
                    assert_eq!(forward(&to, &packet(seq, 40)).await, 2);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        for r in remotes {
            let r = r.await.expect("no slot 1 track on the client");
            let mut last = None;
            for _ in 0..20 {
                let p = tokio::time::timeout(wait, r.recv()).await.unwrap().unwrap();
                assert_eq!(p.payload.len(), 40);
                assert_eq!(p.level.map(|l| l.dbov()), Some(40), "the level goes along");
                if let Some(l) = last {
                    assert_eq!(p.sequence, u16::wrapping_add(l, 1), "one stream, no gaps");
                }
                last = Some(p.sequence);
            }
        }
        sending.abort();
        assert!(mux.stats().datagrams_out.load(Ordering::Relaxed) > 40);
        // What was heard went the direct way (protected with the tapped keys), not through
        // the engine's pipeline: 20 packets on each client at least.
        assert!(mux.stats().direct_copies.load(Ordering::Relaxed) >= 40);
        // Closing a session ends its connection on the mux.
        drop(servers);
        tokio::time::timeout(wait, async {
            while mux.stats().connections.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the connections outlived their sessions");
    }

    /// Forwards on `slot` every 5 ms (sequence numbers from `first`, payloads `tag` bytes
    /// long) while reading the client's track `r`; returns how many of those packets arrived,
    /// in order (at most `want`).
    async fn hear(
        r: &RemoteAudio,
        slot: &LocalAudio,
        first: u16,
        tag: usize,
        want: usize,
    ) -> usize {
        let to = Arc::new(vec![slot.clone()]);
        let sending = tokio::spawn(async move {
            for seq in first..first + 2000 {
                let mut p = packet(seq, 40);
                // Tagged by length, so that what an earlier sender left queued is told apart.
                p.payload = bytes::Bytes::from(vec![1u8; tag]);
                forward(&to, &p).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let heard = tokio::time::timeout(Duration::from_secs(10), async {
            let mut n = 0;
            let mut last: Option<u16> = None;
            while n < want {
                let Some(p) = r.recv().await else { break };
                if p.payload.len() != tag {
                    continue;
                }
                if last.is_some_and(|l| p.sequence.wrapping_sub(l) >= 0x8000) {
                    break;
                }
                last = Some(p.sequence);
                n += 1;
            }
            n
        })
        .await
        .unwrap_or(0);
        sending.abort();
        heard
    }

    /// The client's slot-1 track, which opens with the first packet forwarded on it.
    async fn slot_1_track(client: &mut crate::PeerSession, slots: &[LocalAudio]) -> RemoteAudio {
        let to = Arc::new(vec![slots[1].clone()]);
        let sending = tokio::spawn(async move {
            for seq in 0u16..2000 {
                forward(&to, &packet(seq, 40)).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match client.next_event().await {
                    Some(SessionEvent::RemoteAudio(r)) if r.slot() == Some(1) => break r,
                    Some(_) => {}
                    None => panic!("the client session ended"),
                }
            }
        })
        .await
        .expect("no slot 1 track on the client");
        sending.abort();
        r
    }

    /// Garbage at the mux's socket, from strangers and in the shape of ICE requests naming a
    /// real connection, and a garbage offer: each is refused, and the connection that was
    /// there still hears what is forwarded to it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_at_the_socket_and_a_bad_offer_leave_a_connection_working() {
        let mux = Mux::start(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)).unwrap();
        assert!(mux.answer_client("not sdp".into(), true).await.is_err());
        let mut client = crate::PeerSession::new(&crate::RtcConfig::default())
            .await
            .unwrap();
        let _mic = client.add_client_transceivers().await.unwrap();
        let offer = client.create_offer().await.unwrap();
        let (_server, answer, slots) = mux.answer_client(offer, true).await.unwrap();
        client.accept_answer(answer.clone()).await.unwrap();
        let track = slot_1_track(&mut client, &slots).await;
        assert_eq!(hear(&track, &slots[1], 5000, 41, 10).await, 10);

        let ufrag = answer
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=ice-ufrag:"))
            .unwrap()
            .to_owned();
        let stranger = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = mux.local_addr();
        let mut junk: Vec<Vec<u8>> = vec![
            vec![],
            vec![0; 1],
            vec![0xff; 1500],
            // RTP-looking, SRTCP-looking and DTLS-looking bytes.
            [vec![0x80, 111], vec![0x5a; 60]].concat(),
            [vec![0x80, 200], vec![0x5a; 60]].concat(),
            [vec![22, 0xfe, 0xfd], vec![0; 60]].concat(),
        ];
        // Binding requests naming our connection (right ufrag, no valid integrity), some
        // truncated.
        for cut in [0usize, 3, 10] {
            let name = format!("{ufrag}:x");
            let mut m = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
            m.extend_from_slice(&[9; 12]);
            m.extend_from_slice(&[0x00, 0x06]);
            m.extend_from_slice(&(name.len() as u16).to_be_bytes());
            m.extend_from_slice(name.as_bytes());
            while m.len() % 4 != 0 {
                m.push(0);
            }
            m.extend_from_slice(&[0x00, 0x08, 0, 20]);
            m.extend_from_slice(&[0xab; 20]);
            let len = (m.len() - 20) as u16;
            m[2..4].copy_from_slice(&len.to_be_bytes());
            m.truncate(m.len() - cut);
            junk.push(m);
        }
        // From many ports too: the connection's address list stays bounded.
        let others: Vec<_> = (0..10)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        for round in 0..20 {
            for j in &junk {
                let _ = stranger.send_to(j, to);
                let _ = others[round % others.len()].send_to(j, to);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(mux.stats().strays.load(Ordering::Relaxed) > 0);
        assert_eq!(mux.stats().panics.load(Ordering::Relaxed), 0);
        assert_eq!(mux.stats().connections.load(Ordering::Relaxed), 1);
        // The connection still hears its slot, the sequence unbroken.
        assert_eq!(hear(&track, &slots[1], 10000, 42, 20).await, 20);
        assert_eq!(mux.stats().send_failures.load(Ordering::Relaxed), 0);
    }
}
