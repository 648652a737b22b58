//! Latency statistics for `locker bench`.

use hdrhistogram::Histogram;
use std::time::Duration;

/// Latencies in microseconds.
///
/// Each client task records into a plain vector and the histogram is built
/// once, when quantiles are asked for: a histogram per task (two per client,
/// each about 200 KiB for this range and precision) made every record a
/// cache miss in the load process, which shares the CPUs with the nodes it
/// measures (`hdrhistogram` was 6 % of its profile at 64 clients).
#[derive(Default)]
pub struct Latencies {
    samples: Vec<u32>,
}

/// The largest latency recorded (a minute), in microseconds.
const MAX_US: u64 = 60_000_000;

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        self.samples
            .push((d.as_micros() as u64).clamp(1, MAX_US) as u32);
    }
    /// Adds another set of latencies.
    pub fn merge(&mut self, other: &Latencies) {
        self.samples.extend_from_slice(&other.samples);
    }
    /// Recorded samples.
    pub fn count(&self) -> u64 {
        self.samples.len() as u64
    }
    /// The value at `q` (0..=1), in microseconds (three significant digits).
    pub fn quantile_us(&self, q: f64) -> u64 {
        let mut hist = Histogram::<u64>::new_with_bounds(1, MAX_US, 3).expect("valid bounds");
        for &s in &self.samples {
            let _ = hist.record(u64::from(s));
        }
        hist.value_at_quantile(q)
    }
}
