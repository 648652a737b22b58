//! A failing property case shrinks to a small fault schedule, and the
//! printed command replays exactly that case.
//!
//! The setup is broken on purpose: masters restart without quarantine, so a
//! crashed master votes at once with an empty memory. Without crashes the
//! cluster is safe; with them mutual exclusion is lost. The property "mutual
//! exclusion holds" must fail, and proptest must shrink the schedule it drew
//! (up to a dozen events of every kind); `locker_sim::shrink` then takes it
//! down to the few crashes that matter.

use std::cell::Cell;

use locker_sim::schedule::{self, Schedule};
use locker_sim::{run, Faults, SimOptions};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

fn broken() -> SimOptions {
    SimOptions {
        masters: 3,
        replicas: 0,
        clients: 3,
        quarantine: false,
        faults: Faults::default(),
        sim_secs: 2.0,
        ops_per_sec: 150.0,
        pipeline: 4,
        max_lease_ms: 1_000,
        ..SimOptions::default()
    }
}

fn with(schedule: &Schedule) -> SimOptions {
    SimOptions {
        schedule: Some(schedule.clone()),
        ..broken()
    }
}

#[test]
fn amnesia_without_quarantine_shrinks_to_a_few_crashes() {
    let config = Config {
        cases: 64,
        max_shrink_iters: 400,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let first_failure = Cell::new(None::<usize>);
    let strategy = (0u64..1_000, schedule::strategy(2_000, 12));
    let outcome = runner.run(&strategy, |(seed, schedule)| {
        let r = run(seed, &with(&schedule), false);
        let broken = !r.report.ok();
        if broken && first_failure.get().is_none() {
            first_failure.set(Some(schedule.events.len()));
        }
        prop_assert!(!broken, "{:?}", r.report.violations);
        Ok(())
    });
    let (seed, shrunk) = match outcome {
        Err(TestError::Fail(_, value)) => value,
        other => panic!("the broken setup never failed: {other:?}"),
    };
    let before = first_failure.get().expect("a first failure");
    let replay = with(&shrunk).replay_command(seed);
    println!(
        "first failing schedule: {before} events; proptest shrunk it to {} events: {shrunk}\nreplay: {replay}",
        shrunk.events.len()
    );
    // Proptest removes events while the case keeps failing, but stops in
    // a local minimum (an event that matters only together with another).
    assert!(
        shrunk.events.len() < before,
        "proptest did not shrink the schedule of {before} events: {shrunk}"
    );
    // `locker_sim::shrink` (what `locker-sim replay --shrink` runs) then
    // drops every event that does not matter, one at a time.
    let shrunk = locker_sim::shrink(seed, &with(&shrunk))
        .and_then(|o| o.schedule)
        .expect("still failing");
    println!(
        "locker_sim::shrink: {} events: {}",
        shrunk.events.len(),
        with(&shrunk).replay_command(seed)
    );
    assert!(
        shrunk.events.len() <= 3,
        "shrink left {} events: {shrunk}",
        shrunk.events.len()
    );
    // The printed command's schedule is the shrunk one, and replaying it
    // fails the same way.
    let parsed: Schedule = shrunk.to_string().parse().unwrap();
    assert_eq!(parsed, shrunk);
    assert!(!run(seed, &with(&parsed), false).report.ok());
}
