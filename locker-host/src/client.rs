//! The client API: every operation as an async method, over TCP or straight
//! to an embedded node.

use locker_core::envelope::{Envelope, Status, Who};
use locker_core::wire::DEFAULT_MAX_FRAME;
use locker_core::{EntryView, NodeId, Reply, Request, Response, Summary, Token};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crate::busy_poll;
use crate::conn::{self, ConnError};
use crate::driver::{Input, ReplyTo};
use crate::error::Error;
use crate::guard::LeaseGuard;
use crate::lease::GuardOptions;
use crate::outbox::Outbox;
use crate::registry::{name_key, Consistency};
use crate::runtime::{timeout_at, Runtime};
use crate::signal::Shutdown;

/// The lease of [`Client::lag`]'s probe key.
const LAG_LEASE: Duration = Duration::from_secs(1);

/// How long past a request's own bound (its wait, or its timeout) a client
/// waits for the answer before it gives up with [`Error::Timeout`]. The
/// node answers every request by that bound; the grace covers the network
/// and a loaded node, and ends calls to a node that stays silent.
pub const REPLY_GRACE: Duration = Duration::from_secs(5);

/// How long a membership change may take before its answer: proposals
/// retried against contending proposers, then the announcement's resends
/// (each a few RPC timeouts at the default timings).
const MEMBERSHIP_CHANGE_BOUND: Duration = Duration::from_secs(20);
/// A lease as its holder sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// The fencing token of this tenure.
    pub token: Token,
    /// How long the lease is valid, counted from `sent`.
    pub validity: Duration,
    /// The instant the validity counts from: when the request was sent, or
    /// later by the time its node held it before the attempt that
    /// succeeded ([`Lease::waited`](locker_core::Lease::waited)).
    pub sent: Instant,
    /// The holder's deadline: `sent + validity`. Stop acting as holder after it.
    pub deadline: Instant,
}

/// Replies awaited on a remote connection, by request id; `None` once the
/// connection is gone.
type Pending = Arc<Mutex<Option<HashMap<u64, Arc<ReplySlot>>>>>;

/// Where the connection's reader task leaves one reply for the request
/// waiting on it. One allocation and a direct wake per request, where a
/// one-shot channel cost three allocations and an event list (measured in
/// `locker bench`'s load process at 64 clients: channel and event code was
/// about 8 % of its profile).
#[derive(Default)]
struct ReplySlot(Mutex<SlotState>);

#[derive(Default)]
struct SlotState {
    reply: Option<Envelope>,
    /// The connection ended before a reply came.
    closed: bool,
    waker: Option<Waker>,
}

impl ReplySlot {
    fn state(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Leaves the reply (`None`: the connection is gone) and wakes the waiter.
    fn fill(&self, reply: Option<Envelope>) {
        let waker = {
            let mut st = self.state();
            match reply {
                Some(env) => st.reply = Some(env),
                None => st.closed = true,
            }
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves with the reply, or `Closed` if the connection ended first.
    async fn wait(&self) -> Result<Envelope, Error> {
        std::future::poll_fn(|cx| {
            let mut st = self.state();
            if let Some(env) = st.reply.take() {
                return Poll::Ready(Ok(env));
            }
            if st.closed {
                return Poll::Ready(Err(Error::Closed));
            }
            if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                st.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

enum Transport {
    /// Straight to a node in this process; `Shutdown` is the node's, so a
    /// call ends when the node stops.
    Embedded(async_channel::Sender<Input>, Shutdown),
    Remote {
        outbox: Arc<Outbox>,
        pending: Pending,
        next: AtomicU64,
    },
}

impl Drop for Transport {
    fn drop(&mut self) {
        // The last clone of the client is gone: end the connection.
        if let Transport::Remote { outbox, .. } = self {
            outbox.close();
        }
    }
}

/// Locks the pending map, surviving a panicked holder.
fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, Option<HashMap<u64, Arc<ReplySlot>>>> {
    pending.lock().unwrap_or_else(|e| e.into_inner())
}

/// A handle for sending requests to one node, its own tasks (the reader of a
/// remote connection, lease guards) spawned on `R`. Cheap to clone.
///
/// ```no_run
/// # async fn f<R: locker_host::Runtime + Default>() -> Result<(), locker_host::Error> {
/// use std::time::Duration;
/// let client = locker_host::Client::<R>::connect("127.0.0.1:7000".parse().unwrap(), None).await?;
/// let held = client.lock("door", "alice", Duration::from_secs(5)).await?;
/// println!("token {}", held.token);
/// client.release("door", "alice", Some(held.token)).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client<R: Runtime> {
    runtime: R,
    transport: Arc<Transport>,
    /// How long operations keep retrying a contended or unreachable key.
    pub wait: Duration,
}

impl<R: Runtime + Default> Client<R> {
    /// Connects to a node's client port and authenticates with `secret`
    /// (`None` when the cluster runs without one, on loopback).
    pub async fn connect(addr: SocketAddr, secret: Option<&[u8]>) -> Result<Client<R>, Error> {
        Self::connect_on(R::default(), addr, secret).await
    }
}

impl<R: Runtime> Client<R> {
    pub(crate) fn embedded(
        runtime: R,
        input: async_channel::Sender<Input>,
        node_shutdown: Shutdown,
    ) -> Client<R> {
        Client {
            runtime,
            transport: Arc::new(Transport::Embedded(input, node_shutdown)),
            wait: Duration::from_secs(5),
        }
    }

    /// [`Client::connect`], with the client's tasks spawned on `runtime`.
    pub async fn connect_on(
        runtime: R,
        addr: SocketAddr,
        secret: Option<&[u8]>,
    ) -> Result<Client<R>, Error> {
        let (mut reader, writer) = conn::connect(
            &runtime,
            addr,
            secret.unwrap_or_default(),
            Who::Client,
            DEFAULT_MAX_FRAME,
        )
        .await
        .map_err(|e| match e {
            ConnError::Auth(a) => Error::Auth(a),
            ConnError::Io(io) => Error::Io(io),
            ConnError::Timeout => Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "handshake timed out",
            )),
            _ => Error::Closed,
        })?;
        let outbox = Outbox::new(&runtime, writer);
        let out = outbox.clone();
        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let p = pending.clone();
        runtime.spawn(async move {
            while let Ok(env) = reader.next().await {
                busy_poll::touch();
                let id = match &env {
                    Envelope::ClientReply { id, .. } | Envelope::StatusReply { id, .. } => *id,
                    _ => break,
                };
                let waiter = lock(&p).as_mut().and_then(|m| m.remove(&id));
                if let Some(w) = waiter {
                    w.fill(Some(env));
                }
            }
            // Waiters see `Closed`.
            let waiters = lock(&p).take().unwrap_or_default();
            for w in waiters.into_values() {
                w.fill(None);
            }
            out.close();
        });
        Ok(Client {
            runtime,
            transport: Arc::new(Transport::Remote {
                outbox,
                pending,
                next: AtomicU64::new(1),
            }),
            wait: Duration::from_secs(5),
        })
    }

    /// Sets how long operations keep retrying (default 5 s).
    pub fn with_wait(mut self, wait: Duration) -> Client<R> {
        self.wait = wait;
        self
    }

    /// Sends one envelope and waits for its answer, for at most `bound`
    /// plus [`REPLY_GRACE`]: every call ends, whatever the node does.
    async fn roundtrip(
        &self,
        bound: Duration,
        make: impl FnOnce(u64) -> Envelope,
    ) -> Result<Envelope, Error> {
        let deadline = self.runtime.now() + bound + REPLY_GRACE;
        timeout_at(&self.runtime, deadline, self.exchange(make))
            .await
            .unwrap_or(Err(Error::Timeout))
    }

    async fn exchange(&self, make: impl FnOnce(u64) -> Envelope) -> Result<Envelope, Error> {
        match &*self.transport {
            Transport::Embedded(input, node_shutdown) => {
                let (tx, rx) = async_channel::bounded(1);
                let env = make(0);
                let call = async {
                    input
                        .send(Input::Request {
                            env,
                            reply: ReplyTo::Local(tx),
                        })
                        .await
                        .map_err(|_| Error::Closed)?;
                    rx.recv().await.map_err(|_| Error::Closed)
                };
                // A node that stopped drops what it held, but a request can
                // still be on its way in: the shutdown ends the call too.
                futures_lite::future::or(call, async {
                    node_shutdown.wait().await;
                    Err(Error::Closed)
                })
                .await
            }
            Transport::Remote {
                outbox,
                pending,
                next,
            } => {
                busy_poll::touch();
                let id = next.fetch_add(1, Ordering::Relaxed);
                let slot = Arc::new(ReplySlot::default());
                match lock(pending).as_mut() {
                    Some(m) => m.insert(id, slot.clone()),
                    None => return Err(Error::Closed),
                };
                if !outbox.send(&make(id)) {
                    lock(pending).as_mut().map(|m| m.remove(&id));
                    return Err(Error::Closed);
                }
                slot.wait().await
            }
        }
    }

    /// Sends any request and returns the node's answer.
    pub async fn request(&self, request: Request) -> Result<Reply, Error> {
        let bound = request_bound(&request);
        match self
            .roundtrip(bound, |id| Envelope::ClientRequest { id, request })
            .await?
        {
            Envelope::ClientReply { reply, .. } => Ok(reply),
            _ => Err(Error::Unexpected),
        }
    }

    async fn ok(&self, request: Request) -> Result<Response, Error> {
        Ok(self.request(request).await??)
    }

    /// The node's status: summary, links and counters.
    pub async fn status(&self) -> Result<Status, Error> {
        match self
            .roundtrip(Duration::ZERO, |id| Envelope::StatusRequest { id })
            .await?
        {
            Envelope::StatusReply { status, .. } => Ok(status),
            _ => Err(Error::Unexpected),
        }
    }

    /// Creates `key` held with `value` for `lease`, retrying up to [`Client::wait`].
    pub async fn lock(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: Duration,
    ) -> Result<Held, Error> {
        let sent = self.runtime.now();
        let req = Request::Lock {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            lease,
            wait: self.wait,
        };
        match self.ok(req).await? {
            Response::Locked(l) => Ok(held(sent, l)),
            _ => Err(Error::Unexpected),
        }
    }

    /// Extends the lease of `key` held with `value` (one round with `token`).
    pub async fn extend(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: Duration,
        token: Option<Token>,
    ) -> Result<Held, Error> {
        self.extend_within(key.as_ref(), value.as_ref(), lease, token, self.wait)
            .await
    }

    pub(crate) async fn extend_within(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Duration,
        token: Option<Token>,
        wait: Duration,
    ) -> Result<Held, Error> {
        let sent = self.runtime.now();
        let req = Request::Extend {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            token,
            wait,
        };
        match self.ok(req).await? {
            Response::Extended(l) => Ok(held(sent, l)),
            _ => Err(Error::Unexpected),
        }
    }

    /// Compare-and-set of the value; returns the unchanged token.
    pub async fn update(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        new_value: impl AsRef<[u8]>,
    ) -> Result<Token, Error> {
        let req = Request::Update {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            new_value: new_value.as_ref().to_vec(),
            wait: self.wait,
        };
        match self.ok(req).await? {
            Response::Updated { token } => Ok(token),
            _ => Err(Error::Unexpected),
        }
    }

    /// Deletes `key` if held with `value` (and `token`, if given).
    pub async fn release(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        token: Option<Token>,
    ) -> Result<(), Error> {
        let req = Request::Release {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            token,
            wait: self.wait,
        };
        match self.ok(req).await? {
            Response::Released => Ok(()),
            _ => Err(Error::Unexpected),
        }
    }

    /// How long a lock takes through this node right now: locks a probe key
    /// of its own, releases it, and returns the time the lock took. An
    /// operator's health check of the whole quorum path (wooga/locker's
    /// `lag/0`).
    ///
    /// ```no_run
    /// # async fn f<R: locker_host::Runtime>(client: locker_host::Client<R>) -> Result<(), locker_host::Error> {
    /// let lag = client.lag().await?;
    /// println!("a lock takes {lag:?}");
    /// # Ok(()) }
    /// ```
    pub async fn lag(&self) -> Result<Duration, Error> {
        // A fresh key per probe, so probes never contend with each other;
        // the short lease frees it even if the release is lost.
        let key = format!("locker/lag/{:016x}", rand::random::<u64>());
        let started = Instant::now();
        let held = self.lock(&key, "lag", LAG_LEASE).await?;
        let took = started.elapsed();
        self.release(&key, "lag", Some(held.token)).await?;
        Ok(took)
    }

    /// A linearizable read from a quorum of masters.
    pub async fn read(&self, key: impl AsRef<[u8]>) -> Result<Option<EntryView>, Error> {
        let req = Request::Read {
            key: key.as_ref().to_vec(),
            wait: self.wait,
        };
        match self.ok(req).await? {
            Response::Value(v) => Ok(v),
            _ => Err(Error::Unexpected),
        }
    }

    /// The node's local copy; no network, may be stale.
    pub async fn dirty_read(&self, key: impl AsRef<[u8]>) -> Result<Option<EntryView>, Error> {
        match self
            .ok(Request::DirtyRead {
                key: key.as_ref().to_vec(),
            })
            .await?
        {
            Response::Value(v) => Ok(v),
            _ => Err(Error::Unexpected),
        }
    }

    /// Waits until `key` is present on the node.
    pub async fn wait_for(
        &self,
        key: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<EntryView, Error> {
        match self
            .ok(Request::WaitFor {
                key: key.as_ref().to_vec(),
                timeout,
            })
            .await?
        {
            Response::Present(v) => Ok(v),
            _ => Err(Error::Unexpected),
        }
    }

    /// Waits until `key` is absent on the node.
    pub async fn wait_for_release(
        &self,
        key: impl AsRef<[u8]>,
        timeout: Duration,
    ) -> Result<(), Error> {
        match self
            .ok(Request::WaitForRelease {
                key: key.as_ref().to_vec(),
                timeout,
            })
            .await?
        {
            Response::Gone => Ok(()),
            _ => Err(Error::Unexpected),
        }
    }

    /// The node's counts of leases and promises.
    pub async fn summary(&self) -> Result<Summary, Error> {
        match self.ok(Request::Summary).await? {
            Response::Summary(s) => Ok(s),
            _ => Err(Error::Unexpected),
        }
    }

    /// Replaces the member lists on every node.
    pub async fn set_nodes(
        &self,
        masters: Vec<NodeId>,
        replicas: Vec<NodeId>,
    ) -> Result<(), Error> {
        self.ok(Request::SetNodes { masters, replicas })
            .await
            .map(|_| ())
    }

    /// Replaces the write quorum on every node.
    pub async fn set_w(&self, w: usize) -> Result<(), Error> {
        self.ok(Request::SetW { w }).await.map(|_| ())
    }

    /// Locks `key` and keeps it: the guard extends the lease ahead of its
    /// deadline, warns before loss and releases it when dropped (with the
    /// default [`GuardOptions`]).
    pub async fn lock_guard(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: Duration,
    ) -> Result<LeaseGuard, Error> {
        self.lock_guard_with(key, value, lease, GuardOptions::default())
            .await
    }

    /// [`Client::lock_guard`] with a chosen danger margin.
    ///
    /// [`Error::LeaseLost`] when the lock was granted but its validity had
    /// already run out when the answer came (it waited longer than its
    /// lease): the key is released again and no guard is made.
    pub async fn lock_guard_with(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        lease: Duration,
        options: GuardOptions,
    ) -> Result<LeaseGuard, Error> {
        let held = self.lock(key.as_ref(), value.as_ref(), lease).await?;
        if self.runtime.now() >= held.deadline {
            // The lock waited (or the answer travelled) longer than its
            // validity: the holder cannot rely on it, so no guard is made.
            // The entry may still live on the masters: free it for others.
            let _ = self
                .release(key.as_ref(), value.as_ref(), Some(held.token))
                .await;
            return Err(Error::LeaseLost);
        }
        Ok(LeaseGuard::spawn(
            self.runtime.clone(),
            self.clone(),
            key.as_ref().to_vec(),
            value.as_ref().to_vec(),
            lease,
            held,
            options,
        ))
    }

    /// Registers `name` with `value` in the name registry; the registration
    /// lives as long as the returned guard (usable for leader election).
    pub async fn register_name(
        &self,
        name: &str,
        value: impl AsRef<[u8]>,
        lease: Duration,
    ) -> Result<LeaseGuard, Error> {
        self.lock_guard(name_key(name), value, lease).await
    }

    /// Who holds `name`, if anyone.
    pub async fn whereis_name(
        &self,
        name: &str,
        consistency: Consistency,
    ) -> Result<Option<Vec<u8>>, Error> {
        let entry = match consistency {
            Consistency::Dirty => self.dirty_read(name_key(name)).await?,
            Consistency::Consistent => self.read(name_key(name)).await?,
        };
        Ok(entry.map(|e| e.value))
    }

    /// Removes `name` if it is registered with `value`.
    pub async fn unregister_name(&self, name: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        self.release(name_key(name), value, None).await
    }
}

/// How long the node may take to answer `request` by its own terms: the
/// wait of an operation that retries, the timeout of a wait, nothing for the
/// rest (answered at once, or after one quorum round).
fn request_bound(request: &Request) -> Duration {
    match request {
        Request::Lock { wait, .. }
        | Request::Extend { wait, .. }
        | Request::Update { wait, .. }
        | Request::Release { wait, .. }
        | Request::Read { wait, .. } => *wait,
        Request::WaitFor { timeout, .. } | Request::WaitForRelease { timeout, .. } => *timeout,
        Request::SetNodes { .. } | Request::SetW { .. } => MEMBERSHIP_CHANGE_BOUND,
        _ => Duration::ZERO,
    }
}

fn held(sent: Instant, l: locker_core::Lease) -> Held {
    // A lock that waited at its node is valid from later than its send.
    let from = sent + l.waited;
    Held {
        token: l.token,
        validity: l.validity,
        sent: from,
        deadline: from + l.validity,
    }
}
