//! RTCP: reports and feedback (RFC 3550 §6, RFC 4585, RFC 5104, RFC 5506,
//! REMB and transport-wide CC drafts).
//!
//! Every RTCP packet starts with the same 4-byte header (RFC 3550 §6.4.1):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|  RC/FMT |      PT       |  length (32-bit words - 1)    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Several packets are stacked in one datagram (a compound packet, §6.1); the
//! length field finds the next. RFC 3550 wants an SR or RR first; RFC 5506
//! (reduced-size RTCP, negotiated with `a=rtcp-rsize`, which WebRTC always
//! does) lets a datagram carry any single packet, e.g. a lone NACK.
//!
//! Packet types parsed into [`RtcpPacket`]: SR (200), RR (201), SDES (202), BYE
//! (203), APP (204), RTPFB (205: generic NACK FMT 1, transport-cc FMT 15) and
//! PSFB (206: PLI FMT 1, FIR FMT 4, REMB in AFB FMT 15). Anything else becomes
//! [`RtcpPacket::Unknown`], kept whole so it can be skipped or written back.

use super::twcc::TransportCc;
use super::{Error, Reader, truncated};

/// RFC 3550 §6.4.1: sender report.
pub const PT_SR: u8 = 200;
/// RFC 3550 §6.4.2: receiver report.
pub const PT_RR: u8 = 201;
/// RFC 3550 §6.5: source description.
pub const PT_SDES: u8 = 202;
/// RFC 3550 §6.6: goodbye.
pub const PT_BYE: u8 = 203;
/// RFC 3550 §6.7: application-defined.
pub const PT_APP: u8 = 204;
/// RFC 4585 §6.1: transport-layer feedback.
pub const PT_RTPFB: u8 = 205;
/// RFC 4585 §6.1: payload-specific feedback.
pub const PT_PSFB: u8 = 206;

/// RFC 3550 §6.4.1: one reception report block (24 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction of packets lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received (cycles << 16 | seq).
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP timestamp of the last SR received (LSR).
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s (DLSR).
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(r: &mut Reader<'_>) -> Result<ReportBlock, Error> {
        let ssrc = r.u32()?;
        let fraction_lost = r.u8()?;
        let lost = r.u24()?;
        // Sign-extend the 24-bit two's-complement value.
        let cumulative_lost = ((lost << 8) as i32) >> 8;
        Ok(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost,
            highest_seq: r.u32()?,
            jitter: r.u32()?,
            last_sr: r.u32()?,
            delay_since_last_sr: r.u32()?,
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        // Clamp to the 24-bit signed range (RFC 3550 §6.4.1).
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7F_FFFF) as u32 & 0xFF_FFFF;
        out.extend_from_slice(&(lost | (self.fraction_lost as u32) << 24).to_be_bytes());
        out.extend_from_slice(&self.highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

/// RFC 3550 §6.4.1: sender report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderReport {
    /// The sender.
    pub ssrc: u32,
    /// 64-bit NTP timestamp (seconds since 1900 << 32 | fraction).
    pub ntp_time: u64,
    /// The same instant in the RTP media clock.
    pub rtp_time: u32,
    /// Packets sent so far.
    pub packet_count: u32,
    /// Payload octets sent so far.
    pub octet_count: u32,
    /// At most 31 reception reports.
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension (a multiple of 4 bytes).
    pub profile_extension: Vec<u8>,
}

/// RFC 3550 §6.4.2: receiver report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// The reporter.
    pub ssrc: u32,
    /// At most 31 reception reports.
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension (a multiple of 4 bytes).
    pub profile_extension: Vec<u8>,
}

/// RFC 3550 §6.5: SDES item types.
pub mod sdes_type {
    /// Canonical name, the one WebRTC uses.
    pub const CNAME: u8 = 1;
    /// User name.
    pub const NAME: u8 = 2;
    /// Private extensions.
    pub const PRIV: u8 = 8;
}

/// One SDES chunk: a source and its items `(type, value)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesChunk {
    /// The source described.
    pub ssrc: u32,
    /// `(type, value)` items; type is never 0 (that ends the list), value ≤ 255 bytes.
    pub items: Vec<(u8, Vec<u8>)>,
}

/// RFC 3550 §6.5: source description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sdes {
    /// At most 31 chunks.
    pub chunks: Vec<SdesChunk>,
}

/// RFC 3550 §6.6: goodbye.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bye {
    /// The sources leaving (at most 31).
    pub sources: Vec<u32>,
    /// Optional reason (≤ 255 bytes).
    pub reason: Option<Vec<u8>>,
}

/// RFC 3550 §6.7: application-defined packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct App {
    /// 5-bit subtype (in the count field).
    pub subtype: u8,
    /// The sender.
    pub ssrc: u32,
    /// Four ASCII characters.
    pub name: [u8; 4],
    /// Application data (a multiple of 4 bytes).
    pub data: Vec<u8>,
}

/// RFC 4585 §6.2.1: generic NACK. Each `(pid, blp)` pair names packet `pid`
/// and, for each bit i set in `blp`, packet `pid + i + 1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nack {
    /// The sender of this feedback.
    pub sender_ssrc: u32,
    /// The media source the losses are on.
    pub media_ssrc: u32,
    /// `(PID, BLP)` pairs.
    pub pairs: Vec<(u16, u16)>,
}

impl Nack {
    /// Builds the pairs from lost sequence numbers (in ascending wrap-aware order).
    // ANCHOR: nack_pairs
    pub fn from_lost(
        sender_ssrc: u32,
        media_ssrc: u32,
        lost: impl IntoIterator<Item = u16>,
    ) -> Nack {
        let mut pairs: Vec<(u16, u16)> = Vec::new();
        for seq in lost {
            if let Some((pid, blp)) = pairs.last_mut() {
                let d = seq.wrapping_sub(*pid);
                if (1..=16).contains(&d) {
                    *blp |= 1 << (d - 1);
                    continue;
                }
            }
            pairs.push((seq, 0));
        }
        Nack {
            sender_ssrc,
            media_ssrc,
            pairs,
        }
    }
    // ANCHOR_END: nack_pairs

    /// The lost sequence numbers named by all pairs.
    pub fn lost(&self) -> impl Iterator<Item = u16> + '_ {
        self.pairs.iter().flat_map(|&(pid, blp)| {
            std::iter::once(pid).chain(
                (0..16)
                    .filter(move |i| blp & (1 << i) != 0)
                    .map(move |i| pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// RFC 4585 §6.3.1: picture loss indication (asks for a keyframe).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pli {
    /// The sender of this feedback.
    pub sender_ssrc: u32,
    /// The media source that should send a keyframe.
    pub media_ssrc: u32,
}

/// RFC 5104 §4.3.1: full intra request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fir {
    /// The sender of this feedback (media source field is 0, §4.3.1.2).
    pub sender_ssrc: u32,
    /// `(ssrc, command sequence number)` entries.
    pub entries: Vec<(u32, u8)>,
}

/// draft-alvestrand-rmcat-remb-03 §2.2: receiver estimated max bitrate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remb {
    /// The sender of this feedback.
    pub sender_ssrc: u32,
    /// Estimated bitrate in bit/s (written as an 18-bit mantissa and 6-bit
    /// exponent, rounded down).
    pub bitrate: u64,
    /// The media sources the estimate applies to (at most 255).
    pub ssrcs: Vec<u32>,
}

/// An RTCP packet this module does not interpret, kept whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unknown {
    /// The packet type.
    pub packet_type: u8,
    /// The 5-bit count / format field.
    pub count: u8,
    /// The body after the 4-byte header, padding removed.
    pub body: Vec<u8>,
}

/// One RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpPacket {
    /// SR (200).
    SenderReport(SenderReport),
    /// RR (201).
    ReceiverReport(ReceiverReport),
    /// SDES (202).
    Sdes(Sdes),
    /// BYE (203).
    Bye(Bye),
    /// APP (204).
    App(App),
    /// RTPFB FMT 1.
    Nack(Nack),
    /// RTPFB FMT 15.
    TransportCc(TransportCc),
    /// PSFB FMT 1.
    Pli(Pli),
    /// PSFB FMT 4.
    Fir(Fir),
    /// PSFB FMT 15 with the "REMB" identifier.
    Remb(Remb),
    /// Any other type or format.
    Unknown(Unknown),
}

/// Iterates the packets of a compound RTCP datagram without copying the input.
///
/// A packet whose header is broken (bad version, length past the end) ends the
/// iteration after yielding the error, since the next boundary is unknown.
#[derive(Debug, Clone)]
pub struct RtcpIter<'a> {
    buf: &'a [u8],
    done: bool,
}

impl<'a> RtcpIter<'a> {
    /// Iterates the packets in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        RtcpIter { buf, done: false }
    }
}

impl Iterator for RtcpIter<'_> {
    type Item = Result<RtcpPacket, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.buf.is_empty() {
            return None;
        }
        match split_packet(self.buf) {
            Ok((count, pt, body, rest)) => {
                self.buf = rest;
                Some(RtcpPacket::parse_body(count, pt, body))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The first packet of a datagram: `(count, pt, body without padding, rest)`.
type Split<'a> = (u8, u8, &'a [u8], &'a [u8]);

/// Splits off the first packet.
fn split_packet(buf: &[u8]) -> Result<Split<'_>, Error> {
    if buf.len() < 4 {
        return Err(truncated("RTCP header", 4, buf.len()));
    }
    if buf[0] >> 6 != 2 {
        return Err(Error::BadVersion(buf[0] >> 6));
    }
    let len = 4 * (u16::from_be_bytes([buf[2], buf[3]]) as usize + 1);
    if buf.len() < len {
        return Err(truncated("RTCP packet", len, buf.len()));
    }
    let mut body = &buf[4..len];
    if buf[0] & 0x20 != 0 {
        // RFC 3550 §6.4.1: the last octet counts the padding, itself included.
        let count = buf[len - 1];
        if count == 0 || count as usize > body.len() {
            return Err(Error::BadPadding {
                count,
                available: body.len(),
            });
        }
        body = &body[..body.len() - count as usize];
    }
    Ok((buf[0] & 0x1F, buf[1], body, &buf[len..]))
}

/// True if the first byte pair looks like RTCP rather than RTP on a muxed port
/// (RFC 5761 §4: RTCP packet types 192..=223 take the place of RTP's M bit + PT).
pub fn is_rtcp(buf: &[u8]) -> bool {
    buf.len() >= 2 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1])
}

impl RtcpPacket {
    /// Parses a compound (or, with `reduced_size`, RFC 5506 reduced-size) RTCP
    /// datagram.
    ///
    /// RFC 3550 §6.1: a compound packet starts with an SR or RR; RFC 5506 §3.4.2
    /// lets a datagram hold other packets alone when `a=rtcp-rsize` was agreed.
    /// Unknown packet types come back as [`RtcpPacket::Unknown`] for the caller
    /// to skip.
    pub fn parse_compound(buf: &[u8], reduced_size: bool) -> Result<Vec<RtcpPacket>, Error> {
        let mut out = Vec::new();
        for p in RtcpIter::new(buf) {
            out.push(p?);
        }
        match out.first() {
            None => Err(truncated("RTCP compound packet", 4, 0)),
            Some(RtcpPacket::SenderReport(_) | RtcpPacket::ReceiverReport(_)) => Ok(out),
            Some(_) if reduced_size => Ok(out),
            Some(_) => Err(Error::BadRtcp(
                "compound packet does not start with SR or RR",
            )),
        }
    }

    /// Parses exactly one packet from the start of `buf` (any trailing bytes are
    /// ignored).
    pub fn parse(buf: &[u8]) -> Result<RtcpPacket, Error> {
        let (count, pt, body, _) = split_packet(buf)?;
        RtcpPacket::parse_body(count, pt, body)
    }

    fn parse_body(count: u8, pt: u8, body: &[u8]) -> Result<RtcpPacket, Error> {
        let mut r = Reader::new("RTCP body", body);
        Ok(match pt {
            PT_SR => {
                let ssrc = r.u32()?;
                let ntp_time = (r.u32()? as u64) << 32 | r.u32()? as u64;
                let rtp_time = r.u32()?;
                let packet_count = r.u32()?;
                let octet_count = r.u32()?;
                let reports = parse_reports(&mut r, count)?;
                RtcpPacket::SenderReport(SenderReport {
                    ssrc,
                    ntp_time,
                    rtp_time,
                    packet_count,
                    octet_count,
                    reports,
                    profile_extension: r.rest().to_vec(),
                })
            }
            PT_RR => {
                let ssrc = r.u32()?;
                let reports = parse_reports(&mut r, count)?;
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc,
                    reports,
                    profile_extension: r.rest().to_vec(),
                })
            }
            PT_SDES => RtcpPacket::Sdes(parse_sdes(&mut r, count)?),
            PT_BYE => {
                let mut sources = Vec::new();
                for _ in 0..count {
                    sources.push(r.u32()?);
                }
                let reason = if r.remaining() > 0 {
                    let n = r.u8()? as usize;
                    Some(r.bytes(n)?.to_vec())
                } else {
                    None
                };
                RtcpPacket::Bye(Bye { sources, reason })
            }
            PT_APP => {
                let ssrc = r.u32()?;
                let n = r.bytes(4)?;
                RtcpPacket::App(App {
                    subtype: count,
                    ssrc,
                    name: [n[0], n[1], n[2], n[3]],
                    data: r.rest().to_vec(),
                })
            }
            PT_RTPFB | PT_PSFB => {
                let sender_ssrc = r.u32()?;
                let media_ssrc = r.u32()?;
                match (pt, count) {
                    (PT_RTPFB, 1) => {
                        let mut pairs = Vec::new();
                        while r.remaining() >= 4 {
                            pairs.push((r.u16()?, r.u16()?));
                        }
                        RtcpPacket::Nack(Nack {
                            sender_ssrc,
                            media_ssrc,
                            pairs,
                        })
                    }
                    (PT_RTPFB, 15) => RtcpPacket::TransportCc(TransportCc::parse_fci(
                        sender_ssrc,
                        media_ssrc,
                        r.rest(),
                    )?),
                    (PT_PSFB, 1) => RtcpPacket::Pli(Pli {
                        sender_ssrc,
                        media_ssrc,
                    }),
                    (PT_PSFB, 4) => {
                        let mut entries = Vec::new();
                        while r.remaining() >= 8 {
                            let ssrc = r.u32()?;
                            let seq = r.u8()?;
                            r.bytes(3)?;
                            entries.push((ssrc, seq));
                        }
                        RtcpPacket::Fir(Fir {
                            sender_ssrc,
                            entries,
                        })
                    }
                    (PT_PSFB, 15) if r.rest().starts_with(b"REMB") => {
                        r.bytes(4)?;
                        let n = r.u8()?;
                        let b = r.u24()?;
                        let exp = b >> 18;
                        let mantissa = (b & 0x3_FFFF) as u128;
                        let bitrate = (mantissa << exp).min(u64::MAX as u128) as u64;
                        let mut ssrcs = Vec::new();
                        for _ in 0..n {
                            ssrcs.push(r.u32()?);
                        }
                        RtcpPacket::Remb(Remb {
                            sender_ssrc,
                            bitrate,
                            ssrcs,
                        })
                    }
                    _ => RtcpPacket::Unknown(Unknown {
                        packet_type: pt,
                        count,
                        body: body.to_vec(),
                    }),
                }
            }
            _ => RtcpPacket::Unknown(Unknown {
                packet_type: pt,
                count,
                body: body.to_vec(),
            }),
        })
    }

    /// Appends this packet (header, body, zero padding to 32 bits) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let start = out.len();
        out.extend_from_slice(&[0x80, 0, 0, 0]);
        let (count, pt) = self.emit_body(out).inspect_err(|_| out.truncate(start))?;
        if count > 31 {
            out.truncate(start);
            return Err(Error::Invalid(
                "more than 31 report blocks, chunks or sources",
            ));
        }
        while (out.len() - start) % 4 != 0 {
            out.push(0);
        }
        let words = (out.len() - start) / 4 - 1;
        if words > u16::MAX as usize {
            out.truncate(start);
            return Err(Error::Invalid(
                "RTCP packet longer than the length field allows",
            ));
        }
        out[start] |= count;
        out[start + 1] = pt;
        out[start + 2..start + 4].copy_from_slice(&(words as u16).to_be_bytes());
        Ok(())
    }

    /// Writes several packets back to back as one compound datagram.
    pub fn emit_compound(packets: &[RtcpPacket], out: &mut Vec<u8>) -> Result<(), Error> {
        for p in packets {
            p.emit(out)?;
        }
        Ok(())
    }

    fn emit_body(&self, out: &mut Vec<u8>) -> Result<(u8, u8), Error> {
        let put = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_be_bytes());
        Ok(match self {
            RtcpPacket::SenderReport(sr) => {
                put(out, sr.ssrc);
                out.extend_from_slice(&sr.ntp_time.to_be_bytes());
                put(out, sr.rtp_time);
                put(out, sr.packet_count);
                put(out, sr.octet_count);
                sr.reports.iter().for_each(|b| b.emit(out));
                check_words(&sr.profile_extension)?;
                out.extend_from_slice(&sr.profile_extension);
                (sr.reports.len().min(32) as u8, PT_SR)
            }
            RtcpPacket::ReceiverReport(rr) => {
                put(out, rr.ssrc);
                rr.reports.iter().for_each(|b| b.emit(out));
                check_words(&rr.profile_extension)?;
                out.extend_from_slice(&rr.profile_extension);
                (rr.reports.len().min(32) as u8, PT_RR)
            }
            RtcpPacket::Sdes(s) => {
                for c in &s.chunks {
                    let chunk_start = out.len();
                    put(out, c.ssrc);
                    for (t, v) in &c.items {
                        if *t == 0 || v.len() > 255 {
                            return Err(Error::Invalid("SDES item type 0 or value over 255 bytes"));
                        }
                        out.push(*t);
                        out.push(v.len() as u8);
                        out.extend_from_slice(v);
                    }
                    // RFC 3550 §6.5: the item list ends with at least one null
                    // octet, then nulls to the next 32-bit boundary.
                    out.push(0);
                    while (out.len() - chunk_start) % 4 != 0 {
                        out.push(0);
                    }
                }
                (s.chunks.len().min(32) as u8, PT_SDES)
            }
            RtcpPacket::Bye(b) => {
                b.sources.iter().for_each(|s| put(out, *s));
                if let Some(reason) = &b.reason {
                    if reason.len() > 255 {
                        return Err(Error::Invalid("BYE reason over 255 bytes"));
                    }
                    out.push(reason.len() as u8);
                    out.extend_from_slice(reason);
                }
                (b.sources.len().min(32) as u8, PT_BYE)
            }
            RtcpPacket::App(a) => {
                if a.subtype > 31 {
                    return Err(Error::Invalid("APP subtype above 31"));
                }
                put(out, a.ssrc);
                out.extend_from_slice(&a.name);
                check_words(&a.data)?;
                out.extend_from_slice(&a.data);
                (a.subtype, PT_APP)
            }
            RtcpPacket::Nack(n) => {
                put(out, n.sender_ssrc);
                put(out, n.media_ssrc);
                for (pid, blp) in &n.pairs {
                    out.extend_from_slice(&pid.to_be_bytes());
                    out.extend_from_slice(&blp.to_be_bytes());
                }
                (1, PT_RTPFB)
            }
            RtcpPacket::TransportCc(t) => {
                put(out, t.sender_ssrc);
                put(out, t.media_ssrc);
                t.emit_fci(out)?;
                (15, PT_RTPFB)
            }
            RtcpPacket::Pli(p) => {
                put(out, p.sender_ssrc);
                put(out, p.media_ssrc);
                (1, PT_PSFB)
            }
            RtcpPacket::Fir(f) => {
                put(out, f.sender_ssrc);
                put(out, 0);
                for (ssrc, seq) in &f.entries {
                    put(out, *ssrc);
                    out.extend_from_slice(&[*seq, 0, 0, 0]);
                }
                (4, PT_PSFB)
            }
            RtcpPacket::Remb(r) => {
                if r.ssrcs.len() > 255 {
                    return Err(Error::Invalid("REMB with more than 255 SSRCs"));
                }
                put(out, r.sender_ssrc);
                put(out, 0);
                out.extend_from_slice(b"REMB");
                out.push(r.ssrcs.len() as u8);
                let mut exp = 0u32;
                while r.bitrate >> exp >= 1 << 18 {
                    exp += 1;
                }
                let mantissa = (r.bitrate >> exp) as u32;
                out.extend_from_slice(&(exp << 18 | mantissa).to_be_bytes()[1..]);
                r.ssrcs.iter().for_each(|s| put(out, *s));
                (15, PT_PSFB)
            }
            RtcpPacket::Unknown(u) => {
                if u.count > 31 {
                    return Err(Error::Invalid("count above 31"));
                }
                out.extend_from_slice(&u.body);
                (u.count, u.packet_type)
            }
        })
    }
}

fn check_words(data: &[u8]) -> Result<(), Error> {
    if data.len() % 4 != 0 {
        return Err(Error::Invalid("data not a multiple of 4 bytes"));
    }
    Ok(())
}

fn parse_reports(r: &mut Reader<'_>, count: u8) -> Result<Vec<ReportBlock>, Error> {
    let mut v = Vec::with_capacity(count as usize);
    for _ in 0..count {
        v.push(ReportBlock::parse(r)?);
    }
    Ok(v)
}

fn parse_sdes(r: &mut Reader<'_>, count: u8) -> Result<Sdes, Error> {
    let mut chunks = Vec::new();
    for _ in 0..count {
        let before = r.remaining();
        let ssrc = r.u32()?;
        let mut items = Vec::new();
        loop {
            let t = r.u8()?;
            if t == 0 {
                break;
            }
            let n = r.u8()? as usize;
            items.push((t, r.bytes(n)?.to_vec()));
        }
        // Skip the null padding to the chunk's 32-bit boundary.
        let used = before - r.remaining();
        let pad = (4 - used % 4) % 4;
        r.bytes(pad.min(r.remaining()))?;
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(Sdes { chunks })
}

#[cfg(test)]
mod tests {
    use super::super::twcc::tests::arb_twcc;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sr_sdes_compound() {
        // A Chromium-shaped compound: SR with one report block, then SDES CNAME.
        let sr = RtcpPacket::SenderReport(SenderReport {
            ssrc: 0x1122_3344,
            ntp_time: 0xE8F0_1234_8000_0000,
            rtp_time: 90_000,
            packet_count: 10,
            octet_count: 12_000,
            reports: vec![ReportBlock {
                ssrc: 0xAABB_CCDD,
                fraction_lost: 25,
                cumulative_lost: -3,
                highest_seq: 0x0001_0005,
                jitter: 12,
                last_sr: 0x1234_8000,
                delay_since_last_sr: 65536,
            }],
            profile_extension: vec![],
        });
        let sdes = RtcpPacket::Sdes(Sdes {
            chunks: vec![SdesChunk {
                ssrc: 0x1122_3344,
                items: vec![(sdes_type::CNAME, b"abcd".to_vec())],
            }],
        });
        let mut out = Vec::new();
        RtcpPacket::emit_compound(&[sr.clone(), sdes.clone()], &mut out).unwrap();
        assert_eq!(&out[..4], &[0x81, 200, 0, 12]);
        // SDES: header, ssrc, item(2+4) + null + padding to 12 bytes.
        assert_eq!(&out[52..56], &[0x81, 202, 0, 3]);
        assert_eq!(&out[60..], &[1, 4, b'a', b'b', b'c', b'd', 0, 0]);
        assert_eq!(
            RtcpPacket::parse_compound(&out, false).unwrap(),
            vec![sr, sdes]
        );
    }

    #[test]
    fn reduced_size_and_unknown_types() {
        let pli = RtcpPacket::Pli(Pli {
            sender_ssrc: 1,
            media_ssrc: 2,
        });
        let mut out = Vec::new();
        pli.emit(&mut out).unwrap();
        assert_eq!(out, [0x81, 206, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert!(RtcpPacket::parse_compound(&out, false).is_err());
        assert_eq!(
            RtcpPacket::parse_compound(&out, true).unwrap(),
            vec![pli.clone()]
        );
        // An XR (207) in the middle is handed back as Unknown and iteration goes on.
        let mut buf = Vec::new();
        buf.extend_from_slice(&[0x80, 207, 0, 1, 9, 9, 9, 9]);
        buf.extend_from_slice(&out);
        let v = RtcpPacket::parse_compound(&buf, true).unwrap();
        assert!(
            matches!(&v[0], RtcpPacket::Unknown(u) if u.packet_type == 207 && u.body == [9; 4])
        );
        assert_eq!(v[1], pli);
    }

    #[test]
    fn nack_pairs() {
        let n = Nack::from_lost(1, 2, [65534, 65535, 0, 14, 40]);
        assert_eq!(n.pairs, vec![(65534, 0b1000_0000_0000_0011), (40, 0)]);
        assert_eq!(n.lost().collect::<Vec<_>>(), vec![65534, 65535, 0, 14, 40]);
    }

    #[test]
    fn remb_encoding() {
        let r = RtcpPacket::Remb(Remb {
            sender_ssrc: 1,
            bitrate: 1_000_000,
            ssrcs: vec![5],
        });
        let mut out = Vec::new();
        r.emit(&mut out).unwrap();
        // 1_000_000 = 250_000 << 2.
        assert_eq!(&out[12..20], b"REMB\x01\x0B\xD0\x90");
        assert_eq!(RtcpPacket::parse(&out).unwrap(), r);
    }

    /// A REMB Chrome sent while receiving a 6 Mbit/s stream (vector published
    /// with pion's and webrtc-rs's RTCP tests): exponent 6, mantissa 139487.
    #[test]
    fn chrome_remb_vector() {
        let chrome = [
            143, 206, 0, 5, 0, 0, 0, 1, 0, 0, 0, 0, 82, 69, 77, 66, 1, 26, 32, 223, 72, 116, 237,
            22,
        ];
        let r = Remb {
            sender_ssrc: 1,
            bitrate: 8_927_168,
            ssrcs: vec![1_215_622_422],
        };
        assert_eq!(
            RtcpPacket::parse(&chrome).unwrap(),
            RtcpPacket::Remb(r.clone())
        );
        let mut out = Vec::new();
        RtcpPacket::Remb(r).emit(&mut out).unwrap();
        assert_eq!(out, chrome);
    }

    #[test]
    fn padding_and_bad_lengths() {
        // RR with padding: P bit, 4 padding bytes counted by the last one.
        let b = [0xA0, 201, 0, 2, 0, 0, 0, 7, 0, 0, 0, 4];
        assert_eq!(
            RtcpPacket::parse(&b).unwrap(),
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 7,
                ..Default::default()
            })
        );
        assert!(RtcpPacket::parse(&[0x80, 201, 0, 9, 0, 0, 0, 0]).is_err());
        assert!(RtcpPacket::parse(&[0x81, 201, 0, 1, 0, 0, 0, 0]).is_err());
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..=max)
    }

    fn words(max: usize) -> impl Strategy<Value = Vec<u8>> {
        bytes(max).prop_map(|mut v| {
            v.truncate(v.len() / 4 * 4);
            v
        })
    }

    fn arb_block() -> impl Strategy<Value = ReportBlock> + Clone {
        (
            any::<(u32, u8, u32, u32, u32, u32)>(),
            -0x80_0000i32..=0x7F_FFFF,
        )
            .prop_map(
                |(
                    (ssrc, fraction_lost, highest_seq, jitter, last_sr, delay_since_last_sr),
                    cumulative_lost,
                )| ReportBlock {
                    ssrc,
                    fraction_lost,
                    cumulative_lost,
                    highest_seq,
                    jitter,
                    last_sr,
                    delay_since_last_sr,
                },
            )
    }

    pub(crate) fn arb_rtcp() -> impl Strategy<Value = RtcpPacket> {
        let blocks = proptest::collection::vec(arb_block(), 0..4);
        prop_oneof![
            (
                any::<(u32, u64, u32, u32, u32)>(),
                blocks.clone(),
                words(12)
            )
                .prop_map(|(f, reports, ext)| {
                    RtcpPacket::SenderReport(SenderReport {
                        ssrc: f.0,
                        ntp_time: f.1,
                        rtp_time: f.2,
                        packet_count: f.3,
                        octet_count: f.4,
                        reports,
                        profile_extension: ext,
                    })
                }),
            (any::<u32>(), blocks, words(12)).prop_map(|(ssrc, reports, profile_extension)| {
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc,
                    reports,
                    profile_extension,
                })
            }),
            proptest::collection::vec(
                (
                    any::<u32>(),
                    proptest::collection::vec((1u8..=8, bytes(20)), 0..4)
                )
                    .prop_map(|(ssrc, items)| SdesChunk { ssrc, items }),
                0..4
            )
            .prop_map(|chunks| RtcpPacket::Sdes(Sdes { chunks })),
            (
                proptest::collection::vec(any::<u32>(), 0..5),
                proptest::option::of(bytes(30))
            )
                .prop_map(|(sources, reason)| RtcpPacket::Bye(Bye { sources, reason })),
            (0u8..32, any::<u32>(), any::<[u8; 4]>(), words(16)).prop_map(
                |(subtype, ssrc, name, data)| RtcpPacket::App(App {
                    subtype,
                    ssrc,
                    name,
                    data
                })
            ),
            (
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<(u16, u16)>(), 0..6)
            )
                .prop_map(|(sender_ssrc, media_ssrc, pairs)| RtcpPacket::Nack(Nack {
                    sender_ssrc,
                    media_ssrc,
                    pairs
                })),
            any::<(u32, u32)>().prop_map(|(s, m)| RtcpPacket::Pli(Pli {
                sender_ssrc: s,
                media_ssrc: m
            })),
            (
                any::<u32>(),
                proptest::collection::vec(any::<(u32, u8)>(), 0..4)
            )
                .prop_map(|(sender_ssrc, entries)| RtcpPacket::Fir(Fir {
                    sender_ssrc,
                    entries
                })),
            (
                any::<u32>(),
                0u64..(1 << 18),
                0u32..40,
                proptest::collection::vec(any::<u32>(), 0..4)
            )
                .prop_map(|(sender_ssrc, m, e, ssrcs)| RtcpPacket::Remb(Remb {
                    sender_ssrc,
                    bitrate: m << e,
                    ssrcs
                })),
            arb_twcc().prop_map(RtcpPacket::TransportCc),
            (prop_oneof![192u8..200, 207u8..=255], 0u8..32, words(16)).prop_map(
                |(packet_type, count, body)| {
                    RtcpPacket::Unknown(Unknown {
                        packet_type,
                        count,
                        body,
                    })
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(packets in proptest::collection::vec(arb_rtcp(), 1..5)) {
            let mut out = Vec::new();
            RtcpPacket::emit_compound(&packets, &mut out).unwrap();
            prop_assert_eq!(out.len() % 4, 0);
            prop_assert_eq!(RtcpPacket::parse_compound(&out, true).unwrap(), packets);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in bytes(120)) {
            for p in RtcpIter::new(&data) {
                let _ = p;
            }
            let _ = RtcpPacket::parse_compound(&data, true);
        }

        #[test]
        fn mutated_valid_packets_never_panic(
            packets in proptest::collection::vec(arb_rtcp(), 1..4),
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut out = Vec::new();
            RtcpPacket::emit_compound(&packets, &mut out).unwrap();
            for (i, v) in flips {
                let i = i.index(out.len());
                out[i] = v;
            }
            let cut = cut.index(out.len() + 1);
            for p in RtcpIter::new(&out[..cut]) {
                let _ = p;
            }
        }

        #[test]
        fn valid_headers_with_random_bodies_never_panic(pt in 192u8..=223, count in 0u8..32, body in words(80)) {
            let mut data = vec![0x80 | count, pt];
            data.extend_from_slice(&((body.len() / 4) as u16).to_be_bytes());
            data.extend_from_slice(&body);
            let _ = RtcpPacket::parse(&data);
        }
    }
}
