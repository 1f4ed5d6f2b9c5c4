use super::*;
use rand::Rng;
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
            client: Endpoint::client(client, addr(2), 1, now),
            server: Endpoint::server(server, 2),
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
    for suite in CipherSuite::ALL {
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
        p.run(0.0, 0, 100);
        assert!(p.server_events.iter().any(|e| matches!(e, Event::Closed)));
    }
}

#[test]
fn wrong_fingerprint_fails_with_alert() {
    let mut c = config(1);
    let other = config(3);
    c.expected_fingerprint = Some(other.certificate.fingerprint());
    let mut p = Pair::new(c, config(2));
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
    let mut s = Endpoint::server(config(2), 2);
    let now = Instant::now();
    for i in 0..1000u16 {
        let mut c = Endpoint::client(config(1), addr(2), u64::from(i), now);
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
    assert!(s.peer.is_none());
    assert!(s.transcript.is_empty());
    assert_eq!(s.state, State::ServerWaitClientHello);
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
    let mut c = Endpoint::client(config(1), sa, 1, now);
    let mut s = Endpoint::server(config(2), 2);
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
    let mut c = Endpoint::client(config(1), sa, 1, now);
    let mut s = Endpoint::server(config(2), 2);
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
    assert_eq!(c.retransmit_timeout, INITIAL_RETRANSMIT_TIMEOUT * 2);
}

/// Chromium's ClientHello (rebuilt from the fixture: DTLS 1.3 and 1.2
/// offered, a post-quantum key share, split over two datagrams) is
/// answered as DTLS 1.2 with X25519, the AES-128-GCM suite and an SRTP
/// profile Chromium offered.
#[test]
fn chromium_client_hello_gets_a_dtls12_answer() {
    use crate::dtls::handshake::{HandshakeFragment, HandshakeHeader};
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut s = Endpoint::server(config(2), 2);
    let body = crate::dtls::handshake::tests_support::chromium_client_hello_body();
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
            .encode(&mut frag);
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
            .encode(&mut d);
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
    ch.encode(&mut body2);
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
