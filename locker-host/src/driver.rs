//! The node task: it owns the [`locker_core::Node`], feeds it peer messages,
//! requests and timeouts, and performs its outputs.

use locker_core::envelope::{Envelope, Status};
use locker_core::{Node, NodeId, Output, RequestId, Time, Token};
use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::counters::{bump, Counters};
use crate::outbox::Outbox;
use crate::runtime::Runtime;

/// Queue bound of the driver's inbox.
pub(crate) const INBOX: usize = 16384;

/// Inputs taken from the inbox at most before the driver looks at its timer
/// and flushes (so a flood cannot starve timeouts or delay writes).
const BURST: usize = 1024;

/// Where a reply goes.
pub(crate) enum ReplyTo {
    /// An embedded client waiting on a one-shot channel.
    Local(async_channel::Sender<Envelope>),
    /// A client connection's outbox.
    Remote(Arc<Outbox>),
}

/// What the driver task receives.
pub(crate) enum Input {
    /// A message from an authenticated peer.
    Peer {
        from: NodeId,
        msg: locker_core::Message,
    },
    /// A client request or status request.
    Request { env: Envelope, reply: ReplyTo },
}

/// The driver's pending wake-up.
type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A peer link's current connection, if it is up.
pub(crate) type Slot = Arc<Mutex<Option<Arc<Outbox>>>>;

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

/// The node task's state.
pub(crate) struct Driver {
    pub node: Node,
    /// The instant the core's clock reads zero.
    pub start: Instant,
    pub links: HashMap<NodeId, Slot>,
    pub link_state: Vec<(NodeId, Arc<AtomicBool>)>,
    pub counters: Arc<Counters>,
    pub data_dir: Option<PathBuf>,
    pending: HashMap<u64, (u64, ReplyTo)>,
    next_request: u64,
    dirty: Dirty,
}

impl Driver {
    pub fn new(node: Node, start: Instant, counters: Arc<Counters>) -> Driver {
        Driver {
            node,
            start,
            links: HashMap::new(),
            link_state: Vec::new(),
            counters,
            data_dir: None,
            pending: HashMap::new(),
            next_request: 0,
            dirty: Dirty::default(),
        }
    }

    fn now(&self) -> Time {
        Time::from_micros(self.start.elapsed().as_micros() as u64)
    }

    /// Runs until every sender of the inbox is gone.
    pub async fn run<R: Runtime>(mut self, runtime: R, inbox: async_channel::Receiver<Input>) {
        let mut timer: Option<(Instant, Sleep)> = None;
        loop {
            let wake = self
                .node
                .poll_timeout()
                .map(|t| self.start + Duration::from_micros(t.as_micros()));
            // A new timer only when the wake-up moved earlier: one armed
            // for an earlier instant fires early, the core finds nothing due
            // and names the later instant then. Timers are re-armed far less
            // often than the wake-up moves (every request moves it).
            let armed = timer.as_ref().map(|(at, _)| *at);
            if let Some(at) = wake.filter(|w| armed.is_none_or(|a| *w < a)) {
                let sleep: Sleep = Box::pin(runtime.sleep_until(at));
                timer = Some((at, sleep));
            }
            let fired = futures_lite::future::or(
                async {
                    match inbox.recv().await {
                        Ok(input) => Some(Some(input)),
                        Err(_) => None,
                    }
                },
                async {
                    match timer.as_mut() {
                        Some((_, sleep)) => sleep.as_mut().await,
                        None => std::future::pending().await,
                    }
                    Some(None)
                },
            )
            .await;
            match fired {
                None => return,
                Some(Some(input)) => {
                    self.handle(input);
                    // Take what is already queued before sleeping again.
                    for _ in 0..BURST {
                        match inbox.try_recv() {
                            Ok(input) => self.handle(input),
                            Err(_) => break,
                        }
                    }
                    // The inbox is polled first: under a flood the timer
                    // would never win, so look at the clock here too.
                    if wake.is_some_and(|at| Instant::now() >= at) {
                        timer = None;
                        self.timeout();
                    }
                }
                Some(None) => {
                    timer = None;
                    self.timeout();
                }
            }
            // One write per connection for the whole burst.
            self.dirty.flush();
        }
    }

    fn timeout(&mut self) {
        let now = self.now();
        self.node.handle_timeout(now);
        self.drain();
    }

    fn status(&self) -> Status {
        Status {
            summary: self.node.summary(self.now()),
            role: self.node.role(),
            links: self
                .link_state
                .iter()
                .map(|(p, up)| (*p, up.load(Ordering::Relaxed)))
                .collect(),
            counters: self.counters.to_vec(),
        }
    }

    fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Peer { from, msg } => self.node.handle_message(now, from, msg),
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

    fn send_to_peer(&mut self, to: NodeId, msg: locker_core::Message) {
        let Some(slot) = self.links.get(&to) else {
            debug!(%to, "no link to node");
            return;
        };
        let outbox = slot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match outbox {
            Some(o) if o.push(&Envelope::Peer(msg)) => self.dirty.push(&o),
            _ => bump(&self.counters.link_drops),
        }
    }
}

fn ceiling_path(dir: &Path) -> PathBuf {
    dir.join("token-ceiling")
}

/// The persisted token ceiling, if any.
pub(crate) fn read_ceiling(dir: &Path) -> Option<Token> {
    let text = std::fs::read_to_string(ceiling_path(dir)).ok()?;
    text.trim().parse().ok().map(Token)
}

fn write_ceiling(dir: &Path, token: Token) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join("token-ceiling.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    writeln!(f, "{}", token.0)?;
    f.sync_all()?;
    std::fs::rename(tmp, ceiling_path(dir))
}
