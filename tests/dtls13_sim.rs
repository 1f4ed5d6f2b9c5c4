//! DTLS 1.3 in the simulator, through the version-negotiating
//! [`AutoEndpoint`] with `max_version` 1.3 on both ends: handshakes with
//! the X25519MLKEM768 share complete under 30% loss with reordering and
//! duplication, through a 300-byte MTU (the hybrid ClientHello and
//! ServerHello in many fragments), when the client's final flight is lost,
//! when the server's ACK of it is lost, and fall back to 1.2 against a 1.2
//! server over the same lossy path. Virtual time, fixed seeds (the key
//! shares and ECDSA nonces come from the system, so outcomes are checked,
//! not timelines).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::{SeedableRng, rngs::StdRng};
use rtclab::dtls::cert::Certificate;
use rtclab::dtls::endpoint::{Config, Event, Version};
use rtclab::dtls::endpoint_auto::AutoEndpoint;
use rtclab::dtls::handshake::NamedGroup;
use rtclab::machine::Machine;
use rtclab::sim::{CaptureKind, HostId, LinkConfig, Sim};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const CLIENT: &str = "192.0.2.1:5000";
const SERVER: &str = "198.51.100.1:4433";

fn config(seed: u64, mtu: usize, max: Version) -> Config {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Config::new(Certificate::generate(&mut rng, SystemTime::now()).expect("cert"));
    c.mtu = mtu;
    c.max_version = max;
    c
}

struct Run {
    sim: Sim,
    client: HostId,
    server: HostId,
}

impl Run {
    fn new(seed: u64, mtu: usize, server_max: Version, link: LinkConfig) -> Self {
        let mut sim = Sim::new(seed);
        let server_cfg = config(2, mtu, server_max);
        let mut client_cfg = config(1, mtu, Version::Dtls13);
        client_cfg.expected_fingerprint = Some(server_cfg.certificate.fingerprint());
        let server = sim.add_host(
            AutoEndpoint::server(server_cfg, StdRng::seed_from_u64(seed)),
            &[addr(SERVER)],
        );
        let client = sim.add_host(
            AutoEndpoint::client(
                client_cfg,
                addr(SERVER),
                StdRng::seed_from_u64(seed + 1),
                sim.now(),
            ),
            &[addr(CLIENT)],
        );
        sim.set_link(client, link);
        Run {
            sim,
            client,
            server,
        }
    }

    fn handshake(&mut self, limit: Duration) -> bool {
        let (c, s) = (self.client, self.server);
        self.sim.run_for_with(limit, |sim| {
            sim.machine::<AutoEndpoint>(c).is_connected()
                && sim.machine::<AutoEndpoint>(s).is_connected()
        })
    }

    /// Both ends agree on version and SRTP keys; nobody failed.
    fn check(&mut self, version: Version) {
        let mut keys = Vec::new();
        for h in [self.client, self.server] {
            for e in self.sim.events::<AutoEndpoint>(h) {
                match e {
                    Event::Connected(c) => {
                        assert_eq!(c.version, version);
                        if version == Version::Dtls13 {
                            assert_eq!(c.key_share_group, Some(NamedGroup::X25519_MLKEM768));
                        }
                        keys.push(c.srtp_keying_material.expect("SRTP keys"));
                    }
                    Event::Failed(e) => panic!("{}: {e}", self.sim.name(h)),
                    Event::PeerAlert(a) => panic!("{}: alert {a:?}", self.sim.name(h)),
                    _ => {}
                }
            }
        }
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], keys[1]);
    }
}

fn lossy() -> LinkConfig {
    LinkConfig {
        loss: 0.3,
        reorder: 0.2,
        reorder_delay: Duration::from_millis(15),
        duplicate: 0.1,
        jitter: Duration::from_millis(4),
        ..LinkConfig::default()
    }
}

#[test]
fn dtls13_completes_under_30_percent_loss_reordering_duplication() {
    for seed in 1..=10 {
        let mut run = Run::new(seed, 1200, Version::Dtls13, lossy());
        assert!(run.handshake(Duration::from_secs(60)), "seed {seed}");
        run.check(Version::Dtls13);
    }
}

#[test]
fn dtls13_through_a_300_byte_mtu_with_loss() {
    for seed in 1..=6 {
        let mut run = Run::new(seed, 300, Version::Dtls13, lossy());
        assert!(run.handshake(Duration::from_secs(60)), "seed {seed}");
        run.check(Version::Dtls13);
    }
}

#[test]
fn dtls13_clean_path_no_retransmission() {
    let mut run = Run::new(1, 1200, Version::Dtls13, LinkConfig::default());
    assert!(run.handshake(Duration::from_secs(2)));
    run.check(Version::Dtls13);
    // Connected within two round trips plus the HelloRetryRequest's.
    assert!(
        run.sim.elapsed() < Duration::from_millis(500),
        "{:?}",
        run.sim.elapsed()
    );
}

#[test]
fn fallback_to_12_over_a_lossy_path() {
    for seed in 1..=6 {
        let mut run = Run::new(seed, 1200, Version::Dtls12, lossy());
        assert!(run.handshake(Duration::from_secs(60)), "seed {seed}");
        run.check(Version::Dtls12);
    }
}

/// A link that loses everything.
fn cut() -> LinkConfig {
    LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    }
}

impl Run {
    fn connected(&self, host: HostId) -> bool {
        self.sim.machine::<AutoEndpoint>(host).is_connected()
    }

    /// Runs until `host` is connected; the other may not be yet.
    fn until_connected(&mut self, host: HostId) {
        assert!(
            self.sim.run_for_with(Duration::from_secs(5), |sim| sim
                .machine::<AutoEndpoint>(host)
                .is_connected()),
            "{} never connected",
            self.sim.name(host)
        );
    }

    /// Datagrams from `source` the links dropped.
    fn dropped_from(&mut self, source: &str) -> usize {
        self.sim
            .drain_capture()
            .iter()
            .filter(|r| r.source == addr(source) && matches!(r.kind, CaptureKind::Dropped(_)))
            .count()
    }

    /// The client's retransmission timer is off: its flight was
    /// acknowledged (RFC 9147 §7) and nothing else is pending.
    fn client_quiet(&mut self) -> bool {
        let c = self.client;
        self.sim.run_for(Duration::from_millis(100));
        self.sim.machine::<AutoEndpoint>(c).poll_timeout().is_none()
    }
}

/// The client's final flight (Certificate, CertificateVerify, Finished in
/// epoch 2) is lost: the client is connected, the server is not. With no
/// ACK for it, the client's timer resends the flight (RFC 9147 §5.8); the
/// server connects and acknowledges it, and the client's timer stops.
#[test]
fn dtls13_lost_final_flight_is_recovered() {
    let mut run = Run::new(3, 1200, Version::Dtls13, LinkConfig::default());
    run.sim.set_capture(true);
    let (client, server) = (run.client, run.server);
    run.until_connected(client);
    // Flight 3 is on the client's uplink: cut the server's downlink before
    // it gets there.
    run.sim.set_downlink(server, cut());
    run.sim.run_for(Duration::from_millis(50));
    assert!(!run.connected(server), "the final flight was not lost");
    let lost_at = run.sim.elapsed();
    run.sim.set_downlink(server, LinkConfig::default());
    assert!(run.handshake(Duration::from_secs(10)), "never recovered");
    let took = run.sim.elapsed() - lost_at;
    // One retransmission timeout (250 ms, less the 50 ms cut) and a
    // one-way trip, roughly.
    assert!(took < Duration::from_secs(1), "recovery took {took:?}");
    assert!(
        run.dropped_from(CLIENT) >= 1,
        "nothing of the client's dropped"
    );
    assert!(run.client_quiet(), "the client still retransmits");
    run.check(Version::Dtls13);
}

/// The server's ACK of the client's final flight is lost: both are
/// connected, but the client still holds its flight. Its timer resends it;
/// the server, connected, sees records it had and acknowledges them again
/// (RFC 9147 §7.1); the client's timer stops. The same, twice in a row.
#[test]
fn dtls13_lost_acks_are_recovered() {
    let mut run = Run::new(4, 1200, Version::Dtls13, LinkConfig::default());
    run.sim.set_capture(true);
    let (client, server) = (run.client, run.server);
    run.until_connected(server);
    // The ACK is on the server's uplink: cut the client's downlink for
    // the first retransmission's ACK too.
    run.sim.set_downlink(client, cut());
    run.sim.run_for(Duration::from_millis(400));
    assert!(
        run.sim
            .machine::<AutoEndpoint>(client)
            .poll_timeout()
            .is_some(),
        "the client's flight was acknowledged: no ACK was lost"
    );
    run.sim.set_downlink(client, LinkConfig::default());
    let c = run.client;
    assert!(
        run.sim.run_for_with(Duration::from_secs(10), |sim| sim
            .machine::<AutoEndpoint>(c)
            .poll_timeout()
            .is_none()),
        "the client never got an ACK"
    );
    assert!(run.dropped_from(SERVER) >= 2, "fewer than two ACKs dropped");
    assert!(run.connected(client) && run.connected(server));
    run.check(Version::Dtls13);
}
