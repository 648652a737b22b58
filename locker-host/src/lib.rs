//! The runtime-agnostic half of every locker adapter: the node driver, peer
//! links, the accept loop and authentication handshake, the client protocol,
//! the [`Client`] API, the self-extending [`LeaseGuard`] and the name
//! registry, written once against the small [`Runtime`] trait.
//!
//! # Why a crate of its own
//!
//! An adapter should own sockets, timers and tasks and nothing else. Both
//! `locker-tokio` and `locker-smol` need the same driver around
//! [`locker_core::Node`], the same connection handling and the same client
//! API; kept in either adapter, it would be written twice or make one adapter
//! depend on the other's runtime. Here it lives once, depends on no runtime
//! (only on `futures-io`, `futures-lite`, `async-channel` and
//! `event-listener`, which run on any executor), and each adapter is a
//! [`Runtime`] implementation of about a hundred lines plus type aliases. This
//! is quinn's layout: `quinn-proto` is the protocol (here `locker-core`),
//! `quinn` the driver written once (here this crate), and one small file per
//! runtime.
//!
//! # Using it
//!
//! Applications use an adapter (`locker_tokio::LocalNode`,
//! `locker_smol::LocalNode`, ...), which are this crate's types with the
//! runtime filled in. A new runtime needs only an implementation of
//! [`Runtime`]:
//!
//! ```no_run
//! # async fn f<R: locker_host::Runtime + Default>() -> Result<(), Box<dyn std::error::Error>> {
//! use locker_core::{Config, NodeId};
//! use locker_host::{LocalNode, NodeOptions, Runtime, StartMode};
//! use std::collections::HashMap;
//! let runtime = R::default();
//! let listener = runtime.listen(std::net::TcpListener::bind("127.0.0.1:0")?)?;
//! let config = Config::new(NodeId(1), vec![NodeId(1)], vec![]);
//! let mut opts = NodeOptions::new(config, HashMap::new());
//! opts.data_dir = Some("/var/lib/locker/n1".into());
//! // The first start of a new cluster; drop this line for every later start
//! // (the node then waits out its quarantine before voting).
//! opts.start = StartMode::Bootstrap;
//! let node = LocalNode::start_on(runtime, listener, opts).await?;
//! let held = node.client().lock("door", "me", std::time::Duration::from_secs(5)).await?;
//! assert!(held.token.0 >= 1);
//! # Ok(()) }
//! ```
//!
//! With the `conformance` feature, the `conformance` module holds the
//! scenarios every adapter must pass, and the `conformance_suite!` macro
//! turns them into tests.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod busy_poll;
pub mod client;
pub mod conn;
pub mod counters;
mod driver;
pub mod error;
mod fatal;
pub mod framing;
pub mod guard;
pub mod lease;
mod link;
pub mod node;
pub mod outbox;
mod peers;
mod persist;
pub mod registry;
pub mod runtime;
mod server;
pub mod signal;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use busy_poll::BusyPoll;
pub use client::{Client, Held};
pub use counters::Counters;
pub use error::Error;
pub use fatal::FatalError;
pub use guard::{LeaseGuard, LeaseWatch};
pub use lease::{GuardOptions, LeaseState};
pub use node::{LocalNode, NodeOptions, StartError, StartMode};
pub use persist::{StateError, STATE_FILE};
pub use registry::Consistency;
pub use runtime::Runtime;
pub use signal::{Watch, WatchClosed};
