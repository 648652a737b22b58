//! The node's peer links: whom it links to, where they listen, and the link
//! tasks, kept in step with the membership.
//!
//! A node keeps one outbound link to every member of the membership in
//! force, and to every other node connected to it as a peer right now (a
//! *guest*): a client-only node, a node about to be added, or a member just
//! removed that has not learnt it yet. The core answers guests too (a master
//! votes for a client-only node's operations and tells a removed member of
//! its removal), and every answer needs an outbound link, since peers never
//! write on the connections they accept. A guest's link is retired once its
//! last connection to this node closes; a member's once a change removes it.
//!
//! Addresses come from the start-up options and from the peers themselves:
//! every link announces its node's listen address right after its handshake
//! ([`Envelope::PeerAddress`](locker_core::envelope::Envelope::PeerAddress)),
//! so a node the others were not started with can be reached once it has
//! connected to them. An announcement never replaces an address this node
//! was started with: the operator's address for a peer may be one the peer
//! does not know of (a proxy, a NAT), and stays in force.

use locker_core::NodeId;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::{info, warn};

use crate::driver::Slot;
use crate::link::{Link, LinkCommon};
use crate::outbox::Outbox;
use crate::signal::Shutdown;

/// Guests linked at most at once: each costs a task and a connection, and
/// any holder of the cluster secret may connect.
pub(crate) const MAX_GUESTS: usize = 64;

/// Spawns a link task on the node's runtime, to run until its node shuts
/// down or the given flag (its retirement) is raised.
pub(crate) type StartLink = Box<dyn Fn(Link, Shutdown) + Send>;

/// Where a message to a node can go.
pub(crate) enum Route {
    /// The link is up: queue it here.
    Up(Arc<Outbox>),
    /// The link exists but is not connected (or has no address yet).
    Down,
    /// The node is neither a member nor connected: there is no link.
    NoLink,
}

/// One peer's link slot, with its task if the peer's address is known.
struct PeerLink {
    slot: Slot,
    up: Arc<AtomicBool>,
    /// Where the task connects, and its retirement flag.
    task: Option<(SocketAddr, Shutdown)>,
}

impl PeerLink {
    fn idle() -> PeerLink {
        PeerLink {
            slot: Arc::default(),
            up: Arc::new(AtomicBool::new(false)),
            task: None,
        }
    }
}

impl Drop for PeerLink {
    /// A link dropped from the table is retired: its task ends, and with it
    /// the connection.
    fn drop(&mut self) {
        if let Some((_, retired)) = &self.task {
            retired.raise();
        }
    }
}

/// The address book, the links and their states.
pub(crate) struct Peers {
    common: LinkCommon,
    start: StartLink,
    /// Where nodes listen, as this node was started with.
    configured: HashMap<NodeId, SocketAddr>,
    /// Where other nodes said they listen (the latest word of each).
    announced: HashMap<NodeId, SocketAddr>,
    /// The members in force, this node excepted.
    members: BTreeSet<NodeId>,
    /// Authenticated peer connections to this node, by the id they gave.
    connected: BTreeMap<NodeId, usize>,
    links: BTreeMap<NodeId, PeerLink>,
    /// A guest was left unlinked for [`MAX_GUESTS`] (warned once).
    guests_capped: bool,
}

impl Peers {
    /// No links yet: [`Peers::set_members`] makes the first ones.
    pub fn new(
        common: LinkCommon,
        configured: HashMap<NodeId, SocketAddr>,
        start: StartLink,
    ) -> Peers {
        Peers {
            common,
            start,
            configured,
            announced: HashMap::new(),
            members: BTreeSet::new(),
            connected: BTreeMap::new(),
            links: BTreeMap::new(),
            guests_capped: false,
        }
    }

    /// The membership in force is now `masters` and `replicas`: links are
    /// made to new members and retired from nodes that left (unless still
    /// connected as guests).
    pub fn set_members(&mut self, masters: &[NodeId], replicas: &[NodeId]) {
        let me = self.common.me;
        let members: BTreeSet<NodeId> = masters
            .iter()
            .chain(replicas)
            .copied()
            .filter(|&n| n != me)
            .collect();
        if members != self.members {
            self.members = members;
            self.reconcile();
        }
    }

    /// `peer` says it listens on `addr`; unless this node was started with
    /// an address for it, a link to it is (re)pointed there.
    pub fn learned_address(&mut self, peer: NodeId, addr: SocketAddr) {
        if peer == self.common.me
            || self.configured.contains_key(&peer)
            || self.announced.get(&peer) == Some(&addr)
        {
            return;
        }
        if let Some(old) = self.announced.insert(peer, addr) {
            info!(node = %self.common.me, %peer, %old, new = %addr, "peer moved to a new address");
        }
        self.reconcile();
    }

    fn address(&self, peer: NodeId) -> Option<SocketAddr> {
        let configured = self.configured.get(&peer);
        configured.or_else(|| self.announced.get(&peer)).copied()
    }

    /// An authenticated peer connection from `peer` opened.
    pub fn connected(&mut self, peer: NodeId) {
        *self.connected.entry(peer).or_default() += 1;
        self.reconcile();
    }

    /// One of `peer`'s connections to this node closed.
    pub fn disconnected(&mut self, peer: NodeId) {
        if let Some(n) = self.connected.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.connected.remove(&peer);
                self.reconcile();
            }
        }
    }

    /// Where a message to `to` can go now.
    pub fn route(&self, to: NodeId) -> Route {
        let Some(link) = self.links.get(&to) else {
            return Route::NoLink;
        };
        match link.slot.lock().unwrap_or_else(|e| e.into_inner()).clone() {
            Some(outbox) => Route::Up(outbox),
            None => Route::Down,
        }
    }

    /// Whether messages flow both ways with `peer`: this node's link to it
    /// is up, and its link to this node is connected (peers answer over
    /// their own links, so a vote needs both).
    pub fn reaches(&self, peer: NodeId) -> bool {
        self.connected.contains_key(&peer)
            && self
                .links
                .get(&peer)
                .is_some_and(|l| l.up.load(Ordering::Relaxed))
    }

    /// Every link and whether it is up, by peer id.
    pub fn states(&self) -> Vec<(NodeId, bool)> {
        self.links
            .iter()
            .map(|(&peer, link)| (peer, link.up.load(Ordering::Relaxed)))
            .collect()
    }

    /// The peers there should be links to: every member, then guests whose
    /// address is known, in id order, up to [`MAX_GUESTS`].
    fn wanted(&mut self) -> BTreeSet<NodeId> {
        let me = self.common.me;
        let mut guests = self
            .connected
            .keys()
            .copied()
            .filter(|&n| n != me && !self.members.contains(&n) && self.address(n).is_some());
        let mut wanted = self.members.clone();
        wanted.extend(guests.by_ref().take(MAX_GUESTS));
        if guests.next().is_some() && !self.guests_capped {
            self.guests_capped = true;
            warn!(node = %me, max = MAX_GUESTS, "more non-member peers connected than are linked back; the rest get no answers");
        }
        wanted
    }

    /// Makes the links match [`Peers::wanted`] and the address book.
    fn reconcile(&mut self) {
        let wanted = self.wanted();
        self.links.retain(|peer, _| wanted.contains(peer));
        for peer in wanted {
            let address = self.address(peer);
            let link = self.links.entry(peer).or_insert_with(PeerLink::idle);
            let Some(addr) = address else {
                continue;
            };
            match &link.task {
                Some((running, _)) if *running == addr => continue,
                // Moved: a fresh link replaces (and so retires) the old one.
                Some(_) => *link = PeerLink::idle(),
                None => {}
            }
            let retired = Shutdown::default();
            link.task = Some((addr, retired.clone()));
            let task = Link {
                common: self.common.clone(),
                peer,
                addr,
                slot: link.slot.clone(),
                up: link.up.clone(),
            };
            (self.start)(task, retired);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Counters;
    use std::sync::Mutex;

    /// The links started so far: (peer, address, retirement flag).
    type Started = Arc<Mutex<Vec<(NodeId, SocketAddr, Shutdown)>>>;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn ids(list: &[u64]) -> Vec<NodeId> {
        list.iter().copied().map(NodeId).collect()
    }

    /// Node 1's peers, knowing nodes 2 and 3 at ports 7002 and 7003.
    fn peers() -> (Peers, Started) {
        let common = LinkCommon {
            me: NodeId(1),
            advertise: addr(7001),
            secret: Arc::from(&b"secret"[..]),
            counters: Arc::new(Counters::default()),
            max_frame: 1 << 20,
        };
        let configured = HashMap::from([(NodeId(2), addr(7002)), (NodeId(3), addr(7003))]);
        let started: Started = Arc::default();
        let record = started.clone();
        let start: StartLink = Box::new(move |link, retired| {
            record.lock().unwrap().push((link.peer, link.addr, retired));
        });
        (Peers::new(common, configured, start), started)
    }

    fn linked(p: &Peers) -> Vec<NodeId> {
        p.states().into_iter().map(|(n, _)| n).collect()
    }

    /// The peers whose started links are not retired.
    fn running(started: &Started) -> Vec<(NodeId, SocketAddr)> {
        let mut v: Vec<_> = started
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, _, retired)| !retired.is_raised())
            .map(|(n, a, _)| (*n, *a))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn links_follow_the_members_and_wait_for_unknown_addresses() {
        let (mut p, started) = peers();
        p.set_members(&ids(&[1, 2, 3]), &[]);
        assert_eq!(linked(&p), ids(&[2, 3]));
        assert_eq!(
            running(&started),
            vec![(NodeId(2), addr(7002)), (NodeId(3), addr(7003))]
        );
        // Node 4 joins, node 2 leaves: 4 has a slot but no task until its
        // address is known, and 2's task is retired.
        p.set_members(&ids(&[1, 3, 4]), &[]);
        assert_eq!(linked(&p), ids(&[3, 4]));
        assert_eq!(running(&started), vec![(NodeId(3), addr(7003))]);
        assert!(matches!(p.route(NodeId(4)), Route::Down));
        assert!(matches!(p.route(NodeId(2)), Route::NoLink));
        p.learned_address(NodeId(4), addr(7004));
        assert_eq!(
            running(&started),
            vec![(NodeId(3), addr(7003)), (NodeId(4), addr(7004))]
        );
        // The same address again starts nothing new.
        p.learned_address(NodeId(4), addr(7004));
        assert_eq!(started.lock().unwrap().len(), 3);
    }

    #[test]
    fn a_connected_guest_is_linked_back_until_its_last_connection_closes() {
        let (mut p, started) = peers();
        p.set_members(&ids(&[1, 2, 3]), &[]);
        p.connected(NodeId(9));
        assert_eq!(linked(&p), ids(&[2, 3]), "no address yet: nothing to link");
        p.learned_address(NodeId(9), addr(7009));
        p.connected(NodeId(9));
        assert_eq!(linked(&p), ids(&[2, 3, 9]));
        p.disconnected(NodeId(9));
        assert_eq!(linked(&p), ids(&[2, 3, 9]), "one connection is still open");
        p.disconnected(NodeId(9));
        assert_eq!(linked(&p), ids(&[2, 3]));
        assert_eq!(
            running(&started),
            vec![(NodeId(2), addr(7002)), (NodeId(3), addr(7003))]
        );
        // A member that is also connected keeps its link when it leaves,
        // until its connection closes.
        p.connected(NodeId(2));
        p.set_members(&ids(&[1, 3]), &[]);
        assert_eq!(linked(&p), ids(&[2, 3]));
        p.disconnected(NodeId(2));
        assert_eq!(linked(&p), ids(&[3]));
    }

    #[test]
    fn a_moved_peer_gets_a_fresh_link_unless_its_address_was_configured() {
        let (mut p, started) = peers();
        p.set_members(&ids(&[1, 2, 3, 4]), &[]);
        p.learned_address(NodeId(4), addr(7004));
        p.learned_address(NodeId(4), addr(8004));
        // Node 2 announces where it listens, but this node was started with
        // another address for it (a proxy, say): that one stays.
        p.learned_address(NodeId(2), addr(8002));
        assert_eq!(
            running(&started),
            vec![
                (NodeId(2), addr(7002)),
                (NodeId(3), addr(7003)),
                (NodeId(4), addr(8004))
            ]
        );
    }

    #[test]
    fn this_node_is_never_linked_and_guests_are_capped() {
        let (mut p, _) = peers();
        p.set_members(&ids(&[1]), &ids(&[]));
        p.connected(NodeId(1));
        p.learned_address(NodeId(1), addr(7001));
        assert!(linked(&p).is_empty());
        for n in 100..100 + MAX_GUESTS as u64 + 5 {
            p.connected(NodeId(n));
            p.learned_address(NodeId(n), addr(n as u16));
        }
        assert_eq!(linked(&p).len(), MAX_GUESTS);
    }
}
