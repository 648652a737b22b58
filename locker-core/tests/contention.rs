//! How coordinators spend messages when they cannot succeed at once: a
//! master in quarantine is not asked again until its quarantine ends.

mod support;

use locker_core::{Message, NodeId, Output};
use support::*;

/// Opening messages (prepares, reads, one-round writes) node `from` sent to
/// `to` since output `since` of the log.
fn asked(c: &Cluster, since: usize, from: u64, to: u64) -> usize {
    c.log[since..]
        .iter()
        .filter(|(id, out)| {
            *id == NodeId(from)
                && matches!(
                    out,
                    Output::Send {
                        to: t,
                        msg: Message::Prepare { .. }
                            | Message::Read { .. }
                            | Message::ExtendHeld { .. }
                            | Message::ReleaseHeld { .. },
                    } if *t == NodeId(to)
                )
        })
        .count()
}

#[test]
fn a_coordinator_skips_a_master_in_quarantine_until_it_ends() {
    let mut c = Cluster::masters(5);
    c.stop(1);
    c.restart(1, true);
    assert!(c.node(1).is_recovering(c.now));

    // The first attempt asks master 1 and learns how long it will refuse.
    let start = c.log.len();
    c.locked(3, "a", "v", secs(5));
    assert_eq!(asked(&c, start, 3, 1), 1);

    // Later operations count it as refusing without asking it.
    let start = c.log.len();
    let held = c.locked(3, "b", "v", secs(5));
    assert!(c.read(3, "a").is_ok());
    assert!(c.release(3, "b", "v", Some(held.token)).is_ok());
    assert_eq!(asked(&c, start, 3, 1), 0);
    assert_eq!(asked(&c, start, 3, 2), 3);

    // Once its quarantine is over, master 1 is asked again and votes.
    let quarantine = c.node(1).config().quarantine();
    c.run_for(quarantine);
    assert!(!c.node(1).is_recovering(c.now));
    let start = c.log.len();
    c.locked(3, "c", "v", secs(5));
    assert_eq!(asked(&c, start, 3, 1), 1);
    assert!(c
        .node(1)
        .dirty_entries(c.now)
        .iter()
        .any(|(k, _)| k == b"c"));
}

#[test]
fn a_majority_in_quarantine_answers_recovering_without_asking_it_again() {
    let mut c = Cluster::masters(3);
    for id in [1, 2] {
        c.stop(id);
        c.restart(id, true);
    }
    let r = c.lock(3, "a", "v", secs(5));
    assert!(is_err(&r, &locker_core::OpError::Recovering), "{r:?}");

    // A lock that may wait retries without a message to the masters it
    // knows are in quarantine, and succeeds once they are out of it.
    let start = c.log.len();
    let quarantine = c.node(1).config().quarantine();
    let id = c.submit(3, lock_req("a", "v", secs(5), quarantine + secs(1)));
    let r = c.run_until_reply(id);
    assert!(r.is_ok(), "{r:?}");
    assert!(asked(&c, start, 3, 1) <= 2, "{}", asked(&c, start, 3, 1));
}
