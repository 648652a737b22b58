//! A connection's outgoing bytes: frames are encoded into one buffer and
//! written with a non-blocking write when the owner flushes (once per burst
//! of inputs, so many frames go out in one syscall). Whatever the socket does
//! not take at once is written by a small background task.

use event_listener::Event;
use futures_io::AsyncWrite;
use locker_core::envelope::Envelope;
use std::io::ErrorKind;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};

use crate::framing::FrameBatch;
use crate::runtime::Runtime;

/// Bytes buffered beyond which new frames are dropped (a stuck peer).
const MAX_BUFFERED: usize = 16 << 20;

type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

struct State {
    writer: BoxedWriter,
    batch: FrameBatch,
    /// Bytes of `batch` already written.
    written: usize,
    /// The background task owns the next write.
    task_writing: bool,
    closed: bool,
}

impl State {
    /// Writes until the batch is out, the socket is full (`Pending`) or fails.
    fn write_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.written < self.batch.len() && !self.closed {
            let bytes = &self.batch.bytes()[self.written..];
            match Pin::new(&mut self.writer).poll_write(cx, bytes) {
                Poll::Ready(Ok(0)) => self.closed = true,
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) if e.kind() == ErrorKind::Interrupted => {}
                Poll::Ready(Err(_)) => self.closed = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        self.batch.clear();
        self.written = 0;
        Poll::Ready(())
    }
}

/// The outgoing side of one connection.
pub struct Outbox {
    state: Mutex<State>,
    /// Wakes the background writer.
    wake: Event,
    /// Wakes those waiting for the connection to close.
    closed: Event,
}

/// A waker that does nothing: the driver's flush tries the socket once and
/// hands a full socket to the background task, which polls with its own.
struct NoopWake;

impl Wake for NoopWake {
    fn wake(self: Arc<Self>) {}
}

fn noop_waker() -> &'static Waker {
    static WAKER: OnceLock<Waker> = OnceLock::new();
    WAKER.get_or_init(|| Waker::from(Arc::new(NoopWake)))
}

impl Outbox {
    /// Wraps a write half and starts its background writer on `runtime`.
    pub fn new<R: Runtime>(runtime: &R, writer: R::Writer) -> Arc<Outbox> {
        let outbox = Arc::new(Outbox {
            state: Mutex::new(State {
                writer: Box::new(writer),
                batch: FrameBatch::default(),
                written: 0,
                task_writing: false,
                closed: false,
            }),
            wake: Event::new(),
            closed: Event::new(),
        });
        runtime.spawn(outbox.clone().background_writer());
        outbox
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues one frame; returns false if it was dropped (closed or full).
    pub fn push(&self, env: &Envelope) -> bool {
        let mut st = self.state();
        if st.closed || st.batch.len() - st.written > MAX_BUFFERED {
            return false;
        }
        st.batch.push(env);
        true
    }

    /// Writes what is queued now, without waiting; leftovers go to the task.
    pub fn flush(&self) {
        let mut st = self.state();
        if st.task_writing || st.closed || st.batch.len() == st.written {
            return;
        }
        let mut cx = Context::from_waker(noop_waker());
        if st.write_out(&mut cx).is_pending() {
            st.task_writing = true;
            drop(st);
            self.wake.notify(1);
        } else if st.closed {
            drop(st);
            self.close();
        }
    }

    /// Queues and flushes one frame.
    pub fn send(&self, env: &Envelope) -> bool {
        let ok = self.push(env);
        self.flush();
        ok
    }

    /// Whether the connection failed or was closed.
    pub fn is_closed(&self) -> bool {
        self.state().closed
    }

    /// Marks the outbox closed (the reader saw the end).
    pub fn close(&self) {
        self.state().closed = true;
        self.closed.notify(usize::MAX);
        self.wake.notify(usize::MAX);
    }

    /// Resolves once the connection failed or was closed.
    pub async fn wait_closed(&self) {
        loop {
            let listener = self.closed.listen();
            if self.is_closed() {
                return;
            }
            listener.await;
        }
    }

    async fn background_writer(self: Arc<Self>) {
        loop {
            let listener = self.wake.listen();
            let (closed, handed_over) = {
                let st = self.state();
                (st.closed, st.task_writing)
            };
            if closed {
                // Shut the write side down so the other end sees the end of
                // the stream even while our read half lives on.
                futures_lite::future::poll_fn(|cx| {
                    Pin::new(&mut self.state().writer)
                        .poll_close(cx)
                        .map(|_| ())
                })
                .await;
                return;
            }
            if !handed_over {
                listener.await;
                continue;
            }
            futures_lite::future::poll_fn(|cx| {
                let mut st = self.state();
                let done = st.write_out(cx);
                if done.is_ready() {
                    // Under the same lock, so a flush racing with us either
                    // saw the task writing (and its frames went out above) or
                    // writes them itself.
                    st.task_writing = false;
                }
                done
            })
            .await;
            if self.is_closed() {
                self.close();
            }
        }
    }
}

/// Closes an outbox when dropped (a task that owns a connection ended or
/// was cancelled).
pub struct CloseOnDrop(pub Arc<Outbox>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
