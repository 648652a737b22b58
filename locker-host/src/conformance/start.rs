//! Scenarios of how nodes start and stop: restarts with and without their
//! state, damaged state, failed persists, calls that must end, readiness.

use locker_core::{NodeId, OpError};
use std::time::{Duration, Instant};

use super::cluster::{bounded, Cluster, Placement, Restart};
use super::scenarios::wait_until;
use crate::{Error, FatalError, Runtime, StartError, StateError, STATE_FILE};

/// The bug this guards against: two of three masters killed and started
/// again with no state voted at once with an empty memory, and a second
/// client got the held key (with the same token). Started without state,
/// they are quarantined: the key stays held until its lease ends.
pub async fn masters_restarted_without_state_keep_a_held_key_held<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 40, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let lease = Duration::from_secs(3);
        let alice = c.client(2).lock("door", "alice", lease).await.unwrap();
        for i in [0, 1] {
            c.kill(i);
            c.restart_with(i, Restart::WithoutState).await.unwrap();
        }
        c.wait_links().await;
        // Bob keeps trying through a restarted master until alice's lease
        // has ended on her clock.
        while Instant::now() < alice.deadline {
            let bob = c
                .client(0)
                .with_wait(Duration::from_millis(200))
                .lock("door", "bob", lease)
                .await;
            if let Ok(h) = bob {
                assert!(
                    Instant::now() >= alice.deadline,
                    "bob got door (token {}) while alice (token {}) held it",
                    h.token,
                    alice.token
                );
            }
        }
    })
    .await
}

/// Masters restarted with their data directory are quarantined too, and
/// resume their token ceiling: the next token is above every earlier one.
pub async fn masters_restarted_with_state_keep_tokens_increasing<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 40, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let first = c
            .client(0)
            .lock("k", "a", Duration::from_secs(1))
            .await
            .unwrap();
        for i in [0, 1, 2] {
            c.kill(i);
        }
        for i in [0, 1, 2] {
            c.restart_with(i, Restart::WithState).await.unwrap();
            assert!(
                c.client(i).status().await.unwrap().summary.recovering,
                "a restarted master is quarantined"
            );
        }
        // Ready counts links and its own quarantine, not its peers': wait
        // for all three.
        for i in [0, 1, 2] {
            c.node(i).ready().await;
        }
        let next = c
            .client(0)
            .with_wait(Duration::from_secs(2))
            .lock("k2", "a", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(next.token > first.token, "{next:?} after {first:?}");
    })
    .await
}

/// A damaged state file (garbage, emptied, cut short) is a start error that
/// names the file, never "nothing persisted"; so is a bootstrap over state.
pub async fn damaged_state_is_a_start_error<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        c.client(0)
            .lock("k", "a", Duration::from_secs(1))
            .await
            .unwrap();
        c.kill(1);
        let err = c.restart_with(1, Restart::AsNewCluster).await.unwrap_err();
        assert!(
            matches!(err, StartError::BootstrapOverState(_)),
            "bootstrap over state: {err}"
        );
        let path = c.data_dir(NodeId(2)).join(STATE_FILE);
        let good = std::fs::read(&path).unwrap();
        for (what, bytes) in [
            ("garbage", b"\x00\x01garbage\n".to_vec()),
            ("emptied", Vec::new()),
            ("cut short", good[..good.len() - 5].to_vec()),
        ] {
            std::fs::write(&path, bytes).unwrap();
            match c.restart_with(1, Restart::WithState).await {
                Err(e @ StartError::State(StateError::Corrupt { .. })) => assert!(
                    e.to_string().contains(&path.display().to_string()),
                    "{what}: the error names the file: {e}"
                ),
                Err(e) => panic!("{what}: {e}"),
                Ok(()) => panic!("{what}: the node started on a damaged state file"),
            }
        }
        std::fs::write(&path, good).unwrap();
        c.restart_with(1, Restart::WithState).await.unwrap();
    })
    .await
}

/// A master whose data directory stops taking writes stops at its next
/// persist (the first token it sees): it never acknowledges the commit that
/// needed it, answers nothing more, and says why.
pub async fn a_failed_persist_stops_the_node<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let dir = c.data_dir(NodeId(1));
        // A regular file where the directory was: writes fail, even as root.
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::write(&dir, b"not a directory").unwrap();
        let n1 = c.client(0);
        let held = c
            .client(1)
            .with_wait(Duration::from_secs(2))
            .lock("k", "a", Duration::from_secs(1))
            .await
            .unwrap();
        wait_until(&runtime, || async { c.node(0).fatal_error().is_some() }).await;
        let fatal = c.node(0).fatal_error().unwrap();
        assert!(matches!(*fatal, FatalError::Storage(_)), "{fatal}");
        assert!(fatal.to_string().contains(&dir.display().to_string()));
        assert!(!c.node(0).is_ready());
        let r = n1.read("k").await;
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        // The other two masters go on, with tokens above the first.
        let next = c
            .client(2)
            .with_wait(Duration::from_secs(2))
            .lock("k2", "a", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(next.token > held.token);
    })
    .await
}

/// A call through a node that is gone ends with an error instead of
/// waiting forever, whether it was made before or after the node stopped.
pub async fn calls_end_when_their_node_stops<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let before = c.client(2).with_wait(Duration::from_secs(60));
        let after = c.client(2).with_wait(Duration::from_secs(60));
        // Held, so the first call waits on the key.
        before.lock("k", "a", Duration::from_secs(3)).await.unwrap();
        let waiting = {
            let before = before.clone();
            super::scenarios::spawn(&runtime, async move {
                before.lock("k", "b", Duration::from_secs(3)).await
            })
        };
        c.kill(0);
        c.kill(1);
        c.kill(2);
        let r = waiting.recv().await.unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        let r = after.lock("k2", "a", Duration::from_secs(1)).await;
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        let r = after.status().await;
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    })
    .await
}

/// `ready()` returns once a write can find a quorum: a lock that does not
/// retry succeeds right after it, on a cluster just started.
pub async fn a_ready_node_takes_a_lock_at_once<R: Runtime>(runtime: R, place: Placement<R>) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start_unready(runtime.clone(), place, 3, 0).await;
        c.node(0).ready().await;
        assert!(c.client(0).status().await.unwrap().ready);
        let r = c
            .client(0)
            .with_wait(Duration::ZERO)
            .lock("k", "a", Duration::from_secs(1))
            .await;
        assert!(
            !matches!(r, Err(Error::Refused(OpError::NoQuorum))),
            "{r:?}"
        );
        r.unwrap();
    })
    .await
}
