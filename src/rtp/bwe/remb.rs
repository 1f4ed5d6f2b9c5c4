//! Receive-side estimation for senders that want REMB
//! (draft-alvestrand-rmcat-remb-03): the receiver runs GCC's delay-based
//! controller itself (draft-ietf-rmcat-gcc-02 §5, the same grouping,
//! trendline, detector and AIMD as [`super::delay`]) over the arrival times
//! it sees and the send times the sender stamped in the abs-send-time
//! header extension, with its own measured incoming rate as `R_hat`, and
//! tells the sender the result in a REMB packet ([`crate::rtp::rtcp::Remb`]).
//!
//! abs-send-time is 6.18 fixed-point seconds in 24 bits: it wraps every
//! 64 s, with a resolution of about 3.8 µs; it is extended here by taking
//! each value closest to the previous one.
//!
//! A REMB goes out at most once a second, or at once when the estimate fell
//! by 3 % or more since the last one sent (as libwebrtc's remote estimator
//! does): a sender must hear a decrease quickly, an increase can wait.

use std::time::{Duration, Instant};

use super::Bitrate;
use super::delay::{
    AckedBitrate, AimdRateController, BandwidthUsage, InterArrival, OveruseDetector, PacketTiming,
    Trendline,
};
use crate::rtp::rtcp::Remb;

/// abs-send-time counts 2^18 units per second, in 24 bits.
const ABS_SEND_TIME_UNITS_PER_S: i64 = 1 << 18;
const ABS_SEND_TIME_WRAP: i64 = 1 << 24;
/// A REMB at most this often unless the estimate falls.
const REMB_INTERVAL: Duration = Duration::from_secs(1);
/// A fall of this share sends a REMB at once.
const REMB_DECREASE_SHARE: f64 = 0.97;
/// SSRCs named in one REMB, at most.
const MAX_SSRCS: usize = 16;

/// The receive-side estimator.
#[derive(Debug, Clone)]
pub struct RembEstimator {
    sender_ssrc: u32,
    epoch: Option<Instant>,
    last_abs: Option<u32>,
    send_ext: i64,
    inter_arrival: InterArrival,
    trendline: Trendline,
    detector: OveruseDetector,
    aimd: AimdRateController,
    incoming: AckedBitrate,
    ssrcs: Vec<u32>,
    last_sent: Option<(Instant, Bitrate)>,
}

impl RembEstimator {
    /// An estimator whose REMBs come from `sender_ssrc`, starting at `start`
    /// within `min..=max`.
    pub fn new(sender_ssrc: u32, start: Bitrate, min: Bitrate, max: Bitrate) -> Self {
        RembEstimator {
            sender_ssrc,
            epoch: None,
            last_abs: None,
            send_ext: 0,
            inter_arrival: InterArrival::new(),
            trendline: Trendline::new(),
            detector: OveruseDetector::new(),
            aimd: AimdRateController::new(start, min, max),
            incoming: AckedBitrate::new(),
            ssrcs: Vec::new(),
            last_sent: None,
        }
    }

    /// The current estimate.
    pub fn estimate(&self) -> Bitrate {
        self.aimd.estimate()
    }

    /// The rate packets arrive at.
    pub fn incoming_bitrate(&self) -> Option<Bitrate> {
        self.incoming.rate()
    }

    /// Sets the round-trip time (from RTCP) for the additive increase.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.aimd
            .set_rtt(rtt.as_micros().min(i64::MAX as u128) as i64);
    }

    /// One media packet of `size` bytes from `ssrc` arrived at `now` with
    /// abs-send-time `abs_send_time` (the 24-bit value,
    /// [`crate::rtp::ext::values::abs_send_time`]).
    pub fn on_packet(&mut self, now: Instant, abs_send_time: u32, size: usize, ssrc: u32) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival_us = now
            .saturating_duration_since(epoch)
            .as_micros()
            .min(i64::MAX as u128) as i64;
        let abs = (abs_send_time & 0xFF_FFFF) as i64;
        if let Some(last) = self.last_abs {
            // The step, taken the short way round the 24-bit circle.
            let mut d = (abs - last as i64).rem_euclid(ABS_SEND_TIME_WRAP);
            if d >= ABS_SEND_TIME_WRAP / 2 {
                d -= ABS_SEND_TIME_WRAP;
            }
            self.send_ext = self.send_ext.saturating_add(d);
        } else {
            self.send_ext = abs;
        }
        self.last_abs = Some(abs as u32);
        let send_us = self.send_ext.saturating_mul(1_000_000) / ABS_SEND_TIME_UNITS_PER_S;
        if !self.ssrcs.contains(&ssrc) && self.ssrcs.len() < MAX_SSRCS {
            self.ssrcs.push(ssrc);
        }
        self.incoming.on_packet(arrival_us, size);
        let t = PacketTiming {
            send_us,
            arrival_us,
            size,
        };
        if let Some(d) = self.inter_arrival.on_packet(t) {
            let (m, slope) = self.trendline.update(&d);
            let usage = self.detector.detect(
                m,
                slope,
                d.send_delta_us,
                self.trendline.num_deltas(),
                d.arrival_us,
            );
            let incoming = self.incoming.rate();
            // Before anything was measured, hold rather than guess.
            let usage = if incoming.is_none() && usage == BandwidthUsage::Overusing {
                BandwidthUsage::Normal
            } else {
                usage
            };
            self.aimd.update(arrival_us, usage, incoming);
        }
    }

    /// A REMB to send now, if one is due (the first once something was
    /// measured, then at most once a second or on a 3 % fall).
    pub fn poll_remb(&mut self, now: Instant) -> Option<Remb> {
        self.incoming.rate()?;
        let e = self.aimd.estimate();
        let due = match self.last_sent {
            None => true,
            Some((at, sent)) => {
                now.saturating_duration_since(at) >= REMB_INTERVAL
                    || e.as_f64() <= REMB_DECREASE_SHARE * sent.as_f64()
            }
        };
        if !due {
            return None;
        }
        self.last_sent = Some((now, e));
        Some(Remb {
            sender_ssrc: self.sender_ssrc,
            bitrate: e.as_u64(),
            ssrcs: self.ssrcs.clone(),
        })
    }

    /// When a REMB falls due next (a decrease can make one due sooner: poll
    /// after each packet too).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.last_sent.map(|(at, _)| at + REMB_INTERVAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets of 1000 bytes sent every `gap` at abs-send-time starting near
    /// the wrap; the path delivers at most `link_bps` (a queue builds when
    /// sending faster).
    #[test]
    fn follows_a_bottleneck_and_reports_decreases_at_once() {
        let t0 = Instant::now();
        let mut r = RembEstimator::new(1, Bitrate::mbps(3), Bitrate::kbps(30), Bitrate::mbps(20));
        let mut send_s = 63.9f64; // abs-send-time wraps at 64 s
        let mut link_free = 0.0f64; // when the bottleneck is idle again, s
        let mut rembs = Vec::new();
        // Send at 2 Mbit/s into a 1 Mbit/s link: the queue grows.
        for i in 0..2000 {
            let t = i as f64 * 0.004; // 1000 bytes / 4 ms = 2 Mbit/s
            send_s += 0.004;
            let depart = link_free.max(t) + 0.008; // 1000 bytes at 1 Mbit/s
            link_free = depart;
            let arrival = t0 + Duration::from_secs_f64(depart + 0.02);
            let abs = ((send_s * 262_144.0) as i64 % (1 << 24)) as u32;
            r.on_packet(arrival, abs, 1000, 0x1234);
            if let Some(remb) = r.poll_remb(arrival) {
                rembs.push((arrival, remb));
            }
        }
        let last = rembs.last().unwrap().1.bitrate;
        assert!(last < 1_100_000, "estimate {last} above the 1 Mbit/s link");
        assert_eq!(rembs[0].1.ssrcs, [0x1234]);
        // Some REMBs came less than a second apart: decreases.
        assert!(
            rembs
                .windows(2)
                .any(|w| w[1].0 - w[0].0 < Duration::from_secs(1))
        );
        for w in rembs.windows(2) {
            if w[1].0 - w[0].0 < Duration::from_secs(1) {
                assert!(w[1].1.bitrate as f64 <= 0.97 * w[0].1.bitrate as f64 + 1.0);
            }
        }
        assert!(r.poll_timeout().is_some());
    }

    #[test]
    fn hostile_send_times_do_not_panic() {
        let t0 = Instant::now();
        let mut r = RembEstimator::new(1, Bitrate::kbps(300), Bitrate::kbps(30), Bitrate::mbps(20));
        for (i, abs) in [0u32, 0xFF_FFFF, 0x80_0000, u32::MAX, 5, 0x7F_FFFF]
            .into_iter()
            .cycle()
            .take(600)
            .enumerate()
        {
            r.on_packet(
                t0 + Duration::from_micros(i as u64 * 700),
                abs,
                i % 1500,
                i as u32,
            );
            let _ = r.poll_remb(t0 + Duration::from_micros(i as u64 * 700));
        }
        assert!(r.ssrcs.len() <= MAX_SSRCS);
    }
}
