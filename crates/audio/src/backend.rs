//! What Confab needs from the system's audio: the devices, and 48 kHz mono streams to and from
//! them. [`AudioBackend`] says it once; [`CpalBackend`] is the real one (cpal, PulseAudio on
//! Linux), and [`Capture::start`]/[`Playback::start`] are shorthands for it.
//!
//! The trait is object-safe on purpose: the app chooses its backend at run time (the real one,
//! or a scripted one in a test) and the audio engine holds an `Arc<dyn AudioBackend>` without a
//! type parameter spreading through every type that touches audio. Nothing on the real-time
//! path goes through it (the streams' callbacks are built inside the backend), so the dynamic
//! dispatch costs one indirect call per device listing or stream opening.

use rtrb::{Consumer, Producer};

use crate::AudioError;
use crate::device::{self, Capture, DeviceInfo, Direction, Playback};

/// The audio system, as Confab uses it.
///
/// Streams carry [`crate::SAMPLE_RATE`] mono `f32` in both directions whatever the device
/// runs at: a backend converts channels and rates itself. Another backend builds its handles
/// with [`Capture::from_parts`] and [`Playback::from_parts`].
///
/// A device in use can disappear (a headset unplugged). Some audio systems say so through the
/// stream ([`Capture::lost`], [`Playback::lost`]). PulseAudio does not: it moves the stream to
/// the default device and tells nobody (seen with cpal 0.18 on PulseAudio 16: no error callback,
/// the data callbacks keep running). So the app asks [`AudioBackend::capture_lost`] and
/// [`AudioBackend::playback_lost`] about once a second, which cover both, and when they say so
/// reopens on the default device (`None`) and tells the user.
pub trait AudioBackend: Send + Sync {
    /// The input devices (microphones, monitors), in the audio system's order.
    fn input_devices(&self) -> Result<Vec<DeviceInfo>, AudioError>;

    /// The output devices (speakers, headphones), in the audio system's order.
    fn output_devices(&self) -> Result<Vec<DeviceInfo>, AudioError>;

    /// Opens the input device with this id or description (`None`: the system default) and
    /// starts it; 48 kHz mono arrives in the returned ring.
    fn open_capture(&self, device: Option<&str>) -> Result<(Capture, Consumer<f32>), AudioError>;

    /// Opens the output device with this id or description (`None`: the system default) and
    /// starts it; it plays the 48 kHz mono pushed into the returned ring.
    fn open_playback(&self, device: Option<&str>) -> Result<(Playback, Producer<f32>), AudioError>;

    /// Whether a device with this id is currently listed in that direction. Cheap enough to
    /// call once a second (one listing).
    fn device_present(&self, direction: Direction, id: &str) -> Result<bool, AudioError> {
        let devices = match direction {
            Direction::Input => self.input_devices()?,
            Direction::Output => self.output_devices()?,
        };
        Ok(devices.iter().any(|d| d.id == id))
    }

    /// Whether `capture`'s device is gone: reported by the stream, or no longer listed.
    fn capture_lost(&self, capture: &Capture) -> Result<bool, AudioError> {
        Ok(capture.lost() || !self.device_present(Direction::Input, capture.device_name())?)
    }

    /// Whether `playback`'s device is gone: reported by the stream, or no longer listed.
    fn playback_lost(&self, playback: &Playback) -> Result<bool, AudioError> {
        Ok(playback.lost() || !self.device_present(Direction::Output, playback.device_name())?)
    }
}

/// Which rate a device is opened at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RatePolicy {
    /// 48 kHz when the device offers it (no conversion in Confab); otherwise the offered rate
    /// nearest to it, converted.
    #[default]
    Prefer48k,
    /// The rate the audio system says the device runs at (its default configuration), and
    /// Confab converts. With PulseAudio, which offers every rate and converts itself, this is
    /// how to have Confab's converter do the work instead, or to test it on a real device.
    DeviceDefault,
}

/// The real backend: cpal's default host (PulseAudio on Linux).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpalBackend {
    rates: RatePolicy,
}

impl CpalBackend {
    /// Opens devices at 48 kHz where they offer it ([`RatePolicy::Prefer48k`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Opens devices at the rate `rates` picks.
    pub fn with_rate_policy(rates: RatePolicy) -> Self {
        Self { rates }
    }
}

impl AudioBackend for CpalBackend {
    fn input_devices(&self) -> Result<Vec<DeviceInfo>, AudioError> {
        device::list(&cpal::default_host(), Direction::Input)
    }

    fn output_devices(&self) -> Result<Vec<DeviceInfo>, AudioError> {
        device::list(&cpal::default_host(), Direction::Output)
    }

    fn open_capture(&self, device: Option<&str>) -> Result<(Capture, Consumer<f32>), AudioError> {
        device::open_capture(self.rates, device)
    }

    fn open_playback(&self, device: Option<&str>) -> Result<(Playback, Producer<f32>), AudioError> {
        device::open_playback(self.rates, device)
    }
}
