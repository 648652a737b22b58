//! The [`Runtime`] for smol: async-io's reactor and timers, async-net's TCP,
//! and smol's global executor or a spawner of the caller's choosing.

use locker_host::Runtime;
use smol::net::{TcpListener, TcpStream};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

/// A task handed to a custom spawner.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

type Spawner = Arc<dyn Fn(Task) + Send + Sync>;

/// smol as a locker runtime. The default spawns on smol's global executor;
/// [`SmolRuntime::with_spawner`] hands tasks to another executor on the
/// same reactor, such as async-std's.
#[derive(Clone, Default)]
pub struct SmolRuntime {
    spawner: Option<Spawner>,
}

impl SmolRuntime {
    /// Spawns every task with `spawn` (for example
    /// `|task| { async_std::task::spawn(task); }`). Sockets and timers stay
    /// on async-io's reactor, which any executor can drive.
    pub fn with_spawner(spawn: impl Fn(Task) + Send + Sync + 'static) -> SmolRuntime {
        SmolRuntime {
            spawner: Some(Arc::new(spawn)),
        }
    }
}

impl fmt::Debug for SmolRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmolRuntime")
            .field("custom_spawner", &self.spawner.is_some())
            .finish()
    }
}

impl Runtime for SmolRuntime {
    type Listener = TcpListener;
    type Reader = TcpStream;
    type Writer = TcpStream;

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        match &self.spawner {
            Some(spawn) => spawn(Box::pin(task)),
            None => smol::spawn(task).detach(),
        }
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> + Send + 'static {
        let timer = smol::Timer::at(at);
        async move {
            timer.await;
        }
    }

    fn listen(&self, listener: std::net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::try_from(listener)
    }

    fn local_addr(listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, TcpStream, SocketAddr)> {
        let (stream, remote) = listener.accept().await?;
        stream.set_nodelay(true)?;
        // async-net streams are shared handles: one for reading, one for writing.
        Ok((stream.clone(), stream, remote))
    }

    async fn connect(&self, addr: SocketAddr) -> io::Result<(TcpStream, TcpStream)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok((stream.clone(), stream))
    }
}
