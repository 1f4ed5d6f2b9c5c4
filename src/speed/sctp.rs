//! `rtclab speed datachannel`: one reliable ordered stream (PPID 53, 64 KiB
//! messages) between two associations in the simulator on a 1 Gbit/s path
//! with a 20 ms round trip, without loss and with 1% loss each way. The
//! figures measure the algorithms (windows, SACKs, recovery) at virtual
//! time, not the machine; `datachannel.sim_cpu_mb_per_s` is the machine's
//! side: bytes moved per second of CPU spent running both associations and
//! the simulator. `datachannel.ceiling_raw_sctp_dtls_*` are a ceiling for
//! the real path: two rtclab SCTP associations in this process, each on its
//! own thread, over our DTLS (AES-GCM) over loopback UDP, wired to each other
//! directly (no `PeerConnection`, no ICE, no runtime driver, no flow-control
//! pause), 16 KiB and 64 KiB messages, with the CPU each peer's thread used
//! (`ceiling_raw_sctp_dtls_mb_per_s` is the better of the two). What an
//! application gets through two `PeerConnection`s is `datachannel.mb_per_s`
//! ([`crate::speed::peer::datachannel_on_loopback`]).

use std::net::SocketAddr;
use std::time::Duration;

use crate::sctp::{Association, Config, State};
use crate::sim::sctp::{BulkSender, BulkSink, SimHost};
use crate::sim::{LinkConfig, Sim};

/// Runs one transfer of `bytes`; returns (Mbit/s at virtual time, MB per CPU second).
pub fn sim_transfer(loss: f64, bytes: u64, seed: u64) -> (f64, f64) {
    let (mbit, cpu, _) = sim_transfer_with_stats(loss, bytes, seed);
    (mbit, cpu)
}

/// As [`sim_transfer`], with the sender's counters (timeouts, fast
/// retransmissions) for checking how it recovered.
pub fn sim_transfer_with_stats(loss: f64, bytes: u64, seed: u64) -> (f64, f64, crate::sctp::Stats) {
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
    let stats = sim.machine::<SimHost>(ha).association.stats;
    (
        sink.bytes as f64 * 8.0 / secs / 1e6,
        sink.bytes as f64 / 1e6 / cpu,
        stats,
    )
}

/// The `datachannel` figures. `RTCLAB_DATACHANNEL_LOOPBACK_ONLY=1` skips the
/// simulator runs (for profiling the loopback path alone).
pub fn speed() -> Vec<(String, f64, &'static str)> {
    let mut v = Vec::new();
    if std::env::var_os("RTCLAB_DATACHANNEL_LOOPBACK_ONLY").is_none() {
        let (clean, cpu) = sim_transfer(0.0, 200_000_000, 1);
        let (lossy, _) = sim_transfer(0.01, 100_000_000, 2);
        v.push(("datachannel.sim_20ms_mbit_per_s".into(), clean, "Mbit/s"));
        v.push((
            "datachannel.sim_20ms_1pct_loss_mbit_per_s".into(),
            lossy,
            "Mbit/s",
        ));
        v.push(("datachannel.sim_cpu_mb_per_s".into(), cpu, "MB/s"));
    }
    let bytes = 400_000_000;
    let mut best = 0.0f64;
    // `RTCLAB_SCTP_LOOPBACK_MTU` tries another SCTP packet size (what the
    // per-datagram cost is worth); the figures are for 1200 otherwise.
    let mtu = std::env::var("RTCLAB_SCTP_LOOPBACK_MTU")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(Config::default().mtu);
    for (name, size) in [("16k", 16 * 1024), ("64k", 64 * 1024)] {
        match loopback(bytes, size, mtu) {
            Ok(r) => {
                best = best.max(r.mb_per_s);
                v.push((
                    format!("datachannel.ceiling_raw_sctp_dtls_{name}_mb_per_s"),
                    r.mb_per_s,
                    "MB/s",
                ));
                v.push((
                    format!("datachannel.ceiling_raw_sctp_dtls_{name}_sender_cpu_pct"),
                    100.0 * r.sender_cpu / r.wall,
                    "%",
                ));
                v.push((
                    format!("datachannel.ceiling_raw_sctp_dtls_{name}_receiver_cpu_pct"),
                    100.0 * r.receiver_cpu / r.wall,
                    "%",
                ));
                v.push((
                    format!("datachannel.ceiling_raw_sctp_dtls_{name}_mb_per_cpu_s"),
                    r.mb_per_s * r.wall / (r.sender_cpu + r.receiver_cpu),
                    "MB/s",
                ));
            }
            Err(e) => eprintln!("datachannel.ceiling_raw_sctp_dtls_{name}: {e}"),
        }
    }
    if best > 0.0 {
        v.push((
            "datachannel.ceiling_raw_sctp_dtls_mb_per_s".into(),
            best,
            "MB/s",
        ));
    }
    v
}

/// What one loopback transfer measured.
#[derive(Debug, Clone, Copy)]
pub struct Loopback {
    /// Megabytes (10^6) of messages delivered per wall-clock second.
    pub mb_per_s: f64,
    /// Wall-clock seconds from the first send to the last message.
    pub wall: f64,
    /// CPU seconds the sending peer's thread used.
    pub sender_cpu: f64,
    /// CPU seconds the receiving peer's thread used.
    pub receiver_cpu: f64,
}

/// One peer of the loopback benchmark on its own thread: a UDP socket, a
/// DTLS endpoint, an SCTP association on top, each SCTP packet in one DTLS
/// record. Datagrams are read in batches (`recvmmsg`, [`crate::runtime`]'s
/// batch) and written with UDP GSO (or `sendmmsg` batches without it).
struct Side {
    socket: std::net::UdpSocket,
    local: SocketAddr,
    dtls: crate::dtls::endpoint::Endpoint,
    sctp: Association,
    up: bool,
    batch: Box<crate::runtime::batch::Batch>,
    pkt: Vec<u8>,
    /// Send with UDP GSO (`RTCLAB_SCTP_LOOPBACK_NO_GSO` turns it off).
    gso: bool,
    gso_buf: Vec<u8>,
    gso_lens: Vec<usize>,
    gso_to: Option<SocketAddr>,
}

impl Side {
    /// Moves everything that is ready one step; returns whether anything moved.
    fn turn(&mut self, sink: &mut Option<BulkSink>) -> bool {
        use crate::machine::{Machine, Receive};
        let now = std::time::Instant::now();
        let mut moved = false;
        let local = self.local;
        for _ in 0..4 {
            let n = self.batch.recv(&self.socket).unwrap_or(0);
            if n == 0 {
                break;
            }
            moved = true;
            for k in 0..n {
                let Some((from, d)) = self.batch.datagram(k) else {
                    continue;
                };
                self.dtls.handle_receive(
                    now,
                    Receive {
                        source: from,
                        destination: local,
                        contents: d,
                    },
                );
                self.drain_dtls(now);
            }
        }
        if self.dtls.poll_timeout().is_some_and(|t| t <= now) {
            self.dtls.handle_timeout(now);
            self.drain_dtls(now);
        }
        if self.sctp.poll_timeout().is_some_and(|t| t <= now) {
            self.sctp.handle_timeout(now);
        }
        while let Some(e) = self.sctp.poll_event() {
            if let (crate::sctp::Event::Message { data, .. }, Some(s)) = (e, sink.as_mut()) {
                s.messages += 1;
                s.bytes += data.len() as u64;
            }
        }
        moved |= self.flush();
        moved
    }

    fn drain_dtls(&mut self, now: std::time::Instant) {
        use crate::machine::Machine;
        while let Some(e) = self.dtls.poll_event() {
            match e {
                crate::dtls::endpoint::Event::Connected(_) => self.up = true,
                crate::dtls::endpoint::Event::ApplicationData(d) => {
                    self.sctp.handle_packet(now, &d)
                }
                _ => {}
            }
        }
    }

    /// Seals every SCTP packet that is ready and sends the datagrams in one
    /// batch.
    fn flush(&mut self) -> bool {
        use crate::machine::Machine;
        if self.up {
            while self.sctp.poll_transmit_into(&mut self.pkt) {
                let _ = self.dtls.send(&self.pkt);
            }
        }
        self.batch.clear_out();
        self.gso_buf.clear();
        self.gso_lens.clear();
        let mut n = 0;
        while let Some(t) = self.dtls.poll_transmit() {
            if self.gso {
                self.gso_buf.extend_from_slice(&t.contents);
                self.gso_lens.push(t.contents.len());
                self.gso_to = Some(t.destination);
            } else {
                self.batch.push_out(0, t.destination, &t.contents);
            }
            n += 1;
        }
        if n > 0 {
            if self.gso {
                self.send_gso();
            } else {
                let _ = self.batch.send(&self.socket, 0, n);
            }
        }
        n > 0
    }

    /// Sends the queued datagrams with UDP generic segmentation offload
    /// (Linux `UDP_SEGMENT`): each run of equal-sized datagrams (the last
    /// may be shorter) goes down in one `sendmsg`, and the kernel walks its
    /// stack once per run instead of once per datagram. Falls back to one
    /// datagram per call (and turns GSO off) if the kernel refuses.
    fn send_gso(&mut self) {
        use crate::runtime::batch;
        let Some(to) = self.gso_to else { return };
        let lens = &self.gso_lens;
        let (mut i, mut off) = (0, 0);
        while i < lens.len() {
            let seg = lens[i];
            let (mut j, mut total) = (i, 0);
            while j < lens.len() && lens[j] == seg && total + seg <= 65_000 && j - i < 64 {
                total += seg;
                j += 1;
            }
            if j < lens.len() && lens[j] < seg && total + lens[j] <= 65_000 && j - i < 64 {
                total += lens[j];
                j += 1;
            }
            let bytes = &self.gso_buf[off..off + total];
            let sent = if j - i == 1 {
                self.socket.send_to(bytes, to).map(drop)
            } else {
                let size = u16::try_from(seg).unwrap_or(u16::MAX);
                batch::send_gso(&self.socket, bytes, size, to, None).map(drop)
            };
            if let Err(e) = sent
                && j - i > 1
                && batch::gso_refused(&e)
            {
                // No GSO here: send this run one datagram at a time.
                self.gso = false;
                let mut o = off;
                for &len in &lens[i..j] {
                    let _ = self.socket.send_to(&self.gso_buf[o..o + len], to);
                    o += len;
                }
            }
            off += total;
            i = j;
        }
    }

    /// Waits for a datagram or the next timer, at most a millisecond.
    fn idle(&mut self) {
        use crate::machine::Machine;
        let now = std::time::Instant::now();
        let next = [self.dtls.poll_timeout(), self.sctp.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_millis(1), |t| {
                t.saturating_duration_since(now)
            });
        let wait = next.clamp(Duration::from_micros(20), Duration::from_millis(1));
        let _ = self.socket.set_read_timeout(Some(wait));
        let _ = self.socket.peek_from(&mut [0u8; 1]);
    }
}

/// Bulk transfer of `bytes` in messages of `size` bytes on one reliable
/// ordered stream between two rtclab peers (SCTP over our DTLS over
/// loopback UDP, packets of at most `mtu` bytes), each peer on its own
/// thread of this process.
pub fn loopback(bytes: u64, size: usize, mtu: usize) -> Result<Loopback, String> {
    use crate::dtls::cert::Certificate;
    use crate::dtls::endpoint::{Config as DtlsConfig, Endpoint};
    use rand::SeedableRng;
    use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
    let bind = || -> Result<std::net::UdpSocket, String> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
            .map_err(|e| e.to_string())?;
        let _ = s.set_recv_buffer_size(8 << 20);
        let _ = s.set_send_buffer_size(8 << 20);
        let any: SocketAddr = "127.0.0.1:0"
            .parse()
            .map_err(|e: std::net::AddrParseError| e.to_string())?;
        s.bind(&any.into()).map_err(|e| e.to_string())?;
        Ok(s.into())
    };
    let (sa, sb) = (bind()?, bind()?);
    let ab = sb.local_addr().map_err(|e| e.to_string())?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let cert = |rng: &mut rand::rngs::StdRng| {
        Certificate::generate(rng, std::time::SystemTime::now()).map_err(|e| e.to_string())
    };
    let now = std::time::Instant::now();
    let cfg = Config {
        heartbeat_interval: None,
        mtu,
        ..Config::default()
    };
    let side = |socket: std::net::UdpSocket, dtls, seed| Side {
        local: socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0))),
        socket,
        dtls,
        sctp: Association::new(cfg.clone(), rand::rngs::StdRng::seed_from_u64(seed)),
        up: false,
        batch: Box::new(crate::runtime::batch::Batch::new()),
        pkt: Vec::with_capacity(mtu),
        gso: std::env::var_os("RTCLAB_SCTP_LOOPBACK_NO_GSO").is_none(),
        gso_buf: Vec::with_capacity(1 << 16),
        gso_lens: Vec::new(),
        gso_to: None,
    };
    let mut a = side(
        sa,
        Endpoint::client(
            DtlsConfig::new(cert(&mut rng)?),
            ab,
            rand::rngs::StdRng::seed_from_u64(1),
            now,
        ),
        1,
    );
    let mut b = side(
        sb,
        Endpoint::server(
            DtlsConfig::new(cert(&mut rng)?),
            rand::rngs::StdRng::seed_from_u64(2),
        ),
        2,
    );
    let count = bytes / size as u64;
    let deadline = now + Duration::from_secs(120);
    // Bit 0: A established; bit 1: B established.
    let established = AtomicU8::new(0);
    let done = AtomicBool::new(false);
    let failed = AtomicBool::new(false);
    let barrier = std::sync::Barrier::new(2);
    let up = |side: &mut Side, bit: u8, active: bool| -> bool {
        let mut none = None;
        while established.load(Ordering::Acquire) != 3 {
            if !side.turn(&mut none) {
                side.idle();
            }
            if active && side.up && side.sctp.state() == State::Closed {
                side.sctp.connect(std::time::Instant::now());
            }
            if side.sctp.state() == State::Established {
                established.fetch_or(bit, Ordering::AcqRel);
            }
            if std::time::Instant::now() > deadline || failed.load(Ordering::Acquire) {
                failed.store(true, Ordering::Release);
                barrier.wait();
                return false;
            }
        }
        barrier.wait();
        !failed.load(Ordering::Acquire)
    };
    let (sender_cpu, receiver) = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            if !up(&mut a, 1, true) {
                return 0.0;
            }
            let cpu = cpu_time::ThreadTime::now();
            let mut bulk = BulkSender::new(1, size, count);
            bulk.high_water = 4 << 20;
            let mut msg = Vec::new();
            let mut none = None;
            while !done.load(Ordering::Acquire) {
                while bulk.sent < count && a.sctp.buffered_amount(1) < bulk.high_water {
                    BulkSender::fill(&mut msg, bulk.sent, size);
                    let now = std::time::Instant::now();
                    if a.sctp.send(now, 1, 53, &msg, bulk.options).is_err() {
                        break;
                    }
                    bulk.sent += 1;
                }
                if !a.turn(&mut none) {
                    a.idle();
                }
                if std::time::Instant::now() > deadline {
                    failed.store(true, Ordering::Release);
                    break;
                }
            }
            cpu.elapsed().as_secs_f64()
        });
        let receiver = s.spawn(|| {
            if !up(&mut b, 2, false) {
                return None;
            }
            let cpu = cpu_time::ThreadTime::now();
            let start = std::time::Instant::now();
            let mut sink = Some(BulkSink::new(size, false));
            while sink.as_ref().is_some_and(|s| s.messages < count) {
                if !b.turn(&mut sink) {
                    b.idle();
                }
                if std::time::Instant::now() > deadline || failed.load(Ordering::Acquire) {
                    done.store(true, Ordering::Release);
                    return None;
                }
            }
            let wall = start.elapsed().as_secs_f64();
            // Let the last SACKs out before the sender stops.
            b.flush();
            done.store(true, Ordering::Release);
            let got = sink.map_or(0, |s| s.bytes);
            Some((got, wall, cpu.elapsed().as_secs_f64()))
        });
        (
            sender.join().unwrap_or(0.0),
            receiver.join().unwrap_or(None),
        )
    });
    let Some((got, wall, receiver_cpu)) = receiver else {
        return Err("loopback: no association or the transfer timed out".into());
    };
    Ok(Loopback {
        mb_per_s: got as f64 / 1e6 / wall,
        wall,
        sender_cpu,
        receiver_cpu,
    })
}
