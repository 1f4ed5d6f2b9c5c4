use super::*;
use crate::dtls::handshake::{ClientHello, Extension, extension_type};
use crate::dtls::record::{Authentication, DTLS_1_2};
use rand::{Rng, SeedableRng};
use std::time::SystemTime;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(seed: u64) -> Config {
    let mut rng = StdRng::seed_from_u64(seed);
    Config::new(Certificate::generate(&mut rng, SystemTime::now()).unwrap())
}

struct Pair {
    client: Endpoint,
    server: Endpoint,
    now: Instant,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
}

impl Pair {
    fn new(client: Config, server: Config) -> Self {
        let now = Instant::now();
        Pair {
            client: Endpoint::client(client, addr(2), StdRng::seed_from_u64(1), now),
            server: Endpoint::server(server, StdRng::seed_from_u64(2)),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
        }
    }

    /// Runs until both sides are quiet; `loss` drops that fraction of
    /// datagrams (deterministically from `seed`), `dup` duplicates.
    fn run(&mut self, loss: f64, seed: u64, max_steps: usize) {
        let mut rng = StdRng::seed_from_u64(seed);
        for _ in 0..max_steps {
            let mut moved = false;
            while let Some(t) = self.client.poll_transmit() {
                moved = true;
                if rng.random_bool(loss) {
                    continue;
                }
                let copies = if rng.random_bool(loss / 2.0) { 2 } else { 1 };
                for _ in 0..copies {
                    self.server.handle_receive(
                        self.now,
                        Receive {
                            source: addr(1),
                            destination: addr(2),
                            contents: &t.contents,
                        },
                    );
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                assert_eq!(t.destination, addr(1));
                if rng.random_bool(loss) {
                    continue;
                }
                self.client.handle_receive(
                    self.now,
                    Receive {
                        source: addr(2),
                        destination: addr(1),
                        contents: &t.contents,
                    },
                );
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !moved {
                let next = [self.client.poll_timeout(), self.server.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                match next {
                    Some(t) => {
                        self.now = self.now.max(t);
                        self.client.handle_timeout(self.now);
                        self.server.handle_timeout(self.now);
                    }
                    None => return,
                }
            }
        }
    }
}

fn connected(events: &[Event]) -> Option<&Connected> {
    events.iter().find_map(|e| match e {
        Event::Connected(c) => Some(&**c),
        _ => None,
    })
}

#[test]
fn handshake_in_process_every_suite() {
    // rtclab serves only with its ECDSA certificate: the ECDHE_RSA suites
    // are tested against OpenSSL (tests/dtls_openssl.rs).
    let ecdsa = CipherSuite::ALL
        .into_iter()
        .filter(|s| s.authentication() == Authentication::Ecdsa);
    for suite in ecdsa {
        let mut c = config(1);
        c.cipher_suites = vec![suite];
        let s = config(2);
        let server_fp = s.certificate.fingerprint();
        let client_fp = c.certificate.fingerprint();
        c.expected_fingerprint = Some(server_fp.clone());
        let mut s = s;
        s.expected_fingerprint = Some(client_fp.clone());
        let mut p = Pair::new(c, s);
        p.run(0.0, 0, 1000);
        let cc = connected(&p.client_events)
            .unwrap_or_else(|| panic!("{suite:?} client: {:?}", p.client_events));
        let sc = connected(&p.server_events)
            .unwrap_or_else(|| panic!("{suite:?} server: {:?}", p.server_events));
        assert_eq!(cc.cipher_suite, suite);
        assert_eq!(sc.cipher_suite, suite);
        assert!(cc.extended_master_secret);
        assert_eq!(cc.srtp_profile, Some(SrtpProfile::AEAD_AES_128_GCM));
        assert_eq!(cc.srtp_keying_material.as_ref().unwrap().len(), 56);
        assert_eq!(cc.srtp_keying_material, sc.srtp_keying_material);
        assert_eq!(cc.peer_fingerprint, server_fp);
        // Both sides log the same NSS key log line.
        let line = p.client.key_log_line().unwrap();
        assert_eq!(Some(&line), p.server.key_log_line().as_ref());
        assert_eq!(line.len(), "CLIENT_RANDOM ".len() + 64 + 1 + 96);
        assert_eq!(sc.peer_fingerprint, client_fp);
        // Application data both ways.
        p.client.send(b"hello server").unwrap();
        p.server.send(b"hello client").unwrap();
        p.run(0.0, 0, 100);
        assert!(
            p.server_events
                .iter()
                .any(|e| matches!(e, Event::ApplicationData(d) if d == b"hello server"))
        );
        assert!(
            p.client_events
                .iter()
                .any(|e| matches!(e, Event::ApplicationData(d) if d == b"hello client"))
        );
        p.client.close();
        let notify = p.client.poll_transmit().unwrap();
        p.server.handle_receive(
            p.now,
            Receive {
                source: addr(1),
                destination: addr(2),
                contents: &notify.contents,
            },
        );
        assert!(matches!(p.server.poll_event(), Some(Event::Closed)));
        // The server answers with its own close_notify, protected.
        let reply = p.server.poll_transmit().unwrap();
        let r = records(&reply.contents).next().unwrap().unwrap();
        assert_eq!(
            (r.header.content_type, r.header.epoch),
            (ContentType::Alert, 1)
        );
        assert!(!p.server.is_connected());
    }
}

/// Our certificate is ECDSA: a client offering only ECDHE_RSA suites finds
/// none in common with an rtclab server (RFC 8422 §5.3), and says so.
#[test]
fn rsa_only_client_refused_by_ecdsa_server() {
    let mut c = config(1);
    c.cipher_suites = CipherSuite::ALL
        .into_iter()
        .filter(|s| s.authentication() == Authentication::Rsa)
        .collect();
    let mut p = Pair::new(c, config(2));
    p.run(0.0, 0, 1000);
    assert!(
        p.server_events.iter().any(|e| matches!(
            e,
            Event::Failed(Error::UnsupportedAlgorithm("no common cipher suite"))
        )),
        "{:?}",
        p.server_events
    );
    assert!(connected(&p.client_events).is_none());
}

#[test]
fn wrong_fingerprint_fails_with_alert() {
    let mut c = config(1);
    let other = config(3);
    c.expected_fingerprint = Some(other.certificate.fingerprint());
    let server = config(2);
    let server_fp = server.certificate.fingerprint();
    let mut p = Pair::new(c, server);
    p.run(0.0, 0, 1000);
    assert!(
        p.client_events
            .iter()
            .any(|e| matches!(e, Event::Failed(Error::FingerprintMismatch))),
        "{:?}",
        p.client_events
    );
    assert!(p.server_events.iter().any(|e| matches!(e, Event::PeerAlert(a) if a.description == AlertDescription::BAD_CERTIFICATE)), "{:?}", p.server_events);
    assert!(connected(&p.server_events).is_none());
    // The refused certificate's real fingerprint is reported.
    assert_eq!(p.client.rejected_fingerprint(), Some(&server_fp));
}

#[test]
fn handshake_survives_loss_and_duplication() {
    let mut ok = 0;
    for seed in 0..20 {
        let mut p = Pair::new(config(1), config(2));
        p.run(0.3, seed, 20_000);
        if connected(&p.client_events).is_some() && connected(&p.server_events).is_some() {
            ok += 1;
        }
    }
    // With 8 retransmissions per flight, 30% loss almost always completes.
    assert!(ok >= 18, "{ok}/20 handshakes completed under 30% loss");
}

#[test]
fn small_mtu_fragments_flights() {
    let mut c = config(1);
    c.mtu = 300;
    let mut s = config(2);
    s.mtu = 300;
    let mut p = Pair::new(c, s);
    p.run(0.0, 0, 1000);
    assert!(
        connected(&p.client_events).is_some(),
        "{:?}",
        p.client_events
    );
    assert!(
        connected(&p.server_events).is_some(),
        "{:?}",
        p.server_events
    );
}

#[test]
fn server_keeps_no_state_for_cookieless_hellos() {
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    let now = Instant::now();
    for i in 0..1000u16 {
        let mut c = Endpoint::client(config(1), addr(2), StdRng::seed_from_u64(u64::from(i)), now);
        let t = c.poll_transmit().unwrap();
        s.handle_receive(
            now,
            Receive {
                source: addr(10_000 + i),
                destination: addr(2),
                contents: &t.contents,
            },
        );
        let hvr = s.poll_transmit().unwrap();
        assert_eq!(hvr.destination, addr(10_000 + i));
    }
    assert!(s.core.peer.is_none());
    assert!(s.transcript.is_empty());
    assert!(matches!(s.state, State::ServerExpectClientHello));
}

fn deliver(to: &mut Endpoint, from: SocketAddr, at: SocketAddr, now: Instant, d: &[u8]) {
    to.handle_receive(
        now,
        Receive {
            source: from,
            destination: at,
            contents: d,
        },
    );
}

fn drain(e: &mut Endpoint) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| e.poll_transmit())
        .map(|t| t.contents)
        .collect()
}

/// OpenSSL packs its whole flight 5 (Certificate … ChangeCipherSpec,
/// Finished) into one datagram: the server must open the epoch-1 Finished
/// with keys derived from the ClientKeyExchange earlier in that datagram,
/// without waiting for a retransmission.
#[test]
fn whole_flight_in_one_datagram() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    for d in drain(&mut c) {
        deliver(&mut s, ca, sa, now, &d); // ClientHello
    }
    for d in drain(&mut s) {
        deliver(&mut c, sa, ca, now, &d); // HelloVerifyRequest
    }
    for d in drain(&mut c) {
        deliver(&mut s, ca, sa, now, &d); // ClientHello + cookie
    }
    for d in drain(&mut s) {
        deliver(&mut c, sa, ca, now, &d); // flight 4
    }
    let flight5 = drain(&mut c).concat();
    deliver(&mut s, ca, sa, now, &flight5);
    assert!(s.is_connected(), "{:?}", s.state);
    assert_eq!(s.dropped_records(), 0);
    for d in drain(&mut s) {
        deliver(&mut c, sa, ca, now, &d); // flight 6
    }
    assert!(c.is_connected());
}

/// A lost flight 6: the client retransmits flight 5 on its timer, and the
/// server, already connected, answers with its flight 6 again.
#[test]
fn lost_final_flight_is_resent() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    for _ in 0..2 {
        // ClientHello → HelloVerifyRequest, ClientHello → flight 4.
        for d in drain(&mut c) {
            deliver(&mut s, ca, sa, now, &d);
        }
        for d in drain(&mut s) {
            deliver(&mut c, sa, ca, now, &d);
        }
    }
    for d in drain(&mut c) {
        deliver(&mut s, ca, sa, now, &d); // flight 5
    }
    assert!(s.is_connected());
    drain(&mut s); // flight 6 lost
    let t = c.poll_timeout().unwrap();
    assert_eq!(t, now + INITIAL_RETRANSMIT_TIMEOUT);
    c.handle_timeout(t);
    let again = drain(&mut c);
    assert!(!again.is_empty());
    for d in again {
        deliver(&mut s, ca, sa, t, &d);
    }
    let resent = drain(&mut s);
    assert!(!resent.is_empty(), "server did not resend flight 6");
    for d in resent {
        deliver(&mut c, sa, ca, t, &d);
    }
    assert!(c.is_connected());
    // Backoff: the next timer would have been twice as long.
    assert_eq!(c.core.retransmit_timeout, INITIAL_RETRANSMIT_TIMEOUT * 2);
}

/// Chromium's ClientHello (rebuilt from the fixture: DTLS 1.3 and 1.2
/// offered, a post-quantum key share, split over two datagrams) is
/// answered as DTLS 1.2 with X25519, the AES-128-GCM suite and an SRTP
/// profile Chromium offered.
#[test]
fn chromium_client_hello_gets_a_dtls12_answer() {
    browser_hello_gets_a_dtls12_answer(
        &crate::dtls::handshake::tests_support::chromium_client_hello_body(),
    );
}

/// The same for Firefox ESR's ClientHello (ALPN, delegated_credentials,
/// record_size_limit offered and ignored).
#[test]
fn firefox_client_hello_gets_a_dtls12_answer() {
    browser_hello_gets_a_dtls12_answer(
        &crate::dtls::handshake::tests_support::firefox_client_hello_body(),
    );
}

fn browser_hello_gets_a_dtls12_answer(body: &[u8]) {
    use crate::dtls::handshake::{HandshakeFragment, HandshakeHeader};
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    let body = body.to_vec();
    let send_hello = |s: &mut Endpoint, body: &[u8], seq: u16, rec: u64| {
        let cut = body.len() * 5 / 6;
        for (i, (a, b)) in [(0, cut), (cut, body.len())].into_iter().enumerate() {
            let mut frag = Vec::new();
            HandshakeFragment {
                header: HandshakeHeader {
                    msg_type: HandshakeType::ClientHello,
                    length: body.len() as u32,
                    message_seq: seq,
                    fragment_offset: a as u32,
                    fragment_length: (b - a) as u32,
                },
                body: &body[a..b],
            }
            .emit(&mut frag);
            let mut d = Vec::new();
            crate::dtls::record::Record {
                header: crate::dtls::record::RecordHeader {
                    content_type: ContentType::Handshake,
                    version: crate::dtls::record::DTLS_1_0,
                    epoch: 0,
                    sequence: rec + i as u64,
                    length: 0,
                },
                fragment: &frag,
            }
            .emit(&mut d);
            deliver(s, ca, sa, now, &d);
        }
    };
    send_hello(&mut s, &body, 0, 0);
    let hvr = drain(&mut s);
    assert_eq!(hvr.len(), 1);
    let rec = records(&hvr[0]).next().unwrap().unwrap();
    // The HelloVerifyRequest reuses the hello's record sequence number (the
    // last fragment's) and message_seq 0.
    assert_eq!(rec.header.sequence, 1);
    let f = fragments(rec.fragment).next().unwrap().unwrap();
    assert_eq!(f.header.msg_type, HandshakeType::HelloVerifyRequest);
    assert_eq!(f.header.message_seq, 0);
    let Handshake::HelloVerifyRequest(h) = Handshake::parse(f.header.msg_type, f.body).unwrap()
    else {
        panic!()
    };
    let mut ch = ClientHello::parse(&body).unwrap();
    ch.cookie = h.cookie;
    let mut body2 = Vec::new();
    ch.emit(&mut body2);
    send_hello(&mut s, &body2, 1, 2);
    let flight4 = drain(&mut s);
    assert!(!flight4.is_empty());
    let mut reasm = Reassembler::with_next_seq(1);
    for d in &flight4 {
        assert!(d.len() <= 1200);
        for r in records(d) {
            let r = r.unwrap();
            // Our record numbers continue after the hello's (RFC 6347 §4.2.1).
            assert!(r.header.sequence >= 3);
            for f in fragments(r.fragment) {
                reasm.insert(&f.unwrap());
            }
        }
    }
    let sh = reasm.pop().unwrap();
    assert_eq!(sh.message_seq, 1);
    let Handshake::ServerHello(sh) = Handshake::parse(sh.msg_type, &sh.body).unwrap() else {
        panic!()
    };
    assert_eq!(sh.version, DTLS_1_2);
    assert_eq!(sh.cipher_suite, 0xc02b);
    assert!(sh.extension(extension_type::SUPPORTED_VERSIONS).is_none());
    assert!(
        sh.extension(extension_type::EXTENDED_MASTER_SECRET)
            .is_some()
    );
    assert_eq!(
        sh.extension(extension_type::USE_SRTP),
        Some(&Extension::UseSrtp {
            profiles: vec![SrtpProfile::AEAD_AES_128_GCM],
            mki: vec![]
        })
    );
    let _cert = reasm.pop().unwrap();
    let ske = reasm.pop().unwrap();
    let Handshake::ServerKeyExchange(ske) = Handshake::parse(ske.msg_type, &ske.body).unwrap()
    else {
        panic!()
    };
    assert_eq!(ske.group, NamedGroup::X25519);
}

/// Rewrites every handshake message of type `msg_type` in a plaintext
/// (epoch 0) datagram with `f`, re-framing fragment and record.
fn rewrite(datagram: &[u8], msg_type: HandshakeType, f: &dyn Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records(datagram) {
        let r = r.unwrap();
        if r.header.epoch != 0 || r.header.content_type != ContentType::Handshake {
            r.emit(&mut out);
            continue;
        }
        let mut payload = Vec::new();
        for frag in fragments(r.fragment) {
            let frag = frag.unwrap();
            if frag.header.msg_type == msg_type {
                assert_eq!(
                    frag.header.fragment_length, frag.header.length,
                    "unfragmented"
                );
                let mut body = frag.body.to_vec();
                f(&mut body);
                HandshakeMessage {
                    msg_type,
                    message_seq: frag.header.message_seq,
                    body,
                }
                .emit_unfragmented(&mut payload);
            } else {
                frag.emit(&mut payload);
            }
        }
        crate::dtls::record::Record {
            header: r.header,
            fragment: &payload,
        }
        .emit(&mut out);
    }
    out
}

/// Drives two endpoints; `tamper` may rewrite each client datagram.
fn run_tampered(
    c: &mut Endpoint,
    s: &mut Endpoint,
    tamper: &dyn Fn(&[u8]) -> Vec<u8>,
) -> (Vec<Event>, Vec<Event>) {
    let (ca, sa) = (addr(1), addr(2));
    let mut now = Instant::now();
    let (mut ce, mut se) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let mut moved = false;
        for d in drain(c) {
            moved = true;
            deliver(s, ca, sa, now, &tamper(&d));
        }
        for d in drain(s) {
            moved = true;
            deliver(c, sa, ca, now, &d);
        }
        ce.extend(std::iter::from_fn(|| c.poll_event()));
        se.extend(std::iter::from_fn(|| s.poll_event()));
        if !moved {
            match [c.poll_timeout(), s.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
            {
                Some(t) => {
                    now = now.max(t);
                    c.handle_timeout(now);
                    s.handle_timeout(now);
                }
                None => break,
            }
        }
    }
    (ce, se)
}

fn downgrade_suites(body: &mut Vec<u8>) {
    let mut ch = ClientHello::parse(body).unwrap();
    ch.cipher_suites = vec![CipherSuite::EcdheEcdsaChacha20Poly1305Sha256.code()];
    body.clear();
    ch.emit(body);
}

/// An attacker strips the preferred suites from the ClientHello. With
/// WebRTC's mutual authentication, the client's CertificateVerify signs the
/// real transcript, so the server already rejects it.
#[test]
fn downgraded_suite_detected_by_certificate_verify() {
    let now = Instant::now();
    let mut sc = config(2);
    sc.use_cookie = false;
    let mut c = Endpoint::client(config(1), addr(2), StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(sc, StdRng::seed_from_u64(2));
    let (ce, se) = run_tampered(&mut c, &mut s, &|d| {
        rewrite(d, HandshakeType::ClientHello, &downgrade_suites)
    });
    assert!(
        se.iter()
            .any(|e| matches!(e, Event::Failed(Error::BadSignature))),
        "{se:?}"
    );
    assert!(connected(&ce).is_none() && connected(&se).is_none());
}

/// The same downgrade without client certificates and without the
/// extended master secret: keys still agree but the Finished messages do
/// not, and the server aborts with decrypt_error.
#[test]
fn downgraded_suite_detected_by_finished() {
    let now = Instant::now();
    let mut cc = config(1);
    cc.offer_extended_master_secret = false;
    let mut sc = config(2);
    sc.use_cookie = false;
    sc.require_client_certificate = false;
    let mut c = Endpoint::client(cc, addr(2), StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(sc, StdRng::seed_from_u64(2));
    let (ce, se) = run_tampered(&mut c, &mut s, &|d| {
        rewrite(d, HandshakeType::ClientHello, &downgrade_suites)
    });
    assert!(
        se.iter()
            .any(|e| matches!(e, Event::Failed(Error::BadFinished))),
        "{se:?}"
    );
    assert!(
        ce.iter().any(
            |e| matches!(e, Event::PeerAlert(a) if a.description == AlertDescription::DECRYPT_ERROR)
        ),
        "{ce:?}"
    );
    assert!(!c.is_connected() && !s.is_connected());
}

/// With the extended master secret (the default) the same downgrade makes
/// the keys differ: the client's Finished cannot even be decrypted, is
/// dropped, and the handshake never completes.
#[test]
fn downgraded_suite_with_ems_never_connects() {
    let now = Instant::now();
    let mut sc = config(2);
    sc.use_cookie = false;
    sc.require_client_certificate = false;
    let mut c = Endpoint::client(config(1), addr(2), StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(sc, StdRng::seed_from_u64(2));
    let (ce, se) = run_tampered(&mut c, &mut s, &|d| {
        rewrite(d, HandshakeType::ClientHello, &downgrade_suites)
    });
    assert!(connected(&ce).is_none() && connected(&se).is_none());
    assert!(
        ce.iter()
            .any(|e| matches!(e, Event::Failed(Error::HandshakeTimeout))),
        "{ce:?}"
    );
    assert!(s.dropped_records() > 0);
}

/// A CertificateVerify whose signature was altered: the server aborts with
/// decrypt_error (RFC 5246 §7.2.2).
#[test]
fn bad_certificate_verify_rejected() {
    let now = Instant::now();
    let mut c = Endpoint::client(config(1), addr(2), StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    let (ce, se) = run_tampered(&mut c, &mut s, &|d| {
        rewrite(d, HandshakeType::CertificateVerify, &|b: &mut Vec<u8>| {
            let last = b.len() - 1;
            b[last] ^= 1;
        })
    });
    assert!(
        se.iter()
            .any(|e| matches!(e, Event::Failed(Error::BadSignature))),
        "{se:?}"
    );
    assert!(
        ce.iter().any(
            |e| matches!(e, Event::PeerAlert(a) if a.description == AlertDescription::DECRYPT_ERROR)
        ),
        "{ce:?}"
    );
}

/// An unexpected message gives an alert and a typed failure, not a panic.
#[test]
fn unexpected_message_alerts() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
    drain(&mut c);
    // A ServerHelloDone where a ServerHello (or HVR) must come.
    let mut payload = Vec::new();
    Handshake::ServerHelloDone
        .to_message(0)
        .emit_unfragmented(&mut payload);
    let mut d = Vec::new();
    crate::dtls::record::Record {
        header: crate::dtls::record::RecordHeader {
            content_type: ContentType::Handshake,
            version: DTLS_1_2,
            epoch: 0,
            sequence: 0,
            length: 0,
        },
        fragment: &payload,
    }
    .emit(&mut d);
    deliver(&mut c, sa, ca, now, &d);
    let events: Vec<_> = std::iter::from_fn(|| c.poll_event()).collect();
    assert!(
        matches!(events.as_slice(), [Event::Failed(_)]),
        "{events:?}"
    );
    let alert = drain(&mut c);
    let r = records(&alert[0]).next().unwrap().unwrap();
    assert_eq!(r.header.content_type, ContentType::Alert);
    assert_eq!(r.fragment, [2, AlertDescription::UNEXPECTED_MESSAGE.0]);
}

mod receive_path {
    use super::*;
    use proptest::prelude::*;

    /// Datagrams recorded from one handshake, client's and server's.
    fn recorded() -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let now = Instant::now();
        let (ca, sa) = (addr(1), addr(2));
        let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
        let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
        let (mut from_c, mut from_s) = (Vec::new(), Vec::new());
        for _ in 0..4 {
            for d in drain(&mut c) {
                deliver(&mut s, ca, sa, now, &d);
                from_c.push(d);
            }
            for d in drain(&mut s) {
                deliver(&mut c, sa, ca, now, &d);
                from_s.push(d);
            }
        }
        assert!(c.is_connected() && s.is_connected());
        (from_c, from_s)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Real datagrams, mutated, replayed in any order against fresh
        /// endpoints of both roles: never a panic, and never "connected"
        /// to a peer that did not complete a genuine handshake.
        #[test]
        fn mutated_datagrams_never_panic(
            picks in proptest::collection::vec((any::<bool>(), any::<prop::sample::Index>(),
                                                any::<prop::sample::Index>(), any::<u8>()), 1..30),
            junk in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let (from_c, from_s) = recorded();
            let now = Instant::now();
            let (ca, sa) = (addr(1), addr(2));
            let mut c = Endpoint::client(config(3), sa, StdRng::seed_from_u64(1), now);
            let mut s = Endpoint::server(config(4), StdRng::seed_from_u64(2));
            deliver(&mut s, ca, sa, now, &junk);
            deliver(&mut c, sa, ca, now, &junk);
            for (to_server, which, at, byte) in picks {
                let pool = if to_server { &from_c } else { &from_s };
                let mut d = pool[which.index(pool.len())].clone();
                let i = at.index(d.len());
                d[i] ^= byte;
                if to_server {
                    deliver(&mut s, ca, sa, now, &d);
                } else {
                    deliver(&mut c, sa, ca, now, &d);
                }
                drain(&mut c);
                drain(&mut s);
            }
            // Keys differ from the recorded handshake's: nothing can finish.
            prop_assert!(!c.is_connected());
            prop_assert!(!s.is_connected());
        }
    }
}

/// The Finished (epoch 1) overtakes the rest of its flight: it is buffered
/// and opened once the ClientKeyExchange yields the keys, with no
/// retransmission needed.
#[test]
fn finished_before_its_flight_is_buffered() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    for _ in 0..2 {
        for d in drain(&mut c) {
            deliver(&mut s, ca, sa, now, &d);
        }
        for d in drain(&mut s) {
            deliver(&mut c, sa, ca, now, &d);
        }
    }
    let mut flight5 = drain(&mut c);
    assert!(flight5.len() >= 2);
    flight5.reverse();
    for d in &flight5 {
        deliver(&mut s, ca, sa, now, d);
    }
    assert!(s.is_connected(), "{:?}", s.state);
}

/// A malformed ClientHello from a stranger does not kill a waiting server:
/// the genuine client still connects afterwards.
#[test]
fn malformed_hello_from_stranger_is_dropped() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    let mut payload = Vec::new();
    HandshakeMessage {
        msg_type: HandshakeType::ClientHello,
        message_seq: 0,
        body: vec![0xfe, 0xfd, 1],
    }
    .emit_unfragmented(&mut payload);
    let mut d = Vec::new();
    crate::dtls::record::Record {
        header: crate::dtls::record::RecordHeader {
            content_type: ContentType::Handshake,
            version: DTLS_1_2,
            epoch: 0,
            sequence: 0,
            length: 0,
        },
        fragment: &payload,
    }
    .emit(&mut d);
    deliver(&mut s, addr(66), sa, now, &d);
    assert!(drain(&mut s).is_empty());
    assert!(s.poll_event().is_none());
    let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
    for _ in 0..4 {
        for d in drain(&mut c) {
            deliver(&mut s, ca, sa, now, &d);
        }
        for d in drain(&mut s) {
            deliver(&mut c, sa, ca, now, &d);
        }
    }
    assert!(c.is_connected() && s.is_connected());
}

/// A peer that moves (ICE switched pairs) is followed once told; before
/// that its datagrams are not ours.
#[test]
fn set_peer_follows_a_moved_peer() {
    let mut p = Pair::new(config(1), config(2));
    p.run(0.0, 1, 1000);
    assert!(p.client.is_connected() && p.server.is_connected());
    let moved = addr(9);
    let from_moved = |p: &mut Pair, text: &[u8]| {
        p.client.send(text).unwrap();
        let t = p.client.poll_transmit().unwrap();
        p.server.handle_receive(
            p.now,
            Receive {
                source: moved,
                destination: addr(2),
                contents: &t.contents,
            },
        );
        let mut got = Vec::new();
        while let Some(e) = p.server.poll_event() {
            if let Event::ApplicationData(d) = e {
                got.push(d);
            }
        }
        got
    };
    assert!(from_moved(&mut p, b"before").is_empty());
    p.server.set_peer(moved);
    assert_eq!(from_moved(&mut p, b"after"), vec![b"after".to_vec()]);
    p.server.send(b"back").unwrap();
    assert_eq!(p.server.poll_transmit().unwrap().destination, moved);
}

/// ICE selected a pair while the ClientHello sent over a valid one (RFC
/// 8445 §12.1) is unanswered: the client sends it again at once, but only
/// once it has waited `older_than`, and never after the server answered.
#[test]
fn unanswered_client_hello_is_resent_on_selection() {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Endpoint::client(config(1), sa, StdRng::seed_from_u64(1), now);
    let hello = drain(&mut c);
    assert_eq!(hello.len(), 1);
    let rtt = Duration::from_millis(20);
    // Too soon: the answer may still be on its way.
    c.resend_unanswered_client_hello(now + Duration::from_millis(10), rtt);
    assert!(drain(&mut c).is_empty());
    // Later, unanswered: the same ClientHello again, timer not backed off.
    let later = now + Duration::from_millis(30);
    c.resend_unanswered_client_hello(later, rtt);
    let again = drain(&mut c);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0][13..], hello[0][13..], "same handshake message");
    assert_eq!(
        c.poll_timeout(),
        Some(later + c.core.config.initial_retransmit_timeout)
    );
    // Answered (HelloVerifyRequest): nothing more.
    let mut s = Endpoint::server(config(2), StdRng::seed_from_u64(2));
    deliver(&mut s, ca, sa, later, &again[0]);
    for d in drain(&mut s) {
        deliver(&mut c, sa, ca, later, &d);
    }
    let _ = drain(&mut c); // ClientHello + cookie
    c.resend_unanswered_client_hello(later + Duration::from_secs(1), rtt);
    assert!(drain(&mut c).is_empty());
}
