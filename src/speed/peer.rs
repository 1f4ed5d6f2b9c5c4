//! `rtclab speed setup`: how long two [`PeerConnection`]s in one process
//! take over loopback UDP (the tokio [`Driver`]) from `create_offer` to the
//! first data-channel message delivered, over 100 runs: p50 and p99
//! (`setup.p50_ms`, `setup.p99_ms`). Certificates are made before the clock
//! starts (a browser makes its certificate ahead too). ICE's pacing Ta is
//! 5 ms here (the offerer and answerer each have one candidate pair).
//!
//! The same set-up 100 times in the simulator with 5 % loss each way and
//! 20 ms RTT, in virtual time: `setup.sim_5pct_loss_p95_ms` (what the
//! retransmission timers of ICE, DTLS and SCTP cost when packets of the
//! handshakes are lost; `setup.sim_5pct_loss_p50_ms` beside it).
//!
//! `peer.idle_bytes`: the heap bytes one idle, connected peer holds as an
//! application has it: a [`LivePeer`](crate::runtime::LivePeer) on a loopback UDP
//! socket (ICE, DTLS, SCTP with a data channel open, its certificate, and
//! its driver: buffers, queues, the tokio registration of its socket),
//! measured over 200 peers (100 connected pairs, each left to settle for
//! 500 ms after its first message) in one process.
//! `peer.idle_bytes_machine` is the sans-IO [`PeerConnection`] alone, over
//! 1,000 peers connected in memory. Both need a counting global allocator
//! in the binary, registered with [`set_heap_counter`] (`rtclab` has one);
//! without it the figures are NaN.

use std::io;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::datachannel::{ChannelInit, Event as DcEvent};
use crate::dtls::cert::Certificate;
use crate::machine::{Machine, Receive};
use crate::peer::{self, PeerConnection, PeerConnectionState, SdpType};
use crate::runtime::Driver;
use crate::sim::{LinkConfig, Sim};

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
    let mut config = peer::Config::new(cert, vec![addr]);
    let mut transport = crate::peer::transport::Config::new(
        crate::peer::IceRole::Controlling,
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
    let err = |e: crate::peer::Error| io::Error::other(e.to_string());
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
                peer::Event::LocalCandidate(c) => {
                    other.add_ice_candidate(now, &c.to_string()).map_err(err)?
                }
                peer::Event::GatheringComplete => other.add_end_of_candidates(now),
                peer::Event::DataChannel(DcEvent::Open(id)) if side == 0 && id == ch => {
                    this.send_text(now, ch, "first").map_err(err)?
                }
                peer::Event::DataChannel(DcEvent::Message { .. }) if side == 1 => {
                    return Ok::<Duration, io::Error>(start.elapsed());
                }
                peer::Event::Error(e) => return Err(err(e)),
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
    let (mut sim_runs, sim_failed) = setup_in_sim(RUNS, 0.05);
    sim_runs.sort();
    let idle = idle_bytes_per_peer(IDLE_PEERS);
    let live_idle = live_idle_bytes_per_peer(LIVE_IDLE_PAIRS);
    vec![
        ("setup.p50_ms".into(), percentile_ms(&runs, 0.50), "ms"),
        ("setup.p99_ms".into(), percentile_ms(&runs, 0.99), "ms"),
        ("setup.failed_runs".into(), failed as f64, "runs"),
        (
            "setup.sim_5pct_loss_p50_ms".into(),
            percentile_ms(&sim_runs, 0.50),
            "ms",
        ),
        (
            "setup.sim_5pct_loss_p95_ms".into(),
            percentile_ms(&sim_runs, 0.95),
            "ms",
        ),
        ("setup.sim_failed_runs".into(), sim_failed as f64, "runs"),
        (
            "peer.idle_bytes".into(),
            live_idle.unwrap_or(f64::NAN),
            "bytes",
        ),
        (
            "peer.idle_bytes_machine".into(),
            idle.unwrap_or(f64::NAN),
            "bytes",
        ),
    ]
}

// ---- a data channel on loopback, the user's path ---------------------

/// `bufferedAmount` above which the benchmark's sender pauses.
pub const HIGH_WATER: usize = 1 << 20;
/// `bufferedAmountLowThreshold`: the sender resumes when the
/// buffered-amount-low event fires.
pub const LOW_WATER: usize = 512 << 10;

/// What one [`datachannel_on_loopback`] transfer measured.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    /// Megabytes (10^6) of messages delivered per wall-clock second, from
    /// the channel opening on the receiver to its last byte.
    pub mb_per_s: f64,
    /// Those wall-clock seconds.
    pub wall: f64,
    /// CPU seconds the sending peer's thread used over the transfer.
    pub sender_cpu: f64,
    /// CPU seconds the receiving peer's thread used.
    pub receiver_cpu: f64,
}

/// Signaling between the benchmark's two threads.
enum Signal {
    Sdp(String),
    Candidate(String),
    EndOfCandidates,
    /// The receiver has everything: (bytes, wall seconds, its CPU seconds).
    Done(u64, f64, f64),
}

type Tx = tokio::sync::mpsc::UnboundedSender<Signal>;
type Rx = tokio::sync::mpsc::UnboundedReceiver<Signal>;

fn string_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Trickle and end-of-candidates from our peer's event to the other side.
fn signal_event(e: &peer::Event, to: &Tx) -> Result<(), String> {
    match e {
        peer::Event::LocalCandidate(c) => {
            let _ = to.send(Signal::Candidate(c.to_string()));
        }
        peer::Event::GatheringComplete => {
            let _ = to.send(Signal::EndOfCandidates);
        }
        peer::Event::Error(e) => return Err(e.to_string()),
        _ => {}
    }
    Ok(())
}

/// The sending side: opens the channel, offers, and keeps `bufferedAmount`
/// between [`LOW_WATER`] and [`HIGH_WATER`] as a browser application would
/// (pause above the high mark, resume on `bufferedamountlow`). Returns its
/// CPU seconds and what the receiver reported.
async fn live_sender(
    to: Tx,
    mut from: Rx,
    count: u64,
    size: usize,
) -> Result<(f64, (u64, f64, f64)), String> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let config = crate::runtime::LivePeer::config().map_err(string_err)?;
    let mut a = crate::runtime::LivePeer::bind(config, loopback)
        .await
        .map_err(string_err)?;
    let ch = a
        .create_data_channel(ChannelInit::new("bulk"))
        .map_err(string_err)?;
    let _ = to.send(Signal::Sdp(a.offer().map_err(string_err)?));
    let msg = vec![0x5a; size];
    let (mut open, mut paused, mut sent) = (false, false, 0u64);
    let mut cpu = None;
    loop {
        while open && !paused && sent < count {
            let buffered = a
                .connection()
                .data_channels()
                .map_or(0, |d| d.buffered_amount(ch));
            if buffered > HIGH_WATER {
                paused = true;
                break;
            }
            a.send_binary(ch, &msg).map_err(string_err)?;
            sent += 1;
        }
        tokio::select! {
            e = a.next_event() => {
                let e = e.map_err(string_err)?;
                signal_event(&e, &to)?;
                match e {
                    peer::Event::DataChannel(DcEvent::Open(id)) if id == ch => {
                        open = true;
                        a.connection_mut().set_buffered_amount_low_threshold(ch, LOW_WATER);
                        cpu = Some(cpu_time::ThreadTime::now());
                    }
                    peer::Event::DataChannel(DcEvent::BufferedAmountLow(id)) if id == ch => {
                        paused = false;
                    }
                    _ => {}
                }
            }
            m = from.recv() => match m {
                Some(Signal::Sdp(answer)) => a.accept_answer(&answer).map_err(string_err)?,
                Some(Signal::Candidate(c)) => a.add_ice_candidate(&c).map_err(string_err)?,
                Some(Signal::EndOfCandidates) => a.add_end_of_candidates(),
                Some(Signal::Done(bytes, wall, cpu_b)) => {
                    let cpu = cpu.map_or(0.0, |c| c.elapsed().as_secs_f64());
                    a.close().await;
                    return Ok((cpu, (bytes, wall, cpu_b)));
                }
                None => return Err("the receiver stopped".into()),
            }
        }
    }
}

/// The receiving side: answers, counts message bytes until `total`, then
/// reports.
async fn live_receiver(to: Tx, mut from: Rx, total: u64) -> Result<(), String> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let config = crate::runtime::LivePeer::config().map_err(string_err)?;
    let mut b = crate::runtime::LivePeer::bind(config, loopback)
        .await
        .map_err(string_err)?;
    let mut got = 0u64;
    let mut start = None;
    loop {
        tokio::select! {
            e = b.next_event() => {
                let e = e.map_err(string_err)?;
                signal_event(&e, &to)?;
                match e {
                    peer::Event::DataChannel(DcEvent::Open(_)) => {
                        start = Some((Instant::now(), cpu_time::ThreadTime::now()));
                    }
                    peer::Event::DataChannel(DcEvent::Message { message, .. }) => {
                        got += message.len() as u64;
                        if got >= total {
                            let (wall, cpu) = start.map_or((f64::NAN, 0.0), |(t, c)| {
                                (t.elapsed().as_secs_f64(), c.elapsed().as_secs_f64())
                            });
                            // Let the last SACKs out.
                            b.flush().await.map_err(string_err)?;
                            let _ = to.send(Signal::Done(got, wall, cpu));
                            return Ok(());
                        }
                    }
                    _ => {}
                }
            }
            m = from.recv() => match m {
                Some(Signal::Sdp(offer)) => {
                    let answer = b.answer(&offer).map_err(string_err)?;
                    let _ = to.send(Signal::Sdp(answer));
                }
                Some(Signal::Candidate(c)) => b.add_ice_candidate(&c).map_err(string_err)?,
                Some(Signal::EndOfCandidates) => b.add_end_of_candidates(),
                Some(Signal::Done(..)) => {}
                None => return Err("the sender stopped".into()),
            }
        }
    }
}

/// Runs `f` on this thread's own tokio runtime, for at most two minutes.
fn block_on<T>(f: impl std::future::Future<Output = Result<T, String>>) -> Result<T, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(string_err)?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), f)
            .await
            .map_err(|_| "the transfer timed out".to_string())?
    })
}

/// `bytes` in messages of `size` bytes on one reliable ordered data
/// channel between two [`LivePeer`](crate::runtime::LivePeer)s on loopback, each on
/// its own thread and tokio runtime: the path an application takes
/// (`PeerConnection`, its transport, the runtime's driver), with
/// `bufferedAmount` flow control ([`HIGH_WATER`], [`LOW_WATER`]).
pub fn datachannel_on_loopback(bytes: u64, size: usize) -> Result<Transfer, String> {
    let count = bytes.div_ceil(size as u64);
    let total = count * size as u64;
    let (to_b, from_a) = tokio::sync::mpsc::unbounded_channel();
    let (to_a, from_b) = tokio::sync::mpsc::unbounded_channel();
    std::thread::scope(|s| {
        let receiver = s.spawn(|| block_on(live_receiver(to_a, from_a, total)));
        let sender = s.spawn(|| block_on(live_sender(to_b, from_b, count, size)));
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

// ---- set-up in the simulator ------------------------------------------

/// Peers idle-measured by `peer.idle_bytes`.
const IDLE_PEERS: usize = 1000;

fn certificate(rng: &mut StdRng) -> Option<Certificate> {
    Certificate::generate(rng, SystemTime::now()).ok()
}

/// An offerer and an answerer with one data channel (and, with `video`, a
/// VP8 track each), offer and answer applied at `now` (trickle follows).
fn offer_answer(
    seed: u64,
    now: Instant,
    addrs: [SocketAddr; 2],
    video: bool,
) -> Option<(
    PeerConnection,
    PeerConnection,
    crate::datachannel::ChannelId,
)> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut a = PeerConnection::new(
        peer::Config::new(certificate(&mut rng)?, vec![addrs[0]]),
        StdRng::seed_from_u64(rng.random()),
    );
    let mut b = PeerConnection::new(
        peer::Config::new(certificate(&mut rng)?, vec![addrs[1]]),
        StdRng::seed_from_u64(rng.random()),
    );
    let ch = a.create_data_channel(ChannelInit::new("speed")).ok()?;
    if video {
        a.add_track_with_codec(crate::peer::TrackCodec::Vp8).ok()?;
        b.add_track_with_codec(crate::peer::TrackCodec::Vp8).ok()?;
    }
    let offer = a.create_offer(now).ok()?;
    a.set_local_description(now, SdpType::Offer, &offer).ok()?;
    b.set_remote_description(now, SdpType::Offer, &offer).ok()?;
    let answer = b.create_answer().ok()?;
    b.set_local_description(now, SdpType::Answer, &answer)
        .ok()?;
    a.set_remote_description(now, SdpType::Answer, &answer)
        .ok()?;
    Some((a, b, ch))
}

/// What a signaling step saw.
#[derive(Default)]
struct Seen {
    open: bool,
    message: bool,
    failed: bool,
}

/// What signaling does with one event of one side.
enum Act {
    /// Give the other side this candidate.
    Candidate(String),
    /// Tell the other side gathering is complete.
    EndOfCandidates,
    /// Send the first message on this side's channel.
    SendFirst,
    Nothing,
}

/// Notes what `e` means for the run and what signaling must do with it.
fn act(e: peer::Event, ch: Option<crate::datachannel::ChannelId>, seen: &mut Seen) -> Act {
    match e {
        peer::Event::LocalCandidate(c) => Act::Candidate(c.to_string()),
        peer::Event::GatheringComplete => Act::EndOfCandidates,
        peer::Event::DataChannel(DcEvent::Open(id)) => {
            seen.open = true;
            if ch == Some(id) {
                Act::SendFirst
            } else {
                Act::Nothing
            }
        }
        peer::Event::DataChannel(DcEvent::Message { .. }) => {
            seen.message = true;
            Act::Nothing
        }
        peer::Event::ConnectionState(PeerConnectionState::Failed) => {
            seen.failed = true;
            Act::Nothing
        }
        _ => Act::Nothing,
    }
}

/// Hands candidates across ("signaling", instant) and notes the events.
fn signal(
    now: Instant,
    this: &mut PeerConnection,
    other: &mut PeerConnection,
    ch: Option<crate::datachannel::ChannelId>,
    seen: &mut Seen,
) {
    while let Some(e) = this.poll_event() {
        match act(e, ch, seen) {
            Act::Candidate(c) => {
                let _ = other.add_ice_candidate(now, &c);
            }
            Act::EndOfCandidates => other.add_end_of_candidates(now),
            Act::SendFirst => {
                if let Some(ch) = ch {
                    let _ = this.send_text(now, ch, "first");
                }
            }
            Act::Nothing => {}
        }
    }
}

/// `runs` set-ups in the simulator with `loss` on the offerer's access link
/// (both ways: a datagram is lost with that probability in each direction)
/// and 5 ms per link (20 ms RTT); virtual time from `create_offer` to the
/// first message delivered. Returns those that worked and the count of
/// those that did not within 10 s.
pub fn setup_in_sim(runs: u64, loss: f64) -> (Vec<Duration>, u64) {
    let addrs: [SocketAddr; 2] = [
        SocketAddr::from(([192, 0, 2, 1], 5000)),
        SocketAddr::from(([198, 51, 100, 2], 6000)),
    ];
    let mut ok = Vec::new();
    let mut failed = 0;
    for seed in 0..runs {
        let mut sim = Sim::new(seed);
        let start = sim.now();
        let Some((a, b, ch)) = offer_answer(seed, start, addrs, false) else {
            failed += 1;
            continue;
        };
        let ha = sim.add_host(a, &addrs[..1]);
        let hb = sim.add_host(b, &addrs[1..]);
        sim.set_link(
            ha,
            LinkConfig {
                loss,
                ..LinkConfig::default()
            },
        );
        let mut seen = [Seen::default(), Seen::default()];
        let done = sim.run_for_with(Duration::from_secs(10), |sim| {
            let now = sim.now();
            for (side, (h, o)) in [(ha, hb), (hb, ha)].into_iter().enumerate() {
                for e in sim.events::<PeerConnection>(h) {
                    match act(e, (side == 0).then_some(ch), &mut seen[side]) {
                        Act::Candidate(c) => {
                            let _ = sim
                                .machine_mut::<PeerConnection>(o)
                                .add_ice_candidate(now, &c);
                        }
                        Act::EndOfCandidates => sim
                            .machine_mut::<PeerConnection>(o)
                            .add_end_of_candidates(now),
                        Act::SendFirst => {
                            let _ = sim
                                .machine_mut::<PeerConnection>(h)
                                .send_text(now, ch, "first");
                        }
                        Act::Nothing => {}
                    }
                }
            }
            seen[1].message || seen.iter().any(|s| s.failed)
        });
        if done && seen[1].message {
            ok.push(sim.now() - start);
        } else {
            failed += 1;
        }
    }
    (ok, failed)
}

// ---- idle memory ------------------------------------------------------

/// Where `peer.idle_bytes` reads the bytes live on the heap: the
/// binary's global allocator counts them (the library forbids `unsafe`, so
/// the allocator lives in `rtclab`'s `main` and registers its reader here).
static HEAP_BYTES: OnceLock<fn() -> usize> = OnceLock::new();

/// Registers the function that returns the bytes live on the heap (a
/// counting global allocator's total); `peer.idle_bytes` needs it.
pub fn set_heap_counter(live_bytes: fn() -> usize) {
    let _ = HEAP_BYTES.set(live_bytes);
}

fn heap_bytes() -> Option<usize> {
    HEAP_BYTES.get().map(|f| f())
}

/// Connects one pair directly (each datagram handed straight to the other
/// side, virtual time jumping to the next timer) until the data channel is
/// open on both sides and idle; `None` if it does not within 10 s.
fn connect_directly(seed: u64) -> Option<[PeerConnection; 2]> {
    connect_directly_with(seed, false)
}

/// [`connect_directly`], with a VP8 track each when `video`.
fn connect_directly_with(seed: u64, video: bool) -> Option<[PeerConnection; 2]> {
    let addrs: [SocketAddr; 2] = [
        SocketAddr::from(([10, 0, (seed >> 8) as u8, seed as u8], 5000)),
        SocketAddr::from(([10, 1, (seed >> 8) as u8, seed as u8], 6000)),
    ];
    let start = Instant::now();
    let (a, b, ch) = offer_answer(seed, start, addrs, video)?;
    let mut peers = [a, b];
    let mut seen = [Seen::default(), Seen::default()];
    let mut now = start;
    let deadline = start + Duration::from_secs(10);
    while now < deadline {
        let mut moved = false;
        for side in 0..2 {
            let [x, y] = &mut peers;
            let (this, other) = if side == 0 { (x, y) } else { (y, x) };
            while let Some(t) = this.poll_transmit() {
                moved = true;
                other.handle_receive(
                    now,
                    Receive {
                        source: t.source.unwrap_or(addrs[side]),
                        destination: t.destination,
                        contents: &t.contents,
                    },
                );
            }
            signal(now, this, other, (side == 0).then_some(ch), &mut seen[side]);
        }
        if seen.iter().all(|s| s.open) && seen[1].message {
            // Let the last SACKs and acknowledgements settle.
            for p in &mut peers {
                while p.poll_transmit().is_some() {}
                while p.poll_event().is_some() {}
            }
            return Some(peers);
        }
        if seen.iter().any(|s| s.failed) {
            return None;
        }
        if !moved {
            let next = peers.iter().filter_map(|p| p.poll_timeout()).min()?;
            now = now.max(next);
            for p in &mut peers {
                if p.poll_timeout().is_some_and(|t| t <= now) {
                    p.handle_timeout(now);
                }
            }
        }
    }
    None
}

/// Connected pairs of live peers measured by `peer.idle_bytes`.
const LIVE_IDLE_PAIRS: usize = 100;

/// How long a live pair runs after its first message before it counts as
/// idle: the last SACKs (delayed up to 200 ms, RFC 9260 §6.2) and DCEP
/// acknowledgements have flowed, and the drivers have been quiet long
/// enough to release their buffers (100 ms, see [`crate::runtime`]).
const SETTLE: Duration = Duration::from_millis(500);

/// One pair of [`LivePeer`](crate::runtime::LivePeer)s on loopback, connected with
/// a data channel open and one message delivered, then run for
/// [`SETTLE`].
async fn live_pair() -> Result<(crate::runtime::LivePeer, crate::runtime::LivePeer), String> {
    let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
    let bind = || async {
        let config = crate::runtime::LivePeer::config().map_err(string_err)?;
        crate::runtime::LivePeer::bind(config, loopback)
            .await
            .map_err(string_err)
    };
    let (mut a, mut b) = (bind().await?, bind().await?);
    let ch = a
        .create_data_channel(ChannelInit::new("idle"))
        .map_err(string_err)?;
    let offer = a.offer().map_err(string_err)?;
    let answer = b.answer(&offer).map_err(string_err)?;
    a.accept_answer(&answer).map_err(string_err)?;
    let mut delivered = false;
    let mut settled_at = None;
    loop {
        let settle = async {
            match settled_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            e = a.next_event() => match e.map_err(string_err)? {
                peer::Event::LocalCandidate(c) => b.add_ice_candidate(&c.to_string()).map_err(string_err)?,
                peer::Event::GatheringComplete => b.add_end_of_candidates(),
                peer::Event::DataChannel(DcEvent::Open(id)) if id == ch => a.send_text(ch, "first").map_err(string_err)?,
                peer::Event::Error(e) => return Err(e.to_string()),
                _ => {}
            },
            e = b.next_event() => match e.map_err(string_err)? {
                peer::Event::LocalCandidate(c) => a.add_ice_candidate(&c.to_string()).map_err(string_err)?,
                peer::Event::GatheringComplete => a.add_end_of_candidates(),
                peer::Event::DataChannel(DcEvent::Message { .. }) if !delivered => {
                    delivered = true;
                    settled_at = Some(tokio::time::Instant::now() + SETTLE);
                }
                peer::Event::Error(e) => return Err(e.to_string()),
                _ => {}
            },
            _ = settle => return Ok((a, b)),
        }
    }
}

/// Heap bytes per idle connected [`LivePeer`](crate::runtime::LivePeer), driver
/// included, over `pairs` pairs set up 20 at a time on one tokio runtime
/// (which stays up, holding their sockets' registrations, while counted);
/// `None` without a heap counter or if a pair fails.
pub fn live_idle_bytes_per_peer(pairs: usize) -> Option<f64> {
    HEAP_BYTES.get()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            // One pair first, so that the runtime's lazily made parts
            // (timer wheel, I/O slabs) are not counted.
            let warm = rt.block_on(live_pair()).ok()?;
            let before = heap_bytes()?;
            // Counted: the peers' own bytes (a `LivePeer` is 13 KB inline).
            let mut all = Vec::with_capacity(pairs);
            rt.block_on(async {
                let mut tries = 0;
                while all.len() < pairs && tries < 2 * pairs {
                    // Twenty at a time in this task (not spawned: a
                    // finished task's cell, which holds the pair's future,
                    // would be counted).
                    let n = (pairs - all.len()).min(20);
                    tries += n;
                    let mut running: Vec<Option<std::pin::Pin<Box<_>>>> =
                        (0..n).map(|_| Some(Box::pin(live_pair()))).collect();
                    std::future::poll_fn(|cx| {
                        for slot in &mut running {
                            if let Some(f) = slot
                                && let std::task::Poll::Ready(r) = f.as_mut().poll(cx)
                            {
                                match r {
                                    Ok(pair) => all.push(pair),
                                    Err(e) => eprintln!("note: idle pair failed: {e}"),
                                }
                                *slot = None;
                            }
                        }
                        if running.iter().all(Option::is_none) {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    })
                    .await;
                }
            });
            let after = heap_bytes()?;
            let n = all.len() * 2;
            drop(all);
            drop(warm);
            Some(after.saturating_sub(before) as f64 / n.max(1) as f64)
        })
        .join()
        .ok()
        .flatten()
    })
}

/// Heap bytes per idle connected peer over `peers` peers (`peers / 2`
/// pairs), or `None` without a heap counter ([`set_heap_counter`]).
pub fn idle_bytes_per_peer(peers: usize) -> Option<f64> {
    let before = heap_bytes()?;
    // One slot per pair: each holds two peers inline (a `PeerConnection`
    // is 13 KB before its heap), counted once.
    let mut all = Vec::with_capacity(peers / 2);
    for seed in 0..(peers / 2) as u64 {
        all.push(connect_directly(seed + 1)?);
    }
    let after = heap_bytes()?;
    let n = all.len() * 2;
    drop(all);
    Some(after.saturating_sub(before) as f64 / n.max(1) as f64)
}

/// Frames per media measurement (3 packets each).
const MEDIA_FRAMES: u32 = 3000;

/// `rtclab speed media`: CPU per RTP packet through `PeerConnection`, on
/// two peers connected back to back in memory (no sockets): sending (a
/// 3000-byte VP8 frame in 3 packets: packetize, RTP header with mid and
/// transport-cc, RTX history, SRTP, drained with `poll_transmit_into`),
/// receiving (SRTP, routing, statistics, NACK state, frame assembly, the
/// frame event), and forwarding in RTP mode (receive, hand up, rewrite and
/// send on the other peer's track). The thread's CPU time over
/// 3000 frames; timers are not run.
pub fn media() -> Vec<(String, f64, &'static str)> {
    let Some([mut a, mut b]) = connect_directly_with(7, true) else {
        return vec![("media.failed".into(), 1.0, "runs")];
    };
    let (ta, tb) = (crate::peer::TrackId(0), crate::peer::TrackId(0));
    let Some(mid) = a.track_mid(ta).map(str::to_string) else {
        return vec![("media.failed".into(), 1.0, "runs")];
    };
    let frame = vec![0x10u8; 3000];
    let mut now = Instant::now() + Duration::from_secs(20);
    let send = |a: &mut PeerConnection, first: u32, now: &mut Instant| {
        let mut datagrams = Vec::with_capacity(3 * MEDIA_FRAMES as usize);
        let mut buf = Vec::with_capacity(1500);
        let t = cpu_time::ThreadTime::now();
        for i in first..first + MEDIA_FRAMES {
            *now += Duration::from_millis(33);
            let _ = a.send_frame(*now, ta, 3000 * i, &frame);
            while {
                buf.clear();
                a.poll_transmit_into(&mut buf).is_some()
            } {
                datagrams.push(buf.clone());
            }
        }
        let cpu = t.elapsed();
        (cpu, datagrams)
    };
    let deliver = |b: &mut PeerConnection, datagrams: &[Vec<u8>], now: Instant| {
        for d in datagrams {
            b.handle_receive(
                now,
                Receive {
                    source: SocketAddr::from(([10, 0, 0, 7], 5000)),
                    destination: SocketAddr::from(([10, 1, 0, 7], 6000)),
                    contents: d,
                },
            );
        }
    };
    // Sending (the copy into `datagrams` is the measurement's own cost).
    let (send_cpu, datagrams) = send(&mut a, 1, &mut now);
    let packets = datagrams.len().max(1) as f64;
    // Receiving frames.
    let t = cpu_time::ThreadTime::now();
    let mut frames = 0u64;
    for chunk in datagrams.chunks(3) {
        deliver(&mut b, chunk, now);
        while let Some(e) = b.poll_event() {
            frames += u64::from(matches!(e, peer::Event::Frame { .. }));
        }
        while b.poll_transmit().is_some() {}
    }
    let receive_cpu = t.elapsed();
    // Forwarding in RTP mode: B sends each packet back on its own track.
    let _ = b.set_rtp_mode(&mid, true);
    let (_, datagrams) = send(&mut a, 1 + MEDIA_FRAMES, &mut now);
    let mut out = Vec::with_capacity(1500);
    let t = cpu_time::ThreadTime::now();
    let mut forwarded = 0u64;
    for chunk in datagrams.chunks(3) {
        deliver(&mut b, chunk, now);
        while let Some(e) = b.poll_event() {
            if let peer::Event::Rtp { packet, .. } = e {
                forwarded += u64::from(b.send_rtp(now, tb, &packet).is_ok());
                b.recycle_rtp(packet);
            }
        }
        while {
            out.clear();
            b.poll_transmit_into(&mut out).is_some()
        } {}
    }
    let forward_cpu = t.elapsed();
    let ns = |d: Duration, n: f64| d.as_nanos() as f64 / n.max(1.0);
    vec![
        (
            "media.send_ns_per_packet".into(),
            ns(send_cpu, packets),
            "ns",
        ),
        (
            "media.receive_ns_per_packet".into(),
            ns(receive_cpu, packets),
            "ns",
        ),
        ("media.frames_received".into(), frames as f64, "frames"),
        (
            "media.forward_ns_per_packet".into(),
            ns(forward_cpu, forwarded as f64),
            "ns",
        ),
        ("media.forwarded".into(), forwarded as f64, "packets"),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn sets_up_in_the_simulator_with_loss() {
        let (ok, failed) = super::setup_in_sim(3, 0.05);
        assert_eq!((ok.len(), failed), (3, 0));
        assert!(ok.iter().all(|d| *d < std::time::Duration::from_secs(10)));
    }

    #[test]
    fn connects_a_pair_directly() {
        let pair = super::connect_directly(1).expect("connected");
        for p in &pair {
            assert_eq!(
                p.connection_state(),
                crate::peer::PeerConnectionState::Connected
            );
        }
        // Without a heap counter registered there is no figure.
        assert_eq!(super::idle_bytes_per_peer(2), None);
    }

    #[test]
    fn moves_data_channel_bytes_between_live_peers() {
        let t = super::datachannel_on_loopback(3_000_000, 16 * 1024).expect("transfer");
        assert!(t.mb_per_s > 0.0 && t.wall > 0.0, "{t:?}");
        eprintln!("{t:?}");
    }

    #[test]
    fn sets_up_over_real_loopback_udp() {
        let (ok, failed) = super::setup_on_loopback(2);
        assert_eq!(failed, 0);
        assert!(ok.iter().all(|d| *d < std::time::Duration::from_secs(5)));
    }

    #[test]
    fn media_figures_see_every_frame_and_forward_every_packet() {
        let f = super::media();
        let get = |name: &str| f.iter().find(|(n, _, _)| n == name).map(|(_, v, _)| *v);
        assert_eq!(
            get("media.frames_received"),
            Some(f64::from(super::MEDIA_FRAMES))
        );
        assert_eq!(
            get("media.forwarded"),
            Some(f64::from(3 * super::MEDIA_FRAMES))
        );
    }
}
