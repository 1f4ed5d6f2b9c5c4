//! Host candidates from the operating system: the machine's interface
//! addresses that ICE should offer (RFC 8445 §5.1.1.1).
//!
//! RFC 8445 §5.1.1.1: an agent gathers a host candidate from each IP address
//! of its interfaces (physical or virtual, VPNs included), IPv4 and IPv6.
//! Left out, as that section and the browsers do:
//!
//! - loopback addresses (the RFC forbids them; the caller may still ask for
//!   them, for two agents on one machine, as Firefox's
//!   `media.peerconnection.ice.loopback` does);
//! - link-local addresses: IPv6 fe80::/10 (they need a scope id and never
//!   cross a router; the RFC allows them only in narrow cases) and IPv4
//!   169.254.0.0/16 (RFC 3927: a host that found no configured address);
//! - IPv6 site-local (fec0::/10, deprecated by RFC 3879) and the deprecated
//!   IPv4-compatible IPv6 addresses (::/96), both excluded by §5.1.1.1, and
//!   IPv4-mapped ones (::ffff:0:0/96), which it advises against;
//! - interfaces that are down or not running, and addresses nobody can send
//!   to (unspecified, multicast, broadcast).
//!
//! The work is split in two so the rules can be tested without an OS:
//! [`os_interfaces`] reads the interface list (`getifaddrs(3)`, through the
//! `nix` crate, so that rtclab itself stays free of `unsafe`), and
//! [`host_addresses_from`] is the pure filter.
//! [`host_addresses`] is both.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One address of one interface, as the OS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceAddr {
    /// The interface's name (`lo`, `eth0`, …).
    pub name: String,
    /// The address.
    pub addr: IpAddr,
    /// The interface is administratively up (`IFF_UP`).
    pub up: bool,
    /// The interface is operational, e.g. has a carrier (`IFF_RUNNING`).
    pub running: bool,
    /// The interface is a loopback one (`IFF_LOOPBACK`).
    pub loopback: bool,
}

/// Which addresses to offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostOptions {
    /// Offer loopback addresses (127.0.0.0/8, ::1, and any address of a
    /// loopback interface): for two agents on one machine.
    pub loopback: bool,
    /// Leave IPv6 out.
    pub ipv4_only: bool,
}

/// Whether `ip` is link-local: 169.254.0.0/16 (RFC 3927) or fe80::/10
/// (RFC 4291 §2.5.6).
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// RFC 8445 §5.1.1.1: site-local (fec0::/10), IPv4-compatible (::/96 but
/// `::` and `::1`) and IPv4-mapped (::ffff:0:0/96) IPv6 addresses.
fn excluded_ipv6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let site_local = (s[0] & 0xffc0) == 0xfec0;
    let compatible = s[..6].iter().all(|&x| x == 0) && !v6.is_loopback() && !v6.is_unspecified();
    site_local || compatible || v6.to_ipv4_mapped().is_some()
}

fn is_loopback(i: &InterfaceAddr) -> bool {
    i.loopback || i.addr.is_loopback()
}

/// The pure filter: which of `interfaces` ICE should use as host candidates,
/// in the order given, without duplicates (see the module doc for what is
/// skipped and why).
pub fn host_addresses_from(interfaces: &[InterfaceAddr], options: HostOptions) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for i in interfaces {
        let ip = i.addr;
        let unusable = ip.is_unspecified()
            || ip.is_multicast()
            || ip == IpAddr::V4(Ipv4Addr::BROADCAST)
            || matches!(ip, IpAddr::V6(v6) if excluded_ipv6(v6));
        let keep = i.up
            && i.running
            && !unusable
            && !is_link_local(ip)
            && (options.loopback || !is_loopback(i))
            && !(options.ipv4_only && ip.is_ipv6());
        if keep && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The machine's addresses for host candidates: [`os_interfaces`] filtered
/// by [`host_addresses_from`].
pub fn host_addresses(options: HostOptions) -> io::Result<Vec<IpAddr>> {
    Ok(host_addresses_from(&os_interfaces()?, options))
}

/// Every IPv4 and IPv6 address of every interface, from `getifaddrs(3)`
/// (through `nix`, which owns the unsafe FFI: rtclab forbids `unsafe`).
/// Other address families, such as the link-layer `AF_PACKET` entries, are
/// left out.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
))]
pub fn os_interfaces() -> io::Result<Vec<InterfaceAddr>> {
    use nix::net::if_::InterfaceFlags;
    let list = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    Ok(list
        .filter_map(|i| {
            let a = i.address?;
            let addr = if let Some(v4) = a.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else {
                IpAddr::V6(a.as_sockaddr_in6()?.ip())
            };
            Some(InterfaceAddr {
                name: i.interface_name,
                addr,
                up: i.flags.contains(InterfaceFlags::IFF_UP),
                running: i.flags.contains(InterfaceFlags::IFF_RUNNING),
                loopback: i.flags.contains(InterfaceFlags::IFF_LOOPBACK),
            })
        })
        .collect())
}

/// Without `getifaddrs` here: no interface list; the caller passes
/// addresses itself.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "freebsd"
)))]
pub fn os_interfaces() -> io::Result<Vec<InterfaceAddr>> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "listing interfaces needs getifaddrs (Unix)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, addr: &str, up: bool, loopback: bool) -> InterfaceAddr {
        InterfaceAddr {
            name: name.into(),
            addr: addr.parse().unwrap(),
            up,
            running: up,
            loopback,
        }
    }

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn machine() -> Vec<InterfaceAddr> {
        vec![
            iface("lo", "127.0.0.1", true, true),
            iface("lo", "::1", true, true),
            iface("eth0", "192.0.2.10", true, false),
            iface("eth0", "2001:db8::10", true, false),
            iface("eth0", "fe80::1", true, false),
            iface("eth1", "169.254.3.4", true, false),
            iface("eth2", "198.51.100.7", false, false),
            iface("wlan0", "10.1.2.3", true, false),
            // The same address on two interfaces (a bond) is offered once.
            iface("bond0", "10.1.2.3", true, false),
        ]
    }

    #[test]
    fn default_skips_loopback_link_local_and_down() {
        assert_eq!(
            host_addresses_from(&machine(), HostOptions::default()),
            ips(&["192.0.2.10", "2001:db8::10", "10.1.2.3"])
        );
    }

    #[test]
    fn loopback_only_when_asked() {
        let opts = HostOptions {
            loopback: true,
            ..HostOptions::default()
        };
        assert_eq!(
            host_addresses_from(&machine(), opts),
            ips(&["127.0.0.1", "::1", "192.0.2.10", "2001:db8::10", "10.1.2.3"])
        );
        // An address on a loopback interface counts as loopback even when it
        // is not 127/8 (a service address bound to `lo`).
        let v = vec![iface("lo", "192.0.2.99", true, true)];
        assert!(host_addresses_from(&v, HostOptions::default()).is_empty());
    }

    #[test]
    fn ipv4_only() {
        let opts = HostOptions {
            ipv4_only: true,
            ..HostOptions::default()
        };
        assert_eq!(
            host_addresses_from(&machine(), opts),
            ips(&["192.0.2.10", "10.1.2.3"])
        );
    }

    #[test]
    fn up_but_not_running_is_skipped() {
        let mut i = iface("docker0", "172.17.0.1", true, false);
        i.running = false;
        assert!(host_addresses_from(&[i], HostOptions::default()).is_empty());
    }

    #[test]
    fn unusable_addresses_are_skipped() {
        let v = vec![
            iface("x", "0.0.0.0", true, false),
            iface("x", "::", true, false),
            iface("x", "224.0.0.1", true, false),
            iface("x", "ff02::1", true, false),
            iface("x", "255.255.255.255", true, false),
            iface("x", "::ffff:192.0.2.1", true, false),
            iface("x", "::192.0.2.1", true, false),
            iface("x", "fec0::1", true, false),
        ];
        assert!(host_addresses_from(&v, HostOptions::default()).is_empty());
    }

    #[test]
    fn link_local_ranges() {
        for s in ["169.254.0.1", "169.254.255.254", "fe80::1", "febf:ffff::1"] {
            assert!(is_link_local(s.parse().unwrap()), "{s}");
        }
        for s in [
            "169.253.0.1",
            "169.255.0.1",
            "fec0::1",
            "fe7f::1",
            "2001:db8::1",
        ] {
            assert!(!is_link_local(s.parse().unwrap()), "{s}");
        }
    }

    /// The real OS call: every Unix machine has a loopback interface that is
    /// up, and it is offered only when asked.
    #[cfg(target_os = "linux")]
    #[test]
    fn os_list_has_loopback() {
        let all = os_interfaces().expect("getifaddrs");
        assert!(
            all.iter()
                .any(|i| i.addr == IpAddr::V4(Ipv4Addr::LOCALHOST) && i.loopback && i.up),
            "{all:?}"
        );
        let with = host_addresses(HostOptions {
            loopback: true,
            ..HostOptions::default()
        })
        .unwrap();
        assert!(with.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)), "{with:?}");
        let without = host_addresses(HostOptions::default()).unwrap();
        assert!(
            without
                .iter()
                .all(|ip| !ip.is_loopback() && !is_link_local(*ip))
        );
    }
}
