//! The same seed and inputs give byte-identical outputs; another seed differs.

mod support;

use locker_core::wire::encode_frame;
use locker_core::{Output, Request, Response};
use support::*;

/// A busy run: contention on a few keys from several coordinators, one
/// message in seven dropped, releases, reads and a replica. Returns every
/// output of every node, encoded, in order.
fn busy_run(seed: u64) -> (Vec<u8>, usize) {
    let mut c = Cluster::with(&[1, 2, 3], &[4], &[11, 12, 13], |cfg| {
        cfg.seed = cfg.id.0.wrapping_mul(0x9e37_79b9).wrapping_add(seed)
    });
    let mut n = 0u64;
    c.drop_when(move |_, _, _| {
        n += 1;
        n % 7 == 3
    });
    let mut locked = 0;
    for round in 0..6u64 {
        let ids: Vec<_> = [11u64, 12, 13, 1]
            .iter()
            .map(|&node| {
                let key = format!("key{}", round % 2);
                c.submit(node, lock_req(&key, &format!("v{node}"), ms(400), ms(600)))
            })
            .collect();
        for id in ids {
            if let Ok(Response::Locked(l)) = c.run_until_reply(id) {
                locked += 1;
                if round % 3 == 0 {
                    let key = format!("key{}", round % 2);
                    let _ = c.request(
                        11,
                        Request::Release {
                            key: key.into(),
                            value: "v11".into(),
                            token: Some(l.token),
                            wait: ms(300),
                        },
                    );
                }
            }
        }
        let _ = c.read(12, "key0");
        c.run_for(ms(100));
    }
    let mut bytes = Vec::new();
    for (node, out) in &c.log {
        match out {
            Output::Send { to, msg } => encode_frame(&(0u8, node, to, msg), &mut bytes),
            Output::Reply { id, reply } => encode_frame(&(1u8, node, id, reply), &mut bytes),
            Output::PersistTokenCeiling(t) => encode_frame(&(2u8, node, t), &mut bytes),
            Output::PersistMembership(m) => encode_frame(&(3u8, node, m), &mut bytes),
        }
        .unwrap();
    }
    assert!(c.dropped > 0, "the scenario must drop messages");
    (bytes, locked)
}

#[test]
fn same_seed_same_inputs_give_identical_bytes() {
    let (a, locked) = busy_run(7);
    let (b, _) = busy_run(7);
    assert!(locked > 0, "the scenario must lock something");
    assert!(
        a.len() > 10_000,
        "busy scenario too small: {} bytes",
        a.len()
    );
    assert!(a == b, "outputs differ between two identical runs");
}

#[test]
fn different_seeds_give_different_outputs() {
    let (a, _) = busy_run(7);
    let (b, _) = busy_run(8);
    assert_ne!(a, b);
}
