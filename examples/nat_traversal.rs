//! Chapter 8: NAT traversal, in the simulator.
//!
//! Part 1 shows what a NAT does: a host behind each kind of RFC 4787 NAT
//! sends to three servers (which public address does each one see?), then
//! strangers try to send in (which ones does the filter let through?).
//!
//! Part 2 follows one ICE run through two NATs, with a TURN server, and
//! prints the controlling agent's check list each time it changes.
//!
//! Part 3 runs every pair of NAT kinds, without and with a TURN server, and
//! prints which path won.
//!
//! Everything runs at virtual time with fixed seeds: the output is the same
//! on every run. Run it with `cargo run --example nat_traversal`
//! (`-- --pcap FILE` writes part 2's run as A sees it, its NAT's inside:
//! the STUN and TURN exchanges and the checks, for `rtclab xray FILE`).

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::ice::{
    self, CandidateKind, CandidatePair, ConnectionState, FailureReason, IceTransport, PairState,
    TransportConfig,
};
use rtclab::machine::Transmit;
use rtclab::sim::{CaptureKind, Echo, FilteringBehavior, HostId, MappingBehavior, NatConfig, Sim};
use rtclab::stun::{self, BindingServer};

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
pub mod pcap;

const STUN: &str = "198.51.100.1:3478";
const TURN: &str = "198.51.100.2:3478";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("a valid address literal")
}

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Runs the three parts, printing to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    what_a_nat_does(out)?;
    check_list(out)?;
    matrix(out)
}

// ---- part 1: what a NAT does ----------------------------------------------

fn mapping_name(m: MappingBehavior) -> &'static str {
    match m {
        MappingBehavior::EndpointIndependent => "EI",
        MappingBehavior::AddressDependent => "AD",
        MappingBehavior::AddressAndPortDependent => "APD",
    }
}

fn filtering_name(f: FilteringBehavior) -> &'static str {
    match f {
        FilteringBehavior::EndpointIndependent => "EI",
        FilteringBehavior::AddressDependent => "AD",
        FilteringBehavior::AddressAndPortDependent => "APD",
    }
}

const MAPPINGS: [MappingBehavior; 3] = [
    MappingBehavior::EndpointIndependent,
    MappingBehavior::AddressDependent,
    MappingBehavior::AddressAndPortDependent,
];

const FILTERS: [FilteringBehavior; 3] = [
    FilteringBehavior::EndpointIndependent,
    FilteringBehavior::AddressDependent,
    FilteringBehavior::AddressAndPortDependent,
];

/// Part 1: mapping, then filtering, for each kind of NAT.
pub fn what_a_nat_does(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out, "== what a NAT does (RFC 4787) ==")?;
    writeln!(out)?;
    writeln!(
        out,
        "Mapping: 10.0.0.2:5000, behind a NAT with public IP 203.0.113.1, sends one datagram"
    )?;
    writeln!(
        out,
        "to S1 198.51.100.1:3478, S2 198.51.100.1:3479 (same IP) and S3 198.51.100.9:3478."
    )?;
    writeln!(out, "Each server sees the datagram come from:")?;
    writeln!(out, "  mapping  S1                  S2                  S3")?;
    let servers = [
        addr("198.51.100.1:3478"),
        addr("198.51.100.1:3479"),
        addr("198.51.100.9:3478"),
    ];
    for m in MAPPINGS {
        // ANCHOR: mapping_demo
        let mut sim = Sim::new(1);
        sim.add_host(Echo::default(), &servers[..2]);
        sim.add_host(Echo::default(), &servers[2..]);
        let nat = sim.add_nat(NatConfig {
            mapping: m,
            ..NatConfig::new("203.0.113.1".parse()?)
        });
        let inside = addr("10.0.0.2:5000");
        let host = sim.add_host_behind(nat, Echo::default(), &[inside]);
        for to in servers {
            sim.machine_mut::<Echo>(host).send(Transmit {
                source: Some(inside),
                destination: to,
                contents: b"hello".to_vec(),
            });
        }
        sim.set_capture(true);
        // 10 ms to reach the servers: stop before their echoes come back.
        sim.run_for(Duration::from_millis(12));
        let capture = sim.drain_capture();
        let seen_by = |server: SocketAddr| {
            capture
                .iter()
                .find(|r| r.kind == CaptureKind::Delivered && r.destination == server)
                .map(|r| r.source)
        };
        // ANCHOR_END: mapping_demo
        let cells: Vec<String> = servers
            .iter()
            .map(|&s| seen_by(s).map_or("-".to_string(), |a| a.to_string()))
            .collect();
        writeln!(
            out,
            "  {:<8} {:<19} {:<19} {}",
            mapping_name(m),
            cells[0],
            cells[1],
            cells[2]
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Filtering: the host sends to S1 only; then S1, a stranger on S1's IP"
    )?;
    writeln!(
        out,
        "(198.51.100.1:4000) and one elsewhere (198.51.100.9:3478) send to its mapping."
    )?;
    writeln!(out, "  filtering  from S1     same IP     other IP")?;
    for f in FILTERS {
        let mut sim = Sim::new(2);
        let s1 = servers[0];
        let same_ip = addr("198.51.100.1:4000");
        let other = servers[2];
        let s1_host = sim.add_host(Echo::default(), &[s1, same_ip]);
        let other_host = sim.add_host(Echo::default(), &[other]);
        let nat = sim.add_nat(NatConfig {
            filtering: f,
            ..NatConfig::new("203.0.113.1".parse()?)
        });
        let inside = addr("10.0.0.2:5000");
        let host = sim.add_host_behind(nat, Echo::default(), &[inside]);
        sim.machine_mut::<Echo>(host).send(Transmit {
            source: Some(inside),
            destination: s1,
            contents: b"open".to_vec(),
        });
        // The request reaches S1 at 10 ms (and is echoed); read the mapping.
        sim.run_for(Duration::from_millis(11));
        let mapped = sim
            .nat_bindings(nat)
            .first()
            .map(|b| b.external)
            .ok_or("no mapping")?;
        sim.set_capture(true);
        for (h, from) in [(s1_host, s1), (s1_host, same_ip), (other_host, other)] {
            sim.machine_mut::<Echo>(h).send(Transmit {
                source: Some(from),
                destination: mapped,
                contents: b"knock".to_vec(),
            });
        }
        sim.run_for(Duration::from_millis(12));
        let capture = sim.drain_capture();
        let verdict = |from: SocketAddr| {
            let got = capture.iter().any(|r| {
                r.kind == CaptureKind::Delivered
                    && r.destination == inside
                    && r.contents == b"knock"
                    && r.source == from
            });
            if got { "passes" } else { "dropped" }
        };
        writeln!(
            out,
            "  {:<10} {:<11} {:<11} {}",
            filtering_name(f),
            verdict(s1),
            verdict(same_ip),
            verdict(other)
        )?;
    }
    writeln!(out)?;
    Ok(())
}

// ---- the peers --------------------------------------------------------------

/// Where a peer sits: on the open internet, or behind a NAT of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// A public address, no NAT.
    Open,
    /// A NAT with this mapping and filtering behaviour.
    Kind(MappingBehavior, FilteringBehavior),
}

impl Nat {
    /// The ten kinds: open, then mapping × filtering.
    pub fn all() -> Vec<Nat> {
        let mut v = vec![Nat::Open];
        for m in MAPPINGS {
            for f in FILTERS {
                v.push(Nat::Kind(m, f));
            }
        }
        v
    }

    fn short(self) -> String {
        match self {
            Nat::Open => "open".into(),
            Nat::Kind(m, f) => format!("{}/{}", mapping_name(m), filtering_name(f)),
        }
    }
}

// ANCHOR: peer
/// A peer: an ICE agent with a STUN server for server-reflexive candidates
/// and, if `turn`, a TURN server for a relayed one. `n` numbers its
/// addresses.
fn add_peer(sim: &mut Sim, nat: Nat, n: u8, controlling: bool, turn: bool) -> HostId {
    let config = TransportConfig {
        agent: ice::Config {
            controlling,
            stun_server: Some(addr(STUN)),
            ..ice::Config::default()
        },
        turn: turn.then(|| rtclab::turn::client::Config::new(addr(TURN), "alice", "secret")),
    };
    let mut peer = IceTransport::new(config, StdRng::seed_from_u64(u64::from(n)));
    match nat {
        Nat::Open => {
            let a = addr(&format!("192.0.2.{}:5000", 10 + n));
            let _ = peer.add_local_host(sim.now(), a);
            sim.add_host(peer, &[a])
        }
        Nat::Kind(mapping, filtering) => {
            let nat = sim.add_nat(NatConfig {
                mapping,
                filtering,
                ..NatConfig::new(format!("203.0.113.{}", 1 + n).parse().expect("an IP"))
            });
            let a = addr(&format!("10.0.{n}.2:5000"));
            let _ = peer.add_local_host(sim.now(), a);
            sim.add_host_behind(nat, peer, &[a])
        }
    }
}
// ANCHOR_END: peer

/// A STUN server, a TURN server (if `turn`) and two peers: A controlling
/// behind `a`, B controlled behind `b`; `capture`: from the start, if
/// `--pcap` asked for it.
fn network(a: Nat, b: Nat, turn: bool, seed: u64, capture: bool) -> (Sim, [HostId; 2]) {
    let mut sim = Sim::new(seed);
    if capture {
        pcap::start(&mut sim);
    }
    let stun = BindingServer::new(stun::server::Config::new(addr(STUN))).expect("a STUN server");
    let locals = stun.local_addrs().to_vec();
    sim.add_host(stun, &locals);
    if turn {
        // ANCHOR: turn_server
        let listen = addr(TURN);
        let relays = (0..8)
            .map(|i| SocketAddr::new(listen.ip(), 50000 + i))
            .collect();
        let mut config = rtclab::turn::server::Config::new(listen, relays, "rtclab");
        config.users.push(("alice".into(), "secret".into()));
        let server = rtclab::turn::Server::new(config, sim.now(), sim.rng(77));
        let locals = server.local_addrs().to_vec();
        sim.add_host(server, &locals);
        // ANCHOR_END: turn_server
    }
    let pa = add_peer(&mut sim, a, 1, true, turn);
    let pb = add_peer(&mut sim, b, 2, false, turn);
    (sim, [pa, pb])
}

/// What one connection attempt gave.
#[derive(Debug, Default)]
struct Outcome {
    /// A's selected pair: (local kind, remote kind).
    selected: Option<(CandidateKind, CandidateKind)>,
    failed: Option<FailureReason>,
}

// ANCHOR: signaling
/// The signaling channel: trickles each side's candidates (as `candidate:`
/// text) and end-of-candidates to the other, and records what happened.
fn signal(sim: &mut Sim, peers: [HostId; 2], out: &mut Outcome) {
    for side in 0..2 {
        let now = sim.now();
        for event in sim.events::<IceTransport>(peers[side]) {
            let other = sim.machine_mut::<IceTransport>(peers[1 - side]);
            match event {
                ice::Event::LocalCandidate(c) => {
                    let line = c.to_string();
                    let _ = other.add_remote_candidate(now, line.parse().expect("ours parse"));
                }
                ice::Event::GatheringComplete => other.end_of_remote_candidates(now),
                ice::Event::SelectedPair { local, remote } if side == 0 => {
                    out.selected = Some((local.kind, remote.kind));
                }
                ice::Event::Failed(reason) => out.failed = Some(reason),
                _ => {}
            }
        }
    }
}
// ANCHOR_END: signaling

fn start(sim: &mut Sim, peers: [HostId; 2]) {
    let now = sim.now();
    let ca = sim
        .machine::<IceTransport>(peers[0])
        .local_credentials()
        .clone();
    let cb = sim
        .machine::<IceTransport>(peers[1])
        .local_credentials()
        .clone();
    sim.machine_mut::<IceTransport>(peers[0])
        .set_remote_credentials(now, &cb.ufrag, &cb.pwd);
    sim.machine_mut::<IceTransport>(peers[1])
        .set_remote_credentials(now, &ca.ufrag, &ca.pwd);
}

fn done(sim: &Sim, peers: [HostId; 2], out: &Outcome) -> bool {
    out.failed.is_some()
        || (out.selected.is_some()
            && peers.iter().all(|&p| {
                sim.machine::<IceTransport>(p).agent().state() == ConnectionState::Connected
            }))
}

fn connect(a: Nat, b: Nat, turn: bool, seed: u64) -> Outcome {
    let (mut sim, peers) = network(a, b, turn, seed, false);
    start(&mut sim, peers);
    let mut out = Outcome::default();
    sim.run_for_with(Duration::from_secs(90), |sim| {
        signal(sim, peers, &mut out);
        done(sim, peers, &out)
    });
    out
}

// ---- part 2: the check list over time -------------------------------------

fn kind(k: CandidateKind) -> &'static str {
    match k {
        CandidateKind::Host => "host",
        CandidateKind::ServerReflexive => "srflx",
        CandidateKind::PeerReflexive => "prflx",
        CandidateKind::Relayed => "relay",
    }
}

/// One letter per pair state.
fn letter(p: &CandidatePair) -> char {
    match (p.state, p.nominated) {
        (_, true) => 'N',
        (PairState::Frozen, _) => 'F',
        (PairState::Waiting, _) => 'W',
        (PairState::InProgress, _) => 'I',
        (PairState::Succeeded, _) => 'S',
        (PairState::Failed, _) => 'x',
    }
}

/// Part 2: A behind an address-dependent filter ("restricted cone"), B
/// behind a symmetric NAT, both with TURN. Prints A's check list each time
/// a pair changes state: one row per change, one column per pair.
pub fn check_list(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let a = Nat::Kind(
        MappingBehavior::EndpointIndependent,
        FilteringBehavior::AddressDependent,
    );
    let b = Nat::Kind(
        MappingBehavior::AddressAndPortDependent,
        FilteringBehavior::AddressAndPortDependent,
    );
    writeln!(
        out,
        "== one run: A behind {} (controlling), B behind {}, both with TURN ==",
        a.short(),
        b.short()
    )?;
    let (mut sim, peers) = network(a, b, true, 8, true);
    // Gathering: host, server-reflexive (STUN), relayed (TURN) candidates
    // trickle to the other side while the offer and answer travel.
    let mut o = Outcome::default();
    sim.run_for_with(Duration::from_millis(100), |sim| {
        signal(sim, peers, &mut o);
        false
    });
    writeln!(out, "A's candidates, gathered in the first 100 ms:")?;
    for l in sim
        .machine::<IceTransport>(peers[0])
        .agent()
        .local_candidates()
    {
        writeln!(out, "  {}", l.candidate)?;
    }
    writeln!(
        out,
        "t = time since both sides have the other's credentials; F frozen, W waiting,"
    )?;
    writeln!(
        out,
        "I in progress, S succeeded, x failed, N nominated (selected); pairs below."
    )?;
    start(&mut sim, peers);
    let t0 = sim.now();
    // ANCHOR: snapshots
    let mut last = String::new();
    while !done(&sim, peers, &o) && sim.now() - t0 < Duration::from_secs(10) {
        sim.step();
        signal(&mut sim, peers, &mut o);
        let agent = sim.machine::<IceTransport>(peers[0]).agent();
        let row: String = agent
            .pairs()
            .iter()
            .map(|p| format!(" {}", letter(p)))
            .collect();
        if row != last {
            let at = (sim.now() - t0).as_secs_f64();
            writeln!(out, "  t={at:.3}s{row}")?;
            last = row;
        }
    }
    // ANCHOR_END: snapshots
    let agent = sim.machine::<IceTransport>(peers[0]).agent();
    let (local, remote) = (agent.local_candidates(), agent.remote_candidates());
    writeln!(out, "pairs, in the order they were formed:")?;
    for (i, p) in agent.pairs().iter().enumerate() {
        let l = &local[p.local];
        let r = &remote[p.remote];
        let raddr = r.socket_addr().map_or("?".to_string(), |a| a.to_string());
        // A valid pair's local candidate is the address the peer saw.
        let seen = match p.valid_local.map(|v| &local[v].candidate) {
            Some(v) if v.kind != l.candidate.kind => format!(
                "  (B sees {} {})",
                kind(v.kind),
                v.socket_addr().map_or("?".to_string(), |a| a.to_string())
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "  {:>2}: {:<5} {:<20} → {:<5} {:<20}{seen}",
            i + 1,
            kind(l.candidate.kind),
            l.base.to_string(),
            kind(r.kind),
            raddr,
        )?;
    }
    let took = (sim.now() - t0).as_secs_f64();
    match o.selected {
        Some((l, r)) => writeln!(out, "selected after {took:.3}s: {} → {}", kind(l), kind(r))?,
        None => writeln!(out, "no pair selected: {:?}", o.failed)?,
    }
    writeln!(out)?;
    pcap::save(&mut sim, peers[0], &[])?;
    Ok(())
}

// ---- part 3: the matrix -----------------------------------------------------

/// Part 3: every pair of NAT kinds, without and with TURN.
pub fn matrix(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let kinds = Nat::all();
    for turn in [false, true] {
        writeln!(
            out,
            "== which path won: A (row, controlling) × B (column), {} ==",
            if turn { "with TURN" } else { "no TURN server" }
        )?;
        write!(out, "{:>8} |", "A \\ B")?;
        for b in &kinds {
            write!(out, " {:<11}", b.short())?;
        }
        writeln!(out)?;
        let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
        for (i, &a) in kinds.iter().enumerate() {
            write!(out, "{:>8} |", a.short())?;
            for (j, &b) in kinds.iter().enumerate() {
                let o = connect(a, b, turn, 100 + (i * 10 + j) as u64);
                let cell = match (&o.selected, &o.failed) {
                    (Some((l, r)), None) => format!("{}-{}", kind(*l), kind(*r)),
                    (_, Some(f)) => {
                        *reasons.entry(f.to_string()).or_default() += 1;
                        "fails".to_string()
                    }
                    (None, None) => "timeout".to_string(),
                };
                write!(out, " {cell:<11}")?;
            }
            writeln!(out)?;
        }
        for (reason, n) in reasons {
            writeln!(out, "fails ({n}×): {reason}")?;
        }
        writeln!(out)?;
    }
    writeln!(
        out,
        "cells: A's local candidate - B's candidate of A's selected pair; \
         EI/AD/APD = endpoint-independent, address-dependent, address-and-port-dependent"
    )?;
    writeln!(
        out,
        "(mapping/filtering); EI/EI is a \"full cone\", EI/AD \"restricted\", EI/APD \"port-restricted\", APD/APD \"symmetric\"."
    )?;
    Ok(())
}
