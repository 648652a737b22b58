//! Arbitrary bytes into a small `locker-sim` cluster shape and fault set
//! (within the fault model: majority quorum, bounded drift, persisted token
//! ceilings, restart quarantine, a healed quiet phase); the simulator's
//! checkers must report no violation. The seed drives the fault schedule.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use locker_sim::{run, Faults, SimOptions};

#[derive(Arbitrary, Debug)]
struct Shape {
    seed: u64,
    masters: u8,
    replicas: u8,
    clients: u8,
    faults: u8,
    tenths_of_secs: u8,
    lease_ms: u16,
    drift_permille: u8,
}

fuzz_target!(|s: Shape| {
    let f = s.faults;
    let opts = SimOptions {
        masters: 1 + (s.masters % 5) as usize,
        replicas: (s.replicas % 3) as usize,
        clients: 1 + (s.clients % 3) as usize,
        faults: Faults {
            loss: f & 1 != 0,
            dup: f & 2 != 0,
            reorder: f & 4 != 0,
            delay: f & 8 != 0,
            partition: f & 16 != 0,
            crash: f & 32 != 0,
            pause: f & 64 != 0,
            skew: f & 128 != 0,
        },
        // Within the configured bound (0.1%).
        drift: Some(0.001 * (s.drift_permille % 101) as f64 / 100.0),
        sim_secs: 0.2 + (s.tenths_of_secs % 8) as f64 / 10.0,
        max_lease_ms: 50 + (s.lease_ms % 2_000) as u64,
        ..SimOptions::default()
    };
    let result = run(s.seed, &opts, false);
    assert!(
        result.report.ok(),
        "seed {} {:?}: {:?}",
        s.seed,
        s,
        result.report.violations
    );
});
