//! A small call in the simulator, captured as the offerer saw it: the pcapng
//! the x-ray tests read (tshark, `rtclab xray`). Two PeerConnections, one
//! video track and a data channel "chat" from A; three text messages and
//! three VP8 frames from A, one reply from B. Fixed seeds: the same bytes
//! every run, except the DTLS secrets (the certificates' validity starts
//! now), so only lines that do not show them are compared in golden tests.
#![allow(dead_code)]

#[path = "sim_peers.rs"]
mod sim_peers;

use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::capture::sim_pcapng;
use rtclab::datachannel::{ChannelInit, Event as DcEvent};
use rtclab::peer::{self, PeerConnection, Plaintext, SdpType};
use rtclab::runtime::live;
use rtclab::sdp::MediaKind;
use rtclab::sim::Sim;
use sim_peers::{A, B, addr, certificate, pump, vp8_frames};

/// The channel label the call opens.
pub const LABEL: &str = "chat";
/// The messages A sends on it.
pub const MESSAGES: [&str; 3] = ["hello over SCTP", "second message", "third"];

/// Runs the call; the pcapng of host A (with the DTLS key log in a DSB and
/// A's SRTP plaintext).
pub fn capture() -> Vec<u8> {
    let seed = 18;
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
    let video = a.add_track(MediaKind::Video).expect("video");
    let chat = a
        .create_data_channel(ChannelInit::new(LABEL))
        .expect("channel");
    let offer = a.create_offer(now).expect("offer");
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("offer");
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("offer");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("answer");
    a.set_remote_description(now, SdpType::Answer, &answer)
        .expect("answer");
    let hosts = [sim.add_host(a, &[addr(A)]), sim.add_host(b, &[addr(B)])];
    sim.set_capture(true);

    let mut log = [Vec::new(), Vec::new()];
    let mut plaintext: Vec<(Duration, Plaintext)> = Vec::new();
    let mut key_log = Vec::new();
    let mut sent = false;
    let mut replied = false;
    let frames = vp8_frames(3, seed);
    let start = sim.start();
    sim.run_for_with(Duration::from_secs(10), |sim| {
        pump(sim, hosts, &mut log);
        let t = sim.now() - start;
        let now = sim.now();
        let pc = sim.machine_mut::<PeerConnection>(hosts[0]);
        if key_log.is_empty() {
            key_log.extend(live::key_log_line(pc));
        }
        if let Some(tr) = pc.transport_mut() {
            tr.set_plaintext_tap(true);
            while let Some(p) = tr.poll_plaintext() {
                plaintext.push((t, p));
            }
        }
        let open = log[0]
            .iter()
            .any(|e| matches!(e, peer::Event::DataChannel(DcEvent::Open(id)) if *id == chat));
        if open && !sent {
            sent = true;
            for m in MESSAGES {
                pc.send_text(now, chat, m).expect("send");
            }
            for (i, f) in frames.iter().enumerate() {
                pc.send_frame(now, video, 3000 * i as u32, f)
                    .expect("frame");
            }
        }
        let got: Vec<_> = log[1]
            .iter()
            .filter_map(|e| match e {
                peer::Event::DataChannel(DcEvent::Message { channel, .. }) => Some(*channel),
                _ => None,
            })
            .collect();
        if got.len() == MESSAGES.len() && !replied {
            replied = true;
            let b = sim.machine_mut::<PeerConnection>(hosts[1]);
            b.send_text(now, got[0], "reply from B").expect("reply");
        }
        let frames_in = log[1]
            .iter()
            .filter(|e| matches!(e, peer::Event::Frame { .. }))
            .count();
        let reply_in = log[0]
            .iter()
            .any(|e| matches!(e, peer::Event::DataChannel(DcEvent::Message { .. })));
        frames_in == frames.len() && reply_in
    });
    // Let the last SACKs and RTCP reports go.
    sim.run_for(Duration::from_millis(1200));
    let t = sim.now() - start;
    let pc = sim.machine_mut::<PeerConnection>(hosts[0]);
    if let Some(tr) = pc.transport_mut() {
        while let Some(p) = tr.poll_plaintext() {
            plaintext.push((t, p));
        }
    }
    assert!(sent && replied, "the call did not carry its messages");
    assert!(!key_log.is_empty(), "no key log line");
    let records = sim.drain_capture();
    sim_pcapng(&records, hosts[0], &key_log, &plaintext)
}
