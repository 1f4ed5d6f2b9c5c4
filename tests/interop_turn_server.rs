//! coturn's `turnutils_uclient` against `rtclab turn-server`, with
//! `turnutils_peer` as the far end (it echoes): every datagram must come back.
//! And relay-only Rust peers through `rtclab turn-server` (over UDP and
//! TCP) and through coturn over TCP.
//! 127.0.0.1 only, bounded timeouts.

mod common;
#[path = "interop/harness.rs"]
mod harness;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Peer, free_udp_port, require_binary, run_bounded};
use harness::TurnServer;

/// `rtclab turn-server` on a free port of 127.0.0.1 (UDP and TCP), and
/// the port.
fn start_ours(extra: &[&str]) -> (TurnServer, u16) {
    let server = TurnServer::start_with(extra);
    let port = server.port;
    (server, port)
}

fn uclient_run(clients: u32, extra: &[&str], server_extra: &[&str]) {
    let Some(uclient) = require_binary("turnutils_uclient", "coturn") else {
        return;
    };
    let Some(peer_bin) = require_binary("turnutils_peer", "coturn") else {
        return;
    };
    let (server, port) = start_ours(server_extra);
    let peer_port = free_udp_port(false);
    let _peer = Peer::start(
        "turnutils_peer",
        &peer_bin,
        &[
            "-L".into(),
            "127.0.0.1".into(),
            "-p".into(),
            peer_port.to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    let mut args: Vec<String> = [
        "-u",
        "alice",
        "-w",
        "secret",
        "-p",
        &port.to_string(),
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port.to_string(),
        "-n",
        "50",
        "-m",
        &clients.to_string(),
        "-l",
        "120",
        "-z",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("127.0.0.1".into());
    let (ok, out) = run_bounded(&uclient, &args, Duration::from_secs(60));
    assert!(
        ok,
        "turnutils_uclient failed:\n{out}\n--- server ---\n{}",
        server.output()
    );
    assert!(
        out.contains("Total lost packets 0 (0.000000%)"),
        "packets were lost:\n{out}\n--- server ---\n{}",
        server.output()
    );
    assert!(out.contains("Total transmit time"), "no summary in:\n{out}");
}

#[test]
fn coturn_uclient_loses_nothing_through_our_server_over_channels() {
    // uclient binds random channels in RFC 5766's range (up to 0x7FFF):
    // with several clients some land above RFC 8656's 0x4FFF.
    uclient_run(4, &["-c"], &[]);
}

#[test]
fn coturn_uclient_loses_nothing_through_our_server_with_send_indications() {
    uclient_run(2, &["-s", "-c"], &[]);
}

/// Ephemeral credentials (the TURN REST API): uclient's `-W SECRET` makes
/// a username `EXPIRY:alice` and its HMAC password, as a deployment's web
/// server would hand a browser.
#[test]
fn coturn_uclient_with_ephemeral_credentials_from_a_shared_secret() {
    uclient_run(2, &["-W", "north", "-c"], &["--auth-secret", "north"]);
}

/// uclient's default mode: each client allocates an RTP relay with EVEN-PORT
/// and the R bit, then its RTCP relay with the RESERVATION-TOKEN it got
/// (RFC 8656 §7.2). Against a fixed pool of 64 random ports this got 508;
/// ports on demand serve it.
#[test]
fn coturn_uclient_default_mode_gets_even_port_pairs() {
    uclient_run(10, &[], &[]);
}

/// TURN over TCP between client and server (RFC 8656 §3.1), the relay
/// still UDP: uclient's `-t`, with RTP/RTCP pairs and with channels.
#[test]
fn coturn_uclient_over_tcp() {
    uclient_run(4, &["-t"], &[]);
    uclient_run(4, &["-t", "-c", "-s"], &[]);
}

/// Four threads, each a server of its own behind SO_REUSEPORT: the kernel
/// spreads uclient's 10 clients (and their RTCP twins) across them, each
/// allocation's requests, relay socket and peer traffic staying on its
/// thread; over UDP and over TCP.
#[test]
fn coturn_uclient_across_four_threads() {
    uclient_run(10, &[], &["--threads", "4"]);
    uclient_run(10, &["-t"], &["--threads", "4"]);
}

/// Our TURN client over a blocking UDP socket on `ip`, for the threads
/// test.
struct Side {
    socket: std::net::UdpSocket,
    local: SocketAddr,
    client: rtclab::turn::Client,
}

impl Side {
    fn new(ip: &str, server: SocketAddr, seed: u64) -> Side {
        use rand::SeedableRng;
        let socket = std::net::UdpSocket::bind(format!("{ip}:0")).expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let mut config = rtclab::turn::client::Config::new(server, "alice", "secret");
        config.local = Some(local);
        let client = rtclab::turn::Client::new(config, rand::rngs::StdRng::seed_from_u64(seed));
        Side {
            socket,
            local,
            client,
        }
    }

    /// Runs the client until an event, within 5 s.
    fn event(&mut self) -> rtclab::turn::client::Event {
        use rtclab::machine::{Machine, Receive};
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut buf = [0u8; 2048];
        while std::time::Instant::now() < deadline {
            while let Some(t) = self.client.poll_transmit() {
                self.socket.send_to(&t.contents, t.destination).unwrap();
            }
            if let Some(e) = self.client.poll_event() {
                return e;
            }
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                self.client.handle_receive(
                    std::time::Instant::now(),
                    Receive {
                        source: from,
                        destination: self.local,
                        contents: &buf[..n],
                    },
                );
            }
            self.client.handle_timeout(std::time::Instant::now());
        }
        panic!("no TURN event within 5 s from {}", self.local);
    }

    /// Sends what the client queued.
    fn flush(&mut self) {
        use rtclab::machine::Machine;
        while let Some(t) = self.client.poll_transmit() {
            self.socket.send_to(&t.contents, t.destination).unwrap();
        }
    }

    fn allocate(&mut self) -> SocketAddr {
        self.client.allocate(std::time::Instant::now()).unwrap();
        match self.event() {
            rtclab::turn::client::Event::Allocated { relayed, .. } => relayed,
            e => panic!("{e:?}"),
        }
    }
}

/// Two threads; clients from 127.0.0.1 and 127.0.0.2, which the server's
/// steering gives to different threads (by IP, modulo 2). Each allocates,
/// and each relays to the other's relayed address: relay to relay across
/// two `Server`s that know nothing of each other's allocations.
#[test]
fn relay_to_relay_across_threads() {
    let (server, port) = start_ours(&["--threads", "2"]);
    let listen: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut a = Side::new("127.0.0.1", listen, 1);
    let mut b = Side::new("127.0.0.2", listen, 2);
    let (ra, rb) = (a.allocate(), b.allocate());
    for (side, peer) in [(&mut a, rb), (&mut b, ra)] {
        side.client
            .create_permission(std::time::Instant::now(), peer)
            .unwrap();
        match side.event() {
            rtclab::turn::client::Event::PermissionCreated(ip) => assert_eq!(ip, peer.ip()),
            e => panic!("{e:?}\n--- server ---\n{}", server.output()),
        }
    }
    a.client
        .send_to(std::time::Instant::now(), rb, b"over the relays")
        .unwrap();
    a.flush();
    match b.event() {
        rtclab::turn::client::Event::Data { peer, data } => {
            assert_eq!((peer, data.as_slice()), (ra, &b"over the relays"[..]));
        }
        e => panic!("{e:?}\n--- server ---\n{}", server.output()),
    }
}

/// A Rust peer with our TURN server in its `ice_servers` and
/// `iceTransportPolicy: relay` calls another over real UDP on loopback:
/// it signals only its relayed candidate, the selected pair runs through
/// the relay, and a message goes each way.
#[tokio::test]
async fn a_relay_only_rust_peer_calls_through_rtclab_turn_server() {
    let (_server, port) = start_ours(&[]);
    relay_only_call(&format!("turn:127.0.0.1:{port}"), None).await;
}

/// The same with the TURN server reached over TCP (`?transport=tcp`, RFC
/// 8656 §3.1): the allocation, permissions, channel and the relayed data
/// go over one TCP connection; the other peer is relay-only too, over
/// UDP to the same server (relay to relay).
#[tokio::test]
async fn a_relay_only_rust_peer_calls_through_rtclab_turn_server_over_tcp() {
    let (_server, port) = start_ours(&[]);
    relay_only_call(
        &format!("turn:127.0.0.1:{port}?transport=tcp"),
        Some(&format!("turn:127.0.0.1:{port}")),
    )
    .await;
}

/// Our client over TCP against coturn (its default listener takes TCP on
/// the same port): a relay-only Rust peer calls another through it.
#[tokio::test]
async fn a_relay_only_rust_peer_calls_through_coturn_over_tcp() {
    let port = free_udp_port(false);
    let Some(_coturn) = common::start_coturn(
        port,
        &[
            "--allow-loopback-peers",
            "--relay-ip",
            "127.0.0.1",
            "--realm",
            "rtclab",
            "--user",
            "alice:secret",
            "--lt-cred-mech",
        ],
    ) else {
        return;
    };
    relay_only_call(&format!("turn:127.0.0.1:{port}?transport=tcp"), None).await;
}

/// Peer a, relay-only through `turn_a`, calls peer b (relay-only through
/// `turn_b` if given, else with its host candidate); a message each way.
async fn relay_only_call(turn_a: &str, turn_b: Option<&str>) {
    use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
    use rtclab::ice::CandidateKind;
    use rtclab::peer::{self, IceServer, IceTransportPolicy};
    use rtclab::runtime::LivePeer;

    let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let relay_config = |url: &str| {
        let mut config = LivePeer::config().expect("cert");
        config.ice_servers = vec![IceServer::turn(url, "alice", "secret")];
        config.ice_transport_policy = IceTransportPolicy::Relay;
        config
    };
    let mut a = LivePeer::bind(relay_config(turn_a), lo)
        .await
        .expect("bind a");
    assert_eq!(
        a.turn_tcp_local_addr().is_some(),
        turn_a.ends_with("transport=tcp"),
        "a TCP connection to the TURN server exactly when asked"
    );
    let b_config = match turn_b {
        Some(url) => relay_config(url),
        None => LivePeer::config().expect("cert"),
    };
    let mut b = LivePeer::bind(b_config, lo).await.expect("bind b");
    let chat = a
        .create_data_channel(ChannelInit::new("relayed"))
        .expect("channel");
    let offer = a.offer().expect("offer");
    let answer = b.answer(&offer).expect("answer");
    a.accept_answer(&answer).expect("accept");
    let (mut got, mut reply, mut kinds) = (None, None, Vec::new());
    let done = tokio::time::timeout(Duration::from_secs(20), async {
        while got.is_none() || reply.is_none() {
            tokio::select! {
                e = a.next_event() => match e.expect("io a") {
                    peer::Event::LocalCandidate(c) => {
                        kinds.push(c.kind);
                        b.add_ice_candidate(&c.to_string()).expect("cand");
                    }
                    peer::Event::GatheringComplete => b.add_end_of_candidates(),
                    peer::Event::DataChannel(DcEvent::Open(id)) if id == chat => {
                        a.send_text(chat, "via the relay").expect("text");
                    }
                    peer::Event::DataChannel(DcEvent::Message { message, .. }) => reply = Some(message),
                    peer::Event::Error(e) => panic!("a: {e}"),
                    _ => {}
                },
                e = b.next_event() => match e.expect("io b") {
                    peer::Event::LocalCandidate(c) => a.add_ice_candidate(&c.to_string()).expect("cand"),
                    peer::Event::GatheringComplete => a.add_end_of_candidates(),
                    peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                        b.send_text(channel, "back").expect("reply");
                        got = Some(message);
                    }
                    peer::Event::Error(e) => panic!("b: {e}"),
                    _ => {}
                },
            }
        }
    })
    .await;
    assert!(done.is_ok(), "no call through the relay in 20 s");
    assert_eq!(got, Some(Message::Text("via the relay".into())));
    assert_eq!(reply, Some(Message::Text("back".into())));
    assert_eq!(
        kinds,
        vec![CandidateKind::Relayed],
        "only the relayed candidate"
    );
    let pair = a
        .connection()
        .stats()
        .transport
        .selected_candidate_pair
        .expect("pair");
    assert_eq!(pair.0.kind, CandidateKind::Relayed);
    assert_eq!(
        a.turn_tcp_local_addr().is_some(),
        turn_a.ends_with("transport=tcp"),
        "the TCP connection to the TURN server still open"
    );
}
