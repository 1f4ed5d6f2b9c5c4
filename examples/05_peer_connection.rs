//! Chapter 5: two `PeerConnection`s in one process, as the codelab's step
//! puts two `RTCPeerConnection`s on one page — but on a simulated network,
//! so the run is the same every time.
//!
//! A adds a video track, an audio track and a data channel and offers; B
//! adds its own tracks and answers. Their candidates go across by
//! "signaling" (here: a function call). The example prints the offer, the
//! answer's decisive lines, then every event in virtual time: ICE, DTLS,
//! the data channel opening, and the first frames and messages.
//!
//! Run it with `cargo run --example 05_peer_connection`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
pub mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelInit, Event as DcEvent};
use rtclab::dtls::cert::Certificate;
use rtclab::peer::{self, PeerConnection, SdpType};
use rtclab::sdp::MediaKind;
use rtclab::sim::{LinkConfig, Sim};

const A: &str = "192.0.2.1:5000";
const B: &str = "198.51.100.2:6000";

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// The lines of a description worth reading, with the certificate's
/// fingerprint (different every run: the certificate carries a date) elided.
fn show(out: &mut dyn Write, who: &str, sdp: &str, only: &[&str]) -> std::io::Result<()> {
    for line in sdp.lines() {
        if !only.is_empty() && !only.iter().any(|p| line.starts_with(p)) {
            continue;
        }
        let line = if line.starts_with("a=fingerprint:") {
            "a=fingerprint:sha-256 …"
        } else {
            line
        };
        writeln!(out, "{who} | {line}")?;
    }
    Ok(())
}

/// Runs the two peers and prints what happens to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut sim = Sim::new(5);
    let start = sim.now();
    let (ca, cb) = (
        Certificate::generate(&mut rng, SystemTime::now())?,
        Certificate::generate(&mut rng, SystemTime::now())?,
    );
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (A.parse()?, B.parse()?);

    // ANCHOR: offer_answer
    let mut a = PeerConnection::new(
        peer::Config::new(ca, vec![a_addr]),
        StdRng::seed_from_u64(1),
    );
    let mut b = PeerConnection::new(
        peer::Config::new(cb, vec![b_addr]),
        StdRng::seed_from_u64(2),
    );
    let a_video = a.add_track(MediaKind::Video)?;
    a.add_track(MediaKind::Audio)?;
    let chat = a.create_data_channel(ChannelInit::new("chat"))?;
    b.add_track(MediaKind::Video)?;
    b.add_track(MediaKind::Audio)?;

    let offer = a.create_offer(start)?;
    a.set_local_description(start, SdpType::Offer, &offer)?;
    b.set_remote_description(start, SdpType::Offer, &offer)?;
    let answer = b.create_answer()?;
    b.set_local_description(start, SdpType::Answer, &answer)?;
    a.set_remote_description(start, SdpType::Answer, &answer)?;
    // ANCHOR_END: offer_answer
    writeln!(out, "--- A's offer")?;
    show(out, "A", &offer, &[])?;
    writeln!(out, "--- B's answer (the lines that decide)")?;
    show(
        out,
        "B",
        &answer,
        &[
            "m=",
            "a=setup",
            "a=rtpmap",
            "a=sctp-port",
            "a=max-message-size",
        ],
    )?;

    let link = LinkConfig {
        delay: Duration::from_millis(10),
        ..LinkConfig::default()
    };
    let ha = sim.add_host(a, &[a_addr]);
    let hb = sim.add_host(b, &[b_addr]);
    sim.set_link(ha, link);
    pcap::start(&mut sim); // `--pcap FILE`: A's capture, see examples/common/pcap.rs
    let hosts = [ha, hb];
    let names = ["A", "B"];

    writeln!(out, "--- events (virtual time since the offer)")?;
    let mut sent = false;
    let mut b_got = (false, false);
    sim.run_for_with(Duration::from_secs(5), |sim| {
        for side in 0..2 {
            let now = sim.now();
            let ms = now.duration_since(start).as_millis();
            for e in sim.events::<PeerConnection>(hosts[side]) {
                // ANCHOR: trickle
                let line = match &e {
                    peer::Event::LocalCandidate(c) => {
                        let peer = sim.machine_mut::<PeerConnection>(hosts[1 - side]);
                        let _ = peer.add_ice_candidate(now, &c.to_string());
                        format!("local candidate {c} → signaled to the peer")
                    }
                    peer::Event::GatheringComplete => {
                        let peer = sim.machine_mut::<PeerConnection>(hosts[1 - side]);
                        peer.add_end_of_candidates(now);
                        "gathering complete → end-of-candidates".to_string()
                    }
                    // ANCHOR_END: trickle
                    peer::Event::SignalingState(s) => format!("signaling state {s:?}"),
                    peer::Event::IceConnectionState(s) => format!("ICE connection state {s:?}"),
                    peer::Event::ConnectionState(s) => format!("connection state {s:?}"),
                    peer::Event::Track { mid, kind } => format!("track: mid {mid}, {kind:?}"),
                    peer::Event::Frame { mid, frame } => {
                        if side == 1 {
                            b_got.0 = true;
                        }
                        format!(
                            "frame on mid {mid}: {} bytes, keyframe {}",
                            frame.data.len(),
                            frame.keyframe
                        )
                    }
                    peer::Event::DataChannel(DcEvent::Open(id)) => {
                        let pc = sim.machine::<PeerConnection>(hosts[side]);
                        let label = pc
                            .data_channels()
                            .and_then(|d| d.channel(*id))
                            .map(|c| c.label().to_string())
                            .unwrap_or_default();
                        format!("data channel {label:?} open")
                    }
                    peer::Event::DataChannel(DcEvent::Message { message, .. }) => {
                        if side == 1 {
                            b_got.1 = true;
                        }
                        format!("message: {message:?}")
                    }
                    other => format!("{other:?}"),
                };
                let _ = writeln!(out, "{ms:>5} ms  {}  {line}", names[side]);
            }
        }
        let connected = hosts.iter().all(|&h| {
            sim.machine::<PeerConnection>(h).connection_state()
                == rtclab::peer::PeerConnectionState::Connected
        });
        let chat_open = sim
            .machine::<PeerConnection>(ha)
            .data_channels()
            .and_then(|d| d.channel(chat))
            .is_some_and(|c| c.ready_state() == rtclab::datachannel::ReadyState::Open);
        if connected && chat_open && !sent {
            sent = true;
            let now = sim.now();
            // ANCHOR: send
            let a = sim.machine_mut::<PeerConnection>(ha);
            let keyframe = [0x10u8; 2500]; // VP8: P bit 0 = keyframe
            let _ = a.send_frame(now, a_video, 0, &keyframe);
            let _ = a.send_text(now, chat, "hello from A");
            // ANCHOR_END: send
        }
        b_got.0 && b_got.1
    });
    writeln!(
        out,
        "--- done: B got A's keyframe and message: {}",
        b_got.0 && b_got.1
    )?;
    let keys = pcap::key_log(&sim, ha);
    pcap::save(&mut sim, ha, &keys)?;
    Ok(())
}
