//! `ice::IceTransport` over real UDP on loopback, driven by the tokio
//! `runtime::Driver` unchanged. Two of our TURN servers run in the same
//! process (127.0.0.1 and 127.0.0.4), one per peer (127.0.0.2, 127.0.0.3),
//! and only the relayed candidates are signaled, so the selected pair must
//! be relay to relay. (With one server for both, relay to relay cannot work:
//! a TURN server never relays to its own sockets.) Data then flows both
//! ways, and `close` releases both allocations.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::ice::{
    self, CandidateKind, ConnectionState, IceTransport, RelayStatus, TransportConfig,
};
use rtclab::runtime::Driver;
use rtclab::turn::{self, Server};
use tokio::net::UdpSocket;

async fn bind(ip: &str) -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind(format!("{ip}:0")).await.expect("bind");
    let a = s.local_addr().expect("addr");
    (s, a)
}

/// Starts our TURN server on `ip` (a listening socket and 4 relays) in a
/// task; returns its address.
async fn turn_server(ip: &str, seed: u64) -> SocketAddr {
    let (main, listen) = bind(ip).await;
    let mut sockets = vec![main];
    let mut relays = Vec::new();
    for _ in 0..4 {
        let (s, a) = bind(ip).await;
        sockets.push(s);
        relays.push(a);
    }
    let mut config = turn::server::Config::new(listen, relays, "rtclab");
    config.users.push(("alice".into(), "secret".into()));
    // Every peer here is on a loopback address.
    config.allow_loopback_peers = true;
    let server = Server::new(config, Instant::now(), StdRng::seed_from_u64(seed));
    let mut server = Driver::from_sockets(server, sockets).expect("server driver");
    tokio::spawn(async move {
        let _ = server.serve().await;
    });
    listen
}

#[test]
fn relayed_pair_over_loopback_udp() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let servers = [
            turn_server("127.0.0.1", 1).await,
            turn_server("127.0.0.4", 4).await,
        ];
        let mut peers = Vec::new();
        for (controlling, ip, server) in [
            (true, "127.0.0.2", servers[0]),
            (false, "127.0.0.3", servers[1]),
        ] {
            let (sock, a) = bind(ip).await;
            let config = TransportConfig {
                agent: ice::Config {
                    controlling,
                    ..ice::Config::default()
                },
                turn: Some(turn::client::Config::new(server, "alice", "secret")),
            };
            let mut t = IceTransport::new(config, StdRng::seed_from_u64(u64::from(controlling)));
            t.add_local_host(Instant::now(), a).expect("host");
            peers.push(Driver::from_sockets(t, vec![sock]).expect("driver"));
        }
        let mut b = peers.pop().expect("two");
        let mut a = peers.pop().expect("two");
        let ca = a.machine().local_credentials().clone();
        let cb = b.machine().local_credentials().clone();
        let now = Instant::now();
        a.machine_mut()
            .set_remote_credentials(now, &cb.ufrag, &cb.pwd);
        b.machine_mut()
            .set_remote_credentials(now, &ca.ufrag, &ca.pwd);

        let mut selected = [None, None];
        let mut data: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        let mut sent = false;
        let run = async {
            loop {
                let (side, event) = tokio::select! {
                    e = a.next_event() => (0, e.expect("I/O")),
                    e = b.next_event() => (1, e.expect("I/O")),
                };
                let now = Instant::now();
                let other = if side == 0 {
                    b.machine_mut()
                } else {
                    a.machine_mut()
                };
                match event {
                    // Signaling passes only the relayed candidates.
                    ice::Event::LocalCandidate(c) if c.kind == CandidateKind::Relayed => {
                        other.add_remote_candidate(now, c).expect("candidate");
                    }
                    ice::Event::GatheringComplete => other.end_of_remote_candidates(now),
                    ice::Event::SelectedPair { local, remote } => {
                        selected[side] = Some((local.kind, remote.kind));
                    }
                    ice::Event::Data { data: d, .. } => data[side].push(d),
                    ice::Event::Failed(r) => panic!("side {side} failed: {r}"),
                    _ => {}
                }
                let connected = [&a, &b]
                    .iter()
                    .all(|d| d.machine().agent().state() == ConnectionState::Connected);
                if connected && selected.iter().all(Option::is_some) && !sent {
                    sent = true;
                    a.machine_mut().send(b"\x17from A").expect("send");
                    b.machine_mut().send(b"\x17from B").expect("send");
                }
                if !data[0].is_empty() && !data[1].is_empty() {
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), run)
            .await
            .unwrap_or_else(|_| panic!("not connected in 20 s: {selected:?} {data:?}"));
        assert_eq!(
            selected,
            [Some((CandidateKind::Relayed, CandidateKind::Relayed)); 2]
        );
        assert_eq!(data[1], vec![b"\x17from A".to_vec()]);
        assert_eq!(data[0], vec![b"\x17from B".to_vec()]);
        let relayed = [&a, &b]
            .iter()
            .map(|d| d.machine().relay_stats().sent)
            .sum::<u64>();
        assert!(relayed > 0, "nothing went through the relay");

        // Release both allocations (Refresh with LIFETIME 0).
        let now = Instant::now();
        a.machine_mut().close(now);
        b.machine_mut().close(now);
        let closing = async {
            loop {
                tokio::select! {
                    _ = a.next_event() => {}
                    _ = b.next_event() => {}
                }
                let closed = [&a, &b].iter().all(|d| {
                    matches!(
                        d.machine().relay_status(),
                        RelayStatus::Closed { error: None }
                    )
                });
                if closed {
                    break;
                }
            }
        };
        // Closing produces no ICE event: the drivers run for a second.
        let _ = tokio::time::timeout(Duration::from_secs(1), closing).await;
        for d in [&a, &b] {
            assert!(
                matches!(
                    d.machine().relay_status(),
                    RelayStatus::Closed { error: None }
                ),
                "{:?}",
                d.machine().relay_status()
            );
        }
    });
}
