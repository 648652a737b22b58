//! The checks behind every fuzz target, callable from the fuzz binaries and
//! from the workspace test `locker-core/tests/fuzz_corpus.rs` (which includes
//! this file with `#[path]`). Each `check_*` function takes the raw bytes of
//! one input and panics on a violated property.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use locker_core::wire::{decode_frame, encode_frame, DEFAULT_MAX_FRAME};
use locker_core::{
    Ack, AppliedMembership, Ballot, Config, EntryState, Expect, Grant, Members, Message, Node,
    NodeId, OpId, Output, Refusal, Replicated, Reply, Request, RequestId, Time, Token, Write,
};

// ---------------------------------------------------------------- allocator

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

/// A global allocator that records, per thread and only while armed, the
/// largest single allocation. Install it with
/// `#[global_allocator] static A: MaxAlloc = MaxAlloc;`.
pub struct MaxAlloc;

fn note(size: usize) {
    // `try_with`: the thread-locals are `const` and have no destructor, so
    // this neither allocates nor fails except during thread teardown.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: a `GlobalAlloc` impl is unsafe by definition. Every method forwards
// its arguments unchanged to `System`, which upholds the contract; the only
// addition is `note`, which touches two allocation-free thread-locals.
unsafe impl GlobalAlloc for MaxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from `System` through this allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `f` and returns its result with the largest single allocation it made
/// on this thread (0 when [`MaxAlloc`] is not the global allocator).
pub fn largest_allocation<R>(f: impl FnOnce() -> R) -> (R, usize) {
    LARGEST.with(|l| l.set(0));
    ARMED.with(|a| a.set(true));
    let r = f();
    ARMED.with(|a| a.set(false));
    (r, LARGEST.with(|l| l.get()))
}

// --------------------------------------------------------------- wire_decode

/// Frame limits the decoder is tried with; the first input byte picks one.
const FRAME_LIMITS: [usize; 3] = [DEFAULT_MAX_FRAME, 1 << 20, 256];

/// serde preallocates a sequence from its announced length, capped at 1 MiB
/// (`serde::__private::size_hint::cautious`). So a frame of a few bytes can
/// make the decoder allocate up to 1 MiB (found by this target: a
/// `Replicate` announcing many entries). Under the default 4 MiB frame limit
/// that stays below the limit; under a limit below 1 MiB it does not, and the
/// check allows the cap. See fuzz/README.md.
const SERDE_PREALLOC_CAP: usize = 1 << 20;

/// Allocations up to this size are allowed whatever the frame limit: error
/// messages (`WireError::Garbage`) and small fixed buffers, independent of any
/// length the input announces.
const ALLOC_SLACK: usize = 1024;

/// `wire_decode`: arbitrary bytes into `decode_frame` for every wire type.
///
/// - never a panic;
/// - no allocation larger than the frame limit (or [`ALLOC_SLACK`]) while decoding;
/// - an announced length above the limit is refused;
/// - whatever decodes re-encodes to bytes that decode to the same value
///   (values, not bytes, are compared: postcard accepts some non-canonical
///   encodings, e.g. `Duration` nanoseconds >= 1e9 are normalised).
pub fn check_wire_decode(data: &[u8]) {
    let Some((&pick, buf)) = data.split_first() else {
        return;
    };
    let max = FRAME_LIMITS[pick as usize % FRAME_LIMITS.len()];
    roundtrip::<Message>(buf, max);
    roundtrip::<Request>(buf, max);
    roundtrip::<Reply>(buf, max);
}

fn roundtrip<T>(buf: &[u8], max: usize)
where
    T: serde_like::Wire,
{
    let (result, largest) = largest_allocation(|| decode_frame::<T>(buf, max));
    assert!(
        largest <= max.max(ALLOC_SLACK).max(SERDE_PREALLOC_CAP),
        "decoding {} allocated {largest} bytes, above the frame limit {max}",
        std::any::type_name::<T>()
    );
    if buf.len() >= 4 {
        let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > max {
            assert!(
                matches!(result, Err(locker_core::wire::WireError::Oversize { .. })),
                "an oversize frame was not refused"
            );
        }
    }
    if let Ok(Some((value, used))) = result {
        assert!(used <= buf.len() && used <= max + 4, "used {used} bytes");
        let mut again = Vec::new();
        encode_frame(&value, &mut again).expect("a decoded value re-encodes");
        let (back, used2) = decode_frame::<T>(&again, usize::MAX)
            .expect("the re-encoding decodes")
            .expect("the re-encoding is a whole frame");
        assert_eq!(used2, again.len());
        assert_eq!(back, value, "re-encoding changed the value");
    }
}

mod serde_like {
    /// The bounds every wire type satisfies.
    pub trait Wire:
        serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug
    {
    }
    impl<T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + core::fmt::Debug> Wire for T {}
}

// --------------------------------------------------------------- node_inputs

/// The cluster every `node_inputs` run lives in: masters 1..=3, replica 4,
/// client-only node 5. Node 6 is a stranger that may still send messages.
const MASTERS: [u64; 3] = [1, 2, 3];
const REPLICAS: [u64; 1] = [4];
const CLIENT: u64 = 5;
const STRANGER: u64 = 6;
/// Steps per input; longer inputs are cut here to keep each run short.
const MAX_STEPS: usize = 200;

/// A key: one of three small keys, or arbitrary bytes (empty, over-long).
#[derive(Arbitrary, Debug, Clone)]
pub enum KeyIn {
    /// One of `a`, `b`, `c`.
    Small(u8),
    /// Any bytes.
    Raw(Vec<u8>),
}

impl KeyIn {
    fn bytes(&self) -> Vec<u8> {
        match self {
            KeyIn::Small(i) => vec![b'a' + i % 3],
            KeyIn::Raw(b) => b.clone(),
        }
    }
}

/// A value: one of two holders, or arbitrary bytes.
#[derive(Arbitrary, Debug, Clone)]
pub enum ValueIn {
    /// `alice` or `bob`.
    Small(bool),
    /// Any bytes.
    Raw(Vec<u8>),
}

impl ValueIn {
    fn bytes(&self) -> Vec<u8> {
        match self {
            ValueIn::Small(false) => b"alice".to_vec(),
            ValueIn::Small(true) => b"bob".to_vec(),
            ValueIn::Raw(b) => b.clone(),
        }
    }
}

/// An operation id: mostly one the node itself sent, so replies match.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum OpIn {
    /// The n-th (modulo) operation id seen in the node's sends.
    Seen(u8),
    /// Any id.
    Raw(u64),
}

/// A duration in milliseconds; `Huge` probes the saturating arithmetic.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum DurIn {
    /// Milliseconds.
    Millis(u16),
    /// Seconds and nanoseconds, unchecked.
    Huge(u64),
}

impl DurIn {
    fn get(self) -> Duration {
        match self {
            DurIn::Millis(ms) => Duration::from_millis(ms as u64),
            DurIn::Huge(s) => Duration::from_secs(s),
        }
    }
}

/// A master's view of an entry.
#[derive(Arbitrary, Debug, Clone)]
pub struct EntryIn {
    value: ValueIn,
    token: u64,
    revision: u8,
    remaining: DurIn,
}

impl EntryIn {
    fn get(&self) -> EntryState {
        EntryState {
            value: self.value.bytes(),
            token: Token(self.token),
            revision: self.revision as u64,
            remaining: self.remaining.get(),
        }
    }
}

/// `Expect`, `Write`, `Ack`, `Refusal` built from small parts.
#[derive(Arbitrary, Debug, Clone)]
pub enum ExpectIn {
    /// `Expect::Absent`.
    Absent,
    /// `Expect::Value`.
    Value(ValueIn),
    /// `Expect::ValueOrMissing`.
    ValueOrMissing(ValueIn),
}

/// A write under a promise.
#[derive(Arbitrary, Debug, Clone)]
pub enum WriteIn {
    /// `Write::Create`.
    Create(ValueIn, DurIn, u64),
    /// `Write::SetValue`.
    SetValue(ValueIn, u8),
    /// `Write::Extend`.
    Extend(ValueIn, u64, u8, DurIn),
    /// `Write::Delete`.
    Delete(u64),
}

/// A master's answer.
#[derive(Arbitrary, Debug, Clone)]
pub enum OutcomeIn {
    /// `Ack::Granted`.
    Granted(u64, Option<EntryIn>),
    /// `Ack::Done`.
    Done,
    /// `Ack::Read`.
    Read(Option<EntryIn>),
    /// A refusal, by index.
    Refused(u8),
}

/// A change a master accepted: ballot round and node, masters, replicas, w.
pub type AcceptedIn = (u8, u8, Vec<u8>, Vec<u8>, u8);

/// A message from a peer.
#[derive(Arbitrary, Debug, Clone)]
pub enum MsgIn {
    /// `Message::Prepare`, with an epoch near the node's.
    Prepare(OpIn, u8, KeyIn, ExpectIn, bool),
    /// `Message::Commit`.
    Commit(OpIn, KeyIn, WriteIn),
    /// `Message::Abort`.
    Abort(OpIn, KeyIn),
    /// `Message::ExtendHeld`.
    ExtendHeld(OpIn, u8, KeyIn, ValueIn, u64, DurIn),
    /// `Message::ReleaseHeld`.
    ReleaseHeld(OpIn, u8, KeyIn, ValueIn, u64),
    /// `Message::Read`.
    Read(OpIn, u8, KeyIn),
    /// `Message::Reply`.
    Reply(OpIn, OutcomeIn),
    /// `Message::Replicate`: stream and seq from small ranges, so that
    /// in-order, late and gap batches all occur.
    Replicate(u8, u8, bool, Vec<(KeyIn, EntryIn, bool)>),
    /// `Message::ReplicateMark`.
    ReplicateMark(u8, u8, u8),
    /// `Message::SyncRequest`.
    SyncRequest,
    /// `Message::MembershipPrepare`: epoch near the node's, ballot.
    MembershipPrepare(u8, u8, u8),
    /// `Message::MembershipPromise`.
    MembershipPromise(u8, u8, u8, Option<AcceptedIn>),
    /// `Message::MembershipAccept`.
    MembershipAccept(u8, u8, u8, Vec<u8>, Vec<u8>, u8),
    /// `Message::MembershipAccepted`.
    MembershipAccepted(u8, u8, u8),
    /// `Message::MembershipNack`.
    MembershipNack(u8, u8, u8),
    /// `Message::MembershipAck`.
    MembershipAck(u8),
    /// `Message::MembershipQuery`.
    MembershipQuery,
    /// `Message::MembershipState`.
    MembershipState(u8, u8, Vec<u8>, Vec<u8>, u8),
    /// `Message::Freed`.
    Freed(KeyIn),
}

/// A client request.
#[derive(Arbitrary, Debug, Clone)]
pub enum ReqIn {
    /// `Request::Lock`.
    Lock(KeyIn, ValueIn, DurIn, DurIn),
    /// `Request::Update`.
    Update(KeyIn, ValueIn, ValueIn, DurIn),
    /// `Request::Extend`.
    Extend(KeyIn, ValueIn, DurIn, Option<u64>, DurIn),
    /// `Request::Release`.
    Release(KeyIn, ValueIn, Option<u64>, DurIn),
    /// `Request::DirtyRead`.
    DirtyRead(KeyIn),
    /// `Request::Read`.
    Read(KeyIn, DurIn),
    /// `Request::WaitFor`.
    WaitFor(KeyIn, DurIn),
    /// `Request::WaitForRelease`.
    WaitForRelease(KeyIn, DurIn),
    /// `Request::SetNodes`.
    SetNodes(Vec<u8>, Vec<u8>),
    /// `Request::SetW`.
    SetW(u8),
    /// `Request::Summary`.
    Summary,
}

/// One input to the node.
#[derive(Arbitrary, Debug, Clone)]
pub enum Step {
    /// A message from node `1 + from % 6`.
    Message(u8, MsgIn),
    /// A client request, with a fresh request id.
    Request(ReqIn),
    /// `handle_timeout` after this many microseconds.
    Tick(u32),
    /// `handle_timeout` at the node's own `poll_timeout`.
    Wake,
    /// Time passes with no input.
    Wait(u32),
}

/// A whole `node_inputs` case: which node, then its inputs.
#[derive(Arbitrary, Debug, Clone)]
pub struct NodeScript {
    /// Picks master 1, replica 4 or client-only node 5.
    pub who: u8,
    /// The inputs, in order.
    pub steps: Vec<Step>,
}

fn node_list(ids: &[u8]) -> Vec<NodeId> {
    ids.iter().map(|&i| NodeId(1 + (i % 7) as u64)).collect()
}

fn op(sel: OpIn, seen: &[OpId]) -> OpId {
    match sel {
        OpIn::Seen(i) if !seen.is_empty() => seen[i as usize % seen.len()],
        OpIn::Seen(i) => OpId(i as u64),
        OpIn::Raw(x) => OpId(x),
    }
}

/// An epoch near the node's own `current`: mostly its own (so that votes
/// happen), sometimes the next one or an older one.
fn epoch_near(current: u64, d: u8) -> u64 {
    match d % 4 {
        0 | 1 => current,
        2 => current + 1,
        _ => current.saturating_sub(1),
    }
}

fn ballot(round: u8, node: u8) -> Ballot {
    Ballot {
        round: round as u64 % 8,
        node: NodeId(1 + (node % STRANGER as u8) as u64),
    }
}

fn members(m: &[u8], r: &[u8], w: u8) -> Members {
    Members {
        masters: node_list(m),
        replicas: node_list(r),
        w: w as usize,
    }
}

fn message(m: &MsgIn, seen: &[OpId], current: u64) -> Message {
    match m {
        MsgIn::Prepare(o, d, k, e, watch) => Message::Prepare {
            watch: *watch,
            op: op(*o, seen),
            epoch: epoch_near(current, *d),
            key: k.bytes(),
            expect: match e {
                ExpectIn::Absent => Expect::Absent,
                ExpectIn::Value(v) => Expect::Value(v.bytes()),
                ExpectIn::ValueOrMissing(v) => Expect::ValueOrMissing(v.bytes()),
            },
        },
        MsgIn::Commit(o, k, w) => Message::Commit {
            op: op(*o, seen),
            key: k.bytes(),
            write: match w {
                WriteIn::Create(v, l, t) => Write::Create {
                    value: v.bytes(),
                    lease: l.get(),
                    token: Token(*t),
                },
                WriteIn::SetValue(v, r) => Write::SetValue {
                    value: v.bytes(),
                    revision: *r as u64,
                },
                WriteIn::Extend(v, t, r, l) => Write::Extend {
                    value: v.bytes(),
                    token: Token(*t),
                    revision: *r as u64,
                    lease: l.get(),
                },
                WriteIn::Delete(t) => Write::Delete { token: Token(*t) },
            },
        },
        MsgIn::Abort(o, k) => Message::Abort {
            op: op(*o, seen),
            key: k.bytes(),
        },
        MsgIn::ExtendHeld(o, d, k, v, t, l) => Message::ExtendHeld {
            op: op(*o, seen),
            epoch: epoch_near(current, *d),
            key: k.bytes(),
            value: v.bytes(),
            token: Token(*t),
            lease: l.get(),
        },
        MsgIn::ReleaseHeld(o, d, k, v, t) => Message::ReleaseHeld {
            op: op(*o, seen),
            epoch: epoch_near(current, *d),
            key: k.bytes(),
            value: v.bytes(),
            token: Token(*t),
        },
        MsgIn::Read(o, d, k) => Message::Read {
            op: op(*o, seen),
            epoch: epoch_near(current, *d),
            key: k.bytes(),
        },
        MsgIn::Reply(o, out) => Message::Reply {
            op: op(*o, seen),
            outcome: match out {
                OutcomeIn::Granted(h, e) => Ok(Ack::Granted(Grant {
                    highest: Token(*h),
                    entry: e.as_ref().map(EntryIn::get),
                })),
                OutcomeIn::Done => Ok(Ack::Done),
                OutcomeIn::Read(e) => Ok(Ack::Read(e.as_ref().map(EntryIn::get))),
                OutcomeIn::Refused(r) => Err(REFUSALS[*r as usize % REFUSALS.len()]),
            },
        },
        MsgIn::Replicate(stream, seq, snapshot, es) => Message::Replicate {
            stream: *stream as u64 % 3,
            seq: *seq as u64,
            snapshot: *snapshot,
            entries: es
                .iter()
                .map(|(k, e, d)| Replicated {
                    key: k.bytes(),
                    state: e.get(),
                    deleted: *d,
                })
                .collect(),
        },
        MsgIn::ReplicateMark(stream, sent, d) => Message::ReplicateMark {
            stream: *stream as u64 % 3,
            sent: *sent as u64,
            epoch: epoch_near(current, *d),
        },
        MsgIn::SyncRequest => Message::SyncRequest,
        MsgIn::MembershipPrepare(d, round, node) => Message::MembershipPrepare {
            epoch: epoch_near(current, *d),
            ballot: ballot(*round, *node),
        },
        MsgIn::MembershipPromise(d, round, node, accepted) => Message::MembershipPromise {
            epoch: epoch_near(current, *d),
            ballot: ballot(*round, *node),
            accepted: accepted
                .as_ref()
                .map(|(round, node, m, r, w)| (ballot(*round, *node), members(m, r, *w))),
        },
        MsgIn::MembershipAccept(d, round, node, m, r, w) => Message::MembershipAccept {
            epoch: epoch_near(current, *d),
            ballot: ballot(*round, *node),
            members: members(m, r, *w),
        },
        MsgIn::MembershipAccepted(d, round, node) => Message::MembershipAccepted {
            epoch: epoch_near(current, *d),
            ballot: ballot(*round, *node),
            highest: Token(*round as u64 * 16),
        },
        MsgIn::MembershipNack(d, round, node) => Message::MembershipNack {
            epoch: epoch_near(current, *d),
            promised: ballot(*round, *node),
        },
        MsgIn::MembershipAck(epoch) => Message::MembershipAck {
            epoch: *epoch as u64,
        },
        MsgIn::MembershipQuery => Message::MembershipQuery,
        MsgIn::Freed(k) => Message::Freed { key: k.bytes() },
        MsgIn::MembershipState(epoch, origin, m, r, w) => {
            Message::MembershipState(Box::new(AppliedMembership {
                epoch: *epoch as u64,
                origin: NodeId(1 + (*origin % STRANGER as u8) as u64),
                masters: node_list(m),
                replicas: node_list(r),
                w: *w as usize,
                highest: Token(*epoch as u64 * 16),
                promised: Ballot::default(),
                accepted: None,
            }))
        }
    }
}

const REFUSALS: [Refusal; 10] = [
    Refusal::Held,
    Refusal::Mismatch,
    Refusal::Missing,
    Refusal::Busy,
    Refusal::OtherEpoch,
    Refusal::Recovering {
        remaining: Duration::from_millis(1500),
    },
    Refusal::NoPromise,
    Refusal::NotMaster,
    Refusal::Invalid,
    Refusal::Superseded,
];

fn request(r: &ReqIn) -> Request {
    match r {
        ReqIn::Lock(k, v, l, w) => Request::Lock {
            key: k.bytes(),
            value: v.bytes(),
            lease: l.get(),
            wait: w.get(),
        },
        ReqIn::Update(k, v, n, w) => Request::Update {
            key: k.bytes(),
            value: v.bytes(),
            new_value: n.bytes(),
            wait: w.get(),
        },
        ReqIn::Extend(k, v, l, t, w) => Request::Extend {
            key: k.bytes(),
            value: v.bytes(),
            lease: l.get(),
            token: t.map(Token),
            wait: w.get(),
        },
        ReqIn::Release(k, v, t, w) => Request::Release {
            key: k.bytes(),
            value: v.bytes(),
            token: t.map(Token),
            wait: w.get(),
        },
        ReqIn::DirtyRead(k) => Request::DirtyRead { key: k.bytes() },
        ReqIn::Read(k, w) => Request::Read {
            key: k.bytes(),
            wait: w.get(),
        },
        ReqIn::WaitFor(k, t) => Request::WaitFor {
            key: k.bytes(),
            timeout: t.get(),
        },
        ReqIn::WaitForRelease(k, t) => Request::WaitForRelease {
            key: k.bytes(),
            timeout: t.get(),
        },
        ReqIn::SetNodes(m, r) => Request::SetNodes {
            masters: node_list(m),
            replicas: node_list(r),
        },
        ReqIn::SetW(w) => Request::SetW { w: *w as usize },
        ReqIn::Summary => Request::Summary,
    }
}

/// What the checker remembers about one node's run.
struct Watch {
    me: NodeId,
    known: HashSet<NodeId>,
    submitted: BTreeSet<u64>,
    answered: BTreeSet<u64>,
    seen_ops: Vec<OpId>,
    highest: Token,
    ceiling: Token,
}

impl Watch {
    fn drain(&mut self, node: &mut Node, step: usize) {
        while let Some(out) = node.poll_output() {
            match out {
                Output::Send { to, msg } => {
                    assert!(
                        self.known.contains(&to),
                        "step {step}: send to unknown node {to:?}: {msg:?}"
                    );
                    if let Message::Prepare { op, .. }
                    | Message::Commit { op, .. }
                    | Message::Abort { op, .. }
                    | Message::ExtendHeld { op, .. }
                    | Message::ReleaseHeld { op, .. }
                    | Message::Read { op, .. } = msg
                    {
                        if self.seen_ops.len() < 64 && !self.seen_ops.contains(&op) {
                            self.seen_ops.push(op);
                        }
                    }
                }
                Output::Reply { id, .. } => {
                    assert!(
                        self.submitted.contains(&id.0),
                        "step {step}: reply to request {id:?} that was never made"
                    );
                    assert!(
                        self.answered.insert(id.0),
                        "step {step}: request {id:?} answered twice"
                    );
                }
                Output::PersistTokenCeiling(t) => {
                    assert!(
                        t >= self.ceiling,
                        "step {step}: token ceiling went back from {:?} to {t:?}",
                        self.ceiling
                    );
                    self.ceiling = t;
                }
                Output::PersistMembership(_) => {}
            }
        }
        let h = node.highest_token();
        assert!(
            h >= self.highest,
            "step {step}: highest token went back from {:?} to {h:?}",
            self.highest
        );
        self.highest = h;
        let _ = self.me;
    }
}

/// `node_inputs`: an arbitrary script of inputs into one node.
pub fn check_node_inputs(data: &[u8]) {
    let u = Unstructured::new(data);
    let Ok(script) = NodeScript::arbitrary_take_rest(u) else {
        return;
    };
    run_node_script(&script);
}

/// Runs `script` and checks every property after every step.
pub fn run_node_script(script: &NodeScript) {
    let me = NodeId(match script.who % 3 {
        0 => 1,
        1 => REPLICAS[0],
        _ => CLIENT,
    });
    let masters: Vec<NodeId> = MASTERS.iter().map(|&i| NodeId(i)).collect();
    let replicas: Vec<NodeId> = REPLICAS.iter().map(|&i| NodeId(i)).collect();
    let mut node = Node::new(
        Config::new(me, masters.clone(), replicas.clone()),
        Time::ZERO,
    )
    .expect("the fuzz cluster's config is valid");
    let mut known: HashSet<NodeId> = masters.iter().chain(&replicas).copied().collect();
    known.insert(me);
    known.insert(NodeId(CLIENT));
    let mut w = Watch {
        me,
        known,
        submitted: BTreeSet::new(),
        answered: BTreeSet::new(),
        seen_ops: Vec::new(),
        highest: node.highest_token(),
        ceiling: Token(0),
    };
    w.drain(&mut node, 0);
    let mut now = Time::ZERO;
    let mut next_id = 1u64;
    for (i, step) in script.steps.iter().take(MAX_STEPS).enumerate() {
        match step {
            Step::Message(from, m) => {
                let from = NodeId(1 + (*from % STRANGER as u8) as u64);
                w.known.insert(from);
                let msg = message(m, &w.seen_ops, node.membership_epoch());
                let named = match &msg {
                    Message::MembershipAccept { members, .. } => {
                        Some((&members.masters, &members.replicas))
                    }
                    Message::MembershipState(state) => Some((&state.masters, &state.replicas)),
                    _ => None,
                };
                if let Some((masters, replicas)) = named {
                    w.known.extend(masters.iter().chain(replicas).copied());
                }
                node.handle_message(now, from, msg);
            }
            Step::Request(r) => {
                let req = request(r);
                if let Request::SetNodes { masters, replicas } = &req {
                    w.known.extend(masters.iter().chain(replicas).copied());
                }
                w.submitted.insert(next_id);
                node.handle_request(now, RequestId(next_id), req);
                next_id += 1;
            }
            Step::Tick(us) => {
                now = now + Duration::from_micros(*us as u64);
                node.handle_timeout(now);
                w.drain(&mut node, i);
                if let Err(e) = node.check_invariants(now) {
                    panic!("step {i}: after handle_timeout({now:?}): {e}");
                }
            }
            Step::Wake => {
                if let Some(t) = node.poll_timeout() {
                    if t != Time::MAX {
                        now = now.max(t);
                    }
                }
                node.handle_timeout(now);
                w.drain(&mut node, i);
                if let Err(e) = node.check_invariants(now) {
                    panic!("step {i}: after handle_timeout({now:?}): {e}");
                }
            }
            Step::Wait(us) => now = now + Duration::from_micros(*us as u64),
        }
        w.drain(&mut node, i);
        let s = node.summary(now);
        assert!(s.highest_token >= Token(0));
    }
}
