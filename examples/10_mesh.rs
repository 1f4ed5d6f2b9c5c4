//! Chapter 10: why a mesh does not scale, measured.
//!
//! For 2 to 5 participants, every participant opens a `PeerConnection` to
//! every other one (a full mesh), on the simulated network, and sends the
//! same video (a 6,000-byte frame 30 times a second, about 1.4 Mbit/s) to
//! each. The example measures, over two seconds once everyone is
//! connected, what each participant uploads and downloads, and how many
//! copies of its video it sends.
//!
//! Run it with `cargo run --example 10_mesh`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::collections::HashMap;
use std::error::Error;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType, TrackId};
use rtclab::sdp::MediaKind;
use rtclab::sim::{HostId, Sim};

/// One encoded frame: 6,000 bytes, 30 per second.
const FRAME: usize = 6_000;
const FRAME_INTERVAL: Duration = Duration::from_millis(33);

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// One end of one peer connection of the mesh.
struct End {
    host: HostId,
    participant: usize,
    partner: HostId,
    track: TrackId,
}

/// The whole table, printed to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(
        out,
        "one video stream: {FRAME} bytes every {} ms",
        FRAME_INTERVAL.as_millis()
    )?;
    writeln!(
        out,
        "participants  connections  per participant: copies sent   upload        download"
    )?;
    let mut one_copy = 0.0;
    for n in 2..=5 {
        let (conns, up, down) = mesh(n)?;
        if n == 2 {
            one_copy = up;
        }
        writeln!(
            out,
            "{n:>12}  {conns:>11}  {:>30}  {:>6.2} Mbit/s  {:>6.2} Mbit/s",
            n - 1,
            up,
            down
        )?;
    }
    writeln!(
        out,
        "through an SFU, each participant would upload one copy ({one_copy:.2} Mbit/s) \
         whatever the size of the call; the SFU uploads n − 1 copies of each"
    )?;
    Ok(())
}

/// Runs a mesh of `n` participants; returns the number of peer
/// connections and the mean upload and download per participant, Mbit/s.
pub fn mesh(n: usize) -> Result<(usize, f64, f64), Box<dyn Error>> {
    let mut sim = Sim::new(10 + n as u64);
    if n == 2 {
        pcap::start(&mut sim); // `--pcap FILE`: participant 0's call in the mesh of two
    }
    let mut rng = StdRng::seed_from_u64(n as u64);
    let start = sim.now();
    let mut ends: Vec<End> = Vec::new();
    let mut pairs = 0;
    // ANCHOR: mesh
    // Every pair (i, j) gets its own peer connection: i offers, j answers.
    for i in 0..n {
        for j in i + 1..n {
            pairs += 1;
            let addr = |p: usize, q: usize| {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, p as u8, q as u8, 1)), 5000)
            };
            let (ai, aj) = (addr(i, j), addr(j, i));
            let mut pi = PeerConnection::new(
                peer::Config::new(
                    Certificate::generate(&mut rng, SystemTime::now())?,
                    vec![ai],
                ),
                StdRng::seed_from_u64(rng_seed(i, j)),
            );
            let mut pj = PeerConnection::new(
                peer::Config::new(
                    Certificate::generate(&mut rng, SystemTime::now())?,
                    vec![aj],
                ),
                StdRng::seed_from_u64(rng_seed(j, i)),
            );
            let ti = pi.add_track(MediaKind::Video)?;
            let tj = pj.add_track(MediaKind::Video)?;
            let offer = pi.create_offer(start)?;
            pi.set_local_description(start, SdpType::Offer, &offer)?;
            pj.set_remote_description(start, SdpType::Offer, &offer)?;
            let answer = pj.create_answer()?;
            pj.set_local_description(start, SdpType::Answer, &answer)?;
            pi.set_remote_description(start, SdpType::Answer, &answer)?;
            let hi = sim.add_host(pi, &[ai]);
            let hj = sim.add_host(pj, &[aj]);
            ends.push(End {
                host: hi,
                participant: i,
                partner: hj,
                track: ti,
            });
            ends.push(End {
                host: hj,
                participant: j,
                partner: hi,
                track: tj,
            });
        }
    }
    // ANCHOR_END: mesh
    let partner: HashMap<HostId, HostId> = ends.iter().map(|e| (e.host, e.partner)).collect();
    let pump = |sim: &mut Sim| {
        let now = sim.now();
        for e in &ends {
            for ev in sim.events::<PeerConnection>(e.host) {
                let to = partner[&e.host];
                match ev {
                    peer::Event::LocalCandidate(c) => {
                        let _ = sim
                            .machine_mut::<PeerConnection>(to)
                            .add_ice_candidate(now, &c.to_string());
                    }
                    peer::Event::GatheringComplete => {
                        sim.machine_mut::<PeerConnection>(to)
                            .add_end_of_candidates(now);
                    }
                    _ => {}
                }
            }
        }
    };
    // Connect everyone.
    let connected = sim.run_for_with(Duration::from_secs(5), |sim| {
        pump(sim);
        ends.iter().all(|e| {
            sim.machine::<PeerConnection>(e.host).connection_state()
                == PeerConnectionState::Connected
        })
    });
    if !connected {
        return Err(format!("the mesh of {n} did not connect").into());
    }
    // Two seconds of video on every connection, measured.
    let before: Vec<_> = ends.iter().map(|e| sim.host_stats(e.host)).collect();
    let t0 = sim.now();
    let frame = vec![0x10u8; FRAME]; // VP8, keyframe bit clear: all keyframes
    let mut ts = 0u32;
    while sim.now() - t0 < Duration::from_secs(2) {
        let now = sim.now();
        // ANCHOR: send
        // The same frame goes out once per peer connection: n − 1 times.
        for e in &ends {
            let _ = sim
                .machine_mut::<PeerConnection>(e.host)
                .send_frame(now, e.track, ts, &frame);
        }
        // ANCHOR_END: send
        ts = ts.wrapping_add(3000);
        sim.run_for_with(FRAME_INTERVAL, |sim| {
            pump(sim);
            false
        });
    }
    let secs = (sim.now() - t0).as_secs_f64();
    let mut up = vec![0u64; n];
    let mut down = vec![0u64; n];
    for (e, b) in ends.iter().zip(&before) {
        let s = sim.host_stats(e.host);
        up[e.participant] += s.bytes_sent - b.bytes_sent;
        down[e.participant] += s.bytes_delivered - b.bytes_delivered;
    }
    let mbit = |v: &[u64]| v.iter().sum::<u64>() as f64 * 8.0 / secs / 1e6 / n as f64;
    if n == 2 {
        let keys = pcap::key_log(&sim, ends[0].host);
        pcap::save(&mut sim, ends[0].host, &keys)?;
    }
    Ok((pairs, mbit(&up), mbit(&down)))
}

fn rng_seed(i: usize, j: usize) -> u64 {
    (i * 100 + j) as u64
}
