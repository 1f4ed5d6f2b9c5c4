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
use crate::datachannel::{self, ChannelId, ChannelInit, ConnectionConfig, DataChannelError};
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
use crate::rtp::{HeaderFields, RtpError, RtpPacket, RtpPacketMut, write_rtp_packet};
use crate::sdp::{
    self, Capabilities, Direction, LocalSender, MediaKind, Mid, Negotiated, NegotiationError,
    SdpError, Session, SessionDescription, TransceiverId, TransportParams,
};

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

/// The codec a track sends with ([`PeerConnection::add_track_with_codec`]):
/// the registry's [`Codec`](crate::rtp::codec::Codec).
pub use crate::rtp::codec::Codec as TrackCodec;

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
    ext_out: Vec<(u8, u8)>,
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
        self.ext_out
            .iter()
            .find(|(c, _)| *c == canonical)
            .map(|(_, id)| *id)
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

    /// The transport, once made: for a packet capture's plaintext tap
    /// ([`Transport::set_plaintext_tap`]).
    pub fn transport_mut(&mut self) -> Option<&mut Transport> {
        self.transport.as_mut()
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

    /// `addTrack` with the codec the track sends: VP8, VP9, AV1 or H.264 for
    /// video, Opus for audio. The m-line offers every codec of our capabilities
    /// (the peer may send us any); this track sends with `codec` if the
    /// offer/answer kept it ([`PeerConnection::send_frame`] fails if not).
    pub fn add_track_with_codec(&mut self, codec: TrackCodec) -> Result<TrackId, Error> {
        self.add_track_in_stream(codec, None)
    }

    /// `addTrack(track, stream)`: as [`PeerConnection::add_track_with_codec`],
    /// the track signaled as part of the media stream `stream_id` (its
    /// `a=msid`, RFC 8830 §2), so that the peer's `ontrack` groups it with
    /// the other tracks of that stream (an SFU gives each participant's
    /// audio and video one stream id). `None`: a stream of its own.
    pub fn add_track_in_stream(
        &mut self,
        codec: TrackCodec,
        stream_id: Option<&str>,
    ) -> Result<TrackId, Error> {
        self.add_layers(codec, stream_id, &[]).map(|t| t[0])
    }

    /// `addTrack` with `sendEncodings` of several `rid`s: simulcast (RFC
    /// 8853). One video track sent as `rids.len()` independent RTP streams,
    /// lowest quality first (the order of `a=simulcast:send`), each with its
    /// own SSRC, RTX stream and sequence numbers, told apart by the rid
    /// header extension (RFC 8852): the receiver (an SFU) forwards to each
    /// subscriber the layer its link carries. Returns one [`TrackId`] per
    /// layer, in `rids`' order: the application encodes the picture once
    /// per layer (at its own resolution and bitrate) and sends each with
    /// [`PeerConnection::send_frame`] (or [`PeerConnection::send_rtp`]).
    ///
    /// The offer carries `a=rid:<rid> send` lines and `a=simulcast:send`.
    /// The layers the answer's `a=simulcast:recv` lists are sent; the others
    /// are not negotiated (sending on them fails). A peer that does not take
    /// simulcast receives the first layer alone, without a rid; an answer
    /// we give sends the first layer only (simulcast is the offerer's to
    /// propose, RFC 8853 §5.2).
    ///
    /// Rids are 1 to 16 letters, digits, `-` or `_` (RFC 8851 §10: the
    /// grammar's `rid-id`, bounded here as a [`Mid`]), 2 to 4 of them, all
    /// different; the codec must be a video one.
    pub fn add_simulcast_track(
        &mut self,
        codec: TrackCodec,
        stream_id: Option<&str>,
        rids: &[&str],
    ) -> Result<Vec<TrackId>, Error> {
        if codec.kind() != MediaKind::Video {
            return Err(Error::Misuse("simulcast is for video tracks"));
        }
        if !(2..=4).contains(&rids.len()) {
            return Err(Error::Misuse("simulcast takes 2 to 4 rids"));
        }
        let valid = |r: &str| {
            (1..=16).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !rids.iter().all(|r| valid(r)) {
            return Err(Error::Misuse(
                "a rid is 1 to 16 letters, digits, '-' or '_' (RFC 8851 §10)",
            ));
        }
        if rids.iter().enumerate().any(|(i, r)| rids[..i].contains(r)) {
            return Err(Error::Misuse("the rids of a simulcast track differ"));
        }
        self.add_layers(codec, stream_id, rids)
    }

    /// One sender per layer (`rids`, or one stream without), all on one
    /// new transceiver.
    fn add_layers(
        &mut self,
        codec: TrackCodec,
        stream_id: Option<&str>,
        rids: &[&str],
    ) -> Result<Vec<TrackId>, Error> {
        let kind = codec.kind();
        let packetizer = codec.packetizer(&mut self.rng);
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        let ssrc: u32 = self.rng.random();
        let rtx_ssrc = (kind == MediaKind::Video).then(|| self.rng.random::<u32>());
        let n = self.senders.len();
        // RFC 8830 §2: msid-id is 1*64 token-char.
        let stream_id = match stream_id {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                id.to_string()
            }
            Some(_) => return Err(Error::Misuse("a stream id is 1 to 64 token characters")),
            None => format!("rtclab-stream-{n}"),
        };
        let sender = LocalSender {
            stream_id,
            track_id: format!("rtclab-track-{n}"),
            ssrc,
            rtx_ssrc,
            cname: self.cname.clone(),
            rids: rids.iter().map(|r| r.to_string()).collect(),
        };
        // An m-line of the peer's offer without a sender of ours takes the
        // track when we answer (JSEP §5.3.1); else a new transceiver.
        let transceiver = self
            .session
            .add_transceiver(kind, Direction::SendRecv, Some(sender));
        let clock_rate = if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
        };
        let mut tracks = Vec::with_capacity(rids.len().max(1));
        let mut first = Some((ssrc, rtx_ssrc, packetizer));
        for layer in 0..rids.len().max(1) {
            // The first layer takes the SSRCs the a=ssrc lines signal.
            let (ssrc, rtx_ssrc, packetizer) = match first.take() {
                Some(first) => first,
                None => (
                    self.rng.random(),
                    Some(self.rng.random()),
                    codec.packetizer(&mut self.rng),
                ),
            };
            let first_seq = self.rng.random();
            tracks.push(TrackId(self.senders.len()));
            self.senders.push(Sender {
                transceiver,
                codec,
                kind,
                rtx_ssrc,
                stream: SendStream::new(ssrc, 0, clock_rate, first_seq),
                negotiated: false,
                mid: None,
                mid_ext: None,
                ext_out: Vec::new(),
                removed: false,
                packetizer,
                codec_name: None,
                rid: rids.get(layer).map(|r| r.to_string()),
                send_rid: false,
            });
        }
        Ok(tracks)
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
            .get(track.0)
            .ok_or(Error::Misuse("no such track"))?;
        if s.removed {
            return Ok(());
        }
        // Every layer of a simulcast track goes with it (one transceiver).
        let transceiver = s.transceiver;
        let mut sources = Vec::new();
        for s in self
            .senders
            .iter_mut()
            .filter(|s| s.transceiver == transceiver && !s.removed)
        {
            s.removed = true;
            s.negotiated = false;
            if s.stream.stats().packets_sent > 0 {
                sources.extend([Some(s.stream.ssrc()), s.rtx_ssrc].into_iter().flatten());
            }
        }
        sources.truncate(MAX_REPORT_BLOCKS);
        self.session.remove_track(transceiver)?;
        if !sources.is_empty() {
            self.send_bye(sources);
        }
        Ok(())
    }

    /// Drops the data-channel m-line: every channel closes now, gracefully
    /// (its streams reset after what it queued, RFC 8831 §6.7; then an SCTP
    /// SHUTDOWN, RFC 9260 §9.2: nothing queued is lost, and
    /// [`datachannel::Event::Closed`] comes for each), and the next offer
    /// rejects the m-line (port 0, JSEP §5.2.2); a peer that applies it
    /// closes its side the same way. Channels can be created again later:
    /// a new m-line and association (an association not yet closed then is
    /// aborted).
    pub fn remove_data_channels(&mut self, now: Instant) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        self.session.remove_data_channel();
        self.pending_channels.clear();
        self.stop_data(now, true);
        Ok(())
    }

    /// Aborts SCTP and forgets the association (its channels close).
    /// Ends the data channels' association: gracefully once it is up
    /// (`flush_sctp` drops it once closed), else by ABORT. `local`: we
    /// removed the m-line, so our channels close at once by resetting their
    /// streams after what they queued (RFC 8831 §6.7, RFC 6525); else the
    /// peer did, and our channels stay open until its resets or the end of
    /// the association, so that what it sent before is still delivered (a
    /// closing channel discards what arrives, W3C). Either way SHUTDOWN
    /// (RFC 9260 §9.2) ends the association once everything queued is
    /// acknowledged: nothing is lost.
    fn stop_data(&mut self, now: Instant, local: bool) {
        if self.data_closing {
            return;
        }
        // A new association numbers its handles from 0 again.
        self.next_channel = 0;
        if let Some(d) = self.data.as_mut()
            && self.data_started
            && !d.is_closed()
        {
            if local {
                let ids: Vec<ChannelId> = d.channels().map(|c| c.id()).collect();
                for id in ids {
                    d.close(now, id);
                }
            }
            d.shutdown(now);
            self.data_closing = true;
            self.flush_sctp();
            return;
        }
        if let Some(d) = self.data.as_mut() {
            d.abort(now);
        }
        self.flush_sctp();
        self.data = None;
        self.data_started = false;
        self.data_closing = false;
    }

    /// `createDataChannel`. Before SCTP exists the channel waits (and the
    /// next offer carries a data-channel m-line); it opens with
    /// [`datachannel::Event::Open`].
    pub fn create_data_channel(&mut self, init: ChannelInit) -> Result<ChannelId, Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        if let Some(d) = self.data.as_mut().filter(|_| !self.data_closing) {
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

    /// Sends one encoded frame (VP8, VP9, an AV1 temporal unit, an H.264
    /// Annex-B access unit, or Opus) on
    /// `track` with RTP timestamp `timestamp`; returns how many RTP packets
    /// it took.
    pub fn send_frame(
        &mut self,
        now: Instant,
        track: TrackId,
        timestamp: u32,
        frame: &[u8],
    ) -> Result<usize, Error> {
        // abs-send-time (for a peer without transport-cc, which estimates
        // on its side and answers with REMB): our NTP time, 6.18 seconds.
        let ast = crate::rtp::ext::values::abs_send_time_from_ntp(self.ntp(now));
        let (t, s) = sending(&mut self.transport, &mut self.senders, track)?;
        self.payloads.clear();
        s.packetizer
            .packetize_into(frame, MAX_RTP_PAYLOAD, &mut self.payloads)?;
        let n = self.payloads.len();
        let tcc_id = s.tcc_id();
        // Sent only without transport-cc, as libwebrtc does.
        let ast_id = s
            .ext_out
            .iter()
            .find(|(c, _)| *c == CANONICAL_ABS_SEND_TIME)
            .map(|(_, id)| *id)
            .filter(|_| tcc_id.is_none());
        for (i, payload) in self.payloads.iter().enumerate() {
            // RFC 8843 §15: the mid header extension lets the receiver
            // route a new SSRC to its m-line; transport-cc numbers every
            // packet for the peer's feedback.
            let tcc = self.twcc_send_seq.to_be_bytes();
            let mut elements: [(u8, &[u8]); 4] = [(0, &[]); 4];
            let mut k = 0;
            if let (Some(id), Some(mid)) = (s.mid_ext, s.mid.as_deref()) {
                elements[k] = (id, mid.as_bytes());
                k += 1;
            }
            // RFC 8852 §3.1: a simulcast layer names itself in every packet.
            if let (Some(id), Some(rid)) = (s.rid_ext(), s.rid.as_deref()) {
                elements[k] = (id, rid.as_bytes());
                k += 1;
            }
            if let Some(id) = ast_id {
                elements[k] = (id, &ast);
                k += 1;
            }
            if let Some(id) = tcc_id {
                elements[k] = (id, &tcc);
                k += 1;
                if self.pacer.is_none() {
                    // Paced, the number is stamped as the packet leaves.
                    self.twcc_send_seq = self.twcc_send_seq.wrapping_add(1);
                }
            }
            if let Some(pacer) = self.pacer.as_mut() {
                let mut buf = self.pace_pool.pop().unwrap_or_default();
                buf.clear();
                s.stream.write_packet(
                    now,
                    timestamp,
                    i + 1 == n,
                    &elements[..k],
                    payload,
                    &mut buf,
                )?;
                let priority = match s.kind {
                    MediaKind::Audio => Priority::Audio,
                    _ => Priority::Video,
                };
                let size = buf.len() + SRTP_OVERHEAD;
                if let Err((_, (_, buf))) = pacer.enqueue(now, priority, size, (tcc_id, buf)) {
                    self.pace_pool.push(buf);
                    return Err(Error::Congested);
                }
                continue;
            }
            self.packet.clear();
            // RFC 3550 §5.1: the marker ends the frame.
            s.stream.write_packet(
                now,
                timestamp,
                i + 1 == n,
                &elements[..k],
                payload,
                &mut self.packet,
            )?;
            t.send_rtp(&self.packet)?;
            if tcc_id.is_some() {
                let seq = u16::from_be_bytes(tcc);
                self.bwe
                    .on_packet_sent(now, seq, self.packet.len() + SRTP_OVERHEAD, None);
            }
            self.media_stats.rtp_sent += 1;
        }
        self.pace(now);
        Ok(n)
    }

    /// RTP mode, sending: one RTP packet on `track`, as a forwarder sends
    /// what it received ([`Event::Rtp`]). The packet's marker, sequence
    /// number, timestamp and payload are kept (a forwarder that switches
    /// sources keeps them continuous with [`RtpPacketMut`]'s setters first);
    /// the SSRC and payload type become the track's; its extension
    /// elements, in the canonical ids of [`RTP_MODE_EXTENSIONS`], are
    /// rewritten to the ids negotiated on the track's m-line (those not
    /// negotiated are dropped, and so are a simulcast layer's rid and
    /// repaired-rid), the mid element to the track's own mid;
    /// padding is dropped. The packet is kept for RTX and protected with
    /// SRTP.
    ///
    /// [`RtpPacketMut`]: crate::rtp::RtpPacketMut
    pub fn send_rtp(&mut self, now: Instant, track: TrackId, packet: &[u8]) -> Result<(), Error> {
        let (t, s) = sending(&mut self.transport, &mut self.senders, track)?;
        let p = RtpPacket::new_checked(packet)?;
        // The elements, rewritten, on the stack: at most 16 are kept. The
        // mid and the transport-wide sequence number are ours.
        let mut elements: [(u8, &[u8]); 16] = [(0, &[]); 16];
        let mut n = 0;
        if let Some(mid) = s.mid_ext.zip(s.mid.as_deref()) {
            elements[0] = (mid.0, mid.1.as_bytes());
            n = 1;
        }
        if let (Some(id), Some(rid)) = (s.rid_ext(), s.rid.as_deref()) {
            elements[n] = (id, rid.as_bytes());
            n += 1;
        }
        let tcc = self.twcc_send_seq.to_be_bytes();
        if let Some(id) = s.tcc_id() {
            elements[n] = (id, &tcc);
            n += 1;
            self.twcc_send_seq = self.twcc_send_seq.wrapping_add(1);
        }
        for e in p.extensions().map_while(Result::ok) {
            if matches!(
                e.id,
                CANONICAL_MID | CANONICAL_TRANSPORT_CC | CANONICAL_RID | CANONICAL_REPAIRED_RID
            ) || n == elements.len()
            {
                continue;
            }
            if let Some(&(_, id)) = s.ext_out.iter().find(|(c, _)| *c == e.id) {
                elements[n] = (id, e.data);
                n += 1;
            }
        }
        self.packet.clear();
        let fields = HeaderFields {
            marker: p.marker(),
            payload_type: s.stream.payload_type(),
            sequence_number: p.sequence_number(),
            timestamp: p.timestamp(),
            ssrc: s.stream.ssrc(),
        };
        write_rtp_packet(fields, &elements[..n], true, p.payload(), &mut self.packet)?;
        s.stream.record_packet(now, &self.packet)?;
        t.send_rtp(&self.packet)?;
        if s.tcc_id().is_some() {
            let seq = u16::from_be_bytes(tcc);
            self.bwe
                .on_packet_sent(now, seq, self.packet.len() + SRTP_OVERHEAD, None);
        }
        self.media_stats.rtp_sent += 1;
        Ok(())
    }

    /// RTP mode, receiving: the receiver of `mid` hands its packets to the
    /// application as [`Event::Rtp`] instead of assembling frames (`true`),
    /// or assembles frames again (`false`). NACKs for losses still go out,
    /// RTX is still turned back into originals; no frame is given up, so
    /// no PLI is sent by itself ([`PeerConnection::request_keyframe`] asks).
    pub fn set_rtp_mode(&mut self, mid: &str, on: bool) -> Result<(), Error> {
        if !self.receivers.iter().any(|r| r.mid == mid) {
            return Err(Error::Misuse("no receiver with this mid"));
        }
        if on && Mid::new(mid).is_none() {
            return Err(Error::Misuse("RTP mode needs a mid of at most 16 bytes"));
        }
        // Every simulcast layer of the m-line; frames are assembled from
        // the primary one only.
        for r in self.receivers.iter_mut().filter(|r| r.mid == mid) {
            if r.rtp_mode != on {
                r.rtp_mode = on;
                let d = (!on && r.primary)
                    .then(|| r.current.map(|c| c.depacketizer()))
                    .flatten();
                r.stream.set_depacketizer(d);
            }
        }
        Ok(())
    }

    /// Gives the buffer of an [`Event::Rtp`] back, to be reused for a later
    /// packet (the receive path then allocates nothing).
    pub fn recycle_rtp(&mut self, packet: Vec<u8>) {
        if let Some(t) = self.transport.as_mut() {
            t.recycle(packet);
        }
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
    ///
    /// On an m-line that receives simulcast, every layer is asked; see
    /// [`PeerConnection::request_keyframe_layer`] for one.
    pub fn request_keyframe(&mut self, mid: &str) -> Result<(), Error> {
        self.request_keyframes(mid, None)
    }

    /// Asks for a keyframe on one simulcast layer of `mid` (its rid, RFC
    /// 8852), or on every layer with `None`: what a forwarder does when a
    /// receiver switches to that layer.
    pub fn request_keyframe_layer(&mut self, mid: &str, rid: Option<&str>) -> Result<(), Error> {
        self.request_keyframes(mid, rid)
    }

    fn request_keyframes(&mut self, mid: &str, rid: Option<&str>) -> Result<(), Error> {
        let rtcp_ssrc = self.rtcp_ssrc;
        let mut ssrcs = [0u32; 8];
        let mut n = 0;
        let mut found = false;
        for r in self.receivers.iter_mut().filter(|r| r.mid == mid) {
            if rid.is_some_and(|rid| r.rid.as_deref() != Some(rid)) {
                continue;
            }
            found = true;
            if let Some(pli) = r.stream.pli(rtcp_ssrc)
                && n < ssrcs.len()
            {
                ssrcs[n] = pli.media_ssrc;
                n += 1;
            }
        }
        if !found {
            return Err(Error::Misuse("no receiver with this mid (and rid)"));
        }
        if n == 0 {
            return Err(Error::Misuse("no media seen on this mid yet"));
        }
        for &ssrc in &ssrcs[..n] {
            self.send_pli(ssrc)?;
            self.media_stats.plis_sent += 1;
        }
        Ok(())
    }

    fn send_pli(&mut self, media_ssrc: u32) -> Result<(), Error> {
        self.send_feedback(&RtcpPacket::Pli(Pli {
            sender_ssrc: self.rtcp_ssrc,
            media_ssrc,
        }))
    }

    /// One RTCP feedback packet, alone (RFC 5506: reduced-size RTCP).
    fn send_feedback(&mut self, p: &RtcpPacket) -> Result<(), Error> {
        let t = self
            .transport
            .as_mut()
            .ok_or(Error::Misuse("not connected"))?;
        self.packet.clear();
        p.write(&mut self.packet)?;
        t.send_rtcp(&self.packet)?;
        Ok(())
    }

    /// The media SSRC the peer sends on `mid` (on its simulcast layer
    /// `rid`, or the first layer).
    fn receiving_ssrc(&self, mid: &str, rid: Option<&str>) -> Result<u32, Error> {
        let r = self
            .receivers
            .iter()
            .find(|r| r.mid == mid && rid.is_none_or(|rid| r.rid.as_deref() == Some(rid)))
            .ok_or(Error::Misuse("no receiver with this mid (and rid)"))?;
        r.stream
            .ssrc()
            .ok_or(Error::Misuse("no media seen on this mid yet"))
    }

    /// Asks for a keyframe with a Full Intra Request (RFC 5104 §4.3.1)
    /// instead of a PLI, for senders that want a decoder refresh point
    /// (a forwarder switching a receiver to this stream). Each call is a
    /// new request (its sequence number advances).
    pub fn request_keyframe_fir(&mut self, mid: &str) -> Result<(), Error> {
        let media_ssrc = self.receiving_ssrc(mid, None)?;
        self.fir_seq = self.fir_seq.wrapping_add(1);
        self.send_feedback(&RtcpPacket::Fir(Fir {
            sender_ssrc: self.rtcp_ssrc,
            entries: vec![(media_ssrc, self.fir_seq)],
        }))
    }

    /// Asks the peer to retransmit `sequence_numbers` of what it sends on
    /// `mid` (a generic NACK, RFC 4585 §6.2.1): what a forwarder does when
    /// one of its receivers NACKs a packet it no longer has
    /// ([`Event::NackUnanswered`]). Receivers NACK losses by themselves.
    pub fn send_nack(&mut self, mid: &str, sequence_numbers: &[u16]) -> Result<(), Error> {
        self.send_nack_layer(mid, None, sequence_numbers)
    }

    /// [`PeerConnection::send_nack`] for one simulcast layer of `mid` (its
    /// rid; `None`: the first layer).
    pub fn send_nack_layer(
        &mut self,
        mid: &str,
        rid: Option<&str>,
        sequence_numbers: &[u16],
    ) -> Result<(), Error> {
        let media_ssrc = self.receiving_ssrc(mid, rid)?;
        if sequence_numbers.is_empty() {
            return Ok(());
        }
        let nack = Nack::from_lost(self.rtcp_ssrc, media_ssrc, sequence_numbers.iter().copied());
        self.send_feedback(&RtcpPacket::Nack(nack))?;
        self.media_stats.nacks_sent += 1;
        Ok(())
    }

    /// Tells the peer our receive-side estimate for everything it sends
    /// us (REMB, draft-alvestrand-rmcat-remb-03 §2.2), e.g. the smallest
    /// estimate of a forwarder's receivers.
    pub fn send_remb(&mut self, bitrate: u64) -> Result<(), Error> {
        let ssrcs: Vec<u32> = self
            .receivers
            .iter()
            .filter_map(|r| r.stream.ssrc())
            .collect();
        self.send_feedback(&RtcpPacket::Remb(Remb {
            sender_ssrc: self.rtcp_ssrc,
            bitrate,
            ssrcs,
        }))
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
                    if let Some(r) = self
                        .receivers
                        .iter_mut()
                        .find(|r| r.stream.ssrc() == Some(sr.ssrc))
                    {
                        r.stream.on_sender_report(now, sr);
                    }
                    self.on_report_blocks(now, now_compact, &sr.reports);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    self.on_report_blocks(now, now_compact, &rr.reports)
                }
                RtcpPacket::Nack(nack) => {
                    let Some(i) = self.sender_index(nack.media_ssrc) else {
                        continue;
                    };
                    // What the history no longer holds: a forwarder may
                    // ask its source for it (send_nack).
                    let missing: Vec<u16> = self.senders[i].stream.not_kept(nack).collect();
                    if !missing.is_empty() {
                        self.push(Event::NackUnanswered {
                            track: TrackId(i),
                            sequence_numbers: missing,
                        });
                    }
                    let s = &mut self.senders[i];
                    let Some(t) = self.transport.as_mut() else {
                        continue;
                    };
                    // RFC 4588 §4: each NACKed packet still kept goes out
                    // again on the RTX stream, with a transport-wide
                    // sequence number of its own.
                    let (tcc_id, seq, bwe) = (s.tcc_id(), &mut self.twcc_send_seq, &mut self.bwe);
                    // RFC 8852 §3.2: an RTX packet of a simulcast layer
                    // names the layer it repairs in repaired-rid, not rid.
                    let rid_ids = s.rid_ext().map(|id| (id, s.ext_id(CANONICAL_REPAIRED_RID)));
                    let sent = s.stream.on_nack(now, nack, |p| {
                        if let (Some((rid, repaired)), Ok(mut m)) =
                            (rid_ids, RtpPacketMut::new_checked(p))
                        {
                            m.remap_extension_ids(|id| if id == rid { repaired } else { Some(id) });
                        }
                        let mut numbered = None;
                        if let (Some(id), Ok(mut m)) = (tcc_id, RtpPacketMut::new_checked(p))
                            && let Some(e) = m.extension_element_mut(id)
                            && e.len() == 2
                        {
                            e.copy_from_slice(&seq.to_be_bytes());
                            numbered = Some(*seq);
                            *seq = seq.wrapping_add(1);
                        }
                        let size = p.len() + SRTP_OVERHEAD;
                        let ok = t.send_rtp(p).is_ok();
                        if let (true, Some(n)) = (ok, numbered) {
                            bwe.on_packet_sent(now, n, size, None);
                        }
                        ok
                    });
                    self.media_stats.rtx_sent += sent as u64;
                }
                RtcpPacket::Pli(pli) => {
                    if let Some(i) = self.sender_index(pli.media_ssrc) {
                        self.senders[i].stream.on_pli();
                        self.push(Event::KeyframeRequested(TrackId(i)));
                    }
                }
                RtcpPacket::Fir(fir) => {
                    for (ssrc, _) in &fir.entries {
                        if let Some(i) = self.sender_index(*ssrc) {
                            self.senders[i].stream.on_fir();
                            self.push(Event::KeyframeRequested(TrackId(i)));
                        }
                    }
                }
                RtcpPacket::TransportCc(fb) => {
                    self.media_stats.twcc_feedback_received += 1;
                    self.bwe.on_feedback(now, fb);
                    self.bwe_events();
                }
                RtcpPacket::Remb(remb) => self.push(Event::Remb {
                    bitrate: remb.bitrate,
                }),
                RtcpPacket::Bye(bye) => {
                    // RFC 3550 §6.6: the source left; its track ends.
                    for ssrc in &bye.sources {
                        if let Some(i) = self
                            .receivers
                            .iter()
                            .position(|r| r.stream.ssrc() == Some(*ssrc))
                        {
                            let mid = self.receivers[i].mid.clone();
                            self.remove_receiver(i);
                            // A simulcast m-line ends with its last layer.
                            if !self.receivers.iter().any(|r| r.mid == mid) {
                                self.push(Event::TrackEnded { mid });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn sender_index(&self, ssrc: u32) -> Option<usize> {
        self.senders.iter().position(|s| s.stream.ssrc() == ssrc)
    }

    /// Report blocks about our senders: RTT, fraction and cumulative loss.
    fn on_report_blocks(&mut self, now: Instant, now_compact: u32, blocks: &[ReportBlock]) {
        for b in blocks {
            if let Some(s) = self.senders.iter_mut().find(|s| s.stream.ssrc() == b.ssrc) {
                s.stream.on_report_block(now_compact, b);
                // The loss-based controller also reads RFC 3550 loss.
                self.bwe.on_report_block(now, b);
            }
        }
        self.bwe_events();
    }

    /// Probes the link at `bitrate` bits per second now (padding at that
    /// rate for a few tens of milliseconds, GCC's probing): a forwarder
    /// asks this before moving a receiver up to a layer its estimate does
    /// not show yet. Needs [`Config::pacing`]; without it nothing happens.
    pub fn probe_bandwidth(&mut self, now: Instant, bitrate: u64) {
        if self.pacer.is_none() {
            return;
        }
        self.last_now = Some(now);
        self.bwe
            .request_probe(now, crate::rtp::bwe::Bitrate::from_f64(bitrate as f64));
        self.bwe_events();
        self.pace(now);
    }

    /// The estimator's news: [`Event::BandwidthEstimate`] when the estimate
    /// moved by 5 % or more since the last one reported (it changes with
    /// nearly every feedback, 20 times a second). Probes need a pacer to
    /// send their padding; without one the estimate climbs by the AIMD
    /// rules alone.
    fn bwe_events(&mut self) {
        while let Some(e) = self.bwe.poll_event() {
            let rate = match e {
                BweEvent::Estimate(rate) => rate,
                BweEvent::Probe(cluster) => {
                    if let (Some(p), Some(now)) = (self.pacer.as_mut(), self.last_now) {
                        p.start_probe(now, cluster);
                    }
                    continue;
                }
            };
            if let Some(p) = self.pacer.as_mut() {
                p.set_estimate(rate);
            }
            let rate = rate.as_u64();
            let moved = self
                .bwe_reported
                .is_none_or(|last| rate.abs_diff(last) * 20 >= last);
            if moved {
                self.bwe_reported = Some(rate);
                self.push(Event::BandwidthEstimate { bitrate: rate });
            }
        }
    }

    /// With [`Config::pacing`]: sends what the pacer lets go at `now`,
    /// stamping each packet's transport-wide sequence number as it leaves;
    /// a probe's padding is RTX copies of the newest packet of a video
    /// track (what libwebrtc sends too: useful bytes, and a receiver that
    /// already has the packet just drops the copy).
    fn pace(&mut self, now: Instant) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        while let Some(release) = pacer.poll_release(now) {
            match release {
                Release::Packet {
                    item: (tcc_id, mut buf),
                    size,
                    probe,
                } => {
                    let seq = stamp_tcc(&mut buf, tcc_id, &mut self.twcc_send_seq);
                    if t.send_rtp(&buf).is_ok() {
                        self.media_stats.rtp_sent += 1;
                        if let Some(seq) = seq {
                            self.bwe.on_packet_sent(now, seq, size, probe);
                        }
                    }
                    if self.pace_pool.len() < 64 {
                        self.pace_pool.push(buf);
                    }
                }
                Release::Padding { size, probe } => {
                    let Some(s) = self
                        .senders
                        .iter_mut()
                        .find(|s| s.negotiated && s.kind == MediaKind::Video)
                    else {
                        continue;
                    };
                    let tcc_id = s.tcc_id();
                    let mut sent = 0;
                    while sent < size {
                        self.packet.clear();
                        if !s.stream.write_padding_rtx(&mut self.packet) {
                            break;
                        }
                        let seq = stamp_tcc(&mut self.packet, tcc_id, &mut self.twcc_send_seq);
                        let len = self.packet.len() + SRTP_OVERHEAD;
                        if t.send_rtp(&self.packet).is_err() {
                            break;
                        }
                        if let Some(seq) = seq {
                            self.bwe.on_packet_sent(now, seq, len, Some(probe));
                        }
                        sent += len;
                    }
                }
            }
        }
        self.bwe_events();
    }

    /// A REMB when the receive-side estimator has one due (at most once a
    /// second, or at once on a 3 % fall), feedback alone (RFC 5506).
    fn remb_due(&mut self, now: Instant) {
        let (Some(r), Some(t)) = (self.remb.as_mut(), self.transport.as_mut()) else {
            return;
        };
        if let Some(remb) = r.poll_remb(now) {
            self.packet.clear();
            if RtcpPacket::Remb(remb).write(&mut self.packet).is_ok() {
                let _ = t.send_rtcp(&self.packet);
            }
        }
    }

    /// W3C `availableOutgoingBitrate`: the send-side estimate, once
    /// transport-cc feedback about our packets came back.
    pub fn available_outgoing_bitrate(&self) -> Option<u64> {
        (self.media_stats.twcc_feedback_received > 0).then(|| self.bwe.estimate().as_u64())
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
            .filter_map(|r| r.stream.report_block(now))
            .collect();
        blocks.truncate(MAX_REPORT_BLOCKS);
        let mut packets = Vec::new();
        let mut ssrcs = Vec::new();
        for s in self.senders.iter_mut().filter(|s| !s.removed) {
            let Some(mut sr) = s.stream.sender_report(now, ntp, Vec::new()) else {
                continue;
            };
            if packets.is_empty() {
                sr.reports = std::mem::take(&mut blocks);
            }
            ssrcs.push(sr.ssrc);
            packets.push(RtcpPacket::SenderReport(sr));
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
                let c = r.stream.stats();
                let (lost, jitter) = r.stream.loss_and_jitter();
                InboundRtpStats {
                    mid: r.mid.clone(),
                    rid: r.rid.map(|r| r.to_string()),
                    kind: r.kind,
                    ssrc: r.stream.ssrc(),
                    codec: r.current_name.clone(),
                    packets_received: c.packets_received,
                    bytes_received: c.bytes_received,
                    header_bytes_received: c.header_bytes_received,
                    packets_lost: lost,
                    jitter: Duration::from_nanos(
                        u64::from(jitter) * 1_000_000_000 / u64::from(r.stream.clock_rate()),
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
        let outbound = self
            .senders
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let c = s.stream.stats();
                OutboundRtpStats {
                    track: TrackId(i),
                    mid: s.mid.clone(),
                    kind: s.kind,
                    ssrc: s.stream.ssrc(),
                    rtx_ssrc: s.rtx_ssrc,
                    codec: s.codec_name.clone(),
                    packets_sent: c.packets_sent,
                    bytes_sent: c.bytes_sent,
                    header_bytes_sent: c.header_bytes_sent,
                    retransmitted_packets_sent: c.retransmitted_packets_sent,
                    retransmitted_bytes_sent: c.retransmitted_bytes_sent,
                    frames_sent: c.frames_sent,
                    nack_count: c.nack_count,
                    pli_count: c.pli_count,
                    fir_count: c.fir_count,
                    sender_reports_sent: c.sender_reports_sent,
                    reports_received: c.reports_received,
                    round_trip_time: c.round_trip_time,
                    fraction_lost: c.fraction_lost,
                    remote_packets_lost: c.remote_packets_lost,
                }
            })
            .collect();
        let mut transport = self.transport_stats.clone();
        if let Some((l, r)) = self.transport.as_ref().and_then(|t| t.selected_pair()) {
            transport.remote_address = r.socket_addr();
            transport.selected_candidate_pair = Some((l.clone(), r.clone()));
        }
        transport.available_outgoing_bitrate = self.available_outgoing_bitrate();
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
        let servers = ice_servers::resolve(&self.ice_servers).map_err(Error::IceServer)?;
        if config.stun_server.is_none() {
            config.stun_server = servers.stun;
        }
        if let Some((server, user, pass)) = servers.turn {
            config.turn = Some(match servers.turn_transport {
                crate::turn::ServerTransport::Udp => {
                    crate::turn::ClientConfig::new(server, &user, &pass)
                }
                crate::turn::ServerTransport::Tcp => {
                    crate::turn::ClientConfig::tcp(server, &user, &pass)
                }
            });
        }
        if self.ice_transport_policy == IceTransportPolicy::Relay {
            if config.turn.is_none() {
                return Err(Error::Misuse(
                    "iceTransportPolicy relay needs a TURN server in ice_servers",
                ));
            }
            // Only the relayed candidate: no host or server-reflexive one
            // is signaled or used (W3C §4.2.6).
            config.ice.relay_only = true;
            config.stun_server = None;
        }
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
            if !receiving && self.receivers.iter().any(|r| &r.mid == mid) {
                while let Some(i) = self.receivers.iter().position(|r| &r.mid == mid) {
                    self.remove_receiver(i);
                }
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
                    self.stop_data(now, false);
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
                if self.data_closing {
                    // A new data m-line while the old association still
                    // closes: that one goes now.
                    if let Some(d) = self.data.as_mut() {
                        d.abort(now);
                    }
                    self.flush_sctp();
                    self.data = None;
                    self.data_started = false;
                    self.data_closing = false;
                }
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
                let tr = self.session.transceivers().get(s.transceiver);
                let tmid = tr.and_then(|t| t.mid.clone());
                if tmid.as_deref() == Some(mid.as_str()) {
                    s.mid = Some(mid.clone());
                    s.mid_ext = mid_ext;
                    s.ext_out = ext_map(&m.extensions)
                        .map(|(id, canonical)| (canonical, id))
                        .collect();
                    // Simulcast (RFC 8853 §5.2): the layers the answer
                    // took send with their rid; without simulcast agreed,
                    // the first layer sends alone, as a plain stream.
                    let first_layer = tr
                        .and_then(|t| t.sender.as_ref())
                        .and_then(|l| l.rids.first());
                    let layer_sends = match &s.rid {
                        None => true,
                        Some(rid) if m.send_rids.is_empty() => first_layer == Some(rid),
                        Some(rid) => m.send_rids.contains(rid),
                    };
                    s.send_rid = s.rid.is_some() && !m.send_rids.is_empty();
                    let codec = m
                        .codecs
                        .iter()
                        .find(|c| TrackCodec::from_negotiated(c) == Some(s.codec))
                        .filter(|_| m.direction.sends() && !s.removed && layer_sends);
                    s.negotiated = codec.is_some();
                    s.codec_name = codec.map(|c| c.name.clone());
                    if let Some(c) = codec {
                        s.stream.set_codec(c.payload_type, c.clock_rate);
                        // The codec (and so its RTX payload type) may
                        // change in a renegotiation; the history stays.
                        if let (Some(pt), Some(rtx_ssrc)) = (c.rtx_payload_type, s.rtx_ssrc) {
                            let first = self.rng.random();
                            s.stream.set_rtx(rtx_ssrc, pt, RTX_HISTORY, first);
                        }
                    }
                }
            }
            // A receiver where the peer sends.
            if m.direction.receives() && !self.receivers.iter().any(|r| &r.mid == mid) {
                let codecs: Vec<(u8, TrackCodec, String)> = m
                    .codecs
                    .iter()
                    .filter_map(|c| {
                        TrackCodec::from_negotiated(c).map(|k| (c.payload_type, k, c.name.clone()))
                    })
                    .collect();
                let first = codecs.first().map(|c| c.1).unwrap_or(match kind {
                    MediaKind::Audio => TrackCodec::Opus,
                    _ => TrackCodec::Vp8,
                });
                let clock_rate = m.codecs.first().map_or(90_000, |c| c.clock_rate);
                let ext_id = |uri: &str| {
                    m.extensions
                        .iter()
                        .find(|(_, u)| u == uri)
                        .and_then(|(id, _)| u8::try_from(*id).ok())
                };
                // One receiver per simulcast layer (RFC 8853), or one.
                let layers: Vec<Option<Mid>> = if m.receive_rids.is_empty() {
                    vec![None]
                } else {
                    m.receive_rids
                        .iter()
                        .filter_map(|r| Mid::new(r))
                        .map(Some)
                        .collect()
                };
                for (layer, rid) in layers.into_iter().enumerate() {
                    let idx = self.receivers.len();
                    let primary = layer == 0;
                    let mut stream = ReceiveStream::new(
                        clock_rate,
                        primary.then(|| first.depacketizer()),
                        ASSEMBLER_CAPACITY,
                        kind == MediaKind::Video, // NACKs for video (RFC 4585 §6.2.1)
                        MAX_WAIT,
                    );
                    if rid.is_none()
                        && let Some(&ssrc) = m.remote_ssrcs.first()
                    {
                        stream.set_ssrc(ssrc);
                    }
                    stream.set_rtx_types(
                        m.codecs
                            .iter()
                            .filter_map(|c| c.rtx_payload_type.map(|r| (r, c.payload_type)))
                            .collect(),
                    );
                    self.receivers.push(Receiver {
                        mid: mid.clone(),
                        mid_key: Mid::new(mid),
                        rid,
                        primary,
                        rid_ext: ext_id(crate::sdp::codec::uri::RTP_STREAM_ID),
                        repaired_rid_ext: ext_id(crate::sdp::codec::uri::REPAIRED_RTP_STREAM_ID),
                        kind,
                        payload_types: m.codecs.iter().map(|c| c.payload_type).collect(),
                        codecs: codecs.clone(),
                        current: Some(first),
                        current_name: None,
                        rtp_mode: false,
                        remb: m
                            .codecs
                            .iter()
                            .any(|c| c.feedback.iter().any(|f| f.kind == "goog-remb"))
                            && !m
                                .codecs
                                .iter()
                                .any(|c| c.feedback.iter().any(|f| f.kind == "transport-cc")),
                        ext_in: ext_map(&m.extensions).collect(),
                        stream,
                    });
                    // Signaled SSRCs route to the single stream; simulcast
                    // layers are told apart by their rid (RFC 8852).
                    if rid.is_none() {
                        for &ssrc in &m.remote_ssrcs {
                            self.ssrc_routes.insert(ssrc, idx);
                        }
                        for &(_, rtx) in &m.remote_rtx_ssrcs {
                            self.ssrc_routes.insert(rtx, idx);
                        }
                    }
                }
                if self.remote_tcc_ext.is_none() {
                    self.remote_tcc_ext = ext_id(crate::sdp::codec::uri::TRANSPORT_CC);
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
        if self.data_closing && d.is_closed() {
            self.data = None;
            self.data_started = false;
            self.data_closing = false;
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

    /// Routes one RTP packet: by SSRC, else by the mid header extension
    /// (RFC 8843 §9.2), learning the SSRC; else by a payload type only one
    /// receiver uses.
    fn on_rtp(&mut self, now: Instant, p: Vec<u8>) {
        let Ok(packet) = RtpPacket::new_checked(&p) else {
            return;
        };
        let ssrc = packet.ssrc();
        // The transport-wide sequence number, if negotiated: its arrival
        // time goes into our next transport-cc feedback, whichever stream
        // the packet belongs to (padding and probes included).
        if let Some(seq) = self
            .remote_tcc_ext
            .and_then(|id| packet.extension_element(id))
            .and_then(crate::rtp::ext::values::transport_cc_seq)
        {
            let epoch = *self.epoch.get_or_insert(now);
            let us = now.saturating_duration_since(epoch).as_micros() as i64;
            self.twcc.on_packet(seq, us);
            self.twcc_media_ssrc = ssrc;
            self.next_twcc.get_or_insert(now + TWCC_INTERVAL);
        }
        let idx = match self.ssrc_routes.get(&ssrc) {
            Some(&i) => Some(i),
            None => {
                let by_mid = self
                    .remote_mid_ext
                    .and_then(|id| packet.extension_element(id))
                    .and_then(|mid| {
                        let i = self
                            .receivers
                            .iter()
                            .position(|r| r.mid.as_bytes() == mid)?;
                        let r = &self.receivers[i];
                        if r.rid.is_none() {
                            return Some(i);
                        }
                        // Simulcast: the layer by the rid, or for an RTX
                        // stream by the rid it repairs (RFC 8852 §3).
                        let rid = r
                            .rid_ext
                            .and_then(|id| packet.extension_element(id))
                            .or_else(|| {
                                r.repaired_rid_ext
                                    .and_then(|id| packet.extension_element(id))
                            });
                        // A sender that agreed to simulcast but sends one
                        // stream without rids (Firefox, when it drops its
                        // layers) is the first layer.
                        let Some(rid) = rid else {
                            return Some(i);
                        };
                        self.receivers.iter().position(|l| {
                            l.mid.as_bytes() == mid && l.rid.is_some_and(|x| x.as_bytes() == rid)
                        })
                    });
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
        if !r.payload_types.contains(&pt) && !r.stream.is_rtx(pt) {
            return;
        }

        // Receive-side estimation over abs-send-time, for a REMB sender.
        if r.remb
            && let Some(ast) = r
                .ext_in
                .iter()
                .find(|(_, c)| *c == CANONICAL_ABS_SEND_TIME)
                .and_then(|(id, _)| packet.extension_element(*id))
                .and_then(crate::rtp::ext::values::abs_send_time)
        {
            let rtcp_ssrc = self.rtcp_ssrc;
            self.remb
                .get_or_insert_with(|| {
                    RembEstimator::new(
                        rtcp_ssrc,
                        BweConfig::default().start,
                        BweConfig::default().min,
                        BweConfig::default().max,
                    )
                })
                .on_packet(now, ast, p.len(), packet.ssrc());
        }
        // The peer may switch codecs among the negotiated payload types:
        // a new depacketizer (frames of the old codec in flight are lost).
        if let Some((_, codec, name)) = r.codecs.iter().find(|(p, _, _)| *p == pt) {
            if r.current != Some(*codec) {
                r.current = Some(*codec);
                if !r.rtp_mode {
                    r.stream.set_depacketizer(Some(codec.depacketizer()));
                }
            }
            if r.current_name.as_deref() != Some(name.as_str()) {
                r.current_name = Some(name.clone());
            }
        }
        let rtx = match r.stream.receive(now, &packet) {
            Some(Received::Rtx) => true,
            Some(Received::Media) => false,
            None => return,
        };
        self.media_stats.rtx_received += u64::from(rtx);
        if r.rtp_mode
            && let Some(mid) = r.mid_key
        {
            let rid = r.rid;
            // The packet goes to the application in the buffer it came
            // in, its extension ids made canonical.
            let mut buf = p;
            if rtx {
                buf.clear();
                buf.extend_from_slice(r.stream.rebuilt());
            }
            if let Ok(mut m) = RtpPacketMut::new_checked(&mut buf) {
                let map = &r.ext_in;
                m.remap_extension_ids(|id| map.iter().find(|(n, _)| *n == id).map(|(_, c)| *c));
            }
            self.push(Event::Rtp {
                mid,
                rid,
                packet: buf,
            });
        } else if let Some(t) = self.transport.as_mut() {
            t.recycle(p);
        }
        self.receiver_feedback(now, i);
    }

    /// A receiver's frames out; its NACKs (RFC 4585 §6.2.1) and, when a
    /// frame is given up, a PLI.
    fn receiver_feedback(&mut self, now: Instant, i: usize) {
        let rtcp_ssrc = self.rtcp_ssrc;
        let Some(r) = self.receivers.get_mut(i) else {
            return;
        };
        let mut rtcp = std::mem::take(&mut self.feedback);
        r.stream.feedback(now, rtcp_ssrc, |p| rtcp.push(p));
        if let Some(t) = self.transport.as_mut() {
            for p in rtcp.drain(..) {
                self.packet.clear();
                if p.write(&mut self.packet).is_ok() && t.send_rtcp(&self.packet).is_ok() {
                    match p {
                        RtcpPacket::Nack(_) => self.media_stats.nacks_sent += 1,
                        _ => self.media_stats.plis_sent += 1,
                    }
                }
            }
        }
        rtcp.clear();
        self.feedback = rtcp;
        while let Some(frame) = r.stream.pop_frame() {
            self.media_stats.frames_received += 1;
            let e = Event::Frame {
                mid: r.mid.clone(),
                frame,
            };
            if self.events.len() < MAX_EVENTS {
                self.events.push_back(e);
            }
        }
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
                if RtcpPacket::TransportCc(fb).write(&mut self.packet).is_ok()
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
