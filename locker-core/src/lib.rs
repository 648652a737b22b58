//! The locker protocol as a pure, deterministic state machine.
//!
//! `locker-core` implements leases, quorum voting (promise, then commit),
//! fencing tokens and replication for a distributed lease store. It performs
//! no I/O, reads no clock, starts no thread and draws no randomness of its
//! own. What the host brings:
//!
//! - **transport**: deliver each [`Output::Send`] to its node, and hand every
//!   message that arrives to [`Node::handle_message`];
//! - **time**: a monotonic clock, passed into every call as a [`Time`];
//! - **timers**: call [`Node::handle_timeout`] once [`Node::poll_timeout`]'s
//!   instant has come;
//! - **durability (optional)**: persist each [`Output::PersistTokenCeiling`]
//!   and [`Output::PersistMembership`] before performing any output after
//!   it, and pass the latest of each to [`Node::restarted_with`] after a
//!   crash.
//!
//! [`Node`] has four kinds of methods: getters ([`Node::summary`],
//! [`Node::dirty_entries`], ...), inputs (`handle_message`, `handle_request`,
//! `handle_timeout`), and outputs (`poll_output`, `poll_timeout`). After every
//! input, drain `poll_output` until it returns `None`, then sleep until
//! `poll_timeout`.
//!
//! ```
//! use locker_core::{Config, Node, NodeId, Output, Request, RequestId, Response, Time};
//! use std::collections::VecDeque;
//! use std::time::Duration;
//!
//! // Three masters, stepped in memory with a shared clock and instant delivery.
//! let ids = [NodeId(1), NodeId(2), NodeId(3)];
//! let mut nodes: Vec<Node> = ids
//!     .iter()
//!     .map(|&id| Node::new(Config::new(id, ids.to_vec(), vec![]), Time::ZERO).unwrap())
//!     .collect();
//! let now = Time::from_millis(1);
//! let lock = Request::Lock {
//!     key: b"door".to_vec(),
//!     value: b"alice".to_vec(),
//!     lease: Duration::from_secs(10),
//!     wait: Duration::from_secs(1),
//! };
//! nodes[0].handle_request(now, RequestId(1), lock);
//!
//! let mut in_flight = VecDeque::new();
//! let mut reply = None;
//! loop {
//!     for (i, node) in nodes.iter_mut().enumerate() {
//!         while let Some(out) = node.poll_output() {
//!             match out {
//!                 Output::Send { to, msg } => in_flight.push_back((ids[i], to, msg)),
//!                 Output::Reply { reply: r, .. } => reply = Some(r),
//!                 Output::PersistTokenCeiling(_) | Output::PersistMembership(_) => {}
//!             }
//!         }
//!     }
//!     let Some((from, to, msg)) = in_flight.pop_front() else { break };
//!     let to = ids.iter().position(|&id| id == to).unwrap();
//!     nodes[to].handle_message(now, from, msg);
//! }
//! let Ok(Response::Locked(lease)) = reply.unwrap() else { panic!("not locked") };
//! assert!(lease.token.0 >= 1);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
mod config;
mod coordinator;
pub mod envelope;
mod membership;
mod message;
mod node;
mod promise;
mod replication;
mod request;
mod rng;
mod store;
mod time;
mod voter;
mod waiters;
pub mod wire;

pub use config::{Config, ConfigError, NodeId, RetryPolicy, Role};
pub use membership::{AppliedMembership, Ballot, Members};
pub use message::{Ack, EntryState, Expect, Grant, Message, OpId, Refusal, Replicated, Write};
pub use node::{InvariantViolation, Node, Output};
pub use request::{
    EntryView, InvalidRequest, Lease, OpError, Reply, Request, RequestId, Response, Summary, Token,
};
pub use time::Time;
