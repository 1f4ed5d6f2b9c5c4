//! Chapter 9: a photo over a data channel, the way codelab step 9 sends
//! one: first the size as a text message, then the pixels (RGBA, 4 bytes
//! a pixel) in binary pieces of at most 64,000 bytes.
//!
//! Part 1 shows why the pieces: the whole photo is bigger than the
//! `a=max-message-size` both sides announced, and `send` refuses it.
//!
//! Part 2 sends a 50×50 thumbnail (10,000 bytes) between two data-channel
//! [`Connection`]s over a hand-made wire (10 ms each way) that loses one
//! packet on purpose, and prints every SCTP chunk: the message cut into
//! DATA chunks (TSN, B and E flags), SACKs with gap blocks and a shrinking
//! receive window, the fast retransmission, the reassembly, and the
//! sender's `buffered_amount` with its `BufferedAmountLow` event.
//!
//! Part 3 sends the 320×240 photo (307,200 bytes) in the simulator over a
//! lossy 8 Mbit/s path, paced by `buffered_amount` as a careful page does,
//! and prints a timeline of the sender's buffer, congestion window and
//! flight, then the totals and the photo's hash on both sides.
//!
//! In a real peer connection these SCTP packets travel inside DTLS records
//! (chapter 6); here they are the UDP payloads themselves, so that every
//! chunk can be decoded. Everything runs at virtual time from fixed seeds,
//! so every run prints the same.
//!
//! Run it with `cargo run --example 09_photo`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::collections::VecDeque;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelId, ChannelInit, Connection, ConnectionConfig, Event, Message};
use rtclab::dtls::endpoint::Role;
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::sctp::chunk::{FLAG_BEGIN, FLAG_END, FLAG_UNORDERED};
use rtclab::sctp::{Chunk, Packet};
use rtclab::sim::{LinkConfig, Sim};

/// The codelab's piece size.
const PIECE: usize = 64_000;

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// All three parts, printed to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    thumbnail(out)?;
    photo(out, 0.02, true)?;
    photo(out, 0.0, true)
}

// ANCHOR: snapshot
/// A generated "camera snapshot": `width`×`height` RGBA pixels, the layout
/// of a canvas's `getImageData()`. A colour gradient with a checker
/// pattern, so that it is the same on every run.
fn snapshot(width: usize, height: usize) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(width * height * 4);
    for y in 0..height {
        for x in 0..width {
            let checker = if (x / 16 + y / 16) % 2 == 0 { 40 } else { 0 };
            pixels.extend_from_slice(&[
                (x * 255 / width) as u8,
                (y * 255 / height) as u8,
                (128 + checker) as u8,
                255,
            ]);
        }
    }
    pixels
}
// ANCHOR_END: snapshot

/// The first 8 bytes of a SHA-256, in hex: enough to tell two photos apart.
fn short_hash(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn flags(f: u8) -> String {
    format!(
        "{}{}{}",
        if f & FLAG_BEGIN != 0 { 'B' } else { '-' },
        if f & FLAG_END != 0 { 'E' } else { '-' },
        if f & FLAG_UNORDERED != 0 { "U" } else { "" },
    )
}

// ANCHOR: describe
/// One line per chunk of an SCTP packet; TSNs are shown relative to
/// `base` (the sender's first TSN of interest) as `base+n`.
fn describe(packet: &[u8], base: u32) -> Vec<String> {
    let packet = match Packet::parse(packet) {
        Ok(p) => p,
        Err(e) => return vec![format!("undecodable: {e}")],
    };
    let rel = |tsn: u32| format!("#{}", tsn.wrapping_sub(base) as i32);
    packet
        .chunks
        .iter()
        .map(|chunk| match chunk {
            Chunk::Data(d) => {
                let what = match d.ppid {
                    51 => format!("text {:?}", String::from_utf8_lossy(d.payload)),
                    53 => format!("binary {} bytes", d.payload.len()),
                    50 => "DCEP".to_string(),
                    p => format!("PPID {p}"),
                };
                format!(
                    "DATA {} {} stream {} SSN {} PPID {} {what}",
                    rel(d.tsn),
                    flags(d.flags),
                    d.stream,
                    d.ssn,
                    d.ppid
                )
            }
            Chunk::Sack(s) => {
                let gaps: Vec<String> = s
                    .gaps
                    .iter()
                    .map(|g| {
                        let from = s.cum_tsn_ack.wrapping_add(u32::from(g.start));
                        let to = s.cum_tsn_ack.wrapping_add(u32::from(g.end));
                        if from == to {
                            rel(from)
                        } else {
                            format!("{}..{}", rel(from), rel(to))
                        }
                    })
                    .collect();
                format!(
                    "SACK cum {} a_rwnd {}{}{}",
                    rel(s.cum_tsn_ack),
                    s.a_rwnd,
                    if gaps.is_empty() {
                        String::new()
                    } else {
                        format!(" gap blocks [{}]", gaps.join(", "))
                    },
                    if s.dups.is_empty() {
                        String::new()
                    } else {
                        format!(" {} duplicates", s.dups.len())
                    }
                )
            }
            Chunk::Init(_) => "INIT".to_string(),
            Chunk::InitAck(_) => "INIT ACK".to_string(),
            Chunk::CookieEcho(_) => "COOKIE ECHO".to_string(),
            Chunk::CookieAck => "COOKIE ACK".to_string(),
            other => format!("{other:?}"),
        })
        .collect()
}
// ANCHOR_END: describe

/// The first DATA chunk's TSN in an SCTP packet, if any.
fn first_data(packet: &[u8]) -> Option<(u32, u32)> {
    let p = Packet::parse(packet).ok()?;
    p.chunks.iter().find_map(|c| match c {
        Chunk::Data(d) => Some((d.tsn, d.ppid)),
        _ => None,
    })
}

/// Two connections and a hand-made wire: 10 ms each way, and one packet
/// from A to B lost on purpose.
struct Wire {
    start: Instant,
    now: Instant,
    a: Connection,
    b: Connection,
    /// (arrival time, to B?, packet)
    wire: VecDeque<(Instant, bool, Vec<u8>)>,
    /// Lose A's n-th packet with DATA (counted from 1 once `verbose` is on).
    drop_nth: Option<usize>,
    /// A's packets with DATA so far (while `verbose`).
    data_packets: usize,
    /// TSNs print relative to this one: the first DATA chunk shown.
    base: Option<u32>,
    /// Print packets and events (off during the handshake).
    verbose: bool,
    /// The reassembled messages B received.
    got: Vec<Message>,
}

impl Wire {
    fn run_until(&mut self, until: Duration, out: &mut dyn Write) -> std::io::Result<()> {
        let deadline = self.start + until;
        loop {
            let t = (self.now - self.start).as_millis();
            for to_b in [true, false] {
                loop {
                    let conn = if to_b { &mut self.a } else { &mut self.b };
                    let Some(p) = conn.poll_transmit() else {
                        break;
                    };
                    let arrow = if to_b { "A → B" } else { "A ← B" };
                    let mut lost = false;
                    if let (true, true, Some((tsn, _))) = (to_b, self.verbose, first_data(&p)) {
                        self.base.get_or_insert(tsn);
                        self.data_packets += 1;
                        lost = Some(self.data_packets) == self.drop_nth;
                    }
                    if self.verbose {
                        for line in describe(&p, self.base.unwrap_or(0)) {
                            let mark = if lost { "   ✗ lost" } else { "" };
                            writeln!(out, "t={t:>3} ms  {arrow}  {line}{mark}")?;
                        }
                    }
                    if !lost {
                        self.wire
                            .push_back((self.now + Duration::from_millis(10), to_b, p));
                    }
                }
            }
            self.print_events(out, t)?;
            let next = [
                self.wire.front().map(|w| w.0),
                self.a.poll_timeout(),
                self.b.poll_timeout(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|n| *n <= deadline) else {
                self.now = deadline;
                return Ok(());
            };
            self.now = next.max(self.now);
            while self.wire.front().is_some_and(|w| w.0 <= self.now) {
                let Some((_, to_b, p)) = self.wire.pop_front() else {
                    break;
                };
                let conn = if to_b { &mut self.b } else { &mut self.a };
                conn.handle_packet(self.now, &p);
            }
            for conn in [&mut self.a, &mut self.b] {
                if conn.poll_timeout().is_some_and(|t| t <= self.now) {
                    conn.handle_timeout(self.now);
                }
            }
        }
    }

    fn print_events(&mut self, out: &mut dyn Write, t: u128) -> std::io::Result<()> {
        while let Some(e) = self.a.poll_event() {
            if let (Event::BufferedAmountLow(id), true) = (&e, self.verbose) {
                let left = self.a.buffered_amount(*id);
                writeln!(
                    out,
                    "t={t:>3} ms  A event: BufferedAmountLow (buffered_amount {left})"
                )?;
            }
        }
        while let Some(e) = self.b.poll_event() {
            if let Event::Message { message, .. } = e {
                if self.verbose {
                    let what = match &message {
                        Message::Text(s) => format!("text {s:?}"),
                        Message::Binary(b) => {
                            format!("binary, {} bytes, sha-256 {}…", b.len(), short_hash(b))
                        }
                    };
                    writeln!(out, "t={t:>3} ms  B event: message: {what}")?;
                }
                self.got.push(message);
            }
        }
        Ok(())
    }
}

fn thumbnail(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let start = Instant::now();
    let mut a = Connection::new(
        ConnectionConfig::new(Role::Client),
        StdRng::seed_from_u64(91),
    );
    let b = Connection::new(
        ConnectionConfig::new(Role::Server),
        StdRng::seed_from_u64(92),
    );
    let chan = a.create_channel(ChannelInit::new("photo"))?;
    let mut w = Wire {
        start,
        now: start,
        a,
        b,
        wire: VecDeque::new(),
        drop_nth: None,
        data_packets: 0,
        base: None,
        verbose: false,
        got: Vec::new(),
    };
    w.a.start(start);
    w.b.start(start);
    // The handshake and the channel's OPEN/ACK, quietly (chapter 6 shows them).
    w.run_until(Duration::from_millis(300), out)?;
    w.got.clear();

    writeln!(out, "== part 1: one message or many? ==")?;
    let photo = snapshot(320, 240);
    writeln!(
        out,
        "photo: 320×240 RGBA = {} bytes, sha-256 {}…",
        photo.len(),
        short_hash(&photo)
    )?;
    // ANCHOR: too_big
    writeln!(
        out,
        "largest message the peer takes (its a=max-message-size): {} bytes",
        w.a.max_message_size()
    )?;
    let now = w.now;
    if let Err(e) = w.a.send_binary(now, chan, &photo) {
        writeln!(out, "send_binary(the whole photo): error: {e}")?;
    }
    // ANCHOR_END: too_big
    let pieces: Vec<usize> = photo.chunks(PIECE).map(<[u8]>::len).collect();
    writeln!(
        out,
        "so, as the codelab does: the size as text (\"{}\"), then {} binary pieces of {:?} bytes",
        photo.len(),
        pieces.len(),
        pieces
    )?;

    writeln!(out)?;
    writeln!(
        out,
        "== part 2: a 50×50 thumbnail, chunk by chunk (10 ms each way; one packet lost) =="
    )?;
    let thumb = snapshot(50, 50);
    // ANCHOR: send_photo
    // The codelab's sendPhoto(): the size first, as text, then the pixels
    // in pieces of at most 64,000 bytes.
    let now = w.now;
    w.a.send_text(now, chan, &thumb.len().to_string())?;
    for piece in thumb.chunks(PIECE) {
        w.a.send_binary(now, chan, piece)?;
    }
    // ANCHOR_END: send_photo
    // TSN #0 is the size message, #1 to #9 the thumbnail's chunks; the
    // packet carrying #3 is lost.
    w.drop_nth = Some(4);
    w.verbose = true;
    let t = (w.now - start).as_millis();
    writeln!(
        out,
        "t={t:>3} ms  A: send_text(\"{}\") + send_binary({} bytes); buffered_amount {}, cwnd {}, RTO {} ms",
        thumb.len(),
        thumb.len(),
        w.a.buffered_amount(chan),
        w.a.association().cwnd(),
        w.a.association().rto().as_millis()
    )?;
    w.run_until(Duration::from_millis(800), out)?;
    let got: Vec<u8> = w
        .got
        .iter()
        .filter_map(|m| match m {
            Message::Binary(b) => Some(b.clone()),
            Message::Text(_) => None,
        })
        .flatten()
        .collect();
    let stats = &w.a.association().stats;
    writeln!(
        out,
        "A sent {} DATA chunks, retransmitted {} ({} fast retransmit, {} timeouts); \
         thumbnail intact: {}",
        stats.sent_chunks,
        stats.retransmitted_chunks,
        stats.fast_retransmits,
        stats.timeouts,
        got == thumb
    )?;
    Ok(())
}

/// A data-channel [`Connection`] as a simulated host, counting what its
/// SCTP packets carry.
struct Peer {
    conn: Connection,
    remote: SocketAddr,
    sacks: u64,
    sacks_with_gaps: u64,
    smallest_a_rwnd: u32,
}

impl Peer {
    fn new(role: Role, seed: u64, remote: SocketAddr) -> Peer {
        Peer {
            conn: Connection::new(ConnectionConfig::new(role), StdRng::seed_from_u64(seed)),
            remote,
            sacks: 0,
            sacks_with_gaps: 0,
            smallest_a_rwnd: u32::MAX,
        }
    }
}

impl Machine for Peer {
    type Event = Event;
    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.conn.handle_packet(now, d.contents);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.conn.handle_timeout(now);
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        let contents = self.conn.poll_transmit()?;
        if let Ok(p) = Packet::parse(&contents) {
            for c in &p.chunks {
                if let Chunk::Sack(s) = c {
                    self.sacks += 1;
                    self.sacks_with_gaps += u64::from(!s.gaps.is_empty());
                    self.smallest_a_rwnd = self.smallest_a_rwnd.min(s.a_rwnd);
                }
            }
        }
        Some(Transmit {
            source: None,
            destination: self.remote,
            contents,
        })
    }
    fn poll_event(&mut self) -> Option<Event> {
        self.conn.poll_event()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout()
    }
}

// ANCHOR: receive
/// The codelab's receiving page: the first (text) message says how many
/// bytes follow; binary pieces are appended until all are in.
#[derive(Default)]
struct Receiver {
    expected: Option<usize>,
    received: Vec<u8>,
}

impl Receiver {
    /// Takes one message; returns the size of a piece of the photo.
    fn on_message(&mut self, message: Message) -> Option<usize> {
        match message {
            Message::Text(size) => {
                self.expected = size.parse().ok();
                self.received.clear();
                None
            }
            Message::Binary(piece) => {
                self.received.extend_from_slice(&piece);
                Some(piece.len())
            }
        }
    }

    /// True once every byte announced has arrived.
    fn complete(&self) -> bool {
        self.expected == Some(self.received.len())
    }
}
// ANCHOR_END: receive

/// The sending page: what is left to send, and how much it keeps queued.
struct Sender {
    chan: ChannelId,
    pieces: VecDeque<Vec<u8>>,
    sent: usize,
}

impl Sender {
    // ANCHOR: pacing
    /// Queue pieces while less than two are waiting in SCTP; called at the
    /// start and on every `BufferedAmountLow` (threshold: one piece).
    fn fill(&mut self, now: Instant, conn: &mut Connection) -> Result<Vec<usize>, Box<dyn Error>> {
        let mut queued = Vec::new();
        while conn.buffered_amount(self.chan) < 2 * PIECE {
            let Some(piece) = self.pieces.pop_front() else {
                break;
            };
            conn.send_binary(now, self.chan, &piece)?;
            self.sent += 1;
            queued.push(self.sent);
        }
        Ok(queued)
    }
    // ANCHOR_END: pacing
}

/// Sends the photo over a 20 ms, 8 Mbit/s path losing `loss` of the
/// packets each way; prints the timeline when `verbose`, else the totals.
fn photo(out: &mut dyn Write, loss: f64, verbose: bool) -> Result<(), Box<dyn Error>> {
    writeln!(out)?;
    writeln!(
        out,
        "== part 3: the 320×240 photo, 20 ms each way, 8 Mbit/s, {}% loss each way ==",
        loss * 100.0
    )?;
    let (addr_a, addr_b): (SocketAddr, SocketAddr) =
        ("192.0.2.1:5000".parse()?, "198.51.100.1:5000".parse()?);
    let mut sim = Sim::new(9);
    if loss > 0.0 {
        pcap::start(&mut sim); // `--pcap FILE`: A's side of the lossy run
    }
    let a = sim.add_host(Peer::new(Role::Client, 93, addr_b), &[addr_a]);
    let b = sim.add_host(Peer::new(Role::Server, 94, addr_a), &[addr_b]);
    // ANCHOR: link
    let link = LinkConfig {
        delay: Duration::from_millis(10),
        loss, // 0.02 for the timeline
        ..LinkConfig::default()
    };
    sim.set_link(a, link.clone());
    sim.set_link(b, link.clone());
    // A's way out is the bottleneck: 8 Mbit/s with a 64 KiB queue.
    sim.set_uplink(
        a,
        LinkConfig {
            rate_bps: Some(8_000_000),
            ..link
        },
    );
    // ANCHOR_END: link
    let chan = sim
        .machine_mut::<Peer>(a)
        .conn
        .create_channel(ChannelInit::new("photo"))?;
    let now = sim.now();
    sim.machine_mut::<Peer>(a).conn.start(now);
    sim.machine_mut::<Peer>(b).conn.start(now);
    sim.run_for(Duration::from_millis(500));
    let _ = sim.events::<Peer>(a);
    let _ = sim.events::<Peer>(b);

    let photo = snapshot(320, 240);
    let mut sender = Sender {
        chan,
        pieces: photo.chunks(PIECE).map(<[u8]>::to_vec).collect(),
        sent: 0,
    };
    let t0 = sim.now();
    {
        let conn = &mut sim.machine_mut::<Peer>(a).conn;
        conn.set_buffered_amount_low_threshold(chan, PIECE);
        conn.send_text(t0, chan, &photo.len().to_string())?;
        let queued = sender.fill(t0, conn)?;
        if verbose {
            writeln!(
                out,
                "t=   0 ms  A: send size \"{}\", then pieces {queued:?}; buffered_amount {}",
                photo.len(),
                conn.buffered_amount(chan)
            )?;
        }
    }
    if verbose {
        writeln!(
            out,
            "   time   A: buffered_amount      cwnd    flight   RTO    B: bytes received"
        )?;
    }
    let mut receiver = Receiver::default();
    let mut done_at = None;
    let mut lines: Vec<String> = Vec::new();
    let mut error: Option<String> = None;
    for _ in 0..100 {
        sim.run_for_with(Duration::from_millis(100), |sim| {
            let now = sim.now();
            let t = now.duration_since(t0).as_millis();
            for e in sim.events::<Peer>(a) {
                if let Event::BufferedAmountLow(_) = e {
                    let conn = &mut sim.machine_mut::<Peer>(a).conn;
                    let left = conn.buffered_amount(chan);
                    match sender.fill(now, conn) {
                        Ok(q) if q.is_empty() => lines.push(format!(
                            "t={t:>4} ms  A event: BufferedAmountLow ({left} left); nothing more to send"
                        )),
                        Ok(q) => lines.push(format!(
                            "t={t:>4} ms  A event: BufferedAmountLow ({left} left) → send pieces {q:?}"
                        )),
                        Err(e) => error = Some(e.to_string()),
                    }
                }
            }
            for e in sim.events::<Peer>(b) {
                if let Event::Message { message, .. } = e {
                    if let Some(got) = receiver.on_message(message) {
                        lines.push(format!(
                            "t={t:>4} ms  B event: piece of {got} bytes ({} of {})",
                            receiver.received.len(),
                            receiver.expected.unwrap_or(0)
                        ));
                        if receiver.complete() && done_at.is_none() {
                            done_at = Some(now.duration_since(t0));
                        }
                    }
                }
            }
            false
        });
        for l in lines.drain(..) {
            if verbose {
                writeln!(out, "{l}")?;
            }
        }
        if let Some(e) = error.take() {
            return Err(e.into());
        }
        let t = sim.now().duration_since(t0).as_millis();
        let conn = &sim.machine::<Peer>(a).conn;
        let assoc = conn.association();
        if verbose {
            writeln!(
                out,
                "{t:>5} ms  {:>20}  {:>8}  {:>8}  {:>4}   {:>8}",
                conn.buffered_amount(chan),
                assoc.cwnd(),
                assoc.flight_size(),
                assoc.rto().as_millis(),
                receiver.received.len()
            )?;
        }
        if done_at.is_some() && conn.buffered_amount(chan) == 0 {
            break;
        }
    }
    let pa = sim.machine::<Peer>(a);
    let pb = sim.machine::<Peer>(b);
    let st = &pa.conn.association().stats;
    let net = sim.stats();
    writeln!(
        out,
        "network: {} packets sent, {} lost on the links, {} dropped by the bottleneck's full queue",
        net.sent, net.lost, net.queue_dropped
    )?;
    writeln!(
        out,
        "A: {} DATA chunks sent, {} retransmitted ({} by fast retransmit, {} timeouts)",
        st.sent_chunks, st.retransmitted_chunks, st.fast_retransmits, st.timeouts
    )?;
    writeln!(
        out,
        "B: {} SACKs, {} with gap blocks; smallest a_rwnd advertised {} bytes",
        pb.sacks, pb.sacks_with_gaps, pb.smallest_a_rwnd
    )?;
    if let Some(d) = done_at {
        writeln!(
            out,
            "photo complete after {} ms: {:.1} Mbit/s of pixels",
            d.as_millis(),
            photo.len() as f64 * 8.0 / d.as_secs_f64() / 1e6
        )?;
    }
    writeln!(
        out,
        "sha-256 sent {}…, received {}…: {}",
        short_hash(&photo),
        short_hash(&receiver.received),
        if receiver.received == photo {
            "identical"
        } else {
            "DIFFERENT"
        }
    )?;
    if loss > 0.0 {
        pcap::save(&mut sim, a, &[])?;
    }
    Ok(())
}
