//! The simulator proper: hosts, realms, the event queue and the run loop.

use std::any::Any;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::link::{Link, LinkConfig, Transit};
use super::nat::{Nat, NatBinding, NatConfig, NatStats};
use crate::machine::{Machine, Receive, Transmit};

/// The smallest step of the virtual clock: two consecutive steps are at least
/// this far apart, so a machine that keeps asking for a timeout in the past
/// cannot freeze time.
pub const MIN_STEP: Duration = Duration::from_micros(1);

/// How many times in a row a machine may ask to be woken at or before the
/// instant it was just woken at before the simulator calls it a bug (see
/// [`Sim::set_spin_limit`]).
pub const DEFAULT_SPIN_LIMIT: u32 = 10_000;

/// How many records the packet capture keeps by default (oldest dropped
/// first).
pub const DEFAULT_CAPTURE_LIMIT: usize = 100_000;

/// A host in the simulation, returned by [`Sim::add_host`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub(crate) usize);

impl HostId {
    /// The host's index, in the order hosts were added.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host{}", self.0)
    }
}

/// A NAT box in the simulation, returned by [`Sim::add_nat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NatId(usize);

impl NatId {
    /// The NAT's index, in the order NATs were added.
    pub fn index(self) -> usize {
        self.0
    }
}

impl fmt::Display for NatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nat{}", self.0)
    }
}

/// An address space: the public internet, or the inside of one NAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Realm {
    Public,
    Inside(NatId),
}

/// Why a datagram did not arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// Random loss on an access link.
    Loss,
    /// The bottleneck queue of an access link was full.
    QueueFull,
    /// Bigger than an access link's MTU.
    TooBig,
    /// Sent to a NAT's public address on a port without a mapping.
    NatNoMapping,
    /// Refused by a NAT's filtering behaviour.
    NatFiltered,
    /// Sent to the NAT's own public address from inside with hairpinning off.
    HairpinDisabled,
    /// The NAT had no free external port.
    NatPortsExhausted,
    /// No host or NAT owns the destination address.
    Unroutable,
    /// The machine asked to send from an address its host does not have.
    InvalidSource,
    /// Crossed too many NATs (a topology loop).
    TooManyHops,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropReason::Loss => "lost on a link",
            DropReason::QueueFull => "link queue full",
            DropReason::TooBig => "bigger than the link MTU",
            DropReason::NatNoMapping => "no NAT mapping for the destination port",
            DropReason::NatFiltered => "refused by the NAT filter",
            DropReason::HairpinDisabled => "NAT does not hairpin",
            DropReason::NatPortsExhausted => "NAT out of external ports",
            DropReason::Unroutable => "no route to the destination",
            DropReason::InvalidSource => "source address not owned by the host",
            DropReason::TooManyHops => "crossed too many NATs",
        })
    }
}

/// Packet counters, per host ([`Sim::host_stats`]), per NAT WAN link
/// ([`Sim::nat_link_stats`]), or summed over all of them ([`Sim::stats`]).
///
/// For one host: `sent`/`bytes_sent` count datagrams its machine emitted,
/// `delivered`/`bytes_delivered` those handed to its machine; `lost`,
/// `duplicated`, `queue_dropped` and `too_big` count what the host's own access links
/// (up and down) did; `nat_filtered` (any NAT refusal: no mapping, filter,
/// hairpin off, ports exhausted) and `unroutable` (including invalid sources
/// and hop limits) count datagrams this host sent.
///
/// Summed over all hosts and NAT links, every datagram is accounted for:
/// `sent + duplicated == delivered + lost + queue_dropped + too_big +
/// nat_filtered + unroutable + in_flight` (see [`Sim::in_flight`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams delivered.
    pub delivered: u64,
    /// Bytes delivered (UDP payload).
    pub bytes_delivered: u64,
    /// Datagrams lost on a link.
    pub lost: u64,
    /// Extra copies made by a link.
    pub duplicated: u64,
    /// Datagrams dropped by a full link queue.
    pub queue_dropped: u64,
    /// Datagrams dropped for exceeding a link's MTU.
    pub too_big: u64,
    /// Datagrams dropped by a NAT.
    pub nat_filtered: u64,
    /// Datagrams nobody could route.
    pub unroutable: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.sent += o.sent;
        self.bytes_sent += o.bytes_sent;
        self.delivered += o.delivered;
        self.bytes_delivered += o.bytes_delivered;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.queue_dropped += o.queue_dropped;
        self.too_big += o.too_big;
        self.nat_filtered += o.nat_filtered;
        self.unroutable += o.unroutable;
    }
}

/// What a capture record saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureKind {
    /// The host's machine emitted the datagram (addresses as the sender
    /// wrote them, before any NAT).
    Sent,
    /// The host's machine received the datagram (addresses as the receiver
    /// sees them, after every NAT).
    Delivered,
    /// The datagram was dropped (addresses as they were at that point).
    Dropped(DropReason),
}

/// One packet capture record (see [`Sim::set_capture`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureRecord {
    /// Virtual time since the simulation started.
    pub time: Duration,
    /// The sending host for `Sent` and `Dropped`, the receiving host for
    /// `Delivered`.
    pub host: HostId,
    /// What happened.
    pub kind: CaptureKind,
    /// Source address at that point.
    pub source: SocketAddr,
    /// Destination address at that point.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub contents: Vec<u8>,
}

impl fmt::Display for CaptureRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            CaptureKind::Sent => "sent".to_string(),
            CaptureKind::Delivered => "delivered".to_string(),
            CaptureKind::Dropped(r) => format!("dropped ({r})"),
        };
        write!(
            f,
            "{:>12.6}s {} {} {} -> {} {} bytes",
            self.time.as_secs_f64(),
            self.host,
            what,
            self.source,
            self.destination,
            self.contents.len()
        )
    }
}

/// The object-safe face of [`Machine`] the simulator stores (events stay in
/// the machine, so the event type disappears).
trait SimMachine {
    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self) -> Option<Transmit>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn type_name(&self) -> &'static str;
}

impl<M: Machine + 'static> SimMachine for M {
    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        Machine::handle_receive(self, now, datagram)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Machine::handle_timeout(self, now)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Machine::poll_transmit(self)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Machine::poll_timeout(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn type_name(&self) -> &'static str {
        std::any::type_name::<M>()
    }
}

struct Host {
    machine: Box<dyn SimMachine>,
    addrs: Vec<SocketAddr>,
    realm: Realm,
    up: Link,
    down: Link,
    stats: Stats,
    /// Consecutive wake-ups after which the machine still wanted a timeout
    /// at or before the instant it was woken at.
    spins: u32,
    /// A name for logs ("alice", "stun"); "host3" by default.
    name: String,
    /// May send from addresses it does not own (an attacker).
    spoofing: bool,
}

struct NatBox {
    nat: Nat,
    outer: Realm,
    /// The optional shared WAN link (inside → outside, outside → inside).
    up: Option<Link>,
    down: Option<Link>,
    /// What those links did (only the link counters are used).
    link_stats: Stats,
}

/// A datagram in flight.
#[derive(Debug, Clone)]
struct Packet {
    origin: HostId,
    source: SocketAddr,
    destination: SocketAddr,
    contents: Vec<u8>,
}

#[derive(Debug)]
enum Event {
    /// The packet left a host's uplink into `realm`: route it (NATs act now).
    Arrive { realm: Realm, packet: Packet },
    /// The packet left `host`'s downlink: hand it to the machine.
    Deliver { host: HostId, packet: Packet },
}

struct Scheduled {
    time: Instant,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// The size of a datagram as an IP packet: UDP payload + UDP header (8) + IP
/// header (20 for IPv4, 40 for IPv6).
fn wire_len(packet: &Packet) -> usize {
    let ip = if packet.destination.is_ipv4() { 20 } else { 40 };
    packet.contents.len() + 8 + ip
}

/// The most NATs a datagram may cross (a guard against topology loops).
const MAX_HOPS: u32 = 16;

/// SplitMix64: turns (seed, component) into independent RNG seeds, so that
/// adding a NAT does not change the loss pattern of an unrelated link.
fn derive_seed(seed: u64, component: u64) -> u64 {
    let mut z = seed ^ component.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A deterministic network of sans-IO machines at virtual time. See the
/// [module documentation](crate::sim).
pub struct Sim {
    seed: u64,
    start: Instant,
    now: Instant,
    last_step: Option<Instant>,
    hosts: Vec<Host>,
    nats: Vec<NatBox>,
    host_addrs: BTreeMap<(Realm, SocketAddr), HostId>,
    host_ips: BTreeSet<(Realm, IpAddr)>,
    nat_ips: BTreeMap<(Realm, IpAddr), NatId>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    default_link: LinkConfig,
    capture: Option<VecDeque<CaptureRecord>>,
    capture_limit: usize,
    capture_overflow: u64,
    spin_limit: u32,
    steps: u64,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("elapsed", &self.elapsed())
            .field("hosts", &self.hosts.len())
            .field("nats", &self.nats.len())
            .field("in_flight", &self.queue.len())
            .finish()
    }
}

impl Sim {
    /// A new, empty network. Its clock starts at an `Instant` captured now
    /// (only offsets from it matter); every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        let start = Instant::now();
        Sim {
            seed,
            start,
            now: start,
            last_step: None,
            hosts: Vec::new(),
            nats: Vec::new(),
            host_addrs: BTreeMap::new(),
            host_ips: BTreeSet::new(),
            nat_ips: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            default_link: LinkConfig::default(),
            capture: None,
            capture_limit: DEFAULT_CAPTURE_LIMIT,
            capture_overflow: 0,
            spin_limit: DEFAULT_SPIN_LIMIT,
            steps: 0,
        }
    }

    /// The seed this simulation was created with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant the virtual clock started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// How many steps have run.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// A random number generator for the test's own use (an ICE agent's
    /// tie-breaker, a DTLS endpoint's randoms), derived from the seed and
    /// `stream`: the same seed and stream always give the same sequence, so
    /// one seed replays a whole scenario, machines included.
    pub fn rng(&self, stream: u64) -> StdRng {
        StdRng::seed_from_u64(derive_seed(self.seed, (2 << 32) + stream))
    }

    /// Every host, in the order they were added.
    pub fn hosts(&self) -> impl Iterator<Item = HostId> + use<> {
        (0..self.hosts.len()).map(HostId)
    }

    /// The link configuration given to hosts added from now on (both
    /// directions). Initially [`LinkConfig::default`].
    pub fn set_default_link(&mut self, config: LinkConfig) {
        self.default_link = config;
    }

    /// How many consecutive times a machine may, right after
    /// `handle_timeout(t)`, still report a `poll_timeout()` at or before `t`
    /// before the simulator panics. Each such wake-up costs one
    /// [`MIN_STEP`] of virtual time; a machine that honours the contract
    /// (fire every due timer) never gets near the limit.
    pub fn set_spin_limit(&mut self, limit: u32) {
        self.spin_limit = limit;
    }

    // ----- topology -----------------------------------------------------

    /// Adds a host on the public internet that owns `addrs` (the first is the
    /// default source for `Transmit { source: None, .. }`; a wildcard source
    /// like `0.0.0.0:3478` means the first address with that port) and runs
    /// `machine`.
    /// Its access link starts as the default link (see
    /// [`Sim::set_default_link`]). Whatever the machine already wants to send
    /// is collected at once.
    ///
    /// # Panics
    ///
    /// If `addrs` is empty or an address is already taken in that realm.
    pub fn add_host<M: Machine + 'static>(&mut self, machine: M, addrs: &[SocketAddr]) -> HostId {
        self.insert_host(Box::new(machine), addrs, Realm::Public)
    }

    /// Adds a host in the private realm behind `nat`; see [`Sim::add_host`].
    ///
    /// # Panics
    ///
    /// As [`Sim::add_host`], or if `nat` does not exist.
    pub fn add_host_behind<M: Machine + 'static>(
        &mut self,
        nat: NatId,
        machine: M,
        addrs: &[SocketAddr],
    ) -> HostId {
        assert!(nat.0 < self.nats.len(), "sim: no {nat}");
        self.insert_host(Box::new(machine), addrs, Realm::Inside(nat))
    }

    fn insert_host(
        &mut self,
        machine: Box<dyn SimMachine>,
        addrs: &[SocketAddr],
        realm: Realm,
    ) -> HostId {
        assert!(!addrs.is_empty(), "sim: a host needs at least one address");
        let id = HostId(self.hosts.len());
        for a in addrs {
            assert!(
                !self.host_addrs.contains_key(&(realm, *a)),
                "sim: address {a} is already taken in {realm:?}"
            );
            assert!(
                !self.nat_ips.contains_key(&(realm, a.ip())),
                "sim: address {a} is a NAT's public IP in {realm:?}"
            );
        }
        for a in addrs {
            self.host_addrs.insert((realm, *a), id);
            self.host_ips.insert((realm, a.ip()));
        }
        let base = 2 * id.0 as u64;
        let up = Link::new(
            self.default_link.clone(),
            StdRng::seed_from_u64(derive_seed(self.seed, base)),
        );
        let down = Link::new(
            self.default_link.clone(),
            StdRng::seed_from_u64(derive_seed(self.seed, base + 1)),
        );
        self.hosts.push(Host {
            machine,
            addrs: addrs.to_vec(),
            realm,
            up,
            down,
            stats: Stats::default(),
            spins: 0,
            name: id.to_string(),
            spoofing: false,
        });
        self.collect_from(id);
        id
    }

    /// Moves `host` to another place in the network: behind `nat` (`None`
    /// for the public internet), owning `addrs` from now on. This models a
    /// device switching networks (Wi-Fi to mobile): datagrams still in flight
    /// to its old addresses are dropped as unroutable, NAT mappings of its
    /// old addresses linger until they time out, and the machine itself is
    /// untouched (noticing the change, e.g. by an ICE restart, is its job).
    /// Links and counters carry over.
    ///
    /// # Panics
    ///
    /// As [`Sim::add_host`], or if `host` or `nat` does not exist.
    pub fn move_host(&mut self, host: HostId, nat: Option<NatId>, addrs: &[SocketAddr]) {
        assert!(!addrs.is_empty(), "sim: a host needs at least one address");
        let realm = match nat {
            Some(n) => {
                assert!(n.0 < self.nats.len(), "sim: no {n}");
                Realm::Inside(n)
            }
            None => Realm::Public,
        };
        let old_realm = self.host(host).realm;
        for a in self.host(host).addrs.clone() {
            self.host_addrs.remove(&(old_realm, a));
        }
        for a in addrs {
            assert!(
                !self.host_addrs.contains_key(&(realm, *a)),
                "sim: address {a} is already taken in {realm:?}"
            );
            assert!(
                !self.nat_ips.contains_key(&(realm, a.ip())),
                "sim: address {a} is a NAT's public IP in {realm:?}"
            );
            self.host_addrs.insert((realm, *a), host);
        }
        self.host_ips = self.host_addrs.keys().map(|(r, a)| (*r, a.ip())).collect();
        let h = self.host_mut(host);
        h.realm = realm;
        h.addrs = addrs.to_vec();
        tracing::debug!(%host, ?addrs, "sim: host moved");
    }

    /// Adds a NAT whose outside is the public internet.
    ///
    /// # Panics
    ///
    /// If its public IP is already used by a host or NAT on the internet.
    pub fn add_nat(&mut self, config: NatConfig) -> NatId {
        self.insert_nat(config, Realm::Public)
    }

    /// Adds a NAT whose outside is the private realm behind `parent` (a
    /// nested NAT, "carrier-grade NAT" style): `config.public_ip` is then an
    /// address in the parent's private realm.
    ///
    /// # Panics
    ///
    /// As [`Sim::add_nat`], or if `parent` does not exist.
    pub fn add_nat_behind(&mut self, parent: NatId, config: NatConfig) -> NatId {
        assert!(parent.0 < self.nats.len(), "sim: no {parent}");
        self.insert_nat(config, Realm::Inside(parent))
    }

    fn insert_nat(&mut self, config: NatConfig, outer: Realm) -> NatId {
        let ip = config.public_ip;
        assert!(
            !self.nat_ips.contains_key(&(outer, ip)) && !self.host_ips.contains(&(outer, ip)),
            "sim: NAT address {ip} is already taken in {outer:?}"
        );
        let id = NatId(self.nats.len());
        let rng = StdRng::seed_from_u64(derive_seed(self.seed, (1 << 32) + id.0 as u64));
        self.nat_ips.insert((outer, ip), id);
        self.nats.push(NatBox {
            nat: Nat::new(config, rng),
            outer,
            up: None,
            down: None,
            link_stats: Stats::default(),
        });
        id
    }

    /// Gives `nat` a WAN link in both directions: every datagram crossing
    /// the NAT also crosses it, so the hosts behind share its rate, queue
    /// and delay (a home's uplink, a path across the ocean). Without one
    /// (the default) the NAT adds no delay. Hairpinned datagrams stay inside
    /// the box and skip it; so does traffic between hosts behind the NAT.
    pub fn set_nat_link(&mut self, nat: NatId, config: LinkConfig) {
        self.set_nat_uplink(nat, config.clone());
        self.set_nat_downlink(nat, config);
    }

    /// Sets the inside → outside direction of `nat`'s WAN link.
    pub fn set_nat_uplink(&mut self, nat: NatId, config: LinkConfig) {
        let seed = derive_seed(self.seed, (3 << 32) + 2 * nat.0 as u64);
        let n = self.nat_box_mut(nat);
        match &mut n.up {
            Some(l) => l.set_config(config),
            None => n.up = Some(Link::new(config, StdRng::seed_from_u64(seed))),
        }
    }

    /// Sets the outside → inside direction of `nat`'s WAN link.
    pub fn set_nat_downlink(&mut self, nat: NatId, config: LinkConfig) {
        let seed = derive_seed(self.seed, (3 << 32) + 2 * nat.0 as u64 + 1);
        let n = self.nat_box_mut(nat);
        match &mut n.down {
            Some(l) => l.set_config(config),
            None => n.down = Some(Link::new(config, StdRng::seed_from_u64(seed))),
        }
    }

    /// What `nat`'s WAN link did: its `lost`, `duplicated`, `queue_dropped`
    /// and `too_big` counters (the others stay zero). [`Sim::stats`]
    /// includes them.
    pub fn nat_link_stats(&self, nat: NatId) -> Stats {
        self.nat_box(nat).link_stats
    }

    /// Names `host` for the logs (`tracing` shows it instead of `host3`).
    pub fn set_name(&mut self, host: HostId, name: &str) {
        self.host_mut(host).name = name.to_string();
    }

    /// The name of `host` (see [`Sim::set_name`]).
    pub fn name(&self, host: HostId) -> &str {
        &self.host(host).name
    }

    /// Lets `host` send from any source address (an off-path attacker
    /// forging datagrams; a test injecting a crafted packet "from" a peer).
    /// The datagram starts from the host's own place in the network, and
    /// replies go to the forged address, not back to the host.
    pub fn set_spoofing(&mut self, host: HostId, allowed: bool) {
        self.host_mut(host).spoofing = allowed;
    }

    /// Sets both directions of `host`'s access link.
    pub fn set_link(&mut self, host: HostId, config: LinkConfig) {
        let h = self.host_mut(host);
        h.up.set_config(config.clone());
        h.down.set_config(config);
    }

    /// Sets `host`'s uplink (host → network).
    pub fn set_uplink(&mut self, host: HostId, config: LinkConfig) {
        self.host_mut(host).up.set_config(config);
    }

    /// Sets `host`'s downlink (network → host).
    pub fn set_downlink(&mut self, host: HostId, config: LinkConfig) {
        self.host_mut(host).down.set_config(config);
    }

    /// The configuration of `host`'s (uplink, downlink).
    pub fn link(&self, host: HostId) -> (&LinkConfig, &LinkConfig) {
        let h = self.host(host);
        (&h.up.config, &h.down.config)
    }

    /// The addresses `host` owns.
    pub fn addrs(&self, host: HostId) -> &[SocketAddr] {
        &self.host(host).addrs
    }

    /// The NAT `host` sits behind, if any.
    pub fn nat_of(&self, host: HostId) -> Option<NatId> {
        match self.host(host).realm {
            Realm::Public => None,
            Realm::Inside(n) => Some(n),
        }
    }

    /// A NAT's configuration.
    pub fn nat_config(&self, nat: NatId) -> &NatConfig {
        &self.nat_box(nat).nat.config
    }

    /// A NAT's counters.
    pub fn nat_stats(&self, nat: NatId) -> NatStats {
        self.nat_box(nat).nat.stats
    }

    /// The NAT's live mappings at the current time, by external port.
    pub fn nat_bindings(&mut self, nat: NatId) -> Vec<NatBinding> {
        let now = self.now;
        self.nat_box_mut(nat).nat.bindings(now)
    }

    // ----- machines -----------------------------------------------------

    /// The machine of `host`, as its concrete type.
    ///
    /// # Panics
    ///
    /// If the host runs another type (test misuse); see
    /// [`Sim::try_machine`].
    pub fn machine<M: Machine + 'static>(&self, host: HostId) -> &M {
        let m = &self.host(host).machine;
        match m.as_any().downcast_ref::<M>() {
            Some(m) => m,
            None => panic!(
                "sim: {host} runs a {}, not a {}",
                m.type_name(),
                std::any::type_name::<M>()
            ),
        }
    }

    /// The machine of `host`, mutably, to call its API. Datagrams it queues
    /// are collected at the start of the next step (or by
    /// [`Sim::flush_transmits`]).
    ///
    /// # Panics
    ///
    /// If the host runs another type (test misuse); see
    /// [`Sim::try_machine_mut`].
    pub fn machine_mut<M: Machine + 'static>(&mut self, host: HostId) -> &mut M {
        let m = &mut self.host_mut(host).machine;
        let name = m.type_name();
        match m.as_any_mut().downcast_mut::<M>() {
            Some(m) => m,
            None => panic!(
                "sim: {host} runs a {name}, not a {}",
                std::any::type_name::<M>()
            ),
        }
    }

    /// The machine of `host` if it is an `M`.
    pub fn try_machine<M: Machine + 'static>(&self, host: HostId) -> Option<&M> {
        self.hosts.get(host.0)?.machine.as_any().downcast_ref::<M>()
    }

    /// The machine of `host`, mutably, if it is an `M`.
    pub fn try_machine_mut<M: Machine + 'static>(&mut self, host: HostId) -> Option<&mut M> {
        self.hosts
            .get_mut(host.0)?
            .machine
            .as_any_mut()
            .downcast_mut::<M>()
    }

    /// Drains the events of `host`'s machine (the simulator itself never
    /// calls `poll_event`).
    ///
    /// # Panics
    ///
    /// As [`Sim::machine_mut`].
    pub fn events<M: Machine + 'static>(&mut self, host: HostId) -> Vec<M::Event> {
        let m = self.machine_mut::<M>(host);
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    // ----- stats and capture --------------------------------------------

    /// Counters of one host (see [`Stats`] for what is attributed to whom).
    pub fn host_stats(&self, host: HostId) -> Stats {
        self.host(host).stats
    }

    /// Counters summed over every host and NAT link.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for h in &self.hosts {
            total.add(&h.stats);
        }
        for n in &self.nats {
            total.add(&n.link_stats);
        }
        total
    }

    /// Datagrams in flight (scheduled but not yet delivered or dropped).
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Turns the packet capture on (keeping at most the capture limit, oldest
    /// dropped first) or off (discarding what was kept).
    pub fn set_capture(&mut self, enabled: bool) {
        self.capture = enabled.then(VecDeque::new);
    }

    /// How many records the capture keeps (default
    /// [`DEFAULT_CAPTURE_LIMIT`]).
    pub fn set_capture_limit(&mut self, limit: usize) {
        self.capture_limit = limit;
        if let Some(c) = &mut self.capture {
            while c.len() > limit {
                c.pop_front();
                self.capture_overflow += 1;
            }
        }
    }

    /// Takes the records captured so far.
    pub fn drain_capture(&mut self) -> Vec<CaptureRecord> {
        self.capture
            .as_mut()
            .map(|c| c.drain(..).collect())
            .unwrap_or_default()
    }

    /// How many capture records were dropped because the capture was full.
    pub fn capture_overflow(&self) -> u64 {
        self.capture_overflow
    }

    // ----- running --------------------------------------------------------

    /// Collects every datagram the machines want to send now (the run
    /// methods do this first anyway; call it after using a machine's API to
    /// see the datagrams in [`Sim::in_flight`] right away).
    pub fn flush_transmits(&mut self) {
        for i in 0..self.hosts.len() {
            self.collect_from(HostId(i));
        }
    }

    /// The instant the next step would run at, or `None` if nothing is
    /// scheduled (no datagram in flight, no machine timer armed).
    pub fn next_step_time(&self) -> Option<Instant> {
        let mut next = self.queue.peek().map(|Reverse(s)| s.time);
        for h in &self.hosts {
            if let Some(t) = h.machine.poll_timeout() {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        }
        let mut t = next?.max(self.now);
        if let Some(last) = self.last_step {
            t = t.max(last + MIN_STEP);
        }
        Some(t)
    }

    /// Runs one step: collects pending transmits, advances the clock to the
    /// earliest scheduled instant (next datagram or machine timer, and at
    /// least [`MIN_STEP`] after the previous step), delivers every datagram
    /// due by then, fires every due timer (`handle_timeout`, in host order),
    /// then collects the transmits that produced. Returns `false`, without
    /// moving the clock, when nothing is scheduled.
    ///
    /// # Panics
    ///
    /// If a machine exceeds the spin limit ([`Sim::set_spin_limit`]).
    pub fn step(&mut self) -> bool {
        self.flush_transmits();
        match self.next_step_time() {
            Some(t) => {
                self.step_at(t);
                true
            }
            None => false,
        }
    }

    /// Runs every step due up to `deadline`, then sets the clock to
    /// `deadline` (if it is in the future).
    pub fn run_until(&mut self, deadline: Instant) {
        self.run_until_with(deadline, |_| false);
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let deadline = self.now + duration;
        self.run_until(deadline);
    }

    /// Steps until `done(self)` holds (checked before the first step and
    /// after each one) or `deadline` passes. Returns whether `done` held; on
    /// `false` the clock is at `deadline`. The predicate gets `&mut Sim` so it
    /// may drain events ([`Sim::events`]) or call machine APIs.
    pub fn run_until_with(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Sim) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            self.flush_transmits();
            match self.next_step_time() {
                Some(t) if t <= deadline => self.step_at(t),
                _ => break,
            }
        }
        if deadline > self.now {
            self.now = deadline;
        }
        done(self)
    }

    /// [`Sim::run_until_with`] with a deadline `limit` from now.
    pub fn run_for_with(&mut self, limit: Duration, done: impl FnMut(&mut Sim) -> bool) -> bool {
        let deadline = self.now + limit;
        self.run_until_with(deadline, done)
    }

    fn step_at(&mut self, t: Instant) {
        self.now = t;
        self.last_step = Some(t);
        self.steps += 1;
        while self.queue.peek().is_some_and(|Reverse(s)| s.time <= t) {
            if let Some(Reverse(s)) = self.queue.pop() {
                self.handle_event(s.event);
            }
        }
        for i in 0..self.hosts.len() {
            let h = &mut self.hosts[i];
            if h.machine.poll_timeout().is_some_and(|d| d <= t) {
                h.machine.handle_timeout(t);
                if h.machine.poll_timeout().is_some_and(|d| d <= t) {
                    h.spins += 1;
                    if h.spins > self.spin_limit {
                        panic!(
                            "sim: {} ({}) still wants a timeout at or before {:?} right after \
                             handle_timeout({:?}), {} times in a row: its handle_timeout must \
                             fire every due timer",
                            h.name,
                            h.machine.type_name(),
                            t - self.start,
                            t - self.start,
                            h.spins
                        );
                    }
                } else {
                    h.spins = 0;
                }
            }
        }
        self.flush_transmits();
    }

    // ----- the network ----------------------------------------------------

    fn schedule(&mut self, time: Instant, event: Event) {
        let seq = self.seq;
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { time, seq, event }));
    }

    fn record(&mut self, host: HostId, kind: CaptureKind, packet: &Packet) {
        let Some(c) = &mut self.capture else { return };
        if self.capture_limit == 0 {
            self.capture_overflow += 1;
            return;
        }
        if c.len() >= self.capture_limit {
            c.pop_front();
            self.capture_overflow += 1;
        }
        c.push_back(CaptureRecord {
            time: self.now - self.start,
            host,
            kind,
            source: packet.source,
            destination: packet.destination,
            contents: packet.contents.clone(),
        });
    }

    fn collect_from(&mut self, id: HostId) {
        while let Some(t) = self.hosts[id.0].machine.poll_transmit() {
            self.send(id, t);
        }
    }

    /// A machine emitted `t`: into the sender's uplink.
    fn send(&mut self, id: HostId, t: Transmit) {
        let h = &mut self.hosts[id.0];
        let source = match t.source {
            None => h.addrs[0],
            // A wildcard source (a socket bound to 0.0.0.0:port) sends from
            // the host's first address with that port, as the OS would.
            Some(s) if s.ip().is_unspecified() => h
                .addrs
                .iter()
                .find(|a| a.port() == s.port() && a.is_ipv4() == s.is_ipv4())
                .copied()
                .unwrap_or(s),
            Some(s) => s,
        };
        let packet = Packet {
            origin: id,
            source,
            destination: t.destination,
            contents: t.contents,
        };
        let len = packet.contents.len();
        h.stats.sent += 1;
        h.stats.bytes_sent += len as u64;
        self.record(id, CaptureKind::Sent, &packet);
        let h = &mut self.hosts[id.0];
        if !h.spoofing && !h.addrs.contains(&source) {
            h.stats.unroutable += 1;
            return self.drop_packet(DropReason::InvalidSource, &packet);
        }
        self.cross(id, Direction::Up, packet);
    }

    /// Sends `packet` through one of `host`'s access links: on the uplink it
    /// then arrives in the host's realm, on the downlink at the machine.
    fn cross(&mut self, host: HostId, direction: Direction, packet: Packet) {
        let now = self.now;
        let h = &mut self.hosts[host.0];
        let realm = h.realm;
        let link = match direction {
            Direction::Up => &mut h.up,
            Direction::Down => &mut h.down,
        };
        let reason = match link.transit(now, wire_len(&packet)) {
            Transit::Pass { first, duplicate } => {
                if duplicate.is_some() {
                    h.stats.duplicated += 1;
                }
                let event = |packet| match direction {
                    Direction::Up => Event::Arrive { realm, packet },
                    Direction::Down => Event::Deliver { host, packet },
                };
                if let Some(d) = duplicate {
                    let copy = packet.clone();
                    self.schedule(first, event(packet));
                    self.schedule(d, event(copy));
                } else {
                    self.schedule(first, event(packet));
                }
                return;
            }
            Transit::Lost => {
                h.stats.lost += 1;
                DropReason::Loss
            }
            Transit::QueueFull => {
                h.stats.queue_dropped += 1;
                DropReason::QueueFull
            }
            Transit::TooBig => {
                h.stats.too_big += 1;
                DropReason::TooBig
            }
        };
        self.drop_packet(reason, &packet);
    }

    fn drop_packet(&mut self, reason: DropReason, packet: &Packet) {
        tracing::debug!(
            t = ?self.elapsed(),
            from = %self.hosts[packet.origin.0].name,
            src = %packet.source,
            dst = %packet.destination,
            len = packet.contents.len(),
            %reason,
            "sim: drop"
        );
        self.record(packet.origin, CaptureKind::Dropped(reason), packet);
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Arrive { realm, packet } => self.route(realm, packet),
            Event::Deliver { host, packet } => self.deliver(host, packet),
        }
    }

    /// Moves a packet through realms and NATs (instantly) until it reaches a
    /// host's downlink or is dropped.
    fn route(&mut self, mut realm: Realm, mut packet: Packet) {
        let now = self.now;
        let mut reason = DropReason::TooManyHops;
        // A datagram hairpinning through this NAT (it never leaves the box).
        let mut hairpin: Option<NatId> = None;
        for _ in 0..=MAX_HOPS {
            if let Some(&host) = self.host_addrs.get(&(realm, packet.destination)) {
                return self.cross(host, Direction::Down, packet);
            }
            let dst_ip = packet.destination.ip();
            if self.host_ips.contains(&(realm, dst_ip)) {
                // The host exists but does not listen on that port.
                reason = DropReason::Unroutable;
                break;
            }
            let (nat, direction, next) = if let Some(&nat) = self.nat_ips.get(&(realm, dst_ip)) {
                // Inbound through `nat`.
                match self.nats[nat.0]
                    .nat
                    .inbound(now, packet.source, packet.destination)
                {
                    Ok(internal) => packet.destination = internal,
                    Err(reason) => return self.nat_drop(reason, packet),
                }
                (nat, Direction::Down, Realm::Inside(nat))
            } else if let Realm::Inside(nat) = realm {
                // Outbound through the NAT of this realm. Hairpinning falls
                // out: the packet comes back in through the same NAT's public
                // IP, with its source already translated (RFC 4787 REQ-9b).
                let n = &mut self.nats[nat.0];
                match n.nat.outbound(now, packet.source, packet.destination) {
                    Ok(external) => packet.source = external,
                    Err(reason) => return self.nat_drop(reason, packet),
                }
                if dst_ip == n.nat.config.public_ip {
                    hairpin = Some(nat);
                }
                (nat, Direction::Up, n.outer)
            } else {
                reason = DropReason::Unroutable;
                break;
            };
            let n = &self.nats[nat.0];
            let has_link = match direction {
                Direction::Up => n.up.is_some(),
                Direction::Down => n.down.is_some(),
            };
            if hairpin == Some(nat) {
                if direction == Direction::Down {
                    hairpin = None;
                }
            } else if has_link {
                return self.cross_nat(nat, direction, next, packet);
            }
            realm = next;
        }
        self.hosts[packet.origin.0].stats.unroutable += 1;
        self.drop_packet(reason, &packet);
    }

    fn nat_drop(&mut self, reason: DropReason, packet: Packet) {
        self.hosts[packet.origin.0].stats.nat_filtered += 1;
        self.drop_packet(reason, &packet);
    }

    /// Sends `packet` over `nat`'s WAN link; it then arrives in `next`.
    fn cross_nat(&mut self, nat: NatId, direction: Direction, next: Realm, packet: Packet) {
        let now = self.now;
        let n = &mut self.nats[nat.0];
        let link = match direction {
            Direction::Up => n.up.as_mut(),
            Direction::Down => n.down.as_mut(),
        };
        let Some(link) = link else {
            return self.schedule(
                now,
                Event::Arrive {
                    realm: next,
                    packet,
                },
            );
        };
        let reason = match link.transit(now, wire_len(&packet)) {
            Transit::Pass { first, duplicate } => {
                if let Some(d) = duplicate {
                    n.link_stats.duplicated += 1;
                    let copy = packet.clone();
                    self.schedule(
                        first,
                        Event::Arrive {
                            realm: next,
                            packet,
                        },
                    );
                    self.schedule(
                        d,
                        Event::Arrive {
                            realm: next,
                            packet: copy,
                        },
                    );
                } else {
                    self.schedule(
                        first,
                        Event::Arrive {
                            realm: next,
                            packet,
                        },
                    );
                }
                return;
            }
            Transit::Lost => {
                n.link_stats.lost += 1;
                DropReason::Loss
            }
            Transit::QueueFull => {
                n.link_stats.queue_dropped += 1;
                DropReason::QueueFull
            }
            Transit::TooBig => {
                n.link_stats.too_big += 1;
                DropReason::TooBig
            }
        };
        self.drop_packet(reason, &packet);
    }

    fn deliver(&mut self, host: HostId, packet: Packet) {
        let now = self.now;
        if !self.hosts[host.0].addrs.contains(&packet.destination) {
            // The host moved away while the datagram was on its downlink.
            self.hosts[packet.origin.0].stats.unroutable += 1;
            return self.drop_packet(DropReason::Unroutable, &packet);
        }
        tracing::trace!(
            t = ?self.elapsed(),
            host = %self.hosts[host.0].name,
            src = %packet.source,
            dst = %packet.destination,
            len = packet.contents.len(),
            "sim: deliver"
        );
        self.record(host, CaptureKind::Delivered, &packet);
        let h = &mut self.hosts[host.0];
        h.stats.delivered += 1;
        h.stats.bytes_delivered += packet.contents.len() as u64;
        h.machine.handle_receive(
            now,
            Receive {
                source: packet.source,
                destination: packet.destination,
                contents: &packet.contents,
            },
        );
    }

    fn host(&self, id: HostId) -> &Host {
        match self.hosts.get(id.0) {
            Some(h) => h,
            None => panic!("sim: no {id}"),
        }
    }

    fn host_mut(&mut self, id: HostId) -> &mut Host {
        match self.hosts.get_mut(id.0) {
            Some(h) => h,
            None => panic!("sim: no {id}"),
        }
    }

    fn nat_box(&self, id: NatId) -> &NatBox {
        match self.nats.get(id.0) {
            Some(n) => n,
            None => panic!("sim: no {id}"),
        }
    }

    fn nat_box_mut(&mut self, id: NatId) -> &mut NatBox {
        match self.nats.get_mut(id.0) {
            Some(n) => n,
            None => panic!("sim: no {id}"),
        }
    }
}
