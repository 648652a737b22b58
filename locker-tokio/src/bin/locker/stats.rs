//! Latency statistics for `locker bench`.

use hdrhistogram::Histogram;
use std::time::Duration;

/// A latency histogram in microseconds.
pub struct Latencies {
    hist: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let _ = self
            .hist
            .record((d.as_micros() as u64).clamp(1, 60_000_000));
    }
    /// Adds another histogram.
    pub fn merge(&mut self, other: &Latencies) {
        let _ = self.hist.add(&other.hist);
    }
    /// Recorded samples.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }
    /// The value at `q` (0..=1), in microseconds.
    pub fn quantile_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}
