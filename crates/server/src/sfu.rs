//! The forwarding half of the SFU: one task per uplink that copies each RTP packet to the
//! current subscribers.
//!
//! The subscriber list is an `ArcSwap` that the room task replaces whenever membership or
//! slots change, so the per-packet path takes no lock of ours and allocates nothing per
//! listener: the payload is a reference-counted `Bytes` shared by every copy. (What the
//! `webrtc` crate does inside `write_rtp` — SRTP and the socket — is its own; issue 6 measures
//! the whole path against the kernel's floor.)
//!
//! Each packet's RFC 6464 audio level feeds the speaker's [`Loudness`] (a few atomic
//! operations, no decoding), which the room reads to pick the loudest speakers
//! ([`crate::loudest`]). Once a speaker's packets have said silence for [`SILENCE_HANGOVER`]
//! in a row, no more are forwarded until one says otherwise, so a muted or silent speaker
//! costs nothing past this task (with Opus DTX they send next to nothing anyway). The short
//! pauses inside speech still go out: dropping them would cost the listener's decoder its
//! continuity. Sequence numbers are closed over what was dropped, so listeners see a pause
//! as they see DTX (timestamps jump, sequence numbers do not), not as loss.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use confab_proto::ParticipantId;
use confab_rtc::{AudioLevel, LocalAudio, RemoteAudio};
use tokio::task::JoinHandle;

use crate::loudest::SILENT_DB;

/// Counters of one forwarder, readable while it runs.
#[derive(Default)]
pub(crate) struct ForwardStats {
    pub(crate) received: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Packets not forwarded because their level said silence (after the hangover).
    pub(crate) silent: AtomicU64,
}

/// A speaker whose packets carry no level counts as this loud while they send (dBov): louder
/// than a quiet room, quieter than anyone talking, so they keep a free place but a speaker
/// who is heard to talk takes it from them.
pub(crate) const UNKNOWN_LEVEL_DB: f32 = -60.0;

/// A speaker who sent nothing for this long is silent (Opus DTX sends nothing in a pause).
/// Long enough that a server starved of CPU for a moment (its forwarders late to read) does
/// not take everyone for silent and reshuffle the slots.
pub(crate) const QUIET_AFTER: Duration = Duration::from_secs(1);

/// Silent packets in a row that are still forwarded (200 ms): pauses between words.
pub(crate) const SILENCE_HANGOVER: u32 = 10;

/// Weight of a packet louder than the running level: fast, so a speaker who starts talking
/// counts within a few packets.
const ATTACK: f32 = 0.5;
/// Weight of a packet quieter than the running level: ~200 ms, so the gaps between words do
/// not make a speaker drop out.
const RELEASE: f32 = 0.1;

/// Power (relative to full scale) for each -dBov level: the per-packet path looks it up.
static POWER: [f32; 128] = {
    // 10^(-k/10) for k = 0..=127 by repeated multiplication by 10^(-0.1), in f64 at compile
    // time; close enough to a table of `powf` for a level meter.
    let mut t = [0f32; 128];
    let step = 0.794_328_234_724_281_5_f64;
    let mut v = 1.0f64;
    let mut i = 0;
    while i < 128 {
        t[i] = v as f32;
        v *= step;
        i += 1;
    }
    t
};

/// One speaker's smoothed loudness, written by its forwarder on every packet and read by the
/// room a few times a second.
pub(crate) struct Loudness {
    /// Smoothed power relative to full scale (`f32` bits).
    power: AtomicU32,
    /// When the last packet that was not silence arrived, µs after `epoch`; 0 never.
    last_sound_us: AtomicU64,
    /// Whether the speaker's packets carry levels at all (the last one did).
    leveled: AtomicBool,
    epoch: Instant,
}

impl Loudness {
    fn new(epoch: Instant) -> Self {
        Loudness {
            power: AtomicU32::new(0f32.to_bits()),
            last_sound_us: AtomicU64::new(0),
            leveled: AtomicBool::new(false),
            epoch,
        }
    }

    fn now_us(&self, now: Instant) -> u64 {
        // +1 so that a packet in the epoch's first microsecond is not "never".
        u64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX) + 1
    }

    /// Takes one packet's level in (`None`: the packet had none). Returns whether the packet
    /// is silence.
    fn observe(&self, level: Option<AudioLevel>, now: Instant) -> bool {
        let Some(level) = level else {
            self.leveled.store(false, Ordering::Relaxed);
            self.last_sound_us
                .store(self.now_us(now), Ordering::Relaxed);
            return false;
        };
        self.leveled.store(true, Ordering::Relaxed);
        let p = POWER[usize::from(level.dbov().min(127))];
        let p = if level.is_silent() { 0.0 } else { p };
        // Only this task writes: a load and a store, no read-modify-write loop needed.
        let old = f32::from_bits(self.power.load(Ordering::Relaxed));
        let weight = if p > old { ATTACK } else { RELEASE };
        self.power
            .store((old + (p - old) * weight).to_bits(), Ordering::Relaxed);
        if level.is_silent() {
            return true;
        }
        self.last_sound_us
            .store(self.now_us(now), Ordering::Relaxed);
        false
    }

    /// How loud the speaker is at `now` in dBov ([`SILENT_DB`] after [`QUIET_AFTER`] without
    /// sound; [`UNKNOWN_LEVEL_DB`] while sending without levels).
    pub(crate) fn db(&self, now: Instant) -> f32 {
        let last = self.last_sound_us.load(Ordering::Relaxed);
        if last == 0 || self.now_us(now).saturating_sub(last) > QUIET_AFTER.as_micros() as u64 {
            return SILENT_DB;
        }
        if !self.leveled.load(Ordering::Relaxed) {
            return UNKNOWN_LEVEL_DB;
        }
        let power = f32::from_bits(self.power.load(Ordering::Relaxed));
        if power > 0.0 {
            (10.0 * power.log10()).max(SILENT_DB)
        } else {
            SILENT_DB
        }
    }
}

/// Reads one participant's uplink for as long as it lasts.
pub(crate) struct Forwarder {
    subscribers: Arc<ArcSwap<Vec<LocalAudio>>>,
    allowed: Arc<AtomicBool>,
    pub(crate) stats: Arc<ForwardStats>,
    pub(crate) loudness: Arc<Loudness>,
    task: JoinHandle<()>,
}

impl Forwarder {
    /// Starts reading `audio`. Until [`Forwarder::set_allowed`] says otherwise every packet is
    /// refused: a participant who is not a speaker cannot put audio into the space.
    pub(crate) fn spawn(who: ParticipantId, audio: RemoteAudio, epoch: Instant) -> Forwarder {
        let subscribers: Arc<ArcSwap<Vec<LocalAudio>>> =
            Arc::new(ArcSwap::from_pointee(Vec::new()));
        let allowed = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ForwardStats::default());
        let loudness = Arc::new(Loudness::new(epoch));
        let task = {
            let subscribers = Arc::clone(&subscribers);
            let allowed = Arc::clone(&allowed);
            let stats = Arc::clone(&stats);
            let loudness = Arc::clone(&loudness);
            tokio::spawn(async move {
                let mut silent_run: u32 = 0;
                // Packets dropped as silence so far: later ones are numbered as if they had
                // never been sent.
                let mut dropped: u16 = 0;
                while let Some(mut packet) = audio.recv().await {
                    stats.received.fetch_add(1, Ordering::Relaxed);
                    if !allowed.load(Ordering::Relaxed) {
                        stats.refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if loudness.observe(packet.level, Instant::now()) {
                        silent_run = silent_run.saturating_add(1);
                        if silent_run > SILENCE_HANGOVER {
                            dropped = dropped.wrapping_add(1);
                            stats.silent.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    } else {
                        if silent_run > SILENCE_HANGOVER {
                            // A new talkspurt after a pause.
                            packet.marker = true;
                        }
                        silent_run = 0;
                    }
                    packet.sequence = packet.sequence.wrapping_sub(dropped);
                    // Listeners get no level: stamping one would allocate per listener, and
                    // their clients measure what they play themselves.
                    packet.level = None;
                    // One hand-over for every muxed listener: the mux's thread makes the
                    // copies. A listener whose connection is going away is skipped; the room
                    // task drops it from the list when its signaling ends.
                    let subs = subscribers.load_full();
                    let n = confab_rtc::forward(&subs, &packet).await;
                    stats.forwarded.fetch_add(n as u64, Ordering::Relaxed);
                }
                tracing::debug!(%who, "uplink ended");
            })
        };
        Forwarder {
            subscribers,
            allowed,
            stats,
            loudness,
            task,
        }
    }

    /// Replaces the list of tracks this uplink is copied to.
    pub(crate) fn set_subscribers(&self, subs: Vec<LocalAudio>) {
        self.subscribers.store(Arc::new(subs));
    }

    /// Whether this participant's audio may be forwarded (they are a speaker).
    pub(crate) fn set_allowed(&self, allowed: bool) {
        self.allowed.store(allowed, Ordering::Relaxed);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_power_table_is_in_decibels() {
        for (k, p) in POWER.iter().enumerate() {
            let db = 10.0 * f64::from(*p).log10();
            assert!((db + k as f64).abs() < 0.01, "{k}: {db}");
        }
    }

    #[test]
    fn loudness_rises_fast_falls_slowly_and_goes_silent() {
        let t0 = Instant::now();
        let l = Loudness::new(t0);
        assert_eq!(l.db(t0), SILENT_DB);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        for i in 0..10 {
            assert!(!l.observe(Some(AudioLevel::new(20, true)), at(20 * i)));
        }
        assert!((l.db(at(200)) + 20.0).abs() < 0.5, "{}", l.db(at(200)));
        // Five packets of silence: still loud (a gap between words)...
        for i in 10..15 {
            assert!(l.observe(Some(AudioLevel::new(127, false)), at(20 * i)));
        }
        let gap = l.db(at(300));
        assert!(gap > -25.0, "{gap}");
        // ...but nothing but silence for QUIET_AFTER is silence.
        assert_eq!(
            l.db(at(200) + QUIET_AFTER + Duration::from_millis(1)),
            SILENT_DB
        );
        // Packets without a level: the stand-in level while they come.
        assert!(!l.observe(None, at(1000)));
        assert_eq!(l.db(at(1010)), UNKNOWN_LEVEL_DB);
    }
}
