//! A simulated network path for packets: seeded loss, delay jitter, reordering and stalls.
//!
//! [`Impairment::apply`] takes what a sender sent and when, and says what arrives and when:
//! the same seed always gives the same arrivals, so a failing test can be replayed exactly.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

/// How a path mistreats packets. Delays are drawn per packet, independently.
#[derive(Clone, Debug)]
pub struct Impairment {
    /// The fixed one-way delay every packet has.
    pub latency: Duration,
    /// Extra delay per packet: normal with this mean and standard deviation, never negative.
    pub jitter_mean: Duration,
    pub jitter_sd: Duration,
    /// Probability that a packet is lost.
    pub loss: f64,
    /// Probability that a packet is held back a further 20 to 60 ms (so it arrives after its
    /// successors).
    pub reorder: f64,
    /// Probability, per packet, that the path stalls: everything sent during the next
    /// `stall` (drawn between the two bounds) arrives together when it ends, plus its jitter.
    pub stall_chance: f64,
    pub stall: (Duration, Duration),
    /// Seeds every random choice.
    pub seed: u64,
}

impl Impairment {
    /// A path with `latency`, no jitter, no loss: change the fields you need.
    pub fn new(latency: Duration, seed: u64) -> Self {
        Impairment {
            latency,
            jitter_mean: Duration::ZERO,
            jitter_sd: Duration::ZERO,
            loss: 0.0,
            reorder: 0.0,
            stall_chance: 0.0,
            stall: (Duration::ZERO, Duration::ZERO),
            seed,
        }
    }

    /// `sent` in send order, as `(send time, packet)`: returns `(arrival time, packet)` in
    /// arrival order (packets arriving at the same instant keep their send order).
    pub fn apply<P>(&self, sent: impl IntoIterator<Item = (Duration, P)>) -> Vec<(Duration, P)> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut stalled_until = Duration::ZERO;
        let mut out = Vec::new();
        for (at, packet) in sent {
            // Draw every number for every packet, so changing one probability does not
            // reshuffle what happens to the others.
            let lost = rng.random::<f64>() < self.loss;
            let jitter = normal(&mut rng, self.jitter_mean, self.jitter_sd);
            let held = rng.random::<f64>() < self.reorder;
            let hold = Duration::from_millis(rng.random_range(20..=60));
            let stalls = rng.random::<f64>() < self.stall_chance;
            let stall_len = between(&mut rng, self.stall);
            if at >= stalled_until && stalls {
                stalled_until = at + stall_len;
            }
            if lost {
                continue;
            }
            // Sent into a stall: it leaves when the stall ends.
            let mut arrival = if at < stalled_until {
                stalled_until
            } else {
                at
            };
            arrival += self.latency + jitter;
            if held {
                arrival += hold;
            }
            out.push((arrival, packet));
        }
        out.sort_by_key(|(arrival, _)| *arrival);
        out
    }
}

/// A normal draw (Box–Muller), clamped at zero.
fn normal(rng: &mut StdRng, mean: Duration, sd: Duration) -> Duration {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
    Duration::from_secs_f64((mean.as_secs_f64() + z * sd.as_secs_f64()).max(0.0))
}

fn between(rng: &mut StdRng, (lo, hi): (Duration, Duration)) -> Duration {
    if hi <= lo {
        return lo;
    }
    lo + (hi - lo).mul_f64(rng.random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_20ms(n: u32) -> Vec<(Duration, u32)> {
        (0..n).map(|i| (Duration::from_millis(20) * i, i)).collect()
    }

    fn path(seed: u64) -> Impairment {
        Impairment {
            jitter_mean: Duration::from_millis(40),
            jitter_sd: Duration::from_millis(10),
            loss: 0.05,
            reorder: 0.02,
            stall_chance: 0.002,
            stall: (Duration::from_millis(200), Duration::from_millis(800)),
            ..Impairment::new(Duration::from_millis(15), seed)
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_arrivals_and_another_does_not() {
        let a = path(1).apply(every_20ms(5000));
        assert_eq!(a, path(1).apply(every_20ms(5000)));
        assert_ne!(a, path(2).apply(every_20ms(5000)));
    }

    #[test]
    fn loss_jitter_and_reordering_are_what_was_asked() {
        let sent = every_20ms(20_000);
        let arrived = Impairment {
            stall_chance: 0.0,
            ..path(7)
        }
        .apply(sent.clone());
        let loss = 1.0 - arrived.len() as f64 / sent.len() as f64;
        assert!((0.045..0.055).contains(&loss), "loss {loss}");
        let delays: Vec<f64> = arrived
            .iter()
            .map(|(at, i)| (*at - sent[*i as usize].0).as_secs_f64() * 1000.0)
            .collect();
        assert!(
            delays.iter().all(|&d| d >= 15.0),
            "never before the latency"
        );
        let mean = delays.iter().sum::<f64>() / delays.len() as f64;
        // 15 ms latency + 40 ms jitter, plus 2% held back ~40 ms more.
        assert!((55.0..57.0).contains(&mean), "mean delay {mean}");
        let reordered = arrived.windows(2).filter(|w| w[1].1 < w[0].1).count();
        assert!(reordered > 100, "only {reordered} reordered");
    }

    #[test]
    fn a_stall_delivers_what_it_held_together() {
        let path = Impairment {
            stall_chance: 1.0,
            stall: (Duration::from_millis(500), Duration::from_millis(500)),
            ..Impairment::new(Duration::from_millis(10), 3)
        };
        let arrived = path.apply(every_20ms(50));
        // Packets 0..25 are sent during the first stall and arrive together at its end.
        assert!(
            arrived[..25]
                .iter()
                .all(|(at, _)| *at == Duration::from_millis(510))
        );
        assert_eq!(arrived.len(), 50);
    }
}
