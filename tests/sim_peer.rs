//! `peer::Transport` in the simulator: two transports connect (ICE, DTLS in
//! both roles, SRTP), VP8 RTP and RTCP flow both ways byte-identical after
//! SRTP, DTLS application data both ways; it connects under 5% loss; a
//! fingerprint mismatch fails with a clear error and no media; a vanished
//! peer is detected by consent freshness and frees everything; garbage never
//! panics. Virtual time, fixed seeds.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtclab::dtls::cert::{Certificate, Fingerprint};
use rtclab::ice::{ConnectionState, FailureReason};
use rtclab::machine::{Machine, Receive};
use rtclab::peer::transport::{Config, Error, Event};
use rtclab::peer::{DtlsRole, IceRole, State, Transport};
use rtclab::rtp::RtpHeader;
use rtclab::rtp::payload::Packetizer;
use rtclab::rtp::vp8::Vp8Packetizer;
use rtclab::sim::{HostId, LinkConfig, Sim};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const A: &str = "192.0.2.1:5000";
const B: &str = "198.51.100.2:6000";

fn other(r: DtlsRole) -> DtlsRole {
    match r {
        DtlsRole::Client => DtlsRole::Server,
        DtlsRole::Server => DtlsRole::Client,
    }
}

/// How the test sets the peers up.
struct Setup {
    seed: u64,
    /// A's DTLS role (B takes the other); `None`: A learns it later.
    a_dtls: Option<DtlsRole>,
    /// A's access link (both directions), so the path has exactly its loss.
    link: LinkConfig,
    /// Fingerprints B expects of A's certificate besides (or instead of)
    /// the real one.
    b_expects: Vec<Fingerprint>,
    /// Whether B's list also has A's real fingerprint (last).
    b_expects_real: bool,
}

impl Setup {
    fn new(seed: u64, a_dtls: DtlsRole) -> Self {
        Setup {
            seed,
            a_dtls: Some(a_dtls),
            link: LinkConfig::default(),
            b_expects: Vec::new(),
            b_expects_real: true,
        }
    }
}

struct Pair {
    sim: Sim,
    hosts: [HostId; 2],
    /// Every event but signaling, per side.
    log: [Vec<Event>; 2],
    fingerprints: [Fingerprint; 2],
}

fn certificate(rng: &mut StdRng) -> Certificate {
    Certificate::generate(rng, SystemTime::now()).expect("certificate")
}

fn pair(s: Setup) -> Pair {
    let mut rng = StdRng::seed_from_u64(s.seed);
    let (ca, cb) = (certificate(&mut rng), certificate(&mut rng));
    let (fa, fb) = (ca.fingerprint(), cb.fingerprint());
    let mut sim = Sim::new(s.seed);
    let now = sim.now();

    let mut config_a = Config::new(IceRole::Controlling, ca);
    config_a.host_candidates = vec![addr(A)];
    if let Some(role) = s.a_dtls {
        config_a.dtls_role = Some(role);
        config_a.remote_fingerprints = vec![fb.clone()];
    }
    let mut config_b = Config::new(IceRole::Controlled, cb);
    config_b.host_candidates = vec![addr(B)];
    // The answerer picks `a=setup:active` when the offerer left it open, as
    // Chromium does.
    config_b.dtls_role = Some(s.a_dtls.map_or(DtlsRole::Client, other));
    config_b.remote_fingerprints = s.b_expects;
    if s.b_expects_real {
        config_b.remote_fingerprints.push(fa.clone());
    }

    let mut a = Transport::new(config_a, now, StdRng::seed_from_u64(s.seed * 2 + 1)).expect("A");
    let mut b = Transport::new(config_b, now, StdRng::seed_from_u64(s.seed * 2 + 2)).expect("B");
    let (ca, cb) = (a.local_credentials().clone(), b.local_credentials().clone());
    a.set_remote_credentials(now, &cb);
    b.set_remote_credentials(now, &ca);
    let ha = sim.add_host(a, &[addr(A)]);
    let hb = sim.add_host(b, &[addr(B)]);
    sim.set_link(ha, s.link);
    Pair {
        sim,
        hosts: [ha, hb],
        log: [Vec::new(), Vec::new()],
        fingerprints: [fa, fb],
    }
}

/// Relays trickled candidates through "signaling" (as SDP text) and keeps
/// every other event.
fn pump(sim: &mut Sim, hosts: [HostId; 2], log: &mut [Vec<Event>; 2]) {
    for side in 0..2 {
        let now = sim.now();
        for e in sim.events::<Transport>(hosts[side]) {
            match e {
                Event::LocalCandidate(c) => {
                    let c = c.to_string().parse().expect("our candidate parses");
                    let _ = sim
                        .machine_mut::<Transport>(hosts[1 - side])
                        .add_remote_candidate(now, c);
                }
                Event::GatheringComplete => sim
                    .machine_mut::<Transport>(hosts[1 - side])
                    .end_of_candidates(now),
                e => log[side].push(e),
            }
        }
    }
}

fn ended(s: State) -> bool {
    matches!(s, State::Failed | State::Closed)
}

impl Pair {
    fn t(&mut self, side: usize) -> &mut Transport {
        self.sim.machine_mut::<Transport>(self.hosts[side])
    }

    /// Runs until both are connected, or one failed or closed, or `limit`.
    fn connect(&mut self, limit: Duration) -> bool {
        let hosts = self.hosts;
        let log = &mut self.log;
        self.sim.run_for_with(limit, |sim| {
            pump(sim, hosts, log);
            let st = hosts.map(|h| sim.machine::<Transport>(h).state());
            st.iter().all(|&s| s == State::Connected) || st.iter().any(|&s| ended(s))
        });
        self.states() == [State::Connected; 2]
    }

    fn states(&self) -> [State; 2] {
        self.hosts.map(|h| self.sim.machine::<Transport>(h).state())
    }

    fn run(&mut self, d: Duration) {
        let hosts = self.hosts;
        let log = &mut self.log;
        self.sim.run_for_with(d, |sim| {
            pump(sim, hosts, log);
            false
        });
    }

    fn rtp(&self, side: usize) -> Vec<Vec<u8>> {
        self.log[side]
            .iter()
            .filter_map(|e| match e {
                Event::Rtp(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn rtcp(&self, side: usize) -> Vec<Vec<u8>> {
        self.log[side]
            .iter()
            .filter_map(|e| match e {
                Event::Rtcp(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn data(&self, side: usize) -> Vec<Vec<u8>> {
        self.log[side]
            .iter()
            .filter_map(|e| match e {
                Event::ApplicationData(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    fn failure(&self, side: usize) -> Option<&Error> {
        self.log[side].iter().find_map(|e| match e {
            Event::Failed(e) => Some(e),
            _ => None,
        })
    }

    fn connected(&self, side: usize) -> Option<&rtclab::peer::Connected> {
        self.log[side].iter().find_map(|e| match e {
            Event::Connected(c) => Some(&**c),
            _ => None,
        })
    }
}

/// VP8 frames cut into RTP packets (plain, before SRTP).
fn vp8_packets(ssrc: u32, frames: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut packetizer = Vp8Packetizer::new(rng.random());
    let mut seq: u16 = rng.random();
    let mut out = Vec::new();
    for f in 0..frames {
        let len = rng.random_range(100..4000);
        let frame: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut payloads = Vec::new();
        packetizer
            .packetize(&frame, 1100, &mut payloads)
            .expect("packetize");
        let n = payloads.len();
        for (i, p) in payloads.into_iter().enumerate() {
            let h = RtpHeader {
                marker: i + 1 == n,
                payload_type: 96,
                sequence_number: seq,
                timestamp: 3000 * f as u32,
                ssrc,
                ..RtpHeader::default()
            };
            seq = seq.wrapping_add(1);
            let mut packet = Vec::new();
            h.emit_packet(&p, 0, &mut packet).expect("write");
            out.push(packet);
        }
    }
    out
}

/// A receiver report with no blocks (RFC 3550 §6.4.2), from `ssrc`.
fn receiver_report(ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

#[test]
fn connects_in_both_dtls_roles_and_media_and_data_flow_both_ways() {
    for (seed, role) in [(1, DtlsRole::Client), (2, DtlsRole::Server)] {
        let mut p = pair(Setup::new(seed, role));
        let start = p.sim.now();
        assert!(
            p.connect(Duration::from_secs(5)),
            "{role:?}: {:?} {:?}",
            p.states(),
            p.log
        );
        let took = p.sim.now() - start;
        eprintln!("A as DTLS {role:?}: connected after {took:?} of virtual time");
        // 20 ms round trips: ICE (a check, a nomination) plus DTLS (2
        // round trips with the cookie exchange) stay well under 300 ms.
        assert!(took < Duration::from_millis(300), "took {took:?}");
        let (ca, cb) = (
            p.connected(0).expect("A").clone(),
            p.connected(1).expect("B").clone(),
        );
        assert_eq!(ca.dtls_role, role);
        assert_eq!(cb.dtls_role, other(role));
        assert!(ca.srtp_profile.is_some());
        assert_eq!(ca.srtp_profile, cb.srtp_profile);
        assert_eq!(ca.peer_fingerprint, p.fingerprints[1]);
        assert_eq!(cb.peer_fingerprint, p.fingerprints[0]);
        assert_eq!(ca.remote.socket_addr(), Some(addr(B)));
        assert_eq!(cb.remote.socket_addr(), Some(addr(A)));
        assert_eq!(
            p.t(0).ice().map(|i| i.state()),
            Some(ConnectionState::Connected)
        );

        let from_a = vp8_packets(0x1111_0000, 20, seed);
        let from_b = vp8_packets(0x2222_0000, 20, seed + 100);
        for (side, packets) in [(0, &from_a), (1, &from_b)] {
            for pkt in packets {
                p.t(side).send_rtp(pkt).expect("send_rtp");
            }
            p.t(side)
                .send_rtcp(&receiver_report(0xAB00 + side as u32))
                .expect("send_rtcp");
            p.t(side)
                .send_application_data(format!("hello from {side}").as_bytes())
                .expect("send data");
        }
        p.run(Duration::from_millis(200));
        assert_eq!(p.rtp(1), from_a, "{role:?}: A → B RTP");
        assert_eq!(p.rtp(0), from_b, "{role:?}: B → A RTP");
        assert_eq!(p.rtcp(1), vec![receiver_report(0xAB00)]);
        assert_eq!(p.rtcp(0), vec![receiver_report(0xAB01)]);
        assert_eq!(p.data(1), vec![b"hello from 0".to_vec()]);
        assert_eq!(p.data(0), vec![b"hello from 1".to_vec()]);
        let st = p.t(1).stats();
        assert_eq!(st.rtp_received, from_a.len() as u64);
        assert_eq!(st.dropped_unprotect, 0);

        // Close: A says close_notify, B hears it; both free everything.
        p.t(0).close();
        p.run(Duration::from_millis(100));
        assert_eq!(p.states(), [State::Closed, State::Closed]);
        assert!(p.log[1].contains(&Event::Closed));
        assert_eq!(p.t(0).poll_timeout(), None);
        assert_eq!(p.t(1).poll_timeout(), None);
        assert_eq!(p.t(0).send_rtp(&from_a[0]), Err(Error::Closed));
    }
}

#[test]
fn media_before_keys_is_refused() {
    let mut p = pair(Setup::new(3, DtlsRole::Client));
    let pkt = &vp8_packets(1, 1, 3)[0];
    assert_eq!(p.t(0).send_rtp(pkt), Err(Error::NoSrtpKeys));
    assert_eq!(p.t(0).send_application_data(b"x"), Err(Error::NotConnected));
    // RTCP given to send_rtp, RTP to send_rtcp, and PT 72 (which the peer
    // would read as RTCP) are refused.
    assert_eq!(p.t(0).send_rtp(&receiver_report(1)), Err(Error::NotRtp));
    assert_eq!(p.t(0).send_rtcp(pkt), Err(Error::NotRtcp));
    let mut pt72 = pkt.clone();
    pt72[1] = 0x80 | 72;
    assert_eq!(p.t(0).send_rtp(&pt72), Err(Error::NotRtp));
}

#[test]
fn connects_under_5_percent_loss() {
    let lossy = LinkConfig {
        loss: 0.05,
        jitter: Duration::from_millis(3),
        ..LinkConfig::default()
    };
    let mut times = Vec::new();
    for seed in 1..=100u64 {
        let role = if seed % 2 == 0 {
            DtlsRole::Client
        } else {
            DtlsRole::Server
        };
        let mut p = pair(Setup {
            link: lossy.clone(),
            ..Setup::new(seed, role)
        });
        let start = p.sim.now();
        assert!(
            p.connect(Duration::from_secs(20)),
            "seed {seed}: {:?} {:?}",
            p.states(),
            p.log
        );
        times.push(p.sim.now() - start);
        // Data still flows once connected (one try each; 5% loss may eat it,
        // so send a few).
        for i in 0..5u8 {
            p.t(0).send_application_data(&[i]).expect("send");
        }
        p.run(Duration::from_millis(100));
        assert!(!p.data(1).is_empty(), "seed {seed}: no data arrived");
    }
    times.sort();
    eprintln!(
        "5% loss: connect times median {:?}, p95 {:?}, worst {:?}",
        times[times.len() / 2],
        times[times.len() * 95 / 100],
        times[times.len() - 1]
    );
}

#[test]
fn dtls_role_learned_late_replays_an_early_client_hello() {
    // A (the offerer) knows neither its DTLS role nor B's fingerprint when
    // ICE connects; B (answerer, active) sends its ClientHello at once.
    let mut p = pair(Setup {
        a_dtls: None,
        ..Setup::new(4, DtlsRole::Server)
    });
    p.run(Duration::from_millis(300));
    assert_eq!(p.states()[0], State::Handshaking, "{:?}", p.log);
    let fb = p.fingerprints[1].clone();
    let now = p.sim.now();
    p.t(0)
        .set_remote_dtls(now, DtlsRole::Server, vec![fb])
        .expect("set_remote_dtls");
    assert!(p.connect(Duration::from_secs(5)), "{:?}", p.log);
    assert_eq!(p.connected(0).map(|c| c.dtls_role), Some(DtlsRole::Server));
    let now = p.sim.now();
    let again = p.fingerprints[1].clone();
    assert!(matches!(
        p.t(0).set_remote_dtls(now, DtlsRole::Client, vec![again]),
        Err(Error::Misuse(_))
    ));
}

#[test]
fn fingerprint_mismatch_fails_with_a_clear_error_and_no_media() {
    let mut rng = StdRng::seed_from_u64(99);
    let stranger = certificate(&mut rng).fingerprint();
    // B (the one that checks) as DTLS client and as server; with one
    // fingerprint the endpoint refuses inside the handshake.
    for (seed, role) in [(5, DtlsRole::Client), (6, DtlsRole::Server)] {
        let mut p = pair(Setup {
            b_expects: vec![stranger.clone()],
            b_expects_real: false,
            ..Setup::new(seed, role)
        });
        p.connect(Duration::from_secs(5));
        p.run(Duration::from_millis(500));
        let e = p.failure(1).cloned().expect("B failed");
        match &e {
            Error::FingerprintMismatch { expected, actual } => {
                assert_eq!(expected, &vec![stranger.clone()]);
                assert_eq!(actual, &p.fingerprints[0]);
            }
            other => panic!("{role:?}: B failed with {other:?}"),
        }
        let text = e.to_string();
        eprintln!("{text}");
        assert!(text.contains(&stranger.to_string()), "{text}");
        assert!(text.contains(&p.fingerprints[0].to_string()), "{text}");
        assert_eq!(p.states()[1], State::Failed);
        // A never connects either: B's bad_certificate alert ends it.
        assert!(p.connected(0).is_none(), "{:?}", p.log[0]);
        assert!(p.connected(1).is_none());
        assert!(
            matches!(p.failure(0), Some(Error::PeerAlert(_))),
            "{:?}",
            p.log[0]
        );
        assert_eq!(p.t(1).srtp_profile(), None);
        assert_eq!(p.t(1).poll_timeout(), None);
        assert!(p.rtp(1).is_empty() && p.data(1).is_empty());
    }
}

#[test]
fn several_fingerprints_any_of_the_strongest_may_match() {
    let mut rng = StdRng::seed_from_u64(98);
    let stranger = certificate(&mut rng).fingerprint();
    let stranger2 = certificate(&mut rng).fingerprint();
    // Matching one of two: connects (checked after the handshake).
    let mut p = pair(Setup {
        b_expects: vec![stranger.clone()],
        ..Setup::new(7, DtlsRole::Client)
    });
    assert!(p.connect(Duration::from_secs(5)), "{:?}", p.log);
    assert_eq!(
        p.connected(1).map(|c| c.peer_fingerprint.clone()),
        Some(p.fingerprints[0].clone())
    );

    // Matching none of two: B fails after the handshake, names both, and
    // never keys SRTP; A hears close_notify.
    let mut p = pair(Setup {
        b_expects: vec![stranger.clone(), stranger2.clone()],
        b_expects_real: false,
        ..Setup::new(9, DtlsRole::Client)
    });
    p.connect(Duration::from_secs(5));
    p.run(Duration::from_millis(500));
    match p.failure(1) {
        Some(Error::FingerprintMismatch { expected, actual }) => {
            assert_eq!(expected, &vec![stranger.clone(), stranger2.clone()]);
            assert_eq!(actual, &p.fingerprints[0]);
        }
        other => panic!("B: {other:?} {:?}", p.log[1]),
    }
    assert!(p.connected(1).is_none());
    assert!(p.rtp(1).is_empty());
    assert!(ended(p.states()[0]), "{:?}", p.log[0]);
}

#[test]
fn vanished_peer_loses_consent_and_frees_everything() {
    let mut p = pair(Setup::new(10, DtlsRole::Client));
    assert!(p.connect(Duration::from_secs(5)));
    // B's cable is cut.
    let cut = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    p.sim.set_link(p.hosts[1], cut);
    let cut_at = p.sim.now();
    let a = p.hosts[0];
    let log = &mut p.log;
    let hosts = p.hosts;
    let failed = p.sim.run_for_with(Duration::from_secs(60), |sim| {
        pump(sim, hosts, log);
        sim.machine::<Transport>(a).state() == State::Failed
    });
    assert!(failed, "{:?}", p.log[0]);
    let took = p.sim.now() - cut_at;
    eprintln!("consent lost after {took:?}");
    assert!(
        took >= Duration::from_secs(25) && took <= Duration::from_secs(35),
        "{took:?}"
    );
    assert_eq!(
        p.failure(0),
        Some(&Error::Ice(FailureReason::ConsentLost)),
        "{:?}",
        p.log[0]
    );
    assert!(p.log[0].contains(&Event::IceStateChanged(ConnectionState::Disconnected)));
    // Resources freed: no timer, no agent, no keys; sends refused.
    assert_eq!(p.t(0).poll_timeout(), None);
    assert!(p.t(0).ice().is_none());
    assert_eq!(p.t(0).srtp_profile(), None);
    assert_eq!(p.t(0).send_application_data(b"x"), Err(Error::Closed));
    let st = p.t(0).stats();
    // And it stays quiet: nothing more is sent.
    let before = p.sim.host_stats(a);
    p.run(Duration::from_secs(60));
    assert_eq!(p.sim.host_stats(a).sent, before.sent);
    assert_eq!(p.t(0).stats().stun_received, st.stun_received);
}

#[test]
fn garbage_datagrams_never_panic_and_the_connection_survives() {
    let mut p = pair(Setup::new(11, DtlsRole::Server));
    assert!(p.connect(Duration::from_secs(5)));
    let mut rng = StdRng::seed_from_u64(11);
    let a = p.hosts[0];
    let stranger = addr("203.0.113.9:4000");
    let before = p.t(0).stats();
    for i in 0..3000 {
        let len = rng.random_range(0..300);
        let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Steer a share into each layer's range.
        if let Some(first) = d.first_mut() {
            *first = match i % 5 {
                0 => rng.random_range(0..=3),
                1 => rng.random_range(20..=63),
                2 => rng.random_range(128..=191),
                _ => *first,
            };
        }
        if i % 7 == 0 && d.len() >= 8 {
            d[4..8].copy_from_slice(&0x2112_A442u32.to_be_bytes());
        }
        let source = if i % 3 == 0 { stranger } else { addr(B) };
        let now = p.sim.now();
        let t = p.sim.machine_mut::<Transport>(a);
        let _ = t.accepts(&d, source);
        t.handle_receive(
            now,
            Receive {
                source,
                destination: addr(A),
                contents: &d,
            },
        );
    }
    let st = p.t(0).stats();
    assert!(st.dropped_unknown_kind > before.dropped_unknown_kind);
    assert!(st.dropped_unknown_source > before.dropped_unknown_source);
    assert!(st.dropped_unprotect > before.dropped_unprotect);
    assert_eq!(st.rtp_received, before.rtp_received);
    // Still connected, and media still flows both ways.
    p.run(Duration::from_millis(100));
    assert_eq!(p.states(), [State::Connected; 2], "{:?}", p.log);
    let packets = vp8_packets(7, 3, 11);
    for pkt in &packets {
        p.t(1).send_rtp(pkt).expect("send");
    }
    p.run(Duration::from_millis(100));
    assert_eq!(p.rtp(0), packets);
}

#[test]
fn accepts_sorts_datagrams_between_transports() {
    let mut p = pair(Setup::new(12, DtlsRole::Client));
    assert!(p.connect(Duration::from_secs(5)));
    let ufrag = p.t(0).local_credentials().ufrag.clone();
    let request = |username: &str| {
        use rtclab::stun::{Attribute, MessageEncoder, MessageType, TransactionId};
        let mut buf = Vec::new();
        MessageEncoder::new(
            &mut buf,
            MessageType::BINDING_REQUEST,
            TransactionId::random(&mut StdRng::seed_from_u64(1)),
        )
        .attribute(&Attribute::Username(username))
        .fingerprint()
        .finish()
        .expect("encode");
        buf
    };
    let stranger = addr("203.0.113.9:4000");
    let t = p.t(0);
    // STUN requests by ufrag, from anywhere (a new peer-reflexive path).
    assert!(t.accepts(&request(&format!("{ufrag}:theirs")), stranger));
    assert!(!t.accepts(&request("someone:else"), addr(B)));
    // DTLS and SRTP by the known remote address.
    assert!(t.accepts(&[23, 0xfe, 0xfd, 0, 1], addr(B)));
    assert!(!t.accepts(&[23, 0xfe, 0xfd, 0, 1], stranger));
    assert!(t.accepts(&[0x80, 96, 0, 1], addr(B)));
    assert!(!t.accepts(&[0x80, 96, 0, 1], stranger));
    t.close();
    assert!(!t.accepts(&[0x80, 96, 0, 1], addr(B)));
}

/// A third host that sends what it is told to, from its own address.
#[derive(Default)]
struct Injector {
    queue: std::collections::VecDeque<(SocketAddr, Vec<u8>)>,
    received: usize,
}

impl Machine for Injector {
    type Event = ();
    fn handle_receive(&mut self, _now: std::time::Instant, _d: Receive<'_>) {
        self.received += 1;
    }
    fn handle_timeout(&mut self, _now: std::time::Instant) {}
    fn poll_transmit(&mut self) -> Option<rtclab::machine::Transmit> {
        let (destination, contents) = self.queue.pop_front()?;
        Some(rtclab::machine::Transmit {
            source: None,
            destination,
            contents,
        })
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        None
    }
}

/// A third host replays B's captured ICE checks to A from its own address
/// and injects DTLS records (B's captured ones and garbage) from there,
/// again and again during the call. MESSAGE-INTEGRITY does not cover the
/// source, so A answers the checks and learns a peer-reflexive candidate,
/// but its triggered check to that address gets no authenticated answer:
/// the pair never becomes valid (RFC 8445 §7.2.5.2.1), nothing from that
/// address reaches DTLS or SRTP, DTLS keeps reading from B, and data and
/// media keep flowing both ways with nothing lost.
#[test]
fn replayed_checks_and_injected_records_do_not_steer_the_call() {
    use rtclab::sim::CaptureKind;
    for (seed, role) in [(21, DtlsRole::Client), (22, DtlsRole::Server)] {
        let mut p = pair(Setup::new(seed, role));
        p.sim.set_capture(true);
        assert!(p.connect(Duration::from_secs(5)), "{role:?}: {:?}", p.log);
        // Data once, so the capture holds B's application-data records.
        p.t(1).send_application_data(b"captured").expect("send");
        p.run(Duration::from_millis(100));
        let captured: Vec<Vec<u8>> = p
            .sim
            .drain_capture()
            .into_iter()
            .filter(|r| r.host == p.hosts[1] && r.kind == CaptureKind::Sent)
            .map(|r| r.contents)
            .filter(|c| c.starts_with(&[0, 1]) || (20..=63).contains(&c[0]))
            .collect();
        p.sim.set_capture(false);
        assert!(captured.iter().any(|c| c.starts_with(&[0, 1])), "a check");
        assert!(captured.iter().any(|c| c[0] == 23), "an application record");
        let mallory = addr("203.0.113.66:7000");
        let hm = p.sim.add_host(Injector::default(), &[mallory]);
        // A record of epoch 1 that authenticates nowhere.
        let garbage = {
            let mut r = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 99, 0, 40];
            r.extend_from_slice(&[0x5a; 40]);
            r
        };
        let before = p.t(0).stats();
        let (mut to_a, mut to_b) = (Vec::new(), Vec::new());
        let (media_a, media_b) = (vp8_packets(0x0a, 10, seed), vp8_packets(0x0b, 10, seed + 1));
        for round in 0..10 {
            let injector = p.sim.machine_mut::<Injector>(hm);
            for c in captured.iter().chain([&garbage]) {
                injector.queue.push_back((addr(A), c.clone()));
            }
            // Mallory's datagrams arrive; DTLS still reads from B only.
            p.run(Duration::from_millis(30));
            let peer = p.t(0).dtls().and_then(|d| d.peer());
            assert_eq!(peer, Some(addr(B)), "{role:?}: round {round}");
            let (ma, mb) = (format!("a{round}"), format!("b{round}"));
            p.t(0)
                .send_application_data(ma.as_bytes())
                .expect("A sends");
            p.t(1)
                .send_application_data(mb.as_bytes())
                .expect("B sends");
            p.t(0).send_rtp(&media_a[round]).expect("A rtp");
            p.t(1).send_rtp(&media_b[round]).expect("B rtp");
            to_b.push(ma.into_bytes());
            to_a.push(mb.into_bytes());
            p.run(Duration::from_millis(50));
        }
        p.run(Duration::from_millis(200));
        assert_eq!(p.states(), [State::Connected; 2], "{role:?}: {:?}", p.log);
        assert_eq!(p.data(0)[1..], to_a[..], "{role:?}: B → A data");
        assert_eq!(p.data(1)[..], to_b[..], "{role:?}: A → B data");
        assert!(p.rtp(0) == media_b[..10], "{role:?}: B → A media");
        assert!(p.rtp(1) == media_a[..10], "{role:?}: A → B media");
        let st = p.t(0).stats();
        assert!(
            st.dropped_unknown_source > before.dropped_unknown_source,
            "{st:?}"
        );
        // A still sends only to B: the selected pair never moved.
        assert_eq!(
            p.t(0).ice().and_then(|i| i.selected_path()).map(|(_, r)| r),
            Some(addr(B))
        );
        // Mallory heard A's triggered checks (and answers to its replays),
        // nothing else: no DTLS or SRTP of the call.
        assert!(p.sim.machine::<Injector>(hm).received > 0);
    }
}
