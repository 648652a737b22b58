//! The checkers, one invariant per file. Each reads the history (and, for
//! convergence, the stores at the end) and lists violations.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::history::History;
use crate::options::SimOptions;

pub mod convergence;
pub mod fencing;
pub mod linearizability;
pub mod liveness;
pub mod mutex;

/// Every storing node's live entries at the end: `(key, token, remaining)`.
#[derive(Clone, Debug, Default)]
pub struct Stores {
    /// Per master (crashed ones omitted).
    pub masters: Vec<Vec<(String, u64, Duration)>>,
    /// Per replica.
    pub replicas: Vec<Vec<(String, u64, Duration)>>,
    /// The write quorum.
    pub w: usize,
}

/// Violations by checker name (`mutex`, `fencing`, `linearizability`,
/// `convergence`, `liveness`, `invariants`).
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Checker name to its violation messages.
    pub violations: BTreeMap<&'static str, Vec<String>>,
    /// Keys the linearizability checker searched.
    pub lin_keys: usize,
    /// Keys on which it gave up (neither proved nor refuted).
    pub lin_undecided: usize,
}

impl Report {
    /// True when no checker fired.
    pub fn ok(&self) -> bool {
        self.violations.values().all(|v| v.is_empty())
    }

    /// The violations of one checker.
    pub fn of(&self, checker: &str) -> &[String] {
        self.violations
            .get(checker)
            .map(|v| v.as_slice())
            .unwrap_or(&[])
    }
}

/// Runs every checker.
pub fn check_all(
    h: &History,
    stores: &Stores,
    o: &SimOptions,
    probe_at: u64,
    invariants: &[String],
) -> Report {
    let mut r = Report::default();
    r.violations.insert("mutex", mutex::check(h));
    r.violations.insert("fencing", fencing::check(h));
    let lin = linearizability::check_counting(h, o.max_lease_ms * 1000, o.actual_drift());
    r.lin_keys = lin.keys;
    r.lin_undecided = lin.undecided;
    r.violations.insert("linearizability", lin.violations);
    r.violations.insert(
        "convergence",
        convergence::check(
            stores,
            Duration::from_millis(o.max_lease_ms),
            o.actual_drift(),
        ),
    );
    r.violations.insert(
        "liveness",
        liveness::check(h, probe_at, o.max_lease_ms, o.actual_drift()),
    );
    r.violations.insert("invariants", invariants.to_vec());
    r
}
