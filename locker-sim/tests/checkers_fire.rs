//! Every checker fires on a setup that breaks one of the protocol's
//! assumptions on purpose. A checker that never fires proves nothing.

use locker_sim::{run, Faults, SimOptions};

fn faults(list: &str) -> Faults {
    Faults::parse(list).unwrap()
}

/// Runs seeds until `checker` fires; panics if it never does.
fn fires(checker: &str, opts: SimOptions, seeds: u64) {
    for seed in 0..seeds {
        let r = run(seed, &opts, false);
        if !r.report.of(checker).is_empty() {
            return;
        }
    }
    panic!("{checker} never fired in {seeds} seeds with {opts:?}");
}

fn small() -> SimOptions {
    SimOptions {
        masters: 5,
        replicas: 1,
        clients: 6,
        sim_secs: 6.0,
        max_lease_ms: 2_000,
        ..SimOptions::default()
    }
}

#[test]
fn w_below_majority_under_partitions_breaks_mutual_exclusion() {
    let opts = SimOptions {
        w: Some(2),
        unsafe_quorum: true,
        faults: faults("partition"),
        ..small()
    };
    fires("mutex", opts.clone(), 10);
    fires("fencing", opts.clone(), 10);
    fires("linearizability", opts, 10);
}

#[test]
fn drift_beyond_max_drift_breaks_mutual_exclusion() {
    // Long leases: tenures that end by expiry, not release, are the ones a
    // slow holder clock stretches past a fast master's expiry.
    let opts = SimOptions {
        drift: Some(0.9),
        faults: faults("skew"),
        max_lease_ms: 10_000,
        sim_secs: 6.0,
        ..SimOptions::default()
    };
    fires("mutex", opts, 40);
}

#[test]
fn amnesia_without_quarantine_breaks_mutual_exclusion() {
    let opts = SimOptions {
        quarantine: false,
        faults: faults("none"),
        crash_all_masters_at: Some(2.0),
        ..small()
    };
    fires("mutex", opts, 20);
}

#[test]
fn amnesia_without_token_ceiling_breaks_fencing() {
    let opts = SimOptions {
        persist_ceiling: false,
        faults: faults("none"),
        crash_all_masters_at: Some(2.0),
        ..small()
    };
    fires("fencing", opts, 10);
}

#[test]
fn a_replica_cut_off_forever_breaks_convergence() {
    let opts = SimOptions {
        faults: faults("none"),
        isolate_forever: vec![5],
        ..small()
    };
    fires("convergence", opts, 5);
}

#[test]
fn a_majority_cut_off_forever_breaks_liveness() {
    let opts = SimOptions {
        faults: faults("none"),
        isolate_forever: vec![0, 1, 2],
        ..small()
    };
    fires("liveness", opts, 3);
}

#[test]
fn lost_freed_news_breaks_the_handoff_probe() {
    let opts = SimOptions {
        faults: faults("none"),
        drop_freed: true,
        ..small()
    };
    fires("liveness", opts.clone(), 3);
    // Only the handoff probe: every other probe still succeeds.
    let r = run(0, &opts, false);
    let failures = r.report.of("liveness");
    assert!(!failures.is_empty());
    assert!(
        failures.iter().all(|f| f.contains("handoff")),
        "{failures:?}"
    );
}

#[test]
fn safe_configurations_pass_without_faults() {
    for seed in 0..5 {
        let r = run(
            seed,
            &SimOptions {
                faults: faults("none"),
                ..small()
            },
            false,
        );
        assert!(r.report.ok(), "seed {seed}: {:?}", r.report);
    }
}
