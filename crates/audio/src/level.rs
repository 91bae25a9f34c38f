//! The audio level of a frame as RFC 6464 puts it on the wire: -dBov and a voice bit.

/// One frame's loudness for the RTP audio level header extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLevel {
    /// The frame's RMS level in -dBov (0 for a full-scale square wave; a full-scale sine is 3)
    /// rounded to a whole dB, 0..=127, where 127 is silence.
    pub dbov: u8,
    /// Whether the sender judged the frame to carry voice.
    pub voice: bool,
}

impl FrameLevel {
    /// -127 dBov: digital silence.
    pub const SILENT: u8 = 127;

    /// Frames at least this loud (-dBov) count as voice when nothing better can tell: the
    /// microphone path without voice processing. -50 dBov is above a quiet room's noise floor
    /// and below soft speech.
    pub const ENERGY_VOICE_DBOV: u8 = 50;

    /// Measures `frame`; `voice` is the caller's voice activity verdict.
    pub fn measure(frame: &[f32], voice: bool) -> FrameLevel {
        let dbov = dbov(frame);
        FrameLevel {
            dbov,
            voice: voice && dbov < Self::SILENT,
        }
    }

    /// Measures `frame` and calls it voice when it is louder than
    /// [`FrameLevel::ENERGY_VOICE_DBOV`].
    pub fn measure_by_energy(frame: &[f32]) -> FrameLevel {
        let dbov = dbov(frame);
        FrameLevel {
            dbov,
            voice: dbov <= Self::ENERGY_VOICE_DBOV,
        }
    }
}

/// The RMS level of `frame` in whole -dBov, 0..=127; non-finite samples count as silence.
fn dbov(frame: &[f32]) -> u8 {
    if frame.is_empty() {
        return FrameLevel::SILENT;
    }
    let power = frame
        .iter()
        .map(|&s| if s.is_finite() { f64::from(s) } else { 0.0 })
        .map(|s| s * s)
        .sum::<f64>()
        / frame.len() as f64;
    if power <= 0.0 {
        return FrameLevel::SILENT;
    }
    let db = -10.0 * power.log10();
    // `as` saturates a float to the integer's range; the clamp keeps the RFC's 0..=127.
    (db.round().max(0.0) as u8).min(FrameLevel::SILENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f32) -> Vec<f32> {
        (0..960)
            .map(|i| amplitude * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn levels_follow_the_signal_in_dbov() {
        assert_eq!(FrameLevel::measure(&[1.0; 960], true).dbov, 0);
        assert_eq!(FrameLevel::measure(&sine(1.0), true).dbov, 3);
        assert_eq!(FrameLevel::measure(&sine(0.1), true).dbov, 23);
        assert_eq!(FrameLevel::measure(&sine(0.01), true).dbov, 43);
        assert_eq!(FrameLevel::measure(&[2.0; 960], true).dbov, 0);
        assert_eq!(FrameLevel::measure(&[1e-9; 960], true).dbov, 127);
    }

    #[test]
    fn silence_is_never_voice() {
        let level = FrameLevel::measure(&[0.0; 960], true);
        assert_eq!(
            level,
            FrameLevel {
                dbov: 127,
                voice: false
            }
        );
        assert_eq!(FrameLevel::measure(&[], true).dbov, 127);
        assert_eq!(FrameLevel::measure(&[f32::NAN; 960], true).dbov, 127);
        assert!(!FrameLevel::measure_by_energy(&sine(0.001)).voice);
        assert!(FrameLevel::measure_by_energy(&sine(0.1)).voice);
    }
}
