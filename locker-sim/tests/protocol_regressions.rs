//! Protocol bugs in locker-core that this simulator found, each replayed
//! from the case that showed it (the fix is named in each test's comment).

use locker_sim::{run, Faults, SimOptions};

/// A one-round release counted a master's `Missing` as done, but a delayed
/// commit of the lock can still reach that master under its live promise and
/// install the entry after the release answered: the released value came
/// back. Found by the property test (1,000 cases), shrunk to one delay burst:
///
/// `locker-sim replay --seed 14473516218361399486 --masters 3 --replicas 1 --clients 2 --faults loss,dup,reorder,partition,crash,pause,skew --max-drift 0.001 --sim-secs 2.476916633614081 --ops-per-sec 330.47051157129647 --pipeline 5 --max-lease-ms 1568 --schedule delay@249+378`
///
/// Key `l0-1`: lock `c0-23` (token 17) commits on masters 0 and 2 and answers
/// at 547.7 ms; its commit to master 1 is delayed to 554.5 ms. The release by
/// token (548.1 ms) gets `Done` from master 0 and `Missing` from master 1
/// (550.8 ms, before the commit) and answers `Released` at 553.6 ms. Then the
/// delayed commit installs `c0-23` on master 1 (its promise is still live),
/// master 2 never saw the release, and a quorum read at 627 ms returned
/// `c0-23` from masters 1 and 2. Fixed: a master without the entry but with
/// a live promise on the key answers a release `busy`, not `missing`.
#[test]
fn a_delayed_commit_does_not_resurrect_a_released_entry() {
    let opts = SimOptions {
        masters: 3,
        replicas: 1,
        clients: 2,
        faults: Faults::parse("loss,dup,reorder,partition,crash,pause,skew").unwrap(),
        sim_secs: 2.476916633614081,
        ops_per_sec: 330.47051157129647,
        pipeline: 5,
        max_lease_ms: 1568,
        schedule: Some("delay@249+378".parse().unwrap()),
        ..SimOptions::default()
    };
    let r = run(14473516218361399486, &opts, false);
    assert!(r.report.ok(), "{:?}", r.report.violations);
}

/// A lock's prepare reached one master late, after a later tenure of the key
/// (token 59) had come and gone there; the coordinator, back from a pause in
/// its commit phase, committed there too and counted the acknowledgement, so
/// the lock succeeded with token 49 after 59. Fixed twice over: a coordinator
/// commits to a late granter only if the grant's highest token is below its
/// own, and a master refuses a lock commit whose token is not above the
/// highest token of its grant.
///
/// `locker-sim replay --seed 21 --masters 3 --replicas 1 --clients 2 --faults all --max-drift 0.001 --sim-secs 3 --ops-per-sec 300 --pipeline 8 --max-lease-ms 10000`
#[test]
fn a_late_grant_never_takes_a_commit_with_an_older_token() {
    let opts = SimOptions {
        masters: 3,
        replicas: 1,
        clients: 2,
        sim_secs: 3.0,
        ..SimOptions::default()
    };
    let r = run(21, &opts, false);
    assert!(r.report.ok(), "{:?}", r.report.violations);
}

/// A one-round release by token whose first copy applied and whose answer
/// never reached the coordinator was refused when a duplicate arrives after a
/// newer tenure began (`Mismatch`), and the coordinator answered `not_owner`:
/// the release "did not happen", yet the key was free and another client
/// locked it in between. Found by the property test (2,000 cases, proptest
/// seed 9), shrunk to three events:
///
/// `locker-sim replay --seed 3405213706120762421 --masters 1 --replicas 1 --clients 4 --faults loss,dup,reorder,delay,crash,skew --max-drift 0.001 --sim-secs 2.999648929135478 --ops-per-sec 390.4324192175531 --pipeline 7 --max-lease-ms 1568 --schedule dup@1796+28,crash:73:0@945+843,delay@43+1779`
///
/// Key `l2-3`: client 3's release of `c3-67` (token 58) is sent at 1.821 s
/// during the duplication burst; the first copy deletes the entry at
/// 1.823 s (no answer reaches the coordinator), client 0 locks `c0-80`
/// (token 61) at 1.843 s, the delayed duplicate reaches the master at
/// 1.893 s and is refused, and the release answered `not_owner` at 1.896 s.
/// Fixed: a master refuses a release for an older token than the key's
/// latest tenure as `superseded`, which the coordinator answers as
/// `unconfirmed` (the release may be what freed the key).
#[test]
fn a_duplicated_release_does_not_answer_not_owner_after_it_applied() {
    let opts = SimOptions {
        masters: 1,
        replicas: 1,
        clients: 4,
        faults: Faults::parse("loss,dup,reorder,delay,crash,skew").unwrap(),
        sim_secs: 2.999648929135478,
        ops_per_sec: 390.4324192175531,
        pipeline: 7,
        max_lease_ms: 1568,
        schedule: Some(
            "dup@1796+28,crash:73:0@945+843,delay@43+1779"
                .parse()
                .unwrap(),
        ),
        ..SimOptions::default()
    };
    let r = run(3405213706120762421, &opts, false);
    assert!(r.report.ok(), "{:?}", r.report.violations);
}

/// `set_nodes` swapping a master and a replica (`--admin-nodes`) reaches
/// every master and replica, but never the client-only nodes: they are in
/// no member list. They went on coordinating with the master list they
/// started with, and their locks failed with `no_quorum` once two swaps had
/// happened (liveness: probe locks at clients 2 and 4 at 22.3 s). Fixed: a
/// coordinator told `NotMaster` asks that node for the membership in force
/// (`MembershipQuery` / `MembershipState`) and applies it if newer.
///
/// `locker-sim replay --seed 4 --masters 5 --replicas 2 --clients 8 --faults none --max-drift 0.001 --sim-secs 10 --ops-per-sec 300 --pipeline 8 --max-lease-ms 10000 --admin-nodes`
#[test]
fn client_only_coordinators_learn_a_set_nodes_they_were_not_sent() {
    let opts = SimOptions {
        admin_nodes: true,
        faults: Faults::default(),
        sim_secs: 10.0,
        ..SimOptions::default()
    };
    let r = run(4, &opts, false);
    assert!(r.report.ok(), "{:?}", r.report.violations);
}
