//! Measurements behind `rtclab speed dtls` (DESIGN §5): full handshakes per
//! second with both endpoints in one process (DTLS 1.2, and DTLS 1.3 with
//! the X25519 and the X25519MLKEM768 shares, all with their cookie round
//! trip and mutual ECDSA P-256 authentication), for both roles together
//! and for each role alone (the CPU time of its own calls: what one core
//! of a server, or of a client, does per second), and record seal + open
//! of 1,200-byte records beside raw `ring` AES-128-GCM on the same buffers.
//!
//! These functions only measure and return numbers; printing the
//! `NAME VALUE UNIT` lines is the CLI's job.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::{SeedableRng, rngs::StdRng};
use ring::aead;

use crate::dtls::cert::Certificate;
use crate::dtls::endpoint::{Config, Version};
use crate::dtls::endpoint_auto::AutoEndpoint as Endpoint;
use crate::dtls::handshake::NamedGroup;
use crate::dtls::record::{CipherSuite, ContentType, RecordProtection, records};
use crate::machine::{Machine, Receive};

/// The figures, named as `rtclab speed` prints them.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    /// `dtls.handshakes_per_s`: complete client+server handshakes per second
    /// of one core (both roles' CPU).
    pub handshakes_per_s: f64,
    /// `dtls13.handshakes_per_s`: the same in DTLS 1.3 with the
    /// X25519MLKEM768 share (what the browsers offer).
    pub handshakes13_hybrid_per_s: f64,
    /// `dtls13.x25519.handshakes_per_s`: DTLS 1.3 with X25519 alone.
    pub handshakes13_x25519_per_s: f64,
    /// `dtls.server.handshakes_per_s`, `dtls.client.…`: DTLS 1.2, each
    /// role's own CPU time.
    pub dtls12_roles: Roles,
    /// `dtls13.server.handshakes_per_s`, `dtls13.client.…`: DTLS 1.3 with
    /// X25519MLKEM768.
    pub dtls13_hybrid_roles: Roles,
    /// `dtls13.x25519.server.handshakes_per_s`, `….client.…`.
    pub dtls13_x25519_roles: Roles,
    /// `dtls.record_1200_ns`: seal + open of one 1,200-byte record.
    pub record_1200_ns: f64,
    /// `ring.aes_128_gcm.seal_open_1200_ns`: the same with raw `ring`.
    pub ring_seal_open_1200_ns: f64,
}

/// Handshakes per second of one core, counting one role's CPU time only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Roles {
    /// The server's.
    pub server: f64,
    /// The client's.
    pub client: f64,
}

/// CPU time spent in each role's calls.
#[derive(Debug, Default)]
struct Spent {
    client: Duration,
    server: Duration,
}

/// Runs `f`, adding the thread CPU time it took to `to` when `ON`. Reading
/// the thread's CPU clock is a system call (not in the vDSO), about 60 per
/// handshake, so the both-roles rate is measured with `ON` false.
fn timed<const ON: bool, T>(to: &mut Duration, f: impl FnOnce() -> T) -> T {
    if !ON {
        return f();
    }
    let start = cpu_time::ThreadTime::now();
    let r = f();
    *to += start.elapsed();
    r
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One full handshake in memory (no loss); returns whether both connected,
/// adding each role's CPU time to `spent`.
fn one_handshake<const TIMED: bool>(
    client: Config,
    server: Config,
    seed: u64,
    spent: &mut Spent,
) -> bool {
    let now = Instant::now();
    let (ca, sa) = (addr(1), addr(2));
    let mut c = timed::<TIMED, _>(&mut spent.client, || {
        Endpoint::client(client, sa, StdRng::seed_from_u64(seed), now)
    });
    let mut s = timed::<TIMED, _>(&mut spent.server, || {
        Endpoint::server(server, StdRng::seed_from_u64(seed ^ 1))
    });
    for _ in 0..8 {
        while let Some(t) = timed::<TIMED, _>(&mut spent.client, || c.poll_transmit()) {
            timed::<TIMED, _>(&mut spent.server, || {
                s.handle_receive(
                    now,
                    Receive {
                        source: ca,
                        destination: sa,
                        contents: &t.contents,
                    },
                )
            });
        }
        while let Some(t) = timed::<TIMED, _>(&mut spent.server, || s.poll_transmit()) {
            timed::<TIMED, _>(&mut spent.client, || {
                c.handle_receive(
                    now,
                    Receive {
                        source: sa,
                        destination: ca,
                        contents: &t.contents,
                    },
                )
            });
        }
        if c.is_connected() && s.is_connected() {
            return true;
        }
    }
    false
}

/// Runs each measurement for about `budget`.
pub fn measure(budget: Duration) -> Figures {
    let mut rng = StdRng::seed_from_u64(1);
    let now = SystemTime::now();
    let certs: Vec<(Vec<u8>, Vec<u8>)> = (0..2)
        .map(|_| {
            let c = Certificate::generate(&mut rng, now).expect("key generation");
            let key = crate::dtls::cert::parse_pem(&c.private_key_pem(), "PRIVATE KEY")
                .expect("our own PEM");
            (c.der().to_vec(), key)
        })
        .collect();
    let config = |i: usize| {
        Config::new(
            Certificate::from_der(certs[i].0.clone(), certs[i].1.clone()).expect("our own key"),
        )
    };
    let rate = |version: Version, group: NamedGroup| {
        let config = |i: usize| {
            let mut c = config(i);
            c.max_version = version;
            c.dtls13_key_shares = vec![group];
            c
        };
        // Both roles in one thread, untimed per call.
        let start = cpu_time::ThreadTime::now();
        let mut n = 0u64;
        let mut spent = Spent::default();
        while start.elapsed() < budget {
            assert!(
                one_handshake::<false>(config(0), config(1), n, &mut spent),
                "handshake failed"
            );
            n += 1;
        }
        let both = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
        // Each role's CPU time, read around each of its calls.
        let start = cpu_time::ThreadTime::now();
        let mut n = 0u64;
        while start.elapsed() < budget {
            assert!(
                one_handshake::<true>(config(0), config(1), n, &mut spent),
                "handshake failed"
            );
            n += 1;
        }
        let per_s = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        let roles = Roles {
            server: per_s(spent.server),
            client: per_s(spent.client),
        };
        (both, roles)
    };
    let (handshakes_per_s, dtls12_roles) = rate(Version::Dtls12, NamedGroup::X25519);
    let (handshakes13_hybrid_per_s, dtls13_hybrid_roles) =
        rate(Version::Dtls13, NamedGroup::X25519_MLKEM768);
    let (handshakes13_x25519_per_s, dtls13_x25519_roles) =
        rate(Version::Dtls13, NamedGroup::X25519);

    let suite = CipherSuite::EcdheEcdsaAes128GcmSha256;
    let p = RecordProtection::new(suite, &[7; 16], &[1, 2, 3, 4]).expect("key");
    let payload = vec![0x5au8; 1200];
    let mut buf = Vec::with_capacity(1300);
    let start = cpu_time::ThreadTime::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            buf.clear();
            p.seal(ContentType::ApplicationData, 1, n, &payload, &mut buf)
                .expect("seal");
            let Some(Ok(r)) = records(&buf).next() else {
                panic!("our record does not frame");
            };
            let header = r.header;
            let plain = p
                .open_in_place(&header, &mut buf[13..])
                .expect("open")
                .len();
            assert_eq!(plain, 1200);
            n += 1;
        }
    }
    let record_1200_ns = start.elapsed().as_nanos() as f64 / n as f64;

    let key =
        aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &[7; 16]).expect("key"));
    let mut data = vec![0x5au8; 1200 + 16];
    let start = cpu_time::ThreadTime::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            let mut nonce = [0u8; 12];
            nonce[4..].copy_from_slice(&n.to_be_bytes());
            data.truncate(1200);
            let tag = key
                .seal_in_place_separate_tag(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from([0u8; 13]),
                    &mut data,
                )
                .expect("seal");
            data.extend_from_slice(tag.as_ref());
            let plain = key
                .open_in_place(
                    aead::Nonce::assume_unique_for_key(nonce),
                    aead::Aad::from([0u8; 13]),
                    &mut data,
                )
                .expect("open")
                .len();
            assert_eq!(plain, 1200);
            n += 1;
        }
    }
    let ring_seal_open_1200_ns = start.elapsed().as_nanos() as f64 / n as f64;
    Figures {
        handshakes_per_s,
        handshakes13_hybrid_per_s,
        handshakes13_x25519_per_s,
        dtls12_roles,
        dtls13_hybrid_roles,
        dtls13_x25519_roles,
        record_1200_ns,
        ring_seal_open_1200_ns,
    }
}

#[cfg(test)]
mod tests {
    /// `cargo test --release --lib speed::dtls -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a test; run on demand"]
    fn print_figures() {
        let f = super::measure(std::time::Duration::from_secs(2));
        println!("dtls.handshakes_per_s {:.0} 1/s", f.handshakes_per_s);
        println!(
            "dtls13.handshakes_per_s {:.0} 1/s",
            f.handshakes13_hybrid_per_s
        );
        println!(
            "dtls13.x25519.handshakes_per_s {:.0} 1/s",
            f.handshakes13_x25519_per_s
        );
        for (name, r) in [
            ("dtls", f.dtls12_roles),
            ("dtls13", f.dtls13_hybrid_roles),
            ("dtls13.x25519", f.dtls13_x25519_roles),
        ] {
            println!("{name}.server.handshakes_per_s {:.0} 1/s", r.server);
            println!("{name}.client.handshakes_per_s {:.0} 1/s", r.client);
        }
        println!("dtls.record_1200_ns {:.0} ns", f.record_1200_ns);
        println!(
            "ring.aes_128_gcm.seal_open_1200_ns {:.0} ns",
            f.ring_seal_open_1200_ns
        );
        println!("ratio {:.2}", f.ring_seal_open_1200_ns / f.record_1200_ns);
    }

    #[test]
    fn measure_runs() {
        let f = super::measure(std::time::Duration::from_millis(20));
        assert!(f.handshakes_per_s > 0.0 && f.record_1200_ns > 0.0);
        assert!(f.handshakes13_hybrid_per_s > 0.0 && f.handshakes13_x25519_per_s > 0.0);
        for r in [f.dtls12_roles, f.dtls13_hybrid_roles, f.dtls13_x25519_roles] {
            // Each role alone takes less CPU than both together.
            assert!(r.server > 0.0 && r.client > 0.0, "{r:?}");
        }
        assert!(f.dtls12_roles.server > f.handshakes_per_s);
    }
}
