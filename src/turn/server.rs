//! A sans-IO TURN server (RFC 8656 §5–§12) over UDP, with long-term
//! credentials.
//!
//! ## Relayed sockets
//!
//! A sans-IO machine cannot open sockets, so the server asks its caller.
//! With [`Config::relay_ports`] (what `rtclab turn-server` uses, as
//! coturn's `min-port`/`max-port`), an Allocate picks a free port of the
//! range from a random point (RFC 6056 §3.1), emits
//! [`Event::BindRelay`] and waits; the caller binds the socket and
//! answers [`Server::relay_bound`], and the Allocate is handled again with
//! the socket in hand (a port another program holds is skipped, 508 after
//! 8 tries). An allocation's end emits
//! [`Event::CloseRelay`]. EVEN-PORT gets an even port; its R bit
//! binds the next port too and reserves it for [`RESERVATION_LIFETIME`]
//! under a RESERVATION-TOKEN that one later Allocate redeems (RFC 8656
//! §7.2, §18.7, §18.10: an RTP/RTCP pair, what coturn's `turnutils_uclient`
//! asks by default). Without `relay_ports`, a fixed pool bound at start
//! ([`Config::relays`]) serves as before: simulations and tests use
//! it, and an empty pool answers 508.
//!
//! ## Clients over TCP
//!
//! The 5-tuple includes the transport (RFC 8656 §2): [`Server::handle_stream`]
//! takes a message cut from a client's TCP connection by
//! [`super::stream::Framer`], and what goes back to that client (answers,
//! peers' data as padded ChannelData or Data indications, RFC 8656 §12.5)
//! comes out of [`Server::poll_stream_transmit`]; an allocation made over
//! TCP is another one than over UDP from the same addresses, nonces are
//! bound to the transport too, and [`Server::stream_closed`] deletes the
//! connection's allocation. The relay itself stays UDP (RFC 6062's TCP
//! relaying is not here).
//!
//! ## What it enforces
//!
//! - every request but Binding is authenticated (RFC 8489 §9.2.4): 401 with
//!   REALM and NONCE without credentials or with a wrong key or user, 438 when
//!   the nonce is stale or was issued to another 5-tuple (nonces are
//!   stateless: an expiry time and an HMAC under a per-server secret over
//!   it and both transport addresses, valid [`NONCE_LIFETIME`] and only
//!   for the client address they were sent to, as coturn does; so a
//!   captured Allocate replayed from elsewhere makes no allocation);
//! - 437 for a request on a 5-tuple without allocation (or Allocate on one
//!   that has one), 441 when the username is not the allocation's, 442 for
//!   a REQUESTED-TRANSPORT other than UDP, 440 for an IPv6 relay, 486 past
//!   the per-user quota ([`Config::quota_per_user`], none by default),
//!   508 when no relay port is free, past [`Config::total_quota`], or
//!   for an unknown or expired RESERVATION-TOKEN, 420 for unknown
//!   comprehension-required attributes, 400 for malformed requests;
//! - permissions last 300 s (§9) except that a bound channel keeps its
//!   peer's permission as long as itself (as coturn does: aioice refreshes
//!   channels, never permissions), channels 600 s (§12), allocations at most
//!   [`MAX_LIFETIME`];
//! - no datagram is relayed to or from a peer without a permission, and a
//!   peer in [`Config::denied_peer_ips`] (by default link-local with
//!   the cloud metadata address 169.254.169.254, 0/8, multicast, broadcast,
//!   unspecified; see [`peer_policy`] for the choice beside coturn's) gets
//!   403 unless in [`Config::allowed_peer_ips`]; so does a peer on
//!   loopback or one of the server's own IPs unless `allow_loopback_peers`
//!   (like coturn's `--allow-loopback-peers`), and the server's listening
//!   socket always. The relayed addresses of this server are peers like any
//!   other (relay to relay, as coturn allows: two relay-only clients of one
//!   server meet that way). Private ranges are relayed unless denied: a
//!   public server adds them (`rtclab turn-server --denied-peer-ip 10.0.0.0/8 …`).
//!
//! ## Answer sizes
//!
//! A server that answers anyone is an amplifier for whoever forges a
//! victim's source address, so what goes to an unauthenticated sender is
//! kept to what RFC 8489 §9.2.4 requires: a 401 (or 438) carries
//! ERROR-CODE, REALM and NONCE (24 characters) only; PASSWORD-ALGORITHMS
//! is not sent because only MD5 keys are offered (it is required only with
//! the SHA-256 algorithm); SOFTWARE is off unless configured
//! ([`Config::software`], `turn-server --software`); and FINGERPRINT
//! comes back only when the request had one. A 20-byte Allocate gets an
//! 84-byte 401 with the realm "rtclab" (4.2×, was 116 bytes, 5.8×), a
//! 20-byte Binding 32 bytes (1.6×). Reason phrases stay (RFC 8489 §14.8 allows any;
//! people read them in client logs). `rtclab speed turn` prints the worst
//! ratio. Relayed data goes only to a client with an allocation, made from
//! a nonce sent to that very 5-tuple, so a forged source cannot become a
//! relay's destination.
//!
//! ## The relay path
//!
//! Relaying is the server's hot path, and it stays O(1) per datagram without
//! touching the heap: allocations live in one slot per relay address of the
//! pool, found by client 5-tuple or by relay address through one hash
//! lookup each; channels are found by number and by peer the same way; and
//! expiries sit in a deadline heap ([`Machine::poll_timeout`] peeks at it,
//! [`Machine::handle_timeout`] pops what is due) instead of being scanned.
//! [`Server::handle_relay`] writes the relayed datagram into the caller's
//! buffer instead of queuing a [`Transmit`]; the runtime's
//! [`Driver::serve_with_fast_path`](crate::runtime::Driver::serve_with_fast_path)
//! uses it, and [`Machine::handle_receive`] wraps it for every other caller.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::attributes::{self as turn_attr, PROTOCOL_UDP, TurnAttribute, is_turn_attribute};
use super::channel_data::{self, ChannelData, is_valid_channel_rfc5766};
use super::peer_policy::{self, IpRange};
use super::throttle::{self, AuthThrottle};
use crate::machine::{Machine, Receive, Transmit};
use crate::stun::attributes::{self, error_code};
use crate::stun::integrity::constant_time_eq;
use crate::stun::{
    Attribute, Class, ErrorCode, IntegrityKey, Message, MessageEncoder, MessageType, Method,
    PasswordAlgorithm, TransactionId, attr,
};

/// RFC 8656 §9: permissions last 300 s.
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 §12: channel bindings last 600 s.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// RFC 8656 §7.2: the default allocation lifetime.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// The longest lifetime granted (RFC 8656 §7.2: the server may cap it; 3600 s
/// is the RFC's example).
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a nonce is valid before 438.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(3600);
/// Most permissions and channels per allocation.
const MAX_PER_ALLOCATION: usize = 256;
/// RFC 8656 §10: 442 Unsupported Transport Protocol.
pub const UNSUPPORTED_TRANSPORT: u16 = 442;
/// RFC 8656 §7.2: 440 Address Family not Supported.
pub const FAMILY_NOT_SUPPORTED: u16 = 440;
/// RFC 8656 §5: 441 Wrong Credentials.
pub const WRONG_CREDENTIALS: u16 = 441;
/// RFC 8656 §9: 443 Peer Address Family Mismatch.
pub const PEER_FAMILY_MISMATCH: u16 = 443;
/// RFC 8656 §7.2: 486 Allocation Quota Reached.
pub const QUOTA_REACHED: u16 = 486;
/// RFC 8656 §7.2: 508 Insufficient Capacity.
pub const INSUFFICIENT_CAPACITY: u16 = 508;

/// RFC 8656 §7.2: a port reserved with RESERVATION-TOKEN is held this long
/// (the RFC's "approximately 30 seconds").
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Most reservations at once (each holds a socket).
const MAX_RESERVATIONS: usize = 256;
/// How many ports an Allocate may try to bind before 508 (a port of the
/// range can be taken by another program).
const MAX_BIND_TRIES: u8 = 8;
/// Most Allocates waiting for their relay sockets at once.
const MAX_PENDING: usize = 64;
/// Ports that failed to bind, remembered to be skipped for a while.
const MAX_FAILED_PORTS: usize = 64;

/// Most real listening addresses a wildcard-bound server remembers (one per
/// address of the host that clients use); none of them is a valid peer.
const MAX_LISTEN_ADDRS_SEEN: usize = 32;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where clients reach it.
    pub listen: SocketAddr,
    /// The pool of relayed transport addresses (bound by the caller), when
    /// [`Config::relay_ports`] is `None`.
    pub relays: Vec<SocketAddr>,
    /// Relay sockets opened on demand, one per allocation, on ports of a
    /// range (as coturn's `min-port`/`max-port`): the server asks its
    /// caller to bind each ([`Event::BindRelay`]) and to close it
    /// when the allocation ends ([`Event::CloseRelay`]). When set,
    /// [`Config::relays`] is not used.
    pub relay_ports: Option<RelayPorts>,
    /// The realm of the long-term credentials.
    pub realm: String,
    /// Users and passwords.
    pub users: Vec<(String, String)>,
    /// Most allocations per username at once; 0 (the default, as coturn's
    /// `user-quota`) sets no limit, so the many browsers that share one
    /// static credential of a deployment are not refused (486) from the
    /// 11th on.
    pub quota_per_user: usize,
    /// Most allocations at once, all users together; 0 (the default, as
    /// coturn's `total-quota`) sets no limit beyond the relay ports
    /// themselves (the pool, or the port range).
    pub total_quota: usize,
    /// The shared secret of the "TURN REST API" ephemeral credentials
    /// (draft-uberti-behave-turn-rest-00 §2.2, coturn's
    /// `static-auth-secret`): a username `EXPIRY[:NAME]` (EXPIRY in Unix
    /// seconds) has the password base64(HMAC-SHA1(secret, username)), and
    /// is refused (401) once EXPIRY has passed. Needs the wall clock:
    /// [`Server::set_unix_time`].
    pub auth_secret: Option<String>,
    /// Relay to loopback peers and the server's own IPs (tests on one host).
    pub allow_loopback_peers: bool,
    /// Peers refused with 403 (RFC 8656 §9.1); starts as
    /// [`peer_policy::default_denied`] (link-local with the cloud metadata
    /// address, 0/8, multicast, broadcast, unspecified). Add the private
    /// ranges on a public server.
    pub denied_peer_ips: Vec<IpRange>,
    /// Peers relayed even when denied above, or loopback ones without
    /// `allow_loopback_peers` (as coturn's `allowed-peer-ip`); never the
    /// server's listening socket.
    pub allowed_peer_ips: Vec<IpRange>,
    /// SOFTWARE in responses; none by default (a smaller 401 to forged
    /// sources: see "Answer sizes" in the module doc).
    pub software: Option<String>,
}

impl Config {
    /// A configuration for one user.
    pub fn new(listen: SocketAddr, relays: Vec<SocketAddr>, realm: &str) -> Self {
        Config {
            listen,
            relays,
            relay_ports: None,
            realm: realm.to_string(),
            users: Vec::new(),
            quota_per_user: 0,
            total_quota: 0,
            auth_secret: None,
            allow_loopback_peers: false,
            denied_peer_ips: peer_policy::default_denied(),
            allowed_peer_ips: Vec::new(),
            software: None,
        }
    }
}

/// Where relay sockets are opened on demand: one IP, a range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayPorts {
    /// The IP the relay sockets bind (the relayed addresses' IP).
    pub ip: IpAddr,
    /// The lowest port (coturn's default 49152).
    pub min: u16,
    /// The highest port (coturn's default 65535).
    pub max: u16,
}

/// What the server asks of its caller (the runtime) with on-demand relay
/// ports ([`Config::relay_ports`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Bind a UDP socket on this address, then tell the server how it went
    /// with [`Server::relay_bound`]; datagrams arriving on it go to
    /// [`Machine::handle_receive`] as any other.
    BindRelay(SocketAddr),
    /// The relay socket on this address is not needed any more: close it.
    CloseRelay(SocketAddr),
}

/// The transport between client and server, part of the 5-tuple (RFC
/// 8656 §2): an allocation made over TCP is not the one of the same
/// addresses over UDP, and its answers and data go back on its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    /// UDP datagrams.
    Udp,
    /// A TCP connection (RFC 8656 §3.1), its messages framed by
    /// [`super::stream`].
    Tcp,
}

/// An Allocate waiting for the relay sockets it asked for.
#[derive(Debug)]
struct Pending {
    transport: Transport,
    client: SocketAddr,
    server: SocketAddr,
    request: Vec<u8>,
    /// The addresses asked for, and those not answered yet.
    asked: Vec<SocketAddr>,
    waiting: Vec<SocketAddr>,
    tries: u8,
}

/// Where an allocation's relayed address comes from.
enum Pick {
    /// This address, and the next one reserved (EVEN-PORT's R bit).
    Ready(SocketAddr, Option<SocketAddr>),
    /// Bind these first.
    Bind(Vec<SocketAddr>),
    /// Nothing free: 508.
    Full,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Allocations made.
    pub allocations: u64,
    /// Error responses sent.
    pub errors: u64,
    /// Datagrams relayed client → peer.
    pub to_peer: u64,
    /// Datagrams relayed peer → client.
    pub to_client: u64,
    /// Datagrams dropped (malformed, no allocation, no permission,
    /// throttled).
    pub dropped: u64,
    /// Requests dropped unanswered because their source kept failing
    /// authentication (see [`throttle`]).
    pub throttled: u64,
}

#[derive(Debug)]
struct Allocation {
    /// The slot's generation when this allocation was made: timers of an
    /// earlier allocation in the same slot are recognised and ignored.
    generation: u64,
    transport: Transport,
    client: SocketAddr,
    /// The server side of the 5-tuple (RFC 8656 §2): the address the client
    /// sent its Allocate to, which its relayed data must come from. It is
    /// `listen` unless that is a wildcard address.
    server: SocketAddr,
    relay: SocketAddr,
    username: String,
    expires: Instant,
    permissions: HashMap<IpAddr, Instant>,
    /// By channel number: (peer, expiry).
    channels: HashMap<u16, (SocketAddr, Instant)>,
    /// By peer: its channel number (RFC 8656 §12: one channel per peer).
    channel_of: HashMap<SocketAddr, u16>,
    /// The Allocate transaction and its success response, to answer a
    /// retransmission (RFC 8656 §7.2).
    allocate_tid: TransactionId,
    allocate_response: Vec<u8>,
}

/// What a deadline in the heap is for: (slot, generation, what).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Allocation,
    Permission(IpAddr),
    Channel(u16),
}

/// Where [`Server::handle_relay`] wants the datagram it wrote sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The local address to send from (a relay address, or the listening one).
    pub source: SocketAddr,
    /// The peer or the client.
    pub destination: SocketAddr,
}

/// The TURN server. It emits no events; see [`Server::stats`].
#[derive(Debug)]
pub struct Server {
    config: Config,
    keys: HashMap<String, IntegrityKey>,
    secret: IntegrityKey,
    epoch: Instant,
    locals: Vec<SocketAddr>,
    local_set: HashSet<SocketAddr>,
    /// With a wildcard listening address: the real addresses clients sent
    /// to (the listening socket on each of them), at most
    /// [`MAX_LISTEN_ADDRS_SEEN`], so that no peer can be one of them.
    listen_addrs_seen: Vec<SocketAddr>,
    /// The allocations, in slots reused as they free up.
    slots: Vec<Option<Allocation>>,
    /// Allocations made per slot, so far.
    generations: Vec<u64>,
    /// Free slots; the last is taken first.
    free: Vec<usize>,
    /// The pool's free relay addresses (without on-demand ports); the last
    /// is taken first.
    pool_free: Vec<SocketAddr>,
    /// On-demand relay sockets bound and not used yet.
    spare: Vec<SocketAddr>,
    /// On-demand relay sockets asked for and not answered yet.
    binding: Vec<SocketAddr>,
    /// Ports that failed to bind lately (another program holds them).
    failed: VecDeque<SocketAddr>,
    /// Allocates waiting for [`Server::relay_bound`].
    pending: Vec<Pending>,
    /// The attempt an Allocate handled again after binding is at (0 for a
    /// request as it arrives).
    attempt: u8,
    /// RFC 8656 §7.2: ports reserved by EVEN-PORT's R bit, in expiry
    /// order (all live [`RESERVATION_LIFETIME`]): (expiry, token, address).
    reservations: VecDeque<(Instant, [u8; 8], SocketAddr)>,
    events: VecDeque<Event>,
    /// Port choice and reservation tokens.
    rng: StdRng,
    /// By client address (the 5-tuple: UDP, the one listening address).
    by_client: HashMap<(Transport, SocketAddr), usize>,
    /// The transport of the message being handled.
    transport: Transport,
    /// Messages for clients over TCP, for [`Server::poll_stream_transmit`].
    stream_transmits: VecDeque<Transmit>,
    /// By relay address.
    by_relay: HashMap<SocketAddr, usize>,
    /// Every expiry (allocation, permission, channel) with its slot and
    /// generation. A refresh pushes a new entry; the old one is skipped when
    /// it comes due (the object's own expiry says it is still alive).
    timers: BinaryHeap<Reverse<(Instant, usize, u64, Timer)>>,
    /// Past this many entries the heap is rebuilt from the live expiries, so
    /// that refreshes cannot grow it without bound.
    timers_cap: usize,
    transmits: VecDeque<Transmit>,
    stats: ServerStats,
    /// Sources failing authentication, to slow password guessing.
    throttle: AuthThrottle,
    /// [`Config::auth_secret`] as an HMAC key.
    auth_secret: Option<IntegrityKey>,
    /// The Unix time, in seconds, at `epoch` (see [`Server::set_unix_time`]).
    unix_at_epoch: Option<u64>,
}

struct Auth {
    username: String,
    key: IntegrityKey,
}

impl Server {
    /// A server; `now` starts its clock (nonces); `rng` draws its nonce
    /// secret, then relay ports and reservation tokens over its life.
    pub fn new(config: Config, now: Instant, mut rng: StdRng) -> Self {
        let keys = config
            .users
            .iter()
            .filter_map(|(u, p)| {
                IntegrityKey::long_term(u, &config.realm, p, PasswordAlgorithm::Md5)
                    .ok()
                    .map(|k| (u.clone(), k))
            })
            .collect();
        let mut secret = [0u8; 20];
        rng.fill(&mut secret);
        let mut locals = vec![config.listen];
        let pool: &[SocketAddr] = match config.relay_ports {
            Some(_) => &[],
            None => &config.relays,
        };
        locals.extend(pool.iter().copied());
        let pool_free = pool.iter().rev().copied().collect();
        Server {
            keys,
            secret: IntegrityKey::from_bytes(&secret),
            epoch: now,
            local_set: locals.iter().copied().collect(),
            listen_addrs_seen: Vec::new(),
            locals,
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            pool_free,
            spare: Vec::new(),
            binding: Vec::new(),
            failed: VecDeque::new(),
            pending: Vec::new(),
            attempt: 0,
            reservations: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            by_client: HashMap::new(),
            transport: Transport::Udp,
            stream_transmits: VecDeque::new(),
            by_relay: HashMap::new(),
            timers: BinaryHeap::new(),
            timers_cap: 1024,
            transmits: VecDeque::new(),
            stats: ServerStats::default(),
            throttle: AuthThrottle::new(throttle::MAX_SOURCES),
            auth_secret: config
                .auth_secret
                .as_ref()
                .map(|k| IntegrityKey::from_bytes(k.as_bytes())),
            unix_at_epoch: None,
            config,
        }
    }

    /// Tells the server the wall-clock time (`unix_secs` since 1970 at
    /// `now`), which the expiry of ephemeral usernames is compared with
    /// ([`Config::auth_secret`]); a sans-IO machine reads no clock,
    /// so the runtime calls this once at start (monotonic time carries it
    /// on). Without it, every ephemeral username is refused.
    pub fn set_unix_time(&mut self, now: Instant, unix_secs: u64) {
        let since = now.saturating_duration_since(self.epoch).as_secs();
        self.unix_at_epoch = Some(unix_secs.saturating_sub(since));
    }

    /// The key of `username`: a configured user's, or one of the ephemeral
    /// credentials of the TURN REST API (draft-uberti-behave-turn-rest-00
    /// §2.2: password = base64(HMAC-SHA1(secret, username))) while its
    /// expiry has not passed. `Err(true)` for an expired ephemeral name.
    fn user_key(&self, now: Instant, username: &str) -> Result<IntegrityKey, bool> {
        if let Some(k) = self.keys.get(username) {
            return Ok(k.clone());
        }
        let Some(secret) = &self.auth_secret else {
            return Err(false);
        };
        let Some(expiry) = rest_expiry(username) else {
            return Err(false);
        };
        let Some(at_epoch) = self.unix_at_epoch else {
            tracing::warn!("ephemeral username refused: the server was not given the wall clock");
            return Err(true);
        };
        let unix_now = at_epoch + now.saturating_duration_since(self.epoch).as_secs();
        if expiry <= unix_now {
            tracing::debug!(username, expiry, unix_now, "expired ephemeral username");
            return Err(true);
        }
        let password = base64(&secret.hmac_sha1(username.as_bytes()));
        IntegrityKey::long_term(
            username,
            &self.config.realm,
            &password,
            PasswordAlgorithm::Md5,
        )
        .map_err(|_| false)
    }

    /// Every address to bind: the listening one first, then the relay pool.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// How many allocations exist.
    pub fn allocations(&self) -> usize {
        self.by_client.len()
    }

    fn allocation(&self, client: &SocketAddr) -> Option<&Allocation> {
        let &slot = self.by_client.get(&(self.transport, *client))?;
        self.slots.get(slot)?.as_ref()
    }

    fn allocation_mut(&mut self, client: &SocketAddr) -> Option<&mut Allocation> {
        let &slot = self.by_client.get(&(self.transport, *client))?;
        self.slots.get_mut(slot)?.as_mut()
    }

    /// Arms a deadline for `what` of the allocation in `slot`.
    fn arm(&mut self, at: Instant, slot: usize, what: Timer) {
        let generation = self.generations.get(slot).copied().unwrap_or(0);
        self.timers.push(Reverse((at, slot, generation, what)));
        if self.timers.len() > self.timers_cap {
            self.rebuild_timers();
        }
    }

    /// Rebuilds the deadline heap from the live expiries (dropping the
    /// entries refreshes left behind), and sets the next rebuild at twice
    /// the live count.
    fn rebuild_timers(&mut self) {
        let mut v = Vec::new();
        for (slot, a) in self.slots.iter().enumerate() {
            let Some(a) = a else { continue };
            let g = a.generation;
            v.push(Reverse((a.expires, slot, g, Timer::Allocation)));
            for (&ip, &e) in &a.permissions {
                v.push(Reverse((e, slot, g, Timer::Permission(ip))));
            }
            for (&c, &(_, e)) in &a.channels {
                v.push(Reverse((e, slot, g, Timer::Channel(c))));
            }
        }
        self.timers_cap = (2 * v.len()).max(1024);
        self.timers = BinaryHeap::from(v);
    }

    // ANCHOR: nonce
    /// A stateless nonce bound to the client's 5-tuple: 8 hex digits of
    /// expiry (seconds since the server started) and 16 of HMAC over them,
    /// the client's transport address and the server's. A request replayed
    /// from another 5-tuple carries a nonce that is not that 5-tuple's, and
    /// gets 438 (RFC 8489 §9.2.4; RFC 8656 §9 ties an allocation to its
    /// 5-tuple): a captured Allocate cannot make allocations for the
    /// eavesdropper, nor one whose client is a spoofed victim address.
    fn nonce(&self, now: Instant, client: SocketAddr, server: SocketAddr) -> String {
        let expiry = (now + NONCE_LIFETIME).duration_since(self.epoch).as_secs();
        // The server would have to run 136 years to overflow 32 bits.
        let stamp = format!("{:08x}", expiry.min(u64::from(u32::MAX)));
        let mac = self.nonce_mac(&stamp, client, server);
        let mut s = stamp;
        for b in mac {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// The nonce's 64-bit MAC: HMAC-SHA1 (the server secret) over the
    /// stamp and both transport addresses.
    fn nonce_mac(&self, stamp: &str, client: SocketAddr, server: SocketAddr) -> [u8; 8] {
        let mut input = [0u8; 8 + 2 * 19];
        let (head, addrs) = input.split_at_mut(8);
        // The stamp is 8 ASCII hex digits (checked before this is called).
        let len = stamp.len().min(8);
        head[..len].copy_from_slice(&stamp.as_bytes()[..len]);
        addrs[..19].copy_from_slice(&address_bytes(client));
        addrs[19..].copy_from_slice(&address_bytes(server));
        // The transport is part of the 5-tuple: a nonce given over UDP is
        // not valid over TCP.
        if self.transport == Transport::Tcp {
            addrs[0] |= 0x80;
        }
        let full = self.secret.hmac_sha1(&input);
        let mut mac = [0u8; 8];
        mac.copy_from_slice(&full[..8]);
        mac
    }

    /// `Some(true)` valid, `Some(false)` ours but expired, `None` forged or
    /// issued to another 5-tuple.
    fn check_nonce(
        &self,
        now: Instant,
        nonce: &str,
        client: SocketAddr,
        server: SocketAddr,
    ) -> Option<bool> {
        if nonce.len() != 24 || !nonce.is_ascii() {
            return None;
        }
        let (stamp, mac) = nonce.split_at(8);
        let mut got = [0u8; 8];
        for (i, b) in got.iter_mut().enumerate() {
            *b = u8::from_str_radix(mac.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let want = self.nonce_mac(stamp, client, server);
        if !constant_time_eq(&got, &want) {
            return None;
        }
        let expiry = u64::from_str_radix(stamp, 16).ok()?;
        Some(now.duration_since(self.epoch).as_secs() < expiry)
    }
    // ANCHOR_END: nonce

    /// Whether the server refuses to relay to `peer` (403, RFC 8656 §9.1;
    /// the policy is in [`peer_policy`]).
    fn forbidden_peer(&self, peer: SocketAddr) -> bool {
        let ip = peer.ip();
        // Never our listening socket (that would loop relayed data into
        // the client side), nor port 0, whatever the lists say.
        let listening = peer == self.config.listen || self.listen_addrs_seen.contains(&peer);
        if listening || peer.port() == 0 {
            return true;
        }
        // Relay to relay: another allocation's relayed address on this very
        // server is a peer like any other (two clients that both use
        // relay-only policies on one server meet this way; coturn allows
        // it). The datagram leaves one relay socket and enters the other
        // through the host's stack, where that allocation's permissions
        // apply. It comes before the own-IP and host-IP denials, which are
        // there to keep other services of this host out of reach.
        if self.by_relay.contains_key(&peer) {
            return false;
        }
        // With relay ports on demand, any port of the range on the relay
        // IP counts as a relayed address of this server: a server run on
        // several threads has one `Server` per thread, each knowing only
        // its own relays, and relay to relay must work across them. (The
        // range is the relays' by configuration; coturn, which denies only
        // loopback, relays to any port of its own public IP.)
        if let Some(r) = self.config.relay_ports
            && r.ip == ip
            && (r.min..=r.max).contains(&peer.port())
        {
            return false;
        }
        if self.local_set.contains(&peer) {
            return true;
        }
        let c = &self.config;
        if c.allowed_peer_ips.iter().any(|r| r.contains(ip)) {
            return false;
        }
        if c.denied_peer_ips.iter().any(|r| r.contains(ip)) {
            return true;
        }
        if c.allow_loopback_peers {
            return false;
        }
        // An IPv4-mapped address counts as the IPv4 address it carries.
        let v4 = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let relay_ip = self.config.relay_ports.map(|r| r.ip);
        v4.is_loopback()
            || self.locals.iter().any(|l| l.ip() == ip || l.ip() == v4)
            || relay_ip.is_some_and(|r| r == ip || r == v4)
    }

    fn send(&mut self, source: SocketAddr, destination: SocketAddr, contents: Vec<u8>) {
        let queue = match self.transport {
            Transport::Udp => &mut self.transmits,
            Transport::Tcp => &mut self.stream_transmits,
        };
        queue.push_back(Transmit {
            source: Some(source),
            destination,
            contents,
        });
    }

    /// Handles one datagram, queuing what it sends as [`Transmit`]s.
    pub fn handle(&mut self, now: Instant, d: Receive<'_>) {
        let mut out = Vec::new();
        if let Some(r) = self.handle_relay(now, d, &mut out) {
            self.send(r.source, r.destination, out);
        }
    }

    /// Handles one message a client sent over TCP (RFC 8656 §3.1): a STUN
    /// message or a ChannelData message, cut from the stream by
    /// [`super::stream::Framer`]; `source` is the client's address and
    /// `destination` the server's on that connection. Answers, and data
    /// from peers for an allocation made this way, come out of
    /// [`Server::poll_stream_transmit`] for that connection; data to peers
    /// leaves from the relayed address like any other (the relay is UDP).
    pub fn handle_stream(&mut self, now: Instant, d: Receive<'_>) {
        self.transport = Transport::Tcp;
        let mut out = Vec::new();
        let route = if channel_data::is_channel_data_rfc5766(d.contents) {
            self.channel_data_from_client(now, d, &mut out)
        } else {
            self.stun_from_client(now, d, &mut out)
        };
        self.transport = Transport::Udp;
        if let Some(r) = route {
            self.send(r.source, r.destination, out);
        }
    }

    /// The next message for a client over TCP: `destination` is the client,
    /// `source` the server's address on that connection. Drain until `None`.
    pub fn poll_stream_transmit(&mut self) -> Option<Transmit> {
        self.stream_transmits.pop_front()
    }

    /// The TCP connection from `client` has closed: its allocation, if any,
    /// is deleted at once, as coturn does. An allocation belongs to its
    /// 5-tuple (RFC 8656 §3.2), and a closed connection's 5-tuple carries
    /// nothing any more: no Refresh could reach it, no data its client.
    pub fn stream_closed(&mut self, client: SocketAddr) {
        self.remove((Transport::Tcp, client));
    }

    /// Whether the client at `client` over `transport` has an allocation.
    pub fn has_allocation(&self, transport: Transport, client: SocketAddr) -> bool {
        self.by_client.contains_key(&(transport, client))
    }

    /// Handles one datagram like [`Server::handle`], except that a datagram
    /// to relay (ChannelData or a Send indication from a client, a datagram
    /// from a peer) is not queued: it is written into `out` (cleared first)
    /// and its route returned, for the caller to send at once. Nothing on
    /// this path allocates (once `out` has grown to the largest datagram).
    /// Everything else (requests, errors) is queued for
    /// [`Machine::poll_transmit`] as usual, and `None` returned.
    pub fn handle_relay(
        &mut self,
        now: Instant,
        d: Receive<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Route> {
        tracing::trace!(from = %d.source, to = %d.destination, len = d.contents.len(), "datagram");
        out.clear();
        if !self.is_listening(d.destination) {
            return self.datagram_from_peer(now, d, out);
        }
        if d.destination != self.config.listen
            && !self.listen_addrs_seen.contains(&d.destination)
            && self.listen_addrs_seen.len() < MAX_LISTEN_ADDRS_SEEN
        {
            self.listen_addrs_seen.push(d.destination);
        }
        if channel_data::is_channel_data_rfc5766(d.contents) {
            return self.channel_data_from_client(now, d, out);
        }
        self.stun_from_client(now, d, out)
    }

    /// Whether a datagram sent to `local` came to the listening address: it
    /// is `listen`, or any address on its port when `listen` is a wildcard
    /// (the runtime gives the real local address of each datagram; no relay
    /// can share that port, the wildcard socket holds it on every address).
    fn is_listening(&self, local: SocketAddr) -> bool {
        let listen = self.config.listen;
        local == listen || (listen.ip().is_unspecified() && local.port() == listen.port())
    }

    fn stun_from_client(
        &mut self,
        now: Instant,
        d: Receive<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Route> {
        let Ok(msg) = Message::parse(d.contents) else {
            self.stats.dropped += 1;
            return None;
        };
        // RFC 8489 §7.3: a bad FINGERPRINT means "not STUN": discard silently.
        if msg.verify_fingerprint().is_err() {
            self.stats.dropped += 1;
            return None;
        }
        if msg.validate().is_err() {
            // A request with a malformed attribute gets a 400 (RFC 8489 §6.3.1).
            if msg.class() == Class::Request {
                self.error(d, &msg, error_code::BAD_REQUEST, None, None, now);
            } else {
                self.stats.dropped += 1;
            }
            return None;
        }
        match (msg.class(), msg.method()) {
            (Class::Indication, Method::SEND) => return self.send_indication(now, d, &msg, out),
            (Class::Request, Method::BINDING) => self.binding(d, &msg),
            (Class::Request, m)
                if m == Method::ALLOCATE
                    || m == Method::REFRESH
                    || m == Method::CREATE_PERMISSION
                    || m == Method::CHANNEL_BIND =>
            {
                self.turn_request(now, d, &msg)
            }
            (Class::Request, _) => self.error(d, &msg, error_code::BAD_REQUEST, None, None, now),
            _ => self.stats.dropped += 1,
        }
        None
    }

    fn binding(&mut self, d: Receive<'_>, msg: &Message<'_>) {
        let mut out = Vec::with_capacity(64);
        let mut enc =
            MessageEncoder::new(&mut out, MessageType::BINDING_SUCCESS, msg.transaction_id());
        enc.attribute(&Attribute::XorMappedAddress(d.source));
        fingerprint_if_asked(&mut enc, msg);
        if enc.finish().is_ok() {
            self.send(d.destination, d.source, out);
        }
    }

    /// RFC 8489 §9.2.4: the checks every TURN request goes through.
    fn authenticate(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>) -> Option<Auth> {
        if !msg.has_integrity() {
            self.error(d, msg, error_code::UNAUTHENTICATED, None, None, now);
            return None;
        }
        let (
            Ok(Some(username)),
            Ok(Some(Attribute::Realm(realm))),
            Ok(Some(Attribute::Nonce(nonce))),
        ) = (
            msg.username(),
            msg.attribute(attr::REALM),
            msg.attribute(attr::NONCE),
        )
        else {
            self.error(d, msg, error_code::BAD_REQUEST, None, None, now);
            return None;
        };
        // A source that keeps failing gets nothing for a while (password
        // guessing), except on its own allocation's 5-tuple with that
        // allocation's user: a NAT shared with a guesser cannot cut a
        // running allocation off.
        if self.throttle.blocked(now, d.source.ip())
            && self
                .allocation(&d.source)
                .is_none_or(|a| a.username != username)
        {
            self.stats.dropped += 1;
            self.stats.throttled += 1;
            tracing::debug!(from = %d.source, "request from a throttled source dropped");
            return None;
        }
        match self.check_nonce(now, nonce, d.source, d.destination) {
            Some(true) => {}
            Some(false) => {
                self.error(d, msg, error_code::STALE_NONCE, None, None, now);
                return None;
            }
            None => {
                // A nonce we never issued: as stale, so the client retries with ours.
                self.error(d, msg, error_code::STALE_NONCE, None, None, now);
                return None;
            }
        }
        let key = match self.user_key(now, username) {
            Ok(k) if realm == self.config.realm => k,
            Err(true) => {
                // An expired ephemeral name is no guess: 401 without a
                // strike, and the client's application fetches new ones.
                self.error(d, msg, error_code::UNAUTHENTICATED, None, None, now);
                return None;
            }
            _ => {
                self.auth_failure(now, d);
                self.error(d, msg, error_code::UNAUTHENTICATED, None, None, now);
                return None;
            }
        };
        if msg.verify_integrity(&key).is_err() {
            self.auth_failure(now, d);
            self.error(d, msg, error_code::UNAUTHENTICATED, None, None, now);
            return None;
        }
        Some(Auth {
            username: username.to_string(),
            key,
        })
    }

    /// Counts a failed authentication (a wrong key, user or realm with a
    /// valid nonce) against the source.
    fn auth_failure(&mut self, now: Instant, d: Receive<'_>) {
        if self.throttle.failure(now, d.source.ip()) {
            tracing::info!(from = %d.source, "authentication keeps failing: source ignored for a while");
        }
    }

    fn turn_request(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>) {
        let Some(auth) = self.authenticate(now, d, msg) else {
            return;
        };
        let mut unknown: Vec<u16> = msg
            .unknown_comprehension_required(|t| {
                is_turn_attribute(t)
                    || matches!(
                        t,
                        attr::USERNAME
                            | attr::REALM
                            | attr::NONCE
                            | attr::MESSAGE_INTEGRITY
                            | attr::MESSAGE_INTEGRITY_SHA256
                            | attr::XOR_MAPPED_ADDRESS
                    )
            })
            .collect();
        unknown.dedup();
        unknown.truncate(16);
        if !unknown.is_empty() {
            self.error(
                d,
                msg,
                error_code::UNKNOWN_ATTRIBUTE,
                Some(&unknown),
                Some(&auth.key),
                now,
            );
            return;
        }
        // RFC 8656 §5: requests on an allocation must use its username.
        if msg.method() != Method::ALLOCATE {
            match self.allocation(&d.source) {
                None => {
                    self.error(
                        d,
                        msg,
                        error_code::ALLOCATION_MISMATCH,
                        None,
                        Some(&auth.key),
                        now,
                    );
                    return;
                }
                Some(a) if a.username != auth.username => {
                    self.error(d, msg, WRONG_CREDENTIALS, None, Some(&auth.key), now);
                    return;
                }
                Some(_) => {}
            }
        }
        let m = msg.method();
        if m == Method::ALLOCATE {
            self.allocate(now, d, msg, auth);
        } else if m == Method::REFRESH {
            self.refresh(now, d, msg, auth);
        } else if m == Method::CREATE_PERMISSION {
            self.create_permission(now, d, msg, auth);
        } else {
            self.channel_bind(now, d, msg, auth);
        }
    }

    fn allocate(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>, auth: Auth) {
        let key = Some(&auth.key);
        if let Some(a) = self.allocation(&d.source) {
            // RFC 8656 §7.2 step 2: a retransmitted Allocate gets the same answer.
            if a.allocate_tid == msg.transaction_id() {
                let r = a.allocate_response.clone();
                self.send(d.destination, d.source, r);
            } else {
                self.error(d, msg, error_code::ALLOCATION_MISMATCH, None, key, now);
            }
            return;
        }
        if self
            .pending
            .iter()
            .any(|p| p.client == d.source && p.transport == self.transport)
        {
            // A retransmission while its relay socket is being bound: the
            // answer will come once it is.
            return;
        }
        match turn_attr::get(msg, attr::REQUESTED_TRANSPORT) {
            Ok(Some(TurnAttribute::RequestedTransport(PROTOCOL_UDP))) => {}
            Ok(Some(_)) => return self.error(d, msg, UNSUPPORTED_TRANSPORT, None, key, now),
            _ => return self.error(d, msg, error_code::BAD_REQUEST, None, key, now),
        }
        let even_port = match turn_attr::get(msg, attr::EVEN_PORT) {
            Ok(Some(TurnAttribute::EvenPort { reserve })) => Some(reserve),
            Ok(None) => None,
            _ => return self.error(d, msg, error_code::BAD_REQUEST, None, key, now),
        };
        let token = match turn_attr::get(msg, attr::RESERVATION_TOKEN) {
            Ok(Some(TurnAttribute::ReservationToken(t))) => Some(t),
            Ok(None) => None,
            _ => return self.error(d, msg, error_code::BAD_REQUEST, None, key, now),
        };
        // RFC 8656 §7.2: RESERVATION-TOKEN with EVEN-PORT or
        // REQUESTED-ADDRESS-FAMILY is a 400.
        if token.is_some()
            && (even_port.is_some() || msg.get(attr::REQUESTED_ADDRESS_FAMILY).is_some())
        {
            return self.error(d, msg, error_code::BAD_REQUEST, None, key, now);
        }
        if let Ok(Some(TurnAttribute::RequestedAddressFamily(f))) =
            turn_attr::get(msg, attr::REQUESTED_ADDRESS_FAMILY)
        {
            if f != turn_attr::AddressFamily::of(self.config.listen) {
                return self.error(d, msg, FAMILY_NOT_SUPPORTED, None, key, now);
            }
        }
        // RFC 8656 §7.2 step 7: 486 past the user's quota; the total cap
        // answers 508 (the server, not the user, is full).
        if self.config.quota_per_user > 0 {
            let used = self
                .slots
                .iter()
                .flatten()
                .filter(|a| a.username == auth.username)
                .count();
            if used >= self.config.quota_per_user {
                return self.error(d, msg, QUOTA_REACHED, None, key, now);
            }
        }
        if self.config.total_quota > 0 && self.by_client.len() >= self.config.total_quota {
            return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
        }
        let (relay, reserved) = if let Some(token) = token {
            // RFC 8656 §7.2: the address reserved under this token, if the
            // token is known and has not expired; else 508.
            let i = self
                .reservations
                .iter()
                .position(|&(e, t, _)| now < e && constant_time_eq(&t, &token));
            match i.and_then(|i| self.reservations.remove(i)) {
                Some((_, _, relay)) => (relay, None),
                None => return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now),
            }
        } else {
            let even = even_port.is_some();
            let reserve = even_port == Some(true);
            if reserve && self.reservations.len() >= MAX_RESERVATIONS {
                return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
            }
            match self.pick_relay(even, reserve) {
                Pick::Ready(relay, reserved) => (relay, reserved),
                Pick::Full => return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now),
                Pick::Bind(addrs) => {
                    if self.attempt >= MAX_BIND_TRIES || self.pending.len() >= MAX_PENDING {
                        return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
                    }
                    for &a in &addrs {
                        self.binding.push(a);
                        self.events.push_back(Event::BindRelay(a));
                    }
                    self.pending.push(Pending {
                        transport: self.transport,
                        client: d.source,
                        server: d.destination,
                        request: d.contents.to_vec(),
                        asked: addrs.clone(),
                        waiting: addrs,
                        tries: self.attempt + 1,
                    });
                    return;
                }
            }
        };
        let lifetime = granted_lifetime(msg);
        let mut token = None;
        if let Some(next) = reserved {
            let mut t = [0u8; 8];
            self.rng.fill(&mut t);
            token = Some(t);
            self.reservations
                .push_back((now + RESERVATION_LIFETIME, t, next));
        }
        let mut out = Vec::with_capacity(128);
        let mut enc = self.success(&mut out, msg);
        TurnAttribute::XorRelayedAddress(relay).emit(&mut enc);
        TurnAttribute::Lifetime(lifetime.as_secs() as u32).emit(&mut enc);
        if let Some(t) = token {
            // RFC 8656 §7.2: the token of the reserved next port (§18.10).
            TurnAttribute::ReservationToken(t).emit(&mut enc);
        }
        enc.attribute(&Attribute::XorMappedAddress(d.source));
        enc.message_integrity(&auth.key);
        fingerprint_if_asked(&mut enc, msg);
        if enc.finish().is_err() {
            self.release_relay(relay);
            return;
        }
        tracing::debug!(client = %d.source, %relay, user = %auth.username, ?reserved, "TURN allocation");
        self.stats.allocations += 1;
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                self.slots.len() - 1
            }
        };
        self.generations[slot] += 1;
        let generation = self.generations[slot];
        self.by_client.insert((self.transport, d.source), slot);
        self.by_relay.insert(relay, slot);
        self.slots[slot] = Some(Allocation {
            generation,
            transport: self.transport,
            client: d.source,
            server: d.destination,
            relay,
            username: auth.username,
            expires: now + lifetime,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            channel_of: HashMap::new(),
            allocate_tid: msg.transaction_id(),
            allocate_response: out.clone(),
        });
        self.arm(now + lifetime, slot, Timer::Allocation);
        self.send(d.destination, d.source, out);
    }

    /// A relayed address for a new allocation (RFC 8656 §7.2): even when
    /// EVEN-PORT asks, with the next port free to reserve when its R bit
    /// does. From the pool, or (on-demand ports) a socket bound already and
    /// unused, else new ports of the range to bind first, tried from a
    /// random point of the range (RFC 6056 §3.1's advice against guessable
    /// ports).
    fn pick_relay(&mut self, even: bool, reserve: bool) -> Pick {
        let next = |a: SocketAddr| a.port().checked_add(1).map(|p| SocketAddr::new(a.ip(), p));
        let fits = |a: &SocketAddr| !even || a.port() % 2 == 0;
        let Some(range) = self.config.relay_ports else {
            let free = &self.pool_free;
            let i = free.iter().rposition(|a| {
                fits(a) && (!reserve || next(*a).is_some_and(|n| free.contains(&n)))
            });
            let Some(relay) = i.map(|i| self.pool_free.remove(i)) else {
                return Pick::Full;
            };
            let reserved = if reserve { next(relay) } else { None };
            if let Some(n) = reserved {
                self.pool_free.retain(|&a| a != n);
            }
            return Pick::Ready(relay, reserved);
        };
        let spare = &self.spare;
        if let Some(i) = spare
            .iter()
            .position(|a| fits(a) && (!reserve || next(*a).is_some_and(|n| spare.contains(&n))))
        {
            let relay = self.spare.remove(i);
            let reserved = if reserve { next(relay) } else { None };
            if let Some(n) = reserved {
                self.spare.retain(|&a| a != n);
            }
            return Pick::Ready(relay, reserved);
        }
        let (min, max) = (range.min.min(range.max), range.max);
        let n = u32::from(max - min) + 1;
        let start = self.rng.random_range(0..n);
        for k in 0..n {
            let Ok(port) = u16::try_from(u32::from(min) + (start + k) % n) else {
                continue;
            };
            let a = SocketAddr::new(range.ip, port);
            if !fits(&a) || !self.port_free(a) {
                continue;
            }
            if !reserve {
                return Pick::Bind(vec![a]);
            }
            match next(a) {
                Some(b) if b.port() <= max && self.port_free(b) => return Pick::Bind(vec![a, b]),
                _ => continue,
            }
        }
        Pick::Full
    }

    /// Whether an on-demand relay port may be bound: in no allocation, no
    /// reservation, not being bound, not failed lately, not a spare.
    fn port_free(&self, a: SocketAddr) -> bool {
        !self.by_relay.contains_key(&a)
            && !self.binding.contains(&a)
            && !self.spare.contains(&a)
            && !self.failed.contains(&a)
            && !self.reservations.iter().any(|&(_, _, r)| r == a)
            && a != self.config.listen
    }

    /// A relayed address no allocation or reservation uses any more: back
    /// to the pool, or its socket closed.
    fn release_relay(&mut self, relay: SocketAddr) {
        if self.config.relay_ports.is_some() {
            self.events.push_back(Event::CloseRelay(relay));
        } else {
            self.pool_free.push(relay);
        }
    }

    /// The caller's answer to [`Event::BindRelay`]: whether the
    /// socket on `relay` is bound. The Allocates waiting for it go on (a
    /// failed port is skipped and another tried, 8 times at
    /// most, then 508).
    pub fn relay_bound(&mut self, now: Instant, relay: SocketAddr, bound: bool) {
        let Some(i) = self.binding.iter().position(|&a| a == relay) else {
            // Not asked (or answered twice): a bound socket we do not want.
            if bound {
                self.events.push_back(Event::CloseRelay(relay));
            }
            return;
        };
        self.binding.swap_remove(i);
        if bound {
            self.spare.push(relay);
        } else {
            tracing::debug!(%relay, "relay port could not be bound; trying another");
            if self.failed.len() >= MAX_FAILED_PORTS {
                self.failed.pop_front();
            }
            self.failed.push_back(relay);
        }
        for p in &mut self.pending {
            p.waiting.retain(|&a| a != relay);
        }
        let mut k = 0;
        while k < self.pending.len() {
            if !self.pending[k].waiting.is_empty() {
                k += 1;
                continue;
            }
            let p = self.pending.swap_remove(k);
            self.attempt = p.tries;
            let d = Receive {
                source: p.client,
                destination: p.server,
                contents: &p.request,
            };
            match p.transport {
                Transport::Udp => self.handle(now, d),
                Transport::Tcp => self.handle_stream(now, d),
            }
            self.attempt = 0;
        }
        // Spares nobody waits for (the other half of a failed pair, say)
        // are closed: a socket is held only for an allocation or a
        // reservation.
        let pending = &self.pending;
        let (keep, close): (Vec<_>, Vec<_>) = self
            .spare
            .iter()
            .partition(|a| pending.iter().any(|p| p.asked.contains(a)));
        self.spare = keep;
        self.events.extend(close.into_iter().map(Event::CloseRelay));
    }

    fn refresh(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>, auth: Auth) {
        let requested = turn_attr::lifetime(msg);
        let lifetime = if requested == Some(Duration::ZERO) {
            self.remove((self.transport, d.source));
            Duration::ZERO
        } else {
            let l = granted_lifetime(msg);
            if let Some(a) = self.allocation_mut(&d.source) {
                a.expires = now + l;
            }
            if let Some(&slot) = self.by_client.get(&(self.transport, d.source)) {
                self.arm(now + l, slot, Timer::Allocation);
            }
            l
        };
        let mut out = Vec::with_capacity(64);
        let mut enc = self.success(&mut out, msg);
        TurnAttribute::Lifetime(lifetime.as_secs() as u32).emit(&mut enc);
        enc.message_integrity(&auth.key);
        fingerprint_if_asked(&mut enc, msg);
        if enc.finish().is_ok() {
            self.send(d.destination, d.source, out);
        }
    }

    /// Checks a peer address for CreatePermission and ChannelBind: 403 or
    /// 443, or fine.
    fn check_peer(&self, a: &Allocation, peer: SocketAddr) -> Result<(), u16> {
        if self.forbidden_peer(peer) {
            return Err(error_code::FORBIDDEN);
        }
        if peer.is_ipv4() != a.relay.is_ipv4() {
            return Err(PEER_FAMILY_MISMATCH);
        }
        Ok(())
    }

    fn create_permission(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>, auth: Auth) {
        let key = Some(&auth.key);
        let peers = match turn_attr::peer_addresses(msg) {
            Ok(p) if !p.is_empty() => p,
            _ => return self.error(d, msg, error_code::BAD_REQUEST, None, key, now),
        };
        let Some(a) = self.allocation(&d.source) else {
            return;
        };
        // RFC 8656 §9.2: all or nothing.
        for &p in &peers {
            if let Err(code) = self.check_peer(a, p) {
                return self.error(d, msg, code, None, key, now);
            }
        }
        let Some(&slot) = self.by_client.get(&(self.transport, d.source)) else {
            return;
        };
        for p in peers {
            let Some(a) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                return;
            };
            if a.permissions.len() >= MAX_PER_ALLOCATION && !a.permissions.contains_key(&p.ip()) {
                return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
            }
            a.permissions.insert(p.ip(), now + PERMISSION_LIFETIME);
            self.arm(now + PERMISSION_LIFETIME, slot, Timer::Permission(p.ip()));
        }
        self.empty_success(d, msg, &auth.key);
    }

    fn channel_bind(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>, auth: Auth) {
        let key = Some(&auth.key);
        let (Some(channel), Some(peer)) =
            (turn_attr::channel_number(msg), turn_attr::peer_address(msg))
        else {
            return self.error(d, msg, error_code::BAD_REQUEST, None, key, now);
        };
        // RFC 8656 §12 narrows channels to 0x4000-0x4FFF; RFC 5766 clients
        // (coturn's own test client) still bind up to 0x7FFF, so accept those.
        if !is_valid_channel_rfc5766(channel) {
            tracing::debug!(channel, "ChannelBind outside 0x4000-0x7FFF");
            return self.error(d, msg, error_code::BAD_REQUEST, None, key, now);
        }
        let Some(&slot) = self.by_client.get(&(self.transport, d.source)) else {
            return;
        };
        let Some(a) = self.slots.get(slot).and_then(Option::as_ref) else {
            return;
        };
        if let Err(code) = self.check_peer(a, peer) {
            return self.error(d, msg, code, None, key, now);
        }
        // RFC 8656 §12.2: a channel is bound to one peer and a peer to one
        // channel; rebinding the same pair refreshes it.
        let bound_peer = a.channels.get(&channel).map(|&(p, _)| p);
        let bound_channel = a.channel_of.get(&peer).copied();
        let clash = match (bound_peer, bound_channel) {
            (None, None) => false,
            (Some(p), Some(c)) => p != peer || c != channel,
            _ => true,
        };
        if clash {
            return self.error(d, msg, error_code::BAD_REQUEST, None, key, now);
        }
        if bound_peer.is_none() && a.channels.len() >= MAX_PER_ALLOCATION {
            return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
        }
        let Some(a) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        a.channels.insert(channel, (peer, now + CHANNEL_LIFETIME));
        a.channel_of.insert(peer, channel);
        a.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        self.arm(now + CHANNEL_LIFETIME, slot, Timer::Channel(channel));
        self.arm(
            now + PERMISSION_LIFETIME,
            slot,
            Timer::Permission(peer.ip()),
        );
        self.empty_success(d, msg, &auth.key);
    }

    fn success<'o>(&self, out: &'o mut Vec<u8>, msg: &Message<'_>) -> MessageEncoder<'o> {
        let mut enc = MessageEncoder::new(
            out,
            MessageType::new(Class::Success, msg.method()),
            msg.transaction_id(),
        );
        if let Some(s) = &self.config.software {
            enc.attribute(&Attribute::Software(s));
        }
        enc
    }

    fn empty_success(&mut self, d: Receive<'_>, msg: &Message<'_>, key: &IntegrityKey) {
        let mut out = Vec::with_capacity(64);
        let mut enc = self.success(&mut out, msg);
        enc.message_integrity(key);
        fingerprint_if_asked(&mut enc, msg);
        if enc.finish().is_ok() {
            self.send(d.destination, d.source, out);
        }
    }

    /// An error response; 401 and 438 carry REALM and NONCE (RFC 8489
    /// §9.2.4), others MESSAGE-INTEGRITY when the key is known.
    fn error(
        &mut self,
        d: Receive<'_>,
        msg: &Message<'_>,
        code: u16,
        unknown: Option<&[u16]>,
        key: Option<&IntegrityKey>,
        now: Instant,
    ) {
        let mut out = Vec::with_capacity(128);
        let mut list = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Error, msg.method()),
            msg.transaction_id(),
        );
        enc.attribute(&Attribute::ErrorCode(ErrorCode {
            code,
            reason: error_code::reason(code),
        }));
        if let Some(types) = unknown {
            attributes::emit_unknown_attributes(types, &mut list);
            enc.raw_attribute(attr::UNKNOWN_ATTRIBUTES, &list);
        }
        if code == error_code::UNAUTHENTICATED || code == error_code::STALE_NONCE {
            let nonce = self.nonce(now, d.source, d.destination);
            enc.attribute(&Attribute::Realm(&self.config.realm));
            enc.attribute(&Attribute::Nonce(&nonce));
        }
        if let Some(s) = &self.config.software {
            enc.attribute(&Attribute::Software(s));
        }
        if let Some(k) = key {
            if code != error_code::UNAUTHENTICATED && code != error_code::STALE_NONCE {
                enc.message_integrity(k);
            }
        }
        fingerprint_if_asked(&mut enc, msg);
        if enc.finish().is_err() {
            return;
        }
        tracing::debug!(client = %d.source, code, "TURN error response");
        self.stats.errors += 1;
        self.send(d.destination, d.source, out);
    }

    fn permitted(a: &Allocation, now: Instant, ip: IpAddr) -> bool {
        a.permissions.get(&ip).is_some_and(|&e| now < e)
    }

    /// RFC 8656 §11.2: a Send indication from a client with an allocation,
    /// to a peer with a permission, leaves the relay as plain UDP.
    fn send_indication(
        &mut self,
        now: Instant,
        d: Receive<'_>,
        msg: &Message<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Route> {
        let (Some(peer), Some(data)) = (turn_attr::peer_address(msg), turn_attr::data(msg)) else {
            self.stats.dropped += 1;
            return None;
        };
        let Some(a) = self.allocation(&d.source) else {
            self.stats.dropped += 1;
            return None;
        };
        if !Self::permitted(a, now, peer.ip()) || self.forbidden_peer(peer) {
            self.stats.dropped += 1;
            return None;
        }
        let relay = a.relay;
        self.stats.to_peer += 1;
        out.extend_from_slice(data);
        Some(Route {
            source: relay,
            destination: peer,
        })
    }

    /// RFC 8656 §12.6: ChannelData on a bound channel goes to its peer.
    fn channel_data_from_client(
        &mut self,
        now: Instant,
        d: Receive<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Route> {
        let Ok(cd) = ChannelData::parse_rfc5766(d.contents) else {
            self.stats.dropped += 1;
            tracing::debug!(from = %d.source, "malformed ChannelData dropped");
            return None;
        };
        let Some(a) = self.allocation(&d.source) else {
            self.stats.dropped += 1;
            tracing::debug!(from = %d.source, "ChannelData without allocation dropped");
            return None;
        };
        let Some(&(peer, exp)) = a.channels.get(&cd.channel) else {
            self.stats.dropped += 1;
            tracing::debug!(from = %d.source, channel = cd.channel, "ChannelData on an unbound channel dropped");
            return None;
        };
        if now >= exp || !Self::permitted(a, now, peer.ip()) {
            self.stats.dropped += 1;
            return None;
        }
        let relay = a.relay;
        self.stats.to_peer += 1;
        tracing::trace!(client = %d.source, channel = cd.channel, %relay, %peer, len = cd.data.len(), "ChannelData relayed to peer");
        out.extend_from_slice(cd.data);
        Some(Route {
            source: relay,
            destination: peer,
        })
    }

    /// RFC 8656 §11.3 and §12.5: a datagram from a peer to a relayed address
    /// goes to the client as ChannelData if a channel is bound to the peer,
    /// else as a Data indication, and only with a permission.
    fn datagram_from_peer(
        &mut self,
        now: Instant,
        d: Receive<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Route> {
        let Some(a) = self
            .by_relay
            .get(&d.destination)
            .and_then(|&slot| self.slots.get(slot))
            .and_then(Option::as_ref)
        else {
            self.stats.dropped += 1;
            return None;
        };
        if !Self::permitted(a, now, d.source.ip()) {
            self.stats.dropped += 1;
            tracing::debug!(peer = %d.source, relay = %d.destination, "datagram from a peer without permission dropped");
            return None;
        }
        let (client, server, transport) = (a.client, a.server, a.transport);
        let channel = a
            .channel_of
            .get(&d.source)
            .copied()
            .filter(|c| a.channels.get(c).is_some_and(|&(_, e)| now < e));
        match channel {
            Some(channel) => {
                let cd = ChannelData {
                    channel,
                    data: d.contents,
                };
                // RFC 8656 §12.5: over TCP, padded to a multiple of 4.
                let written = match transport {
                    Transport::Udp => cd.emit(out),
                    Transport::Tcp => cd.emit_padded(out),
                };
                if written.is_err() {
                    self.stats.dropped += 1;
                    tracing::debug!(channel, "ChannelData to the client could not be written");
                    return None;
                }
            }
            None => {
                let mut tid = [0u8; 12];
                // Indication ids need only be unique enough to tell apart in
                // logs; derive them from the clock, not an RNG, to stay cheap.
                let t = now.duration_since(self.epoch).as_nanos().to_be_bytes();
                tid.copy_from_slice(&t[4..16]);
                let mut enc = MessageEncoder::new(
                    out,
                    MessageType::new(Class::Indication, Method::DATA),
                    TransactionId(tid),
                );
                TurnAttribute::XorPeerAddress(d.source).emit(&mut enc);
                TurnAttribute::Data(d.contents).emit(&mut enc);
                if enc.finish().is_err() {
                    self.stats.dropped += 1;
                    return None;
                }
            }
        }
        self.stats.to_client += 1;
        tracing::trace!(peer = %d.source, relay = %d.destination, %client, ?channel, len = d.contents.len(), "relayed to client");
        if transport == Transport::Tcp {
            // Not the UDP fast path: queued for the client's connection.
            self.stream_transmits.push_back(Transmit {
                source: Some(server),
                destination: client,
                contents: out.clone(),
            });
            return None;
        }
        Some(Route {
            source: server,
            destination: client,
        })
    }

    fn remove(&mut self, client: (Transport, SocketAddr)) {
        let Some(slot) = self.by_client.remove(&client) else {
            return;
        };
        if let Some(a) = self.slots.get_mut(slot).and_then(Option::take) {
            self.free.push(slot);
            self.by_relay.remove(&a.relay);
            self.release_relay(a.relay);
            tracing::debug!(client = %client.1, transport = ?client.0, relay = %a.relay, "TURN allocation released");
        }
    }

    /// Fires one due deadline: ends the allocation, permission or channel
    /// unless it was refreshed since (or is gone already).
    fn expire(&mut self, now: Instant, slot: usize, generation: u64, what: Timer) {
        let Some(a) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if a.generation != generation {
            return;
        }
        match what {
            Timer::Allocation => {
                if now >= a.expires {
                    let client = (a.transport, a.client);
                    self.remove(client);
                }
            }
            Timer::Permission(ip) => {
                if a.permissions.get(&ip).is_some_and(|&e| now >= e) {
                    // A deliberate departure from RFC 8656 §9 (permissions
                    // last 300 s unless refreshed), as coturn does: while a
                    // channel to a peer at this IP is bound, its permission
                    // lives as long as the channel. aioice refreshes its
                    // channel bindings and never its permissions, so a
                    // stock aiortc call through a strict server dies at
                    // exactly 300 s.
                    let channel_until = a
                        .channels
                        .values()
                        .filter(|(peer, e)| peer.ip() == ip && now < *e)
                        .map(|&(_, e)| e)
                        .max();
                    match channel_until {
                        Some(until) => {
                            a.permissions.insert(ip, until);
                            self.arm(until, slot, Timer::Permission(ip));
                        }
                        None => {
                            a.permissions.remove(&ip);
                        }
                    }
                }
            }
            Timer::Channel(c) => {
                if let Some(&(peer, e)) = a.channels.get(&c)
                    && now >= e
                {
                    a.channels.remove(&c);
                    a.channel_of.remove(&peer);
                }
            }
        }
    }
}

/// FINGERPRINT in a response when the request carried one. RFC 8489 §14.7
/// makes it optional; it tells STUN from other protocols on one port, so a
/// client that multiplexes (as ICE does, RFC 8445 §7; rtclab's TURN client
/// sends it) gets it back, and a bare request, the one an attacker forging
/// a victim's address sends, gets 8 bytes less.
fn fingerprint_if_asked(enc: &mut MessageEncoder<'_>, request: &Message<'_>) {
    if request.has_fingerprint() {
        enc.fingerprint();
    }
}

/// A transport address as bytes for the nonce MAC: the family, the IP's
/// octets (zero-filled to 16), the port; no two addresses give the same.
fn address_bytes(a: SocketAddr) -> [u8; 19] {
    let mut b = [0u8; 19];
    match a.ip() {
        IpAddr::V4(ip) => {
            b[0] = 4;
            b[1..5].copy_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            b[0] = 6;
            b[1..17].copy_from_slice(&ip.octets());
        }
    }
    b[17..].copy_from_slice(&a.port().to_be_bytes());
    b
}

/// The expiry of a TURN REST API username (draft-uberti-behave-turn-rest-00
/// §2.2): `EXPIRY:NAME` or a bare `EXPIRY`, and `NAME:EXPIRY` as coturn
/// also accepts; `None` when no part is a Unix time.
fn rest_expiry(username: &str) -> Option<u64> {
    let digits = |s: &str| {
        (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match username.split_once(':') {
        None => digits(username),
        Some((first, rest)) => {
            digits(first).or_else(|| digits(rest.rsplit(':').next().unwrap_or(rest)))
        }
    }
}

/// Standard base64 with padding (RFC 4648 §4), for REST API passwords.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for group in data.chunks(3) {
        let mut word = 0u32;
        for (i, &b) in group.iter().enumerate() {
            word |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= group.len() {
                let sextet = (word >> (18 - 6 * i)) & 63;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 8656 §7.2: the requested LIFETIME, capped at [`MAX_LIFETIME`], or the
/// default.
fn granted_lifetime(msg: &Message<'_>) -> Duration {
    turn_attr::lifetime(msg)
        .map(|l| l.min(MAX_LIFETIME))
        .unwrap_or(DEFAULT_LIFETIME)
}

impl Machine for Server {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        self.handle(now, datagram);
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation, what))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.expire(now, slot, generation, what);
        }
        // RFC 8656 §7.2: an unclaimed reservation ends after 30 s.
        while let Some(&(at, _, relay)) = self.reservations.front() {
            if at > now {
                break;
            }
            self.reservations.pop_front();
            tracing::debug!(%relay, "reservation expired");
            self.release_relay(relay);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The earliest deadline in the heap (possibly one a refresh made
    /// moot: the wake-up then finds nothing to do).
    fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, ..))| *at);
        let reservation = self.reservations.front().map(|&(at, ..)| at);
        match (timer, reservation) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::client::{self, Client};
    use rand::SeedableRng;

    const LISTEN: &str = "198.51.100.1:3478";
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(9);
    const CLIENT: &str = "203.0.113.5:40000";

    fn server(now: Instant, quota: usize, loopback: bool) -> Server {
        let relays = (0..4)
            .map(|i| SocketAddr::new("198.51.100.1".parse().unwrap(), 50000 + i))
            .collect();
        let mut c = Config::new(LISTEN.parse().unwrap(), relays, "rtclab");
        c.users.push(("alice".into(), "secret".into()));
        c.users.push(("bob".into(), "pw".into()));
        c.quota_per_user = quota;
        c.allow_loopback_peers = loopback;
        Server::new(c, now, StdRng::seed_from_u64(3))
    }

    /// Runs a client and the server against each other by hand until quiet.
    fn pump(s: &mut Server, c: &mut Client, from: SocketAddr, now: Instant) {
        let _ = pump_recording(s, c, from, now);
    }

    fn client(user: &str, pw: &str) -> Client {
        Client::new(
            client::Config::new(LISTEN.parse().unwrap(), user, pw),
            // A fresh seed per client: two clients with one seed would send
            // the same transaction ids (a retransmission, to the server).
            StdRng::seed_from_u64(SEED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)),
        )
    }

    fn allocate(
        s: &mut Server,
        user: &str,
        pw: &str,
        from: SocketAddr,
        now: Instant,
    ) -> (Client, Option<client::Event>) {
        let mut c = client(user, pw);
        c.allocate(now).unwrap();
        pump(s, &mut c, from, now);
        let e = c.poll_event();
        (c, e)
    }

    fn code(e: Option<client::Event>) -> u16 {
        match e {
            Some(client::Event::AllocationFailed(crate::turn::Error::ErrorResponse {
                code,
                ..
            }))
            | Some(client::Event::PermissionFailed {
                error: crate::turn::Error::ErrorResponse { code, .. },
                ..
            })
            | Some(client::Event::ChannelBindFailed {
                error: crate::turn::Error::ErrorResponse { code, .. },
                ..
            }) => code,
            e => panic!("expected an error response, got {e:?}"),
        }
    }

    #[test]
    fn allocation_permission_relay_both_ways() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (mut c, e) = allocate(&mut s, "alice", "secret", from, now);
        let Some(client::Event::Allocated {
            relayed, mapped, ..
        }) = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(mapped, Some(from));
        let peer: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        // A peer without permission is not relayed.
        s.handle_receive(
            now,
            Receive {
                source: peer,
                destination: relayed,
                contents: b"early",
            },
        );
        assert!(s.poll_transmit().is_none());
        c.send_to(now, peer, b"hello").unwrap();
        pump(&mut s, &mut c, from, now);
        // The data went to the peer from the relayed address.
        assert_eq!(s.stats().to_peer, 1);
        assert_eq!(
            c.poll_event(),
            Some(client::Event::PermissionCreated(peer.ip()))
        );
        s.handle_receive(
            now,
            Receive {
                source: peer,
                destination: relayed,
                contents: b"back",
            },
        );
        pump(&mut s, &mut c, from, now);
        assert_eq!(
            c.poll_event(),
            Some(client::Event::Data {
                peer,
                data: b"back".to_vec()
            })
        );
        // A channel.
        let ch = c.bind_channel(now, peer).unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(
            c.poll_event(),
            Some(client::Event::ChannelBound { peer, channel: ch })
        );
        s.handle_receive(
            now,
            Receive {
                source: peer,
                destination: relayed,
                contents: b"chan",
            },
        );
        let t = s.poll_transmit().unwrap();
        assert_eq!(
            ChannelData::parse(&t.contents).unwrap(),
            ChannelData {
                channel: ch,
                data: b"chan"
            }
        );
        // A permission alone would expire after 300 s; this peer's lives
        // as long as its channel (see `a_bound_channel_keeps_its_peers_permission`).
        s.handle_timeout(now + Duration::from_secs(301));
        s.handle_receive(
            now + Duration::from_secs(301),
            Receive {
                source: peer,
                destination: relayed,
                contents: b"late",
            },
        );
        assert!(s.poll_transmit().is_some());
        // Close frees the relay.
        c.close(now).unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(s.allocations(), 0);
    }

    /// Listening on 0.0.0.0, the server takes a datagram the runtime says
    /// came to one of the host's addresses for a client's, answers from that
    /// address, and relays the peer's data back from it too: the 5-tuple's
    /// server address is the one the client sent to (RFC 8656 §2).
    #[test]
    fn wildcard_listen_answers_and_relays_from_the_address_asked() {
        let now = Instant::now();
        let relay: SocketAddr = "198.51.100.1:50000".parse().unwrap();
        let mut config = Config::new("0.0.0.0:3478".parse().unwrap(), vec![relay], "rtclab");
        config.users.push(("alice".into(), "secret".into()));
        let mut s = Server::new(config, now, StdRng::seed_from_u64(3));
        let second: SocketAddr = "198.51.100.2:3478".parse().unwrap();
        let mut c = Client::new(
            client::Config::new(second, "alice", "secret"),
            StdRng::seed_from_u64(4),
        );
        c.allocate(now).unwrap();
        let from: SocketAddr = CLIENT.parse().unwrap();
        pump(&mut s, &mut c, from, now);
        assert!(
            matches!(c.poll_event(), Some(client::Event::Allocated { relayed, .. }) if relayed == relay)
        );
        let peer: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        c.send_to(now, peer, b"hello").unwrap();
        pump(&mut s, &mut c, from, now);
        let mut out = Vec::new();
        let d = Receive {
            source: peer,
            destination: relay,
            contents: b"back",
        };
        assert_eq!(
            s.handle_relay(now, d, &mut out),
            Some(Route {
                source: second,
                destination: from
            })
        );
    }

    #[test]
    fn error_codes() {
        let now = Instant::now();
        let mut s = server(now, 1, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        // 401: wrong password (after the first, credential-less 401).
        assert_eq!(code(allocate(&mut s, "alice", "nope", from, now).1), 401);
        // 401: unknown user.
        assert_eq!(code(allocate(&mut s, "mallory", "x", from, now).1), 401);
        let (mut c, e) = allocate(&mut s, "alice", "secret", from, now);
        assert!(matches!(e, Some(client::Event::Allocated { .. })));
        // 437: a second Allocate on the same 5-tuple.
        assert_eq!(code(allocate(&mut s, "alice", "secret", from, now).1), 437);
        // 486: alice's quota is 1.
        let other: SocketAddr = "203.0.113.5:40001".parse().unwrap();
        assert_eq!(code(allocate(&mut s, "alice", "secret", other, now).1), 486);
        // 441: bob on alice's allocation (bob allocates elsewhere, then his
        // client sends a CreatePermission from alice's address).
        let (mut b, e) = allocate(&mut s, "bob", "pw", other, now);
        assert!(matches!(e, Some(client::Event::Allocated { .. })));
        b.create_permission(now, "192.0.2.1:1".parse().unwrap())
            .unwrap();
        pump(&mut s, &mut b, from, now);
        assert_eq!(code(b.poll_event()), 441);
        // 403: loopback and the server's own address.
        c.create_permission(now, "127.0.0.1:9".parse().unwrap())
            .unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(code(c.poll_event()), 403);
        // (The server's own address other than a relay's: relay to relay
        // is allowed, see `relay_to_relay_through_one_server`.)
        c.create_permission(now, "198.51.100.1:9".parse().unwrap())
            .unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(code(c.poll_event()), 403);
        // 437: a request from a 5-tuple without allocation.
        let stranger: SocketAddr = "203.0.113.5:40002".parse().unwrap();
        b.create_permission(now, "192.0.2.2:1".parse().unwrap())
            .unwrap();
        pump(&mut s, &mut b, stranger, now);
        assert_eq!(code(b.poll_event()), 437);
    }

    fn request(s: &mut Server, msg: Vec<u8>, now: Instant) -> u16 {
        let from: SocketAddr = CLIENT.parse().unwrap();
        s.handle_receive(
            now,
            Receive {
                source: from,
                destination: LISTEN.parse().unwrap(),
                contents: &msg,
            },
        );
        let t = s.poll_transmit().expect("an answer");
        let m = Message::parse(&t.contents).unwrap();
        assert!(
            !t.contents.is_empty()
                && turn_attr::get(&m, attr::XOR_RELAYED_ADDRESS)
                    .unwrap()
                    .is_none()
        );
        m.error_code().unwrap().map_or(0, |e| e.code)
    }

    fn allocate_msg(s: &Server, now: Instant, transport: u8, nonce: Option<&str>) -> Vec<u8> {
        let key =
            IntegrityKey::long_term("alice", "rtclab", "secret", PasswordAlgorithm::Md5).unwrap();
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Request, Method::ALLOCATE),
            TransactionId([5; 12]),
        );
        TurnAttribute::RequestedTransport(transport).emit(&mut enc);
        let n = nonce
            .map(str::to_string)
            .unwrap_or_else(|| s.nonce(now, CLIENT.parse().unwrap(), LISTEN.parse().unwrap()));
        enc.attribute(&Attribute::Username("alice"));
        enc.attribute(&Attribute::Realm("rtclab"));
        enc.attribute(&Attribute::Nonce(&n));
        enc.message_integrity(&key);
        enc.finish().unwrap();
        out
    }

    #[test]
    fn stale_nonce_and_transport() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        // 442: TCP relaying is not offered.
        let m = allocate_msg(&s, now, 6, None);
        assert_eq!(request(&mut s, m, now), 442);
        // 438: a nonce issued more than NONCE_LIFETIME ago, and a forged one.
        let m = allocate_msg(&s, now, 17, None);
        assert_eq!(
            request(&mut s, m, now + NONCE_LIFETIME + Duration::from_secs(1)),
            438
        );
        let m = allocate_msg(&s, now, 17, Some("000000000000000000000000"));
        assert_eq!(request(&mut s, m, now), 438);
        assert_eq!(s.allocations(), 0);
    }

    /// A CreatePermission for `peer` from alice on CLIENT, by hand (the
    /// client machine would not repeat one it already has).
    /// A request of `method` from alice at CLIENT, signed with her key and
    /// a fresh nonce for that 5-tuple, carrying `attributes` first.
    fn alice_request(
        s: &Server,
        now: Instant,
        method: Method,
        attributes: &[TurnAttribute],
        tid: u8,
    ) -> Vec<u8> {
        let n = s.nonce(now, CLIENT.parse().unwrap(), LISTEN.parse().unwrap());
        alice_signed(method, attributes, &n, tid)
    }

    /// A request of `method` signed with alice's key and `nonce`, carrying
    /// `attributes` first.
    fn alice_signed(method: Method, attributes: &[TurnAttribute], nonce: &str, tid: u8) -> Vec<u8> {
        let key =
            IntegrityKey::long_term("alice", "rtclab", "secret", PasswordAlgorithm::Md5).unwrap();
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Request, method),
            TransactionId([tid; 12]),
        );
        for a in attributes {
            a.emit(&mut enc);
        }
        enc.attribute(&Attribute::Username("alice"));
        enc.attribute(&Attribute::Realm("rtclab"));
        enc.attribute(&Attribute::Nonce(nonce));
        enc.message_integrity(&key);
        enc.finish().unwrap();
        out
    }

    fn permission_msg(s: &Server, now: Instant, peer: SocketAddr, tid: u8) -> Vec<u8> {
        let peer = TurnAttribute::XorPeerAddress(peer);
        alice_request(s, now, Method::CREATE_PERMISSION, &[peer], tid)
    }

    fn permission_count(s: &Server) -> usize {
        s.slots.iter().flatten().map(|a| a.permissions.len()).sum()
    }

    #[test]
    fn deadlines_fire_from_the_heap_and_refreshes_count() {
        let t0 = Instant::now();
        let mut s = server(t0, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (_c, e) = allocate(&mut s, "alice", "secret", from, t0);
        let Some(client::Event::Allocated { relayed, .. }) = e else {
            panic!("{e:?}")
        };
        // Only the allocation's deadline so far.
        assert_eq!(s.poll_timeout(), Some(t0 + DEFAULT_LIFETIME));
        let peer: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        let m = permission_msg(&s, t0, peer, 1);
        assert_eq!(request(&mut s, m, t0), 0);
        assert_eq!(s.poll_timeout(), Some(t0 + PERMISSION_LIFETIME));
        // Refreshed at +200 s: it now lives until +500 s.
        let t200 = t0 + Duration::from_secs(200);
        let m = permission_msg(&s, t200, peer, 2);
        assert_eq!(request(&mut s, m, t200), 0);
        // The stale +300 s deadline still wakes the server, which keeps the
        // permission.
        let t301 = t0 + Duration::from_secs(301);
        s.handle_timeout(t301);
        assert_eq!(permission_count(&s), 1);
        let mut out = Vec::new();
        let d = Receive {
            source: peer,
            destination: relayed,
            contents: b"still",
        };
        assert!(s.handle_relay(t301, d, &mut out).is_some());
        // At +501 s it is gone, from the heap, not from a scan.
        s.handle_timeout(t0 + Duration::from_secs(501));
        assert_eq!(permission_count(&s), 0);
        assert_eq!(s.poll_timeout(), Some(t0 + DEFAULT_LIFETIME));
        // And the allocation ends at its lifetime, freeing its relay.
        let free = s.free.len();
        s.handle_timeout(t0 + DEFAULT_LIFETIME);
        assert_eq!(s.allocations(), 0);
        assert_eq!(s.free.len(), free + 1);
        assert_eq!(s.poll_timeout(), None);
    }

    /// A ChannelBind signed as alice's, for `peer` on `channel`.
    fn channel_bind_msg(
        s: &Server,
        now: Instant,
        peer: SocketAddr,
        channel: u16,
        tid: u8,
    ) -> Vec<u8> {
        let attributes = [
            TurnAttribute::ChannelNumber(channel),
            TurnAttribute::XorPeerAddress(peer),
        ];
        alice_request(s, now, Method::CHANNEL_BIND, &attributes, tid)
    }

    /// Two clients of one server, each relay-only, reach each other through
    /// their relayed addresses: permissions for the other's relayed address
    /// are granted, and a Send leaves one relay for the other (the host's
    /// stack carries it), whose client gets it from the first relay.
    #[test]
    fn relay_to_relay_through_one_server() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        let fa: SocketAddr = CLIENT.parse().unwrap();
        let fb: SocketAddr = "203.0.113.6:40001".parse().unwrap();
        let relayed = |e: Option<client::Event>| match e {
            Some(client::Event::Allocated { relayed, .. }) => relayed,
            e => panic!("{e:?}"),
        };
        let (mut a, ea) = allocate(&mut s, "alice", "secret", fa, now);
        let (mut b, eb) = allocate(&mut s, "bob", "pw", fb, now);
        let (ra, rb) = (relayed(ea), relayed(eb));
        for (c, from, peer) in [(&mut a, fa, rb), (&mut b, fb, ra)] {
            c.create_permission(now, peer).unwrap();
            pump(&mut s, c, from, now);
            assert_eq!(
                c.poll_event(),
                Some(client::Event::PermissionCreated(peer.ip()))
            );
        }
        a.send_to(now, rb, b"to bob").unwrap();
        while let Some(t) = a.poll_transmit() {
            let d = Receive {
                source: fa,
                destination: t.destination,
                contents: &t.contents,
            };
            s.handle_receive(now, d);
        }
        let t = s.poll_transmit().expect("relayed toward bob's relay");
        assert_eq!((t.source, t.destination), (Some(ra), rb));
        // The host's stack delivers it to the socket of bob's relay.
        let d = Receive {
            source: ra,
            destination: rb,
            contents: &t.contents,
        };
        s.handle_receive(now, d);
        let t = s.poll_transmit().expect("relayed to bob");
        assert_eq!(t.destination, fb);
        let d = Receive {
            source: t.source.unwrap(),
            destination: fb,
            contents: &t.contents,
        };
        b.handle_receive(now, d);
        assert_eq!(
            b.poll_event(),
            Some(client::Event::Data {
                peer: ra,
                data: b"to bob".to_vec()
            })
        );
        // The listening socket stays out of reach.
        a.create_permission(now, LISTEN.parse().unwrap()).unwrap();
        pump(&mut s, &mut a, fa, now);
        assert!(matches!(
            a.poll_event(),
            Some(client::Event::PermissionFailed { .. })
        ));
    }

    /// aioice refreshes its channel bindings and never its permissions: the
    /// permission of a peer with a bound channel lives as long as the
    /// channel (as coturn keeps it), while a bare permission still ends at
    /// 300 s (RFC 8656 §9).
    #[test]
    fn a_bound_channel_keeps_its_peers_permission() {
        let t0 = Instant::now();
        let mut s = server(t0, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (_c, e) = allocate(&mut s, "alice", "secret", from, t0);
        let Some(client::Event::Allocated { relayed, .. }) = e else {
            panic!("{e:?}")
        };
        let bound: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        let bare: SocketAddr = "192.0.2.88:8000".parse().unwrap();
        let m = channel_bind_msg(&s, t0, bound, 0x4000, 1);
        assert_eq!(request(&mut s, m, t0), 0);
        let m = permission_msg(&s, t0, bare, 2);
        assert_eq!(request(&mut s, m, t0), 0);
        // Keep the allocation alive past its 600 s.
        s.slots
            .iter_mut()
            .flatten()
            .for_each(|a| a.expires = t0 + MAX_LIFETIME);
        // The channel is refreshed as aioice does, at 500 s (before its
        // 600 s end); the permissions never are.
        let relays = |s: &mut Server, secs: u64, source: SocketAddr| {
            let now = t0 + Duration::from_secs(secs);
            s.handle_timeout(now);
            let d = Receive {
                source,
                destination: relayed,
                contents: b"hello",
            };
            s.handle_relay(now, d, &mut Vec::new()).is_some()
        };
        for secs in [299, 301, 499] {
            assert!(relays(&mut s, secs, bound), "{secs} s");
        }
        assert!(
            !relays(&mut s, 301, bare),
            "a bare permission ends at 300 s"
        );
        let t500 = t0 + Duration::from_secs(500);
        let m = channel_bind_msg(&s, t500, bound, 0x4000, 3);
        assert_eq!(request(&mut s, m, t500), 0);
        for secs in [801, 1099] {
            assert!(relays(&mut s, secs, bound), "{secs} s");
        }
        // Once the channel lapses (refreshed at 500 s, 600 s lifetime), so
        // does the permission.
        assert!(!relays(&mut s, 1101, bound));
        assert_eq!(permission_count(&s), 0);
    }

    #[test]
    fn refreshes_do_not_grow_the_deadline_heap_without_bound() {
        let t0 = Instant::now();
        let mut s = server(t0, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let _ = allocate(&mut s, "alice", "secret", from, t0);
        let peer: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        for i in 0..5000u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            let m = permission_msg(&s, now, peer, (i % 251) as u8);
            assert_eq!(request(&mut s, m, now), 0);
        }
        assert!(s.timers.len() <= 1025, "{} timers", s.timers.len());
        assert_eq!(permission_count(&s), 1);
    }

    #[test]
    fn relay_path_writes_into_the_callers_buffer() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (mut c, e) = allocate(&mut s, "alice", "secret", from, now);
        let Some(client::Event::Allocated { relayed, .. }) = e else {
            panic!("{e:?}")
        };
        let peer: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        let ch = c.bind_channel(now, peer).unwrap();
        pump(&mut s, &mut c, from, now);
        let mut frame = Vec::new();
        ChannelData {
            channel: ch,
            data: &[7; 120],
        }
        .emit(&mut frame)
        .unwrap();
        let listen: SocketAddr = LISTEN.parse().unwrap();
        let mut out = Vec::with_capacity(2048);
        let buf = out.as_ptr();
        for _ in 0..3 {
            let r = s.handle_relay(
                now,
                Receive {
                    source: from,
                    destination: listen,
                    contents: &frame,
                },
                &mut out,
            );
            assert_eq!(
                r,
                Some(Route {
                    source: relayed,
                    destination: peer
                })
            );
            assert_eq!(out, [7; 120]);
            let r = s.handle_relay(
                now,
                Receive {
                    source: peer,
                    destination: relayed,
                    contents: &[9; 120],
                },
                &mut out,
            );
            assert_eq!(
                r,
                Some(Route {
                    source: listen,
                    destination: from
                })
            );
            assert_eq!(
                ChannelData::parse(&out).unwrap(),
                ChannelData {
                    channel: ch,
                    data: &[9; 120]
                }
            );
        }
        // Nothing queued, and the same buffer all along.
        assert!(s.poll_transmit().is_none());
        assert_eq!(out.as_ptr(), buf);
        assert_eq!(s.stats().to_peer, 3);
        assert_eq!(s.stats().to_client, 3);
    }

    #[test]
    fn loopback_peers_only_when_allowed() {
        let now = Instant::now();
        let mut s = server(now, 10, true);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (mut c, _) = allocate(&mut s, "alice", "secret", from, now);
        c.create_permission(now, "127.0.0.1:9".parse().unwrap())
            .unwrap();
        pump(&mut s, &mut c, from, now);
        assert!(matches!(
            c.poll_event(),
            Some(client::Event::PermissionCreated(_))
        ));
        // Never the server's listening socket, even then.
        c.create_permission(now, LISTEN.parse().unwrap()).unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(code(c.poll_event()), 403);
    }
    /// Runs [`pump`] and returns every datagram the client sent.
    fn pump_recording(
        s: &mut Server,
        c: &mut Client,
        from: SocketAddr,
        now: Instant,
    ) -> Vec<Vec<u8>> {
        let mut sent = Vec::new();
        for _ in 0..20 {
            let mut moved = false;
            while let Some(t) = c.poll_transmit() {
                moved = true;
                s.handle_receive(
                    now,
                    Receive {
                        source: from,
                        destination: t.destination,
                        contents: &t.contents,
                    },
                );
                sent.push(t.contents);
            }
            while let Some(t) = s.poll_transmit() {
                moved = true;
                if t.destination == from {
                    c.handle_receive(
                        now,
                        Receive {
                            source: t.source.unwrap(),
                            destination: from,
                            contents: &t.contents,
                        },
                    );
                }
            }
            if !moved {
                break;
            }
        }
        sent
    }

    /// The error code of the one answer to `msg` sent from `from`.
    fn answer_code(s: &mut Server, msg: &[u8], from: SocketAddr, now: Instant) -> u16 {
        s.handle_receive(
            now,
            Receive {
                source: from,
                destination: LISTEN.parse().unwrap(),
                contents: msg,
            },
        );
        let t = s.poll_transmit().expect("an answer");
        assert!(s.poll_transmit().is_none());
        let m = Message::parse(&t.contents).unwrap();
        m.error_code().unwrap().map_or(0, |e| e.code)
    }

    #[test]
    fn an_allocate_replayed_from_another_port_gets_438_and_locks_nobody_out() {
        let now = Instant::now();
        let mut s = server(now, 2, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let mut c = client("alice", "secret");
        c.allocate(now).unwrap();
        let sent = pump_recording(&mut s, &mut c, from, now);
        assert!(matches!(
            c.poll_event(),
            Some(client::Event::Allocated { .. })
        ));
        let captured = sent
            .iter()
            .rev()
            .find(|m| Message::parse(m).is_ok_and(|m| m.has_integrity()))
            .expect("an authenticated Allocate");
        // An eavesdropper replays it byte for byte from 11 new source ports.
        for port in 41001..41012 {
            let spoofed = SocketAddr::new(from.ip(), port);
            let later = now + Duration::from_secs(1);
            assert_eq!(answer_code(&mut s, captured, spoofed, later), 438);
        }
        assert_eq!(s.allocations(), 1);
        // The user's own second allocation (quota 2) still succeeds.
        let other: SocketAddr = "203.0.113.5:42000".parse().unwrap();
        let (_, e) = allocate(&mut s, "alice", "secret", other, now);
        assert!(matches!(e, Some(client::Event::Allocated { .. })), "{e:?}");
        assert_eq!(s.allocations(), 2);
    }
    /// On a wildcard listening address the server does not know its own
    /// addresses from its config, but learns each one a client sends to:
    /// the listening socket there is never a peer, even with loopback and
    /// own IPs allowed (a relay aimed at it would loop through the server).
    #[test]
    fn a_wildcard_servers_listening_addresses_are_never_peers() {
        let now = Instant::now();
        let mut s = server(now, 10, true);
        s.config.listen = "0.0.0.0:3478".parse().unwrap();
        let second: SocketAddr = "198.51.100.2:3478".parse().unwrap();
        let mut binding = Vec::new();
        MessageEncoder::new(
            &mut binding,
            MessageType::BINDING_REQUEST,
            TransactionId([7; 12]),
        )
        .finish()
        .unwrap();
        s.handle_receive(
            now,
            Receive {
                source: "192.0.2.50:5000".parse().unwrap(),
                destination: second,
                contents: &binding,
            },
        );
        assert_eq!(s.poll_transmit().map(|t| t.source), Some(Some(second)));
        let _ = allocate(&mut s, "alice", "secret", CLIENT.parse().unwrap(), now);
        let m = permission_msg(&s, now, second, 30);
        assert_eq!(request(&mut s, m, now), 403);
        let m = permission_msg(&s, now, "198.51.100.2:9".parse().unwrap(), 31);
        assert_eq!(request(&mut s, m, now), 0, "another port of that IP");
    }

    #[test]
    fn link_local_and_metadata_peers_get_403_by_default() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let _ = allocate(&mut s, "alice", "secret", from, now);
        for (i, peer) in [
            "169.254.169.254:80",
            "169.254.1.1:53",
            "0.1.2.3:9",
            "224.0.0.251:5353",
            "255.255.255.255:9",
        ]
        .iter()
        .enumerate()
        {
            let m = permission_msg(&s, now, peer.parse().unwrap(), 10 + i as u8);
            assert_eq!(request(&mut s, m, now), 403, "{peer}");
        }
        assert_eq!(permission_count(&s), 0);
        // A public peer is fine.
        let m = permission_msg(&s, now, "192.0.2.9:9".parse().unwrap(), 20);
        assert_eq!(request(&mut s, m, now), 0);
    }

    #[test]
    fn denied_and_allowed_peer_ranges() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        s.config.denied_peer_ips.push("10.0.0.0/8".parse().unwrap());
        s.config
            .denied_peer_ips
            .push("192.168.0.0-192.168.255.255".parse().unwrap());
        s.config
            .allowed_peer_ips
            .push("10.1.2.0/24".parse().unwrap());
        s.config
            .allowed_peer_ips
            .push("169.254.10.10".parse().unwrap());
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (mut c, _) = allocate(&mut s, "alice", "secret", from, now);
        for (peer, want) in [
            ("10.9.9.9:9", 403),
            ("192.168.1.1:9", 403),
            ("169.254.169.254:80", 403),
            // Allowed overrides denied.
            ("10.1.2.3:9", 0),
            ("169.254.10.10:9", 0),
            ("172.16.0.1:9", 0),
        ] {
            let m = permission_msg(&s, now, peer.parse().unwrap(), 30);
            assert_eq!(request(&mut s, m, now), want, "{peer}");
        }
        // ChannelBind is refused the same way, and a Send indication to a
        // denied peer is dropped.
        let denied: SocketAddr = "10.9.9.9:9".parse().unwrap();
        c.bind_channel(now, denied).unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(code(c.poll_event()), 403);
        let to_peer = s.stats().to_peer;
        c.send_to(now, denied, b"x").unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(s.stats().to_peer, to_peer);
        // Allowed does not open the server's listening socket.
        s.config
            .allowed_peer_ips
            .push("198.51.100.1".parse().unwrap());
        let m = permission_msg(&s, now, LISTEN.parse().unwrap(), 31);
        assert_eq!(request(&mut s, m, now), 403);
        let m = permission_msg(&s, now, "198.51.100.1:9".parse().unwrap(), 32);
        assert_eq!(request(&mut s, m, now), 0);
    }
    /// An Allocate from `from` with alice's name, `password` and the nonce
    /// the server gives that 5-tuple.
    fn allocate_as(s: &Server, now: Instant, from: SocketAddr, password: &str, tid: u8) -> Vec<u8> {
        let key =
            IntegrityKey::long_term("alice", "rtclab", password, PasswordAlgorithm::Md5).unwrap();
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Request, Method::ALLOCATE),
            TransactionId([tid; 12]),
        );
        TurnAttribute::RequestedTransport(PROTOCOL_UDP).emit(&mut enc);
        let n = s.nonce(now, from, LISTEN.parse().unwrap());
        enc.attribute(&Attribute::Username("alice"));
        enc.attribute(&Attribute::Realm("rtclab"));
        enc.attribute(&Attribute::Nonce(&n));
        enc.message_integrity(&key);
        enc.finish().unwrap();
        out
    }

    /// The error code of the answer to `msg` from `from`, `None` when the
    /// server stays silent.
    fn maybe_code(s: &mut Server, msg: &[u8], from: SocketAddr, now: Instant) -> Option<u16> {
        s.handle_receive(
            now,
            Receive {
                source: from,
                destination: LISTEN.parse().unwrap(),
                contents: msg,
            },
        );
        let t = s.poll_transmit()?;
        let m = Message::parse(&t.contents).unwrap();
        Some(m.error_code().unwrap().map_or(0, |e| e.code))
    }

    #[test]
    fn password_guessing_is_throttled_per_source() {
        let t0 = Instant::now();
        let mut s = server(t0, 10, false);
        let attacker: SocketAddr = "192.0.2.66:5000".parse().unwrap();
        let mut tid = 0u8;
        let mut guess = |s: &mut Server, from: SocketAddr, pw: &str, now: Instant| {
            tid = tid.wrapping_add(1);
            let m = allocate_as(s, now, from, pw, tid);
            maybe_code(s, &m, from, now)
        };
        for _ in 0..5 {
            assert_eq!(guess(&mut s, attacker, "guess", t0), Some(401));
        }
        // Past the threshold the source gets nothing, from any port and
        // even with the right password, for the back-off.
        assert_eq!(guess(&mut s, attacker, "guess", t0), None);
        let other_port = SocketAddr::new(attacker.ip(), 5001);
        assert_eq!(guess(&mut s, other_port, "secret", t0), None);
        let t1 = t0 + Duration::from_millis(1900);
        assert_eq!(guess(&mut s, attacker, "guess", t1), None);
        assert_eq!(s.allocations(), 0);
        // Another source is unaffected.
        let user: SocketAddr = CLIENT.parse().unwrap();
        assert_eq!(guess(&mut s, user, "typo", t0), Some(401));
        assert_eq!(guess(&mut s, user, "secret", t0), Some(0));
        // After the back-off the source is heard again; the next block is
        // twice as long.
        let t2 = t0 + Duration::from_millis(2001);
        for _ in 0..5 {
            assert_eq!(guess(&mut s, attacker, "guess", t2), Some(401));
        }
        assert_eq!(
            guess(&mut s, attacker, "guess", t2 + Duration::from_millis(3900)),
            None
        );
        assert_eq!(
            guess(&mut s, attacker, "secret", t2 + Duration::from_millis(4001)),
            Some(0)
        );
        assert_eq!(s.stats().throttled, 4);
    }

    #[test]
    fn the_throttle_table_stays_capped_when_many_sources_fail() {
        let t0 = Instant::now();
        let mut s = server(t0, 10, false);
        for i in 0..(2 * throttle::MAX_SOURCES as u32) {
            let from = SocketAddr::new(IpAddr::V4((0x0a00_0000 + i).into()), 4000);
            let m = allocate_as(&s, t0, from, "wrong", 1);
            assert_eq!(maybe_code(&mut s, &m, from, t0), Some(401));
            assert!(s.throttle.len() <= throttle::MAX_SOURCES);
        }
        assert!(s.throttle.len() > throttle::MAX_SOURCES / 8 * 7);
    }

    #[test]
    fn a_throttled_source_keeps_its_own_allocation() {
        let t0 = Instant::now();
        let mut s = server(t0, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let (mut c, _) = allocate(&mut s, "alice", "secret", from, t0);
        // Someone behind the same NAT guesses bob's password.
        let guesser = SocketAddr::new(from.ip(), 40999);
        for i in 0..throttle::FAILURES_ALLOWED {
            let (_, e) = allocate(&mut s, "bob", &format!("guess{i}"), guesser, t0);
            assert_eq!(code(e), 401);
        }
        let m = allocate_as(&s, t0, guesser, "secret", 99);
        assert_eq!(maybe_code(&mut s, &m, guesser, t0), None);
        // Alice's CreatePermission on her allocation still goes through.
        c.create_permission(t0, "192.0.2.1:1".parse().unwrap())
            .unwrap();
        pump(&mut s, &mut c, from, t0);
        assert_eq!(
            c.poll_event(),
            Some(client::Event::PermissionCreated(
                "192.0.2.1".parse().unwrap()
            ))
        );
    }
    /// The answers an unauthenticated sender gets, for the smallest request
    /// that elicits each: a forged source makes them traffic at a victim,
    /// so these bounds keep the amplification from creeping back.
    #[test]
    fn unauthenticated_answers_stay_small() {
        let now = Instant::now();
        let mut s = server(now, 10, false);
        let from: SocketAddr = CLIENT.parse().unwrap();
        let bare = |method| {
            let mut out = Vec::new();
            MessageEncoder::new(
                &mut out,
                MessageType::new(Class::Request, method),
                TransactionId([3; 12]),
            )
            .finish()
            .unwrap();
            assert_eq!(out.len(), 20);
            out
        };
        let answer = |s: &mut Server, req: &[u8]| {
            s.handle_receive(
                now,
                Receive {
                    source: from,
                    destination: LISTEN.parse().unwrap(),
                    contents: req,
                },
            );
            let t = s.poll_transmit().expect("an answer");
            let m = Message::parse(&t.contents).unwrap();
            (
                m.error_code().unwrap().map_or(0, |e| e.code),
                t.contents.len(),
            )
        };
        // 401: ERROR-CODE, REALM ("rtclab") and NONCE only: 20 + 24 + 12
        // + 28 bytes.
        let (code, len) = answer(&mut s, &bare(Method::ALLOCATE));
        assert_eq!(code, 401);
        assert!(len <= 84, "401 of {len} bytes");
        // Binding: XOR-MAPPED-ADDRESS only.
        let (code, len) = answer(&mut s, &bare(Method::BINDING));
        assert_eq!((code, len), (0, 32));
        // 400 to a method the server does not serve.
        let (code, len) = answer(&mut s, &bare(Method::SEND));
        assert_eq!(code, 400);
        assert!(len <= 40, "400 of {len} bytes");
        // FINGERPRINT comes back only when the request had one.
        let mut fp = Vec::new();
        MessageEncoder::new(
            &mut fp,
            MessageType::BINDING_REQUEST,
            TransactionId([4; 12]),
        )
        .fingerprint()
        .finish()
        .unwrap();
        let (_, len) = answer(&mut s, &fp);
        assert_eq!(len, 40);
    }

    /// A server with `relays` relay addresses and alice's credential.
    fn server_with(now: Instant, relays: u16, edit: impl FnOnce(&mut Config)) -> Server {
        let relays = (0..relays)
            .map(|i| SocketAddr::new("198.51.100.1".parse().unwrap(), 50000 + i))
            .collect();
        let mut c = Config::new(LISTEN.parse().unwrap(), relays, "rtclab");
        c.users.push(("alice".into(), "secret".into()));
        edit(&mut c);
        Server::new(c, now, StdRng::seed_from_u64(3))
    }

    /// The default quota is per username and unlimited (coturn's too): the
    /// 11th browser sharing a deployment's one static credential gets its
    /// allocation (it got 486 when the default was 10 per user).
    #[test]
    fn the_11th_user_of_one_credential_is_not_refused() {
        let now = Instant::now();
        let mut s = server_with(now, 16, |_| {});
        for i in 0..11 {
            let from = SocketAddr::new("203.0.113.5".parse().unwrap(), 40000 + i);
            let (_, e) = allocate(&mut s, "alice", "secret", from, now);
            assert!(
                matches!(e, Some(client::Event::Allocated { .. })),
                "{i}: {e:?}"
            );
        }
        assert_eq!(s.allocations(), 11);
    }

    #[test]
    fn user_and_total_quotas_when_set() {
        let now = Instant::now();
        let mut s = server_with(now, 16, |c| {
            c.users.push(("bob".into(), "pw".into()));
            c.quota_per_user = 2;
            c.total_quota = 3;
        });
        let at = |port| SocketAddr::new("203.0.113.5".parse().unwrap(), port);
        for port in [1, 2] {
            let (_, e) = allocate(&mut s, "alice", "secret", at(port), now);
            assert!(matches!(e, Some(client::Event::Allocated { .. })), "{e:?}");
        }
        // The user's quota: 486 (RFC 8656 §7.2).
        assert_eq!(code(allocate(&mut s, "alice", "secret", at(3), now).1), 486);
        let (_, e) = allocate(&mut s, "bob", "pw", at(4), now);
        assert!(matches!(e, Some(client::Event::Allocated { .. })), "{e:?}");
        // The total: 508, the server is full.
        assert_eq!(code(allocate(&mut s, "bob", "pw", at(5), now).1), 508);
    }

    /// RFC 4648 §10's vectors.
    #[test]
    fn base64_vectors() {
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), b64);
        }
    }

    #[test]
    fn rest_usernames_carry_their_expiry() {
        assert_eq!(rest_expiry("4102444800:alice"), Some(4102444800));
        assert_eq!(rest_expiry("4102444800"), Some(4102444800));
        assert_eq!(rest_expiry("alice:4102444800"), Some(4102444800));
        assert_eq!(rest_expiry("alice"), None);
        assert_eq!(rest_expiry("alice:bob"), None);
        assert_eq!(rest_expiry(":"), None);
        assert_eq!(rest_expiry("99999999999999999999999:x"), None);
    }

    /// The TURN REST API credentials (draft-uberti-behave-turn-rest-00
    /// §2.2) as coturn's `static-auth-secret` checks them; the password
    /// was computed apart with Python's hmac and base64 modules.
    #[test]
    fn ephemeral_credentials_from_a_shared_secret() {
        let t0 = Instant::now();
        let mut s = server_with(t0, 4, |c| c.auth_secret = Some("north".into()));
        let user = "4102444800:alice"; // 2100-01-01
        let password = "58Tl4e2VjINId23vxEnD/7NNBaQ=";
        let at = |port| SocketAddr::new("203.0.113.5".parse().unwrap(), port);
        // No wall clock yet: refused.
        assert_eq!(code(allocate(&mut s, user, password, at(1), t0).1), 401);
        s.set_unix_time(t0, 4102444800 - 60);
        let (_, e) = allocate(&mut s, user, password, at(2), t0);
        assert!(matches!(e, Some(client::Event::Allocated { .. })), "{e:?}");
        // A wrong password, a name without expiry: 401.
        assert_eq!(code(allocate(&mut s, user, "x", at(3), t0).1), 401);
        assert_eq!(code(allocate(&mut s, "alice2", password, at(4), t0).1), 401);
        // Static users still work beside the secret.
        let (_, e) = allocate(&mut s, "alice", "secret", at(5), t0);
        assert!(matches!(e, Some(client::Event::Allocated { .. })), "{e:?}");
        // Once the expiry has passed: 401, and no strike against the source.
        let later = t0 + Duration::from_secs(61);
        for _ in 0..2 * throttle::FAILURES_ALLOWED {
            assert_eq!(code(allocate(&mut s, user, password, at(6), later).1), 401);
        }
        assert!(!s.throttle.blocked(later, at(6).ip()));
    }

    /// A server relaying from ports 50000-50003 opened on demand.
    fn on_demand(now: Instant) -> Server {
        server_with(now, 0, |c| {
            c.relay_ports = Some(RelayPorts {
                ip: "198.51.100.1".parse().unwrap(),
                min: 50000,
                max: 50003,
            });
        })
    }

    /// An authenticated Allocate from `from` over `transport` with extra
    /// attributes.
    fn allocate_ext(
        s: &mut Server,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        extra: &[TurnAttribute],
        tid: u8,
    ) -> Vec<u8> {
        s.transport = transport;
        let n = s.nonce(now, from, LISTEN.parse().unwrap());
        s.transport = Transport::Udp;
        let mut attributes = vec![TurnAttribute::RequestedTransport(PROTOCOL_UDP)];
        attributes.extend_from_slice(extra);
        alice_signed(Method::ALLOCATE, &attributes, &n, tid)
    }

    /// Answers every BindRelay (refusing the ports in `refuse`), and
    /// returns the events seen.
    fn answer_binds(s: &mut Server, now: Instant, refuse: &[u16]) -> Vec<Event> {
        let mut seen = Vec::new();
        while let Some(e) = s.poll_event() {
            seen.push(e);
            if let Event::BindRelay(a) = e {
                s.relay_bound(now, a, !refuse.contains(&a.port()));
            }
        }
        seen
    }

    /// Sends `msg` from `from` over `transport`, answers the binds, and
    /// returns (error code or 0, relayed address, reservation token,
    /// events).
    fn exchange(
        s: &mut Server,
        now: Instant,
        from: SocketAddr,
        transport: Transport,
        msg: &[u8],
        refuse: &[u16],
    ) -> (u16, Option<SocketAddr>, Option<[u8; 8]>, Vec<Event>) {
        let d = Receive {
            source: from,
            destination: LISTEN.parse().unwrap(),
            contents: msg,
        };
        match transport {
            Transport::Udp => s.handle_receive(now, d),
            Transport::Tcp => s.handle_stream(now, d),
        }
        let events = answer_binds(s, now, refuse);
        let t = match transport {
            Transport::Udp => s.poll_transmit(),
            Transport::Tcp => s.poll_stream_transmit(),
        }
        .expect("an answer");
        assert_eq!(t.destination, from);
        let m = Message::parse(&t.contents).unwrap();
        let code = m.error_code().unwrap().map_or(0, |e| e.code);
        let relayed = match turn_attr::get(&m, attr::XOR_RELAYED_ADDRESS) {
            Ok(Some(TurnAttribute::XorRelayedAddress(a))) => Some(a),
            _ => None,
        };
        let token = match turn_attr::get(&m, attr::RESERVATION_TOKEN) {
            Ok(Some(TurnAttribute::ReservationToken(t))) => Some(t),
            _ => None,
        };
        (code, relayed, token, events)
    }

    fn at(port: u16) -> SocketAddr {
        SocketAddr::new("203.0.113.5".parse().unwrap(), port)
    }

    /// Relay sockets come and go with allocations, on ports of the range;
    /// a full range answers 508; a port another program holds is skipped.
    #[test]
    fn relay_ports_on_demand() {
        let now = Instant::now();
        let mut s = on_demand(now);
        assert_eq!(s.local_addrs(), &[LISTEN.parse::<SocketAddr>().unwrap()]);
        let mut relays = Vec::new();
        for i in 0..4 {
            let m = allocate_ext(&mut s, now, at(i), Transport::Udp, &[], i as u8);
            let (code, relayed, _, events) = exchange(&mut s, now, at(i), Transport::Udp, &m, &[]);
            assert_eq!(code, 0);
            let relayed = relayed.unwrap();
            assert_eq!(events, vec![Event::BindRelay(relayed)]);
            assert!((50000..=50003).contains(&relayed.port()));
            relays.push(relayed);
        }
        relays.sort();
        relays.dedup();
        assert_eq!(relays.len(), 4);
        let m = allocate_ext(&mut s, now, at(9), Transport::Udp, &[], 9);
        assert_eq!(exchange(&mut s, now, at(9), Transport::Udp, &m, &[]).0, 508);
        // Allocations end: their sockets are closed.
        s.handle_timeout(now + DEFAULT_LIFETIME);
        let closed = answer_binds(&mut s, now, &[]);
        assert_eq!(closed.len(), 4);
        assert!(closed.iter().all(|e| matches!(e, Event::CloseRelay(_))));
        assert_eq!(s.allocations(), 0);
        // Three ports held by another program: the fourth is found.
        let later = now + DEFAULT_LIFETIME;
        let m = allocate_ext(&mut s, later, at(10), Transport::Udp, &[], 10);
        let (code, relayed, _, events) = exchange(
            &mut s,
            later,
            at(10),
            Transport::Udp,
            &m,
            &[50000, 50001, 50002],
        );
        assert_eq!((code, relayed.map(|a| a.port())), (0, Some(50003)));
        assert_eq!(events.len(), 4, "{events:?}");
        // All held: 508 after trying each, nothing left bound.
        let mut s = on_demand(now);
        let m = allocate_ext(&mut s, now, at(1), Transport::Udp, &[], 1);
        let all = [50000, 50001, 50002, 50003];
        let (code, _, _, events) = exchange(&mut s, now, at(1), Transport::Udp, &m, &all);
        assert_eq!(code, 508);
        assert!(events.iter().all(|e| matches!(e, Event::BindRelay(_))));
        assert!(s.spare.is_empty() && s.binding.is_empty() && s.pending.is_empty());
    }

    /// RFC 8656 §7.2: EVEN-PORT's R bit reserves the next port for 30 s
    /// under a RESERVATION-TOKEN, which one later Allocate redeems (coturn's
    /// turnutils_uclient asks this for its RTP/RTCP pair by default).
    #[test]
    fn even_port_reservation_and_token() {
        let now = Instant::now();
        let mut s = on_demand(now);
        let rtp = [TurnAttribute::EvenPort { reserve: true }];
        let m = allocate_ext(&mut s, now, at(1), Transport::Udp, &rtp, 1);
        let (code, relayed, token, events) = exchange(&mut s, now, at(1), Transport::Udp, &m, &[]);
        assert_eq!(code, 0);
        let relayed = relayed.unwrap();
        assert_eq!(relayed.port() % 2, 0);
        let next = SocketAddr::new(relayed.ip(), relayed.port() + 1);
        assert_eq!(
            events,
            vec![Event::BindRelay(relayed), Event::BindRelay(next)]
        );
        let token = token.expect("a RESERVATION-TOKEN");
        // The token with EVEN-PORT: 400.
        let both = [
            TurnAttribute::ReservationToken(token),
            TurnAttribute::EvenPort { reserve: false },
        ];
        let m = allocate_ext(&mut s, now, at(2), Transport::Udp, &both, 2);
        assert_eq!(exchange(&mut s, now, at(2), Transport::Udp, &m, &[]).0, 400);
        // The token alone: the reserved port, bound already.
        let rtcp = [TurnAttribute::ReservationToken(token)];
        let m = allocate_ext(&mut s, now, at(3), Transport::Udp, &rtcp, 3);
        let (code, relayed2, _, events) = exchange(&mut s, now, at(3), Transport::Udp, &m, &[]);
        assert_eq!((code, relayed2, events), (0, Some(next), vec![]));
        // Used once only; an unknown token: 508.
        let m = allocate_ext(&mut s, now, at(4), Transport::Udp, &rtcp, 4);
        assert_eq!(exchange(&mut s, now, at(4), Transport::Udp, &m, &[]).0, 508);
        // A plain EVEN-PORT gets the other even port.
        let even = [TurnAttribute::EvenPort { reserve: false }];
        let m = allocate_ext(&mut s, now, at(5), Transport::Udp, &even, 5);
        let (code, r, _, _) = exchange(&mut s, now, at(5), Transport::Udp, &m, &[]);
        assert_eq!(code, 0);
        assert_eq!(r.unwrap().port() % 2, 0);
        // An unclaimed reservation is released after 30 s.
        let mut s = on_demand(now);
        let m = allocate_ext(&mut s, now, at(1), Transport::Udp, &rtp, 1);
        let (_, relayed, token, _) = exchange(&mut s, now, at(1), Transport::Udp, &m, &[]);
        let next = SocketAddr::new(relayed.unwrap().ip(), relayed.unwrap().port() + 1);
        assert_eq!(s.poll_timeout(), Some(now + RESERVATION_LIFETIME));
        s.handle_timeout(now + RESERVATION_LIFETIME);
        assert_eq!(s.poll_event(), Some(Event::CloseRelay(next)));
        let rtcp = [TurnAttribute::ReservationToken(token.unwrap())];
        let m = allocate_ext(&mut s, now, at(2), Transport::Udp, &rtcp, 2);
        let t = now + RESERVATION_LIFETIME;
        assert_eq!(exchange(&mut s, t, at(2), Transport::Udp, &m, &[]).0, 508);
    }

    /// The transport is part of the 5-tuple: the same client address over
    /// UDP and over TCP has two allocations, a nonce of one is stale on the
    /// other, peers' data reaches a TCP client as padded ChannelData on its
    /// connection, and the connection closing deletes its allocation.
    #[test]
    fn tcp_allocations_are_their_own_5_tuples() {
        let now = Instant::now();
        let mut s = server(now, 0, false);
        let from = at(7000);
        let m = allocate_ext(&mut s, now, from, Transport::Udp, &[], 1);
        let (code, udp_relay, ..) = exchange(&mut s, now, from, Transport::Udp, &m, &[]);
        assert_eq!(code, 0);
        // The UDP nonce over TCP: 438.
        let m2 = allocate_ext(&mut s, now, from, Transport::Udp, &[], 2);
        assert_eq!(exchange(&mut s, now, from, Transport::Tcp, &m2, &[]).0, 438);
        let m = allocate_ext(&mut s, now, from, Transport::Tcp, &[], 3);
        let (code, tcp_relay, ..) = exchange(&mut s, now, from, Transport::Tcp, &m, &[]);
        assert_eq!(code, 0);
        assert_ne!(udp_relay, tcp_relay);
        assert_eq!(s.allocations(), 2);
        assert!(s.has_allocation(Transport::Tcp, from));
        // A channel over TCP, and a peer's datagram back on the stream.
        let peer: SocketAddr = "192.0.2.77:7000".parse().unwrap();
        s.transport = Transport::Tcp;
        let n = s.nonce(now, from, LISTEN.parse().unwrap());
        s.transport = Transport::Udp;
        let key =
            IntegrityKey::long_term("alice", "rtclab", "secret", PasswordAlgorithm::Md5).unwrap();
        let mut bind = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut bind,
            MessageType::new(Class::Request, Method::CHANNEL_BIND),
            TransactionId([4; 12]),
        );
        TurnAttribute::ChannelNumber(0x4001).emit(&mut enc);
        TurnAttribute::XorPeerAddress(peer).emit(&mut enc);
        enc.attribute(&Attribute::Username("alice"));
        enc.attribute(&Attribute::Realm("rtclab"));
        enc.attribute(&Attribute::Nonce(&n));
        enc.message_integrity(&key);
        enc.finish().unwrap();
        assert_eq!(exchange(&mut s, now, from, Transport::Tcp, &bind, &[]).0, 0);
        let mut out = Vec::new();
        let route = s.handle_relay(
            now,
            Receive {
                source: peer,
                destination: tcp_relay.unwrap(),
                contents: b"hello",
            },
            &mut out,
        );
        assert_eq!(route, None);
        assert!(s.poll_transmit().is_none());
        let t = s.poll_stream_transmit().expect("ChannelData on the stream");
        assert_eq!(t.destination, from);
        assert_eq!(t.contents, b"\x40\x01\x00\x05hello\0\0\0");
        // ChannelData from the TCP client (padded) goes to the peer.
        s.handle_stream(
            now,
            Receive {
                source: from,
                destination: LISTEN.parse().unwrap(),
                contents: b"\x40\x01\x00\x02hi\0\0",
            },
        );
        let t = s.poll_transmit().expect("to the peer");
        assert_eq!((t.source, t.destination), (tcp_relay, peer));
        assert_eq!(t.contents, b"hi");
        // The connection closes: that allocation goes, the UDP one stays.
        s.stream_closed(from);
        assert!(!s.has_allocation(Transport::Tcp, from));
        assert!(s.has_allocation(Transport::Udp, from));
    }

    /// With ports on demand, a port of the range on the relay IP is a
    /// relayed address of this server even when another thread's server
    /// holds it (relay to relay across `--threads`); other ports of that
    /// IP stay refused without `allow_loopback_peers`.
    #[test]
    fn the_relay_range_is_relay_to_relay_across_threads() {
        let now = Instant::now();
        let mut s = on_demand(now);
        let m = allocate_ext(&mut s, now, at(1), Transport::Udp, &[], 1);
        assert_eq!(exchange(&mut s, now, at(1), Transport::Udp, &m, &[]).0, 0);
        let ask = |s: &mut Server, peer: &str, tid: u8| {
            let key = IntegrityKey::long_term("alice", "rtclab", "secret", PasswordAlgorithm::Md5)
                .unwrap();
            let mut out = Vec::new();
            let mut enc = MessageEncoder::new(
                &mut out,
                MessageType::new(Class::Request, Method::CREATE_PERMISSION),
                TransactionId([tid; 12]),
            );
            TurnAttribute::XorPeerAddress(peer.parse().unwrap()).emit(&mut enc);
            let n = s.nonce(now, at(1), LISTEN.parse().unwrap());
            enc.attribute(&Attribute::Username("alice"));
            enc.attribute(&Attribute::Realm("rtclab"));
            enc.attribute(&Attribute::Nonce(&n));
            enc.message_integrity(&key);
            enc.finish().unwrap();
            exchange(s, now, at(1), Transport::Udp, &out, &[]).0
        };
        assert_eq!(ask(&mut s, "198.51.100.1:50003", 2), 0);
        assert_eq!(ask(&mut s, "198.51.100.1:50004", 3), 403);
        assert_eq!(ask(&mut s, "198.51.100.1:3478", 4), 403);
    }
}
