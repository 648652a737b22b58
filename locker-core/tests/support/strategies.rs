//! proptest strategies for every wire type, shared by the wire tests (and
//! usable by fuzz harnesses later).

use std::time::Duration;

use locker_core::{
    Ack, AppliedMembership, Ballot, ConfigError, EntryState, EntryView, Expect, Grant,
    InvalidRequest, Lease, Members, Message, NodeId, OpError, OpId, Refusal, Replicated, Reply,
    Request, Response, Role, Summary, Time, Token, Write,
};
use proptest::collection::vec;
use proptest::prelude::*;

pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..24)
}

pub fn duration() -> impl Strategy<Value = Duration> {
    (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n))
}

pub fn token() -> impl Strategy<Value = Token> {
    any::<u64>().prop_map(Token)
}

pub fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u64>().prop_map(NodeId)
}

pub fn nodes() -> impl Strategy<Value = Vec<NodeId>> {
    vec(node_id(), 0..5)
}

pub fn entry_state() -> impl Strategy<Value = EntryState> {
    (bytes(), token(), any::<u64>(), duration()).prop_map(|(value, token, revision, remaining)| {
        EntryState {
            value,
            token,
            revision,
            remaining,
        }
    })
}

pub fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Absent),
        bytes().prop_map(Expect::Value),
        bytes().prop_map(Expect::ValueOrMissing),
    ]
}

pub fn write() -> impl Strategy<Value = Write> {
    prop_oneof![
        (bytes(), duration(), token()).prop_map(|(value, lease, token)| Write::Create {
            value,
            lease,
            token
        }),
        (bytes(), any::<u64>()).prop_map(|(value, revision)| Write::SetValue { value, revision }),
        (bytes(), token(), any::<u64>(), duration()).prop_map(|(value, token, revision, lease)| {
            Write::Extend {
                value,
                token,
                revision,
                lease,
            }
        }),
        token().prop_map(|token| Write::Delete { token }),
    ]
}

pub fn refusal() -> impl Strategy<Value = Refusal> {
    prop_oneof![
        Just(Refusal::Held),
        Just(Refusal::Mismatch),
        Just(Refusal::Missing),
        Just(Refusal::Busy),
        (0u64..20_000_000).prop_map(|us| Refusal::Recovering {
            remaining: Duration::from_micros(us)
        }),
        Just(Refusal::NoPromise),
        Just(Refusal::NotMaster),
        Just(Refusal::Invalid),
        Just(Refusal::Superseded),
        Just(Refusal::OtherEpoch),
    ]
}

pub fn ack() -> impl Strategy<Value = Ack> {
    prop_oneof![
        (token(), proptest::option::of(entry_state()))
            .prop_map(|(highest, entry)| Ack::Granted(Grant { highest, entry })),
        Just(Ack::Done),
        proptest::option::of(entry_state()).prop_map(Ack::Read),
    ]
}

pub fn ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u64>()).prop_map(|(round, node)| Ballot {
        round,
        node: NodeId(node),
    })
}

pub fn members() -> impl Strategy<Value = Members> {
    (nodes(), nodes(), any::<usize>()).prop_map(|(masters, replicas, w)| Members {
        masters,
        replicas,
        w,
    })
}

pub fn message() -> impl Strategy<Value = Message> {
    let op = || any::<u64>().prop_map(OpId);
    prop_oneof![
        (op(), any::<u64>(), bytes(), expect(), any::<bool>()).prop_map(
            |(op, epoch, key, expect, watch)| Message::Prepare {
                op,
                epoch,
                key,
                expect,
                watch,
            }
        ),
        (op(), bytes(), write()).prop_map(|(op, key, write)| Message::Commit { op, key, write }),
        (op(), bytes()).prop_map(|(op, key)| Message::Abort { op, key }),
        (op(), bytes(), bytes(), token(), duration()).prop_map(|(op, key, value, token, lease)| {
            Message::ExtendHeld {
                op,
                epoch: token.0 % 3,
                key,
                value,
                token,
                lease,
            }
        }),
        (op(), bytes(), bytes(), token()).prop_map(|(op, key, value, token)| {
            Message::ReleaseHeld {
                op,
                epoch: op.0 % 5,
                key,
                value,
                token,
            }
        }),
        (op(), any::<u64>(), bytes()).prop_map(|(op, epoch, key)| Message::Read { op, epoch, key }),
        (
            op(),
            prop_oneof![ack().prop_map(Ok), refusal().prop_map(Err)]
        )
            .prop_map(|(op, outcome)| Message::Reply { op, outcome }),
        vec(
            (bytes(), entry_state(), any::<bool>()).prop_map(|(key, state, deleted)| Replicated {
                key,
                state,
                deleted
            }),
            0..4
        )
        .prop_flat_map(|entries| (any::<u64>(), any::<u64>(), any::<bool>(), Just(entries)))
        .prop_map(|(stream, seq, snapshot, entries)| Message::Replicate {
            stream,
            seq,
            snapshot,
            entries
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(stream, sent)| Message::ReplicateMark {
            stream,
            sent,
            epoch: sent % 4,
        }),
        Just(Message::SyncRequest),
        bytes().prop_map(|key| Message::Freed { key }),
        (any::<u64>(), ballot())
            .prop_map(|(epoch, ballot)| Message::MembershipPrepare { epoch, ballot }),
        (
            any::<u64>(),
            ballot(),
            proptest::option::of((ballot(), members()))
        )
            .prop_map(|(epoch, ballot, accepted)| Message::MembershipPromise {
                epoch,
                ballot,
                accepted
            }),
        (any::<u64>(), ballot(), members()).prop_map(|(epoch, ballot, members)| {
            Message::MembershipAccept {
                epoch,
                ballot,
                members,
            }
        }),
        (any::<u64>(), ballot(), token()).prop_map(|(epoch, ballot, highest)| {
            Message::MembershipAccepted {
                epoch,
                ballot,
                highest,
            }
        }),
        (any::<u64>(), ballot())
            .prop_map(|(epoch, promised)| Message::MembershipNack { epoch, promised }),
        any::<u64>().prop_map(|epoch| Message::MembershipAck { epoch }),
        Just(Message::MembershipQuery),
        (any::<u64>(), any::<u64>(), nodes(), nodes(), any::<usize>()).prop_map(
            |(epoch, origin, masters, replicas, w)| {
                Message::MembershipState(Box::new(AppliedMembership {
                    epoch,
                    origin: NodeId(origin),
                    masters,
                    replicas,
                    w,
                    highest: Token(epoch),
                    promised: Ballot::default(),
                    accepted: None,
                }))
            }
        ),
    ]
}

pub fn request() -> impl Strategy<Value = Request> {
    let t = || proptest::option::of(token());
    prop_oneof![
        (bytes(), bytes(), duration(), duration()).prop_map(|(key, value, lease, wait)| {
            Request::Lock {
                key,
                value,
                lease,
                wait,
            }
        }),
        (bytes(), bytes(), bytes(), duration()).prop_map(|(key, value, new_value, wait)| {
            Request::Update {
                key,
                value,
                new_value,
                wait,
            }
        }),
        (bytes(), bytes(), duration(), t(), duration()).prop_map(
            |(key, value, lease, token, wait)| Request::Extend {
                key,
                value,
                lease,
                token,
                wait
            }
        ),
        (bytes(), bytes(), t(), duration()).prop_map(|(key, value, token, wait)| {
            Request::Release {
                key,
                value,
                token,
                wait,
            }
        }),
        bytes().prop_map(|key| Request::DirtyRead { key }),
        (bytes(), duration()).prop_map(|(key, wait)| Request::Read { key, wait }),
        (bytes(), duration()).prop_map(|(key, timeout)| Request::WaitFor { key, timeout }),
        (bytes(), duration()).prop_map(|(key, timeout)| Request::WaitForRelease { key, timeout }),
        (nodes(), nodes()).prop_map(|(masters, replicas)| Request::SetNodes { masters, replicas }),
        any::<usize>().prop_map(|w| Request::SetW { w }),
        Just(Request::Summary),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Master), Just(Role::Replica), Just(Role::Client)]
}

fn lease() -> impl Strategy<Value = Lease> {
    (token(), duration(), duration(), any::<u64>()).prop_map(|(token, validity, waited, t)| Lease {
        token,
        validity,
        waited,
        valid_until: Time::from_micros(t),
    })
}

fn entry_view() -> impl Strategy<Value = EntryView> {
    (bytes(), token(), duration()).prop_map(|(value, token, remaining)| EntryView {
        value,
        token,
        remaining,
    })
}

fn summary() -> impl Strategy<Value = Summary> {
    (
        node_id(),
        role(),
        any::<bool>(),
        (
            any::<usize>(),
            any::<usize>(),
            any::<usize>(),
            any::<usize>(),
        ),
        token(),
        nodes(),
        nodes(),
        any::<usize>(),
    )
        .prop_map(
            |(
                id,
                role,
                recovering,
                (leases, tombstones, promises, coordinating),
                highest_token,
                masters,
                replicas,
                w,
            )| {
                Summary {
                    id,
                    role,
                    recovering,
                    leases,
                    tombstones,
                    promises,
                    coordinating,
                    highest_token,
                    masters,
                    replicas,
                    w,
                }
            },
        )
}

fn config_error() -> impl Strategy<Value = ConfigError> {
    prop_oneof![
        Just(ConfigError::NoMasters),
        node_id().prop_map(ConfigError::DuplicateNode),
        (any::<usize>(), any::<usize>())
            .prop_map(|(w, masters)| ConfigError::QuorumOutOfRange { w, masters }),
        (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(w, masters, majority)| {
            ConfigError::UnsafeQuorum {
                w,
                masters,
                majority,
            }
        }),
        ".{0,8}".prop_map(ConfigError::DriftOutOfRange),
        ".{0,8}".prop_map(ConfigError::ZeroDuration),
        ".{0,8}".prop_map(ConfigError::ZeroLimit),
    ]
}

fn invalid_request() -> impl Strategy<Value = InvalidRequest> {
    prop_oneof![
        Just(InvalidRequest::EmptyKey),
        (any::<usize>(), any::<usize>())
            .prop_map(|(len, max)| InvalidRequest::KeyTooLong { len, max }),
        (any::<usize>(), any::<usize>())
            .prop_map(|(len, max)| InvalidRequest::ValueTooLong { len, max }),
        Just(InvalidRequest::ZeroLease),
        (duration(), duration())
            .prop_map(|(asked, max)| InvalidRequest::LeaseTooLong { asked, max }),
        config_error().prop_map(InvalidRequest::Config),
        Just(InvalidRequest::AdminBusy),
    ]
}

pub fn op_error() -> impl Strategy<Value = OpError> {
    prop_oneof![
        Just(OpError::Held),
        Just(OpError::NoQuorum),
        Just(OpError::NotOwner),
        Just(OpError::NotFound),
        Just(OpError::Timeout),
        proptest::option::of(token()).prop_map(|token| OpError::Unconfirmed { token }),
        Just(OpError::Recovering),
        invalid_request().prop_map(OpError::Invalid),
        Just(OpError::NotStored),
    ]
}

pub fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        lease().prop_map(Response::Locked),
        lease().prop_map(Response::Extended),
        token().prop_map(|token| Response::Updated { token }),
        Just(Response::Released),
        proptest::option::of(entry_view()).prop_map(Response::Value),
        entry_view().prop_map(Response::Present),
        Just(Response::Gone),
        Just(Response::Configured),
        summary().prop_map(Response::Summary),
    ]
}

pub fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![response().prop_map(Ok), op_error().prop_map(Err)]
}
