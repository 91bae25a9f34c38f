//! Mixing the speakers a listener hears into the one stream its speaker plays.
//!
//! Each receive slot's playout task delivers one 20 ms frame per tick on its own timer, so the
//! slots' frames arrive interleaved and slightly out of phase. [`Mixer`] queues a few frames per
//! slot and emits one mixed frame as soon as every slot that is currently talking has one ready
//! (or one slot has fallen a frame behind, so a stalled slot never holds the others up for more
//! than a frame). With one speaker that is every frame as it comes: mixing adds no delay.
//!
//! Each slot has a gain (a listener's own volume for that speaker, 0 to mute), and the sum goes
//! through a soft limiter, so two loud speakers together can never clip: below
//! [`LIMIT_KNEE`] the signal passes unchanged, above it the peak bends smoothly toward 1.0 and
//! never reaches it. Sans-IO and allocation-free after construction.

use crate::FRAME_SAMPLES;

/// Receive slots a mixer handles (slot numbers at or above are ignored).
pub const MIX_SLOTS: usize = 8;

/// Frames queued per slot before the oldest is dropped: more would only be delay.
pub const MIX_QUEUE: usize = 4;

/// Where the limiter starts bending the signal.
pub const LIMIT_KNEE: f32 = 0.8;

/// A slot that delivered nothing for this many mixed frames (100 ms) no longer holds the mix.
const QUIET_AFTER: u32 = 5;

/// The highest gain a listener may give one speaker (+12 dB).
pub const MAX_GAIN: f32 = 4.0;

#[derive(Clone)]
struct SlotQueue {
    frames: [[f32; FRAME_SAMPLES]; MIX_QUEUE],
    head: usize,
    len: usize,
    gain: f32,
    /// Mixed frames since this slot last delivered one; `u32::MAX` for never.
    idle: u32,
}

impl SlotQueue {
    fn new() -> Self {
        SlotQueue {
            frames: [[0.0; FRAME_SAMPLES]; MIX_QUEUE],
            head: 0,
            len: 0,
            gain: 1.0,
            idle: u32::MAX,
        }
    }

    fn talking(&self) -> bool {
        self.idle < QUIET_AFTER
    }
}

/// What [`Mixer`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixStats {
    /// Frames mixed and emitted.
    pub mixed: u64,
    /// Frames dropped because their slot's queue was full.
    pub overflowed: u64,
    /// Mixed frames in which the limiter bent at least one sample.
    pub limited: u64,
}

/// Mixes up to [`MIX_SLOTS`] speakers, one 20 ms frame at a time.
pub struct Mixer {
    slots: Box<[SlotQueue]>,
    out: Box<[f32; FRAME_SAMPLES]>,
    stats: MixStats,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new()
    }
}

impl Mixer {
    pub fn new() -> Mixer {
        Mixer {
            slots: vec![SlotQueue::new(); MIX_SLOTS].into_boxed_slice(),
            out: Box::new([0.0; FRAME_SAMPLES]),
            stats: MixStats::default(),
        }
    }

    /// Sets slot `slot`'s gain (clamped to `0 ..= MAX_GAIN`; NaN counts as 1).
    pub fn set_gain(&mut self, slot: usize, gain: f32) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.gain = if gain.is_nan() {
                1.0
            } else {
                gain.clamp(0.0, MAX_GAIN)
            };
        }
    }

    pub fn gain(&self, slot: usize) -> f32 {
        self.slots.get(slot).map_or(1.0, |s| s.gain)
    }

    /// Queues one frame of slot `slot` (shorter frames are padded with silence, longer ones
    /// cut to [`FRAME_SAMPLES`]; non-finite samples count as silence), then calls `emit` with
    /// each mixed frame that became ready (none, one, or rarely more).
    pub fn push(&mut self, slot: usize, samples: &[f32], mut emit: impl FnMut(&[f32])) {
        let Some(q) = self.slots.get_mut(slot) else {
            return;
        };
        if q.len == MIX_QUEUE {
            q.head = (q.head + 1) % MIX_QUEUE;
            q.len -= 1;
            self.stats.overflowed += 1;
        }
        let at = (q.head + q.len) % MIX_QUEUE;
        let frame = &mut q.frames[at];
        for (i, s) in frame.iter_mut().enumerate() {
            *s = samples
                .get(i)
                .copied()
                .filter(|x| x.is_finite())
                .unwrap_or(0.0);
        }
        q.len += 1;
        q.idle = 0;
        while self.ready() {
            self.mix_one();
            emit(&self.out[..]);
        }
    }

    /// Whether a mixed frame can go: every talking slot has a frame queued, or one slot is a
    /// frame ahead (another stalled).
    fn ready(&self) -> bool {
        let any = self.slots.iter().any(|s| s.len > 0);
        let all_talking = self.slots.iter().all(|s| !s.talking() || s.len > 0);
        let one_ahead = self.slots.iter().any(|s| s.len >= 2);
        any && (all_talking || one_ahead)
    }

    fn mix_one(&mut self) {
        self.out.fill(0.0);
        for q in self.slots.iter_mut() {
            if q.len == 0 {
                q.idle = q.idle.saturating_add(1);
                continue;
            }
            let frame = &q.frames[q.head];
            let g = q.gain;
            for (o, s) in self.out.iter_mut().zip(frame.iter()) {
                *o += g * s;
            }
            q.head = (q.head + 1) % MIX_QUEUE;
            q.len -= 1;
        }
        let mut bent = false;
        for o in self.out.iter_mut() {
            let (y, b) = limit(*o);
            *o = y;
            bent |= b;
        }
        self.stats.mixed += 1;
        if bent {
            self.stats.limited += 1;
        }
    }

    pub fn stats(&self) -> MixStats {
        self.stats
    }
}

/// The soft limiter: identity up to [`LIMIT_KNEE`], then a tanh curve that approaches but never
/// reaches 1.0. Returns the sample and whether it was bent.
pub(crate) fn limit(x: f32) -> (f32, bool) {
    let a = x.abs();
    if a <= LIMIT_KNEE {
        return (x, false);
    }
    let room = 1.0 - LIMIT_KNEE;
    // tanh(u) < 1 for every finite u, so the result stays below 1.0; the min guards rounding.
    let y = (LIMIT_KNEE + room * ((a - LIMIT_KNEE) / room).tanh()).min(0.999_999);
    (y.copysign(x), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f32, amp: f32, frame: usize) -> Vec<f32> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (frame * FRAME_SAMPLES + i) as f32 / 48_000.0;
                amp * (std::f32::consts::TAU * freq * t).sin()
            })
            .collect()
    }

    fn collect(m: &mut Mixer, slot: usize, samples: &[f32], out: &mut Vec<Vec<f32>>) {
        m.push(slot, samples, |f| out.push(f.to_vec()));
    }

    #[test]
    fn one_speaker_passes_unchanged_and_at_once() {
        let mut m = Mixer::new();
        let mut out = Vec::new();
        for k in 0..10 {
            let f = tone(440.0, 0.5, k);
            collect(&mut m, 2, &f, &mut out);
            assert_eq!(out.len(), k + 1, "each frame mixes as it comes");
            assert_eq!(out[k], f, "bit for bit below the knee");
        }
    }

    #[test]
    fn two_loud_speakers_sum_without_clipping() {
        let mut m = Mixer::new();
        let mut out = Vec::new();
        for k in 0..50 {
            collect(&mut m, 0, &tone(300.0, 0.9, k), &mut out);
            collect(&mut m, 1, &tone(300.0, 0.9, k), &mut out);
        }
        let peak = out.iter().flatten().fold(0f32, |p, s| p.max(s.abs()));
        assert!(peak < 1.0 && peak > LIMIT_KNEE, "peak {peak}");
        assert!(m.stats().limited > 0);
        // Once both talk, one output per pair of inputs: the frames are summed, not chained.
        assert!((49..=51).contains(&out.len()), "{} frames", out.len());
    }

    #[test]
    fn a_gain_of_zero_mutes_one_speaker_only() {
        let mut m = Mixer::new();
        m.set_gain(1, 0.0);
        let mut out = Vec::new();
        for k in 0..20 {
            collect(&mut m, 0, &tone(200.0, 0.3, k), &mut out);
            collect(&mut m, 1, &tone(2000.0, 0.3, k), &mut out);
        }
        let last = out.last().unwrap();
        assert_eq!(last, &tone(200.0, 0.3, 19), "only slot 0 is heard");
        m.set_gain(1, f32::NAN);
        assert_eq!(m.gain(1), 1.0);
        m.set_gain(1, 100.0);
        assert_eq!(m.gain(1), MAX_GAIN);
    }

    #[test]
    fn a_stalled_speaker_holds_the_others_up_by_one_frame_at_most() {
        let mut m = Mixer::new();
        let mut out = Vec::new();
        for k in 0..5 {
            collect(&mut m, 0, &tone(200.0, 0.3, k), &mut out);
            collect(&mut m, 1, &tone(200.0, 0.3, k), &mut out);
        }
        let before = out.len();
        // Slot 1 stalls; slot 0 goes on: after one frame of waiting, slot 0's frames flow.
        for k in 5..15 {
            collect(&mut m, 0, &tone(200.0, 0.3, k), &mut out);
        }
        assert!(out.len() >= before + 9, "{} then {}", before, out.len());
    }

    #[test]
    fn queues_are_bounded_and_bad_samples_are_silence() {
        let mut m = Mixer::new();
        let mut out = Vec::new();
        // Slot 0 talks, then slot 1 floods without slot 0: its queue never exceeds the bound.
        collect(&mut m, 0, &tone(200.0, 0.3, 0), &mut out);
        for _ in 0..100 {
            collect(&mut m, 1, &[f32::NAN, f32::INFINITY, 0.5], &mut out);
        }
        assert!(out.iter().flatten().all(|s| s.is_finite()));
        assert!(out.iter().flatten().any(|&s| s == 0.5));
        collect(&mut m, 99, &[1.0], &mut out); // no such slot: ignored
    }

    #[test]
    fn the_limiter_is_identity_below_the_knee_and_never_reaches_one() {
        assert_eq!(limit(0.5), (0.5, false));
        assert_eq!(limit(-0.8), (-0.8, false));
        for x in [0.81f32, 1.0, 2.0, 10.0, 1e6] {
            let (y, bent) = limit(x);
            assert!(bent && y > LIMIT_KNEE && y < 1.0, "{x} -> {y}");
            assert_eq!(limit(-x).0, -y);
        }
    }
}
