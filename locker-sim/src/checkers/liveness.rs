//! Liveness after the quiet phase: each client's probe lock on a free key
//! succeeds within its 3 s wait, and `wait_for_release` on it answers `Gone`
//! within its 4 s timeout once the 1 s lease expires. Then the handoff
//! probe: a lock that waits for a key held under a [`handoff_lease`] gets
//! it within [`HANDOFF_SLACK`] of the lease's end on the slowest master
//! clock (the masters tell a waiting lock when a key is free; polling
//! alone would take up to `RetryPolicy::held_poll`).

use std::time::Duration;

use locker_core::Response;

use crate::history::{History, Op, OpKind};

/// The first lease of the handoff probe, at most the cluster's `max_lease`.
pub fn handoff_lease(max_lease_ms: u64) -> Duration {
    Duration::from_millis(max_lease_ms.min(300))
}

/// How long after the first lease's end the waiting lock may take.
pub const HANDOFF_SLACK: Duration = Duration::from_millis(150);

/// Lists every probe that failed or never answered, and every handoff that
/// came too late; `drift` bounds the masters' clock rate errors.
pub fn check(h: &History, probe_at: u64, max_lease_ms: u64, drift: f64) -> Vec<String> {
    let mut out = Vec::new();
    let probes: Vec<_> = h
        .ops
        .iter()
        .filter(|o| o.probe && !o.key.starts_with("keep"))
        .collect();
    if probes.is_empty() && h.ops.iter().any(|o| o.invoke >= probe_at) {
        out.push("no probe ran".into());
    }
    for o in probes {
        let ok = matches!(
            (&o.kind, &o.ret),
            (OpKind::Lock(_), Some((_, Ok(Response::Locked(_)))))
                | (OpKind::WaitForRelease, Some((_, Ok(Response::Gone))))
        );
        if !ok {
            out.push(format!(
                "client {} probe {} on {} at {}: {:?}",
                o.client,
                o.kind.name(),
                o.key,
                o.invoke,
                o.ret.as_ref().map(|r| &r.1)
            ));
        }
    }
    out.extend(late_handoffs(h, handoff_lease(max_lease_ms), drift));
    out
}

/// The handoff probes whose waiting lock came too late: the first lock's
/// lease ends on every master by its answer plus the lease stretched by
/// the slowest clock.
fn late_handoffs(h: &History, lease: Duration, drift: f64) -> Vec<String> {
    let granted_at = |o: &Op| match &o.ret {
        Some((at, Ok(Response::Locked(_)))) => Some(*at),
        _ => None,
    };
    let lease_end_us = (lease.as_micros() as f64 / (1.0 - drift.min(0.5))).ceil() as u64;
    let slack_us = HANDOFF_SLACK.as_micros() as u64;
    let mut out = Vec::new();
    let handoffs = h
        .ops
        .iter()
        .filter(|o| o.probe && o.key.starts_with("handoff"));
    for first in handoffs
        .clone()
        .filter(|o| matches!(&o.kind, OpKind::Lock(v) if v.ends_with("-1")))
    {
        let Some(held_at) = granted_at(first) else {
            continue;
        };
        let second = handoffs.clone().find(|o| {
            o.key == first.key && matches!(&o.kind, OpKind::Lock(v) if v.ends_with("-2"))
        });
        let late = match second.and_then(granted_at) {
            Some(at) => at > held_at + lease_end_us + slack_us,
            None => false, // a waiting lock that failed is reported above
        };
        if late {
            out.push(format!(
                "client {} handoff on {}: held from {held_at} for {lease:?}, the waiting lock got {:?}",
                first.client,
                first.key,
                second.and_then(|o| o.ret.as_ref())
            ));
        }
    }
    out
}
