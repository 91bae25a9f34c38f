//! One received Opus stream to continuous PCM: loss, FEC, DTX gaps, duplicates, reordering.

use crate::codec::{Decoder, packet_has_fec};
use crate::{AudioError, FRAME_SAMPLES, MAX_PACKET_SAMPLES, SAMPLE_RATE};

/// The most samples one [`StreamDecoder::push`] fills into a gap (5 s): a wild timestamp must
/// not make it allocate gigabytes.
pub const MAX_GAP_SAMPLES: usize = 5 * SAMPLE_RATE as usize;

/// The smallest unit Opus conceals: 2.5 ms.
const CONCEAL_QUANTUM: usize = FRAME_SAMPLES / 8;

/// What [`StreamDecoder::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// This many samples were appended (gap fill plus the packet's own frame).
    Decoded { samples: usize },
    /// The packet was a duplicate or arrived after a later one; nothing was appended.
    Ignored,
}

/// Counters of what a [`StreamDecoder`] has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Packets decoded normally.
    pub decoded: u64,
    /// 20 ms frames lost in the network and concealed (PLC), not rebuilt by FEC.
    pub lost: u64,
    /// Lost frames rebuilt from the next packet's in-band FEC.
    pub recovered_fec: u64,
    /// Packets whose payload did not decode; each was replaced by a concealed frame.
    pub corrupt: u64,
    /// Comfort-noise samples filled in while the sender was in DTX.
    pub dtx_samples: u64,
    /// Duplicates and packets older than the newest one, dropped.
    pub ignored: u64,
    /// Gaps longer than [`MAX_GAP_SAMPLES`] that were cut short.
    pub gaps_capped: u64,
}

/// Turns the packets of one RTP stream (one sender, one SSRC) into continuous 48 kHz PCM whose
/// length follows the RTP clock: what the sender's timestamps span, the output spans.
///
/// It does no reordering (that is the jitter buffer's job, before it): a packet older than the
/// newest one seen is dropped. A sender that restarts its sequence numbers gets a new
/// `StreamDecoder`.
#[derive(Debug)]
pub struct StreamDecoder {
    decoder: Decoder,
    /// Sequence number of the newest packet accepted.
    last_seq: Option<u16>,
    /// The RTP timestamp the next packet has if nothing is lost and the sender is not in DTX.
    next_timestamp: u32,
    stats: StreamStats,
    scratch: Box<[f32]>,
}

impl StreamDecoder {
    /// Creates a decoder for a new stream.
    pub fn new() -> Result<Self, AudioError> {
        Ok(Self {
            decoder: Decoder::new()?,
            last_seq: None,
            next_timestamp: 0,
            stats: StreamStats::default(),
            scratch: vec![0.0; MAX_PACKET_SAMPLES].into_boxed_slice(),
        })
    }

    /// Feeds one received packet (RTP sequence number, RTP timestamp at 48 kHz, Opus payload)
    /// and appends decoded PCM to `out`:
    /// - the first packet, or one in order: its frame;
    /// - after a sequence gap (lost packets): the frame just before this packet rebuilt from
    ///   this packet's FEC when it has some, concealment for the rest of the gap, then this frame;
    /// - sequence contiguous but the timestamp jumped (the sender was in DTX): comfort noise for
    ///   the gap, then this frame;
    /// - a duplicate or old packet (at or before the newest sequence number, modulo 2^16):
    ///   nothing, [`PushOutcome::Ignored`].
    ///
    /// Gap lengths come from the timestamps and are capped at [`MAX_GAP_SAMPLES`]. A corrupt
    /// payload is concealed and counted, never an error: the stream goes on.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        payload: &[u8],
        out: &mut Vec<f32>,
    ) -> Result<PushOutcome, AudioError> {
        let start_len = out.len();
        if let Some(last_seq) = self.last_seq {
            // Sequence distance modulo 2^16: positive is newer, zero or negative is old.
            let ahead = seq.wrapping_sub(last_seq) as i16;
            if ahead <= 0 {
                self.stats.ignored += 1;
                return Ok(PushOutcome::Ignored);
            }
            let missing_packets = u64::from(ahead.unsigned_abs() - 1);
            // A timestamp behind the expected one (or absurdly far ahead) means no gap to fill.
            let gap = timestamp.wrapping_sub(self.next_timestamp) as i32;
            let mut gap = usize::try_from(gap).unwrap_or(0);
            if gap > MAX_GAP_SAMPLES {
                gap = MAX_GAP_SAMPLES;
                self.stats.gaps_capped += 1;
            }
            if missing_packets > 0 {
                self.fill_loss(gap, missing_packets, payload, out)?;
            } else if gap > 0 {
                self.conceal_samples(gap, out)?;
                self.stats.dtx_samples += gap as u64;
            }
        }
        self.last_seq = Some(seq);

        let produced = match self.decoder.decode(payload, &mut self.scratch) {
            Ok(n) => {
                self.stats.decoded += 1;
                out.extend_from_slice(&self.scratch[..n]);
                n
            }
            Err(_) => {
                // Corrupt (or empty) payload: its length is unknown, assume one frame; the next
                // packet's timestamp corrects any difference.
                self.stats.corrupt += 1;
                self.conceal_samples(FRAME_SAMPLES, out)?;
                FRAME_SAMPLES
            }
        };
        // `produced` is at most 5760, so it fits a u32.
        self.next_timestamp = timestamp.wrapping_add(produced as u32);
        Ok(PushOutcome::Decoded {
            samples: out.len() - start_len,
        })
    }

    /// What this stream has seen so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Fills a gap of `gap` samples left by `missing_packets` lost packets before `payload`:
    /// concealment, then the frame just before `payload` from its FEC if it has any.
    fn fill_loss(
        &mut self,
        gap: usize,
        missing_packets: u64,
        payload: &[u8],
        out: &mut Vec<f32>,
    ) -> Result<(), AudioError> {
        let use_fec = gap >= FRAME_SAMPLES && packet_has_fec(payload);
        let plc = if use_fec { gap - FRAME_SAMPLES } else { gap };
        self.conceal_samples(plc, out)?;
        let mut recovered = 0;
        if use_fec {
            match self.decoder.decode_fec(payload, &mut self.scratch) {
                Ok(n) => {
                    out.extend_from_slice(&self.scratch[..n]);
                    recovered = 1;
                }
                Err(_) => self.conceal_samples(FRAME_SAMPLES, out)?,
            }
        }
        self.stats.recovered_fec += recovered;
        self.stats.lost += missing_packets - recovered;
        Ok(())
    }

    /// Appends exactly `samples` samples of concealment (comfort noise after DTX).
    fn conceal_samples(
        &mut self,
        mut samples: usize,
        out: &mut Vec<f32>,
    ) -> Result<(), AudioError> {
        while samples > 0 {
            let take = samples.min(FRAME_SAMPLES);
            // Opus conceals whole 2.5 ms units: round up and drop the excess.
            let len = take.div_ceil(CONCEAL_QUANTUM) * CONCEAL_QUANTUM;
            let n = self.decoder.conceal_exact(&mut self.scratch[..len])?;
            out.extend_from_slice(&self.scratch[..take.min(n)]);
            if n < take {
                // Opus always conceals what it is asked for; guard against a short answer
                // anyway so the output length still follows the timestamps.
                out.resize(out.len() + (take - n), 0.0);
            }
            samples -= take;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::{SplitMix, voice_signal};
    use crate::{Encoded, Encoder, EncoderConfig, MAX_PACKET_BYTES};

    /// `frames` 20 ms packets of synthetic speech, loud from the start (never DTX).
    fn speech_packets(frames: usize) -> Vec<Vec<u8>> {
        let mut encoder = Encoder::new(&EncoderConfig::default()).unwrap();
        let mut out = [0u8; MAX_PACKET_BYTES];
        voice_signal(frames * FRAME_SAMPLES)
            .chunks_exact(FRAME_SAMPLES)
            .map(|frame| match encoder.encode(frame, &mut out).unwrap() {
                Encoded::Packet(len) => out[..len].to_vec(),
                Encoded::Dtx => panic!("speech is not DTX"),
            })
            .collect()
    }

    fn ts(frame: usize) -> u32 {
        (frame * FRAME_SAMPLES) as u32
    }

    #[test]
    fn in_order_packets_give_one_frame_each() {
        let packets = speech_packets(20);
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            let outcome = stream.push(i as u16, ts(i), p, &mut out).unwrap();
            assert_eq!(
                outcome,
                PushOutcome::Decoded {
                    samples: FRAME_SAMPLES
                }
            );
        }
        assert_eq!(out.len(), 20 * FRAME_SAMPLES);
        let stats = stream.stats();
        assert_eq!(stats.decoded, 20);
        assert_eq!(
            stats,
            StreamStats {
                decoded: 20,
                ..StreamStats::default()
            }
        );
        let rms = (out[FRAME_SAMPLES..].iter().map(|x| x * x).sum::<f32>()
            / (out.len() - FRAME_SAMPLES) as f32)
            .sqrt();
        assert!(rms > 0.03, "decoded audio is there (rms {rms})");
    }

    /// Decodes `packets` (numbered from 0, 20 ms apart) except those in `lost`.
    fn decode_with_loss(packets: &[Vec<u8>], lost: &[usize]) -> (Vec<f32>, StreamStats) {
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if !lost.contains(&i) {
                stream.push(i as u16, ts(i), p, &mut out).unwrap();
            }
        }
        (out, stream.stats())
    }

    fn ncc(a: &[f32], b: &[f32]) -> f32 {
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
        dot(a, b) / (dot(a, a) * dot(b, b)).sqrt().max(f32::MIN_POSITIVE)
    }

    #[test]
    fn one_lost_packet_is_rebuilt_from_fec() {
        let packets = speech_packets(40);
        let lost = (10..38)
            .find(|&i| packet_has_fec(&packets[i + 1]))
            .expect("speech packets carry FEC");
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            if i == lost {
                continue;
            }
            let outcome = stream.push(i as u16, ts(i), p, &mut out).unwrap();
            let frames = if i == lost + 1 { 2 } else { 1 };
            let expected = PushOutcome::Decoded {
                samples: frames * FRAME_SAMPLES,
            };
            assert_eq!(outcome, expected, "packet {i}");
        }
        assert_eq!(out.len(), 40 * FRAME_SAMPLES);
        let stats = stream.stats();
        assert_eq!((stats.decoded, stats.recovered_fec, stats.lost), (39, 1, 0));

        // The rebuilt frame sounds like the one that was lost.
        let (clean, _) = decode_with_loss(&packets, &[]);
        let frame = lost * FRAME_SAMPLES..(lost + 1) * FRAME_SAMPLES;
        let score = ncc(&clean[frame.clone()], &out[frame]);
        assert!(score > 0.7, "rebuilt frame NCC {score}");
    }

    #[test]
    fn several_lost_packets_are_concealed_then_fec() {
        let packets = speech_packets(40);
        let gaps: [&[usize]; 3] = [&[5], &[12, 13, 14], &[25, 26]];
        let lost: Vec<usize> = gaps.concat();
        let (out, stats) = decode_with_loss(&packets, &lost);
        assert_eq!(out.len(), 40 * FRAME_SAMPLES);
        // The last frame of each gap comes back by FEC when the packet after it has some
        // (most do); the rest is concealed.
        let with_fec = gaps
            .iter()
            .filter(|gap| gap.last().is_some_and(|&l| packet_has_fec(&packets[l + 1])))
            .count() as u64;
        assert!(with_fec >= 2, "speech packets carry FEC");
        assert_eq!(stats.decoded, 40 - lost.len() as u64);
        assert_eq!(stats.recovered_fec, with_fec);
        assert_eq!(stats.lost, lost.len() as u64 - with_fec);
    }

    #[test]
    fn dtx_gap_is_filled_to_the_timestamp() {
        let packets = speech_packets(10);
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        stream.push(100, 5000, &packets[0], &mut out).unwrap();
        stream.push(101, 5000 + 960, &packets[1], &mut out).unwrap();
        // The sender was silent for 1.23 s (not a whole number of frames), sequence contiguous.
        let gap = 59_040 + 7;
        let outcome = stream
            .push(102, 5000 + 1920 + gap, &packets[2], &mut out)
            .unwrap();
        assert_eq!(
            outcome,
            PushOutcome::Decoded {
                samples: gap as usize + FRAME_SAMPLES
            }
        );
        assert_eq!(out.len(), 3 * FRAME_SAMPLES + gap as usize);
        let stats = stream.stats();
        assert_eq!(stats.dtx_samples, u64::from(gap));
        assert_eq!((stats.lost, stats.recovered_fec, stats.decoded), (0, 0, 3));
        // The stream continues in order afterwards.
        let next = 5000 + 1920 + gap + 960;
        let outcome = stream.push(103, next, &packets[3], &mut out).unwrap();
        assert_eq!(
            outcome,
            PushOutcome::Decoded {
                samples: FRAME_SAMPLES
            }
        );
    }

    #[test]
    fn duplicates_and_old_packets_are_ignored() {
        let packets = speech_packets(6);
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        for (i, packet) in packets.iter().enumerate().take(4) {
            stream.push(i as u16, ts(i), packet, &mut out).unwrap();
        }
        let len = out.len();
        assert_eq!(
            stream.push(3, ts(3), &packets[3], &mut out).unwrap(),
            PushOutcome::Ignored
        );
        assert_eq!(
            stream.push(1, ts(1), &packets[1], &mut out).unwrap(),
            PushOutcome::Ignored
        );
        // Half a sequence space behind counts as old, too.
        assert_eq!(
            stream
                .push(3u16.wrapping_sub(0x8000), 0, &packets[1], &mut out)
                .unwrap(),
            PushOutcome::Ignored
        );
        assert_eq!(out.len(), len);
        assert_eq!(stream.stats().ignored, 3);
        stream.push(4, ts(4), &packets[4], &mut out).unwrap();
        assert_eq!(out.len(), len + FRAME_SAMPLES);
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let packets = speech_packets(8);
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        let first_seq = 65_533u16;
        let first_ts = u32::MAX - 2 * 960 + 1;
        for (i, p) in packets.iter().enumerate() {
            if i == 4 {
                continue; // lost right after the wrap
            }
            let seq = first_seq.wrapping_add(i as u16);
            let timestamp = first_ts.wrapping_add(ts(i));
            assert!(matches!(
                stream.push(seq, timestamp, p, &mut out).unwrap(),
                PushOutcome::Decoded { .. }
            ));
        }
        assert_eq!(out.len(), 8 * FRAME_SAMPLES);
        // 65535 after the wrap is old.
        assert_eq!(
            stream
                .push(65_535, first_ts, &packets[2], &mut out)
                .unwrap(),
            PushOutcome::Ignored
        );
        let stats = stream.stats();
        let fec = u64::from(packet_has_fec(&packets[5]));
        assert_eq!((stats.decoded, stats.ignored), (7, 1));
        assert_eq!((stats.recovered_fec, stats.lost), (fec, 1 - fec));
    }

    #[test]
    fn huge_timestamp_jump_is_capped() {
        let packets = speech_packets(3);
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        stream.push(1, 0, &packets[0], &mut out).unwrap();
        // Contiguous sequence, timestamp six hours later.
        stream.push(2, 1 << 30, &packets[1], &mut out).unwrap();
        assert_eq!(out.len(), 2 * FRAME_SAMPLES + MAX_GAP_SAMPLES);
        // A sequence gap with a wild timestamp is capped the same way.
        let len = out.len();
        stream.push(9, 0x7fff_0000, &packets[2], &mut out).unwrap();
        assert_eq!(out.len() - len, MAX_GAP_SAMPLES + FRAME_SAMPLES);
        assert_eq!(stream.stats().gaps_capped, 2);
        // A timestamp going backwards fills nothing.
        let len = out.len();
        stream.push(10, 5, &packets[0], &mut out).unwrap();
        assert_eq!(out.len() - len, FRAME_SAMPLES);
    }

    #[test]
    fn corrupt_payloads_are_concealed_and_counted() {
        let packets = speech_packets(4);
        let mut stream = StreamDecoder::new().unwrap();
        let mut out = Vec::new();
        stream.push(0, 0, &packets[0], &mut out).unwrap();
        stream.push(1, ts(1), &[0xfb, 0x00], &mut out).unwrap();
        stream.push(2, ts(2), &[], &mut out).unwrap();
        stream.push(3, ts(3), &packets[3], &mut out).unwrap();
        assert_eq!(out.len(), 4 * FRAME_SAMPLES);
        assert_eq!(stream.stats().corrupt, 2);

        // Random payloads, sequence numbers and timestamps (mostly near the last ones, now and
        // then anywhere): never an error, never a panic, never more than one capped gap plus
        // the largest packet per push.
        let mut rng = SplitMix(99);
        let mut stream = StreamDecoder::new().unwrap();
        let (mut seq, mut timestamp) = (0u16, 0u32);
        for i in 0..2000 {
            let len = (rng.next_u64() % 200) as usize;
            let payload = rng.bytes(len);
            if rng.next_u64().is_multiple_of(50) {
                seq = rng.next_u64() as u16;
                timestamp = rng.next_u64() as u32;
            } else {
                seq = seq
                    .wrapping_add((rng.next_u64() % 8) as u16)
                    .wrapping_sub(2);
                timestamp = timestamp.wrapping_add((rng.next_u64() % 8000) as u32);
            }
            out.clear();
            stream.push(seq, timestamp, &payload, &mut out).unwrap();
            assert!(
                out.len() <= MAX_GAP_SAMPLES + MAX_PACKET_SAMPLES,
                "push {i}"
            );
        }
    }
}
