//! Codecs as offer/answer sees them: a payload type, an encoding, format
//! parameters and RTCP feedback; which codecs match (RFC 3264 §6.1, with
//! the H.264 rules of RFC 6184 §8.2.2); H.264 `profile-level-id`.

use super::attribute::split_params;
use super::negotiate::NegotiatedCodec;
use crate::vocab::codec::{Codec as Registered, MediaKind};

/// Header-extension URIs rtclab knows (RFC 8285 §5).
pub mod uri {
    /// RFC 8843 §15.1: the `a=mid` value in each packet (BUNDLE routing).
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    /// The Dependency Descriptor (AV1 RTP specification, Appendix A): what
    /// an SFU reads to forward scalable video (`rtp::dd`).
    pub const DEPENDENCY_DESCRIPTOR: &str =
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
    /// RFC 8852: the rid of a simulcast stream.
    pub const RTP_STREAM_ID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
    /// RFC 8852: the rid a repair stream repairs.
    pub const REPAIRED_RTP_STREAM_ID: &str =
        "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
    /// RFC 6464: audio level.
    pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    /// Absolute send time (for REMB).
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    /// Transport-wide sequence numbers (for transport-cc feedback).
    pub const TRANSPORT_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
}

pub use crate::vocab::codec::Feedback;

/// A codec a side can receive (and send), as written in its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// The payload type (in an offer; an answer keeps the offerer's).
    pub payload_type: u8,
    /// The encoding name (`opus`, `VP8`, `H264`, `VP9`, `red`, …).
    pub name: String,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// Audio channels (`opus/48000/2`).
    pub channels: Option<u16>,
    /// Format parameters (`a=fmtp`), as written.
    pub fmtp: Option<String>,
    /// RTCP feedback this side supports for the codec.
    pub feedback: Vec<Feedback>,
    /// The payload type of the RTX stream that repairs this codec (RFC
    /// 4588, paired by `apt=`); `Some` also means "supports RTX" when
    /// answering.
    pub rtx_payload_type: Option<u8>,
}

impl Codec {
    /// Opus (RFC 7587): `opus/48000/2`, in-band FEC.
    pub fn opus(pt: u8) -> Codec {
        Codec {
            payload_type: pt,
            name: "opus".into(),
            clock_rate: 48000,
            channels: Some(2),
            fmtp: Some("minptime=10;useinbandfec=1".into()),
            feedback: vec![Feedback::new("transport-cc", None)],
            rtx_payload_type: None,
        }
    }

    /// VP8 (RFC 7741), with RTX on `rtx`.
    pub fn vp8(pt: u8, rtx: Option<u8>) -> Codec {
        Codec {
            payload_type: pt,
            name: "VP8".into(),
            clock_rate: 90000,
            channels: None,
            fmtp: None,
            feedback: Feedback::video(),
            rtx_payload_type: rtx,
        }
    }

    /// VP9 profile 0, with RTX on `rtx`.
    pub fn vp9(pt: u8, rtx: Option<u8>) -> Codec {
        Codec {
            fmtp: Some("profile-id=0".into()),
            name: "VP9".into(),
            ..Codec::vp8(pt, rtx)
        }
    }

    /// H.264 (RFC 6184) with `profile-level-id` (6 hex digits, e.g.
    /// `42e01f`: constrained baseline, level 3.1) and packetization mode.
    pub fn h264(pt: u8, rtx: Option<u8>, profile_level_id: &str, packetization_mode: u8) -> Codec {
        Codec {
            fmtp: Some(format!(
                "level-asymmetry-allowed=1;packetization-mode={packetization_mode};profile-level-id={profile_level_id}"
            )),
            name: "H264".into(),
            ..Codec::vp8(pt, rtx)
        }
    }

    /// The value of fmtp parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref().and_then(|f| {
            split_params(f)
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
    }

    /// Whether this is an RTX codec.
    pub fn is_rtx(&self) -> bool {
        self.name.eq_ignore_ascii_case("rtx")
    }
}

/// Looks up `key` in a `k=v;…` list.
pub(crate) fn fmtp_param<'a>(fmtp: Option<&'a str>, key: &str) -> Option<&'a str> {
    fmtp.and_then(|f| {
        split_params(f)
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// An H.264 profile (ITU-T H.264 Annex A), as RFC 6184 §8.1's
/// `profile-level-id` names it through `profile_idc` and the constraint
/// flags of `profile-iop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum H264Profile {
    /// Constrained Baseline (`42e0`, `42c0`, `4de0`, `58e0`, …).
    ConstrainedBaseline,
    /// Baseline.
    Baseline,
    /// Main.
    Main,
    /// Extended.
    Extended,
    /// High.
    High,
    /// Constrained High (`640c`).
    ConstrainedHigh,
    /// Another `profile_idc`.
    Other(u8),
}

/// A parsed `profile-level-id`: three bytes `profile_idc`, `profile-iop`,
/// `level_idc` (RFC 6184 §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProfileLevelId {
    /// `profile_idc`.
    pub profile_idc: u8,
    /// `profile-iop`: constraint_set0..5 flags in the high bits.
    pub profile_iop: u8,
    /// `level_idc` (31 = level 3.1).
    pub level_idc: u8,
}

impl ProfileLevelId {
    /// RFC 6184 §8.1: absent means `42000A` (baseline, level 1).
    pub const DEFAULT: ProfileLevelId = ProfileLevelId {
        profile_idc: 0x42,
        profile_iop: 0x00,
        level_idc: 0x0a,
    };

    /// Parses 6 hex digits.
    pub fn parse(hex: &str) -> Option<ProfileLevelId> {
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let v = u32::from_str_radix(hex, 16).ok()?;
        let [_, profile_idc, profile_iop, level_idc] = v.to_be_bytes();
        Some(ProfileLevelId {
            profile_idc,
            profile_iop,
            level_idc,
        })
    }

    /// The profile the idc and constraint flags name (H.264 A.2).
    pub fn profile(&self) -> H264Profile {
        let set0 = self.profile_iop & 0x80 != 0;
        let set1 = self.profile_iop & 0x40 != 0;
        let set4 = self.profile_iop & 0x08 != 0;
        let set5 = self.profile_iop & 0x04 != 0;
        match self.profile_idc {
            0x42 if set1 => H264Profile::ConstrainedBaseline,
            0x42 => H264Profile::Baseline,
            0x4d if set0 => H264Profile::ConstrainedBaseline,
            0x4d => H264Profile::Main,
            0x58 if set0 && set1 => H264Profile::ConstrainedBaseline,
            0x58 if set0 => H264Profile::Baseline,
            0x58 => H264Profile::Extended,
            0x64 if set4 && set5 => H264Profile::ConstrainedHigh,
            0x64 => H264Profile::High,
            other => H264Profile::Other(other),
        }
    }

    /// Level 1b: `level_idc` 11 with constraint_set3 in the Baseline, Main
    /// and Extended profiles, or `level_idc` 9 (H.264 A.3.1, A.3.2).
    pub fn is_level_1b(&self) -> bool {
        self.level_idc == 9
            || (self.level_idc == 11
                && self.profile_iop & 0x10 != 0
                && matches!(self.profile_idc, 0x42 | 0x4d | 0x58))
    }

    /// A key that orders levels (1b sits between 1 and 1.1).
    pub fn level_order(&self) -> u16 {
        if self.is_level_1b() {
            21
        } else {
            u16::from(self.level_idc) * 2
        }
    }

    /// This profile at the level of `other` (RFC 6184 §8.2.2: the answer
    /// keeps the offered profile and may lower the level).
    pub fn with_level_of(&self, other: &ProfileLevelId) -> ProfileLevelId {
        let mut p = *self;
        p.profile_iop &= !0x10;
        if other.is_level_1b() {
            if matches!(p.profile_idc, 0x42 | 0x4d | 0x58) {
                p.level_idc = 11;
                p.profile_iop |= 0x10;
            } else {
                p.level_idc = 9;
            }
        } else {
            p.level_idc = other.level_idc;
        }
        p
    }

    /// Six lower-case hex digits.
    pub fn to_hex(&self) -> String {
        format!(
            "{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_iop, self.level_idc
        )
    }
}

fn h264_profile_level(fmtp: Option<&str>) -> Option<ProfileLevelId> {
    match fmtp_param(fmtp, "profile-level-id") {
        None => Some(ProfileLevelId::DEFAULT),
        Some(v) => ProfileLevelId::parse(v),
    }
}

/// What an answer's codec looks like after matching an offered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    /// The fmtp the answer writes for this codec.
    pub fmtp: Option<String>,
}

/// Whether the offered codec (`name/clock/channels` and its fmtp) matches
/// the local one, and if so the fmtp the answer carries (RFC 3264 §6.1:
/// same encoding name, clock rate and channels; RFC 6184 §8.2.2 for H.264:
/// same profile and packetization mode, level lowered to what both can
/// do; VP9 `profile-id` and AV1 `profile` equal).
pub(crate) fn match_codec(
    name: &str,
    clock_rate: u32,
    channels: Option<u16>,
    fmtp: Option<&str>,
    audio: bool,
    local: &Codec,
) -> Option<Matched> {
    if !name.eq_ignore_ascii_case(&local.name) || clock_rate != local.clock_rate {
        return None;
    }
    // RFC 8866 §6.6: channels default to one for audio.
    let ch = |c: Option<u16>| if audio { c.or(Some(1)) } else { c };
    if ch(channels) != ch(local.channels) {
        return None;
    }
    let local_fmtp = local.fmtp.as_deref();
    let equal_param = |key: &str, default: &str| {
        fmtp_param(fmtp, key).unwrap_or(default) == fmtp_param(local_fmtp, key).unwrap_or(default)
    };
    if name.eq_ignore_ascii_case("H264") {
        if !equal_param("packetization-mode", "0") {
            return None;
        }
        let offered = h264_profile_level(fmtp)?;
        let ours = h264_profile_level(local_fmtp)?;
        if offered.profile() != ours.profile() {
            return None;
        }
        // RFC 6184 §8.2.2: with level-asymmetry-allowed on both sides each
        // receiver states its own level; otherwise the answer gives the
        // lower of the two, which both then use.
        let asym = |f: Option<&str>| fmtp_param(f, "level-asymmetry-allowed") == Some("1");
        let level = if asym(fmtp) && asym(local_fmtp) || ours.level_order() <= offered.level_order()
        {
            ours
        } else {
            offered
        };
        let answer = offered.with_level_of(&level);
        let mut params = Vec::new();
        if asym(local_fmtp) {
            params.push("level-asymmetry-allowed=1".to_string());
        }
        params.push(format!(
            "packetization-mode={}",
            fmtp_param(fmtp, "packetization-mode").unwrap_or("0")
        ));
        params.push(format!("profile-level-id={}", answer.to_hex()));
        return Some(Matched {
            fmtp: Some(params.join(";")),
        });
    }
    if name.eq_ignore_ascii_case("VP9") && !equal_param("profile-id", "0") {
        return None;
    }
    if name.eq_ignore_ascii_case("AV1") && !equal_param("profile", "0") {
        return None;
    }
    Some(Matched {
        fmtp: local.fmtp.clone(),
    })
}

/// The static payload types WebRTC peers still offer without an `a=rtpmap`
/// (RFC 3551 §6): `(name, clock rate, channels)`.
pub(crate) fn static_payload_type(pt: u8) -> Option<(&'static str, u32, Option<u16>)> {
    Some(match pt {
        0 => ("PCMU", 8000, None),
        8 => ("PCMA", 8000, None),
        9 => ("G722", 8000, None),
        13 => ("CN", 8000, None),
        _ => return None,
    })
}

/// The registry's codecs as descriptions write them.
impl Registered {
    /// The codec as our descriptions write it, with our payload types.
    pub fn sdp(self) -> Codec {
        let (payload_type, rtx) = self.payload_types();
        Codec {
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
    pub fn sdp_codecs(kind: MediaKind) -> Vec<Codec> {
        Registered::ALL
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
    pub fn from_negotiated(c: &NegotiatedCodec) -> Option<Registered> {
        let fmtp = c.remote_fmtp.as_deref().or(c.local_fmtp.as_deref());
        Registered::from_sdp(&c.name, fmtp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_of_common_profile_level_ids() {
        let p = |s: &str| ProfileLevelId::parse(s).unwrap().profile();
        assert_eq!(p("42e01f"), H264Profile::ConstrainedBaseline);
        assert_eq!(p("42c01f"), H264Profile::ConstrainedBaseline);
        assert_eq!(p("42001f"), H264Profile::Baseline);
        assert_eq!(p("4d001f"), H264Profile::Main);
        assert_eq!(p("4de01f"), H264Profile::ConstrainedBaseline);
        assert_eq!(p("64001f"), H264Profile::High);
        assert_eq!(p("640c1f"), H264Profile::ConstrainedHigh);
        assert_eq!(p("f4001f"), H264Profile::Other(0xf4));
        assert!(ProfileLevelId::parse("42e01").is_none());
        assert!(ProfileLevelId::parse("42e01g").is_none());
        assert!(ProfileLevelId::parse("42f00b").unwrap().is_level_1b());
    }

    #[test]
    fn h264_levels_negotiate_down_without_asymmetry() {
        // Local: constrained baseline level 3.1 without level-asymmetry.
        let local = Codec {
            fmtp: Some("packetization-mode=1;profile-level-id=42e01f".into()),
            ..Codec::h264(102, None, "42e01f", 1)
        };
        let m = match_codec(
            "H264",
            90000,
            None,
            Some("packetization-mode=1;profile-level-id=42e00d"),
            false,
            &local,
        )
        .unwrap();
        // Offered level 1.3 is lower: the answer says 1.3.
        assert_eq!(
            m.fmtp.as_deref(),
            Some("packetization-mode=1;profile-level-id=42e00d")
        );
        // With asymmetry on both sides each states its own level.
        let m = match_codec(
            "H264",
            90000,
            None,
            Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e00d"),
            false,
            &Codec::h264(102, None, "42e01f", 1),
        )
        .unwrap();
        assert_eq!(
            m.fmtp.as_deref(),
            Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")
        );
        // Offered level 5.1 is higher than ours: the answer says ours.
        let m = match_codec(
            "H264",
            90000,
            None,
            Some("packetization-mode=1;profile-level-id=42e033"),
            false,
            &local,
        )
        .unwrap();
        assert_eq!(
            m.fmtp.as_deref(),
            Some("packetization-mode=1;profile-level-id=42e01f")
        );
    }

    #[test]
    fn h264_profile_or_mode_mismatch_does_not_match() {
        let local = Codec::h264(102, None, "42e01f", 1);
        let try_ = |f: &str| match_codec("H264", 90000, None, Some(f), false, &local);
        assert!(try_("packetization-mode=1;profile-level-id=4d001f").is_none());
        assert!(try_("packetization-mode=1;profile-level-id=64001f").is_none());
        assert!(try_("packetization-mode=0;profile-level-id=42e01f").is_none());
        assert!(try_("profile-level-id=42e01f").is_none()); // mode 0 by default
        assert!(try_("packetization-mode=1;profile-level-id=zz").is_none());
        // 42c01f is constrained baseline too.
        assert!(try_("packetization-mode=1;profile-level-id=42c01f").is_some());
    }

    #[test]
    fn other_codecs_match_by_name_rate_channels_and_profile() {
        assert!(match_codec("OPUS", 48000, Some(2), None, true, &Codec::opus(111)).is_some());
        assert!(match_codec("opus", 48000, None, None, true, &Codec::opus(111)).is_none());
        assert!(match_codec("VP8", 90000, None, None, false, &Codec::vp8(96, None)).is_some());
        assert!(match_codec("VP8", 8000, None, None, false, &Codec::vp8(96, None)).is_none());
        let vp9 = Codec::vp9(98, None);
        assert!(match_codec("VP9", 90000, None, Some("profile-id=0"), false, &vp9).is_some());
        assert!(match_codec("VP9", 90000, None, None, false, &vp9).is_some());
        assert!(match_codec("VP9", 90000, None, Some("profile-id=2"), false, &vp9).is_none());
    }
}
