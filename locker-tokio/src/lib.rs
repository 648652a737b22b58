//! The tokio adapter for locker: runs [`locker_core`] nodes over TCP, and
//! gives applications a [`Client`], a self-extending [`LeaseGuard`] and a
//! name registry.
//!
//! Runtime-specific code lives in `node`, `conn`, `outbox`, `client` and `guard`;
//! everything else is in [`common`], which touches no socket, timer or task.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locker_core::{Config, NodeId};
//! use locker_tokio::{LocalNode, NodeOptions};
//! use std::collections::HashMap;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = Config::new(NodeId(1), vec![NodeId(1)], vec![]);
//! let node = LocalNode::start(listener, NodeOptions::new(config, HashMap::new())).await?;
//! let held = node.client().lock("door", "me", std::time::Duration::from_secs(5)).await?;
//! assert!(held.token.0 >= 1);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod common;
pub mod conn;
pub mod guard;
pub mod node;
pub mod outbox;

pub use client::{Client, Held};
pub use common::error::Error;
pub use common::registry::Consistency;
pub use guard::{LeaseGuard, LeaseState};
pub use node::{LocalNode, NodeOptions, StartError};
