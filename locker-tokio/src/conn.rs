//! tokio-specific connection plumbing: handshakes, a batching writer, a reader.

use locker_core::auth::{Acceptor, AuthError, Connector};
use locker_core::envelope::{Envelope, Who};
use locker_core::wire::WireError;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::common::framing::{FrameBatch, FrameReader};

/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection ended or failed its handshake.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A bad frame.
    #[error("bad frame: {0}")]
    Wire(#[from] WireError),
    /// Authentication failed.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The other side closed.
    #[error("closed")]
    Closed,
    /// The handshake took too long.
    #[error("handshake timed out")]
    Timeout,
}

/// Reads envelopes from one half of a connection.
pub struct Reader {
    half: OwnedReadHalf,
    frames: FrameReader,
    chunk: Box<[u8]>,
}

impl Reader {
    /// Wraps a read half.
    pub fn new(half: OwnedReadHalf, max_frame: usize) -> Reader {
        Reader {
            half,
            frames: FrameReader::new(max_frame),
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    /// The next envelope; `Err(Closed)` at end of stream.
    pub async fn next(&mut self) -> Result<Envelope, ConnError> {
        loop {
            if let Some(env) = self.frames.next_frame()? {
                return Ok(env);
            }
            let n = self.half.read(&mut self.chunk).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.frames.push(&self.chunk[..n]);
        }
    }
}

/// Writes one envelope now (handshake steps).
pub async fn write_one(half: &mut OwnedWriteHalf, env: &Envelope) -> Result<(), ConnError> {
    let mut b = FrameBatch::default();
    b.push(env);
    half.write_all(b.bytes()).await?;
    Ok(())
}

fn nonce() -> [u8; 32] {
    rand::random()
}

/// Connects and authenticates as `who`.
pub async fn connect(
    addr: std::net::SocketAddr,
    secret: &[u8],
    who: Who,
    max_frame: usize,
) -> Result<(Reader, OwnedWriteHalf), ConnError> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnError::Timeout)??;
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut reader = Reader::new(r, max_frame);
    let fut = async {
        let mut c = Connector::new(secret, nonce(), who);
        write_one(&mut w, &c.hello()).await?;
        let proof = c.on_challenge(&reader.next().await?)?;
        write_one(&mut w, &proof).await?;
        Connector::on_verdict(&reader.next().await?)?;
        Ok::<_, ConnError>(())
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| ConnError::Timeout)??;
    Ok((reader, w))
}

/// Authenticates an accepted connection; returns who it is.
pub async fn accept(
    stream: TcpStream,
    secret: &[u8],
    max_frame: usize,
) -> Result<(Who, Reader, OwnedWriteHalf), ConnError> {
    stream.set_nodelay(true)?;
    let (r, mut w) = stream.into_split();
    let mut reader = Reader::new(r, max_frame);
    let fut = async {
        let (challenged, challenge) =
            Acceptor::new(secret, nonce()).on_hello(&reader.next().await?)?;
        write_one(&mut w, &challenge).await?;
        match challenged.on_proof(&reader.next().await?) {
            Ok(who) => {
                write_one(&mut w, &Envelope::Welcome).await?;
                Ok(who)
            }
            Err(e) => {
                let _ = write_one(&mut w, &Envelope::AuthFailed).await;
                Err(ConnError::Auth(e))
            }
        }
    };
    let who = tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| ConnError::Timeout)??;
    Ok((who, reader, w))
}
