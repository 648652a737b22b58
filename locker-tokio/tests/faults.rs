//! The real-process fault suite: three `locker serve` masters, clients in
//! this process (the `locker_tokio::Client` library) and in processes of
//! their own (`locker lock` / `release`, and `locker hold`, which holds a
//! key with a lease guard and reports its work), and faults done to them
//! all: kill -9 and restart in every mode, SIGSTOP and SIGCONT of masters
//! and of a guard-holding process, and a TCP proxy that cuts, delays and
//! drops one direction of the traffic. The recorded history is checked by
//! locker-sim's own mutual-exclusion and fencing checkers, and by two checks
//! of the work lease guards allowed.
//!
//! The short form runs with `cargo test --workspace` (one scenario at a
//! time). The long form injects random faults for `LOCKER_FAULT_SECS`
//! (default 60) seconds, with progress on stderr:
//!
//! ```sh
//! LOCKER_FAULT_SECS=600 cargo test --release -p locker-tokio --test faults -- --ignored --nocapture
//! ```
//!
//! `LOCKER_FAULT_MODES` picks the restart modes of the long form, as a
//! comma-separated list of `intact`, `no-data-dir`, `garbage`, `empty`,
//! `writes-fail`, `file` (default: all but `no-data-dir`, which gives up
//! fencing by design when it meets a master that missed a commit; with it,
//! fencing is reported but not asserted).

#[path = "faults/mod.rs"]
mod harness;
mod support;

use harness::chaos::{Chaos, Progress, Settings};
use harness::cluster::{max_lease, quarantine, Cluster, RestartMode, Started};
use harness::disk;
use harness::history::{now_us, us, Check, HolderKind, Recorder, Verdict, WorkStep, ALL_CHECKS};
use harness::proxy::{Direction, Mode};
use harness::workload::{Holder, Mix, Workload};
use locker_tokio::Client;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scenario at a time: each starts several processes, and a two-core
/// machine running them side by side would be testing its scheduler.
static SERIAL: Mutex<()> = Mutex::new(());

fn run<F: std::future::Future>(scenario: F) -> F::Output {
    let _one_at_a_time = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(scenario)
}

/// What a scenario expected and did not see. Collected, not asserted at
/// once, so that a run on a broken program goes on to the checkers and
/// shows what the breakage allows.
#[derive(Default)]
struct Findings(Vec<String>);

impl Findings {
    fn expect(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            eprintln!("  unexpected: {what}");
            self.0.push(what);
        }
    }

    /// Panics with every finding and every violation of `checks`.
    fn assert_clean(self, verdict: &Verdict, checks: &[Check]) {
        eprintln!("  checkers: {}", verdict.summary());
        let violations = verdict.failures(checks);
        if !self.0.is_empty() || !violations.is_empty() {
            let mut msg = String::new();
            for f in &self.0 {
                msg.push_str(&format!("expected behaviour missing: {f}\n"));
            }
            msg.push_str(&violations);
            panic!("{msg}");
        }
    }
}

/// The lease of the scenarios' long holders: as long as the cluster
/// allows, at most 10 s (so a holder outlives a restart).
fn long_lease() -> Duration {
    max_lease().min(Duration::from_secs(10))
}

/// How long a lock may wait for a key whose holder's lease must first run
/// out and whose masters must first leave quarantine.
fn patient_wait() -> Duration {
    quarantine() + long_lease() + Duration::from_secs(5)
}

/// A one-off lock by a library client of its own.
struct OneOff<'a> {
    /// The holder's name, also its value.
    name: &'a str,
    key: &'a str,
    lease: Duration,
    wait: Duration,
    /// Released after this long, or left to expire.
    keep: Option<Duration>,
}

/// Locks as `one` says through node `node` and records it. The token.
async fn lock_once(
    cluster: &Cluster,
    node: u64,
    one: OneOff<'_>,
    recorder: &Recorder,
) -> Result<u64, String> {
    let OneOff {
        name,
        key,
        lease,
        wait,
        keep,
    } = one;
    let holder = recorder.holder(HolderKind::Library, name);
    let addr = cluster.client_addr(node);
    let client = tokio::time::timeout(
        Duration::from_secs(5),
        Client::connect(addr, Some(cluster.secret())),
    )
    .await
    .map_err(|_| format!("{name}: connect timed out"))?
    .map_err(|e| format!("{name}: connect: {e}"))?
    .with_wait(wait);
    let invoke = now_us();
    let held = tokio::time::timeout(wait + Duration::from_secs(5), client.lock(key, name, lease))
        .await
        .map_err(|_| format!("{name}: lock of {key} did not end"))?
        .map_err(|e| format!("{name}: lock of {key}: {e}"))?;
    let ret = now_us();
    recorder.grant(key, held.token.0, invoke, ret);
    let deadline = invoke + us(held.validity);
    let end = match keep {
        Some(keep) => {
            tokio::time::sleep(keep).await;
            let sent = now_us();
            let release = client.release(key, name, Some(held.token));
            let _ = tokio::time::timeout(wait + Duration::from_secs(5), release).await;
            sent
        }
        None => deadline,
    };
    recorder.window(key, holder, held.token.0, ret, end.min(deadline));
    Ok(held.token.0)
}

/// Waits until `n` more grants than `from` are recorded (progress, not an
/// assertion); whether they came.
async fn grants_reach(recorder: &Recorder, n: usize, bound: Duration) -> bool {
    let until = Instant::now() + bound;
    while recorder.grants() < n {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Waits until node `id`'s data dir holds a state file (the first persist).
async fn state_written(cluster: &Cluster, id: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while disk::state_files(cluster.data_dir(id)).is_empty() {
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// A restarted node's quarantine as `status` showed it.
struct QuarantineSeen {
    /// The send time of the last `status` that said `recovering: true`.
    last_recovering_asked: Option<u64>,
    /// The receipt time of the first that said `recovering: false`.
    first_voting_seen: Option<u64>,
}

/// Polls node `id`'s status until it stops recovering, at most `bound`.
async fn watch_quarantine(cluster: &Cluster, id: u64, bound: Duration) -> QuarantineSeen {
    let until = Instant::now() + bound;
    let mut seen = QuarantineSeen {
        last_recovering_asked: None,
        first_voting_seen: None,
    };
    while Instant::now() < until {
        let asked = now_us();
        match cluster.status(id).await.map(|s| s.summary.recovering) {
            Some(true) => seen.last_recovering_asked = Some(asked),
            Some(false) => {
                seen.first_voting_seen = Some(now_us());
                break;
            }
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

/// The expectations on a restart that must come up quarantined.
fn expect_quarantined(findings: &mut Findings, cluster: &Cluster, id: u64, started: &Started) {
    match started {
        Started::Answering { recovering, .. } => findings.expect(*recovering, || {
            format!("node {id} restarted without proof of its memory answered recovering: false (it votes at once)")
        }),
        other => findings.expect(false, || {
            format!("node {id} did not come up: {other:?}\n{}", cluster.log_tail(id))
        }),
    }
}

/// The lease of the scenarios' hold processes: short enough to wait out.
fn holder_lease() -> Duration {
    Duration::from_millis(1500).min(max_lease())
}

/// A scenario under load: a new cluster, the workload on `keys` through
/// every node, and the hold process `holder` holding `gate` through node
/// `node` with [`holder_lease`].
async fn busy_cluster(
    name: &str,
    keys: &[&str],
    holder: &str,
    node: u64,
    rec: &Arc<Recorder>,
) -> (Cluster, Workload, Holder, Findings) {
    let c = Cluster::start(name, rec.clone()).await;
    let mut findings = Findings::default();
    let work = Workload::start(
        &Mix::on(keys, max_lease()),
        c.client_addrs(),
        c.secret(),
        c.secret_file(),
        rec.clone(),
    );
    let mut h = Holder::spawn(
        holder,
        c.client_addr(node),
        c.secret_file(),
        "gate",
        holder_lease(),
        Duration::from_secs(3),
        rec.clone(),
    );
    findings.expect(
        h.held_within(Duration::from_secs(10)).await.is_some(),
        || format!("{holder} never held gate"),
    );
    (c, work, h, findings)
}

/// (a) kill -9 and a restart with the data dir intact: the node comes back
/// quarantined, and (where the max lease is short enough to wait) votes
/// only once the quarantine, at least the max lease, is over.
#[test]
fn restart_with_its_data_dir_is_quarantined_and_safe() {
    run(async {
        let rec = Arc::new(Recorder::default());
        let (mut c, work, mut holder, mut findings) =
            busy_cluster("intact", &["a", "b"], "h", 1, &rec).await;
        grants_reach(&rec, 5, Duration::from_secs(15)).await;
        findings.expect(state_written(&c, 2).await, || {
            "node 2 never persisted".into()
        });
        c.kill(2);
        let restart = c.restart(2, RestartMode::Intact).await.expect("restart");
        expect_quarantined(&mut findings, &c, 2, &restart.started);
        // With node 3 down every quorum needs node 2.
        c.kill(3);
        let since = now_us();
        let seen = watch_quarantine(&c, 2, quarantine() + Duration::from_secs(10)).await;
        let spawned_at = match restart.started {
            Started::Answering { spawned_at, .. } => spawned_at,
            _ => since,
        };
        match seen.first_voting_seen {
            Some(voting) => findings.expect(voting - spawned_at >= us(max_lease()), || {
                format!(
                    "node 2 voted {} ms after its spawn, before a max lease ({} ms) had passed",
                    (voting - spawned_at) / 1000,
                    max_lease().as_millis()
                )
            }),
            None => findings.expect(false, || {
                format!(
                    "node 2 still recovering {:?} after its restart",
                    quarantine() + Duration::from_secs(10)
                )
            }),
        }
        if let Some(recovering) = seen.last_recovering_asked {
            let early: Vec<_> = rec
                .grants_after(since)
                .into_iter()
                .filter(|g| g.invoke > since && g.ret < recovering)
                .collect();
            findings.expect(early.is_empty(), || {
                format!("locks granted while node 2, needed by every quorum, said it was recovering: {early:?}")
            });
        }
        let restart3 = c.restart(3, RestartMode::Intact).await.expect("restart");
        expect_quarantined(&mut findings, &c, 3, &restart3.started);
        let before = rec.grants();
        findings.expect(
            grants_reach(&rec, before + 5, Duration::from_secs(20)).await,
            || "no progress after the restart".into(),
        );
        holder.finish(false).await;
        work.stop().await;
        eprintln!("{}", rec.figures());
        findings.assert_clean(&rec.verdict(), &ALL_CHECKS);
    })
}

/// The start of the restart scenarios below: a cluster, `alice` holding
/// `door` (a library client, no extends) and the hold process `A` holding
/// `gate`, both with [`long_lease`].
async fn two_long_holders(name: &str, rec: &Arc<Recorder>) -> (Cluster, Holder, Findings) {
    let c = Cluster::start(name, rec.clone()).await;
    let mut findings = Findings::default();
    let alice = OneOff {
        name: "alice",
        key: "door",
        lease: long_lease(),
        wait: Duration::from_secs(3),
        keep: None,
    };
    let alice = lock_once(&c, 1, alice, rec).await;
    eprintln!("  alice: {alice:?}");
    findings.expect(alice.is_ok(), || format!("{alice:?}"));
    let mut a = Holder::spawn(
        "A",
        c.client_addr(1),
        c.secret_file(),
        "gate",
        long_lease(),
        Duration::from_secs(3),
        rec.clone(),
    );
    findings.expect(
        a.held_within(Duration::from_secs(10)).await.is_some(),
        || "A never held gate".into(),
    );
    (c, a, findings)
}

/// The end of the restart scenarios: `bob` locks `door` and the hold
/// process `B` takes `gate`, through the restarted node 2, each waiting as
/// long as a correct cluster may make them; then both holders let go.
async fn second_holders(c: &Cluster, mut a: Holder, rec: &Arc<Recorder>, findings: &mut Findings) {
    let wait = patient_wait();
    let mut b = Holder::spawn(
        "B",
        c.client_addr(2),
        c.secret_file(),
        "gate",
        long_lease(),
        wait,
        rec.clone(),
    );
    let bob = OneOff {
        name: "bob",
        key: "door",
        lease: long_lease(),
        wait,
        keep: Some(Duration::from_millis(300)),
    };
    let bob = lock_once(c, 2, bob, rec).await;
    eprintln!("  bob: {bob:?}");
    findings.expect(bob.is_ok(), || format!("{bob:?}"));
    let b_token = b.held_within(wait + Duration::from_secs(5)).await;
    findings.expect(b_token.is_some(), || "B never held gate".into());
    // Let B work a little (and A, if it still believes it holds).
    let until = Instant::now() + Duration::from_secs(5);
    while b.work_steps() < 10 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.finish(true).await;
    a.finish(false).await;
}

/// (b) Two of three masters killed and started again without a data dir,
/// while `alice` and the hold process `A` hold keys. A master that lost
/// its memory must not vote before every lease it could have granted has
/// expired: `bob` and the hold process `B` get the keys only after that.
///
/// Today's program starts such a node as a brand-new one, voting at once:
/// `bob` gets `door` while `alice` holds it, and `B` works on `gate` while
/// `A` does (mutual exclusion and work exclusion fire; fencing too, as the
/// new tokens start again from 1, but the checks below do not assert
/// fencing: without a data dir tokens stay monotonic only while a quorum of
/// masters keeps its memory, which two restarts of three take away).
#[test]
fn restart_without_a_data_dir_keeps_mutual_exclusion() {
    run(async {
        let rec = Arc::new(Recorder::default());
        let (mut c, a, mut findings) = two_long_holders("no-data-dir", &rec).await;
        for id in [2, 3] {
            c.kill(id);
        }
        for id in [2, 3] {
            let r = c
                .restart(id, RestartMode::NoDataDir)
                .await
                .expect("restart");
            expect_quarantined(&mut findings, &c, id, &r.started);
        }
        second_holders(&c, a, &rec, &mut findings).await;
        let verdict = rec.verdict();
        eprintln!("  fencing (reported, not asserted): {:?}", verdict.fencing);
        findings.assert_clean(
            &verdict,
            &[Check::Mutex, Check::WorkExclusion, Check::WorkInTenure],
        );
    })
}

/// (c) and (d): two masters killed, their state files overwritten with
/// garbage (or emptied), started again: each must refuse to start, exit
/// non-zero and name the file. Put back (an operator restoring the files),
/// they start quarantined, and the second holders get the keys only then.
async fn unreadable_state_is_a_start_error(mode: RestartMode) {
    let rec = Arc::new(Recorder::default());
    let (mut c, a, mut findings) = two_long_holders(&format!("{mode:?}"), &rec).await;
    for id in [2, 3] {
        findings.expect(state_written(&c, id).await, || {
            format!("node {id} never persisted")
        });
        c.kill(id);
    }
    for id in [2, 3] {
        let r = c.restart(id, mode).await.expect("restart");
        match &r.started {
            Started::Exited { status, stderr } => {
                findings.expect(!status.success(), || {
                    format!("node {id} on {mode:?} state exited with success")
                });
                findings.expect(r.files.iter().any(|f| stderr.contains(f.as_str())), || {
                    format!(
                        "node {id}'s error does not name any of {:?}: {stderr}",
                        r.files
                    )
                });
                c.repair(id);
                let again = c.restart(id, RestartMode::Intact).await.expect("restart");
                expect_quarantined(&mut findings, &c, id, &again.started);
            }
            other => findings.expect(false, || {
                format!(
                    "node {id} started on {mode:?} state files {:?}: {other:?}",
                    r.files
                )
            }),
        }
    }
    second_holders(&c, a, &rec, &mut findings).await;
    findings.assert_clean(&rec.verdict(), &ALL_CHECKS);
}

/// (c) Garbage in the state files.
#[test]
fn garbage_in_the_state_files_is_a_start_error() {
    run(unreadable_state_is_a_start_error(RestartMode::Garbage))
}

/// (d) The state files emptied.
#[test]
fn empty_state_files_are_a_start_error() {
    run(unreadable_state_is_a_start_error(RestartMode::Empty))
}

/// (e) Writes that fail. A data dir replaced by a regular file stops the
/// start. A data dir where writes fail stops the node at its first
/// persist at the latest: with node 2 down every quorum needs node 3's
/// vote, which needs a persist, so no lock may succeed, and node 3 must
/// exit non-zero.
///
/// With today's 60 s max lease a restart with intact state would sit in
/// quarantine for a minute before its first persist; the scenario then
/// removes the state first, so that the node votes (and persists) at once.
#[test]
fn failing_writes_stop_the_node() {
    run(async {
        let rec = Arc::new(Recorder::default());
        let mut c = Cluster::start("writes-fail", rec.clone()).await;
        let mut findings = Findings::default();
        findings.expect(state_written(&c, 2).await, || {
            "node 2 never persisted".into()
        });
        c.kill(2);
        let r = c
            .restart(2, RestartMode::DataDirIsFile)
            .await
            .expect("restart");
        match &r.started {
            Started::Exited { status, .. } => findings.expect(!status.success(), || {
                "node 2 on a data dir that is a file exited with success".into()
            }),
            other => findings.expect(false, || {
                format!("node 2 started on a data dir that is a regular file: {other:?}")
            }),
        }
        c.kill(2);
        c.repair(2);

        findings.expect(state_written(&c, 3).await, || {
            "node 3 never persisted".into()
        });
        c.kill(3);
        let started = match c.restart(3, RestartMode::WritesFail).await {
            Ok(r) => r.started,
            Err(why) => {
                eprintln!("  skipping the unwritable data dir: {why}");
                return;
            }
        };
        let bound = quarantine() + Duration::from_secs(10);
        let since = now_us();
        let until = Instant::now() + bound;
        if let Started::Answering { .. } = started {
            // Locks through both live nodes until node 3 exits (or one
            // succeeds, which settles it).
            let mut n = 0;
            while c.is_up(3) && Instant::now() < until && rec.grants_after(since).is_empty() {
                n += 1;
                let node = if n % 2 == 0 { 1 } else { 3 };
                let (name, key) = (format!("prober{n}"), format!("k{n}"));
                let probe = OneOff {
                    name: &name,
                    key: &key,
                    lease: Duration::from_millis(500),
                    wait: Duration::from_millis(300),
                    keep: Some(Duration::ZERO),
                };
                let _ = lock_once(&c, node, probe, &rec).await;
            }
        }
        // A node that answered a lock has shown what it does: no need to
        // wait out the bound for its exit.
        let left = if rec.grants_after(since).is_empty() {
            until.saturating_duration_since(Instant::now())
        } else {
            Duration::from_secs(1)
        };
        let status = c.exit_within(3, left).await;
        findings.expect(status.is_some_and(|s| !s.success()), || {
            format!(
                "node 3 with failing writes is still running {} ms after its start ({status:?})\n{}",
                (now_us() - since) / 1000,
                c.log_tail(3)
            )
        });
        let granted = rec.grants_after(since);
        findings.expect(granted.is_empty(), || {
            format!(
                "{} lock(s) succeeded although every quorum needed node 3, whose writes fail: {:?}",
                granted.len(),
                granted.iter().map(|g| g.token).collect::<Vec<_>>()
            )
        });
        findings.assert_clean(&rec.verdict(), &ALL_CHECKS);
    })
}

/// SIGSTOP of masters and of the guard-holding process `A`: paused past
/// its lease, `A` loses `gate` to `B` and, resumed, must notice (exit 1)
/// and do no work once `B` holds it; the workload meanwhile locks, extends
/// and releases through every node.
#[test]
fn paused_masters_and_a_paused_holder_keep_exclusion() {
    run(async {
        let rec = Arc::new(Recorder::default());
        let (mut c, work, mut a, mut findings) =
            busy_cluster("pauses", &["a", "b", "c"], "A", 1, &rec).await;
        let lease = holder_lease();
        c.pause(3);
        grants_reach(&rec, rec.grants() + 3, Duration::from_secs(5)).await;
        c.resume(3);
        a.pause();
        let wait = lease * 3 + Duration::from_secs(5);
        let mut b = Holder::spawn(
            "B",
            c.client_addr(2),
            c.secret_file(),
            "gate",
            lease,
            wait,
            rec.clone(),
        );
        findings.expect(
            b.held_within(wait + Duration::from_secs(5)).await.is_some(),
            || "B never held gate while A was stopped".into(),
        );
        a.resume();
        let code = a.exit_within(lease + Duration::from_secs(5)).await;
        findings.expect(code == Some(1), || {
            format!(
                "A, resumed after losing its lease, did not exit 1 (exit {code:?}, states {:?})",
                a.states()
            )
        });
        c.pause(2);
        grants_reach(&rec, rec.grants() + 3, Duration::from_secs(5)).await;
        c.resume(2);
        let until = Instant::now() + Duration::from_secs(5);
        while b.work_steps() < 10 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        b.finish(false).await;
        a.finish(false).await;
        work.stop().await;
        eprintln!("{}", rec.figures());
        findings.assert_clean(&rec.verdict(), &ALL_CHECKS);
    })
}

/// The proxy's faults, one after another, while the workload and a hold
/// process run: peer links delayed, a peer link dropped one way, client
/// connections cut and refused, a node's replies dropped, a node's clients
/// delayed.
#[test]
fn network_faults_keep_exclusion_and_fencing() {
    run(async {
        let rec = Arc::new(Recorder::default());
        let (c, work, mut a, mut findings) =
            busy_cluster("network", &["a", "b", "c"], "A", 2, &rec).await;
        let step = Duration::from_millis(700);
        let faults: Vec<(&str, Vec<(&harness::proxy::Proxy, Mode)>)> = vec![
            (
                "links 1<->2 delayed 50 ms",
                vec![
                    (c.link(1, 2), Mode::Delay(Duration::from_millis(50))),
                    (c.link(2, 1), Mode::Delay(Duration::from_millis(50))),
                ],
            ),
            (
                "link 1->3 dropped one way",
                vec![(c.link(1, 3), Mode::Drop(Direction::ToNode))],
            ),
            (
                "clients of node 1 refused",
                vec![(c.front(1), Mode::Refuse)],
            ),
            (
                "replies of node 2 to its clients dropped",
                vec![(c.front(2), Mode::Drop(Direction::FromNode))],
            ),
            (
                "clients of node 3 delayed 100 ms",
                vec![(c.front(3), Mode::Delay(Duration::from_millis(100)))],
            ),
        ];
        for (what, changes) in faults {
            rec.fault(what);
            for (proxy, mode) in &changes {
                proxy.set(*mode);
            }
            tokio::time::sleep(step).await;
            for (proxy, _) in &changes {
                proxy.set(Mode::Pass);
            }
            rec.fault("every connection cut");
            for (_, proxy) in c.proxies() {
                proxy.cut();
            }
            tokio::time::sleep(step).await;
        }
        let before = rec.grants();
        findings.expect(
            grants_reach(&rec, before + 5, Duration::from_secs(20)).await,
            || "no progress after the network faults".into(),
        );
        a.finish(false).await;
        work.stop().await;
        eprintln!("{}", rec.figures());
        findings.assert_clean(&rec.verdict(), &ALL_CHECKS);
    })
}

/// Every check fires on a history that breaks it, recorded through the
/// same recorder the scenarios use: the checkers are not vacuous on
/// real-process histories.
#[test]
fn every_check_fires_on_a_broken_history() {
    let rec = Recorder::default();
    let alice = rec.holder(HolderKind::Library, "alice");
    let bob = rec.holder(HolderKind::Library, "bob");
    let a = rec.holder(HolderKind::Hold, "A");
    let b = rec.holder(HolderKind::Hold, "B");
    // bob gets door with a smaller token while alice still holds it.
    rec.grant("door", 4, 100, 200);
    rec.window("door", alice, 4, 200, 5_000);
    rec.grant("door", 1, 1_000, 1_100);
    rec.window("door", bob, 1, 1_100, 3_000);
    // A and B work on gate at the same time; A once after its tenure.
    rec.grant("gate", 5, 100, 250);
    rec.window("gate", a, 5, 250, 4_500);
    rec.grant("gate", 6, 1_000, 1_150);
    rec.window("gate", b, 6, 1_150, 2_500);
    for (holder, token, at, deadline) in [
        (a, 5, 300, 4_500),
        (a, 5, 4_000, 4_500),
        (a, 5, 4_600, 4_500),
        (b, 6, 1_200, 2_500),
        (b, 6, 2_000, 2_500),
    ] {
        rec.work(WorkStep {
            key: "gate".into(),
            holder,
            token,
            at,
            deadline,
        });
    }
    let verdict = rec.verdict();
    for check in ALL_CHECKS {
        assert!(
            !verdict.of(check).is_empty(),
            "{check:?} did not fire: {verdict:?}"
        );
    }
    assert!(
        verdict
            .mutex
            .iter()
            .any(|v| v.contains("bob") && v.contains("alice")),
        "{verdict:?}"
    );
}

/// Work before a gap (a pause past the deadline) and after it (an extend
/// that bridged it) are two spans, and the tenure two windows: a tenure of
/// another client in the gap is no overlap, and the two windows are one
/// tenure to the fencing checker.
#[test]
fn work_on_both_sides_of_a_gap_is_two_spans() {
    let rec = Recorder::default();
    let a = rec.holder(HolderKind::Hold, "A");
    let c = rec.holder(HolderKind::Library, "C");
    rec.window("gate", a, 5, 100, 300);
    rec.window("gate", c, 6, 400, 800);
    rec.window("gate", a, 5, 1_000, 1_500);
    for (at, deadline) in [(100, 300), (200, 300), (1_000, 1_500), (1_100, 1_500)] {
        rec.work(WorkStep {
            key: "gate".into(),
            holder: a,
            token: 5,
            at,
            deadline,
        });
    }
    let verdict = rec.verdict();
    assert!(verdict.work_exclusion.is_empty(), "{verdict:?}");
    assert!(verdict.mutex.is_empty(), "{verdict:?}");
    assert!(verdict.work_in_tenure.is_empty(), "{verdict:?}");
    // Both windows are one tenure, granted before C's.
    assert!(verdict.fencing.is_empty(), "{verdict:?}");
}

/// The long form: random faults for `LOCKER_FAULT_SECS` seconds (see the
/// file's docs), progress on stderr every five seconds, the figures at the
/// end. Every checker must pass, and every restart must behave as expected.
#[test]
#[ignore = "the long form: LOCKER_FAULT_SECS=600 cargo test --release -p locker-tokio --test faults -- --ignored --nocapture"]
fn long_random_faults() {
    run(async {
        let settings = Settings::from_env();
        eprintln!(
            "long form: {:?} of faults, restart modes {:?}, LOCKER_FAULT_SEED={}",
            settings.duration, settings.modes, settings.seed
        );
        let rec = Arc::new(Recorder::default());
        let mut c = Cluster::start("long", rec.clone()).await;
        let mut mix = Mix::on(&["a", "b", "c", "d", "e", "f"], max_lease());
        mix.library_clients = 4;
        let work = Workload::start(
            &mix,
            c.client_addrs(),
            c.secret(),
            c.secret_file(),
            rec.clone(),
        );
        let mut chaos = Chaos::new(&settings, rec.clone());
        let mut progress = Progress::every(Duration::from_secs(5));
        let until = Instant::now() + settings.duration;
        while Instant::now() < until {
            chaos.tend_holders(&c).await;
            chaos.one_fault(&mut c).await;
            let quiet = chaos.quiet();
            tokio::time::sleep(quiet).await;
            if let Some(t) = progress.due() {
                eprintln!(
                    "[{:>5.0} s] grants {}, faults {}, unexpected {}, checkers: {}",
                    t.as_secs_f64(),
                    rec.grants(),
                    rec.counter("faults injected"),
                    chaos.findings.len(),
                    rec.verdict().summary()
                );
            }
        }
        chaos.finish().await;
        work.stop().await;
        for (_, proxy) in c.proxies() {
            let (forwarded, discarded) = proxy.bytes();
            rec.add("proxied bytes forwarded", forwarded);
            rec.add("proxied bytes discarded", discarded);
        }
        eprintln!("figures:\n{}", rec.figures());
        let checks: &[Check] = if settings.modes.contains(&RestartMode::NoDataDir) {
            &[Check::Mutex, Check::WorkExclusion, Check::WorkInTenure]
        } else {
            &ALL_CHECKS
        };
        Findings(chaos.findings.clone()).assert_clean(&rec.verdict(), checks);
    })
}
