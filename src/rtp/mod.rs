//! # RTP and RTCP: media on the wire
//!
//! RTP (RFC 3550) carries real-time media: each packet holds a piece of an encoded
//! audio or video frame plus what a receiver needs to play it back — a sequence
//! number to put packets in order and spot losses, a timestamp in the media clock
//! to place the frame in time, the SSRC naming the stream, and a marker bit that
//! ends a video frame. RTCP, its companion, carries the feedback: sender and
//! receiver reports (loss, jitter, round-trip time), names (SDES), goodbyes, and
//! the WebRTC feedback messages — NACK asks for a retransmission, PLI/FIR for a
//! keyframe, REMB and transport-wide CC feed the sender's bandwidth estimate.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |            contributing source (CSRC) identifiers             |
//! |                    (CC of them, 4 bytes each)                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  extension profile (0xBEDE)   |    length in 32-bit words     |  if X
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  ID   |  L-1  |     data ...  |  ID   |  L-1  |  data ...     |  RFC 8285
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         payload ...                           |
//! |                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                               | padding ...   | padding count |  if P
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! ## What is here
//!
//! - [`packet`]: the RTP fixed header (RFC 3550 §5.1), CSRCs, padding, as a
//!   checked zero-copy view ([`RtpPacket`]), a mutable one that rewrites
//!   SSRC, sequence number, timestamp and extension ids in place
//!   ([`RtpPacketMut`], what a forwarder needs), an owned header
//!   ([`RtpHeader`]) and an allocation-free writer ([`emit_rtp_packet`]).
//! - [`ext`]: header extensions, one-byte and two-byte forms (RFC 8285 §4.2,
//!   §4.3), and the choice between them when `extmap-allow-mixed` is negotiated
//!   (§4.1.1, §6).
//! - [`rtcp`]: RTCP packets (RFC 3550 §6.4–6.7: SR, RR, SDES, BYE, APP; RFC 4585
//!   §6.2.1 generic NACK, §6.3.1 PLI; RFC 5104 §4.3.1 FIR; REMB,
//!   draft-alvestrand-rmcat-remb-03 §2.2), compound packets (§6.1) and
//!   reduced-size RTCP (RFC 5506 §3.4.2); other types come back as `Unknown`.
//! - [`twcc`]: transport-wide CC feedback
//!   (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1) and a recorder
//!   that builds it from arrival times on the receiving side.
//! - [`bwe`]: send-side bandwidth estimation (GCC, draft-ietf-rmcat-gcc-02:
//!   trendline delay detector, AIMD, loss-based controller, probing) over
//!   transport-wide CC feedback, a leaky-bucket pacer, and a receive-side
//!   estimator that sends REMB.
//! - [`payload`]: the [`Packetizer`] / [`Depacketizer`] traits; [`vp8`] (RFC 7741
//!   §4.2 descriptor with 7/15-bit picture id, §4.3 keyframe bit), [`h264`]
//!   (RFC 6184 §5.6 single NAL, §5.7.1 STAP-A, §5.8 FU-A, packetization-mode 1,
//!   Annex-B in and out), [`opus`] (RFC 7587 §4.2), [`vp9`] (RFC 9628 §4.2,
//!   one spatial layer sent; the whole descriptor read in place by
//!   [`vp9::Vp9Header`]: layer indices, P_DIFFs, scalability structure) and
//!   [`av1`] (the AOMedia AV1 RTP payload format v1.0 §4.4–§5: aggregation
//!   header, OBU elements, fragmentation; temporal units in and out in the
//!   low-overhead format). Every packetizer keeps each payload within the MTU
//!   budget it is given.
//! - [`codec`]: the codec registry — each codec's SDP name, clock rate, fmtp,
//!   feedback, payload types, RTX, packetizer and depacketizer; what
//!   `sdp::Capabilities::webrtc` offers and `peer` sends with.
//! - [`dd`]: the Dependency Descriptor header extension (AV1 RTP spec
//!   Appendix A): frame numbers, templates, decode targets and chains, read
//!   against the last template structure and written back (for forwarders).
//! - [`jitter`]: frame assembly — orders packets, detects gaps, emits frames by
//!   marker bit / timestamp change, drops to the next keyframe after a loss and
//!   says when a keyframe must be requested.
//! - [`nack`]: loss recovery — a NACK generator for the receiver, a bounded send
//!   history and RTX (RFC 4588 §4, the OSN in the first two payload bytes) for
//!   the sender.
//! - [`stream`]: one stream's state, [`stream::SendStream`] (sequence
//!   numbers, RTX history and retransmission, SR counts) and
//!   [`stream::ReceiveStream`] (RTX decoding, loss and jitter, NACKs, frame
//!   assembly or RTP mode, PLI): what both [`session`] and
//!   [`PeerConnection`](crate::peer::PeerConnection) are built from.
//! - [`session`]: one stream's sender and receiver as sans-IO machines —
//!   packetizer, SRTP/SRTCP, NACK/RTX, PLI, SR/RR and frame assembly wired
//!   together (`tests/rtp_sim.rs` runs them through a lossy `sim` network).
//! - [`stats`]: receiver-report statistics (RFC 3550 A.3 loss fraction and
//!   cumulative loss, A.8 interarrival jitter) and the RTT from LSR/DLSR
//!   (§6.4.1).
//! - [`ivf`]: the IVF file format for VP8/VP9/AV1 clips (reader, and
//!   [`ivf::IvfWriter`] for frames with their timestamps); [`ogg`]: Ogg pages
//!   (RFC 3533) carrying Opus (RFC 7845); [`h264::AnnexBReader`] and
//!   [`h264::AnnexBWriter`] for H.264 elementary streams (access units).
//! - [`crate::speed::rtp`]: the figures of `rtclab speed rtp`;
//!   [`crate::fuzzing::rtp`]: the harnesses of the `fuzz/` targets.
//! - [`seq`]: sequence-number and timestamp arithmetic modulo 2^16 / 2^32 and
//!   their extension to 64 bits (RFC 3550 A.1).
//!
//! ## A frame there and back
//!
//! ```
//! use rtclab::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};
//! use rtclab::rtp::{FrameAssembler, Packetizer, RtpHeader, RtpPacket};
//!
//! // Sender: cut a (key)frame into payloads of at most 1200 bytes, add headers.
//! let frame = vec![0x10; 3000]; // first byte's low bit 0: a VP8 keyframe
//! let mut payloads = Vec::new();
//! Vp8Packetizer::new(0).packetize(&frame, 1200, &mut payloads)?;
//! let mut packets = Vec::new();
//! for (i, p) in payloads.iter().enumerate() {
//!     let header = RtpHeader {
//!         marker: i + 1 == payloads.len(), // the last packet of the frame
//!         payload_type: 96,
//!         sequence_number: 65535u16.wrapping_add(i as u16), // wraps to 0
//!         timestamp: 90_000,
//!         ssrc: 0x1234,
//!         ..Default::default()
//!     };
//!     let mut pkt = Vec::new();
//!     header.emit_packet(p, 0, &mut pkt)?;
//!     packets.push(pkt);
//! }
//! // Receiver: check each packet, hand it to the assembler in any order.
//! let mut assembler = FrameAssembler::new(Vp8Depacketizer, 256);
//! for pkt in packets.iter().rev() {
//!     assembler.insert_packet(&RtpPacket::new_checked(pkt)?);
//! }
//! assert_eq!(assembler.pop_frame().map(|f| f.data), Some(frame));
//! # Ok::<(), rtclab::rtp::Error>(())
//! ```
//!
//! ## What is left out
//!
//! RTCP XR (RFC 3611) and SRTCP framing (in `srtp`) are not parsed here; RTP
//! translators and mixers (the CSRC list is carried, not acted on), header
//! extension encryption (RFC 6904), and the RTP/AVP profile's non-WebRTC payload
//! formats; VP9 and AV1 spatial/temporal layering on send (the VP9 descriptor
//! fields and the dependency descriptor are parsed and written, but nothing
//! sends layers); H.264 interleaved mode (STAP-B, MTAP, FU-B). The RTCP transmission interval (RFC 3550 §6.3) and the bandwidth
//! estimator that consumes transport-cc feedback (Google congestion control)
//! belong to the caller; the frame assembler does not time playout — the
//! caller decides when a gap is given up ([`FrameAssembler::give_up`], or
//! [`FrameAssembler::give_up_if_stalled`] with its clock).

pub mod av1;
pub mod bwe;
pub mod codec;
pub mod dd;
pub mod ext;
pub mod h264;
pub mod ivf;
pub mod jitter;
pub mod nack;
pub mod ogg;
pub mod opus;
pub mod packet;
pub mod payload;
pub mod rtcp;
pub mod seq;
pub mod session;
pub mod stats;
pub mod stream;
pub mod twcc;
pub mod vp8;
pub mod vp9;

pub use ext::{ExtensionForm, Extensions};
pub use jitter::{Frame, FrameAssembler};
pub use packet::{HeaderFields, RtpHeader, RtpPacket, RtpPacketMut, emit_rtp_packet};
pub use payload::{Depacketizer, Packetizer, Payloads};
pub use rtcp::{RtcpIter, RtcpPacket};
pub use seq::{SeqNo, SeqUnwrapper, TimestampUnwrapper};

use std::fmt;

/// What went wrong parsing or writing RTP, RTCP or a payload format.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before a field: `what` needed `needed` bytes, `got` were left.
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// The version field was not 2.
    BadVersion(u8),
    /// The padding count is zero or longer than the packet body.
    BadPadding {
        /// The padding count from the last byte.
        count: u8,
        /// Bytes available for payload plus padding.
        available: usize,
    },
    /// A header extension element is malformed.
    BadExtension(&'static str),
    /// An RTCP packet is malformed.
    BadRtcp(&'static str),
    /// A payload (VP8, H.264, Opus) is malformed.
    BadPayload(&'static str),
    /// API misuse: a value cannot be written (e.g. more than 15 CSRCs, an
    /// extension id out of range, an MTU too small to make progress).
    Invalid(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, needed, got } => {
                write!(f, "{what} truncated: needed {needed} bytes, got {got}")
            }
            Error::BadVersion(v) => write!(f, "RTP/RTCP version {v}, expected 2"),
            Error::BadPadding { count, available } => {
                write!(
                    f,
                    "padding count {count} invalid with {available} bytes after the header"
                )
            }
            Error::BadExtension(m) => write!(f, "bad RTP header extension: {m}"),
            Error::BadRtcp(m) => write!(f, "bad RTCP packet: {m}"),
            Error::BadPayload(m) => write!(f, "bad RTP payload: {m}"),
            Error::Invalid(m) => write!(f, "invalid use: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A shorthand for the `Truncated` error.
pub(crate) fn truncated(what: &'static str, needed: usize, got: usize) -> Error {
    Error::Truncated { what, needed, got }
}

/// A bounds-checked big-endian reader over a byte slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0, what }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.remaining() < n {
            return Err(truncated(self.what, self.pos + n, self.buf.len()));
        }
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(b)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.bytes(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Result<u32, Error> {
        let b = self.bytes(3)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}
