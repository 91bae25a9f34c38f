//! The desktop app's logic, without Tauri: what the shell's commands call and where the UI's
//! events come from.
//!
//! An [`App`] keeps one signaling connection to the server (reconnecting when it drops),
//! watches the live directory, remembers followed hosts and the spaces it has seen in the
//! profile's [`Store`], decides when a followed host going live deserves a system notification
//! (once per host per minute, however often they restart), and runs the space this instance
//! is in: microphone to server when it speaks, server to speaker when it listens.
//!
//! The shell stays thin: every command is one call here, every [`AppEvent`] goes to the
//! webview as it is. Nothing here blocks the async runtime: device opens and closes (which take
//! a second or more with PulseAudio) run on blocking threads.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use confab_audio::{Capture, DEFAULT_CUSHION, FRAME_SAMPLES, Playback, SAMPLE_RATE, SpeakerFeed};
use confab_proto::ipc::{
    AppEvent, AppState, CurrentSpace, Device, Devices, FollowedHost, IpcError, IpcErrorCode,
    Settings,
};
use confab_proto::{MAX_NAME_CHARS, SpaceId, SpaceSummary};
use confab_store::{Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{Client, ClientConfig, ClientError, Event, Joined, Mic, Streams};

/// A followed host is announced at most once in this many seconds.
pub const NOTIFY_WINDOW_SECS: i64 = 60;

/// How an [`App`] starts.
#[derive(Clone, Debug)]
pub struct AppOptions {
    /// The profile's name (`confab --profile NAME`); the default display name.
    pub profile: String,
    /// The profile's database.
    pub store_path: PathBuf,
    /// The server to use (the embedded one's URL when the shell started it).
    pub server_url: String,
    /// Whether `server_url` is the server embedded in this app.
    pub embedded_server: bool,
    /// Whether to open audio devices (false in tests that have none).
    pub audio: bool,
}

/// The app's logic. Cheap to clone; every clone drives the same app.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    opts: AppOptions,
    store: Mutex<Store>,
    events: mpsc::Sender<AppEvent>,
    model: Mutex<Model>,
    client: Mutex<Option<Client>>,
    audio: Mutex<Audio>,
    muted: Arc<AtomicBool>,
    meter: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
}

struct Model {
    display_name: String,
    connected: bool,
    live: Vec<SpaceSummary>,
    current: Option<CurrentSpace>,
}

/// Open devices and the tasks that move audio between them and the connection.
#[derive(Default)]
struct Audio {
    capture: Option<Capture>,
    capture_task: Option<JoinHandle<()>>,
    playback: Option<Playback>,
    speaker: Arc<Mutex<Option<SpeakerFeed>>>,
    mic: Arc<Mutex<Option<Mic>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, so a poisoned lock's data is good.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn err(code: IpcErrorCode, message: impl Into<String>) -> IpcError {
    IpcError {
        code,
        message: message.into(),
    }
}

impl From<ClientError> for IpcError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Server { code, message } => err(IpcErrorCode::Server(code), message),
            ClientError::Connect(_) | ClientError::Closed | ClientError::Timeout(_) => {
                err(IpcErrorCode::Offline, e.to_string())
            }
            other => err(IpcErrorCode::Internal, other.to_string()),
        }
    }
}

fn storage(e: StoreError) -> IpcError {
    err(IpcErrorCode::Storage, e.to_string())
}

fn device(e: confab_audio::AudioError) -> IpcError {
    err(IpcErrorCode::Device, e.to_string())
}

impl App {
    /// Opens the profile's store and starts connecting to the server in the background.
    pub async fn start(opts: AppOptions) -> Result<(App, mpsc::Receiver<AppEvent>), IpcError> {
        let store = Store::open(&opts.store_path).map_err(storage)?;
        let display_name = store
            .display_name()
            .map_err(storage)?
            .unwrap_or_else(|| opts.profile.clone());
        let (events, rx) = mpsc::channel(512);
        let inner = Arc::new(Inner {
            opts,
            store: Mutex::new(store),
            events,
            model: Mutex::new(Model {
                display_name,
                connected: false,
                live: Vec::new(),
                current: None,
            }),
            client: Mutex::new(None),
            audio: Mutex::new(Audio::default()),
            muted: Arc::new(AtomicBool::new(false)),
            meter: Arc::new(AtomicBool::new(false)),
            shutdown: watch::channel(false).0,
        });
        tokio::spawn(supervise(Arc::clone(&inner)));
        Ok((App { inner }, rx))
    }

    /// Everything the UI shows, now.
    pub async fn state(&self) -> AppState {
        let followed = self.inner.followed_view();
        let m = lock(&self.inner.model);
        AppState {
            profile: self.inner.opts.profile.clone(),
            server_url: self.inner.opts.server_url.clone(),
            embedded_server: self.inner.opts.embedded_server,
            connected: m.connected,
            display_name: m.display_name.clone(),
            live: m.live.clone(),
            followed,
            current: m.current.clone(),
        }
    }

    fn client(&self) -> Result<Client, IpcError> {
        lock(&self.inner.client)
            .clone()
            .ok_or_else(|| err(IpcErrorCode::Offline, "not connected to the server"))
    }

    fn entered(&self, joined: Joined) -> CurrentSpace {
        self.inner.muted.store(false, Ordering::Relaxed);
        let current = CurrentSpace {
            space: joined.space,
            role: joined.role,
            muted: false,
            media_connected: false,
        };
        lock(&self.inner.model).current = Some(current.clone());
        current
    }

    /// Opens a space with us as host.
    pub async fn create_space(
        &self,
        title: String,
        topics: Vec<String>,
    ) -> Result<CurrentSpace, IpcError> {
        if lock(&self.inner.model).current.is_some() {
            return Err(err(IpcErrorCode::InvalidInput, "leave your space first"));
        }
        let joined = self.client()?.create_with_topics(&title, topics).await?;
        let current = self.entered(joined);
        self.inner
            .emit(AppEvent::Current {
                current: Some(current.clone()),
            })
            .await;
        Ok(current)
    }

    /// Joins a live space as a listener.
    pub async fn join_space(&self, id: SpaceId) -> Result<CurrentSpace, IpcError> {
        if let Some(cur) = &lock(&self.inner.model).current {
            if cur.space.id == id {
                return Ok(cur.clone());
            }
            return Err(err(IpcErrorCode::InvalidInput, "leave your space first"));
        }
        let joined = self.client()?.join(&id).await?;
        let current = self.entered(joined);
        self.inner
            .emit(AppEvent::Current {
                current: Some(current.clone()),
            })
            .await;
        Ok(current)
    }

    /// Leaves the current space.
    pub async fn leave_space(&self) -> Result<(), IpcError> {
        if lock(&self.inner.model).current.take().is_none() {
            return Ok(());
        }
        self.inner.stop_space_audio().await;
        if let Ok(client) = self.client() {
            client.leave().await?;
        }
        self.inner.emit(AppEvent::Current { current: None }).await;
        Ok(())
    }

    /// Ends the current space (host only; the server checks).
    pub async fn end_space(&self) -> Result<(), IpcError> {
        if lock(&self.inner.model).current.is_none() {
            return Err(err(IpcErrorCode::InvalidInput, "you are in no space"));
        }
        self.client()?.end().await?;
        Ok(())
    }

    /// Mutes or unmutes our microphone.
    pub async fn set_muted(&self, muted: bool) -> Result<(), IpcError> {
        self.inner.muted.store(muted, Ordering::Relaxed);
        let current = {
            let mut m = lock(&self.inner.model);
            if let Some(cur) = m.current.as_mut() {
                cur.muted = muted;
            }
            m.current.clone()
        };
        self.inner.emit(AppEvent::Current { current }).await;
        Ok(())
    }

    /// Follows a host on this server.
    pub async fn follow(&self, host: String) -> Result<(), IpcError> {
        let host = host.trim().to_owned();
        if host.is_empty() || host.chars().count() > MAX_NAME_CHARS {
            return Err(err(
                IpcErrorCode::InvalidInput,
                "a host name is 1 to 64 characters",
            ));
        }
        {
            let mut store = lock(&self.inner.store);
            store
                .follow(&self.inner.opts.server_url, &host, unix_now())
                .map_err(storage)?;
            // Spaces already live are known, not news: record them so only the next one notifies.
            let live = lock(&self.inner.model).live.clone();
            store
                .record_spaces(&self.inner.opts.server_url, &live, unix_now())
                .map_err(storage)?;
        }
        let followed = self.inner.followed_view();
        self.inner.emit(AppEvent::Followed { followed }).await;
        Ok(())
    }

    /// Stops following a host.
    pub async fn unfollow(&self, host: String) -> Result<(), IpcError> {
        lock(&self.inner.store)
            .unfollow(&self.inner.opts.server_url, host.trim())
            .map_err(storage)?;
        let followed = self.inner.followed_view();
        self.inner.emit(AppEvent::Followed { followed }).await;
        Ok(())
    }

    /// The saved settings.
    pub async fn settings(&self) -> Result<Settings, IpcError> {
        let store = lock(&self.inner.store);
        Ok(Settings {
            server_url: store.server_url().map_err(storage)?,
            display_name: lock(&self.inner.model).display_name.clone(),
            input_device: store.input_device().map_err(storage)?,
            output_device: store.output_device().map_err(storage)?,
        })
    }

    /// Saves settings. A new display name is used from the next connection; a new server
    /// from the next start of the app.
    pub async fn save_settings(&self, s: Settings) -> Result<(), IpcError> {
        let name = s.display_name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(err(
                IpcErrorCode::InvalidInput,
                "a display name is 1 to 64 printable characters",
            ));
        }
        if let Some(url) = &s.server_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(err(
                IpcErrorCode::InvalidInput,
                "a server URL starts with http:// or https://",
            ));
        }
        let mut store = lock(&self.inner.store);
        store
            .set_server_url(s.server_url.as_deref())
            .map_err(storage)?;
        store.set_display_name(Some(name)).map_err(storage)?;
        store
            .set_input_device(s.input_device.as_deref())
            .map_err(storage)?;
        store
            .set_output_device(s.output_device.as_deref())
            .map_err(storage)?;
        lock(&self.inner.model).display_name = name.to_owned();
        Ok(())
    }

    /// The audio devices to pick from.
    pub fn devices(&self) -> Result<Devices, IpcError> {
        if !self.inner.opts.audio {
            return Ok(Devices::default());
        }
        let map = |v: Vec<confab_audio::DeviceInfo>| {
            v.into_iter()
                .map(|d| Device {
                    id: d.id,
                    description: d.description,
                })
                .collect()
        };
        Ok(Devices {
            inputs: map(confab_audio::input_device_infos().map_err(device)?),
            outputs: map(confab_audio::output_device_infos().map_err(device)?),
        })
    }

    /// Plays half a second of a soft 440 Hz tone on the chosen speaker.
    pub async fn play_test_sound(&self) -> Result<(), IpcError> {
        if !self.inner.opts.audio {
            return Err(err(IpcErrorCode::Device, "audio is off in this instance"));
        }
        let output = lock(&self.inner.store).output_device().map_err(storage)?;
        tokio::task::spawn_blocking(move || -> Result<(), IpcError> {
            let (pb, mut ring) = Playback::start(output.as_deref()).map_err(device)?;
            let n = SAMPLE_RATE as usize / 2;
            for i in 0..n {
                let t = i as f32 / SAMPLE_RATE as f32;
                let fade = (i.min(n - i) as f32 / 480.0).min(1.0);
                let _ = ring.push(0.2 * fade * (std::f32::consts::TAU * 440.0 * t).sin());
            }
            std::thread::sleep(Duration::from_millis(700));
            drop(pb);
            Ok(())
        })
        .await
        .map_err(|e| err(IpcErrorCode::Internal, e.to_string()))?
    }

    /// Turns the microphone level events on (the settings page is open) or off.
    pub async fn set_level_meter(&self, on: bool) -> Result<(), IpcError> {
        self.inner.meter.store(on, Ordering::Relaxed);
        if on {
            self.inner.ensure_capture().await
        } else {
            self.inner.release_capture_if_idle().await;
            Ok(())
        }
    }

    /// Live spaces whose title, host or a topic contains `query` (ignoring case).
    pub fn search(&self, query: &str) -> Vec<SpaceSummary> {
        let q = query.trim().to_lowercase();
        let live = lock(&self.inner.model).live.clone();
        if q.is_empty() {
            return live;
        }
        live.into_iter()
            .filter(|s| {
                s.title.to_lowercase().contains(&q)
                    || s.host.to_lowercase().contains(&q)
                    || s.topics.iter().any(|t| t.to_lowercase().contains(&q))
            })
            .collect()
    }

    /// Leaves any space, closes devices and the connection.
    pub async fn shutdown(&self) {
        let _ = self.leave_space().await;
        let _ = self.inner.shutdown.send(true);
        let client = lock(&self.inner.client).take();
        if let Some(client) = client {
            client.close().await;
        }
        self.inner.meter.store(false, Ordering::Relaxed);
        self.inner.release_capture_if_idle().await;
    }
}

impl Inner {
    async fn emit(&self, event: AppEvent) {
        let _ = self.events.send(event).await;
    }

    fn followed_view(&self) -> Vec<FollowedHost> {
        let server = &self.opts.server_url;
        let store = lock(&self.store);
        let (Ok(hosts), Ok(seen)) = (
            store.followed(server),
            store.last_spaces_of_followed(server),
        ) else {
            return Vec::new();
        };
        let live = lock(&self.model).live.clone();
        hosts
            .into_iter()
            .map(|h| {
                let last = seen.iter().find(|s| s.host == h.host);
                FollowedHost {
                    live_space: live.iter().find(|s| s.host == h.host).cloned(),
                    last_title: last.map(|s| s.title.clone()),
                    last_live_at: h.last_live_at.or(last.map(|s| s.last_seen_at)),
                    host: h.host,
                }
            })
            .collect()
    }

    /// A new directory snapshot: remember it, notify for followed hosts newly live.
    async fn on_directory(&self, spaces: Vec<SpaceSummary>) {
        let now = unix_now();
        let server = &self.opts.server_url;
        let ours = lock(&self.model)
            .current
            .as_ref()
            .map(|c| c.space.id.clone());
        let mut notify = Vec::new();
        {
            let mut store = lock(&self.store);
            match store.record_spaces(server, &spaces, now) {
                Ok(newly) => {
                    for space in newly {
                        if Some(&space.id) == ours.as_ref() {
                            continue;
                        }
                        match store.should_notify(server, &space.host, now, NOTIFY_WINDOW_SECS) {
                            Ok(true) => notify.push(space),
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "notification bookkeeping"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "recording the directory"),
            }
        }
        lock(&self.model).live = spaces.clone();
        self.emit(AppEvent::Directory { live: spaces }).await;
        let followed = self.followed_view();
        self.emit(AppEvent::Followed { followed }).await;
        for space in notify {
            self.emit(AppEvent::FollowedLive { space }).await;
        }
    }

    async fn on_event(self: &Arc<Self>, event: Event) {
        match event {
            Event::Directory(spaces) => self.on_directory(spaces).await,
            Event::MediaConnected => {
                let current = {
                    let mut m = lock(&self.model);
                    if let Some(cur) = m.current.as_mut() {
                        cur.media_connected = true;
                    }
                    m.current.clone()
                };
                if let Some(cur) = &current {
                    let inner = Arc::clone(self);
                    let speaks = cur.role.speaks();
                    tokio::spawn(async move { inner.start_space_audio(speaks).await });
                }
                self.emit(AppEvent::Current { current }).await;
            }
            Event::ParticipantJoined(p) => {
                let current = {
                    let mut m = lock(&self.model);
                    if let Some(cur) = m.current.as_mut()
                        && !cur.space.participants.iter().any(|q| q.id == p.id)
                    {
                        cur.space.participants.push(p.clone());
                    }
                    m.current.clone()
                };
                self.emit(AppEvent::Current { current }).await;
                self.emit(AppEvent::Participant {
                    participant: p,
                    joined: true,
                })
                .await;
            }
            Event::ParticipantLeft(id) => {
                let (current, gone) = {
                    let mut m = lock(&self.model);
                    let mut gone = None;
                    if let Some(cur) = m.current.as_mut()
                        && let Some(pos) = cur.space.participants.iter().position(|q| q.id == id)
                    {
                        gone = Some(cur.space.participants.remove(pos));
                    }
                    (m.current.clone(), gone)
                };
                self.emit(AppEvent::Current { current }).await;
                if let Some(participant) = gone {
                    self.emit(AppEvent::Participant {
                        participant,
                        joined: false,
                    })
                    .await;
                }
            }
            Event::Slot { slot, speaker } => {
                let slot = u8::try_from(slot).unwrap_or(u8::MAX);
                self.emit(AppEvent::Speaking { slot, speaker }).await;
            }
            Event::Ended { space, reason } => {
                let was_ours = {
                    let mut m = lock(&self.model);
                    let ours = m.current.as_ref().is_some_and(|c| c.space.id == space);
                    if ours {
                        m.current = None;
                    }
                    ours
                };
                if was_ours {
                    self.emit(AppEvent::Ended { space, reason }).await;
                    self.emit(AppEvent::Current { current: None }).await;
                    // Let audio already in flight play out, then close media.
                    let inner = Arc::clone(self);
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        inner.stop_space_audio().await;
                        let client = lock(&inner.client).clone();
                        if let Some(client) = client {
                            let _ = client.drop_media().await;
                        }
                    });
                }
            }
            Event::ServerError { code, message } => {
                tracing::warn!(?code, %message, "server error");
            }
            _ => {}
        }
    }

    /// Opens the speaker (and the microphone for a speaker) for the current space.
    async fn start_space_audio(self: &Arc<Self>, speaks: bool) {
        let client = lock(&self.client).clone();
        if speaks && let Some(client) = client {
            match client.mic().await {
                Ok(mic) => *lock(&lock(&self.audio).mic) = Some(mic),
                Err(e) => tracing::warn!(error = %e, "no microphone track"),
            }
        }
        if !self.opts.audio {
            return;
        }
        if speaks && let Err(e) = self.ensure_capture().await {
            tracing::warn!(error = %e, "opening the microphone");
        }
        let output = lock(&self.store).output_device().ok().flatten();
        match tokio::task::spawn_blocking(move || Playback::start(output.as_deref())).await {
            Ok(Ok((pb, ring))) => {
                let mut audio = lock(&self.audio);
                *lock(&audio.speaker) = Some(SpeakerFeed::new(ring, DEFAULT_CUSHION));
                if let Some(old) = audio.playback.replace(pb) {
                    tokio::task::spawn_blocking(move || drop(old));
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "opening the speaker"),
            Err(e) => tracing::warn!(error = %e, "opening the speaker"),
        }
    }

    async fn stop_space_audio(&self) {
        let playback = {
            let mut audio = lock(&self.audio);
            *lock(&audio.mic) = None;
            *lock(&audio.speaker) = None;
            audio.playback.take()
        };
        if let Some(pb) = playback {
            let _ = tokio::task::spawn_blocking(move || drop(pb)).await;
        }
        self.release_capture_if_idle().await;
    }

    /// Opens the microphone and starts the task that frames it, meters it and sends it.
    async fn ensure_capture(&self) -> Result<(), IpcError> {
        if !self.opts.audio {
            return Err(err(IpcErrorCode::Device, "audio is off in this instance"));
        }
        if lock(&self.audio).capture.is_some() {
            return Ok(());
        }
        let input = lock(&self.store).input_device().map_err(storage)?;
        let (capture, ring) = tokio::task::spawn_blocking(move || Capture::start(input.as_deref()))
            .await
            .map_err(|e| err(IpcErrorCode::Internal, e.to_string()))?
            .map_err(device)?;
        let mut audio = lock(&self.audio);
        if audio.capture.is_some() {
            // Someone else opened it meanwhile; keep theirs.
            tokio::task::spawn_blocking(move || drop(capture));
            return Ok(());
        }
        let task = tokio::spawn(capture_loop(
            ring,
            Arc::clone(&audio.mic),
            Arc::clone(&self.muted),
            Arc::clone(&self.meter),
            self.events.clone(),
        ));
        audio.capture = Some(capture);
        audio.capture_task = Some(task);
        Ok(())
    }

    /// Closes the microphone unless the current space or the level meter still needs it.
    async fn release_capture_if_idle(&self) {
        let capture = {
            let mut audio = lock(&self.audio);
            let needed = self.meter.load(Ordering::Relaxed) || lock(&audio.mic).is_some();
            if needed {
                return;
            }
            if let Some(task) = audio.capture_task.take() {
                task.abort();
            }
            audio.capture.take()
        };
        if let Some(c) = capture {
            let _ = tokio::task::spawn_blocking(move || drop(c)).await;
        }
    }
}

/// Frames the microphone ring into 20 ms frames; sends them (silence while muted, so the
/// stream's timing holds) and reports the level about 20 times a second when asked.
async fn capture_loop(
    mut ring: rtrb::Consumer<f32>,
    mic: Arc<Mutex<Option<Mic>>>,
    muted: Arc<AtomicBool>,
    meter: Arc<AtomicBool>,
    events: mpsc::Sender<AppEvent>,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut frame = Vec::with_capacity(FRAME_SAMPLES);
    let (mut sum_sq, mut peak, mut counted) = (0f64, 0f32, 0usize);
    let level_every = SAMPLE_RATE as usize / 20;
    loop {
        ticker.tick().await;
        while let Ok(s) = ring.pop() {
            frame.push(s);
            sum_sq += (s as f64) * (s as f64);
            peak = peak.max(s.abs());
            counted += 1;
            if counted >= level_every {
                if meter.load(Ordering::Relaxed) {
                    let rms = (sum_sq / counted as f64).sqrt() as f32;
                    let _ = events.try_send(AppEvent::InputLevel { rms, peak });
                }
                (sum_sq, peak, counted) = (0.0, 0.0, 0);
            }
            if frame.len() == FRAME_SAMPLES {
                let out = if muted.load(Ordering::Relaxed) {
                    vec![0.0; FRAME_SAMPLES]
                } else {
                    std::mem::replace(&mut frame, Vec::with_capacity(FRAME_SAMPLES))
                };
                frame.clear();
                let target = lock(&mic).clone();
                if let Some(m) = target
                    && let Err(e) = m.try_send(out)
                {
                    tracing::debug!(error = %e, "microphone frame not sent");
                }
            }
        }
    }
}

/// Keeps the app connected: connect, watch the directory, pump events; on loss, retry.
async fn supervise(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let mut backoff = Duration::from_millis(250);
    loop {
        if *stop.borrow() {
            return;
        }
        let name = lock(&inner.model).display_name.clone();
        let config = ClientConfig::new(inner.opts.server_url.clone(), name);
        match Client::connect(config).await {
            Ok((client, streams)) => {
                backoff = Duration::from_millis(250);
                if let Err(e) = client.watch_directory().await {
                    tracing::warn!(error = %e, "watching the directory");
                }
                *lock(&inner.client) = Some(client);
                lock(&inner.model).connected = true;
                inner
                    .emit(AppEvent::Connection {
                        connected: true,
                        message: None,
                    })
                    .await;
                let reason = tokio::select! {
                    r = pump(&inner, streams) => r,
                    _ = stop.changed() => "shutting down".to_owned(),
                };
                lock(&inner.client).take();
                let had_space = {
                    let mut m = lock(&inner.model);
                    m.connected = false;
                    m.current.take().is_some()
                };
                inner.stop_space_audio().await;
                if had_space {
                    inner.emit(AppEvent::Current { current: None }).await;
                }
                inner
                    .emit(AppEvent::Connection {
                        connected: false,
                        message: Some(reason),
                    })
                    .await;
            }
            Err(e) => {
                inner
                    .emit(AppEvent::Connection {
                        connected: false,
                        message: Some(e.to_string()),
                    })
                    .await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Moves one connection's events and audio until it closes; returns why.
async fn pump(inner: &Arc<Inner>, mut streams: Streams) -> String {
    let speaker = Arc::clone(&lock(&inner.audio).speaker);
    loop {
        tokio::select! {
            ev = streams.events.recv() => match ev {
                None => return "connection closed".to_owned(),
                Some(Event::Disconnected { reason }) => return reason,
                Some(ev) => inner.on_event(ev).await,
            },
            Some(frame) = streams.audio.recv() => {
                if let Some(feed) = lock(&speaker).as_mut() {
                    feed.push(&frame.samples);
                }
            }
        }
    }
}
