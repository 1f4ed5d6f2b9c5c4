//! A selective forwarding unit: many to many, each participant sending its
//! media once (chapter 10).
//!
//! In a mesh every participant uploads its camera to every other one. An
//! SFU takes each participant's upload once and sends a copy to every
//! other participant of the room, *without decoding it*: the RTP packets
//! are received, checked (SRTP), rewritten (SSRC, sequence number,
//! timestamp, header extension ids) and protected again per subscriber.
//!
//! ```text
//!   alice ──camera (3 simulcast layers)──►┐          ┌──► bob:   alice's h layer
//!                                         │   SFU    ├──► carol: alice's l layer (slow link)
//!   bob ────camera────────────────────────►  one UDP ├──► alice: bob's video, carol's …
//!   carol ──camera────────────────────────►   port   │
//!                                         └──────────┘
//! ```
//!
//! [`Sfu`] is sans-IO like every machine of rtclab ([`crate::machine::Machine`]):
//! every participant is a [`PeerConnection`] in RTP mode, and all of them
//! share one UDP socket. Datagrams are routed as [`crate::peer::PeerSet`]
//! routes them, by the same table ([`Router`]): a STUN Binding request by
//! the first half of its USERNAME (`our-ufrag:theirs`, RFC 8445 §7.2.2),
//! since the SFU chose each participant's ufrag; anything else by a
//! 5-tuple learned for the participant once its ICE agent holds the
//! remote address.
//!
//! What the forwarding does, each piece in [`forward`]:
//! - **Rewriting** ([`Rewriter`]): each subscriber gets its own continuous
//!   stream per track, whatever layer or source feeds it.
//! - **Simulcast** (RFC 8853, rids of RFC 8851/8852): the publisher sends
//!   several layers; each subscriber gets the best whose measured rate fits
//!   its bandwidth estimate (transport-cc feedback, [`crate::rtp::bwe`]),
//!   switching only at a keyframe of the new layer ([`choose_layer`]).
//! - **Repair at the SFU**: a subscriber's NACK is answered on its link
//!   (RTX, RFC 4588) from the publisher layer's packet cache, one per
//!   published stream for all its subscribers (a history per subscriber
//!   and track was most of a subscriber's memory); only what the SFU
//!   itself lost is NACKed to the publisher.
//! - **Keyframe requests aggregated** ([`KeyframeThrottle`]): many joiners
//!   or layer switches make one PLI per publisher layer per interval.
//! - **Instant join** ([`KeyframeCache`]): a new subscriber starts from the
//!   packets of the publisher's last keyframe and those since, at once.
//! - **Audio**: Opus forwarded as is; the audio level (RFC 6464) of each
//!   publisher picks the active speaker, announced on the data channel.
//! - **Data**: text on a participant's `chat` channel goes to everyone else
//!   in the room.
//!
//! The signaling is the SFU's own ([`ClientSignal`], [`ServerSignal`]):
//! the page offers once (its camera, microphone and chat channel), the SFU
//! answers; from then on only the SFU offers, each time tracks come or go,
//! so two offers never cross (no glare: the page never offers again).

pub mod cascade;
pub mod forward;
pub mod placement;
pub mod public_ip;
pub mod server;
pub mod svc;
pub mod vp9svc;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

pub use forward::{KeyframeCache, KeyframeThrottle, Origin, RateMeter, Rewriter, choose_layer};
use svc::{SvcDown, SvcForward, SvcFrame, SvcTrack};
use vp9svc::{Vp9Down, Vp9Frame, Vp9Track};

use crate::datachannel::{self, ChannelId, Message};
use crate::dtls::cert::Certificate;
use crate::ice::Credentials;
use crate::machine::{Machine, Outbox, Receive, Transmit, TransmitMeta};
use crate::peer::set::{Hosted, Router, Routes};
use crate::peer::{
    self, PeerConnection, PeerConnectionState, RTP_MODE_DEPENDENCY_DESCRIPTOR, Renumber, SdpType,
    SignalingState, TrackId,
};
use crate::rtp::codec::{AnyDepacketizer, Codec};
use crate::rtp::nack::SendHistory;
use crate::rtp::{Depacketizer, RtpPacket};
use crate::sdp::{MediaKind, Mid};

/// A participant, for the life of the SFU (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// How the SFU runs.
#[derive(Debug)]
pub struct Config {
    /// The SFU's DTLS certificate, the same for every participant.
    pub certificate: Certificate,
    /// The SFU's UDP address(es): every participant's host candidate.
    pub host_candidates: Vec<SocketAddr>,
    /// Participants per room who publish (pages and WHIP clients; WHEP
    /// viewers count only towards [`Config::max_participants`]).
    pub max_room_size: usize,
    /// Participants in all.
    pub max_participants: usize,
    /// What one publisher may send, in bits per second: told to it by
    /// REMB each second, and packets far beyond it are dropped.
    pub max_publisher_bitrate: u64,
    /// Instant join from the keyframe cache (else a joiner waits for a PLI
    /// round trip and the next keyframe).
    pub keyframe_cache: bool,
    /// Packets replayed from keyframe caches per packet forwarded, at
    /// most: a wave of joiners (a meeting's start, a hundred viewers at
    /// once) starts a few per packet and the rest at the packets after
    /// (a video packet comes every 8 ms at 1 Mbit/s). One joiner is
    /// always started, whatever its cache holds.
    pub replay_budget: usize,
    /// At most one keyframe request per publisher layer per interval.
    pub keyframe_interval: Duration,
    /// How often the active speaker is chosen.
    pub speaker_interval: Duration,
    /// Pace each subscriber's media and probe its link at the start
    /// ([`peer::Config::pacing`]): without probes a subscriber's estimate
    /// climbs from what the lowest layer sends by 8 % a second, and a
    /// high layer would take minutes to reach.
    pub pacing: bool,
    /// Scalable video by the Dependency Descriptor ([`svc`]): the SFU
    /// negotiates the descriptor, and a single-stream video track whose
    /// packets carry it with several decode targets is forwarded per
    /// subscriber at the decode target its estimate carries (Chromium's
    /// AV1 `L3T3_KEY`, `tests/sfu_browser.rs`); a VP9 track without the
    /// descriptor is forwarded so by its VP9 payload descriptor's layers
    /// ([`vp9svc`]) when they are several; simulcast tracks and
    /// single-layer streams (with or without the descriptor) are
    /// forwarded as without it. Off by default (`rtclab sfu
    /// --scalable-video` turns it on): the browser tests pass with it on
    /// (the simulcast one 13 of 13 runs), but the cascade links, the bus
    /// nodes and the capture have not been tested with the descriptor
    /// negotiated.
    pub scalable_video: bool,
    /// The address the host candidate is signaled with, when the socket's
    /// own is behind a one-to-one NAT (`rtclab sfu --public-ip`,
    /// [`public_ip`]); `None`: the socket's.
    pub public_ip: Option<std::net::IpAddr>,
}

impl Config {
    /// Defaults: rooms of 16, 500 participants, 5 Mbit/s per publisher,
    /// the keyframe cache on, one PLI per 300 ms, a speaker every 500 ms.
    pub fn new(certificate: Certificate, host_candidates: Vec<SocketAddr>) -> Config {
        Config {
            certificate,
            host_candidates,
            max_room_size: 16,
            max_participants: 500,
            max_publisher_bitrate: 5_000_000,
            keyframe_cache: true,
            replay_budget: REPLAY_BUDGET,
            keyframe_interval: Duration::from_millis(300),
            speaker_interval: Duration::from_millis(500),
            pacing: true,
            scalable_video: false,
            public_ip: None,
        }
    }
}

/// What a participant's page sends the SFU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientSignal {
    /// The page's one offer (camera, microphone, chat channel).
    Offer(String),
    /// The answer to an offer of the SFU.
    Answer(String),
    /// A trickled ICE candidate (`candidate:…`).
    Candidate(String),
    /// The most the page wants to receive, in bits per second (a data
    /// saver; `None` lifts it): see [`Sfu::set_max_receive_bitrate`].
    MaxReceiveBitrate(Option<u64>),
}

/// What the SFU sends a participant's page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerSignal {
    /// The answer to the page's offer.
    Answer(String),
    /// An offer: tracks came or went.
    Offer(String),
    /// One of the SFU's ICE candidates.
    Candidate(String),
    /// Someone joined the room (their media arrives as the stream `pN`).
    Joined(ParticipantId),
    /// Someone left: their tiles go.
    Left(ParticipantId),
    /// The participant's connection failed or was refused.
    Error(String),
}

/// What happened: signaling to deliver, and news for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A signaling message for a participant's page: deliver it.
    Signal {
        /// To whom.
        participant: ParticipantId,
        /// What.
        signal: ServerSignal,
    },
    /// The participant's ICE and DTLS are up.
    Connected(ParticipantId),
    /// The participant is gone (left, failed or closed).
    Left(ParticipantId),
    /// The participant publishes a track (`mid`, its kind, its layers).
    Published {
        /// Who.
        participant: ParticipantId,
        /// The m-line of their offer.
        mid: Mid,
        /// Audio or video.
        kind: MediaKind,
    },
    /// The loudest participant of a room changed.
    ActiveSpeaker {
        /// The room.
        room: String,
        /// Who.
        participant: ParticipantId,
    },
}

/// Why the SFU refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The room holds [`Config::max_room_size`] participants.
    RoomFull,
    /// The SFU holds [`Config::max_participants`].
    Full,
    /// No such participant.
    UnknownParticipant,
    /// A signal out of turn (e.g. a second offer).
    Protocol(&'static str),
    /// The participant's connection refused it (bad SDP, …).
    Peer(peer::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::RoomFull => f.write_str("the room is full"),
            Error::Full => f.write_str("the SFU is full"),
            Error::UnknownParticipant => f.write_str("no such participant"),
            Error::Protocol(m) => write!(f, "signaling out of turn: {m}"),
            Error::Peer(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Peer(e) => Some(e),
            _ => None,
        }
    }
}

impl From<peer::Error> for Error {
    fn from(e: peer::Error) -> Error {
        Error::Peer(e)
    }
}

/// How a participant takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The SFU's page: publishes and receives everyone else, renegotiated
    /// by the SFU as tracks come and go.
    Page,
    /// A WHIP client (RFC 9725): publishes only; its one offer/answer is
    /// never renegotiated.
    Publisher,
    /// A WHEP client: receives the room's tracks that exist when it
    /// offers (its offer's `recvonly` m-lines take one video and one
    /// audio track), with no renegotiation after.
    Viewer,
    /// A link to another SFU node of the room ([`cascade`]): sends this
    /// node's publishers there once, receives that node's.
    Cascade,
    /// A publisher of another node, fed through a [`Role::Cascade`] link.
    Remote,
}

/// Counters, for tests and `rtclab speed sfu`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// RTP packets received from publishers.
    pub received: u64,
    /// RTP packets sent to subscribers (copies).
    pub forwarded: u64,
    /// Keyframe requests (PLI) sent to publishers.
    pub keyframe_requests: u64,
    /// NACKs passed on to publishers (what a subscriber lost and the SFU
    /// never had).
    pub nacks_to_publishers: u64,
    /// Subscribers started from the keyframe cache.
    pub instant_joins: u64,
    /// Times a waiting subscriber's start from the cache was put off to a
    /// later packet by [`Config::replay_budget`].
    pub instant_joins_deferred: u64,
    /// Simulcast layer switches.
    pub layer_switches: u64,
    /// Datagrams dropped: from an unknown address and not a STUN request
    /// for one of our participants.
    pub dropped_unknown: u64,
    /// Packets dropped because a publisher exceeded its bitrate.
    pub dropped_over_limit: u64,
}

/// One layer of a published track (one, or one per simulcast rid).
struct PubLayer {
    rid: Option<Mid>,
    ssrc: Option<u32>,
    rate: RateMeter,
    cache: KeyframeCache,
    /// The layer's latest packets, as received (video): what answers every
    /// subscriber's NACKs ([`Sfu::on_nack_unanswered`]).
    repair: SendHistory,
    throttle: KeyframeThrottle,
}

impl PubLayer {
    /// A layer not heard yet; at most one keyframe request per `interval`.
    fn new(rid: Option<Mid>, interval: Duration) -> PubLayer {
        PubLayer {
            rid,
            ssrc: None,
            rate: RateMeter::default(),
            cache: KeyframeCache::new(CACHE_PACKETS, CACHE_BYTES),
            repair: SendHistory::new(REPAIR_PACKETS),
            throttle: KeyframeThrottle::new(interval),
        }
    }
}

/// A track a participant publishes.
struct Published {
    mid: Mid,
    kind: MediaKind,
    codec: Option<Codec>,
    layers: Vec<PubLayer>,
    /// Tells keyframes (and frame starts) from the payload.
    depacketizer: Option<AnyDepacketizer>,
    /// Scalable video: the track's packets carry the Dependency Descriptor
    /// (made at the first that does); each subscriber gets a decode target.
    svc: Option<SvcTrack>,
    /// Scalable VP9 without the descriptor: its layers read from the VP9
    /// payload descriptor ([`vp9svc`]).
    vp9: Option<Vp9Track>,
    /// RFC 6464 level, smoothed, in -dBov (0 loudest, 127 silence).
    level: f32,
}

/// A publisher's track sent to one subscriber.
struct Down {
    publisher: ParticipantId,
    mid: Mid,
    track: TrackId,
    kind: MediaKind,
    rewriter: Rewriter,
    /// The layer forwarded now, and the one wanted.
    current: Option<usize>,
    target: Option<usize>,
    /// The decode target forwarded, on an SVC track.
    svc: SvcDown,
    /// The layers forwarded, on a VP9 SVC track.
    vp9: Vp9Down,
    /// The subscriber's connection keeps this track's packets for RTX
    /// itself (an SVC track: thinned per subscriber, its numbering is not
    /// the layer cache's).
    own_history: bool,
    /// Removed from the subscriber's connection: no more packets.
    removed: bool,
}

/// One packet of a scalable track, as read for the forwarding: its frame,
/// the active decode targets' rates, and each target's layers (and, by
/// the Dependency Descriptor, the chain protecting each target).
enum Scalable {
    Dd(SvcFrame, Vec<(usize, u64)>, Vec<(u8, u8)>, Vec<u8>),
    Vp9(Vp9Frame, Vec<(usize, u64)>, Vec<(u8, u8)>),
}

impl Scalable {
    /// The subscriber's choice of target for its `estimate`, and what to
    /// do with the packet: whether its target switched, what to do, and
    /// whether it waits for a key frame.
    fn forward(
        &self,
        now: Instant,
        d: &mut Down,
        estimate: Option<u64>,
    ) -> (bool, SvcForward, bool) {
        match self {
            Scalable::Dd(frame, rates, layers, chains) => {
                let target = d.svc.choose(now, rates, layers, estimate);
                let (switched, forward) = d.svc.on_packet(now, frame, target, layers, chains);
                (switched, forward, d.svc.wants_keyframe(layers))
            }
            Scalable::Vp9(frame, rates, layers) => {
                let target = d.vp9.choose(now, rates, layers, estimate);
                let (switched, forward) = d.vp9.on_packet(now, frame, target, layers);
                (switched, forward, d.vp9.wants_keyframe())
            }
        }
    }
}

struct Participant {
    id: ParticipantId,
    role: Role,
    room: String,
    pc: PeerConnection,
    /// Its ufrag and 5-tuples in the SFU's [`Router`].
    routes: Routes,
    /// The page's offer was answered: the SFU may offer from now on.
    answered: bool,
    /// Tracks came or went since the last offer.
    needs_offer: bool,
    published: Vec<Published>,
    down: Vec<Down>,
    /// The send-side bandwidth estimate of this participant's downlink.
    estimate: Option<u64>,
    /// A cap on what this participant receives (the SFU's own
    /// `setParameters({maxBitrate})` for its downlink).
    max_receive: Option<u64>,
    chat: Option<ChannelId>,
    connected: bool,
    /// In the transmit queue.
    queued: bool,
    /// Its entry in the timer set.
    deadline: Option<Instant>,
    next_remb: Option<Instant>,
}

/// The SFU (see the [module doc](self)).
pub struct Sfu {
    config: Config,
    rng: StdRng,
    next_id: u64,
    /// Boxed: a participant (its connection) is kilobytes, and a map
    /// keeps up to twice its entries' room inline as it grows.
    participants: HashMap<ParticipantId, Box<Participant>>,
    rooms: HashMap<String, Room>,
    /// Which participant a datagram is for.
    router: Router<ParticipantId>,
    timers: BTreeSet<(Instant, ParticipantId)>,
    transmit_queue: VecDeque<ParticipantId>,
    /// Participants with events to handle.
    dirty: Vec<ParticipantId>,
    events: VecDeque<Event>,
    stats: Stats,
    /// A scratch buffer for a repaired packet, renumbered.
    scratch: Vec<u8>,
    /// Scratch for [`Sfu::on_rtp`]: the publisher's room's members, and
    /// its track's active layers with their rates.
    members: Vec<ParticipantId>,
    active_layers: Vec<(usize, u64)>,
    /// Forwarded media, every subscriber's copy in one queue.
    forwarded: Forwarded,
    next_speaker: Option<Instant>,
    next_probe: Option<Instant>,
    cascades: cascade::Links,
}

/// Forwarded media: every subscriber's SRTP copy in one queue, sent
/// before what the connections queue themselves. Each copy is written
/// where the previous subscriber's was, rather than into a queue of each
/// connection's own, whose memory a packet for hundreds of subscribers
/// would visit cold once each. Live packets, instant joins' replays and
/// cascade links all go through it, so none passes another.
#[derive(Default)]
struct Forwarded {
    /// The datagram [`PeerConnection::send_rtp_into`] makes.
    datagram: Vec<u8>,
    queue: Outbox,
}

impl Forwarded {
    /// Sends `packet` on `pc`'s `track`, renumbered for the subscriber's
    /// stream, through the queue; whether it went.
    fn send(
        &mut self,
        pc: &mut PeerConnection,
        now: Instant,
        track: TrackId,
        packet: &[u8],
        renumber: Renumber,
    ) -> bool {
        match pc.send_rtp_into(now, track, packet, Some(renumber), &mut self.datagram) {
            Ok(meta) => {
                self.queue.push(meta, &self.datagram);
                true
            }
            Err(_) => false,
        }
    }
}

struct Room {
    members: Vec<ParticipantId>,
    speaker: Option<ParticipantId>,
}

/// A layer silent this long is not offered to subscribers.
const LAYER_ACTIVE: Duration = Duration::from_millis(1500);
/// The keyframe cache's bounds per layer.
const CACHE_PACKETS: usize = 1024;
const CACHE_BYTES: usize = 2 << 20;
/// The second joiner replayed from one keyframe, when the cache holds more
/// than this many packets (about two seconds of 1 Mbit/s video), also asks
/// the publisher for a keyframe (throttled like every request): it still
/// starts at once, and the joiners after it replay from the new keyframe,
/// not the whole cache. A browser's keyframes come only when asked, so a
/// cache grows to its bound (1,024 packets, about 1.2 MB), and a wave of
/// joiners (a meeting's start) was each sent all of it. A single late
/// joiner costs the publisher no keyframe.
const REPLAY_REFRESH: usize = 256;
/// [`Config::replay_budget`]'s default: two whole caches. Without a
/// budget, the SFU replayed a long cache (1,024 packets) to every joiner
/// waiting at one packet: in `rtclab speed sfu`'s step from 400 to 499
/// subscribers, up to a hundred of them, 110 MB queued at once, and the
/// slowest joiners' first frame came after 10 s (p95; their receive
/// buffers dropped parts of the replayed keyframe, and the generator's
/// next keyframe is 10 s away). With the budget, the refreshed keyframe
/// starts most of the wave: p95 about 100 ms.
const REPLAY_BUDGET: usize = 2 * CACHE_PACKETS;
/// Packets of each published video layer kept to repair subscribers'
/// losses: a receiver NACKs a hole for about a second before it gives the
/// frame up, and 512 packets are that second at up to 5 Mbit/s (the
/// history a sender keeps by default, `peer::Config::rtx_history`).
const REPAIR_PACKETS: usize = 512;
/// How often subscribers' links are probed for a higher layer.
const PROBE_INTERVAL: Duration = Duration::from_secs(3);
/// Events of a participant's connection handled per input, at most.
const MAX_EVENTS_PER_TURN: usize = 4096;

impl Sfu {
    /// An SFU with `config`, drawing ICE credentials and seeds from `rng`.
    pub fn new(config: Config, rng: StdRng) -> Sfu {
        Sfu {
            config,
            rng,
            next_id: 1,
            participants: HashMap::new(),
            rooms: HashMap::new(),
            router: Router::new(),
            timers: BTreeSet::new(),
            transmit_queue: VecDeque::new(),
            dirty: Vec::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            scratch: Vec::with_capacity(1500),
            members: Vec::new(),
            active_layers: Vec::new(),
            forwarded: Forwarded::default(),
            next_speaker: None,
            next_probe: None,
            cascades: cascade::Links::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How many participants.
    pub fn len(&self) -> usize {
        self.participants.len()
    }

    /// No participants.
    pub fn is_empty(&self) -> bool {
        self.participants.is_empty()
    }

    /// The members of `room`.
    pub fn room_members(&self, room: &str) -> Vec<ParticipantId> {
        self.rooms
            .get(room)
            .map(|r| r.members.clone())
            .unwrap_or_default()
    }

    /// A participant's connection (its stats, its state).
    pub fn peer(&self, id: ParticipantId) -> Option<&PeerConnection> {
        self.participants.get(&id).map(|p| &p.pc)
    }

    /// Every participant's connection, to change (a capture's hook turns
    /// on their plaintext taps, `rtclab sfu --pcap`).
    pub fn peers_mut(&mut self) -> impl Iterator<Item = (ParticipantId, &mut PeerConnection)> {
        self.participants.iter_mut().map(|(id, p)| (*id, &mut p.pc))
    }

    /// The participant whose datagrams come from `remote`, as far as the
    /// SFU's demultiplexer has learned it (its routes).
    pub fn participant_at(&self, remote: SocketAddr) -> Option<ParticipantId> {
        self.router.peer_at(remote)
    }

    /// The simulcast layer index each of `subscriber`'s video tracks
    /// forwards now: `(publisher, layer rid)`.
    pub fn forwarded_layers(
        &self,
        subscriber: ParticipantId,
    ) -> Vec<(ParticipantId, Option<String>)> {
        let Some(s) = self.participants.get(&subscriber) else {
            return Vec::new();
        };
        s.down
            .iter()
            .filter(|d| d.kind == MediaKind::Video && !d.removed)
            .map(|d| {
                let rid = d.current.and_then(|c| {
                    self.participants
                        .get(&d.publisher)
                        .and_then(|p| p.published.iter().find(|t| t.mid == d.mid))
                        .and_then(|t| t.layers.get(c))
                        .and_then(|l| l.rid.map(|r| r.to_string()))
                });
                (d.publisher, rid)
            })
            .collect()
    }

    /// The answer waiting for `participant` among the signals, taken out
    /// (for a WHIP/WHEP session, whose answer is the HTTP response).
    pub fn take_answer(&mut self, participant: ParticipantId) -> Option<String> {
        let i = self.events.iter().position(|e| {
            matches!(e, Event::Signal { participant: p, signal: ServerSignal::Answer(_) } if *p == participant)
        })?;
        match self.events.remove(i) {
            Some(Event::Signal {
                signal: ServerSignal::Answer(a),
                ..
            }) => Some(self.advertised(a)),
            _ => None,
        }
    }

    /// The SFU's host candidate, as an SDP `candidate:` value (what a
    /// WHIP answer carries for clients that do not trickle).
    pub fn host_candidate(&self) -> Option<String> {
        let a = self.config.host_candidates.first()?;
        Some(format!(
            "candidate:1 1 udp 2130706431 {} {} typ host",
            self.config.public_ip.unwrap_or(a.ip()),
            a.port()
        ))
    }

    /// An SDP or candidate as signaled: with [`Config::public_ip`], the
    /// host candidate's address is the public one ([`public_ip`]).
    pub(crate) fn advertised(&self, text: String) -> String {
        public_ip::signaled(&self.config, text)
    }

    /// [`Sfu::advertised`] of a signal's SDP or candidate.
    fn advertised_signal(&self, signal: ServerSignal) -> ServerSignal {
        match signal {
            ServerSignal::Answer(s) => ServerSignal::Answer(self.advertised(s)),
            ServerSignal::Offer(s) => ServerSignal::Offer(self.advertised(s)),
            ServerSignal::Candidate(s) => ServerSignal::Candidate(self.advertised(s)),
            other => other,
        }
    }

    /// Caps what `subscriber` receives at `bitrate` bits per second (or
    /// lifts the cap with `None`): simulcast layers are chosen within
    /// `min(estimate, cap)`, as if its link were that slow.
    pub fn set_max_receive_bitrate(
        &mut self,
        subscriber: ParticipantId,
        bitrate: Option<u64>,
    ) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&subscriber)
            .ok_or(Error::UnknownParticipant)?;
        p.max_receive = bitrate;
        Ok(())
    }

    /// A new participant in `room`: it sends its offer next
    /// ([`Sfu::handle_signal`]). The others learn of it now; what the SFU
    /// sends each page comes out as [`Event::Signal`].
    pub fn join(&mut self, now: Instant, room: &str) -> Result<ParticipantId, Error> {
        self.join_as(now, room, Role::Page)
    }

    /// [`Sfu::join`] for a WHIP publisher or a WHEP viewer ([`Role`]).
    pub fn join_as(
        &mut self,
        now: Instant,
        room: &str,
        role: Role,
    ) -> Result<ParticipantId, Error> {
        // Cascade links and the remote publishers they feed are bounded
        // apart (as many again, at least 16), so that a full node still
        // takes the links of the rooms it shares with others.
        let local = |p: &Participant| !matches!(p.role, Role::Cascade | Role::Remote);
        let full = if local_role(role) {
            self.participants.values().filter(|p| local(p)).count() >= self.config.max_participants
        } else {
            self.participants.len()
                >= self
                    .config
                    .max_participants
                    .saturating_mul(2)
                    .max(self.config.max_participants + 16)
        };
        if full {
            return Err(Error::Full);
        }
        // The room size counts those who publish (pages and WHIP); WHEP
        // viewers are an audience, bounded by the total only.
        let publishing = |m: &ParticipantId| {
            self.participants
                .get(m)
                .is_some_and(|p| matches!(p.role, Role::Page | Role::Publisher))
        };
        if matches!(role, Role::Page | Role::Publisher)
            && self.rooms.get(room).is_some_and(|r| {
                r.members.iter().filter(|m| publishing(m)).count() >= self.config.max_room_size
            })
        {
            return Err(Error::RoomFull);
        }
        let id = ParticipantId(self.next_id);
        self.next_id += 1;
        let ufrag = loop {
            let u = format!("{:08x}", self.rng.next_u32());
            if !self.router.has_ufrag(&u) {
                break u;
            }
        };
        let mut pwd = [0u8; 16];
        self.rng.fill_bytes(&mut pwd);
        let pwd: String = pwd.iter().map(|b| format!("{b:02x}")).collect();
        let certificate = self
            .config
            .certificate
            .try_clone()
            .map_err(|_| Error::Protocol("the certificate cannot be copied"))?;
        let mut config = peer::Config::new(certificate, self.config.host_candidates.clone());
        config.capabilities.receive_simulcast = true;
        // Scalable video is forwarded by its Dependency Descriptor.
        if self.config.scalable_video {
            config
                .capabilities
                .video
                .extensions
                .push(crate::sdp::codec::uri::DEPENDENCY_DESCRIPTOR.into());
        }
        // A cascade link is not paced: it carries what publishers paced
        // already, and an estimate starting low would queue a whole room.
        config.pacing = self.config.pacing && role != Role::Cascade;
        // Subscribers' losses are repaired from the publishers' layer
        // caches, not from a history per subscriber and track.
        config.rtx_history = 1;
        config.ice_credentials = Some(Credentials {
            ufrag: ufrag.clone(),
            pwd,
        });
        let pc = PeerConnection::new(config, StdRng::seed_from_u64(self.rng.random()));
        let members = &mut self
            .rooms
            .entry(room.to_string())
            .or_insert_with(|| Room {
                members: Vec::new(),
                speaker: None,
            })
            .members;
        for &other in members.iter() {
            // A cascade link is no one's tile.
            let link = |m| self.participants.get(m).map(|p| p.role);
            if role == Role::Cascade || link(&other) == Some(Role::Cascade) {
                continue;
            }
            push_signal(&mut self.events, other, ServerSignal::Joined(id));
            push_signal(&mut self.events, id, ServerSignal::Joined(other));
        }
        members.push(id);
        let mut routes = Routes::default();
        self.router.set_ufrag(id, &mut routes, Some(&ufrag));
        self.participants.insert(
            id,
            Box::new(Participant {
                id,
                role,
                room: room.to_string(),
                pc,
                routes,
                answered: false,
                needs_offer: false,
                published: Vec::new(),
                down: Vec::new(),
                estimate: None,
                max_receive: None,
                chat: None,
                connected: false,
                queued: false,
                deadline: None,
                next_remb: None,
            }),
        );
        self.touch(now, id);
        Ok(id)
    }

    /// The participant leaves: its connection closes, its tracks end for
    /// everyone (the SFU offers again to each of them).
    pub fn leave(&mut self, now: Instant, id: ParticipantId) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        p.pc.close(now);
        self.cascade_parting(&mut p);
        // Its last datagrams (DTLS close_notify) are lost with it: the
        // peer also learns from the signaling and from consent.
        self.router.remove(id, &p.routes);
        if let Some(d) = p.deadline {
            self.timers.remove(&(d, id));
        }
        if let Some(room) = self.rooms.get_mut(&p.room) {
            room.members.retain(|m| *m != id);
            if room.speaker == Some(id) {
                room.speaker = None;
            }
            let members = room.members.clone();
            if members.is_empty() {
                self.rooms.remove(&p.room);
            }
            for m in members {
                if p.role != Role::Cascade {
                    push_signal(&mut self.events, m, ServerSignal::Left(id));
                }
                if let Some(s) = self.participants.get_mut(&m) {
                    let mut changed = false;
                    for d in s
                        .down
                        .iter_mut()
                        .filter(|d| d.publisher == id && !d.removed)
                    {
                        d.removed = true;
                        let _ = s.pc.remove_track(d.track);
                        changed = true;
                    }
                    if changed {
                        s.needs_offer = true;
                    }
                }
                self.touch(now, m);
            }
        }
        self.events.push_back(Event::Left(id));
        self.cascade_left(now, &p);
        if self.participants.is_empty() {
            // Nobody to send to: what is left goes, and so does the buffer.
            self.forwarded = Forwarded::default();
        }
        self.process(now);
    }

    /// A signaling message from a participant's page.
    pub fn handle_signal(
        &mut self,
        now: Instant,
        id: ParticipantId,
        signal: ClientSignal,
    ) -> Result<(), Error> {
        let p = self
            .participants
            .get_mut(&id)
            .ok_or(Error::UnknownParticipant)?;
        let result = match signal {
            ClientSignal::Offer(sdp) => {
                if p.answered || p.pc.signaling_state() != SignalingState::Stable {
                    Err(Error::Protocol("the page offers once, first"))
                } else {
                    let role = p.role;
                    let set = p.pc.set_remote_description(now, SdpType::Offer, &sdp);
                    if set.is_ok() && role == Role::Viewer {
                        // The room's tracks take the offer's recvonly
                        // m-lines (JSEP §5.3.1) before the answer.
                        p.answered = true;
                        self.subscribe_viewer(id);
                    }
                    let p = self
                        .participants
                        .get_mut(&id)
                        .ok_or(Error::UnknownParticipant)?;
                    p.needs_offer = false;
                    let answer = set.and_then(|()| p.pc.create_answer()).and_then(|a| {
                        p.pc.set_local_description(now, SdpType::Answer, &a)
                            .map(|()| a)
                    });
                    match answer {
                        Ok(a) => {
                            p.answered = true;
                            push_signal(&mut self.events, id, ServerSignal::Answer(a));
                            if role == Role::Page {
                                self.subscribe_to_room(id);
                            }
                            Ok(())
                        }
                        Err(e) => Err(Error::Peer(e)),
                    }
                }
            }
            ClientSignal::Answer(sdp) => {
                if p.pc.signaling_state() != SignalingState::HaveLocalOffer {
                    Err(Error::Protocol("an answer without an offer"))
                } else {
                    p.pc.set_remote_description(now, SdpType::Answer, &sdp)
                        .map_err(Error::Peer)
                }
            }
            ClientSignal::MaxReceiveBitrate(b) => {
                p.max_receive = b;
                Ok(())
            }
            ClientSignal::Candidate(c) => {
                if c.is_empty() {
                    p.pc.add_end_of_candidates(now);
                    Ok(())
                } else {
                    // A candidate we cannot use (TCP, mDNS) is no error of
                    // the page's: skipped, as browsers skip ours.
                    if let Err(e) = p.pc.add_ice_candidate(now, &c) {
                        tracing::debug!(participant = %id, error = %e, "sfu: candidate skipped");
                    }
                    Ok(())
                }
            }
        };
        self.touch(now, id);
        self.process(now);
        result
    }

    /// Every track already published in the room goes to the new member
    /// (after its own offer was answered: an m-line of the page's offer
    /// must not take one of these tracks).
    fn subscribe_to_room(&mut self, id: ParticipantId) {
        let Some(room) = self.participants.get(&id).map(|p| p.room.clone()) else {
            return;
        };
        let tracks: Vec<(ParticipantId, Mid, MediaKind, Codec)> = self
            .room_members(&room)
            .into_iter()
            .filter(|m| *m != id)
            .filter_map(|m| self.participants.get(&m))
            .flat_map(|p| {
                p.published
                    .iter()
                    .filter_map(move |t| t.codec.map(|c| (p.id, t.mid, t.kind, c)))
            })
            .collect();
        for (publisher, mid, kind, codec) in tracks {
            self.add_down(id, publisher, mid, kind, codec);
        }
    }

    /// A WHEP viewer gets one video and one audio track of the room: the
    /// first published of each kind.
    fn subscribe_viewer(&mut self, id: ParticipantId) {
        let Some(room) = self.participants.get(&id).map(|p| p.room.clone()) else {
            return;
        };
        let mut picked: Vec<(ParticipantId, Mid, MediaKind, Codec)> = Vec::new();
        for m in self.room_members(&room) {
            let Some(p) = self.participants.get(&m) else {
                continue;
            };
            for t in &p.published {
                if let Some(c) = t.codec
                    && !picked.iter().any(|x| x.2 == t.kind)
                {
                    picked.push((p.id, t.mid, t.kind, c));
                }
            }
        }
        for (publisher, mid, kind, codec) in picked {
            self.add_down(id, publisher, mid, kind, codec);
        }
    }

    /// Adds `publisher`'s track `mid` to `subscriber`'s connection.
    fn add_down(
        &mut self,
        subscriber: ParticipantId,
        publisher: ParticipantId,
        mid: Mid,
        kind: MediaKind,
        codec: Codec,
    ) {
        let Some(s) = self.participants.get_mut(&subscriber) else {
            return;
        };
        // A WHIP publisher receives nothing; a WHEP viewer only what its one
        // offer takes (it cannot renegotiate).
        let allowed = match s.role {
            Role::Page => true,
            // A link takes every layer (cascade::Links), a remote publisher nothing.
            Role::Publisher | Role::Cascade | Role::Remote => false,
            Role::Viewer => s.pc.signaling_state() == SignalingState::HaveRemoteOffer,
        };
        if !allowed
            || !s.answered
            || s.down
                .iter()
                .any(|d| d.publisher == publisher && d.mid == mid && !d.removed)
        {
            return;
        }
        let stream = publisher.to_string();
        match s.pc.add_track_in_stream(codec, Some(&stream)) {
            Ok(track) => {
                s.down.push(Down {
                    publisher,
                    mid,
                    track,
                    kind,
                    rewriter: Rewriter::new(codec.clock_rate()),
                    current: None,
                    target: None,
                    svc: SvcDown::default(),
                    vp9: Vp9Down::default(),
                    own_history: false,
                    removed: false,
                });
                s.needs_offer = true;
            }
            Err(e) => tracing::debug!(%subscriber, error = %e, "sfu: cannot add a track"),
        }
    }

    // ---- the event loop ---------------------------------------------------

    /// Marks `id` as having output and maybe events, and refreshes its
    /// timer.
    fn touch(&mut self, _now: Instant, id: ParticipantId) {
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
    }

    /// Handles the events of every dirty participant, then offers where
    /// tracks changed, then refreshes timers and the transmit queue.
    fn process(&mut self, now: Instant) {
        let mut rounds = 0;
        while !self.dirty.is_empty() && rounds < 8 {
            rounds += 1;
            let dirty = std::mem::take(&mut self.dirty);
            for &id in &dirty {
                self.handle_events(now, id);
            }
            for &id in &dirty {
                self.maybe_offer(now, id);
                self.refresh(id);
            }
        }
        // Anything left (a pathological chain) is handled next time.
        for id in std::mem::take(&mut self.dirty) {
            self.refresh(id);
            self.dirty.push(id);
        }
    }

    /// Queues `id` for transmission and re-files its timer.
    fn refresh(&mut self, id: ParticipantId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if !p.queued {
            p.queued = true;
            self.transmit_queue.push_back(id);
        }
        let mut deadline = p.pc.poll_timeout();
        for t in &p.published {
            for l in &t.layers {
                if let Some(d) = l.throttle.poll_timeout() {
                    deadline = Some(deadline.map_or(d, |x| x.min(d)));
                }
            }
        }
        if let Some(r) = p.next_remb {
            deadline = Some(deadline.map_or(r, |x| x.min(r)));
        }
        if p.deadline != deadline {
            if let Some(old) = p.deadline {
                self.timers.remove(&(old, id));
            }
            if let Some(new) = deadline {
                self.timers.insert((new, id));
            }
            p.deadline = deadline;
        }
    }

    fn handle_events(&mut self, now: Instant, id: ParticipantId) {
        for _ in 0..MAX_EVENTS_PER_TURN {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            let Some(e) = p.pc.poll_event() else {
                return;
            };
            match e {
                peer::Event::Rtp { mid, rid, packet } => {
                    self.on_rtp(now, id, mid, rid, &packet);
                    if let Some(p) = self.participants.get_mut(&id) {
                        p.pc.recycle_rtp(packet);
                    }
                }
                peer::Event::LocalCandidate(c) => {
                    push_signal(&mut self.events, id, ServerSignal::Candidate(c.to_string()));
                }
                peer::Event::Track { mid, kind } => self.on_track(now, id, &mid, kind),
                peer::Event::TrackEnded { mid } => self.on_track_ended(now, id, &mid),
                peer::Event::KeyframeRequested(track) => self.on_keyframe_request(now, id, track),
                peer::Event::NackUnanswered {
                    track,
                    sequence_numbers,
                } => self.on_nack_unanswered(now, id, track, &sequence_numbers),
                peer::Event::BandwidthEstimate { bitrate } => p.estimate = Some(bitrate),
                peer::Event::ConnectionState(PeerConnectionState::Connected) if !p.connected => {
                    p.connected = true;
                    p.next_remb = Some(now);
                    self.events.push_back(Event::Connected(id));
                }
                peer::Event::ConnectionState(
                    PeerConnectionState::Failed | PeerConnectionState::Closed,
                ) => {
                    push_signal(
                        &mut self.events,
                        id,
                        ServerSignal::Error("the connection failed".to_string()),
                    );
                    self.leave(now, id);
                    return;
                }
                peer::Event::DataChannel(e) => self.on_data(now, id, e),
                _ => {}
            }
        }
        // More events than a turn handles: the rest next time.
        self.touch(now, id);
    }

    /// A track of the publisher's offer has media: publish it in RTP mode
    /// and add it to every other member's connection.
    fn on_track(&mut self, _now: Instant, id: ParticipantId, mid: &str, kind: MediaKind) {
        if self.cascade_track(id, mid) {
            return;
        }
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(key) = Mid::new(mid) else {
            return;
        };
        if p.published.iter().any(|t| t.mid == key) || p.pc.set_rtp_mode(mid, true).is_err() {
            return;
        }
        // The negotiated codec (the answer's first) and the layers.
        let m =
            p.pc.negotiated()
                .and_then(|n| n.media.iter().find(|m| m.mid.as_deref() == Some(mid)));
        let codec = m.and_then(|m| m.codecs.iter().find_map(Codec::from_negotiated));
        let rids: Vec<Option<Mid>> = match m {
            Some(m) if !m.receive_rids.is_empty() => {
                m.receive_rids.iter().map(|r| Mid::new(r)).collect()
            }
            _ => vec![None],
        };
        let layers = rids
            .into_iter()
            .map(|rid| PubLayer::new(rid, self.config.keyframe_interval))
            .collect();
        p.published.push(Published {
            mid: key,
            kind,
            codec,
            layers,
            depacketizer: codec.map(Codec::depacketizer),
            svc: None,
            vp9: None,
            level: 127.0,
        });
        self.events.push_back(Event::Published {
            participant: id,
            mid: key,
            kind,
        });
        let room = p.room.clone();
        if let Some(codec) = codec {
            for m in self.room_members(&room) {
                if m != id {
                    self.add_down(m, id, key, kind, codec);
                    self.touch(_now, m);
                }
            }
        }
        self.cascade_publish(_now, id, key);
    }

    fn on_track_ended(&mut self, now: Instant, id: ParticipantId, mid: &str) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let Some(key) = Mid::new(mid) else {
            return;
        };
        p.published.retain(|t| t.mid != key);
        let room = p.room.clone();
        self.cascade_unpublish(now, id, key);
        for m in self.room_members(&room) {
            if let Some(s) = self.participants.get_mut(&m) {
                for d in s
                    .down
                    .iter_mut()
                    .filter(|d| d.publisher == id && d.mid == key && !d.removed)
                {
                    d.removed = true;
                    let _ = s.pc.remove_track(d.track);
                    s.needs_offer = true;
                }
            }
            self.touch(now, m);
        }
    }

    /// One RTP packet of a publisher: into its layer's meter and cache,
    /// then to every subscriber that forwards this layer.
    fn on_rtp(
        &mut self,
        now: Instant,
        id: ParticipantId,
        mid: Mid,
        rid: Option<Mid>,
        packet: &[u8],
    ) {
        // From a cascade link: the remote publisher's track and layer.
        let Some((id, mid, rid)) = self.cascade_source(id, mid, rid, packet) else {
            return;
        };
        self.stats.received += 1;
        let Ok(rtp) = RtpPacket::new_checked(packet) else {
            return;
        };
        let max_rate = self.config.max_publisher_bitrate;
        let cache_on = self.config.keyframe_cache;
        let scalable = self.config.scalable_video;
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        // The room's members, into buffers kept for this: cloning the
        // member list and the room's name for each packet was most of the
        // allocator's work in rooms of four.
        let mut members = std::mem::take(&mut self.members);
        members.clear();
        if let Some(r) = self.rooms.get(&p.room) {
            members.extend_from_slice(&r.members);
        }
        let Some(t) = p.published.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        let Some(li) = t.layers.iter().position(|l| l.rid == rid) else {
            return;
        };
        let payload = rtp.payload();
        // A keyframe's first packet (video): where the cache restarts and a
        // layer switch may happen.
        let keyframe = match &t.depacketizer {
            Some(d) if t.kind == MediaKind::Video => {
                d.is_frame_start(payload) && d.is_keyframe(payload)
            }
            _ => false,
        };
        // ANCHOR: audio_level
        if t.kind == MediaKind::Audio
            && let Some(level) = rtp
                .extensions()
                .map_while(Result::ok)
                .find(|e| e.id == AUDIO_LEVEL)
                .and_then(|e| e.data.first().copied())
        {
            // RFC 6464 §3: the low 7 bits are the level in -dBov.
            t.level = t.level * 0.8 + f32::from(level & 0x7f) * 0.2;
        }
        // ANCHOR_END: audio_level
        let layer = &mut t.layers[li];
        layer.ssrc = Some(rtp.ssrc());
        layer.rate.on_packet(now, packet.len());
        if max_rate > 0 && layer.rate.bitrate() > max_rate.saturating_mul(2) {
            self.stats.dropped_over_limit += 1;
            return;
        }
        if keyframe {
            layer.throttle.on_keyframe();
        }
        // Scalable video: the frame as its descriptor tells it (a track
        // is read as SVC from its first descriptor, and forwarded as SVC
        // once a structure with several decode targets came; the
        // keyframe cache is not used then, as it would hold every layer:
        // a joiner asks for a keyframe, every decode target's switch
        // point).
        let descriptor = (t.kind == MediaKind::Video)
            .then(|| {
                rtp.extensions()
                    .map_while(Result::ok)
                    .find(|e| e.id == RTP_MODE_DEPENDENCY_DESCRIPTOR)
            })
            .flatten();
        if scalable && descriptor.is_some() && t.svc.is_none() && t.layers.len() == 1 {
            t.svc = Some(SvcTrack::new());
        }
        // VP9 SVC without the descriptor: the layers the VP9 payload
        // descriptor says (a track with layer indices).
        if scalable
            && descriptor.is_none()
            && t.codec == Some(Codec::Vp9)
            && t.vp9.is_none()
            && t.svc.is_none()
            && t.layers.len() == 1
        {
            t.vp9 = Some(Vp9Track::new());
        }
        let svc = match (t.svc.as_mut(), descriptor, t.vp9.as_mut()) {
            (None, None, Some(track)) => match track.on_packet(now, &rtp) {
                // One spatial and temporal layer: forwarded as any track.
                Some(_) if track.layers().len() <= 1 => None,
                Some(frame) => Some(Scalable::Vp9(
                    frame,
                    track.target_rates(now, LAYER_ACTIVE),
                    track.layers().to_vec(),
                )),
                None if track.layers().len() <= 1 => None,
                // Unfollowable once the track is scalable: not forwarded.
                None => return,
            },
            (Some(track), Some(d), _) => match track.on_packet(now, &rtp, d.data) {
                // One decode target (a single-layer stream that carries
                // the descriptor anyway): nothing to select, forwarded as
                // any other track, from the keyframe cache.
                Some(_) if track.layers().len() <= 1 => None,
                Some(frame) => Some(Scalable::Dd(
                    frame,
                    track.target_rates(now, LAYER_ACTIVE),
                    track.layers().to_vec(),
                    track.protected_by().to_vec(),
                )),
                // Before the first structure: forwarded as a plain
                // track (no subscriber starts before a keyframe, which
                // brings the structure; a descriptor never read does not
                // cost the track).
                None if !track.has_structure() => None,
                // Unreadable after it: not forwarded.
                None => {
                    tracing::debug!(participant = %id, descriptor = ?d.data, "sfu: unreadable dependency descriptor");
                    return;
                }
            },
            _ => None,
        };
        let layer = &mut t.layers[li];
        if cache_on && t.kind == MediaKind::Video && svc.is_none() {
            layer.cache.push(packet, keyframe);
        }
        // What is forwarded plainly (single-layer tracks too, whether or
        // not they carry a descriptor) is repaired from the layer's cache.
        if t.kind == MediaKind::Video && svc.is_none() {
            let _ = layer.repair.store(packet);
        }
        // The active layers' rates, for the chooser.
        let mut active = std::mem::take(&mut self.active_layers);
        active.clear();
        active.extend(
            t.layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.rate.active(now, LAYER_ACTIVE))
                .map(|(i, l)| (i, l.rate.bitrate())),
        );
        let kind = t.kind;
        let cache_ready = t.layers[li].cache.is_ready();
        let ssrc = rtp.ssrc();
        let (seq, ts) = (rtp.sequence_number(), rtp.timestamp());
        let mut want_keyframe: Vec<usize> = Vec::new();
        // A subscriber that can receive and has no stream of this track
        // yet: the cache may start it, below (looked for here, where every
        // subscriber is visited anyway, not in a second pass per packet).
        let mut unstarted = false;
        for &m in &members {
            if m == id {
                continue;
            }
            let Some(s) = self.participants.get_mut(&m) else {
                continue;
            };
            if s.role == Role::Cascade {
                continue;
            }
            // The link's estimate (or the page's cap), shared evenly by
            // the video tracks it receives.
            let videos = s
                .down
                .iter()
                .filter(|d| d.kind == MediaKind::Video && !d.removed)
                .count()
                .max(1) as u64;
            let estimate = match (s.estimate, s.max_receive) {
                (Some(e), Some(c)) => Some(e.min(c)),
                (e, c) => e.or(c),
            }
            .map(|e| e / videos);
            let Some(d) = s
                .down
                .iter_mut()
                .find(|d| d.publisher == id && d.mid == mid && !d.removed)
            else {
                continue;
            };
            unstarted |= d.current.is_none() && s.connected;
            // ANCHOR: forward
            // The layer this subscriber should get.
            if kind == MediaKind::Video {
                let target = choose_layer(&active, estimate, d.current);
                if target != d.target {
                    d.target = target;
                    // A switch waits for the new layer's keyframe: ask
                    // for one (a stream not started yet is handled below).
                    if d.current.is_some() && target != d.current {
                        want_keyframe.extend(target);
                    }
                }
                if d.target == Some(li) && d.current != Some(li) {
                    if !keyframe {
                        // Nothing forwarded yet: the cache starts it (below),
                        // or, once the subscriber can receive, a keyframe.
                        if d.current.is_none() && s.connected && !(cache_on && cache_ready) {
                            want_keyframe.push(li);
                        }
                        if d.current != Some(li) {
                            // Keep forwarding the old layer until the switch.
                            if d.current.is_none() {
                                continue;
                            }
                        }
                    } else {
                        // The switch, at this layer's keyframe.
                        if d.current.is_some() {
                            tracing::debug!(
                                subscriber = %m,
                                publisher = %id,
                                from = ?d.current,
                                to = li,
                                estimate = ?estimate,
                                layers = ?active,
                                "sfu: layer switch"
                            );
                            self.stats.layer_switches += 1;
                        }
                        d.current = Some(li);
                        d.rewriter.switch_to(now, ssrc, seq, ts);
                    }
                }
                if d.current != Some(li) {
                    continue;
                }
            } else if d.rewriter.source() != Some(ssrc) {
                d.rewriter.switch_to(now, ssrc, seq, ts);
                d.current = Some(li);
            }
            // Scalable video: the decode target the estimate carries; a
            // frame outside it is dropped, and the marker ends the
            // temporal unit of the target's top spatial layer.
            let mut marker = None;
            if let Some(scalable) = &svc {
                let (switched, forward, wants_keyframe) = scalable.forward(now, d, estimate);
                if switched {
                    tracing::debug!(subscriber = %m, publisher = %id, svc = ?d.svc.current,
                        vp9 = ?d.vp9.current, estimate = ?estimate, "sfu: decode target switch");
                    self.stats.layer_switches += 1;
                }
                if wants_keyframe {
                    want_keyframe.push(li);
                }
                if !d.own_history {
                    // Thinned per subscriber: the layer cache's numbering
                    // is not this stream's, so its connection keeps what
                    // it sent for RTX.
                    d.own_history = true;
                    let _ = s.pc.set_rtx_history(d.track, REPAIR_PACKETS);
                }
                match forward {
                    SvcForward::Drop => {
                        d.rewriter.skip(ssrc, seq);
                        continue;
                    }
                    SvcForward::Send { marker: m } => marker = Some(m),
                }
            }
            // The new numbering goes into the header as the subscriber's
            // connection writes it.
            let Some(renumber) = d.rewriter.renumber(now, &rtp) else {
                continue;
            };
            let renumber = Renumber { marker, ..renumber };
            let track = d.track;
            if self.forwarded.send(&mut s.pc, now, track, packet, renumber) {
                self.stats.forwarded += 1;
            }
            // ANCHOR_END: forward
        }
        self.members = members;
        self.active_layers = active;
        self.cascade_forward(now, id, mid, li, packet);
        want_keyframe.sort_unstable();
        want_keyframe.dedup();
        for li in want_keyframe {
            self.request_keyframe(now, id, mid, li);
        }
        // A subscriber whose stream has not started yet starts from the
        // cache, if it holds a keyframe (instant join).
        if cache_on && kind == MediaKind::Video && unstarted {
            self.start_from_cache(now, id, mid);
        }
    }

    /// Subscribers of `publisher`'s `mid` that forward nothing yet, and
    /// whose connection can send, get the cached keyframe and what
    /// followed, rewritten, at once.
    fn start_from_cache(&mut self, now: Instant, publisher: ParticipantId, mid: Mid) {
        // The layers replayed, one entry per joiner.
        let mut replayed: Vec<usize> = Vec::new();
        // Packets replayed so far, against the budget.
        let mut spent = 0usize;
        let Some(room) = self.participants.get(&publisher).map(|p| p.room.clone()) else {
            return;
        };
        for m in self.room_members(&room) {
            if m == publisher {
                continue;
            }
            let waiting = self.participants.get(&m).is_some_and(|s| {
                s.connected
                    && s.down.iter().any(|d| {
                        d.publisher == publisher
                            && d.mid == mid
                            && d.current.is_none()
                            && !d.removed
                    })
            });
            if !waiting {
                continue;
            }
            // The lowest active layer with a ready cache (the chooser moves
            // up from there as the estimate allows).
            let Some(p) = self.participants.get(&publisher) else {
                return;
            };
            let Some(t2) = p.published.iter().find(|x| x.mid == mid) else {
                return;
            };
            let Some((li, layer)) = t2
                .layers
                .iter()
                .enumerate()
                .filter(|(_, l)| l.cache.is_ready())
                .min_by_key(|(_, l)| l.rate.bitrate())
            else {
                continue;
            };
            // Past the budget, a joiner waits for the next packet (it is
            // still waiting then, so this comes back to it).
            if spent > 0 && spent + layer.cache.len() > self.config.replay_budget {
                self.stats.instant_joins_deferred += 1;
                continue;
            }
            let packets: Vec<Vec<u8>> = layer.cache.packets().map(<[u8]>::to_vec).collect();
            let Some(ssrc) = layer.ssrc else {
                continue;
            };
            let Some(s) = self.participants.get_mut(&m) else {
                continue;
            };
            let Some(d) = s
                .down
                .iter_mut()
                .find(|d| d.publisher == publisher && d.mid == mid && !d.removed)
            else {
                continue;
            };
            let Some(first) = packets.first().and_then(|b| RtpPacket::new_checked(b).ok()) else {
                continue;
            };
            // ANCHOR: instant_join
            d.rewriter
                .switch_to(now, ssrc, first.sequence_number(), first.timestamp());
            let track = d.track;
            let mut sent = 0;
            for b in &packets {
                let Some(renumber) = RtpPacket::new_checked(b)
                    .ok()
                    .and_then(|p| d.rewriter.renumber(now, &p))
                else {
                    continue;
                };
                // Into the queue live packets take: they must not pass.
                if self.forwarded.send(&mut s.pc, now, track, b, renumber) {
                    sent += 1;
                }
            }
            // ANCHOR_END: instant_join
            if sent > 0 {
                d.current = Some(li);
                d.target = Some(li);
                self.stats.instant_joins += 1;
                self.stats.forwarded += sent;
                spent += packets.len();
                replayed.push(li);
            } else {
                // Not sendable yet: start over at the next packet.
                d.rewriter.reset();
            }
        }
        for li in replayed {
            let layer = self
                .participants
                .get_mut(&publisher)
                .and_then(|p| p.published.iter_mut().find(|t| t.mid == mid))
                .and_then(|t| t.layers.get_mut(li));
            let Some(layer) = layer else { continue };
            let before = layer.cache.count_replay();
            if before == 1 && layer.cache.len() > REPLAY_REFRESH {
                self.request_keyframe(now, publisher, mid, li);
            }
        }
    }

    /// A keyframe request to `publisher`'s layer `li` of `mid`, throttled.
    fn request_keyframe(&mut self, now: Instant, publisher: ParticipantId, mid: Mid, li: usize) {
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let Some(t) = p.published.iter_mut().find(|t| t.mid == mid) else {
            return;
        };
        let Some(layer) = t.layers.get_mut(li) else {
            return;
        };
        if layer.throttle.request(now) {
            let rid = layer.rid;
            if p.role == Role::Remote {
                self.cascade_keyframe(publisher, mid, rid);
            } else if p.pc.request_keyframe_layer(&mid, rid.as_deref()).is_ok() {
                self.stats.keyframe_requests += 1;
            }
        }
        self.touch(now, publisher);
    }

    /// A subscriber's PLI/FIR for one of its tracks: a keyframe of the
    /// layer it forwards, asked of the publisher (throttled).
    fn on_keyframe_request(&mut self, now: Instant, id: ParticipantId, track: TrackId) {
        let Some(s) = self.participants.get(&id) else {
            return;
        };
        let Some(d) = s.down.iter().find(|d| d.track == track) else {
            return;
        };
        let (publisher, mid, li) = (d.publisher, d.mid, d.current.or(d.target).unwrap_or(0));
        self.request_keyframe(now, publisher, mid, li);
    }

    // ANCHOR: nack_unanswered
    /// A subscriber NACKed packets its connection does not keep: each is
    /// sent again from the publisher layer's cache, rewritten as it was
    /// sent (RTX on the subscriber's link); what the cache does not hold
    /// (the SFU lost it too, or it is older than the cache) is asked of the
    /// publisher, in its own numbering.
    fn on_nack_unanswered(
        &mut self,
        now: Instant,
        id: ParticipantId,
        track: TrackId,
        seqs: &[u16],
    ) {
        let Some(s) = self.participants.get(&id) else {
            return;
        };
        let Some(d) = s.down.iter().find(|d| d.track == track) else {
            return;
        };
        let (publisher, mid, rewriter) = (d.publisher, d.mid, d.rewriter.clone());
        // The publisher's layers that must be asked: `(layer, its seqs)`.
        let mut ask: Vec<(usize, Vec<u16>)> = Vec::new();
        for &q in seqs {
            let Some(origin) = rewriter.locate(q) else {
                continue;
            };
            let Some(t) = self
                .participants
                .get(&publisher)
                .and_then(|p| p.published.iter().find(|t| t.mid == mid))
            else {
                return;
            };
            let Some(li) = t.layers.iter().position(|l| l.ssrc == Some(origin.ssrc)) else {
                continue;
            };
            if let Some(cached) = t.layers[li].repair.get(origin.seq) {
                self.scratch.clear();
                self.scratch.extend_from_slice(cached);
                if let Ok(mut p) = crate::rtp::RtpPacketMut::new_checked(&mut self.scratch) {
                    let ts = p.as_packet().timestamp();
                    p.set_sequence_number(q);
                    p.set_timestamp(ts.wrapping_add(origin.ts_offset));
                    if let Some(s) = self.participants.get_mut(&id)
                        && s.pc.resend_rtp(now, track, &self.scratch).is_ok()
                    {
                        if !s.queued {
                            s.queued = true;
                            self.transmit_queue.push_back(id);
                        }
                        continue;
                    }
                }
            }
            match ask.iter_mut().find(|(l, _)| *l == li) {
                Some((_, v)) => v.push(origin.seq),
                None => ask.push((li, vec![origin.seq])),
            }
        }
        for (li, source) in ask {
            let Some(p) = self.participants.get_mut(&publisher) else {
                return;
            };
            let rid = p
                .published
                .iter()
                .find(|t| t.mid == mid)
                .and_then(|t| t.layers.get(li))
                .and_then(|l| l.rid);
            if p.role == Role::Remote {
                self.cascade_nack(publisher, mid, rid, &source);
            } else if p.pc.send_nack_layer(&mid, rid.as_deref(), &source).is_ok() {
                self.stats.nacks_to_publishers += 1;
            }
        }
    }
    // ANCHOR_END: nack_unanswered

    fn on_data(&mut self, now: Instant, id: ParticipantId, e: datachannel::Event) {
        match e {
            datachannel::Event::Open(ch) => {
                if let Some(p) = self.participants.get_mut(&id) {
                    let is_chat =
                        p.pc.data_channels()
                            .and_then(|d| d.channel(ch))
                            .is_some_and(|c| c.label() == "chat");
                    if is_chat {
                        p.chat = Some(ch);
                    }
                }
                self.cascade_open(now, id, ch);
            }
            // ANCHOR: chat
            datachannel::Event::Message {
                channel,
                message: Message::Text(text),
            } => {
                if self.cascade_message(now, id, channel, &text) {
                    return;
                }
                let Some(p) = self.participants.get(&id) else {
                    return;
                };
                if p.chat != Some(channel) || text.len() > 16 * 1024 {
                    return;
                }
                let msg = serde_json::json!({"type": "chat", "from": id.to_string(), "text": text})
                    .to_string();
                let room = p.room.clone();
                self.broadcast(now, &room, Some(id), &msg);
                self.cascade_chat(now, &room, id, &text);
            }
            // ANCHOR_END: chat
            _ => {}
        }
    }

    /// A text message to every member of `room` (but `except`) on their
    /// chat channel.
    fn broadcast(&mut self, now: Instant, room: &str, except: Option<ParticipantId>, text: &str) {
        for m in self.room_members(room) {
            if Some(m) == except {
                continue;
            }
            if let Some(s) = self.participants.get_mut(&m)
                && let Some(ch) = s.chat
            {
                let _ = s.pc.send_text(now, ch, text);
                self.touch(now, m);
            }
        }
    }

    /// Offers to `id` if tracks changed and no offer is in flight.
    fn maybe_offer(&mut self, now: Instant, id: ParticipantId) {
        if self.cascade_renegotiate(now, id) {
            return;
        }
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if !p.needs_offer
            || !p.answered
            || p.role != Role::Page
            || p.pc.signaling_state() != SignalingState::Stable
        {
            return;
        }
        p.needs_offer = false;
        match p.pc.create_offer(now).and_then(|o| {
            p.pc.set_local_description(now, SdpType::Offer, &o)
                .map(|()| o)
        }) {
            Ok(o) => push_signal(&mut self.events, id, ServerSignal::Offer(o)),
            Err(e) => {
                tracing::debug!(participant = %id, error = %e, "sfu: cannot offer");
            }
        }
        // Removed tracks are forgotten once the offer carrying it is out.
        p.down.retain(|d| !d.removed);
    }

    /// Per publisher: REMB with the bitrate cap each second; per room: the
    /// active speaker.
    fn periodic(&mut self, now: Instant, id: ParticipantId) {
        let cap = self.config.max_publisher_bitrate;
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        if let Some(t) = p.next_remb
            && t <= now
        {
            p.next_remb = Some(now + Duration::from_secs(1));
            if cap > 0 && !p.published.is_empty() {
                let _ = p.pc.send_remb(cap);
            }
        }
        let mut remote = Vec::new();
        for t in &mut p.published {
            for l in &mut t.layers {
                if l.throttle.handle_timeout(now) {
                    let rid = l.rid;
                    if p.role == Role::Remote {
                        remote.push((t.mid, rid));
                    } else if p.pc.request_keyframe_layer(&t.mid, rid.as_deref()).is_ok() {
                        self.stats.keyframe_requests += 1;
                    }
                }
            }
        }
        for (mid, rid) in remote {
            self.cascade_keyframe(id, mid, rid);
        }
    }

    /// Every [`PROBE_INTERVAL`], each subscriber whose estimate keeps a
    /// video track below a layer the publisher sends gets its link probed
    /// at twice its estimate (GCC probing, bounded by what all its tracks'
    /// top layers would need and by its cap): without probes, an estimate
    /// only grows with what is sent, so a subscriber on a low layer would
    /// stay there.
    fn probe_links(&mut self, now: Instant) {
        if self.next_probe.is_some_and(|t| t > now) {
            return;
        }
        self.next_probe = Some(now + PROBE_INTERVAL);
        // The forwarding buffer goes if nothing was forwarded since.
        self.forwarded.queue.trim();
        // In id order: the probes' order must not depend on hashing.
        let mut ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let Some(s) = self.participants.get(&id) else {
                continue;
            };
            let Some(estimate) = s.estimate.filter(|_| s.connected) else {
                continue;
            };
            let cap = s.max_receive.unwrap_or(u64::MAX);
            let mut below = false;
            let mut top_total = 0u64;
            for d in s
                .down
                .iter()
                .filter(|d| d.kind == MediaKind::Video && !d.removed)
            {
                let Some(t) = self
                    .participants
                    .get(&d.publisher)
                    .and_then(|p| p.published.iter().find(|t| t.mid == d.mid))
                else {
                    continue;
                };
                let rates: Vec<u64> = t
                    .layers
                    .iter()
                    .filter(|l| l.rate.active(now, LAYER_ACTIVE))
                    .map(|l| l.rate.bitrate())
                    .collect();
                let top = rates.iter().copied().max().unwrap_or(0);
                let current = d
                    .current
                    .and_then(|c| t.layers.get(c))
                    .map_or(0, |l| l.rate.bitrate());
                top_total += top;
                below |= top > current;
            }
            if !below || estimate >= cap || estimate >= top_total.saturating_mul(12) / 10 {
                continue;
            }
            let want = estimate
                .saturating_mul(2)
                .min(top_total.saturating_mul(12) / 10)
                .min(cap);
            if let Some(s) = self.participants.get_mut(&id) {
                s.pc.probe_bandwidth(now, want);
            }
            self.touch(now, id);
        }
    }

    fn speakers(&mut self, now: Instant) {
        if self.next_speaker.is_some_and(|t| t > now) {
            return;
        }
        self.next_speaker = Some(now + self.config.speaker_interval);
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for room in rooms {
            // ANCHOR: speaker
            let loudest = self
                .room_members(&room)
                .into_iter()
                .filter_map(|m| {
                    let p = self.participants.get(&m)?;
                    let level = p
                        .published
                        .iter()
                        .filter(|t| t.kind == MediaKind::Audio)
                        .map(|t| t.level)
                        .fold(127.0f32, f32::min);
                    // Quieter than -60 dBov is silence.
                    (level < 60.0).then_some((m, level))
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(m, _)| m);
            // ANCHOR_END: speaker
            let Some(r) = self.rooms.get_mut(&room) else {
                continue;
            };
            if let Some(m) = loudest
                && r.speaker != Some(m)
            {
                r.speaker = Some(m);
                self.events.push_back(Event::ActiveSpeaker {
                    room: room.clone(),
                    participant: m,
                });
                let msg = serde_json::json!({"type": "speaker", "id": m.to_string()}).to_string();
                self.broadcast(now, &room, None, &msg);
            }
        }
    }
}

/// A participant of this node's own (a page, a WHIP publisher, a WHEP
/// viewer), not a cascade link or what one feeds.
fn local_role(role: Role) -> bool {
    matches!(role, Role::Page | Role::Publisher | Role::Viewer)
}

/// Queues a signaling message for a participant's page.
fn push_signal(events: &mut VecDeque<Event>, participant: ParticipantId, signal: ServerSignal) {
    events.push_back(Event::Signal {
        participant,
        signal,
    });
}

/// RTP mode's canonical id of the audio-level extension (RFC 6464).
const AUDIO_LEVEL: u8 = 4;

impl Machine for Sfu {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        // ANCHOR: route
        let Some((id, by_ufrag)) = self.router.route(&datagram) else {
            self.stats.dropped_unknown += 1;
            return;
        };
        if let Some(p) = self.participants.get_mut(&id) {
            p.pc.handle_receive(now, datagram);
            if by_ufrag {
                let pc = &p.pc;
                self.router
                    .on_received(id, &mut p.routes, &datagram, |a| pc.knows_remote(a));
            }
        }
        // ANCHOR_END: route
        self.touch(now, id);
        self.process(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(t, id)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.remove(&(t, id));
            if let Some(p) = self.participants.get_mut(&id) {
                p.deadline = None;
                p.pc.handle_timeout(now);
            }
            self.periodic(now, id);
            self.touch(now, id);
        }
        self.speakers(now);
        self.probe_links(now);
        self.process(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        let mut buf = Vec::new();
        let meta = self.poll_transmit_into(&mut buf)?;
        Some(Transmit {
            source: meta.source,
            destination: meta.destination,
            contents: buf,
        })
    }

    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        if let Some(meta) = self.cascade_poll_parting(buf) {
            return Some(meta);
        }
        // Media on a selected pair: the connectivity checks that selected
        // it went through the connection's queue below, and taught the
        // router its route.
        if let Some(meta) = self.forwarded.queue.pop_into(buf) {
            return Some(meta);
        }
        while let Some(id) = self.transmit_queue.pop_front() {
            let Some(p) = self.participants.get_mut(&id) else {
                continue;
            };
            match p.pc.poll_transmit_into(buf) {
                Some(meta) => {
                    // Learn the route: datagrams from there are this
                    // participant's.
                    let pc = &p.pc;
                    self.router
                        .on_sent(id, &mut p.routes, meta.source, meta.destination, |a| {
                            pc.knows_remote(a)
                        });
                    // Round robin: back of the queue, still queued.
                    self.transmit_queue.push_back(id);
                    return Some(meta);
                }
                None => p.queued = false,
            }
        }
        None
    }

    fn poll_event(&mut self) -> Option<Event> {
        match self.events.pop_front()? {
            Event::Signal {
                participant,
                signal,
            } => Some(Event::Signal {
                participant,
                signal: self.advertised_signal(signal),
            }),
            e => Some(e),
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let t = self.timers.first().map(|(t, _)| *t);
        let s = (!self.rooms.is_empty())
            .then_some(self.next_speaker)
            .flatten();
        match (t, s) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
