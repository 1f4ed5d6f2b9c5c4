//! Chapter 10: the selective forwarding unit, measured against the mesh.
//!
//! The participants are those of `10_mesh`: each sends one video, a
//! 6,000-byte VP8 frame every 33 ms (about 1.4 Mbit/s), now to rtclab's
//! [`Sfu`] over one peer connection instead of to every other participant.
//! Five parts, all on the simulated network at virtual time from fixed
//! seeds, so every run prints the same:
//!
//! 1. upload per participant, mesh (n − 1 copies) against SFU (one);
//! 2. a subscriber behind a link that loses 5 % of packets, repaired by
//!    the SFU from what it sent on that link, the publishers asked nothing;
//! 3. a late joiner's first frame from the SFU's keyframe cache, against
//!    the same join with the cache off (a PLI round trip, then a keyframe);
//! 4. a subscriber behind a 300 kbit/s link, switched to a low simulcast
//!    layer while the others keep the high one;
//! 5. the active speaker, picked from the RFC 6464 audio levels of the
//!    participants' microphones, and a chat line relayed to the room.
//!
//! Run it with `cargo run --example 10_sfu` (`-- --pcap FILE` writes what
//! the lossy subscriber of part 2 sent and received, for `rtclab xray`).

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

#[path = "10_mesh.rs"]
#[allow(dead_code, clippy::duplicate_mod)]
// its `main` and `run` are the other example's; tests/examples.rs includes it twice
mod mesh;

use std::collections::BTreeMap;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::dtls::cert::Certificate;
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType, TrackCodec, TrackId};
use rtclab::rtp::{HeaderFields, emit_rtp_packet};
use rtclab::sfu::{ClientSignal, Config, Event as SfuEvent, ParticipantId, ServerSignal, Sfu};
use rtclab::sim::{HostId, LinkConfig, Sim};

/// One encoded frame: 6,000 bytes, 30 per second (as in `10_mesh`).
const FRAME: usize = 6_000;
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// The SFU's one UDP address: every participant's only peer.
const SFU: &str = "203.0.113.10:3478";

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// The five parts, printed to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    upload(out)?;
    lossy_subscriber(out)?;
    late_joiner(out)?;
    slow_subscriber(out)?;
    speaker_and_chat(out)?;
    Ok(())
}

/// One participant: a browser-like peer with one video track, sent as
/// one stream or as simulcast layers.
struct Client {
    host: HostId,
    id: ParticipantId,
    /// The track's layers (one without simulcast), lowest first, and the
    /// size of a frame of each.
    layers: Vec<(TrackId, usize)>,
    /// Frames sent, and per layer whether the next one must be a
    /// keyframe (a PLI arrived).
    sent: u32,
    key_due: Vec<bool>,
    /// Its camera is on (a late joiner of part 3 only watches).
    camera: bool,
    /// Part 5: a microphone track, the RFC 6464 level it sends now (in
    /// −dBov: 0 the loudest, 127 silence), and the `chat` channel with
    /// the text that came on it.
    microphone: Option<TrackId>,
    level: u8,
    chat: Option<ChannelId>,
    chat_in: Vec<(Duration, String)>,
    /// When it joined and connected, since the simulation started.
    joined: Duration,
    connected: Option<Duration>,
    /// Per received track (its mid): frames decoded, and the first one's
    /// time since the simulation started.
    frames: BTreeMap<String, (usize, Duration)>,
}

/// A room of the SFU in the simulator.
struct Room {
    sim: Sim,
    sfu: HostId,
    clients: Vec<Client>,
    rng: StdRng,
    /// A keyframe every `gop` frames (unless the SFU asks for one sooner).
    gop: u32,
    /// New participants get a microphone and a chat channel (part 5).
    talk: bool,
    /// The SFU's active speaker announcements: when, who.
    speakers: Vec<(Duration, ParticipantId)>,
}

fn client_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, i as u8 + 1], 5000))
}

fn link(delay_ms: u64) -> LinkConfig {
    LinkConfig {
        delay: Duration::from_millis(delay_ms),
        ..LinkConfig::default()
    }
}

impl Room {
    // ANCHOR: room
    /// An SFU on one address, configured by `configure`.
    fn new(
        seed: u64,
        gop: u32,
        configure: impl FnOnce(&mut Config),
    ) -> Result<Room, Box<dyn Error>> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut sim = Sim::new(seed);
        let sfu_addr: SocketAddr = SFU.parse()?;
        let mut config = Config::new(
            Certificate::generate(&mut rng, SystemTime::now())?,
            vec![sfu_addr],
        );
        configure(&mut config);
        let sfu = Sfu::new(config, StdRng::seed_from_u64(seed + 1));
        let sfu = sim.add_host(sfu, &[sfu_addr]);
        Ok(Room {
            sim,
            sfu,
            clients: Vec::new(),
            rng,
            gop,
            talk: false,
            speakers: Vec::new(),
        })
    }

    /// A new participant: it joins the room and offers its camera; the SFU
    /// answers (and offers it everyone else's video as they come).
    fn join(&mut self, link: LinkConfig) -> Result<usize, Box<dyn Error>> {
        self.join_with(link, &[])
    }

    /// As [`Room::join`], the camera sent as the simulcast layers `rids`,
    /// lowest first, of `(rid, frame size)`.
    fn join_with(
        &mut self,
        link: LinkConfig,
        rids: &[(&str, usize)],
    ) -> Result<usize, Box<dyn Error>> {
        let i = self.clients.len();
        let now = self.sim.now();
        let mut pc = PeerConnection::new(
            peer::Config::new(
                Certificate::generate(&mut self.rng, SystemTime::now())?,
                vec![client_addr(i)],
            ),
            StdRng::seed_from_u64(100 + i as u64),
        );
        let layers = if rids.is_empty() {
            vec![(pc.add_track_with_codec(TrackCodec::Vp8)?, FRAME)]
        } else {
            add_simulcast(&mut pc, rids)?
        };
        let (microphone, chat) = if self.talk {
            (
                Some(pc.add_track_with_codec(TrackCodec::Opus)?),
                Some(pc.create_data_channel(ChannelInit::new("chat"))?),
            )
        } else {
            (None, None)
        };
        let offer = pc.create_offer(now)?;
        pc.set_local_description(now, SdpType::Offer, &offer)?;
        let sfu = self.sim.machine_mut::<Sfu>(self.sfu);
        let id = sfu.join(now, "room")?;
        sfu.handle_signal(now, id, ClientSignal::Offer(offer))?;
        let host = self.sim.add_host(pc, &[client_addr(i)]);
        self.sim.set_link(host, link);
        self.clients.push(Client {
            host,
            id,
            key_due: vec![false; layers.len()],
            layers,
            sent: 0,
            camera: true,
            microphone,
            level: 127,
            chat,
            chat_in: Vec::new(),
            joined: self.sim.elapsed(),
            connected: None,
            frames: BTreeMap::new(),
        });
        self.pump()?;
        Ok(i)
    }
    // ANCHOR_END: room

    /// Delivers the signaling both ways (the WebSocket of `rtclab sfu`,
    /// instantly here) and reads the participants' events.
    fn pump(&mut self) -> Result<(), Box<dyn Error>> {
        let now = self.sim.now();
        let elapsed = self.sim.elapsed();
        let mut signals: Vec<(ParticipantId, ServerSignal)> = Vec::new();
        for e in self.sim.events::<Sfu>(self.sfu) {
            match e {
                SfuEvent::Signal {
                    participant,
                    signal,
                } => signals.push((participant, signal)),
                SfuEvent::ActiveSpeaker { participant, .. } => {
                    self.speakers.push((elapsed, participant));
                }
                _ => {}
            }
        }
        for (id, signal) in signals {
            let Some(c) = self.clients.iter().position(|c| c.id == id) else {
                continue;
            };
            let pc = self.sim.machine_mut::<PeerConnection>(self.clients[c].host);
            match signal {
                ServerSignal::Answer(sdp) => {
                    pc.set_remote_description(now, SdpType::Answer, &sdp)?
                }
                ServerSignal::Offer(sdp) => {
                    pc.set_remote_description(now, SdpType::Offer, &sdp)?;
                    let answer = pc.create_answer()?;
                    pc.set_local_description(now, SdpType::Answer, &answer)?;
                    self.sim.machine_mut::<Sfu>(self.sfu).handle_signal(
                        now,
                        id,
                        ClientSignal::Answer(answer),
                    )?;
                }
                ServerSignal::Candidate(c) => pc.add_ice_candidate(now, &c)?,
                ServerSignal::Error(e) => return Err(format!("{id}: {e}").into()),
                _ => {}
            }
        }
        for k in 0..self.clients.len() {
            let (host, id) = (self.clients[k].host, self.clients[k].id);
            for e in self.sim.events::<PeerConnection>(host) {
                let c = &mut self.clients[k];
                match e {
                    peer::Event::LocalCandidate(cand) => {
                        self.sim.machine_mut::<Sfu>(self.sfu).handle_signal(
                            now,
                            id,
                            ClientSignal::Candidate(cand.to_string()),
                        )?;
                    }
                    peer::Event::ConnectionState(PeerConnectionState::Connected) => {
                        c.connected.get_or_insert(elapsed);
                    }
                    peer::Event::Frame { mid, .. } => {
                        c.frames.entry(mid).or_insert((0, elapsed)).0 += 1;
                    }
                    // The SFU asks for a keyframe: the encoder makes the
                    // next frame one.
                    peer::Event::DataChannel(DcEvent::Message {
                        message: Message::Text(t),
                        ..
                    }) => c.chat_in.push((elapsed, t)),
                    peer::Event::KeyframeRequested(track) => {
                        if let Some(l) = c.layers.iter().position(|(t, _)| *t == track) {
                            c.key_due[l] = true;
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Runs for `d`, every connected participant sending a frame each 33 ms.
    fn run(&mut self, d: Duration) -> Result<(), Box<dyn Error>> {
        let end = self.sim.now() + d;
        while self.sim.now() < end {
            self.sim.run_for(FRAME_INTERVAL);
            self.pump()?;
            let now = self.sim.now();
            for c in &mut self.clients {
                let pc = self.sim.machine_mut::<PeerConnection>(c.host);
                if !c.camera || pc.connection_state() != PeerConnectionState::Connected {
                    continue;
                }
                // The camera's picture, encoded once per layer.
                let mut sent = false;
                for (l, &(track, size)) in c.layers.iter().enumerate() {
                    let key = c.sent % self.gop == 0 || c.key_due[l];
                    // VP8's payload descriptor and the frame tag's P bit:
                    // 0x10 starts a keyframe, 0x11 an interframe.
                    let mut frame = vec![0x5a; size];
                    frame[0] = if key { 0x10 } else { 0x11 };
                    if pc.send_frame(now, track, 3000 * c.sent, &frame).is_ok() {
                        sent = true;
                        c.key_due[l] &= !key;
                    }
                }
                // ANCHOR: audio_level
                // The microphone: one Opus packet per tick, its RFC 6464
                // audio level (the V bit and the level in −dBov) in the
                // header extension, at the canonical id RTP mode uses
                // (`send_rtp` renumbers it to the negotiated one).
                if let Some(mic) = c.microphone {
                    let mut packet = Vec::new();
                    let fields = HeaderFields {
                        marker: false,
                        payload_type: 111,
                        sequence_number: c.sent as u16,
                        timestamp: 1584 * c.sent,
                        ssrc: 0,
                    };
                    let level = [0x80 | c.level];
                    emit_rtp_packet(fields, &[(4, &level)], false, &[0xfc; 80], &mut packet)?;
                    let _ = pc.send_rtp(now, mic, &packet);
                }
                // ANCHOR_END: audio_level
                if sent {
                    c.sent += 1;
                }
            }
            self.pump()?;
        }
        Ok(())
    }

    fn peer(&self, c: usize) -> &PeerConnection {
        self.sim.machine::<PeerConnection>(self.clients[c].host)
    }

    fn sfu(&self) -> &Sfu {
        self.sim.machine::<Sfu>(self.sfu)
    }
}

/// One simulcast track of `rids` (lowest first).
fn add_simulcast(
    pc: &mut PeerConnection,
    rids: &[(&str, usize)],
) -> Result<Vec<(TrackId, usize)>, Box<dyn Error>> {
    let names: Vec<&str> = rids.iter().map(|(rid, _)| *rid).collect();
    let tracks = pc.add_simulcast_track(TrackCodec::Vp8, None, &names)?;
    Ok(tracks
        .into_iter()
        .zip(rids.iter().map(|(_, size)| *size))
        .collect())
}

fn mbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e6
}

/// Part 1: the upload, mesh against SFU, for 2 to 5 participants.
fn upload(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(
        out,
        "== 1. upload: one video stream of {FRAME} bytes every {} ms per participant ==",
        FRAME_INTERVAL.as_millis()
    )?;
    writeln!(
        out,
        "participants   mesh: upload each   SFU: upload each   download each   the SFU's upload"
    )?;
    for n in 2..=5 {
        let (_, mesh_up, _) = mesh::mesh(n)?;
        let mut room = Room::new(20 + n as u64, 60, |_| {})?;
        for _ in 0..n {
            room.join(link(10))?;
        }
        // Everyone connects and sees everyone else; then two seconds
        // measured.
        room.run(Duration::from_secs(2))?;
        let hosts: Vec<HostId> = room.clients.iter().map(|c| c.host).collect();
        let before: Vec<_> = hosts.iter().map(|h| room.sim.host_stats(*h)).collect();
        let sfu_before = room.sim.host_stats(room.sfu);
        let t0 = room.sim.now();
        room.run(Duration::from_secs(2))?;
        let secs = (room.sim.now() - t0).as_secs_f64();
        let (mut up, mut down) = (0, 0);
        for (h, b) in hosts.iter().zip(&before) {
            let s = room.sim.host_stats(*h);
            up += s.bytes_sent - b.bytes_sent;
            down += s.bytes_delivered - b.bytes_delivered;
        }
        let sfu_up = room.sim.host_stats(room.sfu).bytes_sent - sfu_before.bytes_sent;
        let each = |b: u64| mbit(b, secs) / n as f64;
        writeln!(
            out,
            "{n:>12}   {mesh_up:>10.2} Mbit/s   {:>9.2} Mbit/s   {:>8.2} Mbit/s   {:>9.2} Mbit/s",
            each(up),
            each(down),
            mbit(sfu_up, secs)
        )?;
    }
    writeln!(
        out,
        "the SFU uploads n − 1 copies of each stream, on a server's link; each participant one"
    )?;
    Ok(())
}

/// Part 2: one subscriber loses 5 % of what the SFU sends it.
fn lossy_subscriber(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out)?;
    writeln!(
        out,
        "== 2. a subscriber whose downlink loses 5 % of packets, 3 publishers, 8 s =="
    )?;
    let mut room = Room::new(3, 60, |_| {})?;
    pcap::start(&mut room.sim);
    room.join(link(10))?;
    room.join(link(10))?;
    room.join(link(10))?;
    let lossy = room.join(link(10))?;
    let host = room.clients[lossy].host;
    room.sim.set_downlink(
        host,
        LinkConfig {
            loss: 0.05,
            ..link(10)
        },
    );
    room.run(Duration::from_secs(8))?;
    let key_log = pcap::key_log(&room.sim, host);
    let lost = room.sim.host_stats(host).lost;
    writeln!(out, "packets lost on the subscriber's link:  {lost}")?;
    let got: Vec<usize> = room.clients[lossy].frames.values().map(|f| f.0).collect();
    let sent: Vec<u32> = room.clients[..lossy].iter().map(|c| c.sent).collect();
    writeln!(
        out,
        "frames it decoded of each publisher:    {got:?} of {sent:?} sent (the last still on their way)"
    )?;
    // ANCHOR: lossy_counters
    let inbound = &room.peer(lossy).stats().inbound;
    let nacks: u64 = inbound.iter().map(|s| s.nack_count).sum();
    let on_link = room
        .sfu()
        .peer(room.clients[lossy].id)
        .map(|pc| pc.stats().outbound)
        .unwrap_or_default();
    let resent: u64 = on_link.iter().map(|o| o.retransmitted_packets_sent).sum();
    let stats = room.sfu().stats();
    let asked: Vec<u64> = (0..lossy)
        .map(|p| {
            room.peer(p)
                .stats()
                .outbound
                .iter()
                .map(|o| o.nack_count)
                .sum()
        })
        .collect();
    // ANCHOR_END: lossy_counters
    writeln!(out, "NACKs the subscriber sent the SFU:      {nacks}")?;
    writeln!(out, "packets the SFU resent on its link:     {resent}")?;
    writeln!(
        out,
        "NACKs the SFU passed on to publishers:  {}",
        stats.nacks_to_publishers
    )?;
    writeln!(out, "NACKs each publisher received:          {asked:?}")?;
    let records = room.sim.drain_capture();
    pcap::save_records(&records, host, &key_log)?;
    Ok(())
}

/// Part 3: late joiners in a room whose publishers send a keyframe only
/// every 10 s; with the keyframe cache and without, one joiner and two at
/// once.
fn late_joiner(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out)?;
    writeln!(
        out,
        "== 3. late joiners, 3 publishers with a keyframe every 10 s, links of 40 ms =="
    )?;
    writeln!(
        out,
        "keyframe cache  joiners  connected after  first frame after  all 3 videos after  PLIs to publishers"
    )?;
    for (cache, joiners) in [(true, 1), (false, 1), (false, 2)] {
        // ANCHOR: cache_switch
        let mut room = Room::new(4, 300, |c| c.keyframe_cache = cache)?;
        // ANCHOR_END: cache_switch
        for _ in 0..3 {
            room.join(link(40))?;
        }
        room.run(Duration::from_secs(3))?;
        let plis = room.sfu().stats().keyframe_requests;
        let mut late = Vec::new();
        for _ in 0..joiners {
            let l = room.join(link(40))?;
            room.clients[l].camera = false;
            late.push(l);
        }
        room.run(Duration::from_secs(2))?;
        // The slowest joiner's times.
        let (mut connected, mut first, mut all) = (
            Some(Duration::ZERO),
            Some(Duration::ZERO),
            Some(Duration::ZERO),
        );
        for &l in &late {
            let c = &room.clients[l];
            let firsts: Vec<Duration> = c.frames.values().map(|(_, t)| *t - c.joined).collect();
            let latest = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| a.max(b));
            connected = latest(connected, c.connected.map(|t| t - c.joined));
            first = latest(first, firsts.iter().min().copied());
            all = latest(
                all,
                (firsts.len() == 3)
                    .then(|| firsts.iter().max().copied())
                    .flatten(),
            );
        }
        let ms = |t: Option<Duration>| {
            t.map_or("never".to_string(), |t| format!("{} ms", t.as_millis()))
        };
        writeln!(
            out,
            "{:>14}  {joiners:>7}  {:>15}  {:>17}  {:>18}  {:>18}",
            if cache { "on" } else { "off" },
            ms(connected),
            ms(first),
            ms(all),
            room.sfu().stats().keyframe_requests - plis
        )?;
    }
    writeln!(
        out,
        "(without the cache or a PLI, a joiner would wait for the publishers' next keyframe, up to 10 s)"
    )?;
    Ok(())
}

/// Part 4: every participant sends three simulcast layers; one receives
/// through a 300 kbit/s link.
fn slow_subscriber(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    // ANCHOR: simulcast_layers
    // A quarter, a half and the full picture: frames of 200, 1,500 and
    // 6,000 bytes (about 60 kbit/s, 400 kbit/s and 1.5 Mbit/s).
    let rids = [("l", 200), ("m", 1_500), ("h", FRAME)];
    // ANCHOR_END: simulcast_layers
    writeln!(out)?;
    writeln!(
        out,
        "== 4. simulcast: 4 participants send layers l, m, h; the 4th receives through 300 kbit/s =="
    )?;
    let mut room = Room::new(8, 90, |_| {})?;
    for _ in 0..3 {
        room.join_with(link(10), &rids)?;
    }
    let slow = room.join_with(link(10), &rids)?;
    room.sim.set_downlink(
        room.clients[slow].host,
        LinkConfig {
            rate_bps: Some(300_000),
            queue_limit_bytes: 30_000,
            ..link(10)
        },
    );
    writeln!(
        out,
        "  time  layers each one gets from the three others  download each, Mbit/s"
    )?;
    writeln!(
        out,
        "        p1     p2     p3     p4 (300 kbit/s)           p1    p2    p3    p4"
    )?;
    let n = room.clients.len();
    let mut frames_before: Vec<usize> = Vec::new();
    let mut sent_before: Vec<u32> = Vec::new();
    let mut last = Duration::ZERO;
    for at_ms in [200, 400, 1000, 2000, 5000, 10000, 20000] {
        let at = Duration::from_millis(at_ms);
        let before: Vec<u64> = (0..n)
            .map(|c| room.sim.host_stats(room.clients[c].host).bytes_delivered)
            .collect();
        frames_before = room.clients[slow].frames.values().map(|f| f.0).collect();
        sent_before = room.clients[..slow].iter().map(|c| c.sent).collect();
        room.run(at - last)?;
        let secs = (at - last).as_secs_f64();
        last = at;
        let mut row = format!("{:>4.1} s ", at.as_secs_f64());
        let mut rates = String::new();
        for (c, b) in before.iter().enumerate() {
            let layers: Vec<String> = room
                .sfu()
                .forwarded_layers(room.clients[c].id)
                .into_iter()
                .map(|(_, rid)| rid.unwrap_or_else(|| "-".into()))
                .collect();
            row.push_str(&format!(" {:<6}", layers.join("")));
            let got = room.sim.host_stats(room.clients[c].host).bytes_delivered - b;
            rates.push_str(&format!(" {:>5.2}", mbit(got, secs)));
        }
        writeln!(out, "{row}       {rates}")?;
    }
    let frames_after: Vec<usize> = room.clients[slow].frames.values().map(|f| f.0).collect();
    let decoded: Vec<usize> = frames_after
        .iter()
        .zip(&frames_before)
        .map(|(a, b)| a - b)
        .collect();
    let sent: Vec<u32> = room.clients[..slow]
        .iter()
        .zip(&sent_before)
        .map(|(c, b)| c.sent - b)
        .collect();
    writeln!(
        out,
        "p4 in the last 10 s: frames decoded of each publisher {decoded:?}, of {sent:?} sent"
    )?;
    let stats = room.sfu().stats();
    writeln!(
        out,
        "layer switches (each at a keyframe of the new layer): {}; keyframe requests to publishers: {}",
        stats.layer_switches, stats.keyframe_requests
    )?;
    Ok(())
}

/// Part 5: three participants with microphones take turns to speak; the
/// SFU reads the audio levels, announces the active speaker on the chat
/// channel, and relays a chat line.
fn speaker_and_chat(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out)?;
    writeln!(
        out,
        "== 5. the active speaker from RFC 6464 audio levels, and the room chat =="
    )?;
    let mut room = Room::new(9, 60, |_| {})?;
    room.talk = true;
    for _ in 0..3 {
        room.join(link(10))?;
    }
    room.run(Duration::from_secs(1))?;
    // p1 speaks (−20 dBov) for 3 s while p2 murmurs (−90) and p3 is
    // silent; then p2 speaks; then nobody.
    let mut timeline: Vec<(Duration, String)> = Vec::new();
    for (who, secs) in [(Some(0), 3), (Some(1), 3), (None, 2)] {
        for (k, c) in room.clients.iter_mut().enumerate() {
            c.level = match who {
                Some(w) if w == k => 20,
                _ if k == 2 => 127,
                _ => 90,
            };
        }
        let what = match who {
            Some(w) => format!(
                "p{} speaks (−20 dBov), the others at −90 dBov or silent",
                w + 1
            ),
            None => "nobody speaks".to_string(),
        };
        timeline.push((room.sim.elapsed(), what));
        room.run(Duration::from_secs(secs))?;
    }
    for (t, p) in &room.speakers {
        timeline.push((*t, format!("the SFU: {p} is the active speaker")));
    }
    timeline.push((
        room.sim.elapsed(),
        "p1 sends \"hello, room\" on its chat channel".into(),
    ));
    timeline.sort();
    for (t, what) in &timeline {
        writeln!(out, "{:>5} ms  {what}", t.as_millis())?;
    }
    // ANCHOR: chat_send
    let now = room.sim.now();
    let (host, chat) = (room.clients[0].host, room.clients[0].chat);
    let chat = chat.ok_or("p1 has no chat channel")?;
    room.sim
        .machine_mut::<PeerConnection>(host)
        .send_text(now, chat, "hello, room")?;
    // ANCHOR_END: chat_send
    room.run(Duration::from_millis(300))?;
    for (k, c) in room.clients.iter().enumerate() {
        writeln!(out, "p{}'s chat channel received:", k + 1)?;
        for (t, text) in &c.chat_in {
            writeln!(out, "  {:>5} ms  {text}", t.as_millis())?;
        }
    }
    Ok(())
}
