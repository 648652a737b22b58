//! A locker node under tokio: the driver task that owns the core, the
//! listener, and one outbound link per peer.

use locker_core::envelope::{Envelope, Status, Who};
use locker_core::wire::{WireError, DEFAULT_MAX_FRAME};
use locker_core::{Config, ConfigError, Node, NodeId, Output, RequestId, Time, Token};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::client::Client;
use crate::conn::{self, ConnError};
use crate::outbox::Outbox;

/// Queue bound of the driver's inbox.
const INBOX: usize = 16384;

/// Where a reply goes.
pub(crate) enum ReplyTo {
    /// An embedded client waiting on a oneshot.
    Local(oneshot::Sender<Envelope>),
    /// A client connection's outbox.
    Remote(Arc<Outbox>),
}

/// A peer link's current connection, if it is up.
type Slot = Arc<std::sync::Mutex<Option<Arc<Outbox>>>>;

/// Outboxes written to during the current burst of inputs.
#[derive(Default)]
struct Dirty(Vec<Arc<Outbox>>);

impl Dirty {
    fn push(&mut self, outbox: &Arc<Outbox>) {
        if !self.0.last().is_some_and(|o| Arc::ptr_eq(o, outbox)) {
            self.0.push(outbox.clone());
        }
    }
    fn flush(&mut self) {
        for o in self.0.drain(..) {
            o.flush();
        }
    }
}

impl ReplyTo {
    fn send(self, env: Envelope, counters: &Counters, dirty: &mut Dirty) {
        match self {
            ReplyTo::Local(tx) => {
                let _ = tx.send(env);
            }
            ReplyTo::Remote(outbox) => {
                if outbox.push(&env) {
                    dirty.push(&outbox);
                } else {
                    counters.replies_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// What the driver task receives.
pub(crate) enum Input {
    Peer {
        from: NodeId,
        msg: locker_core::Message,
    },
    Request {
        env: Envelope,
        reply: ReplyTo,
    },
}

/// The adapter's counters, shown by `locker status`.
#[derive(Default, Debug)]
pub struct Counters {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Handshakes that failed (wrong secret, garbage, timeout).
    pub auth_failures: AtomicU64,
    /// Connections closed for a malformed, oversized or wrong-version frame.
    pub bad_frames: AtomicU64,
    /// Connections from a node id that is not a member.
    pub unknown_peers: AtomicU64,
    /// Messages dropped because a peer link's queue was full.
    pub link_drops: AtomicU64,
    /// Replies dropped because a client did not read them.
    pub replies_dropped: AtomicU64,
    /// Outbound peer connections established.
    pub peer_connects: AtomicU64,
    /// Requests handled.
    pub requests: AtomicU64,
}

impl Counters {
    fn to_vec(&self) -> Vec<(String, u64)> {
        let c = |n: &str, v: &AtomicU64| (n.to_string(), v.load(Ordering::Relaxed));
        vec![
            c("accepted", &self.accepted),
            c("auth_failures", &self.auth_failures),
            c("bad_frames", &self.bad_frames),
            c("unknown_peers", &self.unknown_peers),
            c("link_drops", &self.link_drops),
            c("replies_dropped", &self.replies_dropped),
            c("peer_connects", &self.peer_connects),
            c("requests", &self.requests),
        ]
    }
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The core's configuration (id, members, quorum, timings).
    pub config: Config,
    /// Address of every other member.
    pub addrs: HashMap<NodeId, SocketAddr>,
    /// The cluster secret; `None` only on loopback.
    pub secret: Option<Vec<u8>>,
    /// Where to persist the token ceiling; `None` runs without that guarantee.
    pub data_dir: Option<PathBuf>,
    /// Start as a node that lost its memory (quarantine), as after a crash.
    pub restarted: bool,
    /// Largest accepted frame.
    pub max_frame: usize,
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

/// A running node. Dropping the handle does not stop it; call [`LocalNode::shutdown`].
pub struct LocalNode {
    id: NodeId,
    addr: SocketAddr,
    input: mpsc::Sender<Input>,
    shutdown: watch::Sender<bool>,
    counters: Arc<Counters>,
}

impl LocalNode {
    /// Starts a node serving on `listener`.
    pub async fn start(listener: TcpListener, opts: NodeOptions) -> Result<LocalNode, StartError> {
        let addr = listener.local_addr()?;
        if opts.secret.is_none() && !addr.ip().is_loopback() {
            return Err(StartError::NoSecret(addr));
        }
        let config = opts.config.clone();
        let id = config.id;
        let start = Instant::now();
        let ceiling = match &opts.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                read_ceiling(dir)
            }
            None => None,
        };
        let node = if opts.restarted || ceiling.is_some() {
            Node::restarted(config.clone(), Time::ZERO, ceiling)?
        } else {
            Node::new(config.clone(), Time::ZERO)?
        };
        if opts.data_dir.is_none() {
            info!(node = %id, "no data dir: the token ceiling is not persisted, so fencing tokens stay monotonic across restarts only while a quorum of masters keeps its memory");
        }
        let secret: Arc<[u8]> = opts.secret.clone().unwrap_or_default().into();
        let (shutdown, shut_rx) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let (input, inbox) = mpsc::channel(INBOX);

        let mut links = HashMap::new();
        let mut link_state = Vec::new();
        for peer in config.masters.iter().chain(&config.replicas).copied() {
            if peer == id {
                continue;
            }
            let peer_addr = *opts.addrs.get(&peer).ok_or(StartError::NoAddress(peer))?;
            let slot: Slot = Arc::default();
            let up = Arc::new(AtomicBool::new(false));
            links.insert(peer, slot.clone());
            link_state.push((peer, up.clone()));
            let link = Link {
                slot,
                me: id,
                peer,
                addr: peer_addr,
                secret: secret.clone(),
                up,
                counters: counters.clone(),
                max_frame: opts.max_frame,
            };
            spawn_until(shut_rx.clone(), link.run());
        }
        let mut known: Vec<NodeId> = opts.addrs.keys().copied().collect();
        known.extend(config.masters.iter().chain(&config.replicas));

        let driver = Driver {
            node,
            start,
            links,
            link_state,
            pending: HashMap::new(),
            dirty: Dirty::default(),
            next_request: 0,
            counters: counters.clone(),
            data_dir: opts.data_dir.clone(),
        };
        spawn_until(shut_rx.clone(), driver.run(inbox));
        let server = Server {
            known: Arc::new(known),
            secret,
            input: input.clone(),
            counters: counters.clone(),
            max_frame: opts.max_frame,
            shutdown: shut_rx.clone(),
        };
        spawn_until(shut_rx, server.run(listener));
        info!(node = %id, %addr, role = ?config.role(), "node started");
        Ok(LocalNode {
            id,
            addr,
            input,
            shutdown,
            counters,
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
    pub fn client(&self) -> Client {
        Client::embedded(self.input.clone())
    }

    /// The adapter's counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Stops every task of the node and closes its sockets (like a crash:
    /// nothing is handed over).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Runs `fut` until the shutdown signal.
fn spawn_until<F>(mut shutdown: watch::Receiver<bool>, fut: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            _ = fut => {}
        }
    });
}

fn ceiling_path(dir: &std::path::Path) -> PathBuf {
    dir.join("token-ceiling")
}

fn read_ceiling(dir: &std::path::Path) -> Option<Token> {
    let text = std::fs::read_to_string(ceiling_path(dir)).ok()?;
    text.trim().parse().ok().map(Token)
}

fn write_ceiling(dir: &std::path::Path, token: Token) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("token-ceiling.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{}", token.0)?;
    f.sync_all()?;
    std::fs::rename(tmp, ceiling_path(dir))
}

struct Driver {
    node: Node,
    start: Instant,
    links: HashMap<NodeId, Slot>,
    dirty: Dirty,
    link_state: Vec<(NodeId, Arc<AtomicBool>)>,
    pending: HashMap<u64, (u64, ReplyTo)>,
    next_request: u64,
    counters: Arc<Counters>,
    data_dir: Option<PathBuf>,
}

impl Driver {
    fn now(&self) -> Time {
        Time::from_micros(self.start.elapsed().as_micros() as u64)
    }

    async fn run(mut self, mut inbox: mpsc::Receiver<Input>) {
        loop {
            let wake = self
                .node
                .poll_timeout()
                .map(|t| self.start + Duration::from_micros(t.as_micros()));
            tokio::select! {
                input = inbox.recv() => {
                    let Some(input) = input else { return };
                    self.handle(input);
                    // Take what is already queued before sleeping again.
                    for _ in 0..1024 {
                        match inbox.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                }
                _ = sleep_until_opt(wake) => {
                    let now = self.now();
                    self.node.handle_timeout(now);
                    self.drain();
                }
            }
            // One write per connection for the whole burst.
            self.dirty.flush();
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Peer { from, msg } => self.node.handle_message(now, from, msg),
            Input::Request { env, reply } => match env {
                Envelope::ClientRequest { id, request } => {
                    self.counters.requests.fetch_add(1, Ordering::Relaxed);
                    self.next_request += 1;
                    let rid = self.next_request;
                    self.pending.insert(rid, (id, reply));
                    self.node.handle_request(now, RequestId(rid), request);
                }
                Envelope::StatusRequest { id } => {
                    let status = Status {
                        summary: self.node.summary(now),
                        role: self.node.role(),
                        links: self
                            .link_state
                            .iter()
                            .map(|(p, up)| (*p, up.load(Ordering::Relaxed)))
                            .collect(),
                        counters: self.counters.to_vec(),
                    };
                    reply.send(
                        Envelope::StatusReply { id, status },
                        &self.counters,
                        &mut self.dirty,
                    );
                }
                _ => {}
            },
        }
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.node.poll_output() {
            match out {
                Output::Send { to, msg } => {
                    if let Some(slot) = self.links.get(&to) {
                        let outbox = slot.lock().unwrap().clone();
                        match outbox {
                            Some(o) if o.push(&Envelope::Peer(msg)) => self.dirty.push(&o),
                            _ => {
                                self.counters.link_drops.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else {
                        debug!(%to, "no link to node");
                    }
                }
                Output::Reply { id, reply } => {
                    if let Some((cid, to)) = self.pending.remove(&id.0) {
                        to.send(
                            Envelope::ClientReply { id: cid, reply },
                            &self.counters,
                            &mut self.dirty,
                        );
                    }
                }
                Output::PersistTokenCeiling(token) => {
                    if let Some(dir) = &self.data_dir {
                        // Rare (once per token block) and must finish before
                        // any later output: a blocking write is the rule here.
                        if let Err(e) = write_ceiling(dir, token) {
                            warn!(error = %e, "could not persist the token ceiling");
                        }
                    }
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

struct Link {
    slot: Slot,
    me: NodeId,
    peer: NodeId,
    addr: SocketAddr,
    secret: Arc<[u8]>,
    up: Arc<AtomicBool>,
    counters: Arc<Counters>,
    max_frame: usize,
}

impl Link {
    async fn run(self) {
        let mut backoff = Duration::from_millis(20);
        let mut warned = false;
        loop {
            match conn::connect(self.addr, &self.secret, Who::Peer(self.me), self.max_frame).await {
                Ok((mut reader, writer)) => {
                    self.counters.peer_connects.fetch_add(1, Ordering::Relaxed);
                    info!(from = %self.me, to = %self.peer, "peer link up");
                    self.up.store(true, Ordering::Relaxed);
                    backoff = Duration::from_millis(20);
                    warned = false;
                    let outbox = Outbox::new(writer);
                    *self.slot.lock().unwrap() = Some(outbox.clone());
                    tokio::select! {
                        _ = outbox.wait_closed() => {}
                        _ = reader.next() => {}
                    }
                    *self.slot.lock().unwrap() = None;
                    outbox.close();
                    self.up.store(false, Ordering::Relaxed);
                    info!(from = %self.me, to = %self.peer, "peer link down");
                }
                Err(e) => {
                    if matches!(e, ConnError::Auth(_)) {
                        self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    if !warned {
                        warn!(from = %self.me, to = %self.peer, error = %e, "cannot reach peer; retrying");
                        warned = true;
                    }
                }
            }
            let jitter = rand::random::<u64>() % (backoff.as_millis() as u64 + 1);
            tokio::time::sleep(backoff / 2 + Duration::from_millis(jitter / 2)).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

struct Server {
    known: Arc<Vec<NodeId>>,
    secret: Arc<[u8]>,
    input: mpsc::Sender<Input>,
    counters: Arc<Counters>,
    max_frame: usize,
    shutdown: watch::Receiver<bool>,
}

impl Server {
    async fn run(self, listener: TcpListener) {
        let this = Arc::new(self);
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            this.counters.accepted.fetch_add(1, Ordering::Relaxed);
            let srv = this.clone();
            spawn_until(this.shutdown.clone(), async move {
                if let Err(e) = srv.serve(stream).await {
                    match e {
                        ConnError::Closed => debug!(%remote, "connection closed"),
                        ConnError::Wire(ref w) => {
                            srv.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                            warn!(%remote, error = %w, "closing connection: bad frame");
                        }
                        ConnError::Io(ref io) => debug!(%remote, error = %io, "connection error"),
                        _ => warn!(%remote, error = %e, "closing connection"),
                    }
                }
            });
        }
    }

    async fn serve(&self, stream: tokio::net::TcpStream) -> Result<(), ConnError> {
        let (who, mut reader, writer) =
            match conn::accept(stream, &self.secret, self.max_frame).await {
                Ok(x) => x,
                Err(e) => {
                    self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
                    if let ConnError::Wire(_) = e {
                        self.counters.bad_frames.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(ConnError::Auth(match e {
                        ConnError::Auth(a) => a,
                        other => {
                            warn!(error = %other, "handshake failed");
                            return Err(ConnError::Closed);
                        }
                    }));
                }
            };
        match who {
            Who::Peer(from) => {
                if !self.known.contains(&from) {
                    self.counters.unknown_peers.fetch_add(1, Ordering::Relaxed);
                    warn!(peer = %from, "closing connection: unknown peer");
                    return Ok(());
                }
                let _keep_open = writer;
                loop {
                    match reader.next().await? {
                        Envelope::Peer(msg) => {
                            if self.input.send(Input::Peer { from, msg }).await.is_err() {
                                return Ok(());
                            }
                        }
                        _ => {
                            return Err(ConnError::Wire(WireError::Garbage(
                                "not a peer message".into(),
                            )))
                        }
                    }
                }
            }
            Who::Client => {
                let outbox = Outbox::new(writer);
                let _close = CloseOnDrop(outbox.clone());
                loop {
                    let env = reader.next().await?;
                    match env {
                        Envelope::ClientRequest { .. } | Envelope::StatusRequest { .. } => {
                            let reply = ReplyTo::Remote(outbox.clone());
                            if self
                                .input
                                .send(Input::Request { env, reply })
                                .await
                                .is_err()
                            {
                                return Ok(());
                            }
                        }
                        _ => {
                            return Err(ConnError::Wire(WireError::Garbage(
                                "not a client request".into(),
                            )))
                        }
                    }
                }
            }
        }
    }
}

/// Closes an outbox when the connection's reader stops.
struct CloseOnDrop(Arc<Outbox>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}
