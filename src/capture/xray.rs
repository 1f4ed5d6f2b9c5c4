//! `rtclab xray`: a capture printed as a ladder, one line per packet and
//! layer, decoded by rtclab's own parsers.
//!
//! ```text
//!    0.050000  198.51.100.2:6000 → 192.0.2.1:5000  DTLS  epoch 0 seq 1 Handshake: ClientHello
//!    0.110000  192.0.2.1:5000 → 198.51.100.2:6000  DTLS  epoch 1 seq 3 ApplicationData (decrypted, 44 bytes)
//!                                                  SCTP  DATA TSN 4193852078 stream 1 SSN 0 PPID 50
//!                                                  DCEP  DATA_CHANNEL_OPEN label "chat" …
//! ```
//!
//! Every UDP payload is sorted by its first byte (RFC 7983 §7): STUN
//! (method, class, transaction, the ICE attributes), DTLS (records; the
//! handshake messages of epoch 0 by name; later epochs decrypted with the
//! capture's key log when it holds the session's `CLIENT_RANDOM` line and
//! the suite is one rtclab speaks (AES-GCM), else marked "encrypted"), the
//! SCTP packets inside (chunks with TSNs, SACK cumulative TSN and gap
//! blocks), DCEP (OPEN with label, ACK) and data-channel messages; RTP and
//! RTCP on the wire are SRTP (shown as encrypted, with the clear header),
//! and in clear on the `srtp-plaintext` interface rtclab's captures add
//! (RTP header fields and the VP8 payload descriptor; RTCP packet types).
//! DTLS 1.3's protected records (unified header) are opened from the key
//! log's 1.3 secrets (`xray/dtls13.rs`). TURN ChannelData is named, not
//! opened.
//! SCTP straight over UDP (no DTLS) is decoded when its checksum holds.
//! TCP (signaling: `07_signaling -- --pcap`) is reassembled per direction
//! and read as HTTP heads, then WebSocket frames (`xray/tcp.rs`).

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::time::Duration;

use super::pcapng::{self, Capture, Direction};
use super::{PLAINTEXT_INTERFACE, PLAINTEXT_RTCP_PORT, PLAINTEXT_RTP_PORT};

mod dtls13;
mod tcp;
use crate::dtls::prf::MasterSecret;
use crate::dtls::record::{self, CipherSuite, ContentType, RecordProtection};

/// The layers a line can belong to (`--layer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// STUN and TURN messages, ChannelData.
    Stun,
    /// DTLS records and handshake messages.
    Dtls,
    /// SCTP chunks.
    Sctp,
    /// DCEP and data-channel messages.
    Dcep,
    /// RTP (SRTP on the wire, or decrypted).
    Rtp,
    /// RTCP (SRTCP on the wire, or decrypted).
    Rtcp,
    /// TCP, and the HTTP and WebSocket it carries (signaling).
    Tcp,
    /// Anything else.
    Other,
}

impl Layer {
    /// Its name in the ladder and in `--layer`.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Stun => "STUN",
            Layer::Dtls => "DTLS",
            Layer::Sctp => "SCTP",
            Layer::Dcep => "DCEP",
            Layer::Rtp => "RTP",
            Layer::Rtcp => "RTCP",
            Layer::Tcp => "TCP",
            Layer::Other => "UDP",
        }
    }

    /// The layer named `s` (case-insensitive; `dc` and `datachannel` are
    /// DCEP, `turn` is STUN).
    pub fn parse(s: &str) -> Option<Layer> {
        Some(match s.to_ascii_lowercase().as_str() {
            "stun" | "turn" | "ice" => Layer::Stun,
            "dtls" => Layer::Dtls,
            "sctp" => Layer::Sctp,
            "dcep" | "dc" | "datachannel" => Layer::Dcep,
            "rtp" => Layer::Rtp,
            "rtcp" => Layer::Rtcp,
            "tcp" | "http" | "websocket" | "ws" => Layer::Tcp,
            "udp" | "other" => Layer::Other,
            _ => return None,
        })
    }
}

/// One line of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Since the capture's first packet.
    pub time: Duration,
    /// The packet's number in the file (from 1).
    pub packet: usize,
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// Decrypted SRTP from the plaintext interface.
    pub plaintext: bool,
    /// Sent or received by the capturing host, if the capture says.
    pub direction: Option<Direction>,
    /// The layer.
    pub layer: Layer,
    /// What it says.
    pub text: String,
    /// Every field of what was decoded, one `name: value` a line (filled
    /// by a [`Ladder::with_fields`] only; empty otherwise).
    pub fields: String,
}

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these layers (empty: all).
    pub layers: Vec<Layer>,
    /// Only packets at or after this time (since the first packet).
    pub from: Option<Duration>,
    /// Only packets at or before this time.
    pub to: Option<Duration>,
}

impl Filter {
    fn keeps(&self, l: &Line) -> bool {
        (self.layers.is_empty() || self.layers.contains(&l.layer))
            && self.from.is_none_or(|f| l.time >= f)
            && self.to.is_none_or(|t| l.time <= t)
    }
}

/// One DTLS 1.2 session seen in the capture.
#[derive(Default)]
struct Session {
    client: Option<SocketAddr>,
    /// The client is the capturing host (known from `epb_flags`).
    client_local: Option<bool>,
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    suite: Option<CipherSuite>,
    /// (client's, server's) record protection, once derivable.
    keys: Option<(RecordProtection, RecordProtection)>,
    /// DTLS 1.3: keys per epoch, record numbers.
    v13: dtls13::State13,
}

/// A DTLS record (RFC 7983 §7: first byte 20..=63) that is not a
/// handshake record (content type 22): what a session goes on with.
fn is_dtls_after_handshake(b: &[u8]) -> bool {
    matches!(b.first(), Some(&t) if (20..=63).contains(&t) && t != 22)
}

fn key(a: SocketAddr, b: SocketAddr) -> (SocketAddr, SocketAddr) {
    if a <= b { (a, b) } else { (b, a) }
}

/// The `CLIENT_RANDOM` lines of a key log: client random → master secret.
fn master_secrets(key_log: &str) -> HashMap<[u8; 32], [u8; 48]> {
    let mut m = HashMap::new();
    for line in key_log.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("CLIENT_RANDOM") {
            continue;
        }
        let (Some(r), Some(s)) = (
            f.next().and_then(unhex::<32>),
            f.next().and_then(unhex::<48>),
        ) else {
            continue;
        };
        m.insert(r, s);
    }
    m
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Decodes every packet of `capture` into ladder lines (unfiltered).
pub fn decode(capture: &Capture<'_>) -> Vec<Line> {
    let mut ladder = Ladder::new();
    ladder.key_log(&capture.key_log);
    let start = capture
        .packets
        .iter()
        .map(|p| p.time)
        .min()
        .unwrap_or_default();
    let mut lines = Vec::new();
    for (i, p) in capture.packets.iter().enumerate() {
        let Some(iface) = capture.interfaces.get(p.interface) else {
            continue;
        };
        let time = p.time.saturating_sub(start);
        let Some(udp) = pcapng::udp(iface.link_type, p.data) else {
            if let Some(tcp) = pcapng::tcp(iface.link_type, p.data) {
                ladder.segment(time, i + 1, &tcp, p.direction, &mut lines);
            }
            continue;
        };
        let plaintext = iface.name == PLAINTEXT_INTERFACE;
        let datagram = Datagram {
            time,
            packet: i + 1,
            source: udp.source,
            destination: udp.destination,
            direction: p.direction,
            plaintext,
            payload: udp.payload,
        };
        ladder.packet(&datagram, &mut lines);
    }
    lines
}

/// One UDP datagram to decode (see [`Ladder::packet`]).
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// Since the capture's start.
    pub time: Duration,
    /// Its number in the capture (from 1).
    pub packet: usize,
    /// Sender.
    pub source: SocketAddr,
    /// Receiver.
    pub destination: SocketAddr,
    /// Sent or received by the capturing host, if known.
    pub direction: Option<Direction>,
    /// From the `srtp-plaintext` interface: decrypted RTP on port
    /// [`PLAINTEXT_RTP_PORT`], RTCP on [`PLAINTEXT_RTCP_PORT`].
    pub plaintext: bool,
    /// The UDP payload.
    pub payload: &'a [u8],
}

/// The decoder as a machine fed one datagram at a time: it keeps the key
/// log and each DTLS session's state (randoms, suite, keys) between
/// packets, so a live capture is decoded as it grows (the demo's x-ray
/// panel) exactly as a file is by [`decode`].
#[derive(Default)]
pub struct Ladder {
    secrets: HashMap<[u8; 32], [u8; 48]>,
    /// DTLS 1.3's traffic secrets by client random.
    secrets13: dtls13::Secrets13,
    sessions: HashMap<(SocketAddr, SocketAddr), Session>,
    /// Fill [`Line::fields`].
    fields: bool,
    /// TCP connections (signaling).
    tcp: tcp::Streams,
}

impl fmt::Debug for Ladder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ladder")
            .field("secrets", &self.secrets.len())
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// Most DTLS sessions a [`Ladder`] follows (one per address pair; a
/// capture of garbage from many addresses cannot grow it beyond this).
const MAX_SESSIONS: usize = 256;

impl Ladder {
    /// A decoder with no secrets yet.
    pub fn new() -> Ladder {
        Ladder::default()
    }

    /// A decoder that also fills each line's [`Line::fields`] (every field
    /// of the decoded header or message, for a panel that expands a line).
    pub fn with_fields() -> Ladder {
        Ladder {
            fields: true,
            ..Ladder::default()
        }
    }

    /// Learns the `CLIENT_RANDOM` lines of a key log text.
    pub fn key_log(&mut self, text: &str) {
        self.secrets.extend(master_secrets(text));
        // 1.3 writes four lines per handshake; they may come apart.
        for (random, new) in dtls13::secrets13(text) {
            let slots = self.secrets13.entry(random).or_insert([None; 4]);
            for (slot, secret) in slots.iter_mut().zip(new) {
                if secret.is_some() {
                    *slot = secret;
                }
            }
        }
    }

    /// Decodes one TCP segment (HTTP and WebSocket signaling, see
    /// `xray/tcp.rs`), appending its lines to `out`.
    pub fn segment(
        &mut self,
        time: Duration,
        packet: usize,
        segment: &pcapng::Tcp<'_>,
        direction: Option<Direction>,
        out: &mut Vec<Line>,
    ) {
        let mut texts = Vec::new();
        self.tcp.segment(segment, &mut texts);
        out.extend(texts.into_iter().map(|text| Line {
            time,
            packet,
            source: segment.source,
            destination: segment.destination,
            plaintext: false,
            direction,
            layer: Layer::Tcp,
            text,
            fields: String::new(),
        }));
    }

    /// Decodes one datagram, appending its lines to `out`.
    pub fn packet(&mut self, d: &Datagram<'_>, out: &mut Vec<Line>) {
        let mut dec = Decoder {
            lines: out,
            time: d.time,
            packet: d.packet,
            source: d.source,
            destination: d.destination,
            plaintext: d.plaintext,
            direction: d.direction,
            fields: self.fields,
            secrets13: &self.secrets13,
        };
        if d.plaintext {
            // The local end's port says which (a server's capture keeps
            // the remote end's real one); without a direction, either end.
            let ports = match d.direction {
                Some(Direction::Outbound) => [d.source.port(), d.source.port()],
                Some(Direction::Inbound) => [d.destination.port(), d.destination.port()],
                None => [d.destination.port(), d.source.port()],
            };
            match ports
                .into_iter()
                .find(|p| [PLAINTEXT_RTP_PORT, PLAINTEXT_RTCP_PORT].contains(p))
            {
                Some(PLAINTEXT_RTP_PORT) => dec.rtp(d.payload, false),
                Some(_) => dec.rtcp(d.payload, false),
                None => dec.push(Layer::Other, format!("{} bytes", d.payload.len())),
            }
            return;
        }
        // One DTLS association per (local, remote) pair: an SFU's capture
        // holds every participant's on one local address. ICE may move a
        // call to another remote address after its handshake: a record
        // that is not a handshake, on a pair whose session has seen no
        // hello, continues the one session of that local address if it has
        // exactly one (a capture with directions knows which side is local;
        // else the address pair keys it).
        let k = match d.direction {
            Some(Direction::Outbound) => (d.source, d.destination),
            Some(Direction::Inbound) => (d.destination, d.source),
            None => key(d.source, d.destination),
        };
        let fresh = self
            .sessions
            .get(&k)
            .is_none_or(|s| s.client_random.is_none());
        if fresh && d.direction.is_some() && is_dtls_after_handshake(d.payload) {
            let mut same_local = self
                .sessions
                .iter()
                .filter(|(o, s)| o.0 == k.0 && **o != k && s.client_random.is_some())
                .map(|(o, _)| *o);
            if let (Some(old), None) = (same_local.next(), same_local.next()) {
                if let Some(s) = self.sessions.remove(&old) {
                    self.sessions.insert(k, s);
                }
            }
        }
        if !self.sessions.contains_key(&k) && self.sessions.len() >= MAX_SESSIONS {
            self.sessions.clear();
        }
        let session = self.sessions.entry(k).or_default();
        dec.datagram(d.payload, session, &self.secrets);
    }
}

struct Decoder<'l> {
    lines: &'l mut Vec<Line>,
    time: Duration,
    packet: usize,
    source: SocketAddr,
    destination: SocketAddr,
    plaintext: bool,
    direction: Option<Direction>,
    fields: bool,
    secrets13: &'l dtls13::Secrets13,
}

/// Most characters of one line's fields.
const MAX_FIELDS: usize = 2048;

impl Decoder<'_> {
    fn push(&mut self, layer: Layer, text: String) {
        self.push_fields(layer, text, |_| {});
    }

    /// A line whose fields `fields` writes (called only when a panel
    /// wants them: the CLI's ladder pays nothing).
    fn push_fields(&mut self, layer: Layer, text: String, fields: impl FnOnce(&mut String)) {
        let mut f = String::new();
        if self.fields {
            fields(&mut f);
            if f.len() > MAX_FIELDS {
                let mut end = MAX_FIELDS;
                while !f.is_char_boundary(end) {
                    end -= 1;
                }
                f.truncate(end);
                f.push('…');
            }
        }
        self.lines.push(Line {
            time: self.time,
            packet: self.packet,
            source: self.source,
            destination: self.destination,
            plaintext: self.plaintext,
            direction: self.direction,
            layer,
            text,
            fields: f,
        });
    }

    /// RFC 7983 §7: the first byte picks the protocol.
    fn datagram(&mut self, b: &[u8], session: &mut Session, secrets: &HashMap<[u8; 32], [u8; 48]>) {
        match b.first() {
            Some(0..=3) => self.stun(b),
            Some(20..=63) => self.dtls(b, session, secrets),
            Some(64..=79) => {
                let ch = b.get(..2).map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                self.push(
                    Layer::Stun,
                    format!("TURN ChannelData channel 0x{ch:04x}, {} bytes", b.len()),
                );
            }
            Some(128..=191) => {
                let pt = b.get(1).map_or(0, |x| x & 0x7f);
                if (64..=95).contains(&pt) {
                    self.rtcp(b, true);
                } else {
                    self.rtp(b, true);
                }
            }
            // SCTP straight over UDP (RFC 6951's encapsulation, as the
            // simulator's data-channel examples send it): only if its
            // CRC32c checks.
            _ if crate::sctp::Packet::parse(b).is_ok() => self.sctp(b),
            _ => self.push(
                Layer::Other,
                format!("{} bytes, not demultiplexed", b.len()),
            ),
        }
    }

    fn stun(&mut self, b: &[u8]) {
        use crate::stun::{Attribute, Message};
        let m = match Message::parse(b) {
            Ok(m) => m,
            Err(e) => return self.push(Layer::Stun, format!("undecodable STUN: {e}")),
        };
        let tid = m.transaction_id();
        let method = match m.method().value() {
            0x001 => "Binding".to_string(),
            0x003 => "Allocate".to_string(),
            0x004 => "Refresh".to_string(),
            0x006 => "Send".to_string(),
            0x007 => "Data".to_string(),
            0x008 => "CreatePermission".to_string(),
            0x009 => "ChannelBind".to_string(),
            v => format!("method 0x{v:03x}"),
        };
        let mut t = format!(
            "{method} {:?} tid {}",
            m.class(),
            tid.0[..6]
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect::<String>()
        );
        for a in m.attributes() {
            let Ok(at) = Attribute::parse(a.typ, a.value, &tid) else {
                continue;
            };
            match at {
                Attribute::Username(u) => {
                    let _ = write!(t, " USERNAME {u}");
                }
                Attribute::XorMappedAddress(x) => {
                    let _ = write!(t, " XOR-MAPPED-ADDRESS {x}");
                }
                Attribute::Priority(p) => {
                    let _ = write!(t, " PRIORITY {p}");
                }
                Attribute::UseCandidate => t.push_str(" USE-CANDIDATE"),
                Attribute::IceControlling(_) => t.push_str(" ICE-CONTROLLING"),
                Attribute::IceControlled(_) => t.push_str(" ICE-CONTROLLED"),
                Attribute::ErrorCode(e) => {
                    let _ = write!(t, " ERROR-CODE {}", e.code);
                }
                _ => {}
            }
        }
        self.push_fields(Layer::Stun, t, |f| {
            let _ = writeln!(
                f,
                "class: {:?}\nmethod: 0x{:03x}",
                m.class(),
                m.method().value()
            );
            let _ = writeln!(f, "transaction id: {}", hex(&tid.0));
            for a in m.attributes() {
                match Attribute::parse(a.typ, a.value, &tid) {
                    Ok(at) => {
                        let _ = writeln!(f, "attribute 0x{:04x}: {at:?}", a.typ);
                    }
                    Err(_) => {
                        let _ = writeln!(f, "attribute 0x{:04x}: {}", a.typ, hex(a.value));
                    }
                }
            }
        });
    }

    fn dtls(&mut self, b: &[u8], s: &mut Session, secrets: &HashMap<[u8; 32], [u8; 48]>) {
        if dtls13::has_ciphertext(b) {
            return self.dtls13(b, s);
        }
        for r in record::records(b) {
            let r = match r {
                Ok(r) => r,
                Err(e) => return self.push(Layer::Dtls, format!("malformed record: {e}")),
            };
            let h = r.header;
            let head = format!("epoch {} seq {}", h.epoch, h.sequence);
            let record_fields = |f: &mut String| {
                let _ = write!(f, "record: {h:#?}");
            };
            if h.epoch == 0 {
                match h.content_type {
                    ContentType::Handshake => {
                        let name = self.hello(r.fragment, s);
                        self.push_fields(
                            Layer::Dtls,
                            format!("{head} Handshake: {name}"),
                            record_fields,
                        );
                    }
                    ContentType::ChangeCipherSpec => {
                        self.push(Layer::Dtls, format!("{head} ChangeCipherSpec"));
                    }
                    ContentType::Alert => {
                        let (l, d) = (r.fragment.first(), r.fragment.get(1));
                        self.push(
                            Layer::Dtls,
                            format!("{head} Alert level {l:?} description {d:?}"),
                        );
                    }
                    other => self.push(Layer::Dtls, format!("{head} {other:?}")),
                }
                continue;
            }
            if s.keys.is_none() {
                s.keys = derive(s, secrets);
            }
            let from_client = match (s.client_local, self.direction) {
                (Some(local), Some(d)) => local == (d == Direction::Outbound),
                _ => s.client == Some(self.source),
            };
            let mut buf = r.fragment.to_vec();
            let opened = s.keys.as_ref().and_then(|(c, sv)| {
                let p = if from_client { c } else { sv };
                p.open_in_place(&h, &mut buf).ok().map(|x| x.to_vec())
            });
            let Some(plain) = opened else {
                self.push(
                    Layer::Dtls,
                    format!(
                        "{head} {:?} (encrypted, {} bytes)",
                        h.content_type,
                        r.fragment.len()
                    ),
                );
                continue;
            };
            match h.content_type {
                ContentType::Handshake => {
                    let name = handshake_name(plain.first().copied().unwrap_or(255));
                    self.push_fields(
                        Layer::Dtls,
                        format!("{head} Handshake: {name} (decrypted)"),
                        record_fields,
                    );
                }
                ContentType::ApplicationData => {
                    self.push_fields(
                        Layer::Dtls,
                        format!("{head} ApplicationData (decrypted, {} bytes)", plain.len()),
                        record_fields,
                    );
                    self.sctp(&plain);
                }
                ContentType::Alert => {
                    let what = match plain.get(1) {
                        Some(0) => "close_notify".to_string(),
                        d => format!("description {d:?}"),
                    };
                    self.push(Layer::Dtls, format!("{head} Alert {what} (decrypted)"));
                }
                other => self.push(Layer::Dtls, format!("{head} {other:?} (decrypted)")),
            }
        }
    }

    /// Names the handshake messages of an epoch-0 record; reads the
    /// randoms and the suite from ClientHello and ServerHello.
    fn hello(&mut self, mut f: &[u8], s: &mut Session) -> String {
        let mut names = Vec::new();
        while f.len() >= 12 {
            let typ = f[0];
            let frag_off = u32::from_be_bytes([0, f[6], f[7], f[8]]);
            let frag_len = usize::from(f[10]) << 8 | usize::from(f[11]) | usize::from(f[9]) << 16;
            let body = f.get(12..12 + frag_len).unwrap_or(&f[12..]);
            let mut name = handshake_name(typ).to_string();
            if frag_off != 0 || body.len() < (u32::from_be_bytes([0, f[1], f[2], f[3]]) as usize) {
                let _ = write!(name, " (fragment at {frag_off}, {} bytes)", body.len());
            }
            // A new handshake starts a new session; a retransmitted
            // ClientHello (same random) keeps what was learnt.
            if frag_off == 0
                && typ == 1
                && let Some(r) = body.get(2..34).and_then(|r| <[u8; 32]>::try_from(r).ok())
            {
                if s.client_random.is_some_and(|old| old != r) {
                    *s = Session::default();
                }
                s.client = Some(self.source);
                s.client_local = self.direction.map(|d| d == Direction::Outbound);
                s.client_random = Some(r);
            }
            if frag_off == 0
                && typ == 2
                && body.get(2..34)
                    == Some(&crate::dtls::v13::messages::HELLO_RETRY_REQUEST_RANDOM[..])
            {
                // RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with
                // this random; the real one follows.
                name = "HelloRetryRequest".to_string();
            } else if frag_off == 0 && typ == 2 {
                s.server_random = body.get(2..34).and_then(|r| r.try_into().ok());
                let sid = usize::from(body.get(34).copied().unwrap_or(0));
                s.suite = body
                    .get(35 + sid..37 + sid)
                    .and_then(|c| CipherSuite::from_code(u16::from_be_bytes([c[0], c[1]])));
                if let Some(suite) = s.suite {
                    let _ = write!(name, " ({})", suite.name());
                }
            }
            names.push(name);
            f = f.get(12 + frag_len..).unwrap_or(&[]);
        }
        if names.is_empty() {
            "?".to_string()
        } else {
            names.join(", ")
        }
    }

    fn sctp(&mut self, b: &[u8]) {
        use crate::sctp::{Chunk, Packet};
        let p = match Packet::parse(b) {
            Ok(p) => p,
            // Not SCTP (a DTLS session of something else): show the start.
            Err(_) => {
                let s = String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned();
                return self.push(Layer::Other, format!("application data {s:?}"));
            }
        };
        for c in &p.chunks {
            let t = match c {
                Chunk::Init(i) => format!(
                    "INIT tag 0x{:08x} initial TSN {} streams {}/{} a_rwnd {}",
                    i.initiate_tag,
                    i.initial_tsn,
                    i.outbound_streams,
                    i.max_inbound_streams,
                    i.a_rwnd
                ),
                Chunk::InitAck(i) => format!(
                    "INIT ACK tag 0x{:08x} initial TSN {} streams {}/{}",
                    i.initiate_tag, i.initial_tsn, i.outbound_streams, i.max_inbound_streams
                ),
                Chunk::CookieEcho(c) => format!("COOKIE ECHO ({} bytes)", c.len()),
                Chunk::CookieAck => "COOKIE ACK".to_string(),
                Chunk::Data(d) => {
                    let flags = match d.flags & 0x03 {
                        0x03 => "",
                        0x02 => " first fragment",
                        0x01 => " last fragment",
                        _ => " middle fragment",
                    };
                    let u = if d.flags & 0x04 != 0 {
                        " unordered"
                    } else {
                        ""
                    };
                    let line = format!(
                        "DATA TSN {} stream {} SSN {} PPID {}{u}{flags}, {} bytes",
                        d.tsn,
                        d.stream,
                        d.ssn,
                        d.ppid,
                        d.payload.len()
                    );
                    self.push_fields(Layer::Sctp, line, |f| {
                        let _ = write!(
                            f,
                            "type: DATA (0)\nflags: 0x{:02x} (U={} B={} E={})\nTSN: {}\nstream: {}\nSSN: {}\nPPID: {}\npayload: {} bytes\nfirst bytes: {}",
                            d.flags,
                            d.flags >> 2 & 1,
                            d.flags >> 1 & 1,
                            d.flags & 1,
                            d.tsn,
                            d.stream,
                            d.ssn,
                            d.ppid,
                            d.payload.len(),
                            hex(&d.payload[..d.payload.len().min(32)])
                        );
                    });
                    self.user_message(d.ppid, d.payload);
                    continue;
                }
                Chunk::Sack(s) => {
                    let mut t = format!("SACK cum TSN {} a_rwnd {}", s.cum_tsn_ack, s.a_rwnd);
                    for g in &s.gaps {
                        let lo = s.cum_tsn_ack.wrapping_add(u32::from(g.start));
                        let hi = s.cum_tsn_ack.wrapping_add(u32::from(g.end));
                        let _ = write!(t, " gap {lo}-{hi}");
                    }
                    if !s.dups.is_empty() {
                        let _ = write!(t, " dups {:?}", s.dups);
                    }
                    t
                }
                Chunk::Heartbeat(_) => "HEARTBEAT".to_string(),
                Chunk::HeartbeatAck(_) => "HEARTBEAT ACK".to_string(),
                Chunk::Abort { .. } => "ABORT".to_string(),
                Chunk::Shutdown { cum_tsn_ack } => format!("SHUTDOWN cum TSN {cum_tsn_ack}"),
                Chunk::ShutdownAck => "SHUTDOWN ACK".to_string(),
                Chunk::ShutdownComplete { .. } => "SHUTDOWN COMPLETE".to_string(),
                Chunk::ForwardTsn(f) => format!("FORWARD TSN to {}", f.new_cum_tsn),
                Chunk::ReConfig(_) => "RE-CONFIG (stream reset)".to_string(),
                other => {
                    let s = format!("{other:?}");
                    s.chars().take(80).collect()
                }
            };
            self.push_fields(Layer::Sctp, t, |f| {
                let _ = write!(f, "{c:#?}");
            });
        }
    }

    /// RFC 8831 §8 PPIDs: DCEP (50), text (51, 56 empty), binary (53, 57).
    fn user_message(&mut self, ppid: u32, payload: &[u8]) {
        let t = match ppid {
            50 => match crate::datachannel::dcep::DcepMessage::parse(payload) {
                Ok(m) => {
                    return self.push_fields(Layer::Dcep, m.to_string(), |f| {
                        let _ = write!(f, "PPID: 50 (DCEP)\n{m:#?}");
                    });
                }
                Err(e) => format!("bad DCEP: {e}"),
            },
            51 => {
                let s = String::from_utf8_lossy(payload);
                let short: String = s.chars().take(60).collect();
                let more = if short.len() < s.len() { "…" } else { "" };
                format!("text {short:?}{more}")
            }
            53 => format!("binary, {} bytes", payload.len()),
            56 => "empty text".to_string(),
            57 => "empty binary".to_string(),
            _ => return,
        };
        self.push(Layer::Dcep, t);
    }

    fn rtp(&mut self, b: &[u8], srtp: bool) {
        let (h, payload, _) = match crate::rtp::RtpHeader::parse(b) {
            Ok(x) => x,
            Err(e) => return self.push(Layer::Rtp, format!("undecodable RTP: {e}")),
        };
        let mut vp8 = None;
        let mut t = format!(
            "PT {} SSRC 0x{:08x} seq {} ts {}{}",
            h.payload_type,
            h.ssrc,
            h.sequence_number,
            h.timestamp,
            if h.marker { " M" } else { "" }
        );
        if srtp {
            let _ = write!(t, " (SRTP, {} bytes)", payload.len());
        } else {
            let _ = write!(t, ", {} bytes", payload.len());
            // A VP8 descriptor, if this payload has the shape of one.
            if let Ok((d, n)) = crate::rtp::vp8::Vp8Descriptor::parse(payload) {
                vp8 = self.fields.then(|| format!("{d:#?}"));
                let key = d.start_of_partition
                    && d.partition_id == 0
                    && payload.get(n).is_some_and(|x| x & 1 == 0);
                let _ = write!(
                    t,
                    " VP8 S={} PID={}{}{}",
                    u8::from(d.start_of_partition),
                    d.partition_id,
                    d.picture_id
                        .map_or(String::new(), |p| format!(" picture {}", p.value())),
                    if key { " keyframe" } else { "" }
                );
            }
        }
        let len = payload.len();
        self.push_fields(Layer::Rtp, t, |f| {
            let _ = write!(f, "{h:#?}\npayload: {len} bytes");
            if let Some(d) = vp8 {
                let _ = write!(f, "\nVP8 payload descriptor (if VP8): {d}");
            }
        });
    }

    fn rtcp(&mut self, b: &[u8], srtcp: bool) {
        use crate::rtp::rtcp::RtcpPacket;
        if srtcp {
            let pt = b.get(1).copied().unwrap_or(0);
            let ssrc = b
                .get(4..8)
                .map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]));
            let name = match pt {
                200 => "SR",
                201 => "RR",
                202 => "SDES",
                203 => "BYE",
                204 => "APP",
                205 => "RTPFB",
                206 => "PSFB",
                _ => "RTCP",
            };
            return self.push(
                Layer::Rtcp,
                format!(
                    "{name} (PT {pt}) SSRC 0x{ssrc:08x} (SRTCP, {} bytes)",
                    b.len()
                ),
            );
        }
        let packets = match RtcpPacket::parse_compound(b, true) {
            Ok(p) => p,
            Err(e) => return self.push(Layer::Rtcp, format!("undecodable RTCP: {e}")),
        };
        for p in packets {
            let fields = self.fields.then(|| format!("{p:#?}"));
            let t = match p {
                RtcpPacket::SenderReport(s) => {
                    format!("SR SSRC 0x{:08x} rtp ts {}", s.ssrc, s.rtp_time)
                }
                RtcpPacket::ReceiverReport(r) => {
                    format!("RR SSRC 0x{:08x} {} report blocks", r.ssrc, r.reports.len())
                }
                RtcpPacket::Sdes(_) => "SDES".to_string(),
                RtcpPacket::Bye(_) => "BYE".to_string(),
                RtcpPacket::App(_) => "APP".to_string(),
                RtcpPacket::Nack(n) => format!("NACK media 0x{:08x} {:?}", n.media_ssrc, n.pairs),
                RtcpPacket::TransportCc(_) => "transport-cc feedback".to_string(),
                RtcpPacket::Pli(p) => format!("PLI media 0x{:08x}", p.media_ssrc),
                RtcpPacket::Fir(_) => "FIR".to_string(),
                RtcpPacket::Remb(r) => format!("REMB {} bit/s", r.bitrate),
                RtcpPacket::Unknown(_) => "unknown RTCP".to_string(),
            };
            self.push_fields(Layer::Rtcp, t, |f| {
                if let Some(x) = fields {
                    f.push_str(&x);
                }
            });
        }
    }
}

/// The DTLS keys of a session, once its randoms, suite and master secret
/// are known (RFC 5246 §6.3 key block).
fn derive(
    s: &Session,
    secrets: &HashMap<[u8; 32], [u8; 48]>,
) -> Option<(RecordProtection, RecordProtection)> {
    let (cr, sr, suite) = (s.client_random?, s.server_random?, s.suite?);
    let master = MasterSecret(*secrets.get(&cr)?);
    let kb = master.key_block(
        suite.prf_hash(),
        &cr,
        &sr,
        suite.key_len(),
        suite.fixed_iv_len(),
    );
    let c = RecordProtection::new(suite, &kb.client_write_key, &kb.client_write_iv).ok()?;
    let sv = RecordProtection::new(suite, &kb.server_write_key, &kb.server_write_iv).ok()?;
    Some((c, sv))
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn handshake_name(t: u8) -> &'static str {
    match t {
        0 => "HelloRequest",
        1 => "ClientHello",
        2 => "ServerHello",
        3 => "HelloVerifyRequest",
        4 => "NewSessionTicket",
        8 => "EncryptedExtensions",
        11 => "Certificate",
        12 => "ServerKeyExchange",
        13 => "CertificateRequest",
        14 => "ServerHelloDone",
        15 => "CertificateVerify",
        16 => "ClientKeyExchange",
        20 => "Finished",
        _ => "unknown handshake message",
    }
}

/// The ladder as text: one line per packet and layer; the addresses are
/// written once per packet.
pub fn render(lines: &[Line], filter: &Filter) -> String {
    let mut out = String::new();
    let mut last = None;
    let width = lines
        .iter()
        .map(|l| l.source.to_string().len() + l.destination.to_string().len() + 3)
        .max()
        .unwrap_or(0);
    for l in lines.iter().filter(|l| filter.keeps(l)) {
        let head = if last == Some(l.packet) {
            format!("{:>11}  {:width$}", "", "")
        } else {
            let arrow = if l.plaintext { "⇢" } else { "→" };
            let addrs = format!("{} {arrow} {}", l.source, l.destination);
            format!("{:>11.6}  {addrs:width$}", l.time.as_secs_f64())
        };
        last = Some(l.packet);
        let _ = writeln!(out, "{head}  {:<4}  {}", l.layer.name(), l.text);
    }
    out
}

/// Most packets drawn in one SVG.
const SVG_MAX_PACKETS: usize = 2000;

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The ladder as an SVG sequence diagram: one lifeline per endpoint (the
/// plaintext interface's packets on their IP address's lifeline), one
/// arrow per packet (at most 2000), labelled with its deepest decoded
/// layer (the DCEP message rather than the SCTP chunk that carried it).
pub fn svg(lines: &[Line], filter: &Filter) -> String {
    // Packets in order, each with its last kept line.
    let mut packets: Vec<&Line> = Vec::new();
    for l in lines.iter().filter(|l| filter.keeps(l)) {
        if packets.last().is_some_and(|last| last.packet == l.packet) {
            if let Some(last) = packets.last_mut() {
                *last = l;
            }
        } else if packets.len() < SVG_MAX_PACKETS {
            packets.push(l);
        } else {
            break;
        }
    }
    let mut lifelines: Vec<SocketAddr> = Vec::new();
    let mut lane = |a: SocketAddr, plaintext: bool| -> usize {
        let found = lifelines
            .iter()
            .position(|x| *x == a || (plaintext && x.ip() == a.ip()));
        found.unwrap_or_else(|| {
            lifelines.push(a);
            lifelines.len() - 1
        })
    };
    let arrows: Vec<(usize, usize, &Line)> = packets
        .iter()
        .map(|l| {
            (
                lane(l.source, l.plaintext),
                lane(l.destination, l.plaintext),
                *l,
            )
        })
        .collect();
    let (col, row, top) = (360usize, 22usize, 60usize);
    let width = col * lifelines.len().max(2) + 40;
    let height = top + row * (arrows.len() + 1) + 20;
    let x = |i: usize| 20 + col / 2 + i * col;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"monospace\" font-size=\"11\">"
    );
    out.push_str("<defs><marker id=\"arrow\" markerWidth=\"8\" markerHeight=\"8\" refX=\"8\" refY=\"4\" orient=\"auto\"><path d=\"M0,0 L8,4 L0,8 z\"/></marker></defs>\n");
    out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    for (i, a) in lifelines.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"30\" text-anchor=\"middle\" font-weight=\"bold\">{a}</text>\n<line class=\"lifeline\" x1=\"{}\" y1=\"40\" x2=\"{}\" y2=\"{}\" stroke=\"#999\" stroke-dasharray=\"4 4\"/>",
            x(i),
            x(i),
            x(i),
            height - 10
        );
    }
    for (k, (from, to, l)) in arrows.iter().enumerate() {
        let y = top + row * (k + 1);
        let color = match l.layer {
            Layer::Stun => "#777",
            Layer::Dtls => "#b35900",
            Layer::Sctp => "#1f5fa8",
            Layer::Dcep => "#0a7d32",
            Layer::Rtp | Layer::Rtcp => "#8a2be2",
            Layer::Tcp => "#555",
            Layer::Other => "#000",
        };
        let dash = if l.plaintext {
            " stroke-dasharray=\"2 3\""
        } else {
            ""
        };
        let (x1, x2) = (x(*from), x(*to));
        let _ = writeln!(
            out,
            "<line class=\"msg\" x1=\"{x1}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" stroke=\"{color}\"{dash} marker-end=\"url(#arrow)\"/>"
        );
        let text: String = format!("{} {}", l.layer.name(), l.text)
            .chars()
            .take(56)
            .collect();
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{color}\">{}</text>\n<text x=\"4\" y=\"{y}\" fill=\"#555\">{:.3}</text>",
            (x1 + x2) / 2,
            y - 4,
            xml_escape(&text),
            l.time.as_secs_f64()
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Reads a capture file and renders its ladder.
pub fn xray(file: &[u8], filter: &Filter) -> Result<String, pcapng::Error> {
    let cap = pcapng::read(file)?;
    Ok(render(&decode(&cap), filter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_draws_one_arrow_per_packet() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "198.51.100.2:6000".parse().unwrap();
        let line = |packet, layer, text: &str, plaintext| Line {
            time: Duration::from_millis(packet as u64),
            packet,
            source: if packet % 2 == 0 { a } else { b },
            destination: if packet % 2 == 0 { b } else { a },
            plaintext,
            direction: None,
            layer,
            text: text.to_string(),
            fields: String::new(),
        };
        let lines = [
            line(1, Layer::Dtls, "epoch 1 ApplicationData", false),
            line(1, Layer::Sctp, "DATA TSN 1", false),
            line(1, Layer::Dcep, "text \"<hi>\"", false),
            line(2, Layer::Stun, "Binding Request", false),
        ];
        let s = svg(&lines, &Filter::default());
        assert!(s.starts_with("<svg"));
        assert_eq!(s.matches("class=\"msg\"").count(), 2);
        assert_eq!(s.matches("class=\"lifeline\"").count(), 2);
        assert!(s.contains("DCEP text &quot;&lt;hi&gt;&quot;"), "{s}");
        let only_stun = Filter {
            layers: vec![Layer::Stun],
            ..Filter::default()
        };
        assert_eq!(svg(&lines, &only_stun).matches("class=\"msg\"").count(), 1);
    }

    /// An SFU's capture: two participants' handshakes on one local address
    /// are two sessions; a call ICE moved to another remote address after
    /// its handshake goes on with its session, unless that is ambiguous.
    #[test]
    fn sessions_are_kept_per_address_pair() {
        let sfu: SocketAddr = "192.0.2.1:3478".parse().unwrap();
        let a: SocketAddr = "198.51.100.2:6000".parse().unwrap();
        let a2: SocketAddr = "198.51.100.2:6001".parse().unwrap();
        let b: SocketAddr = "203.0.113.3:7000".parse().unwrap();
        let hello = |random: u8| {
            let body_len = 40u8;
            let mut r = vec![22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12 + body_len];
            r.extend([1, 0, 0, body_len, 0, 0, 0, 0, 0, 0, 0, body_len]);
            r.extend([0xfe, 0xfd]);
            r.extend([random; 32]);
            r.extend([0; 6]);
            r
        };
        let app_data = vec![23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4];
        let mut ladder = Ladder::new();
        let mut out = Vec::new();
        let mut feed = |ladder: &mut Ladder, from: SocketAddr, payload: &[u8]| {
            let d = Datagram {
                time: Duration::ZERO,
                packet: 1,
                source: from,
                destination: sfu,
                direction: Some(Direction::Inbound),
                plaintext: false,
                payload,
            };
            ladder.packet(&d, &mut out);
        };
        let random_at = |ladder: &Ladder, remote| {
            ladder
                .sessions
                .get(&(sfu, remote))
                .and_then(|s| s.client_random)
        };
        feed(&mut ladder, a, &hello(0xaa));
        feed(&mut ladder, a2, &app_data);
        assert_eq!(random_at(&ladder, a2), Some([0xaa; 32]), "moved with ICE");
        feed(&mut ladder, b, &hello(0xbb));
        assert_eq!(random_at(&ladder, b), Some([0xbb; 32]));
        assert_eq!(
            random_at(&ladder, a2),
            Some([0xaa; 32]),
            "not reset by b's hello"
        );
        feed(&mut ladder, a, &app_data);
        assert_eq!(
            random_at(&ladder, a),
            None,
            "two sessions here: ambiguous, none moved"
        );
        assert_eq!(random_at(&ladder, a2), Some([0xaa; 32]));
    }

    #[test]
    fn layers_parse_by_name() {
        assert_eq!(Layer::parse("SCTP"), Some(Layer::Sctp));
        assert_eq!(Layer::parse("dc"), Some(Layer::Dcep));
        assert_eq!(Layer::parse("ip"), None);
    }

    #[test]
    fn key_log_lines_are_read() {
        let line = format!(
            "CLIENT_RANDOM {} {}\n# comment\n",
            "ab".repeat(32),
            "cd".repeat(48)
        );
        let m = master_secrets(&line);
        assert_eq!(m.get(&[0xab; 32]), Some(&[0xcd; 48]));
        assert!(master_secrets("CLIENT_RANDOM zz 00").is_empty());
    }

    #[test]
    fn stun_and_garbage_lines() {
        let mut c = super::super::Capture::in_memory(std::time::Instant::now(), Duration::ZERO);
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "198.51.100.2:6000".parse().unwrap();
        let mut stun = Vec::new();
        let typ = crate::stun::MessageType {
            class: crate::stun::Class::Request,
            method: crate::stun::Method::BINDING,
        };
        let tid = crate::stun::TransactionId([7; 12]);
        crate::stun::MessageEncoder::new(&mut stun, typ, tid)
            .finish()
            .unwrap();
        c.datagram_at(
            Duration::ZERO,
            super::super::Direction::Outbound,
            a,
            b,
            &stun,
        );
        c.datagram_at(
            Duration::from_millis(5),
            super::super::Direction::Outbound,
            a,
            b,
            &[0xff, 1],
        );
        let file = c.take_bytes();
        let text = xray(&file, &Filter::default()).unwrap();
        assert!(
            text.contains("STUN  Binding Request tid 070707070707"),
            "{text}"
        );
        assert!(text.contains("UDP   2 bytes, not demultiplexed"), "{text}");
        let only = Filter {
            layers: vec![Layer::Stun],
            ..Filter::default()
        };
        assert_eq!(xray(&file, &only).map(|t| t.lines().count()), Ok(1));
    }
}
