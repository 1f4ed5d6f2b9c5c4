//! ICE in the simulator: two agents connect on an open network and through
//! every pair of RFC 4787 NAT kinds (with a STUN server on the public side),
//! without and with a TURN server (our `turn::Server`, a sim host on the
//! public side, reached through `ice::IceTransport`), under loss and
//! reordering; consent loss is detected; bad credentials never select a
//! pair; a flood of checks and bogus TURN data keep state bounded; the
//! allocation is refreshed and released. Deterministic seeds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::ice::{
    self, Agent, CandidateKind, ConnectionState, FailureReason, IceTransport, RelayStatus,
    TransportConfig,
};
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::sim::{self, HostId, LinkConfig, NatConfig, Sim};
use rtclab::stun::{
    self, Attribute, BindingServer, IntegrityKey, MessageEncoder, MessageType, TransactionId,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

const STUN: &str = "198.51.100.1:3478";
const TURN: &str = "198.51.100.2:3478";

/// The agent inside a peer's transport.
fn agent(sim: &Sim, h: HostId) -> &Agent {
    sim.machine::<IceTransport>(h).agent()
}

fn transport(sim: &mut Sim, h: HostId) -> &mut IceTransport {
    sim.machine_mut::<IceTransport>(h)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nat {
    None,
    Kind(sim::MappingBehavior, sim::FilteringBehavior),
}

impl Nat {
    fn all() -> Vec<Nat> {
        use sim::FilteringBehavior as F;
        use sim::MappingBehavior as M;
        let mut v = vec![Nat::None];
        for m in [
            M::EndpointIndependent,
            M::AddressDependent,
            M::AddressAndPortDependent,
        ] {
            for f in [
                F::EndpointIndependent,
                F::AddressDependent,
                F::AddressAndPortDependent,
            ] {
                v.push(Nat::Kind(m, f));
            }
        }
        v
    }

    fn short(self) -> String {
        fn s(x: &str) -> &'static str {
            match x {
                "EndpointIndependent" => "EI",
                "AddressDependent" => "AD",
                _ => "APD",
            }
        }
        match self {
            Nat::None => "open".into(),
            Nat::Kind(m, f) => format!("{}/{}", s(&format!("{m:?}")), s(&format!("{f:?}"))),
        }
    }
}

struct Peer {
    host: HostId,
}

fn add_peer(sim: &mut Sim, nat: Nat, n: u8, controlling: bool, seed: u64, turn: bool) -> Peer {
    let config = TransportConfig {
        agent: ice::Config {
            controlling,
            stun_server: Some(addr(STUN)),
            ..ice::Config::default()
        },
        turn: turn.then(|| rtclab::turn::client::Config::new(addr(TURN), "alice", "secret")),
    };
    let mut t = IceTransport::new(config, StdRng::seed_from_u64(seed));
    let host = match nat {
        Nat::None => {
            let a = addr(&format!("192.0.2.{}:5000", 10 + n));
            t.add_local_host(sim.now(), a).expect("host");
            sim.add_host(t, &[a])
        }
        Nat::Kind(m, f) => {
            let nat = sim.add_nat(NatConfig {
                mapping: m,
                filtering: f,
                ..NatConfig::new(ip(&format!("203.0.113.{}", 1 + n)))
            });
            let a = addr(&format!("10.0.{n}.2:5000"));
            t.add_local_host(sim.now(), a).expect("host");
            sim.add_host_behind(nat, t, &[a])
        }
    };
    Peer { host }
}

fn add_stun(sim: &mut Sim) {
    let server = BindingServer::new(stun::server::Config::new(addr(STUN))).expect("server");
    let locals = server.local_addrs().to_vec();
    sim.add_host(server, &locals);
}

/// Our TURN server with a pool of 8 relayed addresses and one user.
fn add_turn(sim: &mut Sim) -> HostId {
    let listen = addr(TURN);
    let relays = (0..8)
        .map(|i| SocketAddr::new(listen.ip(), 50000 + i))
        .collect();
    let mut config = rtclab::turn::server::Config::new(listen, relays, "rtclab");
    config.users.push(("alice".into(), "secret".into()));
    let server = rtclab::turn::Server::new(config, sim.now(), sim.rng(77));
    let locals = server.local_addrs().to_vec();
    sim.add_host(server, &locals)
}

fn exchange_credentials(sim: &mut Sim, a: HostId, b: HostId) {
    let now = sim.now();
    let ca = agent(sim, a).local_credentials().clone();
    let cb = agent(sim, b).local_credentials().clone();
    transport(sim, a).set_remote_credentials(now, &cb.ufrag, &cb.pwd);
    transport(sim, b).set_remote_credentials(now, &ca.ufrag, &ca.pwd);
}

#[derive(Debug, Default, Clone)]
struct Outcome {
    /// (local kind, remote kind) of each side's selected pair.
    selected: [Option<(CandidateKind, CandidateKind)>; 2],
    failed: [Option<FailureReason>; 2],
    data: [Vec<Vec<u8>>; 2],
    consent_lost: [bool; 2],
}

/// Relays signaling (trickled candidates, end-of-candidates) and records
/// what happened. Returns whether anything new happened.
fn pump(sim: &mut Sim, hosts: [HostId; 2], out: &mut Outcome) {
    for side in 0..2 {
        let events = sim.events::<IceTransport>(hosts[side]);
        let now = sim.now();
        for e in events {
            match e {
                ice::Event::LocalCandidate(c) => {
                    // Signaling is a text channel: send the SDP line.
                    let line = c.to_string();
                    let c = line.parse().expect("our own candidate parses");
                    let _ = transport(sim, hosts[1 - side]).add_remote_candidate(now, c);
                }
                ice::Event::GatheringComplete => {
                    transport(sim, hosts[1 - side]).end_of_remote_candidates(now);
                }
                ice::Event::SelectedPair { local, remote } => {
                    out.selected[side] = Some((local.kind, remote.kind));
                }
                ice::Event::Failed(r) => {
                    if r == FailureReason::ConsentLost {
                        out.consent_lost[side] = true;
                    }
                    out.failed[side] = Some(r);
                }
                ice::Event::Data { data, .. } => out.data[side].push(data),
                _ => {}
            }
        }
    }
}

fn connect(sim: &mut Sim, hosts: [HostId; 2], limit: Duration) -> (bool, Outcome) {
    exchange_credentials(sim, hosts[0], hosts[1]);
    let mut out = Outcome::default();
    let ok = sim.run_for_with(limit, |sim| {
        pump(sim, hosts, &mut out);
        let connected = hosts
            .iter()
            .all(|&h| agent(sim, h).state() == ConnectionState::Connected);
        let failed = out.failed.iter().any(|f| f.is_some());
        (connected && out.selected.iter().all(|s| s.is_some())) || failed
    });
    let connected = ok && out.failed.iter().all(|f| f.is_none());
    (connected, out)
}

fn pair_setup(na: Nat, nb: Nat, seed: u64) -> (Sim, [HostId; 2]) {
    setup(na, nb, seed, false)
}

/// Two peers, a STUN server and, with `turn`, a TURN server both peers use.
fn setup(na: Nat, nb: Nat, seed: u64, turn: bool) -> (Sim, [HostId; 2]) {
    let mut sim = Sim::new(seed);
    add_stun(&mut sim);
    if turn {
        add_turn(&mut sim);
    }
    let a = add_peer(&mut sim, na, 1, true, seed * 2 + 1, turn);
    let b = add_peer(&mut sim, nb, 2, false, seed * 2 + 2, turn);
    (sim, [a.host, b.host])
}

#[test]
fn open_network_host_to_host_and_data_flows() {
    let (mut sim, hosts) = pair_setup(Nat::None, Nat::None, 1);
    let start = sim.now();
    let (ok, mut out) = connect(&mut sim, hosts, Duration::from_secs(10));
    assert!(ok, "{out:?}");
    let took = sim.now() - start;
    assert!(took < Duration::from_millis(200), "took {took:?}");
    assert_eq!(
        out.selected[0],
        Some((CandidateKind::Host, CandidateKind::Host))
    );
    assert_eq!(
        out.selected[1],
        Some((CandidateKind::Host, CandidateKind::Host))
    );
    // Application data over the selected pair, both ways.
    transport(&mut sim, hosts[0])
        .send(b"\x17hello")
        .expect("send");
    transport(&mut sim, hosts[1])
        .send(b"\x17world")
        .expect("send");
    sim.run_for_with(Duration::from_secs(1), |sim| {
        pump(sim, hosts, &mut out);
        !out.data[0].is_empty() && !out.data[1].is_empty()
    });
    assert_eq!(out.data[1], vec![b"\x17hello".to_vec()]);
    assert_eq!(out.data[0], vec![b"\x17world".to_vec()]);
    // Consent keeps it alive for a minute.
    sim.run_for_with(Duration::from_secs(60), |sim| {
        pump(sim, hosts, &mut out);
        false
    });
    for &h in &hosts {
        assert_eq!(agent(&sim, h).state(), ConnectionState::Connected);
    }
}

/// Whether ICE without TURN crosses this pair of NATs (checked against the
/// simulator, and explained): with an endpoint-independent mapping a side
/// shows everyone the srflx address the STUN server saw. If both do, the
/// checks open each other's filters. If one side's mapping depends on the
/// destination, its checks arrive from a new port, which the other (EIM) side
/// lets in unless it filters by address *and port*. If both mappings depend on
/// the destination, each response leaves from a mapping chosen by where it
/// goes: it takes an address-dependent mapping on at least one side (stable
/// across the peer's ports), a filter that is endpoint-independent on at
/// least one side, and no address-and-port-dependent filter.
fn expect_connect(a: Nat, b: Nat) -> bool {
    use sim::FilteringBehavior as F;
    use sim::MappingBehavior as M;
    let split = |n: Nat| match n {
        Nat::None => (M::EndpointIndependent, F::EndpointIndependent),
        Nat::Kind(m, f) => (m, f),
    };
    let (ma, fa) = split(a);
    let (mb, fb) = split(b);
    let eim = |m| m == M::EndpointIndependent;
    match (eim(ma), eim(mb)) {
        (true, true) => true,
        (false, true) => fb != F::AddressAndPortDependent,
        (true, false) => fa != F::AddressAndPortDependent,
        (false, false) => {
            fa != F::AddressAndPortDependent
                && fb != F::AddressAndPortDependent
                && (fa == F::EndpointIndependent || fb == F::EndpointIndependent)
                && (ma == M::AddressDependent || mb == M::AddressDependent)
        }
    }
}

/// Runs every pair of NAT kinds, with or without TURN; asserts what each
/// cell must give and returns the table.
fn matrix(turn: bool) -> String {
    let kinds = Nat::all();
    let mut table = String::new();
    let mut mismatches = Vec::new();
    for (i, &na) in kinds.iter().enumerate() {
        for (j, &nb) in kinds.iter().enumerate() {
            let (mut sim, hosts) = setup(na, nb, 100 + (i * 10 + j) as u64, turn);
            let (ok, out) = connect(&mut sim, hosts, Duration::from_secs(90));
            let kinds_used = out.selected[0]
                .map(|(l, r)| format!("{}-{}", l.as_str(), r.as_str()))
                .unwrap_or_else(|| "-".into());
            table.push_str(&format!(
                "{:>8} x {:<8} {:<5} {:<12} {}\n",
                na.short(),
                nb.short(),
                if ok { "ok" } else { "FAIL" },
                kinds_used,
                out.failed[0]
                    .as_ref()
                    .map(|f| f.to_string())
                    .unwrap_or_default()
            ));
            let direct = expect_connect(na, nb);
            if ok != (direct || turn) {
                mismatches.push(format!("{} x {}", na.short(), nb.short()));
            }
            if ok {
                // The selected pair's candidate types follow from the NATs,
                // and both sides agree on the path.
                let (l, r) = out.selected[0].expect("selected");
                let (bl, br) = out.selected[1].expect("selected");
                let relayed = |k| k == CandidateKind::Relayed;
                assert_eq!(relayed(l), relayed(br), "{} x {}", na.short(), nb.short());
                assert_eq!(relayed(r), relayed(bl), "{} x {}", na.short(), nb.short());
                if !direct {
                    // Only TURN crosses these: one end of the pair is relayed.
                    assert!(
                        relayed(l) || relayed(r),
                        "{} x {}: {l:?}-{r:?}",
                        na.short(),
                        nb.short()
                    );
                    continue;
                }
                // A direct path exists: ICE prefers it to the relay.
                if relayed(l) || relayed(r) {
                    mismatches.push(format!(
                        "{} x {}: relay {l:?}-{r:?}",
                        na.short(),
                        nb.short()
                    ));
                    continue;
                }
                match (na, nb) {
                    (Nat::None, Nat::None) => {
                        assert_eq!((l, r), (CandidateKind::Host, CandidateKind::Host))
                    }
                    (Nat::Kind(..), _) => assert_ne!(l, CandidateKind::Host),
                    (_, Nat::Kind(..)) => assert_ne!(r, CandidateKind::Host),
                }
            } else {
                // Fails cleanly, with a reason that says why.
                let reason = out.failed[0].clone().or(out.failed[1].clone());
                assert!(
                    matches!(reason, Some(FailureReason::AllPairsFailed { .. })),
                    "{} x {}: {reason:?}",
                    na.short(),
                    nb.short()
                );
            }
        }
    }
    println!("{table}");
    assert!(
        mismatches.is_empty(),
        "unexpected outcome for {mismatches:?}\n{table}"
    );
    table
}

#[test]
fn nat_matrix() {
    matrix(false);
}

/// With a TURN server every pair connects; the pairs that fail without it
/// connect through the relay, the others still take the direct path.
#[test]
fn nat_matrix_with_turn() {
    let table = matrix(true);
    assert!(!table.contains("FAIL"), "{table}");
    assert!(table.contains("relay"), "{table}");
}

#[test]
fn symmetric_to_symmetric_fails_cleanly_without_turn() {
    use sim::FilteringBehavior as F;
    use sim::MappingBehavior as M;
    let s = Nat::Kind(M::AddressAndPortDependent, F::AddressAndPortDependent);
    let (mut sim, hosts) = pair_setup(s, s, 7);
    let (ok, out) = connect(&mut sim, hosts, Duration::from_secs(120));
    assert!(!ok);
    let reason = out.failed[0].clone().expect("a failure reason");
    assert!(matches!(reason, FailureReason::AllPairsFailed { .. }));
    assert!(reason.to_string().contains("TURN"), "{reason}");
    assert_eq!(agent(&sim, hosts[0]).state(), ConnectionState::Failed);
}

#[test]
fn connects_under_loss_and_reordering() {
    use sim::FilteringBehavior as F;
    use sim::MappingBehavior as M;
    for seed in 0..8 {
        let (mut sim, hosts) = pair_setup(
            Nat::Kind(M::EndpointIndependent, F::AddressAndPortDependent),
            Nat::Kind(M::EndpointIndependent, F::AddressDependent),
            1000 + seed,
        );
        let bad = LinkConfig {
            loss: 0.2,
            reorder: 0.2,
            jitter: Duration::from_millis(5),
            ..LinkConfig::default()
        };
        for &h in &hosts {
            sim.set_link(h, bad.clone());
        }
        let (ok, out) = connect(&mut sim, hosts, Duration::from_secs(60));
        assert!(ok, "seed {seed}: {out:?}");
    }
}

#[test]
fn consent_loss_is_detected_when_a_side_vanishes() {
    let (mut sim, hosts) = pair_setup(Nat::None, Nat::None, 3);
    let (ok, mut out) = connect(&mut sim, hosts, Duration::from_secs(10));
    assert!(ok);
    // B vanishes: its cable is cut.
    let cut = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    sim.set_link(hosts[1], cut);
    let vanished = sim.now();
    let mut disconnected = None;
    let done = sim.run_for_with(Duration::from_secs(60), |sim| {
        pump(sim, hosts, &mut out);
        if disconnected.is_none() && agent(sim, hosts[0]).state() == ConnectionState::Disconnected {
            disconnected = Some(sim.now());
        }
        out.consent_lost[0]
    });
    assert!(done, "consent loss not detected");
    let after = sim.now() - vanished;
    assert!(
        after >= Duration::from_secs(25) && after <= Duration::from_secs(31),
        "{after:?}"
    );
    assert!(disconnected.is_some());
    assert_eq!(agent(&sim, hosts[0]).state(), ConnectionState::Failed);
    assert!(transport(&mut sim, hosts[0]).send(b"x").is_err());
}

/// A peer that knows the right ufrag pair but the wrong password (or the
/// wrong ufrag) never gets a pair selected.
#[test]
fn wrong_password_or_username_never_selects() {
    for wrong in ["password", "username"] {
        let (mut sim, hosts) = pair_setup(Nat::None, Nat::None, 5);
        let now = sim.now();
        let ca = agent(&sim, hosts[0]).local_credentials().clone();
        let cb = agent(&sim, hosts[1]).local_credentials().clone();
        let (ufrag, pwd) = if wrong == "password" {
            (cb.ufrag.clone(), "not-the-password-at-all-x".to_string())
        } else {
            ("nobody".to_string(), cb.pwd.clone())
        };
        transport(&mut sim, hosts[0]).set_remote_credentials(now, &ufrag, &pwd);
        transport(&mut sim, hosts[1]).set_remote_credentials(now, &ca.ufrag, &ca.pwd);
        let mut out = Outcome::default();
        sim.run_for_with(Duration::from_secs(60), |sim| {
            pump(sim, hosts, &mut out);
            false
        });
        assert_eq!(out.selected, [None, None], "{wrong}");
        assert_ne!(agent(&sim, hosts[0]).state(), ConnectionState::Connected);
        assert_ne!(agent(&sim, hosts[1]).state(), ConnectionState::Connected);
    }
}

/// Sends Binding requests from ever new source addresses: some with a wrong
/// password, some with the right one (an attacker who read the SDP).
struct Flooder {
    target: SocketAddr,
    ufrag: String,
    pwd: String,
    sent: u32,
    next: Option<std::time::Instant>,
    out: std::collections::VecDeque<Transmit>,
}

impl Machine for Flooder {
    type Event = ();
    fn handle_receive(&mut self, _: std::time::Instant, _: Receive<'_>) {}
    fn handle_timeout(&mut self, now: std::time::Instant) {
        if self.next.is_some_and(|t| now >= t) {
            for _ in 0..50 {
                self.sent += 1;
                let n = self.sent;
                let mut buf = Vec::new();
                let username = format!("{}:evil", self.ufrag);
                let key = if n % 2 == 0 {
                    IntegrityKey::short_term(&self.pwd)
                } else {
                    IntegrityKey::short_term("wrong-password-wrong-pw")
                };
                let mut tid = [0u8; 12];
                tid[..4].copy_from_slice(&n.to_be_bytes());
                MessageEncoder::new(&mut buf, MessageType::BINDING_REQUEST, TransactionId(tid))
                    .attribute(&Attribute::Username(&username))
                    .attribute(&Attribute::Priority(n))
                    .attribute(&Attribute::IceControlled(1))
                    .message_integrity(&key)
                    .fingerprint()
                    .finish()
                    .expect("encode");
                let src =
                    SocketAddr::new(IpAddr::from([192, 0, 2, 200]), 1024 + (n % 60000) as u16);
                self.out.push_back(Transmit {
                    source: Some(src),
                    destination: self.target,
                    contents: buf,
                });
                // Junk that is not STUN, from a source that never authenticated.
                if n % 2 == 1 {
                    self.out.push_back(Transmit {
                        source: Some(src),
                        destination: self.target,
                        contents: vec![0x17; 40],
                    });
                }
            }
            self.next = Some(now + Duration::from_millis(10));
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.next
    }
}

#[test]
fn flood_of_checks_keeps_state_bounded() {
    let (mut sim, hosts) = pair_setup(Nat::None, Nat::None, 9);
    let target = sim.addrs(hosts[1])[0];
    let cb = agent(&sim, hosts[1]).local_credentials().clone();
    let flooder = Flooder {
        target,
        ufrag: cb.ufrag,
        pwd: cb.pwd,
        sent: 0,
        next: Some(sim.now()),
        out: Default::default(),
    };
    let f = sim.add_host(flooder, &[addr("192.0.2.200:1")]);
    sim.set_spoofing(f, true);
    sim.set_link(f, LinkConfig::ideal());
    let (ok, out) = connect(&mut sim, hosts, Duration::from_secs(10));
    assert!(ok, "{out:?}");
    let mut out = out;
    sim.run_for_with(Duration::from_secs(5), |sim| {
        pump(sim, hosts, &mut out);
        false
    });
    let flooded = sim.machine::<Flooder>(f).sent;
    assert!(flooded > 10_000, "{flooded}");
    let b = agent(&sim, hosts[1]);
    let config = ice::Config::default();
    assert!(b.remote_candidates().len() <= config.max_remote_candidates);
    assert!(b.pairs().len() <= config.max_pairs);
    assert!(b.transactions_in_flight() <= config.checks.max_transactions);
    // The real peer is still the selected one, and data from junk sources is
    // not passed up.
    assert_eq!(b.state(), ConnectionState::Connected);
    assert!(out.data[1].is_empty());
}

fn symmetric() -> Nat {
    Nat::Kind(
        sim::MappingBehavior::AddressAndPortDependent,
        sim::FilteringBehavior::AddressAndPortDependent,
    )
}

/// Sends `n` numbered datagrams each way over the selected pair; returns how
/// many arrived on each side.
fn exchange(sim: &mut Sim, hosts: [HostId; 2], out: &mut Outcome, n: usize) -> [usize; 2] {
    out.data = [Vec::new(), Vec::new()];
    for i in 0..n {
        for (side, &h) in hosts.iter().enumerate() {
            let msg = format!("\x17{side} {i}");
            transport(sim, h).send(msg.as_bytes()).expect("connected");
        }
        sim.run_for_with(Duration::from_millis(20), |sim| {
            pump(sim, hosts, out);
            false
        });
    }
    sim.run_for_with(Duration::from_millis(500), |sim| {
        pump(sim, hosts, out);
        false
    });
    [out.data[0].len(), out.data[1].len()]
}

/// Symmetric NATs on both sides, 20% loss and reordering on both access
/// links: only the relay works, and it still connects and carries data.
#[test]
fn relayed_connects_under_loss_and_reordering() {
    for seed in 0..6 {
        let (mut sim, hosts) = setup(symmetric(), symmetric(), 2000 + seed, true);
        let bad = LinkConfig {
            loss: 0.2,
            reorder: 0.2,
            jitter: Duration::from_millis(5),
            ..LinkConfig::default()
        };
        for &h in &hosts {
            sim.set_link(h, bad.clone());
        }
        let (ok, mut out) = connect(&mut sim, hosts, Duration::from_secs(60));
        assert!(ok, "seed {seed}: {out:?}");
        let (l, r) = out.selected[0].expect("selected");
        assert!(
            l == CandidateKind::Relayed || r == CandidateKind::Relayed,
            "seed {seed}: {l:?}-{r:?}"
        );
        let got = exchange(&mut sim, hosts, &mut out, 50);
        // 20% loss on each of two access links per direction (plus the
        // TURN leg): well over a third arrive, never nothing.
        assert!(got[0] > 15 && got[1] > 15, "seed {seed}: {got:?}");
    }
}

/// Over a relayed pair: a channel is bound for the selected pair, the
/// allocation, permissions and channel are refreshed for 20 virtual minutes
/// (twice the allocation and channel lifetimes), data flows all along, and
/// `close` releases the allocations on the server.
#[test]
fn relayed_pair_uses_a_channel_refreshes_and_closes() {
    let (mut sim, hosts) = setup(symmetric(), symmetric(), 31, true);
    let (ok, mut out) = connect(&mut sim, hosts, Duration::from_secs(30));
    assert!(ok, "{out:?}");
    let turn_host = sim
        .hosts()
        .find(|&h| sim.addrs(h).contains(&addr(TURN)))
        .expect("the TURN host");
    assert_eq!(
        sim.machine::<rtclab::turn::Server>(turn_host).allocations(),
        2
    );
    assert_eq!(exchange(&mut sim, hosts, &mut out, 5), [5, 5]);
    // The side whose local candidate is relayed bound a channel to the
    // remote address of the pair, and data now goes as ChannelData.
    let mut channels = 0;
    for &h in &hosts {
        let t = sim.machine::<IceTransport>(h);
        let (base, remote) = t.agent().selected_path().expect("a path");
        if Some(base) == t.relayed_address() {
            let turn = t.turn_client().expect("TURN client");
            assert!(turn.channel(remote).is_some(), "no channel to {remote}");
            channels += 1;
        }
    }
    assert!(channels >= 1);
    for minute in 1..=20 {
        sim.run_for_with(Duration::from_secs(60), |sim| {
            pump(sim, hosts, &mut out);
            false
        });
        assert_eq!(
            exchange(&mut sim, hosts, &mut out, 2),
            [2, 2],
            "minute {minute}"
        );
        for &h in &hosts {
            assert_eq!(agent(&sim, h).state(), ConnectionState::Connected);
            assert!(matches!(
                sim.machine::<IceTransport>(h).relay_status(),
                RelayStatus::Allocated { .. }
            ));
        }
    }
    assert_eq!(
        sim.machine::<rtclab::turn::Server>(turn_host).allocations(),
        2
    );
    for &h in &hosts {
        let now = sim.now();
        transport(&mut sim, h).close(now);
    }
    sim.run_for(Duration::from_secs(2));
    assert_eq!(
        sim.machine::<rtclab::turn::Server>(turn_host).allocations(),
        0
    );
    for &h in &hosts {
        assert!(matches!(
            sim.machine::<IceTransport>(h).relay_status(),
            RelayStatus::Closed { error: None }
        ));
    }
}

/// Injects datagrams that claim to come from the TURN server, once woken
/// (after the test allowed it to spoof).
struct Spoofer {
    at: Option<std::time::Instant>,
    pending: std::collections::VecDeque<Transmit>,
    out: std::collections::VecDeque<Transmit>,
}

impl Machine for Spoofer {
    type Event = ();
    fn handle_receive(&mut self, _: std::time::Instant, _: Receive<'_>) {}
    fn handle_timeout(&mut self, _: std::time::Instant) {
        self.at = None;
        self.out.append(&mut self.pending);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.at
    }
}

/// ChannelData on a channel never bound and Data indications from peers we
/// never gave a permission, carrying well-formed, correctly authenticated
/// checks, reach the transport from the TURN server's address: all are
/// dropped, and no candidate, pair or transaction is added.
#[test]
fn bogus_turn_data_is_dropped_without_state_growth() {
    use rtclab::turn::{ChannelData, TurnAttribute};
    let (mut sim, hosts) = setup(Nat::None, Nat::None, 41, true);
    let (ok, mut out) = connect(&mut sim, hosts, Duration::from_secs(10));
    assert!(ok, "{out:?}");
    sim.run_for(Duration::from_secs(1));
    let target = sim.addrs(hosts[1])[0];
    let creds = agent(&sim, hosts[1]).local_credentials().clone();
    let before = {
        let a = agent(&sim, hosts[1]);
        (
            a.remote_candidates().len(),
            a.pairs().len(),
            a.transactions_in_flight(),
        )
    };
    let stats_before = sim.machine::<IceTransport>(hosts[1]).relay_stats();
    let delivered_before = sim.host_stats(hosts[1]).delivered;
    let mut spoofed = std::collections::VecDeque::new();
    for n in 0..2000u32 {
        // A check with the right credentials, as an attacker who read the
        // SDP could build it.
        let mut check = Vec::new();
        let mut tid = [0u8; 12];
        tid[..4].copy_from_slice(&n.to_be_bytes());
        MessageEncoder::new(&mut check, MessageType::BINDING_REQUEST, TransactionId(tid))
            .attribute(&Attribute::Username(&format!("{}:evil", creds.ufrag)))
            .attribute(&Attribute::Priority(n))
            .attribute(&Attribute::IceControlling(1))
            .message_integrity(&IntegrityKey::short_term(&creds.pwd))
            .fingerprint()
            .finish()
            .expect("encode");
        let peer = SocketAddr::new(IpAddr::from([192, 0, 2, 99]), 1024 + (n % 60000) as u16);
        let mut contents = Vec::new();
        if n % 2 == 0 {
            ChannelData {
                channel: 0x4000 + (n % 0x1000) as u16,
                data: &check,
            }
            .emit(&mut contents)
            .expect("channel data");
        } else {
            let mut enc = MessageEncoder::new(
                &mut contents,
                rtclab::stun::MessageType::new(
                    rtclab::stun::Class::Indication,
                    rtclab::stun::Method::DATA,
                ),
                TransactionId(tid),
            );
            TurnAttribute::XorPeerAddress(peer).emit(&mut enc);
            TurnAttribute::Data(&check).emit(&mut enc);
            enc.finish().expect("data indication");
        }
        spoofed.push_back(Transmit {
            source: Some(addr(TURN)),
            destination: target,
            contents,
        });
    }
    let spoofer = Spoofer {
        at: Some(sim.now()),
        pending: spoofed,
        out: Default::default(),
    };
    let s = sim.add_host(spoofer, &[addr("192.0.2.250:1")]);
    sim.set_spoofing(s, true);
    sim.set_link(s, LinkConfig::ideal());
    sim.run_for_with(Duration::from_secs(2), |sim| {
        pump(sim, hosts, &mut out);
        false
    });
    let a = agent(&sim, hosts[1]);
    let after = (
        a.remote_candidates().len(),
        a.pairs().len(),
        a.transactions_in_flight(),
    );
    assert_eq!(after.0, before.0, "remote candidates");
    assert_eq!(after.1, before.1, "pairs");
    assert!(
        after.2 <= before.2 + 1,
        "transactions {before:?} → {after:?}"
    );
    let stats = sim.machine::<IceTransport>(hosts[1]).relay_stats();
    assert!(sim.host_stats(hosts[1]).delivered - delivered_before >= 2000);
    assert_eq!(
        stats.received, stats_before.received,
        "nothing reached the agent"
    );
    assert_eq!(
        stats.refused - stats_before.refused,
        1000,
        "each Data indication dropped"
    );
    assert!(out.data[1].is_empty());
    assert_eq!(a.state(), ConnectionState::Connected);
}
