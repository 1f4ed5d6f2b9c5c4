//! A small `getStats()`: what [`PeerConnection::stats`](super::PeerConnection::stats)
//! returns, shaped after the W3C WebRTC statistics identifiers
//! (`inbound-rtp`, `outbound-rtp`, `transport`, `data-channel`).
//!
//! Counting rules, where the W3C text leaves a choice:
//!
//! - `bytes_*` count RTP payload bytes, `header_bytes_*` the RTP header
//!   (with extensions and padding), as `bytesSent`/`headerBytesSent` do.
//! - `packets_received` and `packets_lost` are the RFC 3550 A.3 figures of
//!   the media SSRC as it arrived from the network: a packet recovered from
//!   the RTX stream is counted in `rtx_packets_received`, not here, so
//!   `packets_lost` is the loss the network caused and the RR carries.
//! - Retransmissions (RFC 4588) are counted apart from originals on both
//!   sides (`retransmitted_*` on the sender).

use std::net::SocketAddr;
use std::time::Duration;

use crate::ice::Candidate;
use crate::sdp::MediaKind;

/// W3C `RTCInboundRtpStreamStats`: one m-line the peer sends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRtpStats {
    /// The m-line's mid.
    pub mid: String,
    /// The simulcast layer's rid (RFC 8852), if the m-line receives
    /// simulcast (W3C `RTCInboundRtpStreamStats.rid`).
    pub rid: Option<String>,
    /// Audio or video.
    pub kind: MediaKind,
    /// The media SSRC, once known.
    pub ssrc: Option<u32>,
    /// The encoding name of the last payload type received (`VP8`, `H264`, `opus`).
    pub codec: Option<String>,
    /// Packets received on the media SSRC (RFC 3550 A.3, duplicates included).
    pub packets_received: u64,
    /// Payload bytes of those packets.
    pub bytes_received: u64,
    /// RTP header bytes of those packets.
    pub header_bytes_received: u64,
    /// RFC 3550 A.3 cumulative loss: expected − received (negative with duplicates).
    pub packets_lost: i64,
    /// RFC 3550 A.8 interarrival jitter.
    pub jitter: Duration,
    /// RTX packets received and turned back into originals.
    pub rtx_packets_received: u64,
    /// Whole frames delivered to the application (`framesReceived`;
    /// each is complete, ready for the decoder).
    pub frames_received: u64,
    /// Of those, keyframes.
    pub keyframes_received: u64,
    /// NACK packets sent for this stream (`nackCount`).
    pub nack_count: u64,
    /// PLIs sent for this stream (`pliCount`).
    pub pli_count: u64,
    /// Sender reports received for this stream.
    pub sender_reports_received: u64,
}

/// W3C `RTCOutboundRtpStreamStats` (with the `remote-inbound-rtp` figures
/// the peer's reports carry): one of our tracks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRtpStats {
    /// The track.
    pub track: super::TrackId,
    /// Its m-line's mid, once negotiated.
    pub mid: Option<String>,
    /// Audio or video.
    pub kind: MediaKind,
    /// The media SSRC.
    pub ssrc: u32,
    /// The RTX SSRC (video).
    pub rtx_ssrc: Option<u32>,
    /// The encoding name sent (`VP8`, `H264`, `opus`), once negotiated.
    pub codec: Option<String>,
    /// Original RTP packets sent.
    pub packets_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// Their RTP header bytes.
    pub header_bytes_sent: u64,
    /// RTX packets sent in answer to NACKs (`retransmittedPacketsSent`).
    pub retransmitted_packets_sent: u64,
    /// Their payload bytes, OSN included (`retransmittedBytesSent`).
    pub retransmitted_bytes_sent: u64,
    /// Frames sent.
    pub frames_sent: u64,
    /// NACK packets received for this stream (`nackCount`).
    pub nack_count: u64,
    /// PLIs received (`pliCount`).
    pub pli_count: u64,
    /// FIRs received (`firCount`).
    pub fir_count: u64,
    /// Sender reports sent.
    pub sender_reports_sent: u64,
    /// Report blocks about this stream received (RR or SR).
    pub reports_received: u64,
    /// The last round-trip time computed from a report block's LSR/DLSR
    /// (RFC 3550 §6.4.1).
    pub round_trip_time: Option<Duration>,
    /// The peer's last `fraction lost` for this stream, out of 256.
    pub fraction_lost: u8,
    /// The peer's cumulative loss count for this stream.
    pub remote_packets_lost: i64,
}

/// W3C `RTCTransportStats`: the one bundled 5-tuple.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TransportStats {
    /// Datagrams handed to the connection (every kind).
    pub packets_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
    /// Datagrams the connection gave out to send.
    pub packets_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// RTCP compound packets with a report (SR/RR) sent.
    pub rtcp_reports_sent: u64,
    /// RTCP packets received (any kind, after SRTCP).
    pub rtcp_packets_received: u64,
    /// The selected candidate pair (local, remote), while connected.
    pub selected_candidate_pair: Option<(Candidate, Candidate)>,
    /// The remote address of that pair.
    pub remote_address: Option<SocketAddr>,
    /// W3C `availableOutgoingBitrate`: the send-side bandwidth estimate in
    /// bit/s, once transport-cc feedback about our packets came back.
    pub available_outgoing_bitrate: Option<u64>,
}

/// W3C `RTCDataChannelStats`, summed over every channel, plus the
/// `RTCPeerConnectionStats` channel counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataChannelStats {
    /// Channels that reached `open` (`dataChannelsOpened`).
    pub channels_opened: u64,
    /// Channels that reached `closed` (`dataChannelsClosed`).
    pub channels_closed: u64,
    /// Messages sent (accepted by `send_text` / `send_binary`).
    pub messages_sent: u64,
    /// Their bytes.
    pub bytes_sent: u64,
    /// Messages received.
    pub messages_received: u64,
    /// Their bytes.
    pub bytes_received: u64,
}

/// Everything [`PeerConnection::stats`](super::PeerConnection::stats) reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatsReport {
    /// One entry per m-line the peer sends on.
    pub inbound: Vec<InboundRtpStats>,
    /// One entry per track of ours (removed ones included).
    pub outbound: Vec<OutboundRtpStats>,
    /// The transport.
    pub transport: TransportStats,
    /// Data channels.
    pub data_channels: DataChannelStats,
}

impl StatsReport {
    /// The inbound stream of `mid`.
    pub fn inbound(&self, mid: &str) -> Option<&InboundRtpStats> {
        self.inbound.iter().find(|s| s.mid == mid)
    }

    /// The outbound stream of `track`.
    pub fn outbound(&self, track: super::TrackId) -> Option<&OutboundRtpStats> {
        self.outbound.iter().find(|s| s.track == track)
    }
}
