//! Deterministic simulator for locker clusters.
