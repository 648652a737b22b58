//! Arbitrary bytes into a small `locker-sim` cluster shape and fault set
//! (within the fault model: majority quorum, bounded drift, persisted token
//! ceilings, restart quarantine, a healed quiet phase); the simulator's
//! checkers must report no violation. The seed drives the fault schedule.
//! The mapping lives in `locker_sim::schedule`, so that the workspace tests
//! replay every committed input the same way.
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
        "seed {seed} {opts:?}: {:?}",
        result.report.violations
    );
});
