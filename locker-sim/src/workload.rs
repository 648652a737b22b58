//! The client workload: what each client does next, over a small key space
//! so that contention is real.

use std::time::Duration;

use locker_core::Request;

use crate::history::OpKind;
use crate::rng::SimRng;

/// Keys with short leases: mutual exclusion and fencing.
pub const MUTEX_KEYS: u64 = 8;
/// Keys with `max_lease` leases, used for a bounded time: linearizability.
pub const LIN_KEYS: u64 = 4;
const MAX_KEYS: usize = if MUTEX_KEYS > LIN_KEYS {
    MUTEX_KEYS
} else {
    LIN_KEYS
} as usize;

/// What a client believes it holds.
#[derive(Clone, Debug)]
pub struct Holding {
    /// The key.
    pub key: String,
    /// Its value (unique per tenure).
    pub value: String,
    /// The fencing token.
    pub token: u64,
    /// Deadline on the client's own clock (µs).
    pub deadline_local: u64,
    /// Index of its window in the history.
    pub window: usize,
    /// A linearizability key (held until released or abandoned).
    pub lin: bool,
}

/// One of a client's slots: at most one operation outstanding, at most one
/// tenure held. A client's slots work on distinct keys.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// Outstanding request id, if any.
    pub pending: Option<u64>,
    /// The key of the outstanding request.
    pub pending_key: Option<String>,
    /// Its tenure, if any.
    pub holding: Option<Holding>,
    /// Busy (a holder paused past its deadline) until this real instant.
    pub busy_until: u64,
}

impl Slot {
    /// Free to start an operation at real instant `now`.
    pub fn idle(&self, now: u64) -> bool {
        self.pending.is_none() && self.busy_until <= now
    }
}

/// One client process: a node beside it and several slots, so that it can
/// pipeline operations on distinct keys.
#[derive(Clone, Debug)]
pub struct Client {
    /// Index of its client-only node.
    pub node: usize,
    /// Its slots (`SimOptions::pipeline` of them).
    pub slots: Vec<Slot>,
    /// Counter for unique values.
    pub counter: u64,
    /// The probe stage in the quiet phase (0 none, 1 lock sent, 2 wfr sent, 3 done).
    pub probe_stage: u8,
}

impl Client {
    /// Keys some slot is working on (outstanding request or tenure).
    pub fn busy_keys(&self) -> Vec<&str> {
        let mut keys = Vec::new();
        for s in &self.slots {
            if let Some(k) = &s.pending_key {
                keys.push(k.as_str());
            }
            if let Some(h) = &s.holding {
                keys.push(h.key.as_str());
            }
        }
        keys
    }
}

/// A chosen operation: the request, where it goes, and how it is recorded.
pub struct Action {
    /// The request.
    pub req: Request,
    /// The history kind.
    pub kind: OpKind,
    /// The key (history name).
    pub key: String,
    /// Send to a storing node (remote) instead of the client's own node.
    pub remote: bool,
}

/// The holder's release, by token or (the wooga form) by value alone.
fn release(h: &Holding, key: Vec<u8>, value: Vec<u8>, with_token: bool) -> Action {
    Action {
        req: Request::Release {
            key,
            value,
            token: with_token.then_some(locker_core::Token(h.token)),
            wait: ms(300),
        },
        kind: OpKind::Release(h.value.clone()),
        key: h.key.clone(),
        remote: false,
    }
}

/// How long a client waits for the answer to `req` before it gives up (the
/// outcome then stays unknown): the request's own wait or timeout, plus one
/// second for the network and the core's last attempt.
pub fn patience(req: &Request) -> Duration {
    let own = match req {
        Request::Lock { wait, .. }
        | Request::Update { wait, .. }
        | Request::Extend { wait, .. }
        | Request::Release { wait, .. }
        | Request::Read { wait, .. } => *wait,
        Request::WaitFor { timeout, .. } | Request::WaitForRelease { timeout, .. } => *timeout,
        Request::DirtyRead { .. } => Duration::ZERO,
        _ => ms(3_000),
    };
    own + ms(1_000)
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The names of the workload's keys, made once (and the linearizability
/// keys once per epoch) rather than for every operation.
#[derive(Debug)]
pub struct KeyNames {
    mutex: Vec<String>,
    lin_epoch: u64,
    lin: Vec<String>,
}

impl Default for KeyNames {
    fn default() -> KeyNames {
        KeyNames {
            mutex: (0..MUTEX_KEYS).map(|i| format!("m{i}")).collect(),
            lin_epoch: 0,
            lin: lin_names(0),
        }
    }
}

fn lin_names(epoch: u64) -> Vec<String> {
    (0..LIN_KEYS).map(|i| format!("l{epoch}-{i}")).collect()
}

impl KeyNames {
    /// Moves the linearizability keys to `epoch`.
    pub fn set_lin_epoch(&mut self, epoch: u64) {
        if epoch != self.lin_epoch {
            self.lin_epoch = epoch;
            self.lin = lin_names(epoch);
        }
    }

    /// Whether `key` is a linearizability key of the current epoch.
    pub fn is_current_lin(&self, key: &str) -> bool {
        self.lin.iter().any(|k| k == key)
    }
}

/// Picks one of `names` that is not in `busy`.
fn free_key(rng: &mut SimRng, names: &[String], busy: &[&str]) -> Option<String> {
    let mut free = [0usize; MAX_KEYS];
    let mut n = 0;
    for (i, name) in names.iter().enumerate() {
        if !busy.contains(&name.as_str()) {
            free[n] = i;
            n += 1;
        }
    }
    if n == 0 {
        return None;
    }
    Some(names[free[rng.range(0, n as u64) as usize]].clone())
}

/// Chooses the next operation of a slot that holds nothing, on a key no
/// other slot of the client is using; `None` if every key of the chosen
/// kind is busy.
pub fn choose_free(
    rng: &mut SimRng,
    client: usize,
    counter: &mut u64,
    keys: &KeyNames,
    max_lease_ms: u64,
    busy: &[&str],
) -> Option<Action> {
    let r = rng.range(0, 100);
    let key = if (30..60).contains(&r) {
        free_key(rng, &keys.lin, busy)?
    } else {
        free_key(rng, &keys.mutex, busy)?
    };
    *counter += 1;
    let value = format!("c{client}-{counter}");
    let k = key.as_bytes().to_vec();
    let (req, kind, remote) = match r {
        0..=29 => (
            Request::Lock {
                key: k,
                value: value.clone().into_bytes(),
                lease: ms(rng.range(300, 1_500).min(max_lease_ms)),
                wait: ms(rng.range(0, 800)),
            },
            OpKind::Lock(value),
            false,
        ),
        30..=49 => (
            Request::Lock {
                key: k,
                value: value.clone().into_bytes(),
                lease: ms(max_lease_ms),
                wait: ms(300),
            },
            OpKind::Lock(value),
            false,
        ),
        50..=69 => (
            Request::Read {
                key: k,
                wait: ms(500),
            },
            OpKind::Read,
            false,
        ),
        70..=79 => (Request::DirtyRead { key: k }, OpKind::DirtyRead, true),
        80..=89 => (
            Request::WaitFor {
                key: k,
                timeout: ms(500),
            },
            OpKind::WaitFor,
            true,
        ),
        _ => (
            Request::WaitForRelease {
                key: k,
                timeout: ms(1_000),
            },
            OpKind::WaitForRelease,
            true,
        ),
    };
    Some(Action {
        req,
        kind,
        key,
        remote,
    })
}

/// What a holder does next.
pub enum HolderStep {
    /// Send this request.
    Send(Action),
    /// Write to the fenced resource with its token now.
    UseToken,
    /// Pause (a GC pause, say) past its deadline, then use the token anyway.
    PausePastDeadline,
}

/// Chooses a holder's next step.
/// Leases are capped at `max_lease_ms`.
pub fn choose_held(
    rng: &mut SimRng,
    h: &Holding,
    counter: &mut u64,
    pause: bool,
    max_lease_ms: u64,
) -> HolderStep {
    let k = h.key.as_bytes().to_vec();
    let v = h.value.clone().into_bytes();
    let r = rng.range(0, 100);
    if h.lin {
        *counter += 1;
        let nv = format!("{}u{}", h.value, counter);
        return HolderStep::Send(if r < 50 {
            Action {
                req: Request::Update {
                    key: k,
                    value: v,
                    new_value: nv.clone().into_bytes(),
                    wait: ms(300),
                },
                kind: OpKind::Update(h.value.clone(), nv),
                key: h.key.clone(),
                remote: false,
            }
        } else {
            release(h, k, v, r < 75)
        });
    }
    match r {
        0..=29 => HolderStep::UseToken,
        30..=64 => HolderStep::Send(Action {
            req: Request::Extend {
                key: k,
                value: v,
                lease: ms(rng.range(300, 1_500).min(max_lease_ms)),
                token: if r < 55 {
                    Some(locker_core::Token(h.token))
                } else {
                    None
                },
                wait: ms(300),
            },
            kind: OpKind::Extend(h.value.clone()),
            key: h.key.clone(),
            remote: false,
        }),
        65..=94 => HolderStep::Send(release(h, k, v, r < 85)),
        _ if pause => HolderStep::PausePastDeadline,
        _ => HolderStep::UseToken,
    }
}
