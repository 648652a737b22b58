//! Messages between nodes. Every message is a serde type, framed by [`crate::wire`].

use core::time::Duration;
use serde::{Deserialize, Serialize};

use crate::membership::{AppliedMembership, Ballot, Members};
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
    /// The master is in its post-restart quarantine, for `remaining` more
    /// on its clock: a coordinator skips it until then.
    Recovering {
        /// Time left of the quarantine.
        remaining: Duration,
    },
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
    /// The request's membership epoch is not the master's, or the master has
    /// accepted a change not yet known to be chosen: it votes for no
    /// operation until the members agree (it sends the newer membership, or
    /// asks for it, alongside).
    OtherEpoch,
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
        /// The coordinator's membership epoch: a master votes only in its own.
        epoch: u64,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The expected state.
        expect: Expect,
        /// A lock that may wait: if the key is held or promised here, send
        /// [`Freed`](Message::Freed) when it is neither.
        watch: bool,
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
        /// The coordinator's membership epoch.
        epoch: u64,
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
        /// The coordinator's membership epoch.
        epoch: u64,
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
        /// The coordinator's membership epoch.
        epoch: u64,
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
        /// The master's membership epoch: a replica that missed a change
        /// (it was down while the change was announced) learns of it here.
        epoch: u64,
    },
    /// A replica that starts empty, or that missed part of a master's
    /// stream, asks that master for a snapshot.
    SyncRequest,
    /// Membership phase one: the proposer of a change to epoch `epoch` asks
    /// the masters of epoch `epoch - 1` to promise `ballot`.
    MembershipPrepare {
        /// The epoch being chosen.
        epoch: u64,
        /// The proposer's ballot.
        ballot: Ballot,
    },
    /// A master promises `ballot` and reports the change it accepted for
    /// `epoch`, if any.
    MembershipPromise {
        /// The epoch being chosen.
        epoch: u64,
        /// The promised ballot.
        ballot: Ballot,
        /// The change this master accepted, with its ballot.
        accepted: Option<(Ballot, Members)>,
    },
    /// Membership phase two: accept `members` as epoch `epoch` under `ballot`.
    MembershipAccept {
        /// The epoch being chosen.
        epoch: u64,
        /// The proposer's ballot.
        ballot: Ballot,
        /// The proposed members and quorum.
        members: Members,
    },
    /// A master accepted `ballot`'s change for `epoch`; it votes in the
    /// old epoch no more, so `highest` bounds every token it helped issue.
    MembershipAccepted {
        /// The epoch being chosen.
        epoch: u64,
        /// The accepted ballot.
        ballot: Ballot,
        /// The highest token the master has seen.
        highest: Token,
    },
    /// A master has promised a higher ballot than the proposer's.
    MembershipNack {
        /// The epoch being chosen.
        epoch: u64,
        /// The ballot promised instead.
        promised: Ballot,
    },
    /// Confirms that the membership of `epoch` (sent as a
    /// [`MembershipState`](Message::MembershipState)) is applied.
    MembershipAck {
        /// The epoch applied.
        epoch: u64,
    },
    /// Asks for the membership in force at the receiver: sent by a node
    /// that met a newer epoch than its own, or a coordinator told
    /// `NotMaster` (a client-only node is no member, so no change is sent
    /// to it).
    MembershipQuery,
    /// The membership in force at the sender, chosen for its epoch: a node
    /// applies it if the epoch is newer than its own. It is how a chosen
    /// change is announced, and the answer to a query.
    MembershipState(Box<AppliedMembership>),
    /// A key that a watching lock found held or promised at this master is
    /// free here now (released, expired, or its promise ended): the lock may
    /// try again at once instead of polling.
    Freed {
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
}
