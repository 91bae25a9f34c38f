//! The real-time audio worker: tier 2 of the audio path (`shared/DESIGN.md`).
//!
//! One thread, `confab-audio`, owns everything between the device rings and the network:
//!
//! - **Capture**: the microphone ring (filled by cpal's callback) is cut into 20 ms frames;
//!   while a send sink is attached, each frame goes through the [`VoiceProcessor`] (high-pass,
//!   echo cancellation against what the speaker plays, noise suppression, gain control), is
//!   silenced while muted, Opus-encoded, and handed to the sink (which does a bounded
//!   `try_send` into tokio; the worker never waits on the network).
//! - **Playout**, pulled by the device clock: whenever the speaker ring holds less than
//!   [`PLAYOUT_LOW_WATER`], the worker pulls one frame from every receive slot's
//!   [`JitterBuffer`], applies the listener's gain per slot, sums and limits the mix (it cannot
//!   clip) and writes it to the ring in 10 ms blocks. The ring so stays between 20 and 30 ms
//!   deep: the device's own consumption, not a timer, decides when audio is made, so no delay
//!   builds up between the network and the speaker. Without a speaker (it failed to open, or a
//!   headless client) a 20 ms wall-clock tick stands in for the device, so levels and
//!   statistics still work.
//! - **Idle**: with no device, no sink and no packet for [`PARK_AFTER`], the worker parks
//!   instead of waking every [`WAKE_EVERY`]; a command or a packet unparks it at once.
//! - Packets come in through a lock-free ring written by tokio ([`AudioEngine::push_packet`]),
//!   stamped with their arrival time on the engine's clock.
//!
//! What the UI reads (per-slot loudness for the speaking rings, the microphone's level and
//! voice activity, jitter-buffer statistics) is published in atomics, and statistics once a
//! second behind a `try_lock` that the worker never waits on.
//!
//! Allocation: the worker allocates nothing per frame on its own; the voice processor's echo
//! canceller does (measured in `tests/no_alloc`), and so may the sink the caller attaches.
//! Commands (attach a device ring, a sink) move already-built values in through a ring.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::codec::{Encoded, Encoder, EncoderConfig};
use crate::jitter::{JitterBuffer, JitterStats};
use crate::level::FrameLevel;
use crate::mixer::{MAX_GAIN, limit};
use crate::voice::{VoiceConfig, VoiceProcessor};
use crate::{AudioError, FRAME_SAMPLES, MAX_PACKET_BYTES, SAMPLE_RATE};

/// Receive slots the engine plays (slot numbers at or above are dropped).
pub const ENGINE_SLOTS: usize = 8;

/// The speaker ring is topped up whenever it holds less than this (20 ms): enough that the
/// device never runs dry between two wake-ups of the worker, and no more.
pub const PLAYOUT_LOW_WATER: usize = SAMPLE_RATE as usize / 50;

/// How far ahead of the wall clock (since the speaker opened) the mix may run: 40 ms.
pub const PLAYOUT_AHEAD: usize = 2 * FRAME_SAMPLES;

/// The speaker ring is never filled past this (200 ms), whatever the wall clock says.
pub const PLAYOUT_HIGH_WATER: usize = SAMPLE_RATE as usize / 5;

/// How often the worker wakes to look at its rings.
pub const WAKE_EVERY: Duration = Duration::from_millis(4);

/// With no device, no sink and no packet for [`PARK_AFTER`], the worker parks for this long
/// at a time instead (a command or a packet unparks it at once): an app that is not in a space
/// costs nothing.
pub const PARK_FOR: Duration = Duration::from_millis(500);

/// How long after the last received packet the worker may park.
pub const PARK_AFTER: Duration = Duration::from_secs(3);

/// What the worker writes to the speaker ring at a time (10 ms).
const BLOCK: usize = FRAME_SAMPLES / 2;

/// The time constant (µs) over which the device's largest take from the speaker ring is
/// forgotten: each look takes off the share of it that the time since the last look is of this.
const BURST_DECAY_US: usize = 4_000_000;

/// Packets in flight from tokio to the worker. At 50 packets/s per slot, a quarter second of
/// every slot at once.
const PACKET_RING: usize = 128;

/// Commands in flight to the worker.
const COMMAND_RING: usize = 16;

/// Loudness for the speaking rings is measured over this many frames (40 ms).
const LEVEL_FRAMES: u32 = 2;

/// Mixed frames between two publications of the statistics (1 s).
const STATS_EVERY: u64 = 50;

/// The most frames a device-less playout catches up at once after a stall.
const MAX_CATCH_UP: u64 = 3;

/// One encoded microphone frame, as the engine hands it to the send sink. Every 20 ms frame
/// produces exactly one, so the sink can stamp RTP timestamps by counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// An Opus packet to send, and the level of the frame it encodes (after voice processing
    /// and muting; the voice bit is the voice processor's activity).
    Packet(&'a [u8], FrameLevel),
    /// The encoder is in DTX: nothing to send for this frame.
    Dtx,
}

/// Where the encoded microphone goes. Called on the worker thread: it must not block.
pub type SendSink = Box<dyn FnMut(Outgoing<'_>) + Send>;

/// A packet on its way from the network to the worker: fixed size, so the ring never
/// allocates.
struct InPacket {
    slot: u8,
    seq: u16,
    timestamp: u32,
    arrival_us: u64,
    len: u16,
    payload: [u8; MAX_PACKET_BYTES],
}

enum Command {
    Capture(Option<Consumer<f32>>),
    Playback(Option<Producer<f32>>),
    Sink(Option<SendSink>),
    Voice(VoiceConfig),
}

/// What the engine has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// 20 ms frames mixed for the speaker (or the stand-in tick).
    pub frames_mixed: u64,
    /// Mixed frames in which the limiter bent the signal.
    pub frames_limited: u64,
    /// Microphone frames captured while a sink was attached.
    pub frames_sent: u64,
    /// Packets dropped because the worker's inbound ring was full.
    pub packets_dropped: u64,
    /// Speaker-ring depth (samples) when the last block went in: the playout delay after the
    /// mix.
    pub playout_queued: u32,
}

/// State shared between the worker and its handle.
struct Shared {
    running: AtomicBool,
    muted: Arc<AtomicBool>,
    gains: [AtomicU32; ENGINE_SLOTS],
    slot_levels: [AtomicU32; ENGINE_SLOTS],
    input_rms: AtomicU32,
    input_peak: AtomicU32,
    /// Counts published input levels, so a reader can tell a fresh one.
    input_seq: AtomicU64,
    speech_level: AtomicU32,
    speaking: AtomicBool,
    frames_mixed: AtomicU64,
    frames_limited: AtomicU64,
    frames_sent: AtomicU64,
    packets_dropped: AtomicU64,
    playout_queued: AtomicU32,
    jitter: Mutex<[Option<JitterStats>; ENGINE_SLOTS]>,
    epoch: Instant,
}

fn f32_atomic(x: f32) -> AtomicU32 {
    AtomicU32::new(x.to_bits())
}

fn load_f32(a: &AtomicU32) -> f32 {
    f32::from_bits(a.load(Ordering::Relaxed))
}

fn store_f32(a: &AtomicU32, x: f32) {
    a.store(x.to_bits(), Ordering::Relaxed);
}

/// The handle on the audio worker. Dropping it stops the thread.
pub struct AudioEngine {
    shared: Arc<Shared>,
    commands: Mutex<Producer<Command>>,
    packets: Mutex<Producer<InPacket>>,
    thread: Option<JoinHandle<()>>,
    /// The worker, to unpark it when it idles.
    worker: std::thread::Thread,
}

impl std::fmt::Debug for AudioEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioEngine")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves its data consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AudioEngine {
    /// Starts the worker with this voice processing, no devices and no sink.
    pub fn start(voice: VoiceConfig) -> Result<AudioEngine, AudioError> {
        let shared = Arc::new(Shared {
            running: AtomicBool::new(true),
            muted: Arc::default(),
            gains: std::array::from_fn(|_| f32_atomic(1.0)),
            slot_levels: std::array::from_fn(|_| f32_atomic(0.0)),
            input_rms: f32_atomic(0.0),
            input_peak: f32_atomic(0.0),
            input_seq: AtomicU64::new(0),
            speech_level: f32_atomic(0.0),
            speaking: AtomicBool::new(false),
            frames_mixed: AtomicU64::new(0),
            frames_limited: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            packets_dropped: AtomicU64::new(0),
            playout_queued: AtomicU32::new(0),
            jitter: Mutex::new([None; ENGINE_SLOTS]),
            epoch: Instant::now(),
        });
        let (commands, command_rx) = RingBuffer::new(COMMAND_RING);
        let (packets, packet_rx) = RingBuffer::new(PACKET_RING);
        let mut worker = Worker::new(Arc::clone(&shared), command_rx, packet_rx, voice)?;
        let thread = std::thread::Builder::new()
            .name("confab-audio".into())
            .spawn(move || worker.run())
            .map_err(|e| AudioError::Worker(e.to_string()))?;
        Ok(AudioEngine {
            shared,
            commands: Mutex::new(commands),
            packets: Mutex::new(packets),
            worker: thread.thread().clone(),
            thread: Some(thread),
        })
    }

    fn command(&self, cmd: Command) {
        let mut tx = lock(&self.commands);
        let mut cmd = cmd;
        // The worker drains the ring every few milliseconds; a full ring (16 commands in one
        // wake-up) only makes us wait that long.
        for _ in 0..500 {
            match tx.push(cmd) {
                Ok(()) => {
                    self.worker.unpark();
                    return;
                }
                Err(rtrb::PushError::Full(c)) => {
                    cmd = c;
                    if !self.shared.running.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        tracing::warn!("the audio worker does not take commands");
    }

    /// Attaches the microphone ring (48 kHz mono, from `Capture::start`), or detaches it.
    pub fn set_capture(&self, ring: Option<Consumer<f32>>) {
        self.command(Command::Capture(ring));
    }

    /// Attaches the speaker ring (48 kHz mono, from `Playback::start`), or detaches it (the
    /// stand-in tick takes over).
    pub fn set_playback(&self, ring: Option<Producer<f32>>) {
        self.command(Command::Playback(ring));
    }

    /// Attaches where encoded microphone frames go (we are on the stage), or detaches it.
    pub fn set_sink(&self, sink: Option<SendSink>) {
        self.command(Command::Sink(sink));
    }

    /// Switches the stages of voice processing.
    pub fn set_voice(&self, config: VoiceConfig) {
        self.command(Command::Voice(config));
    }

    /// Silences what is sent (the stream's timing holds: frames of silence go out).
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// The flag [`set_muted`](Self::set_muted) sets, for a caller that mutes from many places
    /// (a push-to-talk key, the server's mute) and wants each to act at once.
    pub fn mute_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared.muted)
    }

    /// Our volume for receive slot `slot` (0 mutes it for us; clamped to `0..=MAX_GAIN`).
    pub fn set_gain(&self, slot: usize, gain: f32) {
        if let Some(g) = self.shared.gains.get(slot) {
            let gain = if gain.is_finite() {
                gain.clamp(0.0, MAX_GAIN)
            } else {
                0.0
            };
            store_f32(g, gain);
        }
    }

    /// The engine's clock: microseconds since it started. Packet arrival times are on it.
    pub fn now_us(&self) -> u64 {
        micros_since(self.shared.epoch, Instant::now())
    }

    /// Hands a received RTP packet of receive slot `slot` to the worker, stamped with its
    /// arrival `at`. Never waits: when the worker is behind, the packet is dropped and counted.
    pub fn push_packet(&self, slot: usize, seq: u16, timestamp: u32, payload: &[u8], at: Instant) {
        let (Ok(slot), Ok(len)) = (u8::try_from(slot), u16::try_from(payload.len())) else {
            return;
        };
        if usize::from(slot) >= ENGINE_SLOTS || payload.len() > MAX_PACKET_BYTES {
            self.shared.packets_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut packet = InPacket {
            slot,
            seq,
            timestamp,
            arrival_us: micros_since(self.shared.epoch, at),
            len,
            payload: [0; MAX_PACKET_BYTES],
        };
        packet.payload[..payload.len()].copy_from_slice(payload);
        if lock(&self.packets).push(packet).is_err() {
            self.shared.packets_dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.worker.unpark();
    }

    /// Each receive slot's loudness (RMS of what it played over the last 40 ms, before our
    /// gain), for the speaking rings.
    pub fn slot_levels(&self) -> [f32; ENGINE_SLOTS] {
        std::array::from_fn(|i| load_f32(&self.shared.slot_levels[i]))
    }

    /// The microphone's raw level over the last 50 ms: `(rms, peak, sequence)`; the sequence
    /// grows with each new measurement.
    pub fn input_level(&self) -> (f32, f32, u64) {
        (
            load_f32(&self.shared.input_rms),
            load_f32(&self.shared.input_peak),
            self.shared.input_seq.load(Ordering::Relaxed),
        )
    }

    /// Our own speaking level: the processed microphone's RMS while voice activity says
    /// speech, 0 otherwise (and while nothing is sent).
    pub fn my_level(&self) -> f32 {
        if self.shared.speaking.load(Ordering::Relaxed) {
            load_f32(&self.shared.speech_level)
        } else {
            0.0
        }
    }

    /// Each receive slot's jitter-buffer statistics, for slots that have carried audio;
    /// refreshed once a second.
    pub fn jitter_stats(&self) -> Vec<(usize, JitterStats)> {
        lock(&self.shared.jitter)
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.map(|s| (i, s)))
            .collect()
    }

    pub fn stats(&self) -> EngineStats {
        let s = &self.shared;
        EngineStats {
            frames_mixed: s.frames_mixed.load(Ordering::Relaxed),
            frames_limited: s.frames_limited.load(Ordering::Relaxed),
            frames_sent: s.frames_sent.load(Ordering::Relaxed),
            packets_dropped: s.packets_dropped.load(Ordering::Relaxed),
            playout_queued: s.playout_queued.load(Ordering::Relaxed),
        }
    }
}

impl Drop for AudioEngine {
    fn drop(&mut self) {
        self.shared.running.store(false, Ordering::Relaxed);
        self.worker.unpark();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn micros_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_micros()).unwrap_or(u64::MAX)
}

/// The worker thread's state: everything it touches per frame is allocated here, up front.
struct Worker {
    shared: Arc<Shared>,
    commands: Consumer<Command>,
    packets: Consumer<InPacket>,
    capture: Option<Consumer<f32>>,
    playback: Option<Producer<f32>>,
    sink: Option<SendSink>,
    voice: VoiceProcessor,
    encoder: Encoder,
    jitter: Vec<JitterBuffer>,
    /// Which slots have ever played, for the statistics.
    heard: [bool; ENGINE_SLOTS],
    level_sum: [f64; ENGINE_SLOTS],
    level_frames: u32,
    mic: Vec<f32>,
    processed: Vec<f32>,
    encoded: Vec<u8>,
    input_sum: f64,
    input_peak: f32,
    input_count: usize,
    slot_frame: Vec<f32>,
    mix: Vec<f32>,
    /// Samples of `mix` already written to the speaker ring.
    mix_used: usize,
    /// Frames mixed by the stand-in tick (no speaker), counted from `virtual_start`.
    virtual_played: u64,
    virtual_start: u64,
    /// When the speaker ring was attached, and the samples written to it since.
    playback_since_us: u64,
    produced: u64,
    /// Whether the speaker has taken audio from its ring yet, and how much the ring held
    /// when it was attached (the device's pre-fill).
    device_started: bool,
    queued_at_attach: usize,
    written_before_start: usize,
    /// What the speaker ring held after the last top-up, when the worker last looked.
    queued_after_top_up: usize,
    /// The most the device took from the ring between two looks (samples), decaying: how deep
    /// the ring must be for its next take. See [`Worker::playout`].
    device_burst: usize,
    /// When the worker last looked at the speaker ring (engine clock).
    last_playout_us: u64,
    /// When the last packet arrived (engine clock), and whether the worker parked last time.
    last_packet_us: u64,
    idle: bool,
}

impl Worker {
    fn new(
        shared: Arc<Shared>,
        commands: Consumer<Command>,
        packets: Consumer<InPacket>,
        voice: VoiceConfig,
    ) -> Result<Worker, AudioError> {
        let jitter = (0..ENGINE_SLOTS)
            .map(|_| JitterBuffer::new())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Worker {
            shared,
            commands,
            packets,
            capture: None,
            playback: None,
            sink: None,
            voice: VoiceProcessor::new(voice),
            encoder: Encoder::new(&EncoderConfig::default())?,
            jitter,
            heard: [false; ENGINE_SLOTS],
            level_sum: [0.0; ENGINE_SLOTS],
            level_frames: 0,
            mic: vec![0.0; FRAME_SAMPLES],
            processed: vec![0.0; FRAME_SAMPLES],
            encoded: vec![0; MAX_PACKET_BYTES],
            input_sum: 0.0,
            input_peak: 0.0,
            input_count: 0,
            slot_frame: vec![0.0; FRAME_SAMPLES],
            mix: vec![0.0; FRAME_SAMPLES],
            mix_used: FRAME_SAMPLES,
            virtual_played: 0,
            virtual_start: 0,
            playback_since_us: 0,
            produced: 0,
            device_started: false,
            queued_at_attach: 0,
            written_before_start: 0,
            queued_after_top_up: 0,
            device_burst: BLOCK,
            last_playout_us: 0,
            last_packet_us: 0,
            idle: false,
        })
    }

    fn now_us(&self) -> u64 {
        micros_since(self.shared.epoch, Instant::now())
    }

    fn run(&mut self) {
        while self.shared.running.load(Ordering::Relaxed) {
            self.turn();
            if self.is_idle() {
                self.idle = true;
                std::thread::park_timeout(PARK_FOR);
            } else {
                std::thread::sleep(WAKE_EVERY);
            }
        }
    }

    /// Nothing to capture, play or send, and nothing received for a while.
    fn is_idle(&self) -> bool {
        self.capture.is_none()
            && self.playback.is_none()
            && self.sink.is_none()
            && self.now_us().saturating_sub(self.last_packet_us) >= PARK_AFTER.as_micros() as u64
    }

    /// One wake-up: commands, packets, microphone, speaker.
    fn turn(&mut self) {
        while let Ok(cmd) = self.commands.pop() {
            self.apply(cmd);
        }
        if self.idle {
            // Back from parking: the stand-in tick starts afresh rather than catching up.
            self.idle = false;
            self.virtual_start = self.now_us();
            self.virtual_played = 0;
        }
        while let Ok(p) = self.packets.pop() {
            self.last_packet_us = p.arrival_us;
            if let Some(jb) = self.jitter.get_mut(usize::from(p.slot)) {
                let len = usize::from(p.len).min(MAX_PACKET_BYTES);
                jb.push(p.seq, p.timestamp, &p.payload[..len], p.arrival_us);
            }
        }
        self.capture();
        self.playout();
    }

    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Capture(ring) => {
                self.capture = ring;
                self.input_count = 0;
                self.input_sum = 0.0;
                self.input_peak = 0.0;
            }
            Command::Playback(ring) => {
                self.playback_since_us = self.now_us();
                self.produced = 0;
                self.device_started = false;
                self.written_before_start = 0;
                self.queued_at_attach = ring
                    .as_ref()
                    .map_or(0, |r| r.buffer().capacity() - r.slots());
                self.queued_after_top_up = self.queued_at_attach;
                self.device_burst = BLOCK;
                self.last_playout_us = self.playback_since_us;
                if ring.is_none() {
                    // The space is over: its slots' figures are no one's any more.
                    self.heard = [false; ENGINE_SLOTS];
                    if let Ok(mut stats) = self.shared.jitter.try_lock() {
                        *stats = [None; ENGINE_SLOTS];
                    }
                }
                self.playback = ring;
                self.virtual_start = self.now_us();
                self.virtual_played = 0;
            }
            Command::Sink(sink) => {
                if sink.is_none() {
                    self.shared.speaking.store(false, Ordering::Relaxed);
                }
                self.sink = sink;
            }
            Command::Voice(config) => self.voice.set_config(config),
        }
    }

    /// Takes every whole 20 ms frame the microphone has delivered.
    fn capture(&mut self) {
        loop {
            let Some(ring) = self.capture.as_mut() else {
                return;
            };
            let Ok(chunk) = ring.read_chunk(FRAME_SAMPLES) else {
                return;
            };
            let (a, b) = chunk.as_slices();
            self.mic[..a.len()].copy_from_slice(a);
            self.mic[a.len()..].copy_from_slice(b);
            chunk.commit_all();
            self.meter_input();
            if self.sink.is_some() {
                self.send_frame();
            }
        }
    }

    /// The raw input level, published every 50 ms.
    fn meter_input(&mut self) {
        const EVERY: usize = SAMPLE_RATE as usize / 20;
        for &s in &self.mic {
            self.input_sum += f64::from(s) * f64::from(s);
            self.input_peak = self.input_peak.max(s.abs());
        }
        self.input_count += FRAME_SAMPLES;
        if self.input_count >= EVERY {
            let rms = (self.input_sum / self.input_count as f64).sqrt() as f32;
            store_f32(&self.shared.input_rms, rms);
            store_f32(&self.shared.input_peak, self.input_peak);
            self.shared.input_seq.fetch_add(1, Ordering::Relaxed);
            (self.input_sum, self.input_peak, self.input_count) = (0.0, 0.0, 0);
        }
    }

    fn send_frame(&mut self) {
        if self.voice.process(&self.mic, &mut self.processed).is_err() {
            // Only a wrong frame size fails, and ours is fixed; send the raw frame if it did.
            self.processed.copy_from_slice(&self.mic);
        }
        let speaking = self.voice.is_speech();
        store_f32(&self.shared.speech_level, rms(&self.processed));
        self.shared.speaking.store(speaking, Ordering::Relaxed);
        if self.shared.muted.load(Ordering::Relaxed) {
            self.processed.fill(0.0);
        }
        let out = match self.encoder.encode(&self.processed, &mut self.encoded) {
            Ok(Encoded::Packet(len)) => Outgoing::Packet(
                &self.encoded[..len],
                FrameLevel::measure(&self.processed, speaking),
            ),
            // A frame that fails to encode is sent as a pause: the timing holds.
            Ok(Encoded::Dtx) | Err(_) => Outgoing::Dtx,
        };
        if let Some(sink) = self.sink.as_mut() {
            sink(out);
        }
        self.shared.frames_sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Tops the speaker ring up to the low-water mark (or, with no speaker, mixes the frames
    /// a 20 ms clock says are due).
    fn playout(&mut self) {
        if let Some(ring) = self.playback.as_ref()
            && !self.device_started
        {
            // The wall clock starts when the device first takes audio: a stream that takes a
            // while to start must not find the ring filled for the time it was not playing
            // (the ring would then stay that deep, and late, for as long as it plays).
            let queued = ring.buffer().capacity() - ring.slots();
            if queued < self.queued_at_attach + self.written_before_start {
                self.device_started = true;
                self.playback_since_us = self.now_us();
                self.produced = 0;
            }
        }
        if let Some(ring) = self.playback.as_ref() {
            let now = self.now_us();
            let elapsed = now.saturating_sub(self.playback_since_us);
            let due = elapsed * u64::from(SAMPLE_RATE) / 1_000_000;
            // How much the device took since the last look: the largest such take (fading
            // over a few seconds) is how deep the ring must be when the next one
            // comes. A device fed in small blocks takes a block; a sound server with a deep
            // buffer takes large, rare bursts.
            let queued = ring.buffer().capacity() - ring.slots();
            let taken = self.queued_after_top_up.saturating_sub(queued);
            self.queued_after_top_up = queued;
            let since = usize::try_from(now.saturating_sub(self.last_playout_us)).unwrap_or(0);
            self.last_playout_us = now;
            let decay = self.device_burst * since.min(BURST_DECAY_US) / BURST_DECAY_US;
            self.device_burst = (self.device_burst - decay).max(taken).max(BLOCK);
            let deep = PLAYOUT_LOW_WATER + self.device_burst;
            loop {
                let Some(ring) = self.playback.as_mut() else {
                    return;
                };
                let queued = ring.buffer().capacity() - ring.slots();
                if queued >= deep.min(PLAYOUT_HIGH_WATER) {
                    // The ring holds a whole take past the low-water mark: whatever the wall
                    // clock says is still due was time the device did not play (a stall, a
                    // late start, a slower clock), and producing it now would only make
                    // every later sample that much later. Forget it.
                    self.produced = self.produced.max(due);
                }
                // Mix when the device runs low (its clock asks), and in any case at the wall
                // clock's pace: a device that takes audio in large, rare bursts (a sound server
                // with a deep buffer) must still find everything the network brought, or the
                // jitter buffers back up and drop it.
                // And never faster than the wall clock allows (plus a little ahead): a sound
                // server filling its own deep buffer drains as fast as it is fed, and mixing at
                // that pace would run every jitter buffer dry.
                let low = queued < PLAYOUT_LOW_WATER;
                let behind = self.device_started
                    && self.produced + BLOCK as u64 <= due
                    && queued < deep.min(PLAYOUT_HIGH_WATER);
                let ahead = self.produced + BLOCK as u64 > due + PLAYOUT_AHEAD as u64;
                if !(low || behind) || ahead || ring.slots() < BLOCK {
                    return;
                }
                if self.mix_used >= FRAME_SAMPLES {
                    self.mix_frame();
                }
                let Some(ring) = self.playback.as_mut() else {
                    return;
                };
                let block = &self.mix[self.mix_used..self.mix_used + BLOCK];
                if let Ok(chunk) = ring.write_chunk_uninit(BLOCK) {
                    chunk.fill_from_iter(block.iter().copied());
                }
                self.mix_used += BLOCK;
                self.produced += BLOCK as u64;
                if !self.device_started {
                    self.written_before_start += BLOCK;
                }
                self.queued_after_top_up = queued + BLOCK;
                let queued = (queued + BLOCK) as u32;
                self.shared.playout_queued.store(queued, Ordering::Relaxed);
            }
        } else {
            let due = self.now_us().saturating_sub(self.virtual_start) / 20_000;
            if due > self.virtual_played + MAX_CATCH_UP {
                self.virtual_played = due - MAX_CATCH_UP;
            }
            while self.virtual_played < due {
                self.mix_frame();
                self.virtual_played += 1;
            }
            self.mix_used = FRAME_SAMPLES;
        }
    }

    /// Pulls one frame from every slot, mixes them at our gains, and feeds the echo canceller.
    fn mix_frame(&mut self) {
        let now = self.now_us();
        self.mix.fill(0.0);
        self.level_frames += 1;
        for (slot, jb) in self.jitter.iter_mut().enumerate() {
            let Some(_) = jb.pull(now, &mut self.slot_frame) else {
                continue;
            };
            self.heard[slot] = true;
            let energy: f64 = self
                .slot_frame
                .iter()
                .map(|&s| f64::from(s) * f64::from(s))
                .sum();
            self.level_sum[slot] += energy;
            let gain = load_f32(&self.shared.gains[slot]);
            if gain > 0.0 {
                for (m, &s) in self.mix.iter_mut().zip(self.slot_frame.iter()) {
                    *m += gain * s;
                }
            }
        }
        if self.level_frames >= LEVEL_FRAMES {
            let n = f64::from(self.level_frames) * FRAME_SAMPLES as f64;
            for (sum, level) in self.level_sum.iter_mut().zip(&self.shared.slot_levels) {
                store_f32(level, (*sum / n).sqrt() as f32);
                *sum = 0.0;
            }
            self.level_frames = 0;
        }
        let mut bent = false;
        for m in self.mix.iter_mut() {
            let (y, b) = limit(*m);
            *m = y;
            bent |= b;
        }
        self.mix_used = 0;
        let mixed = self.shared.frames_mixed.fetch_add(1, Ordering::Relaxed) + 1;
        if bent {
            self.shared.frames_limited.fetch_add(1, Ordering::Relaxed);
        }
        // The echo canceller hears what the room will, while we send.
        if self.sink.is_some() {
            let _ = self.voice.push_far_end(&self.mix);
        }
        if mixed.is_multiple_of(STATS_EVERY)
            && let Ok(mut stats) = self.shared.jitter.try_lock()
        {
            for (slot, jb) in self.jitter.iter().enumerate() {
                if self.heard[slot] {
                    stats[slot] = Some(jb.stats());
                }
            }
        }
    }
}

fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / x.len() as f64).sqrt() as f32
}
