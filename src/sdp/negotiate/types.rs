//! What negotiation takes in and gives out: capabilities, transport
//! parameters, transceivers, the agreed result and its errors.

use std::fmt;

use crate::sdp::attribute::{Direction, Fingerprint, Msid, Rid, Setup, Simulcast};
use crate::sdp::codec::{Codec, Feedback};
use crate::vocab::Candidate;

/// The RTP profile WebRTC media uses (RFC 8829 §5.1.2).
pub const RTP_PROTOCOL: &str = "UDP/TLS/RTP/SAVPF";
/// The data-channel protocol (RFC 8841 §4).
pub const SCTP_PROTOCOL: &str = "UDP/DTLS/SCTP";
/// The data-channel format (RFC 8841 §4.1).
pub const DATA_CHANNEL_FORMAT: &str = "webrtc-datachannel";

pub use crate::vocab::DtlsRole;
pub use crate::vocab::codec::MediaKind;

/// Why an offer or answer could not be made or understood.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The answer has a different number of m-lines than the offer
    /// (RFC 3264 §6).
    MediaCount {
        /// m-lines in the offer.
        offer: usize,
        /// m-lines in the answer.
        answer: usize,
    },
    /// An m-line changed its kind or mid where it must not (RFC 3264 §6,
    /// §8; JSEP §5.2.2: existing m-lines keep their place and mid).
    Mismatch {
        /// The m-line's index.
        index: usize,
        /// What differs.
        what: &'static str,
    },
    /// An accepted m-line has no `a=mid` (RFC 8843 §7.1), or two share one.
    Mid {
        /// The m-line's index.
        index: usize,
    },
    /// The answer chose a payload type the offer did not have (RFC 3264
    /// §6.1).
    CodecNotOffered {
        /// The m-line's index.
        index: usize,
        /// The payload type.
        payload_type: u8,
    },
    /// No `a=ice-ufrag`/`a=ice-pwd` for an accepted m-line (RFC 8839 §5.4).
    MissingIceCredentials {
        /// The m-line's index.
        index: usize,
    },
    /// No `a=fingerprint` for an accepted m-line (RFC 8122 §5).
    MissingFingerprint {
        /// The m-line's index.
        index: usize,
    },
    /// `a=setup` values that do not fit together (RFC 8842 §5.2, §5.3).
    Setup {
        /// The offer's value (`None` when missing).
        offer: Option<Setup>,
        /// The answer's value (`None` when missing).
        answer: Option<Setup>,
    },
    /// An accepted RTP m-line of the answer has no `a=rtcp-mux` (rtclab
    /// requires RTCP multiplexing, RFC 8829 §5.1.3).
    RtcpMuxRequired {
        /// The m-line's index.
        index: usize,
    },
    /// Several m-lines are accepted but not all in one `a=group:BUNDLE`
    /// (rtclab uses one transport for everything, RFC 8843).
    BundleRequired,
    /// API misuse: an answer was given without a pending local offer, or a
    /// transceiver id does not exist.
    Misuse(&'static str),
}

impl fmt::Display for NegotiationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NegotiationError::MediaCount { offer, answer } => write!(
                f,
                "the answer has {answer} m-lines, the offer {offer} (RFC 3264 §6)"
            ),
            NegotiationError::Mismatch { index, what } => {
                write!(f, "m-line {index}: {what} differs from before")
            }
            NegotiationError::Mid { index } => {
                write!(f, "m-line {index}: missing or duplicate a=mid")
            }
            NegotiationError::CodecNotOffered {
                index,
                payload_type,
            } => write!(
                f,
                "m-line {index}: the answer uses payload type {payload_type}, which was not offered"
            ),
            NegotiationError::MissingIceCredentials { index } => {
                write!(f, "m-line {index}: no a=ice-ufrag/a=ice-pwd")
            }
            NegotiationError::MissingFingerprint { index } => {
                write!(f, "m-line {index}: no a=fingerprint")
            }
            NegotiationError::Setup { offer, answer } => write!(
                f,
                "a=setup {} in the offer and {} in the answer do not fit (RFC 8842 §5)",
                offer.map_or("(none)", Setup::as_str),
                answer.map_or("(none)", Setup::as_str)
            ),
            NegotiationError::RtcpMuxRequired { index } => {
                write!(f, "m-line {index}: no a=rtcp-mux (required)")
            }
            NegotiationError::BundleRequired => {
                f.write_str("several m-lines accepted but not bundled (a=group:BUNDLE required)")
            }
            NegotiationError::Misuse(what) => write!(f, "API misuse: {what}"),
        }
    }
}

impl std::error::Error for NegotiationError {}

/// What one side can do for one kind of media.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MediaCapabilities {
    /// Codecs in order of preference, with the payload types our offers use.
    pub codecs: Vec<Codec>,
    /// Header-extension URIs we understand ([`uri`](crate::sdp::codec::uri)).
    pub extensions: Vec<String>,
}

/// Data channels: SCTP over DTLS (RFC 8841).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataChannelCapabilities {
    /// `a=sctp-port` (5000 by convention).
    pub sctp_port: u16,
    /// `a=max-message-size`: the largest message we can receive (RFC 8841
    /// §6; 0 means no limit).
    pub max_message_size: u64,
}

impl Default for DataChannelCapabilities {
    fn default() -> Self {
        DataChannelCapabilities {
            sctp_port: 5000,
            max_message_size: 262_144,
        }
    }
}

/// Everything this side can do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// Audio codecs and extensions.
    pub audio: MediaCapabilities,
    /// Video codecs and extensions.
    pub video: MediaCapabilities,
    /// Whether (and how) we accept data channels.
    pub data_channel: Option<DataChannelCapabilities>,
    /// Whether we receive simulcast: an offer that sends several RTP
    /// streams on one m-line (`a=simulcast:send`, `a=rid:… send`) is
    /// answered with the matching `a=rid:… recv` lines and
    /// `a=simulcast:recv` (RFC 8853 §5.3; JSEP §5.3.1), so the peer sends
    /// every layer. Off by default: a receiver that assembles frames
    /// wants one stream; a forwarder (an SFU) turns it on.
    pub receive_simulcast: bool,
}

impl Capabilities {
    /// Every codec of the registry ([`crate::vocab::codec::Codec::ALL`]):
    /// Opus; VP8, H.264 (constrained baseline 3.1, mode 1), VP9 profile 0
    /// and AV1 profile 0, each with RTX; mid, abs-send-time and
    /// transport-cc extensions; data channels.
    pub fn webrtc() -> Capabilities {
        use crate::sdp::codec::uri;
        use crate::vocab::codec::Codec as Registered;
        Capabilities {
            audio: MediaCapabilities {
                codecs: Registered::sdp_codecs(MediaKind::Audio),
                extensions: vec![
                    uri::MID.into(),
                    uri::AUDIO_LEVEL.into(),
                    uri::TRANSPORT_CC.into(),
                ],
            },
            video: MediaCapabilities {
                codecs: Registered::sdp_codecs(MediaKind::Video),
                extensions: vec![
                    uri::MID.into(),
                    uri::ABS_SEND_TIME.into(),
                    uri::TRANSPORT_CC.into(),
                    uri::RTP_STREAM_ID.into(),
                    uri::REPAIRED_RTP_STREAM_ID.into(),
                ],
            },
            data_channel: Some(DataChannelCapabilities::default()),
            receive_simulcast: false,
        }
    }

    pub(super) fn media(&self, kind: MediaKind) -> &MediaCapabilities {
        match kind {
            MediaKind::Audio => &self.audio,
            _ => &self.video,
        }
    }
}

/// This side's transport: ICE credentials and candidates, DTLS fingerprint.
/// With BUNDLE it is the same for every m-line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportParams {
    /// `a=ice-ufrag`.
    pub ice_ufrag: String,
    /// `a=ice-pwd`.
    pub ice_pwd: String,
    /// `a=ice-options` (`trickle`).
    pub ice_options: Vec<String>,
    /// Candidates gathered so far (written into the first bundled m-line).
    pub candidates: Vec<Candidate>,
    /// Gathering is complete: `a=end-of-candidates`.
    pub end_of_candidates: bool,
    /// Our certificate's fingerprints.
    pub fingerprints: Vec<Fingerprint>,
    /// The role we take when answering an `actpass` offer for the first
    /// time: `Active` (DTLS client, as browsers do) or `Passive`.
    pub answer_setup: Setup,
}

impl TransportParams {
    /// Credentials and one fingerprint; trickle; answers `active`.
    pub fn new(ice_ufrag: &str, ice_pwd: &str, fingerprint: Fingerprint) -> TransportParams {
        TransportParams {
            ice_ufrag: ice_ufrag.to_string(),
            ice_pwd: ice_pwd.to_string(),
            ice_options: vec!["trickle".into()],
            candidates: Vec::new(),
            end_of_candidates: false,
            fingerprints: vec![fingerprint],
            answer_setup: Setup::Active,
        }
    }
}

/// A local track on a transceiver: its ids and SSRCs (RFC 8830 msid, RFC
/// 5576 ssrc attributes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSender {
    /// The MediaStream id.
    pub stream_id: String,
    /// The track id.
    pub track_id: String,
    /// The media SSRC.
    pub ssrc: u32,
    /// The RTX SSRC (`a=ssrc-group:FID media rtx`).
    pub rtx_ssrc: Option<u32>,
    /// The RTCP CNAME.
    pub cname: String,
    /// Simulcast (RFC 8853): the RTP stream ids of the layers this track
    /// sends, lowest first; an offer lists them as `a=rid:… send` and
    /// `a=simulcast:send`. Empty: one stream, no simulcast.
    pub rids: Vec<String>,
}

/// A transceiver (JSEP §3.4.1): one m-line's worth of sending and
/// receiving one kind of media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transceiver {
    /// Audio or video.
    pub kind: MediaKind,
    /// What we want to do; we send only with a [`LocalSender`].
    pub direction: Direction,
    /// The track we send, if any.
    pub sender: Option<LocalSender>,
    /// The m-line's mid, once it has one.
    pub mid: Option<String>,
    /// Stopped: its m-line is rejected (port 0) from the next offer on.
    pub stopped: bool,
}

/// An index into the session's transceivers.
pub type TransceiverId = usize;

/// A codec both sides agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedCodec {
    /// The payload type (the offerer's).
    pub payload_type: u8,
    /// The encoding name as the offer wrote it.
    pub name: String,
    /// The clock rate.
    pub clock_rate: u32,
    /// The channels.
    pub channels: Option<u16>,
    /// The remote side's fmtp: what it can receive (honour it when sending).
    pub remote_fmtp: Option<String>,
    /// Our fmtp.
    pub local_fmtp: Option<String>,
    /// Feedback both sides listed.
    pub feedback: Vec<Feedback>,
    /// The RTX payload type paired by `apt=` on both sides.
    pub rtx_payload_type: Option<u8>,
}

/// The SCTP parameters of a negotiated data-channel m-line (RFC 8841).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SctpParams {
    /// Our `a=sctp-port`.
    pub local_port: u16,
    /// The remote `a=sctp-port`.
    pub remote_port: u16,
    /// The remote `a=max-message-size`: the largest message we may send
    /// (RFC 8841 §6.1: 64 KiB when absent, 0 = unlimited).
    pub remote_max_message_size: u64,
}

/// What one m-line agreed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedMedia {
    /// The m-line's index.
    pub index: usize,
    /// The mid.
    pub mid: Option<String>,
    /// The kind (`None` for an m-line rtclab does not know).
    pub kind: Option<MediaKind>,
    /// Rejected or stopped (port 0 in the offer or the answer).
    pub rejected: bool,
    /// Our direction: whether we send and whether we receive.
    pub direction: Direction,
    /// The codecs, in the answer's order (the first is preferred). RTX
    /// codecs appear as [`NegotiatedCodec::rtx_payload_type`].
    pub codecs: Vec<NegotiatedCodec>,
    /// Header extensions both sides use: `(id, uri)`, with the offer's ids.
    pub extensions: Vec<(u16, String)>,
    /// The remote's media SSRCs (`a=ssrc`), RTX ones excluded.
    pub remote_ssrcs: Vec<u32>,
    /// The remote's `(media, rtx)` SSRC pairs (`a=ssrc-group:FID`).
    pub remote_rtx_ssrcs: Vec<(u32, u32)>,
    /// The remote's CNAME.
    pub remote_cname: Option<String>,
    /// The remote's `a=msid`.
    pub remote_msid: Option<Msid>,
    /// The remote's `a=rid` lines.
    pub remote_rids: Vec<Rid>,
    /// The remote's `a=simulcast`.
    pub remote_simulcast: Option<Simulcast>,
    /// Simulcast we receive (RFC 8853): the rids of our `a=simulcast:recv`
    /// that the remote's `a=simulcast:send` also lists, in our order (the
    /// order the peer listed its layers in). Empty without simulcast.
    pub receive_rids: Vec<String>,
    /// Simulcast we send (RFC 8853 §5.2): the rids of our
    /// `a=simulcast:send` that the remote's `a=simulcast:recv` also lists,
    /// in our order. Empty: we send one stream, without a rid.
    pub send_rids: Vec<String>,
    /// Both sides agreed to reduced-size RTCP (RFC 5506).
    pub rtcp_rsize: bool,
    /// For a data-channel m-line.
    pub sctp: Option<SctpParams>,
}

/// What an offer/answer pair agreed, from our point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// One entry per m-line, in order.
    pub media: Vec<NegotiatedMedia>,
    /// The mids of the BUNDLE group (the first is the tagged one).
    pub bundle: Vec<String>,
    /// Our DTLS role: the answer's `a=setup` decides (RFC 8842 §5.3).
    pub dtls_role: DtlsRole,
    /// The remote `a=ice-ufrag`.
    pub remote_ice_ufrag: String,
    /// The remote `a=ice-pwd`.
    pub remote_ice_pwd: String,
    /// The remote is ICE-lite.
    pub remote_ice_lite: bool,
    /// The remote's candidates in the description (trickled ones come later).
    pub remote_candidates: Vec<Candidate>,
    /// The remote wrote `a=end-of-candidates`.
    pub remote_end_of_candidates: bool,
    /// The remote fingerprints that must match its DTLS certificate.
    pub remote_fingerprints: Vec<Fingerprint>,
}

impl Negotiated {
    /// The m-line with `mid`.
    pub fn by_mid(&self, mid: &str) -> Option<&NegotiatedMedia> {
        self.media.iter().find(|m| m.mid.as_deref() == Some(mid))
    }
}
