//! Membership changes during a run: `set_w` between majority values, issued
//! through a client's node while the workload runs (`SimOptions::admin`,
//! `locker-sim run --admin`).

use locker_sim::{run, Faults, SimOptions};

// The open issue `--admin` found is in tests/open_issues.rs.

fn admin() -> SimOptions {
    SimOptions {
        admin: true,
        faults: Faults::default(),
        sim_secs: 10.0,
        ..SimOptions::default()
    }
}

#[test]
fn the_administrator_changes_w_during_the_run() {
    let r = run(
        0,
        &SimOptions {
            clients: 2,
            sim_secs: 4.0,
            ..admin()
        },
        false,
    );
    let configured = r
        .ops
        .iter()
        .filter(|o| o.kind.name() == "set_w" && matches!(o.ret, Some((_, Ok(_)))))
        .count();
    assert!(configured > 0, "no set_w was configured");
}
