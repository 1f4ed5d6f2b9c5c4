//! `peer::PeerSet`: many server-side `PeerConnection`s behind one address.
//!
//! In the simulator, 20 client `PeerConnection`s, each on its own address,
//! connect to 20 peers of one `PeerSet` on one address (routed by the ufrag
//! of their first checks, then by the 5-tuples their ICE validated), each
//! with a data channel the server echoes; every message comes back right.
//! One peer removed mid-call leaves the others undisturbed; an attacker
//! spoofing a client's source and sending garbage and checks with a wrong
//! password disturbs nobody, and its datagrams are dropped and counted.
//! Over real UDP, `runtime::Driver` drives a `PeerSet` on one socket.

#[path = "common/sim_peers.rs"]
mod sim_peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::peer::{self, PeerConnection, PeerConnectionState, PeerKey, PeerSet, SdpType};
use rtclab::sim::{HostId, Sim};
use sim_peers::{addr, certificate};

const SERVER: &str = "203.0.113.10:4000";

fn client_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1 + i as u8], 5000))
}

struct Room {
    sim: Sim,
    server: HostId,
    clients: Vec<HostId>,
    keys: Vec<PeerKey>,
    channels: Vec<ChannelId>,
    /// Messages each client got back.
    got: Vec<Vec<Message>>,
    open: Vec<bool>,
    /// The client index of each server-side peer.
    of_key: HashMap<PeerKey, usize>,
    echoed: usize,
}

/// Offer/answer is done here (the signaling); candidates trickle in `pump`.
fn room(n: usize, seed: u64) -> Room {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::new(seed);
    let now = sim.now();
    let mut set = PeerSet::new();
    let mut pcs = Vec::new();
    let mut keys = Vec::new();
    let mut channels = Vec::new();
    for i in 0..n {
        let mut client = PeerConnection::new(
            peer::Config::new(certificate(&mut rng), vec![client_addr(i)]),
            StdRng::seed_from_u64(rng.random()),
        );
        channels.push(
            client
                .create_data_channel(ChannelInit::new("echo"))
                .expect("channel"),
        );
        let offer = client.create_offer(now).expect("offer");
        client
            .set_local_description(now, SdpType::Offer, &offer)
            .expect("local offer");
        let mut server = PeerConnection::new(
            peer::Config::new(certificate(&mut rng), vec![addr(SERVER)]),
            StdRng::seed_from_u64(rng.random()),
        );
        server
            .set_remote_description(now, SdpType::Offer, &offer)
            .expect("remote offer");
        let answer = server.create_answer().expect("answer");
        server
            .set_local_description(now, SdpType::Answer, &answer)
            .expect("local answer");
        client
            .set_remote_description(now, SdpType::Answer, &answer)
            .expect("remote answer");
        keys.push(set.insert(server));
        pcs.push(client);
    }
    let server = sim.add_host(set, &[addr(SERVER)]);
    let clients = pcs
        .into_iter()
        .enumerate()
        .map(|(i, pc)| sim.add_host(pc, &[client_addr(i)]))
        .collect();
    let of_key = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    Room {
        sim,
        server,
        clients,
        keys,
        channels,
        got: vec![Vec::new(); n],
        open: vec![false; n],
        of_key,
        echoed: 0,
    }
}

/// Signaling (candidates both ways), the server's echo, the clients' logs.
fn pump(sim: &mut Sim, r: &mut RoomState<'_>) {
    let now = sim.now();
    for (key, e) in sim.events::<PeerSet>(r.server) {
        let Some(&i) = r.of_key.get(&key) else {
            continue;
        };
        match e {
            peer::Event::LocalCandidate(c) => sim
                .machine_mut::<PeerConnection>(r.clients[i])
                .add_ice_candidate(now, &format!("a={c}"))
                .expect("candidate"),
            peer::Event::GatheringComplete => sim
                .machine_mut::<PeerConnection>(r.clients[i])
                .add_end_of_candidates(now),
            peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                let set = sim.machine_mut::<PeerSet>(r.server);
                if let Some(mut pc) = set.get_mut(key) {
                    let sent = match &message {
                        Message::Text(t) => pc.send_text(now, channel, t),
                        Message::Binary(b) => pc.send_binary(now, channel, b),
                    };
                    sent.expect("echo");
                    *r.echoed += 1;
                }
            }
            _ => {}
        }
    }
    for (i, &h) in r.clients.iter().enumerate() {
        for e in sim.events::<PeerConnection>(h) {
            match e {
                peer::Event::LocalCandidate(c) => {
                    let set = sim.machine_mut::<PeerSet>(r.server);
                    if let Some(mut pc) = set.get_mut(r.keys[i]) {
                        pc.add_ice_candidate(now, &format!("a={c}"))
                            .expect("candidate");
                    }
                }
                peer::Event::GatheringComplete => {
                    let set = sim.machine_mut::<PeerSet>(r.server);
                    if let Some(mut pc) = set.get_mut(r.keys[i]) {
                        pc.add_end_of_candidates(now);
                    }
                }
                peer::Event::DataChannel(DcEvent::Open(_)) => r.open[i] = true,
                peer::Event::DataChannel(DcEvent::Message { message, .. }) => {
                    r.got[i].push(message)
                }
                _ => {}
            }
        }
    }
}

/// The parts of a [`Room`] `pump` changes while the simulator is borrowed.
struct RoomState<'a> {
    server: HostId,
    clients: &'a [HostId],
    keys: &'a [PeerKey],
    of_key: &'a HashMap<PeerKey, usize>,
    got: &'a mut [Vec<Message>],
    open: &'a mut [bool],
    echoed: &'a mut usize,
}

impl Room {
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&RoomState<'_>) -> bool) {
        let mut st = RoomState {
            server: self.server,
            clients: &self.clients,
            keys: &self.keys,
            of_key: &self.of_key,
            got: &mut self.got,
            open: &mut self.open,
            echoed: &mut self.echoed,
        };
        self.sim.run_for_with(limit, |sim| {
            pump(sim, &mut st);
            done(&st)
        });
    }

    fn set(&mut self) -> &mut PeerSet {
        self.sim.machine_mut::<PeerSet>(self.server)
    }

    fn client(&mut self, i: usize) -> &mut PeerConnection {
        self.sim.machine_mut::<PeerConnection>(self.clients[i])
    }

    /// Each client in `who` sends `count` texts, tagged with the round.
    fn send_round(&mut self, who: &[usize], round: usize, count: usize) {
        let now = self.sim.now();
        for &i in who {
            let ch = self.channels[i];
            for j in 0..count {
                self.client(i)
                    .send_text(now, ch, &format!("client {i} round {round} #{j}"))
                    .expect("send");
            }
        }
    }

    fn expected(i: usize, rounds: std::ops::Range<usize>, count: usize) -> Vec<Message> {
        rounds
            .flat_map(|round| {
                (0..count).map(move |j| Message::Text(format!("client {i} round {round} #{j}")))
            })
            .collect()
    }
}

#[test]
fn twenty_peers_on_one_address_echo_and_one_leaves() {
    const N: usize = 20;
    const COUNT: usize = 5;
    let mut r = room(N, 17);
    r.run_until(Duration::from_secs(10), |st| st.open.iter().all(|&o| o));
    assert!(r.open.iter().all(|&o| o), "channels open: {:?}", r.open);
    for i in 0..N {
        assert_eq!(
            r.client(i).connection_state(),
            PeerConnectionState::Connected
        );
    }
    let keys = r.keys.clone();
    for &k in &keys {
        let pc = r.set().get(k).expect("peer");
        assert_eq!(pc.connection_state(), PeerConnectionState::Connected);
    }
    let s = r.set().stats();
    assert!(s.routed_by_ufrag >= N as u64, "{s:?}");
    assert!(s.routed_by_tuple > 0, "{s:?}");
    assert!(r.set().tuple_count() >= N, "{s:?}");
    assert!(r.set().tuple_count() <= N * rtclab::peer::set::MAX_TUPLES_PER_PEER);

    // Round 0: everyone; every message comes back to its sender, in order.
    let all: Vec<usize> = (0..N).collect();
    r.send_round(&all, 0, COUNT);
    r.run_until(Duration::from_secs(5), |st| {
        st.got.iter().all(|g| g.len() == COUNT)
    });
    for i in 0..N {
        assert_eq!(r.got[i], Room::expected(i, 0..1, COUNT), "client {i}");
    }

    // Peer 7 is removed mid-call: the others go on undisturbed.
    let gone = 7;
    let removed = r.set().remove(keys[gone]).expect("removed");
    assert_eq!(removed.connection_state(), PeerConnectionState::Connected);
    assert_eq!(r.set().len(), N - 1);
    let dropped_before = r.set().stats().dropped_unknown_tuple;
    r.send_round(&all, 1, COUNT);
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != gone).collect();
    let o = others.clone();
    r.run_until(Duration::from_secs(5), |st| {
        o.iter().all(|&i| st.got[i].len() == 2 * COUNT)
    });
    for &i in &others {
        assert_eq!(r.got[i], Room::expected(i, 0..2, COUNT), "client {i}");
    }
    assert_eq!(r.got[gone].len(), COUNT, "the removed peer echoed nothing");
    // What client 7 still sends to the server is dropped and counted.
    assert!(r.set().stats().dropped_unknown_tuple > dropped_before);
    // Its key is not reused.
    let pc = PeerConnection::new(
        peer::Config::new(
            certificate(&mut StdRng::seed_from_u64(1)),
            vec![addr(SERVER)],
        ),
        StdRng::seed_from_u64(2),
    );
    let k = r.set().insert(pc);
    assert!(!keys.contains(&k));
}

/// Sends, at each tick, garbage and forged datagrams to the server, from a
/// client's address (spoofed) and from many made-up ones.
struct Attacker {
    rng: StdRng,
    victim: SocketAddr,
    ufrags: Vec<String>,
    next: Instant,
    sent: u64,
    out: Vec<Transmit>,
}

impl Machine for Attacker {
    type Event = ();
    fn handle_receive(&mut self, _: Instant, _: Receive<'_>) {}
    fn handle_timeout(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        self.next = now + Duration::from_millis(5);
        let server = addr(SERVER);
        for _ in 0..4 {
            let kind = self.rng.random_range(0..4);
            let len = self.rng.random_range(0..200);
            let mut contents: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
            match kind {
                // DTLS- and SRTP-looking garbage.
                0 if !contents.is_empty() => contents[0] = 22,
                1 if contents.len() > 1 => contents[0] = 0x80,
                // A check for a real server peer, signed with a wrong
                // password.
                2 => {
                    let u = &self.ufrags[self.rng.random_range(0..self.ufrags.len())];
                    contents = forged_check(&format!("{u}:evil"));
                }
                _ => {}
            }
            // Half from a real client's address, half from anywhere.
            let source = if self.rng.random() {
                self.victim
            } else {
                SocketAddr::from(([198, 51, 100, self.rng.random()], self.rng.random()))
            };
            self.out.push(Transmit {
                source: Some(source),
                destination: server,
                contents,
            });
            self.sent += 1;
        }
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop()
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }
}

fn forged_check(username: &str) -> Vec<u8> {
    use rtclab::stun::{Attribute, IntegrityKey, MessageEncoder, MessageType, TransactionId};
    let mut out = Vec::new();
    MessageEncoder::new(
        &mut out,
        MessageType::BINDING_REQUEST,
        TransactionId([9; 12]),
    )
    .attribute(&Attribute::Username(username))
    .message_integrity(&IntegrityKey::short_term("not-the-password-at-all"))
    .fingerprint()
    .finish()
    .expect("check");
    out
}

#[test]
fn spoofed_and_garbage_datagrams_disturb_nobody() {
    const N: usize = 4;
    const COUNT: usize = 20;
    let mut r = room(N, 23);
    r.run_until(Duration::from_secs(10), |st| st.open.iter().all(|&o| o));
    assert!(r.open.iter().all(|&o| o));
    let keys = r.keys.clone();
    let ufrags: Vec<String> = keys
        .iter()
        .map(|&k| {
            let pc = r.set().get(k).expect("peer");
            let t = pc.transport().expect("transport");
            t.local_credentials().ufrag.clone()
        })
        .collect();
    let start = r.sim.now();
    let attacker = Attacker {
        rng: StdRng::seed_from_u64(99),
        victim: client_addr(0),
        ufrags,
        next: start,
        sent: 0,
        out: Vec::new(),
    };
    let evil = r.sim.add_host(attacker, &[addr("198.51.100.250:666")]);
    r.sim.set_spoofing(evil, true);
    let before = r.set().stats();
    let tuples = r.set().tuple_count();
    let all: Vec<usize> = (0..N).collect();
    r.send_round(&all, 0, COUNT);
    r.run_until(Duration::from_secs(3), |_| false);
    for i in 0..N {
        assert_eq!(r.got[i], Room::expected(i, 0..1, COUNT), "client {i}");
        assert_eq!(
            r.client(i).connection_state(),
            PeerConnectionState::Connected
        );
    }
    let sent = r.sim.machine::<Attacker>(evil).sent;
    let after = r.set().stats();
    let dropped = (after.dropped_unknown_tuple - before.dropped_unknown_tuple)
        + (after.dropped_malformed_stun - before.dropped_malformed_stun)
        + (after.dropped_unknown_ufrag - before.dropped_unknown_ufrag);
    println!("attacker sent {sent}, the set dropped {dropped}: {after:?}");
    assert!(sent > 1000, "{sent}");
    assert!(dropped > sent / 4, "{dropped} of {sent}: {after:?}");
    // Forged checks reached their peers by ufrag (which answered 401) but
    // taught the table nothing.
    assert!(after.routed_by_ufrag > before.routed_by_ufrag);
    assert_eq!(r.set().tuple_count(), tuples);
}

/// Over real UDP: one `runtime::Driver` drives a `PeerSet` of three peers on
/// one socket; three clients on their own sockets echo through it.
#[tokio::test]
async fn driver_runs_a_peer_set_on_one_socket() {
    use rtclab::runtime::Driver;
    use tokio::net::UdpSocket;
    const N: usize = 3;
    let server_sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server_sock.local_addr().expect("addr");
    let mut rng = StdRng::seed_from_u64(5);
    let mut set = PeerSet::new();
    let mut clients = Vec::new();
    let mut keys = Vec::new();
    let now = Instant::now();
    for _ in 0..N {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let a = sock.local_addr().expect("addr");
        let mut c = PeerConnection::new(
            peer::Config::new(certificate(&mut rng), vec![a]),
            StdRng::seed_from_u64(rng.random()),
        );
        let ch = c.create_data_channel(ChannelInit::new("echo")).expect("dc");
        let offer = c.create_offer(now).expect("offer");
        c.set_local_description(now, SdpType::Offer, &offer)
            .expect("local");
        let mut s = PeerConnection::new(
            peer::Config::new(certificate(&mut rng), vec![server_addr]),
            StdRng::seed_from_u64(rng.random()),
        );
        s.set_remote_description(now, SdpType::Offer, &offer)
            .expect("remote");
        let answer = s.create_answer().expect("answer");
        s.set_local_description(now, SdpType::Answer, &answer)
            .expect("local");
        c.set_remote_description(now, SdpType::Answer, &answer)
            .expect("remote");
        keys.push(set.insert(s));
        clients.push((Driver::from_sockets(c, vec![sock]).expect("driver"), ch));
    }
    let mut server = Driver::from_sockets(set, vec![server_sock]).expect("driver");
    let mut got = vec![Vec::new(); N];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = [false; N];
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {got:?} {:?}",
            server.machine().stats()
        );
        if got.iter().all(|g: &Vec<Message>| g.len() == 3) {
            break;
        }
        // One step of each: whichever has an event first.
        let step = Duration::from_millis(5);
        if let Ok(e) = tokio::time::timeout(step, server.next_event()).await {
            let (key, e) = e.expect("server socket");
            let i = keys.iter().position(|&k| k == key).expect("a key of ours");
            let now = Instant::now();
            match e {
                peer::Event::LocalCandidate(c) => clients[i]
                    .0
                    .machine_mut()
                    .add_ice_candidate(now, &format!("a={c}"))
                    .expect("candidate"),
                peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                    if let (Some(mut pc), Message::Text(t)) =
                        (server.machine_mut().get_mut(key), message)
                    {
                        pc.send_text(now, channel, &t).expect("echo");
                    }
                }
                _ => {}
            }
        }
        for (i, (d, ch)) in clients.iter_mut().enumerate() {
            if let Ok(e) = tokio::time::timeout(Duration::from_millis(1), d.next_event()).await {
                let now = Instant::now();
                match e.expect("client socket") {
                    peer::Event::LocalCandidate(c) => {
                        if let Some(mut pc) = server.machine_mut().get_mut(keys[i]) {
                            pc.add_ice_candidate(now, &format!("a={c}"))
                                .expect("candidate");
                        }
                    }
                    peer::Event::DataChannel(DcEvent::Open(_)) if !sent[i] => {
                        sent[i] = true;
                        for j in 0..3 {
                            d.machine_mut()
                                .send_text(now, *ch, &format!("{i}/{j}"))
                                .expect("send");
                        }
                    }
                    peer::Event::DataChannel(DcEvent::Message { message, .. }) => {
                        got[i].push(message)
                    }
                    _ => {}
                }
            }
        }
    }
    for (i, g) in got.iter().enumerate() {
        let want: Vec<Message> = (0..3).map(|j| Message::Text(format!("{i}/{j}"))).collect();
        assert_eq!(g, &want);
    }
    let s = server.machine().stats();
    assert!(
        s.routed_by_ufrag >= N as u64 && s.routed_by_tuple > 0,
        "{s:?}"
    );
}
