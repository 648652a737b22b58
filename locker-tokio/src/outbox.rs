//! A connection's outgoing bytes: frames are encoded into one buffer and
//! written with a non-blocking write when the owner flushes (once per burst
//! of inputs, so many frames go out in one syscall). Whatever the socket does
//! not take at once is written by a small background task.

use locker_core::envelope::Envelope;
use std::io::ErrorKind;
use std::sync::{Arc, Mutex};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::common::framing::FrameBatch;

/// Bytes buffered beyond which new frames are dropped (a stuck peer).
const MAX_BUFFERED: usize = 16 << 20;

#[derive(Default)]
struct State {
    batch: FrameBatch,
    /// Bytes of `batch` already written.
    written: usize,
    /// The background task owns the next write.
    task_writing: bool,
    closed: bool,
}

/// The outgoing side of one connection.
pub struct Outbox {
    half: OwnedWriteHalf,
    state: Mutex<State>,
    wake: Notify,
    closed: Notify,
}

impl Outbox {
    /// Wraps a write half and starts its background writer.
    pub fn new(half: OwnedWriteHalf) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            half,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            closed: Notify::new(),
        });
        tokio::spawn(outbox.clone().writer());
        outbox
    }

    /// Queues one frame; returns false if it was dropped (closed or full).
    pub fn push(&self, env: &Envelope) -> bool {
        let mut st = self.state.lock().unwrap();
        if st.closed || st.batch.len() - st.written > MAX_BUFFERED {
            return false;
        }
        st.batch.push(env);
        true
    }

    /// Writes what is queued now, without waiting; leftovers go to the task.
    pub fn flush(&self) {
        let mut st = self.state.lock().unwrap();
        if st.task_writing || st.closed || st.batch.len() == st.written {
            return;
        }
        loop {
            match self.half.try_write(&st.batch.bytes()[st.written..]) {
                Ok(n) => {
                    st.written += n;
                    if st.written == st.batch.len() {
                        st.batch.clear();
                        st.written = 0;
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    st.task_writing = true;
                    self.wake.notify_one();
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    st.closed = true;
                    self.closed.notify_waiters();
                    self.wake.notify_one();
                    return;
                }
            }
        }
    }

    /// Queues and flushes one frame.
    pub fn send(&self, env: &Envelope) -> bool {
        let ok = self.push(env);
        self.flush();
        ok
    }

    /// Whether the connection failed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().unwrap().closed
    }

    /// Marks the outbox closed (the reader saw the end).
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.closed.notify_waiters();
        self.wake.notify_one();
    }

    /// Resolves once the connection failed or was closed.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.is_closed() {
                return;
            }
            notified.await;
        }
    }

    async fn writer(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                if self.state.lock().unwrap().closed {
                    return;
                }
                if self.half.writable().await.is_err() {
                    self.close();
                    return;
                }
                let mut st = self.state.lock().unwrap();
                if st.closed {
                    return;
                }
                if st.written == st.batch.len() {
                    st.batch.clear();
                    st.written = 0;
                    st.task_writing = false;
                    break;
                }
                match self.half.try_write(&st.batch.bytes()[st.written..]) {
                    Ok(n) => st.written += n,
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => {
                        st.closed = true;
                        self.closed.notify_waiters();
                        return;
                    }
                }
            }
        }
    }
}
