//! Two `peer::PeerConnection`s in the simulator, for the media parts: RTCP
//! SR/RR on schedule and the `stats()` they feed (checked against what was
//! sent, under loss); removing a track and the data channels mid-call;
//! H.264, VP9 and AV1 both ways; consent loss failing the connection and freeing it.
//! Virtual time, fixed seeds.

#[path = "common/sim_peers.rs"]
mod sim_peers;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::machine::Machine;
use rtclab::peer::{
    self, PeerConnection, PeerConnectionState, SdpType, SignalingState, TrackCodec, TrackId,
};
use rtclab::sdp::Codec;
use rtclab::sim::{HostId, LinkConfig, Sim};
use sim_peers::{A, B, addr, certificate, pump, vp8_frames};

struct Pair {
    sim: Sim,
    hosts: [HostId; 2],
    log: [Vec<peer::Event>; 2],
    /// Each side's tracks, in the order `codecs` gave them.
    tracks: [Vec<TrackId>; 2],
    /// A's channels.
    channels: Vec<ChannelId>,
}

/// A offers, B answers. Each side adds tracks with `codecs[side]`; A makes
/// `channels` data channels; `config` may change B's configuration.
fn pair(
    seed: u64,
    link: LinkConfig,
    codecs: [&[TrackCodec]; 2],
    channels: usize,
    config_b: impl FnOnce(&mut peer::Config),
) -> Pair {
    pair_with(seed, link, codecs, channels, |_| {}, config_b)
}

/// [`pair`] where `config_a` may change A's configuration too.
fn pair_with(
    seed: u64,
    link: LinkConfig,
    codecs: [&[TrackCodec]; 2],
    channels: usize,
    config_a: impl FnOnce(&mut peer::Config),
    config_b: impl FnOnce(&mut peer::Config),
) -> Pair {
    let mut rng = StdRng::seed_from_u64(seed);
    let (ca, cb) = (certificate(&mut rng), certificate(&mut rng));
    let mut sim = Sim::new(seed);
    let now = sim.now();
    let mut cfg_a = peer::Config::new(ca, vec![addr(A)]);
    config_a(&mut cfg_a);
    let mut a = PeerConnection::new(cfg_a, StdRng::seed_from_u64(seed * 2 + 1));
    let mut cfg_b = peer::Config::new(cb, vec![addr(B)]);
    config_b(&mut cfg_b);
    let mut b = PeerConnection::new(cfg_b, StdRng::seed_from_u64(seed * 2 + 2));
    let tracks = [
        codecs[0]
            .iter()
            .map(|&c| a.add_track_with_codec(c).expect("track"))
            .collect(),
        codecs[1]
            .iter()
            .map(|&c| b.add_track_with_codec(c).expect("track"))
            .collect(),
    ];
    let channels = (0..channels)
        .map(|i| {
            a.create_data_channel(ChannelInit::new(&format!("ch{i}")))
                .expect("dc")
        })
        .collect();
    let offer = a.create_offer(now).expect("offer");
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote offer");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("local answer");
    a.set_remote_description(now, SdpType::Answer, &answer)
        .expect("remote answer");
    let ha = sim.add_host(a, &[addr(A)]);
    let hb = sim.add_host(b, &[addr(B)]);
    sim.set_link(ha, link);
    Pair {
        sim,
        hosts: [ha, hb],
        log: [Vec::new(), Vec::new()],
        tracks,
        channels,
    }
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
            done(log)
        });
    }

    /// Connected, and A's channels open on both sides.
    fn connect(&mut self) -> bool {
        let n = self.channels.len();
        self.run_until(Duration::from_secs(5), |log| {
            log.iter().all(|l| {
                l.iter()
                    .filter(|e| matches!(e, peer::Event::DataChannel(DcEvent::Open(_))))
                    .count()
                    == n
                    && l.iter().any(|e| {
                        matches!(
                            e,
                            peer::Event::ConnectionState(PeerConnectionState::Connected)
                        )
                    })
            })
        });
        self.states() == [PeerConnectionState::Connected; 2]
    }

    fn run(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Sends `frames` on `side`'s `track` now, 3000 RTP ticks apart.
    fn send_frames(&mut self, side: usize, track: TrackId, frames: &[Vec<u8>]) {
        let now = self.sim.now();
        for (i, f) in frames.iter().enumerate() {
            self.pc(side)
                .send_frame(now, track, 3000 * i as u32, f)
                .expect("send");
        }
    }

    fn mid(&mut self, side: usize, track: usize) -> String {
        let t = self.tracks[side][track];
        self.pc(side).track_mid(t).expect("mid").to_string()
    }

    fn frames(&self, side: usize, mid: &str) -> Vec<Vec<u8>> {
        sim_peers::frames(&self.log[side], mid)
    }

    fn messages(&self, side: usize) -> Vec<Message> {
        self.log[side]
            .iter()
            .filter_map(|e| match e {
                peer::Event::DataChannel(DcEvent::Message { message, .. }) => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    /// Offer from `offerer`, answer from the other, applied at once.
    fn renegotiate(&mut self, offerer: usize) {
        let now = self.sim.now();
        let answerer = 1 - offerer;
        let offer = self.pc(offerer).create_offer(now).expect("offer");
        self.pc(offerer)
            .set_local_description(now, SdpType::Offer, &offer)
            .expect("local offer");
        self.pc(answerer)
            .set_remote_description(now, SdpType::Offer, &offer)
            .expect("remote offer");
        let answer = self.pc(answerer).create_answer().expect("answer");
        self.pc(answerer)
            .set_local_description(now, SdpType::Answer, &answer)
            .expect("local answer");
        self.pc(offerer)
            .set_remote_description(now, SdpType::Answer, &answer)
            .expect("remote answer");
    }
}

/// H.264 access units in Annex-B (4-byte start codes): SPS, PPS and a
/// large IDR slice first (FU-A), then non-IDR slices; NAL bodies have no
/// zero bytes, so no start-code emulation.
fn h264_frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut nal = |header: u8, len: usize| -> Vec<u8> {
        let mut v = vec![0, 0, 0, 1, header];
        v.extend((0..len).map(|_| rng.random_range(1..=255u8)));
        v
    };
    (0..n)
        .map(|i| {
            if i == 0 {
                let mut au = nal(0x67, 12); // SPS
                au.extend(nal(0x68, 4)); // PPS
                au.extend(nal(0x65, 6000)); // IDR slice
                au
            } else {
                let len = 30 + (i * 397) % 3000;
                nal(0x41, len) // non-IDR slice
            }
        })
        .collect()
}

#[test]
fn stats_count_what_was_sent_under_loss_and_rtcp_gives_the_rtt() {
    let link = LinkConfig {
        loss: 0.05,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(2),
        ..LinkConfig::default()
    };
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let mut p = pair(11, LinkConfig::default(), [codecs, codecs], 1, |_| {});
    assert!(p.connect(), "{:?} {:?}", p.states(), p.log);
    let frames = vp8_frames(90, 11);
    let (ta, tb) = (p.tracks[0][0], p.tracks[1][0]);
    let (mid_a, mid_b) = (p.mid(0, 0), p.mid(1, 0));
    for (i, f) in frames.iter().enumerate() {
        // The first and last frames go over a clean link: RFC 3550 A.1
        // counts from the first packet received to the highest one, so
        // then "expected" covers everything sent. In between, 5% loss.
        if i == 1 {
            p.sim.set_link(p.hosts[0], link.clone());
        }
        if i == 80 {
            p.sim.set_link(p.hosts[0], LinkConfig::default());
        }
        let now = p.sim.now();
        p.pc(0)
            .send_frame(now, ta, 3000 * i as u32, f)
            .expect("send a");
        p.pc(1)
            .send_frame(now, tb, 3000 * i as u32, &f[..f.len().min(400)])
            .expect("send b");
        p.run(Duration::from_millis(33));
    }
    let ch = p.channels[0];
    for i in 0..5 {
        let now = p.sim.now();
        p.pc(0).send_text(now, ch, &format!("m{i}")).expect("text");
    }
    // Long enough for every hole to be repaired and for a few report rounds.
    p.run(Duration::from_secs(4));
    assert_eq!(p.frames(1, &mid_a).len(), frames.len());

    let (sa, sb) = (p.pc(0).stats(), p.pc(1).stats());
    let out = sa.outbound(ta).expect("outbound").clone();
    let inb = sb.inbound(&mid_a).expect("inbound").clone();
    // What A sent and B saw of it.
    assert_eq!(out.mid.as_deref(), Some(mid_a.as_str()));
    assert_eq!(out.codec.as_deref(), Some("VP8"));
    assert_eq!(out.frames_sent, frames.len() as u64);
    let packets: u64 = frames.iter().map(|f| f.len().div_ceil(1100) as u64).sum();
    assert!(out.packets_sent >= packets, "{out:?}");
    // Payload bytes: the frames plus a VP8 descriptor (1 to 6 bytes) per packet.
    let frame_bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert!(
        out.bytes_sent > frame_bytes && out.bytes_sent <= frame_bytes + 6 * out.packets_sent,
        "{out:?}"
    );
    // 12 fixed + 4 extension header + mid element (2) and transport-cc
    // element (3) padded to 8.
    assert_eq!(out.header_bytes_sent, 24 * out.packets_sent);
    assert_eq!(inb.ssrc, Some(out.ssrc));
    assert_eq!(inb.codec.as_deref(), Some("VP8"));
    assert!(inb.packets_lost > 0, "5% loss: {inb:?}");
    assert_eq!(
        inb.packets_received as i64 + inb.packets_lost,
        out.packets_sent as i64,
        "RFC 3550 A.3: expected = received + lost"
    );
    assert!(inb.bytes_received < out.bytes_sent);
    assert_eq!(inb.frames_received, frames.len() as u64);
    assert_eq!(inb.keyframes_received, 1);
    assert!(inb.jitter < Duration::from_millis(20), "{:?}", inb.jitter);
    // Loss repair, seen from both ends.
    assert!(inb.nack_count > 0 && out.nack_count > 0, "{inb:?} {out:?}");
    assert!(out.nack_count <= inb.nack_count);
    assert!(inb.rtx_packets_received > 0);
    assert!(out.retransmitted_packets_sent >= inb.rtx_packets_received);
    assert!(out.retransmitted_bytes_sent > 0);
    assert_eq!(inb.nack_count, p.pc(1).media_stats().nacks_sent);
    // RTCP: SRs went out and reached B; B's RR came back with the loss
    // B counted (the last report after the link was clean) and an RTT
    // from LSR/DLSR of the clean path: 5 + 5 ms each way.
    assert!(out.sender_reports_sent >= 3, "{out:?}");
    assert!(inb.sender_reports_received >= 2, "{inb:?}");
    assert!(out.reports_received >= 3, "{out:?}");
    assert_eq!(out.remote_packets_lost, inb.packets_lost);
    let rtt = out.round_trip_time.expect("rtt");
    assert!(
        rtt >= Duration::from_millis(19) && rtt <= Duration::from_millis(22),
        "{rtt:?}"
    );
    // B's track, clean path back (A's link loss hit it too before).
    let back = sa.inbound(&mid_b).expect("inbound b");
    let out_b = sb.outbound(tb).expect("outbound b");
    assert_eq!(
        back.packets_received as i64 + back.packets_lost,
        out_b.packets_sent as i64
    );
    assert!(out_b.round_trip_time.is_some());
    // The transport counts every datagram the simulator carried.
    let (ha, hb) = (p.hosts[0], p.hosts[1]);
    assert_eq!(sa.transport.bytes_sent, p.sim.host_stats(ha).bytes_sent);
    assert_eq!(sa.transport.packets_sent, p.sim.host_stats(ha).sent);
    assert_eq!(
        sb.transport.bytes_received,
        p.sim.host_stats(hb).bytes_delivered
    );
    assert!(sa.transport.rtcp_reports_sent >= 3);
    assert_eq!(sa.transport.remote_address, Some(addr(B)));
    assert!(sa.transport.selected_candidate_pair.is_some());
    // Data channels.
    assert_eq!(sa.data_channels.channels_opened, 1);
    assert_eq!(sb.data_channels.channels_opened, 1);
    assert_eq!(sa.data_channels.messages_sent, 5);
    assert_eq!(sb.data_channels.messages_received, 5);
    assert_eq!(sb.data_channels.bytes_received, 10);
}

#[test]
fn renegotiation_removes_a_track_and_the_data_channels_mid_call() {
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8, TrackCodec::Opus];
    let mut p = pair(12, LinkConfig::default(), [codecs, codecs], 2, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let (a_video, a_mid) = (p.tracks[0][0], p.mid(0, 0));
    let b_mid = p.mid(1, 0);
    let frames = vp8_frames(3, 12);
    p.send_frames(0, a_video, &frames);
    p.run(Duration::from_millis(200));
    assert_eq!(p.frames(1, &a_mid), frames);

    // One channel closes on its own (stream reset, RFC 8831 §6.7).
    let now = p.sim.now();
    let ch0 = p.channels[0];
    p.pc(0).close_data_channel(now, ch0);
    p.run(Duration::from_millis(200));
    let closed = |log: &[peer::Event]| {
        log.iter()
            .filter(|e| matches!(e, peer::Event::DataChannel(DcEvent::Closed(_))))
            .count()
    };
    assert_eq!((closed(&p.log[0]), closed(&p.log[1])), (1, 1));

    // A removes its video track and the data channels, and offers.
    p.pc(0).remove_track(a_video).expect("remove");
    assert!(
        p.pc(0).send_frame(now, a_video, 0, &frames[1]).is_err(),
        "a removed track sends nothing"
    );
    p.pc(0).remove_data_channels(now).expect("remove dc");
    let offer = p.pc(0).create_offer(now).expect("offer");
    // JSEP: the video m-line keeps its port and turns recvonly (A still
    // receives B's video); the data m-line is rejected with port 0.
    let sections: Vec<&str> = offer.split("m=").skip(1).collect();
    let video = sections
        .iter()
        .find(|s| s.contains(&format!("a=mid:{a_mid}\r")))
        .expect("video m-line");
    assert!(
        video.starts_with("video ") && !video.starts_with("video 0 "),
        "{video}"
    );
    assert!(video.contains("a=recvonly"), "{video}");
    let data = sections
        .iter()
        .find(|s| s.starts_with("application"))
        .expect("data m-line");
    assert!(data.starts_with("application 0 "), "{data}");
    p.pc(0)
        .set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    p.pc(1)
        .set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote offer");
    let answer = p.pc(1).create_answer().expect("answer");
    assert!(answer.contains("a=sendonly"), "{answer}");
    p.pc(1)
        .set_local_description(now, SdpType::Answer, &answer)
        .expect("local answer");
    p.pc(0)
        .set_remote_description(now, SdpType::Answer, &answer)
        .expect("remote answer");
    p.run(Duration::from_millis(300));
    // B's receiver of A's video ended; the other streams did not.
    let ended = |log: &[peer::Event]| -> Vec<String> {
        log.iter()
            .filter_map(|e| match e {
                peer::Event::TrackEnded { mid } => Some(mid.clone()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(ended(&p.log[1]), vec![a_mid.clone()]);
    assert!(ended(&p.log[0]).is_empty());
    assert!(p.pc(1).stats().inbound(&a_mid).is_none());
    // Every channel is closed on both sides, and no SCTP is left.
    assert_eq!((closed(&p.log[0]), closed(&p.log[1])), (2, 2));
    assert!(p.pc(0).data_channels().is_none());
    assert!(p.pc(1).data_channels().is_none());
    let ch1 = p.channels[1];
    assert!(p.pc(0).send_text(now, ch1, "gone").is_err());
    // B's video still flows to A on the now sendonly/recvonly m-line.
    let tb = p.tracks[1][0];
    p.send_frames(1, tb, &frames);
    p.run(Duration::from_millis(200));
    assert_eq!(p.frames(0, &b_mid), frames);

    // B removes its video too: the m-line goes inactive; A's receiver ends.
    p.pc(1).remove_track(tb).expect("remove b");
    p.renegotiate(1);
    let local = p.pc(0).negotiated().and_then(|n| n.by_mid(&a_mid)).cloned();
    assert_eq!(
        local.map(|m| (m.rejected, m.direction.sends(), m.direction.receives())),
        Some((false, false, false)),
        "inactive, port kept"
    );
    p.run(Duration::from_millis(100));
    assert_eq!(ended(&p.log[0]), vec![b_mid.clone()]);
    // Audio is untouched, and the connection is up.
    assert_eq!(p.states(), [PeerConnectionState::Connected; 2]);
    let (ta, amid) = (p.tracks[0][1], p.mid(0, 1));
    let now = p.sim.now();
    p.pc(0).send_frame(now, ta, 0, b"opus").expect("audio");
    p.run(Duration::from_millis(100));
    assert_eq!(p.frames(1, &amid), [b"opus".to_vec()]);

    // Channels can come back: a new data m-line and association.
    let now = p.sim.now();
    let again = p
        .pc(0)
        .create_data_channel(ChannelInit::new("again"))
        .expect("dc");
    p.renegotiate(0);
    p.run_until(Duration::from_secs(2), |log| {
        log[1]
            .iter()
            .filter(|e| matches!(e, peer::Event::DataChannel(DcEvent::Open(_))))
            .count()
            == 3
    });
    let now2 = p.sim.now();
    p.pc(0).send_text(now2, again, "back").expect("send again");
    p.run(Duration::from_millis(200));
    assert!(p.messages(1).contains(&Message::Text("back".into())));
    let _ = now;
}

#[test]
fn h264_access_units_flow_both_ways_identical() {
    let h264: &[TrackCodec] = &[TrackCodec::H264];
    let mut p = pair(13, LinkConfig::default(), [h264, h264], 0, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let frames = h264_frames(30, 13);
    for side in 0..2 {
        let t = p.tracks[side][0];
        for (i, f) in frames.iter().enumerate() {
            let now = p.sim.now();
            p.pc(side)
                .send_frame(now, t, 3000 * i as u32, f)
                .expect("send");
        }
    }
    p.run(Duration::from_millis(300));
    for side in 0..2 {
        let mid = p.mid(1 - side, 0);
        let got = p.frames(side, &mid);
        assert_eq!(got.len(), frames.len(), "side {side}");
        assert_eq!(got, frames, "side {side}");
        let s = p.pc(side).stats();
        let inb = s.inbound(&mid).expect("inbound");
        assert_eq!(inb.codec.as_deref(), Some("H264"));
        assert_eq!(inb.keyframes_received, 1);
        let out = s.outbound(p.tracks[side][0]).expect("outbound");
        assert_eq!(out.codec.as_deref(), Some("H264"));
    }
    // The answer kept packetization-mode 1 and the offered profile.
    let n = p.pc(0).negotiated().expect("negotiated").clone();
    let mid = p.mid(0, 0);
    let h = n
        .by_mid(&mid)
        .and_then(|m| m.codecs.iter().find(|c| c.name == "H264"))
        .expect("H264 negotiated")
        .clone();
    let fmtp = h.remote_fmtp.unwrap_or_default();
    assert!(fmtp.contains("packetization-mode=1"), "{fmtp}");
    assert!(fmtp.contains("profile-level-id=42e01f"), "{fmtp}");
}

#[test]
fn h264_track_refuses_to_send_when_the_peer_has_no_h264() {
    let mut p = pair(
        14,
        LinkConfig::default(),
        [&[TrackCodec::H264], &[]],
        0,
        |c| c.capabilities.video.codecs = vec![Codec::vp8(96, Some(97))],
    );
    assert!(p.connect(), "{:?}", p.states());
    let t = p.tracks[0][0];
    let now = p.sim.now();
    let err = p
        .pc(0)
        .send_frame(now, t, 0, &h264_frames(1, 1)[0])
        .expect_err("no H264 agreed");
    assert!(err.to_string().contains("codec"), "{err}");
    assert_eq!(
        p.pc(0).stats().outbound(t).and_then(|o| o.codec.clone()),
        None
    );
}

#[test]
fn consent_loss_fails_the_connection_and_frees_everything() {
    let mut p = pair(
        15,
        LinkConfig::default(),
        [&[TrackCodec::Vp8], &[TrackCodec::Vp8]],
        1,
        |_| {},
    );
    assert!(p.connect(), "{:?}", p.states());
    let started = p.sim.now();
    // B vanishes: nothing of A's reaches it, nothing of B's comes back.
    let dead = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    p.sim.set_link(p.hosts[1], dead);
    let a = p.hosts[0];
    p.run_until(Duration::from_secs(60), |log| {
        log[0]
            .iter()
            .any(|e| matches!(e, peer::Event::ConnectionState(PeerConnectionState::Failed)))
    });
    let took = p.sim.now() - started;
    assert_eq!(p.states()[0], PeerConnectionState::Failed, "{:?}", p.log[0]);
    // RFC 7675 §5.1: consent expires 30 s after the last answer.
    assert!(
        took >= Duration::from_secs(29) && took <= Duration::from_secs(32),
        "{took:?}"
    );
    // It went through `disconnected` first.
    let states: Vec<PeerConnectionState> = p.log[0]
        .iter()
        .filter_map(|e| match e {
            peer::Event::ConnectionState(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert!(
        states.ends_with(&[
            PeerConnectionState::Connected,
            PeerConnectionState::Disconnected,
            PeerConnectionState::Failed
        ]),
        "{states:?}"
    );
    let err = p.log[0]
        .iter()
        .find_map(|e| match e {
            peer::Event::Error(e) => Some(e.clone()),
            _ => None,
        })
        .expect("an error event");
    assert!(matches!(err, peer::Error::Transport(_)), "{err:?}");
    assert!(err.to_string().contains("consent"), "{err}");
    // Nothing is left running: no timer, no SCTP, no media state.
    let m = p.sim.machine_mut::<PeerConnection>(a);
    assert_eq!(m.poll_timeout(), None);
    assert!(m.data_channels().is_none());
    assert!(m.stats().inbound.is_empty());
    let now = p.sim.now();
    let t = p.tracks[0][0];
    assert!(p.pc(0).send_frame(now, t, 0, &[0u8; 10]).is_err());
    p.pc(0).close(now);
    assert_eq!(p.pc(0).poll_timeout(), None);
    assert_eq!(p.pc(0).connection_state(), PeerConnectionState::Closed);
    assert!(p.pc(0).poll_transmit().is_none());
}

#[test]
fn rollback_cancels_a_pending_offer_on_either_side() {
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let mut p = pair(16, LinkConfig::default(), [codecs, codecs], 1, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let now = p.sim.now();
    // Nothing to roll back when stable.
    assert!(
        p.pc(0)
            .set_local_description(now, SdpType::Rollback, "")
            .is_err()
    );
    // A offers a new track, then thinks better of it.
    let extra = p
        .pc(0)
        .add_track(rtclab::sdp::MediaKind::Video)
        .expect("track");
    let offer = p.pc(0).create_offer(now).expect("offer");
    p.pc(0)
        .set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    p.pc(0)
        .set_local_description(now, SdpType::Rollback, "")
        .expect("rollback");
    assert_eq!(p.pc(0).signaling_state(), SignalingState::Stable);
    assert!(
        p.pc(0)
            .set_remote_description(now, SdpType::Answer, "v=0\r\n")
            .is_err()
    );
    // B gets an offer and rolls it back: no track appears.
    let mark = p.log[1].len();
    let offer = p.pc(0).create_offer(now).expect("offer again");
    p.pc(0)
        .set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    p.pc(1)
        .set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote offer");
    let _ = p.pc(1).create_answer().expect("answer");
    p.pc(1)
        .set_remote_description(now, SdpType::Rollback, "")
        .expect("remote rollback");
    assert_eq!(p.pc(1).signaling_state(), SignalingState::Stable);
    p.run(Duration::from_millis(100));
    assert!(
        !p.log[1][mark..]
            .iter()
            .any(|e| matches!(e, peer::Event::Track { .. })),
        "a rolled-back offer adds nothing"
    );
    // A rolls back too, and a complete exchange then carries the track.
    p.pc(0)
        .set_local_description(now, SdpType::Rollback, "")
        .expect("rollback");
    p.renegotiate(0);
    let mid = p.pc(0).track_mid(extra).expect("mid").to_string();
    let frames = vp8_frames(3, 16);
    p.send_frames(0, extra, &frames);
    p.run(Duration::from_millis(200));
    assert_eq!(p.frames(1, &mid), frames);
}

#[test]
fn glare_mid_call_the_polite_peer_rolls_back_and_both_tracks_flow() {
    let codecs: &[TrackCodec] = &[TrackCodec::Opus];
    let mut p = pair(17, LinkConfig::default(), [codecs, codecs], 1, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let now = p.sim.now();
    // Both add a video track and offer at the same moment.
    let ta = p.pc(0).add_track(rtclab::sdp::MediaKind::Video).expect("a");
    let tb = p.pc(1).add_track(rtclab::sdp::MediaKind::Video).expect("b");
    let offer_a = p.pc(0).create_offer(now).expect("offer a");
    p.pc(0)
        .set_local_description(now, SdpType::Offer, &offer_a)
        .expect("local a");
    let offer_b = p.pc(1).create_offer(now).expect("offer b");
    p.pc(1)
        .set_local_description(now, SdpType::Offer, &offer_b)
        .expect("local b");
    // A is impolite: it ignores B's offer. B is polite: A's offer rolls
    // B's back implicitly, and B answers.
    p.pc(1)
        .set_remote_description(now, SdpType::Offer, &offer_a)
        .expect("implicit rollback");
    let answer = p.pc(1).create_answer().expect("answer");
    p.pc(1)
        .set_local_description(now, SdpType::Answer, &answer)
        .expect("local answer");
    p.pc(0)
        .set_remote_description(now, SdpType::Answer, &answer)
        .expect("remote answer");
    // B's track was not in that exchange; B offers again for it.
    p.renegotiate(1);
    let frames = vp8_frames(3, 17);
    p.send_frames(0, ta, &frames);
    p.send_frames(1, tb, &frames);
    p.run(Duration::from_millis(300));
    let (ma, mb) = (
        p.pc(0).track_mid(ta).expect("mid a").to_string(),
        p.pc(1).track_mid(tb).expect("mid b").to_string(),
    );
    assert_eq!(p.frames(1, &ma), frames);
    assert_eq!(p.frames(0, &mb), frames);
    assert_eq!(p.states(), [PeerConnectionState::Connected; 2]);
}

#[test]
fn local_ice_credentials_are_configurable() {
    let creds = rtclab::ice::Credentials {
        ufrag: "rtcl".into(),
        pwd: "a/very+long/password/of/ours".into(),
    };
    let mut answer_text = String::new();
    let chosen = creds.clone();
    let mut p = pair(18, LinkConfig::default(), [&[], &[]], 1, |c| {
        c.ice_credentials = Some(chosen)
    });
    assert!(p.connect(), "{:?}", p.states());
    let local = p
        .pc(1)
        .transport()
        .expect("transport")
        .local_credentials()
        .clone();
    assert_eq!(local, creds);
    if let Some(sd) = p.pc(0).negotiated() {
        answer_text = sd.remote_ice_ufrag.clone();
    }
    assert_eq!(answer_text, "rtcl");

    // Too short a password: refused with a clear error.
    let mut rng = StdRng::seed_from_u64(18);
    let mut config = peer::Config::new(certificate(&mut rng), vec![addr(A)]);
    config.ice_credentials = Some(rtclab::ice::Credentials {
        ufrag: "rtcl".into(),
        pwd: "short".into(),
    });
    let mut bad = PeerConnection::new(config, StdRng::seed_from_u64(1));
    let now = Sim::new(1).now();
    let err = bad.create_offer(now).expect_err("bad credentials");
    assert!(err.to_string().contains("RFC 8839"), "{err}");
}

/// RTP mode: B takes A's video as RTP packets ([`peer::Event::Rtp`]) and
/// sends each back on its own track with `send_rtp`, as an SFU forwards;
/// A assembles the frames it gets back. Under 5% loss each way, both legs
/// repair loss on their own (B NACKs A and answers A's NACKs from its own
/// history), and every frame comes back identical.
#[test]
fn rtp_mode_forwards_packets_back_and_both_legs_repair_loss() {
    let lossy = LinkConfig {
        loss: 0.05,
        delay: Duration::from_millis(10),
        ..LinkConfig::default()
    };
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let mut p = pair(21, LinkConfig::default(), [codecs, codecs], 1, |_| {});
    assert!(p.connect(), "{:?} {:?}", p.states(), p.log);
    let (ta, tb) = (p.tracks[0][0], p.tracks[1][0]);
    let (mid_a, mid_b) = (p.mid(0, 0), p.mid(1, 0));
    p.pc(1).set_rtp_mode(&mid_a, true).expect("rtp mode");
    let frames = vp8_frames(60, 21);
    // The first frame (the keyframe) over a clean link, the rest lossy.
    let now = p.sim.now();
    p.pc(0).send_frame(now, ta, 0, &frames[0]).expect("send");
    let hosts = p.hosts;
    let mut forwarded = 0;
    let mut step = |p: &mut Pair, d: Duration| {
        let log = &mut p.log;
        p.sim.run_for_with(d, |sim| {
            pump(sim, hosts, log);
            let now = sim.now();
            for e in log[1].iter_mut() {
                if let peer::Event::Rtp { mid, packet, .. } = e {
                    assert_eq!(*mid, mid_a.as_str());
                    let packet = std::mem::take(packet);
                    let b = sim.machine_mut::<PeerConnection>(hosts[1]);
                    b.send_rtp(now, tb, &packet).expect("forward");
                    b.recycle_rtp(packet);
                    forwarded += 1;
                }
            }
            log[1].retain(|e| !matches!(e, peer::Event::Rtp { .. }));
            false
        });
    };
    step(&mut p, Duration::from_millis(200));
    p.sim.set_link(p.hosts[0], lossy.clone());
    p.sim.set_link(p.hosts[1], lossy);
    for (i, f) in frames.iter().enumerate().skip(1) {
        let now = p.sim.now();
        p.pc(0)
            .send_frame(now, ta, 3000 * i as u32, f)
            .expect("send");
        step(&mut p, Duration::from_millis(33));
    }
    step(&mut p, Duration::from_secs(2));
    assert_eq!(p.frames(0, &mid_b), frames, "every frame back, identical");
    assert!(
        p.frames(1, &mid_a).is_empty(),
        "RTP mode assembles no frames"
    );
    let stats = [p.pc(0).stats(), p.pc(1).stats()];
    let b_in = stats[1].inbound(&mid_a).expect("B inbound");
    let a_in = stats[0].inbound(&mid_b).expect("A inbound");
    let b_out = stats[1].outbound(tb).expect("B outbound");
    assert!(
        b_in.nack_count > 0 && b_in.rtx_packets_received > 0,
        "{b_in:?}"
    );
    assert!(
        a_in.nack_count > 0 && b_out.retransmitted_packets_sent > 0,
        "{b_out:?}"
    );
    // Transport-cc: both legs number their packets and get feedback.
    let (ma, mb) = (p.pc(0).media_stats(), p.pc(1).media_stats());
    assert!(
        ma.twcc_feedback_sent > 0 && mb.twcc_feedback_received > 0,
        "{ma:?} {mb:?}"
    );
    assert!(
        mb.twcc_feedback_sent > 0 && ma.twcc_feedback_received > 0,
        "{ma:?} {mb:?}"
    );
    // Every original B received (RTX rebuilt ones included) went on.
    assert_eq!(
        forwarded,
        b_in.packets_received + b_in.rtx_packets_received,
        "one send_rtp per packet"
    );
}

/// `remove_data_channels` closes by stream reset and SHUTDOWN, not ABORT:
/// a message queued just before still arrives whole, and both sides see
/// every channel close. An RTCP BYE (RFC 3550 §6.6) ends the peer's track
/// at once, before any renegotiation.
#[test]
fn removing_data_channels_loses_nothing_queued_and_bye_ends_a_track() {
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let link = LinkConfig {
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let mut p = pair(22, link, [codecs, &[]], 2, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let (ta, mid) = (p.tracks[0][0], p.mid(0, 0));
    let frames = vp8_frames(2, 22);
    p.send_frames(0, ta, &frames);
    p.run(Duration::from_millis(200));
    assert_eq!(p.frames(1, &mid), frames);

    let now = p.sim.now();
    let big = vec![7u8; 200_000];
    let ch = p.channels[0];
    p.pc(0).send_binary(now, ch, &big).expect("send");
    p.pc(0).remove_track(ta).expect("remove track");
    p.pc(0).remove_data_channels(now).expect("remove dc");
    p.run(Duration::from_millis(100));
    assert!(
        p.log[1]
            .iter()
            .any(|e| matches!(e, peer::Event::TrackEnded { mid: m } if *m == mid)),
        "the BYE ended B's receiver"
    );
    p.renegotiate(0);
    p.run(Duration::from_secs(3));
    assert!(
        p.messages(1).contains(&Message::Binary(big)),
        "the queued message arrived whole"
    );
    let closed = |log: &[peer::Event]| {
        log.iter()
            .filter(|e| matches!(e, peer::Event::DataChannel(DcEvent::Closed(_))))
            .count()
    };
    assert_eq!((closed(&p.log[0]), closed(&p.log[1])), (2, 2));
    assert!(p.pc(0).data_channels().is_none());
    assert!(p.pc(1).data_channels().is_none());
    let a_stats = p.pc(0).stats();
    assert_eq!(a_stats.data_channels.channels_closed, 2);
}

/// VP9 frames: a keyframe first (frame marker 2, profile 0, frame_type 0:
/// RFC 9628 §4.2's P bit clear), large enough to span packets, then
/// inter frames (frame_type 1).
fn vp9_frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let len = if i == 0 { 5000 } else { 40 + (i * 397) % 3000 };
            let mut f: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            f[0] = if i == 0 { 0x80 } else { 0x84 };
            f
        })
        .collect()
}

/// AV1 temporal units in the low-overhead format: a temporal delimiter,
/// then for the first a sequence header and a 5000-byte frame OBU (cut
/// over several packets), for the others a metadata OBU with an extension
/// byte and a frame OBU.
fn av1_units(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut obu = |header: u8, ext: Option<u8>, len: usize, out: &mut Vec<u8>| {
        out.push(header | 0x02 | if ext.is_some() { 0x04 } else { 0 });
        out.extend(ext);
        let mut v = len;
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            out.push(if v == 0 { b } else { b | 0x80 });
            if v == 0 {
                break;
            }
        }
        out.extend((0..len).map(|_| rng.random::<u8>()));
    };
    (0..n)
        .map(|i| {
            let mut tu = vec![0x12, 0x00];
            if i == 0 {
                obu(1 << 3, None, 12, &mut tu); // sequence header
                obu(6 << 3, None, 5000, &mut tu); // frame
            } else {
                obu(5 << 3, Some(0x08), 3, &mut tu); // metadata, temporal id 0
                obu(6 << 3, None, 40 + (i * 397) % 3000, &mut tu);
            }
            tu
        })
        .collect()
}

/// Both sides send `frames` on a `codec` track; each receives them intact,
/// the first as the only keyframe, and stats name the codec.
fn frames_flow_both_ways(codec: TrackCodec, frames: &[Vec<u8>], seed: u64) {
    let c: &[TrackCodec] = &[codec];
    let mut p = pair(seed, LinkConfig::default(), [c, c], 0, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    for side in 0..2 {
        let t = p.tracks[side][0];
        p.send_frames(side, t, frames);
    }
    p.run(Duration::from_millis(300));
    for side in 0..2 {
        let mid = p.mid(1 - side, 0);
        let got = p.frames(side, &mid);
        assert_eq!(got.len(), frames.len(), "side {side}");
        assert!(got == frames, "side {side}: frames differ");
        let s = p.pc(side).stats();
        let inb = s.inbound(&mid).expect("inbound");
        assert_eq!(inb.codec.as_deref(), Some(codec.name()));
        assert_eq!(inb.keyframes_received, 1);
        let out = s.outbound(p.tracks[side][0]).expect("outbound");
        assert_eq!(out.codec.as_deref(), Some(codec.name()));
    }
}

#[test]
fn vp9_frames_flow_both_ways_identical() {
    frames_flow_both_ways(TrackCodec::Vp9, &vp9_frames(30, 15), 15);
}

#[test]
fn av1_temporal_units_flow_both_ways_identical() {
    frames_flow_both_ways(TrackCodec::Av1, &av1_units(30, 16), 16);
}

/// AV1 under 5% loss: units whose OBUs are fragmented over many packets are
/// repaired by NACK/RTX and come out whole, in order, one keyframe.
#[test]
fn av1_temporal_units_survive_loss_through_nack_and_rtx() {
    let av1: &[TrackCodec] = &[TrackCodec::Av1];
    let mut p = pair(17, LinkConfig::default(), [av1, &[]], 0, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let units = av1_units(60, 17);
    let t = p.tracks[0][0];
    let mid = p.mid(0, 0);
    let lossy = LinkConfig {
        loss: 0.05,
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    for (i, u) in units.iter().enumerate() {
        // The keyframe over a clean link (no encoder here to answer a PLI),
        // then 5% loss, the last units clean again (a lost tail packet is
        // only noticed when a later one comes).
        if i == 1 {
            p.sim.set_link(p.hosts[0], lossy.clone());
        }
        if i == 55 {
            p.sim.set_link(p.hosts[0], LinkConfig::default());
        }
        let now = p.sim.now();
        p.pc(0)
            .send_frame(now, t, 3000 * i as u32, u)
            .expect("send");
        p.run(Duration::from_millis(33));
    }
    p.run(Duration::from_secs(3));
    let got = p.frames(1, &mid);
    assert_eq!(got.len(), units.len());
    assert!(got == units, "units differ");
    let inb = p.pc(1).stats().inbound(&mid).expect("inbound").clone();
    assert!(
        inb.packets_lost > 0 && inb.rtx_packets_received > 0,
        "{inb:?}"
    );
    assert_eq!(inb.keyframes_received, 1);
}

/// Send-side bandwidth estimation through PeerConnection: A's encoder sends
/// at what `available_outgoing_bitrate` allows over a 2.5 Mbit/s
/// bottleneck (40 ms RTT, 64 KiB queue). Unpaced, from 300 kbit/s, GCC's
/// AIMD climbs 8 % a second to the link and holds near it; paced (with
/// start-up probes), it is there within two seconds.
#[test]
fn the_bandwidth_estimate_follows_a_bottleneck() {
    let unpaced = estimate_over_a_bottleneck(false);
    let paced = estimate_over_a_bottleneck(true);
    eprintln!("estimate each second (kbit/s), unpaced: {unpaced:?}");
    eprintln!("estimate each second (kbit/s), paced:   {paced:?}");
    let mean = |v: &[u64]| v.iter().sum::<u64>() / v.len() as u64;
    let m = mean(&unpaced[30..]);
    assert!((1_800..=3_000).contains(&m), "unpaced, 30-45 s: {m} kbit/s");
    let first = paced
        .iter()
        .position(|&r| r >= 2_125)
        .expect("never within 15 %");
    assert!(first <= 3, "paced: within 15 % of the link after {first} s");
    let m = mean(&paced[5..20]);
    assert!((1_800..=3_000).contains(&m), "paced, 5-20 s: {m} kbit/s");
}

/// The estimate at each second of 45, in kbit/s.
fn estimate_over_a_bottleneck(pacing: bool) -> Vec<u64> {
    let link = LinkConfig {
        delay: Duration::from_millis(20),
        rate_bps: Some(2_500_000),
        queue_limit_bytes: 64 * 1024,
        ..LinkConfig::default()
    };
    let back = LinkConfig {
        delay: Duration::from_millis(20),
        ..LinkConfig::default()
    };
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let mut p = pair_with(
        23,
        LinkConfig::default(),
        [codecs, &[]],
        0,
        |a| a.pacing = pacing,
        |_| {},
    );
    assert!(p.connect(), "{:?}", p.states());
    p.sim.set_link(p.hosts[0], link);
    p.sim.set_link(p.hosts[1], back);
    let ta = p.tracks[0][0];
    let mut estimates = Vec::new();
    for i in 0..(45 * 30) {
        let now = p.sim.now();
        let rate = p.pc(0).available_outgoing_bitrate().unwrap_or(300_000);
        let size = (rate / 8 / 30).max(500) as usize;
        let frame = vec![(i % 251) as u8 | 1; size];
        match p.pc(0).send_frame(now, ta, 3000 * i as u32, &frame) {
            Ok(_) | Err(peer::Error::Congested) => {}
            Err(e) => panic!("send: {e}"),
        }
        p.run(Duration::from_millis(33));
        if i % 30 == 0 {
            estimates.push(rate / 1000);
        }
    }
    let events = p.log[0]
        .iter()
        .filter(|e| matches!(e, peer::Event::BandwidthEstimate { .. }))
        .count();
    assert!(events > 5, "{events} estimate events");
    assert!(
        p.pc(0)
            .stats()
            .transport
            .available_outgoing_bitrate
            .is_some()
    );
    estimates
}

/// A peer without transport-cc (only `goog-remb`): A then stamps
/// abs-send-time, B estimates on its side and sends REMB, which A reports
/// as `peer::Event::Remb`; over a 1 Mbit/s bottleneck the REMB comes down
/// near the link when A sends 2 Mbit/s.
#[test]
fn a_remb_only_peer_gets_remb_from_our_receiver() {
    let no_tcc = |c: &mut peer::Config| {
        let uri = rtclab::sdp::codec::uri::TRANSPORT_CC;
        for m in [&mut c.capabilities.audio, &mut c.capabilities.video] {
            m.extensions.retain(|u| u != uri);
            for codec in &mut m.codecs {
                codec.feedback.retain(|f| f.kind != "transport-cc");
            }
        }
    };
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let mut p = pair_with(24, LinkConfig::default(), [codecs, &[]], 0, no_tcc, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    p.sim.set_link(
        p.hosts[0],
        LinkConfig {
            delay: Duration::from_millis(20),
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 64 * 1024,
            ..LinkConfig::default()
        },
    );
    let ta = p.tracks[0][0];
    for i in 0..(10 * 30) {
        let now = p.sim.now();
        let frame = vec![(i % 251) as u8 | 1; 2_000_000 / 8 / 30];
        p.pc(0)
            .send_frame(now, ta, 3000 * i as u32, &frame)
            .expect("send");
        p.run(Duration::from_millis(33));
    }
    let rembs: Vec<u64> = p.log[0]
        .iter()
        .filter_map(|e| match e {
            peer::Event::Remb { bitrate } => Some(*bitrate),
            _ => None,
        })
        .collect();
    assert!(rembs.len() >= 5, "REMBs: {rembs:?}");
    let last = *rembs.last().expect("a REMB");
    assert!(last < 1_300_000, "REMBs: {rembs:?}");
    assert_eq!(p.pc(0).media_stats().twcc_feedback_received, 0);
}

/// Feedback as API calls and events, what a forwarder relays between its
/// legs: a NACK the history cannot answer becomes
/// `peer::Event::NackUnanswered`; a FIR asks for a keyframe; a REMB carries
/// a bitrate.
#[test]
fn feedback_calls_reach_the_sender_as_events() {
    let codecs: &[TrackCodec] = &[TrackCodec::Vp8];
    let mut p = pair(25, LinkConfig::default(), [codecs, &[]], 0, |_| {});
    assert!(p.connect(), "{:?}", p.states());
    let (ta, mid) = (p.tracks[0][0], p.mid(0, 0));
    p.send_frames(0, ta, &vp8_frames(3, 25));
    p.run(Duration::from_millis(200));
    let sent = p.pc(0).stats().outbound(ta).expect("out").clone();
    assert!(sent.packets_sent > 0);
    let far: Vec<u16> = vec![20_000, 20_001];
    p.pc(1).send_nack(&mid, &far).expect("nack");
    p.pc(1).request_keyframe_fir(&mid).expect("fir");
    p.pc(1).send_remb(500_000).expect("remb");
    p.run(Duration::from_millis(100));
    let log = &p.log[0];
    assert!(log.iter().any(|e| matches!(
        e,
        peer::Event::NackUnanswered { track, sequence_numbers } if *track == ta && *sequence_numbers == far
    )), "{log:?}");
    assert!(
        log.iter()
            .any(|e| matches!(e, peer::Event::KeyframeRequested(t) if *t == ta))
    );
    assert!(
        log.iter()
            .any(|e| matches!(e, peer::Event::Remb { bitrate: 500_000 }))
    );
    assert_eq!(p.pc(0).stats().outbound(ta).expect("out").fir_count, 1);
    assert!(p.pc(1).send_nack("nope", &far).is_err());
}
