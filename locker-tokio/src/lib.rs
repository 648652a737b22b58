//! The tokio adapter for locker: runs [`locker_core`] nodes over TCP under
//! tokio, and gives applications a [`Client`], a self-extending
//! [`LeaseGuard`] and a name registry.
//!
//! Everything but sockets, timers and spawning lives in [`locker_host`],
//! shared with `locker-smol` (whose nodes join the same clusters); this crate
//! is the [`TokioRuntime`] and the `locker` program.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locker_core::{Config, NodeId};
//! use locker_tokio::{LocalNode, NodeOptions, StartMode};
//! use std::collections::HashMap;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = Config::new(NodeId(1), vec![NodeId(1)], vec![]);
//! let mut opts = NodeOptions::new(config, HashMap::new());
//! opts.data_dir = Some("/var/lib/locker/n1".into());
//! // The first start of a new cluster; drop this line for every later start
//! // (the node then waits out its quarantine before voting).
//! opts.start = StartMode::Bootstrap;
//! let node = LocalNode::start(listener, opts).await?;
//! let held = node.client().lock("door", "me", std::time::Duration::from_secs(5)).await?;
//! assert!(held.token.0 >= 1);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod runtime;

pub use locker_core::Token;
pub use locker_host::{
    Consistency, Error, FatalError, GuardOptions, Held, LeaseGuard, LeaseState, LeaseWatch,
    NodeOptions, StartError, StartMode, StateError, WatchClosed,
};
pub use runtime::TokioRuntime;

/// A running node under tokio.
pub type LocalNode = locker_host::LocalNode<TokioRuntime>;
/// A client whose tasks run under tokio.
pub type Client = locker_host::Client<TokioRuntime>;
