//! SCTP associations in the simulator: transfers through loss, reordering
//! and duplication, partial reliability, many streams, every message size,
//! stream reset, shutdown and abort. Each packet is one UDP datagram (DTLS
//! would sit in between in a real peer).

use std::net::SocketAddr;
use std::time::Duration;

use rtclab::sctp::{Association, Config, Event, Reliability, SendOptions, State};
use rtclab::sim::sctp::{BulkSender, BulkSink, SimHost};
use rtclab::sim::{HostId, LinkConfig, Sim};

#[path = "common/over_dtls.rs"]
mod over_dtls;
use over_dtls::OverDtls;

const A: &str = "192.0.2.1:5000";
const B: &str = "192.0.2.2:5000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn config() -> Config {
    Config {
        heartbeat_interval: None,
        ..Config::default()
    }
}

/// Two hosts, `a` connects; returns once both are up.
fn pair(seed: u64, cfg: Config, link: LinkConfig) -> (Sim, HostId, HostId) {
    let mut sim = Sim::new(seed);
    let a = Association::new(cfg.clone(), sim.rng(1));
    let b = Association::new(cfg, sim.rng(2));
    let ha = sim.add_host(SimHost::new(a, addr(B)), &[addr(A)]);
    let hb = sim.add_host(SimHost::new(b, addr(A)), &[addr(B)]);
    sim.set_uplink(ha, link.clone());
    sim.set_uplink(hb, link);
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha).association.connect(now);
    let up = sim.run_for_with(Duration::from_secs(30), |s| {
        s.machine::<SimHost>(ha).association.state() == State::Established
            && s.machine::<SimHost>(hb).association.state() == State::Established
    });
    assert!(up, "association did not come up");
    assert_eq!(sim.events::<SimHost>(ha), vec![Event::Connected]);
    assert_eq!(sim.events::<SimHost>(hb), vec![Event::Connected]);
    (sim, ha, hb)
}

fn lossy() -> LinkConfig {
    LinkConfig {
        loss: 0.10,
        duplicate: 0.05,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(7),
        jitter: Duration::from_millis(2),
        ..LinkConfig::default()
    }
}

fn messages(evs: Vec<Event>) -> Vec<(u16, u32, Vec<u8>)> {
    evs.into_iter()
        .filter_map(|e| match e {
            Event::Message { stream, ppid, data } => Some((stream, ppid, data)),
            _ => None,
        })
        .collect()
}

/// A reliable ordered transfer arrives intact and in order under 10% loss
/// with reordering and duplication: 100 MB by default (about 8 s of CPU in
/// a debug build); `RTCLAB_SCTP_BULK_MB` sets another size.
fn bulk_under_loss(mb: u64) {
    let (mut sim, ha, hb) = pair(7, config(), lossy());
    let size = 64 * 1024;
    let count = mb * 1_000_000 / size as u64;
    sim.machine_mut::<SimHost>(ha).bulk = Some(BulkSender::new(1, size, count));
    sim.machine_mut::<SimHost>(hb).sink = Some(BulkSink::new(size, true));
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha).handle_timeout_now(now);
    let done = sim.run_for_with(Duration::from_secs(3600), |s| {
        s.machine::<SimHost>(hb)
            .sink
            .as_ref()
            .is_some_and(|k| k.messages >= count)
    });
    let sink = sim.machine::<SimHost>(hb).sink.clone().unwrap();
    assert!(
        done,
        "only {} of {count} messages after {:?}",
        sink.messages,
        sim.elapsed()
    );
    assert_eq!(sink.messages, count);
    assert_eq!(sink.corrupt, 0);
    assert_eq!(sink.out_of_order, 0);
    assert_eq!(
        sim.machine::<SimHost>(ha).association.state(),
        State::Established
    );
    let secs = sim.elapsed().as_secs_f64();
    eprintln!(
        "{mb} MB in {secs:.1} virtual s: {:.1} Mbit/s; sender {:?}",
        sink.bytes as f64 * 8.0 / secs / 1e6,
        sim.machine::<SimHost>(ha).association.stats
    );
}

#[test]
fn bulk_transfer_under_loss_reordering_duplication() {
    let mb = std::env::var("RTCLAB_SCTP_BULK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    bulk_under_loss(mb);
}

/// The same transfer with SCTP over our DTLS (RFC 8261: each SCTP packet in
/// one DTLS record, AES-GCM), through the same 10% loss, reordering and
/// duplication, which also hit the DTLS handshake. 10 MB by default (the
/// record layer costs CPU in a debug build); `RTCLAB_SCTP_DTLS_BULK_MB`
/// sets another size.
#[test]
fn bulk_transfer_over_dtls_under_loss_reordering_duplication() {
    let mb: u64 = std::env::var("RTCLAB_SCTP_DTLS_BULK_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    type Host = OverDtls<SimHost>;
    let mut sim = Sim::new(17);
    let now = sim.now();
    let a = SimHost::new(Association::new(config(), sim.rng(1)), addr(B));
    let b = SimHost::new(Association::new(config(), sim.rng(2)), addr(A));
    let ha = sim.add_host(Host::client(a, addr(A), addr(B), 21, now), &[addr(A)]);
    let hb = sim.add_host(Host::server(b, addr(B), addr(A), 22), &[addr(B)]);
    sim.set_uplink(ha, lossy());
    sim.set_uplink(hb, lossy());
    sim.machine_mut::<Host>(ha).inner.association.connect(now);
    let up = sim.run_for_with(Duration::from_secs(60), |s| {
        s.machine::<Host>(ha).inner.association.state() == State::Established
            && s.machine::<Host>(hb).inner.association.state() == State::Established
    });
    assert!(up, "DTLS + SCTP did not come up through the lossy link");
    let size = 64 * 1024;
    let count = mb * 1_000_000 / size as u64;
    sim.machine_mut::<Host>(ha).inner.bulk = Some(BulkSender::new(1, size, count));
    sim.machine_mut::<Host>(hb).inner.sink = Some(BulkSink::new(size, true));
    let now = sim.now();
    sim.machine_mut::<Host>(ha).inner.handle_timeout_now(now);
    let done = sim.run_for_with(Duration::from_secs(3600), |s| {
        s.machine::<Host>(hb)
            .inner
            .sink
            .as_ref()
            .is_some_and(|k| k.messages >= count)
    });
    let sink = sim.machine::<Host>(hb).inner.sink.clone().unwrap();
    assert!(done, "only {} of {count} messages", sink.messages);
    assert_eq!(sink.messages, count);
    assert_eq!(sink.corrupt, 0);
    assert_eq!(sink.out_of_order, 0);
    assert_eq!(sim.machine::<Host>(ha).send_errors, 0);
    assert_eq!(sim.machine::<Host>(hb).send_errors, 0);
    eprintln!(
        "{mb} MB over DTLS in {:.1} virtual s; sender {:?}",
        sim.elapsed().as_secs_f64(),
        sim.machine::<Host>(ha).inner.association.stats
    );
}

#[test]
fn unordered_delivery_under_reordering() {
    let link = LinkConfig {
        reorder: 0.3,
        reorder_delay: Duration::from_millis(20),
        loss: 0.05,
        ..LinkConfig::default()
    };
    let (mut sim, ha, hb) = pair(3, config(), link);
    let now = sim.now();
    let opts = SendOptions {
        unordered: true,
        reliability: Reliability::Reliable,
    };
    for i in 0..300u32 {
        sim.machine_mut::<SimHost>(ha)
            .association
            .send(now, 2, 53, &i.to_be_bytes(), opts)
            .unwrap();
    }
    let mut got = Vec::new();
    sim.run_for_with(Duration::from_secs(60), |s| {
        got.extend(
            messages(s.events::<SimHost>(hb))
                .into_iter()
                .map(|(_, _, d)| u32::from_be_bytes(d[..4].try_into().unwrap())),
        );
        got.len() >= 300
    });
    assert_eq!(got.len(), 300);
    let inversions = got.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(
        inversions > 0,
        "unordered messages arrived strictly in order"
    );
    got.sort();
    assert_eq!(got, (0..300).collect::<Vec<_>>());
}

/// Partial reliability: under loss some messages are skipped (FORWARD TSN),
/// the rest arrive whole and in order, the sender's buffer drains, and the
/// association keeps working for reliable data afterwards.
fn partial(reliability: Reliability, seed: u64) {
    let link = LinkConfig {
        loss: 0.2,
        ..LinkConfig::default()
    };
    let (mut sim, ha, hb) = pair(seed, config(), link);
    let now = sim.now();
    let opts = SendOptions {
        unordered: false,
        reliability,
    };
    let n = 400u32;
    for i in 0..n {
        let mut m = i.to_be_bytes().to_vec();
        m.resize(if i % 10 == 0 { 3000 } else { 500 }, i as u8);
        sim.machine_mut::<SimHost>(ha)
            .association
            .send(now, 5, 53, &m, opts)
            .unwrap();
    }
    let mut got: Vec<u32> = Vec::new();
    sim.run_for_with(Duration::from_secs(60), |s| {
        for (_, _, d) in messages(s.events::<SimHost>(hb)) {
            let i = u32::from_be_bytes(d[..4].try_into().unwrap());
            assert_eq!(d.len(), if i % 10 == 0 { 3000 } else { 500 });
            assert!(d[4..].iter().all(|&b| b == i as u8));
            got.push(i);
        }
        s.machine::<SimHost>(ha).association.buffered_amount(5) == 0
    });
    assert_eq!(
        sim.machine::<SimHost>(ha).association.buffered_amount(5),
        0,
        "sender buffer did not drain"
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "ordered stream out of order"
    );
    assert!(
        !got.is_empty() && got.len() < n as usize,
        "{} of {n} delivered: expected some skipped",
        got.len()
    );
    // Reliable data still flows afterwards.
    sim.set_uplink(ha, LinkConfig::default());
    sim.set_uplink(hb, LinkConfig::default());
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha)
        .association
        .send(now, 5, 53, b"after", SendOptions::default())
        .unwrap();
    let mut after = false;
    sim.run_for_with(Duration::from_secs(10), |s| {
        after |= messages(s.events::<SimHost>(hb))
            .iter()
            .any(|(_, _, d)| d == b"after");
        after
    });
    assert!(after);
    eprintln!("{reliability:?}: {} of {n} delivered", got.len());
}

#[test]
fn max_retransmits_zero_skips_lost_messages() {
    partial(Reliability::MaxRetransmits(0), 11);
}

#[test]
fn lifetime_skips_late_messages() {
    partial(Reliability::Lifetime(Duration::from_millis(60)), 12);
}

#[test]
fn a_thousand_streams_at_once() {
    let (mut sim, ha, hb) = pair(
        5,
        config(),
        LinkConfig {
            loss: 0.02,
            ..LinkConfig::default()
        },
    );
    let now = sim.now();
    for s in 0..1000u16 {
        sim.machine_mut::<SimHost>(ha)
            .association
            .send(
                now,
                s,
                51,
                format!("a{s}").as_bytes(),
                SendOptions::default(),
            )
            .unwrap();
        sim.machine_mut::<SimHost>(hb)
            .association
            .send(
                now,
                s,
                51,
                format!("b{s}").as_bytes(),
                SendOptions::default(),
            )
            .unwrap();
    }
    let (mut at_a, mut at_b) = (Vec::new(), Vec::new());
    sim.run_for_with(Duration::from_secs(60), |s| {
        at_a.extend(messages(s.events::<SimHost>(ha)));
        at_b.extend(messages(s.events::<SimHost>(hb)));
        at_a.len() >= 1000 && at_b.len() >= 1000
    });
    assert_eq!(at_a.len(), 1000);
    assert_eq!(at_b.len(), 1000);
    for (s, _, d) in &at_b {
        assert_eq!(d, format!("a{s}").as_bytes());
    }
    for (s, _, d) in &at_a {
        assert_eq!(d, format!("b{s}").as_bytes());
    }
}

#[test]
fn every_message_size_up_to_the_maximum() {
    let cfg = config();
    let max = cfg.max_message_size;
    let (mut sim, ha, hb) = pair(
        9,
        cfg,
        LinkConfig {
            loss: 0.03,
            ..LinkConfig::default()
        },
    );
    let now = sim.now();
    let mut sizes = vec![
        1usize,
        2,
        3,
        4,
        5,
        1171,
        1172,
        1173,
        2344,
        2345,
        65535,
        65536,
        max - 1,
        max,
    ];
    let mut x = 1usize;
    for _ in 0..30 {
        x = x.wrapping_mul(1103515245).wrapping_add(12345) % max + 1;
        sizes.push(x);
    }
    for (i, &n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..n).map(|k| (k + i * 13) as u8).collect();
        sim.machine_mut::<SimHost>(ha)
            .association
            .send(now, 0, 53, &data, SendOptions::default())
            .unwrap();
    }
    let mut got = Vec::new();
    sim.run_for_with(Duration::from_secs(120), |s| {
        got.extend(messages(s.events::<SimHost>(hb)));
        got.len() >= sizes.len()
    });
    assert_eq!(got.len(), sizes.len());
    for (i, (_, _, d)) in got.iter().enumerate() {
        assert_eq!(d.len(), sizes[i]);
        assert!(d.iter().enumerate().all(|(k, &b)| b == (k + i * 13) as u8));
    }
}

#[test]
fn stream_reset_from_either_side() {
    let (mut sim, ha, hb) = pair(
        13,
        config(),
        LinkConfig {
            loss: 0.1,
            ..LinkConfig::default()
        },
    );
    for (from, to) in [(ha, hb), (hb, ha)] {
        let now = sim.now();
        let m = sim.machine_mut::<SimHost>(from);
        m.association
            .send(now, 7, 51, b"bye", SendOptions::default())
            .unwrap();
        m.association.reset_streams(now, &[7]).unwrap();
        let (mut incoming, mut outgoing, mut msg) = (false, false, false);
        sim.run_for_with(Duration::from_secs(30), |s| {
            for e in s.events::<SimHost>(to) {
                msg |= matches!(&e, Event::Message { stream: 7, data, .. } if data == b"bye");
                incoming |= e == Event::StreamsReset { streams: vec![7] };
                // The message must come before the reset.
                assert!(!incoming || msg);
            }
            outgoing |= s
                .events::<SimHost>(from)
                .contains(&Event::OutgoingStreamsReset { streams: vec![7] });
            incoming && outgoing
        });
        assert!(
            msg && incoming && outgoing,
            "msg {msg} incoming {incoming} outgoing {outgoing}"
        );
    }
}

#[test]
fn graceful_shutdown_and_abort() {
    let (mut sim, ha, hb) = pair(
        17,
        config(),
        LinkConfig {
            loss: 0.1,
            ..LinkConfig::default()
        },
    );
    let now = sim.now();
    for i in 0..20u8 {
        sim.machine_mut::<SimHost>(ha)
            .association
            .send(now, 1, 53, &[i; 2000], SendOptions::default())
            .unwrap();
    }
    sim.machine_mut::<SimHost>(ha).association.shutdown(now);
    let (mut got, mut closed_b, mut closed_a) = (0, false, false);
    sim.run_for_with(Duration::from_secs(60), |s| {
        for e in s.events::<SimHost>(hb) {
            match e {
                Event::Message { .. } => got += 1,
                Event::Closed => closed_b = true,
                _ => {}
            }
        }
        closed_a |= s.events::<SimHost>(ha).contains(&Event::Closed);
        closed_a && closed_b
    });
    assert_eq!(got, 20);
    assert!(closed_a && closed_b);

    let (mut sim, ha, hb) = pair(19, config(), LinkConfig::default());
    let now = sim.now();
    sim.machine_mut::<SimHost>(hb).association.abort(now);
    let mut aborted = false;
    sim.run_for_with(Duration::from_secs(5), |s| {
        aborted |= s
            .events::<SimHost>(ha)
            .iter()
            .any(|e| matches!(e, Event::Aborted { .. }));
        aborted
    });
    assert!(aborted);
    assert_eq!(
        sim.machine::<SimHost>(ha).association.state(),
        State::Closed
    );
}

#[test]
fn init_collision_in_sim() {
    let mut sim = Sim::new(23);
    let a = Association::new(config(), sim.rng(1));
    let b = Association::new(config(), sim.rng(2));
    let ha = sim.add_host(SimHost::new(a, addr(B)), &[addr(A)]);
    let hb = sim.add_host(SimHost::new(b, addr(A)), &[addr(B)]);
    sim.set_uplink(ha, lossy());
    sim.set_uplink(hb, lossy());
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha).association.connect(now);
    sim.machine_mut::<SimHost>(hb).association.connect(now);
    let up = sim.run_for_with(Duration::from_secs(30), |s| {
        s.machine::<SimHost>(ha).association.state() == State::Established
            && s.machine::<SimHost>(hb).association.state() == State::Established
    });
    assert!(up);
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha)
        .association
        .send(now, 0, 51, b"ping", SendOptions::default())
        .unwrap();
    let mut ok = false;
    sim.run_for_with(Duration::from_secs(10), |s| {
        ok |= !messages(s.events::<SimHost>(hb)).is_empty();
        ok
    });
    assert!(ok);
}

/// Loss recovery is Reno as RFC 9260 §7.2 describes it, and no worse: at
/// 1% random loss each way on a 20 ms, 1 Gbit/s path (the
/// `datachannel.sim_20ms_1pct_loss_mbit_per_s` set-up, 5 MB here), the rate
/// sits near the Mathis et al. bound of any window-halving sender,
/// 1.22 · MSS / (RTT · √p) = 1.22 · 1172 B · 8 / (20 ms · 0.1) ≈ 5.7
/// Mbit/s; losses are repaired by fast retransmit, not by T3 timeouts,
/// and the sender does not resend much more than was lost.
#[test]
fn reno_under_one_percent_loss_is_near_the_mathis_bound() {
    let (mbit, _, stats) = rtclab::speed::sctp::sim_transfer_with_stats(0.01, 5_000_000, 2);
    let mathis = 1.22 * 1172.0 * 8.0 / (0.020 * 0.1) / 1e6;
    eprintln!("1% loss: {mbit:.2} Mbit/s (Mathis bound {mathis:.2}); sender {stats:?}");
    assert!(
        mbit > 0.6 * mathis && mbit < 3.0 * mathis,
        "{mbit:.2} Mbit/s against a bound of {mathis:.2}"
    );
    let lost = stats.sent_chunks as f64 * 0.01;
    assert!(
        (stats.timeouts as f64) < 0.2 * lost,
        "{} T3 timeouts for about {lost:.0} lost chunks",
        stats.timeouts
    );
    assert!(
        (stats.fast_retransmits as f64) > 0.5 * lost,
        "{} fast retransmits for about {lost:.0} lost chunks",
        stats.fast_retransmits
    );
    assert!(
        (stats.retransmitted_chunks as f64) < 3.0 * lost + 20.0,
        "{} chunks resent for about {lost:.0} lost",
        stats.retransmitted_chunks
    );
}

/// The send queue is round robin by stream (RFC 8260 §3.2): with 2 MB of
/// bulk queued on one stream of a 10 Mbit/s path (1.6 s of sending), a small
/// message on another stream waits about one bulk message, not the whole
/// backlog.
#[test]
fn round_robin_lets_a_small_message_past_a_bulk_backlog() {
    let link = LinkConfig {
        rate_bps: Some(10_000_000),
        queue_limit_bytes: 256 * 1024,
        ..LinkConfig::default()
    };
    let (mut sim, ha, hb) = pair(9, config(), link);
    let size = 64 * 1024;
    let mut bulk = BulkSender::new(1, size, 32);
    bulk.high_water = 4 << 20;
    sim.machine_mut::<SimHost>(ha).bulk = Some(bulk);
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha).handle_timeout_now(now);
    assert_eq!(
        sim.machine::<SimHost>(ha).association.total_buffered(),
        32 * size
    );
    sim.run_for(Duration::from_millis(100));
    let sent_at = sim.now();
    sim.machine_mut::<SimHost>(ha)
        .association
        .send(sent_at, 3, 51, b"chat message", SendOptions::default())
        .unwrap();
    let mut small_at = None;
    let mut bulk_seen = 0;
    sim.run_for_with(Duration::from_secs(10), |s| {
        for (stream, _, _) in messages(s.events::<SimHost>(hb)) {
            if stream == 3 {
                small_at.get_or_insert(s.now());
            } else {
                bulk_seen += 1;
            }
        }
        bulk_seen == 32
    });
    let waited = small_at.expect("small message delivered") - sent_at;
    assert!(
        waited < Duration::from_millis(250),
        "the small message waited {waited:?} behind the bulk stream"
    );
    assert_eq!(bulk_seen, 32);
}
