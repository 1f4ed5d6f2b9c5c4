//! Data channels in the simulator: two `datachannel::Connection`s (SCTP plus
//! DCEP) over plain `sim` links, at virtual time with fixed seeds. Every
//! reliability mode under loss, 1,000 channels at once, messages from 0
//! bytes to the maximum size, close from either side, pre-negotiated
//! channels, and a peer whose DCEP OPENs are wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{
    self, ChannelId, ChannelInit, Connection, ConnectionConfig, Event, Message,
};
use rtclab::dtls::endpoint::Role;
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::sctp;
use rtclab::sim::{HostId, LinkConfig, Sim};

#[path = "common/over_dtls.rs"]
mod over_dtls;
use over_dtls::OverDtls;

const A: &str = "192.0.2.1:5000";
const B: &str = "198.51.100.1:5000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// A `Connection` as a simulated host: its SCTP packets are the UDP
/// payloads (DTLS would sit in between in a real peer connection).
struct Peer {
    conn: Connection,
    remote: SocketAddr,
}

impl Machine for Peer {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.conn.handle_packet(now, d.contents);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.conn.poll_transmit().map(|contents| Transmit {
            source: None,
            destination: self.remote,
            contents,
        })
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.conn.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }
}

struct Run {
    sim: Sim,
    a: HostId,
    b: HostId,
    ea: Vec<Event>,
    eb: Vec<Event>,
    /// SCTP runs over our DTLS (RFC 8261) instead of plain datagrams.
    dtls: bool,
}

fn config(role: Role, streams: u16) -> ConnectionConfig {
    let mut c = ConnectionConfig::new(role);
    c.sctp.streams = streams;
    c
}

impl Run {
    /// A (DTLS client) and B (DTLS server); `link` on A's access link.
    fn new(seed: u64, link: LinkConfig) -> Run {
        Run::with(
            seed,
            link,
            config(Role::Client, 1024),
            config(Role::Server, 1024),
        )
    }

    fn with(seed: u64, link: LinkConfig, ca: ConnectionConfig, cb: ConnectionConfig) -> Run {
        Run::build(seed, link, ca, cb, false)
    }

    fn build_with_dtls(
        dtls: bool,
        seed: u64,
        link: LinkConfig,
        ca: ConnectionConfig,
        cb: ConnectionConfig,
    ) -> Run {
        Run::build(seed, link, ca, cb, dtls)
    }

    /// Two peers; with `dtls`, SCTP runs over our DTLS endpoints (A is the
    /// DTLS client) instead of straight in UDP.
    fn build(
        seed: u64,
        link: LinkConfig,
        ca: ConnectionConfig,
        cb: ConnectionConfig,
        dtls: bool,
    ) -> Run {
        let mut sim = Sim::new(seed);
        let a = Peer {
            conn: Connection::new(ca, StdRng::seed_from_u64(seed)),
            remote: addr(B),
        };
        let b = Peer {
            conn: Connection::new(cb, StdRng::seed_from_u64(seed + 1)),
            remote: addr(A),
        };
        let (a, b) = if dtls {
            let now = sim.now();
            let a = OverDtls::client(a, addr(A), addr(B), seed + 10, now);
            let b = OverDtls::server(b, addr(B), addr(A), seed + 11);
            (sim.add_host(a, &[addr(A)]), sim.add_host(b, &[addr(B)]))
        } else {
            (sim.add_host(a, &[addr(A)]), sim.add_host(b, &[addr(B)]))
        };
        sim.set_link(a, link);
        Run {
            sim,
            a,
            b,
            ea: Vec::new(),
            eb: Vec::new(),
            dtls,
        }
    }

    fn start(&mut self) {
        let now = self.sim.now();
        self.pa().conn.start(now);
        self.pb().conn.start(now);
    }

    fn peer(&mut self, h: HostId) -> &mut Peer {
        if self.dtls {
            &mut self.sim.machine_mut::<OverDtls<Peer>>(h).inner
        } else {
            self.sim.machine_mut::<Peer>(h)
        }
    }

    fn pa(&mut self) -> &mut Peer {
        self.peer(self.a)
    }

    fn pb(&mut self) -> &mut Peer {
        self.peer(self.b)
    }

    /// Runs until `done(events of A, events of B)` or `limit`.
    fn run(&mut self, limit: Duration, mut done: impl FnMut(&[Event], &[Event]) -> bool) -> bool {
        let (a, b) = (self.a, self.b);
        let (mut ea, mut eb) = (std::mem::take(&mut self.ea), std::mem::take(&mut self.eb));
        let dtls = self.dtls;
        let ok = self.sim.run_for_with(limit, |sim| {
            if dtls {
                ea.extend(sim.events::<OverDtls<Peer>>(a));
                eb.extend(sim.events::<OverDtls<Peer>>(b));
            } else {
                ea.extend(sim.events::<Peer>(a));
                eb.extend(sim.events::<Peer>(b));
            }
            done(&ea, &eb)
        });
        self.ea = ea;
        self.eb = eb;
        ok
    }

    fn send(&mut self, on_a: bool, id: ChannelId, m: &Message) -> Result<(), datachannel::Error> {
        let now = self.sim.now();
        let p = if on_a { self.pa() } else { self.pb() };
        match m {
            Message::Text(s) => p.conn.send_text(now, id, s),
            Message::Binary(b) => p.conn.send_binary(now, id, b),
        }
    }
}

fn opened(events: &[Event]) -> Vec<ChannelId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Open(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn received(events: &[Event], channel: ChannelId) -> Vec<Message> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                channel: c,
                message,
            } if *c == channel => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn closed(events: &[Event], channel: ChannelId) -> bool {
    events.contains(&Event::Closed(channel))
}

/// The channel B sees for A's channel on the same stream.
fn peer_channel(run: &mut Run, a_id: ChannelId) -> ChannelId {
    let stream = run.pa().conn.channel(a_id).and_then(|c| c.stream());
    let b = run.pb();
    b.conn
        .channels()
        .find(|c| c.stream() == stream)
        .map(|c| c.id())
        .expect("B has the channel")
}

/// A numbered 1,000-byte message: the number, then filler derived from it.
fn numbered(n: u32) -> Vec<u8> {
    let mut v = n.to_be_bytes().to_vec();
    v.extend((0..996u32).map(|i| (i.wrapping_mul(31) ^ n) as u8));
    v
}

fn number_of(m: &Message) -> u32 {
    let Message::Binary(b) = m else {
        panic!("binary expected")
    };
    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    assert_eq!(*b, numbered(n), "message {n} arrived corrupted");
    n
}

fn lossy() -> LinkConfig {
    LinkConfig {
        loss: 0.10,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        ..LinkConfig::default()
    }
}

fn every_reliability_mode_under_loss_on(dtls: bool) {
    let mut run = Run::build(
        1,
        lossy(),
        config(Role::Client, 1024),
        config(Role::Server, 1024),
        dtls,
    );
    let kinds = [
        ChannelInit::new("reliable-ordered"),
        ChannelInit {
            ordered: false,
            ..ChannelInit::new("reliable-unordered")
        },
        ChannelInit {
            ordered: false,
            max_retransmits: Some(0),
            ..ChannelInit::new("rexmit-0")
        },
        ChannelInit {
            max_packet_life_time: Some(100),
            ..ChannelInit::new("lifetime-100ms")
        },
    ];
    let ids: Vec<ChannelId> = kinds
        .into_iter()
        .map(|k| run.pa().conn.create_channel(k).expect("create"))
        .collect();
    run.start();
    assert!(
        run.run(Duration::from_secs(10), |ea, eb| opened(ea).len() == 4
            && opened(eb).len() == 4)
    );
    let peers: Vec<ChannelId> = ids.iter().map(|&id| peer_channel(&mut run, id)).collect();
    let labels: Vec<String> = peers
        .iter()
        .map(|&id| run.pb().conn.channel(id).unwrap().label().to_owned())
        .collect();
    assert_eq!(
        labels,
        [
            "reliable-ordered",
            "reliable-unordered",
            "rexmit-0",
            "lifetime-100ms"
        ]
    );
    const N: u32 = 200;
    // 2 messages every 100 ms on each channel (80 kB/s in all): a paced
    // stream that the congestion window can carry under 10% loss, so that
    // the lifetime is spent on losses, not waiting in the send queue.
    for burst in 0..N / 2 {
        for n in burst * 2..(burst + 1) * 2 {
            for &id in &ids {
                run.send(true, id, &Message::Binary(numbered(n)))
                    .expect("send");
            }
        }
        run.run(Duration::from_millis(100), |_, _| false);
    }
    let (r0, r1) = (peers[0], peers[1]);
    assert!(
        run.run(Duration::from_secs(60), |_, eb| received(eb, r0).len()
            == N as usize
            && received(eb, r1).len() == N as usize),
        "reliable channels incomplete: {} and {} of {N}",
        received(&run.eb, r0).len(),
        received(&run.eb, r1).len()
    );
    run.run(Duration::from_secs(5), |_, _| false);
    let got: Vec<Vec<u32>> = peers
        .iter()
        .map(|&id| received(&run.eb, id).iter().map(number_of).collect())
        .collect();
    assert_eq!(got[0], (0..N).collect::<Vec<_>>(), "ordered and complete");
    let mut unordered = got[1].clone();
    assert_ne!(
        unordered, got[0],
        "unordered delivery kept the order under 10% loss"
    );
    unordered.sort();
    assert_eq!(unordered, (0..N).collect::<Vec<_>>(), "complete");
    for (name, got) in [("rexmit-0", &got[2]), ("lifetime", &got[3])] {
        let set: BTreeSet<u32> = got.iter().copied().collect();
        assert_eq!(set.len(), got.len(), "{name}: duplicates delivered");
        // Measured (seed 1): rexmit-0 180 of 200, lifetime 79 of 200 (its
        // messages also expire waiting for the congestion window while the
        // reliable channels' losses are repaired).
        assert!(
            got.len() < N as usize && got.len() > N as usize / 10,
            "{name}: {} of {N} delivered",
            got.len()
        );
        eprintln!("{name}: {} of {N} delivered under 10% loss", got.len());
    }
    // The lifetime channel is ordered: what arrives, arrives in order.
    assert!(
        got[3].windows(2).all(|w| w[0] < w[1]),
        "lifetime channel out of order"
    );
    assert!(
        run.ea.iter().all(|e| !matches!(e, Event::Error { .. })),
        "{:?}",
        run.ea
    );
}

#[test]
fn every_reliability_mode_under_loss() {
    every_reliability_mode_under_loss_on(false);
}

/// The same with SCTP over our DTLS (RFC 8261).
#[test]
fn every_reliability_mode_under_loss_over_dtls() {
    every_reliability_mode_under_loss_on(true);
}

fn a_thousand_channels_at_once_on(dtls: bool) {
    let mut run = Run::build_with_dtls(
        dtls,
        2,
        LinkConfig::default(),
        config(Role::Client, 2048),
        config(Role::Server, 2048),
    );
    run.start();
    run.run(Duration::from_secs(1), |_, _| false);
    let ids: Vec<ChannelId> = (0..1000)
        .map(|i| {
            run.pa()
                .conn
                .create_channel(ChannelInit::new(&format!("ch{i}")))
                .expect("create")
        })
        .collect();
    for (i, &id) in ids.iter().enumerate() {
        run.send(true, id, &Message::Text(format!("hello {i}")))
            .expect("send");
    }
    assert!(run.run(Duration::from_secs(30), |ea, eb| {
        opened(ea).len() == 1000
            && opened(eb).len() == 1000
            && eb
                .iter()
                .filter(|e| matches!(e, Event::Message { .. }))
                .count()
                == 1000
    }));
    // B answers on each channel.
    let bids = opened(&run.eb);
    for &id in &bids {
        let label = run.pb().conn.channel(id).unwrap().label().to_owned();
        run.send(false, id, &Message::Text(format!("re: {label}")))
            .expect("reply");
    }
    assert!(run.run(Duration::from_secs(30), |ea, _| {
        ea.iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count()
            == 1000
    }));
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(received(&run.ea, id), [Message::Text(format!("re: ch{i}"))]);
    }
    // All closed at once from A.
    let now = run.sim.now();
    for &id in &ids {
        run.pa().conn.close(now, id);
    }
    assert!(run.run(
        Duration::from_secs(30),
        |ea, eb| ids.iter().all(|&id| closed(ea, id)) && bids.iter().all(|&id| closed(eb, id))
    ));
    assert_eq!(run.pa().conn.channels().count(), 0);
    assert_eq!(run.pb().conn.channels().count(), 0);
}

#[test]
fn a_thousand_channels_at_once() {
    a_thousand_channels_at_once_on(false);
}

/// The same with SCTP over our DTLS (RFC 8261).
#[test]
fn a_thousand_channels_at_once_over_dtls() {
    a_thousand_channels_at_once_on(true);
}

fn messages_from_zero_bytes_to_the_maximum_size_on(dtls: bool) {
    let link = LinkConfig {
        loss: 0.01,
        ..LinkConfig::default()
    };
    let mut run = Run::build(
        3,
        link,
        config(Role::Client, 1024),
        config(Role::Server, 1024),
        dtls,
    );
    let id = run
        .pa()
        .conn
        .create_channel(ChannelInit::new("sizes"))
        .expect("create");
    run.start();
    assert!(run.run(Duration::from_secs(5), |_, eb| !opened(eb).is_empty()));
    let max = run.pa().conn.max_message_size();
    assert_eq!(max, 256 * 1024);
    let sizes = [
        0,
        1,
        2,
        1000,
        1187,
        1188,
        1189,
        4096,
        65535,
        65536,
        100_000,
        max - 1,
        max,
    ];
    let mut sent = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let m = if i % 2 == 0 {
            Message::Binary((0..size).map(|j| (j * 7 + i) as u8).collect())
        } else {
            Message::Text("é".repeat(size / 2) + &"a".repeat(size % 2))
        };
        assert_eq!(m.len(), size);
        run.send(true, id, &m).expect("send");
        sent.push(m);
        // Both kinds at the empty size.
        if size == 0 {
            let t = Message::Text(String::new());
            run.send(true, id, &t).expect("send");
            sent.push(t);
        }
    }
    let too_big = run.send(true, id, &Message::Binary(vec![0; max + 1]));
    assert_eq!(
        too_big,
        Err(datachannel::Error::MessageTooLarge { size: max + 1, max })
    );
    let b = opened(&run.eb)[0];
    let n = sent.len();
    assert!(run.run(Duration::from_secs(30), |_, eb| received(eb, b).len() == n));
    assert_eq!(received(&run.eb, b), sent);
    // bufferedAmount went back to 0, and said so.
    run.run(Duration::from_secs(2), |_, _| false);
    assert_eq!(run.pa().conn.buffered_amount(id), 0);
    assert!(run.ea.contains(&Event::BufferedAmountLow(id)));
}

#[test]
fn messages_from_zero_bytes_to_the_maximum_size() {
    messages_from_zero_bytes_to_the_maximum_size_on(false);
}

/// The same with SCTP over our DTLS (RFC 8261).
#[test]
fn messages_from_zero_bytes_to_the_maximum_size_over_dtls() {
    messages_from_zero_bytes_to_the_maximum_size_on(true);
}

fn close_from_either_side_on(dtls: bool) {
    let mut run = Run::build(
        4,
        LinkConfig::default(),
        config(Role::Client, 1024),
        config(Role::Server, 1024),
        dtls,
    );
    let x = run.pa().conn.create_channel(ChannelInit::new("x")).unwrap();
    run.start();
    assert!(run.run(Duration::from_secs(5), |_, eb| opened(eb).len() == 1));
    let y = run.pb().conn.create_channel(ChannelInit::new("y")).unwrap();
    assert!(run.run(Duration::from_secs(5), |ea, _| opened(ea).len() == 2));
    let (xb, ya) = (peer_channel(&mut run, x), opened(&run.ea)[1]);
    assert_eq!(run.pb().conn.channel(y).unwrap().stream(), Some(1));
    let now = run.sim.now();
    run.send(true, x, &Message::Text("bye from A".into()))
        .unwrap();
    run.pa().conn.close(now, x);
    run.send(false, y, &Message::Text("bye from B".into()))
        .unwrap();
    run.pb().conn.close(now, y);
    assert!(run.run(Duration::from_secs(5), |ea, eb| closed(ea, x)
        && closed(ea, ya)
        && closed(eb, xb)
        && closed(eb, y)));
    // The closer's last message got through before the reset; the other side
    // saw the channel closing.
    assert_eq!(received(&run.eb, xb), [Message::Text("bye from A".into())]);
    assert_eq!(received(&run.ea, ya), [Message::Text("bye from B".into())]);
    assert!(run.eb.contains(&Event::Closing(xb)));
    assert!(run.ea.contains(&Event::Closing(ya)));
    // Stream ids come back: new channels on 0 and 1, and they work.
    let x2 = run
        .pa()
        .conn
        .create_channel(ChannelInit::new("x2"))
        .unwrap();
    assert_eq!(run.pa().conn.channel(x2).unwrap().stream(), Some(0));
    run.send(true, x2, &Message::Binary(vec![1, 2, 3])).unwrap();
    assert!(run.run(Duration::from_secs(5), |_, eb| opened(eb).len() == 3));
    let x2b = peer_channel(&mut run, x2);
    assert!(run.run(Duration::from_secs(5), |_, eb| {
        !received(eb, x2b).is_empty()
    }));
    assert_eq!(received(&run.eb, x2b), [Message::Binary(vec![1, 2, 3])]);
}

#[test]
fn close_from_either_side() {
    close_from_either_side_on(false);
}

/// The same with SCTP over our DTLS (RFC 8261).
#[test]
fn close_from_either_side_over_dtls() {
    close_from_either_side_on(true);
}

#[test]
fn pre_negotiated_channels() {
    let mut run = Run::new(5, LinkConfig::default());
    let init = ChannelInit {
        negotiated: Some(3),
        ordered: false,
        max_retransmits: Some(2),
        ..ChannelInit::new("pre")
    };
    let a = run.pa().conn.create_channel(init.clone()).unwrap();
    let b = run.pb().conn.create_channel(init).unwrap();
    run.start();
    assert!(run.run(Duration::from_secs(5), |ea, eb| opened(ea) == [a]
        && opened(eb) == [b]));
    run.send(true, a, &Message::Text("from A".into())).unwrap();
    run.send(false, b, &Message::Text("from B".into())).unwrap();
    assert!(
        run.run(Duration::from_secs(5), |ea, eb| !received(ea, a).is_empty()
            && !received(eb, b).is_empty())
    );
    assert_eq!(received(&run.eb, b), [Message::Text("from A".into())]);
    assert_eq!(received(&run.ea, a), [Message::Text("from B".into())]);
    // No DCEP went over the wire: B never saw an incoming channel.
    assert!(!run.pb().conn.channel(b).unwrap().is_incoming());
}

/// An SCTP peer that is not a data-channel implementation: its OPENs are
/// malformed, on the wrong parity, or fine; ours must refuse the bad ones
/// with an error event and a stream reset, never panic, and open the good one.
#[test]
fn bad_dcep_open_is_an_error_not_a_panic() {
    let mut sim = Sim::new(6);
    let conn = Connection::new(config(Role::Client, 1024), StdRng::seed_from_u64(6));
    let a = sim.add_host(
        Peer {
            conn,
            remote: addr(B),
        },
        &[addr(A)],
    );
    let raw = rtclab::sim::sctp::SimHost::new(
        sctp::Association::new(sctp::Config::default(), StdRng::seed_from_u64(7)),
        addr(A),
    );
    let b = sim.add_host(raw, &[addr(B)]);
    let now = sim.now();
    sim.machine_mut::<Peer>(a).conn.start(now);
    let connected = sim.run_for_with(Duration::from_secs(5), |sim| {
        sim.events::<rtclab::sim::sctp::SimHost>(b)
            .contains(&sctp::Event::Connected)
    });
    assert!(connected);
    let open = |label: &[u8]| {
        let mut v = vec![3, 0, 1, 0, 0, 0, 0, 0, 0, label.len() as u8, 0, 0];
        v.extend_from_slice(label);
        v
    };
    let now = sim.now();
    let opts = sctp::SendOptions::default();
    let raw = &mut sim.machine_mut::<rtclab::sim::sctp::SimHost>(b).association;
    // Stream 1: the label length says 200 bytes, 2 follow.
    let mut bad_len = open(b"ab");
    bad_len[9] = 200;
    raw.send(now, 1, 50, &bad_len, opts).unwrap();
    // Stream 2: even, but B is the DTLS server (odd ids).
    raw.send(now, 2, 50, &open(b"even"), opts).unwrap();
    // Stream 3: a label that is not UTF-8.
    raw.send(now, 3, 50, &open(&[0xff, 0xfe]), opts).unwrap();
    // Stream 5: an unknown channel type.
    let mut bad_type = open(b"t");
    bad_type[1] = 0x7f;
    raw.send(now, 5, 50, &bad_type, opts).unwrap();
    // Stream 7: a good one, then a message.
    raw.send(now, 7, 50, &open(b"good"), opts).unwrap();
    raw.send(now, 7, 51, b"hello", opts).unwrap();
    let mut ea = Vec::new();
    let mut eb = Vec::new();
    sim.run_for_with(Duration::from_secs(5), |sim| {
        ea.extend(sim.events::<Peer>(a));
        eb.extend(sim.events::<rtclab::sim::sctp::SimHost>(b));
        false
    });
    let errors: Vec<datachannel::Error> = ea
        .iter()
        .filter_map(|e| match e {
            Event::Error { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 4, "{ea:?}");
    assert!(matches!(errors[0], datachannel::Error::BadLength { .. }));
    assert_eq!(
        errors[1],
        datachannel::Error::WrongStreamParity { stream: 2 }
    );
    assert_eq!(
        errors[2],
        datachannel::Error::InvalidUtf8 { field: "label" }
    );
    assert_eq!(errors[3], datachannel::Error::UnknownChannelType(0x7f));
    // The good channel opened and its message arrived.
    let good = opened(&ea);
    assert_eq!(good.len(), 1);
    assert_eq!(received(&ea, good[0]), [Message::Text("hello".into())]);
    // The raw peer saw its bad streams reset, and one ACK on stream 7.
    let reset: BTreeSet<u16> = eb
        .iter()
        .filter_map(|e| match e {
            sctp::Event::StreamsReset { streams } => Some(streams.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(reset, BTreeSet::from([1, 2, 3, 5]));
    let acks: BTreeMap<u16, Vec<u8>> = eb
        .iter()
        .filter_map(|e| match e {
            sctp::Event::Message {
                stream,
                ppid: 50,
                data,
            } => Some((*stream, data.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(acks, BTreeMap::from([(7, vec![2])]));
}

/// Four streams as in example 06 (reliable ordered, reliable unordered,
/// reliable unordered, lifetime 1.5 s unordered), 100 messages of 500 bytes
/// each every 20 ms, 10% loss on A's link both ways, in 20 simulations
/// (seeds 0–19). The reliable streams always get all 100; the lifetime
/// stream gets all 100 without loss. Under this loss a message outlives its
/// 1.5 s only when the association stalls, and each fix here removed a
/// cause of stalls (lifetime messages delivered, 20 seeds):
///
/// - RACK for retransmissions (RFC 8985 §6.2): a lost fast retransmission
///   is resent after one round trip, not after T3 and its back-off.
/// - The I bit on the last chunk before the sender goes quiet (RFC 9260
///   §3.3.1) and `rto_min` 100 ms. Seeds reaching 90: 11 → 15.
/// - The I bit also when the window is full (a window that ends on an odd
///   packet is SACKed at once, not after 200 ms), and RTT samples only
///   from the chunk the peer SACKs at once: a first sample inflated by a
///   lost SACK and a delayed one had held the RTO near 700 ms for the
///   first second (seed 1). 15 → 17.
///
/// What is left is the back-off itself: a T3 retransmission and its SACK
/// each cross the 10% link, and when several in a row fail (seed 17: five)
/// the doubling RTO (§6.3.3 E2) reaches seconds, which no message with a
/// 1.5 s lifetime survives. That is RFC 9260 congestion control working as
/// specified, so the test asks for most seeds, not all.
/// (`round_robin_lets_a_small_message_past_a_bulk_backlog` in
/// tests/sctp_sim.rs checks the scheduler.)
#[test]
fn sctp_lifetime_stream_under_loss() {
    let got: Vec<usize> = (0..20).map(lifetime_messages_delivered).collect();
    eprintln!("lifetime messages delivered, seeds 0-19: {got:?}");
    let full = got.iter().filter(|&&n| n >= 90).count();
    assert!(
        full >= 16,
        "only {full} of 20 seeds delivered 90 of 100: {got:?}"
    );
}

/// One run of `sctp_lifetime_stream_under_loss`: how many of the lifetime
/// stream's 100 messages arrive (the reliable streams must get all 100).
fn lifetime_messages_delivered(seed: u64) -> usize {
    use rtclab::sim::sctp::SimHost;
    use sctp::{Association, Reliability, SendOptions};
    let mut sim = Sim::new(seed);
    let a = sim.add_host(
        SimHost::new(
            Association::new(sctp::Config::default(), StdRng::seed_from_u64(3)),
            addr(B),
        ),
        &[addr(A)],
    );
    let b = sim.add_host(
        SimHost::new(
            Association::new(sctp::Config::default(), StdRng::seed_from_u64(4)),
            addr(A),
        ),
        &[addr(B)],
    );
    sim.set_link(
        a,
        LinkConfig {
            loss: 0.10,
            ..LinkConfig::default()
        },
    );
    let now = sim.now();
    sim.machine_mut::<SimHost>(a).association.connect(now);
    sim.run_for(Duration::from_secs(2));
    let reliable_unordered = SendOptions {
        unordered: true,
        reliability: Reliability::Reliable,
    };
    let opts = [
        SendOptions::default(),
        reliable_unordered,
        reliable_unordered,
        SendOptions {
            unordered: true,
            reliability: Reliability::Lifetime(Duration::from_millis(1500)),
        },
    ];
    let mut got = [0usize; 8];
    let mut count = |sim: &mut Sim| {
        for e in sim.events::<SimHost>(b) {
            if let sctp::Event::Message { stream, .. } = e {
                got[usize::from(stream)] += 1;
            }
        }
        false
    };
    for n in 0..100u32 {
        let now = sim.now();
        let mut p = n.to_be_bytes().to_vec();
        p.resize(500, 1);
        for (i, o) in opts.iter().enumerate() {
            sim.machine_mut::<SimHost>(a)
                .association
                .send(now, (i * 2) as u16, 53, &p, *o)
                .expect("send");
        }
        sim.run_for_with(Duration::from_millis(20), &mut count);
    }
    sim.run_for_with(Duration::from_secs(10), &mut count);
    assert_eq!(&got[..6], [100, 0, 100, 0, 100, 0], "seed {seed}");
    got[6]
}
