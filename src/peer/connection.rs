//! [`PeerConnection`]: the JSEP-like face over [`Transport`], [`sdp::Session`],
//! a [`datachannel::Connection`] and per-track RTP packetizing and frame
//! assembly, as one sans-IO [`Machine`]. See the [module doc](super).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::transport::{self, Config as TransportConfig, DtlsRole, IceRole, Transport};
use crate::datachannel::{self, ChannelId, ChannelInit, ConnectionConfig, DataChannelError};
use crate::dtls::cert::Certificate;
use crate::ice::{Candidate, ConnectionState, Credentials};
use crate::machine::{Machine, Receive, Transmit};
use crate::rtp::ext::Extensions;
use crate::rtp::jitter::{Frame, FrameAssembler};
use crate::rtp::nack::{NackGenerator, RtxSender, decode_rtx};
use crate::rtp::opus::{OpusDepacketizer, OpusPacketizer};
use crate::rtp::payload::{Depacketizer, Packetizer};
use crate::rtp::rtcp::{Pli, RtcpPacket};
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
    pub transport: Option<TransportConfig>,
    /// SCTP tunables (its ports come from SDP).
    pub sctp: crate::sctp::Config,
    /// The `a=setup` we answer an `actpass` offer with: `Active` (we are
    /// the DTLS client, as Chromium does; the default) or `Passive`.
    pub answer_setup: sdp::Setup,
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
            sctp: crate::sctp::Config::default(),
            answer_setup: sdp::Setup::Active,
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

/// The packetizers a sender can use.
#[derive(Debug)]
enum AnyPacketizer {
    Vp8(Vp8Packetizer),
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
            AnyPacketizer::Opus(p) => p.packetize(frame, mtu, out),
        }
    }
}

/// The depacketizers a receiver can use.
#[derive(Debug, Clone)]
enum AnyDepacketizer {
    Vp8(Vp8Depacketizer),
    Opus(OpusDepacketizer),
}

impl Depacketizer for AnyDepacketizer {
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), RtpError> {
        match self {
            AnyDepacketizer::Vp8(d) => d.depacketize(payload, frame),
            AnyDepacketizer::Opus(d) => d.depacketize(payload, frame),
        }
    }
    fn reset(&mut self) {
        match self {
            AnyDepacketizer::Vp8(d) => d.reset(),
            AnyDepacketizer::Opus(d) => d.reset(),
        }
    }
    fn is_frame_start(&self, payload: &[u8]) -> bool {
        match self {
            AnyDepacketizer::Vp8(d) => d.is_frame_start(payload),
            AnyDepacketizer::Opus(d) => d.is_frame_start(payload),
        }
    }
    fn is_keyframe(&self, payload: &[u8]) -> bool {
        match self {
            AnyDepacketizer::Vp8(d) => d.is_keyframe(payload),
            AnyDepacketizer::Opus(d) => d.is_keyframe(payload),
        }
    }
    fn is_frame_end(&self, payload: &[u8], marker: bool) -> bool {
        match self {
            AnyDepacketizer::Vp8(d) => d.is_frame_end(payload, marker),
            AnyDepacketizer::Opus(d) => d.is_frame_end(payload, marker),
        }
    }
}

/// One of our tracks.
#[derive(Debug)]
struct Sender {
    transceiver: TransceiverId,
    ssrc: u32,
    rtx_ssrc: Option<u32>,
    seq: u16,
    /// Set once negotiated and the codec has RTX (RFC 4588): the history.
    rtx: Option<RtxSender>,
    /// Set once negotiated: payload type, mid and the mid extension id.
    payload_type: Option<u8>,
    mid: Option<String>,
    mid_ext: Option<u8>,
    packetizer: AnyPacketizer,
}

/// One m-line the peer sends on.
#[derive(Debug)]
struct Receiver {
    mid: String,
    /// The SSRC media last came from (where a PLI goes).
    ssrc: Option<u32>,
    /// `(rtx payload type, media payload type)` pairs (`apt=`).
    rtx_types: Vec<(u8, u8)>,
    /// Video: NACKs for holes (RFC 4585 §6.2.1).
    nack: Option<NackGenerator>,
    payload_types: Vec<u8>,
    assembler: FrameAssembler<AnyDepacketizer>,
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
    media_stats: MediaStats,
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
            media_stats: MediaStats::default(),
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
        let packetizer = match kind {
            MediaKind::Video => AnyPacketizer::Vp8(Vp8Packetizer::new(self.rng.random())),
            MediaKind::Audio => AnyPacketizer::Opus(OpusPacketizer),
            MediaKind::Application => return Err(Error::Misuse("a track is audio or video")),
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
            cname: "rtclab".into(),
        };
        // An m-line of the peer's offer without a sender of ours takes the
        // track when we answer (JSEP §5.3.1); else a new transceiver.
        let transceiver = self
            .session
            .add_transceiver(kind, Direction::SendRecv, Some(sender));
        self.senders.push(Sender {
            transceiver,
            ssrc,
            rtx_ssrc,
            seq: self.rng.random(),
            rtx: None,
            payload_type: None,
            mid: None,
            mid_ext: None,
            packetizer,
        });
        Ok(TrackId(n))
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
    /// or [`PeerConnection::create_answer`] gave.
    pub fn set_local_description(
        &mut self,
        now: Instant,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), Error> {
        match kind {
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
    /// and answer `a=setup:active`, the DTLS client) or its answer to ours.
    pub fn set_remote_description(
        &mut self,
        now: Instant,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        let sd = SessionDescription::parse_str(sdp)?;
        match kind {
            SdpType::Offer => {
                if self.signaling == SignalingState::HaveLocalOffer {
                    return Err(Error::Misuse("glare: our offer is pending"));
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

    /// Sends one encoded frame (VP8 or Opus) on `track` with RTP timestamp
    /// `timestamp`; returns how many RTP packets it took.
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
            "the track is not negotiated (or not sending)",
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
            s.seq = s.seq.wrapping_add(1);
        }
        let _ = now;
        Ok(n)
    }

    /// Sends a text message on a data channel.
    pub fn send_text(&mut self, now: Instant, id: ChannelId, text: &str) -> Result<(), Error> {
        let d = self
            .data
            .as_mut()
            .ok_or(Error::Misuse("data channels not up"))?;
        d.send_text(now, id, text)?;
        self.flush_sctp();
        Ok(())
    }

    /// Sends a binary message on a data channel.
    pub fn send_binary(&mut self, now: Instant, id: ChannelId, data: &[u8]) -> Result<(), Error> {
        let d = self
            .data
            .as_mut()
            .ok_or(Error::Misuse("data channels not up"))?;
        d.send_binary(now, id, data)?;
        self.flush_sctp();
        Ok(())
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
        self.send_pli(media_ssrc)
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

    /// RTCP from the peer: PLI and FIR (RFC 5104 §4.3) on one of our SSRCs
    /// become [`Event::KeyframeRequested`].
    fn on_rtcp(&mut self, p: &[u8]) {
        let Ok(packets) = RtcpPacket::parse_compound(p, true) else {
            return;
        };
        for packet in packets {
            if let RtcpPacket::Nack(nack) = &packet {
                let Some(s) = self.senders.iter_mut().find(|s| s.ssrc == nack.media_ssrc) else {
                    continue;
                };
                let (Some(rtx), Some(t)) = (s.rtx.as_mut(), self.transport.as_mut()) else {
                    continue;
                };
                // RFC 4588 §4: each NACKed packet still kept goes out again
                // on the RTX stream.
                for p in rtx.on_nack(nack) {
                    if t.send_rtp(&p).is_ok() {
                        self.media_stats.rtx_sent += 1;
                    }
                }
                continue;
            }
            let ssrcs: Vec<u32> = match &packet {
                RtcpPacket::Pli(pli) => vec![pli.media_ssrc],
                RtcpPacket::Fir(fir) => fir.entries.iter().map(|(s, _)| *s).collect(),
                _ => continue,
            };
            for ssrc in ssrcs {
                if let Some(i) = self.senders.iter().position(|s| s.ssrc == ssrc) {
                    self.push(Event::KeyframeRequested(TrackId(i)));
                }
            }
        }
    }

    /// `close()`: SCTP aborted, DTLS close_notify, everything freed.
    pub fn close(&mut self, now: Instant) {
        if let Some(d) = self.data.as_mut() {
            d.abort(now);
        }
        self.flush_sctp();
        self.data = None;
        if let Some(t) = self.transport.as_mut() {
            t.close();
        }
        self.drain(now);
        self.receivers.clear();
        self.ssrc_routes.clear();
        self.set_state(PeerConnectionState::Closed);
        self.set_signaling(SignalingState::Closed);
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
            None => TransportConfig::new(role, certificate),
        };
        config.host_candidates = self.host_candidates.clone();
        config.stun_server = self.stun_server;
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
            let (Some(mid), Some(kind)) = (m.mid.as_ref(), m.kind) else {
                continue;
            };
            if m.rejected {
                continue;
            }
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
            // Our sender on this m-line.
            for s in &mut self.senders {
                let tmid = self
                    .session
                    .transceivers()
                    .get(s.transceiver)
                    .and_then(|t| t.mid.clone());
                if tmid.as_deref() == Some(mid.as_str()) {
                    s.mid = Some(mid.clone());
                    s.mid_ext = mid_ext;
                    let codec = m.codecs.first().filter(|_| m.direction.sends());
                    s.payload_type = codec.map(|c| c.payload_type);
                    let rtx_pt = codec.and_then(|c| c.rtx_payload_type);
                    if let (Some(pt), Some(rtx_ssrc), None) = (rtx_pt, s.rtx_ssrc, &s.rtx) {
                        s.rtx = Some(RtxSender::new(RTX_HISTORY, rtx_ssrc, pt, self.rng.random()));
                    }
                }
            }
            // A receiver where the peer sends.
            if m.direction.receives() && !self.receivers.iter().any(|r| &r.mid == mid) {
                let depacketizer = match kind {
                    MediaKind::Video => AnyDepacketizer::Vp8(Vp8Depacketizer),
                    _ => AnyDepacketizer::Opus(OpusDepacketizer),
                };
                let idx = self.receivers.len();
                self.receivers.push(Receiver {
                    mid: mid.clone(),
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
                    assembler: FrameAssembler::new(depacketizer, ASSEMBLER_CAPACITY),
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
                    self.start_data(now);
                }
                transport::Event::Rtp(p) => self.on_rtp(now, &p),
                transport::Event::Rtcp(p) => self.on_rtcp(&p),
                transport::Event::ApplicationData(p) => {
                    if let Some(d) = self.data.as_mut() {
                        d.handle_packet(now, &p);
                    }
                    self.flush_sctp();
                }
                transport::Event::Failed(e) => {
                    self.data = None;
                    self.receivers.clear();
                    self.ssrc_routes.clear();
                    self.push(Event::Error(Error::Transport(e)));
                    self.set_state(PeerConnectionState::Failed);
                }
                transport::Event::Closed => {
                    self.data = None;
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
            match RtpPacket::new_checked(&original) {
                Ok(o) => o,
                Err(_) => return,
            }
        } else if r.payload_types.contains(&pt) {
            r.ssrc = Some(ssrc);
            packet
        } else {
            return;
        };
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
                        RtcpPacket::Nack(_) => self.media_stats.nacks_sent += 1,
                        _ => self.media_stats.plis_sent += 1,
                    }
                }
            }
        }
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
        if let Some(d) = self.data.as_mut()
            && self.data_started
            && d.poll_timeout().is_some_and(|w| w <= now)
        {
            d.handle_timeout(now);
        }
        self.flush_sctp();
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transport.as_mut()?.poll_transmit()
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
        [t, d].into_iter().chain(media).flatten().min()
    }
}
