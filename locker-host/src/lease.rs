//! When a lease guard extends its lease, and what it tells the application.
//!
//! Pure arithmetic on `Instant`s: the guard's task only sleeps until the
//! instants computed here, and every reader of a guard evaluates
//! [`Schedule::state`] against the clock at the moment it reads.
//!
//! With validity `V` counted from the send of the last successful lock or
//! extend, and deadline `D`, the default schedule is:
//!
//! ```text
//!  sent              D - V/2          D - V/4        D
//!   |----- Held ------|-- extending --|--- Danger ---|  Lost
//!                     first attempt    danger margin
//!                     bounded by V/8
//! ```
//!
//! An extend starts when half the validity remains; each attempt is bounded
//! (the node's wait and the client's own limit) so that a failure is known
//! well before the danger margin; a failed extend reads Danger at once;
//! retries go on inside the margin, each bounded by the deadline. Without a
//! success the guard reads Danger for at least the margin, then Lost.

use std::time::{Duration, Instant};

/// What a lease guard's holder should know.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Held, with a comfortable margin.
    Held,
    /// An extend has failed or the deadline is within the danger margin:
    /// finish or stop work; the lease may still be extended.
    Danger,
    /// The deadline has passed or the lease was taken away: stop acting as
    /// holder. Final.
    Lost,
    /// Released by the holder. Final.
    Released,
}

impl LeaseState {
    /// Whether the state can never change again (Lost or Released).
    pub fn is_final(self) -> bool {
        matches!(self, LeaseState::Lost | LeaseState::Released)
    }
}

/// How a lease guard warns of loss.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GuardOptions {
    /// How long before the deadline the guard reads Danger even while no
    /// extend has failed: the time the application needs to stop its work
    /// safely. `None` (the default): a quarter of the validity. A margin of
    /// the whole validity or more reads Danger from the start. Extends
    /// begin early enough to fail (and be retried) before the margin.
    pub danger_margin: Option<Duration>,
}

/// The fastest a failed extend is retried.
const MIN_RETRY: Duration = Duration::from_millis(5);
/// The slowest a failed extend is retried.
const MAX_RETRY: Duration = Duration::from_millis(200);

/// The guard's extend schedule.
#[derive(Copy, Clone, Debug)]
pub struct Schedule {
    /// The lease asked for at each extend.
    pub lease: Duration,
    /// The holder's deadline: the send instant of the last success + validity.
    pub deadline: Instant,
    /// The validity of the last success.
    pub validity: Duration,
    /// The configured margin (`None`: a quarter of the validity).
    danger_margin: Option<Duration>,
}

impl Schedule {
    /// A schedule after a success sent at `sent` with `validity`.
    pub fn new(
        lease: Duration,
        sent: Instant,
        validity: Duration,
        options: GuardOptions,
    ) -> Schedule {
        Schedule {
            lease,
            deadline: sent + validity,
            validity,
            danger_margin: options.danger_margin,
        }
    }

    /// Records a successful extend sent at `sent`.
    pub fn extended(&mut self, sent: Instant, validity: Duration) {
        self.deadline = self.deadline.max(sent + validity);
        self.validity = validity;
    }

    /// How long before the deadline the guard reads Danger (at most the
    /// whole validity).
    pub fn danger_margin(&self) -> Duration {
        self.danger_margin
            .unwrap_or(self.validity / 4)
            .min(self.validity)
    }

    /// From when the guard reads Danger, failures or not.
    pub fn danger_at(&self) -> Instant {
        before(self.deadline, self.danger_margin())
    }

    /// How much validity is left when an extend starts: half of it, or more
    /// when the danger margin is wide, so that attempts have a quarter of
    /// the validity before the margin (never more than all of it).
    fn extend_lead(&self) -> Duration {
        (self.validity / 2)
            .max(self.danger_margin() + self.validity / 4)
            .min(self.validity)
    }

    /// When to send the next extend.
    pub fn next_extend(&self) -> Instant {
        before(self.deadline, self.extend_lead())
    }

    /// How long one extend attempt started at `now` may take (the node's
    /// wait): half the time from the extend start to the danger margin, so
    /// that the first failure is known before it; at least an eighth of the
    /// validity; never past the deadline.
    pub fn attempt_wait(&self, now: Instant) -> Duration {
        let before_danger = self.extend_lead().saturating_sub(self.danger_margin());
        (before_danger / 2)
            .max(self.validity / 8)
            .min(self.deadline.saturating_duration_since(now))
    }

    /// When the guard gives up waiting for the answer of an attempt started
    /// at `now`: a half more than the node's wait, for the answer to travel
    /// (it comes sooner unless the node or the link is stuck), and never
    /// past the deadline.
    pub fn attempt_end(&self, now: Instant) -> Instant {
        let wait = self.attempt_wait(now);
        (now + wait + wait / 2).min(self.deadline)
    }

    /// After a failed extend at `now`, when to try again: soon, but spread.
    pub fn retry_after_failure(&self, now: Instant) -> Instant {
        let left = self.deadline.saturating_duration_since(now);
        now + (left / 8).clamp(MIN_RETRY, MAX_RETRY)
    }

    /// The state at `now`, given whether the last extend failed.
    pub fn state(&self, now: Instant, last_failed: bool) -> LeaseState {
        if now >= self.deadline {
            LeaseState::Lost
        } else if last_failed || now >= self.danger_at() {
            LeaseState::Danger
        } else {
            LeaseState::Held
        }
    }

    /// The next instant after `now` at which [`Schedule::state`] changes by
    /// the clock alone (`None` once Lost).
    pub fn next_change(&self, now: Instant, last_failed: bool) -> Option<Instant> {
        match self.state(now, last_failed) {
            LeaseState::Held => Some(self.danger_at()),
            LeaseState::Danger => Some(self.deadline),
            LeaseState::Lost | LeaseState::Released => None,
        }
    }
}

/// `at - d`, or `at` itself where the instant cannot be represented.
fn before(at: Instant, d: Duration) -> Instant {
    at.checked_sub(d).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A schedule of a 2 s validity sent at `t0`, with default options.
    fn two_seconds(t0: Instant) -> Schedule {
        Schedule::new(ms(2000), t0, ms(2000), GuardOptions::default())
    }

    #[test]
    fn extends_at_half_the_validity_with_attempts_that_fail_before_the_margin() {
        let t0 = Instant::now();
        let s = two_seconds(t0);
        assert_eq!(s.danger_margin(), ms(500));
        assert_eq!(s.next_extend(), t0 + ms(1000));
        let start = s.next_extend();
        assert_eq!(s.attempt_wait(start), ms(250));
        assert!(
            s.attempt_end(start) < s.danger_at(),
            "the first attempt's failure is known before the danger margin"
        );
        // A retry after that failure still ends before the deadline.
        let retry = s.retry_after_failure(s.attempt_end(start));
        assert!(retry < s.danger_at());
        assert!(s.attempt_end(retry) <= s.deadline);
    }

    #[test]
    fn reads_held_then_danger_at_the_margin_then_lost_at_the_deadline() {
        let t0 = Instant::now();
        let s = two_seconds(t0);
        assert_eq!(s.state(t0, false), LeaseState::Held);
        assert_eq!(s.state(t0 + ms(1499), false), LeaseState::Held);
        assert_eq!(s.state(t0 + ms(1500), false), LeaseState::Danger);
        assert_eq!(s.state(t0 + ms(1999), false), LeaseState::Danger);
        assert_eq!(s.state(t0 + ms(2000), false), LeaseState::Lost);
        assert_eq!(s.state(t0 + ms(60_000), false), LeaseState::Lost);
        assert_eq!(s.next_change(t0, false), Some(t0 + ms(1500)));
        assert_eq!(s.next_change(t0 + ms(1500), false), Some(t0 + ms(2000)));
        assert_eq!(s.next_change(t0 + ms(2000), false), None);
    }

    #[test]
    fn a_failed_extend_reads_danger_at_once_and_lost_at_the_deadline() {
        let t0 = Instant::now();
        let s = two_seconds(t0);
        assert_eq!(s.state(t0 + ms(1100), true), LeaseState::Danger);
        assert_eq!(s.next_change(t0 + ms(1100), true), Some(t0 + ms(2000)));
        assert_eq!(s.state(t0 + ms(2000), true), LeaseState::Lost);
    }

    #[test]
    fn attempts_inside_the_margin_are_bounded_by_the_deadline() {
        let t0 = Instant::now();
        let s = two_seconds(t0);
        let late = t0 + ms(1900);
        assert_eq!(s.attempt_wait(late), ms(100));
        assert_eq!(s.attempt_end(late), s.deadline);
        assert_eq!(s.attempt_wait(t0 + ms(2500)), Duration::ZERO);
        assert_eq!(s.attempt_end(t0 + ms(2500)), s.deadline);
    }

    #[test]
    fn a_success_moves_the_deadline_and_the_whole_schedule() {
        let t0 = Instant::now();
        let mut s = two_seconds(t0);
        s.extended(t0 + ms(1000), ms(2000));
        assert_eq!(s.deadline, t0 + ms(3000));
        assert_eq!(s.next_extend(), t0 + ms(2000));
        assert_eq!(s.state(t0 + ms(2400), false), LeaseState::Held);
        // A late answer to an older extend never pulls the deadline back.
        s.extended(t0 + ms(500), ms(2000));
        assert_eq!(s.deadline, t0 + ms(3000));
    }

    #[test]
    fn a_wide_danger_margin_starts_extends_earlier() {
        let t0 = Instant::now();
        let wide = GuardOptions {
            danger_margin: Some(ms(1000)),
        };
        let s = Schedule::new(ms(2000), t0, ms(2000), wide);
        assert_eq!(s.danger_at(), t0 + ms(1000));
        assert_eq!(s.next_extend(), t0 + ms(500));
        assert!(s.attempt_end(s.next_extend()) < s.danger_at());
        assert_eq!(s.state(t0 + ms(999), false), LeaseState::Held);
        assert_eq!(s.state(t0 + ms(1000), false), LeaseState::Danger);
    }

    #[test]
    fn a_margin_of_the_whole_validity_reads_danger_from_the_start() {
        let t0 = Instant::now();
        let all = GuardOptions {
            danger_margin: Some(ms(5000)),
        };
        let s = Schedule::new(ms(2000), t0, ms(2000), all);
        assert_eq!(s.danger_margin(), ms(2000));
        assert_eq!(s.state(t0, false), LeaseState::Danger);
        assert_eq!(s.next_extend(), t0, "extends at once");
        assert_eq!(s.attempt_wait(t0), ms(250));
        assert_eq!(s.state(t0 + ms(2000), false), LeaseState::Lost);
    }

    #[test]
    fn a_narrow_margin_keeps_extending_at_half() {
        let t0 = Instant::now();
        let narrow = GuardOptions {
            danger_margin: Some(ms(100)),
        };
        let s = Schedule::new(ms(2000), t0, ms(2000), narrow);
        assert_eq!(s.next_extend(), t0 + ms(1000));
        assert_eq!(s.attempt_wait(s.next_extend()), ms(450));
        assert!(s.attempt_end(s.next_extend()) < s.danger_at());
    }
}
