//! Fuzz harnesses: the functions the cargo-fuzz targets in `fuzz/` call, kept
//! in the library so that `cargo test` replays the checked-in corpus through
//! exactly the same code (tests/fuzz_corpus.rs).
//!
//! Each harness does everything a receiver might do with untrusted bytes and
//! checks the invariants that must hold; it panics only on a real bug.

use std::net::SocketAddr;

use rand::SeedableRng;
use std::time::Instant;

use crate::machine::{Machine, Receive};
use crate::stun::{
    Attribute, BindingServer, Client, ClientConfig, IntegrityKey, Message, ServerConfig,
    server::MAX_RESPONSE_LEN,
};

/// The harness of the `stun_message` target: decode, read every attribute,
/// verify, re-encode what decoded, and feed a Binding server and a client.
pub fn stun_message(data: &[u8]) {
    let _ = crate::stun::is_stun(data);
    if let Ok(m) = Message::decode(data) {
        let tid = m.transaction_id();
        let _ = format!("{m:?}");
        let _ = m.validate();
        let _ = m.verify_integrity(&IntegrityKey::short_term("fuzz"));
        let _ = m.verify_fingerprint();
        let _ = m.unknown_comprehension_required(|_| false).count();
        for a in m.attributes() {
            assert!(a.offset + 4 + a.value.len() <= data.len());
            if let Ok(attr) = Attribute::decode(a.typ, a.value, &tid) {
                // What decoded re-encodes to the same value, except for
                // attributes that normalise (the reserved bits of
                // ERROR-CODE, CHANGE-REQUEST and RESPONSE-PORT).
                let mut v = Vec::new();
                attr.encode_value(&tid, &mut v);
                if let Ok(again) = Attribute::decode(a.typ, &v, &tid) {
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
    let mut cfg = ServerConfig::new(primary);
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
            assert!(Message::decode(&t.contents).is_ok(), "server sent garbage");
        }
    }
    let mut client = Client::new(ClientConfig::default());
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
        r.encode(&mut out);
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
    h.encode_body(&mut body);
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
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
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
    let Some((&role, mut rest)) = data.split_first() else {
        return;
    };
    let client_addr = SocketAddr::from(DTLS_FUZZ_CLIENT);
    let server_addr = SocketAddr::from(DTLS_FUZZ_SERVER);
    let mut now = Instant::now();
    let mtu = 1200;
    let Some(config) = fuzz_config(mtu) else {
        return;
    };
    let client_role = role & 1 == 1;
    let mut endpoint = if client_role {
        Endpoint::client(config, server_addr, DTLS_FUZZ_CLIENT_SEED, now)
    } else {
        Endpoint::server(config, DTLS_FUZZ_SERVER_SEED)
    };
    let (from, to) = if client_role {
        (server_addr, client_addr)
    } else {
        (client_addr, server_addr)
    };
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
    // Sending never panics, whatever the state.
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
    let mut client = Endpoint::client(cc, server_addr, DTLS_FUZZ_CLIENT_SEED, now);
    let mut server = Endpoint::server(sc, DTLS_FUZZ_SERVER_SEED);
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
    let mut agent = crate::ice::Agent::new(
        crate::ice::AgentConfig::default(),
        rand::rngs::StdRng::seed_from_u64(1),
    );
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

/// The harness of the `turn_message` target: TURN attributes and ChannelData
/// from untrusted bytes, then the same bytes into a TURN server (on its
/// listening and its relay address) and a client waiting for its allocation.
/// Invariants: what decodes re-encodes to the same value, and the server
/// answers only the sender and never relays for a stranger.
pub fn turn_message(data: &[u8]) {
    use crate::turn::{self, ChannelData, TurnAttribute};
    use rand::SeedableRng;

    if let Ok(m) = Message::decode(data) {
        let tid = m.transaction_id();
        for a in m.attributes() {
            if let Ok(t) = TurnAttribute::decode(a.typ, a.value, &tid) {
                let mut v = Vec::new();
                t.encode_value(&tid, &mut v);
                assert_eq!(
                    TurnAttribute::decode(a.typ, &v, &tid),
                    Ok(t),
                    "TURN attribute 0x{:04x} does not round-trip",
                    a.typ
                );
            }
        }
        let _ = turn::attributes::peer_addresses(&m);
    }
    for cd in [ChannelData::decode(data), ChannelData::decode_rfc5766(data)]
        .into_iter()
        .flatten()
    {
        assert!(cd.data.len() + 4 <= data.len());
        let mut out = Vec::new();
        cd.encode(&mut out).expect("a decoded channel encodes");
        assert_eq!(ChannelData::decode_rfc5766(&out), Ok(cd));
    }
    if let Ok((cd, used)) = ChannelData::decode_stream(data) {
        assert!(used <= data.len() && cd.data.len() + 4 <= used);
    }

    let listen: SocketAddr = ([192, 0, 2, 1], 3478).into();
    let relay: SocketAddr = ([192, 0, 2, 1], 50000).into();
    let sender: SocketAddr = ([203, 0, 113, 1], 5000).into();
    let mut config = turn::ServerConfig::new(listen, vec![relay], "fuzz");
    config.users.push(("u".into(), "p".into()));
    let now = Instant::now();
    let mut server = turn::Server::new(config, now, &mut rand::rngs::StdRng::seed_from_u64(0));
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
    while let Some(t) = server.poll_transmit() {
        // No allocation exists and no credentials can match: only answers
        // (errors) to the sender from the listening address.
        assert_eq!(t.destination, sender, "the server sent to a stranger");
        assert_eq!(
            t.source,
            Some(listen),
            "the server relayed without an allocation"
        );
        assert!(Message::decode(&t.contents).is_ok(), "server sent garbage");
    }
    assert_eq!(server.allocations(), 0);

    let mut client = turn::Client::new(
        turn::ClientConfig::new(listen, "u", "p"),
        rand::rngs::StdRng::seed_from_u64(0),
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

/// The harness of the `signaling_rooms` target: the bytes are a script of
/// client actions against [`crate::signaling::Rooms`] (rooms of three,
/// 200-byte messages). Frames are split at 0x00; a frame's first byte picks
/// one of four clients (low 2 bits) and what it does (next 2 bits: text,
/// disconnect and reconnect, binary, bye); the rest is its text. After each
/// step, every room's books must balance and every message must go to a
/// connected client.
pub fn signaling_rooms(data: &[u8]) {
    use crate::signaling::room::Config;
    use crate::signaling::{ClientId, Rooms};

    let config = Config {
        room_size: 3,
        max_message_bytes: 200,
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
