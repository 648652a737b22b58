//! Asynchronous replication: masters push the latest state of every key
//! they changed to the replicas, in batches, every push interval. Each entry
//! carries its token and revision, so applying is idempotent, and its
//! *remaining* lease, so a replica never restarts a lease from the top.
//!
//! Every master numbers the batches it sends to each replica (one stream
//! per master start). A replica applies a master's batches in order and
//! drops one that comes late (its keys were in a later batch, or in the
//! snapshot the gap asked for), so a reordered push never rolls an entry
//! back, for example to the lease it had before an extension. A gap, seen
//! in a batch or in the mark a master sends every RPC time-out, makes the
//! replica ask that master for a snapshot: a lost push is repaired as soon
//! as the link works again.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{NodeId, Role};
use crate::message::{Message, Replicated};
use crate::node::Node;
use crate::rng::Rng;
use crate::store::Record;
use crate::time::Time;

/// Payload bytes per replication message, well under the frame limit.
const BATCH_BYTES: usize = 512 * 1024;

pub(crate) struct Replication {
    /// This start's stream id (a master's batches carry it).
    stream: u64,
    /// Keys changed since the last push.
    pending: BTreeSet<Box<[u8]>>,
    next_push: Option<Time>,
    /// Batches sent to each replica: the next `seq`.
    sent: BTreeMap<NodeId, u64>,
    /// When masters next tell their replicas how much they sent.
    next_mark: Option<Time>,
    /// A replica's view of each master's stream.
    inbound: BTreeMap<NodeId, Inbound>,
    /// A replica's expiry of each key's current version as each master
    /// reported it: masters disagree when one missed an extend, and the
    /// replica keeps the entry while `w` of them hold it.
    reports: BTreeMap<Box<[u8]>, Vec<(NodeId, Time)>>,
}

/// How far a replica has followed one master's stream.
#[derive(Clone, Copy, Debug)]
struct Inbound {
    stream: Option<u64>,
    /// The next `seq` expected.
    next: u64,
    /// Something was missed: a snapshot is needed.
    gap: bool,
    /// When the last snapshot was asked for.
    asked: Option<Time>,
}

impl Inbound {
    const UNKNOWN: Inbound = Inbound {
        stream: None,
        next: 0,
        gap: true,
        asked: None,
    };
}

/// What a replica does with one batch of a stream.
#[derive(Debug, PartialEq, Eq)]
enum Fit {
    /// Next in order, or a snapshot that covers what came before.
    InOrder,
    /// Newer than expected: apply it, and ask for a snapshot.
    AfterGap,
    /// Older than what was applied: drop it.
    Late,
}

impl Replication {
    /// The stream id mixes the start time into the seed, so a host that
    /// reuses a seed across restarts still starts a new stream.
    pub(crate) fn new(seed: u64, now: Time) -> Replication {
        let stream = Rng::new(seed ^ now.as_micros().rotate_left(29)).next_u64();
        Replication {
            stream,
            pending: BTreeSet::new(),
            next_push: None,
            sent: BTreeMap::new(),
            next_mark: None,
            inbound: BTreeMap::new(),
            reports: BTreeMap::new(),
        }
    }

    /// A key left the replica's store.
    pub(crate) fn forget(&mut self, key: &[u8]) {
        self.reports.remove(key);
    }

    /// Records `master`'s expiry of the key's current version (`fresh`: a
    /// newer version, which voids the other masters' reports) and returns
    /// the expiry the replica keeps: while `w` masters hold the entry, or
    /// the latest report until `w` masters have reported.
    fn report(&mut self, key: &[u8], master: NodeId, expires: Time, fresh: bool, w: usize) -> Time {
        let reports = self.reports.entry(key.into()).or_default();
        if fresh {
            reports.clear();
        }
        match reports.iter_mut().find(|(m, _)| *m == master) {
            Some(r) => r.1 = expires,
            None => reports.push((master, expires)),
        }
        // Latest first (the order of the reports does not matter otherwise).
        reports.sort_unstable_by_key(|&(_, t)| core::cmp::Reverse(t));
        reports.get(w.max(1) - 1).unwrap_or(&reports[0]).1
    }

    pub(crate) fn next_timer(&self) -> Option<Time> {
        match (self.next_push, self.next_mark) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fit(&mut self, from: NodeId, stream: u64, seq: u64, snapshot: bool) -> Fit {
        let inbound = self.inbound.entry(from).or_insert(Inbound::UNKNOWN);
        let same = inbound.stream == Some(stream);
        // Only a snapshot proves that nothing was missed: a stream seen for
        // the first time may follow entries the master stored before.
        let fit = if same && seq < inbound.next {
            Fit::Late
        } else if snapshot || (same && seq == inbound.next) {
            Fit::InOrder
        } else {
            Fit::AfterGap
        };
        match fit {
            Fit::Late => {}
            Fit::InOrder => {
                if snapshot {
                    inbound.gap = false;
                    inbound.asked = None;
                }
                inbound.stream = Some(stream);
                inbound.next = seq + 1;
            }
            Fit::AfterGap => {
                *inbound = Inbound {
                    stream: Some(stream),
                    next: seq + 1,
                    gap: true,
                    asked: inbound.asked,
                };
            }
        }
        fit
    }
}

impl Node {
    /// Starts or stops what the node's role needs: a master with replicas
    /// marks its streams; a node that became a replica asks every master
    /// for a snapshot.
    pub(crate) fn replication_roles_changed(&mut self, now: Time) {
        let marks = self.role == Role::Master && !self.config.replicas.is_empty();
        match (marks, self.replication.next_mark) {
            (true, None) => {
                self.replication.next_mark = Some(now + self.config.rpc_timeout);
            }
            (false, Some(_)) => self.replication.next_mark = None,
            _ => {}
        }
        if self.role != Role::Replica {
            self.replication.inbound.clear();
            self.replication.reports.clear();
        } else if self.replication.inbound.is_empty() {
            for &master in &self.config.masters {
                self.replication.inbound.insert(master, Inbound::UNKNOWN);
            }
            self.ask_snapshots(now);
        }
    }

    pub(crate) fn replication_changed(&mut self, key: &[u8]) {
        if self.role != Role::Master || self.config.replicas.is_empty() {
            return;
        }
        self.replication.pending.insert(key.into());
        if self.replication.next_push.is_none() {
            self.replication.next_push = Some(self.last_now + self.config.push_interval);
        }
    }

    pub(crate) fn replication_timer(&mut self, now: Time) {
        if self.replication.next_mark.is_some_and(|t| t <= now) {
            self.replication.next_mark = Some(now + self.config.rpc_timeout);
            let stream = self.replication.stream;
            for i in 0..self.config.replicas.len() {
                let to = self.config.replicas[i];
                let sent = self.replication.sent.get(&to).copied().unwrap_or(0);
                let epoch = self.membership.epoch;
                self.send(
                    to,
                    Message::ReplicateMark {
                        stream,
                        sent,
                        epoch,
                    },
                );
            }
        }
        if self.replication.next_push.is_none_or(|t| t > now) {
            return;
        }
        self.replication.next_push = None;
        let keys = core::mem::take(&mut self.replication.pending);
        // Keys that expired meanwhile are left out: replicas expire them too.
        let entries: Vec<Replicated> = keys
            .iter()
            .filter_map(|k| self.store.get(k))
            .filter(|r| r.expires > now)
            .map(|r| replicated(r, now))
            .collect();
        let replicas = self.config.replicas.clone();
        self.send_batches(&replicas, entries, false);
    }

    /// Splits `entries` into batches and sends them, numbered, to each of
    /// `to`. A snapshot is flagged on its first batch and is sent even when
    /// empty, so that the replica knows it is in step.
    fn send_batches(&mut self, to: &[NodeId], entries: Vec<Replicated>, snapshot: bool) {
        let mut batches = vec![Vec::new()];
        let mut bytes = 0;
        for entry in entries {
            bytes += entry.key.len() + entry.state.value.len() + 32;
            batches.last_mut().expect("never empty").push(entry);
            if bytes >= BATCH_BYTES {
                batches.push(Vec::new());
                bytes = 0;
            }
        }
        if batches.len() > 1 && batches.last().is_some_and(Vec::is_empty) {
            batches.pop();
        }
        if !snapshot && batches[0].is_empty() {
            return;
        }
        let stream = self.replication.stream;
        for &node in to {
            for (i, entries) in batches.iter().enumerate() {
                let sent = self.replication.sent.entry(node).or_insert(0);
                let seq = *sent;
                *sent += 1;
                self.send(
                    node,
                    Message::Replicate {
                        stream,
                        seq,
                        snapshot: snapshot && i == 0,
                        entries: entries.clone(),
                    },
                );
            }
        }
    }

    /// Asks each master whose stream has a gap for a snapshot, unless one
    /// was asked for less than an RPC time-out ago.
    fn ask_snapshots(&mut self, now: Time) {
        let retry = self.config.rpc_timeout;
        let mut ask = Vec::new();
        for (&master, inbound) in self.replication.inbound.iter_mut() {
            if inbound.gap && inbound.asked.is_none_or(|t| t + retry <= now) {
                inbound.asked = Some(now);
                ask.push(master);
            }
        }
        for master in ask {
            self.send(master, Message::SyncRequest);
        }
    }

    /// A replica that starts empty, or missed part of the stream, gets every
    /// live record, tombstones included.
    pub(crate) fn on_sync_request(&mut self, now: Time, from: NodeId) {
        let is_replica = self.config.replicas.contains(&from);
        if self.role != Role::Master || from == self.config.id || !is_replica {
            return;
        }
        let entries: Vec<Replicated> = self
            .store
            .sorted()
            .into_iter()
            .filter(|r| r.expires > now)
            .map(|r| replicated(r, now))
            .collect();
        self.send_batches(&[from], entries, true);
    }

    pub(crate) fn on_mark(&mut self, now: Time, from: NodeId, stream: u64, sent: u64, epoch: u64) {
        if epoch > self.membership.epoch {
            self.send(from, Message::MembershipQuery);
        }
        if self.role != Role::Replica || !self.config.masters.contains(&from) {
            return;
        }
        let inbound = self
            .replication
            .inbound
            .entry(from)
            .or_insert(Inbound::UNKNOWN);
        if inbound.stream != Some(stream) || sent > inbound.next {
            inbound.gap = true;
        }
        self.ask_snapshots(now);
    }

    pub(crate) fn on_replicate(
        &mut self,
        now: Time,
        from: NodeId,
        stream: u64,
        seq: u64,
        snapshot: bool,
        entries: Vec<Replicated>,
    ) {
        if self.role != Role::Replica || !self.config.masters.contains(&from) {
            return;
        }
        let fit = self.replication.fit(from, stream, seq, snapshot);
        if fit == Fit::Late {
            return;
        }
        for entry in entries {
            self.apply_replicated(now, from, entry);
        }
        if fit == Fit::AfterGap {
            self.ask_snapshots(now);
        }
    }

    fn apply_replicated(&mut self, now: Time, from: NodeId, entry: Replicated) {
        let Replicated {
            key,
            state,
            deleted,
        } = entry;
        let valid = !key.is_empty()
            && key.len() <= self.config.max_key_len
            && state.value.len() <= self.config.max_value_len
            && state.remaining <= self.config.max_lease;
        if !valid {
            return;
        }
        let incoming = Record {
            expires: now + state.remaining,
            key: key.into(),
            value: state.value.into(),
            token: state.token,
            revision: state.revision,
            deleted,
        };
        let fresh = match self.store.get(&incoming.key) {
            None => true,
            Some(r) if incoming.version() > r.version() => true,
            // The same state again, from this master's stream in order: its
            // remaining lease is this master's latest news.
            Some(r) if incoming.version() == r.version() => r.value != incoming.value,
            Some(_) => return,
        };
        let w = self.config.w;
        let expires = self
            .replication
            .report(&incoming.key, from, incoming.expires, fresh, w);
        if fresh && expires <= now {
            self.replication.forget(&incoming.key);
            return;
        }
        self.observe_token(incoming.token);
        let key = incoming.key.clone();
        if fresh {
            self.store.put(Record {
                expires,
                ..incoming
            });
        } else {
            self.store.update(&key, |r| r.expires = expires);
        }
        self.waiters.key_changed(&key);
    }
}

fn replicated(r: &Record, now: Time) -> Replicated {
    Replicated {
        key: r.key.to_vec(),
        state: r.state(now),
        deleted: r.deleted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(r: &Replication, from: u64) -> Inbound {
        r.inbound[&NodeId(from)]
    }

    #[test]
    fn batches_in_order_then_a_gap_then_a_late_one() {
        let mut r = Replication::new(1, Time::ZERO);
        assert_eq!(r.fit(NodeId(1), 7, 0, true), Fit::InOrder);
        assert_eq!(r.fit(NodeId(1), 7, 1, false), Fit::InOrder);
        assert!(!stream_of(&r, 1).gap);
        assert_eq!(r.fit(NodeId(1), 7, 3, false), Fit::AfterGap);
        assert!(stream_of(&r, 1).gap);
        assert_eq!(r.fit(NodeId(1), 7, 2, false), Fit::Late);
        assert_eq!(r.fit(NodeId(1), 7, 3, false), Fit::Late, "a duplicate");
        // The snapshot closes the gap.
        assert_eq!(r.fit(NodeId(1), 7, 4, true), Fit::InOrder);
        assert!(!stream_of(&r, 1).gap);
        assert_eq!(stream_of(&r, 1).next, 5);
    }

    #[test]
    fn a_new_stream_starts_over_and_a_late_snapshot_is_dropped() {
        let mut r = Replication::new(1, Time::ZERO);
        assert_eq!(r.fit(NodeId(1), 7, 5, false), Fit::AfterGap);
        assert_eq!(r.fit(NodeId(1), 7, 3, true), Fit::Late);
        assert!(stream_of(&r, 1).gap, "still waiting for a newer snapshot");
        // The master restarted: its new stream needs a snapshot too.
        assert_eq!(r.fit(NodeId(1), 9, 0, false), Fit::AfterGap);
        assert_eq!(r.fit(NodeId(1), 9, 1, true), Fit::InOrder);
        assert!(!stream_of(&r, 1).gap);
        assert_eq!(r.fit(NodeId(1), 7, 6, false), Fit::AfterGap, "old stream");
    }
}
