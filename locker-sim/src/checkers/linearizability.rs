//! Linearizability of quorum reads and writes, per key, by a WGL-style
//! search with memoisation.
//!
//! Expiry is not modelled: the check covers only the `l*` keys, whose leases
//! are `max_lease` long and which clients use for a bounded epoch; per key,
//! operations invoked after the first lock could have expired
//! (`first lock + max_lease / (1 + drift)`) are dropped and answers after it
//! are treated as unknown. At most [`MAX_OPS`] operations per key are checked.

use std::collections::{BTreeMap, HashSet};

use locker_core::Response;

use crate::history::{History, Op, OpKind};

/// The bound on operations checked per key.
pub const MAX_OPS: usize = 120;
const MAX_STEPS: u64 = 2_000_000;

#[derive(Clone, Debug)]
enum Effect {
    Lock(String),
    /// `held`: the core answers it also when only a stale promise blocked
    /// the attempt (the key may be absent), so it observes nothing.
    Nothing,
    Update(String, String),
    UpdateFail(bool),
    Release(String),
    ReleaseFail(bool),
    Read(Option<String>),
}

#[derive(Clone, Debug)]
struct LinOp {
    invoke: u64,
    ret: u64,
    sure: bool,
    effect: Effect,
}

fn apply(state: &Option<String>, e: &Effect) -> Option<Option<String>> {
    match e {
        Effect::Lock(v) => state.is_none().then(|| Some(v.clone())),
        Effect::Nothing => Some(state.clone()),
        Effect::Update(v, nv) => (state.as_deref() == Some(v)).then(|| Some(nv.clone())),
        // true: not_owner (present, other value); false: not_found.
        Effect::UpdateFail(present) | Effect::ReleaseFail(present) => {
            (state.is_some() == *present).then(|| state.clone())
        }
        Effect::Release(v) => (state.as_deref() == Some(v)).then_some(None),
        Effect::Read(r) => (state == r).then(|| state.clone()),
    }
}

fn to_lin(o: &Op, horizon: u64) -> Option<LinOp> {
    if o.invoke >= horizon {
        return None;
    }
    let answer = o.ret.as_ref().filter(|(t, _)| *t <= horizon);
    let (ret, sure) = match answer {
        Some((t, r)) => {
            let definite = match r {
                Ok(_) => true,
                Err(e) => matches!(e.code(), "held" | "not_owner" | "not_found"),
            };
            (if definite { *t } else { u64::MAX }, definite)
        }
        None => (u64::MAX, false),
    };
    let reply = answer.map(|(_, r)| r);
    let effect = match (&o.kind, reply) {
        (_, Some(Err(e))) if sure && e.code() == "held" => Effect::Nothing,
        (OpKind::Lock(v), _) => Effect::Lock(v.clone()),
        (OpKind::Update(..), Some(Err(e))) if sure => Effect::UpdateFail(e.code() == "not_owner"),
        (OpKind::Update(v, nv), _) => Effect::Update(v.clone(), nv.clone()),
        (OpKind::Release(_), Some(Err(e))) if sure => Effect::ReleaseFail(e.code() != "not_found"),
        (OpKind::Release(v), _) => Effect::Release(v.clone()),
        (OpKind::Read, Some(Ok(Response::Value(v)))) if sure => Effect::Read(
            v.as_ref()
                .map(|e| String::from_utf8_lossy(&e.value).into_owned()),
        ),
        _ => return None,
    };
    if matches!(effect, Effect::Read(_)) && !sure {
        return None;
    }
    Some(LinOp {
        invoke: o.invoke,
        ret,
        sure,
        effect,
    })
}

/// Lists every key whose history has no linearization.
pub fn check(h: &History, max_lease_us: u64, drift: f64) -> Vec<String> {
    check_counting(h, max_lease_us, drift).violations
}

/// What the search found over every key.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Keys whose history has no linearization.
    pub violations: Vec<String>,
    /// Keys checked.
    pub keys: usize,
    /// Keys on which the search gave up (more than its step budget): neither
    /// proved nor refuted.
    pub undecided: usize,
}

/// Like [`check`], and counts the keys checked and those left undecided.
pub fn check_counting(h: &History, max_lease_us: u64, drift: f64) -> Outcome {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for o in &h.ops {
        if o.key.starts_with('l') && !o.probe {
            by_key.entry(&o.key).or_default().push(o);
        }
    }
    let mut out = Vec::new();
    let mut outcome = Outcome::default();
    for (key, ops) in by_key {
        outcome.keys += 1;
        let first_lock = ops
            .iter()
            .filter(|o| matches!(o.kind, OpKind::Lock(_)))
            .map(|o| o.invoke)
            .min()
            .unwrap_or(u64::MAX);
        let horizon = if first_lock == u64::MAX {
            u64::MAX
        } else {
            first_lock + (max_lease_us as f64 / (1.0 + drift)) as u64 - 1_000
        };
        let mut lin: Vec<LinOp> = ops.iter().filter_map(|o| to_lin(o, horizon)).collect();
        lin.sort_by_key(|o| o.invoke);
        if lin.len() > MAX_OPS {
            // Cut the history where the first left-out operation starts. An
            // operation still running at the cut may depend on left-out ones
            // (a lock waiting for a release): it becomes "may or may not have
            // happened", like an operation without an answer.
            let cut = lin[MAX_OPS].invoke;
            lin.truncate(MAX_OPS);
            for o in &mut lin {
                if o.ret > cut {
                    o.ret = u64::MAX;
                    o.sure = false;
                }
            }
            lin.retain(|o| o.sure || !matches!(o.effect, Effect::Read(_)));
        }
        match search(&lin) {
            Some(true) => {}
            Some(false) => {
                let detail: Vec<String> = lin
                    .iter()
                    .map(|o| {
                        format!(
                            "[{}..{} {:?}]",
                            o.invoke,
                            if o.ret == u64::MAX { -1 } else { o.ret as i64 },
                            o.effect
                        )
                    })
                    .collect();
                out.push(format!(
                    "key {key}: {} operations have no linearization: {}",
                    lin.len(),
                    detail.join(" ")
                ))
            }
            None => outcome.undecided += 1,
        }
    }
    outcome.violations = out;
    outcome
}

/// `Some(true)` linearizable, `Some(false)` not, `None` gave up.
fn search(ops: &[LinOp]) -> Option<bool> {
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    let mut steps = 0u64;
    let mut stack = vec![(vec![0u64; words], None::<String>)];
    let sure_total = ops.iter().filter(|o| o.sure).count();
    while let Some((done, state)) = stack.pop() {
        steps += 1;
        if steps > MAX_STEPS {
            return None;
        }
        let is_done = |i: usize| done[i / 64] >> (i % 64) & 1 == 1;
        let sure_done = (0..n).filter(|&i| is_done(i) && ops[i].sure).count();
        if sure_done == sure_total {
            return Some(true);
        }
        let min_ret = (0..n)
            .filter(|&i| !is_done(i))
            .map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..n {
            if is_done(i) || ops[i].invoke > min_ret {
                continue;
            }
            if let Some(next) = apply(&state, &ops[i].effect) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                if seen.insert((d.clone(), next.clone())) {
                    stack.push((d, next));
                }
            }
        }
    }
    Some(false)
}
