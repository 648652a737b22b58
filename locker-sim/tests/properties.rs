//! Properties over cluster shape, timing, workload and fault schedule.
//!
//! The fault schedule is generated explicitly (a list of timed fault
//! events, [`locker_sim::schedule::strategy`]), so a failing case shrinks to
//! a small schedule; it prints the `locker-sim replay ... --schedule ...`
//! command that reruns exactly that case.
//!
//! `LOCKER_SIM_CASES` scales the number of cases (default 200);
//! `LOCKER_SIM_PROPTEST_SEED` picks other cases than the fixed default.

use locker_sim::{run, schedule, Faults, SimOptions};
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

prop_compose! {
    fn options()(
        masters in 1usize..=5,
        replicas in 0usize..=2,
        clients in 1usize..=4,
        sim_secs in 0.5f64..3.0,
        ops_per_sec in 20.0f64..400.0,
        pipeline in 1usize..=8,
        max_lease_ms in 800u64..2_500,
        // Background faults: steady loss, duplication, reordering, delay,
        // skewed clocks, and holders pausing past their deadline. With an
        // explicit schedule, partitions, crashes and node pauses come only
        // from it (the partition and crash flags then draw nothing), so that
        // shrinking the schedule removes them.
        bits in 0u8..=255,
        schedule in schedule::strategy(3_000, 10),
        // set_w between majority values during the run.
        admin in any::<bool>(),
    ) -> SimOptions {
        let faults = Faults::from_bits(bits);
        SimOptions {
            masters, replicas, clients, sim_secs, ops_per_sec, pipeline, max_lease_ms, faults, admin,
            schedule: Some(schedule),
            ..SimOptions::default()
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, rng_seed: rng_seed(), ..ProptestConfig::default() })]

    /// Safe configurations never violate mutual exclusion, fencing,
    /// linearizability, convergence, liveness or the nodes' invariants,
    /// under any fault schedule.
    #[test]
    fn safe_clusters_keep_every_invariant(seed in any::<u64>(), o in options()) {
        let r = run(seed, &o, false);
        let checked = ["mutex", "fencing", "linearizability", "convergence", "liveness", "invariants"];
        for c in checked {
            let v = r.report.of(c);
            prop_assert!(v.is_empty(), "{c}: {:?}\nreplay: {}", v.first(), o.replay_command(seed));
        }
    }
}
