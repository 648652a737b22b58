//! When a lease guard extends its lease, and what it tells the application.
//!
//! Pure arithmetic on `Instant`s: the guard's task (runtime-specific) only
//! sleeps until the instants computed here.

use std::time::{Duration, Instant};

/// What a lease guard's holder should know.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Held, with a comfortable margin.
    Held,
    /// Extensions are failing and the deadline is near: finish or stop work.
    Danger,
    /// The deadline has passed or the lease was taken away: stop acting as holder.
    Lost,
    /// Released by the holder.
    Released,
}

/// The guard's extend schedule.
#[derive(Copy, Clone, Debug)]
pub struct Schedule {
    /// The lease asked for at each extend.
    pub lease: Duration,
    /// The holder's deadline: the send instant of the last success + validity.
    pub deadline: Instant,
    /// The validity of the last success.
    pub validity: Duration,
}

impl Schedule {
    /// A schedule after a success sent at `sent` with `validity`.
    pub fn new(lease: Duration, sent: Instant, validity: Duration) -> Schedule {
        Schedule {
            lease,
            deadline: sent + validity,
            validity,
        }
    }

    /// Records a successful extend sent at `sent`.
    pub fn extended(&mut self, sent: Instant, validity: Duration) {
        self.deadline = self.deadline.max(sent + validity);
        self.validity = validity;
    }

    /// When to send the next extend: when a third of the validity remains.
    pub fn next_extend(&self) -> Instant {
        self.deadline
            .checked_sub(self.validity / 3)
            .unwrap_or(self.deadline)
    }

    /// After a failed extend at `now`, when to try again: soon, but spread.
    pub fn retry_after_failure(&self, now: Instant) -> Instant {
        let left = self.deadline.saturating_duration_since(now);
        now + (left / 8).clamp(Duration::from_millis(5), Duration::from_millis(200))
    }

    /// The state to report at `now` given whether the last extend failed.
    pub fn state(&self, now: Instant, last_failed: bool) -> LeaseState {
        if now >= self.deadline {
            LeaseState::Lost
        } else if last_failed && self.deadline - now <= self.validity / 3 {
            LeaseState::Danger
        } else {
            LeaseState::Held
        }
    }

    /// How long an extend may run before it is useless (it must finish
    /// before the deadline).
    pub fn extend_wait(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extends_when_a_third_remains_and_reports_danger_then_loss() {
        let t0 = Instant::now();
        let s = Schedule::new(Duration::from_secs(3), t0, Duration::from_secs(3));
        assert_eq!(s.next_extend(), t0 + Duration::from_secs(2));
        assert_eq!(
            s.state(t0 + Duration::from_millis(2500), false),
            LeaseState::Held
        );
        assert_eq!(
            s.state(t0 + Duration::from_millis(2500), true),
            LeaseState::Danger
        );
        assert_eq!(s.state(t0 + Duration::from_secs(3), true), LeaseState::Lost);
    }
}
