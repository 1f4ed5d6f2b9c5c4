//! STUN interop with coturn (Debian package `coturn`): our client against its
//! `turnserver`, and its `turnutils_stunclient` against our server. Everything
//! runs on 127.0.0.1/127.0.0.2 with bounded timeouts.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Peer, free_udp_port, require_binary, run_bounded};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::runtime::Driver;
use rtclab::stun::{
    self, BindingServer, DiscoveryMode, FilteringBehavior, MappingBehavior, NatDiscovery, NatReport,
};

/// Starts coturn as a STUN server on 127.0.0.1:port and, for RFC 5780, on
/// 127.0.0.2 too (coturn's alternate port is port + 1).
fn start_coturn(port: u16) -> Option<Peer> {
    common::start_coturn(port, &["--stun-only", "--listening-ip", "127.0.0.2"])
}

fn discover(server: SocketAddr, mode: DiscoveryMode) -> (SocketAddr, NatReport) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = socket.local_addr().expect("local");
        let machine = NatDiscovery::new(
            Instant::now(),
            server,
            Some(local),
            mode,
            StdRng::seed_from_u64(1),
        );
        let mut driver = Driver::from_sockets(machine, vec![socket]).expect("driver");
        let report = tokio::time::timeout(Duration::from_secs(30), driver.next_event())
            .await
            .expect("discovery finished in time")
            .expect("no I/O error")
            .expect("discovery succeeded");
        (local, report)
    })
}

#[test]
fn our_client_gets_the_right_xor_mapped_address_from_coturn() {
    let port = free_udp_port(true);
    let Some(coturn) = start_coturn(port) else {
        return;
    };
    let (local, report) = discover(([127, 0, 0, 1], port).into(), DiscoveryMode::Binding);
    assert_eq!(report.mapped, local, "coturn output:\n{}", coturn.output());
    assert!(
        report.software.as_deref().unwrap_or("").contains("Coturn"),
        "SOFTWARE was {:?}",
        report.software
    );
}

#[test]
fn our_nat_discovery_runs_rfc5780_tests_against_coturn() {
    let port = free_udp_port(true);
    let Some(coturn) = start_coturn(port) else {
        return;
    };
    let (local, report) = discover(([127, 0, 0, 1], port).into(), DiscoveryMode::Both);
    let ctx = coturn.output();
    assert_eq!(report.mapped, local, "{ctx}");
    assert_eq!(
        report.other_address,
        Some(([127, 0, 0, 2], port + 1).into()),
        "{ctx}"
    );
    // No NAT on loopback: a direct mapping, and every filtering test answered.
    assert_eq!(report.mapping, Some(MappingBehavior::NoNat), "{ctx}");
    assert_eq!(
        report.filtering,
        Some(FilteringBehavior::EndpointIndependent),
        "{ctx}"
    );
}

/// Runs our server in a background runtime for the length of a test.
struct OurServer {
    runtime: Option<tokio::runtime::Runtime>,
}

impl OurServer {
    fn start(primary: SocketAddr, alternate: Option<SocketAddr>) -> OurServer {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let mut config = stun::server::Config::new(primary);
        config.alternate = alternate;
        let server = BindingServer::new(config).expect("config");
        let addrs = server.local_addrs().to_vec();
        let mut driver = runtime
            .block_on(Driver::bind(server, &addrs))
            .expect("bind our server");
        runtime.spawn(async move {
            let _ = driver.serve().await;
        });
        OurServer {
            runtime: Some(runtime),
        }
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[test]
fn coturn_stunclient_gets_the_right_answer_from_our_server() {
    let Some(client) = require_binary("turnutils_stunclient", "coturn") else {
        return;
    };
    let port = free_udp_port(false);
    let _server = OurServer::start(([127, 0, 0, 1], port).into(), None);
    let (ok, out) = run_bounded(
        &client,
        &["-p".into(), port.to_string(), "127.0.0.1".into()],
        Duration::from_secs(20),
    );
    assert!(ok, "turnutils_stunclient failed:\n{out}");
    assert!(
        out.contains("UDP reflexive addr: 127.0.0.1:"),
        "no reflexive address in:\n{out}"
    );
}

#[test]
fn coturn_stunclient_runs_rfc5780_against_our_server() {
    let Some(client) = require_binary("turnutils_stunclient", "coturn") else {
        return;
    };
    let port = free_udp_port(true);
    let alternate: SocketAddr = ([127, 0, 0, 2], port + 1).into();
    let _server = OurServer::start(([127, 0, 0, 1], port).into(), Some(alternate));
    let (ok, out) = run_bounded(
        &client,
        &["-p".into(), port.to_string(), "127.0.0.1".into()],
        Duration::from_secs(20),
    );
    assert!(ok, "turnutils_stunclient failed:\n{out}");
    // Its RFC 5780 probes: a plain request (answered from the primary), then
    // requests with CHANGE-REQUEST (answered from the alternate address).
    assert!(
        out.contains(&format!("Other addr: : {alternate}")),
        "no OTHER-ADDRESS in:\n{out}"
    );
    assert!(
        out.contains(&format!("Response origin: : {alternate}")),
        "no answer from the alternate address in:\n{out}"
    );
    assert!(
        out.contains(&format!("Response origin: : 127.0.0.1:{port}")),
        "no answer from the primary address in:\n{out}"
    );
}
