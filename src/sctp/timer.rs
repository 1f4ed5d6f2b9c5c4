//! The association's timers in one table: each is an instant or unset, and
//! the association asks the table when it must be woken next.

use std::time::Instant;

/// One of the association's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// T1-init and T1-cookie (RFC 9260 §5.1): INIT or COOKIE ECHO unanswered.
    T1,
    /// T2-shutdown (RFC 9260 §9.2): SHUTDOWN or SHUTDOWN ACK unanswered.
    T2,
    /// T3-rtx (RFC 9260 §6.3.2): outstanding DATA unacknowledged.
    T3,
    /// RACK's reordering timer (RFC 8985 §6.2): a retransmission counts as
    /// lost when it fires.
    Rack,
    /// The delayed SACK (RFC 9260 §6.2: at most 200 ms).
    DelayedSack,
    /// A stream reset request unanswered (RFC 6525 §5.1.1).
    Reconfig,
    /// The next HEARTBEAT of an idle path (RFC 9260 §8.3).
    Heartbeat,
}

impl Timer {
    /// Every timer, in the order their expiries are handled.
    pub const ALL: [Timer; 7] = [
        Timer::T1,
        Timer::T2,
        Timer::T3,
        Timer::Rack,
        Timer::DelayedSack,
        Timer::Reconfig,
        Timer::Heartbeat,
    ];
}

/// When each [`Timer`] expires, if it is running.
#[derive(Debug, Clone, Default)]
pub struct Timers {
    at: [Option<Instant>; 7],
}

impl Timers {
    /// Starts (or restarts) `t` to expire at `at`.
    pub fn set(&mut self, t: Timer, at: Instant) {
        self.at[t as usize] = Some(at);
    }

    /// Stops `t`.
    pub fn stop(&mut self, t: Timer) {
        self.at[t as usize] = None;
    }

    /// Sets `t` to `at`, or stops it when `at` is `None`.
    pub fn set_opt(&mut self, t: Timer, at: Option<Instant>) {
        self.at[t as usize] = at;
    }

    /// Stops every timer.
    pub fn stop_all(&mut self) {
        self.at = [None; 7];
    }

    /// Whether `t` runs.
    pub fn is_running(&self, t: Timer) -> bool {
        self.at[t as usize].is_some()
    }

    /// Whether `t` runs and is due at `now`.
    pub fn is_expired(&self, t: Timer, now: Instant) -> bool {
        self.at[t as usize].is_some_and(|at| at <= now)
    }

    /// The earliest expiry of all running timers.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.at.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_reports_the_earliest_running_timer() {
        let now = Instant::now();
        let mut t = Timers::default();
        assert_eq!(t.poll_timeout(), None);
        t.set(Timer::Heartbeat, now + Duration::from_secs(30));
        t.set(Timer::T3, now + Duration::from_secs(1));
        t.set(Timer::DelayedSack, now + Duration::from_millis(200));
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_millis(200)));
        t.stop(Timer::DelayedSack);
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(1)));
        assert!(t.is_running(Timer::T3));
        assert!(!t.is_running(Timer::T1));
        t.stop_all();
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn expiry_is_inclusive_and_per_timer() {
        let now = Instant::now();
        let mut t = Timers::default();
        t.set(Timer::T1, now);
        t.set(Timer::T2, now + Duration::from_millis(1));
        assert!(t.is_expired(Timer::T1, now));
        assert!(!t.is_expired(Timer::T2, now));
        assert!(!t.is_expired(Timer::Rack, now));
        t.set_opt(Timer::T1, None);
        assert!(!t.is_running(Timer::T1));
        assert_eq!(Timer::ALL.len(), 7);
        for (i, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(*timer as usize, i);
        }
    }
}
