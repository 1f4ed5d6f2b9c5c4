//! NAT boxes with the behaviours of RFC 4787 (NAT behavioural requirements for
//! unicast UDP).
//!
//! A NAT sits between an inside realm (private addresses) and an outside realm
//! (the public internet, or the inside of another NAT). Outbound datagrams get
//! their source rewritten to a *mapping* `public_ip:external_port`; inbound
//! datagrams to a mapping are *filtered*, then rewritten back to the internal
//! address.
//!
//! ```text
//!   inside (10.0.0.2:5000) ──► NAT 203.0.113.1 ──► outside (198.51.100.7:3478)
//!        src 10.0.0.2:5000                         src 203.0.113.1:41234
//!
//!   mapping      (RFC 4787 §4.1): which mapping an outbound packet reuses
//!     EndpointIndependent      one per internal address        ("cone")
//!     AddressDependent         one per (internal, remote IP)
//!     AddressAndPortDependent  one per (internal, remote IP:port) ("symmetric")
//!   filtering    (RFC 4787 §5): which inbound packets a mapping lets in
//!     EndpointIndependent      anyone                          ("full cone")
//!     AddressDependent         IPs the inside has sent to      ("restricted")
//!     AddressAndPortDependent  IP:ports the inside has sent to ("port restricted")
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

use super::DropReason;

pub use crate::vocab::nat::{FilteringBehavior, MappingBehavior};

/// Configuration of one NAT box.
///
/// Fields are public; start from [`NatConfig::new`] (the RFC 4787
/// recommendations) or one of the classic names and adjust:
/// `NatConfig { hairpinning: false, ..NatConfig::new(ip) }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// The NAT's external address: a public IP, or an address in the inside
    /// realm of the parent NAT for a nested NAT.
    pub public_ip: IpAddr,
    /// RFC 4787 §4.1 mapping behaviour.
    pub mapping: MappingBehavior,
    /// RFC 4787 §5 filtering behaviour.
    pub filtering: FilteringBehavior,
    /// How long a mapping (and each remote endpoint's filtering permission on
    /// it) lives without refresh. RFC 4787 §4.3 REQ-5: MUST NOT expire in less than two
    /// minutes; a default of five minutes or more is RECOMMENDED.
    pub binding_timeout: Duration,
    /// RFC 4787 §4.2.1: try to keep the internal port as the external port.
    pub port_preservation: bool,
    /// RFC 4787 §6: let an inside host reach another inside host through the
    /// NAT's public address (REQ-9: a NAT MUST support hairpinning, and the
    /// packet arrives with the sender's external address as its source).
    pub hairpinning: bool,
    /// RFC 4787 §4.3 REQ-6: outbound packets always refresh a mapping; inbound
    /// packets MAY (this flag). Filtering permissions age with the same
    /// timeout: an outbound packet to a remote endpoint refreshes its
    /// permission, and with this flag an inbound packet refreshes the
    /// permissions that let it in.
    pub inbound_refresh: bool,
}

impl NatConfig {
    /// What RFC 4787 recommends: endpoint-independent mapping (REQ-1),
    /// address-dependent filtering (REQ-8, "if a more stringent filtering
    /// behavior is most important"), a 5-minute binding timeout (REQ-5c),
    /// hairpinning (REQ-9), outbound-only refresh (REQ-6), no port
    /// preservation.
    pub fn new(public_ip: IpAddr) -> Self {
        NatConfig {
            public_ip,
            mapping: MappingBehavior::EndpointIndependent,
            filtering: FilteringBehavior::AddressDependent,
            binding_timeout: Duration::from_secs(300),
            port_preservation: false,
            hairpinning: true,
            inbound_refresh: false,
        }
    }

    /// RFC 3489's "full cone": endpoint-independent mapping and filtering.
    pub fn full_cone(public_ip: IpAddr) -> Self {
        NatConfig {
            filtering: FilteringBehavior::EndpointIndependent,
            ..NatConfig::new(public_ip)
        }
    }

    /// RFC 3489's "restricted cone": endpoint-independent mapping,
    /// address-dependent filtering.
    pub fn restricted_cone(public_ip: IpAddr) -> Self {
        NatConfig::new(public_ip)
    }

    /// RFC 3489's "port restricted cone": endpoint-independent mapping,
    /// address-and-port-dependent filtering.
    pub fn port_restricted_cone(public_ip: IpAddr) -> Self {
        NatConfig {
            filtering: FilteringBehavior::AddressAndPortDependent,
            ..NatConfig::new(public_ip)
        }
    }

    /// RFC 3489's "symmetric": address-and-port-dependent mapping and
    /// filtering.
    pub fn symmetric(public_ip: IpAddr) -> Self {
        NatConfig {
            mapping: MappingBehavior::AddressAndPortDependent,
            filtering: FilteringBehavior::AddressAndPortDependent,
            ..NatConfig::new(public_ip)
        }
    }
}

/// Counters of one NAT box.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NatStats {
    /// Mappings allocated.
    pub mappings_created: u64,
    /// Mappings that timed out.
    pub mappings_expired: u64,
    /// Outbound packets translated.
    pub outbound: u64,
    /// Inbound packets translated and let in.
    pub inbound: u64,
    /// Inbound packets to a public port without a mapping.
    pub no_mapping: u64,
    /// Inbound packets the filter refused.
    pub filtered: u64,
    /// Packets to the NAT's own public address dropped because hairpinning is
    /// off.
    pub hairpin_dropped: u64,
    /// Outbound packets dropped because no external port was free.
    pub ports_exhausted: u64,
}

/// A live mapping, as shown to tests by [`crate::sim::Sim::nat_bindings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatBinding {
    /// The inside endpoint.
    pub internal: SocketAddr,
    /// Its address on the outside.
    pub external: SocketAddr,
    /// Remote endpoints the inside has sent to through this mapping (what
    /// address- and port-dependent filtering allow).
    pub permissions: Vec<SocketAddr>,
    /// When the mapping expires unless refreshed.
    pub expires: Instant,
}

/// What selects a mapping besides the internal address (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RemoteKey {
    Any,
    Ip(IpAddr),
    Addr(SocketAddr),
}

#[derive(Debug)]
struct Mapping {
    internal: SocketAddr,
    key: RemoteKey,
    refreshed: Instant,
    /// Remote endpoints sent to, with the time of the last packet.
    permissions: BTreeMap<SocketAddr, Instant>,
}

/// A NAT box's state.
#[derive(Debug)]
pub(crate) struct Nat {
    pub(crate) config: NatConfig,
    pub(crate) stats: NatStats,
    rng: StdRng,
    /// External port → mapping.
    by_port: BTreeMap<u16, Mapping>,
    /// (internal, remote key) → external port.
    by_key: BTreeMap<(SocketAddr, RemoteKey), u16>,
    /// Nothing expires before this instant (a lower bound: refreshes only
    /// move timers later, and a new entry expires a full timeout from now),
    /// so most packets skip the expiry scan.
    next_expiry: Option<Instant>,
}

/// The port range mappings are allocated from (RFC 4787 REQ-3 recommends
/// keeping the source port in 1024..=65535 when it was there).
const PORTS: std::ops::RangeInclusive<u16> = 1024..=65535;

impl Nat {
    pub(crate) fn new(config: NatConfig, rng: StdRng) -> Self {
        Nat {
            config,
            stats: NatStats::default(),
            rng,
            by_port: BTreeMap::new(),
            by_key: BTreeMap::new(),
            next_expiry: None,
        }
    }

    /// Drops mappings and permissions whose timer ran out by `now`.
    fn expire(&mut self, now: Instant) {
        if self.next_expiry.is_none_or(|t| now < t) {
            return;
        }
        let timeout = self.config.binding_timeout;
        let expired: Vec<u16> = self
            .by_port
            .iter()
            .filter(|(_, m)| m.refreshed + timeout <= now)
            .map(|(p, _)| *p)
            .collect();
        for port in expired {
            if let Some(m) = self.by_port.remove(&port) {
                self.by_key.remove(&(m.internal, m.key));
                self.stats.mappings_expired += 1;
                tracing::debug!(internal = %m.internal, port, "sim: NAT mapping expired");
            }
        }
        let mut next: Option<Instant> = None;
        for m in self.by_port.values_mut() {
            m.permissions.retain(|_, t| *t + timeout > now);
            let oldest = m.permissions.values().min().copied().unwrap_or(m.refreshed);
            let due = oldest.min(m.refreshed) + timeout;
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        self.next_expiry = next;
    }

    fn key_for(&self, remote: SocketAddr) -> RemoteKey {
        match self.config.mapping {
            MappingBehavior::EndpointIndependent => RemoteKey::Any,
            MappingBehavior::AddressDependent => RemoteKey::Ip(remote.ip()),
            MappingBehavior::AddressAndPortDependent => RemoteKey::Addr(remote),
        }
    }

    /// Picks a free external port: the internal one under port preservation,
    /// else a random one (then a scan, so this always ends).
    fn allocate_port(&mut self, internal_port: u16) -> Option<u16> {
        if self.config.port_preservation && !self.by_port.contains_key(&internal_port) {
            return Some(internal_port);
        }
        for _ in 0..32 {
            let p = self.rng.random_range(PORTS);
            if !self.by_port.contains_key(&p) {
                return Some(p);
            }
        }
        let start = self.rng.random_range(PORTS);
        (start..=*PORTS.end())
            .chain(*PORTS.start()..start)
            .find(|p| !self.by_port.contains_key(p))
    }

    /// Translates an outbound packet `src → dst`; returns the external source
    /// address.
    pub(crate) fn outbound(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<SocketAddr, DropReason> {
        self.expire(now);
        if dst.ip() == self.config.public_ip && !self.config.hairpinning {
            self.stats.hairpin_dropped += 1;
            return Err(DropReason::HairpinDisabled);
        }
        let key = self.key_for(dst);
        let port = match self.by_key.get(&(src, key)) {
            Some(p) => *p,
            None => {
                let Some(p) = self.allocate_port(src.port()) else {
                    self.stats.ports_exhausted += 1;
                    return Err(DropReason::NatPortsExhausted);
                };
                self.by_key.insert((src, key), p);
                self.by_port.insert(
                    p,
                    Mapping {
                        internal: src,
                        key,
                        refreshed: now,
                        permissions: BTreeMap::new(),
                    },
                );
                self.stats.mappings_created += 1;
                let due = now + self.config.binding_timeout;
                self.next_expiry = Some(self.next_expiry.map_or(due, |t| t.min(due)));
                tracing::debug!(internal = %src, port = p, remote = %dst, "sim: NAT mapping created");
                p
            }
        };
        if let Some(m) = self.by_port.get_mut(&port) {
            // RFC 4787 REQ-6: outbound traffic refreshes the mapping.
            m.refreshed = now;
            m.permissions.insert(dst, now);
        }
        self.stats.outbound += 1;
        Ok(SocketAddr::new(self.config.public_ip, port))
    }

    /// Filters and translates an inbound packet `src → dst` (dst on the public
    /// IP); returns the internal destination.
    pub(crate) fn inbound(
        &mut self,
        now: Instant,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> Result<SocketAddr, DropReason> {
        self.expire(now);
        let filtering = self.config.filtering;
        let Some(m) = self.by_port.get_mut(&dst.port()) else {
            self.stats.no_mapping += 1;
            return Err(DropReason::NatNoMapping);
        };
        // RFC 4787 §5: the three filtering behaviours.
        let allowed = match filtering {
            FilteringBehavior::EndpointIndependent => true,
            FilteringBehavior::AddressDependent => m.permissions.keys().any(|r| r.ip() == src.ip()),
            FilteringBehavior::AddressAndPortDependent => m.permissions.contains_key(&src),
        };
        if !allowed {
            self.stats.filtered += 1;
            return Err(DropReason::NatFiltered);
        }
        if self.config.inbound_refresh {
            // The mapping and the permissions that let this packet in.
            m.refreshed = now;
            for (remote, t) in m.permissions.iter_mut() {
                let matches = match filtering {
                    FilteringBehavior::EndpointIndependent => false,
                    FilteringBehavior::AddressDependent => remote.ip() == src.ip(),
                    FilteringBehavior::AddressAndPortDependent => *remote == src,
                };
                if matches {
                    *t = now;
                }
            }
        }
        self.stats.inbound += 1;
        Ok(m.internal)
    }

    /// The live mappings at `now`, by external port.
    pub(crate) fn bindings(&mut self, now: Instant) -> Vec<NatBinding> {
        self.expire(now);
        self.by_port
            .iter()
            .map(|(port, m)| NatBinding {
                internal: m.internal,
                external: SocketAddr::new(self.config.public_ip, *port),
                permissions: m.permissions.keys().copied().collect(),
                expires: m.refreshed + self.config.binding_timeout,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    fn nat(mapping: MappingBehavior, filtering: FilteringBehavior) -> Nat {
        let config = NatConfig {
            mapping,
            filtering,
            ..NatConfig::new("203.0.113.1".parse().expect("test ip"))
        };
        Nat::new(config, StdRng::seed_from_u64(1))
    }

    #[test]
    fn mapping_reuse_per_behaviour() {
        use MappingBehavior::*;
        let t = Instant::now();
        let inside = addr("10.0.0.2:5000");
        let a1 = addr("198.51.100.1:1000");
        let a2 = addr("198.51.100.1:2000");
        let b1 = addr("198.51.100.2:1000");
        for (behaviour, same_port, other_ip) in [
            (EndpointIndependent, true, true),
            (AddressDependent, true, false),
            (AddressAndPortDependent, false, false),
        ] {
            let mut n = nat(behaviour, FilteringBehavior::EndpointIndependent);
            let x = n.outbound(t, inside, a1).expect("mapping");
            let y = n.outbound(t, inside, a2).expect("mapping");
            let z = n.outbound(t, inside, b1).expect("mapping");
            assert_eq!(x == y, same_port, "{behaviour:?} a1/a2");
            assert_eq!(x == z, other_ip, "{behaviour:?} a1/b1");
            // The same destination always reuses its mapping.
            assert_eq!(n.outbound(t, inside, a1).expect("mapping"), x);
        }
    }

    #[test]
    fn port_preservation() {
        let t = Instant::now();
        let mut n = nat(
            MappingBehavior::EndpointIndependent,
            FilteringBehavior::EndpointIndependent,
        );
        n.config.port_preservation = true;
        let remote = addr("198.51.100.1:1000");
        let a = n
            .outbound(t, addr("10.0.0.2:5000"), remote)
            .expect("mapping");
        assert_eq!(a.port(), 5000);
        // A second host with the same port cannot have it too.
        let b = n
            .outbound(t, addr("10.0.0.3:5000"), remote)
            .expect("mapping");
        assert_ne!(b.port(), 5000);
    }

    #[test]
    fn expiry_and_refresh() {
        let t = Instant::now();
        let mut n = nat(
            MappingBehavior::EndpointIndependent,
            FilteringBehavior::EndpointIndependent,
        );
        n.config.binding_timeout = Duration::from_secs(120);
        let inside = addr("10.0.0.2:5000");
        let remote = addr("198.51.100.1:1000");
        let ext = n.outbound(t, inside, remote).expect("mapping");
        let t1 = t + Duration::from_secs(100);
        assert_eq!(n.inbound(t1, remote, ext), Ok(inside));
        // Inbound did not refresh (REQ-6 default): gone at 120 s.
        let t2 = t + Duration::from_secs(120);
        assert_eq!(n.inbound(t2, remote, ext), Err(DropReason::NatNoMapping));
        assert_eq!(n.stats.mappings_expired, 1);
        // Outbound refresh keeps it alive.
        let ext = n.outbound(t2, inside, remote).expect("mapping");
        let t3 = t2 + Duration::from_secs(100);
        n.outbound(t3, inside, remote).expect("mapping");
        let t4 = t3 + Duration::from_secs(100);
        assert_eq!(n.inbound(t4, remote, ext), Ok(inside));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Out { inside: usize, remote: usize },
        In { remote: usize, inside: usize },
        Wait { secs: u64 },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (0usize..3, 0usize..6).prop_map(|(inside, remote)| Op::Out { inside, remote }),
            (0usize..6, 0usize..3).prop_map(|(remote, inside)| Op::In { remote, inside }),
            (0u64..200).prop_map(|secs| Op::Wait { secs }),
        ]
    }

    proptest::proptest! {
        /// The same traffic through NATs that differ only in filtering: what
        /// a stricter filter lets in, a looser one lets in too (RFC 4787 §5
        /// orders them APDF ⊂ ADF ⊂ EIF). And mappings only multiply as
        /// mapping gets more dependent.
        #[test]
        fn stricter_behaviours_are_nested(ops in proptest::collection::vec(op(), 1..80)) {
            use FilteringBehavior as F;
            use MappingBehavior as M;
            let insides = [addr("10.0.0.2:5000"), addr("10.0.0.3:5000"), addr("10.0.0.2:6000")];
            let remotes = [
                addr("198.51.100.1:1000"), addr("198.51.100.1:2000"), addr("198.51.100.2:1000"),
                addr("198.51.100.2:2000"), addr("192.0.2.9:1000"), addr("192.0.2.9:3478"),
            ];
            for mapping in [M::EndpointIndependent, M::AddressDependent, M::AddressAndPortDependent] {
                let mut nats = [F::AddressAndPortDependent, F::AddressDependent, F::EndpointIndependent]
                    .map(|f| nat(mapping, f));
                let mut last_ext: [Option<SocketAddr>; 3] = [None; 3];
                let mut t = Instant::now();
                for op in &ops {
                    match *op {
                        Op::Out { inside, remote } => {
                            let ext: Vec<SocketAddr> = nats
                                .iter_mut()
                                .map(|n| n.outbound(t, insides[inside], remotes[remote]).expect("ports"))
                                .collect();
                            // Filtering does not change mappings.
                            proptest::prop_assert!(ext.iter().all(|e| *e == ext[0]));
                            last_ext[inside] = Some(ext[0]);
                        }
                        Op::In { remote, inside } => {
                            let Some(ext) = last_ext[inside] else { continue };
                            let ok: Vec<bool> = nats
                                .iter_mut()
                                .map(|n| n.inbound(t, remotes[remote], ext).is_ok())
                                .collect();
                            proptest::prop_assert!(!ok[0] || ok[1], "APDF let in what ADF refused");
                            proptest::prop_assert!(!ok[1] || ok[2], "ADF let in what EIF refused");
                        }
                        Op::Wait { secs } => t += Duration::from_secs(secs),
                    }
                }
            }
            // Mapping counts: EIM ≤ ADM ≤ APDM for the same outbound traffic.
            let mut created = Vec::new();
            for mapping in [M::EndpointIndependent, M::AddressDependent, M::AddressAndPortDependent] {
                let mut n = nat(mapping, F::EndpointIndependent);
                let mut t = Instant::now();
                for op in &ops {
                    match *op {
                        Op::Out { inside, remote } => {
                            n.outbound(t, insides[inside], remotes[remote]).expect("ports");
                        }
                        Op::Wait { secs } => t += Duration::from_secs(secs),
                        Op::In { .. } => {}
                    }
                }
                created.push(n.stats.mappings_created);
            }
            proptest::prop_assert!(created[0] <= created[1] && created[1] <= created[2], "{created:?}");
        }
    }
}
