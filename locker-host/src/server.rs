//! The accept loop and the two kinds of accepted connection: a peer's
//! (messages into the driver) and a client's (requests in, replies out).
//! Any peer that proves the cluster secret is served, member or not: a node
//! about to be added announces itself so, and the core decides what a
//! non-member may do.
//! Each connection's task feeds what it reads to the driver itself, a burst
//! of frames under one lock (see [`crate::driver`]).

use locker_core::envelope::{Envelope, Who};
use locker_core::wire::WireError;
use locker_core::NodeId;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::conn::{self, ConnError, Reader};
use crate::counters::{bump, Counters};
use crate::driver::{Dirty, Input, ReplyTo, SharedDriver};
use crate::outbox::{CloseOnDrop, Outbox};
use crate::runtime::Runtime;
use crate::signal::Shutdown;

/// How long to wait after a failed accept (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// What every accepted connection needs.
pub(crate) struct Server<R: Runtime> {
    pub runtime: R,
    /// This node's id, which no peer may claim.
    pub me: NodeId,
    pub secret: Arc<[u8]>,
    pub driver: Arc<SharedDriver>,
    pub counters: Arc<Counters>,
    pub max_frame: usize,
    pub shutdown: Shutdown,
}

impl<R: Runtime> Server<R> {
    /// Accepts connections until the node shuts down.
    pub async fn run(self, listener: R::Listener) {
        let this = Arc::new(self);
        loop {
            let (reader, writer, remote) = match R::accept(&listener).await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    this.runtime
                        .sleep_until(Instant::now() + ACCEPT_RETRY)
                        .await;
                    continue;
                }
            };
            bump(&this.counters.accepted);
            let srv = this.clone();
            this.runtime.spawn(this.shutdown.guard(async move {
                if let Err(e) = srv.serve(reader, writer, remote).await {
                    match e {
                        ConnError::Closed => debug!(%remote, "connection closed"),
                        ConnError::Wire(ref w) => {
                            bump(&srv.counters.bad_frames);
                            warn!(%remote, error = %w, "closing connection: bad frame");
                        }
                        ConnError::Io(ref io) => debug!(%remote, error = %io, "connection error"),
                        _ => warn!(%remote, error = %e, "closing connection"),
                    }
                }
            }));
        }
    }

    async fn serve(
        &self,
        reader: R::Reader,
        writer: R::Writer,
        remote: SocketAddr,
    ) -> Result<(), ConnError> {
        let accepted = conn::accept(&self.runtime, reader, writer, &self.secret, self.max_frame);
        let (who, reader, writer) = match accepted.await {
            Ok(x) => x,
            Err(e) => {
                bump(&self.counters.auth_failures);
                if let ConnError::Wire(_) = e {
                    bump(&self.counters.bad_frames);
                }
                return match e {
                    ConnError::Auth(a) => Err(ConnError::Auth(a)),
                    other => {
                        warn!(error = %other, "handshake failed");
                        Err(ConnError::Closed)
                    }
                };
            }
        };
        match who {
            Who::Peer(from) => {
                if from == self.me {
                    bump(&self.counters.own_id_peers);
                    warn!(peer = %from, "closing connection: a peer claims this node's own id");
                    return Ok(());
                }
                // Held so the connection stays open while we read.
                let _keep_open = writer;
                let _counted = self.driver.peer_connection(from);
                self.serve_peer(from, remote, reader).await
            }
            Who::Client => {
                let outbox = Outbox::new(&self.runtime, writer);
                let _close = CloseOnDrop(outbox.clone());
                self.serve_client(reader, outbox).await
            }
        }
    }

    async fn serve_peer(
        &self,
        from: NodeId,
        remote: SocketAddr,
        reader: Reader<R::Reader>,
    ) -> Result<(), ConnError> {
        self.run_connection(reader, |env| match env {
            Envelope::Peer(msg) => Ok(Input::Peer { from, msg }),
            Envelope::PeerAddress(mut addr) => {
                if addr.ip().is_unspecified() {
                    addr.set_ip(remote.ip());
                }
                Ok(Input::PeerAddress { from, addr })
            }
            _ => Err(garbage("not a peer message")),
        })
        .await
    }

    async fn serve_client(
        &self,
        reader: Reader<R::Reader>,
        outbox: Arc<Outbox>,
    ) -> Result<(), ConnError> {
        self.run_connection(reader, |env| match env {
            Envelope::ClientRequest { .. } | Envelope::StatusRequest { .. } => {
                let reply = ReplyTo::Remote(outbox.clone());
                Ok(Input::Request { env, reply })
            }
            _ => Err(garbage("not a client request")),
        })
        .await
    }

    /// Reads bursts of envelopes and runs the core on them in place, until
    /// the connection ends or sends an envelope `input` refuses.
    async fn run_connection(
        &self,
        mut reader: Reader<R::Reader>,
        mut input: impl FnMut(Envelope) -> Result<Input, ConnError>,
    ) -> Result<(), ConnError> {
        let mut burst = Vec::new();
        let mut written = Dirty::default();
        loop {
            // What one read brought in, decoded before taking the lock.
            let ended = read_burst(&mut reader, &mut burst).await;
            let mut refused = None;
            self.driver.handle_read(&mut written, |driver| {
                for env in burst.drain(..) {
                    match input(env) {
                        Ok(i) => driver.handle(i),
                        Err(e) => {
                            refused = Some(e);
                            break;
                        }
                    }
                }
            });
            burst.clear();
            if let Some(e) = refused.or(ended) {
                return Err(e);
            }
        }
    }
}

/// Waits for the next envelope, then takes every whole one already buffered
/// behind it into `burst`. Returns why the connection ended, if it did: the
/// frames before the end are still in `burst` and must be handled.
async fn read_burst<S: futures_io::AsyncRead + Unpin>(
    reader: &mut Reader<S>,
    burst: &mut Vec<Envelope>,
) -> Option<ConnError> {
    match reader.next().await {
        Ok(env) => burst.push(env),
        Err(e) => return Some(e),
    }
    loop {
        match reader.next_buffered() {
            Ok(Some(env)) => burst.push(env),
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

fn garbage(why: &str) -> ConnError {
    ConnError::Wire(WireError::Garbage(why.into()))
}
