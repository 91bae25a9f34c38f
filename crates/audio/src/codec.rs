//! Opus at 48 kHz mono in 20 ms frames, as Confab sends it: VoIP tuning, in-band FEC and DTX.

use opus::{Application, Bitrate, Channels};

use crate::{AudioError, FRAME_SAMPLES, MAX_PACKET_BYTES, SAMPLE_RATE};

/// Encoder settings. The defaults suit one voice over the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Target bitrate in bits per second (6 000 ..= 510 000).
    pub bitrate_bps: i32,
    /// Put a low-bitrate copy of each frame into the next packet (in-band FEC), so a single lost
    /// packet can be rebuilt from its successor. Only SILK and hybrid packets carry it.
    pub fec: bool,
    /// Discontinuous transmission: during silence the encoder says [`Encoded::Dtx`] for most
    /// frames and nothing needs sending; the receiver fills the gap with comfort noise.
    pub dtx: bool,
    /// The packet loss the encoder plans for (0 ..= 100); FEC spends more bits as it rises.
    pub expected_loss_percent: i32,
    /// How hard the encoder searches (0 ..= 10): CPU against quality at the same bitrate.
    /// The default is libopus's own, 9. Measured on `confab-bench audio`'s codec-alone
    /// baseline (espeak-ng speech, 48 kbit/s, FEC, DTX; PESQ at 0 % / 5 % loss): 8 to 10 give
    /// 4.18 / 3.94; 7 gives 4.10 / 3.78; 6 gives 4.10 / 3.76 and encodes ~12 % faster than 9 (about
    /// 0.2 % of a core); 5 drops to 3.90 clean. The cheaper settings lose too much under loss.
    pub complexity: i32,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            bitrate_bps: 48_000,
            fec: true,
            dtx: true,
            expected_loss_percent: 5,
            complexity: 9,
        }
    }
}

/// The result of encoding one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A packet of this many bytes was written at the start of the output buffer.
    Packet(usize),
    /// The encoder is in DTX (silence): nothing needs sending for this frame.
    Dtx,
}

/// An Opus encoder for 20 ms mono frames at 48 kHz.
#[derive(Debug)]
pub struct Encoder {
    inner: opus::Encoder,
    dtx: bool,
    /// Sanitised copy of the input: libopus is not promised to cope with NaN or infinity.
    frame: Box<[f32; FRAME_SAMPLES]>,
}

impl Encoder {
    /// Creates an encoder with `Application::Voip` and the given settings.
    pub fn new(config: &EncoderConfig) -> Result<Self, AudioError> {
        if !(6_000..=510_000).contains(&config.bitrate_bps) {
            return Err(AudioError::InvalidEncoderConfig {
                field: "bitrate_bps",
                value: config.bitrate_bps,
                expected: "between 6000 and 510000",
            });
        }
        if !(0..=100).contains(&config.expected_loss_percent) {
            return Err(AudioError::InvalidEncoderConfig {
                field: "expected_loss_percent",
                value: config.expected_loss_percent,
                expected: "between 0 and 100",
            });
        }
        if !(0..=10).contains(&config.complexity) {
            return Err(AudioError::InvalidEncoderConfig {
                field: "complexity",
                value: config.complexity,
                expected: "between 0 and 10",
            });
        }
        let mut inner = opus::Encoder::new(SAMPLE_RATE, Channels::Mono, Application::Voip)
            .map_err(AudioError::opus("encoder create"))?;
        inner
            .set_bitrate(Bitrate::Bits(config.bitrate_bps))
            .map_err(AudioError::opus("set bitrate"))?;
        inner
            .set_inband_fec(config.fec)
            .map_err(AudioError::opus("set in-band FEC"))?;
        inner
            .set_packet_loss_perc(config.expected_loss_percent)
            .map_err(AudioError::opus("set expected packet loss"))?;
        inner
            .set_dtx(config.dtx)
            .map_err(AudioError::opus("set DTX"))?;
        inner
            .set_complexity(config.complexity)
            .map_err(AudioError::opus("set complexity"))?;
        Ok(Self {
            inner,
            dtx: config.dtx,
            frame: Box::new([0.0; FRAME_SAMPLES]),
        })
    }

    /// Encodes exactly [`FRAME_SAMPLES`] samples into `out`, which must hold at least
    /// [`MAX_PACKET_BYTES`]. Returns the packet length, or [`Encoded::Dtx`] when DTX is on and
    /// the encoder says nothing needs sending (Opus then returns a packet of at most 2 bytes).
    /// Non-finite samples are encoded as silence.
    pub fn encode(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<Encoded, AudioError> {
        if pcm.len() != FRAME_SAMPLES {
            return Err(AudioError::FrameSize {
                expected: FRAME_SAMPLES,
                got: pcm.len(),
            });
        }
        if out.len() < MAX_PACKET_BYTES {
            return Err(AudioError::BufferTooSmall {
                what: "packet",
                needed: MAX_PACKET_BYTES,
                got: out.len(),
            });
        }
        for (dst, &src) in self.frame.iter_mut().zip(pcm) {
            *dst = if src.is_finite() { src } else { 0.0 };
        }
        let len = self
            .inner
            .encode_float(&self.frame[..], &mut out[..MAX_PACKET_BYTES])
            .map_err(AudioError::opus("encode"))?;
        if self.dtx && len <= 2 {
            Ok(Encoded::Dtx)
        } else {
            Ok(Encoded::Packet(len))
        }
    }

    /// The codec delay in samples: decoded audio lags the input by this much.
    pub fn lookahead_samples(&mut self) -> Result<usize, AudioError> {
        let samples = self
            .inner
            .get_lookahead()
            .map_err(AudioError::opus("get lookahead"))?;
        Ok(usize::try_from(samples).unwrap_or(0))
    }
}

/// An Opus decoder producing 48 kHz mono.
#[derive(Debug)]
pub struct Decoder {
    inner: opus::Decoder,
}

impl Decoder {
    /// Creates a decoder.
    pub fn new() -> Result<Self, AudioError> {
        let inner = opus::Decoder::new(SAMPLE_RATE, Channels::Mono)
            .map_err(AudioError::opus("decoder create"))?;
        Ok(Self { inner })
    }

    /// Decodes one packet into the start of `out` and returns the samples written (960 for a
    /// 20 ms packet; a packet may hold up to 120 ms, so `out` of [`crate::MAX_PACKET_SAMPLES`]
    /// always suffices). A corrupt packet is an error; the decoder stays usable.
    pub fn decode(&mut self, packet: &[u8], out: &mut [f32]) -> Result<usize, AudioError> {
        if packet.is_empty() {
            return Err(AudioError::EmptyPacket);
        }
        let needed = opus::packet::get_nb_samples(packet, SAMPLE_RATE)
            .map_err(AudioError::opus("read packet length"))?;
        if out.len() < needed {
            return Err(AudioError::BufferTooSmall {
                what: "decode output",
                needed,
                got: out.len(),
            });
        }
        self.inner
            .decode_float(packet, out, false)
            .map_err(AudioError::opus("decode"))
    }

    /// Conceals one lost 20 ms frame (packet loss concealment) into the start of `out` and
    /// returns [`FRAME_SAMPLES`]. During DTX this is also how comfort noise is made.
    pub fn conceal(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        let out = frame_of(out, "conceal output")?;
        self.conceal_exact(out)
    }

    /// Conceals exactly `out.len()` samples, which must be a multiple of 2.5 ms (120 samples).
    pub(crate) fn conceal_exact(&mut self, out: &mut [f32]) -> Result<usize, AudioError> {
        self.inner
            .decode_float(&[], out, false)
            .map_err(AudioError::opus("conceal"))
    }

    /// Rebuilds the 20 ms frame *before* `next_packet` from the FEC data that `next_packet`
    /// carries, into the start of `out`, and returns [`FRAME_SAMPLES`]. If `next_packet` has
    /// no FEC data (see [`packet_has_fec`]) Opus conceals the frame instead. Decode
    /// `next_packet` itself afterwards as usual.
    pub fn decode_fec(&mut self, next_packet: &[u8], out: &mut [f32]) -> Result<usize, AudioError> {
        if next_packet.is_empty() {
            return Err(AudioError::EmptyPacket);
        }
        // For FEC, libopus rebuilds exactly as many samples as the output holds.
        let out = frame_of(out, "FEC output")?;
        self.inner
            .decode_float(next_packet, out, true)
            .map_err(AudioError::opus("decode FEC"))
    }
}

fn frame_of<'a>(out: &'a mut [f32], what: &'static str) -> Result<&'a mut [f32], AudioError> {
    let got = out.len();
    out.get_mut(..FRAME_SAMPLES)
        .ok_or(AudioError::BufferTooSmall {
            what,
            needed: FRAME_SAMPLES,
            got,
        })
}

/// Whether an Opus packet carries in-band FEC (SILK LBRR) data for the frame before it.
///
/// The same test as libopus's `opus_packet_has_lbrr`: CELT-only packets never do; otherwise the
/// LBRR flag is a fixed bit of the first SILK frame's first byte. Any malformed packet is `false`.
pub fn packet_has_fec(packet: &[u8]) -> bool {
    let Some(&toc) = packet.first() else {
        return false;
    };
    // TOC configurations 16..=31 are CELT-only.
    if toc >> 3 >= 16 {
        return false;
    }
    let Ok(samples_per_frame) = opus::packet::get_samples_per_frame(packet, SAMPLE_RATE) else {
        return false;
    };
    // A 40 or 60 ms SILK frame is two or three 20 ms SILK frames, each with its own flag bits.
    let silk_frames = (samples_per_frame / FRAME_SAMPLES).clamp(1, 3);
    let Ok(parsed) = opus::packet::parse(packet) else {
        return false;
    };
    let Some(&first) = parsed.frames.first().and_then(|frame| frame.first()) else {
        return false;
    };
    let mut lbrr = (first >> (7 - silk_frames)) & 1 == 1;
    let stereo = toc & 0x04 != 0;
    if stereo {
        lbrr |= (first >> (6 - 2 * silk_frames)) & 1 == 1;
    }
    lbrr
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::MAX_PACKET_SAMPLES;
    use std::f32::consts::TAU;

    /// 440 Hz plus an amplitude-modulated chirp sweeping 200 Hz -> 3 kHz: tonal and moving.
    fn test_signal(len: usize) -> Vec<f32> {
        let sr = SAMPLE_RATE as f32;
        let duration = len as f32 / sr;
        (0..len)
            .map(|i| {
                let t = i as f32 / sr;
                let tone = 0.3 * (TAU * 440.0 * t).sin();
                // Instantaneous frequency f0 + (f1 - f0) t / T.
                let (f0, f1) = (200.0, 3000.0);
                let phase = TAU * (f0 * t + (f1 - f0) * t * t / (2.0 * duration));
                let envelope = 0.5 + 0.5 * (TAU * 3.0 * t).sin();
                tone + 0.3 * envelope * phase.sin()
            })
            .collect()
    }

    /// Synthetic speech: syllables of 120..300 ms, each a consonant (a burst of hissing noise)
    /// then a vowel (three formant resonators gliding from the last vowel) voiced by a glottal
    /// pulse train with intonation, jitter and breath noise, with near-silence between
    /// syllables. Opus classifies it as speech (SILK or hybrid), the modes that carry FEC.
    pub(crate) fn voice_signal(len: usize) -> Vec<f32> {
        const VOWELS: [[f32; 3]; 5] = [
            [730.0, 1090.0, 2440.0],
            [270.0, 2290.0, 3010.0],
            [530.0, 1840.0, 2480.0],
            [570.0, 840.0, 2410.0],
            [300.0, 870.0, 2240.0],
        ];
        const BANDWIDTHS: [f32; 3] = [90.0, 110.0, 170.0];
        let sr = SAMPLE_RATE as f32;
        let mut rng = SplitMix(42);
        let mut uniform = move || (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        let mut state = [[0.0f32; 2]; 3];
        let mut formants = VOWELS[0];
        let mut phase = 0.0f32;
        let mut out = Vec::with_capacity(len);
        let (mut vowel, mut base_pitch) = (VOWELS[0], 120.0);
        let (mut syllable_start, mut syllable_len, mut consonant_len) = (0, 1, 0);
        let mut hiss_state = 0.0f32;
        for i in 0..len {
            if i - syllable_start >= syllable_len {
                syllable_start = i;
                syllable_len = ((0.12 + 0.18 * uniform()) * sr) as usize;
                consonant_len = ((0.02 + 0.06 * uniform()) * sr) as usize;
                vowel = VOWELS[(uniform() * VOWELS.len() as f32) as usize % VOWELS.len()];
                base_pitch = 100.0 + 80.0 * uniform();
            }
            let at = i - syllable_start;
            let progress = at as f32 / syllable_len as f32;
            for (f, target) in formants.iter_mut().zip(vowel) {
                *f += (target - *f) * 0.003;
            }
            let pitch = base_pitch * (1.15 - 0.3 * progress) * (1.0 + 0.06 * (uniform() - 0.5));
            phase += pitch / sr;
            let mut x = if phase >= 1.0 {
                phase -= 1.0;
                0.8 + 0.4 * uniform()
            } else {
                0.0
            };
            x += 0.05 * (uniform() - 0.5);
            for ((f, bw), st) in formants.iter().zip(BANDWIDTHS).zip(&mut state) {
                let r = (-std::f32::consts::PI * bw / sr).exp();
                let y = x + 2.0 * r * (TAU * f / sr).cos() * st[0] - r * r * st[1];
                st[1] = st[0];
                st[0] = y;
                x = y;
            }
            let voiced = if at < consonant_len {
                0.0
            } else {
                let v = (at - consonant_len) as f32 / (syllable_len - consonant_len) as f32;
                (v * 8.0).min(1.0) * ((1.0 - v) * 4.0).min(1.0)
            };
            // Hiss: white noise, crudely high-passed.
            let white = uniform() - 0.5;
            let hiss = white - hiss_state;
            hiss_state = white;
            let consonant = if at < consonant_len { 0.15 } else { 0.0 };
            out.push(x * voiced * 0.05 + hiss * consonant);
        }
        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        out.iter().map(|x| 0.5 * x / peak).collect()
    }

    fn encode_all(encoder: &mut Encoder, pcm: &[f32]) -> Vec<Option<Vec<u8>>> {
        let mut out = [0u8; MAX_PACKET_BYTES];
        pcm.chunks_exact(FRAME_SAMPLES)
            .map(|frame| match encoder.encode(frame, &mut out).unwrap() {
                Encoded::Packet(len) => Some(out[..len].to_vec()),
                Encoded::Dtx => None,
            })
            .collect()
    }

    fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    fn ncc(a: &[f32], b: &[f32]) -> f64 {
        let denom = (dot(a, a) * dot(b, b)).sqrt();
        if denom == 0.0 { 0.0 } else { dot(a, b) / denom }
    }

    /// The lag (0..max_lag) at which `decoded[lag..]` best matches `original`.
    fn best_lag(original: &[f32], decoded: &[f32], max_lag: usize) -> usize {
        let window = FRAME_SAMPLES * 10..FRAME_SAMPLES * 20;
        let reference = &original[window.clone()];
        let scores: Vec<f64> = (0..max_lag)
            .map(|lag| ncc(reference, &decoded[window.start + lag..window.end + lag]))
            .collect();
        (0..max_lag)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap_or(0)
    }

    #[test]
    fn round_trip_preserves_tone_and_chirp() {
        let original = test_signal(FRAME_SAMPLES * 100);
        let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
        let lookahead = encoder.lookahead_samples().unwrap();
        let mut decoder = Decoder::new().unwrap();
        let mut decoded = Vec::new();
        let mut buf = vec![0.0; MAX_PACKET_SAMPLES];
        for packet in encode_all(&mut encoder, &original) {
            let packet = packet.expect("a loud signal is never DTX");
            let n = decoder.decode(&packet, &mut buf).unwrap();
            assert_eq!(n, FRAME_SAMPLES);
            decoded.extend_from_slice(&buf[..n]);
        }
        let lag = best_lag(&original, &decoded, 1000);
        let end = original.len() - lag;
        let score = ncc(
            &original[FRAME_SAMPLES..end],
            &decoded[FRAME_SAMPLES + lag..],
        );
        eprintln!("codec lag {lag} (lookahead {lookahead}), NCC {score:.4}");
        assert!(
            lag.abs_diff(lookahead) <= 48,
            "lag {lag} vs lookahead {lookahead}"
        );
        assert!(score >= 0.9, "NCC {score}");
    }

    #[test]
    fn silence_is_mostly_dtx() {
        let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
        let packets = encode_all(&mut encoder, &vec![0.0; SAMPLE_RATE as usize * 2]);
        let dtx = packets.iter().filter(|p| p.is_none()).count();
        eprintln!("DTX frames: {dtx} of {}", packets.len());
        assert!(dtx * 10 >= packets.len() * 7, "{dtx} of {}", packets.len());

        // Without DTX every frame is a packet.
        let config = EncoderConfig {
            dtx: false,
            ..EncoderConfig::default()
        };
        let mut encoder = Encoder::new(&config).unwrap();
        let packets = encode_all(&mut encoder, &vec![0.0; SAMPLE_RATE as usize]);
        assert!(packets.iter().all(Option::is_some));
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_plc() {
        let original = voice_signal(FRAME_SAMPLES * 100);
        let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
        let lookahead = encoder.lookahead_samples().unwrap();
        let packets: Vec<Vec<u8>> = encode_all(&mut encoder, &original)
            .into_iter()
            .map(|p| p.expect("speech is never DTX"))
            .collect();

        // Decodes everything except packet `lost`, recovering that frame with `recover`, and
        // returns how well the recovered frame (as heard, delayed by the codec) matches.
        let score = |lost: usize, recover: &dyn Fn(&mut Decoder, &mut [f32]) -> usize| {
            let mut decoder = Decoder::new().unwrap();
            let mut buf = vec![0.0; MAX_PACKET_SAMPLES];
            let mut decoded = Vec::new();
            for (i, packet) in packets.iter().enumerate().take(lost + 3) {
                if i == lost {
                    let n = recover(&mut decoder, &mut buf);
                    assert_eq!(n, FRAME_SAMPLES);
                    decoded.extend_from_slice(&buf[..n]);
                } else {
                    let n = decoder.decode(packet, &mut buf).unwrap();
                    decoded.extend_from_slice(&buf[..n]);
                }
            }
            let start = lost * FRAME_SAMPLES;
            ncc(
                &original[start..start + FRAME_SAMPLES],
                &decoded[start + lookahead..start + lookahead + FRAME_SAMPLES],
            )
        };

        // Lose, one at a time, every loud frame whose successor carries FEC.
        let mut fec_scores = Vec::new();
        let mut plc_scores = Vec::new();
        for lost in 10..packets.len() - 3 {
            let frame = &original[lost * FRAME_SAMPLES..(lost + 1) * FRAME_SAMPLES];
            let rms = (dot(frame, frame) / FRAME_SAMPLES as f64).sqrt();
            if rms < 0.05 || !packet_has_fec(&packets[lost + 1]) {
                continue;
            }
            let next = &packets[lost + 1];
            fec_scores.push(score(lost, &|d, buf| d.decode_fec(next, buf).unwrap()));
            plc_scores.push(score(lost, &|d, buf| d.conceal(buf).unwrap()));
        }
        assert!(
            fec_scores.len() >= 20,
            "only {} frames to test",
            fec_scores.len()
        );
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (fec, plc) = (mean(&fec_scores), mean(&plc_scores));
        eprintln!(
            "lost frame NCC over {} losses: FEC {fec:.3}, PLC {plc:.3}",
            fec_scores.len()
        );
        assert!(fec >= 0.7, "FEC NCC {fec}");
        assert!(fec >= plc + 0.3, "FEC {fec} vs PLC {plc}");
    }

    #[test]
    fn packet_has_fec_is_false_for_celt_and_garbage() {
        assert!(!packet_has_fec(&[]));
        // TOC config 31 (CELT FB 20 ms), code 0, flag bits all set.
        assert!(!packet_has_fec(&[0xf8, 0xff, 0xff]));
        // SILK config 1 with a code-3 count byte claiming 0 frames: malformed.
        assert!(!packet_has_fec(&[0x0b, 0x00]));
        let mut rng = SplitMix(7);
        for _ in 0..5000 {
            let _ = packet_has_fec(&rng.bytes(64));
        }
    }

    #[test]
    fn garbage_packets_are_errors_not_panics() {
        let mut decoder = Decoder::new().unwrap();
        let mut buf = vec![0.0; MAX_PACKET_SAMPLES];
        let mut rng = SplitMix(0x5eed);
        let mut errors = 0;
        for i in 0..4000 {
            let packet = rng.bytes(1 + (i % 300));
            if decoder.decode(&packet, &mut buf).is_err() {
                errors += 1;
            }
            let _ = decoder.decode_fec(&packet, &mut buf);
            if i % 50 == 0 {
                decoder.conceal(&mut buf).unwrap();
            }
        }
        eprintln!("{errors} of 4000 random packets rejected");
        assert!(errors > 0, "some random byte strings are invalid Opus");

        // Known-invalid packets: a code-3 packet claiming 0 frames, and one longer than 120 ms.
        assert!(decoder.decode(&[0xfb, 0x00], &mut buf).is_err());
        assert!(decoder.decode(&[0xfb, 0x3f], &mut buf).is_err());
        assert!(matches!(
            decoder.decode(&[], &mut buf),
            Err(AudioError::EmptyPacket)
        ));
        // The decoder still works after all that.
        let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
        let packets = encode_all(&mut encoder, &test_signal(FRAME_SAMPLES));
        let packet = packets[0].as_ref().unwrap();
        assert_eq!(decoder.decode(packet, &mut buf).unwrap(), FRAME_SAMPLES);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
        let mut out = [0u8; MAX_PACKET_BYTES];
        assert!(matches!(
            encoder.encode(&[0.0; 480], &mut out),
            Err(AudioError::FrameSize { got: 480, .. })
        ));
        assert!(matches!(
            encoder.encode(&[0.0; FRAME_SAMPLES], &mut out[..100]),
            Err(AudioError::BufferTooSmall { .. })
        ));
        // Non-finite input is encoded as silence, not passed to libopus.
        let mut frame = [f32::NAN; FRAME_SAMPLES];
        frame[5] = f32::INFINITY;
        assert!(encoder.encode(&frame, &mut out).is_ok());

        let mut decoder = Decoder::new().unwrap();
        let packet = match encoder
            .encode(&test_signal(FRAME_SAMPLES), &mut out)
            .unwrap()
        {
            Encoded::Packet(len) => out[..len].to_vec(),
            Encoded::Dtx => panic!("a loud frame is not DTX"),
        };
        let mut short = [0.0; 100];
        assert!(matches!(
            decoder.decode(&packet, &mut short),
            Err(AudioError::BufferTooSmall { needed: 960, .. })
        ));
        assert!(decoder.conceal(&mut short).is_err());
        assert!(decoder.decode_fec(&packet, &mut short).is_err());

        for bad in [
            EncoderConfig {
                bitrate_bps: 100,
                ..EncoderConfig::default()
            },
            EncoderConfig {
                expected_loss_percent: 101,
                ..EncoderConfig::default()
            },
            EncoderConfig {
                complexity: 11,
                ..EncoderConfig::default()
            },
        ] {
            let err = Encoder::new(&bad).unwrap_err();
            assert!(
                matches!(err, AudioError::InvalidEncoderConfig { .. }),
                "{err}"
            );
        }
    }

    /// A tiny deterministic PRNG (SplitMix64) for fuzz-style inputs.
    pub(crate) struct SplitMix(pub(crate) u64);

    impl SplitMix {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next_u64() as u8).collect()
        }
    }
}
