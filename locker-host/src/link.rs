//! An outbound link to one peer: connect, authenticate, announce this
//! node's listen address, hand the connection to the driver, and reconnect
//! with jittered backoff when it breaks. [`crate::peers`] starts and retires
//! links.

use locker_core::envelope::{Envelope, Who};
use locker_core::NodeId;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::conn::{self, ConnError};
use crate::counters::{bump, Counters};
use crate::driver::Slot;
use crate::outbox::{CloseOnDrop, Outbox};
use crate::runtime::Runtime;

/// The first wait before reconnecting; it doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(20);
/// The longest wait between reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What every outbound link of a node shares.
#[derive(Clone)]
pub(crate) struct LinkCommon {
    pub me: NodeId,
    /// The address this node announces to every peer it links to.
    pub advertise: SocketAddr,
    pub secret: Arc<[u8]>,
    pub counters: Arc<Counters>,
    pub max_frame: usize,
}

/// One outbound link.
pub(crate) struct Link {
    pub common: LinkCommon,
    pub peer: NodeId,
    pub addr: SocketAddr,
    pub slot: Slot,
    pub up: Arc<AtomicBool>,
}

impl Link {
    /// Keeps the link up until it is cancelled (retired, or the node shut
    /// down); the connection closes with it.
    pub async fn run<R: Runtime>(self, runtime: R) {
        let LinkCommon {
            me,
            advertise,
            ref secret,
            ref counters,
            max_frame,
        } = self.common;
        let mut backoff = MIN_BACKOFF;
        let mut warned = false;
        loop {
            match conn::connect(&runtime, self.addr, secret, Who::Peer(me), max_frame).await {
                Ok((mut reader, writer)) => {
                    bump(&counters.peer_connects);
                    info!(from = %me, to = %self.peer, "peer link up");
                    backoff = MIN_BACKOFF;
                    warned = false;
                    let outbox = Outbox::new(&runtime, writer);
                    let _close = CloseOnDrop(outbox.clone());
                    // First, so the peer can link back to a node it was not
                    // started with.
                    outbox.send(&Envelope::PeerAddress(advertise));
                    *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(outbox.clone());
                    self.up.store(true, Ordering::Relaxed);
                    // Peers never write on this connection: a read ends it.
                    futures_lite::future::or(outbox.wait_closed(), async {
                        let _ = reader.next().await;
                    })
                    .await;
                    *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    self.up.store(false, Ordering::Relaxed);
                    info!(from = %me, to = %self.peer, "peer link down");
                }
                Err(e) => {
                    if matches!(e, ConnError::Auth(_)) {
                        bump(&counters.auth_failures);
                    }
                    if !warned {
                        warn!(from = %me, to = %self.peer, error = %e, "cannot reach peer; retrying");
                        warned = true;
                    }
                }
            }
            runtime
                .sleep_until(Instant::now() + jittered(backoff))
                .await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Between half and all of `backoff`, so links to a restarted node do not
/// reconnect in lockstep.
fn jittered(backoff: Duration) -> Duration {
    let jitter = rand::random::<u64>() % (backoff.as_millis() as u64 + 1);
    backoff / 2 + Duration::from_millis(jitter / 2)
}
