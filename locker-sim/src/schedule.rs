//! Arbitrary bytes turned into a small cluster shape and fault set within the
//! fault model (majority quorum, drift within the bound, persisted token
//! ceilings, restart quarantine). The `cluster_schedule` fuzz target and the
//! replay of its committed inputs in this crate's tests share it.

use arbitrary::{Arbitrary, Unstructured};

use crate::options::{Faults, SimOptions};

#[derive(Arbitrary, Debug)]
struct Shape {
    seed: u64,
    masters: u8,
    replicas: u8,
    clients: u8,
    faults: u8,
    tenths_of_secs: u8,
    lease_ms: u16,
    drift_permille: u8,
}

/// The seed and options that `bytes` describe.
pub fn from_bytes(bytes: &[u8]) -> arbitrary::Result<(u64, SimOptions)> {
    let s = Shape::arbitrary_take_rest(Unstructured::new(bytes))?;
    let options = SimOptions {
        masters: 1 + (s.masters % 5) as usize,
        replicas: (s.replicas % 3) as usize,
        clients: 1 + (s.clients % 3) as usize,
        faults: Faults::from_bits(s.faults),
        // Within the configured bound (0.1%).
        drift: Some(0.001 * (s.drift_permille % 101) as f64 / 100.0),
        sim_secs: 0.2 + (s.tenths_of_secs % 8) as f64 / 10.0,
        max_lease_ms: 50 + (s.lease_ms % 2_000) as u64,
        ..SimOptions::default()
    };
    Ok((s.seed, options))
}
