//! The [`Runtime`] for tokio: tokio's tasks, timers and TCP, its streams
//! seen through `tokio-util`'s futures-io compatibility layer.

use locker_host::Runtime;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt, TokioAsyncWriteCompatExt};

/// tokio as a locker runtime. Its methods must be called from within a tokio
/// runtime (they use the current one).
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioRuntime;

fn split(stream: TcpStream) -> io::Result<(Compat<OwnedReadHalf>, Compat<OwnedWriteHalf>)> {
    stream.set_nodelay(true)?;
    let (r, w) = stream.into_split();
    Ok((r.compat(), w.compat_write()))
}

impl Runtime for TokioRuntime {
    type Listener = TcpListener;
    type Reader = Compat<OwnedReadHalf>;
    type Writer = Compat<OwnedWriteHalf>;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(task);
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        tokio::time::sleep_until(at.into())
    }

    fn yield_polling_io(&self) -> Option<impl Future<Output = ()> + Send + 'static> {
        // Resumes only after the scheduler has polled its I/O driver.
        Some(tokio::task::yield_now())
    }

    fn listen(&self, listener: std::net::TcpListener) -> io::Result<TcpListener> {
        listener.set_nonblocking(true)?;
        TcpListener::from_std(listener)
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(
        listener: &TcpListener,
    ) -> io::Result<(Self::Reader, Self::Writer, SocketAddr)> {
        let (stream, remote) = listener.accept().await?;
        let (r, w) = split(stream)?;
        Ok((r, w, remote))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<(Self::Reader, Self::Writer)> {
        split(TcpStream::connect(addr).await?)
    }
}
