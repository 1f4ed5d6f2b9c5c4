//! Two `peer::PeerConnection`s in the simulator, signaled with SDP text and
//! trickled candidates as two browsers would be: offer/answer, ICE, DTLS
//! (the answerer is the DTLS client), SRTP, SCTP; VP8 and Opus frames flow
//! both ways identical, data channels of three reliability modes exchange
//! messages; a tampered fingerprint fails the connection with a clear error;
//! garbage datagrams never panic. Virtual time, fixed seeds.

#[path = "common/sim_peers.rs"]
mod sim_peers;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::machine::{Machine, Receive};
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType, SignalingState, TrackId};
use rtclab::sdp::MediaKind;
use rtclab::sim::{HostId, LinkConfig, Sim};
use sim_peers::{A, B, addr, certificate, pump, vp8_frames};

struct Pair {
    sim: Sim,
    hosts: [HostId; 2],
    log: [Vec<peer::Event>; 2],
    /// A's tracks [video, audio], B's tracks [video, audio].
    tracks: [[TrackId; 2]; 2],
    /// A's channels: reliable, unordered, maxRetransmits 0.
    channels: [ChannelId; 3],
}

/// Offer from A, answer from B; `tamper` may rewrite the answer text.
fn pair(seed: u64, tamper: impl FnOnce(String) -> String) -> Pair {
    pair_on(seed, LinkConfig::default(), tamper)
}

/// [`pair`] with A's access link (both ways) set to `link`.
fn pair_on(seed: u64, link: LinkConfig, tamper: impl FnOnce(String) -> String) -> Pair {
    let mut rng = StdRng::seed_from_u64(seed);
    let (ca, cb) = (certificate(&mut rng), certificate(&mut rng));
    let mut sim = Sim::new(seed);
    let now = sim.now();
    let mut a = PeerConnection::new(
        peer::Config::new(ca, vec![addr(A)]),
        StdRng::seed_from_u64(seed * 2 + 1),
    );
    let mut b = PeerConnection::new(
        peer::Config::new(cb, vec![addr(B)]),
        StdRng::seed_from_u64(seed * 2 + 2),
    );
    let ta = [
        a.add_track(MediaKind::Video).expect("video"),
        a.add_track(MediaKind::Audio).expect("audio"),
    ];
    let tb = [
        b.add_track(MediaKind::Video).expect("video"),
        b.add_track(MediaKind::Audio).expect("audio"),
    ];
    let channels = [
        a.create_data_channel(ChannelInit::new("reliable"))
            .expect("dc"),
        a.create_data_channel(ChannelInit {
            ordered: false,
            ..ChannelInit::new("unordered")
        })
        .expect("dc"),
        a.create_data_channel(ChannelInit {
            max_retransmits: Some(0),
            ..ChannelInit::new("mr0")
        })
        .expect("dc"),
    ];
    let offer = a.create_offer(now).expect("offer");
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    assert_eq!(a.signaling_state(), SignalingState::HaveLocalOffer);
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote offer");
    assert_eq!(b.signaling_state(), SignalingState::HaveRemoteOffer);
    let answer = b.create_answer().expect("answer");
    assert!(answer.contains("a=setup:active"), "{answer}");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("local answer");
    a.set_remote_description(now, SdpType::Answer, &tamper(answer))
        .expect("remote answer");
    assert_eq!(a.signaling_state(), SignalingState::Stable);
    assert_eq!(b.signaling_state(), SignalingState::Stable);
    let ha = sim.add_host(a, &[addr(A)]);
    let hb = sim.add_host(b, &[addr(B)]);
    sim.set_link(ha, link);
    Pair {
        sim,
        hosts: [ha, hb],
        log: [Vec::new(), Vec::new()],
        tracks: [ta, tb],
        channels,
    }
}

fn ended(s: PeerConnectionState) -> bool {
    matches!(s, PeerConnectionState::Failed | PeerConnectionState::Closed)
}

impl Pair {
    fn pc(&mut self, side: usize) -> &mut PeerConnection {
        self.sim.machine_mut::<PeerConnection>(self.hosts[side])
    }

    fn states(&self) -> [PeerConnectionState; 2] {
        self.hosts
            .map(|h| self.sim.machine::<PeerConnection>(h).connection_state())
    }

    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&[Vec<peer::Event>; 2]) -> bool) {
        let hosts = self.hosts;
        let log = &mut self.log;
        self.sim.run_for_with(limit, |sim| {
            pump(sim, hosts, log);
            let st = hosts.map(|h| sim.machine::<PeerConnection>(h).connection_state());
            done(log) || st.iter().any(|&s| ended(s))
        });
    }

    /// Connected, and A's three channels open on both sides.
    fn connect(&mut self) -> bool {
        self.run_until(Duration::from_secs(5), |log| {
            log.iter().all(|l| {
                l.iter()
                    .filter(|e| matches!(e, peer::Event::DataChannel(DcEvent::Open(_))))
                    .count()
                    == 3
            })
        });
        self.states() == [PeerConnectionState::Connected; 2]
    }

    fn run(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    fn frames(&self, side: usize, mid: &str) -> Vec<Vec<u8>> {
        sim_peers::frames(&self.log[side], mid)
    }

    fn messages(&self, side: usize) -> Vec<(ChannelId, Message)> {
        self.log[side]
            .iter()
            .filter_map(|e| match e {
                peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                    Some((*channel, message.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

fn opus_frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let len = rng.random_range(20..200);
            (0..len).map(|_| rng.random()).collect()
        })
        .collect()
}

#[test]
fn offer_answer_trickle_connect_media_and_data_both_ways() {
    let mut p = pair(1, |s| s);
    assert!(p.connect(), "{:?} {:?}", p.states(), p.log);
    // Track events: each side receives video and audio.
    for side in 0..2 {
        let kinds: Vec<MediaKind> = p.log[side]
            .iter()
            .filter_map(|e| match e {
                peer::Event::Track { kind, .. } => Some(*kind),
                _ => None,
            })
            .collect();
        assert_eq!(kinds, [MediaKind::Video, MediaKind::Audio], "side {side}");
        assert!(p.log[side].iter().any(|e| matches!(
            e,
            peer::Event::ConnectionState(PeerConnectionState::Connected)
        )));
    }
    // The answerer took `a=setup:active`: it is the DTLS client.
    let b_role = p.pc(1).transport().and_then(|t| t.dtls_role());
    assert_eq!(b_role, Some(rtclab::peer::DtlsRole::Client));

    // Media both ways, frames identical.
    let video = vp8_frames(20, 7);
    let audio = opus_frames(50, 8);
    for side in 0..2 {
        let [tv, ta] = p.tracks[side];
        let now = p.sim.now();
        for (i, f) in video.iter().enumerate() {
            let n = p
                .pc(side)
                .send_frame(now, tv, 3000 * i as u32, f)
                .expect("video");
            assert!(n >= 1);
        }
        for (i, f) in audio.iter().enumerate() {
            p.pc(side)
                .send_frame(now, ta, 960 * i as u32, f)
                .expect("audio");
        }
    }
    p.run(Duration::from_millis(300));
    for side in 0..2 {
        let peer = 1 - side;
        let [tv, ta] = p.tracks[peer];
        let vmid = p.pc(peer).track_mid(tv).expect("mid").to_string();
        let amid = p.pc(peer).track_mid(ta).expect("mid").to_string();
        assert_eq!(p.frames(side, &vmid), video, "video to side {side}");
        assert_eq!(p.frames(side, &amid), audio, "audio to side {side}");
    }

    // B asks A for a keyframe on A's video (PLI); A's app hears of it.
    let a_video = p.tracks[0][0];
    let vmid = p.pc(0).track_mid(a_video).expect("mid").to_string();
    p.pc(1).request_keyframe(&vmid).expect("pli");
    assert!(p.pc(1).request_keyframe("no such mid").is_err());
    p.run(Duration::from_millis(100));
    let asks: Vec<TrackId> = p.log[0]
        .iter()
        .filter_map(|e| match e {
            peer::Event::KeyframeRequested(t) => Some(*t),
            _ => None,
        })
        .collect();
    assert_eq!(asks, [a_video]);

    // Data channels: A sends on each, B answers on each.
    let now = p.sim.now();
    for (i, &ch) in p.channels.clone().iter().enumerate() {
        p.pc(0)
            .send_text(now, ch, &format!("hello {i}"))
            .expect("text");
        p.pc(0).send_binary(now, ch, &[i as u8; 1000]).expect("bin");
    }
    p.run(Duration::from_millis(300));
    let got = p.messages(1);
    assert_eq!(got.len(), 6, "{got:?}");
    let b_channels: Vec<ChannelId> = {
        let mut v: Vec<ChannelId> = got.iter().map(|(c, _)| *c).collect();
        v.dedup();
        v
    };
    assert_eq!(b_channels.len(), 3);
    for (i, &ch) in b_channels.iter().enumerate() {
        let label = p
            .pc(1)
            .data_channels()
            .and_then(|d| d.channel(ch))
            .map(|c| c.label().to_string());
        assert_eq!(label.as_deref(), Some(["reliable", "unordered", "mr0"][i]));
        let want: Vec<Message> = got
            .iter()
            .filter(|(c, _)| *c == ch)
            .map(|(_, m)| m.clone())
            .collect();
        assert!(want.contains(&Message::Text(format!("hello {i}"))));
        assert!(want.contains(&Message::Binary(vec![i as u8; 1000])));
        p.pc(1).send_text(now, ch, "pong").expect("pong");
    }
    p.run(Duration::from_millis(300));
    let back = p.messages(0);
    assert_eq!(back.len(), 3, "{back:?}");
    for (c, m) in back {
        assert!(p.channels.contains(&c));
        assert_eq!(m, Message::Text("pong".into()));
    }

    // Close: both end up closed or the survivor notices.
    let now = p.sim.now();
    p.pc(0).close(now);
    assert_eq!(p.pc(0).connection_state(), PeerConnectionState::Closed);
    assert_eq!(p.pc(0).poll_timeout(), None);
}

#[test]
fn wrong_fingerprint_fails_the_connection_with_a_clear_error() {
    let mut other = StdRng::seed_from_u64(99);
    let wrong = certificate(&mut other).fingerprint().to_string();
    let mut p = pair(2, |answer| {
        answer
            .lines()
            .map(|l| {
                if l.starts_with("a=fingerprint:") {
                    format!("a=fingerprint:{wrong}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\r\n"
    });
    p.run_until(Duration::from_secs(5), |_| false);
    assert_eq!(p.states()[0], PeerConnectionState::Failed, "{:?}", p.log[0]);
    let err = p.log[0]
        .iter()
        .find_map(|e| match e {
            peer::Event::Error(e) => Some(e.clone()),
            _ => None,
        })
        .expect("an error event");
    assert!(
        matches!(
            err,
            peer::Error::Transport(rtclab::peer::transport::Error::FingerprintMismatch { .. })
        ),
        "{err}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    // No frame or message ever made it.
    for side in 0..2 {
        assert!(!p.log[side].iter().any(|e| matches!(
            e,
            peer::Event::Frame { .. } | peer::Event::DataChannel(DcEvent::Message { .. })
        )));
    }
}

#[test]
fn garbage_datagrams_never_panic() {
    // A peer with nothing negotiated takes garbage.
    let mut rng = StdRng::seed_from_u64(3);
    let mut lone = PeerConnection::new(
        peer::Config::new(certificate(&mut rng), vec![addr(A)]),
        StdRng::seed_from_u64(3),
    );
    let now = Sim::new(3).now();
    for _ in 0..200 {
        let len = rng.random_range(0..300);
        let d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        assert!(!lone.accepts(&d, addr(B)));
        lone.handle_receive(
            now,
            Receive {
                source: addr(B),
                destination: addr(A),
                contents: &d,
            },
        );
    }
    assert!(lone.add_ice_candidate(now, "candidate:garbage").is_err());
    assert!(
        lone.set_remote_description(now, SdpType::Answer, "v=0\r\n")
            .is_err()
    );

    // A connected peer takes garbage in every layer's range and stays up.
    let mut p = pair(4, |s| s);
    assert!(p.connect(), "{:?}", p.states());
    let a = p.hosts[0];
    for i in 0..3000 {
        let len = rng.random_range(0..300);
        let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        if let Some(first) = d.first_mut() {
            *first = match i % 5 {
                0 => rng.random_range(0..=3),
                1 => rng.random_range(20..=63),
                2 => rng.random_range(128..=191),
                _ => *first,
            };
        }
        let source = if i % 3 == 0 {
            addr("203.0.113.9:4000")
        } else {
            addr(B)
        };
        let now = p.sim.now();
        let m = p.sim.machine_mut::<PeerConnection>(a);
        let _ = m.accepts(&d, source);
        m.handle_receive(
            now,
            Receive {
                source,
                destination: addr(A),
                contents: &d,
            },
        );
    }
    p.run(Duration::from_millis(100));
    assert_eq!(p.states(), [PeerConnectionState::Connected; 2]);
    let now = p.sim.now();
    let ch = p.channels[0];
    p.pc(0).send_text(now, ch, "still here").expect("send");
    p.run(Duration::from_millis(200));
    assert!(
        p.messages(1)
            .iter()
            .any(|(_, m)| *m == Message::Text("still here".into()))
    );
}

#[test]
fn renegotiation_adds_a_track_and_a_channel_mid_call() {
    let mut p = pair(5, |s| s);
    assert!(p.connect(), "{:?}", p.states());
    let now = p.sim.now();
    // A adds a second video track and a fourth channel, and offers again.
    let extra = p.pc(0).add_track(MediaKind::Video).expect("track");
    let ch = p
        .pc(0)
        .create_data_channel(ChannelInit::new("late"))
        .expect("channel");
    let offer = p.pc(0).create_offer(now).expect("offer");
    p.pc(0)
        .set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    p.pc(1)
        .set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote offer");
    let answer = p.pc(1).create_answer().expect("answer");
    p.pc(1)
        .set_local_description(now, SdpType::Answer, &answer)
        .expect("local answer");
    p.pc(0)
        .set_remote_description(now, SdpType::Answer, &answer)
        .expect("remote answer");
    let mid = p.pc(0).track_mid(extra).expect("mid").to_string();
    p.run(Duration::from_millis(200));
    assert!(
        p.log[1]
            .iter()
            .any(|e| matches!(e, peer::Event::Track { mid: m, .. } if *m == mid)),
        "no track event for {mid}"
    );
    let frames = vp8_frames(5, 9);
    let now = p.sim.now();
    for (i, f) in frames.iter().enumerate() {
        p.pc(0)
            .send_frame(now, extra, 3000 * i as u32, f)
            .expect("send");
    }
    p.pc(0).send_text(now, ch, "late hello").expect("text");
    p.run(Duration::from_millis(300));
    assert_eq!(p.frames(1, &mid), frames);
    assert!(
        p.messages(1)
            .iter()
            .any(|(_, m)| *m == Message::Text("late hello".into()))
    );
    assert_eq!(p.states(), [PeerConnectionState::Connected; 2]);
}

#[test]
fn video_recovers_with_nack_rtx_under_5_percent_loss() {
    let link = LinkConfig {
        loss: 0.05,
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let mut p = pair_on(6, link, |s| s);
    assert!(p.connect(), "{:?}", p.states());
    let frames = vp8_frames(60, 6);
    let tv = p.tracks[0][0];
    let mid = p.pc(0).track_mid(tv).expect("mid").to_string();
    for (i, f) in frames.iter().enumerate() {
        let now = p.sim.now();
        p.pc(0)
            .send_frame(now, tv, 3000 * i as u32, f)
            .expect("send");
        p.run(Duration::from_millis(33));
    }
    p.run(Duration::from_secs(2));
    let got = p.frames(1, &mid);
    // Every frame arrives, in order, identical: holes were NACKed and
    // filled from the RTX stream.
    assert_eq!(got.len(), frames.len(), "{} of {}", got.len(), frames.len());
    assert_eq!(got, frames);
    let (sa, sb) = (p.pc(0).media_stats(), p.pc(1).media_stats());
    assert!(sb.nacks_sent > 0 && sa.rtx_sent > 0, "{sa:?} {sb:?}");
    assert!(sb.rtx_received > 0, "{sb:?}");
    assert_eq!(sb.frames_received, frames.len() as u64);
}
