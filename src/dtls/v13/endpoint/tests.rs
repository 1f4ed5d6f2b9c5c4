//! The DTLS 1.3 state machines against each other in memory: the 1-RTT
//! handshake with mutual authentication and the hybrid share, the
//! HelloRetryRequest paths (cookie, group), loss, reordering and
//! duplication with ACKs and retransmissions, a 300-byte MTU, KeyUpdate,
//! the SRTP exporter, a wrong fingerprint, tampered and replayed records,
//! a CertificateVerify or Finished that does not check out.

use super::*;
use crate::dtls::cert::{Certificate, HashAlgorithm};
use rand::{Rng, SeedableRng};
use std::time::SystemTime;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(seed: u64) -> Config {
    let mut rng = StdRng::seed_from_u64(seed);
    Config::new(Certificate::generate(&mut rng, SystemTime::now()).unwrap())
}

/// A lossy, reordering, duplicating wire between the two endpoints.
pub(crate) struct Pair {
    pub(crate) client: Endpoint,
    pub(crate) server: Endpoint,
    pub(crate) now: Instant,
    pub(crate) client_events: Vec<Event>,
    pub(crate) server_events: Vec<Event>,
    rng: StdRng,
    /// Datagrams in flight: (deliver at, to server?, bytes).
    wire: Vec<(Instant, bool, Vec<u8>)>,
    pub(crate) loss: f64,
    pub(crate) reorder: bool,
    pub(crate) delivered: usize,
}

impl Pair {
    pub(crate) fn new(client: Config, server: Config) -> Self {
        let now = Instant::now();
        Pair {
            client: Endpoint::client(client, addr(2), StdRng::seed_from_u64(1), now),
            server: Endpoint::server(server, StdRng::seed_from_u64(2)),
            now,
            client_events: Vec::new(),
            server_events: Vec::new(),
            rng: StdRng::seed_from_u64(7),
            wire: Vec::new(),
            loss: 0.0,
            reorder: false,
            delivered: 0,
        }
    }

    fn seed(mut self, seed: u64) -> Self {
        self.rng = StdRng::seed_from_u64(seed);
        self
    }

    fn take_transmits(&mut self) {
        let one_way = Duration::from_millis(10);
        let mut out = Vec::new();
        while let Some(t) = self.client.poll_transmit() {
            assert_eq!(t.destination, addr(2));
            out.push((true, t.contents));
        }
        while let Some(t) = self.server.poll_transmit() {
            assert_eq!(t.destination, addr(1));
            out.push((false, t.contents));
        }
        for (to_server, d) in out {
            if self.rng.random_bool(self.loss) {
                continue;
            }
            let jitter = if self.reorder {
                Duration::from_millis(self.rng.random_range(0..15))
            } else {
                Duration::ZERO
            };
            if self.rng.random_bool(self.loss / 2.0) {
                self.wire
                    .push((self.now + one_way + jitter * 2, to_server, d.clone()));
            }
            self.wire.push((self.now + one_way + jitter, to_server, d));
        }
    }

    /// Runs until both are connected and quiet, or `limit` of virtual time.
    pub(crate) fn run(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            self.take_transmits();
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            let next_wire = self.wire.iter().map(|w| w.0).min();
            let next = [
                next_wire,
                self.client.poll_timeout(),
                self.server.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return };
            if next > end {
                return;
            }
            self.now = self.now.max(next);
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= now);
            self.wire = rest;
            for (_, to_server, d) in due {
                self.delivered += 1;
                let (e, source, destination) = if to_server {
                    (&mut self.server, addr(1), addr(2))
                } else {
                    (&mut self.client, addr(2), addr(1))
                };
                e.handle_receive(
                    now,
                    Receive {
                        source,
                        destination,
                        contents: &d,
                    },
                );
            }
            self.client.handle_timeout(now);
            self.server.handle_timeout(now);
        }
    }

    pub(crate) fn connected(events: &[Event]) -> Option<&Connected> {
        events.iter().find_map(|e| match e {
            Event::Connected(c) => Some(&**c),
            _ => None,
        })
    }

    fn data(events: &[Event]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ApplicationData(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }
}

fn assert_agree(pair: &Pair, client_cert: &[u8], server_cert: &[u8]) {
    let c = Pair::connected(&pair.client_events).expect("client connected");
    let s = Pair::connected(&pair.server_events).expect("server connected");
    assert_eq!(c.version, Version::Dtls13);
    assert_eq!(s.version, Version::Dtls13);
    assert_eq!(c.cipher_suite, CipherSuite::Tls13Aes128GcmSha256);
    assert_eq!(c.srtp_profile, Some(SrtpProfile::AEAD_AES_128_GCM));
    assert_eq!(c.srtp_keying_material.as_ref().map(Vec::len), Some(56));
    assert_eq!(c.srtp_keying_material, s.srtp_keying_material);
    assert_eq!(c.peer_certificate, server_cert);
    assert_eq!(s.peer_certificate, client_cert);
    assert!(pair.client.is_connected() && pair.server.is_connected());
}

#[test]
fn handshake_with_hybrid_share_cookie_and_mutual_authentication() {
    let (cc, sc) = (config(1), config(2));
    let (cder, sder) = (cc.certificate.der().to_vec(), sc.certificate.der().to_vec());
    let mut sc = sc;
    sc.expected_fingerprint = Some(Fingerprint::of(HashAlgorithm::Sha256, &cder));
    let mut cc = cc;
    cc.expected_fingerprint = Some(Fingerprint::of(HashAlgorithm::Sha256, &sder));
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert_agree(&pair, &cder, &sder);
    let c = Pair::connected(&pair.client_events).unwrap();
    assert_eq!(c.key_share_group, Some(NamedGroup::X25519_MLKEM768));
    // ClientHello (2 datagrams: the hybrid share), HRR, ClientHello
    // again (2), the server's flight, the client's, the server's ACK:
    // nothing retransmitted.
    assert!(pair.delivered <= 10, "{} datagrams", pair.delivered);
    assert_eq!(pair.client.dropped_records(), 0);
    // Application data both ways in epoch 3.
    pair.client.send(b"ping").unwrap();
    pair.server.send(b"pong").unwrap();
    pair.run(Duration::from_secs(1));
    assert_eq!(Pair::data(&pair.server_events), [b"ping".to_vec()]);
    assert_eq!(Pair::data(&pair.client_events), [b"pong".to_vec()]);
    // Both sides are idle: no timer left.
    assert_eq!(pair.client.poll_timeout(), None);
    assert_eq!(pair.server.poll_timeout(), None);
    // The key log has the five TLS 1.3 labels, the same on both sides.
    let lines = pair.client.key_log_lines().unwrap();
    assert_eq!(lines, pair.server.key_log_lines().unwrap());
    assert!(lines[0].starts_with("CLIENT_HANDSHAKE_TRAFFIC_SECRET "));
}

#[test]
fn handshake_without_cookie_and_x25519_only() {
    let mut cc = config(3);
    cc.dtls13_key_shares = vec![NamedGroup::X25519];
    let mut sc = config(4);
    sc.use_cookie = false;
    let (cder, sder) = (cc.certificate.der().to_vec(), sc.certificate.der().to_vec());
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert_agree(&pair, &cder, &sder);
    assert_eq!(pair.client.key_share_group(), Some(NamedGroup::X25519));
    // ClientHello, the server's flight (one datagram), the client's, ACK.
    assert_eq!(pair.delivered, 4);
}

#[test]
fn a_share_already_sent_is_taken_over_a_preferred_group() {
    // RFC 8446 §4.2.8: a server that can use a share the client sent does
    // not ask for another. The server prefers P-256, the client (as the
    // browsers do) sends X25519MLKEM768 and X25519 shares only: one round
    // trip, no HelloRetryRequest.
    let cc = config(11);
    let mut sc = config(12);
    sc.use_cookie = false;
    sc.dtls13_key_shares = vec![NamedGroup::SECP256R1];
    let (cder, sder) = (cc.certificate.der().to_vec(), sc.certificate.der().to_vec());
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert_agree(&pair, &cder, &sder);
    assert_eq!(
        pair.server.key_share_group(),
        Some(NamedGroup::X25519_MLKEM768)
    );
    // ClientHello (2 datagrams), the server's flight (2), the client's, ACK.
    assert_eq!(pair.delivered, 6);
}

#[test]
fn hello_retry_request_for_a_group() {
    // No share at all: the server asks for its preferred group (RFC 8446
    // §4.1.4) and for a cookie in the same HelloRetryRequest.
    let mut cc = config(5);
    cc.dtls13_key_shares = vec![];
    let mut sc = config(6);
    sc.dtls13_key_shares = vec![NamedGroup::SECP256R1];
    let (cder, sder) = (cc.certificate.der().to_vec(), sc.certificate.der().to_vec());
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert_agree(&pair, &cder, &sder);
    assert_eq!(pair.server.key_share_group(), Some(NamedGroup::SECP256R1));
}

#[test]
fn survives_loss_reordering_duplication_and_a_small_mtu() {
    for seed in 0..12 {
        let mut cc = config(7);
        let mut sc = config(8);
        let mtu = if seed % 2 == 0 { 300 } else { 1200 };
        cc.mtu = mtu;
        sc.mtu = mtu;
        let (cder, sder) = (cc.certificate.der().to_vec(), sc.certificate.der().to_vec());
        let mut pair = Pair::new(cc, sc).seed(seed);
        pair.loss = 0.3;
        pair.reorder = true;
        pair.run(Duration::from_secs(60));
        assert_agree(&pair, &cder, &sder);
        pair.client.send(b"after loss").unwrap();
        pair.loss = 0.0;
        pair.run(Duration::from_secs(30));
        assert_eq!(
            Pair::data(&pair.server_events),
            [b"after loss".to_vec()],
            "seed {seed}"
        );
        // Every flight ended acknowledged: no timer armed.
        assert_eq!(pair.client.poll_timeout(), None, "seed {seed}");
        assert_eq!(pair.server.poll_timeout(), None, "seed {seed}");
    }
}

#[test]
fn small_mtu_fragments_fit() {
    let mut cc = config(9);
    let mut sc = config(10);
    cc.mtu = 300;
    sc.mtu = 300;
    let mut client = Endpoint::client(cc, addr(2), StdRng::seed_from_u64(1), Instant::now());
    let mut n = 0;
    while let Some(t) = client.poll_transmit() {
        assert!(t.contents.len() <= 300);
        n += 1;
    }
    // 1,216 + 32 bytes of shares and the rest of the hello.
    assert!(n >= 5, "{n}");
    let _ = sc;
}

#[test]
fn lost_final_flight_and_lost_acks() {
    let (cc, sc) = (config(11), config(12));
    let mut pair = Pair::new(cc, sc);
    // Run until the client sent its last flight, then drop everything the
    // server sends for a while (its ACK), so the client retransmits.
    pair.run(Duration::from_millis(25));
    pair.loss = 1.0;
    pair.run(Duration::from_millis(300));
    pair.loss = 0.0;
    pair.run(Duration::from_secs(10));
    assert!(Pair::connected(&pair.client_events).is_some());
    assert!(Pair::connected(&pair.server_events).is_some());
    assert_eq!(pair.client.poll_timeout(), None);
}

#[test]
fn key_update_both_ways() {
    let (cc, sc) = (config(13), config(14));
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert!(pair.client.is_connected());
    let now = pair.now;
    pair.client.update_keys(now, true).unwrap();
    pair.run(Duration::from_secs(5));
    // Both write epochs moved to 4.
    assert_eq!(pair.client.core.records.write_epoch(), 4);
    assert_eq!(pair.server.core.records.write_epoch(), 4);
    pair.client.send(b"epoch 4").unwrap();
    pair.server.send(b"epoch 4 too").unwrap();
    pair.run(Duration::from_secs(1));
    assert_eq!(Pair::data(&pair.server_events), [b"epoch 4".to_vec()]);
    assert_eq!(Pair::data(&pair.client_events), [b"epoch 4 too".to_vec()]);
}

#[test]
fn wrong_fingerprint_fails_with_an_alert() {
    let (mut cc, sc) = (config(15), config(16));
    cc.expected_fingerprint = Some(Fingerprint::of(HashAlgorithm::Sha256, b"not it"));
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert!(
        pair.client_events
            .iter()
            .any(|e| matches!(e, Event::Failed(Error::FingerprintMismatch)))
    );
    assert!(pair.client.rejected_fingerprint().is_some());
    assert!(pair.server_events.iter().any(
        |e| matches!(e, Event::PeerAlert(a) if a.description == AlertDescription::BAD_CERTIFICATE)
    ));
}

#[test]
fn close_notify() {
    let (cc, sc) = (config(17), config(18));
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    pair.client.close();
    pair.run(Duration::from_secs(1));
    assert!(
        pair.server_events
            .iter()
            .any(|e| matches!(e, Event::Closed))
    );
}

#[test]
fn a_12_answer_makes_the_client_fall_back() {
    use crate::dtls::endpoint::Endpoint as Endpoint12;
    let (cc, sc) = (config(19), config(20));
    let now = Instant::now();
    let mut client = Endpoint::client_offering(cc, addr(2), StdRng::seed_from_u64(1), now, true);
    let mut server = Endpoint12::server(sc, StdRng::seed_from_u64(2));
    while let Some(t) = client.poll_transmit() {
        server.handle_receive(
            now,
            Receive {
                source: addr(1),
                destination: addr(2),
                contents: &t.contents,
            },
        );
    }
    // The 1.2 server answers with a HelloVerifyRequest.
    while let Some(t) = server.poll_transmit() {
        client.handle_receive(
            now,
            Receive {
                source: addr(2),
                destination: addr(1),
                contents: &t.contents,
            },
        );
    }
    let f = client.take_fallback().expect("fell back");
    assert_eq!(f.hello.msg_type, HandshakeType::ClientHello);
    assert!(client.take_fallback().is_none());
}

/// Delivers every queued datagram of `from` to `to`, through `tamper`.
fn relay(
    from: &mut Endpoint,
    to: &mut Endpoint,
    (src, dst): (SocketAddr, SocketAddr),
    now: Instant,
    tamper: &mut dyn FnMut(&mut Vec<u8>),
) -> Vec<Vec<u8>> {
    let mut sent = Vec::new();
    while let Some(t) = from.poll_transmit() {
        let mut d = t.contents;
        sent.push(d.clone());
        tamper(&mut d);
        to.handle_receive(
            now,
            Receive {
                source: src,
                destination: dst,
                contents: &d,
            },
        );
    }
    sent
}

/// RFC 9147 §4.5.2 / RFC 8446 §5.2: in 1.3 the CertificateVerify and
/// Finished travel encrypted, so a byte changed on the path fails the
/// record's AEAD and the record is dropped like a lost one (never read as
/// a handshake message); the flight's retransmission then completes the
/// handshake with the same keys on both sides.
#[test]
fn tampered_encrypted_handshake_records_are_dropped() {
    let (cc, sc) = (config(31), config(32));
    let mut now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = Endpoint::client(cc, sa, StdRng::seed_from_u64(3), now);
    let mut s = Endpoint::server(sc, StdRng::seed_from_u64(4));
    // Flip the last byte (the AEAD tag) of the first encrypted datagram
    // each side sends (a unified header starts 0b001).
    let mut flipped = [false, false];
    for _ in 0..40 {
        relay(&mut c, &mut s, (ca, sa), now, &mut |d| {
            if !flipped[0] && d[0] & 0xe0 == 0x20 {
                flipped[0] = true;
                *d.last_mut().unwrap() ^= 1;
            }
        });
        relay(&mut s, &mut c, (sa, ca), now, &mut |d| {
            if !flipped[1] && contains_unified(d) {
                flipped[1] = true;
                *d.last_mut().unwrap() ^= 1;
            }
        });
        if c.is_connected() && s.is_connected() {
            break;
        }
        if let Some(t) = [c.poll_timeout(), s.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            now = now.max(t);
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
    }
    assert!(flipped[0] && flipped[1]);
    assert!(c.is_connected() && s.is_connected());
    assert!(c.dropped_records() + s.dropped_records() >= 2);
    let events = |e: &mut Endpoint| std::iter::from_fn(|| e.poll_event()).collect::<Vec<_>>();
    let key = |ev: &[Event]| {
        ev.iter().find_map(|e| match e {
            Event::Connected(c) => c.srtp_keying_material.clone(),
            _ => None,
        })
    };
    let (ce, se) = (events(&mut c), events(&mut s));
    assert!(!ce.iter().chain(&se).any(|e| matches!(e, Event::Failed(_))));
    assert_eq!(key(&ce), key(&se));
    assert!(key(&ce).is_some());
}

/// Whether a datagram holds a 1.3 encrypted record (unified header): the
/// server's first flight starts with a plaintext ServerHello record.
fn contains_unified(d: &[u8]) -> bool {
    let mut at = 0;
    while at < d.len() {
        if d[at] & 0xe0 == 0x20 {
            return true;
        }
        // DTLSPlaintext: 13-byte header, length at 11..13.
        if at + 13 > d.len() {
            return false;
        }
        at += 13 + usize::from(u16::from_be_bytes([d[at + 11], d[at + 12]]));
    }
    false
}

/// RFC 9147 §4.5.1: a replayed record (the same datagram again, now or
/// later) is discarded by the replay window; the data arrives once.
#[test]
fn replayed_application_data_is_discarded() {
    let (cc, sc) = (config(33), config(34));
    let mut pair = Pair::new(cc, sc);
    pair.run(Duration::from_secs(5));
    assert!(pair.client.is_connected() && pair.server.is_connected());
    pair.client.send(b"once").unwrap();
    let datagram = pair.client.poll_transmit().unwrap().contents;
    let dropped = pair.server.dropped_records();
    for _ in 0..3 {
        pair.server.handle_receive(
            pair.now,
            Receive {
                source: addr(1),
                destination: addr(2),
                contents: &datagram,
            },
        );
    }
    let got: Vec<Event> = std::iter::from_fn(|| pair.server.poll_event()).collect();
    assert_eq!(Pair::data(&got), [b"once".to_vec()]);
    assert_eq!(pair.server.dropped_records(), dropped + 2);
}

/// The proofs refuse what a peer with the handshake keys (but not the
/// certificate's private key) could send: a CertificateVerify whose
/// signature does not verify (RFC 8446 §4.4.3), a Finished that does not
/// match the transcript (§4.4.4).
#[test]
fn tampered_certificate_verify_and_finished_are_refused() {
    let cert = config(35).certificate;
    let accepted = proof::AcceptedCertificate::check(cert.der().to_vec(), None)
        .map_err(|(e, ..)| e)
        .unwrap();
    let hash = ks::sha256(b"a transcript");
    let content = m::CertificateVerify::signed_content(m::Signer::Client, &hash);
    let mut cv = m::CertificateVerify {
        scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
        signature: cert.sign(&content).unwrap(),
    };
    let good = proof::VerifiedPeer::verify(accepted.clone(), m::Signer::Client, &hash, &cv);
    assert!(good.is_ok());
    // The server's context string instead of the client's (§4.4.3).
    assert!(proof::VerifiedPeer::verify(accepted.clone(), m::Signer::Server, &hash, &cv).is_err());
    let n = cv.signature.len();
    cv.signature[n / 2] ^= 1;
    assert!(proof::VerifiedPeer::verify(accepted, m::Signer::Client, &hash, &cv).is_err());

    let base = Secret::from_bytes([7; 32]);
    let mut transcript = Transcript::new();
    transcript.add(HandshakeType::ClientHello, b"hello");
    let key = ks::finished_key(P, &base);
    let mut f = m::Finished {
        verify_data: ks::verify_data(&key, &transcript.hash()),
    };
    assert!(proof::FinishedChecked::check(&base, &transcript, &f).is_ok());
    f.verify_data[0] ^= 0x80;
    assert!(matches!(
        proof::FinishedChecked::check(&base, &transcript, &f),
        Err(Error::BadFinished)
    ));
}
