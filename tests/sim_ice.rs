//! ICE in the simulator: two agents connect on an open network and through
//! every pair of RFC 4787 NAT kinds (with a STUN server on the public side),
//! under loss and reordering; consent loss is detected; bad credentials never
//! select a pair; a flood of checks keeps state bounded. Deterministic seeds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::ice::{Agent, AgentConfig, CandidateKind, ConnectionState, FailureReason, IceEvent};
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::sim::{self, HostId, LinkConfig, NatConfig, Sim};
use rtclab::stun::{
    Attribute, BindingServer, IntegrityKey, MessageEncoder, MessageType, ServerConfig,
    TransactionId,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

const STUN: &str = "198.51.100.1:3478";

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

fn add_peer(sim: &mut Sim, nat: Nat, n: u8, controlling: bool, seed: u64) -> Peer {
    let config = AgentConfig {
        controlling,
        stun_server: Some(addr(STUN)),
        ..AgentConfig::default()
    };
    let mut agent = Agent::new(config, StdRng::seed_from_u64(seed));
    let host = match nat {
        Nat::None => {
            let a = addr(&format!("192.0.2.{}:5000", 10 + n));
            agent.add_local_host(sim.now(), a).expect("host");
            sim.add_host(agent, &[a])
        }
        Nat::Kind(m, f) => {
            let nat = sim.add_nat(NatConfig {
                mapping: m,
                filtering: f,
                ..NatConfig::new(ip(&format!("203.0.113.{}", 1 + n)))
            });
            let a = addr(&format!("10.0.{n}.2:5000"));
            agent.add_local_host(sim.now(), a).expect("host");
            sim.add_host_behind(nat, agent, &[a])
        }
    };
    Peer { host }
}

fn add_stun(sim: &mut Sim) {
    let server = BindingServer::new(ServerConfig::new(addr(STUN))).expect("server");
    let locals = server.local_addrs().to_vec();
    sim.add_host(server, &locals);
}

fn exchange_credentials(sim: &mut Sim, a: HostId, b: HostId) {
    let now = sim.now();
    let ca = sim.machine::<Agent>(a).local_credentials().clone();
    let cb = sim.machine::<Agent>(b).local_credentials().clone();
    sim.machine_mut::<Agent>(a)
        .set_remote_credentials(now, &cb.ufrag, &cb.pwd);
    sim.machine_mut::<Agent>(b)
        .set_remote_credentials(now, &ca.ufrag, &ca.pwd);
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
        let events = sim.events::<Agent>(hosts[side]);
        let now = sim.now();
        for e in events {
            match e {
                IceEvent::LocalCandidate(c) => {
                    // Signaling is a text channel: send the SDP line.
                    let line = c.to_string();
                    let c = line.parse().expect("our own candidate parses");
                    let _ = sim
                        .machine_mut::<Agent>(hosts[1 - side])
                        .add_remote_candidate(now, c);
                }
                IceEvent::GatheringComplete => {
                    sim.machine_mut::<Agent>(hosts[1 - side])
                        .end_of_remote_candidates(now);
                }
                IceEvent::SelectedPair { local, remote } => {
                    out.selected[side] = Some((local.kind, remote.kind));
                }
                IceEvent::Failed(r) => {
                    if r == FailureReason::ConsentLost {
                        out.consent_lost[side] = true;
                    }
                    out.failed[side] = Some(r);
                }
                IceEvent::Data { data, .. } => out.data[side].push(data),
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
            .all(|&h| sim.machine::<Agent>(h).state() == ConnectionState::Connected);
        let failed = out.failed.iter().any(|f| f.is_some());
        (connected && out.selected.iter().all(|s| s.is_some())) || failed
    });
    let connected = ok && out.failed.iter().all(|f| f.is_none());
    (connected, out)
}

fn pair_setup(na: Nat, nb: Nat, seed: u64) -> (Sim, [HostId; 2]) {
    let mut sim = Sim::new(seed);
    add_stun(&mut sim);
    let a = add_peer(&mut sim, na, 1, true, seed * 2 + 1);
    let b = add_peer(&mut sim, nb, 2, false, seed * 2 + 2);
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
    sim.machine_mut::<Agent>(hosts[0])
        .send(b"\x17hello")
        .expect("send");
    sim.machine_mut::<Agent>(hosts[1])
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
        assert_eq!(sim.machine::<Agent>(h).state(), ConnectionState::Connected);
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

#[test]
fn nat_matrix() {
    let kinds = Nat::all();
    let mut table = String::new();
    let mut mismatches = Vec::new();
    for (i, &na) in kinds.iter().enumerate() {
        for (j, &nb) in kinds.iter().enumerate() {
            let (mut sim, hosts) = pair_setup(na, nb, 100 + (i * 10 + j) as u64);
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
            if ok != expect_connect(na, nb) {
                mismatches.push(format!("{} x {}", na.short(), nb.short()));
            }
            if ok {
                // The selected pair's candidate types follow from the NATs.
                let (l, r) = out.selected[0].expect("selected");
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
    assert_eq!(
        sim.machine::<Agent>(hosts[0]).state(),
        ConnectionState::Failed
    );
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
        if disconnected.is_none()
            && sim.machine::<Agent>(hosts[0]).state() == ConnectionState::Disconnected
        {
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
    assert_eq!(
        sim.machine::<Agent>(hosts[0]).state(),
        ConnectionState::Failed
    );
    assert!(sim.machine_mut::<Agent>(hosts[0]).send(b"x").is_err());
}

/// A peer that knows the right ufrag pair but the wrong password (or the
/// wrong ufrag) never gets a pair selected.
#[test]
fn wrong_password_or_username_never_selects() {
    for wrong in ["password", "username"] {
        let (mut sim, hosts) = pair_setup(Nat::None, Nat::None, 5);
        let now = sim.now();
        let ca = sim.machine::<Agent>(hosts[0]).local_credentials().clone();
        let cb = sim.machine::<Agent>(hosts[1]).local_credentials().clone();
        let (ufrag, pwd) = if wrong == "password" {
            (cb.ufrag.clone(), "not-the-password-at-all-x".to_string())
        } else {
            ("nobody".to_string(), cb.pwd.clone())
        };
        sim.machine_mut::<Agent>(hosts[0])
            .set_remote_credentials(now, &ufrag, &pwd);
        sim.machine_mut::<Agent>(hosts[1])
            .set_remote_credentials(now, &ca.ufrag, &ca.pwd);
        let mut out = Outcome::default();
        sim.run_for_with(Duration::from_secs(60), |sim| {
            pump(sim, hosts, &mut out);
            false
        });
        assert_eq!(out.selected, [None, None], "{wrong}");
        assert_ne!(
            sim.machine::<Agent>(hosts[0]).state(),
            ConnectionState::Connected
        );
        assert_ne!(
            sim.machine::<Agent>(hosts[1]).state(),
            ConnectionState::Connected
        );
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
    let cb = sim.machine::<Agent>(hosts[1]).local_credentials().clone();
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
    let b = sim.machine::<Agent>(hosts[1]);
    let config = AgentConfig::default();
    assert!(b.remote_candidates().len() <= config.max_remote_candidates);
    assert!(b.pairs().len() <= config.max_pairs);
    assert!(b.transactions_in_flight() <= config.checks.max_transactions);
    // The real peer is still the selected one, and data from junk sources is
    // not passed up.
    assert_eq!(b.state(), ConnectionState::Connected);
    assert!(out.data[1].is_empty());
}
