//! The connection task and its handle.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use confab_audio::{
    AudioEngine, Encoded, Encoder, EncoderConfig, FRAME_SAMPLES, FrameLevel, JitterBuffer,
    JitterStats, MAX_PACKET_BYTES, Outgoing,
};
use confab_proto::{
    ClientMsg, EndReason, ErrorCode, PROTOCOL_VERSION, ParticipantId, ParticipantInfo, Role,
    ServerMsg, SpaceId, SpaceInfo, SpaceSummary, decode_server, encode,
};
use confab_rtc::{
    AudioLevel, LocalAudio, NetworkStats, PeerSession, RECV_SLOTS, RemoteAudio, RtcConfig,
    RtpPacket, SessionEvent,
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

/// Where and who to connect as.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:7373`.
    pub server: String,
    /// The display name others see.
    pub name: String,
    /// Local WebRTC settings.
    pub rtc: RtcConfig,
    /// Opus settings for the microphone.
    pub encoder: EncoderConfig,
    /// A bearer token from signing in (see [`crate::identity`]); `None`: signed out, which
    /// may only listen.
    pub token: Option<String>,
    /// The real-time audio worker that plays what we receive. With one, each receive slot's
    /// packets go straight to it (its jitter buffers, decoders and mixer, pulled by the
    /// speaker's clock) and [`Streams::audio`] stays silent; without one (tests, recorders,
    /// headless tools), the client decodes each slot itself into [`AudioFrame`]s.
    pub engine: Option<Arc<AudioEngine>>,
}

impl ClientConfig {
    /// Defaults for `server` and `name`: media bound to loopback for a loopback server, to
    /// every interface otherwise.
    pub fn new(server: impl Into<String>, name: impl Into<String>) -> Self {
        let server = server.into();
        let loopback = ["http://127.", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| server.starts_with(p));
        let mut rtc = RtcConfig::default();
        if !loopback {
            rtc.bind_ip = std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        }
        ClientConfig {
            server,
            name: name.into(),
            rtc,
            encoder: EncoderConfig::default(),
            token: None,
            engine: None,
        }
    }

    /// The same, signed in with `token`.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The same, playing received audio through `engine` (see [`ClientConfig::engine`]).
    pub fn with_engine(mut self, engine: Arc<AudioEngine>) -> Self {
        self.engine = Some(engine);
        self
    }
}

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("server URL {0:?} is not http://HOST:PORT")]
    BadUrl(String),
    #[error("could not reach the server: {0}")]
    Connect(String),
    #[error("the server refused: {message} ({code:?})")]
    Server { code: ErrorCode, message: String },
    #[error("the server sent something unexpected: {0}")]
    Protocol(String),
    #[error("the connection is closed")]
    Closed,
    #[error("media: {0}")]
    Media(String),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

/// The reply to create, join or resume.
#[derive(Clone, Debug)]
pub struct Joined {
    pub space: SpaceInfo,
    pub role: Role,
    /// For a host: the secret to resume the space after a lost connection.
    pub host_token: Option<String>,
}

/// Something the UI should know.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Media is connected: audio can flow both ways.
    MediaConnected,
    /// Who came and went since the last news (the server gathers listeners' comings and goings
    /// for a short tick). Apply `left` first, then `joined`, replacing an entry with a known id.
    /// `listeners` is how many listeners the space has now.
    Participants {
        joined: Vec<ParticipantInfo>,
        left: Vec<ParticipantId>,
        listeners: u32,
    },
    /// Receive slot `slot` now carries `speaker`.
    Slot {
        slot: usize,
        speaker: Option<ParticipantId>,
    },
    /// The space ended.
    Ended { space: SpaceId, reason: EndReason },
    /// The live directory changed (after [`Client::watch_directory`]).
    Directory(Vec<SpaceSummary>),
    /// An error the server sent that answered no request of ours.
    ServerError { code: ErrorCode, message: String },
    /// A stage message for the UI: a participant's role, mute or hand changed, the hand queue,
    /// an invitation to speak, a reaction, chat, a pin, or this client's removal.
    Stage(ServerMsg),
    /// The connection to the server is gone.
    Disconnected { reason: String },
}

/// One decoded piece of a speaker's audio, 48 kHz mono.
///
/// Each receive slot plays out through its own adaptive jitter buffer
/// ([`confab_audio::JitterBuffer`]), so frames come one per 20 ms tick, in order, with losses,
/// late packets and pauses already filled in; a slot that has received nothing for a while
/// sends nothing.
#[derive(Clone, Debug)]
pub struct AudioFrame {
    /// The receive slot it came on (see [`Event::Slot`] for who that is).
    pub slot: usize,
    /// The RTP timestamp of the first sample in `samples`.
    pub timestamp: u32,
    /// One 20 ms frame.
    pub samples: Vec<f32>,
    /// When the frame was played out of the jitter buffer.
    pub decoded_at: Instant,
}

/// The two streams a connection produces.
pub struct Streams {
    pub events: mpsc::Receiver<Event>,
    pub audio: mpsc::Receiver<AudioFrame>,
}

/// What goes to the encode task: PCM to encode, or a frame the audio worker encoded (with
/// the level of the frame it encodes).
enum MicFrame {
    Pcm(Vec<f32>),
    Opus(Bytes, FrameLevel),
    Dtx,
}

/// Sends microphone audio: 20 ms frames of 48 kHz mono, or frames already encoded by the
/// audio worker.
#[derive(Clone)]
pub struct Mic {
    tx: mpsc::Sender<MicFrame>,
    base_timestamp: u32,
}

impl Mic {
    /// Queues one frame of exactly [`FRAME_SAMPLES`] samples for encoding. Frames are stamped in
    /// order: the n-th frame sent has RTP timestamp `base_timestamp() + n * 960`.
    pub async fn send(&self, frame: Vec<f32>) -> Result<(), ClientError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(ClientError::Media(format!(
                "a microphone frame is {FRAME_SAMPLES} samples, got {}",
                frame.len()
            )));
        }
        self.tx
            .send(MicFrame::Pcm(frame))
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// Queues a frame without waiting; fails when the encoder is behind (the frame is dropped)
    /// or gone. For callers outside async code, such as a device-reading thread.
    pub fn try_send(&self, frame: Vec<f32>) -> Result<(), ClientError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(ClientError::Media(format!(
                "a microphone frame is {FRAME_SAMPLES} samples, got {}",
                frame.len()
            )));
        }
        self.try_send_frame(MicFrame::Pcm(frame))
    }

    /// Queues one frame the audio worker encoded (a packet with its frame's level, or a DTX
    /// pause, which advances the RTP clock without sending). Never waits: for the worker's
    /// thread.
    pub fn try_send_encoded(&self, frame: Outgoing<'_>) -> Result<(), ClientError> {
        self.try_send_frame(match frame {
            Outgoing::Packet(p, level) => MicFrame::Opus(Bytes::copy_from_slice(p), level),
            Outgoing::Dtx => MicFrame::Dtx,
        })
    }

    fn try_send_frame(&self, frame: MicFrame) -> Result<(), ClientError> {
        self.tx.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                ClientError::Media("the encoder is behind; frame dropped".into())
            }
            mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
        })
    }

    /// The RTP timestamp of the first frame.
    pub fn base_timestamp(&self) -> u32 {
        self.base_timestamp
    }
}

enum Cmd {
    Create(
        String,
        Vec<String>,
        Option<SpaceId>,
        oneshot::Sender<Result<Joined, ClientError>>,
    ),
    Watch(oneshot::Sender<Result<(), ClientError>>),
    Join(SpaceId, oneshot::Sender<Result<Joined, ClientError>>),
    Resume(
        SpaceId,
        String,
        oneshot::Sender<Result<Joined, ClientError>>,
    ),
    End(oneshot::Sender<Result<(), ClientError>>),
    Leave(oneshot::Sender<Result<(), ClientError>>),
    Mic(oneshot::Sender<Result<Mic, ClientError>>),
    DropMedia(oneshot::Sender<Result<(), ClientError>>),
    Stage(ClientMsg, oneshot::Sender<Result<(), ClientError>>),
    NetworkStats(oneshot::Sender<Result<Option<NetworkStats>, ClientError>>),
    Close,
}

/// A handle on one connection to a server. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    cmd: mpsc::Sender<Cmd>,
    you: ParticipantId,
    jitter: SlotStats,
    engine: Option<Arc<AudioEngine>>,
}

/// Each receive slot's latest jitter-buffer stats, written by its playout task once a second.
/// A lock taken once a second per slot rather than an event: a UI that never reads its event
/// stream must not fill the channel with these and stall the connection.
type SlotStats = Arc<Mutex<[Option<JitterStats>; RECV_SLOTS]>>;

fn lock_stats(stats: &SlotStats) -> std::sync::MutexGuard<'_, [Option<JitterStats>; RECV_SLOTS]> {
    // The data is plain counters: a panic elsewhere cannot leave them half-written.
    stats
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ws_url(server: &str) -> Result<String, ClientError> {
    let rest = server
        .strip_prefix("http://")
        .map(|r| format!("ws://{}", r.trim_end_matches('/')))
        .or_else(|| {
            server
                .strip_prefix("https://")
                .map(|r| format!("wss://{}", r.trim_end_matches('/')))
        })
        .ok_or_else(|| ClientError::BadUrl(server.to_owned()))?;
    Ok(format!("{rest}/ws"))
}

/// Lists the live spaces on `server`.
pub async fn list_spaces(server: &str) -> Result<Vec<SpaceSummary>, ClientError> {
    let url = format!("{}/api/spaces", server.trim_end_matches('/'));
    let resp = reqwest::get(&url)
        .await
        .map_err(|e| ClientError::Connect(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(ClientError::Protocol(format!(
            "GET {url}: {}",
            resp.status()
        )));
    }
    resp.json()
        .await
        .map_err(|e| ClientError::Protocol(format!("GET {url}: {e}")))
}

impl Client {
    /// Connects, says hello, and starts the connection task.
    pub async fn connect(config: ClientConfig) -> Result<(Client, Streams), ClientError> {
        let url = ws_url(&config.server)?;
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(url.as_str()),
        )
        .await
        .map_err(|_| ClientError::Timeout("the server to accept the connection"))?
        .map_err(|e| ClientError::Connect(format!("{url}: {e}")))?;
        let hello = ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            name: config.name.clone(),
            token: config.token.clone(),
        };
        ws.send(Message::Text(encode(&hello).into()))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))?;
        let you = loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .map_err(|_| ClientError::Timeout("the server's welcome"))?;
            match frame {
                Some(Ok(Message::Text(t))) => match decode_server(t.as_str()) {
                    Ok(ServerMsg::Welcome { you, .. }) => break you,
                    Ok(ServerMsg::Error { code, message }) => {
                        return Err(ClientError::Server { code, message });
                    }
                    Ok(other) => {
                        return Err(ClientError::Protocol(format!("{other:?} before welcome")));
                    }
                    Err(e) => return Err(ClientError::Protocol(e.to_string())),
                },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ClientError::Connect(e.to_string())),
                None => return Err(ClientError::Closed),
            }
        };
        let (cmd_tx, cmd_rx) = mpsc::channel(32);
        let (events_tx, events_rx) = mpsc::channel(256);
        let (audio_tx, audio_rx) = mpsc::channel(512);
        let jitter: SlotStats = Arc::default();
        let engine = config.engine.clone();
        let task = Task {
            config,
            ws,
            events: events_tx,
            audio: audio_tx,
            pending: VecDeque::new(),
            assembling: None,
            session: None,
            mic_track: None,
            mic: None,
            mic_waiters: Vec::new(),
            connected: false,
            decoders: Vec::new(),
            playout_epoch: tokio::time::Instant::now(),
            jitter: Arc::clone(&jitter),
        };
        tokio::spawn(task.run(cmd_rx));
        Ok((
            Client {
                cmd: cmd_tx,
                you,
                jitter,
                engine,
            },
            Streams {
                events: events_rx,
                audio: audio_rx,
            },
        ))
    }

    /// This connection's participant id.
    pub fn id(&self) -> ParticipantId {
        self.you
    }

    /// The jitter-buffer stats of each receive slot that has carried audio since media
    /// started, as `(slot, stats)`; updated once a second. For a diagnostics view.
    pub fn jitter_stats(&self) -> Vec<(usize, JitterStats)> {
        if let Some(engine) = &self.engine {
            return engine.jitter_stats();
        }
        lock_stats(&self.jitter)
            .iter()
            .enumerate()
            .filter_map(|(slot, stats)| stats.map(|s| (slot, s)))
            .collect()
    }

    /// What the network does to our media session now (round-trip time to the server, and
    /// each receive slot's loss and jitter), or `None` outside a space. For a diagnostics view.
    pub async fn network_stats(&self) -> Result<Option<NetworkStats>, ClientError> {
        self.ask(Cmd::NetworkStats).await
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, ClientError>>) -> Cmd,
    ) -> Result<T, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Opens a space with us as its host; media starts negotiating at once.
    pub async fn create(&self, title: &str) -> Result<Joined, ClientError> {
        self.create_with_topics(title, Vec::new()).await
    }

    /// Opens a space with up to three topics.
    pub async fn create_with_topics(
        &self,
        title: &str,
        topics: Vec<String>,
    ) -> Result<Joined, ClientError> {
        self.ask(|tx| Cmd::Create(title.to_owned(), topics, None, tx))
            .await
    }

    /// Starts a space scheduled earlier by this (signed-in) host; it goes live under the
    /// schedule's id.
    pub async fn start_scheduled(
        &self,
        schedule: &SpaceId,
        title: &str,
        topics: Vec<String>,
    ) -> Result<Joined, ClientError> {
        self.ask(|tx| Cmd::Create(title.to_owned(), topics, Some(schedule.clone()), tx))
            .await
    }

    /// Subscribes to the live directory: an [`Event::Directory`] now and after each change.
    pub async fn watch_directory(&self) -> Result<(), ClientError> {
        self.ask(Cmd::Watch).await
    }

    /// Joins a live space as a listener.
    pub async fn join(&self, space: &SpaceId) -> Result<Joined, ClientError> {
        self.ask(|tx| Cmd::Join(space.clone(), tx)).await
    }

    /// Takes the host's seat again with the token from [`Joined::host_token`].
    pub async fn resume(&self, space: &SpaceId, host_token: &str) -> Result<Joined, ClientError> {
        self.ask(|tx| Cmd::Resume(space.clone(), host_token.to_owned(), tx))
            .await
    }

    /// Ends the space (host only); returns once the server confirms.
    pub async fn end(&self) -> Result<(), ClientError> {
        self.ask(Cmd::End).await
    }

    /// Leaves the space.
    pub async fn leave(&self) -> Result<(), ClientError> {
        self.ask(Cmd::Leave).await
    }

    /// The microphone input, once media is connected (waits for it).
    pub async fn mic(&self) -> Result<Mic, ClientError> {
        self.ask(Cmd::Mic).await
    }

    /// Closes the media session without telling the server (it already knows: the space ended).
    pub async fn drop_media(&self) -> Result<(), ClientError> {
        self.ask(Cmd::DropMedia).await
    }

    /// Sends a stage request (raise a hand, approve one, mute, react, chat, ...). The server
    /// answers with broadcasts to everyone, or an error event to this client only.
    pub async fn stage(&self, request: ClientMsg) -> Result<(), ClientError> {
        self.ask(|tx| Cmd::Stage(request, tx)).await
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.cmd.send(Cmd::Close).await;
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Pending {
    Joined(oneshot::Sender<Result<Joined, ClientError>>),
    End(oneshot::Sender<Result<(), ClientError>>),
}

struct Task {
    config: ClientConfig,
    ws: Ws,
    events: mpsc::Sender<Event>,
    audio: mpsc::Sender<AudioFrame>,
    pending: VecDeque<Pending>,
    /// A `Joined` whose roster pages are still arriving, and how many are to come: the reply
    /// to create, join or resume waits for the whole roster.
    assembling: Option<(Joined, u32)>,
    session: Option<PeerSession>,
    mic_track: Option<LocalAudio>,
    mic: Option<Mic>,
    mic_waiters: Vec<oneshot::Sender<Result<Mic, ClientError>>>,
    connected: bool,
    decoders: Vec<tokio::task::JoinHandle<()>>,
    /// The origin of the 20 ms grid every receive slot's playout ticks on (see `decode_task`).
    playout_epoch: tokio::time::Instant,
    jitter: SlotStats,
}

async fn next_event(session: &mut Option<PeerSession>) -> Option<SessionEvent> {
    match session {
        Some(s) => s.next_event().await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(mut self, mut cmds: mpsc::Receiver<Cmd>) {
        let reason = loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None | Some(Cmd::Close) => break "closed by the application".to_owned(),
                    Some(cmd) => if let Err(e) = self.command(cmd).await { break e.to_string() },
                },
                frame = self.ws.next() => match frame {
                    None => break "the server closed the connection".to_owned(),
                    Some(Err(e)) => break format!("signaling failed: {e}"),
                    Some(Ok(Message::Text(t))) => match decode_server(t.as_str()) {
                        Ok(msg) => self.server_msg(msg).await,
                        Err(e) => tracing::warn!(error = %e, "ignoring a frame from the server"),
                    },
                    Some(Ok(Message::Close(_))) => break "the server closed the connection".to_owned(),
                    Some(Ok(_)) => {}
                },
                Some(event) = next_event(&mut self.session) => self.media_event(event),
            }
        };
        let _ = self.ws.close(None).await;
        self.stop_media().await;
        for p in self.pending.drain(..) {
            match p {
                Pending::Joined(tx) => drop(tx.send(Err(ClientError::Closed))),
                Pending::End(tx) => drop(tx.send(Err(ClientError::Closed))),
            }
        }
        let _ = self.events.send(Event::Disconnected { reason }).await;
    }

    async fn send(&mut self, msg: &ClientMsg) -> Result<(), ClientError> {
        self.ws
            .send(Message::Text(encode(msg).into()))
            .await
            .map_err(|e| ClientError::Connect(e.to_string()))
    }

    async fn command(&mut self, cmd: Cmd) -> Result<(), ClientError> {
        match cmd {
            Cmd::Create(title, topics, schedule, tx) => {
                self.send(&ClientMsg::Create {
                    title,
                    topics,
                    schedule,
                })
                .await?;
                self.pending.push_back(Pending::Joined(tx));
            }
            Cmd::Join(space, tx) => {
                self.send(&ClientMsg::Join { space }).await?;
                self.pending.push_back(Pending::Joined(tx));
            }
            Cmd::Resume(space, host_token, tx) => {
                self.send(&ClientMsg::Resume { space, host_token }).await?;
                self.pending.push_back(Pending::Joined(tx));
            }
            Cmd::End(tx) => {
                self.send(&ClientMsg::End).await?;
                self.pending.push_back(Pending::End(tx));
            }
            Cmd::Leave(tx) => {
                self.send(&ClientMsg::Leave).await?;
                self.stop_media().await;
                let _ = tx.send(Ok(()));
            }
            Cmd::DropMedia(tx) => {
                self.stop_media().await;
                let _ = tx.send(Ok(()));
            }
            Cmd::Watch(tx) => {
                self.send(&ClientMsg::Watch).await?;
                let _ = tx.send(Ok(()));
            }
            Cmd::Mic(tx) => match &self.mic {
                Some(mic) if self.connected => drop(tx.send(Ok(mic.clone()))),
                _ => self.mic_waiters.push(tx),
            },
            Cmd::Stage(msg, tx) => {
                self.send(&msg).await?;
                let _ = tx.send(Ok(()));
            }
            Cmd::NetworkStats(tx) => {
                let stats = match &self.session {
                    Some(s) => Some(s.network_stats().await),
                    None => None,
                };
                let _ = tx.send(Ok(stats));
            }
            Cmd::Close => {}
        }
        Ok(())
    }

    async fn server_msg(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Joined {
                space,
                role,
                host_token,
                more,
                ..
            } => {
                let joined = Joined {
                    space,
                    role,
                    host_token,
                };
                if more == 0 {
                    self.joined(joined).await;
                } else {
                    self.assembling = Some((joined, more));
                }
            }
            ServerMsg::Participants {
                joined,
                left,
                listeners,
            } => match self.assembling.as_mut() {
                // The rest of the roster we joined with: the pages follow `Joined` directly.
                Some((snapshot, more)) => {
                    let people = &mut snapshot.space.participants;
                    people.retain(|p| !left.contains(&p.id));
                    people.extend(joined);
                    *more -= 1;
                    if *more == 0
                        && let Some((snapshot, _)) = self.assembling.take()
                    {
                        self.joined(snapshot).await;
                    }
                }
                None => {
                    self.emit(Event::Participants {
                        joined,
                        left,
                        listeners,
                    })
                    .await;
                }
            },
            ServerMsg::Answer { sdp } => {
                if let Some(session) = &self.session
                    && let Err(e) = session.accept_answer(sdp).await
                {
                    tracing::error!(error = %e, "applying the server's answer");
                }
            }
            ServerMsg::Slot { slot, speaker } => {
                self.emit(Event::Slot {
                    slot: slot as usize,
                    speaker,
                })
                .await;
            }
            ServerMsg::Ended { space, reason } => {
                if matches!(self.pending.front(), Some(Pending::End(_)))
                    && let Some(Pending::End(tx)) = self.pending.pop_front()
                {
                    let _ = tx.send(Ok(()));
                }
                // Media stays up a moment longer on purpose: packets already in flight still
                // arrive and decode. The application closes when it has drained them.
                self.mic = None;
                self.emit(Event::Ended { space, reason }).await;
            }
            ServerMsg::Error { code, message } => match self.pending.pop_front() {
                Some(Pending::Joined(tx)) => {
                    drop(tx.send(Err(ClientError::Server { code, message })))
                }
                Some(Pending::End(tx)) => drop(tx.send(Err(ClientError::Server { code, message }))),
                None => self.emit(Event::ServerError { code, message }).await,
            },
            ServerMsg::Directory { spaces } => self.emit(Event::Directory(spaces)).await,
            ServerMsg::Welcome { .. } => {}
            stage => self.emit(Event::Stage(stage)).await,
        }
    }

    async fn emit(&self, event: Event) {
        let _ = self.events.send(event).await;
    }

    /// We are in a space with the whole roster: answer the request and start media.
    async fn joined(&mut self, joined: Joined) {
        if matches!(self.pending.front(), Some(Pending::Joined(_)))
            && let Some(Pending::Joined(tx)) = self.pending.pop_front()
        {
            let _ = tx.send(Ok(joined));
        }
        if let Err(e) = self.start_media().await {
            tracing::error!(error = %e, "starting media");
            let _ = self
                .events
                .send(Event::ServerError {
                    code: ErrorCode::MediaFailed,
                    message: e.to_string(),
                })
                .await;
        }
    }

    async fn start_media(&mut self) -> Result<(), ClientError> {
        self.stop_media().await;
        let media = |e: confab_rtc::RtcError| ClientError::Media(e.to_string());
        let mut session = PeerSession::new(&self.config.rtc).await.map_err(media)?;
        let track = session.add_client_transceivers().await.map_err(media)?;
        let sdp = session.create_offer().await.map_err(media)?;
        self.session = Some(session);
        self.send(&ClientMsg::Offer { sdp }).await?;
        let (tx, rx) = mpsc::channel::<MicFrame>(64);
        let base_timestamp: u32 = rand_u32();
        let encoder =
            Encoder::new(&self.config.encoder).map_err(|e| ClientError::Media(e.to_string()))?;
        self.decoders.push(tokio::spawn(encode_task(
            encoder,
            track.clone(),
            rx,
            base_timestamp,
        )));
        self.mic_track = Some(track);
        self.mic = Some(Mic { tx, base_timestamp });
        Ok(())
    }

    async fn stop_media(&mut self) {
        for task in self.decoders.drain(..) {
            task.abort();
        }
        *lock_stats(&self.jitter) = Default::default();
        if let Some(session) = self.session.take() {
            session.close().await;
        }
        self.mic = None;
        self.mic_track = None;
        self.connected = false;
    }

    fn media_event(&mut self, event: SessionEvent) {
        match event {
            SessionEvent::Connected => {
                self.connected = true;
                if let Some(mic) = &self.mic {
                    for w in self.mic_waiters.drain(..) {
                        let _ = w.send(Ok(mic.clone()));
                    }
                }
                let events = self.events.clone();
                tokio::spawn(async move { events.send(Event::MediaConnected).await });
            }
            SessionEvent::RemoteAudio(remote) => {
                let Some(slot) = remote.slot() else {
                    tracing::warn!(
                        track = remote.track_id(),
                        "ignoring a track that is no receive slot"
                    );
                    return;
                };
                let task = match &self.config.engine {
                    Some(engine) => tokio::spawn(forward_task(slot, remote, Arc::clone(engine))),
                    None => tokio::spawn(decode_task(
                        slot,
                        remote,
                        self.audio.clone(),
                        Arc::clone(&self.jitter),
                        self.playout_epoch,
                    )),
                };
                self.decoders.push(task);
            }
            SessionEvent::Closed => {
                self.connected = false;
            }
            _ => {}
        }
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(1);
    h.finish() as u32
}

/// Encodes microphone frames and sends them as RTP. Timestamps advance 960 per frame whether
/// or not a packet is sent (DTX), so the receiver can tell a pause from a loss. Each packet
/// carries its frame's RFC 6464 level; PCM handed to [`Mic::send`] has no voice processor
/// behind it, so its voice bit is the level's ([`FrameLevel::measure_by_energy`]).
async fn encode_task(
    mut encoder: Encoder,
    track: LocalAudio,
    mut frames: mpsc::Receiver<MicFrame>,
    base_timestamp: u32,
) {
    let mut out = vec![0u8; MAX_PACKET_BYTES];
    let mut timestamp = base_timestamp;
    let mut sequence = rand_u32() as u16;
    let mut after_silence = true;
    while let Some(frame) = frames.recv().await {
        let encoded = match frame {
            MicFrame::Pcm(pcm) => match encoder.encode(&pcm, &mut out) {
                Ok(Encoded::Packet(len)) => Ok(Some((
                    Bytes::copy_from_slice(&out[..len]),
                    FrameLevel::measure_by_energy(&pcm),
                ))),
                Ok(Encoded::Dtx) => Ok(None),
                Err(e) => Err(e),
            },
            MicFrame::Opus(payload, level) => Ok(Some((payload, level))),
            MicFrame::Dtx => Ok(None),
        };
        match encoded {
            Ok(Some((payload, level))) => {
                let packet = RtpPacket {
                    sequence,
                    timestamp,
                    ssrc: 0,
                    marker: after_silence,
                    payload,
                    level: Some(AudioLevel::new(level.dbov, level.voice)),
                };
                if let Err(e) = track.send(&packet).await {
                    tracing::debug!(error = %e, "sending audio");
                }
                sequence = sequence.wrapping_add(1);
                after_silence = false;
            }
            Ok(None) => after_silence = true,
            Err(e) => tracing::warn!(error = %e, "encoding a frame"),
        }
        timestamp = timestamp.wrapping_add(FRAME_SAMPLES as u32);
    }
}

/// Hands one receive slot's packets to the audio worker as they arrive, stamped on arrival.
async fn forward_task(slot: usize, remote: RemoteAudio, engine: Arc<AudioEngine>) {
    while let Some(p) = remote.recv().await {
        engine.push_packet(slot, p.sequence, p.timestamp, &p.payload, Instant::now());
    }
}

/// Frames a late playout task may deliver at once to catch up: 60 ms, what the speaker's
/// cushion ([`confab_audio::DEFAULT_CUSHION`]) absorbs.
const MAX_CATCH_UP: u64 = 3;

/// The playout tick: one 20 ms frame.
const TICK_US: u64 = 20_000;

/// The latest point of the playout grid (`epoch + k * 20 ms`) at or before `now`.
fn grid_point(epoch: tokio::time::Instant, now: tokio::time::Instant) -> tokio::time::Instant {
    let since = u64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(0);
    epoch + Duration::from_micros(since - since % TICK_US)
}

/// Plays one receive slot out into [`AudioFrame`]s: packets go into a jitter buffer as they
/// arrive; a frame comes out every 20 ms.
///
/// Tick `n` plays at `start + n * 20 ms` on the buffer's clock, whenever the task actually
/// runs, so the buffer measures delay against the audio clock, not against the scheduler.
/// Every slot's `start` lies on one 20 ms grid from `epoch`, so the slots tick together: one
/// timer wakeup per 20 ms for all of them instead of one each, and the mixer gets every
/// slot's frame at once instead of waiting up to a frame for the slot out of phase.
/// The interval skips missed ticks (tokio's `Burst` would fire every tick missed during a long
/// stall at once, a suspended laptop's worth); the loop catches up itself, delivering at most
/// [`MAX_CATCH_UP`] frames at once. Frames beyond that are pulled and dropped: the speaker has
/// played silence for them already, and delivering them late would only add delay.
async fn decode_task(
    slot: usize,
    remote: RemoteAudio,
    audio: mpsc::Sender<AudioFrame>,
    stats: SlotStats,
    epoch: tokio::time::Instant,
) {
    let mut jitter = match JitterBuffer::new() {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "creating a jitter buffer");
            return;
        }
    };
    let start = grid_point(epoch, tokio::time::Instant::now());
    let micros = move || u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut ticks = tokio::time::interval_at(start, Duration::from_micros(TICK_US));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut played: u64 = 0;
    let mut publish_at: u64 = 50;
    let mut received = false;
    let mut frame = vec![0.0f32; FRAME_SAMPLES];
    loop {
        tokio::select! {
            // Packets first: one that arrived with the tick still makes it.
            biased;
            packet = remote.recv() => match packet {
                Some(p) => {
                    jitter.push(p.sequence, p.timestamp, &p.payload, micros());
                    received = true;
                }
                None => break,
            },
            _ = ticks.tick() => {
                let due = micros() / TICK_US + 1;
                while played < due {
                    let deliver = due - played <= MAX_CATCH_UP;
                    let pulled = jitter.pull(played * TICK_US, &mut frame);
                    played += 1;
                    let Some(pulled) = pulled.filter(|_| deliver) else {
                        continue;
                    };
                    let out = AudioFrame {
                        slot,
                        timestamp: pulled.timestamp,
                        samples: frame.clone(),
                        decoded_at: Instant::now(),
                    };
                    // A consumer that falls behind loses audio rather than stalling playout.
                    if audio.try_send(out).is_err() {
                        tracing::debug!(slot, "audio consumer is behind; frame dropped");
                    }
                }
                // Once a second, for a slot that has carried audio.
                if received && played >= publish_at {
                    publish_at = played + 50;
                    if let Some(entry) = lock_stats(&stats).get_mut(slot) {
                        *entry = Some(jitter.stats());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_started_apart_tick_on_one_grid() {
        let epoch = tokio::time::Instant::now();
        for started_us in [0, 1, 19_999, 20_000, 20_001, 1_234_567] {
            let now = epoch + Duration::from_micros(started_us);
            let start = grid_point(epoch, now);
            let offset = start.duration_since(epoch).as_micros() as u64;
            assert_eq!(offset % TICK_US, 0, "started at {started_us} us");
            assert!(start <= now && now - start < Duration::from_micros(TICK_US));
        }
        // A clock read before the epoch (it cannot run backwards, but saturate anyway).
        assert_eq!(
            grid_point(epoch + Duration::from_secs(1), epoch),
            epoch + Duration::from_secs(1)
        );
    }
}
