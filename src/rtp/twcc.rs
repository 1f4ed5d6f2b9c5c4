//! Transport-wide congestion control feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).
//!
//! The sender stamps every packet with a transport-wide sequence number (a header
//! extension); the receiver reports, for a range of those numbers, which arrived
//! and when. An RTPFB packet with FMT 15:
//!
//! ```text
//! |      base sequence number     |      packet status count      |
//! |                 reference time                | fb pkt. count |
//! |          packet chunk         |         packet chunk          |
//! .                    ...                                        .
//! |         recv delta            |  recv delta   | zero padding  |
//! ```
//!
//! Each status is 0 "not received", 1 "received, small delta" (one unsigned byte)
//! or 2 "received, large or negative delta" (two signed bytes), deltas in 250 µs
//! ticks, the first relative to the reference time (24-bit signed, 64 ms units).
//! Statuses are packed in 16-bit chunks: run length (`0|S S|run:13`) or status
//! vector (`1|0|14 one-bit symbols` or `1|1|7 two-bit symbols`).

use super::{Error, Reader};

/// One packet's entry in the feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketStatus {
    /// The packet did not arrive (yet).
    NotReceived,
    /// Arrived; delta 0..=255 ticks of 250 µs after the previous arrival.
    Small(u8),
    /// Arrived; delta in ticks as a signed 16-bit value.
    Large(i16),
}

impl PacketStatus {
    fn symbol(self) -> u16 {
        match self {
            PacketStatus::NotReceived => 0,
            PacketStatus::Small(_) => 1,
            PacketStatus::Large(_) => 2,
        }
    }
}

/// RTPFB FMT 15: transport-wide CC feedback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransportCc {
    /// The sender of this feedback.
    pub sender_ssrc: u32,
    /// The media source (unused by Chrome, often the first SSRC seen).
    pub media_ssrc: u32,
    /// Transport-wide sequence number of the first packet reported.
    pub base_seq: u16,
    /// 24-bit signed reference time, in multiples of 64 ms.
    pub reference_time: i32,
    /// Feedback packet counter (wraps), to detect lost feedback.
    pub fb_pkt_count: u8,
    /// One status per packet from `base_seq` on (at most 65535).
    pub packets: Vec<PacketStatus>,
}

/// Microseconds per delta tick.
pub const DELTA_TICK_US: i64 = 250;
/// Microseconds per reference-time unit.
pub const REFERENCE_TICK_US: i64 = 64_000;

impl TransportCc {
    /// Parses the feedback control information after the two SSRCs.
    pub fn parse_fci(sender_ssrc: u32, media_ssrc: u32, fci: &[u8]) -> Result<TransportCc, Error> {
        let mut r = Reader::new("transport-cc feedback", fci);
        let base_seq = r.u16()?;
        let count = r.u16()? as usize;
        let reference_time = ((r.u24()? << 8) as i32) >> 8;
        let fb_pkt_count = r.u8()?;
        // Symbols first; every chunk consumes 2 bytes, so this loop is bounded.
        let mut symbols: Vec<u8> = Vec::new();
        while symbols.len() < count {
            let chunk = r.u16()?;
            let left = count - symbols.len();
            if chunk & 0x8000 == 0 {
                let s = ((chunk >> 13) & 3) as u8;
                let run = (chunk & 0x1FFF) as usize;
                symbols.extend(std::iter::repeat_n(s, run.min(left)));
            } else if chunk & 0x4000 == 0 {
                symbols.extend((0..14).rev().map(|i| ((chunk >> i) & 1) as u8).take(left));
            } else {
                symbols.extend(
                    (0..7)
                        .rev()
                        .map(|i| ((chunk >> (2 * i)) & 3) as u8)
                        .take(left),
                );
            }
        }
        let mut packets = Vec::with_capacity(count);
        for s in symbols {
            packets.push(match s {
                0 => PacketStatus::NotReceived,
                1 => PacketStatus::Small(r.u8()?),
                2 => PacketStatus::Large(r.u16()? as i16),
                _ => return Err(Error::BadRtcp("transport-cc: reserved status symbol 3")),
            });
        }
        Ok(TransportCc {
            sender_ssrc,
            media_ssrc,
            base_seq,
            reference_time,
            fb_pkt_count,
            packets,
        })
    }

    /// Appends the feedback control information (chunks, deltas, padding to 32 bits).
    pub fn emit_fci(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.packets.len() > u16::MAX as usize {
            return Err(Error::Invalid("transport-cc with more than 65535 statuses"));
        }
        if !(-0x80_0000..=0x7F_FFFF).contains(&self.reference_time) {
            return Err(Error::Invalid(
                "transport-cc reference time outside 24 bits",
            ));
        }
        let start = out.len();
        out.extend_from_slice(&self.base_seq.to_be_bytes());
        out.extend_from_slice(&(self.packets.len() as u16).to_be_bytes());
        let rt = (self.reference_time as u32 & 0xFF_FFFF) << 8 | self.fb_pkt_count as u32;
        out.extend_from_slice(&rt.to_be_bytes());
        let s: Vec<u16> = self.packets.iter().map(|p| p.symbol()).collect();
        let mut i = 0;
        while i < s.len() {
            let run = s[i..]
                .iter()
                .take(0x1FFF)
                .take_while(|&&x| x == s[i])
                .count();
            let chunk = if run >= 14 || i + run == s.len() {
                i += run;
                s[i - run] << 13 | run as u16
            } else if s[i..].iter().take(14).all(|&x| x < 2) {
                let mut c = 0x8000;
                for k in 0..14 {
                    c |= s.get(i + k).copied().unwrap_or(0) << (13 - k);
                }
                i += 14;
                c
            } else {
                let mut c = 0xC000;
                for k in 0..7 {
                    c |= s.get(i + k).copied().unwrap_or(0) << (12 - 2 * k);
                }
                i += 7;
                c
            };
            out.extend_from_slice(&chunk.to_be_bytes());
        }
        for p in &self.packets {
            match p {
                PacketStatus::NotReceived => {}
                PacketStatus::Small(d) => out.push(*d),
                PacketStatus::Large(d) => out.extend_from_slice(&d.to_be_bytes()),
            }
        }
        while (out.len() - start) % 4 != 0 {
            out.push(0);
        }
        Ok(())
    }

    /// Builds feedback from arrival times in µs (`None`: not received) for the
    /// packets `base_seq, base_seq + 1, …`. Deltas are rounded to 250 µs ticks
    /// without drift; a gap that does not fit 16 bits is an error (split the
    /// feedback there).
    pub fn from_arrivals(
        sender_ssrc: u32,
        media_ssrc: u32,
        base_seq: u16,
        fb_pkt_count: u8,
        arrivals: &[Option<i64>],
    ) -> Result<TransportCc, Error> {
        let first = arrivals.iter().flatten().next().copied().unwrap_or(0);
        let reference_time = first.div_euclid(REFERENCE_TICK_US);
        if !(-0x80_0000..=0x7F_FFFF).contains(&reference_time) {
            return Err(Error::Invalid(
                "transport-cc reference time outside 24 bits",
            ));
        }
        let mut prev = reference_time * REFERENCE_TICK_US;
        let mut packets = Vec::with_capacity(arrivals.len());
        for a in arrivals {
            packets.push(match a {
                None => PacketStatus::NotReceived,
                Some(t) => {
                    let ticks = (t - prev).div_euclid(DELTA_TICK_US);
                    prev += ticks * DELTA_TICK_US;
                    if (0..=255).contains(&ticks) {
                        PacketStatus::Small(ticks as u8)
                    } else if (i16::MIN as i64..=i16::MAX as i64).contains(&ticks) {
                        PacketStatus::Large(ticks as i16)
                    } else {
                        return Err(Error::Invalid("transport-cc delta does not fit 16 bits"));
                    }
                }
            });
        }
        Ok(TransportCc {
            sender_ssrc,
            media_ssrc,
            base_seq,
            reference_time: reference_time as i32,
            fb_pkt_count,
            packets,
        })
    }

    /// The reported packets as `(transport-wide seq, arrival time in µs)`.
    pub fn arrivals(&self) -> impl Iterator<Item = (u16, Option<i64>)> + '_ {
        let mut t = self.reference_time as i64 * REFERENCE_TICK_US;
        self.packets.iter().enumerate().map(move |(i, p)| {
            let seq = self.base_seq.wrapping_add(i as u16);
            match p {
                PacketStatus::NotReceived => (seq, None),
                PacketStatus::Small(d) => {
                    t += *d as i64 * DELTA_TICK_US;
                    (seq, Some(t))
                }
                PacketStatus::Large(d) => {
                    t += *d as i64 * DELTA_TICK_US;
                    (seq, Some(t))
                }
            }
        })
    }
}

/// Receiver side: records transport-wide sequence numbers and arrival times,
/// and turns them into feedback packets (sent every 50–100 ms by browsers).
#[derive(Debug, Clone, Default)]
pub struct TwccRecorder {
    unwrapper: super::seq::SeqUnwrapper,
    /// `(extended sequence number, arrival)`, in sequence order: a deque
    /// that keeps its room, so recording allocates nothing once warm.
    arrivals: std::collections::VecDeque<(u64, i64)>,
    /// First sequence number not yet reported.
    next: Option<u64>,
    fb_pkt_count: u8,
}

/// At most this many statuses go into one feedback packet (keeps it near 1 kB).
pub const MAX_STATUSES_PER_FEEDBACK: usize = 1000;

impl TwccRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the packet with transport-wide sequence number `seq`
    /// arrived at `arrival_us` (any monotonic clock in µs). Packets older than
    /// what was already reported are ignored.
    pub fn on_packet(&mut self, seq: u16, arrival_us: i64) {
        let ext = self.unwrapper.unwrap(seq);
        if self.next.is_some_and(|n| ext < n) {
            return;
        }
        // Usually the newest: appended; a reordered one goes in its place;
        // a duplicate keeps its first arrival.
        match self.arrivals.back() {
            Some(&(last, _)) if ext <= last => {
                if let Err(i) = self.arrivals.binary_search_by_key(&ext, |&(s, _)| s) {
                    self.arrivals.insert(i, (ext, arrival_us));
                }
            }
            _ => self.arrivals.push_back((ext, arrival_us)),
        }
        // Bound the memory if feedback is never polled.
        while self.arrivals.len() > 4 * MAX_STATUSES_PER_FEEDBACK {
            if let Some((k, _)) = self.arrivals.pop_front() {
                self.next = Some(k + 1);
            }
        }
    }

    /// Feedback covering everything recorded since the last one (missing
    /// packets included as "not received"), or `None` if nothing new arrived.
    pub fn poll_feedback(&mut self, sender_ssrc: u32, media_ssrc: u32) -> Option<TransportCc> {
        let &(first_received, _) = self.arrivals.front()?;
        // Report losses since the last feedback, unless the gap alone would
        // fill a packet: then start at the first arrival.
        let start = match self.next {
            Some(n)
                if n <= first_received && first_received - n < MAX_STATUSES_PER_FEEDBACK as u64 =>
            {
                n
            }
            _ => first_received,
        };
        let mut statuses: Vec<Option<i64>> = Vec::new();
        let mut prev: Option<i64> = None;
        let mut end = start;
        for &(seq, t) in self.arrivals.iter().skip_while(|&&(s, _)| s < start) {
            if (seq - start) as usize >= MAX_STATUSES_PER_FEEDBACK {
                break;
            }
            // Each delta must fit the 16-bit field; split the feedback there.
            if prev.is_some_and(|p| ((t - p) / DELTA_TICK_US).abs() > i16::MAX as i64 / 2) {
                break;
            }
            statuses.resize((seq - start) as usize, None);
            statuses.push(Some(t));
            prev = Some(t);
            end = seq + 1;
        }
        let fb = TransportCc::from_arrivals(
            sender_ssrc,
            media_ssrc,
            start as u16,
            self.fb_pkt_count,
            &statuses,
        );
        // Reported (or, should building ever fail, skipped): never retried.
        self.next = Some(end);
        while self.arrivals.front().is_some_and(|&(k, _)| k < end) {
            self.arrivals.pop_front();
        }
        let fb = fb.ok()?;
        self.fb_pkt_count = self.fb_pkt_count.wrapping_add(1);
        Some(fb)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_twcc() -> impl Strategy<Value = TransportCc> {
        let status = prop_oneof![
            3 => Just(PacketStatus::NotReceived),
            5 => any::<u8>().prop_map(PacketStatus::Small),
            1 => any::<i16>().prop_map(PacketStatus::Large),
        ];
        // Long runs too, so run-length chunks get exercised.
        let runs = proptest::collection::vec((status, 1usize..40), 0..8).prop_map(|v| {
            v.into_iter()
                .flat_map(|(s, n)| std::iter::repeat_n(s, n))
                .collect::<Vec<_>>()
        });
        (
            any::<(u32, u32, u16, u8)>(),
            -0x80_0000i32..=0x7F_FFFF,
            runs,
        )
            .prop_map(|(f, reference_time, packets)| TransportCc {
                sender_ssrc: f.0,
                media_ssrc: f.1,
                base_seq: f.2,
                reference_time,
                fb_pkt_count: f.3,
                packets,
            })
    }

    #[test]
    fn chunk_kinds() {
        // 20 received-small (run chunk), then a mix with a large delta (2-bit
        // vector), then 1-bit vector.
        let mut packets = vec![PacketStatus::Small(4); 20];
        packets.extend([
            PacketStatus::Large(-8),
            PacketStatus::NotReceived,
            PacketStatus::Small(1),
        ]);
        let t = TransportCc {
            base_seq: 65530,
            reference_time: -2,
            fb_pkt_count: 9,
            packets,
            ..Default::default()
        };
        let mut out = Vec::new();
        t.emit_fci(&mut out).unwrap();
        assert_eq!(&out[..8], &[0xFF, 0xFA, 0, 23, 0xFF, 0xFF, 0xFE, 9]);
        assert_eq!(&out[8..10], &(0x2000u16 | 20).to_be_bytes());
        assert_eq!(&out[10..12], &0b1110_0001_0000_0000u16.to_be_bytes());
        assert_eq!(TransportCc::parse_fci(0, 0, &out).unwrap(), t);
        let arr: Vec<_> = t.arrivals().collect();
        assert_eq!(arr[0], (65530, Some(-128_000 + 1_000)));
        assert_eq!(arr[21], (65529u16.wrapping_add(22), None));
    }

    #[test]
    fn from_arrivals_quantizes_without_drift() {
        let arr = [
            Some(1_000_000),
            None,
            Some(1_000_600),
            Some(1_000_000),
            Some(1_200_000),
        ];
        let t = TransportCc::from_arrivals(1, 2, 100, 0, &arr).unwrap();
        let back: Vec<_> = t.arrivals().map(|(_, a)| a).collect();
        for (a, b) in arr.iter().zip(&back) {
            match (a, b) {
                (Some(a), Some(b)) => assert!((a - b).abs() < 250, "{a} vs {b}"),
                (None, None) => {}
                _ => panic!("status mismatch"),
            }
        }
        assert_eq!(t.packets[3], PacketStatus::Large(-2));
        assert_eq!(t.packets[4], PacketStatus::Large(800));
    }

    #[test]
    fn recorder_reports_arrivals_and_losses() {
        let mut r = TwccRecorder::new();
        for (seq, t) in [
            (65534u16, 1_000_000i64),
            (65535, 1_001_000),
            (1, 1_003_000),
            (0, 1_004_000),
        ] {
            r.on_packet(seq, t);
        }
        r.on_packet(3, 1_010_000);
        let fb = r.poll_feedback(1, 2).unwrap();
        assert_eq!(fb.base_seq, 65534);
        let a: Vec<_> = fb.arrivals().collect();
        assert_eq!(a.len(), 6);
        assert_eq!(a[4], (2, None));
        assert_eq!(a[2], (0, Some(1_004_000)));
        assert_eq!(a[3], (1, Some(1_003_000)));
        assert!(r.poll_feedback(1, 2).is_none());
        r.on_packet(4, 1_020_000);
        let fb2 = r.poll_feedback(1, 2).unwrap();
        assert_eq!(
            (fb2.base_seq, fb2.fb_pkt_count, fb2.packets.len()),
            (4, 1, 1)
        );
        // A late packet from an already reported range is ignored.
        r.on_packet(2, 1_030_000);
        assert!(r.poll_feedback(1, 2).is_none());
        // After a gap larger than one feedback, reporting restarts at the arrival.
        r.on_packet(4000, 1_040_000);
        assert_eq!(r.poll_feedback(1, 2).unwrap().base_seq, 4000);
    }

    /// Feedback packets as Chrome sends them (vectors published with pion's
    /// and webrtc-rs's RTCP tests): note the P bit and padding count.
    #[test]
    fn chrome_feedback_vectors() {
        use crate::rtp::rtcp::RtcpPacket;
        let run_length = [
            0xaf, 0xcd, 0x00, 0x07, 0xfa, 0x17, 0xfa, 0x17, 0x19, 0x3d, 0xd8, 0xbb, 0x00, 0x04,
            0x00, 0x07, 0x10, 0x63, 0x6e, 0x01, 0x20, 0x07, 0x4c, 0x24, 0x24, 0x10, 0x0c, 0x0c,
            0x10, 0x00, 0x00, 0x03,
        ];
        let RtcpPacket::TransportCc(t) = RtcpPacket::parse(&run_length).unwrap() else {
            panic!("not transport-cc")
        };
        use PacketStatus::*;
        assert_eq!(
            t,
            TransportCc {
                sender_ssrc: 4_195_875_351,
                media_ssrc: 423_483_579,
                base_seq: 4,
                reference_time: 1_074_030,
                fb_pkt_count: 1,
                packets: vec![
                    Small(76),
                    Small(36),
                    Small(36),
                    Small(16),
                    Small(12),
                    Small(12),
                    Small(16)
                ],
            }
        );
        // 76 ticks of 250 µs = 19 ms after the reference time.
        assert_eq!(
            t.arrivals().next(),
            Some((4, Some(1_074_030 * 64_000 + 19_000)))
        );

        let vector_then_run = [
            0xaf, 0xcd, 0x00, 0x07, 0x9b, 0x74, 0xf6, 0x1f, 0x93, 0x71, 0xdc, 0xbc, 0x85, 0x3c,
            0x00, 0x09, 0x63, 0xf9, 0x16, 0xb3, 0xd5, 0x52, 0x00, 0x30, 0x9b, 0xaa, 0x6a, 0xaa,
            0x7b, 0x01, 0x09, 0x01,
        ];
        let RtcpPacket::TransportCc(t) = RtcpPacket::parse(&vector_then_run).unwrap() else {
            panic!("not transport-cc")
        };
        assert_eq!(
            (t.base_seq, t.reference_time, t.fb_pkt_count),
            (34108, 6_551_830, 179)
        );
        assert_eq!(
            t.packets,
            vec![
                Small(0x9b),
                Small(0xaa),
                Small(0x6a),
                Small(0xaa),
                Small(0x7b),
                NotReceived,
                Large(0x109),
                NotReceived,
                NotReceived
            ]
        );

        // Writing a one-packet feedback gives the same bytes, except that we
        // pad with a zero byte instead of setting the P bit.
        let one = TransportCc {
            sender_ssrc: 4_195_875_351,
            media_ssrc: 1_124_282_272,
            base_seq: 153,
            reference_time: 4_057_090,
            fb_pkt_count: 23,
            packets: vec![Small(0x94)],
        };
        let mut out = Vec::new();
        RtcpPacket::TransportCc(one).emit(&mut out).unwrap();
        let chrome = [
            0xaf, 0xcd, 0x00, 0x05, 0xfa, 0x17, 0xfa, 0x17, 0x43, 0x03, 0x2f, 0xa0, 0x00, 0x99,
            0x00, 0x01, 0x3d, 0xe8, 0x02, 0x17, 0x20, 0x01, 0x94, 0x01,
        ];
        assert_eq!(out[0], 0x8f);
        assert_eq!(out[1..23], chrome[1..23]);
        assert_eq!(out[23], 0);
    }

    #[test]
    fn reserved_symbol_is_an_error() {
        // One 2-bit vector chunk whose first symbol is 3.
        let fci = [0, 0, 0, 1, 0, 0, 0, 0, 0xF0, 0x00, 0, 0];
        assert!(TransportCc::parse_fci(0, 0, &fci).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(t in arb_twcc()) {
            let mut out = Vec::new();
            t.emit_fci(&mut out).unwrap();
            prop_assert_eq!(out.len() % 4, 0);
            prop_assert_eq!(TransportCc::parse_fci(t.sender_ssrc, t.media_ssrc, &out).unwrap(), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = TransportCc::parse_fci(0, 0, &data);
        }

        #[test]
        fn recorder_feedback_round_trips(arrivals in proptest::collection::vec((any::<u16>(), 0i64..100_000_000), 0..200)) {
            let mut r = TwccRecorder::new();
            for (i, (s, t)) in arrivals.iter().enumerate() {
                r.on_packet(*s, *t);
                if i % 17 == 0 {
                    if let Some(fb) = r.poll_feedback(1, 2) {
                        let mut out = Vec::new();
                        fb.emit_fci(&mut out).unwrap();
                        prop_assert_eq!(TransportCc::parse_fci(1, 2, &out).unwrap(), fb);
                    }
                }
            }
        }
    }
}
