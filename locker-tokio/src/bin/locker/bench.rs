//! `locker bench`: lock+release cycles and extends against a 3-master
//! cluster, for each runtime the nodes can run on, alternating between them
//! so that both see the same machine.

use crate::stats::Latencies;
use crate::RuntimeKind;
use locker_core::Token;
use locker_tokio::Client;
use serde_json::json;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Options of `locker bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Use a running cluster (three client addresses) instead of spawning one.
    #[arg(long, value_delimiter = ',')]
    connect: Vec<SocketAddr>,
    /// Concurrent clients for the lock+release workload.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Seconds per workload.
    #[arg(long, default_value_t = 3)]
    secs: u64,
    /// Leases held for the extend workload.
    #[arg(long, default_value_t = 10_000)]
    leases: usize,
    /// Concurrent extenders in the extend workload.
    #[arg(long, default_value_t = 64)]
    extenders: usize,
    /// Clients contending for one key, each locking it (waiting up to 2 s)
    /// and releasing it at once: how fast the key passes from holder to
    /// holder. 0 skips this workload.
    #[arg(long, default_value_t = 0)]
    contenders: usize,
    /// Runtimes of the spawned nodes, measured in turn at each concurrency.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tokio")]
    runtime: Vec<RuntimeKind>,
    /// Worker threads of each spawned `locker serve` (default: its own).
    #[arg(long)]
    serve_threads: Option<usize>,
    /// Worker threads of this load process; 1 runs its clients on tokio's
    /// current-thread runtime, where a reply wakes the waiting client on
    /// the thread that read it.
    #[arg(long, default_value_t = 1)]
    pub load_threads: usize,
    /// Start the spawned nodes with `serve --busy-poll MS` and run the busy
    /// poller in this load process too (default window 5 ms): CPU time
    /// for wake-up latency, see `locker serve --help`.
    #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "5",
          value_parser = clap::value_parser!(u64).range(1..))]
    busy_poll: Option<u64>,
}

/// The spawned nodes, killed on drop, and the directory of their data dirs,
/// removed then.
struct Procs(Vec<Child>, PathBuf);

impl Drop for Procs {
    fn drop(&mut self) {
        for p in &mut self.0 {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn spawn_cluster(
    runtime: RuntimeKind,
    threads: Option<usize>,
    busy_poll: Option<u64>,
) -> Result<(Procs, Vec<SocketAddr>), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let masters = addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let data_root = std::env::temp_dir().join(format!(
        "locker-bench-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut procs = Procs(Vec::new(), data_root.clone());
    for (i, a) in addrs.iter().enumerate() {
        let mut command = Command::new(&exe);
        command.args([
            "serve",
            "--id",
            &(i + 1).to_string(),
            "--listen",
            &a.to_string(),
            "--masters",
            &masters,
            "--runtime",
            runtime.name(),
        ]);
        // A brand-new cluster each time: its masters vote at once.
        command
            .arg("--data-dir")
            .arg(data_root.join(format!("n{}", i + 1)))
            .arg("--bootstrap");
        if let Some(n) = threads {
            command.args(["--threads", &n.to_string()]);
        }
        if let Some(ms) = busy_poll {
            command.args(["--busy-poll", &ms.to_string()]);
        }
        let child = command
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start locker serve: {e}"))?;
        procs.0.push(child);
    }
    Ok((procs, addrs))
}

async fn connect_all(
    addrs: &[SocketAddr],
    n: usize,
    secret: Option<&[u8]>,
) -> Result<Vec<Client>, String> {
    let mut clients = Vec::new();
    for i in 0..n {
        let c = Client::connect(addrs[i % addrs.len()], secret)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", addrs[i % addrs.len()]))?;
        clients.push(c.with_wait(Duration::from_secs(2)));
    }
    Ok(clients)
}

pub async fn run(args: BenchArgs, secret: Option<Vec<u8>>) -> ExitCode {
    match bench(args, secret).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("locker bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// A cluster under test: its runtime's name and client addresses.
struct Target {
    runtime: &'static str,
    addrs: Vec<SocketAddr>,
    /// The idle poller's window (ms) in the nodes and this process, if on.
    busy_poll: Option<u64>,
}

async fn bench(args: BenchArgs, secret: Option<Vec<u8>>) -> Result<(), String> {
    let mut procs = Vec::new();
    let mut targets = Vec::new();
    // The load process's own wake-ups count as much as the nodes'.
    let busy_poll = args.busy_poll;
    let _poller = busy_poll.and_then(|ms| {
        locker_host::BusyPoll::start(&locker_tokio::TokioRuntime, Duration::from_millis(ms))
    });
    if args.connect.is_empty() {
        for &runtime in &args.runtime {
            let (p, addrs) = spawn_cluster(runtime, args.serve_threads, busy_poll)?;
            procs.push(p);
            targets.push(Target {
                runtime: runtime.name(),
                addrs,
                busy_poll,
            });
        }
    } else {
        // The running nodes' setting is unknown; this reports the load
        // process's.
        targets.push(Target {
            runtime: "running",
            addrs: args.connect.clone(),
            busy_poll,
        });
    }
    let secret = secret.as_deref();
    for t in &targets {
        if t.addrs.iter().any(|a| !a.ip().is_loopback()) {
            return Err("bench runs on loopback only".into());
        }
        wait_ready(&t.addrs, secret).await?;
        eprintln!("{} cluster: {:?}", t.runtime, t.addrs);
    }
    eprintln!("{} s per workload", args.secs);
    let run_for = Duration::from_secs(args.secs);
    for &c in &args.clients {
        for t in &targets {
            let v = lock_release(t, c, run_for, secret).await?;
            println!("{v}");
        }
    }
    for t in targets.iter().filter(|_| args.contenders > 0) {
        let v = handoffs(t, args.contenders, run_for, secret).await?;
        println!("{v}");
    }
    // `--leases 0` skips the extend workload.
    for t in targets.iter().filter(|_| args.leases > 0) {
        let v = extends(t, &args, run_for, secret).await?;
        println!("{v}");
    }
    drop(procs);
    Ok(())
}

/// Waits until every node grants locks (clients connect to all of them; a
/// node that is slow to start would otherwise fail the first workload).
async fn wait_ready(addrs: &[SocketAddr], secret: Option<&[u8]>) -> Result<(), String> {
    let t = Instant::now();
    for addr in addrs {
        loop {
            if let Ok(c) = Client::connect(*addr, secret).await {
                let c = c.with_wait(Duration::from_millis(200));
                if let Ok(h) = c.lock("bench-warmup", "w", Duration::from_secs(1)).await {
                    let _ = c.release("bench-warmup", "w", Some(h.token)).await;
                    break;
                }
            }
            if t.elapsed() > Duration::from_secs(10) {
                return Err(format!("{addr} did not grant a lock within 10 s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

/// What `c` clients measured doing lock+release cycles for `run_for`.
struct Cycles {
    lock: Latencies,
    cycle: Latencies,
    errors: u64,
    /// What the first failed operation said, so an error count can be told
    /// apart from a refusal the workload should never see.
    first_error: serde_json::Value,
    secs: f64,
}

/// `c` clients each locking `key(i, n)` (client `i`'s `n`-th cycle) with
/// its own value and releasing it with the token, for `run_for`.
async fn cycles(
    target: &Target,
    c: usize,
    run_for: Duration,
    secret: Option<&[u8]>,
    key: impl Fn(usize, u64) -> String + Copy + Send + 'static,
) -> Result<Cycles, String> {
    let clients = connect_all(&target.addrs, c, secret).await?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let (mut lock, mut cycle) = (Latencies::default(), Latencies::default());
            let (mut errors, mut first_error) = (0u64, None);
            let value = format!("client-{i}");
            let mut n = 0u64;
            while start.elapsed() < run_for {
                let key = key(i, n);
                n += 1;
                let t0 = Instant::now();
                let failed = match client.lock(&key, &value, Duration::from_secs(10)).await {
                    Ok(h) => {
                        lock.record(t0.elapsed());
                        let released = client.release(&key, &value, Some(h.token)).await;
                        cycle.record(t0.elapsed());
                        released.err().map(|e| format!("release: {e}"))
                    }
                    Err(e) => Some(format!("lock: {e}")),
                };
                if let Some(e) = failed {
                    errors += 1;
                    first_error.get_or_insert(e);
                }
            }
            (lock, cycle, errors, first_error)
        }));
    }
    let (mut lock, mut cycle) = (Latencies::default(), Latencies::default());
    let (mut errors, mut first_error) = (0, None);
    for t in tasks {
        let (l, cy, e, first) = t.await.map_err(|e| e.to_string())?;
        lock.merge(&l);
        cycle.merge(&cy);
        errors += e;
        first_error = first_error.or(first);
    }
    Ok(Cycles {
        lock,
        cycle,
        errors,
        first_error: first_error.map_or(serde_json::Value::Null, serde_json::Value::String),
        secs: start.elapsed().as_secs_f64(),
    })
}

/// `c` clients each locking and releasing fresh keys for `run_for`.
async fn lock_release(
    target: &Target,
    c: usize,
    run_for: Duration,
    secret: Option<&[u8]>,
) -> Result<serde_json::Value, String> {
    let r = cycles(target, c, run_for, secret, move |i, n| {
        format!("bench/{c}/{i}/{n}")
    })
    .await?;
    Ok(json!({
        "workload": "lock+release", "runtime": target.runtime, "clients": c,
        "cycles_per_s": (r.cycle.count() as f64 / r.secs).round(),
        "lock_p50_us": r.lock.quantile_us(0.5), "lock_p99_us": r.lock.quantile_us(0.99),
        "cycle_p50_us": r.cycle.quantile_us(0.5), "cycle_p99_us": r.cycle.quantile_us(0.99),
        "cycles": r.cycle.count(), "errors": r.errors, "first_error": r.first_error,
        "busy_poll": target.busy_poll.is_some(), "busy_poll_window_ms": target.busy_poll,
    }))
}

/// `c` clients taking turns on one key: each locks it (waiting while
/// another holds it) and releases it at once.
async fn handoffs(
    target: &Target,
    c: usize,
    run_for: Duration,
    secret: Option<&[u8]>,
) -> Result<serde_json::Value, String> {
    let r = cycles(target, c, run_for, secret, |_, _| "bench/contended".into()).await?;
    Ok(json!({
        "workload": "handoff", "runtime": target.runtime, "clients": c,
        "handoffs_per_s": (r.lock.count() as f64 / r.secs).round(),
        "lock_p50_us": r.lock.quantile_us(0.5), "lock_p99_us": r.lock.quantile_us(0.99),
        "handoffs": r.lock.count(), "errors": r.errors, "first_error": r.first_error,
        "busy_poll": target.busy_poll.is_some(), "busy_poll_window_ms": target.busy_poll,
    }))
}

/// Extends only, on many held leases.
async fn extends(
    target: &Target,
    args: &BenchArgs,
    run_for: Duration,
    secret: Option<&[u8]>,
) -> Result<serde_json::Value, String> {
    let clients = connect_all(&target.addrs, args.extenders, secret).await?;
    let per = args.leases.div_ceil(args.extenders);
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().cloned().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut held: Vec<(String, Token)> = Vec::new();
            for j in 0..per {
                let key = format!("bench/extend/{i}/{j}");
                if let Ok(h) = client.lock(&key, "v", Duration::from_secs(30)).await {
                    held.push((key, h.token));
                }
            }
            held
        }));
    }
    let mut sets = Vec::new();
    for t in tasks {
        sets.push(Arc::new(t.await.map_err(|e| e.to_string())?));
    }
    let total: usize = sets.iter().map(|s| s.len()).sum();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (client, set) in clients.into_iter().zip(sets.iter().cloned()) {
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::default();
            let mut errors = 0u64;
            let mut k = 0usize;
            while start.elapsed() < run_for && !set.is_empty() {
                let (key, token) = &set[k % set.len()];
                k += 1;
                let t0 = Instant::now();
                match client
                    .extend(key, "v", Duration::from_secs(30), Some(*token))
                    .await
                {
                    Ok(_) => lat.record(t0.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Latencies::default();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| e.to_string())?;
        lat.merge(&l);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({
        "workload": "extend", "runtime": target.runtime, "leases": total, "clients": args.extenders,
        "extends_per_s": (lat.count() as f64 / secs).round(),
        "p50_us": lat.quantile_us(0.5), "p99_us": lat.quantile_us(0.99), "errors": errors,
        "busy_poll": target.busy_poll.is_some(), "busy_poll_window_ms": target.busy_poll,
    }))
}
