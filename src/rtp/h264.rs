//! H.264 payload format (RFC 6184), packetization-mode 1 (non-interleaved).
//!
//! Encoders emit an access unit (one frame) as NAL units in Annex-B byte
//! stream form, each behind a start code `00 00 00 01`. On the wire each RTP
//! payload starts with a one-byte NAL header `F|NRI(2)|Type(5)` (§5.3) and is
//! one of:
//!
//! ```text
//! single NAL unit (type 1..=23, §5.6):   the NAL unit itself
//! STAP-A (type 24, §5.7.1):              [hdr] (size:16, NAL unit)*      small NALs together
//! FU-A (type 28, §5.8):                  [FU indicator][S|E|R|Type] fragment   one big NAL in pieces
//! ```
//!
//! The packetizer aggregates consecutive NAL units that fit the MTU into STAP-A
//! (so SPS and PPS ride with the IDR slice, or just before it) and splits NAL
//! units larger than the MTU into FU-A fragments. If an IDR frame comes without
//! parameter sets, the last SPS/PPS seen are sent before it. The depacketizer
//! writes Annex-B with 4-byte start codes. STAP-B, MTAP and FU-B (interleaved
//! mode 2) are refused.

use super::Error;
use super::payload::{Depacketizer, Packetizer};

/// RFC 6184 §5.4 / H.264 Table 7-1 NAL unit types used here.
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture (keyframe).
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Single-time aggregation packet A (RFC 6184 §5.7.1).
    pub const STAP_A: u8 = 24;
    /// Fragmentation unit A (RFC 6184 §5.8).
    pub const FU_A: u8 = 28;
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// Splits an Annex-B byte stream into NAL units (without start codes; empty
/// units skipped). Accepts 3- and 4-byte start codes.
pub fn split_annex_b(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    // Positions where a 00 00 01 start code begins.
    let mut i = 0;
    let mut starts = Vec::new();
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len() + 1);
    if starts.is_empty() {
        nals.push(stream);
    } else {
        for (k, &s) in starts.iter().enumerate() {
            let mut end = starts.get(k + 1).copied().unwrap_or(stream.len());
            // A 4-byte start code's leading zero belongs to the code, not the NAL.
            if k + 1 < starts.len() && end > s + 3 && stream[end - 1] == 0 {
                end -= 1;
            }
            nals.push(&stream[s + 3..end]);
        }
    }
    nals.into_iter().filter(|n| !n.is_empty())
}

/// `(start code offset, NAL start, NAL end)` of each NAL unit in a stream.
fn nal_spans(stream: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut codes = Vec::new(); // (code start, payload start)
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            let code = if i > 0 && stream[i - 1] == 0 {
                i - 1
            } else {
                i
            };
            codes.push((code, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut spans = Vec::with_capacity(codes.len());
    for (k, &(code, start)) in codes.iter().enumerate() {
        let end = codes.get(k + 1).map_or(stream.len(), |c| c.0);
        if end > start {
            spans.push((code, start, end));
        }
    }
    spans
}

/// Reads access units (frames) from an H.264 Annex-B elementary stream, as
/// slices of the input that keep their start codes. A new access unit starts
/// (H.264 §7.4.1.2.3) at an AUD, SEI, SPS or PPS, or at a slice whose
/// `first_mb_in_slice` is 0, once the current one has a slice.
#[derive(Debug, Clone)]
pub struct AnnexBReader<'a> {
    stream: &'a [u8],
    spans: Vec<(usize, usize, usize)>,
    pos: usize,
}

impl<'a> AnnexBReader<'a> {
    /// Indexes the NAL units of `stream` (bytes before the first start code are skipped).
    pub fn new(stream: &'a [u8]) -> Self {
        AnnexBReader {
            stream,
            spans: nal_spans(stream),
            pos: 0,
        }
    }
}

impl<'a> Iterator for AnnexBReader<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let &(first_code, _, _) = self.spans.get(self.pos)?;
        let mut has_slice = false;
        let mut end = self.stream.len();
        let mut k = self.pos;
        while let Some(&(code, start, nal_end)) = self.spans.get(k) {
            let nal = &self.stream[start..nal_end];
            let t = nal[0] & 0x1F;
            let is_slice = t == nal_type::SLICE || t == nal_type::IDR;
            if has_slice && k > self.pos && nal_starts_picture(nal) {
                end = code;
                break;
            }
            has_slice |= is_slice;
            k += 1;
        }
        self.pos = k;
        Some(&self.stream[first_code..end])
    }
}

/// Packetizes Annex-B access units (RFC 6184 packetization-mode 1).
#[derive(Debug, Clone, Default)]
pub struct H264Packetizer {
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
}

impl H264Packetizer {
    /// A packetizer that has seen no parameter sets yet.
    pub fn new() -> Self {
        Self::default()
    }
}

// ANCHOR: stap_a
/// Emits `nal` (or a pending STAP-A) as payloads.
fn flush_stap(stap: &mut Vec<&[u8]>, out: &mut Vec<Vec<u8>>) {
    match stap.len() {
        0 => {}
        1 => out.push(stap[0].to_vec()),
        _ => {
            // RFC 6184 §5.7: F is the OR of the F bits, NRI the maximum NRI.
            let f = stap.iter().fold(0, |a, n| a | (n[0] & 0x80));
            let nri = stap.iter().map(|n| n[0] & 0x60).max().unwrap_or(0);
            let mut p = vec![f | nri | nal_type::STAP_A];
            for n in stap.iter() {
                p.extend_from_slice(&(n.len() as u16).to_be_bytes());
                p.extend_from_slice(n);
            }
            out.push(p);
        }
    }
    stap.clear();
}
// ANCHOR_END: stap_a

impl Packetizer for H264Packetizer {
    fn packetize(&mut self, frame: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) -> Result<(), Error> {
        if mtu < 3 {
            return Err(Error::Invalid("MTU too small for an FU-A fragment"));
        }
        let nals: Vec<&[u8]> = split_annex_b(frame).collect();
        if nals.is_empty() {
            return Err(Error::Invalid("empty H.264 access unit"));
        }
        let has = |t: u8| nals.iter().any(|n| n[0] & 0x1F == t);
        // Remember parameter sets; resend them before an IDR that lacks them.
        for n in &nals {
            match n[0] & 0x1F {
                nal_type::SPS => self.sps = Some(n.to_vec()),
                nal_type::PPS => self.pps = Some(n.to_vec()),
                _ => {}
            }
        }
        let mut all: Vec<&[u8]> = Vec::with_capacity(nals.len() + 2);
        if has(nal_type::IDR) && !has(nal_type::SPS) {
            if let (Some(s), Some(p)) = (&self.sps, &self.pps) {
                all.push(s);
                all.push(p);
            }
        }
        all.extend_from_slice(&nals);

        let mut stap: Vec<&[u8]> = Vec::new();
        let mut stap_len = 1;
        for nal in all {
            if nal.len() > mtu {
                flush_stap(&mut stap, out);
                stap_len = 1;
                // ANCHOR: fu_a
                // RFC 6184 §5.8: FU indicator keeps F and NRI, type 28; the FU
                // header carries S, E and the original type; the NAL header byte
                // itself is not sent.
                let indicator = (nal[0] & 0xE0) | nal_type::FU_A;
                let body = &nal[1..];
                let pieces = body.chunks(mtu - 2);
                let last = pieces.len() - 1;
                for (k, piece) in body.chunks(mtu - 2).enumerate() {
                    let mut hdr = nal[0] & 0x1F;
                    if k == 0 {
                        hdr |= 0x80;
                    }
                    if k == last {
                        hdr |= 0x40;
                    }
                    let mut p = Vec::with_capacity(2 + piece.len());
                    p.extend_from_slice(&[indicator, hdr]);
                    p.extend_from_slice(piece);
                    out.push(p);
                }
                continue;
                // ANCHOR_END: fu_a
            }
            // Aggregate while the STAP-A (1 + Σ(2 + len)) fits; a lone NAL goes
            // out as a single NAL unit packet.
            let grown = stap_len + 2 + nal.len();
            let fits = stap.is_empty() || (grown <= mtu && grown <= u16::MAX as usize);
            if !fits {
                flush_stap(&mut stap, out);
                stap_len = 1;
            }
            stap.push(nal);
            stap_len += 2 + nal.len();
        }
        flush_stap(&mut stap, out);
        Ok(())
    }
}

/// Reassembles Annex-B access units from RFC 6184 payloads.
#[derive(Debug, Clone, Default)]
pub struct H264Depacketizer {
    in_fu: bool,
}

impl H264Depacketizer {
    /// A depacketizer outside any fragmented NAL.
    pub fn new() -> Self {
        Self::default()
    }
}

/// True if a NAL unit (header byte first) starts a new picture: parameter sets,
/// AUD, SEI, or a slice with `first_mb_in_slice` = 0 (ue(v) 0 is a single 1 bit).
fn nal_starts_picture(nal: &[u8]) -> bool {
    match nal.first().map(|b| b & 0x1F) {
        Some(nal_type::SLICE | nal_type::IDR) => nal.get(1).is_some_and(|b| b & 0x80 != 0),
        Some(nal_type::SEI | nal_type::SPS | nal_type::PPS | nal_type::AUD) => true,
        _ => false,
    }
}

impl Depacketizer for H264Depacketizer {
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
        let Some(&hdr) = payload.first() else {
            return Err(Error::BadPayload("empty H.264 payload"));
        };
        match hdr & 0x1F {
            1..=23 => {
                self.in_fu = false;
                frame.extend_from_slice(&START_CODE);
                frame.extend_from_slice(payload);
            }
            nal_type::STAP_A => {
                self.in_fu = false;
                let mut rest = &payload[1..];
                if rest.is_empty() {
                    return Err(Error::BadPayload("empty STAP-A"));
                }
                while !rest.is_empty() {
                    if rest.len() < 2 {
                        return Err(Error::BadPayload("STAP-A size field truncated"));
                    }
                    let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    if n == 0 || rest.len() < 2 + n {
                        return Err(Error::BadPayload("STAP-A NAL size zero or past the end"));
                    }
                    frame.extend_from_slice(&START_CODE);
                    frame.extend_from_slice(&rest[2..2 + n]);
                    rest = &rest[2 + n..];
                }
            }
            nal_type::FU_A => {
                let Some(&fu) = payload.get(1) else {
                    return Err(Error::BadPayload("FU-A without FU header"));
                };
                let (start, end) = (fu & 0x80 != 0, fu & 0x40 != 0);
                if start {
                    frame.extend_from_slice(&START_CODE);
                    frame.push((hdr & 0xE0) | (fu & 0x1F));
                } else if !self.in_fu {
                    return Err(Error::BadPayload("FU-A continuation without its start"));
                }
                frame.extend_from_slice(&payload[2..]);
                self.in_fu = !end;
            }
            _ => {
                return Err(Error::BadPayload(
                    "H.264 NAL type not allowed in packetization-mode 1",
                ));
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.in_fu = false;
    }

    fn is_frame_start(&self, payload: &[u8]) -> bool {
        match payload.first().map(|b| b & 0x1F) {
            Some(nal_type::STAP_A) => payload.get(3..).is_some_and(nal_starts_picture),
            Some(nal_type::FU_A) => match payload.get(1) {
                Some(&fu) if fu & 0x80 != 0 => {
                    let first_mb = payload.get(2).copied().unwrap_or(0);
                    nal_starts_picture(&[fu & 0x1F, first_mb])
                }
                _ => false,
            },
            Some(_) => nal_starts_picture(payload),
            None => false,
        }
    }

    /// A frame a decoder can start from: one that begins with a sequence
    /// parameter set (in a STAP-A or alone), as the packetizer sends every IDR.
    /// An IDR slice without parameter sets in front cannot be decoded by a
    /// receiver that joins there (unless `sprop-parameter-sets` came in SDP,
    /// RFC 6184 §8.1, which WebRTC does not use), so it does not count.
    /// A keyframe starts with its SPS: the first NAL unit of the packet,
    /// after any access unit delimiter or SEI (RFC 6184 §5.7.1: encoders
    /// such as aiortc's aggregate `AUD, SPS, PPS` in one STAP-A).
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        let skippable = |t: u8| t == nal_type::AUD || t == nal_type::SEI;
        match payload.first().map(|b| b & 0x1F) {
            Some(nal_type::STAP_A) => {
                let mut rest = payload.get(1..).unwrap_or(&[]);
                while rest.len() > 2 {
                    let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                    let Some(&hdr) = rest.get(2).filter(|_| n > 0 && rest.len() >= 2 + n) else {
                        return false;
                    };
                    if !skippable(hdr & 0x1F) {
                        return hdr & 0x1F == nal_type::SPS;
                    }
                    rest = &rest[2 + n..];
                }
                false
            }
            Some(nal_type::FU_A) => payload
                .get(1)
                .is_some_and(|&fu| fu & 0x80 != 0 && fu & 0x1F == nal_type::SPS),
            Some(t) => t == nal_type::SPS,
            None => false,
        }
    }
}

/// True if a payload carries (the start of) an IDR slice.
pub fn contains_idr(payload: &[u8]) -> bool {
    match payload.first().map(|b| b & 0x1F) {
        Some(nal_type::STAP_A) => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let n = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                if n == 0 || rest.len() < 2 + n {
                    return false;
                }
                if rest[2] & 0x1F == nal_type::IDR {
                    return true;
                }
                rest = &rest[2 + n..];
            }
            false
        }
        Some(nal_type::FU_A) => payload
            .get(1)
            .is_some_and(|&fu| fu & 0x80 != 0 && fu & 0x1F == nal_type::IDR),
        Some(t) => t == nal_type::IDR,
        None => false,
    }
}

/// Writes H.264 access units as an Annex-B elementary stream (the `.h264`
/// files `ffmpeg -f h264` reads and writes; H.264 Annex B.1): every NAL
/// unit behind a 4-byte start code `00 00 00 01`. The receiving side of a
/// test hands it the frames [`H264Depacketizer`] rebuilt; [`AnnexBReader`]
/// reads the stream back frame by frame.
///
/// NAL units are written as given: an encoder has already inserted the
/// emulation-prevention bytes (H.264 §7.4.1) that keep `00 00 0x` out of them.
#[derive(Debug, Clone, Default)]
pub struct AnnexBWriter {
    out: Vec<u8>,
    access_units: u64,
}

impl AnnexBWriter {
    /// An empty stream.
    pub fn new() -> Self {
        AnnexBWriter::default()
    }

    /// Appends one access unit given in Annex-B form (3- or 4-byte start
    /// codes, as [`H264Depacketizer`] and [`AnnexBReader`] give it); each
    /// NAL unit is written again behind a 4-byte start code. An access unit
    /// without any NAL unit is refused.
    pub fn write_access_unit(&mut self, au: &[u8]) -> Result<(), Error> {
        self.write_nal_units(split_annex_b(au))
    }

    /// Appends one access unit given as its NAL units (without start codes).
    /// Refused (and nothing written) if there is none, one is empty or
    /// its forbidden_zero_bit is set (H.264 §7.4.1).
    pub fn write_nal_units<'a>(
        &mut self,
        nals: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(), Error> {
        let start = self.out.len();
        let mut n = 0;
        for nal in nals {
            match nal.first() {
                None => {
                    self.out.truncate(start);
                    return Err(Error::Invalid("empty NAL unit"));
                }
                Some(h) if h & 0x80 != 0 => {
                    self.out.truncate(start);
                    return Err(Error::Invalid("NAL unit with forbidden_zero_bit set"));
                }
                Some(_) => {}
            }
            self.out.extend_from_slice(&START_CODE);
            self.out.extend_from_slice(nal);
            n += 1;
        }
        if n == 0 {
            return Err(Error::Invalid("access unit without NAL units"));
        }
        self.access_units += 1;
        Ok(())
    }

    /// Access units written so far.
    pub fn access_units(&self) -> u64 {
        self.access_units
    }

    /// The stream so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.out
    }

    /// The whole stream.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stap_a_of_aud_sps_pps_starts_a_keyframe() {
        let d = H264Depacketizer::new();
        // STAP-A: AUD (2 bytes), SPS (3), PPS (2).
        let stap = [
            24, 0, 2, 0x09, 0xF0, 0, 3, 0x67, 0x42, 0x00, 0, 2, 0x68, 0xCE,
        ];
        assert!(d.is_keyframe(&stap));
        assert!(d.is_frame_start(&stap));
        // AUD then a non-IDR slice: not a keyframe.
        let delta = [24, 0, 2, 0x09, 0xF0, 0, 2, 0x41, 0x80];
        assert!(!d.is_keyframe(&delta));
        // A truncated aggregate is not one either.
        assert!(!d.is_keyframe(&[24, 0, 9, 0x09]));
    }
    use proptest::prelude::*;

    fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
        nals.iter()
            .flat_map(|n| START_CODE.iter().chain(n.iter()).copied())
            .collect()
    }

    fn depacketize_all(payloads: &[Vec<u8>]) -> Vec<u8> {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        for p in payloads {
            d.depacketize(p, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn split_handles_three_and_four_byte_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4,
        ];
        let v: Vec<_> = split_annex_b(&s).collect();
        assert_eq!(v, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
    }

    #[test]
    fn sps_pps_idr_go_in_one_stap_a() {
        let sps = vec![0x67, 0x42, 0xC0, 0x1F];
        let pps = vec![0x68, 0xCE, 0x3C, 0x80];
        let idr = vec![0x65, 0x88, 0x84, 0x00, 0x33];
        let au = annex_b(&[sps.clone(), pps.clone(), idr.clone()]);
        let mut pk = H264Packetizer::new();
        let mut out = Vec::new();
        pk.packetize(&au, 1200, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][0], 0x78); // NRI 3, type 24
        assert_eq!(&out[0][1..3], &[0, 4]);
        let d = H264Depacketizer::new();
        assert!(d.is_keyframe(&out[0]) && d.is_frame_start(&out[0]));
        assert_eq!(depacketize_all(&out), au);

        // A big IDR: SPS+PPS in a STAP-A, the IDR in FU-A pieces within the MTU.
        let mut big = vec![0x65, 0x88];
        big.extend((0..3000u32).map(|i| (i % 250 + 1) as u8));
        let au = annex_b(&[sps.clone(), pps.clone(), big.clone()]);
        out.clear();
        pk.packetize(&au, 1000, &mut out).unwrap();
        assert_eq!(out[0][0] & 0x1F, 24);
        assert_eq!(&out[1][..2], &[0x7C, 0x85]); // FU indicator NRI 3; S bit + type 5
        assert_eq!(out.last().unwrap()[1], 0x45); // E bit + type 5
        assert!(out.iter().all(|p| p.len() <= 1000));
        // The IDR's first fragment carries an IDR, but the frame a decoder can
        // join at starts with the parameter sets in the STAP-A.
        assert!(contains_idr(&out[1]) && !H264Depacketizer::new().is_keyframe(&out[1]));
        assert!(H264Depacketizer::new().is_keyframe(&out[0]) && !contains_idr(&out[0]));
        assert_eq!(depacketize_all(&out), au);

        // A later IDR without parameter sets gets the cached ones in front.
        out.clear();
        pk.packetize(&annex_b(std::slice::from_ref(&idr)), 1200, &mut out)
            .unwrap();
        assert_eq!(depacketize_all(&out), annex_b(&[sps, pps, idr]));
    }

    #[test]
    fn bad_payloads_are_errors() {
        let mut d = H264Depacketizer::new();
        let mut out = Vec::new();
        assert!(d.depacketize(&[], &mut out).is_err());
        assert!(d.depacketize(&[0x7C, 0x05, 1], &mut out).is_err()); // FU-A middle without start
        assert!(d.depacketize(&[0x78, 0, 9, 0x65], &mut out).is_err()); // STAP-A size past end
        assert!(d.depacketize(&[0x79, 0], &mut out).is_err()); // STAP-B
    }

    fn arb_nal() -> impl Strategy<Value = Vec<u8>> {
        // No zero bytes in bodies so the Annex-B split is unambiguous (real
        // encoders guarantee it with emulation prevention bytes).
        (
            0u8..4,
            1u8..=23,
            proptest::collection::vec(1u8..=255, 0..2500),
        )
            .prop_map(|(nri, t, body)| {
                let mut n = vec![nri << 5 | t];
                n.extend(body);
                n
            })
    }

    #[test]
    fn annex_b_reader_groups_access_units() {
        let sps = vec![0x67, 0x42];
        let pps = vec![0x68, 0xCE];
        let idr = vec![0x65, 0x88, 1];
        let idr2 = vec![0x65, 0x08, 2]; // second slice of the same picture (first_mb != 0)
        let p1 = vec![0x41, 0x9A, 3];
        let p2 = vec![0x41, 0x9B, 4];
        let au0 = annex_b(&[sps, pps, idr, idr2]);
        let au1 = annex_b(&[p1]);
        let au2 = annex_b(&[p2]);
        let stream = [au0.clone(), au1.clone(), au2.clone()].concat();
        let aus: Vec<&[u8]> = AnnexBReader::new(&stream).collect();
        assert_eq!(aus, vec![&au0[..], &au1[..], &au2[..]]);
    }

    #[test]
    fn annex_b_writer_normalises_start_codes_and_refuses_bad_units() {
        let mut w = AnnexBWriter::new();
        // A 3-byte start code in, a 4-byte one out.
        w.write_access_unit(&[0, 0, 1, 0x65, 0x88, 7, 0, 0, 0, 1, 0x65, 0x08, 8])
            .unwrap();
        w.write_nal_units([&[0x41u8, 0x9A][..]]).unwrap();
        assert_eq!(w.access_units(), 2);
        assert!(w.write_access_unit(&[]).is_err());
        assert!(w.write_nal_units([&[0x41u8][..], &[][..]]).is_err());
        assert!(w.write_nal_units([&[0xC1u8, 1][..]]).is_err());
        assert_eq!(w.access_units(), 2);
        let want = [
            &[0, 0, 0, 1, 0x65, 0x88, 7][..],
            &[0, 0, 0, 1, 0x65, 0x08, 8],
            &[0, 0, 0, 1, 0x41, 0x9A],
        ]
        .concat();
        assert_eq!(w.as_bytes(), &want[..]);
        let aus: Vec<&[u8]> = AnnexBReader::new(&want).collect();
        assert_eq!(aus, vec![&want[..14], &want[14..]]);
    }

    /// An access unit as an encoder writes one: maybe SPS and PPS, a first
    /// slice (first_mb_in_slice 0: the top bit of its second byte set),
    /// maybe more slices of the same picture (top bit clear).
    fn arb_access_unit() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let body = || proptest::collection::vec(1u8..=255, 0..300);
        (
            any::<bool>(),
            any::<bool>(),
            body(),
            proptest::collection::vec(body(), 0..3),
        )
            .prop_map(|(params, idr, first, more)| {
                let t = if idr { 0x65 } else { 0x41 };
                let mut nals = Vec::new();
                if params {
                    nals.push(vec![0x67, 0x42, 0xE0, 0x1F]);
                    nals.push(vec![0x68, 0xCE, 0x3C]);
                }
                let mut s = vec![t, 0x80 | first.first().copied().unwrap_or(1)];
                s.extend(first);
                nals.push(s);
                for b in more {
                    let mut s = vec![t, 0x7F & b.first().copied().unwrap_or(1) | 1];
                    s.extend(b);
                    nals.push(s);
                }
                nals
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn annex_b_writer_reader_round_trip(aus in proptest::collection::vec(arb_access_unit(), 0..8)) {
            let mut w = AnnexBWriter::new();
            for au in &aus {
                w.write_nal_units(au.iter().map(Vec::as_slice)).unwrap();
            }
            let stream = w.into_bytes();
            let back: Vec<Vec<Vec<u8>>> = AnnexBReader::new(&stream)
                .map(|au| split_annex_b(au).map(<[u8]>::to_vec).collect())
                .collect();
            prop_assert_eq!(back, aus);
        }

        #[test]
        fn packetize_depacketize(nals in proptest::collection::vec(arb_nal(), 1..6), mtu in 3usize..1500) {
            let au = annex_b(&nals);
            let mut out = Vec::new();
            H264Packetizer::new().packetize(&au, mtu, &mut out).unwrap();
            for p in &out {
                prop_assert!(p.len() <= mtu);
            }
            prop_assert_eq!(depacketize_all(&out), au);
        }

        #[test]
        fn mutated_payloads_never_panic(
            nals in proptest::collection::vec(arb_nal(), 1..4),
            mtu in 3usize..600,
            flips in proptest::collection::vec((any::<proptest::sample::Index>(), any::<proptest::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut out = Vec::new();
            H264Packetizer::new().packetize(&annex_b(&nals), mtu, &mut out).unwrap();
            for (p, i, v) in flips {
                let p = p.index(out.len());
                let i = i.index(out[p].len());
                out[p][i] = v;
            }
            let mut d = H264Depacketizer::new();
            let mut frame = Vec::new();
            for p in &out {
                let _ = (d.depacketize(p, &mut frame), d.is_keyframe(p), d.is_frame_start(p), contains_idr(p));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut d = H264Depacketizer::new();
            let _ = d.depacketize(&data, &mut Vec::new());
            let _ = (d.is_keyframe(&data), d.is_frame_start(&data), contains_idr(&data));
            let _ = split_annex_b(&data).count();
            let n: usize = AnnexBReader::new(&data).map(|au| au.len()).sum();
            prop_assert!(n <= data.len());
        }
    }
}
