//! `rtclab speed ice`: wall time for two agents on loopback UDP to reach a
//! nominated pair with host candidates, counted from the moment both have
//! each other's credentials and candidates until both have selected
//! (nominated) the pair, beside one UDP round trip on loopback.
//!
//! Each agent runs as an application runs it: on its own UDP socket, driven
//! by the tokio [`Driver`] (one task per agent, a current-thread runtime on a
//! thread of its own). Every run is counted: a run that fails to connect is
//! reported in `ice.failed_runs`, not silently left out of the median.
//!
//! Where the time goes: one round trip for the first check and its answer,
//! one for the nominating check (USE-CANDIDATE), plus whatever the agent
//! waits in between (RFC 8445 §14.2 paces checks by Ta: 50 ms by default;
//! `ice.nominated_ta5_ms` shows the same with Ta = 5 ms).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::oneshot;

use crate::ice::{self, Agent};
use crate::machine::Machine;
use crate::runtime::Driver;

/// The longest one run may take before it counts as failed.
const RUN_LIMIT: Duration = Duration::from_secs(3);

/// Connects two agents over loopback once; the wall time from "both have
/// each other's candidates" to "both have selected a pair".
pub fn connect_on_loopback(seed: u64, ta: Duration) -> io::Result<Duration> {
    // Its own thread and runtime: `rtclab speed` may itself run inside one.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
                    .block_on(connect(seed, ta))
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("ICE benchmark thread panicked")))
    })
}

async fn bind_agent(controlling: bool, seed: u64, ta: Duration) -> io::Result<Driver<Agent>> {
    let agent = Agent::new(
        ice::Config {
            controlling,
            ta,
            ..ice::Config::default()
        },
        StdRng::seed_from_u64(seed),
    );
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut d = Driver::bind(agent, &[loopback]).await?;
    let local = d.local_addrs()[0];
    d.machine_mut()
        .add_local_host(Instant::now(), local)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(d)
}

/// Runs one agent for ever, reporting when it selects a pair (or fails).
async fn drive(mut d: Driver<Agent>, start: Instant, done: oneshot::Sender<io::Result<Duration>>) {
    let mut done = Some(done);
    loop {
        let r = match d.next_event().await {
            Ok(ice::Event::SelectedPair { .. }) => Ok(start.elapsed()),
            Ok(ice::Event::Failed(why)) => Err(io::Error::other(why.to_string())),
            Ok(_) => continue,
            Err(e) => Err(e),
        };
        let failed = r.is_err();
        if let Some(tx) = done.take() {
            let _ = tx.send(r);
        }
        if failed {
            return;
        }
    }
}

async fn connect(seed: u64, ta: Duration) -> io::Result<Duration> {
    let mut agents = [
        bind_agent(true, seed * 2, ta).await?,
        bind_agent(false, seed * 2 + 1, ta).await?,
    ];
    // The signaling, done by hand: credentials and candidates both ways.
    let creds = [
        agents[0].machine().local_credentials().clone(),
        agents[1].machine().local_credentials().clone(),
    ];
    let mut cands = [Vec::new(), Vec::new()];
    for (i, d) in agents.iter_mut().enumerate() {
        while let Some(e) = d.machine_mut().poll_event() {
            if let ice::Event::LocalCandidate(c) = e {
                cands[i].push(c);
            }
        }
    }
    let now = Instant::now();
    for i in 0..2 {
        let (c, agent) = (&creds[1 - i], agents[i].machine_mut());
        agent.set_remote_credentials(now, &c.ufrag, &c.pwd);
        for c in cands[1 - i].drain(..) {
            agent
                .add_remote_candidate(now, c)
                .map_err(|e| io::Error::other(e.to_string()))?;
        }
    }
    // Both have each other's candidates: the clock starts.
    let start = Instant::now();
    let [a, b] = agents;
    let (tx_a, rx_a) = oneshot::channel();
    let (tx_b, rx_b) = oneshot::channel();
    let tasks = [
        tokio::spawn(drive(a, start, tx_a)),
        tokio::spawn(drive(b, start, tx_b)),
    ];
    let both = async {
        let closed = || io::Error::other("agent task ended");
        let ta = rx_a.await.map_err(|_| closed())??;
        let tb = rx_b.await.map_err(|_| closed())??;
        Ok::<_, io::Error>(ta.max(tb))
    };
    let r = tokio::time::timeout(RUN_LIMIT, both).await;
    for t in &tasks {
        t.abort();
    }
    r.map_err(|_| io::Error::other("no nominated pair within 3 s"))?
}

fn udp_round_trip() -> io::Result<Duration> {
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    let mut buf = [0u8; 256];
    let mut best = Duration::MAX;
    for _ in 0..50 {
        let t = Instant::now();
        a.send_to(&[0; 100], b.local_addr()?)?;
        let (_, from) = b.recv_from(&mut buf)?;
        b.send_to(&[0; 100], from)?;
        a.recv_from(&mut buf)?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

/// The figures of `rtclab speed ice`.
pub fn speed() -> Vec<(String, f64, &'static str)> {
    const RUNS: u64 = 11;
    let mut out = Vec::new();
    let mut failed = 0;
    for (name, ta) in [
        ("ice.nominated_ms", Duration::from_millis(50)),
        ("ice.nominated_ta5_ms", Duration::from_millis(5)),
    ] {
        let mut runs = Vec::new();
        for seed in 0..RUNS {
            match connect_on_loopback(seed, ta) {
                Ok(d) => runs.push(d),
                Err(e) => {
                    failed += 1;
                    eprintln!("note: {name} run {seed} failed: {e}");
                }
            }
        }
        out.push((name.to_string(), median_ms(runs), "ms"));
    }
    out.push(("ice.failed_runs".to_string(), failed as f64, "runs"));
    if let Ok(rtt) = udp_round_trip() {
        out.push((
            "ceiling.udp_loopback_rtt_ms".to_string(),
            rtt.as_secs_f64() * 1e3,
            "ms",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn connects_over_real_loopback_udp() {
        let d = super::connect_on_loopback(1, std::time::Duration::from_millis(5))
            .expect("loopback ICE");
        assert!(d < std::time::Duration::from_secs(3));
    }
}
