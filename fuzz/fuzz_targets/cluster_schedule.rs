//! Arbitrary bytes into a small `locker-sim` cluster shape, fault set and
//! fault schedule (within the fault model: majority quorum, bounded drift,
//! persisted token ceilings, restart quarantine, a healed quiet phase); the
//! simulator's checkers must report no violation.
//!
//! The mapping is `locker_sim::schedule::from_bytes`: a shape, then either
//! nothing (the seed draws the fault schedule, as in the first inputs) or the
//! byte `S` and an explicit `locker_sim::schedule::Schedule` built with
//! `arbitrary`. The same `Schedule` type has the proptest strategy of the
//! simulator's property tests, so a failure found here prints the same
//! `locker-sim replay ... --schedule ...` command a failing property does,
//! and the workspace tests replay every committed input the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use locker_sim::{run, schedule};

fuzz_target!(|bytes: &[u8]| {
    let Ok((seed, opts)) = schedule::from_bytes(bytes) else {
        return;
    };
    let result = run(seed, &opts, false);
    assert!(
        result.report.ok(),
        "{:?}\nreplay: {}",
        result.report.violations,
        opts.replay_command(seed)
    );
});
