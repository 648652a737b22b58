//! An in-memory cluster for locker-core tests: nodes, a shared simulated
//! clock that jumps to the next timeout, and a router with drops and
//! partitions.
#![allow(dead_code)]

pub mod strategies;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use locker_core::{
    Config, Lease, Message, Node, NodeId, OpError, Output, Reply, Request, RequestId, Response,
    Time, Token,
};

/// A message in flight between two nodes.
#[derive(Clone, Debug)]
pub struct InFlight {
    pub from: NodeId,
    pub to: NodeId,
    pub msg: Message,
}

/// Filter deciding whether a message is dropped.
pub type DropRule = Box<dyn FnMut(NodeId, NodeId, &Message) -> bool>;

pub struct Cluster {
    pub now: Time,
    pub configs: BTreeMap<NodeId, Config>,
    pub nodes: BTreeMap<NodeId, Node>,
    pub in_flight: VecDeque<InFlight>,
    pub replies: BTreeMap<RequestId, Reply>,
    /// When each reply was output (shared clock).
    pub reply_times: BTreeMap<RequestId, Time>,
    /// Every output of every node in order, for determinism tests.
    pub log: Vec<(NodeId, Output)>,
    /// Last persisted token ceiling per node.
    pub ceilings: BTreeMap<NodeId, Token>,
    /// Unordered pairs that cannot talk.
    pub cut: BTreeSet<(NodeId, NodeId)>,
    pub drop_rule: Option<DropRule>,
    pub dropped: usize,
    next_request: u64,
    /// Deliver at most this many messages per drain step before checking timers.
    pub delivered: usize,
}

pub fn ids(range: std::ops::RangeInclusive<u64>) -> Vec<NodeId> {
    range.map(NodeId).collect()
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

impl Cluster {
    /// `masters` and `replicas` as listed, plus client-only nodes `clients`;
    /// `tweak` adjusts every config.
    pub fn with(
        masters: &[u64],
        replicas: &[u64],
        clients: &[u64],
        mut tweak: impl FnMut(&mut Config),
    ) -> Cluster {
        let m: Vec<NodeId> = masters.iter().copied().map(NodeId).collect();
        let r: Vec<NodeId> = replicas.iter().copied().map(NodeId).collect();
        let mut cluster = Cluster {
            now: Time::from_millis(1),
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            in_flight: VecDeque::new(),
            replies: BTreeMap::new(),
            reply_times: BTreeMap::new(),
            log: Vec::new(),
            ceilings: BTreeMap::new(),
            cut: BTreeSet::new(),
            drop_rule: None,
            dropped: 0,
            next_request: 1,
            delivered: 0,
        };
        for &id in masters.iter().chain(replicas).chain(clients) {
            let mut config = Config::new(NodeId(id), m.clone(), r.clone());
            tweak(&mut config);
            let node = Node::new(config.clone(), cluster.now).expect("valid config");
            cluster.configs.insert(NodeId(id), config);
            cluster.nodes.insert(NodeId(id), node);
        }
        cluster.collect();
        cluster
    }

    pub fn masters(n: u64) -> Cluster {
        let m: Vec<u64> = (1..=n).collect();
        Cluster::with(&m, &[], &[], |_| {})
    }

    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&NodeId(id)]
    }

    pub fn is_up(&self, id: u64) -> bool {
        self.nodes.contains_key(&NodeId(id))
    }

    /// Crash: the node loses its memory and stops answering.
    pub fn stop(&mut self, id: u64) {
        self.nodes.remove(&NodeId(id));
        self.in_flight.retain(|m| m.to != NodeId(id));
    }

    /// Restart a crashed node with `Node::restarted`, from its last persisted
    /// ceiling if `with_ceiling`.
    pub fn restart(&mut self, id: u64, with_ceiling: bool) {
        let config = self.configs[&NodeId(id)].clone();
        let ceiling = with_ceiling
            .then(|| self.ceilings.get(&NodeId(id)).copied())
            .flatten();
        let node = Node::restarted(config, self.now, ceiling).expect("valid config");
        self.nodes.insert(NodeId(id), node);
        self.collect();
    }

    /// Start a node that was not part of the cluster before, with `config`.
    pub fn start_new(&mut self, config: Config) {
        let id = config.id;
        let node = Node::new(config.clone(), self.now).expect("valid config");
        self.configs.insert(id, config);
        self.nodes.insert(id, node);
        self.collect();
    }

    /// Nodes `a` and `b` can no longer talk (both directions).
    pub fn partition(&mut self, a: u64, b: u64) {
        self.cut.insert((NodeId(a.min(b)), NodeId(a.max(b))));
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Isolate `id` from every other node.
    pub fn isolate(&mut self, id: u64) {
        let others: Vec<u64> = self.configs.keys().map(|n| n.0).collect();
        for o in others {
            if o != id {
                self.partition(id, o);
            }
        }
    }

    pub fn drop_when(&mut self, rule: impl FnMut(NodeId, NodeId, &Message) -> bool + 'static) {
        self.drop_rule = Some(Box::new(rule));
    }

    pub fn stop_dropping(&mut self) {
        self.drop_rule = None;
    }

    fn collect(&mut self) {
        for (&id, node) in self.nodes.iter_mut() {
            while let Some(out) = node.poll_output() {
                self.log.push((id, out.clone()));
                match out {
                    Output::Send { to, msg } => {
                        self.in_flight.push_back(InFlight { from: id, to, msg })
                    }
                    Output::Reply { id: rid, reply } => {
                        self.replies.insert(rid, reply);
                        self.reply_times.insert(rid, self.now);
                    }
                    Output::PersistTokenCeiling(t) => {
                        self.ceilings.insert(id, t);
                    }
                    Output::PersistMembership(_) => {}
                }
            }
        }
    }

    /// Deliver every message in flight (and those they cause) at the current time.
    pub fn deliver_all(&mut self) {
        let mut guard = 0;
        while let Some(m) = self.in_flight.pop_front() {
            guard += 1;
            assert!(guard < 1_000_000, "message storm");
            let pair = (m.from.min(m.to), m.from.max(m.to));
            let mut drop = self.cut.contains(&pair) || !self.nodes.contains_key(&m.to);
            if !drop {
                if let Some(rule) = self.drop_rule.as_mut() {
                    drop = rule(m.from, m.to, &m.msg);
                }
            }
            if drop {
                self.dropped += 1;
                continue;
            }
            self.delivered += 1;
            let now = self.now;
            self.nodes
                .get_mut(&m.to)
                .unwrap()
                .handle_message(now, m.from, m.msg);
            self.collect();
        }
    }

    /// The earliest timeout of any node.
    pub fn next_timeout(&self) -> Option<Time> {
        self.nodes.values().filter_map(|n| n.poll_timeout()).min()
    }

    /// Deliver messages, then jump the clock to the next timeout and fire it;
    /// returns false when nothing is left to do before `limit`.
    pub fn step(&mut self, limit: Time) -> bool {
        self.deliver_all();
        let Some(t) = self.next_timeout() else {
            return false;
        };
        if t > limit {
            return false;
        }
        self.now = self.now.max(t);
        let now = self.now;
        for node in self.nodes.values_mut() {
            if node.poll_timeout().is_some_and(|t| t <= now) {
                node.handle_timeout(now);
            }
        }
        self.collect();
        self.deliver_all();
        true
    }

    /// Run until `d` has passed on the shared clock.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        while self.step(limit) {}
        self.now = self.now.max(limit);
        let now = self.now;
        for node in self.nodes.values_mut() {
            node.handle_timeout(now);
        }
        self.collect();
        self.check_invariants();
        self.deliver_all();
    }

    /// Every node's internal invariants hold (call right after timeouts fired).
    pub fn check_invariants(&self) {
        for (id, node) in &self.nodes {
            if let Err(e) = node.check_invariants(self.now) {
                panic!("node {id:?} at {}: {e}", self.now);
            }
        }
    }

    /// Advance the clock by `d` without firing anything in between.
    pub fn jump(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    /// Submit a request to `node` without waiting.
    pub fn submit(&mut self, node: u64, req: Request) -> RequestId {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let now = self.now;
        self.nodes
            .get_mut(&NodeId(node))
            .expect("node is up")
            .handle_request(now, id, req);
        self.collect();
        id
    }

    /// Run until request `id` is answered (at most 10 minutes of simulated time).
    pub fn run_until_reply(&mut self, id: RequestId) -> Reply {
        let limit = self.now + Duration::from_secs(600);
        loop {
            self.deliver_all();
            if let Some(r) = self.replies.remove(&id) {
                return r;
            }
            if !self.step(limit) {
                panic!("request {id:?} never answered");
            }
            if let Some(r) = self.replies.remove(&id) {
                return r;
            }
        }
    }

    pub fn request(&mut self, node: u64, req: Request) -> Reply {
        let id = self.submit(node, req);
        self.run_until_reply(id)
    }

    pub fn lock(&mut self, node: u64, key: &str, value: &str, lease: Duration) -> Reply {
        self.request(node, lock_req(key, value, lease, secs(1)))
    }

    /// Lock and expect success; returns the lease.
    pub fn locked(&mut self, node: u64, key: &str, value: &str, lease: Duration) -> Lease {
        match self.lock(node, key, value, lease) {
            Ok(Response::Locked(l)) => l,
            other => panic!("lock {key} on {node}: {other:?}"),
        }
    }

    pub fn release(&mut self, node: u64, key: &str, value: &str, token: Option<Token>) -> Reply {
        self.request(
            node,
            Request::Release {
                key: key.into(),
                value: value.into(),
                token,
                wait: secs(1),
            },
        )
    }

    pub fn extend(
        &mut self,
        node: u64,
        key: &str,
        value: &str,
        lease: Duration,
        token: Option<Token>,
    ) -> Reply {
        self.request(
            node,
            Request::Extend {
                key: key.into(),
                value: value.into(),
                lease,
                token,
                wait: secs(1),
            },
        )
    }

    pub fn update(&mut self, node: u64, key: &str, value: &str, new_value: &str) -> Reply {
        self.request(
            node,
            Request::Update {
                key: key.into(),
                value: value.into(),
                new_value: new_value.into(),
                wait: secs(1),
            },
        )
    }

    pub fn read(&mut self, node: u64, key: &str) -> Reply {
        self.request(
            node,
            Request::Read {
                key: key.into(),
                wait: secs(1),
            },
        )
    }

    pub fn dirty_read(&mut self, node: u64, key: &str) -> Reply {
        self.request(node, Request::DirtyRead { key: key.into() })
    }

    /// The value a node holds locally for `key`, if live.
    pub fn local_value(&self, node: u64, key: &str) -> Option<Vec<u8>> {
        self.node(node)
            .dirty_entries(self.now)
            .into_iter()
            .find(|(k, _)| k == key.as_bytes())
            .map(|(_, v)| v.value)
    }

    pub fn set_nodes(&mut self, node: u64, masters: &[u64], replicas: &[u64]) -> Reply {
        self.request(
            node,
            Request::SetNodes {
                masters: masters.iter().copied().map(NodeId).collect(),
                replicas: replicas.iter().copied().map(NodeId).collect(),
            },
        )
    }
}

pub fn lock_req(key: &str, value: &str, lease: Duration, wait: Duration) -> Request {
    Request::Lock {
        key: key.into(),
        value: value.into(),
        lease,
        wait,
    }
}

pub fn is_err(reply: &Reply, e: &OpError) -> bool {
    matches!(reply, Err(x) if x == e)
}
