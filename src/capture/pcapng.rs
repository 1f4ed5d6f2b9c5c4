//! The pcapng file format (draft-ietf-opsawg-pcapng): a writer for the
//! blocks rtclab's captures use and a reader for what rtclab, tshark and
//! dumpcap write (and classic pcap files, such as [`crate::sim::write_pcap`]'s).
//!
//! ```text
//!   every block:  type (u32) │ total length (u32) │ body … │ total length (u32)
//!   SHB 0x0A0D0D0A  byte-order magic 0x1A2B3C4D, version 1.0, section length -1
//!   IDB 0x00000001  link type (u16), reserved, snap length; if_name, if_tsresol
//!   EPB 0x00000006  interface id, timestamp (high, low), captured and
//!                   original length, packet data (padded to 32 bits); epb_flags
//!   DSB 0x0000000A  secrets type (0x544c534b: TLS key log), length, secrets
//!   options:        code (u16) │ length (u16) │ value padded to 32 bits │ … │ 0 0
//! ```
//!
//! The writer always writes little-endian, nanosecond timestamps
//! (`if_tsresol` 9) and LINKTYPE_RAW interfaces (the packets start with an
//! IPv4 or IPv6 header). The reader takes either byte order, any
//! `if_tsresol`, several sections, and the link types a capture of a UDP
//! call has: raw IP (101, 228, 229), Ethernet (1), Linux cooked (113, 276)
//! and BSD loopback (0). It never panics and allocates at most the size of
//! its input.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Section Header Block.
pub const SHB: u32 = 0x0A0D_0D0A;
/// Interface Description Block.
pub const IDB: u32 = 0x0000_0001;
/// Simple Packet Block.
pub const SPB: u32 = 0x0000_0003;
/// Enhanced Packet Block.
pub const EPB: u32 = 0x0000_0006;
/// Decryption Secrets Block.
pub const DSB: u32 = 0x0000_000A;
/// The SHB's byte-order magic.
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// DSB secrets type: NSS key log lines (`CLIENT_RANDOM …`), what Wireshark
/// reads for TLS and DTLS.
pub const SECRETS_TLS_KEY_LOG: u32 = 0x544c_534b;
/// LINKTYPE_RAW: the packet starts with an IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u16 = 101;

/// Which way a packet went, as the EPB's `epb_flags` option says (bits 0-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received by the capturing host.
    Inbound,
    /// Sent by the capturing host.
    Outbound,
}

/// Appends pcapng blocks to a buffer. Start with [`Writer::section`].
#[derive(Debug, Default)]
pub struct Writer;

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

/// Appends one option (code, length, value, padding).
fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&value[..usize::from(len)]);
    out.resize(out.len() + pad4(usize::from(len)), 0);
}

/// Writes a block of type `typ` whose body `body` appends after the
/// header, and fills in both length fields.
fn block(out: &mut Vec<u8>, typ: u32, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&typ.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    body(out);
    out.resize(out.len() + pad4(out.len() - start), 0);
    let total = u32::try_from(out.len() - start + 4).unwrap_or(u32::MAX);
    out.extend_from_slice(&total.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&total.to_le_bytes());
}

impl Writer {
    /// A Section Header Block naming rtclab as the writing application.
    pub fn section(out: &mut Vec<u8>) {
        block(out, SHB, |o| {
            o.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
            o.extend_from_slice(&1u16.to_le_bytes());
            o.extend_from_slice(&0u16.to_le_bytes());
            o.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
            option(o, 4, b"rtclab"); // shb_userappl
            option(o, 0, &[]);
        });
    }

    /// An Interface Description Block: LINKTYPE_RAW, nanosecond timestamps,
    /// `name` (if_name) and `description` (if_description).
    pub fn interface(out: &mut Vec<u8>, name: &str, description: &str) {
        block(out, IDB, |o| {
            o.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
            o.extend_from_slice(&0u16.to_le_bytes());
            o.extend_from_slice(&0u32.to_le_bytes()); // no snap length
            option(o, 2, name.as_bytes());
            option(o, 3, description.as_bytes());
            option(o, 9, &[9]); // if_tsresol: 10^-9 s
            option(o, 0, &[]);
        });
    }

    /// An Enhanced Packet Block on interface `iface` at `time` (since the
    /// Unix epoch, nanoseconds kept).
    pub fn packet(
        out: &mut Vec<u8>,
        iface: u32,
        time: Duration,
        direction: Option<Direction>,
        data: &[u8],
    ) {
        let ns = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        block(out, EPB, |o| {
            o.extend_from_slice(&iface.to_le_bytes());
            o.extend_from_slice(&((ns >> 32) as u32).to_le_bytes());
            o.extend_from_slice(&(ns as u32).to_le_bytes());
            o.extend_from_slice(&len.to_le_bytes());
            o.extend_from_slice(&len.to_le_bytes());
            o.extend_from_slice(&data[..len as usize]);
            o.resize(o.len() + pad4(data.len()), 0);
            if let Some(d) = direction {
                let flags: u32 = match d {
                    Direction::Inbound => 1,
                    Direction::Outbound => 2,
                };
                option(o, 2, &flags.to_le_bytes()); // epb_flags
                option(o, 0, &[]);
            }
        });
    }

    /// A Decryption Secrets Block of TLS key log lines (each ending in a
    /// newline), which Wireshark applies to the packets after it.
    pub fn secrets(out: &mut Vec<u8>, key_log: &str) {
        let len = u32::try_from(key_log.len()).unwrap_or(u32::MAX);
        block(out, DSB, |o| {
            o.extend_from_slice(&SECRETS_TLS_KEY_LOG.to_le_bytes());
            o.extend_from_slice(&len.to_le_bytes());
            o.extend_from_slice(&key_log.as_bytes()[..len as usize]);
        });
    }
}

/// Why a capture file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Neither a pcapng Section Header Block nor a classic pcap header.
    NotACapture,
    /// A block's length field is wrong (shorter than a block, not a
    /// multiple of 4, beyond the file, or not repeated at its end).
    BadBlockLength {
        /// Where the block starts.
        offset: usize,
    },
    /// A packet block names an interface no IDB described.
    UnknownInterface {
        /// Where the block starts.
        offset: usize,
        /// The interface id.
        interface: u32,
    },
    /// A block's body is shorter than its fixed fields.
    Truncated {
        /// Where the block starts.
        offset: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotACapture => write!(f, "not a pcapng or pcap file"),
            Error::BadBlockLength { offset } => {
                write!(f, "pcapng block at offset {offset}: bad block length")
            }
            Error::UnknownInterface { offset, interface } => write!(
                f,
                "pcapng block at offset {offset}: interface {interface} was never described"
            ),
            Error::Truncated { offset } => {
                write!(f, "pcapng block at offset {offset}: truncated body")
            }
        }
    }
}

impl std::error::Error for Error {}

/// An interface a capture describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its link type (LINKTYPE_*).
    pub link_type: u16,
    /// `if_name`, empty if none.
    pub name: String,
    /// `if_description`, empty if none.
    pub description: String,
    /// Timestamp units per second.
    units_per_second: u64,
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Index into [`Capture::interfaces`].
    pub interface: usize,
    /// Since the Unix epoch.
    pub time: Duration,
    /// `epb_flags` direction, if given.
    pub direction: Option<Direction>,
    /// The captured bytes (link-layer frame).
    pub data: &'a [u8],
}

/// A capture file read whole: interfaces, packets in file order, and the
/// TLS key log lines of every Decryption Secrets Block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture<'a> {
    /// Every interface, sections concatenated.
    pub interfaces: Vec<Interface>,
    /// Every packet, in file order.
    pub packets: Vec<Packet<'a>>,
    /// The TLS key log text of every DSB, in order.
    pub key_log: String,
}

/// A little reader over a byte order.
#[derive(Clone, Copy)]
struct Endian(bool); // true: big-endian

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.0 {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        })
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.0 {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        })
    }
}

/// The options of a block body (from `at`), as (code, value) pairs.
fn options(e: Endian, body: &[u8], mut at: usize) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while let (Some(code), Some(len)) = (e.u16(body, at), e.u16(body, at + 2)) {
        if code == 0 {
            break;
        }
        let len = usize::from(len);
        let Some(value) = body.get(at + 4..at + 4 + len) else {
            break;
        };
        v.push((code, value));
        at += 4 + len + pad4(len);
    }
    v
}

fn units(tsresol: u8) -> u64 {
    let exp = u32::from(tsresol & 0x7f);
    if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp).unwrap_or(u64::MAX)
    } else {
        2u64.checked_pow(exp).unwrap_or(u64::MAX)
    }
}

fn to_duration(ticks: u64, units_per_second: u64) -> Duration {
    let units = units_per_second.max(1);
    let secs = ticks / units;
    let rest = ticks % units;
    let nanos = (u128::from(rest) * 1_000_000_000 / u128::from(units)) as u32;
    Duration::new(secs, nanos)
}

/// Reads a pcapng (or classic pcap) file.
pub fn read(data: &[u8]) -> Result<Capture<'_>, Error> {
    match data.get(..4) {
        Some(m) if m == SHB.to_le_bytes() => read_pcapng(data),
        Some(_) => read_pcap(data),
        None => Err(Error::NotACapture),
    }
}

fn read_pcapng(data: &[u8]) -> Result<Capture<'_>, Error> {
    let mut cap = Capture::default();
    let mut e = Endian(false);
    // Interfaces of the current section start here in `cap.interfaces`.
    let mut section_base = 0usize;
    let mut at = 0usize;
    while at < data.len() {
        let offset = at;
        let Some(typ) = Endian(false).u32(data, at) else {
            return Err(Error::Truncated { offset });
        };
        if typ == SHB {
            let magic = data
                .get(at + 8..at + 12)
                .ok_or(Error::Truncated { offset })?;
            e = if magic == BYTE_ORDER_MAGIC.to_le_bytes() {
                Endian(false)
            } else if magic == BYTE_ORDER_MAGIC.to_be_bytes() {
                Endian(true)
            } else {
                return Err(Error::NotACapture);
            };
            section_base = cap.interfaces.len();
        } else if offset == 0 {
            return Err(Error::NotACapture);
        }
        let typ = e.u32(data, at).ok_or(Error::Truncated { offset })?;
        let len = e.u32(data, at + 4).ok_or(Error::Truncated { offset })? as usize;
        if len < 12 || len % 4 != 0 || len > data.len() - at {
            return Err(Error::BadBlockLength { offset });
        }
        if e.u32(data, at + len - 4) != Some(len as u32) {
            return Err(Error::BadBlockLength { offset });
        }
        let body = &data[at + 8..at + len - 4];
        at += len;
        match typ {
            IDB => {
                let link_type = e.u16(body, 0).ok_or(Error::Truncated { offset })?;
                if body.len() < 8 {
                    return Err(Error::Truncated { offset });
                }
                let mut i = Interface {
                    link_type,
                    name: String::new(),
                    description: String::new(),
                    units_per_second: 1_000_000,
                };
                for (code, value) in options(e, body, 8) {
                    match code {
                        2 => i.name = String::from_utf8_lossy(value).into_owned(),
                        3 => i.description = String::from_utf8_lossy(value).into_owned(),
                        9 => i.units_per_second = units(value.first().copied().unwrap_or(6)),
                        _ => {}
                    }
                }
                cap.interfaces.push(i);
            }
            EPB => {
                let (Some(iface), Some(hi), Some(lo), Some(caplen)) = (
                    e.u32(body, 0),
                    e.u32(body, 4),
                    e.u32(body, 8),
                    e.u32(body, 12),
                ) else {
                    return Err(Error::Truncated { offset });
                };
                let caplen = caplen as usize;
                let packet = body
                    .get(20..20usize.saturating_add(caplen))
                    .ok_or(Error::Truncated { offset })?;
                let index = section_base.saturating_add(iface as usize);
                let Some(interface) = cap.interfaces.get(index) else {
                    return Err(Error::UnknownInterface {
                        offset,
                        interface: iface,
                    });
                };
                let ticks = (u64::from(hi) << 32) | u64::from(lo);
                let mut direction = None;
                for (code, value) in options(e, body, 20 + caplen + pad4(caplen)) {
                    if code == 2 {
                        direction = match e.u32(value, 0).map(|f| f & 3) {
                            Some(1) => Some(Direction::Inbound),
                            Some(2) => Some(Direction::Outbound),
                            _ => None,
                        };
                    }
                }
                cap.packets.push(Packet {
                    interface: index,
                    time: to_duration(ticks, interface.units_per_second),
                    direction,
                    data: packet,
                });
            }
            SPB => {
                // The Simple Packet Block is on the section's first interface.
                if cap.interfaces.len() <= section_base {
                    return Err(Error::UnknownInterface {
                        offset,
                        interface: 0,
                    });
                }
                cap.packets.push(Packet {
                    interface: section_base,
                    time: Duration::ZERO,
                    direction: None,
                    data: body.get(4..).ok_or(Error::Truncated { offset })?,
                });
            }
            DSB => {
                let (Some(kind), Some(slen)) = (e.u32(body, 0), e.u32(body, 4)) else {
                    return Err(Error::Truncated { offset });
                };
                let secrets = body
                    .get(8..8usize.saturating_add(slen as usize))
                    .ok_or(Error::Truncated { offset })?;
                if kind == SECRETS_TLS_KEY_LOG {
                    cap.key_log.push_str(&String::from_utf8_lossy(secrets));
                    if !cap.key_log.ends_with('\n') {
                        cap.key_log.push('\n');
                    }
                }
            }
            _ => {} // other blocks (statistics, name resolution, custom)
        }
    }
    Ok(cap)
}

/// A classic pcap file (any of the four magics).
fn read_pcap(data: &[u8]) -> Result<Capture<'_>, Error> {
    let magic = Endian(false).u32(data, 0).ok_or(Error::NotACapture)?;
    let (e, nanos) = match magic {
        0xa1b2_c3d4 => (Endian(false), false),
        0xa1b2_3c4d => (Endian(false), true),
        0xd4c3_b2a1 => (Endian(true), false),
        0x4d3c_b2a1 => (Endian(true), true),
        _ => return Err(Error::NotACapture),
    };
    let link = e.u32(data, 20).ok_or(Error::NotACapture)?;
    let mut cap = Capture {
        interfaces: vec![Interface {
            link_type: link as u16,
            name: String::new(),
            description: String::new(),
            units_per_second: if nanos { 1_000_000_000 } else { 1_000_000 },
        }],
        ..Capture::default()
    };
    let mut at = 24;
    while at < data.len() {
        let offset = at;
        let (Some(secs), Some(frac), Some(caplen)) =
            (e.u32(data, at), e.u32(data, at + 4), e.u32(data, at + 8))
        else {
            return Err(Error::Truncated { offset });
        };
        let start = at + 16;
        let packet = data
            .get(start..start.saturating_add(caplen as usize))
            .ok_or(Error::Truncated { offset })?;
        at = start + packet.len();
        let units = cap.interfaces[0].units_per_second;
        cap.packets.push(Packet {
            interface: 0,
            time: Duration::from_secs(u64::from(secs)) + to_duration(u64::from(frac), units),
            direction: None,
            data: packet,
        });
    }
    Ok(cap)
}

/// A UDP datagram found inside a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Udp<'a> {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// The UDP payload (as long as the UDP length says, or what was captured).
    pub payload: &'a [u8],
}

/// The UDP datagram in a frame of `link_type`, if it holds one (not a
/// fragment, not another protocol).
pub fn udp(link_type: u16, frame: &[u8]) -> Option<Udp<'_>> {
    let (source, destination, udp) = transport(link_type, frame, 17)?;
    let sport = u16::from_be_bytes(udp.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(udp.get(2..4)?.try_into().ok()?);
    let len = usize::from(u16::from_be_bytes(udp.get(4..6)?.try_into().ok()?));
    let end = len.clamp(8, udp.len().max(8));
    Some(Udp {
        source: SocketAddr::new(source, sport),
        destination: SocketAddr::new(destination, dport),
        payload: udp.get(8..end)?,
    })
}

/// A TCP segment found inside a captured frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tcp<'a> {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination address and port.
    pub destination: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number.
    pub ack: u32,
    /// The flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
    pub flags: u8,
    /// The segment's data.
    pub payload: &'a [u8],
}

/// The TCP segment in a frame of `link_type`, if it holds one (RFC 9293
/// §3.1: the data starts after the data offset's 32-bit words).
pub fn tcp(link_type: u16, frame: &[u8]) -> Option<Tcp<'_>> {
    let (source, destination, tcp) = transport(link_type, frame, 6)?;
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(tcp.get(at..at + 4)?.try_into().ok()?))
    };
    let sport = u16::from_be_bytes(tcp.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(tcp.get(2..4)?.try_into().ok()?);
    let offset = usize::from(tcp.get(12)? >> 4) * 4;
    if offset < 20 {
        return None;
    }
    Some(Tcp {
        source: SocketAddr::new(source, sport),
        destination: SocketAddr::new(destination, dport),
        seq: word(4)?,
        ack: word(8)?,
        flags: *tcp.get(13)?,
        payload: tcp.get(offset..)?,
    })
}

/// The addresses and transport bytes (as long as the IP header says, at
/// most what was captured) of an unfragmented IP packet of `protocol` in
/// a frame of `link_type`.
fn transport(link_type: u16, frame: &[u8], protocol: u8) -> Option<(IpAddr, IpAddr, &[u8])> {
    let ip = match link_type {
        101 | 228 | 229 => frame,
        // Ethernet: skip VLAN tags to the EtherType of IPv4/IPv6.
        1 => {
            let mut at = 12;
            loop {
                let t = u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?);
                match t {
                    0x8100 | 0x88a8 => at += 4,
                    0x0800 | 0x86dd => break frame.get(at + 2..)?,
                    _ => return None,
                }
            }
        }
        113 => frame.get(16..)?, // Linux cooked v1: 16-byte header
        276 => frame.get(20..)?, // Linux cooked v2: 20-byte header
        0 => frame.get(4..)?,    // BSD loopback: 4-byte family
        _ => return None,
    };
    let length = |at: usize| -> Option<usize> {
        Some(usize::from(u16::from_be_bytes(
            ip.get(at..at + 2)?.try_into().ok()?,
        )))
    };
    match ip.first()? >> 4 {
        4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes(ip.get(6..8)?.try_into().ok()?);
            if ip.get(9) != Some(&protocol) || ihl < 20 || frag & 0x3fff != 0 {
                return None;
            }
            let s: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            let end = length(2)?.clamp(ihl, ip.len().max(ihl));
            Some((
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                ip.get(ihl..end)?,
            ))
        }
        6 => {
            // Extension headers are not followed: WebRTC's UDP has none.
            if ip.get(6) != Some(&protocol) {
                return None;
            }
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            let end = (length(4)? + 40).min(ip.len().max(40));
            Some((
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                ip.get(40..end)?,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_blocks_read_back() {
        let mut out = Vec::new();
        Writer::section(&mut out);
        Writer::interface(&mut out, "192.0.2.1", "peer A");
        Writer::secrets(&mut out, "CLIENT_RANDOM 00 11\n");
        let mut ip = Vec::new();
        crate::sim::ip_udp_packet(
            "192.0.2.1:5000".parse().unwrap(),
            "198.51.100.2:6000".parse().unwrap(),
            b"hello",
            7,
            &mut ip,
        );
        Writer::packet(
            &mut out,
            0,
            Duration::new(1_700_000_000, 123_456_789),
            Some(Direction::Outbound),
            &ip,
        );
        assert_eq!(out.len() % 4, 0);
        let cap = read(&out).unwrap();
        assert_eq!(cap.interfaces.len(), 1);
        assert_eq!(cap.interfaces[0].name, "192.0.2.1");
        assert_eq!(cap.interfaces[0].description, "peer A");
        assert_eq!(cap.key_log, "CLIENT_RANDOM 00 11\n");
        assert_eq!(cap.packets.len(), 1);
        let p = &cap.packets[0];
        assert_eq!(p.time, Duration::new(1_700_000_000, 123_456_789));
        assert_eq!(p.direction, Some(Direction::Outbound));
        let u = udp(cap.interfaces[0].link_type, p.data).unwrap();
        assert_eq!(u.payload, b"hello");
        assert_eq!(u.source.to_string(), "192.0.2.1:5000");
        assert_eq!(u.destination.to_string(), "198.51.100.2:6000");
    }

    #[test]
    fn classic_pcap_reads() {
        let r = crate::sim::CaptureRecord {
            time: Duration::new(3, 250),
            host: crate::sim::HostId(0),
            kind: crate::sim::CaptureKind::Sent,
            source: "[2001:db8::1]:1".parse().unwrap(),
            destination: "[2001:db8::2]:2".parse().unwrap(),
            contents: b"abc".to_vec(),
        };
        let mut out = Vec::new();
        crate::sim::write_pcap([&r], &mut out);
        let cap = read(&out).unwrap();
        assert_eq!(cap.packets.len(), 1);
        assert_eq!(cap.packets[0].time, Duration::new(3, 250));
        let u = udp(cap.interfaces[0].link_type, cap.packets[0].data).unwrap();
        assert_eq!((u.payload, u.destination), (&b"abc"[..], r.destination));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(read(b""), Err(Error::NotACapture));
        assert_eq!(
            read(b"\x0a\x0d\x0d\x0a"),
            Err(Error::Truncated { offset: 0 })
        );
        let mut out = Vec::new();
        Writer::section(&mut out);
        let n = out.len();
        out[4] = 200; // a length beyond the file
        assert!(matches!(
            read(&out),
            Err(Error::BadBlockLength { offset: 0 })
        ));
        out[4] = n as u8;
        Writer::packet(&mut out, 3, Duration::ZERO, None, b"x");
        assert!(matches!(
            read(&out),
            Err(Error::UnknownInterface { interface: 3, .. })
        ));
        for cut in 0..out.len() {
            let _ = read(&out[..cut]);
        }
    }

    proptest::proptest! {
        #[test]
        fn packets_round_trip(
            packets in proptest::collection::vec(
                (0u64..4_000_000_000_000_000_000, proptest::collection::vec(proptest::num::u8::ANY, 0..300), proptest::bool::ANY),
                0..8),
            secrets in "[ -~]{0,80}",
        ) {
            let mut out = Vec::new();
            Writer::section(&mut out);
            Writer::interface(&mut out, "a", "");
            Writer::interface(&mut out, "b", "");
            Writer::secrets(&mut out, &secrets);
            for (i, (ns, data, inbound)) in packets.iter().enumerate() {
                let d = if *inbound { Direction::Inbound } else { Direction::Outbound };
                Writer::packet(&mut out, (i % 2) as u32, Duration::from_nanos(*ns), Some(d), data);
            }
            let cap = read(&out).unwrap();
            proptest::prop_assert_eq!(cap.packets.len(), packets.len());
            for (i, (p, (ns, data, inbound))) in cap.packets.iter().zip(&packets).enumerate() {
                proptest::prop_assert_eq!(p.interface, i % 2);
                proptest::prop_assert_eq!(p.time, Duration::from_nanos(*ns));
                proptest::prop_assert_eq!(p.data, &data[..]);
                proptest::prop_assert_eq!(p.direction == Some(Direction::Inbound), *inbound);
            }
            if !secrets.is_empty() {
                proptest::prop_assert!(cap.key_log.starts_with(&secrets));
            }
        }
    }
}
