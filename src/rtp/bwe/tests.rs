//! `SendSideBwe` as a whole: matching feedback with sent packets, hostile
//! feedback, bounded memory.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::rtp::twcc::{PacketStatus, TransportCc};

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// Feedback for `seqs` (arrivals in µs, `None` lost).
fn fb(base: u16, arrivals: &[Option<i64>]) -> TransportCc {
    TransportCc::from_arrivals(1, 2, base, 0, arrivals).unwrap()
}

#[test]
fn start_asks_for_probes_and_reports_the_start_estimate() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config::default());
    bwe.start(t0);
    let events: Vec<Event> = std::iter::from_fn(|| bwe.poll_event()).collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(matches!(events[0], Event::Probe(c) if c.rate == Bitrate::kbps(900)));
    assert!(matches!(events[1], Event::Probe(c) if c.rate == Bitrate::kbps(1800)));
    assert_eq!(events[2], Event::Estimate(Bitrate::kbps(300)));
    assert_eq!(bwe.estimate(), Bitrate::kbps(300));
}

#[test]
fn matches_feedback_across_the_sequence_wrap() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config {
        probing: false,
        ..Config::default()
    });
    // 200 packets from 65500 on, one every 5 ms at 1 Mbit/s of 625 bytes.
    for i in 0..200u16 {
        bwe.on_packet_sent(ms(t0, i as u64 * 5), 65500u16.wrapping_add(i), 625, None);
    }
    // The receiver got them 20 ms later, the 10th lost.
    let arrivals: Vec<Option<i64>> = (0..200i64)
        .map(|i| (i != 10).then_some(1_000_000 + i * 5000 + 20_000))
        .collect();
    bwe.on_feedback(ms(t0, 1050), &fb(65500, &arrivals));
    let acked = bwe.acked_bitrate().unwrap().as_f64();
    assert!((acked / 1e6 - 1.0).abs() < 0.02, "{acked}");
    // RTT = now − the newest acknowledged send time (995 ms).
    assert_eq!(bwe.rtt(), Some(Duration::from_millis(55)));
    assert_eq!(bwe.usage(), BandwidthUsage::Normal);
    // The same feedback again changes nothing.
    let before = (bwe.estimate(), bwe.acked_bitrate());
    bwe.on_feedback(ms(t0, 1060), &fb(65500, &arrivals));
    assert_eq!((bwe.estimate(), bwe.acked_bitrate()), before);
}

#[test]
fn growing_delay_cuts_the_estimate_to_085_of_acked() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config {
        start: Bitrate::mbps(2),
        probing: false,
        ..Config::default()
    });
    // 2 Mbit/s sent into a 1 Mbit/s path: 1250-byte packets every 5 ms
    // leave it every 10 ms.
    let mut seq = 0u16;
    for round in 0..20u64 {
        let base = seq;
        let mut arrivals = Vec::new();
        for k in 0..20u64 {
            let i = round * 20 + k;
            bwe.on_packet_sent(ms(t0, i * 5), seq, 1250, None);
            seq = seq.wrapping_add(1);
            arrivals.push(Some(20_000 + i as i64 * 10_000));
        }
        bwe.on_feedback(ms(t0, (round + 1) * 100 + 20), &fb(base, &arrivals));
    }
    let e = bwe.estimate().as_f64();
    assert!(e < 1e6, "estimate {e} stayed above the 1 Mbit/s path");
    assert!(e > 0.7e6, "estimate {e} collapsed");
}

#[test]
fn hostile_feedback_is_ignored_without_panicking() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config::default());
    // Feedback before anything was sent.
    bwe.on_feedback(t0, &fb(0, &[Some(0), None, Some(i64::from(i16::MAX))]));
    for i in 0..100u16 {
        bwe.on_packet_sent(ms(t0, i as u64), 1000 + i, 1200, Some(1));
    }
    let mut hostile = vec![
        // Future and long-past sequence numbers.
        fb(2000, &[Some(0); 50]),
        fb(30000, &[Some(1); 10]),
        // Every status, wrapping the whole sequence space.
        TransportCc {
            base_seq: 1000,
            reference_time: 0x7F_FFFF,
            packets: vec![PacketStatus::Large(i16::MIN); 65535],
            ..TransportCc::default()
        },
        TransportCc {
            base_seq: 1050,
            reference_time: -0x80_0000,
            packets: vec![PacketStatus::Large(i16::MAX); 100],
            ..TransportCc::default()
        },
    ];
    hostile.push(fb(1000, &[None; 100]));
    for (i, f) in hostile.iter().enumerate() {
        bwe.on_feedback(ms(t0, 200 + i as u64), f);
    }
    let e = bwe.estimate();
    assert!(e >= Config::default().min && e <= Config::default().max);
    assert!(bwe.history_len() <= 100);
}

/// A sender whose feedback never comes keeps the packets of the last
/// `MAX_FEEDBACK_DELAY` only, not `Config::history` of them; each record
/// is small; feedback within the delay still matches.
#[test]
fn the_history_holds_what_feedback_can_still_be_about() {
    assert!(std::mem::size_of::<Option<SentPacket>>() <= 24);
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config::default());
    // 200 packets a second for 20 s.
    for k in 0..4000u64 {
        bwe.on_packet_sent(ms(t0, k * 5), k as u16, 1200, None);
    }
    let per_delay = (MAX_FEEDBACK_DELAY.as_millis() / 5) as usize;
    assert!(
        (per_delay..=per_delay + usize::from(AGE_TRIM_EVERY)).contains(&bwe.history_len()),
        "{}",
        bwe.history_len()
    );
    // The last 100 packets are acknowledged: they match.
    let arrivals: Vec<Option<i64>> = (0..100).map(|i| Some(i * 5000)).collect();
    bwe.on_feedback(ms(t0, 20_000), &fb(3900, &arrivals));
    assert!(bwe.rtt_us.is_some());
}

/// Records past [`MAX_FEEDBACK_DELAY`] are trimmed a few packets late, but
/// feedback about them does not match meanwhile.
#[test]
fn feedback_about_packets_past_the_delay_does_not_match() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config::default());
    let per_delay = MAX_FEEDBACK_DELAY.as_millis() as u64 / 5;
    // One packet past the delay, its record still held (the next trim is
    // AGE_TRIM_EVERY packets away).
    let sent = per_delay + 2;
    for k in 0..sent {
        bwe.on_packet_sent(ms(t0, k * 5), k as u16, 1200, None);
    }
    assert_eq!(bwe.history_len() as u64, sent, "not trimmed yet");
    bwe.on_feedback(ms(t0, sent * 5), &fb(0, &[Some(0)]));
    assert!(bwe.rtt_us.is_none(), "a stale record matched");
    bwe.on_feedback(ms(t0, sent * 5), &fb(2, &[Some(0)]));
    assert!(bwe.rtt_us.is_some(), "a record within the delay matches");
}

#[test]
fn a_report_block_with_heavy_loss_lowers_the_estimate() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config::default());
    bwe.start(t0);
    let block = ReportBlock {
        fraction_lost: 64, // 25 %
        ..ReportBlock::default()
    };
    bwe.on_report_block(t0, &block);
    assert_eq!(bwe.estimate(), Bitrate::bps(262_500));
    assert_eq!(bwe.loss_based_estimate(), Some(Bitrate::bps(262_500)));
}

#[test]
fn a_min_above_max_does_not_panic() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config {
        min: Bitrate::mbps(5),
        max: Bitrate::mbps(1),
        ..Config::default()
    });
    bwe.on_packet_sent(t0, 0, 1200, None);
    bwe.on_feedback(ms(t0, 100), &fb(0, &[Some(0)]));
    assert_eq!(bwe.estimate(), Bitrate::mbps(1));
    let r = remb::RembEstimator::new(1, Bitrate::ZERO, Bitrate::mbps(5), Bitrate::mbps(1));
    assert_eq!(r.estimate(), Bitrate::mbps(1));
}

#[test]
fn bitrate_display_and_arithmetic() {
    assert_eq!(Bitrate::kbps(2500).to_string(), "2.50 Mbit/s");
    assert_eq!(Bitrate::kbps(300).to_string(), "300.0 kbit/s");
    assert_eq!(Bitrate::from_f64(f64::NAN), Bitrate::ZERO);
    assert_eq!(Bitrate::from_f64(-5.0), Bitrate::ZERO);
    assert_eq!(
        Bitrate::from_bytes_over(125_000, 1_000_000),
        Some(Bitrate::mbps(1))
    );
    assert_eq!(Bitrate::from_bytes_over(1, 0), None);
    assert_eq!(Bitrate::mbps(1).bytes_in(Duration::from_millis(8)), 1000.0);
}

fn arb_status() -> impl Strategy<Value = PacketStatus> {
    prop_oneof![
        2 => Just(PacketStatus::NotReceived),
        5 => any::<u8>().prop_map(PacketStatus::Small),
        1 => any::<i16>().prop_map(PacketStatus::Large),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Arbitrary interleavings of sends and feedback (any base, reference
    /// time, statuses) never panic, keep the history within its cap and the
    /// estimate within its bounds.
    #[test]
    fn arbitrary_feedback_never_panics_and_memory_stays_bounded(
        ops in proptest::collection::vec(
            prop_oneof![
                (any::<u16>(), 1usize..1500, any::<bool>()).prop_map(|(s, n, p)| (0u8, s, n, p, 0i32, Vec::new())),
                (any::<u16>(), -0x80_0000i32..=0x7F_FFFF, proptest::collection::vec(arb_status(), 0..120))
                    .prop_map(|(b, r, v)| (1u8, b, 0, false, r, v)),
            ],
            0..120),
        history in 1usize..300,
        gaps in proptest::collection::vec(0u64..200_000, 200),
    ) {
        let t0 = Instant::now();
        let config = Config { history, ..Config::default() };
        let (min, max) = (config.min, config.max);
        let mut bwe = SendSideBwe::new(config);
        let mut now = t0;
        let mut next_seq = 0u16;
        for (i, (kind, seq, size, probe, reference_time, packets)) in ops.into_iter().enumerate() {
            now += Duration::from_micros(gaps[i % gaps.len()]);
            if kind == 0 {
                // Mostly in order, sometimes a jump.
                let s = if probe { seq } else { next_seq };
                next_seq = s.wrapping_add(1);
                bwe.on_packet_sent(now, s, size, probe.then_some(1));
            } else {
                let f = TransportCc { base_seq: seq, reference_time, packets, ..TransportCc::default() };
                bwe.on_feedback(now, &f);
            }
            prop_assert!(bwe.history_len() <= history);
            prop_assert!(bwe.estimate() >= min && bwe.estimate() <= max);
            prop_assert!(bwe.events.len() <= MAX_EVENTS);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The `bwe_feedback` fuzz harness on random records (its invariants are
    /// asserted inside).
    #[test]
    fn fuzz_harness_on_random_records(
        seq in any::<u16>(),
        records in proptest::collection::vec(
            (any::<u8>(), proptest::option::of(arb_fci()), proptest::collection::vec(any::<u8>(), 0..40)),
            0..30),
    ) {
        let mut data = seq.to_be_bytes().to_vec();
        for (control, fci, junk) in records {
            let body = match fci {
                Some(f) => {
                    let mut out = Vec::new();
                    f.emit_fci(&mut out).unwrap();
                    out.truncate(255);
                    out
                }
                None => junk,
            };
            data.push(control);
            data.push(body.len() as u8);
            data.extend_from_slice(&body);
        }
        crate::fuzzing::bwe_feedback(&data);
    }
}

fn arb_fci() -> impl Strategy<Value = TransportCc> {
    (
        any::<u16>(),
        -0x80_0000i32..=0x7F_FFFF,
        proptest::collection::vec(arb_status(), 0..60),
    )
        .prop_map(|(base_seq, reference_time, packets)| TransportCc {
            base_seq,
            reference_time,
            packets,
            ..TransportCc::default()
        })
}

#[test]
fn loss_from_feedback_counts_each_packet_once() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(Config {
        probing: false,
        ..Config::default()
    });
    let mut seq = 0u16;
    // 30 rounds of 20 packets over 3 s; in each, packets 0..4 are first
    // reported lost and then, in the next feedback, received (reordered,
    // not lost); packet 19 is lost for good: 5 % loss, "hold".
    let mut late: Vec<(u16, i64)> = Vec::new();
    for round in 0..30u64 {
        let base = seq;
        let mut arrivals = Vec::new();
        for k in 0..20u64 {
            let i = round * 20 + k;
            bwe.on_packet_sent(ms(t0, i * 5), seq, 600, None);
            seq = seq.wrapping_add(1);
            let at = 20_000 + i as i64 * 5000;
            if k < 4 {
                late.push((base + k as u16, at));
                arrivals.push(None);
            } else if k == 19 {
                arrivals.push(None);
            } else {
                arrivals.push(Some(at));
            }
        }
        bwe.on_feedback(ms(t0, (round + 1) * 100 + 20), &fb(base, &arrivals));
        // The late ones, reported in a feedback of their own.
        let (first, _) = late[0];
        let arrivals: Vec<Option<i64>> = late.iter().map(|&(_, at)| Some(at + 3000)).collect();
        bwe.on_feedback(ms(t0, (round + 1) * 100 + 30), &fb(first, &arrivals));
        late.clear();
    }
    // 1 in 20 lost; a window that closes between a loss report and the late
    // arrival counts those 4 as lost (it cannot know better yet): 9 % here,
    // still "hold".
    let loss = bwe.loss_fraction().unwrap();
    assert!((0.05..0.10).contains(&loss), "loss {loss}");
    assert_eq!(bwe.loss_based_estimate(), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The receive-side estimator takes any abs-send-time, size and SSRC
    /// without panicking, stays within its bounds, and its REMBs name at
    /// most 16 SSRCs.
    #[test]
    fn remb_estimator_takes_anything(
        packets in proptest::collection::vec((0u64..50_000, any::<u32>(), 0usize..2000, 0u32..40), 0..300),
    ) {
        let t0 = Instant::now();
        let mut r = remb::RembEstimator::new(1, Bitrate::kbps(300), Bitrate::kbps(30), Bitrate::mbps(50));
        let mut now = t0;
        for (gap, abs, size, ssrc) in packets {
            now += Duration::from_micros(gap);
            r.on_packet(now, abs, size, ssrc);
            if let Some(remb) = r.poll_remb(now) {
                prop_assert!(remb.ssrcs.len() <= 16);
                prop_assert!(remb.bitrate >= 30_000 && remb.bitrate <= 50_000_000);
            }
        }
        prop_assert!(r.estimate() >= Bitrate::kbps(30) && r.estimate() <= Bitrate::mbps(50));
    }
}
