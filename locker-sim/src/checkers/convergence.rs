//! Convergence one second into the liveness probe (nothing new is written but the probes' locks): every entry held by a quorum of
//! masters is on every replica, and no replica keeps an entry no master has.
//!
//! Entries with less than 200 ms left are ignored (expiry races), plus what
//! clock rates may take off a lease: a replica counts a reported remaining
//! lease on its own clock, which may run faster than the master's by twice
//! the drift bound (at `--drift 0.05`, a 10 s lease ends up to a second
//! earlier on a replica: the safe direction).

use std::collections::BTreeMap;
use std::time::Duration;

use super::Stores;

/// Lists every disagreement.
pub fn check(s: &Stores, max_lease: Duration, drift: f64) -> Vec<String> {
    let margin =
        Duration::from_millis(200) + max_lease.mul_f64(2.0 * drift / (1.0 - drift.min(0.5)));
    let mut out = Vec::new();
    let mut count: BTreeMap<(&str, u64), usize> = BTreeMap::new();
    let mut anywhere: BTreeMap<(&str, u64), ()> = BTreeMap::new();
    for m in &s.masters {
        for (k, t, rem) in m {
            anywhere.insert((k, *t), ());
            if *rem > margin {
                *count.entry((k, *t)).or_default() += 1;
            }
        }
    }
    for (ri, r) in s.replicas.iter().enumerate() {
        let have: BTreeMap<(&str, u64), Duration> = r
            .iter()
            .map(|(k, t, rem)| ((k.as_str(), *t), *rem))
            .collect();
        for (&(k, t), &n) in &count {
            if n >= s.w && !have.contains_key(&(k, t)) {
                out.push(format!(
                    "replica {ri} lacks {k} token {t} held by {n} masters"
                ));
            }
        }
        for (&(k, t), &rem) in &have {
            if rem > margin && !anywhere.contains_key(&(k, t)) {
                out.push(format!(
                    "replica {ri} keeps {k} token {t} that no master has"
                ));
            }
        }
    }
    out
}
