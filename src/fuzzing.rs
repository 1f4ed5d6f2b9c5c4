//! Fuzz harnesses: the functions the cargo-fuzz targets in `fuzz/` call, kept
//! in the library so that `cargo test` replays the checked-in corpus through
//! exactly the same code (tests/fuzz_corpus.rs).
//!
//! Each harness does everything a receiver might do with untrusted bytes and
//! checks the invariants that must hold; it panics only on a real bug.

pub mod rtp;

use std::net::SocketAddr;

use rand::{SeedableRng, rngs::StdRng};
use std::time::Instant;

use crate::machine::{Machine, Receive};
use crate::stun::{
    self, Attribute, BindingServer, Client, IntegrityKey, Message, server::MAX_RESPONSE_LEN,
};

/// The harness of the `stun_message` target: decode, read every attribute,
/// verify, re-encode what decoded, and feed a Binding server and a client.
pub fn stun_message(data: &[u8]) {
    let _ = crate::stun::is_stun(data);
    if let Ok(m) = Message::parse(data) {
        let tid = m.transaction_id();
        let _ = format!("{m:?}");
        let _ = m.validate();
        let _ = m.verify_integrity(&IntegrityKey::short_term("fuzz"));
        let _ = m.verify_fingerprint();
        let _ = m.unknown_comprehension_required(|_| false).count();
        for a in m.attributes() {
            assert!(a.offset + 4 + a.value.len() <= data.len());
            if let Ok(attr) = Attribute::parse(a.typ, a.value, &tid) {
                // What decoded re-encodes to the same value, except for
                // attributes that normalise (the reserved bits of
                // ERROR-CODE, CHANGE-REQUEST and RESPONSE-PORT).
                let mut v = Vec::new();
                attr.emit_value(&tid, &mut v);
                if let Ok(again) = Attribute::parse(a.typ, &v, &tid) {
                    assert_eq!(again, attr, "attribute 0x{:04x} does not round-trip", a.typ);
                } else {
                    panic!("re-encoded attribute 0x{:04x} does not decode", a.typ);
                }
                if let Attribute::PasswordAlgorithms(p) = attr {
                    let _ = p.iter().count();
                }
            }
        }
    }
    let primary: SocketAddr = ([192, 0, 2, 1], 3478).into();
    let mut cfg = stun::server::Config::new(primary);
    cfg.alternate = Some(([192, 0, 2, 2], 3479).into());
    if let Ok(mut server) = BindingServer::new(cfg) {
        let now = Instant::now();
        server.handle_receive(
            now,
            Receive {
                source: ([203, 0, 113, 1], 5000).into(),
                destination: primary,
                contents: data,
            },
        );
        while let Some(t) = server.poll_transmit() {
            assert!(t.contents.len() <= MAX_RESPONSE_LEN, "amplification");
            // Without SOFTWARE (the default), the largest answer is a 420
            // listing 16 attributes with FINGERPRINT: 92 bytes.
            assert!(
                t.contents.len() <= 96,
                "{} bytes answered",
                t.contents.len()
            );
            assert!(Message::parse(&t.contents).is_ok(), "server sent garbage");
        }
    }
    let mut client = Client::new(stun::client::Config::default());
    client.handle_response(
        Instant::now(),
        Receive {
            source: primary,
            destination: ([203, 0, 113, 1], 5000).into(),
            contents: data,
        },
    );
    assert!(client.poll_event().is_none());
}

/// The harness of the `srtp_unprotect` target. The first byte picks the
/// profile; the rest is a packet. Untrusted bytes go through SRTP and SRTCP
/// unprotect (which must refuse them cleanly, leaving no state behind unless
/// they authenticate); then the same bytes, taken as a plain RTP or RTCP
/// packet, are protected and must unprotect back to themselves.
pub fn srtp_unprotect(data: &[u8]) {
    use crate::srtp::{Config, ProtectionProfile, SrtpContext};

    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let profile = ProtectionProfile::ALL[usize::from(selector) % ProtectionProfile::ALL.len()];
    let key = &[0x5a; 32][..profile.master_key_len()];
    let salt = &[0xa5; 14][..profile.master_salt_len()];
    let context = || {
        SrtpContext::new(profile, key, salt, Config::default())
            .unwrap_or_else(|e| panic!("valid lengths: {e}"))
    };

    let mut rx = context();
    let mut buf = packet.to_vec();
    if rx.unprotect_rtp(&mut buf).is_err() {
        assert_eq!(rx.stream_count(), 0, "a refused SRTP packet left state");
    }
    let mut rx = context();
    let mut buf = packet.to_vec();
    if rx.unprotect_rtcp(&mut buf).is_err() {
        assert_eq!(rx.stream_count(), 0, "a refused SRTCP packet left state");
    }

    let (mut tx, mut rx) = (context(), context());
    let mut buf = packet.to_vec();
    if tx.protect_rtp(&mut buf).is_ok() {
        assert_eq!(buf.len(), packet.len() + profile.rtp_overhead());
        rx.unprotect_rtp(&mut buf)
            .unwrap_or_else(|e| panic!("SRTP round trip: {e}"));
        assert_eq!(buf, packet, "SRTP round trip changed the packet");
    }
    let mut buf = packet.to_vec();
    if tx.protect_rtcp(&mut buf).is_ok() {
        assert_eq!(buf.len(), packet.len() + profile.rtcp_overhead());
        rx.unprotect_rtcp(&mut buf)
            .unwrap_or_else(|e| panic!("SRTCP round trip: {e}"));
        assert_eq!(buf, packet, "SRTCP round trip changed the packet");
    }
}

// ---------------------------------------------------------------------------
// DTLS.

use std::sync::OnceLock;
use std::time::Duration;

use crate::dtls::cert::Certificate;
use crate::dtls::endpoint::{Config, Endpoint, Event};
use crate::dtls::handshake::{Alert, Handshake, HandshakeType, Reassembler, fragments};
use crate::dtls::record::{CipherSuite, ContentType, RecordLayer, RecordProtection, records};

/// The harness of the `dtls_record` target: frame a datagram into records,
/// re-encode each, and open them with a record layer that has epoch-1 keys
/// of every suite (tampered, replayed and future-epoch records must be
/// dropped, never panic).
pub fn dtls_record(data: &[u8]) {
    let mut framed = 0usize;
    for r in records(data) {
        let Ok(r) = r else { break };
        // A record that framed re-encodes to the same bytes.
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out.len(), 13 + r.fragment.len());
        assert_eq!(out[13..], *r.fragment);
        framed += out.len();
    }
    assert!(framed <= data.len());
    for suite in CipherSuite::ALL {
        let key = vec![7u8; suite.key_len()];
        let iv = vec![9u8; suite.fixed_iv_len()];
        let (Ok(read), Ok(write)) = (
            RecordProtection::new(suite, &key, &iv),
            RecordProtection::new(suite, &key, &iv),
        ) else {
            panic!("fixed keys are valid for {suite:?}");
        };
        let mut layer = RecordLayer::new();
        let mut out = Vec::new();
        layer.receive(data, &mut out);
        layer.install_read(read);
        layer.install_write(write);
        layer.receive(data, &mut out);
        layer.take_unlocked(&mut out);
        for p in &out {
            assert!(p.fragment.len() <= crate::dtls::record::MAX_CIPHERTEXT_LEN);
        }
        // Our own sealing of the fuzz bytes opens again, once.
        let plain = &data[..data.len().min(crate::dtls::record::MAX_PLAINTEXT_LEN)];
        let mut sealed = Vec::new();
        if layer
            .seal(ContentType::ApplicationData, plain, &mut sealed)
            .is_ok()
        {
            let mut opened = Vec::new();
            layer.receive(&sealed, &mut opened);
            layer.receive(&sealed, &mut opened); // the replay is dropped
            let ours: Vec<_> = opened.iter().filter(|p| p.epoch == 1).collect();
            assert!(ours.len() <= 1, "a replayed record was accepted");
            if let Some(p) = ours.first() {
                assert_eq!(p.fragment, plain);
            }
        }
    }
}

/// The harness of the `dtls_handshake` target: the bytes as a handshake
/// record payload (fragments into the bounded reassembler, every message
/// that comes out parsed), then as one message body whose type is the first
/// byte. Whatever parses re-encodes to something that parses to the same
/// value.
pub fn dtls_handshake(data: &[u8]) {
    let mut reassembler = Reassembler::new();
    for f in fragments(data) {
        let Ok(f) = f else { break };
        let _ = reassembler.insert(&f);
        while let Some(m) = reassembler.pop() {
            if let Ok(h) = Handshake::parse(m.msg_type, &m.body) {
                round_trip(&h);
            }
        }
    }
    if let Some((&t, body)) = data.split_first() {
        if let Ok(h) = Handshake::parse(HandshakeType::from_u8(t), body) {
            round_trip(&h);
        }
        let _ = Alert::parse(body);
    }
}

fn round_trip(h: &Handshake) {
    let mut body = Vec::new();
    h.emit_body(&mut body);
    match Handshake::parse(h.msg_type(), &body) {
        Ok(again) => assert_eq!(&again, h, "handshake message does not round-trip"),
        Err(e) => panic!("re-encoded {:?} does not parse: {e}", h.msg_type()),
    }
}

/// Addresses and seeds the `dtls_endpoint` harness and its seed corpus
/// share: with them, the server's cookie and the client's random are the
/// same in the harness as in the captured handshake, so captured flights
/// get deep into the state machines.
pub const DTLS_FUZZ_CLIENT: ([u8; 4], u16) = ([192, 0, 2, 1], 5000);
/// See [`DTLS_FUZZ_CLIENT`].
pub const DTLS_FUZZ_SERVER: ([u8; 4], u16) = ([192, 0, 2, 2], 4433);
/// The client's RNG seed in the `dtls_endpoint` harness and its seeds.
pub const DTLS_FUZZ_CLIENT_SEED: u64 = 1;
/// The server's RNG seed in the `dtls_endpoint` harness and its seeds.
pub const DTLS_FUZZ_SERVER_SEED: u64 = 2;
/// Most datagrams one input is cut into.
const DTLS_FUZZ_MAX_DATAGRAMS: usize = 32;

/// One certificate per process (generating one per input would make the
/// fuzzer measure ECDSA key generation).
fn fuzz_certificate() -> Option<Certificate> {
    static PEM: OnceLock<Option<(String, String)>> = OnceLock::new();
    let (c, k) = PEM
        .get_or_init(|| {
            let mut rng = StdRng::seed_from_u64(3);
            let c = Certificate::generate(&mut rng, std::time::SystemTime::now()).ok()?;
            Some((c.certificate_pem(), c.private_key_pem()))
        })
        .as_ref()?;
    Certificate::from_pem(c, k).ok()
}

fn fuzz_config(mtu: usize) -> Option<Config> {
    let mut config = Config::new(fuzz_certificate()?);
    config.mtu = mtu;
    Some(config)
}

/// Frames datagrams for the `dtls_endpoint` target: a role byte (bit 0:
/// 0 = feed a server, 1 = feed a client), then each datagram as a 2-byte
/// big-endian length and its bytes.
pub fn dtls_endpoint_input(client_role: bool, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![u8::from(client_role)];
    for d in datagrams {
        out.extend_from_slice(&(d.len().min(u16::MAX as usize) as u16).to_be_bytes());
        out.extend_from_slice(&d[..d.len().min(u16::MAX as usize)]);
    }
    out
}

/// The harness of the `dtls_endpoint` target: a whole endpoint's receive
/// path. The input (framed as [`dtls_endpoint_input`] writes it) is a
/// sequence of datagrams from the peer, fed to a server or to a client (whose
/// ClientHello went out first), with a timer tick between datagrams. Every
/// datagram the endpoint sends must fit its MTU, and the endpoint must
/// neither panic nor report a connection it cannot have.
pub fn dtls_endpoint(data: &[u8]) {
    let Some((&role, rest)) = data.split_first() else {
        return;
    };
    let client_addr = SocketAddr::from(DTLS_FUZZ_CLIENT);
    let server_addr = SocketAddr::from(DTLS_FUZZ_SERVER);
    let now = Instant::now();
    let mtu = 1200;
    let Some(config) = fuzz_config(mtu) else {
        return;
    };
    let client_role = role & 1 == 1;
    let mut endpoint = if client_role {
        Endpoint::client(
            config,
            server_addr,
            StdRng::seed_from_u64(DTLS_FUZZ_CLIENT_SEED),
            now,
        )
    } else {
        Endpoint::server(config, StdRng::seed_from_u64(DTLS_FUZZ_SERVER_SEED))
    };
    let (from, to) = if client_role {
        (server_addr, client_addr)
    } else {
        (client_addr, server_addr)
    };
    feed_endpoint(&mut endpoint, role, rest, from, to, mtu, now);
    // Sending never panics, whatever the state.
    let _ = endpoint.send(b"x");
    endpoint.close();
    while endpoint.poll_transmit().is_some() {}
}

/// The datagram loop the `dtls_endpoint` and `dtls13_endpoint` harnesses
/// share: feeds the framed datagrams in `rest` from `from`, ticking timers
/// when `role` bit 1 says so, checking the MTU and data bounds.
fn feed_endpoint<M: Machine<Event = Event>>(
    endpoint: &mut M,
    role: u8,
    mut rest: &[u8],
    from: SocketAddr,
    to: SocketAddr,
    mtu: usize,
    mut now: Instant,
) {
    let mut n = 0;
    loop {
        while let Some(t) = endpoint.poll_transmit() {
            assert!(t.contents.len() <= mtu, "datagram above the MTU");
        }
        while let Some(e) = endpoint.poll_event() {
            if let Event::ApplicationData(d) = e {
                assert!(d.len() <= crate::dtls::record::MAX_CIPHERTEXT_LEN);
            }
        }
        if rest.len() < 2 || n == DTLS_FUZZ_MAX_DATAGRAMS {
            break;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + len).min(rest.len());
        let datagram = &rest[2..end];
        rest = &rest[end..];
        n += 1;
        endpoint.handle_receive(
            now,
            Receive {
                source: from,
                destination: to,
                contents: datagram,
            },
        );
        // Now and then a timer fires between datagrams (retransmissions).
        if role & 2 == 2 {
            now += Duration::from_millis(300);
            endpoint.handle_timeout(now);
        }
    }
}

/// The harness of the `dtls13_endpoint` target: as [`dtls_endpoint`]
/// (same framing, [`dtls_endpoint_input`]), on the version-negotiating
/// endpoint with DTLS 1.3 on: a server choosing its version from the
/// ClientHello, or a client whose 1.3 hello went out first and that may
/// fall back to 1.2.
pub fn dtls13_endpoint(data: &[u8]) {
    use crate::dtls::endpoint::Version;
    use crate::dtls::endpoint_auto::AutoEndpoint;
    let Some((&role, rest)) = data.split_first() else {
        return;
    };
    let client_addr = SocketAddr::from(DTLS_FUZZ_CLIENT);
    let server_addr = SocketAddr::from(DTLS_FUZZ_SERVER);
    let now = Instant::now();
    let mtu = 1200;
    let Some(mut config) = fuzz_config(mtu) else {
        return;
    };
    config.max_version = Version::Dtls13;
    // X25519 alone: ML-KEM key generation per input would dominate.
    config.dtls13_key_shares = vec![crate::dtls::handshake::NamedGroup::X25519];
    let client_role = role & 1 == 1;
    let mut endpoint = if client_role {
        AutoEndpoint::client(
            config,
            server_addr,
            StdRng::seed_from_u64(DTLS_FUZZ_CLIENT_SEED),
            now,
        )
    } else {
        AutoEndpoint::server(config, StdRng::seed_from_u64(DTLS_FUZZ_SERVER_SEED))
    };
    let (from, to) = if client_role {
        (server_addr, client_addr)
    } else {
        (client_addr, server_addr)
    };
    feed_endpoint(&mut endpoint, role, rest, from, to, mtu, now);
    let _ = endpoint.send(b"x");
    endpoint.close();
    while endpoint.poll_transmit().is_some() {}
}

/// Runs one in-process handshake with the `dtls_endpoint` harness's
/// addresses and seeds, and returns seed inputs for the three DTLS targets:
/// `(target, input)` pairs made of the real datagrams of every flight (and
/// their records and handshake payloads).
pub fn dtls_seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let client_addr = SocketAddr::from(DTLS_FUZZ_CLIENT);
    let server_addr = SocketAddr::from(DTLS_FUZZ_SERVER);
    let now = Instant::now();
    let (Some(cc), Some(sc)) = (fuzz_config(1200), fuzz_config(1200)) else {
        return Vec::new();
    };
    let mut client = Endpoint::client(
        cc,
        server_addr,
        StdRng::seed_from_u64(DTLS_FUZZ_CLIENT_SEED),
        now,
    );
    let mut server = Endpoint::server(sc, StdRng::seed_from_u64(DTLS_FUZZ_SERVER_SEED));
    let mut to_server: Vec<Vec<u8>> = Vec::new();
    let mut to_client: Vec<Vec<u8>> = Vec::new();
    for _ in 0..16 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            moved = true;
            server.handle_receive(
                now,
                Receive {
                    source: client_addr,
                    destination: server_addr,
                    contents: &t.contents,
                },
            );
            to_server.push(t.contents);
        }
        while let Some(t) = server.poll_transmit() {
            moved = true;
            client.handle_receive(
                now,
                Receive {
                    source: server_addr,
                    destination: client_addr,
                    contents: &t.contents,
                },
            );
            to_client.push(t.contents);
        }
        if client.is_connected() && server.is_connected() && !moved {
            break;
        }
        if client.is_connected() && server.is_connected() {
            let _ = client.send(b"hello from the client");
            let _ = server.send(b"hello from the server");
        }
    }
    let mut out = Vec::new();
    for d in to_server.iter().chain(&to_client) {
        out.push(("dtls_record", d.clone()));
        for r in records(d).flatten() {
            if r.header.content_type == ContentType::Handshake && r.header.epoch == 0 {
                out.push(("dtls_handshake", r.fragment.to_vec()));
                for f in fragments(r.fragment).flatten() {
                    let mut m = vec![f.header.msg_type.to_u8()];
                    m.extend_from_slice(f.body);
                    out.push(("dtls_handshake", m));
                }
            }
        }
    }
    out.push(("dtls_endpoint", dtls_endpoint_input(false, &to_server)));
    out.push(("dtls_endpoint", dtls_endpoint_input(true, &to_client)));
    let mut with_timers = dtls_endpoint_input(true, &to_client);
    with_timers[0] |= 2;
    out.push(("dtls_endpoint", with_timers));
    out
}

/// The harness of the `ice_candidate` target: parse a `candidate:` line;
/// what parses is written back and parses to the same value, byte for byte.
pub fn ice_candidate(data: &[u8]) {
    if let Ok(c) = crate::ice::Candidate::parse_bytes(data) {
        let text = c.to_string();
        let back = crate::ice::Candidate::parse(&text).expect("our own output parses");
        assert_eq!(back, c);
        assert_eq!(back.to_string(), text);
        let _ = (
            c.priority,
            c.socket_addr(),
            c.generation(),
            c.network_cost(),
        );
    }
}

/// The harness of the `ice_agent` target: an agent with a selected-looking
/// setup receives the input as a datagram (as is, and with a STUN magic
/// cookie forced in so the STUN paths are reached) and runs its timers; it
/// must not panic and its state stays within the caps.
pub fn ice_agent(data: &[u8]) {
    use rand::SeedableRng;
    let now = Instant::now();
    let local: SocketAddr = "10.0.0.1:1000".parse().expect("literal");
    let peer: SocketAddr = "10.0.0.2:2000".parse().expect("literal");
    let mut agent = crate::ice::Agent::new(crate::ice::Config::default(), StdRng::seed_from_u64(1));
    let _ = agent.add_local_host(now, local);
    agent.set_remote_credentials(now, "fuzz", "fuzzfuzzfuzzfuzzfuzzfuzz");
    let mut forced = data.to_vec();
    if forced.len() >= 8 {
        forced[0] &= 0x3F;
        forced[4..8].copy_from_slice(&crate::stun::MAGIC_COOKIE.to_be_bytes());
    }
    for d in [data, &forced[..]] {
        agent.handle_receive(
            now,
            Receive {
                source: peer,
                destination: local,
                contents: d,
            },
        );
        while agent.poll_transmit().is_some() {}
        while agent.poll_event().is_some() {}
    }
    agent.handle_timeout(now + std::time::Duration::from_secs(1));
    while agent.poll_transmit().is_some() {}
    assert!(agent.remote_candidates().len() <= 64);
    assert!(agent.pairs().len() <= 100);
}

/// The harness of the `turn_stream` target: TURN over TCP. The first byte
/// sets the read size (1 to 256 bytes); the rest is the stream, pushed into
/// a [`turn::Framer`](crate::turn::Framer) in those reads. Invariants: the
/// framer never holds more than one message and the last read, every
/// message it cuts is whole by its own header, and each goes into a TURN
/// server with on-demand relay ports (its binds answered, every other one
/// refused) whose TCP answers go only to the sender.
pub fn turn_stream(data: &[u8]) {
    use crate::turn::{self, Framer, stream::MAX_MESSAGE};
    use rand::SeedableRng;

    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let read = usize::from(size) + 1;
    let listen: SocketAddr = ([192, 0, 2, 1], 3478).into();
    let sender: SocketAddr = ([203, 0, 113, 1], 5000).into();
    let mut config = turn::server::Config::new(listen, Vec::new(), "fuzz");
    config.relay_ports = Some(turn::RelayPorts {
        ip: listen.ip(),
        min: 50000,
        max: 50003,
    });
    config.users.push(("u".into(), "p".into()));
    let now = Instant::now();
    let mut server = turn::Server::new(config, now, StdRng::seed_from_u64(0));
    let mut framer = Framer::new();
    let mut ok = true;
    for chunk in stream.chunks(read) {
        if framer.push(chunk).is_err() {
            break;
        }
        loop {
            let m = match framer.next_message() {
                Ok(Some(m)) => m.to_vec(),
                Ok(None) => break,
                Err(_) => {
                    ok = false;
                    break;
                }
            };
            let length = usize::from(u16::from_be_bytes([m[2], m[3]]));
            match m[0] >> 6 {
                0 => assert_eq!(m.len(), 20 + length),
                1 => assert_eq!(m.len(), (4 + length).div_ceil(4) * 4),
                _ => panic!("a framed message starts with {:#04x}", m[0]),
            }
            server.handle_stream(
                now,
                Receive {
                    source: sender,
                    destination: listen,
                    contents: &m,
                },
            );
            let mut flip = false;
            while let Some(e) = server.poll_event() {
                if let turn::server::Event::BindRelay(a) = e {
                    flip = !flip;
                    server.relay_bound(now, a, flip);
                }
            }
            while let Some(t) = server.poll_stream_transmit() {
                assert_eq!(t.destination, sender, "a TCP answer to a stranger");
            }
            while server.poll_transmit().is_some() {}
        }
        assert!(framer.buffered() <= MAX_MESSAGE + chunk.len());
        if !ok {
            break;
        }
    }
    server.stream_closed(sender);
    assert_eq!(server.allocations(), 0);
}

/// The harness of the `turn_message` target: TURN attributes and ChannelData
/// from untrusted bytes, then the same bytes into a TURN server (on its
/// listening and its relay address) and a client waiting for its allocation.
/// Invariants: what decodes re-encodes to the same value, and the server
/// answers only the sender, in at most 96 bytes, and never relays for a
/// stranger; a server on a wildcard address answers as one on the address
/// asked, from that address. The same bytes also go through the peer
/// ranges' parser and the password-guessing table
/// (`turn_peer_ranges_and_throttle`).
pub fn turn_message(data: &[u8]) {
    use crate::turn::{self, ChannelData, TurnAttribute};
    use rand::SeedableRng;

    if let Ok(m) = Message::parse(data) {
        let tid = m.transaction_id();
        for a in m.attributes() {
            if let Ok(t) = TurnAttribute::parse(a.typ, a.value, &tid) {
                let mut v = Vec::new();
                t.emit_value(&tid, &mut v);
                assert_eq!(
                    TurnAttribute::parse(a.typ, &v, &tid),
                    Ok(t),
                    "TURN attribute 0x{:04x} does not round-trip",
                    a.typ
                );
            }
        }
        let _ = turn::attributes::peer_addresses(&m);
    }
    for cd in [ChannelData::parse(data), ChannelData::parse_rfc5766(data)]
        .into_iter()
        .flatten()
    {
        assert!(cd.data.len() + 4 <= data.len());
        let mut out = Vec::new();
        cd.emit(&mut out).expect("a decoded channel encodes");
        assert_eq!(ChannelData::parse_rfc5766(&out), Ok(cd));
    }
    if let Ok((cd, used)) = ChannelData::parse_stream(data) {
        assert!(used <= data.len() && cd.data.len() + 4 <= used);
    }

    let listen: SocketAddr = ([192, 0, 2, 1], 3478).into();
    let relay: SocketAddr = ([192, 0, 2, 1], 50000).into();
    let sender: SocketAddr = ([203, 0, 113, 1], 5000).into();
    let mut config = turn::server::Config::new(listen, vec![relay], "fuzz");
    config.users.push(("u".into(), "p".into()));
    let now = Instant::now();
    let mut server = turn::Server::new(config, now, StdRng::seed_from_u64(0));
    for to in [listen, relay] {
        server.handle_receive(
            now,
            Receive {
                source: sender,
                destination: to,
                contents: data,
            },
        );
    }
    let mut answers = 0;
    while let Some(t) = server.poll_transmit() {
        answers += 1;
        // No allocation exists and no credentials can match: only answers
        // (errors) to the sender from the listening address.
        assert_eq!(t.destination, sender, "the server sent to a stranger");
        assert_eq!(
            t.source,
            Some(listen),
            "the server relayed without an allocation"
        );
        assert!(Message::parse(&t.contents).is_ok(), "server sent garbage");
        // No amplification: whatever the request, a stranger's answer is
        // small (a 401/438 with REALM and NONCE, or a 420 listing 16
        // attributes, is the largest).
        assert!(
            t.contents.len() <= 96,
            "{} bytes to an unauthenticated sender",
            t.contents.len()
        );
    }
    assert_eq!(server.allocations(), 0);
    turn_peer_ranges_and_throttle(data);

    // The same server listening on 0.0.0.0:3478, given the bytes as the
    // runtime hands them: sent to one of the host's addresses (`listen`).
    // It answers as many, from that address (RFC 8489 §6.3.1.2), not from
    // the wildcard nor as if a peer had sent them to a relay.
    let mut config = turn::server::Config::new(([0, 0, 0, 0], 3478).into(), vec![relay], "fuzz");
    config.users.push(("u".into(), "p".into()));
    let mut wildcard = turn::Server::new(config, now, StdRng::seed_from_u64(0));
    wildcard.handle_receive(
        now,
        Receive {
            source: sender,
            destination: listen,
            contents: data,
        },
    );
    let mut wildcard_answers = 0;
    while let Some(t) = wildcard.poll_transmit() {
        wildcard_answers += 1;
        assert_eq!(
            (t.source, t.destination),
            (Some(listen), sender),
            "a wildcard server answered from elsewhere than the address asked"
        );
    }
    assert_eq!(
        wildcard_answers, answers,
        "a wildcard server answered differently"
    );

    let mut client = turn::Client::new(
        turn::client::Config::new(listen, "u", "p"),
        StdRng::seed_from_u64(0),
    );
    let _ = client.allocate(now);
    client.handle_receive(
        now,
        Receive {
            source: listen,
            destination: sender,
            contents: data,
        },
    );
    while client.poll_event().is_some() {}
}

/// The TURN server's peer ranges and password-guessing table, from the
/// same bytes: a range that parses prints as text that parses back to it
/// and contains its ends; and failures read as (source, milliseconds)
/// pairs never grow the table past its cap nor block a source before its
/// threshold.
fn turn_peer_ranges_and_throttle(data: &[u8]) {
    use crate::turn::IpRange;
    use crate::turn::throttle::{AuthThrottle, FAILURES_ALLOWED};

    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(r) = text.parse::<IpRange>()
    {
        assert_eq!(r.to_string().parse::<IpRange>(), Ok(r), "{text:?}");
        assert!(r.contains(r.first()) && r.contains(r.last()));
    }
    let t0 = Instant::now();
    let mut table = AuthThrottle::new(4);
    let mut counts = [0u32; 16];
    let mut at = 0u64;
    for pair in data.chunks_exact(2) {
        let src = usize::from(pair[0] & 15);
        at += u64::from(pair[1]) * 40;
        let ip = std::net::IpAddr::from([10, 0, 0, src as u8]);
        let started = table.failure(t0 + std::time::Duration::from_millis(at), ip);
        counts[src] += 1;
        assert!(!started || counts[src] >= FAILURES_ALLOWED);
        assert!(table.len() <= 4);
    }
}

// ---- peer::Transport ---------------------------------------------------------

/// Our address in the `peer_transport` harness.
pub const PEER_FUZZ_LOCAL: ([u8; 4], u16) = ([10, 0, 0, 1], 1000);
/// The remote candidate's address in the `peer_transport` harness.
pub const PEER_FUZZ_REMOTE: ([u8; 4], u16) = ([10, 0, 0, 2], 2000);
/// The remote ICE password the harness's transport checks against.
pub const PEER_FUZZ_REMOTE_PWD: &str = "fuzzfuzzfuzzfuzzfuzzfuzz";
/// The seed of the harness's transport (its ufrag and password come from it).
pub const PEER_FUZZ_SEED: u64 = 7;
/// The SRTP keying material installed when the mode asks for keys.
pub const PEER_FUZZ_KEY_BYTE: u8 = 0x42;

/// Frames input for the `peer_transport` target: a mode byte (bit 0: our
/// DTLS role is client; bits 1–2: SRTP profile index; bit 3: install SRTP
/// keys first; bit 4: a timer tick between datagrams; bit 5: leave the
/// remote candidate's pair unchecked, so that its DTLS is only held and its
/// SRTP dropped), then per datagram a
/// flags byte (bit 0: from a stranger; bit 1: force a STUN magic cookie), a
/// 2-byte big-endian length and the bytes.
pub fn peer_transport_input(mode: u8, datagrams: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut out = vec![mode];
    for (flags, d) in datagrams {
        let len = d.len().min(u16::MAX as usize);
        out.push(*flags);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&d[..len]);
    }
    out
}

/// The transport the `peer_transport` harness feeds: controlled, one host
/// candidate, the remote's credentials, candidate and a fingerprint known,
/// so that every layer is live (SRTP keys only if the mode asks).
fn peer_fuzz_transport(
    mode: u8,
    now: Instant,
) -> Option<(crate::peer::Transport, crate::srtp::ProtectionProfile)> {
    use crate::peer::{DtlsRole, IceRole, Transport, transport::Config as TransportConfig};
    let certificate = fuzz_certificate()?;
    let fingerprint = certificate.fingerprint();
    let mut config = TransportConfig::new(IceRole::Controlled, certificate);
    config.host_candidates = vec![SocketAddr::from(PEER_FUZZ_LOCAL)];
    config.remote_credentials = Some(crate::ice::Credentials {
        ufrag: "fuzz".into(),
        pwd: PEER_FUZZ_REMOTE_PWD.into(),
    });
    let role = if mode & 1 == 1 {
        DtlsRole::Client
    } else {
        DtlsRole::Server
    };
    config.dtls_role = Some(role);
    config.remote_fingerprints = vec![fingerprint];
    let mut t = Transport::new(config, now, StdRng::seed_from_u64(PEER_FUZZ_SEED)).ok()?;
    let remote = SocketAddr::from(PEER_FUZZ_REMOTE);
    let c = crate::ice::Candidate::parse(&format!(
        "candidate:1 1 udp 2130706431 {} {} typ host",
        remote.ip(),
        remote.port()
    ))
    .ok()?;
    t.add_remote_candidate(now, c).ok()?;
    if mode & 32 == 0 {
        answer_first_check(
            &mut t,
            now,
            remote,
            SocketAddr::from(PEER_FUZZ_LOCAL),
            PEER_FUZZ_REMOTE_PWD,
        )?;
    }
    let profile = crate::srtp::ProtectionProfile::ALL[usize::from(mode >> 1) & 3];
    if mode & 8 != 0 {
        let material = vec![PEER_FUZZ_KEY_BYTE; profile.keying_material_len()];
        t.install_srtp(role, profile, &material).ok()?;
    }
    Some((t, profile))
}

/// Plays the peer at `remote` for one ICE check: runs `t`'s timers until it
/// sends a Binding request to `remote`, and answers it with a success
/// response signed with `remote_pwd` whose XOR-MAPPED-ADDRESS is `mapped`,
/// so that the pair is valid (RFC 8445 §7.2.5.3) and `remote` may send DTLS
/// and SRTP. Returns the instant it got to; `None` if no check went out.
pub fn answer_first_check(
    t: &mut crate::peer::Transport,
    now: Instant,
    remote: SocketAddr,
    mapped: SocketAddr,
    remote_pwd: &str,
) -> Option<Instant> {
    use crate::stun::{Class, IntegrityKey, Message, MessageEncoder, MessageType};
    let mut at = now;
    for _ in 0..200 {
        while let Some(tx) = t.poll_transmit() {
            let Ok(m) = Message::parse(&tx.contents) else {
                continue;
            };
            if tx.destination != remote || m.class() != Class::Request {
                continue;
            }
            let mut out = Vec::new();
            MessageEncoder::new(&mut out, MessageType::BINDING_SUCCESS, m.transaction_id())
                .attribute(&Attribute::XorMappedAddress(mapped))
                .message_integrity(&IntegrityKey::short_term(remote_pwd))
                .fingerprint()
                .finish()
                .ok()?;
            t.handle_receive(
                at,
                Receive {
                    source: remote,
                    destination: mapped,
                    contents: &out,
                },
            );
            return Some(at);
        }
        at = t
            .poll_timeout()
            .unwrap_or(at + Duration::from_millis(5))
            .max(at);
        t.handle_timeout(at);
    }
    None
}

/// The harness of the `peer_transport` target: a whole transport's receive
/// path (RFC 7983 demultiplexing into ICE, DTLS and SRTP) with arbitrary
/// datagrams from its remote candidate and from a stranger, as framed by
/// [`peer_transport_input`]. Invariants: no panic; no connection it cannot
/// have; decrypted media never longer than what arrived; DTLS or SRTP from
/// an address that is not a valid pair's (a stranger's, or the remote
/// candidate's before its check) never reaches a layer; after `close` no
/// timer is left.
pub fn peer_transport(data: &[u8]) {
    use crate::peer::transport::Event as TransportEvent;
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let mut now = Instant::now();
    let Some((mut t, _)) = peer_fuzz_transport(mode, now) else {
        return;
    };
    let local = SocketAddr::from(PEER_FUZZ_LOCAL);
    let remote = SocketAddr::from(PEER_FUZZ_REMOTE);
    let stranger = SocketAddr::from(([203, 0, 113, 9], 4000));
    let mut n = 0;
    loop {
        while t.poll_transmit().is_some() {}
        while let Some(e) = t.poll_event() {
            assert!(
                !matches!(e, TransportEvent::Connected(_)),
                "connected without a handshake"
            );
        }
        if rest.len() < 3 || n == DTLS_FUZZ_MAX_DATAGRAMS {
            break;
        }
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let end = (3 + len).min(rest.len());
        let mut datagram = rest[3..end].to_vec();
        rest = &rest[end..];
        n += 1;
        if flags & 2 != 0 && datagram.len() >= 8 {
            datagram[0] &= 0x3F;
            datagram[4..8].copy_from_slice(&crate::stun::MAGIC_COOKIE.to_be_bytes());
        }
        let source = if flags & 1 != 0 { stranger } else { remote };
        let _ = t.accepts(&datagram, source);
        let valid = t.ice().is_some_and(|i| i.is_valid_remote(source));
        let before = t.stats();
        t.handle_receive(
            now,
            Receive {
                source,
                destination: local,
                contents: &datagram,
            },
        );
        let after = t.stats();
        if !valid && !crate::stun::is_stun(&datagram) {
            assert_eq!(
                after.dtls_received, before.dtls_received,
                "unvalidated DTLS"
            );
            assert_eq!(after.rtp_received, before.rtp_received, "unvalidated SRTP");
            assert_eq!(
                after.rtcp_received, before.rtcp_received,
                "unvalidated SRTCP"
            );
        }
        while let Some(e) = t.poll_event() {
            match e {
                TransportEvent::Rtp(p) | TransportEvent::Rtcp(p) => {
                    assert!(p.len() <= datagram.len(), "media grew")
                }
                TransportEvent::Connected(_) => panic!("connected without a handshake"),
                _ => {}
            }
        }
        if mode & 16 != 0 {
            now += Duration::from_millis(300);
            t.handle_timeout(now);
        }
    }
    // Sending never panics, whatever the state.
    let _ = t.send_rtp(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xAA]);
    let _ = t.send_rtcp(&[0x80, 201, 0, 1, 0, 0, 0, 1]);
    let _ = t.send_application_data(b"x");
    t.close();
    while t.poll_transmit().is_some() {}
    assert!(t.poll_timeout().is_none(), "a timer survived close");
}

/// Seed inputs for `peer_transport`: a valid ICE check for the harness's
/// transport, a DTLS ClientHello, SRTP and SRTCP packets that authenticate
/// under the harness's keys (for each profile and role), and a datagram of
/// each unknown range.
pub fn peer_transport_seed_inputs() -> Vec<Vec<u8>> {
    use crate::srtp::{ProtectionProfile, SrtpContext};
    use crate::stun::{MessageEncoder, MessageType, TransactionId};
    let now = Instant::now();
    let mut out = Vec::new();
    // A connectivity check with USE-CANDIDATE, signed with our password.
    if let Some((t, _)) = peer_fuzz_transport(0, now) {
        let creds = t.local_credentials().clone();
        let mut check = Vec::new();
        let mut rng = StdRng::seed_from_u64(1);
        let ok = MessageEncoder::new(
            &mut check,
            MessageType::BINDING_REQUEST,
            TransactionId::random(&mut rng),
        )
        .attribute(&Attribute::Username(&format!("{}:fuzz", creds.ufrag)))
        .attribute(&Attribute::Priority(1_845_501_695))
        .attribute(&Attribute::IceControlling(1))
        .attribute(&Attribute::UseCandidate)
        .message_integrity(&IntegrityKey::short_term(&creds.pwd))
        .fingerprint()
        .finish()
        .is_ok();
        if ok {
            out.push(peer_transport_input(16, &[(0, check.clone()), (1, check)]));
        }
    }
    // A ClientHello into the server endpoint.
    if let Some(config) = fuzz_config(1200) {
        let mut client = Endpoint::client(
            config,
            SocketAddr::from(PEER_FUZZ_LOCAL),
            StdRng::seed_from_u64(DTLS_FUZZ_CLIENT_SEED),
            now,
        );
        let hello: Vec<(u8, Vec<u8>)> =
            std::iter::from_fn(|| client.poll_transmit().map(|t| (0, t.contents))).collect();
        out.push(peer_transport_input(0, &hello));
    }
    // SRTP and SRTCP the peer protected with its write key.
    for (i, profile) in ProtectionProfile::ALL.iter().enumerate() {
        for role_bit in [0u8, 1] {
            let material = vec![PEER_FUZZ_KEY_BYTE; profile.keying_material_len()];
            let Ok((client, server)) = profile.split_keying_material(&material) else {
                continue;
            };
            // We are the server (bit 0 clear): the peer protects with the
            // client's key, and the other way round.
            let key = if role_bit == 0 { client } else { server };
            let Ok(mut tx) = SrtpContext::from_master_key(&key, crate::srtp::Config::default())
            else {
                continue;
            };
            let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 10, 0, 0, 0, 42];
            rtp.extend_from_slice(b"seed payload");
            let mut rtcp = vec![0x80, 201, 0, 1, 0, 0, 0, 42];
            if tx.protect_rtp(&mut rtp).is_ok() && tx.protect_rtcp(&mut rtcp).is_ok() {
                let mode = role_bit | ((i as u8) << 1) | 8;
                out.push(peer_transport_input(
                    mode,
                    &[(0, rtp.clone()), (0, rtcp), (0, rtp.clone()), (1, rtp)],
                ));
            }
        }
    }
    // One datagram of each unknown range, and short ones.
    out.push(peer_transport_input(
        0,
        &[
            (0, vec![16, 0, 0, 0]),
            (0, vec![64, 0, 0, 4, 1, 2, 3, 4]),
            (0, vec![200, 1]),
            (0, vec![0x80]),
            (0, Vec::new()),
        ],
    ));
    out
}

/// The harness of the `sdp` target: parse a whole session description;
/// what parses is written back, parses to the same value, and writing it
/// again gives the same bytes (the written form is a fixed point; a skipped
/// malformed optional line is simply not in it). Whitespace added at the end
/// of every written `a=` line changes nothing (parse liberally, write
/// strictly).
pub fn sdp(data: &[u8]) {
    use crate::sdp::SessionDescription;
    let Ok(sd) = SessionDescription::parse(data) else {
        return;
    };
    let mut text = Vec::new();
    sd.emit(&mut text);
    let back = SessionDescription::parse(&text).expect("our own output parses");
    assert_eq!(back, sd, "written description parses to another value");
    let mut again = Vec::new();
    back.emit(&mut again);
    assert_eq!(again, text, "writing is not a fixed point");
    let mut padded = Vec::with_capacity(text.len() * 2);
    for line in text.split_inclusive(|b| *b == b'\n') {
        match line.strip_suffix(b"\r\n") {
            Some(l) if l.starts_with(b"a=") => {
                padded.extend_from_slice(l);
                padded.extend_from_slice(b" \t\r\r\n");
            }
            _ => padded.extend_from_slice(line),
        }
    }
    // Within the size cap: the padding is 4 bytes a line.
    if padded.len() <= crate::sdp::MAX_SDP_LEN {
        let padded = SessionDescription::parse(&padded).expect("padded output parses");
        assert_eq!(
            padded, sd,
            "trailing whitespace on a= lines changed the value"
        );
    }
    let _ = (sd.bundle_group(), sd.fingerprints().count());
    for m in &sd.media {
        let _ = (m.mid(), m.is_rejected(), m.payload_types().count());
    }
    sdp_negotiation(&sd);
}

/// Offer/answer on an untrusted description: answered as a remote offer
/// (the answer must be a valid description that agrees with the offer), and
/// taken as the remote answer to an offer of ours.
fn sdp_negotiation(sd: &crate::sdp::SessionDescription) {
    use crate::sdp::{
        Capabilities, Direction, Fingerprint, MediaKind, Session, SessionDescription,
        TransportParams,
    };
    let session = || {
        let fp = Fingerprint {
            algorithm: "sha-256".into(),
            value: vec![7; 32],
        };
        Session::new(
            Capabilities::webrtc(),
            TransportParams::new("fuzz", "fuzzfuzzfuzzfuzzfuzzfuzz", fp),
            1,
        )
    };
    let mut answerer = session();
    if let Ok((answer, n)) = answerer.create_answer(sd) {
        assert_eq!(
            answer.media.len(),
            sd.media.len(),
            "an answer has every m-line"
        );
        assert_eq!(n.media.len(), sd.media.len());
        let back = SessionDescription::parse_str(&answer.to_string()).expect("answer parses");
        assert_eq!(back, answer);
        // A renegotiation offer from the answered state keeps the m-lines.
        let offer = answerer.create_offer().expect("offer");
        assert!(offer.media.len() >= sd.media.len());
    }
    let mut offerer = session();
    offerer.add_transceiver(MediaKind::Audio, Direction::SendRecv, None);
    offerer.add_transceiver(MediaKind::Video, Direction::RecvOnly, None);
    offerer.add_data_channel();
    if offerer.create_offer().is_ok() {
        let _ = offerer.set_remote_answer(sd);
    }
}
// ---------------------------------------------------------------------------
// Data channels (DCEP).

/// The harness of the `dcep` target: the bytes as one DCEP message (what
/// parses re-encodes to the same bytes: the codec is strict), then as a
/// sequence of SCTP user messages into a channel manager of either DTLS
/// role. Each message is a stream byte, a PPID byte (picking 50..=57 or an
/// unknown one), a length byte and that many bytes. The manager must never
/// panic, never send on a stream at or above its limit, and keep its
/// stream map consistent.
pub fn dcep(data: &[u8]) {
    use crate::datachannel::{ChannelInit, ChannelManager, Config, DcepMessage, Output};
    use crate::dtls::endpoint::Role;

    if let Ok(m) = DcepMessage::parse(data) {
        let _ = m.to_string();
        // An ACK may come padded (pion): only its type byte is written back.
        let whole = if m == DcepMessage::Ack {
            &data[..1]
        } else {
            data
        };
        assert_eq!(m.to_vec(), whole, "a DCEP message does not round-trip");
    }
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let max_streams = 16;
    let mut m = ChannelManager::new(Config {
        role: Some(if flags & 1 == 0 {
            Role::Client
        } else {
            Role::Server
        }),
        max_streams,
        max_receive_message_size: 64,
        ..Config::default()
    });
    m.handle_connected();
    let local = m.create_channel(ChannelInit::new("local"));
    let _ = m.create_channel(ChannelInit {
        negotiated: Some(u16::from(flags >> 4)),
        ..ChannelInit::new("negotiated")
    });
    let mut step = 0u32;
    while rest.len() >= 3 && step < 64 {
        let stream = u16::from(rest[0] % 20);
        let ppid = 50 + u32::from(rest[1] % 9);
        let len = usize::from(rest[2]).min(rest.len() - 3);
        let body = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        step += 1;
        match rest.len() % 5 {
            0 => m.handle_streams_reset(&[stream]),
            1 => m.handle_outgoing_streams_reset(&[stream]),
            2 => m.handle_buffered_amount(stream, body.len()),
            _ => {}
        }
        m.handle_message(stream, ppid, body);
        if let Ok(id) = local {
            let _ = m.send_text(id, "x");
        }
        while let Some(o) = m.poll_output() {
            match o {
                Output::Message(msg) => assert!(msg.stream < max_streams),
                Output::ResetStreams(s) => assert!(!s.is_empty()),
            }
        }
        while m.poll_event().is_some() {}
        for c in m.channels() {
            let Some(s) = c.stream() else {
                panic!("a channel without a stream although the role is known");
            };
            assert_eq!(m.channel_on_stream(s).map(|c| c.id()), Some(c.id()));
        }
    }
    m.handle_transport_aborted("fuzz");
    assert_eq!(m.channels().count(), 0);
}

// ---- peer::PeerConnection ----------------------------------------------------

/// Frames input for the `peer_connection` target: a 2-byte big-endian length
/// and that many bytes of remote offer (SDP text), then per datagram a flags
/// byte (bit 0: from a stranger; bit 1: the bytes are a trickled candidate
/// line instead; bit 2: a 200 ms timer tick first), a 2-byte big-endian
/// length and the bytes.
pub fn peer_connection_input(offer: &[u8], datagrams: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let len = offer.len().min(u16::MAX as usize);
    let mut out = (len as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&offer[..len]);
    for (flags, d) in datagrams {
        let len = d.len().min(u16::MAX as usize);
        out.push(*flags);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&d[..len]);
    }
    out
}

/// The harness of the `peer_connection` target: a whole peer's signaling
/// and receive path. A peer with a video track and a data channel takes
/// the input's offer (answering it if it can), trickled candidates and
/// datagrams from the offer's candidate address or a stranger, with timer
/// ticks. Invariants: no panic; after `close` no timer is left.
pub fn peer_connection(data: &[u8]) {
    use crate::peer::{self, PeerConnection, SdpType};
    use crate::sdp::MediaKind;
    if data.len() < 2 {
        return;
    }
    let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
    let end = (2 + len).min(data.len());
    let (offer, mut rest) = (&data[2..end], &data[end..]);
    let Some(certificate) = fuzz_certificate() else {
        return;
    };
    let local = SocketAddr::from(PEER_FUZZ_LOCAL);
    let remote = SocketAddr::from(PEER_FUZZ_REMOTE);
    let stranger = SocketAddr::from(([203, 0, 113, 9], 4000));
    let mut now = Instant::now();
    let mut pc = PeerConnection::new(
        peer::Config::new(certificate, vec![local]),
        StdRng::seed_from_u64(PEER_FUZZ_SEED),
    );
    let _ = pc.add_track(MediaKind::Video);
    let _ = pc.create_data_channel(crate::datachannel::ChannelInit::new("fuzz"));
    if let Ok(text) = std::str::from_utf8(offer)
        && pc.set_remote_description(now, SdpType::Offer, text).is_ok()
        && let Ok(answer) = pc.create_answer()
    {
        let _ = pc.set_local_description(now, SdpType::Answer, &answer);
    }
    let mut n = 0;
    while rest.len() >= 3 && n < DTLS_FUZZ_MAX_DATAGRAMS {
        let flags = rest[0];
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]]));
        let end = (3 + len).min(rest.len());
        let datagram = &rest[3..end];
        rest = &rest[end..];
        n += 1;
        if flags & 4 != 0 {
            now += Duration::from_millis(200);
            pc.handle_timeout(now);
        }
        if flags & 2 != 0 {
            if let Ok(line) = std::str::from_utf8(datagram) {
                let _ = pc.add_ice_candidate(now, line);
            }
            continue;
        }
        let source = if flags & 1 != 0 { stranger } else { remote };
        let _ = pc.accepts(datagram, source);
        pc.handle_receive(
            now,
            Receive {
                source,
                destination: local,
                contents: datagram,
            },
        );
        while pc.poll_transmit().is_some() {}
        while pc.poll_event().is_some() {}
    }
    pc.close(now);
    while pc.poll_transmit().is_some() {}
    while pc.poll_event().is_some() {}
    assert!(pc.poll_timeout().is_none(), "a timer survived close");
}

/// Seed inputs for `peer_connection`: a real offer (video, audio, data)
/// from another peer, with its host candidate at the harness's remote
/// address, followed by a trickled candidate, an ICE-looking datagram, a
/// DTLS-looking one and an SRTP-looking one.
pub fn peer_connection_seed_inputs() -> Vec<Vec<u8>> {
    use crate::peer::{self, PeerConnection};
    use crate::sdp::MediaKind;
    let Some(certificate) = fuzz_certificate() else {
        return Vec::new();
    };
    let now = Instant::now();
    let remote = SocketAddr::from(PEER_FUZZ_REMOTE);
    let mut offerer = PeerConnection::new(
        peer::Config::new(certificate, vec![remote]),
        StdRng::seed_from_u64(1),
    );
    let _ = offerer.add_track(MediaKind::Video);
    let _ = offerer.add_track(MediaKind::Audio);
    let _ = offerer.create_data_channel(crate::datachannel::ChannelInit::new("seed"));
    let Ok(offer) = offerer.create_offer(now) else {
        return Vec::new();
    };
    let candidate = format!(
        "candidate:1 1 udp 2130706431 {} {} typ host",
        remote.ip(),
        remote.port()
    );
    let mut stun = vec![0, 1, 0, 0];
    stun.extend_from_slice(&crate::stun::MAGIC_COOKIE.to_be_bytes());
    stun.extend_from_slice(&[7; 12]);
    let mut dtls = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    dtls.extend_from_slice(&[1; 40]);
    let mut srtp = vec![0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
    srtp.extend_from_slice(&[0xAA; 30]);
    vec![
        peer_connection_input(offer.as_bytes(), &[]),
        peer_connection_input(
            offer.as_bytes(),
            &[
                (2, candidate.into_bytes()),
                (0, stun),
                (4, dtls),
                (5, srtp),
                (4, Vec::new()),
            ],
        ),
        peer_connection_input(b"v=0\r\n", &[(1, vec![0x80; 20])]),
    ]
}

/// The harness of the `sctp_packet` target: parse a packet (as it is, and
/// again with its checksum made valid), decode every chunk, and check that
/// what decoded encodes and decodes to the same value.
pub fn sctp_packet(data: &[u8]) {
    use crate::sctp::packet;
    let _ = crate::sctp::Packet::parse(data);
    let mut fixed = data.to_vec();
    packet::finish(&mut fixed);
    if let Ok(p) = crate::sctp::Packet::parse(&fixed) {
        let again = p.to_vec();
        let back = crate::sctp::Packet::parse(&again).expect("an encoded packet parses");
        assert_eq!(back, p, "packet does not round-trip");
    }
    for c in packet::chunks(&fixed).flatten() {
        let _ = c.parse();
    }
}

/// An association established with a peer in memory, and the verification
/// tag its packets must carry.
fn sctp_established(
    receive_window: u32,
) -> (
    crate::sctp::Association,
    crate::sctp::Association,
    u32,
    Instant,
) {
    use crate::sctp::{Association, Config};
    let cfg = Config {
        heartbeat_interval: None,
        receive_window,
        ..Config::default()
    };
    let mut a = Association::new(cfg.clone(), StdRng::seed_from_u64(1));
    let mut b = Association::new(cfg, StdRng::seed_from_u64(2));
    let now = Instant::now();
    a.connect(now);
    let mut tag = 0;
    for _ in 0..4 {
        while let Some(p) = a.poll_transmit() {
            b.handle_packet(now, &p);
        }
        while let Some(p) = b.poll_transmit() {
            if let Ok(h) = crate::sctp::CommonHeader::parse(&p) {
                tag = h.verification_tag;
            }
            a.handle_packet(now, &p);
        }
    }
    (a, b, tag, now)
}

/// The harness of the `sctp_association` target: the input is a series of
/// chunk sequences (`u16` length, then bytes), each sent to an established
/// association as one packet with a valid header, tag and checksum, with
/// time moving between them. Nothing may panic, and memory stays bounded.
pub fn sctp_association(data: &[u8]) {
    use crate::sctp::packet;
    if let Some((&SCTP_DATA_OPS, ops)) = data.split_first() {
        return sctp_association_data_ops(ops);
    }
    let window = crate::sctp::Config::default().receive_window;
    let (mut a, _b, tag, mut now) = sctp_established(window);
    let _ = a.send(now, 1, 53, &[7; 3000], crate::sctp::SendOptions::default());
    let mut rest = data;
    let mut n = 0;
    while rest.len() >= 3 && n < 64 {
        n += 1;
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 3);
        let step = rest[2];
        let body = &rest[3..3 + len];
        rest = &rest[3 + len..];
        let mut p = Vec::with_capacity(12 + len);
        crate::sctp::CommonHeader {
            source_port: 5000,
            destination_port: 5000,
            verification_tag: tag,
        }
        .emit(&mut p);
        p.extend_from_slice(body);
        packet::finish(&mut p);
        a.handle_packet(now, &p);
        now += std::time::Duration::from_millis(step as u64 * 8);
        a.handle_timeout(now);
        while let Some(out) = a.poll_transmit() {
            assert!(out.len() <= a.config().mtu.max(1500), "packet over the MTU");
        }
        while a.poll_event().is_some() {}
        assert!(a.receive_buffered() <= a.receive_limit());
    }
}
/// The first byte that switches the `sctp_association` harness to
/// [`sctp_association_data_ops`].
pub const SCTP_DATA_OPS: u8 = 0xFF;

/// The `sctp_association` harness for inputs that start with
/// [`SCTP_DATA_OPS`]: every 5 bytes `[k_hi, k_lo, f, ssn, n]` are one DATA
/// chunk (or FORWARD TSN) sent to an established association that took
/// one message already and has a 64 KiB receive window, so that a few
/// kilobytes of input cross the window and reach any TSN of the 2^20 gap
/// it accepts.
///
/// - TSN: the first one the peer has not sent yet, plus `k` (times 16 when
///   `f & 0x20`, to reach far ahead);
/// - `f & 0x07`: the E, B and U flags; the I flag is always set, so every
///   chunk is SACKed at once and the harness knows the cumulative TSN;
///   `(f >> 3) & 3`: the stream;
/// - `f & 0x40`: 50 ms pass after it (timers run);
/// - `f & 0x80`: a FORWARD TSN to that TSN (skipping SSN `ssn` on the
///   stream) instead of DATA;
/// - `n`: `64 n + 1` bytes of user data, each the low byte of the TSN.
///
/// After every step: nothing panicked; what the association holds never
/// exceeds [`Association::receive_limit`](crate::sctp::Association::receive_limit),
/// and goes past the window only by a chunk at the cumulative TSN + 1
/// (RFC 9260 §6.2); every message delivered is made of fragments with
/// consecutive TSNs (each byte equals the one before or is one more).
pub fn sctp_association_data_ops(ops: &[u8]) {
    use crate::sctp::chunk::{Data, FLAG_IMMEDIATE, ForwardTsn};
    use crate::sctp::{Chunk, CommonHeader, Event, Packet};
    // A small window, so that a few hundred chunks cross it.
    let (mut a, mut b, tag, mut now) = sctp_established(64 * 1024);
    // One message from b gives the TSN b sends next.
    let _ = b.send(now, 0, 51, b"x", crate::sctp::SendOptions::default());
    let mut base = None;
    while let Some(p) = b.poll_transmit() {
        if let Ok(pk) = Packet::parse(&p) {
            for c in &pk.chunks {
                if let Chunk::Data(d) = c {
                    base = Some(d.tsn.wrapping_add(1));
                }
            }
        }
        a.handle_packet(now, &p);
    }
    let Some(base) = base else {
        panic!("b sent no DATA");
    };
    let window = a.config().receive_window as usize;
    let limit = a.receive_limit();
    let mut cum = base.wrapping_sub(1);
    let mut payload = Vec::new();
    for op in ops.chunks_exact(5) {
        let (k, f, ssn, n) = (u16::from_be_bytes([op[0], op[1]]), op[2], op[3], op[4]);
        let off = if f & 0x20 != 0 {
            u32::from(k) << 4
        } else {
            u32::from(k)
        };
        let tsn = base.wrapping_add(off);
        let stream = u16::from((f >> 3) & 3);
        let chunk = if f & 0x80 != 0 {
            Chunk::ForwardTsn(ForwardTsn {
                new_cum_tsn: tsn,
                streams: vec![(stream, u16::from(ssn))],
            })
        } else {
            payload.clear();
            payload.resize(64 * usize::from(n) + 1, tsn as u8);
            Chunk::Data(Data {
                flags: (f & 0x07) | FLAG_IMMEDIATE,
                tsn,
                stream,
                ssn: u16::from(ssn),
                ppid: 53,
                payload: &payload,
            })
        };
        let raw = Packet {
            header: CommonHeader {
                source_port: 5000,
                destination_port: 5000,
                verification_tag: tag,
            },
            chunks: vec![chunk],
        }
        .to_vec();
        let before = a.receive_buffered();
        a.handle_packet(now, &raw);
        let held = a.receive_buffered();
        assert!(held <= limit, "{held} bytes held, limit {limit}");
        if held > before.max(window) {
            assert!(
                f & 0x80 == 0 && tsn == cum.wrapping_add(1),
                "past the window ({held} > {window}) by TSN {tsn}, cumulative TSN {cum}"
            );
        }
        if f & 0x40 != 0 {
            now += std::time::Duration::from_millis(50);
            a.handle_timeout(now);
        }
        while let Some(out) = a.poll_transmit() {
            if let Ok(pk) = Packet::parse(&out) {
                for c in pk.chunks {
                    if let Chunk::Sack(s) = c {
                        cum = s.cum_tsn_ack;
                    }
                }
            }
        }
        while let Some(e) = a.poll_event() {
            if let Event::Message { data, .. } = e {
                let intact = data
                    .windows(2)
                    .all(|w| w[1] == w[0] || w[1] == w[0].wrapping_add(1));
                assert!(intact, "a message joined from non-consecutive TSNs");
            }
        }
        if a.state() == crate::sctp::State::Closed {
            break;
        }
    }
}

/// The harness of the `signaling_rooms` target: the bytes are a script of
/// client actions against [`crate::signaling::Rooms`] (rooms of three,
/// 256-byte messages). Frames are split at 0x00; a frame's first byte picks
/// one of four clients (low 2 bits) and what it does (next 2 bits: text,
/// disconnect and reconnect, binary, bye); the rest is its text. After each
/// step, every room's books must balance, every message must go to a
/// connected client, and a relayed payload must be JSON text no longer
/// than a message may be, that serde_json reads as a tree (no deeper
/// than [`crate::signaling::message::MAX_NESTING`]).
pub fn signaling_rooms(data: &[u8]) {
    use crate::signaling::room::Config;
    use crate::signaling::{ClientId, Rooms};

    let config = Config {
        room_size: 3,
        max_message_bytes: 256,
        max_rooms: 8,
    };
    let mut rooms = Rooms::new(config);
    let mut clients: Vec<ClientId> = (0..4).map(|_| rooms.connect()).collect();
    for frame in data.split(|&b| b == 0).take(256) {
        let Some((&head, rest)) = frame.split_first() else {
            continue;
        };
        let who = usize::from(head & 3);
        let c = clients[who];
        match (head >> 2) & 3 {
            0 => rooms.handle_text(c, &String::from_utf8_lossy(rest)),
            1 => {
                rooms.disconnect(c);
                clients[who] = rooms.connect();
            }
            2 => rooms.handle_binary(c, rest.len()),
            _ => rooms.handle_text(c, r#"{"type":"bye"}"#),
        }
        let mut n = 0;
        while let Some(out) = rooms.poll_output() {
            assert!(clients.contains(&out.to), "a message to a gone client");
            if let crate::signaling::ServerMessage::Message { data, .. } = &out.message {
                assert!(data.len() <= 256, "relayed more than a message holds");
                let tree = serde_json::from_str::<serde_json::Value>(data.get());
                assert!(tree.is_ok(), "relayed unreadable JSON: {}", data.get());
            }
            n += 1;
        }
        // One input makes at most one message per member and ready for all.
        assert!(n <= 2 * 3 + 1, "{n} messages for one input");
        for &c in &clients {
            if let Some(room) = rooms.room_of(c) {
                let members = rooms.members(room);
                assert!(members.contains(&c));
                assert!(members.len() <= 3);
            }
        }
        assert!(rooms.room_count() <= 4 && rooms.client_count() == 4);
    }
}

/// The harness of the `bwe_feedback` target: a send-side bandwidth
/// estimator (`rtp::bwe::SendSideBwe`) fed transport-wide CC feedback parsed
/// from arbitrary bytes. The input is a 2-byte first sequence number, then
/// records of a control byte and a length byte followed by that many bytes
/// of feedback FCI (`TransportCc::parse_fci`). The control byte's low 5 bits
/// say how many packets (0..=31) are sent before the feedback, bit 5 sends
/// them as probe packets, bits 6-7 pick the gap between feedbacks (0, 1 ms,
/// 50 ms or 10 s). The estimator must never panic, keep its estimate within
/// its bounds, its history within its cap and its event queue short.
pub fn bwe_feedback(data: &[u8]) {
    use crate::rtp::bwe::{Config, Event, SendSideBwe};
    use crate::rtp::twcc::TransportCc;
    use std::time::Duration;

    let Some((seq, mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let config = Config {
        history: 256,
        ..Config::default()
    };
    let (min, max, cap) = (config.min, config.max, config.history);
    let mut bwe = SendSideBwe::new(config);
    let mut now = Instant::now();
    let mut seq = u16::from_be_bytes(*seq);
    let mut probe = None;
    while let [control, len, tail @ ..] = rest {
        let (fci, next) = tail.split_at((*len as usize).min(tail.len()));
        rest = next;
        for _ in 0..control & 31 {
            now += Duration::from_millis(2);
            let p = if control & 32 != 0 { probe } else { None };
            bwe.on_packet_sent(now, seq, 1200, p);
            seq = seq.wrapping_add(1);
        }
        now += match control >> 6 {
            0 => Duration::ZERO,
            1 => Duration::from_millis(1),
            2 => Duration::from_millis(50),
            _ => Duration::from_secs(10),
        };
        if let Ok(fb) = TransportCc::parse_fci(1, 2, fci) {
            bwe.on_feedback(now, &fb);
        }
        let mut events = 0;
        while let Some(e) = bwe.poll_event() {
            if let Event::Probe(c) = e {
                assert!(c.rate <= max, "a probe above the maximum");
                probe = Some(c.id);
            }
            events += 1;
        }
        assert!(events <= 32, "{events} events queued");
        let e = bwe.estimate();
        assert!(e >= min && e <= max, "estimate {e} out of bounds");
        assert!(bwe.history_len() <= cap, "history above its cap");
    }
}

// ---------------------------------------------------------------------------
// DTLS 1.3 (the building blocks of `dtls::v13`).

/// The traffic keys of epoch `epoch` in the `dtls13_record` harness and its
/// seeds (fixed, so that seeds sealed with them open in the harness).
fn dtls13_fuzz_keys(epoch: u64) -> crate::dtls::v13::key_schedule::TrafficKeys {
    use crate::dtls::v13::key_schedule::{LabelPrefix, Secret, TrafficKeys};
    TrafficKeys::derive(LabelPrefix::Dtls13, &Secret::from_bytes([epoch as u8; 32]))
}

/// The harness of the `dtls13_record` target: frame a datagram into DTLS
/// 1.3 records (every unified header re-emits to its bytes), feed it to a
/// record layer reading epochs 2 and 3 (records that do not authenticate,
/// replays and unknown epochs are dropped, never panic; records of the
/// next epoch are held until its keys come), then seal the
/// bytes ourselves in each header form and check they open once, equal.
pub fn dtls13_record(data: &[u8]) {
    use crate::dtls::v13::record::{self as r13, HeaderForm, Record, SeqLen};
    let mut framed = 0usize;
    for r in r13::records(data) {
        match r {
            Err(_) => break,
            Ok(Record::Plaintext(p)) => framed += 13 + p.fragment.len(),
            Ok(Record::Ciphertext(c)) => {
                let mut again = Vec::new();
                c.header.emit(&mut again);
                assert_eq!(again, c.header_bytes, "unified header does not re-emit");
                assert_eq!(usize::from(c.header.length), c.encrypted.len());
                framed += c.header_bytes.len() + c.encrypted.len();
            }
        }
    }
    assert!(framed <= data.len());

    let mut layer = r13::RecordLayer::new();
    let (Ok(()), Ok(())) = (
        layer.install_read(2, &dtls13_fuzz_keys(2)),
        layer.install_read(3, &dtls13_fuzz_keys(3)),
    ) else {
        panic!("fixed keys install");
    };
    let mut got = Vec::new();
    layer.receive(data, &mut got);
    for g in &got {
        assert!(g.fragment.len() <= r13::MAX_INNER_PLAINTEXT_LEN);
        assert!(g.number.epoch == 0 || g.number.epoch == 2 || g.number.epoch == 3);
    }
    // The same datagram again: nothing new (every record is a replay).
    let before = got.len();
    layer.receive(data, &mut got);
    assert_eq!(got.len(), before, "a replayed record was accepted");
    // Records held for epoch 4 (bounded) open or drop once its keys come.
    assert!(layer.pending() <= r13::MAX_PENDING_RECORDS);
    if layer.install_read(4, &dtls13_fuzz_keys(4)).is_err() {
        panic!("fixed keys install");
    }
    layer.take_unlocked(&mut got);
    assert_eq!(layer.pending(), 0);
    assert!(got.iter().all(|g| g.number.epoch <= 4));

    let plain = &data[..data.len().min(1 << 14)];
    let mut writer = r13::RecordLayer::new();
    let mut reader = r13::RecordLayer::new();
    if writer.install_write(3, &dtls13_fuzz_keys(3)).is_err()
        || reader.install_read(3, &dtls13_fuzz_keys(3)).is_err()
    {
        panic!("fixed keys install");
    }
    for (s, l) in [(false, false), (false, true), (true, false), (true, true)] {
        writer.form = HeaderForm {
            seq_len: if s { SeqLen::Sixteen } else { SeqLen::Eight },
            with_length: l,
        };
        let mut sealed = Vec::new();
        let padding = data.first().map_or(0, |&b| usize::from(b % 8));
        let ct = crate::dtls::record::ContentType::ApplicationData;
        let Ok(number) = writer.seal(ct, plain, padding, &mut sealed) else {
            continue;
        };
        let mut opened = Vec::new();
        reader.receive(&sealed, &mut opened);
        reader.receive(&sealed, &mut opened);
        assert_eq!(opened.len(), 1, "own record not opened exactly once");
        assert_eq!(opened[0].number, number);
        assert_eq!(opened[0].fragment, plain);
    }
}

/// Seeds for `dtls13_record`: a datagram with a plaintext ClientHello-like
/// record, then epoch-2 and epoch-3 records in each header form, sealed
/// with the harness's keys.
pub fn dtls13_record_seeds() -> Vec<Vec<u8>> {
    use crate::dtls::record::ContentType;
    use crate::dtls::v13::record::{self as r13, HeaderForm, SeqLen};
    let mut w = r13::RecordLayer::new();
    let mut d = Vec::new();
    let _ = w.seal(
        ContentType::Handshake,
        &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        0,
        &mut d,
    );
    let _ = w.install_write(2, &dtls13_fuzz_keys(2));
    let _ = w.seal(ContentType::Handshake, b"encrypted extensions", 0, &mut d);
    w.form = HeaderForm {
        seq_len: SeqLen::Eight,
        with_length: true,
    };
    let _ = w.seal(
        ContentType::Other(26),
        &[0, 16, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0],
        0,
        &mut d,
    );
    let mut e = Vec::new();
    let _ = w.install_write(3, &dtls13_fuzz_keys(3));
    w.form = HeaderForm {
        seq_len: SeqLen::Sixteen,
        with_length: false,
    };
    let _ = w.seal(ContentType::ApplicationData, b"sctp", 3, &mut e);
    vec![d, e]
}

/// The harness of the `dtls13_handshake` target: the bytes as a handshake
/// record payload (fragments into the bounded reassembler, every message
/// parsed as DTLS 1.3), as one 1.3 message body whose type is the first
/// byte, and as an ACK. Whatever parses re-encodes to something that
/// parses to the same value.
pub fn dtls13_handshake(data: &[u8]) {
    use crate::dtls::v13::messages::{Ack, Handshake as H13};
    let round_trip = |m: &H13| {
        let mut body = Vec::new();
        m.emit_body(&mut body);
        match H13::parse(m.msg_type(), &body) {
            Ok(again) => assert_eq!(&again, m, "1.3 handshake message does not round-trip"),
            Err(e) => panic!("re-encoded 1.3 {:?} does not parse: {e}", m.msg_type()),
        }
    };
    let mut reassembler = Reassembler::new();
    for f in fragments(data) {
        let Ok(f) = f else { break };
        let _ = reassembler.insert(&f);
        while let Some(m) = reassembler.pop() {
            if let Ok(h) = H13::parse(m.msg_type, &m.body) {
                round_trip(&h);
            }
        }
    }
    if let Some((&t, body)) = data.split_first() {
        if let Ok(h) = H13::parse(HandshakeType::from_u8(t), body) {
            round_trip(&h);
        }
    }
    if let Ok(ack) = Ack::parse(data) {
        let mut again = Vec::new();
        ack.emit(&mut again);
        assert_eq!(again, data, "an ACK does not re-encode to its bytes");
    }
}

/// Seeds for `dtls13_handshake`: a fragmented 1.3 ClientHello with a
/// hybrid and an X25519 share, a HelloRetryRequest, EncryptedExtensions
/// with use_srtp, a CertificateRequest, a Finished, a KeyUpdate, and an ACK.
pub fn dtls13_handshake_seeds() -> Vec<Vec<u8>> {
    use crate::dtls::cert::SignatureScheme;
    use crate::dtls::handshake::{NamedGroup, SrtpProfile};
    use crate::dtls::v13::messages::{self as m, Handshake as H13};
    use crate::dtls::v13::record::RecordNumber;
    let ch = m::ClientHello {
        legacy_version: m::DTLS_1_2,
        random: [7; 32],
        legacy_session_id: Vec::new(),
        legacy_cookie: Vec::new(),
        cipher_suites: vec![m::TLS_AES_128_GCM_SHA256, 0xc02b],
        supported_versions: vec![m::DTLS_1_3, m::DTLS_1_2],
        supported_groups: vec![NamedGroup::X25519_MLKEM768, NamedGroup::X25519],
        signature_algorithms: vec![SignatureScheme::ECDSA_SECP256R1_SHA256],
        key_shares: Some(vec![
            m::KeyShareEntry {
                group: NamedGroup::X25519_MLKEM768,
                key_exchange: vec![1; 1216],
            },
            m::KeyShareEntry {
                group: NamedGroup::X25519,
                key_exchange: vec![2; 32],
            },
        ]),
        use_srtp: Some(m::UseSrtp {
            profiles: vec![SrtpProfile::AEAD_AES_128_GCM],
            mki: Vec::new(),
        }),
        cookie: None,
        other: Vec::new(),
    };
    let messages = [
        H13::ServerHello(m::ServerHelloKind::HelloRetryRequest(
            m::HelloRetryRequest {
                legacy_session_id_echo: Vec::new(),
                cipher_suite: m::TLS_AES_128_GCM_SHA256,
                selected_version: m::DTLS_1_3,
                selected_group: Some(NamedGroup::X25519),
                cookie: Some(vec![9; 32]),
                other: Vec::new(),
            },
        )),
        H13::EncryptedExtensions(m::EncryptedExtensions {
            supported_groups: Vec::new(),
            use_srtp: Some(m::UseSrtp {
                profiles: vec![SrtpProfile::AEAD_AES_128_GCM],
                mki: Vec::new(),
            }),
            other: Vec::new(),
        }),
        H13::CertificateRequest(m::CertificateRequest {
            context: Vec::new(),
            signature_algorithms: vec![SignatureScheme::ECDSA_SECP256R1_SHA256],
            other: Vec::new(),
        }),
        H13::Finished(m::Finished {
            verify_data: [3; 32],
        }),
        H13::KeyUpdate(m::KeyUpdate::Requested),
    ];
    let mut seeds = Vec::new();
    let mut fragmented = Vec::new();
    H13::ClientHello(ch)
        .to_message(0)
        .fragment(1000, |f| f.emit(&mut fragmented));
    seeds.push(fragmented);
    for (i, msg) in messages.iter().enumerate() {
        let mut b = Vec::new();
        msg.to_message(i as u16).emit_unfragmented(&mut b);
        seeds.push(b);
        let mut typed = vec![msg.msg_type().to_u8()];
        msg.emit_body(&mut typed);
        seeds.push(typed);
    }
    let mut ack = Vec::new();
    m::Ack {
        records: vec![RecordNumber {
            epoch: 2,
            sequence: 1,
        }],
    }
    .emit(&mut ack);
    seeds.push(ack);
    seeds
}

/// The harness of the `whip_sdpfrag` target: a trickle-ice-sdpfrag body
/// (RFC 8840 §9) read, written and read again to the same value, then
/// given to a WHIP endpoint as the PATCH of a live session (with and
/// without `If-Match`) and as a POST body.
pub fn whip_sdpfrag(data: &[u8]) {
    use crate::whip::http::{Call, Config, Endpoint, Outcome, Request, SDP, SDPFRAG, Step};
    if let Ok(f) = crate::whip::SdpFrag::parse(data) {
        let text = f.to_text();
        let back = crate::whip::SdpFrag::parse(text.as_bytes()).expect("our own output parses");
        assert_eq!(back, f, "written fragment parses to another value");
    }
    let mut e = Endpoint::new(Config::default(), StdRng::seed_from_u64(0));
    let offer = b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-ufrag:abcd\r\n";
    let post = |body: &'static [u8]| Request {
        method: "POST",
        path: "/whip/room",
        content_type: Some(SDP),
        authorization: None,
        if_match: None,
        body,
        too_long: false,
    };
    let Step::Call(call) = e.request(&post(offer)) else {
        panic!("a good POST is a call");
    };
    let Call::Create { resource, .. } = call.clone() else {
        panic!("POST makes a Create call");
    };
    let r = e.complete(call, Outcome::Created("v=0\r\n".into()));
    let etag = r.get("ETag").unwrap_or("").to_string();
    let path = format!("/whip/resource/{resource}");
    for if_match in [None, Some("*"), Some(etag.as_str())] {
        let req = Request {
            method: "PATCH",
            path: &path,
            content_type: Some(SDPFRAG),
            authorization: None,
            if_match,
            body: data,
            too_long: false,
        };
        match e.request(&req) {
            Step::Respond(r) => assert!((400..500).contains(&r.status), "{}", r.status),
            Step::Call(call) => {
                let r = e.complete(call, Outcome::Patched(None));
                assert!(matches!(r.status, 204 | 500), "{}", r.status);
            }
        }
    }
    let req = Request {
        method: "POST",
        path: "/whep/room",
        content_type: Some(SDP),
        authorization: None,
        if_match: None,
        body: data,
        too_long: false,
    };
    if let Step::Call(call) = e.request(&req) {
        let _ = e.complete(
            call,
            Outcome::Failed(crate::whip::Error::BadSdp("x".into())),
        );
    }
}

/// The harness of the `sfu_cascade_control` target: a message of an SFU
/// cascade link's control channel (written by the other node) read, and
/// what reads written and read again to the same value.
pub fn sfu_cascade_control(data: &[u8]) {
    use crate::sfu::cascade::Control;
    if let Ok(c) = Control::parse(data) {
        let text = c.emit();
        assert_eq!(
            Control::parse(text.as_bytes()),
            Ok(c),
            "a written control message reads to another value"
        );
    }
}

/// The harness of the `peer_set` target: the USERNAME reader a
/// `peer::PeerSet` routes new 5-tuples by agrees with the STUN codec on
/// every Binding request the codec reads.
pub fn peer_set(data: &[u8]) {
    let ours = crate::peer::set::binding_request_ufrag(data);
    if let Ok(m) = Message::parse(data)
        && m.message_type() == crate::stun::MessageType::BINDING_REQUEST
        && let Ok(Some(user)) = m.username()
        && let Some((lfrag, _)) = user.split_once(':')
        && !lfrag.is_empty()
    {
        assert_eq!(
            ours,
            Some(lfrag),
            "the ufrag reader disagrees with the codec"
        );
    }
    if let Some(u) = ours {
        assert!(!u.is_empty() && u.len() <= 763);
    }
}

/// The harness of the `http_response` target: the HTTP/1.1 response parser
/// of `rtclab speed sfu`'s Janus and WHIP/WHEP client. What parses has a
/// body no longer than the input, and written again with a
/// `Content-Length` it parses to the same response.
pub fn http_response(data: &[u8]) {
    let Ok(r) = crate::speed::sfu::parse_response(data) else {
        return;
    };
    assert!(r.body.len() <= data.len());
    let _ = r.header("location");
    let mut again = format!("HTTP/1.1 {} X\r\n", r.status).into_bytes();
    for (n, v) in &r.headers {
        if n == "content-length" || n == "transfer-encoding" {
            continue;
        }
        again.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    again.extend_from_slice(format!("content-length: {}\r\n\r\n", r.body.len()).as_bytes());
    again.extend_from_slice(&r.body);
    // A header that held a lone CR or LF, or had no name, is not written
    // back the same way, and need not be.
    let odd = |t: &str| t.contains(['\r', '\n']);
    if r.headers
        .iter()
        .any(|(n, v)| n.is_empty() || odd(n) || odd(v))
    {
        return;
    }
    let back = crate::speed::sfu::parse_response(&again).expect("a written response parses");
    assert_eq!(back.status, r.status);
    assert_eq!(back.body, r.body);
}

/// The harness of the `capture_xray` target: a capture file read as pcapng
/// or pcap, every UDP datagram found, and the ladder decoded (STUN, DTLS
/// decrypted with the file's own key log, SCTP, DCEP, RTP, RTCP) and
/// rendered. Written by an untrusted party (a capture someone sends), so
/// nothing in it may panic or allocate beyond its size.
pub fn capture_xray(data: &[u8]) {
    use crate::capture::{pcapng, xray};
    let Ok(cap) = pcapng::read(data) else {
        return;
    };
    for p in &cap.packets {
        assert!(p.interface < cap.interfaces.len());
        if let Some(u) = pcapng::udp(cap.interfaces[p.interface].link_type, p.data) {
            assert!(u.payload.len() <= p.data.len());
        }
    }
    let lines = xray::decode(&cap);
    let _ = xray::render(&lines, &xray::Filter::default());
    // The demo's live panel: the same datagrams decoded one at a time with
    // every field, thinned per second, its queue bounded.
    let mut live = crate::capture::live::Live::new(crate::capture::live::Config::default());
    live.key_log(&cap.key_log);
    for (i, p) in cap.packets.iter().enumerate() {
        let iface = &cap.interfaces[p.interface];
        if let Some(u) = pcapng::udp(iface.link_type, p.data) {
            live.datagram(&xray::Datagram {
                time: p.time,
                packet: i + 1,
                source: u.source,
                destination: u.destination,
                direction: p.direction,
                plaintext: iface.name == crate::capture::PLAINTEXT_INTERFACE,
                payload: u.payload,
            });
        }
    }
    let shown = live.take(std::time::Duration::MAX);
    assert!(shown.len() <= crate::capture::live::Config::default().max_pending);
    assert!(
        shown
            .iter()
            .all(|l| l.fields.len() <= 2048 + '…'.len_utf8())
    );
}

/// The harness of the `signaling_cluster` target: one node's share of rooms
/// across nodes ([`crate::signaling::cluster::Cluster`]) fed by frames
/// separated by zero bytes, each from a client or from the bus (as if
/// another node, or a corrupt Redis, had published it): whatever arrives,
/// no panic, messages go only to connected clients, a relayed payload is
/// never larger than a client may send, and the bus announcements
/// ([`crate::bus::Announce`]) parse without growing past their bound.
pub fn signaling_cluster(data: &[u8]) {
    use crate::signaling::cluster::{Cluster, Op, room_channel};
    use crate::signaling::room::Config;
    use crate::signaling::{ClientId, ServerMessage};

    let config = Config {
        room_size: 3,
        max_message_bytes: 256,
        max_rooms: 8,
    };
    let mut node = Cluster::for_node(config, "a");
    let mut clients: Vec<ClientId> = (0..4).map(|_| node.connect()).collect();
    let mut pending: Vec<(ClientId, String)> = Vec::new();
    for frame in data.split(|&b| b == 0).take(256) {
        let Some((&head, rest)) = frame.split_first() else {
            continue;
        };
        let who = usize::from(head & 3);
        let c = clients[who];
        let text = String::from_utf8_lossy(rest);
        if let Some(crate::bus::Announce::Join { before, .. }) = crate::bus::Announce::parse(&text)
        {
            assert!(before.len() <= crate::bus::MAX_MEMBERS);
        }
        match (head >> 2) & 3 {
            0 => node.handle_text(c, &text),
            1 => {
                // `ROOM\nPAYLOAD` published on the room's channel.
                let (room, payload) = text.split_once('\n').unwrap_or(("r", &text));
                node.handle_bus(&room_channel(room), payload);
            }
            2 => {
                node.disconnect(c);
                clients[who] = node.connect();
            }
            _ => {
                // The bus answers the oldest join: admitted (the
                // announcement is this frame's text, on that room's
                // channel), full, or unreachable.
                if !pending.is_empty() {
                    let (client, room) = pending.remove(0);
                    match head >> 4 {
                        0 => node.handle_join_result(client, &room, Ok(false)),
                        1 => node.handle_join_result(client, &room, Err("gone".into())),
                        _ => {
                            node.handle_join_result(client, &room, Ok(true));
                            node.handle_bus(&room_channel(&room), &text);
                        }
                    }
                }
            }
        }
        if head & 0x40 != 0 {
            node.handle_reconnected();
        }
        while let Some(op) = node.poll_op() {
            if let Op::Join { client, room, .. } = op {
                pending.push((client, room));
            }
        }
        pending.truncate(64);
        while let Some(out) = node.poll_output() {
            assert!(clients.contains(&out.to), "a message to a gone client");
            if let ServerMessage::Message { data, .. } = &out.message {
                assert!(data.len() <= 256 + 256, "relayed more than a message holds");
            }
        }
        assert!(node.room_count() <= 8);
    }
}
