//! What a netem-like impairment does to each packet: lost, or delayed by a normal draw
//! (`tc qdisc ... netem delay MEAN SD distribution normal loss P`), seeded so a run can be
//! repeated. The binary applies these fates to the kernel's packets through NFQUEUE (this
//! kernel has no netem).

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt as _, SeedableRng as _};

/// A path's delay and loss, per packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Impairment {
    pub delay_mean: Duration,
    pub delay_sd: Duration,
    /// Probability that a packet is dropped.
    pub loss: f64,
}

impl Impairment {
    /// Per-packet loss for a path crossed twice (sender to server, server to listener, as
    /// netem on loopback impairs both) so that `end_to_end` of the packets never arrive.
    pub fn loss_per_hop(end_to_end: f64) -> f64 {
        1.0 - (1.0 - end_to_end.clamp(0.0, 1.0)).sqrt()
    }
}

/// Draws each packet's fate.
pub struct Fates {
    rng: StdRng,
    path: Impairment,
}

impl Fates {
    pub fn new(path: Impairment, seed: u64) -> Fates {
        Fates {
            rng: StdRng::seed_from_u64(seed),
            path,
        }
    }

    /// `None`: drop the packet; otherwise how long to hold it (never negative).
    pub fn draw(&mut self) -> Option<Duration> {
        // Draw every number for every packet, so the loss setting does not reshuffle delays.
        let lost = self.rng.random::<f64>() < self.path.loss;
        let u1: f64 = self.rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = self.rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let d = self.path.delay_mean.as_secs_f64() + z * self.path.delay_sd.as_secs_f64();
        (!lost).then(|| Duration::from_secs_f64(d.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_delay_are_what_was_asked() {
        let path = Impairment {
            delay_mean: Duration::from_millis(40),
            delay_sd: Duration::from_millis(10),
            loss: 0.01,
        };
        let mut f = Fates::new(path, 9);
        let fates: Vec<Option<Duration>> = (0..50_000).map(|_| f.draw()).collect();
        let lost = fates.iter().filter(|d| d.is_none()).count() as f64 / 50_000.0;
        assert!((0.008..0.012).contains(&lost), "loss {lost}");
        let ms: Vec<f64> = fates
            .iter()
            .flatten()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let sd = (ms.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / ms.len() as f64).sqrt();
        assert!((39.5..40.5).contains(&mean), "mean {mean}");
        assert!((9.5..10.5).contains(&sd), "sd {sd}");
        // Same seed, same fates.
        let mut g = Fates::new(path, 9);
        assert!(fates.iter().take(100).all(|d| *d == g.draw()));
    }

    #[test]
    fn loss_per_hop_compounds_to_the_end_to_end_loss() {
        let p = Impairment::loss_per_hop(0.05);
        assert!(((1.0 - p) * (1.0 - p) - 0.95).abs() < 1e-12);
        assert_eq!(Impairment::loss_per_hop(0.0), 0.0);
    }
}
