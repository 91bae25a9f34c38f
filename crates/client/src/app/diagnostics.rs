//! Per-speaker diagnostics: what the network and the jitter buffer do to each speaker we hear,
//! once a second while the UI asks ([`super::App::set_diagnostics`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use confab_audio::JitterStats;
use confab_proto::ParticipantId;
use confab_proto::ipc::{AppEvent, SpeakerDiagnostics};
use confab_rtc::NetworkStats;

use super::{Inner, lock};

/// How often the figures go out.
const EVERY: Duration = Duration::from_secs(1);

/// Each slot's RTP counters at the last report, to turn cumulative loss into loss per report.
#[derive(Default)]
pub(super) struct LossTracker {
    last: HashMap<usize, (u64, i64)>,
}

impl LossTracker {
    /// The share of packets lost on `slot` since the last call, or `None` when no packet was
    /// due meanwhile (a pause, or the first call). Counters that went back (a new stream on
    /// the slot) start over.
    fn loss(&mut self, slot: usize, received: u64, lost: i64) -> Option<f32> {
        let before = self.last.insert(slot, (received, lost));
        let (r0, l0) = before?;
        if received < r0 {
            return None;
        }
        let got = (received - r0) as f64;
        // Cumulative loss may fall when a late packet turns up: that is no negative loss.
        let missing = (lost - l0).max(0) as f64;
        let due = got + missing;
        (due > 0.0).then(|| (missing / due) as f32)
    }
}

fn ms(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

/// The figures of each speaker a receive slot carries now and whose audio has played.
pub(super) fn speakers(
    slots: &HashMap<usize, ParticipantId>,
    jitter: &[(usize, JitterStats)],
    network: Option<&NetworkStats>,
    losses: &mut LossTracker,
) -> Vec<SpeakerDiagnostics> {
    let rtt_ms = network.and_then(|n| n.round_trip).map(ms);
    let mut out: Vec<SpeakerDiagnostics> = jitter
        .iter()
        .filter_map(|(slot, stats)| {
            let participant = *slots.get(slot)?;
            let net = network.and_then(|n| n.slots.iter().find(|s| s.slot == *slot));
            Some(SpeakerDiagnostics {
                participant,
                rtt_ms,
                jitter_ms: net.map(|n| ms(n.jitter)),
                loss: net.and_then(|n| losses.loss(*slot, n.packets_received, n.packets_lost)),
                buffer_ms: ms(stats.playout_delay),
                target_ms: ms(stats.target_delay),
                fec_recovered: u32::try_from(stats.fec_recovered).unwrap_or(u32::MAX),
                concealed: u32::try_from(stats.concealed).unwrap_or(u32::MAX),
            })
        })
        .collect();
    out.sort_by_key(|d| d.participant);
    out
}

/// Reports diagnostics once a second while we are in a space, until aborted.
pub(super) async fn report(inner: Arc<Inner>) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut losses = LossTracker::default();
    loop {
        ticker.tick().await;
        let slots = {
            let m = lock(&inner.model);
            if m.current.is_none() {
                losses = LossTracker::default();
                continue;
            }
            m.slots.clone()
        };
        let client = lock(&inner.client).clone();
        let network = match client {
            // The connection task answers between messages; a stuck one must not stall this.
            Some(c) => tokio::time::timeout(EVERY, c.network_stats())
                .await
                .ok()
                .and_then(Result::ok)
                .flatten(),
            None => None,
        };
        let speakers = speakers(&slots, &inner.slot_stats(), network.as_ref(), &mut losses);
        inner.emit(AppEvent::Diagnostics { speakers }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use confab_rtc::SlotNetworkStats;

    fn net(rtt_ms: u64, slots: &[(usize, u64, i64)]) -> NetworkStats {
        NetworkStats {
            round_trip: Some(Duration::from_millis(rtt_ms)),
            slots: slots
                .iter()
                .map(|&(slot, packets_received, packets_lost)| SlotNetworkStats {
                    slot,
                    packets_received,
                    packets_lost,
                    jitter: Duration::from_micros(2500),
                })
                .collect(),
        }
    }

    fn jb(delay_ms: u64) -> JitterStats {
        JitterStats {
            playout_delay: Duration::from_millis(delay_ms),
            target_delay: Duration::from_millis(40),
            fec_recovered: 3,
            concealed: 5,
            ..Default::default()
        }
    }

    #[test]
    fn loss_is_per_report_and_starts_over_with_a_new_stream() {
        let mut t = LossTracker::default();
        assert_eq!(
            t.loss(0, 50, 0),
            None,
            "the first report has nothing to compare"
        );
        assert_eq!(t.loss(0, 98, 2), Some(0.04));
        assert_eq!(t.loss(0, 98, 2), None, "nothing due in a pause");
        assert_eq!(
            t.loss(0, 148, 1),
            Some(0.0),
            "a late packet is no negative loss"
        );
        assert_eq!(t.loss(0, 10, 0), None, "a new stream starts over");
        assert_eq!(t.loss(0, 10, 10), Some(1.0));
        assert_eq!(t.loss(1, 5, 0), None, "slots are apart");
    }

    #[test]
    fn only_slots_that_carry_someone_and_played_show() {
        let a = ParticipantId(7);
        let b = ParticipantId(3);
        let slots = HashMap::from([(0, a), (2, b)]);
        // Slot 1 played before but carries no one now; slot 2 has no network figures yet.
        let jitter = [(0, jb(60)), (1, jb(80)), (2, jb(20))];
        let mut losses = LossTracker::default();
        let n1 = net(4, &[(0, 50, 0), (1, 50, 0)]);
        let first = speakers(&slots, &jitter, Some(&n1), &mut losses);
        assert_eq!(
            first.iter().map(|d| d.participant).collect::<Vec<_>>(),
            [b, a]
        );
        let sa = &first[1];
        assert_eq!(sa.rtt_ms, Some(4.0));
        assert_eq!(sa.jitter_ms, Some(2.5));
        assert_eq!(sa.loss, None);
        assert_eq!((sa.buffer_ms, sa.target_ms), (60.0, 40.0));
        assert_eq!((sa.fec_recovered, sa.concealed), (3, 5));
        assert_eq!(first[0].jitter_ms, None, "no RTP figures for slot 2");
        assert_eq!(
            first[0].rtt_ms,
            Some(4.0),
            "the round trip is the connection's"
        );

        let n2 = net(6, &[(0, 99, 1)]);
        let second = speakers(&slots, &jitter, Some(&n2), &mut losses);
        assert_eq!(second[1].loss, Some(0.02));
        assert!(
            speakers(&slots, &jitter, None, &mut losses)[1]
                .rtt_ms
                .is_none()
        );
    }
}
