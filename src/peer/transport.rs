//! [`Transport`]: one ICE agent, one DTLS endpoint and two SRTP contexts on
//! one 5-tuple, as a sans-IO [`Machine`]. See the [module doc](super).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::demux::{PacketKind, classify};
use crate::dtls::Error as DtlsError;
use crate::dtls::cert::{Certificate, Fingerprint, HashAlgorithm};
use crate::dtls::endpoint::{self, Event as DtlsEvent};
use crate::dtls::endpoint_auto::AutoEndpoint as Endpoint;
use crate::dtls::handshake::{Alert, SrtpProfile};
use crate::ice::transport::{IceTransport, TransportConfig as IceTransportConfig};
use crate::ice::{self, Agent, Candidate, ConnectionState, Credentials, FailureReason};
use crate::machine::{Machine, Outbox, Receive, Transmit, TransmitMeta};
use crate::srtp::{self, MasterKey, ProtectionProfile, SrtpContext};
use crate::stun::{Class, Message};
use crate::turn;

pub use crate::dtls::endpoint::Role as DtlsRole;

/// The most events kept for the application; media beyond is dropped (and
/// counted in [`Stats::dropped_events`]) rather than grow without bound.
const MAX_EVENTS: usize = 4096;

/// DTLS datagrams held until they may be read: those that arrive before the
/// endpoint exists (the answerer's ClientHello can beat the answer SDP to
/// the offerer), and those from a remote candidate whose pair is not valid
/// yet (the peer's check succeeded and it sent its ClientHello while our
/// triggered check to it is still on its way). Chromium's and Firefox's
/// hellos span two datagrams. Oldest dropped first.
const MAX_HELD_DTLS: usize = 8;

/// DTLS datagrams of ours waiting for ICE to select a pair.
const MAX_PENDING_OUT: usize = 16;
/// Media buffers kept for reuse ([`Transport::recycle`]).
const MEDIA_POOL: usize = 64;
/// The capacity of a media buffer: any datagram of a 1500-byte MTU.
const MEDIA_BUF: usize = 1500;

/// The ICE role (RFC 8445 §6.1.1: the offerer is controlling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceRole {
    /// Nominates the pair (the offerer).
    Controlling,
    /// Follows the peer's nomination (the answerer).
    Controlled,
}

/// What a [`Transport`] is made of. Every field is a plain value an SDP
/// offer/answer yields; nothing here knows SDP.
#[derive(Debug)]
pub struct Config {
    /// Our ICE role.
    pub ice_role: IceRole,
    /// The peer's `ice-ufrag`/`ice-pwd`, if already known (else
    /// [`Transport::set_remote_credentials`]).
    pub remote_credentials: Option<Credentials>,
    /// Our DTLS role, if already known: the answer's `a=setup` decides it
    /// (RFC 8842 §5.2: `active` is the client). Else [`Transport::set_remote_dtls`].
    pub dtls_role: Option<DtlsRole>,
    /// The fingerprints of the peer's certificate (`a=fingerprint`), if
    /// already known. DTLS waits for at least one.
    pub remote_fingerprints: Vec<Fingerprint>,
    /// Our certificate (its fingerprint goes into our SDP).
    pub certificate: Certificate,
    /// SRTP profiles to offer (client) or accept (server), preferred first;
    /// empty for a data-only connection.
    pub srtp_profiles: Vec<ProtectionProfile>,
    /// Our local socket addresses: host candidates (RFC 8445 §5.1.1.1).
    pub host_candidates: Vec<SocketAddr>,
    /// A STUN server for server-reflexive candidates.
    pub stun_server: Option<SocketAddr>,
    /// ICE tunables (its `controlling` and `stun_server` are taken from the
    /// fields above).
    pub ice: ice::Config,
    /// SRTP tunables (replay window, SSRC bound).
    pub srtp: srtp::Config,
    /// Largest DTLS datagram we send.
    pub mtu: usize,
    /// The DTLS handshake's initial retransmission timeout (doubled at each
    /// retransmission, RFC 6347 §4.2.4.1).
    pub dtls_retransmit_timeout: Duration,
    /// The highest DTLS version offered or accepted (1.2 by default; 1.3
    /// falls back to 1.2 with a peer that does not speak it).
    pub dtls_max_version: endpoint::Version,
    /// Our ICE ufrag and password; `None`: random ones from the RNG.
    pub local_credentials: Option<Credentials>,
    /// A TURN server and credentials, for a relayed candidate (RFC 8656,
    /// through [`IceTransport`]); `ice.relay_only` keeps to it.
    pub turn: Option<turn::client::Config>,
}

/// Initial retransmission timeout of ICE connectivity checks here.
///
/// RFC 8445 §14.3 asks for at least 500 ms, doubling, so one lost check or
/// nomination costs half a second and two cost 1.5 s; in the simulator at
/// 5% loss that put one connection set-up in twenty above 6 s. WebRTC sits
/// between "call" and "first frame": like [`endpoint::INITIAL_RETRANSMIT_TIMEOUT`]
/// (250 ms for DTLS flights), checks here start at 250 ms and still double,
/// so a slow path costs a few spurious checks (paced by Ta), never a flood.
/// [`Config::ice`] takes the RFC value back if wanted.
pub const ICE_CHECK_RTO: Duration = Duration::from_millis(250);

impl Config {
    /// Defaults around a role and a certificate: every SRTP profile, MTU
    /// 1200, RFC timers for ICE except [`ICE_CHECK_RTO`].
    pub fn new(ice_role: IceRole, certificate: Certificate) -> Self {
        let mut ice = ice::Config::default();
        ice.checks.rto = ICE_CHECK_RTO;
        Config {
            ice_role,
            remote_credentials: None,
            dtls_role: None,
            remote_fingerprints: Vec::new(),
            certificate,
            srtp_profiles: ProtectionProfile::ALL.to_vec(),
            host_candidates: Vec::new(),
            stun_server: None,
            ice,
            srtp: srtp::Config::default(),
            mtu: 1200,
            dtls_retransmit_timeout: endpoint::INITIAL_RETRANSMIT_TIMEOUT,
            dtls_max_version: endpoint::Version::Dtls12,
            local_credentials: None,
            turn: None,
        }
    }
}

/// Where the transport is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Nothing to check yet (no remote credentials or candidates).
    New,
    /// ICE checks are running.
    Checking,
    /// ICE selected a pair; the DTLS handshake runs over it.
    Handshaking,
    /// DTLS is up and the peer's certificate matched: data and media flow.
    Connected,
    /// Failed for good (see [`Event::Failed`]); everything is freed.
    Failed,
    /// Closed by us or by the peer's close_notify; everything is freed.
    Closed,
}

/// What the connection agreed on, reported once with [`Event::Connected`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The SRTP profile DTLS `use_srtp` negotiated; `None` on a
    /// data-only connection (no profile offered or none in common).
    pub srtp_profile: Option<ProtectionProfile>,
    /// Our DTLS role.
    pub dtls_role: DtlsRole,
    /// The DTLS 1.2 cipher suite the handshake chose.
    pub cipher_suite: crate::dtls::record::CipherSuite,
    /// Our side of the selected pair (the candidate the peer sees).
    pub local: Candidate,
    /// The peer's side of the selected pair.
    pub remote: Candidate,
    /// The peer's certificate fingerprint, in the hash that was checked.
    pub peer_fingerprint: Fingerprint,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A local candidate to signal to the peer (trickle ICE).
    LocalCandidate(Candidate),
    /// No more local candidates for now (signal end-of-candidates).
    GatheringComplete,
    /// The ICE connection state changed.
    IceStateChanged(ConnectionState),
    /// DTLS is up, keys are installed: media and data may flow.
    Connected(Box<Connected>),
    /// A decrypted RTP packet (header and payload, tag removed).
    Rtp(Vec<u8>),
    /// A decrypted compound RTCP packet (SRTCP trailer removed).
    Rtcp(Vec<u8>),
    /// DTLS application data (SCTP rides on it).
    ApplicationData(Vec<u8>),
    /// The transport failed for good; resources are freed.
    Failed(Error),
    /// The transport closed (by [`Transport::close`] or the peer's
    /// close_notify); resources are freed.
    Closed,
}

/// Why the transport failed, or why a call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// ICE failed: no pair worked, or consent was lost (RFC 7675).
    Ice(FailureReason),
    /// A candidate was refused (unusable, or a cap reached).
    Candidate(ice::Error),
    /// The DTLS handshake failed.
    Dtls(DtlsError),
    /// The peer sent a fatal DTLS alert.
    PeerAlert(Alert),
    /// RFC 8842 §5: the certificate the peer presented in DTLS does not
    /// hash to any fingerprint its session description announced.
    FingerprintMismatch {
        /// What the signaling announced (the strongest hash's entries).
        expected: Vec<Fingerprint>,
        /// What the certificate actually hashes to, in the same hash.
        actual: Fingerprint,
    },
    /// SRTP keying or protection failed.
    Srtp(srtp::Error),
    /// DTLS negotiated an SRTP profile we cannot key.
    UnsupportedSrtpProfile(u16),
    /// Media sent before the SRTP keys exist, or on a connection that
    /// negotiated no SRTP profile.
    NoSrtpKeys,
    /// Data sent before DTLS connected (or ICE has no path).
    NotConnected,
    /// The transport already failed or closed.
    Closed,
    /// `send_rtp` was given something that is not RTP, or that the peer
    /// would demultiplex as RTCP (RFC 5761 §4: payload types 64–95).
    NotRtp,
    /// `send_rtcp` was given something that is not RTCP (second byte
    /// outside 192–223).
    NotRtcp,
    /// The API was used in a way it does not allow.
    Misuse(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Ice(r) => write!(f, "ICE failed: {r}"),
            Error::Candidate(e) => write!(f, "candidate refused: {e}"),
            Error::Dtls(e) => write!(f, "DTLS failed: {e}"),
            Error::PeerAlert(a) => write!(
                f,
                "the peer ended DTLS with a fatal alert (description {})",
                a.description.0
            ),
            Error::FingerprintMismatch { expected, actual } => {
                write!(
                    f,
                    "the peer's DTLS certificate is not the one its session description announced: \
                     expected "
                )?;
                for (i, e) in expected.iter().enumerate() {
                    write!(f, "{}{e}", if i == 0 { "" } else { " or " })?;
                }
                write!(f, ", got {actual}")
            }
            Error::Srtp(e) => write!(f, "{e}"),
            Error::UnsupportedSrtpProfile(id) => {
                write!(f, "DTLS negotiated SRTP profile {id:#06x}, which we cannot key")
            }
            Error::NoSrtpKeys => f.write_str(
                "no SRTP keys: DTLS has not connected, or it negotiated no SRTP profile",
            ),
            Error::NotConnected => f.write_str("not connected yet (DTLS handshake not complete)"),
            Error::Closed => f.write_str("the transport is failed or closed"),
            Error::NotRtp => f.write_str(
                "not an RTP packet, or its payload type (64-95) would be read as RTCP (RFC 5761 §4)",
            ),
            Error::NotRtcp => f.write_str("not an RTCP packet (packet type outside 192-223)"),
            Error::Misuse(why) => write!(f, "API misuse: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Candidate(e) => Some(e),
            Error::Dtls(e) => Some(e),
            Error::Srtp(e) => Some(e),
            _ => None,
        }
    }
}

/// Counters of the receive and send paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// STUN datagrams handed to ICE.
    pub stun_received: u64,
    /// DTLS datagrams handed to the endpoint.
    pub dtls_received: u64,
    /// SRTP packets that authenticated and were delivered.
    pub rtp_received: u64,
    /// SRTCP packets that authenticated and were delivered.
    pub rtcp_received: u64,
    /// RTP packets protected and sent.
    pub rtp_sent: u64,
    /// RTCP packets protected and sent.
    pub rtcp_sent: u64,
    /// Datagrams whose first byte names no layer we run (RFC 7983 §7).
    pub dropped_unknown_kind: u64,
    /// DTLS or SRTP from an address that is not the remote end of a valid
    /// ICE pair (RFC 8445 §12.1), including DTLS held from a remote
    /// candidate that was dropped before its pair became valid.
    pub dropped_unknown_source: u64,
    /// SRTP/SRTCP that arrived before the keys existed.
    pub dropped_before_keys: u64,
    /// SRTP/SRTCP that failed to unprotect (forged, corrupt, replayed).
    pub dropped_unprotect: u64,
    /// Media dropped because the application did not drain events.
    pub dropped_events: u64,
    /// Datagrams received after the transport failed or closed.
    pub dropped_after_close: u64,
}

/// The SRTP contexts of one connection.
#[derive(Debug)]
struct Srtp {
    profile: ProtectionProfile,
    /// Protects what we send (our DTLS role's write key, RFC 5764 §4.2).
    tx: SrtpContext,
    /// Unprotects what the peer sends (the other write key).
    rx: SrtpContext,
}

/// SRTP keys once DTLS agreed on them. The contexts (4.7 KB with their
/// cipher state) are made on the first media packet either way: a
/// data-only connection, which negotiates `use_srtp` all the same, never
/// holds them.
enum SrtpKeys {
    /// The master keys, checked against the profile (RFC 5764 §4.2 split).
    Pending {
        profile: ProtectionProfile,
        ours: MasterKey,
        theirs: MasterKey,
    },
    Ready(Box<Srtp>),
}

impl fmt::Debug for SrtpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // No key bytes in logs.
            SrtpKeys::Pending { profile, .. } => write!(f, "Pending({profile:?})"),
            SrtpKeys::Ready(s) => write!(f, "Ready({:?})", s.profile),
        }
    }
}

impl SrtpKeys {
    fn profile(&self) -> ProtectionProfile {
        match self {
            SrtpKeys::Pending { profile, .. } => *profile,
            SrtpKeys::Ready(s) => s.profile,
        }
    }
}

/// The SRTP contexts in `slot`, made from its pending keys on first use.
fn srtp_contexts(slot: &mut Option<SrtpKeys>, config: srtp::Config) -> Result<&mut Srtp, Error> {
    let keys = slot.as_mut().ok_or(Error::NoSrtpKeys)?;
    if let SrtpKeys::Pending {
        profile,
        ours,
        theirs,
    } = keys
    {
        let tx = SrtpContext::from_master_key(ours, config).map_err(Error::Srtp)?;
        let rx = SrtpContext::from_master_key(theirs, config).map_err(Error::Srtp)?;
        let profile = *profile;
        *keys = SrtpKeys::Ready(Box::new(Srtp { profile, tx, rx }));
    }
    match keys {
        SrtpKeys::Ready(s) => Ok(s),
        SrtpKeys::Pending { .. } => Err(Error::NoSrtpKeys),
    }
}

/// Everything that lives only while the transport is up; dropped whole when
/// it fails or closes (no timers, no keys left behind).
#[derive(Debug)]
struct Live {
    /// The ICE agent and its TURN allocation.
    ice: IceTransport,
    dtls: Option<Endpoint>,
    srtp: Option<SrtpKeys>,
    /// The selected pair (local, remote), once ICE chose it.
    selected: Option<(Candidate, Candidate)>,
    /// Its remote address: the fast path of "is this our peer".
    remote_addr: Option<SocketAddr>,
    /// DTLS not yet readable: no endpoint yet, or its source's pair is not
    /// valid yet (source, destination, datagram; see [`MAX_HELD_DTLS`]).
    held_dtls: VecDeque<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// The round trip of the check that made the first pair valid.
    valid_rtt: Option<Duration>,
    /// DTLS of ours waiting for ICE to have a path.
    pending_out: VecDeque<Vec<u8>>,
    /// The suite the DTLS handshake chose, once it finished.
    cipher_suite: Option<crate::dtls::record::CipherSuite>,
}

/// One ICE agent, one DTLS endpoint and the SRTP contexts it keys, on one
/// 5-tuple: the transport a `PeerConnection` bundles every m-line onto.
pub struct Transport {
    ice_role: IceRole,
    dtls_role: Option<DtlsRole>,
    remote_fingerprints: Vec<Fingerprint>,
    srtp_profiles: Vec<ProtectionProfile>,
    srtp_config: srtp::Config,
    mtu: usize,
    dtls_retransmit_timeout: Duration,
    dtls_max_version: endpoint::Version,
    stun_server: Option<SocketAddr>,
    /// Ours, until the DTLS endpoint takes it.
    certificate: Option<Certificate>,
    local_fingerprint: Fingerprint,
    /// The DTLS endpoint's random generator, until the endpoint takes it.
    dtls_rng: Option<StdRng>,
    local_credentials: Credentials,
    state: State,
    live: Option<Live>,
    /// DTLS records, SRTP and SRTCP packets to send over the selected
    /// pair, in one reused buffer.
    outbox: Outbox,
    /// Datagrams ICE had queued when `live` was dropped.
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: Stats,
    /// Reused for protecting outgoing media.
    scratch: Vec<u8>,
    /// Buffers of RTP/RTCP events given back by the application, reused
    /// for the next packets (at most [`MEDIA_POOL`]).
    media_pool: Vec<Vec<u8>>,
    /// Nothing was queued (datagram or event) since the last timer: the
    /// next timer releases the buffers' capacity (an idle peer holds
    /// none).
    quiet: bool,
    /// Copies of the plaintext RTP/RTCP for a packet capture, when the
    /// tap is on ([`Transport::set_plaintext_tap`]).
    plaintext: Option<VecDeque<Plaintext>>,
}

/// A plaintext RTP or RTCP packet the transport protected or unprotected,
/// copied for a packet capture ([`Transport::poll_plaintext`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plaintext {
    /// Sent (protected after this copy) or received (unprotected before).
    pub outbound: bool,
    /// RTCP (else RTP).
    pub rtcp: bool,
    /// Our address of the datagram that carried it.
    pub local: SocketAddr,
    /// The peer's address.
    pub remote: SocketAddr,
    /// The plain packet.
    pub packet: Vec<u8>,
}

/// Most plaintext copies kept for [`Transport::poll_plaintext`]; older ones
/// are dropped when nobody drains them.
const PLAINTEXT_QUEUE: usize = 1024;

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("ice_role", &self.ice_role)
            .field("dtls_role", &self.dtls_role)
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// RFC 8122 §5: of several fingerprints, the receiver uses those made with
/// the strongest hash function it supports; the certificate must match one
/// of them.
fn strongest(fingerprints: &[Fingerprint]) -> Vec<Fingerprint> {
    let rank = |h: HashAlgorithm| match h {
        HashAlgorithm::Sha1 => 1,
        HashAlgorithm::Sha256 => 2,
        HashAlgorithm::Sha384 => 3,
        HashAlgorithm::Sha512 => 4,
    };
    let Some(best) = fingerprints.iter().map(|f| rank(f.algorithm)).max() else {
        return Vec::new();
    };
    fingerprints
        .iter()
        .filter(|f| rank(f.algorithm) == best)
        .cloned()
        .collect()
}

/// Checks a peer certificate against the signaled fingerprints (RFC 8122
/// §5, RFC 8842 §5): `Ok` with the matching fingerprint, or the typed
/// mismatch naming what was expected and what the certificate hashes to.
pub fn verify_fingerprint(expected: &[Fingerprint], der: &[u8]) -> Result<Fingerprint, Error> {
    let chosen = strongest(expected);
    let Some(first) = chosen.first() else {
        return Err(Error::Misuse("no remote fingerprint to check against"));
    };
    let actual = Fingerprint::of(first.algorithm, der);
    if chosen.contains(&actual) {
        Ok(actual)
    } else {
        Err(Error::FingerprintMismatch {
            expected: chosen,
            actual,
        })
    }
}

impl Transport {
    /// A transport with its host candidates added (reported as
    /// [`Event::LocalCandidate`]) and server-reflexive gathering started.
    /// `rng` seeds the ICE agent (credentials, tie-breaker, transaction ids)
    /// and the DTLS endpoint.
    pub fn new(config: Config, now: Instant, mut rng: StdRng) -> Result<Transport, Error> {
        let ice_config = ice::Config {
            controlling: config.ice_role == IceRole::Controlling,
            stun_server: config.stun_server,
            ..config.ice
        };
        let mut ice = IceTransport::new(
            IceTransportConfig {
                agent: ice_config,
                turn: config.turn,
            },
            StdRng::seed_from_u64(rng.random()),
        );
        if let Some(c) = config.local_credentials
            && !ice.agent_mut().set_local_credentials(c)
        {
            return Err(Error::Misuse(
                "local ICE credentials: ice-ufrag 4-256 and ice-pwd 22-256 ice-chars (RFC 8839 §5.4)",
            ));
        }
        for &h in &config.host_candidates {
            ice.add_local_host(now, h).map_err(Error::Candidate)?;
        }
        if let Some(c) = &config.remote_credentials {
            ice.set_remote_credentials(now, &c.ufrag, &c.pwd);
        }
        let local_credentials = ice.local_credentials().clone();
        let mut t = Transport {
            ice_role: config.ice_role,
            dtls_role: config.dtls_role,
            remote_fingerprints: config.remote_fingerprints,
            srtp_profiles: config.srtp_profiles,
            srtp_config: config.srtp,
            mtu: config.mtu,
            dtls_retransmit_timeout: config.dtls_retransmit_timeout,
            dtls_max_version: config.dtls_max_version,
            stun_server: config.stun_server,
            local_fingerprint: config.certificate.fingerprint(),
            certificate: Some(config.certificate),
            dtls_rng: Some(StdRng::seed_from_u64(rng.random())),
            local_credentials,
            state: State::New,
            live: Some(Live {
                ice,
                dtls: None,
                srtp: None,
                selected: None,
                remote_addr: None,
                held_dtls: VecDeque::new(),
                valid_rtt: None,
                pending_out: VecDeque::new(),
                cipher_suite: None,
            }),
            outbox: Outbox::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            // Grown on the first media packet: a data-only peer never
            // holds it.
            scratch: Vec::new(),
            media_pool: Vec::new(),
            quiet: false,
            plaintext: None,
        };
        t.drain_ice(now);
        t.maybe_start_dtls(now);
        Ok(t)
    }

    // ---- accessors ----------------------------------------------------

    /// Where the transport is.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our ICE role as configured (the agent may switch it after a role
    /// conflict, RFC 8445 §7.3.1.1).
    pub fn ice_role(&self) -> IceRole {
        self.ice_role
    }

    /// Our DTLS role, once known.
    pub fn dtls_role(&self) -> Option<DtlsRole> {
        self.dtls_role
    }

    /// Our `ice-ufrag` and `ice-pwd`, to signal (drawn from the seeded RNG).
    pub fn local_credentials(&self) -> &Credentials {
        &self.local_credentials
    }

    /// Our certificate's SHA-256 fingerprint, to signal as `a=fingerprint`.
    pub fn local_fingerprint(&self) -> &Fingerprint {
        &self.local_fingerprint
    }

    /// The selected candidate pair (local, remote), once ICE chose one.
    pub fn selected_pair(&self) -> Option<(&Candidate, &Candidate)> {
        let (l, r) = self.live.as_ref()?.selected.as_ref()?;
        Some((l, r))
    }

    /// The DTLS cipher suite, once the handshake finished.
    pub fn dtls_cipher_suite(&self) -> Option<crate::dtls::record::CipherSuite> {
        self.live.as_ref()?.cipher_suite
    }

    /// The negotiated SRTP profile, once keys are installed.
    pub fn srtp_profile(&self) -> Option<ProtectionProfile> {
        Some(self.live.as_ref()?.srtp.as_ref()?.profile())
    }

    /// The ICE agent, for inspection (`None` once failed or closed).
    pub fn ice(&self) -> Option<&Agent> {
        self.live.as_ref().map(|l| l.ice.agent())
    }

    /// The ICE agent with its TURN allocation (relay status and counts).
    pub fn ice_transport(&self) -> Option<&IceTransport> {
        self.live.as_ref().map(|l| &l.ice)
    }

    /// The DTLS endpoint, once it exists (its role, state and peer).
    pub fn dtls(&self) -> Option<&Endpoint> {
        self.live.as_ref()?.dtls.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ---- signaling inputs -----------------------------------------------

    /// Sets the peer's ICE credentials (from its description).
    pub fn set_remote_credentials(&mut self, now: Instant, credentials: &Credentials) {
        if let Some(live) = self.live.as_mut() {
            live.ice
                .set_remote_credentials(now, &credentials.ufrag, &credentials.pwd);
        }
        self.drain_ice(now);
    }

    /// Adds a remote candidate (trickled or from the description).
    pub fn add_remote_candidate(
        &mut self,
        now: Instant,
        candidate: Candidate,
    ) -> Result<(), Error> {
        let live = self.live.as_mut().ok_or(Error::Closed)?;
        let r = live
            .ice
            .add_remote_candidate(now, candidate)
            .map_err(Error::Candidate);
        self.drain_ice(now);
        r
    }

    /// The peer signaled end-of-candidates (RFC 8838 §13).
    pub fn end_of_candidates(&mut self, now: Instant) {
        if let Some(live) = self.live.as_mut() {
            live.ice.end_of_remote_candidates(now);
        }
        self.drain_ice(now);
    }

    /// Sets our DTLS role and the peer's certificate fingerprints, when the
    /// description that carries them arrives after the transport was made
    /// (the offerer learns both from the answer). Refused once DTLS started.
    pub fn set_remote_dtls(
        &mut self,
        now: Instant,
        role: DtlsRole,
        fingerprints: Vec<Fingerprint>,
    ) -> Result<(), Error> {
        let live = self.live.as_ref().ok_or(Error::Closed)?;
        if live.dtls.is_some() {
            return Err(Error::Misuse("the DTLS handshake already started"));
        }
        if fingerprints.is_empty() {
            return Err(Error::Misuse("at least one remote fingerprint is needed"));
        }
        self.dtls_role = Some(role);
        self.remote_fingerprints = fingerprints;
        self.maybe_start_dtls(now);
        Ok(())
    }

    /// Gives back the buffer of an [`Event::ApplicationData`] (a DTLS
    /// record's plaintext), to carry a later record.
    pub fn recycle_application_data(&mut self, buf: Vec<u8>) {
        if let Some(d) = self.live.as_mut().and_then(|l| l.dtls.as_mut()) {
            d.recycle(buf);
        }
    }

    /// Gives back the buffer of an [`Event::Rtp`] or [`Event::Rtcp`], to
    /// carry a later packet: a receiver that recycles allocates nothing per
    /// packet. At most 64 are kept.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.media_pool.len() < MEDIA_POOL && buf.capacity() >= MEDIA_BUF {
            self.media_pool.push(buf);
        }
    }

    // ---- sending ---------------------------------------------------------

    /// Protects one plain RTP packet with SRTP and sends it over the
    /// selected pair. No allocation once the buffers have grown
    /// ([`Machine::poll_transmit_into`] takes it out; `poll_transmit`
    /// allocates the datagram it hands over).
    pub fn send_rtp(&mut self, packet: &[u8]) -> Result<(), Error> {
        let mut datagram = std::mem::take(&mut self.scratch);
        datagram.clear();
        datagram.extend_from_slice(packet);
        let r = self.protect_rtp(&mut datagram);
        if let Ok(meta) = r {
            self.outbox.push(meta, &datagram);
        }
        self.scratch = datagram;
        r.map(drop)
    }

    /// Protects the plain RTP packet in `packet` with SRTP, in place, and
    /// returns the addresses it goes between, for a caller that sends it
    /// itself rather than through [`Transport::send_rtp`]'s queue (a
    /// forwarder gathering many connections' datagrams in one buffer). It
    /// counts as sent: the packet must leave.
    pub fn protect_rtp(&mut self, packet: &mut Vec<u8>) -> Result<TransmitMeta, Error> {
        if classify(packet) != PacketKind::Rtp {
            return Err(Error::NotRtp);
        }
        let live = self.live.as_mut().ok_or(Error::Closed)?;
        let meta = Self::path(live).ok_or(Error::NotConnected);
        let srtp = srtp_contexts(&mut live.srtp, self.srtp_config)?;
        let meta = meta?;
        Self::tap(&mut self.plaintext, true, false, meta, packet);
        srtp.tx.protect_rtp(packet).map_err(Error::Srtp)?;
        self.quiet = false;
        self.stats.rtp_sent += 1;
        Ok(meta)
    }

    /// Queues a datagram `protect_rtp` made, to leave through
    /// [`Machine::poll_transmit_into`] like the transport's own.
    pub(crate) fn queue_protected(&mut self, meta: TransmitMeta, datagram: &[u8]) {
        self.outbox.push(meta, datagram);
    }

    /// Protects one (compound) RTCP packet with SRTCP and sends it.
    pub fn send_rtcp(&mut self, packet: &[u8]) -> Result<(), Error> {
        if classify(packet) != PacketKind::Rtcp {
            return Err(Error::NotRtcp);
        }
        let live = self.live.as_mut().ok_or(Error::Closed)?;
        let meta = Self::path(live).ok_or(Error::NotConnected);
        let srtp = srtp_contexts(&mut live.srtp, self.srtp_config)?;
        let meta = meta?;
        self.scratch.clear();
        self.scratch.extend_from_slice(packet);
        Self::tap(&mut self.plaintext, true, true, meta, packet);
        srtp.tx
            .protect_rtcp(&mut self.scratch)
            .map_err(Error::Srtp)?;
        self.outbox.push(meta, &self.scratch);
        self.quiet = false;
        self.stats.rtcp_sent += 1;
        Ok(())
    }

    /// Sends DTLS application data (one record; SCTP packets ride on this),
    /// sealed straight into the transport's reused send buffer: no
    /// allocation per record.
    pub fn send_application_data(&mut self, data: &[u8]) -> Result<(), Error> {
        let connected = self.state == State::Connected;
        let live = self.live.as_mut().ok_or(Error::Closed)?;
        // Whatever the endpoint queued (an alert) goes first.
        Self::flush_dtls(live, &mut self.outbox);
        let meta = Self::path(live).ok_or(Error::NotConnected)?;
        let dtls = live.dtls.as_mut().filter(|_| connected);
        let dtls = dtls.ok_or(Error::NotConnected)?;
        self.outbox
            .push_with(meta, |out| dtls.seal_application_data(data, out))
            .map_err(Error::Dtls)
    }

    /// Closes: DTLS close_notify (if connected) goes out, then everything
    /// is freed. Reports [`Event::Closed`].
    pub fn close(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if let Some(d) = live.dtls.as_mut() {
            d.close();
        }
        self.state = State::Closed;
        self.events.push_back(Event::Closed);
        self.teardown();
    }

    /// Whether `datagram` from `source` belongs to this transport, so that
    /// one socket can serve many: STUN requests by the USERNAME's first
    /// half (our ufrag, RFC 8445 §7.3), everything else (STUN responses,
    /// DTLS, SRTP) by a known remote address.
    pub fn accepts(&self, datagram: &[u8], source: SocketAddr) -> bool {
        let Some(live) = self.live.as_ref() else {
            return false;
        };
        // Our TURN server's answers and what it relays.
        if live.ice.turn_client().is_some_and(|c| c.server() == source) {
            return true;
        }
        if classify(datagram) == PacketKind::Stun
            && let Ok(m) = Message::parse(datagram)
        {
            if let Ok(Some(u)) = m.username() {
                let ours = u.split_once(':').map_or(u, |(l, _)| l);
                return ours == self.local_credentials.ufrag;
            }
            if matches!(m.class(), Class::Success | Class::Error)
                && Some(source) == self.stun_server
            {
                return true;
            }
        }
        Self::known_source(live, source)
    }

    // ---- internals --------------------------------------------------------

    /// Where data goes: ICE's selected path (RFC 8445 §12.1), `None`
    /// before one is selected or after consent was lost.
    fn path(live: &Live) -> Option<TransmitMeta> {
        let (base, remote) = live.ice.agent().selected_path()?;
        (live.ice.agent().state() != ConnectionState::Failed).then_some(TransmitMeta {
            source: Some(base),
            destination: remote,
        })
    }

    /// Whether `source` is a valid pair's remote address (see
    /// [`Agent::is_valid_remote`]). The pair data uses is one (ICE reports
    /// only valid pairs), so the common case costs one comparison.
    fn valid_source(live: &Live, source: SocketAddr) -> bool {
        live.remote_addr == Some(source) || live.ice.agent().is_valid_remote(source)
    }

    fn known_source(live: &Live, source: SocketAddr) -> bool {
        live.remote_addr == Some(source)
            || live
                .ice
                .agent()
                .remote_candidates()
                .iter()
                .any(|c| c.socket_addr() == Some(source))
    }

    /// At a timer: if nothing was queued since the last one, gives back
    /// what the queues and buffers grew to in the last burst.
    fn trim(&mut self) {
        self.outbox.trim();
        if self.quiet {
            if self.events.is_empty() {
                self.events = VecDeque::new();
            }
            self.scratch = Vec::new();
            self.media_pool = Vec::new();
            if let Some(live) = self.live.as_mut() {
                if live.held_dtls.is_empty() {
                    live.held_dtls = VecDeque::new();
                }
                if live.pending_out.is_empty() {
                    live.pending_out = VecDeque::new();
                }
            }
        }
        self.quiet = true;
    }

    fn push_event(&mut self, e: Event) {
        self.quiet = false;
        let media = matches!(
            e,
            Event::Rtp(_) | Event::Rtcp(_) | Event::ApplicationData(_)
        );
        if media && self.events.len() >= MAX_EVENTS {
            self.stats.dropped_events += 1;
        } else {
            self.events.push_back(e);
        }
    }

    /// Creates the DTLS endpoint once its inputs are known: the server as
    /// soon as it has a role and fingerprints (a ClientHello may come any
    /// time after our ICE answered a check), the client once ICE selected
    /// the pair to send its ClientHello to.
    fn maybe_start_dtls(&mut self, now: Instant) {
        let Some(role) = self.dtls_role else { return };
        if self.remote_fingerprints.is_empty() {
            return;
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.dtls.is_some() {
            return;
        }
        let peer = live.remote_addr;
        if role == DtlsRole::Client && peer.is_none() {
            return;
        }
        let (Some(certificate), Some(rng)) = (self.certificate.take(), self.dtls_rng.take()) else {
            return;
        };
        let mut config = endpoint::Config::new(certificate);
        config.initial_retransmit_timeout = self.dtls_retransmit_timeout;
        config.max_version = self.dtls_max_version;
        // With one fingerprint of the strongest hash, the endpoint checks it
        // inside the handshake and refuses with a bad_certificate alert; with
        // several we check after the handshake (RFC 8122 §5: any may match).
        let chosen = strongest(&self.remote_fingerprints);
        config.expected_fingerprint = match chosen.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        config.srtp_profiles = self
            .srtp_profiles
            .iter()
            .map(|p| SrtpProfile(p.id()))
            .collect();
        config.mtu = self.mtu;
        let endpoint = match (role, peer) {
            (DtlsRole::Client, Some(peer)) => Endpoint::client(config, peer, rng, now),
            _ => Endpoint::server(config, rng),
        };
        tracing::debug!(?role, ?peer, "DTLS endpoint started");
        live.dtls = Some(endpoint);
        self.release_held_dtls(now);
        // A client's ClientHello goes out now.
        self.drain_dtls(now);
    }

    /// Reads the held DTLS datagrams that may now be read (an endpoint
    /// exists and their source's pair is valid); the others stay held.
    fn release_held_dtls(&mut self, now: Instant) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if live.dtls.is_none() || live.held_dtls.is_empty() {
            return;
        }
        let held = std::mem::take(&mut live.held_dtls);
        for (source, destination, contents) in held {
            let valid = Self::valid_source(live, source);
            if let Some(e) = live.dtls.as_mut().filter(|_| valid) {
                self.stats.dtls_received += 1;
                let d = Receive {
                    source,
                    destination,
                    contents: &contents,
                };
                Self::read_dtls(e, now, d);
            } else {
                live.held_dtls.push_back((source, destination, contents));
            }
        }
        self.drain_dtls(now);
    }

    /// Hands a datagram from a valid pair's remote address to the endpoint.
    ///
    /// ICE, not DTLS, decides which addresses are the peer's: any valid
    /// pair's (RFC 8445 §12.1; Chromium may move to another pair during the
    /// call), and we send only over the selected pair ([`Agent::send`]),
    /// which [`Endpoint::set_peer`] follows in [`Transport::use_pair`]. The
    /// endpoint, which reads only from its one peer address, is given the
    /// datagram as from that address: a record never re-aims it.
    fn read_dtls(e: &mut Endpoint, now: Instant, mut d: Receive<'_>) {
        if let Some(peer) = e.peer() {
            d.source = peer;
        }
        e.handle_receive(now, d);
    }

    /// Holds a DTLS datagram (oldest dropped first when full); returns
    /// whether one was dropped.
    fn hold_dtls(live: &mut Live, d: &Receive<'_>) -> bool {
        let dropped = live.held_dtls.len() >= MAX_HELD_DTLS;
        if dropped {
            live.held_dtls.pop_front();
        }
        live.held_dtls
            .push_back((d.source, d.destination, d.contents.to_vec()));
        dropped
    }

    fn drain_ice(&mut self, now: Instant) {
        while let Some(e) = self.live.as_mut().and_then(|l| l.ice.poll_event()) {
            match e {
                ice::Event::LocalCandidate(c) => self.push_event(Event::LocalCandidate(c)),
                ice::Event::GatheringComplete => self.push_event(Event::GatheringComplete),
                ice::Event::StateChange(s) => {
                    if s == ConnectionState::Checking && self.state == State::New {
                        self.state = State::Checking;
                    }
                    self.push_event(Event::IceStateChanged(s));
                }
                ice::Event::ValidPair { local, remote, rtt } => {
                    if let Some(live) = self.live.as_mut() {
                        live.valid_rtt = Some(rtt);
                    }
                    self.use_pair(now, local, remote, false)
                }
                ice::Event::SelectedPair { local, remote } => {
                    self.use_pair(now, local, remote, true)
                }
                ice::Event::Failed(reason) => self.fail(Error::Ice(reason)),
                ice::Event::RoleChanged { controlling } => {
                    tracing::debug!(controlling, "ICE role switched after a conflict");
                }
                // A datagram relayed by the TURN server from the peer
                // (only STUN reaches the agent from sockets).
                ice::Event::Data { source, data } => {
                    let relayed = self.live.as_ref().and_then(|l| l.ice.relayed_address());
                    if let Some(relayed) = relayed {
                        self.demux(
                            now,
                            Receive {
                                source,
                                destination: relayed,
                                contents: &data,
                            },
                        );
                    }
                }
            }
        }
        // A check may have made a pair valid (only the first reports it).
        self.release_held_dtls(now);
    }

    /// Data now goes over this pair: a valid pair before selection (RFC
    /// 8445 §12.1), used as the selected one so that DTLS starts over it,
    /// or the selected pair, which replaces it. On selection a DTLS client
    /// whose ClientHello has gone unanswered for two round trips of the
    /// check that validated the pair sends it again at once (see
    /// [`Endpoint::resend_unanswered_client_hello`]); sooner, the answer
    /// may still be on its way.
    fn use_pair(&mut self, now: Instant, local: Candidate, remote: Candidate, selected: bool) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.remote_addr = remote.socket_addr();
        if let (Some(d), Some(addr)) = (live.dtls.as_mut(), live.remote_addr) {
            d.set_peer(addr);
        }
        live.selected = Some((local, remote));
        if let Some(meta) = Self::path(live) {
            while let Some(d) = live.pending_out.pop_front() {
                self.outbox.push(meta, &d);
            }
        }
        if matches!(self.state, State::New | State::Checking) {
            self.state = State::Handshaking;
        }
        if selected
            && let Some(rtt) = live.valid_rtt
            && let Some(d) = live.dtls.as_mut()
        {
            d.resend_unanswered_client_hello(now, 2 * rtt + Duration::from_millis(1));
            self.drain_dtls(now);
        }
        self.maybe_start_dtls(now);
    }

    /// Sends what the DTLS endpoint queued over the ICE path (or keeps it
    /// until there is one).
    fn flush_dtls(live: &mut Live, outbox: &mut Outbox) {
        let path = Self::path(live);
        let Some(d) = live.dtls.as_mut() else { return };
        while let Some(t) = d.poll_transmit() {
            match path {
                Some(meta) => outbox.push(meta, &t.contents),
                None if live.pending_out.len() < MAX_PENDING_OUT => {
                    live.pending_out.push_back(t.contents)
                }
                None => {}
            }
        }
    }

    fn drain_dtls(&mut self, now: Instant) {
        loop {
            let Some(live) = self.live.as_mut() else {
                return;
            };
            Self::flush_dtls(live, &mut self.outbox);
            let Some(e) = live.dtls.as_mut().and_then(|d| d.poll_event()) else {
                return;
            };
            self.on_dtls_event(now, e);
        }
    }

    fn on_dtls_event(&mut self, _now: Instant, e: DtlsEvent) {
        match e {
            DtlsEvent::Connected(c) => {
                let peer_fingerprint =
                    match verify_fingerprint(&self.remote_fingerprints, &c.peer_certificate) {
                        Ok(f) => f,
                        Err(e) => return self.fail(e),
                    };
                let Some(role) = self.dtls_role else { return };
                let srtp_profile = match c.srtp_profile {
                    None => None,
                    Some(p) => {
                        let Some(profile) = ProtectionProfile::from_id(p.0) else {
                            return self.fail(Error::UnsupportedSrtpProfile(p.0));
                        };
                        let material = c.srtp_keying_material.as_deref().unwrap_or(&[]);
                        if let Err(e) = self.install_srtp(role, profile, material) {
                            return self.fail(e);
                        }
                        Some(profile)
                    }
                };
                let Some((local, remote)) = self.live.as_ref().and_then(|l| l.selected.clone())
                else {
                    return self.fail(Error::Misuse("DTLS connected without a selected pair"));
                };
                self.state = State::Connected;
                tracing::debug!(?role, ?srtp_profile, "transport connected");
                if let Some(l) = self.live.as_mut() {
                    l.cipher_suite = Some(c.cipher_suite);
                }
                self.push_event(Event::Connected(Box::new(Connected {
                    srtp_profile,
                    dtls_role: role,
                    cipher_suite: c.cipher_suite,
                    local,
                    remote,
                    peer_fingerprint,
                })));
            }
            DtlsEvent::ApplicationData(d) => {
                if self.state == State::Connected {
                    self.push_event(Event::ApplicationData(d));
                }
            }
            DtlsEvent::Closed => {
                self.state = State::Closed;
                self.push_event(Event::Closed);
                self.teardown();
            }
            DtlsEvent::Failed(e) => {
                let rejected = self
                    .live
                    .as_ref()
                    .and_then(|l| l.dtls.as_ref())
                    .and_then(|d| d.rejected_fingerprint())
                    .cloned();
                let err = match (e, rejected) {
                    (DtlsError::FingerprintMismatch, Some(actual)) => Error::FingerprintMismatch {
                        expected: strongest(&self.remote_fingerprints),
                        actual,
                    },
                    (e, _) => Error::Dtls(e),
                };
                self.fail(err);
            }
            DtlsEvent::PeerAlert(a) => self.fail(Error::PeerAlert(a)),
        }
    }

    /// Keys SRTP from the DTLS exporter output, RFC 5764 §4.2: the client
    /// protects with `client_write_*` and unprotects with `server_write_*`;
    /// the server the other way round.
    pub(crate) fn install_srtp(
        &mut self,
        role: DtlsRole,
        profile: ProtectionProfile,
        material: &[u8],
    ) -> Result<(), Error> {
        let (client, server) = profile
            .split_keying_material(material)
            .map_err(Error::Srtp)?;
        let (ours, theirs) = match role {
            DtlsRole::Client => (client, server),
            DtlsRole::Server => (server, client),
        };
        // Made and dropped once here, so that keys the contexts refuse
        // fail the handshake now rather than the first packet.
        SrtpContext::from_master_key(&ours, self.srtp_config).map_err(Error::Srtp)?;
        SrtpContext::from_master_key(&theirs, self.srtp_config).map_err(Error::Srtp)?;
        let live = self.live.as_mut().ok_or(Error::Closed)?;
        live.srtp = Some(SrtpKeys::Pending {
            profile,
            ours,
            theirs,
        });
        Ok(())
    }

    fn fail(&mut self, e: Error) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        tracing::debug!(error = %e, "transport failed");
        if let Some(d) = self.live.as_mut().and_then(|l| l.dtls.as_mut())
            && d.is_connected()
        {
            d.close();
        }
        self.state = State::Failed;
        self.events.push_back(Event::Failed(e));
        self.teardown();
    }

    /// Frees everything: the last DTLS datagrams (an alert, close_notify)
    /// and whatever ICE had queued are kept to send; the agent, endpoint
    /// and keys are dropped, so no timer is left.
    ///
    /// When the selected pair is relayed, those last datagrams are wrapped
    /// for the TURN allocation now (RFC 8656 §11, §12), while it is still
    /// here: [`Self::pop_outbox`] would otherwise find no allocation and
    /// hand them to the socket, which would send them from our own address
    /// straight to the peer, revealing the address a relay-only policy
    /// hides (W3C webrtc-pc §4.2.1 `iceTransportPolicy: "relay"`).
    fn teardown(&mut self) {
        let Some(mut live) = self.live.take() else {
            return;
        };
        Self::flush_dtls(&mut live, &mut self.outbox);
        if let Some(relayed) = live.ice.relayed_address() {
            let mut kept = Outbox::default();
            let mut buf = Vec::new();
            while let Some(meta) = self.outbox.pop_into(&mut buf) {
                if meta.source == Some(relayed) {
                    let _ = live.ice.send(&buf);
                } else {
                    kept.push(meta, &buf);
                }
                buf.clear();
            }
            self.outbox = kept;
        }
        while let Some(t) = live.ice.poll_transmit() {
            self.transmits.push_back(t);
        }
    }

    fn receive_media(&mut self, kind: PacketKind, d: &Receive<'_>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        if !Self::valid_source(live, d.source) {
            self.stats.dropped_unknown_source += 1;
            return;
        }
        if live.srtp.is_none() {
            self.stats.dropped_before_keys += 1;
            return;
        }
        let srtp = match srtp_contexts(&mut live.srtp, self.srtp_config) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "SRTP contexts not made");
                self.stats.dropped_before_keys += 1;
                return;
            }
        };
        // The buffer handed to the application, unprotected in place: a
        // recycled one when the application gave one back
        // ([`Transport::recycle`]), else the one allocation per packet.
        let mut buf = self
            .media_pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(MEDIA_BUF.max(d.contents.len())));
        buf.clear();
        buf.extend_from_slice(d.contents);
        let (result, event) = if kind == PacketKind::Rtcp {
            (srtp.rx.unprotect_rtcp(&mut buf), Event::Rtcp as fn(_) -> _)
        } else {
            (srtp.rx.unprotect_rtp(&mut buf), Event::Rtp as fn(_) -> _)
        };
        match result {
            Ok(()) => {
                if kind == PacketKind::Rtcp {
                    self.stats.rtcp_received += 1;
                } else {
                    self.stats.rtp_received += 1;
                }
                let meta = TransmitMeta {
                    source: Some(d.destination),
                    destination: d.source,
                };
                let rtcp = kind == PacketKind::Rtcp;
                Self::tap(&mut self.plaintext, false, rtcp, meta, &buf);
                self.push_event(event(buf));
            }
            Err(e) => {
                tracing::trace!(error = %e, "SRTP unprotect failed");
                self.stats.dropped_unprotect += 1;
            }
        }
    }
}

/// The plaintext tap for packet captures.
impl Transport {
    /// Turns on (or off) the copying of every RTP and RTCP packet in
    /// plaintext, before SRTP protects it and after SRTP unprotects it,
    /// for [`Transport::poll_plaintext`]. Off by default: a packet capture
    /// turns it on (Wireshark cannot decrypt SRTP).
    pub fn set_plaintext_tap(&mut self, on: bool) {
        if on != self.plaintext.is_some() {
            self.plaintext = on.then(VecDeque::new);
        }
    }

    /// The next plaintext copy, while the tap is on (at most
    /// 1024 are kept).
    pub fn poll_plaintext(&mut self) -> Option<Plaintext> {
        self.plaintext.as_mut()?.pop_front()
    }

    fn tap(
        q: &mut Option<VecDeque<Plaintext>>,
        outbound: bool,
        rtcp: bool,
        meta: TransmitMeta,
        packet: &[u8],
    ) {
        let Some(q) = q else { return };
        if q.len() >= PLAINTEXT_QUEUE {
            q.pop_front();
        }
        q.push_back(Plaintext {
            outbound,
            rtcp,
            local: meta.source.unwrap_or(meta.destination),
            remote: meta.destination,
            packet: packet.to_vec(),
        });
    }
}

impl Transport {
    /// What ICE (and the transport itself) has to send, appended to `buf`.
    fn poll_ice_transmit(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        let t = match self.transmits.pop_front() {
            Some(t) => t,
            None => self.live.as_mut()?.ice.poll_transmit()?,
        };
        buf.extend_from_slice(&t.contents);
        Some(t.meta())
    }

    /// The next datagram of the outbox, appended to `buf`. One whose source
    /// is our relayed address (the selected pair runs through the TURN
    /// allocation) goes to the ICE transport instead, which wraps it in a
    /// Send indication or ChannelData (RFC 8656 §11, §12) for its own
    /// `poll_transmit`.
    fn pop_outbox(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        loop {
            let start = buf.len();
            let meta = self.outbox.pop_into(buf)?;
            let relayed = self.live.as_mut().filter(|l| {
                l.ice.relayed_address().is_some() && l.ice.relayed_address() == meta.source
            });
            let Some(live) = relayed else {
                return Some(meta);
            };
            let _ = live.ice.send(&buf[start..]);
            buf.truncate(start);
        }
    }

    /// One datagram by its first byte (RFC 7983 §7): from a socket, or
    /// relayed through our TURN allocation.
    fn demux(&mut self, now: Instant, d: Receive<'_>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let kind = classify(d.contents);
        tracing::trace!(?kind, len = d.contents.len(), source = %d.source, "datagram");
        match kind {
            PacketKind::Stun => {
                self.stats.stun_received += 1;
                live.ice.handle_receive(now, d);
                self.drain_ice(now);
            }
            PacketKind::Dtls => {
                // ANCHOR: dtls_source
                // Only a valid pair's remote address may speak DTLS (RFC 8445
                // §12.1). DTLS before the endpoint exists, or from a remote
                // candidate not validated yet (its pair may become valid
                // within a round trip), is held; any other is dropped.
                let valid = Self::valid_source(live, d.source);
                if let Some(e) = live.dtls.as_mut().filter(|_| valid) {
                    self.stats.dtls_received += 1;
                    Self::read_dtls(e, now, d);
                } else if valid || Self::known_source(live, d.source) {
                    if Self::hold_dtls(live, &d) {
                        self.stats.dropped_unknown_source += 1;
                    }
                    return;
                } else {
                    self.stats.dropped_unknown_source += 1;
                    return;
                }
                // ANCHOR_END: dtls_source
                self.drain_dtls(now);
            }
            PacketKind::Rtp | PacketKind::Rtcp => self.receive_media(kind, &d),
            PacketKind::Unknown => self.stats.dropped_unknown_kind += 1,
        }
    }
}

impl Machine for Transport {
    type Event = Event;

    /// RFC 7983 §7 demultiplexing: the first byte picks the layer. What
    /// the TURN server sends (its answers, and the peer's datagrams it
    /// relays in Data indications or ChannelData, RFC 8656 §11, §12) goes
    /// to the ICE transport, which hands the relayed datagrams back as
    /// [`ice::Event::Data`] (then demultiplexed as if they had arrived on the
    /// relayed address).
    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        let Some(live) = self.live.as_mut() else {
            self.stats.dropped_after_close += 1;
            return;
        };
        if live
            .ice
            .turn_client()
            .is_some_and(|c| c.server() == d.source)
        {
            live.ice.handle_receive(now, d);
            self.drain_ice(now);
            return;
        }
        self.demux(now, d);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        live.ice.handle_timeout(now);
        self.trim();
        self.drain_ice(now);
        if let Some(d) = self.live.as_mut().and_then(|l| l.dtls.as_mut()) {
            d.handle_timeout(now);
        }
        self.drain_dtls(now);
    }

    /// ICE's own datagrams go first (see `poll_transmit_into`).
    fn poll_transmit(&mut self) -> Option<Transmit> {
        let mut contents = Vec::new();
        let meta = self.poll_transmit_into(&mut contents)?;
        Some(Transmit {
            source: meta.source,
            destination: meta.destination,
            contents,
        })
    }

    /// ICE's own checks and answers (a few a second) first, through its
    /// `poll_transmit`; then DTLS records and SRTP packets from the reused
    /// outbox (no allocation). The order matters when a nominating check
    /// selects the pair and DTLS answers at once (a ClientHello resent on
    /// selection): the controlling agent takes the pair as nominated only
    /// once our success response reaches it (RFC 8445 §7.2.5.3.4), and
    /// Firefox drops DTLS that arrives before (which then waited for our
    /// 100 ms retransmission).
    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        if let Some(meta) = self.poll_ice_transmit(buf) {
            return Some(meta);
        }
        if let Some(meta) = self.pop_outbox(buf) {
            return Some(meta);
        }
        // The outbox's relayed datagrams went to ICE to be wrapped.
        self.poll_ice_transmit(buf)
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let live = self.live.as_ref()?;
        let dtls = live.dtls.as_ref().and_then(|d| d.poll_timeout());
        match (live.ice.poll_timeout(), dtls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn cert(seed: u64) -> Certificate {
        Certificate::generate(&mut StdRng::seed_from_u64(seed), SystemTime::now()).unwrap()
    }

    const LOCAL: &str = "10.0.0.1:1000";
    const REMOTE: &str = "10.0.0.2:2000";

    /// A transport with a remote candidate and SRTP keys installed.
    fn keyed(role: DtlsRole, profile: ProtectionProfile, material: &[u8]) -> Transport {
        let now = Instant::now();
        let c = cert(1);
        let fp = c.fingerprint();
        let mut config = Config::new(IceRole::Controlled, c);
        config.host_candidates = vec![LOCAL.parse().unwrap()];
        config.dtls_role = Some(role);
        config.remote_fingerprints = vec![fp];
        let mut t = Transport::new(config, now, StdRng::seed_from_u64(1)).unwrap();
        let cand = Candidate::parse("candidate:1 1 udp 2130706431 10.0.0.2 2000 typ host").unwrap();
        t.add_remote_candidate(now, cand).unwrap();
        validate_remote(&mut t, now);
        t.install_srtp(role, profile, material).unwrap();
        t
    }

    /// Answers our ICE check to REMOTE as the peer would, so that its pair
    /// is valid and REMOTE may send DTLS and SRTP.
    fn validate_remote(t: &mut Transport, now: Instant) {
        let pwd = "the-peers-password-22ch";
        let theirs = Credentials {
            ufrag: "peer".into(),
            pwd: pwd.into(),
        };
        t.set_remote_credentials(now, &theirs);
        let (remote, local) = (REMOTE.parse().unwrap(), LOCAL.parse().unwrap());
        crate::fuzzing::answer_first_check(t, now, remote, local, pwd).expect("a check");
        assert!(t.ice().unwrap().is_valid_remote(remote));
    }

    fn feed(t: &mut Transport, from: &str, d: &[u8]) {
        t.handle_receive(
            Instant::now(),
            Receive {
                source: from.parse().unwrap(),
                destination: LOCAL.parse().unwrap(),
                contents: d,
            },
        );
    }

    #[test]
    fn srtp_keys_split_by_dtls_role_rfc_5764() {
        for profile in ProtectionProfile::ALL {
            let material: Vec<u8> = (0..profile.keying_material_len() as u8).collect();
            let (client, server) = profile.split_keying_material(&material).unwrap();
            for (role, peer_key) in [(DtlsRole::Server, client), (DtlsRole::Client, server)] {
                let mut t = keyed(role, profile, &material);
                while t.poll_event().is_some() {}
                // The peer protects with its own write key.
                let mut peer =
                    SrtpContext::from_master_key(&peer_key, srtp::Config::default()).unwrap();
                let plain = vec![0x80, 96, 0, 1, 0, 0, 0, 10, 0, 0, 0, 42, 1, 2, 3];
                let mut wire = plain.clone();
                peer.protect_rtp(&mut wire).unwrap();
                feed(&mut t, REMOTE, &wire);
                assert_eq!(t.poll_event(), Some(Event::Rtp(plain.clone())), "{profile}");
                // A replay, and the same packet from a stranger, are dropped.
                feed(&mut t, REMOTE, &wire);
                feed(&mut t, "10.9.9.9:9", &wire);
                assert_eq!(t.poll_event(), None);
                let st = t.stats();
                assert_eq!(
                    (
                        st.rtp_received,
                        st.dropped_unprotect,
                        st.dropped_unknown_source
                    ),
                    (1, 1, 1)
                );
                // RTCP the same way.
                let plain = vec![0x80, 201, 0, 1, 0, 0, 0, 42];
                let mut wire = plain.clone();
                peer.protect_rtcp(&mut wire).unwrap();
                feed(&mut t, REMOTE, &wire);
                assert_eq!(t.poll_event(), Some(Event::Rtcp(plain)));
                assert_eq!(t.srtp_profile(), Some(profile));
            }
        }
    }

    #[test]
    fn unknown_ranges_are_counted_and_dropped() {
        let mut t = keyed(DtlsRole::Server, ProtectionProfile::AeadAes128Gcm, &[7; 56]);
        while t.poll_event().is_some() {}
        for d in [&[16u8, 0][..], &[64, 0, 0, 0], &[100], &[255, 1, 2], &[]] {
            feed(&mut t, REMOTE, d);
        }
        assert_eq!(t.stats().dropped_unknown_kind, 5);
        assert_eq!(t.poll_event(), None);
    }

    #[test]
    fn strongest_fingerprints_decide_rfc_8122() {
        let der = cert(2).der().to_vec();
        let sha1 = Fingerprint::of(HashAlgorithm::Sha1, &der);
        let sha256 = Fingerprint::of(HashAlgorithm::Sha256, &der);
        let other = cert(3).fingerprint();
        assert_eq!(
            verify_fingerprint(std::slice::from_ref(&sha256), &der),
            Ok(sha256.clone())
        );
        assert_eq!(
            verify_fingerprint(&[other.clone(), sha256.clone()], &der),
            Ok(sha256.clone())
        );
        // A matching SHA-1 does not help when a SHA-256 is given and
        // mismatches: only the strongest hash counts.
        match verify_fingerprint(&[sha1.clone(), other.clone()], &der) {
            Err(Error::FingerprintMismatch { expected, actual }) => {
                assert_eq!(expected, vec![other.clone()]);
                assert_eq!(actual, sha256);
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(
            verify_fingerprint(std::slice::from_ref(&sha1), &der),
            Ok(sha1)
        );
        assert!(matches!(
            verify_fingerprint(&[], &der),
            Err(Error::Misuse(_))
        ));
    }

    #[test]
    fn close_frees_everything() {
        let mut t = keyed(DtlsRole::Client, ProtectionProfile::AeadAes128Gcm, &[7; 56]);
        let now = Instant::now();
        t.set_remote_credentials(
            now,
            &Credentials {
                ufrag: "abcd".into(),
                pwd: "abcdabcdabcdabcdabcdabcd".into(),
            },
        );
        assert!(t.poll_timeout().is_some());
        t.close();
        assert_eq!(t.state(), State::Closed);
        assert_eq!(t.poll_timeout(), None);
        assert!(t.ice().is_none());
        assert_eq!(
            t.send_rtp(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(Error::Closed)
        );
        let events: Vec<Event> = std::iter::from_fn(|| t.poll_event()).collect();
        assert!(events.contains(&Event::Closed));
        feed(&mut t, REMOTE, &[0x80, 96, 0, 1]);
        assert_eq!(t.stats().dropped_after_close, 1);
    }

    /// A nominating check that selects the pair is answered before the
    /// DTLS it sets off: here a controlled DTLS client's ClientHello,
    /// unanswered over the pair validated before nomination, is resent on
    /// selection, and must reach the controlling agent after our success
    /// response, since that agent uses the pair only once the response
    /// arrives (RFC 8445 §7.2.5.3.4; Firefox drops DTLS before, and waited
    /// for our 100 ms retransmission).
    #[test]
    fn nomination_answered_before_the_dtls_it_sets_off_rfc_8445() {
        use crate::stun::{Attribute, IntegrityKey, MessageEncoder, MessageType, TransactionId};
        let now = Instant::now();
        let c = cert(1);
        let mut config = Config::new(IceRole::Controlled, cert(2));
        config.host_candidates = vec![LOCAL.parse().unwrap()];
        config.dtls_role = Some(DtlsRole::Client);
        config.remote_fingerprints = vec![c.fingerprint()];
        let mut t = Transport::new(config, now, StdRng::seed_from_u64(1)).unwrap();
        let cand = Candidate::parse("candidate:1 1 udp 2130706431 10.0.0.2 2000 typ host").unwrap();
        t.add_remote_candidate(now, cand).unwrap();
        validate_remote(&mut t, now);
        // The ClientHello goes out over the valid pair; nobody answers.
        let first: Vec<Transmit> = std::iter::from_fn(|| t.poll_transmit()).collect();
        assert!(
            first
                .iter()
                .any(|d| classify(&d.contents) == PacketKind::Dtls)
        );
        // The controlling peer nominates the pair 20 ms later.
        let later = now + Duration::from_millis(20);
        let ours = t.local_credentials().clone();
        let mut check = Vec::new();
        MessageEncoder::new(
            &mut check,
            MessageType::BINDING_REQUEST,
            TransactionId([7; 12]),
        )
        .attribute(&Attribute::Username(&format!("{}:peer", ours.ufrag)))
        .attribute(&Attribute::Priority(1_853_620_479))
        .attribute(&Attribute::IceControlling(1))
        .attribute(&Attribute::UseCandidate)
        .message_integrity(&IntegrityKey::short_term(&ours.pwd))
        .fingerprint()
        .finish()
        .unwrap();
        t.handle_receive(
            later,
            Receive {
                source: REMOTE.parse().unwrap(),
                destination: LOCAL.parse().unwrap(),
                contents: &check,
            },
        );
        let kinds: Vec<PacketKind> = std::iter::from_fn(|| t.poll_transmit())
            .map(|d| classify(&d.contents))
            .collect();
        let dtls = kinds.iter().position(|k| *k == PacketKind::Dtls);
        let stun = kinds.iter().position(|k| *k == PacketKind::Stun);
        assert!(
            dtls.is_some(),
            "the ClientHello is resent on selection: {kinds:?}"
        );
        assert!(stun < dtls, "the success response goes first: {kinds:?}");
    }
}
