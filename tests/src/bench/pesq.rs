//! Preparing speech for PESQ (ITU-T P.862.2 wideband, 16 kHz) and scoring it with the `pesq`
//! package from PyPI in a Python the caller names.

use std::path::Path;
use std::process::Command;

use anyhow::Context;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use crate::signal::{Alignment, RATE, align};

/// PESQ's wideband rate.
pub const PESQ_RATE: usize = 16_000;

/// Resamples 48 kHz mono to 16 kHz (band-limited; time-aligned with the input).
pub fn to_16k(x: &[f32]) -> anyhow::Result<Vec<f32>> {
    if x.is_empty() {
        return Ok(Vec::new());
    }
    // 3 input frames per output frame; 342 of those make blocks of about 1024 input frames
    // (an even count, so the filter delay rubato trims is whole).
    let mut r = Fft::<f32>::new_custom(
        RATE,
        PESQ_RATE,
        342 * 3,
        1,
        1,
        WindowFunction::BlackmanHarris2,
        FixedSync::Both,
    )
    .context("a 48 -> 16 kHz resampler")?;
    let input = InterleavedSlice::new(x, 1, x.len()).context("input buffer")?;
    let out = r
        .process_all(&input, x.len(), None)
        .context("resampling to 16 kHz")?;
    Ok(out.take_data())
}

/// The part of `recording` that lines up with `reference` (found by cross-correlation), the
/// same length as `reference` (zero-padded where the recording ends early), and where it was.
pub fn cut_aligned(reference: &[f32], recording: &[f32]) -> Option<(Vec<f32>, Alignment)> {
    let a = align(recording, reference, reference.len() / 2)?;
    let mut out = vec![0f32; reference.len()];
    for (i, o) in out.iter_mut().enumerate() {
        let j = a.lag + i as i64;
        if j >= 0
            && let Some(&s) = recording.get(j as usize)
        {
            *o = s;
        }
    }
    Some((out, a))
}

/// How the delay from `reference` to `recording` moves along the speech: each half second of
/// `reference` with sound in it is found in `recording` on its own, as (its start in
/// `reference` in seconds, delay in ms, NCC). A delay that moves means the path stretched or
/// squeezed time (a jitter buffer adapting, a speaker feed refilling), which PESQ punishes.
pub fn delay_track(reference: &[f32], recording: &[f32], max_delay: usize) -> Vec<(f64, f64, f64)> {
    let seg = RATE / 2;
    (0..reference.len().saturating_sub(seg))
        .step_by(seg)
        .filter(|&s| crate::signal::rms(&reference[s..s + seg]) > 0.01)
        .filter_map(|s| {
            let end = (s + seg + max_delay).min(recording.len());
            let window = recording.get(s..end)?;
            let a = align(window, &reference[s..s + seg], seg)?;
            Some((
                s as f64 / RATE as f64,
                a.lag as f64 * 1000.0 / RATE as f64,
                a.ncc,
            ))
        })
        .collect()
}

/// PESQ inputs from a recording whose delay moves along the speech (see [`delay_track`]):
/// the degraded signal runs from the smallest delay found (with an NCC of at least
/// `min_ncc`) for the reference's length plus how far the delay moved, and the reference is
/// padded with silence to the same length. PESQ then aligns each utterance itself.
pub fn cut_tracked(
    reference: &[f32],
    recording: &[f32],
    track: &[(f64, f64, f64)],
    min_ncc: f64,
) -> Option<(Vec<f32>, Vec<f32>)> {
    let good = track.iter().filter(|&&(_, _, ncc)| ncc >= min_ncc);
    let (lo, hi) = good.fold(None, |acc: Option<(f64, f64)>, &(_, ms, _)| {
        Some(acc.map_or((ms, ms), |(lo, hi)| (lo.min(ms), hi.max(ms))))
    })?;
    let to_samples = |ms: f64| (ms.max(0.0) * RATE as f64 / 1000.0).round() as usize;
    let (start, drift) = (to_samples(lo), to_samples(hi - lo));
    let len = reference.len() + drift;
    let mut degraded = vec![0f32; len];
    for (i, d) in degraded.iter_mut().enumerate() {
        *d = recording.get(start + i).copied().unwrap_or(0.0);
    }
    let mut padded = reference.to_vec();
    padded.resize(len, 0.0);
    Some((padded, degraded))
}

/// The Python that scores: reads two raw little-endian f32 files at 16 kHz, prints the
/// wideband MOS-LQO.
const SCORE: &str = "\
import sys, numpy as np
from pesq import pesq
ref = np.fromfile(sys.argv[1], dtype='<f4').astype(np.float64)
deg = np.fromfile(sys.argv[2], dtype='<f4').astype(np.float64)
print(pesq(16000, ref, deg, 'wb'))
";

/// Checks that `python` can import `pesq` and `numpy`.
pub fn check_python(python: &str) -> Result<(), String> {
    match Command::new(python)
        .args(["-c", "import pesq, numpy"])
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`{python}` cannot import pesq and numpy ({}); scripts/bench-audio.sh makes a venv with them",
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
                .trim()
        )),
        Err(e) => Err(format!("cannot run `{python}`: {e}")),
    }
}

/// Wideband PESQ of `degraded` against `reference`, both 16 kHz, using scratch files in `dir`.
pub fn score(python: &str, reference: &[f32], degraded: &[f32], dir: &Path) -> anyhow::Result<f64> {
    let write = |name: &str, x: &[f32]| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(name);
        let bytes: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let r = write("pesq-ref.f32", reference)?;
    let d = write("pesq-deg.f32", degraded)?;
    let out = Command::new(python)
        .args(["-c", SCORE])
        .arg(&r)
        .arg(&d)
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(
        out.status.success(),
        "pesq failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("pesq printed {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::speech_like;

    #[test]
    fn resampling_keeps_a_tone_and_its_timing() {
        let tone: Vec<f32> = (0..RATE)
            .map(|i| (std::f32::consts::TAU * 1000.0 * i as f32 / RATE as f32).sin() * 0.5)
            .collect();
        let out = to_16k(&tone).unwrap();
        assert_eq!(out.len(), PESQ_RATE);
        // Same tone at the new rate, in phase, away from the edges.
        for (i, &o) in out.iter().enumerate().take(15_000).skip(1000) {
            let want = (std::f32::consts::TAU * 1000.0 * i as f32 / PESQ_RATE as f32).sin() * 0.5;
            assert!((o - want).abs() < 0.01, "sample {i}: {o} vs {want}");
        }
        // 10 kHz is above the new Nyquist rate: filtered out.
        let high: Vec<f32> = (0..RATE)
            .map(|i| (std::f32::consts::TAU * 10_000.0 * i as f32 / RATE as f32).sin() * 0.5)
            .collect();
        let out = to_16k(&high).unwrap();
        assert!(crate::signal::rms(&out[1000..15_000]) < 0.01);
    }

    #[test]
    fn a_delay_that_grows_is_tracked() {
        let speech = speech_like(4.0, 8);
        // 100 ms late, then 50 ms more from 2 s on (a refill of the speaker's cushion).
        let mut rec = vec![0f32; RATE / 10];
        rec.extend_from_slice(&speech[..2 * RATE]);
        rec.extend(std::iter::repeat_n(0.0, RATE / 20));
        rec.extend_from_slice(&speech[2 * RATE..]);
        let track = delay_track(&speech, &rec, RATE / 2);
        assert!(track.len() >= 5, "{track:?}");
        for &(t, ms, ncc) in &track {
            let want = if t < 2.0 { 100.0 } else { 150.0 };
            assert!((ms - want).abs() < 0.1 && ncc > 0.99, "{track:?}");
        }
    }

    #[test]
    fn a_moving_delay_is_cut_from_its_smallest_to_its_largest() {
        let track = [(0.0, 100.0, 0.99), (0.5, 80.0, 0.3), (1.0, 150.0, 0.95)];
        let reference = vec![0.5f32; RATE];
        let recording: Vec<f32> = (0..3 * RATE).map(|i| i as f32).collect();
        let (r, d) = cut_tracked(&reference, &recording, &track, 0.8).unwrap();
        // From 100 ms (the 80 ms match is too poor to count), 50 ms longer than the reference.
        assert_eq!((r.len(), d.len()), (RATE + RATE / 20, RATE + RATE / 20));
        assert_eq!(d[0], (RATE / 10) as f32);
        assert_eq!(r[RATE], 0.0);
        assert!(cut_tracked(&reference, &recording, &[], 0.8).is_none());
    }

    #[test]
    fn the_recording_is_cut_to_the_reference() {
        let speech = speech_like(2.0, 5);
        let mut recording = vec![0f32; 7_000];
        recording.extend(speech.iter().map(|s| s * 0.5));
        // Ends 0.1 s early.
        recording.truncate(7_000 + speech.len() - RATE / 10);
        let (cut, a) = cut_aligned(&speech, &recording).unwrap();
        assert_eq!(a.lag, 7_000);
        assert_eq!(cut.len(), speech.len());
        assert_eq!(cut[100], speech[100] * 0.5);
        assert!(cut[speech.len() - RATE / 20..].iter().all(|&s| s == 0.0));
    }
}
