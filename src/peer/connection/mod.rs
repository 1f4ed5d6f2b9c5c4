//! [`PeerConnection`]: the JSEP-like face over [`Transport`], [`sdp::Session`],
//! a [`datachannel::Connection`] and per-track RTP packetizing and frame
//! assembly, as one sans-IO [`Machine`]. See the [module doc](super).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::ice_servers::{self, IceServer, IceServerError, IceTransportPolicy};
use super::stats::{
    DataChannelStats, InboundRtpStats, OutboundRtpStats, StatsReport, TransportStats,
};
use super::transport::{self, Config as TransportConfig, DtlsRole, IceRole, Transport};
use crate::datachannel::{self, ChannelId, ChannelInit, ConnectionConfig};
use crate::dtls::cert::Certificate;
use crate::ice::{Candidate, ConnectionState, Credentials};
use crate::machine::{Machine, Receive, Transmit};
use crate::rtp::bwe::pacer::{Config as PacerConfig, Pacer, Priority, Release};
use crate::rtp::bwe::remb::RembEstimator;
use crate::rtp::bwe::{Config as BweConfig, Event as BweEvent, SendSideBwe};
use crate::rtp::codec::{AnyDepacketizer, AnyPacketizer};
use crate::rtp::jitter::Frame;
use crate::rtp::payload::{Packetizer, Payloads};
use crate::rtp::rtcp::{
    Bye, Fir, Nack, Pli, ReceiverReport, Remb, ReportBlock, RtcpPacket, Sdes, SdesChunk, sdes_type,
};
use crate::rtp::stats::{ntp_compact, ntp_from_unix};
use crate::rtp::stream::{ReceiveStream, Received, SendStream};
use crate::rtp::twcc::TwccRecorder;
use crate::rtp::{self, HeaderFields, RtpPacket, RtpPacketMut, emit_rtp_packet};
use crate::sdp::{
    self, Capabilities, Direction, LocalSender, MediaKind, Mid, Negotiated, NegotiationError,
    Session, SessionDescription, TransceiverId, TransportParams,
};

mod data;
mod negotiation;
mod rtcp;
mod stats;
mod tracks;

/// Packets a receiver's frame assembler holds (a few large keyframes).
const ASSEMBLER_CAPACITY: usize = 1024;
/// Remote candidates kept before the remote description arrives.
const MAX_EARLY_CANDIDATES: usize = 64;
/// The most events kept for the application.
const MAX_EVENTS: usize = 8192;
/// Largest RTP payload (1200-byte datagrams minus RTP, extension and SRTP).
const MAX_RTP_PAYLOAD: usize = 1100;
/// Packets a video sender keeps for RTX: a receiver NACKs a hole for at
/// most [`MAX_WAIT`] (1 s) before giving its frame up, and 512 packets of
/// ~1,200 bytes are that second at up to 5 Mbit/s. Each kept packet holds
/// its buffer, so this is most of a sending track's memory (an SFU keeps
/// one history per subscriber and track).
const RTX_HISTORY: usize = 512;
/// How long a receiver waits for a missing packet before it gives the
/// frame up and asks for a keyframe (NACKs are retried every tenth of it).
const MAX_WAIT: Duration = Duration::from_millis(1000);
/// RFC 3550 §6.4.1/§6.4.2: at most 31 report blocks fit one SR or RR.
const MAX_REPORT_BLOCKS: usize = 31;

/// RTP mode's extension ids: a packet of [`Event::Rtp`] carries its
/// header extensions under these ids whatever the peer negotiated, and
/// [`PeerConnection::send_rtp`] takes them under these ids and writes
/// each with the id negotiated on the sending m-line. So a packet received
/// on one connection can be sent on another unchanged (what an SFU does),
/// although each peer chose its own `a=extmap` numbers (RFC 8285 §5).
pub const RTP_MODE_EXTENSIONS: [(u8, &str); 7] = [
    (CANONICAL_MID, sdp::codec::uri::MID),
    (CANONICAL_ABS_SEND_TIME, sdp::codec::uri::ABS_SEND_TIME),
    (CANONICAL_TRANSPORT_CC, sdp::codec::uri::TRANSPORT_CC),
    (4, sdp::codec::uri::AUDIO_LEVEL),
    (CANONICAL_RID, sdp::codec::uri::RTP_STREAM_ID),
    (
        CANONICAL_REPAIRED_RID,
        sdp::codec::uri::REPAIRED_RTP_STREAM_ID,
    ),
    (
        RTP_MODE_DEPENDENCY_DESCRIPTOR,
        sdp::codec::uri::DEPENDENCY_DESCRIPTOR,
    ),
];
/// The canonical id of the Dependency Descriptor in RTP mode (an SFU reads
/// it to forward scalable video, [`crate::rtp::dd`]).
pub const RTP_MODE_DEPENDENCY_DESCRIPTOR: u8 = 7;
/// The canonical ids of the rid and repaired-rid extensions (RFC 8852):
/// they name a received simulcast layer, so [`PeerConnection::send_rtp`]
/// never sends them on (a receiver that demultiplexes by rid would drop a
/// packet naming an unknown one); a layer of our own simulcast track
/// writes its own rid instead.
const CANONICAL_RID: u8 = 5;
const CANONICAL_REPAIRED_RID: u8 = 6;
/// The canonical id of the mid extension (RFC 8843 §15), rewritten to the
/// sending m-line's own mid by [`PeerConnection::send_rtp`].
const CANONICAL_MID: u8 = 1;
/// The canonical id of transport-cc.
const CANONICAL_TRANSPORT_CC: u8 = 3;
/// The canonical id of abs-send-time (what REMB estimation reads).
const CANONICAL_ABS_SEND_TIME: u8 = 2;
/// What SRTP adds to each RTP packet, counted in the sizes given to the
/// bandwidth estimator (the 16-byte AES-GCM tag; the HMAC-SHA1-80 profile
/// adds 10: the estimate errs by under 1 % either way).
const SRTP_OVERHEAD: usize = 16;
/// How often transport-cc feedback goes while packets come (browsers send
/// it every 50–100 ms).
const TWCC_INTERVAL: Duration = Duration::from_millis(50);

/// The first retransmission timeout of every handshake a connection set-up
/// waits on: ICE checks, DTLS flights and the SCTP INIT and COOKIE-ECHO
/// (each still doubles on every retry). A WebRTC call waits on about fifteen
/// handshake packets in a row; with the RFC timers (ICE 500 ms, DTLS 1 s,
/// SCTP 1 s) or even 250–500 ms, two lost packets in a set-up cost close to
/// a second (`rtclab speed setup`: p95 930 ms at 5 % loss and 20 ms RTT).
/// 100 ms is RFC 6298's floor for a retransmission timer, the initial
/// value RFC 9147 §5.8.2 recommends for DTLS 1.3, and five round trips of
/// a 20 ms path; on a slower path it costs a few early duplicates of
/// small handshake packets, which every layer tolerates. `Config::transport`
/// and `Config::sctp` take other values.
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
    /// Pace media at 2.5 × the bandwidth estimate (GCC's pacer,
    /// [`crate::rtp::bwe::pacer`]), with start-up probes: the estimate
    /// finds the path within a second instead of climbing 8 % a second.
    /// Packets then leave from `handle_timeout`, not from `send_frame`.
    /// Off by default.
    pub pacing: bool,
    /// W3C `iceServers`: STUN and TURN URLs with credentials (see
    /// [`super::ice_servers`]); a TURN server gives a relayed candidate.
    pub ice_servers: Vec<IceServer>,
    /// W3C `iceTransportPolicy`: with [`IceTransportPolicy::Relay`] only
    /// the relayed candidate is signaled and used.
    pub ice_transport_policy: IceTransportPolicy,
    /// Packets each video sender keeps for RTX (RFC 4588): 512 by default,
    /// a second at up to 5 Mbit/s. A forwarder that keeps one cache per
    /// source for all its receivers (the SFU) sets 1 and answers
    /// [`Event::NackUnanswered`] with [`PeerConnection::resend_rtp`]; the
    /// one packet kept (one of the last 64 sent: it is not copied for
    /// each) is what bandwidth probes send as padding.
    pub rtx_history: usize,
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
            pacing: false,
            ice_servers: Vec::new(),
            ice_transport_policy: IceTransportPolicy::All,
            rtx_history: RTX_HISTORY,
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
    /// Transport-cc feedback packets sent (about our arrivals).
    pub twcc_feedback_sent: u64,
    /// Transport-cc feedback packets received (about our packets).
    pub twcc_feedback_received: u64,
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
    /// RTP mode ([`PeerConnection::set_rtp_mode`]): one RTP packet of the
    /// receiver of `mid`, after SRTP, an RTX packet already turned back
    /// into the original, its extension ids the canonical ones of
    /// [`RTP_MODE_EXTENSIONS`]. Read it with [`RtpPacket::new_checked`],
    /// rewrite it with [`RtpPacketMut`], send it on with
    /// [`PeerConnection::send_rtp`], then give the buffer back with
    /// [`PeerConnection::recycle_rtp`].
    Rtp {
        /// The m-line's mid.
        mid: Mid,
        /// The simulcast layer's RTP stream id (RFC 8852), when the m-line
        /// receives simulcast ([`crate::sdp::Capabilities::receive_simulcast`]).
        rid: Option<Mid>,
        /// The whole packet (header, extensions, payload).
        packet: Vec<u8>,
    },
    /// The peer asked (PLI, or FIR, RFC 5104 §4.3.1) for a keyframe on one
    /// of our tracks.
    KeyframeRequested(TrackId),
    /// The peer NACKed packets of one of our tracks that the RTX history
    /// no longer holds (those it holds went out again by themselves). In
    /// RTP mode a forwarder can ask its source for them
    /// ([`PeerConnection::send_nack`]).
    NackUnanswered {
        /// Our track.
        track: TrackId,
        /// The sequence numbers (ours, as sent).
        sequence_numbers: Vec<u16>,
    },
    /// Our send-side bandwidth estimate (GCC over the peer's transport-cc
    /// feedback, [`crate::rtp::bwe`]) moved by 5 % or more: what our
    /// encoders may send in all, in bits per second (also
    /// [`PeerConnection::available_outgoing_bitrate`]).
    BandwidthEstimate {
        /// The estimate.
        bitrate: u64,
    },
    /// The peer's receive-side bandwidth estimate (REMB,
    /// draft-alvestrand-rmcat-remb-03 §2.2), in bits per second.
    Remb {
        /// The estimate.
        bitrate: u64,
    },
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
    Sdp(sdp::Error),
    /// Offer/answer rules were broken.
    Negotiation(NegotiationError),
    /// The transport failed (ICE, DTLS, fingerprint mismatch, SRTP).
    Transport(transport::Error),
    /// A data-channel call failed.
    DataChannel(datachannel::Error),
    /// Packetizing failed.
    Rtp(rtp::Error),
    /// A candidate line did not parse.
    Candidate(crate::ice::CandidateError),
    /// The call does not fit the state (e.g. an answer without an offer).
    Misuse(&'static str),
    /// Closed.
    Closed,
    /// The pacer's queue is full (more media than the path carries for
    /// seconds): the packet was dropped.
    Congested,
    /// An ICE server of the configuration cannot be used.
    IceServer(IceServerError),
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
            Error::Congested => f.write_str("the pacer's queue is full: media dropped"),
            Error::IceServer(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Sdp(e) => Some(e),
            Error::Negotiation(e) => Some(e),
            Error::Transport(e) => Some(e),
            Error::DataChannel(e) => Some(e),
            Error::Rtp(e) => Some(e),
            Error::Candidate(e) => Some(e),
            Error::IceServer(e) => Some(e),
            Error::Misuse(_) | Error::Closed | Error::Congested => None,
        }
    }
}

impl From<sdp::Error> for Error {
    fn from(e: sdp::Error) -> Self {
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
impl From<datachannel::Error> for Error {
    fn from(e: datachannel::Error) -> Self {
        Error::DataChannel(e)
    }
}
impl From<rtp::Error> for Error {
    fn from(e: rtp::Error) -> Self {
        Error::Rtp(e)
    }
}

/// The codec a track sends with ([`PeerConnection::add_track_with_codec`]):
/// the registry's [`Codec`](crate::rtp::codec::Codec).
pub use crate::rtp::codec::Codec as TrackCodec;
pub use tracks::Renumber;

/// One of our tracks.
#[derive(Debug)]
struct Sender {
    transceiver: TransceiverId,
    codec: TrackCodec,
    kind: MediaKind,
    rtx_ssrc: Option<u32>,
    /// Sequence numbers, RTX history, SR counts, statistics (one pipeline
    /// with `rtp::session`).
    stream: SendStream,
    /// Set once negotiated and sending: the codec was agreed.
    negotiated: bool,
    /// The m-line's mid, its mid extension id, and the extension ids a
    /// packet given to `send_rtp` is rewritten to: `(canonical id,
    /// negotiated id)` (see [`RTP_MODE_EXTENSIONS`]).
    mid: Option<String>,
    mid_ext: Option<u8>,
    ext_out: ExtIds,
    /// `remove_track` was called: nothing is sent any more.
    removed: bool,
    packetizer: AnyPacketizer,
    /// The negotiated encoding name.
    codec_name: Option<String>,
    /// A layer of a simulcast track ([`PeerConnection::add_simulcast_track`]):
    /// its RTP stream id (RFC 8851), and whether the answer took simulcast
    /// so that the rid goes on the wire (RFC 8852 §3.1; without, only the
    /// first layer sends, as one plain stream: RFC 8853 §5.2).
    rid: Option<String>,
    send_rid: bool,
}

impl Sender {
    /// The transport-cc extension id negotiated on the track's m-line.
    fn tcc_id(&self) -> Option<u8> {
        self.ext_id(CANONICAL_TRANSPORT_CC)
    }

    /// The id negotiated on the track's m-line for a canonical extension.
    fn ext_id(&self, canonical: u8) -> Option<u8> {
        self.ext_out.get(canonical)
    }

    /// The id of the rid element this layer's packets carry (the rid
    /// itself is `self.rid`), if they carry one.
    fn rid_ext(&self) -> Option<u8> {
        self.ext_id(CANONICAL_RID)
            .filter(|_| self.send_rid && self.rid.is_some())
    }
}

/// One m-line the peer sends on.
#[derive(Debug)]
struct Receiver {
    mid: String,
    /// The mid as a `Copy` value for [`Event::Rtp`] (None if longer than
    /// a [`Mid`] holds: such an m-line cannot use RTP mode).
    mid_key: Option<Mid>,
    /// Simulcast (RFC 8853): the RTP stream id of this layer; an m-line
    /// that receives simulcast has one receiver per rid. `None` without.
    rid: Option<Mid>,
    /// The first layer of a simulcast m-line, or the only stream: the one
    /// that assembles frames outside RTP mode (the others are counted,
    /// NACKed and dropped, so that an application reading frames sees
    /// one stream).
    primary: bool,
    /// The peer's ids of the rid and repaired-rid extensions (RFC 8852
    /// §3.1, §3.2) on this m-line, to route a new SSRC to its layer.
    rid_ext: Option<u8>,
    repaired_rid_ext: Option<u8>,
    kind: MediaKind,
    payload_types: Vec<u8>,
    /// The payload types we can depacketize, with their codec and name.
    codecs: Vec<(u8, TrackCodec, String)>,
    /// The codec the assembler depacketizes now (the peer may switch
    /// among the negotiated payload types, RFC 3264 §5.1).
    current: Option<TrackCodec>,
    current_name: Option<String>,
    /// RTP mode: packets are handed to the application as they are
    /// ([`Event::Rtp`]), with no frame assembly.
    rtp_mode: bool,
    /// The peer's extension ids on this m-line to the canonical ones of
    /// [`RTP_MODE_EXTENSIONS`], `(negotiated, canonical)`.
    ext_in: Vec<(u8, u8)>,
    /// RTX, statistics, NACKs, frame assembly (one pipeline with
    /// `rtp::session`).
    stream: ReceiveStream<AnyDepacketizer>,
    /// The sender wants REMB (`goog-remb` negotiated, transport-cc not:
    /// a sender that has both runs its own estimator on our feedback).
    remb: bool,
}

/// A WebRTC peer connection, sans-IO (see the [module doc](super)).
pub struct PeerConnection {
    rng: StdRng,
    session: Session,
    certificate: Option<Certificate>,
    transport_config: Option<TransportConfig>,
    host_candidates: Vec<SocketAddr>,
    stun_server: Option<SocketAddr>,
    ice_servers: Vec<IceServer>,
    ice_transport_policy: IceTransportPolicy,
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
    /// The data m-line was removed: the association closes gracefully
    /// (stream resets, then SHUTDOWN) and is dropped once closed.
    data_closing: bool,
    /// Channels asked for before SCTP exists, in handle order.
    pending_channels: Vec<ChannelInit>,
    next_channel: u64,
    senders: Vec<Sender>,
    receivers: Vec<Receiver>,
    ssrc_routes: HashMap<u32, usize>,
    remote_mid_ext: Option<u8>,
    /// The peer's transport-cc extension id (draft-holmer-rmcat-
    /// transport-wide-cc-extensions-01 §4: one sequence for the whole
    /// transport), read from every RTP packet that arrives, routed to a
    /// receiver or not: a probe's padding on an SSRC not seen yet is
    /// still part of what the sender measures.
    remote_tcc_ext: Option<u8>,
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
    payloads: Payloads,
    packet: Vec<u8>,
    sctp_out: Vec<u8>,
    /// Reused RTCP packets of a receiver's feedback.
    feedback: Vec<RtcpPacket>,
    /// Transport-wide arrival times of the peer's packets, for the
    /// transport-cc feedback its bandwidth estimator runs on
    /// (draft-holmer-rmcat-transport-wide-cc-extensions-01 §3.1).
    twcc: TwccRecorder,
    /// When the next transport-cc feedback goes (armed by a packet).
    next_twcc: Option<Instant>,
    /// The media SSRC the last transport-cc sequence number came with.
    twcc_media_ssrc: u32,
    /// Receive-side estimation for peers that want REMB
    /// (draft-alvestrand-rmcat-remb-03), made at the first packet that
    /// carries abs-send-time on such an m-line.
    remb: Option<RembEstimator>,
    /// Our next transport-wide sequence number (one counter for every
    /// packet we send, RTX included: draft-holmer-rmcat-transport-wide-cc-
    /// extensions-01 §2).
    twcc_send_seq: u16,
    /// Send-side bandwidth estimation (GCC) over the transport-cc feedback
    /// about the packets we send.
    bwe: SendSideBwe,
    /// The estimate last reported by [`Event::BandwidthEstimate`].
    bwe_reported: Option<u64>,
    /// The latest `now` we were given (for probes asked from inside).
    last_now: Option<Instant>,
    /// The command sequence number of our last FIR (RFC 5104 §4.3.1.1).
    fir_seq: u8,
    /// With [`Config::pacing`]: packets wait here, each with its
    /// transport-cc extension id (the sequence number is stamped as it
    /// leaves, so numbers follow the sending order).
    pacer: Option<Pacer<(Option<u8>, Vec<u8>)>>,
    /// Buffers of paced packets, reused.
    pace_pool: Vec<Vec<u8>>,
    /// Packets a video sender keeps for RTX ([`Config::rtx_history`]).
    rtx_history: usize,
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
            ice_servers: config.ice_servers,
            ice_transport_policy: config.ice_transport_policy,
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
            data_closing: false,
            pending_channels: Vec::new(),
            next_channel: 0,
            senders: Vec::new(),
            receivers: Vec::new(),
            ssrc_routes: HashMap::new(),
            remote_mid_ext: None,
            remote_tcc_ext: None,
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
            payloads: Payloads::default(),
            packet: Vec::with_capacity(1500),
            sctp_out: Vec::with_capacity(1500),
            feedback: Vec::new(),
            twcc: TwccRecorder::new(),
            next_twcc: None,
            twcc_media_ssrc: 0,
            twcc_send_seq: 0,
            remb: None,
            bwe: SendSideBwe::new(BweConfig::default()),
            bwe_reported: None,
            last_now: None,
            fir_seq: 0,
            pacer: config
                .pacing
                .then(|| Pacer::new(PacerConfig::default(), BweConfig::default().start)),
            pace_pool: Vec::new(),
            rtx_history: config.rtx_history,
            events: VecDeque::new(),
        }
    }

    // ---- accessors ------------------------------------------------------

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

    /// The transport, once made: for a packet capture's plaintext tap
    /// ([`Transport::set_plaintext_tap`]).
    pub fn transport_mut(&mut self) -> Option<&mut Transport> {
        self.transport.as_mut()
    }

    /// The result of the last complete offer/answer.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Whether a datagram from `source` is ours (one socket, many peers).
    pub fn accepts(&self, datagram: &[u8], source: SocketAddr) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|t| t.accepts(datagram, source))
    }

    // ---- JSEP -----------------------------------------------------------

    // ---- media and data -------------------------------------------------

    /// `close()`: an RTCP BYE for our SSRCs (RFC 3550 §6.6), SCTP
    /// aborted, DTLS close_notify, everything freed (no timer is left:
    /// `poll_timeout()` is `None`).
    pub fn close(&mut self, now: Instant) {
        let sources: Vec<u32> = self
            .senders
            .iter()
            .filter(|s| s.stream.stats().packets_sent > 0 && !s.removed)
            .flat_map(|s| [Some(s.stream.ssrc()), s.rtx_ssrc])
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
        self.data_closing = false;
        self.receivers.clear();
        self.ssrc_routes.clear();
        self.next_rtcp = None;
        for s in &mut self.senders {
            s.negotiated = false;
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
                    if self.pacer.is_some() {
                        // The start-up probes (rtp::bwe::probe).
                        self.last_now = Some(now);
                        self.bwe.start(now);
                        self.bwe_events();
                    }
                    // RFC 3550 §6.2: the first report after half an interval.
                    let first = self.rtcp_delay() / 2;
                    self.next_rtcp = Some(now + first);
                    self.start_data(now);
                }
                transport::Event::Rtp(p) => self.on_rtp(now, p),
                transport::Event::Rtcp(p) => {
                    self.on_rtcp(now, &p);
                    if let Some(t) = self.transport.as_mut() {
                        t.recycle(p);
                    }
                }
                transport::Event::ApplicationData(p) => {
                    if let Some(d) = self.data.as_mut() {
                        d.handle_packet(now, &p);
                    }
                    if let Some(t) = self.transport.as_mut() {
                        t.recycle_application_data(p);
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
}

/// The transport and the sender of `track`, if it may send now.
fn sending<'a>(
    transport: &'a mut Option<Transport>,
    senders: &'a mut [Sender],
    track: TrackId,
) -> Result<(&'a mut Transport, &'a mut Sender), Error> {
    let t = transport.as_mut().ok_or(Error::Misuse("not connected"))?;
    let s = senders
        .get_mut(track.0)
        .ok_or(Error::Misuse("no such track"))?;
    if !s.negotiated {
        return Err(Error::Misuse(
            "the track is not negotiated, its codec was not agreed, or it is not sending",
        ));
    }
    Ok((t, s))
}

/// Writes the next transport-wide sequence number into the transport-cc
/// element (id `tcc_id`) of the RTP packet in `buf`, returning it.
fn stamp_tcc(buf: &mut [u8], tcc_id: Option<u8>, next: &mut u16) -> Option<u16> {
    let mut p = RtpPacketMut::new_checked(buf).ok()?;
    let e = p.extension_element_mut(tcc_id?)?;
    if e.len() != 2 {
        return None;
    }
    let seq = *next;
    e.copy_from_slice(&seq.to_be_bytes());
    *next = next.wrapping_add(1);
    Some(seq)
}

/// The extension ids of an m-line (`(negotiated id, uri)`) that have a
/// canonical id in [`RTP_MODE_EXTENSIONS`]: `(negotiated, canonical)`.
/// The ids negotiated on a sending m-line, by canonical id
/// ([`RTP_MODE_EXTENSIONS`]): held inline in the sender, as every packet
/// sent looks them up (a forwarder's, for each of hundreds of connections
/// in turn, where a list on the heap is one more cache miss each).
#[derive(Debug, Clone, Copy, Default)]
struct ExtIds([u8; RTP_MODE_EXTENSIONS.len() + 1]);

impl ExtIds {
    /// From `(negotiated id, canonical id)` pairs ([`ext_map`]). Id 0 is
    /// none (RFC 8285 §4.2 reserves it).
    fn new(pairs: impl Iterator<Item = (u8, u8)>) -> ExtIds {
        let mut ids = ExtIds::default();
        for (id, canonical) in pairs {
            if let Some(slot) = ids.0.get_mut(usize::from(canonical)) {
                *slot = id;
            }
        }
        ids
    }

    /// The negotiated id of a canonical extension, if negotiated.
    fn get(&self, canonical: u8) -> Option<u8> {
        self.0
            .get(usize::from(canonical))
            .copied()
            .filter(|&id| id != 0)
    }
}

fn ext_map(extensions: &[(u16, String)]) -> impl Iterator<Item = (u8, u8)> + '_ {
    extensions.iter().filter_map(|(id, uri)| {
        let id = u8::try_from(*id).ok()?;
        let canonical = RTP_MODE_EXTENSIONS
            .iter()
            .find(|(_, u)| u == uri)
            .map(|(c, _)| *c)?;
        Some((id, canonical))
    })
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
        self.last_now = Some(now);
        if let Some(t) = self.transport.as_mut() {
            t.handle_timeout(now);
        }
        self.pace(now);
        self.drain(now);
        for i in 0..self.receivers.len() {
            self.receiver_feedback(now, i);
        }
        self.remb_due(now);
        if self.next_twcc.is_some_and(|due| now >= due) {
            self.next_twcc = None;
            if let (Some(fb), Some(t)) = (
                self.twcc
                    .poll_feedback(self.rtcp_ssrc, self.twcc_media_ssrc),
                self.transport.as_mut(),
            ) {
                // RFC 5506: feedback alone, without a report in front.
                self.packet.clear();
                if RtcpPacket::TransportCc(fb).emit(&mut self.packet).is_ok()
                    && t.send_rtcp(&self.packet).is_ok()
                {
                    self.media_stats.twcc_feedback_sent += 1;
                }
            }
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
        let media = self.receivers.iter().map(|r| r.stream.poll_timeout());
        let remb = self.remb.as_ref().and_then(|r| r.poll_timeout());
        let pace = self
            .pacer
            .as_ref()
            .filter(|_| self.transport.is_some())
            .and_then(|p| p.poll_timeout());
        [t, d, self.next_rtcp, self.next_twcc, pace, remb]
            .into_iter()
            .chain(media)
            .flatten()
            .min()
    }
}
