//! Why a running node stopped on its own: the errors after which it must not
//! go on (storage failures, a panic in the core), and the signal that tells
//! the node's owner.
//!
//! A node whose persist failed has, in its memory, promises and tokens the
//! disk does not know about. Were it to keep answering, a crash a moment
//! later would bring it back without them, so the core's rule (a persist
//! completes before any later output) makes such an error fatal: the node
//! reveals nothing that depends on the failed write, stops every task and
//! closes its sockets, and its owner learns why. The same holds after a
//! panic while the core ran: its state may be half updated.

use event_listener::Event;
use std::sync::{Arc, Mutex};

use crate::persist::StateError;

/// Why a node stopped itself.
#[derive(Debug, thiserror::Error)]
pub enum FatalError {
    /// Persisting the token ceiling or the membership failed: restore the
    /// data directory (disk space, permissions, the device), then restart
    /// the node; it waits out its quarantine before voting.
    #[error("storage failure, the node stopped: {0}")]
    Storage(#[from] StateError),
    /// The protocol core panicked while handling an input; its state cannot
    /// be trusted. Restart the node (and report the panic: it is a bug).
    #[error("the node's core panicked, the node stopped")]
    Panicked,
}

/// Set once, by the first fatal error; any number of waiters.
#[derive(Clone, Default)]
pub(crate) struct Stopped(Arc<StoppedInner>);

#[derive(Default)]
struct StoppedInner {
    error: Mutex<Option<Arc<FatalError>>>,
    event: Event,
}

impl Stopped {
    /// Records `error` unless an earlier one was recorded; wakes the waiters.
    pub fn set(&self, error: FatalError) {
        let mut slot = self.0.error.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(Arc::new(error));
        }
        drop(slot);
        self.0.event.notify(usize::MAX);
    }

    /// The error, if the node stopped.
    pub fn get(&self) -> Option<Arc<FatalError>> {
        self.0
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Resolves with the error once the node stopped.
    pub async fn wait(&self) -> Arc<FatalError> {
        loop {
            if let Some(e) = self.get() {
                return e;
            }
            let listener = self.0.event.listen();
            if let Some(e) = self.get() {
                return e;
            }
            listener.await;
        }
    }
}
