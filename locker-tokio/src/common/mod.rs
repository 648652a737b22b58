//! Runtime-agnostic pieces of the adapter: nothing here touches sockets,
//! timers or tasks, so the smol adapter can share them as they are.

pub mod error;
pub mod framing;
pub mod lease;
pub mod registry;
pub mod stats;
