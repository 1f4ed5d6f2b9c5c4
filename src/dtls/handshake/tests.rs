use super::*;
use crate::dtls::record::{ContentType, RecordLayer};
use crate::dtls::test_util::hex;
use proptest::collection::vec;
use proptest::prelude::*;

/// Chromium's ClientHello from `shared/fixtures/chromium_dtls_handshake_tshark.txt`
/// (frames 5 and 6), rebuilt field by field from the tshark decode. The
/// decode prints only the first 36 bytes of the 1,216-byte X25519MLKEM768
/// share; the rest is filled with zeros. Every length matches the capture:
/// 1,413-byte body, 1,343 bytes of extensions.
pub(crate) fn chromium_client_hello_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(hex("fefd"));
    b.extend(hex(
        "56130cc93a846e1a864769c1d3fe4a4d274a5d7da8576c3095d444f6cbc2c62d",
    ));
    b.extend(hex("00 00")); // session_id, cookie
    b.extend(hex(
        "001c 1301 1302 1303 c02b c02f cca9 cca8 c009 c013 c00a c014 009c 002f 0035",
    ));
    b.extend(hex("01 00"));
    let mut ext = Vec::new();
    ext.extend(hex("002d 0002 01 01")); // psk_key_exchange_modes
    ext.extend(hex("0033 04ea 04e8")); // key_share: 1258, client_shares 1256
    ext.extend(hex("11ec 04c0"));
    let mut share = hex("44e457174b7aa50ab599613785faa88dd4a315527ee7842bc6654e5d650cce5c8f6ac996");
    share.resize(1216, 0);
    ext.extend(share);
    ext.extend(hex(
        "001d 0020 82d13a253e8502ec73976fc7d2abb4e769d210357a9b483400831e03dda7bb52",
    ));
    ext.extend(hex("000e 0009 0006 0001 0008 0007 00")); // use_srtp
    ext.extend(hex("0017 0000")); // extended_master_secret
    ext.extend(hex("000b 0002 01 00")); // ec_point_formats
    ext.extend(hex("ff01 0001 00")); // renegotiation_info
    ext.extend(hex(
        "000d 0014 0012 0403 0804 0401 0503 0805 0501 0806 0601 0201",
    ));
    ext.extend(hex("000a 000a 0008 11ec 001d 0017 0018")); // supported_groups
    ext.extend(hex("002b 0005 04 fefc fefd")); // supported_versions
    assert_eq!(ext.len(), 1343);
    b.extend((ext.len() as u16).to_be_bytes());
    b.extend(ext);
    assert_eq!(b.len(), 1413);
    b
}

/// Firefox ESR's ClientHello from `shared/fixtures/firefox_dtls_handshake_tshark.txt`
/// (frames 5 and 6), rebuilt from the decode (key shares zero-filled):
/// 1,461 bytes, 1,399 of extensions, ALPN `webrtc`/`c-webrtc`,
/// delegated_credentials, record_size_limit, TLS 1.2 among the versions.
pub(crate) fn firefox_client_hello_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(hex("fefd"));
    b.extend(hex(
        "7c762a6ae7c0dcf5e7b2502c9bbb5fb5d966f5a8a57d95c59b24d3c2f6a91c68",
    ));
    b.extend(hex("00 00"));
    b.extend(hex(
        "0014 1301 1303 c02b c02f cca9 cca8 c00a c009 c013 c014",
    ));
    b.extend(hex("01 00"));
    let mut ext = Vec::new();
    ext.extend(hex("0017 0000"));
    ext.extend(hex("ff01 0001 00"));
    ext.extend(hex("000a 000e 000c 11ec 001d 0017 0018 0100 0101"));
    ext.extend(hex("000b 0002 01 00"));
    ext.extend(hex("0010 0012 0010 06"));
    ext.extend(b"webrtc");
    ext.push(8);
    ext.extend(b"c-webrtc");
    ext.extend(hex("0022 000a 0008 0403 0503 0603 0203"));
    ext.extend(hex("0033 04ea 04e8 11ec 04c0"));
    ext.extend(vec![0; 1216]);
    ext.extend(hex("001d 0020"));
    ext.extend(vec![0; 32]);
    ext.extend(hex("002b 0007 06 fefc fefd 0303"));
    ext.extend(hex(
        "000d 0020 001e 0403 0503 0603 0203 0804 0805 0806 0401 0501 0601 0201 0402 0502 0602 0202",
    ));
    ext.extend(hex("001c 0002 4001"));
    ext.extend(hex("000e 000b 0008 0007 0008 0001 0002 00"));
    assert_eq!(ext.len(), 1399);
    b.extend((ext.len() as u16).to_be_bytes());
    b.extend(ext);
    assert_eq!(b.len(), 1461);
    b
}

#[test]
fn firefox_client_hello_parses() {
    let body = firefox_client_hello_body();
    let ch = ClientHello::parse(&body).unwrap();
    // JA3's extension order: 23-65281-10-11-16-34-51-43-13-28-14.
    let types: Vec<u16> = ch.extensions.iter().map(|e| e.typ()).collect();
    assert_eq!(types, [23, 65281, 10, 11, 16, 34, 51, 43, 13, 28, 14]);
    assert_eq!(
        ch.extension(extension_type::SUPPORTED_VERSIONS),
        Some(&Extension::SupportedVersions(vec![0xfefc, 0xfefd, 0x0303]))
    );
    let mut again = Vec::new();
    ch.emit(&mut again);
    assert_eq!(again, body);
}

/// The two datagrams of frames 5 and 6: DTLS 1.0 records, sequence 0 and 1,
/// fragments 0..1175 and 1175..1413 of message_seq 0.
fn chromium_datagrams() -> [Vec<u8>; 2] {
    let body = chromium_client_hello_body();
    let mut out = [Vec::new(), Vec::new()];
    for (i, (start, end)) in [(0usize, 1175usize), (1175, 1413)].into_iter().enumerate() {
        let mut frag = Vec::new();
        HandshakeFragment {
            header: HandshakeHeader {
                msg_type: HandshakeType::ClientHello,
                length: 1413,
                message_seq: 0,
                fragment_offset: start as u32,
                fragment_length: (end - start) as u32,
            },
            body: &body[start..end],
        }
        .emit(&mut frag);
        out[i].extend(hex("16 feff 0000"));
        out[i].extend(&(i as u64).to_be_bytes()[2..]);
        out[i].extend((frag.len() as u16).to_be_bytes());
        out[i].extend(frag);
    }
    // The capture's record lengths.
    assert_eq!(out[0].len(), 13 + 1187);
    assert_eq!(out[1].len(), 13 + 250);
    out
}

#[test]
fn chromium_client_hello_reassembles_and_parses() {
    let mut records = RecordLayer::new();
    let mut reasm = Reassembler::new();
    let mut plain = Vec::new();
    let [d1, d2] = chromium_datagrams();
    // Second datagram first: reassembly does not care about order.
    for d in [&d2, &d1] {
        records.receive(d, &mut plain);
    }
    assert_eq!(plain.len(), 2);
    for p in &plain {
        assert_eq!(p.content_type, ContentType::Handshake);
        for f in fragments(&p.fragment) {
            assert_eq!(reasm.insert(&f.unwrap()), Inserted::Buffered);
        }
    }
    let msg = reasm.pop().expect("complete ClientHello");
    assert!(reasm.pop().is_none());
    assert_eq!(msg.msg_type, HandshakeType::ClientHello);
    assert_eq!(msg.body, chromium_client_hello_body());
    let Handshake::ClientHello(ch) = Handshake::parse(msg.msg_type, &msg.body).unwrap() else {
        panic!("not a ClientHello");
    };
    assert_eq!(ch.version, 0xfefd);
    assert!(ch.cookie.is_empty());
    assert_eq!(ch.cipher_suites.len(), 14);
    assert!(ch.cipher_suites.contains(&0xc02b));
    assert_eq!(ch.compression_methods, [0]);
    // JA3's extension order: 45-51-14-23-11-65281-13-10-43.
    let types: Vec<u16> = ch.extensions.iter().map(|e| e.typ()).collect();
    assert_eq!(types, [45, 51, 14, 23, 11, 65281, 13, 10, 43]);
    assert_eq!(
        ch.extension(extension_type::USE_SRTP),
        Some(&Extension::UseSrtp {
            profiles: vec![
                SrtpProfile::AES128_CM_HMAC_SHA1_80,
                SrtpProfile::AEAD_AES_256_GCM,
                SrtpProfile::AEAD_AES_128_GCM
            ],
            mki: vec![]
        })
    );
    assert_eq!(
        ch.extension(extension_type::SUPPORTED_VERSIONS),
        Some(&Extension::SupportedVersions(vec![0xfefc, 0xfefd]))
    );
    assert_eq!(
        ch.extension(extension_type::SUPPORTED_GROUPS),
        Some(&Extension::SupportedGroups(vec![
            NamedGroup::X25519_MLKEM768,
            NamedGroup::X25519,
            NamedGroup::SECP256R1,
            NamedGroup::SECP384R1
        ]))
    );
    let Some(Extension::SignatureAlgorithms(schemes)) =
        ch.extension(extension_type::SIGNATURE_ALGORITHMS)
    else {
        panic!("signature_algorithms missing");
    };
    assert_eq!(schemes[0], SignatureScheme::ECDSA_SECP256R1_SHA256);
    assert_eq!(schemes.len(), 9);
    assert!(
        ch.extension(extension_type::EXTENDED_MASTER_SECRET)
            .is_some()
    );
    assert_eq!(
        ch.extension(extension_type::RENEGOTIATION_INFO),
        Some(&Extension::RenegotiationInfo(vec![]))
    );
    assert!(matches!(
        ch.extension(extension_type::KEY_SHARE),
        Some(Extension::Unknown { typ: 51, data }) if data.len() == 1258
    ));
    // Written again, byte for byte.
    let mut again = Vec::new();
    ch.emit(&mut again);
    assert_eq!(again, msg.body);
}

#[test]
fn fragmenting_to_an_mtu() {
    let msg = Handshake::ClientHello(ClientHello::parse(&chromium_client_hello_body()).unwrap())
        .to_message(0);
    let mut frags = Vec::new();
    msg.fragment(200, |f| {
        let mut v = Vec::new();
        f.emit(&mut v);
        assert!(v.len() <= 200);
        frags.push(v);
    });
    assert_eq!(frags.len(), 1413usize.div_ceil(188));
    let mut r = Reassembler::new();
    for f in frags.iter().rev() {
        let f = fragments(f).next().unwrap().unwrap();
        r.insert(&f);
    }
    assert_eq!(r.pop().unwrap(), msg);
    // An empty body is one fragment.
    let done = Handshake::ServerHelloDone.to_message(3);
    let mut n = 0;
    done.fragment(100, |f| {
        assert_eq!(f.header.fragment_length, 0);
        n += 1;
    });
    assert_eq!(n, 1);
}

fn frag(seq: u16, len: u32, off: u32, body: &[u8]) -> HandshakeFragment<'_> {
    HandshakeFragment {
        header: HandshakeHeader {
            msg_type: HandshakeType::Certificate,
            length: len,
            message_seq: seq,
            fragment_offset: off,
            fragment_length: body.len() as u32,
        },
        body,
    }
}

#[test]
fn reassembler_bounds() {
    let mut r = Reassembler::with_next_seq(2);
    assert_eq!(r.insert(&frag(1, 3, 0, b"abc")), Inserted::Old);
    assert_eq!(
        r.insert(&frag(2 + MAX_MESSAGES_AHEAD, 3, 0, b"abc")),
        Inserted::Dropped
    );
    assert_eq!(r.insert(&frag(3, 4, 0, b"ab")), Inserted::Buffered);
    // Same seq, different length: inconsistent.
    assert_eq!(r.insert(&frag(3, 5, 2, b"cd")), Inserted::Dropped);
    assert_eq!(r.insert(&frag(3, 4, 2, b"cd")), Inserted::Buffered);
    // seq 3 is complete, but seq 2 must come first.
    assert!(r.pop().is_none());
    assert_eq!(r.insert(&frag(2, 1, 0, b"x")), Inserted::Buffered);
    assert_eq!(r.pop().unwrap().body, b"x");
    assert_eq!(r.pop().unwrap().body, b"abcd");
    assert_eq!(r.next_seq(), 4);
    // Memory: messages beyond the byte budget are dropped.
    let big = vec![0u8; 10];
    let mut accepted = 0;
    for seq in 4..4 + MAX_MESSAGES_AHEAD {
        if r.insert(&frag(seq, MAX_HANDSHAKE_LEN as u32, 0, &big)) == Inserted::Buffered {
            accepted += 1;
        }
    }
    assert_eq!(accepted, MAX_REASSEMBLY_BYTES / MAX_HANDSHAKE_LEN);
    // Too many gaps in one message: dropped, not grown without bound.
    let mut r = Reassembler::new();
    let mut dropped = false;
    for i in 0..100u32 {
        if r.insert(&frag(0, 1000, i * 4, b"x")) == Inserted::Dropped {
            dropped = true;
        }
    }
    assert!(dropped);
}

#[test]
fn fragment_header_checks() {
    // offset + length beyond the message.
    let mut v = Vec::new();
    frag(0, 3, 2, b"ab").emit(&mut v);
    assert!(fragments(&v).next().unwrap().is_err());
    // Message too large.
    v.clear();
    frag(0, MAX_HANDSHAKE_LEN as u32 + 1, 0, b"ab").emit(&mut v);
    assert!(fragments(&v).next().unwrap().is_err());
    // Two fragments in one record.
    v.clear();
    frag(0, 2, 0, b"ab").emit(&mut v);
    frag(1, 1, 0, b"c").emit(&mut v);
    assert_eq!(fragments(&v).count(), 2);
}

#[test]
fn duplicate_extensions_and_bad_lists_rejected() {
    let mut ch = ClientHello::parse(&chromium_client_hello_body()).unwrap();
    ch.extensions.push(Extension::ExtendedMasterSecret);
    let mut v = Vec::new();
    ch.emit(&mut v);
    assert!(ClientHello::parse(&v).is_err());
    // Odd-length supported_groups.
    assert!(Extension::parse(10, &hex("0003 001d00"), HelloSide::Client).is_err());
    // Trailing bytes inside an extension.
    assert!(Extension::parse(23, &hex("00"), HelloSide::Client).is_err());
}

#[test]
fn alerts() {
    let a = Alert::fatal(AlertDescription::HANDSHAKE_FAILURE);
    let mut v = Vec::new();
    a.emit(&mut v);
    assert_eq!(v, [2, 40]);
    assert_eq!(Alert::parse(&v).unwrap(), a);
    assert!(Alert::parse(&[2]).is_err());
    assert!(Alert::parse(&[2, 0, 0]).is_err());
    let mut v = Vec::new();
    Alert::close_notify().emit(&mut v);
    assert_eq!(v, [1, 0]);
}

// ---------------------------------------------------------------------------
// proptest strategies.

const KNOWN_TYPES: [u16; 8] = [10, 11, 13, 14, 23, 43, 0xff01, 51];

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..max)
}

fn nonempty_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 1..max)
}

fn extension(side: HelloSide) -> impl Strategy<Value = Extension> {
    let versions: BoxedStrategy<Extension> = match side {
        HelloSide::Client => vec(any::<u16>(), 0..5)
            .prop_map(Extension::SupportedVersions)
            .boxed(),
        HelloSide::Server => any::<u16>().prop_map(Extension::SelectedVersion).boxed(),
    };
    prop_oneof![
        vec(any::<u16>().prop_map(NamedGroup), 0..6).prop_map(Extension::SupportedGroups),
        bytes(4).prop_map(Extension::EcPointFormats),
        vec(any::<u16>().prop_map(SignatureScheme), 0..10).prop_map(Extension::SignatureAlgorithms),
        (vec(any::<u16>().prop_map(SrtpProfile), 0..5), bytes(8))
            .prop_map(|(profiles, mki)| Extension::UseSrtp { profiles, mki }),
        Just(Extension::ExtendedMasterSecret),
        bytes(12).prop_map(Extension::RenegotiationInfo),
        versions,
        (
            any::<u16>().prop_filter("unknown type", |t| !KNOWN_TYPES[..7].contains(t)),
            bytes(40)
        )
            .prop_map(|(typ, data)| Extension::Unknown { typ, data }),
    ]
}

fn extensions(side: HelloSide) -> impl Strategy<Value = Vec<Extension>> {
    vec(extension(side), 0..8).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|e| {
            let fresh = !seen.contains(&e.typ());
            seen.push(e.typ());
            fresh
        });
        v
    })
}

prop_compose! {
    fn client_hello()(version in any::<u16>(), random in any::<[u8; 32]>(), session_id in bytes(33),
                      cookie in bytes(40), cipher_suites in vec(any::<u16>(), 1..20),
                      compression_methods in nonempty_bytes(3),
                      extensions in extensions(HelloSide::Client)) -> ClientHello {
        ClientHello { version, random, session_id, cookie, cipher_suites, compression_methods, extensions }
    }
}

prop_compose! {
    fn server_hello()(version in any::<u16>(), random in any::<[u8; 32]>(), session_id in bytes(33),
                      cipher_suite in any::<u16>(), compression_method in any::<u8>(),
                      extensions in extensions(HelloSide::Server)) -> ServerHello {
        ServerHello { version, random, session_id, cipher_suite, compression_method, extensions }
    }
}

fn signed() -> impl Strategy<Value = DigitallySigned> {
    (any::<u16>(), bytes(80)).prop_map(|(s, signature)| DigitallySigned {
        scheme: SignatureScheme(s),
        signature,
    })
}

fn handshake() -> impl Strategy<Value = Handshake> {
    prop_oneof![
        Just(Handshake::HelloRequest),
        client_hello().prop_map(Handshake::ClientHello),
        server_hello().prop_map(Handshake::ServerHello),
        (any::<u16>(), bytes(255)).prop_map(|(version, cookie)| Handshake::HelloVerifyRequest(
            HelloVerifyRequest { version, cookie }
        )),
        (any::<u32>(), bytes(100)).prop_map(|(lifetime_hint, ticket)| {
            Handshake::NewSessionTicket(NewSessionTicket {
                lifetime_hint,
                ticket,
            })
        }),
        vec(nonempty_bytes(300), 0..4)
            .prop_map(|certificates| Handshake::Certificate(CertificateMsg { certificates })),
        (any::<u16>(), nonempty_bytes(100), signed()).prop_map(|(g, public_key, signed)| {
            Handshake::ServerKeyExchange(ServerKeyExchange {
                group: NamedGroup(g),
                public_key,
                signed,
            })
        }),
        (
            bytes(4),
            vec(any::<u16>().prop_map(SignatureScheme), 0..8),
            vec(nonempty_bytes(30), 0..3)
        )
            .prop_map(|(certificate_types, signature_schemes, authorities)| {
                Handshake::CertificateRequest(CertificateRequest {
                    certificate_types,
                    signature_schemes,
                    authorities,
                })
            }),
        Just(Handshake::ServerHelloDone),
        signed().prop_map(Handshake::CertificateVerify),
        nonempty_bytes(100).prop_map(|public_key| {
            Handshake::ClientKeyExchange(ClientKeyExchange { public_key })
        }),
        any::<[u8; 12]>().prop_map(Handshake::Finished),
    ]
}

proptest! {
    /// Every message: encode, fragment to a random MTU, shuffle and
    /// duplicate the fragments, reassemble, parse: the same value.
    #[test]
    fn every_message_round_trips(m in handshake(), seq in 0u16..1000, mtu in 13usize..400,
                                 order in vec(any::<prop::sample::Index>(), 0..40)) {
        let msg = m.to_message(seq);
        let mut frags = Vec::new();
        msg.fragment(mtu, |f| {
            let mut v = Vec::new();
            f.emit(&mut v);
            frags.push(v);
        });
        for f in &frags {
            prop_assert!(f.len() <= mtu.max(HANDSHAKE_HEADER_LEN + 1));
        }
        // Deliver some random fragments first (duplicates), then the whole
        // flight in reverse, as retransmissions would, until complete: a
        // fragment touching a received range is always accepted, so each
        // pass makes progress even when the gap bound dropped some.
        let mut r = Reassembler::with_next_seq(seq);
        for i in &order {
            let f = &frags[i.index(frags.len())];
            r.insert(&fragments(f).next().unwrap().unwrap());
        }
        let mut got = None;
        for _ in 0..=frags.len() {
            for f in frags.iter().rev() {
                r.insert(&fragments(f).next().unwrap().unwrap());
            }
            got = r.pop();
            if got.is_some() {
                break;
            }
        }
        let got = got.unwrap();
        prop_assert_eq!(&got, &msg);
        prop_assert_eq!(Handshake::parse(got.msg_type, &got.body).unwrap(), m);
    }

    #[test]
    fn parsers_never_panic(t in any::<u8>(), body in bytes(600)) {
        let _ = Handshake::parse(HandshakeType::from_u8(t), &body);
        let _ = fragments(&body).count();
        let _ = Alert::parse(&body);
        let mut r = Reassembler::new();
        for f in fragments(&body).flatten() {
            r.insert(&f);
        }
        while r.pop().is_some() {}
    }

    /// Mutating the Chromium hello never panics the parser.
    #[test]
    fn mutated_client_hello_never_panics(i in 0usize..1413, b in any::<u8>(), cut in 0usize..1414) {
        let mut body = chromium_client_hello_body();
        body[i] = b;
        let _ = ClientHello::parse(&body);
        let _ = ClientHello::parse(&body[..cut]);
    }
}

#[test]
fn srtp_profile_names() {
    for p in SrtpProfile::ALL {
        let name = p.name().unwrap();
        assert_eq!(SrtpProfile::from_name(name), Some(p));
        assert_eq!(SrtpProfile::from_name(&name.to_lowercase()), Some(p));
    }
    // OpenSSL's spelling, as `-use_srtp` takes it.
    assert_eq!(
        SrtpProfile::from_name("SRTP_AES128_CM_SHA1_80"),
        Some(SrtpProfile::AES128_CM_HMAC_SHA1_80)
    );
    assert_eq!(
        SrtpProfile::from_name("AEAD_AES_256_GCM"),
        Some(SrtpProfile::AEAD_AES_256_GCM)
    );
    assert_eq!(SrtpProfile::from_name("SRTP_NULL_SHA1_80"), None);
    assert_eq!(SrtpProfile(0x9999).name(), None);
}

/// A 2048-bit RSA key (PKCS#8) and its self-signed certificate, made once
/// with `openssl genpkey`/`openssl req -x509`: what an OpenSSL-based WebRTC
/// stack (GStreamer's dtls elements) presents.
const RSA_KEY: &[u8] = include_bytes!("../../../tests/fixtures/dtls/rsa2048_key.pk8.der");
const RSA_CERT: &[u8] = include_bytes!("../../../tests/fixtures/dtls/rsa2048_cert.der");

/// A ServerKeyExchange for an X25519 share signed by the fixture's RSA key
/// with `scheme` (ring signs; we only ever verify RSA).
fn rsa_signed_ske(scheme: SignatureScheme, cr: &[u8; 32], sr: &[u8; 32]) -> ServerKeyExchange {
    use ring::signature as s;
    let key = s::RsaKeyPair::from_pkcs8(RSA_KEY).expect("fixture RSA key");
    let mut ske = ServerKeyExchange {
        group: NamedGroup::X25519,
        public_key: vec![0x42; 32],
        signed: DigitallySigned {
            scheme,
            signature: Vec::new(),
        },
    };
    let mut msg = cr.to_vec();
    msg.extend_from_slice(sr);
    msg.extend_from_slice(&ske.params());
    let padding: &dyn s::RsaEncoding = match scheme {
        SignatureScheme::RSA_PKCS1_SHA256 => &s::RSA_PKCS1_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384 => &s::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PSS_RSAE_SHA256 => &s::RSA_PSS_SHA256,
        SignatureScheme::RSA_PSS_RSAE_SHA512 => &s::RSA_PSS_SHA512,
        _ => unreachable!("test schemes only"),
    };
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(padding, &ring::rand::SystemRandom::new(), &msg, &mut sig)
        .unwrap();
    ske.signed.signature = sig;
    ske
}

#[test]
fn ecdhe_rsa_server_key_exchange_verifies_pkcs1_and_pss() {
    let key = PublicKeyInfo::parse_certificate(RSA_CERT).unwrap();
    assert_eq!(key.algorithm, KeyAlgorithm::Rsa);
    let (cr, sr) = ([1u8; 32], [2u8; 32]);
    for scheme in [
        SignatureScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PSS_RSAE_SHA256,
        SignatureScheme::RSA_PSS_RSAE_SHA512,
    ] {
        let ske = rsa_signed_ske(scheme, &cr, &sr);
        // Through the wire codec, as the client receives it.
        let mut body = Vec::new();
        ske.emit(&mut body);
        let ske = ServerKeyExchange::parse(&body).unwrap();
        for suite in [
            CipherSuite::EcdheRsaAes128GcmSha256,
            CipherSuite::EcdheRsaAes256GcmSha384,
            CipherSuite::EcdheRsaChacha20Poly1305Sha256,
        ] {
            assert_eq!(ske.verify(&key, suite, &cr, &sr), Ok(()), "{scheme:?}");
        }
        // RFC 8422 §5.3: an RSA certificate cannot serve an ECDHE_ECDSA suite.
        assert!(matches!(
            ske.verify(&key, CipherSuite::EcdheEcdsaAes128GcmSha256, &cr, &sr),
            Err(Error::UnsupportedAlgorithm(_))
        ));
        // The signature covers both randoms and the params.
        assert_eq!(
            ske.verify(&key, CipherSuite::EcdheRsaAes128GcmSha256, &sr, &cr),
            Err(Error::BadSignature)
        );
        let mut other = ske.clone();
        other.public_key[0] ^= 1;
        assert_eq!(
            other.verify(&key, CipherSuite::EcdheRsaAes128GcmSha256, &cr, &sr),
            Err(Error::BadSignature)
        );
    }
}

#[test]
fn ecdhe_server_key_exchange_refusals() {
    let rsa = PublicKeyInfo::parse_certificate(RSA_CERT).unwrap();
    let (cr, sr) = ([3u8; 32], [4u8; 32]);
    // A scheme the client did not offer (RFC 5246 §7.4.1.4.1): rsa_pkcs1_sha1.
    let mut ske = rsa_signed_ske(SignatureScheme::RSA_PKCS1_SHA256, &cr, &sr);
    ske.signed.scheme = SignatureScheme(0x0201);
    assert!(matches!(
        ske.verify(&rsa, CipherSuite::EcdheRsaAes128GcmSha256, &cr, &sr),
        Err(Error::InvalidValue { .. })
    ));
    // An ECDSA scheme claimed over an RSA key.
    ske.signed.scheme = SignatureScheme::ECDSA_SECP256R1_SHA256;
    assert!(
        ske.verify(&rsa, CipherSuite::EcdheRsaAes128GcmSha256, &cr, &sr)
            .is_err()
    );
    // An ECDSA certificate cannot serve an ECDHE_RSA suite.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let ours =
        crate::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now()).unwrap();
    let ecdsa = PublicKeyInfo::parse_certificate(ours.der()).unwrap();
    let mut ske = ServerKeyExchange {
        group: NamedGroup::X25519,
        public_key: vec![7; 32],
        signed: DigitallySigned {
            scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
            signature: Vec::new(),
        },
    };
    let mut msg = cr.to_vec();
    msg.extend_from_slice(&sr);
    msg.extend_from_slice(&ske.params());
    ske.signed.signature = ours.sign(&msg).unwrap();
    assert_eq!(
        ske.verify(&ecdsa, CipherSuite::EcdheEcdsaAes128GcmSha256, &cr, &sr),
        Ok(())
    );
    assert!(matches!(
        ske.verify(&ecdsa, CipherSuite::EcdheRsaAes128GcmSha256, &cr, &sr),
        Err(Error::UnsupportedAlgorithm(_))
    ));
}
