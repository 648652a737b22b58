//! Per-node clocks: an offset and a rate error, so that every node's `now`
//! drifts from real time and from the others.

use locker_core::Time;

/// One node's clock: `local = offset + real * (1 + rate)`, in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Local reading at real time zero (a restart picks a new one: a jump).
    pub offset: u64,
    /// Rate error: +0.001 runs 0.1% fast.
    pub rate: f64,
}

impl Clock {
    /// The local reading at real instant `real` (microseconds).
    pub fn local(&self, real: u64) -> Time {
        // `as` truncates toward zero and saturates at zero: the floor of
        // any product here, without a call into libm.
        let scaled = (real as f64 * (1.0 + self.rate)) as u64;
        Time::from_micros(self.offset.saturating_add(scaled))
    }

    /// The earliest real instant at which the local clock reads `t` or more.
    pub fn real_at(&self, t: Time) -> u64 {
        let local = t.as_micros();
        if local <= self.offset {
            return 0;
        }
        if local == u64::MAX {
            return u64::MAX;
        }
        // The ceiling without libm: truncate, then step up past a fraction
        // (saturating like `as` does).
        let exact = (local - self.offset) as f64 / (1.0 + self.rate);
        let mut real = exact as u64;
        if (real as f64) < exact {
            real = real.saturating_add(1);
        }
        real = real.saturating_sub(2);
        while self.local(real) < t {
            real += 1;
        }
        real
    }
}
