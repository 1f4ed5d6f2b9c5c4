//! `rtclab speed datachannel`: one reliable ordered stream (PPID 53, 64 KiB
//! messages) between two associations in the simulator on a 1 Gbit/s path
//! with a 20 ms round trip, without loss and with 1% loss each way. The
//! figures measure the algorithms (windows, SACKs, recovery) at virtual
//! time, not the machine; `datachannel.sim_cpu_mb_per_s` is the machine's
//! side: bytes moved per second of CPU spent running both associations and
//! the simulator.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Association, BulkSender, BulkSink, Config, SimHost, State};
use crate::sim::{LinkConfig, Sim};

/// Runs one transfer of `bytes`; returns (Mbit/s at virtual time, MB per CPU second).
pub fn sim_transfer(loss: f64, bytes: u64, seed: u64) -> (f64, f64) {
    let a_addr: SocketAddr = "192.0.2.1:5000".parse().unwrap_or_else(|_| unreachable!());
    let b_addr: SocketAddr = "192.0.2.2:5000".parse().unwrap_or_else(|_| unreachable!());
    let mut sim = Sim::new(seed);
    let cfg = Config {
        heartbeat_interval: None,
        ..Config::default()
    };
    let a = Association::new(cfg.clone(), sim.rng(1));
    let b = Association::new(cfg, sim.rng(2));
    let ha = sim.add_host(SimHost::new(a, b_addr), &[a_addr]);
    let hb = sim.add_host(SimHost::new(b, a_addr), &[b_addr]);
    // 5 ms per link: 20 ms round trip; the bottleneck is the sender's uplink.
    let link = LinkConfig {
        loss,
        rate_bps: Some(1_000_000_000),
        queue_limit_bytes: 4 * 1024 * 1024,
        ..LinkConfig::default()
    };
    sim.set_uplink(ha, link);
    sim.set_uplink(
        hb,
        LinkConfig {
            loss,
            ..LinkConfig::default()
        },
    );
    let now = sim.now();
    sim.machine_mut::<SimHost>(ha).association.connect(now);
    sim.run_for_with(Duration::from_secs(10), |s| {
        s.machine::<SimHost>(hb).association.state() == State::Established
            && s.machine::<SimHost>(ha).association.state() == State::Established
    });
    let size = 64 * 1024;
    let count = bytes / size as u64;
    sim.machine_mut::<SimHost>(ha).bulk = Some(BulkSender::new(1, size, count));
    sim.machine_mut::<SimHost>(hb).sink = Some(BulkSink::new(size, false));
    let start = sim.now();
    sim.machine_mut::<SimHost>(ha).handle_timeout_now(start);
    let cpu = cpu_time::ThreadTime::now();
    sim.run_for_with(Duration::from_secs(600), |s| {
        s.machine::<SimHost>(hb)
            .sink
            .as_ref()
            .is_some_and(|k| k.messages >= count)
    });
    let cpu = cpu.elapsed().as_secs_f64();
    let sink = sim.machine::<SimHost>(hb).sink.clone().unwrap_or_default();
    let secs = sink
        .last_at
        .map_or(f64::INFINITY, |t| (t - start).as_secs_f64());
    (
        sink.bytes as f64 * 8.0 / secs / 1e6,
        sink.bytes as f64 / 1e6 / cpu,
    )
}

/// The `datachannel` figures.
pub fn speed() -> Vec<(String, f64, &'static str)> {
    let (clean, cpu) = sim_transfer(0.0, 200_000_000, 1);
    let (lossy, _) = sim_transfer(0.01, 100_000_000, 2);
    vec![
        ("datachannel.sim_20ms_mbit_per_s".into(), clean, "Mbit/s"),
        (
            "datachannel.sim_20ms_1pct_loss_mbit_per_s".into(),
            lossy,
            "Mbit/s",
        ),
        ("datachannel.sim_cpu_mb_per_s".into(), cpu, "MB/s"),
    ]
}
