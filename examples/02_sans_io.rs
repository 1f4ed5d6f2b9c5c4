//! Chapter 2: two sans-IO machines driven by hand, with no sockets at all.
//!
//! A STUN [`Client`] asks a [`BindingServer`] "what address do you see me
//! at?". This program plays everything that is not protocol logic: it owns the
//! clock (a fake one that it moves forward itself), it carries each
//! [`Transmit`] from one machine to the other (it *is* the network), and on the
//! way it plays a NAT that rewrites the client's address. It drops the first
//! request, so the client's retransmission timer fires.
//!
//! Run it with `cargo run --example 02_sans_io`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::stun::attributes::attribute_name;
use rtclab::stun::{
    self, BindingServer, Client, Message, MessageEncoder, MessageType, Method, TransactionId,
};

// ANCHOR: addresses
/// The client's own address, behind a NAT.
const CLIENT: &str = "10.0.0.2:5000";
/// The address the NAT gives that flow on the public side.
const NAT_PUBLIC: &str = "203.0.113.7:61000";
/// The STUN server.
const SERVER: &str = "198.51.100.1:3478";
// ANCHOR_END: addresses

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Runs the whole exchange, printing every step to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let client_addr: SocketAddr = CLIENT.parse()?;
    let nat_public: SocketAddr = NAT_PUBLIC.parse()?;
    let server_addr: SocketAddr = SERVER.parse()?;

    // ANCHOR: setup
    // The fake clock: `t0` is "time zero"; we move `now` forward ourselves.
    let t0 = Instant::now();
    let mut now = t0;
    let mut trace = Trace { out, t0 };
    // `--pcap FILE`: the client's view (its lost first request too).
    let mut capture = pcap::Hand::new(client_addr);

    // Randomness comes from an RNG we seed, so every run prints the same.
    let mut rng = StdRng::seed_from_u64(2);

    let mut client = Client::new(stun::client::Config::default()); // RTO 500 ms, Rc 7, Rm 16
    let mut server = BindingServer::new(stun::server::Config::new(server_addr))?;

    // A Binding request: a 20-byte header and one FINGERPRINT attribute.
    let tid = TransactionId::random(&mut rng);
    let mut request = Vec::new();
    MessageEncoder::new(&mut request, MessageType::BINDING_REQUEST, tid)
        .fingerprint()
        .finish()?;
    client.start(now, request, server_addr, None, None)?;
    // ANCHOR_END: setup
    trace.at(now, &format!("client: started transaction {tid}"))?;

    // ANCHOR: drop_first
    // Step 1: drain the client. Its first request is lost on the way.
    for t in drain_transmits(&mut client) {
        let what = describe(&t.contents);
        capture.sent(now, t.destination, &t.contents);
        trace.at(now, &format!("client → {}: {what}", t.destination))?;
        trace.at(now, "network: dropped it")?;
    }
    // Nothing came back, so the client asks to be woken at its timer.
    let wake = client.poll_timeout().ok_or("the client armed no timer")?;
    trace.at(
        now,
        &format!("client: poll_timeout() = t={}", secs(t0, wake)),
    )?;
    // ANCHOR_END: drop_first

    // ANCHOR: retransmit
    // Step 2: the clock reaches the timer; the client retransmits.
    now = wake;
    client.handle_timeout(now);
    let mut responses = Vec::new();
    for t in drain_transmits(&mut client) {
        let what = describe(&t.contents);
        capture.sent(now, t.destination, &t.contents);
        trace.at(now, &format!("client → {}: {what}", t.destination))?;
        // The NAT rewrites the source: the server sees the public address.
        trace.at(
            now,
            &format!("NAT: source {client_addr} becomes {nat_public}"),
        )?;
        now += Duration::from_millis(20); // one-way delay
        let datagram = Receive {
            source: nat_public,
            destination: t.destination,
            contents: &t.contents,
        };
        server.handle_receive(now, datagram);
        trace.at(now, &format!("server ← {nat_public}: {what}"))?;
        responses.extend(drain_transmits(&mut server));
    }
    // ANCHOR_END: retransmit

    // ANCHOR: respond
    // Step 3: carry the server's answer back through the NAT to the client.
    for t in responses {
        let from = t.source.unwrap_or(server_addr);
        let what = describe(&t.contents);
        trace.at(now, &format!("server → {}: {what}", t.destination))?;
        if t.destination != nat_public {
            trace.at(now, "NAT: no mapping for that address, dropped")?;
            continue;
        }
        trace.at(
            now,
            &format!("NAT: destination {nat_public} becomes {client_addr}"),
        )?;
        now += Duration::from_millis(20);
        let datagram = Receive {
            source: from,
            destination: client_addr,
            contents: &t.contents,
        };
        client.handle_receive(now, datagram);
        capture.received(now, from, &t.contents);
        trace.at(now, &format!("client ← {from}: {what}"))?;
    }
    // ANCHOR_END: respond

    // ANCHOR: events
    // Step 4: drain the client's events. The transaction is over.
    while let Some(stun::client::Event::Completed { id, result }) = client.poll_event() {
        match result {
            Ok(response) => {
                let msg = response.message()?;
                let mapped = msg.xor_mapped_address()?.ok_or("no XOR-MAPPED-ADDRESS")?;
                trace.at(now, &format!("client event: transaction {id} succeeded"))?;
                trace.at(
                    now,
                    &format!("  our address (local):          {client_addr}"),
                )?;
                trace.at(now, &format!("  our server-reflexive address: {mapped}"))?;
            }
            Err(e) => trace.at(now, &format!("client event: transaction {id} failed: {e}"))?,
        }
    }
    let timer = client.poll_timeout();
    trace.at(
        now,
        &format!("client: poll_timeout() = {timer:?}, nothing left to do"),
    )?;
    // ANCHOR_END: events
    capture.save()?;
    Ok(())
}

/// Prints lines stamped with the fake clock, as seconds since `t0`.
struct Trace<'a> {
    out: &'a mut dyn Write,
    t0: Instant,
}

impl Trace<'_> {
    fn at(&mut self, now: Instant, what: &str) -> std::io::Result<()> {
        writeln!(self.out, "t={} {what}", secs(self.t0, now))
    }
}

// ANCHOR: drain
/// Drains every datagram a machine has queued. Any [`Machine`] will do: this
/// helper knows nothing about STUN.
fn drain_transmits<M: Machine>(machine: &mut M) -> Vec<Transmit> {
    let mut out = Vec::new();
    while let Some(t) = machine.poll_transmit() {
        out.push(t);
    }
    out
}
// ANCHOR_END: drain

/// The time since `t0`, as "1.500s".
fn secs(t0: Instant, t: Instant) -> String {
    let d = t.duration_since(t0);
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// One line about a STUN message: class, method, size and attributes.
fn describe(bytes: &[u8]) -> String {
    let m = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) => return format!("{} bytes, not STUN: {e}", bytes.len()),
    };
    let method = if m.method() == Method::BINDING {
        "Binding"
    } else {
        "?"
    };
    let mut s = format!("{:?} {method}, {} bytes:", m.class(), bytes.len());
    for a in m.attributes() {
        match m.attribute(a.typ) {
            Ok(Some(v)) => s.push_str(&format!(" {v:?}")),
            _ => s.push_str(&format!(" {}(malformed)", attribute_name(a.typ))),
        }
    }
    s
}
