//! Which peers a TURN server relays to: ranges of IP addresses, denied and
//! allowed.
//!
//! A TURN server relays from a public address to whatever peer address an
//! authenticated client names, so without a policy it is a way *into* the
//! server's own network: its cloud metadata service (169.254.169.254), the
//! private ranges behind it, its other interfaces. RFC 8656 §9.1 lets a
//! server refuse a CreatePermission (and so a ChannelBind or Send) with
//! 403 Forbidden, and leaves which peers to refuse to the operator.
//!
//! rtclab denies by default what no WebRTC peer can be (see
//! [`default_denied`]): link-local (169.254/16, which holds the cloud
//! metadata address, and fe80::/10), "this network" 0/8, multicast
//! (224/4, ff00::/8), the broadcast address and the unspecified addresses.
//! Loopback and the server's own IPs (and, in `rtclab turn-server`, every
//! IP of the host's interfaces) are refused unless `allow_loopback_peers`:
//! the tests, on one host, relay to 127.0.0.1 with it. Private ranges
//! (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7) are *not* denied by
//! default, because a server inside a LAN legitimately relays to them;
//! a public deployment adds them with `--denied-peer-ip`. An allowed range
//! overrides every denial (but never lets a client aim at the server's own
//! sockets).
//!
//! coturn, for comparison, denies nothing by default beyond loopback
//! (`--allow-loopback-peers`) and multicast (`--no-multicast-peers`); its
//! example configuration recommends `denied-peer-ip` lines for the private
//! and special ranges, and its `allowed-peer-ip` overrides them as here.
//! Ranges are written as coturn writes them, `FIRST-LAST`, or as CIDR.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An inclusive range of IP addresses of one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpRange {
    first: IpAddr,
    last: IpAddr,
}

/// Why a range does not parse or build.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeError {
    /// A part is not an IP address.
    Address(String),
    /// The prefix length is not a number up to 32 (IPv4) or 128 (IPv6).
    Prefix(String),
    /// `FIRST-LAST` mixes IPv4 and IPv6.
    MixedFamilies,
    /// `FIRST-LAST` with FIRST above LAST.
    Reversed,
}

impl fmt::Display for RangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RangeError::Address(s) => write!(f, "{s:?} is not an IP address"),
            RangeError::Prefix(s) => write!(
                f,
                "{s:?} is not a prefix length (0-32 for IPv4, 0-128 for IPv6)"
            ),
            RangeError::MixedFamilies => f.write_str("a range's ends must both be IPv4 or IPv6"),
            RangeError::Reversed => f.write_str("a range's first address is above its last"),
        }
    }
}

impl std::error::Error for RangeError {}

/// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it
/// carries: a dual-stack relay socket would send to that IPv4 peer.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl IpRange {
    /// The addresses from `first` to `last`, both included.
    pub fn new(first: IpAddr, last: IpAddr) -> Result<Self, RangeError> {
        if first.is_ipv4() != last.is_ipv4() {
            return Err(RangeError::MixedFamilies);
        }
        if bits(first) > bits(last) {
            return Err(RangeError::Reversed);
        }
        Ok(IpRange { first, last })
    }

    /// One address.
    pub fn single(ip: IpAddr) -> Self {
        IpRange {
            first: ip,
            last: ip,
        }
    }

    /// A CIDR block, `ip/prefix` (the host bits of `ip` are ignored).
    pub fn cidr(ip: IpAddr, prefix: u8) -> Result<Self, RangeError> {
        let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
        if u32::from(prefix) > width {
            return Err(RangeError::Prefix(prefix.to_string()));
        }
        // The host bits, as a mask within the family's width.
        let host = u128::MAX
            .checked_shr(128 - width + u32::from(prefix))
            .unwrap_or(0);
        let b = bits(ip);
        let (lo, hi) = (b & !host, b | host);
        Ok(match ip {
            IpAddr::V4(_) => IpRange {
                first: IpAddr::V4(Ipv4Addr::from(lo as u32)),
                last: IpAddr::V4(Ipv4Addr::from(hi as u32)),
            },
            IpAddr::V6(_) => IpRange {
                first: IpAddr::V6(Ipv6Addr::from(lo)),
                last: IpAddr::V6(Ipv6Addr::from(hi)),
            },
        })
    }

    /// The first address.
    pub fn first(&self) -> IpAddr {
        self.first
    }

    /// The last address.
    pub fn last(&self) -> IpAddr {
        self.last
    }

    /// Whether `ip` is in the range; an IPv4-mapped IPv6 address is in it
    /// also when the IPv4 address it carries is.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.contains_exactly(ip) || self.contains_exactly(canonical(ip))
    }

    fn contains_exactly(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.first.is_ipv4()
            && bits(self.first) <= bits(ip)
            && bits(ip) <= bits(self.last)
    }

    /// The prefix length if the range is exactly one CIDR block.
    fn prefix(&self) -> Option<u8> {
        let width = if self.first.is_ipv4() { 32 } else { 128 };
        let span = bits(self.first) ^ bits(self.last);
        // A block: the differing bits are all the low ones, all 0 in first.
        let host_bits = 128 - span.leading_zeros();
        let mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
        (span == mask && bits(self.first) & mask == 0).then(|| (width - host_bits) as u8)
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, RangeError> {
    s.trim()
        .parse()
        .map_err(|_| RangeError::Address(s.trim().to_string()))
}

impl FromStr for IpRange {
    type Err = RangeError;

    /// `a.b.c.d`, `a.b.c.d/n`, `FIRST-LAST` (coturn's form), and the same
    /// with IPv6 addresses.
    fn from_str(s: &str) -> Result<Self, RangeError> {
        if let Some((ip, prefix)) = s.split_once('/') {
            let ip = parse_ip(ip)?;
            let prefix: u8 = prefix
                .trim()
                .parse()
                .map_err(|_| RangeError::Prefix(prefix.trim().to_string()))?;
            return IpRange::cidr(ip, prefix);
        }
        if let Some((first, last)) = s.split_once('-') {
            return IpRange::new(parse_ip(first)?, parse_ip(last)?);
        }
        Ok(IpRange::single(parse_ip(s)?))
    }
}

impl fmt::Display for IpRange {
    /// CIDR when the range is a block (a single address as itself), else
    /// `FIRST-LAST`: what [`IpRange::from_str`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = if self.first.is_ipv4() { 32 } else { 128 };
        match self.prefix() {
            Some(p) if p == width => write!(f, "{}", self.first),
            Some(p) => write!(f, "{}/{p}", self.first),
            None => write!(f, "{}-{}", self.first, self.last),
        }
    }
}

/// What rtclab's TURN server denies unless allowed: link-local
/// (169.254.0.0/16 with the cloud metadata address 169.254.169.254,
/// fe80::/10), 0.0.0.0/8 ("this network", RFC 791/1122), multicast
/// (224.0.0.0/4, ff00::/8), broadcast 255.255.255.255, and the unspecified
/// `::`. None of them is ever a WebRTC peer.
pub fn default_denied() -> Vec<IpRange> {
    [
        "0.0.0.0/8",
        "169.254.0.0/16",
        "224.0.0.0/4",
        "255.255.255.255",
        "::",
        "fe80::/10",
        "ff00::/8",
    ]
    .iter()
    .filter_map(|s| s.parse().ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> IpRange {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_cidr_ranges_and_single_addresses() {
        let block = r("10.0.0.0/8");
        assert_eq!(
            (block.first(), block.last()),
            (ip("10.0.0.0"), ip("10.255.255.255"))
        );
        // Host bits are ignored.
        assert_eq!(r("192.168.7.9/16"), r("192.168.0.0-192.168.255.255"));
        assert_eq!(r("100.64.0.0/10").last(), ip("100.127.255.255"));
        assert_eq!(r("0.0.0.0/0").last(), ip("255.255.255.255"));
        assert_eq!(
            r("fe80::/10").last(),
            ip("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            r("::/0").last(),
            ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
        );
        assert_eq!(
            r(" 169.254.169.254 "),
            IpRange::single(ip("169.254.169.254"))
        );
        assert_eq!(r("10.0.0.1 - 10.0.0.9").last(), ip("10.0.0.9"));
        // An IPv4-mapped address is in a range of IPv4 addresses that
        // holds the address it carries, and in the IPv6 ranges holding it.
        assert!(r("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
        assert!(r("::/0").contains(ip("::ffff:10.1.2.3")));
        assert!(!r("10.0.0.0/8").contains(ip("::a01:203")));
    }

    #[test]
    fn refuses_what_is_not_a_range() {
        assert_eq!(
            "10.0.0/8".parse::<IpRange>(),
            Err(RangeError::Address("10.0.0".into()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<IpRange>(),
            Err(RangeError::Prefix("33".into()))
        );
        assert_eq!(
            "::/129".parse::<IpRange>(),
            Err(RangeError::Prefix("129".into()))
        );
        assert_eq!(
            "10.0.0.0/x".parse::<IpRange>(),
            Err(RangeError::Prefix("x".into()))
        );
        assert_eq!(
            "10.0.0.9-10.0.0.1".parse::<IpRange>(),
            Err(RangeError::Reversed)
        );
        assert_eq!(
            "10.0.0.1-::1".parse::<IpRange>(),
            Err(RangeError::MixedFamilies)
        );
        assert!("".parse::<IpRange>().is_err());
        assert!("-".parse::<IpRange>().is_err());
        assert!("/".parse::<IpRange>().is_err());
    }

    #[test]
    fn displays_what_it_parses() {
        for s in [
            "10.0.0.0/8",
            "169.254.169.254",
            "10.0.0.1-10.0.0.9",
            "fe80::/10",
            "::",
        ] {
            assert_eq!(r(s).to_string(), s);
        }
    }

    #[test]
    fn default_denied_covers_the_special_ranges_only() {
        let denied = default_denied();
        assert_eq!(denied.len(), 7);
        let is_denied = |s: &str| denied.iter().any(|r| r.contains(ip(s)));
        for s in [
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.255.1.1",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_denied(s), "{s}");
        }
        for s in [
            "192.0.2.1",
            "10.0.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "2001:db8::1",
            "::1",
        ] {
            assert!(!is_denied(s), "{s}");
        }
    }

    fn any_ip() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        ]
    }

    /// Whether the leading `prefix` bits of `x` are those of `a`, both of
    /// one family.
    fn same_prefix(a: IpAddr, prefix: u8, x: IpAddr) -> bool {
        let width = if a.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(prefix);
        a.is_ipv4() == x.is_ipv4()
            && bits(a).checked_shr(shift).unwrap_or(0) == bits(x).checked_shr(shift).unwrap_or(0)
    }

    proptest! {
        /// A CIDR block holds exactly the addresses whose leading `prefix`
        /// bits match (an IPv4-mapped one also through its IPv4 address),
        /// and prints as something that parses back to itself.
        #[test]
        fn cidr_membership_and_round_trip(a in any_ip(), b in any_ip(), prefix in 0u8..=128) {
            let width = if a.is_ipv4() { 32 } else { 128 };
            let prefix = prefix % (width + 1);
            let block = IpRange::cidr(a, prefix).unwrap();
            prop_assert!(block.contains(a));
            let want = same_prefix(a, prefix, b) || same_prefix(a, prefix, canonical(b));
            prop_assert_eq!(block.contains(b), want);
            let text = block.to_string();
            prop_assert_eq!(text.parse::<IpRange>(), Ok(block));
        }

        /// Parsing never panics on any text.
        #[test]
        fn parse_never_panics(s in "[0-9a-f.:/ -]{0,48}") {
            let _ = s.parse::<IpRange>();
        }
    }
}
