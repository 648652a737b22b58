//! The `locker-sim` program: run many seeds, or replay one.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use locker_sim::schedule::Schedule;
use locker_sim::{run, Faults, SimOptions};

// Nodes allocate and free small buffers (keys, values, messages) at every
// event; this allocator does that faster than the system's. Addresses never
// reach a run's outcome, so runs stay the same.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "locker-sim",
    about = "Deterministic simulator for locker clusters"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a range of seeds and check every one.
    Run {
        /// Seeds as A..B (B exclusive).
        #[arg(long, default_value = "0..100")]
        seeds: String,
        #[command(flatten)]
        opts: SimArgs,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replay one seed.
    Replay {
        /// The seed.
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        opts: SimArgs,
        /// Print every event.
        #[arg(long)]
        trace: bool,
        /// If the run fails, drop fault events one at a time while a checker
        /// that fired still fires, and print the command that replays the
        /// smaller schedule.
        #[arg(long)]
        shrink: bool,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Clone)]
struct SimArgs {
    #[arg(long, default_value_t = 5)]
    masters: usize,
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Write quorum (below a majority needs --unsafe).
    #[arg(long)]
    w: Option<usize>,
    #[arg(long = "unsafe")]
    unsafe_quorum: bool,
    /// all, none, or a comma list of loss,dup,reorder,delay,partition,crash,pause,skew.
    #[arg(long, default_value = "all")]
    faults: String,
    #[arg(long, default_value_t = 0.001)]
    max_drift: f64,
    /// Actual clock-rate bound (may exceed --max-drift).
    #[arg(long)]
    drift: Option<f64>,
    /// Fault-phase length in simulated seconds.
    #[arg(long, default_value_t = 20.0)]
    sim_secs: f64,
    /// Operations started per simulated second, over all clients (open loop).
    #[arg(long, default_value_t = 300.0)]
    ops_per_sec: f64,
    /// Operations each client may have outstanding at once (on distinct keys).
    #[arg(long, default_value_t = 8)]
    pipeline: usize,
    /// Membership changes during the fault phase: set_w between majority values.
    #[arg(long)]
    admin: bool,
    /// Membership changes that also swap a master and a replica (set_nodes).
    #[arg(long)]
    admin_nodes: bool,
    /// An explicit fault schedule instead of the one drawn from the seed,
    /// in the text form of `locker_sim::schedule::Schedule` (as printed by a
    /// failing property test), e.g. `halves:5@1200+800,crash:1:0@3000+1500`.
    #[arg(long)]
    schedule: Option<String>,
    /// With --schedule: draw the seed's own schedule first anyway (and ignore
    /// it), so that the rest of the run is the seed's (as --shrink prints).
    #[arg(long)]
    after_draw: bool,
    /// The cluster's max_lease in milliseconds (quarantine scales with it).
    #[arg(long, default_value_t = 10_000)]
    max_lease_ms: u64,
    /// Drop the token ceiling on crashes.
    #[arg(long)]
    no_ceiling: bool,
    /// Restart crashed masters without quarantine.
    #[arg(long)]
    no_quarantine: bool,
}

impl SimArgs {
    fn options(&self) -> Result<SimOptions, String> {
        let faults = Faults::parse(&self.faults)?;
        let majority = self.masters / 2 + 1;
        if self.masters == 0 {
            return Err("--masters must be at least 1".into());
        }
        if let Some(w) = self.w {
            if w == 0 || w > self.masters || (w < majority && !self.unsafe_quorum) {
                return Err(format!(
                    "--w {w} needs 1..={} and --unsafe below {majority}",
                    self.masters
                ));
            }
        }
        if self.max_lease_ms == 0 {
            return Err("--max-lease-ms must be positive".into());
        }
        if !(0.0..0.1).contains(&self.max_drift) {
            return Err("--max-drift must be in [0, 0.1)".into());
        }
        if self.pipeline == 0 {
            return Err("--pipeline must be at least 1".into());
        }
        let schedule = match &self.schedule {
            Some(s) => Some(s.parse::<Schedule>()?),
            None => None,
        };
        Ok(SimOptions {
            masters: self.masters,
            replicas: self.replicas,
            clients: self.clients,
            w: self.w,
            unsafe_quorum: self.unsafe_quorum,
            faults,
            max_drift: self.max_drift,
            drift: self.drift,
            sim_secs: self.sim_secs,
            ops_per_sec: self.ops_per_sec,
            pipeline: self.pipeline,
            admin: self.admin,
            admin_nodes: self.admin_nodes,
            after_draw: self.after_draw,
            schedule,
            max_lease_ms: self.max_lease_ms,
            persist_ceiling: !self.no_ceiling,
            quarantine: !self.no_quarantine,
            ..SimOptions::default()
        })
    }
}

#[derive(Default, serde::Serialize)]
struct Summary {
    seeds: u64,
    failed_seeds: Vec<u64>,
    violations: BTreeMap<String, u64>,
    operations: BTreeMap<String, u64>,
    sim_seconds: f64,
    /// Workload operations started per simulated second of fault phase.
    ops_per_sim_second: f64,
    /// Arrivals dropped because their client had no idle slot.
    dropped_arrivals: u64,
    /// Keys the linearizability checker searched, and those it gave up on.
    linearizability_keys: u64,
    linearizability_undecided: u64,
    #[serde(skip)]
    fault_phase_ops: u64,
    #[serde(skip)]
    fault_phase_seconds: f64,
    wall_seconds: f64,
    events: u64,
    events_per_second: f64,
    cluster_seconds_per_wall_second: f64,
}

fn add(summary: &mut Summary, r: &locker_sim::RunResult) {
    summary.seeds += 1;
    summary.events += r.events;
    summary.sim_seconds += r.sim_micros as f64 / 1e6;
    summary.fault_phase_ops += r.fault_phase_ops() as u64;
    summary.fault_phase_seconds += r.fault_phase_micros as f64 / 1e6;
    summary.dropped_arrivals += r.dropped;
    summary.linearizability_keys += r.report.lin_keys as u64;
    summary.linearizability_undecided += r.report.lin_undecided as u64;
    for (name, v) in &r.report.violations {
        *summary.violations.entry(name.to_string()).or_default() += v.len() as u64;
    }
    if !r.report.ok() {
        summary.failed_seeds.push(r.seed);
    }
    for op in &r.ops {
        let outcome = match &op.ret {
            None => "no_answer",
            Some((_, Ok(_))) => "ok",
            Some((_, Err(e))) => e.code(),
        };
        *summary
            .operations
            .entry(format!("{}:{outcome}", op.kind.name()))
            .or_default() += 1;
    }
}

fn print(summary: &mut Summary, wall: f64, json: bool, flags: &str) {
    summary.wall_seconds = wall;
    summary.failed_seeds.sort();
    summary.events_per_second = summary.events as f64 / wall.max(1e-9);
    summary.cluster_seconds_per_wall_second = summary.sim_seconds / wall.max(1e-9);
    summary.ops_per_sim_second =
        summary.fault_phase_ops as f64 / summary.fault_phase_seconds.max(1e-9);
    if json {
        println!("{}", serde_json::to_string(summary).expect("serializable"));
    } else {
        println!(
            "seeds: {}  failed: {}",
            summary.seeds,
            summary.failed_seeds.len()
        );
        println!("violations: {:?}", summary.violations);
        println!(
            "linearizability: {} keys searched, {} undecided (search budget exhausted)",
            summary.linearizability_keys, summary.linearizability_undecided
        );
        println!("operations: {:?}", summary.operations);
        println!(
            "workload: {:.1} operations started per simulated second of fault phase, {} arrivals dropped (no idle slot)",
            summary.ops_per_sim_second, summary.dropped_arrivals
        );
        println!(
            "simulated: {:.1} s  wall: {:.2} s  events: {}  events/s: {:.0}  cluster-s per wall-s: {:.1}",
            summary.sim_seconds, wall, summary.events, summary.events_per_second, summary.cluster_seconds_per_wall_second
        );
    }
    for s in &summary.failed_seeds {
        eprintln!("locker-sim replay --seed {s} {flags}");
    }
}

fn parse_seeds(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or("--seeds must be A..B")?;
    let a: u64 = a.parse().map_err(|_| "bad seed range")?;
    let b: u64 = b.parse().map_err(|_| "bad seed range")?;
    if b < a {
        return Err("bad seed range".into());
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let started = Instant::now();
    match cli.cmd {
        Cmd::Replay {
            seed,
            opts,
            trace,
            shrink,
            json,
        } => {
            let o = match opts.options() {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let flags = o.flags();
            let r = run(seed, &o, trace);
            if trace {
                print!("{}", r.trace);
            }
            for (name, vs) in &r.report.violations {
                for v in vs {
                    eprintln!("{name}: {v}");
                }
            }
            let mut summary = Summary::default();
            add(&mut summary, &r);
            let ok = r.report.ok();
            if !trace || json {
                print(&mut summary, started.elapsed().as_secs_f64(), json, &flags);
            }
            if shrink && !ok {
                if let Some(small) = locker_sim::shrink(seed, &o) {
                    eprintln!(
                        "shrunk from {} to {} fault events: {}",
                        r.schedule.events.len(),
                        small.schedule.as_ref().map_or(0, |s| s.events.len()),
                        small.replay_command(seed)
                    );
                }
            }
            ExitCode::from(if ok { 0 } else { 1 })
        }
        Cmd::Run { seeds, opts, json } => {
            let (o, (a, b)) = match opts.options().and_then(|o| Ok((o, parse_seeds(&seeds)?))) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let next = AtomicU64::new(a);
            let done = AtomicUsize::new(0);
            let events = AtomicU64::new(0);
            let failures = AtomicUsize::new(0);
            let last_report = Mutex::new(Instant::now());
            let flags = o.flags();
            let results = Mutex::new(Vec::new());
            let threads = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let tty = std::io::stderr().is_terminal();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= b {
                            break;
                        }
                        let r = run(seed, &o, false);
                        let mut one = Summary::default();
                        add(&mut one, &r);
                        results.lock().expect("lock").push(one);
                        let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                        let ev = events.fetch_add(r.events, Ordering::Relaxed) + r.events;
                        let failed = if r.report.ok() {
                            failures.load(Ordering::Relaxed)
                        } else {
                            // Say at once, so that a long run is useful before it ends.
                            eprintln!(
                                "{}failed: locker-sim replay --seed {seed} {flags}",
                                if tty { "\r" } else { "" }
                            );
                            failures.fetch_add(1, Ordering::Relaxed) + 1
                        };
                        // Progress: on a terminal after every seed; otherwise
                        // (a log) a line every ten wall seconds and at the end.
                        // Wall time is only reported, never fed to a run.
                        let total = b - a;
                        let mut last = last_report.lock().expect("lock");
                        let wall = started.elapsed().as_secs_f64();
                        if tty || last.elapsed().as_secs_f64() >= 10.0 || d as u64 == total {
                            *last = Instant::now();
                            let line = format!(
                                "{d}/{total} seeds, {failed} failed, {wall:.0} s, {:.2} M events/s",
                                ev as f64 / wall.max(1e-9) / 1e6
                            );
                            if tty {
                                eprint!("\r{line}");
                            } else {
                                eprintln!("{line}");
                            }
                        }
                    });
                }
            });
            if tty {
                eprintln!();
            }
            let mut summary = Summary::default();
            for one in results.into_inner().expect("lock") {
                summary.seeds += one.seeds;
                summary.events += one.events;
                summary.sim_seconds += one.sim_seconds;
                summary.fault_phase_ops += one.fault_phase_ops;
                summary.fault_phase_seconds += one.fault_phase_seconds;
                summary.dropped_arrivals += one.dropped_arrivals;
                summary.linearizability_keys += one.linearizability_keys;
                summary.linearizability_undecided += one.linearizability_undecided;
                summary.failed_seeds.extend(one.failed_seeds);
                for (k, v) in one.violations {
                    *summary.violations.entry(k).or_default() += v;
                }
                for (k, v) in one.operations {
                    *summary.operations.entry(k).or_default() += v;
                }
            }
            let failed = !summary.failed_seeds.is_empty();
            print(&mut summary, started.elapsed().as_secs_f64(), json, &flags);
            ExitCode::from(if failed { 1 } else { 0 })
        }
    }
}
