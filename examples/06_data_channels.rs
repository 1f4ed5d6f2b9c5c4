//! Chapter 6: data channels, SCTP and DCEP.
//!
//! Part 1 drives two [`Connection`]s by hand (10 ms each way, no loss) and
//! prints every SCTP packet between them, decoded: the association's
//! four-way handshake, DATA_CHANNEL_OPEN and its ACK, a text and a binary
//! message with their SACKs, and the close by stream reset.
//!
//! Part 2 puts the two peers in the simulator on a lossy link (10% loss on
//! A's access link) and sends the same 100 numbered messages over four
//! channels that differ only in reliability: what arrives, and in what
//! order, on each.
//!
//! In a real peer connection these SCTP packets travel inside DTLS records;
//! here they are the UDP payloads themselves. Everything runs at virtual
//! time from fixed seeds, so every run prints the same.
//!
//! Run it with `cargo run --example 06_data_channels`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
pub mod pcap;

use std::collections::VecDeque;
use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::dcep::DcepMessage;
use rtclab::datachannel::{ChannelId, ChannelInit, Connection, ConnectionConfig, Event, Message};
use rtclab::dtls::endpoint::Role;
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::sctp::param::ReConfigParam;
use rtclab::sctp::{Chunk, Packet};
use rtclab::sim::{LinkConfig, Sim};

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Both parts, printed to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    by_hand(out)?;
    lossy(out)
}

// ANCHOR: describe
/// One line per chunk of an SCTP packet.
fn describe(packet: &[u8]) -> Vec<String> {
    let packet = match Packet::parse(packet) {
        Ok(p) => p,
        Err(e) => return vec![format!("undecodable: {e}")],
    };
    packet
        .chunks
        .iter()
        .map(|chunk| match chunk {
            Chunk::Init(i) => format!(
                "INIT (initial TSN {}, {} streams out, {} in)",
                i.initial_tsn, i.outbound_streams, i.max_inbound_streams
            ),
            Chunk::InitAck(i) => {
                format!("INIT ACK (initial TSN {}, a state cookie)", i.initial_tsn)
            }
            Chunk::CookieEcho(c) => format!("COOKIE ECHO ({} bytes of cookie)", c.len()),
            Chunk::CookieAck => "COOKIE ACK".to_string(),
            Chunk::Data(d) => {
                let what = match d.ppid {
                    50 => match DcepMessage::parse(d.payload) {
                        Ok(m) => m.to_string(),
                        Err(e) => format!("bad DCEP: {e}"),
                    },
                    51 => format!("text {:?}", String::from_utf8_lossy(d.payload)),
                    53 => format!("binary, {} bytes", d.payload.len()),
                    56 => "empty text".to_string(),
                    57 => "empty binary".to_string(),
                    p => format!("PPID {p}"),
                };
                format!(
                    "DATA TSN {} stream {} SSN {} PPID {}: {what}",
                    d.tsn, d.stream, d.ssn, d.ppid
                )
            }
            Chunk::Sack(s) => format!("SACK cumulative TSN {}", s.cum_tsn_ack),
            Chunk::ReConfig(params) => {
                let p: Vec<String> = params
                    .iter()
                    .map(|p| match p {
                        ReConfigParam::OutgoingResetRequest { streams, .. } => {
                            format!("reset my outgoing streams {streams:?}")
                        }
                        ReConfigParam::Response { result, .. } => {
                            format!(
                                "response: {}",
                                if *result == 1 {
                                    "performed"
                                } else {
                                    "not performed"
                                }
                            )
                        }
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("RE-CONFIG {}", p.join(", "))
            }
            Chunk::ForwardTsn(f) => format!("FORWARD TSN to {}", f.new_cum_tsn),
            other => format!("{other:?}"),
        })
        .collect()
}
// ANCHOR_END: describe

fn print_events(
    out: &mut dyn Write,
    t: Duration,
    who: &str,
    conn: &mut Connection,
) -> std::io::Result<()> {
    while let Some(e) = conn.poll_event() {
        let line = match &e {
            Event::Open(id) => {
                let c = conn.channel(*id);
                format!(
                    "open: channel {:?} on stream {}{}",
                    c.map_or("", |c| c.label()),
                    c.and_then(|c| c.stream()).unwrap_or(0),
                    if c.is_some_and(|c| c.is_incoming()) {
                        " (opened by the peer)"
                    } else {
                        ""
                    }
                )
            }
            Event::Message { message, .. } => match message {
                Message::Text(s) => format!("message: text {s:?}"),
                Message::Binary(b) => format!("message: binary {b:?}"),
            },
            other => format!("{other:?}"),
        };
        writeln!(out, "t={:>3} ms  {who} event: {line}", t.as_millis())?;
    }
    Ok(())
}

/// Two connections and a hand-made network: 10 ms each way, no loss.
struct ByHand {
    start: Instant,
    now: Instant,
    a: Connection,
    b: Connection,
    /// (arrival time, to B?, packet)
    wire: VecDeque<(Instant, bool, Vec<u8>)>,
}

impl ByHand {
    /// Runs until `until` (from the start), printing every packet when it
    /// is sent and every event.
    fn run_until(&mut self, until: Duration, out: &mut dyn Write) -> std::io::Result<()> {
        let deadline = self.start + until;
        loop {
            let t = self.now - self.start;
            for (to_b, conn) in [(true, &mut self.a), (false, &mut self.b)] {
                while let Some(p) = conn.poll_transmit() {
                    let arrow = if to_b { "A → B" } else { "A ← B" };
                    for line in describe(&p) {
                        writeln!(out, "t={:>3} ms  {arrow}  {line}", t.as_millis())?;
                    }
                    self.wire
                        .push_back((self.now + Duration::from_millis(10), to_b, p));
                }
            }
            print_events(out, t, "A", &mut self.a)?;
            print_events(out, t, "B", &mut self.b)?;
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
}

fn by_hand(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out, "== part 1: one channel, packet by packet ==")?;
    let start = Instant::now();
    // ANCHOR: setup
    // A is the DTLS client: it sends the INIT and opens even stream ids.
    let mut a = Connection::new(
        ConnectionConfig::new(Role::Client),
        StdRng::seed_from_u64(1),
    );
    // B, the DTLS server, opens odd ones. By default it would send an INIT
    // too, as browsers do (chapter 8 shows the collision); here it waits,
    // so that the handshake reads as RFC 9260 §5.1 draws it.
    let mut b = Connection::new(
        ConnectionConfig {
            send_init: false,
            ..ConnectionConfig::new(Role::Server)
        },
        StdRng::seed_from_u64(2),
    );
    // Like createDataChannel() before the connection is up: it opens later.
    let chat = a.create_channel(ChannelInit::new("chat"))?;
    a.start(start);
    b.start(start);
    // ANCHOR_END: setup
    let mut net = ByHand {
        start,
        now: start,
        a,
        b,
        wire: VecDeque::new(),
    };
    net.run_until(Duration::from_millis(55), out)?;
    // ANCHOR: send
    let now = net.now;
    net.a.send_text(now, chat, "hello from A")?;
    // B learnt the channel from the OPEN; it answers on the same stream.
    let Some(b_chat) = net.b.channels().next().map(|c| c.id()) else {
        return Err("B has no channel".into());
    };
    net.b.send_binary(now, b_chat, &[1, 2, 3])?;
    // ANCHOR_END: send
    net.run_until(Duration::from_millis(300), out)?;
    let now = net.now;
    net.a.close(now, chat);
    net.run_until(Duration::from_millis(550), out)?;
    Ok(())
}

/// A `Connection` as a simulated host.
struct Peer {
    conn: Connection,
    remote: SocketAddr,
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

fn lossy(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out)?;
    writeln!(
        out,
        "== part 2: four channels, 100 messages each, 10% loss on A's link =="
    )?;
    let (addr_a, addr_b): (SocketAddr, SocketAddr) =
        ("192.0.2.1:5000".parse()?, "198.51.100.1:5000".parse()?);
    let mut sim = Sim::new(6);
    let a = sim.add_host(
        Peer {
            conn: Connection::new(
                ConnectionConfig::new(Role::Client),
                StdRng::seed_from_u64(3),
            ),
            remote: addr_b,
        },
        &[addr_a],
    );
    let b = sim.add_host(
        Peer {
            conn: Connection::new(
                ConnectionConfig::new(Role::Server),
                StdRng::seed_from_u64(4),
            ),
            remote: addr_a,
        },
        &[addr_b],
    );
    pcap::start(&mut sim); // `--pcap FILE`: A's capture (SCTP over UDP, no DTLS here)
    sim.set_link(
        a,
        LinkConfig {
            loss: 0.10,
            ..LinkConfig::default()
        },
    );
    // ANCHOR: reliability
    let kinds = [
        ChannelInit::new("reliable, ordered"),
        ChannelInit {
            ordered: false,
            ..ChannelInit::new("reliable, unordered")
        },
        ChannelInit {
            ordered: false,
            max_retransmits: Some(0),
            ..ChannelInit::new("unordered, maxRetransmits 0")
        },
        ChannelInit {
            max_packet_life_time: Some(150),
            ..ChannelInit::new("ordered, maxPacketLifeTime 150 ms")
        },
    ];
    // ANCHOR_END: reliability
    let mut ids: Vec<ChannelId> = Vec::new();
    for k in kinds {
        ids.push(sim.machine_mut::<Peer>(a).conn.create_channel(k)?);
    }
    let now = sim.now();
    sim.machine_mut::<Peer>(a).conn.start(now);
    sim.machine_mut::<Peer>(b).conn.start(now);
    let mut eb: Vec<Event> = Vec::new();
    sim.run_for_with(Duration::from_secs(2), |sim| {
        eb.extend(sim.events::<Peer>(b));
        false
    });
    // Messages are numbered 0..100; one message every 20 ms on each channel.
    for n in 0..100u32 {
        let now = sim.now();
        let mut payload = n.to_be_bytes().to_vec();
        payload.resize(500, n as u8);
        for &id in &ids {
            sim.machine_mut::<Peer>(a)
                .conn
                .send_binary(now, id, &payload)?;
        }
        sim.run_for_with(Duration::from_millis(20), |sim| {
            eb.extend(sim.events::<Peer>(b));
            false
        });
    }
    sim.run_for_with(Duration::from_secs(10), |sim| {
        eb.extend(sim.events::<Peer>(b));
        false
    });
    let stats = sim.stats();
    writeln!(
        out,
        "{} SCTP packets sent (both ways), {} lost on the way",
        stats.sent, stats.lost
    )?;
    for &id in &ids {
        let stream = sim
            .machine::<Peer>(a)
            .conn
            .channel(id)
            .and_then(|c| c.stream());
        let peer = sim
            .machine::<Peer>(b)
            .conn
            .channels()
            .find(|c| c.stream() == stream);
        let (Some(peer), Some(label)) = (
            peer.map(|c| c.id()),
            sim.machine::<Peer>(a)
                .conn
                .channel(id)
                .map(|c| c.label().to_owned()),
        ) else {
            continue;
        };
        let got: Vec<u32> = eb
            .iter()
            .filter_map(|e| match e {
                Event::Message {
                    channel,
                    message: Message::Binary(m),
                } if *channel == peer && m.len() >= 4 => {
                    Some(u32::from_be_bytes([m[0], m[1], m[2], m[3]]))
                }
                _ => None,
            })
            .collect();
        let in_order = got.windows(2).all(|w| w[0] < w[1]);
        let missing: Vec<u32> = (0..100).filter(|n| !got.contains(n)).collect();
        writeln!(
            out,
            "{label:<34} {:>3} of 100 arrived, {}{}",
            got.len(),
            if in_order { "in order" } else { "out of order" },
            if missing.is_empty() {
                String::new()
            } else if missing.len() > 12 {
                format!(", {} lost for good", missing.len())
            } else {
                format!(", lost for good: {missing:?}")
            }
        )?;
    }
    pcap::save(&mut sim, a, &[])?;
    Ok(())
}
