//! A `PeerConnection` with a TURN server in its `ice_servers` (W3C
//! `iceServers`), in the simulator: behind a symmetric NAT with
//! `iceTransportPolicy: relay`, it signals only its relayed candidate, the
//! call runs through the TURN server (DTLS, SCTP, a data channel, video),
//! and the peer never sees its addresses. Virtual time, fixed seeds.

#[path = "common/sim_peers.rs"]
mod sim_peers;

use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
use rtclab::ice::CandidateKind;
use rtclab::peer::{
    self, IceServer, IceTransportPolicy, PeerConnection, PeerConnectionState, SdpType, TrackCodec,
};
use rtclab::sim::{CaptureKind, FilteringBehavior, MappingBehavior, NatConfig, Sim};
use rtclab::turn::{self, Server};
use sim_peers::{certificate, pump, vp8_frames};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const TURN: &str = "198.51.100.1:3478";

#[test]
fn a_relay_only_peer_behind_a_symmetric_nat_calls_through_turn() {
    let mut sim = Sim::new(31);
    let listen = addr(TURN);
    let relays: Vec<SocketAddr> = (0..4)
        .map(|i| SocketAddr::new(listen.ip(), 50000 + i))
        .collect();
    let mut sc = turn::server::Config::new(listen, relays, "rtclab");
    sc.users.push(("alice".into(), "secret".into()));
    let server = Server::new(sc, sim.now(), StdRng::seed_from_u64(1));
    let locals = server.local_addrs().to_vec();
    sim.add_host(server, &locals);

    let mut rng = StdRng::seed_from_u64(31);
    let (ca, cb) = (certificate(&mut rng), certificate(&mut rng));
    let a_local = addr("10.0.0.2:5000");
    let b_addr = addr("192.0.2.50:6000");
    let mut config_a = peer::Config::new(ca, vec![a_local]);
    config_a.ice_servers = vec![IceServer::turn(&format!("turn:{TURN}"), "alice", "secret")];
    config_a.ice_transport_policy = IceTransportPolicy::Relay;
    let mut a = PeerConnection::new(config_a, StdRng::seed_from_u64(2));
    let mut b = PeerConnection::new(
        peer::Config::new(cb, vec![b_addr]),
        StdRng::seed_from_u64(3),
    );
    let track = a.add_track_with_codec(TrackCodec::Vp8).expect("track");
    let ch = a
        .create_data_channel(ChannelInit::new("relayed"))
        .expect("dc");
    let now = sim.now();
    let offer = a.create_offer(now).expect("offer");
    assert!(
        !offer.contains("typ host"),
        "relay only: no host candidate in the offer\n{offer}"
    );
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("offer");
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("offer");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("answer");
    a.set_remote_description(now, SdpType::Answer, &answer)
        .expect("answer");
    let mid = a.track_mid(track).expect("mid").to_string();

    let mut nat = NatConfig::new("203.0.113.1".parse().expect("ip"));
    nat.mapping = MappingBehavior::AddressAndPortDependent;
    nat.filtering = FilteringBehavior::AddressAndPortDependent;
    let nat = sim.add_nat(nat);
    let ha = sim.add_host_behind(nat, a, &[a_local]);
    let hb = sim.add_host(b, &[b_addr]);
    let hosts = [ha, hb];
    let mut log = [Vec::new(), Vec::new()];
    let connected = sim.run_for_with(Duration::from_secs(10), |sim| {
        pump(sim, hosts, &mut log);
        log[1]
            .iter()
            .any(|e| matches!(e, peer::Event::DataChannel(DcEvent::Open(_))))
    });
    assert!(connected, "A: {:?}\nB: {:?}", log[0], log[1]);
    // A's side of the selected pair is its relayed candidate.
    let pair = sim
        .machine::<PeerConnection>(ha)
        .stats()
        .transport
        .selected_candidate_pair
        .expect("a pair");
    assert_eq!(pair.0.kind, CandidateKind::Relayed, "{pair:?}");
    // B saw no address of A's but the relay's.
    let seen = sim.machine::<PeerConnection>(hb).stats().transport;
    assert_eq!(seen.remote_address.map(|a| a.ip()), Some(listen.ip()));

    // A message each way, and video from A.
    let now = sim.now();
    sim.machine_mut::<PeerConnection>(ha)
        .send_text(now, ch, "through the relay")
        .expect("send");
    let frames = vp8_frames(5, 31);
    for (i, f) in frames.iter().enumerate() {
        sim.machine_mut::<PeerConnection>(ha)
            .send_frame(now, track, 3000 * i as u32, f)
            .expect("frame");
    }
    sim.run_for_with(Duration::from_secs(2), |sim| {
        pump(sim, hosts, &mut log);
        false
    });
    assert!(log[1].iter().any(|e| matches!(
        e,
        peer::Event::DataChannel(DcEvent::Message { message: Message::Text(t), .. }) if t == "through the relay"
    )));
    assert_eq!(sim_peers::frames(&log[1], &mid), frames);
    assert_eq!(
        sim.machine::<PeerConnection>(ha).connection_state(),
        PeerConnectionState::Connected
    );

    // A hangs up: its last DTLS close_notify goes through the relay too,
    // like everything before it; B never sees A's NAT address, and A sends
    // nothing anywhere but to its TURN server.
    sim.set_capture(true);
    let now = sim.now();
    sim.machine_mut::<PeerConnection>(ha).close(now);
    sim.run_for_with(Duration::from_secs(2), |sim| {
        pump(sim, hosts, &mut log);
        false
    });
    let capture = sim.drain_capture();
    let sent_by_a: Vec<_> = capture
        .iter()
        .filter(|r| r.host == ha && r.kind == CaptureKind::Sent)
        .collect();
    assert!(!sent_by_a.is_empty(), "A sent nothing at close");
    for r in &sent_by_a {
        assert_eq!(r.destination, listen, "A sent around its relay: {r}");
    }
    let to_b: Vec<_> = capture
        .iter()
        .filter(|r| r.host == hb && r.kind == CaptureKind::Delivered)
        .collect();
    for r in &to_b {
        assert_eq!(r.source.ip(), listen.ip(), "B heard A directly: {r}");
    }
    // The close_notify (a DTLS record, RFC 7983 first byte 20..=63) reached
    // B, relayed.
    assert!(
        to_b.iter()
            .any(|r| r.contents.first().is_some_and(|b| (20..=63).contains(b))),
        "no DTLS record reached B after A closed: {to_b:?}"
    );
}

#[test]
fn a_relay_policy_without_a_turn_server_is_refused() {
    let mut rng = StdRng::seed_from_u64(32);
    let mut config = peer::Config::new(certificate(&mut rng), vec![addr("10.0.0.2:5000")]);
    config.ice_transport_policy = IceTransportPolicy::Relay;
    let mut pc = PeerConnection::new(config, StdRng::seed_from_u64(1));
    let err = pc.create_offer(Sim::new(1).now()).expect_err("no TURN");
    assert!(matches!(err, peer::Error::Misuse(_)), "{err}");
    let mut config = peer::Config::new(certificate(&mut rng), vec![addr("10.0.0.2:5000")]);
    config.ice_servers = vec![IceServer::turn("turn:example.org", "u", "p")];
    let mut pc = PeerConnection::new(config, StdRng::seed_from_u64(1));
    let err = pc.create_offer(Sim::new(1).now()).expect_err("a name");
    assert!(err.to_string().contains("IP address"), "{err}");
}
