//! The RTP packet: fixed header, CSRCs, extension block, payload, padding
//! (RFC 3550 §5.1, §5.3.1).

use super::ext::{ExtensionForm, ExtensionIter, Extensions};
use super::{Error, truncated};

/// RFC 3550 §5.1: the fixed header is 12 bytes.
pub const FIXED_HEADER_LEN: usize = 12;

/// A checked, zero-copy view of an RTP packet.
///
/// [`RtpPacket::new_checked`] validates every length (version, CSRC count,
/// extension length, padding count) once; after that no accessor can panic or
/// read out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    /// Offset of the payload (after CSRCs and the extension block).
    payload_start: usize,
    /// End of the payload (before the padding).
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Checks `buf` as an RTP packet.
    ///
    /// RFC 3550 §5.1: version 2; `CC` CSRCs follow the fixed header; if `X`, an
    /// extension block of 4 + 4·length bytes follows (§5.3.1); if `P`, the last
    /// byte counts the padding octets including itself, so it must be at least 1
    /// and no more than what follows the header.
    #[inline]
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, Error> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(truncated("RTP fixed header", FIXED_HEADER_LEN, buf.len()));
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(Error::BadVersion(b0 >> 6));
        }
        let mut start = FIXED_HEADER_LEN + 4 * (b0 & 0x0F) as usize;
        if b0 & 0x10 != 0 {
            if buf.len() < start + 4 {
                return Err(truncated("RTP extension header", start + 4, buf.len()));
            }
            let words = u16::from_be_bytes([buf[start + 2], buf[start + 3]]) as usize;
            start += 4 + 4 * words;
        }
        if buf.len() < start {
            return Err(truncated("RTP header", start, buf.len()));
        }
        let mut end = buf.len();
        if b0 & 0x20 != 0 {
            let count = buf[end - 1];
            let available = end - start;
            if count == 0 || count as usize > available {
                return Err(Error::BadPadding { count, available });
            }
            end -= count as usize;
        }
        Ok(RtpPacket {
            buf,
            payload_start: start,
            payload_end: end,
        })
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The version field (always 2 after the check).
    pub fn version(&self) -> u8 {
        self.buf[0] >> 6
    }

    /// The P bit.
    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }

    /// Number of padding bytes (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }

    /// The X bit.
    pub fn has_extension(&self) -> bool {
        self.buf[0] & 0x10 != 0
    }

    /// The CSRC count.
    pub fn csrc_count(&self) -> usize {
        (self.buf[0] & 0x0F) as usize
    }

    /// The M bit (for video: the last packet of a frame).
    #[inline]
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }

    /// The payload type.
    #[inline]
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7F
    }

    /// The 16-bit sequence number.
    #[inline]
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }

    /// The 32-bit media timestamp.
    #[inline]
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }

    /// The synchronization source.
    #[inline]
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }

    /// The contributing sources.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * self.csrc_count();
        self.buf[FIXED_HEADER_LEN..end]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }

    /// The extension block's profile word and data (without the 4-byte block header).
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        if !self.has_extension() {
            return None;
        }
        let at = FIXED_HEADER_LEN + 4 * self.csrc_count();
        let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
        Some((profile, &self.buf[at + 4..self.payload_start]))
    }

    /// Iterates RFC 8285 extension elements (none if the block is absent or of
    /// another profile).
    pub fn extensions(&self) -> ExtensionIter<'a> {
        match self.extension() {
            Some((profile, data)) => match ExtensionForm::from_profile(profile) {
                Some(form) => ExtensionIter::new(form, data),
                None => ExtensionIter::empty(),
            },
            None => ExtensionIter::empty(),
        }
    }

    /// The first extension element with local id `id`, if present and well formed.
    pub fn extension_element(&self, id: u8) -> Option<&'a [u8]> {
        self.extensions()
            .map_while(Result::ok)
            .find(|e| e.id == id)
            .map(|e| e.data)
    }

    /// The header length (fixed header, CSRCs, extension block).
    pub fn header_len(&self) -> usize {
        self.payload_start
    }

    /// The payload, without the padding.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_start..self.payload_end]
    }
}

/// A checked, mutable view of an RTP packet: the header fields a forwarder
/// rewrites (SSRC, payload type, sequence number, timestamp, marker, the
/// extension ids) are changed in place, with no copy (smoltcp's setters on
/// `Packet<&mut [u8]>`).
///
/// Only fields of fixed size are set: nothing here changes the packet's
/// length, so the checks of [`RtpPacket::new_checked`] stay true.
#[derive(Debug, PartialEq, Eq)]
pub struct RtpPacketMut<'a> {
    buf: &'a mut [u8],
    payload_start: usize,
    payload_end: usize,
}

impl<'a> RtpPacketMut<'a> {
    /// Checks `buf` as an RTP packet (the rules of [`RtpPacket::new_checked`]).
    pub fn new_checked(buf: &'a mut [u8]) -> Result<Self, Error> {
        let p = RtpPacket::new_checked(buf)?;
        let (payload_start, payload_end) = (p.payload_start, p.payload_end);
        Ok(RtpPacketMut {
            buf,
            payload_start,
            payload_end,
        })
    }

    /// The read-only view of the same bytes.
    pub fn as_packet(&self) -> RtpPacket<'_> {
        // Checked in `new_checked`, and no setter changes a length.
        RtpPacket {
            buf: self.buf,
            payload_start: self.payload_start,
            payload_end: self.payload_end,
        }
    }

    /// Sets the M bit.
    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7F) | (marker as u8) << 7;
    }

    /// Sets the payload type (the low 7 bits of `pt`).
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7F);
    }

    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the media timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// Rewrites the id of every RFC 8285 extension element through `map`
    /// (the sender's `a=extmap` ids to the receiver's, RFC 8285 §5); an
    /// element `map` gives `None` becomes padding (zero bytes, §4.2/§4.3:
    /// a receiver skips them), as does one whose new id does not fit the
    /// block's form (a one-byte block holds ids 1–14). Returns how many
    /// elements were kept. A block of another profile, or a malformed one,
    /// is left alone (0).
    pub fn remap_extension_ids(&mut self, mut map: impl FnMut(u8) -> Option<u8>) -> usize {
        let b0 = self.buf[0];
        if b0 & 0x10 == 0 {
            return 0;
        }
        let at = FIXED_HEADER_LEN + 4 * (b0 & 0x0F) as usize;
        let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
        let Some(form) = ExtensionForm::from_profile(profile) else {
            return 0;
        };
        let (start, end) = (at + 4, self.payload_start);
        // First pass: the element positions, checked like the reader does.
        let mut kept = 0;
        let mut pos = start;
        while pos < end {
            let first = self.buf[pos];
            if first == 0 {
                pos += 1;
                continue;
            }
            let (id, hdr, len) = match form {
                ExtensionForm::OneByte => {
                    if first >> 4 == 15 {
                        break; // RFC 8285 §4.2: stop at ID 15
                    }
                    (first >> 4, 1, (first & 0x0F) as usize + 1)
                }
                ExtensionForm::TwoByte { .. } => match self.buf.get(pos + 1) {
                    Some(&len) if pos + 1 < end => (first, 2, len as usize),
                    _ => break,
                },
            };
            let next = pos + hdr + len;
            if next > end {
                break;
            }
            let new = map(id).filter(|&n| match form {
                ExtensionForm::OneByte => (1..=14).contains(&n),
                ExtensionForm::TwoByte { .. } => n != 0,
            });
            match (new, form) {
                (Some(n), ExtensionForm::OneByte) => {
                    self.buf[pos] = (n << 4) | (first & 0x0F);
                    kept += 1;
                }
                (Some(n), ExtensionForm::TwoByte { .. }) => {
                    self.buf[pos] = n;
                    kept += 1;
                }
                (None, _) => self.buf[pos..next].fill(0),
            }
            pos = next;
        }
        kept
    }

    /// The data of the first RFC 8285 element with local id `id`, writable
    /// in place (its length cannot change), if present and well formed.
    pub fn extension_element_mut(&mut self, id: u8) -> Option<&mut [u8]> {
        let p = self.as_packet();
        let (_, block) = p.extension()?;
        let block_start = self.payload_start - block.len();
        let e = p.extensions().map_while(Result::ok).find(|e| e.id == id)?;
        // The element's data lies inside the block: its offset there.
        let at = e.data.as_ptr() as usize - block.as_ptr() as usize;
        let len = e.data.len();
        Some(&mut self.buf[block_start + at..block_start + at + len])
    }

    /// The payload, writable (e.g. to rewrite a VP8 picture id in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.payload_start..self.payload_end]
    }
}

/// The fields of a header written by [`emit_rtp_packet`]: no CSRCs and no
/// owned parts, so writing one allocates nothing beyond the output buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderFields {
    /// The M bit.
    pub marker: bool,
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence_number: u16,
    /// The media timestamp.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
}

/// Appends a whole packet to `out`: the fixed header from `fields`, the RFC
/// 8285 elements `extensions` (`(id, data)`, one-byte form when every element
/// fits it, else two-byte when `allow_two_byte`: see
/// [`super::ext::emit_extension_block`]) and the payload. The hot path of
/// every sender: nothing is allocated once `out` has grown to a packet.
pub fn emit_rtp_packet(
    fields: HeaderFields,
    extensions: &[(u8, &[u8])],
    allow_two_byte: bool,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    if fields.payload_type > 127 {
        return Err(Error::Invalid("payload type above 127"));
    }
    let start = out.len();
    out.push(0x80 | ((!extensions.is_empty()) as u8) << 4);
    out.push((fields.marker as u8) << 7 | fields.payload_type);
    out.extend_from_slice(&fields.sequence_number.to_be_bytes());
    out.extend_from_slice(&fields.timestamp.to_be_bytes());
    out.extend_from_slice(&fields.ssrc.to_be_bytes());
    if !extensions.is_empty()
        && let Err(e) = super::ext::emit_extension_block(extensions, allow_two_byte, out)
    {
        out.truncate(start);
        return Err(e);
    }
    out.extend_from_slice(payload);
    Ok(())
}

/// An owned RTP header, for writing packets (and for parsing when the caller
/// wants to keep it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpHeader {
    /// The M bit.
    pub marker: bool,
    /// The payload type (7 bits).
    pub payload_type: u8,
    /// The sequence number.
    pub sequence_number: u16,
    /// The media timestamp.
    pub timestamp: u32,
    /// The synchronization source.
    pub ssrc: u32,
    /// Contributing sources (at most 15).
    pub csrcs: Vec<u32>,
    /// The extension block, `(profile, data)`, data a multiple of 4 bytes.
    /// [`RtpHeader::set_extensions`] fills it from RFC 8285 elements.
    pub extension: Option<(u16, Vec<u8>)>,
}

impl RtpHeader {
    /// Copies the header out of a checked packet.
    pub fn from_packet(p: &RtpPacket<'_>) -> RtpHeader {
        RtpHeader {
            marker: p.marker(),
            payload_type: p.payload_type(),
            sequence_number: p.sequence_number(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
            csrcs: p.csrcs().collect(),
            extension: p.extension().map(|(pr, d)| (pr, d.to_vec())),
        }
    }

    /// Parses a packet and returns its header, payload and padding length.
    pub fn parse(buf: &[u8]) -> Result<(RtpHeader, &[u8], usize), Error> {
        let p = RtpPacket::new_checked(buf)?;
        Ok((RtpHeader::from_packet(&p), p.payload(), p.padding_len()))
    }

    /// Sets the extension block from RFC 8285 elements (`allow_two_byte`: see
    /// [`Extensions::form`]); no elements clears it.
    pub fn set_extensions(&mut self, ext: &Extensions, allow_two_byte: bool) -> Result<(), Error> {
        if ext.elements.is_empty() {
            self.extension = None;
        } else {
            self.extension = Some(ext.emit(allow_two_byte)?);
        }
        Ok(())
    }

    /// The RFC 8285 elements of the extension block.
    pub fn extensions(&self) -> Result<Extensions, Error> {
        match &self.extension {
            None => Ok(Extensions::new()),
            Some((profile, data)) => Extensions::parse(*profile, data),
        }
    }

    /// The number of bytes [`RtpHeader::write`] produces.
    pub fn len(&self) -> usize {
        FIXED_HEADER_LEN
            + 4 * self.csrcs.len()
            + self.extension.as_ref().map_or(0, |(_, d)| 4 + d.len())
    }

    /// Always false: a header has at least 12 bytes (for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }

    fn check(&self) -> Result<(), Error> {
        if self.csrcs.len() > 15 {
            return Err(Error::Invalid("more than 15 CSRCs"));
        }
        if self.payload_type > 127 {
            return Err(Error::Invalid("payload type above 127"));
        }
        if let Some((_, d)) = &self.extension {
            if d.len() % 4 != 0 || d.len() / 4 > u16::MAX as usize {
                return Err(Error::Invalid(
                    "extension data not a multiple of 4 bytes or too long",
                ));
            }
        }
        Ok(())
    }

    // ANCHOR: write_header
    fn emit_with_padding_bit(&self, padding: bool, out: &mut Vec<u8>) -> Result<(), Error> {
        self.check()?;
        let b0 = 0x80
            | (padding as u8) << 5
            | (self.extension.is_some() as u8) << 4
            | self.csrcs.len() as u8;
        out.push(b0);
        out.push((self.marker as u8) << 7 | self.payload_type);
        out.extend_from_slice(&self.sequence_number.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        for c in &self.csrcs {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some((profile, data)) = &self.extension {
            out.extend_from_slice(&profile.to_be_bytes());
            out.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            out.extend_from_slice(data);
        }
        Ok(())
    }
    // ANCHOR_END: write_header

    /// Appends the header (no padding bit) to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        self.emit_with_padding_bit(false, out)
    }

    /// Appends a whole packet: header, payload and `padding` bytes of padding
    /// (RFC 3550 §5.1: zeros, the last one holding the count; 0 means no P bit).
    pub fn emit_packet(&self, payload: &[u8], padding: u8, out: &mut Vec<u8>) -> Result<(), Error> {
        self.emit_with_padding_bit(padding > 0, out)?;
        out.extend_from_slice(payload);
        if padding > 0 {
            out.resize(out.len() + padding as usize - 1, 0);
            out.push(padding);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A Chromium-style video packet: PT 96, one-byte extensions (abs-send-time
    /// id 2, transport-cc id 3), a 4-byte payload.
    const CHROMIUM_LIKE: [u8; 32] = [
        0x90, 0xE0, 0x12, 0x34, 0x00, 0x01, 0xE2, 0x40, 0xDE, 0xAD, 0xBE, 0xEF, // fixed
        0xBE, 0xDE, 0x00, 0x02, // one-byte profile, 2 words
        0x22, 0x01, 0x02, 0x03, 0x31, 0x00, 0x07, 0x00, // id2 len3, id3 len2, pad
        0x10, 0x02, 0x00, 0x9D, // VP8 descriptor + payload start
        0x01, 0x2A, 0x00, 0x00,
    ];

    #[test]
    fn parse_fields() {
        let p = RtpPacket::new_checked(&CHROMIUM_LIKE).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 123_456);
        assert_eq!(p.ssrc(), 0xDEAD_BEEF);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension_element(2), Some(&[1u8, 2, 3][..]));
        assert_eq!(p.extension_element(3), Some(&[0u8, 7][..]));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.payload(), &CHROMIUM_LIKE[24..]);
        let (h, payload, pad) = RtpHeader::parse(&CHROMIUM_LIKE).unwrap();
        let mut out = Vec::new();
        h.emit_packet(payload, pad as u8, &mut out).unwrap();
        assert_eq!(out, CHROMIUM_LIKE);
    }

    #[test]
    fn padding_is_validated() {
        let h = RtpHeader {
            payload_type: 111,
            ..Default::default()
        };
        let mut out = Vec::new();
        h.emit_packet(b"abc", 5, &mut out).unwrap();
        let p = RtpPacket::new_checked(&out).unwrap();
        assert_eq!(p.payload(), b"abc");
        assert_eq!(p.padding_len(), 5);
        // A count of zero, or one reaching into the header, is refused.
        let last = out.len() - 1;
        out[last] = 0;
        assert!(matches!(
            RtpPacket::new_checked(&out),
            Err(Error::BadPadding { .. })
        ));
        out[last] = 9;
        assert!(matches!(
            RtpPacket::new_checked(&out),
            Err(Error::BadPadding { .. })
        ));
        out[last] = 8;
        assert_eq!(RtpPacket::new_checked(&out).unwrap().payload(), b"");
    }

    #[test]
    fn lying_lengths_are_refused() {
        // CC = 15 but only the fixed header.
        let mut b = CHROMIUM_LIKE;
        b[0] = 0x8F;
        assert!(matches!(
            RtpPacket::new_checked(&b[..20]),
            Err(Error::Truncated { .. })
        ));
        // Extension length larger than the packet.
        let mut b = CHROMIUM_LIKE;
        b[15] = 0xFF;
        assert!(matches!(
            RtpPacket::new_checked(&b),
            Err(Error::Truncated { .. })
        ));
        let mut b = CHROMIUM_LIKE;
        b[0] = 0x40;
        assert_eq!(RtpPacket::new_checked(&b), Err(Error::BadVersion(1)));
    }

    #[test]
    fn csrcs_and_two_byte_extensions() {
        let mut ext = Extensions::new();
        ext.push(1, &[0x80]).push(4, b"0").push(200, &[]);
        let mut h = RtpHeader {
            payload_type: 100,
            sequence_number: 65535,
            timestamp: u32::MAX,
            ssrc: 1,
            csrcs: vec![7, 8, 9],
            ..Default::default()
        };
        assert!(h.set_extensions(&ext, false).is_err());
        h.set_extensions(&ext, true).unwrap();
        let mut out = Vec::new();
        h.emit_packet(b"payload", 0, &mut out).unwrap();
        assert_eq!(out.len(), h.len() + 7);
        let p = RtpPacket::new_checked(&out).unwrap();
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![7, 8, 9]);
        assert_eq!(p.extension().unwrap().0, 0x1000);
        assert_eq!(p.extension_element(200), Some(&[][..]));
        assert_eq!(RtpHeader::from_packet(&p).extensions().unwrap(), ext);
    }

    fn arb_header() -> impl Strategy<Value = RtpHeader> {
        (
            any::<bool>(),
            0u8..128,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u32>(), 0..=15),
            proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..10))),
        )
            .prop_map(
                |(marker, payload_type, sequence_number, timestamp, ssrc, csrcs, ext)| RtpHeader {
                    marker,
                    payload_type,
                    sequence_number,
                    timestamp,
                    ssrc,
                    csrcs,
                    extension: ext.map(|(p, mut d)| {
                        d.resize(d.len().div_ceil(4) * 4, 0);
                        (p, d)
                    }),
                },
            )
    }

    #[test]
    fn an_element_is_rewritten_in_place() {
        let mut buf = Vec::new();
        let fields = HeaderFields {
            payload_type: 96,
            ..Default::default()
        };
        emit_rtp_packet(fields, &[(1, b"0"), (3, &[0, 7])], false, b"x", &mut buf).unwrap();
        let mut m = RtpPacketMut::new_checked(&mut buf).unwrap();
        m.extension_element_mut(3).unwrap().copy_from_slice(&[1, 2]);
        assert!(m.extension_element_mut(4).is_none());
        let p = RtpPacket::new_checked(&buf).unwrap();
        assert_eq!(p.extension_element(3), Some(&[1, 2][..]));
        assert_eq!(p.extension_element(1), Some(&b"0"[..]));
        assert_eq!(p.payload(), b"x");
    }

    fn arb_elements() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        proptest::collection::vec(
            (1u8..=14, proptest::collection::vec(any::<u8>(), 1..=16)),
            0..6,
        )
    }

    proptest! {
        #[test]
        fn the_writer_and_the_mutable_view_agree_with_the_reader(
            h in arb_header(),
            elements in arb_elements(),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
            new in (any::<bool>(), 0u8..128, any::<u16>(), any::<u32>(), any::<u32>()),
            keep_mask in any::<u16>(),
        ) {
            let fields = HeaderFields {
                marker: h.marker,
                payload_type: h.payload_type,
                sequence_number: h.sequence_number,
                timestamp: h.timestamp,
                ssrc: h.ssrc,
            };
            let refs: Vec<(u8, &[u8])> = elements.iter().map(|(i, d)| (*i, d.as_slice())).collect();
            let mut buf = Vec::new();
            emit_rtp_packet(fields, &refs, false, &payload, &mut buf).unwrap();
            let p = RtpPacket::new_checked(&buf).unwrap();
            prop_assert_eq!(p.payload(), payload.as_slice());
            let read: Vec<(u8, Vec<u8>)> = p
                .extensions()
                .map(|e| e.map(|e| (e.id, e.data.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(&read, &elements);
            // Every setter, then a remap that keeps the ids whose bit is set
            // in `keep_mask` (moved to 15 − id) and pads the others away.
            let mut m = RtpPacketMut::new_checked(&mut buf).unwrap();
            m.set_marker(new.0);
            m.set_payload_type(new.1);
            m.set_sequence_number(new.2);
            m.set_timestamp(new.3);
            m.set_ssrc(new.4);
            let kept = m.remap_extension_ids(|id| (keep_mask & (1 << id) != 0).then_some(15 - id));
            let p = RtpPacket::new_checked(&buf).unwrap();
            prop_assert_eq!(
                (p.marker(), p.payload_type(), p.sequence_number(), p.timestamp(), p.ssrc()),
                new
            );
            prop_assert_eq!(p.payload(), payload.as_slice());
            let expected: Vec<(u8, Vec<u8>)> = elements
                .iter()
                .filter(|(id, _)| keep_mask & (1 << id) != 0)
                .map(|(id, d)| (15 - id, d.clone()))
                .collect();
            let read: Vec<(u8, Vec<u8>)> = p
                .extensions()
                .map(|e| e.map(|e| (e.id, e.data.to_vec())))
                .collect::<Result<_, _>>()
                .unwrap();
            prop_assert_eq!(kept, expected.len());
            prop_assert_eq!(read, expected);
        }

        #[test]
        fn remapping_any_packet_never_panics_or_changes_its_length(
            mut data in proptest::collection::vec(any::<u8>(), 0..120),
        ) {
            let len = data.len();
            if let Ok(mut m) = RtpPacketMut::new_checked(&mut data) {
                m.remap_extension_ids(|id| Some(id ^ 1));
                prop_assert!(RtpPacket::new_checked(&data).is_ok());
            }
            prop_assert_eq!(data.len(), len);
        }
    }

    proptest! {
        #[test]
        fn round_trip(h in arb_header(), payload in proptest::collection::vec(any::<u8>(), 0..100), padding in any::<u8>()) {
            let mut out = Vec::new();
            h.emit_packet(&payload, padding, &mut out).unwrap();
            let (h2, p2, pad2) = RtpHeader::parse(&out).unwrap();
            prop_assert_eq!(h2, h);
            prop_assert_eq!(p2, &payload[..]);
            prop_assert_eq!(pad2, padding as usize);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = RtpPacket::new_checked(&data) {
                let _ = (p.marker(), p.payload_type(), p.sequence_number(), p.timestamp(), p.ssrc());
                let _ = p.csrcs().count();
                let _ = p.extensions().count();
                prop_assert!(p.payload().len() + p.header_len() + p.padding_len() == data.len());
            }
        }
    }
}
