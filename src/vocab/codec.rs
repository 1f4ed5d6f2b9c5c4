//! The codec vocabulary: what kind of media an m-line carries, an RTCP
//! feedback token, and the registry of every codec rtclab can send and
//! receive with what offer/answer and RTP both read about it (kind,
//! encoding name, clock rate, channels, the fmtp and feedback we offer, our
//! payload types, whether RTX repairs it).
//!
//! SDP writes the registry into descriptions (`sdp::Capabilities::webrtc`,
//! `Codec::sdp`) and RTP packetizes by it (`rtp::codec`): both import it
//! from here, neither from the other.

/// What an m-line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// `m=application` (data channels).
    Application,
}

impl MediaKind {
    /// The `m=` token.
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
            MediaKind::Application => "application",
        }
    }

    /// The kind of an `m=` token.
    pub fn parse(s: &str) -> Option<MediaKind> {
        match s {
            "audio" => Some(MediaKind::Audio),
            "video" => Some(MediaKind::Video),
            "application" => Some(MediaKind::Application),
            _ => None,
        }
    }
}

/// One `a=rtcp-fb` type and parameter: `nack`, `nack pli`, `ccm fir`,
/// `goog-remb`, `transport-cc`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Feedback {
    /// The type.
    pub kind: String,
    /// The parameter.
    pub param: Option<String>,
}

impl Feedback {
    /// `kind` with an optional parameter.
    pub fn new(kind: &str, param: Option<&str>) -> Feedback {
        Feedback {
            kind: kind.to_string(),
            param: param.map(str::to_string),
        }
    }

    /// What WebRTC video uses: NACK, PLI, FIR, REMB, transport-cc.
    pub fn video() -> Vec<Feedback> {
        vec![
            Feedback::new("goog-remb", None),
            Feedback::new("transport-cc", None),
            Feedback::new("ccm", Some("fir")),
            Feedback::new("nack", None),
            Feedback::new("nack", Some("pli")),
        ]
    }
}

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

    /// The codec an `a=rtpmap` encoding name and the `a=fmtp` parameters of
    /// the same payload type stand for, if we can packetize it. H.264 only
    /// in packetization-mode 1 (RFC 6184 §6.3: mode 0 cannot carry NAL
    /// units above the MTU, mode 2 is interleaved); VP9 only profile 0 (RFC
    /// 9628 §6: `profile-id` absent means 0); AV1 only profile 0 (AV1 RTP
    /// §7.2: `profile` absent means 0).
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
}
