//! The clients of a fault run: tasks in the test process using the
//! `locker_tokio::Client` library, `locker lock` / `locker release`
//! processes, and `locker hold` processes that hold a key with a lease
//! guard and report every state change and work step. All of them lock,
//! extend and release with tokens, and record what they believed into the
//! [`Recorder`].

use locker_core::{OpError, Token};
use locker_tokio::{Client, Error};
use rand::Rng;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cluster::locker_program;
use super::history::{now_us, us, HolderKind, Recorder, WorkStep};
use super::procs::{Proc, Signal};

/// The bound on one library call beyond its own wait: a call that has not
/// ended by then is abandoned (and counted), never waited for forever.
const CALL_SLACK: Duration = Duration::from_secs(4);

/// What the library clients and CLI clients do.
#[derive(Clone, Debug)]
pub struct Mix {
    /// The keys they contend on.
    pub keys: Vec<String>,
    /// Leases asked for, from..to.
    pub lease: (Duration, Duration),
    /// How long a lock waits for a held key.
    pub wait: Duration,
    /// Library client tasks.
    pub library_clients: usize,
    /// CLI client threads (each runs one `locker` process at a time).
    pub cli_clients: usize,
}

impl Mix {
    /// A small mix on `keys`, with leases of 300 ms up to `max_lease`
    /// (at most 1.5 s).
    pub fn on(keys: &[&str], max_lease: Duration) -> Mix {
        let top = max_lease.min(Duration::from_millis(1500));
        Mix {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            lease: (Duration::from_millis(300).min(top), top),
            wait: Duration::from_millis(800),
            library_clients: 3,
            cli_clients: 1,
        }
    }
}

/// Running library and CLI clients; [`Workload::stop`] ends them.
pub struct Workload {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    recorder: Arc<Recorder>,
}

impl Workload {
    /// Starts `mix` against `nodes` (client addresses), recording into
    /// `recorder`.
    pub fn start(
        mix: &Mix,
        nodes: Vec<SocketAddr>,
        secret: &[u8],
        secret_file: &Path,
        recorder: Arc<Recorder>,
    ) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..mix.library_clients)
            .map(|i| {
                let client = LibraryClient {
                    holder: recorder.holder(HolderKind::Library, format!("library client {i}")),
                    nodes: nodes.clone(),
                    next_node: i,
                    secret: secret.to_vec(),
                    mix: mix.clone(),
                    recorder: recorder.clone(),
                    stop: stop.clone(),
                };
                tokio::spawn(client.run())
            })
            .collect();
        let threads = (0..mix.cli_clients)
            .map(|i| {
                let client = CliClient {
                    holder: recorder.holder(HolderKind::Cli, format!("cli client {i}")),
                    name: format!("cli{i}"),
                    nodes: nodes.clone(),
                    secret_file: secret_file.to_path_buf(),
                    mix: mix.clone(),
                    recorder: recorder.clone(),
                    stop: stop.clone(),
                };
                std::thread::spawn(move || client.run())
            })
            .collect();
        Workload {
            stop,
            tasks,
            threads,
            recorder,
        }
    }

    /// Ends every client after its current operation (each is bounded) and
    /// waits for them.
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.tasks) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .is_err()
            {
                self.recorder.count("library client stuck");
                abort.abort();
            }
        }
        for t in std::mem::take(&mut self.threads) {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // A scenario that fails before `stop` must not leave CLI threads
        // starting processes for the rest of the test binary's life.
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The holder's belief about one tenure.
struct Tenure {
    key: String,
    value: String,
    token: u64,
    start: u64,
    deadline: u64,
}

/// A client task in the test process.
struct LibraryClient {
    holder: usize,
    nodes: Vec<SocketAddr>,
    next_node: usize,
    secret: Vec<u8>,
    mix: Mix,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
}

/// What a bounded library call came to.
enum Call<T> {
    Done(Result<T, Error>),
    /// It did not end within its bound.
    Abandoned,
}

async fn bounded<T>(
    wait: Duration,
    call: impl std::future::Future<Output = Result<T, Error>>,
) -> Call<T> {
    match tokio::time::timeout(wait + CALL_SLACK, call).await {
        Ok(r) => Call::Done(r),
        Err(_) => Call::Abandoned,
    }
}

impl LibraryClient {
    async fn connect(&mut self) -> Option<Client> {
        let addr = self.nodes[self.next_node % self.nodes.len()];
        self.next_node += 1;
        let connect = Client::connect(addr, Some(&self.secret));
        match tokio::time::timeout(Duration::from_secs(2), connect).await {
            Ok(Ok(c)) => Some(c.with_wait(self.mix.wait)),
            _ => {
                self.recorder.count("library connect failed");
                None
            }
        }
    }

    async fn run(mut self) {
        let mut client: Option<Client> = None;
        let mut seq = 0u64;
        while !self.stop.load(Ordering::SeqCst) {
            let Some(c) = client.clone() else {
                client = self.connect().await;
                if client.is_none() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            };
            seq += 1;
            if !self.tenure(&c, seq).await {
                // A connection error or an abandoned call: another node.
                client = None;
            }
        }
    }

    /// One lock, a few extends and (usually) a release. False when the
    /// connection should be replaced.
    async fn tenure(&self, client: &Client, seq: u64) -> bool {
        let (key, lease, extends, hold_for, release) = {
            let mut rng = rand::thread_rng();
            (
                self.mix.keys[rng.gen_range(0..self.mix.keys.len())].clone(),
                rng.gen_range(self.mix.lease.0..=self.mix.lease.1),
                rng.gen_range(0..3u32),
                rng.gen_range(0.05..0.3),
                rng.gen_bool(0.85),
            )
        };
        let value = format!("lib{}-{seq}", self.holder);
        let invoke = now_us();
        let held = match bounded(self.mix.wait, client.lock(&key, &value, lease)).await {
            Call::Done(Ok(h)) => h,
            Call::Done(Err(e)) => {
                self.recorder.count("lock failed");
                return !is_connection(&e);
            }
            Call::Abandoned => {
                self.recorder.count("lock abandoned");
                return false;
            }
        };
        let ret = now_us();
        self.recorder.count("lock ok");
        self.recorder.grant(&key, held.token.0, invoke, ret);
        // The library counts validity from its own send, a moment after
        // `invoke`: counting from `invoke` errs on the early side.
        let mut t = Tenure {
            key,
            value,
            token: held.token.0,
            start: ret,
            deadline: invoke + us(held.validity),
        };
        let mut healthy = true;
        let mut ended = None;
        for _ in 0..extends {
            let pause = lease.mul_f64(hold_for);
            tokio::time::sleep(pause).await;
            let sent = now_us();
            if sent + us(pause) >= t.deadline {
                // Too close to the deadline to count on an extend.
                break;
            }
            let extend = client.extend(&t.key, &t.value, lease, Some(Token(t.token)));
            match bounded(self.mix.wait, extend).await {
                Call::Done(Ok(h)) => {
                    self.recorder.count("extend ok");
                    t.deadline = t.deadline.max(sent + us(h.validity));
                }
                Call::Done(Err(e)) => {
                    self.recorder.count("extend failed");
                    if matches!(e, Error::Refused(OpError::NotOwner | OpError::NotFound)) {
                        // Told the lease is gone: the belief ends here.
                        ended = Some(now_us());
                        break;
                    }
                    if is_connection(&e) {
                        healthy = false;
                        break;
                    }
                }
                Call::Abandoned => {
                    self.recorder.count("extend abandoned");
                    healthy = false;
                    break;
                }
            }
        }
        if ended.is_none() && healthy {
            tokio::time::sleep(lease.mul_f64(hold_for)).await;
        }
        let end = match ended {
            Some(at) => at,
            None if release && healthy => {
                let sent = now_us();
                let release = client.release(&t.key, &t.value, Some(Token(t.token)));
                match bounded(self.mix.wait, release).await {
                    Call::Done(Ok(())) => self.recorder.count("release ok"),
                    Call::Done(Err(e)) => {
                        self.recorder.count("release failed");
                        healthy &= !is_connection(&e);
                    }
                    Call::Abandoned => {
                        self.recorder.count("release abandoned");
                        healthy = false;
                    }
                }
                sent
            }
            // Left to expire.
            None => t.deadline,
        };
        self.recorder
            .window(&t.key, self.holder, t.token, t.start, end.min(t.deadline));
        healthy
    }
}

fn is_connection(e: &Error) -> bool {
    matches!(e, Error::Io(_) | Error::Closed | Error::Unexpected)
}

/// A thread running `locker lock` and `locker release` processes.
struct CliClient {
    holder: usize,
    name: String,
    nodes: Vec<SocketAddr>,
    secret_file: PathBuf,
    mix: Mix,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
}

impl CliClient {
    /// Runs `locker --node NODE ARGS...`, killed if it has not ended within
    /// `bound`; its JSON answer, or `None`.
    fn cli(&self, node: SocketAddr, args: &[String], bound: Duration) -> Option<serde_json::Value> {
        let mut command = Command::new(locker_program());
        command
            .arg("--node")
            .arg(node.to_string())
            .arg("--secret-file")
            .arg(&self.secret_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut proc = Proc::spawn(format!("{} {}", self.name, args[0]), command).ok()?;
        let stdout = proc.child().stdout.take()?;
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            line
        });
        let until = Instant::now() + bound;
        while proc.exited().is_none() {
            if Instant::now() >= until {
                self.recorder.count("cli call killed at its bound");
                proc.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let line = reader.join().ok()?;
        serde_json::from_str(&line).ok()
    }

    fn run(self) {
        let mut seq = 0u64;
        let mut rng = rand::thread_rng();
        while !self.stop.load(Ordering::SeqCst) {
            seq += 1;
            let node = self.nodes[rng.gen_range(0..self.nodes.len())];
            let key = self.mix.keys[rng.gen_range(0..self.mix.keys.len())].clone();
            let lease = rng.gen_range(self.mix.lease.0..=self.mix.lease.1);
            let value = format!("{}-{seq}", self.name);
            let bound = self.mix.wait + CALL_SLACK;
            let invoke = now_us();
            let lock = [
                "lock".to_string(),
                key.clone(),
                value.clone(),
                "--lease-ms".into(),
                lease.as_millis().to_string(),
                "--wait-ms".into(),
                self.mix.wait.as_millis().to_string(),
            ];
            let answer = self.cli(node, &lock, bound);
            let ret = now_us();
            let granted = answer.as_ref().and_then(|v| {
                Some((v["token"].as_u64()?, v["valid_for_ms"].as_u64()?))
                    .filter(|_| v["ok"] == true)
            });
            let Some((token, valid_ms)) = granted else {
                self.recorder.count("cli lock failed");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            self.recorder.count("cli lock ok");
            self.recorder.grant(&key, token, invoke, ret);
            // Validity counts from the process's own send, after `invoke`.
            let deadline = invoke + valid_ms * 1000;
            std::thread::sleep(lease.mul_f64(rng.gen_range(0.05..0.3)));
            let sent = now_us();
            let release = [
                "release".to_string(),
                key.clone(),
                value,
                "--token".into(),
                token.to_string(),
            ];
            let done = self.cli(node, &release, bound);
            if done.as_ref().is_some_and(|v| v["ok"] == true) {
                self.recorder.count("cli release ok");
            } else {
                self.recorder.count("cli release failed");
            }
            self.recorder
                .window(&key, self.holder, token, ret, sent.min(deadline));
        }
    }
}

/// One line of `locker hold`.
#[derive(Clone, Debug)]
enum HoldLine {
    /// A guard state (`held`, `danger`, `lost`).
    State {
        state: String,
        token: u64,
        deadline: u64,
        at: u64,
    },
    /// A work step.
    Work { token: u64, deadline: u64, at: u64 },
    /// The end: released, or the lock failed.
    End { state: String, at: u64 },
}

fn parse_hold_line(line: &str) -> Option<HoldLine> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let at = v["at_unix_us"].as_u64()?;
    if v["work"] == true {
        return Some(HoldLine::Work {
            token: v["token"].as_u64()?,
            deadline: v["deadline_unix_us"].as_u64()?,
            at,
        });
    }
    let state = v["state"].as_str()?.to_string();
    match (v["token"].as_u64(), v["deadline_unix_us"].as_u64()) {
        (Some(token), Some(deadline)) => Some(HoldLine::State {
            state,
            token,
            deadline,
            at,
        }),
        _ => Some(HoldLine::End { state, at }),
    }
}

/// A `locker hold` process: holds one key with a lease guard and works.
/// Its lines are recorded when it is [finished](Holder::finish) or dropped.
pub struct Holder {
    holder: usize,
    key: String,
    proc: Proc,
    spawned_at: u64,
    lines: Arc<Mutex<Vec<HoldLine>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Kept open: closing it asks the holder to let go.
    stdin: Option<std::process::ChildStdin>,
    recorder: Arc<Recorder>,
    recorded: bool,
}

impl Holder {
    /// Starts `locker hold KEY NAME` against `node`.
    pub fn spawn(
        name: &str,
        node: SocketAddr,
        secret_file: &Path,
        key: &str,
        lease: Duration,
        wait: Duration,
        recorder: Arc<Recorder>,
    ) -> Holder {
        let mut command = Command::new(locker_program());
        command
            .arg("--node")
            .arg(node.to_string())
            .arg("--secret-file")
            .arg(secret_file)
            .args(["hold", key, name, "--lease-ms"])
            .arg(lease.as_millis().to_string())
            .arg("--wait-ms")
            .arg(wait.as_millis().to_string())
            .args(["--work-every-ms", "20"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let spawned_at = now_us();
        let mut proc = Proc::spawn(format!("hold {name}"), command).expect("spawn locker hold");
        let stdin = proc.child().stdin.take();
        let stdout = proc.child().stdout.take().expect("hold stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(l) = parse_hold_line(&line) {
                    sink.lock().unwrap_or_else(|e| e.into_inner()).push(l);
                }
            }
        });
        Holder {
            holder: recorder.holder(HolderKind::Hold, format!("hold process {name}")),
            key: key.to_string(),
            proc,
            spawned_at,
            lines,
            reader: Some(reader),
            stdin,
            recorder,
            recorded: false,
        }
    }

    fn lines(&self) -> Vec<HoldLine> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The token, once the guard holds the key; `None` if the process ends
    /// or `bound` passes first.
    pub async fn held_within(&mut self, bound: Duration) -> Option<u64> {
        let until = Instant::now() + bound;
        loop {
            let held = self.lines().iter().find_map(|l| match l {
                HoldLine::State { token, .. } => Some(*token),
                _ => None,
            });
            if held.is_some() {
                return held;
            }
            if self.proc.exited().is_some() || Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Work steps seen so far.
    pub fn work_steps(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| matches!(l, HoldLine::Work { .. }))
            .count()
    }

    /// The guard states it reported, in order.
    pub fn states(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|l| match l {
                HoldLine::State { state, .. } | HoldLine::End { state, .. } => Some(state),
                HoldLine::Work { .. } => None,
            })
            .collect()
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.recorder.fault(format!("SIGSTOP {}", self.proc.name()));
        if let Err(e) = self.proc.signal(Signal::Stop) {
            eprintln!("  {e}");
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.recorder.fault(format!("SIGCONT {}", self.proc.name()));
        if let Err(e) = self.proc.signal(Signal::Cont) {
            eprintln!("  {e}");
        }
    }

    /// Waits up to `bound` for the process to exit; its exit code.
    pub async fn exit_within(&mut self, bound: Duration) -> Option<i32> {
        self.proc
            .exit_within(bound)
            .await
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Asks it to let go (SIGTERM, or the end of its stdin when
    /// `by_stdin`), waits for its exit (killing it after 10 s) and records
    /// its lines. Its exit code, if it exited by itself.
    pub async fn finish(&mut self, by_stdin: bool) -> Option<i32> {
        if self.proc.exited().is_none() {
            if by_stdin {
                self.stdin = None;
            } else {
                let _ = self.proc.signal(Signal::Term);
            }
        }
        let code = self.exit_within(Duration::from_secs(10)).await;
        self.proc.kill();
        self.record();
        code
    }

    /// Turns its lines into the tenure, grant and work steps of the
    /// history (once).
    ///
    /// Each line says that at `at` the guard proved the lease up to
    /// `deadline`. The tenure is the union of those intervals: one window
    /// while they chain, a new one after a gap (a pause past the deadline
    /// that an extend then bridged), each ending at the latest deadline
    /// seen, or at the line that says the lease is gone.
    fn record(&mut self) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        if let Some(reader) = self.reader.take() {
            // The process is gone, so its stdout is at its end.
            let _ = reader.join();
        }
        let r = &self.recorder;
        let mut token = None;
        let mut proofs: Vec<(u64, u64)> = Vec::new();
        let mut gone: Option<u64> = None;
        for l in self.lines() {
            match l {
                HoldLine::State {
                    state,
                    token: t,
                    deadline,
                    at,
                } => match state.as_str() {
                    "held" | "danger" => {
                        if token.is_none() {
                            r.count("hold lock ok");
                            r.grant(&self.key, t, self.spawned_at, at);
                            token = Some(t);
                        }
                        proofs.push((at, deadline));
                    }
                    _ => {
                        r.count(&format!("hold {state}"));
                        gone.get_or_insert(at);
                    }
                },
                HoldLine::Work {
                    token: t,
                    deadline,
                    at,
                } => {
                    proofs.push((at, deadline));
                    r.work(WorkStep {
                        key: self.key.clone(),
                        holder: self.holder,
                        token: t,
                        at,
                        deadline,
                    });
                }
                HoldLine::End { state, at } => {
                    r.count(&format!("hold {state}"));
                    gone.get_or_insert(at);
                }
            }
        }
        r.add("work steps", self.work_steps() as u64);
        let Some(token) = token else { return };
        let gone = gone.unwrap_or(u64::MAX);
        let mut window: Option<(u64, u64)> = None;
        for (at, deadline) in proofs {
            window = match window {
                Some((start, end)) if at <= end => Some((start, end.max(deadline))),
                Some((start, end)) => {
                    r.window(&self.key, self.holder, token, start, end.min(gone));
                    Some((at, deadline))
                }
                None => Some((at, deadline)),
            };
        }
        if let Some((start, end)) = window {
            r.window(&self.key, self.holder, token, start, end.min(gone));
        }
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.proc.kill();
        self.record();
    }
}
