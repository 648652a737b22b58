//! `set_nodes` and `set_w`: a membership change is applied by every node,
//! old and new, and reported as done only when each has confirmed it.
//!
//! Changes are ordered by `(epoch, initiator)`; a node applies only newer
//! changes, and acknowledges a change only while it holds that very change, so
//! that two concurrent changes with the same epoch cannot both be reported
//! configured while nodes disagree: every node converges on the larger one,
//! and the other initiator answers `Unconfirmed`. A node
//! that becomes a master enters the same quarantine as a restarted one: it
//! has not seen the promises and leases of the masters before it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use crate::config::{validate_members, NodeId, Role};
use crate::message::Message;
use crate::node::Node;
use crate::promise::Promises;
use crate::request::{InvalidRequest, OpError, RequestId, Response};
use crate::store::Store;
use crate::time::Time;

/// A membership change a node applied: its host persists it (see
/// [`Output::PersistMembership`](crate::Output::PersistMembership)) and
/// passes it to [`Node::restarted_with`] after a crash, so that the node
/// comes back with the members its peers have, not the ones it started with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMembership {
    /// Orders changes.
    pub epoch: u64,
    /// The node that initiated the change (ties between equal epochs).
    pub origin: NodeId,
    /// Voting members.
    pub masters: Vec<NodeId>,
    /// Replicas.
    pub replicas: Vec<NodeId>,
    /// Write quorum.
    pub w: usize,
}

impl AppliedMembership {
    /// `config` with these members and quorum.
    pub fn apply_to(&self, config: &mut crate::Config) {
        config.masters.clone_from(&self.masters);
        config.replicas.clone_from(&self.replicas);
        config.w = self.w;
    }
}

/// How many resends before a change is reported unconfirmed.
const ATTEMPTS: u32 = 10;

#[derive(Default)]
pub(crate) struct Membership {
    epoch: u64,
    /// The node that initiated the change in force (ties between equal epochs).
    origin: NodeId,
    pending: Option<Change>,
}

struct Change {
    request: RequestId,
    msg: Message,
    epoch: u64,
    waiting: BTreeSet<NodeId>,
    sends_left: u32,
    timer: Time,
}

impl Membership {
    pub(crate) fn next_timer(&self) -> Option<Time> {
        self.pending.as_ref().map(|c| c.timer)
    }
}

impl Node {
    pub(crate) fn start_membership(
        &mut self,
        now: Time,
        id: RequestId,
        masters: Vec<NodeId>,
        replicas: Vec<NodeId>,
        w: usize,
    ) {
        if let Err(e) = validate_members(&masters, &replicas, w, self.config.allow_unsafe_quorum) {
            return self.reply(id, Err(OpError::Invalid(InvalidRequest::Config(e))));
        }
        if self.membership.pending.is_some() {
            return self.reply(id, Err(OpError::Invalid(InvalidRequest::AdminBusy)));
        }
        let epoch = self.membership.epoch + 1;
        let me = self.config.id;
        let waiting: BTreeSet<NodeId> = self
            .config
            .masters
            .iter()
            .chain(&self.config.replicas)
            .chain(&masters)
            .chain(&replicas)
            .copied()
            .filter(|&n| n != me)
            .collect();
        let msg = Message::Membership {
            epoch,
            masters: masters.clone(),
            replicas: replicas.clone(),
            w,
        };
        self.apply_membership(now, epoch, me, masters, replicas, w);
        if waiting.is_empty() {
            return self.reply(id, Ok(Response::Configured));
        }
        for &to in &waiting {
            self.send(to, msg.clone());
        }
        self.membership.pending = Some(Change {
            request: id,
            msg,
            epoch,
            waiting,
            sends_left: ATTEMPTS - 1,
            timer: now + self.config.rpc_timeout,
        });
    }

    fn apply_membership(
        &mut self,
        now: Time,
        epoch: u64,
        origin: NodeId,
        masters: Vec<NodeId>,
        replicas: Vec<NodeId>,
        w: usize,
    ) {
        let before = self.role;
        self.membership.epoch = epoch;
        self.membership.origin = origin;
        self.config.masters = masters;
        self.config.replicas = replicas;
        self.config.w = w;
        // Persisted before anything that follows, the acknowledgement
        // included: a restart must not bring back the old members.
        let applied = self.membership_in_force();
        self.persist(crate::Output::PersistMembership(applied));
        self.role = self.config.role();
        self.replication_roles_changed(now);
        if self.role == before {
            return;
        }
        match self.role {
            Role::Master => {
                self.recovering_until = Some(now + self.config.quarantine());
                self.observe_token(self.highest);
            }
            Role::Replica => {
                self.promises = Promises::default();
            }
            Role::Client => {
                self.promises = Promises::default();
                self.store = Store::new(self.config.seed);
            }
        }
    }

    pub(crate) fn on_membership(
        &mut self,
        now: Time,
        from: NodeId,
        epoch: u64,
        masters: Vec<NodeId>,
        replicas: Vec<NodeId>,
        w: usize,
    ) {
        if validate_members(&masters, &replicas, w, self.config.allow_unsafe_quorum).is_err() {
            return;
        }
        let current = (self.membership.epoch, self.membership.origin);
        if (epoch, from) > current {
            self.apply_membership(now, epoch, from, masters, replicas, w);
        }
        // Acknowledge only the change in force here: a concurrent change
        // that lost the tie must not be reported configured.
        if (self.membership.epoch, self.membership.origin) == (epoch, from) {
            self.send(from, Message::MembershipAck { epoch });
        }
    }

    /// A restarted node resumes the membership it had applied.
    pub(crate) fn resume_membership(&mut self, applied: &AppliedMembership) {
        self.membership.epoch = applied.epoch;
        self.membership.origin = applied.origin;
    }

    pub(crate) fn on_membership_query(&mut self, from: NodeId) {
        if self.membership.epoch == 0 || from == self.config.id {
            return;
        }
        let msg = Message::MembershipState(self.membership_in_force());
        self.send(from, msg);
    }

    /// The change in force here, as it is persisted and relayed.
    fn membership_in_force(&self) -> AppliedMembership {
        AppliedMembership {
            epoch: self.membership.epoch,
            origin: self.membership.origin,
            masters: self.config.masters.clone(),
            replicas: self.config.replicas.clone(),
            w: self.config.w,
        }
    }

    /// A relayed change: applied if newer, never acknowledged (the
    /// initiator counts only its members' confirmations).
    pub(crate) fn on_membership_state(
        &mut self,
        now: Time,
        from: NodeId,
        state: AppliedMembership,
    ) {
        let AppliedMembership {
            epoch,
            origin,
            masters,
            replicas,
            w,
        } = state;
        if validate_members(&masters, &replicas, w, self.config.allow_unsafe_quorum).is_err() {
            return;
        }
        let mine = (self.membership.epoch, self.membership.origin);
        if (epoch, origin) > mine {
            self.apply_membership(now, epoch, origin, masters, replicas, w);
        } else if (epoch, origin) < mine {
            // The node we asked missed a change (it was down while it was
            // made): tell it ours.
            self.on_membership_query(from);
        }
    }

    pub(crate) fn on_membership_ack(&mut self, _now: Time, from: NodeId, epoch: u64) {
        let Some(change) = &mut self.membership.pending else {
            return;
        };
        if change.epoch != epoch {
            return;
        }
        change.waiting.remove(&from);
        if change.waiting.is_empty() {
            let request = change.request;
            self.membership.pending = None;
            self.reply(request, Ok(Response::Configured));
        }
    }

    pub(crate) fn membership_timer(&mut self, now: Time) {
        let Some(change) = &mut self.membership.pending else {
            return;
        };
        if change.timer > now {
            return;
        }
        if change.sends_left == 0 {
            let request = change.request;
            self.membership.pending = None;
            return self.reply(request, Err(OpError::Unconfirmed { token: None }));
        }
        change.sends_left -= 1;
        change.timer = now + self.config.rpc_timeout;
        let (waiting, msg) = (change.waiting.clone(), change.msg.clone());
        for to in waiting {
            self.send(to, msg.clone());
        }
    }
}
