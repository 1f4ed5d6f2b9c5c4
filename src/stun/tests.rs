//! STUN unit tests: RFC 5769 vectors in both directions, codec rules, the
//! client's retransmission schedule, the server's answers, and property tests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::machine::{Machine, Receive};

/// Hex as the RFC prints it (spaces and line breaks) to bytes.
pub(crate) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

// RFC 5769 §2.1–2.4 (the padding of SOFTWARE and USERNAME in 2.1–2.3 is 0x20).
pub(crate) const SAMPLE_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

pub(crate) const SAMPLE_IPV4_RESPONSE: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

pub(crate) const SAMPLE_IPV6_RESPONSE: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

pub(crate) const SAMPLE_LONG_TERM_REQUEST: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

const SHORT_TERM_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
const VECTOR_TID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

#[test]
fn rfc5769_sample_request_decodes_and_verifies() {
    let bytes = hex(SAMPLE_REQUEST);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.message_type(), MessageType::BINDING_REQUEST);
    assert_eq!(m.transaction_id(), TransactionId(VECTOR_TID));
    assert_eq!(
        m.attribute(attr::SOFTWARE).unwrap(),
        Some(Attribute::Software("STUN test client"))
    );
    assert_eq!(
        m.attribute(attr::PRIORITY).unwrap(),
        Some(Attribute::Priority(0x6e0001ff))
    );
    assert_eq!(
        m.attribute(attr::ICE_CONTROLLED).unwrap(),
        Some(Attribute::IceControlled(0x932ff9b151263b36))
    );
    assert_eq!(m.username().unwrap(), Some("evtj:h6vY"));
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    m.verify_integrity(&key).unwrap();
    assert_eq!(m.verify_fingerprint(), Ok(true));
    assert_eq!(
        m.verify_integrity(&IntegrityKey::short_term("wrong")),
        Err(Error::IntegrityMismatch)
    );
}

#[test]
fn rfc5769_sample_request_encodes_byte_for_byte() {
    let mut out = Vec::new();
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    MessageEncoder::new(
        &mut out,
        MessageType::BINDING_REQUEST,
        TransactionId(VECTOR_TID),
    )
    .padding_byte(0x20)
    .attribute(&Attribute::Software("STUN test client"))
    .attribute(&Attribute::Priority(0x6e0001ff))
    .attribute(&Attribute::IceControlled(0x932ff9b151263b36))
    .attribute(&Attribute::Username("evtj:h6vY"))
    .message_integrity(&key)
    .fingerprint()
    .finish()
    .unwrap();
    assert_eq!(out, hex(SAMPLE_REQUEST));
}

fn check_response_vector(vector: &str, mapped: SocketAddr) {
    let bytes = hex(vector);
    let m = Message::parse(&bytes).unwrap();
    assert_eq!(m.message_type(), MessageType::BINDING_SUCCESS);
    assert_eq!(m.xor_mapped_address().unwrap(), Some(mapped));
    assert_eq!(
        m.attribute(attr::SOFTWARE).unwrap(),
        Some(Attribute::Software("test vector"))
    );
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    m.verify_integrity(&key).unwrap();
    assert_eq!(m.verify_fingerprint(), Ok(true));

    let mut out = Vec::new();
    MessageEncoder::new(
        &mut out,
        MessageType::BINDING_SUCCESS,
        TransactionId(VECTOR_TID),
    )
    .padding_byte(0x20)
    .attribute(&Attribute::Software("test vector"))
    .attribute(&Attribute::XorMappedAddress(mapped))
    .message_integrity(&key)
    .fingerprint()
    .finish()
    .unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn rfc5769_ipv4_response_both_directions() {
    check_response_vector(
        SAMPLE_IPV4_RESPONSE,
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 32853),
    );
}

#[test]
fn rfc5769_ipv6_response_both_directions() {
    check_response_vector(
        SAMPLE_IPV6_RESPONSE,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap(),
    );
}

#[test]
fn rfc5769_long_term_request_both_directions() {
    let bytes = hex(SAMPLE_LONG_TERM_REQUEST);
    let m = Message::parse(&bytes).unwrap();
    let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    assert_eq!(m.username().unwrap(), Some(username));
    assert_eq!(
        m.attribute(attr::NONCE).unwrap(),
        Some(Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA"))
    );
    assert_eq!(
        m.attribute(attr::REALM).unwrap(),
        Some(Attribute::Realm("example.org"))
    );
    assert!(!m.has_fingerprint());
    // The password "The<U+00AD>M<U+00AA>tr<U+2168>" after SASLprep.
    let key = IntegrityKey::long_term(username, "example.org", "TheMatrIX", PasswordAlgorithm::Md5)
        .unwrap();
    m.verify_integrity(&key).unwrap();

    let mut out = Vec::new();
    MessageEncoder::new(&mut out, MessageType::BINDING_REQUEST, m.transaction_id())
        .attribute(&Attribute::Username(username))
        .attribute(&Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA"))
        .attribute(&Attribute::Realm("example.org"))
        .message_integrity(&key)
        .finish()
        .unwrap();
    assert_eq!(out, bytes);
}

#[test]
fn message_type_interleaving() {
    // RFC 8489 §5: Binding request 0x0001, success 0x0101, error 0x0111;
    // TURN Allocate error 0x0113, Send indication 0x0016.
    let cases = [
        (Class::Request, Method::BINDING, 0x0001),
        (Class::Success, Method::BINDING, 0x0101),
        (Class::Error, Method::BINDING, 0x0111),
        (Class::Indication, Method::BINDING, 0x0011),
        (Class::Error, Method::ALLOCATE, 0x0113),
        (Class::Indication, Method::SEND, 0x0016),
        (Class::Error, Method::new(0xFFF).unwrap(), 0x3FFF),
    ];
    for (class, method, v) in cases {
        let t = MessageType::new(class, method);
        assert_eq!(t.to_u16(), v, "{class:?} {method:?}");
        assert_eq!(MessageType::from_u16(v), t);
    }
    assert_eq!(Method::new(0x1000), None);
}

#[test]
fn malformed_headers_are_rejected_with_reasons() {
    let good = hex(SAMPLE_REQUEST);
    assert!(matches!(
        Message::parse(&good[..19]),
        Err(Error::Truncated { .. })
    ));
    assert!(matches!(
        Message::parse(&good[..good.len() - 4]),
        Err(Error::Truncated { .. })
    ));
    let mut b = good.clone();
    b[0] |= 0x80;
    assert!(matches!(Message::parse(&b), Err(Error::BadHeader(_))));
    let mut b = good.clone();
    b[5] ^= 1;
    assert_eq!(
        Message::parse(&b),
        Err(Error::BadHeader("wrong magic cookie"))
    );
    let mut b = good.clone();
    b[3] += 2;
    assert!(Message::parse(&b).is_err());
    let mut b = good.clone();
    b.extend_from_slice(&[0, 0, 0, 0]);
    assert!(Message::parse(&b).is_err());
    // An attribute whose length overruns the message.
    let mut b = good.clone();
    b[22] = 0x01;
    assert!(matches!(
        Message::parse(&b),
        Err(Error::Truncated { offset: 20, .. })
    ));
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let tid = TransactionId([7; 12]);
    let key = IntegrityKey::short_term("pw");
    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(&mut out, MessageType::BINDING_REQUEST, tid);
    enc.attribute(&Attribute::Priority(1))
        .message_integrity(&key);
    enc.finish().unwrap();
    // Append a SOFTWARE after MESSAGE-INTEGRITY (as an attacker could).
    out.extend_from_slice(&[0x80, 0x22, 0, 4, b'e', b'v', b'i', b'l']);
    let len = (out.len() - 20) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let m = Message::parse(&out).unwrap();
    assert_eq!(m.attribute(attr::SOFTWARE).unwrap(), None);
    m.verify_integrity(&key).unwrap();
    let types: Vec<u16> = m.attributes().map(|a| a.typ).collect();
    assert_eq!(types, vec![attr::PRIORITY, attr::MESSAGE_INTEGRITY]);
}

#[test]
fn integrity_sha256_and_truncation() {
    let tid = TransactionId([9; 12]);
    let key = IntegrityKey::long_term("user", "realm", "pass", PasswordAlgorithm::Sha256).unwrap();
    let mut out = Vec::new();
    MessageEncoder::new(&mut out, MessageType::BINDING_REQUEST, tid)
        .attribute(&Attribute::Username("user"))
        .message_integrity(&key)
        .message_integrity_sha256(&key)
        .fingerprint()
        .finish()
        .unwrap();
    let m = Message::parse(&out).unwrap();
    m.verify_integrity(&key).unwrap();
    assert_eq!(m.verify_fingerprint(), Ok(true));
    let other = IntegrityKey::short_term("x");
    assert_eq!(m.verify_integrity(&other), Err(Error::IntegrityMismatch));

    // A truncated (16-byte) MESSAGE-INTEGRITY-SHA256 verifies too.
    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(&mut out, MessageType::BINDING_REQUEST, tid);
    enc.attribute(&Attribute::Username("user"));
    enc.finish().unwrap();
    let len = (out.len() - 20 + 20) as u16;
    out[2..4].copy_from_slice(&len.to_be_bytes());
    let full = key.hmac_sha256(&out);
    out.extend_from_slice(&[0x00, 0x1C, 0, 16]);
    out.extend_from_slice(&full[..16]);
    let m = Message::parse(&out).unwrap();
    m.verify_integrity(&key).unwrap();
    let mut bad = out.clone();
    let n = bad.len();
    bad[n - 1] ^= 1;
    assert_eq!(
        Message::parse(&bad).unwrap().verify_integrity(&key),
        Err(Error::IntegrityMismatch)
    );
}

#[test]
fn flipped_bits_fail_integrity_or_fingerprint() {
    let bytes = hex(SAMPLE_REQUEST);
    let key = IntegrityKey::short_term(SHORT_TERM_PASSWORD);
    for i in 20..bytes.len() - 8 {
        let mut b = bytes.clone();
        b[i] ^= 0x01;
        if let Ok(m) = Message::parse(&b) {
            assert!(
                m.verify_integrity(&key).is_err() || m.verify_fingerprint().is_err(),
                "flip at {i} went unnoticed"
            );
        }
    }
}

#[test]
fn password_algorithms_and_userhash() {
    let mut v = Vec::new();
    attributes::PasswordAlgorithms::emit(
        &[
            (PasswordAlgorithm::Sha256, &[]),
            (PasswordAlgorithm::Md5, &[]),
        ],
        &mut v,
    );
    let tid = TransactionId([1; 12]);
    let a = Attribute::parse(attr::PASSWORD_ALGORITHMS, &v, &tid).unwrap();
    let Attribute::PasswordAlgorithms(list) = a else {
        panic!("wrong type")
    };
    let algs: Vec<_> = list.iter().map(|(a, _)| a).collect();
    assert_eq!(
        algs,
        vec![PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5]
    );
    // Lying parameter length.
    assert!(Attribute::parse(attr::PASSWORD_ALGORITHMS, &[0, 1, 0, 9, 0, 0], &tid).is_err());
    // USERHASH is SHA-256("user:realm").
    let h = integrity::userhash("user", "realm");
    let d = ring::digest::digest(&ring::digest::SHA256, b"user:realm");
    assert_eq!(&h[..], d.as_ref());
}

#[test]
fn error_code_grammar() {
    let tid = TransactionId([0; 12]);
    let mut v = Vec::new();
    Attribute::ErrorCode(ErrorCode {
        code: 420,
        reason: "Unknown Attribute",
    })
    .emit_value(&tid, &mut v);
    assert_eq!(&v[..4], &[0, 0, 4, 20]);
    assert!(Attribute::parse(attr::ERROR_CODE, &[0, 0, 2, 0], &tid).is_err());
    assert!(Attribute::parse(attr::ERROR_CODE, &[0, 0, 4, 100], &tid).is_err());
    assert!(Attribute::parse(attr::ERROR_CODE, &[0, 0, 4], &tid).is_err());
}

// ---- client transactions -------------------------------------------------

fn binding_request(tid: TransactionId) -> Vec<u8> {
    let mut out = Vec::new();
    MessageEncoder::new(&mut out, MessageType::BINDING_REQUEST, tid)
        .fingerprint()
        .finish()
        .unwrap();
    out
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn client_retransmits_on_the_rfc_schedule_and_times_out_at_39_5_s() {
    let t0 = Instant::now();
    let mut c = Client::new(client::Config::default());
    let tid = TransactionId([1; 12]);
    c.start(t0, binding_request(tid), addr("192.0.2.1:3478"), None, None)
        .unwrap();
    let mut sends = Vec::new();
    let mut now = t0;
    loop {
        while c.poll_transmit().is_some() {
            sends.push(now.duration_since(t0).as_millis());
        }
        if let Some(client::Event::Completed { result, .. }) = c.poll_event() {
            assert!(matches!(result, Err(TransactionError::Timeout { .. })));
            break;
        }
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
    }
    assert_eq!(sends, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(now.duration_since(t0), Duration::from_millis(39500));
    assert_eq!(
        client::Config::default().timeout(),
        Duration::from_millis(39500)
    );
    assert_eq!(c.pending(), 0);
}

fn success_for(tid: TransactionId, mapped: SocketAddr, key: Option<&IntegrityKey>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(&mut out, MessageType::BINDING_SUCCESS, tid);
    enc.attribute(&Attribute::XorMappedAddress(mapped));
    if let Some(k) = key {
        enc.message_integrity(k);
    }
    enc.fingerprint().finish().unwrap();
    out
}

#[test]
fn client_matches_by_transaction_id_and_checks_integrity() {
    let t0 = Instant::now();
    let server = addr("192.0.2.1:3478");
    let local = addr("10.0.0.1:5000");
    let key = IntegrityKey::short_term("secret");
    let mut c = Client::new(client::Config::default());
    let tid = TransactionId([2; 12]);
    c.start(t0, binding_request(tid), server, None, Some(key.clone()))
        .unwrap();
    let mapped = addr("203.0.113.9:40000");
    fn rx(b: &[u8], source: SocketAddr, destination: SocketAddr) -> Receive<'_> {
        Receive {
            source,
            destination,
            contents: b,
        }
    }
    // Another transaction's response is not ours.
    assert!(!c.handle_response(
        t0,
        rx(
            &success_for(TransactionId([3; 12]), mapped, None),
            server,
            local
        )
    ));
    // A response without integrity is discarded; one with the wrong key too.
    assert!(c.handle_response(t0, rx(&success_for(tid, mapped, None), server, local)));
    let wrong = IntegrityKey::short_term("other");
    assert!(c.handle_response(
        t0,
        rx(&success_for(tid, mapped, Some(&wrong)), server, local)
    ));
    assert!(c.poll_event().is_none());
    assert!(c.is_pending(tid));
    // The right one completes it.
    assert!(c.handle_response(t0, rx(&success_for(tid, mapped, Some(&key)), server, local)));
    match c.poll_event() {
        Some(client::Event::Completed { id, result: Ok(r) }) => {
            assert_eq!(id, tid);
            assert_eq!(
                r.message().unwrap().xor_mapped_address().unwrap(),
                Some(mapped)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(!c.is_pending(tid));
}

#[test]
fn client_surfaces_error_responses() {
    let t0 = Instant::now();
    let server = addr("192.0.2.1:3478");
    let mut c = Client::new(client::Config::default());
    let tid = TransactionId([4; 12]);
    c.start(t0, binding_request(tid), server, None, None)
        .unwrap();
    let mut out = Vec::new();
    MessageEncoder::new(&mut out, MessageType::BINDING_ERROR, tid)
        .attribute(&Attribute::ErrorCode(ErrorCode {
            code: 438,
            reason: "Stale Nonce",
        }))
        .finish()
        .unwrap();
    c.handle_response(
        t0,
        Receive {
            source: server,
            destination: addr("10.0.0.1:1"),
            contents: &out,
        },
    );
    match c.poll_event() {
        Some(client::Event::Completed {
            result: Err(TransactionError::ErrorResponse { code, reason, .. }),
            ..
        }) => {
            assert_eq!(code, 438);
            assert_eq!(reason, "Stale Nonce");
        }
        other => panic!("unexpected {other:?}"),
    }
}

// ---- server --------------------------------------------------------------

fn ask(
    server: &mut BindingServer,
    request: &[u8],
    from: SocketAddr,
    to: SocketAddr,
) -> Vec<crate::machine::Transmit> {
    server.handle_receive(
        Instant::now(),
        Receive {
            source: from,
            destination: to,
            contents: request,
        },
    );
    std::iter::from_fn(|| server.poll_transmit()).collect()
}

#[test]
fn server_answers_binding_with_xor_mapped_software_fingerprint() {
    let primary = addr("192.0.2.1:3478");
    let mut cfg = server::Config::new(primary);
    assert_eq!(cfg.software, None, "SOFTWARE is off by default");
    cfg.software = Some(server::SOFTWARE.to_string());
    let mut s = BindingServer::new(cfg).unwrap();
    let client = addr("203.0.113.5:61000");
    let req = binding_request(TransactionId([5; 12]));
    let out = ask(&mut s, &req, client, primary);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].destination, client);
    assert_eq!(out[0].source, Some(primary));
    let m = Message::parse(&out[0].contents).unwrap();
    assert_eq!(m.message_type(), MessageType::BINDING_SUCCESS);
    assert_eq!(m.transaction_id(), TransactionId([5; 12]));
    assert_eq!(m.xor_mapped_address().unwrap(), Some(client));
    assert!(matches!(
        m.attribute(attr::SOFTWARE).unwrap(),
        Some(Attribute::Software(_))
    ));
    assert_eq!(m.verify_fingerprint(), Ok(true));
    // No RFC 5780 attributes without an alternate address.
    assert!(m.get(attr::OTHER_ADDRESS).is_none());
}

#[test]
fn server_answers_420_for_unknown_required_and_ignores_optional() {
    let primary = addr("192.0.2.1:3478");
    let mut s = BindingServer::new(server::Config::new(primary)).unwrap();
    let client = addr("203.0.113.5:61000");
    let tid = TransactionId([6; 12]);
    let mut req = Vec::new();
    MessageEncoder::new(&mut req, MessageType::BINDING_REQUEST, tid)
        .raw_attribute(0x7F01, b"x")
        .raw_attribute(0xC057, &[0, 1, 0, 10]) // GOOG-NETWORK-INFO: optional
        .attribute(&Attribute::ChangeRequest {
            change_ip: true,
            change_port: false,
        }) // unknown without an alternate address
        .finish()
        .unwrap();
    let out = ask(&mut s, &req, client, primary);
    let m = Message::parse(&out[0].contents).unwrap();
    assert_eq!(m.message_type(), MessageType::BINDING_ERROR);
    assert_eq!(m.error_code().unwrap().unwrap().code, 420);
    let Some(Attribute::UnknownAttributes(list)) = m.attribute(attr::UNKNOWN_ATTRIBUTES).unwrap()
    else {
        panic!("no UNKNOWN-ATTRIBUTES")
    };
    assert_eq!(
        list.iter().collect::<Vec<_>>(),
        vec![0x7F01, attr::CHANGE_REQUEST]
    );

    // Only the optional one: answered normally.
    let mut req = Vec::new();
    MessageEncoder::new(&mut req, MessageType::BINDING_REQUEST, tid)
        .raw_attribute(0xC057, &[0, 1, 0, 10])
        .finish()
        .unwrap();
    let out = ask(&mut s, &req, client, primary);
    assert_eq!(
        Message::parse(&out[0].contents).unwrap().class(),
        Class::Success
    );
}

#[test]
fn server_answers_nothing_malformed_and_no_indications() {
    let primary = addr("192.0.2.1:3478");
    let mut s = BindingServer::new(server::Config::new(primary)).unwrap();
    let client = addr("203.0.113.5:61000");
    let good = binding_request(TransactionId([8; 12]));
    // Bad fingerprint.
    let mut b = good.clone();
    let n = b.len();
    b[n - 1] ^= 1;
    assert!(ask(&mut s, &b, client, primary).is_empty());
    // Indication.
    let mut ind = Vec::new();
    MessageEncoder::new(
        &mut ind,
        MessageType::new(Class::Indication, Method::BINDING),
        TransactionId([8; 12]),
    )
    .finish()
    .unwrap();
    assert!(ask(&mut s, &ind, client, primary).is_empty());
    // A response (reflection loops).
    let resp = success_for(TransactionId([8; 12]), client, None);
    assert!(ask(&mut s, &resp, client, primary).is_empty());
    // A malformed XOR-MAPPED-ADDRESS inside a request.
    let mut req = Vec::new();
    MessageEncoder::new(
        &mut req,
        MessageType::BINDING_REQUEST,
        TransactionId([8; 12]),
    )
    .raw_attribute(attr::XOR_MAPPED_ADDRESS, &[0, 9, 0, 0])
    .finish()
    .unwrap();
    assert!(ask(&mut s, &req, client, primary).is_empty());
    assert_eq!(s.stats().dropped, 4);
}

#[test]
fn server_rfc5780_change_request_and_response_port() {
    let primary = addr("192.0.2.1:3478");
    let alternate = addr("192.0.2.2:3479");
    let mut cfg = server::Config::new(primary);
    cfg.alternate = Some(alternate);
    let mut s = BindingServer::new(cfg).unwrap();
    assert_eq!(
        s.local_addrs(),
        &[
            primary,
            addr("192.0.2.1:3479"),
            addr("192.0.2.2:3478"),
            alternate
        ]
    );
    let client = addr("203.0.113.5:61000");
    for (ip, port, from) in [
        (false, false, primary),
        (true, true, alternate),
        (false, true, addr("192.0.2.1:3479")),
        (true, false, addr("192.0.2.2:3478")),
    ] {
        let mut req = Vec::new();
        MessageEncoder::new(
            &mut req,
            MessageType::BINDING_REQUEST,
            TransactionId([1; 12]),
        )
        .attribute(&Attribute::ChangeRequest {
            change_ip: ip,
            change_port: port,
        })
        .finish()
        .unwrap();
        let out = ask(&mut s, &req, client, primary);
        assert_eq!(out[0].source, Some(from));
        let m = Message::parse(&out[0].contents).unwrap();
        assert_eq!(m.address(attr::RESPONSE_ORIGIN).unwrap(), Some(from));
        assert_eq!(m.mapped_address().unwrap(), Some(client));
        assert_eq!(m.address(attr::OTHER_ADDRESS).unwrap(), Some(alternate));
    }
    let mut req = Vec::new();
    MessageEncoder::new(
        &mut req,
        MessageType::BINDING_REQUEST,
        TransactionId([1; 12]),
    )
    .attribute(&Attribute::ResponsePort(7000))
    .finish()
    .unwrap();
    let out = ask(&mut s, &req, client, primary);
    assert_eq!(out[0].destination, addr("203.0.113.5:7000"));

    // Bad configurations.
    let mut cfg = server::Config::new(primary);
    cfg.alternate = Some(addr("192.0.2.1:3479"));
    assert!(BindingServer::new(cfg).is_err());
}

#[test]
fn server_never_amplifies() {
    let primary = addr("[2001:db8::1]:3478");
    let mut cfg = server::Config::new(primary);
    cfg.alternate = Some(addr("[2001:db8::2]:3479"));
    cfg.software = Some("x".repeat(1000));
    let mut s = BindingServer::new(cfg).unwrap();
    let client = addr("[2001:db8::99]:61000");
    let req = binding_request(TransactionId([1; 12]));
    let out = ask(&mut s, &req, client, primary);
    assert!(out[0].contents.len() <= server::MAX_RESPONSE_LEN);
    // A request carrying PADDING gets no bigger answer.
    let mut padded = Vec::new();
    MessageEncoder::new(
        &mut padded,
        MessageType::BINDING_REQUEST,
        TransactionId([1; 12]),
    )
    .attribute(&Attribute::Padding(&[0; 1000]))
    .fingerprint()
    .finish()
    .unwrap();
    let out2 = ask(&mut s, &padded, client, primary);
    assert_eq!(out2[0].contents.len(), out[0].contents.len());
}

#[test]
fn server_refuses_padding_with_response_port() {
    // RFC 5780 §6.1, §7.5: PADDING and RESPONSE-PORT together get a 400.
    let primary = addr("192.0.2.1:3478");
    let mut s = BindingServer::new(server::Config::new(primary)).unwrap();
    let client = addr("203.0.113.5:61000");
    let mut req = Vec::new();
    MessageEncoder::new(
        &mut req,
        MessageType::BINDING_REQUEST,
        TransactionId([3; 12]),
    )
    .attribute(&Attribute::ResponsePort(9))
    .attribute(&Attribute::Padding(&[0; 64]))
    .finish()
    .unwrap();
    let out = ask(&mut s, &req, client, primary);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].destination, client,
        "the error goes to the real source"
    );
    let m = Message::parse(&out[0].contents).unwrap();
    assert_eq!(m.error_code().unwrap().unwrap().code, 400);
}

// ---- property tests ------------------------------------------------------

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// Owned inputs from which every typed attribute can be built.
#[derive(Debug, Clone)]
enum Owned {
    Addr(u8, SocketAddr),
    Text(u8, String),
    U32(u32),
    U64(u8, u64),
    Bytes(Vec<u8>),
    Error(u16, String),
    Change(bool, bool),
    Port(u16),
    UseCandidate,
    Hash([u8; 32]),
    Algorithm(u16, Vec<u8>),
    Unknown(Vec<u16>),
    Other(u16, Vec<u8>),
}

fn arb_owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (0u8..5, arb_addr()).prop_map(|(k, a)| Owned::Addr(k, a)),
        (0u8..5, "[a-zA-Z0-9 :/.é]{0,40}").prop_map(|(k, s)| Owned::Text(k, s)),
        any::<u32>().prop_map(Owned::U32),
        (0u8..2, any::<u64>()).prop_map(|(k, v)| Owned::U64(k, v)),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Owned::Bytes),
        (300u16..700, "[a-zA-Z ]{0,30}").prop_map(|(c, r)| Owned::Error(c, r)),
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Owned::Change(a, b)),
        any::<u16>().prop_map(Owned::Port),
        Just(Owned::UseCandidate),
        any::<[u8; 32]>().prop_map(Owned::Hash),
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..12))
            .prop_map(|(a, p)| Owned::Algorithm(a, p)),
        prop::collection::vec(any::<u16>(), 0..6).prop_map(Owned::Unknown),
        (
            prop_oneof![0x8030u16..0xFFFF, 0x0030u16..0x7FFF],
            prop::collection::vec(any::<u8>(), 0..40)
        )
            .prop_map(|(t, v)| Owned::Other(t, v)),
    ]
}

fn with_attribute<T>(o: &Owned, scratch: &mut Vec<u8>, f: impl FnOnce(Attribute<'_>) -> T) -> T {
    let a = match o {
        Owned::Addr(0, a) => Attribute::MappedAddress(*a),
        Owned::Addr(1, a) => Attribute::XorMappedAddress(*a),
        Owned::Addr(2, a) => Attribute::AlternateServer(*a),
        Owned::Addr(3, a) => Attribute::ResponseOrigin(*a),
        Owned::Addr(_, a) => Attribute::OtherAddress(*a),
        Owned::Text(0, s) => Attribute::Username(s),
        Owned::Text(1, s) => Attribute::Realm(s),
        Owned::Text(2, s) => Attribute::Nonce(s),
        Owned::Text(3, s) => Attribute::Software(s),
        Owned::Text(_, s) => Attribute::AlternateDomain(s),
        Owned::U32(v) => Attribute::Priority(*v),
        Owned::U64(0, v) => Attribute::IceControlled(*v),
        Owned::U64(_, v) => Attribute::IceControlling(*v),
        Owned::Bytes(v) => Attribute::Padding(v),
        Owned::Error(c, r) => Attribute::ErrorCode(ErrorCode {
            code: *c,
            reason: r,
        }),
        Owned::Change(a, b) => Attribute::ChangeRequest {
            change_ip: *a,
            change_port: *b,
        },
        Owned::Port(p) => Attribute::ResponsePort(*p),
        Owned::UseCandidate => Attribute::UseCandidate,
        Owned::Hash(h) => Attribute::UserHash(h),
        Owned::Algorithm(a, p) => Attribute::PasswordAlgorithm(PasswordAlgorithm::from_code(*a), p),
        Owned::Unknown(list) => {
            attributes::emit_unknown_attributes(list, scratch);
            Attribute::UnknownAttributes(attributes::unknown_attributes(scratch).unwrap())
        }
        Owned::Other(t, v) => Attribute::Other { typ: *t, value: v },
    };
    f(a)
}

proptest! {
    #[test]
    fn every_attribute_round_trips(o in arb_owned(), tid in any::<[u8; 12]>()) {
        let tid = TransactionId(tid);
        let mut scratch = Vec::new();
        with_attribute(&o, &mut scratch, |a| {
            let mut v = Vec::new();
            a.emit_value(&tid, &mut v);
            let back = Attribute::parse(a.typ(), &v, &tid).unwrap();
            prop_assert_eq!(back, a);
            Ok(())
        })?;
    }

    #[test]
    fn messages_round_trip(
        attrs in prop::collection::vec(arb_owned(), 0..8),
        tid in any::<[u8; 12]>(),
        class in 0u16..4,
        method in 0u16..0x1000,
        integrity in any::<bool>(),
        sha256 in any::<bool>(),
        fingerprint in any::<bool>(),
    ) {
        let tid = TransactionId(tid);
        let typ = MessageType::from_u16(MessageType::new(Class::Request, Method::new(method).unwrap()).to_u16() | ((class & 1) << 4) | ((class & 2) << 7));
        let key = IntegrityKey::short_term("pw");
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(&mut out, typ, tid);
        let mut scratches = vec![Vec::new(); attrs.len()];
        for (o, s) in attrs.iter().zip(scratches.iter_mut()) {
            with_attribute(o, s, |a| { enc.attribute(&a); });
        }
        if integrity { enc.message_integrity(&key); }
        if sha256 { enc.message_integrity_sha256(&key); }
        if fingerprint { enc.fingerprint(); }
        enc.finish().unwrap();
        let m = Message::parse(&out).unwrap();
        prop_assert_eq!(m.message_type(), typ);
        prop_assert_eq!(m.transaction_id(), tid);
        let mut got = m.attributes();
        let mut scratch = Vec::new();
        for o in &attrs {
            let raw = got.next().unwrap();
            let decoded = Attribute::parse(raw.typ, raw.value, &tid).unwrap();
            with_attribute(o, &mut scratch, |a| { prop_assert_eq!(decoded, a); Ok(()) })?;
            scratch.clear();
        }
        if integrity || sha256 {
            m.verify_integrity(&key).unwrap();
        }
        prop_assert_eq!(m.verify_fingerprint(), Ok(fingerprint));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        poke(&bytes);
    }

    #[test]
    fn arbitrary_bodies_behind_a_valid_header_never_panic(body in prop::collection::vec(any::<u8>(), 0..50), tid in any::<[u8; 12]>()) {
        let body_len = body.len() / 4 * 4;
        let mut b = vec![0, 1, (body_len >> 8) as u8, body_len as u8, 0x21, 0x12, 0xa4, 0x42];
        b.extend_from_slice(&tid);
        b.extend_from_slice(&body[..body_len]);
        poke(&b);
    }
}

/// Everything a receiver might do with untrusted bytes: the fuzz harness.
pub(crate) fn poke(bytes: &[u8]) {
    crate::fuzzing::stun_message(bytes);
}

/// The answer's size for each smallest request that elicits it: a forged
/// source address makes every answer traffic at a victim, so these bounds
/// keep the amplification from creeping back (SOFTWARE and an unasked
/// FINGERPRINT would add 16 and 8 bytes).
#[test]
fn server_answers_stay_small() {
    let primary = addr("192.0.2.1:3478");
    let mut s = BindingServer::new(server::Config::new(primary)).unwrap();
    let v4 = addr("203.0.113.5:61000");
    let v6 = addr("[2001:db8::5]:61000");
    let tid = TransactionId([7; 12]);
    let mut bare = Vec::new();
    MessageEncoder::new(&mut bare, MessageType::BINDING_REQUEST, tid)
        .finish()
        .unwrap();
    assert_eq!(bare.len(), 20);
    let len = |s: &mut BindingServer, req: &[u8], from| {
        let out = ask(s, req, from, primary);
        assert_eq!(out.len(), 1);
        out[0].contents.len()
    };
    // Binding: the header and XOR-MAPPED-ADDRESS, nothing else.
    assert_eq!(len(&mut s, &bare, v4), 32);
    assert_eq!(len(&mut s, &bare, v6), 44);
    // FINGERPRINT only when asked for (the request had one).
    assert_eq!(len(&mut s, &binding_request(tid), v4), 40);
    // 400 to a 20-byte request of another method.
    let mut other = Vec::new();
    MessageEncoder::new(
        &mut other,
        MessageType::new(Class::Request, Method::ALLOCATE),
        tid,
    )
    .finish()
    .unwrap();
    assert!(len(&mut s, &other, v4) <= 40);
    // 420 to a 24-byte Binding with one unknown required attribute.
    let mut unknown = Vec::new();
    MessageEncoder::new(&mut unknown, MessageType::BINDING_REQUEST, tid)
        .raw_attribute(0x7F01, b"")
        .finish()
        .unwrap();
    assert_eq!(unknown.len(), 24);
    assert!(len(&mut s, &unknown, v4) <= 56);
}
