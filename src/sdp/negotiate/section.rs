//! What the reader and the writer both look up in one media section.

use super::types::DATA_CHANNEL_FORMAT;
use crate::sdp::attribute::{Attribute, Direction, Fingerprint, RidDirection, Setup};
use crate::sdp::codec::{Feedback, fmtp_param, static_payload_type};
use crate::sdp::description::{MediaDescription, SessionDescription};

/// A codec as a media section describes it: payload type, rtpmap (or the
/// static table), fmtp and feedback.
pub(super) struct Described<'a> {
    pub(super) name: &'a str,
    pub(super) clock_rate: u32,
    pub(super) channels: Option<u16>,
    pub(super) fmtp: Option<&'a str>,
}

pub(super) fn describe(m: &MediaDescription, pt: u8) -> Option<Described<'_>> {
    let fmtp = m.fmtp(pt).map(|f| f.params.as_str());
    match m.rtpmap(pt) {
        Some(r) => Some(Described {
            name: &r.encoding,
            clock_rate: r.clock_rate,
            channels: r.channels,
            fmtp,
        }),
        None => static_payload_type(pt).map(|(name, clock_rate, channels)| Described {
            name,
            clock_rate,
            channels,
            fmtp,
        }),
    }
}

/// The payload types of an m-line in order, each once (at most 128, so
/// that per-codec work stays bounded whatever the input).
pub(super) fn unique_pts(m: &MediaDescription) -> Vec<u8> {
    let mut seen = [false; 128];
    m.payload_types()
        .filter(|p| !std::mem::replace(&mut seen[usize::from(*p & 0x7f)], true))
        .collect()
}

/// The most feedback entries kept per codec.
pub(super) const MAX_FEEDBACK: usize = 32;

pub(super) fn feedback_of(m: &MediaDescription, pt: u8) -> Vec<Feedback> {
    m.rtcp_fbs(pt)
        .take(MAX_FEEDBACK)
        .map(|f| Feedback {
            kind: f.kind.clone(),
            param: f.param.clone(),
        })
        .collect()
}

/// `apt=` of an RTX payload type.
pub(super) fn apt(m: &MediaDescription, pt: u8) -> Option<u8> {
    fmtp_param(m.fmtp(pt).map(|f| f.params.as_str()), "apt").and_then(|a| a.parse().ok())
}

pub(super) fn is_rtx(d: &Described<'_>) -> bool {
    d.name.eq_ignore_ascii_case("rtx")
}

/// The transport attributes of an m-line, falling back to the session
/// level (RFC 8839 §5.4, RFC 8122 §5 allow either).
pub(super) struct Transport<'a> {
    pub(super) ufrag: Option<&'a str>,
    pub(super) pwd: Option<&'a str>,
    pub(super) fingerprints: Vec<Fingerprint>,
    pub(super) setup: Option<Setup>,
}

pub(super) fn transport_of<'a>(
    sd: &'a SessionDescription,
    m: &'a MediaDescription,
) -> Transport<'a> {
    // RFC 8843 §7.2, §7.3: a bundled m-line may leave its transport
    // attributes to the BUNDLE-tagged one (the first mid of the group), as
    // `a=bundle-only` m-lines do.
    let tagged = sd
        .bundle_group()
        .filter(|g| m.mid().is_some_and(|mid| g.mids.iter().any(|x| x == mid)))
        .and_then(|g| g.mids.first())
        .and_then(|mid| sd.media_by_mid(mid));
    let levels = [Some(m), tagged];
    let levels = levels.iter().flatten();
    let mut fingerprints: Vec<Fingerprint> = Vec::new();
    for l in levels.clone() {
        if fingerprints.is_empty() {
            fingerprints = l.fingerprints().cloned().collect();
        }
    }
    if fingerprints.is_empty() {
        fingerprints = sd.fingerprints().cloned().collect();
    }
    Transport {
        ufrag: levels
            .clone()
            .find_map(|l| l.ice_ufrag())
            .or(sd.ice_ufrag()),
        pwd: levels.clone().find_map(|l| l.ice_pwd()).or(sd.ice_pwd()),
        fingerprints,
        setup: levels.clone().find_map(|l| l.setup()).or(sd.setup()),
    }
}

pub(super) fn direction_of(sd: &SessionDescription, m: &MediaDescription) -> Direction {
    m.direction().or(sd.direction()).unwrap_or_default()
}

pub(super) fn is_rtp(m: &MediaDescription) -> bool {
    m.protocol.contains("RTP")
}

pub(super) fn is_data_channel(m: &MediaDescription) -> bool {
    m.media == "application"
        && m.protocol.ends_with("SCTP")
        && m.formats.iter().any(|f| f == DATA_CHANNEL_FORMAT)
}

/// The rids an m-line's `a=simulcast` lists for `dir`, alternatives
/// flattened, in its order.
pub(super) fn simulcast_list(m: &MediaDescription, dir: RidDirection) -> Vec<String> {
    m.attributes
        .iter()
        .find_map(|a| match a {
            Attribute::Simulcast(s) => s.streams.iter().find(|(d, _)| *d == dir),
            _ => None,
        })
        .map(|(_, l)| l.iter().flatten().map(|id| id.rid.clone()).collect())
        .unwrap_or_default()
}
