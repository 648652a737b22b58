//! The idle poller: an opt-in thread at the lowest scheduling priority that
//! keeps the CPU busy while the process has had network activity in the last
//! few milliseconds, and sleeps otherwise.
//!
//! # Why
//!
//! On a virtual machine an idle vCPU halts, and waking it again (a message
//! arrives for a sleeping process) costs the host a reschedule: about 30 µs
//! per wake-up on the 2-vCPU machine of BENCHMARKS.md, against about 3 µs
//! when the vCPU was running something else. A lock+release cycle is ten
//! loopback hops in a row, each a wake-up, so at low concurrency most of a
//! cycle was spent waking vCPUs. A thread that spins at `SCHED_IDLE`
//! priority keeps its vCPU out of the halted state; any real work preempts
//! it at once (a `SCHED_IDLE` thread never delays a normal one, and the
//! scheduler counts a CPU running only such threads as idle when placing a
//! woken task). The Erlang VM does the same by default (its schedulers
//! busy-wait before sleeping).
//!
//! It also helps when the machine's CPUs are busy with other work: in
//! `locker bench` at 64 clients beside other processes' builds (load
//! average 8-12 on 2 vCPUs), the nodes and the load process got 0.8-1.0
//! CPU with the poller against 0.55 without, at the same CPU time per
//! cycle, while the spinners themselves ran less than 1 µs per cycle;
//! presumably a woken node thread finds its CPU running a spinner it
//! preempts at once more often than another process's normal thread, which
//! it does not always preempt.
//!
//! The price is CPU time: while the process is active the poller burns what
//! the machine has spare (it shows as the process's CPU usage, at the
//! lowest priority). After `window` without activity it sleeps, so an idle
//! node costs nothing; the first message after a quiet spell pays the full
//! wake-up again. Off by default: on bare metal, or when the machine's
//! CPUs have other work, it buys little.
//!
//! # One per process
//!
//! Keeping a CPU awake is not per node: every [`BusyPoll`] handle of a
//! process shares one thread, which runs while any handle lives and spins
//! with the longest window asked for. Activity is reported with [`touch`]
//! (the driver and the TCP client do it on every message), which costs one
//! relaxed atomic load while the poller is spinning.
//!
//! Linux only (`SCHED_IDLE`); elsewhere [`BusyPoll::start`] returns an
//! `Unsupported` error and nothing spins.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The window the `locker` program uses when `--busy-poll` has no value.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(5);

/// Activity was seen since the poller last looked.
const ACTIVE: u8 = 0;
/// The poller is spinning and has seen no activity since it last looked.
const QUIET: u8 = 1;
/// The poller is parked: the next [`touch`] must unpark it.
const ASLEEP: u8 = 2;

/// The process's activity flag, read by the poller, set by [`touch`].
/// Starts `ACTIVE`, so that without a poller every touch is one load.
static STATE: AtomicU8 = AtomicU8::new(ACTIVE);

/// The longest window any live handle asked for, in microseconds.
static WINDOW_US: AtomicU64 = AtomicU64::new(0);

/// The live handles and the running poller thread, if any.
static USERS: Mutex<Users> = Mutex::new(Users {
    count: 0,
    poller: None,
});

struct Users {
    count: usize,
    poller: Option<Poller>,
}

/// The running thread and its own stop flag (a new thread started while an
/// old one is still exiting gets a new flag).
struct Poller {
    thread: std::thread::Thread,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn users() -> std::sync::MutexGuard<'static, Users> {
    USERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reports activity (a message read or about to be sent): the poller keeps
/// spinning for another window, or wakes if it slept.
#[inline]
pub fn touch() {
    // While the flag is already set this is a load of a line the poller
    // writes once per check: no store on the hot path.
    if STATE.load(Ordering::Relaxed) != ACTIVE {
        touch_slow();
    }
}

#[cold]
fn touch_slow() {
    if STATE.swap(ACTIVE, Ordering::SeqCst) == ASLEEP {
        if let Some(p) = &users().poller {
            p.thread.unpark();
        }
    }
}

/// Keeps the process's idle poller running while it lives (see the
/// [module docs](self)). Dropping the last handle stops the thread.
#[derive(Debug)]
pub struct BusyPoll {
    _private: (),
}

impl BusyPoll {
    /// Starts the process's poller, or joins the running one; it spins while
    /// there was activity within the last `window` (the longest asked for
    /// by any live handle). Fails on systems other than Linux, where
    /// nothing spins.
    pub fn start(window: Duration) -> io::Result<BusyPoll> {
        if !cfg!(target_os = "linux") {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "busy polling needs Linux (SCHED_IDLE); running without it",
            ));
        }
        let window_us = (window.as_micros() as u64).max(1);
        let mut users = users();
        WINDOW_US.fetch_max(window_us, Ordering::Relaxed);
        if users.poller.is_none() {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = stop.clone();
            let handle = std::thread::Builder::new()
                .name("locker-busy-poll".into())
                .spawn(move || spin(&flag))?;
            users.poller = Some(Poller {
                thread: handle.thread().clone(),
                stop,
            });
        }
        users.count += 1;
        Ok(BusyPoll { _private: () })
    }
}

impl Drop for BusyPoll {
    fn drop(&mut self) {
        let mut users = users();
        users.count -= 1;
        if users.count == 0 {
            if let Some(p) = users.poller.take() {
                p.stop.store(true, Ordering::SeqCst);
                p.thread.unpark();
            }
            WINDOW_US.store(0, Ordering::Relaxed);
        }
    }
}

/// Spin iterations between two looks at the clock and the flag (a few
/// microseconds: `pause` takes tens of cycles).
const SPINS: u32 = 64;

/// The poller thread's body.
fn spin(stop: &std::sync::atomic::AtomicBool) {
    if let Err(e) = lowest_priority() {
        tracing::warn!(error = %e, "busy poll: could not lower the poller's priority; stopping it");
        return;
    }
    let mut last_active = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = std::time::Instant::now();
        let window = Duration::from_micros(WINDOW_US.load(Ordering::Relaxed));
        if STATE
            .compare_exchange(ACTIVE, QUIET, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            last_active = now;
        } else if now.duration_since(last_active) >= window
            && STATE
                .compare_exchange(QUIET, ASLEEP, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
        {
            // `touch` swaps the flag before unparking, and an unpark that
            // comes before the park makes it return at once: no wake-up
            // is lost.
            while STATE.load(Ordering::SeqCst) == ASLEEP && !stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            last_active = std::time::Instant::now();
            continue;
        }
        for _ in 0..SPINS {
            std::hint::spin_loop();
        }
    }
}

/// Moves the calling thread to `SCHED_IDLE`, or failing that to nice 19:
/// a spinner must never take CPU time a normal thread wants.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn lowest_priority() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, initialised `sched_param` that outlives
    // the call, which only reads it; pid 0 names the calling thread, and
    // SCHED_IDLE with priority 0 is a valid policy that an unprivileged
    // thread may always move to (it lowers its priority).
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return Ok(());
    }
    let idle = io::Error::last_os_error();
    // SAFETY: setpriority takes no pointers; on Linux PRIO_PROCESS with who
    // 0 applies to the calling thread only, and raising one's own nice
    // value needs no privilege.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) } == 0 {
        tracing::info!(error = %idle, "busy poll: SCHED_IDLE refused, running the poller at nice 19");
        return Ok(());
    }
    Err(io::Error::last_os_error())
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "busy polling needs Linux",
    ))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The poller starts, sleeps when nothing happens, wakes on a touch and
    /// stops with its last handle (no timing is asserted).
    #[test]
    fn starts_sleeps_wakes_and_stops() {
        let a = BusyPoll::start(Duration::from_millis(1)).unwrap();
        let b = BusyPoll::start(Duration::from_millis(2)).unwrap();
        assert_eq!(users().count, 2);
        let t = std::time::Instant::now();
        while STATE.load(Ordering::SeqCst) != ASLEEP {
            assert!(t.elapsed() < Duration::from_secs(30), "poller never slept");
            std::thread::sleep(Duration::from_millis(5));
        }
        touch();
        let t = std::time::Instant::now();
        while STATE.load(Ordering::SeqCst) != ASLEEP {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "poller never slept again"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(a);
        assert!(users().poller.is_some());
        drop(b);
        assert!(users().poller.is_none());
        assert_eq!(WINDOW_US.load(Ordering::Relaxed), 0);
    }
}
