//! Arbitrary messages and requests never panic a node or break its invariants.

mod support;

use locker_core::{Config, Node, NodeId, RequestId, Time};
use proptest::prelude::*;
use support::strategies::{message, request};

#[derive(Debug, Clone)]
enum Input {
    Message(u64, locker_core::Message),
    Request(locker_core::Request),
    Tick(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        (0u64..6, message()).prop_map(|(from, m)| Input::Message(from, m)),
        request().prop_map(Input::Request),
        (0u64..2_000_000).prop_map(Input::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_inputs_never_panic(
        me in 1u64..6,
        restarted in any::<bool>(),
        inputs in proptest::collection::vec(input(), 1..40),
    ) {
        let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
        let config = Config::new(NodeId(me), masters, vec![NodeId(4)]);
        let mut now = Time::from_millis(1);
        let mut node = if restarted {
            Node::restarted(config, now, Some(locker_core::Token(10))).unwrap()
        } else {
            Node::new(config, now).unwrap()
        };
        for (i, inp) in inputs.into_iter().enumerate() {
            match inp {
                Input::Message(from, m) => node.handle_message(now, NodeId(from), m),
                Input::Request(r) => node.handle_request(now, RequestId(i as u64), r),
                Input::Tick(us) => {
                    now = now + std::time::Duration::from_micros(us);
                    node.handle_timeout(now);
                    node.check_invariants(now).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
            while node.poll_output().is_some() {}
            if let Some(t) = node.poll_timeout() {
                if t <= now {
                    node.handle_timeout(now);
                    while node.poll_output().is_some() {}
                }
            }
        }
    }
}

fn small_message() -> impl Strategy<Value = locker_core::Message> {
    use locker_core::{EntryState, Expect, Message, OpId, Replicated, Token, Write};
    use std::time::Duration;
    let key = || prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec())];
    let val = || prop_oneof![Just(b"x".to_vec()), Just(b"y".to_vec())];
    let op = || (0u64..3).prop_map(OpId);
    let tok = || (0u64..4).prop_map(Token);
    let dur = || (0u64..3000).prop_map(Duration::from_millis);
    let write = prop_oneof![
        (val(), dur(), tok()).prop_map(|(value, lease, token)| Write::Create {
            value,
            lease,
            token
        }),
        (val(), 0u64..3).prop_map(|(value, revision)| Write::SetValue { value, revision }),
        (val(), tok(), 0u64..3, dur()).prop_map(|(value, token, revision, lease)| Write::Extend {
            value,
            token,
            revision,
            lease
        }),
        tok().prop_map(|token| Write::Delete { token }),
    ];
    let expect = prop_oneof![
        Just(Expect::Absent),
        val().prop_map(Expect::Value),
        val().prop_map(Expect::ValueOrMissing)
    ];
    prop_oneof![
        (op(), key(), expect, any::<bool>()).prop_map(|(op, key, expect, watch)| {
            Message::Prepare {
                op,
                epoch: 0,
                key,
                expect,
                watch,
            }
        }),
        (op(), key(), write).prop_map(|(op, key, write)| Message::Commit { op, key, write }),
        (op(), key()).prop_map(|(op, key)| Message::Abort { op, key }),
        (op(), key(), val(), tok(), dur()).prop_map(|(op, key, value, token, lease)| {
            Message::ExtendHeld {
                op,
                epoch: 0,
                key,
                value,
                token,
                lease,
            }
        }),
        (op(), key(), val(), tok()).prop_map(|(op, key, value, token)| Message::ReleaseHeld {
            op,
            epoch: 0,
            key,
            value,
            token
        }),
        (op(), key()).prop_map(|(op, key)| Message::Read { op, epoch: 0, key }),
        (
            (key(), val(), tok(), 0u64..3, dur(), any::<bool>()),
            (0u64..2, 0u64..4, any::<bool>())
        )
            .prop_map(
                |((key, value, token, revision, remaining, deleted), (stream, seq, snapshot))| {
                    Message::Replicate {
                        stream,
                        seq,
                        snapshot,
                        entries: vec![Replicated {
                            key,
                            state: EntryState {
                                value,
                                token,
                                revision,
                                remaining,
                            },
                            deleted,
                        }],
                    }
                }
            ),
        (0u64..2, 0u64..4).prop_map(|(stream, sent)| Message::ReplicateMark {
            stream,
            sent,
            epoch: 0,
        }),
        Just(Message::SyncRequest),
        key().prop_map(|key| Message::Freed { key }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn protocol_shaped_inputs_keep_invariants(
        me in prop_oneof![Just(1u64), Just(4u64)],
        inputs in proptest::collection::vec(
            prop_oneof![
                3 => (1u64..5, small_message()).prop_map(|(f, m)| Input::Message(f, m)),
                1 => (0u64..800_000).prop_map(Input::Tick),
            ],
            1..60,
        ),
    ) {
        let config = Config::new(NodeId(me), vec![NodeId(1), NodeId(2), NodeId(3)], vec![NodeId(4)]);
        let mut now = Time::from_millis(1);
        let mut node = Node::new(config, now).unwrap();
        for inp in inputs {
            match inp {
                Input::Message(from, m) => node.handle_message(now, NodeId(from), m),
                Input::Tick(us) => {
                    now = now + std::time::Duration::from_micros(us);
                    node.handle_timeout(now);
                    node.check_invariants(now).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
                Input::Request(_) => unreachable!(),
            }
            while node.poll_output().is_some() {}
        }
        // No two live promises or entries break the store's own checks.
        node.handle_timeout(now);
        node.check_invariants(now).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}
