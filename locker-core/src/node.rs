//! The node: one state machine that is at once a voter (if a master), a store
//! (if a master or replica) and a coordinator (always).

use std::collections::VecDeque;

use thiserror::Error;

use crate::config::{Config, ConfigError, NodeId, Role};
use crate::coordinator::Coordinator;
use crate::membership::{AppliedMembership, Membership};
use crate::message::Message;
use crate::promise::Promises;
use crate::replication::Replication;
use crate::request::{
    EntryView, InvalidRequest, OpError, Reply, Request, RequestId, Response, Summary, Token,
};
use crate::rng::Rng;
use crate::store::Store;
use crate::time::Time;
use crate::waiters::Waiters;

/// Something the host must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    /// Deliver `msg` to node `to`. Delivery may fail; the protocol copes.
    Send {
        /// Destination.
        to: NodeId,
        /// The message.
        msg: Message,
    },
    /// Answer request `id`.
    Reply {
        /// The request answered.
        id: RequestId,
        /// The answer.
        reply: Reply,
    },
    /// Persist this token ceiling durably *before* performing any output that
    /// follows it, and pass it to [`Node::restarted`] after a crash: it keeps
    /// fencing tokens monotonic across restarts.
    PersistTokenCeiling(Token),
    /// Persist this membership durably *before* performing any output that
    /// follows it, and pass it to [`Node::restarted_with`] after a crash: a
    /// node that forgot a `set_nodes` could vote as a master it no longer is.
    PersistMembership(Box<AppliedMembership>),
}

/// A broken internal invariant, reported by [`Node::check_invariants`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invariant violated: {0}")]
pub struct InvariantViolation(pub String);

/// One member of a locker cluster, as a deterministic state machine.
///
/// Methods come in four kinds:
///
/// - getters: [`id`](Node::id), [`role`](Node::role),
///   [`summary`](Node::summary), [`dirty_entries`](Node::dirty_entries),
///   [`is_recovering`](Node::is_recovering);
/// - inputs: [`handle_message`](Node::handle_message),
///   [`handle_request`](Node::handle_request),
///   [`handle_timeout`](Node::handle_timeout);
/// - outputs: [`poll_output`](Node::poll_output) (drain it after every
///   input, performing outputs in order) and
///   [`poll_timeout`](Node::poll_timeout) (when to call `handle_timeout`).
///
/// `now` must never go backwards between calls on one node.
pub struct Node {
    pub(crate) config: Config,
    pub(crate) role: Role,
    pub(crate) rng: Rng,
    pub(crate) store: Store,
    pub(crate) promises: Promises,
    /// Highest token seen; never decreases.
    pub(crate) highest: Token,
    /// Highest token the host has been asked to persist.
    pub(crate) ceiling: Token,
    pub(crate) recovering_until: Option<Time>,
    pub(crate) coordinator: Coordinator,
    pub(crate) waiters: Waiters,
    pub(crate) replication: Replication,
    pub(crate) membership: Membership,
    outputs: VecDeque<Output>,
    /// Messages this node sends to itself (a master coordinating), handled
    /// before the input call returns.
    local: VecDeque<Message>,
    pub(crate) last_now: Time,
}

impl Node {
    /// A node starting with no history (a new cluster, or a host that knows
    /// this node never voted before).
    pub fn new(config: Config, now: Time) -> Result<Node, ConfigError> {
        config.validate()?;
        let mut node = Node {
            role: config.role(),
            rng: Rng::new(config.seed),
            store: Store::new(config.seed),
            promises: Promises::default(),
            highest: Token(0),
            ceiling: Token(0),
            recovering_until: None,
            coordinator: Coordinator::default(),
            waiters: Waiters::default(),
            replication: Replication::new(config.seed, now),
            membership: Membership::default(),
            outputs: VecDeque::new(),
            local: VecDeque::new(),
            last_now: now,
            config,
        };
        node.replication_roles_changed(now);
        Ok(node)
    }

    /// A node restarting after a crash, having lost its memory.
    ///
    /// A master stays *recovering* (it refuses to vote) for
    /// [`Config::quarantine`], so that every lease it might have voted for has
    /// expired first. `token_ceiling` is the last
    /// [`Output::PersistTokenCeiling`] the host persisted; without it, tokens
    /// stay monotonic only while a quorum of masters keeps its memory.
    pub fn restarted(
        config: Config,
        now: Time,
        token_ceiling: Option<Token>,
    ) -> Result<Node, ConfigError> {
        let mut node = Node::new(config, now)?;
        if node.role == Role::Master {
            node.recovering_until = Some(now + node.config.quarantine());
        }
        if let Some(ceiling) = token_ceiling {
            node.highest = ceiling;
            node.ceiling = ceiling;
            node.reserve_tokens();
        }
        Ok(node)
    }

    /// [`Node::restarted`], resuming the last membership the host persisted
    /// from [`Output::PersistMembership`] (which overrides the member lists
    /// and `w` of `config`).
    pub fn restarted_with(
        mut config: Config,
        now: Time,
        token_ceiling: Option<Token>,
        membership: Option<&AppliedMembership>,
    ) -> Result<Node, ConfigError> {
        if let Some(m) = membership {
            m.apply_to(&mut config);
        }
        let mut node = Node::restarted(config, now, token_ceiling)?;
        if let Some(m) = membership {
            node.resume_membership(m, now);
        }
        Ok(node)
    }

    /// The epoch of the membership in force here (0 until a change).
    pub fn membership_epoch(&self) -> u64 {
        self.membership.epoch
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Its role under the current membership.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration in force, membership changes included.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether this master is still in its post-restart quarantine.
    pub fn is_recovering(&self, now: Time) -> bool {
        self.recovering_until.is_some_and(|t| now < t)
    }

    /// The highest fencing token this node has seen.
    pub fn highest_token(&self) -> Token {
        self.highest
    }

    /// Counts of leases and promises.
    pub fn summary(&self, now: Time) -> Summary {
        Summary {
            id: self.config.id,
            role: self.role,
            recovering: self.is_recovering(now),
            leases: self.store.len() - self.store.tombstones(),
            tombstones: self.store.tombstones(),
            promises: self.promises.len(),
            coordinating: self.coordinator.in_flight(),
            highest_token: self.highest,
            masters: self.config.masters.clone(),
            replicas: self.config.replicas.clone(),
            w: self.config.w,
        }
    }

    /// Every live entry in the local store, sorted by key.
    pub fn dirty_entries(&self, now: Time) -> Vec<(Vec<u8>, EntryView)> {
        self.store
            .sorted()
            .into_iter()
            .filter(|r| r.is_live(now))
            .map(|r| (r.key.to_vec(), r.view(now)))
            .collect()
    }

    /// A message from node `from`.
    pub fn handle_message(&mut self, now: Time, from: NodeId, msg: Message) {
        let now = self.advance(now);
        self.dispatch(now, from, msg);
        self.settle(now);
    }

    /// A request from the application or a remote client.
    pub fn handle_request(&mut self, now: Time, id: RequestId, request: Request) {
        let now = self.advance(now);
        match self.validate(&request) {
            Ok(()) => self.start_request(now, id, request),
            Err(e) => self.reply(id, Err(OpError::Invalid(e))),
        }
        self.settle(now);
    }

    /// Time has passed: expire leases and promises, fire retries and
    /// time-outs, push the replication log.
    pub fn handle_timeout(&mut self, now: Time) {
        let now = self.advance(now);
        if self.recovering_until.is_some_and(|t| now >= t) {
            self.recovering_until = None;
        }
        for key in self.promises.expire(now) {
            self.waiters.key_changed(&key);
        }
        for record in self.store.expire(now) {
            self.replication.forget(&record.key);
            self.waiters.key_changed(&record.key);
        }
        self.coordinator_timers(now);
        self.replication_timer(now);
        self.membership_timer(now);
        self.settle(now);
    }

    /// The next output to perform, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`handle_timeout`](Node::handle_timeout) next has work to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.store.next_expiry(),
            self.promises.next_expiry(),
            self.coordinator.next_timer(),
            self.replication.next_timer(),
            self.membership.next_timer(),
            self.waiters.next_timer(),
            self.recovering_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Checks the node's internal invariants; for tests and fuzzing.
    ///
    /// Right after `handle_timeout(now)`, no entry or promise is due at `now`.
    pub fn check_invariants(&self, now: Time) -> Result<(), InvariantViolation> {
        let fail = |s: String| Err(InvariantViolation(s));
        if let Err(e) = self.store.check() {
            return fail(e);
        }
        if let Err(e) = self.promises.check() {
            return fail(e);
        }
        if self.store.next_expiry().is_some_and(|t| t <= now) {
            return fail(format!("an entry is past its expiry at {now}"));
        }
        if self.promises.next_expiry().is_some_and(|t| t <= now) {
            return fail(format!("a promise is past its expiry at {now}"));
        }
        if self.role == Role::Client && self.store.len() > 0 {
            return fail("a client-only node stores entries".into());
        }
        if self.highest > self.ceiling && self.role == Role::Master {
            return fail(format!(
                "highest token {} above the persisted ceiling {}",
                self.highest, self.ceiling
            ));
        }
        Ok(())
    }

    /// Clamps `now` so that a host whose clock stepped back cannot make
    /// time run backwards inside the core.
    fn advance(&mut self, now: Time) -> Time {
        self.last_now = self.last_now.max(now);
        self.last_now
    }

    fn dispatch(&mut self, now: Time, from: NodeId, msg: Message) {
        match msg {
            Message::Prepare {
                op,
                epoch,
                key,
                expect,
                watch,
            } => {
                if self.votes_in(from, op, epoch) {
                    self.on_prepare(now, from, op, key, expect, watch)
                }
            }
            Message::Commit { op, key, write } => self.on_commit(now, from, op, key, write),
            Message::Abort { op, key } => self.on_abort(now, op, &key),
            Message::ExtendHeld {
                op,
                epoch,
                key,
                value,
                token,
                lease,
            } => {
                if self.votes_in(from, op, epoch) {
                    self.on_extend_held(now, from, op, key, value, token, lease)
                }
            }
            Message::ReleaseHeld {
                op,
                epoch,
                key,
                value,
                token,
            } => {
                if self.votes_in(from, op, epoch) {
                    self.on_release_held(now, from, op, key, value, token)
                }
            }
            Message::Read { op, epoch, key } => {
                if self.votes_in(from, op, epoch) {
                    self.on_read(now, from, op, &key)
                }
            }
            Message::Reply { op, outcome } => self.on_reply(now, from, op, outcome),
            Message::Replicate {
                stream,
                seq,
                snapshot,
                entries,
            } => self.on_replicate(now, from, stream, seq, snapshot, entries),
            Message::ReplicateMark {
                stream,
                sent,
                epoch,
            } => self.on_mark(now, from, stream, sent, epoch),
            Message::SyncRequest => self.on_sync_request(now, from),
            Message::MembershipPrepare { epoch, ballot } => {
                self.on_membership_prepare(from, epoch, ballot)
            }
            Message::MembershipPromise {
                epoch,
                ballot,
                accepted,
            } => self.on_membership_promise(now, from, epoch, ballot, accepted),
            Message::MembershipAccept {
                epoch,
                ballot,
                members,
            } => self.on_membership_accept(now, from, epoch, ballot, members),
            Message::MembershipAccepted {
                epoch,
                ballot,
                highest,
            } => self.on_membership_accepted(now, from, epoch, ballot, highest),
            Message::MembershipNack { epoch, promised } => self.on_membership_nack(epoch, promised),
            Message::MembershipAck { epoch } => self.on_membership_ack(from, epoch),
            Message::MembershipQuery => self.on_membership_query(from),
            Message::MembershipState(state) => self.on_membership_state(now, from, *state),
            Message::Freed { key } => self.on_freed(now, from, &key),
        }
    }

    /// Handles what this node sent itself and answers waiters whose key
    /// changed, until neither has more to do (each can cause the other).
    fn settle(&mut self, now: Time) {
        loop {
            self.drain_local(now);
            self.fire_waiters(now);
            if self.local.is_empty() {
                break;
            }
        }
    }

    fn drain_local(&mut self, now: Time) {
        while let Some(msg) = self.local.pop_front() {
            let me = self.config.id;
            self.dispatch(now, me, msg);
        }
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: Message) {
        if to == self.config.id {
            self.local.push_back(msg);
        } else {
            self.outputs.push_back(Output::Send { to, msg });
        }
    }

    pub(crate) fn reply(&mut self, id: RequestId, reply: Reply) {
        self.outputs.push_back(Output::Reply { id, reply });
    }

    pub(crate) fn persist(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Raises the highest token seen, asking the host to persist a new
    /// ceiling before anything that reveals the token leaves the node.
    pub(crate) fn observe_token(&mut self, token: Token) {
        if token > self.highest {
            self.highest = token;
        }
        if self.role == Role::Master && self.highest >= self.ceiling {
            self.reserve_tokens();
        }
    }

    fn reserve_tokens(&mut self) {
        self.ceiling = Token(self.highest.0.saturating_add(self.config.token_block));
        self.outputs
            .push_back(Output::PersistTokenCeiling(self.ceiling));
    }

    fn validate(&self, request: &Request) -> Result<(), InvalidRequest> {
        let c = &self.config;
        if let Some(key) = request.key() {
            if key.is_empty() {
                return Err(InvalidRequest::EmptyKey);
            }
            if key.len() > c.max_key_len {
                return Err(InvalidRequest::KeyTooLong {
                    len: key.len(),
                    max: c.max_key_len,
                });
            }
        }
        let (values, lease): (&[&Vec<u8>], _) = match request {
            Request::Lock { value, lease, .. } => (&[value], Some(*lease)),
            Request::Update {
                value, new_value, ..
            } => (&[value, new_value], None),
            Request::Extend { value, lease, .. } => (&[value], Some(*lease)),
            Request::Release { value, .. } => (&[value], None),
            _ => (&[], None),
        };
        for value in values {
            if value.len() > c.max_value_len {
                return Err(InvalidRequest::ValueTooLong {
                    len: value.len(),
                    max: c.max_value_len,
                });
            }
        }
        match lease {
            Some(l) if l.is_zero() => Err(InvalidRequest::ZeroLease),
            Some(l) if l > c.max_lease => Err(InvalidRequest::LeaseTooLong {
                asked: l,
                max: c.max_lease,
            }),
            _ => Ok(()),
        }
    }

    fn start_request(&mut self, now: Time, id: RequestId, request: Request) {
        match request {
            Request::DirtyRead { key } => {
                let reply = if self.role == Role::Client {
                    Err(OpError::NotStored)
                } else {
                    Ok(Response::Value(
                        self.store.live(&key, now).map(|r| r.view(now)),
                    ))
                };
                self.reply(id, reply);
            }
            Request::WaitFor { key, timeout } => self.wait(now, id, key, true, timeout),
            Request::WaitForRelease { key, timeout } => self.wait(now, id, key, false, timeout),
            Request::Summary => {
                let summary = self.summary(now);
                self.reply(id, Ok(Response::Summary(summary)));
            }
            Request::SetNodes { masters, replicas } => {
                self.start_set_nodes(now, id, masters, replicas)
            }
            Request::SetW { w } => self.start_set_w(now, id, w),
            other => self.start_op(now, id, other),
        }
    }
}
