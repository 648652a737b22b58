//! A cluster of `locker serve` processes (three masters, one secret file,
//! data dirs in a scratch directory), every connection to a node through a
//! proxy of the suite's own, and the faults done to the processes: kill -9,
//! restart in every mode, SIGSTOP and SIGCONT.
//!
//! Node `i` reaches peer `j` through the proxy `link(i, j)`; clients reach
//! node `i` through `front(i)`. A restarted node listens on a new port (the
//! old one may have been taken meanwhile) and the proxies follow it.

use locker_core::envelope::Status;
use locker_tokio::Client;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::{self, Saved, Unwritable};
use super::history::{now_us, Recorder};
use super::procs::{Proc, Signal};
use super::proxy::Proxy;
use crate::support::free_addr;

/// The cluster's max lease (`serve --max-lease-ms`): short, so that the
/// scenarios can wait out a restarted master's quarantine.
pub fn max_lease() -> Duration {
    Duration::from_millis(2000)
}

/// How long a restarted master refuses to vote: the max lease plus the
/// promise and rpc timeouts (500 + 250 ms by default), scaled for the
/// default drift bound.
pub fn quarantine() -> Duration {
    (max_lease() + Duration::from_millis(750)).mul_f64(1.002 / 0.998)
}

/// Masters in every cluster of the suite.
pub const MASTERS: u64 = 3;

/// How long a start may take before a node answers (or exits): a loaded
/// two-core machine starts a process in well under a second.
const START_BOUND: Duration = Duration::from_secs(15);

/// How a master is started again after kill -9.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartMode {
    /// (a) Its data dir as it was.
    Intact,
    /// (b) Without a data dir.
    NoDataDir,
    /// (c) Every state file overwritten with garbage.
    Garbage,
    /// (d) Every state file emptied (0 bytes).
    Empty,
    /// (e) A data dir where writes fail (reads still work).
    WritesFail,
    /// (e') The data dir replaced by a regular file of the same name.
    DataDirIsFile,
}

/// How a start ended up.
#[derive(Debug)]
pub enum Started {
    /// The node answers `status`.
    Answering {
        /// What `status` said the first time.
        recovering: bool,
        /// Wall-clock µs of the spawn.
        spawned_at: u64,
    },
    /// The process exited before it answered.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// What it wrote on stderr.
        stderr: String,
    },
    /// Neither, within the bound.
    Silent,
}

/// A restart, as done.
#[derive(Debug)]
pub struct Restart {
    /// The paths of the state files the mode changed (garbage, emptied), as
    /// an error message naming them would spell them.
    pub files: Vec<String>,
    /// How the start went.
    pub started: Started,
}

/// A scratch directory, removed when dropped, unless a test is failing
/// (then its logs stay for a look, and its path is printed).
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory under the system's temp dir.
    pub fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "locker-faults-{}-{name}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).expect("scratch dir");
        Scratch(path)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("logs kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// One master.
struct Node {
    id: u64,
    /// The port of its current start.
    listen: SocketAddr,
    data_dir: PathBuf,
    proc: Option<Proc>,
    starts: u32,
    /// The stderr file of its current start.
    log: PathBuf,
    /// Undoes a writes-fail fault when dropped.
    unwritable: Option<Unwritable>,
    /// State files set aside by a fault, to put back at repair.
    aside: Option<(RestartMode, Saved)>,
}

/// Three `locker serve` masters behind proxies. Dropping it kills them.
pub struct Cluster {
    // Dropped in this order: processes, then proxies, then the directory.
    nodes: Vec<Node>,
    links: BTreeMap<(u64, u64), Proxy>,
    fronts: BTreeMap<u64, Proxy>,
    secret: Vec<u8>,
    secret_file: PathBuf,
    recorder: Arc<Recorder>,
    scratch: Scratch,
}

/// The `locker` program under test.
pub fn locker_program() -> &'static str {
    env!("CARGO_BIN_EXE_locker")
}

/// The arguments of one `locker serve` start: the one place that knows
/// serve's command line, so that a change of its flags is a change here.
fn serve_args(
    id: u64,
    listen: SocketAddr,
    masters: &str,
    secret_file: &Path,
    data_dir: Option<&Path>,
    bootstrap: bool,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "--secret-file".into(),
        secret_file.into(),
        "serve".into(),
        "--id".into(),
        id.to_string().into(),
        "--listen".into(),
        listen.to_string().into(),
        "--masters".into(),
        masters.into(),
    ];
    match data_dir {
        Some(dir) => {
            args.push("--data-dir".into());
            args.push(dir.into());
        }
        None => args.push("--no-data-dir".into()),
    }
    if bootstrap {
        args.push("--bootstrap".into());
    }
    args.push("--max-lease-ms".into());
    args.push(max_lease().as_millis().to_string().into());
    args
}

impl Cluster {
    /// Starts three masters (a brand-new cluster) and waits until every
    /// one answers, links to both peers and takes a lock.
    pub async fn start(name: &str, recorder: Arc<Recorder>) -> Cluster {
        let scratch = Scratch::new(name);
        let secret = format!("faults {name} {:016x}", rand::random::<u64>());
        let secret_file = scratch.path().join("secret");
        std::fs::write(&secret_file, format!("{secret}\n")).expect("secret file");
        let ids: Vec<u64> = (1..=MASTERS).collect();
        let placeholder = free_addr();
        let mut links = BTreeMap::new();
        let mut fronts = BTreeMap::new();
        for &i in &ids {
            fronts.insert(i, Proxy::start(placeholder).expect("proxy"));
            for &j in &ids {
                if i != j {
                    links.insert((i, j), Proxy::start(placeholder).expect("proxy"));
                }
            }
        }
        let nodes = ids
            .iter()
            .map(|&id| Node {
                id,
                listen: placeholder,
                data_dir: scratch.path().join(format!("data-{id}")),
                proc: None,
                starts: 0,
                log: PathBuf::new(),
                unwritable: None,
                aside: None,
            })
            .collect();
        let mut cluster = Cluster {
            nodes,
            links,
            fronts,
            secret: secret.into_bytes(),
            secret_file,
            recorder,
            scratch,
        };
        for id in ids {
            match cluster.spawn(id, true, true).await {
                Started::Answering { .. } => {}
                other => panic!(
                    "node {id} did not start: {other:?}\n{}",
                    cluster.log_tail(id)
                ),
            }
        }
        cluster.wait_ready().await;
        cluster
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        &mut self.nodes[(id - 1) as usize]
    }

    /// The ids of the masters.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The cluster secret.
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// The file holding it.
    pub fn secret_file(&self) -> &Path {
        &self.secret_file
    }

    /// Where clients reach node `id` (its front proxy).
    pub fn client_addr(&self, id: u64) -> SocketAddr {
        self.fronts[&id].addr()
    }

    /// Every node's client address.
    pub fn client_addrs(&self) -> Vec<SocketAddr> {
        self.ids()
            .into_iter()
            .map(|i| self.client_addr(i))
            .collect()
    }

    /// The proxy in front of node `id`, for clients.
    pub fn front(&self, id: u64) -> &Proxy {
        &self.fronts[&id]
    }

    /// The proxy node `from` reaches node `to` through.
    pub fn link(&self, from: u64, to: u64) -> &Proxy {
        &self.links[&(from, to)]
    }

    /// Every proxy, with a name for the log.
    pub fn proxies(&self) -> Vec<(String, &Proxy)> {
        let mut out: Vec<(String, &Proxy)> = self
            .fronts
            .iter()
            .map(|(i, p)| (format!("clients->{i}"), p))
            .collect();
        out.extend(
            self.links
                .iter()
                .map(|((i, j), p)| (format!("link {i}->{j}"), p)),
        );
        out
    }

    /// The node's data dir.
    pub fn data_dir(&self, id: u64) -> &Path {
        &self.node(id).data_dir
    }

    /// Whether node `id`'s process is running (or stopped), not exited.
    pub fn is_up(&mut self, id: u64) -> bool {
        match self.node_mut(id).proc.as_mut() {
            Some(p) => p.exited().is_none(),
            None => false,
        }
    }

    /// The exit status of node `id`'s process, if it exited.
    pub fn exited(&mut self, id: u64) -> Option<ExitStatus> {
        self.node_mut(id).proc.as_mut().and_then(|p| p.exited())
    }

    /// Waits up to `bound` for node `id` to exit.
    pub async fn exit_within(&mut self, id: u64, bound: Duration) -> Option<ExitStatus> {
        match self.node_mut(id).proc.as_mut() {
            Some(p) => p.exit_within(bound).await,
            None => None,
        }
    }

    /// kill -9 of node `id` (nothing if it has exited already).
    pub fn kill(&mut self, id: u64) {
        if self.is_up(id) {
            self.recorder.fault(format!("kill -9 node {id}"));
        }
        if let Some(p) = self.node_mut(id).proc.as_mut() {
            p.kill();
        }
    }

    /// SIGSTOP of node `id`.
    pub fn pause(&mut self, id: u64) {
        self.recorder.fault(format!("SIGSTOP node {id}"));
        self.signal(id, Signal::Stop);
    }

    /// SIGCONT of node `id`.
    pub fn resume(&mut self, id: u64) {
        self.recorder.fault(format!("SIGCONT node {id}"));
        self.signal(id, Signal::Cont);
    }

    fn signal(&mut self, id: u64, signal: Signal) {
        if let Some(p) = self.node_mut(id).proc.as_mut() {
            if let Err(e) = p.signal(signal) {
                eprintln!("  {e}");
            }
        }
    }

    /// Starts node `id` again after [`Cluster::kill`], its data dir first
    /// changed as `mode` says, and waits until it answers or exits.
    /// `Err` when this machine cannot do the mode (writes that fail).
    pub async fn restart(&mut self, id: u64, mode: RestartMode) -> Result<Restart, String> {
        assert!(!self.is_up(id), "restart of node {id}, which is running");
        let dir = self.node(id).data_dir.clone();
        let mut files = Vec::new();
        match mode {
            RestartMode::Intact | RestartMode::NoDataDir => {}
            RestartMode::Garbage | RestartMode::Empty => {
                let saved = Saved::of(&dir).map_err(|e| format!("saving state: {e}"))?;
                let changed = if mode == RestartMode::Garbage {
                    disk::fill_with_garbage(&dir)
                } else {
                    disk::empty_files(&dir)
                }
                .map_err(|e| format!("changing state files: {e}"))?;
                files = changed.iter().map(|f| f.display().to_string()).collect();
                self.node_mut(id).aside = Some((mode, saved));
            }
            RestartMode::WritesFail => {
                let unwritable = Unwritable::make(&dir)?;
                eprintln!("  data dir of node {id} unwritable by {}", unwritable.how());
                self.node_mut(id).unwritable = Some(unwritable);
            }
            RestartMode::DataDirIsFile => {
                let saved =
                    disk::replace_by_file(&dir).map_err(|e| format!("replacing dir: {e}"))?;
                self.node_mut(id).aside = Some((mode, saved));
            }
        }
        let names: Vec<_> = files
            .iter()
            .filter_map(|f| Path::new(f).file_name())
            .collect();
        self.recorder
            .fault(format!("restart node {id} ({mode:?}) {names:?}"));
        let started = self.spawn(id, mode != RestartMode::NoDataDir, false).await;
        Ok(Restart { files, started })
    }

    /// Undoes what a restart mode did to node `id`'s data dir: the state
    /// files put back, writes allowed again.
    pub fn repair(&mut self, id: u64) {
        let node = self.node_mut(id);
        node.unwritable = None;
        if let Some((mode, saved)) = node.aside.take() {
            let dir = node.data_dir.clone();
            let done = if mode == RestartMode::DataDirIsFile {
                disk::put_back_dir(&dir, &saved)
            } else {
                saved.restore()
            };
            done.expect("putting the state files back");
        }
    }

    /// Spawns node `id` on a fresh port and waits until it answers or exits.
    async fn spawn(&mut self, id: u64, with_data_dir: bool, bootstrap: bool) -> Started {
        for _attempt in 0..5 {
            let listen = free_addr();
            for (&(_, to), proxy) in &self.links {
                if to == id {
                    proxy.retarget(listen);
                }
            }
            self.fronts[&id].retarget(listen);
            let masters = self
                .ids()
                .into_iter()
                .map(|j| {
                    let addr = if j == id {
                        listen
                    } else {
                        self.link(id, j).addr()
                    };
                    format!("{j}={addr}")
                })
                .collect::<Vec<_>>()
                .join(",");
            let node = self.node(id);
            let data_dir = with_data_dir.then_some(node.data_dir.as_path());
            let args = serve_args(id, listen, &masters, &self.secret_file, data_dir, bootstrap);
            let log = self
                .scratch
                .path()
                .join(format!("node-{id}-start-{}.log", node.starts + 1));
            let stderr = std::fs::File::create(&log).expect("log file");
            let mut command = Command::new(locker_program());
            command
                .args(&args)
                // Plain text logs, read by the scenarios.
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr);
            let spawned_at = now_us();
            let proc = Proc::spawn(format!("node {id}"), command).expect("spawn locker serve");
            let node = self.node_mut(id);
            node.starts += 1;
            node.listen = listen;
            node.log = log;
            node.proc = Some(proc);
            let started = self.answer_or_exit(id, spawned_at).await;
            if let Started::Exited { stderr, .. } = &started {
                if stderr.contains("cannot listen") {
                    // Someone took the port between our probe and the bind.
                    continue;
                }
            }
            return started;
        }
        panic!("node {id}: no free port after 5 attempts");
    }

    async fn answer_or_exit(&mut self, id: u64, spawned_at: u64) -> Started {
        let until = Instant::now() + START_BOUND;
        loop {
            if let Some(status) = self.exited(id) {
                return Started::Exited {
                    status,
                    stderr: self.log(id),
                };
            }
            if let Some(s) = self.status(id).await {
                return Started::Answering {
                    recovering: s.summary.recovering,
                    spawned_at,
                };
            }
            if Instant::now() >= until {
                return Started::Silent;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Node `id`'s status, straight from its port (not through a proxy, so
    /// that a network fault does not hide it); `None` if it does not answer
    /// within a second.
    pub async fn status(&self, id: u64) -> Option<Status> {
        let addr = self.node(id).listen;
        let ask = async {
            let client = Client::connect(addr, Some(&self.secret)).await.ok()?;
            client.status().await.ok()
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
    }

    /// Waits until every running node answers with both links up and
    /// not recovering, and a lock through each front succeeds.
    pub async fn wait_ready(&mut self) {
        let until = Instant::now() + Duration::from_secs(30);
        for id in self.ids() {
            loop {
                let s = self.status(id).await;
                let ready = s
                    .as_ref()
                    .is_some_and(|s| !s.summary.recovering && s.links.iter().all(|(_, up)| *up));
                if ready && self.probe_lock(id).await {
                    break;
                }
                assert!(
                    Instant::now() < until,
                    "node {id} never became ready: {s:?}\n{}",
                    self.log_tail(id)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Whether a lock (and its release) of a probe key of its own goes
    /// through node `id`'s front.
    async fn probe_lock(&self, id: u64) -> bool {
        let addr = self.client_addr(id);
        let probe = async {
            let client = Client::connect(addr, Some(&self.secret)).await.ok()?;
            client.lag().await.ok()
        };
        tokio::time::timeout(Duration::from_secs(5), probe)
            .await
            .ok()
            .flatten()
            .is_some()
    }

    /// What node `id` wrote on stderr in its current start.
    pub fn log(&self, id: u64) -> String {
        std::fs::read_to_string(&self.node(id).log).unwrap_or_default()
    }

    /// The last lines of it, for a failure message.
    pub fn log_tail(&self, id: u64) -> String {
        let log = self.log(id);
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        format!("--- node {id} stderr (last lines) ---\n{tail}")
    }
}
