//! The lease guard: holds a key, extends it ahead of its deadline, reports
//! danger and loss, releases on drop.

use locker_core::{OpError, Token};
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::client::{Client, Held};
use crate::common::error::Error;
pub use crate::common::lease::LeaseState;
use crate::common::lease::Schedule;

/// A held lease that keeps itself alive.
///
/// ```no_run
/// # async fn f(client: locker_tokio::Client) -> Result<(), locker_tokio::Error> {
/// use locker_tokio::LeaseState;
/// use std::time::Duration;
/// let guard = client.lock_guard("leader", "me", Duration::from_secs(3)).await?;
/// let mut state = guard.watch();
/// // ... work while `*state.borrow() == LeaseState::Held`, passing guard.token() to resources ...
/// state.changed().await.ok();
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct LeaseGuard {
    key: Vec<u8>,
    token: Token,
    state: watch::Receiver<LeaseState>,
    deadline: watch::Receiver<Instant>,
    stop: Option<oneshot::Sender<oneshot::Sender<Result<(), Error>>>>,
}

impl LeaseGuard {
    pub(crate) fn spawn(
        client: Client,
        key: Vec<u8>,
        value: Vec<u8>,
        lease: Duration,
        held: Held,
    ) -> LeaseGuard {
        let (state_tx, state) = watch::channel(LeaseState::Held);
        let (deadline_tx, deadline) = watch::channel(held.deadline);
        let (stop, stop_rx) = oneshot::channel();
        let task = Keeper {
            client,
            key: key.clone(),
            value,
            token: held.token,
            schedule: Schedule::new(lease, held.sent, held.validity),
            state: state_tx,
            deadline: deadline_tx,
        };
        tokio::spawn(task.run(stop_rx));
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
        *self.deadline.borrow()
    }

    /// The current state.
    pub fn state(&self) -> LeaseState {
        *self.state.borrow()
    }

    /// A watch on the state: Held, Danger, Lost, Released.
    pub fn watch(&self) -> watch::Receiver<LeaseState> {
        self.state.clone()
    }

    /// Stops extending and releases the key (with the token), waiting for the answer.
    pub async fn release(mut self) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        if let Some(stop) = self.stop.take() {
            if stop.send(tx).is_err() {
                return Err(Error::Refused(OpError::NotFound));
            }
        }
        rx.await.unwrap_or(Err(Error::Closed))
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        // Dropping the sender tells the keeper to release in the background.
        self.stop.take();
    }
}

struct Keeper {
    client: Client,
    key: Vec<u8>,
    value: Vec<u8>,
    token: Token,
    schedule: Schedule,
    state: watch::Sender<LeaseState>,
    deadline: watch::Sender<Instant>,
}

impl Keeper {
    async fn run(mut self, mut stop: oneshot::Receiver<oneshot::Sender<Result<(), Error>>>) {
        let mut at = self.schedule.next_extend();
        let mut failed = false;
        loop {
            let lost_at = self.schedule.deadline;
            tokio::select! {
                s = &mut stop => {
                    let r = self.client.release(&self.key, &self.value, Some(self.token)).await;
                    self.state.send_replace(LeaseState::Released);
                    if let Ok(reply) = s {
                        let _ = reply.send(r);
                    }
                    return;
                }
                _ = tokio::time::sleep_until(lost_at.into()), if failed => {
                    self.lost("deadline passed while extends failed");
                    return;
                }
                _ = tokio::time::sleep_until(at.into()) => {}
            }
            let wait = self.schedule.extend_wait(Instant::now());
            let attempt = self.client.extend_within(
                &self.key,
                &self.value,
                self.schedule.lease,
                Some(self.token),
                wait,
            );
            let result = tokio::select! {
                r = attempt => Some(r),
                _ = tokio::time::sleep_until(lost_at.into()) => None,
            };
            let now = Instant::now();
            match result {
                Some(Ok(h)) => {
                    self.schedule.extended(h.sent, h.validity);
                    self.deadline.send_replace(self.schedule.deadline);
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
                None => {
                    failed = true;
                }
            }
            let st = self.schedule.state(Instant::now(), failed);
            if st == LeaseState::Lost {
                self.lost("deadline passed");
                return;
            }
            self.state.send_if_modified(|s| {
                let changed = *s != st;
                *s = st;
                changed
            });
        }
    }

    fn lost(&self, why: &str) {
        info!(key = %String::from_utf8_lossy(&self.key), token = %self.token, why, "lease lost");
        self.state.send_replace(LeaseState::Lost);
    }
}
