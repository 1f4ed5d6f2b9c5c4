//! AV1 over RTP (AOMedia "RTP Payload Format For AV1", v1.0).
//!
//! An AV1 frame travels as OBUs (open bitstream units). An RTP payload is a
//! one-byte aggregation header followed by OBU elements:
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! |Z|Y| W |N|-|-|-|   Z: the first element continues an OBU of the previous packet
//! +-+-+-+-+-+-+-+-+   Y: the last element continues in the next packet
//! | OBU element 1 |   W: 0 = every element has a LEB128 length before it;
//! |  (LEB128 len) |      1..3 = W elements, all but the last with a length
//! |      ...      |   N: the first packet of a coded video sequence
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! §4.4: an element is an OBU (or a fragment of one) whose
//! `obu_has_size_field` SHOULD be 0 — the element length says it; §5:
//! temporal delimiters are not sent (the RTP timestamp delimits temporal
//! units) and tile-list OBUs SHOULD be dropped. The packetizer here takes a
//! temporal unit in the low-overhead bitstream format (every OBU with its
//! size field, as IVF files and encoders give them); the depacketizer gives
//! the same back: a temporal delimiter first, then each OBU with its size
//! field restored.

use super::Error;
use super::payload::{Depacketizer, Packetizer};

/// OBU type: sequence header (AV1 §6.2.2 table).
pub const OBU_SEQUENCE_HEADER: u8 = 1;
/// OBU type: temporal delimiter.
pub const OBU_TEMPORAL_DELIMITER: u8 = 2;
/// OBU type: frame header.
pub const OBU_FRAME_HEADER: u8 = 3;
/// OBU type: tile group.
pub const OBU_TILE_GROUP: u8 = 4;
/// OBU type: metadata.
pub const OBU_METADATA: u8 = 5;
/// OBU type: frame (a frame header and a tile group).
pub const OBU_FRAME: u8 = 6;
/// OBU type: tile list (large-scale tile decoding only).
pub const OBU_TILE_LIST: u8 = 8;
/// OBU type: padding.
pub const OBU_PADDING: u8 = 15;

/// The temporal delimiter OBU a temporal unit opens with (AV1 §7.5): type 2,
/// `obu_has_size_field` 1, size 0.
pub const TEMPORAL_DELIMITER: [u8; 2] = [OBU_TEMPORAL_DELIMITER << 3 | 0x02, 0x00];

const Z_BIT: u8 = 0x80;
const Y_BIT: u8 = 0x40;
const N_BIT: u8 = 0x08;
const HAS_SIZE: u8 = 0x02;
const HAS_EXTENSION: u8 = 0x04;
const FORBIDDEN: u8 = 0x80;

/// Reads an unsigned LEB128 value (AV1 §4.10.5: at most 8 bytes, value below
/// 2^32); returns it and the bytes it took.
pub fn read_leb128(buf: &[u8]) -> Result<(u32, usize), Error> {
    let mut value: u64 = 0;
    for i in 0..8 {
        let Some(&b) = buf.get(i) else {
            return Err(super::truncated("AV1 LEB128 value", i + 1, buf.len()));
        };
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value)
                .map(|v| (v, i + 1))
                .map_err(|_| Error::BadPayload("AV1 LEB128 value of 2^32 or more"));
        }
    }
    Err(Error::BadPayload("AV1 LEB128 value longer than 8 bytes"))
}

/// Appends `v` as unsigned LEB128, in the fewest bytes.
pub fn emit_leb128(mut v: u32, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The bytes `v` takes as LEB128.
pub fn leb128_len(v: usize) -> usize {
    let bits = usize::BITS - v.leading_zeros();
    (bits as usize).div_ceil(7).max(1)
}

/// One OBU of a temporal unit (AV1 §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obu<'a> {
    /// The header byte as written (forbidden bit, type, extension flag,
    /// has-size flag, reserved bit).
    pub header: u8,
    /// The extension byte (temporal and spatial id), if the flag is set.
    pub extension: Option<u8>,
    /// The OBU's payload, without header or size field.
    pub payload: &'a [u8],
}

impl Obu<'_> {
    /// `obu_type`.
    pub fn obu_type(&self) -> u8 {
        (self.header >> 3) & 0x0f
    }

    /// Appends the OBU with its size field (the low-overhead format).
    pub fn emit_sized(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let size = u32::try_from(self.payload.len())
            .map_err(|_| Error::Invalid("AV1 OBU of 4 GiB or more"))?;
        out.push(self.header | HAS_SIZE);
        out.extend(self.extension);
        emit_leb128(size, out);
        out.extend_from_slice(self.payload);
        Ok(())
    }
}

/// The OBUs of a low-overhead bitstream (AV1 §5.2): each with a size field,
/// or, without one, running to the end of the input.
#[derive(Debug, Clone)]
pub struct ObuReader<'a> {
    rest: &'a [u8],
}

impl<'a> ObuReader<'a> {
    /// Reads the OBUs of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        ObuReader { rest: data }
    }

    fn next_obu(&mut self) -> Result<Obu<'a>, Error> {
        let data = self.rest;
        let header = data[0];
        if header & FORBIDDEN != 0 {
            return Err(Error::BadPayload("AV1 OBU forbidden bit set"));
        }
        let mut pos = 1;
        let extension = if header & HAS_EXTENSION != 0 {
            let e = *data
                .get(1)
                .ok_or(super::truncated("AV1 OBU extension", 2, data.len()))?;
            pos = 2;
            Some(e)
        } else {
            None
        };
        let payload = if header & HAS_SIZE != 0 {
            let (size, n) = read_leb128(&data[pos..])?;
            pos += n;
            let end = pos
                .checked_add(size as usize)
                .filter(|&e| e <= data.len())
                .ok_or(super::truncated(
                    "AV1 OBU",
                    pos.saturating_add(size as usize),
                    data.len(),
                ))?;
            let p = &data[pos..end];
            pos = end;
            p
        } else {
            let p = &data[pos..];
            pos = data.len();
            p
        };
        self.rest = &data[pos..];
        Ok(Obu {
            header,
            extension,
            payload,
        })
    }
}

impl<'a> Iterator for ObuReader<'a> {
    type Item = Result<Obu<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.next_obu();
        if r.is_err() {
            self.rest = &[];
        }
        Some(r)
    }
}

/// True if a temporal unit (low-overhead format) holds a sequence header
/// OBU: the start of a coded video sequence, as encoders write it before
/// each keyframe.
pub fn has_sequence_header(temporal_unit: &[u8]) -> bool {
    ObuReader::new(temporal_unit)
        .map_while(Result::ok)
        .any(|o| o.obu_type() == OBU_SEQUENCE_HEADER)
}

/// Cuts AV1 temporal units into payloads.
#[derive(Debug, Clone, Default)]
pub struct Av1Packetizer {
    /// The elements of the temporal unit being cut, back to back.
    elements: Vec<u8>,
    /// Where each element ends in `elements`.
    ends: Vec<usize>,
}

impl Av1Packetizer {
    /// A packetizer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A payload being filled: aggregation header flags and its elements.
struct Building<'a> {
    z: bool,
    parts: Vec<&'a [u8]>,
    used: usize,
}

fn flush(b: &mut Building<'_>, y: bool, n: bool, out: &mut Vec<Vec<u8>>) {
    let count = b.parts.len();
    // §4.4: W = the element count when 1..=3 (the last needs no length),
    // else 0 and every element has its length.
    let w = if count <= 3 { count as u8 } else { 0 };
    let mut agg = w << 4;
    if b.z {
        agg |= Z_BIT;
    }
    if y {
        agg |= Y_BIT;
    }
    if n {
        agg |= N_BIT;
    }
    let mut p = Vec::with_capacity(1 + b.used);
    p.push(agg);
    for (i, part) in b.parts.iter().enumerate() {
        if w == 0 || i + 1 < count {
            // Element lengths are below the MTU, far below 2^32.
            emit_leb128(part.len() as u32, &mut p);
        }
        p.extend_from_slice(part);
    }
    out.push(p);
    b.parts.clear();
    b.used = 0;
    b.z = y;
}

impl Packetizer for Av1Packetizer {
    /// Splits one temporal unit (low-overhead format) into payloads of at
    /// most `mtu` bytes. Temporal delimiters and tile lists are dropped
    /// (§5); each OBU goes out without its size field (§4.4), aggregated
    /// with others while they fit and fragmented across packets (Z/Y)
    /// when not. N is set on the first packet when the unit holds a
    /// sequence header (a new coded video sequence, §4.4).
    fn packetize(&mut self, frame: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) -> Result<(), Error> {
        if mtu < 3 {
            return Err(Error::Invalid(
                "MTU too small for the AV1 aggregation header, a length and one byte",
            ));
        }
        self.elements.clear();
        self.ends.clear();
        let mut new_sequence = false;
        for obu in ObuReader::new(frame) {
            let obu = obu.map_err(|_| Error::Invalid("malformed AV1 temporal unit"))?;
            match obu.obu_type() {
                OBU_TEMPORAL_DELIMITER | OBU_TILE_LIST => continue,
                OBU_SEQUENCE_HEADER => new_sequence = true,
                _ => {}
            }
            self.elements.push(obu.header & !HAS_SIZE);
            self.elements.extend(obu.extension);
            self.elements.extend_from_slice(obu.payload);
            self.ends.push(self.elements.len());
        }
        if self.ends.is_empty() {
            return Err(Error::Invalid("AV1 temporal unit without an OBU to send"));
        }
        let budget = mtu - 1;
        let first = out.len();
        let mut b = Building {
            z: false,
            parts: Vec::new(),
            used: 0,
        };
        let mut start = 0;
        for &end in &self.ends {
            let mut rest = &self.elements[start..end];
            start = end;
            while !rest.is_empty() {
                let room = budget - b.used;
                let need = leb128_len(rest.len()) + rest.len();
                if need <= room {
                    b.parts.push(rest);
                    b.used += need;
                    break;
                }
                if room >= 2 {
                    // The largest fragment whose length and bytes fit.
                    let mut k = room - 1;
                    while leb128_len(k) + k > room {
                        k -= 1;
                    }
                    b.parts.push(&rest[..k]);
                    b.used += leb128_len(k) + k;
                    rest = &rest[k..];
                    let n = new_sequence && out.len() == first;
                    flush(&mut b, true, n, out);
                } else {
                    let n = new_sequence && out.len() == first;
                    flush(&mut b, false, n, out);
                }
            }
        }
        if !b.parts.is_empty() {
            let n = new_sequence && out.len() == first;
            flush(&mut b, false, n, out);
        }
        Ok(())
    }
}

/// Reassembles AV1 temporal units (low-overhead format) from payloads.
#[derive(Debug, Clone, Default)]
pub struct Av1Depacketizer {
    /// The OBU whose fragments are still arriving (header included).
    pending: Vec<u8>,
    /// The previous payload ended with Y: its last OBU continues.
    continues: bool,
}

impl Av1Depacketizer {
    /// A depacketizer.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Appends one whole OBU element to `frame` with its size field.
fn emit_element(obu: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
    let Some(&header) = obu.first() else {
        return Err(Error::BadPayload("empty AV1 OBU element"));
    };
    if header & FORBIDDEN != 0 {
        return Err(Error::BadPayload("AV1 OBU forbidden bit set"));
    }
    let hdr_len = if header & HAS_EXTENSION != 0 { 2 } else { 1 };
    if obu.len() < hdr_len {
        return Err(super::truncated("AV1 OBU header", hdr_len, obu.len()));
    }
    // §5: a temporal delimiter is not sent; we open every unit with one.
    if (header >> 3) & 0x0f == OBU_TEMPORAL_DELIMITER {
        return Ok(());
    }
    let payload = if header & HAS_SIZE != 0 {
        // The sender kept the size field (allowed, not recommended): it
        // must agree with the element.
        let (size, n) = read_leb128(&obu[hdr_len..])?;
        if hdr_len + n + size as usize != obu.len() {
            return Err(Error::BadPayload(
                "AV1 OBU size field disagrees with its element length",
            ));
        }
        &obu[hdr_len + n..]
    } else {
        &obu[hdr_len..]
    };
    Obu {
        header,
        extension: (hdr_len == 2).then(|| obu[1]),
        payload,
    }
    .emit_sized(frame)
}

impl Depacketizer for Av1Depacketizer {
    /// Appends the OBUs of `payload` to `frame`, each with its size field;
    /// a temporal delimiter first when `frame` is empty. An OBU fragmented
    /// across packets (Y, then Z) is held until its last fragment.
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
        let Some((&agg, mut rest)) = payload.split_first() else {
            return Err(super::truncated("AV1 aggregation header", 1, 0));
        };
        let z = agg & Z_BIT != 0;
        let y = agg & Y_BIT != 0;
        let w = usize::from((agg >> 4) & 0x03);
        if z != self.continues {
            self.pending.clear();
            self.continues = false;
            return Err(Error::BadPayload(if z {
                "AV1 packet continues an OBU that never started"
            } else {
                "AV1 OBU fragment not continued by the next packet"
            }));
        }
        if rest.is_empty() {
            return Err(Error::BadPayload("AV1 payload without an OBU element"));
        }
        if frame.is_empty() {
            frame.extend_from_slice(&TEMPORAL_DELIMITER);
        }
        let mut i = 0;
        while !rest.is_empty() {
            i += 1;
            let element = if w != 0 && i == w {
                std::mem::take(&mut rest)
            } else {
                let (len, n) = read_leb128(rest)?;
                let end = n
                    .checked_add(len as usize)
                    .filter(|&e| e <= rest.len())
                    .ok_or(super::truncated(
                        "AV1 OBU element",
                        n.saturating_add(len as usize),
                        rest.len(),
                    ))?;
                let e = &rest[n..end];
                rest = &rest[end..];
                e
            };
            if w != 0 && i < w && rest.is_empty() {
                return Err(Error::BadPayload("AV1 payload with fewer elements than W"));
            }
            let last = rest.is_empty();
            let continued = i == 1 && z;
            if last && y {
                // Held until the next packet ends it.
                if !continued {
                    self.pending.clear();
                }
                self.pending.extend_from_slice(element);
                self.continues = true;
            } else if continued {
                self.pending.extend_from_slice(element);
                let r = emit_element(&self.pending, frame);
                self.pending.clear();
                self.continues = false;
                r?;
            } else {
                emit_element(element, frame)?;
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.pending.clear();
        self.continues = false;
    }

    /// Z clear: the payload starts with a whole OBU (the nearest thing to a
    /// frame start the aggregation header has).
    fn is_frame_start(&self, payload: &[u8]) -> bool {
        payload.first().is_some_and(|b| b & Z_BIT == 0)
    }

    /// N set: the first packet of a new coded video sequence (a keyframe
    /// with its sequence header).
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        payload
            .first()
            .is_some_and(|b| b & Z_BIT == 0 && b & N_BIT != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn leb128_round_trips_and_bounds() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut b = Vec::new();
            emit_leb128(v, &mut b);
            assert_eq!(b.len(), leb128_len(v as usize));
            assert_eq!(read_leb128(&b), Ok((v, b.len())));
        }
        // AV1 §4.10.5 allows padded encodings.
        assert_eq!(read_leb128(&[0x85, 0x80, 0x00]), Ok((5, 3)));
        assert!(read_leb128(&[0x80; 8]).is_err());
        assert!(read_leb128(&[0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        assert!(read_leb128(&[0x80]).is_err());
    }

    /// A sequence header, a frame with an extension byte, and a temporal
    /// delimiter first: the packet holds the two with W=2 and N set.
    #[test]
    fn small_keyframe_is_one_packet_with_w_and_n() {
        let tu = [
            0x12, 0x00, // temporal delimiter
            0x0a, 0x02, 0xaa, 0xbb, // sequence header, size 2
            0x36, 0x28, 0x03, 1, 2, 3, // frame, extension 0x28, size 3
        ];
        let mut ps = Vec::new();
        Av1Packetizer::new().packetize(&tu, 1200, &mut ps).unwrap();
        assert_eq!(
            ps,
            vec![vec![
                0x28, // Z=0 Y=0 W=2 N=1
                0x03, 0x08, 0xaa, 0xbb, // length 3, then the header without its size bit
                0x34, 0x28, 1, 2, 3, // the last element has no length
            ]]
        );
        let mut d = Av1Depacketizer::new();
        assert!(d.is_keyframe(&ps[0]) && d.is_frame_start(&ps[0]));
        let mut f = Vec::new();
        d.depacketize(&ps[0], &mut f).unwrap();
        assert_eq!(f, tu);
    }

    #[test]
    fn large_obu_fragments_with_z_and_y() {
        let mut tu = vec![0x32, 0xe8, 0x07]; // frame OBU of 1000 bytes
        tu.extend((0..1000).map(|i| i as u8));
        let mut ps = Vec::new();
        Av1Packetizer::new().packetize(&tu, 300, &mut ps).unwrap();
        assert_eq!(ps.len(), 4);
        assert_eq!(ps[0][0], 0x50); // Y, W=1
        assert_eq!(ps[1][0], 0xd0); // Z, Y, W=1
        assert_eq!(ps[3][0], 0x90); // Z, W=1
        assert!(ps.iter().all(|p| p.len() <= 300));
        let mut d = Av1Depacketizer::new();
        assert!(!d.is_keyframe(&ps[0]));
        assert!(!d.is_frame_start(&ps[1]));
        let mut f = Vec::new();
        for p in &ps {
            d.depacketize(p, &mut f).unwrap();
        }
        assert_eq!(f, [&TEMPORAL_DELIMITER[..], &tu].concat());
    }

    #[test]
    fn every_element_length_form_parses() {
        // W=0: every element with its length; one OBU kept its size field.
        let p = [0x00, 0x02, 0x30, 0x07, 0x03, 0x32, 0x01, 0x09];
        let mut f = Vec::new();
        Av1Depacketizer::new().depacketize(&p, &mut f).unwrap();
        assert_eq!(f, [0x12, 0x00, 0x32, 0x01, 0x07, 0x32, 0x01, 0x09]);
        // W=3 with three elements.
        let p = [0x30, 0x01, 0x30, 0x01, 0x28, 0x30, 0x05];
        let mut f = Vec::new();
        Av1Depacketizer::new().depacketize(&p, &mut f).unwrap();
        assert_eq!(f, [0x12, 0, 0x32, 0, 0x2a, 0, 0x32, 1, 5]);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let bad: &[&[u8]] = &[
            &[],
            &[0x10],             // no element
            &[0x80, 0x30],       // continues nothing
            &[0x30, 0x05, 0x30], // W=3, fewer elements
            &[0x00, 0x05, 0x30], // length past the end
            &[0x10, 0xb0],       // forbidden bit
            &[0x10, 0x34],       // extension flag, no extension byte
            &[0x10, 0x32, 0x05], // size field past the element
            &[0x00, 0x00],       // empty element
        ];
        for p in bad {
            let mut f = Vec::new();
            assert!(
                Av1Depacketizer::new().depacketize(p, &mut f).is_err(),
                "{p:x?}"
            );
        }
        // A Y packet followed by one without Z.
        let mut d = Av1Depacketizer::new();
        let mut f = Vec::new();
        d.depacketize(&[0x50, 0x30, 1], &mut f).unwrap();
        assert!(d.depacketize(&[0x10, 0x30, 1], &mut f).is_err());
        // A temporal unit with only a temporal delimiter has nothing to send.
        assert!(
            Av1Packetizer::new()
                .packetize(&TEMPORAL_DELIMITER, 1200, &mut Vec::new())
                .is_err()
        );
        assert!(
            Av1Packetizer::new()
                .packetize(&[0x32, 0x05, 1], 1200, &mut Vec::new())
                .is_err()
        );
    }

    /// A temporal unit: OBUs (type, extension, payload), the last maybe
    /// without its size field.
    type TestObu = (u8, Option<u8>, Vec<u8>);

    fn temporal_unit() -> impl Strategy<Value = (Vec<TestObu>, bool)> {
        (
            prop::collection::vec(
                (
                    0u8..16,
                    prop::option::of(any::<u8>()),
                    prop::collection::vec(any::<u8>(), 0..700),
                ),
                1..8,
            ),
            any::<bool>(),
        )
    }

    proptest! {
        /// Any temporal unit round-trips at any MTU of 50 or more: the
        /// output is the input with a temporal delimiter first, the
        /// delimiters and tile lists dropped and every size field present.
        #[test]
        fn temporal_units_round_trip(
            (obus, last_unsized) in temporal_unit(),
            mtu in 50usize..1500,
            reserved in any::<bool>(),
        ) {
            let mut tu = Vec::new();
            let mut want = TEMPORAL_DELIMITER.to_vec();
            let mut new_sequence = false;
            for (i, (t, ext, payload)) in obus.iter().enumerate() {
                let obu = Obu {
                    header: t << 3 | u8::from(ext.is_some()) << 2 | u8::from(reserved),
                    extension: *ext,
                    payload,
                };
                if i + 1 == obus.len() && last_unsized {
                    tu.push(obu.header);
                    tu.extend(obu.extension);
                    tu.extend_from_slice(payload);
                } else {
                    obu.emit_sized(&mut tu).unwrap();
                }
                if *t != OBU_TEMPORAL_DELIMITER && *t != OBU_TILE_LIST {
                    obu.emit_sized(&mut want).unwrap();
                    new_sequence |= *t == OBU_SEQUENCE_HEADER;
                }
            }
            let mut ps = Vec::new();
            let r = Av1Packetizer::new().packetize(&tu, mtu, &mut ps);
            if want.len() == TEMPORAL_DELIMITER.len() {
                prop_assert!(r.is_err());
                return Ok(());
            }
            r.unwrap();
            let mut d = Av1Depacketizer::new();
            prop_assert_eq!(d.is_keyframe(&ps[0]), new_sequence);
            prop_assert!(d.is_frame_start(&ps[0]));
            let mut f = Vec::new();
            for p in &ps {
                prop_assert!(p.len() <= mtu, "{} > {}", p.len(), mtu);
                prop_assert_eq!(p[0] & N_BIT != 0, new_sequence && std::ptr::eq(p, &ps[0]));
                d.depacketize(p, &mut f).unwrap();
            }
            prop_assert_eq!(f, want);
        }

        /// Arbitrary payloads never panic.
        #[test]
        fn junk_never_panics(ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6)) {
            let mut d = Av1Depacketizer::new();
            let mut f = Vec::new();
            for p in &ps {
                let _ = d.depacketize(p, &mut f);
                let _ = (d.is_frame_start(p), d.is_keyframe(p));
            }
            let _ = Av1Packetizer::new().packetize(&ps.concat(), 50, &mut Vec::new());
        }
    }
}
