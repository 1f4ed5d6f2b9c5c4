//! Chapter 3: your first packets, STUN.
//!
//! Part 1 decodes the RFC 5769 sample messages byte by byte with rtclab's
//! [`Message`] and checks their MESSAGE-INTEGRITY and FINGERPRINT.
//!
//! Part 2 starts rtclab's STUN server in this process on two loopback
//! addresses, 127.0.0.1 and 127.0.0.2 (free ports), with the tokio
//! [`Driver`], then runs a Binding query and a full RFC 5780 NAT behaviour
//! discovery against it, printing every message the client sends and
//! receives, and the results.
//!
//! Run it with `cargo run --example 03_stun`.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::machine::{Machine, Receive, Transmit};
use rtclab::runtime::Driver;
use rtclab::stun::attributes::attribute_name;
use rtclab::stun::{
    self, Attribute, BindingServer, DiscoveryMode, IntegrityKey, MAGIC_COOKIE, Message, Method,
    NatDiscovery, NatReport, attr,
};

// ANCHOR: sample_request
/// RFC 5769 §2.1, "Sample Request": a Binding request as an ICE agent sends
/// it, with short-term credentials. SOFTWARE and USERNAME are padded with
/// spaces (0x20).
const SAMPLE_REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

/// The password both sides know (RFC 5769 §2.1).
const SAMPLE_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";
// ANCHOR_END: sample_request

/// RFC 5769 §2.2, "Sample IPv4 Response": its XOR-MAPPED-ADDRESS is
/// 192.0.2.1:32853.
const SAMPLE_IPV4_RESPONSE: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

fn main() -> Result<(), Box<dyn Error>> {
    run(&mut std::io::stdout())
}

/// Runs both parts, printing to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    walk_sample_request(out)?;
    unxor_sample_response(out)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(query_our_server(out))
}

// ---- part 1: the RFC 5769 samples, byte by byte ---------------------------

/// Part 1a: the RFC 5769 sample request, field by field, and its checks.
pub fn walk_sample_request(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out, "== RFC 5769 §2.1 sample request, byte by byte ==")?;
    let bytes = hex(SAMPLE_REQUEST);
    // ANCHOR: decode
    let msg = Message::parse(&bytes)?;
    // ANCHOR_END: decode
    writeln!(out, "offset  bytes                          meaning")?;
    row(
        out,
        0,
        &bytes[0..2],
        &format!(
            "message type 0x{:04x}: class {:?}, method 0x{:03x} (Binding)",
            msg.message_type().to_u16(),
            msg.class(),
            msg.method().value()
        ),
    )?;
    row(
        out,
        2,
        &bytes[2..4],
        &format!(
            "message length: {} bytes after the header",
            u16::from_be_bytes([bytes[2], bytes[3]])
        ),
    )?;
    row(
        out,
        4,
        &bytes[4..8],
        &format!("magic cookie 0x{MAGIC_COOKIE:08x}"),
    )?;
    row(
        out,
        8,
        &bytes[8..20],
        &format!("transaction id {}", msg.transaction_id()),
    )?;
    for a in msg.attributes() {
        let o = a.offset;
        row(
            out,
            o,
            &bytes[o..o + 4],
            &format!(
                "{} (type 0x{:04x}, {}), length {}",
                attribute_name(a.typ),
                a.typ,
                if a.typ < 0x8000 {
                    "comprehension-required"
                } else {
                    "comprehension-optional"
                },
                a.value.len()
            ),
        )?;
        let padded = a.value.len().div_ceil(4) * 4;
        let value = &bytes[o + 4..o + 4 + padded];
        let decoded = match msg.attribute(a.typ)? {
            Some(Attribute::Priority(p)) => format!("Priority({p} = 0x{p:08x})"),
            Some(Attribute::IceControlled(t)) => format!("IceControlled(tie-breaker 0x{t:016x})"),
            Some(Attribute::MessageIntegrity(_)) => "HMAC-SHA1 tag (checked below)".into(),
            Some(Attribute::Fingerprint(f)) => format!("0x{f:08x} (checked below)"),
            Some(v) => format!("{v:?}"),
            None => String::new(),
        };
        let pad = padded - a.value.len();
        let note = if pad > 0 {
            format!(" + {pad} padding")
        } else {
            String::new()
        };
        row(out, o + 4, value, &format!("  value{note}: {decoded}"))?;
    }
    // ANCHOR: verify
    let key = IntegrityKey::short_term(SAMPLE_PASSWORD);
    msg.verify_integrity(&key)?; // HMAC-SHA1, RFC 8489 §14.5
    let has_fingerprint = msg.verify_fingerprint()?; // CRC-32 ^ 0x5354554E, §14.7
    // ANCHOR_END: verify
    writeln!(
        out,
        "MESSAGE-INTEGRITY: ok (HMAC-SHA1, key = the password {SAMPLE_PASSWORD:?})"
    )?;
    writeln!(
        out,
        "FINGERPRINT: {}",
        if has_fingerprint { "ok" } else { "absent" }
    )?;
    writeln!(out, "USERNAME: {:?}", msg.username()?.unwrap_or(""))?;
    writeln!(out)?;
    Ok(())
}

/// Part 1b: XOR-MAPPED-ADDRESS of the RFC 5769 IPv4 sample response, by hand.
pub fn unxor_sample_response(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(
        out,
        "== RFC 5769 §2.2 sample response: XOR-MAPPED-ADDRESS by hand =="
    )?;
    let bytes = hex(SAMPLE_IPV4_RESPONSE);
    let msg = Message::parse(&bytes)?;
    let a = msg
        .get(attr::XOR_MAPPED_ADDRESS)
        .ok_or("no XOR-MAPPED-ADDRESS")?;
    let v = a.value;
    if v.len() != 8 {
        return Err("not an IPv4 XOR-MAPPED-ADDRESS".into());
    }
    writeln!(out, "value: {}", hex_string(v))?;
    writeln!(out, "family: 0x{:02x} (IPv4)", v[1])?;
    // ANCHOR: unxor
    let x_port = u16::from_be_bytes([v[2], v[3]]);
    let port = x_port ^ (MAGIC_COOKIE >> 16) as u16;
    let x_addr = u32::from_be_bytes([v[4], v[5], v[6], v[7]]);
    let ip = Ipv4Addr::from(x_addr ^ MAGIC_COOKIE);
    // ANCHOR_END: unxor
    writeln!(
        out,
        "X-Port    0x{x_port:04x} ^ 0x{:04x} = 0x{port:04x} = {port}",
        MAGIC_COOKIE >> 16
    )?;
    writeln!(
        out,
        "X-Address 0x{x_addr:08x} ^ 0x{MAGIC_COOKIE:08x} = 0x{:08x} = {ip}",
        u32::from(ip)
    )?;
    let decoded = msg.xor_mapped_address()?.ok_or("no XOR-MAPPED-ADDRESS")?;
    writeln!(out, "Message::xor_mapped_address() = {decoded}")?;
    if decoded != SocketAddr::new(IpAddr::V4(ip), port) {
        return Err("the hand-made and the library decoding differ".into());
    }
    msg.verify_integrity(&IntegrityKey::short_term(SAMPLE_PASSWORD))?;
    writeln!(
        out,
        "MESSAGE-INTEGRITY: ok; FINGERPRINT: {}",
        if msg.verify_fingerprint()? {
            "ok"
        } else {
            "absent"
        }
    )?;
    writeln!(out)?;
    Ok(())
}

// ---- part 2: our server and our client over real UDP ----------------------

async fn query_our_server(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    // ANCHOR: server
    // An RFC 5780 server: primary 127.0.0.1:P1, alternate 127.0.0.2:P2, and
    // the two crossed addresses, four sockets in all.
    let mut server = bind_server().await?;
    // `--pcap FILE`: every datagram of the server's four sockets.
    if let Some(path) = pcap::requested() {
        server.set_capture(rtclab::capture::Capture::create(&path)?, |_, _| {});
        eprintln!(
            "capturing to {} (open it with `rtclab xray` or Wireshark)",
            path.display()
        );
    }
    let addrs = server.local_addrs();
    let primary = addrs[0];
    tokio::spawn(async move {
        // A server has no events: `serve` runs until an I/O error.
        let _ = server.serve().await;
    });
    // ANCHOR_END: server
    writeln!(out, "== our STUN server ==")?;
    for a in &addrs {
        writeln!(out, "listening on {a}")?;
    }
    writeln!(out)?;

    writeln!(out, "== Binding query to {primary} ==")?;
    let report = discover(out, primary, DiscoveryMode::Binding).await?;
    print_report(out, &report)?;
    writeln!(out)?;

    writeln!(
        out,
        "== NAT behaviour discovery (RFC 5780) against {primary} =="
    )?;
    let report = discover(out, primary, DiscoveryMode::Both).await?;
    print_report(out, &report)?;
    Ok(())
}

/// Binds the four sockets of an RFC 5780 server on free ports, retrying if a
/// port was taken in between.
async fn bind_server() -> Result<Driver<BindingServer>, Box<dyn Error>> {
    let mut last = None;
    for _ in 0..20 {
        let p1 = free_port()?;
        let p2 = free_port()?;
        if p1 == p2 {
            continue;
        }
        let mut config = stun::server::Config::new(SocketAddr::from(([127, 0, 0, 1], p1)));
        config.alternate = Some(SocketAddr::from(([127, 0, 0, 2], p2)));
        // SOFTWARE is off by default (smaller answers); the example shows it.
        config.software = Some(rtclab::stun::server::SOFTWARE.to_string());
        let server = BindingServer::new(config)?;
        let addrs = server.local_addrs().to_vec();
        match Driver::bind(server, &addrs).await {
            Ok(d) => return Ok(d),
            Err(e) => last = Some(e),
        }
    }
    Err(format!("no free ports for the server: {last:?}").into())
}

fn free_port() -> std::io::Result<u16> {
    std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()
        .map(|a| a.port())
}

// ANCHOR: discover
async fn discover(
    out: &mut dyn Write,
    server: SocketAddr,
    mode: DiscoveryMode,
) -> Result<NatReport, Box<dyn Error>> {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let local = socket.local_addr()?;
    let machine = NatDiscovery::new(
        Instant::now(),
        server,
        Some(local), // knowing our own address tells "no NAT" apart
        mode,
        StdRng::seed_from_u64(3),
    );
    // The same machine, watched: `Tap` records every datagram in and out.
    let mut driver = Driver::from_sockets(Tap::new(machine, local), vec![socket])?;
    let result = tokio::time::timeout(Duration::from_secs(30), driver.next_event()).await;
    for line in &driver.machine().log {
        writeln!(out, "{line}")?;
    }
    let report = result.map_err(|_| "discovery took more than 30 s")???;
    Ok(report)
}
// ANCHOR_END: discover

fn print_report(out: &mut dyn Write, r: &NatReport) -> Result<(), Box<dyn Error>> {
    if let Some(l) = r.local {
        writeln!(out, "Local address: {l}")?;
    }
    writeln!(out, "Mapped address: {}", r.mapped)?;
    if let Some(o) = r.other_address {
        writeln!(out, "Other address: {o}")?;
    }
    if let Some(s) = &r.software {
        writeln!(out, "Server software: {s}")?;
    }
    if let Some(m) = r.mapping {
        writeln!(out, "Mapping behaviour: {m}")?;
    }
    if let Some(f) = r.filtering {
        writeln!(out, "Filtering behaviour: {f}")?;
    }
    Ok(())
}

// ANCHOR: tap
/// Wraps any machine and logs every datagram it sends or receives, decoded.
/// It is itself a [`Machine`], so the driver cannot tell the difference.
struct Tap<M> {
    inner: M,
    local: SocketAddr,
    log: Vec<String>,
}

impl<M: Machine> Tap<M> {
    fn new(inner: M, local: SocketAddr) -> Self {
        Tap {
            inner,
            local,
            log: Vec::new(),
        }
    }
}

impl<M: Machine> Machine for Tap<M> {
    type Event = M::Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.log.push(format!(
            "  {} ← {}  {}",
            d.destination,
            d.source,
            describe(d.contents)
        ));
        self.inner.handle_receive(now, d);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.inner.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.inner.poll_transmit()?;
        let from = t.source.unwrap_or(self.local);
        self.log.push(format!(
            "  {from} → {}  {}",
            t.destination,
            describe(&t.contents)
        ));
        Some(t)
    }

    fn poll_event(&mut self) -> Option<M::Event> {
        self.inner.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.inner.poll_timeout()
    }
}
// ANCHOR_END: tap

/// A STUN message in one line: its type and its attributes, decoded.
fn describe(bytes: &[u8]) -> String {
    let m = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) => return format!("not STUN: {e}"),
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

fn row(out: &mut dyn Write, offset: usize, bytes: &[u8], meaning: &str) -> std::io::Result<()> {
    // At most 8 bytes per line, continuation lines below.
    let mut chunks = bytes.chunks(8);
    let first = chunks.next().unwrap_or(&[]);
    writeln!(out, "{offset:>4}    {:<30} {meaning}", hex_string(first))?;
    let mut o = offset + first.len();
    for c in chunks {
        writeln!(out, "{o:>4}    {}", hex_string(c))?;
        o += c.len();
    }
    Ok(())
}

fn hex_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Hex as the RFC prints it (with spaces and line breaks) to bytes.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .filter_map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}
