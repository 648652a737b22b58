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

#[test]
fn a_seed_and_its_drawn_schedule_given_after_the_draw_are_the_same_run() {
    let opts = SimOptions {
        sim_secs: 3.0,
        max_lease_ms: 1_000,
        clients: 2,
        ..SimOptions::default()
    };
    let drawn = run(7, &opts, true);
    assert!(!drawn.schedule.events.is_empty());
    let explicit = SimOptions {
        schedule: Some(drawn.schedule.to_string().parse().unwrap()),
        after_draw: true,
        ..opts
    };
    assert_eq!(run(7, &explicit, true).trace, drawn.trace);
}
