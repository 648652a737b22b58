//! Deterministic simulator for locker clusters.
//!
//! One seed determines a whole run of many [`locker_core::Node`]s: the
//! simulator owns real time, every node's drifting clock, the network (latency
//! with long tails, loss, duplication, reordering, partitions), crashes with
//! amnesia, process pauses and the client workload. A run has a fault phase
//! and a quiet phase; then the checkers read the history: mutual exclusion,
//! fencing, linearizability, convergence and liveness.
//!
//! ```
//! use locker_sim::{run, Faults, SimOptions};
//!
//! let opts = SimOptions {
//!     masters: 3,
//!     replicas: 1,
//!     clients: 2,
//!     sim_secs: 1.0,
//!     max_lease_ms: 1_000,
//!     faults: Faults::all(),
//!     ..SimOptions::default()
//! };
//! let result = run(7, &opts, false);
//! assert!(result.report.ok(), "{:?}", result.report);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkers;
pub mod clock;
pub mod faults;
pub mod history;
pub mod network;
pub mod options;
pub mod rng;
pub mod schedule;
pub mod workload;
pub mod world;

pub use checkers::Report;
pub use options::{Faults, SimOptions};
pub use world::{run, RunResult, World};
