//! Messages between nodes. Every message is a serde type, framed by [`crate::wire`].

use core::time::Duration;
use serde::{Deserialize, Serialize};

use crate::config::NodeId;
use crate::membership::AppliedMembership;
use crate::request::Token;

/// Identifies one attempt of one operation at its coordinator. Replies carry
/// it back; masters key promises by it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

/// What a coordinator expects to find when it asks for a promise.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// No live entry (lock).
    Absent,
    /// A live entry with this value (update, value-only release and extend).
    Value(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A live entry with this value, or no record of the key at all: a
    /// value-only extend also installs the entry where it is missing.
    ValueOrMissing(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// The write a coordinator commits under its promises.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// Create the entry (lock).
    Create {
        /// Holder's value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Lease, counted from the commit's arrival.
        lease: Duration,
        /// The new tenure's token.
        token: Token,
    },
    /// Replace the value, keeping token and expiry (update).
    SetValue {
        /// New value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// New revision of the entry within its tenure.
        revision: u64,
    },
    /// Expiry := now + lease, installing the entry where it is missing.
    Extend {
        /// Holder's value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// The tenure's token.
        token: Token,
        /// The entry's revision, for an install.
        revision: u64,
        /// New lease.
        lease: Duration,
    },
    /// Turn the entry into a tombstone (release).
    Delete {
        /// The tenure's token, so that a resent commit is recognised.
        token: Token,
    },
}

/// A master's view of an entry, as reported in a grant or a read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    /// Holder's value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    /// Tenure's token.
    pub token: Token,
    /// Revision within the tenure (bumped by `update`).
    pub revision: u64,
    /// Time left on the master's clock.
    pub remaining: Duration,
}

/// A master's promise, with what the coordinator needs to build its write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The highest token the master has seen (or reserved after a restart).
    pub highest: Token,
    /// The live entry, if any.
    pub entry: Option<EntryState>,
}

/// A positive answer from a master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ack {
    /// The promise is granted.
    Granted(Grant),
    /// The commit, abort, extend or release was applied.
    Done,
    /// A read's answer: the live entry, or `None` when absent.
    Read(Option<EntryState>),
}

/// Why a master said no.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// A live entry exists where none was expected.
    Held,
    /// The live entry has another value or token.
    Mismatch,
    /// No live entry exists where one was expected.
    Missing,
    /// Another operation holds a live promise on the key.
    Busy,
    /// The master is in its post-restart quarantine.
    Recovering,
    /// The commit's promise is unknown or expired; nothing was written.
    NoPromise,
    /// The receiver is not a master.
    NotMaster,
    /// The message broke a size limit or rule.
    Invalid,
    /// A holder's one-round extend or release names a tenure older than
    /// the key's latest here (live or released): that tenure is over, and
    /// for a release possibly by this very release, applied earlier.
    Superseded,
}

/// One committed state of an entry in the replication log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replicated {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The state; `deleted` marks a tombstone.
    pub state: EntryState,
    /// Whether the entry was released.
    pub deleted: bool,
}

/// A message from one node to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Phase one: ask for a promise on `key`.
    Prepare {
        /// The attempt.
        op: OpId,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The expected state.
        expect: Expect,
    },
    /// Phase two: apply `write` under the promise of `op`.
    Commit {
        /// The attempt.
        op: OpId,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The write.
        write: Write,
    },
    /// Drop the promise of `op`.
    Abort {
        /// The attempt.
        op: OpId,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// One-round extend by the holder of `(key, value, token)`.
    ExtendHeld {
        /// The attempt.
        op: OpId,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Holder's value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Holder's token.
        token: Token,
        /// New lease.
        lease: Duration,
    },
    /// One-round release by the holder of `(key, value, token)`.
    ReleaseHeld {
        /// The attempt.
        op: OpId,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// Holder's value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        /// Holder's token.
        token: Token,
    },
    /// Quorum read.
    Read {
        /// The attempt.
        op: OpId,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// A master's answer to any of the above.
    Reply {
        /// The attempt answered.
        op: OpId,
        /// Yes or no.
        outcome: Result<Ack, Refusal>,
    },
    /// A batch of a master's log of committed writes, for one replica.
    Replicate {
        /// The master's stream, new at every start of the master, so that a
        /// replica never mistakes a restarted master's numbering for the old.
        stream: u64,
        /// This batch's place in the stream to this replica: 0, 1, 2, ...
        /// A replica applies batches in order and notices a gap.
        seq: u64,
        /// The batch begins a copy of every live entry of the master (the
        /// answer to a [`SyncRequest`](Message::SyncRequest)): it covers
        /// whatever came before it in the stream.
        snapshot: bool,
        /// Entries, each idempotent to apply.
        entries: Vec<Replicated>,
    },
    /// Sent by masters to replicas every RPC time-out: how many batches the
    /// stream has carried, so that a replica notices a lost tail.
    ReplicateMark {
        /// The master's stream.
        stream: u64,
        /// Batches sent so far to this replica (the next `seq`).
        sent: u64,
    },
    /// A replica that starts empty, or that missed part of a master's
    /// stream, asks that master for a snapshot.
    SyncRequest,
    /// A membership or quorum change.
    Membership {
        /// Orders changes; nodes apply only newer epochs.
        epoch: u64,
        /// New voting members.
        masters: Vec<NodeId>,
        /// New replicas.
        replicas: Vec<NodeId>,
        /// New quorum.
        w: usize,
    },
    /// Confirms that `epoch` is applied.
    MembershipAck {
        /// The epoch applied.
        epoch: u64,
    },
    /// Sent to a node that answered `NotMaster`: the coordinator's view of
    /// the members is out of date (a client-only node is no member, so a
    /// `set_nodes` never reached it). Asks for the membership in force.
    MembershipQuery,
    /// The answer: the change in force at the sender, with its initiator, so
    /// that the asker orders it as the members do.
    MembershipState(AppliedMembership),
}
