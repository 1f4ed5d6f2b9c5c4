//! STUN in the simulator: NAT behaviour discovery classifies every RFC 4787 NAT
//! kind correctly, and transactions complete under heavy loss. Deterministic:
//! each test uses fixed seeds.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rtclab::sim::{self, LinkConfig, NatConfig, Sim};
use rtclab::stun::{
    self, BindingServer, Client, DiscoveryMode, FilteringBehavior, MappingBehavior, MessageEncoder,
    MessageType, NatDiscovery, NatReport, TransactionId,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// An RFC 5780 server on the public side: 198.51.100.1:3478 and
/// 198.51.100.2:3479 (four sockets).
fn add_server(sim: &mut Sim) -> SocketAddr {
    let primary = addr("198.51.100.1:3478");
    let mut config = stun::server::Config::new(primary);
    config.alternate = Some(addr("198.51.100.2:3479"));
    let server = BindingServer::new(config).expect("server config");
    let locals = server.local_addrs().to_vec();
    sim.add_host(server, &locals);
    primary
}

fn discover_behind(nat: NatConfig, seed: u64, loss: f64) -> NatReport {
    let mut sim = Sim::new(seed);
    let server = add_server(&mut sim);
    let nat = sim.add_nat(nat);
    let local = addr("10.0.0.2:5000");
    let discovery = NatDiscovery::new(
        sim.now(),
        server,
        Some(local),
        DiscoveryMode::Both,
        sim.rng(1),
    );
    let host = sim.add_host_behind(nat, discovery, &[local]);
    if loss > 0.0 {
        sim.set_link(
            host,
            LinkConfig {
                loss,
                ..LinkConfig::default()
            },
        );
    }
    let mut result = None;
    let done = sim.run_for_with(Duration::from_secs(120), |sim| {
        if let Some(r) = sim
            .events::<NatDiscovery<rand::rngs::StdRng>>(host)
            .into_iter()
            .next()
        {
            result = Some(r);
        }
        result.is_some()
    });
    assert!(
        done,
        "discovery did not finish within 120 s of virtual time"
    );
    result
        .expect("a result")
        .unwrap_or_else(|e| panic!("discovery failed: {e}"))
}

fn expected_mapping(m: sim::MappingBehavior) -> MappingBehavior {
    match m {
        sim::MappingBehavior::EndpointIndependent => MappingBehavior::EndpointIndependent,
        sim::MappingBehavior::AddressDependent => MappingBehavior::AddressDependent,
        sim::MappingBehavior::AddressAndPortDependent => MappingBehavior::AddressAndPortDependent,
    }
}

fn expected_filtering(f: sim::FilteringBehavior) -> FilteringBehavior {
    match f {
        sim::FilteringBehavior::EndpointIndependent => FilteringBehavior::EndpointIndependent,
        sim::FilteringBehavior::AddressDependent => FilteringBehavior::AddressDependent,
        sim::FilteringBehavior::AddressAndPortDependent => {
            FilteringBehavior::AddressAndPortDependent
        }
    }
}

const MAPPINGS: [sim::MappingBehavior; 3] = [
    sim::MappingBehavior::EndpointIndependent,
    sim::MappingBehavior::AddressDependent,
    sim::MappingBehavior::AddressAndPortDependent,
];
const FILTERINGS: [sim::FilteringBehavior; 3] = [
    sim::FilteringBehavior::EndpointIndependent,
    sim::FilteringBehavior::AddressDependent,
    sim::FilteringBehavior::AddressAndPortDependent,
];

#[test]
fn discovery_classifies_every_rfc4787_nat_kind() {
    for (i, mapping) in MAPPINGS.into_iter().enumerate() {
        for (j, filtering) in FILTERINGS.into_iter().enumerate() {
            for port_preservation in [false, true] {
                let nat = NatConfig {
                    mapping,
                    filtering,
                    port_preservation,
                    ..NatConfig::new(ip("203.0.113.7"))
                };
                let report = discover_behind(nat, 100 + (i * 3 + j) as u64, 0.0);
                let case = format!("{mapping:?} / {filtering:?} / preserve={port_preservation}");
                assert_eq!(report.mapped.ip(), ip("203.0.113.7"), "{case}");
                assert_eq!(report.mapping, Some(expected_mapping(mapping)), "{case}");
                assert_eq!(
                    report.filtering,
                    Some(expected_filtering(filtering)),
                    "{case}"
                );
            }
        }
    }
}

#[test]
fn discovery_without_a_nat_says_so() {
    let mut sim = Sim::new(7);
    let server = add_server(&mut sim);
    let local = addr("192.0.2.10:5000");
    let d = NatDiscovery::new(
        sim.now(),
        server,
        Some(local),
        DiscoveryMode::Both,
        sim.rng(1),
    );
    let host = sim.add_host(d, &[local]);
    let mut got = None;
    assert!(sim.run_for_with(Duration::from_secs(60), |sim| {
        got = sim
            .events::<NatDiscovery<rand::rngs::StdRng>>(host)
            .into_iter()
            .next();
        got.is_some()
    }));
    let report = got.expect("event").expect("success");
    assert_eq!(report.mapped, local);
    assert_eq!(report.mapping, Some(MappingBehavior::NoNat));
    assert_eq!(
        report.filtering,
        Some(FilteringBehavior::EndpointIndependent)
    );
}

#[test]
fn discovery_survives_10_percent_loss() {
    for seed in 0..5 {
        let nat = NatConfig::symmetric(ip("203.0.113.7"));
        let report = discover_behind(nat, 500 + seed, 0.10);
        assert_eq!(
            report.mapping,
            Some(MappingBehavior::AddressAndPortDependent)
        );
        assert_eq!(
            report.filtering,
            Some(FilteringBehavior::AddressAndPortDependent)
        );
    }
}

/// 30% loss each way on every client's access link: with Rc = 7 a
/// transaction fails only if all seven request/response round trips are lost,
/// (1 - 0.7 × 0.7)^7 ≈ 0.9% of the time; the rest complete, each with the
/// right mapped address, and every failure is a timeout at exactly 39.5 s.
#[test]
fn transactions_complete_under_30_percent_loss() {
    let mut sim = Sim::new(30);
    let server = add_server(&mut sim);
    let nat = sim.add_nat(NatConfig::new(ip("203.0.113.7")));
    let lossy = LinkConfig {
        loss: 0.30,
        ..LinkConfig::default()
    };
    const CLIENTS: usize = 100;
    let mut hosts = Vec::new();
    for i in 0..CLIENTS {
        let local: SocketAddr = (ip(&format!("10.0.{}.{}", i / 200, i % 200 + 2)), 4000).into();
        let mut client = Client::new(stun::client::Config::default());
        let mut req = Vec::new();
        MessageEncoder::new(
            &mut req,
            MessageType::BINDING_REQUEST,
            TransactionId([i as u8; 12]),
        )
        .fingerprint()
        .finish()
        .expect("encode");
        client
            .start(sim.now(), req, server, None, None)
            .expect("start");
        let host = sim.add_host_behind(nat, client, &[local]);
        sim.set_link(host, lossy.clone());
        hosts.push(host);
    }
    let start = sim.now();
    sim.run_for(Duration::from_secs(45));
    let mut ok = 0;
    let mut mapped = std::collections::HashSet::new();
    for &h in &hosts {
        let events = sim.events::<Client>(h);
        assert_eq!(events.len(), 1, "one outcome per transaction");
        let stun::client::Event::Completed { result, .. } = &events[0];
        match result {
            Ok(resp) => {
                let m = resp.message().expect("decodes");
                let a = m.xor_mapped_address().expect("valid").expect("present");
                assert_eq!(a.ip(), ip("203.0.113.7"));
                assert!(mapped.insert(a), "two clients got the same mapping");
                ok += 1;
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("39.5"),
                    "a failure must be the RFC timeout: {text}"
                );
            }
        }
    }
    eprintln!(
        "{ok}/{CLIENTS} transactions completed under 30% loss in {:?} of virtual time",
        sim.now() - start
    );
    assert!(
        ok >= 97,
        "only {ok}/{CLIENTS} transactions completed under 30% loss"
    );
}
