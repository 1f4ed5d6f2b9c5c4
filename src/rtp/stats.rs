//! Reception statistics for RTCP receiver reports (RFC 3550 §6.4.1, A.1, A.3,
//! A.8) and the round-trip time from LSR/DLSR.

use std::time::{Duration, Instant};

use super::rtcp::{ReportBlock, SenderReport};
use super::seq::SeqUnwrapper;

/// The middle 32 bits of a 64-bit NTP timestamp (RFC 3550 §4: "compact" form,
/// 16.16 fixed-point seconds), as LSR carries it.
pub fn ntp_compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RFC 3550 §6.4.1: the round trip seen by a sender when a report block comes
/// back at compact NTP time `now`: `now − LSR − DLSR`. `None` if the block
/// carries no SR reference (LSR = 0) or the result is negative.
// ANCHOR: rtt
pub fn rtt_from_report(now_compact: u32, block: &ReportBlock) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let rtt = now_compact
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    if rtt as i32 <= 0 {
        return None;
    }
    Some(Duration::from_nanos((rtt as u64 * 1_000_000_000) >> 16))
}
// ANCHOR_END: rtt

/// Per-source reception statistics, fed with each packet's arrival.
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    clock_rate: u32,
    epoch: Option<Instant>,
    unwrapper: SeqUnwrapper,
    base_seq: u64,
    max_seq: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// RFC 3550 A.8: jitter scaled by 16 for integer arithmetic.
    jitter_q4: u64,
    /// Last transit time (arrival − timestamp, in timestamp units).
    transit: Option<i64>,
    last_sr: Option<(u32, Instant)>,
}

impl ReceiverStats {
    /// Statistics for source `ssrc` with a media clock of `clock_rate` Hz.
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        ReceiverStats {
            ssrc,
            clock_rate: clock_rate.max(1),
            epoch: None,
            unwrapper: SeqUnwrapper::new(),
            base_seq: 0,
            max_seq: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter_q4: 0,
            transit: None,
            last_sr: None,
        }
    }

    /// Records a packet that arrived at `now` (duplicates count as received,
    /// as in RFC 3550 A.3, which can make the loss negative).
    pub fn on_packet(&mut self, now: Instant, seq: u16, timestamp: u32) {
        let ext = self.unwrapper.unwrap(seq);
        if self.received == 0 {
            self.base_seq = ext;
            self.max_seq = ext;
        }
        self.max_seq = self.max_seq.max(ext);
        self.received += 1;
        // ANCHOR: jitter
        // RFC 3550 A.8: D = (Rj − Ri) − (Sj − Si); J += (|D| − J) / 16.
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = (now.saturating_duration_since(epoch).as_nanos() * self.clock_rate as u128
            / 1_000_000_000) as i64;
        let transit = arrival.wrapping_sub(timestamp as i64);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            // Wrapped timestamps give a huge D; such a step is not jitter.
            if d < 1 << 31 {
                let j = self.jitter_q4 as i64;
                self.jitter_q4 = (j + d as i64 - ((j + 8) >> 4)).max(0) as u64;
            }
        }
        self.transit = Some(transit);
        // ANCHOR_END: jitter
    }

    /// Records a sender report from this source arriving at `now` (for LSR/DLSR).
    pub fn on_sender_report(&mut self, now: Instant, sr: &SenderReport) {
        self.last_sr = Some((ntp_compact(sr.ntp_time), now));
    }

    /// Packets expected so far (extended highest − base + 1).
    pub fn expected(&self) -> u64 {
        if self.received == 0 {
            0
        } else {
            self.max_seq - self.base_seq + 1
        }
    }

    /// Cumulative packets lost (RFC 3550 A.3), negative with duplicates.
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Interarrival jitter in timestamp units.
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// The report block for the next RR/SR sent at `now`; starts a new interval
    /// for the loss fraction (RFC 3550 A.3).
    pub fn report_block(&mut self, now: Instant) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            None => (0, 0),
            Some((lsr, at)) => {
                let d = now.saturating_duration_since(at);
                (
                    lsr,
                    ((d.as_nanos() << 16) / 1_000_000_000).min(u32::MAX as u128) as u32,
                )
            }
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            // The 32-bit extended highest sequence number: cycles << 16 | seq.
            highest_seq: (self.max_seq - (1 << 16)) as u32,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// The 64-bit NTP timestamp (RFC 3550 §4) for a wall-clock time given as the
/// time since the Unix epoch (the caller reads the clock; this stays sans-IO).
pub fn ntp_from_unix(since_unix_epoch: Duration) -> u64 {
    let secs = since_unix_epoch.as_secs() + NTP_UNIX_OFFSET_SECS;
    let frac = ((since_unix_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Sender side counts for SR (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Default)]
pub struct SenderStats {
    /// Packets sent.
    pub packet_count: u32,
    /// Payload octets sent (headers and padding excluded).
    pub octet_count: u32,
}

impl SenderStats {
    /// Counts one packet with `payload_len` payload bytes (both counters wrap).
    pub fn on_sent(&mut self, payload_len: usize) {
        self.packet_count = self.packet_count.wrapping_add(1);
        self.octet_count = self.octet_count.wrapping_add(payload_len as u32);
    }

    /// A sender report for source `ssrc`: `ntp_time` and `rtp_time` are the same
    /// instant on the wall clock and on the media clock, which lets receivers
    /// synchronise audio and video (lip sync).
    pub fn sender_report(
        &self,
        ssrc: u32,
        ntp_time: u64,
        rtp_time: u32,
        reports: Vec<ReportBlock>,
    ) -> SenderReport {
        SenderReport {
            ssrc,
            ntp_time,
            rtp_time,
            packet_count: self.packet_count,
            octet_count: self.octet_count,
            reports,
            profile_extension: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_fraction_and_cumulative() {
        let t = Instant::now();
        let mut s = ReceiverStats::new(7, 90_000);
        for seq in (65530u16..=65535).chain(0..10).filter(|s| s % 4 != 0) {
            s.on_packet(t, seq, 0);
        }
        // 16 expected (65530..=9), 65532, 0, 4, 8 lost.
        let b = s.report_block(t);
        assert_eq!(s.expected(), 16);
        assert_eq!(b.cumulative_lost, 4);
        assert_eq!(b.fraction_lost, 64);
        assert_eq!(b.highest_seq, 0x0001_0009);
        // Next interval: everything arrives, plus a duplicate.
        for seq in 10..20 {
            s.on_packet(t, seq, 0);
        }
        s.on_packet(t, 19, 0);
        let b = s.report_block(t);
        assert_eq!(b.fraction_lost, 0);
        assert_eq!(b.cumulative_lost, 3);
    }

    #[test]
    fn jitter_grows_with_irregular_arrivals() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 90_000);
        // 30 fps, perfectly regular: no jitter.
        for i in 0..50u32 {
            s.on_packet(
                t0 + Duration::from_micros(33_333 * i as u64),
                i as u16,
                i * 3000,
            );
        }
        assert!(s.jitter() <= 1, "{}", s.jitter());
        // Every other packet 10 ms late: |D| = 900 ticks each time.
        for i in 50..400u32 {
            let off = if i % 2 == 0 { 10_000 } else { 0 };
            s.on_packet(
                t0 + Duration::from_micros(33_333 * i as u64 + off),
                i as u16,
                i * 3000,
            );
        }
        assert!((850..=900).contains(&s.jitter()), "{}", s.jitter());
    }

    #[test]
    fn sender_report_counts_and_ntp() {
        let mut s = SenderStats::default();
        s.on_sent(1000);
        s.on_sent(200);
        let sr = s.sender_report(
            5,
            ntp_from_unix(Duration::from_millis(1_500)),
            90_000,
            vec![],
        );
        assert_eq!((sr.packet_count, sr.octet_count), (2, 1200));
        assert_eq!(
            sr.ntp_time,
            ((NTP_UNIX_OFFSET_SECS + 1) << 32) | 0x8000_0000
        );
    }

    #[test]
    fn rtt_from_lsr_and_dlsr() {
        let t0 = Instant::now();
        let mut s = ReceiverStats::new(1, 48_000);
        s.on_packet(t0, 1, 0);
        let sr = SenderReport {
            ntp_time: 0x0000_1234_8000_0000,
            ..Default::default()
        };
        s.on_sender_report(t0, &sr);
        let b = s.report_block(t0 + Duration::from_millis(250));
        assert_eq!(b.last_sr, 0x1234_8000);
        assert_eq!(b.delay_since_last_sr, 0x4000); // 0.25 s in 1/65536 s
        // Sender receives it 300 ms after it sent the SR: RTT 50 ms.
        let now = 0x1234_8000u32 + (65536 * 3 / 10);
        let rtt = rtt_from_report(now, &b).unwrap();
        assert!((rtt.as_micros() as i64 - 50_000).abs() < 100, "{rtt:?}");
        assert_eq!(rtt_from_report(now, &ReportBlock::default()), None);
    }
}
