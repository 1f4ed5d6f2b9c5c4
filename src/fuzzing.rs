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
