//! A running node: starts the driver task, the accept loop and the peer
//! links (kept in step with the membership, see `peers`) on the given runtime.

use locker_core::wire::DEFAULT_MAX_FRAME;
use locker_core::{Config, ConfigError, Node, NodeId, Time};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::busy_poll::BusyPoll;
use crate::client::Client;
use crate::counters::Counters;
use crate::driver::{Driver, Input, SharedDriver, INBOX};
use crate::link::LinkCommon;
use crate::peers::{Peers, StartLink};
use crate::persist;
use crate::runtime::Runtime;
use crate::server::Server;
use crate::signal::Shutdown;

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The core's configuration (id, members, quorum, timings).
    pub config: Config,
    /// Where other nodes listen: every member of `config` needs one. Nodes
    /// added later announce their own address when they connect. This
    /// node's own entry, if any, is the address it announces (by default
    /// the one it listens on).
    pub addrs: HashMap<NodeId, SocketAddr>,
    /// The cluster secret; `None` only on loopback.
    pub secret: Option<Vec<u8>>,
    /// Where to persist the token ceiling and the applied membership; `None`
    /// runs without those guarantees.
    pub data_dir: Option<PathBuf>,
    /// Start as a node that lost its memory (quarantine), as after a crash.
    pub restarted: bool,
    /// Largest accepted frame.
    pub max_frame: usize,
    /// Run the process's busy poller (see [`crate::busy_poll`]) with this
    /// window: a task that keeps the runtime's thread polling for I/O,
    /// yielding the CPU to other threads at every turn, while the node has
    /// had activity within the window, and sleeps otherwise. It trades CPU
    /// time for wake-up latency, which on virtual machines costs tens of
    /// microseconds per message. `None` (the default): off.
    pub busy_poll: Option<Duration>,
}

impl NodeOptions {
    /// Options with defaults: no secret, no data dir, fresh start.
    pub fn new(config: Config, addrs: HashMap<NodeId, SocketAddr>) -> NodeOptions {
        NodeOptions {
            config,
            addrs,
            secret: None,
            data_dir: None,
            restarted: false,
            max_frame: DEFAULT_MAX_FRAME,
            busy_poll: None,
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration breaks a rule; fix it.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// No secret and a non-loopback address: give `--secret-file` or listen on 127.0.0.1.
    #[error(
        "refusing to listen on {0} without a cluster secret: give a secret or listen on loopback"
    )]
    NoSecret(SocketAddr),
    /// A socket or the data directory failed.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A member has no address.
    #[error("no address for member {0}")]
    NoAddress(NodeId),
}

/// A running node. Dropping the handle stops it, as [`LocalNode::shutdown`] does.
pub struct LocalNode<R: Runtime> {
    runtime: R,
    id: NodeId,
    addr: SocketAddr,
    input: async_channel::Sender<Input>,
    shutdown: Shutdown,
    counters: Arc<Counters>,
    /// Keeps the process's idle poller running while the node lives.
    _busy_poll: Option<BusyPoll>,
}

impl<R: Runtime + Default> LocalNode<R> {
    /// Starts a node serving on `listener`, on the runtime's default handle.
    pub async fn start(
        listener: R::Listener,
        opts: NodeOptions,
    ) -> Result<LocalNode<R>, StartError> {
        Self::start_on(R::default(), listener, opts).await
    }
}

impl<R: Runtime> LocalNode<R> {
    /// Starts a node serving on `listener`, its tasks spawned on `runtime`.
    pub async fn start_on(
        runtime: R,
        listener: R::Listener,
        opts: NodeOptions,
    ) -> Result<LocalNode<R>, StartError> {
        let addr = R::local_addr(&listener)?;
        if opts.secret.is_none() && !addr.ip().is_loopback() {
            return Err(StartError::NoSecret(addr));
        }
        let config = opts.config.clone();
        let id = config.id;
        let (ceiling, membership) = match &opts.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                (persist::read_ceiling(dir), persist::read_membership(dir))
            }
            None => (None, None),
        };
        let node = if opts.restarted || ceiling.is_some() || membership.is_some() {
            Node::restarted_with(config.clone(), Time::ZERO, ceiling, membership.as_ref())?
        } else {
            Node::new(config.clone(), Time::ZERO)?
        };
        if opts.data_dir.is_none() {
            info!(node = %id, "no data dir: the token ceiling is not persisted, so fencing tokens stay monotonic across restarts only while a quorum of masters keeps its memory");
        }
        let secret: Arc<[u8]> = opts.secret.clone().unwrap_or_default().into();
        let shutdown = Shutdown::default();
        let counters = Arc::new(Counters::default());
        let (input, inbox) = async_channel::bounded(INBOX);

        if let Some(&peer) = config
            .masters
            .iter()
            .chain(&config.replicas)
            .find(|&&n| n != id && !opts.addrs.contains_key(&n))
        {
            return Err(StartError::NoAddress(peer));
        }
        let peers = Peers::new(
            LinkCommon {
                me: id,
                advertise: opts.addrs.get(&id).copied().unwrap_or(addr),
                secret: secret.clone(),
                counters: counters.clone(),
                max_frame: opts.max_frame,
            },
            opts.addrs.clone(),
            start_links(&runtime, &shutdown),
        );
        // Links follow the membership the node runs, which a persisted one
        // overrides: the driver takes it from the core.
        let mut driver = Driver::new(node, Instant::now(), counters.clone(), peers);
        driver.data_dir = opts.data_dir.clone();

        let driver = SharedDriver::new(driver);
        runtime.spawn(shutdown.guard(driver.clone().run(runtime.clone(), inbox)));
        runtime.spawn(shutdown.guard(driver.clone().run_writer()));
        let server = Server {
            runtime: runtime.clone(),
            me: id,
            secret,
            driver,
            counters: counters.clone(),
            max_frame: opts.max_frame,
            shutdown: shutdown.clone(),
        };
        runtime.spawn(shutdown.guard(server.run(listener)));
        let busy_poll = opts.busy_poll.and_then(|window| {
            let poller = BusyPoll::start(&runtime, window);
            if poller.is_none() {
                warn!(node = %id, "busy poll requested, but this runtime cannot poll its reactor on a yield");
            }
            poller
        });
        info!(node = %id, %addr, role = ?config.role(), busy_poll = ?opts.busy_poll, "node started");
        Ok(LocalNode {
            runtime,
            id,
            addr,
            input,
            shutdown,
            counters,
            _busy_poll: busy_poll,
        })
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A client that sends requests straight to this node's driver (no socket).
    pub fn client(&self) -> Client<R> {
        self.client_on(self.runtime.clone())
    }

    /// An embedded client whose own tasks (lease guards) run on another
    /// runtime: a tokio application can use a node running under smol.
    pub fn client_on<C: Runtime>(&self, runtime: C) -> Client<C> {
        Client::embedded(runtime, self.input.clone())
    }

    /// The adapter's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops every task of the node and closes its sockets (like a crash:
    /// nothing is handed over).
    pub fn shutdown(&self) {
        self.shutdown.raise();
    }
}

/// Spawns link tasks on `runtime`, each ending at the node's shutdown or
/// its own retirement.
fn start_links<R: Runtime>(runtime: &R, shutdown: &Shutdown) -> StartLink {
    let (runtime, shutdown) = (runtime.clone(), shutdown.clone());
    Box::new(move |link, retired| {
        let task = retired.guard(link.run(runtime.clone()));
        runtime.spawn(shutdown.guard(task));
    })
}

impl<R: Runtime> Drop for LocalNode<R> {
    fn drop(&mut self) {
        self.shutdown();
    }
}
