//! `rtclab speed datachannel`: one reliable ordered stream (PPID 53, 64 KiB
//! messages) between two associations in the simulator on a 1 Gbit/s path
//! with a 20 ms round trip, without loss and with 1% loss each way. The
//! figures measure the algorithms (windows, SACKs, recovery) at virtual
//! time, not the machine; `datachannel.sim_cpu_mb_per_s` is the machine's
//! side: bytes moved per second of CPU spent running both associations and
//! the simulator. `datachannel.loopback_mb_per_s` is the real thing: two
//! rtclab peers, SCTP over our DTLS (AES-GCM) over loopback UDP, both driven
//! by one thread (so its CPU figure is both peers together).

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
    let mut v = vec![
        ("datachannel.sim_20ms_mbit_per_s".into(), clean, "Mbit/s"),
        (
            "datachannel.sim_20ms_1pct_loss_mbit_per_s".into(),
            lossy,
            "Mbit/s",
        ),
        ("datachannel.sim_cpu_mb_per_s".into(), cpu, "MB/s"),
    ];
    let bytes = 200_000_000;
    match loopback(bytes) {
        Ok((mbps, cpu)) => {
            v.push(("datachannel.loopback_mb_per_s".into(), mbps, "MB/s"));
            v.push((
                "datachannel.loopback_cpu_mb_per_s".into(),
                bytes as f64 / 1e6 / cpu,
                "MB/s",
            ));
        }
        Err(e) => eprintln!("datachannel.loopback: {e}"),
    }
    v
}

/// One side of the loopback benchmark: a UDP socket, a DTLS endpoint, an
/// SCTP association on top.
struct Side {
    socket: std::net::UdpSocket,
    peer: SocketAddr,
    dtls: crate::dtls::endpoint::Endpoint,
    sctp: Association,
    up: bool,
}

impl Side {
    /// Moves everything that is ready one step; returns whether anything moved.
    fn turn(&mut self, buf: &mut [u8], pkt: &mut Vec<u8>, sink: &mut Option<BulkSink>) -> bool {
        use crate::machine::{Machine, Receive};
        let now = std::time::Instant::now();
        let mut moved = false;
        let local = self.socket.local_addr().unwrap_or(self.peer);
        for _ in 0..64 {
            match self.socket.recv_from(buf) {
                Ok((n, from)) => {
                    moved = true;
                    self.dtls.handle_receive(
                        now,
                        Receive {
                            source: from,
                            destination: local,
                            contents: &buf[..n],
                        },
                    );
                }
                Err(_) => break,
            }
        }
        if self.dtls.poll_timeout().is_some_and(|t| t <= now) {
            self.dtls.handle_timeout(now);
        }
        while let Some(e) = self.dtls.poll_event() {
            match e {
                crate::dtls::endpoint::Event::Connected(_) => self.up = true,
                crate::dtls::endpoint::Event::ApplicationData(d) => {
                    self.sctp.handle_packet(now, &d)
                }
                _ => {}
            }
        }
        if self.sctp.poll_timeout().is_some_and(|t| t <= now) {
            self.sctp.handle_timeout(now);
        }
        while let Some(e) = self.sctp.poll_event() {
            if let (super::Event::Message { data, .. }, Some(s)) = (e, sink.as_mut()) {
                s.messages += 1;
                s.bytes += data.len() as u64;
            }
        }
        if self.up {
            while self.sctp.poll_transmit_into(pkt) {
                moved = true;
                let _ = self.dtls.send(pkt);
            }
        }
        while let Some(t) = self.dtls.poll_transmit() {
            moved = true;
            let _ = self.socket.send_to(&t.contents, t.destination);
        }
        moved
    }
}

/// Bulk transfer of `bytes` in 64 KiB messages on one reliable ordered
/// stream between two rtclab peers (SCTP over our DTLS over loopback UDP),
/// both driven by this one thread. Returns (MB/s wall, CPU seconds).
pub fn loopback(bytes: u64) -> Result<(f64, f64), String> {
    use crate::dtls::cert::Certificate;
    use crate::dtls::endpoint::{Config as DtlsConfig, Endpoint};
    use rand::SeedableRng;
    let bind = || -> Result<std::net::UdpSocket, String> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .map_err(|e| e.to_string())?;
        let _ = s.set_recv_buffer_size(8 << 20);
        let _ = s.set_send_buffer_size(8 << 20);
        let any: SocketAddr = "127.0.0.1:0"
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?;
        s.bind(&any.into()).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok(s.into())
    };
    let (sa, sb) = (bind()?, bind()?);
    let (aa, ab) = (
        sa.local_addr().map_err(|e| e.to_string())?,
        sb.local_addr().map_err(|e| e.to_string())?,
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let cert = |rng: &mut rand::rngs::StdRng| {
        Certificate::generate(rng, std::time::SystemTime::now()).map_err(|e| e.to_string())
    };
    let now = std::time::Instant::now();
    let cfg = Config {
        heartbeat_interval: None,
        ..Config::default()
    };
    let mut a = Side {
        socket: sa,
        peer: ab,
        dtls: Endpoint::client(DtlsConfig::new(cert(&mut rng)?), ab, 1, now),
        sctp: Association::new(cfg.clone(), rand::rngs::StdRng::seed_from_u64(1)),
        up: false,
    };
    let mut b = Side {
        socket: sb,
        peer: aa,
        dtls: Endpoint::server(DtlsConfig::new(cert(&mut rng)?), 2),
        sctp: Association::new(cfg, rand::rngs::StdRng::seed_from_u64(2)),
        up: false,
    };
    let mut buf = vec![0u8; 65536];
    let mut pkt = Vec::with_capacity(1500);
    let mut none = None;
    let deadline = now + Duration::from_secs(120);
    let mut connected = false;
    while !connected {
        a.turn(&mut buf, &mut pkt, &mut none);
        b.turn(&mut buf, &mut pkt, &mut none);
        if a.up && b.up && a.sctp.state() == State::Closed {
            a.sctp.connect(std::time::Instant::now());
        }
        connected = a.sctp.state() == State::Established && b.sctp.state() == State::Established;
        if std::time::Instant::now() > deadline {
            return Err("loopback: no association".into());
        }
    }
    let size = 64 * 1024;
    let count = bytes / size as u64;
    let mut sender = BulkSender::new(1, size, count);
    sender.high_water = 4 << 20;
    let mut sink = Some(BulkSink::new(size, false));
    let cpu = cpu_time::ThreadTime::now();
    let start = std::time::Instant::now();
    let mut msg = Vec::new();
    while sink.as_ref().is_some_and(|s| s.messages < count) {
        while sender.sent < count && a.sctp.buffered_amount(1) < sender.high_water {
            BulkSender::fill(&mut msg, sender.sent, size);
            if a.sctp
                .send(std::time::Instant::now(), 1, 53, &msg, sender.options)
                .is_err()
            {
                break;
            }
            sender.sent += 1;
        }
        let m1 = a.turn(&mut buf, &mut pkt, &mut none);
        let m2 = b.turn(&mut buf, &mut pkt, &mut sink);
        if !m1 && !m2 {
            std::thread::yield_now();
        }
        if std::time::Instant::now() > deadline {
            return Err("loopback: transfer timed out".into());
        }
    }
    let wall = start.elapsed().as_secs_f64();
    Ok((bytes as f64 / 1e6 / wall, cpu.elapsed().as_secs_f64()))
}
