//! The simulated network: per-link latency with long tails, loss,
//! duplication, reordering, bursts of each, and directed link cuts
//! (partitions).

use std::collections::{BTreeMap, BTreeSet};

use crate::options::Faults;
use crate::rng::SimRng;

/// A kind of network burst (an index into [`Network::bursts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Burst {
    /// 30% of messages lost.
    Loss = 0,
    /// 30% of messages duplicated.
    Dup = 1,
    /// Up to 50 ms of extra jitter, no per-link ordering.
    Reorder = 2,
    /// 20% of messages take the long-tailed delay.
    Delay = 3,
}

/// The real instants at which one message arrives: none (lost or cut), one,
/// or two (duplicated). Inline: a plan is made for every message sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Arrivals {
    at: [u64; 2],
    len: u8,
}

impl Arrivals {
    fn one(at: u64) -> Arrivals {
        Arrivals {
            at: [at, 0],
            len: 1,
        }
    }

    fn push(&mut self, at: u64) {
        self.at[self.len as usize] = at;
        self.len += 1;
    }

    /// The instants, in the order they were drawn.
    pub fn as_slice(&self) -> &[u64] {
        &self.at[..self.len as usize]
    }

    /// The first instant drawn, if the message arrives at all.
    pub fn first(&self) -> Option<u64> {
        self.as_slice().first().copied()
    }
}

/// Links and their current state.
pub struct Network {
    n: usize,
    base_us: Vec<u64>,
    last_delivery: Vec<u64>,
    /// Directed links `(from, to)` currently cut: the union of the active
    /// partitions and the permanent cut.
    pub cut: BTreeSet<(usize, usize)>,
    /// `cut` as a matrix (`from * n + to`), for the look-up at every send.
    cut_links: Vec<bool>,
    partitions: BTreeMap<usize, Vec<(usize, usize)>>,
    permanent: Vec<(usize, usize)>,
    /// Active bursts by kind (a count: bursts may overlap).
    pub bursts: [u32; 4],
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
            cut_links: vec![false; n * n],
            partitions: BTreeMap::new(),
            permanent: Vec::new(),
            bursts: [0; 4],
            faulty: true,
            faults,
        }
    }

    fn burst(&self, b: Burst) -> bool {
        self.faulty && self.bursts[b as usize] > 0
    }

    /// The real instants at which a message sent now from `from` to `to`
    /// arrives: none if lost or cut, two if duplicated.
    pub fn plan(&mut self, rng: &mut SimRng, now: u64, from: usize, to: usize) -> Arrivals {
        if from == to {
            return Arrivals::one(now);
        }
        if self.cut_links[from * self.n + to] {
            return Arrivals::default();
        }
        let faulty = self.faulty;
        let loss = if self.burst(Burst::Loss) {
            0.3
        } else if faulty && self.faults.loss {
            0.02
        } else {
            0.0
        };
        if loss > 0.0 && rng.chance(loss) {
            return Arrivals::default();
        }
        let dup = if self.burst(Burst::Dup) {
            0.3
        } else if faulty && self.faults.dup {
            0.02
        } else {
            0.0
        };
        let copies = if dup > 0.0 && rng.chance(dup) { 2 } else { 1 };
        let delay = if self.burst(Burst::Delay) {
            0.2
        } else if faulty && self.faults.delay {
            0.01
        } else {
            0.0
        };
        let jitter = if self.burst(Burst::Reorder) {
            50_000
        } else if faulty && self.faults.reorder {
            3_000
        } else {
            0
        };
        let link = from * self.n + to;
        let mut out = Arrivals::default();
        for _ in 0..copies {
            let mut d = self.base_us[link] + rng.exp(150.0) as u64;
            if delay > 0.0 && rng.chance(delay) {
                // Pareto-like tail: mostly tens of ms, sometimes seconds.
                let u = 1.0 - rng.unit();
                d += ((5_000.0 / u.powf(1.0 / 1.2)) as u64).min(3_000_000);
            }
            let mut at = now + d;
            if jitter > 0 {
                at += rng.range(0, jitter);
            } else {
                at = at.max(self.last_delivery[link]);
                self.last_delivery[link] = at;
            }
            out.push(at);
        }
        out
    }

    fn recompute(&mut self) {
        self.cut = self
            .partitions
            .values()
            .flatten()
            .chain(&self.permanent)
            .copied()
            .collect();
        self.cut_links.fill(false);
        for &(from, to) in &self.cut {
            self.cut_links[from * self.n + to] = true;
        }
    }

    /// Starts partition `id`, cutting these directed links.
    pub fn partition(&mut self, id: usize, links: Vec<(usize, usize)>) {
        self.partitions.insert(id, links);
        self.recompute();
    }

    /// Ends partition `id` (its links stay cut if another partition cuts them).
    pub fn lift(&mut self, id: usize) {
        if self.partitions.remove(&id).is_some() {
            self.recompute();
        }
    }

    /// Cuts these links for the whole run (heal never restores them).
    pub fn cut_forever(&mut self, links: Vec<(usize, usize)>) {
        self.permanent = links;
        self.recompute();
    }

    /// Lifts every partition (the permanent cut stays).
    pub fn heal(&mut self) {
        self.partitions.clear();
        self.recompute();
    }
}
