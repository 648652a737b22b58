//! Liveness after the quiet phase: each client's probe lock on a free key
//! succeeds within its 3 s wait, and `wait_for_release` on it answers `Gone`
//! within its 4 s timeout once the 1 s lease expires.

use locker_core::Response;

use crate::history::{History, OpKind};

/// Lists every probe that failed or never answered.
pub fn check(h: &History, probe_at: u64) -> Vec<String> {
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
    out
}
