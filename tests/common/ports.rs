//! Free ports for servers the tests start as separate processes.
//!
//! A port found by binding port 0 comes from the kernel's ephemeral range
//! (`net.ipv4.ip_local_port_range`), and once released the kernel may hand
//! it to any socket: a browser's TCP connection to the signaling server
//! took a port this way between our check and `rtclab turn-server`'s bind
//! ("Address already in use" on TCP, in CI). So the port is drawn at random
//! from below that range, where the kernel assigns nothing on its own, and
//! checked free on UDP and TCP both (a TURN server listens on both).

use std::hash::{BuildHasher, RandomState};
use std::net::{TcpListener, UdpSocket};

/// A port free on 127.0.0.1 for UDP and TCP, outside the ephemeral range;
/// with `pair`, the next port is free for UDP too (an RTP/RTCP pair).
pub fn free_udp_port(pair: bool) -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.saturating_sub(1));
    if high <= low + 1_000 {
        return any_free_port(pair);
    }
    let random = RandomState::new();
    for i in 0..1_000u64 {
        let port = low + (random.hash_one(i) % u64::from(high - low)) as u16;
        if is_free(port) && (!pair || UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()) {
            return port;
        }
    }
    panic!("no free port below the ephemeral range {ephemeral_low}");
}

fn is_free(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_ok() && TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The fallback when the ephemeral range leaves no room below it.
fn any_free_port(pair: bool) -> u16 {
    for _ in 0..200 {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = s.local_addr().expect("local addr").port();
        if port == u16::MAX || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if !pair || UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port pair found");
}
