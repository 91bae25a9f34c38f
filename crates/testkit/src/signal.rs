//! Test signals and the measures that compare what was sent with what arrived.

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

/// Sample rate of every signal here.
pub const RATE: usize = 48_000;

/// A speech-like test signal: voiced "syllables" (a harmonic series on a gliding pitch between
/// 110 and 220 Hz, shaped by two moving formant-like resonances and a syllabic envelope)
/// separated by short pauses. Deterministic for a given `seed`, and unlike a pure tone it has no
/// periodicity longer than a syllable, so alignment by cross-correlation is unambiguous.
pub fn speech_like(seconds: f64, seed: u64) -> Vec<f32> {
    let n = (seconds * RATE as f64) as usize;
    let mut out = vec![0f32; n];
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut t = 0usize;
    while t < n {
        let syllable = ((0.12 + next() * 0.25) * RATE as f64) as usize;
        let pause = ((0.03 + next() * 0.15) * RATE as f64) as usize;
        let f0_start = 110.0 + next() * 110.0;
        let f0_end = 110.0 + next() * 110.0;
        let formant1 = 300.0 + next() * 600.0;
        let formant2 = 900.0 + next() * 1500.0;
        let mut phase = 0f64;
        for i in 0..syllable.min(n - t) {
            let x = i as f64 / syllable as f64;
            let f0 = f0_start + (f0_end - f0_start) * x;
            phase += 2.0 * std::f64::consts::PI * f0 / RATE as f64;
            let env = (std::f64::consts::PI * x).sin().powf(0.7);
            let mut s = 0.0;
            let mut h = 1.0;
            while h * f0 < 4000.0 {
                let f = h * f0;
                let g1 = 1.0 / (1.0 + ((f - formant1) / 120.0).powi(2));
                let g2 = 0.6 / (1.0 + ((f - formant2) / 200.0).powi(2));
                s += (g1 + g2 + 0.02) * (h * phase).sin();
                h += 1.0;
            }
            out[t + i] = (0.25 * env * s) as f32;
        }
        t += syllable + pause;
    }
    out
}

/// A seeded xorshift generator of uniform numbers in [0, 1): the same sequence on every
/// platform, so a failing noise test reproduces from its seed alone.
fn uniform(seed: u64) -> impl FnMut() -> f64 {
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Stationary white noise at the given RMS level (uniform samples, so peaks stay at
/// `rms * sqrt(3)`). Deterministic for a given `seed`.
pub fn white_noise(seconds: f64, rms: f64, seed: u64) -> Vec<f32> {
    let n = (seconds * RATE as f64) as usize;
    let mut next = uniform(seed);
    let scale = rms * 3f64.sqrt();
    (0..n)
        .map(|_| ((next() * 2.0 - 1.0) * scale) as f32)
        .collect()
}

/// Stationary pink (1/f) noise at the given RMS level: white noise through Paul Kellet's
/// economy filter, the usual stand-in for fans, air conditioning and room tone.
pub fn pink_noise(seconds: f64, rms: f64, seed: u64) -> Vec<f32> {
    let white = white_noise(seconds, 1.0, seed);
    let (mut b0, mut b1, mut b2) = (0f64, 0f64, 0f64);
    let mut out: Vec<f64> = white
        .iter()
        .map(|&w| {
            let w = w as f64;
            b0 = 0.99765 * b0 + w * 0.0990460;
            b1 = 0.96300 * b1 + w * 0.2965164;
            b2 = 0.57000 * b2 + w * 1.0526913;
            b0 + b1 + b2 + w * 0.1848
        })
        .collect();
    let level = (out.iter().map(|x| x * x).sum::<f64>() / out.len().max(1) as f64).sqrt();
    if level > 0.0 {
        out.iter_mut().for_each(|x| *x *= rms / level);
    }
    out.into_iter().map(|x| x as f32).collect()
}

/// A simulated loudspeaker-to-microphone path: what a microphone hears of `far_end` played by
/// the speaker in a small room. The signal is delayed by `delay_ms`, scaled by `gain`, and
/// smeared by a short room impulse response (a direct path plus exponentially decaying,
/// seeded reflections over `tail_ms`, with a gentle low-pass for the speaker and the air).
pub fn echo_path(far_end: &[f32], delay_ms: f64, tail_ms: f64, gain: f64, seed: u64) -> Vec<f32> {
    let delay = (delay_ms * RATE as f64 / 1000.0) as usize;
    let taps = ((tail_ms * RATE as f64 / 1000.0) as usize).max(1);
    let mut next = uniform(seed);
    let mut ir = vec![0f64; taps];
    ir[0] = 1.0;
    // Reflections decay by 60 dB over the tail (an RT60 of `tail_ms`).
    let decay = (-6.9 / taps as f64).exp();
    let mut envelope = 0.5;
    for tap in ir.iter_mut().skip(RATE / 1000) {
        envelope *= decay;
        *tap = (next() * 2.0 - 1.0) * envelope;
    }
    // A one-pole low-pass over the response: speakers and air lose the top end.
    let mut state = 0.0;
    for tap in ir.iter_mut() {
        state = 0.6 * state + 0.4 * *tap;
        *tap = state;
    }
    let norm = ir.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut out = vec![0f32; far_end.len()];
    for (i, o) in out.iter_mut().enumerate().skip(delay) {
        let t = i - delay;
        let mut acc = 0.0;
        for (k, h) in ir.iter().enumerate().take(t + 1) {
            acc += h * far_end[t - k] as f64;
        }
        *o = (acc * gain / norm) as f32;
    }
    out
}

/// The best alignment of `recording` inside `reference`.
#[derive(Clone, Copy, Debug)]
pub struct Alignment {
    /// Where the recording starts in the reference, in samples (negative: before it).
    pub lag: i64,
    /// Normalized cross-correlation over the overlap at that lag, in [-1, 1].
    pub ncc: f64,
    /// Samples the two overlap by.
    pub overlap: usize,
}

/// Finds the lag at which `recording` best matches `reference` (FFT cross-correlation, each
/// lag normalised by the energies of the overlapping parts), looking only at lags where at
/// least `min_overlap` samples overlap.
pub fn align(reference: &[f32], recording: &[f32], min_overlap: usize) -> Option<Alignment> {
    let (n, m) = (reference.len(), recording.len());
    if n == 0 || m == 0 {
        return None;
    }
    let size = (n + m).next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(size);
    let ifft = planner.plan_fft_inverse(size);
    let mut a: Vec<Complex<f64>> = reference
        .iter()
        .map(|&x| Complex::new(x as f64, 0.0))
        .collect();
    a.resize(size, Complex::new(0.0, 0.0));
    let mut b: Vec<Complex<f64>> = recording
        .iter()
        .map(|&x| Complex::new(x as f64, 0.0))
        .collect();
    b.resize(size, Complex::new(0.0, 0.0));
    fft.process(&mut a);
    fft.process(&mut b);
    for (x, y) in a.iter_mut().zip(&b) {
        *x *= y.conj();
    }
    ifft.process(&mut a);
    // Prefix sums of squares to get each overlap's energy in O(1).
    let prefix = |v: &[f32]| {
        let mut p = vec![0f64; v.len() + 1];
        for (i, x) in v.iter().enumerate() {
            p[i + 1] = p[i] + (*x as f64) * (*x as f64);
        }
        p
    };
    let (pr, pc) = (prefix(reference), prefix(recording));
    let mut best: Option<Alignment> = None;
    for lag in -(m as i64 - 1)..(n as i64) {
        // recording[i] lines up with reference[i + lag].
        let ref_start = lag.max(0) as usize;
        let rec_start = (-lag).max(0) as usize;
        let overlap = (n - ref_start).min(m - rec_start);
        if overlap < min_overlap {
            continue;
        }
        let idx = if lag >= 0 {
            lag as usize
        } else {
            size - (-lag) as usize
        };
        let dot = a[idx].re / size as f64;
        let e1 = pr[ref_start + overlap] - pr[ref_start];
        let e2 = pc[rec_start + overlap] - pc[rec_start];
        if e1 <= 1e-12 || e2 <= 1e-12 {
            continue;
        }
        let ncc = dot / (e1 * e2).sqrt();
        if best.is_none_or(|b| ncc > b.ncc) {
            best = Some(Alignment { lag, ncc, overlap });
        }
    }
    best
}

/// Root mean square level.
pub fn rms(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Writes 48 kHz mono 16-bit WAV.
pub fn write_wav(path: &std::path::Path, samples: &[f32]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Reads any mono WAV written by [`write_wav`] or by the client's recorder.
pub fn read_wav(path: &std::path::Path) -> anyhow::Result<Vec<f32>> {
    let mut r = hound::WavReader::open(path)?;
    let spec = r.spec();
    anyhow::ensure!(
        spec.channels == 1 && spec.sample_rate == RATE as u32,
        "unexpected format {spec:?}"
    );
    Ok(match spec.sample_format {
        hound::SampleFormat::Int => r
            .samples::<i16>()
            .map(|s| s.map(|s| s as f32 / 32768.0))
            .collect::<Result<_, _>>()?,
        hound::SampleFormat::Float => r.samples::<f32>().collect::<Result<_, _>>()?,
    })
}

/// How much of a reference signal a recording holds, second by second.
#[derive(Clone, Debug)]
pub struct SecondsHeard {
    /// Seconds found nearly undistorted (NCC at or above the bar) and in order: each one second after the
    /// previous one found, within 250 ms (jitter, a speaker's cushion).
    pub heard: usize,
    /// Seconds in the reference (a short last one counts if at least half a second).
    pub total: usize,
    /// Where each second was found and how well it matched, for a failure's message.
    pub shown: String,
}

/// Aligns each second of `reference` inside `recording` on its own, so one glitch (a lost or
/// inserted moment that shifts what follows) spoils one second instead of the whole match.
pub fn seconds_heard(reference: &[f32], recording: &[f32]) -> SecondsHeard {
    seconds_heard_at(reference, recording, 0.9)
}

/// [`seconds_heard`] with another bar for a second's match: audio that went through a
/// microphone's voice processing (noise suppression, gain control, a high-pass) is reshaped on
/// purpose and matches at about 0.8 to 0.97; unrelated audio stays below 0.5.
pub fn seconds_heard_at(reference: &[f32], recording: &[f32], min_ncc: f64) -> SecondsHeard {
    let seconds: Vec<Option<Alignment>> = reference
        .chunks(RATE)
        .filter(|c| c.len() >= RATE / 2)
        .map(|chunk| align(recording, chunk, chunk.len()))
        .collect();
    let shown = seconds
        .iter()
        .map(|a| match a {
            Some(a) => format!("{:.3}s/{:.2}", a.lag as f64 / RATE as f64, a.ncc),
            None => "-".to_owned(),
        })
        .collect::<Vec<_>>()
        .join("  ");
    let mut heard = 0;
    let mut previous: Option<(usize, i64)> = None;
    for (i, a) in seconds.iter().enumerate() {
        let Some(a) = a.filter(|a| a.ncc >= min_ncc) else {
            continue;
        };
        let in_order = previous.is_none_or(|(j, lag)| {
            let expected = lag + ((i - j) * RATE) as i64;
            (a.lag - expected).abs() <= (RATE / 4) as i64
        });
        if in_order {
            heard += 1;
            previous = Some((i, a.lag));
        }
    }
    SecondsHeard {
        heard,
        total: seconds.len(),
        shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_finds_a_known_offset_and_rejects_other_audio() {
        let reference = speech_like(3.0, 1);
        let segment: Vec<f32> = reference[30_000..90_000].iter().map(|s| s * 0.5).collect();
        let a = align(&reference, &segment, 24_000).unwrap();
        assert_eq!(a.lag, 30_000);
        assert!(a.ncc > 0.999, "{a:?}");
        let other = speech_like(1.0, 2);
        let b = align(&reference, &other, 24_000).unwrap();
        assert!(b.ncc < 0.5, "unrelated audio matched: {b:?}");
    }

    #[test]
    fn seconds_heard_counts_what_survives_a_glitch_and_nothing_of_noise() {
        let speech = speech_like(6.0, 11);
        // Silence before, and 30 ms of silence inserted 2.5 s in (a speaker underrun).
        let mut heard = vec![0f32; RATE / 3];
        heard.extend_from_slice(&speech[..RATE * 5 / 2]);
        heard.extend(std::iter::repeat_n(0.0, RATE * 3 / 100));
        heard.extend_from_slice(&speech[RATE * 5 / 2..]);
        let s = seconds_heard(&speech, &heard);
        assert_eq!(s.total, 6);
        assert!(s.heard >= 5, "{s:?}");
        // The wrong signal: nothing.
        let other = speech_like(6.0, 12);
        assert_eq!(seconds_heard(&speech, &other).heard, 0);
    }
}
