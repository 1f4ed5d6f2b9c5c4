//! A sans-IO full ICE agent (RFC 8445) with trickle (RFC 8838) and consent
//! freshness (RFC 7675). See the [module doc](super) for the overview.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::candidate::{Candidate, CandidateKind, foundation, priority, type_preference};
use crate::machine::{Machine, Receive, Transmit};
use crate::stun::attributes::error_code;
use crate::stun::{
    self, Attribute, Class, Client, ErrorCode, IntegrityKey, Message, MessageEncoder, MessageType,
    Method, TransactionError, TransactionId, attr, is_stun,
};

/// A username fragment and password (RFC 8445 §5.3; RFC 8839 §5.4: ufrag ≥ 4
/// and pwd ≥ 22 `ice-char`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `ice-ufrag`.
    pub ufrag: String,
    /// `ice-pwd`.
    pub pwd: String,
}

impl Credentials {
    /// Whether these can be signaled: RFC 8839 §5.4, `ice-ufrag` of 4 to
    /// 256 and `ice-pwd` of 22 to 256 `ice-char`s (letters, digits, `+`, `/`).
    pub fn is_valid(&self) -> bool {
        let ice_chars = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        };
        (4..=256).contains(&self.ufrag.len())
            && (22..=256).contains(&self.pwd.len())
            && ice_chars(&self.ufrag)
            && ice_chars(&self.pwd)
    }

    /// Fresh random credentials: 8 and 24 characters (48 and 144 bits).
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Credentials {
        const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut token = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
                .collect()
        };
        Credentials {
            ufrag: token(8),
            pwd: token(24),
        }
    }
}

/// Tunables; [`Config::default`] follows the RFCs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Start as the controlling agent (the offerer, RFC 8445 §6.1.1).
    pub controlling: bool,
    /// A STUN server for server-reflexive candidates.
    pub stun_server: Option<SocketAddr>,
    /// Ta, the pacing of checks (RFC 8445 §14.2; default 50 ms).
    pub ta: Duration,
    /// Retransmission of connectivity checks (RFC 8445 §14.3: RTO ≥ 500 ms
    /// here; 7 transmissions, the last waited for 4 RTO: a check fails after
    /// 33.5 s).
    pub checks: stun::client::Config,
    /// Retransmission of Binding requests to the STUN server while gathering.
    pub gathering: stun::client::Config,
    /// How long the controlling agent waits, after its first valid pair, for
    /// checks on pairs of higher priority before nominating.
    pub nomination_delay: Duration,
    /// The same wait when the best valid pair runs through a TURN relay
    /// (either end relayed) and a direct pair is still being checked: a
    /// relay is a detour and costs the server's capacity, and a direct
    /// path often needs one retransmission (RTO) to get through a filter
    /// the peer's own check opens.
    pub relay_nomination_delay: Duration,
    /// RFC 7675 §5.1: a consent check every this long (×0.8..1.2 jitter).
    pub consent_interval: Duration,
    /// RFC 7675 §5.1: consent expires after this long without a response.
    pub consent_timeout: Duration,
    /// No consent response for this long: the state becomes `Disconnected`.
    pub disconnected_after: Duration,
    /// Give up if no pair is selected this long after checks could start.
    pub checking_timeout: Duration,
    /// Cap on remote candidates (signaled and peer-reflexive).
    pub max_remote_candidates: usize,
    /// Cap on peer-reflexive candidates: remote ones learned on each local
    /// base (host or relayed), and local ones in all.
    pub max_peer_reflexive: usize,
    /// Cap on candidate pairs (RFC 8445 §6.1.2.5 suggests 100).
    pub max_pairs: usize,
    /// W3C `iceTransportPolicy: "relay"`: only relayed candidates are
    /// signaled and paired (host candidates stay, unsignaled, as the
    /// sockets TURN allocations are made from); checks that arrive on a
    /// host address are not answered. Hides our addresses from the peer.
    pub relay_only: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            controlling: true,
            stun_server: None,
            ta: Duration::from_millis(50),
            checks: stun::client::Config {
                rto: Duration::from_millis(500),
                rc: 7,
                rm: 4,
                max_transactions: 256,
            },
            gathering: stun::client::Config {
                rto: Duration::from_millis(500),
                rc: 4,
                rm: 4,
                max_transactions: 16,
            },
            nomination_delay: Duration::from_millis(200),
            relay_nomination_delay: Duration::from_millis(1500),
            consent_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
            disconnected_after: Duration::from_secs(11),
            checking_timeout: Duration::from_secs(45),
            max_remote_candidates: 64,
            max_peer_reflexive: 16,
            max_pairs: 100,
            relay_only: false,
        }
    }
}

/// The agent's connection state (the names of `RTCIceConnectionState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Nothing to check yet.
    New,
    /// Checks are running.
    Checking,
    /// A pair is selected (nominated) and has consent.
    Connected,
    /// The selected pair has had no consent response for a while.
    Disconnected,
    /// No path: every pair failed, or consent was lost.
    Failed,
}

/// Why the agent failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureReason {
    /// Every candidate pair failed its checks (a TURN relay is needed).
    AllPairsFailed {
        /// How many pairs were checked.
        pairs: usize,
    },
    /// There was never a pair to check (no usable remote candidate).
    NoPairs,
    /// No pair was selected within [`Config::checking_timeout`].
    Timeout,
    /// RFC 7675: the peer stopped answering consent checks.
    ConsentLost,
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureReason::AllPairsFailed { pairs } => write!(
                f,
                "all {pairs} candidate pairs failed their connectivity checks (no direct path; a TURN relay is needed)"
            ),
            FailureReason::NoPairs => f.write_str("no usable remote candidate to pair with"),
            FailureReason::Timeout => f.write_str("no pair selected before the checking timeout"),
            FailureReason::ConsentLost => {
                f.write_str("consent lost: no answer to consent checks for 30 s (RFC 7675)")
            }
        }
    }
}

/// What the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A local candidate to signal to the peer (trickle).
    LocalCandidate(Candidate),
    /// No more local candidates are being gathered for now.
    GatheringComplete,
    /// The connection state changed.
    StateChange(ConnectionState),
    /// A pair was selected; application data now flows over it.
    SelectedPair {
        /// The local candidate (host, srflx, prflx or relay).
        local: Candidate,
        /// The remote candidate.
        remote: Candidate,
    },
    /// A pair is valid and none is selected yet: data may go over it until
    /// one is (RFC 8445 §12.1: "an ICE agent MAY send data on any valid pair
    /// before selected pairs have been produced"). A DTLS client starts its
    /// handshake here rather than waiting for the nomination, which costs
    /// the controlling side one more round trip and, when that check is
    /// lost, a retransmission timeout; libwebrtc does the same. Reported
    /// once; [`Event::SelectedPair`] follows, maybe naming another pair.
    ValidPair {
        /// The local candidate (host, srflx, prflx or relay).
        local: Candidate,
        /// The remote candidate.
        remote: Candidate,
        /// How long the check that made it valid took (retransmissions
        /// included): about one round trip on the pair.
        rtt: Duration,
    },
    /// The agent failed, and why.
    Failed(FailureReason),
    /// The agent switched role after a role conflict (RFC 8445 §7.3.1.1).
    RoleChanged {
        /// Whether it is now controlling.
        controlling: bool,
    },
    /// A datagram that is not STUN, from a remote candidate's address.
    Data {
        /// Who sent it.
        source: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
}

/// API misuse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// No pair is selected yet.
    NotConnected,
    /// A cap of [`Config`] was reached.
    TooManyCandidates,
    /// The candidate cannot be used (not UDP, not an IP, wrong component).
    Unusable(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotConnected => f.write_str("no selected candidate pair yet"),
            Error::TooManyCandidates => f.write_str("candidate limit reached"),
            Error::Unusable(why) => write!(f, "unusable candidate: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// RFC 8445 §6.1.2.6 pair states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairState {
    /// Waiting for a pair of the same foundation to succeed.
    Frozen,
    /// Ready to be checked.
    Waiting,
    /// A check is in flight.
    InProgress,
    /// A check succeeded: the pair is valid.
    Succeeded,
    /// The check failed.
    Failed,
}

/// A candidate pair of the check list.
#[derive(Debug, Clone)]
pub struct CandidatePair {
    /// Index into [`Agent::local_candidates`] (a host or relayed candidate).
    pub local: usize,
    /// Index into [`Agent::remote_candidates`].
    pub remote: usize,
    /// RFC 8445 §6.1.2.3 pair priority.
    pub priority: u64,
    /// Its state.
    pub state: PairState,
    /// Nominated (and so usable for data).
    pub nominated: bool,
    /// The local candidate the peer saw (from XOR-MAPPED-ADDRESS), once valid.
    pub valid_local: Option<usize>,
    remote_nominated: bool,
}

/// A local candidate and its base (RFC 8445 §5.1.1). A relayed candidate's
/// base is itself: datagrams "from" it are sent by the caller through its TURN
/// allocation (see [`Agent::add_local_relayed`]).
#[derive(Debug, Clone)]
pub struct LocalCandidate {
    /// The candidate as signaled.
    pub candidate: Candidate,
    /// Where datagrams are sent from: a local socket, or a relayed address.
    pub base: SocketAddr,
}

#[derive(Debug, Clone, Copy)]
enum Purpose {
    Gather {
        base: SocketAddr,
    },
    Check {
        pair: usize,
        nominate: bool,
        controlling: bool,
        /// When the check was started (its round trip, retransmissions
        /// included, is an upper bound of the path's).
        sent: Instant,
    },
    Consent {
        pair: usize,
    },
}

/// The most events kept for the application; data beyond is dropped.
const MAX_EVENTS: usize = 4096;

/// A full ICE agent for one component (RTP/RTCP muxed, BUNDLE: component 1).
#[derive(Debug)]
pub struct Agent {
    config: Config,
    rng: StdRng,
    controlling: bool,
    tie_breaker: u64,
    local_creds: Credentials,
    remote_creds: Option<Credentials>,
    local: Vec<LocalCandidate>,
    remote: Vec<Candidate>,
    /// Beside `remote`: the local base a peer-reflexive one was learned on.
    remote_learned_on: Vec<Option<SocketAddr>>,
    prflx: usize,
    pairs: Vec<CandidatePair>,
    triggered: VecDeque<(usize, bool)>,
    checks: Client,
    gather: Client,
    purposes: Vec<(TransactionId, Purpose)>,
    gathering_pending: usize,
    gathering_reported: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    state: ConnectionState,
    failure: Option<FailureReason>,
    selected: Option<usize>,
    /// The path data goes over: (local base, remote address). Survives an ICE
    /// restart until a new pair is selected.
    path: Option<(SocketAddr, SocketAddr)>,
    nominating: Option<usize>,
    next_check: Option<Instant>,
    last_check: Option<Instant>,
    first_valid: Option<Instant>,
    checking_since: Option<Instant>,
    end_of_remote: bool,
    /// When the selected pair last had consent (RFC 7675 §5.1); `None`
    /// before a pair is selected (a sans-IO machine reads no clock).
    last_consent: Option<Instant>,
    next_consent: Option<Instant>,
}

impl Agent {
    /// A new agent with random credentials and tie-breaker from `rng`.
    pub fn new(config: Config, mut rng: StdRng) -> Agent {
        let local_creds = Credentials::random(&mut rng);
        let tie_breaker = rng.random();
        Agent {
            controlling: config.controlling,
            checks: Client::new(config.checks),
            gather: Client::new(config.gathering),
            config,
            rng,
            tie_breaker,
            local_creds,
            remote_creds: None,
            local: Vec::new(),
            remote: Vec::new(),
            remote_learned_on: Vec::new(),
            prflx: 0,
            pairs: Vec::new(),
            triggered: VecDeque::new(),
            purposes: Vec::new(),
            gathering_pending: 0,
            gathering_reported: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            state: ConnectionState::New,
            failure: None,
            selected: None,
            path: None,
            nominating: None,
            next_check: None,
            last_check: None,
            first_valid: None,
            checking_since: None,
            end_of_remote: false,
            // Replaced when a pair is selected.
            last_consent: None,
            next_consent: None,
        }
    }

    /// Our ufrag and password, to signal.
    pub fn local_credentials(&self) -> &Credentials {
        &self.local_creds
    }

    /// Whether the agent is controlling.
    pub fn is_controlling(&self) -> bool {
        self.controlling
    }

    /// The connection state.
    pub fn state(&self) -> ConnectionState {
        self.state
    }

    /// Why the agent failed, if it did.
    pub fn failure(&self) -> Option<&FailureReason> {
        self.failure.as_ref()
    }

    /// Local candidates, in the order added.
    pub fn local_candidates(&self) -> &[LocalCandidate] {
        &self.local
    }

    /// Remote candidates, signaled and peer-reflexive.
    pub fn remote_candidates(&self) -> &[Candidate] {
        &self.remote
    }

    /// The check list.
    pub fn pairs(&self) -> &[CandidatePair] {
        &self.pairs
    }

    /// Transactions in flight (checks, consent, gathering).
    pub fn transactions_in_flight(&self) -> usize {
        self.purposes.len()
    }

    /// Where data goes, once a pair was selected: (the local base it is sent
    /// from, the remote address). A base that is a relayed address means "send
    /// through the TURN allocation" (see [`Agent::add_local_relayed`]). Kept
    /// through an ICE restart until a new pair is selected; `None` after
    /// consent was lost.
    pub fn selected_path(&self) -> Option<(SocketAddr, SocketAddr)> {
        self.path
    }

    /// Tells the agent that the caller is gathering a candidate it will add
    /// later (a TURN allocation in flight): [`Event::GatheringComplete`]
    /// waits, and the agent does not fail for lack of pairs, until the
    /// matching [`Agent::end_external_gathering`].
    pub fn begin_external_gathering(&mut self) {
        self.gathering_pending += 1;
        self.gathering_reported = false;
    }

    /// The gathering announced by [`Agent::begin_external_gathering`] is over
    /// (its candidate was added, or it failed).
    pub fn end_external_gathering(&mut self, now: Instant) {
        self.gathering_pending = self.gathering_pending.saturating_sub(1);
        self.maybe_gathering_complete();
        self.check_failure(now);
    }

    /// Whether `source` is the remote end of a valid pair: a check of ours
    /// went there and an authenticated answer came back from that same
    /// address (RFC 8445 §7.2.5.2.1, §7.2.5.3.2). Only such addresses may
    /// carry data (§12.1: data flows on valid pairs). A check *received*
    /// from an address proves nothing about it: MESSAGE-INTEGRITY does not
    /// cover the source, so a captured check replayed from anywhere passes,
    /// and the peer-reflexive candidate it teaches (§7.3.1.3) is only a
    /// candidate until our triggered check to it succeeds. The path data
    /// uses counts too: it was valid when chosen, and an ICE restart keeps
    /// it until a new pair is selected (see [`Agent::restart`]).
    pub fn is_valid_remote(&self, source: SocketAddr) -> bool {
        self.path.is_some_and(|(_, remote)| remote == source)
            || self.pairs.iter().any(|p| {
                p.state == PairState::Succeeded
                    && self.remote[p.remote].socket_addr() == Some(source)
            })
    }

    /// The selected pair: (local candidate the peer sees, remote candidate).
    pub fn selected_pair(&self) -> Option<(&Candidate, &Candidate)> {
        let p = &self.pairs[self.selected?];
        let l = p.valid_local.unwrap_or(p.local);
        Some((&self.local[l].candidate, &self.remote[p.remote]))
    }

    /// Sets the peer's ufrag and password (from its SDP).
    pub fn set_remote_credentials(&mut self, now: Instant, ufrag: &str, pwd: &str) {
        self.remote_creds = Some(Credentials {
            ufrag: ufrag.to_string(),
            pwd: pwd.to_string(),
        });
        self.start_checking(now);
    }

    fn start_checking(&mut self, now: Instant) {
        if self.remote_creds.is_some() && !self.pairs.is_empty() {
            if self.checking_since.is_none() {
                self.checking_since = Some(now);
            }
            if self.state == ConnectionState::New {
                self.set_state(ConnectionState::Checking);
            }
            self.arm_check(now);
        }
    }

    fn arm_check(&mut self, now: Instant) {
        if self.next_check.is_none() && self.remote_creds.is_some() {
            let t = match self.last_check {
                Some(l) => (l + self.config.ta).max(now),
                None => now,
            };
            self.next_check = Some(t);
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() < MAX_EVENTS || !matches!(e, Event::Data { .. }) {
            self.events.push_back(e);
        }
    }

    fn set_state(&mut self, s: ConnectionState) {
        if self.state != s {
            tracing::debug!(?s, "ICE state");
            self.state = s;
            self.push_event(Event::StateChange(s));
        }
    }

    /// Adds a host candidate: a local socket address (RFC 8445 §5.1.1.1).
    /// Starts server-reflexive gathering from it when a STUN server is
    /// configured. Returns the candidate (also reported as an event).
    pub fn add_local_host(&mut self, now: Instant, addr: SocketAddr) -> Result<Candidate, Error> {
        if self.local.len() >= 16 {
            return Err(Error::TooManyCandidates);
        }
        if self
            .local
            .iter()
            .any(|l| l.base == addr && l.candidate.kind == CandidateKind::Host)
        {
            return Err(Error::Unusable("host candidate already added"));
        }
        let hosts = self
            .local
            .iter()
            .filter(|l| l.candidate.kind == CandidateKind::Host)
            .count();
        // RFC 8445 §5.1.2.1: local preference distinguishes the interfaces.
        let local_pref = 65535u16.saturating_sub(u16::try_from(hosts).unwrap_or(u16::MAX));
        let c = Candidate::new(
            foundation(CandidateKind::Host, addr.ip(), None, "udp"),
            1,
            CandidateKind::Host,
            priority(type_preference::HOST, local_pref, 1),
            addr,
            None,
        );
        self.add_local(now, c.clone(), addr);
        if let Some(server) = self.config.stun_server
            && server.is_ipv4() == addr.is_ipv4()
        {
            let tid = TransactionId::random(&mut self.rng);
            let mut buf = Vec::with_capacity(28);
            let ok = MessageEncoder::new(&mut buf, MessageType::BINDING_REQUEST, tid)
                .fingerprint()
                .finish()
                .is_ok();
            if ok && let Ok(tid) = self.gather.start(now, buf, server, Some(addr), None) {
                self.purposes.push((tid, Purpose::Gather { base: addr }));
                self.gathering_pending += 1;
            }
        }
        self.gathering_reported = false;
        self.maybe_gathering_complete();
        Ok(c)
    }

    /// Adds a relayed candidate (RFC 8445 §5.1.1.2): `relayed` is the address
    /// the TURN server allocated, `mapped` our reflexive address seen by the
    /// server. Its base is `relayed` itself: every [`Transmit`] with
    /// `source == Some(relayed)` must be sent by the caller through its TURN
    /// allocation (Send indication or ChannelData), and datagrams that arrive
    /// through the allocation are fed back with `destination: relayed`.
    pub fn add_local_relayed(
        &mut self,
        now: Instant,
        relayed: SocketAddr,
        mapped: SocketAddr,
        server: SocketAddr,
    ) -> Result<Candidate, Error> {
        if self.local.len() >= 16 {
            return Err(Error::TooManyCandidates);
        }
        let c = Candidate::new(
            foundation(CandidateKind::Relayed, mapped.ip(), Some(server), "udp"),
            1,
            CandidateKind::Relayed,
            priority(type_preference::RELAYED, 65535, 1),
            relayed,
            Some(mapped),
        );
        self.add_local(now, c.clone(), relayed);
        Ok(c)
    }

    fn add_local(&mut self, now: Instant, c: Candidate, base: SocketAddr) {
        let idx = self.local.len();
        let pairable = self.pairable(c.kind);
        let signaled = c.kind != CandidateKind::PeerReflexive
            && (!self.config.relay_only || c.kind == CandidateKind::Relayed);
        self.local.push(LocalCandidate {
            candidate: c.clone(),
            base,
        });
        if signaled {
            self.push_event(Event::LocalCandidate(c));
        }
        if pairable {
            for r in 0..self.remote.len() {
                self.add_pair(idx, r);
            }
            self.start_checking(now);
        }
    }

    fn maybe_gathering_complete(&mut self) {
        if self.gathering_pending == 0 && !self.gathering_reported {
            self.gathering_reported = true;
            self.push_event(Event::GatheringComplete);
        }
    }

    /// Adds a remote candidate (trickled at any time, RFC 8838 §11). Non-UDP
    /// candidates and mDNS names are refused.
    pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), Error> {
        if !c.is_udp() {
            return Err(Error::Unusable("not UDP"));
        }
        if c.component != 1 {
            return Err(Error::Unusable("component other than 1 (rtcp-mux assumed)"));
        }
        let Some(addr) = c.socket_addr() else {
            return Err(Error::Unusable(
                "address is not an IP (mDNS names are not resolved)",
            ));
        };
        if let Some(i) = self
            .remote
            .iter()
            .position(|r| r.socket_addr() == Some(addr))
        {
            // RFC 8838 §11.4: a signaled candidate that we already learned as
            // peer-reflexive replaces it (type, priority and foundation).
            if self.remote[i].kind == CandidateKind::PeerReflexive {
                self.remote[i] = c;
                self.remote_learned_on[i] = None;
                self.prflx = self.prflx.saturating_sub(1);
                self.recompute_priorities();
            }
            return Ok(());
        }
        if self.remote.len() >= self.config.max_remote_candidates {
            return Err(Error::TooManyCandidates);
        }
        let r = self.remote.len();
        self.remote.push(c);
        self.remote_learned_on.push(None);
        for l in 0..self.local.len() {
            self.add_pair(l, r);
        }
        self.start_checking(now);
        Ok(())
    }

    /// The peer signaled end-of-candidates (RFC 8838 §13).
    pub fn end_of_remote_candidates(&mut self, now: Instant) {
        self.end_of_remote = true;
        self.check_failure(now);
    }

    fn pair_priority(&self, l: usize, r: usize) -> u64 {
        // RFC 8445 §6.1.2.3: G is the controlling agent's candidate priority.
        let lp = u64::from(self.local[l].candidate.priority);
        let rp = u64::from(self.remote[r].priority);
        let (g, d) = if self.controlling { (lp, rp) } else { (rp, lp) };
        (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
    }

    fn recompute_priorities(&mut self) {
        for i in 0..self.pairs.len() {
            self.pairs[i].priority = self.pair_priority(self.pairs[i].local, self.pairs[i].remote);
        }
    }

    fn pair_foundation_eq(&self, a: usize, b: usize) -> bool {
        let (pa, pb) = (&self.pairs[a], &self.pairs[b]);
        self.local[pa.local].candidate.foundation == self.local[pb.local].candidate.foundation
            && self.remote[pa.remote].foundation == self.remote[pb.remote].foundation
    }

    /// Whether local candidates of `kind` form pairs (RFC 8445 §6.1.2.2:
    /// host and relayed ones; server-reflexive ones are their bases'),
    /// relayed only under [`Config::relay_only`].
    fn pairable(&self, kind: CandidateKind) -> bool {
        match kind {
            CandidateKind::Host => !self.config.relay_only,
            CandidateKind::Relayed => true,
            _ => false,
        }
    }

    /// Forms the pair (l, r) if both are usable and it is not redundant
    /// (RFC 8445 §6.1.2.2, §6.1.2.4). Returns its index.
    fn add_pair(&mut self, l: usize, r: usize) -> Option<usize> {
        if !self.pairable(self.local[l].candidate.kind) {
            return None;
        }
        let lc = &self.local[l];
        let raddr = self.remote[r].socket_addr()?;
        if lc.base.is_ipv4() != raddr.is_ipv4() {
            return None;
        }
        let base = lc.base;
        if let Some(i) = self.pairs.iter().position(|p| {
            self.local[p.local].base == base && self.remote[p.remote].socket_addr() == Some(raddr)
        }) {
            return Some(i);
        }
        if self.pairs.len() >= self.config.max_pairs {
            return None;
        }
        let idx = self.pairs.len();
        self.pairs.push(CandidatePair {
            local: l,
            remote: r,
            priority: self.pair_priority(l, r),
            state: PairState::Frozen,
            nominated: false,
            valid_local: None,
            remote_nominated: false,
        });
        // RFC 8445 §6.1.2.6 / RFC 8838 §11: a new pair is Waiting unless a
        // pair of the same foundation is already being worked on.
        let busy = (0..idx).any(|j| {
            self.pair_foundation_eq(j, idx)
                && matches!(
                    self.pairs[j].state,
                    PairState::Waiting | PairState::InProgress | PairState::Frozen
                )
        });
        let succeeded = (0..idx).any(|j| {
            self.pair_foundation_eq(j, idx) && self.pairs[j].state == PairState::Succeeded
        });
        if !busy || succeeded {
            self.pairs[idx].state = PairState::Waiting;
        }
        Some(idx)
    }

    /// Sends `data` over the selected pair.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        let (base, remote) = self.path.ok_or(Error::NotConnected)?;
        if self.state == ConnectionState::Failed {
            return Err(Error::NotConnected);
        }
        self.transmits.push_back(Transmit {
            source: Some(base),
            destination: remote,
            contents: data.to_vec(),
        });
        Ok(())
    }

    /// Replaces our (random) credentials before anything was signaled, for
    /// an application that chooses its own (RFC 8839 §5.4). Refused (false,
    /// the old ones kept) unless [`Credentials::is_valid`].
    pub fn set_local_credentials(&mut self, credentials: Credentials) -> bool {
        if !credentials.is_valid() {
            return false;
        }
        self.local_creds = credentials;
        true
    }

    /// ICE restart (RFC 8445 §9): new local credentials, the remote ones and
    /// candidates forgotten, checks start over. Data keeps flowing on the old
    /// path until a new pair is selected. Local candidates are reported again
    /// (to signal with the new ufrag). Returns the new credentials.
    pub fn restart(&mut self, now: Instant) -> Credentials {
        self.local_creds = Credentials::random(&mut self.rng);
        self.remote_creds = None;
        for (tid, p) in std::mem::take(&mut self.purposes) {
            if matches!(p, Purpose::Gather { .. }) {
                self.purposes.push((tid, p));
            } else {
                self.checks.cancel(tid);
            }
        }
        self.remote.clear();
        self.remote_learned_on.clear();
        self.pairs.clear();
        self.triggered.clear();
        self.local
            .retain(|l| l.candidate.kind != CandidateKind::PeerReflexive);
        self.prflx = 0;
        self.selected = None;
        self.nominating = None;
        self.next_check = None;
        self.first_valid = None;
        self.checking_since = Some(now);
        self.end_of_remote = false;
        self.next_consent = None;
        self.failure = None;
        for l in self.local.clone() {
            self.push_event(Event::LocalCandidate(l.candidate));
        }
        self.set_state(ConnectionState::Checking);
        self.local_creds.clone()
    }

    // ---- sending checks -------------------------------------------------

    fn start_check(&mut self, now: Instant, pair: usize, nominate: bool, consent: bool) {
        let Some(creds) = &self.remote_creds else {
            return;
        };
        let p = &self.pairs[pair];
        let local = &self.local[p.local];
        let Some(dest) = self.remote[p.remote].socket_addr() else {
            return;
        };
        let base = local.base;
        // RFC 8445 §7.1.1: PRIORITY is what a peer-reflexive candidate learned
        // from this check would get.
        let local_pref = ((local.candidate.priority >> 8) & 0xFFFF) as u16;
        let prio = priority(type_preference::PEER_REFLEXIVE, local_pref, 1);
        let username = format!("{}:{}", creds.ufrag, self.local_creds.ufrag);
        let key = IntegrityKey::short_term(&creds.pwd);
        let tid = TransactionId::random(&mut self.rng);
        let mut buf = Vec::with_capacity(128);
        let mut enc = MessageEncoder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
        enc.attribute(&Attribute::Username(&username))
            .attribute(&Attribute::Priority(prio));
        if self.controlling {
            enc.attribute(&Attribute::IceControlling(self.tie_breaker));
            if nominate {
                enc.attribute(&Attribute::UseCandidate);
            }
        } else {
            enc.attribute(&Attribute::IceControlled(self.tie_breaker));
        }
        if enc.message_integrity(&key).fingerprint().finish().is_err() {
            return;
        }
        match self.checks.start(now, buf, dest, Some(base), Some(key)) {
            Ok(tid) => {
                tracing::trace!(pair, %dest, nominate, consent, "ICE check");
                let purpose = if consent {
                    Purpose::Consent { pair }
                } else {
                    self.pairs[pair].state = PairState::InProgress;
                    Purpose::Check {
                        pair,
                        nominate,
                        controlling: self.controlling,
                        sent: now,
                    }
                };
                self.purposes.push((tid, purpose));
            }
            Err(_) => {
                if !consent {
                    self.pairs[pair].state = PairState::Failed;
                }
            }
        }
    }

    /// RFC 8445 §6.1.4.2: one check per Ta: a triggered check first, else the
    /// highest-priority Waiting pair, else unfreeze.
    fn on_ta(&mut self, now: Instant) {
        self.next_check = None;
        if self.remote_creds.is_none() || self.state == ConnectionState::Failed {
            return;
        }
        // A triggered ordinary check on a pair that has meanwhile succeeded
        // is moot: skip it, so that a nomination is not delayed by one Ta.
        let mut next = None;
        while let Some((p, nominate)) = self.triggered.pop_front() {
            if nominate
                || self
                    .pairs
                    .get(p)
                    .is_some_and(|q| q.state != PairState::Succeeded)
            {
                next = Some((p, nominate));
                break;
            }
        }
        if next.is_none() {
            next = self.best_in(PairState::Waiting).map(|p| (p, false));
        }
        if next.is_none() && self.unfreeze_one() {
            next = self.best_in(PairState::Waiting).map(|p| (p, false));
        }
        if let Some((pair, nominate)) = next {
            self.start_check(now, pair, nominate, false);
            self.last_check = Some(now);
            self.next_check = Some(now + self.config.ta);
        }
    }

    fn best_in(&self, state: PairState) -> Option<usize> {
        (0..self.pairs.len())
            .filter(|&i| self.pairs[i].state == state)
            .max_by_key(|&i| self.pairs[i].priority)
    }

    /// §6.1.4.2: for each foundation with no Waiting or In-Progress pair, the
    /// highest-priority Frozen pair becomes Waiting.
    fn unfreeze_one(&mut self) -> bool {
        let mut any = false;
        let mut order: Vec<usize> = (0..self.pairs.len())
            .filter(|&i| self.pairs[i].state == PairState::Frozen)
            .collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.pairs[i].priority));
        for i in order {
            let busy = (0..self.pairs.len()).any(|j| {
                j != i
                    && self.pair_foundation_eq(i, j)
                    && matches!(
                        self.pairs[j].state,
                        PairState::Waiting | PairState::InProgress
                    )
            });
            if !busy {
                self.pairs[i].state = PairState::Waiting;
                any = true;
            }
        }
        any
    }

    fn trigger(&mut self, now: Instant, pair: usize, nominate: bool) {
        if self
            .triggered
            .iter()
            .any(|&(p, n)| p == pair && n == nominate)
        {
            return;
        }
        if self.triggered.len() < self.config.max_pairs {
            self.triggered.push_back((pair, nominate));
        }
        self.arm_check(now);
    }

    // ---- answering checks -------------------------------------------------

    fn respond_error(&mut self, d: &Receive<'_>, tid: TransactionId, code: u16, integrity: bool) {
        let mut buf = Vec::with_capacity(64);
        let mut enc = MessageEncoder::new(&mut buf, MessageType::BINDING_ERROR, tid);
        enc.attribute(&Attribute::ErrorCode(ErrorCode {
            code,
            reason: error_code::reason(code),
        }));
        if integrity {
            enc.message_integrity(&IntegrityKey::short_term(&self.local_creds.pwd));
        }
        if enc.fingerprint().finish().is_ok() {
            self.transmits.push_back(Transmit {
                source: Some(d.destination),
                destination: d.source,
                contents: buf,
            });
        }
    }

    /// RFC 8445 §7.3: answer a Binding request.
    fn answer(&mut self, now: Instant, d: &Receive<'_>, msg: &Message<'_>) {
        let tid = msg.transaction_id();
        if msg.verify_fingerprint().is_err() {
            return;
        }
        // Relay only: a check that reached a host address is not answered
        // (an answer would make that path valid for the peer).
        if self.config.relay_only
            && !self
                .local
                .iter()
                .any(|c| c.base == d.destination && c.candidate.kind == CandidateKind::Relayed)
        {
            return;
        }
        let username = match msg.username() {
            Ok(Some(u)) if msg.has_integrity() => u,
            // RFC 8489 §9.1.3: no USERNAME or no MESSAGE-INTEGRITY → 400.
            _ => return self.respond_error(d, tid, error_code::BAD_REQUEST, false),
        };
        // RFC 8445 §7.3: USERNAME is "our ufrag:their ufrag".
        let ours = username
            .split_once(':')
            .is_some_and(|(l, _)| l == self.local_creds.ufrag);
        let key = IntegrityKey::short_term(&self.local_creds.pwd);
        if !ours || msg.verify_integrity(&key).is_err() {
            return self.respond_error(d, tid, error_code::UNAUTHENTICATED, false);
        }
        if msg
            .unknown_comprehension_required(|t| {
                matches!(
                    t,
                    attr::USERNAME
                        | attr::MESSAGE_INTEGRITY
                        | attr::MESSAGE_INTEGRITY_SHA256
                        | attr::PRIORITY
                        | attr::USE_CANDIDATE
                )
            })
            .next()
            .is_some()
        {
            return self.respond_error(d, tid, error_code::UNKNOWN_ATTRIBUTE, false);
        }
        // RFC 8445 §7.3.1.1: role conflict.
        let mut theirs_controlling = None;
        let mut theirs_controlled = None;
        let mut peer_priority = None;
        let mut use_candidate = false;
        for a in msg.attributes() {
            match Attribute::parse(a.typ, a.value, &tid) {
                Ok(Attribute::IceControlling(t)) => theirs_controlling = Some(t),
                Ok(Attribute::IceControlled(t)) => theirs_controlled = Some(t),
                Ok(Attribute::Priority(p)) => peer_priority = Some(p),
                Ok(Attribute::UseCandidate) => use_candidate = true,
                _ => {}
            }
        }
        // A source we cannot track (unknown, and the caps on remote and
        // peer-reflexive candidates are reached) is answered but changes
        // nothing here, not even our role: otherwise a flood of checks with
        // conflicting role attributes from ever new addresses (someone who
        // read the SDP) would flip the role back and forth under the real
        // peer. Such a request gets 487, which leaves the switch to it.
        let trackable = self
            .remote
            .iter()
            .any(|c| c.socket_addr() == Some(d.source))
            || (self.prflx_learned_on(d.destination) < self.config.max_peer_reflexive
                && self.remote.len() < self.config.max_remote_candidates);
        let conflict = (self.controlling && theirs_controlling.is_some())
            || (!self.controlling && theirs_controlled.is_some());
        if conflict && !trackable {
            return self.respond_error(d, tid, error_code::ROLE_CONFLICT, true);
        }
        if self.controlling
            && let Some(t) = theirs_controlling
        {
            if self.tie_breaker >= t {
                return self.respond_error(d, tid, error_code::ROLE_CONFLICT, true);
            }
            self.switch_role(false);
        } else if !self.controlling
            && let Some(t) = theirs_controlled
        {
            if self.tie_breaker >= t {
                self.switch_role(true);
            } else {
                return self.respond_error(d, tid, error_code::ROLE_CONFLICT, true);
            }
        }
        // The success response (RFC 8445 §7.3.1.2 / RFC 8489 §10.1.1).
        let mut buf = Vec::with_capacity(64);
        let ok = MessageEncoder::new(&mut buf, MessageType::BINDING_SUCCESS, tid)
            .attribute(&Attribute::XorMappedAddress(d.source))
            .message_integrity(&key)
            .fingerprint()
            .finish()
            .is_ok();
        if ok {
            self.transmits.push_back(Transmit {
                source: Some(d.destination),
                destination: d.source,
                contents: buf,
            });
        }
        // Learn from it: local candidate, peer-reflexive remote (§7.3.1.3),
        // triggered check (§7.3.1.4), nomination (§7.3.1.5).
        let relay_only = self.config.relay_only;
        let Some(l) = self.local.iter().position(|c| {
            c.base == d.destination
                && match c.candidate.kind {
                    CandidateKind::Host => !relay_only,
                    CandidateKind::Relayed => true,
                    _ => false,
                }
        }) else {
            return;
        };
        let r = match self
            .remote
            .iter()
            .position(|c| c.socket_addr() == Some(d.source))
        {
            Some(r) => r,
            None => {
                if self.prflx_learned_on(d.destination) >= self.config.max_peer_reflexive
                    || self.remote.len() >= self.config.max_remote_candidates
                {
                    return;
                }
                let Some(prio) = peer_priority else { return };
                self.prflx += 1;
                let f = format!("prflx{}", self.rng.random::<u32>());
                self.remote.push(Candidate::new(
                    f,
                    1,
                    CandidateKind::PeerReflexive,
                    prio,
                    d.source,
                    None,
                ));
                self.remote_learned_on.push(Some(d.destination));
                self.remote.len() - 1
            }
        };
        let Some(pair) = self.add_pair(l, r) else {
            return;
        };
        if self.checking_since.is_none() {
            self.checking_since = Some(now);
        }
        if self.state == ConnectionState::New {
            self.set_state(ConnectionState::Checking);
        }
        match self.pairs[pair].state {
            PairState::Succeeded => {}
            PairState::InProgress => {
                // §7.3.1.4 cancels the in-progress check and triggers a new
                // one; we let the old transaction run (its response still
                // counts) and add the triggered check through the hole the
                // peer's request just proved open, at most one extra.
                let in_flight = self
                    .purposes
                    .iter()
                    .filter(|(_, p)| matches!(p, Purpose::Check { pair: q, .. } if *q == pair))
                    .count();
                if in_flight < 2 {
                    self.trigger(now, pair, false);
                }
            }
            _ => {
                self.pairs[pair].state = PairState::Waiting;
                self.trigger(now, pair, false);
            }
        }
        if use_candidate && !self.controlling {
            self.pairs[pair].remote_nominated = true;
            if self.pairs[pair].state == PairState::Succeeded {
                self.follow_nomination(now, pair);
            }
        }
    }

    /// Remote peer-reflexive candidates learned from requests that arrived
    /// on `base`. RFC 8445 leaves the bound to the agent; it is per local
    /// base: behind a NAT whose mapping depends on the destination but whose
    /// filter lets everything in, every triggered check opens a new mapping,
    /// which the peer learns as a new peer-reflexive candidate whose pair
    /// fails (the answer comes back from yet another port), and so on until
    /// the cap. With one cap for all bases that cascade on the host base
    /// would use up the budget, and the peer's mapping toward our relayed
    /// candidate, the one peer-reflexive candidate that matters there, would
    /// never be learned.
    fn prflx_learned_on(&self, base: SocketAddr) -> usize {
        self.remote_learned_on
            .iter()
            .filter(|b| **b == Some(base))
            .count()
    }

    fn switch_role(&mut self, controlling: bool) {
        tracing::debug!(controlling, "ICE role switch");
        self.controlling = controlling;
        self.recompute_priorities();
        self.push_event(Event::RoleChanged { controlling });
    }

    // ---- responses -------------------------------------------------

    fn drain_clients(&mut self, now: Instant) {
        while let Some(stun::client::Event::Completed { id, result }) = self.gather.poll_event() {
            let Some(pos) = self.purposes.iter().position(|(t, _)| *t == id) else {
                continue;
            };
            let (_, purpose) = self.purposes.swap_remove(pos);
            if let Purpose::Gather { base } = purpose {
                self.gathering_pending = self.gathering_pending.saturating_sub(1);
                if let Ok(resp) = result
                    && let Ok(msg) = resp.message()
                    && let Ok(Some(mapped)) = msg.xor_mapped_address()
                    && mapped != base
                    && !self
                        .local
                        .iter()
                        .any(|l| l.candidate.socket_addr() == Some(mapped))
                    && self.local.len() < 16
                {
                    let local_pref = self
                        .local
                        .iter()
                        .find(|l| l.base == base)
                        .map_or(65535, |l| ((l.candidate.priority >> 8) & 0xFFFF) as u16);
                    let c = Candidate::new(
                        foundation(
                            CandidateKind::ServerReflexive,
                            base.ip(),
                            self.config.stun_server,
                            "udp",
                        ),
                        1,
                        CandidateKind::ServerReflexive,
                        priority(type_preference::SERVER_REFLEXIVE, local_pref, 1),
                        mapped,
                        Some(base),
                    );
                    self.add_local(now, c, base);
                }
                self.maybe_gathering_complete();
            }
        }
        while let Some(stun::client::Event::Completed { id, result }) = self.checks.poll_event() {
            let Some(pos) = self.purposes.iter().position(|(t, _)| *t == id) else {
                continue;
            };
            let (_, purpose) = self.purposes.swap_remove(pos);
            match purpose {
                Purpose::Check {
                    pair,
                    nominate,
                    controlling,
                    sent,
                } => {
                    let rtt = now.saturating_duration_since(sent);
                    self.on_check_result(now, pair, nominate, controlling, rtt, result)
                }
                Purpose::Consent { pair } => {
                    if let Ok(resp) = result
                        && self.symmetric(pair, &resp)
                        && self.selected == Some(pair)
                    {
                        self.last_consent = Some(now);
                        if self.state == ConnectionState::Disconnected {
                            self.set_state(ConnectionState::Connected);
                        }
                    }
                }
                Purpose::Gather { .. } => {}
            }
        }
        self.check_failure(now);
    }

    fn symmetric(&self, pair: usize, resp: &crate::stun::Response) -> bool {
        let p = &self.pairs[pair];
        self.remote[p.remote].socket_addr() == Some(resp.source)
            && self.local[p.local].base == resp.destination
    }

    /// RFC 8445 §7.2.5: a check's outcome.
    fn on_check_result(
        &mut self,
        now: Instant,
        pair: usize,
        nominate: bool,
        sent_controlling: bool,
        rtt: Duration,
        result: Result<crate::stun::Response, TransactionError>,
    ) {
        if pair >= self.pairs.len() {
            return;
        }
        if self.nominating == Some(pair) {
            self.nominating = None;
        }
        match result {
            Ok(resp) => {
                // §7.2.5.2.1: the response must come back on the same 5-tuple.
                if !self.symmetric(pair, &resp) {
                    self.pairs[pair].state = PairState::Failed;
                    return;
                }
                let mapped = resp
                    .message()
                    .ok()
                    .and_then(|m| m.xor_mapped_address().ok().flatten());
                let base = self.local[self.pairs[pair].local].base;
                // §7.2.5.3.1: the mapped address names the valid local
                // candidate; an unknown one is a new peer-reflexive candidate.
                let valid_local = match mapped {
                    Some(m) => match self
                        .local
                        .iter()
                        .position(|l| l.candidate.socket_addr() == Some(m) && l.base == base)
                    {
                        Some(i) => i,
                        None if self
                            .local
                            .iter()
                            .filter(|l| l.candidate.kind == CandidateKind::PeerReflexive)
                            .count()
                            < self.config.max_peer_reflexive =>
                        {
                            self.prflx += 1;
                            let lc = &self.local[self.pairs[pair].local].candidate;
                            let local_pref = ((lc.priority >> 8) & 0xFFFF) as u16;
                            let c = Candidate::new(
                                foundation(CandidateKind::PeerReflexive, base.ip(), None, "udp"),
                                1,
                                CandidateKind::PeerReflexive,
                                priority(type_preference::PEER_REFLEXIVE, local_pref, 1),
                                m,
                                Some(base),
                            );
                            self.local.push(LocalCandidate { candidate: c, base });
                            self.local.len() - 1
                        }
                        None => self.pairs[pair].local,
                    },
                    None => self.pairs[pair].local,
                };
                let p = &mut self.pairs[pair];
                p.state = PairState::Succeeded;
                p.valid_local = Some(valid_local);
                // §7.2.5.3.3: unfreeze pairs of the same foundation.
                for j in 0..self.pairs.len() {
                    if self.pairs[j].state == PairState::Frozen && self.pair_foundation_eq(pair, j)
                    {
                        self.pairs[j].state = PairState::Waiting;
                    }
                }
                self.arm_check(now);
                if self.first_valid.is_none() {
                    self.first_valid = Some(now);
                }
                if nominate && sent_controlling && self.controlling {
                    self.pairs[pair].nominated = true;
                    self.select(now, pair);
                } else if !self.controlling && self.pairs[pair].remote_nominated {
                    self.follow_nomination(now, pair);
                }
                // Before nominating: the nomination check puts the pair
                // back in progress.
                self.maybe_use_valid_pair(rtt);
                self.maybe_nominate(now);
            }
            Err(TransactionError::ErrorResponse { code, .. })
                if code == error_code::ROLE_CONFLICT =>
            {
                // §7.2.5.1: switch to the role opposite the one in the request, retry.
                if self.controlling == sent_controlling {
                    self.switch_role(!sent_controlling);
                }
                self.pairs[pair].state = PairState::Waiting;
                self.trigger(now, pair, false);
            }
            Err(e) => {
                tracing::debug!(pair, %e, "ICE check failed");
                let other = self
                    .purposes
                    .iter()
                    .any(|(_, p)| matches!(p, Purpose::Check { pair: q, .. } if *q == pair));
                if !other && self.pairs[pair].state != PairState::Succeeded {
                    self.pairs[pair].state = PairState::Failed;
                }
                self.maybe_nominate(now);
            }
        }
    }

    /// Regular nomination (RFC 8445 §8.1.1): the controlling agent picks the
    /// best valid pair, once no better pair can still succeed (or after
    /// [`Config::nomination_delay`]), and checks it again with
    /// USE-CANDIDATE.
    fn maybe_nominate(&mut self, now: Instant) {
        if !self.controlling || self.selected.is_some() || self.nominating.is_some() {
            return;
        }
        let Some(best) = self.best_in(PairState::Succeeded) else {
            return;
        };
        let better_pending = self.pairs.iter().any(|p| {
            p.priority > self.pairs[best].priority
                && matches!(
                    p.state,
                    PairState::Frozen | PairState::Waiting | PairState::InProgress
                )
        });
        let waited = self.nomination_deadline().is_some_and(|t| now >= t);
        if better_pending && !waited {
            return;
        }
        self.nominating = Some(best);
        // ANCHOR: nominate_now
        // RFC 8445 §8.1.1: once the controlling agent has picked a valid pair
        // it repeats the check that produced it, with USE-CANDIDATE. The
        // check goes out now, not at the next Ta tick: §6.1.4.2 serves the
        // triggered-check queue ahead of ordinary checks, and Ta (§14.2)
        // exists to pace the bulk of ordinary checks, not this single one
        // (one extra request per agent; it waited up to 50 ms before). The
        // ordinary checks keep their Ta pacing: `next_check` is untouched.
        self.start_check(now, best, true, false);
        // ANCHOR_END: nominate_now
    }

    /// Before any pair is selected, sends data over the best valid pair
    /// (RFC 8445 §12.1, see [`Event::ValidPair`]); the W3C state is then
    /// `connected` ("found a usable connection … still checking"). Only
    /// for the first path: after an ICE restart data stays on the old
    /// selected pair until a new one is selected.
    fn maybe_use_valid_pair(&mut self, rtt: Duration) {
        if self.selected.is_some() || self.path.is_some() || self.state == ConnectionState::Failed {
            return;
        }
        let Some(best) = self.best_in(PairState::Succeeded) else {
            return;
        };
        let p = &self.pairs[best];
        let Some(remote) = self.remote[p.remote].socket_addr() else {
            return;
        };
        let local = p.valid_local.unwrap_or(p.local);
        self.path = Some((self.local[p.local].base, remote));
        let e = Event::ValidPair {
            local: self.local[local].candidate.clone(),
            remote: self.remote[p.remote].clone(),
            rtt,
        };
        tracing::debug!(
            pair = best,
            "ICE: data may use a valid pair before selection"
        );
        self.push_event(e);
        self.set_state(ConnectionState::Connected);
    }

    /// When the controlling agent stops waiting for better pairs and
    /// nominates the best valid one (the stopping criterion RFC 8445 §8.1.1
    /// leaves to the agent).
    fn nomination_deadline(&self) -> Option<Instant> {
        let first = self.first_valid?;
        let best = self.best_in(PairState::Succeeded)?;
        let p = &self.pairs[best];
        let relayed = self.local[p.local].candidate.kind == CandidateKind::Relayed
            || self.remote[p.remote].kind == CandidateKind::Relayed;
        Some(
            first
                + if relayed {
                    self.config.relay_nomination_delay
                } else {
                    self.config.nomination_delay
                },
        )
    }

    /// The controlled agent takes the pair the controlling agent nominated,
    /// even when it already has a selected pair: data goes where the peer
    /// now sends and expects it. RFC 8445 §8.1.1 forbids a second nomination
    /// without a restart, but Chromium (libwebrtc) does nominate again when
    /// it switches to a pair it prefers (a cheaper network: on a loopback
    /// test it moves from `127.0.0.1` to its Ethernet address a few hundred
    /// ms in) and then stops reading the old pair; RFC 5245 §11.1.1's
    /// "highest-priority nominated pair" would keep us on the abandoned
    /// path. The latest nomination wins (what draft-thatcher-ice-renomination
    /// makes explicit).
    fn follow_nomination(&mut self, now: Instant, pair: usize) {
        if self.selected == Some(pair) {
            return;
        }
        if let Some(old) = self.selected.take() {
            tracing::debug!(old, new = pair, "ICE: following the peer's new nomination");
        }
        self.select(now, pair);
    }

    fn select(&mut self, now: Instant, pair: usize) {
        if let Some(s) = self.selected
            && (s == pair || self.pairs[s].priority >= self.pairs[pair].priority)
        {
            return;
        }
        self.pairs[pair].nominated = true;
        self.selected = Some(pair);
        let p = &self.pairs[pair];
        self.path = Some((
            self.local[p.local].base,
            self.remote[p.remote]
                .socket_addr()
                .unwrap_or(self.local[p.local].base),
        ));
        self.last_consent = Some(now);
        self.schedule_consent(now);
        if let Some((l, r)) = self.selected_pair() {
            let e = Event::SelectedPair {
                local: l.clone(),
                remote: r.clone(),
            };
            tracing::debug!(local = %l, remote = %r, "ICE selected pair");
            self.push_event(e);
        }
        self.set_state(ConnectionState::Connected);
    }

    fn schedule_consent(&mut self, now: Instant) {
        // RFC 7675 §5.1: uniformly 0.8..1.2 × the interval.
        let f: f64 = self.rng.random_range(0.8..1.2);
        self.next_consent = Some(now + self.config.consent_interval.mul_f64(f));
    }

    fn fail(&mut self, reason: FailureReason) {
        if self.state == ConnectionState::Failed {
            return;
        }
        tracing::debug!(%reason, "ICE failed");
        self.failure = Some(reason.clone());
        self.next_check = None;
        self.next_consent = None;
        self.push_event(Event::Failed(reason));
        self.set_state(ConnectionState::Failed);
    }

    fn check_failure(&mut self, now: Instant) {
        if self.selected.is_some() || self.state == ConnectionState::Failed {
            return;
        }
        let Some(since) = self.checking_since else {
            return;
        };
        let done = self.pairs.iter().all(|p| p.state == PairState::Failed);
        // RFC 8838 §8: with trickle, fail only once the peer said it has no
        // more candidates and our own gathering is over.
        if done
            && self.end_of_remote
            && self.gathering_pending == 0
            && self
                .purposes
                .iter()
                .all(|(_, p)| matches!(p, Purpose::Gather { .. }))
        {
            if self.pairs.is_empty() {
                self.fail(FailureReason::NoPairs);
            } else {
                self.fail(FailureReason::AllPairsFailed {
                    pairs: self.pairs.len(),
                });
            }
        } else if now >= since + self.config.checking_timeout {
            if done && !self.pairs.is_empty() {
                self.fail(FailureReason::AllPairsFailed {
                    pairs: self.pairs.len(),
                });
            } else {
                self.fail(FailureReason::Timeout);
            }
        }
    }

    fn consent_timers(&mut self, now: Instant) {
        let Some(sel) = self.selected else { return };
        if self.state == ConnectionState::Failed {
            return;
        }
        // Set with the selected pair (RFC 7675 §5.1: consent starts when
        // the pair is chosen).
        let silent = self
            .last_consent
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if silent >= self.config.consent_timeout {
            self.selected = None;
            self.path = None;
            self.fail(FailureReason::ConsentLost);
            return;
        }
        if silent >= self.config.disconnected_after && self.state == ConnectionState::Connected {
            self.set_state(ConnectionState::Disconnected);
        }
        if self.next_consent.is_some_and(|t| now >= t) {
            // The consent check doubles as the RFC 8445 §11 keepalive.
            self.start_check(now, sel, false, true);
            self.schedule_consent(now);
        }
    }
}

impl Machine for Agent {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        if is_stun(d.contents) {
            let Ok(msg) = Message::parse(d.contents) else {
                return;
            };
            match msg.class() {
                Class::Request if msg.method() == Method::BINDING => self.answer(now, &d, &msg),
                Class::Success | Class::Error => {
                    if !self.checks.handle_response(now, d) {
                        self.gather.handle_response(now, d);
                    }
                    self.drain_clients(now);
                }
                // Binding indications are keepalives; anything else is ignored.
                _ => {}
            }
            return;
        }
        // RFC 7983 demultiplexing: not STUN, so application data (DTLS, SRTP).
        let on_path = self.path.is_some_and(|(_, r)| r == d.source);
        if on_path
            || self
                .remote
                .iter()
                .any(|r| r.socket_addr() == Some(d.source))
        {
            self.push_event(Event::Data {
                source: d.source,
                data: d.contents.to_vec(),
            });
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.checks.handle_timeout(now);
        self.gather.handle_timeout(now);
        self.drain_clients(now);
        if self.next_check.is_some_and(|t| now >= t) {
            self.on_ta(now);
        }
        self.maybe_nominate(now);
        self.consent_timers(now);
        self.check_failure(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.checks.poll_transmit())
            .or_else(|| self.gather.poll_transmit())
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = [
            self.next_check,
            self.checks.poll_timeout(),
            self.gather.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if self.state != ConnectionState::Failed {
            if self.selected.is_some() {
                consider(self.next_consent);
                consider(self.last_consent.map(|t| t + self.config.consent_timeout));
                if self.state == ConnectionState::Connected {
                    consider(
                        self.last_consent
                            .map(|t| t + self.config.disconnected_after),
                    );
                }
            } else {
                if let Some(s) = self.checking_since {
                    consider(Some(s + self.config.checking_timeout));
                }
                if self.controlling && self.nominating.is_none() {
                    consider(self.nomination_deadline());
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    struct Pair {
        a: Agent,
        b: Agent,
        now: Instant,
        /// Checks seen on the wire: (time, from A?).
        wire: Vec<(Instant, bool, Vec<u8>)>,
        data: [Vec<Vec<u8>>; 2],
        /// Lose every check that carries USE-CANDIDATE.
        lose_nominations: bool,
        /// ValidPair events seen, per side.
        valid_pairs: [usize; 2],
    }

    fn agents(a_controlling: bool, b_controlling: bool) -> Pair {
        let now = Instant::now();
        let mk = |c, seed| {
            Agent::new(
                Config {
                    controlling: c,
                    ..Config::default()
                },
                StdRng::seed_from_u64(seed),
            )
        };
        let mut a = mk(a_controlling, 1);
        let mut b = mk(b_controlling, 2);
        a.add_local_host(now, addr("10.0.0.1:1000")).unwrap();
        b.add_local_host(now, addr("10.0.0.2:2000")).unwrap();
        Pair {
            a,
            b,
            now,
            wire: Vec::new(),
            data: [Vec::new(), Vec::new()],
            lose_nominations: false,
            valid_pairs: [0, 0],
        }
    }

    impl Pair {
        fn credentials(&mut self) {
            let ca = self.a.local_credentials().clone();
            let cb = self.b.local_credentials().clone();
            self.a.set_remote_credentials(self.now, &cb.ufrag, &cb.pwd);
            self.b.set_remote_credentials(self.now, &ca.ufrag, &ca.pwd);
        }

        /// Delivers everything instantly, signals candidates, advances time
        /// to the next timer; `steps` rounds.
        fn run(&mut self, steps: usize, until: impl Fn(&Pair) -> bool) -> bool {
            for _ in 0..steps {
                if until(self) {
                    return true;
                }
                let mut moved = true;
                while moved {
                    moved = false;
                    for from_a in [true, false] {
                        loop {
                            let (src, dst) = if from_a {
                                (&mut self.a, &mut self.b)
                            } else {
                                (&mut self.b, &mut self.a)
                            };
                            let Some(t) = src.poll_transmit() else { break };
                            moved = true;
                            self.wire.push((self.now, from_a, t.contents.clone()));
                            let dest_local = dst
                                .local_candidates()
                                .iter()
                                .any(|l| l.base == t.destination);
                            let lost = self.lose_nominations
                                && Message::parse(&t.contents).is_ok_and(|m| {
                                    m.attribute(attr::USE_CANDIDATE).is_ok_and(|a| a.is_some())
                                });
                            if dest_local && !lost {
                                dst.handle_receive(
                                    self.now,
                                    Receive {
                                        source: t.source.unwrap(),
                                        destination: t.destination,
                                        contents: &t.contents,
                                    },
                                );
                            }
                        }
                        let (src, dst) = if from_a {
                            (&mut self.a, &mut self.b)
                        } else {
                            (&mut self.b, &mut self.a)
                        };
                        while let Some(e) = src.poll_event() {
                            match e {
                                Event::LocalCandidate(c) => {
                                    let _ = dst.add_remote_candidate(self.now, c);
                                    moved = true;
                                }
                                Event::Data { data, .. } => {
                                    self.data[usize::from(!from_a)].push(data)
                                }
                                Event::ValidPair { .. } => {
                                    self.valid_pairs[usize::from(!from_a)] += 1
                                }
                                _ => {}
                            }
                        }
                    }
                }
                if until(self) {
                    return true;
                }
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min();
                let Some(next) = next else { return until(self) };
                self.now = self.now.max(next);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
            until(self)
        }

        fn connected(&self) -> bool {
            self.a.state() == ConnectionState::Connected
                && self.b.state() == ConnectionState::Connected
        }
    }

    #[test]
    fn connects_and_sends_data() {
        let mut p = agents(true, false);
        p.credentials();
        assert!(p.run(100, Pair::connected));
        p.a.send(b"\x80rtp").unwrap();
        p.run(3, |_| false);
        assert_eq!(p.data[1], vec![b"\x80rtp".to_vec()]);
        let (l, r) = p.a.selected_pair().unwrap();
        assert_eq!(l.socket_addr(), Some(addr("10.0.0.1:1000")));
        assert_eq!(r.socket_addr(), Some(addr("10.0.0.2:2000")));
    }

    /// RFC 8445 §7.1: the check's attributes, verifiable with B's password.
    #[test]
    fn check_format() {
        let mut p = agents(true, false);
        let hb = p.b.local_candidates()[0].candidate.clone();
        p.a.add_remote_candidate(p.now, hb).unwrap();
        p.credentials();
        while p.a.poll_event().is_some() {}
        p.a.handle_timeout(p.now);
        let t = p.a.poll_transmit().expect("a check right away");
        assert_eq!(t.source, Some(addr("10.0.0.1:1000")));
        let m = Message::parse(&t.contents).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_REQUEST);
        let want = format!(
            "{}:{}",
            p.b.local_credentials().ufrag,
            p.a.local_credentials().ufrag
        );
        assert_eq!(m.username().unwrap(), Some(want.as_str()));
        m.verify_integrity(&IntegrityKey::short_term(&p.b.local_credentials().pwd))
            .unwrap();
        assert_eq!(m.verify_fingerprint(), Ok(true));
        let prio = match m.attribute(attr::PRIORITY).unwrap() {
            Some(Attribute::Priority(v)) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(prio >> 24, 110);
        assert!(matches!(
            m.attribute(attr::ICE_CONTROLLING).unwrap(),
            Some(Attribute::IceControlling(_))
        ));
        assert!(m.attribute(attr::USE_CANDIDATE).unwrap().is_none());
    }

    /// RFC 8445 §14.2: ordinary checks go out one per Ta.
    #[test]
    fn ta_pacing() {
        let mut p = agents(true, false);
        let cb = p.b.local_credentials().clone();
        for i in 0..4u16 {
            let c = Candidate::new(
                format!("f{i}"),
                1,
                CandidateKind::Host,
                priority(126, 65535 - i, 1),
                SocketAddr::new("192.0.2.50".parse().unwrap(), 4000 + i),
                None,
            );
            p.a.add_remote_candidate(p.now, c).unwrap();
        }
        p.a.set_remote_credentials(p.now, &cb.ufrag, &cb.pwd);
        let mut times = Vec::new();
        let mut now = p.now;
        for _ in 0..20 {
            while let Some(t) = p.a.poll_transmit() {
                if Message::parse(&t.contents)
                    .is_ok_and(|m| m.attribute(attr::PRIORITY).is_ok_and(|a| a.is_some()))
                {
                    times.push((now, t.destination));
                }
            }
            let Some(next) = p.a.poll_timeout() else {
                break;
            };
            now = next;
            p.a.handle_timeout(now);
        }
        let firsts: Vec<Instant> = {
            let mut seen = Vec::new();
            let mut out = Vec::new();
            for (t, d) in &times {
                if !seen.contains(d) {
                    seen.push(*d);
                    out.push(*t);
                }
            }
            out
        };
        assert_eq!(firsts.len(), 4);
        for w in firsts.windows(2) {
            assert!(
                w[1] - w[0] >= Duration::from_millis(50),
                "{:?}",
                w[1] - w[0]
            );
        }
    }

    /// RFC 8445 §8.1.1: the nominating check leaves as soon as the
    /// controlling agent has a valid pair it is happy with, not one Ta
    /// later; the first ordinary check leaves at once too.
    #[test]
    fn first_check_and_nomination_are_not_paced() {
        let mut p = agents(true, false);
        let start = p.now;
        p.credentials();
        assert!(p.run(100, Pair::connected));
        let from_a: Vec<(Instant, Message<'_>)> = p
            .wire
            .iter()
            .filter(|(_, a, _)| *a)
            .filter_map(|(t, _, b)| Some((*t, Message::parse(b).ok()?)))
            .filter(|(_, m)| m.message_type() == MessageType::BINDING_REQUEST)
            .collect();
        let first = from_a.first().expect("a check from A").0;
        assert_eq!(first, start, "the first check waits for nothing");
        let nominate = from_a
            .iter()
            .find(|(_, m)| m.attribute(attr::USE_CANDIDATE).is_ok_and(|a| a.is_some()))
            .expect("a nominating check")
            .0;
        // Delivery is instant here: valid, nominated and selected at once.
        assert_eq!(nominate, start, "nominated {:?} late", nominate - start);
        assert_eq!(p.now, start);
    }

    #[test]
    fn role_conflict_both_controlling_resolves() {
        for (ac, bc) in [(true, true), (false, false)] {
            let mut p = agents(ac, bc);
            p.credentials();
            assert!(p.run(200, Pair::connected), "{ac} {bc}");
            assert_ne!(p.a.is_controlling(), p.b.is_controlling());
            // The larger tie-breaker wins the controlling role.
            let a_wins = p.a.tie_breaker >= p.b.tie_breaker;
            assert_eq!(p.a.is_controlling(), a_wins);
            // Both report the 487 conflict resolution through RoleChanged
            // on one side: the roles changed from what was configured.
            assert!(p.a.is_controlling() != ac || p.b.is_controlling() != bc);
        }
    }

    fn request(username: Option<&str>, pwd: Option<&str>) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut e = MessageEncoder::new(
            &mut buf,
            MessageType::BINDING_REQUEST,
            TransactionId([7; 12]),
        );
        if let Some(u) = username {
            e.attribute(&Attribute::Username(u));
        }
        e.attribute(&Attribute::Priority(1))
            .attribute(&Attribute::IceControlling(5));
        if let Some(p) = pwd {
            e.message_integrity(&IntegrityKey::short_term(p));
        }
        e.fingerprint().finish().unwrap();
        buf
    }

    /// RFC 8445 §12.1: with every nomination lost, both sides still have a
    /// path once their own check succeeded, and data flows both ways; no
    /// pair is selected, and the first nomination that gets through
    /// selects one.
    #[test]
    fn data_flows_on_a_valid_pair_before_nomination() {
        let mut p = agents(true, false);
        p.lose_nominations = true;
        p.credentials();
        assert!(p.run(100, |p| p.valid_pairs == [1, 1]));
        assert_eq!(p.a.state(), ConnectionState::Connected);
        assert_eq!(p.b.state(), ConnectionState::Connected);
        assert!(p.a.selected_pair().is_none() && p.b.selected_pair().is_none());
        p.b.send(b"\x80from B").unwrap();
        p.a.send(b"\x80from A").unwrap();
        p.run(3, |_| false);
        assert_eq!(p.data[0], vec![b"\x80from B".to_vec()]);
        assert_eq!(p.data[1], vec![b"\x80from A".to_vec()]);
        assert!(p.a.selected_pair().is_none());
        p.lose_nominations = false;
        assert!(p.run(100, |p| p.a.selected_pair().is_some()
            && p.b.selected_pair().is_some()));
        assert_eq!(p.valid_pairs, [1, 1], "reported once");
    }

    /// A controlling agent that nominates a second pair (Chromium moving to
    /// a network it prefers) is followed: data goes to the new pair.
    #[test]
    fn controlled_follows_a_later_nomination() {
        let mut p = agents(true, false);
        p.a.add_local_host(p.now, addr("10.0.0.3:3000")).unwrap();
        p.credentials();
        assert!(p.run(200, |p| p.connected() && p.b.selected_path().is_some()));
        p.run(20, |_| false); // the other pair's checks finish too
        let (_, first) = p.b.selected_path().unwrap();
        let other = if first == addr("10.0.0.1:1000") {
            addr("10.0.0.3:3000")
        } else {
            addr("10.0.0.1:1000")
        };
        let (ca, cb) = (
            p.a.local_credentials().clone(),
            p.b.local_credentials().clone(),
        );
        let mut buf = Vec::new();
        let mut e = MessageEncoder::new(
            &mut buf,
            MessageType::BINDING_REQUEST,
            TransactionId([9; 12]),
        );
        e.attribute(&Attribute::Username(&format!("{}:{}", cb.ufrag, ca.ufrag)))
            .attribute(&Attribute::Priority(priority(
                type_preference::PEER_REFLEXIVE,
                1,
                1,
            )))
            .attribute(&Attribute::IceControlling(5))
            .attribute(&Attribute::UseCandidate);
        e.message_integrity(&IntegrityKey::short_term(&cb.pwd))
            .fingerprint()
            .finish()
            .unwrap();
        p.b.handle_receive(
            p.now,
            Receive {
                source: other,
                destination: addr("10.0.0.2:2000"),
                contents: &buf,
            },
        );
        let want = Some((addr("10.0.0.2:2000"), other));
        assert!(p.run(50, |p| p.b.selected_path() == want));
        p.b.send(b"\x80after").unwrap();
        let t = p.b.poll_transmit().unwrap();
        assert_eq!(t.destination, other);
    }

    /// RFC 8445 §7.3 / RFC 8489 §9.1.3: 400 without USERNAME or integrity,
    /// 401 for another ufrag or the wrong password; no state learned.
    #[test]
    fn bad_checks_get_400_401_and_no_state() {
        let mut p = agents(false, false);
        let ours = p.b.local_credentials().clone();
        let cases = [
            (request(None, Some(&ours.pwd)), 400),
            (request(Some(&format!("{}:x", ours.ufrag)), None), 400),
            (request(Some("other:x"), Some(&ours.pwd)), 401),
            (
                request(
                    Some(&format!("{}:x", ours.ufrag)),
                    Some("wrong-password-wrong-pw"),
                ),
                401,
            ),
        ];
        for (req, code) in cases {
            p.b.handle_receive(
                p.now,
                Receive {
                    source: addr("192.0.2.9:9"),
                    destination: addr("10.0.0.2:2000"),
                    contents: &req,
                },
            );
            let t = p.b.poll_transmit().expect("an error response");
            let m = Message::parse(&t.contents).unwrap();
            assert_eq!(m.class(), Class::Error);
            assert_eq!(m.error_code().unwrap().unwrap().code, code);
        }
        assert!(p.b.remote_candidates().is_empty());
        assert!(p.b.pairs().is_empty());
        // A good one is answered and teaches a peer-reflexive candidate.
        let req = request(Some(&format!("{}:x", ours.ufrag)), Some(&ours.pwd));
        p.b.handle_receive(
            p.now,
            Receive {
                source: addr("192.0.2.9:9"),
                destination: addr("10.0.0.2:2000"),
                contents: &req,
            },
        );
        let t = p.b.poll_transmit().unwrap();
        let m = Message::parse(&t.contents).unwrap();
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.xor_mapped_address().unwrap(), Some(addr("192.0.2.9:9")));
        assert_eq!(
            p.b.remote_candidates()[0].kind,
            CandidateKind::PeerReflexive
        );
    }

    #[test]
    fn restart_uses_new_credentials_and_reconnects() {
        let mut p = agents(true, false);
        p.credentials();
        assert!(p.run(100, Pair::connected));
        let old = p.a.local_credentials().clone();
        let new_a = p.a.restart(p.now);
        let new_b = p.b.restart(p.now);
        assert_ne!(old, new_a);
        assert_eq!(p.a.state(), ConnectionState::Checking);
        // Data still flows on the old path meanwhile.
        p.a.send(b"\x17during").unwrap();
        p.a.set_remote_credentials(p.now, &new_b.ufrag, &new_b.pwd);
        p.b.set_remote_credentials(p.now, &new_a.ufrag, &new_a.pwd);
        assert!(p.run(200, |p| p.connected() && p.a.selected_pair().is_some()));
        assert!(p.data[1].contains(&b"\x17during".to_vec()));
    }

    #[test]
    fn remote_candidates_are_capped() {
        let mut p = agents(true, false);
        let cap = Config::default().max_remote_candidates;
        for i in 0..cap + 10 {
            let c = Candidate::new(
                format!("f{i}"),
                1,
                CandidateKind::Host,
                1,
                SocketAddr::new("192.0.2.50".parse().unwrap(), 1000 + i as u16),
                None,
            );
            let r = p.a.add_remote_candidate(p.now, c);
            assert_eq!(r.is_err(), i >= cap, "{i}");
        }
        assert_eq!(p.a.remote_candidates().len(), cap);
        let mdns = Candidate::parse("candidate:1 1 udp 1 x.local 9 typ host").unwrap();
        assert!(matches!(
            p.a.add_remote_candidate(p.now, mdns),
            Err(Error::Unusable(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            crate::fuzzing::ice_agent(&b);
        }
    }
}
