//! The network simulator, driven by small dummy machines: timing, links,
//! determinism, NATs (RFC 4787) and a retransmitting protocol under loss.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::sim::{
    CaptureKind, CaptureRecord, DropReason, Echo, FilteringBehavior, LinkConfig, MappingBehavior,
    NatConfig, Sim,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("test address")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test ip")
}

const MS: Duration = Duration::from_millis(1);

// ----- dummy machines ---------------------------------------------------------

/// A datagram a [`Recorder`] received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    at: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

/// Records what arrives; sends what the test tells it to.
#[derive(Default)]
struct Recorder {
    out: VecDeque<Transmit>,
    got: Vec<Got>,
}

impl Recorder {
    fn send(&mut self, source: Option<SocketAddr>, destination: SocketAddr, contents: &[u8]) {
        self.out.push_back(Transmit {
            source,
            destination,
            contents: contents.to_vec(),
        });
    }
}

impl Machine for Recorder {
    type Event = Got;
    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.got.push(Got {
            at: now,
            source: d.source,
            destination: d.destination,
            contents: d.contents.to_vec(),
        });
    }
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<Got> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

/// Arms timers at fixed instants and records when each fired.
struct Timers {
    pending: Vec<Instant>,
    fired: Vec<Instant>,
}

impl Machine for Timers {
    type Event = ();
    fn handle_receive(&mut self, _now: Instant, _d: Receive<'_>) {}
    fn handle_timeout(&mut self, now: Instant) {
        self.pending.retain(|t| *t > now);
        self.fired.push(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.pending.iter().min().copied()
    }
}

/// Sends `count` datagrams of `size` bytes to `target`, one every `interval`
/// (all at once if zero); each carries its sequence number in its first 4
/// bytes.
struct Blaster {
    target: SocketAddr,
    size: usize,
    count: u32,
    interval: Duration,
    next_seq: u32,
    next_at: Option<Instant>,
    out: VecDeque<Transmit>,
}

impl Blaster {
    fn new(
        start: Instant,
        target: SocketAddr,
        size: usize,
        count: u32,
        interval: Duration,
    ) -> Self {
        Blaster {
            target,
            size,
            count,
            interval,
            next_seq: 0,
            next_at: Some(start),
            out: VecDeque::new(),
        }
    }
}

impl Machine for Blaster {
    type Event = ();
    fn handle_receive(&mut self, _now: Instant, _d: Receive<'_>) {}
    fn handle_timeout(&mut self, now: Instant) {
        while let Some(at) = self.next_at {
            if at > now {
                break;
            }
            let mut contents = vec![0u8; self.size.max(4)];
            contents[..4].copy_from_slice(&self.next_seq.to_be_bytes());
            self.out.push_back(Transmit {
                source: None,
                destination: self.target,
                contents,
            });
            self.next_seq += 1;
            self.next_at = (self.next_seq < self.count).then_some(at + self.interval);
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.next_at
    }
}

fn seq_of(contents: &[u8]) -> u32 {
    u32::from_be_bytes([contents[0], contents[1], contents[2], contents[3]])
}

/// A stop-and-wait protocol: sends `count` numbered pings to an [`Echo`],
/// one at a time, retransmitting after an RTO that doubles up to 1 s.
struct Pinger {
    target: SocketAddr,
    count: u32,
    acked: u32,
    rto: Duration,
    deadline: Option<Instant>,
    transmissions: u32,
    out: VecDeque<Transmit>,
    events: VecDeque<PingEvent>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PingEvent {
    Done { at: Instant, transmissions: u32 },
}

const RTO: Duration = Duration::from_millis(100);

impl Pinger {
    fn new(target: SocketAddr, count: u32) -> Self {
        Pinger {
            target,
            count,
            acked: 0,
            rto: RTO,
            deadline: None,
            transmissions: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    fn start(&mut self, now: Instant) {
        self.transmit(now);
    }

    fn transmit(&mut self, now: Instant) {
        self.out.push_back(Transmit {
            source: None,
            destination: self.target,
            contents: self.acked.to_be_bytes().to_vec(),
        });
        self.transmissions += 1;
        self.deadline = Some(now + self.rto);
    }
}

impl Machine for Pinger {
    type Event = PingEvent;
    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        if d.contents.len() != 4 || seq_of(d.contents) != self.acked || self.acked == self.count {
            return; // a late duplicate
        }
        self.acked += 1;
        self.rto = RTO;
        if self.acked == self.count {
            self.deadline = None;
            self.events.push_back(PingEvent::Done {
                at: now,
                transmissions: self.transmissions,
            });
        } else {
            self.transmit(now);
        }
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.rto = (self.rto * 2).min(Duration::from_secs(1));
            self.transmit(now);
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<PingEvent> {
        self.events.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }
}

/// Breaks the contract: always wants a timeout at the start of time.
struct Spinner {
    at: Instant,
}

impl Machine for Spinner {
    type Event = ();
    fn handle_receive(&mut self, _now: Instant, _d: Receive<'_>) {}
    fn handle_timeout(&mut self, _now: Instant) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        None
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.at)
    }
}

// ----- clock and run loop -----------------------------------------------------

#[test]
fn timers_fire_at_their_virtual_time() {
    let mut sim = Sim::new(1);
    let t0 = sim.now();
    let at = [t0 + 10 * MS, t0 + 250 * MS, t0 + Duration::from_secs(60)];
    let h = sim.add_host(
        Timers {
            pending: at.to_vec(),
            fired: Vec::new(),
        },
        &[addr("192.0.2.1:1")],
    );
    sim.run_for(Duration::from_secs(120));
    assert_eq!(sim.machine::<Timers>(h).fired, at);
    assert_eq!(sim.now(), t0 + Duration::from_secs(120));
    assert_eq!(sim.steps(), 3, "one step per timer, nothing else");
    assert!(!sim.step(), "nothing scheduled any more");
    assert_eq!(sim.now(), t0 + Duration::from_secs(120));
}

#[test]
fn step_returns_false_on_an_empty_network() {
    let mut sim = Sim::new(1);
    assert!(!sim.step());
    sim.add_host(Echo::default(), &[addr("192.0.2.1:1")]);
    assert!(!sim.step());
}

#[test]
fn run_until_with_stops_when_the_predicate_holds() {
    let mut sim = Sim::new(1);
    let t0 = sim.now();
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let c = sim.add_host(Pinger::new(server, 3), &[addr("192.0.2.2:5000")]);
    sim.machine_mut::<Pinger>(c).start(t0);
    let done = sim.run_for_with(Duration::from_secs(10), |s| {
        s.machine::<Pinger>(c).acked == 3
    });
    assert!(done);
    // Three round trips of 20 ms.
    assert_eq!(sim.now(), t0 + 60 * MS);
    assert_eq!(
        sim.events::<Pinger>(c),
        vec![PingEvent::Done {
            at: t0 + 60 * MS,
            transmissions: 3
        }]
    );

    // A predicate that never holds: false, clock at the deadline.
    let deadline = sim.now() + Duration::from_secs(5);
    assert!(!sim.run_until_with(deadline, |_| false));
    assert_eq!(sim.now(), deadline);
}

#[test]
fn zero_delay_links_still_advance_time() {
    let mut sim = Sim::new(1);
    sim.set_default_link(LinkConfig::ideal());
    let t0 = sim.now();
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let c = sim.add_host(Echo::default(), &[addr("192.0.2.2:7")]);
    sim.machine_mut::<Echo>(c).send(Transmit {
        source: None,
        destination: server,
        contents: b"ping".to_vec(),
    });
    // Echoes ping-pong forever at zero delay: each step is 1 us.
    sim.run_for(Duration::from_millis(1));
    assert_eq!(sim.now(), t0 + MS);
    assert_eq!(
        sim.stats().delivered,
        1001,
        "one per microsecond, both ends"
    );
}

#[test]
#[should_panic(expected = "must fire every due timer")]
fn a_machine_that_never_clears_its_timer_is_caught() {
    let mut sim = Sim::new(1);
    let at = sim.now();
    sim.add_host(Spinner { at }, &[addr("192.0.2.1:1")]);
    sim.set_spin_limit(100);
    sim.run_for(Duration::from_secs(1));
}

#[test]
fn typed_access_checks_the_type() {
    let mut sim = Sim::new(1);
    let h = sim.add_host(Echo::default(), &[addr("192.0.2.1:1")]);
    assert!(sim.try_machine::<Echo>(h).is_some());
    assert!(sim.try_machine::<Recorder>(h).is_none());
    assert!(sim.try_machine_mut::<Recorder>(h).is_none());
    let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sim.machine::<Recorder>(h);
    }))
    .expect_err("wrong type must panic");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("Echo") && msg.contains("Recorder"), "{msg}");
}

#[test]
fn invalid_source_and_unroutable_are_dropped_and_counted() {
    let mut sim = Sim::new(1);
    let server = addr("192.0.2.1:7");
    let s = sim.add_host(Recorder::default(), &[server]);
    let c = sim.add_host(Recorder::default(), &[addr("192.0.2.2:5000")]);
    sim.set_capture(true);
    let m = sim.machine_mut::<Recorder>(c);
    m.send(Some(addr("192.0.2.99:1")), server, b"spoofed");
    m.send(None, addr("198.51.100.9:9"), b"nowhere");
    m.send(None, addr("192.0.2.1:8"), b"closed port");
    m.send(None, server, b"fine");
    m.send(Some(addr("0.0.0.0:5000")), server, b"wildcard");
    sim.run_for(Duration::from_secs(1));
    let got = &sim.machine::<Recorder>(s).got;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].source, addr("192.0.2.2:5000"));
    let st = sim.host_stats(c);
    assert_eq!((st.sent, st.unroutable), (5, 3));
    let drops: Vec<DropReason> = sim
        .drain_capture()
        .iter()
        .filter_map(|r| match r.kind {
            CaptureKind::Dropped(reason) => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(
        drops,
        [
            DropReason::InvalidSource,
            DropReason::Unroutable,
            DropReason::Unroutable
        ]
    );
}

#[test]
fn multi_address_host_receives_on_each_address() {
    // An RFC 5780 server: two IPs, two ports each.
    let mut sim = Sim::new(1);
    let server_addrs = [
        addr("192.0.2.1:3478"),
        addr("192.0.2.1:3479"),
        addr("192.0.2.2:3478"),
        addr("192.0.2.2:3479"),
    ];
    sim.add_host(Echo::default(), &server_addrs);
    let c = sim.add_host(Recorder::default(), &[addr("198.51.100.5:6000")]);
    for a in server_addrs {
        sim.machine_mut::<Recorder>(c).send(None, a, b"x");
    }
    sim.run_for(Duration::from_secs(1));
    let sources: Vec<SocketAddr> = sim
        .machine::<Recorder>(c)
        .got
        .iter()
        .map(|g| g.source)
        .collect();
    assert_eq!(sources, server_addrs);
}

// ----- determinism ------------------------------------------------------------

fn lossy_run(seed: u64) -> Vec<CaptureRecord> {
    let mut sim = Sim::new(seed);
    sim.set_default_link(LinkConfig {
        jitter: 3 * MS,
        loss: 0.2,
        duplicate: 0.05,
        reorder: 0.05,
        ..LinkConfig::default()
    });
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let nat = sim.add_nat(NatConfig::symmetric(ip("203.0.113.1")));
    let c = sim.add_host_behind(nat, Pinger::new(server, 50), &[addr("10.0.0.2:5000")]);
    let now = sim.now();
    sim.machine_mut::<Pinger>(c).start(now);
    sim.set_capture(true);
    let done = sim.run_for_with(Duration::from_secs(600), |s| {
        s.machine::<Pinger>(c).acked == 50
    });
    assert!(done);
    // Express times relative to the start so runs compare.
    sim.drain_capture()
}

#[test]
fn same_seed_same_run_different_seed_different_run() {
    let a = lossy_run(7);
    let b = lossy_run(7);
    let c = lossy_run(8);
    assert!(a.len() > 100);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

// ----- link statistics --------------------------------------------------------

/// Sends `n` datagrams 1 ms apart through `link` (uplink of the sender) and
/// returns the receiver's arrivals and the sender's stats.
fn blast(seed: u64, link: LinkConfig, n: u32, size: usize, interval: Duration) -> (Vec<Got>, Sim) {
    let mut sim = Sim::new(seed);
    let rx = addr("192.0.2.1:9");
    let r = sim.add_host(Recorder::default(), &[rx]);
    let start = sim.now();
    let s = sim.add_host(
        Blaster::new(start, rx, size, n, interval),
        &[addr("192.0.2.2:9")],
    );
    sim.set_uplink(s, link);
    sim.run_for(interval * n + Duration::from_secs(10));
    let got = sim.machine::<Recorder>(r).got.clone();
    (got, sim)
}

fn within(value: u64, expected: f64, tolerance: f64) -> bool {
    (value as f64 - expected).abs() <= expected * tolerance
}

#[test]
fn loss_and_duplication_match_their_probabilities() {
    let n = 20_000;
    let (got, sim) = blast(
        3,
        LinkConfig {
            loss: 0.1,
            duplicate: 0.05,
            ..LinkConfig::default()
        },
        n,
        100,
        MS,
    );
    let st = sim.stats();
    eprintln!("loss 0.1, duplicate 0.05, {n} packets: {st:?}");
    assert_eq!(st.sent, u64::from(n));
    assert!(within(st.lost, 2000.0, 0.1), "lost {}", st.lost);
    // Duplication applies to the packets that survived loss.
    assert!(
        within(st.duplicated, 900.0, 0.15),
        "duplicated {}",
        st.duplicated
    );
    assert_eq!(got.len() as u64, st.sent - st.lost + st.duplicated);
    assert_eq!(st.delivered, got.len() as u64);
}

#[test]
fn reordering_matches_its_probability_and_jitter_alone_keeps_order() {
    let n = 10_000;
    let late = |got: &[Got]| {
        let mut max = None;
        let mut late = 0u64;
        for g in got {
            let s = seq_of(&g.contents);
            if max.is_some_and(|m| s < m) {
                late += 1;
            } else {
                max = Some(s);
            }
        }
        late
    };
    let (got, _) = blast(
        4,
        LinkConfig {
            jitter: 20 * MS,
            ..LinkConfig::default()
        },
        n,
        100,
        MS,
    );
    assert_eq!(got.len(), n as usize);
    assert_eq!(late(&got), 0, "jitter alone never reorders");

    let (got, _) = blast(
        4,
        LinkConfig {
            jitter: 2 * MS,
            reorder: 0.05,
            reorder_delay: 10 * MS,
            ..LinkConfig::default()
        },
        n,
        100,
        MS,
    );
    assert_eq!(got.len(), n as usize);
    let late = late(&got);
    eprintln!("reorder 0.05, {n} packets: {late} arrived late");
    assert!(within(late, 500.0, 0.15), "late {late}");
}

#[test]
fn rate_limit_sets_throughput() {
    // 500 packets of 1000 bytes at once into 1 Mbit/s with a big queue.
    let (got, sim) = blast(
        5,
        LinkConfig {
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 1_000_000,
            ..LinkConfig::default()
        },
        500,
        1000,
        Duration::ZERO,
    );
    assert_eq!(got.len(), 500);
    let first = got[0].at;
    let last = got[got.len() - 1].at;
    // 1000 bytes of payload are 1028 bytes of IPv4 packet: 8.224 ms at
    // 1 Mbit/s; 499 more after the first.
    assert_eq!(last - first, 499 * Duration::from_micros(8224));
    let bps = (499.0 * 1028.0 * 8.0) / (last - first).as_secs_f64();
    assert!((bps - 1e6).abs() < 1.0, "{bps}");
    assert_eq!(sim.stats().queue_dropped, 0);
}

#[test]
fn overfull_queue_drops_tail() {
    // 100 packets at once (1028 bytes as IP packets) into a 10 280-byte
    // queue: 10 fit.
    let (got, sim) = blast(
        6,
        LinkConfig {
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 10_280,
            ..LinkConfig::default()
        },
        100,
        1000,
        Duration::ZERO,
    );
    let seqs: Vec<u32> = got.iter().map(|g| seq_of(&g.contents)).collect();
    assert_eq!(seqs, (0..10).collect::<Vec<_>>());
    assert_eq!(sim.stats().queue_dropped, 90);
}

#[test]
fn paced_overload_delivers_the_bottleneck_rate() {
    // 2 Mbit/s of payload offered (1000 bytes every 4 ms) for 4 s into
    // 1 Mbit/s: about 4 s / 8.224 ms = 486 leave, plus the 19 still queued.
    let (got, sim) = blast(
        7,
        LinkConfig {
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 20_000,
            ..LinkConfig::default()
        },
        1000,
        1000,
        4 * MS,
    );
    let first = got[0].at;
    let last = got[got.len() - 1].at;
    let bps = (got.len() - 1) as f64 * 1028.0 * 8.0 / (last - first).as_secs_f64();
    assert!((bps - 1e6).abs() < 1e4, "{bps}");
    let st = sim.stats();
    eprintln!("2 Mbit/s into 1 Mbit/s: {bps:.0} bit/s delivered, {st:?}");
    assert!(
        within(st.queue_dropped, 480.0, 0.05),
        "{}",
        st.queue_dropped
    );
}

#[test]
fn mtu_drops_oversized_datagrams() {
    let mut sim = Sim::new(1);
    let rx = addr("192.0.2.1:9");
    let r = sim.add_host(Recorder::default(), &[rx]);
    let s = sim.add_host(Recorder::default(), &[addr("192.0.2.2:9")]);
    sim.set_downlink(
        r,
        LinkConfig {
            mtu: Some(1500),
            ..LinkConfig::default()
        },
    );
    let m = sim.machine_mut::<Recorder>(s);
    m.send(None, rx, &[0; 1472]); // 1500 bytes with IPv4 + UDP headers
    m.send(None, rx, &[0; 1473]);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(sim.machine::<Recorder>(r).got.len(), 1);
    assert_eq!(sim.host_stats(r).too_big, 1);
}

#[test]
fn downlink_and_uplink_are_configured_separately() {
    let mut sim = Sim::new(1);
    let t0 = sim.now();
    let server = addr("192.0.2.1:7");
    let s = sim.add_host(Echo::default(), &[server]);
    let c = sim.add_host(Pinger::new(server, 1), &[addr("192.0.2.2:5000")]);
    sim.set_uplink(
        c,
        LinkConfig {
            delay: 30 * MS,
            ..LinkConfig::default()
        },
    );
    sim.set_downlink(
        c,
        LinkConfig {
            delay: 50 * MS,
            ..LinkConfig::default()
        },
    );
    sim.set_link(
        s,
        LinkConfig {
            delay: MS,
            ..LinkConfig::default()
        },
    );
    sim.machine_mut::<Pinger>(c).start(t0);
    sim.run_for(Duration::from_secs(1));
    // 30 + 1 + 1 + 50 ms.
    assert_eq!(
        sim.events::<Pinger>(c),
        vec![PingEvent::Done {
            at: t0 + 82 * MS,
            transmissions: 1
        }]
    );
}

// ----- the retransmitting protocol under loss ---------------------------------

#[test]
fn retransmitting_protocol_completes_under_30_percent_loss() {
    let mut sim = Sim::new(2024);
    sim.set_default_link(LinkConfig {
        loss: 0.3,
        jitter: 5 * MS,
        ..LinkConfig::default()
    });
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let nat = sim.add_nat(NatConfig::new(ip("203.0.113.1")));
    let c = sim.add_host_behind(nat, Pinger::new(server, 200), &[addr("10.0.0.2:5000")]);
    let now = sim.now();
    sim.machine_mut::<Pinger>(c).start(now);
    let done = sim.run_for_with(Duration::from_secs(3600), |s| {
        s.machine::<Pinger>(c).acked == 200
    });
    assert!(done, "200 pings in an hour of virtual time");
    let PingEvent::Done { at, transmissions } = sim.events::<Pinger>(c)[0];
    eprintln!(
        "200 pings at 30% loss per link: {transmissions} transmissions, {:?} virtual, {:?}",
        at - now,
        sim.stats()
    );
    // Each round trip crosses four lossy links: success 0.7^4 = 0.24.
    assert!(transmissions > 400, "{transmissions}");
    assert!(sim.stats().lost > 200);
}

// ----- NATs (RFC 4787) --------------------------------------------------------

/// A server with two IPs and two ports each, like an RFC 5780 STUN server.
const SERVER: [&str; 4] = [
    "192.0.2.1:3478",
    "192.0.2.1:3479",
    "192.0.2.2:3478",
    "192.0.2.2:3479",
];

struct NatScene {
    sim: Sim,
    nat: rtclab::sim::NatId,
    client: rtclab::sim::HostId,
    server: rtclab::sim::HostId,
    s: [SocketAddr; 4],
}

fn nat_scene(config: NatConfig) -> NatScene {
    let mut sim = Sim::new(11);
    let s = SERVER.map(addr);
    let server = sim.add_host(Recorder::default(), &s);
    let nat = sim.add_nat(config);
    let client = sim.add_host_behind(nat, Recorder::default(), &[addr("10.0.0.2:5000")]);
    NatScene {
        sim,
        nat,
        client,
        server,
        s,
    }
}

impl NatScene {
    fn client_sends(&mut self, to: SocketAddr) {
        self.sim
            .machine_mut::<Recorder>(self.client)
            .send(None, to, b"out");
        self.sim.run_for(Duration::from_secs(1));
    }

    /// The source the server saw on its last datagram.
    fn last_seen(&self) -> SocketAddr {
        let got = &self.sim.machine::<Recorder>(self.server).got;
        got.last().expect("server got something").source
    }

    /// Does a datagram from `from` to `to` reach the client?
    fn server_reaches(&mut self, from: SocketAddr, to: SocketAddr) -> bool {
        let before = self.sim.machine::<Recorder>(self.client).got.len();
        self.sim
            .machine_mut::<Recorder>(self.server)
            .send(Some(from), to, b"in");
        self.sim.run_for(Duration::from_secs(1));
        self.sim.machine::<Recorder>(self.client).got.len() > before
    }
}

#[test]
fn mapping_behaviours_per_rfc_4787() {
    use MappingBehavior::*;
    // (behaviour, same mapping for other port, same mapping for other IP)
    for (mapping, other_port, other_ip) in [
        (EndpointIndependent, true, true),
        (AddressDependent, true, false),
        (AddressAndPortDependent, false, false),
    ] {
        let mut sc = nat_scene(NatConfig {
            mapping,
            ..NatConfig::new(ip("203.0.113.1"))
        });
        let [a, a2, b, _] = sc.s;
        sc.client_sends(a);
        let m_a = sc.last_seen();
        sc.client_sends(a2);
        let m_a2 = sc.last_seen();
        sc.client_sends(b);
        let m_b = sc.last_seen();
        sc.client_sends(a);
        assert_eq!(sc.last_seen(), m_a, "{mapping:?}: a mapping is reused");
        assert_eq!(m_a.ip(), ip("203.0.113.1"));
        assert_eq!(m_a == m_a2, other_port, "{mapping:?}: other port");
        assert_eq!(m_a == m_b, other_ip, "{mapping:?}: other IP");
        let created = if other_ip {
            1
        } else if other_port {
            2
        } else {
            3
        };
        assert_eq!(sc.sim.nat_stats(sc.nat).mappings_created, created);
    }
}

#[test]
fn filtering_behaviours_per_rfc_4787() {
    use FilteringBehavior::*;
    // After the client sent to s[0] only: may s[0], s[1] (same IP, other
    // port), s[2] (other IP) send to the mapping?
    for (filtering, allowed) in [
        (EndpointIndependent, [true, true, true]),
        (AddressDependent, [true, true, false]),
        (AddressAndPortDependent, [true, false, false]),
    ] {
        let mut sc = nat_scene(NatConfig {
            filtering,
            ..NatConfig::new(ip("203.0.113.1"))
        });
        let s = sc.s;
        sc.client_sends(s[0]);
        let mapped = sc.last_seen();
        for (i, expect) in allowed.iter().enumerate() {
            assert_eq!(
                sc.server_reaches(s[i], mapped),
                *expect,
                "{filtering:?} from {}",
                s[i]
            );
        }
        let refused = allowed.iter().filter(|a| !**a).count() as u64;
        assert_eq!(sc.sim.nat_stats(sc.nat).filtered, refused);
        assert_eq!(sc.sim.host_stats(sc.server).nat_filtered, refused);
        // What the client sees: the server's real address, its own private one.
        let got = &sc.sim.machine::<Recorder>(sc.client).got;
        assert_eq!(got[0].source, s[0]);
        assert_eq!(got[0].destination, addr("10.0.0.2:5000"));
    }
}

#[test]
fn unsolicited_inbound_has_no_mapping() {
    let mut sc = nat_scene(NatConfig::full_cone(ip("203.0.113.1")));
    let s0 = sc.s[0];
    assert!(!sc.server_reaches(s0, addr("203.0.113.1:5000")));
    assert_eq!(sc.sim.nat_stats(sc.nat).no_mapping, 1);
}

#[test]
fn port_preservation_keeps_the_internal_port() {
    let mut sc = nat_scene(NatConfig {
        port_preservation: true,
        ..NatConfig::new(ip("203.0.113.1"))
    });
    let s0 = sc.s[0];
    sc.client_sends(s0);
    assert_eq!(sc.last_seen(), addr("203.0.113.1:5000"));
}

#[test]
fn bindings_expire_without_outbound_refresh() {
    let mut sc = nat_scene(NatConfig {
        binding_timeout: Duration::from_secs(120),
        filtering: FilteringBehavior::EndpointIndependent,
        ..NatConfig::new(ip("203.0.113.1"))
    });
    let s0 = sc.s[0];
    let t0 = sc.sim.now();
    sc.client_sends(s0); // reaches the NAT at t0 + 5 ms
    let mapped = sc.last_seen();
    let bindings = sc.sim.nat_bindings(sc.nat);
    assert_eq!(bindings.len(), 1);
    assert_eq!(bindings[0].internal, addr("10.0.0.2:5000"));
    assert_eq!(bindings[0].external, mapped);
    assert_eq!(bindings[0].expires, t0 + 5 * MS + Duration::from_secs(120));

    // Inbound traffic does not refresh (RFC 4787 REQ-6 default).
    sc.sim.run_until(t0 + Duration::from_secs(100));
    assert!(sc.server_reaches(s0, mapped)); // at 100 s
    sc.sim.run_until(t0 + Duration::from_secs(119));
    assert!(sc.server_reaches(s0, mapped)); // at 119 s
    sc.sim.run_until(t0 + Duration::from_secs(121));
    assert!(!sc.server_reaches(s0, mapped)); // at 121 s: expired
    assert_eq!(sc.sim.nat_stats(sc.nat).mappings_expired, 1);
    assert!(sc.sim.nat_bindings(sc.nat).is_empty());
}

#[test]
fn outbound_keepalives_refresh_bindings() {
    let mut sc = nat_scene(NatConfig {
        binding_timeout: Duration::from_secs(120),
        ..NatConfig::new(ip("203.0.113.1"))
    });
    let s0 = sc.s[0];
    let t0 = sc.sim.now();
    sc.client_sends(s0);
    let mapped = sc.last_seen();
    for k in 1..=5 {
        sc.sim.run_until(t0 + Duration::from_secs(100 * k));
        sc.client_sends(s0);
        assert_eq!(sc.last_seen(), mapped, "same mapping after {k} keepalives");
    }
    sc.sim.run_until(t0 + Duration::from_secs(610));
    assert!(sc.server_reaches(s0, mapped));
    assert_eq!(sc.sim.nat_stats(sc.nat).mappings_created, 1);
}

#[test]
fn inbound_refresh_when_configured() {
    let mut sc = nat_scene(NatConfig {
        binding_timeout: Duration::from_secs(120),
        inbound_refresh: true,
        ..NatConfig::new(ip("203.0.113.1"))
    });
    let s0 = sc.s[0];
    let t0 = sc.sim.now();
    sc.client_sends(s0);
    let mapped = sc.last_seen();
    sc.sim.run_until(t0 + Duration::from_secs(100));
    assert!(sc.server_reaches(s0, mapped));
    sc.sim.run_until(t0 + Duration::from_secs(200));
    assert!(sc.server_reaches(s0, mapped));
}

/// Two hosts behind one NAT, plus a public server; returns the sim, NAT and
/// hosts, after host b sent once to the server (so it has a mapping).
fn two_inside(config: NatConfig) -> (Sim, rtclab::sim::NatId, [rtclab::sim::HostId; 3]) {
    let mut sim = Sim::new(5);
    let server = addr("192.0.2.1:3478");
    let s = sim.add_host(Recorder::default(), &[server]);
    let nat = sim.add_nat(config);
    let a = sim.add_host_behind(nat, Recorder::default(), &[addr("10.0.0.2:5000")]);
    let b = sim.add_host_behind(nat, Recorder::default(), &[addr("10.0.0.3:5000")]);
    sim.machine_mut::<Recorder>(b).send(None, server, b"hi");
    sim.run_for(Duration::from_secs(1));
    (sim, nat, [a, b, s])
}

#[test]
fn hosts_behind_one_nat_talk_by_private_address() {
    let (mut sim, nat, [a, b, _]) = two_inside(NatConfig::symmetric(ip("203.0.113.1")));
    let created = sim.nat_stats(nat).mappings_created;
    sim.machine_mut::<Recorder>(a)
        .send(None, addr("10.0.0.3:5000"), b"next door");
    sim.run_for(Duration::from_secs(1));
    let got = &sim.machine::<Recorder>(b).got;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, addr("10.0.0.2:5000"));
    assert_eq!(
        sim.nat_stats(nat).mappings_created,
        created,
        "NAT not involved"
    );
}

#[test]
fn hairpinning_on_and_off() {
    for hairpinning in [true, false] {
        let (mut sim, nat, [a, b, s]) = two_inside(NatConfig {
            hairpinning,
            filtering: FilteringBehavior::EndpointIndependent,
            ..NatConfig::new(ip("203.0.113.1"))
        });
        let b_public = sim.machine::<Recorder>(s).got[0].source;
        sim.machine_mut::<Recorder>(a)
            .send(None, b_public, b"via the NAT");
        sim.run_for(Duration::from_secs(1));
        let got = &sim.machine::<Recorder>(b).got;
        if hairpinning {
            assert_eq!(got.len(), 1);
            // RFC 4787 REQ-9b: the source is a's external address.
            assert_eq!(got[0].source.ip(), ip("203.0.113.1"));
            assert_ne!(got[0].source, b_public);
            assert_eq!(got[0].destination, addr("10.0.0.3:5000"));
        } else {
            assert!(got.is_empty());
            assert_eq!(sim.nat_stats(nat).hairpin_dropped, 1);
            assert_eq!(sim.host_stats(a).nat_filtered, 1);
        }
    }
}

#[test]
fn nested_nats_translate_twice() {
    let mut sim = Sim::new(9);
    let server = addr("192.0.2.1:7");
    let s = sim.add_host(Echo::default(), &[server]);
    let carrier = sim.add_nat(NatConfig::new(ip("203.0.113.1")));
    let home = sim.add_nat_behind(carrier, NatConfig::new(ip("100.64.0.2")));
    let c = sim.add_host_behind(home, Recorder::default(), &[addr("192.168.1.2:5000")]);
    sim.set_capture(true);
    sim.machine_mut::<Recorder>(c).send(None, server, b"deep");
    sim.run_for(Duration::from_secs(1));
    let got = &sim.machine::<Recorder>(c).got;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, server);
    assert_eq!(got[0].contents, b"deep");
    let at_server = sim
        .drain_capture()
        .into_iter()
        .find(|r| r.kind == CaptureKind::Delivered && r.host == s)
        .expect("server got it");
    assert_eq!(at_server.source.ip(), ip("203.0.113.1"));
    let inner = sim.nat_bindings(home);
    assert_eq!(inner[0].internal, addr("192.168.1.2:5000"));
    assert_eq!(inner[0].external.ip(), ip("100.64.0.2"));
    let outer = sim.nat_bindings(carrier);
    assert_eq!(outer[0].internal, inner[0].external);
    assert_eq!(sim.nat_of(c), Some(home));
}

#[test]
fn capture_is_bounded_and_readable() {
    let mut sim = Sim::new(1);
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let c = sim.add_host(Echo::default(), &[addr("192.0.2.2:7")]);
    sim.set_capture(true);
    sim.set_capture_limit(10);
    sim.machine_mut::<Echo>(c).send(Transmit {
        source: None,
        destination: server,
        contents: b"ping".to_vec(),
    });
    sim.run_for(Duration::from_millis(100));
    let records = sim.drain_capture();
    assert_eq!(records.len(), 10);
    assert!(sim.capture_overflow() > 0);
    let line = records[0].to_string();
    assert!(line.contains("192.0.2."), "{line}");
    assert!(line.contains("4 bytes"), "{line}");
}

// ----- properties -------------------------------------------------------------

fn accounted(sim: &Sim) -> bool {
    let st = sim.stats();
    st.sent + st.duplicated
        == st.delivered
            + st.lost
            + st.queue_dropped
            + st.too_big
            + st.nat_filtered
            + st.unroutable
            + sim.in_flight() as u64
}

/// A random network: a pinger behind a random NAT, a blaster on the
/// internet, random links everywhere. Returns the capture.
fn random_run(
    seed: u64,
    link: LinkConfig,
    mapping: MappingBehavior,
    filtering: FilteringBehavior,
) -> Vec<CaptureRecord> {
    let mut sim = Sim::new(seed);
    sim.set_default_link(link.clone());
    sim.set_capture(true);
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let nat = sim.add_nat(NatConfig {
        mapping,
        filtering,
        ..NatConfig::new(ip("203.0.113.1"))
    });
    sim.set_nat_link(nat, link);
    let c = sim.add_host_behind(nat, Pinger::new(server, 20), &[addr("10.0.0.2:5000")]);
    let start = sim.now();
    sim.machine_mut::<Pinger>(c).start(start);
    // Unsolicited traffic at the NAT and at the server.
    sim.add_host(
        Blaster::new(start, addr("203.0.113.1:5000"), 50, 20, 7 * MS),
        &[addr("198.51.100.1:1")],
    );
    sim.add_host(
        Blaster::new(start, server, 300, 50, 3 * MS),
        &[addr("198.51.100.2:1")],
    );
    for _ in 0..20 {
        sim.run_for(Duration::from_millis(500));
        assert!(
            accounted(&sim),
            "{:?} in flight {}",
            sim.stats(),
            sim.in_flight()
        );
    }
    sim.drain_capture()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]

    #[test]
    fn every_datagram_is_accounted_for_and_runs_replay(
        seed in proptest::prelude::any::<u64>(),
        loss in 0.0f64..0.5,
        duplicate in 0.0f64..0.3,
        reorder in 0.0f64..0.3,
        jitter_ms in 0u64..30,
        rate in proptest::option::of(10_000u64..10_000_000),
        queue in 0usize..20_000,
        mtu in proptest::option::of(200usize..400),
        m in 0usize..3,
        f in 0usize..3,
    ) {
        use MappingBehavior as M;
        use FilteringBehavior as F;
        let mapping = [M::EndpointIndependent, M::AddressDependent, M::AddressAndPortDependent][m];
        let filtering = [F::EndpointIndependent, F::AddressDependent, F::AddressAndPortDependent][f];
        let link = LinkConfig {
            loss,
            duplicate,
            reorder,
            jitter: Duration::from_millis(jitter_ms),
            rate_bps: rate,
            queue_limit_bytes: queue,
            mtu,
            ..LinkConfig::default()
        };
        let a = random_run(seed, link.clone(), mapping, filtering);
        let b = random_run(seed, link, mapping, filtering);
        proptest::prop_assert_eq!(a, b);
    }
}

#[test]
fn capture_saves_as_pcap() {
    let records = lossy_run(3);
    let delivered: Vec<&CaptureRecord> = records
        .iter()
        .filter(|r| r.kind == CaptureKind::Delivered)
        .collect();
    let mut pcap = Vec::new();
    let n = rtclab::sim::write_pcap(delivered.iter().copied(), &mut pcap);
    assert_eq!(n, delivered.len());
    // Global header + per packet: record header, IPv4, UDP, payload.
    let payload: usize = delivered.iter().map(|r| r.contents.len()).sum();
    assert_eq!(pcap.len(), 24 + n * (16 + 20 + 8) + payload);
}

#[test]
fn a_host_that_moves_gets_a_new_public_address() {
    let mut sim = Sim::new(12);
    let server = addr("192.0.2.1:3478");
    let s = sim.add_host(Recorder::default(), &[server]);
    let wifi = sim.add_nat(NatConfig::new(ip("203.0.113.1")));
    let mobile = sim.add_nat(NatConfig::symmetric(ip("198.51.100.1")));
    let c = sim.add_host_behind(wifi, Recorder::default(), &[addr("192.168.1.2:5000")]);
    sim.machine_mut::<Recorder>(c)
        .send(None, server, b"from wifi");
    sim.run_for(Duration::from_secs(1));
    let old_public = sim.machine::<Recorder>(s).got[0].source;
    assert_eq!(old_public.ip(), ip("203.0.113.1"));

    // A reply is on its way when the host switches networks.
    sim.machine_mut::<Recorder>(s)
        .send(None, old_public, b"too late");
    sim.run_for(7 * MS); // through the NAT, on the host's downlink
    sim.move_host(c, Some(mobile), &[addr("10.20.0.7:5000")]);
    assert_eq!(sim.nat_of(c), Some(mobile));
    sim.run_for(Duration::from_secs(1));
    assert!(sim.machine::<Recorder>(c).got.is_empty());
    assert_eq!(sim.host_stats(s).unroutable, 1);

    sim.machine_mut::<Recorder>(c)
        .send(None, server, b"from mobile");
    sim.run_for(Duration::from_secs(1));
    let new_public = sim.machine::<Recorder>(s).got[1].source;
    assert_eq!(new_public.ip(), ip("198.51.100.1"));
    sim.machine_mut::<Recorder>(s)
        .send(None, new_public, b"welcome");
    sim.run_for(Duration::from_secs(1));
    let got = &sim.machine::<Recorder>(c).got;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].destination, addr("10.20.0.7:5000"));
}

#[test]
fn bursty_loss_through_the_sim() {
    let n = 20_000;
    let (got, sim) = blast(
        13,
        LinkConfig {
            burst_loss: Some(rtclab::sim::GilbertElliott {
                enter_bad: 0.02,
                leave_bad: 0.25,
                bad_loss: 0.8,
            }),
            ..LinkConfig::default()
        },
        n,
        100,
        MS,
    );
    let lost = sim.stats().lost;
    // Mean loss 0.02 / 0.27 * 0.8 = 5.9 %.
    assert!(within(lost, 1185.0, 0.15), "lost {lost}");
    // Gaps in the sequence come in runs.
    let seqs: Vec<u32> = got.iter().map(|g| seq_of(&g.contents)).collect();
    let gaps = seqs.windows(2).filter(|w| w[1] > w[0] + 1).count() as u64;
    assert!(gaps * 2 < lost, "{gaps} gaps for {lost} losses");
}

/// Not a timed test: prints how fast the simulator moves datagrams on this
/// machine (`cargo test --test sim -- --ignored --nocapture`).
#[test]
#[ignore]
fn measure_simulator_speed() {
    let wall = std::time::Instant::now();
    let link = LinkConfig {
        jitter: MS,
        loss: 0.01,
        ..LinkConfig::default()
    };
    let (got, sim) = blast(1, link, 200_000, 1000, Duration::from_micros(50));
    let took = wall.elapsed();
    eprintln!(
        "sim.datagrams_per_s {:.0} ({} delivered, {} steps, {:?} wall, {:?} virtual)",
        got.len() as f64 / took.as_secs_f64(),
        got.len(),
        sim.steps(),
        took,
        sim.elapsed()
    );
}

#[test]
fn rng_streams_follow_the_seed() {
    use rand::Rng;
    let draw = |seed, stream| Sim::new(seed).rng(stream).random::<u64>();
    assert_eq!(draw(1, 0), draw(1, 0));
    assert_ne!(draw(1, 0), draw(1, 1));
    assert_ne!(draw(1, 0), draw(2, 0));
}

#[test]
fn a_nat_wan_link_is_shared_and_skipped_inside() {
    let mut sim = Sim::new(21);
    let server = addr("192.0.2.1:7");
    sim.add_host(Echo::default(), &[server]);
    let nat = sim.add_nat(NatConfig::full_cone(ip("203.0.113.1")));
    sim.set_nat_link(
        nat,
        LinkConfig {
            delay: 40 * MS,
            ..LinkConfig::default()
        },
    );
    let a = sim.add_host_behind(nat, Pinger::new(server, 1), &[addr("10.0.0.2:5000")]);
    let b_addr = addr("10.0.0.3:7");
    let b = sim.add_host_behind(nat, Echo::default(), &[b_addr]);
    let t0 = sim.now();
    sim.machine_mut::<Pinger>(a).start(t0);
    sim.run_for(Duration::from_secs(1));
    // 5 + 40 + 5 there, 5 + 40 + 5 back.
    assert_eq!(
        sim.events::<Pinger>(a),
        vec![PingEvent::Done {
            at: t0 + 100 * MS,
            transmissions: 1
        }]
    );

    // Next door: no WAN link.
    let c = sim.add_host_behind(nat, Pinger::new(b_addr, 1), &[addr("10.0.0.4:5000")]);
    let t1 = sim.now();
    sim.machine_mut::<Pinger>(c).start(t1);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.events::<Pinger>(c),
        vec![PingEvent::Done {
            at: t1 + 20 * MS,
            transmissions: 1
        }]
    );

    // Hairpinned: b's public address (learnt by pinging the server) is
    // reached without crossing the WAN link either.
    sim.machine_mut::<Echo>(b).send(Transmit {
        source: None,
        destination: server,
        contents: b"x".to_vec(),
    });
    sim.run_for(Duration::from_secs(1));
    let b_public = sim
        .nat_bindings(nat)
        .into_iter()
        .find(|m| m.internal == b_addr)
        .expect("b has a mapping")
        .external;
    let d = sim.add_host_behind(nat, Pinger::new(b_public, 1), &[addr("10.0.0.5:5000")]);
    let t2 = sim.now();
    sim.machine_mut::<Pinger>(d).start(t2);
    sim.run_for(Duration::from_secs(1));
    assert_eq!(
        sim.events::<Pinger>(d),
        vec![PingEvent::Done {
            at: t2 + 20 * MS,
            transmissions: 1
        }]
    );
}

#[test]
fn hosts_behind_a_nat_share_its_bottleneck() {
    let mut sim = Sim::new(22);
    let rx = addr("192.0.2.1:9");
    let r = sim.add_host(Recorder::default(), &[rx]);
    let nat = sim.add_nat(NatConfig::new(ip("203.0.113.1")));
    sim.set_nat_uplink(
        nat,
        LinkConfig {
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 20_000,
            ..LinkConfig::default()
        },
    );
    let start = sim.now();
    // Each offers about 1 Mbit/s (1028-byte IP packets every 8.224 ms).
    let every = Duration::from_micros(8224);
    for i in 0..2 {
        let me = SocketAddr::new(ip(&format!("10.0.0.{}", i + 2)), 9);
        sim.add_host_behind(nat, Blaster::new(start, rx, 1000, 500, every), &[me]);
    }
    sim.run_for(Duration::from_secs(10));
    let got = &sim.machine::<Recorder>(r).got;
    let first = got[0].at;
    let last = got[got.len() - 1].at;
    let bps = (got.len() - 1) as f64 * 1028.0 * 8.0 / (last - first).as_secs_f64();
    assert!((bps - 1e6).abs() < 1e4, "{bps}");
    let link = sim.nat_link_stats(nat);
    assert!(within(link.queue_dropped, 480.0, 0.05), "{link:?}");
    assert_eq!(got.len() as u64 + link.queue_dropped, 1000);
    assert!(accounted(&sim));
}

#[test]
fn a_spoofing_host_forges_sources() {
    let mut sim = Sim::new(23);
    let victim = addr("192.0.2.1:7");
    let peer = addr("192.0.2.2:7");
    let v = sim.add_host(Recorder::default(), &[victim]);
    let p = sim.add_host(Echo::default(), &[peer]);
    let attacker = sim.add_host(Recorder::default(), &[addr("198.51.100.66:1")]);
    sim.set_name(attacker, "mallory");
    assert_eq!(sim.name(attacker), "mallory");
    assert_eq!(sim.name(p), "host1");
    sim.machine_mut::<Recorder>(attacker)
        .send(Some(peer), victim, b"forged");
    sim.run_for(Duration::from_secs(1));
    assert!(
        sim.machine::<Recorder>(v).got.is_empty(),
        "refused by default"
    );
    sim.set_spoofing(attacker, true);
    sim.machine_mut::<Recorder>(attacker)
        .send(Some(peer), victim, b"forged");
    sim.run_for(Duration::from_secs(1));
    let got = &sim.machine::<Recorder>(v).got;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, peer);
}
