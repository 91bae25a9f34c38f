//! Feeding a speaker from the network: decoded frames arrive when the network and the
//! scheduler deliver them, the device takes samples on its own clock. [`SpeakerFeed`] keeps a
//! cushion of silence ahead of the audio at the start and again whenever the ring has run dry,
//! so one late frame costs one short gap instead of chopping every frame after it.
//!
//! This is the fixed first step; the adaptive jitter buffer (a target that follows the observed
//! jitter and shrinks when the network calms) replaces it in issue 5.

use rtrb::Producer;

use crate::FRAME_SAMPLES;

/// The default cushion: 60 ms at 48 kHz.
pub const DEFAULT_CUSHION: usize = 48_000 * 60 / 1000;

/// Queued beyond the cushion by more than this when a frame comes, a quiet frame is dropped:
/// the delay goes back down where nobody hears it.
pub const TRIM_QUIET_ABOVE: usize = FRAME_SAMPLES;

/// Queued beyond the cushion by more than this (100 ms), any frame is dropped: a burst (a
/// device's start, a network catching up) must not become delay for the rest of the call.
pub const TRIM_ANY_ABOVE: usize = 5 * FRAME_SAMPLES;

/// A frame this quiet (RMS) is silence for trimming.
const QUIET_RMS: f32 = 0.01;

/// A speaker ring's producer with a cushion against lateness.
pub struct SpeakerFeed {
    ring: Producer<f32>,
    cushion: usize,
    refills: u64,
    trimmed: u64,
}

impl SpeakerFeed {
    /// Wraps the producer of a speaker ring (from [`crate::Playback::start`]) and puts the
    /// first `cushion` samples of silence in it.
    pub fn new(ring: Producer<f32>, cushion: usize) -> SpeakerFeed {
        let mut feed = SpeakerFeed {
            ring,
            cushion,
            refills: 0,
            trimmed: 0,
        };
        feed.silence(cushion);
        feed
    }

    /// Queues one decoded frame (or any run of samples). If the device has (nearly) used up
    /// everything queued, the network was late: a fresh cushion goes in first. If far more
    /// than the cushion is queued already, the frame is dropped instead (a quiet one from
    /// [`TRIM_QUIET_ABOVE`], any from [`TRIM_ANY_ABOVE`]), so the delay comes back down to the
    /// cushion instead of growing with every burst. Samples that do not fit in a full ring are
    /// dropped.
    pub fn push(&mut self, samples: &[f32]) {
        let queued = self.queued();
        if queued < FRAME_SAMPLES / 4 {
            self.refills += 1;
            self.silence(self.cushion);
        } else {
            let excess = queued.saturating_sub(self.cushion);
            let quiet = || {
                let n = samples.len().max(1) as f32;
                (samples.iter().map(|s| s * s).sum::<f32>() / n).sqrt() < QUIET_RMS
            };
            if excess > TRIM_ANY_ABOVE || (excess > TRIM_QUIET_ABOVE && quiet()) {
                self.trimmed += 1;
                return;
            }
        }
        for &s in samples {
            if self.ring.push(s).is_err() {
                break;
            }
        }
    }

    /// Samples queued and not yet played.
    pub fn queued(&self) -> usize {
        self.ring.buffer().capacity() - self.ring.slots()
    }

    /// How many times a cushion went in after the ring ran dry (the first one not counted).
    pub fn refills(&self) -> u64 {
        self.refills
    }

    /// Frames dropped to bring the delay back to the cushion.
    pub fn trimmed(&self) -> u64 {
        self.trimmed
    }

    fn silence(&mut self, n: usize) {
        for _ in 0..n {
            if self.ring.push(0.0).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use rtrb::RingBuffer;

    use super::*;

    #[test]
    fn a_cushion_goes_in_at_the_start_and_after_running_dry_only() {
        let (producer, mut consumer) = RingBuffer::new(48_000);
        let mut feed = SpeakerFeed::new(producer, DEFAULT_CUSHION);
        assert_eq!(feed.queued(), DEFAULT_CUSHION);
        let frame = vec![0.5f32; FRAME_SAMPLES];
        // On time: frames follow the cushion with no more silence.
        feed.push(&frame);
        feed.push(&frame);
        assert_eq!(feed.queued(), DEFAULT_CUSHION + 2 * FRAME_SAMPLES);
        assert_eq!(feed.refills(), 0);
        // The device plays everything and the next frame is late: a new cushion first.
        while consumer.pop().is_ok() {}
        feed.push(&frame);
        assert_eq!(feed.refills(), 1);
        assert_eq!(feed.queued(), DEFAULT_CUSHION + FRAME_SAMPLES);
        let played: Vec<f32> = std::iter::from_fn(|| consumer.pop().ok()).collect();
        assert!(played[..DEFAULT_CUSHION].iter().all(|&s| s == 0.0));
        assert!(played[DEFAULT_CUSHION..].iter().all(|&s| s == 0.5));
    }

    #[test]
    fn a_burst_does_not_become_delay_for_the_rest_of_the_call() {
        let (producer, mut consumer) = RingBuffer::new(48_000);
        let mut feed = SpeakerFeed::new(producer, DEFAULT_CUSHION);
        // Twenty loud frames at once (a device's start, a network catching up).
        for _ in 0..20 {
            feed.push(&vec![0.5; FRAME_SAMPLES]);
        }
        assert!(
            feed.queued() <= DEFAULT_CUSHION + TRIM_ANY_ABOVE + FRAME_SAMPLES,
            "{} queued",
            feed.queued()
        );
        assert!(feed.trimmed() >= 13, "{} trimmed", feed.trimmed());
        // Then a quiet frame while still above the cushion: dropped; a loud one: kept.
        let before = feed.queued();
        feed.push(&vec![0.001; FRAME_SAMPLES]);
        assert_eq!(feed.queued(), before);
        // Steady state: the device takes a frame for each frame given; nothing is trimmed.
        while feed.queued() > DEFAULT_CUSHION {
            consumer.pop().unwrap();
        }
        let trimmed = feed.trimmed();
        for _ in 0..50 {
            feed.push(&vec![0.001; FRAME_SAMPLES]);
            for _ in 0..FRAME_SAMPLES {
                consumer.pop().unwrap();
            }
        }
        assert_eq!(feed.trimmed(), trimmed, "on-time frames are never trimmed");
    }

    #[test]
    fn a_full_ring_drops_what_does_not_fit() {
        let (producer, _consumer) = RingBuffer::new(FRAME_SAMPLES * 2);
        let mut feed = SpeakerFeed::new(producer, 0);
        for _ in 0..5 {
            feed.push(&vec![0.1; FRAME_SAMPLES]);
        }
        assert_eq!(feed.queued(), FRAME_SAMPLES * 2);
    }
}
