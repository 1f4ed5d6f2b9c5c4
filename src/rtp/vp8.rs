//! VP8 payload format (RFC 7741).
//!
//! Each RTP payload starts with a payload descriptor (§4.2), then a piece of the
//! VP8 frame:
//!
//! ```text
//!       0 1 2 3 4 5 6 7
//!      +-+-+-+-+-+-+-+-+
//!      |X|R|N|S|R| PID | (required)       X: extensions follow  N: non-reference
//!      +-+-+-+-+-+-+-+-+                  S: start of partition PID: partition index
//! X:   |I|L|T|K| RSV   | (optional)
//!      +-+-+-+-+-+-+-+-+
//! I:   |M| PictureID   | (optional, M: 15-bit picture id)
//!      +-+-+-+-+-+-+-+-+
//!      |   PictureID   | (if M)
//!      +-+-+-+-+-+-+-+-+
//! L:   |   TL0PICIDX   | (optional)
//!      +-+-+-+-+-+-+-+-+
//! T/K: |TID|Y| KEYIDX  | (optional)
//!      +-+-+-+-+-+-+-+-+
//! ```
//!
//! A frame begins with the packet that has S=1 and PID=0; its first payload byte
//! is the VP8 payload header (§4.3), whose low bit P is 0 for a keyframe.

use super::Error;
use super::payload::{Depacketizer, Packetizer, Payloads};

/// The picture id, in its 7-bit or 15-bit form (RFC 7741 §4.2, M bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PictureId {
    /// One byte, M=0.
    Seven(u8),
    /// Two bytes, M=1.
    Fifteen(u16),
}

impl PictureId {
    /// The numeric value.
    pub fn value(self) -> u16 {
        match self {
            PictureId::Seven(v) => v as u16,
            PictureId::Fifteen(v) => v,
        }
    }
}

/// The VP8 payload descriptor (RFC 7741 §4.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp8Descriptor {
    /// N: the frame is not used as a reference (may be dropped).
    pub non_reference: bool,
    /// S: this packet starts a partition.
    pub start_of_partition: bool,
    /// PID: the partition index (0..=7).
    pub partition_id: u8,
    /// I: picture id.
    pub picture_id: Option<PictureId>,
    /// L: temporal layer 0 picture index.
    pub tl0_pic_idx: Option<u8>,
    /// T: temporal layer index (0..=3) and the Y (layer sync) bit.
    pub tid: Option<(u8, bool)>,
    /// K: temporal key frame index (0..=31).
    pub key_idx: Option<u8>,
}

impl Vp8Descriptor {
    /// Parses a descriptor; returns it and its length in bytes.
    #[inline]
    pub fn parse(p: &[u8]) -> Result<(Vp8Descriptor, usize), Error> {
        let short = || Error::Truncated {
            what: "VP8 payload descriptor",
            needed: 2,
            got: p.len(),
        };
        let &b0 = p.first().ok_or_else(short)?;
        let mut d = Vp8Descriptor {
            non_reference: b0 & 0x20 != 0,
            start_of_partition: b0 & 0x10 != 0,
            partition_id: b0 & 0x07,
            ..Default::default()
        };
        let mut n = 1;
        if b0 & 0x80 != 0 {
            let &x = p.get(n).ok_or_else(short)?;
            n += 1;
            if x & 0x80 != 0 {
                let &b = p.get(n).ok_or_else(short)?;
                n += 1;
                d.picture_id = Some(if b & 0x80 != 0 {
                    let &b2 = p.get(n).ok_or_else(short)?;
                    n += 1;
                    PictureId::Fifteen(((b & 0x7F) as u16) << 8 | b2 as u16)
                } else {
                    PictureId::Seven(b)
                });
            }
            if x & 0x40 != 0 {
                d.tl0_pic_idx = Some(*p.get(n).ok_or_else(short)?);
                n += 1;
            }
            if x & 0x30 != 0 {
                let &b = p.get(n).ok_or_else(short)?;
                n += 1;
                if x & 0x20 != 0 {
                    d.tid = Some((b >> 6, b & 0x20 != 0));
                }
                if x & 0x10 != 0 {
                    d.key_idx = Some(b & 0x1F);
                }
            }
        }
        Ok((d, n))
    }

    /// Appends the descriptor to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.partition_id > 7 {
            return Err(Error::Invalid("VP8 partition id above 7"));
        }
        let x = self.picture_id.is_some()
            || self.tl0_pic_idx.is_some()
            || self.tid.is_some()
            || self.key_idx.is_some();
        out.push(
            (x as u8) << 7
                | (self.non_reference as u8) << 5
                | (self.start_of_partition as u8) << 4
                | self.partition_id,
        );
        if !x {
            return Ok(());
        }
        out.push(
            (self.picture_id.is_some() as u8) << 7
                | (self.tl0_pic_idx.is_some() as u8) << 6
                | (self.tid.is_some() as u8) << 5
                | (self.key_idx.is_some() as u8) << 4,
        );
        match self.picture_id {
            Some(PictureId::Seven(v)) if v < 0x80 => out.push(v),
            Some(PictureId::Fifteen(v)) if v < 0x8000 => {
                out.extend_from_slice(&(0x8000 | v).to_be_bytes())
            }
            Some(_) => return Err(Error::Invalid("VP8 picture id too large for its form")),
            None => {}
        }
        if let Some(t) = self.tl0_pic_idx {
            out.push(t);
        }
        if self.tid.is_some() || self.key_idx.is_some() {
            let (tid, y) = self.tid.unwrap_or((0, false));
            if tid > 3 || self.key_idx.is_some_and(|k| k > 31) {
                return Err(Error::Invalid("VP8 TID above 3 or KEYIDX above 31"));
            }
            out.push(tid << 6 | (y as u8) << 5 | self.key_idx.unwrap_or(0));
        }
        Ok(())
    }
}

/// True if a VP8 RTP payload starts a keyframe: S=1, PID=0, and the P bit of
/// the VP8 payload header is 0 (RFC 7741 §4.3).
pub fn is_keyframe(payload: &[u8]) -> bool {
    match Vp8Descriptor::parse(payload) {
        Ok((d, n)) => {
            d.start_of_partition
                && d.partition_id == 0
                && payload.get(n).is_some_and(|b| b & 0x01 == 0)
        }
        Err(_) => false,
    }
}

/// Cuts VP8 frames into payloads with a 15-bit picture id (as browsers send).
#[derive(Debug, Clone, Default)]
pub struct Vp8Packetizer {
    /// The picture id of the next frame (15 bits, wraps).
    pub picture_id: u16,
}

impl Vp8Packetizer {
    /// A packetizer starting at `picture_id` (pick it at random).
    pub fn new(picture_id: u16) -> Self {
        Vp8Packetizer {
            picture_id: picture_id & 0x7FFF,
        }
    }
}

impl Packetizer for Vp8Packetizer {
    fn packetize_into(
        &mut self,
        frame: &[u8],
        mtu: usize,
        out: &mut Payloads,
    ) -> Result<(), Error> {
        const DESC_LEN: usize = 4;
        if frame.is_empty() {
            return Err(Error::Invalid("empty VP8 frame"));
        }
        if mtu <= DESC_LEN {
            return Err(Error::Invalid(
                "MTU too small for the VP8 descriptor and one byte",
            ));
        }
        // ANCHOR: vp8_packetize
        let mut desc = Vp8Descriptor {
            start_of_partition: true,
            picture_id: Some(PictureId::Fifteen(self.picture_id)),
            ..Default::default()
        };
        for chunk in frame.chunks(mtu - DESC_LEN) {
            out.push_with(|p| {
                desc.emit(p)?;
                p.extend_from_slice(chunk);
                Ok(())
            })?;
            desc.start_of_partition = false;
        }
        self.picture_id = (self.picture_id + 1) & 0x7FFF;
        // ANCHOR_END: vp8_packetize
        Ok(())
    }
}

/// Strips VP8 payload descriptors; stateless.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vp8Depacketizer;

impl Depacketizer for Vp8Depacketizer {
    #[inline]
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
        let (_, n) = Vp8Descriptor::parse(payload)?;
        let data = &payload[n..];
        if data.is_empty() {
            return Err(Error::BadPayload(
                "VP8 payload without data after the descriptor",
            ));
        }
        frame.extend_from_slice(data);
        Ok(())
    }

    fn is_frame_start(&self, payload: &[u8]) -> bool {
        matches!(Vp8Descriptor::parse(payload), Ok((d, _)) if d.start_of_partition && d.partition_id == 0)
    }

    fn is_keyframe(&self, payload: &[u8]) -> bool {
        is_keyframe(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn descriptor_forms() {
        // Chrome: X, I with 15-bit picture id, S, PID 0.
        let p = [0x90, 0x80, 0x81, 0x23, 0x9D, 0x01, 0x2A];
        let (d, n) = Vp8Descriptor::parse(&p).unwrap();
        assert_eq!(n, 4);
        assert_eq!(d.picture_id, Some(PictureId::Fifteen(0x0123)));
        assert!(d.start_of_partition);
        // 0x9D has P bit 1: not a keyframe; 0x10 has P = 0.
        assert!(!is_keyframe(&p));
        assert!(is_keyframe(&[0x90, 0x80, 0x81, 0x23, 0x10, 0x02]));
        // Minimal descriptor; all fields with 7-bit id.
        assert_eq!(Vp8Descriptor::parse(&[0x10, 0x00]).unwrap().1, 1);
        let (d, n) = Vp8Descriptor::parse(&[0xA3, 0xF0, 0x05, 0x07, 0xBF, 0xFF]).unwrap();
        assert_eq!(n, 5);
        assert_eq!(
            d,
            Vp8Descriptor {
                non_reference: true,
                start_of_partition: false,
                partition_id: 3,
                picture_id: Some(PictureId::Seven(5)),
                tl0_pic_idx: Some(7),
                tid: Some((2, true)),
                key_idx: Some(31),
            }
        );
        assert!(Vp8Descriptor::parse(&[0x80, 0x80]).is_err());
        assert!(
            Vp8Depacketizer
                .depacketize(&[0x10], &mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn packetize_respects_mtu() {
        let frame: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
        let mut pk = Vp8Packetizer::new(0x7FFF);
        let mut out = Vec::new();
        pk.packetize(&frame, 1000, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|p| p.len() <= 1000));
        assert!(
            Vp8Depacketizer.is_frame_start(&out[0]) && !Vp8Depacketizer.is_frame_start(&out[1])
        );
        assert_eq!(pk.picture_id, 0);
        let mut back = Vec::new();
        for p in &out {
            Vp8Depacketizer.depacketize(p, &mut back).unwrap();
        }
        assert_eq!(back, frame);
    }

    fn arb_desc() -> impl Strategy<Value = Vp8Descriptor> {
        (
            any::<(bool, bool)>(),
            0u8..8,
            proptest::option::of(prop_oneof![
                (0u8..128).prop_map(PictureId::Seven),
                (0u16..0x8000).prop_map(PictureId::Fifteen)
            ]),
            proptest::option::of(any::<u8>()),
            proptest::option::of((0u8..4, any::<bool>())),
            proptest::option::of(0u8..32),
        )
            .prop_map(|((n, s), pid, picture_id, tl0_pic_idx, tid, key_idx)| {
                Vp8Descriptor {
                    non_reference: n,
                    start_of_partition: s,
                    partition_id: pid,
                    picture_id,
                    tl0_pic_idx,
                    tid,
                    key_idx,
                }
            })
    }

    proptest! {
        #[test]
        fn descriptor_round_trip(d in arb_desc()) {
            let mut out = Vec::new();
            d.emit(&mut out).unwrap();
            prop_assert_eq!(Vp8Descriptor::parse(&out).unwrap(), (d, out.len()));
        }

        #[test]
        fn packetize_depacketize(frame in proptest::collection::vec(any::<u8>(), 1..3000), mtu in 5usize..1500, pic in any::<u16>()) {
            let mut out = Vec::new();
            Vp8Packetizer::new(pic).packetize(&frame, mtu, &mut out).unwrap();
            let mut back = Vec::new();
            for p in &out {
                prop_assert!(p.len() <= mtu);
                Vp8Depacketizer.depacketize(p, &mut back).unwrap();
            }
            prop_assert_eq!(back, frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            let _ = Vp8Descriptor::parse(&data);
            let _ = Vp8Depacketizer.depacketize(&data, &mut Vec::new());
            let _ = is_keyframe(&data);
        }
    }
}
