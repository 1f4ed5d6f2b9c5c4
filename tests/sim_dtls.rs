//! DTLS in the simulator: handshakes complete under 30% loss with
//! reordering and duplication, through a 300-byte MTU (fragmented flights),
//! and when the final flight is lost. Virtual time, fixed seeds.
//!
//! What "deterministic by seed" covers here: every decision of the network
//! (loss, duplication, reordering, jitter) comes from the seed. The bytes do
//! not quite: `ring` draws ECDHE keys and ECDSA nonces from the operating
//! system, so a DER signature may be a byte longer or shorter from run to
//! run. With flights well under the MTU that changes no datagram count, and
//! a run replays exactly (checked below); with a 300-byte MTU it can move a
//! fragment boundary, so those tests check the outcome, not the timeline.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::{SeedableRng, rngs::StdRng};
use rtclab::dtls::cert::Certificate;
use rtclab::dtls::endpoint::{Config, Endpoint, Event};
use rtclab::dtls::handshake::SrtpProfile;
use rtclab::sim::{CaptureKind, HostId, LinkConfig, Sim};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

const CLIENT: &str = "192.0.2.1:5000";
const SERVER: &str = "198.51.100.1:4433";

/// Two certificates made once per test, so that both runs of a determinism
/// check send the same certificate bytes.
struct Certs {
    client: (String, String),
    server: (String, String),
}

impl Certs {
    fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pem = || {
            let c = Certificate::generate(&mut rng, SystemTime::now()).expect("certificate");
            (c.certificate_pem(), c.private_key_pem())
        };
        Certs {
            client: pem(),
            server: pem(),
        }
    }
}

fn config((cert, key): &(String, String), mtu: usize) -> Config {
    let mut c = Config::new(Certificate::from_pem(cert, key).expect("PEM"));
    c.mtu = mtu;
    c
}

struct Run {
    sim: Sim,
    client: HostId,
    server: HostId,
}

impl Run {
    /// A client and a server on the public network; `link` on the client's
    /// access link (both directions), so the path has exactly its loss.
    fn new(seed: u64, certs: &Certs, mtu: usize, link: LinkConfig) -> Self {
        let mut sim = Sim::new(seed);
        let server_cfg = config(&certs.server, mtu);
        let mut client_cfg = config(&certs.client, mtu);
        client_cfg.expected_fingerprint = Some(
            Certificate::from_pem(&certs.server.0, &certs.server.1)
                .expect("PEM")
                .fingerprint(),
        );
        let server = sim.add_host(
            Endpoint::server(server_cfg, StdRng::seed_from_u64(seed)),
            &[addr(SERVER)],
        );
        let client = sim.add_host(
            Endpoint::client(
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

    fn connected(&self, host: HostId) -> bool {
        self.sim.machine::<Endpoint>(host).is_connected()
    }

    /// Runs until both ends are connected (or `limit` of virtual time).
    fn handshake(&mut self, limit: Duration) -> bool {
        let (c, s) = (self.client, self.server);
        self.sim.run_for_with(limit, |sim| {
            sim.machine::<Endpoint>(c).is_connected() && sim.machine::<Endpoint>(s).is_connected()
        })
    }

    /// Both ends agree on the SRTP keys, and no one failed.
    fn check_keys(&mut self) {
        let mut keys = Vec::new();
        for h in [self.client, self.server] {
            for e in self.sim.events::<Endpoint>(h) {
                match e {
                    Event::Connected(c) => keys.push(c.srtp_keying_material.expect("SRTP keys")),
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
fn handshake_completes_under_30_percent_loss_reordering_duplication() {
    let certs = Certs::new();
    let mut times = Vec::new();
    for seed in 1..=20 {
        let mut run = Run::new(seed, &certs, 1200, lossy());
        assert!(
            run.handshake(Duration::from_secs(60)),
            "seed {seed}: no handshake in 60 s of virtual time; stats {:?}",
            run.sim.stats()
        );
        run.check_keys();
        let st = run.sim.stats();
        assert!(
            st.lost > 0 || seed > 1,
            "seed {seed}: the link lost nothing?"
        );
        times.push(run.sim.elapsed());
    }
    times.sort();
    eprintln!(
        "30% loss: handshake times median {:?}, worst {:?}",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}

#[test]
fn lossy_handshake_replays_exactly_from_its_seed() {
    let certs = Certs::new();
    let timeline = |seed| {
        let mut run = Run::new(seed, &certs, 1200, lossy());
        run.sim.set_capture(true);
        assert!(run.handshake(Duration::from_secs(60)), "seed {seed}");
        let t: Vec<_> = run
            .sim
            .drain_capture()
            .into_iter()
            .map(|r| (r.time, r.kind, r.source, r.destination))
            .collect();
        (run.sim.elapsed(), t)
    };
    for seed in [3, 11] {
        let (a, ta) = timeline(seed);
        let (b, tb) = timeline(seed);
        assert_eq!(a, b, "seed {seed}: different completion times");
        assert_eq!(ta, tb, "seed {seed}: different timelines");
    }
}

/// Path MTU 300 bytes (IP packet): the endpoints are told 272 bytes of UDP
/// payload, so every flight with a certificate is cut into fragments.
#[test]
fn handshake_through_a_300_byte_mtu_fragments_flights() {
    let certs = Certs::new();
    for (seed, loss) in [(1, 0.0), (2, 0.0), (3, 0.1), (4, 0.1), (5, 0.3)] {
        let link = LinkConfig {
            mtu: Some(300),
            loss,
            ..LinkConfig::default()
        };
        let mut run = Run::new(seed, &certs, 300 - 28, link);
        run.sim.set_capture(true);
        assert!(
            run.handshake(Duration::from_secs(60)),
            "seed {seed}: no handshake through MTU 300; stats {:?}",
            run.sim.stats()
        );
        run.check_keys();
        let capture = run.sim.drain_capture();
        let sent: Vec<_> = capture
            .iter()
            .filter(|r| r.kind == CaptureKind::Sent)
            .collect();
        assert!(sent.iter().all(|r| r.contents.len() <= 272));
        assert_eq!(run.sim.stats().too_big, 0);
        // The server's flight 4 (certificate and all, ~800 bytes) needed
        // several datagrams.
        let server_first_flight = sent
            .iter()
            .filter(|r| r.source == addr(SERVER))
            .take_while(|r| r.contents.len() > 60) // the HelloVerifyRequest is small
            .count();
        let from_server = sent.iter().filter(|r| r.source == addr(SERVER)).count();
        assert!(
            from_server >= 4,
            "seed {seed}: only {from_server} datagrams from the server ({server_first_flight})"
        );
    }
}

/// The same path, but the endpoints believe the MTU is 1200: their flights
/// are dropped as too big and the handshake cannot complete. (The MTU in
/// the simulator is real; there is no IP fragmentation.)
#[test]
fn flights_above_the_path_mtu_never_arrive() {
    let certs = Certs::new();
    let link = LinkConfig {
        mtu: Some(300),
        ..LinkConfig::default()
    };
    let mut run = Run::new(1, &certs, 1200, link);
    assert!(!run.handshake(Duration::from_secs(5)));
    assert!(run.sim.stats().too_big > 0);
}

/// The server's last flight (ChangeCipherSpec, Finished) is lost: the
/// server is connected, the client is not. The client's timer resends its
/// flight 5; the server sees a message of the client's previous flight and
/// resends flight 6 (RFC 6347 §4.2.4); the client connects.
#[test]
fn lost_final_flight_is_recovered() {
    let certs = Certs::new();
    let mut run = Run::new(7, &certs, 1200, LinkConfig::default());
    run.sim.set_capture(true);
    let server = run.server;
    assert!(
        run.sim.run_for_with(Duration::from_secs(5), |sim| sim
            .machine::<Endpoint>(server)
            .is_connected()),
        "the server never connected"
    );
    // Flight 6 is on the server's uplink now: cut the client's downlink
    // before it gets there.
    let cut = LinkConfig {
        loss: 1.0,
        ..LinkConfig::default()
    };
    run.sim.set_downlink(run.client, cut);
    run.sim.run_for(Duration::from_millis(50));
    assert!(!run.connected(run.client), "flight 6 was not lost");
    let lost_at = run.sim.elapsed();
    run.sim.set_downlink(run.client, LinkConfig::default());
    assert!(
        run.handshake(Duration::from_secs(10)),
        "the client never recovered"
    );
    run.check_keys();
    let took = run.sim.elapsed() - lost_at;
    // One retransmission timeout (250 ms) and a round trip, roughly.
    assert!(took < Duration::from_secs(2), "recovery took {took:?}");
    let capture = run.sim.drain_capture();
    let dropped = capture
        .iter()
        .filter(|r| r.source == addr(SERVER) && matches!(r.kind, CaptureKind::Dropped(_)))
        .count();
    assert!(dropped >= 1, "nothing from the server was dropped");
    // The client then sends application data that the server receives.
    run.sim
        .machine_mut::<Endpoint>(run.client)
        .send(b"after recovery")
        .expect("connected");
    run.sim.run_for(Duration::from_millis(100));
    let got: Vec<_> = run
        .sim
        .events::<Endpoint>(run.server)
        .into_iter()
        .filter_map(|e| match e {
            Event::ApplicationData(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![b"after recovery".to_vec()]);
}

/// SRTP profiles negotiated in the simulator match what each side offered.
#[test]
fn srtp_profile_is_the_servers_first_choice_among_the_offered() {
    let certs = Certs::new();
    let mut run = Run::new(9, &certs, 1200, LinkConfig::default());
    // Replace the server with one preferring AES_CM.
    let mut cfg = config(&certs.server, 1200);
    cfg.srtp_profiles = vec![
        SrtpProfile::AES128_CM_HMAC_SHA1_80,
        SrtpProfile::AEAD_AES_128_GCM,
    ];
    *run.sim.machine_mut::<Endpoint>(run.server) = Endpoint::server(cfg, StdRng::seed_from_u64(9));
    assert!(run.handshake(Duration::from_secs(5)));
    let profile = run
        .sim
        .events::<Endpoint>(run.client)
        .into_iter()
        .find_map(|e| match e {
            Event::Connected(c) => c.srtp_profile,
            _ => None,
        });
    assert_eq!(profile, Some(SrtpProfile::AES128_CM_HMAC_SHA1_80));
}
