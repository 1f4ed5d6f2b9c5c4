//! Version negotiation: each pairing of 1.2 and 1.3 endpoints completes in
//! the highest common version, and a stripped 1.3 offer is caught by the
//! downgrade sentinel.

use super::*;
use crate::dtls::cert::Certificate;
use crate::dtls::endpoint::Connected;
use rand::{SeedableRng, rngs::StdRng};
use std::time::SystemTime;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn config(seed: u64, max: Version) -> Config {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut c = Config::new(Certificate::generate(&mut rng, SystemTime::now()).unwrap());
    c.max_version = max;
    c
}

/// Runs two machines against each other (no loss) until quiet; returns
/// their events.
fn run<C: Machine<Event = Event>, S: Machine<Event = Event>>(
    client: &mut C,
    server: &mut S,
) -> (Vec<Event>, Vec<Event>) {
    let mut now = Instant::now();
    let (mut ce, mut se) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            moved = true;
            server.handle_receive(
                now,
                Receive {
                    source: addr(1),
                    destination: addr(2),
                    contents: &t.contents,
                },
            );
        }
        while let Some(t) = server.poll_transmit() {
            moved = true;
            client.handle_receive(
                now,
                Receive {
                    source: addr(2),
                    destination: addr(1),
                    contents: &t.contents,
                },
            );
        }
        ce.extend(std::iter::from_fn(|| client.poll_event()));
        se.extend(std::iter::from_fn(|| server.poll_event()));
        if !moved {
            let next = [client.poll_timeout(), server.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) => now = now.max(t),
                None => break,
            }
            client.handle_timeout(now);
            server.handle_timeout(now);
        }
    }
    (ce, se)
}

fn connected(events: &[Event]) -> Option<&Connected> {
    events.iter().find_map(|e| match e {
        Event::Connected(c) => Some(&**c),
        _ => None,
    })
}

fn versions(client: Version, server: Version) -> (Option<Version>, Option<Version>) {
    let now = Instant::now();
    let mut c = AutoEndpoint::client(config(1, client), addr(2), StdRng::seed_from_u64(1), now);
    let mut s = AutoEndpoint::server(config(2, server), StdRng::seed_from_u64(2));
    let (ce, se) = run(&mut c, &mut s);
    let (cc, sc) = (connected(&ce), connected(&se));
    if let (Some(a), Some(b)) = (cc, sc) {
        assert_eq!(a.srtp_keying_material, b.srtp_keying_material);
    }
    (cc.map(|c| c.version), sc.map(|c| c.version))
}

#[test]
fn both_13_speak_13() {
    let v = Some(Version::Dtls13);
    assert_eq!(versions(Version::Dtls13, Version::Dtls13), (v, v));
}

#[test]
fn a_12_server_makes_the_13_client_fall_back() {
    let v = Some(Version::Dtls12);
    // The 1.2 server answers with a HelloVerifyRequest first.
    assert_eq!(versions(Version::Dtls13, Version::Dtls12), (v, v));
}

#[test]
fn a_12_server_without_cookie_makes_the_13_client_fall_back() {
    let now = Instant::now();
    let mut c = AutoEndpoint::client(
        config(1, Version::Dtls13),
        addr(2),
        StdRng::seed_from_u64(1),
        now,
    );
    let mut sc = config(2, Version::Dtls12);
    sc.use_cookie = false;
    let mut s = AutoEndpoint::server(sc, StdRng::seed_from_u64(2));
    let (ce, se) = run(&mut c, &mut s);
    assert_eq!(connected(&ce).map(|c| c.version), Some(Version::Dtls12));
    assert_eq!(connected(&se).map(|c| c.version), Some(Version::Dtls12));
    assert_eq!(c.version(), Some(Version::Dtls12));
    // Application data after the fallback.
    c.send(b"still 1.2").unwrap();
    let (_, se) = run(&mut c, &mut s);
    assert!(
        se.iter()
            .any(|e| matches!(e, Event::ApplicationData(d) if d == b"still 1.2"))
    );
}

#[test]
fn a_12_client_gets_12_from_a_13_server() {
    let v = Some(Version::Dtls12);
    assert_eq!(versions(Version::Dtls12, Version::Dtls13), (v, v));
}

#[test]
fn both_12_by_default() {
    let v = Some(Version::Dtls12);
    assert_eq!(versions(Version::Dtls12, Version::Dtls12), (v, v));
}

#[test]
fn the_downgrade_sentinel_is_refused() {
    // A 1.3-capable server made to answer 1.2 (as if an attacker had cut
    // 1.3 out of the hello): its random carries DOWNGRD\x01, and the
    // client that offered 1.3 refuses it (RFC 8446 §4.1.3).
    let now = Instant::now();
    let mut c = AutoEndpoint::client(
        config(1, Version::Dtls13),
        addr(2),
        StdRng::seed_from_u64(1),
        now,
    );
    let mut s = Endpoint12::server(config(2, Version::Dtls13), StdRng::seed_from_u64(2));
    let (ce, _) = run(&mut c, &mut s);
    assert!(connected(&ce).is_none());
    assert!(ce.iter().any(|e| matches!(
        e,
        Event::Failed(Error::InvalidValue { what, .. }) if what.contains("downgrade")
    )));
}

#[test]
fn the_fuzz_harness_survives_its_seeds_and_noise() {
    // The captured browser hellos reach the 1.3 server; random bytes and
    // truncations of them go nowhere, without panics.
    let hello = crate::fuzzing::dtls_endpoint_input(false, &[vec![22, 254, 253, 0, 0]]);
    crate::fuzzing::dtls13_endpoint(&hello);
    crate::fuzzing::dtls13_endpoint(&[3, 0, 4, 22, 254, 253, 0]);
    crate::fuzzing::dtls13_endpoint(&[]);
}
