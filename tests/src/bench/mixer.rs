//! The listener's mix of several speakers into one speaker stream.
//!
//! Each receive slot's playout task delivers one 20 ms frame per tick, on its own phase. The
//! mixer queues frames per slot and emits a mixed frame as soon as every *active* slot (one
//! that delivered within [`ACTIVE_FOR`]) has a frame queued: one speaker passes straight
//! through with no added delay; several wait at most for the last of their frames of a tick.
//! A slot that stops delivering stops holding the others back once it goes inactive. The sum
//! is clamped to [-1, 1] so the mix never wraps or exceeds full scale.

use std::collections::VecDeque;
use std::time::Duration;

/// How long a slot counts as active after its last frame.
pub const ACTIVE_FOR: Duration = Duration::from_millis(100);

/// Frames a slot may queue ahead of the others before its oldest is dropped (100 ms).
pub const MAX_QUEUED: usize = 5;

#[derive(Default)]
struct Slot {
    queue: VecDeque<Vec<f32>>,
    last: Option<Duration>,
}

/// Mixes frames of up to `slots` speakers; time is passed in (any monotonic clock).
pub struct Mixer {
    slots: Vec<Slot>,
    dropped: u64,
}

impl Mixer {
    pub fn new(slots: usize) -> Mixer {
        Mixer {
            slots: (0..slots).map(|_| Slot::default()).collect(),
            dropped: 0,
        }
    }

    /// Adds `frame` of `slot` at time `now` and returns the mixed frames now complete.
    pub fn push(&mut self, slot: usize, frame: Vec<f32>, now: Duration) -> Vec<Vec<f32>> {
        if let Some(s) = self.slots.get_mut(slot) {
            s.last = Some(now);
            s.queue.push_back(frame);
            if s.queue.len() > MAX_QUEUED {
                s.queue.pop_front();
                self.dropped += 1;
            }
        }
        self.drain(now)
    }

    /// Mixed frames that are complete at `now` (call on a timer too, so a slot that went
    /// quiet releases the others).
    pub fn drain(&mut self, now: Duration) -> Vec<Vec<f32>> {
        let mut out = Vec::new();
        loop {
            let active = |s: &Slot| s.last.is_some_and(|t| now.saturating_sub(t) <= ACTIVE_FOR);
            let waiting: Vec<usize> = (0..self.slots.len())
                .filter(|&i| !self.slots[i].queue.is_empty())
                .collect();
            if waiting.is_empty() {
                return out;
            }
            let ready = self.slots.iter().all(|s| !s.queue.is_empty() || !active(s));
            if !ready {
                return out;
            }
            let mut mixed: Vec<f32> = Vec::new();
            for i in waiting {
                if let Some(frame) = self.slots[i].queue.pop_front() {
                    if mixed.len() < frame.len() {
                        mixed.resize(frame.len(), 0.0);
                    }
                    for (m, x) in mixed.iter_mut().zip(&frame) {
                        *m += x;
                    }
                }
            }
            for m in &mut mixed {
                *m = m.clamp(-1.0, 1.0);
            }
            out.push(mixed);
        }
    }

    /// Frames dropped because one slot ran too far ahead of the others.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn one_speaker_passes_straight_through() {
        let mut m = Mixer::new(3);
        assert_eq!(
            m.push(1, vec![0.25; 4], Duration::ZERO),
            vec![vec![0.25; 4]]
        );
        assert_eq!(m.push(1, vec![0.5; 4], MS * 20), vec![vec![0.5; 4]]);
    }

    #[test]
    fn three_speakers_are_summed_once_each_has_a_frame_and_never_clip() {
        let mut m = Mixer::new(3);
        // All three become active: the first passes alone, the next wait for slot 0.
        assert_eq!(m.push(0, vec![0.0; 2], Duration::ZERO).len(), 1);
        assert!(m.push(1, vec![0.0; 2], MS * 1).is_empty());
        assert!(m.push(2, vec![0.0; 2], MS * 2).is_empty());
        assert_eq!(m.push(0, vec![0.0; 2], MS * 3).len(), 1);
        assert!(m.push(0, vec![0.5, -0.5], MS * 20).is_empty());
        assert!(m.push(1, vec![0.4, -0.4], MS * 25).is_empty());
        assert_eq!(m.push(2, vec![0.3, -0.3], MS * 30), vec![vec![1.0, -1.0]]);
    }

    #[test]
    fn a_quiet_slot_stops_holding_the_others_and_queues_are_bounded() {
        let mut m = Mixer::new(2);
        assert_eq!(m.push(0, vec![0.1], Duration::ZERO), vec![vec![0.1]]);
        assert!(m.push(1, vec![0.1], Duration::ZERO).is_empty());
        assert_eq!(m.push(0, vec![0.2], MS * 20), vec![vec![0.3]]);
        // Slot 1 goes quiet: slot 0's frames wait until slot 1 is inactive.
        assert!(m.push(0, vec![0.3], MS * 40).is_empty());
        assert!(m.push(0, vec![0.4], MS * 60).is_empty());
        assert_eq!(m.drain(MS * 101), vec![vec![0.3], vec![0.4]]);
        // A slot far ahead of an active one loses its oldest frames.
        let mut m = Mixer::new(2);
        m.push(1, vec![0.0], Duration::ZERO);
        m.push(1, vec![0.0], Duration::ZERO); // emitted at once (slot 0 never active)
        m.push(0, vec![0.0], MS * 1);
        for i in 0..10 {
            m.push(0, vec![i as f32 / 10.0], MS * 2);
        }
        assert!(m.dropped() > 0);
    }
}
