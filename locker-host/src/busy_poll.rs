//! The busy poller: an opt-in task that keeps its runtime's thread polling
//! for I/O, instead of sleeping in the kernel, while the process has had
//! network activity in the last few milliseconds.
//!
//! # Why
//!
//! A lock+release cycle is ten loopback hops in a row between processes,
//! each a wake-up of a process that sleeps waiting for its socket. On a
//! virtual machine a wake-up that crosses vCPUs is expensive: on the 2-vCPU
//! machine of BENCHMARKS.md the whole bench runs about 2.7× faster at one
//! client pinned to one vCPU than spread over two, for no other reason.
//!
//! While active, the poller's task alternates two yields: to its runtime,
//! which then polls its reactor without blocking (tokio's scheduler does on
//! a yield), and to the kernel (`sched_yield`), which runs any other thread
//! waiting for this CPU. A message for a polling process is then found by
//! its next poll, with no wake-up at all; and since every polling process
//! gives its CPU away at once, processes sharing a CPU take turns in a few
//! microseconds instead of a scheduler time slice. At one client the bench
//! went from 3,500–4,800 to 11,800–14,400 cycles per second on two vCPUs
//! (BENCHMARKS.md).
//!
//! An earlier poller spun in a separate `SCHED_IDLE` thread to keep the
//! vCPU from halting. It helped on a loaded host, but on a quiet one it no
//! longer did: the woken thread still needed the kernel to preempt the
//! spinner, an interrupt to another vCPU.
//!
//! The price is CPU time: while the process is active its thread is always
//! busy, and the process shows 100 % of a CPU. Only other threads that
//! want a CPU get it at once; a batch job at the same priority gets turns
//! as often as the poller yields. After `window` without activity the task
//! sleeps until the next one, so an idle node costs nothing, and the first
//! message after a quiet spell pays the full wake-up again. Off by default.
//!
//! # One per process
//!
//! Activity is process-wide: every [`BusyPoll`] handle of a process shares
//! one poller task, started on the runtime of the first handle, which runs
//! while any handle lives and uses the longest window asked for. Activity is
//! reported with [`touch`] (the driver and the TCP client do it on every
//! message), which costs one relaxed atomic load while the poller is
//! active. A process with several runtime threads polls from one of them.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::runtime::Runtime;

/// The window the `locker` program uses when `--busy-poll` has no value.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(5);

/// Activity was seen since the poller last looked.
const ACTIVE: u8 = 0;
/// The poller is polling and has seen no activity since it last looked.
const QUIET: u8 = 1;
/// The poller sleeps: the next [`touch`] must wake it.
const ASLEEP: u8 = 2;

/// The process's activity flag, read by the poller, set by [`touch`].
/// Starts `ACTIVE`, so that without a poller every touch is one load.
static STATE: AtomicU8 = AtomicU8::new(ACTIVE);

/// The longest window any live handle asked for, in microseconds.
static WINDOW_US: AtomicU64 = AtomicU64::new(0);

/// The live handles and the running poller's stop flag, if any.
static USERS: Mutex<Users> = Mutex::new(Users {
    count: 0,
    stop: None,
});

/// The sleeping poller's waker.
static WAKER: Mutex<Option<Waker>> = Mutex::new(None);

struct Users {
    count: usize,
    /// The running poller's own stop flag (a poller started while an old
    /// one is still finishing gets a new flag).
    stop: Option<Arc<AtomicBool>>,
}

fn users() -> std::sync::MutexGuard<'static, Users> {
    USERS.lock().unwrap_or_else(|e| e.into_inner())
}

fn wake_poller() {
    if let Some(w) = WAKER.lock().unwrap_or_else(|e| e.into_inner()).take() {
        w.wake();
    }
}

/// Reports activity (a message read or about to be sent): the poller keeps
/// polling for another window, or wakes if it slept.
#[inline]
pub fn touch() {
    // While the flag is already set this is a load of a line the poller
    // writes once per look: no store on the hot path.
    if STATE.load(Ordering::Relaxed) != ACTIVE {
        touch_slow();
    }
}

#[cold]
fn touch_slow() {
    if STATE.swap(ACTIVE, Ordering::SeqCst) == ASLEEP {
        wake_poller();
    }
}

/// Keeps the process's busy poller running while it lives (see the
/// [module docs](self)). Dropping the last handle stops the poller.
///
/// ```no_run
/// # async fn example<R: locker_host::Runtime>(runtime: R) {
/// use locker_host::BusyPoll;
/// // `None` on a runtime that cannot poll its reactor on a yield.
/// let _poller = BusyPoll::start(&runtime, locker_host::busy_poll::DEFAULT_WINDOW);
/// // ... run nodes or clients on `runtime`; the poller stops with the handle.
/// # }
/// ```
#[derive(Debug)]
pub struct BusyPoll {
    _private: (),
}

impl BusyPoll {
    /// Starts the process's poller on `runtime`, or joins the running one;
    /// it polls while there was activity within the last `window` (the
    /// longest asked for by any live handle). `None` if `runtime` cannot
    /// poll its reactor on a yield ([`Runtime::yield_polling_io`]): smol's
    /// executor, for one, would then not see its I/O at all.
    pub fn start<R: Runtime>(runtime: &R, window: Duration) -> Option<BusyPoll> {
        // Asked only whether there is one; the poller makes its own.
        drop(runtime.yield_polling_io()?);
        let window_us = (window.as_micros() as u64).max(1);
        let mut users = users();
        WINDOW_US.fetch_max(window_us, Ordering::Relaxed);
        if users.stop.is_none() {
            let stop = Arc::new(AtomicBool::new(false));
            runtime.spawn(poll_loop(runtime.clone(), stop.clone()));
            users.stop = Some(stop);
        }
        users.count += 1;
        Some(BusyPoll { _private: () })
    }
}

impl Drop for BusyPoll {
    fn drop(&mut self) {
        let mut users = users();
        users.count -= 1;
        if users.count == 0 {
            if let Some(stop) = users.stop.take() {
                stop.store(true, Ordering::SeqCst);
                wake_poller();
            }
            WINDOW_US.store(0, Ordering::Relaxed);
        }
    }
}

/// The poller task's body.
async fn poll_loop<R: Runtime>(runtime: R, stop: Arc<AtomicBool>) {
    let mut last_active = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
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
            Asleep { stop: &stop }.await;
            last_active = Instant::now();
            continue;
        }
        match runtime.yield_polling_io() {
            Some(step) => step.await,
            None => return,
        }
        std::thread::yield_now();
    }
}

/// Resolves once a [`touch`] (or the last handle's drop) ends the sleep.
struct Asleep<'a> {
    stop: &'a AtomicBool,
}

impl Future for Asleep<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let done = || STATE.load(Ordering::SeqCst) != ASLEEP || self.stop.load(Ordering::SeqCst);
        if done() {
            return Poll::Ready(());
        }
        *WAKER.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        // `touch` swaps the flag before it takes the waker: a touch between
        // the first look and storing the waker is seen by this second one.
        if done() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The poller sleeps when nothing happens, wakes on a touch, and stops
    /// with its last handle (no timing is asserted). Driven by hand: a
    /// runtime would hide whether the task ever finished.
    #[test]
    fn sleeps_wakes_and_stops() {
        let stop = Arc::new(AtomicBool::new(false));
        WINDOW_US.store(1_000, Ordering::Relaxed);
        let mut task = Box::pin(poll_loop(Inline, stop.clone()));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let t = Instant::now();
        while STATE.load(Ordering::SeqCst) != ASLEEP {
            assert!(task.as_mut().poll(&mut cx).is_pending());
            assert!(t.elapsed() < Duration::from_secs(30), "never slept");
        }
        // Asleep, it stays pending without polling.
        assert!(task.as_mut().poll(&mut cx).is_pending());
        assert_eq!(STATE.load(Ordering::SeqCst), ASLEEP);
        touch();
        assert_ne!(STATE.load(Ordering::SeqCst), ASLEEP);
        let t = Instant::now();
        while STATE.load(Ordering::SeqCst) != ASLEEP {
            assert!(task.as_mut().poll(&mut cx).is_pending());
            assert!(t.elapsed() < Duration::from_secs(30), "never slept again");
        }
        stop.store(true, Ordering::SeqCst);
        assert!(task.as_mut().poll(&mut cx).is_ready());
        STATE.store(ACTIVE, Ordering::SeqCst);
    }

    /// A runtime whose yield is one `Pending` (the test polls the task).
    #[derive(Clone)]
    struct Inline;

    impl Runtime for Inline {
        type Listener = ();
        type Reader = futures_lite::io::Empty;
        type Writer = futures_lite::io::Sink;

        fn spawn(&self, _task: impl Future<Output = ()> + Send + 'static) {
            unreachable!("the test polls the task itself")
        }

        fn sleep_until(&self, _at: Instant) -> impl Future<Output = ()> + Send + 'static {
            std::future::pending()
        }

        fn yield_polling_io(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
            Some(futures_lite::future::yield_now())
        }

        fn listen(&self, _listener: std::net::TcpListener) -> std::io::Result<()> {
            unreachable!()
        }

        fn local_addr(_listener: &()) -> std::io::Result<std::net::SocketAddr> {
            unreachable!()
        }

        async fn accept(
            _listener: &(),
        ) -> std::io::Result<(Self::Reader, Self::Writer, std::net::SocketAddr)> {
            unreachable!()
        }

        async fn connect(
            &self,
            _addr: std::net::SocketAddr,
        ) -> std::io::Result<(Self::Reader, Self::Writer)> {
            unreachable!()
        }
    }
}
