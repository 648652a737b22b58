//! Fencing: tokens strictly increase in the real-time order of grants, per
//! key (by tenure start) and across keys (for non-overlapping operations).

use std::collections::BTreeMap;

use crate::history::History;

/// Lists every out-of-order token.
pub fn check(h: &History) -> Vec<String> {
    let mut out = Vec::new();
    // Across keys: a grant that completed before another started has a smaller token.
    let mut by_ret: Vec<_> = h.grants.iter().collect();
    by_ret.sort_by_key(|g| (g.ret, g.token));
    let mut by_invoke: Vec<_> = h.grants.iter().collect();
    by_invoke.sort_by_key(|g| (g.invoke, g.token));
    let mut i = 0;
    let mut best: Option<&crate::history::Grant> = None;
    for g in by_invoke {
        while i < by_ret.len() && by_ret[i].ret < g.invoke {
            if best.is_none_or(|b| by_ret[i].token > b.token) {
                best = Some(by_ret[i]);
            }
            i += 1;
        }
        if let Some(b) = best {
            if b.token >= g.token {
                out.push(format!(
                    "token {} on {} (sent {}) is not above token {} on {} granted at {}",
                    g.token, g.key, g.invoke, b.token, b.key, b.ret
                ));
            }
        }
    }
    // Per key: tenures in order of start carry increasing tokens.
    let mut by_key: BTreeMap<&str, Vec<(u64, u64)>> = BTreeMap::new();
    for w in &h.windows {
        if w.end > w.start {
            by_key.entry(&w.key).or_default().push((w.start, w.token));
        }
    }
    for (key, mut ws) in by_key {
        ws.sort();
        for pair in ws.windows(2) {
            if pair[1].1 <= pair[0].1 {
                out.push(format!(
                    "key {key}: tenure at {} has token {} after token {} at {}",
                    pair[1].0, pair[1].1, pair[0].1, pair[0].0
                ));
            }
        }
    }
    out
}
