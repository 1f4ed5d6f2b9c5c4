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
