//! One seed, one run: two replays produce identical traces.

use locker_sim::{run, SimOptions};

#[test]
fn replaying_a_seed_gives_identical_bytes() {
    let opts = SimOptions {
        sim_secs: 3.0,
        max_lease_ms: 1_000,
        clients: 4,
        ..SimOptions::default()
    };
    let a = run(42, &opts, true);
    let b = run(42, &opts, true);
    assert!(!a.trace.is_empty());
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.events, b.events);
    let c = run(43, &opts, true);
    assert_ne!(a.trace, c.trace);
}
