//! `locker hold`: takes a key with a lease guard, keeps it, and does "work"
//! only while the guard proves the lease, telling every step on stdout.
//!
//! A holder that other programs (and the real-process fault tests) can
//! watch from outside: every guard state change and every work step is one
//! JSON line with a wall-clock time, so the lines of several processes on
//! one machine fall on one time line.

use clap::Args;
use locker_tokio::{Client, Error, LeaseGuard, LeaseState};
use serde_json::{json, Value};
use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The arguments of `locker hold`.
#[derive(Args)]
pub struct HoldArgs {
    /// The key to hold.
    key: String,
    /// The value to hold it with (the holder's identity).
    value: String,
    /// The lease asked for at the lock and at every extend.
    #[arg(long)]
    lease_ms: u64,
    /// How long the first lock keeps retrying a held or unreachable key.
    #[arg(long, default_value_t = 3000)]
    wait_ms: u64,
    /// The time between two work steps.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    work_every_ms: u64,
}

/// Why the holder stops holding.
enum End {
    /// SIGTERM, SIGINT or the end of stdin: release, exit 0.
    Asked,
    /// The guard says the lease is gone (lost, or released by its keeper):
    /// exit 1.
    Lost,
}

/// Microseconds since the Unix epoch, now.
fn unix_us_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A reading of both clocks, to put `Instant`s on the wall clock.
#[derive(Clone, Copy)]
struct WallClock {
    now: Instant,
    /// The wall clock at `now`, in µs since the Unix epoch.
    wall_us: u64,
}

impl WallClock {
    /// Reads both clocks close together: a thread preempted between its
    /// two readings would shift every instant it converts by the time it
    /// lost, and its events would seem to move against another process's.
    fn read() -> WallClock {
        let mut best: Option<(u64, WallClock)> = None;
        for _ in 0..8 {
            let before = unix_us_now();
            let now = Instant::now();
            let after = unix_us_now();
            let spread = after.saturating_sub(before);
            let reading = WallClock {
                now,
                wall_us: before + spread / 2,
            };
            if best.is_none_or(|(s, _)| spread < s) {
                best = Some((spread, reading));
            }
            if spread <= 20 {
                break;
            }
        }
        best.map(|(_, r)| r).expect("at least one reading")
    }

    /// `at` in µs since the Unix epoch.
    fn unix_us(&self, at: Instant) -> u64 {
        if at >= self.now {
            self.wall_us
                .saturating_add((at - self.now).as_micros() as u64)
        } else {
            self.wall_us
                .saturating_sub((self.now - at).as_micros() as u64)
        }
    }
}

fn state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Held => "held",
        LeaseState::Danger => "danger",
        LeaseState::Lost => "lost",
        LeaseState::Released => "released",
    }
}

fn emit(line: Value) {
    // One line per event, flushed at once: a reader sees each event as it
    // happens, even through a pipe.
    println!("{line}");
}

/// The guard's line for `state`.
fn state_line(guard: &LeaseGuard, state: LeaseState) -> Value {
    let clock = WallClock::read();
    json!({"state": state_name(state), "token": guard.token().0,
           "deadline_unix_us": clock.unix_us(guard.deadline()), "at_unix_us": clock.unix_us(clock.now)})
}

/// Whether the guard proves the lease at `now`: it says so (`is_valid`
/// reads the clock itself), and `now`, when the step is taken, is before
/// its deadline too.
fn proves_lease(guard: &LeaseGuard, now: Instant) -> bool {
    guard.is_valid() && now < guard.deadline()
}

/// Sets the flag once stdin reaches its end (or fails): the holder's parent
/// closing the pipe, or dying, asks it to let go. A plain thread, since a
/// blocking read cannot be cancelled and must not hold up the exit.
fn watch_stdin() -> Arc<AtomicBool> {
    let closed = Arc::new(AtomicBool::new(false));
    let flag = closed.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        flag.store(true, Ordering::SeqCst);
    });
    closed
}

/// Resolves at SIGTERM or SIGINT.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

fn failure_line(e: &Error) -> (Value, ExitCode) {
    let (code, exit) = match e {
        Error::Refused(op) => (op.code(), 1),
        Error::Auth(_) => ("auth", 2),
        _ => ("connection", 2),
    };
    (
        json!({"state": "failed", "error": code, "message": e.to_string(), "at_unix_us": unix_us_now()}),
        ExitCode::from(exit),
    )
}

/// How long the lock (or the release) may take beyond its own wait before
/// the holder gives up on the node.
const CALL_SLACK: Duration = Duration::from_secs(5);

fn timed_out(what: &str) -> Error {
    Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("{what} did not end"),
    ))
}

/// Runs `locker hold` against the node at `node`.
pub async fn run(node: SocketAddr, secret: Option<Vec<u8>>, args: HoldArgs) -> ExitCode {
    let stdin_closed = watch_stdin();
    let wait = Duration::from_millis(args.wait_ms);
    let lease = Duration::from_millis(args.lease_ms);
    let locked = tokio::time::timeout(wait + CALL_SLACK, async {
        let client = Client::connect(node, secret.as_deref()).await?;
        client
            .with_wait(wait)
            .lock_guard(&args.key, &args.value, lease)
            .await
    })
    .await
    .unwrap_or_else(|_| Err(timed_out("the lock")));
    let guard = match locked {
        Ok(g) => g,
        Err(e) => {
            let (line, exit) = failure_line(&e);
            emit(line);
            return exit;
        }
    };
    let mut shown = LeaseState::Held;
    emit(state_line(&guard, shown));
    let mut watch = guard.watch();
    let mut steps = tokio::time::interval(Duration::from_millis(args.work_every_ms));
    steps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let terminated = termination();
    tokio::pin!(terminated);
    // The keeper gone (after Lost or Released), the watch answers at once.
    let mut watching = true;
    let end = loop {
        let asked = tokio::select! {
            _ = &mut terminated => true,
            _ = steps.tick() => false,
            changed = watch.changed(), if watching => {
                watching = changed.is_ok();
                false
            }
        };
        if asked || stdin_closed.load(Ordering::SeqCst) {
            break End::Asked;
        }
        let state = guard.state();
        if state != shown {
            shown = state;
            emit(state_line(&guard, state));
        }
        if matches!(state, LeaseState::Lost | LeaseState::Released) {
            break End::Lost;
        }
        let clock = WallClock::read();
        if proves_lease(&guard, clock.now) {
            // The step's time is the instant the lease was checked at, so
            // it lies before the deadline it was checked against.
            emit(json!({"work": true, "token": guard.token().0,
                        "deadline_unix_us": clock.unix_us(guard.deadline()),
                        "at_unix_us": clock.unix_us(clock.now)}));
        }
    };
    match end {
        End::Asked => {
            let token = guard.token().0;
            let result = tokio::time::timeout(wait + CALL_SLACK, guard.release())
                .await
                .unwrap_or_else(|_| Err(timed_out("the release")));
            let mut line =
                json!({"state": "released", "token": token, "at_unix_us": unix_us_now()});
            if let Err(e) = result {
                line["release_error"] = json!(e.to_string());
            }
            emit(line);
            ExitCode::SUCCESS
        }
        End::Lost => ExitCode::from(1),
    }
}
