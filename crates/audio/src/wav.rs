//! WAV files in (any common PCM layout at 8 to 192 kHz, downmixed to mono and resampled to
//! 48 kHz) and out (48 kHz mono 16-bit).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavSpec};
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::{AudioError, SAMPLE_RATE};

/// The lowest sample rate [`read_wav`] accepts (telephone audio). Below it, and above
/// [`MAX_WAV_RATE`], a file is far more likely mislabelled or corrupt than real audio.
pub(crate) const MIN_WAV_RATE: u32 = 8_000;

/// The highest sample rate [`read_wav`] accepts (studio masters).
pub(crate) const MAX_WAV_RATE: u32 = 192_000;

/// Reads a WAV file (8/16/24/32-bit integer or 32-bit float PCM; mono or multichannel, averaged
/// to mono) as 48 kHz `f32` in `[-1, 1]`.
///
/// A file at any sample rate from 8 kHz to 192 kHz (`espeak-ng -w` writes 22050 Hz, CDs are
/// 44100 Hz) is resampled to 48 kHz, time-aligned: a sound at `t` seconds in the file is at `t`
/// seconds in the result, and the result holds `len * 48000 / rate` samples (rounded up). A
/// 48 kHz file is returned as read, untouched by the resampler. A rate outside 8–192 kHz is an
/// error naming the rate, and so is a truncated or malformed file.
pub fn read_wav(path: &Path) -> Result<Vec<f32>, AudioError> {
    let wav_error = |source| AudioError::Wav {
        path: path.to_owned(),
        source,
    };
    let mut reader = hound::WavReader::open(path).map_err(wav_error)?;
    let spec = reader.spec();
    if !(MIN_WAV_RATE..=MAX_WAV_RATE).contains(&spec.sample_rate) {
        return Err(AudioError::WavSampleRate {
            path: path.to_owned(),
            rate: spec.sample_rate,
        });
    }
    // hound refuses a file with zero channels; keep the division safe regardless.
    let channels = usize::from(spec.channels).max(1);
    // Reserve what the header claims only as far as the file is long: a lying header must
    // not reserve gigabytes.
    let claimed = u64::from(reader.duration());
    let bytes_per_frame = channels as u64 * u64::from(spec.bits_per_sample / 8).max(1);
    let present = std::fs::metadata(path).map_or(0, |m| m.len()) / bytes_per_frame;
    let mut mono = Vec::with_capacity(usize::try_from(claimed.min(present)).unwrap_or(0));
    match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Float, 32) => {
            let samples = reader.samples::<f32>().map(|s| s.map(sanitize));
            downmix(samples, channels, &mut mono).map_err(wav_error)?;
        }
        (SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            let samples = reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32));
            downmix(samples, channels, &mut mono).map_err(wav_error)?;
        }
        (format, bits) => {
            let kind = match format {
                SampleFormat::Float => "float",
                SampleFormat::Int => "integer",
            };
            return Err(AudioError::WavFormat {
                path: path.to_owned(),
                detail: format!("{bits}-bit {kind}"),
            });
        }
    }
    if spec.sample_rate == SAMPLE_RATE {
        return Ok(mono);
    }
    Ok(resample_to_48k(&mono, spec.sample_rate))
}

/// Resamples a whole mono clip from `rate` (within 8–192 kHz) to [`SAMPLE_RATE`].
///
/// The ratio is fixed and the whole clip is in memory, which is the case rubato's synchronous
/// FFT resampler is made for: it matches its sinc resampler in quality at a fraction of the
/// cost. `process_all` runs the chunk loop, flushes the tail and trims the resampler's startup
/// delay, so the output is time-aligned with the input and `ceil(len * 48000 / rate)` long.
fn resample_to_48k(mono: &[f32], rate: u32) -> Vec<f32> {
    if mono.is_empty() {
        return Vec::new();
    }
    // rubato's FFT blocks are whole multiples of the smallest pair in the rates' ratio (147
    // in, 160 out for 44.1 kHz). Take the fewest that reach about 1024 input frames, as in
    // rubato's `resample_wav` example, which puts the anti-aliasing cutoff at about 99 % of
    // the lower Nyquist frequency. An odd rate (44101 Hz) makes a block a second or two long:
    // megabytes of memory, no loss of quality.
    let rate = rate as usize;
    let out_rate = SAMPLE_RATE as usize;
    let min_block_in = rate / gcd(rate, out_rate);
    // An even number of them: rubato trims `fft_size_out / 2` output frames of delay, but the
    // filter's delay is `fft_size_in / 2` input frames rounded down, so an odd input block
    // (1029 for 22.05 or 44.1 kHz) would leave the output half an input sample early.
    let blocks = 1024usize.div_ceil(min_block_in).next_multiple_of(2);
    let mut resampler = Fft::<f32>::new_custom(
        rate,
        out_rate,
        blocks * min_block_in,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Both,
    )
    // Both rates are nonzero (checked against 8–192 kHz) and so is the chunk size, which is
    // all construction validates.
    .expect("valid resampler settings");
    // One channel of `mono.len()` frames is exactly the slice.
    let input = InterleavedSlice::new(mono, 1, mono.len()).expect("slice fits its own length");
    let output = resampler
        .process_all(&input, mono.len(), None)
        // process_all sizes its own output buffer and the input is the adapter's full length;
        // the only errors it can return are buffer and channel mismatches.
        .expect("process_all sizes its own buffers");
    // Band-limiting can overshoot a full-scale input (Gibbs); keep the [-1, 1] contract.
    let mut samples = output.take_data();
    for x in &mut samples {
        *x = x.clamp(-1.0, 1.0);
    }
    samples
}

/// Greatest common divisor (Euclid).
fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Averages each frame of `channels` interleaved samples into one.
fn downmix(
    samples: impl Iterator<Item = hound::Result<f32>>,
    channels: usize,
    out: &mut Vec<f32>,
) -> hound::Result<()> {
    let mut sum = 0.0f32;
    let mut count = 0;
    for sample in samples {
        sum += sample?;
        count += 1;
        if count == channels {
            out.push((sum / channels as f32).clamp(-1.0, 1.0));
            sum = 0.0;
            count = 0;
        }
    }
    Ok(())
}

/// Float WAV files may hold anything; keep NaN and infinities out of the audio path.
fn sanitize(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
}

/// Writes 48 kHz mono 16-bit WAV files.
pub struct WavWriter {
    inner: hound::WavWriter<BufWriter<File>>,
    path: PathBuf,
}

impl std::fmt::Debug for WavWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavWriter")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl WavWriter {
    /// Creates (or truncates) the file at `path`.
    pub fn create(path: &Path) -> Result<Self, AudioError> {
        let spec = WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: SampleFormat::Int,
        };
        let inner = hound::WavWriter::create(path, spec).map_err(|source| AudioError::Wav {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self {
            inner,
            path: path.to_owned(),
        })
    }

    /// Appends samples, clipped to `[-1, 1]` (NaN is written as silence).
    pub fn write(&mut self, pcm: &[f32]) -> Result<(), AudioError> {
        for &x in pcm {
            // The inverse of reading (v / 32768), saturating at +1.0.
            let scaled = (sanitize(x) * 32_768.0).round();
            let value = scaled.clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
            self.inner
                .write_sample(value)
                .map_err(|source| AudioError::Wav {
                    path: self.path.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes the final header and flushes. Dropping the writer without `finish` also tries
    /// to, but cannot report failure.
    pub fn finish(self) -> Result<(), AudioError> {
        let path = self.path;
        self.inner
            .finalize()
            .map_err(|source| AudioError::Wav { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::SplitMix;
    use std::f32::consts::TAU;

    fn tone(len: usize, freq: f32, amplitude: f32) -> Vec<f32> {
        (0..len)
            .map(|i| amplitude * (TAU * freq * i as f32 / SAMPLE_RATE as f32).sin())
            .collect()
    }

    fn write_with_hound(path: &Path, spec: WavSpec, samples: &[f32]) {
        let mut writer = hound::WavWriter::create(path, spec).unwrap();
        for &s in samples {
            match (spec.sample_format, spec.bits_per_sample) {
                (SampleFormat::Float, _) => writer.write_sample(s).unwrap(),
                (SampleFormat::Int, 16) => writer.write_sample((s * 32767.0) as i16).unwrap(),
                (SampleFormat::Int, 24) => writer.write_sample((s * 8_388_607.0) as i32).unwrap(),
                (SampleFormat::Int, 32) => {
                    writer.write_sample((s * 2_147_483_647.0) as i32).unwrap()
                }
                other => panic!("test writes no {other:?}"),
            }
        }
        writer.finalize().unwrap();
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: SampleFormat) -> WavSpec {
        WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    #[test]
    fn writer_then_reader_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let original = tone(SAMPLE_RATE as usize / 2, 440.0, 0.8);
        let mut writer = WavWriter::create(&path).unwrap();
        writer.write(&original[..1000]).unwrap();
        writer.write(&original[1000..]).unwrap();
        writer.finish().unwrap();

        let read = read_wav(&path).unwrap();
        assert_eq!(read.len(), original.len());
        let worst = original
            .iter()
            .zip(&read)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 0.5 / 32768.0 + 1e-7, "16-bit error {worst}");

        // Out-of-range and NaN samples are clipped / silenced, not wrapped.
        let mut writer = WavWriter::create(&path).unwrap();
        writer
            .write(&[2.0, -3.0, f32::NAN, f32::NEG_INFINITY])
            .unwrap();
        writer.finish().unwrap();
        let read = read_wav(&path).unwrap();
        assert_eq!(read.len(), 4);
        assert!((read[0] - 1.0).abs() < 1e-4 && (read[1] + 1.0).abs() < 1e-4);
        assert_eq!(read[2], 0.0);
        assert!((read[3] + 1.0).abs() < 1e-4);
    }

    #[test]
    fn every_supported_layout_reads_and_stereo_is_averaged() {
        let dir = tempfile::tempdir().unwrap();
        let left = tone(4800, 440.0, 0.6);
        let right = tone(4800, 1000.0, 0.2);
        let interleaved: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();
        for (bits, format, tolerance) in [
            (16, SampleFormat::Int, 1e-4),
            (24, SampleFormat::Int, 1e-6),
            (32, SampleFormat::Int, 1e-6),
            (32, SampleFormat::Float, 1e-7),
        ] {
            let path = dir.path().join(format!("stereo-{bits}-{format:?}.wav"));
            write_with_hound(&path, spec(2, SAMPLE_RATE, bits, format), &interleaved);
            let mono = read_wav(&path).unwrap();
            assert_eq!(mono.len(), left.len(), "{bits}-bit {format:?}");
            for (i, (&m, (&l, &r))) in mono.iter().zip(left.iter().zip(&right)).enumerate() {
                assert!(
                    (m - (l + r) / 2.0).abs() <= tolerance,
                    "{bits}-bit {format:?} sample {i}: {m} vs {}",
                    (l + r) / 2.0
                );
            }
        }
    }

    const TAU64: f64 = std::f64::consts::TAU;

    /// `amplitude * sin(2 pi freq t)` sampled at `rate`, `seconds` long.
    fn tone_at(rate: u32, seconds: f64, freq: f64, amplitude: f64) -> Vec<f32> {
        let len = (seconds * f64::from(rate)).round() as usize;
        (0..len)
            .map(|i| (amplitude * (TAU64 * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// The frequency of a steady tone from its zero crossings (linearly interpolated), in Hz.
    fn zero_crossing_frequency(samples: &[f32], rate: u32) -> f64 {
        let crossings: Vec<f64> = samples
            .windows(2)
            .enumerate()
            .filter(|(_, w)| (w[0] < 0.0) != (w[1] < 0.0))
            .map(|(i, w)| i as f64 + f64::from(w[0]) / f64::from(w[0] - w[1]))
            .collect();
        assert!(
            crossings.len() > 10,
            "no steady tone: {} crossings",
            crossings.len()
        );
        let span = crossings[crossings.len() - 1] - crossings[0];
        (crossings.len() - 1) as f64 / 2.0 / (span / f64::from(rate))
    }

    /// Index of the sample with the largest magnitude.
    fn peak_index(samples: &[f32]) -> usize {
        samples
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, _)| i)
            .unwrap()
    }

    /// Largest difference from `expected` away from the ends, where a tone that starts and
    /// stops abruptly legitimately rings through the anti-aliasing filter.
    fn worst_interior_error(got: &[f32], expected: &[f32]) -> f32 {
        let margin = SAMPLE_RATE as usize / 20;
        got[margin..expected.len() - margin]
            .iter()
            .zip(&expected[margin..])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn other_sample_rates_are_resampled_to_48k_in_tune_and_in_time() {
        let dir = tempfile::tempdir().unwrap();
        // espeak-ng writes 16-bit 22050 Hz; CDs are 44.1 kHz; then the edges of the range and
        // an odd rate whose ratio to 48 kHz has no common factor.
        for (rate, bits, format) in [
            (22_050, 16, SampleFormat::Int),
            (44_100, 16, SampleFormat::Int),
            (44_100, 32, SampleFormat::Float),
            (8_000, 16, SampleFormat::Int),
            (96_000, 24, SampleFormat::Int),
            (192_000, 32, SampleFormat::Float),
            (44_101, 32, SampleFormat::Float),
        ] {
            let case = format!("{rate} Hz {bits}-bit {format:?}");
            let path = dir
                .path()
                .join(format!("tone-{rate}-{bits}-{format:?}.wav"));
            let input = tone_at(rate, 1.0, 1000.0, 0.5);
            write_with_hound(&path, spec(1, rate, bits, format), &input);
            let read = read_wav(&path).unwrap();

            let expected_len = (input.len() as f64 * 48_000.0 / f64::from(rate)).round() as usize;
            assert!(
                read.len().abs_diff(expected_len) <= 2,
                "{case}: {} samples, expected {expected_len}",
                read.len()
            );
            let freq = zero_crossing_frequency(&read, SAMPLE_RATE);
            assert!((freq - 1000.0).abs() < 10.0, "{case}: {freq} Hz");
            // The same tone, sampled directly at 48 kHz: matching it sample for sample
            // checks level and phase (so sub-millisecond alignment) at once.
            let ideal = tone_at(SAMPLE_RATE, 1.0, 1000.0, 0.5);
            let worst = worst_interior_error(&read, &ideal);
            assert!(worst < 5e-4, "{case}: off the ideal tone by {worst}");
        }
    }

    #[test]
    fn resampling_keeps_a_click_at_its_time() {
        let dir = tempfile::tempdir().unwrap();
        for rate in [22_050, 44_100, 8_000, 192_000, 44_101] {
            // One second of silence with a click at exactly 0.5 s.
            let mut input = vec![0.0f32; rate as usize];
            let at = (rate / 2) as usize;
            input[at] = 0.9;
            let path = dir.path().join(format!("click-{rate}.wav"));
            write_with_hound(&path, spec(1, rate, 32, SampleFormat::Float), &input);
            let read = read_wav(&path).unwrap();
            let expected = f64::from(rate / 2) / f64::from(rate) * f64::from(SAMPLE_RATE);
            let peak = peak_index(&read);
            let off_ms = (peak as f64 - expected).abs() / f64::from(SAMPLE_RATE) * 1000.0;
            assert!(
                off_ms <= 1.0,
                "{rate} Hz: click at sample {peak}, expected {expected} ({off_ms} ms off)"
            );
            // And it is still a click, not smeared across the file.
            assert!(
                read[peak].abs() > 0.1,
                "{rate} Hz: click peak {}",
                read[peak]
            );
            let far = read
                .iter()
                .enumerate()
                .filter(|(i, _)| i.abs_diff(peak) > SAMPLE_RATE as usize / 100)
                .map(|(_, x)| x.abs())
                .fold(0.0f32, f32::max);
            assert!(
                far < 0.01,
                "{rate} Hz: {far} more than 10 ms from the click"
            );
        }
    }

    #[test]
    fn a_tone_burst_starts_on_time() {
        // Silence, then a 1 kHz tone from 0.5 s: the output crosses a tenth of the tone's
        // level within a millisecond of 0.5 s (the filter's ringing before the onset is far
        // quieter than that).
        let dir = tempfile::tempdir().unwrap();
        let rate = 22_050;
        let onset = (rate / 2) as usize;
        let mut input = tone_at(rate, 1.0, 1000.0, 0.5);
        input[..onset].fill(0.0);
        let path = dir.path().join("burst.wav");
        write_with_hound(&path, spec(1, rate, 16, SampleFormat::Int), &input);
        let read = read_wav(&path).unwrap();
        let first_loud = read.iter().position(|x| x.abs() > 0.05).unwrap();
        let off_ms = (first_loud as f64 - 24_000.0) / 48.0;
        assert!(
            (-1.0..=1.0).contains(&off_ms),
            "tone starts at sample {first_loud} ({off_ms} ms off)"
        );
    }

    #[test]
    fn stereo_at_44k1_is_downmixed_then_resampled() {
        let dir = tempfile::tempdir().unwrap();
        let rate = 44_100;
        let left = tone_at(rate, 1.0, 440.0, 0.6);
        let right = tone_at(rate, 1.0, 1000.0, 0.2);
        let interleaved: Vec<f32> = left
            .iter()
            .zip(&right)
            .flat_map(|(&l, &r)| [l, r])
            .collect();
        let path = dir.path().join("stereo.wav");
        write_with_hound(&path, spec(2, rate, 16, SampleFormat::Int), &interleaved);
        let read = read_wav(&path).unwrap();
        assert!(read.len().abs_diff(48_000) <= 2, "{} samples", read.len());
        let ideal: Vec<f32> = tone_at(SAMPLE_RATE, 1.0, 440.0, 0.3)
            .iter()
            .zip(&tone_at(SAMPLE_RATE, 1.0, 1000.0, 0.1))
            .map(|(l, r)| l + r)
            .collect();
        let worst = worst_interior_error(&read, &ideal);
        assert!(worst < 5e-4, "off the ideal mix by {worst}");
    }

    #[test]
    fn a_48k_file_is_not_resampled() {
        // Random float samples come back bit for bit: the resampler would have changed them.
        let dir = tempfile::tempdir().unwrap();
        let mut rng = SplitMix(48);
        let samples: Vec<f32> = (0..4801)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
            .collect();
        let path = dir.path().join("native.wav");
        write_with_hound(
            &path,
            spec(1, SAMPLE_RATE, 32, SampleFormat::Float),
            &samples,
        );
        assert_eq!(read_wav(&path).unwrap(), samples);
    }

    #[test]
    fn tiny_and_empty_files_at_other_rates_read() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 3, 100] {
            let path = dir.path().join(format!("tiny-{len}.wav"));
            let input = tone_at(22_050, len as f64 / 22_050.0, 1000.0, 0.9);
            write_with_hound(&path, spec(1, 22_050, 16, SampleFormat::Int), &input);
            let read = read_wav(&path).unwrap();
            let expected = (len as f64 * 48_000.0 / 22_050.0).ceil() as usize;
            assert_eq!(read.len(), expected, "{len} samples in");
            assert!(
                read.iter().all(|x| (-1.0..=1.0).contains(x)),
                "{len} samples in"
            );
        }
    }

    #[test]
    fn rates_outside_8_to_192_khz_are_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        for rate in [4_000, 7_999, 192_001, 384_000] {
            let path = dir.path().join(format!("rate-{rate}.wav"));
            write_with_hound(
                &path,
                spec(1, rate, 16, SampleFormat::Int),
                &tone_at(rate, 0.1, 440.0, 0.5),
            );
            let err = read_wav(&path).unwrap_err();
            assert!(
                matches!(err, AudioError::WavSampleRate { rate: r, .. } if r == rate),
                "{err:?}"
            );
            let message = err.to_string();
            assert!(message.contains(&format!("{rate} Hz")), "{message}");
            assert!(message.contains("8000 to 192000 Hz"), "{message}");
            assert!(
                message.contains("sox in.wav -r 48000 -c 1 out.wav"),
                "{message}"
            );
        }
    }

    #[test]
    fn missing_truncated_and_garbage_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read_wav(&dir.path().join("nope.wav")).unwrap_err();
        assert!(matches!(missing, AudioError::Wav { .. }), "{missing:?}");

        let good = dir.path().join("good.wav");
        write_with_hound(
            &good,
            spec(2, SAMPLE_RATE, 16, SampleFormat::Int),
            &tone(400, 440.0, 0.5),
        );
        let bytes = std::fs::read(&good).unwrap();
        assert_eq!(read_wav(&good).unwrap().len(), 200);

        let path = dir.path().join("bad.wav");
        // Every truncation of the file: the header promises more data than there is.
        for len in 0..bytes.len() {
            std::fs::write(&path, &bytes[..len]).unwrap();
            assert!(read_wav(&path).is_err(), "truncated to {len} bytes");
        }
        // Random garbage, and the real file with random header bytes flipped: Ok or Err, no
        // panic, and never an absurd amount of audio.
        let mut rng = SplitMix(1234);
        for i in 0..1000 {
            let data = if i % 2 == 0 {
                let len = (rng.next_u64() % 200) as usize;
                rng.bytes(len)
            } else {
                let mut data = bytes[..200].to_vec();
                for _ in 0..1 + rng.next_u64() % 4 {
                    let at = (rng.next_u64() % 60) as usize;
                    data[at] = rng.next_u64() as u8;
                }
                data
            };
            std::fs::write(&path, &data).unwrap();
            if let Ok(samples) = read_wav(&path) {
                assert!(samples.len() <= data.len(), "case {i}");
                assert!(samples.iter().all(|s| (-1.0..=1.0).contains(s)), "case {i}");
            }
        }
        // A header whose data chunk claims 4 GiB but holds 100 bytes.
        assert_eq!(&bytes[36..40], b"data");
        let mut lying = bytes[..144].to_vec();
        lying[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &lying).unwrap();
        assert!(read_wav(&path).is_err());
    }

    #[test]
    fn unsupported_layouts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eight.wav");
        // hound writes 8-bit integer fine; Confab reads it too.
        let mut writer =
            hound::WavWriter::create(&path, spec(1, SAMPLE_RATE, 8, SampleFormat::Int)).unwrap();
        for v in [-128i8, 0, 127] {
            writer.write_sample(v).unwrap();
        }
        writer.finalize().unwrap();
        let read = read_wav(&path).unwrap();
        assert_eq!(read.len(), 3);
        assert!((read[0] + 1.0).abs() < 1e-6 && read[1] == 0.0 && read[2] > 0.99);

        // 20 valid bits in 24-bit containers (WAVEFORMATEXTENSIBLE) is legal WAV that Confab
        // does not read: the error names the layout.
        let path = dir.path().join("twenty.wav");
        write_with_hound(
            &path,
            spec(2, SAMPLE_RATE, 24, SampleFormat::Int),
            &[0.1, 0.2],
        );
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            &bytes[20..22],
            &0xfffeu16.to_le_bytes(),
            "hound wrote WAVEFORMATEXTENSIBLE"
        );
        bytes[38..40].copy_from_slice(&20u16.to_le_bytes()); // wValidBitsPerSample
        std::fs::write(&path, &bytes).unwrap();
        let err = read_wav(&path).unwrap_err();
        assert!(matches!(err, AudioError::WavFormat { .. }), "{err:?}");
        assert!(err.to_string().contains("20-bit integer"), "{err}");
    }
}
