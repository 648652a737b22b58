//! Mutual exclusion: two holders' validity windows on one key never overlap
//! in real time.

use std::collections::BTreeMap;

use crate::history::{History, Window};

/// Lists every overlap.
pub fn check(h: &History) -> Vec<String> {
    let mut by_key: BTreeMap<&str, Vec<&Window>> = BTreeMap::new();
    for w in &h.windows {
        if w.end > w.start {
            by_key.entry(&w.key).or_default().push(w);
        }
    }
    let mut out = Vec::new();
    for (key, mut ws) in by_key {
        ws.sort_by_key(|w| (w.start, w.end));
        let mut prev: Option<&Window> = None;
        for w in ws {
            if let Some(p) = prev {
                if w.start < p.end {
                    out.push(format!(
                        "key {key}: client {} (token {}) held [{}, {}) while client {} (token {}) held [{}, {})",
                        w.client, w.token, w.start, w.end, p.client, p.token, p.start, p.end
                    ));
                }
                if w.end > p.end {
                    prev = Some(w);
                }
            } else {
                prev = Some(w);
            }
        }
    }
    out
}
