//! Mutual exclusion and fencing under contention with message loss,
//! over several seeds (a small in-test checker; the simulator does more).

mod support;

use locker_core::{Config, Lease, OpError, Request, Response, Time};
use support::*;

struct Grant {
    granted_at: Time,
    lease: Lease,
    released_at: Option<Time>,
}

fn contention_run(seed: u64, loss_per_mille: u64) {
    contention_run_with(seed, loss_per_mille, false)
}

fn contention_run_with(seed: u64, loss_per_mille: u64, crash_masters: bool) {
    let clients = [11u64, 12, 13, 14];
    let mut c = Cluster::with(&[1, 2, 3], &[], &clients, |cfg: &mut Config| {
        cfg.seed = cfg.id.0 * 7919 + seed;
    });
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    c.drop_when(move |_, _, _| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % 1000 < loss_per_mille
    });
    let mut grants: Vec<Grant> = Vec::new();
    for round in 0..8u64 {
        let ids: Vec<_> = clients
            .iter()
            .map(|&n| {
                (
                    n,
                    c.submit(
                        n,
                        lock_req("mutex", &format!("c{n}"), ms(300 + 50 * (n % 3)), ms(400)),
                    ),
                )
            })
            .collect();
        for (n, id) in ids {
            let r = c.run_until_reply(id);
            match r {
                Ok(Response::Locked(lease)) => {
                    let granted_at = c.reply_times[&id];
                    let mut released_at = None;
                    if (round + n) % 2 == 0 {
                        // The holder stops acting as holder when it sends its release.
                        let sent_at = c.now;
                        let rel = c.request(
                            n,
                            Request::Release {
                                key: "mutex".into(),
                                value: format!("c{n}").into(),
                                token: Some(lease.token),
                                wait: ms(200),
                            },
                        );
                        // Whatever the answer, it gave the lock up at sent_at.
                        let _ = rel;
                        released_at = Some(sent_at);
                    }
                    grants.push(Grant {
                        granted_at,
                        lease,
                        released_at,
                    });
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(
                    OpError::Held
                    | OpError::NoQuorum
                    | OpError::Unconfirmed { .. }
                    | OpError::NotFound
                    | OpError::Timeout
                    | OpError::Recovering,
                ) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        if crash_masters {
            // A master crashes and comes back with amnesia (but its ceiling).
            let victim = 1 + (round % 3);
            c.stop(victim);
            c.run_for(ms(20));
            c.restart(victim, true);
        }
        c.run_for(ms(50));
    }
    if std::env::var("DUMP").is_ok() {
        for (n, o) in &c.log {
            println!("{n:?} {o:?}");
        }
    }
    assert!(
        crash_masters || loss_per_mille >= 300 || !grants.is_empty(),
        "seed {seed}: nothing was ever locked"
    );
    grants.sort_by_key(|g| g.granted_at);
    for pair in grants.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            b.lease.token > a.lease.token,
            "seed {seed}: tokens not increasing: {:?} then {:?}",
            a.lease,
            b.lease
        );
    }
    for (i, a) in grants.iter().enumerate() {
        for b in &grants[i + 1..] {
            // b was granted after a; it must not be granted while a is valid,
            // unless a's holder released first.
            let a_end = a
                .released_at
                .unwrap_or(a.lease.valid_until)
                .min(a.lease.valid_until);
            assert!(
                b.granted_at >= a_end || b.lease.valid_until <= a.granted_at,
                "seed {seed}: overlapping holders {:?} (granted {}) and {:?} (granted {})",
                a.lease,
                a.granted_at,
                b.lease,
                b.granted_at
            );
        }
    }
}

#[test]
fn mutual_exclusion_and_fencing_without_loss() {
    for seed in 0..4 {
        contention_run(seed, 0);
    }
}

#[test]
fn mutual_exclusion_and_fencing_with_loss() {
    for seed in 0..40 {
        contention_run(seed, 150);
        contention_run(seed + 1000, 400);
    }
}

#[test]
fn mutual_exclusion_and_fencing_with_master_crashes() {
    for seed in 0..20 {
        contention_run_with(seed, 100, true);
    }
}
