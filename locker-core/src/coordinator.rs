//! The coordinator's side: every operation a node runs on the masters'
//! behalf, attempt by attempt, until it succeeds, fails for good, or its
//! wait runs out.
//!
//! Two-phase operations (lock, and the value-only update, extend and
//! release) ask every master for a promise, commit with `w` grants and
//! succeed with `w` commit acknowledgements. A holder that presents its token
//! extends or releases in one round. Reads take one round and succeed when
//! `w` masters agree.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::config::NodeId;
use crate::message::{Ack, EntryState, Expect, Grant, Message, OpId, Refusal, Write};
use crate::node::Node;
use crate::request::{EntryView, Lease, OpError, Reply, Request, RequestId, Response, Token};
use crate::time::{micros, Time};

type Outcome = Result<Ack, Refusal>;
type Votes = Vec<(NodeId, Outcome)>;

pub(crate) enum OpKind {
    Lock {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Duration,
    },
    Update {
        key: Vec<u8>,
        value: Vec<u8>,
        new_value: Vec<u8>,
    },
    Extend {
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Duration,
        token: Option<Token>,
    },
    Release {
        key: Vec<u8>,
        value: Vec<u8>,
        token: Option<Token>,
    },
    Read {
        key: Vec<u8>,
    },
}

impl OpKind {
    fn key(&self) -> &[u8] {
        match self {
            OpKind::Lock { key, .. }
            | OpKind::Update { key, .. }
            | OpKind::Extend { key, .. }
            | OpKind::Release { key, .. }
            | OpKind::Read { key } => key,
        }
    }

    /// The first message of an attempt, in the coordinator's membership
    /// `epoch`; a lock that may still wait asks to `watch` a held key.
    fn opening(&self, op: OpId, epoch: u64, watch: bool) -> Message {
        let key = self.key().to_vec();
        let prepare = |expect| Message::Prepare {
            op,
            epoch,
            key: key.clone(),
            expect,
            watch,
        };
        match self {
            OpKind::Lock { .. } => prepare(Expect::Absent),
            OpKind::Update { value, .. }
            | OpKind::Release {
                value, token: None, ..
            } => prepare(Expect::Value(value.clone())),
            OpKind::Extend {
                value, token: None, ..
            } => prepare(Expect::ValueOrMissing(value.clone())),
            OpKind::Extend {
                value,
                token: Some(token),
                lease,
                ..
            } => Message::ExtendHeld {
                op,
                epoch,
                key,
                value: value.clone(),
                token: *token,
                lease: *lease,
            },
            OpKind::Release {
                value,
                token: Some(token),
                ..
            } => Message::ReleaseHeld {
                op,
                epoch,
                key,
                value: value.clone(),
                token: *token,
            },
            OpKind::Read { .. } => Message::Read { op, epoch, key },
        }
    }

    fn is_two_phase(&self) -> bool {
        matches!(
            self,
            OpKind::Lock { .. }
                | OpKind::Update { .. }
                | OpKind::Extend { token: None, .. }
                | OpKind::Release { token: None, .. }
        )
    }

    /// The write to commit with these grants, and the token it carries.
    fn write(&self, grants: &[&Grant]) -> Result<(Write, Token), OpError> {
        let entry = grants
            .iter()
            .filter_map(|g| g.entry.as_ref())
            .max_by_key(|e| (e.token, e.revision));
        match (self, entry) {
            (OpKind::Lock { value, lease, .. }, _) => {
                let highest = grants.iter().map(|g| g.highest).max().unwrap_or_default();
                let token = Token(highest.0.saturating_add(1));
                let write = Write::Create {
                    value: value.clone(),
                    lease: *lease,
                    token,
                };
                Ok((write, token))
            }
            (_, None) => Err(OpError::NotFound),
            (OpKind::Update { new_value, .. }, Some(e)) => Ok((
                Write::SetValue {
                    value: new_value.clone(),
                    revision: e.revision + 1,
                },
                e.token,
            )),
            (OpKind::Extend { value, lease, .. }, Some(e)) => Ok((
                Write::Extend {
                    value: value.clone(),
                    token: e.token,
                    revision: e.revision,
                    lease: *lease,
                },
                e.token,
            )),
            (OpKind::Release { .. }, Some(e)) => Ok((Write::Delete { token: e.token }, e.token)),
            (OpKind::Read { .. }, Some(_)) => unreachable!("reads are not two-phase"),
        }
    }
}

enum Phase {
    /// Waiting out a backoff before the next attempt.
    Backoff,
    /// Promises asked for at `started`.
    Prepare { started: Time, votes: Votes },
    /// `write` sent to the masters that granted.
    Commit {
        started: Time,
        token: Token,
        key: Vec<u8>,
        write: Write,
        granted: Vec<NodeId>,
        votes: Votes,
        resent: bool,
    },
    /// One round: a token holder's extend or release, or a read.
    Round { started: Time, votes: Votes },
}

pub(crate) struct Op {
    request: RequestId,
    kind: OpKind,
    /// When the request arrived here: a lease granted after a wait is
    /// counted from later than the holder's send (see [`Lease::waited`]).
    received: Time,
    deadline: Time,
    attempt: u32,
    phase: Phase,
    timer: Time,
    /// What went wrong last, answered if the wait runs out.
    failure: OpError,
    /// An earlier one-round attempt was applied by some masters.
    partly_applied: bool,
    /// Backing off because masters that answered `held` or `busy` (and
    /// watch the key for us), with those known to be in quarantine, are
    /// more than `n - w`: a [`Message::Freed`] ends the backoff.
    watching: bool,
}

#[derive(Default)]
pub(crate) struct Coordinator {
    /// Boxed: an `Op` is a few hundred bytes, and every reply takes it out
    /// and puts it back, which moved whole B-tree nodes of them.
    ops: BTreeMap<OpId, Box<Op>>,
    /// Finished attempts, kept for one rpc timeout so that a promise granted
    /// too late is released at once instead of blocking its key.
    retired: BTreeMap<OpId, Vec<u8>>,
    /// When each retired attempt may be forgotten, oldest first (every
    /// attempt is kept equally long). They need no timer of their own:
    /// remembering one a little longer only answers a late grant with an
    /// abort a little longer, so they are forgotten whenever the coordinator
    /// next runs.
    retired_until: VecDeque<(Time, OpId)>,
    timers: BTreeSet<(Time, OpId)>,
    /// Masters that said they are in quarantine, until when (on this clock).
    /// Attempts count them as refusing instead of asking them: a restarted
    /// master would refuse every attempt of its quarantine.
    recovering: BTreeMap<NodeId, Time>,
}

impl Coordinator {
    pub(crate) fn in_flight(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn next_timer(&self) -> Option<Time> {
        self.timers.first().map(|&(t, _)| t)
    }

    fn insert(&mut self, id: OpId, op: Op) {
        self.timers.insert((op.timer, id));
        self.ops.insert(id, Box::new(op));
    }

    fn take(&mut self, id: OpId) -> Option<Op> {
        let op = self.ops.remove(&id)?;
        self.timers.remove(&(op.timer, id));
        Some(*op)
    }

    fn retire(&mut self, id: OpId, key: Vec<u8>, until: Time) {
        self.retired_until.push_back((until, id));
        self.retired.insert(id, key);
    }

    fn forget_retired(&mut self, now: Time) {
        while let Some(&(until, id)) = self.retired_until.front() {
            if until > now {
                break;
            }
            self.retired_until.pop_front();
            self.retired.remove(&id);
        }
    }
}

impl Node {
    fn new_op_id(&mut self) -> OpId {
        OpId(self.rng.next_u64())
    }

    pub(crate) fn start_op(&mut self, now: Time, request: RequestId, req: Request) {
        let (kind, wait) = match req {
            Request::Lock {
                key,
                value,
                lease,
                wait,
            } => (OpKind::Lock { key, value, lease }, wait),
            Request::Update {
                key,
                value,
                new_value,
                wait,
            } => (
                OpKind::Update {
                    key,
                    value,
                    new_value,
                },
                wait,
            ),
            Request::Extend {
                key,
                value,
                lease,
                token,
                wait,
            } => (
                OpKind::Extend {
                    key,
                    value,
                    lease,
                    token,
                },
                wait,
            ),
            Request::Release {
                key,
                value,
                token,
                wait,
            } => (OpKind::Release { key, value, token }, wait),
            Request::Read { key, wait } => (OpKind::Read { key }, wait),
            _ => unreachable!("local requests are answered by the node"),
        };
        let op = Op {
            request,
            kind,
            received: now,
            deadline: now + wait,
            attempt: 0,
            phase: Phase::Backoff,
            timer: now,
            failure: OpError::NoQuorum,
            partly_applied: false,
            watching: false,
        };
        let id = self.new_op_id();
        self.begin_attempt(now, id, op);
    }

    fn begin_attempt(&mut self, now: Time, id: OpId, mut op: Op) {
        op.watching = false;
        let msg = op
            .kind
            .opening(id, self.membership.epoch, op.deadline > now);
        op.phase = if op.kind.is_two_phase() {
            Phase::Prepare {
                started: now,
                votes: Vec::new(),
            }
        } else {
            Phase::Round {
                started: now,
                votes: Vec::new(),
            }
        };
        op.timer = now + self.config.rpc_timeout;
        let mut skipped = false;
        for i in 0..self.config.masters.len() {
            let to = self.config.masters[i];
            match self.coordinator.recovering.get(&to) {
                Some(&until) if until > now => {
                    let refusal = Refusal::Recovering {
                        remaining: until - now,
                    };
                    if let Phase::Prepare { votes, .. } | Phase::Round { votes, .. } = &mut op.phase
                    {
                        votes.push((to, Err(refusal)));
                    }
                    skipped = true;
                }
                Some(_) => {
                    self.coordinator.recovering.remove(&to);
                    self.send(to, msg.clone());
                }
                None => self.send(to, msg.clone()),
            }
        }
        if skipped {
            self.evaluate(now, id, op);
        } else {
            self.coordinator.insert(id, op);
        }
    }

    pub(crate) fn on_reply(&mut self, now: Time, from: NodeId, id: OpId, outcome: Outcome) {
        if !self.config.masters.contains(&from) {
            return;
        }
        if outcome == Err(Refusal::NotMaster) {
            // Our list of masters is older than the cluster's.
            self.send(from, Message::MembershipQuery);
        }
        self.coordinator.forget_retired(now);
        if let Some(key) = self.coordinator.retired.get(&id) {
            if matches!(outcome, Ok(Ack::Granted(_))) {
                let key = key.clone();
                self.send(from, Message::Abort { op: id, key });
            }
            return;
        }
        if let Err(Refusal::Recovering { remaining }) = outcome {
            // Bounded by our own quarantine: a confused master cannot make
            // us skip it for longer than any quarantine lasts.
            let until = now + remaining.min(self.config.quarantine());
            self.coordinator.recovering.insert(from, until);
        }
        let Some(mut op) = self.coordinator.take(id) else {
            return;
        };
        let votes = match &mut op.phase {
            Phase::Prepare { votes, .. } | Phase::Round { votes, .. } => votes,
            Phase::Commit {
                votes,
                granted,
                key,
                write,
                token,
                ..
            } => {
                if !granted.contains(&from) {
                    // A promise granted after the commit was decided: commit
                    // there too, so that every reachable master stores the
                    // entry (a quorum read then finds it even with a master
                    // down). Not if that master has seen our new token or a
                    // higher one: its grant was not counted in choosing the
                    // token, and a later tenure of the key may have been
                    // granted there meanwhile (the prepare came late).
                    if let Ok(Ack::Granted(grant)) = &outcome {
                        if matches!(write, Write::Create { .. }) && grant.highest >= *token {
                            let key = key.clone();
                            self.coordinator.insert(id, op);
                            self.send(from, Message::Abort { op: id, key });
                            return;
                        }
                        granted.push(from);
                        let msg = Message::Commit {
                            op: id,
                            key: key.clone(),
                            write: write.clone(),
                        };
                        self.send(from, msg);
                    }
                    self.coordinator.insert(id, op);
                    return;
                }
                // A duplicated grant is no acknowledgement of the commit, and
                // a refusal other than NoPromise may answer a duplicated
                // prepare (which a master judges against the value the commit
                // already wrote): only Done and NoPromise surely answer the
                // commit. Anything else waits for the timer, and ends as
                // unconfirmed if no acknowledgement comes.
                if !matches!(outcome, Ok(Ack::Done) | Err(Refusal::NoPromise)) {
                    self.coordinator.insert(id, op);
                    return;
                }
                votes
            }
            Phase::Backoff => {
                self.coordinator.insert(id, op);
                return;
            }
        };
        if votes.iter().any(|(n, _)| *n == from) {
            self.coordinator.insert(id, op);
            return;
        }
        votes.push((from, outcome));
        self.evaluate(now, id, op);
    }

    /// Decides what an attempt does after a new vote.
    fn evaluate(&mut self, now: Time, id: OpId, op: Op) {
        let (n, w) = (self.config.masters.len(), self.config.w);
        match &op.phase {
            Phase::Prepare { votes, .. } => {
                let grants = votes.iter().filter(|(_, o)| o.is_ok()).count();
                if grants >= w {
                    self.commit(now, id, op);
                } else if votes.len() - grants > n - w {
                    self.fail_attempt(now, id, op);
                } else {
                    self.coordinator.insert(id, op);
                }
            }
            Phase::Commit {
                votes,
                granted,
                token,
                resent,
                ..
            } => {
                let acks = votes.iter().filter(|(_, o)| o.is_ok()).count();
                let refusals = votes.len() - acks;
                if acks >= w {
                    self.succeed(now, id, op);
                } else if granted.len() - refusals < w {
                    // Every master refused the first sending: nothing was
                    // written. A refusal of a resent commit proves nothing:
                    // the first may have been applied and then overwritten.
                    if acks == 0 && refusals == granted.len() && !*resent {
                        self.fail_attempt(now, id, op);
                    } else {
                        let token = Some(*token);
                        self.finish(now, id, op, Err(OpError::Unconfirmed { token }));
                    }
                } else {
                    self.coordinator.insert(id, op);
                }
            }
            Phase::Round { votes, .. } => {
                if let OpKind::Read { .. } = op.kind {
                    return self.evaluate_read(now, id, op);
                }
                let acks = votes.iter().filter(|(_, o)| o.is_ok()).count();
                // For a release, a master with no live entry is as good as
                // one that deleted it, once some master confirms the tenure.
                let gone = match op.kind {
                    OpKind::Release { .. } if acks > 0 => votes
                        .iter()
                        .filter(|(_, o)| *o == Err(Refusal::Missing))
                        .count(),
                    _ => 0,
                };
                if acks + gone >= w {
                    self.succeed(now, id, op);
                } else if votes.len() - acks - gone > n - w {
                    self.fail_attempt(now, id, op);
                } else {
                    self.coordinator.insert(id, op);
                }
            }
            Phase::Backoff => self.coordinator.insert(id, op),
        }
    }

    /// A read succeeds when `w` masters report the same state of the key:
    /// then that state is committed at a quorum, and any write that completed
    /// before the read began is among them.
    fn evaluate_read(&mut self, now: Time, id: OpId, op: Op) {
        let Phase::Round { votes, .. } = &op.phase else {
            unreachable!()
        };
        let states: Vec<Option<&EntryState>> = votes
            .iter()
            .filter_map(|(_, o)| match o {
                Ok(Ack::Read(state)) => Some(state.as_ref()),
                _ => None,
            })
            .collect();
        // The value too: a lock whose commit reached only a minority (its
        // answer unconfirmed) can leave an entry with the same token and
        // revision as the next tenure's, committed elsewhere.
        fn version<'a>(s: &Option<&'a EntryState>) -> Option<(Token, u64, &'a [u8])> {
            s.map(|e| (e.token, e.revision, &e.value[..]))
        }
        let agreed = states
            .iter()
            .find(|s| states.iter().filter(|t| version(t) == version(s)).count() >= self.config.w);
        if let Some(state) = agreed {
            let view = state.map(|e| EntryView {
                value: e.value.clone(),
                token: e.token,
                remaining: states
                    .iter()
                    .flatten()
                    .filter(|t| (t.token, t.revision, &t.value) == (e.token, e.revision, &e.value))
                    .map(|t| t.remaining)
                    .min()
                    .unwrap_or(e.remaining),
            });
            return self.finish(now, id, op, Ok(Response::Value(view)));
        }
        if votes.len() == self.config.masters.len() {
            self.fail_attempt(now, id, op);
        } else {
            self.coordinator.insert(id, op);
        }
    }

    fn commit(&mut self, now: Time, id: OpId, mut op: Op) {
        let Phase::Prepare { started, votes } = &op.phase else {
            unreachable!()
        };
        let grants: Vec<&Grant> = votes
            .iter()
            .filter_map(|(_, o)| match o {
                Ok(Ack::Granted(g)) => Some(g),
                _ => None,
            })
            .collect();
        let granted: Vec<NodeId> = votes
            .iter()
            .filter(|(_, o)| o.is_ok())
            .map(|(n, _)| *n)
            .collect();
        let (write, token) = match op.kind.write(&grants) {
            Ok(x) => x,
            Err(e) => {
                self.abort_promises(id, &op);
                return self.finish(now, id, op, Err(e));
            }
        };
        let key = op.kind.key().to_vec();
        for &to in &granted {
            let msg = Message::Commit {
                op: id,
                key: key.clone(),
                write: write.clone(),
            };
            self.send(to, msg);
        }
        op.phase = Phase::Commit {
            started: *started,
            token,
            key,
            write,
            granted,
            votes: Vec::new(),
            resent: false,
        };
        op.timer = now + self.config.rpc_timeout;
        self.coordinator.insert(id, op);
    }

    fn succeed(&mut self, now: Time, id: OpId, op: Op) {
        let (started, token) = match &op.phase {
            Phase::Commit { started, token, .. } => (*started, Some(*token)),
            Phase::Round { started, .. } => (*started, None),
            _ => unreachable!("only commits and rounds succeed"),
        };
        let drift = self.config.drift();
        // Time spent here before the successful attempt, as a holder's clock
        // is sure to have measured it too (see `Lease::waited`).
        let waited = drift.shrink(started.saturating_since(op.received));
        let lease = |lease: Duration, token: Token| {
            let validity = drift.shrink(lease);
            Lease {
                token,
                validity,
                waited,
                valid_until: started + validity,
            }
        };
        let response = match &op.kind {
            OpKind::Lock { lease: l, .. } => Response::Locked(lease(*l, token.unwrap_or_default())),
            OpKind::Extend {
                lease: l, token: t, ..
            } => Response::Extended(lease(*l, t.or(token).unwrap_or_default())),
            OpKind::Update { .. } => Response::Updated {
                token: token.unwrap_or_default(),
            },
            OpKind::Release { .. } => Response::Released,
            OpKind::Read { .. } => unreachable!("reads finish in evaluate_read"),
        };
        self.finish(now, id, op, Ok(response));
    }

    /// Answers the request and retires the attempt.
    fn finish(&mut self, now: Time, id: OpId, op: Op, reply: Reply) {
        self.reply(op.request, reply);
        let until = now + self.config.rpc_timeout;
        self.coordinator.retire(id, op.kind.key().to_vec(), until);
    }

    fn abort_promises(&mut self, id: OpId, op: &Op) {
        if let Phase::Prepare { votes, .. } = &op.phase {
            let granted: Vec<NodeId> = votes
                .iter()
                .filter(|(_, o)| o.is_ok())
                .map(|(n, _)| *n)
                .collect();
            for to in granted {
                let key = op.kind.key().to_vec();
                self.send(to, Message::Abort { op: id, key });
            }
        }
    }

    /// Ends an attempt that cannot succeed: answers for good, or backs off
    /// and tries again while the wait allows.
    /// Whether this attempt or an earlier one of a one-round extend or
    /// release was applied somewhere: then no refusal can be answered as a
    /// clean failure (the refusals may be the effect of our own write).
    fn partly_applied(&self, op: &Op) -> bool {
        let acked = match &op.phase {
            Phase::Round { votes, .. } => votes.iter().any(|(_, o)| o.is_ok()),
            _ => false,
        };
        !matches!(op.kind, OpKind::Read { .. }) && (op.partly_applied || acked)
    }

    fn fail_attempt(&mut self, now: Time, id: OpId, mut op: Op) {
        self.abort_promises(id, &op);
        op.partly_applied = self.partly_applied(&op);
        let (error, definitive) = self.classify(&op);
        if definitive {
            return self.finish(now, id, op, Err(error));
        }
        let until = now + self.config.rpc_timeout;
        self.coordinator.retire(id, op.kind.key().to_vec(), until);
        let blocked = self.blocked_until_freed(now, &op);
        if let (Some(quarantine_end), true) = (blocked, op.deadline > now) {
            // No attempt can succeed before one of the masters that refused
            // frees the key, and each of them will say so: wait for that,
            // asking again now and then in case the news is lost.
            let poll = self.config.retry.held_poll;
            let poll = poll / 2 + Duration::from_micros(self.rng.up_to(micros(poll / 2)));
            // Masters busy with another operation on the key are, for a
            // lock, as good as `held`: another lock is being granted (the
            // loser of a race must hear `held`, as it did when it polled
            // until the winner committed), or the holder is updating.
            op.failure = OpError::Held;
            op.phase = Phase::Backoff;
            op.watching = true;
            op.timer = (now + poll).min(op.deadline);
            if let Some(end) = quarantine_end {
                op.timer = op.timer.min(end);
            }
            let next = self.new_op_id();
            self.coordinator.insert(next, op);
            return;
        }
        let backoff = self.backoff(op.attempt);
        if now + backoff > op.deadline {
            // An attempt that heard nothing says less than an earlier one
            // that was refused for a reason (a lock told `held`).
            let error = match error {
                OpError::NoQuorum => op.failure,
                other => other,
            };
            self.reply(op.request, Err(error));
            return;
        }
        // A master that never answered this attempt may have applied it:
        // whatever later attempts see, the outcome is no longer clean.
        if let (Phase::Round { votes, .. }, false) =
            (&op.phase, matches!(op.kind, OpKind::Read { .. }))
        {
            op.partly_applied |= votes.len() < self.config.masters.len();
        }
        op.failure = error;
        op.attempt = op.attempt.saturating_add(1);
        op.phase = Phase::Backoff;
        op.timer = now + backoff;
        let next = self.new_op_id();
        self.coordinator.insert(next, op);
    }

    /// Whether a lock attempt cannot succeed before one of the masters that
    /// refused it `Held` or `Busy` (each of which now watches the key for
    /// us) frees the key, or before a master in quarantine comes out of it:
    /// then it returns the end of the earliest such quarantine, if any.
    fn blocked_until_freed(&self, now: Time, op: &Op) -> Option<Option<Time>> {
        let Phase::Prepare { votes, .. } = &op.phase else {
            return None;
        };
        if !matches!(op.kind, OpKind::Lock { .. }) {
            return None;
        }
        let watching = votes
            .iter()
            .filter(|(_, o)| matches!(o, Err(Refusal::Held | Refusal::Busy)))
            .count();
        let recovering: Vec<Time> = votes
            .iter()
            .filter(|(_, o)| matches!(o, Err(Refusal::Recovering { .. })))
            .filter_map(|(n, _)| self.coordinator.recovering.get(n).copied())
            .filter(|&until| until > now)
            .collect();
        let blocked = watching + recovering.len() > self.config.masters.len() - self.config.w;
        (watching > 0 && blocked).then(|| recovering.into_iter().min())
    }

    /// A master that told a watching lock `held` or `busy` says the key is
    /// free there: the lock tries again after a short jitter (other nodes'
    /// waiting locks heard the same news).
    pub(crate) fn on_freed(&mut self, now: Time, from: NodeId, key: &[u8]) {
        if !self.config.masters.contains(&from) {
            return;
        }
        let woken: Vec<OpId> = self
            .coordinator
            .ops
            .iter()
            .filter(|(_, op)| op.watching && op.kind.key() == key)
            .map(|(&id, _)| id)
            .collect();
        for id in woken {
            let Some(mut op) = self.coordinator.take(id) else {
                continue;
            };
            op.watching = false;
            let jitter = Duration::from_micros(self.rng.up_to(micros(self.config.retry.initial)));
            op.timer = (now + jitter).min(op.deadline);
            self.coordinator.insert(id, op);
        }
    }

    /// Full jitter on a capped exponential.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let retry = self.config.retry;
        let cap = retry
            .initial
            .saturating_mul(1u32 << attempt.min(20))
            .min(retry.max);
        Duration::from_micros(self.rng.up_to(micros(cap)))
    }

    /// The error an attempt's refusals point to, and whether retrying could
    /// change it.
    fn classify(&self, op: &Op) -> (OpError, bool) {
        let votes: &[(NodeId, Outcome)] = match &op.phase {
            Phase::Prepare { votes, .. } | Phase::Round { votes, .. } => votes,
            Phase::Commit { .. } | Phase::Backoff => &[],
        };
        let count = |r: Refusal| votes.iter().filter(|(_, o)| *o == Err(r)).count();
        let (n, w) = (self.config.masters.len(), self.config.w);
        let superseded = count(Refusal::Superseded);
        let (held, mismatch, missing) = (
            count(Refusal::Held),
            count(Refusal::Mismatch) + superseded,
            count(Refusal::Missing),
        );
        let is_lock = matches!(op.kind, OpKind::Lock { .. });
        // Another coordinator may run with any majority `w` (a client-only
        // node keeps its configured `w` through a `set_w`), so a committed
        // entry is only known to be on a majority: refusals prove that the
        // key cannot be ours only when more than `n - majority` masters
        // refuse, whatever our own `w`.
        let blocked = mismatch + missing > n - w.min(n / 2 + 1);
        // A one-round release that some masters applied cannot be reported
        // as a clean failure: its effect is partly there, and the refusals
        // may be that effect. An extend keeps the entry and its token, so
        // its own effect never shows as a refusal: a blocking majority that
        // refuses it proves the lease is not held at a quorum, which is the
        // answer a holder must act on (the stray extended copy expires).
        // A later tenure where a released one was may follow this very
        // release, applied by a copy whose answer was lost (the key was
        // freed, then taken): that too is no clean failure.
        let freed_then_taken = superseded > 0 && matches!(op.kind, OpKind::Release { .. });
        let maybe_ours = self.partly_applied(op) || freed_then_taken;
        if maybe_ours && !(blocked && matches!(op.kind, OpKind::Extend { .. })) {
            let token = match op.kind {
                OpKind::Extend { token, .. } | OpKind::Release { token, .. } => token,
                _ => None,
            };
            return (OpError::Unconfirmed { token }, blocked);
        }
        // A lock waits for the holder to go; a holder's operation that a
        // quorum can never accept is answered at once.
        if !is_lock && blocked {
            let error = if mismatch >= missing {
                OpError::NotOwner
            } else {
                OpError::NotFound
            };
            return (error, true);
        }
        // A minority that disagrees (masters that missed a write) proves
        // nothing about the key: only a blocking majority above may answer
        // not_owner or not_found.
        let error = if held > 0 {
            OpError::Held
        } else if votes
            .iter()
            .any(|(_, o)| matches!(o, Err(Refusal::Recovering { .. })))
        {
            OpError::Recovering
        } else {
            OpError::NoQuorum
        };
        (error, false)
    }

    pub(crate) fn coordinator_timers(&mut self, now: Time) {
        self.coordinator.forget_retired(now);
        while let Some(&(t, id)) = self.coordinator.timers.first() {
            if t > now {
                break;
            }
            self.coordinator.timers.remove(&(t, id));
            let Some(op) = self.coordinator.ops.remove(&id) else {
                continue;
            };
            let mut op = *op;
            match &mut op.phase {
                // Nobody said the key was freed before the wait ran out.
                Phase::Backoff if op.watching && now >= op.deadline => {
                    self.reply(op.request, Err(op.failure));
                }
                Phase::Backoff => self.begin_attempt(now, id, op),
                Phase::Prepare { .. } | Phase::Round { .. } => self.fail_attempt(now, id, op),
                Phase::Commit {
                    resent,
                    granted,
                    votes,
                    key,
                    write,
                    token,
                    ..
                } => {
                    if *resent {
                        let token = Some(*token);
                        self.finish(now, id, op, Err(OpError::Unconfirmed { token }));
                        continue;
                    }
                    // One resend: a lost commit or acknowledgement is common,
                    // and masters acknowledge a commit they already applied.
                    *resent = true;
                    let silent: Vec<NodeId> = granted
                        .iter()
                        .filter(|g| !votes.iter().any(|(n, _)| n == *g))
                        .copied()
                        .collect();
                    let msg = Message::Commit {
                        op: id,
                        key: key.clone(),
                        write: write.clone(),
                    };
                    op.timer = now + self.config.rpc_timeout;
                    self.coordinator.insert(id, op);
                    for to in silent {
                        self.send(to, msg.clone());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::node::Output;

    fn client() -> Node {
        let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
        Node::new(Config::new(NodeId(9), masters, vec![]), Time::ZERO).unwrap()
    }

    fn drain(node: &mut Node) -> Vec<Output> {
        core::iter::from_fn(|| node.poll_output()).collect()
    }

    fn grant() -> Outcome {
        Ok(Ack::Granted(Grant {
            highest: Token(0),
            entry: None,
        }))
    }

    /// Found by the simulator (fencing, seed 180): a grant delivered twice
    /// arrived during the commit phase and was counted as a commit ack, so a
    /// lock succeeded with fewer than `w` masters storing it.
    #[test]
    fn a_duplicated_grant_is_not_a_commit_ack() {
        let mut node = client();
        let now = Time::from_millis(1);
        let lock = Request::Lock {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            lease: Duration::from_secs(10),
            wait: Duration::ZERO,
        };
        node.handle_request(now, RequestId(1), lock);
        let op = match &drain(&mut node)[0] {
            Output::Send {
                msg: Message::Prepare { op, .. },
                ..
            } => *op,
            other => panic!("expected a prepare, got {other:?}"),
        };
        node.handle_message(
            now,
            NodeId(1),
            Message::Reply {
                op,
                outcome: grant(),
            },
        );
        node.handle_message(
            now,
            NodeId(2),
            Message::Reply {
                op,
                outcome: grant(),
            },
        );
        let commits = drain(&mut node);
        assert!(commits.iter().all(|o| matches!(
            o,
            Output::Send {
                msg: Message::Commit { .. },
                ..
            }
        )));
        // The duplicate of master 1's grant, then master 2's real ack.
        node.handle_message(
            now,
            NodeId(1),
            Message::Reply {
                op,
                outcome: grant(),
            },
        );
        let done = Ok(Ack::Done);
        node.handle_message(
            now,
            NodeId(2),
            Message::Reply {
                op,
                outcome: done.clone(),
            },
        );
        assert!(
            drain(&mut node).is_empty(),
            "one ack must not complete a lock with w = 2"
        );
        node.handle_message(now, NodeId(1), Message::Reply { op, outcome: done });
        let replies = drain(&mut node);
        assert!(matches!(
            replies.as_slice(),
            [Output::Reply {
                reply: Ok(Response::Locked(_)),
                ..
            }]
        ));
    }
}
