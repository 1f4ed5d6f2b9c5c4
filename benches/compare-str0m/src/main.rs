//! rtclab beside str0m in one run: the same data-channel transfer through
//! each stack's user path, alternating, on loopback UDP.
//!
//! Both harnesses have the same shape: two peers, each on its own thread
//! with its own UDP socket on 127.0.0.1, one reliable ordered data channel,
//! 16 KiB binary messages; the sender keeps the channel's `bufferedAmount`
//! between 512 KiB and 1 MiB (pause above the high mark, resume at the
//! buffered-amount-low event, threshold 512 KiB), the receiver counts
//! message bytes. Wall-clock MB/s from the channel opening on the receiver
//! to its last byte; each side's thread CPU time (`cpu-time`) from its
//! channel opening to the end, whence MB per CPU second of both peers.
//!
//! rtclab's figure is `rtclab speed datachannel`'s own path:
//! [`rtclab::speed::peer::datachannel_on_loopback`] (two `LivePeer`s, the
//! tokio runtime with its GSO/GRO batching). str0m's is the loop its
//! documentation gives a user: a blocking `UdpSocket`, `recv_from` with a
//! read timeout from `Output::Timeout`, one `send_to` per
//! `Output::Transmit`, every mutation followed by a drain of `poll_output`.
//!
//! Run: `cargo run --release --manifest-path benches/compare-str0m/Cargo.toml
//! [-- --rounds N --mib M --os-buffers --only rtclab|str0m --str0m-high-kib K]`.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rtclab::speed::peer::{HIGH_WATER, LOW_WATER, Transfer, datachannel_on_loopback};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Message size, as `rtclab speed datachannel`.
const SIZE: usize = 16 * 1024;
/// The socket buffers rtclab's runtime asks for (`rtclab::runtime::SOCKET_BUFFER`),
/// given to str0m's sockets too unless `--os-buffers`.
const SOCKET_BUFFER: usize = 4 << 20;
/// A transfer that has not finished by then has failed.
const DEADLINE: Duration = Duration::from_secs(120);

struct Options {
    rounds: usize,
    bytes: u64,
    os_buffers: bool,
    /// Which stacks run: rtclab, str0m or both.
    rtclab: bool,
    str0m: bool,
    /// str0m's marks: (high, low) in bytes.
    str0m_marks: (usize, usize),
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        rounds: 3,
        bytes: 64 << 20,
        os_buffers: false,
        rtclab: true,
        str0m: true,
        str0m_marks: (HIGH_WATER, LOW_WATER),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            args.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match a.as_str() {
            "--rounds" => o.rounds = number("--rounds")? as usize,
            "--mib" => o.bytes = number("--mib")? << 20,
            "--os-buffers" => o.os_buffers = true,
            "--str0m-high-kib" => {
                let high = (number("--str0m-high-kib")? as usize) << 10;
                o.str0m_marks = (high, high / 2);
            }
            "--only" => match args.next().as_deref() {
                Some("rtclab") => o.str0m = false,
                Some("str0m") => o.rtclab = false,
                _ => return Err("--only takes rtclab or str0m".into()),
            },
            _ => {
                return Err(format!(
                    "unknown argument {a}; usage: compare-str0m [--rounds N] [--mib M] [--os-buffers] [--only rtclab|str0m] [--str0m-high-kib K]"
                ));
            }
        }
    }
    Ok(o)
}

fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    println!(
        "data channel on loopback: {} MiB per round in {} KiB messages, bufferedAmount {}..{} KiB \
         (str0m {}..{} KiB); str0m {} (aws-lc-rs), socket buffers {}",
        o.bytes >> 20,
        SIZE >> 10,
        LOW_WATER >> 10,
        HIGH_WATER >> 10,
        o.str0m_marks.1 >> 10,
        o.str0m_marks.0 >> 10,
        STR0M_VERSION,
        if o.os_buffers {
            "OS default for str0m".to_string()
        } else {
            format!("{} MiB for both", SOCKET_BUFFER >> 20)
        },
    );
    println!(
        "{:>5}  {:<6} {:>9} {:>11} {:>9} {:>9}",
        "round", "stack", "MB/s", "MB/cpu-s", "send cpu", "recv cpu"
    );
    let (mut speed_ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    for round in 1..=o.rounds {
        let ours = if o.rtclab {
            let t = datachannel_on_loopback(o.bytes, SIZE);
            row(round, "rtclab", &t);
            t
        } else {
            Err("not run".into())
        };
        let theirs = if o.str0m {
            let t = str0m_on_loopback(o.bytes, SIZE, o.str0m_marks, !o.os_buffers);
            row(round, "str0m", &t);
            t
        } else {
            Err("not run".into())
        };
        if let (Ok(a), Ok(b)) = (ours, theirs) {
            speed_ratios.push(a.mb_per_s / b.mb_per_s);
            cpu_ratios.push(per_cpu(&a) / per_cpu(&b));
        }
    }
    if let (Some(s), Some(c)) = (median(&mut speed_ratios), median(&mut cpu_ratios)) {
        println!("median rtclab/str0m: {s:.2}x MB/s, {c:.2}x MB per CPU second");
    }
}

const STR0M_VERSION: &str = "0.25.0";

/// Megabytes delivered per CPU second of both peers' threads, as
/// `rtclab speed`'s `datachannel.mb_per_cpu_s`.
fn per_cpu(t: &Transfer) -> f64 {
    t.mb_per_s * t.wall / (t.sender_cpu + t.receiver_cpu)
}

fn row(round: usize, stack: &str, t: &Result<Transfer, String>) {
    match t {
        Ok(t) => println!(
            "{round:>5}  {stack:<6} {:>9.1} {:>11.1} {:>8.0}% {:>8.0}%",
            t.mb_per_s,
            per_cpu(t),
            100.0 * t.sender_cpu / t.wall,
            100.0 * t.receiver_cpu / t.wall,
        ),
        Err(e) => println!("{round:>5}  {stack:<6} failed: {e}"),
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

// ---- str0m ---------------------------------------------------------------

/// What the str0m receiver tells the sender at the end: bytes, wall
/// seconds, its CPU seconds.
type Done = (u64, f64, f64);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `bytes` in messages of `size` bytes on one str0m data channel between
/// two str0m peers on loopback, each on its own thread.
fn str0m_on_loopback(
    bytes: u64,
    size: usize,
    marks: (usize, usize),
    big_buffers: bool,
) -> Result<Transfer, String> {
    let count = bytes.div_ceil(size as u64);
    let total = count * size as u64;
    let (offer_tx, offer_rx) = mpsc::channel::<String>();
    let (answer_tx, answer_rx) = mpsc::channel::<String>();
    let (done_tx, done_rx) = mpsc::channel::<Done>();
    std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            str0m_receiver(offer_rx, answer_tx, done_tx, total, marks.0, big_buffers)
        });
        let sender = s.spawn(move || {
            str0m_sender(
                offer_tx,
                answer_rx,
                done_rx,
                count,
                size,
                marks,
                big_buffers,
            )
        });
        let r = receiver.join().map_err(|_| "receiver panicked".to_string());
        let (sender_cpu, (got, wall, receiver_cpu)) =
            sender.join().map_err(|_| "sender panicked".to_string())??;
        r??;
        Ok(Transfer {
            mb_per_s: got as f64 / 1e6 / wall,
            wall,
            sender_cpu,
            receiver_cpu,
        })
    })
}

/// A UDP socket on 127.0.0.1 and a str0m peer with its host candidate.
fn str0m_peer(high: usize, big_buffers: bool) -> Result<(UdpSocket, SocketAddr, Rtc), String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(err)?;
    if big_buffers {
        let s = socket2::SockRef::from(&socket);
        s.set_recv_buffer_size(SOCKET_BUFFER).map_err(err)?;
        s.set_send_buffer_size(SOCKET_BUFFER).map_err(err)?;
    }
    let addr = socket.local_addr().map_err(err)?;
    let mut rtc = Rtc::builder()
        // Written data counts as buffered until acknowledged, and write()
        // refuses what would go past this (default 128 KiB): room for the
        // benchmark's high mark and one more message.
        .set_sctp_max_buffered_amount(high + 2 * SIZE)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").map_err(err)?);
    Ok((socket, addr, rtc))
}

/// Drains `poll_output` to its timeout: one `send_to` per transmit, events
/// into `events`.
fn drain(rtc: &mut Rtc, socket: &UdpSocket, events: &mut Vec<Event>) -> Result<Instant, String> {
    loop {
        match rtc.poll_output().map_err(err)? {
            Output::Timeout(t) => return Ok(t),
            Output::Transmit(t) => {
                socket.send_to(&t.contents, t.destination).map_err(err)?;
            }
            Output::Event(e) => events.push(e),
        }
    }
}

/// Waits for a datagram until `timeout` (at most 50 ms, so that the caller
/// looks at its signaling now and then) and feeds it, or the timeout, in.
fn wait(
    rtc: &mut Rtc,
    socket: &UdpSocket,
    addr: SocketAddr,
    buf: &mut [u8],
    timeout: Instant,
) -> Result<(), String> {
    let now = Instant::now();
    let d = timeout
        .saturating_duration_since(now)
        .clamp(Duration::from_millis(1), Duration::from_millis(50));
    socket.set_read_timeout(Some(d)).map_err(err)?;
    let input = match socket.recv_from(buf) {
        Ok((n, source)) => {
            let r = Receive::new(Protocol::Udp, source, addr, &buf[..n]).map_err(err)?;
            Input::Receive(Instant::now(), r)
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Input::Timeout(Instant::now())
        }
        Err(e) => return Err(err(e)),
    };
    rtc.handle_input(input).map_err(err)
}

/// The sending side: offers one channel, then keeps its buffered amount
/// between `low` and `high` ([`LOW_WATER`] and [`HIGH_WATER`] unless
/// `--str0m-high-kib`). Returns its CPU seconds and
/// the receiver's report.
fn str0m_sender(
    offer_tx: mpsc::Sender<String>,
    answer_rx: mpsc::Receiver<String>,
    done_rx: mpsc::Receiver<Done>,
    count: u64,
    size: usize,
    (high, low): (usize, usize),
    big_buffers: bool,
) -> Result<(f64, Done), String> {
    let start = Instant::now();
    let (socket, addr, mut rtc) = str0m_peer(high, big_buffers)?;
    let mut api = rtc.sdp_api();
    let cid: ChannelId = api.add_channel("bulk".into());
    let (offer, pending) = api.apply().ok_or("no offer")?;
    offer_tx.send(offer.to_sdp_string()).map_err(err)?;
    let answer = answer_rx.recv_timeout(DEADLINE).map_err(err)?;
    let answer = SdpAnswer::from_sdp_string(&answer).map_err(err)?;
    rtc.sdp_api().accept_answer(pending, answer).map_err(err)?;

    let msg = vec![0x5a; size];
    let mut buf = vec![0; 2048];
    let mut events = Vec::new();
    let (mut open, mut paused, mut sent) = (false, false, 0u64);
    let mut cpu = None;
    let mut timeout = drain(&mut rtc, &socket, &mut events)?;
    loop {
        let mut opened = false;
        for e in events.drain(..) {
            match e {
                Event::ChannelOpen(id, _) if id == cid => opened = true,
                Event::ChannelBufferedAmountLow(id) if id == cid => paused = false,
                _ => {}
            }
        }
        if opened && !open {
            open = true;
            cpu = Some(cpu_time::ThreadTime::now());
            // A mutation, drained at once.
            if let Some(mut ch) = rtc.channel(cid) {
                ch.set_buffered_amount_low_threshold(low);
            }
            timeout = drain(&mut rtc, &socket, &mut events)?;
        }
        while open && !paused && sent < count {
            let mut ch = rtc.channel(cid).ok_or("the channel went away")?;
            if ch.buffered_amount() > high {
                paused = true;
                break;
            }
            if !ch.write(true, &msg).map_err(err)? {
                return Err("str0m refused a write below its max buffered amount".into());
            }
            sent += 1;
            timeout = drain(&mut rtc, &socket, &mut events)?;
            for e in events.drain(..) {
                if matches!(e, Event::ChannelBufferedAmountLow(id) if id == cid) {
                    paused = false;
                }
            }
        }
        if let Ok(done) = done_rx.try_recv() {
            let cpu = cpu.map_or(0.0, |c| c.elapsed().as_secs_f64());
            return Ok((cpu, done));
        }
        if start.elapsed() > DEADLINE {
            return Err("the transfer timed out".into());
        }
        wait(&mut rtc, &socket, addr, &mut buf, timeout)?;
        timeout = drain(&mut rtc, &socket, &mut events)?;
    }
}

/// The receiving side: answers, counts message bytes until `total`, then
/// reports.
fn str0m_receiver(
    offer_rx: mpsc::Receiver<String>,
    answer_tx: mpsc::Sender<String>,
    done_tx: mpsc::Sender<Done>,
    total: u64,
    high: usize,
    big_buffers: bool,
) -> Result<(), String> {
    let begin = Instant::now();
    let (socket, addr, mut rtc) = str0m_peer(high, big_buffers)?;
    let offer = offer_rx.recv_timeout(DEADLINE).map_err(err)?;
    let offer = SdpOffer::from_sdp_string(&offer).map_err(err)?;
    let answer = rtc.sdp_api().accept_offer(offer).map_err(err)?;
    answer_tx.send(answer.to_sdp_string()).map_err(err)?;

    let mut buf = vec![0; 2048];
    let mut events = Vec::new();
    let mut got = 0u64;
    let mut start = None;
    let mut timeout = drain(&mut rtc, &socket, &mut events)?;
    loop {
        for e in events.drain(..) {
            match e {
                Event::ChannelOpen(..) => {
                    start = Some((Instant::now(), cpu_time::ThreadTime::now()));
                }
                Event::ChannelData(d) => got += d.data.len() as u64,
                _ => {}
            }
        }
        if got >= total {
            let (wall, cpu) = start.map_or((f64::NAN, 0.0), |(t, c)| {
                (t.elapsed().as_secs_f64(), c.elapsed().as_secs_f64())
            });
            // Let the last SACKs out.
            rtc.handle_input(Input::Timeout(Instant::now()))
                .map_err(err)?;
            drain(&mut rtc, &socket, &mut events)?;
            let _ = done_tx.send((got, wall, cpu));
            return Ok(());
        }
        if begin.elapsed() > DEADLINE {
            return Err("the transfer timed out".into());
        }
        wait(&mut rtc, &socket, addr, &mut buf, timeout)?;
        timeout = drain(&mut rtc, &socket, &mut events)?;
    }
}
