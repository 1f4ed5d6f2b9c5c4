//! TURN interop with coturn: our client allocates on coturn's `turnserver`
//! and exchanges data with a plain UDP peer through the relay, by Send/Data
//! indications and then over a channel. 127.0.0.1 only, bounded timeouts.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Peer, free_udp_port};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::runtime::Driver;
use rtclab::turn::{self, Client};
use tokio::net::UdpSocket;

/// coturn as a TURN server with long-term credentials, relaying to loopback
/// peers (which it refuses without `--allow-loopback-peers`).
fn start_coturn(port: u16) -> Option<Peer> {
    common::start_coturn(
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
    )
}

async fn event(driver: &mut Driver<Client>) -> turn::client::Event {
    tokio::time::timeout(Duration::from_secs(10), driver.next_event())
        .await
        .expect("a TURN event within 10 s")
        .expect("no I/O error")
}

async fn peer_recv(peer: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("the peer got data within 5 s")
        .expect("recv");
    (buf[..n].to_vec(), from)
}

/// Exchanges one datagram each way between our client and the peer.
async fn exchange(driver: &mut Driver<Client>, peer: &UdpSocket, relayed: SocketAddr, tag: &str) {
    let peer_addr = peer.local_addr().expect("peer addr");
    let out = format!("to peer {tag}");
    driver
        .machine_mut()
        .send_to(Instant::now(), peer_addr, out.as_bytes())
        .expect("send_to");
    driver.flush().await.expect("flush");
    let (got, from) = peer_recv(peer).await;
    assert_eq!(got, out.as_bytes());
    assert_eq!(from, relayed, "the peer sees the relayed address");
    let back = format!("from peer {tag}");
    peer.send_to(back.as_bytes(), relayed)
        .await
        .expect("peer send");
    match event(driver).await {
        turn::client::Event::Data { peer: p, data } => {
            assert_eq!(p, peer_addr);
            assert_eq!(data, back.as_bytes());
        }
        e => panic!("expected data, got {e:?}"),
    }
}

#[test]
fn our_client_relays_through_coturn_by_indications_and_channels() {
    let port = free_udp_port(false);
    let Some(coturn) = start_coturn(port) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut config = turn::client::Config::new(server, "alice", "secret");
        config.local = Some(socket.local_addr().expect("local"));
        let client = Client::new(config, StdRng::seed_from_u64(7));
        let mut driver = Driver::from_sockets(client, vec![socket]).expect("driver");
        driver
            .machine_mut()
            .allocate(Instant::now())
            .expect("allocate");
        let relayed = match event(&mut driver).await {
            turn::client::Event::Allocated {
                relayed, mapped, ..
            } => {
                assert_eq!(mapped, driver.local_addrs().first().copied());
                relayed
            }
            e => panic!("expected an allocation, got {e:?}\n{}", coturn.output()),
        };
        let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer bind");
        let peer_addr = peer.local_addr().expect("peer addr");

        // 1. Send/Data indications: the first send asks for a permission.
        driver
            .machine_mut()
            .send_to(Instant::now(), peer_addr, b"first")
            .expect("send_to");
        match event(&mut driver).await {
            turn::client::Event::PermissionCreated(ip) => assert_eq!(ip, peer_addr.ip()),
            e => panic!("expected a permission, got {e:?}\n{}", coturn.output()),
        }
        driver.flush().await.expect("flush");
        let (got, from) = peer_recv(&peer).await;
        assert_eq!((got.as_slice(), from), (&b"first"[..], relayed));
        for i in 0..5 {
            exchange(&mut driver, &peer, relayed, &format!("indication {i}")).await;
        }

        // 2. A channel: from now on ChannelData both ways.
        let channel = driver
            .machine_mut()
            .bind_channel(Instant::now(), peer_addr)
            .expect("bind");
        match event(&mut driver).await {
            turn::client::Event::ChannelBound {
                peer: p,
                channel: c,
            } => {
                assert_eq!((p, c), (peer_addr, channel))
            }
            e => panic!("expected a channel, got {e:?}\n{}", coturn.output()),
        }
        for i in 0..5 {
            exchange(&mut driver, &peer, relayed, &format!("channel {i}")).await;
        }

        // 3. Release.
        driver.machine_mut().close(Instant::now()).expect("close");
        match event(&mut driver).await {
            turn::client::Event::Closed => {}
            e => panic!("expected closed, got {e:?}\n{}", coturn.output()),
        }
    });
}

#[test]
fn coturn_refuses_a_wrong_password() {
    let port = free_udp_port(false);
    let Some(_coturn) = start_coturn(port) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let server: SocketAddr = ([127, 0, 0, 1], port).into();
        let client = Client::new(
            turn::client::Config::new(server, "alice", "wrong"),
            StdRng::seed_from_u64(8),
        );
        let mut driver = Driver::from_sockets(client, vec![socket]).expect("driver");
        driver
            .machine_mut()
            .allocate(Instant::now())
            .expect("allocate");
        match event(&mut driver).await {
            turn::client::Event::AllocationFailed(e) => {
                assert!(e.to_string().contains("401"), "{e}")
            }
            e => panic!("expected a failure, got {e:?}"),
        }
    });
}
