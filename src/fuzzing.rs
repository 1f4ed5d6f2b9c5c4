//! Fuzz harnesses: the functions the cargo-fuzz targets in `fuzz/` call, kept
//! in the library so that `cargo test` replays the checked-in corpus through
//! exactly the same code (tests/fuzz_corpus.rs).
//!
//! Each harness does everything a receiver might do with untrusted bytes and
//! checks the invariants that must hold; it panics only on a real bug.

use std::net::SocketAddr;
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
