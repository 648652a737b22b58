//! Deterministic simulator for locker clusters.
//!
//! One seed determines a whole run of many [`locker_core::Node`]s: the
//! simulator owns real time, every node's drifting clock, the network (latency
//! with long tails, loss, duplication, reordering, partitions), crashes with
//! amnesia, process pauses and the client workload. A run has a fault phase
//! and a quiet phase; then the checkers read the history: mutual exclusion,
//! fencing, linearizability, convergence and liveness.
//!
//! Clients are open-loop and pipelined: operations arrive at
//! `ops_per_sec` over all clients, and each client keeps up to `pipeline`
//! of them outstanding, on distinct keys of a small key space. The fault
//! schedule is data ([`schedule::Schedule`]): drawn from the seed, or given
//! explicitly, as property tests do so that a failing case shrinks to a few
//! fault events and replays with `locker-sim replay --seed N ... --schedule
//! TEXT` ([`SimOptions::replay_command`]).
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
//!
//! // The same cluster under an explicit schedule: a partition cutting off a
//! // minority of the masters, then a crash of master 1 whose clock jumps
//! // 40 ms ahead at its restart.
//! let explicit = SimOptions {
//!     schedule: Some("minority:0@100+300,crash:1:40@500+200".parse().unwrap()),
//!     ..opts
//! };
//! assert!(run(7, &explicit, false).report.ok());
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkers;
pub mod clock;
pub mod faults;
pub mod history;
pub mod network;
pub mod options;
pub mod queue;
pub mod rng;
pub mod schedule;
pub mod workload;
pub mod world;

pub use checkers::Report;
pub use options::{Faults, SimOptions};
pub use world::{run, shrink, RunResult, World};
