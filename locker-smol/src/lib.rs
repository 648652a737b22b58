//! The smol adapter for locker: runs [`locker_core`] nodes over TCP under
//! [smol](https://docs.rs/smol), and gives applications a [`Client`], a
//! self-extending [`LeaseGuard`] and a name registry.
//!
//! Everything but sockets, timers and spawning lives in [`locker_host`],
//! shared with `locker-tokio`: the wire format, authentication and protocol
//! are the same, so smol nodes and tokio nodes form one cluster.
//!
//! # async-std
//!
//! async-std is discontinued and its maintainers point to smol. It runs on
//! the same async-io reactor, so this crate works from async-std's executor
//! as it is: call it from `async_std::task::block_on` or any async-std task.
//! To run the node's own tasks on async-std's executor too (rather than on
//! smol's global executor), start it with
//! [`SmolRuntime::with_spawner`]`(|task| { async_std::task::spawn(task); })`
//! and [`LocalNode::start_on`]. This crate does not depend on async-std; its
//! tests run the whole conformance suite under both executors.
//!
//! smol's global executor runs one thread unless the `SMOL_THREADS`
//! environment variable says otherwise (`locker serve --runtime smol` sets it
//! to the number of cores).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> { smol::block_on(async {
//! use locker_core::{Config, NodeId};
//! use locker_smol::{LocalNode, NodeOptions, StartMode};
//! use std::collections::HashMap;
//! let listener = smol::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = Config::new(NodeId(1), vec![NodeId(1)], vec![]);
//! let mut opts = NodeOptions::new(config, HashMap::new());
//! // A brand-new one-node cluster that lives in this process only: it has
//! // never voted, so it may vote at once. Any other start of a master uses
//! // the default, `StartMode::Restart`, and waits out its quarantine (give
//! // real nodes a `data_dir` too).
//! opts.start = StartMode::Bootstrap;
//! let node = LocalNode::start(listener, opts).await?;
//! let held = node.client().lock("door", "me", std::time::Duration::from_secs(5)).await?;
//! assert!(held.token.0 >= 1);
//! # Ok(()) }) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod runtime;

pub use locker_core::Token;
pub use locker_host::{
    Consistency, Error, FatalError, GuardOptions, Held, LeaseGuard, LeaseState, LeaseWatch,
    NodeOptions, StartError, StartMode, StateError, WatchClosed,
};
pub use runtime::{SmolRuntime, Task};

/// A running node under smol.
pub type LocalNode = locker_host::LocalNode<SmolRuntime>;
/// A client whose tasks run under smol.
pub type Client = locker_host::Client<SmolRuntime>;
