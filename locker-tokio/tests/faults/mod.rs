//! The parts of the real-process fault suite (`tests/faults.rs`).

pub mod chaos;
pub mod cluster;
pub mod disk;
pub mod history;
pub mod procs;
pub mod proxy;
pub mod workload;
