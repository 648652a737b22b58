//! Asynchronous replication: masters push the latest state of every key
//! they changed to the replicas, in batches, every push interval. Each entry
//! carries its token and revision, so applying is idempotent and
//! order-independent, and its *remaining* lease, so a replica never restarts
//! a lease from the top.

use std::collections::BTreeSet;

use crate::config::{NodeId, Role};
use crate::message::{Message, Replicated};
use crate::node::Node;
use crate::store::Record;
use crate::time::Time;

/// Payload bytes per replication message, well under the frame limit.
const BATCH_BYTES: usize = 512 * 1024;

#[derive(Default)]
pub(crate) struct Replication {
    /// Keys changed since the last push.
    pending: BTreeSet<Box<[u8]>>,
    next_push: Option<Time>,
    /// A replica's sync request not yet answered by any master: resent
    /// at this instant (a lost request must not leave it empty forever).
    next_sync: Option<Time>,
}

impl Replication {
    pub(crate) fn next_push(&self) -> Option<Time> {
        match (self.next_push, self.next_sync) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Node {
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
        if self.replication.next_sync.is_some_and(|t| t <= now) {
            if self.role == Role::Replica {
                self.request_sync();
            } else {
                self.replication.next_sync = None;
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
        self.send_batches(now, &replicas, entries);
    }

    fn send_batches(&mut self, _now: Time, to: &[NodeId], entries: Vec<Replicated>) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        for entry in entries {
            bytes += entry.key.len() + entry.state.value.len() + 32;
            batch.push(entry);
            if bytes >= BATCH_BYTES {
                self.send_batch(to, core::mem::take(&mut batch));
                bytes = 0;
            }
        }
        if !batch.is_empty() {
            self.send_batch(to, batch);
        }
    }

    fn send_batch(&mut self, to: &[NodeId], entries: Vec<Replicated>) {
        for &node in to {
            self.send(
                node,
                Message::Replicate {
                    entries: entries.clone(),
                },
            );
        }
    }

    pub(crate) fn request_sync(&mut self) {
        self.replication.next_sync = Some(self.last_now + self.config.rpc_timeout);
        for i in 0..self.config.masters.len() {
            let to = self.config.masters[i];
            self.send(to, Message::SyncRequest);
        }
    }

    /// A replica that starts empty gets every record, tombstones included.
    pub(crate) fn on_sync_request(&mut self, now: Time, from: NodeId) {
        if self.role != Role::Master || from == self.config.id {
            return;
        }
        let entries: Vec<Replicated> = self
            .store
            .sorted()
            .into_iter()
            .filter(|r| r.expires > now)
            .map(|r| replicated(r, now))
            .collect();
        if entries.is_empty() {
            // Answer anyway, so that the replica knows it is in sync.
            return self.send(from, Message::Replicate { entries });
        }
        self.send_batches(now, &[from], entries);
    }

    pub(crate) fn on_replicate(&mut self, now: Time, from: NodeId, entries: Vec<Replicated>) {
        if self.role != Role::Replica || !self.config.masters.contains(&from) {
            return;
        }
        // Any master's push or sync answer: this replica is connected.
        self.replication.next_sync = None;
        for entry in entries {
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
                continue;
            }
            let incoming = Record {
                expires: now + state.remaining,
                key: key.into(),
                value: state.value.into(),
                token: state.token,
                revision: state.revision,
                deleted,
            };
            let newer = match self.store.get(&incoming.key) {
                None => true,
                // The same state again: the latest remaining lease is news.
                Some(r) => incoming.version() >= r.version(),
            };
            if newer && incoming.expires > now {
                self.observe_token(incoming.token);
                let key = incoming.key.clone();
                self.store.put(incoming);
                self.waiters.key_changed(&key);
            }
        }
    }
}

fn replicated(r: &Record, now: Time) -> Replicated {
    Replicated {
        key: r.key.to_vec(),
        state: r.state(now),
        deleted: r.deleted,
    }
}
