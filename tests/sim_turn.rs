//! Our TURN client against our TURN server: in the simulator (the client
//! behind an address-and-port-dependent NAT, with loss) and over real UDP on
//! loopback. A peer echoes what it gets; every exchange must come back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::runtime::Driver;
use rtclab::sim::{Echo, FilteringBehavior, LinkConfig, MappingBehavior, NatConfig, Sim};
use rtclab::turn::{self, Client, Server};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn server_config(
    listen: SocketAddr,
    relays: Vec<SocketAddr>,
    loopback: bool,
) -> turn::server::Config {
    let mut c = turn::server::Config::new(listen, relays, "rtclab");
    c.users.push(("alice".into(), "secret".into()));
    c.allow_loopback_peers = loopback;
    c
}

fn wait_for(
    sim: &mut Sim,
    host: rtclab::sim::HostId,
    limit: Duration,
    mut f: impl FnMut(&turn::client::Event) -> bool,
) -> Vec<turn::client::Event> {
    let mut seen = Vec::new();
    let ok = sim.run_for_with(limit, |sim| {
        let new = sim.events::<Client>(host);
        let hit = new.iter().any(&mut f);
        seen.extend(new);
        hit
    });
    assert!(ok, "no matching event within {limit:?}; saw {seen:?}");
    seen
}

#[test]
fn client_and_server_in_the_simulator_behind_a_symmetric_nat_with_loss() {
    let mut sim = Sim::new(11);
    let listen = addr("198.51.100.1:3478");
    let relays: Vec<SocketAddr> = (0..4)
        .map(|i| SocketAddr::new(listen.ip(), 50000 + i))
        .collect();
    let server = Server::new(
        server_config(listen, relays, false),
        sim.now(),
        StdRng::seed_from_u64(1),
    );
    let locals = server.local_addrs().to_vec();
    sim.add_host(server, &locals);
    let peer = addr("192.0.2.50:7000");
    sim.add_host(Echo::default(), &[peer]);
    let mut nat = NatConfig::new("203.0.113.1".parse().expect("ip"));
    nat.mapping = MappingBehavior::AddressAndPortDependent;
    nat.filtering = FilteringBehavior::AddressAndPortDependent;
    let nat = sim.add_nat(nat);
    let mut config = turn::client::Config::new(listen, "alice", "secret");
    config.stun.rto = Duration::from_millis(100);
    let client = Client::new(config, sim.rng(5));
    let host = sim.add_host_behind(nat, client, &[addr("10.0.0.2:5000")]);
    sim.set_link(
        host,
        LinkConfig {
            loss: 0.2,
            ..LinkConfig::default()
        },
    );

    let now = sim.now();
    sim.machine_mut::<Client>(host)
        .allocate(now)
        .expect("allocate");
    let ev = wait_for(&mut sim, host, Duration::from_secs(30), |e| {
        matches!(e, turn::client::Event::Allocated { .. })
    });
    let mapped = ev.iter().find_map(|e| match e {
        turn::client::Event::Allocated { mapped, .. } => *mapped,
        _ => None,
    });
    assert_eq!(
        mapped.map(|m| m.ip()),
        Some("203.0.113.1".parse().expect("ip")),
        "the server sees the NAT's address"
    );

    // By indications, then by channel: under 20% loss each way some datagrams
    // are lost (UDP), so count echoes rather than insist on each.
    let mut echoed = 0;
    for round in 0..40 {
        if round == 20 {
            let now = sim.now();
            sim.machine_mut::<Client>(host)
                .bind_channel(now, peer)
                .expect("bind");
        }
        let now = sim.now();
        let msg = format!("msg {round}");
        // Before the permission exists the first datagrams wait in the client.
        let _ = sim
            .machine_mut::<Client>(host)
            .send_to(now, peer, msg.as_bytes());
        sim.run_for(Duration::from_millis(200));
        for e in sim.events::<Client>(host) {
            if let turn::client::Event::Data { peer: p, data } = e {
                assert_eq!(p, peer);
                assert!(data.starts_with(b"msg "));
                echoed += 1;
            }
        }
    }
    assert!(
        sim.machine::<Client>(host).channel(peer).is_some(),
        "the channel was bound despite loss"
    );
    assert!(
        echoed >= 15,
        "only {echoed} of 40 round trips came back at 20% loss per link"
    );
    // The allocation survives its refreshes (10 minutes of virtual time).
    sim.run_for(Duration::from_secs(1200));
    let now = sim.now();
    sim.machine_mut::<Client>(host)
        .send_to(now, peer, b"later")
        .expect("still allocated");
    wait_for(&mut sim, host, Duration::from_secs(10), |e| {
        matches!(e, turn::client::Event::Data { .. })
    });
}

#[test]
fn client_and_server_over_loopback_udp() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let main = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let listen = main.local_addr().expect("addr");
        let server = Server::new(
            server_config(listen, vec![relay.local_addr().expect("addr")], true),
            Instant::now(),
            StdRng::seed_from_u64(2),
        );
        let mut sdriver = Driver::from_sockets(server, vec![main, relay]).expect("driver");
        tokio::spawn(async move {
            let _ = sdriver.serve().await;
        });
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("peer");
        let peer_addr = peer.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((n, from)) = peer.recv_from(&mut buf).await {
                let _ = peer.send_to(&buf[..n], from).await;
            }
        });
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = Client::new(
            turn::client::Config::new(listen, "alice", "secret"),
            StdRng::seed_from_u64(3),
        );
        let mut d = Driver::from_sockets(client, vec![sock]).expect("driver");
        d.machine_mut().allocate(Instant::now()).expect("allocate");
        assert!(matches!(
            next(&mut d).await,
            turn::client::Event::Allocated { .. }
        ));
        d.machine_mut()
            .send_to(Instant::now(), peer_addr, b"one")
            .expect("send");
        assert_eq!(
            next(&mut d).await,
            turn::client::Event::PermissionCreated(peer_addr.ip())
        );
        assert_eq!(
            next(&mut d).await,
            turn::client::Event::Data {
                peer: peer_addr,
                data: b"one".to_vec()
            }
        );
        let ch = d
            .machine_mut()
            .bind_channel(Instant::now(), peer_addr)
            .expect("bind");
        assert_eq!(
            next(&mut d).await,
            turn::client::Event::ChannelBound {
                peer: peer_addr,
                channel: ch
            }
        );
        for i in 0..100u32 {
            d.machine_mut()
                .send_to(Instant::now(), peer_addr, &i.to_be_bytes())
                .expect("send");
            assert_eq!(
                next(&mut d).await,
                turn::client::Event::Data {
                    peer: peer_addr,
                    data: i.to_be_bytes().to_vec()
                }
            );
        }
        d.machine_mut().close(Instant::now()).expect("close");
        assert_eq!(next(&mut d).await, turn::client::Event::Closed);
    });
}

async fn next(d: &mut Driver<Client>) -> turn::client::Event {
    tokio::time::timeout(Duration::from_secs(5), d.next_event())
        .await
        .expect("event in time")
        .expect("io")
}
