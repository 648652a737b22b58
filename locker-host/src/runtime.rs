//! What a runtime adapter supplies: spawning, the clock, timers and TCP. Everything
//! else in this crate is written once against this trait.

use futures_io::{AsyncRead, AsyncWrite};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

/// An async runtime, as far as a locker node needs one: it spawns tasks,
/// sleeps until an instant and speaks TCP.
///
/// Implementations are small (a unit struct or a spawner handle) and cheap to
/// clone; the driver clones one into every task it starts. Streams are
/// returned already split into a read half and a write half so that a
/// connection can be read by one task and written by another.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A bound TCP listener owned by this runtime's reactor.
    type Listener: Send + Sync + 'static;
    /// The reading half of a TCP connection.
    type Reader: AsyncRead + Unpin + Send + 'static;
    /// The writing half of a TCP connection.
    type Writer: AsyncWrite + Unpin + Send + 'static;

    /// Runs `task` in the background until it finishes.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// The clock the host reads: what a lease guard compares its deadline
    /// with, and what it counts a lease from. The default is the system's
    /// monotonic clock; a simulated runtime supplies its own (the instants
    /// it passes to [`Runtime::sleep_until`] are on the same clock).
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Resolves at `at` (at once if it has passed).
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static;

    /// A yield after which the runtime has run its other ready tasks and
    /// polled its reactor for I/O without blocking (tokio's `yield_now`
    /// does both), if it has one: the [`busy_poll`](crate::busy_poll)
    /// poller's step. `None`, the default: the poller does not run on this
    /// runtime (a plain yield would keep its executor too busy to poll the
    /// reactor, and slow every message down).
    fn yield_polling_io(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        None::<std::future::Ready<()>>
    }

    /// Adopts a bound standard listener (so callers can choose the address,
    /// reuse it after a restart, or learn the port before starting a node).
    fn listen(&self, listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// The address `listener` is bound to.
    fn local_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts one connection, with `TCP_NODELAY` set.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer, SocketAddr)>> + Send;

    /// Opens a connection to `addr`, with `TCP_NODELAY` set.
    fn connect(
        &self,
        addr: SocketAddr,
    ) -> impl Future<Output = io::Result<(Self::Reader, Self::Writer)>> + Send;
}

/// Runs `fut`, giving up at `deadline`: `None` if the deadline came first.
pub async fn timeout_at<R: Runtime, T>(
    runtime: &R,
    deadline: Instant,
    fut: impl Future<Output = T>,
) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        runtime.sleep_until(deadline).await;
        None
    })
    .await
}
