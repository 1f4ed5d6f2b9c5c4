//! The `rtclab` command line as a user runs it: a server, a client query and
//! NAT behaviour tests against it, and clear errors for bad input.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Peer, free_udp_port, run_bounded, wait_for_stun};

fn rtclab() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rtclab"))
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn stun_client_and_server_talk() {
    let port = free_udp_port(true);
    let listen = format!("127.0.0.1:{port}");
    let alt = format!("127.0.0.2:{}", port + 1);
    let server = Peer::start(
        "rtclab-stun-server",
        &rtclab(),
        &args(&["stun-server", "--listen", &listen, "--alt", &alt]),
    );
    assert!(
        wait_for_stun(listen.parse().unwrap(), Duration::from_secs(10)),
        "server did not come up:\n{}",
        server.output()
    );

    let (ok, out) = run_bounded(
        &rtclab(),
        &args(&["stun", &listen]),
        Duration::from_secs(20),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Mapped address: 127.0.0.1:"), "{out}");
    assert!(out.contains(&format!("Other address: {alt}")), "{out}");

    let (ok, out) = run_bounded(
        &rtclab(),
        &args(&["stun", &listen, "--mode", "full"]),
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Mapping behaviour: no NAT"), "{out}");
    assert!(
        out.contains("Filtering behaviour: endpoint-independent filtering"),
        "{out}"
    );
}

#[test]
fn stun_client_explains_bad_input() {
    let (ok, out) = run_bounded(
        &rtclab(),
        &args(&["stun", "no.such.host.invalid"]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains("error: bad server address"), "{out}");

    // Nobody listens: the client gives up after its schedule (4.6 s).
    let port = free_udp_port(false);
    let (ok, out) = run_bounded(
        &rtclab(),
        &args(&["stun", &format!("127.0.0.1:{port}")]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains("did not answer"), "{out}");

    let (ok, out) = run_bounded(
        &rtclab(),
        &args(&[
            "stun-server",
            "--listen",
            "127.0.0.1:3478",
            "--alt",
            "127.0.0.1:3479",
        ]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains("must differ from the primary"), "{out}");
}

/// RFC 5780 needs both IPs named: a wildcard primary with --alt is refused
/// (it would answer CHANGE-REQUEST from wherever it was asked).
#[test]
fn stun_server_refuses_alt_with_a_wildcard_listen() {
    let (ok, out) = run_bounded(
        &rtclab(),
        &args(&[
            "stun-server",
            "--listen",
            "0.0.0.0:3478",
            "--alt",
            "127.0.0.2:3479",
        ]),
        Duration::from_secs(20),
    );
    assert!(!ok);
    assert!(out.contains("give --listen a specific IP"), "{out}");
}
