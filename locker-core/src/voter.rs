//! A master's side of the protocol: promises, commits under them, one-round
//! extends and releases by token holders, and quorum reads.

use core::time::Duration;

use crate::config::{NodeId, Role};
use crate::message::{Ack, Expect, Grant, Message, OpId, Refusal, Write};
use crate::node::Node;
use crate::promise::Promise;
use crate::request::Token;
use crate::store::Record;
use crate::time::Time;

type Outcome = Result<Ack, Refusal>;

impl Node {
    fn answer(&mut self, to: NodeId, op: OpId, outcome: Outcome) {
        self.send(to, Message::Reply { op, outcome });
    }

    /// Whether this node may vote on an operation of membership `epoch`; if
    /// it is a master that may not, it refuses `op` and helps the lagging
    /// side catch up. (A node that is no master answers `NotMaster` in the
    /// handler, whatever the epoch.)
    pub(crate) fn votes_in(&mut self, from: NodeId, op: OpId, epoch: u64) -> bool {
        if self.role != Role::Master && epoch > self.membership.epoch {
            // Perhaps a master there: ask (a node that restarted without its
            // persisted membership starts at epoch 0).
            self.send(from, Message::MembershipQuery);
        }
        if self.role != Role::Master
            || self.membership.votes_in(epoch)
            || self.config.ignore_membership_epochs
        {
            return true;
        }
        self.answer(from, op, Err(Refusal::OtherEpoch));
        if epoch > self.membership.epoch {
            self.send(from, Message::MembershipQuery);
        } else if epoch < self.membership.epoch {
            self.on_membership_query(from);
        }
        false
    }

    /// Why this node cannot vote on `key` now, if it cannot.
    fn cannot_vote(&self, now: Time, key: &[u8], value: Option<&[u8]>) -> Option<Refusal> {
        if self.role != Role::Master {
            Some(Refusal::NotMaster)
        } else if let Some(until) = self.recovering_until.filter(|&t| now < t) {
            Some(Refusal::Recovering {
                remaining: until - now,
            })
        } else if key.is_empty()
            || key.len() > self.config.max_key_len
            || value.is_some_and(|v| v.len() > self.config.max_value_len)
        {
            Some(Refusal::Invalid)
        } else {
            None
        }
    }

    fn lease_ok(&self, lease: Duration) -> bool {
        !lease.is_zero() && lease <= self.config.max_lease
    }

    /// A change to the local store: replicas and waiters must hear of it.
    fn stored(&mut self, key: &[u8]) {
        self.replication_changed(key);
        self.waiters.key_changed(key);
    }

    pub(crate) fn on_prepare(
        &mut self,
        now: Time,
        from: NodeId,
        op: OpId,
        key: Vec<u8>,
        expect: Expect,
        watch: bool,
    ) {
        let expected_value = match &expect {
            Expect::Absent => None,
            Expect::Value(v) | Expect::ValueOrMissing(v) => Some(&v[..]),
        };
        if let Some(refusal) = self.cannot_vote(now, &key, expected_value) {
            return self.answer(from, op, Err(refusal));
        }
        // A duplicated prepare is granted again, with the highest token of
        // the first grant (the one the coordinator may have counted); any
        // other op waits.
        let mut highest = self.highest;
        if let Some(p) = self.promises.live(&key, now) {
            if p.op != op {
                if watch && expect == Expect::Absent {
                    self.waiters.watch_release(&key, from);
                }
                return self.answer(from, op, Err(Refusal::Busy));
            }
            highest = p.highest;
        }
        let record = self.store.get(&key);
        let live = record.filter(|r| r.is_live(now));
        let verdict = match (&expect, live) {
            (Expect::Absent, None) => Ok(()),
            (Expect::Absent, Some(_)) => Err(Refusal::Held),
            (Expect::Value(v) | Expect::ValueOrMissing(v), Some(r)) if r.value[..] == v[..] => {
                Ok(())
            }
            (Expect::Value(_) | Expect::ValueOrMissing(_), Some(_)) => Err(Refusal::Mismatch),
            (Expect::Value(_), None) => Err(Refusal::Missing),
            // Missing means no record at all: a tombstone proves a release.
            (Expect::ValueOrMissing(_), None) if record.is_some_and(|r| r.deleted) => {
                Err(Refusal::Missing)
            }
            (Expect::ValueOrMissing(_), None) => Ok(()),
        };
        if watch && verdict == Err(Refusal::Held) {
            self.waiters.watch_release(&key, from);
        }
        let outcome = verdict.map(|()| {
            Ack::Granted(Grant {
                highest,
                entry: live.map(|r| r.state(now)),
            })
        });
        if outcome.is_ok() {
            let expires = now + self.config.promise_timeout;
            self.promises.grant(
                &key,
                Promise {
                    op,
                    coordinator: from,
                    expires,
                    highest,
                },
            );
        }
        self.answer(from, op, outcome);
    }

    pub(crate) fn on_commit(
        &mut self,
        now: Time,
        from: NodeId,
        op: OpId,
        key: Vec<u8>,
        write: Write,
    ) {
        let value = match &write {
            Write::Create { value, .. }
            | Write::SetValue { value, .. }
            | Write::Extend { value, .. } => Some(&value[..]),
            Write::Delete { .. } => None,
        };
        if let Some(refusal) = self.cannot_vote(now, &key, value) {
            return self.answer(from, op, Err(refusal));
        }
        if self.already_applied(now, &key, &write) {
            return self.answer(from, op, Ok(Ack::Done));
        }
        // Only under this op's live promise: a late commit is never applied.
        let promise = self.take_promise(&key, op, now);
        if let (Some(p), Write::Create { token, .. }) = (&promise, &write) {
            // The coordinator chose the token from grants that did not
            // include this one (a late prepare): a later tenure may have
            // passed here since, and the token would go backwards.
            if *token <= p.highest {
                return self.answer(from, op, Err(Refusal::NoPromise));
            }
        }
        if promise.is_none() {
            // Except an extend of the live entry it names (a resend whose
            // first ack was lost): that is exactly a holder's one-round
            // extend, which needs no promise (see `on_extend_held`).
            if let Write::Extend {
                value,
                token,
                lease,
                ..
            } = &write
            {
                let matches = self
                    .store
                    .live(&key, now)
                    .is_some_and(|r| r.value[..] == value[..] && r.token == *token);
                if matches && self.lease_ok(*lease) {
                    let expires = now + *lease;
                    self.store
                        .update(&key, |r| r.expires = r.expires.max(expires));
                    self.stored(&key);
                    return self.answer(from, op, Ok(Ack::Done));
                }
            }
            return self.answer(from, op, Err(Refusal::NoPromise));
        }
        let outcome = self.apply(now, &key, write);
        self.answer(from, op, outcome);
    }

    /// Whether `write` is already reflected in the store: a duplicated or
    /// resent commit is acknowledged without a promise.
    fn already_applied(&self, now: Time, key: &[u8], write: &Write) -> bool {
        let Some(r) = self.store.get(key) else {
            return false;
        };
        match write {
            Write::Create { value, token, .. } => {
                r.is_live(now) && r.token == *token && r.value[..] == value[..]
            }
            Write::SetValue { value, revision } => {
                r.is_live(now) && r.revision == *revision && r.value[..] == value[..]
            }
            Write::Extend { .. } => false,
            Write::Delete { token } => r.deleted && r.token == *token,
        }
    }

    fn apply(&mut self, now: Time, key: &[u8], write: Write) -> Outcome {
        let live = self.store.live(key, now).cloned();
        match write {
            Write::Create {
                value,
                lease,
                token,
            } => {
                if !self.lease_ok(lease) {
                    return Err(Refusal::Invalid);
                }
                if live.is_some() {
                    return Err(Refusal::Held);
                }
                self.observe_token(token);
                self.store.put(Record {
                    key: key.into(),
                    value: value.into(),
                    token,
                    revision: 0,
                    expires: now + lease,
                    deleted: false,
                });
            }
            Write::SetValue { value, revision } => {
                if live.is_none() {
                    return Err(Refusal::Missing);
                }
                self.store.update(key, |r| {
                    r.value = value.into();
                    r.revision = revision;
                });
            }
            Write::Extend {
                value,
                token,
                revision,
                lease,
            } => {
                if !self.lease_ok(lease) {
                    return Err(Refusal::Invalid);
                }
                match live {
                    Some(r) if r.value[..] == value[..] => {
                        self.store.update(key, |r| r.expires = now + lease)
                    }
                    Some(_) => return Err(Refusal::Mismatch),
                    None => {
                        if self.store.get(key).is_some_and(|r| r.deleted) {
                            return Err(Refusal::Missing);
                        }
                        self.install(now, key, value, token, revision, lease);
                    }
                }
            }
            Write::Delete { .. } => match live {
                Some(_) => self.store.update(key, |r| r.deleted = true),
                None => return Err(Refusal::Missing),
            },
        }
        self.stored(key);
        Ok(Ack::Done)
    }

    /// Anti-entropy: a master that lacks a holder's entry stores it.
    fn install(
        &mut self,
        now: Time,
        key: &[u8],
        value: Vec<u8>,
        token: Token,
        revision: u64,
        lease: Duration,
    ) {
        self.observe_token(token);
        self.store.put(Record {
            key: key.into(),
            value: value.into(),
            token,
            revision,
            expires: now + lease,
            deleted: false,
        });
    }

    pub(crate) fn on_abort(&mut self, now: Time, op: OpId, key: &[u8]) {
        self.take_promise(key, op, now);
    }

    /// Takes `op`'s live promise on `key`, if any: a lock watching the key
    /// hears of it once the key is free.
    fn take_promise(&mut self, key: &[u8], op: OpId, now: Time) -> Option<Promise> {
        let promise = self.promises.take(key, op, now);
        if promise.is_some() {
            self.waiters.key_changed(key);
        }
        promise
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_extend_held(
        &mut self,
        now: Time,
        from: NodeId,
        op: OpId,
        key: Vec<u8>,
        value: Vec<u8>,
        token: Token,
        lease: Duration,
    ) {
        if let Some(refusal) = self.cannot_vote(now, &key, Some(&value)) {
            return self.answer(from, op, Err(refusal));
        }
        if !self.lease_ok(lease) {
            return self.answer(from, op, Err(Refusal::Invalid));
        }
        let outcome = match self.store.get(&key) {
            Some(r) if r.token > token => Err(Refusal::Superseded),
            Some(r) if r.is_live(now) => {
                if r.value[..] == value[..] && r.token == token {
                    self.store.update(&key, |r| r.expires = now + lease);
                    Ok(Ack::Done)
                } else {
                    Err(Refusal::Mismatch)
                }
            }
            // No record: install it (this master missed the tenure), but
            // only a token above every one seen here. A master that has seen
            // a later token may have held a later tenure of the key, now
            // expired and forgotten: a holder whose lease expired everywhere
            // would take the key back with its old token. Every later tenure
            // of the key was committed by `w` masters that saw its token, so
            // an old holder gets at most `n - w` installs.
            _ if token <= self.highest => Err(Refusal::Missing),
            _ => {
                // Installing under another op's promise would be overwritten
                // by that op's commit; let it finish first.
                if self.promises.live(&key, now).is_some() {
                    Err(Refusal::Busy)
                } else {
                    let revision = 0;
                    self.install(now, &key, value, token, revision, lease);
                    Ok(Ack::Done)
                }
            }
        };
        if outcome.is_ok() {
            self.stored(&key);
        }
        self.answer(from, op, outcome);
    }

    pub(crate) fn on_release_held(
        &mut self,
        now: Time,
        from: NodeId,
        op: OpId,
        key: Vec<u8>,
        value: Vec<u8>,
        token: Token,
    ) {
        if let Some(refusal) = self.cannot_vote(now, &key, Some(&value)) {
            return self.answer(from, op, Err(refusal));
        }
        let outcome = match self.store.get(&key) {
            Some(r) if r.token > token => Err(Refusal::Superseded),
            Some(r) if r.is_live(now) => {
                if r.value[..] == value[..] && r.token == token {
                    self.store.update(&key, |r| r.deleted = true);
                    self.stored(&key);
                    Ok(Ack::Done)
                } else {
                    Err(Refusal::Mismatch)
                }
            }
            // A duplicate of a release already applied here.
            Some(r) if r.deleted && r.token == token && r.value[..] == value[..] => Ok(Ack::Done),
            // A write under a live promise may still commit here (the very
            // lock being released, its commit delayed): the entry is not
            // known to be gone, so this master must not count as released.
            _ if self.promises.live(&key, now).is_some() => Err(Refusal::Busy),
            _ => Err(Refusal::Missing),
        };
        self.answer(from, op, outcome);
    }

    pub(crate) fn on_read(&mut self, now: Time, from: NodeId, op: OpId, key: &[u8]) {
        let outcome = match self.cannot_vote(now, key, None) {
            Some(refusal) => Err(refusal),
            None => Ok(Ack::Read(self.store.live(key, now).map(|r| r.state(now)))),
        };
        self.answer(from, op, outcome);
    }
}
