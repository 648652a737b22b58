//! The lease guard's scenarios: what a holder reads after a pause, and the
//! warning it gets before a loss.
//!
//! A pause is made with `Pausable`, a runtime whose tasks can all be
//! stopped and continued, as SIGSTOP and SIGCONT do to a process: the
//! holder's client and its guard's keeper run on it, the scenario reads the
//! guard from outside while nothing of the holder runs.

use locker_core::NodeId;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::cluster::{bounded, sleep, Cluster, Placement, SECRET};
use crate::{Client, Error, LeaseState, Runtime};

/// The lease of the scenarios' guards.
const LEASE: Duration = Duration::from_secs(2);

/// A runtime whose tasks can all be stopped and continued. A stopped task
/// is not polled at all (its timers fire and its sockets fill, but it runs
/// nothing) until continued. Clock, timers and sockets are `R`'s.
#[derive(Clone)]
struct Pausable<R> {
    inner: R,
    gate: Arc<Mutex<Gate>>,
}

#[derive(Default)]
struct Gate {
    paused: bool,
    /// The tasks that were due while paused.
    parked: Vec<Waker>,
}

impl<R: Runtime> Pausable<R> {
    fn new(inner: R) -> Pausable<R> {
        Pausable {
            inner,
            gate: Arc::default(),
        }
    }

    fn gate(&self) -> MutexGuard<'_, Gate> {
        self.gate
            .lock()
            .expect("the gate is never held across a panic")
    }

    /// Stops every task at its next poll.
    fn pause(&self) {
        self.gate().paused = true;
    }

    /// Continues the stopped tasks.
    fn resume(&self) {
        let parked = {
            let mut gate = self.gate();
            gate.paused = false;
            std::mem::take(&mut gate.parked)
        };
        parked.into_iter().for_each(Waker::wake);
    }
}

impl<R: Runtime> Runtime for Pausable<R> {
    type Listener = R::Listener;
    type Reader = R::Reader;
    type Writer = R::Writer;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let gate = self.gate.clone();
        let mut task = Box::pin(task);
        self.inner.spawn(std::future::poll_fn(move |cx| {
            {
                let mut gate = gate.lock().expect("the gate is never held across a panic");
                if gate.paused {
                    if !gate.parked.iter().any(|w| w.will_wake(cx.waker())) {
                        gate.parked.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
            task.as_mut().poll(cx)
        }));
    }

    fn now(&self) -> Instant {
        self.inner.now()
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        self.inner.sleep_until(at)
    }

    fn listen(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener> {
        self.inner.listen(listener)
    }

    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr> {
        R::local_addr(listener)
    }

    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer, SocketAddr)>> + Send {
        R::accept(listener)
    }

    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send {
        self.inner.connect(addr)
    }
}

/// A holder's guard is paused (its keeper and its connection stop running),
/// another client takes the key once the lease has expired, and the guard
/// is read before any of the holder's tasks has run again: Lost, not
/// valid, its `lost()` resolved; after it continues, it stays Lost and a
/// release answers `LeaseLost`.
pub async fn a_paused_guard_reads_lost_past_its_deadline_before_its_keeper_runs<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let holder_process = Pausable::new(runtime.clone());
        let holder = Client::connect_on(holder_process.clone(), c.addrs[&NodeId(1)], Some(SECRET))
            .await
            .expect("connect")
            .with_wait(Duration::from_millis(500));
        let guard = holder.lock_guard("k", "paused", LEASE).await.unwrap();
        let mut watch = guard.watch();
        assert!(guard.is_valid());
        holder_process.pause();

        let other = c
            .client(1)
            .with_wait(Duration::from_secs(10))
            .lock("k", "other", LEASE)
            .await
            .unwrap();
        assert!(other.token > guard.token(), "the key changed hands");
        assert!(
            runtime.now() >= guard.deadline(),
            "the key is taken only after the holder's deadline"
        );
        assert_eq!(
            guard.state(),
            LeaseState::Lost,
            "read past the deadline while the keeper has not run"
        );
        assert!(!guard.is_valid());
        assert_eq!(watch.get(), LeaseState::Lost);
        assert_eq!(
            bounded(&runtime, 1, guard.lost()).await,
            LeaseState::Lost,
            "lost() resolves without the keeper"
        );

        holder_process.resume();
        sleep(&runtime, Duration::from_millis(50)).await;
        assert_eq!(guard.state(), LeaseState::Lost, "Lost is final");
        assert!(matches!(guard.release().await, Err(Error::LeaseLost)));
    })
    .await
}

/// With two masters of three killed, the guard's extends fail: it reads
/// Danger well before its deadline (its watch sees the change too), then
/// Lost at the deadline, never Held again; `lost()` resolves and a release
/// answers `LeaseLost`.
pub async fn a_guard_reads_danger_well_before_lost_when_the_cluster_is_unreachable<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let mut c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let client = c.remote(0).await;
        let guard = client.lock_guard("k", "a", LEASE).await.unwrap();
        // One extend succeeds while the cluster is whole.
        let first_deadline = guard.deadline();
        while guard.deadline() == first_deadline {
            assert!(guard.is_valid(), "the guard extends a healthy lease");
            sleep(&runtime, Duration::from_millis(10)).await;
        }

        let mut watch = guard.watch();
        let watched = {
            let (tx, rx) = async_channel::bounded(1);
            runtime.spawn(async move {
                let mut changes = vec![watch.get()];
                while watch.changed().await.is_ok() {
                    changes.push(watch.get());
                }
                let _ = tx.send(changes).await;
            });
            rx
        };
        c.kill(1);
        c.kill(2);

        // Every read until the loss, with the instant after it.
        let mut reads = Vec::new();
        loop {
            let state = guard.state();
            reads.push((runtime.now(), state));
            if state == LeaseState::Lost {
                break;
            }
            sleep(&runtime, Duration::from_millis(5)).await;
        }
        let deadline = guard.deadline();
        // Half the default danger margin (a quarter of the validity).
        let half_the_margin = LEASE / 8;
        let first_danger = reads
            .iter()
            .find(|(_, s)| *s == LeaseState::Danger)
            .map(|(t, _)| *t)
            .expect("the guard read Danger before Lost");
        assert!(
            first_danger + half_the_margin <= deadline,
            "Danger came {:?} before the deadline, less than {half_the_margin:?}",
            deadline.saturating_duration_since(first_danger)
        );
        let mut distinct: Vec<LeaseState> = reads.iter().map(|(_, s)| *s).collect();
        distinct.dedup();
        assert_eq!(
            distinct,
            [LeaseState::Held, LeaseState::Danger, LeaseState::Lost],
            "never Held again once in Danger"
        );
        let (lost_read, _) = reads.last().expect("at least the Lost read");
        assert!(*lost_read >= deadline, "Lost only at the deadline");

        let mut changes = bounded(&runtime, 5, watched.recv())
            .await
            .expect("the watcher ended");
        changes.dedup();
        assert_eq!(
            changes,
            [LeaseState::Held, LeaseState::Danger, LeaseState::Lost],
            "the watch sees Danger before Lost"
        );
        assert_eq!(bounded(&runtime, 1, guard.lost()).await, LeaseState::Lost);
        assert!(matches!(guard.release().await, Err(Error::LeaseLost)));
    })
    .await
}

/// A guard whose lock's answer came after its validity had run out (the
/// holder's process was paused while the answer waited in its socket) is
/// never made: the caller hears `LeaseLost`, and the key is free again at
/// once, not held until its entry expires.
pub async fn a_guard_granted_too_late_is_refused_and_frees_the_key<R: Runtime>(
    runtime: R,
    place: Placement<R>,
) {
    bounded(&runtime.clone(), 30, async {
        let c = Cluster::start(runtime.clone(), place, 3, 0).await;
        let late_process = Pausable::new(runtime.clone());
        let late = Client::connect_on(late_process.clone(), c.addrs[&NodeId(1)], Some(SECRET))
            .await
            .expect("connect")
            .with_wait(Duration::from_secs(2));
        // The request goes out from this task; the answer is read by the
        // client's own reader, which does not run until the resume.
        late_process.pause();
        let asked = super::scenarios::spawn(&runtime, async move {
            late.lock_guard("k", "late", Duration::from_millis(100))
                .await
                .map(|g| g.state())
        });
        sleep(&runtime, Duration::from_millis(400)).await;
        late_process.resume();
        let r = asked.recv().await.expect("the lock_guard task ends");
        assert!(matches!(r, Err(Error::LeaseLost)), "{r:?}");
        let next = c
            .client(2)
            .with_wait(Duration::ZERO)
            .lock("k", "next", Duration::from_secs(1))
            .await;
        assert!(next.is_ok(), "the key was freed: {next:?}");
    })
    .await
}
