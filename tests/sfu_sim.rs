//! The SFU in the simulator: rtclab peers as participants of one room,
//! each publishing VP8 once and receiving every other participant's video
//! through the SFU's one UDP address. Virtual time, fixed seeds.

#[path = "common/sim_peers.rs"]
mod sim_peers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType, TrackCodec, TrackId};
use rtclab::sfu::{
    ClientSignal, Config, Event as SfuEvent, ParticipantId, Role, ServerSignal, Sfu, Stats,
};
use rtclab::sim::{HostId, LinkConfig, Sim};
use sim_peers::certificate;

const SFU: &str = "203.0.113.10:3478";
const FRAME: Duration = Duration::from_millis(33);

struct Client {
    host: HostId,
    id: ParticipantId,
    /// One track, or one per simulcast layer (lowest first).
    tracks: Vec<TrackId>,
    /// A keyframe was asked for on the layer (PLI from the SFU).
    key_wanted: Vec<bool>,
    chat: ChannelId,
    /// Frames received per mid, and the first frame's time since start.
    frames: HashMap<String, usize>,
    first_frame: Option<Duration>,
    chat_in: Vec<String>,
    sent: u32,
}

struct Room {
    sim: Sim,
    sfu: HostId,
    clients: Vec<Client>,
    rng: StdRng,
}

fn client_addr(i: usize) -> SocketAddr {
    format!("192.0.2.{}:5000", i + 1).parse().unwrap()
}

impl Room {
    fn new(seed: u64) -> Room {
        Room::with_config(seed, |_| {})
    }

    fn with_config(seed: u64, configure: impl FnOnce(&mut Config)) -> Room {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = Sim::new(seed);
        let mut config = Config::new(certificate(&mut rng), vec![SFU.parse().unwrap()]);
        config.max_room_size = 8;
        configure(&mut config);
        let sfu = Sfu::new(config, StdRng::seed_from_u64(seed + 1));
        let sfu = sim.add_host(sfu, &[SFU.parse().unwrap()]);
        Room {
            sim,
            sfu,
            clients: Vec::new(),
            rng,
        }
    }

    fn sfu(&mut self) -> &mut Sfu {
        self.sim.machine_mut::<Sfu>(self.sfu)
    }

    /// A new participant: joins, offers a VP8 camera and a chat channel.
    fn join(&mut self, link: LinkConfig) -> usize {
        self.join_with(link, &[])
    }

    /// As [`Room::join`], the camera sent as simulcast layers `rids`
    /// (lowest first); none: one stream.
    fn join_with(&mut self, link: LinkConfig, rids: &[&str]) -> usize {
        let i = self.clients.len();
        let now = self.sim.now();
        let cert = certificate(&mut self.rng);
        let mut pc = PeerConnection::new(
            peer::Config::new(cert, vec![client_addr(i)]),
            StdRng::seed_from_u64(100 + i as u64),
        );
        let tracks = if rids.is_empty() {
            vec![pc.add_track_with_codec(TrackCodec::Vp8).unwrap()]
        } else {
            pc.add_simulcast_track(TrackCodec::Vp8, None, rids).unwrap()
        };
        let chat = pc.create_data_channel(ChannelInit::new("chat")).unwrap();
        let offer = pc.create_offer(now).unwrap();
        pc.set_local_description(now, SdpType::Offer, &offer)
            .unwrap();
        let id = self.sfu().join(now, "room").unwrap();
        self.sfu()
            .handle_signal(now, id, ClientSignal::Offer(offer))
            .unwrap();
        let host = self.sim.add_host(pc, &[client_addr(i)]);
        self.sim.set_link(host, link);
        self.clients.push(Client {
            host,
            id,
            key_wanted: vec![false; tracks.len()],
            tracks,
            chat,
            frames: HashMap::new(),
            first_frame: None,
            chat_in: Vec::new(),
            sent: 0,
        });
        self.pump();
        i
    }

    /// Signaling both ways, and the clients' events.
    fn pump(&mut self) {
        let now = self.sim.now();
        let started = self.sim.start();
        let signals: Vec<(ParticipantId, ServerSignal)> = self
            .sim
            .events::<Sfu>(self.sfu)
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
            let Some(c) = self.clients.iter().position(|c| c.id == id) else {
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
                    self.sfu()
                        .handle_signal(now, id, ClientSignal::Answer(answer))
                        .unwrap();
                }
                ServerSignal::Candidate(c) => pc.add_ice_candidate(now, &c).unwrap(),
                ServerSignal::Error(e) => panic!("{id}: {e}"),
                ServerSignal::Joined(_) | ServerSignal::Left(_) => {}
            }
        }
        for k in 0..self.clients.len() {
            let host = self.clients[k].host;
            let id = self.clients[k].id;
            for e in self.sim.events::<PeerConnection>(host) {
                match e {
                    peer::Event::LocalCandidate(c) => {
                        self.sfu()
                            .handle_signal(now, id, ClientSignal::Candidate(c.to_string()))
                            .unwrap();
                    }
                    peer::Event::KeyframeRequested(track) => {
                        let c = &mut self.clients[k];
                        if let Some(l) = c.tracks.iter().position(|t| *t == track) {
                            c.key_wanted[l] = true;
                        }
                    }
                    peer::Event::Frame { mid, .. } => {
                        let c = &mut self.clients[k];
                        *c.frames.entry(mid).or_default() += 1;
                        c.first_frame.get_or_insert(now - started);
                    }
                    peer::Event::DataChannel(DcEvent::Message {
                        message: Message::Text(t),
                        ..
                    }) => self.clients[k].chat_in.push(t),
                    _ => {}
                }
            }
        }
    }

    /// Runs `d`, every client sending a VP8 frame each 33 ms (a keyframe
    /// every `gop` frames, or when asked). Simulcast layers send frames of
    /// about 50 kbit/s, 260 kbit/s and 1 Mbit/s.
    fn run(&mut self, d: Duration, gop: u32) {
        let end = self.sim.now() + d;
        while self.sim.now() < end {
            self.sim.run_for(FRAME);
            self.pump();
            let now = self.sim.now();
            for c in &mut self.clients {
                let pc = self.sim.machine_mut::<PeerConnection>(c.host);
                if pc.connection_state() != PeerConnectionState::Connected {
                    continue;
                }
                let mut sent = false;
                let layers = c.tracks.len();
                for (l, &track) in c.tracks.iter().enumerate() {
                    let key = c.sent % gop == 0 || c.key_wanted[l];
                    let size = match (layers, l) {
                        (1, _) => 1200 + (c.sent as usize % 7) * 300,
                        (_, 0) => 200,
                        (_, 1) => 1100,
                        _ => 3800,
                    };
                    let mut frame = vec![0x5a; size];
                    frame[0] = if key { 0x10 } else { 0x11 };
                    if pc.send_frame(now, track, 3000 * c.sent, &frame).is_ok() {
                        sent = true;
                        if key {
                            c.key_wanted[l] = false;
                        }
                    }
                }
                if sent {
                    c.sent += 1;
                }
            }
            self.pump();
        }
    }

    fn peer(&self, c: usize) -> &PeerConnection {
        self.sim.machine::<PeerConnection>(self.clients[c].host)
    }
}

fn clean() -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::default()
    }
}

/// Four participants: everyone decodes everyone else, and each uploads its
/// video once (a mesh would upload it three times).
#[test]
fn four_participants_see_each_other_and_upload_once() {
    let mut room = Room::new(1);
    for _ in 0..4 {
        room.join(clean());
    }
    room.run(Duration::from_secs(6), 60);
    for (i, c) in room.clients.iter().enumerate() {
        let streams: Vec<usize> = c.frames.values().copied().collect();
        assert_eq!(
            streams.len(),
            3,
            "participant {i} sees three others: {:?}",
            c.frames
        );
        assert!(
            streams.iter().all(|&n| n > 100),
            "participant {i} decodes every stream: {:?}",
            c.frames
        );
    }
    // Upload: each participant sent one stream's packets.
    for c in 0..4 {
        let s = room.peer(c).stats();
        let sent: u64 = s.outbound.iter().map(|o| o.packets_sent).sum();
        let frames = u64::from(room.clients[c].sent);
        assert!(
            sent < frames * 4,
            "one copy uploaded: {sent} packets for {frames} frames"
        );
    }
    let stats = room.sfu().stats();
    assert!(stats.forwarded >= stats.received * 2, "{stats:?}");
}

/// The chat channel reaches everyone else in the room.
#[test]
fn chat_is_relayed_to_the_room() {
    let mut room = Room::new(2);
    for _ in 0..3 {
        room.join(clean());
    }
    room.run(Duration::from_secs(2), 60);
    let now = room.sim.now();
    let (host, chat) = (room.clients[0].host, room.clients[0].chat);
    room.sim
        .machine_mut::<PeerConnection>(host)
        .send_text(now, chat, "hello room")
        .unwrap();
    room.run(Duration::from_millis(500), 60);
    for c in &room.clients[1..] {
        assert!(
            c.chat_in
                .iter()
                .any(|t| t.contains("hello room") && t.contains("\"from\"")),
            "{:?}",
            c.chat_in
        );
    }
    assert!(
        room.clients[0]
            .chat_in
            .iter()
            .all(|t| !t.contains("hello room"))
    );
}

/// 5 % loss on one subscriber's link: its losses are repaired on that link
/// from the SFU's cache of each publisher's stream (one for all its
/// subscribers); the publishers see no NACK for them.
#[test]
fn a_lossy_subscriber_is_repaired_by_the_sfu() {
    let mut room = Room::new(3);
    room.join(clean());
    room.join(clean());
    let lossy = LinkConfig {
        loss: 0.05,
        ..clean()
    };
    let c = room.join(clean());
    room.sim.set_downlink(room.clients[c].host, lossy);
    room.run(Duration::from_secs(8), 60);
    let got: Vec<usize> = room.clients[c].frames.values().copied().collect();
    let sent: Vec<u32> = room.clients[..2].iter().map(|c| c.sent).collect();
    assert_eq!(got.len(), 2, "{:?}", room.clients[c].frames);
    for (g, s) in got.iter().zip(&sent) {
        assert!(*g as u32 + 10 >= *s, "frames repaired: got {g} of {s}");
    }
    let stats = room.sfu().stats();
    assert_eq!(stats.nacks_to_publishers, 0, "{stats:?}");
    for p in 0..2 {
        let out = &room.peer(p).stats().outbound;
        let nacks: u64 = out.iter().map(|o| o.nack_count).sum();
        assert_eq!(
            nacks, 0,
            "publisher {p} was not asked for the subscriber's losses"
        );
    }
}

/// A late joiner starts from the keyframe cache: its first frame comes
/// without a keyframe request to the publisher.
#[test]
fn a_late_joiner_starts_from_the_cache() {
    let mut room = Room::new(4);
    room.join(clean());
    room.join(clean());
    // A long GOP: without the cache the joiner would need a PLI.
    room.run(Duration::from_secs(3), 300);
    let before = room.sfu().stats();
    let late = room.join(clean());
    let joined = room.sim.elapsed();
    room.run(Duration::from_secs(2), 300);
    let after = room.sfu().stats();
    assert!(after.instant_joins >= 2, "{after:?}");
    let first = room.clients[late].first_frame.expect("a frame");
    assert!(
        first - joined < Duration::from_millis(500),
        "first frame {:?} after joining",
        first - joined
    );
    assert_eq!(
        after.keyframe_requests, before.keyframe_requests,
        "no PLI needed: {after:?}"
    );
    assert_eq!(
        room.clients[late].frames.len(),
        2,
        "{:?}",
        room.clients[late].frames
    );
}

/// Two publishers for 9 s of one long GOP (a browser sends keyframes only
/// when asked: over 256 packets cached per publisher), then `n` joiners
/// at once and 2 s more; each joiner's first frame comes within `within`
/// of joining. The SFU's counters before the joiners and after, and the
/// joiners.
fn join_a_wave(room: &mut Room, n: usize, within: Duration) -> (Stats, Stats, Vec<usize>) {
    room.join(clean());
    room.join(clean());
    room.run(Duration::from_secs(9), 1_000);
    let before = room.sfu().stats();
    let joiners: Vec<usize> = (0..n).map(|_| room.join(clean())).collect();
    let joined = room.sim.elapsed();
    room.run(Duration::from_secs(2), 1_000);
    for &j in &joiners {
        let first = room.clients[j].first_frame.expect("a frame");
        assert!(
            first - joined < within,
            "first frame {:?} after joining",
            first - joined
        );
    }
    (before, room.sfu().stats(), joiners)
}

/// A wave of late joiners after a long stretch without keyframes: each
/// starts at once from the cache, and the second one replayed from that
/// keyframe asks each publisher for a fresh one (one request per
/// publisher, throttled), so that the cache shortens instead of each
/// joiner being sent all of it.
#[test]
fn a_wave_of_joiners_refreshes_a_long_cache() {
    let mut room = Room::new(6);
    let (before, after, _) = join_a_wave(&mut room, 3, Duration::from_millis(700));
    assert!(after.instant_joins >= before.instant_joins + 6, "{after:?}");
    assert_eq!(
        after.keyframe_requests - before.keyframe_requests,
        2,
        "one fresh keyframe per publisher: {after:?}"
    );
}

/// A wave of joiners against a replay budget of one cache: each packet
/// starts one joiner from the cache and the others wait for the packets
/// after (by then, the refreshed keyframe starts them); every one of them
/// soon has both publishers' video.
#[test]
fn a_wave_of_joiners_is_started_within_the_replay_budget() {
    let mut room = Room::with_config(6, |c| c.replay_budget = 1);
    let (before, after, joiners) = join_a_wave(&mut room, 5, Duration::from_millis(900));
    for &j in &joiners {
        let c = &room.clients[j];
        assert!(
            c.frames.len() >= 2 && c.frames.values().all(|&n| n > 10),
            "both publishers' video: {:?}",
            c.frames
        );
    }
    assert!(after.instant_joins >= before.instant_joins + 2, "{after:?}");
    assert!(
        after.instant_joins_deferred > before.instant_joins_deferred,
        "the budget put some off: {after:?}"
    );
}

/// Someone leaves: the others' tracks of them end, the room goes on.
#[test]
fn leaving_ends_the_tracks_for_the_others() {
    let mut room = Room::new(5);
    for _ in 0..3 {
        room.join(clean());
    }
    room.run(Duration::from_secs(2), 60);
    let now = room.sim.now();
    let gone = room.clients[2].id;
    room.sfu().leave(now, gone);
    let host = room.clients[2].host;
    room.sim.machine_mut::<PeerConnection>(host).close(now);
    room.clients.remove(2);
    room.run(Duration::from_secs(2), 60);
    assert_eq!(room.sfu().room_members("room").len(), 2);
    let before: Vec<usize> = room.clients[0].frames.values().copied().collect();
    room.run(Duration::from_secs(1), 60);
    let after: Vec<usize> = room.clients[0].frames.values().copied().collect();
    // The remaining publisher's stream still grows.
    assert!(after.iter().sum::<usize>() > before.iter().sum::<usize>());
}

/// Garbage sent to the SFU's port, half of it spoofing a participant's own
/// address: dropped (or refused by that participant's SRTP, DTLS and ICE),
/// and every participant's video goes on.
struct Garbage {
    to: SocketAddr,
    spoof: SocketAddr,
    rng: StdRng,
    left: u32,
    /// One datagram is due (set by the timer, taken by `poll_transmit`).
    due: bool,
    next: Option<std::time::Instant>,
}

impl rtclab::machine::Machine for Garbage {
    type Event = ();
    fn handle_receive(&mut self, _: std::time::Instant, _: rtclab::machine::Receive<'_>) {}
    fn handle_timeout(&mut self, now: std::time::Instant) {
        if self.left > 0 && self.next.is_some_and(|t| t <= now) {
            self.due = true;
            self.next = Some(now + Duration::from_millis(1));
        }
    }
    fn poll_transmit(&mut self) -> Option<rtclab::machine::Transmit> {
        use rand::Rng;
        if !self.due || self.left == 0 {
            return None;
        }
        self.due = false;
        self.left -= 1;
        let len = self.rng.random_range(1..1400);
        let mut contents: Vec<u8> = (0..len).map(|_| self.rng.random()).collect();
        // Shapes the SFU's demultiplexing sees: RTP/RTCP, DTLS, STUN.
        contents[0] = [0x80, 0x90, 0x17, 0x16, 0x00, 0x01][self.left as usize % 6];
        let spoof = self.left % 2 == 0;
        Some(rtclab::machine::Transmit {
            source: spoof.then_some(self.spoof),
            destination: self.to,
            contents,
        })
    }
    fn poll_event(&mut self) -> Option<()> {
        None
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.next.filter(|_| self.left > 0)
    }
}

#[test]
fn garbage_and_bad_signaling_from_one_side_affect_nobody_else() {
    let mut room = Room::new(6);
    for _ in 0..3 {
        room.join(clean());
    }
    room.run(Duration::from_secs(2), 60);
    let before: Vec<usize> = room
        .clients
        .iter()
        .map(|c| c.frames.values().sum())
        .collect();
    // Bad SDP and signals out of turn are refused with an error, nothing else.
    let now = room.sim.now();
    let id = room.clients[0].id;
    assert!(
        room.sfu()
            .handle_signal(now, id, ClientSignal::Offer("v=0\r\nnot sdp".into()))
            .is_err()
    );
    assert!(
        room.sfu()
            .handle_signal(now, id, ClientSignal::Answer("v=0".into()))
            .is_err()
    );
    assert!(
        room.sfu()
            .handle_signal(now, id, ClientSignal::Candidate("candidate:garbage".into()))
            .is_ok()
    );
    let start = room.sim.now();
    let attacker = Garbage {
        to: SFU.parse().unwrap(),
        spoof: client_addr(0),
        rng: StdRng::seed_from_u64(99),
        left: 3000,
        due: false,
        next: Some(start),
    };
    let host = room
        .sim
        .add_host(attacker, &["203.0.113.66:4000".parse().unwrap()]);
    room.sim.set_spoofing(host, true);
    room.run(Duration::from_secs(4), 60);
    let after: Vec<usize> = room
        .clients
        .iter()
        .map(|c| c.frames.values().sum())
        .collect();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(a - b > 150, "participant {i}: {b} → {a} frames");
    }
    for i in 0..3 {
        assert_eq!(
            room.peer(i).connection_state(),
            PeerConnectionState::Connected,
            "participant {i}"
        );
    }
    let stats = room.sfu().stats();
    assert!(stats.dropped_unknown > 1000, "{stats:?}");
}

/// Rooms and the SFU refuse participants past their limits, clearly.
#[test]
fn limits_refuse_with_a_clear_error() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut config = Config::new(certificate(&mut rng), vec![SFU.parse().unwrap()]);
    config.max_room_size = 2;
    config.max_participants = 3;
    let mut sfu = Sfu::new(config, StdRng::seed_from_u64(8));
    let now = std::time::Instant::now();
    sfu.join(now, "a").unwrap();
    sfu.join(now, "a").unwrap();
    let e = sfu.join(now, "a").unwrap_err();
    assert_eq!(e.to_string(), "the room is full");
    // WHEP viewers are an audience: the room size does not count them,
    // the total does.
    sfu.join_as(now, "a", Role::Viewer).unwrap();
    assert_eq!(
        sfu.join(now, "c").unwrap_err().to_string(),
        "the SFU is full"
    );
}

/// Four participants publishing three simulcast layers each; one of them
/// receives through a 300 kbit/s link. The SFU moves that subscriber to
/// the lowest layer of every publisher (its link carries three of those)
/// and it keeps decoding; the others, unaffected, get the highest.
#[test]
fn a_subscriber_behind_300_kbits_gets_the_low_layer_and_nobody_else_does() {
    let mut room = Room::new(8);
    let rids = ["l", "m", "h"];
    for _ in 0..3 {
        room.join_with(clean(), &rids);
    }
    let slow = room.join_with(clean(), &rids);
    room.sim.set_downlink(
        room.clients[slow].host,
        LinkConfig {
            rate_bps: Some(300_000),
            queue_limit_bytes: 30_000,
            ..clean()
        },
    );
    room.run(Duration::from_secs(20), 90);
    let layers = |room: &mut Room, c: usize| {
        let id = room.clients[c].id;
        room.sfu().forwarded_layers(id)
    };
    let slow_layers = layers(&mut room, slow);
    assert_eq!(slow_layers.len(), 3, "{slow_layers:?}");
    assert!(
        slow_layers
            .iter()
            .all(|(_, rid)| rid.as_deref() == Some("l")),
        "the slow subscriber gets the low layers: {slow_layers:?}"
    );
    for c in 0..3 {
        let got = layers(&mut room, c);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(
            got.iter().all(|(_, rid)| rid.as_deref() == Some("h")),
            "participant {c} is unaffected: {got:?}"
        );
    }
    // Still decoding every publisher, on the low layer.
    let before: Vec<usize> = room.clients[slow].frames.values().copied().collect();
    room.run(Duration::from_secs(3), 90);
    let after: Vec<usize> = room.clients[slow].frames.values().copied().collect();
    assert_eq!(after.len(), 3);
    for (b, a) in before.iter().zip(&after) {
        assert!(a - b > 60, "the slow subscriber decodes: {b} → {a}");
    }
    // Each publisher uploads its three layers once.
    let stats = room.sfu().stats();
    assert!(stats.layer_switches >= 3, "{stats:?}");
}
