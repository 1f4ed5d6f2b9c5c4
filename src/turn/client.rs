//! The sans-IO TURN client (RFC 8656 §7–§12): one allocation on one server.
//!
//! ```text
//!  client                          server                         peer
//!    │ Allocate (no credentials) ──►│
//!    │◄── 401 REALM, NONCE          │
//!    │ Allocate + USERNAME, REALM,  │
//!    │   NONCE, MESSAGE-INTEGRITY ─►│   relayed address R allocated
//!    │◄── success XOR-RELAYED-ADDRESS, LIFETIME, XOR-MAPPED-ADDRESS
//!    │ CreatePermission(peer IP) ──►│
//!    │ Send indication(peer, DATA) ►│── UDP from R ──────────────►│
//!    │◄── Data indication(peer, DATA)◄── UDP to R ───────────────│
//!    │ ChannelBind(0x4000, peer) ──►│
//!    │ ChannelData 0x4000 ─────────►│── UDP from R ──────────────►│
//!    │ Refresh (LIFETIME 0) ───────►│   allocation freed
//! ```
//!
//! Every request after the first carries the long-term credentials (RFC 8489
//! §9.2); a 438 (Stale Nonce) is retried with the new nonce. Requests are
//! [`stun::Client`] transactions, retransmitted on the
//! RFC 8489 schedule. The allocation is refreshed a minute before it expires
//! (§7.1), permissions every 4 minutes (they last 5, §9), channels every 9
//! (they last 10, §12).
//!
//! Data for a peer without a permission is queued (a few datagrams) while the
//! permission is created; once a channel is bound, data goes as ChannelData.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use super::attributes::{self as turn_attr, PROTOCOL_UDP, TurnAttribute};
use super::channel_data::{self, ChannelData, MAX_CHANNEL, MIN_CHANNEL};
use crate::machine::{Machine, Receive, Transmit};
use crate::stun::attributes::error_code;
use crate::stun::{
    self, Attribute, Class, IntegrityKey, Message, MessageEncoder, MessageType, Method,
    PasswordAlgorithm, TransactionError, TransactionId, attr,
};

/// RFC 8656 §9: a permission lasts 300 s; refresh it after 240.
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// RFC 8656 §12: a channel binding lasts 600 s; refresh it after 540.
pub const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// How many datagrams wait per peer address for a permission.
const MAX_QUEUED: usize = 32;
/// How many permissions (peer IPs) the client keeps at most.
const MAX_PERMISSIONS: usize = 256;
/// How many times one request is re-sent after a 401/438.
const MAX_AUTH_RETRIES: u8 = 2;

/// How the client is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// The TURN server.
    pub server: SocketAddr,
    /// The local address to send from (`None`: the driver's first socket).
    pub local: Option<SocketAddr>,
    /// The long-term credentials' username.
    pub username: String,
    /// The password.
    pub password: String,
    /// The allocation lifetime to ask for (RFC 8656 §7.2: the server may
    /// shorten it; 600 s is its default).
    pub lifetime: Duration,
    /// Retransmission parameters of the requests.
    pub stun: stun::client::Config,
    /// SOFTWARE to send, if any.
    pub software: Option<String>,
    /// How the client reaches the server: UDP datagrams, or one TCP
    /// connection the runtime opens (RFC 8656 §3.1). The client still
    /// emits one [`Transmit`] per message to [`Config::server`];
    /// over TCP the runtime writes them back to back on the stream and
    /// cuts what it reads into messages with [`super::stream::Framer`].
    pub transport: ServerTransport,
}

/// The transport between the client and its server (RFC 8656 §3.1; the
/// relay to peers is UDP either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerTransport {
    /// UDP (`turn:host?transport=udp`, the default).
    #[default]
    Udp,
    /// TCP (`turn:host?transport=tcp`): reaches a server through a
    /// firewall that lets only TCP out.
    Tcp,
}

impl Config {
    /// A configuration with RFC defaults.
    pub fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        Config {
            server,
            local: None,
            username: username.to_string(),
            password: password.to_string(),
            lifetime: Duration::from_secs(600),
            stun: stun::client::Config::default(),
            software: Some(concat!("rtclab ", env!("CARGO_PKG_VERSION")).to_string()),
            transport: ServerTransport::Udp,
        }
    }

    /// As [`Config::new`], over a TCP connection to the server:
    /// ChannelData padded to 4 bytes (RFC 8656 §12.5), and requests sent
    /// once and given up after Ti = 39.5 s (RFC 8489 §6.2.2: a reliable
    /// transport is not retransmitted on).
    pub fn tcp(server: SocketAddr, username: &str, password: &str) -> Self {
        let mut c = Config::new(server, username, password);
        c.transport = ServerTransport::Tcp;
        c.stun.rc = 1;
        // Ti = 39.5 s = 79 × the default 500 ms RTO.
        c.stun.rm = 79;
        c
    }
}

/// What can go wrong with a TURN operation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The server never answered.
    Timeout,
    /// The server answered with an error (401 wrong credentials, 403
    /// forbidden peer, 437 allocation mismatch, 486 quota, …).
    ErrorResponse {
        /// The ERROR-CODE.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// A success response lacked an attribute it must carry.
    Malformed(&'static str),
    /// API misuse: there is no allocation (yet, or any more).
    NotAllocated,
    /// API misuse: the peer's address family differs from the relayed one.
    FamilyMismatch,
    /// Too many datagrams or permissions waiting.
    QueueFull,
    /// All channel numbers are in use.
    NoChannel,
    /// A message could not be built.
    Encode(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout => write!(f, "the TURN server did not answer"),
            Error::ErrorResponse { code, reason } => {
                write!(f, "TURN error response {code} {reason}")
            }
            Error::Malformed(w) => write!(f, "malformed TURN response: {w}"),
            Error::NotAllocated => write!(f, "no TURN allocation"),
            Error::FamilyMismatch => {
                write!(f, "peer address family differs from the relayed address")
            }
            Error::QueueFull => write!(f, "too many datagrams waiting for a permission"),
            Error::NoChannel => write!(f, "no free channel number"),
            Error::Encode(e) => write!(f, "cannot build TURN message: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<stun::Error> for Error {
    fn from(e: stun::Error) -> Self {
        Error::Encode(e.to_string())
    }
}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The allocation exists.
    Allocated {
        /// The relayed transport address peers send to.
        relayed: SocketAddr,
        /// Our server-reflexive address as the server saw it.
        mapped: Option<SocketAddr>,
        /// How long it lasts unless refreshed (the client refreshes it).
        lifetime: Duration,
    },
    /// The Allocate request failed; the client is done.
    AllocationFailed(Error),
    /// A Refresh succeeded.
    Refreshed {
        /// The new lifetime.
        lifetime: Duration,
    },
    /// A Refresh failed; the allocation will expire.
    RefreshFailed(Error),
    /// A permission for a peer IP is installed (or was refreshed).
    PermissionCreated(IpAddr),
    /// A CreatePermission failed (403: the server refuses that peer).
    PermissionFailed {
        /// The peer IP.
        peer: IpAddr,
        /// Why.
        error: Error,
    },
    /// A channel is bound to a peer (or was refreshed).
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// The channel number.
        channel: u16,
    },
    /// A ChannelBind failed.
    ChannelBindFailed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        error: Error,
    },
    /// Data from a peer, through the relay.
    Data {
        /// The peer.
        peer: SocketAddr,
        /// The payload.
        data: Vec<u8>,
    },
    /// The allocation was released (or expired).
    Closed,
}

/// The allocation's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing asked yet.
    Idle,
    /// Allocate sent.
    Allocating,
    /// The allocation exists.
    Allocated,
    /// Refresh with LIFETIME 0 sent.
    Closing,
    /// Released, failed or expired.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh { lifetime: u32 },
    CreatePermission { peer: SocketAddr },
    ChannelBind { channel: u16, peer: SocketAddr },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    request: Request,
    authenticated: bool,
    retries: u8,
}

#[derive(Debug)]
struct Permission {
    /// A peer address with this IP, for the refreshes: RFC 8656 §9 ignores
    /// the port, but XOR-PEER-ADDRESS must carry a valid one (our server,
    /// like others, answers 403 to port 0).
    peer: SocketAddr,
    installed: bool,
    requested: bool,
    refresh_at: Instant,
    queue: VecDeque<(SocketAddr, Vec<u8>)>,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    bound: bool,
    requested: bool,
    refresh_at: Instant,
}

/// The TURN client: one allocation, its permissions and channels.
#[derive(Debug)]
pub struct Client {
    config: Config,
    rng: StdRng,
    stun: stun::Client,
    state: State,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<IntegrityKey>,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    expires: Option<Instant>,
    refresh_at: Option<Instant>,
    refreshing: bool,
    permissions: HashMap<IpAddr, Permission>,
    channels: Vec<Channel>,
    next_channel: u16,
    pending: HashMap<TransactionId, Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Client {
    /// A client; nothing is sent until [`Client::allocate`].
    pub fn new(config: Config, rng: StdRng) -> Self {
        let stun = stun::Client::new(config.stun);
        Client {
            config,
            rng,
            stun,
            state: State::Idle,
            realm: None,
            nonce: None,
            key: None,
            relayed: None,
            mapped: None,
            expires: None,
            refresh_at: None,
            refreshing: false,
            permissions: HashMap::new(),
            channels: Vec::new(),
            next_channel: MIN_CHANNEL,
            pending: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The state of the allocation.
    pub fn state(&self) -> State {
        self.state
    }

    /// The relayed address, once allocated.
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// The server-reflexive address the server reported, once allocated.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The server.
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// Whether a permission for `peer` is installed.
    pub fn has_permission(&self, peer: IpAddr) -> bool {
        self.permissions.get(&peer).is_some_and(|p| p.installed)
    }

    /// The channel bound to `peer`, if any.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.bound)
            .map(|c| c.number)
    }

    /// Sends the Allocate request (RFC 8656 §7.1).
    pub fn allocate(&mut self, now: Instant) -> Result<(), Error> {
        if self.state != State::Idle {
            return Err(Error::Encode("already allocating or allocated".into()));
        }
        self.state = State::Allocating;
        self.request(now, Request::Allocate, 0)
    }

    /// Releases the allocation: a Refresh with LIFETIME 0 (RFC 8656 §7.4).
    pub fn close(&mut self, now: Instant) -> Result<(), Error> {
        match self.state {
            State::Allocated => {
                self.state = State::Closing;
                self.request(now, Request::Refresh { lifetime: 0 }, 0)
            }
            State::Closing | State::Closed => Ok(()),
            State::Idle | State::Allocating => {
                self.state = State::Closed;
                self.events.push_back(Event::Closed);
                Ok(())
            }
        }
    }

    /// Asks for a permission for `peer`'s IP (RFC 8656 §9); it is kept
    /// refreshed until the client closes.
    pub fn create_permission(&mut self, now: Instant, peer: SocketAddr) -> Result<(), Error> {
        self.check_peer(peer)?;
        if !self.permissions.contains_key(&peer.ip()) {
            if self.permissions.len() >= MAX_PERMISSIONS {
                return Err(Error::QueueFull);
            }
            self.permissions.insert(
                peer.ip(),
                Permission {
                    peer,
                    installed: false,
                    requested: false,
                    refresh_at: now,
                    queue: VecDeque::new(),
                },
            );
        }
        let p = self
            .permissions
            .get_mut(&peer.ip())
            .expect("inserted above");
        if p.requested {
            return Ok(());
        }
        p.requested = true;
        self.request(now, Request::CreatePermission { peer }, 0)
    }

    /// Binds a channel to `peer` (RFC 8656 §12.1) and returns its number;
    /// data to `peer` goes as ChannelData once [`Event::ChannelBound`]
    /// arrives.
    pub fn bind_channel(&mut self, now: Instant, peer: SocketAddr) -> Result<u16, Error> {
        self.check_peer(peer)?;
        if let Some(c) = self.channels.iter().find(|c| c.peer == peer) {
            return Ok(c.number);
        }
        if self.next_channel > MAX_CHANNEL {
            return Err(Error::NoChannel);
        }
        let number = self.next_channel;
        self.next_channel += 1;
        self.channels.push(Channel {
            number,
            peer,
            bound: false,
            requested: true,
            refresh_at: now + CHANNEL_REFRESH,
        });
        self.request(
            now,
            Request::ChannelBind {
                channel: number,
                peer,
            },
            0,
        )?;
        Ok(number)
    }

    /// Sends `data` to `peer` through the relay: as ChannelData on a bound
    /// channel, else as a Send indication (RFC 8656 §11) once a permission
    /// exists; until then it waits (a permission is requested).
    pub fn send_to(&mut self, now: Instant, peer: SocketAddr, data: &[u8]) -> Result<(), Error> {
        self.check_peer(peer)?;
        if let Some(ch) = self.channel(peer) {
            let mut out = Vec::with_capacity(4 + data.len() + 3);
            let cd = ChannelData { channel: ch, data };
            // RFC 8656 §12.5: over a stream the next message starts on
            // a 4-byte boundary; over UDP the padding may be left out.
            match self.config.transport {
                ServerTransport::Udp => cd.emit(&mut out),
                ServerTransport::Tcp => cd.emit_padded(&mut out),
            }
            .map_err(|e| Error::Encode(e.to_string()))?;
            self.transmit(out);
            return Ok(());
        }
        if self.has_permission(peer.ip()) {
            return self.send_indication(peer, data);
        }
        self.create_permission(now, peer)?;
        let p = self
            .permissions
            .get_mut(&peer.ip())
            .expect("create_permission inserted it");
        if p.queue.len() >= MAX_QUEUED {
            return Err(Error::QueueFull);
        }
        p.queue.push_back((peer, data.to_vec()));
        Ok(())
    }

    fn check_peer(&self, peer: SocketAddr) -> Result<(), Error> {
        if self.state != State::Allocated {
            return Err(Error::NotAllocated);
        }
        match self.relayed {
            Some(r) if r.is_ipv4() != peer.is_ipv4() => Err(Error::FamilyMismatch),
            _ => Ok(()),
        }
    }

    fn transmit(&mut self, contents: Vec<u8>) {
        self.transmits.push_back(Transmit {
            source: self.config.local,
            destination: self.config.server,
            contents,
        });
    }

    /// RFC 8656 §11.1: a Send indication with XOR-PEER-ADDRESS and DATA (no
    /// integrity: indications cannot be authenticated).
    fn send_indication(&mut self, peer: SocketAddr, data: &[u8]) -> Result<(), Error> {
        let tid = TransactionId::random(&mut self.rng);
        let mut out = Vec::with_capacity(36 + data.len() + 3);
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Indication, Method::SEND),
            tid,
        );
        TurnAttribute::XorPeerAddress(peer).emit(&mut enc);
        TurnAttribute::Data(data).emit(&mut enc);
        enc.finish()?;
        self.transmit(out);
        Ok(())
    }

    fn request(&mut self, now: Instant, request: Request, retries: u8) -> Result<(), Error> {
        let tid = TransactionId::random(&mut self.rng);
        let method = match request {
            Request::Allocate => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission { .. } => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        };
        let mut out = Vec::with_capacity(160);
        let mut enc = MessageEncoder::new(&mut out, MessageType::new(Class::Request, method), tid);
        match request {
            Request::Allocate => {
                // RFC 8656 §7.1: REQUESTED-TRANSPORT is mandatory (UDP).
                TurnAttribute::RequestedTransport(PROTOCOL_UDP).emit(&mut enc);
                let secs = u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX);
                TurnAttribute::Lifetime(secs).emit(&mut enc);
            }
            Request::Refresh { lifetime } => TurnAttribute::Lifetime(lifetime).emit(&mut enc),
            Request::CreatePermission { peer } => {
                TurnAttribute::XorPeerAddress(peer).emit(&mut enc)
            }
            Request::ChannelBind { channel, peer } => {
                TurnAttribute::ChannelNumber(channel).emit(&mut enc);
                TurnAttribute::XorPeerAddress(peer).emit(&mut enc);
            }
        }
        if let Some(s) = &self.config.software {
            enc.attribute(&Attribute::Software(s));
        }
        let authenticated = match (&self.key, &self.realm, &self.nonce) {
            (Some(key), Some(realm), Some(nonce)) => {
                // RFC 8489 §9.2.4: USERNAME, REALM, NONCE, then MESSAGE-INTEGRITY.
                enc.attribute(&Attribute::Username(&self.config.username));
                enc.attribute(&Attribute::Realm(realm));
                enc.attribute(&Attribute::Nonce(nonce));
                enc.message_integrity(key);
                true
            }
            _ => false,
        };
        enc.fingerprint();
        enc.finish()?;
        let key = if authenticated {
            self.key.clone()
        } else {
            None
        };
        let id = self
            .stun
            .start(now, out, self.config.server, self.config.local, key)?;
        self.pending.insert(
            id,
            Pending {
                request,
                authenticated,
                retries,
            },
        );
        Ok(())
    }

    fn drain_stun(&mut self, now: Instant) {
        while let Some(stun::client::Event::Completed { id, result }) = self.stun.poll_event() {
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            match result {
                Ok(resp) => match Message::parse(&resp.bytes) {
                    Ok(msg) => self.on_success(now, p.request, &msg),
                    Err(e) => self.on_failure(p.request, Error::Encode(e.to_string())),
                },
                Err(TransactionError::ErrorResponse {
                    code,
                    reason,
                    response,
                }) => {
                    if self.should_retry(&p, code, &response.bytes) {
                        if let Err(e) = self.request(now, p.request, p.retries + 1) {
                            self.on_failure(p.request, e);
                        }
                    } else {
                        self.on_failure(p.request, Error::ErrorResponse { code, reason });
                    }
                }
                Err(TransactionError::Timeout { .. }) => self.on_failure(p.request, Error::Timeout),
            }
        }
    }

    /// RFC 8489 §9.2.5: a 401 to a request without credentials gives the
    /// realm and nonce to retry with; a 438 gives a fresh nonce.
    fn should_retry(&mut self, p: &Pending, code: u16, response: &[u8]) -> bool {
        if p.retries >= MAX_AUTH_RETRIES {
            return false;
        }
        let retry = (code == error_code::UNAUTHENTICATED && !p.authenticated)
            || code == error_code::STALE_NONCE;
        if !retry {
            return false;
        }
        let Ok(msg) = Message::parse(response) else {
            return false;
        };
        let nonce = match msg.attribute(attr::NONCE) {
            Ok(Some(Attribute::Nonce(n))) => n.to_string(),
            _ => return false,
        };
        let realm = match msg.attribute(attr::REALM) {
            Ok(Some(Attribute::Realm(r))) => Some(r.to_string()),
            _ => None,
        };
        if let Some(realm) = realm {
            if self.realm.as_deref() != Some(&realm) || self.key.is_none() {
                match IntegrityKey::long_term(
                    &self.config.username,
                    &realm,
                    &self.config.password,
                    PasswordAlgorithm::Md5,
                ) {
                    Ok(k) => self.key = Some(k),
                    Err(_) => return false,
                }
                self.realm = Some(realm);
            }
        }
        if self.realm.is_none() {
            return false;
        }
        self.nonce = Some(nonce);
        true
    }

    fn on_success(&mut self, now: Instant, request: Request, msg: &Message<'_>) {
        match request {
            Request::Allocate => {
                let relayed = match turn_attr::get(msg, attr::XOR_RELAYED_ADDRESS) {
                    Ok(Some(TurnAttribute::XorRelayedAddress(a))) => a,
                    _ => {
                        self.state = State::Closed;
                        self.events
                            .push_back(Event::AllocationFailed(Error::Malformed(
                                "Allocate success without XOR-RELAYED-ADDRESS",
                            )));
                        return;
                    }
                };
                let lifetime = turn_attr::lifetime(msg).unwrap_or(self.config.lifetime);
                self.mapped = msg.xor_mapped_address().ok().flatten();
                self.relayed = Some(relayed);
                self.state = State::Allocated;
                self.set_lifetime(now, lifetime);
                tracing::debug!(%relayed, ?lifetime, "TURN allocation");
                self.events.push_back(Event::Allocated {
                    relayed,
                    mapped: self.mapped,
                    lifetime,
                });
            }
            Request::Refresh { lifetime: 0 } => self.closed(),
            Request::Refresh { .. } => {
                self.refreshing = false;
                let lifetime = turn_attr::lifetime(msg).unwrap_or(self.config.lifetime);
                self.set_lifetime(now, lifetime);
                self.events.push_back(Event::Refreshed { lifetime });
            }
            Request::CreatePermission { peer } => {
                self.install_permission(now, peer);
                self.events.push_back(Event::PermissionCreated(peer.ip()));
            }
            Request::ChannelBind { channel, peer } => {
                // RFC 8656 §12.2: a ChannelBind also installs or refreshes
                // the permission for the peer's IP.
                if self.state == State::Allocated {
                    self.install_permission(now, peer);
                }
                if let Some(c) = self.channels.iter_mut().find(|c| c.number == channel) {
                    c.bound = true;
                    c.requested = false;
                    c.refresh_at = now + CHANNEL_REFRESH;
                }
                self.events.push_back(Event::ChannelBound { peer, channel });
            }
        }
    }

    fn install_permission(&mut self, now: Instant, peer: SocketAddr) {
        let ip = peer.ip();
        if self.permissions.len() >= MAX_PERMISSIONS && !self.permissions.contains_key(&ip) {
            return;
        }
        let p = self.permissions.entry(ip).or_insert_with(|| Permission {
            peer,
            installed: false,
            requested: false,
            refresh_at: now,
            queue: VecDeque::new(),
        });
        p.installed = true;
        p.requested = false;
        p.refresh_at = now + PERMISSION_REFRESH;
        let queue = std::mem::take(&mut p.queue);
        for (peer, data) in queue {
            if let Err(e) = self.send_indication(peer, &data) {
                tracing::debug!(error = %e, "queued TURN data dropped");
            }
        }
    }

    fn on_failure(&mut self, request: Request, error: Error) {
        tracing::debug!(?request, %error, "TURN request failed");
        match request {
            Request::Allocate => {
                self.state = State::Closed;
                self.events.push_back(Event::AllocationFailed(error));
            }
            // Closing: whatever the answer (437 if it is gone already), we are done.
            Request::Refresh { lifetime: 0 } => self.closed(),
            Request::Refresh { .. } => {
                self.refreshing = false;
                self.events.push_back(Event::RefreshFailed(error));
            }
            Request::CreatePermission { peer } => {
                // A refused refresh is not retried (it would be at once, in
                // a loop): the permission is forgotten and lapses on the
                // server.
                self.permissions.remove(&peer.ip());
                self.events.push_back(Event::PermissionFailed {
                    peer: peer.ip(),
                    error,
                });
            }
            Request::ChannelBind { channel, peer } => {
                if let Some(i) = self.channels.iter().position(|c| c.number == channel) {
                    if self.channels[i].bound {
                        self.channels[i].requested = false;
                    } else {
                        self.channels.swap_remove(i);
                    }
                }
                self.events
                    .push_back(Event::ChannelBindFailed { peer, error });
            }
        }
    }

    fn closed(&mut self) {
        self.state = State::Closed;
        self.permissions.clear();
        self.channels.clear();
        self.expires = None;
        self.refresh_at = None;
        self.events.push_back(Event::Closed);
    }

    /// RFC 8656 §7.1 leaves when to refresh to the client; a minute before
    /// the end (half the lifetime for short ones).
    fn set_lifetime(&mut self, now: Instant, lifetime: Duration) {
        self.expires = Some(now + lifetime);
        let before = if lifetime > Duration::from_secs(120) {
            lifetime - Duration::from_secs(60)
        } else {
            lifetime / 2
        };
        self.refresh_at = Some(now + before);
    }

    fn on_data(&mut self, peer: SocketAddr, data: &[u8]) {
        self.events.push_back(Event::Data {
            peer,
            data: data.to_vec(),
        });
    }

    /// Offers a datagram; returns whether it was for this client (from its
    /// server, and TURN or a response to one of its requests).
    pub fn handle(&mut self, now: Instant, d: Receive<'_>) -> bool {
        if d.source != self.config.server {
            return false;
        }
        if channel_data::is_channel_data(d.contents) {
            // RFC 8656 §12.6: data on an unbound channel is discarded. A
            // channel whose ChannelBind is in flight counts as bound: the
            // server sends ChannelData only once it bound the channel, so
            // such data proves the binding (its answer may be lost, or
            // still on its way), and the number names our peer.
            if let Ok(cd) = ChannelData::parse(d.contents) {
                let peer = self
                    .channels
                    .iter()
                    .find(|c| c.number == cd.channel && (c.bound || c.requested))
                    .map(|c| c.peer);
                if let Some(peer) = peer {
                    self.on_data(peer, cd.data);
                }
            }
            return true;
        }
        let Ok(msg) = Message::parse(d.contents) else {
            return false;
        };
        if msg.class() == Class::Indication && msg.method() == Method::DATA {
            // RFC 8656 §11.6: a Data indication needs XOR-PEER-ADDRESS and DATA.
            if let (Some(peer), Some(data)) = (turn_attr::peer_address(&msg), turn_attr::data(&msg))
            {
                self.on_data(peer, data);
            }
            return true;
        }
        let ours = self.stun.handle_response(now, d);
        self.drain_stun(now);
        ours
    }
}

impl Machine for Client {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        self.handle(now, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.stun.handle_timeout(now);
        self.drain_stun(now);
        if self.state != State::Allocated {
            return;
        }
        if self.expires.is_some_and(|e| now >= e) {
            tracing::debug!("TURN allocation expired");
            self.closed();
            return;
        }
        if !self.refreshing && self.refresh_at.is_some_and(|t| now >= t) {
            self.refreshing = true;
            let secs = u32::try_from(self.config.lifetime.as_secs()).unwrap_or(u32::MAX);
            if let Err(e) = self.request(now, Request::Refresh { lifetime: secs }, 0) {
                self.refreshing = false;
                self.events.push_back(Event::RefreshFailed(e));
            }
        }
        let due: Vec<(IpAddr, SocketAddr)> = self
            .permissions
            .iter()
            .filter(|(_, p)| p.installed && !p.requested && now >= p.refresh_at)
            .map(|(ip, p)| (*ip, p.peer))
            .collect();
        for (ip, peer) in due {
            if let Some(p) = self.permissions.get_mut(&ip) {
                p.requested = true;
            }
            if let Err(e) = self.request(now, Request::CreatePermission { peer }, 0) {
                self.events
                    .push_back(Event::PermissionFailed { peer: ip, error: e });
            }
        }
        let due: Vec<(u16, SocketAddr)> = self
            .channels
            .iter_mut()
            .filter(|c| c.bound && !c.requested && now >= c.refresh_at)
            .map(|c| {
                c.requested = true;
                (c.number, c.peer)
            })
            .collect();
        for (channel, peer) in due {
            if let Err(e) = self.request(now, Request::ChannelBind { channel, peer }, 0) {
                self.events
                    .push_back(Event::ChannelBindFailed { peer, error: e });
            }
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits
            .pop_front()
            .or_else(|| self.stun.poll_transmit())
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut t = self.stun.poll_timeout();
        let mut consider = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if self.state == State::Allocated {
            if !self.refreshing {
                consider(self.refresh_at);
            }
            consider(self.expires);
            for p in self.permissions.values() {
                if p.installed && !p.requested {
                    consider(Some(p.refresh_at));
                }
            }
            for c in &self.channels {
                if c.bound && !c.requested {
                    consider(Some(c.refresh_at));
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::ErrorCode;
    use rand::SeedableRng;

    const SERVER: &str = "192.0.2.1:3478";
    const LOCAL: &str = "10.0.0.2:5000";

    fn client(now: Instant) -> Client {
        let mut c = Client::new(
            Config::new(SERVER.parse().unwrap(), "alice", "secret"),
            StdRng::seed_from_u64(1),
        );
        c.allocate(now).unwrap();
        c
    }

    fn feed(c: &mut Client, now: Instant, bytes: &[u8]) {
        c.handle_receive(
            now,
            Receive {
                source: SERVER.parse().unwrap(),
                destination: LOCAL.parse().unwrap(),
                contents: bytes,
            },
        );
    }

    fn error(req: &Message<'_>, code: u16, nonce: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Error, req.method()),
            req.transaction_id(),
        );
        enc.attribute(&Attribute::ErrorCode(ErrorCode {
            code,
            reason: error_code::reason(code),
        }));
        enc.attribute(&Attribute::Realm("rtclab"));
        enc.attribute(&Attribute::Nonce(nonce));
        enc.finish().unwrap();
        out
    }

    fn key() -> IntegrityKey {
        IntegrityKey::long_term("alice", "rtclab", "secret", PasswordAlgorithm::Md5).unwrap()
    }

    #[test]
    fn allocate_401_then_438_then_success() {
        let now = Instant::now();
        let mut c = client(now);
        let first = c.poll_transmit().unwrap();
        let m = Message::parse(&first.contents).unwrap();
        assert_eq!(m.method(), Method::ALLOCATE);
        assert!(
            !m.has_integrity(),
            "the first Allocate carries no credentials"
        );
        assert_eq!(
            turn_attr::get(&m, attr::REQUESTED_TRANSPORT).unwrap(),
            Some(TurnAttribute::RequestedTransport(17))
        );
        feed(&mut c, now, &error(&m, 401, "n1"));

        let second = c.poll_transmit().unwrap();
        let m2 = Message::parse(&second.contents).unwrap();
        assert_ne!(m2.transaction_id(), m.transaction_id());
        m2.verify_integrity(&key()).unwrap();
        assert_eq!(m2.username().unwrap(), Some("alice"));
        assert_eq!(
            m2.attribute(attr::NONCE).unwrap(),
            Some(Attribute::Nonce("n1"))
        );
        feed(&mut c, now, &error(&m2, 438, "n2"));

        let third = c.poll_transmit().unwrap();
        let m3 = Message::parse(&third.contents).unwrap();
        m3.verify_integrity(&key()).unwrap();
        assert_eq!(
            m3.attribute(attr::NONCE).unwrap(),
            Some(Attribute::Nonce("n2"))
        );

        let relayed: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        let mut ok = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut ok,
            MessageType::new(Class::Success, Method::ALLOCATE),
            m3.transaction_id(),
        );
        TurnAttribute::XorRelayedAddress(relayed).emit(&mut enc);
        TurnAttribute::Lifetime(600).emit(&mut enc);
        enc.attribute(&Attribute::XorMappedAddress(LOCAL.parse().unwrap()));
        enc.message_integrity(&key());
        enc.finish().unwrap();
        feed(&mut c, now, &ok);
        assert_eq!(
            c.poll_event(),
            Some(Event::Allocated {
                relayed,
                mapped: Some(LOCAL.parse().unwrap()),
                lifetime: Duration::from_secs(600)
            })
        );
        // The refresh is scheduled a minute before expiry.
        assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(540)));
        c.handle_timeout(now + Duration::from_secs(540));
        let refresh = c.poll_transmit().unwrap();
        let r = Message::parse(&refresh.contents).unwrap();
        assert_eq!(r.method(), Method::REFRESH);
        r.verify_integrity(&key()).unwrap();

        // Data for a peer waits for its permission.
        let peer: SocketAddr = "198.51.100.7:9000".parse().unwrap();
        c.send_to(now, peer, b"hi").unwrap();
        let cp = c.poll_transmit().unwrap();
        let cp = Message::parse(&cp.contents).unwrap();
        assert_eq!(cp.method(), Method::CREATE_PERMISSION);
        assert_eq!(turn_attr::peer_address(&cp), Some(peer));
        assert!(c.poll_transmit().is_none());
    }

    #[test]
    fn a_second_401_is_a_failure() {
        let now = Instant::now();
        let mut c = client(now);
        let m = c.poll_transmit().unwrap();
        feed(
            &mut c,
            now,
            &error(&Message::parse(&m.contents).unwrap(), 401, "n"),
        );
        let m = c.poll_transmit().unwrap();
        feed(
            &mut c,
            now,
            &error(&Message::parse(&m.contents).unwrap(), 401, "n"),
        );
        assert!(matches!(
            c.poll_event(),
            Some(Event::AllocationFailed(Error::ErrorResponse {
                code: 401,
                ..
            }))
        ));
        assert_eq!(c.state(), State::Closed);
    }

    /// A success response to `req`, with `attrs` added, signed.
    fn success(req: &Message<'_>, attrs: impl FnOnce(&mut MessageEncoder<'_>)) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Success, req.method()),
            req.transaction_id(),
        );
        attrs(&mut enc);
        enc.message_integrity(&key());
        enc.finish().unwrap();
        out
    }

    /// RFC 8656 §3.1, §12.5 and RFC 8489 §6.2.2: over TCP a request is sent
    /// once and given up after Ti = 39.5 s, and ChannelData is padded to a
    /// multiple of 4 bytes so that the next message on the stream starts
    /// aligned.
    #[test]
    fn over_tcp_no_retransmission_and_padded_channel_data() {
        let now = Instant::now();
        let server: SocketAddr = SERVER.parse().unwrap();
        let mut c = Client::new(
            Config::tcp(server, "alice", "secret"),
            StdRng::seed_from_u64(1),
        );
        c.allocate(now).unwrap();
        assert!(c.poll_transmit().is_some());
        let mut t = now;
        while let Some(next) = c.poll_timeout() {
            t = next;
            c.handle_timeout(t);
            assert!(c.poll_transmit().is_none(), "a retransmission over TCP");
            if c.state() == State::Closed {
                break;
            }
        }
        assert_eq!(t - now, Duration::from_millis(39_500));
        assert_eq!(
            c.poll_event(),
            Some(Event::AllocationFailed(Error::Timeout))
        );

        // Allocated, a channel bound: the ChannelData goes padded.
        let mut c = Client::new(
            Config::tcp(server, "alice", "secret"),
            StdRng::seed_from_u64(2),
        );
        c.allocate(now).unwrap();
        let m = c.poll_transmit().unwrap();
        feed(
            &mut c,
            now,
            &error(&Message::parse(&m.contents).unwrap(), 401, "n"),
        );
        let m = c.poll_transmit().unwrap();
        let relayed: SocketAddr = "192.0.2.1:50000".parse().unwrap();
        feed(
            &mut c,
            now,
            &success(&Message::parse(&m.contents).unwrap(), |enc| {
                TurnAttribute::XorRelayedAddress(relayed).emit(enc);
                TurnAttribute::Lifetime(600).emit(enc);
            }),
        );
        assert!(matches!(c.poll_event(), Some(Event::Allocated { .. })));
        let peer: SocketAddr = "198.51.100.7:9000".parse().unwrap();
        let ch = c.bind_channel(now, peer).unwrap();
        let m = c.poll_transmit().unwrap();
        feed(
            &mut c,
            now,
            &success(&Message::parse(&m.contents).unwrap(), |_| {}),
        );
        while c.poll_event().is_some() {}
        assert_eq!(c.channel(peer), Some(ch));
        c.send_to(now, peer, b"hello").unwrap();
        let cd = c.poll_transmit().unwrap();
        assert_eq!(cd.destination, server);
        assert_eq!(cd.contents.len(), 12, "4 + 5 + 3 bytes of padding");
        assert_eq!(&cd.contents[2..4], &5u16.to_be_bytes());
        assert_eq!(&cd.contents[4..9], b"hello");
        // Over UDP the same goes unpadded.
        assert_eq!(
            Config::new(server, "a", "b").transport,
            ServerTransport::Udp
        );
    }

    #[test]
    fn channel_data_from_an_unbound_channel_is_dropped() {
        let now = Instant::now();
        let mut c = client(now);
        feed(&mut c, now, b"\x40\x00\x00\x01x");
        assert!(c.poll_event().is_none());
    }
}
