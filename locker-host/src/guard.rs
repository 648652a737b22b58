//! The lease guard: holds a key, extends it ahead of its deadline, and tells
//! the application at every read what it can prove about the lease.
//!
//! Three parts share one tenure record: the [`LeaseGuard`] the holder owns,
//! any number of [`LeaseWatch`]es, and the keeper task that extends the
//! lease. The keeper records what it learns (a new deadline, a failed
//! extend, the end); every read evaluates that record against the runtime's
//! clock at the moment of reading. So no reader sees Held or Danger at or
//! past the deadline, even when the keeper has not run for a while (a
//! stopped process, a starved executor): what a reader gets is the worse of
//! what the keeper recorded and what the clock allows.

use event_listener::Event;
use futures_lite::future;
use locker_core::{OpError, Token};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::client::{Client, Held};
use crate::error::Error;
use crate::lease::{GuardOptions, LeaseState, Schedule};
use crate::runtime::{timeout_at, Runtime};
use crate::signal::WatchClosed;

/// Where the answer to an explicit release goes.
type ReleaseReply = async_channel::Sender<Result<(), Error>>;

/// A held lease that keeps itself alive.
///
/// Its state is computed when read: [`LeaseGuard::state`],
/// [`LeaseGuard::is_valid`] and every [`LeaseWatch`] compare the deadline
/// with the clock there and then. Danger comes once an extend has failed or
/// the deadline is within the danger margin ([`GuardOptions`]), early
/// enough to stop work before Lost; [`LeaseGuard::lost`] resolves at the
/// loss (at the deadline at the latest).
///
/// ```no_run
/// # async fn f<R: locker_host::Runtime>(client: locker_host::Client<R>) -> Result<(), locker_host::Error> {
/// use futures_lite::future;
/// use std::time::Duration;
/// let guard = client.lock_guard("leader", "me", Duration::from_secs(3)).await?;
/// // Start work only while the lease is valid, pass guard.token() to every
/// // resource written, and abandon a step the moment the lease is lost.
/// while guard.is_valid() {
///     let step = async { /* one step of work, fenced by guard.token() */ };
///     let finished = future::or(async { step.await; true }, async {
///         guard.lost().await;
///         false
///     })
///     .await;
///     if !finished {
///         break;
///     }
/// }
/// // Answers `Error::LeaseLost` if the lease was lost first.
/// guard.release().await
/// # }
/// ```
pub struct LeaseGuard {
    key: Vec<u8>,
    token: Token,
    view: LeaseWatch,
    /// Dropped (closed) to release in the background, or used to release
    /// and hear the answer.
    stop: Option<async_channel::Sender<ReleaseReply>>,
}

impl LeaseGuard {
    pub(crate) fn spawn<R: Runtime>(
        runtime: R,
        client: Client<R>,
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Duration,
        held: Held,
        options: GuardOptions,
    ) -> LeaseGuard {
        let shared = Arc::new(Shared {
            tenure: Mutex::new(Tenure {
                schedule: Schedule::new(lease, held.sent, held.validity, options),
                failing: false,
                ended: None,
            }),
            changed: Event::new(),
            clock: Arc::new(runtime.clone()),
        });
        let view = LeaseWatch::new(shared.clone());
        let (stop, stop_rx) = async_channel::bounded(1);
        let keeper = Keeper {
            runtime: runtime.clone(),
            client,
            key: key.clone(),
            value,
            token: held.token,
            shared,
        };
        runtime.spawn(keeper.run(stop_rx));
        LeaseGuard {
            key,
            token: held.token,
            view,
            stop: Some(stop),
        }
    }

    /// The key held.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The fencing token of this tenure.
    pub fn token(&self) -> Token {
        self.token
    }

    /// The current deadline: act as holder only before it.
    pub fn deadline(&self) -> Instant {
        self.view.deadline()
    }

    /// The state now, evaluated against the clock: never Held or Danger at
    /// or past the deadline.
    pub fn state(&self) -> LeaseState {
        self.view.state()
    }

    /// Whether the lease is provably held now: Held or Danger, before the
    /// deadline. Gate work on this (or on [`LeaseGuard::lost`]).
    pub fn is_valid(&self) -> bool {
        self.view.is_valid()
    }

    /// A watch on the state (Held, Danger, Lost, Released), for waiting on
    /// its changes.
    pub fn watch(&self) -> LeaseWatch {
        self.view.clone()
    }

    /// Resolves once the lease is lost or released, with that final state:
    /// at the deadline at the latest, whether or not an extend answered.
    /// Independent of the guard's lifetime, so usable in `select!` beside
    /// the work it guards.
    pub fn lost(&self) -> impl Future<Output = LeaseState> + Send + 'static {
        self.view.lost()
    }

    /// Stops extending and releases the key (with the token), waiting for
    /// the answer. [`Error::LeaseLost`] if the lease was lost before the
    /// release took effect.
    pub async fn release(mut self) -> Result<(), Error> {
        let stop = self.stop.take().ok_or(Error::Closed)?;
        if self.state() == LeaseState::Lost {
            return Err(Error::LeaseLost);
        }
        let (tx, rx) = async_channel::bounded(1);
        if stop.try_send(tx).is_err() {
            // The keeper already stopped: it saw the loss, or its runtime
            // is gone.
            return Err(self.gone());
        }
        match rx.recv().await {
            Ok(answer) => answer,
            Err(_) => Err(self.gone()),
        }
    }

    /// Why the keeper stopped without answering.
    fn gone(&self) -> Error {
        match self.state() {
            LeaseState::Lost => Error::LeaseLost,
            _ => Error::Closed,
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Closing the channel tells the keeper to release in the background.
        self.stop.take();
    }
}

impl fmt::Debug for LeaseGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseGuard")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("token", &self.token)
            .field("state", &self.state())
            .field("deadline", &self.deadline())
            .finish()
    }
}

/// A reader of a guard's state, evaluated against the clock at every read.
/// Clones see changes independently.
#[derive(Clone)]
pub struct LeaseWatch {
    shared: Arc<Shared>,
    /// The state last returned by [`LeaseWatch::get`] or noticed by
    /// [`LeaseWatch::changed`].
    seen: LeaseState,
}

impl LeaseWatch {
    fn new(shared: Arc<Shared>) -> LeaseWatch {
        let seen = shared.read().0;
        LeaseWatch { shared, seen }
    }

    /// The state now (and remembers it as seen, for [`LeaseWatch::changed`]).
    pub fn get(&mut self) -> LeaseState {
        self.seen = self.state();
        self.seen
    }

    /// The state now, without remembering it.
    pub fn state(&self) -> LeaseState {
        self.shared.read().0
    }

    /// Whether the lease is provably held now: Held or Danger, before the
    /// deadline.
    pub fn is_valid(&self) -> bool {
        matches!(self.state(), LeaseState::Held | LeaseState::Danger)
    }

    /// The current deadline.
    pub fn deadline(&self) -> Instant {
        self.shared.tenure().schedule.deadline
    }

    /// Waits until the state differs from the one last seen (by
    /// [`LeaseWatch::get`] or an earlier `changed`; for a new watch, the
    /// state when its guard was made), whether the keeper or the clock
    /// changed it. `Err` once the last state seen is final.
    pub async fn changed(&mut self) -> Result<(), WatchClosed> {
        loop {
            let notice = self.shared.changed.listen();
            let (state, next_change) = self.shared.read();
            if state != self.seen {
                self.seen = state;
                return Ok(());
            }
            if state.is_final() {
                return Err(WatchClosed);
            }
            match next_change {
                Some(at) => future::or(notice, self.shared.clock.sleep_until(at)).await,
                None => notice.await,
            }
        }
    }

    /// Resolves once the lease is lost or released, with that final state
    /// (see [`LeaseGuard::lost`]).
    pub fn lost(&self) -> impl Future<Output = LeaseState> + Send + 'static {
        let mut watch = self.clone();
        async move {
            loop {
                let state = watch.get();
                if state.is_final() {
                    return state;
                }
                // Only a final state ends the watch, and it is seen above.
                let _ = watch.changed().await;
            }
        }
    }
}

impl fmt::Debug for LeaseWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseWatch")
            .field("state", &self.state())
            .field("deadline", &self.deadline())
            .finish()
    }
}

/// The runtime's clock and timer without the runtime's type, so that a
/// guard and its watches are one type whatever the runtime.
trait Clock: Send + Sync {
    fn now(&self) -> Instant;
    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

impl<R: Runtime> Clock for R {
    fn now(&self) -> Instant {
        Runtime::now(self)
    }

    fn sleep_until(&self, at: Instant) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(Runtime::sleep_until(self, at))
    }
}

/// What the keeper has learnt about the lease.
struct Tenure {
    schedule: Schedule,
    /// The last extend failed.
    failing: bool,
    /// Lost or Released, once recorded.
    ended: Option<LeaseState>,
}

impl Tenure {
    /// The state at `now`: the recorded end, or what the schedule allows.
    fn state(&self, now: Instant) -> LeaseState {
        self.ended
            .unwrap_or_else(|| self.schedule.state(now, self.failing))
    }
}

/// The tenure, the notice of its changes and the clock it is read against,
/// shared by a guard, its watches and its keeper.
struct Shared {
    tenure: Mutex<Tenure>,
    changed: Event,
    clock: Arc<dyn Clock>,
}

impl Shared {
    fn tenure(&self) -> MutexGuard<'_, Tenure> {
        // Every update is a plain assignment: a panicked holder cannot have
        // left the record half-changed.
        self.tenure.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state now, and when it next changes by the clock alone.
    fn read(&self) -> (LeaseState, Option<Instant>) {
        let tenure = self.tenure();
        // The clock is read under the lock, so reads and updates are
        // ordered: once a reader has seen Lost, no update can undo it.
        let now = self.clock.now();
        let next_change = match tenure.ended {
            Some(_) => None,
            None => tenure.schedule.next_change(now, tenure.failing),
        };
        (tenure.state(now), next_change)
    }

    /// Applies `update` unless the lease already reads final now (a lease
    /// past its deadline stays Lost whatever answer comes late), wakes the
    /// watches, and returns the state after.
    fn update(&self, update: impl FnOnce(&mut Tenure)) -> LeaseState {
        let state = {
            let mut tenure = self.tenure();
            let now = self.clock.now();
            match tenure.state(now) {
                state if state.is_final() => {
                    tenure.ended = Some(state);
                    state
                }
                _ => {
                    update(&mut tenure);
                    tenure.state(now)
                }
            }
        };
        self.changed.notify(usize::MAX);
        state
    }
}

/// The guard's task: extends the lease on schedule, records the outcome,
/// releases on request.
struct Keeper<R: Runtime> {
    runtime: R,
    client: Client<R>,
    key: Vec<u8>,
    value: Vec<u8>,
    token: Token,
    shared: Arc<Shared>,
}

/// What woke the keeper.
enum Wake {
    /// The holder released (with a reply channel) or dropped the guard.
    Stop(Option<ReleaseReply>),
    /// The deadline passed with no extend due before it.
    Deadline,
    /// Time to extend.
    Extend,
}

/// How one extend attempt ended.
enum Attempt {
    /// The deadline moved.
    Extended,
    /// No answer or a refusal that may pass: retry.
    Failed,
    /// The lease is gone, for the reason given.
    Lost(&'static str),
}

impl<R: Runtime> Keeper<R> {
    async fn run(self, stop: async_channel::Receiver<ReleaseReply>) {
        let mut next = self.schedule().next_extend();
        loop {
            let deadline = self.schedule().deadline;
            let wake = future::or(async { Wake::Stop(stop.recv().await.ok()) }, async {
                if next >= deadline {
                    self.runtime.sleep_until(deadline).await;
                    Wake::Deadline
                } else {
                    self.runtime.sleep_until(next).await;
                    Wake::Extend
                }
            })
            .await;
            match wake {
                Wake::Stop(reply) => return self.release(reply).await,
                Wake::Deadline => return self.lost("the deadline passed while extends failed"),
                Wake::Extend => {}
            }
            match self.extend().await {
                Attempt::Extended => next = self.schedule().next_extend(),
                Attempt::Failed => {
                    next = self.schedule().retry_after_failure(self.runtime.now());
                }
                Attempt::Lost(why) => return self.lost(why),
            }
        }
    }

    fn schedule(&self) -> Schedule {
        self.shared.tenure().schedule
    }

    /// One extend, bounded so that its failure is known in time.
    async fn extend(&self) -> Attempt {
        let schedule = self.schedule();
        let now = self.runtime.now();
        if now >= schedule.deadline {
            // Woken late (a paused process): an extend now could still
            // reach masters that keep the entry, and hold the key for a
            // holder that already reads Lost.
            return Attempt::Lost("the deadline passed before the extend was sent");
        }
        let wait = schedule.attempt_wait(now);
        let attempt = self.client.extend_within(
            &self.key,
            &self.value,
            schedule.lease,
            Some(self.token),
            wait,
        );
        match timeout_at(&self.runtime, schedule.attempt_end(now), attempt).await {
            Some(Ok(held)) => {
                let state = self.shared.update(|t| {
                    t.schedule.extended(held.sent, held.validity);
                    t.failing = false;
                });
                match state {
                    LeaseState::Lost => {
                        Attempt::Lost("the deadline passed before the extend answered")
                    }
                    _ => Attempt::Extended,
                }
            }
            Some(Err(Error::Refused(OpError::NotOwner | OpError::NotFound))) => {
                Attempt::Lost("the entry is gone or held by someone else")
            }
            Some(Err(e)) => {
                warn!(key = %self.key_text(), error = %e, "extend failed");
                self.failed()
            }
            None => {
                warn!(key = %self.key_text(), ?wait, "extend not answered in time");
                self.failed()
            }
        }
    }

    fn failed(&self) -> Attempt {
        match self.shared.update(|t| t.failing = true) {
            LeaseState::Lost => Attempt::Lost("the deadline passed while extends failed"),
            _ => Attempt::Failed,
        }
    }

    /// Releases the key, unless the lease is already lost; answers the
    /// holder if it is waiting.
    async fn release(self, reply: Option<ReleaseReply>) {
        let answer = if self.shared.read().0 == LeaseState::Lost {
            self.lost("the deadline passed before the release");
            Err(Error::LeaseLost)
        } else {
            match self
                .client
                .release(&self.key, &self.value, Some(self.token))
                .await
            {
                Err(Error::Refused(OpError::NotOwner | OpError::NotFound)) => {
                    self.lost("the entry was gone or held by someone else at the release");
                    Err(Error::LeaseLost)
                }
                answer => match self.shared.update(|t| t.ended = Some(LeaseState::Released)) {
                    LeaseState::Lost => Err(Error::LeaseLost),
                    _ => answer,
                },
            }
        };
        if let Some(reply) = reply {
            let _ = reply.try_send(answer);
        }
    }

    fn lost(&self, why: &str) {
        info!(key = %self.key_text(), token = %self.token, why, "lease lost");
        self.shared.update(|t| t.ended = Some(LeaseState::Lost));
    }

    fn key_text(&self) -> String {
        String::from_utf8_lossy(&self.key).into_owned()
    }
}
