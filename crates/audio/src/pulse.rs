//! Streams through libpulse, PulseAudio's own C client library (its simple API, through
//! `libpulse-simple-binding`), with cpal for everything else (device lists, hot-plug).
//!
//! Why not cpal's PulseAudio host for the streams: it speaks the protocol through the
//! `pulseaudio` crate, whose reader zeroes a fresh megabyte before every socket read, and
//! whose playback asks the server for timing after every callback. `perf` on a listener of
//! three speakers put 27 % of the whole process in that `memset` and about as much again in
//! the thread switches around it, more than Opus, WebRTC and the mixer together. libpulse is
//! what every PulseAudio (and PipeWire-pulse) application on a Linux desktop uses.
//!
//! Each stream is one thread, named like the device layer's others (`confab-mic`,
//! `confab-speaker`): it reads (or writes) 10 ms blocks, blocking in libpulse, and moves them
//! through the same ring writer/reader as the cpal callbacks (so downmix, conversion and the
//! over/underrun counts are shared code, and nothing in the loop allocates). PulseAudio runs
//! the stream at 48 kHz mono and converts for the device itself. When no PulseAudio server
//! answers, opening falls back to cpal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use libpulse_binding::def::BufferAttr;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction as PaDirection;
use libpulse_simple_binding::Simple;
use rtrb::{Consumer, Producer};

use crate::backend::{AudioBackend, CpalBackend};
use crate::device::{
    Capture, CaptureWriter, DeviceInfo, Direction, Playback, PlaybackReader, StreamHealth,
};
use crate::{AudioError, SAMPLE_RATE};

/// Samples moved per read or write: 10 ms, the buffer size the cpal path asks for too.
const BLOCK: usize = SAMPLE_RATE as usize / 100;
const BLOCK_BYTES: u32 = (BLOCK * 4) as u32;

/// Streams through libpulse; device lists and anything libpulse cannot open through cpal.
#[derive(Debug, Clone, Copy, Default)]
pub struct PulseBackend {
    devices: CpalBackend,
}

impl PulseBackend {
    pub fn new() -> PulseBackend {
        PulseBackend::default()
    }

    /// The id of the device `name` names (an id or a description), or of the default.
    fn resolve(&self, direction: Direction, name: Option<&str>) -> Result<String, AudioError> {
        let devices = match direction {
            Direction::Input => self.devices.input_devices()?,
            Direction::Output => self.devices.output_devices()?,
        };
        match name {
            Some(name) => devices
                .iter()
                .find(|d| d.id == name || d.description == name)
                .map(|d| d.id.clone())
                .ok_or_else(|| AudioError::DeviceNotFound {
                    direction: direction.name(),
                    name: name.to_owned(),
                    available: devices.iter().map(|d| d.id.clone()).collect(),
                }),
            None => crate::device::default_id(direction),
        }
    }
}

/// Keeps a stream's thread running; dropping it asks the thread to stop after its current
/// block (at most 10 ms). It does not wait: a stalled sound server must not hang the caller.
struct Running {
    stop: Arc<AtomicBool>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts `body` on a thread called `name` once `open` has succeeded there (libpulse's
/// connection lives and dies on the thread that uses it); returns `open`'s error otherwise.
fn spawn_stream(
    name: &str,
    open: impl FnOnce() -> Result<Simple, String> + Send + 'static,
    mut body: impl FnMut(&Simple) -> bool + Send + 'static,
) -> Result<Running, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let (opened, result) = mpsc::sync_channel(1);
    let running = Arc::clone(&stop);
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let simple = match open() {
                Ok(simple) => {
                    let _ = opened.send(Ok(()));
                    simple
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            while !running.load(Ordering::Relaxed) && body(&simple) {}
        })
        .map_err(|e| e.to_string())?;
    result
        .recv()
        .map_err(|_| "the stream thread died".to_owned())??;
    Ok(Running { stop })
}

/// Opens one 48 kHz mono `f32` stream on `device` (what PulseAudio shows as `role`).
fn open_simple(
    direction: PaDirection,
    device: &str,
    role: &str,
    attr: &BufferAttr,
) -> Result<Simple, String> {
    let spec = Spec {
        format: Format::F32le,
        rate: SAMPLE_RATE,
        channels: 1,
    };
    Simple::new(
        None,
        "Confab",
        direction,
        Some(device),
        role,
        &spec,
        None,
        Some(attr),
    )
    .map_err(|e| e.to_string().unwrap_or_else(|| format!("{e:?}")))
}

impl AudioBackend for PulseBackend {
    fn input_devices(&self) -> Result<Vec<DeviceInfo>, AudioError> {
        self.devices.input_devices()
    }

    fn output_devices(&self) -> Result<Vec<DeviceInfo>, AudioError> {
        self.devices.output_devices()
    }

    fn open_capture(&self, device: Option<&str>) -> Result<(Capture, Consumer<f32>), AudioError> {
        let id = self.resolve(Direction::Input, device)?;
        let health = Arc::new(StreamHealth::new());
        let (mut writer, consumer) = CaptureWriter::new(1, SAMPLE_RATE, Arc::clone(&health))?;
        let source = id.clone();
        let open = move || {
            let attr = BufferAttr {
                maxlength: u32::MAX,
                tlength: u32::MAX,
                prebuf: u32::MAX,
                minreq: u32::MAX,
                fragsize: BLOCK_BYTES,
            };
            open_simple(PaDirection::Record, &source, "Microphone", &attr)
        };
        let lost = Arc::clone(&health);
        let mut bytes = [0u8; BLOCK * 4];
        let mut samples = [0f32; BLOCK];
        let body = move |simple: &Simple| {
            if simple.read(&mut bytes).is_err() {
                lost.mark_lost();
                return false;
            }
            for (s, b) in samples.iter_mut().zip(bytes.chunks_exact(4)) {
                *s = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
            writer.write(&samples);
            true
        };
        match spawn_stream("confab-mic", open, body) {
            Ok(running) => Ok((
                Capture::from_parts(id, SAMPLE_RATE, Box::new(running), health),
                consumer,
            )),
            Err(why) => {
                tracing::debug!(%why, "libpulse cannot record; trying cpal");
                self.devices.open_capture(Some(&id))
            }
        }
    }

    fn open_playback(&self, device: Option<&str>) -> Result<(Playback, Producer<f32>), AudioError> {
        let id = self.resolve(Direction::Output, device)?;
        let health = Arc::new(StreamHealth::new());
        let (mut reader, producer) = PlaybackReader::new(1, SAMPLE_RATE, Arc::clone(&health))?;
        let sink = id.clone();
        let open = move || {
            // Two blocks in the server, refilled a block at a time: the cpal path's buffering.
            let attr = BufferAttr {
                maxlength: u32::MAX,
                tlength: 2 * BLOCK_BYTES,
                prebuf: u32::MAX,
                minreq: BLOCK_BYTES,
                fragsize: u32::MAX,
            };
            open_simple(PaDirection::Playback, &sink, "Speaker", &attr)
        };
        let lost = Arc::clone(&health);
        let mut bytes = [0u8; BLOCK * 4];
        let mut samples = [0f32; BLOCK];
        let body = move |simple: &Simple| {
            reader.read(&mut samples);
            for (b, s) in bytes.chunks_exact_mut(4).zip(samples.iter()) {
                b.copy_from_slice(&s.to_le_bytes());
            }
            // Blocks until the server has room: the device's clock paces this loop.
            if simple.write(&bytes).is_err() {
                lost.mark_lost();
                return false;
            }
            true
        };
        match spawn_stream("confab-speaker", open, body) {
            Ok(running) => Ok((
                Playback::from_parts(id, SAMPLE_RATE, Box::new(running), health),
                producer,
            )),
            Err(why) => {
                tracing::debug!(%why, "libpulse cannot play; trying cpal");
                self.devices.open_playback(Some(&id))
            }
        }
    }
}
