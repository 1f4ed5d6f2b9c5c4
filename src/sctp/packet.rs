//! The SCTP packet: common header, CRC32c, and the walk over its chunks
//! (RFC 9260 §3.1, §6.8, appendix A).

use super::Error;
use super::chunk::Chunk;

/// Size of the common header.
pub const HEADER_LEN: usize = 12;

/// RFC 9260 appendix A: CRC32c (Castagnoli), the `crc` crate's CRC_32_ISCSI,
/// with its slice-by-16 tables (16 KiB of tables, several times faster per
/// byte than the one-table default: every packet is checksummed twice, once
/// by each side, so this sits on the hot path).
pub const CRC32C: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// The common header (RFC 9260 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommonHeader {
    /// Sender's port (5000 in WebRTC, RFC 8841).
    pub source_port: u16,
    /// Receiver's port.
    pub destination_port: u16,
    /// The receiver's initiate tag (0 in a packet carrying INIT).
    pub verification_tag: u32,
}

impl CommonHeader {
    /// Parses the header of `packet` (checksum not verified).
    pub fn parse(packet: &[u8]) -> Result<CommonHeader, Error> {
        if packet.len() < HEADER_LEN {
            return Err(Error::Truncated {
                what: "common header",
                needed: HEADER_LEN,
                got: packet.len(),
            });
        }
        Ok(CommonHeader {
            source_port: u16::from_be_bytes([packet[0], packet[1]]),
            destination_port: u16::from_be_bytes([packet[2], packet[3]]),
            verification_tag: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
        })
    }

    /// Appends the header with a zero checksum; [`finish`] fills it in.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.source_port.to_be_bytes());
        out.extend_from_slice(&self.destination_port.to_be_bytes());
        out.extend_from_slice(&self.verification_tag.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
    }
}

/// RFC 9260 §6.8: the CRC32c of the whole packet computed with the checksum
/// field set to zero. The checksum is stored least significant byte first
/// (the reflected CRC's natural byte order, appendix A).
pub fn checksum(packet: &[u8]) -> u32 {
    let mut d = CRC32C.digest();
    d.update(&packet[..8]);
    d.update(&[0; 4]);
    d.update(&packet[12..]);
    d.finalize()
}

/// Writes the checksum of a packet whose header was written by
/// [`CommonHeader::write`]. Does nothing to a buffer shorter than a header.
pub fn finish(packet: &mut [u8]) {
    if packet.len() < HEADER_LEN {
        return;
    }
    let c = checksum(packet);
    packet[8..12].copy_from_slice(&c.to_le_bytes());
}

/// Checks the CRC32c of a packet.
pub fn verify(packet: &[u8]) -> Result<(), Error> {
    if packet.len() < HEADER_LEN {
        return Err(Error::Truncated {
            what: "common header",
            needed: HEADER_LEN,
            got: packet.len(),
        });
    }
    let have = u32::from_le_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let want = checksum(packet);
    if have != want {
        return Err(Error::BadChecksum { have, want });
    }
    Ok(())
}

/// One chunk as it sits in the packet: type, flags, value (unpadded), and
/// its offset in the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawChunk<'a> {
    /// Chunk type.
    pub typ: u8,
    /// Chunk flags.
    pub flags: u8,
    /// The value after the 4-byte chunk header, without padding.
    pub value: &'a [u8],
    /// Offset of the chunk header in the packet.
    pub offset: usize,
}

impl<'a> RawChunk<'a> {
    /// Decodes the chunk.
    pub fn parse(&self) -> Result<Chunk<'a>, Error> {
        Chunk::parse(self.typ, self.flags, self.value)
    }
}

/// Logs every chunk of `packet` at `trace` level, decoded (DATA as its
/// TSN, stream, SSN, PPID and length; the others as parsed), so that
/// `RUST_LOG=rtclab::sctp=trace` reads like `rtclab xray`'s SCTP lines.
/// Nothing is decoded or formatted unless that level is on.
pub(crate) fn trace(direction: &'static str, packet: &[u8]) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let vtag = packet
        .get(4..8)
        .map_or(0, |t| u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
    for raw in chunks(packet) {
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                tracing::trace!(direction, %e, "SCTP packet: bad chunk");
                break;
            }
        };
        let v = raw.value;
        if raw.typ == super::chunk::kind::DATA && v.len() >= 12 {
            tracing::trace!(
                direction,
                vtag,
                tsn = u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                stream = u16::from_be_bytes([v[4], v[5]]),
                ssn = u16::from_be_bytes([v[6], v[7]]),
                ppid = u32::from_be_bytes([v[8], v[9], v[10], v[11]]),
                flags = raw.flags,
                bytes = v.len() - 12,
                "SCTP DATA"
            );
            continue;
        }
        match raw.parse() {
            // The bulky ones (a cookie, heartbeat info) summed up.
            Ok(Chunk::Init(i) | Chunk::InitAck(i)) => tracing::trace!(
                direction,
                vtag,
                chunk = if raw.typ == super::chunk::kind::INIT {
                    "INIT"
                } else {
                    "INIT ACK"
                },
                initiate_tag = i.initiate_tag,
                a_rwnd = i.a_rwnd,
                streams_out = i.outbound_streams,
                streams_in = i.max_inbound_streams,
                initial_tsn = i.initial_tsn,
                params = i.params.len(),
                "SCTP chunk"
            ),
            Ok(Chunk::CookieEcho(c)) => {
                tracing::trace!(
                    direction,
                    vtag,
                    chunk = "COOKIE ECHO",
                    bytes = c.len(),
                    "SCTP chunk"
                );
            }
            Ok(Chunk::Heartbeat(h) | Chunk::HeartbeatAck(h)) => {
                tracing::trace!(
                    direction,
                    vtag,
                    typ = raw.typ,
                    bytes = h.len(),
                    "SCTP HEARTBEAT (ACK)"
                );
            }
            Ok(c) => tracing::trace!(direction, vtag, chunk = ?c, "SCTP chunk"),
            Err(e) => tracing::trace!(direction, vtag, typ = raw.typ, %e, "SCTP chunk undecodable"),
        }
    }
}

/// Walks the chunks after the common header. A chunk shorter than 4 bytes or
/// longer than what is left ends the walk with an error (RFC 9260 §3.2); the
/// last chunk may omit its padding.
pub fn chunks(packet: &[u8]) -> impl Iterator<Item = Result<RawChunk<'_>, Error>> + '_ {
    let mut pos = HEADER_LEN.min(packet.len());
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= packet.len() {
            return None;
        }
        let rest = &packet[pos..];
        if rest.len() < 4 {
            failed = true;
            return Some(Err(Error::Truncated {
                what: "chunk header",
                needed: pos + 4,
                got: packet.len(),
            }));
        }
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len < 4 || len > rest.len() {
            failed = true;
            return Some(Err(Error::BadLength {
                what: "chunk",
                offset: pos,
                length: len,
            }));
        }
        let c = RawChunk {
            typ: rest[0],
            flags: rest[1],
            value: &rest[4..len],
            offset: pos,
        };
        pos += (len + 3) & !3;
        Some(Ok(c))
    })
}

/// A whole decoded packet (for tests, tools and fuzzing; the association
/// walks [`chunks`] instead, without collecting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The common header.
    pub header: CommonHeader,
    /// The chunks in order.
    pub chunks: Vec<Chunk<'a>>,
}

impl<'a> Packet<'a> {
    /// Verifies the checksum and decodes every chunk.
    pub fn parse(packet: &'a [u8]) -> Result<Packet<'a>, Error> {
        verify(packet)?;
        let header = CommonHeader::parse(packet)?;
        let mut out = Vec::new();
        for c in chunks(packet) {
            out.push(c?.parse()?);
        }
        Ok(Packet {
            header,
            chunks: out,
        })
    }

    /// Appends the packet with its checksum.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        self.header.emit(out);
        for c in &self.chunks {
            c.emit(out);
        }
        finish(&mut out[start..]);
    }

    /// The encoded packet.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }
}
