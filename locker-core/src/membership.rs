//! `set_nodes` and `set_w`: membership changes, each chosen once by the
//! masters it replaces.
//!
//! The members of epoch `e + 1` are chosen by single-decree Paxos among the
//! masters of epoch `e`: a proposer collects promises for its ballot from a
//! majority, proposes the change accepted under the highest ballot among
//! them (or its own, if none), and the change is chosen when a majority
//! accepted it. A master that accepted a change votes for no operation
//! until it learns which change was chosen, and every vote request carries
//! the coordinator's epoch, which a master must share. So once a change is
//! chosen, a majority of the old masters has stopped voting in the old epoch
//! for good, no old quorum can form again, and the new members, which learn
//! the change only after it was chosen, never act beside a live old quorum.
//!
//! What the old epoch committed stays safe because every step keeps
//! `w_old + w_new > old masters`: a master the change promotes (or one that
//! learns of several changes at once, and so may have been no master in
//! between) is quarantined like a restarted one, so until the old leases
//! have expired a new quorum lies among the old masters and meets every old
//! commit quorum.
//!
//! Promises and accepted changes are persisted with the membership
//! ([`Output::PersistMembership`](crate::Output::PersistMembership)) before
//! they are revealed, as Paxos requires of its acceptors.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use crate::config::{validate_members, ConfigError, NodeId, Role};
use crate::message::Message;
use crate::node::Node;
use crate::promise::Promises;
use crate::request::{InvalidRequest, OpError, RequestId, Response, Token};
use crate::store::Store;
use crate::time::{micros, Time};

/// Orders proposals for one epoch: a higher round wins, then the node id.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Ballot {
    /// Raised by each new attempt.
    pub round: u64,
    /// The proposer.
    pub node: NodeId,
}

/// A membership: voting members, replicas and the write quorum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// Voting members.
    pub masters: Vec<NodeId>,
    /// Replicas.
    pub replicas: Vec<NodeId>,
    /// Write quorum.
    pub w: usize,
}

/// The membership a node applied, with its vote on the next epoch: its host
/// persists it (see
/// [`Output::PersistMembership`](crate::Output::PersistMembership)) and
/// passes it to [`Node::restarted_with`] after a crash, so that the node
/// comes back with the members its peers have, and keeps its promises.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedMembership {
    /// Counts changes: epoch `e + 1` was chosen by the masters of epoch `e`.
    pub epoch: u64,
    /// The proposer whose ballot chose it.
    pub origin: NodeId,
    /// Voting members.
    pub masters: Vec<NodeId>,
    /// Replicas.
    pub replicas: Vec<NodeId>,
    /// Write quorum.
    pub w: usize,
    /// At least every token issued before this epoch: the highest token
    /// reported by the majority that chose it (which voted in the old
    /// epoch no more). A node applying the change raises its own to it, so
    /// that tokens keep increasing when every master that saw a token has
    /// left.
    pub highest: Token,
    /// The highest ballot this node promised for epoch `epoch + 1`.
    pub promised: Ballot,
    /// The change this node accepted for epoch `epoch + 1`, if any.
    pub accepted: Option<(Ballot, Members)>,
}

impl AppliedMembership {
    /// `config` with these members and quorum.
    pub fn apply_to(&self, config: &mut crate::Config) {
        config.masters.clone_from(&self.masters);
        config.replicas.clone_from(&self.replicas);
        config.w = self.w;
    }

    fn members(&self) -> Members {
        Members {
            masters: self.masters.clone(),
            replicas: self.replicas.clone(),
            w: self.w,
        }
    }
}

/// How many ballots a proposer tries before it gives up.
const ATTEMPTS: u32 = 10;

#[derive(Default)]
pub(crate) struct Membership {
    pub(crate) epoch: u64,
    origin: NodeId,
    /// The token floor of the membership in force.
    floor: Token,
    promised: Ballot,
    /// While set, this master votes for no operation (see the module doc).
    pub(crate) accepted: Option<(Ballot, Members)>,
    proposer: Option<Proposer>,
    /// When a master holding an accepted change of unknown fate proposes
    /// itself, to finish whichever change was chosen.
    finish_at: Option<Time>,
    announce: Option<Announce>,
}

/// What a `set_nodes` or `set_w` asks for, applied to whatever membership
/// is in force when the proposer (re)starts.
#[derive(Clone)]
enum Goal {
    Nodes {
        masters: Vec<NodeId>,
        replicas: Vec<NodeId>,
    },
    W(usize),
    /// Only finish the change this node accepted (no request).
    Finish,
}

struct Proposer {
    request: Option<RequestId>,
    goal: Goal,
    /// The epoch being chosen: the one in force plus one.
    epoch: u64,
    ballot: Ballot,
    /// The highest ballot a refusal reported.
    seen: Ballot,
    stage: Stage,
    timer: Time,
    attempts_left: u32,
}

enum Stage {
    Prepare {
        promises: BTreeMap<NodeId, Option<(Ballot, Members)>>,
    },
    Accept {
        members: Members,
        accepted: BTreeSet<NodeId>,
        /// The highest token the masters that accepted reported.
        highest: Token,
    },
}

/// A chosen change, resent to the members that have not confirmed it.
struct Announce {
    /// The request answered once every member confirmed (or the resends ran
    /// out: the change is in force either way, and a member that missed it
    /// learns it on contact).
    request: Option<RequestId>,
    epoch: u64,
    waiting: BTreeSet<NodeId>,
    sends_left: u32,
    timer: Time,
}

impl Membership {
    pub(crate) fn next_timer(&self) -> Option<Time> {
        [
            self.proposer.as_ref().map(|p| p.timer),
            self.finish_at,
            self.announce.as_ref().map(|a| a.timer),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Whether this node, as a master, may vote on an operation of `epoch`.
    pub(crate) fn votes_in(&self, epoch: u64) -> bool {
        epoch == self.epoch && self.accepted.is_none()
    }
}

/// A step from `from` to `to` must keep every new quorum meeting every old
/// one among the old masters (see the module doc).
fn check_step(from: &Members, to: &Members, allow_unsafe: bool) -> Result<(), ConfigError> {
    validate_members(&to.masters, &to.replicas, to.w, allow_unsafe)?;
    if !allow_unsafe && from.w + to.w <= from.masters.len() {
        return Err(ConfigError::StepTooLarge {
            old_w: from.w,
            new_w: to.w,
            old_masters: from.masters.len(),
        });
    }
    Ok(())
}

impl Node {
    fn members_in_force(&self) -> Members {
        Members {
            masters: self.config.masters.clone(),
            replicas: self.config.replicas.clone(),
            w: self.config.w,
        }
    }

    /// The change in force here, as it is persisted and relayed.
    pub(crate) fn membership_in_force(&self) -> AppliedMembership {
        AppliedMembership {
            epoch: self.membership.epoch,
            origin: self.membership.origin,
            masters: self.config.masters.clone(),
            replicas: self.config.replicas.clone(),
            w: self.config.w,
            highest: self.membership.floor,
            promised: self.membership.promised,
            accepted: self.membership.accepted.clone(),
        }
    }

    fn persist_membership(&mut self) {
        let state = self.membership_in_force();
        self.persist(crate::Output::PersistMembership(Box::new(state)));
    }

    fn majority_of_masters(&self) -> usize {
        self.config.masters.len() / 2 + 1
    }

    pub(crate) fn start_set_nodes(
        &mut self,
        now: Time,
        id: RequestId,
        masters: Vec<NodeId>,
        replicas: Vec<NodeId>,
    ) {
        self.start_membership(now, id, Goal::Nodes { masters, replicas });
    }

    pub(crate) fn start_set_w(&mut self, now: Time, id: RequestId, w: usize) {
        self.start_membership(now, id, Goal::W(w));
    }

    fn start_membership(&mut self, now: Time, id: RequestId, goal: Goal) {
        let after = match &self.membership.proposer {
            Some(p) if p.request.is_some() => {
                return self.reply(id, Err(OpError::Invalid(InvalidRequest::AdminBusy)));
            }
            // A proposer that only finishes an accepted change gives way:
            // the new one finishes that change first anyway (Paxos).
            Some(p) => p.seen,
            None => Ballot::default(),
        };
        self.propose(now, Some(id), goal, ATTEMPTS, after);
    }

    fn target(&self, goal: &Goal) -> Option<Members> {
        let mut m = self.members_in_force();
        match goal {
            Goal::Nodes { masters, replicas } => {
                m.masters.clone_from(masters);
                m.replicas.clone_from(replicas);
            }
            Goal::W(w) => m.w = *w,
            Goal::Finish => return None,
        }
        Some(m)
    }

    /// Starts (or restarts, on the membership now in force) a proposer,
    /// with a ballot above `after` and above any this node promised.
    fn propose(
        &mut self,
        now: Time,
        request: Option<RequestId>,
        goal: Goal,
        attempts: u32,
        after: Ballot,
    ) {
        if let Some(target) = self.target(&goal) {
            let from = self.members_in_force();
            if target == from {
                if let Some(id) = request {
                    self.reply(id, Ok(Response::Configured));
                }
                return;
            }
            if let Err(e) = check_step(&from, &target, self.config.allow_unsafe_quorum) {
                if let Some(id) = request {
                    self.reply(id, Err(OpError::Invalid(InvalidRequest::Config(e))));
                }
                return;
            }
        }
        let round = self.membership.promised.round.max(after.round);
        let ballot = Ballot {
            round: round + 1,
            node: self.config.id,
        };
        let epoch = self.membership.epoch + 1;
        self.membership.proposer = Some(Proposer {
            request,
            goal,
            epoch,
            ballot,
            seen: ballot,
            stage: Stage::Prepare {
                promises: BTreeMap::new(),
            },
            timer: now + self.config.rpc_timeout + self.membership_jitter(),
            attempts_left: attempts.saturating_sub(1),
        });
        for i in 0..self.config.masters.len() {
            let to = self.config.masters[i];
            self.send(to, Message::MembershipPrepare { epoch, ballot });
        }
    }

    /// Spreads competing proposers apart.
    fn membership_jitter(&mut self) -> core::time::Duration {
        core::time::Duration::from_micros(self.rng.up_to(micros(self.config.rpc_timeout)))
    }

    /// This node's answer to a proposer whose epoch is not the next one
    /// here: the membership in force if the proposer is behind, a query if
    /// this node is. `None` when the epoch is the next one.
    fn epoch_mismatch(&mut self, from: NodeId, epoch: u64) -> Option<()> {
        if epoch <= self.membership.epoch {
            self.send_membership_state(from);
            Some(())
        } else if epoch > self.membership.epoch + 1 {
            self.send(from, Message::MembershipQuery);
            Some(())
        } else {
            None
        }
    }

    pub(crate) fn on_membership_prepare(&mut self, from: NodeId, epoch: u64, ballot: Ballot) {
        if self.epoch_mismatch(from, epoch).is_some() || self.role != Role::Master {
            return;
        }
        if ballot < self.membership.promised {
            let promised = self.membership.promised;
            return self.send(from, Message::MembershipNack { epoch, promised });
        }
        if ballot > self.membership.promised {
            self.membership.promised = ballot;
            self.persist_membership();
        }
        let accepted = self.membership.accepted.clone();
        self.send(
            from,
            Message::MembershipPromise {
                epoch,
                ballot,
                accepted,
            },
        );
    }

    pub(crate) fn on_membership_accept(
        &mut self,
        now: Time,
        from: NodeId,
        epoch: u64,
        ballot: Ballot,
        members: Members,
    ) {
        if self.epoch_mismatch(from, epoch).is_some() || self.role != Role::Master {
            return;
        }
        if validate_members(
            &members.masters,
            &members.replicas,
            members.w,
            self.config.allow_unsafe_quorum,
        )
        .is_err()
        {
            return;
        }
        if ballot < self.membership.promised {
            let promised = self.membership.promised;
            return self.send(from, Message::MembershipNack { epoch, promised });
        }
        let first = self.membership.accepted.is_none();
        self.membership.promised = ballot;
        self.membership.accepted = Some((ballot, members));
        self.persist_membership();
        // From here on this master votes for nothing until the change is
        // known: operations it granted in the old epoch cannot commit here.
        self.promises = Promises::default();
        if first {
            self.schedule_finish(now);
        }
        let highest = self.highest;
        self.send(
            from,
            Message::MembershipAccepted {
                epoch,
                ballot,
                highest,
            },
        );
    }

    pub(crate) fn on_membership_promise(
        &mut self,
        now: Time,
        from: NodeId,
        epoch: u64,
        ballot: Ballot,
        accepted: Option<(Ballot, Members)>,
    ) {
        let majority = self.majority_of_masters();
        if !self.config.masters.contains(&from) {
            return;
        }
        let Some(p) = &mut self.membership.proposer else {
            return;
        };
        let Stage::Prepare { promises } = &mut p.stage else {
            return;
        };
        if p.epoch != epoch || p.ballot != ballot {
            return;
        }
        promises.insert(from, accepted);
        if promises.len() < majority {
            return;
        }
        // Paxos: a change some master accepted may have been chosen, so the
        // one under the highest ballot must be proposed again.
        let earlier = promises
            .values()
            .flatten()
            .max_by_key(|(b, _)| *b)
            .map(|(_, m)| m.clone());
        let goal = p.goal.clone();
        let members = match earlier {
            Some(m) => m,
            None => match self.target(&goal) {
                Some(m) => m,
                None => {
                    // Nothing to finish: no change was accepted by the
                    // majority that answered, so none was chosen.
                    self.membership.proposer = None;
                    return self.abandon_accepted(now);
                }
            },
        };
        let timer = now + self.config.rpc_timeout + self.membership_jitter();
        let Some(p) = &mut self.membership.proposer else {
            return;
        };
        p.stage = Stage::Accept {
            members: members.clone(),
            accepted: BTreeSet::new(),
            highest: Token(0),
        };
        p.timer = timer;
        for i in 0..self.config.masters.len() {
            let to = self.config.masters[i];
            let msg = Message::MembershipAccept {
                epoch,
                ballot,
                members: members.clone(),
            };
            self.send(to, msg);
        }
    }

    /// A proposer gave up while this node holds an accepted change: the
    /// vote is kept (Paxos forbids forgetting it), and a later finishing
    /// round proposes it again under a higher ballot, rather than block
    /// votes forever.
    fn abandon_accepted(&mut self, now: Time) {
        if self.membership.accepted.is_some() {
            self.schedule_finish(now);
        }
    }

    /// When this master, holding an accepted change of unknown fate, is to
    /// propose itself to finish it.
    fn schedule_finish(&mut self, now: Time) {
        let wait = self.config.rpc_timeout * 4;
        self.membership.finish_at = Some(now + wait + self.membership_jitter());
    }

    pub(crate) fn on_membership_accepted(
        &mut self,
        now: Time,
        from: NodeId,
        epoch: u64,
        ballot: Ballot,
        reported: Token,
    ) {
        let majority = self.majority_of_masters();
        if !self.config.masters.contains(&from) {
            return;
        }
        let Some(p) = &mut self.membership.proposer else {
            return;
        };
        let Stage::Accept {
            members,
            accepted,
            highest,
        } = &mut p.stage
        else {
            return;
        };
        if p.epoch != epoch || p.ballot != ballot {
            return;
        }
        accepted.insert(from);
        *highest = (*highest).max(reported);
        if accepted.len() < majority {
            return;
        }
        let (members, highest) = (members.clone(), *highest);
        let Some(p) = self.membership.proposer.take() else {
            return;
        };
        let chosen = AppliedMembership {
            epoch,
            origin: ballot.node,
            masters: members.masters,
            replicas: members.replicas,
            w: members.w,
            highest,
            promised: Ballot::default(),
            accepted: None,
        };
        self.chosen(now, chosen);
        // The proposer may have finished someone else's change: go on with
        // its own on the membership now in force.
        match p.goal {
            Goal::Finish => {}
            goal if self.target(&goal) == Some(self.members_in_force()) => {
                match &mut self.membership.announce {
                    Some(a) => a.request = p.request,
                    None => {
                        if let Some(id) = p.request {
                            self.reply(id, Ok(Response::Configured));
                        }
                    }
                }
            }
            goal => self.propose(now, p.request, goal, p.attempts_left + 1, p.seen),
        }
    }

    pub(crate) fn on_membership_nack(&mut self, epoch: u64, promised: Ballot) {
        if let Some(p) = &mut self.membership.proposer {
            if p.epoch == epoch && promised > p.seen {
                p.seen = promised;
            }
        }
    }

    /// Applies a chosen change and tells every member, old and new.
    fn chosen(&mut self, now: Time, state: AppliedMembership) {
        let old: Vec<NodeId> = self
            .config
            .masters
            .iter()
            .chain(&self.config.replicas)
            .copied()
            .collect();
        let epoch = state.epoch;
        self.apply_membership(now, state);
        let me = self.config.id;
        let waiting: BTreeSet<NodeId> = old
            .into_iter()
            .chain(self.config.masters.iter().copied())
            .chain(self.config.replicas.iter().copied())
            .filter(|&n| n != me)
            .collect();
        for &to in &waiting {
            self.send_membership_state(to);
        }
        if waiting.is_empty() {
            return;
        }
        self.membership.announce = Some(Announce {
            request: None,
            epoch,
            waiting,
            sends_left: ATTEMPTS - 1,
            timer: now + self.config.rpc_timeout,
        });
    }

    fn apply_membership(&mut self, now: Time, state: AppliedMembership) {
        let before = self.role;
        // A master that skipped an epoch may have been no master in it, and
        // missed what that epoch's masters committed: it is quarantined as
        // if it were promoted.
        let skipped = state.epoch != self.membership.epoch + 1;
        let members = state.members();
        self.membership.epoch = state.epoch;
        self.membership.origin = state.origin;
        self.membership.floor = state.highest;
        self.membership.promised = Ballot::default();
        self.membership.accepted = None;
        self.membership.finish_at = None;
        if self
            .membership
            .announce
            .as_ref()
            .is_some_and(|a| a.epoch < state.epoch)
        {
            self.announced();
        }
        self.config.masters = members.masters;
        self.config.replicas = members.replicas;
        self.config.w = members.w;
        // Persisted before anything that follows, the acknowledgement
        // included: a restart must not bring back the old members.
        self.persist_membership();
        // Promises of the old epoch must not let its operations commit.
        self.promises = Promises::default();
        self.role = self.config.role();
        self.observe_token(state.highest);
        self.replication_roles_changed(now);
        match self.role {
            Role::Master if before != Role::Master || skipped => {
                let until = now + self.config.quarantine();
                self.recovering_until = Some(self.recovering_until.map_or(until, |t| t.max(until)));
                self.observe_token(self.highest);
            }
            Role::Client if before != Role::Client => {
                self.store = Store::new(self.config.seed);
                self.waiters.drop_release_watchers();
            }
            _ => {}
        }
    }

    /// A proposer whose epoch is no longer the next one starts again on the
    /// membership in force (its own goal may already hold there).
    fn rebase_proposer(&mut self, now: Time) {
        let stale = self
            .membership
            .proposer
            .as_ref()
            .is_some_and(|p| p.epoch != self.membership.epoch + 1);
        if !stale {
            return;
        }
        let Some(p) = self.membership.proposer.take() else {
            return;
        };
        match p.goal {
            Goal::Finish => {}
            goal => self.propose(now, p.request, goal, p.attempts_left + 1, p.seen),
        }
    }

    /// A restarted node resumes the membership and the vote it had.
    pub(crate) fn resume_membership(&mut self, applied: &AppliedMembership, now: Time) {
        self.membership.epoch = applied.epoch;
        self.membership.origin = applied.origin;
        self.membership.floor = applied.highest;
        self.observe_token(applied.highest);
        self.membership.promised = applied.promised;
        self.membership.accepted.clone_from(&applied.accepted);
        if self.membership.accepted.is_some() {
            let wait = self.config.rpc_timeout * 4;
            self.membership.finish_at = Some(now + wait);
        }
    }

    pub(crate) fn on_membership_query(&mut self, from: NodeId) {
        // Answered at epoch 0 too: if the asker is newer, it sends its own.
        if from == self.config.id {
            return;
        }
        self.send_membership_state(from);
    }

    fn send_membership_state(&mut self, to: NodeId) {
        let mut state = self.membership_in_force();
        // The vote on the next epoch is this node's own business.
        state.promised = Ballot::default();
        state.accepted = None;
        self.send(to, Message::MembershipState(Box::new(state)));
    }

    /// A chosen membership, announced or relayed: applied if newer.
    pub(crate) fn on_membership_state(
        &mut self,
        now: Time,
        from: NodeId,
        state: AppliedMembership,
    ) {
        if validate_members(
            &state.masters,
            &state.replicas,
            state.w,
            self.config.allow_unsafe_quorum,
        )
        .is_err()
        {
            return;
        }
        let epoch = state.epoch;
        if epoch > self.membership.epoch {
            // `apply_membership` starts this node's vote on the next epoch
            // afresh; the sender's own vote in `state` is never read.
            self.apply_membership(now, state);
            self.rebase_proposer(now);
        } else if epoch < self.membership.epoch {
            // The sender missed a change (it was down while it was made):
            // tell it ours.
            return self.send_membership_state(from);
        }
        if from != self.config.id {
            self.send(from, Message::MembershipAck { epoch });
        }
    }

    pub(crate) fn on_membership_ack(&mut self, from: NodeId, epoch: u64) {
        let Some(a) = &mut self.membership.announce else {
            return;
        };
        if a.epoch == epoch {
            a.waiting.remove(&from);
            if a.waiting.is_empty() {
                self.announced();
            }
        }
    }

    /// The announcement is over: every member confirmed, the resends ran
    /// out, or a newer change followed.
    fn announced(&mut self) {
        if let Some(id) = self.membership.announce.take().and_then(|a| a.request) {
            self.reply(id, Ok(Response::Configured));
        }
    }

    pub(crate) fn membership_timer(&mut self, now: Time) {
        if let Some(a) = &mut self.membership.announce {
            if a.timer <= now {
                if a.sends_left == 0 {
                    self.announced();
                } else {
                    a.sends_left -= 1;
                    a.timer = now + self.config.rpc_timeout;
                    let waiting: Vec<NodeId> = a.waiting.iter().copied().collect();
                    for to in waiting {
                        self.send_membership_state(to);
                    }
                }
            }
        }
        if self.membership.finish_at.is_some_and(|t| t <= now) {
            self.membership.finish_at = None;
            if self.membership.accepted.is_some() && self.membership.proposer.is_none() {
                self.propose(now, None, Goal::Finish, ATTEMPTS, Ballot::default());
            }
        }
        let due = self
            .membership
            .proposer
            .as_ref()
            .is_some_and(|p| p.timer <= now);
        if !due {
            return;
        }
        let Some(p) = self.membership.proposer.take() else {
            return;
        };
        if p.attempts_left == 0 {
            if let Some(id) = p.request {
                // Past the accept stage the change may have been chosen.
                let error = match p.stage {
                    Stage::Accept { .. } => OpError::Unconfirmed { token: None },
                    Stage::Prepare { .. } => OpError::NoQuorum,
                };
                self.reply(id, Err(error));
            }
            if self.membership.accepted.is_some() {
                self.abandon_accepted(now);
            }
            return;
        }
        // The next ballot outbids the highest one seen.
        self.propose(now, p.request, p.goal, p.attempts_left, p.seen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(n: u64, w: usize) -> Members {
        Members {
            masters: (1..=n).map(NodeId).collect(),
            replicas: vec![],
            w,
        }
    }

    #[test]
    fn a_step_must_keep_old_and_new_quorums_meeting() {
        // Five masters with w = 3 to three with w = 2: {4, 5, 3} and {1, 2}
        // are disjoint.
        let e = check_step(&members(5, 3), &members(3, 2), false);
        assert!(matches!(e, Err(ConfigError::StepTooLarge { .. })), "{e:?}");
        assert!(check_step(&members(5, 3), &members(3, 2), true).is_ok());
        assert!(check_step(&members(5, 3), &members(3, 3), false).is_ok());
        assert!(check_step(&members(5, 3), &members(5, 4), false).is_ok());
        assert!(check_step(&members(3, 2), &members(4, 3), false).is_ok());
    }
}
