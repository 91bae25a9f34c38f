//! Streaming sample-rate conversion for devices that do not run at 48 kHz.
//!
//! A device callback hands over whatever number of frames the audio system chose; rubato's
//! resamplers take fixed-size chunks. [`RateConverter`] sits between them: a pre-allocated
//! accumulator collects one input chunk (10 ms), converts it into a pre-allocated output
//! buffer, and hands the result out sample by sample. Everything is sized when it is built, so
//! pushing and popping never allocate, lock or log: it is safe in a device callback.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, Fft, FixedAsync, FixedSync, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

use crate::AudioError;

/// The lowest device rate we convert from or to (narrow-band telephony).
pub(crate) const MIN_DEVICE_RATE: u32 = 8_000;
/// The highest device rate we convert from or to.
pub(crate) const MAX_DEVICE_RATE: u32 = 384_000;

/// A mono, fixed-ratio, streaming converter from one rate to another.
pub(crate) struct RateConverter {
    resampler: Box<dyn Resampler<f32>>,
    /// One input chunk being collected.
    input: Box<[f32]>,
    filled: usize,
    /// The last chunk's output: `output[taken..produced]` is still to be handed out.
    output: Box<[f32]>,
    produced: usize,
    taken: usize,
}

impl RateConverter {
    /// A converter from `from` Hz to `to` Hz, both within 8–384 kHz, taking 10 ms chunks.
    ///
    /// Common rate pairs (44.1 ↔ 48 kHz, 16, 32, 96 kHz, ...) have a small exact ratio and use
    /// rubato's FFT resampler, the cheapest good one for a fixed ratio. An odd rate (say
    /// 44 101 Hz) would make an FFT block last up to a second, far too much delay for a live
    /// call; it gets the windowed-sinc resampler, which takes any ratio at some more CPU.
    pub(crate) fn new(from: u32, to: u32) -> Result<Self, AudioError> {
        for rate in [from, to] {
            if !(MIN_DEVICE_RATE..=MAX_DEVICE_RATE).contains(&rate) {
                return Err(AudioError::ResamplerSetup {
                    from,
                    to,
                    detail: format!("rates must be {MIN_DEVICE_RATE}-{MAX_DEVICE_RATE} Hz"),
                });
            }
        }
        let (from_us, to_us) = (from as usize, to as usize);
        let chunk = from_us.div_ceil(100);
        let min_block = from_us / gcd(from_us, to_us);
        let setup_error = |err: rubato::ResamplerConstructionError| AudioError::ResamplerSetup {
            from,
            to,
            detail: err.to_string(),
        };
        let resampler: Box<dyn Resampler<f32>> = if min_block <= chunk {
            Box::new(
                Fft::<f32>::new(from_us, to_us, chunk, 1, FixedSync::Input).map_err(setup_error)?,
            )
        } else {
            let params = SincInterpolationParameters::new(128, WindowFunction::BlackmanHarris2)
                .oversampling_factor(256)
                .interpolation(SincInterpolationType::Linear);
            Box::new(
                Async::<f32>::new_sinc(
                    f64::from(to) / f64::from(from),
                    1.0,
                    &params,
                    chunk,
                    1,
                    FixedAsync::Input,
                )
                .map_err(setup_error)?,
            )
        };
        let input = vec![0.0; resampler.input_frames_max()].into_boxed_slice();
        let output = vec![0.0; resampler.output_frames_max()].into_boxed_slice();
        Ok(Self {
            resampler,
            input,
            filled: 0,
            output,
            produced: 0,
            taken: 0,
        })
    }

    /// Input samples per converted chunk.
    pub(crate) fn chunk_len(&self) -> usize {
        self.resampler.input_frames_next()
    }

    /// Adds one input sample (NaN becomes silence, the rest is clipped to `[-1, 1]`, so one bad
    /// sample cannot poison the filter's memory). Returns `true` when it completed a chunk:
    /// its conversion, replacing whatever had not been taken yet, is in [`Self::pending`].
    pub(crate) fn push(&mut self, sample: f32) -> bool {
        let chunk = self.chunk_len();
        if let Some(slot) = self.input.get_mut(self.filled) {
            *slot = clean(sample);
            self.filled += 1;
        }
        if self.filled < chunk {
            return false;
        }
        self.filled = 0;
        self.taken = 0;
        self.produced = self.convert(chunk);
        true
    }

    fn convert(&mut self, chunk: usize) -> usize {
        let out_len = self.output.len();
        let (Ok(input), Ok(mut output)) = (
            InterleavedSlice::new(&self.input[..chunk], 1, chunk),
            InterleavedSlice::new_mut(&mut self.output[..], 1, out_len),
        ) else {
            return 0;
        };
        // The buffers are sized from the resampler's own maxima, so this cannot fail; if it
        // ever did, the chunk is lost (a short gap), which beats stopping the device.
        match self
            .resampler
            .process_into_buffer(&input, &mut output, None)
        {
            Ok((_, written)) => {
                for x in &mut self.output[..written] {
                    // Band-limiting may overshoot a full-scale input (Gibbs).
                    *x = x.clamp(-1.0, 1.0);
                }
                written
            }
            Err(_) => 0,
        }
    }

    /// Converted samples not taken yet.
    pub(crate) fn pending(&self) -> &[f32] {
        &self.output[self.taken..self.produced]
    }

    /// Marks everything pending as taken.
    pub(crate) fn take_all(&mut self) {
        self.taken = self.produced;
    }

    /// The next converted sample, if one is pending.
    pub(crate) fn pop(&mut self) -> Option<f32> {
        let x = *self.output[..self.produced].get(self.taken)?;
        self.taken += 1;
        Some(x)
    }
}

fn clean(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
}

/// Greatest common divisor (Euclid).
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use std::f32::consts::TAU;

    use super::*;

    fn tone(rate: u32, hz: f32, amplitude: f32, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| amplitude * (TAU * hz * i as f32 / rate as f32).sin())
            .collect()
    }

    /// Pushes everything through, collecting every converted sample.
    fn convert_all(converter: &mut RateConverter, input: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for &x in input {
            if converter.push(x) {
                out.extend_from_slice(converter.pending());
                converter.take_all();
            }
        }
        out
    }

    /// Power of `hz` in `x` (Goertzel), normalised so a full-scale sine gives 0.5 (its mean
    /// square).
    fn goertzel_power(x: &[f32], rate: u32, hz: f32) -> f32 {
        let w = TAU * hz / rate as f32;
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s = f64::from(v) + f64::from(coeff) * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - f64::from(coeff) * s1 * s2;
        (2.0 * power / (x.len() as f64 * x.len() as f64)) as f32
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    /// A second of a 1 kHz tone at `from` comes out as a second of the same tone at `to`:
    /// the right length (within one chunk), the same level, and nearly all of its energy at
    /// 1 kHz (no aliases, no clicks at chunk boundaries).
    fn assert_tone_survives(from: u32, to: u32) {
        let amplitude = 0.5;
        let mut converter = RateConverter::new(from, to).expect("supported rates");
        let input = tone(from, 1000.0, amplitude, from as usize);
        let out = convert_all(&mut converter, &input);

        let expected = to as usize;
        let out_chunk = expected.div_ceil(100) + 1;
        assert!(
            out.len().abs_diff(expected) <= out_chunk,
            "{from}->{to}: {} samples out, expected about {expected}",
            out.len()
        );
        // Past the filter's start-up delay (well under 50 ms).
        let steady = &out[to as usize / 20..];
        let level = rms(steady);
        let expected_rms = amplitude / 2f32.sqrt();
        assert!(
            (level - expected_rms).abs() < expected_rms * 0.02,
            "{from}->{to}: rms {level}, expected {expected_rms}"
        );
        let at_tone = goertzel_power(steady, to, 1000.0);
        let total = level * level;
        assert!(
            at_tone > total * 0.99,
            "{from}->{to}: only {:.4} of the energy at 1 kHz",
            at_tone / total
        );
        // And not at a neighbouring frequency: the tone is 1 kHz, not 1.088 kHz (the
        // 48/44.1 pitch shift of a converter that forgot the ratio).
        let shifted = goertzel_power(steady, to, 1000.0 * to as f32 / from as f32);
        assert!(shifted < total * 0.01, "{from}->{to}: pitch-shifted energy");
    }

    #[test]
    fn capture_side_44k1_to_48k_keeps_a_1khz_tone() {
        assert_tone_survives(44_100, 48_000);
    }

    #[test]
    fn playback_side_48k_to_44k1_keeps_a_1khz_tone() {
        assert_tone_survives(48_000, 44_100);
    }

    #[test]
    fn other_common_and_odd_rates_keep_the_tone() {
        for (from, to) in [
            (16_000, 48_000),
            (48_000, 96_000),
            (44_101, 48_000),
            (48_000, 22_050),
        ] {
            assert_tone_survives(from, to);
        }
    }

    #[test]
    fn wild_samples_do_not_poison_the_stream() {
        let mut converter = RateConverter::new(44_100, 48_000).expect("supported rates");
        let mut input = tone(44_100, 1000.0, 0.5, 44_100);
        input[1000] = f32::NAN;
        input[1001] = f32::INFINITY;
        input[1002] = -1e30;
        let out = convert_all(&mut converter, &input);
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        // A second later the tone is clean again.
        let tail = &out[out.len() / 2..];
        assert!((rms(tail) - 0.5 / 2f32.sqrt()).abs() < 0.01);
    }

    #[test]
    fn rates_outside_the_supported_range_are_refused() {
        for (from, to) in [(0, 48_000), (48_000, 1_000), (48_000, 1_000_000)] {
            let err = RateConverter::new(from, to).err().expect("refused");
            assert!(matches!(err, AudioError::ResamplerSetup { .. }), "{err:?}");
        }
    }
}
