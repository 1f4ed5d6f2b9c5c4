//! Chapter 5: the DTLS 1.2 handshake between two rtclab endpoints in one
//! process.
//!
//! Each side makes a self-signed certificate and learns the other's
//! fingerprint (what SDP carries in `a=fingerprint`). The example moves
//! every datagram from one endpoint to the other by hand, printing what it
//! carries, flight by flight; then it prints what was negotiated, the SRTP
//! keys both sides exported, and a line of application data each way.
//!
//! Run it with `cargo run --example 05_dtls`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::dtls::endpoint::{Config, Connected, Endpoint, Event};
use rtclab::dtls::handshake::{HandshakeType, fragments};
use rtclab::dtls::record::{ContentType, records};
use rtclab::machine::{Machine, Receive};

const CLIENT: &str = "192.0.2.1:5000";
const SERVER: &str = "198.51.100.1:4433";

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Runs the handshake and prints it to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let client_addr: SocketAddr = CLIENT.parse()?;
    let server_addr: SocketAddr = SERVER.parse()?;
    let now = Instant::now();
    let mut rng = StdRng::seed_from_u64(5);

    // ANCHOR: setup
    // Each peer makes a throw-away certificate…
    let client_cert = Certificate::generate(&mut rng, SystemTime::now())?;
    let server_cert = Certificate::generate(&mut rng, SystemTime::now())?;
    // …and the signaling hands each one the other's fingerprint (SDP's
    // `a=fingerprint:sha-256 …`). Nothing else vouches for the peer.
    let client_fingerprint = client_cert.fingerprint();
    let server_fingerprint = server_cert.fingerprint();

    let mut client_config = Config::new(client_cert);
    client_config.expected_fingerprint = Some(server_fingerprint);
    let mut server_config = Config::new(server_cert);
    server_config.expected_fingerprint = Some(client_fingerprint);

    // `a=setup:active` makes the DTLS client, `a=setup:passive` the server.
    let mut client = Endpoint::client(client_config, server_addr, StdRng::seed_from_u64(1), now);
    let mut server = Endpoint::server(server_config, StdRng::seed_from_u64(2));
    // ANCHOR_END: setup

    writeln!(out, "== the flights ==")?;
    // `--pcap FILE`: the client's view, with its key log line.
    let mut capture = pcap::Hand::new(client_addr);
    let mut flight = 0;
    let mut last_sender = "";
    let mut connected: Vec<(&str, Box<Connected>)> = Vec::new();
    // ANCHOR: pump
    // Move datagrams until both sides are connected and nothing is left.
    loop {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            if last_sender != "client" {
                flight += 1;
                last_sender = "client";
                writeln!(out, "flight {flight}: client → server")?;
            }
            describe(out, &t.contents)?;
            capture.sent(now, server_addr, &t.contents);
            let d = Receive {
                source: client_addr,
                destination: server_addr,
                contents: &t.contents,
            };
            server.handle_receive(now, d);
            moved = true;
        }
        while let Some(t) = server.poll_transmit() {
            if last_sender != "server" {
                flight += 1;
                last_sender = "server";
                writeln!(out, "flight {flight}: server → client")?;
            }
            describe(out, &t.contents)?;
            capture.received(now, server_addr, &t.contents);
            let d = Receive {
                source: server_addr,
                destination: client_addr,
                contents: &t.contents,
            };
            client.handle_receive(now, d);
            moved = true;
        }
        for (name, e) in [("client", &mut client), ("server", &mut server)] {
            while let Some(event) = e.poll_event() {
                match event {
                    Event::Connected(c) => connected.push((name, c)),
                    other => return Err(format!("{name}: {other:?}").into()),
                }
            }
        }
        if !moved {
            break;
        }
    }
    // ANCHOR_END: pump

    capture.key_log(client.key_log_line());
    writeln!(out)?;
    writeln!(out, "== what both sides agreed on ==")?;
    if connected.len() != 2 {
        return Err("the handshake did not complete".into());
    }
    for (name, c) in &connected {
        writeln!(out, "{name}: connected, {}", c.cipher_suite.name())?;
        let profile = c.srtp_profile.and_then(|p| p.name()).unwrap_or("none");
        writeln!(out, "{name}: SRTP profile {profile}")?;
        writeln!(out, "{name}: the peer's fingerprint {}", c.peer_fingerprint)?;
    }

    writeln!(out)?;
    writeln!(out, "== the SRTP keys (RFC 5764 §4.2) ==")?;
    // ANCHOR: keys
    let (_, c) = &connected[0];
    let (_, s) = &connected[1];
    let material = c.srtp_keying_material.as_deref().unwrap_or_default();
    let same = s.srtp_keying_material.as_deref() == Some(material);
    writeln!(
        out,
        "exporter output, {} bytes: {}",
        material.len(),
        hex(material)
    )?;
    writeln!(out, "the same on both sides: {same}")?;
    if let Some(k) = &c.srtp_keys {
        writeln!(out, "client write key  {}", hex(&k.client_write_key))?;
        writeln!(out, "server write key  {}", hex(&k.server_write_key))?;
        writeln!(out, "client write salt {}", hex(&k.client_write_salt))?;
        writeln!(out, "server write salt {}", hex(&k.server_write_salt))?;
    }
    // ANCHOR_END: keys

    writeln!(out)?;
    writeln!(out, "== application data ==")?;
    client.send(b"hello from the client")?;
    server.send(b"hello from the server")?;
    writeln!(out, "client → server")?;
    while let Some(t) = client.poll_transmit() {
        describe(out, &t.contents)?;
        capture.sent(now, server_addr, &t.contents);
        server.handle_receive(now, receive(client_addr, server_addr, &t.contents));
    }
    writeln!(out, "server → client")?;
    while let Some(t) = server.poll_transmit() {
        describe(out, &t.contents)?;
        capture.received(now, server_addr, &t.contents);
        client.handle_receive(now, receive(server_addr, client_addr, &t.contents));
    }
    for (name, e) in [("client", &mut client), ("server", &mut server)] {
        while let Some(event) = e.poll_event() {
            if let Event::ApplicationData(d) = event {
                writeln!(out, "{name} received {:?}", String::from_utf8_lossy(&d))?;
            }
        }
    }
    capture.save()?;
    Ok(())
}

fn receive(source: SocketAddr, destination: SocketAddr, contents: &[u8]) -> Receive<'_> {
    Receive {
        source,
        destination,
        contents,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// One line per record of a datagram: its content type, epoch and, for the
/// plaintext handshake records of epoch 0, the messages inside.
fn describe(out: &mut dyn Write, datagram: &[u8]) -> std::io::Result<()> {
    writeln!(out, "  datagram")?;
    for r in records(datagram) {
        let Ok(r) = r else {
            writeln!(out, "    (a malformed record)")?;
            break;
        };
        let epoch = r.header.epoch;
        match r.header.content_type {
            ContentType::Handshake if epoch == 0 => {
                for f in fragments(r.fragment).flatten() {
                    writeln!(
                        out,
                        "    handshake  epoch 0  {} (message_seq {})",
                        name(f.header.msg_type),
                        f.header.message_seq
                    )?;
                }
            }
            ContentType::Handshake => {
                writeln!(out, "    handshake  epoch {epoch}  encrypted: Finished")?;
            }
            ContentType::ChangeCipherSpec => {
                writeln!(out, "    change_cipher_spec  epoch {epoch}")?;
            }
            ContentType::ApplicationData => {
                writeln!(out, "    application_data  epoch {epoch}  encrypted")?;
            }
            ContentType::Alert => writeln!(out, "    alert  epoch {epoch}")?,
            ContentType::Other(t) => writeln!(out, "    content type {t}")?,
        }
    }
    Ok(())
}

fn name(t: HandshakeType) -> String {
    match t {
        HandshakeType::ClientHello => "ClientHello".into(),
        HandshakeType::HelloVerifyRequest => "HelloVerifyRequest (cookie)".into(),
        HandshakeType::ServerHello => "ServerHello".into(),
        HandshakeType::Certificate => "Certificate".into(),
        HandshakeType::ServerKeyExchange => "ServerKeyExchange (ECDHE share, signed)".into(),
        HandshakeType::CertificateRequest => "CertificateRequest".into(),
        HandshakeType::ServerHelloDone => "ServerHelloDone".into(),
        HandshakeType::ClientKeyExchange => "ClientKeyExchange (ECDHE share)".into(),
        HandshakeType::CertificateVerify => "CertificateVerify (signature)".into(),
        other => format!("{other:?}"),
    }
}
