//! Mouth-to-ear delay from a train of short chirps: each is found where the microphone heard
//! it and where the speaker played it, and the difference is one delay sample.
//!
//! Four chirp shapes take turns (rising and falling sweeps over two bands), so a chirp is
//! never mistaken for its neighbour when the delay approaches the spacing.

use crate::signal::{RATE, align};

/// Length of one chirp: 40 ms.
pub const CHIRP_SAMPLES: usize = RATE * 40 / 1000;

/// Shapes that take turns in a train.
pub const SHAPES: usize = 4;

/// One Hann-windowed linear sweep; `shape` picks the band and direction.
pub fn chirp(shape: usize) -> Vec<f32> {
    let (f0, f1) = match shape % SHAPES {
        0 => (400.0, 2400.0),
        1 => (2400.0, 400.0),
        2 => (1200.0, 4000.0),
        _ => (4000.0, 1200.0),
    };
    let n = CHIRP_SAMPLES as f64;
    (0..CHIRP_SAMPLES)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let dur = n / RATE as f64;
            // Phase of a linear sweep: 2π (f0 t + (f1 - f0) t² / 2T).
            let phase = std::f64::consts::TAU * (f0 * t + (f1 - f0) * t * t / (2.0 * dur));
            let window = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos();
            (0.5 * window * phase.sin()) as f32
        })
        .collect()
}

/// A stimulus of chirps at known places.
#[derive(Clone, Debug)]
pub struct ChirpTrain {
    pub samples: Vec<f32>,
    /// Where each chirp starts in `samples`.
    pub onsets: Vec<usize>,
}

/// `count` chirps `spacing` samples apart, after `lead_in` samples of silence, then one
/// spacing of silence.
pub fn chirp_train(count: usize, spacing: usize, lead_in: usize) -> ChirpTrain {
    let spacing = spacing.max(CHIRP_SAMPLES);
    let mut samples = vec![0f32; lead_in + (count + 1) * spacing];
    let mut onsets = Vec::with_capacity(count);
    for i in 0..count {
        let at = lead_in + i * spacing;
        samples[at..at + CHIRP_SAMPLES].copy_from_slice(&chirp(i));
        onsets.push(at);
    }
    ChirpTrain { samples, onsets }
}

/// Where `template` best matches inside `signal[from..from + len]`: its absolute start and the
/// normalised cross-correlation there.
pub fn find(signal: &[f32], template: &[f32], from: usize, len: usize) -> Option<(usize, f64)> {
    let from = from.min(signal.len());
    let end = (from + len).min(signal.len());
    let a = align(&signal[from..end], template, template.len())?;
    Some((from + usize::try_from(a.lag).ok()?, a.ncc))
}

/// The earliest place where `template` matches `signal` with a normalised cross-correlation of
/// at least `min_ncc`, searching half a second at a time.
pub fn find_first(signal: &[f32], template: &[f32], min_ncc: f64) -> Option<usize> {
    let step = RATE / 2;
    (0..signal.len()).step_by(step).find_map(|from| {
        find(signal, template, from, step + template.len())
            .filter(|&(_, ncc)| ncc >= min_ncc)
            .map(|(at, _)| at)
    })
}

/// The delays found for a train.
#[derive(Clone, Debug, Default)]
pub struct Delays {
    /// One per chirp found at both ends, in ms.
    pub ms: Vec<f64>,
    /// Chirps the microphone heard but the speaker did not play recognisably (lost,
    /// concealed, or later than the search window).
    pub missed: usize,
    /// Chirps not found in the microphone's channel at all (a recording that started late).
    pub unheard: usize,
}

/// Finds each chirp of `train` in `mouth` (the microphone's signal, in which the train starts
/// somewhere after the recording does) and then in `ear` (on the same clock), searching up to `max_delay` samples after
/// it; a match needs a normalised cross-correlation of at least `min_ncc`.
///
/// The microphone's copy is tracked chirp by chirp (each searched near where the previous one
/// was found, plus the spacing), because the player feeding it may stretch the train a little
/// under load; what counts is when each chirp reached the microphone.
pub fn delays(
    train: &ChirpTrain,
    mouth: &[f32],
    ear: &[f32],
    max_delay: usize,
    min_ncc: f64,
) -> Delays {
    let mut out = Delays::default();
    // The first chirp: the earliest match of its shape (the train repeats its shapes, so a
    // whole-train alignment can slip by a cycle; the recording starts before the train).
    let Some(first) = find_first(mouth, &chirp(0), min_ncc.max(0.8)) else {
        out.unheard = train.onsets.len();
        return out;
    };
    let (before, after) = (RATE * 60 / 1000, RATE / 10);
    let mut expected = first as i64;
    for (i, &onset) in train.onsets.iter().enumerate() {
        let step = train
            .onsets
            .get(i + 1)
            .map_or(0, |&next| (next - onset) as i64);
        let template = chirp(i);
        let from = (expected - before as i64).max(0) as usize;
        let heard = find(mouth, &template, from, CHIRP_SAMPLES + before + after)
            .filter(|&(_, ncc)| ncc >= min_ncc);
        let Some((m, _)) = heard else {
            out.unheard += 1;
            expected += step;
            continue;
        };
        expected = m as i64 + step;
        match find(ear, &template, m, max_delay + CHIRP_SAMPLES).filter(|&(_, n)| n >= min_ncc) {
            Some((e, _)) => out.ms.push((e - m) as f64 * 1000.0 / RATE as f64),
            None => out.missed += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_differ_from_each_other() {
        for a in 0..SHAPES {
            for b in 0..SHAPES {
                let x = align(&chirp(a), &chirp(b), CHIRP_SAMPLES).unwrap();
                if a == b {
                    assert!(x.ncc > 0.999);
                } else {
                    assert!(x.ncc < 0.5, "shapes {a} and {b}: {x:?}");
                }
            }
        }
    }

    #[test]
    fn known_delays_are_found_and_a_missing_chirp_is_counted() {
        let train = chirp_train(12, RATE / 4, RATE / 10);
        // The microphone's recording starts 0.3 s before the train, and its player stalled
        // 30 ms before chirp 4 and again before chirp 9 (the train reaches it stretched).
        let stall = RATE * 3 / 100;
        let lead = RATE * 3 / 10;
        let mut mouth = vec![0f32; lead];
        for (i, &onset) in train.onsets.iter().enumerate() {
            let end = train
                .onsets
                .get(i + 1)
                .copied()
                .unwrap_or(train.samples.len());
            if i == 4 || i == 9 {
                mouth.extend(std::iter::repeat_n(0.0, stall));
            }
            let start = if i == 0 { 0 } else { onset };
            mouth.extend_from_slice(&train.samples[start..end]);
        }
        let mouth_onset =
            |i: usize| lead + train.onsets[i] + stall * ((i >= 4) as usize + (i >= 9) as usize);
        // The ear: each chirp i delayed by 50 + 5 i ms, quieter, with a little noise; chirp 7
        // lost.
        let mut ear = vec![0f32; mouth.len() + RATE];
        let mut noise = 1u32;
        for x in &mut ear {
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *x = (noise >> 8) as f32 / (1u32 << 24) as f32 * 0.01 - 0.005;
        }
        for i in 0..train.onsets.len() {
            if i == 7 {
                continue;
            }
            let at = mouth_onset(i) + RATE * (50 + 5 * i) / 1000;
            for (k, s) in chirp(i).iter().enumerate() {
                ear[at + k] += 0.3 * s;
            }
        }
        let d = delays(&train, &mouth, &ear, RATE * 3 / 10, 0.5);
        assert_eq!((d.ms.len(), d.missed, d.unheard), (11, 1, 0), "{d:?}");
        let expected: Vec<f64> = (0..12)
            .filter(|&i| i != 7)
            .map(|i| 50.0 + 5.0 * i as f64)
            .collect();
        for (got, want) in d.ms.iter().zip(&expected) {
            assert!((got - want).abs() < 0.05, "{got} vs {want}");
        }
    }
}
