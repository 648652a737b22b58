//! The node's driver: the [`locker_core::Node`] behind a mutex, fed in place
//! by the task that received an input (run to completion), plus one task
//! that owns the timer and the embedded clients' inbox, and one that writes
//! the outputs connection tasks leave behind under load.
//!
//! # Why inputs are handled where they arrive
//!
//! Every protocol hop used to cost two task wake-ups: the connection's reader
//! woke, decoded and sent the input over a channel, then the driver task woke
//! to run the core and write. On a loaded machine the second wake-up is often
//! a cross-thread one (a futex wake and a context switch) and dominated the
//! profile. Now the reader that decoded a batch of frames locks the core,
//! handles them, and writes the outputs itself: one wake-up per hop. The lock
//! is held only while the core runs and frames are encoded; the writes happen
//! after it is released, so another connection's input can be handled
//! meanwhile. Under load the writes are left to the writer task instead (see
//! [`SharedDriver::handle_read`]), so that many inputs share one write.

use event_listener::Event;
use locker_core::envelope::{Envelope, Status};
use locker_core::{Node, NodeId, Output, RequestId, Time};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tracing::{debug, error};

use crate::busy_poll;
use crate::counters::{bump, Counters};
use crate::fatal::{FatalError, Stopped};
use crate::outbox::Outbox;
use crate::peers::{Peers, Route};
use crate::persist::{DataDir, State};
use crate::runtime::Runtime;
use crate::signal::Shutdown;

/// Queue bound of the driver's inbox.
pub(crate) const INBOX: usize = 16384;

/// Inputs taken from the inbox under one lock at most (so a flood of
/// embedded requests cannot hold the core for long or delay writes).
const BURST: usize = 1024;

/// Where a reply goes.
pub(crate) enum ReplyTo {
    /// An embedded client waiting on a one-shot channel.
    Local(async_channel::Sender<Envelope>),
    /// A client connection's outbox.
    Remote(Arc<Outbox>),
}

/// Timeouts are handled at most once per this interval. Under load the core
/// names a new deadline every few hundred microseconds (each finished
/// attempt is kept for one rpc timeout), which would wake the timer task for
/// each; its deadlines (retries from 2 ms, rpc and promise timeouts of
/// hundreds of ms, leases) tolerate a millisecond of lateness, and handling
/// a timeout late is always safe (a host may be descheduled as long).
const TIMER_GRANULARITY: Duration = Duration::from_millis(1);

/// Client requests in flight from which connection tasks leave their writes
/// to the writer task (see [`SharedDriver::handle_read`]).
const DEFER_WRITES_FROM: usize = 4;

/// One input to the core.
pub(crate) enum Input {
    /// A message from an authenticated peer.
    Peer {
        from: NodeId,
        msg: locker_core::Message,
    },
    /// A peer says where it listens (see [`crate::peers`]).
    PeerAddress { from: NodeId, addr: SocketAddr },
    /// A client request or status request.
    Request { env: Envelope, reply: ReplyTo },
}

/// A peer link's current connection, if it is up.
pub(crate) type Slot = Arc<Mutex<Option<Arc<Outbox>>>>;

/// Outboxes written to during the current burst of inputs.
#[derive(Default)]
pub(crate) struct Dirty(Vec<Arc<Outbox>>);

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
                let _ = tx.try_send(env);
            }
            ReplyTo::Remote(outbox) => {
                if outbox.push(&env) {
                    dirty.push(&outbox);
                } else {
                    bump(&counters.replies_dropped);
                }
            }
        }
    }
}

/// An open peer connection to this node, counted while it lives.
pub(crate) struct PeerConnection {
    driver: Arc<SharedDriver>,
    peer: NodeId,
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        self.driver.lock().peers.disconnected(self.peer);
    }
}

/// The node task's state.
pub(crate) struct Driver {
    pub node: Node,
    /// The instant the core's clock reads zero.
    pub start: Instant,
    /// The peer links, kept in step with the membership in force.
    pub peers: Peers,
    pub counters: Arc<Counters>,
    /// The data directory and what was last written to it.
    pub storage: Option<(DataDir, State)>,
    /// Raised to stop every task of the node (after a fatal error).
    shutdown: Shutdown,
    /// Where a fatal error is reported.
    stopped: Stopped,
    /// A fatal error stopped the node: the core is never run again, so
    /// nothing that depends on the failed step is revealed.
    halted: bool,
    pending: HashMap<u64, (u64, ReplyTo)>,
    next_request: u64,
    dirty: Dirty,
    /// The core time the timer task's timer is set for, if any.
    armed: Option<Time>,
    /// The writer task was told to flush `dirty` and has not yet taken it.
    writer_woken: bool,
}

/// The driver shared by every task that feeds it.
pub(crate) struct SharedDriver {
    driver: Mutex<Driver>,
    /// Wakes the timer task when the core's next wake-up moved earlier than
    /// its timer.
    rearm: Event,
    /// Wakes the writer task: outputs wait in `Driver::dirty`.
    flush_wanted: Event,
}

impl SharedDriver {
    pub fn new(driver: Driver) -> Arc<SharedDriver> {
        Arc::new(SharedDriver {
            driver: Mutex::new(driver),
            rearm: Event::new(),
            flush_wanted: Event::new(),
        })
    }

    /// Runs `feed` (inputs read from a connection) on the locked driver.
    /// With few client requests in flight the outputs are written at once,
    /// as [`SharedDriver::handle`] does: nothing else is likely to share the
    /// writes, and latency is what counts. With more, they are left to the
    /// writer task, which on a one-thread executor runs after the other
    /// connection tasks woken in the same turn of the reactor have handled
    /// their inputs: one write per peer for all of them instead of one per
    /// input. Measured with `locker bench` at 64 clients: 5.1 sends per
    /// lock+release cycle instead of 8.4, and about 13% less CPU per cycle;
    /// at one client, writing at once was faster.
    pub fn handle_read(&self, written: &mut Dirty, feed: impl FnOnce(&mut Driver)) {
        busy_poll::touch();
        let (rearm, wake_writer) = {
            let mut driver = self.lock();
            feed(&mut driver);
            let busy = driver.pending.len() >= DEFER_WRITES_FROM;
            let wake_writer = busy && !driver.dirty.0.is_empty() && !driver.writer_woken;
            if wake_writer {
                driver.writer_woken = true;
            }
            if !busy {
                std::mem::swap(&mut driver.dirty, written);
            }
            (driver.wake_moved_earlier(), wake_writer)
        };
        if rearm {
            self.rearm.notify(1);
        }
        if wake_writer {
            self.flush_wanted.notify(1);
        }
        written.flush();
    }

    /// Writes what the connection tasks left in `Driver::dirty`, each time
    /// one wakes it.
    pub async fn run_writer(self: Arc<Self>) {
        let mut written = Dirty::default();
        loop {
            let wanted = self.flush_wanted.listen();
            {
                let mut driver = self.lock();
                std::mem::swap(&mut driver.dirty, &mut written);
                driver.writer_woken = false;
            }
            written.flush();
            wanted.await;
        }
    }

    /// Counts an authenticated peer connection from `peer` until the
    /// returned guard is dropped (see [`crate::peers`]: a non-member is
    /// linked back while it is connected).
    pub fn peer_connection(self: &Arc<Self>, peer: NodeId) -> PeerConnection {
        self.lock().peers.connected(peer);
        PeerConnection {
            driver: self.clone(),
            peer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Driver> {
        match self.driver.lock() {
            Ok(driver) => driver,
            Err(poisoned) => {
                // A task panicked while the core ran: the core's state may be
                // half updated, so the node stops instead of serving from it.
                let mut driver = poisoned.into_inner();
                if !driver.halted {
                    driver.halt(FatalError::Panicked);
                }
                driver
            }
        }
    }

    /// See [`LocalNode::is_ready`](crate::LocalNode::is_ready).
    pub fn is_ready(&self) -> bool {
        self.lock().is_ready()
    }

    /// Runs `feed` on the locked driver, then writes its outputs after
    /// releasing the lock. `written` is the caller's scratch list (kept to
    /// reuse its allocation); it is empty again on return.
    pub fn handle(&self, written: &mut Dirty, feed: impl FnOnce(&mut Driver)) {
        let rearm = {
            let mut driver = self.lock();
            feed(&mut driver);
            std::mem::swap(&mut driver.dirty, written);
            driver.wake_moved_earlier()
        };
        if rearm {
            self.rearm.notify(1);
        }
        // One write per connection for the whole burst.
        written.flush();
    }

    /// The timer and the embedded clients' requests: runs until every sender
    /// of the inbox is gone.
    pub async fn run<R: Runtime>(
        self: Arc<Self>,
        runtime: R,
        inbox: async_channel::Receiver<Input>,
    ) {
        enum Woken {
            Input(Input),
            InboxClosed,
            Timer,
            Rearm,
        }
        let mut written = Dirty::default();
        // No timeout is handled before this instant (see TIMER_GRANULARITY).
        let mut not_before = Instant::now();
        loop {
            // Listen before reading the wake-up, so a move in between is not lost.
            let rearm = self.rearm.listen();
            let wake = {
                let mut driver = self.lock();
                driver.armed = driver.node.poll_timeout();
                driver
                    .armed
                    .map(|t| (driver.start + Duration::from_micros(t.as_micros())).max(not_before))
            };
            // A timer that fires before the core's wake-up (it moved later)
            // only costs a look: the core finds nothing due and names the
            // later instant then.
            let woken = futures_lite::future::or(
                async {
                    match inbox.recv().await {
                        Ok(input) => Woken::Input(input),
                        Err(_) => Woken::InboxClosed,
                    }
                },
                futures_lite::future::or(
                    async {
                        match wake {
                            Some(at) => runtime.sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                        Woken::Timer
                    },
                    async {
                        rearm.await;
                        Woken::Rearm
                    },
                ),
            )
            .await;
            match woken {
                Woken::InboxClosed => return,
                Woken::Rearm => {}
                Woken::Timer => {
                    not_before = Instant::now() + TIMER_GRANULARITY;
                    self.handle(&mut written, |driver| driver.timeout());
                }
                Woken::Input(input) => self.handle(&mut written, |driver| {
                    busy_poll::touch();
                    driver.handle(input);
                    // Take what is already queued under the same lock.
                    for _ in 0..BURST {
                        match inbox.try_recv() {
                            Ok(input) => driver.handle(input),
                            Err(_) => break,
                        }
                    }
                    // Under a flood of inputs the timer branch may lose
                    // every race: look at the clock here too.
                    let now = Instant::now();
                    if wake.is_some_and(|at| now >= at) {
                        not_before = now + TIMER_GRANULARITY;
                        driver.timeout();
                    }
                }),
            }
        }
    }
}

impl Driver {
    /// A driver whose links start with the membership `node` runs.
    pub fn new(
        node: Node,
        start: Instant,
        counters: Arc<Counters>,
        mut peers: Peers,
        shutdown: Shutdown,
        stopped: Stopped,
    ) -> Driver {
        let config = node.config();
        peers.set_members(&config.masters, &config.replicas);
        Driver {
            node,
            start,
            peers,
            counters,
            storage: None,
            shutdown,
            stopped,
            halted: false,
            pending: HashMap::new(),
            next_request: 0,
            dirty: Dirty::default(),
            armed: None,
            writer_woken: false,
        }
    }

    fn now(&self) -> Time {
        Time::from_micros(self.start.elapsed().as_micros() as u64)
    }

    fn timeout(&mut self) {
        if self.halted {
            return;
        }
        let now = self.now();
        self.node.handle_timeout(now);
        self.drain();
    }

    /// Whether a write through this node can find a quorum of masters now:
    /// it is not a quarantined master, and the masters it reaches both ways
    /// (its link to them up and theirs to it connected), with itself if a
    /// master, are a quorum.
    fn is_ready(&self) -> bool {
        if self.halted {
            return false;
        }
        let config = self.node.config();
        let me = config.id;
        if self.node.is_recovering(self.now()) {
            // A quarantined master has just started, and so may its peers.
            return false;
        }
        let mut reachable = config
            .masters
            .iter()
            .filter(|&&m| m != me && self.peers.reaches(m))
            .count();
        if config.masters.contains(&me) {
            reachable += 1;
        }
        reachable >= config.w
    }

    /// Stops the node for good after `error`: the core is not run again, no
    /// later output is performed, waiting requests end (their senders are
    /// dropped), and every task of the node is told to stop.
    fn halt(&mut self, error: FatalError) {
        error!(node = %self.node.id(), error = %error, "stopping the node");
        self.halted = true;
        while self.node.poll_output().is_some() {}
        self.pending.clear();
        self.stopped.set(error);
        self.shutdown.raise();
    }

    /// Writes `change` of the persisted state through to the data directory
    /// (if any). False when the write failed: the node has halted.
    fn persist(&mut self, change: impl FnOnce(&mut State)) -> bool {
        let Some((dir, state)) = &mut self.storage else {
            return true;
        };
        change(state);
        match dir.store(state) {
            Ok(()) => true,
            Err(e) => {
                self.halt(FatalError::Storage(e));
                false
            }
        }
    }

    fn status(&self) -> Status {
        Status {
            ready: self.is_ready(),
            summary: self.node.summary(self.now()),
            role: self.node.role(),
            links: self.peers.states(),
            counters: self.counters.to_vec(),
        }
    }

    /// Whether the core now wants to wake before the armed timer; if so, the
    /// new instant counts as armed (the caller tells the timer task).
    fn wake_moved_earlier(&mut self) -> bool {
        match self.node.poll_timeout() {
            Some(wake) if self.armed.is_none_or(|armed| wake < armed) => {
                self.armed = Some(wake);
                true
            }
            _ => false,
        }
    }

    /// Feeds one input to the core and queues its outputs.
    pub(crate) fn handle(&mut self, input: Input) {
        if self.halted {
            return;
        }
        let now = self.now();
        match input {
            Input::Peer { from, msg } => self.node.handle_message(now, from, msg),
            Input::PeerAddress { from, addr } => self.peers.learned_address(from, addr),
            Input::Request { env, reply } => match env {
                Envelope::ClientRequest { id, request } => {
                    bump(&self.counters.requests);
                    self.next_request += 1;
                    let rid = self.next_request;
                    self.pending.insert(rid, (id, reply));
                    self.node.handle_request(now, RequestId(rid), request);
                }
                Envelope::StatusRequest { id } => {
                    let status = self.status();
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
                Output::Send { to, msg } => self.send_to_peer(to, msg),
                Output::Reply { id, reply } => {
                    if let Some((cid, to)) = self.pending.remove(&id.0) {
                        to.send(
                            Envelope::ClientReply { id: cid, reply },
                            &self.counters,
                            &mut self.dirty,
                        );
                    }
                }
                // Rare (once per token block, once per membership step or
                // vote) and must finish before any later output: a blocking
                // write is the rule here, and a failed one stops the node.
                Output::PersistTokenCeiling(token) => {
                    if !self.persist(|s| s.ceiling = Some(token)) {
                        return;
                    }
                }
                Output::PersistMembership(membership) => {
                    let (masters, replicas) =
                        (membership.masters.clone(), membership.replicas.clone());
                    if !self.persist(move |s| s.membership = Some(*membership)) {
                        return;
                    }
                    // Emitted on every applied change (and on Paxos votes,
                    // which leave the members as they are): the links
                    // follow before the announcements that come next.
                    self.peers.set_members(&masters, &replicas);
                }
            }
        }
    }

    fn send_to_peer(&mut self, to: NodeId, msg: locker_core::Message) {
        match self.peers.route(to) {
            Route::Up(o) if o.push(&Envelope::Peer(msg)) => self.dirty.push(&o),
            Route::Up(_) | Route::Down => bump(&self.counters.link_drops),
            Route::NoLink => debug!(%to, "no link to node"),
        }
    }
}
