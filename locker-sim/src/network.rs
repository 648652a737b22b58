//! The simulated network: per-link latency with long tails, loss,
//! duplication, reordering, and directed link cuts (partitions).

use std::collections::BTreeSet;

use crate::options::Faults;
use crate::rng::SimRng;

/// Links and their current state.
pub struct Network {
    n: usize,
    base_us: Vec<u64>,
    last_delivery: Vec<u64>,
    /// Directed links `(from, to)` currently cut.
    pub cut: BTreeSet<(usize, usize)>,
    /// Whether faults are injected right now (false in the quiet phase).
    pub faulty: bool,
    faults: Faults,
}

impl Network {
    /// `n` nodes, each link with its own base latency (0.2 to 2 ms).
    pub fn new(n: usize, faults: Faults, rng: &mut SimRng) -> Network {
        let base_us = (0..n * n).map(|_| rng.range(200, 2_000)).collect();
        Network {
            n,
            base_us,
            last_delivery: vec![0; n * n],
            cut: BTreeSet::new(),
            faulty: true,
            faults,
        }
    }

    /// The real instants at which a message sent now from `from` to `to`
    /// arrives: none if lost or cut, two if duplicated.
    pub fn plan(&mut self, rng: &mut SimRng, now: u64, from: usize, to: usize) -> Vec<u64> {
        if from == to {
            return vec![now];
        }
        if self.cut.contains(&(from, to)) {
            return Vec::new();
        }
        let faulty = self.faulty;
        if faulty && self.faults.loss && rng.chance(0.02) {
            return Vec::new();
        }
        let copies = if faulty && self.faults.dup && rng.chance(0.02) {
            2
        } else {
            1
        };
        let link = from * self.n + to;
        let mut out = Vec::with_capacity(copies);
        for _ in 0..copies {
            let mut d = self.base_us[link] + rng.exp(150.0) as u64;
            if faulty && self.faults.delay && rng.chance(0.01) {
                // Pareto-like tail: mostly tens of ms, sometimes seconds.
                let u = 1.0 - rng.unit();
                d += ((5_000.0 / u.powf(1.0 / 1.2)) as u64).min(3_000_000);
            }
            let mut at = now + d;
            if faulty && self.faults.reorder {
                at += rng.range(0, 3_000);
            } else {
                at = at.max(self.last_delivery[link]);
                self.last_delivery[link] = at;
            }
            out.push(at);
        }
        out
    }

    /// Cuts every link between the two sides, in both directions.
    pub fn split(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }
}
