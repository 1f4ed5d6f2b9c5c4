//! SDP: the Session Description Protocol (RFC 8866) and the offer/answer
//! rules WebRTC builds on it (RFC 3264, JSEP RFC 8829, BUNDLE RFC 8843,
//! DTLS roles RFC 8842).
//!
//! Before two peers can exchange a single packet they must agree on what
//! they will send (codecs, payload types, header extensions, data channels)
//! and how to reach and authenticate each other (ICE credentials and
//! candidates, the DTLS certificate fingerprint). One side writes an
//! **offer**, a text description of all of it; the other answers with the
//! subset it accepts; the signaling channel (not SDP) carries both. Each
//! `m=` line is one *media section*: one transceiver's audio or video, or
//! the data channels.
//!
//! A Chromium offer, trimmed, with what each line is for:
//!
//! ```text
//! v=0                                       version, always 0
//! o=- 694047503375889831 2 IN IP4 127.0.0.1 session id, version (bumped per change)
//! s=-                                       no session name
//! t=0 0                                     unbounded time
//! a=group:BUNDLE 0 1 2                      all three m-lines share one transport (RFC 8843)
//! a=msid-semantic: WMS 3ef6…                stream ids (legacy)
//! m=audio 38176 UDP/TLS/RTP/SAVPF 111 63 9  kind, default port, profile, payload types
//! c=IN IP4 127.0.0.1                        default address (the first candidate's)
//! a=candidate:3178603626 1 udp 2122260223 127.0.0.1 38176 typ host …  ICE (RFC 8839)
//! a=ice-ufrag:oGJo                          ICE username fragment …
//! a=ice-pwd:r94agy6EbgYU+wMDYRdIt8dA        … and password: checks are signed with it
//! a=ice-options:trickle                     more candidates will follow (RFC 8838)
//! a=fingerprint:sha-256 D1:A3:…:DA:02       hash of the DTLS certificate (RFC 8122)
//! a=setup:actpass                           DTLS role: the answer picks (RFC 8842)
//! a=mid:0                                   media id: names this m-line in BUNDLE
//! a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid   header extension id 4 (RFC 8285)
//! a=sendrecv                                direction
//! a=msid:3ef6… 7931…                        stream and track ids
//! a=rtcp-mux                                RTCP on the RTP port (required here)
//! a=rtpmap:111 opus/48000/2                 payload type 111 = Opus
//! a=rtcp-fb:111 transport-cc                RTCP feedback for it (RFC 4585)
//! a=fmtp:111 minptime=10;useinbandfec=1     its format parameters
//! a=ssrc:4272854257 cname:gbWZjVzdTWuf0JHo  the SSRC it will send from
//! m=video 41520 UDP/TLS/RTP/SAVPF 96 97 …
//! a=rtpmap:97 rtx/90000                     retransmissions of …
//! a=fmtp:97 apt=96                          … payload type 96 (RFC 4588)
//! a=ssrc-group:FID 31844878 3711763957      media SSRC and its RTX SSRC
//! m=application 34213 UDP/DTLS/SCTP webrtc-datachannel   data channels (RFC 8841)
//! a=sctp-port:5000                          SCTP port inside DTLS
//! a=max-message-size:262144                 largest message it can receive
//! ```
//!
//! ## What is here
//!
//! - [`SessionDescription`]: every line type of RFC 8866 §5 (`v o s i u e
//!   p c b t r z k a m`) in the order §5 requires, parsed from `&[u8]` and
//!   written with CRLF line endings (a bare LF is accepted, §5). The
//!   attributes WebRTC uses are typed ([`Attribute`]): ICE (RFC 8839 §5),
//!   `candidate` (through [`crate::ice::Candidate`]), `end-of-candidates`
//!   (RFC 8840), `fingerprint` (RFC 8122 §5), `setup` (RFC 4145 §4),
//!   `mid` and `group` (RFC 5888), `bundle-only` (RFC 8843 §6), `rtcp`
//!   (RFC 3605), `rtcp-mux` (RFC 5761), `rtcp-mux-only` (RFC 8858),
//!   `rtcp-rsize` (RFC 5506), `rtpmap` and `fmtp` (RFC 8866 §6.6, §6.15),
//!   `rtcp-fb` (RFC 4585 §4.2), `extmap` with direction and
//!   `extmap-allow-mixed` (RFC 8285), `msid` (RFC 8830), `msid-semantic`,
//!   `ssrc` and `ssrc-group` (RFC 5576), `rid` (RFC 8851), `simulcast`
//!   (RFC 8853), `sctp-port` and `max-message-size` (RFC 8841), and the
//!   four directions. Any other attribute is kept as written, in order. The
//!   browsers' descriptions in `tests/fixtures/sdp/` are written back byte
//!   for byte.
//! - Errors ([`Error`]) name the line number and what was expected
//!   (malformed optional attributes are skipped instead, see below).
//!   Hostile input is bounded: [`MAX_SDP_LEN`] bytes, [`MAX_LINES`] lines,
//!   [`MAX_MEDIA`] media sections, [`MAX_ATTRIBUTES`] attributes per level,
//!   [`MAX_LIST`] items per list.
//! - [`Session`]: offer/answer for a PeerConnection (JSEP §5). It writes
//!   offers ([`Session::create_offer`]) and answers
//!   ([`Session::create_answer`]) from [`Capabilities`], [`TransportParams`]
//!   and transceivers, and takes answers ([`Session::set_remote_answer`]);
//!   [`negotiate()`] reads what any offer/answer pair agreed
//!   ([`Negotiated`], one [`NegotiatedMedia`] per m-line). The rules:
//!   max-bundle (one transport, `a=group:BUNDLE`, RFC 8843); `rtcp-mux`
//!   required; DTLS roles (offers say `actpass`, answers `active` or
//!   `passive`, the answer decides the client, RFC 8842 §5; a renegotiation
//!   keeps the established roles); codecs as the intersection of the offer
//!   and our capabilities with the offerer's payload types (RFC 3264 §6.1),
//!   H.264 matched by profile and packetization mode with the level
//!   negotiated (RFC 6184 §8.2.2, [`ProfileLevelId`]), VP9/AV1 by profile;
//!   RTX paired by `apt=` (RFC 4588 §8.6); header extensions by URI with
//!   the offerer's ids; answer direction = the offer's reversed ∩ ours
//!   (RFC 3264 §6.1); m-lines we cannot use rejected with port 0; the data
//!   channel m-line (RFC 8841); renegotiation in either direction (existing
//!   m-lines keep place, mid and payload types, new ones go at the end or
//!   recycle an m-line whose rejection was negotiated, removed tracks go
//!   `recvonly`/`inactive`, stopped transceivers port 0; JSEP §5.2.2,
//!   §5.3.2).
//!
//! ## Parse liberally, write strictly
//!
//! Real stacks do not all write what the grammar says: pion 3.1 ends its
//! `a=rtcp-fb:96 nack ` lines with a space, and browsers take that offer.
//! JSEP (RFC 8829 §5.8) asks a parser to refuse a description with any line
//! that is not well formed, so that nothing ambiguous is misread; refusing
//! a whole call over an optional attribute is the worse failure, and
//! RFC 8866 §5.13 has a receiver ignore attribute lines it does not
//! understand. So, on reading:
//!
//! - Spaces, tabs and stray CRs at the end of an `a=` line are not part of
//!   its value. Other lines keep theirs (`s= ` is how RFC 8866 §5.3 writes
//!   "no name"); a CR or NUL inside any line is still refused.
//! - A malformed *optional* attribute (`candidate`, `rtcp-fb`, `fmtp`,
//!   `extmap`, `ssrc`, `ssrc-group`, `msid`, `rid`, `simulcast`, …, and
//!   names we do not know) is skipped, with a `tracing` debug event naming
//!   the line and what was expected. Without it the
//!   description still says how to connect; at worst a feature (a feedback
//!   type, a header extension, a candidate) is not negotiated.
//! - What JSEP stores and acts on for the transport and its security, or
//!   for what an m-line is, stays strict: the `v= o= s= t= m= c= b=` lines
//!   and the order of RFC 8866 §5, and the attributes `ice-ufrag`,
//!   `ice-pwd`, `ice-lite`, `fingerprint`, `setup`, `mid`, `group`,
//!   `bundle-only`, `rtcp-mux`, `rtcp-mux-only`, `rtpmap`, `sctp-port`,
//!   `max-message-size` and the directions ([`Attribute::is_mandatory`]).
//!   A malformed one refuses the description with the error that names
//!   its line, since reading it as absent would change who we connect to,
//!   how we authenticate them, or what a payload type means.
//!
//! A skipped line is not kept, so it is not written back; what we write is
//! the canonical form of what we kept, with no trailing whitespace, and
//! writing that again gives the same bytes.
//!
//! ## What is left out
//!
//! - Encryption keys in SDP (`a=crypto`, SDES): WebRTC keys SRTP from DTLS.
//! - Non-bundled transports: several accepted m-lines without BUNDLE are
//!   refused ([`NegotiationError::BundleRequired`]); we do not write
//!   `a=bundle-only` in offers (every bundled m-line carries the same
//!   transport attributes, as Chromium does), though we read it.
//! - The old data-channel form (`DTLS/SCTP 5000` with `a=sctpmap`): rejected.
//! - Simulcast negotiation: `a=rid` and `a=simulcast` are parsed and
//!   reported ([`NegotiatedMedia::remote_rids`]) but never answered.
//! - Rollback and glare (an offer received while ours is pending replaces
//!   ours), ICE restart detection (the caller changes the credentials in
//!   [`Session::transport_mut`]), `a=ice-lite` on our side.
//! - Charsets other than UTF-8 (`a=charset`).

pub mod attribute;
pub mod codec;
pub mod description;
pub mod error;
pub mod mid;
pub mod negotiate;

pub use attribute::{
    Attribute, Direction, Extmap, Fingerprint, Fmtp, Group, Msid, MsidSemantic, Rid, RidDirection,
    Rtcp, RtcpFb, RtpMap, Setup, Simulcast, SimulcastId, SsrcAttribute, SsrcGroup,
};
pub use codec::{Codec, Feedback, H264Profile, ProfileLevelId};
pub use description::{
    Bandwidth, Connection, MediaDescription, Origin, SessionDescription, Timing,
};
pub use error::Error;
pub use mid::Mid;
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
