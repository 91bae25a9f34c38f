use std::path::PathBuf;

/// Everything that can go wrong in `confab-audio`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// libopus refused an operation (a corrupt packet when decoding, a bad setting, ...).
    #[error("Opus {op} failed: {source}")]
    Opus {
        /// What we asked Opus to do.
        op: &'static str,
        #[source]
        source: opus::Error,
    },

    /// An encoder setting is out of the range Opus accepts.
    #[error("invalid encoder setting {field} = {value}: {expected}")]
    InvalidEncoderConfig {
        field: &'static str,
        value: i32,
        expected: &'static str,
    },

    /// The encoder takes exactly one 20 ms frame at a time.
    #[error("expected a 20 ms frame of {expected} samples, got {got}")]
    FrameSize { expected: usize, got: usize },

    /// Voice processing takes 10 ms or 20 ms frames at 48 kHz (and an output as long as the input).
    #[error("voice processing takes 10 ms (480) or 20 ms (960) sample frames, got {got}")]
    VoiceFrameSize { got: usize },

    /// The audio worker thread could not be started.
    #[error("could not start the audio worker thread: {0}")]
    Worker(String),

    /// An output buffer is shorter than the operation needs.
    #[error("{what} buffer too small: need at least {needed}, got {got}")]
    BufferTooSmall {
        what: &'static str,
        needed: usize,
        got: usize,
    },

    /// An empty packet was given to decode; a lost packet is concealed with `Decoder::conceal`.
    #[error("empty Opus packet (use conceal() for a lost packet)")]
    EmptyPacket,

    /// A WAV file could not be read or written (missing, truncated, malformed, disk full).
    #[error("WAV file {}: {source}", path.display())]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },

    /// A WAV file's sample rate is outside the 8–192 kHz that `read_wav` resamples from.
    #[error(
        "WAV file {} is {rate} Hz but Confab reads {} to {} Hz; convert it first, e.g. \
         `sox in.wav -r 48000 -c 1 out.wav`",
        path.display(),
        crate::wav::MIN_WAV_RATE,
        crate::wav::MAX_WAV_RATE
    )]
    WavSampleRate { path: PathBuf, rate: u32 },

    /// A WAV file uses a sample layout Confab does not read.
    #[error(
        "WAV file {} has unsupported samples ({detail}); use 16/24/32-bit integer or 32-bit \
         float PCM, e.g. `sox in.wav -b 16 out.wav`",
        path.display()
    )]
    WavFormat { path: PathBuf, detail: String },

    /// The audio system has no default device in that direction.
    #[error("no default {direction} device (is a sound server running?)")]
    NoDefaultDevice { direction: &'static str },

    /// No device has the requested name.
    #[error("no {direction} device named {name:?}; available: {}", available.join(", "))]
    DeviceNotFound {
        direction: &'static str,
        name: String,
        available: Vec<String>,
    },

    /// The device offers no rate Confab converts from or to (8–384 kHz); devices that do
    /// not offer 48 kHz are otherwise resampled.
    #[error(
        "{direction} device {device:?} offers no sample rate Confab can use (it supports \
         {supported}; Confab converts {}-{} Hz); choose another device or set it to {} Hz \
         in the system's sound settings",
        crate::rate::MIN_DEVICE_RATE,
        crate::rate::MAX_DEVICE_RATE,
        crate::SAMPLE_RATE
    )]
    DeviceSampleRate {
        direction: &'static str,
        device: String,
        supported: String,
    },

    /// The device offers only sample formats Confab does not convert.
    #[error("{direction} device {device:?} offers no usable sample format (it offers {offered})")]
    DeviceSampleFormat {
        direction: &'static str,
        device: String,
        offered: String,
    },

    /// A sample-rate converter could not be set up for this pair of rates.
    #[error("cannot convert {from} Hz to {to} Hz: {detail}")]
    ResamplerSetup { from: u32, to: u32, detail: String },

    /// The audio backend (cpal and the sound server under it) failed.
    #[error("audio backend failed to {op}: {source}")]
    Backend {
        op: &'static str,
        #[source]
        source: cpal::Error,
    },
}

impl AudioError {
    pub(crate) fn opus(op: &'static str) -> impl FnOnce(opus::Error) -> AudioError {
        move |source| AudioError::Opus { op, source }
    }

    pub(crate) fn backend(op: &'static str) -> impl FnOnce(cpal::Error) -> AudioError {
        move |source| AudioError::Backend { op, source }
    }
}
