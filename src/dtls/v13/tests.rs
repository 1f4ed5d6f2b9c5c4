//! The building blocks put together by hand: a full DTLS 1.3 1-RTT
//! handshake with the X25519MLKEM768 share and mutual authentication
//! (ECDSA P-256), driven step by step as the coming state machine will,
//! over the record layer, then application data, a KeyUpdate and the SRTP
//! exporter. No state machine: this test is the script it will follow
//! (RFC 8446 §2, RFC 9147 §5).

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::key_schedule::{self as ks, EarlySecret, LabelPrefix, TrafficKeys};
use super::key_share::{self, ClientShare};
use super::messages::{self as m, Handshake};
use super::record::{CONTENT_TYPE_ACK, Received, RecordLayer};
use super::transcript::Transcript;
use crate::dtls::cert::{Certificate, PublicKeyInfo, SignatureScheme};
use crate::dtls::handshake::{self as hs, HandshakeMessage, NamedGroup, SrtpProfile};
use crate::dtls::record::ContentType;

const P: LabelPrefix = LabelPrefix::Dtls13;
const MTU: usize = 1200;

/// One side's send/receive plumbing: a record layer, the next message_seq,
/// a reassembler, and the record numbers to acknowledge.
struct Side {
    records: RecordLayer,
    send_seq: u16,
    reassembler: hs::Reassembler,
    to_ack: Vec<super::record::RecordNumber>,
}

impl Side {
    fn new() -> Self {
        Side {
            records: RecordLayer::new(),
            send_seq: 0,
            reassembler: hs::Reassembler::new(),
            to_ack: Vec::new(),
        }
    }

    /// Fragments `msg` into handshake records of the current write epoch,
    /// packed into datagrams of at most MTU bytes; adds it to `transcript`.
    fn send(&mut self, msg: &Handshake, transcript: &mut Transcript) -> Vec<Vec<u8>> {
        let message = msg.to_message(self.send_seq);
        self.send_seq += 1;
        transcript.add_message(&message);
        let mut fragments = Vec::new();
        message.fragment(MTU - 64, |f| {
            let mut b = Vec::new();
            f.emit(&mut b);
            fragments.push(b);
        });
        fragments
            .into_iter()
            .map(|f| {
                let mut d = Vec::new();
                self.records
                    .seal(ContentType::Handshake, &f, 0, &mut d)
                    .unwrap();
                assert!(d.len() <= MTU);
                d
            })
            .collect()
    }

    /// Takes datagrams in; returns whole handshake messages and other
    /// records.
    fn receive(&mut self, datagrams: &[Vec<u8>]) -> (Vec<HandshakeMessage>, Vec<Received>) {
        let mut got = Vec::new();
        for d in datagrams {
            self.records.receive(d, &mut got);
        }
        self.absorb(got)
    }

    /// After new read keys: the records held for them, as `receive` gives.
    fn unlock(&mut self) -> (Vec<HandshakeMessage>, Vec<Received>) {
        let mut got = Vec::new();
        self.records.take_unlocked(&mut got);
        self.absorb(got)
    }

    fn absorb(&mut self, got: Vec<Received>) -> (Vec<HandshakeMessage>, Vec<Received>) {
        let mut messages = Vec::new();
        let mut other = Vec::new();
        for r in got {
            if r.content_type == ContentType::Handshake {
                self.to_ack.push(r.number);
                for f in hs::fragments(&r.fragment) {
                    self.reassembler.insert(&f.unwrap());
                }
                while let Some(msg) = self.reassembler.pop() {
                    messages.push(msg);
                }
            } else {
                other.push(r);
            }
        }
        (messages, other)
    }
}

fn parse(msg: &HandshakeMessage) -> Handshake {
    Handshake::parse(msg.msg_type, &msg.body).unwrap()
}

#[test]
fn a_whole_handshake_from_the_pieces() {
    let mut rng = StdRng::seed_from_u64(13);
    let now = std::time::SystemTime::now();
    let client_cert = Certificate::generate(&mut rng, now).unwrap();
    let server_cert = Certificate::generate(&mut rng, now).unwrap();
    let mut client = Side::new();
    let mut server = Side::new();
    let mut ct = Transcript::new();
    let mut st = Transcript::new();

    // Flight 1: ClientHello with the hybrid share (two datagrams, as
    // Chromium's), in epoch 0.
    let share = ClientShare::generate(NamedGroup::X25519_MLKEM768, &mut rng).unwrap();
    let ch = m::ClientHello {
        legacy_version: m::DTLS_1_2,
        random: [0x11; 32],
        legacy_session_id: vec![],
        legacy_cookie: vec![],
        cipher_suites: vec![m::TLS_AES_128_GCM_SHA256],
        supported_versions: vec![m::DTLS_1_3, m::DTLS_1_2],
        supported_groups: vec![NamedGroup::X25519_MLKEM768, NamedGroup::X25519],
        signature_algorithms: vec![SignatureScheme::ECDSA_SECP256R1_SHA256],
        key_shares: Some(vec![m::KeyShareEntry {
            group: share.group(),
            key_exchange: share.public().to_vec(),
        }]),
        use_srtp: Some(m::UseSrtp {
            profiles: vec![SrtpProfile::AEAD_AES_128_GCM],
            mki: vec![],
        }),
        cookie: None,
        other: vec![],
    };
    let flight1 = client.send(&Handshake::ClientHello(ch), &mut ct);
    assert_eq!(flight1.len(), 2, "a hybrid ClientHello spans two datagrams");

    // Server: reads the ClientHello, answers the hybrid share.
    let (msgs, _) = server.receive(&flight1);
    assert_eq!(msgs.len(), 1);
    // The ServerHello answers flight 1; only later flights are ACKed.
    server.to_ack.clear();
    st.add_message(&msgs[0]);
    let Handshake::ClientHello(ch) = parse(&msgs[0]) else {
        panic!("not a ClientHello");
    };
    assert!(ch.offers_dtls13());
    let offered = ch.key_share(NamedGroup::X25519_MLKEM768).unwrap();
    let (server_public, server_secret) =
        key_share::server_share(offered.group, &offered.key_exchange, &mut rng).unwrap();

    // Flight 2: ServerHello in epoch 0, then EncryptedExtensions,
    // CertificateRequest, Certificate, CertificateVerify, Finished in
    // epoch 2.
    let sh = m::ServerHelloKind::ServerHello(m::ServerHello {
        random: [0x22; 32],
        legacy_session_id_echo: vec![],
        cipher_suite: m::TLS_AES_128_GCM_SHA256,
        selected_version: m::DTLS_1_3,
        key_share: Some(m::KeyShareEntry {
            group: NamedGroup::X25519_MLKEM768,
            key_exchange: server_public,
        }),
        other: vec![],
    });
    let mut flight2 = server.send(&Handshake::ServerHello(sh), &mut st);
    let s_hs = EarlySecret::new(P).handshake_secret(server_secret.as_bytes());
    let s_hts = s_hs.traffic_secrets(&st.hash());
    server
        .records
        .install_write(2, &TrafficKeys::derive(P, &s_hts.server))
        .unwrap();
    server
        .records
        .install_read(2, &TrafficKeys::derive(P, &s_hts.client))
        .unwrap();
    let ee = Handshake::EncryptedExtensions(m::EncryptedExtensions {
        supported_groups: vec![],
        use_srtp: Some(m::UseSrtp {
            profiles: vec![SrtpProfile::AEAD_AES_128_GCM],
            mki: vec![],
        }),
        other: vec![],
    });
    flight2.extend(server.send(&ee, &mut st));
    let cr = Handshake::CertificateRequest(m::CertificateRequest {
        context: vec![],
        signature_algorithms: vec![SignatureScheme::ECDSA_SECP256R1_SHA256],
        other: vec![],
    });
    flight2.extend(server.send(&cr, &mut st));
    let cert = |c: &Certificate| {
        Handshake::Certificate(m::Certificate {
            context: vec![],
            entries: vec![m::CertificateEntry {
                cert_data: c.der().to_vec(),
                extensions: vec![],
            }],
        })
    };
    flight2.extend(server.send(&cert(&server_cert), &mut st));
    let cv = |c: &Certificate, signer, t: &Transcript| {
        let content = m::CertificateVerify::signed_content(signer, &t.hash());
        Handshake::CertificateVerify(m::CertificateVerify {
            scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
            signature: c.sign(&content).unwrap(),
        })
    };
    let server_cv = cv(&server_cert, m::Signer::Server, &st);
    flight2.extend(server.send(&server_cv, &mut st));
    let fin = |secret: &ks::Secret, t: &Transcript| {
        Handshake::Finished(m::Finished {
            verify_data: ks::verify_data(&ks::finished_key(P, secret), &t.hash()),
        })
    };
    let server_fin = fin(&s_hts.server, &st);
    flight2.extend(server.send(&server_fin, &mut st));
    let s_master = s_hs.master_secret();
    let s_app = s_master.application_secrets(&st.hash());

    // Client: only the ServerHello (epoch 0, two datagrams with the
    // hybrid's 1,120-byte share) is readable at first; the epoch-2 records
    // are held until its keys exist.
    let (msgs, _) = client.receive(&flight2);
    assert_eq!(msgs.len(), 1);
    assert_eq!(client.records.pending(), flight2.len() - 2);
    assert_eq!(client.records.dropped(), 0);
    ct.add_message(&msgs[0]);
    let Handshake::ServerHello(m::ServerHelloKind::ServerHello(sh)) = parse(&msgs[0]) else {
        panic!("not a ServerHello");
    };
    assert_eq!(sh.selected_version, m::DTLS_1_3);
    assert!(!m::has_downgrade_sentinel(&sh.random));
    let client_secret = share.complete(&sh.key_share.unwrap().key_exchange).unwrap();
    assert_eq!(client_secret, server_secret);
    let c_hs = EarlySecret::new(P).handshake_secret(client_secret.as_bytes());
    let c_hts = c_hs.traffic_secrets(&ct.hash());
    assert_eq!(c_hts, s_hts);
    client
        .records
        .install_read(2, &TrafficKeys::derive(P, &c_hts.server))
        .unwrap();
    client
        .records
        .install_write(2, &TrafficKeys::derive(P, &c_hts.client))
        .unwrap();
    let (msgs, other) = client.unlock();
    assert!(other.is_empty());
    assert_eq!(client.records.pending(), 0);
    // A retransmission of the whole flight brings nothing new: every
    // record is a replay.
    let (again, _) = client.receive(&flight2);
    assert!(again.is_empty());
    assert_eq!(client.records.dropped() as usize, flight2.len());
    let types: Vec<_> = msgs.iter().map(|m| m.msg_type).collect();
    assert_eq!(
        types,
        [
            m::msg_type::ENCRYPTED_EXTENSIONS,
            hs::HandshakeType::CertificateRequest,
            hs::HandshakeType::Certificate,
            hs::HandshakeType::CertificateVerify,
            hs::HandshakeType::Finished,
        ]
    );
    let mut server_key = None;
    for msg in &msgs {
        match parse(msg) {
            Handshake::EncryptedExtensions(ee) => {
                assert_eq!(
                    ee.use_srtp.unwrap().profiles,
                    [SrtpProfile::AEAD_AES_128_GCM]
                )
            }
            Handshake::Certificate(c) => {
                server_key =
                    Some(PublicKeyInfo::parse_certificate(&c.entries[0].cert_data).unwrap());
            }
            Handshake::CertificateVerify(v) => {
                let content = m::CertificateVerify::signed_content(m::Signer::Server, &ct.hash());
                server_key
                    .as_ref()
                    .unwrap()
                    .verify(v.scheme, &content, &v.signature)
                    .unwrap();
            }
            Handshake::Finished(f) => {
                let key = ks::finished_key(P, &c_hts.server);
                assert!(ks::verify_finished(&key, &ct.hash(), &f.verify_data));
            }
            _ => {}
        }
        ct.add_message(msg);
    }
    let c_app = c_hs.master_secret().application_secrets(&ct.hash());
    assert_eq!(c_app.traffic, s_app.traffic);

    // Flight 3: the client's Certificate, CertificateVerify, Finished in
    // epoch 2, then it switches to epoch 3 and acknowledges.
    let mut flight3 = client.send(&cert(&client_cert), &mut ct);
    let client_cv = cv(&client_cert, m::Signer::Client, &ct);
    flight3.extend(client.send(&client_cv, &mut ct));
    let client_fin = fin(&c_hts.client, &ct);
    flight3.extend(client.send(&client_fin, &mut ct));
    client
        .records
        .install_write(3, &TrafficKeys::derive(P, &c_app.traffic.client))
        .unwrap();
    client
        .records
        .install_read(3, &TrafficKeys::derive(P, &c_app.traffic.server))
        .unwrap();

    // Server: checks the client's flight, then ACKs it (RFC 9147 §7) in
    // epoch 3 and moves to the application keys.
    server
        .records
        .install_read(3, &TrafficKeys::derive(P, &s_app.traffic.client))
        .unwrap();
    let (msgs, _) = server.receive(&flight3);
    assert_eq!(msgs.len(), 3);
    let mut client_key = None;
    for msg in &msgs {
        match parse(msg) {
            Handshake::Certificate(c) => {
                client_key =
                    Some(PublicKeyInfo::parse_certificate(&c.entries[0].cert_data).unwrap());
            }
            Handshake::CertificateVerify(v) => {
                let content = m::CertificateVerify::signed_content(m::Signer::Client, &st.hash());
                client_key
                    .as_ref()
                    .unwrap()
                    .verify(v.scheme, &content, &v.signature)
                    .unwrap();
            }
            Handshake::Finished(f) => {
                let key = ks::finished_key(P, &s_hts.client);
                assert!(ks::verify_finished(&key, &st.hash(), &f.verify_data));
            }
            _ => {}
        }
        st.add_message(msg);
    }
    assert_eq!(ct.hash(), st.hash());
    server
        .records
        .install_write(3, &TrafficKeys::derive(P, &s_app.traffic.server))
        .unwrap();
    let mut ack = Vec::new();
    m::Ack {
        records: std::mem::take(&mut server.to_ack),
    }
    .emit(&mut ack);
    let mut d = Vec::new();
    server
        .records
        .seal(ContentType::Other(CONTENT_TYPE_ACK), &ack, 0, &mut d)
        .unwrap();
    server
        .records
        .seal(ContentType::ApplicationData, b"hello client", 0, &mut d)
        .unwrap();
    let (_, other) = client.receive(&[d]);
    assert_eq!(other.len(), 2);
    assert_eq!(other[0].number.epoch, 3);
    let acked = m::Ack::parse(&other[0].fragment).unwrap();
    // Every record of flight 3 (epoch 2) is acknowledged.
    assert_eq!(acked.records.len(), flight3.len());
    assert!(acked.records.iter().all(|r| r.epoch == 2));
    assert_eq!(other[1].fragment, b"hello client");

    // SRTP keys agree (RFC 5764 §4.2 lengths for AEAD_AES_128_GCM:
    // 2 × (16 + 12)).
    assert_eq!(
        c_app.exporter.srtp_keying_material(56),
        s_app.exporter.srtp_keying_material(56)
    );
    // The key log has the five 1.3 lines.
    assert_eq!(ks::key_log_lines(&[0x11; 32], &c_hts, &c_app).len(), 5);

    // KeyUpdate (RFC 8446 §4.6.3): the client moves to epoch 4 with the
    // next secret; the server follows.
    let mut d = Vec::new();
    let message = Handshake::KeyUpdate(m::KeyUpdate::NotRequested).to_message(client.send_seq);
    let mut frag = Vec::new();
    message.emit_unfragmented(&mut frag);
    client
        .records
        .seal(ContentType::Handshake, &frag, 0, &mut d)
        .unwrap();
    let next = ks::next_traffic_secret(P, &c_app.traffic.client);
    client
        .records
        .install_write(4, &TrafficKeys::derive(P, &next))
        .unwrap();
    client
        .records
        .seal(ContentType::ApplicationData, b"after update", 0, &mut d)
        .unwrap();
    let mut got = Vec::new();
    server.records.receive(&d, &mut got);
    // The epoch-4 record is not readable before the KeyUpdate is
    // processed: it is held.
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].content_type, ContentType::Handshake);
    assert_eq!(server.records.pending(), 1);
    let server_next = ks::next_traffic_secret(P, &s_app.traffic.client);
    server
        .records
        .install_read(4, &TrafficKeys::derive(P, &server_next))
        .unwrap();
    let mut got = Vec::new();
    server.records.take_unlocked(&mut got);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].number.epoch, 4);
    assert_eq!(got[0].fragment, b"after update");
}
