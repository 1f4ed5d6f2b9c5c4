//! Writing captured datagrams as a pcap file, to open in Wireshark.
//!
//! The simulator only moves UDP payloads; this module wraps each record in
//! the IPv4 (RFC 791) or IPv6 (RFC 8200) and UDP (RFC 768) headers it would
//! have had on a real wire, with correct checksums, so Wireshark's dissectors
//! (STUN, DTLS, RTP, …) decode a simulated session like a captured one.
//!
//! ```text
//!   pcap global header (24 bytes, nanosecond timestamps, LINKTYPE_RAW)
//!   per record: record header (16) │ IPv4 (20) or IPv6 (40) │ UDP (8) │ payload
//! ```
//!
//! Timestamps are virtual time since the simulation started, shown by
//! Wireshark as seconds after 1970-01-01.

use std::net::{IpAddr, Ipv6Addr};

use super::CaptureRecord;

/// The pcap magic number for nanosecond-resolution timestamps.
const MAGIC_NS: u32 = 0xa1b2_3c4d;
/// LINKTYPE_RAW: each packet starts with an IPv4 or IPv6 header.
const LINKTYPE_RAW: u32 = 101;
/// UDP's IP protocol number.
const UDP: u8 = 17;

/// Appends a pcap file holding `records` to `out` and returns how many
/// packets it wrote.
///
/// Records whose source and destination are of different address families,
/// or whose payload does not fit a UDP datagram (65 507 bytes over IPv4,
/// 65 527 over IPv6), are skipped. Pick the records you want first: the
/// `Delivered` ones show what receivers saw (after NATs), the `Sent` ones
/// what senders emitted; both together show each datagram twice.
pub fn write_pcap<'a>(
    records: impl IntoIterator<Item = &'a CaptureRecord>,
    out: &mut Vec<u8>,
) -> usize {
    out.extend_from_slice(&MAGIC_NS.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes()); // version 2.4
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    out.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    out.extend_from_slice(&65_535u32.to_le_bytes()); // snaplen
    out.extend_from_slice(&LINKTYPE_RAW.to_le_bytes());
    let mut written = 0;
    let mut packet = Vec::new();
    for (i, r) in records.into_iter().enumerate() {
        packet.clear();
        if !ip_packet(r, i as u16, &mut packet) {
            continue;
        }
        let secs = u32::try_from(r.time.as_secs()).unwrap_or(u32::MAX);
        out.extend_from_slice(&secs.to_le_bytes());
        out.extend_from_slice(&r.time.subsec_nanos().to_le_bytes());
        // ip_packet keeps packets under 65 536 bytes, so this cannot truncate.
        let len = packet.len() as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&packet);
        written += 1;
    }
    written
}

/// The ones' complement sum of RFC 1071, over 16-bit big-endian words.
fn sum16(mut acc: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Writes the IP + UDP packet of `r` into `out`; false if it cannot be one.
fn ip_packet(r: &CaptureRecord, id: u16, out: &mut Vec<u8>) -> bool {
    ip_udp_packet(r.source, r.destination, &r.contents, id, out)
}

/// Appends to `out` the IPv4 or IPv6 packet (identification `id`) holding
/// a UDP datagram of `payload` from `src` to `dst`, checksums filled in;
/// false (nothing written) if the families differ or it does not fit.
pub(crate) fn ip_udp_packet(
    src: std::net::SocketAddr,
    dst: std::net::SocketAddr,
    payload: &[u8],
    id: u16,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(udp_len) = u16::try_from(payload.len() + 8) else {
        return false;
    };
    let mut udp = Vec::with_capacity(usize::from(udp_len));
    udp.extend_from_slice(&src.port().to_be_bytes());
    udp.extend_from_slice(&dst.port().to_be_bytes());
    udp.extend_from_slice(&udp_len.to_be_bytes());
    udp.extend_from_slice(&[0, 0]); // checksum, filled in by ip_transport_packet
    udp.extend_from_slice(payload);
    ip_transport_packet(src.ip(), dst.ip(), UDP, &mut udp, 6, id, out)
}

/// Appends to `out` the IPv4 or IPv6 packet (identification `id`) of
/// transport `protocol` (17 UDP, 6 TCP) holding `segment`, after filling
/// in the segment's checksum (the 16 bits at `checksum_at`, zero on entry)
/// over the pseudo-header (RFC 768; RFC 9293 §3.1; RFC 8200 §8.1); false
/// (nothing written) if the families differ or it does not fit.
pub(crate) fn ip_transport_packet(
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    segment: &mut [u8],
    checksum_at: usize,
    id: u16,
    out: &mut Vec<u8>,
) -> bool {
    let Ok(len) = u16::try_from(segment.len()) else {
        return false;
    };
    if segment.len() < checksum_at + 2 {
        return false;
    }
    let checksum = |acc: u32| match fold(acc) {
        0 if protocol == UDP => 0xffff, // zero means "no checksum" in UDP
        c => c,
    };
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let Ok(total) = u16::try_from(usize::from(len) + 20) else {
                return false;
            };
            // Pseudo-header: source, destination, protocol, length.
            let mut acc = sum16(0, &s.octets());
            acc = sum16(acc, &d.octets());
            acc += u32::from(protocol) + u32::from(len);
            let ck = checksum(sum16(acc, segment));
            segment[checksum_at..checksum_at + 2].copy_from_slice(&ck.to_be_bytes());
            let mut ip = [0u8; 20];
            ip[0] = 0x45; // version 4, 5 words of header
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6] = 0x40; // Don't Fragment
            ip[8] = 64; // TTL
            ip[9] = protocol;
            ip[12..16].copy_from_slice(&s.octets());
            ip[16..20].copy_from_slice(&d.octets());
            let ck = fold(sum16(0, &ip));
            ip[10..12].copy_from_slice(&ck.to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let ck = checksum(v6_pseudo(s, d, protocol, len, segment));
            segment[checksum_at..checksum_at + 2].copy_from_slice(&ck.to_be_bytes());
            let mut ip = [0u8; 40];
            ip[0] = 0x60; // version 6
            ip[4..6].copy_from_slice(&len.to_be_bytes());
            ip[6] = protocol;
            ip[7] = 64; // hop limit
            ip[8..24].copy_from_slice(&s.octets());
            ip[24..40].copy_from_slice(&d.octets());
            out.extend_from_slice(&ip);
        }
        _ => return false,
    }
    out.extend_from_slice(segment);
    true
}

/// RFC 8200 §8.1: the IPv6 pseudo-header sum plus the segment.
fn v6_pseudo(s: Ipv6Addr, d: Ipv6Addr, protocol: u8, len: u16, segment: &[u8]) -> u32 {
    let mut acc = sum16(0, &s.octets());
    acc = sum16(acc, &d.octets());
    acc += u32::from(len) + u32::from(protocol);
    sum16(acc, segment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{CaptureKind, HostId};
    use std::time::Duration;

    fn record(src: &str, dst: &str, contents: &[u8]) -> CaptureRecord {
        CaptureRecord {
            time: Duration::new(3, 250),
            host: HostId(0),
            kind: CaptureKind::Delivered,
            source: src.parse().expect("test address"),
            destination: dst.parse().expect("test address"),
            contents: contents.to_vec(),
        }
    }

    #[test]
    fn writes_checksummed_ipv4_and_ipv6_packets() {
        let records = [
            record("10.0.0.2:5000", "192.0.2.1:3478", b"\x00\x01\x00\x00abc"),
            record("[2001:db8::1]:5000", "[2001:db8::2]:3478", b"hello"),
            record("10.0.0.2:5000", "[2001:db8::2]:3478", b"mixed"),
        ];
        let mut out = Vec::new();
        assert_eq!(write_pcap(&records, &mut out), 2);
        assert_eq!(&out[..4], &MAGIC_NS.to_le_bytes());
        assert_eq!(&out[20..24], &LINKTYPE_RAW.to_le_bytes());

        // First record: IPv4.
        let rec = &out[24..];
        assert_eq!(&rec[0..4], &3u32.to_le_bytes());
        assert_eq!(&rec[4..8], &250u32.to_le_bytes());
        let len = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
        assert_eq!(len, 20 + 8 + 7);
        let ip = &rec[16..16 + len];
        assert_eq!(ip[0], 0x45);
        assert_eq!(fold(sum16(0, &ip[..20])), 0, "IPv4 header checksum");
        let udp = &ip[20..];
        assert_eq!(u16::from_be_bytes([udp[0], udp[1]]), 5000);
        assert_eq!(u16::from_be_bytes([udp[2], udp[3]]), 3478);
        let mut acc = sum16(0, &ip[12..20]);
        acc += u32::from(UDP) + udp.len() as u32;
        assert_eq!(fold(sum16(acc, udp)), 0, "UDP checksum");
        assert_eq!(&udp[8..], b"\x00\x01\x00\x00abc");

        // Second record: IPv6.
        let rec = &rec[16 + len..];
        let len = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]) as usize;
        assert_eq!(len, 40 + 8 + 5);
        let ip = &rec[16..16 + len];
        assert_eq!(ip[0] >> 4, 6);
        let s: [u8; 16] = ip[8..24].try_into().expect("16 bytes");
        let d: [u8; 16] = ip[24..40].try_into().expect("16 bytes");
        let udp = &ip[40..];
        let sum = v6_pseudo(s.into(), d.into(), UDP, udp.len() as u16, udp);
        assert_eq!(fold(sum), 0, "UDP checksum over IPv6");
        assert_eq!(rec.len(), 16 + len, "nothing after the last record");
    }

    #[test]
    fn oversized_payloads_are_skipped() {
        let big = vec![0u8; 70_000];
        let records = [record("10.0.0.2:1", "10.0.0.3:2", &big)];
        let mut out = Vec::new();
        assert_eq!(write_pcap(&records, &mut out), 0);
        assert_eq!(out.len(), 24);
    }
}
