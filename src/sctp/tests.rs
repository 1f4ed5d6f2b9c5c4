//! Unit and property tests of the SCTP codec and association.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::chunk::{Data, ForwardTsn, GapBlock, IData, IForwardTsn, Init, Sack, kind};
use super::packet::{self, CommonHeader};
use super::param::{ErrorCause, Param, ReConfigParam};
use super::*;

#[test]
fn crc32c_check_value() {
    // The CRC-32C check value of "123456789" (the iSCSI polynomial, RFC 3720 B.4).
    assert_eq!(packet::CRC32C.checksum(b"123456789"), 0xE306_9283);
}

#[test]
fn packet_round_trip_and_checksum() {
    let p = Packet {
        header: CommonHeader {
            source_port: 5000,
            destination_port: 5000,
            verification_tag: 0x1234_5678,
        },
        chunks: vec![
            Chunk::CookieAck,
            Chunk::Data(Data {
                flags: 3,
                tsn: 7,
                stream: 1,
                ssn: 2,
                ppid: 51,
                payload: b"hello",
            }),
        ],
    };
    let mut v = p.to_vec();
    assert_eq!(v.len() % 4, 0);
    assert_eq!(Packet::parse(&v).unwrap(), p);
    v[20] ^= 1;
    assert!(matches!(Packet::parse(&v), Err(Error::BadChecksum { .. })));
}

#[test]
fn chunk_length_past_packet_is_rejected() {
    let p = Packet {
        header: CommonHeader::default(),
        chunks: vec![Chunk::CookieAck],
    };
    let mut v = p.to_vec();
    v[15] = 200; // COOKIE ACK claims 200 bytes
    packet::finish(&mut v);
    assert!(matches!(
        Packet::parse(&v),
        Err(Error::BadLength {
            what: "chunk",
            offset: 12,
            length: 200
        })
    ));
}

#[test]
fn init_length_excludes_last_parameter_padding() {
    let c = Chunk::Init(Init {
        initiate_tag: 1,
        a_rwnd: 2,
        outbound_streams: 3,
        max_inbound_streams: 4,
        initial_tsn: 5,
        params: vec![Param::SupportedExtensions(vec![0x82, 0xC0])],
    });
    let mut v = Vec::new();
    c.emit(&mut v);
    // 4 header + 16 fixed + 4 TLV header + 2 value = 26; padded to 28 on the wire.
    assert_eq!(u16::from_be_bytes([v[2], v[3]]), 26);
    assert_eq!(v.len(), 28);
    assert_eq!(Chunk::parse(v[0], v[1], &v[4..26]).unwrap(), c);
}

fn arb_param() -> impl Strategy<Value = Param> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Param::StateCookie),
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(Param::SupportedExtensions),
        Just(Param::ForwardTsnSupported),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(Param::UnrecognizedParameter),
        (
            0x8100u16..0xBFFF,
            proptest::collection::vec(any::<u8>(), 0..10)
        )
            .prop_map(|(typ, value)| Param::Unknown { typ, value }),
    ]
}

fn arb_init() -> impl Strategy<Value = Init> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        proptest::collection::vec(arb_param(), 0..4),
    )
        .prop_map(
            |(initiate_tag, a_rwnd, outbound_streams, max_inbound_streams, initial_tsn, params)| {
                Init {
                    initiate_tag,
                    a_rwnd,
                    outbound_streams,
                    max_inbound_streams,
                    initial_tsn,
                    params,
                }
            },
        )
}

fn arb_causes() -> impl Strategy<Value = Vec<ErrorCause>> {
    proptest::collection::vec(
        (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..9))
            .prop_map(|(code, info)| ErrorCause { code, info }),
        0..3,
    )
}

fn arb_reconfig() -> impl Strategy<Value = ReConfigParam> {
    let streams = proptest::collection::vec(any::<u16>(), 0..5);
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>(), streams.clone()).prop_map(|(a, b, c, s)| {
            ReConfigParam::OutgoingResetRequest {
                request_seq: a,
                response_seq: b,
                last_tsn: c,
                streams: s,
            }
        }),
        (any::<u32>(), streams).prop_map(|(a, s)| ReConfigParam::IncomingResetRequest {
            request_seq: a,
            streams: s
        }),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::option::of((any::<u32>(), any::<u32>()))
        )
            .prop_map(|(a, b, n)| ReConfigParam::Response {
                response_seq: a,
                result: b,
                next_tsns: n
            }),
        (17u16..100, proptest::collection::vec(any::<u8>(), 0..9))
            .prop_map(|(typ, value)| ReConfigParam::Unknown { typ, value }),
    ]
}

/// Every chunk with an owned payload (the borrowed ones take `payload`).
fn arb_chunk(payload: &'static [u8]) -> impl Strategy<Value = Chunk<'static>> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>()
        )
            .prop_map(move |(f, tsn, stream, ssn, ppid)| Chunk::Data(Data {
                flags: f & 0x0F,
                tsn,
                stream,
                ssn,
                ppid,
                payload
            })),
        (
            any::<u8>(),
            any::<u32>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>()
        )
            .prop_map(move |(f, tsn, stream, mid, p)| Chunk::IData(IData {
                flags: f & 0x0F,
                tsn,
                stream,
                mid,
                ppid_or_fsn: p,
                payload
            })),
        arb_init().prop_map(Chunk::Init),
        arb_init().prop_map(Chunk::InitAck),
        (
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(
                (any::<u16>(), any::<u16>()).prop_map(|(start, end)| GapBlock { start, end }),
                0..5
            ),
            proptest::collection::vec(any::<u32>(), 0..5)
        )
            .prop_map(|(c, a, gaps, dups)| Chunk::Sack(Sack {
                cum_tsn_ack: c,
                a_rwnd: a,
                gaps,
                dups
            })),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Chunk::Heartbeat),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(Chunk::HeartbeatAck),
        (any::<bool>(), arb_causes()).prop_map(|(t, causes)| Chunk::Abort { t, causes }),
        any::<u32>().prop_map(|c| Chunk::Shutdown { cum_tsn_ack: c }),
        Just(Chunk::ShutdownAck),
        any::<bool>().prop_map(|t| Chunk::ShutdownComplete { t }),
        arb_causes().prop_map(Chunk::Error),
        proptest::collection::vec(any::<u8>(), 0..70).prop_map(Chunk::CookieEcho),
        Just(Chunk::CookieAck),
        (
            any::<u32>(),
            proptest::collection::vec((any::<u16>(), any::<u16>()), 0..4)
        )
            .prop_map(|(n, streams)| Chunk::ForwardTsn(ForwardTsn {
                new_cum_tsn: n,
                streams
            })),
        (
            any::<u32>(),
            proptest::collection::vec((any::<u16>(), any::<bool>(), any::<u32>()), 0..4)
        )
            .prop_map(|(n, streams)| Chunk::IForwardTsn(IForwardTsn {
                new_cum_tsn: n,
                streams
            })),
        proptest::collection::vec(arb_reconfig(), 1..3).prop_map(Chunk::ReConfig),
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..3))
            .prop_filter("unknown type", |(t, _)| {
                ![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 64, 130, 192, 194].contains(t)
            })
            .prop_map(|(typ, v)| Chunk::Unknown {
                typ,
                flags: 0,
                value: Box::leak(v.into_boxed_slice())
            }),
    ]
}

proptest! {
    #[test]
    fn every_chunk_round_trips(chunks in proptest::collection::vec(arb_chunk(b"payload bytes!"), 1..5), tag in any::<u32>()) {
        let p = Packet { header: CommonHeader { source_port: 5000, destination_port: 5001, verification_tag: tag }, chunks };
        let bytes = p.to_vec();
        let back = Packet::parse(&bytes).unwrap();
        prop_assert_eq!(back, p);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Packet::parse(&data);
        for c in packet::chunks(&data).flatten() {
            let _ = c.parse();
        }
        // Also with a valid checksum, so the association parses it.
        let mut d = data.clone();
        if d.len() >= 12 {
            packet::finish(&mut d);
            let _ = Packet::parse(&d);
            let now = Instant::now();
            let mut a = Association::new(Config::default(), StdRng::seed_from_u64(1));
            a.handle_packet(now, &d);
            while a.poll_transmit().is_some() {}
        }
    }

    #[test]
    fn arbitrary_chunk_values_never_panic(typ in any::<u8>(), flags in any::<u8>(), value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = Chunk::parse(typ, flags, &value);
    }
}

// ------------------------------------------------------------------ pairs

/// Two associations wired back to back with instant delivery.
pub(crate) struct Pair {
    pub a: Association,
    pub b: Association,
    pub now: Instant,
    /// Drop each packet with probability 1/n (0: none), from a fixed LCG.
    pub drop_every: u64,
    lcg: u64,
    pub sent: u64,
}

impl Pair {
    pub fn new(config: Config) -> Pair {
        Pair {
            a: Association::new(config.clone(), StdRng::seed_from_u64(1)),
            b: Association::new(config, StdRng::seed_from_u64(2)),
            now: Instant::now(),
            drop_every: 0,
            sent: 0,
            lcg: 12345,
        }
    }

    /// Delivers packets until both are quiet, then steps time to the next
    /// timer, for at most `limit` of virtual time.
    pub fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            let mut moved = false;
            while let Some(p) = self.a.poll_transmit() {
                moved = true;
                self.sent += 1;
                if std::env::var("SCTP_TRACE").is_ok() {
                    trace("a->b", self.sent, &p);
                }
                if !self.lose() {
                    self.b.handle_packet(self.now, &p);
                } else if std::env::var("SCTP_TRACE").is_ok() {
                    eprintln!("  (lost)");
                }
            }
            while let Some(p) = self.b.poll_transmit() {
                moved = true;
                self.sent += 1;
                if std::env::var("SCTP_TRACE").is_ok() {
                    trace("b->a", self.sent, &p);
                }
                if !self.lose() {
                    self.a.handle_packet(self.now, &p);
                } else if std::env::var("SCTP_TRACE").is_ok() {
                    eprintln!("  (lost)");
                }
            }
            if moved {
                continue;
            }
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                }
                _ => break,
            }
        }
    }

    fn lose(&mut self) -> bool {
        self.lcg = self
            .lcg
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.drop_every != 0 && (self.lcg >> 33) % self.drop_every == 0
    }

    pub fn events(a: &mut Association) -> Vec<Event> {
        std::iter::from_fn(|| a.poll_event()).collect()
    }
}

fn trace(dir: &str, n: u64, p: &[u8]) {
    let parsed = Packet::parse(p).unwrap();
    let d: Vec<String> = parsed
        .chunks
        .iter()
        .map(|c| match c {
            Chunk::Data(d) => format!("DATA {} f{}", d.tsn, d.flags),
            Chunk::Sack(s) => format!("SACK {} {:?} rwnd {}", s.cum_tsn_ack, s.gaps, s.a_rwnd),
            c => format!("{}", c.typ()),
        })
        .collect();
    eprintln!("{n} {dir} {d:?}");
}

fn connected() -> Pair {
    let mut p = Pair::new(Config {
        heartbeat_interval: None,
        ..Config::default()
    });
    p.a.connect(p.now);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.b.state(), State::Established);
    assert_eq!(Pair::events(&mut p.a), vec![Event::Connected]);
    assert_eq!(Pair::events(&mut p.b), vec![Event::Connected]);
    p
}

fn messages(evs: Vec<Event>) -> Vec<(u16, u32, Vec<u8>)> {
    evs.into_iter()
        .filter_map(|e| match e {
            Event::Message { stream, ppid, data } => Some((stream, ppid, data)),
            _ => None,
        })
        .collect()
}

#[test]
fn handshake_and_one_message_each_way() {
    let mut p = connected();
    p.a.send(p.now, 1, 51, b"hello", SendOptions::default())
        .unwrap();
    p.b.send(p.now, 2, 53, b"world", SendOptions::default())
        .unwrap();
    p.run(Duration::from_secs(1));
    assert_eq!(
        messages(Pair::events(&mut p.b)),
        vec![(1, 51, b"hello".to_vec())]
    );
    assert_eq!(
        messages(Pair::events(&mut p.a)),
        vec![(2, 53, b"world".to_vec())]
    );
    assert_eq!(p.a.buffered_amount(1), 0);
}

#[test]
fn init_collision_ends_in_one_association() {
    let mut p = Pair::new(Config {
        heartbeat_interval: None,
        ..Config::default()
    });
    p.a.connect(p.now);
    p.b.connect(p.now);
    p.run(Duration::from_secs(2));
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.b.state(), State::Established);
    assert_eq!(Pair::events(&mut p.a), vec![Event::Connected]);
    assert_eq!(Pair::events(&mut p.b), vec![Event::Connected]);
    p.a.send(p.now, 0, 51, b"x", SendOptions::default())
        .unwrap();
    p.b.send(p.now, 0, 51, b"y", SendOptions::default())
        .unwrap();
    p.run(Duration::from_secs(1));
    assert_eq!(messages(Pair::events(&mut p.b)).len(), 1);
    assert_eq!(messages(Pair::events(&mut p.a)).len(), 1);
}

#[test]
fn large_messages_fragment_and_reassemble() {
    let mut p = connected();
    let sizes = [1usize, 1171, 1172, 1173, 5000, 65536, 256 * 1024];
    for (i, &n) in sizes.iter().enumerate() {
        let data: Vec<u8> = (0..n).map(|k| (k * 7 + i) as u8).collect();
        p.a.send(p.now, i as u16, 53, &data, SendOptions::default())
            .unwrap();
    }
    assert!(matches!(
        p.a.send(
            p.now,
            0,
            53,
            &vec![0; 256 * 1024 + 1],
            SendOptions::default()
        ),
        Err(Error::MessageTooLarge { .. })
    ));
    assert_eq!(
        p.a.send(p.now, 0, 53, &[], SendOptions::default()),
        Err(Error::EmptyMessage)
    );
    p.run(Duration::from_secs(5));
    let got = messages(Pair::events(&mut p.b));
    assert_eq!(got.len(), sizes.len());
    for (i, (s, _, d)) in got.iter().enumerate() {
        assert_eq!(*s as usize, i);
        assert_eq!(d.len(), sizes[i]);
        assert!(d.iter().enumerate().all(|(k, &b)| b == (k * 7 + i) as u8));
    }
}

#[test]
fn loss_is_repaired_in_order() {
    let mut p = connected();
    p.drop_every = 7;
    for i in 0..300u32 {
        p.a.send(
            p.now,
            3,
            53,
            &i.to_be_bytes().repeat(100),
            SendOptions::default(),
        )
        .unwrap();
    }
    p.run(Duration::from_secs(30));
    let got = messages(Pair::events(&mut p.b));
    assert_eq!(
        got.len(),
        300,
        "a: {:?} {:?} flight {} cwnd {} buffered {} timeout {:?} rto {:?} now {:?}",
        p.a.state(),
        Pair::events(&mut p.a)
            .iter()
            .filter(|e| !matches!(e, Event::BufferedAmountDecreased { .. }))
            .collect::<Vec<_>>(),
        p.a.flight_size(),
        p.a.cwnd(),
        p.a.total_buffered(),
        p.a.poll_timeout().map(|t| t - p.now),
        p.a.rto(),
        p.now
    );
    for (i, (_, _, d)) in got.iter().enumerate() {
        assert_eq!(&d[..4], &(i as u32).to_be_bytes());
    }
}

#[test]
fn forged_cookie_is_dropped_without_state() {
    let mut a = Association::new(Config::default(), StdRng::seed_from_u64(9));
    let now = Instant::now();
    let mut cookie = vec![1u8; 66];
    cookie[0] = 1;
    let p = Packet {
        header: CommonHeader {
            source_port: 5000,
            destination_port: 5000,
            verification_tag: 0x0101_0101,
        },
        chunks: vec![Chunk::CookieEcho(cookie)],
    };
    a.handle_packet(now, &p.to_vec());
    assert_eq!(a.state(), State::Closed);
    assert_eq!(a.bad_cookies, 1);
    assert!(a.poll_event().is_none());
}

#[test]
fn init_flood_keeps_no_state() {
    let mut a = Association::new(Config::default(), StdRng::seed_from_u64(9));
    let now = Instant::now();
    for i in 0..10_000u32 {
        let p = Packet {
            header: CommonHeader {
                source_port: 5000,
                destination_port: 5000,
                verification_tag: 0,
            },
            chunks: vec![Chunk::Init(Init {
                initiate_tag: i + 1,
                a_rwnd: 100_000,
                outbound_streams: 10,
                max_inbound_streams: 10,
                initial_tsn: i,
                params: vec![],
            })],
        };
        a.handle_packet(now, &p.to_vec());
    }
    assert_eq!(a.state(), State::Closed);
    // At most the capped queue of INIT ACKs waits to go out.
    let mut n = 0;
    while let Some(p) = a.poll_transmit() {
        let parsed = Packet::parse(&p).unwrap();
        assert!(matches!(parsed.chunks[0], Chunk::InitAck(_)));
        n += 1;
    }
    assert!(n <= 64, "{n} INIT ACKs queued");
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn sack_for_unsent_tsn_aborts() {
    let mut p = connected();
    p.a.send(p.now, 0, 51, b"hi", SendOptions::default())
        .unwrap();
    let pkt = p.a.poll_transmit().unwrap();
    let parsed = Packet::parse(&pkt).unwrap();
    let Chunk::Data(d) = parsed.chunks.last().unwrap() else {
        panic!("no DATA")
    };
    let tag = parsed.header.verification_tag;
    // Forge a SACK from b that acknowledges far beyond what a sent.
    let _ = tag;
    let a_tag = {
        // a's local tag is the verification tag b puts in its packets.
        p.b.send(p.now, 0, 51, b"x", SendOptions::default())
            .unwrap();
        let q = p.b.poll_transmit().unwrap();
        CommonHeader::parse(&q).unwrap().verification_tag
    };
    let sack = Packet {
        header: CommonHeader {
            source_port: 5000,
            destination_port: 5000,
            verification_tag: a_tag,
        },
        chunks: vec![Chunk::Sack(Sack {
            cum_tsn_ack: d.tsn.wrapping_add(1000),
            a_rwnd: 1 << 20,
            gaps: vec![],
            dups: vec![],
        })],
    };
    p.a.handle_packet(p.now, &sack.to_vec());
    assert_eq!(p.a.state(), State::Closed);
    assert!(matches!(
        Pair::events(&mut p.a).last(),
        Some(Event::Aborted { .. })
    ));
    let raw = p.a.poll_transmit().unwrap();
    let abort = Packet::parse(&raw).unwrap();
    assert!(matches!(abort.chunks[0], Chunk::Abort { .. }));
}

#[test]
fn reassembly_past_the_cap_aborts() {
    let mut p = Pair::new(Config {
        max_message_size: 4000,
        heartbeat_interval: None,
        ..Config::default()
    });
    p.a.connect(p.now);
    p.run(Duration::from_secs(1));
    let _ = Pair::events(&mut p.b);
    // b learned a's tag; forge fragments without an end from a.
    let tag = {
        p.a.send(p.now, 0, 51, b"x", SendOptions::default())
            .unwrap();
        let q = p.a.poll_transmit().unwrap();
        p.b.handle_packet(p.now, &q);
        CommonHeader::parse(&q).unwrap().verification_tag
    };
    let _ = Pair::events(&mut p.b);
    let first = {
        // The next TSN a would use: one past the chunk just delivered.
        p.a.send(p.now, 0, 51, b"y", SendOptions::default())
            .unwrap();
        let raw = p.a.poll_transmit().unwrap();
        let q = Packet::parse(&raw).unwrap();
        match q.chunks.iter().find_map(|c| {
            if let Chunk::Data(d) = c {
                Some(d.tsn)
            } else {
                None
            }
        }) {
            Some(t) => t,
            None => panic!("no data"),
        }
    };
    let payload = [0u8; 1000];
    for i in 0..10u32 {
        let flags = if i == 0 { chunk::FLAG_BEGIN } else { 0 };
        let pk = Packet {
            header: CommonHeader {
                source_port: 5000,
                destination_port: 5000,
                verification_tag: tag,
            },
            chunks: vec![Chunk::Data(Data {
                flags,
                tsn: first + i,
                stream: 0,
                ssn: 2,
                ppid: 53,
                payload: &payload,
            })],
        };
        p.b.handle_packet(p.now, &pk.to_vec());
        if p.b.state() == State::Closed {
            break;
        }
    }
    assert_eq!(p.b.state(), State::Closed);
    assert!(p.b.receive_buffered() <= 5000);
    assert!(
        Pair::events(&mut p.b)
            .iter()
            .any(|e| matches!(e, Event::Aborted { reason } if reason.contains("max message size")))
    );
}

#[test]
fn stream_reset_both_ways() {
    let mut p = connected();
    p.a.send(p.now, 4, 51, b"last words", SendOptions::default())
        .unwrap();
    p.a.reset_streams(p.now, &[4]).unwrap();
    assert_eq!(
        p.a.send(p.now, 4, 51, b"more", SendOptions::default()),
        Err(Error::StreamResetting(4))
    );
    p.run(Duration::from_secs(2));
    let evb = Pair::events(&mut p.b);
    assert_eq!(messages(evb.clone()), vec![(4, 51, b"last words".to_vec())]);
    assert!(evb.contains(&Event::StreamsReset { streams: vec![4] }));
    assert!(Pair::events(&mut p.a).contains(&Event::OutgoingStreamsReset { streams: vec![4] }));
    // b answers by resetting its side; then a reuses the stream from SSN 0.
    p.b.reset_streams(p.now, &[4]).unwrap();
    p.run(Duration::from_secs(2));
    assert!(Pair::events(&mut p.a).contains(&Event::StreamsReset { streams: vec![4] }));
    assert!(Pair::events(&mut p.b).contains(&Event::OutgoingStreamsReset { streams: vec![4] }));
    p.a.send(p.now, 4, 51, b"again", SendOptions::default())
        .unwrap();
    p.run(Duration::from_secs(2));
    assert_eq!(
        messages(Pair::events(&mut p.b)),
        vec![(4, 51, b"again".to_vec())]
    );
}

#[test]
fn graceful_shutdown_after_data() {
    let mut p = connected();
    for i in 0..50u8 {
        p.a.send(p.now, 0, 53, &[i; 3000], SendOptions::default())
            .unwrap();
    }
    p.a.shutdown(p.now);
    p.run(Duration::from_secs(5));
    assert_eq!(p.a.state(), State::Closed);
    assert_eq!(p.b.state(), State::Closed);
    let evb = Pair::events(&mut p.b);
    assert_eq!(messages(evb.clone()).len(), 50);
    assert_eq!(evb.last(), Some(&Event::Closed));
    assert_eq!(Pair::events(&mut p.a).last(), Some(&Event::Closed));
}

#[test]
fn abort_reaches_the_peer() {
    let mut p = connected();
    p.b.abort(p.now);
    p.run(Duration::from_secs(1));
    assert_eq!(p.a.state(), State::Closed);
    let ev = Pair::events(&mut p.a);
    assert!(
        matches!(&ev[..], [Event::Aborted { reason }] if reason.contains("user-initiated abort")),
        "{ev:?}"
    );
}

#[test]
fn unknown_chunk_upper_bits() {
    let mut p = connected();
    let b_tag = {
        p.a.send(p.now, 0, 51, b"x", SendOptions::default())
            .unwrap();
        let q = p.a.poll_transmit().unwrap();
        p.b.handle_packet(p.now, &q);
        CommonHeader::parse(&q).unwrap().verification_tag
    };
    p.run(Duration::from_secs(1));
    let _ = Pair::events(&mut p.b);
    // 0xC5: skip and report; the DATA after it is processed.
    let pk = Packet {
        header: CommonHeader {
            source_port: 5000,
            destination_port: 5000,
            verification_tag: b_tag,
        },
        chunks: vec![Chunk::Unknown {
            typ: 0xC5,
            flags: 0,
            value: b"abc",
        }],
    };
    p.b.handle_packet(p.now, &pk.to_vec());
    let raw = p.b.poll_transmit().unwrap();
    let reply = Packet::parse(&raw).unwrap();
    assert!(
        matches!(&reply.chunks[0], Chunk::Error(c) if c[0].code == ErrorCause::UNRECOGNIZED_CHUNK)
    );
    let _ = kind::DATA;
}

#[test]
fn over_our_dtls_on_loopback_udp() {
    // Two rtclab peers: SCTP in DTLS records over real loopback UDP.
    let r =
        crate::speed::sctp::loopback(2 * 1024 * 1024, 64 * 1024, 1200).expect("loopback transfer");
    assert!(r.mb_per_s > 0.0);
    assert!(r.sender_cpu > 0.0 && r.receiver_cpu > 0.0);
}

/// A connected pair where b already took one message from a: returns b's
/// verification tag as a uses it and the next TSN a would send.
fn tag_and_next_tsn(p: &mut Pair) -> (u32, u32) {
    p.a.send(p.now, 0, 51, b"x", SendOptions::default())
        .unwrap();
    let q = p.a.poll_transmit().unwrap();
    p.b.handle_packet(p.now, &q);
    let _ = Pair::events(&mut p.b);
    let tag = CommonHeader::parse(&q).unwrap().verification_tag;
    let parsed = Packet::parse(&q).unwrap();
    let tsn = parsed
        .chunks
        .iter()
        .find_map(|c| match c {
            Chunk::Data(d) => Some(d.tsn),
            _ => None,
        })
        .unwrap();
    (tag, tsn.wrapping_add(1))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Fragments of two ordered messages arriving in any order, some twice,
    /// are joined into runs and delivered once each, whole and in SSN order.
    #[test]
    fn fragments_in_any_order_reassemble(
        sizes in (1usize..6, 1usize..6),
        order in Just((0..10usize).collect::<Vec<_>>()).prop_shuffle(),
        dups in proptest::collection::vec(0usize..10, 0..4),
    ) {
        let mut p = connected();
        let (tag, first) = tag_and_next_tsn(&mut p);
        // Message m has sizes.m fragments of 100 bytes; bytes tell (message, index).
        let counts = [sizes.0, sizes.1];
        let mut frags = Vec::new();
        let mut tsn = first;
        for (m, &n) in counts.iter().enumerate() {
            for i in 0..n {
                let mut flags = 0;
                if i == 0 { flags |= chunk::FLAG_BEGIN; }
                if i == n - 1 { flags |= chunk::FLAG_END; }
                let payload = vec![(m * 16 + i) as u8; 100];
                frags.push((tsn, flags, m as u16 + 1, payload));
                tsn = tsn.wrapping_add(1);
            }
        }
        let total = frags.len();
        let mut schedule: Vec<usize> = order.into_iter().filter(|&i| i < total).collect();
        schedule.extend(dups.into_iter().filter(|&i| i < total));
        for i in schedule {
            let (tsn, flags, ssn, payload) = &frags[i];
            let pk = Packet {
                header: CommonHeader { source_port: 5000, destination_port: 5000, verification_tag: tag },
                chunks: vec![Chunk::Data(Data { flags: *flags, tsn: *tsn, stream: 0, ssn: *ssn, ppid: 53, payload })],
            };
            p.b.handle_packet(p.now, &pk.to_vec());
            prop_assert_eq!(p.b.state(), State::Established);
        }
        let got = messages(Pair::events(&mut p.b));
        let want: Vec<(u16, u32, Vec<u8>)> = counts
            .iter()
            .enumerate()
            .map(|(m, &n)| (0, 53, (0..n).flat_map(|i| vec![(m * 16 + i) as u8; 100]).collect()))
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(p.b.receive_buffered(), 0);
    }
}

/// One DATA chunk from a to b, forged with b's tag.
fn forged_data(tag: u32, tsn: u32, flags: u8, stream: u16, ssn: u16, payload: &[u8]) -> Vec<u8> {
    Packet {
        header: CommonHeader {
            source_port: 5000,
            destination_port: 5000,
            verification_tag: tag,
        },
        chunks: vec![Chunk::Data(Data {
            flags,
            tsn,
            stream,
            ssn,
            ppid: 53,
            payload,
        })],
    }
    .to_vec()
}

/// The cumulative TSN of the last SACK b sends now.
fn last_sack_cum(b: &mut Association) -> Option<u32> {
    let mut cum = None;
    while let Some(raw) = b.poll_transmit() {
        for c in Packet::parse(&raw).unwrap().chunks {
            if let Chunk::Sack(s) = c {
                cum = Some(s.cum_tsn_ack);
            }
        }
    }
    cum
}

fn small_window_pair(window: u32) -> Pair {
    small_window_pair_with(window, Config::default().max_retransmits)
}

/// As [`small_window_pair`], giving up after `max_retransmits` timeouts
/// in a row.
fn small_window_pair_with(window: u32, max_retransmits: u32) -> Pair {
    let mut p = Pair::new(Config {
        receive_window: window,
        heartbeat_interval: None,
        max_retransmits,
        ..Config::default()
    });
    p.a.connect(p.now);
    p.run(Duration::from_secs(1));
    assert_eq!(p.b.state(), State::Established);
    let _ = Pair::events(&mut p.a);
    let _ = Pair::events(&mut p.b);
    p
}

/// RFC 9260 §6.2: one DATA chunk far ahead, then a BEGIN-only fragment in
/// every hole below it. Each fills a hole below the highest TSN received,
/// none advances the cumulative TSN, none can complete: past the window
/// they are dropped, so what b holds never exceeds its window. The chunk
/// at the cumulative TSN + 1 is still taken when the window is full.
#[test]
fn fragments_in_holes_stay_within_the_window() {
    let window = 64 * 1024;
    let mut p = small_window_pair(window);
    let (tag, first) = tag_and_next_tsn(&mut p);
    let far = first.wrapping_add(4000);
    p.b.handle_packet(
        p.now,
        &forged_data(tag, far, chunk::FLAG_BEGIN | chunk::FLAG_END, 1, 0, b"far"),
    );
    let payload = [0x5a; 1000];
    for k in 1..4000u32 {
        let raw = forged_data(
            tag,
            first.wrapping_add(k),
            chunk::FLAG_BEGIN,
            1,
            0,
            &payload,
        );
        p.b.handle_packet(p.now, &raw);
        assert_eq!(p.b.state(), State::Established);
        assert!(
            p.b.receive_buffered() <= window as usize,
            "{} bytes held against a {window}-byte window after {k} fragments",
            p.b.receive_buffered()
        );
    }
    let _ = last_sack_cum(&mut p.b);
    // The hole at the cumulative TSN + 1 is filled: taken, delivered, SACKed.
    p.b.handle_packet(
        p.now,
        &forged_data(
            tag,
            first,
            chunk::FLAG_BEGIN | chunk::FLAG_END,
            0,
            1,
            b"next",
        ),
    );
    // (b's SACKs are not given to a, which never sent these TSNs.)
    let taken = 1
        + (1..4000)
            .take_while(|&k| k * (1000 + 64) <= window as usize)
            .count() as u32;
    assert_eq!(last_sack_cum(&mut p.b), Some(first.wrapping_add(taken - 1)));
    assert_eq!(p.b.state(), State::Established);
    // (The far chunk, whole and first on its stream, was delivered at once.)
    assert_eq!(
        messages(Pair::events(&mut p.b)),
        vec![(1, 53, b"far".to_vec()), (0, 53, b"next".to_vec())]
    );
    // The runs the cumulative TSN passed can never complete: dropped.
    assert!(p.b.receive_buffered() < window as usize / 2);
}

/// Loss recovery with a full window: ordered messages behind a lost one
/// fill b's window (those past it are dropped); the retransmission of the
/// lost one, at the cumulative TSN + 1, is taken and everything held is
/// delivered in order; the dropped ones come again and are delivered too.
#[test]
fn the_hole_at_the_cumulative_tsn_is_filled_when_the_window_is_full() {
    let window = 16 * 1024;
    let mut p = small_window_pair(window);
    let (tag, first) = tag_and_next_tsn(&mut p);
    let n = 40u16;
    let msg = |i: u16| vec![i as u8; 1000];
    for i in 1..n {
        let raw = forged_data(
            tag,
            first.wrapping_add(i as u32),
            chunk::FLAG_BEGIN | chunk::FLAG_END,
            0,
            1 + i,
            &msg(i),
        );
        p.b.handle_packet(p.now, &raw);
        assert!(p.b.receive_buffered() <= window as usize);
    }
    assert!(messages(Pair::events(&mut p.b)).is_empty());
    let flags = chunk::FLAG_BEGIN | chunk::FLAG_END;
    p.b.handle_packet(p.now, &forged_data(tag, first, flags, 0, 1, &msg(0)));
    let held = messages(Pair::events(&mut p.b));
    assert!(held.len() > 1, "the messages held were not delivered");
    assert_eq!(p.b.receive_buffered(), 0);
    // The sender retransmits what it has not seen acknowledged.
    for i in 1..n {
        let raw = forged_data(tag, first.wrapping_add(i as u32), flags, 0, 1 + i, &msg(i));
        p.b.handle_packet(p.now, &raw);
    }
    let mut got = held;
    got.extend(messages(Pair::events(&mut p.b)));
    let want: Vec<_> = (0..n).map(|i| (0, 53, msg(i))).collect();
    assert_eq!(got, want);
    assert_eq!(p.b.receive_buffered(), 0);
    assert_eq!(
        last_sack_cum(&mut p.b),
        Some(first.wrapping_add(n as u32 - 1))
    );
}

/// One op of the `sctp_association` fuzz harness's DATA mode
/// ([`crate::fuzzing::sctp_association_data_ops`]): TSN offset, flags,
/// SSN, size code.
fn data_op() -> impl Strategy<Value = [u8; 5]> {
    (
        prop_oneof![4 => 0u16..64, 4 => 0u16..2048, 1 => any::<u16>()],
        any::<u8>(),
        0u8..4,
        prop_oneof![0u8..4, any::<u8>()],
    )
        .prop_map(|(k, f, ssn, n)| {
            // FORWARD TSN (0x80) one op in eight at most.
            let f = if f & 0x07 == 0 { f } else { f & 0x7f };
            let [hi, lo] = k.to_be_bytes();
            [hi, lo, f, ssn, n]
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any series of DATA chunks (and FORWARD TSNs), at any TSN in reach,
    /// with any flags and sizes: the association holds no more than its
    /// window, except by a chunk at the cumulative TSN + 1 and then within
    /// `receive_limit`, and delivers only messages made of consecutive
    /// fragments (the harness asserts it after every chunk).
    #[test]
    fn data_in_any_order_stays_within_the_window(
        ops in proptest::collection::vec(data_op(), 1..400),
    ) {
        let mut input = vec![crate::fuzzing::SCTP_DATA_OPS];
        input.extend(ops.iter().flatten());
        crate::fuzzing::sctp_association(&input);
    }
}

/// A message held costs more than its bytes (its map entry, its
/// allocation): one-byte ordered messages behind a hole must not let a
/// peer make b keep a million entries inside a 4 MiB window. Each held
/// message or run is charged `HELD_OVERHEAD` bytes of the window.
#[test]
fn tiny_messages_are_charged_their_bookkeeping() {
    let window = 64 * 1024;
    let mut p = small_window_pair(window);
    let (tag, first) = tag_and_next_tsn(&mut p);
    let flags = chunk::FLAG_BEGIN | chunk::FLAG_END;
    let n = 20_000u16;
    for i in 1..n {
        let raw = forged_data(tag, first.wrapping_add(i as u32), flags, 0, 1 + i, b"m");
        p.b.handle_packet(p.now, &raw);
        assert!(p.b.receive_buffered() <= window as usize);
    }
    p.b.handle_packet(p.now, &forged_data(tag, first, flags, 0, 1, b"m"));
    let held = messages(Pair::events(&mut p.b)).len() - 1;
    assert!(
        held <= window as usize / 64,
        "{held} one-byte messages held in a {window}-byte window"
    );
    assert_eq!(p.b.receive_buffered(), 0);
}

/// A FORWARD TSN names streams and SSNs to skip (RFC 3758 §3.6); a stream
/// past the inbound streams negotiated has no state to move, and must not
/// get any: 16,000 of them per chunk would otherwise each add an entry.
#[test]
fn forward_tsn_for_unknown_streams_keeps_no_state() {
    let mut p = connected();
    let (tag, first) = tag_and_next_tsn(&mut p);
    let (_, inbound) = p.b.streams();
    for i in 0..4u32 {
        let streams = (0..16_000u32)
            .map(|s| ((inbound as u32 + i * 16_000 + s) as u16, 0))
            .collect();
        let raw = Packet {
            header: CommonHeader {
                source_port: 5000,
                destination_port: 5000,
                verification_tag: tag,
            },
            chunks: vec![Chunk::ForwardTsn(ForwardTsn {
                new_cum_tsn: first.wrapping_add(i),
                streams,
            })],
        }
        .to_vec();
        p.b.handle_packet(p.now, &raw);
    }
    assert_eq!(p.b.state(), State::Established);
    assert!(
        p.b.inbound_stream_states() <= inbound as usize,
        "{} stream states for {inbound} inbound streams",
        p.b.inbound_stream_states()
    );
}

/// RFC 9260 §6.2: with the window full, a chunk above the highest TSN
/// received is dropped (MUST), even the next in order: it fills no hole,
/// so taking it would let nothing drain. Here one message larger than the
/// window arrives in order; b keeps what fits and SACKs at once the chunk
/// it drops, showing the window closed.
#[test]
fn in_order_data_past_the_window_is_dropped() {
    let window = 16 * 1024;
    let mut p = small_window_pair(window);
    let (tag, first) = tag_and_next_tsn(&mut p);
    let payload = [1u8; 1000];
    let mut took = 0;
    for i in 0..40u32 {
        // The I bit: every chunk is SACKed at once.
        let mut flags = chunk::FLAG_IMMEDIATE;
        if i == 0 {
            flags |= chunk::FLAG_BEGIN;
        }
        let raw = forged_data(tag, first.wrapping_add(i), flags, 0, 1, &payload);
        p.b.handle_packet(p.now, &raw);
        assert!(p.b.receive_buffered() <= window as usize);
        let cum = last_sack_cum(&mut p.b);
        if cum == Some(first.wrapping_add(i)) {
            took += 1;
        } else {
            // Dropped: the SACK goes at once and still shows the last taken.
            assert_eq!(cum, Some(first.wrapping_add(took - 1)));
        }
    }
    // One run: its bytes and 64 for its bookkeeping.
    assert_eq!(took as usize, (window as usize - 64) / 1000);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Loss recovery when the receive window is nearly always full: an
    /// honest sender (ours) with messages of up to 6000 bytes, ordered and
    /// not, on four streams, into an 8 KiB window, losing up to one
    /// packet in four both ways. Every message arrives once, whole, ordered ones in order, and
    /// nothing is left held.
    #[test]
    fn loss_recovery_with_a_small_window(
        msgs in proptest::collection::vec((0u16..4, 1usize..6000, any::<bool>()), 1..30),
        drop_every in prop_oneof![Just(0u64), 4u64..12],
        seed in any::<u64>(),
    ) {
        let window = 8 * 1024;
        // At a quarter lost each way, a retransmission and its SACK both
        // get through with probability 9/16, so ten timeouts in a row
        // (Association.Max.Retrans, RFC 9260 §8.1) end the association
        // now and then: the seed in proptest-regressions lost the SACK six
        // times running, and the association was rightly given up. This
        // test is about recovery, not that limit.
        let mut p = small_window_pair_with(window, 40);
        p.drop_every = drop_every;
        p.lcg = seed;
        let body = |i: usize, len: usize| -> Vec<u8> {
            (0..len).map(|j| (i * 31 + j / 251) as u8).collect()
        };
        for (i, &(stream, len, unordered)) in msgs.iter().enumerate() {
            let opts = SendOptions { unordered, ..SendOptions::default() };
            p.a.send(p.now, stream, 53, &body(i, len), opts).unwrap();
        }
        // Up to a quarter of the packets lost both ways: timeouts back off
        // to the 10 s RTO.max, so give it time.
        p.run(Duration::from_secs(600));
        let got = messages(Pair::events(&mut p.b));
        prop_assert_eq!(got.len(), msgs.len());
        for stream in 0..4u16 {
            let want: Vec<Vec<u8>> = msgs
                .iter()
                .enumerate()
                .filter(|(_, m)| m.0 == stream && !m.2)
                .map(|(i, m)| body(i, m.1))
                .collect();
            let ordered: Vec<Vec<u8>> = got
                .iter()
                .filter(|(s, _, d)| *s == stream && want.contains(d))
                .map(|(_, _, d)| d.clone())
                .collect();
            prop_assert_eq!(ordered, want);
        }
        let mut all: Vec<Vec<u8>> = got.into_iter().map(|(_, _, d)| d).collect();
        let mut sent: Vec<Vec<u8>> = msgs.iter().enumerate().map(|(i, m)| body(i, m.1)).collect();
        all.sort();
        sent.sort();
        prop_assert_eq!(all, sent);
        prop_assert_eq!(p.b.receive_buffered(), 0);
    }
}
