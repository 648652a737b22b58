//! Connection plumbing on any runtime: reading envelopes and the
//! authentication handshake on both sides.

use futures_io::{AsyncRead, AsyncWrite};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use locker_core::auth::{Acceptor, AuthError, Connector};
use locker_core::envelope::{Envelope, Who};
use locker_core::wire::WireError;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::framing::{FrameBatch, FrameReader};
use crate::runtime::{timeout_at, Runtime};

/// How long a handshake (and the connect before it) may take.
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

/// Reads envelopes from the read half of a connection.
pub struct Reader<S> {
    half: S,
    frames: FrameReader,
}

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Wraps a read half, refusing frames above `max_frame` bytes.
    pub fn new(half: S, max_frame: usize) -> Reader<S> {
        Reader {
            half,
            frames: FrameReader::new(max_frame),
        }
    }

    /// The next envelope already read from the socket, if a whole one is
    /// buffered: lets the caller handle a burst of frames at once.
    pub fn next_buffered(&mut self) -> Result<Option<Envelope>, ConnError> {
        Ok(self.frames.next_frame()?)
    }

    /// The next envelope; `Err(Closed)` at end of stream.
    pub async fn next(&mut self) -> Result<Envelope, ConnError> {
        loop {
            if let Some(env) = self.frames.next_frame()? {
                return Ok(env);
            }
            let n = self.half.read(self.frames.spare()).await?;
            if n == 0 {
                return Err(ConnError::Closed);
            }
            self.frames.filled(n);
        }
    }
}

/// Writes one envelope now (handshake steps).
async fn write_one(half: &mut (impl AsyncWrite + Unpin), env: &Envelope) -> Result<(), ConnError> {
    let mut batch = FrameBatch::default();
    batch.push(env);
    half.write_all(batch.bytes()).await?;
    half.flush().await?;
    Ok(())
}

fn nonce() -> [u8; 32] {
    rand::random()
}

/// A connection that passed its handshake.
pub type Authenticated<R> = (Reader<<R as Runtime>::Reader>, <R as Runtime>::Writer);

/// Connects to `addr` and authenticates as `who`.
pub async fn connect<R: Runtime>(
    runtime: &R,
    addr: SocketAddr,
    secret: &[u8],
    who: Who,
    max_frame: usize,
) -> Result<Authenticated<R>, ConnError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let handshake = async {
        let (r, mut w) = runtime.connect(addr).await?;
        let mut reader = Reader::new(r, max_frame);
        let mut connector = Connector::new(secret, nonce(), who);
        write_one(&mut w, &connector.hello()).await?;
        let proof = connector.on_challenge(&reader.next().await?)?;
        write_one(&mut w, &proof).await?;
        Connector::on_verdict(&reader.next().await?)?;
        Ok::<_, ConnError>((reader, w))
    };
    timeout_at(runtime, deadline, handshake)
        .await
        .unwrap_or(Err(ConnError::Timeout))
}

/// Authenticates an accepted connection; returns who it is.
pub async fn accept<R: Runtime>(
    runtime: &R,
    reader: R::Reader,
    mut writer: R::Writer,
    secret: &[u8],
    max_frame: usize,
) -> Result<(Who, Reader<R::Reader>, R::Writer), ConnError> {
    let mut reader = Reader::new(reader, max_frame);
    let handshake = async {
        let (challenged, challenge) =
            Acceptor::new(secret, nonce()).on_hello(&reader.next().await?)?;
        write_one(&mut writer, &challenge).await?;
        match challenged.on_proof(&reader.next().await?) {
            Ok(who) => {
                write_one(&mut writer, &Envelope::Welcome).await?;
                Ok(who)
            }
            Err(e) => {
                let _ = write_one(&mut writer, &Envelope::AuthFailed).await;
                Err(ConnError::Auth(e))
            }
        }
    };
    let who = timeout_at(runtime, Instant::now() + HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(ConnError::Timeout))?;
    Ok((who, reader, writer))
}
