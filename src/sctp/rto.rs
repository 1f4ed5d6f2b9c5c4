//! The retransmission timeout: round-trip time estimation (RFC 9260
//! §6.3.1, the same rules as RFC 6298 §2) and exponential back-off (RFC
//! 9260 §6.3.3 E2).
//!
//! The estimator only computes: which chunk measures a round trip (one at
//! a time, never a retransmitted one, C4/C5) is the sender's choice, and
//! the sender feeds the measurements in.

use std::time::Duration;

/// Clock granularity G of RFC 9260 §6.3.1 C3: the least `4 * RTTVAR`
/// counts for (so that a steady path does not drive the RTO down to SRTT).
const GRANULARITY: Duration = Duration::from_millis(1);

/// SRTT, RTTVAR and RTO of one path, with the bounds RTO.Min and RTO.Max.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    initial: Duration,
    min: Duration,
    max: Duration,
}

impl RttEstimator {
    /// A path not measured yet: RFC 9260 §6.3.1 C1, RTO = RTO.Initial.
    pub fn new(initial: Duration, min: Duration, max: Duration) -> RttEstimator {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial,
            initial,
            min,
            max,
        }
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The smoothed round-trip time, once one was measured.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The round-trip time variation.
    #[cfg(test)]
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// Takes one round-trip measurement `r`.
    ///
    /// RFC 9260 §6.3.1 C2: the first sets SRTT = R, RTTVAR = R/2.
    /// C3: later ones set RTTVAR = (1 - 1/4) RTTVAR + 1/4 |SRTT - R|, then
    /// SRTT = (1 - 1/8) SRTT + 1/8 R (RTTVAR first, from the old SRTT).
    /// Both: RTO = SRTT + 4 RTTVAR (at least G, C3's clock granularity),
    /// C6/C7: clamped to RTO.Min and RTO.Max.
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(s * 7 / 8 + r / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        let rto = srtt + (4 * self.rttvar).max(GRANULARITY);
        self.rto = rto.clamp(self.min, self.max);
    }

    /// RFC 9260 §6.3.3 E2 (and §5.1's T1 rules): a timer expired, so
    /// RTO = RTO * 2, at most RTO.Max.
    pub fn back_off(&mut self) {
        self.rto = (self.rto * 2).min(self.max);
    }

    /// Back to RTO.Initial, keeping what was measured: at the start of a
    /// handshake, and once it completed (its losses backed the RTO off
    /// before any round trip was measured).
    pub fn restart(&mut self) {
        self.rto = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn est() -> RttEstimator {
        RttEstimator::new(ms(500), ms(100), ms(10_000))
    }

    #[test]
    fn starts_at_rto_initial() {
        // §6.3.1 C1.
        let e = est();
        assert_eq!(e.rto(), ms(500));
        assert_eq!(e.srtt(), None);
    }

    #[test]
    fn first_sample_sets_srtt_and_half_rttvar() {
        // §6.3.1 C2: SRTT = 200, RTTVAR = 100, RTO = 200 + 4 * 100.
        let mut e = est();
        e.sample(ms(200));
        assert_eq!(e.srtt(), Some(ms(200)));
        assert_eq!(e.rttvar(), ms(100));
        assert_eq!(e.rto(), ms(600));
    }

    #[test]
    fn later_samples_smooth_rttvar_from_the_old_srtt() {
        // §6.3.1 C3: RTTVAR = 3/4 * 100 + 1/4 * |200 - 100| = 100,
        // SRTT = 7/8 * 200 + 1/8 * 100 = 187.5, RTO = 187.5 + 400.
        let mut e = est();
        e.sample(ms(200));
        e.sample(ms(100));
        assert_eq!(e.rttvar(), ms(100));
        assert_eq!(e.srtt(), Some(Duration::from_micros(187_500)));
        assert_eq!(e.rto(), Duration::from_micros(587_500));
    }

    #[test]
    fn rto_is_clamped_to_min_and_max() {
        // §6.3.1 C6 (RTO.Min) and C7 (RTO.Max).
        let mut e = est();
        e.sample(ms(10));
        assert_eq!(e.rto(), ms(100));
        let mut e = est();
        e.sample(ms(5_000));
        assert_eq!(e.rto(), ms(10_000));
    }

    #[test]
    fn steady_path_keeps_the_granularity() {
        // §6.3.1 C3's G: RTTVAR decays towards zero on a steady path; the
        // RTO stays at least SRTT + G.
        let mut e = RttEstimator::new(ms(500), Duration::ZERO, ms(10_000));
        for _ in 0..200 {
            e.sample(ms(20));
        }
        assert_eq!(e.srtt(), Some(ms(20)));
        assert_eq!(e.rto(), ms(21));
    }

    #[test]
    fn back_off_doubles_up_to_max_and_restart_returns_to_initial() {
        // §6.3.3 E2.
        let mut e = est();
        e.back_off();
        assert_eq!(e.rto(), ms(1_000));
        for _ in 0..10 {
            e.back_off();
        }
        assert_eq!(e.rto(), ms(10_000));
        e.restart();
        assert_eq!(e.rto(), ms(500));
    }
}
