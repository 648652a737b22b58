//! The scenarios of wooga/locker's own test suite (test/locker_SUITE.erl),
//! at the core level through the in-memory router.

mod support;

use locker_core::{NodeId, OpError, Request, Response};
use support::*;

#[test]
fn two_lockers_racing_for_one_key_exactly_one_wins() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[], |_| {});
    let a = c.submit(1, lock_req("race", "alice", secs(10), ms(300)));
    let b = c.submit(2, lock_req("race", "bob", secs(10), ms(300)));
    let ra = c.run_until_reply(a);
    let rb = c.run_until_reply(b);
    let wins = [&ra, &rb]
        .iter()
        .filter(|r| matches!(r, Ok(Response::Locked(_))))
        .count();
    assert_eq!(wins, 1, "alice: {ra:?}, bob: {rb:?}");
    let loser = if ra.is_ok() { &rb } else { &ra };
    assert!(is_err(loser, &OpError::Held), "loser got {loser:?}");
}

#[test]
fn no_quorum_possible_when_masters_are_down() {
    let mut c = Cluster::masters(3);
    c.stop(2);
    c.stop(3);
    let r = c.lock(1, "k", "v", secs(10));
    assert!(is_err(&r, &OpError::NoQuorum), "{r:?}");
}

#[test]
fn release_with_nodes_down() {
    let mut c = Cluster::masters(3);
    let lease = c.locked(1, "k", "v", secs(30));
    c.stop(3);
    let r = c.release(1, "k", "v", Some(lease.token));
    assert_eq!(r, Ok(Response::Released));
    assert_eq!(c.local_value(1, "k"), None);
    assert_eq!(c.local_value(2, "k"), None);

    let lease = c.locked(1, "k2", "v", secs(30));
    c.locked(1, "k3", "v", secs(30));
    c.stop(2);
    // The one master left applied the release: not a clean failure.
    let r = c.release(1, "k2", "v", Some(lease.token));
    let unconfirmed = OpError::Unconfirmed {
        token: Some(lease.token),
    };
    assert!(is_err(&r, &unconfirmed), "{r:?}");
    let r = c.release(1, "k3", "v", None);
    assert!(is_err(&r, &OpError::NoQuorum), "{r:?}");
}

#[test]
fn lease_expires_unless_extended() {
    let mut c = Cluster::masters(3);
    let lease = c.locked(1, "short", "v", secs(2));
    c.locked(1, "kept", "v", secs(2));
    let kept = c.read(1, "kept");
    let Ok(Response::Value(Some(view))) = kept else {
        panic!("{kept:?}")
    };
    c.run_for(ms(1000));
    let r = c.extend(1, "kept", "v", secs(5), Some(view.token));
    assert!(
        matches!(r, Ok(Response::Extended(l)) if l.token == view.token),
        "{r:?}"
    );
    c.run_for(ms(1500));
    for n in 1..=3 {
        assert_eq!(c.local_value(n, "short"), None, "short on {n}");
        assert_eq!(c.local_value(n, "kept"), Some(b"v".to_vec()), "kept on {n}");
    }
    assert_eq!(c.read(1, "short"), Ok(Response::Value(None)));
    // The expired key can be taken again, with a larger token.
    let again = c.locked(2, "short", "w", secs(2));
    assert!(again.token > lease.token);
}

#[test]
fn one_node_down_still_locks_and_releases() {
    let mut c = Cluster::masters(3);
    c.stop(2);
    let lease = c.locked(1, "k", "v", secs(10));
    assert_eq!(c.local_value(3, "k"), Some(b"v".to_vec()));
    assert_eq!(
        c.release(3, "k", "v", Some(lease.token)),
        Ok(Response::Released)
    );
}

#[test]
fn extension_propagates_to_a_master_that_lacked_the_entry() {
    let mut c = Cluster::masters(3);
    c.partition(1, 3);
    c.partition(2, 3);
    let lease = c.locked(1, "k", "v", secs(10));
    assert_eq!(c.local_value(3, "k"), None);
    c.heal();
    let r = c.extend(1, "k", "v", secs(10), Some(lease.token));
    assert!(
        matches!(r, Ok(Response::Extended(l)) if l.token == lease.token),
        "{r:?}"
    );
    assert_eq!(c.local_value(3, "k"), Some(b"v".to_vec()));
    let on3 = c.node(3).dirty_entries(c.now);
    assert_eq!(on3[0].1.token, lease.token);
}

#[test]
fn extension_without_token_installs_too() {
    let mut c = Cluster::masters(3);
    c.partition(1, 3);
    c.partition(2, 3);
    c.locked(1, "k", "v", secs(10));
    c.heal();
    let r = c.extend(1, "k", "v", secs(10), None);
    assert!(matches!(r, Ok(Response::Extended(_))), "{r:?}");
    assert_eq!(c.local_value(3, "k"), Some(b"v".to_vec()));
}

#[test]
fn add_and_remove_node() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[], |_| {});
    let mut config = locker_core::Config::new(NodeId(4), ids(1..=3), vec![]);
    config.seed = 4;
    c.start_new(config);
    // set_nodes keeps w; 4 masters need w = 3 (2w <= masters is refused).
    let r = c.set_nodes(1, &[1, 2, 3, 4], &[]);
    assert!(
        matches!(r, Err(OpError::Invalid(_))),
        "unsafe quorum after add must be refused: {r:?}"
    );
    assert_eq!(
        c.request(1, Request::SetW { w: 3 }),
        Ok(Response::Configured)
    );
    let r = c.set_nodes(1, &[1, 2, 3, 4], &[]);
    assert_eq!(r, Ok(Response::Configured));
    for n in 1..=4 {
        assert_eq!(c.node(n).config().masters, ids(1..=4), "node {n}");
        assert_eq!(c.node(n).config().w, 3);
    }
    let r = c.set_nodes(1, &[1, 2, 3], &[]);
    assert_eq!(r, Ok(Response::Configured));
    assert_eq!(c.node(4).role(), locker_core::Role::Client);
    assert_eq!(c.node(2).config().masters, ids(1..=3));
    c.locked(1, "after", "v", secs(10));
}

#[test]
fn replica_receives_entries_through_the_push() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.locked(1, "k", "v", secs(10));
    assert_eq!(c.local_value(4, "k"), None, "replication is asynchronous");
    c.run_for(ms(200));
    assert_eq!(c.local_value(4, "k"), Some(b"v".to_vec()));
    // The replica carries the remaining lease, not the whole one.
    let view = &c.node(4).dirty_entries(c.now)[0].1;
    assert!(view.remaining < secs(10), "{view:?}");
}

#[test]
fn fresh_replica_catches_up_through_sync() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.stop(4);
    c.locked(1, "k", "v", secs(10));
    c.run_for(ms(200));
    c.restart(4, false);
    c.run_for(ms(200));
    assert_eq!(c.local_value(4, "k"), Some(b"v".to_vec()));
}

#[test]
fn promote_replica_to_master() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.locked(1, "k", "v", secs(5));
    assert_eq!(
        c.request(1, Request::SetW { w: 3 }),
        Ok(Response::Configured)
    );
    let r = c.set_nodes(1, &[1, 2, 3, 4], &[]);
    assert_eq!(r, Ok(Response::Configured));
    assert_eq!(c.node(4).role(), locker_core::Role::Master);
    assert!(
        c.node(4).is_recovering(c.now),
        "promoted master is quarantined"
    );
    let quarantine = c.node(4).config().quarantine();
    c.run_for(quarantine + ms(10));
    assert!(!c.node(4).is_recovering(c.now));
    c.stop(1);
    c.locked(2, "k2", "v", secs(5));
    assert_eq!(c.local_value(4, "k2"), Some(b"v".to_vec()));
}

#[test]
fn wait_for_sees_the_key_appear_on_a_replica() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    let w = c.submit(
        4,
        Request::WaitFor {
            key: "k".into(),
            timeout: secs(2),
        },
    );
    c.locked(1, "k", "v", secs(10));
    let r = c.run_until_reply(w);
    assert!(
        matches!(&r, Ok(Response::Present(v)) if v.value == b"v"),
        "{r:?}"
    );
    let r = c.request(
        4,
        Request::WaitFor {
            key: "never".into(),
            timeout: ms(300),
        },
    );
    assert!(is_err(&r, &OpError::Timeout), "{r:?}");
}

#[test]
fn wait_for_release_after_release_after_expiry_and_timeout() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    let lease = c.locked(1, "k", "v", secs(10));
    c.run_for(ms(200));
    let wait = |key: &str, t| Request::WaitForRelease {
        key: key.into(),
        timeout: t,
    };
    let w = c.submit(4, wait("k", secs(5)));
    assert_eq!(
        c.release(1, "k", "v", Some(lease.token)),
        Ok(Response::Released)
    );
    assert_eq!(c.run_until_reply(w), Ok(Response::Gone));

    c.locked(1, "e", "v", secs(1));
    c.run_for(ms(200));
    let w = c.submit(4, wait("e", secs(5)));
    assert_eq!(c.run_until_reply(w), Ok(Response::Gone));

    c.locked(1, "held", "v", secs(10));
    c.run_for(ms(200));
    let r = c.request(4, wait("held", ms(500)));
    assert!(is_err(&r, &OpError::Timeout), "{r:?}");
}

#[test]
fn update_is_compare_and_set_keeping_the_token() {
    let mut c = Cluster::masters(3);
    let lease = c.locked(1, "k", "v1", secs(10));
    let r = c.update(2, "k", "v1", "v2");
    assert_eq!(r, Ok(Response::Updated { token: lease.token }));
    for n in 1..=3 {
        assert_eq!(c.local_value(n, "k"), Some(b"v2".to_vec()), "node {n}");
    }
    let r = c.update(2, "k", "v1", "v3");
    assert!(is_err(&r, &OpError::NotOwner), "{r:?}");
    let r = c.read(3, "k");
    assert!(
        matches!(&r, Ok(Response::Value(Some(v))) if v.value == b"v2" && v.token == lease.token),
        "{r:?}"
    );
}

#[test]
fn replica_started_during_a_partition_catches_up_after_it_heals() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.stop(4);
    c.locked(1, "k", "v", secs(30));
    c.run_for(ms(200));
    c.isolate(4);
    c.restart(4, false);
    c.run_for(ms(500));
    assert_eq!(c.local_value(4, "k"), None);
    c.heal();
    c.run_for(secs(2));
    assert_eq!(
        c.local_value(4, "k"),
        Some(b"v".to_vec()),
        "replica never caught up"
    );
}

/// An extend keeps the entry's version, so a replica cannot order two
/// states of one tenure by version; it relies on each master's numbered
/// stream instead: a push that arrives after a newer one from the same
/// master is dropped, never applied over the extension.
#[test]
fn a_reordered_older_push_does_not_shorten_an_extended_lease_on_a_replica() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    let held: Rc<RefCell<Vec<InFlight>>> = Rc::default();
    let h = held.clone();
    c.drop_when(move |from, to, msg| {
        if matches!(msg, locker_core::Message::Replicate { .. }) {
            h.borrow_mut().push(InFlight {
                from,
                to,
                msg: msg.clone(),
            });
            return true;
        }
        false
    });
    let l = c.locked(1, "k", "v", secs(2));
    c.run_for(ms(100));
    let before_extend = held.borrow().len();
    assert!(before_extend > 0);
    let r = c.extend(1, "k", "v", secs(20), Some(l.token));
    assert!(r.is_ok(), "{r:?}");
    c.run_for(ms(100));
    c.stop_dropping();
    // Deliver the pushes newest first: the extension, then the stale ones.
    let msgs: Vec<InFlight> = held.borrow_mut().drain(..).rev().collect();
    assert!(msgs.len() > before_extend);
    c.in_flight.extend(msgs);
    c.deliver_all();
    c.run_for(secs(3));
    assert_eq!(
        c.local_value(4, "k"),
        Some(b"v".to_vec()),
        "the replica dropped an entry the masters still hold"
    );
    assert_eq!(c.local_value(1, "k"), Some(b"v".to_vec()));
}

/// A replica cut off while a key is written misses that push; the master's
/// next mark shows the gap, and the replica asks for a snapshot.
#[test]
fn replica_converges_after_a_partition_that_lost_pushes() {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[], |_| {});
    c.run_for(ms(300));
    c.isolate(4);
    c.locked(1, "k", "v", secs(30));
    c.run_for(ms(300));
    c.heal();
    c.run_for(secs(5));
    assert_eq!(c.local_value(4, "k"), Some(b"v".to_vec()));
}

#[test]
fn a_retried_lock_counts_its_validity_from_the_successful_attempt() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[11, 12], |_| {});
    let first = c.submit(11, lock_req("k", "a", ms(300), secs(2)));
    let submitted = c.now;
    let second = c.submit(12, lock_req("k", "b", ms(300), secs(2)));
    for id in [first, second] {
        let r = c.run_until_reply(id);
        let Ok(Response::Locked(l)) = r else {
            panic!("{r:?}")
        };
        let started = l.valid_until - l.validity;
        let replied = c.reply_times[&id];
        assert!(
            started >= submitted && started <= replied,
            "{l:?} replied {replied}"
        );
    }
}
