//! Congestion control behind a small trait (the shape of quinn's
//! `Controller`): the association tells the controller what each SACK
//! acknowledged, when it found a loss and when T3-rtx expired, and asks it
//! for the window. [`NewReno`] is RFC 9260 §7.2's algorithm.

use std::fmt::Debug;

/// Serial number arithmetic on TSNs (RFC 9260 §1.6): `a <= b`.
fn tsn_le(a: u32, b: u32) -> bool {
    a == b || (a.wrapping_sub(b) as i32) < 0
}

/// What one SACK that found no new loss acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The SACK moved the cumulative TSN.
    pub cum_advanced: bool,
    /// Bytes newly acknowledged by the cumulative TSN (not gap-acked before).
    pub cum_bytes: usize,
    /// Bytes newly acknowledged by gap blocks.
    pub gap_bytes: usize,
    /// The flight size before the SACK.
    pub flight_before: usize,
}

/// A congestion controller for one association.
pub trait Controller: Debug + Send + Sync {
    /// A SACK acknowledged data and found no new loss.
    fn on_ack(&mut self, ack: &Ack);
    /// Chunks were found lost (fast retransmit, RACK); `highest_sent` is
    /// the highest TSN sent so far.
    fn on_congestion_event(&mut self, highest_sent: u32);
    /// After every SACK, with the cumulative TSN it left.
    fn on_end_acks(&mut self, cum_ack: u32);
    /// T3-rtx expired.
    fn on_timeout(&mut self);
    /// The peer's advertised receive window at the handshake.
    fn on_peer_window(&mut self, a_rwnd: u32);
    /// Whether the sender is in fast recovery (RFC 9260 §7.2.4).
    fn in_recovery(&self) -> bool;
    /// The congestion window in bytes.
    fn window(&self) -> usize;
}

/// RFC 9260 §7.2: slow start, congestion avoidance with
/// partial_bytes_acked, one window reduction per loss event (fast
/// recovery) and the return to one MTU on T3-rtx expiry.
#[derive(Debug, Clone)]
pub struct NewReno {
    mtu: usize,
    cwnd: usize,
    ssthresh: usize,
    partial_bytes_acked: usize,
    /// The highest TSN outstanding when fast recovery began: recovery ends
    /// once the cumulative TSN reaches it.
    fast_recovery_exit: Option<u32>,
}

impl NewReno {
    /// A controller for packets of `mtu` bytes. RFC 9260 §7.2.1: the
    /// initial cwnd is min(4 MTU, max(2 MTU, 4380 bytes)); ssthresh starts
    /// arbitrarily high, until the peer's window is known.
    pub fn new(mtu: usize) -> NewReno {
        NewReno {
            mtu,
            cwnd: (4 * mtu).min(4380usize.max(2 * mtu)),
            ssthresh: usize::MAX,
            partial_bytes_acked: 0,
            fast_recovery_exit: None,
        }
    }

    /// The slow-start threshold.
    pub fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}

// ANCHOR: congestion
impl Controller for NewReno {
    fn on_ack(&mut self, ack: &Ack) {
        if !ack.cum_advanced || self.fast_recovery_exit.is_some() {
            return;
        }
        if self.cwnd <= self.ssthresh {
            // §7.2.1 slow start: cwnd grows by at most one MTU per SACK
            // that advances the cumulative TSN, only when the window was in use.
            if ack.flight_before + self.mtu >= self.cwnd {
                self.cwnd += ack.cum_bytes.min(self.mtu);
            }
        } else {
            // §7.2.2 congestion avoidance: one MTU per window of bytes acknowledged.
            self.partial_bytes_acked += ack.cum_bytes + ack.gap_bytes;
            if self.partial_bytes_acked >= self.cwnd && ack.flight_before + self.mtu >= self.cwnd {
                self.partial_bytes_acked -= self.cwnd;
                self.cwnd += self.mtu;
            }
        }
    }

    /// RFC 9260 §7.2.4: one window reduction per loss event: entering fast
    /// recovery halves cwnd, later losses before its exit point do not.
    fn on_congestion_event(&mut self, highest_sent: u32) {
        if self.fast_recovery_exit.is_none() {
            self.ssthresh = (self.cwnd / 2).max(4 * self.mtu);
            self.cwnd = self.ssthresh;
            self.partial_bytes_acked = 0;
            self.fast_recovery_exit = Some(highest_sent);
        }
    }

    // ANCHOR_END: congestion
    fn on_end_acks(&mut self, cum_ack: u32) {
        if self
            .fast_recovery_exit
            .is_some_and(|exit| tsn_le(exit, cum_ack))
        {
            self.fast_recovery_exit = None;
        }
    }

    /// RFC 9260 §7.2.3: back to slow start from one MTU.
    fn on_timeout(&mut self) {
        self.ssthresh = (self.cwnd / 2).max(4 * self.mtu);
        self.cwnd = self.mtu;
        self.partial_bytes_acked = 0;
        self.fast_recovery_exit = None;
    }

    fn on_peer_window(&mut self, a_rwnd: u32) {
        self.ssthresh = a_rwnd as usize;
    }

    fn in_recovery(&self) -> bool {
        self.fast_recovery_exit.is_some()
    }

    fn window(&self) -> usize {
        self.cwnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MTU: usize = 1200;

    fn ack(cum_bytes: usize, gap_bytes: usize, flight_before: usize) -> Ack {
        Ack {
            cum_advanced: true,
            cum_bytes,
            gap_bytes,
            flight_before,
        }
    }

    #[test]
    fn initial_window() {
        // §7.2.1: min(4 * 1200, max(2 * 1200, 4380)) = 4380.
        assert_eq!(NewReno::new(MTU).window(), 4380);
        assert_eq!(NewReno::new(500).window(), 2000);
    }

    #[test]
    fn slow_start_grows_one_mtu_per_sack_while_the_window_is_used() {
        let mut c = NewReno::new(MTU);
        c.on_peer_window(1 << 20);
        c.on_ack(&ack(3 * MTU, 0, 4380));
        assert_eq!(c.window(), 4380 + MTU);
        // Little in flight: the window was not the limit, no growth.
        c.on_ack(&ack(MTU, 0, MTU));
        assert_eq!(c.window(), 4380 + MTU);
        // No advance of the cumulative TSN: no growth.
        c.on_ack(&Ack {
            cum_advanced: false,
            ..ack(MTU, MTU, 10 * MTU)
        });
        assert_eq!(c.window(), 4380 + MTU);
    }

    #[test]
    fn congestion_avoidance_adds_one_mtu_per_window_acknowledged() {
        // §7.2.2.
        let mut c = NewReno::new(MTU);
        c.on_peer_window(2000);
        let w = c.window();
        c.on_ack(&ack(w / 2, 0, w));
        assert_eq!(c.window(), w);
        c.on_ack(&ack(w / 2, w / 2, w));
        assert_eq!(c.window(), w + MTU);
    }

    #[test]
    fn one_reduction_per_loss_event_until_recovery_exits() {
        // §7.2.4.
        let mut c = NewReno::new(MTU);
        c.on_peer_window(1 << 20);
        for _ in 0..20 {
            c.on_ack(&ack(MTU, 0, 100 * MTU));
        }
        let w = c.window();
        c.on_congestion_event(100);
        assert!(c.in_recovery());
        assert_eq!(c.window(), (w / 2).max(4 * MTU));
        assert_eq!(c.ssthresh(), c.window());
        c.on_congestion_event(150);
        assert_eq!(c.window(), (w / 2).max(4 * MTU));
        // No growth in recovery.
        c.on_ack(&ack(MTU, 0, 100 * MTU));
        assert_eq!(c.window(), (w / 2).max(4 * MTU));
        c.on_end_acks(99);
        assert!(c.in_recovery());
        c.on_end_acks(100);
        assert!(!c.in_recovery());
    }

    #[test]
    fn recovery_exit_uses_serial_arithmetic() {
        let mut c = NewReno::new(MTU);
        c.on_congestion_event(u32::MAX);
        c.on_end_acks(u32::MAX - 1);
        assert!(c.in_recovery());
        c.on_end_acks(2);
        assert!(!c.in_recovery());
    }

    #[test]
    fn timeout_returns_to_one_mtu() {
        // §7.2.3.
        let mut c = NewReno::new(MTU);
        c.on_congestion_event(10);
        c.on_timeout();
        assert_eq!(c.window(), MTU);
        assert_eq!(c.ssthresh(), 4 * MTU);
        assert!(!c.in_recovery());
    }
}
