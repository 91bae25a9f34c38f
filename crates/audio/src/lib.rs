//! Confab's audio engine: Opus at 48 kHz mono in 20 ms frames (with in-band FEC and DTX), an
//! adaptive [`JitterBuffer`] that turns each speaker's received RTP packets into one frame per
//! playout tick, a [`Mixer`] that sums the speakers a listener hears without clipping, a simpler
//! [`StreamDecoder`] that decodes packets on arrival, the microphone's [`VoiceProcessor`]
//! (high-pass, echo cancellation, noise suppression, gain control, voice activity), WAV files in
//! and out, and the system's microphones and speakers through cpal.
//!
//! Contract: all PCM is `f32` in `[-1, 1]` at [`SAMPLE_RATE`], mono. Nothing here panics on what
//! comes from a network, a file or a device (corrupt packets, odd WAV files, wild timestamps):
//! that is an [`AudioError`], or for a received stream a concealed frame that is counted. Device
//! audio crosses threads only through lock-free `rtrb` rings, and the device data callbacks
//! never allocate, lock, log or panic: they convert into the ring, count over/underruns in
//! atomics, and return. Everything else (codec, stream decoding, WAV) is plain synchronous code
//! with no threads of its own.

mod backend;
mod codec;
mod device;
mod engine;
mod error;
mod feed;
mod jitter;
mod level;
mod mixer;
#[cfg(target_os = "linux")]
mod pulse;
mod rate;
mod stream;
mod voice;
mod wav;

pub use backend::{AudioBackend, CpalBackend, RatePolicy};
#[cfg(target_os = "linux")]
pub use pulse::PulseBackend;

/// The backend [`Capture::start`] and [`Playback::start`] use: cpal; the environment variable
/// [`BACKEND_ENV`] (`cpal` or `pulse`) overrides it. [`PulseBackend`] (Linux: streams through
/// libpulse, falling back to cpal when no PulseAudio server answers) is not the default yet.
///
/// Measured on this 2-core machine (`scripts/bench-audio.sh`, quiet machine): through libpulse
/// a listener of three speakers costs 4.0-6.1 % of a core against cpal's 7.5-10 %. But its
/// device layer adds 6-12 ms mouth to ear, and it glitches now and then: one impaired run
/// missed 12 of 50 chirps, the CLI's mic-to-speaker test failed 1 of 18 runs under load, and
/// after the jitter buffer stopped shrinking on single late pulls (which took cpal's PESQ at
/// 5 % loss to 3.06-3.90) its one run scored 2.86 there, with playback underruns. Until that
/// is understood cpal stays. (Real-time scheduling for its threads made it worse:
/// above a PulseAudio daemon that is not real-time, a listener's CPU more than doubled.)
pub fn system_backend() -> Box<dyn AudioBackend> {
    match backend_choice() {
        #[cfg(target_os = "linux")]
        BackendChoice::Pulse => Box::new(PulseBackend::new()),
        _ => Box::new(CpalBackend::new()),
    }
}

/// Which backend [`system_backend`] gives: `"pulse"` or `"cpal"`.
pub fn system_backend_name() -> &'static str {
    match backend_choice() {
        BackendChoice::Pulse => "pulse",
        BackendChoice::Cpal => "cpal",
    }
}

/// Chooses the device streams' backend: `cpal` (the default) or `pulse` (Linux).
pub const BACKEND_ENV: &str = "CONFAB_AUDIO_BACKEND";

#[derive(Clone, Copy)]
enum BackendChoice {
    Pulse,
    Cpal,
}

fn backend_choice() -> BackendChoice {
    let default = BackendChoice::Cpal;
    match std::env::var(BACKEND_ENV).as_deref() {
        Ok("pulse") if cfg!(target_os = "linux") => BackendChoice::Pulse,
        Ok("cpal") => BackendChoice::Cpal,
        Err(std::env::VarError::NotPresent) | Ok("") => default,
        Ok(other) => {
            warn_unknown_backend(other);
            default
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            warn_unknown_backend("(not UTF-8)");
            default
        }
    }
}

fn warn_unknown_backend(value: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            value,
            "{BACKEND_ENV} is neither `cpal` nor `pulse` (on Linux); using the default"
        );
    });
}
pub use codec::{Decoder, Encoded, Encoder, EncoderConfig, packet_has_fec};
#[cfg(feature = "test-support")]
pub use device::callbacks;
pub use device::{
    Capture, DeviceInfo, Playback, input_device_infos, input_devices, output_device_infos,
    output_devices,
};
pub use device::{Direction, StreamHealth};
pub use engine::{
    AudioEngine, ENGINE_SLOTS, EngineStats, Outgoing, PARK_AFTER, PARK_FOR, PLAYOUT_AHEAD,
    PLAYOUT_HIGH_WATER, PLAYOUT_LOW_WATER, SendSink, WAKE_EVERY,
};
pub use error::AudioError;
pub use feed::{DEFAULT_CUSHION, SpeakerFeed, TRIM_ANY_ABOVE, TRIM_QUIET_ABOVE};
pub use jitter::{
    FORCE_SHRINK_EXCESS, FrameKind, IDLE_AFTER, INITIAL_TARGET_DELAY, JITTER_WINDOW, JitterBuffer,
    JitterStats, LOSS_MEMORY, MAX_PACKETS, MAX_TARGET_DELAY, MIN_TARGET_DELAY, Pulled,
    SHRINK_INTERVAL, TARGET_DECAY_PER_SECOND,
};
pub use level::FrameLevel;
pub use mixer::{LIMIT_KNEE, MAX_GAIN, MIX_QUEUE, MIX_SLOTS, MixStats, Mixer};
pub use stream::{MAX_GAP_SAMPLES, PushOutcome, StreamDecoder, StreamStats};
pub use voice::{
    AGC_FALL_DB_PER_SECOND, AGC_MAX_GAIN_DB, AGC_MIN_GAIN_DB, AGC_RISE_DB_PER_SECOND,
    AGC_TARGET_DBFS, LIMITER_CEILING, VOICE_BLOCK, VoiceConfig, VoiceProcessor,
};
pub use wav::{WavWriter, read_wav};

/// The one sample rate of Confab's audio path (Opus, devices, files).
pub const SAMPLE_RATE: u32 = 48_000;

/// Samples in one 20 ms mono frame at [`SAMPLE_RATE`]: the unit of encoding and concealment.
pub const FRAME_SAMPLES: usize = 960;

/// The largest Opus frame in bytes: an encode buffer of this size always suffices.
pub const MAX_PACKET_BYTES: usize = 1275;

/// Samples in the longest Opus packet (120 ms): a decode buffer of this size always suffices.
pub const MAX_PACKET_SAMPLES: usize = FRAME_SAMPLES * 6;
