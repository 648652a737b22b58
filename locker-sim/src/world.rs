//! The world: real time, the event queue, the nodes with their clocks, the
//! network, the faults and the clients. One seed determines a whole run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use locker_core::{
    AppliedMembership, Config, Message, Node, NodeId, Output, Reply, Request, RequestId, Response,
    Role, Time, Token,
};

use crate::checkers::{self, liveness, Report};
use crate::clock::Clock;
use crate::faults::{self, Fault};
use crate::history::{Grant, History, Op, OpKind, Window};
use crate::network::{Burst, Network};
use crate::options::SimOptions;
use crate::queue::Queue;
use crate::rng::SimRng;
use crate::schedule::{FaultKind, Schedule};
use crate::workload::{self, Client, HolderStep, Holding, Slot};

/// Something scheduled at a real instant.
#[derive(Debug)]
pub enum Event {
    /// A message arrives.
    Deliver {
        /// Sender index.
        from: usize,
        /// Receiver index.
        to: usize,
        /// The message.
        msg: Message,
    },
    /// A node's timer (ignored unless `gen` is current).
    Timer {
        /// Node index.
        node: usize,
        /// Timer generation.
        gen: u64,
    },
    /// An operation arrives at a client (the open-loop workload).
    ClientWake(usize),
    /// A client takes the next step of its liveness probe.
    ProbeStep(usize),
    /// An administrator changes the membership.
    Admin,
    /// A client's request reaches a node.
    Request {
        /// Node index.
        node: usize,
        /// Request id.
        rid: u64,
        /// The request (boxed, like the reply: rarer than messages and
        /// larger, they would widen every queued event).
        req: Box<Request>,
    },
    /// A reply reaches its client.
    ClientReply {
        /// Request id.
        rid: u64,
        /// The answer.
        reply: Box<Reply>,
    },
    /// A client gives up waiting for `rid`.
    ClientTimeout(u64),
    /// A fault or phase change.
    Fault(Fault),
    /// A holder back from a pause writes with its old token.
    StaleWrite {
        /// The key.
        key: String,
        /// The stale token.
        token: u64,
    },
}

/// When the convergence snapshot is taken, after the liveness probe starts
/// (µs): the probes' own locks are the only writes by then.
const SNAPSHOT_AFTER_PROBE_US: u64 = 1_000_000;

struct Proc {
    node: Option<Node>,
    config: Config,
    clock: Clock,
    paused_until: u64,
    timer_gen: u64,
    timer_at: Option<u64>,
    /// The last deadline converted to real time, and the conversion: most
    /// events leave a node's next deadline where it was.
    timer_real: Option<(Time, u64)>,
    persisted: Option<Token>,
    /// The last membership this node applied, as its host persisted it.
    membership: Option<AppliedMembership>,
}

struct PendingReq {
    client: usize,
    /// The client's slot (`None` for administration).
    slot: Option<usize>,
    op: usize,
    send_local: u64,
    remote_node: Option<usize>,
}

/// A simulated cluster for one seed.
pub struct World {
    /// Options of the run.
    pub opts: SimOptions,
    /// The seed.
    pub seed: u64,
    now: u64,
    queue: Queue<Event>,
    procs: Vec<Proc>,
    ids: Vec<NodeId>,
    net: Network,
    rng: SimRng,
    clients: Vec<Client>,
    key_names: workload::KeyNames,
    requests: BTreeMap<u64, PendingReq>,
    next_rid: u64,
    /// The record for the checkers.
    pub history: History,
    /// Events processed.
    pub events: u64,
    trace: Option<String>,
    probe_at: u64,
    end_at: u64,
    workload_on: bool,
    resource: BTreeMap<String, u64>,
    snapshot: Option<checkers::Stores>,
    invariant_errors: Vec<String>,
    schedule: Schedule,
    quiet_at: u64,
    /// Workload arrivals dropped because every slot of the client was busy.
    pub dropped: u64,
    admin_pending: Option<u64>,
    /// The membership last configured: `(masters, replicas, w)`. Restarted
    /// nodes come back with it (a host that persists its configuration).
    members: (Vec<NodeId>, Vec<NodeId>, usize),
    /// A change that did not answer `configured`: sent again, unchanged,
    /// before any other (changes go one at a time).
    admin_retry: Option<Request>,
}

/// Real microseconds from seconds.
pub fn secs(s: f64) -> u64 {
    (s * 1e6) as u64
}

impl World {
    /// Builds the world for `seed`; `trace` records every event as text.
    pub fn new(seed: u64, opts: SimOptions, trace: bool) -> World {
        let mut rng = SimRng::new(seed);
        let n = opts.nodes();
        let ids: Vec<NodeId> = (0..n).map(|i| NodeId(i as u64 + 1)).collect();
        let masters = ids[..opts.masters].to_vec();
        let replicas = ids[opts.masters..opts.masters + opts.replicas].to_vec();
        let drift = opts.actual_drift();
        let mut procs = Vec::with_capacity(n);
        for (i, &id) in ids.iter().enumerate() {
            let mut config = Config::new(id, masters.clone(), replicas.clone());
            if let Some(w) = opts.w {
                config.w = w;
            }
            config.allow_unsafe_quorum = opts.unsafe_quorum;
            config.max_drift = opts.max_drift;
            config.max_lease = Duration::from_millis(opts.max_lease_ms);
            config.seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
            let clock = random_clock(&mut rng, opts.faults.skew, drift);
            let node = Node::new(config.clone(), clock.local(0)).expect("valid config");
            procs.push(Proc {
                node: Some(node),
                config,
                clock,
                paused_until: 0,
                timer_gen: 0,
                timer_at: None,
                timer_real: None,
                persisted: None,
                membership: None,
            });
        }
        let net = Network::new(n, opts.faults, &mut rng);
        let quarantine = procs[0].config.quarantine().as_micros() as u64;
        let quiet_at = secs(opts.sim_secs);
        // A membership change proposed before the quiet phase may still be
        // chosen in its first seconds (the administrator's retries, or a
        // master finishing an accepted change once the network heals), and
        // a master it promotes is quarantined from then on.
        let late_change = if opts.admin || opts.admin_nodes {
            8_000_000
        } else {
            0
        };
        let probe_at = quiet_at
            + late_change
            + (quarantine as f64 * (1.0 + drift.max(opts.max_drift)) * 1.05) as u64
            + 1_000_000;
        let end_at = probe_at + 6_000_000;
        let clients = (0..opts.clients)
            .map(|c| Client {
                node: opts.masters + opts.replicas + c,
                slots: vec![Slot::default(); opts.pipeline.max(1)],
                counter: 0,
                probe_stage: 0,
            })
            .collect();
        // Room for every operation the workload can start: growing this
        // vector by doubling copied it, and faulted in fresh pages, several
        // times per seed (untouched capacity costs nothing).
        let expected_ops = opts.ops_per_sec * (opts.sim_secs + 30.0);
        let history = History {
            ops: Vec::with_capacity(expected_ops.clamp(0.0, 1e7) as usize),
            ..History::default()
        };
        let mut world = World {
            opts,
            seed,
            now: 0,
            queue: Queue::default(),
            procs,
            ids,
            net,
            rng,
            key_names: workload::KeyNames::default(),
            clients,
            requests: BTreeMap::new(),
            next_rid: 1,
            history,
            events: 0,
            trace: trace.then(String::new),
            probe_at,
            end_at,
            workload_on: true,
            resource: BTreeMap::new(),
            snapshot: None,
            invariant_errors: Vec::new(),
            schedule: Schedule::default(),
            quiet_at,
            dropped: 0,
            admin_pending: None,
            members: (Vec::new(), Vec::new(), 0),
            admin_retry: None,
        };
        world.members = (
            world.procs[0].config.masters.clone(),
            world.procs[0].config.replicas.clone(),
            world.procs[0].config.w,
        );
        for p in 0..n {
            world.drain(p);
        }
        for c in 0..world.clients.len() {
            let t = world.rng.range(0, 100_000);
            world.push(t, Event::ClientWake(c));
        }
        let schedule = match &world.opts.schedule {
            Some(s) => {
                if world.opts.after_draw {
                    faults::draw(&mut world.rng, &world.opts, quiet_at);
                }
                s.clone()
            }
            None => faults::draw(&mut world.rng, &world.opts, quiet_at),
        };
        for (i, e) in schedule.events.iter().enumerate() {
            let at = e.at_ms as u64 * 1_000;
            if at < quiet_at {
                world.push(at, Event::Fault(Fault::Start(i)));
            }
        }
        world.schedule = schedule;
        if let Some(at) = world.opts.crash_all_masters_at {
            world.push(secs(at), Event::Fault(Fault::CrashAllMasters));
        }
        if !world.opts.isolate_forever.is_empty() {
            let iso = world.opts.isolate_forever.clone();
            let a = world.opts.nodes();
            let links = (0..a)
                .flat_map(|x| (0..a).map(move |y| (x, y)))
                .filter(|(x, y)| iso.contains(x) != iso.contains(y))
                .collect();
            world.net.cut_forever(links);
        }
        if world.opts.admin || world.opts.admin_nodes {
            let t = world.rng.range(0, 2_000_000);
            world.push(t, Event::Admin);
        }
        world.push(quiet_at, Event::Fault(Fault::QuietStart));
        world.push(probe_at, Event::Fault(Fault::Probe));
        world.push(
            probe_at + SNAPSHOT_AFTER_PROBE_US,
            Event::Fault(Fault::Snapshot),
        );
        world
    }

    fn push(&mut self, at: u64, ev: Event) {
        let at = at.max(self.now);
        // The run stops before anything later: such an event would never
        // be processed (and dropping it leaves the order of the rest as is).
        if at <= self.end_at {
            self.queue.push(at, ev);
        }
    }

    /// Real time now (µs).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Runs to the end and checks the history.
    pub fn run(mut self) -> RunResult {
        while let Some((at, ev)) = self.queue.pop() {
            self.now = at;
            self.events += 1;
            self.step(ev);
        }
        self.now = self.end_at;
        let stores = self.snapshot.take().unwrap_or_default();
        let report = checkers::check_all(
            &self.history,
            &stores,
            &self.opts,
            self.probe_at,
            &self.invariant_errors,
        );
        RunResult {
            seed: self.seed,
            report,
            events: self.events,
            sim_micros: self.end_at,
            trace: self.trace.unwrap_or_default(),
            ops: std::mem::take(&mut self.history.ops),
            dropped: self.dropped,
            fault_phase_micros: self.quiet_at,
            schedule: self.schedule,
        }
    }

    fn stores(&self) -> checkers::Stores {
        let mut s = checkers::Stores {
            w: self.opts.w.unwrap_or(self.opts.masters / 2 + 1),
            ..checkers::Stores::default()
        };
        for p in &self.procs {
            let Some(node) = &p.node else { continue };
            let local = p.clock.local(self.now);
            let entries = node
                .dirty_entries(local)
                .into_iter()
                .map(|(k, e)| {
                    (
                        String::from_utf8_lossy(&k).into_owned(),
                        e.token.0,
                        e.remaining,
                    )
                })
                .collect();
            // By role, not index: `set_nodes` may have swapped a master and
            // a replica.
            match node.role() {
                Role::Master => s.masters.push(entries),
                Role::Replica => s.replicas.push(entries),
                Role::Client => {}
            }
        }
        s
    }

    fn trace(&mut self, f: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            let line = f();
            let _ = writeln!(t, "{:>12} {}", self.now, line);
        }
    }

    fn node_of(&self, ev: &Event) -> Option<usize> {
        match ev {
            Event::Deliver { to, .. } => Some(*to),
            Event::Timer { node, .. } | Event::Request { node, .. } => Some(*node),
            Event::ClientWake(c) | Event::ProbeStep(c) => Some(self.clients[*c].node),
            Event::ClientReply { rid, .. } | Event::ClientTimeout(rid) => {
                self.requests.get(rid).map(|r| self.clients[r.client].node)
            }
            Event::Fault(_) | Event::StaleWrite { .. } | Event::Admin => None,
        }
    }

    fn step(&mut self, ev: Event) {
        if let Some(p) = self.node_of(&ev) {
            let until = self.procs[p].paused_until;
            if until > self.now {
                self.push(until, ev);
                return;
            }
        }
        match ev {
            Event::Deliver { from, to, msg } => {
                let from_id = self.ids[from];
                if self.procs[to].node.is_none() {
                    return;
                }
                if self.trace.is_some() {
                    let s = format!("deliver {from}->{to} {msg:?}");
                    self.trace(|| s);
                }
                let proc = &mut self.procs[to];
                let local = proc.clock.local(self.now);
                let Some(node) = proc.node.as_mut() else {
                    return;
                };
                node.handle_message(local, from_id, msg);
                self.drain(to);
            }
            Event::Timer { node, gen } => {
                let proc = &mut self.procs[node];
                if proc.timer_gen != gen {
                    return;
                }
                proc.timer_at = None;
                let local = proc.clock.local(self.now);
                let Some(n) = proc.node.as_mut() else { return };
                n.handle_timeout(local);
                if self.events.is_multiple_of(256) {
                    if let Err(e) = n.check_invariants(local) {
                        self.invariant_errors.push(format!("node {node}: {e}"));
                    }
                }
                self.trace(|| format!("timer {node}"));
                self.drain(node);
            }
            Event::Request { node, rid, req } => {
                if self.procs[node].node.is_none() {
                    return;
                }
                self.trace(|| format!("request {rid} at {node} {req:?}"));
                let proc = &mut self.procs[node];
                let local = proc.clock.local(self.now);
                let Some(n) = proc.node.as_mut() else { return };
                n.handle_request(local, RequestId(rid), *req);
                self.drain(node);
            }
            Event::ClientWake(c) => self.client_arrival(c),
            Event::ProbeStep(c) => self.probe_step(c),
            Event::Admin => self.admin(),
            Event::ClientReply { rid, reply } => self.client_reply(rid, *reply),
            Event::ClientTimeout(rid) => {
                if let Some(r) = self.requests.remove(&rid) {
                    self.trace(|| format!("client {} timeout {rid}", r.client));
                    if let Some(s) = r.slot {
                        let slot = &mut self.clients[r.client].slots[s];
                        slot.pending = None;
                        slot.pending_key = None;
                        self.after_indeterminate(r.client, s, r.op);
                    } else {
                        self.admin_pending = None;
                    }
                    if self.clients[r.client].probe_stage > 0 {
                        let wake = self.now + 1;
                        self.push(wake, Event::ProbeStep(r.client));
                    }
                }
            }
            Event::StaleWrite { key, token } => self.resource_write(key, token),
            Event::Fault(f) => {
                self.trace(|| format!("fault {f:?}"));
                self.apply_fault(f);
            }
        }
    }

    fn drain(&mut self, p: usize) {
        let now = self.now;
        while let Some(out) = self.procs[p].node.as_mut().and_then(|n| n.poll_output()) {
            match out {
                Output::Send { to, msg } => {
                    if self.opts.drop_freed && matches!(msg, Message::Freed { .. }) {
                        continue;
                    }
                    let to = (to.0 - 1) as usize;
                    let ats = self.net.plan(&mut self.rng, now, p, to);
                    if let Some((&last, rest)) = ats.as_slice().split_last() {
                        for &at in rest {
                            let msg = msg.clone();
                            self.push(at, Event::Deliver { from: p, to, msg });
                        }
                        self.push(last, Event::Deliver { from: p, to, msg });
                    }
                }
                Output::Reply { id, reply } => {
                    let rid = id.0;
                    let Some(r) = self.requests.get(&rid) else {
                        continue;
                    };
                    let client_node = self.clients[r.client].node;
                    let at = if p == client_node {
                        Some(now)
                    } else {
                        self.net.plan(&mut self.rng, now, p, client_node).first()
                    };
                    if let Some(at) = at {
                        let reply = Box::new(reply);
                        self.push(at, Event::ClientReply { rid, reply });
                    }
                }
                Output::PersistTokenCeiling(t) => {
                    if self.opts.persist_ceiling {
                        self.procs[p].persisted = Some(t);
                    }
                }
                Output::PersistMembership(m) => self.procs[p].membership = Some(*m),
            }
        }
        let proc = &mut self.procs[p];
        let Some(node) = proc.node.as_ref() else {
            return;
        };
        let want = node.poll_timeout().map(|t| {
            let real = match proc.timer_real {
                Some((cached, real)) if cached == t => real,
                _ => {
                    let real = proc.clock.real_at(t);
                    proc.timer_real = Some((t, real));
                    real
                }
            };
            real.max(now)
        });
        if want != proc.timer_at {
            proc.timer_at = want;
            proc.timer_gen += 1;
            if let Some(at) = want {
                let gen = proc.timer_gen;
                self.push(at, Event::Timer { node: p, gen });
            }
        }
    }

    fn client_local(&self, c: usize) -> u64 {
        self.procs[self.clients[c].node]
            .clock
            .local(self.now)
            .as_micros()
    }

    fn real_of(&self, c: usize, local: u64) -> u64 {
        self.procs[self.clients[c].node]
            .clock
            .real_at(Time::from_micros(local))
    }

    /// Schedules client `c`'s next arrival: a Poisson process, so that the
    /// clients together start `ops_per_sec` operations per simulated second
    /// when they have idle slots.
    fn next_arrival(&mut self, c: usize) {
        let mean = self.opts.clients as f64 / self.opts.ops_per_sec.max(0.001) * 1e6;
        let t = self.now + self.rng.exp(mean) as u64 + 1;
        self.push(t, Event::ClientWake(c));
    }

    fn send(&mut self, c: usize, slot: Option<usize>, action: workload::Action, probe: bool) {
        let rid = self.next_rid;
        self.next_rid += 1;
        let node = if action.remote {
            self.rng
                .range(0, (self.opts.masters + self.opts.replicas) as u64) as usize
        } else {
            self.clients[c].node
        };
        let op = self.history.ops.len();
        self.history.ops.push(Op {
            client: c,
            key: action.key.clone(),
            kind: action.kind,
            invoke: self.now,
            ret: None,
            probe,
        });
        let send_local = self.client_local(c);
        if let (Request::Extend { lease, .. }, Some(s)) = (&action.req, slot) {
            // An extend may shorten the lease on the masters as soon as it
            // lands: until it answers, the holder assumes the shorter of its
            // deadline and the new lease's worst case on its own clock.
            let d = self.opts.max_drift;
            let worst = send_local + (lease.as_micros() as f64 * (1.0 - d) / (1.0 + d)) as u64;
            let end = self.real_of(c, worst);
            if let Some(h) = &mut self.clients[c].slots[s].holding {
                h.deadline_local = h.deadline_local.min(worst);
                let w = &mut self.history.windows[h.window];
                w.end = w.end.min(end);
            }
        }
        self.requests.insert(
            rid,
            PendingReq {
                client: c,
                slot,
                op,
                send_local,
                remote_node: action.remote.then_some(node),
            },
        );
        match slot {
            Some(s) => {
                let slot = &mut self.clients[c].slots[s];
                slot.pending = Some(rid);
                slot.pending_key = Some(action.key);
            }
            None => self.admin_pending = Some(rid),
        }
        let patience = workload::patience(&action.req).as_micros() as u64;
        let at = if action.remote {
            self.net
                .plan(&mut self.rng, self.now, self.clients[c].node, node)
                .first()
        } else {
            Some(self.now)
        };
        if let Some(at) = at {
            self.push(
                at,
                Event::Request {
                    node,
                    rid,
                    req: Box::new(action.req),
                },
            );
        }
        let timeout = self.now + patience;
        self.push(timeout, Event::ClientTimeout(rid));
    }

    /// An operation arrives at client `c`: one of its idle slots takes it.
    fn client_arrival(&mut self, c: usize) {
        if !self.workload_on || self.now >= self.probe_at {
            return;
        }
        self.next_arrival(c);
        let now = self.now;
        let slots = &self.clients[c].slots;
        let idle = slots.iter().filter(|s| s.idle(now)).count();
        if idle == 0 {
            self.dropped += 1;
            return;
        }
        let pick = self.rng.range(0, idle as u64) as usize;
        let s = (0..slots.len())
            .filter(|&s| slots[s].idle(now))
            .nth(pick)
            .expect("an idle slot");
        self.slot_step(c, s);
    }

    /// Slot `s` of client `c` takes its next step: a holder acts on its
    /// tenure, a free slot starts an operation on a key no other slot of the
    /// client is using.
    fn slot_step(&mut self, c: usize, s: usize) {
        let local = self.client_local(c);
        if let Some(h) = &self.clients[c].slots[s].holding {
            if local >= h.deadline_local {
                self.clients[c].slots[s].holding = None;
            }
        }
        if let Some(h) = self.clients[c].slots[s].holding.clone() {
            self.key_names.set_lin_epoch(self.lin_epoch());
            if h.lin && !self.key_names.is_current_lin(&h.key) {
                // The epoch moved on: abandon the key (it expires unchecked).
                self.end_window(c, s, self.now);
                self.clients[c].slots[s].holding = None;
            } else {
                let pause = self.opts.faults.pause && self.net.faulty;
                let mut counter = self.clients[c].counter;
                let step = workload::choose_held(
                    &mut self.rng,
                    &h,
                    &mut counter,
                    pause,
                    self.opts.max_lease_ms,
                );
                self.clients[c].counter = counter;
                match step {
                    HolderStep::Send(a) => {
                        if matches!(a.kind, OpKind::Release(_)) {
                            // A holder stops acting as holder when it asks to release.
                            self.end_window(c, s, self.now);
                        }
                        self.send(c, Some(s), a, false);
                    }
                    HolderStep::UseToken => self.use_token(c, s),
                    HolderStep::PausePastDeadline => {
                        let wake = self.real_of(c, h.deadline_local) + 500_000;
                        self.end_window(c, s, self.now);
                        self.clients[c].slots[s].holding = None;
                        self.clients[c].slots[s].busy_until = wake;
                        let key = h.key.clone();
                        self.trace(|| format!("client {c} pauses past deadline on {key}"));
                        // After the pause it writes with its stale token; the
                        // resource must reject it if a newer token was used.
                        self.push(
                            wake,
                            Event::StaleWrite {
                                key: h.key,
                                token: h.token,
                            },
                        );
                    }
                }
                return;
            }
        }
        self.key_names.set_lin_epoch(self.lin_epoch());
        let client = &mut self.clients[c];
        let mut counter = client.counter;
        let busy = client.busy_keys();
        let a = workload::choose_free(
            &mut self.rng,
            c,
            &mut counter,
            &self.key_names,
            self.opts.max_lease_ms,
            &busy,
        );
        drop(busy);
        client.counter = counter;
        match a {
            Some(a) => self.send(c, Some(s), a, false),
            None => self.dropped += 1,
        }
    }

    fn lin_epoch(&self) -> u64 {
        self.now / (self.opts.max_lease_ms * 400).max(1)
    }

    /// An administrator changes the membership every one to four simulated
    /// seconds of the fault phase, through a client's node (which applies
    /// the change and tells every storing node): `set_w` to another majority
    /// value, or (with `admin_nodes`) `set_nodes` swapping one master with
    /// one replica (the storing nodes and the number of masters stay the
    /// same). A change that
    /// does not answer `configured` is sent again before any other.
    fn admin(&mut self) {
        if self.now >= self.quiet_at {
            return;
        }
        let next = self.now + self.rng.range(1_000_000, 4_000_000);
        self.push(next, Event::Admin);
        if self.admin_pending.is_some() || self.clients.is_empty() {
            return;
        }
        let req = match self.admin_retry.clone() {
            Some(req) => req,
            None => {
                let (masters, replicas, _) = self.members.clone();
                if self.opts.admin_nodes && !replicas.is_empty() && self.rng.chance(0.5) {
                    let m = self.rng.range(0, masters.len() as u64) as usize;
                    let r = self.rng.range(0, replicas.len() as u64) as usize;
                    let (mut masters, mut replicas) = (masters, replicas);
                    std::mem::swap(&mut masters[m], &mut replicas[r]);
                    masters.sort();
                    replicas.sort();
                    Request::SetNodes { masters, replicas }
                } else {
                    let n = masters.len();
                    let w = self.rng.range(n as u64 / 2 + 1, n as u64 + 1) as usize;
                    Request::SetW { w }
                }
            }
        };
        let kind = match &req {
            Request::SetW { w } => OpKind::SetW(*w),
            _ => OpKind::SetNodes,
        };
        self.admin_retry = Some(req.clone());
        let c = self.rng.range(0, self.clients.len() as u64) as usize;
        let action = workload::Action {
            req,
            kind,
            key: String::new(),
            remote: false,
        };
        self.send(c, None, action, false);
    }

    /// The administrator's change answered.
    fn admin_reply(&mut self, reply: &Reply) {
        self.admin_pending = None;
        if !matches!(reply, Ok(Response::Configured)) {
            return;
        }
        match self.admin_retry.take() {
            Some(Request::SetW { w }) => self.members.2 = w,
            Some(Request::SetNodes { masters, replicas }) => {
                self.members.0 = masters;
                self.members.1 = replicas;
            }
            _ => {}
        }
    }

    fn use_token(&mut self, c: usize, s: usize) {
        if let Some(h) = &self.clients[c].slots[s].holding {
            let key = h.key.clone();
            let token = h.token;
            self.resource_write(key, token);
        }
    }

    fn resource_write(&mut self, key: String, token: u64) {
        let highest = self.resource.entry(key).or_insert(0);
        if token < *highest {
            self.history.fenced_rejections += 1;
        } else {
            *highest = token;
        }
    }

    fn end_window(&mut self, c: usize, s: usize, at: u64) {
        if let Some(h) = &self.clients[c].slots[s].holding {
            let w = &mut self.history.windows[h.window];
            w.end = w.end.min(at);
        }
    }

    fn after_indeterminate(&mut self, c: usize, s: usize, op: usize) {
        // An update or release of unknown outcome: the holder no longer knows
        // its value, so it abandons the tenure.
        if matches!(
            self.history.ops[op].kind,
            OpKind::Update(..) | OpKind::Release(_)
        ) {
            self.end_window(c, s, self.now);
            self.clients[c].slots[s].holding = None;
        }
    }

    fn client_reply(&mut self, rid: u64, reply: Reply) {
        let Some(r) = self.requests.remove(&rid) else {
            return;
        };
        let c = r.client;
        self.trace(|| format!("client {c} reply {rid} {reply:?}"));
        let op = r.op;
        self.history.ops[op].ret = Some((self.now, reply.clone()));
        let Some(s) = r.slot else {
            self.admin_reply(&reply);
            return;
        };
        self.clients[c].slots[s].pending = None;
        self.clients[c].slots[s].pending_key = None;
        let _ = r.remote_node;
        let kind = self.history.ops[op].kind.clone();
        let key = self.history.ops[op].key.clone();
        match (&kind, &reply) {
            (OpKind::Lock(v), Ok(Response::Locked(lease))) => {
                let deadline_local =
                    r.send_local + (lease.waited + lease.validity).as_micros() as u64;
                let end = self.real_of(c, deadline_local);
                self.history.grants.push(Grant {
                    key: key.clone(),
                    token: lease.token.0,
                    invoke: self.history.ops[op].invoke,
                    ret: self.now,
                });
                let window = self.history.windows.len();
                self.history.windows.push(Window {
                    key: key.clone(),
                    client: c,
                    token: lease.token.0,
                    start: self.now,
                    end,
                });
                if !self.history.ops[op].probe {
                    self.clients[c].slots[s].holding = Some(Holding {
                        lin: key.starts_with('l'),
                        key,
                        value: v.clone(),
                        token: lease.token.0,
                        deadline_local,
                        window,
                    });
                    self.use_token(c, s);
                }
            }
            (OpKind::Extend(_), Ok(Response::Extended(lease))) => {
                let deadline_local =
                    r.send_local + (lease.waited + lease.validity).as_micros() as u64;
                let end = self.real_of(c, deadline_local);
                let now = self.now;
                let slot = &mut self.clients[c].slots[s];
                if let Some(h) = &mut slot.holding {
                    let w = &mut self.history.windows[h.window];
                    if w.end <= now {
                        // The reply came after the holder's validity ran
                        // out: it has already acted as if it lost the key,
                        // and a lost tenure is never taken up again.
                        slot.holding = None;
                    } else {
                        h.deadline_local = deadline_local;
                        w.end = end;
                    }
                }
            }
            (OpKind::Update(_, nv), Ok(Response::Updated { .. })) => {
                if let Some(h) = &mut self.clients[c].slots[s].holding {
                    h.value = nv.clone();
                }
            }
            (OpKind::Release(_), _) => {
                self.clients[c].slots[s].holding = None;
            }
            (_, Err(e)) if !matches!(e.code(), "held" | "not_owner" | "not_found") => {
                self.after_indeterminate(c, s, op);
            }
            (OpKind::Update(..), Err(_)) => {
                self.end_window(c, s, self.now);
                self.clients[c].slots[s].holding = None;
            }
            _ => {}
        }
        if self.clients[c].probe_stage > 0 {
            let t = self.now + 1;
            self.push(t, Event::ProbeStep(c));
        }
    }

    fn probe_step(&mut self, c: usize) {
        if self.clients[c].slots[0].pending.is_some() {
            return;
        }
        let stage = self.clients[c].probe_stage;
        let key = format!("probe{c}");
        let action = match stage {
            0 => workload::Action {
                req: Request::Lock {
                    key: format!("keep{c}").into_bytes(),
                    value: format!("keep{c}").into_bytes(),
                    lease: Duration::from_millis(self.opts.max_lease_ms),
                    wait: Duration::from_millis(0),
                },
                kind: OpKind::Lock(format!("keep{c}")),
                key: format!("keep{c}"),
                remote: false,
            },
            1 => workload::Action {
                req: Request::Lock {
                    key: key.clone().into_bytes(),
                    value: format!("probe{c}").into_bytes(),
                    lease: Duration::from_millis(1_000.min(self.opts.max_lease_ms)),
                    wait: Duration::from_millis(3_000),
                },
                kind: OpKind::Lock(format!("probe{c}")),
                key,
                remote: false,
            },
            2 => workload::Action {
                req: Request::WaitForRelease {
                    key: key.clone().into_bytes(),
                    timeout: Duration::from_millis(4_000),
                },
                kind: OpKind::WaitForRelease,
                key,
                remote: true,
            },
            // The handoff probe (after the convergence snapshot, which it
            // would otherwise race): a short lease, then a waiting lock on
            // the same key that must get it soon after the lease ends.
            3 | 4 => {
                let snapshot_done = self.probe_at + SNAPSHOT_AFTER_PROBE_US + 500_000;
                if self.now < snapshot_done {
                    self.push(snapshot_done, Event::ProbeStep(c));
                    return;
                }
                let key = format!("handoff{c}");
                let value = format!("{key}-{}", stage - 2);
                workload::Action {
                    req: Request::Lock {
                        key: key.clone().into_bytes(),
                        value: value.clone().into_bytes(),
                        lease: liveness::handoff_lease(self.opts.max_lease_ms),
                        wait: Duration::from_millis(if stage == 3 { 0 } else { 3_000 }),
                    },
                    kind: OpKind::Lock(value),
                    key,
                    remote: false,
                }
            }
            _ => return,
        };
        self.clients[c].probe_stage = stage + 1;
        self.send(c, Some(0), action, true);
    }

    fn crash(&mut self, p: usize) {
        let proc = &mut self.procs[p];
        if proc.node.take().is_some() {
            proc.timer_gen += 1;
            proc.timer_at = None;
        }
    }

    fn apply_fault(&mut self, f: Fault) {
        let n = self.opts.nodes();
        let storing = self.opts.masters + self.opts.replicas;
        match f {
            Fault::Start(i) => {
                let e = self.schedule.events[i].clone();
                let end = self.now + e.for_ms.max(1) as u64 * 1_000;
                match e.kind {
                    FaultKind::Partition(p) => {
                        let links = faults::links(&p, n, self.opts.masters, storing);
                        self.net.partition(i, links);
                        self.push(end, Event::Fault(Fault::End(i)));
                    }
                    FaultKind::Heal => self.net.heal(),
                    FaultKind::Crash { node, .. } => {
                        if storing > 0 {
                            self.crash(node as usize % storing);
                            self.push(end, Event::Fault(Fault::End(i)));
                        }
                    }
                    FaultKind::Pause(node) => {
                        let proc = &mut self.procs[node as usize % n];
                        proc.paused_until = proc.paused_until.max(end);
                    }
                    FaultKind::Loss | FaultKind::Dup | FaultKind::Reorder | FaultKind::Delay => {
                        self.net.bursts[burst(&e.kind) as usize] += 1;
                        self.push(end, Event::Fault(Fault::End(i)));
                    }
                }
            }
            Fault::End(i) => {
                let kind = self.schedule.events[i].kind.clone();
                match kind {
                    FaultKind::Partition(_) => self.net.lift(i),
                    FaultKind::Crash { node, jump_ms } => {
                        self.restart(node as usize % storing.max(1), jump_ms as u64 * 1_000)
                    }
                    FaultKind::Loss | FaultKind::Dup | FaultKind::Reorder | FaultKind::Delay => {
                        let b = &mut self.net.bursts[burst(&kind) as usize];
                        *b = b.saturating_sub(1);
                    }
                    FaultKind::Heal | FaultKind::Pause(_) => {}
                }
            }
            Fault::Restart(p) => self.restart(p, 0),
            Fault::CrashAllMasters => {
                for p in 0..self.opts.masters {
                    self.crash(p);
                }
                let at = self.now + 200_000;
                for p in 0..self.opts.masters {
                    self.push(at, Event::Fault(Fault::Restart(p)));
                }
            }
            Fault::QuietStart => {
                self.net.faulty = false;
                if self.opts.heal_in_quiet {
                    self.net.heal();
                }
                for p in 0..self.procs.len() {
                    self.procs[p].paused_until = self.procs[p].paused_until.min(self.now);
                    if self.procs[p].node.is_none() {
                        self.restart(p, 0);
                    }
                }
            }
            Fault::Snapshot => self.snapshot = Some(self.stores()),
            Fault::Probe => {
                self.workload_on = false;
                for c in 0..self.clients.len() {
                    // A client stops waiting for its operations (their
                    // outcomes stay unknown) and starts the probe.
                    for s in 0..self.clients[c].slots.len() {
                        let slot = &mut self.clients[c].slots[s];
                        slot.pending_key = None;
                        if let Some(rid) = slot.pending.take() {
                            self.requests.remove(&rid);
                        }
                    }
                    self.push(self.now, Event::ProbeStep(c));
                }
            }
        }
    }

    /// Restarts a crashed node; a reboot starts a fresh monotonic clock,
    /// `jump_us` ahead of where the old one would read.
    fn restart(&mut self, p: usize, jump_us: u64) {
        if self.procs[p].node.is_some() {
            return;
        }
        let (masters, replicas, w) = self.members.clone();
        let proc = &mut self.procs[p];
        proc.config.masters = masters;
        proc.config.replicas = replicas;
        proc.config.w = w;
        proc.clock.offset = proc.clock.offset.saturating_add(jump_us);
        proc.timer_real = None;
        let local = proc.clock.local(self.now);
        let ceiling = if self.opts.persist_ceiling {
            proc.persisted
        } else {
            None
        };
        let node = if self.opts.quarantine {
            Node::restarted_with(
                proc.config.clone(),
                local,
                ceiling,
                proc.membership.as_ref(),
            )
        } else {
            Node::new(proc.config.clone(), local)
        };
        proc.node = Some(node.expect("valid config"));
        self.trace(|| format!("restart {p}"));
        self.drain(p);
    }
}

fn burst(k: &FaultKind) -> Burst {
    match k {
        FaultKind::Loss => Burst::Loss,
        FaultKind::Dup => Burst::Dup,
        FaultKind::Reorder => Burst::Reorder,
        _ => Burst::Delay,
    }
}

fn random_clock(rng: &mut SimRng, skew: bool, drift: f64) -> Clock {
    if !skew {
        return Clock {
            offset: 1_000_000,
            rate: 0.0,
        };
    }
    Clock {
        offset: rng.range(1_000_000, 1 << 40),
        rate: (rng.unit() * 2.0 - 1.0) * drift,
    }
}

/// The outcome of one run.
pub struct RunResult {
    /// The seed.
    pub seed: u64,
    /// What the checkers found.
    pub report: Report,
    /// Events processed.
    pub events: u64,
    /// Simulated real time, in microseconds.
    pub sim_micros: u64,
    /// The event trace, if asked for.
    pub trace: String,
    /// Every operation (for outcome counts).
    pub ops: Vec<Op>,
    /// Workload arrivals dropped because their client had no idle slot (or
    /// no free key).
    pub dropped: u64,
    /// Length of the fault phase, in microseconds.
    pub fault_phase_micros: u64,
    /// The fault schedule the run applied (drawn from the seed or given).
    pub schedule: Schedule,
}

impl RunResult {
    /// Workload operations started during the fault phase.
    pub fn fault_phase_ops(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| !o.probe && o.invoke < self.fault_phase_micros)
            .count()
    }
}

/// Runs one seed to the end.
pub fn run(seed: u64, opts: &SimOptions, trace: bool) -> RunResult {
    World::new(seed, opts.clone(), trace).run()
}

/// Shrinks the fault schedule of a failing run: drops events one at a time
/// (last first) while a checker that fired still fires, until no single
/// event can go. Returns the options that replay the smaller schedule (a
/// schedule drawn from the seed comes back explicit, with `after_draw`, so
/// that the rest of the run stays the seed's), or `None` if the run passes.
/// Deterministic, like every run (`locker-sim replay --shrink`).
pub fn shrink(seed: u64, opts: &SimOptions) -> Option<SimOptions> {
    let first = run(seed, opts, false);
    if first.report.ok() {
        return None;
    }
    let mut best = SimOptions {
        schedule: Some(first.schedule.clone()),
        after_draw: opts.after_draw || opts.schedule.is_none(),
        ..opts.clone()
    };
    let fired: Vec<&'static str> = first
        .report
        .violations
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    loop {
        let mut smaller = false;
        let events = best.schedule.as_ref().map_or(0, |s| s.events.len());
        for i in (0..events).rev() {
            let mut candidate = best.clone();
            if let Some(s) = &mut candidate.schedule {
                s.events.remove(i);
            }
            let r = run(seed, &candidate, false);
            if fired.iter().any(|c| !r.report.of(c).is_empty()) {
                best = candidate;
                smaller = true;
            }
        }
        if !smaller {
            return Some(best);
        }
    }
}
