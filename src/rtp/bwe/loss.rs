//! The loss-based controller (draft-ietf-rmcat-gcc-02 §6).
//!
//! The draft's rule, applied once per loss report:
//!
//! ```text
//!   loss > 10 %      A_s = A_s · (1 − 0.5 · loss)
//!   2 % ≤ loss ≤ 10 %  A_s unchanged
//!   loss < 2 %       A_s = 1.05 · A_s
//! ```
//!
//! and the sender uses `min(A_hat, A_s)`, the delay-based and loss-based
//! estimates. Here `A_s` exists only while loss holds the estimate down:
//! a decrease starts from `min(A_s, A_hat)` (so it always bites), and once
//! the 5 % steps bring `A_s` back up to the delay-based estimate it lets go
//! (`None`) until the next heavy loss. Without that, `A_s` would grow by 5 %
//! per report forever on a clean path and a later loss would have to undo
//! all of it first.
//!
//! Loss comes either from transport-wide feedback (counted over at least
//! 500 ms and 20 packets, so that 2 % random loss at 1 Mbit/s — two packets
//! in a hundred — does not look like 10 % in one short feedback) or from the
//! fraction lost of an RTCP receiver report block (RFC 3550 §6.4.1), which
//! already covers about a second.

use super::Bitrate;

/// §6: below this loss the estimate increases.
pub const LOW_LOSS: f64 = 0.02;
/// §6: above this loss the estimate decreases.
pub const HIGH_LOSS: f64 = 0.10;
/// A loss window from feedback lasts at least this long...
const WINDOW_US: i64 = 500_000;
/// ... and counts at least this many packets.
const WINDOW_PACKETS: u64 = 20;

/// The loss-based estimate `A_s`.
#[derive(Debug, Clone, Default)]
pub struct LossBasedBwe {
    estimate: Option<Bitrate>,
    window_start_us: Option<i64>,
    lost: u64,
    total: u64,
    last_loss: Option<f64>,
}

impl LossBasedBwe {
    /// Not limiting anything until loss is seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// `A_s`, or `None` while loss does not limit the rate.
    pub fn estimate(&self) -> Option<Bitrate> {
        self.estimate
    }

    /// The loss fraction of the last complete window or report.
    pub fn last_loss(&self) -> Option<f64> {
        self.last_loss
    }

    /// Counts packets from feedback: `received` newly acknowledged, `lost`
    /// newly reported missing, `recovered` acknowledged after all once
    /// reported missing (they were counted already: they only take back a
    /// loss, of this window if it is still open). Applies the rule when a
    /// window is complete.
    pub fn on_feedback(
        &mut self,
        now_us: i64,
        received: u64,
        lost: u64,
        recovered: u64,
        delay_based: Bitrate,
    ) {
        let start = *self.window_start_us.get_or_insert(now_us);
        self.total = self.total.saturating_add(received).saturating_add(lost);
        self.lost = self.lost.saturating_add(lost).saturating_sub(recovered);
        if now_us.saturating_sub(start) >= WINDOW_US && self.total >= WINDOW_PACKETS {
            let loss = self.lost.min(self.total) as f64 / self.total as f64;
            self.window_start_us = Some(now_us);
            self.lost = 0;
            self.total = 0;
            self.apply(loss, delay_based);
        }
    }

    /// An RTCP report block's fraction lost (in 1/256) for our stream.
    pub fn on_fraction_lost(&mut self, fraction_lost: u8, delay_based: Bitrate) {
        self.apply(fraction_lost as f64 / 256.0, delay_based);
    }

    /// §6 on one loss figure.
    pub fn apply(&mut self, loss: f64, delay_based: Bitrate) {
        let loss = if loss.is_finite() {
            loss.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.last_loss = Some(loss);
        if loss > HIGH_LOSS {
            let base = self.estimate.map_or(delay_based, |e| e.min(delay_based));
            self.estimate = Some(base.mul_f64(1.0 - 0.5 * loss));
        } else if loss < LOW_LOSS
            && let Some(e) = self.estimate
        {
            let up = e.mul_f64(1.05);
            self.estimate = (up < delay_based).then_some(up);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_regions() {
        let d = Bitrate::mbps(1);
        let mut l = LossBasedBwe::new();
        l.apply(0.01, d);
        assert_eq!(l.estimate(), None);
        l.apply(0.05, d);
        assert_eq!(l.estimate(), None);
        l.apply(0.2, d);
        assert_eq!(l.estimate(), Some(Bitrate::kbps(900)));
        l.apply(0.05, d);
        assert_eq!(l.estimate(), Some(Bitrate::kbps(900)));
        l.apply(0.0, d);
        assert_eq!(l.estimate(), Some(Bitrate::kbps(945)));
        l.apply(0.0, d);
        assert_eq!(l.estimate(), Some(Bitrate::bps(992_250)));
        l.apply(0.0, d);
        assert_eq!(l.estimate(), None, "caught up with the delay-based one");
        // A decrease starts from the lower of the two.
        l.apply(0.5, Bitrate::kbps(400));
        assert_eq!(l.estimate(), Some(Bitrate::kbps(300)));
        l.on_fraction_lost(255, Bitrate::kbps(400));
        assert!(l.estimate().unwrap() < Bitrate::kbps(200));
        l.apply(f64::NAN, d);
    }

    #[test]
    fn a_late_packet_takes_back_its_loss_once() {
        let d = Bitrate::mbps(1);
        let mut l = LossBasedBwe::new();
        // 20 packets: 15 received, 5 reported missing; 4 of those arrive
        // after all. 1 of 20 was lost (counting the 4 again as received
        // would make it 1 of 24).
        l.on_feedback(0, 15, 5, 0, d);
        l.on_feedback(100_000, 0, 0, 4, d);
        l.on_feedback(500_000, 0, 0, 0, d);
        assert_eq!(l.last_loss(), Some(0.05));
    }

    #[test]
    fn two_percent_random_loss_does_not_collapse() {
        // 100 packets a second, every 50th lost, feedback every 50 ms.
        let d = Bitrate::mbps(1);
        let mut l = LossBasedBwe::new();
        let mut seq = 0u64;
        for step in 0..400i64 {
            let (mut rx, mut lost) = (0, 0);
            for _ in 0..5 {
                seq += 1;
                if seq % 50 == 0 { lost += 1 } else { rx += 1 }
            }
            l.on_feedback(step * 50_000, rx, lost, 0, d);
        }
        assert_eq!(l.estimate(), None);
        assert!((l.last_loss().unwrap() - 0.02).abs() < 0.011);
    }
}
