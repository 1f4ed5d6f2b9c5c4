//! Chapter 1: the smallest complete thing. Two `PeerConnection`s in one
//! process, on a simulated network (15 ms each way), connect and exchange
//! one data-channel message.
//!
//! The example prints every datagram as the simulator carries it, named by
//! its layer (the first byte tells: RFC 7983), and every state change of
//! every layer as it happens: the offer and answer, the ICE checks and
//! `Connected`, the DTLS handshake and the cipher suite it chose, the SCTP
//! association coming up inside DTLS, the channel opening, the message.
//!
//! Run it with `cargo run --example 01_hello`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
pub mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message as DcMessage};
use rtclab::dtls::cert::Certificate;
use rtclab::dtls::handshake::{HandshakeType, ServerHello, fragments};
use rtclab::dtls::record::{CipherSuite, ContentType, records};
use rtclab::peer::{self, PacketKind, PeerConnection, SdpType, classify};
use rtclab::sim::{CaptureKind, LinkConfig, Sim};
use rtclab::stun::{Class, Message, attr};

const A: &str = "192.0.2.1:5000";
const B: &str = "198.51.100.2:6000";

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

// ANCHOR: layer
/// Names a datagram by its layer, with the demultiplexer a PeerConnection
/// itself uses: the first byte decides (RFC 7983).
fn layer(datagram: &[u8]) -> String {
    match classify(datagram) {
        PacketKind::Stun => match Message::parse(datagram) {
            Ok(m) => {
                let what = match m.class() {
                    Class::Request if m.get(attr::USE_CANDIDATE).is_some() => {
                        "Binding request, USE-CANDIDATE (nomination)"
                    }
                    Class::Request => "Binding request (connectivity check)",
                    Class::Success => "Binding success response",
                    Class::Error => "Binding error response",
                    Class::Indication => "Binding indication",
                };
                format!("STUN  {what}")
            }
            Err(e) => format!("STUN  undecodable: {e}"),
        },
        PacketKind::Dtls => format!("DTLS  {}", dtls_records(datagram)),
        PacketKind::Rtp => "SRTP  (media)".to_string(),
        PacketKind::Rtcp => "SRTCP (media feedback)".to_string(),
        _ => "?     (no layer of ours)".to_string(),
    }
}
// ANCHOR_END: layer

/// The records of a DTLS datagram, with the handshake messages of epoch 0
/// named and the cipher suite of a ServerHello read.
fn dtls_records(datagram: &[u8]) -> String {
    let mut parts = Vec::new();
    for r in records(datagram) {
        let Ok(r) = r else {
            parts.push("(malformed)".to_string());
            break;
        };
        match r.header.content_type {
            ContentType::Handshake if r.header.epoch == 0 => {
                for f in fragments(r.fragment).flatten() {
                    let name = match f.header.msg_type {
                        HandshakeType::ServerHello => match ServerHello::parse(f.body) {
                            Ok(sh) => format!(
                                "ServerHello ({})",
                                CipherSuite::from_code(sh.cipher_suite)
                                    .map_or("unknown suite", CipherSuite::name)
                            ),
                            Err(_) => "ServerHello".to_string(),
                        },
                        t => format!("{t:?}"),
                    };
                    parts.push(name);
                }
            }
            ContentType::Handshake => parts.push("Finished (encrypted)".to_string()),
            ContentType::ChangeCipherSpec => parts.push("ChangeCipherSpec".to_string()),
            ContentType::ApplicationData => parts.push(format!(
                "application data, {} bytes: SCTP inside, encrypted",
                r.fragment.len()
            )),
            ContentType::Alert => parts.push("alert".to_string()),
            ContentType::Other(t) => parts.push(format!("content type {t}")),
        }
    }
    parts.join(" + ")
}

/// Runs the two peers and prints what happens to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let mut rng = StdRng::seed_from_u64(1);
    let mut sim = Sim::new(1);
    sim.set_capture(true);
    let start = sim.now();
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (A.parse()?, B.parse()?);

    // ANCHOR: peers
    let cert_a = Certificate::generate(&mut rng, SystemTime::now())?;
    let cert_b = Certificate::generate(&mut rng, SystemTime::now())?;
    let mut a = PeerConnection::new(
        peer::Config::new(cert_a, vec![a_addr]),
        StdRng::seed_from_u64(2),
    );
    let mut b = PeerConnection::new(
        peer::Config::new(cert_b, vec![b_addr]),
        StdRng::seed_from_u64(3),
    );
    // pc.createDataChannel("hello"), then the offer/answer exchange that a
    // signaling server would carry (chapter 7); here, function calls.
    let hello = a.create_data_channel(ChannelInit::new("hello"))?;
    let offer = a.create_offer(start)?;
    a.set_local_description(start, SdpType::Offer, &offer)?;
    b.set_remote_description(start, SdpType::Offer, &offer)?;
    let answer = b.create_answer()?;
    b.set_local_description(start, SdpType::Answer, &answer)?;
    a.set_remote_description(start, SdpType::Answer, &answer)?;
    // ANCHOR_END: peers
    writeln!(
        out,
        "signaling: A's offer ({} lines) → B; B's answer ({} lines) → A",
        offer.lines().count(),
        answer.lines().count()
    )?;

    let ha = sim.add_host(a, &[a_addr]);
    let hb = sim.add_host(b, &[b_addr]);
    // 15 ms each way: A's link 10 ms, B's 5 ms (the default).
    sim.set_link(
        ha,
        LinkConfig {
            delay: Duration::from_millis(10),
            ..LinkConfig::default()
        },
    );
    let hosts = [ha, hb];
    let names = ["A", "B"];
    let mut sctp_state = [None, None];
    let mut sent = false;
    let mut got = None;

    // Every record, kept for `--pcap FILE` (examples/common/pcap.rs).
    let mut kept = Vec::new();
    let mut keys = Vec::new();
    sim.run_for_with(Duration::from_secs(2), |sim| {
        let now = sim.now();
        let ms = now.duration_since(start).as_millis();
        if keys.is_empty() {
            keys = pcap::key_log(sim, ha);
        }
        // What went on the wire since the last step, layer by layer.
        let records = sim.drain_capture();
        for rec in &records {
            if rec.kind != CaptureKind::Sent {
                continue;
            }
            let who = if rec.host == ha { "A → B" } else { "A ← B" };
            let _ = writeln!(
                out,
                "{:>4} ms  {who}  {}",
                rec.time.as_millis(),
                layer(&rec.contents)
            );
        }
        if pcap::requested().is_some() {
            kept.extend(records);
        }
        for side in 0..2 {
            // ANCHOR: events
            for e in sim.events::<PeerConnection>(hosts[side]) {
                let line = match e {
                    peer::Event::LocalCandidate(c) => {
                        // Trickle: hand the candidate to the other side.
                        let peer = sim.machine_mut::<PeerConnection>(hosts[1 - side]);
                        let _ = peer.add_ice_candidate(now, &c.to_string());
                        format!("ICE   candidate {c}")
                    }
                    peer::Event::GatheringComplete => {
                        let peer = sim.machine_mut::<PeerConnection>(hosts[1 - side]);
                        peer.add_end_of_candidates(now);
                        continue;
                    }
                    peer::Event::IceConnectionState(s) => format!("ICE   state {s:?}"),
                    peer::Event::ConnectionState(s) => format!("peer  connection state {s:?}"),
                    peer::Event::DataChannel(DcEvent::Open(_)) => {
                        "data channel \"hello\" open".to_string()
                    }
                    peer::Event::DataChannel(DcEvent::Message { message, .. }) => {
                        if let DcMessage::Text(t) = &message {
                            got = Some(t.clone());
                        }
                        format!("data channel message: {message:?}")
                    }
                    peer::Event::SignalingState(_) => continue,
                    other => format!("{other:?}"),
                };
                let _ = writeln!(out, "{ms:>4} ms  {}  {line}", names[side]);
            }
            // ANCHOR_END: events
            // The SCTP association has no event of its own at this level:
            // read its state and print its changes.
            let pc = sim.machine::<PeerConnection>(hosts[side]);
            let state = pc.data_channels().map(|d| d.association().state());
            if state != sctp_state[side] {
                sctp_state[side] = state;
                if let Some(s) = state.filter(|s| *s != rtclab::sctp::State::Closed) {
                    let _ = writeln!(out, "{ms:>4} ms  {}  SCTP  association {s:?}", names[side]);
                }
            }
        }
        let open = sim
            .machine::<PeerConnection>(ha)
            .data_channels()
            .and_then(|d| d.channel(hello))
            .is_some_and(|c| c.ready_state() == rtclab::datachannel::ReadyState::Open);
        if open && !sent {
            sent = true;
            // ANCHOR: send
            let a = sim.machine_mut::<PeerConnection>(ha);
            let _ = a.send_text(now, hello, "hello, world");
            // ANCHOR_END: send
        }
        got.is_some()
    });
    // The last datagrams (the message itself) were sent before B's event.
    for rec in sim.drain_capture() {
        if rec.kind == CaptureKind::Sent {
            let who = if rec.host == ha { "A → B" } else { "A ← B" };
            writeln!(
                out,
                "{:>4} ms  {who}  {}",
                rec.time.as_millis(),
                layer(&rec.contents)
            )?;
        }
    }
    let b = sim.machine::<PeerConnection>(hb);
    if let Some((local, remote)) = b.transport().and_then(|t| t.selected_pair()) {
        writeln!(
            out,
            "B's selected pair: {} → {}",
            local.address, remote.address
        )?;
    }
    writeln!(
        out,
        "B received: {}",
        got.as_deref()
            .map_or("nothing".to_string(), |t| format!("{t:?}"))
    )?;
    pcap::save_records(&kept, ha, &keys)?;
    Ok(())
}
