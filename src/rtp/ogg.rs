//! Ogg pages (RFC 3533) carrying Opus (RFC 7845), for the audio examples.
//!
//! ```text
//! page header (27 bytes, integers little-endian), then the segment table and data
//!  0 "OggS"  4 version 0  5 flags (1 continued, 2 first page, 4 last page)
//!  6 granule position (i64: for Opus, 48 kHz samples up to the last packet ending here)
//! 14 stream serial (u32)  18 page sequence (u32)  22 CRC-32 (u32)  26 segment count
//! 27 lacing values: a packet is a run of 255s ended by a value < 255
//! ```
//!
//! The CRC (RFC 3533 §6) is CRC-32 with polynomial 0x04C11DB7, initial value 0,
//! no reflection and no final XOR, over the page with its CRC field zeroed. An
//! Ogg Opus stream starts with an `OpusHead` page (RFC 7845 §5.1), then
//! `OpusTags` (§5.2), then audio.

use super::{Error, truncated};

/// RFC 3533 §6: the Ogg page CRC.
const OGG_CRC: crc::Algorithm<u32> = crc::Algorithm {
    width: 32,
    poly: 0x04C1_1DB7,
    init: 0,
    refin: false,
    refout: false,
    xorout: 0,
    check: 0x89A1_897F,
    residue: 0,
};
const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&OGG_CRC);

const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// The Opus identification header (RFC 7845 §5.1), channel mapping family 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// 1 or 2 for mapping family 0.
    pub channels: u8,
    /// Samples (at 48 kHz) to drop from the start of the decoded output.
    pub pre_skip: u16,
    /// The original input sample rate (informational).
    pub input_sample_rate: u32,
    /// Output gain in Q7.8 dB.
    pub output_gain: i16,
}

impl OpusHead {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"OpusHead");
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(0);
    }

    fn parse(p: &[u8]) -> Result<OpusHead, Error> {
        if p.len() < 19 || &p[..8] != b"OpusHead" {
            return Err(Error::BadPayload("first Ogg packet is not an OpusHead"));
        }
        // RFC 7845 §5.1: a major version other than 0 is incompatible.
        if p[8] >> 4 != 0 {
            return Err(Error::BadPayload("unsupported OpusHead version"));
        }
        Ok(OpusHead {
            channels: p[9],
            pre_skip: u16::from_le_bytes([p[10], p[11]]),
            input_sample_rate: u32::from_le_bytes([p[12], p[13], p[14], p[15]]),
            output_gain: i16::from_le_bytes([p[16], p[17]]),
        })
    }
}

/// Writes an Ogg Opus file into a `Vec<u8>`, one audio packet per page.
#[derive(Debug, Clone)]
pub struct OggOpusWriter {
    serial: u32,
    sequence: u32,
    granule: u64,
    /// The file written so far.
    pub out: Vec<u8>,
}

fn write_page(
    out: &mut Vec<u8>,
    flags: u8,
    granule: u64,
    serial: u32,
    sequence: u32,
    packet: &[u8],
) {
    let start = out.len();
    out.extend_from_slice(b"OggS");
    out.push(0);
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&serial.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    // Lacing: 255 per full segment, then the remainder (0 if a multiple of 255).
    let full = packet.len() / 255;
    out.push((full + 1) as u8);
    out.extend(std::iter::repeat_n(255u8, full));
    out.push((packet.len() % 255) as u8);
    out.extend_from_slice(packet);
    let crc = CRC.checksum(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

impl OggOpusWriter {
    /// Starts a stream: the `OpusHead` and `OpusTags` pages.
    pub fn new(serial: u32, head: OpusHead) -> Self {
        let mut w = OggOpusWriter {
            serial,
            sequence: 0,
            granule: 0,
            out: Vec::new(),
        };
        let mut p = Vec::new();
        head.write(&mut p);
        write_page(&mut w.out, FLAG_BOS, 0, serial, 0, &p);
        p.clear();
        p.extend_from_slice(b"OpusTags");
        let vendor = b"rtclab";
        p.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        p.extend_from_slice(vendor);
        p.extend_from_slice(&0u32.to_le_bytes());
        write_page(&mut w.out, 0, 0, serial, 1, &p);
        w.sequence = 2;
        w.granule = head.pre_skip as u64;
        w
    }

    /// Appends one Opus packet of `samples` 48 kHz samples per channel
    /// (960 for 20 ms); `last` marks the end of the stream.
    pub fn write_packet(&mut self, packet: &[u8], samples: u32, last: bool) -> Result<(), Error> {
        // One packet per page keeps the lacing table within 255 entries.
        if packet.len() > 254 * 255 {
            return Err(Error::Invalid("Opus packet too large for one Ogg page"));
        }
        self.granule += samples as u64;
        let flags = if last { FLAG_EOS } else { 0 };
        write_page(
            &mut self.out,
            flags,
            self.granule,
            self.serial,
            self.sequence,
            packet,
        );
        self.sequence = self.sequence.wrapping_add(1);
        Ok(())
    }
}

/// One Ogg page, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OggPage<'a> {
    /// Header flags (continued, first, last).
    pub flags: u8,
    /// Granule position.
    pub granule: u64,
    /// Stream serial number.
    pub serial: u32,
    /// Page sequence number.
    pub sequence: u32,
    /// The lacing values.
    pub segments: &'a [u8],
    /// The page body.
    pub data: &'a [u8],
}

/// Parses the page at the start of `buf` and checks its CRC; returns it and
/// its total length.
pub fn parse_page(buf: &[u8]) -> Result<(OggPage<'_>, usize), Error> {
    if buf.len() < 27 {
        return Err(truncated("Ogg page header", 27, buf.len()));
    }
    if &buf[..4] != b"OggS" || buf[4] != 0 {
        return Err(Error::BadPayload(
            "not an Ogg page (capture pattern or version)",
        ));
    }
    let n = buf[26] as usize;
    if buf.len() < 27 + n {
        return Err(truncated("Ogg segment table", 27 + n, buf.len()));
    }
    let segments = &buf[27..27 + n];
    let body: usize = segments.iter().map(|&s| s as usize).sum();
    let len = 27 + n + body;
    if buf.len() < len {
        return Err(truncated("Ogg page", len, buf.len()));
    }
    let stored = u32::from_le_bytes([buf[22], buf[23], buf[24], buf[25]]);
    let mut digest = CRC.digest();
    digest.update(&buf[..22]);
    digest.update(&[0; 4]);
    digest.update(&buf[26..len]);
    if digest.finalize() != stored {
        return Err(Error::BadPayload("Ogg page CRC mismatch"));
    }
    let u64le = |i: usize| {
        u64::from_le_bytes([
            buf[i],
            buf[i + 1],
            buf[i + 2],
            buf[i + 3],
            buf[i + 4],
            buf[i + 5],
            buf[i + 6],
            buf[i + 7],
        ])
    };
    let u32le = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    Ok((
        OggPage {
            flags: buf[5],
            granule: u64le(6),
            serial: u32le(14),
            sequence: u32le(18),
            segments,
            data: &buf[27 + n..len],
        },
        len,
    ))
}

/// Reads the packets of an Ogg Opus file held in memory (one logical stream;
/// packets may span pages).
#[derive(Debug, Clone)]
pub struct OggOpusReader<'a> {
    rest: &'a [u8],
    /// A packet continued on the next page.
    partial: Vec<u8>,
    /// Complete packets of the current page not yet returned.
    ready: std::collections::VecDeque<Vec<u8>>,
    done: bool,
}

/// At most this many bytes are gathered into one packet (Opus packets are far smaller).
const MAX_PACKET: usize = 1 << 20;

impl<'a> OggOpusReader<'a> {
    /// Reads the `OpusHead` and skips `OpusTags`; audio packets follow from
    /// [`Iterator::next`].
    pub fn new(file: &'a [u8]) -> Result<(OpusHead, OggOpusReader<'a>), Error> {
        let mut r = OggOpusReader {
            rest: file,
            partial: Vec::new(),
            ready: Default::default(),
            done: false,
        };
        let head = match r.next() {
            Some(p) => OpusHead::parse(&p?)?,
            None => return Err(truncated("Ogg Opus file", 27, file.len())),
        };
        match r.next() {
            Some(Ok(p)) if p.starts_with(b"OpusTags") => {}
            Some(Err(e)) => return Err(e),
            _ => return Err(Error::BadPayload("second Ogg packet is not OpusTags")),
        }
        Ok((head, r))
    }
}

impl Iterator for OggOpusReader<'_> {
    type Item = Result<Vec<u8>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Some(Ok(p));
            }
            if self.done || self.rest.is_empty() {
                return None;
            }
            let (page, len) = match parse_page(self.rest) {
                Ok(x) => x,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.rest = &self.rest[len..];
            if page.flags & FLAG_CONTINUED == 0 {
                self.partial.clear();
            }
            let mut at = 0;
            for &s in page.segments {
                self.partial
                    .extend_from_slice(&page.data[at..at + s as usize]);
                at += s as usize;
                if self.partial.len() > MAX_PACKET {
                    self.done = true;
                    return Some(Err(Error::BadPayload("Ogg packet over 1 MiB")));
                }
                if s < 255 {
                    self.ready.push_back(std::mem::take(&mut self.partial));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc_parameters_match_the_catalogue_check() {
        assert_eq!(CRC.checksum(b"123456789"), 0x89A1_897F);
    }

    #[test]
    fn corrupt_page_is_refused() {
        let head = OpusHead {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let mut w = OggOpusWriter::new(7, head);
        w.write_packet(&[0xFC, 1, 2, 3], 960, true).unwrap();
        let mut f = w.out.clone();
        let last = f.len() - 1;
        f[last] ^= 1;
        let (_, r) = OggOpusReader::new(&f).unwrap();
        assert!(matches!(r.last(), Some(Err(Error::BadPayload(_)))));
        let (h, r) = OggOpusReader::new(&w.out).unwrap();
        assert_eq!(h, head);
        assert_eq!(
            r.collect::<Result<Vec<_>, _>>().unwrap(),
            vec![vec![0xFC, 1, 2, 3]]
        );
    }

    proptest! {
        #[test]
        fn round_trip(packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..700), 0..8)) {
            let head = OpusHead { channels: 1, pre_skip: 0, input_sample_rate: 16_000, output_gain: -3 };
            let mut w = OggOpusWriter::new(1, head);
            for (i, p) in packets.iter().enumerate() {
                w.write_packet(p, 960, i + 1 == packets.len()).unwrap();
            }
            let (h, r) = OggOpusReader::new(&w.out).unwrap();
            prop_assert_eq!(h, head);
            prop_assert_eq!(r.collect::<Result<Vec<_>, _>>().unwrap(), packets);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..120)) {
            if data.len() > 5 {
                data[..5].copy_from_slice(b"OggS\0");
            }
            let _ = parse_page(&data);
            if let Ok((_, r)) = OggOpusReader::new(&data) {
                let _ = r.count();
            }
        }
    }
}
