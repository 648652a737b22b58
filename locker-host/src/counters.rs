//! The adapter's counters, shown by `locker status`.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a node counts about its connections and requests.
#[derive(Default, Debug)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Handshakes that failed (wrong secret, garbage, timeout).
    pub auth_failures: AtomicU64,
    /// Connections closed for a malformed, oversized or wrong-version frame.
    pub bad_frames: AtomicU64,
    /// Peer connections refused because they claimed this node's own id.
    pub own_id_peers: AtomicU64,
    /// Messages dropped because a peer link's queue was full.
    pub link_drops: AtomicU64,
    /// Replies dropped because a client did not read them.
    pub replies_dropped: AtomicU64,
    /// Outbound peer connections established.
    pub peer_connects: AtomicU64,
    /// Requests handled.
    pub requests: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Every counter by name, for a status reply.
    pub fn to_vec(&self) -> Vec<(String, u64)> {
        let c = |n: &str, v: &AtomicU64| (n.to_string(), v.load(Ordering::Relaxed));
        vec![
            c("accepted", &self.accepted),
            c("auth_failures", &self.auth_failures),
            c("bad_frames", &self.bad_frames),
            c("own_id_peers", &self.own_id_peers),
            c("link_drops", &self.link_drops),
            c("replies_dropped", &self.replies_dropped),
            c("peer_connects", &self.peer_connects),
            c("requests", &self.requests),
        ]
    }
}
