//! A sans-IO TURN server (RFC 8656 §5–§12) over UDP, with long-term
//! credentials.
//!
//! ## Relayed sockets
//!
//! A sans-IO machine cannot open sockets, so the server is given a fixed pool
//! of relay addresses at start ([`ServerConfig::relays`]); the caller binds
//! them with the listening address (the runtime [`Driver`](crate::runtime::Driver)
//! binds every address of [`Server::local_addrs`]). An allocation takes one
//! address from the pool and gives it back when it ends; an empty pool
//! answers 508 (Insufficient Capacity). This keeps the
//! [`Machine`] contract unchanged (no "open a socket" output) at the price of
//! a server whose capacity is fixed when it starts — the honest trade-off for
//! a teaching server; coturn instead opens a socket per allocation.
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
//!   a transport other than UDP, 440 for an IPv6 relay, 486 past the per-user
//!   quota, 508 when the relay pool is empty (or holds no even port for
//!   EVEN-PORT), 420 for unknown
//!   comprehension-required attributes, 400 for malformed requests;
//! - permissions last 300 s (§9) except that a bound channel keeps its
//!   peer's permission as long as itself (as coturn does: aioice refreshes
//!   channels, never permissions), channels 600 s (§12), allocations at most
//!   [`MAX_LIFETIME`];
//! - no datagram is relayed to or from a peer without a permission, and a
//!   peer in [`ServerConfig::denied_peer_ips`] (by default link-local with
//!   the cloud metadata address 169.254.169.254, 0/8, multicast, broadcast,
//!   unspecified; see [`peer_policy`] for the choice beside coturn's) gets
//!   403 unless in [`ServerConfig::allowed_peer_ips`]; so does a peer on
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
//! ([`ServerConfig::software`], `turn-server --software`); and FINGERPRINT
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

/// Most real listening addresses a wildcard-bound server remembers (one per
/// address of the host that clients use); none of them is a valid peer.
const MAX_LISTEN_ADDRS_SEEN: usize = 32;

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where clients reach it.
    pub listen: SocketAddr,
    /// The pool of relayed transport addresses (bound by the caller).
    pub relays: Vec<SocketAddr>,
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

impl ServerConfig {
    /// A configuration for one user.
    pub fn new(listen: SocketAddr, relays: Vec<SocketAddr>, realm: &str) -> Self {
        ServerConfig {
            listen,
            relays,
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
    config: ServerConfig,
    keys: HashMap<String, IntegrityKey>,
    secret: IntegrityKey,
    epoch: Instant,
    locals: Vec<SocketAddr>,
    local_set: HashSet<SocketAddr>,
    /// With a wildcard listening address: the real addresses clients sent
    /// to (the listening socket on each of them), at most
    /// [`MAX_LISTEN_ADDRS_SEEN`], so that no peer can be one of them.
    listen_addrs_seen: Vec<SocketAddr>,
    /// One slot per relay address of the pool (same index).
    slots: Vec<Option<Allocation>>,
    /// Allocations made per slot, so far.
    generations: Vec<u64>,
    /// Free slots; the last is taken first.
    free: Vec<usize>,
    /// By client address (the 5-tuple: UDP, the one listening address).
    by_client: HashMap<SocketAddr, usize>,
    /// By relay address (fixed: the pool).
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
    /// [`ServerConfig::auth_secret`] as an HMAC key.
    auth_secret: Option<IntegrityKey>,
    /// The Unix time, in seconds, at `epoch` (see [`Server::set_unix_time`]).
    unix_at_epoch: Option<u64>,
}

struct Auth {
    username: String,
    key: IntegrityKey,
}

impl Server {
    /// A server; `now` starts its clock (nonces), `rng` its nonce secret.
    pub fn new(config: ServerConfig, now: Instant, rng: &mut StdRng) -> Self {
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
        locals.extend(config.relays.iter().copied());
        let n = config.relays.len();
        let by_relay = config
            .relays
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, i))
            .collect();
        Server {
            keys,
            secret: IntegrityKey::from_bytes(&secret),
            epoch: now,
            local_set: locals.iter().copied().collect(),
            listen_addrs_seen: Vec::new(),
            locals,
            slots: (0..n).map(|_| None).collect(),
            generations: vec![0; n],
            free: (0..n).rev().collect(),
            by_client: HashMap::new(),
            by_relay,
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
    /// ([`ServerConfig::auth_secret`]); a sans-IO machine reads no clock,
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
        let &slot = self.by_client.get(client)?;
        self.slots.get(slot)?.as_ref()
    }

    fn allocation_mut(&mut self, client: &SocketAddr) -> Option<&mut Allocation> {
        let &slot = self.by_client.get(client)?;
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
        if self.config.relays.contains(&peer) {
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
        v4.is_loopback() || self.locals.iter().any(|l| l.ip() == ip || l.ip() == v4)
    }

    fn send(&mut self, source: SocketAddr, destination: SocketAddr, contents: Vec<u8>) {
        self.transmits.push_back(Transmit {
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
        let Ok(msg) = Message::decode(d.contents) else {
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
        match turn_attr::get(msg, attr::REQUESTED_TRANSPORT) {
            Ok(Some(TurnAttribute::RequestedTransport(PROTOCOL_UDP))) => {}
            Ok(Some(_)) => return self.error(d, msg, UNSUPPORTED_TRANSPORT, None, key, now),
            _ => return self.error(d, msg, error_code::BAD_REQUEST, None, key, now),
        }
        if let Ok(Some(TurnAttribute::RequestedAddressFamily(f))) =
            turn_attr::get(msg, attr::REQUESTED_ADDRESS_FAMILY)
        {
            if f != turn_attr::AddressFamily::of(self.config.listen) {
                return self.error(d, msg, FAMILY_NOT_SUPPORTED, None, key, now);
            }
        }
        // RFC 8656 §7.2: EVEN-PORT asks for an even relay port, which the
        // pool may hold; reserving the next one (R bit) and
        // RESERVATION-TOKEN it cannot promise: 508.
        let even = match turn_attr::get(msg, attr::EVEN_PORT) {
            Ok(Some(TurnAttribute::EvenPort { reserve: false })) => true,
            Ok(None) => false,
            _ => return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now),
        };
        if msg.get(attr::RESERVATION_TOKEN).is_some() {
            return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
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
        let relays = &self.config.relays;
        let pick = if even {
            self.free
                .iter()
                .rposition(|&s| relays.get(s).is_some_and(|a| a.port() % 2 == 0))
        } else {
            self.free.len().checked_sub(1)
        };
        let Some(slot) = pick.map(|i| self.free.remove(i)) else {
            return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
        };
        let Some(&relay) = self.config.relays.get(slot) else {
            // Unreachable: slots are indexes into the pool.
            return self.error(d, msg, INSUFFICIENT_CAPACITY, None, key, now);
        };
        let lifetime = granted_lifetime(msg);
        let mut out = Vec::with_capacity(128);
        let mut enc = self.success(&mut out, msg);
        TurnAttribute::XorRelayedAddress(relay).encode(&mut enc);
        TurnAttribute::Lifetime(lifetime.as_secs() as u32).encode(&mut enc);
        enc.attribute(&Attribute::XorMappedAddress(d.source));
        enc.message_integrity(&auth.key);
        fingerprint_if_asked(&mut enc, msg);
        if enc.finish().is_err() {
            self.free.push(slot);
            return;
        }
        tracing::debug!(client = %d.source, %relay, user = %auth.username, "TURN allocation");
        self.stats.allocations += 1;
        self.generations[slot] += 1;
        let generation = self.generations[slot];
        self.by_client.insert(d.source, slot);
        self.slots[slot] = Some(Allocation {
            generation,
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

    fn refresh(&mut self, now: Instant, d: Receive<'_>, msg: &Message<'_>, auth: Auth) {
        let requested = turn_attr::lifetime(msg);
        let lifetime = if requested == Some(Duration::ZERO) {
            self.remove(d.source);
            Duration::ZERO
        } else {
            let l = granted_lifetime(msg);
            if let Some(a) = self.allocation_mut(&d.source) {
                a.expires = now + l;
            }
            if let Some(&slot) = self.by_client.get(&d.source) {
                self.arm(now + l, slot, Timer::Allocation);
            }
            l
        };
        let mut out = Vec::with_capacity(64);
        let mut enc = self.success(&mut out, msg);
        TurnAttribute::Lifetime(lifetime.as_secs() as u32).encode(&mut enc);
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
        let Some(&slot) = self.by_client.get(&d.source) else {
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
        let Some(&slot) = self.by_client.get(&d.source) else {
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
            attributes::encode_unknown_attributes(types, &mut list);
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
        let Ok(cd) = ChannelData::decode_rfc5766(d.contents) else {
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
        let (client, server) = (a.client, a.server);
        let channel = a
            .channel_of
            .get(&d.source)
            .copied()
            .filter(|c| a.channels.get(c).is_some_and(|&(_, e)| now < e));
        match channel {
            Some(channel) => {
                if (ChannelData {
                    channel,
                    data: d.contents,
                })
                .encode(out)
                .is_err()
                {
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
                TurnAttribute::XorPeerAddress(d.source).encode(&mut enc);
                TurnAttribute::Data(d.contents).encode(&mut enc);
                if enc.finish().is_err() {
                    self.stats.dropped += 1;
                    return None;
                }
            }
        }
        self.stats.to_client += 1;
        tracing::trace!(peer = %d.source, relay = %d.destination, %client, ?channel, len = d.contents.len(), "relayed to client");
        Some(Route {
            source: server,
            destination: client,
        })
    }

    fn remove(&mut self, client: SocketAddr) {
        let Some(slot) = self.by_client.remove(&client) else {
            return;
        };
        if let Some(a) = self.slots.get_mut(slot).and_then(Option::take) {
            self.free.push(slot);
            tracing::debug!(%client, relay = %a.relay, "TURN allocation released");
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
                    let client = a.client;
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
    type Event = std::convert::Infallible;

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
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<std::convert::Infallible> {
        None
    }

    /// The earliest deadline in the heap (possibly one a refresh made
    /// moot: the wake-up then finds nothing to do).
    fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, ..))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::turn::client::{Client, ClientConfig, ClientEvent};
    use rand::SeedableRng;

    const LISTEN: &str = "198.51.100.1:3478";
    static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(9);
    const CLIENT: &str = "203.0.113.5:40000";

    fn server(now: Instant, quota: usize, loopback: bool) -> Server {
        let relays = (0..4)
            .map(|i| SocketAddr::new("198.51.100.1".parse().unwrap(), 50000 + i))
            .collect();
        let mut c = ServerConfig::new(LISTEN.parse().unwrap(), relays, "rtclab");
        c.users.push(("alice".into(), "secret".into()));
        c.users.push(("bob".into(), "pw".into()));
        c.quota_per_user = quota;
        c.allow_loopback_peers = loopback;
        Server::new(c, now, &mut StdRng::seed_from_u64(3))
    }

    /// Runs a client and the server against each other by hand until quiet.
    fn pump(s: &mut Server, c: &mut Client, from: SocketAddr, now: Instant) {
        let _ = pump_recording(s, c, from, now);
    }

    fn client(user: &str, pw: &str) -> Client {
        Client::new(
            ClientConfig::new(LISTEN.parse().unwrap(), user, pw),
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
    ) -> (Client, Option<ClientEvent>) {
        let mut c = client(user, pw);
        c.allocate(now).unwrap();
        pump(s, &mut c, from, now);
        let e = c.poll_event();
        (c, e)
    }

    fn code(e: Option<ClientEvent>) -> u16 {
        match e {
            Some(ClientEvent::AllocationFailed(crate::turn::TurnError::ErrorResponse {
                code,
                ..
            }))
            | Some(ClientEvent::PermissionFailed {
                error: crate::turn::TurnError::ErrorResponse { code, .. },
                ..
            })
            | Some(ClientEvent::ChannelBindFailed {
                error: crate::turn::TurnError::ErrorResponse { code, .. },
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
        let Some(ClientEvent::Allocated {
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
            Some(ClientEvent::PermissionCreated(peer.ip()))
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
            Some(ClientEvent::Data {
                peer,
                data: b"back".to_vec()
            })
        );
        // A channel.
        let ch = c.bind_channel(now, peer).unwrap();
        pump(&mut s, &mut c, from, now);
        assert_eq!(
            c.poll_event(),
            Some(ClientEvent::ChannelBound { peer, channel: ch })
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
            ChannelData::decode(&t.contents).unwrap(),
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
        let mut config = ServerConfig::new("0.0.0.0:3478".parse().unwrap(), vec![relay], "rtclab");
        config.users.push(("alice".into(), "secret".into()));
        let mut s = Server::new(config, now, &mut StdRng::seed_from_u64(3));
        let second: SocketAddr = "198.51.100.2:3478".parse().unwrap();
        let mut c = Client::new(
            ClientConfig::new(second, "alice", "secret"),
            StdRng::seed_from_u64(4),
        );
        c.allocate(now).unwrap();
        let from: SocketAddr = CLIENT.parse().unwrap();
        pump(&mut s, &mut c, from, now);
        assert!(
            matches!(c.poll_event(), Some(ClientEvent::Allocated { relayed, .. }) if relayed == relay)
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
        assert!(matches!(e, Some(ClientEvent::Allocated { .. })));
        // 437: a second Allocate on the same 5-tuple.
        assert_eq!(code(allocate(&mut s, "alice", "secret", from, now).1), 437);
        // 486: alice's quota is 1.
        let other: SocketAddr = "203.0.113.5:40001".parse().unwrap();
        assert_eq!(code(allocate(&mut s, "alice", "secret", other, now).1), 486);
        // 441: bob on alice's allocation (bob allocates elsewhere, then his
        // client sends a CreatePermission from alice's address).
        let (mut b, e) = allocate(&mut s, "bob", "pw", other, now);
        assert!(matches!(e, Some(ClientEvent::Allocated { .. })));
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
        let m = Message::decode(&t.contents).unwrap();
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
        TurnAttribute::RequestedTransport(transport).encode(&mut enc);
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
        let key =
            IntegrityKey::long_term("alice", "rtclab", "secret", PasswordAlgorithm::Md5).unwrap();
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Request, method),
            TransactionId([tid; 12]),
        );
        for a in attributes {
            a.encode(&mut enc);
        }
        let n = s.nonce(now, CLIENT.parse().unwrap(), LISTEN.parse().unwrap());
        enc.attribute(&Attribute::Username("alice"));
        enc.attribute(&Attribute::Realm("rtclab"));
        enc.attribute(&Attribute::Nonce(&n));
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
        let Some(ClientEvent::Allocated { relayed, .. }) = e else {
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
        let relayed = |e: Option<ClientEvent>| match e {
            Some(ClientEvent::Allocated { relayed, .. }) => relayed,
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
                Some(ClientEvent::PermissionCreated(peer.ip()))
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
            Some(ClientEvent::Data {
                peer: ra,
                data: b"to bob".to_vec()
            })
        );
        // The listening socket stays out of reach.
        a.create_permission(now, LISTEN.parse().unwrap()).unwrap();
        pump(&mut s, &mut a, fa, now);
        assert!(matches!(
            a.poll_event(),
            Some(ClientEvent::PermissionFailed { .. })
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
        let Some(ClientEvent::Allocated { relayed, .. }) = e else {
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
        let Some(ClientEvent::Allocated { relayed, .. }) = e else {
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
        .encode(&mut frame)
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
                ChannelData::decode(&out).unwrap(),
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
            Some(ClientEvent::PermissionCreated(_))
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
        let m = Message::decode(&t.contents).unwrap();
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
            Some(ClientEvent::Allocated { .. })
        ));
        let captured = sent
            .iter()
            .rev()
            .find(|m| Message::decode(m).is_ok_and(|m| m.has_integrity()))
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
        assert!(matches!(e, Some(ClientEvent::Allocated { .. })), "{e:?}");
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
        TurnAttribute::RequestedTransport(PROTOCOL_UDP).encode(&mut enc);
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
        let m = Message::decode(&t.contents).unwrap();
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
            Some(ClientEvent::PermissionCreated("192.0.2.1".parse().unwrap()))
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
            let m = Message::decode(&t.contents).unwrap();
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
    fn server_with(now: Instant, relays: u16, edit: impl FnOnce(&mut ServerConfig)) -> Server {
        let relays = (0..relays)
            .map(|i| SocketAddr::new("198.51.100.1".parse().unwrap(), 50000 + i))
            .collect();
        let mut c = ServerConfig::new(LISTEN.parse().unwrap(), relays, "rtclab");
        c.users.push(("alice".into(), "secret".into()));
        edit(&mut c);
        Server::new(c, now, &mut StdRng::seed_from_u64(3))
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
                matches!(e, Some(ClientEvent::Allocated { .. })),
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
            assert!(matches!(e, Some(ClientEvent::Allocated { .. })), "{e:?}");
        }
        // The user's quota: 486 (RFC 8656 §7.2).
        assert_eq!(code(allocate(&mut s, "alice", "secret", at(3), now).1), 486);
        let (_, e) = allocate(&mut s, "bob", "pw", at(4), now);
        assert!(matches!(e, Some(ClientEvent::Allocated { .. })), "{e:?}");
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
        assert!(matches!(e, Some(ClientEvent::Allocated { .. })), "{e:?}");
        // A wrong password, a name without expiry: 401.
        assert_eq!(code(allocate(&mut s, user, "x", at(3), t0).1), 401);
        assert_eq!(code(allocate(&mut s, "alice2", password, at(4), t0).1), 401);
        // Static users still work beside the secret.
        let (_, e) = allocate(&mut s, "alice", "secret", at(5), t0);
        assert!(matches!(e, Some(ClientEvent::Allocated { .. })), "{e:?}");
        // Once the expiry has passed: 401, and no strike against the source.
        let later = t0 + Duration::from_secs(61);
        for _ in 0..2 * throttle::FAILURES_ALLOWED {
            assert_eq!(code(allocate(&mut s, user, password, at(6), later).1), 401);
        }
        assert!(!s.throttle.blocked(later, at(6).ip()));
    }
}
