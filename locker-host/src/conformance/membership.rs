//! Membership scenarios: the peer links follow `set_nodes`.

use locker_core::{NodeId, Role, Token};
use std::future::Future;
use std::time::{Duration, Instant};

use super::cluster::{bounded, sleep, Cluster, Placement};
use crate::Runtime;

/// Polls `check` every 20 ms until it holds, failing the test with `what`
/// after `secs` seconds.
async fn wait_for<R: Runtime, F: Future<Output = bool>>(
    runtime: &R,
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "after {secs} s: {what}");
        sleep(runtime, Duration::from_millis(20)).await;
    }
}

/// Node `i + 1`'s links, as (peer, up), sorted by peer.
async fn links<R: Runtime>(c: &Cluster<R>, i: usize) -> Vec<(NodeId, bool)> {
    let mut links = c.client(i).status().await.expect("status").links;
    links.sort();
    links
}

/// Three masters; a brand-new node 4, which knows their addresses but is
/// none of the members they were started with, is made a master in node 1's
/// place (`set_nodes` through node 2). Every node learns the change, the
/// links follow it (node 4 is reached although no master was started with
/// its address), node 1 is shut down, its links are retired, and locks keep
/// working through nodes 2, 3 and 4 with tokens above every earlier one;
/// once node 4's quarantine is over, node 2 is shut down too and nodes 3
/// and 4 still form a quorum.
pub async fn a_new_node_replaces_a_master_and_the_links_follow<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 60, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let first = c
            .client(0)
            .lock("door", "before", Duration::from_secs(1))
            .await
            .expect("a lock before the change");
        c.client(0)
            .release("door", "before", Some(first.token))
            .await
            .expect("release");
        let new = c.add_node().await;
        let (two, three, four) = (NodeId(2), NodeId(3), NodeId(4));
        assert_eq!(c.client(new).status().await.unwrap().role, Role::Client);

        let members = vec![two, three, four];
        c.client(1)
            .with_wait(Duration::from_secs(5))
            .set_nodes(members.clone(), vec![])
            .await
            .expect("set_nodes");
        for i in [1, 2, new] {
            let others: Vec<(NodeId, bool)> = members
                .iter()
                .filter(|&&n| n != NodeId(i as u64 + 1))
                .map(|&n| (n, true))
                .collect();
            wait_for(
                &runtime,
                15,
                &format!(
                    "node {} runs masters 2, 3, 4 and links to the others",
                    i + 1
                ),
                || async {
                    let s = c.client(i).status().await.expect("status");
                    let up = links(&c, i).await;
                    s.summary.masters == members && others.iter().all(|l| up.contains(l))
                },
            )
            .await;
        }
        // The removed node, still running, learns it over the link its
        // peers keep to it while it is connected.
        wait_for(&runtime, 15, "node 1 learns it is no master", || async {
            c.client(0).status().await.expect("status").role == Role::Client
        })
        .await;

        c.kill(0);
        for i in [1, 2, new] {
            wait_for(
                &runtime,
                15,
                &format!("node {} retires its link to node 1", i + 1),
                || async { links(&c, i).await.iter().all(|(n, _)| *n != NodeId(1)) },
            )
            .await;
        }

        let mut last = first.token;
        for i in [1, 2, new] {
            last = lock_after(&c, i, last).await;
        }
        // Once out of quarantine, node 4 votes: with node 2 gone too, nodes
        // 3 and 4 are a quorum.
        wait_for(&runtime, 15, "node 4 leaves its quarantine", || async {
            !c.client(new)
                .status()
                .await
                .expect("status")
                .summary
                .recovering
        })
        .await;
        c.kill(1);
        for i in [2, new] {
            last = lock_after(&c, i, last).await;
        }
    })
    .await
}

/// Locks and releases `door` through node `i + 1`, whose token must be
/// above `last`; returns it.
async fn lock_after<R: Runtime>(c: &Cluster<R>, i: usize, last: Token) -> Token {
    let client = c.client(i).with_wait(Duration::from_secs(5));
    let value = format!("via node {}", i + 1);
    let held = client
        .lock("door", &value, Duration::from_secs(1))
        .await
        .unwrap_or_else(|e| panic!("lock through node {}: {e:?}", i + 1));
    assert!(
        held.token > last,
        "token {} through node {} after {}",
        held.token.0,
        i + 1,
        last.0
    );
    client
        .release("door", &value, Some(held.token))
        .await
        .expect("release");
    held.token
}
