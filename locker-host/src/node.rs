//! A running node: starts the driver task, the accept loop and the peer
//! links (kept in step with the membership, see `peers`) on the given runtime.
//!
//! # How a node starts
//!
//! A master that lost its memory must not vote before every lease it could
//! have granted has expired, or a second holder could get a held key (and
//! the same token). A host cannot tell from the outside whether a node ever
//! voted, so the safe start is the default: [`StartMode::Restart`] starts
//! every master quarantined (for [`Config::quarantine`]), with or without a
//! data directory. Only [`StartMode::Bootstrap`], the explicit first start of
//! a brand-new cluster, votes at once, and it is refused on a data directory
//! that already holds this node's state. Unreadable or damaged state is a
//! start error ([`StartError::State`]), never "nothing persisted".

use locker_core::wire::DEFAULT_MAX_FRAME;
use locker_core::{Config, ConfigError, Node, NodeId, Time};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

use crate::fatal::{FatalError, Stopped};
use crate::persist::{DataDir, StateError};

use crate::busy_poll::BusyPoll;
use crate::client::Client;
use crate::counters::Counters;
use crate::driver::{Driver, Input, SharedDriver, INBOX};
use crate::link::LinkCommon;
use crate::peers::{Peers, StartLink};
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
    /// runs without those guarantees (fencing tokens then stay increasing
    /// across restarts only while a majority of the masters keeps its memory).
    pub data_dir: Option<PathBuf>,
    /// Whether this is the first start of a brand-new cluster
    /// ([`StartMode::Bootstrap`]) or any other start ([`StartMode::Restart`],
    /// the default: quarantined if a master).
    pub start: StartMode,
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
    /// Options with defaults: no secret, no data dir, and the safe start
    /// ([`StartMode::Restart`]: a master waits out its quarantine before it
    /// votes). Set [`NodeOptions::start`] to [`StartMode::Bootstrap`] for the
    /// first start of a new cluster.
    pub fn new(config: Config, addrs: HashMap<NodeId, SocketAddr>) -> NodeOptions {
        NodeOptions {
            config,
            addrs,
            secret: None,
            data_dir: None,
            start: StartMode::Restart,
            max_frame: DEFAULT_MAX_FRAME,
            busy_poll: None,
        }
    }
}

/// How a node starts.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum StartMode {
    /// Any start but the very first: the node may have voted before and
    /// forgotten it, so a master refuses to vote for
    /// [`Config::quarantine`] (every lease it could have granted expires
    /// meanwhile). It resumes the token ceiling and the membership from the
    /// data directory, if there is one. The default, and always safe.
    #[default]
    Restart,
    /// The first start of a node of a brand-new cluster: it never voted, so
    /// it votes at once. Refused on a data directory that holds this node's
    /// state. Choosing it for a node that did vote before (a restart whose
    /// data directory was lost, say) can give a second client a held key:
    /// it is the operator's promise that the cluster is new.
    Bootstrap,
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
    /// The data directory's state is unreadable or damaged, or cannot be
    /// written; the message names the file and what to do.
    #[error("data dir: {0}")]
    State(#[from] StateError),
    /// [`StartMode::Bootstrap`] on a data directory that holds this node's
    /// state: this node has run before, so it is a restart.
    #[error(
        "{0} holds this node's state, so this is not the first start of a new cluster: \
         start it without bootstrap (it waits out its quarantine before voting)"
    )]
    BootstrapOverState(PathBuf),
}

/// How often [`LocalNode::ready`] looks again.
const READY_POLL: Duration = Duration::from_millis(10);

/// A running node. Dropping the handle stops it, as [`LocalNode::shutdown`] does.
pub struct LocalNode<R: Runtime> {
    runtime: R,
    id: NodeId,
    addr: SocketAddr,
    input: async_channel::Sender<Input>,
    shutdown: Shutdown,
    stopped: Stopped,
    driver: Arc<SharedDriver>,
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
        config.validate()?;
        if let Some(&peer) = config
            .masters
            .iter()
            .chain(&config.replicas)
            .find(|&&n| n != id && !opts.addrs.contains_key(&n))
        {
            return Err(StartError::NoAddress(peer));
        }
        let (data_dir, persisted) = match &opts.data_dir {
            Some(dir) => {
                let dir = DataDir::open(dir, id)?;
                let persisted = dir.load()?;
                (Some(dir), persisted)
            }
            None => (None, None),
        };
        if let (StartMode::Bootstrap, Some(dir), Some(_)) = (opts.start, &data_dir, &persisted) {
            return Err(StartError::BootstrapOverState(dir.state_path()));
        }
        let state = persisted.unwrap_or_default();
        let node = match opts.start {
            StartMode::Bootstrap => Node::new(config.clone(), Time::ZERO)?,
            StartMode::Restart => Node::restarted_with(
                config.clone(),
                Time::ZERO,
                state.ceiling,
                state.membership.as_ref(),
            )?,
        };
        // Written at once: a directory that cannot take a write fails the
        // start, not a later persist, and a written directory tells every
        // later start that this node has run.
        let storage = match data_dir {
            Some(dir) => {
                dir.store(&state)?;
                Some((dir, state))
            }
            None => {
                info!(node = %id, "no data dir: the token ceiling is not persisted, so fencing tokens stay monotonic across restarts only while a majority of the masters keeps its memory");
                None
            }
        };
        if node.is_recovering(Time::ZERO) {
            info!(node = %id, quarantine = ?config.quarantine(), "quarantined: this master votes once every lease it could have granted before this start has expired");
        }
        let secret: Arc<[u8]> = opts.secret.clone().unwrap_or_default().into();
        let shutdown = Shutdown::default();
        let stopped = Stopped::default();
        let counters = Arc::new(Counters::default());
        let (input, inbox) = async_channel::bounded(INBOX);

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
        let mut driver = Driver::new(
            node,
            Instant::now(),
            counters.clone(),
            peers,
            shutdown.clone(),
            stopped.clone(),
        );
        driver.storage = storage;

        let driver = SharedDriver::new(driver);
        runtime.spawn(shutdown.guard(driver.clone().run(runtime.clone(), inbox)));
        runtime.spawn(shutdown.guard(driver.clone().run_writer()));
        let server = Server {
            runtime: runtime.clone(),
            me: id,
            secret,
            driver: driver.clone(),
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
            stopped,
            driver,
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
        Client::embedded(runtime, self.input.clone(), self.shutdown.clone())
    }

    /// Whether the node can serve a write now: it is not a quarantined
    /// master, and it reaches a quorum of masters over its peer links
    /// (itself included, if a master). A peer's own quarantine is not
    /// visible here: a cluster whose masters all restarted is ready for
    /// writes once each of them is. Link states and quarantines change without notice, so this
    /// is a snapshot; see [`LocalNode::ready`] to wait.
    pub fn is_ready(&self) -> bool {
        self.driver.is_ready()
    }

    /// Waits until [`LocalNode::is_ready`]: the peer links to a quorum of
    /// masters are up (and, for a master, its quarantine is over), or until
    /// the node stops. It waits for as long as that takes (a cluster whose
    /// majority is down is never ready), so bound it:
    ///
    /// ```no_run
    /// # async fn f<R: locker_host::Runtime>(node: &locker_host::LocalNode<R>, runtime: &R) {
    /// use std::time::{Duration, Instant};
    /// let deadline = Instant::now() + Duration::from_secs(10);
    /// if locker_host::runtime::timeout_at(runtime, deadline, node.ready()).await.is_none() {
    ///     eprintln!("no quorum within 10 s");
    /// }
    /// # }
    /// ```
    pub async fn ready(&self) {
        // Link states live in many tasks and quarantines end by the clock:
        // a short poll is simpler than an event from each, and costs nothing
        // once ready (the first look answers).
        while !self.is_ready() && !self.shutdown.is_raised() {
            self.runtime
                .sleep_until(self.runtime.now() + READY_POLL)
                .await;
        }
    }

    /// Why the node stopped itself, if it did (a failed persist, a panic in
    /// the core). A stopped node has closed its sockets and answers nothing.
    pub fn fatal_error(&self) -> Option<Arc<FatalError>> {
        self.stopped.get()
    }

    /// Resolves when the node stops itself after a fatal error, with the
    /// error; a program that runs a node should exit then (`locker serve`
    /// does, with the error).
    pub async fn stopped(&self) -> Arc<FatalError> {
        self.stopped.wait().await
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
