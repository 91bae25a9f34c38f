//! One peer connection carrying Confab audio.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RTCRtpHeaderExtensionParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry,
    SettingEngineBuilder, StatsSelector, configure_rtcp_reports,
};

use crate::{AUDIO_LEVEL_URI, AudioLevel, OPUS_PAYLOAD_TYPE, RECV_SLOTS, parse_slot_track_id};

/// Where a session binds its UDP socket.
#[derive(Clone, Debug)]
pub struct RtcConfig {
    /// The local address ICE host candidates use. Loopback for a server on 127.0.0.1.
    pub bind_ip: IpAddr,
    /// How long to wait for ICE gathering before giving up on an offer or answer.
    pub gather_timeout: Duration,
    /// Whether to offer (or accept) the RFC 6464 audio level header extension. On by default;
    /// off only to stand in for a peer that does not know it.
    pub audio_level: bool,
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            gather_timeout: Duration::from_secs(5),
            audio_level: true,
        }
    }
}

/// What can go wrong with a session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    #[error("webrtc: {0}")]
    Engine(String),
    #[error("ICE gathering did not finish within {0:?}")]
    GatherTimeout(Duration),
    #[error("the session has no local description after gathering")]
    NoLocalDescription,
    #[error("the remote description is not an {expected}")]
    WrongSdpType { expected: &'static str },
    #[error("the session is closed")]
    Closed,
}

impl From<webrtc::error::Error> for RtcError {
    fn from(e: webrtc::error::Error) -> Self {
        RtcError::Engine(e.to_string())
    }
}

/// Something that happened to a session.
#[non_exhaustive]
pub enum SessionEvent {
    /// DTLS is up: media flows.
    Connected,
    /// The connection failed or was closed; no more media.
    Closed,
    /// The remote side started sending on one of our receive transceivers.
    RemoteAudio(RemoteAudio),
}

impl std::fmt::Debug for SessionEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SessionEvent::Connected => f.write_str("Connected"),
            SessionEvent::Closed => f.write_str("Closed"),
            SessionEvent::RemoteAudio(r) => write!(f, "RemoteAudio({})", r.track_id),
        }
    }
}

/// What the network does to a session, as the WebRTC engine measures it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkStats {
    /// The latest round-trip time to the peer, from the ICE consent checks (STUN binding
    /// requests and responses) on the selected candidate pair; `None` until one was measured.
    /// This is the one figure RTCP cannot give here: the engine's receiver reports carry no
    /// round-trip time yet.
    pub round_trip: Option<Duration>,
    /// Each receive slot that has carried RTP, by slot.
    pub slots: Vec<SlotNetworkStats>,
}

/// What the network did to one receive slot's RTP stream (cumulative since it started).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlotNetworkStats {
    pub slot: usize,
    /// RTP packets that arrived.
    pub packets_received: u64,
    /// Packets missing by sequence number, as our last RTCP receiver report said (updated once
    /// a second; may fall when a late packet turns up).
    pub packets_lost: i64,
    /// The RFC 3550 interarrival jitter of our last receiver report.
    pub jitter: Duration,
}

/// One RTP packet, as Confab cares about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpPacket {
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub marker: bool,
    pub payload: Bytes,
    /// The RFC 6464 audio level: set on send when the extension was negotiated; on receive,
    /// what the sender put there (`None`: not negotiated, or the sender left it out).
    pub level: Option<AudioLevel>,
}

impl RtpPacket {
    pub(crate) fn from_rtp(p: rtp::Packet, level_id: u8) -> Self {
        let level = if level_id == 0 {
            None
        } else {
            p.header
                .get_extension(level_id)
                .and_then(|b| b.first().copied())
                .map(AudioLevel::from_byte)
        };
        RtpPacket {
            sequence: p.header.sequence_number,
            timestamp: p.header.timestamp,
            ssrc: p.header.ssrc,
            marker: p.header.marker,
            payload: p.payload,
            level,
        }
    }
}

/// Every possible one-byte audio level extension payload, so that stamping a packet with one
/// needs no allocation for its bytes.
static LEVEL_BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as u8;
        i += 1;
    }
    t
};

/// The negotiated id of the audio level extension, shared by a session and its tracks; 0 until
/// negotiation settled it, or when it was not negotiated.
pub(crate) type LevelId = Arc<AtomicU8>;

/// Audio we send: RTP packets written here go to the remote peer.
#[derive(Clone)]
pub struct LocalAudio {
    pub(crate) sink: Sink,
    ssrc: u32,
    /// Counts the packets written, when someone asked to (see [`LocalAudio::count_sent`]).
    sent: Option<Arc<AtomicU64>>,
    level_id: LevelId,
    /// For a server's receive-slot track, which carries one speaker after another: the
    /// renumbering that keeps its sequence numbers and timestamps one continuous stream.
    renumber: Option<Arc<std::sync::Mutex<Renumber>>>,
}

/// Where a [`LocalAudio`]'s packets go.
#[derive(Clone)]
pub(crate) enum Sink {
    /// A track of a [`PeerSession`] (the `webrtc` crate's async driver).
    Track(Arc<TrackLocalStaticRTP>),
    /// A connection on a [`crate::Mux`].
    Mux(crate::mux::MuxTarget),
}

/// Sequence numbers and timestamps of a track whose packets come from one source after
/// another. The receiver must see one stream: SRTP guesses each packet's rollover counter from
/// its sequence number, so a jump of more than 2^15 (any switch between two senders' random
/// numberings, half the time) would make it reject every packet after the switch.
#[derive(Default)]
struct Renumber {
    /// The SSRC of the sender whose packets go out now (`None` before the first packet).
    source: Option<u32>,
    seq_delta: u16,
    ts_delta: u32,
    last_seq: u16,
    last_ts: u32,
}

impl Renumber {
    /// The outgoing sequence number, timestamp and marker of `p`.
    fn map(&mut self, p: &RtpPacket) -> (u16, u32, bool) {
        let mut marker = p.marker;
        if self.source.is_none() {
            (self.last_seq, self.last_ts) = (p.sequence, p.timestamp);
        }
        if self.source != Some(p.ssrc) {
            if self.source.is_some() {
                // Carry on from the last packet out, one 20 ms frame later; a new talkspurt.
                self.seq_delta = self.last_seq.wrapping_add(1).wrapping_sub(p.sequence);
                self.ts_delta = self
                    .last_ts
                    .wrapping_add(FRAME_TICKS)
                    .wrapping_sub(p.timestamp);
                marker = true;
            }
            self.source = Some(p.ssrc);
        }
        let seq = p.sequence.wrapping_add(self.seq_delta);
        let ts = p.timestamp.wrapping_add(self.ts_delta);
        // A late packet of this source must not move the high-water mark back.
        if seq.wrapping_sub(self.last_seq) < 0x8000 {
            self.last_seq = seq;
            self.last_ts = ts;
        }
        (seq, ts, marker)
    }
}

/// One 20 ms Opus frame in RTP timestamp units (48 kHz).
const FRAME_TICKS: u32 = 960;

impl LocalAudio {
    fn new(track_id: &str, level_id: LevelId) -> Self {
        let ssrc: u32 = rand_ssrc();
        let codec = opus_codec();
        let track = MediaStreamTrack::new(
            "confab".to_owned(),
            track_id.to_owned(),
            track_id.to_owned(),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        LocalAudio {
            sink: Sink::Track(Arc::new(TrackLocalStaticRTP::new(track))),
            ssrc,
            sent: None,
            level_id,
            renumber: None,
        }
    }

    /// A forwarding track of a connection on a [`crate::Mux`].
    pub(crate) fn muxed(ssrc: u32, level_id: LevelId, target: crate::mux::MuxTarget) -> Self {
        LocalAudio {
            sink: Sink::Mux(target),
            ssrc,
            sent: None,
            level_id,
            renumber: Some(Arc::default()),
        }
    }

    fn track(&self) -> Option<&Arc<TrackLocalStaticRTP>> {
        match &self.sink {
            Sink::Track(t) => Some(t),
            Sink::Mux(_) => None,
        }
    }

    /// Adds one to the sent counter, if there is one.
    pub(crate) fn count_one(&self) {
        if let Some(sent) = &self.sent {
            sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// From now on, every packet written successfully on this track (and its clones made
    /// afterwards) adds one to `counter`: a server's figure for what it sent where.
    pub fn count_sent(&mut self, counter: Arc<AtomicU64>) {
        self.sent = Some(counter);
    }

    /// A track that forwards other senders' packets, one sender after another, as one stream.
    fn forwarding(track_id: &str, level_id: LevelId) -> Self {
        LocalAudio {
            renumber: Some(Arc::default()),
            ..LocalAudio::new(track_id, level_id)
        }
    }

    /// The RTP packet this track sends for `packet`: renumbered if it forwards, stamped with
    /// the audio level when it has one and the peer negotiated the extension (the level is
    /// then the packet's only header extension).
    pub(crate) fn to_rtp(&self, packet: &RtpPacket) -> rtp::Packet {
        let (sequence, timestamp, marker) = self.numbering(packet);
        let mut pkt = rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker,
                payload_type: OPUS_PAYLOAD_TYPE,
                sequence_number: sequence,
                timestamp,
                ssrc: self.ssrc,
                ..Default::default()
            },
            payload: packet.payload.clone(),
        };
        if let Some((id, b)) = self.level_extension(packet) {
            // Ids 1..=14 with a 1-byte payload always fit the one-byte form: this cannot fail.
            let b = usize::from(b);
            let _ = pkt
                .header
                .set_extension(id, Bytes::from_static(&LEVEL_BYTES[b..=b]));
        }
        pkt
    }

    /// The same packet as [`LocalAudio::to_rtp`], marshalled straight into `out` (cleared
    /// first) without building it; returns the header's length, extension included. The
    /// mux's forwarding path, which makes a thousand of these per packet.
    pub(crate) fn write_rtp(&self, packet: &RtpPacket, out: &mut Vec<u8>) -> usize {
        let (sequence, timestamp, marker) = self.numbering(packet);
        let level = self.level_extension(packet);
        out.clear();
        // RFC 3550 §5.1: V=2, no padding, X if there is an extension, no CSRCs.
        out.push(0x80 | if level.is_some() { 0x10 } else { 0 });
        out.push(if marker { 0x80 } else { 0 } | OPUS_PAYLOAD_TYPE);
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some((id, b)) = level {
            // RFC 8285 one-byte form: 0xBEDE, one 32-bit word; the element (id, length 1
            // coded as 0, the level byte) and two bytes of padding.
            out.extend_from_slice(&[0xbe, 0xde, 0x00, 0x01, id << 4, b, 0, 0]);
        }
        let header_len = out.len();
        out.extend_from_slice(&packet.payload);
        header_len
    }

    /// Sequence number, timestamp and marker of `packet` on this track.
    fn numbering(&self, packet: &RtpPacket) -> (u16, u32, bool) {
        match &self.renumber {
            // Held for a few arithmetic operations, never across an await; two forwarders
            // only meet here for a packet or two around a switch.
            Some(r) => r
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .map(packet),
            None => (packet.sequence, packet.timestamp, packet.marker),
        }
    }

    /// The audio-level extension's id and byte for `packet` on this track, if both exist.
    fn level_extension(&self, packet: &RtpPacket) -> Option<(u8, u8)> {
        let id = self.level_id.load(Ordering::Relaxed);
        let level = packet.level?;
        (1..=14).contains(&id).then(|| (id, level.to_byte()))
    }

    /// Sends one Opus frame (see [`LocalAudio::to_rtp`] for what goes out). On a muxed
    /// connection this hands the packet to the mux's thread, which sends it.
    pub async fn send(&self, packet: &RtpPacket) -> Result<(), RtcError> {
        match &self.sink {
            Sink::Track(track) => {
                track
                    .write_rtp(self.to_rtp(packet))
                    .await
                    .map_err(RtcError::from)?;
                self.count_one();
                Ok(())
            }
            Sink::Mux(target) => {
                if target
                    .mux
                    .forward(packet.clone(), Arc::new(vec![self.clone()]))
                {
                    Ok(())
                } else {
                    Err(RtcError::Closed)
                }
            }
        }
    }

    /// Whether packets sent here carry their audio level (the peer negotiated the extension).
    pub fn sends_level(&self) -> bool {
        self.level_id.load(Ordering::Relaxed) != 0
    }

    /// The SSRC this track sends with.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
}

/// Audio we receive on one transceiver.
pub struct RemoteAudio {
    source: Source,
    track_id: String,
    level_id: LevelId,
}

enum Source {
    Track(Arc<dyn TrackRemote>),
    /// Packets a [`crate::Mux`]'s thread read for this track (already parsed).
    Mux(tokio::sync::Mutex<mpsc::UnboundedReceiver<RtpPacket>>),
}

impl RemoteAudio {
    /// The sender's id for this track (`a=msid`); for tracks from a Confab server, see
    /// [`crate::slot_track_id`].
    pub fn track_id(&self) -> &str {
        &self.track_id
    }

    /// The receive slot this track is, if the sender is a Confab server.
    pub fn slot(&self) -> Option<usize> {
        parse_slot_track_id(&self.track_id)
    }

    pub(crate) fn muxed(
        packets: mpsc::UnboundedReceiver<RtpPacket>,
        track_id: String,
        level_id: LevelId,
    ) -> Self {
        RemoteAudio {
            source: Source::Mux(tokio::sync::Mutex::new(packets)),
            track_id,
            level_id,
        }
    }

    /// The next RTP packet, or `None` once the track has ended.
    pub async fn recv(&self) -> Option<RtpPacket> {
        let track = match &self.source {
            Source::Track(t) => t,
            Source::Mux(rx) => return rx.lock().await.recv().await,
        };
        loop {
            match track.poll().await? {
                TrackRemoteEvent::OnRtpPacket(p) => {
                    let id = self.level_id.load(Ordering::Relaxed);
                    return Some(RtpPacket::from_rtp(p, id));
                }
                TrackRemoteEvent::OnEnded => return None,
                _ => continue,
            }
        }
    }
}

struct Handler {
    gathered: watch::Sender<bool>,
    events: mpsc::UnboundedSender<SessionEvent>,
    level_id: LevelId,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        let event = match state {
            RTCPeerConnectionState::Connected => SessionEvent::Connected,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => SessionEvent::Closed,
            _ => return,
        };
        let _ = self.events.send(event);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let track_id = track.track_id().await;
        let _ = self.events.send(SessionEvent::RemoteAudio(RemoteAudio {
            source: Source::Track(track),
            track_id,
            level_id: Arc::clone(&self.level_id),
        }));
    }
}

/// One WebRTC peer connection carrying Confab audio.
pub struct PeerSession {
    pc: Arc<dyn PeerConnection>,
    gathered: watch::Receiver<bool>,
    events: mpsc::UnboundedReceiver<SessionEvent>,
    config: RtcConfig,
    level_id: LevelId,
}

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1;usedtx=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub(crate) fn rand_ssrc() -> u32 {
    // SSRCs only need to be unlikely to collide within one session; the randomness of a hashed
    // fresh `RandomState` is plenty and avoids a direct dependency on an RNG crate here.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() as u32).max(1)
}

/// The codecs and header extensions of every Confab connection: Opus only, and the audio
/// level extension unless `audio_level` is off. Public for peers driven on `rtc` directly
/// (the load generator's light listeners).
pub fn media_engine(audio_level: bool) -> Result<MediaEngine, RtcError> {
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PAYLOAD_TYPE,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| RtcError::Engine(e.to_string()))?;
    if audio_level {
        // Either direction: the client stamps its microphone, the server reads the levels.
        media_engine
            .register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )
            .map_err(|e| RtcError::Engine(e.to_string()))?;
    }
    Ok(media_engine)
}

impl PeerSession {
    /// A new, unconnected session bound to `config.bind_ip` on an ephemeral UDP port.
    pub async fn new(config: &RtcConfig) -> Result<PeerSession, RtcError> {
        let media_engine = media_engine(config.audio_level)?;
        // Only the RTCP sender and receiver reports: they carry loss, jitter and round-trip
        // time, which webrtc's stats report. The defaults' other interceptors are dead weight
        // for Opus audio that every packet still walks through: NACK is negotiated for video
        // only (Opus repairs loss with FEC and PLC; a retransmission would come too late to
        // play), and no sender here stamps the transport-cc extension whose feedback TWCC
        // would send, for a congestion controller nobody runs.
        let registry = configure_rtcp_reports(Registry::new());
        let setting_engine = SettingEngineBuilder::new()
            .with_include_loopback_candidate(config.bind_ip.is_loopback())
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .build();
        let (gathered_tx, gathered_rx) = watch::channel(false);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let level_id = LevelId::default();
        let handler = Arc::new(Handler {
            gathered: gathered_tx,
            events: events_tx,
            level_id: Arc::clone(&level_id),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(registry)
            .with_handler(handler as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(vec![SocketAddr::new(config.bind_ip, 0)])
            .build()
            .await?;
        Ok(PeerSession {
            pc: Arc::new(pc),
            gathered: gathered_rx,
            events: events_rx,
            config: config.clone(),
            level_id,
        })
    }

    /// Looks up the id negotiation gave the audio level extension (one per connection: the
    /// engine negotiates extension ids per peer connection, not per m-line) and shares it with
    /// this session's tracks.
    async fn settle_level_id(&self) {
        fn find(exts: &[RTCRtpHeaderExtensionParameters]) -> Option<u8> {
            exts.iter()
                .find(|e| e.uri == AUDIO_LEVEL_URI)
                .and_then(|e| u8::try_from(e.id).ok())
        }
        let mut id = None;
        for t in self.pc.get_transceivers().await {
            if let Ok(Some(sender)) = t.sender().await
                && let Ok(p) = sender.get_parameters().await
            {
                id = find(&p.rtp_parameters.header_extensions);
            }
            if id.is_none()
                && let Ok(Some(receiver)) = t.receiver().await
                && let Ok(p) = receiver.get_parameters().await
            {
                id = find(&p.rtp_parameters.header_extensions);
            }
            if id.is_some() {
                break;
            }
        }
        let id = id.unwrap_or(0);
        tracing::debug!(id, "audio level extension id");
        self.level_id.store(id, Ordering::Relaxed);
    }

    /// Client side: adds the microphone (sendrecv, also receive slot 0) and the other receive
    /// slots, and returns the track to send the microphone on.
    pub async fn add_client_transceivers(&self) -> Result<LocalAudio, RtcError> {
        let mic = LocalAudio::new("confab-mic", Arc::clone(&self.level_id));
        self.pc
            .add_track(Arc::clone(mic.track().ok_or(RtcError::Closed)?) as Arc<dyn TrackLocal>)
            .await?;
        for _ in 1..RECV_SLOTS {
            self.pc
                .add_transceiver_from_kind(
                    RtpCodecKind::Audio,
                    Some(RTCRtpTransceiverInit {
                        direction: RTCRtpTransceiverDirection::Recvonly,
                        ..Default::default()
                    }),
                )
                .await?;
        }
        Ok(mic)
    }

    /// Creates an offer and waits for ICE gathering; returns the SDP with every candidate.
    pub async fn create_offer(&mut self) -> Result<String, RtcError> {
        let offer = self.pc.create_offer(None).await?;
        self.pc.set_local_description(offer).await?;
        self.gathered_sdp().await
    }

    /// Applies the remote answer to our offer.
    pub async fn accept_answer(&self, sdp: String) -> Result<(), RtcError> {
        let answer = RTCSessionDescription::answer(sdp)?;
        self.pc.set_remote_description(answer).await?;
        self.settle_level_id().await;
        Ok(())
    }

    /// Server side: applies a client's offer, attaches one forwarding track per receive slot
    /// (in m-line order), and returns the answer SDP with every candidate, plus the slot tracks.
    pub async fn answer_client(
        &mut self,
        offer_sdp: String,
    ) -> Result<(String, Vec<LocalAudio>), RtcError> {
        let offer = RTCSessionDescription::offer(offer_sdp)?;
        if offer.sdp_type != RTCSdpType::Offer {
            return Err(RtcError::WrongSdpType { expected: "offer" });
        }
        self.pc.set_remote_description(offer).await?;
        let mut slots = Vec::with_capacity(RECV_SLOTS);
        for slot in 0..RECV_SLOTS {
            let track =
                LocalAudio::forwarding(&crate::slot_track_id(slot), Arc::clone(&self.level_id));
            self.pc
                .add_track(Arc::clone(track.track().ok_or(RtcError::Closed)?) as Arc<dyn TrackLocal>)
                .await?;
            slots.push(track);
        }
        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer).await?;
        self.settle_level_id().await;
        Ok((self.gathered_sdp().await?, slots))
    }

    async fn gathered_sdp(&mut self) -> Result<String, RtcError> {
        let timeout = self.config.gather_timeout;
        tokio::time::timeout(timeout, self.gathered.wait_for(|done| *done))
            .await
            .map_err(|_| RtcError::GatherTimeout(timeout))?
            .map_err(|_| RtcError::Closed)?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or(RtcError::NoLocalDescription)
    }

    /// The network's figures for this session now (a snapshot; cheap enough once a second).
    pub async fn network_stats(&self) -> NetworkStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        // Only the selected pair is kept up to date; it is the nominated one.
        let round_trip = report
            .candidate_pairs()
            .filter(|p| p.current_round_trip_time > 0.0)
            .max_by_key(|p| p.nominated)
            .and_then(|p| Duration::try_from_secs_f64(p.current_round_trip_time).ok());
        let mut slots: Vec<SlotNetworkStats> = report
            .inbound_rtp_streams()
            .filter_map(|s| {
                let slot = parse_slot_track_id(&s.track_identifier)?;
                let received = &s.received_rtp_stream_stats;
                Some(SlotNetworkStats {
                    slot,
                    packets_received: received.packets_received,
                    packets_lost: received.packets_lost,
                    // The engine reports it in RTP timestamp units, Opus's 48 kHz clock.
                    jitter: Duration::try_from_secs_f64(received.jitter / 48_000.0)
                        .unwrap_or_default(),
                })
            })
            .collect();
        slots.sort_by_key(|s| s.slot);
        NetworkStats { round_trip, slots }
    }

    /// The next event, or `None` once the session is gone.
    pub async fn next_event(&mut self) -> Option<SessionEvent> {
        self.events.recv().await
    }

    /// Closes the connection. Idempotent.
    pub async fn close(&self) {
        if let Err(e) = self.pc.close().await {
            tracing::debug!(error = %e, "closing peer connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ssrc: u32, sequence: u16, timestamp: u32) -> RtpPacket {
        RtpPacket {
            sequence,
            timestamp,
            ssrc,
            marker: false,
            payload: Bytes::new(),
            level: None,
        }
    }

    #[test]
    fn a_slot_switching_senders_stays_one_stream() {
        let mut r = Renumber::default();
        assert_eq!(r.map(&packet(1, 100, 5000)), (100, 5000, false));
        assert_eq!(r.map(&packet(1, 101, 5960)), (101, 5960, false));
        // Another sender, half the sequence space away: it continues the stream.
        assert_eq!(r.map(&packet(2, 40_000, 7)), (102, 6920, true));
        assert_eq!(r.map(&packet(2, 40_001, 967)), (103, 7880, false));
        // A late packet of the new sender maps back but does not move the high mark.
        assert_eq!(r.map(&packet(2, 39_999, 0)), (101, 6913, false));
        assert_eq!(r.map(&packet(1, 102, 6920)), (104, 8840, true));
        // Wrapping.
        let mut r = Renumber::default();
        r.map(&packet(1, 65_535, u32::MAX));
        assert_eq!(r.map(&packet(2, 3, 3)), (0, 959, true));
    }
    /// The mux's direct path marshals a copy without building it: byte for byte what the
    /// engine's path would send, with and without a level, renumbered the same way.
    #[test]
    fn write_rtp_is_to_rtp_marshalled() {
        use rtc::shared::marshal::{Marshal, MarshalSize};
        let level_id = LevelId::default();
        let mut track = LocalAudio::new("t", Arc::clone(&level_id));
        track.renumber = Some(Arc::default());
        let twin = LocalAudio {
            renumber: Some(Arc::default()),
            ..track.clone()
        };
        let mut buf = Vec::new();
        for (i, id) in [0u8, 3, 3, 14, 15].into_iter().enumerate() {
            level_id.store(id, Ordering::Relaxed);
            let mut p = packet(9, 1000 + i as u16 * 7, 960 * i as u32);
            p.payload = Bytes::from(vec![i as u8; 60 + i]);
            p.marker = i == 1;
            p.level = (i != 2).then(|| AudioLevel::from_byte(0x80 | (20 + i as u8)));
            let built = track.to_rtp(&p);
            let header_len = twin.write_rtp(&p, &mut buf);
            assert_eq!(&built.marshal().unwrap()[..], &buf[..], "packet {i}");
            assert_eq!(built.header.marshal_size(), header_len);
        }
    }
}
