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

mod diagnostics;
mod stage;
mod talk;
mod web;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use confab_audio::JitterStats;
use confab_audio::{
    AudioBackend, AudioEngine, Capture, CpalBackend, MAX_GAIN, Playback, SAMPLE_RATE, SendSink,
    VoiceConfig,
};
use confab_proto::ipc::{
    Account, AppEvent, AppState, CurrentSpace, Device, Devices, FollowedHost, IpcError,
    IpcErrorCode, MicMode, ReportKind, Settings, SpeakerLevel, SpeakerVolume, StageAction,
    Upcoming, UserAvatar, VoiceSettings,
};
use confab_proto::{
    ClientMsg, MAX_NAME_CHARS, ParticipantId, ReportRequest, ScheduleRequest, Scheduled, SpaceId,
    SpaceSummary,
};
use confab_store::{Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::identity::{DeviceKey, key_file};
use crate::{Client, ClientConfig, ClientError, Event, Joined, Mic, Streams};
use stage::Effect;
use talk::Talk;
pub use talk::normalize_talk_key;
use web::Web;

/// How long an avatar fetched (or found missing) is trusted before asking again.
const AVATAR_FRESH: Duration = Duration::from_secs(60);

/// Roster news of at most this many people shows a toast for each; more (a join storm) only
/// updates the roster and its counts.
const PARTICIPANT_TOASTS: usize = 3;

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
    web: Web,
    store: Mutex<Store>,
    events: mpsc::Sender<AppEvent>,
    model: Mutex<Model>,
    client: Mutex<Option<Client>>,
    audio: Mutex<Audio>,
    /// Whether what we send is silenced; the audio worker reads it for every frame.
    muted: Arc<AtomicBool>,
    meter: Arc<AtomicBool>,
    /// Which voice-processing stages run ([`voice_bits`]).
    voice: Arc<AtomicU8>,
    /// The real-time audio worker (`None` when this instance opens no audio devices).
    engine: Option<Arc<AudioEngine>>,
    /// The microphone's mode and the push-to-talk key's state.
    talk: Mutex<Talk>,
    /// Our own mute and unmute requests (`true` for mute) the server has not echoed yet, oldest
    /// first. While a newer one is on its way, an echo of an older one must not undo what we
    /// show: a push-to-talk key pressed just after going on stage would flicker "muted" for a
    /// round trip (see [`Inner::own_mute_echo`]).
    mute_requests: Mutex<std::collections::VecDeque<bool>>,
    /// The task that reports diagnostics once a second, while they are wanted.
    diagnostics: Mutex<Option<JoinHandle<()>>>,
    shutdown: watch::Sender<bool>,
}

struct Model {
    display_name: String,
    connected: bool,
    /// The signed-in account and its bearer token.
    account: Option<(Account, String)>,
    live: Vec<SpaceSummary>,
    /// Every scheduled space on the server, and the ids we asked to be reminded of.
    schedules: Vec<Scheduled>,
    reminders: HashSet<String>,
    /// Accounts we blocked for ourself.
    blocked: HashSet<String>,
    /// Who each receive slot carries.
    slots: HashMap<usize, ParticipantId>,
    /// Our own volume for people in the current space (1.0 when absent; 0 mutes for us).
    volumes: HashMap<ParticipantId, f32>,
    /// Avatars of accounts met in spaces (`None`: asked for, or none set), and when asked.
    avatars: HashMap<String, (Option<String>, std::time::Instant)>,
    current: Option<CurrentSpace>,
}

/// The key a host is followed by: `@handle` when the host has an account, else the name shown.
pub fn host_key(space: &SpaceSummary) -> String {
    match &space.host_handle {
        Some(h) => format!("@{h}"),
        None => space.host.clone(),
    }
}

/// `spaces` with each host replaced by its [`host_key`], as the store records them.
fn keyed(spaces: &[SpaceSummary]) -> Vec<SpaceSummary> {
    spaces
        .iter()
        .map(|s| SpaceSummary {
            host: host_key(s),
            ..s.clone()
        })
        .collect()
}

/// The open devices (their rings are the audio worker's) and our microphone track.
#[derive(Default)]
struct Audio {
    capture: Option<Capture>,
    playback: Option<Playback>,
    /// Our microphone track while we are on the stage: the audio worker's send sink.
    mic: Option<Mic>,
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

fn volumes_of(v: &HashMap<ParticipantId, f32>) -> Vec<SpeakerVolume> {
    let mut out: Vec<SpeakerVolume> = v
        .iter()
        .map(|(&participant, &volume)| SpeakerVolume {
            participant,
            volume,
        })
        .collect();
    out.sort_by_key(|l| l.participant);
    out
}

/// A scheduled space as Home shows it to this account.
fn upcoming(s: &Scheduled, m: &Model) -> Upcoming {
    let mine = m.account.as_ref().is_some_and(|(a, _)| a.handle == s.host);
    Upcoming {
        id: s.id.clone(),
        host: s.host.clone(),
        title: s.title.clone(),
        topics: s.topics.clone(),
        starts_at: s.starts_at,
        reminded: m.reminders.contains(&s.id),
        mine,
    }
}

fn account_of(p: &confab_proto::Profile) -> Account {
    Account {
        handle: p.handle.clone(),
        display_name: p.display_name.clone(),
        bio: p.bio.clone(),
        avatar: p.avatar.as_deref().and_then(confab_proto::ipc::avatar_src),
    }
}

const VOICE_NS: u8 = 1;
const VOICE_AEC: u8 = 2;
const VOICE_AGC: u8 = 4;

/// The voice settings as bits, for the capture loop to read without a lock.
fn voice_bits(v: VoiceSettings) -> u8 {
    (if v.noise_suppression { VOICE_NS } else { 0 })
        | (if v.echo_cancellation { VOICE_AEC } else { 0 })
        | (if v.auto_gain { VOICE_AGC } else { 0 })
}

/// The processor's configuration for `bits` (the high-pass always runs: nothing below 80 Hz
/// is voice).
fn voice_config(bits: u8) -> VoiceConfig {
    VoiceConfig {
        high_pass: true,
        noise_suppression: bits & VOICE_NS != 0,
        echo_cancel: bits & VOICE_AEC != 0,
        agc: bits & VOICE_AGC != 0,
    }
}

/// The saved voice settings; a stage never set is on.
fn voice_settings(store: &Store) -> Result<VoiceSettings, StoreError> {
    let on = |stage: &str| store.voice_stage(stage).map(|v| v.unwrap_or(true));
    Ok(VoiceSettings {
        noise_suppression: on("noise_suppression")?,
        echo_cancellation: on("echo_cancellation")?,
        auto_gain: on("auto_gain")?,
    })
}

fn clean_display_name(name: &str) -> Result<String, IpcError> {
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(err(
            IpcErrorCode::InvalidInput,
            "a display name is 1 to 64 printable characters",
        ));
    }
    Ok(name.to_owned())
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
        let voice = voice_settings(&store).map_err(storage)?;
        let mic_mode = store.mic_mode().map_err(storage)?;
        let blocked = store
            .blocked(&opts.server_url)
            .map_err(storage)?
            .into_iter()
            .collect();
        let (events, rx) = mpsc::channel(512);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| err(IpcErrorCode::Internal, e.to_string()))?;
        let web = Web {
            http,
            url: opts.server_url.trim_end_matches('/').to_owned(),
        };
        let engine = if opts.audio {
            Some(Arc::new(
                AudioEngine::start(voice_config(voice_bits(voice))).map_err(device)?,
            ))
        } else {
            None
        };
        let muted = engine.as_ref().map_or_else(Arc::default, |e| e.mute_flag());
        let inner = Arc::new(Inner {
            opts,
            web,
            store: Mutex::new(store),
            events,
            model: Mutex::new(Model {
                display_name,
                connected: false,
                account: None,
                live: Vec::new(),
                schedules: Vec::new(),
                reminders: HashSet::new(),
                blocked,
                slots: HashMap::new(),
                volumes: HashMap::new(),
                avatars: HashMap::new(),
                current: None,
            }),
            client: Mutex::new(None),
            audio: Mutex::new(Audio::default()),
            muted,
            meter: Arc::new(AtomicBool::new(false)),
            voice: Arc::new(AtomicU8::new(voice_bits(voice))),
            engine,
            talk: Mutex::new(Talk::new(&mic_mode)),
            mute_requests: Mutex::new(std::collections::VecDeque::new()),
            diagnostics: Mutex::new(None),
            shutdown: watch::channel(false).0,
        });
        tokio::spawn(supervise(Arc::clone(&inner)));
        tokio::spawn(refresh_schedules(Arc::clone(&inner)));
        tokio::spawn(input_meter(Arc::clone(&inner)));
        tokio::spawn(device_watch(Arc::clone(&inner)));
        Ok((App { inner }, rx))
    }

    /// Everything the UI shows, now.
    pub async fn state(&self) -> AppState {
        let followed = self.inner.followed_view();
        let upcoming = self.inner.upcoming_view();
        let push_to_talk = lock(&self.inner.talk).key().map(str::to_owned);
        let m = lock(&self.inner.model);
        let mut blocked: Vec<String> = m.blocked.iter().cloned().collect();
        blocked.sort();
        AppState {
            profile: self.inner.opts.profile.clone(),
            server_url: self.inner.opts.server_url.clone(),
            embedded_server: self.inner.opts.embedded_server,
            connected: m.connected,
            display_name: m.display_name.clone(),
            account: m.account.as_ref().map(|(a, _)| a.clone()),
            live: m.live.clone(),
            followed,
            upcoming,
            blocked,
            avatars: m
                .avatars
                .iter()
                .filter_map(|(h, (src, _))| {
                    src.as_ref().map(|src| UserAvatar {
                        handle: h.clone(),
                        src: src.clone(),
                    })
                })
                .collect(),
            current: m.current.clone(),
            push_to_talk,
        }
    }

    fn client(&self) -> Result<Client, IpcError> {
        lock(&self.inner.client)
            .clone()
            .ok_or_else(|| err(IpcErrorCode::Offline, "not connected to the server"))
    }

    fn token(&self) -> Result<String, IpcError> {
        lock(&self.inner.model)
            .account
            .as_ref()
            .map(|(_, t)| t.clone())
            .ok_or_else(|| {
                err(
                    IpcErrorCode::Server(confab_proto::ErrorCode::SignInRequired),
                    "create your account first (Settings)",
                )
            })
    }

    /// Forgets the last space's receive slots and volumes. Called before asking to enter a
    /// space, not after: the server tells a newcomer its slots right away, and those `Slot`
    /// events can be handled before the join's reply returns.
    fn entering(&self) {
        let mut m = lock(&self.inner.model);
        m.slots.clear();
        m.volumes.clear();
    }

    fn entered(&self, client: &Client, joined: Joined) -> CurrentSpace {
        let me = joined
            .space
            .participants
            .iter()
            .find(|p| p.id == client.id());
        let muted = me.is_some_and(|p| p.muted);
        self.inner.muted.store(muted, Ordering::Relaxed);
        lock(&self.inner.mute_requests).clear();
        let current = CurrentSpace {
            you: client.id(),
            space: joined.space,
            role: joined.role,
            muted,
            media_connected: false,
            invited_by: None,
            chat: Vec::new(),
        };
        self.inner.want_avatars(&current.space.participants);
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
        let client = self.client()?;
        self.entering();
        let joined = client.create_with_topics(&title, topics).await?;
        let current = self.entered(&client, joined);
        self.inner
            .emit(AppEvent::Current {
                current: Some(current.clone()),
            })
            .await;
        self.inner.hold_push_to_talk().await;
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
        let client = self.client()?;
        self.entering();
        let joined = client.join(&id).await?;
        let current = self.entered(&client, joined);
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

    /// Mutes or unmutes our microphone. On the mic, the server is told too, so everyone sees
    /// it and nothing of ours is forwarded while muted.
    pub async fn set_muted(&self, muted: bool) -> Result<(), IpcError> {
        let on_mic = lock(&self.inner.model)
            .current
            .as_ref()
            .is_some_and(|c| c.role.speaks());
        if on_mic {
            let msg = if muted {
                ClientMsg::MuteSelf
            } else {
                ClientMsg::UnmuteSelf
            };
            lock(&self.inner.mute_requests).push_back(muted);
            self.client()?.stage(msg).await?;
        }
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

    /// The push-to-talk key went down (`true`) or up, wherever the focus was. In push-to-talk
    /// mode, on the mic, this opens or closes the microphone: at once here, and on the server
    /// (so everyone sees who talks) right after. Does nothing with an open mic.
    pub async fn push_to_talk(&self, down: bool) -> Result<(), IpcError> {
        let Some(muted) = lock(&self.inner.talk).press(down) else {
            return Ok(());
        };
        self.inner.mute_for_talk(muted).await
    }

    /// Turns the once-a-second [`AppEvent::Diagnostics`] on (the panel is open) or off.
    pub async fn set_diagnostics(&self, on: bool) -> Result<(), IpcError> {
        let mut task = lock(&self.inner.diagnostics);
        if let Some(t) = task.take() {
            t.abort();
        }
        if on {
            *task = Some(tokio::spawn(diagnostics::report(Arc::clone(&self.inner))));
        }
        Ok(())
    }

    /// Follows a host on this server, by [`host_key`] (`@handle` or a signed-out host's name).
    pub async fn follow(&self, host: String) -> Result<(), IpcError> {
        let host = host.trim().to_owned();
        if host.is_empty() || host.chars().count() > MAX_NAME_CHARS + 1 {
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
            let live = keyed(&lock(&self.inner.model).live);
            store
                .record_spaces(&self.inner.opts.server_url, &live, unix_now())
                .map_err(storage)?;
        }
        let followed = self.inner.followed_view();
        self.inner.emit(AppEvent::Followed { followed }).await;
        // The host's scheduled spaces show now, not at the next poll.
        self.inner.refresh_schedules().await;
        Ok(())
    }

    /// Stops following a host.
    pub async fn unfollow(&self, host: String) -> Result<(), IpcError> {
        lock(&self.inner.store)
            .unfollow(&self.inner.opts.server_url, host.trim())
            .map_err(storage)?;
        let followed = self.inner.followed_view();
        self.inner.emit(AppEvent::Followed { followed }).await;
        self.inner.emit_upcoming().await;
        Ok(())
    }

    /// Creates an account `handle` on the server for this device and signs in with it. The
    /// connection restarts signed in, so do it outside a space.
    pub async fn create_account(
        &self,
        handle: String,
        display_name: String,
    ) -> Result<Account, IpcError> {
        if lock(&self.inner.model).current.is_some() {
            return Err(err(IpcErrorCode::InvalidInput, "leave your space first"));
        }
        if lock(&self.inner.model).account.is_some() {
            return Err(err(
                IpcErrorCode::InvalidInput,
                "this profile already has an account on this server",
            ));
        }
        let name = clean_display_name(&display_name)?;
        let key = self.inner.device_key().await?;
        let session = key
            .register(&self.inner.web.http, &self.inner.web.url, &handle, &name)
            .await?;
        let account = account_of(&session.user);
        {
            let mut m = lock(&self.inner.model);
            m.account = Some((account.clone(), session.token));
            m.display_name = account.display_name.clone();
        }
        {
            let mut store = lock(&self.inner.store);
            let saved = store
                .set_display_name(Some(&account.display_name))
                .and_then(|()| store.set_setting(&self.inner.account_setting(), &account.handle));
            if let Err(e) = saved {
                tracing::warn!(error = %e, "remembering the account");
            }
        }
        self.inner
            .emit(AppEvent::Account {
                account: Some(account.clone()),
            })
            .await;
        // Reconnect, this time signed in: the next connection says hello with the token.
        let client = lock(&self.inner.client).clone();
        if let Some(client) = client {
            client.close().await;
        }
        self.inner.refresh_schedules().await;
        Ok(account)
    }

    /// Asks the stage for something; the server decides whether our role allows it and says
    /// no with a `refused` event.
    pub async fn stage(&self, action: StageAction) -> Result<(), IpcError> {
        let in_space = lock(&self.inner.model).current.is_some();
        if !in_space {
            return Err(err(IpcErrorCode::InvalidInput, "you are in no space"));
        }
        if matches!(
            action,
            StageAction::AcceptInvite | StageAction::DeclineInvite
        ) && let Some(cur) = lock(&self.inner.model).current.as_mut()
        {
            cur.invited_by = None;
        }
        self.client()?.stage(action.to_msg()).await?;
        Ok(())
    }

    /// Asks (or stops asking) to be reminded when scheduled space `id` starts.
    pub async fn set_reminder(&self, id: String, on: bool) -> Result<(), IpcError> {
        let token = self.token()?;
        self.inner.web.set_reminder(&token, &id, on).await?;
        {
            let mut m = lock(&self.inner.model);
            if on {
                m.reminders.insert(id);
            } else {
                m.reminders.remove(&id);
            }
        }
        // A reminder may be for a space this app has not listed yet.
        self.inner.refresh_schedules().await;
        Ok(())
    }

    /// Schedules a space of ours to start at `starts_at` (Unix seconds, within 30 days).
    pub async fn schedule_space(
        &self,
        title: String,
        topics: Vec<String>,
        starts_at: i64,
    ) -> Result<Upcoming, IpcError> {
        let token = self.token()?;
        let req = ScheduleRequest {
            title,
            topics,
            starts_at,
        };
        let scheduled = self.inner.web.schedule(&token, &req).await?;
        lock(&self.inner.model).schedules.push(scheduled.clone());
        self.inner.emit_upcoming().await;
        Ok(self.inner.upcoming_of(&scheduled))
    }

    /// Cancels a space we scheduled.
    pub async fn cancel_scheduled(&self, id: String) -> Result<(), IpcError> {
        let token = self.token()?;
        self.inner.web.cancel(&token, &id).await?;
        lock(&self.inner.model).schedules.retain(|s| s.id != id);
        self.inner.emit_upcoming().await;
        Ok(())
    }

    /// Starts a space we scheduled, now, with us as host.
    pub async fn start_scheduled(&self, id: String) -> Result<CurrentSpace, IpcError> {
        if lock(&self.inner.model).current.is_some() {
            return Err(err(IpcErrorCode::InvalidInput, "leave your space first"));
        }
        let (title, topics) = {
            let m = lock(&self.inner.model);
            let s = m
                .schedules
                .iter()
                .find(|s| s.id == id)
                .ok_or_else(|| err(IpcErrorCode::InvalidInput, "no such scheduled space"))?;
            (s.title.clone(), s.topics.clone())
        };
        let sid: SpaceId = id.parse().map_err(|e: confab_proto::SpaceIdError| {
            err(IpcErrorCode::InvalidInput, e.to_string())
        })?;
        let client = self.client()?;
        self.entering();
        let joined = client.start_scheduled(&sid, &title, topics).await?;
        let current = self.entered(&client, joined);
        lock(&self.inner.model).schedules.retain(|s| s.id != id);
        self.inner
            .emit(AppEvent::Current {
                current: Some(current.clone()),
            })
            .await;
        self.inner.emit_upcoming().await;
        self.inner.hold_push_to_talk().await;
        Ok(current)
    }

    /// Blocks (or unblocks) account `handle` for ourself: their audio, reactions and chat are
    /// hidden from us here. (A host blocking someone from their spaces is [`StageAction::Block`].)
    pub async fn block_user(&self, handle: String, blocked: bool) -> Result<(), IpcError> {
        let handle = handle.trim().trim_start_matches('@').to_ascii_lowercase();
        if confab_proto::UserId::new(&handle).is_err() {
            return Err(err(IpcErrorCode::InvalidInput, "not an account handle"));
        }
        {
            let mut store = lock(&self.inner.store);
            let server = &self.inner.opts.server_url;
            if blocked {
                store.block(server, &handle, unix_now()).map_err(storage)?;
            } else {
                store.unblock(server, &handle).map_err(storage)?;
            }
        }
        let (list, current) = {
            let mut m = lock(&self.inner.model);
            if blocked {
                m.blocked.insert(handle.clone());
            } else {
                m.blocked.remove(&handle);
            }
            // Their chat goes from the space we are in, too.
            let blocked_now = m.blocked.clone();
            if blocked && let Some(cur) = m.current.as_mut() {
                let gone: Vec<ParticipantId> = cur
                    .space
                    .participants
                    .iter()
                    .filter(|p| {
                        p.user
                            .as_ref()
                            .is_some_and(|u| blocked_now.contains(u.as_str()))
                    })
                    .map(|p| p.id)
                    .collect();
                cur.chat.retain(|c| !gone.contains(&c.author));
            }
            let mut list: Vec<String> = m.blocked.iter().cloned().collect();
            list.sort();
            (list, m.current.clone())
        };
        self.inner.emit(AppEvent::Blocked { blocked: list }).await;
        if current.is_some() {
            self.inner.emit(AppEvent::Current { current }).await;
        }
        Ok(())
    }

    /// Sets how loud `participant` of our space is for us (0 mutes them for us only; up to
    /// [`MAX_GAIN`]).
    pub async fn set_volume(
        &self,
        participant: ParticipantId,
        volume: f32,
    ) -> Result<(), IpcError> {
        if !volume.is_finite() || !(0.0..=MAX_GAIN).contains(&volume) {
            return Err(err(
                IpcErrorCode::InvalidInput,
                format!("a volume is between 0 and {MAX_GAIN}"),
            ));
        }
        let volumes = {
            let mut m = lock(&self.inner.model);
            let known = m
                .current
                .as_ref()
                .is_some_and(|c| c.space.participants.iter().any(|p| p.id == participant));
            if !known {
                return Err(err(IpcErrorCode::InvalidInput, "no such participant here"));
            }
            if volume == 1.0 {
                m.volumes.remove(&participant);
            } else {
                m.volumes.insert(participant, volume);
            }
            volumes_of(&m.volumes)
        };
        self.inner.emit(AppEvent::Volumes { volumes }).await;
        Ok(())
    }

    /// Sets the account's bio and avatar (standard base64 of a PNG or JPEG of at most 64 KiB,
    /// or `None` for none); the display name stays.
    pub async fn update_profile(
        &self,
        bio: String,
        avatar: Option<String>,
    ) -> Result<Account, IpcError> {
        let token = self.token()?;
        let name = lock(&self.inner.model)
            .account
            .as_ref()
            .map(|(a, _)| a.display_name.clone())
            .unwrap_or_default();
        let update = confab_proto::ProfileUpdate {
            display_name: name,
            bio,
            avatar,
        };
        let profile = self.inner.web.update_profile(&token, &update).await?;
        let account = account_of(&profile);
        {
            let mut m = lock(&self.inner.model);
            if let Some((a, _)) = m.account.as_mut() {
                *a = account.clone();
            }
            m.avatars.insert(
                account.handle.clone(),
                (account.avatar.clone(), std::time::Instant::now()),
            );
        }
        self.inner
            .emit(AppEvent::Account {
                account: Some(account.clone()),
            })
            .await;
        if let Some(src) = account.avatar.clone() {
            self.inner
                .emit(AppEvent::Avatars {
                    avatars: vec![UserAvatar {
                        handle: account.handle.clone(),
                        src,
                    }],
                })
                .await;
        }
        Ok(account)
    }

    /// Reports a user (by handle) or a space (by id) to the server's operator. Returns the
    /// report's number.
    pub async fn report(
        &self,
        kind: ReportKind,
        target: String,
        reason: String,
    ) -> Result<i64, IpcError> {
        let token = self.token()?;
        let req = ReportRequest {
            kind: match kind {
                ReportKind::User => "user",
                ReportKind::Space => "space",
            }
            .to_owned(),
            target: target.trim().trim_start_matches('@').to_owned(),
            reason,
        };
        self.inner.web.report(&token, &req).await
    }

    /// The saved settings.
    pub async fn settings(&self) -> Result<Settings, IpcError> {
        let store = lock(&self.inner.store);
        Ok(Settings {
            server_url: store.server_url().map_err(storage)?,
            display_name: lock(&self.inner.model).display_name.clone(),
            input_device: store.input_device().map_err(storage)?,
            output_device: store.output_device().map_err(storage)?,
            voice: voice_settings(&store).map_err(storage)?,
            mic_mode: store.mic_mode().map_err(storage)?,
        })
    }

    /// Saves settings. A new display name is used from the next connection; a new server
    /// from the next start of the app.
    pub async fn save_settings(&self, s: Settings) -> Result<(), IpcError> {
        let name = clean_display_name(&s.display_name)?;
        let name = name.as_str();
        let mic_mode = match &s.mic_mode {
            MicMode::Open => MicMode::Open,
            MicMode::PushToTalk { key } => MicMode::PushToTalk {
                key: normalize_talk_key(key).map_err(|e| err(IpcErrorCode::InvalidInput, e))?,
            },
        };
        if let Some(url) = &s.server_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(err(
                IpcErrorCode::InvalidInput,
                "a server URL starts with http:// or https://",
            ));
        }
        {
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
            store
                .set_voice_stage("noise_suppression", s.voice.noise_suppression)
                .and_then(|()| {
                    store.set_voice_stage("echo_cancellation", s.voice.echo_cancellation)
                })
                .and_then(|()| store.set_voice_stage("auto_gain", s.voice.auto_gain))
                .map_err(storage)?;
            store.set_mic_mode(&mic_mode).map_err(storage)?;
        }
        let changed = {
            let mut talk = lock(&self.inner.talk);
            let before = talk.key().map(str::to_owned);
            talk.set_mode(&mic_mode);
            (talk.key() != before.as_deref()).then(|| talk.key().map(str::to_owned))
        };
        if let Some(push_to_talk) = changed {
            self.inner
                .emit(AppEvent::MicMode { key: push_to_talk })
                .await;
            self.inner.hold_push_to_talk().await;
        }
        // The microphone's processing changes at once, mid-sentence if need be.
        self.inner
            .voice
            .store(voice_bits(s.voice), Ordering::Relaxed);
        if let Some(engine) = &self.inner.engine {
            engine.set_voice(voice_config(voice_bits(s.voice)));
        }
        // The account's name is the one others see: rename it on the server too.
        let token = lock(&self.inner.model)
            .account
            .as_ref()
            .map(|(_, t)| t.clone());
        if let Some(token) = token {
            let profile = self.inner.web.rename(&token, name).await?;
            let account = {
                let mut m = lock(&self.inner.model);
                if let Some((a, _)) = m.account.as_mut() {
                    *a = account_of(&profile);
                }
                m.account.as_ref().map(|(a, _)| a.clone())
            };
            self.inner.emit(AppEvent::Account { account }).await;
        }
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
        if let Some(t) = lock(&self.inner.diagnostics).take() {
            t.abort();
        }
        self.inner.release_capture_if_idle().await;
    }
}

impl Inner {
    async fn emit(&self, event: AppEvent) {
        let _ = self.events.send(event).await;
    }

    /// Each receive slot's jitter-buffer figures. The one place the app reads them, so that
    /// where they come from (the connection's playout tasks today) can change alone.
    fn slot_stats(&self) -> Vec<(usize, JitterStats)> {
        lock(&self.client)
            .as_ref()
            .map(Client::jitter_stats)
            .unwrap_or_default()
    }

    /// Mutes or opens the microphone for push-to-talk, if we are on the mic: locally first (the
    /// capture loop reads the flag on its next frame), then on the server.
    async fn mute_for_talk(&self, muted: bool) -> Result<(), IpcError> {
        let current = {
            let mut m = lock(&self.model);
            let Some(cur) = m.current.as_mut().filter(|c| c.role.speaks()) else {
                return Ok(());
            };
            if cur.muted == muted {
                return Ok(());
            }
            self.muted.store(muted, Ordering::Relaxed);
            cur.muted = muted;
            m.current.clone()
        };
        self.emit(AppEvent::Current { current }).await;
        let client = lock(&self.client)
            .clone()
            .ok_or_else(|| err(IpcErrorCode::Offline, "not connected to the server"))?;
        let msg = if muted {
            ClientMsg::MuteSelf
        } else {
            ClientMsg::UnmuteSelf
        };
        lock(&self.mute_requests).push_back(muted);
        client.stage(msg).await?;
        Ok(())
    }

    /// The server says we are `muted`: what we should show instead, if a newer request of ours
    /// is still on its way. The server takes our requests in order and echoes each, so an echo
    /// equal to the oldest outstanding request is that request's; one that is not is somebody
    /// else's doing (the host muted us) and wins, and what we had outstanding is forgotten.
    fn own_mute_echo(&self, muted: bool) -> Option<bool> {
        mute_echo(&mut lock(&self.mute_requests), muted)
    }

    /// In push-to-talk mode with the key up, makes sure our microphone is muted (after going
    /// on the mic, or choosing the mode). Never opens it: that takes the key.
    async fn hold_push_to_talk(&self) {
        let wants = lock(&self.talk).wants_muted();
        if wants == Some(true)
            && let Err(e) = self.mute_for_talk(true).await
        {
            tracing::warn!(error = %e, "muting for push-to-talk");
        }
    }

    /// Our volume for whoever receive slot `slot` carries, or `None` for someone whose
    /// account we blocked (their audio is dropped).
    /// Gives the audio worker our gain for every receive slot (0 for a blocked account).
    fn apply_gains(&self) {
        if let Some(engine) = &self.engine {
            for slot in 0..confab_audio::ENGINE_SLOTS {
                engine.set_gain(slot, self.slot_gain(slot).unwrap_or(0.0));
            }
        }
    }

    fn slot_gain(&self, slot: usize) -> Option<f32> {
        let m = lock(&self.model);
        let (Some(&who), Some(cur)) = (m.slots.get(&slot), m.current.as_ref()) else {
            return Some(1.0);
        };
        if stage::is_blocked(cur, who, &m.blocked) {
            return None;
        }
        Some(m.volumes.get(&who).copied().unwrap_or(1.0))
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
                    live_space: live.iter().find(|s| host_key(s) == h.host).cloned(),
                    last_title: last.map(|s| s.title.clone()),
                    last_live_at: h.last_live_at.or(last.map(|s| s.last_seen_at)),
                    host: h.host,
                }
            })
            .collect()
    }

    /// The account's bearer token, if signed in.
    fn token(&self) -> Option<String> {
        lock(&self.model).account.as_ref().map(|(_, t)| t.clone())
    }

    /// This profile's device key (from the keychain or its file; made on first use).
    async fn device_key(&self) -> Result<DeviceKey, IpcError> {
        let profile = self.opts.profile.clone();
        let file = key_file(
            self.opts
                .store_path
                .parent()
                .unwrap_or(std::path::Path::new(".")),
        );
        tokio::task::spawn_blocking(move || DeviceKey::load_or_create(&profile, &file))
            .await
            .map_err(|e| err(IpcErrorCode::Internal, e.to_string()))?
            .map_err(|e| err(IpcErrorCode::Storage, format!("the device key: {e}")))
    }

    /// The setting that remembers this profile has an account on our server (so a profile
    /// that never made one does not touch the keychain at every start).
    fn account_setting(&self) -> String {
        format!("account:{}", self.opts.server_url)
    }

    /// Signs this device in, if it has an account on the server. Quietly stays signed out
    /// when it has none (or the server cannot say).
    async fn sign_in(&self) {
        let registered = lock(&self.store)
            .get_setting(&self.account_setting())
            .ok()
            .flatten()
            .is_some();
        if !registered {
            return;
        }
        let key = match self.device_key().await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "no device key; staying signed out");
                return;
            }
        };
        match key.sign_in(&self.web.http, &self.web.url).await {
            Ok(session) => {
                let account = account_of(&session.user);
                let changed = {
                    let mut m = lock(&self.model);
                    let changed = m.account.as_ref().map(|(a, _)| a) != Some(&account);
                    m.display_name = account.display_name.clone();
                    m.account = Some((account.clone(), session.token));
                    changed
                };
                if changed {
                    tracing::info!(handle = %account.handle, "signed in");
                    self.emit(AppEvent::Account {
                        account: Some(account),
                    })
                    .await;
                }
            }
            Err(crate::identity::AccountCallError::Refused(e)) => {
                tracing::info!(code = ?e.code, "this device has no account here; signed out");
                let had = lock(&self.model).account.take().is_some();
                if had {
                    self.emit(AppEvent::Account { account: None }).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "signing in"),
        }
    }

    /// Scheduled spaces worth showing: our own and those of followed hosts, not yet live,
    /// soonest first.
    fn upcoming_view(&self) -> Vec<Upcoming> {
        let followed: HashSet<String> = lock(&self.store)
            .followed(&self.opts.server_url)
            .map(|v| v.into_iter().map(|h| h.host).collect())
            .unwrap_or_default();
        let m = lock(&self.model);
        let me = m.account.as_ref().map(|(a, _)| a.handle.as_str());
        let mut list: Vec<Upcoming> = m
            .schedules
            .iter()
            .filter(|s| s.state == "scheduled")
            .filter(|s| !m.live.iter().any(|l| l.id.as_str() == s.id))
            .filter(|s| {
                Some(s.host.as_str()) == me
                    || m.reminders.contains(&s.id)
                    || followed.contains(&format!("@{}", s.host))
            })
            .map(|s| upcoming(s, &m))
            .collect();
        list.sort_by_key(|u| (u.starts_at, u.id.clone()));
        list
    }

    fn upcoming_of(&self, s: &Scheduled) -> Upcoming {
        upcoming(s, &lock(&self.model))
    }

    async fn emit_upcoming(&self) {
        let upcoming = self.upcoming_view();
        self.emit(AppEvent::Upcoming { upcoming }).await;
    }

    /// Reads the server's schedule and our reminders again.
    async fn refresh_schedules(&self) {
        match self.web.upcoming().await {
            Ok(list) => lock(&self.model).schedules = list,
            Err(e) => {
                tracing::debug!(error = %e, "reading the schedule");
                return;
            }
        }
        if let Some(token) = self.token() {
            match self.web.reminders(&token).await {
                Ok(list) => lock(&self.model).reminders = list.into_iter().map(|s| s.id).collect(),
                Err(e) => tracing::debug!(error = %e, "reading reminders"),
            }
        }
        self.emit_upcoming().await;
    }

    /// A new directory snapshot: remember it, notify for followed hosts newly live and for
    /// spaces we asked to be reminded of.
    async fn on_directory(&self, spaces: Vec<SpaceSummary>) {
        let now = unix_now();
        let server = &self.opts.server_url;
        let (ours, before, reminders) = {
            let m = lock(&self.model);
            (
                m.current.as_ref().map(|c| c.space.id.clone()),
                m.live.iter().map(|s| s.id.clone()).collect::<HashSet<_>>(),
                m.reminders.clone(),
            )
        };
        let mut notify = Vec::new();
        {
            let mut store = lock(&self.store);
            match store.record_spaces(server, &keyed(&spaces), now) {
                Ok(newly) => {
                    for keyed_space in newly {
                        if Some(&keyed_space.id) == ours.as_ref() {
                            continue;
                        }
                        let Some(space) = spaces.iter().find(|s| s.id == keyed_space.id).cloned()
                        else {
                            continue;
                        };
                        match store.should_notify(
                            server,
                            &keyed_space.host,
                            now,
                            NOTIFY_WINDOW_SECS,
                        ) {
                            Ok(true) => notify.push(space),
                            Ok(false) => {}
                            Err(e) => tracing::warn!(error = %e, "notification bookkeeping"),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "recording the directory"),
            }
        }
        // A reminded space that just went live, unless a follow already announces it.
        let reminded: Vec<SpaceSummary> = spaces
            .iter()
            .filter(|s| reminders.contains(s.id.as_str()) && !before.contains(&s.id))
            .filter(|s| Some(&s.id) != ours.as_ref() && !notify.iter().any(|n| n.id == s.id))
            .cloned()
            .collect();
        lock(&self.model).live = spaces.clone();
        self.emit(AppEvent::Directory { live: spaces }).await;
        let followed = self.followed_view();
        self.emit(AppEvent::Followed { followed }).await;
        self.emit_upcoming().await;
        for space in notify {
            self.emit(AppEvent::FollowedLive { space }).await;
        }
        for space in reminded {
            self.emit(AppEvent::Reminder { space }).await;
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
            Event::Participants { joined, left, .. } => {
                self.want_avatars(&joined);
                let (current, gone) = {
                    let mut m = lock(&self.model);
                    let mut gone = Vec::new();
                    if let Some(cur) = m.current.as_mut() {
                        let people = &mut cur.space.participants;
                        if !left.is_empty() {
                            let left: HashSet<ParticipantId> = left.iter().copied().collect();
                            people.retain(|p| {
                                let going = left.contains(&p.id);
                                if going {
                                    gone.push(p.clone());
                                }
                                !going
                            });
                        }
                        // One lookup table per batch, not a scan per entry: a batch in a join
                        // storm holds dozens of people and the roster thousands.
                        let mut at: HashMap<ParticipantId, usize> =
                            people.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
                        for p in &joined {
                            match at.get(&p.id) {
                                Some(&i) => people[i] = p.clone(),
                                None => {
                                    at.insert(p.id, people.len());
                                    people.push(p.clone());
                                }
                            }
                        }
                    }
                    (m.current.clone(), gone)
                };
                self.emit(AppEvent::Current { current }).await;
                // A toast per person for a few; in a crowd's rush the count says it.
                if joined.len() + gone.len() <= PARTICIPANT_TOASTS {
                    for participant in joined {
                        self.emit(AppEvent::Participant {
                            participant,
                            joined: true,
                        })
                        .await;
                    }
                    for participant in gone {
                        self.emit(AppEvent::Participant {
                            participant,
                            joined: false,
                        })
                        .await;
                    }
                }
            }
            Event::Slot { slot, speaker } => {
                {
                    let mut m = lock(&self.model);
                    match speaker {
                        Some(p) => m.slots.insert(slot, p),
                        None => m.slots.remove(&slot),
                    };
                }
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
                tracing::info!(?code, %message, "the server refused");
                self.emit(AppEvent::Refused { code, message }).await;
            }
            Event::Stage(msg) => self.on_stage(msg).await,
            _ => {}
        }
    }

    /// Fetches, in the background, the avatars of `people`'s accounts not asked for yet.
    fn want_avatars(self: &Arc<Self>, people: &[confab_proto::ParticipantInfo]) {
        let wanted: Vec<String> = {
            let mut m = lock(&self.model);
            people
                .iter()
                .filter_map(|p| p.user.as_ref().map(|u| u.as_str().to_owned()))
                .filter(|h| {
                    // Ask again now and then: people change their pictures.
                    let fresh = m
                        .avatars
                        .get(h)
                        .is_some_and(|(_, at)| at.elapsed() < AVATAR_FRESH);
                    if fresh {
                        return false;
                    }
                    let known = m.avatars.get(h).and_then(|(src, _)| src.clone());
                    m.avatars
                        .insert(h.clone(), (known, std::time::Instant::now()));
                    true
                })
                .collect()
        };
        if wanted.is_empty() {
            return;
        }
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let mut found = Vec::new();
            for handle in wanted {
                match inner.web.profile(&handle).await {
                    Ok(p) => {
                        if let Some(src) =
                            p.avatar.as_deref().and_then(confab_proto::ipc::avatar_src)
                        {
                            lock(&inner.model).avatars.insert(
                                handle.clone(),
                                (Some(src.clone()), std::time::Instant::now()),
                            );
                            found.push(UserAvatar { handle, src });
                        }
                    }
                    // Asked again when they next show up.
                    Err(e) => {
                        tracing::debug!(error = %e, handle, "fetching a profile");
                        lock(&inner.model).avatars.remove(&handle);
                    }
                }
            }
            if !found.is_empty() {
                inner.emit(AppEvent::Avatars { avatars: found }).await;
            }
        });
    }

    /// A stage message: update the space, then do what it asks of us.
    async fn on_stage(self: &Arc<Self>, msg: confab_proto::ServerMsg) {
        if let confab_proto::ServerMsg::ParticipantUpdated { participant } = &msg {
            self.want_avatars(std::slice::from_ref(participant));
        }
        let (effect, current) = {
            let mut m = lock(&self.model);
            let blocked = m.blocked.clone();
            let Some(cur) = m.current.as_mut() else {
                return;
            };
            let own_mute = match &msg {
                confab_proto::ServerMsg::ParticipantUpdated { participant }
                    if participant.id == cur.you =>
                {
                    self.own_mute_echo(participant.muted)
                }
                _ => None,
            };
            let mut effect = stage::apply(cur, msg, &blocked);
            if let Some(keep) = own_mute {
                // An echo of one of our older requests: keep showing the newest.
                cur.muted = keep;
                let you = cur.you;
                if let Some(p) = cur.space.participants.iter_mut().find(|p| p.id == you) {
                    p.muted = keep;
                }
                if let Effect::Me { muted, .. } = &mut effect {
                    *muted = keep;
                }
            }
            if matches!(effect, Effect::Removed { .. }) {
                m.current = None;
            }
            (effect, m.current.clone())
        };
        match effect {
            Effect::Unhandled => return,
            Effect::None => {}
            Effect::Me { speaks, muted } => {
                self.muted.store(muted, Ordering::Relaxed);
                if speaks && !muted {
                    // Invited up unmuted: push-to-talk keeps us quiet until the key.
                    let inner = Arc::clone(self);
                    tokio::spawn(async move { inner.hold_push_to_talk().await });
                }
                let on_mic = lock(&self.audio).mic.is_some();
                if speaks && !on_mic {
                    let inner = Arc::clone(self);
                    tokio::spawn(async move { inner.start_mic().await });
                } else if !speaks && on_mic {
                    self.set_mic(None);
                    self.release_capture_if_idle().await;
                }
            }
            Effect::Reaction { participant, emoji } => {
                self.emit(AppEvent::Reaction { participant, emoji }).await;
                return;
            }
            Effect::Removed { blocked } => {
                self.emit(AppEvent::Removed { blocked }).await;
                self.emit(AppEvent::Current { current: None }).await;
                self.stop_space_audio().await;
                let client = lock(&self.client).clone();
                if let Some(client) = client {
                    let _ = client.drop_media().await;
                }
                return;
            }
        }
        self.emit(AppEvent::Current { current }).await;
    }

    /// Puts us on the mic: the connection's microphone track and the device.
    /// Our microphone track becomes (or stops being) where the audio worker sends.
    fn set_mic(&self, mic: Option<Mic>) {
        if let Some(engine) = &self.engine {
            engine.set_sink(mic.clone().map(|m| -> SendSink {
                Box::new(move |frame| {
                    if let Err(e) = m.try_send_encoded(frame) {
                        tracing::debug!(error = %e, "microphone frame not sent");
                    }
                })
            }));
        }
        lock(&self.audio).mic = mic;
    }

    async fn start_mic(self: &Arc<Self>) {
        let client = lock(&self.client).clone();
        if let Some(client) = client {
            match client.mic().await {
                Ok(mic) => self.set_mic(Some(mic)),
                Err(e) => tracing::warn!(error = %e, "no microphone track"),
            }
        }
        if self.opts.audio
            && let Err(e) = self.ensure_capture().await
        {
            tracing::warn!(error = %e, "opening the microphone");
        }
    }

    /// Opens the speaker (and the microphone for a speaker) for the current space; the audio
    /// worker plays into it.
    async fn start_space_audio(self: &Arc<Self>, speaks: bool) {
        if speaks {
            self.start_mic().await;
        }
        let Some(engine) = self.engine.clone() else {
            return;
        };
        let output = lock(&self.store).output_device().ok().flatten();
        match tokio::task::spawn_blocking(move || Playback::start(output.as_deref())).await {
            Ok(Ok((pb, ring))) => {
                engine.set_playback(Some(ring));
                if let Some(old) = lock(&self.audio).playback.replace(pb) {
                    tokio::task::spawn_blocking(move || drop(old));
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "opening the speaker"),
            Err(e) => tracing::warn!(error = %e, "opening the speaker"),
        }
    }

    async fn stop_space_audio(&self) {
        self.set_mic(None);
        if let Some(engine) = &self.engine {
            engine.set_playback(None);
        }
        let playback = lock(&self.audio).playback.take();
        if let Some(pb) = playback {
            let _ = tokio::task::spawn_blocking(move || drop(pb)).await;
        }
        self.release_capture_if_idle().await;
    }

    /// Opens the microphone into the audio worker (which frames it, meters it and, while we
    /// are on the stage, processes, encodes and sends it).
    async fn ensure_capture(&self) -> Result<(), IpcError> {
        let Some(engine) = self.engine.clone() else {
            return Err(err(IpcErrorCode::Device, "audio is off in this instance"));
        };
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
        engine.set_capture(Some(ring));
        audio.capture = Some(capture);
        Ok(())
    }

    /// Closes the microphone unless the current space or the level meter still needs it.
    async fn release_capture_if_idle(&self) {
        let capture = {
            let mut audio = lock(&self.audio);
            let needed = self.meter.load(Ordering::Relaxed) || audio.mic.is_some();
            if needed {
                return;
            }
            audio.capture.take()
        };
        if let Some(c) = capture {
            if let Some(engine) = &self.engine {
                engine.set_capture(None);
            }
            let _ = tokio::task::spawn_blocking(move || drop(c)).await;
        }
    }

    /// Our own speaking level for our ring: 0 while muted or not speaking.
    fn my_level(&self) -> f32 {
        match &self.engine {
            Some(e) if !self.muted.load(Ordering::Relaxed) => e.my_level(),
            _ => 0.0,
        }
    }
}

/// How often the devices in use are checked for being unplugged.
const DEVICE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Watches the microphone and speaker we opened by name: when one disappears (unplugged),
/// reopens that side on the system default, so the call goes on, and tells the UI. (PulseAudio
/// moves an orphaned stream somewhere by itself, silently; we make it the default, on purpose,
/// and say so.)
async fn device_watch(inner: Arc<Inner>) {
    let Some(engine) = inner.engine.clone() else {
        return;
    };
    let mut stop = inner.shutdown.subscribe();
    let mut ticker = tokio::time::interval(DEVICE_CHECK_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let (input, output) = {
            let store = lock(&inner.store);
            (
                store.input_device().ok().flatten(),
                store.output_device().ok().flatten(),
            )
        };
        if input.is_none() && output.is_none() {
            continue; // the system default is followed by the sound server itself
        }
        let lost = {
            let inner = Arc::clone(&inner);
            tokio::task::spawn_blocking(move || {
                let backend = CpalBackend::new();
                let audio = lock(&inner.audio);
                let named = |d: &str, want: &Option<String>| want.as_deref() == Some(d);
                let capture = audio
                    .capture
                    .as_ref()
                    .filter(|c| named(c.device_name(), &input));
                let playback = audio
                    .playback
                    .as_ref()
                    .filter(|p| named(p.device_name(), &output));
                (
                    capture
                        .and_then(|c| backend.capture_lost(c).ok())
                        .unwrap_or(false),
                    playback
                        .and_then(|p| backend.playback_lost(p).ok())
                        .unwrap_or(false),
                )
            })
            .await
            .unwrap_or((false, false))
        };
        if lost.0 {
            match tokio::task::spawn_blocking(|| Capture::start(None)).await {
                Ok(Ok((capture, ring))) => {
                    engine.set_capture(Some(ring));
                    let old = lock(&inner.audio).capture.replace(capture);
                    if let Some(old) = old {
                        let device = old.device_name().to_owned();
                        tokio::task::spawn_blocking(move || drop(old));
                        inner
                            .emit(AppEvent::DeviceFallback {
                                input: true,
                                device,
                            })
                            .await;
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reopening the default microphone"),
                Err(e) => tracing::warn!(error = %e, "reopening the default microphone"),
            }
        }
        if lost.1 {
            match tokio::task::spawn_blocking(|| Playback::start(None)).await {
                Ok(Ok((playback, ring))) => {
                    engine.set_playback(Some(ring));
                    let old = lock(&inner.audio).playback.replace(playback);
                    if let Some(old) = old {
                        let device = old.device_name().to_owned();
                        tokio::task::spawn_blocking(move || drop(old));
                        inner
                            .emit(AppEvent::DeviceFallback {
                                input: false,
                                device,
                            })
                            .await;
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reopening the default speaker"),
                Err(e) => tracing::warn!(error = %e, "reopening the default speaker"),
            }
        }
    }
}

/// Sends the microphone's raw level about 20 times a second while the level meter is on.
async fn input_meter(inner: Arc<Inner>) {
    let Some(engine) = inner.engine.clone() else {
        return;
    };
    let mut stop = inner.shutdown.subscribe();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let (rms, peak, seq) = engine.input_level();
        if seq != last && inner.meter.load(Ordering::Relaxed) {
            let _ = inner.events.try_send(AppEvent::InputLevel { rms, peak });
        }
        last = seq;
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
        inner.sign_in().await;
        let (name, token) = {
            let m = lock(&inner.model);
            (
                m.display_name.clone(),
                m.account.as_ref().map(|(_, t)| t.clone()),
            )
        };
        let mut config = ClientConfig::new(inner.opts.server_url.clone(), name);
        if let Some(token) = token {
            config = config.with_token(token);
        }
        if let Some(engine) = &inner.engine {
            config = config.with_engine(Arc::clone(engine));
        }
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

/// Reads the server's schedule and our reminders once a minute (and at once).
async fn refresh_schedules(inner: Arc<Inner>) {
    let mut stop = inner.shutdown.subscribe();
    let mut ticker = tokio::time::interval(Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = ticker.tick() => inner.refresh_schedules().await,
            _ = stop.changed() => return,
        }
    }
}

/// How often the speaking rings get levels: about 20 Hz, as the design asks of meters.
const LEVEL_EVERY: Duration = Duration::from_millis(50);

/// Per-slot loudness over the last [`LEVEL_EVERY`].
#[derive(Default)]
struct SlotLevels {
    sum_sq: HashMap<usize, (f64, usize)>,
    /// Whether the last report had anyone audible (so one all-quiet report follows).
    audible: bool,
}

impl SlotLevels {
    /// A slot's level measured elsewhere (the audio worker's), as if from `n` samples.
    fn set(&mut self, slot: usize, rms: f32) {
        let n = 1;
        self.sum_sq
            .insert(slot, (f64::from(rms) * f64::from(rms), n));
    }

    fn add(&mut self, slot: usize, samples: &[f32]) {
        let e = self.sum_sq.entry(slot).or_default();
        e.0 += samples
            .iter()
            .map(|&s| f64::from(s) * f64::from(s))
            .sum::<f64>();
        e.1 += samples.len();
    }

    /// The levels to report now, or `None` when all is as quiet as last time.
    fn take(
        &mut self,
        slots: &HashMap<usize, ParticipantId>,
        me: Option<(ParticipantId, f32)>,
    ) -> Option<Vec<SpeakerLevel>> {
        let mut levels: Vec<SpeakerLevel> = self
            .sum_sq
            .drain()
            .filter_map(|(slot, (sum, n))| {
                let participant = *slots.get(&slot)?;
                let rms = if n == 0 {
                    0.0
                } else {
                    (sum / n as f64).sqrt() as f32
                };
                Some(SpeakerLevel { participant, rms })
            })
            .collect();
        if let Some((participant, rms)) = me {
            levels.push(SpeakerLevel { participant, rms });
        }
        let audible = levels.iter().any(|l| l.rms >= 0.01);
        if !audible && !self.audible {
            return None;
        }
        self.audible = audible;
        levels.sort_by_key(|l| l.participant);
        Some(levels)
    }
}

/// Moves one connection's events until it closes; returns why. Every [`LEVEL_EVERY`] it
/// gives the audio worker our volume for each receive slot (0 for accounts we blocked: their
/// audio never reaches the speaker) and sends the speaking rings their levels.
async fn pump(inner: &Arc<Inner>, mut streams: Streams) -> String {
    let mut levels = SlotLevels::default();
    let mut ticker = tokio::time::interval(LEVEL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            ev = streams.events.recv() => match ev {
                None => return "connection closed".to_owned(),
                Some(Event::Disconnected { reason }) => return reason,
                Some(ev) => {
                    let slots_changed = matches!(ev, Event::Slot { .. });
                    inner.on_event(ev).await;
                    if slots_changed {
                        inner.apply_gains();
                    }
                }
            },
            // Without an audio worker (no devices) the client decodes each slot itself:
            // the frames only feed the speaking rings.
            Some(frame) = streams.audio.recv() => {
                if inner.slot_gain(frame.slot).is_some() {
                    levels.add(frame.slot, &frame.samples);
                }
            }
            _ = ticker.tick() => {
                inner.apply_gains();
                let (slots, me) = {
                    let m = lock(&inner.model);
                    let me = m.current.as_ref().filter(|c| c.role.speaks()).map(|c| (c.you, inner.my_level()));
                    (m.slots.clone(), me)
                };
                if let Some(engine) = &inner.engine {
                    for (slot, level) in engine.slot_levels().iter().enumerate() {
                        if inner.slot_gain(slot).is_some() {
                            levels.set(slot, *level);
                        }
                    }
                }
                if let Some(levels) = levels.take(&slots, me) {
                    let _ = inner.events.try_send(AppEvent::Levels { levels });
                }
            }
        }
    }
}

/// [`Inner::own_mute_echo`] over the outstanding requests.
fn mute_echo(requests: &mut std::collections::VecDeque<bool>, muted: bool) -> Option<bool> {
    match requests.front() {
        Some(&oldest) if oldest == muted => {
            requests.pop_front();
            requests.back().copied()
        }
        Some(_) => {
            requests.clear();
            None
        }
        None => None,
    }
}

#[cfg(test)]
mod mute_echo_tests {
    use super::mute_echo;
    use std::collections::VecDeque;

    /// Muted on going on stage, then the key pressed before that echo came back: the late echo
    /// leaves us unmuted, the unmute's own echo is taken as it is.
    #[test]
    fn a_late_echo_does_not_undo_a_newer_request() {
        let mut sent = VecDeque::from([true, false]);
        assert_eq!(
            mute_echo(&mut sent, true),
            Some(false),
            "keep showing unmuted"
        );
        assert_eq!(mute_echo(&mut sent, false), None, "the server agrees now");
        assert!(sent.is_empty());
    }

    /// The host mutes us while our unmute is on its way: that is not an echo, and it wins.
    #[test]
    fn a_change_that_is_not_ours_wins_and_clears_what_was_outstanding() {
        let mut sent = VecDeque::from([false]);
        assert_eq!(mute_echo(&mut sent, true), None);
        assert!(sent.is_empty());
        // Nothing outstanding: every update is taken as it is.
        assert_eq!(mute_echo(&mut sent, false), None);
    }
}
