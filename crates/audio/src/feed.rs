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

/// A speaker ring's producer with a cushion against lateness.
pub struct SpeakerFeed {
    ring: Producer<f32>,
    cushion: usize,
    refills: u64,
}

impl SpeakerFeed {
    /// Wraps the producer of a speaker ring (from [`crate::Playback::start`]) and puts the
    /// first `cushion` samples of silence in it.
    pub fn new(ring: Producer<f32>, cushion: usize) -> SpeakerFeed {
        let mut feed = SpeakerFeed {
            ring,
            cushion,
            refills: 0,
        };
        feed.silence(cushion);
        feed
    }

    /// Queues one decoded frame (or any run of samples). If the device has (nearly) used up
    /// everything queued, the network was late: a fresh cushion goes in first. Samples that do
    /// not fit in a full ring are dropped (a ring that full means seconds of delay already).
    pub fn push(&mut self, samples: &[f32]) {
        if self.queued() < FRAME_SAMPLES / 4 {
            self.refills += 1;
            self.silence(self.cushion);
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
    fn a_full_ring_drops_what_does_not_fit() {
        let (producer, _consumer) = RingBuffer::new(FRAME_SAMPLES * 2);
        let mut feed = SpeakerFeed::new(producer, 0);
        for _ in 0..5 {
            feed.push(&vec![0.1; FRAME_SAMPLES]);
        }
        assert_eq!(feed.queued(), FRAME_SAMPLES * 2);
    }
}
