//! The frames exchanged on one connection: the handshake, then either peer
//! messages (between cluster nodes) or client requests and replies (from a
//! process that is not a node). Each is sent as one [`wire`](crate::wire) frame.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

use crate::config::{NodeId, Role};
use crate::message::Message;
use crate::request::{Reply, Request, Summary};

/// Who opened a connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Who {
    /// A node of the cluster (a member, or a client-only node or one about
    /// to be added), with its id.
    Peer(NodeId),
    /// A client: it sends requests and reads replies.
    Client,
}

/// One frame on a connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Envelope {
    /// Handshake step 1, from the connector.
    Hello {
        /// Who the connector says it is.
        who: Who,
        /// The connector's nonce.
        nonce: [u8; 32],
    },
    /// Handshake step 2, from the acceptor.
    Challenge {
        /// The acceptor's nonce.
        nonce: [u8; 32],
        /// The acceptor's proof of the secret.
        proof: [u8; 32],
    },
    /// Handshake step 3, from the connector.
    Proof {
        /// The connector's proof of the secret.
        proof: [u8; 32],
    },
    /// Handshake step 4: accepted.
    Welcome,
    /// Handshake step 4: refused; the acceptor closes the connection.
    AuthFailed,
    /// A protocol message between members.
    Peer(Message),
    /// A client's request; `id` is the client's own and echoed in the reply.
    ClientRequest {
        /// The client's request id.
        id: u64,
        /// The request.
        request: Request,
    },
    /// The answer to a client request.
    ClientReply {
        /// The request's id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
    /// A client asks for the node's status.
    StatusRequest {
        /// The client's request id.
        id: u64,
    },
    /// The node's status.
    StatusReply {
        /// The request's id.
        id: u64,
        /// The status.
        status: Status,
    },
    /// Sent once by a peer link's connector right after the handshake: the
    /// address the connector listens on, so that the acceptor can link
    /// back to a node it was not started with. An unspecified IP
    /// (`0.0.0.0`, `::`) stands for the IP the connection came from.
    PeerAddress(SocketAddr),
}

/// What `locker status` shows about a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The core's counts.
    pub summary: Summary,
    /// The node's role.
    pub role: Role,
    /// Whether the node reaches a quorum of masters over its links (itself
    /// included, if it is a master out of quarantine): writes through it can
    /// succeed.
    pub ready: bool,
    /// Each peer this node links to (every other member, and the
    /// non-members connected to it) and whether the link is up.
    pub links: Vec<(NodeId, bool)>,
    /// The adapter's counters, by name.
    pub counters: Vec<(String, u64)>,
}
