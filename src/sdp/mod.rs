//! SDP: the Session Description Protocol (RFC 8866) and the offer/answer
//! rules WebRTC builds on it (RFC 3264, JSEP RFC 8829).
//!
//! (The full module doc comes with the offer/answer layer.)

pub mod attribute;
pub mod codec;
pub mod description;
pub mod error;
pub mod negotiate;

pub use attribute::{
    Attribute, Direction, Extmap, Fingerprint, Fmtp, Group, Msid, MsidSemantic, Rid, RidDirection,
    Rtcp, RtcpFb, RtpMap, Setup, Simulcast, SimulcastId, SsrcAttribute, SsrcGroup,
};
pub use codec::{Codec, Feedback, H264Profile, ProfileLevelId};
pub use description::{
    Bandwidth, Connection, MediaDescription, Origin, SessionDescription, Timing,
};
pub use error::SdpError;
pub use negotiate::{
    Capabilities, DataChannelCapabilities, DtlsRole, LocalSender, MediaCapabilities, MediaKind,
    Negotiated, NegotiatedCodec, NegotiatedMedia, NegotiationError, SctpParams, Session,
    Transceiver, TransceiverId, TransportParams, negotiate,
};

/// The most bytes a description may have (a browser's offer with a few
/// tracks is 5–15 KiB; this allows hundreds of tracks).
pub const MAX_SDP_LEN: usize = 1 << 20;
/// The most lines in a description.
pub const MAX_LINES: usize = 20_000;
/// The most bytes in one line.
pub const MAX_LINE_LEN: usize = 16 * 1024;
/// The most media sections.
pub const MAX_MEDIA: usize = 512;
/// The most attributes at the session level or in one media section.
pub const MAX_ATTRIBUTES: usize = 4096;
/// The most items in one list (formats of an `m=` line, mids of a group,
/// SSRCs of a group, tokens of `ice-options`, `e=`/`p=`/`b=`/`c=`/`t=`/`r=`
/// lines).
pub const MAX_LIST: usize = 1024;

#[cfg(test)]
mod tests;
