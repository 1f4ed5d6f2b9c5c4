//! IVF, the simple container libvpx writes VP8/VP9/AV1 frames into (used by
//! the examples to feed and check media). All integers little-endian.
//!
//! ```text
//! file header (32 bytes)                      frame header (12 bytes) + frame
//!  0  "DKIF"                                   0  frame size (u32)
//!  4  version 0 (u16), header size 32 (u16)    4  presentation timestamp (u64)
//!  8  FourCC, e.g. "VP80"                     12  frame data
//! 12  width, height (u16 each)
//! 16  time base denominator, numerator (u32 each)
//! 24  frame count (u32), unused (u32)
//! ```

use super::{Error, truncated};

/// The IVF file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvfHeader {
    /// Codec FourCC: `VP80`, `VP90`, `AV01`.
    pub fourcc: [u8; 4],
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Time base denominator (e.g. 30 for 1/30 s ticks).
    pub timebase_den: u32,
    /// Time base numerator.
    pub timebase_num: u32,
    /// Number of frames (writers that stream may leave it 0).
    pub frame_count: u32,
}

/// The file header's length.
pub const HEADER_LEN: usize = 32;

impl IvfHeader {
    /// Appends the 32-byte header.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"DKIF");
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(HEADER_LEN as u16).to_le_bytes());
        out.extend_from_slice(&self.fourcc);
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.height.to_le_bytes());
        out.extend_from_slice(&self.timebase_den.to_le_bytes());
        out.extend_from_slice(&self.timebase_num.to_le_bytes());
        out.extend_from_slice(&self.frame_count.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
    }
}

/// Appends one frame (12-byte frame header and data).
pub fn write_frame(timestamp: u64, frame: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let len = u32::try_from(frame.len()).map_err(|_| Error::Invalid("IVF frame over 4 GiB"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&timestamp.to_le_bytes());
    out.extend_from_slice(frame);
    Ok(())
}

/// Reads frames from an IVF file held in memory, without copying.
#[derive(Debug, Clone)]
pub struct IvfReader<'a> {
    rest: &'a [u8],
}

impl<'a> IvfReader<'a> {
    /// Checks the file header; frames follow from [`Iterator::next`].
    pub fn new(file: &'a [u8]) -> Result<(IvfHeader, IvfReader<'a>), Error> {
        if file.len() < HEADER_LEN {
            return Err(truncated("IVF header", HEADER_LEN, file.len()));
        }
        if &file[..4] != b"DKIF" {
            return Err(Error::BadPayload("IVF signature is not DKIF"));
        }
        let u16le = |i: usize| u16::from_le_bytes([file[i], file[i + 1]]);
        let u32le = |i: usize| u32::from_le_bytes([file[i], file[i + 1], file[i + 2], file[i + 3]]);
        let header_len = u16le(6) as usize;
        if header_len < HEADER_LEN || file.len() < header_len {
            return Err(Error::BadPayload(
                "IVF header length below 32 or past the end",
            ));
        }
        let h = IvfHeader {
            fourcc: [file[8], file[9], file[10], file[11]],
            width: u16le(12),
            height: u16le(14),
            timebase_den: u32le(16),
            timebase_num: u32le(20),
            frame_count: u32le(24),
        };
        Ok((
            h,
            IvfReader {
                rest: &file[header_len..],
            },
        ))
    }
}

impl<'a> Iterator for IvfReader<'a> {
    /// `(timestamp, frame)`, or an error for a truncated frame (then the end).
    type Item = Result<(u64, &'a [u8]), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.rest;
        if r.len() < 12 {
            self.rest = &[];
            return Some(Err(truncated("IVF frame header", 12, r.len())));
        }
        let len = u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize;
        let ts = u64::from_le_bytes([r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11]]);
        if r.len() - 12 < len {
            self.rest = &[];
            return Some(Err(truncated("IVF frame", 12 + len, r.len())));
        }
        self.rest = &r[12 + len..];
        Some(Ok((ts, &r[12..12 + len])))
    }
}

/// Writes an IVF file frame by frame and fills the header's frame count in
/// at the end (the examples save what a peer received with it).
#[derive(Debug, Clone)]
pub struct IvfWriter {
    out: Vec<u8>,
    frames: u32,
}

impl IvfWriter {
    /// A file with `header` (its `frame_count` is replaced by [`IvfWriter::finish`]).
    pub fn new(header: &IvfHeader) -> Self {
        let mut out = Vec::new();
        header.write(&mut out);
        IvfWriter { out, frames: 0 }
    }

    /// A VP8 file of `width`×`height` whose timestamps count in `1/timebase_den` s
    /// (e.g. 90 000 for RTP timestamps of video).
    pub fn vp8(width: u16, height: u16, timebase_den: u32) -> Self {
        IvfWriter::new(&IvfHeader {
            fourcc: *b"VP80",
            width,
            height,
            timebase_den,
            timebase_num: 1,
            frame_count: 0,
        })
    }

    /// Appends one frame with its presentation timestamp (in time-base units).
    pub fn write_frame(&mut self, timestamp: u64, frame: &[u8]) -> Result<(), Error> {
        if self.frames == u32::MAX {
            return Err(Error::Invalid("IVF frame count overflows 32 bits"));
        }
        write_frame(timestamp, frame, &mut self.out)?;
        self.frames += 1;
        Ok(())
    }

    /// Frames written so far.
    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// The whole file, with the frame count in its header.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[24..28].copy_from_slice(&self.frames.to_le_bytes());
        self.out
    }
}

// ANCHOR: synthetic_clip
/// A small VP8 clip in IVF, made up from `seed` (same seed, same bytes): 320×240
/// at 30 frames per second, a keyframe every `keyframe_interval` frames.
///
/// The frames are not decodable pictures, only VP8-shaped: each starts with
/// a valid frame tag (RFC 6386 §9.1: frame type, version 0, show_frame, the
/// first partition's size), keyframes add the start code 9d 01 2a and the
/// dimensions, and random bytes stand for the compressed data. That is all a
/// packetizer and a keyframe detector look at, and it keeps the examples free
/// of a media encoder and of committed binary files.
pub fn synthetic_vp8_clip(frames: u32, keyframe_interval: u32, seed: u64) -> Vec<u8> {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let mut rng = StdRng::seed_from_u64(seed);
    let (width, height) = (320u16, 240u16);
    let mut file = Vec::new();
    IvfHeader {
        fourcc: *b"VP80",
        width,
        height,
        timebase_den: 30,
        timebase_num: 1,
        frame_count: frames,
    }
    .write(&mut file);
    for i in 0..frames {
        let key = i % keyframe_interval.max(1) == 0;
        // Keyframes are several times larger than the frames between them.
        let len = if key {
            rng.random_range(4000..7000)
        } else {
            rng.random_range(200..1800)
        };
        let header_len = if key { 10 } else { 3 };
        let first_part = (len - header_len) as u32 / 4;
        // Frame tag, 24 bits little-endian: bit 0 frame type (0 = key),
        // bits 1-3 version, bit 4 show_frame, bits 5-23 first_part_size.
        let tag = u32::from(!key) | 1 << 4 | first_part << 5;
        let mut frame = Vec::with_capacity(len);
        frame.extend_from_slice(&tag.to_le_bytes()[..3]);
        if key {
            frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
            frame.extend_from_slice(&width.to_le_bytes()); // scale bits 0
            frame.extend_from_slice(&height.to_le_bytes());
        }
        frame.extend((header_len..len).map(|_| rng.random::<u8>()));
        // Infallible: frames are far below 4 GiB.
        let _ = write_frame(u64::from(i), &frame, &mut file);
    }
    file
}
// ANCHOR_END: synthetic_clip

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn synthetic_clip_is_vp8_shaped_and_deterministic() {
        let clip = synthetic_vp8_clip(31, 30, 7);
        assert_eq!(clip, synthetic_vp8_clip(31, 30, 7));
        assert_ne!(clip, synthetic_vp8_clip(31, 30, 8));
        let (h, frames) = IvfReader::new(&clip).unwrap();
        assert_eq!((&h.fourcc, h.frame_count), (b"VP80", 31));
        let frames: Vec<_> = frames.collect::<Result<_, _>>().unwrap();
        assert_eq!(frames.len(), 31);
        for (i, (ts, f)) in frames.iter().enumerate() {
            assert_eq!(*ts, i as u64);
            let key = i % 30 == 0;
            assert_eq!(f[0] & 1 == 0, key, "frame {i}");
            assert_eq!(f[0] & 0x10, 0x10, "show_frame");
            if key {
                assert_eq!(&f[3..6], &[0x9d, 0x01, 0x2a]);
                assert_eq!(&f[6..10], &[64, 1, 240, 0]);
            }
        }
    }

    proptest! {
        #[test]
        fn round_trip(frames in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..100)), 0..10), w in any::<u16>()) {
            let h = IvfHeader { fourcc: *b"VP80", width: w, height: 480, timebase_den: 30, timebase_num: 1, frame_count: frames.len() as u32 };
            let mut file = Vec::new();
            h.write(&mut file);
            for (ts, f) in &frames {
                write_frame(*ts, f, &mut file).unwrap();
            }
            let (h2, r) = IvfReader::new(&file).unwrap();
            prop_assert_eq!(h2, h);
            let back: Vec<(u64, Vec<u8>)> = r.map(|x| x.map(|(t, f)| (t, f.to_vec()))).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(back, frames);
        }

        #[test]
        fn writer_reader_round_trip(frames in proptest::collection::vec((any::<u64>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..12)) {
            let mut w = IvfWriter::vp8(640, 480, 90_000);
            for (ts, f) in &frames {
                w.write_frame(*ts, f).unwrap();
            }
            prop_assert_eq!(w.frames() as usize, frames.len());
            let file = w.finish();
            let (h, r) = IvfReader::new(&file).unwrap();
            prop_assert_eq!((h.fourcc, h.width, h.height, h.timebase_den), (*b"VP80", 640, 480, 90_000));
            prop_assert_eq!(h.frame_count as usize, frames.len());
            let back: Vec<(u64, Vec<u8>)> = r.map(|x| x.map(|(t, f)| (t, f.to_vec()))).collect::<Result<_, _>>().unwrap();
            prop_assert_eq!(back, frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut data in proptest::collection::vec(any::<u8>(), 0..80)) {
            if data.len() >= 8 {
                data[..4].copy_from_slice(b"DKIF");
                data[6] = 32;
                data[7] = 0;
            }
            if let Ok((_, r)) = IvfReader::new(&data) {
                prop_assert!(r.count() <= data.len());
            }
        }
    }
}
