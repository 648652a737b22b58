//! What happened, in real time: the record the checkers read.

use locker_core::Reply;

/// The kind of a client operation, with the values it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// `lock(key, value)`.
    Lock(String),
    /// `update(key, value, new_value)`.
    Update(String, String),
    /// `extend_lease(key, value)`.
    Extend(String),
    /// `release(key, value)`.
    Release(String),
    /// Quorum read.
    Read,
    /// Dirty read.
    DirtyRead,
    /// `wait_for`.
    WaitFor,
    /// `wait_for_release`.
    WaitForRelease,
    /// `set_w(w)` (administration; no key).
    SetW(usize),
    /// `set_nodes` (administration; no key).
    SetNodes,
}

impl OpKind {
    /// A short name for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            OpKind::Lock(_) => "lock",
            OpKind::Update(..) => "update",
            OpKind::Extend(_) => "extend",
            OpKind::Release(_) => "release",
            OpKind::Read => "read",
            OpKind::DirtyRead => "dirty_read",
            OpKind::WaitFor => "wait_for",
            OpKind::WaitForRelease => "wait_for_release",
            OpKind::SetW(_) => "set_w",
            OpKind::SetNodes => "set_nodes",
        }
    }
}

/// One client operation: invoked at `invoke`, answered at `ret` (real µs).
#[derive(Clone, Debug)]
pub struct Op {
    /// The client.
    pub client: usize,
    /// The key.
    pub key: String,
    /// What it asked.
    pub kind: OpKind,
    /// Real time of the send.
    pub invoke: u64,
    /// Real time and content of the answer; `None` if it never came.
    pub ret: Option<(u64, Reply)>,
    /// Part of the liveness probe.
    pub probe: bool,
}

/// A holder's tenure: from receipt of the grant to the end of its belief.
#[derive(Clone, Debug)]
pub struct Window {
    /// The key.
    pub key: String,
    /// The holder.
    pub client: usize,
    /// The tenure's token.
    pub token: u64,
    /// Real time the grant was received.
    pub start: u64,
    /// Real time the holder stops acting (deadline through its clock, or release).
    pub end: u64,
}

/// A successful lock: its token and the real-time bounds of the operation.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The key.
    pub key: String,
    /// The token granted.
    pub token: u64,
    /// Real time the request was sent.
    pub invoke: u64,
    /// Real time the grant was received.
    pub ret: u64,
}

/// The whole run's record.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Every client operation.
    pub ops: Vec<Op>,
    /// Every holder tenure.
    pub windows: Vec<Window>,
    /// Every successful lock.
    pub grants: Vec<Grant>,
    /// Writes a fenced resource rejected (stale tokens from paused holders).
    pub fenced_rejections: u64,
}
