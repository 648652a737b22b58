//! Requests blocked until a key appears in, or leaves, the local store
//! (`wait_for`, `wait_for_release`), and the coordinators whose waiting locks
//! a master told `held` or `busy`, to be told when the key is free here.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{NodeId, Role};
use crate::message::Message;
use crate::node::Node;
use crate::request::{OpError, RequestId, Response};
use crate::time::Time;

struct Waiter {
    key: Box<[u8]>,
    /// Waiting for the key to be present (`wait_for`) or absent.
    present: bool,
    deadline: Time,
}

#[derive(Default)]
pub(crate) struct Waiters {
    by_id: BTreeMap<RequestId, Waiter>,
    by_key: BTreeMap<Box<[u8]>, BTreeSet<RequestId>>,
    deadlines: BTreeSet<(Time, RequestId)>,
    /// Keys whose local state changed since waiters were last checked.
    changed: BTreeSet<Box<[u8]>>,
    /// Coordinators to send [`Message::Freed`] when a key held or promised
    /// here has neither a live entry nor a live promise. Only such keys have
    /// an entry, and only cluster members watch, so this is bounded by the
    /// store and the promises times the cluster.
    release_watchers: BTreeMap<Box<[u8]>, BTreeSet<NodeId>>,
}

impl Waiters {
    pub(crate) fn key_changed(&mut self, key: &[u8]) {
        if self.by_key.contains_key(key) || self.release_watchers.contains_key(key) {
            self.changed.insert(key.into());
        }
    }

    /// `coordinator`'s lock found `key` held or promised here: tell it when
    /// it is free.
    pub(crate) fn watch_release(&mut self, key: &[u8], coordinator: NodeId) {
        match self.release_watchers.get_mut(key) {
            Some(watchers) => {
                watchers.insert(coordinator);
            }
            None => {
                self.release_watchers
                    .insert(key.into(), BTreeSet::from([coordinator]));
            }
        }
    }

    /// Forgets every watcher (the node stops storing keys).
    pub(crate) fn drop_release_watchers(&mut self) {
        self.release_watchers.clear();
    }

    pub(crate) fn next_timer(&self) -> Option<Time> {
        self.deadlines.first().map(|&(t, _)| t)
    }

    fn remove(&mut self, id: RequestId) -> Option<Waiter> {
        let waiter = self.by_id.remove(&id)?;
        self.deadlines.remove(&(waiter.deadline, id));
        if let Some(ids) = self.by_key.get_mut(&waiter.key) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_key.remove(&waiter.key);
            }
        }
        Some(waiter)
    }
}

impl Node {
    pub(crate) fn wait(
        &mut self,
        now: Time,
        id: RequestId,
        key: Vec<u8>,
        present: bool,
        timeout: Duration,
    ) {
        if self.role == Role::Client {
            return self.reply(id, Err(OpError::NotStored));
        }
        if self.try_answer_waiter(now, id, &key, present) {
            return;
        }
        let key: Box<[u8]> = key.into();
        let deadline = now + timeout;
        let w = &mut self.waiters;
        w.by_key.entry(key.clone()).or_default().insert(id);
        w.deadlines.insert((deadline, id));
        w.by_id.insert(
            id,
            Waiter {
                key,
                present,
                deadline,
            },
        );
    }

    /// Replies if the local store already satisfies the wait.
    fn try_answer_waiter(&mut self, now: Time, id: RequestId, key: &[u8], present: bool) -> bool {
        match (self.store.live(key, now), present) {
            (Some(record), true) => {
                let view = record.view(now);
                self.reply(id, Ok(Response::Present(view)));
                true
            }
            (None, false) => {
                self.reply(id, Ok(Response::Gone));
                true
            }
            _ => false,
        }
    }

    /// Answers waiters whose key changed, and those whose time ran out.
    pub(crate) fn fire_waiters(&mut self, now: Time) {
        for key in core::mem::take(&mut self.waiters.changed) {
            if self.store.live(&key, now).is_none() && self.promises.live(&key, now).is_none() {
                if let Some(watchers) = self.waiters.release_watchers.remove(&key) {
                    for to in watchers {
                        self.send(to, Message::Freed { key: key.to_vec() });
                    }
                }
            }
            let ids: Vec<RequestId> = self
                .waiters
                .by_key
                .get(&key)
                .map(|ids| ids.iter().copied().collect())
                .unwrap_or_default();
            for id in ids {
                let present = self.waiters.by_id[&id].present;
                if self.try_answer_waiter(now, id, &key, present) {
                    self.waiters.remove(id);
                }
            }
        }
        while let Some(&(deadline, id)) = self.waiters.deadlines.first() {
            if deadline > now {
                break;
            }
            self.waiters.remove(id);
            self.reply(id, Err(OpError::Timeout));
        }
    }
}
