//! `rtclab speed setup`: how long two [`PeerConnection`]s in one process
//! take over loopback UDP (the tokio [`Driver`]) from `create_offer` to the
//! first data-channel message delivered, over 100 runs: p50 and p99
//! (`setup.p50_ms`, `setup.p99_ms`). Certificates are made before the clock
//! starts (a browser makes its certificate ahead too). ICE's pacing Ta is
//! 5 ms here (the offerer and answerer each have one candidate pair).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{PeerConfig, PeerConnection, PeerEvent, SdpType};
use crate::datachannel::{ChannelInit, Event as DcEvent};
use crate::dtls::cert::Certificate;
use crate::runtime::Driver;

/// The longest one run may take before it counts as failed.
const RUN_LIMIT: Duration = Duration::from_secs(5);
/// Runs per figure.
const RUNS: u64 = 100;

fn peer(seed: u64) -> io::Result<(PeerConnection, tokio::net::UdpSocket, SocketAddr)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let cert = Certificate::generate(&mut rng, SystemTime::now())
        .map_err(|e| io::Error::other(e.to_string()))?;
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    socket.set_nonblocking(true)?;
    let addr = socket.local_addr()?;
    let socket = tokio::net::UdpSocket::from_std(socket)?;
    let mut config = PeerConfig::new(cert, vec![addr]);
    let mut transport = super::Config::new(
        super::IceRole::Controlling,
        Certificate::generate(&mut rng, SystemTime::now())
            .map_err(|e| io::Error::other(e.to_string()))?,
    );
    transport.ice.ta = Duration::from_millis(5);
    config.transport = Some(transport);
    Ok((
        PeerConnection::new(config, StdRng::seed_from_u64(seed)),
        socket,
        addr,
    ))
}

/// One set-up: offer, answer, trickle, ICE, DTLS, SCTP, DCEP, one message.
async fn setup_once(seed: u64) -> io::Result<Duration> {
    let (mut a, sa, _) = peer(seed * 2 + 1)?;
    let (mut b, sb, _) = peer(seed * 2 + 2)?;
    let start = Instant::now();
    let err = |e: super::PeerError| io::Error::other(e.to_string());
    let ch = a
        .create_data_channel(ChannelInit::new("speed"))
        .map_err(err)?;
    let offer = a.create_offer(start).map_err(err)?;
    a.set_local_description(start, SdpType::Offer, &offer)
        .map_err(err)?;
    b.set_remote_description(start, SdpType::Offer, &offer)
        .map_err(err)?;
    let answer = b.create_answer().map_err(err)?;
    b.set_local_description(start, SdpType::Answer, &answer)
        .map_err(err)?;
    a.set_remote_description(start, SdpType::Answer, &answer)
        .map_err(err)?;
    let mut da = Driver::from_sockets(a, vec![sa])?;
    let mut db = Driver::from_sockets(b, vec![sb])?;
    let run = async {
        loop {
            let (side, e) = tokio::select! {
                e = da.next_event() => (0, e?),
                e = db.next_event() => (1, e?),
            };
            let now = Instant::now();
            let (this, other) = if side == 0 {
                (da.machine_mut(), db.machine_mut())
            } else {
                (db.machine_mut(), da.machine_mut())
            };
            match e {
                PeerEvent::LocalCandidate(c) => {
                    other.add_ice_candidate(now, &c.to_string()).map_err(err)?
                }
                PeerEvent::GatheringComplete => other.add_end_of_candidates(now),
                PeerEvent::DataChannel(DcEvent::Open(id)) if side == 0 && id == ch => {
                    this.send_text(now, ch, "first").map_err(err)?
                }
                PeerEvent::DataChannel(DcEvent::Message { .. }) if side == 1 => {
                    return Ok::<Duration, io::Error>(start.elapsed());
                }
                PeerEvent::Error(e) => return Err(err(e)),
                _ => {}
            }
        }
    };
    tokio::time::timeout(RUN_LIMIT, run)
        .await
        .map_err(|_| io::Error::other("set-up timed out"))?
}

/// `runs` set-ups on loopback in their own thread and runtime (`rtclab
/// speed` may itself run inside one); the durations of those that worked
/// and the count of those that failed.
pub fn setup_on_loopback(runs: u64) -> (Vec<Duration>, u64) {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return (Vec::new(), runs);
                };
                let mut ok = Vec::new();
                let mut failed = 0;
                for seed in 0..runs {
                    match rt.block_on(setup_once(seed)) {
                        Ok(d) => ok.push(d),
                        Err(e) => {
                            failed += 1;
                            eprintln!("note: setup run {seed} failed: {e}");
                        }
                    }
                }
                (ok, failed)
            })
            .join()
            .unwrap_or_else(|_| (Vec::new(), runs))
    })
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// The figures of `rtclab speed setup`.
pub fn speed() -> Vec<(String, f64, &'static str)> {
    let (mut runs, failed) = setup_on_loopback(RUNS);
    runs.sort();
    vec![
        ("setup.p50_ms".into(), percentile_ms(&runs, 0.50), "ms"),
        ("setup.p99_ms".into(), percentile_ms(&runs, 0.99), "ms"),
        ("setup.failed_runs".into(), failed as f64, "runs"),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn sets_up_over_real_loopback_udp() {
        let (ok, failed) = super::setup_on_loopback(2);
        assert_eq!(failed, 0);
        assert!(ok.iter().all(|d| *d < std::time::Duration::from_secs(5)));
    }
}
