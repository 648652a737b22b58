//! Replays every committed fuzz corpus entry and every regression (crash)
//! file of `fuzz/` through the same checks the fuzz targets run, so CI checks
//! them without a fuzzer. The checks live in `fuzz/src/checks.rs`.

#[path = "../../fuzz/src/checks.rs"]
#[allow(dead_code)]
mod checks;

use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOC: checks::MaxAlloc = checks::MaxAlloc;

/// Files under `fuzz/corpus/<target>` and `fuzz/regressions/<target>`.
fn inputs(target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(dir).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target}");
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn wire_decode_corpus_and_regressions_pass() {
    replay("wire_decode", checks::check_wire_decode);
}

#[test]
fn node_inputs_corpus_and_regressions_pass() {
    replay("node_inputs", checks::check_node_inputs);
}

// The fuzz targets' input types, drawn by proptest: random bytes decoded
// through the targets' own `arbitrary` mapping, so both tools share one input
// definition and one set of checks, and a failure shrinks (shorter, smaller
// bytes give shorter scripts).
proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config {
        cases: 64,
        ..proptest::test_runner::Config::default()
    })]

    #[test]
    fn node_scripts_drawn_by_proptest_keep_the_invariants(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)
    ) {
        checks::check_node_inputs(&data);
    }

    #[test]
    fn frames_drawn_by_proptest_decode_safely(
        data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)
    ) {
        checks::check_wire_decode(&data);
    }
}

/// Writes well-formed frames of every wire type into `fuzz/corpus/wire_decode`
/// as seeds: `cargo test -p locker-core --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "writes seed files; run by hand"]
fn write_wire_decode_seeds() {
    use locker_core::wire::{encode_frame, DEFAULT_MAX_FRAME};
    use locker_core::*;
    use std::time::Duration;
    let entry = EntryState {
        value: b"alice".to_vec(),
        token: Token(7),
        revision: 1,
        remaining: Duration::from_millis(900),
    };
    let k = || b"door".to_vec();
    let messages = vec![
        Message::Prepare {
            op: OpId(1),
            epoch: 0,
            key: k(),
            expect: Expect::Absent,
            watch: true,
        },
        Message::Prepare {
            op: OpId(2),
            epoch: 0,
            key: k(),
            expect: Expect::Value(b"alice".to_vec()),
            watch: false,
        },
        Message::Prepare {
            op: OpId(3),
            epoch: 0,
            key: k(),
            expect: Expect::ValueOrMissing(b"bob".to_vec()),
            watch: false,
        },
        Message::Commit {
            op: OpId(1),
            key: k(),
            write: Write::Create {
                value: b"alice".to_vec(),
                lease: Duration::from_secs(10),
                token: Token(9),
            },
        },
        Message::Commit {
            op: OpId(4),
            key: k(),
            write: Write::SetValue {
                value: b"x".to_vec(),
                revision: 2,
            },
        },
        Message::Commit {
            op: OpId(5),
            key: k(),
            write: Write::Extend {
                value: b"alice".to_vec(),
                token: Token(9),
                revision: 2,
                lease: Duration::from_secs(3),
            },
        },
        Message::Commit {
            op: OpId(6),
            key: k(),
            write: Write::Delete { token: Token(9) },
        },
        Message::Abort {
            op: OpId(7),
            key: k(),
        },
        Message::ExtendHeld {
            op: OpId(8),
            epoch: 0,
            key: k(),
            value: b"alice".to_vec(),
            token: Token(9),
            lease: Duration::from_secs(1),
        },
        Message::ReleaseHeld {
            op: OpId(9),
            epoch: 0,
            key: k(),
            value: b"alice".to_vec(),
            token: Token(9),
        },
        Message::Read {
            op: OpId(10),
            epoch: 0,
            key: k(),
        },
        Message::Reply {
            op: OpId(1),
            outcome: Ok(Ack::Granted(Grant {
                highest: Token(3),
                entry: Some(entry.clone()),
            })),
        },
        Message::Reply {
            op: OpId(1),
            outcome: Ok(Ack::Done),
        },
        Message::Reply {
            op: OpId(1),
            outcome: Ok(Ack::Read(None)),
        },
        Message::Reply {
            op: OpId(1),
            outcome: Err(Refusal::Busy),
        },
        Message::Replicate {
            stream: 7,
            seq: 0,
            snapshot: true,
            entries: vec![Replicated {
                key: k(),
                state: entry.clone(),
                deleted: false,
            }],
        },
        Message::ReplicateMark {
            stream: 7,
            sent: 1,
            epoch: 0,
        },
        Message::SyncRequest,
        Message::MembershipPrepare {
            epoch: 1,
            ballot: Ballot {
                round: 1,
                node: NodeId(2),
            },
        },
        Message::MembershipPromise {
            epoch: 1,
            ballot: Ballot {
                round: 1,
                node: NodeId(2),
            },
            accepted: None,
        },
        Message::MembershipAccept {
            epoch: 1,
            ballot: Ballot {
                round: 1,
                node: NodeId(2),
            },
            members: Members {
                masters: vec![NodeId(1), NodeId(2), NodeId(3)],
                replicas: vec![NodeId(4)],
                w: 2,
            },
        },
        Message::MembershipAccepted {
            epoch: 1,
            ballot: Ballot {
                round: 1,
                node: NodeId(2),
            },
            highest: Token(7),
        },
        Message::MembershipNack {
            epoch: 1,
            promised: Ballot {
                round: 2,
                node: NodeId(3),
            },
        },
        Message::MembershipAck { epoch: 2 },
        Message::MembershipQuery,
        Message::MembershipState(Box::new(AppliedMembership {
            epoch: 2,
            origin: NodeId(1),
            masters: vec![NodeId(1), NodeId(2), NodeId(3)],
            replicas: vec![NodeId(4)],
            w: 2,
            highest: Token(7),
            promised: Ballot::default(),
            accepted: None,
        })),
    ];
    let requests = vec![
        Request::Lock {
            key: k(),
            value: b"alice".to_vec(),
            lease: Duration::from_secs(10),
            wait: Duration::from_secs(1),
        },
        Request::Update {
            key: k(),
            value: b"alice".to_vec(),
            new_value: b"bob".to_vec(),
            wait: Duration::ZERO,
        },
        Request::Extend {
            key: k(),
            value: b"alice".to_vec(),
            lease: Duration::from_secs(5),
            token: Some(Token(9)),
            wait: Duration::ZERO,
        },
        Request::Release {
            key: k(),
            value: b"alice".to_vec(),
            token: None,
            wait: Duration::ZERO,
        },
        Request::DirtyRead { key: k() },
        Request::Read {
            key: k(),
            wait: Duration::from_millis(100),
        },
        Request::WaitFor {
            key: k(),
            timeout: Duration::from_secs(1),
        },
        Request::WaitForRelease {
            key: k(),
            timeout: Duration::from_secs(1),
        },
        Request::SetNodes {
            masters: vec![NodeId(1)],
            replicas: vec![],
        },
        Request::SetW { w: 1 },
        Request::Summary,
    ];
    let replies: Vec<Reply> = vec![
        Ok(Response::Released),
        Ok(Response::Gone),
        Ok(Response::Configured),
        Ok(Response::Value(None)),
        Err(OpError::Held),
        Err(OpError::NoQuorum),
        Err(OpError::Timeout),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/wire_decode");
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    let mut write = |frame: Vec<u8>| {
        // The first byte picks the frame limit (0: the default).
        let mut data = vec![0u8];
        data.extend(frame);
        assert!(data.len() < DEFAULT_MAX_FRAME);
        std::fs::write(dir.join(format!("seed-{n:02}")), data).unwrap();
        n += 1;
    };
    for m in &messages {
        let mut f = Vec::new();
        encode_frame(m, &mut f).unwrap();
        write(f);
    }
    for r in &requests {
        let mut f = Vec::new();
        encode_frame(r, &mut f).unwrap();
        write(f);
    }
    for r in &replies {
        let mut f = Vec::new();
        encode_frame(r, &mut f).unwrap();
        write(f);
    }
}
