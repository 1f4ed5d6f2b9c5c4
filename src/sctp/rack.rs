//! RACK (RFC 8985), as the association uses it: for retransmitted chunks
//! only. Miss counting (RFC 9260 §7.2.4) cannot see a lost fast
//! retransmission without three more SACKs, which a full window may never
//! bring, leaving only T3 and its back-off; RACK declares a retransmission
//! lost once a chunk sent after it was delivered and a round trip plus a
//! reordering window has passed since it went out.

use std::time::{Duration, Instant};

/// The least reordering window (RFC 8985 §6.2 step 4 bounds it by SRTT/4;
/// before any SRTT, and on very short paths, one millisecond).
const MIN_REO_WND: Duration = Duration::from_millis(1);

/// The most recently sent transmission known delivered, and the round trip
/// it measured (RFC 8985 §6.2 step 2: RACK.xmit_ts, RACK.rtt).
#[derive(Debug, Clone, Default)]
pub struct Rack {
    /// (send order, send time) of the newest delivered transmission.
    latest: Option<(u64, Instant)>,
    rtt: Duration,
}

impl Rack {
    /// RFC 8985 §6.2 step 2: a SACK delivered the transmission `seq` (in
    /// send order) sent at `sent_at`; kept if it was sent after the one
    /// known so far.
    pub fn on_delivered(&mut self, seq: u64, sent_at: Instant, now: Instant) {
        if self.latest.is_none_or(|(q, _)| q < seq) {
            self.latest = Some((seq, sent_at));
            self.rtt = now.saturating_duration_since(sent_at);
        }
    }

    /// The send order of the newest delivered transmission.
    pub fn latest_seq(&self) -> Option<u64> {
        self.latest.map(|(q, _)| q)
    }

    /// RFC 8985 §6.2 steps 4–5: how long after it was sent a transmission
    /// sent before [`Rack::latest_seq`] counts as lost: RACK.rtt plus the
    /// reordering window, SRTT/4 (at least 1 ms).
    pub fn loss_delay(&self, srtt: Option<Duration>) -> Duration {
        let reo_wnd = srtt.map_or(MIN_REO_WND, |s| (s / 4).max(MIN_REO_WND));
        self.rtt + reo_wnd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn keeps_the_newest_delivered_transmission() {
        let t0 = Instant::now();
        let mut r = Rack::default();
        assert_eq!(r.latest_seq(), None);
        r.on_delivered(5, t0, t0 + ms(20));
        assert_eq!(r.latest_seq(), Some(5));
        // An older transmission delivered later changes nothing.
        r.on_delivered(3, t0, t0 + ms(80));
        assert_eq!(r.latest_seq(), Some(5));
        assert_eq!(r.loss_delay(None), ms(21));
        r.on_delivered(9, t0 + ms(10), t0 + ms(40));
        assert_eq!(r.latest_seq(), Some(9));
        assert_eq!(r.loss_delay(Some(ms(40))), ms(30 + 10));
    }

    #[test]
    fn reordering_window_has_a_floor() {
        let r = Rack::default();
        assert_eq!(r.loss_delay(Some(Duration::from_micros(100))), ms(1));
    }
}
