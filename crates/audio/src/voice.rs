//! The microphone's voice processing: what the capture side of the audio worker does to each
//! 10 or 20 ms frame before it is encoded.
//!
//! The chain, in order, each stage switchable at run time:
//!
//! 1. **High-pass** at 80 Hz (4th-order Butterworth): rumble, desk knocks, mains hum.
//! 2. **Echo cancellation** (WebRTC's AEC3 through the pure-Rust [`sonora`] port): removes what
//!    the speaker played (the far end, given to [`VoiceProcessor::push_far_end`]) from what the
//!    microphone heard. It runs before noise suppression because it models the echo path as a
//!    linear filter, which a non-linear suppressor in front would break.
//! 3. **Noise suppression** ([`nnnoiseless`], the RNNoise port), which also gives the voice
//!    activity probability behind [`VoiceProcessor::is_speech`] (the speaking ring). It runs
//!    even when suppression is off, for that probability, and the two are cross-faded so a
//!    switch does not click.
//! 4. **Automatic gain control** toward [`AGC_TARGET_DBFS`] over speech frames only, then a
//!    peak limiter so nothing leaves at or above full scale.
//!
//! Latency: RNNoise's overlap-add delays its output by one 10 ms block, and that delay is kept
//! when suppression is off (the bypass is delayed to match) so switching it never skips or
//! repeats audio. The whole chain delays the microphone by 10 ms.
//!
//! Contract: frames are 48 kHz mono `f32`; anything is accepted as a sample value (NaN and
//! infinities count as silence, values beyond full scale are clipped on the way in) and the
//! output is always finite and within `[-1, 1]`. [`VoiceProcessor::process`] and
//! [`VoiceProcessor::push_far_end`] do not allocate after construction except inside AEC3
//! (see [`VoiceProcessor`]).
//!
//! Measured (tests below and `examples/voice_figures.rs`, 10 ms blocks, this 2-core machine):
//! pink noise at 5 dB SNR is ~26 dB quieter in speech pauses (white ~29 dB) while speech's
//! correlation with the clean take rises from 0.88 to 0.97; the speaking flag is on for ~100 %
//! of speech blocks and ~7 % (pink) / 0 % (white) of noise-only blocks once RNNoise has heard
//! the noise for a second; speech at -40 dBFS reaches ~-22 dBFS within 3–4 s; the whole chain
//! costs 3.1–4.0 % of one core's real time (varying with the machine's other load), 2.2–2.9 %
//! of it AEC3, ~0.7 % RNNoise, under 0.1 % each for the high-pass, AGC and limiter.
//!
//! # Why sonora for echo cancellation
//!
//! Both pure-Rust AEC3 ports build here (`aec3` 0.4, `sonora` 0.2) and both work, so they were
//! measured on the same simulated room (`examples/voice_figures.rs`): speech-like far end through
//! a 40, 80 or 120 ms delay and a 30 ms reverberant room at -6 dB, near-end speech alone and in
//! double talk, a -70 dBFS noise floor, no delay hint, 10 ms frames. ERLE is echo energy over
//! output energy while only the far end talks.
//!
//! | delay | crate  | ERLE 0.5–2 s | ERLE 2–8 s | after double talk | near end alone | double talk (corr.) | CPU | allocations / 10 ms |
//! |-------|--------|------|------|------|-----------------|------|--------|----|
//! | 40 ms | sonora | 29.5 | 43.3 | 56.6 | -0.0 dB, 0.999  | 0.85 | 2.1 %  | 40 |
//! | 40 ms | aec3   | 29.1 | 34.9 | 55.7 | -0.1 dB, 0.986  | 0.85 | 2.1 %  | 67 |
//! | 80 ms | sonora | 33.0 | 44.0 | 56.7 | -0.0 dB, 0.999  | 0.84 | 2.2 %  | 40 |
//! | 80 ms | aec3   | 36.8 | 43.7 | 56.2 | -0.1 dB, 0.986  | 0.85 | 3.1 %  | 67 |
//! | 120 ms| sonora | 17.7 | 43.7 | 56.0 | -0.0 dB, 0.999  | 0.81 | 2.3 %  | 40 |
//! | 120 ms| aec3   | 19.6 | 44.2 | 56.6 | -0.1 dB, 0.986  | 0.83 | 3.6 %  | 67 |
//!
//! Echo removal is a tie once converged (~44 dB, ~56 dB after double talk). sonora is kept: it
//! passes the near end untouched (correlation 0.999 against 0.986: `aec3`'s graph path colours
//! it slightly), costs less CPU, allocates less per frame (neither allocates nothing: see
//! `tests/no_alloc`), and its API is a plain frame-in/frame-out call where `aec3` routes every
//! frame through a packet graph. Its price: it needs Rust 1.91, so the workspace's
//! `rust-version` moved from 1.90.

use nnnoiseless::DenoiseState;

use crate::AudioError;

/// Samples in one 10 ms block: the unit every stage works in (RNNoise's frame, AEC3's frame).
pub const VOICE_BLOCK: usize = 480;

/// The speech level the gain control aims for, as RMS over speech frames (dBFS).
pub const AGC_TARGET_DBFS: f32 = -20.0;

/// The most the gain control amplifies (dB): enough for a quiet laptop microphone, not so much
/// that a far-away voice drags the room's noise up with it.
pub const AGC_MAX_GAIN_DB: f32 = 20.0;

/// The most the gain control attenuates (dB); the limiter handles anything louder.
pub const AGC_MIN_GAIN_DB: f32 = -12.0;

/// How fast the gain may rise (dB per second of speech): slow, so a pause or a soft word does
/// not pump the noise floor.
pub const AGC_RISE_DB_PER_SECOND: f32 = 8.0;

/// How fast the gain may fall (dB per second): fast, so a shout is tamed within a syllable
/// and the limiter does not have to work for long.
pub const AGC_FALL_DB_PER_SECOND: f32 = 40.0;

/// The limiter's ceiling (about -1 dBFS): peaks never go above this.
pub const LIMITER_CEILING: f32 = 0.89;

/// Which stages run. All on by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoiceConfig {
    /// High-pass filter at 80 Hz.
    pub high_pass: bool,
    /// Echo cancellation against the frames given to [`VoiceProcessor::push_far_end`].
    pub echo_cancel: bool,
    /// RNNoise noise suppression (voice activity is computed either way).
    pub noise_suppression: bool,
    /// Automatic gain control toward [`AGC_TARGET_DBFS`].
    pub agc: bool,
}

impl Default for VoiceConfig {
    fn default() -> Self {
        VoiceConfig {
            high_pass: true,
            echo_cancel: true,
            noise_suppression: true,
            agc: true,
        }
    }
}

/// The microphone's voice processing chain: high-pass, echo cancellation, noise suppression,
/// gain control and a limiter (the `voice` module's docs give the why and the measurements).
///
/// Feed the far end (what went to the speaker, the mix of everyone else) with
/// [`push_far_end`](Self::push_far_end) as it is played, and each microphone frame with
/// [`process`](Self::process), in the same 10 ms cadence; the echo canceller finds the delay
/// between the two itself (up to a few hundred milliseconds).
///
/// Allocation: our stages and RNNoise allocate nothing after [`new`](Self::new). `sonora`'s
/// AEC3 does: ~40 small allocations per 10 ms while echo cancellation is on (its per-block
/// scratch vectors in `EchoRemover::process_capture`), measured and bounded in
/// `tests/no_alloc`. Turning echo cancellation back on rebuilds AEC3, which allocates too.
pub struct VoiceProcessor {
    config: VoiceConfig,
    high_pass: HighPass,
    echo: sonora::AudioProcessing,
    /// Whether the echo canceller has seen audio since it was last reset (a reset is only
    /// needed when it is switched back on).
    echo_stale: bool,
    denoise: Box<DenoiseState<'static>>,
    /// One block of input, scaled to RNNoise's 16-bit range.
    ns_in: [f32; VOICE_BLOCK],
    /// RNNoise's output for the previous block.
    ns_out: [f32; VOICE_BLOCK],
    /// The previous block unsuppressed: the bypass, delayed like RNNoise's output.
    ns_bypass: [f32; VOICE_BLOCK],
    /// 1.0 = suppressed output, 0.0 = bypass; ramps across a block when switched.
    ns_mix: f32,
    /// The voice activity of the block now leaving RNNoise (the previous input block).
    vad_current: f32,
    vad: Vad,
    agc: Agc,
    limiter: Limiter,
    /// The block being worked on.
    block: [f32; VOICE_BLOCK],
    /// A far-end block, cleaned of NaN before AEC3 sees it.
    far: [f32; VOICE_BLOCK],
    /// Where AEC3 writes its render output (unused, AEC3 does not change the far end).
    far_out: [f32; VOICE_BLOCK],
}

impl VoiceProcessor {
    /// A processor with the given stages on. Allocates everything it will ever need.
    pub fn new(config: VoiceConfig) -> Self {
        VoiceProcessor {
            config,
            high_pass: HighPass::new(80.0),
            echo: new_echo_canceller(),
            echo_stale: false,
            denoise: DenoiseState::new(),
            ns_in: [0.0; VOICE_BLOCK],
            ns_out: [0.0; VOICE_BLOCK],
            ns_bypass: [0.0; VOICE_BLOCK],
            ns_mix: if config.noise_suppression { 1.0 } else { 0.0 },
            vad_current: 0.0,
            vad: Vad::default(),
            agc: Agc::default(),
            limiter: Limiter::default(),
            block: [0.0; VOICE_BLOCK],
            far: [0.0; VOICE_BLOCK],
            far_out: [0.0; VOICE_BLOCK],
        }
    }

    /// The stages now on.
    pub fn config(&self) -> VoiceConfig {
        self.config
    }

    /// Switches stages on or off; takes effect at the next frame, without a click.
    pub fn set_config(&mut self, config: VoiceConfig) {
        if config.echo_cancel && !self.config.echo_cancel {
            // What it learnt of the room may be stale (headphones unplugged, laptop moved).
            self.echo_stale = true;
        }
        if config.agc && !self.config.agc {
            self.agc.reset();
        }
        self.config = config;
    }

    /// Switches the high-pass filter.
    pub fn set_high_pass(&mut self, on: bool) {
        self.set_config(VoiceConfig {
            high_pass: on,
            ..self.config
        });
    }

    /// Switches echo cancellation.
    pub fn set_echo_cancel(&mut self, on: bool) {
        self.set_config(VoiceConfig {
            echo_cancel: on,
            ..self.config
        });
    }

    /// Switches noise suppression (voice activity keeps working).
    pub fn set_noise_suppression(&mut self, on: bool) {
        self.set_config(VoiceConfig {
            noise_suppression: on,
            ..self.config
        });
    }

    /// Switches automatic gain control (the limiter stays on).
    pub fn set_agc(&mut self, on: bool) {
        self.set_config(VoiceConfig {
            agc: on,
            ..self.config
        });
    }

    /// Gives the echo canceller a frame of what is being played (10 or 20 ms). Call it once per
    /// played frame, in the same cadence as [`process`](Self::process). Ignored while echo
    /// cancellation is off.
    pub fn push_far_end(&mut self, frame: &[f32]) -> Result<(), AudioError> {
        check_frame(frame.len())?;
        if !self.config.echo_cancel {
            return Ok(());
        }
        self.reset_echo_if_stale();
        for chunk in frame.chunks_exact(VOICE_BLOCK) {
            for (dst, &src) in self.far.iter_mut().zip(chunk) {
                *dst = sanitize(src);
            }
            // Only fails on a wrong frame shape, which `check_frame` and the fixed block size
            // rule out; a far end it cannot use is only a worse echo estimate.
            let _ = self
                .echo
                .process_render_f32(&[&self.far], &mut [&mut self.far_out]);
        }
        Ok(())
    }

    /// Processes one microphone frame (10 or 20 ms) into `output` (the same length).
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) -> Result<(), AudioError> {
        check_frame(input.len())?;
        if output.len() != input.len() {
            return Err(AudioError::VoiceFrameSize { got: output.len() });
        }
        self.reset_echo_if_stale();
        for (inp, out) in input
            .chunks_exact(VOICE_BLOCK)
            .zip(output.chunks_exact_mut(VOICE_BLOCK))
        {
            self.process_block(inp, out);
        }
        Ok(())
    }

    /// Whether the microphone carries speech now (smoothed, with a short hang-over so the
    /// speaking ring does not flicker between words).
    pub fn is_speech(&self) -> bool {
        self.vad.speaking
    }

    /// A smoothed speech probability in [0, 1]: rises within a block or two, decays over
    /// about 150 ms. For a meter or a ring's intensity.
    pub fn speech_level(&self) -> f32 {
        self.vad.level
    }

    /// The gain control's current gain in dB (0 while it is off).
    pub fn agc_gain_db(&self) -> f32 {
        if self.config.agc {
            self.agc.gain_db
        } else {
            0.0
        }
    }

    fn reset_echo_if_stale(&mut self) {
        if self.echo_stale {
            // Rebuilding AEC3 allocates, but only here, when a user switches echo cancellation
            // back on, never in a steady stream.
            self.echo = new_echo_canceller();
            self.echo_stale = false;
        }
    }

    fn process_block(&mut self, input: &[f32], output: &mut [f32]) {
        for (dst, &src) in self.block.iter_mut().zip(input) {
            *dst = sanitize(src);
        }

        // The filter runs even when off so that switching it on starts from a settled state.
        if self.config.high_pass {
            self.high_pass.process(&mut self.block);
        } else {
            self.high_pass.reset();
        }

        if self.config.echo_cancel {
            let mut processed = [0f32; VOICE_BLOCK];
            // Fails only on a frame shape ruled out above; then the block passes unchanged.
            if self
                .echo
                .process_capture_f32(&[&self.block], &mut [&mut processed])
                .is_ok()
            {
                for (dst, src) in self.block.iter_mut().zip(processed) {
                    *dst = sanitize(src);
                }
            }
        }

        // RNNoise: its output is the previous block, so the bypass is the previous block too.
        for (dst, &src) in self.ns_in.iter_mut().zip(&self.block) {
            *dst = src * I16_SCALE;
        }
        let vad = self.denoise.process_frame(&mut self.ns_out, &self.ns_in);
        let vad = if vad.is_finite() {
            vad.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let target_mix = if self.config.noise_suppression {
            1.0
        } else {
            0.0
        };
        let step = (target_mix - self.ns_mix) / VOICE_BLOCK as f32;
        for i in 0..VOICE_BLOCK {
            let mix = self.ns_mix + step * (i + 1) as f32;
            let suppressed = sanitize(self.ns_out[i] / I16_SCALE);
            let bypass = self.ns_bypass[i];
            self.ns_bypass[i] = self.block[i];
            self.block[i] = bypass + (suppressed - bypass) * mix;
        }
        self.ns_mix = target_mix;
        // The block now in hand is the one RNNoise judged last time.
        let vad_block = std::mem::replace(&mut self.vad_current, vad);
        self.vad.update(vad_block);

        if self.config.agc {
            self.agc.process(&mut self.block, vad_block);
        }
        self.limiter.process(&mut self.block);

        for (dst, &src) in output.iter_mut().zip(&self.block) {
            *dst = sanitize(src);
        }
    }
}

/// RNNoise works on 16-bit sample values held in `f32`.
const I16_SCALE: f32 = 32768.0;

fn new_echo_canceller() -> sonora::AudioProcessing {
    let mono = sonora::StreamConfig::new(crate::SAMPLE_RATE, 1);
    let mut echo = sonora::AudioProcessing::builder()
        .config(sonora::Config {
            echo_canceller: Some(sonora::config::EchoCanceller {
                // Our own high-pass runs first; a second one would only add phase shift.
                enforce_high_pass_filtering: false,
                ..Default::default()
            }),
            ..Default::default()
        })
        .capture_config(mono)
        .render_config(mono)
        .build();
    // No hint: the delay between playing and hearing again depends on devices and drivers we
    // cannot see, and AEC3's own estimator finds it (measured up to 120 ms; see the tests).
    let _ = echo.set_stream_delay_ms(0);
    echo
}

fn check_frame(len: usize) -> Result<(), AudioError> {
    if len == VOICE_BLOCK || len == 2 * VOICE_BLOCK {
        Ok(())
    } else {
        Err(AudioError::VoiceFrameSize { got: len })
    }
}

/// NaN and infinities become silence; anything beyond full scale is clipped to it.
fn sanitize(x: f32) -> f32 {
    if x.is_finite() {
        x.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// A 4th-order Butterworth high-pass as two biquads (RBJ cookbook coefficients, f64 state).
///
/// Hand-written rather than a DSP crate: it is twenty lines, has no allocation or dynamic
/// dispatch, and AEC3's own high-pass is fixed to its 16 kHz band and fixed cut-off. Fourth
/// order because a 2nd-order filter low enough to leave a deep voice's fundamental alone
/// (~85 Hz) takes only ~19 dB off 30 Hz hum; this one takes ~34 dB off and 0.7 dB off 100 Hz.
/// The state is f64 because a pole this close to 1 (80 Hz at 48 kHz) loses precision in f32.
struct HighPass {
    sections: [Biquad; 2],
}

impl HighPass {
    fn new(cutoff_hz: f64) -> Self {
        // The Q of each section of a 4th-order Butterworth: 1 / (2 cos(pi/8)), 1 / (2 cos(3pi/8)).
        HighPass {
            sections: [
                Biquad::high_pass(cutoff_hz, 0.541_196_1),
                Biquad::high_pass(cutoff_hz, 1.306_563),
            ],
        }
    }

    fn process(&mut self, block: &mut [f32]) {
        for x in block.iter_mut() {
            let mut y = *x as f64;
            for s in &mut self.sections {
                y = s.step(y);
            }
            *x = y as f32;
        }
    }

    fn reset(&mut self) {
        for s in &mut self.sections {
            s.z = [0.0; 2];
        }
    }
}

/// One second-order section, transposed direct form II.
struct Biquad {
    b: [f64; 3],
    a: [f64; 2],
    z: [f64; 2],
}

impl Biquad {
    fn high_pass(cutoff_hz: f64, q: f64) -> Self {
        let w0 = 2.0 * std::f64::consts::PI * cutoff_hz / crate::SAMPLE_RATE as f64;
        let alpha = w0.sin() / (2.0 * q);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        Biquad {
            b: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
            ],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    fn step(&mut self, x: f64) -> f64 {
        let y = self.b[0] * x + self.z[0];
        self.z[0] = self.b[1] * x - self.a[0] * y + self.z[1];
        self.z[1] = self.b[2] * x - self.a[1] * y;
        y
    }
}

/// Voice activity for the speaking ring, from RNNoise's per-block probability.
#[derive(Default)]
struct Vad {
    level: f32,
    speaking: bool,
    /// Blocks left before `speaking` drops after the probability fell.
    hang: u32,
}

impl Vad {
    /// Probability from which a block is speech (RNNoise gives 0.1–0.4 for steady noise it has
    /// learnt, 0.9+ for voiced speech).
    const ON: f32 = 0.6;
    /// Hang-over: 200 ms, so the ring does not flicker between words.
    const HANG_BLOCKS: u32 = 20;

    fn update(&mut self, probability: f32) {
        // Fast rise, ~150 ms fall: a level that follows syllables without flicker.
        let coeff = if probability > self.level { 0.5 } else { 0.065 };
        self.level += (probability - self.level) * coeff;
        if probability >= Self::ON {
            self.speaking = true;
            self.hang = Self::HANG_BLOCKS;
        } else if self.hang > 0 {
            self.hang -= 1;
        } else {
            self.speaking = false;
        }
    }
}

/// Gain control toward [`AGC_TARGET_DBFS`].
///
/// The speech level is a power average over blocks RNNoise calls speech (so pauses, breath and
/// room noise do not count), and the gain moves toward `target - level` only during speech:
/// silence keeps the gain it had and is never raised on its own.
struct Agc {
    /// Average power of speech blocks (full scale = 1.0).
    speech_power: f32,
    gain_db: f32,
}

impl Default for Agc {
    fn default() -> Self {
        Agc {
            speech_power: db_to_gain(AGC_TARGET_DBFS).powi(2),
            gain_db: 0.0,
        }
    }
}

impl Agc {
    /// Probability above which a block counts as speech for the level.
    const SPEECH: f32 = 0.7;
    /// Blocks quieter than this are not speech whatever RNNoise says (-60 dBFS).
    const FLOOR_POWER: f32 = 1e-6;
    /// Weight of one block in the speech level: a time constant of ~0.4 s of speech.
    const LEVEL_COEFF: f32 = 0.025;

    fn reset(&mut self) {
        *self = Agc::default();
    }

    fn process(&mut self, block: &mut [f32; VOICE_BLOCK], vad: f32) {
        let power = block.iter().map(|x| x * x).sum::<f32>() / VOICE_BLOCK as f32;
        let previous = db_to_gain(self.gain_db);
        if vad >= Self::SPEECH && power >= Self::FLOOR_POWER {
            self.speech_power += (power - self.speech_power) * Self::LEVEL_COEFF;
            let level_db = 10.0 * self.speech_power.max(1e-12).log10();
            let wanted = (AGC_TARGET_DBFS - level_db).clamp(AGC_MIN_GAIN_DB, AGC_MAX_GAIN_DB);
            let seconds = VOICE_BLOCK as f32 / crate::SAMPLE_RATE as f32;
            let change = (wanted - self.gain_db).clamp(
                -AGC_FALL_DB_PER_SECOND * seconds,
                AGC_RISE_DB_PER_SECOND * seconds,
            );
            self.gain_db += change;
        }
        // Ramp across the block so a gain change never steps mid-waveform.
        let next = db_to_gain(self.gain_db);
        let step = (next - previous) / VOICE_BLOCK as f32;
        for (i, x) in block.iter_mut().enumerate() {
            *x *= previous + step * (i + 1) as f32;
        }
    }
}

/// A peak limiter: the gain drops at once to keep every sample under [`LIMITER_CEILING`] and
/// recovers over ~50 ms. Transparent below the ceiling.
struct Limiter {
    envelope: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            envelope: LIMITER_CEILING,
        }
    }
}

impl Limiter {
    /// Per-sample decay of the envelope toward the ceiling: a ~50 ms release.
    const RELEASE: f32 = 0.999_583;

    fn process(&mut self, block: &mut [f32; VOICE_BLOCK]) {
        for x in block.iter_mut() {
            let peak = x.abs();
            self.envelope = (self.envelope * Self::RELEASE)
                .max(peak)
                .max(LIMITER_CEILING);
            *x *= LIMITER_CEILING / self.envelope;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_testkit::signal::{align, echo_path, pink_noise, rms, speech_like, white_noise};

    const RATE: usize = crate::SAMPLE_RATE as usize;
    /// RNNoise's one-block delay: where an input sample comes out.
    const NS_DELAY: usize = VOICE_BLOCK;

    fn only(f: impl FnOnce(&mut VoiceConfig)) -> VoiceConfig {
        let mut c = VoiceConfig {
            high_pass: false,
            echo_cancel: false,
            noise_suppression: false,
            agc: false,
        };
        f(&mut c);
        c
    }

    /// Runs `mic` (and the far end, frame by frame before each mic frame) through `p`.
    fn run(p: &mut VoiceProcessor, mic: &[f32], far: Option<&[f32]>, frame: usize) -> Vec<f32> {
        let n = mic.len() / frame * frame;
        let mut out = vec![0f32; n];
        for i in (0..n).step_by(frame) {
            if let Some(far) = far {
                p.push_far_end(&far[i..i + frame]).unwrap();
            }
            p.process(&mic[i..i + frame], &mut out[i..i + frame])
                .unwrap();
        }
        out
    }

    fn db(ratio: f64) -> f64 {
        10.0 * ratio.max(1e-20).log10()
    }

    fn dbfs(x: &[f32]) -> f64 {
        20.0 * rms(x).max(1e-10).log10()
    }

    fn sine(freq: f64, amplitude: f32, seconds: f64) -> Vec<f32> {
        (0..(seconds * RATE as f64) as usize)
            .map(|i| {
                amplitude
                    * (2.0 * std::f64::consts::PI * freq * i as f64 / RATE as f64).sin() as f32
            })
            .collect()
    }

    /// Speech in `[start, end)` seconds, silence elsewhere.
    fn gate(signal: &mut [f32], segments: &[(f64, f64)]) {
        for (i, s) in signal.iter_mut().enumerate() {
            let t = i as f64 / RATE as f64;
            if !segments.iter().any(|&(a, b)| t >= a && t < b) {
                *s = 0.0;
            }
        }
    }

    fn secs(t: f64) -> usize {
        (t * RATE as f64) as usize
    }

    #[test]
    fn high_pass_removes_hum_and_keeps_the_voice_band() {
        let mut on = VoiceProcessor::new(only(|c| c.high_pass = true));
        let hum = sine(30.0, 0.5, 2.0);
        let out = run(&mut on, &hum, None, VOICE_BLOCK);
        let loss = dbfs(&hum[RATE..]) - dbfs(&out[RATE..]);
        assert!(loss >= 20.0, "30 Hz hum only {loss:.1} dB down");

        let mut on = VoiceProcessor::new(only(|c| c.high_pass = true));
        let tone = sine(1000.0, 0.5, 2.0);
        let out = run(&mut on, &tone, None, VOICE_BLOCK);
        let change = dbfs(&out[RATE..]) - dbfs(&tone[RATE..]);
        assert!(change.abs() <= 1.0, "1 kHz changed by {change:.2} dB");

        // Switched off, the hum passes: the stage is what removed it.
        let mut off = VoiceProcessor::new(only(|_| {}));
        let out = run(&mut off, &hum, None, VOICE_BLOCK);
        let loss = dbfs(&hum[RATE..]) - dbfs(&out[RATE..]);
        assert!(
            loss.abs() < 0.5,
            "hum changed by {loss:.1} dB with the filter off"
        );
    }

    /// Clean speech in two 4 s stretches with silence around, and the same plus stationary
    /// pink noise at 5 dB SNR (against the speech's level while it plays).
    fn noisy_speech() -> (Vec<f32>, Vec<f32>) {
        let mut clean = speech_like(12.0, 7);
        gate(&mut clean, &[(1.0, 5.0), (6.5, 10.5)]);
        let speech_rms = rms(&clean[secs(1.0)..secs(5.0)]);
        let noise = pink_noise(12.0, speech_rms / 10f64.powf(5.0 / 20.0), 8);
        let noisy = clean.iter().zip(&noise).map(|(s, n)| s + n).collect();
        (clean, noisy)
    }

    /// Noise-only stretches (the second pause and the tail, after RNNoise has heard noise
    /// for a while: in its first second it calls pink noise speech half the time), and the
    /// speech stretches, in seconds.
    const NOISE_ONLY: [(f64, f64); 2] = [(5.3, 6.4), (10.8, 12.0)];
    const SPEECH: [(f64, f64); 2] = [(1.0, 5.0), (6.5, 10.5)];

    fn segment(x: &[f32], (a, b): (f64, f64), delay: usize) -> &[f32] {
        &x[secs(a) + delay..(secs(b) + delay).min(x.len())]
    }

    #[test]
    fn noise_suppression_removes_stationary_noise_and_keeps_speech() {
        let (clean, noisy) = noisy_speech();
        let mut on = VoiceProcessor::new(only(|c| c.noise_suppression = true));
        let out = run(&mut on, &noisy, None, VOICE_BLOCK);
        let mut off = VoiceProcessor::new(only(|_| {}));
        let bypass = run(&mut off, &noisy, None, 2 * VOICE_BLOCK);

        for seg in NOISE_ONLY {
            let drop = dbfs(segment(&noisy, seg, 0)) - dbfs(segment(&out, seg, NS_DELAY));
            eprintln!("noise-only {seg:?}: {drop:.1} dB quieter with suppression");
            assert!(drop >= 15.0, "noise only {drop:.1} dB down in {seg:?}");
            let unchanged = dbfs(segment(&noisy, seg, 0)) - dbfs(segment(&bypass, seg, NS_DELAY));
            assert!(
                unchanged.abs() < 0.1,
                "suppression off changed noise by {unchanged:.2} dB"
            );
        }
        for seg in SPEECH {
            let reference = segment(&clean, seg, 0);
            let before = align(&noisy, reference, reference.len()).unwrap();
            let after = align(&out, reference, reference.len()).unwrap();
            let passed = align(&bypass, reference, reference.len()).unwrap();
            eprintln!(
                "speech {seg:?}: correlation with clean {:.3} noisy, {:.3} suppressed, {:.3} bypass; \
                 lag {} ",
                before.ncc,
                after.ncc,
                passed.ncc,
                after.lag - secs(seg.0) as i64
            );
            assert_eq!(after.lag - secs(seg.0) as i64, NS_DELAY as i64, "{after:?}");
            assert!(after.ncc >= 0.9, "speech mangled: {after:?}");
            assert!(
                after.ncc > before.ncc,
                "no better than the noisy input: {after:?} vs {before:?}"
            );
            // Off, only the limiter may touch the odd peak above -1 dBFS.
            assert!(
                (passed.ncc - before.ncc).abs() < 0.01,
                "bypass changed speech: {passed:?}"
            );
            // Speech keeps its level (within 3 dB) rather than being ducked with the noise.
            let level = dbfs(segment(&out, seg, NS_DELAY)) - dbfs(reference);
            assert!(level.abs() <= 3.0, "speech level changed by {level:.1} dB");
        }
    }

    #[test]
    fn voice_activity_flags_speech_and_not_noise() {
        let (clean, noisy) = noisy_speech();
        for (name, mic) in [("clean", &clean), ("noisy", &noisy)] {
            let mut p = VoiceProcessor::new(only(|c| c.noise_suppression = true));
            let mut flags = Vec::new();
            let mut out = [0f32; VOICE_BLOCK];
            for block in mic.chunks_exact(VOICE_BLOCK) {
                p.process(block, &mut out).unwrap();
                flags.push(p.is_speech());
            }
            // Block k of the output is input block k-1: judge it against that.
            let truth = |k: usize| {
                let start = k.checked_sub(1)? * VOICE_BLOCK;
                Some(rms(&clean[start..start + VOICE_BLOCK]))
            };
            let (mut speech, mut speech_hit, mut quiet, mut quiet_hit) = (0, 0, 0, 0);
            for (k, &flag) in flags.iter().enumerate() {
                let t = (k * VOICE_BLOCK) as f64 / RATE as f64;
                let Some(level) = truth(k) else { continue };
                if SPEECH.iter().any(|&(a, b)| t >= a && t < b) && level > 0.02 {
                    speech += 1;
                    speech_hit += flag as usize;
                } else if NOISE_ONLY.iter().any(|&(a, b)| t >= a && t < b) {
                    quiet += 1;
                    quiet_hit += flag as usize;
                }
            }
            let speech_rate = speech_hit as f64 / speech as f64;
            let quiet_rate = quiet_hit as f64 / quiet as f64;
            eprintln!(
                "{name}: {speech_rate:.2} of {speech} speech blocks flagged, {quiet_rate:.2} of {quiet} quiet"
            );
            assert!(
                speech_rate >= 0.8,
                "{name}: speech flagged only {speech_rate:.2}"
            );
            assert!(
                quiet_rate <= 0.1,
                "{name}: silence or noise flagged {quiet_rate:.2}"
            );
        }
    }

    /// Speech scaled so its RMS while it plays is `dbfs`.
    fn speech_at(dbfs_level: f64, seconds: f64, seed: u64) -> Vec<f32> {
        let mut s = speech_like(seconds, seed);
        let level = rms(&s);
        let scale = 10f64.powf(dbfs_level / 20.0) / level;
        s.iter_mut().for_each(|x| *x = (*x as f64 * scale) as f32);
        s
    }

    #[test]
    fn agc_brings_quiet_speech_up_never_clips_and_leaves_silence_alone() {
        // Quiet speech (a laptop microphone across the room).
        let quiet = speech_at(-40.0, 8.0, 21);
        let mut p = VoiceProcessor::new(only(|c| c.agc = true));
        let out = run(&mut p, &quiet, None, VOICE_BLOCK);
        let levels: Vec<f64> = (0..8)
            .map(|s| dbfs(&out[s * RATE..((s + 1) * RATE).min(out.len())]))
            .collect();
        eprintln!(
            "quiet speech at -40 dBFS, output per second: {levels:.1?}, gain {:.1} dB",
            p.agc_gain_db()
        );
        assert!(
            levels[4..].iter().all(|l| (-25.0..=-17.0).contains(l)),
            "{levels:.1?}"
        );

        // Without it the level stays where it was.
        let mut off = VoiceProcessor::new(only(|_| {}));
        let flat = run(&mut off, &quiet, None, VOICE_BLOCK);
        assert!((dbfs(&flat[4 * RATE..]) + 40.0).abs() < 1.0);

        // Loud speech peaking above full scale: brought down, never clipped.
        let loud = speech_at(-6.0, 6.0, 22);
        let peak_in = loud.iter().fold(0f32, |m, x| m.max(x.abs()));
        let mut p = VoiceProcessor::new(only(|c| c.agc = true));
        let out = run(&mut p, &loud, None, VOICE_BLOCK);
        let peak = out.iter().fold(0f32, |m, x| m.max(x.abs()));
        eprintln!(
            "loud speech: input peak {peak_in:.2}, output peak {peak:.3}, level {:.1} dBFS",
            dbfs(&out[3 * RATE..])
        );
        assert!(peak <= LIMITER_CEILING + 1e-6, "peak {peak}");
        assert!((dbfs(&out[3 * RATE..]) - AGC_TARGET_DBFS as f64).abs() <= 4.0);

        // Room tone alone (no speech): not raised.
        let room = white_noise(6.0, 10f64.powf(-60.0 / 20.0), 23);
        let mut p = VoiceProcessor::new(only(|c| c.agc = true));
        let out = run(&mut p, &room, None, VOICE_BLOCK);
        let raised = dbfs(&out[RATE..]) - dbfs(&room[RATE..]);
        eprintln!(
            "room tone at -60 dBFS raised by {raised:.1} dB, gain {:.1} dB",
            p.agc_gain_db()
        );
        assert!(raised <= 1.0, "silence raised by {raised:.1} dB");
    }

    /// Far-end speech alone 0–6 s, near-end speech alone 6–9 s, both 9–12 s; the far end
    /// reaches the microphone through an 80 ms delay and a 30 ms room at -6 dB.
    fn echo_scene() -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut far = speech_like(12.0, 31);
        gate(&mut far, &[(0.0, 6.0), (9.0, 12.0)]);
        let mut near = speech_like(12.0, 32);
        gate(&mut near, &[(6.0, 12.0)]);
        near.iter_mut().for_each(|x| *x *= 0.5);
        let echo = echo_path(&far, 80.0, 30.0, 0.3, 33);
        let floor = white_noise(12.0, 3e-4, 34);
        let mic = (0..far.len())
            .map(|i| echo[i] + near[i] + floor[i])
            .collect();
        (far, near, echo, mic)
    }

    #[test]
    fn echo_cancellation_removes_the_far_end_and_keeps_the_near_end() {
        let (far, near, echo, mic) = echo_scene();
        let mut on = VoiceProcessor::new(only(|c| c.echo_cancel = true));
        let out = run(&mut on, &mic, Some(&far), 2 * VOICE_BLOCK);
        let mut off = VoiceProcessor::new(only(|_| {}));
        let raw = run(&mut off, &mic, Some(&far), 2 * VOICE_BLOCK);

        // After two seconds to converge, during far-end-only speech.
        let erle = |out: &[f32]| {
            let e: f64 = echo[secs(2.0)..secs(6.0)]
                .iter()
                .map(|x| (*x as f64).powi(2))
                .sum();
            let r: f64 = out[secs(2.0)..secs(6.0)]
                .iter()
                .map(|x| (*x as f64).powi(2))
                .sum();
            db(e / r)
        };
        eprintln!("ERLE {:.1} dB on, {:.1} dB off", erle(&out), erle(&raw));
        assert!(erle(&out) >= 30.0, "ERLE {:.1} dB", erle(&out));
        assert!(erle(&raw).abs() < 1.0);

        let near_only = &near[secs(6.3)..secs(9.0)];
        let a = align(&out, near_only, near_only.len()).unwrap();
        let level =
            dbfs(&out[(secs(6.3) as i64 + a.lag - secs(6.3) as i64) as usize..][..near_only.len()])
                - dbfs(near_only);
        eprintln!("near end alone: {a:?}, level {level:+.1} dB");
        assert!(a.ncc >= 0.95 && level.abs() <= 1.0, "{a:?} {level:.1} dB");

        // Double talk, at the lag the near end alone came out with: AEC3 ducks the near end
        // while the echo is as loud as it (these two synthetic voices share a spectrum), but
        // it must stay clearly more present than the echo.
        let lag = (a.lag - secs(6.3) as i64) as usize;
        let ncc = |x: &[f32], lag: usize| {
            let (a, b) = (secs(9.5), secs(11.9));
            let dot: f64 = (a..b).map(|i| near[i] as f64 * x[i + lag] as f64).sum();
            let e1: f64 = (a..b).map(|i| (near[i] as f64).powi(2)).sum();
            let e2: f64 = (a..b).map(|i| (x[i + lag] as f64).powi(2)).sum();
            dot / (e1 * e2).sqrt()
        };
        let (out_ncc, mic_ncc) = (ncc(&out, lag), ncc(&mic, 0));
        eprintln!(
            "double talk: correlation with the near end {out_ncc:.2} (microphone {mic_ncc:.2})"
        );
        assert!(
            out_ncc >= 0.8 && out_ncc > mic_ncc,
            "double talk: {out_ncc:.2} vs {mic_ncc:.2}"
        );
    }

    #[test]
    fn wild_input_never_panics_or_leaks_nan() {
        let mut p = VoiceProcessor::new(VoiceConfig::default());
        let speech = speech_like(2.0, 41);
        let mut out = vec![0f32; 2 * VOICE_BLOCK];
        let wild = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            -1e30,
            3.0,
            f32::MIN_POSITIVE,
        ];
        for (k, frame) in speech.chunks_exact(2 * VOICE_BLOCK).enumerate() {
            let mut frame = frame.to_vec();
            if (10..60).contains(&k) {
                for (i, x) in frame.iter_mut().enumerate() {
                    *x = wild[(i + k) % wild.len()];
                }
            }
            p.push_far_end(&frame).unwrap();
            p.process(&frame, &mut out).unwrap();
            assert!(
                out.iter().all(|x| x.is_finite() && x.abs() <= 1.0),
                "frame {k}: {out:?}"
            );
        }
        // And it still passes speech afterwards.
        let tail = run(&mut p, &speech_like(1.0, 42), None, VOICE_BLOCK);
        assert!(
            dbfs(&tail) > -40.0,
            "silent after wild input: {:.1} dBFS",
            dbfs(&tail)
        );

        assert!(p.process(&[0.0; 100], &mut [0.0; 100]).is_err());
        assert!(p.process(&[0.0; 480], &mut [0.0; 960]).is_err());
        assert!(p.push_far_end(&[0.0; 1]).is_err());
    }

    #[test]
    fn twenty_ms_frames_give_the_same_audio_as_ten_ms_frames() {
        // Echo cancellation aside: AEC3 sees its far end in a different order with 20 ms frames.
        let (_, noisy) = noisy_speech();
        let mic = &noisy[..secs(3.0)];
        let config = VoiceConfig {
            echo_cancel: false,
            ..VoiceConfig::default()
        };
        let a = run(&mut VoiceProcessor::new(config), mic, None, VOICE_BLOCK);
        let b = run(&mut VoiceProcessor::new(config), mic, None, 2 * VOICE_BLOCK);
        assert!(a == b, "10 ms and 20 ms frames differ");
    }
}
