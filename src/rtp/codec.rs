//! The codec registry: every codec rtclab can send and receive, with what the
//! rest of the stack reads about it — its media kind, SDP encoding name,
//! clock rate, channels, the fmtp and RTCP feedback we offer, the payload
//! types of our offers, whether RTX repairs it, and its packetizer and
//! depacketizer.
//!
//! Adding a codec means adding one arm to each `match` here (and a variant to
//! [`Codec::ALL`]): `sdp::Capabilities::webrtc` offers whatever this list
//! holds, and `peer` packetizes and depacketizes through
//! [`AnyPacketizer`] / [`AnyDepacketizer`].

use rand::Rng;

use super::RtpError;
use super::av1::{Av1Depacketizer, Av1Packetizer};
use super::h264::{H264Depacketizer, H264Packetizer};
use super::opus::{OpusDepacketizer, OpusPacketizer};
use super::payload::{Depacketizer, Packetizer, Payloads};
use super::vp8::{Vp8Depacketizer, Vp8Packetizer};
use super::vp9::{Vp9Depacketizer, Vp9Packetizer};
use crate::sdp::{self, Feedback, MediaKind};

/// A codec rtclab can packetize and depacketize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// VP8 video (RFC 7741).
    Vp8,
    /// H.264 video (RFC 6184), packetization-mode 1; frames are Annex-B
    /// access units (start codes before each NAL unit).
    H264,
    /// VP9 video (RFC 9628), profile 0; frames are VP9 frames (one spatial
    /// layer sent; received layers are concatenated as they come).
    Vp9,
    /// AV1 video (AOMedia "RTP Payload Format for AV1" v1.0); frames are
    /// temporal units in the low-overhead bitstream format (every OBU with
    /// its size field), as IVF files hold them.
    Av1,
    /// Opus audio (RFC 7587).
    Opus,
}

impl Codec {
    /// Every codec, in our order of preference (an offer lists them so; the
    /// answerer picks the first it shares, RFC 3264 §6.1). VP8 stays first:
    /// browsers then send what they always did.
    pub const ALL: [Codec; 5] = [Codec::Vp8, Codec::H264, Codec::Vp9, Codec::Av1, Codec::Opus];

    /// The media kind.
    pub fn kind(self) -> MediaKind {
        match self {
            Codec::Vp8 | Codec::H264 | Codec::Vp9 | Codec::Av1 => MediaKind::Video,
            Codec::Opus => MediaKind::Audio,
        }
    }

    /// The SDP encoding name (`a=rtpmap`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
            Codec::Vp9 => "VP9",
            Codec::Av1 => "AV1",
            Codec::Opus => "opus",
        }
    }

    /// The RTP clock rate: 90 kHz for video (RFC 7741 §6.1, RFC 6184 §8.2.1,
    /// RFC 9628 §6, AV1 RTP §7.1), 48 kHz for Opus (RFC 7587 §4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            _ => 90_000,
        }
    }

    /// The channels of `a=rtpmap` (RFC 7587 §7: `opus/48000/2` always).
    pub fn channels(self) -> Option<u16> {
        match self {
            Codec::Opus => Some(2),
            _ => None,
        }
    }

    /// The `a=fmtp` parameters we offer.
    pub fn fmtp(self) -> Option<&'static str> {
        match self {
            Codec::Vp8 => None,
            // RFC 6184 §8.1: constrained baseline level 3.1, non-interleaved.
            Codec::H264 => {
                Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
            }
            // RFC 9628 §6: profile 0 (8-bit 4:2:0).
            Codec::Vp9 => Some("profile-id=0"),
            // AV1 RTP §7.2: Main profile, level 3.1 (level-idx 5), Main tier.
            Codec::Av1 => Some("level-idx=5;profile=0;tier=0"),
            // RFC 7587 §7: 10 ms packets at least; we decode in-band FEC.
            Codec::Opus => Some("minptime=10;useinbandfec=1"),
        }
    }

    /// The RTCP feedback we offer (`a=rtcp-fb`): for video NACK (RFC 4585
    /// §4.2), PLI, FIR (RFC 5104 §7.1), REMB and transport-cc; for Opus
    /// transport-cc only.
    pub fn feedback(self) -> Vec<Feedback> {
        match self.kind() {
            MediaKind::Video => Feedback::video(),
            _ => vec![Feedback::new("transport-cc", None)],
        }
    }

    /// Whether lost packets are repaired by retransmission (RFC 4588): video
    /// yes, Opus no (a late audio packet is useless; it has in-band FEC).
    pub fn has_rtx(self) -> bool {
        self.kind() == MediaKind::Video
    }

    /// The payload types of our offers: the codec's, and its RTX one. The
    /// numbers are the ones Chromium uses (VP8 96/97, H.264 102/103, VP9
    /// 98/99, AV1 45/46, Opus 111), so traces read alike.
    pub fn payload_types(self) -> (u8, Option<u8>) {
        match self {
            Codec::Vp8 => (96, Some(97)),
            Codec::H264 => (102, Some(103)),
            Codec::Vp9 => (98, Some(99)),
            Codec::Av1 => (45, Some(46)),
            Codec::Opus => (111, None),
        }
    }

    /// The codec as our descriptions write it, with our payload types.
    pub fn sdp(self) -> sdp::Codec {
        let (payload_type, rtx) = self.payload_types();
        sdp::Codec {
            payload_type,
            name: self.name().into(),
            clock_rate: self.clock_rate(),
            channels: self.channels(),
            fmtp: self.fmtp().map(str::to_string),
            feedback: self.feedback(),
            rtx_payload_type: rtx.filter(|_| self.has_rtx()),
        }
    }

    /// Every codec of `kind`, in preference order, as our descriptions
    /// write them.
    pub fn sdp_codecs(kind: MediaKind) -> Vec<sdp::Codec> {
        Codec::ALL
            .iter()
            .filter(|c| c.kind() == kind)
            .map(|c| c.sdp())
            .collect()
    }

    /// The codec a negotiated encoding name (and fmtp) stands for, if we can
    /// packetize it. H.264 only in packetization-mode 1 (RFC 6184 §6.3: mode
    /// 0 cannot carry NAL units above the MTU, mode 2 is interleaved); VP9
    /// only profile 0 (RFC 9628 §6: `profile-id` absent means 0); AV1 only
    /// profile 0 (AV1 RTP §7.2: `profile` absent means 0).
    pub fn from_negotiated(c: &sdp::NegotiatedCodec) -> Option<Codec> {
        let fmtp = c.remote_fmtp.as_deref().or(c.local_fmtp.as_deref());
        Codec::from_sdp(&c.name, fmtp)
    }

    /// [`Codec::from_negotiated`] from an `a=rtpmap` encoding name and the
    /// `a=fmtp` parameters of the same payload type (e.g. of an offer).
    pub fn from_sdp(name: &str, fmtp: Option<&str>) -> Option<Codec> {
        let param = |key: &str| {
            fmtp.and_then(|f| {
                f.split(';')
                    .filter_map(|kv| kv.trim().split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case(key))
                    .map(|(_, v)| v.trim())
            })
        };
        let codec = Codec::ALL
            .into_iter()
            .find(|k| name.eq_ignore_ascii_case(k.name()))?;
        match codec {
            Codec::H264 => (param("packetization-mode") == Some("1")).then_some(codec),
            Codec::Vp9 => (param("profile-id").unwrap_or("0") == "0").then_some(codec),
            Codec::Av1 => (param("profile").unwrap_or("0") == "0").then_some(codec),
            Codec::Vp8 | Codec::Opus => Some(codec),
        }
    }

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
    fn packetize(
        &mut self,
        frame: &[u8],
        mtu: usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), RtpError> {
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
    ) -> Result<(), RtpError> {
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
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), RtpError> {
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
