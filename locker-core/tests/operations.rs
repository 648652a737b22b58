//! One test per operation and per failure path.

mod support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use locker_core::{
    Ack, Config, ConfigError, InvalidRequest, Message, Node, NodeId, OpError, Output, Refusal,
    Request, Response, Time, Token,
};
use support::*;

fn invalid(r: &locker_core::Reply) -> &InvalidRequest {
    match r {
        Err(OpError::Invalid(e)) => e,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn invalid_requests_are_refused_with_a_reason() {
    let mut c = Cluster::masters(3);
    let max_key = c.node(1).config().max_key_len;
    let max_value = c.node(1).config().max_value_len;
    let max_lease = c.node(1).config().max_lease;

    let r = c.lock(1, "", "v", secs(1));
    assert_eq!(invalid(&r), &InvalidRequest::EmptyKey);
    let long_key = "k".repeat(max_key + 1);
    let r = c.lock(1, &long_key, "v", secs(1));
    assert!(
        matches!(invalid(&r), InvalidRequest::KeyTooLong { len, max } if *len == max_key + 1 && *max == max_key)
    );
    let long_value = "v".repeat(max_value + 1);
    let r = c.lock(1, "k", &long_value, secs(1));
    assert!(matches!(invalid(&r), InvalidRequest::ValueTooLong { .. }));
    let r = c.update(1, "k", "v", &long_value);
    assert!(matches!(invalid(&r), InvalidRequest::ValueTooLong { .. }));
    let r = c.lock(1, "k", "v", secs(0));
    assert_eq!(invalid(&r), &InvalidRequest::ZeroLease);
    let r = c.lock(1, "k", "v", max_lease + ms(1));
    assert!(matches!(invalid(&r), InvalidRequest::LeaseTooLong { .. }));
    let r = c.extend(1, "k", "v", secs(0), None);
    assert_eq!(invalid(&r), &InvalidRequest::ZeroLease);
    let r = c.dirty_read(1, "");
    assert_eq!(invalid(&r), &InvalidRequest::EmptyKey);
    // Nothing was stored by any of them.
    assert!(c.node(1).dirty_entries(c.now).is_empty());
    // A key of exactly the maximum length is fine.
    let max = "k".repeat(max_key);
    c.locked(1, &max, "v", secs(1));
}

#[test]
fn release_and_extend_with_a_wrong_token_are_not_owner() {
    let mut c = Cluster::masters(3);
    let lease = c.locked(1, "k", "v", secs(10));
    let wrong = Some(Token(lease.token.0 + 1));
    let r = c.release(2, "k", "v", wrong);
    assert!(is_err(&r, &OpError::NotOwner), "{r:?}");
    let r = c.extend(2, "k", "v", secs(10), wrong);
    assert!(is_err(&r, &OpError::NotOwner), "{r:?}");
    let r = c.release(2, "k", "other", None);
    assert!(is_err(&r, &OpError::NotOwner), "{r:?}");
    let r = c.release(2, "k", "other", Some(lease.token));
    assert!(is_err(&r, &OpError::NotOwner), "{r:?}");
    assert_eq!(c.local_value(3, "k"), Some(b"v".to_vec()));
    let r = c.release(2, "absent", "v", None);
    assert!(is_err(&r, &OpError::NotFound), "{r:?}");
}

#[test]
fn release_by_token_is_idempotent_under_duplicated_messages() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    let lease = c.locked(9, "k", "v", secs(10));
    let id = c.submit(
        9,
        Request::Release {
            key: "k".into(),
            value: "v".into(),
            token: Some(lease.token),
            wait: secs(1),
        },
    );
    let copies: Vec<InFlight> = c.in_flight.iter().cloned().collect();
    assert!(copies
        .iter()
        .all(|m| matches!(m.msg, Message::ReleaseHeld { .. })));
    c.in_flight.extend(copies.iter().cloned());
    assert_eq!(c.run_until_reply(id), Ok(Response::Released));
    // A later tenure with the same value is not deleted by a late duplicate.
    let second = c.locked(9, "k", "v", secs(10));
    assert!(second.token > lease.token);
    c.in_flight.extend(copies);
    c.deliver_all();
    for n in 1..=3 {
        assert_eq!(c.local_value(n, "k"), Some(b"v".to_vec()), "node {n}");
    }
    let r = c.read(9, "k");
    assert!(
        matches!(&r, Ok(Response::Value(Some(v))) if v.token == second.token),
        "{r:?}"
    );
}

#[test]
fn a_commit_after_its_promise_expired_is_never_applied() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    let held: Rc<RefCell<Vec<InFlight>>> = Rc::default();
    let h = held.clone();
    c.drop_when(move |from, to, msg| {
        if matches!(msg, Message::Commit { .. }) {
            h.borrow_mut().push(InFlight {
                from,
                to,
                msg: msg.clone(),
            });
            true
        } else {
            false
        }
    });
    let id = c.submit(9, lock_req("k", "v", secs(10), ms(100)));
    c.deliver_all();
    assert_eq!(held.borrow().len(), 3, "commits to every master");
    let r = c.run_until_reply(id);
    assert!(r.is_err(), "{r:?}");
    c.stop_dropping();
    let promise_timeout = c.node(1).config().promise_timeout;
    c.run_for(promise_timeout + ms(1));
    let late: Vec<InFlight> = held.borrow_mut().drain(..).collect();
    for m in late {
        let to = m.to;
        c.nodes
            .get_mut(&to)
            .unwrap()
            .handle_message(c.now, m.from, m.msg);
        let outs: Vec<Output> =
            std::iter::from_fn(|| c.nodes.get_mut(&to).unwrap().poll_output()).collect();
        assert!(
            outs.iter().any(|o| matches!(
                o,
                Output::Send {
                    msg: Message::Reply {
                        outcome: Err(Refusal::NoPromise),
                        ..
                    },
                    ..
                }
            )),
            "{to:?}: {outs:?}"
        );
    }
    for n in 1..=3 {
        assert_eq!(c.local_value(n, "k"), None, "node {n}");
    }
}

#[test]
fn lock_without_w_commit_acks_is_unconfirmed() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    c.drop_when(|_, to, msg| {
        to == NodeId(9)
            && matches!(
                msg,
                Message::Reply {
                    outcome: Ok(Ack::Done),
                    ..
                }
            )
    });
    let r = c.lock(9, "k", "v", secs(10));
    let Err(OpError::Unconfirmed { token: Some(token) }) = r else {
        panic!("{r:?}")
    };
    // The write did land; the token in the error lets the caller clean up.
    c.stop_dropping();
    let read = c.read(9, "k");
    assert!(
        matches!(&read, Ok(Response::Value(Some(v))) if v.token == token),
        "{read:?}"
    );
    assert_eq!(c.release(9, "k", "v", Some(token)), Ok(Response::Released));
    // One ack short is still unconfirmed.
    let mut acks = 0;
    c.drop_when(move |_, to, msg| {
        if to == NodeId(9)
            && matches!(
                msg,
                Message::Reply {
                    outcome: Ok(Ack::Done),
                    ..
                }
            )
        {
            acks += 1;
            acks > 1
        } else {
            false
        }
    });
    let r = c.lock(9, "k2", "v", secs(10));
    assert!(matches!(r, Err(OpError::Unconfirmed { .. })), "{r:?}");
}

#[test]
fn contending_coordinators_one_wins_the_others_are_held() {
    let clients = [11, 12, 13, 14, 15];
    let mut c = Cluster::with(&[1, 2, 3], &[], &clients, |_| {});
    let ids: Vec<_> = clients
        .iter()
        .map(|&n| c.submit(n, lock_req("hot", &format!("c{n}"), secs(30), secs(1))))
        .collect();
    let replies: Vec<_> = ids.into_iter().map(|id| c.run_until_reply(id)).collect();
    let winners = replies
        .iter()
        .filter(|r| matches!(r, Ok(Response::Locked(_))))
        .count();
    assert_eq!(winners, 1, "{replies:?}");
    for r in &replies {
        assert!(
            matches!(r, Ok(Response::Locked(_))) || is_err(r, &OpError::Held),
            "{r:?}"
        );
    }
}

#[test]
fn contention_with_retry_eventually_everyone_gets_the_lock_in_turn() {
    // Short leases and long waits: retries with backoff let every contender in.
    let clients = [11, 12, 13];
    let mut c = Cluster::with(&[1, 2, 3], &[], &clients, |_| {});
    let ids: Vec<_> = clients
        .iter()
        .map(|&n| c.submit(n, lock_req("hot", &format!("c{n}"), ms(300), secs(5))))
        .collect();
    let mut tokens: Vec<Token> = ids
        .into_iter()
        .map(|id| match c.run_until_reply(id) {
            Ok(Response::Locked(l)) => l.token,
            other => panic!("{other:?}"),
        })
        .collect();
    tokens.sort();
    tokens.dedup();
    assert_eq!(tokens.len(), 3);
}

#[test]
fn fencing_tokens_strictly_increase() {
    let mut c = Cluster::masters(3);
    let mut last = Token(0);
    for i in 0..5 {
        let l = c.locked(1 + i % 3, "k", "v", secs(10));
        assert!(l.token > last, "{:?} after {last:?}", l.token);
        last = l.token;
        assert_eq!(
            c.release(1, "k", "v", Some(l.token)),
            Ok(Response::Released)
        );
    }
    for i in 0..5 {
        let l = c.locked(1 + i % 3, &format!("key{i}"), "v", secs(10));
        assert!(l.token > last);
        last = l.token;
    }
    // update and extend keep the token.
    let r = c.update(2, "key4", "v", "w");
    assert_eq!(r, Ok(Response::Updated { token: last }));
    let r = c.extend(3, "key4", "w", secs(10), None);
    assert!(
        matches!(r, Ok(Response::Extended(l)) if l.token == last),
        "{r:?}"
    );
}

fn tokens_revealed(out: &Output) -> Vec<Token> {
    match out {
        Output::Send { msg, .. } => match msg {
            Message::Reply {
                outcome: Ok(Ack::Granted(g)),
                ..
            } => {
                let mut t = vec![g.highest];
                t.extend(g.entry.iter().map(|e| e.token));
                t
            }
            Message::Reply {
                outcome: Ok(Ack::Read(Some(e))),
                ..
            } => vec![e.token],
            Message::Replicate { entries, .. } => entries.iter().map(|e| e.state.token).collect(),
            _ => vec![],
        },
        _ => vec![],
    }
}

#[test]
fn token_ceiling_is_persisted_before_a_token_above_it_is_revealed() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |cfg| cfg.token_block = 2);
    for i in 0..10 {
        c.locked(1 + i % 3, &format!("k{i}"), "v", secs(10));
    }
    c.run_for(ms(200));
    let mut ceiling: std::collections::BTreeMap<NodeId, Token> = Default::default();
    let mut persisted = 0;
    for (node, out) in &c.log {
        // A token reaches its holder only after w masters persisted a
        // ceiling at or above it (a commit is not a grant until acked).
        if let Output::Reply {
            reply: Ok(Response::Locked(l)),
            ..
        } = out
        {
            let safe = ceiling.values().filter(|&&t| t >= l.token).count();
            assert!(
                safe >= 2,
                "{:?} revealed with {safe} ceilings above it",
                l.token
            );
        }
        if !c.node(node.0).config().masters.contains(node) {
            continue;
        }
        if let Output::PersistTokenCeiling(t) = out {
            persisted += 1;
            let old = ceiling.insert(*node, *t).unwrap_or_default();
            assert!(*t > old, "ceiling went down on {node:?}");
            continue;
        }
        let cap = ceiling.get(node).copied().unwrap_or_default();
        for t in tokens_revealed(out) {
            assert!(
                t <= cap,
                "{node:?} revealed {t:?} above ceiling {cap:?}: {out:?}"
            );
        }
    }
    assert!(persisted >= 3 * 4, "block of 2 over 10 tokens: {persisted}");
    for n in 1..=3 {
        c.node(n).check_invariants(c.now).unwrap();
    }
}

#[test]
fn restarted_masters_issue_tokens_above_their_persisted_ceiling() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[], |cfg| cfg.token_block = 100);
    let before = c.locked(1, "k", "v", secs(1));
    let ceilings: Vec<Token> = (1..=3).map(|n| c.ceilings[&NodeId(n)]).collect();
    for n in 1..=3 {
        c.stop(n);
    }
    for n in 1..=3 {
        c.restart(n, true);
    }
    let quarantine = c.node(1).config().quarantine();
    c.run_for(quarantine + ms(1));
    let after = c.locked(1, "k", "w", secs(1));
    assert!(after.token > before.token);
    assert!(
        ceilings.iter().all(|&ceil| after.token > ceil),
        "{after:?} vs {ceilings:?}"
    );
}

#[test]
fn restarted_master_refuses_to_vote_until_its_quarantine_passes() {
    let mut c = Cluster::masters(3);
    c.stop(3);
    c.restart(3, true);
    let restarted_at = c.now;
    c.stop(2);
    assert!(c.node(3).is_recovering(c.now));
    let r = c.lock(1, "k", "v", secs(10));
    assert!(is_err(&r, &OpError::Recovering), "{r:?}");
    let quarantine = c.node(3).config().quarantine();
    assert_eq!(
        quarantine,
        Config::new(NodeId(3), ids(1..=3), vec![]).quarantine()
    );
    c.run_for((restarted_at + quarantine - ms(10)) - c.now);
    assert!(c.node(3).is_recovering(c.now));
    let r = c.request(1, lock_req("k", "v", secs(10), ms(5)));
    assert!(is_err(&r, &OpError::Recovering), "{r:?}");
    c.run_for(ms(20));
    assert!(!c.node(3).is_recovering(c.now));
    c.locked(1, "k", "v", secs(10));
}

#[test]
fn quorum_read_sees_committed_value_and_none_after_release() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    assert_eq!(c.read(9, "k"), Ok(Response::Value(None)));
    let l = c.locked(9, "k", "v", secs(10));
    let r = c.read(9, "k");
    assert!(
        matches!(&r, Ok(Response::Value(Some(v))) if v.value == b"v" && v.token == l.token && v.remaining <= secs(10)),
        "{r:?}"
    );
    c.stop(2);
    let r = c.read(9, "k");
    assert!(matches!(&r, Ok(Response::Value(Some(_)))), "{r:?}");
    assert_eq!(
        c.release(9, "k", "v", Some(l.token)),
        Ok(Response::Released)
    );
    assert_eq!(c.read(9, "k"), Ok(Response::Value(None)));
    c.stop(3);
    let r = c.read(9, "k");
    assert!(is_err(&r, &OpError::NoQuorum), "{r:?}");
}

#[test]
fn dirty_read_on_a_client_only_node_is_not_stored() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    c.locked(9, "k", "v", secs(10));
    assert!(is_err(&c.dirty_read(9, "k"), &OpError::NotStored));
    let r = c.dirty_read(2, "k");
    assert!(
        matches!(&r, Ok(Response::Value(Some(v))) if v.value == b"v"),
        "{r:?}"
    );
    assert_eq!(c.dirty_read(2, "nope"), Ok(Response::Value(None)));
}

#[test]
fn lease_validity_is_shrunk_for_drift_from_the_attempt_start() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[], |cfg| cfg.max_drift = 0.001);
    let t0 = c.now;
    let l = c.locked(1, "k", "v", secs(10));
    // 10 s * 0.999 / 1.001, rounded down to the microsecond.
    let expected = std::time::Duration::from_micros(10_000_000 * 999_000 / 1_001_000);
    assert_eq!(l.validity, expected);
    assert_eq!(l.valid_until, t0 + expected);
    // Extend counts from its own start.
    c.run_for(secs(1));
    let t1 = c.now;
    let r = c.extend(1, "k", "v", secs(10), Some(l.token));
    let Ok(Response::Extended(e)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(e.validity, expected);
    assert_eq!(e.valid_until, t1 + expected);
}

/// A lock that waited for a held key reports how long it waited (shrunk for
/// drift), so that its holder counts the validity from the start of its own
/// tenure instead of from its send: without it, a lock that waited longer
/// than its lease would be over before it began.
#[test]
fn a_lock_that_waited_reports_its_wait() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[], |cfg| cfg.max_drift = 0.001);
    let first = c.locked(1, "k", "a", secs(1));
    assert_eq!(
        first.waited,
        std::time::Duration::ZERO,
        "no wait for a free key"
    );
    let sent = c.now;
    let id = c.submit(
        2,
        Request::Lock {
            key: b"k".to_vec(),
            value: b"b".to_vec(),
            lease: secs(1),
            wait: secs(5),
        },
    );
    let r = c.run_until_reply(id);
    let Ok(Response::Locked(l)) = r else {
        panic!("{r:?}")
    };
    let started = l.valid_until - l.validity;
    let shrunk = |d: std::time::Duration| {
        std::time::Duration::from_micros(d.as_micros() as u64 * 999_000 / 1_001_000)
    };
    assert!(
        started > sent + secs(1) - ms(10),
        "it waited out the first lease"
    );
    assert_eq!(l.waited, shrunk(started - sent));
    assert!(
        l.waited + l.validity > secs(1),
        "valid past its own send plus a lease"
    );
}

#[test]
fn config_validation_refuses_unsafe_quorums() {
    let masters = ids(1..=4);
    let mut cfg = Config::new(NodeId(1), masters.clone(), vec![]);
    assert_eq!(cfg.w, 3);
    cfg.validate().unwrap();
    cfg.w = 2;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::UnsafeQuorum { .. })
    ));
    assert!(Node::new(cfg.clone(), Time::ZERO).is_err());
    cfg.allow_unsafe_quorum = true;
    cfg.validate().unwrap();
    cfg.w = 5;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::QuorumOutOfRange { .. })
    ));
    let cfg = Config::new(NodeId(1), vec![], vec![]);
    assert!(matches!(cfg.validate(), Err(ConfigError::NoMasters)));
    let cfg = Config::new(NodeId(1), ids(1..=3), vec![NodeId(3)]);
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::DuplicateNode(NodeId(3)))
    ));
    let mut cfg = Config::new(NodeId(1), ids(1..=3), vec![]);
    cfg.max_drift = 0.5;
    assert!(matches!(
        cfg.validate(),
        Err(ConfigError::DriftOutOfRange(_))
    ));
    // set_w obeys the same rule at runtime.
    let mut c = Cluster::masters(3);
    let r = c.request(1, Request::SetW { w: 1 });
    assert!(
        matches!(
            r,
            Err(OpError::Invalid(InvalidRequest::Config(
                ConfigError::UnsafeQuorum { .. }
            )))
        ),
        "{r:?}"
    );
}

#[test]
fn summary_counts_leases_and_tombstones() {
    let mut c = Cluster::masters(3);
    let l = c.locked(1, "a", "v", secs(10));
    c.locked(1, "b", "v", secs(10));
    c.release(1, "a", "v", Some(l.token)).unwrap();
    let r = c.request(2, Request::Summary);
    let Ok(Response::Summary(s)) = r else {
        panic!("{r:?}")
    };
    assert_eq!((s.leases, s.tombstones), (1, 1));
    assert_eq!(s.w, 2);
    assert!(!s.recovering);
}

#[test]
fn promoted_replica_persists_a_ceiling_above_the_tokens_it_knows() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |cfg| cfg.token_block = 2);
    let mut last = Token(0);
    for i in 0..5 {
        last = c.locked(1, &format!("k{i}"), "v", secs(30)).token;
    }
    c.run_for(ms(200));
    assert_eq!(c.node(4).highest_token(), last, "replica saw every token");
    assert_eq!(
        c.request(1, Request::SetW { w: 3 }),
        Ok(Response::Configured)
    );
    assert_eq!(c.set_nodes(1, &[1, 2, 3, 4], &[]), Ok(Response::Configured));
    c.run_for(ms(100));
    let ceiling = c.ceilings.get(&NodeId(4)).copied().unwrap_or_default();
    assert!(
        ceiling >= last,
        "promoted master's ceiling {ceiling:?} below {last:?}"
    );
}

#[test]
fn demoted_master_drops_its_store_and_stops_voting() {
    let mut c = Cluster::masters(3);
    c.locked(1, "k", "v", secs(30));
    assert_eq!(
        c.request(1, Request::SetW { w: 2 }),
        Ok(Response::Configured)
    );
    assert_eq!(c.set_nodes(1, &[1, 2], &[]), Ok(Response::Configured));
    c.run_for(ms(100));
    assert_eq!(c.node(3).role(), locker_core::Role::Client);
    assert!(c.node(3).dirty_entries(c.now).is_empty());
    // Two masters, w = 2: both are needed now.
    c.stop(2);
    let r = c.request(1, lock_req("k2", "v", secs(10), ms(300)));
    assert!(is_err(&r, &OpError::NoQuorum), "{r:?}");
}

#[test]
fn promises_of_a_crashed_coordinator_expire_and_free_the_key() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    c.drop_when(|from, _, msg| from == NodeId(9) && matches!(msg, Message::Commit { .. }));
    let _ = c.submit(9, lock_req("k", "v", secs(10), secs(5)));
    c.deliver_all();
    c.stop(9);
    c.stop_dropping();
    let before = c.now;
    let l = c.locked(1, "k", "w", secs(10));
    let promise_timeout = c.node(1).config().promise_timeout;
    assert!(c.now - before >= promise_timeout, "key freed too early");
    assert!(l.token.0 >= 1);
    c.run_for(ms(10));
}

#[test]
fn wait_requests_on_a_client_only_node_are_not_stored() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    let r = c.request(
        9,
        Request::WaitFor {
            key: "k".into(),
            timeout: ms(100),
        },
    );
    assert!(is_err(&r, &OpError::NotStored), "{r:?}");
    // On a master, wait_for_release of an absent key is answered at once.
    let r = c.request(
        1,
        Request::WaitForRelease {
            key: "k".into(),
            timeout: ms(100),
        },
    );
    assert_eq!(r, Ok(Response::Gone));
}

#[test]
fn replica_expires_with_the_remaining_lease_and_follows_extensions() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    let l = c.locked(1, "k", "v", secs(2));
    c.run_for(ms(1500));
    let view = c.node(4).dirty_entries(c.now)[0].1.clone();
    assert!(
        view.remaining <= ms(500),
        "replica restarted the lease: {view:?}"
    );
    let r = c.extend(2, "k", "v", secs(3), Some(l.token));
    assert!(r.is_ok(), "{r:?}");
    c.run_for(ms(1000));
    assert_eq!(
        c.local_value(4, "k"),
        Some(b"v".to_vec()),
        "extension reached the replica"
    );
    c.run_for(ms(2100));
    assert_eq!(c.local_value(4, "k"), None);
    for n in 1..=3 {
        assert_eq!(c.local_value(n, "k"), None);
    }
}

#[test]
fn a_clock_going_backwards_is_clamped() {
    let mut c = Cluster::masters(3);
    c.locked(1, "k", "v", secs(10));
    c.run_for(secs(2));
    let later = c.now;
    // The host passes an earlier instant: the node keeps its own time.
    let node = c.nodes.get_mut(&NodeId(2)).unwrap();
    node.handle_timeout(Time::from_millis(1));
    assert_eq!(node.dirty_entries(later).len(), 1);
    node.check_invariants(later).unwrap();
}

#[test]
fn lock_with_one_master_partitioned_still_commits_everywhere_reachable() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
    c.partition(9, 3);
    let l = c.locked(9, "k", "v", secs(10));
    assert_eq!(c.local_value(3, "k"), None);
    c.heal();
    // The holder's release by token deletes where stored; a missing master is fine.
    assert_eq!(
        c.release(9, "k", "v", Some(l.token)),
        Ok(Response::Released)
    );
    let l2 = c.locked(9, "k", "w", secs(10));
    assert!(l2.token > l.token);
}

#[test]
fn set_nodes_is_chosen_by_a_majority_of_masters_with_a_member_down() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.stop(3);
    c.stop(4);
    let r = c.set_nodes(1, &[1, 2, 3], &[]);
    assert_eq!(r, Ok(Response::Configured));
    assert_eq!(c.node(2).config().replicas, vec![]);
    assert_eq!(c.node(2).membership_epoch(), 1);
}

#[test]
fn set_nodes_without_a_majority_of_masters_is_not_configured() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.stop(2);
    c.stop(3);
    let r = c.set_nodes(1, &[1, 2, 3], &[]);
    assert!(
        matches!(r, Err(OpError::NoQuorum | OpError::Unconfirmed { .. })),
        "{r:?}"
    );
    assert_eq!(c.node(1).membership_epoch(), 0);
    assert_eq!(c.node(1).config().replicas, vec![NodeId(4)]);
}

/// Two administrators change the members at once: each change is chosen
/// for its own epoch, one after the other, and every node ends on the same
/// members (those of the change chosen last).
#[test]
fn concurrent_set_nodes_from_two_nodes_are_chosen_one_after_the_other() {
    let mut c = Cluster::with(&[1, 2, 3], &[4, 5], &[], |_| {});
    let a = c.submit(
        1,
        Request::SetNodes {
            masters: ids(1..=3),
            replicas: vec![NodeId(4)],
        },
    );
    let b = c.submit(
        2,
        Request::SetNodes {
            masters: ids(1..=3),
            replicas: vec![NodeId(5)],
        },
    );
    let ra = c.run_until_reply(a);
    let rb = c.run_until_reply(b);
    c.run_for(ms(100));
    let views: Vec<(u64, Vec<NodeId>)> = (1..=5)
        .filter(|&n| c.node(n).role() != locker_core::Role::Client)
        .map(|n| {
            (
                c.node(n).membership_epoch(),
                c.node(n).config().replicas.clone(),
            )
        })
        .collect();
    let agreed = views.windows(2).all(|w| w[0] == w[1]);
    assert!(agreed, "members disagree after both changes: {views:?}");
    assert!(ra.is_ok() || rb.is_ok(), "{ra:?} {rb:?}");
    let (epoch, replicas) = &views[0];
    assert!(*epoch >= 1, "{views:?}");
    assert!(
        replicas == &vec![NodeId(4)] || replicas == &vec![NodeId(5)],
        "{views:?}"
    );
}

/// A master that accepted a change votes for no operation until it knows
/// the change chosen, and a master votes only in its own epoch.
#[test]
fn masters_vote_only_in_their_own_epoch() {
    use locker_core::{Ballot, Expect, Members, OpId, Write};
    let config = Config::new(NodeId(1), ids(1..=3), vec![]);
    let now = Time::from_millis(2);
    let mut n = Node::new(config, Time::from_millis(1)).unwrap();
    let prepare = |op, epoch| Message::Prepare {
        op: OpId(op),
        epoch,
        key: b"k".to_vec(),
        expect: Expect::Absent,
        watch: false,
    };
    // A coordinator in a later epoch is refused and asked for its members.
    n.handle_message(now, NodeId(9), prepare(1, 1));
    assert_eq!(outcomes(&mut n, OpId(1)), vec![Err(Refusal::OtherEpoch)]);
    // In the node's own epoch it votes.
    n.handle_message(now, NodeId(9), prepare(2, 0));
    assert!(matches!(
        outcomes(&mut n, OpId(2))[..],
        [Ok(Ack::Granted(_))]
    ));
    // Having accepted a change, it drops its promises and votes no more.
    let ballot = Ballot {
        round: 1,
        node: NodeId(2),
    };
    let members = Members {
        masters: ids(1..=3),
        replicas: vec![NodeId(4)],
        w: 2,
    };
    n.handle_message(
        now,
        NodeId(2),
        Message::MembershipAccept {
            epoch: 1,
            ballot,
            members,
        },
    );
    let outs: Vec<Output> = std::iter::from_fn(|| n.poll_output()).collect();
    let persisted = outs
        .iter()
        .position(|o| matches!(o, Output::PersistMembership(m) if m.accepted.is_some()));
    let accepted = outs.iter().position(|o| {
        matches!(
            o,
            Output::Send {
                msg: Message::MembershipAccepted { .. },
                ..
            }
        )
    });
    assert!(persisted.unwrap() < accepted.unwrap(), "{outs:?}");
    n.handle_message(
        now,
        NodeId(9),
        Message::Commit {
            op: OpId(2),
            key: b"k".to_vec(),
            write: Write::Create {
                value: b"v".to_vec(),
                lease: secs(5),
                token: Token(1),
            },
        },
    );
    assert_eq!(outcomes(&mut n, OpId(2)), vec![Err(Refusal::NoPromise)]);
    n.handle_message(now, NodeId(9), prepare(3, 0));
    assert_eq!(outcomes(&mut n, OpId(3)), vec![Err(Refusal::OtherEpoch)]);
}

#[test]
fn a_resent_commit_is_acknowledged_when_only_the_ack_was_lost() {
    // Two masters of three up: both commit acks are needed. The first ack of
    // each operation from master 2 is lost; the coordinator's one resend must
    // be acknowledged by a master that already applied it.
    for op in ["lock", "update", "extend", "release"] {
        let mut c = Cluster::with(&[1, 2, 3], &[], &[9], |_| {});
        let l = c.locked(9, "k", "v", secs(10));
        c.stop(3);
        let mut dropped = false;
        c.drop_when(move |from, to, msg| {
            let ack = from == NodeId(2)
                && to == NodeId(9)
                && matches!(
                    msg,
                    Message::Reply {
                        outcome: Ok(Ack::Done),
                        ..
                    }
                );
            if ack && !dropped {
                dropped = true;
                return true;
            }
            false
        });
        let r = match op {
            "lock" => c.lock(9, "k2", "v", secs(10)),
            "update" => c.update(9, "k", "v", "w"),
            "extend" => c.extend(9, "k", "v", secs(10), None),
            _ => c.release(9, "k", "v", None),
        };
        assert!(r.is_ok(), "{op}: {r:?}");
        if let Ok(Response::Extended(e)) = &r {
            // Every acknowledging master keeps the entry past the holder's deadline.
            for n in [1, 2] {
                let view = &c.node(n).dirty_entries(c.now)[0].1;
                assert!(
                    c.now + view.remaining >= e.valid_until,
                    "node {n}: {view:?} {e:?}"
                );
                assert_eq!(view.token, l.token);
            }
        }
    }
}

#[test]
fn tokens_stay_monotonic_when_a_minority_restarts_without_a_ceiling() {
    let mut c = Cluster::masters(3);
    let mut last = Token(0);
    for i in 0..5 {
        last = c.locked(1, &format!("k{i}"), "v", secs(1)).token;
    }
    c.stop(3);
    c.restart(3, false);
    let quarantine = c.node(3).config().quarantine();
    c.run_for(quarantine + ms(1));
    c.stop(1);
    let next = c.locked(2, "fresh", "v", secs(1));
    assert!(next.token > last, "{:?} after {last:?}", next.token);
}

#[test]
fn a_stale_extend_refused_by_a_majority_is_not_owner_even_where_it_installed() {
    let mut c = Cluster::masters(3);
    let old = c.locked(1, "k", "v1", secs(1));
    c.run_for(secs(2));
    c.isolate(3);
    let new = c.locked(1, "k", "v2", secs(10));
    c.heal();
    assert_eq!(c.local_value(3, "k"), None, "master 3 missed the new lock");
    // Master 3 lacks the entry and installs the stale extension; the other
    // two hold a newer token. Master 2's first answer is lost, so the first
    // attempt sees an install and no blocking majority, and the retry sees
    // its own install again. The lease is not held at a quorum.
    let dropped = Rc::new(RefCell::new(false));
    let once = dropped.clone();
    c.drop_when(move |from, to, msg| {
        let hit = from == NodeId(2) && to == NodeId(1) && matches!(msg, Message::Reply { .. });
        hit && !once.replace(true)
    });
    let r = c.extend(1, "k", "v1", secs(10), Some(old.token));
    assert!(is_err(&r, &OpError::NotOwner), "{r:?}");
    let r = c.read(2, "k");
    assert!(
        matches!(&r, Ok(Response::Value(Some(e))) if e.token == new.token),
        "{r:?}"
    );
}

#[test]
fn a_coordinator_with_a_larger_w_never_takes_a_minority_refusal_as_proof() {
    // Client-only node 9 kept w = 5 (a set_w does not reach it); the masters
    // coordinate with w = 3, so a lock may be on three masters only.
    let mut c = Cluster::with(&[1, 2, 3, 4, 5], &[], &[9], |config| {
        if config.id == NodeId(9) {
            config.w = 5;
        }
    });
    c.isolate(4);
    c.isolate(5);
    let lease = c.locked(1, "k", "v", secs(10));
    c.heal();
    // The first answers of the masters that delete the entry are lost, so
    // the refusals of 4 and 5 (no entry) arrive alone.
    let dropped = Rc::new(RefCell::new(BTreeSet::new()));
    let seen = dropped.clone();
    c.drop_when(move |from, to, msg| {
        to == NodeId(9)
            && from.0 <= 3
            && matches!(msg, Message::Reply { .. })
            && seen.borrow_mut().insert(from)
    });
    let r = c.release(9, "k", "v", Some(lease.token));
    assert_eq!(r, Ok(Response::Released), "the release took effect");
    let r = c.read(1, "k");
    assert_eq!(r, Ok(Response::Value(None)));
}

#[test]
fn a_release_does_not_count_a_master_whose_commit_is_still_in_flight() {
    let mut c = Cluster::masters(3);
    let held: Rc<RefCell<Vec<InFlight>>> = Rc::default();
    let hold = held.clone();
    let mut release_dropped = false;
    c.drop_when(move |from, to, msg| match msg {
        // The lock's commit to master 2 is delayed.
        Message::Commit { .. } if to == NodeId(2) => {
            hold.borrow_mut().push(InFlight {
                from,
                to,
                msg: msg.clone(),
            });
            true
        }
        // The release never reaches master 3 the first time.
        Message::ReleaseHeld { .. } if to == NodeId(3) && !release_dropped => {
            release_dropped = true;
            true
        }
        _ => false,
    });
    let lease = c.locked(1, "k", "v", secs(10));
    // Master 2 has no entry yet but a live promise for it: not "gone".
    let r = c.release(1, "k", "v", Some(lease.token));
    assert_eq!(r, Ok(Response::Released));
    c.stop_dropping();
    let late: Vec<InFlight> = held.borrow_mut().drain(..).collect();
    assert!(!late.is_empty());
    c.in_flight.extend(late);
    c.deliver_all();
    assert_eq!(
        c.read(3, "k"),
        Ok(Response::Value(None)),
        "the release holds"
    );
}

/// The answers node `n` sent for `op`.
fn outcomes(n: &mut Node, op: locker_core::OpId) -> Vec<Result<Ack, Refusal>> {
    let mut out = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Send {
            msg: Message::Reply { op: o_op, outcome },
            ..
        } = o
        {
            if o_op == op {
                out.push(outcome);
            }
        }
    }
    out
}

#[test]
fn a_master_refuses_a_lock_commit_whose_token_is_not_above_its_grant() {
    use locker_core::{Expect, OpId, Write};
    let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut n = Node::new(
        Config::new(NodeId(1), masters, vec![]),
        Time::from_millis(1),
    )
    .unwrap();
    let now = Time::from_millis(2);
    let prepare = |op, key: &str| Message::Prepare {
        op: OpId(op),
        epoch: 0,
        key: key.into(),
        expect: Expect::Absent,
        watch: false,
    };
    let create = |op, key: &str, token| Message::Commit {
        op: OpId(op),
        key: key.into(),
        write: Write::Create {
            value: b"v".to_vec(),
            lease: secs(5),
            token: Token(token),
        },
    };
    // Op 7 is granted while this master has seen no token.
    n.handle_message(now, NodeId(2), prepare(7, "a"));
    let mut got = outcomes(&mut n, OpId(7));
    // Another key's tenure raises the highest token seen here to 59.
    n.handle_message(now, NodeId(3), prepare(8, "b"));
    n.handle_message(now, NodeId(3), create(8, "b", 59));
    assert_eq!(outcomes(&mut n, OpId(8)).last(), Some(&Ok(Ack::Done)));
    // A duplicate of op 7's prepare keeps the first grant's highest token,
    // so the token its coordinator chose from that grant is still accepted.
    n.handle_message(now, NodeId(2), prepare(7, "a"));
    n.handle_message(now, NodeId(2), create(7, "a", 1));
    got.extend(outcomes(&mut n, OpId(7)));
    assert!(
        matches!(&got[..], [Ok(Ack::Granted(g1)), Ok(Ack::Granted(g2)), Ok(Ack::Done)]
            if g1.highest == Token(0) && g2.highest == Token(0)),
        "{got:?}"
    );
    // A prepare granted after the master saw token 59 cannot take a commit
    // whose token was chosen without it (a late prepare of an old attempt).
    n.handle_message(now, NodeId(2), prepare(9, "c"));
    n.handle_message(now, NodeId(2), create(9, "c", 49));
    let got = outcomes(&mut n, OpId(9));
    assert_eq!(got.last(), Some(&Err(Refusal::NoPromise)), "{got:?}");
    assert!(n.dirty_entries(now).iter().all(|(k, _)| k != b"c"));
}

#[test]
fn a_late_copy_of_a_release_meets_a_later_tenure_as_superseded() {
    use locker_core::{Expect, OpId, Write};
    let mut n = Node::new(
        Config::new(NodeId(1), vec![NodeId(1)], vec![]),
        Time::from_millis(1),
    )
    .unwrap();
    let now = Time::from_millis(2);
    let lock = |n: &mut Node, op, token| {
        n.handle_message(
            now,
            NodeId(9),
            Message::Prepare {
                op: OpId(op),
                epoch: 0,
                key: b"k".to_vec(),
                expect: Expect::Absent,
                watch: false,
            },
        );
        n.handle_message(
            now,
            NodeId(9),
            Message::Commit {
                op: OpId(op),
                key: b"k".to_vec(),
                write: Write::Create {
                    value: b"v".to_vec(),
                    lease: secs(5),
                    token: Token(token),
                },
            },
        );
        assert_eq!(outcomes(n, OpId(op)).last(), Some(&Ok(Ack::Done)));
    };
    let release = Message::ReleaseHeld {
        op: OpId(20),
        epoch: 0,
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        token: Token(5),
    };
    lock(&mut n, 10, 5);
    n.handle_message(now, NodeId(9), release.clone());
    assert_eq!(outcomes(&mut n, OpId(20)), vec![Ok(Ack::Done)]);
    // The key is taken again, with the same value, then the release's
    // duplicate arrives: not a mismatch (which would read as "no effect").
    lock(&mut n, 11, 6);
    n.handle_message(now, NodeId(9), release);
    assert_eq!(outcomes(&mut n, OpId(20)), vec![Err(Refusal::Superseded)]);
}

#[test]
fn a_replica_keeps_an_entry_while_w_masters_report_it() {
    use locker_core::{EntryState, Replicated};
    let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let start = Time::from_millis(1);
    let mut r = Node::new(Config::new(NodeId(4), masters, vec![NodeId(4)]), start).unwrap();
    let mut seq = [0u64; 4];
    let mut push = |r: &mut Node, now: Time, master: u64, remaining: std::time::Duration| {
        let entries = vec![Replicated {
            key: b"k".to_vec(),
            state: EntryState {
                value: b"v".to_vec(),
                token: Token(5),
                revision: 0,
                remaining,
            },
            deleted: false,
        }];
        let s = &mut seq[master as usize];
        r.handle_message(
            now,
            NodeId(master),
            Message::Replicate {
                stream: master,
                seq: *s,
                snapshot: *s == 0,
                entries,
            },
        );
        *s += 1;
    };
    let has = |r: &mut Node, now: Time| {
        r.handle_timeout(now);
        r.dirty_entries(now).iter().any(|(k, _)| k == b"k")
    };
    // Two masters extended the lease; the third, which missed that
    // extension, reports its older, shorter lease last.
    push(&mut r, start, 1, ms(1400));
    push(&mut r, start, 2, ms(1400));
    push(&mut r, start, 3, ms(900));
    assert!(has(&mut r, start + ms(1000)), "w masters still hold it");
    assert!(!has(&mut r, start + ms(1500)));
    // A shorter extension counts once w masters report it.
    let now = start + ms(1500);
    push(&mut r, now, 1, ms(1000));
    push(&mut r, now, 2, ms(1000));
    push(&mut r, now, 3, ms(1000));
    push(&mut r, now, 1, ms(200));
    assert!(
        has(&mut r, now + ms(500)),
        "one master's shorter lease is not enough"
    );
    push(&mut r, now + ms(500), 2, ms(100));
    assert!(
        !has(&mut r, now + ms(700)),
        "two masters' shorter leases are"
    );
}

#[test]
fn a_quorum_read_needs_w_masters_with_the_same_value_not_just_the_same_token() {
    use locker_core::{EntryState, Reply, RequestId};
    let masters: Vec<NodeId> = (1..=5).map(NodeId).collect();
    let now = Time::from_millis(2);
    let mut n = Node::new(
        Config::new(NodeId(9), masters, vec![]),
        Time::from_millis(1),
    )
    .unwrap();
    n.handle_request(
        now,
        RequestId(1),
        Request::Read {
            key: b"k".to_vec(),
            wait: secs(1),
        },
    );
    let mut op = None;
    while let Some(o) = n.poll_output() {
        if let Output::Send {
            msg: Message::Read { op: id, .. },
            ..
        } = o
        {
            op = Some(id);
        }
    }
    let op = op.expect("a read was sent");
    // Master 1 kept the entry of a lock whose commit reached it alone (its
    // answer was unconfirmed); the next tenure got the same token elsewhere.
    let state = |value: &str| {
        Ok(Ack::Read(Some(EntryState {
            value: value.into(),
            token: Token(181),
            revision: 0,
            remaining: secs(5),
        })))
    };
    let mut reply = None;
    for (from, value) in [(1, "stale"), (4, "held"), (5, "held"), (2, "held")] {
        let msg = Message::Reply {
            op,
            outcome: state(value),
        };
        n.handle_message(now, NodeId(from), msg);
        while let Some(o) = n.poll_output() {
            if let Output::Reply { reply: r, .. } = o {
                reply.get_or_insert((from, r));
            }
        }
    }
    let (after, reply): (u64, Reply) = reply.expect("answered");
    assert_eq!(after, 2, "three masters agree only after master 2");
    let Ok(Response::Value(Some(view))) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(view.value, b"held");
}

#[test]
fn an_applied_membership_is_persisted_before_its_ack_and_survives_a_restart() {
    use locker_core::AppliedMembership;
    let masters = vec![NodeId(1), NodeId(2), NodeId(3)];
    let config = Config::new(NodeId(3), masters.clone(), vec![NodeId(4)]);
    let now = Time::from_millis(2);
    let mut n = Node::new(config.clone(), Time::from_millis(1)).unwrap();
    // Node 3 is demoted to replica, node 4 promoted.
    let change = Message::MembershipState(Box::new(AppliedMembership {
        epoch: 1,
        origin: NodeId(1),
        masters: vec![NodeId(1), NodeId(2), NodeId(4)],
        replicas: vec![NodeId(3)],
        w: 2,
        ..AppliedMembership::default()
    }));
    n.handle_message(now, NodeId(1), change);
    let outs: Vec<Output> = std::iter::from_fn(|| n.poll_output()).collect();
    let persisted = outs
        .iter()
        .position(|o| matches!(o, Output::PersistMembership(_)));
    let acked = outs.iter().position(|o| {
        matches!(
            o,
            Output::Send {
                msg: Message::MembershipAck { .. },
                ..
            }
        )
    });
    assert!(persisted.unwrap() < acked.unwrap(), "{outs:?}");
    let Some(Output::PersistMembership(applied)) = persisted.map(|i| outs[i].clone()) else {
        unreachable!()
    };
    assert_eq!(
        *applied,
        AppliedMembership {
            epoch: 1,
            origin: NodeId(1),
            masters: vec![NodeId(1), NodeId(2), NodeId(4)],
            replicas: vec![NodeId(3)],
            w: 2,
            ..AppliedMembership::default()
        }
    );
    // Restarted from its original configuration, it comes back demoted.
    let r = Node::restarted_with(config, now, None, Some(&applied)).unwrap();
    assert_eq!(r.role(), locker_core::Role::Replica);
    // And an older change is not applied over it.
    let mut r = r;
    let older = Message::MembershipState(Box::new(AppliedMembership {
        epoch: 0,
        origin: NodeId(9),
        masters,
        replicas: vec![NodeId(4)],
        w: 2,
        ..AppliedMembership::default()
    }));
    r.handle_message(now, NodeId(2), older);
    assert_eq!(r.role(), locker_core::Role::Replica);
}

/// A holder whose lease expired everywhere, after another tenure of the
/// key came and went, extends with its old token.
#[test]
fn an_expired_holder_cannot_take_the_key_back_by_extending() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[8, 9], |_| {});
    let a = c.locked(9, "k", "v", secs(1));
    c.run_for(secs(3));
    let b = c.locked(8, "k", "w", secs(1));
    assert!(b.token > a.token);
    c.run_for(secs(3));
    let r = c.extend(9, "k", "v", secs(10), Some(a.token));
    assert!(r.is_err(), "the old tenure came back: {r:?}");
}
