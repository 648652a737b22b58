//! How coordinators spend messages when they cannot succeed at once: a
//! master in quarantine is not asked again until its quarantine ends, and a
//! lock waiting for a held key hears from the masters when it is freed
//! instead of polling them.

mod support;

use locker_core::{Message, NodeId, OpError, Output, Response};
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
    assert!(is_err(&r, &OpError::Recovering), "{r:?}");

    // A lock that may wait retries without a message to the masters it
    // knows are in quarantine, and succeeds once they are out of it.
    let start = c.log.len();
    let quarantine = c.node(1).config().quarantine();
    let id = c.submit(3, lock_req("a", "v", secs(5), quarantine + secs(1)));
    let r = c.run_until_reply(id);
    assert!(r.is_ok(), "{r:?}");
    assert!(asked(&c, start, 3, 1) <= 2, "{}", asked(&c, start, 3, 1));
}

/// Node 1 holds `k`; node 4 (a client-only node) asks for it with a long
/// wait and is told `held` by every master. Returns the waiting request.
fn held_with_a_waiting_lock(c: &mut Cluster, lease: std::time::Duration) -> locker_core::RequestId {
    c.locked(1, "k", "holder", lease);
    let id = c.submit(4, lock_req("k", "waiter", secs(5), secs(20)));
    c.run_for(ms(10));
    assert!(!c.replies.contains_key(&id));
    id
}

fn watching_cluster() -> Cluster {
    Cluster::with(&[1, 2, 3], &[], &[4], |_| {})
}

#[test]
fn a_waiting_lock_asks_no_more_while_the_key_is_held() {
    let mut c = watching_cluster();
    let id = held_with_a_waiting_lock(&mut c, secs(30));
    let start = c.log.len();
    c.run_for(secs(10));
    // Only the slow poll in case a `Freed` was lost: at most one attempt
    // per `held_poll`, where the backoff alone would make about a hundred.
    let poll = c.node(4).config().retry.held_poll;
    let attempts = asked(&c, start, 4, 1);
    assert!(attempts <= 20, "{attempts} attempts in 10 s");
    assert!(
        attempts as u32 >= 10_000 / poll.as_millis() as u32 / 2,
        "{attempts}"
    );
    assert!(!c.replies.contains_key(&id));
}

#[test]
fn a_waiting_lock_takes_the_key_as_soon_as_it_is_released() {
    let mut c = watching_cluster();
    let id = held_with_a_waiting_lock(&mut c, secs(30));
    let token = c.node(1).dirty_entries(c.now)[0].1.token;
    assert!(c.release(1, "k", "holder", Some(token)).is_ok());
    let released = c.now;
    let initial = c.node(4).config().retry.initial;
    locked_by(&mut c, id, released + initial);
}

/// Runs until request `id` is answered, and checks that it took the key by
/// `latest`.
fn locked_by(c: &mut Cluster, id: locker_core::RequestId, latest: locker_core::Time) {
    let reply = c.run_until_reply(id);
    assert!(matches!(reply, Ok(Response::Locked(_))), "{reply:?}");
    assert!(
        c.reply_times[&id] <= latest,
        "{} after {latest}",
        c.reply_times[&id]
    );
}

#[test]
fn a_waiting_lock_takes_the_key_as_soon_as_the_lease_expires() {
    let mut c = watching_cluster();
    let id = held_with_a_waiting_lock(&mut c, secs(3));
    let expiry = c.now + secs(3);
    let initial = c.node(4).config().retry.initial;
    locked_by(&mut c, id, expiry + initial);
}

#[test]
fn a_waiting_lock_whose_news_is_lost_still_gets_the_key_by_polling() {
    let mut c = watching_cluster();
    c.drop_when(|_, _, m| matches!(m, Message::Freed { .. }));
    let id = held_with_a_waiting_lock(&mut c, secs(30));
    let token = c.node(1).dirty_entries(c.now)[0].1.token;
    assert!(c.release(1, "k", "holder", Some(token)).is_ok());
    let released = c.now;
    let poll = c.node(4).config().retry.held_poll;
    locked_by(&mut c, id, released + poll);
}

#[test]
fn a_waiting_lock_still_answers_held_when_its_wait_runs_out() {
    let mut c = watching_cluster();
    c.locked(1, "k", "holder", secs(30));
    let start = c.now;
    let r = c.request(4, lock_req("k", "waiter", secs(5), ms(2500)));
    assert!(is_err(&r, &OpError::Held), "{r:?}");
    assert!(
        c.now <= start + ms(2500),
        "answered at {} for a wait from {start}",
        c.now
    );
}

#[test]
fn a_lock_waiting_behind_an_abandoned_promise_takes_the_key_when_it_expires() {
    let mut c = Cluster::with(&[1, 2, 3], &[], &[4, 5], |_| {});
    // Node 5's lock is granted everywhere, but its commits never arrive:
    // the promises block the key until they expire.
    c.drop_when(|from, _, m| from == NodeId(5) && matches!(m, Message::Commit { .. }));
    c.submit(5, lock_req("k", "lost", secs(5), ms(0)));
    c.deliver_all();
    let granted = c.now;
    let start = c.log.len();
    let id = c.submit(4, lock_req("k", "waiter", secs(5), secs(5)));
    let config = c.node(4).config().clone();
    let expiry = granted + config.promise_timeout;
    locked_by(&mut c, id, expiry + config.retry.initial);
    assert!(c.reply_times[&id] >= expiry);
    // One attempt told `busy`, and the one after the news.
    assert_eq!(asked(&c, start, 4, 1), 2);
}
