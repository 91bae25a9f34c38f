//! Records what a listener hears into a WAV file, mixing every receive slot on one timeline.

use std::path::Path;
use std::time::Duration;

use confab_audio::{AudioError, SAMPLE_RATE, WavWriter};
use confab_rtc::RECV_SLOTS;

use crate::AudioFrame;

/// A WAV recording of decoded audio. Each slot's first frame is placed by its arrival time;
/// after that a slot's samples follow each other without gaps (the decoder already filled
/// losses and pauses), so the recording keeps the speaker's own timing.
pub struct Recorder {
    writer: WavWriter,
    start: Option<std::time::Instant>,
    cursors: [Option<u64>; RECV_SLOTS],
    /// Samples from `base` on that are not yet written.
    pending: Vec<f32>,
    base: u64,
}

/// Samples kept unwritten behind the furthest slot so a slower slot can still mix in.
const MIX_WINDOW: u64 = SAMPLE_RATE as u64;

impl Recorder {
    /// Creates the file.
    pub fn create(path: &Path) -> Result<Recorder, AudioError> {
        Ok(Recorder {
            writer: WavWriter::create(path)?,
            start: None,
            cursors: [None; RECV_SLOTS],
            pending: Vec::new(),
            base: 0,
        })
    }

    /// Whether any audio has been recorded.
    pub fn is_empty(&self) -> bool {
        self.start.is_none()
    }

    /// Adds one decoded frame.
    pub fn add(&mut self, frame: &AudioFrame) -> Result<(), AudioError> {
        let Some(cursor) = self.cursors.get(frame.slot).copied() else {
            return Ok(());
        };
        let len = frame.samples.len() as u64;
        let duration = Duration::from_secs_f64(len as f64 / SAMPLE_RATE as f64);
        let start = *self.start.get_or_insert_with(|| {
            frame
                .decoded_at
                .checked_sub(duration)
                .unwrap_or(frame.decoded_at)
        });
        let pos = cursor.unwrap_or_else(|| {
            let at = frame
                .decoded_at
                .saturating_duration_since(start)
                .as_secs_f64();
            ((at * SAMPLE_RATE as f64) as u64).saturating_sub(len)
        });
        let end = pos + len;
        if end > self.base + self.pending.len() as u64 {
            self.pending.resize((end - self.base) as usize, 0.0);
        }
        for (i, s) in frame.samples.iter().enumerate() {
            let at = pos + i as u64;
            if at >= self.base {
                self.pending[(at - self.base) as usize] += s;
            }
        }
        self.cursors[frame.slot] = Some(end);
        self.flush(false)
    }

    fn flush(&mut self, all: bool) -> Result<(), AudioError> {
        let furthest = self.cursors.iter().flatten().max().copied().unwrap_or(0);
        let slowest = self.cursors.iter().flatten().min().copied().unwrap_or(0);
        let upto = if all {
            self.base + self.pending.len() as u64
        } else {
            slowest.max(furthest.saturating_sub(MIX_WINDOW))
        };
        if upto > self.base {
            let n = ((upto - self.base) as usize).min(self.pending.len());
            self.writer.write(&self.pending[..n])?;
            self.pending.drain(..n);
            self.base += n as u64;
        }
        Ok(())
    }

    /// Writes what is left and closes the file; returns the number of samples recorded.
    pub fn finish(mut self) -> Result<u64, AudioError> {
        self.flush(true)?;
        let total = self.base;
        self.writer.finish()?;
        Ok(total)
    }
}
