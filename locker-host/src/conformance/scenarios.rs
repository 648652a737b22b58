//! The scenarios, each a whole test: arrange a cluster, act, assert by name.
//!
//! Each takes the runtime of its clients and timers and the placement of its
//! nodes, and is bounded by a timeout.

use futures_lite::AsyncWriteExt;
use locker_core::{NodeId, OpError};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::cluster::{bounded, sleep, Cluster, Placement, SECRET};
use crate::{Client, Consistency, Error, LeaseState, Runtime};

pub(super) fn refused(r: Result<impl std::fmt::Debug, Error>) -> OpError {
    match r {
        Err(Error::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Runs `fut` as a task on `runtime`; the receiver yields its output.
pub(super) fn spawn<R: Runtime, T: Send + 'static>(
    runtime: &R,
    fut: impl Future<Output = T> + Send + 'static,
) -> async_channel::Receiver<T> {
    let (tx, rx) = async_channel::bounded(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await).await;
    });
    rx
}

/// Polls `check` every 10 ms until it holds.
pub(super) async fn wait_until<R: Runtime, F: Future<Output = bool>>(
    runtime: &R,
    mut check: impl FnMut() -> F,
) {
    while !check().await {
        sleep(runtime, Duration::from_millis(10)).await;
    }
}

/// A counter from a node's status.
async fn counter<R: Runtime>(client: &Client<R>, name: &str) -> u64 {
    let status = client.status().await.expect("status");
    status
        .counters
        .iter()
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| *v)
}

/// Three clients race for one key over TCP: one wins; the next tenure's
/// token is greater.
pub async fn racing_lockers_get_one_winner_and_increasing_tokens<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let mut tasks = Vec::new();
        for i in 0..3 {
            // Long enough for a winner to emerge under contention on a
            // loaded machine; shorter than the lease, so losers give up.
            let client = c.remote(i).await.with_wait(Duration::from_secs(2));
            tasks.push(spawn(&runtime, async move {
                client
                    .lock("k", format!("v{i}"), Duration::from_secs(3))
                    .await
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            if let Ok(h) = t.recv().await.expect("the task finished") {
                winners.push(h);
            }
        }
        assert_eq!(winners.len(), 1, "exactly one locker wins");
        let client = c.remote(0).await;
        let v = client.read("k").await.unwrap().expect("the winner's entry");
        assert_eq!(v.token, winners[0].token);
        let holder = String::from_utf8(v.value).unwrap();
        assert_eq!(
            refused(client.release("k", "nobody", None).await),
            OpError::NotOwner
        );
        client
            .release("k", &holder, Some(winners[0].token))
            .await
            .unwrap();
        let again = client
            .lock("k", "next", Duration::from_secs(3))
            .await
            .unwrap();
        assert!(again.token > winners[0].token);
    })
    .await
}

/// Update, extend, expiry; a replica catches up (`wait_for`) and sees the
/// entry go (`wait_for_release`).
pub async fn update_extend_expiry_and_replica_waits<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 1).await;
        let client = c.remote(0).await;
        let h = client.lock("k", "a", Duration::from_secs(1)).await.unwrap();
        assert!(h.deadline <= Instant::now() + Duration::from_secs(1));
        assert_eq!(client.update("k", "a", "b").await.unwrap(), h.token);
        assert_eq!(
            refused(client.update("k", "a", "c").await),
            OpError::NotOwner
        );
        let e = client
            .extend("k", "b", Duration::from_secs(1), Some(h.token))
            .await
            .unwrap();
        assert_eq!(e.token, h.token);
        // The replica catches up (it may first see the value before the
        // update, pushed in between), then sees the entry expire.
        let replica = c.remote(3).await;
        let seen = replica.wait_for("k", Duration::from_secs(2)).await.unwrap();
        assert!(seen.value == b"a" || seen.value == b"b", "{seen:?}");
        wait_until(&runtime, || async {
            replica.dirty_read("k").await.unwrap().map(|e| e.value) == Some(b"b".to_vec())
        })
        .await;
        replica
            .wait_for_release("k", Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(client.read("k").await.unwrap(), None);
        let next = client.lock("k", "c", Duration::from_secs(2)).await.unwrap();
        assert!(next.token > h.token);
        assert_eq!(
            refused(
                client
                    .extend("k", "b", Duration::from_millis(600), Some(h.token))
                    .await
            ),
            OpError::NotOwner
        );
        assert_eq!(
            refused(replica.wait_for("absent", Duration::from_millis(100)).await),
            OpError::Timeout
        );
    })
    .await
}

/// With one master of three down, every operation still succeeds.
pub async fn one_master_down_changes_nothing<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        c.kill(2);
        let client = c.remote(0).await.with_wait(Duration::from_secs(2));
        let h = client.lock("k", "a", Duration::from_secs(2)).await.unwrap();
        assert_eq!(client.read("k").await.unwrap().unwrap().token, h.token);
        assert_eq!(client.update("k", "a", "b").await.unwrap(), h.token);
        client
            .extend("k", "b", Duration::from_secs(2), Some(h.token))
            .await
            .unwrap();
        client.release("k", "b", Some(h.token)).await.unwrap();
        assert_eq!(client.read("k").await.unwrap(), None);
        let lag = client.lag().await.unwrap();
        assert!(lag > Duration::ZERO);
        let status = client.status().await.unwrap();
        assert_eq!(status.summary.leases, 0, "the lag probe released its key");
    })
    .await
}

/// A holder releases with a master down (one that lacks the entry, since a
/// commit needs only `w` masters and a release by token needs `w` holders).
pub async fn release_succeeds_with_a_master_down<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let h = c
            .client(0)
            .lock("k", "a", Duration::from_secs(2))
            .await
            .unwrap();
        let mut down = 2;
        for i in 0..3 {
            if c.client(i).dirty_read("k").await.unwrap().is_none() {
                down = i;
            }
        }
        c.kill(down);
        let survivor = if down == 0 { 1 } else { 0 };
        c.client(survivor)
            .with_wait(Duration::from_secs(2))
            .release("k", "a", Some(h.token))
            .await
            .unwrap();
        assert_eq!(c.client(survivor).read("k").await.unwrap(), None);
    })
    .await
}

/// With two masters of three down, writes are refused with `no_quorum`,
/// and a holder cannot extend.
pub async fn no_quorum_when_a_majority_is_down<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let client = c.client(0);
        let h = client.lock("k", "a", Duration::from_secs(2)).await.unwrap();
        c.kill(1);
        c.kill(2);
        // A killed node's tasks stop at their next await: one of them may
        // still grant and apply the first attempt, whose acknowledgement
        // is then lost, which reads as `unconfirmed`; never as locked.
        let refusal = refused(client.lock("k2", "a", Duration::from_secs(2)).await);
        assert!(
            matches!(refusal, OpError::NoQuorum | OpError::Unconfirmed { .. }),
            "{refusal:?}"
        );
        assert!(client
            .extend("k", "a", Duration::from_secs(2), Some(h.token))
            .await
            .is_err());
    })
    .await
}

/// A master killed and restarted (same address, no memory) reports
/// `recovering` and does not vote until its quarantine is over; then it does.
pub async fn a_killed_master_restarts_quarantined_then_votes_again<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 40, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let client = c.client(0);
        let first = client
            .lock("k1", "a", Duration::from_secs(1))
            .await
            .unwrap();
        c.kill(2);
        c.restart(2).await;
        let status = c.client(2).status().await.unwrap();
        assert!(
            status.summary.recovering,
            "a restarted master is quarantined"
        );
        // With n2 down too, n1 and the quarantined n3 are not a quorum.
        c.kill(1);
        c.wait_links().await;
        let r = client.lock("k2", "a", Duration::from_secs(1)).await;
        assert!(
            matches!(
                r,
                Err(Error::Refused(OpError::Recovering | OpError::NoQuorum))
            ),
            "{r:?}"
        );
        // Once the quarantine is over, n3 votes again.
        wait_until(&runtime, || async {
            !c.client(2).status().await.unwrap().summary.recovering
        })
        .await;
        let h = client
            .clone()
            .with_wait(Duration::from_secs(2))
            .lock("k2", "a", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            h.token > first.token,
            "tokens stay monotonic across the restart"
        );
    })
    .await
}

/// The guard keeps a registered name past its first lease, and reports it
/// lost (at its deadline, not before) once the masters are gone.
pub async fn guard_extends_then_loses_its_lease_when_the_cluster_is_gone<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let client = c.remote(0).await;
        let guard = client
            .register_name("leader", "me", Duration::from_secs(1))
            .await
            .unwrap();
        let first_deadline = guard.deadline();
        sleep(&runtime, Duration::from_millis(2500)).await;
        assert_eq!(
            guard.state(),
            LeaseState::Held,
            "the guard extended past the first lease"
        );
        assert!(guard.deadline() > first_deadline);
        assert_eq!(
            client
                .whereis_name("leader", Consistency::Consistent)
                .await
                .unwrap()
                .as_deref(),
            Some(&b"me"[..])
        );
        let mut watch = guard.watch();
        c.kill(1);
        c.kill(2);
        let t = Instant::now();
        while watch.get() != LeaseState::Lost {
            watch.changed().await.unwrap();
        }
        assert!(
            Instant::now() >= guard.deadline(),
            "lost only at the deadline"
        );
        assert!(t.elapsed() < Duration::from_secs(3));
    })
    .await
}

/// Dropping a guard releases its key; an explicit release unregisters a
/// name, and `whereis_name` follows.
pub async fn guard_releases_on_drop_and_the_name_registry_follows<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let client = c.client(0);
        let guard = client
            .lock_guard("k", "a", Duration::from_secs(3))
            .await
            .unwrap();
        drop(guard);
        let other = c.client(1).with_wait(Duration::from_secs(2));
        other.lock("k", "b", Duration::from_secs(3)).await.unwrap();

        let named = client
            .register_name("svc", "a", Duration::from_secs(3))
            .await
            .unwrap();
        let mut watch = named.watch();
        assert_eq!(
            other
                .whereis_name("svc", Consistency::Consistent)
                .await
                .unwrap(),
            Some(b"a".to_vec())
        );
        named.release().await.unwrap();
        assert_eq!(watch.get(), LeaseState::Released);
        assert_eq!(
            other
                .whereis_name("svc", Consistency::Consistent)
                .await
                .unwrap(),
            None
        );
        let _kept = other
            .register_name("svc", "b", Duration::from_secs(3))
            .await
            .unwrap();
        other.unregister_name("svc", "b").await.unwrap();
        assert_eq!(
            other
                .whereis_name("svc", Consistency::Consistent)
                .await
                .unwrap(),
            None
        );
    })
    .await
}

/// A client with the wrong secret is refused; garbage and an oversized
/// frame close their connections and are counted; others are still served.
pub async fn bad_clients_are_turned_away_and_others_still_served<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let addr = c.addrs[&NodeId(1)];
        match Client::connect_on(runtime.clone(), addr, Some(b"wrong")).await {
            Err(Error::Auth(_)) => {}
            other => panic!("wrong secret accepted: {:?}", other.err()),
        }
        let (_r1, mut garbage) = runtime.connect(addr).await.unwrap();
        garbage
            .write_all(b"GET / HTTP/1.1\r\n\r\ngarbage garbage")
            .await
            .unwrap();
        garbage.flush().await.unwrap();
        let (_r2, mut oversized) = runtime.connect(addr).await.unwrap();
        oversized.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        oversized.write_all(&[1; 64]).await.unwrap();
        oversized.flush().await.unwrap();
        let good = c.remote(0).await;
        wait_until(&runtime, || async {
            counter(&good, "auth_failures").await >= 3 && counter(&good, "bad_frames").await >= 1
        })
        .await;
        good.lock("k", "v", Duration::from_secs(1)).await.unwrap();
        assert_eq!(good.read("k").await.unwrap().unwrap().value, b"v");
    })
    .await
}

/// A master configured with the wrong secret never joins: its links stay
/// down, the others count failed handshakes, and the other two still form
/// a quorum while it alone cannot.
pub async fn a_peer_with_the_wrong_secret_never_joins<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let intruder = NodeId(3);
        let secrets = HashMap::from([(intruder, b"not the cluster secret".to_vec())]);
        let c = Cluster::start_with_secrets(runtime.clone(), place, 3, 0, secrets).await;
        assert_ne!(SECRET, b"not the cluster secret");
        wait_until(&runtime, || async {
            c.link_up(0, NodeId(2)).await && c.link_up(1, NodeId(1)).await
        })
        .await;
        let honest = c.client(0);
        wait_until(&runtime, || async {
            counter(&honest, "auth_failures").await >= 1
        })
        .await;
        assert!(!c.link_up(0, intruder).await);
        assert!(!c.link_up(1, intruder).await);
        assert!(!c.link_up(2, NodeId(1)).await);
        let h = honest.lock("k", "a", Duration::from_secs(2)).await.unwrap();
        assert!(h.token.0 >= 1);
        assert_eq!(
            refused(c.client(2).lock("k2", "a", Duration::from_secs(2)).await),
            OpError::NoQuorum
        );
    })
    .await
}

/// A replica that was down while a key was locked catches up once it is
/// back (wooga's "fresh replica catches up").
pub async fn a_replica_started_late_catches_up<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 1).await;
        c.kill(3);
        let client = c.client(0);
        let h = client.lock("k", "a", Duration::from_secs(3)).await.unwrap();
        c.restart(3).await;
        let seen = c
            .client(3)
            .wait_for("k", Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!((seen.value.as_slice(), seen.token), (&b"a"[..], h.token));
    })
    .await
}

/// `set_w` and `set_nodes` reach every node over TCP: the replica is
/// promoted to a fourth master (with `w` raised first, as four masters need
/// three votes), locks still work, and the cluster is set back.
pub async fn set_w_and_set_nodes_reach_every_node<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 1).await;
        let admin = c.remote(0).await.with_wait(Duration::from_secs(2));
        let (masters, replica) = (vec![NodeId(1), NodeId(2), NodeId(3)], NodeId(4));
        let mut four = masters.clone();
        four.push(replica);
        assert!(
            matches!(
                admin.set_nodes(four.clone(), vec![]).await,
                Err(Error::Refused(OpError::Invalid(_)))
            ),
            "four masters with w = 2 is unsafe and refused"
        );
        admin.set_w(3).await.unwrap();
        admin.set_nodes(four, vec![]).await.unwrap();
        for i in 0..4 {
            let status = c.client(i).status().await.unwrap();
            assert_eq!(status.role, locker_core::Role::Master, "n{}", i + 1);
            assert_eq!(status.summary.w, 3, "n{}", i + 1);
        }
        admin.lock("k", "a", Duration::from_secs(2)).await.unwrap();
        admin.set_nodes(masters, vec![replica]).await.unwrap();
        admin.set_w(2).await.unwrap();
        assert_eq!(
            c.client(3).status().await.unwrap().role,
            locker_core::Role::Replica
        );
        admin.lock("k2", "a", Duration::from_secs(2)).await.unwrap();
    })
    .await
}
