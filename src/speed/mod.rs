//! `rtclab speed [LAYER…]`: how fast each layer runs on this machine, printed
//! one figure per line as `NAME VALUE UNIT`, with the ceilings beside them
//! (the raw primitive the layer is built on, or an independent implementation
//! measured in the same run), so that a reader sees how close each layer runs
//! to its limit. Like `openssl speed`, it measures; it asserts nothing.
//!
//! Layers: `stun` (codec), `stun-server` (Binding requests per second on
//! loopback, beside coturn's when `turnserver` is installed, and the worst
//! amplification, answer bytes over request bytes), `dtls`
//! (handshakes per second, record protection beside raw ring), `srtp`
//! (protect and unprotect per profile beside raw ring), `rtp` (parse
//! and VP8 depacketize beside a plain copy of the same bytes), `ice` (time to
//! a nominated pair on loopback UDP beside one UDP round trip), `turn`
//! (120-byte ChannelData relayed per second by `rtclab turn-server` on
//! loopback, beside coturn's, each server's CPU time per datagram; then
//! many clients from many source addresses against `rtclab turn-server`
//! with one thread and one per core and coturn with its default threads,
//! [`turn_load`]; and the worst amplification of an unauthenticated request),
//! `datachannel` (one reliable ordered SCTP stream in the simulator at 20 ms
//! RTT on 1 Gbit/s, with and without 1% loss), `setup` (two PeerConnections
//! on loopback, from create_offer to the first data-channel message).
//!
//! Each layer's measurements live here, one file per layer ([`dtls`],
//! [`ice`], [`peer`], [`rtp`], [`sctp`], [`srtp`]; STUN and TURN in this
//! file), never inside the protocol modules: benchmarks open sockets, spawn
//! threads and read the clock, which the sans-IO modules never do.
//!
//! `sfu` runs only when named: a load generator against Janus's VideoRoom
//! and `rtclab sfu` ([`sfu`]).

pub mod bus;
pub mod dtls;
pub mod ice;
pub mod peer;
pub mod rtp;
pub mod sctp;
pub mod sfu;
pub mod srtp;
pub mod turn_load;

use std::hint::black_box;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::stun::{
    Attribute, IntegrityKey, Message, MessageEncoder, MessageType, TransactionId, attr,
};

/// One measured figure.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// Dotted name, e.g. `stun.decode_ns`.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
}

impl Figure {
    fn new(name: &str, value: f64, unit: &'static str) -> Self {
        Figure {
            name: name.to_string(),
            value,
            unit,
        }
    }
}

impl std::fmt::Display for Figure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.value >= 100.0 || self.value.fract() == 0.0 {
            write!(f, "{} {:.0} {}", self.name, self.value, self.unit)
        } else {
            write!(f, "{} {:.3} {}", self.name, self.value, self.unit)
        }
    }
}

/// The layers `rtclab speed` knows.
pub const LAYERS: &[&str] = &[
    "stun",
    "stun-server",
    "turn",
    "ice",
    "dtls",
    "srtp",
    "rtp",
    "setup",
    "media",
    "datachannel",
];

/// Runs the named layers (all when empty) and prints their figures.
pub fn run(layers: &[String]) -> Result<(), String> {
    let chosen: Vec<&str> = if layers.is_empty() {
        LAYERS.to_vec()
    } else {
        layers.iter().map(String::as_str).collect()
    };
    for layer in chosen {
        let figures = match layer {
            "stun" => stun(),
            "stun-server" => {
                let mut f = stun_server()?;
                f.extend(stun_server_amplification()?);
                f
            }
            "turn" => {
                let mut f = turn()?;
                f.extend(turn_load::speed()?);
                f.extend(turn_amplification()?);
                f
            }
            "dtls" => dtls(),
            "srtp" => from_tuples(crate::speed::srtp::speed()),
            "rtp" => from_tuples(crate::speed::rtp::speed()),
            "ice" => from_tuples(crate::speed::ice::speed()),
            "setup" => from_tuples(crate::speed::peer::speed()),
            "media" => from_tuples(crate::speed::peer::media()),
            "datachannel" => datachannel(),
            "sfu" => crate::speed::sfu::speed()?,
            "bus" => crate::speed::bus::speed()?,
            other => {
                return Err(format!(
                    "unknown layer {other:?}; known: {}",
                    LAYERS.join(", ")
                ));
            }
        };
        for f in figures {
            println!("{f}");
        }
    }
    Ok(())
}

/// Nanoseconds of CPU per call of `f`: the median of several batches, each
/// long enough (about 40 ms) to swamp the clock's resolution.
///
/// The clock is the thread's CPU time, not the wall clock: on a shared
/// machine the thread is often descheduled, and wall time would count that.
pub fn time_ns(mut f: impl FnMut()) -> f64 {
    let mut iters: u64 = 1;
    loop {
        let t = cpu_time::ThreadTime::now();
        for _ in 0..iters {
            f();
        }
        if t.elapsed() > Duration::from_millis(40) {
            break;
        }
        iters *= 2;
    }
    let mut samples: Vec<f64> = (0..7)
        .map(|_| {
            let t = cpu_time::ThreadTime::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / iters as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// The ICE connectivity check the benchmark uses: USERNAME, PRIORITY,
/// ICE-CONTROLLING, MESSAGE-INTEGRITY, FINGERPRINT (what a browser sends, less
/// its vendor attributes).
pub fn ice_binding_request(out: &mut Vec<u8>, tid: TransactionId, key: &IntegrityKey) {
    let _ = MessageEncoder::new(out, MessageType::BINDING_REQUEST, tid)
        .attribute(&Attribute::Username("Ktq5:g2Rs"))
        .attribute(&Attribute::Priority(0x6e7f_1eff))
        .attribute(&Attribute::IceControlling(0x1122_3344_5566_7788))
        .message_integrity(key)
        .fingerprint()
        .finish();
}

/// The STUN codec figures (issue targets: encode ≤ 450 ns, decode ≤ 50 ns,
/// decode + verify ≤ 400 ns).
pub fn stun() -> Vec<Figure> {
    let key = IntegrityKey::short_term("y8hWcoDrEX5R7u7ex0n/BGDR");
    let tid = TransactionId([0x5a; 12]);
    let mut buf = Vec::with_capacity(128);
    ice_binding_request(&mut buf, tid, &key);
    let msg = buf.clone();

    let encode = time_ns(|| {
        buf.clear();
        ice_binding_request(&mut buf, black_box(tid), &key);
        black_box(&buf);
    });
    let decode = time_ns(|| {
        let m = Message::parse(black_box(&msg)).ok();
        black_box(m);
    });
    let decode_verify = time_ns(|| {
        let ok = Message::parse(black_box(&msg)).is_ok_and(|m| {
            m.verify_integrity(&key).is_ok()
                && m.verify_fingerprint() == Ok(true)
                && m.get(attr::USERNAME).is_some()
        });
        assert!(ok, "the benchmark message must verify");
    });
    // Ceilings: the two primitives every check must run, on the same bytes.
    let hmac_len = msg.len() - 32;
    let hmac = time_ns(|| {
        let mut mac = <hmac::Hmac<sha1::Sha1> as hmac::Mac>::new_from_slice(key.as_bytes()).ok();
        if let Some(m) = mac.as_mut() {
            hmac::Mac::update(m, black_box(&msg[..hmac_len]));
        }
        black_box(mac.map(hmac::Mac::finalize));
    });
    let crc = crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);
    let crc_ns = time_ns(|| {
        black_box(crc.checksum(black_box(&msg[..msg.len() - 8])));
    });
    vec![
        Figure::new("stun.encode_ns", encode, "ns"),
        Figure::new("stun.decode_ns", decode, "ns"),
        Figure::new("stun.decode_verify_ns", decode_verify, "ns"),
        Figure::new("stun.message_len", msg.len() as f64, "bytes"),
        Figure::new("ceiling.hmac_sha1_keyed_ns", hmac, "ns"),
        Figure::new("ceiling.crc32_ns", crc_ns, "ns"),
    ]
}

/// The DTLS figures (issue targets: ≥ 1,000 handshakes per second per core
/// server-side; record seal + open ≥ 0.85 of raw ring AES-128-GCM).
pub fn dtls() -> Vec<Figure> {
    let f = crate::speed::dtls::measure(Duration::from_millis(1000));
    vec![
        Figure::new("dtls.handshakes_per_s", f.handshakes_per_s, "handshakes/s"),
        Figure::new(
            "dtls13.handshakes_per_s",
            f.handshakes13_hybrid_per_s,
            "handshakes/s",
        ),
        Figure::new(
            "dtls13.x25519.handshakes_per_s",
            f.handshakes13_x25519_per_s,
            "handshakes/s",
        ),
        Figure::new(
            "dtls.server.handshakes_per_s",
            f.dtls12_roles.server,
            "handshakes/s",
        ),
        Figure::new(
            "dtls.client.handshakes_per_s",
            f.dtls12_roles.client,
            "handshakes/s",
        ),
        Figure::new(
            "dtls13.server.handshakes_per_s",
            f.dtls13_hybrid_roles.server,
            "handshakes/s",
        ),
        Figure::new(
            "dtls13.client.handshakes_per_s",
            f.dtls13_hybrid_roles.client,
            "handshakes/s",
        ),
        Figure::new(
            "dtls13.x25519.server.handshakes_per_s",
            f.dtls13_x25519_roles.server,
            "handshakes/s",
        ),
        Figure::new(
            "dtls13.x25519.client.handshakes_per_s",
            f.dtls13_x25519_roles.client,
            "handshakes/s",
        ),
        Figure::new("dtls.record_1200_ns", f.record_1200_ns, "ns"),
        Figure::new(
            "ring.aes_128_gcm.seal_open_1200_ns",
            f.ring_seal_open_1200_ns,
            "ns",
        ),
        Figure::new(
            "dtls.record_ratio_to_ring",
            f.ring_seal_open_1200_ns / f.record_1200_ns,
            "x",
        ),
    ]
}

/// Figures from a layer's own `speed()` as (name, value, unit) tuples.
fn from_tuples(v: Vec<(String, f64, &'static str)>) -> Vec<Figure> {
    v.into_iter()
        .map(|(name, value, unit)| Figure { name, value, unit })
        .collect()
}

/// A child process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_udp_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.port())
}

/// Waits until a STUN server answers on `addr`.
fn wait_for_stun(addr: SocketAddr, within: Duration) -> bool {
    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let deadline = Instant::now() + within;
    let mut req = Vec::new();
    let _ = MessageEncoder::new(
        &mut req,
        MessageType::BINDING_REQUEST,
        TransactionId([1; 12]),
    )
    .finish();
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let _ = s.send_to(&req, addr);
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if Message::parse(&buf[..n]).is_ok() {
                return true;
            }
        }
    }
    false
}

/// Binding requests answered per second by the server at `target`, with a
/// closed-loop load of `threads` sockets each keeping `window` requests in
/// flight for `duration`.
pub fn stun_load(target: SocketAddr, duration: Duration, threads: usize, window: usize) -> f64 {
    let stop = Instant::now() + duration;
    let started = Instant::now();
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
                        return 0u64;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
                    let mut req = Vec::new();
                    let _ = MessageEncoder::new(
                        &mut req,
                        MessageType::BINDING_REQUEST,
                        TransactionId([t as u8; 12]),
                    )
                    .finish();
                    let mut buf = [0u8; 1500];
                    let mut counter: u64 = 0;
                    let mut in_flight = 0;
                    let mut answered = 0u64;
                    while Instant::now() < stop {
                        while in_flight < window {
                            counter += 1;
                            req[12..20].copy_from_slice(&counter.to_be_bytes());
                            if s.send_to(&req, target).is_ok() {
                                in_flight += 1;
                            } else {
                                break;
                            }
                        }
                        match s.recv_from(&mut buf) {
                            Ok((n, _)) => {
                                in_flight = in_flight.saturating_sub(1);
                                if n >= 20 && buf[0] == 0x01 && buf[1] == 0x01 {
                                    answered += 1;
                                }
                            }
                            // Lost requests or responses: refill the window.
                            Err(_) => in_flight = 0,
                        }
                    }
                    answered
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// The rtclab binary to start as a server: `RTCLAB_BIN`, or this executable.
fn rtclab_bin() -> Result<std::path::PathBuf, String> {
    match std::env::var_os("RTCLAB_BIN") {
        Some(p) => Ok(p.into()),
        None => std::env::current_exe().map_err(|e| e.to_string()),
    }
}

fn start_rtclab_server(port: u16) -> Result<Guard, String> {
    let child = Command::new(rtclab_bin()?)
        .args(["stun-server", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start rtclab stun-server: {e}"))?;
    Ok(Guard(child))
}

fn start_coturn(port: u16) -> Option<Guard> {
    let pid = std::env::temp_dir().join(format!("rtclab-speed-coturn-{port}.pid"));
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--stun-only",
            "--listening-ip",
            "127.0.0.1",
            "--listening-port",
            &port.to_string(),
            "--pidfile",
        ])
        .arg(&pid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    Some(Guard(child))
}

/// `rtclab stun-server` throughput on loopback, beside coturn's in the same run
/// (issue target: ≥ coturn). Each server is measured twice, alternating, and
/// the better run of each is kept.
pub fn stun_server() -> Result<Vec<Figure>, String> {
    const THREADS: usize = 2;
    const WINDOW: usize = 32;
    let duration = Duration::from_millis(1500);
    let ours_port = free_udp_port()?;
    let _ours = start_rtclab_server(ours_port)?;
    let ours_addr: SocketAddr = ([127, 0, 0, 1], ours_port).into();
    if !wait_for_stun(ours_addr, Duration::from_secs(5)) {
        return Err("rtclab stun-server did not answer".into());
    }
    let coturn_port = free_udp_port()?;
    let coturn = start_coturn(coturn_port);
    let coturn_addr: SocketAddr = ([127, 0, 0, 1], coturn_port).into();
    let coturn_up = coturn.is_some() && wait_for_stun(coturn_addr, Duration::from_secs(5));

    let mut ours = 0f64;
    let mut theirs = 0f64;
    for _ in 0..2 {
        ours = ours.max(stun_load(ours_addr, duration, THREADS, WINDOW));
        if coturn_up {
            theirs = theirs.max(stun_load(coturn_addr, duration, THREADS, WINDOW));
        }
    }
    let mut figures = vec![Figure::new("stun_server.rtclab_rps", ours, "req/s")];
    if coturn_up {
        figures.push(Figure::new("stun_server.coturn_rps", theirs, "req/s"));
        figures.push(Figure::new(
            "stun_server.ratio_to_coturn",
            ours / theirs.max(1.0),
            "x",
        ));
    } else {
        eprintln!("note: coturn (turnserver) not found or not answering: no comparison");
    }
    Ok(figures)
}

/// A request of `class`/`method` with the given raw attributes (and
/// FINGERPRINT when `fingerprint`), as an attacker would send it: no byte
/// more than needed to draw the answer.
fn bare_request(
    method: crate::stun::Method,
    attrs: &[(u16, &[u8])],
    integrity: bool,
    fingerprint: bool,
) -> Result<Vec<u8>, String> {
    use crate::stun::Class;
    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(
        &mut out,
        MessageType::new(Class::Request, method),
        TransactionId([0x5a; 12]),
    );
    for &(t, v) in attrs {
        enc.raw_attribute(t, v);
    }
    if integrity {
        enc.message_integrity(&IntegrityKey::short_term("x"));
    }
    if fingerprint {
        enc.fingerprint();
    }
    enc.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

/// One amplification figure: what `machine` answers to `request` from
/// `source`, over the request's size, checking it is the answer `want`
/// (0 for success, else the error code).
fn amplification<M: crate::machine::Machine>(
    machine: &mut M,
    name: &str,
    want: u16,
    request: &[u8],
    source: SocketAddr,
    destination: SocketAddr,
) -> Result<Figure, String> {
    use crate::machine::Receive;
    machine.handle_receive(
        Instant::now(),
        Receive {
            source,
            destination,
            contents: request,
        },
    );
    let answer = machine
        .poll_transmit()
        .ok_or_else(|| format!("{name}: no answer"))?;
    let got = Message::parse(&answer.contents)
        .ok()
        .and_then(|m| m.error_code().ok())
        .map(|e| e.map_or(0, |e| e.code));
    if got != Some(want) {
        return Err(format!("{name}: answered {got:?}, expected {want}"));
    }
    Ok(Figure::new(
        name,
        answer.contents.len() as f64 / request.len() as f64,
        "x",
    ))
}

/// Appends the largest of `figures` as `PREFIX.amplification_worst`.
fn with_worst(prefix: &str, mut figures: Vec<Figure>) -> Vec<Figure> {
    let worst = figures.iter().map(|f| f.value).fold(0f64, f64::max);
    figures.push(Figure::new(
        &format!("{prefix}.amplification_worst"),
        worst,
        "x",
    ));
    figures
}

/// The Binding server's amplification, answer bytes over request bytes,
/// for the smallest request that draws each kind of answer (the sans-IO
/// server in its default configuration, as `rtclab stun-server` runs it;
/// `rfc5780` with `--alt`).
pub fn stun_server_amplification() -> Result<Vec<Figure>, String> {
    use crate::stun::{self, BindingServer, Method};
    let primary: SocketAddr = ([192, 0, 2, 1], 3478).into();
    let v4: SocketAddr = ([203, 0, 113, 5], 61000).into();
    let v6: SocketAddr = "[2001:db8::5]:61000".parse().map_err(|_| "address")?;
    let v6_primary: SocketAddr = "[2001:db8::1]:3478".parse().map_err(|_| "address")?;
    let server = |p: SocketAddr, alt: Option<SocketAddr>| {
        let mut c = stun::server::Config::new(p);
        c.alternate = alt;
        BindingServer::new(c).map_err(|e| e.to_string())
    };
    let binding = bare_request(Method::BINDING, &[], false, false)?;
    let unknown = bare_request(Method::BINDING, &[(0x7f01, b"")], false, false)?;
    let other = bare_request(Method::ALLOCATE, &[], false, false)?;
    let alt: SocketAddr = ([192, 0, 2, 2], 3479).into();
    let figures = vec![
        amplification(
            &mut server(primary, None)?,
            "stun_server.amplification_binding",
            0,
            &binding,
            v4,
            primary,
        )?,
        amplification(
            &mut server(v6_primary, None)?,
            "stun_server.amplification_binding_ipv6",
            0,
            &binding,
            v6,
            v6_primary,
        )?,
        amplification(
            &mut server(primary, Some(alt))?,
            "stun_server.amplification_binding_rfc5780",
            0,
            &binding,
            v4,
            primary,
        )?,
        amplification(
            &mut server(primary, None)?,
            "stun_server.amplification_400",
            400,
            &other,
            v4,
            primary,
        )?,
        amplification(
            &mut server(primary, None)?,
            "stun_server.amplification_420",
            420,
            &unknown,
            v4,
            primary,
        )?,
    ];
    Ok(with_worst("stun_server", figures))
}

/// The TURN server's amplification toward an unauthenticated sender, for
/// the smallest request that draws each answer (default configuration,
/// realm "rtclab" as `rtclab turn-server` has by default).
pub fn turn_amplification() -> Result<Vec<Figure>, String> {
    use crate::stun::Method;
    use crate::turn::{self, Server};
    use rand::SeedableRng;
    let listen: SocketAddr = ([192, 0, 2, 1], 3478).into();
    let relay: SocketAddr = ([192, 0, 2, 1], 50000).into();
    let from: SocketAddr = ([203, 0, 113, 5], 61000).into();
    let mut config = turn::server::Config::new(listen, vec![relay], "rtclab");
    config.users.push(("u".into(), "p".into()));
    let mut s = Server::new(config, Instant::now(), rand::rngs::StdRng::seed_from_u64(1));
    let allocate = bare_request(Method::ALLOCATE, &[], false, false)?;
    let binding = bare_request(Method::BINDING, &[], false, false)?;
    let other = bare_request(Method::SEND, &[], false, false)?;
    // The least a request needs to be checked for its nonce.
    let stale = bare_request(
        Method::ALLOCATE,
        &[
            (attr::USERNAME, b"u"),
            (attr::REALM, b"r"),
            (attr::NONCE, b"n"),
        ],
        true,
        false,
    )?;
    let figures = vec![
        amplification(
            &mut s,
            "turn.amplification_401",
            401,
            &allocate,
            from,
            listen,
        )?,
        amplification(&mut s, "turn.amplification_438", 438, &stale, from, listen)?,
        amplification(
            &mut s,
            "turn.amplification_binding",
            0,
            &binding,
            from,
            listen,
        )?,
        amplification(&mut s, "turn.amplification_400", 400, &other, from, listen)?,
    ];
    Ok(with_worst("turn", figures))
}

/// Drives a TURN client by hand over a blocking socket until it has an
/// allocation and a channel bound to `peer`; returns the socket and channel.
fn turn_setup(server: SocketAddr, peer: SocketAddr) -> Result<(UdpSocket, u16), String> {
    turn_setup_from(([127, 0, 0, 1], 0).into(), server, peer)
}

/// [`turn_setup`] from a socket bound to `bind`.
fn turn_setup_from(
    bind: SocketAddr,
    server: SocketAddr,
    peer: SocketAddr,
) -> Result<(UdpSocket, u16), String> {
    use crate::machine::{Machine, Receive};
    use crate::turn::{self, Client};
    use rand::SeedableRng;

    let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    let local = s.local_addr().map_err(|e| e.to_string())?;
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let mut config = turn::client::Config::new(server, "speed", "speed");
    config.local = Some(local);
    let mut client = Client::new(config, rand::rngs::StdRng::seed_from_u64(1));
    client.allocate(Instant::now()).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    let mut channel = None;
    while Instant::now() < deadline {
        while let Some(t) = client.poll_transmit() {
            let _ = s.send_to(&t.contents, t.destination);
        }
        while let Some(e) = client.poll_event() {
            match e {
                turn::client::Event::Allocated { .. } => {
                    channel = Some(
                        client
                            .bind_channel(Instant::now(), peer)
                            .map_err(|e| e.to_string())?,
                    );
                }
                turn::client::Event::ChannelBound { channel: c, .. } => return Ok((s, c)),
                turn::client::Event::AllocationFailed(e) => {
                    return Err(format!("TURN allocation: {e}"));
                }
                turn::client::Event::ChannelBindFailed { error, .. } => {
                    return Err(format!("TURN channel bind: {error}"));
                }
                _ => {}
            }
        }
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            client.handle_receive(
                Instant::now(),
                Receive {
                    source: from,
                    destination: local,
                    contents: &buf[..n],
                },
            );
        }
        client.handle_timeout(Instant::now());
    }
    Err(format!("no TURN channel within 5 s (channel {channel:?})"))
}

/// Datagrams relayed per second through the TURN server at `server`: a
/// client sends 120-byte ChannelData on a bound channel keeping `window`
/// datagrams in flight, a peer echoes each back; both directions count.
///
/// The generator is the same for every server measured, and cheap: on Linux
/// it moves whole batches per system call (see `batch`), so that on a small
/// machine, where it shares the cores with the server, it is not what sets
/// the rate.
pub fn turn_load(server: SocketAddr, duration: Duration, window: usize) -> Result<f64, String> {
    let (n, elapsed) = turn_load_counted(server, duration, window)?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// [`turn_load`]'s datagrams relayed (both directions) and the time taken.
fn turn_load_counted(
    server: SocketAddr,
    duration: Duration,
    window: usize,
) -> Result<(u64, Duration), String> {
    let peer = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let peer_addr = peer.local_addr().map_err(|e| e.to_string())?;
    let _ = peer.set_read_timeout(Some(Duration::from_millis(50)));
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| echo_loop(&peer, &stop));
        let result = (|| {
            let (s, channel) = turn_setup(server, peer_addr)?;
            let mut msg = Vec::with_capacity(124);
            crate::turn::ChannelData {
                channel,
                data: &[0x5a; 120],
            }
            .emit(&mut msg)
            .map_err(|e| e.to_string())?;
            let started = Instant::now();
            let echoed = load_loop(&s, server, &msg, started + duration, window);
            Ok((2 * echoed, started.elapsed()))
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        result
    })
}

/// The echoing peer: sends every datagram back where it came from.
fn echo_loop(peer: &UdpSocket, stop: &std::sync::atomic::AtomicBool) {
    #[cfg(target_os = "linux")]
    {
        let mut b = batch::Batch::blocking(GENERATOR_SLOT);
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(n @ 1..) = b.recv(peer) {
                b.echo_all(n);
                let _ = b.send(peer, 0, n);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut buf = [0u8; 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = peer.recv_from(&mut buf) {
                let _ = peer.send_to(&buf[..n], from);
            }
        }
    }
}

/// The client: keeps `window` copies of `msg` in flight until `stop_at`;
/// returns how many came back.
fn load_loop(
    s: &UdpSocket,
    server: SocketAddr,
    msg: &[u8],
    stop_at: Instant,
    window: usize,
) -> u64 {
    let mut in_flight = 0;
    let mut echoed = 0u64;
    #[cfg(target_os = "linux")]
    {
        let mut b = batch::Batch::blocking(GENERATOR_SLOT);
        while Instant::now() < stop_at {
            if in_flight < window {
                let n = (window - in_flight).min(batch::N);
                b.clear_out();
                for _ in 0..n {
                    b.push_out(0, server, msg);
                }
                in_flight += b.send(s, 0, n).unwrap_or(0);
            }
            match b.recv(s) {
                Ok(n) => {
                    in_flight = in_flight.saturating_sub(n);
                    echoed += (0..n)
                        .filter(|&k| b.datagram(k).is_some_and(|(_, d)| d.len() == msg.len()))
                        .count() as u64;
                }
                // Lost datagrams: refill the window.
                Err(_) => in_flight = 0,
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut buf = [0u8; 2048];
        while Instant::now() < stop_at {
            while in_flight < window {
                if s.send_to(msg, server).is_err() {
                    break;
                }
                in_flight += 1;
            }
            match s.recv_from(&mut buf) {
                Ok((n, _)) => {
                    in_flight = in_flight.saturating_sub(1);
                    if n == msg.len() {
                        echoed += 1;
                    }
                }
                Err(_) => in_flight = 0,
            }
        }
    }
    echoed
}

/// CPU time (user + system, all threads) a process has used so far, from
/// `/proc/PID/stat` (in clock ticks of 10 ms); `None` elsewhere.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces:
    // count fields after its closing one. utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    // USER_HZ, the unit of /proc times: 100 on every Linux ABI in use.
    const HZ: u64 = 100;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000 / HZ),
    ))
}

/// The load generator's batches (`runtime`'s batch module: `sendmmsg` and
/// `recvmmsg`, one system call per window): so that on a small machine,
/// where the generator's client and echoing peer share the cores with the
/// server, the generator spends far less CPU per datagram than the server
/// it loads, and the server, not the generator, sets the rate. Slots of
/// 2 KiB: its datagrams are 124 bytes.
#[cfg(target_os = "linux")]
use crate::runtime::batch;
#[cfg(target_os = "linux")]
const GENERATOR_SLOT: usize = 2048;

/// `datachannel.mb_per_s`: what an application gets, two `PeerConnection`s
/// over [`LivePeer`](crate::runtime::LivePeer) on loopback, 16 KiB messages,
/// `bufferedAmount` kept between 512 KiB and 1 MiB (see
/// [`crate::speed::peer::datachannel_on_loopback`]), with each side's CPU;
/// then the SCTP figures of [`crate::speed::sctp`], whose
/// `datachannel.ceiling_raw_sctp_dtls_*` is the ceiling for it (SCTP over
/// DTLS wired directly, no flow-control pause). Beside str0m, the same
/// transfer runs from `benches/compare-str0m` (a separate project, so that
/// str0m is never rtclab's dependency); the ratio to the ceiling is
/// `datachannel.pct_of_ceiling`, and per CPU second of both
/// peers (`*_mb_per_cpu_s`, which other load on the machine disturbs less)
/// `datachannel.cpu_pct_of_ceiling`.
pub fn datachannel() -> Vec<Figure> {
    let mut v = Vec::new();
    let user = match crate::speed::peer::datachannel_on_loopback(400_000_000, 16 * 1024) {
        Ok(t) => {
            v.push(Figure::new("datachannel.mb_per_s", t.mb_per_s, "MB/s"));
            v.push(Figure::new(
                "datachannel.sender_cpu_pct",
                100.0 * t.sender_cpu / t.wall,
                "%",
            ));
            v.push(Figure::new(
                "datachannel.receiver_cpu_pct",
                100.0 * t.receiver_cpu / t.wall,
                "%",
            ));
            let per_cpu = t.mb_per_s * t.wall / (t.sender_cpu + t.receiver_cpu);
            v.push(Figure::new("datachannel.mb_per_cpu_s", per_cpu, "MB/s"));
            Some((t.mb_per_s, per_cpu))
        }
        Err(e) => {
            eprintln!("datachannel.mb_per_s: {e}");
            None
        }
    };
    let sctp = from_tuples(crate::speed::sctp::speed());
    let find = |name: &str| sctp.iter().find(|f| f.name == name).map(|f| f.value);
    let ceiling = find("datachannel.ceiling_raw_sctp_dtls_16k_mb_per_s");
    let ceiling_cpu = find("datachannel.ceiling_raw_sctp_dtls_16k_mb_per_cpu_s");
    let mut ratios = Vec::new();
    if let (Some((u, _)), Some(c)) = (user, ceiling) {
        ratios.push(Figure::new(
            "datachannel.pct_of_ceiling",
            100.0 * u / c,
            "%",
        ));
    }
    if let (Some((_, u)), Some(c)) = (user, ceiling_cpu) {
        ratios.push(Figure::new(
            "datachannel.cpu_pct_of_ceiling",
            100.0 * u / c,
            "%",
        ));
    }
    v.extend(sctp);
    v.extend(ratios);
    v
}

/// `rtclab turn-server` relay rate for 120-byte ChannelData on loopback,
/// beside coturn's in the same run (issue target: ≥ coturn).
pub fn turn() -> Result<Vec<Figure>, String> {
    let duration = Duration::from_millis(1000);
    // Datagrams in flight: enough that the server always has work waiting
    // (the rate is then its CPU share over its cost per datagram, not a
    // round trip through a busy scheduler), few enough for the default
    // socket buffers. RTCLAB_TURN_WINDOW overrides it, for experiments.
    let window = std::env::var("RTCLAB_TURN_WINDOW")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|&w| w > 0)
        .unwrap_or(128);
    let port = free_udp_port()?;
    let ours = Guard(
        Command::new(rtclab_bin()?)
            .args([
                "turn-server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--user",
                "speed:speed",
                "--realm",
                "rtclab",
                "--relays",
                "4",
                "--allow-loopback-peers",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start rtclab turn-server: {e}"))?,
    );
    let ours_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    if !wait_for_stun(ours_addr, Duration::from_secs(5)) {
        return Err("rtclab turn-server did not answer".into());
    }
    let cport = free_udp_port()?;
    let pid = std::env::temp_dir().join(format!("rtclab-speed-coturn-{cport}.pid"));
    let coturn = Command::new("turnserver")
        .args([
            "-n",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--allow-loopback-peers",
            "--listening-ip",
            "127.0.0.1",
            "--relay-ip",
            "127.0.0.1",
            "--listening-port",
            &cport.to_string(),
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
        .ok()
        .map(Guard);
    let coturn_addr: SocketAddr = ([127, 0, 0, 1], cport).into();
    let coturn_up = coturn.is_some() && wait_for_stun(coturn_addr, Duration::from_secs(5));
    // Each server three times, alternating; the better run of each is kept. Beside
    // the rate, the CPU time the server process spent per datagram relayed
    // (from /proc on Linux): less sensitive to a shared, noisy machine.
    let measure = |addr: SocketAddr, pid: u32| -> Result<(f64, Option<f64>), String> {
        let before = process_cpu(pid);
        let (n, elapsed) = turn_load_counted(addr, duration, window)?;
        let cpu = process_cpu(pid).zip(before).map(|(after, before)| {
            after.saturating_sub(before).as_nanos() as f64 / n.max(1) as f64
        });
        Ok((n as f64 / elapsed.as_secs_f64(), cpu))
    };
    let best = |a: (f64, Option<f64>), b: (f64, Option<f64>)| {
        let cpu = match (a.1, b.1) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        (a.0.max(b.0), cpu)
    };
    let mut ours_m = (0f64, None);
    let mut theirs_m = (0f64, None);
    for _ in 0..3 {
        ours_m = best(ours_m, measure(ours_addr, ours.0.id())?);
        if let (true, Some(c)) = (coturn_up, &coturn) {
            theirs_m = best(theirs_m, measure(coturn_addr, c.0.id())?);
        }
    }
    let (ours, theirs) = (ours_m.0, theirs_m.0);
    let mut figures = vec![Figure::new("turn.rtclab_relay_pps", ours, "datagrams/s")];
    if let Some(ns) = ours_m.1 {
        figures.push(Figure::new("turn.rtclab_cpu_ns_per_datagram", ns, "ns"));
    }
    if coturn_up {
        figures.push(Figure::new("turn.coturn_relay_pps", theirs, "datagrams/s"));
        if let Some(ns) = theirs_m.1 {
            figures.push(Figure::new("turn.coturn_cpu_ns_per_datagram", ns, "ns"));
        }
        figures.push(Figure::new(
            "turn.ratio_to_coturn",
            ours / theirs.max(1.0),
            "x",
        ));
        if let (Some(o), Some(t)) = (ours_m.1, theirs_m.1) {
            figures.push(Figure::new("turn.cpu_ratio_to_coturn", t / o.max(1.0), "x"));
        }
    } else {
        eprintln!("note: coturn (turnserver) not found or not answering: no comparison");
    }
    Ok(figures)
}

#[cfg(test)]
mod amplification_tests {
    /// The figures compute (every crafted request draws the answer it
    /// names), and no unauthenticated answer is more than 4.5 times its
    /// request (RFC 5780's Binding answer, 3.4×, and the TURN 401, 4.2×,
    /// are the largest).
    #[test]
    fn worst_amplification_is_bounded() {
        for figures in [
            super::stun_server_amplification().unwrap(),
            super::turn_amplification().unwrap(),
        ] {
            for f in &figures {
                eprintln!("{f}");
                assert!(f.value <= 4.5, "{f}");
            }
        }
    }
}
