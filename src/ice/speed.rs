//! `rtclab speed ice`: wall time for two agents on loopback UDP to reach a
//! nominated pair with host candidates, counted from the moment both have
//! each other's credentials and candidates.
//!
//! With the RFC's Ta of 50 ms the nomination check waits one Ta after the
//! first check (RFC 8445 §6.1.4.2 paces triggered checks too), so the figure
//! is about 50 ms; `ice.nominated_ta5_ms` shows the same run with Ta = 5 ms.
//! The ceiling is one UDP round trip on the same sockets.

use std::io;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::{Agent, AgentConfig, ConnectionState, IceEvent};
use crate::machine::{Machine, Receive};

/// Connects two agents over loopback once; the time to both selecting a pair.
pub fn connect_on_loopback(seed: u64, ta: Duration) -> io::Result<Duration> {
    let socks = [
        UdpSocket::bind("127.0.0.1:0")?,
        UdpSocket::bind("127.0.0.1:0")?,
    ];
    let addrs = [socks[0].local_addr()?, socks[1].local_addr()?];
    for s in &socks {
        s.set_nonblocking(true)?;
    }
    let mk = |controlling, seed| {
        Agent::new(
            AgentConfig {
                controlling,
                ta,
                ..AgentConfig::default()
            },
            StdRng::seed_from_u64(seed),
        )
    };
    let mut agents = [mk(true, seed * 2), mk(false, seed * 2 + 1)];
    let now = Instant::now();
    for i in 0..2 {
        agents[i]
            .add_local_host(now, addrs[i])
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    let creds = [
        agents[0].local_credentials().clone(),
        agents[1].local_credentials().clone(),
    ];
    for i in 0..2 {
        let c = &creds[1 - i];
        agents[i].set_remote_credentials(now, &c.ufrag, &c.pwd);
        let mut cands = Vec::new();
        while let Some(e) = agents[1 - i].poll_event() {
            if let IceEvent::LocalCandidate(c) = e {
                cands.push(c);
            }
        }
        for c in cands {
            let _ = agents[i].add_remote_candidate(now, c);
        }
    }
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    loop {
        let now = Instant::now();
        for (i, a) in agents.iter_mut().enumerate() {
            if a.poll_timeout().is_some_and(|t| t <= now) {
                a.handle_timeout(now);
            }
            while let Some(t) = a.poll_transmit() {
                socks[i].send_to(&t.contents, t.destination)?;
            }
        }
        for i in 0..2 {
            loop {
                match socks[i].recv_from(&mut buf) {
                    Ok((n, from)) => agents[i].handle_receive(
                        Instant::now(),
                        Receive {
                            source: from,
                            destination: addrs[i],
                            contents: &buf[..n],
                        },
                    ),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        if agents
            .iter()
            .all(|a| a.state() == ConnectionState::Connected && a.selected_pair().is_some())
        {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(3) {
            return Err(io::Error::other("no nominated pair within 3 s"));
        }
        std::hint::spin_loop();
    }
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
    let mut out = Vec::new();
    for (name, ta) in [
        ("ice.nominated_ms", Duration::from_millis(50)),
        ("ice.nominated_ta5_ms", Duration::from_millis(5)),
    ] {
        let runs: Vec<Duration> = (0..11)
            .filter_map(|s| connect_on_loopback(s, ta).ok())
            .collect();
        out.push((name.to_string(), median_ms(runs), "ms"));
    }
    if let Ok(rtt) = udp_round_trip() {
        out.push((
            "ceiling.udp_loopback_rtt_us".to_string(),
            rtt.as_secs_f64() * 1e6,
            "us",
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
