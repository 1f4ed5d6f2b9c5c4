//! [`PeerConnection`]: the JSEP-like face over [`Transport`], [`sdp::Session`],
//! a [`datachannel::Connection`] and per-track RTP packetizing and frame
//! assembly, as one sans-IO [`Machine`]. See the [module doc](super).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::stats::{
    DataChannelStats, InboundRtpStats, OutboundRtpStats, StatsReport, TransportStats,
};
use super::transport::{self, Config as TransportConfig, DtlsRole, IceRole, Transport};
use crate::datachannel::{self, ChannelId, ChannelInit, ConnectionConfig, DataChannelError};
use crate::dtls::cert::Certificate;
use crate::ice::{Candidate, ConnectionState, Credentials};
use crate::machine::{Machine, Receive, Transmit};
use crate::rtp::ext::Extensions;
use crate::rtp::h264::{H264Depacketizer, H264Packetizer};
use crate::rtp::jitter::{Frame, FrameAssembler};
use crate::rtp::nack::{NackGenerator, RtxSender, decode_rtx};
use crate::rtp::opus::{OpusDepacketizer, OpusPacketizer};
use crate::rtp::payload::{Depacketizer, Packetizer};
use crate::rtp::rtcp::{
    Bye, Pli, ReceiverReport, ReportBlock, RtcpPacket, Sdes, SdesChunk, sdes_type,
};
use crate::rtp::stats::{ReceiverStats, SenderStats, ntp_compact, ntp_from_unix, rtt_from_report};
use crate::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};
use crate::rtp::{RtpError, RtpHeader, RtpPacket};
use crate::sdp::{
    self, Capabilities, Direction, LocalSender, MediaKind, Negotiated, NegotiationError, SdpError,
    Session, SessionDescription, TransceiverId, TransportParams,
};

/// Packets a receiver's frame assembler holds (a few large keyframes).
const ASSEMBLER_CAPACITY: usize = 1024;
/// Remote candidates kept before the remote description arrives.
const MAX_EARLY_CANDIDATES: usize = 64;
/// The most events kept for the application.
const MAX_EVENTS: usize = 8192;
/// Largest RTP payload (1200-byte datagrams minus RTP, extension and SRTP).
const MAX_RTP_PAYLOAD: usize = 1100;
/// Packets a video sender keeps for RTX.
const RTX_HISTORY: usize = 1024;
/// How long a receiver waits for a missing packet before it gives the
/// frame up and asks for a keyframe (NACKs are retried every tenth of it).
const MAX_WAIT: Duration = Duration::from_millis(1000);
/// RFC 3550 §6.4.1/§6.4.2: at most 31 report blocks fit one SR or RR.
const MAX_REPORT_BLOCKS: usize = 31;

/// The first retransmission timeout of every handshake a connection set-up
/// waits on: ICE checks, DTLS flights and the SCTP INIT and COOKIE-ECHO
/// (each still doubles on every retry). A WebRTC call waits on about fifteen
/// handshake packets in a row; with the RFC timers (ICE 500 ms, DTLS 1 s,
/// SCTP 1 s) or even 250–500 ms, two lost packets in a set-up cost close to
/// a second (`rtclab speed setup`: p95 930 ms at 5 % loss and 20 ms RTT).
/// 100 ms is RFC 6298's floor for a retransmission timer, the initial
/// value RFC 9147 §5.8.2 recommends for DTLS 1.3, and five round trips of
/// a 20 ms path; on a slower path it costs a few early duplicates of
/// small handshake packets, which every layer tolerates. `PeerConfig::transport`
/// and `PeerConfig::sctp` take other values.
pub const HANDSHAKE_RTO: Duration = Duration::from_millis(100);

/// How a [`PeerConnection`] is set up.
#[derive(Debug)]
pub struct Config {
    /// Our DTLS certificate (its fingerprint goes into our SDP).
    pub certificate: Certificate,
    /// Codecs, extensions and data-channel support we offer and accept.
    pub capabilities: Capabilities,
    /// Our local socket addresses (host candidates).
    pub host_candidates: Vec<SocketAddr>,
    /// A STUN server for a server-reflexive candidate.
    pub stun_server: Option<SocketAddr>,
    /// Transport tunables (ICE timers, SRTP, MTU); its role, certificate,
    /// candidates and remote fields are filled in by the connection.
    /// `None`: [`TransportConfig::new`] with ICE checks and DTLS flights
    /// retransmitted first after [`HANDSHAKE_RTO`].
    pub transport: Option<TransportConfig>,
    /// SCTP tunables (its ports come from SDP); the default starts its
    /// handshake timer at [`HANDSHAKE_RTO`].
    pub sctp: crate::sctp::Config,
    /// The `a=setup` we answer an `actpass` offer with: `Active` (we are
    /// the DTLS client, as Chromium does; the default) or `Passive`.
    pub answer_setup: sdp::Setup,
    /// The mean interval between our RTCP reports (SR/RR + SDES). RFC 3550
    /// §6.2 allows a "reduced minimum" below its 5 s for high-bandwidth
    /// sessions (360 s / session kbit/s) and RFC 8834 §5.1 asks WebRTC to
    /// use it; 1 s (the default) is what browsers send for video. Each
    /// interval is drawn from [0.5, 1.5] × this (RFC 3550 §6.3.1).
    pub rtcp_interval: Duration,
    /// The wall-clock time at the first instant the connection is given,
    /// for the NTP timestamps of sender reports (RFC 3550 §6.4.1). `None`:
    /// NTP time counts from the Unix epoch (round-trip times are still
    /// right; only lip sync against other clocks needs the real time).
    pub wall_clock: Option<SystemTime>,
    /// Our RTCP CNAME (RFC 3550 §6.5.1); `None`: a random one (RFC 7022 §5,
    /// short-term persistent).
    pub cname: Option<String>,
    /// Our `ice-ufrag` and `ice-pwd` (RFC 8839 §5.4: 4–256 and 22–256
    /// letters, digits, `+` or `/`); `None`: random ones from the RNG. Bad
    /// ones fail the first `create_offer` or `set_remote_description`.
    pub ice_credentials: Option<Credentials>,
}

impl Config {
    /// WebRTC defaults around a certificate and the local addresses.
    pub fn new(certificate: Certificate, host_candidates: Vec<SocketAddr>) -> Config {
        Config {
            certificate,
            capabilities: Capabilities::webrtc(),
            host_candidates,
            stun_server: None,
            transport: None,
            sctp: crate::sctp::Config {
                rto_initial: HANDSHAKE_RTO,
                ..crate::sctp::Config::default()
            },
            answer_setup: sdp::Setup::Active,
            rtcp_interval: Duration::from_secs(1),
            wall_clock: None,
            cname: None,
            ice_credentials: None,
        }
    }
}

/// The W3C `RTCSignalingState` (no provisional answers, no rollback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignalingState {
    /// No offer/answer exchange in progress.
    Stable,
    /// Our offer is set; waiting for the answer.
    HaveLocalOffer,
    /// The peer's offer is set; we owe an answer.
    HaveRemoteOffer,
    /// Closed.
    Closed,
}

/// The W3C `RTCPeerConnectionState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerConnectionState {
    /// Nothing started.
    New,
    /// ICE or DTLS is running.
    Connecting,
    /// DTLS is up: media and data flow.
    Connected,
    /// Consent was lost for a while (ICE `disconnected`).
    Disconnected,
    /// Failed for good (see [`Event::Error`]).
    Failed,
    /// Closed by [`PeerConnection::close`] or the peer.
    Closed,
}

/// A description and its type (the W3C `RTCSessionDescriptionInit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SdpType {
    /// An offer.
    Offer,
    /// An answer.
    Answer,
    /// Cancels the pending offer (ours or the peer's) and returns to
    /// `stable` (JSEP §4.1.10.2, W3C `rollback`); the text is ignored.
    Rollback,
}

/// Media counters over every track (a small `getStats()`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaStats {
    /// RTP packets sent (originals).
    pub rtp_sent: u64,
    /// RTX retransmissions sent in answer to NACKs.
    pub rtx_sent: u64,
    /// RTX packets received and turned back into originals.
    pub rtx_received: u64,
    /// NACK packets sent.
    pub nacks_sent: u64,
    /// PLIs sent.
    pub plis_sent: u64,
    /// Whole frames delivered.
    pub frames_received: u64,
}

/// A local track: the handle [`PeerConnection::add_track`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackId(pub usize);

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A local ICE candidate to signal (trickle, RFC 8838).
    LocalCandidate(Candidate),
    /// Gathering finished: signal end-of-candidates.
    GatheringComplete,
    /// `signalingstatechange`.
    SignalingState(SignalingState),
    /// `iceconnectionstatechange`.
    IceConnectionState(ConnectionState),
    /// `connectionstatechange`.
    ConnectionState(PeerConnectionState),
    /// `track`: the peer sends media on this m-line.
    Track {
        /// The m-line's mid.
        mid: String,
        /// Audio or video.
        kind: MediaKind,
    },
    /// The peer no longer sends on `mid` (it removed its track or the
    /// m-line was rejected in a renegotiation): the W3C track `ended`.
    TrackEnded {
        /// The m-line's mid.
        mid: String,
    },
    /// A whole encoded frame arrived on the receiver of `mid`.
    Frame {
        /// The m-line's mid.
        mid: String,
        /// The frame.
        frame: Frame,
    },
    /// The peer asked (PLI) for a keyframe on one of our tracks.
    KeyframeRequested(TrackId),
    /// A data-channel event (open, message, closing, closed, …).
    DataChannel(datachannel::Event),
    /// Something failed; with [`PeerConnectionState::Failed`] the
    /// connection is over.
    Error(Error),
}

/// Why a call was refused or the connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A description did not parse.
    Sdp(SdpError),
    /// Offer/answer rules were broken.
    Negotiation(NegotiationError),
    /// The transport failed (ICE, DTLS, fingerprint mismatch, SRTP).
    Transport(transport::Error),
    /// A data-channel call failed.
    DataChannel(DataChannelError),
    /// Packetizing failed.
    Rtp(RtpError),
    /// A candidate line did not parse.
    Candidate(String),
    /// The call does not fit the state (e.g. an answer without an offer).
    Misuse(&'static str),
    /// Closed.
    Closed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Sdp(e) => write!(f, "bad session description: {e}"),
            Error::Negotiation(e) => write!(f, "offer/answer: {e}"),
            Error::Transport(e) => write!(f, "transport: {e}"),
            Error::DataChannel(e) => write!(f, "data channel: {e}"),
            Error::Rtp(e) => write!(f, "rtp: {e}"),
            Error::Candidate(e) => write!(f, "bad candidate: {e}"),
            Error::Misuse(m) => write!(f, "misuse: {m}"),
            Error::Closed => f.write_str("the peer connection is closed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<SdpError> for Error {
    fn from(e: SdpError) -> Self {
        Error::Sdp(e)
    }
}
impl From<NegotiationError> for Error {
    fn from(e: NegotiationError) -> Self {
        Error::Negotiation(e)
    }
}
impl From<transport::Error> for Error {
    fn from(e: transport::Error) -> Self {
        Error::Transport(e)
    }
}
impl From<DataChannelError> for Error {
    fn from(e: DataChannelError) -> Self {
        Error::DataChannel(e)
    }
}
impl From<RtpError> for Error {
    fn from(e: RtpError) -> Self {
        Error::Rtp(e)
    }
}

/// The codec a track sends with ([`PeerConnection::add_track_with_codec`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrackCodec {
    /// VP8 video (RFC 7741).
    Vp8,
    /// H.264 video (RFC 6184), packetization-mode 1; frames are Annex-B
    /// access units (start codes before each NAL unit).
    H264,
    /// Opus audio (RFC 7587).
    Opus,
}

impl TrackCodec {
    /// The media kind.
    pub fn kind(self) -> MediaKind {
        match self {
            TrackCodec::Vp8 | TrackCodec::H264 => MediaKind::Video,
            TrackCodec::Opus => MediaKind::Audio,
        }
    }

    /// The SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            TrackCodec::Vp8 => "VP8",
            TrackCodec::H264 => "H264",
            TrackCodec::Opus => "opus",
        }
    }

    /// The codec a negotiated encoding name (and fmtp) stands for, if we
    /// can packetize it. H.264 only in packetization-mode 1 (RFC 6184 §6.3):
    /// mode 0 cannot carry NAL units above the MTU, mode 2 is interleaved.
    fn of(c: &sdp::NegotiatedCodec) -> Option<TrackCodec> {
        let name = c.name.as_str();
        if name.eq_ignore_ascii_case("VP8") {
            Some(TrackCodec::Vp8)
        } else if name.eq_ignore_ascii_case("opus") {
            Some(TrackCodec::Opus)
        } else if name.eq_ignore_ascii_case("H264") {
            let fmtp = c.remote_fmtp.as_deref().or(c.local_fmtp.as_deref());
            let mode = fmtp.and_then(|f| {
                f.split(';')
                    .filter_map(|kv| kv.trim().split_once('='))
                    .find(|(k, _)| k.eq_ignore_ascii_case("packetization-mode"))
                    .map(|(_, v)| v.trim())
            });
            (mode == Some("1")).then_some(TrackCodec::H264)
        } else {
            None
        }
    }

    fn depacketizer(self) -> AnyDepacketizer {
        match self {
            TrackCodec::Vp8 => AnyDepacketizer::Vp8(Vp8Depacketizer),
            TrackCodec::H264 => AnyDepacketizer::H264(H264Depacketizer::new()),
            TrackCodec::Opus => AnyDepacketizer::Opus(OpusDepacketizer),
        }
    }
}

/// The packetizers a sender can use.
#[derive(Debug)]
enum AnyPacketizer {
    Vp8(Vp8Packetizer),
    H264(H264Packetizer),
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
            AnyPacketizer::Opus(p) => p.packetize(frame, mtu, out),
        }
    }
}

/// The depacketizers a receiver can use.
#[derive(Debug, Clone)]
enum AnyDepacketizer {
    Vp8(Vp8Depacketizer),
    H264(H264Depacketizer),
    Opus(OpusDepacketizer),
}

impl Depacketizer for AnyDepacketizer {
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), RtpError> {
        match self {
            AnyDepacketizer::Vp8(d) => d.depacketize(payload, frame),
            AnyDepacketizer::H264(d) => d.depacketize(payload, frame),
            AnyDepacketizer::Opus(d) => d.depacketize(payload, frame),
        }
    }
    fn reset(&mut self) {
        match self {
            AnyDepacketizer::Vp8(d) => d.reset(),
            AnyDepacketizer::H264(d) => d.reset(),
            AnyDepacketizer::Opus(d) => d.reset(),
        }
    }
    fn is_frame_start(&self, payload: &[u8]) -> bool {
        match self {
            AnyDepacketizer::Vp8(d) => d.is_frame_start(payload),
            AnyDepacketizer::H264(d) => d.is_frame_start(payload),
            AnyDepacketizer::Opus(d) => d.is_frame_start(payload),
        }
    }
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        match self {
            AnyDepacketizer::Vp8(d) => d.is_keyframe(payload),
            AnyDepacketizer::H264(d) => d.is_keyframe(payload),
            AnyDepacketizer::Opus(d) => d.is_keyframe(payload),
        }
    }
    fn is_frame_end(&self, payload: &[u8], marker: bool) -> bool {
        match self {
            AnyDepacketizer::Vp8(d) => d.is_frame_end(payload, marker),
            AnyDepacketizer::H264(d) => d.is_frame_end(payload, marker),
            AnyDepacketizer::Opus(d) => d.is_frame_end(payload, marker),
        }
    }
}

/// One of our tracks.
#[derive(Debug)]
struct Sender {
    transceiver: TransceiverId,
    codec: TrackCodec,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    seq: u16,
    /// Set once negotiated and the codec has RTX (RFC 4588): the history.
    rtx: Option<RtxSender>,
    /// Set once negotiated: payload type, mid and the mid extension id.
    payload_type: Option<u8>,
    mid: Option<String>,
    mid_ext: Option<u8>,
    /// `remove_track` was called: nothing is sent any more.
    removed: bool,
    /// The media clock (90 kHz video, 48 kHz Opus).
    clock_rate: u32,
    packetizer: AnyPacketizer,
    /// SR packet and octet counts (RFC 3550 §6.4.1, wrapping).
    sr: SenderStats,
    /// The RTP timestamp of the last frame and when it went out (the SR's
    /// RTP time is extrapolated from it).
    last_frame: Option<(u32, Instant)>,
    /// RTP sent since our last report (RFC 3550 §6.4: then we send an SR).
    sent_since_report: bool,
    stats: OutboundRtpStats,
}

/// What a receiver counts (see [`InboundRtpStats`]).
#[derive(Debug, Default)]
struct InboundCounters {
    packets_received: u64,
    bytes_received: u64,
    header_bytes_received: u64,
    rtx_packets_received: u64,
    frames_received: u64,
    keyframes_received: u64,
    nack_count: u64,
    pli_count: u64,
    sender_reports_received: u64,
}

/// One m-line the peer sends on.
#[derive(Debug)]
struct Receiver {
    mid: String,
    kind: MediaKind,
    /// The SSRC media last came from (where a PLI goes).
    ssrc: Option<u32>,
    /// `(rtx payload type, media payload type)` pairs (`apt=`).
    rtx_types: Vec<(u8, u8)>,
    /// Video: NACKs for holes (RFC 4585 §6.2.1).
    nack: Option<NackGenerator>,
    payload_types: Vec<u8>,
    /// The payload types we can depacketize, with their codec and name.
    codecs: Vec<(u8, TrackCodec, String)>,
    /// The codec the assembler depacketizes now (the peer may switch
    /// among the negotiated payload types, RFC 3264 §5.1).
    current: Option<TrackCodec>,
    current_name: Option<String>,
    clock_rate: u32,
    assembler: FrameAssembler<AnyDepacketizer>,
    /// Reception statistics of the media SSRC (RFC 3550 A.3, A.8), for our
    /// report blocks; made when the SSRC is first seen.
    rtcp: Option<ReceiverStats>,
    counters: InboundCounters,
}

/// A WebRTC peer connection, sans-IO (see the [module doc](super)).
pub struct PeerConnection {
    rng: StdRng,
    session: Session,
    certificate: Option<Certificate>,
    transport_config: Option<TransportConfig>,
    host_candidates: Vec<SocketAddr>,
    stun_server: Option<SocketAddr>,
    sctp_config: crate::sctp::Config,
    transport: Option<Transport>,
    /// Remote candidates trickled before the remote description.
    early_candidates: Vec<Candidate>,
    early_end_of_candidates: bool,
    signaling: SignalingState,
    state: PeerConnectionState,
    /// The peer's offer, between set_remote_description and create_answer.
    remote_offer: Option<SessionDescription>,
    /// Our answer and what it agreed, between create_answer and
    /// set_local_description.
    pending_answer: Option<(String, Negotiated)>,
    /// Our offer text, between create_offer and set_local_description.
    pending_offer: Option<String>,
    negotiated: Option<Negotiated>,
    data: Option<datachannel::Connection>,
    data_started: bool,
    /// Channels asked for before SCTP exists, in handle order.
    pending_channels: Vec<ChannelInit>,
    next_channel: u64,
    senders: Vec<Sender>,
    receivers: Vec<Receiver>,
    ssrc_routes: HashMap<u32, usize>,
    remote_mid_ext: Option<u8>,
    /// The SSRC our RTCP feedback comes from.
    rtcp_ssrc: u32,
    /// Our CNAME (RFC 3550 §6.5.1).
    cname: String,
    rtcp_interval: Duration,
    /// When the next SR/RR compound is due (while connected).
    next_rtcp: Option<Instant>,
    /// The first instant we were given, and the wall clock then (for NTP).
    epoch: Option<Instant>,
    wall_clock: Option<SystemTime>,
    ice_credentials: Option<Credentials>,
    media_stats: MediaStats,
    transport_stats: TransportStats,
    dc_stats: DataChannelStats,
    payloads: Vec<Vec<u8>>,
    packet: Vec<u8>,
    sctp_out: Vec<u8>,
    events: VecDeque<Event>,
}

impl fmt::Debug for PeerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConnection")
            .field("signaling", &self.signaling)
            .field("state", &self.state)
            .field("senders", &self.senders.len())
            .field("receivers", &self.receivers.len())
            .finish_non_exhaustive()
    }
}

impl PeerConnection {
    /// A connection with nothing negotiated. `rng` seeds everything (ICE
    /// credentials, SSRCs, DTLS, SCTP).
    pub fn new(config: Config, mut rng: StdRng) -> PeerConnection {
        let fp = sdp::Fingerprint::from(&config.certificate.fingerprint());
        // Placeholder credentials: the transport draws the real ones when it
        // is made (with our ICE role, at the first offer or remote offer).
        let mut params = TransportParams::new("", "", fp);
        params.answer_setup = config.answer_setup;
        let session_id: u64 = rng.random();
        let rtcp_ssrc: u32 = rng.random();
        // RFC 7022 §5: a random CNAME of at least 96 bits, per connection
        // (made of draws already taken, so the RNG stream is unchanged).
        let cname = config
            .cname
            .unwrap_or_else(|| format!("{session_id:016x}{rtcp_ssrc:08x}"));
        let mut data_caps = config.capabilities.clone();
        if let Some(dc) = data_caps.data_channel.as_mut() {
            dc.max_message_size = config.sctp.max_message_size as u64;
        }
        PeerConnection {
            session: Session::new(data_caps, params, session_id),
            rng,
            certificate: Some(config.certificate),
            transport_config: config.transport,
            host_candidates: config.host_candidates,
            stun_server: config.stun_server,
            sctp_config: config.sctp,
            transport: None,
            early_candidates: Vec::new(),
            early_end_of_candidates: false,
            signaling: SignalingState::Stable,
            state: PeerConnectionState::New,
            remote_offer: None,
            pending_answer: None,
            pending_offer: None,
            negotiated: None,
            data: None,
            data_started: false,
            pending_channels: Vec::new(),
            next_channel: 0,
            senders: Vec::new(),
            receivers: Vec::new(),
            ssrc_routes: HashMap::new(),
            remote_mid_ext: None,
            rtcp_ssrc,
            cname,
            rtcp_interval: config.rtcp_interval,
            next_rtcp: None,
            epoch: None,
            wall_clock: config.wall_clock,
            ice_credentials: config.ice_credentials,
            media_stats: MediaStats::default(),
            transport_stats: TransportStats::default(),
            dc_stats: DataChannelStats::default(),
            payloads: Vec::new(),
            packet: Vec::with_capacity(1500),
            sctp_out: Vec::with_capacity(1500),
            events: VecDeque::new(),
        }
    }

    // ---- accessors ------------------------------------------------------

    /// Media counters.
    pub fn media_stats(&self) -> MediaStats {
        self.media_stats
    }

    /// The signaling state.
    pub fn signaling_state(&self) -> SignalingState {
        self.signaling
    }

    /// The connection state.
    pub fn connection_state(&self) -> PeerConnectionState {
        self.state
    }

    /// The transport, once made (at the first offer or remote offer).
    pub fn transport(&self) -> Option<&Transport> {
        self.transport.as_ref()
    }

    /// The data channels' SCTP connection, once negotiated.
    pub fn data_channels(&self) -> Option<&datachannel::Connection> {
        self.data.as_ref()
    }

    /// The result of the last complete offer/answer.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The mid our track was given, once in an offer or answer.
    pub fn track_mid(&self, track: TrackId) -> Option<&str> {
        let s = self.senders.get(track.0)?;
        self.session
            .transceivers()
            .get(s.transceiver)?
            .mid
            .as_deref()
    }

    /// Whether a datagram from `source` is ours (one socket, many peers).
    pub fn accepts(&self, datagram: &[u8], source: SocketAddr) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|t| t.accepts(datagram, source))
    }

    // ---- JSEP -----------------------------------------------------------

    /// `addTrack`: a sending transceiver of `kind` (VP8 for video, Opus for
    /// audio), signaled by the next offer or answer.
    pub fn add_track(&mut self, kind: MediaKind) -> Result<TrackId, Error> {
        match kind {
            MediaKind::Video => self.add_track_with_codec(TrackCodec::Vp8),
            MediaKind::Audio => self.add_track_with_codec(TrackCodec::Opus),
            MediaKind::Application => Err(Error::Misuse("a track is audio or video")),
        }
    }

    /// `addTrack` with the codec the track sends: VP8 or H.264 for video,
    /// Opus for audio. The m-line offers every codec of our capabilities
    /// (the peer may send us any); this track sends with `codec` if the
    /// offer/answer kept it ([`PeerConnection::send_frame`] fails if not).
    pub fn add_track_with_codec(&mut self, codec: TrackCodec) -> Result<TrackId, Error> {
        let kind = codec.kind();
        let packetizer = match codec {
            TrackCodec::Vp8 => AnyPacketizer::Vp8(Vp8Packetizer::new(self.rng.random())),
            TrackCodec::H264 => AnyPacketizer::H264(H264Packetizer::new()),
            TrackCodec::Opus => AnyPacketizer::Opus(OpusPacketizer),
        };
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        let ssrc: u32 = self.rng.random();
        let rtx_ssrc = (kind == MediaKind::Video).then(|| self.rng.random::<u32>());
        let n = self.senders.len();
        let sender = LocalSender {
            stream_id: format!("rtclab-stream-{n}"),
            track_id: format!("rtclab-track-{n}"),
            ssrc,
            rtx_ssrc,
            cname: self.cname.clone(),
        };
        // An m-line of the peer's offer without a sender of ours takes the
        // track when we answer (JSEP §5.3.1); else a new transceiver.
        let transceiver = self
            .session
            .add_transceiver(kind, Direction::SendRecv, Some(sender));
        self.senders.push(Sender {
            transceiver,
            codec,
            ssrc,
            rtx_ssrc,
            seq: self.rng.random(),
            rtx: None,
            payload_type: None,
            mid: None,
            mid_ext: None,
            removed: false,
            clock_rate: if kind == MediaKind::Audio {
                48_000
            } else {
                90_000
            },
            packetizer,
            sr: SenderStats::default(),
            last_frame: None,
            sent_since_report: false,
            stats: OutboundRtpStats {
                track: TrackId(n),
                mid: None,
                kind,
                ssrc,
                rtx_ssrc,
                codec: None,
                packets_sent: 0,
                bytes_sent: 0,
                header_bytes_sent: 0,
                retransmitted_packets_sent: 0,
                retransmitted_bytes_sent: 0,
                frames_sent: 0,
                nack_count: 0,
                pli_count: 0,
                fir_count: 0,
                sender_reports_sent: 0,
                reports_received: 0,
                round_trip_time: None,
                fraction_lost: 0,
                remote_packets_lost: 0,
            },
        });
        Ok(TrackId(n))
    }

    /// `removeTrack` (JSEP §4.1.8): the track stops sending at once; the
    /// next offer or answer signals it (its m-line goes from `sendrecv` to
    /// `recvonly`, or from `sendonly` to `inactive`, and keeps its port:
    /// only a stopped transceiver is rejected with port 0, JSEP §5.2.2),
    /// and the peer's receiver then ends ([`Event::TrackEnded`]). An RTCP
    /// BYE for its SSRCs goes out now (RFC 3550 §6.6).
    pub fn remove_track(&mut self, track: TrackId) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        let s = self
            .senders
            .get_mut(track.0)
            .ok_or(Error::Misuse("no such track"))?;
        if s.removed {
            return Ok(());
        }
        s.removed = true;
        s.payload_type = None;
        let transceiver = s.transceiver;
        let sources: Vec<u32> = [Some(s.ssrc), s.rtx_ssrc].into_iter().flatten().collect();
        let sent = s.stats.packets_sent > 0;
        self.session.remove_track(transceiver)?;
        if sent {
            self.send_bye(sources);
        }
        Ok(())
    }

    /// Drops the data-channel m-line: every channel is closed now (SCTP
    /// ABORT, [`datachannel::Event::Closed`] for each), and the next offer
    /// rejects the m-line (port 0, JSEP §5.2.2); the peer's channels close
    /// when it applies that (or at the ABORT, whichever comes first).
    /// Channels can be created again later: a new m-line and association.
    pub fn remove_data_channels(&mut self, now: Instant) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        self.session.remove_data_channel();
        self.pending_channels.clear();
        self.stop_data(now);
        Ok(())
    }

    /// Aborts SCTP and forgets the association (its channels close).
    fn stop_data(&mut self, now: Instant) {
        if let Some(d) = self.data.as_mut() {
            d.abort(now);
        }
        self.flush_sctp();
        self.data = None;
        self.data_started = false;
        // A new association numbers its handles from 0 again.
        self.next_channel = 0;
    }

    /// `createDataChannel`. Before SCTP exists the channel waits (and the
    /// next offer carries a data-channel m-line); it opens with
    /// [`datachannel::Event::Open`].
    pub fn create_data_channel(&mut self, init: ChannelInit) -> Result<ChannelId, Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        if let Some(d) = self.data.as_mut() {
            let id = d.create_channel(init)?;
            self.flush_sctp();
            return Ok(id);
        }
        if init.max_retransmits.is_some() && init.max_packet_life_time.is_some() {
            return Err(Error::DataChannel(DataChannelError::InvalidInit(
                "maxRetransmits and maxPacketLifeTime are mutually exclusive",
            )));
        }
        self.session.add_data_channel();
        self.pending_channels.push(init);
        let id = ChannelId(self.next_channel);
        self.next_channel += 1;
        Ok(id)
    }

    /// `createOffer`: our offer as SDP text (we become the ICE controlling
    /// side and offer `a=setup:actpass`).
    pub fn create_offer(&mut self, now: Instant) -> Result<String, Error> {
        match self.signaling {
            SignalingState::Stable | SignalingState::HaveLocalOffer => {}
            SignalingState::HaveRemoteOffer => {
                return Err(Error::Misuse("a remote offer is pending: answer it"));
            }
            SignalingState::Closed => return Err(Error::Closed),
        }
        self.ensure_transport(now, IceRole::Controlling)?;
        let sd = self.session.create_offer()?;
        let text = sd.to_string();
        self.pending_offer = Some(text.clone());
        Ok(text)
    }

    /// `createAnswer`: our answer to the remote offer as SDP text.
    pub fn create_answer(&mut self) -> Result<String, Error> {
        let offer = self
            .remote_offer
            .as_ref()
            .ok_or(Error::Misuse("no remote offer to answer"))?;
        let (sd, negotiated) = self.session.create_answer(offer)?;
        let text = sd.to_string();
        self.pending_answer = Some((text.clone(), negotiated));
        Ok(text)
    }

    /// `setLocalDescription` with the text [`PeerConnection::create_offer`]
    /// or [`PeerConnection::create_answer`] gave, or [`SdpType::Rollback`].
    pub fn set_local_description(
        &mut self,
        now: Instant,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        match kind {
            SdpType::Rollback => self.rollback(),
            SdpType::Offer => {
                if self.pending_offer.as_deref() != Some(sdp) {
                    return Err(Error::Misuse("not the offer create_offer made"));
                }
                self.set_signaling(SignalingState::HaveLocalOffer);
                Ok(())
            }
            SdpType::Answer => {
                let (text, negotiated) = self
                    .pending_answer
                    .take()
                    .ok_or(Error::Misuse("no answer was created"))?;
                if text != sdp {
                    self.pending_answer = Some((text, negotiated));
                    return Err(Error::Misuse("not the answer create_answer made"));
                }
                self.remote_offer = None;
                self.apply(now, negotiated)?;
                self.set_signaling(SignalingState::Stable);
                Ok(())
            }
        }
    }

    /// `setRemoteDescription`: the peer's offer (we become ICE controlled
    /// and answer `a=setup:active`, the DTLS client) or its answer to ours,
    /// or [`SdpType::Rollback`] of the peer's pending offer.
    ///
    /// Glare (both sides offered at once): an offer that arrives while ours
    /// is pending rolls ours back first (the W3C "implicit rollback" that
    /// the polite peer of perfect negotiation relies on); the impolite peer
    /// simply does not call this with the colliding offer. Tracks and
    /// channels of the rolled-back offer stay, for the next offer.
    pub fn set_remote_description(
        &mut self,
        now: Instant,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        if kind == SdpType::Rollback {
            return self.rollback();
        }
        let sd = SessionDescription::parse_str(sdp)?;
        match kind {
            SdpType::Rollback => self.rollback(),
            SdpType::Offer => {
                if self.signaling == SignalingState::HaveLocalOffer {
                    // W3C setRemoteDescription, offer in have-local-offer:
                    // implicit rollback of ours.
                    self.rollback()?;
                }
                self.ensure_transport(now, IceRole::Controlled)?;
                self.remote_offer = Some(sd);
                self.set_signaling(SignalingState::HaveRemoteOffer);
                Ok(())
            }
            SdpType::Answer => {
                if self.signaling != SignalingState::HaveLocalOffer {
                    return Err(Error::Misuse("an answer without our offer"));
                }
                let negotiated = self.session.set_remote_answer(&sd)?;
                self.pending_offer = None;
                self.apply(now, negotiated)?;
                self.set_signaling(SignalingState::Stable);
                Ok(())
            }
        }
    }

    /// JSEP §4.1.10.2 rollback: the pending offer (ours, or the peer's and
    /// our unapplied answer to it) is dropped, nothing it proposed is
    /// applied, and the state is `stable` again. Refused in `stable`.
    fn rollback(&mut self) -> Result<(), Error> {
        match self.signaling {
            SignalingState::HaveLocalOffer => {
                self.pending_offer = None;
            }
            SignalingState::HaveRemoteOffer => {
                self.remote_offer = None;
                self.pending_answer = None;
            }
            SignalingState::Stable => {
                return Err(Error::Misuse("nothing to roll back in the stable state"));
            }
            SignalingState::Closed => return Err(Error::Closed),
        }
        self.set_signaling(SignalingState::Stable);
        Ok(())
    }

    /// `addIceCandidate`: one trickled remote candidate (`candidate:…`,
    /// with or without the `a=` prefix). Kept until the remote description
    /// is set.
    pub fn add_ice_candidate(&mut self, now: Instant, candidate: &str) -> Result<(), Error> {
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let c: Candidate = line
            .parse()
            .map_err(|e: crate::ice::CandidateError| Error::Candidate(e.to_string()))?;
        if self.negotiated.is_none() && self.remote_offer.is_none() {
            if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                return Err(Error::Misuse("too many candidates before the description"));
            }
            self.early_candidates.push(c);
            return Ok(());
        }
        let t = self.transport.as_mut().ok_or(Error::Closed)?;
        t.add_remote_candidate(now, c)?;
        self.drain(now);
        Ok(())
    }

    /// The peer signaled end-of-candidates (RFC 8838 §13).
    pub fn add_end_of_candidates(&mut self, now: Instant) {
        if self.negotiated.is_none() && self.remote_offer.is_none() {
            self.early_end_of_candidates = true;
            return;
        }
        if let Some(t) = self.transport.as_mut() {
            t.end_of_candidates(now);
        }
        self.drain(now);
    }

    // ---- media and data -------------------------------------------------

    /// Sends one encoded frame (VP8, H.264 Annex-B access unit, or Opus) on
    /// `track` with RTP timestamp `timestamp`; returns how many RTP packets
    /// it took.
    pub fn send_frame(
        &mut self,
        now: Instant,
        track: TrackId,
        timestamp: u32,
        frame: &[u8],
    ) -> Result<usize, Error> {
        let t = self
            .transport
            .as_mut()
            .ok_or(Error::Misuse("not connected"))?;
        let s = self
            .senders
            .get_mut(track.0)
            .ok_or(Error::Misuse("no such track"))?;
        let pt = s.payload_type.ok_or(Error::Misuse(
            "the track is not negotiated, its codec was not agreed, or it is not sending",
        ))?;
        self.payloads.clear();
        s.packetizer
            .packetize(frame, MAX_RTP_PAYLOAD, &mut self.payloads)?;
        let n = self.payloads.len();
        for (i, payload) in self.payloads.iter().enumerate() {
            let mut header = RtpHeader {
                marker: i + 1 == n, // RFC 3550 §5.1: the frame's last packet
                payload_type: pt,
                sequence_number: s.seq,
                timestamp,
                ssrc: s.ssrc,
                ..Default::default()
            };
            // RFC 8843 §15: the mid header extension lets the receiver
            // route a new SSRC to its m-line.
            if let (Some(id), Some(mid)) = (s.mid_ext, s.mid.as_deref()) {
                let mut ext = Extensions::new();
                ext.push(id, mid.as_bytes());
                header.set_extensions(&ext, false)?;
            }
            self.packet.clear();
            header.write_packet(payload, 0, &mut self.packet)?;
            if let Some(rtx) = s.rtx.as_mut() {
                rtx.history.store(&self.packet)?; // kept in the clear
            }
            t.send_rtp(&self.packet)?;
            self.media_stats.rtp_sent += 1;
            s.sr.on_sent(payload.len());
            s.stats.packets_sent += 1;
            s.stats.bytes_sent += payload.len() as u64;
            s.stats.header_bytes_sent += (self.packet.len() - payload.len()) as u64;
            s.seq = s.seq.wrapping_add(1);
        }
        s.stats.frames_sent += 1;
        s.last_frame = Some((timestamp, now));
        s.sent_since_report = true;
        Ok(n)
    }

    /// Sends a text message on a data channel.
    pub fn send_text(&mut self, now: Instant, id: ChannelId, text: &str) -> Result<(), Error> {
        self.send_message(text.len(), |d| d.send_text(now, id, text))
    }

    /// Sends a binary message on a data channel.
    pub fn send_binary(&mut self, now: Instant, id: ChannelId, data: &[u8]) -> Result<(), Error> {
        self.send_message(data.len(), |d| d.send_binary(now, id, data))
    }

    /// One message of `len` bytes handed to the data channels by `send`,
    /// counted for `stats()`.
    fn send_message(
        &mut self,
        len: usize,
        send: impl FnOnce(&mut datachannel::Connection) -> Result<(), DataChannelError>,
    ) -> Result<(), Error> {
        let d = self
            .data
            .as_mut()
            .ok_or(Error::Misuse("data channels not up"))?;
        send(d)?;
        self.dc_stats.messages_sent += 1;
        self.dc_stats.bytes_sent += len as u64;
        self.flush_sctp();
        Ok(())
    }

    /// Sets the level at or below which `buffered_amount` falling fires
    /// the channel's buffered-amount-low event (W3C
    /// `bufferedAmountLowThreshold`; 0 by default): a sender that refills
    /// when it fires keeps the pipe full without queueing everything.
    pub fn set_buffered_amount_low_threshold(&mut self, id: ChannelId, threshold: usize) {
        if let Some(d) = self.data.as_mut() {
            d.set_buffered_amount_low_threshold(id, threshold);
        }
    }

    /// Closes one data channel.
    pub fn close_data_channel(&mut self, now: Instant, id: ChannelId) {
        if let Some(d) = self.data.as_mut() {
            d.close(now, id);
        }
        self.flush_sctp();
    }

    /// Asks the peer for a keyframe on the m-line `mid` it sends on (RTCP
    /// PLI, RFC 4585 §6.3.1), e.g. after a decoder error. Receivers also
    /// send one by themselves when they had to give up a frame.
    pub fn request_keyframe(&mut self, mid: &str) -> Result<(), Error> {
        let r = self
            .receivers
            .iter()
            .find(|r| r.mid == mid)
            .ok_or(Error::Misuse("no receiver with this mid"))?;
        let media_ssrc = r
            .ssrc
            .ok_or(Error::Misuse("no media seen on this mid yet"))?;
        self.send_pli(media_ssrc)?;
        if let Some(r) = self.receivers.iter_mut().find(|r| r.mid == mid) {
            r.counters.pli_count += 1;
        }
        self.media_stats.plis_sent += 1;
        Ok(())
    }

    fn send_pli(&mut self, media_ssrc: u32) -> Result<(), Error> {
        let t = self
            .transport
            .as_mut()
            .ok_or(Error::Misuse("not connected"))?;
        self.packet.clear();
        // RFC 5506: feedback alone, without a report in front.
        RtcpPacket::Pli(Pli {
            sender_ssrc: self.rtcp_ssrc,
            media_ssrc,
        })
        .write(&mut self.packet)?;
        t.send_rtcp(&self.packet)?;
        Ok(())
    }

    /// RTCP from the peer (one compound, or a reduced-size packet, RFC
    /// 5506): report blocks about our SSRCs give the round-trip time (RFC
    /// 3550 §6.4.1: now − LSR − DLSR) and the peer's loss; an SR from a
    /// source we receive is remembered for our next report's LSR/DLSR;
    /// NACKs are answered from the RTX history; PLI and FIR (RFC 5104
    /// §4.3) on one of our SSRCs become [`Event::KeyframeRequested`].
    fn on_rtcp(&mut self, now: Instant, p: &[u8]) {
        self.transport_stats.rtcp_packets_received += 1;
        let Ok(packets) = RtcpPacket::parse_compound(p, true) else {
            return;
        };
        let now_compact = ntp_compact(self.ntp(now));
        for packet in packets {
            match &packet {
                RtcpPacket::SenderReport(sr) => {
                    if let Some(r) = self.receivers.iter_mut().find(|r| r.ssrc == Some(sr.ssrc)) {
                        r.counters.sender_reports_received += 1;
                        if let Some(rx) = r.rtcp.as_mut() {
                            rx.on_sender_report(now, sr);
                        }
                    }
                    self.on_report_blocks(now_compact, &sr.reports);
                }
                RtcpPacket::ReceiverReport(rr) => self.on_report_blocks(now_compact, &rr.reports),
                RtcpPacket::Nack(nack) => {
                    let Some(s) = self.senders.iter_mut().find(|s| s.ssrc == nack.media_ssrc)
                    else {
                        continue;
                    };
                    s.stats.nack_count += 1;
                    let (Some(rtx), Some(t)) = (s.rtx.as_mut(), self.transport.as_mut()) else {
                        continue;
                    };
                    // RFC 4588 §4: each NACKed packet still kept goes out
                    // again on the RTX stream.
                    for p in rtx.on_nack(nack) {
                        if t.send_rtp(&p).is_ok() {
                            self.media_stats.rtx_sent += 1;
                            s.stats.retransmitted_packets_sent += 1;
                            let payload =
                                RtpPacket::new_checked(&p).map_or(0, |r| r.payload().len());
                            s.stats.retransmitted_bytes_sent += payload as u64;
                        }
                    }
                }
                RtcpPacket::Pli(pli) => {
                    if let Some(i) = self.senders.iter().position(|s| s.ssrc == pli.media_ssrc) {
                        self.senders[i].stats.pli_count += 1;
                        self.push(Event::KeyframeRequested(TrackId(i)));
                    }
                }
                RtcpPacket::Fir(fir) => {
                    for (ssrc, _) in &fir.entries {
                        if let Some(i) = self.senders.iter().position(|s| s.ssrc == *ssrc) {
                            self.senders[i].stats.fir_count += 1;
                            self.push(Event::KeyframeRequested(TrackId(i)));
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Report blocks about our senders: RTT, fraction and cumulative loss.
    fn on_report_blocks(&mut self, now_compact: u32, blocks: &[ReportBlock]) {
        for b in blocks {
            if let Some(s) = self.senders.iter_mut().find(|s| s.ssrc == b.ssrc) {
                s.stats.reports_received += 1;
                s.stats.fraction_lost = b.fraction_lost;
                s.stats.remote_packets_lost = i64::from(b.cumulative_lost);
                if let Some(rtt) = rtt_from_report(now_compact, b) {
                    s.stats.round_trip_time = Some(rtt);
                }
            }
        }
    }

    /// Our NTP time (RFC 3550 §4) at `now`.
    fn ntp(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let base = self
            .wall_clock
            .and_then(|w| w.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        ntp_from_unix(base + now.saturating_duration_since(epoch))
    }

    /// The next report interval: RFC 3550 §6.3.1, the mean interval times
    /// a random factor in [0.5, 1.5] so reports of many members spread out.
    fn rtcp_delay(&mut self) -> Duration {
        let factor: f64 = self.rng.random_range(0.5..1.5);
        self.rtcp_interval.mul_f64(factor)
    }

    /// One compound RTCP packet (RFC 3550 §6.1): an SR for each track that
    /// sent since the last report (RFC 3550 §6.4; several SSRCs of one
    /// endpoint share the one RTCP stream of the BUNDLE 5-tuple, RFC 8108
    /// §5.3 and RFC 8843 §7), else an RR from our feedback SSRC; report
    /// blocks (RFC 3550 §6.4.1) for every source we receive ride in the
    /// first one; then SDES with our CNAME for each SSRC reported (§6.5.1).
    fn send_reports(&mut self, now: Instant) {
        let ntp = self.ntp(now);
        let mut blocks: Vec<ReportBlock> = self
            .receivers
            .iter_mut()
            .filter_map(|r| r.rtcp.as_mut().map(|rx| rx.report_block(now)))
            .collect();
        blocks.truncate(MAX_REPORT_BLOCKS);
        let mut packets = Vec::new();
        let mut ssrcs = Vec::new();
        for s in self.senders.iter_mut() {
            if !s.sent_since_report || s.removed {
                continue;
            }
            s.sent_since_report = false;
            // RFC 3550 §6.4.1: the RTP timestamp of the same instant as
            // the NTP one, extrapolated from the last frame sent.
            let rtp_time = s.last_frame.map_or(0, |(ts, at)| {
                let elapsed = now.saturating_duration_since(at);
                let ticks = elapsed.as_nanos() * u128::from(s.clock_rate) / 1_000_000_000;
                ts.wrapping_add(ticks as u32)
            });
            let reports = if packets.is_empty() {
                std::mem::take(&mut blocks)
            } else {
                Vec::new()
            };
            s.stats.sender_reports_sent += 1;
            ssrcs.push(s.ssrc);
            packets.push(RtcpPacket::SenderReport(
                s.sr.sender_report(s.ssrc, ntp, rtp_time, reports),
            ));
            if ssrcs.len() >= MAX_REPORT_BLOCKS {
                break;
            }
        }
        if packets.is_empty() {
            if blocks.is_empty() && self.receivers.is_empty() {
                // Nothing sent, nothing received: nothing to report.
                return;
            }
            ssrcs.push(self.rtcp_ssrc);
            packets.push(RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.rtcp_ssrc,
                reports: blocks,
                profile_extension: Vec::new(),
            }));
        }
        let cname = self.cname.as_bytes();
        let cname = cname[..cname.len().min(255)].to_vec();
        packets.push(RtcpPacket::Sdes(Sdes {
            chunks: ssrcs
                .iter()
                .map(|&ssrc| SdesChunk {
                    ssrc,
                    items: vec![(sdes_type::CNAME, cname.clone())],
                })
                .collect(),
        }));
        self.send_compound(&packets);
        self.transport_stats.rtcp_reports_sent += 1;
    }

    /// RFC 3550 §6.6: a BYE for `sources` (after an RR, as a compound must
    /// start with a report).
    fn send_bye(&mut self, sources: Vec<u32>) {
        let packets = [
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.rtcp_ssrc,
                reports: Vec::new(),
                profile_extension: Vec::new(),
            }),
            RtcpPacket::Bye(Bye {
                sources,
                reason: None,
            }),
        ];
        self.send_compound(&packets);
    }

    fn send_compound(&mut self, packets: &[RtcpPacket]) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        self.packet.clear();
        if RtcpPacket::write_compound(packets, &mut self.packet).is_ok() {
            // Lost if not connected: reports are periodic anyway.
            let _ = t.send_rtcp(&self.packet);
        }
    }

    /// `close()`: an RTCP BYE for our SSRCs (RFC 3550 §6.6), SCTP
    /// aborted, DTLS close_notify, everything freed (no timer is left:
    /// `poll_timeout()` is `None`).
    pub fn close(&mut self, now: Instant) {
        let sources: Vec<u32> = self
            .senders
            .iter()
            .filter(|s| s.stats.packets_sent > 0 && !s.removed)
            .flat_map(|s| [Some(s.ssrc), s.rtx_ssrc])
            .flatten()
            .take(MAX_REPORT_BLOCKS)
            .collect();
        if !sources.is_empty() {
            self.send_bye(sources);
        }
        if let Some(d) = self.data.as_mut() {
            d.abort(now);
        }
        self.flush_sctp();
        self.data = None;
        if let Some(t) = self.transport.as_mut() {
            t.close();
        }
        self.drain(now);
        self.release();
        self.set_state(PeerConnectionState::Closed);
        self.set_signaling(SignalingState::Closed);
    }

    /// Frees what lives only while connected: SCTP, receivers, timers.
    fn release(&mut self) {
        self.data = None;
        self.data_started = false;
        self.receivers.clear();
        self.ssrc_routes.clear();
        self.next_rtcp = None;
        for s in &mut self.senders {
            s.rtx = None;
            s.payload_type = None;
        }
    }

    /// Drops receiver `i` and re-points the SSRC routes past it.
    fn remove_receiver(&mut self, i: usize) {
        if i >= self.receivers.len() {
            return;
        }
        self.receivers.remove(i);
        self.ssrc_routes.retain(|_, r| *r != i);
        for r in self.ssrc_routes.values_mut() {
            if *r > i {
                *r -= 1;
            }
        }
    }

    /// `getStats()`: inbound and outbound RTP per stream, the transport and
    /// the data channels (see [`StatsReport`]).
    pub fn stats(&self) -> StatsReport {
        let inbound = self
            .receivers
            .iter()
            .map(|r| {
                let c = &r.counters;
                let (lost, jitter) = r
                    .rtcp
                    .as_ref()
                    .map_or((0, 0), |rx| (rx.cumulative_lost(), rx.jitter()));
                InboundRtpStats {
                    mid: r.mid.clone(),
                    kind: r.kind,
                    ssrc: r.ssrc,
                    codec: r.current_name.clone(),
                    packets_received: c.packets_received,
                    bytes_received: c.bytes_received,
                    header_bytes_received: c.header_bytes_received,
                    packets_lost: lost,
                    jitter: Duration::from_nanos(
                        u64::from(jitter) * 1_000_000_000 / u64::from(r.clock_rate.max(1)),
                    ),
                    rtx_packets_received: c.rtx_packets_received,
                    frames_received: c.frames_received,
                    keyframes_received: c.keyframes_received,
                    nack_count: c.nack_count,
                    pli_count: c.pli_count,
                    sender_reports_received: c.sender_reports_received,
                }
            })
            .collect();
        let outbound = self.senders.iter().map(|s| s.stats.clone()).collect();
        let mut transport = self.transport_stats.clone();
        if let Some((l, r)) = self.transport.as_ref().and_then(|t| t.selected_pair()) {
            transport.remote_address = r.socket_addr();
            transport.selected_candidate_pair = Some((l.clone(), r.clone()));
        }
        StatsReport {
            inbound,
            outbound,
            transport,
            data_channels: self.dc_stats,
        }
    }

    // ---- internals ------------------------------------------------------

    fn push(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS {
            self.events.push_back(e);
        }
    }

    fn set_signaling(&mut self, s: SignalingState) {
        if self.signaling != s {
            self.signaling = s;
            self.push(Event::SignalingState(s));
        }
    }

    fn set_state(&mut self, s: PeerConnectionState) {
        if self.state != s && self.state != PeerConnectionState::Closed {
            self.state = s;
            self.push(Event::ConnectionState(s));
        }
    }

    fn ensure_transport(&mut self, now: Instant, role: IceRole) -> Result<(), Error> {
        if self.transport.is_some() {
            return Ok(());
        }
        let certificate = self.certificate.take().ok_or(Error::Closed)?;
        let mut config = match self.transport_config.take() {
            Some(mut c) => {
                c.ice_role = role;
                c.certificate = certificate;
                c
            }
            None => {
                let mut c = TransportConfig::new(role, certificate);
                c.ice.checks.rto = HANDSHAKE_RTO;
                c.dtls_retransmit_timeout = HANDSHAKE_RTO;
                c
            }
        };
        config.host_candidates = self.host_candidates.clone();
        config.stun_server = self.stun_server;
        if let Some(c) = self.ice_credentials.take() {
            config.local_credentials = Some(c);
        }
        let seed: u64 = self.rng.random();
        let t = Transport::new(config, now, StdRng::seed_from_u64(seed))?;
        let creds = t.local_credentials().clone();
        let params = self.session.transport_mut();
        params.ice_ufrag = creds.ufrag;
        params.ice_pwd = creds.pwd;
        self.transport = Some(t);
        self.set_state(PeerConnectionState::Connecting);
        self.drain(now);
        Ok(())
    }

    /// A completed offer/answer: transport keyed, senders and receivers
    /// set up, SCTP made.
    fn apply(&mut self, now: Instant, n: Negotiated) -> Result<(), Error> {
        let first = self.negotiated.is_none();
        let t = self.transport.as_mut().ok_or(Error::Closed)?;
        if first {
            t.set_remote_credentials(
                now,
                &Credentials {
                    ufrag: n.remote_ice_ufrag.clone(),
                    pwd: n.remote_ice_pwd.clone(),
                },
            );
            let role = match n.dtls_role {
                sdp::DtlsRole::Client => DtlsRole::Client,
                sdp::DtlsRole::Server => DtlsRole::Server,
            };
            // RFC 8122 §5: the certificate must match a signaled fingerprint.
            let fps: Vec<_> = n
                .remote_fingerprints
                .iter()
                .filter_map(|f| f.to_dtls())
                .collect();
            t.set_remote_dtls(now, role, fps)?;
            for c in n.remote_candidates.iter().cloned() {
                let _ = t.add_remote_candidate(now, c);
            }
            for c in std::mem::take(&mut self.early_candidates) {
                let _ = t.add_remote_candidate(now, c);
            }
            if n.remote_end_of_candidates || self.early_end_of_candidates {
                t.end_of_candidates(now);
            }
        }
        let mid_uri = crate::sdp::codec::uri::MID;
        for m in &n.media {
            let Some(mid) = m.mid.as_ref() else {
                continue;
            };
            // A receiver whose m-line no longer brings media ends (the
            // peer removed its track: its direction lost `send`, or the
            // m-line was rejected, JSEP §5.10/§5.11).
            let receiving = !m.rejected && m.direction.receives();
            if !receiving && let Some(i) = self.receivers.iter().position(|r| &r.mid == mid) {
                self.remove_receiver(i);
                self.push(Event::TrackEnded { mid: mid.clone() });
            }
            // A rejected data m-line ends the association (RFC 8841 §5).
            let was_data = self
                .negotiated
                .as_ref()
                .and_then(|old| old.by_mid(mid))
                .is_some_and(|o| o.kind == Some(MediaKind::Application) && !o.rejected);
            if m.rejected {
                if was_data || m.kind == Some(MediaKind::Application) {
                    self.stop_data(now);
                }
                continue;
            }
            let Some(kind) = m.kind else {
                continue;
            };
            let mid_ext = m
                .extensions
                .iter()
                .find(|(_, u)| u == mid_uri)
                .and_then(|(id, _)| u8::try_from(*id).ok());
            if kind == MediaKind::Application {
                if self.data.is_none()
                    && let Some(sctp) = m.sctp
                {
                    self.make_data(now, n.dtls_role, sctp)?;
                }
                continue;
            }
            // Our sender on this m-line: the first negotiated codec that is
            // the track's (RFC 3264 §5.1: any payload type of the answer
            // may be sent).
            for s in &mut self.senders {
                let tmid = self
                    .session
                    .transceivers()
                    .get(s.transceiver)
                    .and_then(|t| t.mid.clone());
                if tmid.as_deref() == Some(mid.as_str()) {
                    s.mid = Some(mid.clone());
                    s.stats.mid = Some(mid.clone());
                    s.mid_ext = mid_ext;
                    let codec = m
                        .codecs
                        .iter()
                        .find(|c| TrackCodec::of(c) == Some(s.codec))
                        .filter(|_| m.direction.sends() && !s.removed);
                    s.payload_type = codec.map(|c| c.payload_type);
                    s.stats.codec = codec.map(|c| c.name.clone());
                    if let Some(c) = codec {
                        s.clock_rate = c.clock_rate.max(1);
                    }
                    let rtx_pt = codec.and_then(|c| c.rtx_payload_type);
                    match (rtx_pt, s.rtx_ssrc, &mut s.rtx) {
                        (Some(pt), Some(rtx_ssrc), None) => {
                            s.rtx =
                                Some(RtxSender::new(RTX_HISTORY, rtx_ssrc, pt, self.rng.random()));
                        }
                        // The codec (and so its RTX payload type) may change
                        // in a renegotiation.
                        (Some(pt), Some(_), Some(old)) => old.rtx_payload_type = pt,
                        _ => {}
                    }
                }
            }
            // A receiver where the peer sends.
            if m.direction.receives() && !self.receivers.iter().any(|r| &r.mid == mid) {
                let codecs: Vec<(u8, TrackCodec, String)> = m
                    .codecs
                    .iter()
                    .filter_map(|c| TrackCodec::of(c).map(|k| (c.payload_type, k, c.name.clone())))
                    .collect();
                let first = codecs.first().map(|c| c.1).unwrap_or(match kind {
                    MediaKind::Audio => TrackCodec::Opus,
                    _ => TrackCodec::Vp8,
                });
                let idx = self.receivers.len();
                self.receivers.push(Receiver {
                    mid: mid.clone(),
                    kind,
                    ssrc: m.remote_ssrcs.first().copied(),
                    rtx_types: m
                        .codecs
                        .iter()
                        .filter_map(|c| c.rtx_payload_type.map(|r| (r, c.payload_type)))
                        .collect(),
                    nack: (kind == MediaKind::Video).then(|| {
                        let mut g = NackGenerator::new();
                        g.retry_interval = MAX_WAIT / 10;
                        g
                    }),
                    payload_types: m.codecs.iter().map(|c| c.payload_type).collect(),
                    codecs,
                    current: Some(first),
                    current_name: None,
                    clock_rate: m.codecs.first().map_or(90_000, |c| c.clock_rate.max(1)),
                    assembler: FrameAssembler::new(first.depacketizer(), ASSEMBLER_CAPACITY),
                    rtcp: None,
                    counters: InboundCounters::default(),
                });
                for &ssrc in &m.remote_ssrcs {
                    self.ssrc_routes.insert(ssrc, idx);
                }
                for &(_, rtx) in &m.remote_rtx_ssrcs {
                    self.ssrc_routes.insert(rtx, idx);
                }
                if self.remote_mid_ext.is_none() {
                    self.remote_mid_ext = mid_ext;
                }
                self.push(Event::Track {
                    mid: mid.clone(),
                    kind,
                });
            }
        }
        self.negotiated = Some(n);
        self.drain(now);
        Ok(())
    }

    fn make_data(
        &mut self,
        now: Instant,
        role: sdp::DtlsRole,
        sctp: sdp::SctpParams,
    ) -> Result<(), Error> {
        let role = match role {
            sdp::DtlsRole::Client => DtlsRole::Client,
            sdp::DtlsRole::Server => DtlsRole::Server,
        };
        let mut config = ConnectionConfig::new(role);
        config.sctp = self.sctp_config.clone();
        config.sctp.local_port = sctp.local_port;
        config.sctp.remote_port = sctp.remote_port;
        // RFC 8841 §6: 0 means the peer takes messages of any size.
        config.remote_max_message_size = match sctp.remote_max_message_size {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut d = datachannel::Connection::new(config, StdRng::seed_from_u64(self.rng.random()));
        for (i, init) in std::mem::take(&mut self.pending_channels)
            .into_iter()
            .enumerate()
        {
            let id = d.create_channel(init)?;
            // A fresh manager numbers handles from 0, as we did.
            debug_assert_eq!(id, ChannelId(i as u64));
        }
        self.data = Some(d);
        if self.state == PeerConnectionState::Connected {
            self.start_data(now);
        }
        Ok(())
    }

    fn start_data(&mut self, now: Instant) {
        if let Some(d) = self.data.as_mut()
            && !self.data_started
        {
            self.data_started = true;
            d.start(now);
        }
        self.flush_sctp();
    }

    /// SCTP packets out as DTLS application data; SCTP events up.
    fn flush_sctp(&mut self) {
        let (Some(d), Some(t)) = (self.data.as_mut(), self.transport.as_mut()) else {
            return;
        };
        if self.data_started {
            while d.poll_transmit_into(&mut self.sctp_out) {
                // Lost if DTLS is down: SCTP retransmits.
                let _ = t.send_application_data(&self.sctp_out);
            }
        }
        while let Some(e) = d.poll_event() {
            let st = &mut self.dc_stats;
            match &e {
                datachannel::Event::Open(_) => st.channels_opened += 1,
                datachannel::Event::Closed(_) => st.channels_closed += 1,
                datachannel::Event::Message { message, .. } => {
                    st.messages_received += 1;
                    st.bytes_received += message.len() as u64;
                }
                _ => {}
            }
            if self.events.len() < MAX_EVENTS {
                self.events.push_back(Event::DataChannel(e));
            }
        }
    }

    /// Transport events to ours.
    fn drain(&mut self, now: Instant) {
        loop {
            let Some(t) = self.transport.as_mut() else {
                return;
            };
            let Some(e) = t.poll_event() else {
                break;
            };
            match e {
                transport::Event::LocalCandidate(c) => {
                    self.session.transport_mut().candidates.push(c.clone());
                    self.push(Event::LocalCandidate(c));
                }
                transport::Event::GatheringComplete => {
                    self.session.transport_mut().end_of_candidates = true;
                    self.push(Event::GatheringComplete);
                }
                transport::Event::IceStateChanged(s) => {
                    self.push(Event::IceConnectionState(s));
                    match s {
                        ConnectionState::Disconnected => {
                            self.set_state(PeerConnectionState::Disconnected)
                        }
                        ConnectionState::Connected
                            if self.state == PeerConnectionState::Disconnected =>
                        {
                            self.set_state(PeerConnectionState::Connected)
                        }
                        _ => {}
                    }
                }
                transport::Event::Connected(_) => {
                    self.set_state(PeerConnectionState::Connected);
                    // RFC 3550 §6.2: the first report after half an interval.
                    let first = self.rtcp_delay() / 2;
                    self.next_rtcp = Some(now + first);
                    self.start_data(now);
                }
                transport::Event::Rtp(p) => self.on_rtp(now, &p),
                transport::Event::Rtcp(p) => self.on_rtcp(now, &p),
                transport::Event::ApplicationData(p) => {
                    if let Some(d) = self.data.as_mut() {
                        d.handle_packet(now, &p);
                    }
                    self.flush_sctp();
                }
                transport::Event::Failed(e) => {
                    self.release();
                    self.push(Event::Error(Error::Transport(e)));
                    self.set_state(PeerConnectionState::Failed);
                }
                transport::Event::Closed => {
                    self.release();
                    self.set_state(PeerConnectionState::Closed);
                }
            }
        }
        self.flush_sctp();
    }

    /// Routes one RTP packet: by SSRC, else by the mid header extension
    /// (RFC 8843 §9.2), learning the SSRC; else by a payload type only one
    /// receiver uses.
    fn on_rtp(&mut self, now: Instant, p: &[u8]) {
        let Ok(packet) = RtpPacket::new_checked(p) else {
            return;
        };
        let ssrc = packet.ssrc();
        let idx = match self.ssrc_routes.get(&ssrc) {
            Some(&i) => Some(i),
            None => {
                let by_mid = self
                    .remote_mid_ext
                    .and_then(|id| packet.extension_element(id))
                    .and_then(|mid| self.receivers.iter().position(|r| r.mid.as_bytes() == mid));
                let by_pt = || {
                    let pt = packet.payload_type();
                    let mut it = self
                        .receivers
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.payload_types.contains(&pt));
                    match (it.next(), it.next()) {
                        (Some((i, _)), None) => Some(i),
                        _ => None,
                    }
                };
                let found = by_mid.or_else(by_pt);
                if let Some(i) = found
                    && self.ssrc_routes.len() < 1024
                {
                    self.ssrc_routes.insert(ssrc, i);
                }
                found
            }
        };
        let Some(i) = idx else {
            return;
        };
        let Some(r) = self.receivers.get_mut(i) else {
            return;
        };
        let pt = packet.payload_type();
        let original;
        let packet = if let Some(&(_, media_pt)) = r.rtx_types.iter().find(|(x, _)| *x == pt) {
            // RFC 4588 §4: rebuild the original packet from the RTX one.
            let Some(media_ssrc) = r.ssrc else {
                return;
            };
            let mut buf = Vec::with_capacity(p.len());
            if decode_rtx(p, media_ssrc, media_pt, &mut buf).is_err() {
                return;
            }
            original = buf;
            self.media_stats.rtx_received += 1;
            r.counters.rtx_packets_received += 1;
            match RtpPacket::new_checked(&original) {
                Ok(o) => o,
                Err(_) => return,
            }
        } else if r.payload_types.contains(&pt) {
            if r.ssrc != Some(ssrc) || r.rtcp.is_none() {
                // A new media SSRC: statistics start over (RFC 3550 A.1).
                r.ssrc = Some(ssrc);
                r.rtcp = Some(ReceiverStats::new(ssrc, r.clock_rate));
            }
            let c = &mut r.counters;
            c.packets_received += 1;
            c.bytes_received += packet.payload().len() as u64;
            c.header_bytes_received += (p.len() - packet.payload().len()) as u64;
            if let Some(rx) = r.rtcp.as_mut() {
                rx.on_packet(now, packet.sequence_number(), packet.timestamp());
            }
            packet
        } else {
            return;
        };
        // The peer may switch codecs among the negotiated payload types:
        // a new depacketizer (frames of the old codec in flight are lost).
        if let Some((_, codec, name)) = r
            .codecs
            .iter()
            .find(|(p, _, _)| *p == packet.payload_type())
        {
            if r.current != Some(*codec) {
                r.current = Some(*codec);
                r.assembler = FrameAssembler::new(codec.depacketizer(), ASSEMBLER_CAPACITY);
            }
            if r.current_name.as_deref() != Some(name.as_str()) {
                r.current_name = Some(name.clone());
            }
        }
        if let Some(n) = r.nack.as_mut() {
            n.on_packet(packet.sequence_number());
        }
        r.assembler.insert_packet(&packet);
        self.receiver_feedback(now, i);
    }

    /// A receiver's frames out; its NACKs (RFC 4585 §6.2.1) and, when a
    /// frame is given up, a PLI.
    fn receiver_feedback(&mut self, now: Instant, i: usize) {
        let rtcp_ssrc = self.rtcp_ssrc;
        let Some(r) = self.receivers.get_mut(i) else {
            return;
        };
        let mut rtcp = Vec::new();
        if let (Some(n), Some(media)) = (r.nack.as_mut(), r.ssrc)
            && let Some(nack) = n.poll_nack_packet(now, rtcp_ssrc, media)
        {
            rtcp.push(RtcpPacket::Nack(nack));
        }
        r.assembler.give_up_if_stalled(now, MAX_WAIT);
        let mut frames = Vec::new();
        while let Some(f) = r.assembler.pop_frame() {
            frames.push(f);
        }
        if r.assembler.take_keyframe_request() {
            if let Some(n) = r.nack.as_mut() {
                n.clear();
            }
            if let Some(media_ssrc) = r.ssrc {
                rtcp.push(RtcpPacket::Pli(Pli {
                    sender_ssrc: rtcp_ssrc,
                    media_ssrc,
                }));
            }
        }
        let mid = r.mid.clone();
        if let Some(t) = self.transport.as_mut() {
            for p in rtcp {
                self.packet.clear();
                if p.write(&mut self.packet).is_ok() && t.send_rtcp(&self.packet).is_ok() {
                    match p {
                        RtcpPacket::Nack(_) => {
                            self.media_stats.nacks_sent += 1;
                            r.counters.nack_count += 1;
                        }
                        _ => {
                            self.media_stats.plis_sent += 1;
                            r.counters.pli_count += 1;
                        }
                    }
                }
            }
        }
        r.counters.frames_received += frames.len() as u64;
        r.counters.keyframes_received += frames.iter().filter(|f| f.keyframe).count() as u64;
        self.media_stats.frames_received += frames.len() as u64;
        for frame in frames {
            self.push(Event::Frame {
                mid: mid.clone(),
                frame,
            });
        }
    }
}

impl Machine for PeerConnection {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.transport_stats.packets_received += 1;
        self.transport_stats.bytes_received += d.contents.len() as u64;
        if let Some(t) = self.transport.as_mut() {
            t.handle_receive(now, d);
        }
        self.drain(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.transport.as_mut() {
            t.handle_timeout(now);
        }
        self.drain(now);
        for i in 0..self.receivers.len() {
            self.receiver_feedback(now, i);
        }
        if let Some(due) = self.next_rtcp
            && now >= due
        {
            self.send_reports(now);
            let next = self.rtcp_delay();
            self.next_rtcp = Some(now + next);
        }
        if let Some(d) = self.data.as_mut()
            && self.data_started
            && d.poll_timeout().is_some_and(|w| w <= now)
        {
            d.handle_timeout(now);
        }
        self.flush_sctp();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transport.as_mut()?.poll_transmit()?;
        self.transport_stats.packets_sent += 1;
        self.transport_stats.bytes_sent += t.contents.len() as u64;
        Some(t)
    }

    /// The transport's reused buffers straight into the caller's: no
    /// allocation per datagram.
    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<crate::machine::TransmitMeta> {
        let start = buf.len();
        let meta = self.transport.as_mut()?.poll_transmit_into(buf)?;
        self.transport_stats.packets_sent += 1;
        self.transport_stats.bytes_sent += (buf.len() - start) as u64;
        Some(meta)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let t = self.transport.as_ref().and_then(|t| t.poll_timeout());
        let d = self
            .data
            .as_ref()
            .filter(|_| self.data_started)
            .and_then(|d| d.poll_timeout());
        let media = self.receivers.iter().flat_map(|r| {
            [
                r.nack.as_ref().and_then(|n| n.poll_timeout()),
                r.assembler.stall_deadline(MAX_WAIT),
            ]
        });
        [t, d, self.next_rtcp]
            .into_iter()
            .chain(media)
            .flatten()
            .min()
    }
}
