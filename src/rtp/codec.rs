//! The codec registry's packetizers: every codec rtclab can send and
//! receive ([`Codec`], described in the leaf vocabulary
//! [`crate::vocab::codec`]: its media kind, SDP encoding name, clock rate,
//! channels, the fmtp and RTCP feedback we offer, the payload types of our
//! offers, whether RTX repairs it) with its packetizer and depacketizer.
//!
//! Adding a codec means adding a variant to [`Codec::ALL`] and one arm to
//! each `match` there and here: `sdp::Capabilities::webrtc` offers whatever
//! the list holds, and `peer` packetizes and depacketizes through
//! [`AnyPacketizer`] / [`AnyDepacketizer`].

use rand::Rng;

use super::Error;
use super::av1::{Av1Depacketizer, Av1Packetizer};
use super::h264::{H264Depacketizer, H264Packetizer};
use super::opus::{OpusDepacketizer, OpusPacketizer};
use super::payload::{Depacketizer, Packetizer, Payloads};
use super::vp8::{Vp8Depacketizer, Vp8Packetizer};
use super::vp9::{Vp9Depacketizer, Vp9Packetizer};

pub use crate::vocab::codec::Codec;

/// What the registry's codecs packetize with.
impl Codec {
    /// A packetizer for this codec; VP8 and VP9 draw their first picture id
    /// from `rng` (RFC 7741 §4.2, RFC 9628 §4.2: random), the others draw
    /// nothing.
    pub fn packetizer<R: Rng + ?Sized>(self, rng: &mut R) -> AnyPacketizer {
        match self {
            Codec::Vp8 => AnyPacketizer::Vp8(Vp8Packetizer::new(rng.random())),
            Codec::H264 => AnyPacketizer::H264(H264Packetizer::new()),
            Codec::Vp9 => AnyPacketizer::Vp9(Vp9Packetizer::new(rng.random())),
            Codec::Av1 => AnyPacketizer::Av1(Av1Packetizer::new()),
            Codec::Opus => AnyPacketizer::Opus(OpusPacketizer),
        }
    }

    /// A depacketizer for this codec.
    pub fn depacketizer(self) -> AnyDepacketizer {
        match self {
            Codec::Vp8 => AnyDepacketizer::Vp8(Vp8Depacketizer),
            Codec::H264 => AnyDepacketizer::H264(H264Depacketizer::new()),
            Codec::Vp9 => AnyDepacketizer::Vp9(Vp9Depacketizer),
            Codec::Av1 => AnyDepacketizer::Av1(Av1Depacketizer::new()),
            Codec::Opus => AnyDepacketizer::Opus(OpusDepacketizer),
        }
    }
}

/// The packetizer of any registered codec.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyPacketizer {
    /// VP8.
    Vp8(Vp8Packetizer),
    /// H.264.
    H264(H264Packetizer),
    /// VP9.
    Vp9(Vp9Packetizer),
    /// AV1.
    Av1(Av1Packetizer),
    /// Opus.
    Opus(OpusPacketizer),
}

impl Packetizer for AnyPacketizer {
    fn packetize(&mut self, frame: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) -> Result<(), Error> {
        match self {
            AnyPacketizer::Vp8(p) => p.packetize(frame, mtu, out),
            AnyPacketizer::H264(p) => p.packetize(frame, mtu, out),
            AnyPacketizer::Vp9(p) => p.packetize(frame, mtu, out),
            AnyPacketizer::Av1(p) => p.packetize(frame, mtu, out),
            AnyPacketizer::Opus(p) => p.packetize(frame, mtu, out),
        }
    }

    fn packetize_into(
        &mut self,
        frame: &[u8],
        mtu: usize,
        out: &mut Payloads,
    ) -> Result<(), Error> {
        match self {
            AnyPacketizer::Vp8(p) => p.packetize_into(frame, mtu, out),
            AnyPacketizer::H264(p) => p.packetize_into(frame, mtu, out),
            AnyPacketizer::Vp9(p) => p.packetize_into(frame, mtu, out),
            AnyPacketizer::Av1(p) => p.packetize_into(frame, mtu, out),
            AnyPacketizer::Opus(p) => p.packetize_into(frame, mtu, out),
        }
    }
}

/// The depacketizer of any registered codec.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AnyDepacketizer {
    /// VP8.
    Vp8(Vp8Depacketizer),
    /// H.264.
    H264(H264Depacketizer),
    /// VP9.
    Vp9(Vp9Depacketizer),
    /// AV1.
    Av1(Av1Depacketizer),
    /// Opus.
    Opus(OpusDepacketizer),
}

impl AnyDepacketizer {
    fn inner(&self) -> &dyn Depacketizer {
        match self {
            AnyDepacketizer::Vp8(d) => d,
            AnyDepacketizer::H264(d) => d,
            AnyDepacketizer::Vp9(d) => d,
            AnyDepacketizer::Av1(d) => d,
            AnyDepacketizer::Opus(d) => d,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Depacketizer {
        match self {
            AnyDepacketizer::Vp8(d) => d,
            AnyDepacketizer::H264(d) => d,
            AnyDepacketizer::Vp9(d) => d,
            AnyDepacketizer::Av1(d) => d,
            AnyDepacketizer::Opus(d) => d,
        }
    }
}

impl Depacketizer for AnyDepacketizer {
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
        self.inner_mut().depacketize(payload, frame)
    }
    fn reset(&mut self) {
        self.inner_mut().reset()
    }
    fn is_frame_start(&self, payload: &[u8]) -> bool {
        self.inner().is_frame_start(payload)
    }
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        self.inner().is_keyframe(payload)
    }
    fn is_frame_end(&self, payload: &[u8], marker: bool) -> bool {
        self.inner().is_frame_end(payload, marker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdp;

    fn negotiated(name: &str, fmtp: Option<&str>) -> sdp::NegotiatedCodec {
        sdp::NegotiatedCodec {
            payload_type: 100,
            name: name.into(),
            clock_rate: 90_000,
            channels: None,
            remote_fmtp: fmtp.map(str::to_string),
            local_fmtp: None,
            feedback: Vec::new(),
            rtx_payload_type: None,
        }
    }

    #[test]
    fn negotiated_codecs_map_to_the_registry() {
        let of = |n: &str, f: Option<&str>| Codec::from_negotiated(&negotiated(n, f));
        assert_eq!(of("vp8", None), Some(Codec::Vp8));
        assert_eq!(of("OPUS", None), Some(Codec::Opus));
        assert_eq!(of("VP9", None), Some(Codec::Vp9));
        assert_eq!(of("VP9", Some("profile-id=0")), Some(Codec::Vp9));
        assert_eq!(of("VP9", Some("profile-id=2")), None);
        assert_eq!(
            of("AV1", Some("level-idx=5;profile=0;tier=0")),
            Some(Codec::Av1)
        );
        assert_eq!(of("AV1", Some("profile=1")), None);
        let h264 = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
        assert_eq!(of("H264", Some(h264)), Some(Codec::H264));
        assert_eq!(of("H264", Some("packetization-mode=0")), None);
        assert_eq!(of("H264", None), None);
        assert_eq!(of("red", None), None);
    }

    #[test]
    fn every_codec_describes_itself_consistently() {
        let mut pts = Vec::new();
        for c in Codec::ALL {
            let s = c.sdp();
            assert_eq!(s.name, c.name());
            assert_eq!(s.clock_rate, c.clock_rate());
            assert_eq!(s.rtx_payload_type.is_some(), c.has_rtx());
            pts.push(s.payload_type);
            pts.extend(s.rtx_payload_type);
            // What we offer maps back to the same codec.
            let n = sdp::NegotiatedCodec {
                payload_type: s.payload_type,
                name: s.name.clone(),
                clock_rate: s.clock_rate,
                channels: s.channels,
                remote_fmtp: s.fmtp.clone(),
                local_fmtp: s.fmtp.clone(),
                feedback: s.feedback.clone(),
                rtx_payload_type: s.rtx_payload_type,
            };
            assert_eq!(Codec::from_negotiated(&n), Some(c));
            // Its packetizer's payloads come back through its depacketizer.
            let frame: Vec<u8> = match c {
                Codec::Av1 => vec![0x0a, 0x03, 1, 2, 3, 0x32, 0x04, 9, 8, 7, 6],
                Codec::H264 => vec![0, 0, 0, 1, 0x65, 1, 2, 3],
                _ => vec![0x80, 1, 2, 3, 4],
            };
            let mut ps = Vec::new();
            c.packetizer(&mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7))
                .packetize(&frame, 1200, &mut ps)
                .unwrap();
            let mut d = c.depacketizer();
            let mut out = Vec::new();
            d.reset();
            for p in &ps {
                d.depacketize(p, &mut out).unwrap();
            }
            let want = match c {
                // The depacketizer puts the temporal delimiter back.
                Codec::Av1 => [&[0x12, 0x00][..], &frame].concat(),
                _ => frame,
            };
            assert_eq!(out, want, "{c:?}");
        }
        let unique: std::collections::BTreeSet<_> = pts.iter().collect();
        assert_eq!(unique.len(), pts.len(), "payload types collide: {pts:?}");
    }
}
