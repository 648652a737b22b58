//! The lease guard: holds a key, extends it ahead of its deadline, reports
//! danger and loss, releases on drop.

use futures_lite::future;
use locker_core::{OpError, Token};
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::client::{Client, Held};
use crate::error::Error;
use crate::lease::{LeaseState, Schedule};
use crate::runtime::Runtime;
use crate::signal::{watch, Watch, WatchSender};

/// Where the answer to an explicit release goes.
type ReleaseReply = async_channel::Sender<Result<(), Error>>;

/// A held lease that keeps itself alive.
///
/// ```no_run
/// # async fn f<R: locker_host::Runtime>(client: locker_host::Client<R>) -> Result<(), locker_host::Error> {
/// use locker_host::LeaseState;
/// use std::time::Duration;
/// let guard = client.lock_guard("leader", "me", Duration::from_secs(3)).await?;
/// let mut state = guard.watch();
/// // ... work while `state.get() == LeaseState::Held`, passing guard.token() to resources ...
/// state.changed().await.ok();
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct LeaseGuard {
    key: Vec<u8>,
    token: Token,
    state: Watch<LeaseState>,
    deadline: Watch<Instant>,
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
    ) -> LeaseGuard {
        let (state_tx, state) = watch(LeaseState::Held);
        let (deadline_tx, deadline) = watch(held.deadline);
        let (stop, stop_rx) = async_channel::bounded(1);
        let keeper = Keeper {
            runtime: runtime.clone(),
            client,
            key: key.clone(),
            value,
            token: held.token,
            schedule: Schedule::new(lease, held.sent, held.validity),
            state: state_tx,
            deadline: deadline_tx,
        };
        runtime.spawn(keeper.run(stop_rx));
        LeaseGuard {
            key,
            token: held.token,
            state,
            deadline,
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
        self.deadline.peek()
    }

    /// The current state.
    pub fn state(&self) -> LeaseState {
        self.state.peek()
    }

    /// A watch on the state: Held, Danger, Lost, Released.
    pub fn watch(&self) -> Watch<LeaseState> {
        self.state.clone()
    }

    /// Stops extending and releases the key (with the token), waiting for the answer.
    pub async fn release(mut self) -> Result<(), Error> {
        let (tx, rx) = async_channel::bounded(1);
        if let Some(stop) = self.stop.take() {
            if stop.try_send(tx).is_err() {
                // The keeper already stopped: the lease was lost.
                return Err(Error::Refused(OpError::NotFound));
            }
        }
        rx.recv().await.unwrap_or(Err(Error::Closed))
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Closing the channel tells the keeper to release in the background.
        self.stop.take();
    }
}

/// The guard's task.
struct Keeper<R: Runtime> {
    runtime: R,
    client: Client<R>,
    key: Vec<u8>,
    value: Vec<u8>,
    token: Token,
    schedule: Schedule,
    state: WatchSender<LeaseState>,
    deadline: WatchSender<Instant>,
}

/// What woke the keeper.
enum Wake {
    /// The holder released (with a reply channel) or dropped the guard.
    Stop(Option<ReleaseReply>),
    /// The deadline passed while extends were failing.
    Lost,
    /// Time to extend.
    Extend,
}

impl<R: Runtime> Keeper<R> {
    async fn run(mut self, stop: async_channel::Receiver<ReleaseReply>) {
        let mut at = self.schedule.next_extend();
        let mut failed = false;
        loop {
            let lost_at = self.schedule.deadline;
            let wake = future::or(async { Wake::Stop(stop.recv().await.ok()) }, async {
                if failed && lost_at <= at {
                    self.runtime.sleep_until(lost_at).await;
                    Wake::Lost
                } else {
                    self.runtime.sleep_until(at).await;
                    Wake::Extend
                }
            })
            .await;
            match wake {
                Wake::Stop(reply) => {
                    let r = self
                        .client
                        .release(&self.key, &self.value, Some(self.token))
                        .await;
                    self.state.set(LeaseState::Released);
                    if let Some(reply) = reply {
                        let _ = reply.try_send(r);
                    }
                    return;
                }
                Wake::Lost => {
                    self.lost("deadline passed while extends failed");
                    return;
                }
                Wake::Extend => {}
            }
            let wait = self.schedule.extend_wait(Instant::now());
            let attempt = self.client.extend_within(
                &self.key,
                &self.value,
                self.schedule.lease,
                Some(self.token),
                wait,
            );
            let result = crate::runtime::timeout_at(&self.runtime, lost_at, attempt).await;
            let now = Instant::now();
            match result {
                Some(Ok(h)) => {
                    self.schedule.extended(h.sent, h.validity);
                    self.deadline.set(self.schedule.deadline);
                    failed = false;
                    at = self.schedule.next_extend();
                }
                Some(Err(Error::Refused(OpError::NotOwner | OpError::NotFound))) => {
                    self.lost("the entry is gone or held by someone else");
                    return;
                }
                Some(Err(e)) => {
                    warn!(key = %String::from_utf8_lossy(&self.key), error = %e, "extend failed");
                    failed = true;
                    at = self.schedule.retry_after_failure(now);
                }
                None => failed = true,
            }
            let st = self.schedule.state(Instant::now(), failed);
            if st == LeaseState::Lost {
                self.lost("deadline passed");
                return;
            }
            self.state.set(st);
        }
    }

    fn lost(&self, why: &str) {
        info!(key = %String::from_utf8_lossy(&self.key), token = %self.token, why, "lease lost");
        self.state.set(LeaseState::Lost);
    }
}
