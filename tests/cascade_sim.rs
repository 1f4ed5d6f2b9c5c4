//! One room across two SFU nodes in the simulator (issue 21, cascading):
//! rtclab peers join node A or node B, the nodes are joined by a cascade
//! link (`Sfu::dial_cascade` / `Sfu::accept_cascade`), and every published
//! packet crosses the link once, however many subscribers the other node
//! has. Virtual time, fixed seeds.

#[path = "common/sim_peers.rs"]
mod sim_peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType, TrackCodec, TrackId};
use rtclab::sfu::{ClientSignal, Config, Event as SfuEvent, ParticipantId, ServerSignal, Sfu};
use rtclab::sim::{HostId, LinkConfig, Sim};
use sim_peers::certificate;

const NODES: [&str; 2] = ["203.0.113.10:3478", "203.0.113.20:3478"];
const FRAME: Duration = Duration::from_millis(33);

struct Client {
    host: HostId,
    node: usize,
    id: ParticipantId,
    /// A camera, if this client publishes.
    track: Option<TrackId>,
    chat: ChannelId,
    frames: HashMap<String, usize>,
    first_frame: Option<Duration>,
    chat_in: Vec<String>,
    left: Vec<ParticipantId>,
    sent: u32,
    /// A keyframe was asked for (PLI): the next frame is one.
    key_asked: bool,
}

/// An SFU and the time spent in it (its CPU cost, the simulator's apart).
struct Timed {
    sfu: Sfu,
    busy: Duration,
}

impl rtclab::machine::Machine for Timed {
    type Event = SfuEvent;
    fn handle_receive(&mut self, now: std::time::Instant, d: rtclab::machine::Receive<'_>) {
        let t = std::time::Instant::now();
        self.sfu.handle_receive(now, d);
        self.busy += t.elapsed();
    }
    fn handle_timeout(&mut self, now: std::time::Instant) {
        let t = std::time::Instant::now();
        self.sfu.handle_timeout(now);
        self.busy += t.elapsed();
    }
    fn poll_transmit(&mut self) -> Option<rtclab::machine::Transmit> {
        let t = std::time::Instant::now();
        let r = self.sfu.poll_transmit();
        self.busy += t.elapsed();
        r
    }
    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<rtclab::machine::TransmitMeta> {
        let t = std::time::Instant::now();
        let r = self.sfu.poll_transmit_into(buf);
        self.busy += t.elapsed();
        r
    }
    fn poll_event(&mut self) -> Option<SfuEvent> {
        self.sfu.poll_event()
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.sfu.poll_timeout()
    }
}

struct Net {
    sim: Sim,
    nodes: [HostId; 2],
    /// The link's participant on each node.
    links: [Option<ParticipantId>; 2],
    clients: Vec<Client>,
    rng: StdRng,
    /// The smallest frame sent (bytes).
    frame: usize,
}

fn client_addr(i: usize) -> SocketAddr {
    format!("192.0.2.{}:5000", i + 1).parse().unwrap()
}

fn clean() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::default()
    }
}

impl Net {
    fn new(seed: u64) -> Net {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = Sim::new(seed);
        let mut nodes = Vec::new();
        for (n, a) in NODES.iter().enumerate() {
            let config = Config::new(certificate(&mut rng), vec![a.parse().unwrap()]);
            let sfu = Sfu::new(config, StdRng::seed_from_u64(seed * 10 + n as u64));
            let sfu = Timed {
                sfu,
                busy: Duration::ZERO,
            };
            nodes.push(sim.add_host(sfu, &[a.parse().unwrap()]));
        }
        Net {
            sim,
            nodes: [nodes[0], nodes[1]],
            links: [None, None],
            clients: Vec::new(),
            rng,
            frame: 1200,
        }
    }

    fn sfu(&mut self, node: usize) -> &mut Sfu {
        &mut self.sim.machine_mut::<Timed>(self.nodes[node]).sfu
    }

    fn busy(&mut self, node: usize) -> Duration {
        self.sim.machine_mut::<Timed>(self.nodes[node]).busy
    }

    /// Node A opens the room's link to node B: the offer, the answer and
    /// B's host candidate, as `POST /cascade/ROOM` carries them.
    fn link(&mut self) {
        let now = self.sim.now();
        let (la, offer) = self.sfu(0).dial_cascade(now, "room").expect("dial");
        let (lb, answer) = self
            .sfu(1)
            .accept_cascade(now, "room", offer)
            .expect("accept");
        let cand = self.sfu(1).host_candidate().expect("candidate");
        self.sfu(0)
            .handle_signal(now, la, ClientSignal::Answer(answer))
            .expect("answer");
        self.sfu(0)
            .handle_signal(now, la, ClientSignal::Candidate(cand))
            .expect("candidate");
        self.links = [Some(la), Some(lb)];
        self.pump();
    }

    /// A participant on `node`: a VP8 camera if `publish`, and a chat
    /// channel.
    fn join(&mut self, node: usize, publish: bool) -> usize {
        let i = self.clients.len();
        let now = self.sim.now();
        let cert = certificate(&mut self.rng);
        let mut pc = PeerConnection::new(
            peer::Config::new(cert, vec![client_addr(i)]),
            StdRng::seed_from_u64(100 + i as u64),
        );
        let track = publish.then(|| pc.add_track_with_codec(TrackCodec::Vp8).unwrap());
        let chat = pc.create_data_channel(ChannelInit::new("chat")).unwrap();
        let offer = pc.create_offer(now).unwrap();
        pc.set_local_description(now, SdpType::Offer, &offer)
            .unwrap();
        let id = self.sfu(node).join(now, "room").unwrap();
        self.sfu(node)
            .handle_signal(now, id, ClientSignal::Offer(offer))
            .unwrap();
        let host = self.sim.add_host(pc, &[client_addr(i)]);
        self.sim.set_link(host, clean());
        self.clients.push(Client {
            host,
            node,
            id,
            track,
            chat,
            frames: HashMap::new(),
            first_frame: None,
            chat_in: Vec::new(),
            left: Vec::new(),
            sent: 0,
            key_asked: false,
        });
        self.pump();
        i
    }

    /// Signaling both ways on both nodes, and the clients' events.
    fn pump(&mut self) {
        let now = self.sim.now();
        let started = self.sim.start();
        for node in 0..2 {
            let signals: Vec<(ParticipantId, ServerSignal)> = self
                .sim
                .events::<Timed>(self.nodes[node])
                .into_iter()
                .filter_map(|e| match e {
                    SfuEvent::Signal {
                        participant,
                        signal,
                    } => Some((participant, signal)),
                    _ => None,
                })
                .collect();
            for (id, signal) in signals {
                // The link's candidates, trickled to the other node.
                if Some(id) == self.links[node] {
                    if let (ServerSignal::Candidate(c), Some(other)) =
                        (&signal, self.links[1 - node])
                    {
                        let _ = self.sfu(1 - node).handle_signal(
                            now,
                            other,
                            ClientSignal::Candidate(c.clone()),
                        );
                    }
                    continue;
                }
                let Some(c) = self
                    .clients
                    .iter()
                    .position(|c| c.id == id && c.node == node)
                else {
                    continue;
                };
                let host = self.clients[c].host;
                let pc = self.sim.machine_mut::<PeerConnection>(host);
                match signal {
                    ServerSignal::Answer(sdp) => pc
                        .set_remote_description(now, SdpType::Answer, &sdp)
                        .unwrap(),
                    ServerSignal::Offer(sdp) => {
                        pc.set_remote_description(now, SdpType::Offer, &sdp)
                            .unwrap();
                        let answer = pc.create_answer().unwrap();
                        pc.set_local_description(now, SdpType::Answer, &answer)
                            .unwrap();
                        self.sfu(node)
                            .handle_signal(now, id, ClientSignal::Answer(answer))
                            .unwrap();
                    }
                    ServerSignal::Candidate(cand) => pc.add_ice_candidate(now, &cand).unwrap(),
                    ServerSignal::Error(e) => panic!("{id}: {e}"),
                    ServerSignal::Left(p) => self.clients[c].left.push(p),
                    ServerSignal::Joined(_) => {}
                }
            }
        }
        for k in 0..self.clients.len() {
            let (host, id, node) = (
                self.clients[k].host,
                self.clients[k].id,
                self.clients[k].node,
            );
            for e in self.sim.events::<PeerConnection>(host) {
                match e {
                    peer::Event::LocalCandidate(c) => {
                        self.sfu(node)
                            .handle_signal(now, id, ClientSignal::Candidate(c.to_string()))
                            .unwrap();
                    }
                    peer::Event::Frame { mid, .. } => {
                        let c = &mut self.clients[k];
                        *c.frames.entry(mid).or_default() += 1;
                        c.first_frame.get_or_insert(now - started);
                    }
                    peer::Event::KeyframeRequested(_) => self.clients[k].key_asked = true,
                    peer::Event::DataChannel(DcEvent::Message {
                        message: Message::Text(t),
                        ..
                    }) => self.clients[k].chat_in.push(t),
                    _ => {}
                }
            }
        }
    }

    /// Runs `d`, every publisher sending a VP8 frame each 33 ms (a
    /// keyframe every `gop` frames, or when asked).
    fn run(&mut self, d: Duration, gop: u32) {
        let end = self.sim.now() + d;
        let size = self.frame;
        while self.sim.now() < end {
            self.sim.run_for(FRAME);
            self.pump();
            let now = self.sim.now();
            for c in &mut self.clients {
                let Some(track) = c.track else {
                    continue;
                };
                let pc = self.sim.machine_mut::<PeerConnection>(c.host);
                if pc.connection_state() != PeerConnectionState::Connected {
                    continue;
                }
                let key = c.sent % gop == 0 || std::mem::take(&mut c.key_asked);
                let mut frame = vec![0x5a; size + (c.sent as usize % 7) * 300];
                frame[0] = if key { 0x10 } else { 0x11 };
                if pc.send_frame(now, track, 3000 * c.sent, &frame).is_ok() {
                    c.sent += 1;
                }
            }
            self.pump();
        }
    }

    fn peer(&self, c: usize) -> &PeerConnection {
        self.sim.machine::<PeerConnection>(self.clients[c].host)
    }

    /// RTP packets a client's camera sent (originals, not retransmissions).
    fn published(&self, c: usize) -> u64 {
        self.peer(c)
            .stats()
            .outbound
            .iter()
            .map(|o| o.packets_sent)
            .sum()
    }

    /// The remote publishers of B's link.
    fn remotes_on_b(&mut self) -> Vec<(String, ParticipantId)> {
        let lb = self.links[1].expect("linked");
        self.sfu(1).cascade_remotes(lb)
    }

    /// The link's connection on `node`.
    fn link_pc(&mut self, node: usize) -> &PeerConnection {
        let id = self.links[node].expect("linked");
        self.sfu(node).peer(id).expect("the link")
    }
}

/// Two publishers on A, one subscriber on A and three on B: everyone
/// decodes both cameras, and each published packet crosses the link once
/// (not once per subscriber of B).
#[test]
fn each_published_packet_crosses_the_link_once() {
    let mut net = Net::new(1);
    net.link();
    let p0 = net.join(0, true);
    let p1 = net.join(0, true);
    let mut subs = vec![net.join(0, false)];
    for _ in 0..3 {
        subs.push(net.join(1, false));
    }
    net.run(Duration::from_secs(6), 60);
    for &s in &subs {
        let c = &net.clients[s];
        assert_eq!(
            c.frames.len(),
            2,
            "subscriber {s} (node {}): {:?}",
            c.node,
            c.frames
        );
        assert!(
            c.frames.values().all(|&n| n > 120),
            "subscriber {s} (node {}) decodes both: {:?}",
            c.node,
            c.frames
        );
    }
    let published = net.published(p0) + net.published(p1);
    let a = net.sfu(0).cascade_stats();
    let b = net.sfu(1).cascade_stats();
    eprintln!(
        "published {published}; A {a:?}; B {b:?}; B {:?}",
        net.sfu(1).stats()
    );
    // Once each: never more than was published, and nearly all of it
    // (the first packets came before the link had its tracks).
    assert!(a.rtp_sent <= published, "{a:?} of {published}");
    assert!(a.rtp_sent * 100 >= published * 95, "{a:?} of {published}");
    assert_eq!(b.rtp_sent, 0, "nothing published on B: {b:?}");
    // B forwarded each link packet to its three subscribers.
    let bs = net.sfu(1).stats();
    assert!(
        bs.forwarded >= b.rtp_received * 3 * 95 / 100,
        "{bs:?} {b:?}"
    );
    // The link's own counters agree: one media stream per published one.
    let link_out: u64 = net
        .link_pc(0)
        .stats()
        .outbound
        .iter()
        .map(|o| o.packets_sent)
        .sum();
    assert_eq!(link_out, a.rtp_sent);
    // B's pages see the remote publishers as participants of their room.
    let members = net.sfu(1).room_members("room");
    assert_eq!(
        members.len(),
        3 + 1 + 2,
        "3 subscribers, the link, 2 remote: {members:?}"
    );
}

/// Publishers and subscribers on both nodes: both directions of one link,
/// renegotiated by both nodes as their publishers arrive (offers may
/// cross).
#[test]
fn publishers_on_both_nodes_see_each_other() {
    let mut net = Net::new(2);
    net.link();
    let mut all = Vec::new();
    for n in [0, 1, 0, 1] {
        all.push(net.join(n, true));
    }
    net.run(Duration::from_secs(6), 60);
    for &c in &all {
        let cl = &net.clients[c];
        assert_eq!(
            cl.frames.len(),
            3,
            "client {c} (node {}): {:?}",
            cl.node,
            cl.frames
        );
        assert!(
            cl.frames.values().all(|&n| n > 100),
            "client {c} (node {}): {:?}",
            cl.node,
            cl.frames
        );
    }
    let (a, b) = (net.sfu(0).cascade_stats(), net.sfu(1).cascade_stats());
    let on_a = net.published(all[0]) + net.published(all[2]);
    let on_b = net.published(all[1]) + net.published(all[3]);
    assert!(
        a.rtp_sent <= on_a && a.rtp_sent * 100 >= on_a * 90,
        "{a:?} of {on_a}"
    );
    assert!(
        b.rtp_sent <= on_b && b.rtp_sent * 100 >= on_b * 90,
        "{b:?} of {on_b}"
    );
}

/// 5 % loss on what reaches node B (the link's packets among it): B NACKs
/// over the link, A answers from the link's RTX history, and B's
/// subscribers get nearly every frame.
#[test]
fn loss_on_the_link_is_repaired_across_it() {
    let mut net = Net::new(3);
    net.sim.set_downlink(
        net.nodes[1],
        LinkConfig {
            loss: 0.05,
            ..clean()
        },
    );
    net.link();
    let p = net.join(0, true);
    let s = net.join(1, false);
    net.run(Duration::from_secs(8), 60);
    let sent = net.clients[p].sent as usize;
    let got: usize = net.clients[s].frames.values().sum();
    assert!(got + 10 >= sent, "frames repaired: got {got} of {sent}");
    let out = net.link_pc(0).stats().outbound;
    let resent: u64 = out.iter().map(|o| o.retransmitted_packets_sent).sum();
    let nacks: u64 = out.iter().map(|o| o.nack_count).sum();
    assert!(nacks > 0 && resent > 0, "the link repaired: {out:?}");
}

/// A subscriber on B joins a publisher whose only keyframe went out before
/// the link existed: its PLI crosses the link (throttled on both nodes),
/// the publisher on A sends a keyframe, and it decodes.
#[test]
fn a_joiner_on_the_far_node_gets_a_keyframe_across_the_link() {
    let mut net = Net::new(4);
    let p = net.join(0, true);
    // One keyframe, at the start, before the link.
    net.run(Duration::from_secs(1), 100_000);
    net.link();
    let s = net.join(1, false);
    let joined = net.sim.elapsed();
    net.run(Duration::from_secs(3), 100_000);
    let first = net.clients[s].first_frame.expect("a frame on B");
    assert!(
        first - joined < Duration::from_millis(1500),
        "first frame {:?} after joining",
        first - joined
    );
    assert!(net.sfu(1).cascade_stats().keyframe_requests >= 1);
    assert!(net.sfu(0).stats().keyframe_requests >= 1);
    assert!(net.clients[p].sent > 100);
    // A second joiner on B starts from B's own cache: no new PLI crosses.
    let before = net.sfu(1).cascade_stats().keyframe_requests;
    let late = net.join(1, false);
    let joined = net.sim.elapsed();
    net.run(Duration::from_secs(1), 100_000);
    let first = net.clients[late].first_frame.expect("a frame");
    assert!(first - joined < Duration::from_millis(500));
    assert_eq!(net.sfu(1).cascade_stats().keyframe_requests, before);
}

/// A publisher leaving A leaves B too: B's pages are told, its tracks end,
/// and the room goes on with the others.
#[test]
fn a_publisher_leaving_one_node_ends_its_tracks_on_the_other() {
    let mut net = Net::new(5);
    net.link();
    let p0 = net.join(0, true);
    let _p1 = net.join(0, true);
    let s = net.join(1, false);
    net.run(Duration::from_secs(3), 60);
    assert_eq!(net.clients[s].frames.len(), 2);
    let remotes = net.remotes_on_b();
    assert_eq!(remotes.len(), 2, "{remotes:?}");
    let gone_here = remotes
        .iter()
        .find(|(from, _)| *from == net.clients[p0].id.to_string())
        .map(|(_, r)| *r)
        .expect("p0 on B");
    let now = net.sim.now();
    let id = net.clients[p0].id;
    net.sfu(0).leave(now, id);
    net.run(Duration::from_secs(2), 60);
    assert!(
        net.clients[s].left.contains(&gone_here),
        "B's page told: {:?}",
        net.clients[s].left
    );
    assert!(!net.sfu(1).room_members("room").contains(&gone_here));
    assert_eq!(net.remotes_on_b().len(), 1);
    let before: usize = net.clients[s].frames.values().sum();
    net.run(Duration::from_secs(1), 60);
    let after: usize = net.clients[s].frames.values().sum();
    assert!(after > before + 20, "the other publisher goes on");
}

/// Chat crosses the link, named by the far node's id of the sender; it
/// comes back to nobody and is not relayed twice.
#[test]
fn chat_crosses_the_link() {
    let mut net = Net::new(6);
    net.link();
    let a = net.join(0, true);
    let b0 = net.join(1, false);
    let b1 = net.join(1, false);
    net.run(Duration::from_secs(2), 60);
    let now = net.sim.now();
    let (host, chat) = (net.clients[a].host, net.clients[a].chat);
    net.sim
        .machine_mut::<PeerConnection>(host)
        .send_text(now, chat, "hello from A")
        .unwrap();
    net.run(Duration::from_millis(500), 60);
    let remote = net.remotes_on_b()[0].1;
    for c in [b0, b1] {
        let got: Vec<&String> = net.clients[c]
            .chat_in
            .iter()
            .filter(|t| t.contains("hello from A"))
            .collect();
        assert_eq!(got.len(), 1, "{:?}", net.clients[c].chat_in);
        assert!(
            got[0].contains(&format!("\"from\":\"{remote}\"")),
            "{got:?}"
        );
    }
    assert!(
        net.clients[a]
            .chat_in
            .iter()
            .all(|t| !t.contains("hello from A"))
    );
}

/// The link closing takes the remote publishers off B; A's room goes on.
#[test]
fn the_link_closing_removes_the_remote_publishers() {
    let mut net = Net::new(7);
    net.link();
    let _p = net.join(0, true);
    let s = net.join(1, false);
    net.run(Duration::from_secs(2), 60);
    let lb = net.links[1].unwrap();
    let remote = net.sfu(1).cascade_remotes(lb)[0].1;
    let now = net.sim.now();
    net.sfu(1).leave(now, lb);
    net.run(Duration::from_millis(500), 60);
    assert!(net.clients[s].left.contains(&remote));
    assert_eq!(net.sfu(1).room_members("room").len(), 1);
    assert!(net.sfu(1).cascade_links("room").is_empty());
}

/// The cost of a packet forwarded across the link against one forwarded
/// on one node: one publisher and one subscriber, on the same node, then
/// on two linked nodes; the SFUs' own time per packet the subscriber
/// gets (the simulator's apart). Run in release for figures:
/// `cargo test --release --test cascade_sim -- --ignored --nocapture`.
#[test]
#[ignore]
fn cross_node_forwarding_cost() {
    // Frames of ~10 packets (2.5 Mbit/s): the per-second work (RTCP,
    // timers, estimates) spread over many packets.
    let run = |cascade: bool| {
        let mut net = Net::new(11);
        net.frame = 11_000;
        net.link();
        net.join(0, true);
        net.join(usize::from(cascade), false);
        net.run(Duration::from_secs(2), 60);
        let (a0, b0) = (net.busy(0), net.busy(1));
        let f0 = net.sfu(usize::from(cascade)).stats().forwarded;
        net.run(Duration::from_secs(30), 60);
        let busy = net.busy(0) - a0 + net.busy(1) - b0;
        let packets = net.sfu(usize::from(cascade)).stats().forwarded - f0;
        (busy.as_nanos() as f64 / packets as f64, packets)
    };
    // The least of three rounds each (the machine is shared).
    let (mut local, mut cross, mut n, mut m) = (f64::MAX, f64::MAX, 0, 0);
    for _ in 0..3 {
        let (l, a) = run(false);
        let (c, b) = run(true);
        (local, n) = (local.min(l), a);
        (cross, m) = (cross.min(c), b);
    }
    println!("sfu.cascade.local_forward_ns {local:.0} ns ({n} packets)");
    println!("sfu.cascade.cross_node_forward_ns {cross:.0} ns ({m} packets)");
    println!("sfu.cascade.link_overhead_ns {:.0} ns", cross - local);
    assert!(n > 1000 && m > 1000);
}
