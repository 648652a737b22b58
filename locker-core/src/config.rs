//! Node configuration, validated up front.

use core::time::Duration;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::time::Drift;

/// Identifies a node of the cluster. The host maps ids to addresses.
#[derive(
    Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct NodeId(pub u64);

impl core::fmt::Display for NodeId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// What a node does in the cluster, derived from the member lists.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Votes in the write quorum and stores every committed entry.
    Master,
    /// Stores entries from the masters' replication log; serves dirty reads.
    Replica,
    /// Stores nothing; coordinates requests made to it.
    Client,
}

/// How a coordinator backs off between attempts of a contended operation.
///
/// Attempt `n` (from 0) waits a uniformly random time in
/// `[0, min(max, initial * 2^n)]`: full jitter, so contending coordinators
/// spread out instead of colliding again.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Upper bound of the first backoff.
    pub initial: Duration,
    /// Cap on any backoff.
    pub max: Duration,
    /// How often a waiting lock asks again while the key is held or promised
    /// at so many masters that it cannot succeed. Those masters tell it as
    /// soon as the key is free ([`Message::Freed`](crate::Message::Freed)),
    /// so this only bounds the wait when that news is lost.
    pub held_poll: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(2),
            max: Duration::from_millis(100),
            held_poll: Duration::from_secs(1),
        }
    }
}

/// Everything a node needs to know before it starts.
///
/// ```
/// use locker_core::{Config, NodeId};
/// let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
/// let config = Config::new(NodeId(1), masters, vec![NodeId(4)]);
/// assert_eq!(config.w, 2);
/// config.validate().unwrap();
///
/// let mut unsafe_config = config.clone();
/// unsafe_config.w = 1;
/// assert!(unsafe_config.validate().is_err());
/// unsafe_config.allow_unsafe_quorum = true;
/// assert!(unsafe_config.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The voting members.
    pub masters: Vec<NodeId>,
    /// Members that receive the replication log.
    pub replicas: Vec<NodeId>,
    /// Write quorum. Must satisfy `2 * w > masters.len()` unless
    /// `allow_unsafe_quorum` is set.
    pub w: usize,
    /// Accept a `w` that is not a majority. Mutual exclusion is then lost
    /// under partitions; only for experiments and checker validation.
    pub allow_unsafe_quorum: bool,
    /// Masters vote whatever the coordinator's membership epoch, and keep
    /// voting after accepting a change. Unsafe across membership changes
    /// (an old quorum and a new one can both grant a key); only for
    /// checker validation.
    pub ignore_membership_epochs: bool,
    /// How long a master keeps a promise before dropping it.
    pub promise_timeout: Duration,
    /// How long a coordinator waits for the replies of one phase.
    pub rpc_timeout: Duration,
    /// The longest lease a request may ask for; also bounds the quarantine of
    /// a restarted master.
    pub max_lease: Duration,
    /// Bound on the relative rate error of any node's clock (0.001 = 0.1%).
    pub max_drift: f64,
    /// How often masters push their log of committed writes to the replicas.
    pub push_interval: Duration,
    /// Backoff between attempts of a contended operation.
    pub retry: RetryPolicy,
    /// Largest accepted key, in bytes.
    pub max_key_len: usize,
    /// Largest accepted value, in bytes.
    pub max_value_len: usize,
    /// How many tokens a master reserves each time it asks its host to
    /// persist a new token ceiling.
    pub token_block: u64,
    /// Seed of the node's random generator (operation ids, retry jitter).
    /// Give every start of a node a different seed.
    pub seed: u64,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum ConfigError {
    /// There must be at least one master.
    #[error("no masters: a cluster needs at least one master")]
    NoMasters,
    /// A node is listed twice, or as both master and replica.
    #[error("node {0} is listed more than once in masters and replicas")]
    DuplicateNode(NodeId),
    /// `w` is zero or larger than the number of masters.
    #[error("w = {w} is impossible with {masters} masters: use 1..={masters}")]
    QuorumOutOfRange {
        /// The refused quorum.
        w: usize,
        /// Number of masters.
        masters: usize,
    },
    /// `2w <= masters`: two disjoint quorums could grant the same key.
    #[error(
        "w = {w} is not a majority of {masters} masters, so two holders could lock one key; \
         use w >= {majority}, or set allow_unsafe_quorum for experiments"
    )]
    UnsafeQuorum {
        /// The refused quorum.
        w: usize,
        /// Number of masters.
        masters: usize,
        /// The smallest safe quorum.
        majority: usize,
    },
    /// A membership change too large for one step: some quorum of the new
    /// members could miss every quorum of the old while old leases live.
    #[error(
        "changing w from {old_w} to {new_w} with {old_masters} masters before the change is too large \
         for one step (old w + new w must exceed the old number of masters): change one master, \
         or w, at a time"
    )]
    StepTooLarge {
        /// The quorum in force.
        old_w: usize,
        /// The quorum asked for.
        new_w: usize,
        /// Masters in force.
        old_masters: usize,
    },
    /// `max_drift` outside `[0, 0.1)`.
    #[error("max_drift = {0} is out of range: use a fraction in [0, 0.1), e.g. 0.001")]
    DriftOutOfRange(String),
    /// A duration that must be positive is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(String),
    /// A size limit or block size of zero.
    #[error("{0} must be greater than zero")]
    ZeroLimit(String),
}

impl Config {
    /// A configuration with defaults for everything but membership, and `w`
    /// set to the smallest majority of `masters`.
    pub fn new(id: NodeId, masters: Vec<NodeId>, replicas: Vec<NodeId>) -> Config {
        let w = masters.len() / 2 + 1;
        Config {
            id,
            masters,
            replicas,
            w,
            allow_unsafe_quorum: false,
            ignore_membership_epochs: false,
            promise_timeout: Duration::from_millis(500),
            rpc_timeout: Duration::from_millis(250),
            max_lease: Duration::from_secs(60),
            max_drift: 0.001,
            push_interval: Duration::from_millis(50),
            retry: RetryPolicy::default(),
            max_key_len: 1024,
            max_value_len: 64 * 1024,
            token_block: 1024,
            seed: id.0,
        }
    }

    /// Checks every rule; [`Node::new`](crate::Node::new) calls it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_members(
            &self.masters,
            &self.replicas,
            self.w,
            self.allow_unsafe_quorum,
        )?;
        if !(0.0..0.1).contains(&self.max_drift) {
            return Err(ConfigError::DriftOutOfRange(self.max_drift.to_string()));
        }
        for (name, d) in [
            ("promise_timeout", self.promise_timeout),
            ("rpc_timeout", self.rpc_timeout),
            ("max_lease", self.max_lease),
            ("push_interval", self.push_interval),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroDuration(name.into()));
            }
        }
        for (name, n) in [
            ("max_key_len", self.max_key_len as u64),
            ("max_value_len", self.max_value_len as u64),
            ("token_block", self.token_block),
        ] {
            if n == 0 {
                return Err(ConfigError::ZeroLimit(name.into()));
            }
        }
        Ok(())
    }

    /// This node's role under the current member lists.
    pub fn role(&self) -> Role {
        role_of(self.id, &self.masters, &self.replicas)
    }

    /// How long a restarted master refuses to vote: every lease or promise it
    /// could have granted before it lost its memory has expired by then, on
    /// any clock within the drift bound.
    pub fn quarantine(&self) -> Duration {
        self.drift()
            .stretch(self.max_lease + self.promise_timeout + self.rpc_timeout)
    }

    pub(crate) fn drift(&self) -> Drift {
        Drift::from_fraction(self.max_drift)
    }
}

pub(crate) fn role_of(id: NodeId, masters: &[NodeId], replicas: &[NodeId]) -> Role {
    if masters.contains(&id) {
        Role::Master
    } else if replicas.contains(&id) {
        Role::Replica
    } else {
        Role::Client
    }
}

/// The membership rules, shared by [`Config::validate`] and `set_nodes`/`set_w`.
pub(crate) fn validate_members(
    masters: &[NodeId],
    replicas: &[NodeId],
    w: usize,
    allow_unsafe_quorum: bool,
) -> Result<(), ConfigError> {
    if masters.is_empty() {
        return Err(ConfigError::NoMasters);
    }
    let mut all: Vec<NodeId> = masters.iter().chain(replicas).copied().collect();
    all.sort_unstable();
    if let Some(pair) = all.windows(2).find(|p| p[0] == p[1]) {
        return Err(ConfigError::DuplicateNode(pair[0]));
    }
    let n = masters.len();
    if w == 0 || w > n {
        return Err(ConfigError::QuorumOutOfRange { w, masters: n });
    }
    if 2 * w <= n && !allow_unsafe_quorum {
        return Err(ConfigError::UnsafeQuorum {
            w,
            masters: n,
            majority: n / 2 + 1,
        });
    }
    Ok(())
}
