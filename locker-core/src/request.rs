//! What applications ask of a node, and what they get back.
//!
//! These types are also the client protocol: a process that is not a cluster
//! member sends a [`Request`] to any node, which coordinates it and answers
//! with a [`Reply`].

use core::time::Duration;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::{ConfigError, NodeId, Role};
use crate::time::Time;

/// The host's handle for one request; echoed in the matching reply.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId(pub u64);

/// A fencing token. Every successful `lock` gets one strictly greater than the
/// token of every lock of any key that completed before it started; pass it to
/// the resources you protect and have them reject smaller ones.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Token(pub u64);

impl core::fmt::Display for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An operation on the lease store.
///
/// `wait` bounds how long the coordinator keeps retrying a contended or
/// unreachable operation before it answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Create `key` with `value` if it is absent, for `lease`.
    Lock {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The holder's value (who holds it).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// How long the entry lives unless extended.
        lease: Duration,
        /// How long to keep retrying while the key is held or no quorum answers.
        wait: Duration,
    },
    /// Compare-and-set of the value; the lease and token are unchanged.
    Update {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value expected now.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The value to store.
        #[serde(with = "serde_bytes")]
        new_value: Vec<u8>,
        /// Retry bound.
        wait: Duration,
    },
    /// Set the entry's expiry to now + `lease` on the masters, installing it
    /// on masters that lack it. With `token`, one round; without, two.
    Extend {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The holder's value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The new lease, counted from now.
        lease: Duration,
        /// The holder's fencing token, if it knows it.
        token: Option<Token>,
        /// Retry bound.
        wait: Duration,
    },
    /// Delete the entry, only if held with `value` (and `token`, if given).
    Release {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The holder's value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The holder's fencing token, if it knows it.
        token: Option<Token>,
        /// Retry bound.
        wait: Duration,
    },
    /// The node's local copy; no network, may be stale.
    DirtyRead {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A linearizable read from a quorum of masters.
    Read {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Retry bound.
        wait: Duration,
    },
    /// Answer once `key` is present in the node's local store.
    WaitFor {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Give up after this long.
        timeout: Duration,
    },
    /// Answer once `key` is absent from the node's local store.
    WaitForRelease {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Give up after this long.
        timeout: Duration,
    },
    /// Replace the member lists on every node (old and new members).
    SetNodes {
        /// New voting members.
        masters: Vec<NodeId>,
        /// New replicas.
        replicas: Vec<NodeId>,
    },
    /// Replace the write quorum on every node.
    SetW {
        /// New quorum; must be a majority unless the node allows unsafe quorums.
        w: usize,
    },
    /// Counts of leases and promises on this node.
    Summary,
}

impl Request {
    /// The key the request is about, if any.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Request::Lock { key, .. }
            | Request::Update { key, .. }
            | Request::Extend { key, .. }
            | Request::Release { key, .. }
            | Request::DirtyRead { key }
            | Request::Read { key, .. }
            | Request::WaitFor { key, .. }
            | Request::WaitForRelease { key, .. } => Some(key),
            Request::SetNodes { .. } | Request::SetW { .. } | Request::Summary => None,
        }
    }
}

/// The holder's side of a granted or extended lease.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The fencing token of this tenure.
    pub token: Token,
    /// How long the holder may act as holder, counted from the moment it
    /// *sent* its request plus [`Lease::waited`] (never from when the reply
    /// arrived).
    pub validity: Duration,
    /// How long the coordinator held the request before the attempt that
    /// succeeded began (waiting for a held key, retrying), scaled down for
    /// clock drift: at least this much has passed on the holder's clock too
    /// between its send and the start of its tenure, so the holder may count
    /// `validity` from `send + waited`. Without it a lock that waited longer
    /// than its lease would be useless to its holder.
    pub waited: Duration,
    /// The same deadline on the coordinating node's clock: the instant its
    /// successful attempt started plus `validity`.
    pub valid_until: Time,
}

/// One entry as a read sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryView {
    /// The holder's value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// The tenure's fencing token.
    pub token: Token,
    /// Time left before the entry expires on the answering node's clock.
    pub remaining: Duration,
}

/// Counts describing one node, for operators.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Whether it refuses to vote after a restart.
    pub recovering: bool,
    /// Live entries.
    pub leases: usize,
    /// Released entries kept until their expiry.
    pub tombstones: usize,
    /// Live promises.
    pub promises: usize,
    /// Operations this node is coordinating.
    pub coordinating: usize,
    /// Highest fencing token this node has seen.
    pub highest_token: Token,
    /// Current voting members.
    pub masters: Vec<NodeId>,
    /// Current replicas.
    pub replicas: Vec<NodeId>,
    /// Current write quorum.
    pub w: usize,
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// `lock` succeeded.
    Locked(Lease),
    /// `extend_lease` succeeded.
    Extended(Lease),
    /// `update` succeeded; the token is unchanged.
    Updated {
        /// The entry's token.
        token: Token,
    },
    /// `release` succeeded.
    Released,
    /// A read's answer: `None` when the key is absent.
    Value(Option<EntryView>),
    /// `wait_for` saw the key.
    Present(EntryView),
    /// `wait_for_release` saw the key gone.
    Gone,
    /// `set_nodes` or `set_w` was applied by every node.
    Configured,
    /// `summary`.
    Summary(Summary),
}

/// Why an operation failed. Every variant says what the caller can do.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum OpError {
    /// The key is held by someone else; retry later or wait for release.
    #[error("held: the key is held by another holder")]
    Held,
    /// Fewer than `w` masters answered in time; the cluster is partitioned or down.
    #[error("no_quorum: fewer than w masters could be reached")]
    NoQuorum,
    /// The entry exists with another value or token: you are not its holder.
    #[error("not_owner: the entry has another value or token")]
    NotOwner,
    /// The key does not exist (it was released or has expired).
    #[error("not_found: the key does not exist")]
    NotFound,
    /// The wait or timeout given in the request ran out.
    #[error("timeout: the request's time ran out")]
    Timeout,
    /// Some masters applied the write but fewer than `w` confirmed it; the
    /// outcome is unknown. Read the key, or release it with the token.
    #[error("unconfirmed: the write reached fewer than w masters; outcome unknown")]
    Unconfirmed {
        /// The token the write carried, so that the caller can release it.
        token: Option<Token>,
    },
    /// Masters are refusing to vote after a restart; retry after their quarantine.
    #[error("recovering: masters are in their post-restart quarantine")]
    Recovering,
    /// The request is malformed or out of bounds; fix it.
    #[error("invalid request: {0}")]
    Invalid(#[from] InvalidRequest),
    /// The operation needs a store and this node keeps none (a client-only
    /// node); send it to a master or replica.
    #[error("not_stored: this node stores no entries; ask a master or replica")]
    NotStored,
}

impl OpError {
    /// A short stable name, for logs and the command line's JSON.
    pub fn code(&self) -> &'static str {
        match self {
            OpError::Held => "held",
            OpError::NoQuorum => "no_quorum",
            OpError::NotOwner => "not_owner",
            OpError::NotFound => "not_found",
            OpError::Timeout => "timeout",
            OpError::Unconfirmed { .. } => "unconfirmed",
            OpError::Recovering => "recovering",
            OpError::Invalid(_) => "invalid",
            OpError::NotStored => "not_stored",
        }
    }
}

/// What is wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq, Error, Serialize, Deserialize)]
pub enum InvalidRequest {
    /// Keys must not be empty.
    #[error("the key is empty")]
    EmptyKey,
    /// Key longer than the configured maximum.
    #[error("the key is {len} bytes; the limit is {max}")]
    KeyTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Value longer than the configured maximum.
    #[error("the value is {len} bytes; the limit is {max}")]
    ValueTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A lease of zero.
    #[error("the lease must be longer than zero")]
    ZeroLease,
    /// A lease above `max_lease`.
    #[error("the lease of {asked:?} exceeds max_lease {max:?}")]
    LeaseTooLong {
        /// The lease asked for.
        asked: Duration,
        /// The limit.
        max: Duration,
    },
    /// A membership or quorum change that breaks a rule.
    #[error("bad configuration: {0}")]
    Config(#[from] ConfigError),
    /// Another membership change is in progress on this node.
    #[error("another set_nodes or set_w is in progress")]
    AdminBusy,
}

/// The answer to one request.
pub type Reply = Result<Response, OpError>;
