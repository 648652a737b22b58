//! Node-local time as a plain value.
//!
//! The core never reads a clock: every input carries `now`, a point on the
//! calling node's own monotonic clock. Different nodes' clocks are not
//! comparable; only their *rates* are assumed to agree within
//! [`Config::max_drift`](crate::Config::max_drift).

use core::fmt;
use core::ops::{Add, Sub};
use core::time::Duration;
use serde::{Deserialize, Serialize};

/// A point on one node's monotonic clock, in microseconds since an arbitrary
/// origin chosen by the host.
///
/// ```
/// use locker_core::Time;
/// use std::time::Duration;
/// let t = Time::from_millis(5);
/// assert_eq!(t + Duration::from_millis(1), Time::from_micros(6_000));
/// assert_eq!(Time::from_millis(7) - t, Duration::from_millis(2));
/// ```
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(u64);

impl Time {
    /// The clock's origin.
    pub const ZERO: Time = Time(0);
    /// The largest representable instant; used as "never".
    pub const MAX: Time = Time(u64::MAX);

    /// An instant `micros` microseconds after the origin.
    pub const fn from_micros(micros: u64) -> Time {
        Time(micros)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Time {
        Time(millis.saturating_mul(1000))
    }

    /// Microseconds since the origin.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    /// Saturates at [`Time::MAX`] instead of overflowing.
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(micros(d)))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    /// Saturates at [`Time::ZERO`].
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(micros(d)))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    /// Saturates at zero when `rhs` is later.
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// A duration in whole microseconds, saturating at `u64::MAX`.
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Drift bound in parts per million, the integer form of `max_drift` used for
/// all lease arithmetic so that results are exact and platform-independent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Drift {
    ppm: u64,
}

const MILLION: u128 = 1_000_000;

impl Drift {
    pub(crate) fn from_fraction(max_drift: f64) -> Drift {
        Drift {
            ppm: (max_drift * 1e6).round() as u64,
        }
    }

    /// `d * (1 - drift) / (1 + drift)`, rounded down: the part of a lease that
    /// a holder may count on its own clock (see PROTOCOL.md, "Leases").
    pub(crate) fn shrink(self, d: Duration) -> Duration {
        let us = micros(d) as u128;
        let scaled = us * (MILLION - self.ppm as u128) / (MILLION + self.ppm as u128);
        Duration::from_micros(scaled as u64)
    }

    /// `d * (1 + drift) / (1 - drift)`, rounded up: how long to wait on a
    /// fast-or-slow clock to be sure `d` has passed in real time everywhere.
    pub(crate) fn stretch(self, d: Duration) -> Duration {
        let us = micros(d) as u128;
        let den = MILLION - self.ppm as u128;
        let scaled = (us * (MILLION + self.ppm as u128)).div_ceil(den);
        Duration::from_micros(u64::try_from(scaled).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shrink_and_stretch_bracket_the_duration() {
        let drift = Drift::from_fraction(0.001);
        let d = Duration::from_secs(10);
        assert!(drift.shrink(d) < d);
        assert!(drift.stretch(d) > d);
        assert_eq!(Drift::from_fraction(0.0).shrink(d), d);
        assert_eq!(Drift::from_fraction(0.0).stretch(d), d);
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(Time::MAX + Duration::from_secs(1), Time::MAX);
        assert_eq!(Time::ZERO - Duration::from_secs(1), Time::ZERO);
        assert_eq!(Time::ZERO - Time::from_micros(5), Duration::ZERO);
    }
}
