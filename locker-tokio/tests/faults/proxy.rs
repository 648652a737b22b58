//! A TCP proxy of the suite's own, between a client or a peer and a node:
//! passes bytes through, or cuts every connection, delays every byte, or
//! drops one direction. Plain threads and `std::net`, so a fault never
//! depends on the runtime under test.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A direction through the proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From whoever connected to the node behind the proxy.
    ToNode,
    /// From the node back to whoever connected.
    FromNode,
}

/// What the proxy does to the traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forwards every byte at once.
    Pass,
    /// Forwards every byte after this delay (order kept).
    Delay(Duration),
    /// Reads and discards what flows in this direction; the other passes. A
    /// connection that lost bytes is cut when the mode changes again, since
    /// its stream no longer lines up with message boundaries.
    Drop(Direction),
    /// Accepts connections and closes them at once.
    Refuse,
}

/// One proxied connection, as the proxy keeps it to cut it.
struct Conn {
    id: u64,
    client: TcpStream,
    node: TcpStream,
}

struct Shared {
    target: Mutex<SocketAddr>,
    mode: Mutex<Mode>,
    conns: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
    stopped: AtomicBool,
    /// Bytes forwarded and discarded, for the run's figures.
    forwarded: AtomicU64,
    discarded: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn mode(&self) -> Mode {
        *lock(&self.mode)
    }

    fn cut_all(&self) {
        for c in lock(&self.conns).drain(..) {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.node.shutdown(Shutdown::Both);
        }
    }

    fn forget(&self, id: u64) {
        lock(&self.conns).retain(|c| c.id != id);
    }
}

/// A listening proxy in front of one node address. Dropping it closes its
/// connections and stops its threads.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target: Mutex::new(target),
            mode: Mutex::new(Mode::Pass),
            conns: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            forwarded: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("proxy {addr}"))
            .spawn(move || accept_loop(listener, s))?;
        Ok(Proxy { addr, shared })
    }

    /// Where clients or peers connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends new connections to `target` (a restarted node's new port);
    /// the old connections are cut.
    pub fn retarget(&self, target: SocketAddr) {
        *lock(&self.shared.target) = target;
        self.shared.cut_all();
    }

    /// Switches the mode. Refusing cuts every connection; so does leaving a
    /// drop (see [`Mode::Drop`]).
    pub fn set(&self, mode: Mode) {
        let old = std::mem::replace(&mut *lock(&self.shared.mode), mode);
        if mode == Mode::Refuse || (matches!(old, Mode::Drop(_)) && old != mode) {
            self.shared.cut_all();
        }
    }

    /// Closes every connection now; new ones are accepted as the mode says.
    pub fn cut(&self) {
        self.shared.cut_all();
    }

    /// Bytes forwarded and bytes discarded so far.
    pub fn bytes(&self) -> (u64, u64) {
        (
            self.shared.forwarded.load(Ordering::Relaxed),
            self.shared.discarded.load(Ordering::Relaxed),
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        self.shared.cut_all();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        if shared.mode() == Mode::Refuse {
            continue;
        }
        let target = *lock(&shared.target);
        let Ok(node) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
            // The node is down: the connector sees its connection closed,
            // as it would see a refusal.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = node.set_nodelay(true);
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (Ok(c2), Ok(n2), Ok(c3), Ok(n3)) = (
            client.try_clone(),
            node.try_clone(),
            client.try_clone(),
            node.try_clone(),
        ) else {
            continue;
        };
        lock(&shared.conns).push(Conn {
            id,
            client: c3,
            node: n3,
        });
        for (from, to, direction) in [
            (client, n2, Direction::ToNode),
            (node, c2, Direction::FromNode),
        ] {
            let s = shared.clone();
            let _ = std::thread::Builder::new()
                .name(format!("pump {id} {direction:?}"))
                .spawn(move || pump(from, to, direction, id, s));
        }
    }
}

/// Copies one direction of one connection, as the mode says, until either
/// side closes. Delivery runs on a thread of its own so that a delay holds
/// bytes back without slowing the reading.
fn pump(mut from: TcpStream, to: TcpStream, direction: Direction, id: u64, shared: Arc<Shared>) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    let deliver = {
        let mut to = to.try_clone().ok();
        let shared = shared.clone();
        std::thread::spawn(move || {
            for (due, bytes) in rx {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let Some(out) = to.as_mut() else { return };
                if out.write_all(&bytes).is_err() {
                    return;
                }
                shared
                    .forwarded
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
            }
        })
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut last_due = Instant::now();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = Instant::now();
        let due = match shared.mode() {
            Mode::Drop(d) if d == direction => {
                shared.discarded.fetch_add(n as u64, Ordering::Relaxed);
                continue;
            }
            Mode::Delay(d) => now + d,
            Mode::Pass | Mode::Drop(_) | Mode::Refuse => now,
        };
        // A shorter delay than the last one must not reorder bytes.
        last_due = last_due.max(due);
        if tx.send((last_due, buf[..n].to_vec())).is_err() {
            break;
        }
    }
    drop(tx);
    let _ = deliver.join();
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    shared.forget(id);
}
