//! The long form's faults: one at a time, drawn at random (from a seed
//! that is printed, so the sequence can be drawn again), while the
//! workload and the hold processes run. A fault is a kill -9 and restart
//! in one of the chosen modes, a SIGSTOP of a master or of a hold process,
//! or a proxy cutting, refusing, delaying or dropping one direction.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cluster::{max_lease, quarantine, Cluster, RestartMode, Started};
use super::disk;
use super::history::Recorder;
use super::proxy::{Direction, Mode};
use super::workload::Holder;

/// What the long form runs, from the environment.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `LOCKER_FAULT_SECS` (default 60).
    pub duration: Duration,
    /// `LOCKER_FAULT_MODES` (default: every mode but `no-data-dir`).
    pub modes: Vec<RestartMode>,
    /// `LOCKER_FAULT_SEED` (default: random).
    pub seed: u64,
}

fn parse_mode(name: &str) -> Option<RestartMode> {
    Some(match name.trim() {
        "intact" => RestartMode::Intact,
        "no-data-dir" => RestartMode::NoDataDir,
        "garbage" => RestartMode::Garbage,
        "empty" => RestartMode::Empty,
        "writes-fail" => RestartMode::WritesFail,
        "file" => RestartMode::DataDirIsFile,
        _ => return None,
    })
}

impl Settings {
    /// Reads the settings; panics on a value it cannot parse, naming it.
    pub fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let duration = var("LOCKER_FAULT_SECS").map_or(Duration::from_secs(60), |v| {
            Duration::from_secs_f64(v.parse().expect("LOCKER_FAULT_SECS: seconds"))
        });
        let modes = var("LOCKER_FAULT_MODES")
            .unwrap_or_else(|| "intact,garbage,empty,writes-fail,file".to_string());
        let modes = modes
            .split(',')
            .map(|m| {
                parse_mode(m).unwrap_or_else(|| panic!("LOCKER_FAULT_MODES: unknown mode {m:?}"))
            })
            .collect();
        let seed = var("LOCKER_FAULT_SEED").map_or_else(rand::random, |v| {
            v.parse().expect("LOCKER_FAULT_SEED: a number")
        });
        Settings {
            duration,
            modes,
            seed,
        }
    }
}

/// The hold processes' keys: one holder at a time on each.
const HOLD_KEYS: [&str; 2] = ["gate-0", "gate-1"];

/// The random faults of one run.
pub struct Chaos {
    rng: StdRng,
    modes: Vec<RestartMode>,
    recorder: Arc<Recorder>,
    holders: Vec<Option<Holder>>,
    spawned: usize,
    /// Expected behaviour that did not come, as in the short scenarios.
    pub findings: Vec<String>,
}

impl Chaos {
    /// Faults drawn from `settings.seed`.
    pub fn new(settings: &Settings, recorder: Arc<Recorder>) -> Chaos {
        Chaos {
            rng: StdRng::seed_from_u64(settings.seed),
            modes: settings.modes.clone(),
            recorder,
            holders: HOLD_KEYS.iter().map(|_| None).collect(),
            spawned: 0,
            findings: Vec::new(),
        }
    }

    fn find(&mut self, what: String) {
        eprintln!("  unexpected: {what}");
        self.findings.push(what);
    }

    fn between(&mut self, from_ms: u64, to_ms: u64) -> Duration {
        Duration::from_millis(self.rng.gen_range(from_ms..=to_ms))
    }

    /// Keeps a hold process on every hold key: one that ended (its lease
    /// lost) is recorded and replaced, and now and then one is asked to let
    /// go (SIGTERM, or the end of its stdin) and replaced.
    pub async fn tend_holders(&mut self, cluster: &Cluster) {
        for (slot, key) in HOLD_KEYS.iter().enumerate() {
            let retire = self.rng.gen_bool(0.1);
            let by_stdin = self.rng.gen_bool(0.5);
            if let Some(h) = self.holders[slot].as_mut() {
                if h.exit_within(Duration::ZERO).await.is_some() || retire {
                    h.finish(by_stdin).await;
                    self.holders[slot] = None;
                }
            }
            if self.holders[slot].is_none() {
                self.spawned += 1;
                let node = self.rng.gen_range(1..=cluster.ids().len() as u64);
                let lease = Duration::from_millis(1500).min(max_lease());
                self.holders[slot] = Some(Holder::spawn(
                    &format!("H{}", self.spawned),
                    cluster.client_addr(node),
                    cluster.secret_file(),
                    key,
                    lease,
                    Duration::from_secs(3),
                    self.recorder.clone(),
                ));
            }
        }
    }

    /// Injects one fault and undoes it (a restart waits for the node's
    /// start to show how it went).
    pub async fn one_fault(&mut self, cluster: &mut Cluster) {
        match self.rng.gen_range(0..9) {
            0 | 1 => self.restart(cluster).await,
            2 | 3 => self.pause_master(cluster).await,
            4 | 5 => self.pause_holder().await,
            _ => self.network(cluster).await,
        }
    }

    async fn pause_master(&mut self, cluster: &mut Cluster) {
        let id = self.rng.gen_range(1..=cluster.ids().len() as u64);
        if !cluster.is_up(id) {
            return;
        }
        let pause = self.between(200, 3000);
        cluster.pause(id);
        tokio::time::sleep(pause).await;
        cluster.resume(id);
    }

    async fn pause_holder(&mut self) {
        let slot = self.rng.gen_range(0..self.holders.len());
        let pause = self.between(300, 4000);
        let Some(h) = self.holders[slot].as_mut() else {
            return;
        };
        h.pause();
        tokio::time::sleep(pause).await;
        h.resume();
    }

    async fn network(&mut self, cluster: &mut Cluster) {
        let proxies = cluster.proxies();
        let (name, proxy) = &proxies[self.rng.gen_range(0..proxies.len())];
        let mode = match self.rng.gen_range(0..4) {
            0 => {
                self.recorder.fault(format!("{name}: connections cut"));
                proxy.cut();
                return;
            }
            1 => Mode::Refuse,
            2 => Mode::Delay(Duration::from_millis(self.rng.gen_range(5..=200))),
            _ => Mode::Drop(if self.rng.gen_bool(0.5) {
                Direction::ToNode
            } else {
                Direction::FromNode
            }),
        };
        let lasts = self.between(300, 3000);
        self.recorder
            .fault(format!("{name}: {mode:?} for {} ms", lasts.as_millis()));
        proxy.set(mode);
        tokio::time::sleep(lasts).await;
        proxy.set(Mode::Pass);
    }

    /// kill -9 of one master and a restart in a random mode, only when
    /// every master is up and voting (one disturbed master at a time, so
    /// the cluster keeps a quorum).
    async fn restart(&mut self, cluster: &mut Cluster) {
        for id in cluster.ids() {
            let voting = cluster
                .status(id)
                .await
                .is_some_and(|s| !s.summary.recovering);
            if !voting {
                return;
            }
        }
        let id = self.rng.gen_range(1..=cluster.ids().len() as u64);
        let mode = self.modes[self.rng.gen_range(0..self.modes.len())];
        if matches!(mode, RestartMode::Garbage | RestartMode::Empty)
            && disk::state_files(cluster.data_dir(id)).is_empty()
        {
            return;
        }
        cluster.kill(id);
        let restart = match cluster.restart(id, mode).await {
            Ok(r) => r,
            Err(why) => {
                eprintln!("  cannot restart in {mode:?} here: {why}");
                cluster.repair(id);
                self.restart_intact(cluster, id).await;
                return;
            }
        };
        match (mode, &restart.started) {
            (
                RestartMode::Intact | RestartMode::NoDataDir,
                Started::Answering { recovering, .. },
            ) => {
                if !recovering {
                    self.find(format!("node {id} restarted ({mode:?}) votes at once"));
                }
                if mode == RestartMode::NoDataDir {
                    // Its disk is gone: later starts find no state.
                    for f in disk::state_files(cluster.data_dir(id)) {
                        let _ = std::fs::remove_file(f);
                    }
                }
                return;
            }
            (RestartMode::Garbage | RestartMode::Empty, Started::Exited { status, stderr }) => {
                if status.success() || !restart.files.iter().any(|f| stderr.contains(f.as_str())) {
                    self.find(format!(
                        "node {id} on {mode:?} state exited ({status}) without naming {:?}",
                        restart.files
                    ));
                }
            }
            (RestartMode::DataDirIsFile, Started::Exited { status, .. }) => {
                if status.success() {
                    self.find(format!(
                        "node {id} on a file as data dir exited with success"
                    ));
                }
            }
            (RestartMode::WritesFail, Started::Answering { .. }) => {
                let bound = quarantine() + Duration::from_secs(10);
                match cluster.exit_within(id, bound).await {
                    Some(s) if !s.success() => {}
                    other => self.find(format!(
                        "node {id} with failing writes did not exit non-zero within {bound:?}: {other:?}"
                    )),
                }
            }
            (RestartMode::WritesFail, Started::Exited { status, .. }) => {
                if status.success() {
                    self.find(format!("node {id} with failing writes exited with success"));
                }
            }
            (_, other) => self.find(format!("node {id} restarted in {mode:?}: {other:?}")),
        }
        cluster.kill(id);
        cluster.repair(id);
        self.restart_intact(cluster, id).await;
    }

    async fn restart_intact(&mut self, cluster: &mut Cluster, id: u64) {
        match cluster.restart(id, RestartMode::Intact).await {
            Ok(r)
                if matches!(
                    r.started,
                    Started::Answering {
                        recovering: true,
                        ..
                    }
                ) => {}
            other => self.find(format!("node {id} restarted intact: {other:?}")),
        }
    }

    /// Stops every hold process, recording it.
    pub async fn finish(&mut self) {
        for slot in self.holders.iter_mut() {
            if let Some(mut h) = slot.take() {
                h.finish(false).await;
            }
        }
    }

    /// How long to leave the cluster alone before the next fault.
    pub fn quiet(&mut self) -> Duration {
        self.between(200, 1000)
    }
}

/// When the long form prints its next progress line.
pub struct Progress {
    started: Instant,
    next: Instant,
    every: Duration,
}

impl Progress {
    /// Progress every `every`.
    pub fn every(every: Duration) -> Progress {
        let now = Instant::now();
        Progress {
            started: now,
            next: now + every,
            every,
        }
    }

    /// Whether a progress line is due; the time since the start.
    pub fn due(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if now >= self.next {
            self.next = now + self.every;
            Some(now - self.started)
        } else {
            None
        }
    }
}
