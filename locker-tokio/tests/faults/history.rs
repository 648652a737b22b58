//! The history of a run on real processes, recorded on the wall clock, and
//! its verdict: the simulator's own mutual-exclusion and fencing checkers
//! (`locker_sim::checkers`) read it, plus two checks of the work that lease
//! guards allowed.
//!
//! Every time is microseconds since the Unix epoch from `SystemTime`: the
//! test process and the `locker hold` processes share the machine's clock,
//! so their events fall on one time line.

use locker_sim::checkers::{fencing, mutex};
use locker_sim::history::{Grant, History, Window};
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A duration in microseconds.
pub fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

/// One step of work a `locker hold` process did while its guard proved
/// the lease.
#[derive(Clone, Debug)]
pub struct WorkStep {
    /// The key held.
    pub key: String,
    /// The holder.
    pub holder: usize,
    /// The tenure's token.
    pub token: u64,
    /// When the guard was checked and the step done.
    pub at: u64,
    /// The deadline the step was checked against.
    pub deadline: u64,
}

/// Who holders are, so a violation message says which process it was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HolderKind {
    /// A `locker_tokio::Client` task in the test process.
    Library,
    /// A `locker lock` / `locker release` process.
    Cli,
    /// A `locker hold` process.
    Hold,
}

#[derive(Default)]
struct Record {
    windows: Vec<Window>,
    grants: Vec<Grant>,
    work: Vec<WorkStep>,
    holders: Vec<(HolderKind, String)>,
    counts: BTreeMap<String, u64>,
    faults: Vec<(u64, String)>,
}

/// What happened in a run. Shared by every workload task and thread.
#[derive(Default)]
pub struct Recorder {
    record: Mutex<Record>,
}

impl Recorder {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new holder's number, for windows, grants and work steps.
    pub fn holder(&self, kind: HolderKind, name: impl Into<String>) -> usize {
        let mut r = self.record();
        r.holders.push((kind, name.into()));
        r.holders.len() - 1
    }

    /// A successful lock: sent at `invoke`, answered at `ret`.
    pub fn grant(&self, key: &str, token: u64, invoke: u64, ret: u64) {
        self.record().grants.push(Grant {
            key: key.to_string(),
            token,
            invoke,
            ret,
        });
    }

    /// A tenure: from the grant's receipt to the earliest of its release
    /// and its deadline.
    pub fn window(&self, key: &str, holder: usize, token: u64, start: u64, end: u64) {
        self.record().windows.push(Window {
            key: key.to_string(),
            client: holder,
            token,
            start,
            end,
        });
    }

    /// A work step of a `locker hold` process.
    pub fn work(&self, step: WorkStep) {
        self.record().work.push(step);
    }

    /// Adds one to the counter `what` (`lock ok`, `extend failed`, ...).
    pub fn count(&self, what: &str) {
        self.add(what, 1);
    }

    /// Adds `n` to the counter `what`.
    pub fn add(&self, what: &str, n: u64) {
        *self.record().counts.entry(what.to_string()).or_default() += n;
    }

    /// A counter's value.
    pub fn counter(&self, what: &str) -> u64 {
        self.record().counts.get(what).copied().unwrap_or(0)
    }

    /// Notes a fault injected now (also on stderr, as progress).
    pub fn fault(&self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("  fault: {what}");
        let mut r = self.record();
        *r.counts.entry("faults injected".into()).or_default() += 1;
        r.faults.push((now_us(), what));
    }

    /// Grants recorded so far.
    pub fn grants(&self) -> usize {
        self.record().grants.len()
    }

    /// Grants whose answer came after `since`.
    pub fn grants_after(&self, since: u64) -> Vec<Grant> {
        self.record()
            .grants
            .iter()
            .filter(|g| g.ret > since)
            .cloned()
            .collect()
    }

    /// The counters, one per line, for a run's figures.
    pub fn figures(&self) -> String {
        let r = self.record();
        let mut out = format!(
            "grants {}, tenures {}, work steps {}\n",
            r.grants.len(),
            r.windows.len(),
            r.work.len()
        );
        for (k, v) in &r.counts {
            out.push_str(&format!("  {k}: {v}\n"));
        }
        out
    }

    /// Every check over everything recorded.
    pub fn verdict(&self) -> Verdict {
        let r = self.record();
        let beliefs = History {
            windows: r.windows.clone(),
            ..History::default()
        };
        let tenures = History {
            windows: tenures(&r.windows),
            grants: r.grants.clone(),
            ..History::default()
        };
        let name = |v: String| name_holders(v, &r.holders);
        Verdict {
            mutex: mutex::check(&beliefs).into_iter().map(name).collect(),
            fencing: fencing::check(&tenures).into_iter().map(name).collect(),
            work_exclusion: mutex::check(&work_history(&r))
                .into_iter()
                .filter(|v| clients_in(v).iter().any(|&c| is_hold(&r, c)))
                .map(name)
                .collect(),
            work_in_tenure: work_outside_tenure(&r).into_iter().map(name).collect(),
            faults: r.faults.clone(),
        }
    }
}

/// One window per tenure, for the fencing checker, which orders tenures
/// by their start: a hold process's tenure may be recorded as several
/// windows (see `Holder::record` in the workload), all with its grant's
/// token.
fn tenures(windows: &[Window]) -> Vec<Window> {
    let mut by_tenure: BTreeMap<Tenure<'_>, Window> = BTreeMap::new();
    for w in windows {
        by_tenure
            .entry((w.client, w.token, &w.key))
            .and_modify(|t| {
                t.start = t.start.min(w.start);
                t.end = t.end.max(w.end);
            })
            .or_insert_with(|| w.clone());
    }
    by_tenure.into_values().collect()
}

/// A tenure by its holder, token and key.
type Tenure<'a> = (usize, u64, &'a str);

/// The work that guards allowed, as windows the mutual-exclusion checker
/// reads: each `locker hold` tenure's work, from its first step to its last
/// (split where a step comes after every deadline checked before it),
/// with every tenure of the other holders (library and CLI clients do no
/// work of their own, so their tenures stand for it). Two processes working
/// on one key at once, or one working while another client holds the key,
/// overlap here; [`Recorder::verdict`] keeps the overlaps that involve work.
fn work_history(r: &Record) -> History {
    let mut steps: BTreeMap<Tenure<'_>, Vec<(u64, u64)>> = BTreeMap::new();
    for s in &r.work {
        steps
            .entry((s.holder, s.token, &s.key))
            .or_default()
            .push((s.at, s.deadline));
    }
    let mut windows = Vec::new();
    for ((holder, token, key), mut steps) in steps {
        steps.sort();
        // One span while each step lies before the latest deadline checked
        // so far; a step after it (past a pause, then extended) starts
        // another.
        let mut span: Option<(u64, u64, u64)> = None; // first, last, deadline
        let mut close = |(first, last, _): (u64, u64, u64)| {
            windows.push(Window {
                key: key.to_string(),
                client: holder,
                token,
                start: first,
                // A single step is an instant; the checker skips empty windows.
                end: last + 1,
            })
        };
        for (at, deadline) in steps {
            span = match span {
                Some((first, _, d)) if at <= d => Some((first, at, d.max(deadline))),
                Some(done) => {
                    close(done);
                    Some((at, at, deadline))
                }
                None => Some((at, at, deadline)),
            };
        }
        if let Some(done) = span {
            close(done);
        }
    }
    windows.extend(r.windows.iter().filter(|w| !is_hold(r, w.client)).cloned());
    History {
        windows,
        ..History::default()
    }
}

fn is_hold(r: &Record, holder: usize) -> bool {
    matches!(r.holders.get(holder), Some((HolderKind::Hold, _)))
}

/// The holders a checker's message names (`client N`).
fn clients_in(message: &str) -> Vec<usize> {
    message
        .split("client ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Work steps that lie outside their own tenure or after the deadline
/// they were checked against.
fn work_outside_tenure(r: &Record) -> Vec<String> {
    let mut out = Vec::new();
    for s in &r.work {
        let inside = r.windows.iter().any(|w| {
            w.client == s.holder
                && w.token == s.token
                && w.key == s.key
                && w.start <= s.at
                && s.at <= w.end
        });
        if !inside || s.at >= s.deadline {
            out.push(format!(
                "key {}: client {} worked with token {} at {} (deadline {}) outside its tenure",
                s.key, s.holder, s.token, s.at, s.deadline
            ));
        }
    }
    out
}

/// Replaces `client N` in a checker's message by the holder's name.
fn name_holders(message: String, holders: &[(HolderKind, String)]) -> String {
    let mut out = String::new();
    let mut rest = message.as_str();
    while let Some(i) = rest.find("client ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + "client ".len()..];
        let digits = after.chars().take_while(|c| c.is_ascii_digit()).count();
        match after[..digits]
            .parse::<usize>()
            .ok()
            .and_then(|n| holders.get(n))
        {
            Some((_, name)) => out.push_str(name),
            None => out.push_str(&rest[i..i + "client ".len() + digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The checkers' findings for one run.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Two tenures of one key overlapping in real time.
    pub mutex: Vec<String>,
    /// Tokens not increasing in the real-time order of grants.
    pub fencing: Vec<String>,
    /// Work of one holder overlapping another holder's work or tenure.
    pub work_exclusion: Vec<String>,
    /// Work outside the worker's own tenure.
    pub work_in_tenure: Vec<String>,
    /// The faults injected, with their times, for the report.
    pub faults: Vec<(u64, String)>,
}

/// A checker a scenario asserts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// [`Verdict::mutex`].
    Mutex,
    /// [`Verdict::fencing`].
    Fencing,
    /// [`Verdict::work_exclusion`].
    WorkExclusion,
    /// [`Verdict::work_in_tenure`].
    WorkInTenure,
}

/// Every checker.
pub const ALL_CHECKS: [Check; 4] = [
    Check::Mutex,
    Check::Fencing,
    Check::WorkExclusion,
    Check::WorkInTenure,
];

impl Verdict {
    /// The findings of one checker.
    pub fn of(&self, check: Check) -> &[String] {
        match check {
            Check::Mutex => &self.mutex,
            Check::Fencing => &self.fencing,
            Check::WorkExclusion => &self.work_exclusion,
            Check::WorkInTenure => &self.work_in_tenure,
        }
    }

    /// The findings of `checks`, one message per line, with the fault
    /// timeline; empty when they all pass.
    pub fn failures(&self, checks: &[Check]) -> String {
        let mut out = String::new();
        for &c in checks {
            let found = self.of(c);
            if !found.is_empty() {
                out.push_str(&format!("{c:?}: {} violation(s)\n", found.len()));
                for v in found.iter().take(10) {
                    out.push_str(&format!("  {v}\n"));
                }
            }
        }
        if !out.is_empty() {
            out.push_str("faults:\n");
            for (at, f) in &self.faults {
                out.push_str(&format!("  {at} {f}\n"));
            }
        }
        out
    }

    /// One line: how many violations each checker found.
    pub fn summary(&self) -> String {
        ALL_CHECKS
            .iter()
            .map(|&c| format!("{c:?} {}", self.of(c).len()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
