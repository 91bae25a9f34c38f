//! The system's microphones and speakers through cpal, at 48 kHz, behind lock-free rings.
//!
//! The data callbacks here run on the audio system's thread: they only convert samples between
//! the device format and the ring (downmix, upmix, and when the device does not run at 48 kHz,
//! a [`RateConverter`]), count over/underruns in atomics, and return. They touch nothing but
//! their own pre-allocated buffers, an `rtrb` ring and atomics: no allocation, no lock, no
//! logging. Everything that allocates (the rings, the converters, the stream) is set up before
//! the stream starts.
//!
//! What PulseAudio does with rates: cpal's PulseAudio host offers every rate for every sink and
//! source, whatever rate the device itself runs at, and PulseAudio converts (a `module-null-sink
//! rate=44100` is opened at 48 kHz without complaint). So with PulseAudio, Confab's own
//! conversion only runs when asked for ([`RatePolicy::DeviceDefault`]); on hosts that report a
//! device's real rates (ALSA `hw:` devices, some USB headsets), it runs whenever 48 kHz is not
//! offered.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, FromSample, Sample, SampleFormat, SizedSample, StreamConfig, SupportedBufferSize,
    SupportedStreamConfigRange,
};
use rtrb::{Consumer, Producer, RingBuffer};

use crate::backend::{AudioBackend, CpalBackend, RatePolicy};
use crate::rate::{MAX_DEVICE_RATE, MIN_DEVICE_RATE, RateConverter};
use crate::{AudioError, FRAME_SAMPLES, SAMPLE_RATE};

/// Each ring holds one second of mono audio.
const RING_SAMPLES: usize = SAMPLE_RATE as usize;

/// Frames per playback callback we ask for (10 ms): the backends' default buffers are far
/// larger, and every frame of the speaker's buffer is latency.
const PREFERRED_BUFFER_FRAMES: u32 = 480;

/// Frames per capture callback we ask for: one 20 ms codec frame. The engine sends a frame
/// only once all of it is captured, so a frame's worth per callback delivers each frame no
/// later than two 10 ms callbacks would, with half the wake-ups (each a round trip to the
/// sound server).
const PREFERRED_CAPTURE_FRAMES: u32 = 960;

/// How long cpal may take to set a stream up before we give up on the device.
const BUILD_TIMEOUT: Duration = Duration::from_secs(10);

/// Sample formats we convert, best first.
const FORMATS: [SampleFormat; 3] = [SampleFormat::F32, SampleFormat::I32, SampleFormat::I16];

/// A device as the audio system names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable identifier (for PulseAudio the sink or source name); what `start` takes.
    pub id: String,
    /// Human-readable name for a device picker.
    pub description: String,
}

/// The ids of the input devices (microphones, monitors), in the audio system's order.
pub fn input_devices() -> Result<Vec<String>, AudioError> {
    Ok(input_device_infos()?.into_iter().map(|d| d.id).collect())
}

/// The ids of the output devices (speakers, headphones), in the audio system's order.
pub fn output_devices() -> Result<Vec<String>, AudioError> {
    Ok(output_device_infos()?.into_iter().map(|d| d.id).collect())
}

/// The input devices with their human-readable descriptions.
pub fn input_device_infos() -> Result<Vec<DeviceInfo>, AudioError> {
    CpalBackend::new().input_devices()
}

/// The output devices with their human-readable descriptions.
pub fn output_device_infos() -> Result<Vec<DeviceInfo>, AudioError> {
    CpalBackend::new().output_devices()
}

/// What a running stream's callbacks report to its handle: over/underruns and whether the
/// device is gone. Shared (in an `Arc`) between the handle and the audio system's threads; only
/// atomics, so the data callback may update it.
#[derive(Debug, Default)]
pub struct StreamHealth {
    xruns: AtomicU64,
    lost: AtomicBool,
}

impl StreamHealth {
    /// A fresh record: no xruns, not lost.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one callback that found the ring full (capture) or short (playback).
    /// Real-time safe.
    pub fn count_xrun(&self) {
        self.xruns.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that the stream no longer reaches its device. Real-time safe.
    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::Relaxed);
    }

    /// Callbacks counted by [`StreamHealth::count_xrun`].
    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    /// Whether [`StreamHealth::mark_lost`] was called.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }
}

/// A running microphone stream. Samples arrive, downmixed to mono at 48 kHz, in the
/// [`Consumer`] returned by [`Capture::start`]. Dropping it stops the stream.
pub struct Capture {
    // Whatever keeps the backend's stream running (for cpal, the `cpal::Stream`).
    _stream: Box<dyn Send>,
    health: Arc<StreamHealth>,
    device: String,
    device_rate: u32,
}

impl Capture {
    /// Opens the input device with this id or description (`None`: the system default) and
    /// starts it, delivering 48 kHz mono (converted if the device does not offer 48 kHz).
    /// Reading the returned ring is up to the caller; while it is full, new audio is dropped
    /// and counted in [`Capture::overruns`]. Shorthand for the system backend's
    /// [`AudioBackend::open_capture`] (see [`crate::system_backend`]).
    pub fn start(device: Option<&str>) -> Result<(Capture, Consumer<f32>), AudioError> {
        crate::system_backend().open_capture(device)
    }

    /// A handle over a stream some [`AudioBackend`] started: `stream` is kept alive (and
    /// dropped, stopping it, with the handle); `health` is what its callbacks update.
    pub fn from_parts(
        device: String,
        device_rate: u32,
        stream: Box<dyn Send>,
        health: Arc<StreamHealth>,
    ) -> Capture {
        Capture {
            _stream: stream,
            health,
            device,
            device_rate,
        }
    }

    /// How many device callbacks found the ring full and dropped audio.
    pub fn overruns(&self) -> u64 {
        self.health.xruns()
    }

    /// The id of the device being captured.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// The rate the device runs at; when it is not [`SAMPLE_RATE`], Confab converts.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Whether the audio system reported that this stream lost its device (unplugged,
    /// removed, sound server gone). Nothing more will arrive: reopen, e.g. on the default.
    ///
    /// Not every loss is reported this way: PulseAudio moves a stream whose device vanished to
    /// another device and tells nobody, so also poll [`AudioBackend::device_present`] with
    /// [`Capture::device_name`] (see [`AudioBackend`]).
    pub fn lost(&self) -> bool {
        self.health.is_lost()
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("device", &self.device)
            .field("device_rate", &self.device_rate)
            .field("overruns", &self.overruns())
            .field("lost", &self.lost())
            .finish_non_exhaustive()
    }
}

/// A running speaker stream. Push 48 kHz mono samples into the [`Producer`] returned by
/// [`Playback::start`]; they are played on every channel of the device. When the ring runs
/// dry the device plays silence and [`Playback::underruns`] counts it. Dropping it stops the
/// stream.
pub struct Playback {
    // Whatever keeps the backend's stream running (for cpal, the `cpal::Stream`).
    _stream: Box<dyn Send>,
    health: Arc<StreamHealth>,
    device: String,
    device_rate: u32,
}

impl Playback {
    /// Opens the output device with this id or description (`None`: the system default) and
    /// starts it, taking 48 kHz mono (converted if the device does not offer 48 kHz). The ring
    /// starts with 20 ms of silence so that the first callback does not underrun while the
    /// caller begins to fill it. Shorthand for the system backend's
    /// [`AudioBackend::open_playback`] (see [`crate::system_backend`]).
    pub fn start(device: Option<&str>) -> Result<(Playback, Producer<f32>), AudioError> {
        crate::system_backend().open_playback(device)
    }

    /// A handle over a stream some [`AudioBackend`] started: `stream` is kept alive (and
    /// dropped, stopping it, with the handle); `health` is what its callbacks update.
    pub fn from_parts(
        device: String,
        device_rate: u32,
        stream: Box<dyn Send>,
        health: Arc<StreamHealth>,
    ) -> Playback {
        Playback {
            _stream: stream,
            health,
            device,
            device_rate,
        }
    }

    /// How many device callbacks found the ring short and played silence for the rest.
    pub fn underruns(&self) -> u64 {
        self.health.xruns()
    }

    /// The id of the device playing.
    pub fn device_name(&self) -> &str {
        &self.device
    }

    /// The rate the device runs at; when it is not [`SAMPLE_RATE`], Confab converts.
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// Whether the audio system reported that this stream lost its device; see
    /// [`Capture::lost`] for what is and is not reported.
    pub fn lost(&self) -> bool {
        self.health.is_lost()
    }
}

impl fmt::Debug for Playback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Playback")
            .field("device", &self.device)
            .field("device_rate", &self.device_rate)
            .field("underruns", &self.underruns())
            .field("lost", &self.lost())
            .finish_non_exhaustive()
    }
}

/// Runs `open` on a short-lived thread called `name`. The threads cpal and its sound-server
/// client start for a stream inherit their creator's name, so in `top -H` or a profile the
/// device layer shows as `confab-mic` / `confab-speaker` instead of passing for whatever thread
/// opened the device (a tokio worker, usually).
fn on_named_thread<T: Send>(
    name: &str,
    open: impl FnOnce() -> Result<T, AudioError> + Send,
) -> Result<T, AudioError> {
    std::thread::scope(|scope| {
        let opener = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, open)
            .map_err(|e| AudioError::Worker(e.to_string()))?;
        opener
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Opens capture through cpal's default host: [`CpalBackend`]'s implementation.
pub(crate) fn open_capture(
    policy: RatePolicy,
    device: Option<&str>,
) -> Result<(Capture, Consumer<f32>), AudioError> {
    on_named_thread("confab-mic", || open_capture_here(policy, device))
}

fn open_capture_here(
    policy: RatePolicy,
    device: Option<&str>,
) -> Result<(Capture, Consumer<f32>), AudioError> {
    let host = cpal::default_host();
    let (device, info) = find_device(&host, Direction::Input, device)?;
    let choice = choose_config(&device, Direction::Input, &info.id, policy)?;
    let health = Arc::new(StreamHealth::new());
    let open = |buffer_size| {
        let writer = CaptureWriter::new(choice.channels, choice.rate, Arc::clone(&health));
        // `choice.rate` is within what the converter takes (choose_config checks).
        let (writer, consumer) = writer.map_err(|e| {
            cpal::Error::with_message(cpal::ErrorKind::UnsupportedConfig, e.to_string())
        })?;
        let config = choice.config(buffer_size);
        build_input(&device, config, choice.format, writer, Arc::clone(&health))
            .map(|s| (s, consumer))
    };
    let (stream, consumer) = open_with_fallback(&info.id, choice.buffer_size, open)?;
    stream
        .play()
        .map_err(AudioError::backend("start the input stream"))?;
    tracing::debug!(device = %info.id, channels = choice.channels, format = %choice.format, rate = choice.rate, "capture started");
    let capture = Capture::from_parts(info.id, choice.rate, Box::new(stream), health);
    Ok((capture, consumer))
}

/// Opens playback through cpal's default host: [`CpalBackend`]'s implementation.
pub(crate) fn open_playback(
    policy: RatePolicy,
    device: Option<&str>,
) -> Result<(Playback, Producer<f32>), AudioError> {
    on_named_thread("confab-speaker", || open_playback_here(policy, device))
}

fn open_playback_here(
    policy: RatePolicy,
    device: Option<&str>,
) -> Result<(Playback, Producer<f32>), AudioError> {
    let host = cpal::default_host();
    let (device, info) = find_device(&host, Direction::Output, device)?;
    let choice = choose_config(&device, Direction::Output, &info.id, policy)?;
    let health = Arc::new(StreamHealth::new());
    let open = |buffer_size| {
        let reader = PlaybackReader::new(choice.channels, choice.rate, Arc::clone(&health));
        let (reader, producer) = reader.map_err(|e| {
            cpal::Error::with_message(cpal::ErrorKind::UnsupportedConfig, e.to_string())
        })?;
        let config = choice.config(buffer_size);
        build_output(&device, config, choice.format, reader, Arc::clone(&health))
            .map(|s| (s, producer))
    };
    let (stream, producer) = open_with_fallback(&info.id, choice.buffer_size, open)?;
    stream
        .play()
        .map_err(AudioError::backend("start the output stream"))?;
    tracing::debug!(device = %info.id, channels = choice.channels, format = %choice.format, rate = choice.rate, "playback started");
    let playback = Playback::from_parts(info.id, choice.rate, Box::new(stream), health);
    Ok((playback, producer))
}

// The client keeps these in tokio tasks; cpal 0.18 streams are `Send` on every platform.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Capture>();
    assert_send::<Playback>();
};

/// Which way audio flows through a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Microphones and monitors: audio comes in.
    Input,
    /// Speakers and headphones: audio goes out.
    Output,
}

impl Direction {
    /// `"input"` or `"output"`, as error messages say it.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Input => "input",
            Direction::Output => "output",
        }
    }
}

pub(crate) fn list(host: &cpal::Host, direction: Direction) -> Result<Vec<DeviceInfo>, AudioError> {
    let devices = match direction {
        Direction::Input => host.input_devices(),
        Direction::Output => host.output_devices(),
    }
    .map_err(AudioError::backend("list devices"))?;
    Ok(devices.filter_map(|d| describe(&d)).collect())
}

fn describe(device: &cpal::Device) -> Option<DeviceInfo> {
    let id = device.id().ok()?.id().to_owned();
    let description = device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| id.clone());
    Some(DeviceInfo { id, description })
}

/// The id of the system's default device in that direction.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn default_id(direction: Direction) -> Result<String, AudioError> {
    find_device(&cpal::default_host(), direction, None).map(|(_, info)| info.id)
}

fn find_device(
    host: &cpal::Host,
    direction: Direction,
    name: Option<&str>,
) -> Result<(cpal::Device, DeviceInfo), AudioError> {
    let Some(name) = name else {
        let device = match direction {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        let not_found = || AudioError::NoDefaultDevice {
            direction: direction.name(),
        };
        let device = device.ok_or_else(not_found)?;
        let info = describe(&device).ok_or_else(not_found)?;
        return Ok((device, info));
    };
    let devices = match direction {
        Direction::Input => host.input_devices(),
        Direction::Output => host.output_devices(),
    }
    .map_err(AudioError::backend("list devices"))?;
    let mut available = Vec::new();
    for device in devices {
        let Some(info) = describe(&device) else {
            continue;
        };
        if info.id == name || info.description == name {
            return Ok((device, info));
        }
        available.push(info.id);
    }
    Err(AudioError::DeviceNotFound {
        direction: direction.name(),
        name: name.to_owned(),
        available,
    })
}

/// What we open a device with.
#[derive(Debug, Clone, Copy)]
struct Choice {
    channels: usize,
    format: SampleFormat,
    rate: u32,
    buffer_size: BufferSize,
}

impl Choice {
    fn config(&self, buffer_size: BufferSize) -> StreamConfig {
        StreamConfig {
            // `channels` came from a cpal ChannelCount (u16).
            channels: u16::try_from(self.channels).unwrap_or(1),
            sample_rate: self.rate,
            buffer_size,
        }
    }
}

/// Picks a configuration: the rate the policy asks for (48 kHz, or the device's own) if the
/// device offers it, else the offered rate nearest to it that the converter takes; mono if
/// offered (else the fewest channels); the best sample format we convert; and a 10 ms buffer
/// when the device allows one.
fn choose_config(
    device: &cpal::Device,
    direction: Direction,
    id: &str,
    policy: RatePolicy,
) -> Result<Choice, AudioError> {
    let ranges: Vec<SupportedStreamConfigRange> = match direction {
        Direction::Input => device.supported_input_configs().map(Iterator::collect),
        Direction::Output => device.supported_output_configs().map(Iterator::collect),
    }
    .map_err(AudioError::backend("read the device's configurations"))?;

    let target = match policy {
        RatePolicy::Prefer48k => SAMPLE_RATE,
        RatePolicy::DeviceDefault => match direction {
            Direction::Input => device.default_input_config(),
            Direction::Output => device.default_output_config(),
        }
        .map(|c| c.sample_rate())
        .unwrap_or(SAMPLE_RATE),
    };
    // Each range at the rate we would use with it.
    let usable: Vec<(&SupportedStreamConfigRange, u32)> = ranges
        .iter()
        .filter(|r| r.channels() > 0)
        .filter_map(|r| {
            let low = r.min_sample_rate().max(MIN_DEVICE_RATE);
            let high = r.max_sample_rate().min(MAX_DEVICE_RATE);
            (low <= high).then(|| (r, target.clamp(low, high)))
        })
        .collect();
    if usable.is_empty() {
        return Err(AudioError::DeviceSampleRate {
            direction: direction.name(),
            device: id.to_owned(),
            supported: describe_rates(&ranges),
        });
    }
    let best = usable
        .iter()
        .filter_map(|&(r, rate)| {
            let rank = FORMATS.iter().position(|&f| f == r.sample_format())?;
            Some((r, rate, rank))
        })
        .min_by_key(|&(r, rate, rank)| (rate.abs_diff(target), r.channels(), rank));
    let Some((range, rate, _)) = best else {
        let mut offered: Vec<String> = usable
            .iter()
            .map(|(r, _)| r.sample_format().to_string())
            .collect();
        offered.dedup();
        return Err(AudioError::DeviceSampleFormat {
            direction: direction.name(),
            device: id.to_owned(),
            offered: offered.join(", "),
        });
    };
    let preferred = match direction {
        Direction::Input => PREFERRED_CAPTURE_FRAMES,
        Direction::Output => PREFERRED_BUFFER_FRAMES,
    };
    let buffer_size = match *range.buffer_size() {
        SupportedBufferSize::Range { min, max } if (min..=max).contains(&preferred) => {
            BufferSize::Fixed(preferred)
        }
        _ => BufferSize::Default,
    };
    Ok(Choice {
        channels: usize::from(range.channels()),
        format: range.sample_format(),
        rate,
        buffer_size,
    })
}

fn describe_rates(ranges: &[SupportedStreamConfigRange]) -> String {
    let mut rates: Vec<(u32, u32)> = ranges
        .iter()
        .map(|r| (r.min_sample_rate(), r.max_sample_rate()))
        .collect();
    rates.sort_unstable();
    rates.dedup();
    if rates.is_empty() {
        return "no configuration at all".to_owned();
    }
    rates
        .iter()
        .map(|&(min, max)| {
            if min == max {
                format!("{min} Hz")
            } else {
                format!("{min}-{max} Hz")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Opens with the preferred buffer size, and with the backend's default if that is refused.
fn open_with_fallback<T>(
    id: &str,
    preferred: BufferSize,
    mut open: impl FnMut(BufferSize) -> Result<(cpal::Stream, T), cpal::Error>,
) -> Result<(cpal::Stream, T), AudioError> {
    match open(preferred) {
        Ok(opened) => Ok(opened),
        Err(err) if preferred != BufferSize::Default => {
            tracing::debug!(device = id, %err, "fixed buffer size refused; using the default");
            open(BufferSize::Default).map_err(AudioError::backend("open the device"))
        }
        Err(err) => Err(AudioError::Backend {
            op: "open the device",
            source: err,
        }),
    }
}

fn report_stream_error(
    direction: Direction,
    health: Arc<StreamHealth>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    // The error callback is not the real-time data callback; it runs rarely (device lost,
    // server gone), so logging here is fine.
    move |err| {
        use cpal::ErrorKind as Kind;
        let lost = matches!(
            err.kind(),
            Kind::DeviceNotAvailable | Kind::StreamInvalidated | Kind::HostUnavailable
        );
        if lost {
            health.mark_lost();
        }
        tracing::warn!(direction = direction.name(), %err, lost, "audio stream error");
    }
}

fn build_input(
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    writer: CaptureWriter,
    health: Arc<StreamHealth>,
) -> Result<cpal::Stream, cpal::Error> {
    fn build<T>(
        device: &cpal::Device,
        config: StreamConfig,
        mut writer: CaptureWriter,
        health: Arc<StreamHealth>,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: SizedSample,
        f32: FromSample<T>,
    {
        device.build_input_stream(
            config,
            move |data: &[T], _: &cpal::InputCallbackInfo| writer.write(data),
            report_stream_error(Direction::Input, health),
            Some(BUILD_TIMEOUT),
        )
    }
    match format {
        SampleFormat::I16 => build::<i16>(device, config, writer, health),
        SampleFormat::I32 => build::<i32>(device, config, writer, health),
        // choose_config only picks FORMATS.
        _ => build::<f32>(device, config, writer, health),
    }
}

fn build_output(
    device: &cpal::Device,
    config: StreamConfig,
    format: SampleFormat,
    reader: PlaybackReader,
    health: Arc<StreamHealth>,
) -> Result<cpal::Stream, cpal::Error> {
    fn build<T>(
        device: &cpal::Device,
        config: StreamConfig,
        mut reader: PlaybackReader,
        health: Arc<StreamHealth>,
    ) -> Result<cpal::Stream, cpal::Error>
    where
        T: SizedSample + FromSample<f32>,
    {
        device.build_output_stream(
            config,
            move |data: &mut [T], _: &cpal::OutputCallbackInfo| reader.read(data),
            report_stream_error(Direction::Output, health),
            Some(BUILD_TIMEOUT),
        )
    }
    match format {
        SampleFormat::I16 => build::<i16>(device, config, reader, health),
        SampleFormat::I32 => build::<i32>(device, config, reader, health),
        // choose_config only picks FORMATS.
        _ => build::<f32>(device, config, reader, health),
    }
}

/// Averages interleaved channels into mono, carrying a partial frame across callbacks (a
/// backend may split a buffer mid-frame).
#[derive(Debug)]
struct Downmix {
    channels: usize,
    sum: f32,
    count: usize,
}

impl Downmix {
    fn new(channels: usize) -> Self {
        Self {
            channels: channels.max(1),
            sum: 0.0,
            count: 0,
        }
    }

    /// The next complete mono sample, or `None` when `samples` ran out mid-frame.
    fn next(&mut self, samples: &mut impl Iterator<Item = f32>) -> Option<f32> {
        for sample in samples {
            self.sum += sample;
            self.count += 1;
            if self.count == self.channels {
                let mono = self.sum / self.channels as f32;
                self.sum = 0.0;
                self.count = 0;
                return Some(mono);
            }
        }
        None
    }
}

/// The capture side of a ring, owned by the input callback.
pub(crate) struct CaptureWriter {
    producer: Producer<f32>,
    downmix: Downmix,
    /// Device rate → 48 kHz, when the device runs at another rate.
    converter: Option<RateConverter>,
    health: Arc<StreamHealth>,
}

impl CaptureWriter {
    /// A writer for a device of `channels` at `rate` Hz, and the ring's reading end.
    /// Allocates everything the callback will use.
    pub(crate) fn new(
        channels: usize,
        rate: u32,
        health: Arc<StreamHealth>,
    ) -> Result<(CaptureWriter, Consumer<f32>), AudioError> {
        let converter = match rate {
            SAMPLE_RATE => None,
            rate => Some(RateConverter::new(rate, SAMPLE_RATE)?),
        };
        let (producer, consumer) = RingBuffer::new(RING_SAMPLES);
        let writer = CaptureWriter {
            producer,
            downmix: Downmix::new(channels),
            converter,
            health,
        };
        Ok((writer, consumer))
    }

    /// Runs in the device callback: no allocation, lock, logging or panic.
    pub(crate) fn write<T>(&mut self, data: &[T])
    where
        T: Sample,
        f32: FromSample<T>,
    {
        let complete_frames = (self.downmix.count + data.len()) / self.downmix.channels;
        let mut samples = data.iter().map(|&s| f32::from_sample(s));
        let downmix = &mut self.downmix;
        let mut frames = std::iter::from_fn(|| downmix.next(&mut samples));
        let overrun = match &mut self.converter {
            None => {
                let room = self.producer.slots().min(complete_frames);
                if let Ok(chunk) = self.producer.write_chunk_uninit(room) {
                    chunk.fill_from_iter(&mut frames);
                }
                // Run the downmix to the end of the buffer either way, so a frame split across
                // callbacks stays aligned; any complete frames left over find the ring full.
                frames.count() > 0
            }
            Some(converter) => {
                let mut overrun = false;
                for mono in frames {
                    if converter.push(mono) {
                        overrun |= push_all(&mut self.producer, converter.pending());
                        converter.take_all();
                    }
                }
                overrun
            }
        };
        if overrun {
            self.health.count_xrun();
        }
    }
}

/// Pushes what fits of `samples`; `true` if some did not.
fn push_all(producer: &mut Producer<f32>, samples: &[f32]) -> bool {
    let room = producer.slots().min(samples.len());
    if let Ok(chunk) = producer.write_chunk_uninit(room) {
        chunk.fill_from_iter(samples.iter().copied());
    }
    room < samples.len()
}

/// The playback side of a ring, owned by the output callback.
pub(crate) struct PlaybackReader {
    consumer: Consumer<f32>,
    channels: usize,
    /// 48 kHz → device rate, when the device runs at another rate.
    converter: Option<RateConverter>,
    health: Arc<StreamHealth>,
}

impl PlaybackReader {
    /// A reader for a device of `channels` at `rate` Hz, and the ring's writing end, pre-filled
    /// with 20 ms of silence. Allocates everything the callback will use.
    pub(crate) fn new(
        channels: usize,
        rate: u32,
        health: Arc<StreamHealth>,
    ) -> Result<(PlaybackReader, Producer<f32>), AudioError> {
        let converter = match rate {
            SAMPLE_RATE => None,
            rate => Some(RateConverter::new(SAMPLE_RATE, rate)?),
        };
        let (mut producer, consumer) = RingBuffer::new(RING_SAMPLES);
        for _ in 0..FRAME_SAMPLES {
            // A fresh ring of RING_SAMPLES > FRAME_SAMPLES slots has room; a failed push
            // would only mean less pre-fill.
            let _ = producer.push(0.0);
        }
        let reader = PlaybackReader {
            consumer,
            channels: channels.max(1),
            converter,
            health,
        };
        Ok((reader, producer))
    }

    /// Runs in the device callback: no allocation, lock, logging or panic.
    pub(crate) fn read<T>(&mut self, data: &mut [T])
    where
        T: Sample + FromSample<f32>,
    {
        let channels = self.channels;
        let frames = data.len() / channels;
        let underrun = match &mut self.converter {
            None => {
                let available = self.consumer.slots().min(frames);
                let mut filled = 0;
                if let Ok(chunk) = self.consumer.read_chunk(available) {
                    let (first, second) = chunk.as_slices();
                    for (frame, &sample) in data
                        .chunks_exact_mut(channels)
                        .zip(first.iter().chain(second))
                    {
                        frame.fill(T::from_sample(clean(sample)));
                        filled += 1;
                    }
                    chunk.commit_all();
                }
                // cpal pre-fills with silence, but say it here too: short means silence,
                // never stale.
                for sample in data.iter_mut().skip(filled * channels) {
                    *sample = T::EQUILIBRIUM;
                }
                filled < frames
            }
            Some(converter) => {
                // The converter turns whole 10 ms chunks of the ring into device-rate audio; a
                // ring short of a chunk is padded with silence, and that is an underrun.
                let mut short = false;
                for frame in data.chunks_exact_mut(channels) {
                    let sample = match converter.pop() {
                        Some(sample) => sample,
                        None => {
                            for _ in 0..converter.chunk_len() {
                                let next = self.consumer.pop().unwrap_or_else(|_| {
                                    short = true;
                                    0.0
                                });
                                converter.push(next);
                            }
                            converter.pop().unwrap_or(0.0)
                        }
                    };
                    frame.fill(T::from_sample(sample));
                }
                // A trailing partial frame (a backend splitting mid-frame) is silence.
                for sample in data.iter_mut().skip(frames * channels) {
                    *sample = T::EQUILIBRIUM;
                }
                short
            }
        };
        if underrun {
            self.health.count_xrun();
        }
    }
}

/// The ring may hold anything the caller pushed: NaN plays as silence, the rest is clipped.
fn clean(sample: f32) -> f32 {
    if sample.is_nan() {
        0.0
    } else {
        sample.clamp(-1.0, 1.0)
    }
}

/// The device callbacks' sample paths, driven without a device. The callbacks themselves are
/// private (only a backend builds them); these wrappers exist so that an integration test can
/// run exactly that code under a counting allocator (`tests/no_alloc`). Only with the
/// `test-support` feature.
#[cfg(feature = "test-support")]
pub mod callbacks {
    use super::*;

    /// What an input stream's data callback runs.
    pub struct CaptureCallback {
        writer: CaptureWriter,
        health: Arc<StreamHealth>,
    }

    impl CaptureCallback {
        /// The callback of a device with `channels` at `device_rate` Hz, and the 48 kHz ring.
        pub fn new(
            channels: usize,
            device_rate: u32,
        ) -> Result<(CaptureCallback, Consumer<f32>), AudioError> {
            let health = Arc::new(StreamHealth::new());
            let (writer, ring) = CaptureWriter::new(channels, device_rate, Arc::clone(&health))?;
            Ok((CaptureCallback { writer, health }, ring))
        }

        /// One callback's worth of interleaved device samples.
        pub fn write<T>(&mut self, data: &[T])
        where
            T: Sample,
            f32: FromSample<T>,
        {
            self.writer.write(data);
        }

        /// Callbacks that found the ring full.
        pub fn overruns(&self) -> u64 {
            self.health.xruns()
        }
    }

    /// What an output stream's data callback runs.
    pub struct PlaybackCallback {
        reader: PlaybackReader,
        health: Arc<StreamHealth>,
    }

    impl PlaybackCallback {
        /// The callback of a device with `channels` at `device_rate` Hz, and the 48 kHz ring.
        pub fn new(
            channels: usize,
            device_rate: u32,
        ) -> Result<(PlaybackCallback, Producer<f32>), AudioError> {
            let health = Arc::new(StreamHealth::new());
            let (reader, ring) = PlaybackReader::new(channels, device_rate, Arc::clone(&health))?;
            Ok((PlaybackCallback { reader, health }, ring))
        }

        /// Fills one callback's worth of interleaved device samples.
        pub fn read<T>(&mut self, data: &mut [T])
        where
            T: Sample + FromSample<f32>,
        {
            self.reader.read(data);
        }

        /// Callbacks that found the ring short.
        pub fn underruns(&self) -> u64 {
            self.health.xruns()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture_writer(channels: usize, capacity: usize) -> (CaptureWriter, Consumer<f32>) {
        let (producer, consumer) = RingBuffer::new(capacity);
        let writer = CaptureWriter {
            producer,
            downmix: Downmix::new(channels),
            converter: None,
            health: Arc::new(StreamHealth::new()),
        };
        (writer, consumer)
    }

    fn drain(consumer: &mut Consumer<f32>) -> Vec<f32> {
        std::iter::from_fn(|| consumer.pop().ok()).collect()
    }

    #[test]
    fn capture_averages_channels_across_split_buffers() {
        let (mut writer, mut ring) = capture_writer(2, 8);
        // A frame split between two callbacks stays one frame.
        writer.write(&[1.0f32, 0.0, 0.5]);
        writer.write(&[0.5f32, -1.0, -1.0]);
        assert_eq!(drain(&mut ring), [0.5, 0.5, -1.0]);
        assert_eq!(writer.health.xruns(), 0);

        // Integer devices are scaled to [-1, 1].
        let (mut writer, mut ring) = capture_writer(1, 8);
        writer.write(&[i16::MIN, 0, 16_384]);
        assert_eq!(drain(&mut ring), [-1.0, 0.0, 0.5]);
    }

    #[test]
    fn capture_drops_and_counts_what_a_full_ring_cannot_take() {
        let (mut writer, mut ring) = capture_writer(1, 4);
        writer.write(&[0.1f32, 0.2, 0.3, 0.4, 0.5, 0.6]);
        assert_eq!(writer.health.xruns(), 1);
        assert_eq!(drain(&mut ring), [0.1, 0.2, 0.3, 0.4]);
        writer.write(&[0.7f32, 0.8]);
        assert_eq!(drain(&mut ring), [0.7, 0.8]);
        assert_eq!(writer.health.xruns(), 1);

        // Stereo: a frame split across a full ring stays aligned afterwards.
        let (mut writer, mut ring) = capture_writer(2, 1);
        writer.write(&[0.2f32, 0.4, 1.0, 1.0, 0.6]);
        assert_eq!(writer.health.xruns(), 1);
        assert_eq!(drain(&mut ring), [0.3]);
        writer.write(&[0.8f32]);
        assert!((drain(&mut ring)[0] - 0.7).abs() < 1e-6);
    }

    /// Rising zero crossings per second.
    fn frequency(x: &[f32], rate: u32) -> f32 {
        let rising = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        rising as f32 * rate as f32 / x.len() as f32
    }

    fn tone(rate: u32, len: usize) -> impl Iterator<Item = f32> {
        (0..len).map(move |i| 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / rate as f32).sin())
    }

    #[test]
    fn a_44k1_stereo_i16_microphone_arrives_as_48k_mono() {
        let health = Arc::new(StreamHealth::new());
        let (mut writer, mut ring) =
            CaptureWriter::new(2, 44_100, Arc::clone(&health)).expect("44.1 kHz converts");
        let device: Vec<i16> = tone(44_100, 44_100)
            .flat_map(|x| {
                let s = (x * 32_767.0) as i16;
                [s, s]
            })
            .collect();
        // Callbacks of an odd size, splitting frames.
        for callback in device.chunks(333) {
            writer.write(callback);
        }
        let out = drain(&mut ring);
        assert!(out.len().abs_diff(48_000) <= 500, "{} samples", out.len());
        let steady = &out[2_400..];
        assert!((frequency(steady, SAMPLE_RATE) - 1000.0).abs() < 5.0);
        let rms = (steady.iter().map(|x| x * x).sum::<f32>() / steady.len() as f32).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
        assert_eq!(health.xruns(), 0);
    }

    #[test]
    fn a_44k1_stereo_speaker_plays_48k_mono_on_both_channels() {
        let health = Arc::new(StreamHealth::new());
        let (mut reader, mut ring) =
            PlaybackReader::new(2, 44_100, Arc::clone(&health)).expect("44.1 kHz converts");
        for x in tone(SAMPLE_RATE, 24_000) {
            ring.push(x).expect("the ring holds a second");
        }
        // Half a second of 48 kHz (plus the 20 ms pre-fill) is about 22 932 frames at 44.1 kHz.
        let mut played = Vec::new();
        let mut buffer = [0.0f32; 2 * 441];
        for _ in 0..50 {
            reader.read(&mut buffer);
            played.extend_from_slice(&buffer);
        }
        assert_eq!(
            health.xruns(),
            0,
            "22 050 frames need no more than the ring held"
        );
        let (left, right): (Vec<f32>, Vec<f32>) =
            played.chunks_exact(2).map(|f| (f[0], f[1])).unzip();
        assert_eq!(left, right);
        // Past the pre-fill and the filter's delay.
        let steady = &left[2_205..];
        assert!((frequency(steady, 44_100) - 1000.0).abs() < 5.0);
        // Then the ring runs dry: the rest is silence and counted.
        for _ in 0..10 {
            reader.read(&mut buffer);
        }
        assert!(health.xruns() > 0);
        assert!(buffer.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn playback_upmixes_and_plays_silence_when_the_ring_runs_dry() {
        let (mut producer, consumer) = RingBuffer::new(8);
        let mut reader = PlaybackReader {
            consumer,
            channels: 2,
            converter: None,
            health: Arc::new(StreamHealth::new()),
        };
        producer.push(0.25).unwrap();
        producer.push(0.5).unwrap();
        let mut out = [9.0f32; 6];
        reader.read(&mut out);
        assert_eq!(out, [0.25, 0.25, 0.5, 0.5, 0.0, 0.0]);
        assert_eq!(reader.health.xruns(), 1);

        // Enough audio: no underrun; out-of-range and NaN samples are made safe.
        for x in [2.0, f32::NAN, -3.0] {
            producer.push(x).unwrap();
        }
        let mut out = [9i16; 6];
        reader.read(&mut out);
        assert_eq!(out, [i16::MAX, i16::MAX, 0, 0, i16::MIN, i16::MIN]);
        assert_eq!(reader.health.xruns(), 1);
    }
}
