//! VP9 payload format (RFC 9628).
//!
//! Each payload starts with a descriptor (§4.2); its first byte says what follows:
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |I|P|L|F|B|E|V|Z|   I picture id · P inter-picture predicted · L layer indices
//!      +-+-+-+-+-+-+-+-+   F flexible mode · B/E begin/end of a frame · V scalability
//! I:   |M| PICTURE ID  |     structure · Z not a reference for upper spatial layers
//! M:   | EXTENDED PID  |
//! L:   | TID |U| SID |D|
//!      |   TL0PICIDX   |   (non-flexible mode only)
//! P,F: | P_DIFF      |N|   (flexible mode, up to 3)
//! V:   | SS ...        |   (§4.2.1: N_S|Y|G, sizes, picture group)
//! ```
//!
//! [`Vp9Header`] reads the whole descriptor in place (no allocation: the
//! SFU reads every packet of a scalable VP9 track with it, `sfu::vp9svc`),
//! [`ScalabilityStructure`] the SS; [`Vp9Descriptor`] is an owned copy that
//! can be written back. The packetizer sends one spatial layer in
//! non-flexible mode with a 15-bit picture id, sets P from the VP9 frame
//! header's frame_type, and marks the first and last packet of each frame
//! with B and E.

use super::Error;
use super::payload::{Depacketizer, Packetizer};
use super::vp8::PictureId;

/// The VP9 payload descriptor (RFC 9628 §4.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Vp9Descriptor {
    /// P: the frame refers to earlier frames (false for a keyframe).
    pub inter_picture: bool,
    /// F: flexible mode (reference indices in the descriptor).
    pub flexible: bool,
    /// B: first packet of a frame.
    pub start_of_frame: bool,
    /// E: last packet of a frame.
    pub end_of_frame: bool,
    /// Z: not used for inter-layer prediction of upper spatial layers.
    pub not_upper_reference: bool,
    /// I: picture id.
    pub picture_id: Option<PictureId>,
    /// L: `(TID 0..=7, U, SID 0..=7, D)`.
    pub layer: Option<(u8, bool, u8, bool)>,
    /// TL0PICIDX (non-flexible mode with L).
    pub tl0_pic_idx: Option<u8>,
    /// P_DIFF values (flexible mode with P; at most 3, each 1..=127).
    pub p_diffs: Vec<u8>,
    /// The scalability structure, kept as its raw bytes (§4.2.1).
    pub ss: Option<Vec<u8>>,
}

fn short(got: usize) -> Error {
    Error::Truncated {
        what: "VP9 payload descriptor",
        needed: got + 1,
        got,
    }
}

/// The length of a scalability structure at the start of `p` (RFC 9628 §4.2.1).
fn ss_len(p: &[u8]) -> Result<usize, Error> {
    let &b = p.first().ok_or(short(0))?;
    let n_s = (b >> 5) as usize + 1;
    let mut n = 1;
    if b & 0x10 != 0 {
        n += 4 * n_s;
    }
    if b & 0x08 != 0 {
        let &n_g = p.get(n).ok_or(short(n))?;
        n += 1;
        for _ in 0..n_g {
            let &g = p.get(n).ok_or(short(n))?;
            n += 1 + ((g >> 2) & 0x03) as usize;
        }
    }
    if p.len() < n {
        return Err(short(p.len()));
    }
    Ok(n)
}

/// The layer indices of a frame (RFC 9628 §4.2, L=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerIndices {
    /// TID: the temporal layer (0..=7).
    pub temporal_id: u8,
    /// U, switching up point: frames of temporal layers above TID that
    /// follow this one refer to no frame above TID before it, so a
    /// receiver may start taking a higher frame rate here.
    pub switching_up: bool,
    /// SID: the spatial layer (0..=7).
    pub spatial_id: u8,
    /// D, inter-layer dependency used: the frame refers to the frame of
    /// spatial layer SID - 1 of the same picture (0 for SID 0).
    pub inter_layer: bool,
}

/// The VP9 payload descriptor read in place (RFC 9628 §4.2): the flags,
/// the picture id, the layer indices, the reference differences of
/// flexible mode and the scalability structure, borrowed from the packet.
/// Reading it allocates nothing, so the SFU reads every packet of a
/// scalable track with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Header<'a> {
    /// P: the frame refers to earlier pictures (false for a key frame, and
    /// for an upper spatial layer of a key picture).
    pub inter_picture: bool,
    /// F: flexible mode (references in P_DIFF), else the picture group of
    /// the scalability structure says them.
    pub flexible: bool,
    /// B: the packet begins a frame.
    pub start_of_frame: bool,
    /// E: the packet ends a frame (of one spatial layer: the marker bit
    /// ends the picture, §4.1).
    pub end_of_frame: bool,
    /// Z: no upper spatial layer frame refers to this frame.
    pub not_upper_reference: bool,
    /// I: the picture id (7 or 15 bits).
    pub picture_id: Option<PictureId>,
    /// L: the layer indices.
    pub layer: Option<LayerIndices>,
    /// TL0PICIDX (non-flexible mode with L).
    pub tl0_pic_idx: Option<u8>,
    p_diffs: [u8; 3],
    p_diff_count: u8,
    /// V: the scalability structure (§4.2.1).
    pub ss: Option<ScalabilityStructure<'a>>,
    /// The descriptor's length: the VP9 payload starts after it.
    pub len: usize,
}

impl<'a> Vp9Header<'a> {
    /// Reads the descriptor at the start of a payload. Malformed input
    /// (short, more than three P_DIFFs, an SS past the end) is an error,
    /// never a panic.
    pub fn parse(p: &'a [u8]) -> Result<Vp9Header<'a>, Error> {
        let &b0 = p.first().ok_or(short(0))?;
        let mut h = Vp9Header {
            inter_picture: b0 & 0x40 != 0,
            flexible: b0 & 0x10 != 0,
            start_of_frame: b0 & 0x08 != 0,
            end_of_frame: b0 & 0x04 != 0,
            not_upper_reference: b0 & 0x01 != 0,
            picture_id: None,
            layer: None,
            tl0_pic_idx: None,
            p_diffs: [0; 3],
            p_diff_count: 0,
            ss: None,
            len: 0,
        };
        let mut n = 1;
        let byte = |n: &mut usize| -> Result<u8, Error> {
            let b = *p.get(*n).ok_or(short(*n))?;
            *n += 1;
            Ok(b)
        };
        if b0 & 0x80 != 0 {
            let b = byte(&mut n)?;
            h.picture_id = Some(if b & 0x80 != 0 {
                PictureId::Fifteen(u16::from(b & 0x7F) << 8 | u16::from(byte(&mut n)?))
            } else {
                PictureId::Seven(b)
            });
        }
        if b0 & 0x20 != 0 {
            let b = byte(&mut n)?;
            h.layer = Some(LayerIndices {
                temporal_id: b >> 5,
                switching_up: b & 0x10 != 0,
                spatial_id: (b >> 1) & 0x07,
                inter_layer: b & 0x01 != 0,
            });
            if !h.flexible {
                h.tl0_pic_idx = Some(byte(&mut n)?);
            }
        }
        if h.flexible && h.inter_picture {
            loop {
                if h.p_diff_count == 3 {
                    return Err(Error::BadPayload("VP9 descriptor with more than 3 P_DIFFs"));
                }
                let b = byte(&mut n)?;
                h.p_diffs[usize::from(h.p_diff_count)] = b >> 1;
                h.p_diff_count += 1;
                if b & 0x01 == 0 {
                    break;
                }
            }
        }
        if b0 & 0x02 != 0 {
            let rest = p.get(n..).unwrap_or_default();
            let len = ss_len(rest)?;
            h.ss = Some(ScalabilityStructure {
                bytes: &rest[..len],
            });
            n += len;
        }
        h.len = n;
        Ok(h)
    }

    /// The reference differences of flexible mode (P_DIFF, in pictures).
    pub fn p_diffs(&self) -> &[u8] {
        &self.p_diffs[..usize::from(self.p_diff_count.min(3))]
    }

    /// The frame's spatial and temporal layer (0, 0 without L).
    pub fn layers(&self) -> (u8, u8) {
        self.layer.map_or((0, 0), |l| (l.spatial_id, l.temporal_id))
    }
}

/// The scalability structure (RFC 9628 §4.2.1), read in place: the
/// number of spatial layers, optionally each one's resolution, and
/// optionally the picture group (per picture: its temporal layer, U, and
/// the pictures it refers to) that non-flexible mode follows.
///
/// ```text
///   | N_S |Y|G|-|-|-|        N_S + 1 spatial layers
/// Y:| WIDTH (2 octets) | HEIGHT (2 octets) |  × (N_S + 1)
/// G:|      N_G      |
///   | TID |U| R |-|-|  P_DIFF × R           × N_G
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalabilityStructure<'a> {
    /// Its bytes, as long as [`ss_len`] measured.
    bytes: &'a [u8],
}

/// One picture of a picture group (RFC 9628 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupPicture<'a> {
    /// Its temporal layer.
    pub temporal_id: u8,
    /// Its switching-up flag.
    pub switching_up: bool,
    /// The pictures it refers to, as differences of picture id.
    pub p_diffs: &'a [u8],
}

impl<'a> ScalabilityStructure<'a> {
    /// The structure's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// N_S + 1: the spatial layers of the stream.
    pub fn spatial_layers(&self) -> u8 {
        self.bytes.first().map_or(1, |b| (b >> 5) + 1)
    }

    /// The width and height of spatial layer `sid`, if Y says them.
    pub fn resolution(&self, sid: u8) -> Option<(u16, u16)> {
        let &b = self.bytes.first()?;
        if b & 0x10 == 0 || sid >= self.spatial_layers() {
            return None;
        }
        let at = 1 + 4 * usize::from(sid);
        let v = self.bytes.get(at..at + 4)?;
        Some((
            u16::from_be_bytes([v[0], v[1]]),
            u16::from_be_bytes([v[2], v[3]]),
        ))
    }

    /// The picture group, if G says one (empty otherwise).
    pub fn group(&self) -> impl Iterator<Item = GroupPicture<'a>> + 'a {
        let bytes = self.bytes;
        let (mut at, count) = match bytes.first() {
            Some(&b) if b & 0x08 != 0 => {
                let at = 1 + if b & 0x10 != 0 {
                    4 * usize::from((b >> 5) + 1)
                } else {
                    0
                };
                (at + 1, bytes.get(at).copied().unwrap_or(0))
            }
            _ => (0, 0),
        };
        (0..count).map_while(move |_| {
            let &g = bytes.get(at)?;
            let r = usize::from((g >> 2) & 0x03);
            let p_diffs = bytes.get(at + 1..at + 1 + r)?;
            at += 1 + r;
            Some(GroupPicture {
                temporal_id: g >> 5,
                switching_up: g & 0x10 != 0,
                p_diffs,
            })
        })
    }

    /// The temporal layers the picture group uses (1 without one).
    pub fn temporal_layers(&self) -> u8 {
        self.group().map(|g| g.temporal_id + 1).max().unwrap_or(1)
    }
}

impl Vp9Descriptor {
    /// Parses a descriptor; returns it and its length (an owned copy of
    /// [`Vp9Header::parse`]).
    pub fn parse(p: &[u8]) -> Result<(Vp9Descriptor, usize), Error> {
        let h = Vp9Header::parse(p)?;
        let d = Vp9Descriptor {
            inter_picture: h.inter_picture,
            flexible: h.flexible,
            start_of_frame: h.start_of_frame,
            end_of_frame: h.end_of_frame,
            not_upper_reference: h.not_upper_reference,
            picture_id: h.picture_id,
            layer: h
                .layer
                .map(|l| (l.temporal_id, l.switching_up, l.spatial_id, l.inter_layer)),
            tl0_pic_idx: h.tl0_pic_idx,
            p_diffs: h.p_diffs().to_vec(),
            ss: h.ss.map(|s| s.bytes.to_vec()),
        };
        Ok((d, h.len))
    }

    /// Appends the descriptor.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        let l = self.layer.is_some();
        out.push(
            (self.picture_id.is_some() as u8) << 7
                | (self.inter_picture as u8) << 6
                | (l as u8) << 5
                | (self.flexible as u8) << 4
                | (self.start_of_frame as u8) << 3
                | (self.end_of_frame as u8) << 2
                | (self.ss.is_some() as u8) << 1
                | self.not_upper_reference as u8,
        );
        match self.picture_id {
            Some(PictureId::Seven(v)) if v < 0x80 => out.push(v),
            Some(PictureId::Fifteen(v)) if v < 0x8000 => {
                out.extend_from_slice(&(0x8000 | v).to_be_bytes())
            }
            Some(_) => return Err(Error::Invalid("VP9 picture id too large for its form")),
            None => {}
        }
        if let Some((tid, u, sid, dd)) = self.layer {
            if tid > 7 || sid > 7 {
                return Err(Error::Invalid("VP9 TID or SID above 7"));
            }
            out.push(tid << 5 | (u as u8) << 4 | sid << 1 | dd as u8);
            if !self.flexible {
                out.push(self.tl0_pic_idx.unwrap_or(0));
            }
        }
        if self.flexible && self.inter_picture {
            if self.p_diffs.is_empty()
                || self.p_diffs.len() > 3
                || self.p_diffs.iter().any(|&p| p > 127)
            {
                return Err(Error::Invalid(
                    "VP9 flexible mode needs 1..=3 P_DIFFs below 128",
                ));
            }
            for (i, p) in self.p_diffs.iter().enumerate() {
                out.push(p << 1 | (i + 1 < self.p_diffs.len()) as u8);
            }
        }
        if let Some(ss) = &self.ss {
            if ss_len(ss) != Ok(ss.len()) {
                return Err(Error::Invalid("VP9 scalability structure malformed"));
            }
            out.extend_from_slice(ss);
        }
        Ok(())
    }
}

/// True if a VP9 frame (its uncompressed header) is a keyframe: frame_type 0
/// and not show_existing_frame (VP9 bitstream spec §6.2).
pub fn frame_is_keyframe(frame: &[u8]) -> bool {
    let Some(&b) = frame.first() else {
        return false;
    };
    if b >> 6 != 2 {
        return false; // frame_marker
    }
    let profile = ((b >> 5) & 1) | ((b >> 3) & 2);
    // Profile 3 has one reserved bit more before show_existing_frame.
    let shift = if profile == 3 { 2 } else { 3 };
    let show_existing = (b >> shift) & 1;
    let frame_type = (b >> (shift - 1)) & 1;
    show_existing == 0 && frame_type == 0
}

/// Cuts VP9 frames into payloads (one spatial layer, non-flexible mode).
#[derive(Debug, Clone, Default)]
pub struct Vp9Packetizer {
    /// The picture id of the next frame (15 bits, wraps).
    pub picture_id: u16,
}

impl Vp9Packetizer {
    /// A packetizer starting at `picture_id` (pick it at random).
    pub fn new(picture_id: u16) -> Self {
        Vp9Packetizer {
            picture_id: picture_id & 0x7FFF,
        }
    }
}

impl Packetizer for Vp9Packetizer {
    fn packetize(&mut self, frame: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) -> Result<(), Error> {
        const DESC_LEN: usize = 3;
        if frame.is_empty() {
            return Err(Error::Invalid("empty VP9 frame"));
        }
        if mtu <= DESC_LEN {
            return Err(Error::Invalid(
                "MTU too small for the VP9 descriptor and one byte",
            ));
        }
        let mut d = Vp9Descriptor {
            inter_picture: !frame_is_keyframe(frame),
            picture_id: Some(PictureId::Fifteen(self.picture_id)),
            ..Default::default()
        };
        let chunks = frame.chunks(mtu - DESC_LEN);
        let last = chunks.len() - 1;
        for (i, c) in chunks.enumerate() {
            d.start_of_frame = i == 0;
            d.end_of_frame = i == last;
            let mut p = Vec::with_capacity(DESC_LEN + c.len());
            d.emit(&mut p)?;
            p.extend_from_slice(c);
            out.push(p);
        }
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        Ok(())
    }
}

/// Strips VP9 payload descriptors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vp9Depacketizer;

impl Depacketizer for Vp9Depacketizer {
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
        let (_, n) = Vp9Descriptor::parse(payload)?;
        if n >= payload.len() {
            return Err(Error::BadPayload(
                "VP9 payload without data after the descriptor",
            ));
        }
        frame.extend_from_slice(&payload[n..]);
        Ok(())
    }

    fn is_frame_start(&self, payload: &[u8]) -> bool {
        payload.first().is_some_and(|b| b & 0x08 != 0)
    }

    /// B set and P clear: the start of a frame that predicts from nothing.
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        payload
            .first()
            .is_some_and(|b| b & 0x08 != 0 && b & 0x40 == 0)
    }

    /// RFC 9628 §4.2: E marks the end of a frame (the marker bit ends the
    /// whole picture, all spatial layers).
    fn is_frame_end(&self, payload: &[u8], marker: bool) -> bool {
        marker || payload.first().is_some_and(|b| b & 0x04 != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn descriptor_with_layers_and_ss() {
        // I (15-bit), L, non-flexible TL0PICIDX, V with one 640x480 layer and a
        // picture group of one entry with one P_DIFF.
        let p = [
            0xAA, 0x81, 0x02, 0x20, 0x07, 0x18, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x04, 0x01, 0xEE,
        ];
        let (d, n) = Vp9Descriptor::parse(&p).unwrap();
        assert_eq!(n, 13);
        assert_eq!(d.picture_id, Some(PictureId::Fifteen(0x102)));
        assert_eq!(d.layer, Some((1, false, 0, false)));
        assert_eq!(d.tl0_pic_idx, Some(7));
        assert!(d.start_of_frame && !d.inter_picture);
        assert_eq!(d.ss.as_deref(), Some(&p[5..13]));
        let mut out = Vec::new();
        d.emit(&mut out).unwrap();
        assert_eq!(out, &p[..13]);
        assert!(Vp9Descriptor::parse(&p[..8]).is_err());
    }

    /// The zero-copy reading: layer indices, P_DIFFs, and the structure's
    /// sizes and picture group (RFC 9628 §4.2, §4.2.1).
    #[test]
    fn header_reads_flexible_mode_and_the_structure() {
        // I (15-bit 0x6F2B), P, L, F, B: TID 2, U, SID 1, D; two P_DIFFs
        // (1, then 3).
        let p = [0xF8, 0xEF, 0x2B, 0x53, 0x03, 0x06, 0xAA];
        let h = Vp9Header::parse(&p).unwrap();
        assert_eq!(h.len, 6);
        assert_eq!(h.picture_id, Some(PictureId::Fifteen(0x6F2B)));
        assert_eq!(
            h.layer,
            Some(LayerIndices {
                temporal_id: 2,
                switching_up: true,
                spatial_id: 1,
                inter_layer: true
            })
        );
        assert_eq!(h.p_diffs(), [1, 3]);
        assert_eq!(h.layers(), (1, 2));
        assert!(h.flexible && h.inter_picture && h.start_of_frame && !h.end_of_frame);
        // Four P_DIFFs: refused, as is a cut one.
        assert!(Vp9Header::parse(&[0x50, 0x03, 0x03, 0x03, 0x02]).is_err());
        assert!(Vp9Header::parse(&[0x50, 0x03]).is_err());
        // V: two layers (Y: 320x180, 640x360) and a group of two pictures
        // (TID 0 with no reference; TID 1, U, referring 1 back).
        let ss = [
            0x38, 0x01, 0x40, 0x00, 0xB4, 0x02, 0x80, 0x01, 0x68, 0x02, 0x00, 0x34, 0x01,
        ];
        let mut p = vec![0x0A];
        p.extend_from_slice(&ss);
        let h = Vp9Header::parse(&p).unwrap();
        let s = h.ss.unwrap();
        assert_eq!(s.as_bytes(), ss);
        assert_eq!(s.spatial_layers(), 2);
        assert_eq!(s.resolution(1), Some((640, 360)));
        assert_eq!(s.resolution(2), None);
        let g: Vec<_> = s.group().collect();
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[1].temporal_id, g[1].switching_up, g[1].p_diffs),
            (1, true, &[1u8][..])
        );
        assert_eq!(s.temporal_layers(), 2);
        assert!(Vp9Header::parse(&p[..p.len() - 1]).is_err());
    }

    #[test]
    fn keyframe_from_the_frame_header() {
        assert!(frame_is_keyframe(&[0x82, 0x49, 0x83, 0x42])); // profile 0 keyframe
        assert!(!frame_is_keyframe(&[0x86])); // frame_type 1
        assert!(!frame_is_keyframe(&[0x8A])); // show_existing_frame
        let mut out = Vec::new();
        Vp9Packetizer::new(1)
            .packetize(&[0x82; 50], 20, &mut out)
            .unwrap();
        assert!(Vp9Depacketizer.is_keyframe(&out[0]) && !Vp9Depacketizer.is_keyframe(&out[1]));
        assert!(Vp9Depacketizer.is_frame_end(out.last().unwrap(), false));
    }

    fn arb_desc() -> impl Strategy<Value = Vp9Descriptor> {
        (
            any::<(bool, bool, bool, bool, bool)>(),
            proptest::option::of(prop_oneof![
                (0u8..128).prop_map(PictureId::Seven),
                (0u16..0x8000).prop_map(PictureId::Fifteen)
            ]),
            proptest::option::of((0u8..8, any::<bool>(), 0u8..8, any::<bool>())),
            any::<u8>(),
            proptest::collection::vec(1u8..128, 1..=3),
            proptest::option::of((
                0u8..8,
                any::<bool>(),
                proptest::collection::vec(0u8..4, 0..3),
            )),
        )
            .prop_map(|((p, f, b, e, z), picture_id, layer, tl0, p_diffs, ss)| {
                Vp9Descriptor {
                    inter_picture: p,
                    flexible: f,
                    start_of_frame: b,
                    end_of_frame: e,
                    not_upper_reference: z,
                    picture_id,
                    layer,
                    tl0_pic_idx: (layer.is_some() && !f).then_some(tl0),
                    p_diffs: if f && p { p_diffs } else { vec![] },
                    ss: ss.map(|(n_s, y, groups)| {
                        let mut v = vec![n_s << 5 | (y as u8) << 4 | 0x08];
                        if y {
                            v.extend(std::iter::repeat_n(0x11, 4 * (n_s as usize + 1)));
                        }
                        v.push(groups.len() as u8);
                        for r in groups {
                            v.push(0x20 | r << 2);
                            v.extend(std::iter::repeat_n(1, r as usize));
                        }
                        v
                    }),
                }
            })
    }

    proptest! {
        #[test]
        fn descriptor_round_trip(d in arb_desc()) {
            let mut out = Vec::new();
            d.emit(&mut out).unwrap();
            prop_assert_eq!(Vp9Descriptor::parse(&out).unwrap(), (d, out.len()));
        }

        #[test]
        fn packetize_depacketize(frame in proptest::collection::vec(any::<u8>(), 1..3000), mtu in 4usize..1500) {
            let mut out = Vec::new();
            Vp9Packetizer::new(7).packetize(&frame, mtu, &mut out).unwrap();
            let mut back = Vec::new();
            for p in &out {
                prop_assert!(p.len() <= mtu);
                Vp9Depacketizer.depacketize(p, &mut back).unwrap();
            }
            prop_assert_eq!(back, frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = Vp9Descriptor::parse(&data);
            if let Ok(h) = Vp9Header::parse(&data) {
                prop_assert!(h.len <= data.len());
                if let Some(s) = h.ss {
                    let _ = (s.resolution(7), s.group().count(), s.temporal_layers());
                }
            }
            let _ = Vp9Depacketizer.depacketize(&data, &mut Vec::new());
            let _ = frame_is_keyframe(&data);
        }
    }
}
