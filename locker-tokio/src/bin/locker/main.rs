//! The `locker` program: run a node, talk to one, demo, bench.

use clap::{Parser, Subcommand};
use locker_core::{Config, EntryView, NodeId, OpError, Token};
use locker_host::Runtime;
use locker_tokio::{Client, Error, NodeOptions, StartMode, TokioRuntime};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

mod admin;
mod bench;
mod demo;
mod hold;
mod stats;

/// Every message a node handles allocates (decoded keys and values, the
/// core's per-request state) and frees on another path shortly after;
/// glibc's malloc and free were about 6 % of a node's profile at 64
/// clients.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What `--help` says after the commands.
const AFTER_HELP: &str = "\
Output: client commands print one JSON object on stdout, {\"ok\":true,...} or
{\"ok\":false,\"error\":CODE,\"message\":...}.

Exit codes: 0 done; 1 refused by the cluster (held, not_found, no_quorum, ...);
2 usage, connection, authentication or timeout error; 3 (serve) the node
stopped itself on a fatal error (a failed write to its data dir).";

#[derive(Parser)]
#[command(
    name = "locker",
    version,
    about = "A distributed lease store: locks, leader election, name registry",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The node to talk to.
    #[arg(long, global = true, default_value = "127.0.0.1:7101")]
    node: SocketAddr,
    /// File holding the cluster secret.
    #[arg(long, global = true)]
    secret_file: Option<PathBuf>,
    /// Give up on a client command after this many milliseconds (connect,
    /// handshake and answer), exiting with code 2. Default: the command's
    /// own wait or timeout plus 5000.
    #[arg(long, global = true, value_name = "MS")]
    timeout_ms: Option<u64>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node.
    Serve {
        /// This node's id.
        #[arg(long)]
        id: u64,
        /// Address to listen on.
        #[arg(long)]
        listen: SocketAddr,
        /// Masters as ID=ADDR,...
        #[arg(long, value_delimiter = ',')]
        masters: Vec<String>,
        /// Replicas as ID=ADDR,...
        #[arg(long, value_delimiter = ',')]
        replicas: Vec<String>,
        /// Write quorum (default: majority).
        #[arg(long)]
        w: Option<usize>,
        /// Directory where the node keeps its state (its token ceiling and
        /// the membership it applied, in one checksummed file): a restart
        /// resumes both. Required, unless --no-data-dir.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Run without a data dir. The node still waits out its quarantine at
        /// every start, but fencing tokens may repeat once a majority of the
        /// masters has restarted without state.
        #[arg(long, conflicts_with_all = ["data_dir", "bootstrap"])]
        no_data_dir: bool,
        /// The first start of a node of a brand-new cluster: it has never
        /// voted, so it votes at once. Without it, a master waits out its
        /// quarantine (max lease + promise and RPC timeouts, stretched for
        /// clock drift) before voting, as after a crash. Refused when the
        /// data dir already holds this node's state.
        #[arg(long, requires = "data_dir")]
        bootstrap: bool,
        /// The longest lease a request may ask for, in milliseconds; it also
        /// sets how long a restarted master is quarantined. Give every node
        /// of a cluster the same value.
        #[arg(long, value_name = "MS", default_value_t = 60_000,
              value_parser = clap::value_parser!(u64).range(1..))]
        max_lease_ms: u64,
        /// The runtime the node runs on.
        #[arg(long, value_enum, default_value_t = RuntimeKind::Tokio)]
        runtime: RuntimeKind,
        /// Worker threads (default: `LOCKER_SERVE_THREADS`, else 1). The
        /// node's state sits behind one lock, so more threads mostly add
        /// cross-thread wake-ups; one thread is the fastest on small machines.
        #[arg(long)]
        threads: Option<usize>,
        /// Keep the node's thread polling for I/O, instead of sleeping,
        /// while it has had traffic in the last MS milliseconds (default 5),
        /// yielding the CPU to other threads at every turn. Trades CPU time
        /// (the process shows a busy CPU while active) for wake-up latency,
        /// which on virtual machines costs tens of microseconds per
        /// message. Off by default.
        #[arg(long, value_name = "MS", num_args = 0..=1, default_missing_value = "5",
              value_parser = clap::value_parser!(u64).range(1..))]
        busy_poll: Option<u64>,
    },
    /// Create KEY held with VALUE.
    Lock {
        key: String,
        value: String,
        #[arg(long)]
        lease_ms: u64,
        /// How long to keep retrying a held or unreachable key.
        #[arg(long, default_value_t = 3000)]
        wait_ms: u64,
    },
    /// Compare-and-set of the value.
    Update {
        key: String,
        value: String,
        new_value: String,
    },
    /// Extend the lease.
    Extend {
        key: String,
        value: String,
        #[arg(long)]
        lease_ms: u64,
        #[arg(long)]
        token: Option<u64>,
    },
    /// Delete the entry.
    Release {
        key: String,
        value: String,
        #[arg(long)]
        token: Option<u64>,
    },
    /// Read a key (quorum, or local with --dirty).
    Read {
        key: String,
        #[arg(long)]
        dirty: bool,
    },
    /// Wait until KEY is present on the node.
    WaitFor {
        key: String,
        #[arg(long)]
        timeout_ms: u64,
    },
    /// Wait until KEY is absent on the node.
    WaitRelease {
        key: String,
        #[arg(long)]
        timeout_ms: u64,
    },
    /// The node's role, links, counts and counters.
    Status,
    /// How long a lock takes through the node (a probe key, locked and
    /// released).
    Lag,
    /// Change the members: `--masters 2,3,4 [--replicas 5]`.
    SetNodes(admin::SetNodesArgs),
    /// Change the write quorum.
    SetW(admin::SetWArgs),
    /// Take KEY with a lease guard and work while the guard proves the lease.
    ///
    /// Prints one JSON line per guard state change,
    /// `{"state":"held"|"danger"|"lost","token":N,"deadline_unix_us":..,"at_unix_us":..}`,
    /// and one per work step, `{"work":true,"token":N,"deadline_unix_us":..,"at_unix_us":..}`,
    /// taken every --work-every-ms while the state is held or danger and the
    /// clock is before the guard's deadline. Times are wall-clock
    /// microseconds since the Unix epoch. Releases and exits 0 on SIGTERM,
    /// SIGINT or the end of stdin (printing `{"state":"released",..}`);
    /// exits 1 when the lease is lost or the lock is refused, 2 when the node
    /// cannot be reached (a `{"state":"failed","error":..}` line).
    Hold(hold::HoldArgs),
    /// Walk through what locker does, on a cluster inside this process.
    Demo,
    /// Measure lock+release cycles and extends against three `locker serve` processes.
    Bench(bench::BenchArgs),
}

/// A runtime a node can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// tokio (`locker-tokio`).
    Tokio,
    /// smol (`locker-smol`); needs the `smol-nodes` feature.
    Smol,
}

impl RuntimeKind {
    /// The name `--runtime` takes.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Tokio => "tokio",
            RuntimeKind::Smol => "smol",
        }
    }
}

fn parse_members(list: &[String]) -> Result<Vec<(NodeId, SocketAddr)>, String> {
    list.iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (id, addr) = s
                .split_once('=')
                .ok_or_else(|| format!("expected ID=ADDR, got {s:?}"))?;
            let id = id
                .parse::<u64>()
                .map_err(|e| format!("bad id {id:?}: {e}"))?;
            let addr = addr
                .parse::<SocketAddr>()
                .map_err(|e| format!("bad address {addr:?}: {e}"))?;
            Ok((NodeId(id), addr))
        })
        .collect()
}

fn read_secret(path: &Option<PathBuf>) -> Result<Option<Vec<u8>>, String> {
    match path {
        None => Ok(None),
        Some(p) => {
            let s = std::fs::read(p)
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display()))?;
            let trimmed = String::from_utf8_lossy(&s).trim_end().as_bytes().to_vec();
            Ok(Some(trimmed))
        }
    }
}

fn ids(nodes: &[NodeId]) -> Value {
    nodes.iter().map(|n| n.0).collect()
}

fn text(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => Value::Array(bytes.iter().map(|b| json!(b)).collect()),
    }
}

/// How long the holder may still act on `held`, from now: its deadline
/// counts from the request's send, not from the answer.
fn valid_for_ms(held: &locker_tokio::Held) -> u64 {
    held.deadline
        .saturating_duration_since(std::time::Instant::now())
        .as_millis() as u64
}

fn entry_json(e: &Option<EntryView>) -> Value {
    match e {
        None => json!({"ok": true, "found": false}),
        Some(e) => json!({"ok": true, "found": true, "value": text(&e.value), "token": e.token.0,
                          "remaining_ms": e.remaining.as_millis() as u64}),
    }
}

/// Worker threads of `serve`: `--threads`, else `LOCKER_SERVE_THREADS`, else 1.
///
/// One by default: every input runs the core under one lock, so a second
/// worker adds little but cross-thread wake-ups. Measured with three serve
/// processes on a 2-core machine at one client: the coordinator's context
/// switches per lock+release cycle were 4.7 on one thread and 11.9 on
/// tokio's multi-thread runtime.
fn serve_threads(flag: Option<usize>) -> usize {
    flag.or_else(|| {
        std::env::var("LOCKER_SERVE_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
    })
    .unwrap_or(1)
    .max(1)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `None`: tokio's default (one worker per core), for client commands
    // and the demo.
    let threads = match &cli.cmd {
        Cmd::Serve { threads, .. } => Some(serve_threads(*threads)),
        Cmd::Bench(args) => Some(args.load_threads.max(1)),
        _ => None,
    };
    if let Cmd::Serve {
        runtime: RuntimeKind::Smol,
        ..
    } = cli.cmd
    {
        // smol's global executor reads its thread count once, when first
        // used: set it before anything starts it.
        if let (None, Some(n)) = (std::env::var_os("SMOL_THREADS"), threads) {
            std::env::set_var("SMOL_THREADS", n.to_string());
        }
    }
    let rt = match threads {
        // On one thread every wake-up stays on it: no futex, no stealing.
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
    .expect("tokio runtime");
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let secret = match read_secret(&cli.secret_file) {
        Ok(s) => s,
        Err(e) => return usage(&e),
    };
    match cli.cmd {
        Cmd::Serve {
            id,
            listen,
            masters,
            replicas,
            w,
            data_dir,
            no_data_dir,
            bootstrap,
            max_lease_ms,
            runtime,
            threads: _,
            busy_poll,
        } => {
            let members = Members {
                masters,
                replicas,
                w,
            };
            if data_dir.is_none() && !no_data_dir {
                return usage(
                    "give --data-dir DIR, where this node keeps the state its safety across \
                     restarts rests on (or --no-data-dir to run without it)",
                );
            }
            let start = Start {
                data_dir,
                mode: if bootstrap {
                    StartMode::Bootstrap
                } else {
                    StartMode::Restart
                },
                max_lease: Duration::from_millis(max_lease_ms),
            };
            let busy_poll = busy_poll.map(Duration::from_millis);
            serve(id, listen, &members, start, secret, runtime, busy_poll).await
        }
        Cmd::Demo => {
            init_tracing("error");
            demo::run().await
        }
        Cmd::Bench(args) => bench::run(args, secret).await,
        // Holds until told to stop: its own lock and release are bounded.
        Cmd::Hold(args) => hold::run(cli.node, secret, args).await,
        cmd => {
            let deadline = cli
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or_else(|| command_bound(&cmd) + Duration::from_secs(5));
            match tokio::time::timeout(deadline, client_command(cli.node, secret, cmd)).await {
                Ok(code) => code,
                Err(_) => {
                    let msg = format!("no answer within {} ms", deadline.as_millis());
                    println!(
                        "{}",
                        json!({"ok": false, "error": "timeout", "message": msg})
                    );
                    eprintln!("locker: {msg} (--timeout-ms sets the limit)");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// How long a client command may take by its own terms: its wait or
/// timeout, else the client's default wait.
fn command_bound(cmd: &Cmd) -> Duration {
    match cmd {
        Cmd::Lock { wait_ms, .. } => Duration::from_millis(*wait_ms),
        Cmd::WaitFor { timeout_ms, .. } | Cmd::WaitRelease { timeout_ms, .. } => {
            Duration::from_millis(*timeout_ms)
        }
        _ => Duration::from_secs(5),
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn usage(msg: &str) -> ExitCode {
    println!("{}", json!({"ok": false, "error": "usage", "message": msg}));
    eprintln!("locker: {msg}");
    ExitCode::from(2)
}

/// The member lists of `locker serve`, as given.
struct Members {
    masters: Vec<String>,
    replicas: Vec<String>,
    w: Option<usize>,
}

/// How `locker serve` starts its node.
struct Start {
    data_dir: Option<PathBuf>,
    mode: StartMode,
    max_lease: Duration,
}

async fn serve(
    id: u64,
    listen: SocketAddr,
    members: &Members,
    start: Start,
    secret: Option<Vec<u8>>,
    runtime: RuntimeKind,
    busy_poll: Option<Duration>,
) -> ExitCode {
    init_tracing("info");
    let (masters, replicas) = match (
        parse_members(&members.masters),
        parse_members(&members.replicas),
    ) {
        (Ok(m), Ok(r)) => (m, r),
        (Err(e), _) | (_, Err(e)) => return usage(&e),
    };
    let mut addrs: HashMap<NodeId, SocketAddr> = masters.iter().chain(&replicas).copied().collect();
    addrs.remove(&NodeId(id));
    let mut config = Config::new(
        NodeId(id),
        masters.iter().map(|m| m.0).collect(),
        replicas.iter().map(|r| r.0).collect(),
    );
    config.seed = rand::random();
    config.max_lease = start.max_lease;
    if let Some(w) = members.w {
        config.w = w;
    }
    if start.data_dir.is_none() {
        tracing::warn!(node = id, "running without a data dir (--no-data-dir): fencing tokens may repeat once a majority of the masters has restarted");
    }
    let listener = match std::net::TcpListener::bind(listen) {
        Ok(l) => l,
        Err(e) => return usage(&format!("cannot listen on {listen}: {e}")),
    };
    let mut opts = NodeOptions::new(config, addrs);
    opts.secret = secret;
    opts.data_dir = start.data_dir;
    opts.start = start.mode;
    opts.busy_poll = busy_poll;
    match runtime {
        RuntimeKind::Tokio => serve_on(TokioRuntime, listener, opts).await,
        #[cfg(feature = "smol-nodes")]
        RuntimeKind::Smol => serve_on(locker_smol::SmolRuntime::default(), listener, opts).await,
        #[cfg(not(feature = "smol-nodes"))]
        RuntimeKind::Smol => usage("this program was built without the smol-nodes feature"),
    }
}

/// Runs a node on `runtime` until SIGINT or SIGTERM (exit 0), or until it
/// stops itself on a fatal error (exit 3).
async fn serve_on<R: Runtime>(
    runtime: R,
    listener: std::net::TcpListener,
    opts: NodeOptions,
) -> ExitCode {
    let started = match runtime.listen(listener) {
        Ok(l) => locker_host::LocalNode::start_on(runtime, l, opts).await,
        Err(e) => Err(e.into()),
    };
    let node = match started {
        Ok(n) => n,
        Err(e) => return usage(&e.to_string()),
    };
    let announce_ready = async {
        node.ready().await;
        // ready() also returns when the node stops.
        if node.is_ready() {
            tracing::info!(node = %node.id(), "node ready: it reaches a quorum of masters");
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = wait_for_signal() => {
            tracing::info!(node = %node.id(), "shutting down");
            node.shutdown();
            ExitCode::SUCCESS
        }
        fatal = node.stopped() => {
            eprintln!("locker: node {}: {fatal}", node.id());
            ExitCode::from(3)
        }
        _ = announce_ready => unreachable!("announce_ready never ends"),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn print_result(r: Result<Value, Error>) -> ExitCode {
    match r {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(Error::Refused(e)) => {
            let mut v = json!({"ok": false, "error": e.code(), "message": e.to_string()});
            if let OpError::Unconfirmed { token: Some(t) } = e {
                v["token"] = json!(t.0);
            }
            println!("{v}");
            ExitCode::from(1)
        }
        Err(Error::Auth(e)) => {
            println!(
                "{}",
                json!({"ok": false, "error": "auth", "message": e.to_string()})
            );
            eprintln!("locker: {e}: check --secret-file");
            ExitCode::from(2)
        }
        Err(Error::Timeout) => {
            let msg = "the node did not answer in time";
            println!(
                "{}",
                json!({"ok": false, "error": "timeout", "message": msg})
            );
            eprintln!("locker: {msg} (it may be overloaded, paused or partitioned)");
            ExitCode::from(2)
        }
        Err(e) => {
            println!(
                "{}",
                json!({"ok": false, "error": "connection", "message": e.to_string()})
            );
            eprintln!("locker: {e}");
            ExitCode::from(2)
        }
    }
}

async fn client_command(node: SocketAddr, secret: Option<Vec<u8>>, cmd: Cmd) -> ExitCode {
    let client = match Client::connect(node, secret.as_deref()).await {
        Ok(c) => c,
        Err(e) => return print_result(Err(e)),
    };
    let r = async {
        Ok(match cmd {
            Cmd::Lock { key, value, lease_ms, wait_ms } => {
                let h = client
                    .with_wait(Duration::from_millis(wait_ms))
                    .lock(key, value, Duration::from_millis(lease_ms))
                    .await?;
                json!({"ok": true, "token": h.token.0, "valid_for_ms": valid_for_ms(&h)})
            }
            Cmd::Update { key, value, new_value } => {
                let t = client.update(key, value, new_value).await?;
                json!({"ok": true, "token": t.0})
            }
            Cmd::Extend { key, value, lease_ms, token } => {
                let h = client.extend(key, value, Duration::from_millis(lease_ms), token.map(Token)).await?;
                json!({"ok": true, "token": h.token.0, "valid_for_ms": valid_for_ms(&h)})
            }
            Cmd::Release { key, value, token } => {
                client.release(key, value, token.map(Token)).await?;
                json!({"ok": true})
            }
            Cmd::Read { key, dirty } => {
                let e = if dirty { client.dirty_read(key).await? } else { client.read(key).await? };
                entry_json(&e)
            }
            Cmd::WaitFor { key, timeout_ms } => {
                let e = client.wait_for(key, Duration::from_millis(timeout_ms)).await?;
                entry_json(&Some(e))
            }
            Cmd::WaitRelease { key, timeout_ms } => {
                client.wait_for_release(key, Duration::from_millis(timeout_ms)).await?;
                json!({"ok": true, "gone": true})
            }
            Cmd::Lag => {
                let lag = client.lag().await?;
                json!({"ok": true, "lag_us": lag.as_micros() as u64})
            }
            Cmd::Status => {
                let s = client.status().await?;
                let links: serde_json::Map<String, Value> = s
                    .links
                    .iter()
                    .map(|(id, up)| (id.to_string(), json!(if *up { "up" } else { "down" })))
                    .collect();
                let counters: serde_json::Map<String, Value> =
                    s.counters.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
                json!({"ok": true, "id": s.summary.id.0, "role": format!("{:?}", s.role).to_lowercase(),
                       "ready": s.ready, "recovering": s.summary.recovering, "leases": s.summary.leases,
                       "tombstones": s.summary.tombstones, "promises": s.summary.promises,
                       "coordinating": s.summary.coordinating, "highest_token": s.summary.highest_token.0,
                       "w": s.summary.w, "masters": ids(&s.summary.masters),
                       "replicas": ids(&s.summary.replicas), "peers": links, "counters": counters})
            }
            Cmd::SetNodes(args) => admin::set_nodes(&client, args).await?,
            Cmd::SetW(args) => admin::set_w(&client, args).await?,
            Cmd::Serve { .. } | Cmd::Demo | Cmd::Bench(_) | Cmd::Hold(_) => {
                unreachable!("handled above")
            }
        })
    }
    .await;
    print_result(r)
}
