//! Properties over cluster shape, timing, workload and fault schedule.
//!
//! `LOCKER_SIM_CASES` scales the number of cases (default 200). A failing
//! case prints the `locker-sim replay` command that reproduces it.

use locker_sim::{run, Faults, SimOptions};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("LOCKER_SIM_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

/// The cases are drawn from a fixed seed, so that a run of the test suite is
/// reproducible; set `LOCKER_SIM_PROPTEST_SEED` to explore other cases.
fn rng_seed() -> proptest::test_runner::RngSeed {
    let seed = std::env::var("LOCKER_SIM_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x10c4e7);
    proptest::test_runner::RngSeed::Fixed(seed)
}

fn fault_list(f: &Faults) -> String {
    let names = [
        (f.loss, "loss"),
        (f.dup, "dup"),
        (f.reorder, "reorder"),
        (f.delay, "delay"),
        (f.partition, "partition"),
        (f.crash, "crash"),
        (f.pause, "pause"),
        (f.skew, "skew"),
    ];
    let on: Vec<&str> = names.iter().filter(|(b, _)| *b).map(|(_, n)| *n).collect();
    if on.is_empty() {
        "none".into()
    } else {
        on.join(",")
    }
}

prop_compose! {
    fn faults()(bits in 0u8..=255) -> Faults {
        Faults::from_bits(bits)
    }
}

prop_compose! {
    fn options()(
        masters in 1usize..=5,
        replicas in 0usize..=2,
        clients in 1usize..=4,
        sim_secs in 0.5f64..3.0,
        ops_per_sec in 20.0f64..400.0,
        max_lease_ms in 800u64..2_500,
        faults in faults(),
    ) -> SimOptions {
        SimOptions {
            masters, replicas, clients, sim_secs, ops_per_sec, max_lease_ms, faults,
            ..SimOptions::default()
        }
    }
}

fn replay(seed: u64, o: &SimOptions) -> String {
    format!(
        "locker-sim replay --seed {seed} --masters {} --replicas {} --clients {} --faults {} --sim-secs {} --ops-per-sec {} --max-lease-ms {}",
        o.masters, o.replicas, o.clients, fault_list(&o.faults), o.sim_secs, o.ops_per_sec, o.max_lease_ms
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, rng_seed: rng_seed(), ..ProptestConfig::default() })]

    /// Safe configurations never violate mutual exclusion, fencing,
    /// linearizability, convergence, liveness or the nodes' invariants,
    /// under any faults.
    #[test]
    fn safe_clusters_keep_every_invariant(seed in any::<u64>(), o in options()) {
        let r = run(seed, &o, false);
        let checked = ["mutex", "fencing", "linearizability", "convergence", "liveness", "invariants"];
        for c in checked {
            let v = r.report.of(c);
            prop_assert!(v.is_empty(), "{c}: {:?}\nreplay: {}", v.first(), replay(seed, &o));
        }
    }
}
