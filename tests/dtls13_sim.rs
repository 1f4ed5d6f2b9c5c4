//! DTLS 1.3 in the simulator, through the version-negotiating
//! [`AutoEndpoint`] with `max_version` 1.3 on both ends: handshakes with
//! the X25519MLKEM768 share complete under 30% loss with reordering and
//! duplication, through a 300-byte MTU (the hybrid ClientHello and
//! ServerHello in many fragments), with the server's ACKs lost, and fall
//! back to 1.2 against a 1.2 server over the same lossy path. Virtual
//! time, fixed seeds (the key shares and ECDSA nonces come from the
//! system, so outcomes are checked, not timelines).

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rtclab::dtls::cert::Certificate;
use rtclab::dtls::endpoint::{Config, Event, Version};
use rtclab::dtls::endpoint_auto::AutoEndpoint;
use rtclab::dtls::handshake::NamedGroup;
use rtclab::sim::{HostId, LinkConfig, Sim};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const CLIENT: &str = "192.0.2.1:5000";
const SERVER: &str = "198.51.100.1:4433";

fn config(seed: u64, mtu: usize, max: Version) -> Config {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
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
        let server = sim.add_host(AutoEndpoint::server(server_cfg, seed), &[addr(SERVER)]);
        let client = sim.add_host(
            AutoEndpoint::client(client_cfg, addr(SERVER), seed + 1, sim.now()),
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
