//! A cluster on loopback for the scenarios: nodes placed on runtimes,
//! killed and restarted on the same address.

use locker_core::{Config, NodeId};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::runtime::{timeout_at, Runtime};
use crate::{Client, FatalError, LocalNode, NodeOptions, StartError, StartMode, StateError};

/// The cluster secret of every scenario.
pub const SECRET: &[u8] = b"conformance secret";

/// The longest lease the scenarios' nodes grant; it sets the quarantine of
/// a restarted master, so it is kept short.
const MAX_LEASE: Duration = Duration::from_secs(3);

/// A node as a scenario sees it, whatever runtime it runs on; its clients
/// run on the scenario's runtime `R`.
pub trait RunningNode<R: Runtime>: Send + Sync {
    /// An embedded client.
    fn client(&self) -> Client<R>;
    /// Stops the node like a crash.
    fn shutdown(&self);
    /// Why the node stopped itself, if it did.
    fn fatal_error(&self) -> Option<Arc<FatalError>>;
    /// Whether it reaches a quorum.
    fn is_ready(&self) -> bool;
    /// Waits until it reaches a quorum.
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

struct Hosted<S: Runtime, R: Runtime> {
    node: LocalNode<S>,
    client_runtime: R,
}

impl<S: Runtime, R: Runtime> RunningNode<R> for Hosted<S, R> {
    fn client(&self) -> Client<R> {
        self.node.client_on(self.client_runtime.clone())
    }
    fn shutdown(&self) {
        self.node.shutdown();
    }
    fn fatal_error(&self) -> Option<Arc<FatalError>> {
        self.node.fatal_error()
    }
    fn is_ready(&self) -> bool {
        self.node.is_ready()
    }
    fn ready(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.node.ready())
    }
}

/// A node started, or why it could not start.
pub type Started<R> = Result<Box<dyn RunningNode<R>>, StartError>;

/// Starts one node on a listener bound to its address.
pub type Place<R> = Arc<
    dyn Fn(std::net::TcpListener, NodeOptions) -> Pin<Box<dyn Future<Output = Started<R>> + Send>>
        + Send
        + Sync,
>;

/// Which runtime each node runs on.
pub type Placement<R> = Arc<dyn Fn(NodeId) -> Place<R> + Send + Sync>;

/// Starts nodes on `node_runtime`, their embedded clients on `client_runtime`.
pub fn node_on<S: Runtime, R: Runtime>(node_runtime: S, client_runtime: R) -> Place<R> {
    Arc::new(move |listener, opts| {
        let (node_runtime, client_runtime) = (node_runtime.clone(), client_runtime.clone());
        Box::pin(async move {
            let listener = node_runtime.listen(listener)?;
            let node = LocalNode::start_on(node_runtime, listener, opts).await?;
            Ok(Box::new(Hosted {
                node,
                client_runtime,
            }) as Box<dyn RunningNode<R>>)
        })
    })
}

/// Every node on `runtime`.
pub fn all_on<R: Runtime>(runtime: R) -> Placement<R> {
    let place = node_on(runtime.clone(), runtime);
    Arc::new(move |_| place.clone())
}

/// Sleeps for `d` on `runtime`.
pub async fn sleep<R: Runtime>(runtime: &R, d: Duration) {
    runtime.sleep_until(Instant::now() + d).await;
}

/// Runs `fut`, failing the test if it takes longer than `secs`.
pub async fn bounded<R: Runtime, T>(runtime: &R, secs: u64, fut: impl Future<Output = T>) -> T {
    timeout_at(runtime, Instant::now() + Duration::from_secs(secs), fut)
        .await
        .expect("the scenario took too long")
}

/// Nodes `1..=masters` are masters, the next `replicas` are replicas.
pub struct Cluster<R: Runtime> {
    /// The runtime of the scenario's clients and timers.
    pub runtime: R,
    placement: Placement<R>,
    nodes: Vec<Option<Box<dyn RunningNode<R>>>>,
    /// Every node's address.
    pub addrs: HashMap<NodeId, SocketAddr>,
    masters: Vec<NodeId>,
    replicas: Vec<NodeId>,
    secrets: HashMap<NodeId, Vec<u8>>,
    /// Holds every node's data directory (`n<id>`), removed on drop.
    data_root: PathBuf,
}

/// How a node is (re)started.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Restart {
    /// With its data directory as it was left.
    WithState,
    /// With no data directory at all.
    WithoutState,
    /// With its data directory, but claiming to be the first start of a
    /// new cluster ([`StartMode::Bootstrap`]): refused.
    AsNewCluster,
}

impl<R: Runtime> Cluster<R> {
    /// Starts a cluster and waits until every peer link is up.
    pub async fn start(
        runtime: R,
        placement: Placement<R>,
        masters: u64,
        replicas: u64,
    ) -> Cluster<R> {
        let c =
            Self::start_with_secrets(runtime, placement, masters, replicas, HashMap::new()).await;
        c.wait_links().await;
        c
    }

    /// Starts a cluster and returns at once: links may still be coming up.
    pub async fn start_unready(
        runtime: R,
        placement: Placement<R>,
        masters: u64,
        replicas: u64,
    ) -> Cluster<R> {
        Self::start_with_secrets(runtime, placement, masters, replicas, HashMap::new()).await
    }

    /// Starts a cluster where the nodes in `secrets` use their own secret
    /// instead of [`SECRET`]; does not wait for links.
    pub async fn start_with_secrets(
        runtime: R,
        placement: Placement<R>,
        masters: u64,
        replicas: u64,
        secrets: HashMap<NodeId, Vec<u8>>,
    ) -> Cluster<R> {
        let ms: Vec<NodeId> = (1..=masters).map(NodeId).collect();
        let rs: Vec<NodeId> = (masters + 1..=masters + replicas).map(NodeId).collect();
        let mut listeners = Vec::new();
        let mut addrs = HashMap::new();
        for id in ms.iter().chain(&rs) {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
            addrs.insert(*id, l.local_addr().expect("bound address"));
            listeners.push((*id, l));
        }
        let data_root = std::env::temp_dir().join(format!(
            "locker-conformance-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut c = Cluster {
            runtime,
            placement,
            nodes: Vec::new(),
            addrs,
            masters: ms,
            replicas: rs,
            secrets,
            data_root,
        };
        for (id, l) in listeners {
            let dir = Some(c.data_dir(id));
            let node = c
                .start_node(id, l, StartMode::Bootstrap, dir)
                .await
                .expect("start the node");
            c.nodes.push(Some(node));
        }
        c
    }

    /// Node `id`'s data directory (it may not exist).
    pub fn data_dir(&self, id: NodeId) -> PathBuf {
        self.data_root.join(format!("n{}", id.0))
    }

    async fn start_node(
        &self,
        id: NodeId,
        listener: std::net::TcpListener,
        start: StartMode,
        data_dir: Option<PathBuf>,
    ) -> Started<R> {
        let mut config = Config::new(id, self.masters.clone(), self.replicas.clone());
        config.seed = rand::random();
        config.max_lease = MAX_LEASE;
        let mut opts = NodeOptions::new(config, self.addrs.clone());
        opts.secret = Some(self.secrets.get(&id).map_or(SECRET, |s| s).to_vec());
        opts.start = start;
        opts.data_dir = data_dir;
        (self.placement)(id)(listener, opts).await
    }

    /// Starts a brand-new node with the next id: it knows every node's
    /// address and the start-up members, and is none of them (a client-only
    /// node, until a `set_nodes` adds it). The others were not started with
    /// it. Returns its index.
    pub async fn add_node(&mut self) -> usize {
        let id = NodeId(self.nodes.len() as u64 + 1);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        self.addrs
            .insert(id, listener.local_addr().expect("bound address"));
        // Joining a running cluster is no bootstrap: promoted, it waits out
        // a quarantine before it votes.
        let dir = Some(self.data_dir(id));
        let node = self
            .start_node(id, listener, StartMode::Restart, dir)
            .await
            .expect("start the node");
        self.nodes.push(Some(node));
        self.nodes.len() - 1
    }

    /// The node with id `i + 1`.
    pub fn node(&self, i: usize) -> &dyn RunningNode<R> {
        self.nodes[i].as_deref().expect("the node is running")
    }

    /// Waits (up to 10 s) until every running node's links to every other
    /// running node are up.
    pub async fn wait_links(&self) {
        let running: Vec<NodeId> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].is_some())
            .map(|i| NodeId(i as u64 + 1))
            .collect();
        let t = Instant::now();
        'outer: while t.elapsed() < Duration::from_secs(10) {
            for n in self.nodes.iter().flatten() {
                let status = n.client().status().await.expect("status");
                let all_up = status
                    .links
                    .iter()
                    .all(|(peer, up)| *up || !running.contains(peer));
                if !all_up {
                    sleep(&self.runtime, Duration::from_millis(10)).await;
                    continue 'outer;
                }
            }
            return;
        }
        panic!("the peer links did not come up within 10 s");
    }

    /// Whether node `i + 1`'s link to `peer` is up.
    pub async fn link_up(&self, i: usize, peer: NodeId) -> bool {
        let status = self.node(i).client().status().await.expect("status");
        status.links.iter().any(|(p, up)| *p == peer && *up)
    }

    /// An embedded client of node `i + 1` that retries for 500 ms.
    pub fn client(&self, i: usize) -> Client<R> {
        self.node(i).client().with_wait(Duration::from_millis(500))
    }

    /// A client of node `i + 1` over TCP that retries for 500 ms.
    pub async fn remote(&self, i: usize) -> Client<R> {
        let addr = self.addrs[&NodeId(i as u64 + 1)];
        Client::connect_on(self.runtime.clone(), addr, Some(SECRET))
            .await
            .expect("connect")
            .with_wait(Duration::from_millis(500))
    }

    /// Stops node `i + 1` like a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(n) = self.nodes[i].take() {
            n.shutdown();
        }
    }

    /// Starts node `i + 1` again on its address, with no memory of what it
    /// stored or promised: as after `kill -9` and a start of the program.
    pub async fn restart(&mut self, i: usize) {
        self.restart_with(i, Restart::WithState)
            .await
            .expect("restart the node");
    }

    /// [`Cluster::restart`], with or without its data directory; the start
    /// error, if the node refuses to start.
    pub async fn restart_with(&mut self, i: usize, how: Restart) -> Result<(), StartError> {
        let id = NodeId(i as u64 + 1);
        let addr = self.addrs[&id];
        let (mode, dir) = match how {
            Restart::WithState => (StartMode::Restart, Some(self.data_dir(id))),
            Restart::WithoutState => (StartMode::Restart, None),
            Restart::AsNewCluster => (StartMode::Bootstrap, Some(self.data_dir(id))),
        };
        // The killed node's listener and data dir lock are let go once its
        // tasks are dropped, which may take a moment after the kill.
        let t = Instant::now();
        let node = loop {
            let listener = match std::net::TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) if t.elapsed() > Duration::from_secs(5) => panic!("rebind {addr}: {e}"),
                Err(_) => {
                    sleep(&self.runtime, Duration::from_millis(10)).await;
                    continue;
                }
            };
            match self.start_node(id, listener, mode, dir.clone()).await {
                Err(StartError::State(StateError::InUse { .. }))
                    if t.elapsed() < Duration::from_secs(5) =>
                {
                    sleep(&self.runtime, Duration::from_millis(10)).await;
                }
                started => break started?,
            }
        };
        self.nodes[i] = Some(node);
        Ok(())
    }
}

impl<R: Runtime> Drop for Cluster<R> {
    fn drop(&mut self) {
        for n in self.nodes.iter().flatten() {
            n.shutdown();
        }
        let _ = std::fs::remove_dir_all(&self.data_root);
    }
}
