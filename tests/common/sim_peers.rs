//! What the PeerConnection simulator tests share: the two peers' addresses,
//! a certificate from the test's RNG, the "signaling" that trickles
//! candidates between them, and generated VP8 frames. Included with
//! `#[path]` so each test keeps its own `Pair` (the tests differ in what
//! they set up and when they stop).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::SystemTime;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtclab::dtls::cert::Certificate;
use rtclab::peer::{self, PeerConnection};
use rtclab::sim::{HostId, Sim};

/// A's address (the offerer).
pub const A: &str = "192.0.2.1:5000";
/// B's address (the answerer).
pub const B: &str = "198.51.100.2:6000";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

pub fn certificate(rng: &mut StdRng) -> Certificate {
    Certificate::generate(rng, SystemTime::now()).expect("certificate")
}

/// Trickles candidates through "signaling" as text; keeps other events.
pub fn pump(sim: &mut Sim, hosts: [HostId; 2], log: &mut [Vec<peer::Event>; 2]) {
    for side in 0..2 {
        let now = sim.now();
        for e in sim.events::<PeerConnection>(hosts[side]) {
            let other = sim.machine_mut::<PeerConnection>(hosts[1 - side]);
            match e {
                peer::Event::LocalCandidate(c) => other
                    .add_ice_candidate(now, &format!("a={c}"))
                    .expect("candidate"),
                peer::Event::GatheringComplete => other.add_end_of_candidates(now),
                e => log[side].push(e),
            }
        }
    }
}

/// The frames `log` received on the m-line `mid`, in order.
pub fn frames(log: &[peer::Event], mid: &str) -> Vec<Vec<u8>> {
    log.iter()
        .filter_map(|e| match e {
            peer::Event::Frame { mid: m, frame } if m == mid => Some(frame.data.clone()),
            _ => None,
        })
        .collect()
}

/// VP8 frames: a keyframe first (P bit 0), then interframes.
pub fn vp8_frames(n: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let len = rng.random_range(50..5000);
            let mut f: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            f[0] = if i == 0 { f[0] & !1 } else { f[0] | 1 };
            f
        })
        .collect()
}
