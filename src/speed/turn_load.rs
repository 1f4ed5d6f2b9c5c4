//! `turn.load.*`: TURN relaying loaded as a deployment loads it: many
//! clients, each from its own source address, each with an allocation and a
//! channel to a peer, all relaying at once. `rtclab turn-server` with one
//! thread and with one per core (SO_REUSEPORT shards, a client's address
//! picking its shard), and coturn with its default threads (one relay
//! thread per core), all running at once and measured in turns (three
//! rounds, the best rate and least CPU kept) by the same generator.
//!
//! Loopback gives the addresses: every one of 127.0.0.0/8 is local on
//! Linux, so client `i` binds 127.1.x.y (its own IP, hence its own shard of
//! a server that steers by source IP). The generator spreads the clients
//! over a few threads, each a tokio current-thread runtime (epoll over its
//! clients' sockets and its echoing peer's), each client keeping a few
//! 120-byte ChannelData in flight, the peer echoing each back: both relayed
//! directions count.
//!
//! Figures per server: the relay rate (datagrams/s), the server process's
//! CPU time per datagram relayed (from /proc; what a machine with more
//! cores multiplies), and its threads used (threads with at least 5% of the
//! process's CPU time in the run). On a machine whose cores the generator
//! shares with the server (2 cores here), the rate shows how much of the
//! machine the server gets, not how far its threads scale: CPU per
//! datagram is the figure to compare across machines.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    Figure, Guard, free_udp_port, process_cpu, rtclab_bin, turn_setup_from, wait_for_stun,
};

/// The load.
#[derive(Debug, Clone)]
pub struct Load {
    /// TURN clients, each from its own loopback IP.
    pub clients: usize,
    /// Generator threads (each with its own echoing peer).
    pub threads: usize,
    /// Datagrams each client keeps in flight.
    pub window: usize,
    /// How long one measurement runs.
    pub duration: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Load {
            clients: 64,
            threads: 2,
            window: 4,
            duration: Duration::from_millis(1500),
        }
    }
}

/// The source IP of client `i`: 127.1.x.y, y in 1..=250.
fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Datagrams relayed (both directions) through `server` under `load`, and
/// the time taken (allocations and channels are made before the clock
/// starts).
pub fn run_load(server: SocketAddr, load: &Load) -> Result<(u64, Duration), String> {
    let threads = load.threads.max(1);
    let peers = (0..threads)
        .map(|_| UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut groups: Vec<Vec<(UdpSocket, u16)>> = (0..threads).map(|_| Vec::new()).collect();
    for i in 0..load.clients {
        let t = i % threads;
        let peer = peers[t].local_addr().map_err(|e| e.to_string())?;
        let local = SocketAddr::new(client_ip(i).into(), 0);
        groups[t].push(turn_setup_from(local, server, peer)?);
    }
    let started = Instant::now();
    let stop_at = started + load.duration;
    let window = load.window.max(1);
    let counts = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .zip(peers)
            .map(|(clients, peer)| {
                scope.spawn(move || generator(server, clients, peer, window, stop_at))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Err("generator thread panicked".into())))
            .collect::<Result<Vec<u64>, String>>()
    })?;
    Ok((2 * counts.iter().sum::<u64>(), started.elapsed()))
}

/// One generator thread: its clients and its echoing peer on a
/// current-thread runtime; returns the datagrams its clients got back.
fn generator(
    server: SocketAddr,
    clients: Vec<(UdpSocket, u16)>,
    peer: UdpSocket,
    window: usize,
    stop_at: Instant,
) -> Result<u64, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async move {
        let deadline = tokio::time::Instant::from_std(stop_at);
        let to_tokio = |s: UdpSocket| -> Result<tokio::net::UdpSocket, String> {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            tokio::net::UdpSocket::from_std(s).map_err(|e| e.to_string())
        };
        let peer = to_tokio(peer)?;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok(Ok((n, from))) =
                tokio::time::timeout_at(deadline, peer.recv_from(&mut buf)).await
            {
                let _ = peer.send_to(&buf[..n], from).await;
            }
            0u64
        });
        for (s, channel) in clients {
            let s = to_tokio(s)?;
            let mut msg = Vec::with_capacity(124);
            crate::turn::ChannelData {
                channel,
                data: &[0x5a; 120],
            }
            .emit(&mut msg)
            .map_err(|e| e.to_string())?;
            tasks.spawn(async move {
                let mut buf = [0u8; 2048];
                let mut echoed = 0u64;
                'run: loop {
                    // (Re)fill the window: at the start, and after a loss.
                    for _ in 0..window {
                        let _ = s.send_to(&msg, server).await;
                    }
                    loop {
                        let wait =
                            (tokio::time::Instant::now() + Duration::from_millis(50)).min(deadline);
                        match tokio::time::timeout_at(wait, s.recv_from(&mut buf)).await {
                            Ok(Ok((n, _))) => {
                                if n == msg.len() {
                                    echoed += 1;
                                }
                                if tokio::time::Instant::now() >= deadline {
                                    break 'run;
                                }
                                let _ = s.send_to(&msg, server).await;
                            }
                            _ if tokio::time::Instant::now() >= deadline => break 'run,
                            _ => continue 'run,
                        }
                    }
                }
                echoed
            });
        }
        let mut total = 0;
        while let Some(r) = tasks.join_next().await {
            total += r.map_err(|e| e.to_string())?;
        }
        Ok(total)
    })
}

/// CPU time of each thread of process `pid` (Linux /proc), by thread id.
fn thread_cpu(pid: u32) -> Vec<(u32, Duration)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let tid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        let mut f = rest.split_whitespace().skip(11);
        let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
        Some((tid, Duration::from_millis(ticks * 10)))
    })
    .collect()
}

/// Threads that did at least 5% of the process's work between two
/// [`thread_cpu`] readings.
fn busy_threads(before: &[(u32, Duration)], after: &[(u32, Duration)]) -> usize {
    let deltas: Vec<Duration> = after
        .iter()
        .map(|(tid, a)| {
            let b = before
                .iter()
                .find(|(t, _)| t == tid)
                .map_or(Duration::ZERO, |(_, b)| *b);
            a.saturating_sub(b)
        })
        .collect();
    let total: Duration = deltas.iter().sum();
    deltas
        .iter()
        .filter(|d| !total.is_zero() && d.as_secs_f64() >= 0.05 * total.as_secs_f64())
        .count()
}

/// One server's figures: best rate of its runs, least CPU per datagram,
/// and the threads busy in the best run.
#[derive(Default)]
struct Measured {
    pps: f64,
    cpu_ns: Option<f64>,
    busy: usize,
}

impl Measured {
    /// One more run against the server at `addr` (process `pid`).
    fn run(&mut self, addr: SocketAddr, pid: u32, load: &Load) -> Result<(), String> {
        let (cpu0, threads0) = (process_cpu(pid), thread_cpu(pid));
        let (n, elapsed) = run_load(addr, load)?;
        let (cpu1, threads1) = (process_cpu(pid), thread_cpu(pid));
        let pps = n as f64 / elapsed.as_secs_f64();
        let cpu = cpu1
            .zip(cpu0)
            .map(|(a, b)| a.saturating_sub(b).as_nanos() as f64 / n.max(1) as f64);
        if pps > self.pps {
            self.pps = pps;
            self.busy = busy_threads(&threads0, &threads1);
        }
        self.cpu_ns = match (self.cpu_ns, cpu) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        Ok(())
    }
}

fn start_rtclab(port: u16, threads: usize) -> Result<Guard, String> {
    let child = Command::new(rtclab_bin()?)
        .args([
            "turn-server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--user",
            "speed:speed",
            "--realm",
            "rtclab",
            "--threads",
            &threads.to_string(),
            "--no-tcp",
            "--allow-loopback-peers",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start rtclab turn-server: {e}"))?;
    Ok(Guard(child))
}

fn start_coturn(port: u16) -> Option<Guard> {
    let pid = std::env::temp_dir().join(format!("rtclab-speed-coturn-load-{port}.pid"));
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--allow-loopback-peers",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
            "--listening-port",
            &port.to_string(),
            "--realm",
            "rtclab",
            "--user",
            "speed:speed",
            "--lt-cred-mech",
            "--pidfile",
        ])
        .arg(&pid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Guard(child))
}

/// The `turn.load.*` figures (see the module doc). `RTCLAB_TURN_CLIENTS`
/// overrides the number of clients.
pub fn speed() -> Result<Vec<Figure>, String> {
    let mut load = Load::default();
    if let Some(n) = std::env::var("RTCLAB_TURN_CLIENTS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| (1..=60_000).contains(&n))
    {
        load.clients = n;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut figures = vec![
        Figure::new("turn.load.clients", load.clients as f64, "clients"),
        Figure::new("turn.load.cores", cores as f64, "cores"),
    ];
    // Every server up at once, then measured in turns, three rounds: a
    // machine shared with other work slows each alike.
    let mut servers: Vec<(String, Guard, SocketAddr)> = Vec::new();
    let mut configs: Vec<usize> = vec![1];
    if cores > 1 {
        configs.push(cores);
    }
    for threads in configs {
        let port = free_udp_port()?;
        let guard = start_rtclab(port, threads)?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if !wait_for_stun(addr, Duration::from_secs(5)) {
            return Err("rtclab turn-server did not answer".into());
        }
        servers.push((format!("rtclab_{threads}t"), guard, addr));
    }
    let port = free_udp_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    match start_coturn(port) {
        Some(c) if wait_for_stun(addr, Duration::from_secs(5)) => {
            servers.push(("coturn".into(), c, addr));
        }
        _ => eprintln!("note: coturn (turnserver) not found or not answering: no comparison"),
    }
    let mut results: Vec<Measured> = servers.iter().map(|_| Measured::default()).collect();
    for _ in 0..3 {
        for ((_, guard, addr), m) in servers.iter().zip(&mut results) {
            m.run(*addr, guard.0.id(), &load)?;
        }
    }
    for ((name, _, _), m) in servers.iter().zip(&results) {
        let name = format!("turn.load.{name}");
        figures.push(Figure::new(
            &format!("{name}_relay_pps"),
            m.pps,
            "datagrams/s",
        ));
        if let Some(ns) = m.cpu_ns {
            figures.push(Figure::new(
                &format!("{name}_cpu_ns_per_datagram"),
                ns,
                "ns",
            ));
        }
        figures.push(Figure::new(
            &format!("{name}_threads_busy"),
            m.busy as f64,
            "threads",
        ));
    }
    let rate = |n: &str| {
        servers
            .iter()
            .zip(&results)
            .find(|((name, _, _), _)| name == n)
            .map(|(_, m)| m.pps)
    };
    if let (Some(one), Some(many)) = (rate("rtclab_1t"), rate(&format!("rtclab_{cores}t"))) {
        if cores > 1 {
            figures.push(Figure::new(
                "turn.load.rtclab_scaling",
                many / one.max(1.0),
                "x",
            ));
        }
    }
    if let Some(coturn) = rate("coturn") {
        let best = results[..results.len() - 1]
            .iter()
            .map(|m| m.pps)
            .fold(0.0, f64::max);
        figures.push(Figure::new(
            "turn.load.ratio_to_coturn",
            best / coturn.max(1.0),
            "x",
        ));
    }
    Ok(figures)
}
