//! Runtime-agnostic signals between tasks: a shutdown flag every task of a
//! node waits on, and a watched value with one writer and many readers.

use event_listener::Event;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A flag raised once; every waiter wakes.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<ShutdownInner>);

#[derive(Default)]
struct ShutdownInner {
    raised: AtomicBool,
    event: Event,
}

impl Shutdown {
    /// Raises the flag and wakes every waiter.
    pub fn raise(&self) {
        self.0.raised.store(true, Ordering::SeqCst);
        self.0.event.notify(usize::MAX);
    }

    /// Whether the flag is raised.
    pub fn is_raised(&self) -> bool {
        self.0.raised.load(Ordering::SeqCst)
    }

    /// Resolves once the flag is raised.
    pub async fn wait(&self) {
        loop {
            if self.is_raised() {
                return;
            }
            let listener = self.0.event.listen();
            // Raised between the check and the registration: do not sleep.
            if self.is_raised() {
                return;
            }
            listener.await;
        }
    }

    /// Runs `fut` until it ends or the flag is raised.
    pub fn guard<F>(&self, fut: F) -> impl Future<Output = ()> + Send + 'static
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let this = self.clone();
        async move { futures_lite::future::or(async move { this.wait().await }, fut).await }
    }
}

struct Slot<T> {
    value: T,
    version: u64,
    closed: bool,
}

struct Shared<T> {
    slot: Mutex<Slot<T>>,
    event: Event,
}

/// Creates a watched value: one writer, any number of readers.
pub fn watch<T: Copy>(value: T) -> (WatchSender<T>, Watch<T>) {
    let shared = Arc::new(Shared {
        slot: Mutex::new(Slot {
            value,
            version: 0,
            closed: false,
        }),
        event: Event::new(),
    });
    (WatchSender(shared.clone()), Watch { shared, seen: 0 })
}

/// The writing end of a watched value; dropping it closes the watch.
pub struct WatchSender<T>(Arc<Shared<T>>);

impl<T: Copy + PartialEq> WatchSender<T> {
    /// Sets the value and wakes the readers if it changed.
    pub fn set(&self, value: T) {
        let mut slot = self.0.slot.lock().unwrap_or_else(|e| e.into_inner());
        if slot.value != value {
            slot.value = value;
            slot.version += 1;
            drop(slot);
            self.0.event.notify(usize::MAX);
        }
    }
}

impl<T> Drop for WatchSender<T> {
    fn drop(&mut self) {
        self.0.slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.0.event.notify(usize::MAX);
    }
}

/// A reader of a watched value. Clones see changes independently.
pub struct Watch<T> {
    shared: Arc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for Watch<T> {
    fn clone(&self) -> Self {
        Watch {
            shared: self.shared.clone(),
            seen: self.seen,
        }
    }
}

/// The writer is gone: the value will not change again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the watched value will not change again")]
pub struct WatchClosed;

impl<T: Copy> Watch<T> {
    /// The current value (marks it seen).
    pub fn get(&mut self) -> T {
        let slot = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
        self.seen = slot.version;
        slot.value
    }

    /// The current value, without marking it seen.
    pub fn peek(&self) -> T {
        self.shared
            .slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .value
    }

    /// Waits until the value changes after the last [`Watch::get`] or
    /// [`Watch::changed`]; `Err` once the writer is gone and nothing is new.
    pub async fn changed(&mut self) -> Result<(), WatchClosed> {
        loop {
            let listener = self.shared.event.listen();
            {
                let slot = self.shared.slot.lock().unwrap_or_else(|e| e.into_inner());
                if slot.version != self.seen {
                    self.seen = slot.version;
                    return Ok(());
                }
                if slot.closed {
                    return Err(WatchClosed);
                }
            }
            listener.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn a_watch_sees_each_change_and_then_the_close() {
        let (tx, mut rx) = watch(1u32);
        let mut other = rx.clone();
        assert_eq!(rx.get(), 1);
        tx.set(1);
        tx.set(2);
        block_on(rx.changed()).unwrap();
        assert_eq!(rx.get(), 2);
        assert_eq!(other.peek(), 2);
        block_on(other.changed()).unwrap();
        drop(tx);
        assert_eq!(block_on(rx.changed()), Err(WatchClosed));
        assert_eq!(rx.get(), 2);
    }

    #[test]
    fn shutdown_ends_guarded_tasks_and_later_waiters() {
        let shutdown = Shutdown::default();
        let guarded = shutdown.guard(std::future::pending());
        shutdown.raise();
        block_on(guarded);
        block_on(shutdown.wait());
        assert!(shutdown.is_raised());
    }
}
