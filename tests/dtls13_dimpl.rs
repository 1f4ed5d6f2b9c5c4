//! DTLS 1.3 against a third implementation: dimpl (str0m's sans-IO DTLS
//! 1.2/1.3 library, from crates.io, on its pure-Rust crypto), in memory on
//! a virtual clock, in both roles. Each call checks what both ends
//! negotiated: the version, the key share group (dimpl completes X25519,
//! P-256 and P-384, not the hybrid), the SRTP profile and the exporter's
//! keying material (RFC 5764 §4.2 through RFC 8446 §7.5: both ends must
//! derive the same bytes), the peer certificate against its fingerprint,
//! and application data both ways.
//!
//! Paths covered: rtclab's ClientHello with the hybrid and X25519 shares
//! (dimpl picks X25519, after its HelloRetryRequest cookie); a client
//! offering only the hybrid, so dimpl must ask for X25519 by
//! HelloRetryRequest; dimpl as client to our cookie-checking server; a
//! lossy, reordering path both ways (RFC 9147 ACKs across the two
//! implementations); and our 1.3-offering client falling back to 1.2
//! against dimpl told to speak 1.2 only.
//!
//! Debian 12's libwolfssl (5.5.4) is built without DTLS 1.3 (no
//! `wolfDTLSv1_3_*` symbols) and ships no example client or server, and
//! PyPI's `wolfssl` builds wolfSSL from a git clone at install time, so
//! dimpl is the third DTLS 1.3 stack this machine can install.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use dimpl::{Dtls, DtlsCertificate, Output};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rtclab::dtls::cert::{Certificate, Fingerprint, HashAlgorithm, parse_pem};
use rtclab::dtls::endpoint::{Config, Connected, Event, Version};
use rtclab::dtls::endpoint_auto::AutoEndpoint;
use rtclab::dtls::handshake::{NamedGroup, SrtpProfile};
use rtclab::machine::{Machine, Receive};

const OURS: &str = "192.0.2.1:5000";
const THEIRS: &str = "198.51.100.1:4433";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// dimpl's certificate and key: one of ours, generated here, handed over
/// as DER (certificate) and PKCS#8 (key).
fn their_certificate(seed: u64) -> (DtlsCertificate, Fingerprint) {
    let mut rng = StdRng::seed_from_u64(seed);
    let c = Certificate::generate(&mut rng, SystemTime::now()).expect("certificate");
    let key = parse_pem(&c.private_key_pem(), "PRIVATE KEY").expect("PKCS#8");
    let fp = c.fingerprint();
    (
        DtlsCertificate {
            certificate: c.der().to_vec(),
            private_key: key,
        },
        fp,
    )
}

fn their_config(mtu: usize) -> Arc<dimpl::Config> {
    Arc::new(
        dimpl::Config::builder()
            .mtu(mtu)
            .flight_start_rto(Duration::from_millis(250))
            .with_crypto_provider(dimpl::crypto::rust_crypto::default_provider())
            .build()
            .expect("dimpl config"),
    )
}

/// Our endpoint's configuration: DTLS up to 1.3, the peer's certificate
/// pinned by fingerprint.
fn our_config(seed: u64, peer: &Fingerprint, mtu: usize) -> Config {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Config::new(Certificate::generate(&mut rng, SystemTime::now()).expect("cert"));
    c.max_version = Version::Dtls13;
    c.expected_fingerprint = Some(peer.clone());
    c.mtu = mtu;
    c
}

/// What dimpl reported.
#[derive(Default)]
struct Theirs {
    connected: bool,
    peer_cert: Option<Vec<u8>>,
    keying: Option<(Vec<u8>, dimpl::SrtpProfile)>,
    data: Vec<Vec<u8>>,
    timeout: Option<Instant>,
}

/// The two endpoints and the wire between them.
struct Call {
    now: Instant,
    ours: AutoEndpoint,
    theirs: Dtls,
    got: Theirs,
    events: Vec<Event>,
    rng: StdRng,
    /// Loss and reordering (each datagram either way).
    loss: f64,
    reorder: bool,
    /// In flight: (deliver at, to us?, bytes).
    wire: Vec<(Instant, bool, Vec<u8>)>,
    /// Datagrams the wire dropped.
    lost: usize,
}

impl Call {
    fn new(ours: AutoEndpoint, theirs: Dtls, now: Instant) -> Self {
        Call {
            now,
            ours,
            theirs,
            got: Theirs::default(),
            events: Vec::new(),
            rng: StdRng::seed_from_u64(9),
            loss: 0.0,
            reorder: false,
            wire: Vec::new(),
            lost: 0,
        }
    }

    /// dimpl's outputs until its `Timeout`.
    fn drain_theirs(&mut self) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut buf = vec![0u8; 2048];
        loop {
            match self.theirs.poll_output(&mut buf) {
                Output::Packet(p) => packets.push(p.to_vec()),
                Output::BufferTooSmall { needed } => buf.resize(needed, 0),
                Output::Timeout(t) => {
                    self.got.timeout = Some(t);
                    break;
                }
                Output::Connected => self.got.connected = true,
                Output::PeerCert(c) => self.got.peer_cert = Some(c.to_vec()),
                Output::KeyingMaterial(k, p) => self.got.keying = Some((k.to_vec(), p)),
                Output::ApplicationData(d) => self.got.data.push(d.to_vec()),
                _ => {}
            }
        }
        packets
    }

    fn put_on_wire(&mut self, to_us: bool, d: Vec<u8>) {
        if self.rng.random_bool(self.loss) {
            self.lost += 1;
            return;
        }
        let delay = Duration::from_millis(if self.reorder {
            self.rng.random_range(5..25)
        } else {
            10
        });
        self.wire.push((self.now + delay, to_us, d));
    }

    /// Runs until `done` or `limit` of virtual time.
    fn run_until(&mut self, limit: Duration, done: impl Fn(&Call) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            while let Some(t) = self.ours.poll_transmit() {
                assert_eq!(t.destination, addr(THEIRS));
                self.put_on_wire(false, t.contents);
            }
            while let Some(e) = self.ours.poll_event() {
                self.events.push(e);
            }
            for d in self.drain_theirs() {
                self.put_on_wire(true, d);
            }
            if done(self) {
                return true;
            }
            let next = [
                self.wire.iter().map(|w| w.0).min(),
                self.ours.poll_timeout(),
                self.got.timeout,
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else { return false };
            if next > end {
                return false;
            }
            self.now = self.now.max(next);
            let now = self.now;
            // dimpl wants its clock moved before packets at a new instant.
            self.theirs.handle_timeout(now).expect("dimpl: timeout");
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= now);
            self.wire = rest;
            for (_, to_us, d) in due {
                if to_us {
                    self.ours.handle_receive(
                        now,
                        Receive {
                            source: addr(THEIRS),
                            destination: addr(OURS),
                            contents: &d,
                        },
                    );
                } else {
                    // dimpl drops what it cannot use; an error is fatal.
                    self.theirs.handle_packet(&d).expect("dimpl: packet");
                }
            }
            self.ours.handle_timeout(now);
        }
    }

    fn handshake(&mut self) {
        let ok = self.run_until(Duration::from_secs(30), |c| {
            c.ours.is_connected() && c.got.connected && c.got.keying.is_some()
        });
        let failed: Vec<_> = self
            .events
            .iter()
            .filter(|e| matches!(e, Event::Failed(_) | Event::PeerAlert(_)))
            .collect();
        assert!(
            ok,
            "no handshake: ours connected {}, dimpl connected {}; our events {failed:?}",
            self.ours.is_connected(),
            self.got.connected
        );
    }

    fn connected(&self) -> &Connected {
        self.events
            .iter()
            .find_map(|e| match e {
                Event::Connected(c) => Some(&**c),
                _ => None,
            })
            .expect("our Connected event")
    }

    /// Both ends agree; application data crosses both ways.
    fn check(
        &mut self,
        version: Version,
        group: Option<NamedGroup>,
        (their_fp, our_fp): (&Fingerprint, &Fingerprint),
    ) {
        let ours = self.connected().clone();
        assert_eq!(ours.version, version);
        assert_eq!(self.ours.version(), Some(version));
        let theirs = match version {
            Version::Dtls12 => dimpl::ProtocolVersion::DTLS1_2,
            Version::Dtls13 => dimpl::ProtocolVersion::DTLS1_3,
        };
        assert_eq!(self.theirs.protocol_version(), Some(theirs));
        assert_eq!(ours.key_share_group, group);
        assert_eq!(&ours.peer_fingerprint, their_fp);
        let (material, profile) = self.got.keying.clone().expect("dimpl's keying material");
        let expected_profile = match profile {
            dimpl::SrtpProfile::AES128_CM_SHA1_80 => SrtpProfile::AES128_CM_HMAC_SHA1_80,
            dimpl::SrtpProfile::AEAD_AES_128_GCM => SrtpProfile::AEAD_AES_128_GCM,
            dimpl::SrtpProfile::AEAD_AES_256_GCM => SrtpProfile::AEAD_AES_256_GCM,
            _ => panic!("unknown profile {profile:?}"),
        };
        assert_eq!(ours.srtp_profile, Some(expected_profile));
        assert_eq!(
            ours.srtp_keying_material.as_deref(),
            Some(&material[..]),
            "SRTP keying material differs"
        );
        // dimpl saw our certificate.
        let cert = self.got.peer_cert.clone().expect("dimpl saw a certificate");
        assert_eq!(&Fingerprint::of(HashAlgorithm::Sha256, &cert), our_fp);
        // Data both ways.
        self.ours.send(b"from rtclab").expect("send");
        self.theirs
            .send_application_data(b"from dimpl")
            .expect("dimpl send");
        let got_both = self.run_until(Duration::from_secs(10), |c| {
            c.got.data.iter().any(|d| d == b"from rtclab")
                && c.events
                    .iter()
                    .any(|e| matches!(e, Event::ApplicationData(d) if d == b"from dimpl"))
        });
        assert!(got_both, "application data did not cross");
    }
}

/// rtclab as client (AutoEndpoint, 1.3 and 1.2 offered), dimpl as 1.3
/// server.
fn rtclab_client(seed: u64, groups: &[NamedGroup], mtu: usize) -> (Call, Fingerprint, Fingerprint) {
    let now = Instant::now();
    let (cert, their_fp) = their_certificate(seed);
    let mut config = our_config(seed + 1, &their_fp, mtu);
    config.dtls13_key_shares = groups.to_vec();
    let our_fp = config.certificate.fingerprint();
    let ours = AutoEndpoint::client(config, addr(THEIRS), StdRng::seed_from_u64(seed), now);
    let theirs = Dtls::new_13(their_config(mtu), cert, now);
    (Call::new(ours, theirs, now), their_fp, our_fp)
}

/// dimpl as client (`new_13` or `new_auto`), rtclab as server.
fn rtclab_server(seed: u64, auto: bool, mtu: usize) -> (Call, Fingerprint, Fingerprint) {
    let now = Instant::now();
    let (cert, their_fp) = their_certificate(seed);
    let config = our_config(seed + 1, &their_fp, mtu);
    let our_fp = config.certificate.fingerprint();
    let ours = AutoEndpoint::server(config, StdRng::seed_from_u64(seed));
    let mut theirs = if auto {
        Dtls::new_auto(their_config(mtu), cert, now)
    } else {
        Dtls::new_13(their_config(mtu), cert, now)
    };
    theirs.set_active(true);
    (Call::new(ours, theirs, now), their_fp, our_fp)
}

#[test]
fn rtclab_client_dimpl_server_dtls13() {
    let (mut call, their_fp, our_fp) =
        rtclab_client(1, &[NamedGroup::X25519_MLKEM768, NamedGroup::X25519], 1200);
    call.handshake();
    call.check(
        Version::Dtls13,
        Some(NamedGroup::X25519),
        (&their_fp, &our_fp),
    );
}

/// Only the hybrid share offered: dimpl, which cannot complete it, asks
/// for X25519 by HelloRetryRequest (RFC 8446 §4.1.4) and we retry.
#[test]
fn rtclab_client_retries_with_the_group_dimpl_asks_for() {
    let (mut call, their_fp, our_fp) = rtclab_client(2, &[NamedGroup::X25519_MLKEM768], 1200);
    call.handshake();
    call.check(
        Version::Dtls13,
        Some(NamedGroup::X25519),
        (&their_fp, &our_fp),
    );
}

#[test]
fn dimpl_client_rtclab_server_dtls13() {
    let (mut call, their_fp, our_fp) = rtclab_server(3, false, 1200);
    call.handshake();
    let group = call.connected().key_share_group;
    assert!(
        matches!(
            group,
            Some(NamedGroup::X25519) | Some(NamedGroup::SECP256R1)
        ),
        "{group:?}"
    );
    call.check(Version::Dtls13, group, (&their_fp, &our_fp));
}

/// dimpl's auto-sensing client (one ClientHello for 1.2 and 1.3) gets 1.3
/// from us.
#[test]
fn dimpl_auto_client_rtclab_server_picks_dtls13() {
    let (mut call, their_fp, our_fp) = rtclab_server(4, true, 1200);
    call.handshake();
    let group = call.connected().key_share_group;
    call.check(Version::Dtls13, group, (&their_fp, &our_fp));
}

/// 20% loss and reordering both ways, a 600-byte MTU: the two
/// implementations' ACKs and retransmissions (RFC 9147 §5.8, §7) must
/// understand each other. Both roles, a few seeds. The wire's losses
/// follow our seed but dimpl draws its own randomness, so one call may by
/// chance lose nothing (about 1 in 10 at ten datagrams): the test asks
/// that the calls together lost some.
#[test]
fn lossy_reordering_path_both_roles() {
    let mut lost = 0;
    for seed in 10..14 {
        for we_are_client in [true, false] {
            let (mut call, their_fp, our_fp) = if we_are_client {
                rtclab_client(
                    seed,
                    &[NamedGroup::X25519_MLKEM768, NamedGroup::X25519],
                    600,
                )
            } else {
                rtclab_server(seed, false, 600)
            };
            call.rng = StdRng::seed_from_u64(seed);
            call.loss = 0.2;
            call.reorder = true;
            call.handshake();
            lost += call.lost;
            let group = call.connected().key_share_group;
            call.loss = 0.0;
            call.check(Version::Dtls13, group, (&their_fp, &our_fp));
            eprintln!(
                "seed {seed}, rtclab client {we_are_client}: {} datagrams lost",
                call.lost
            );
        }
    }
    assert!(lost > 0, "the wire lost nothing in eight calls");
}

/// Our client offers 1.3 and 1.2; dimpl told to speak 1.2 only answers
/// 1.2, and we continue in 1.2.
#[test]
fn rtclab_client_falls_back_to_12_with_dimpl() {
    let now = Instant::now();
    let (cert, their_fp) = their_certificate(5);
    let config = our_config(6, &their_fp, 1200);
    let our_fp = config.certificate.fingerprint();
    let ours = AutoEndpoint::client(config, addr(THEIRS), StdRng::seed_from_u64(5), now);
    let theirs = Dtls::new_12(their_config(1200), cert, now);
    let mut call = Call::new(ours, theirs, now);
    call.handshake();
    call.check(Version::Dtls12, None, (&their_fp, &our_fp));
}
