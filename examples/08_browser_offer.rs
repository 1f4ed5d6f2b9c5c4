//! Chapter 8, the browser half: what the Rust peer does with a real
//! browser's offer.
//!
//! The offers are real: Chromium's and Firefox's, captured from
//! `pc.createDataChannel(…); pc.createOffer()` (they are the SDP fixtures
//! in `tests/fixtures/sdp/`). For each, a Rust `PeerConnection` sets it as
//! the remote description, answers, and then sends its first datagrams: the
//! example prints the answer, what the two descriptions agreed, and those
//! datagrams decoded.
//!
//! Nothing here touches the network or the clock of the machine: the same
//! output every run (the certificate's fingerprint aside, which is elided).
//!
//! Run it with `cargo run --example 08_browser_offer`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::machine::Machine;
use rtclab::peer::{self, PeerConnection, SdpType};
use rtclab::sdp::DtlsRole;
use rtclab::stun::{Attribute, Class, Message};

const CHROMIUM: &str = include_str!("../tests/fixtures/sdp/chromium_offer_datachannel_only.sdp");
const FIREFOX: &str = include_str!("../tests/fixtures/sdp/firefox_offer_datachannel_only.sdp");

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Both browsers' offers, answered.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    answer(out, "Chromium", CHROMIUM, 1)?;
    writeln!(out)?;
    answer(out, "Firefox ESR", FIREFOX, 2)
}

fn answer(
    out: &mut dyn Write,
    browser: &str,
    offer: &str,
    seed: u64,
) -> Result<(), Box<dyn Error>> {
    writeln!(out, "== {browser}'s offer ==")?;
    for line in offer.lines() {
        let line = if line.starts_with("a=fingerprint:") {
            "a=fingerprint:sha-256 …"
        } else {
            line
        };
        writeln!(out, "  browser | {line}")?;
    }
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let cert = Certificate::generate(&mut rng, SystemTime::now())?;
    let local: SocketAddr = "127.0.0.1:50000".parse()?;
    // ANCHOR: answer
    let mut pc = PeerConnection::new(
        peer::Config::new(cert, vec![local]),
        StdRng::seed_from_u64(seed),
    );
    pc.set_remote_description(now, SdpType::Offer, offer)?;
    let answer = pc.create_answer()?;
    pc.set_local_description(now, SdpType::Answer, &answer)?;
    // ANCHOR_END: answer
    writeln!(out, "-- the Rust peer's answer")?;
    for line in answer.lines() {
        let line = if line.starts_with("a=fingerprint:") {
            "a=fingerprint:sha-256 …"
        } else {
            line
        };
        writeln!(out, "     rust | {line}")?;
    }
    writeln!(out, "-- what the two descriptions agreed")?;
    if let Some(n) = pc.negotiated() {
        let role = match n.dtls_role {
            DtlsRole::Client => "client (we sent a=setup:active: we send the ClientHello)",
            DtlsRole::Server => "server (the browser sends the ClientHello)",
        };
        writeln!(out, "DTLS role: {role}")?;
        writeln!(out, "BUNDLE group: {:?}", n.bundle)?;
        writeln!(
            out,
            "remote ICE ufrag {:?}; {} candidate(s) in the offer:",
            n.remote_ice_ufrag,
            n.remote_candidates.len()
        )?;
        for c in &n.remote_candidates {
            writeln!(out, "  {c}")?;
        }
    }
    if let Some(dc) = pc.data_channels() {
        writeln!(
            out,
            "largest message we may send: {} bytes (the browser's max-message-size and ours, the smaller)",
            dc.max_message_size()
        )?;
    }
    // ANCHOR: first_datagrams
    // Time passes; the connection gathers, trickles, and starts its checks.
    pc.handle_timeout(now + Duration::from_millis(1));
    writeln!(out, "-- events and the first datagrams we send")?;
    while let Some(e) = pc.poll_event() {
        match e {
            peer::Event::LocalCandidate(c) => {
                writeln!(out, "event: candidate to trickle to the browser: {c}")?
            }
            peer::Event::GatheringComplete => writeln!(out, "event: gathering complete")?,
            other => writeln!(out, "event: {other:?}")?,
        }
    }
    // `--pcap FILE`: the first datagrams of the answer to Chromium.
    let mut capture = pcap::Hand::new(local);
    while let Some(t) = pc.poll_transmit() {
        writeln!(out, "→ {}: {}", t.destination, describe(&t.contents))?;
        capture.sent(now, t.destination, &t.contents);
    }
    // ANCHOR_END: first_datagrams
    if seed == 1 {
        capture.save()?;
    }
    Ok(())
}

/// A STUN check, its attributes named.
fn describe(datagram: &[u8]) -> String {
    let Ok(m) = Message::parse(datagram) else {
        return format!("{} bytes, not STUN", datagram.len());
    };
    let class = match m.class() {
        Class::Request => "Binding request",
        Class::Success => "Binding success",
        Class::Error => "Binding error",
        Class::Indication => "Binding indication",
    };
    let tid = m.transaction_id();
    let attrs: Vec<String> = m
        .attributes()
        .map(|a| match Attribute::parse(a.typ, a.value, &tid) {
            Ok(Attribute::MessageIntegrity(_)) => "MESSAGE-INTEGRITY".to_string(),
            Ok(Attribute::Fingerprint(_)) => "FINGERPRINT".to_string(),
            Ok(Attribute::IceControlled(_)) => "ICE-CONTROLLED".to_string(),
            Ok(Attribute::IceControlling(_)) => "ICE-CONTROLLING".to_string(),
            Ok(a) => format!("{a:?}"),
            Err(_) => format!("attribute 0x{:04x}", a.typ),
        })
        .collect();
    format!("{class}: {}", attrs.join(", "))
}
