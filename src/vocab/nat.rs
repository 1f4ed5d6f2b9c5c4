//! NAT behaviours (RFC 4787): what a NAT does with mappings and with
//! inbound packets. `stun::nat` reports them (RFC 5780 discovery) and
//! `sim::nat` behaves by them, so both speak these two types.

use std::fmt;

/// Mapping behaviour, RFC 4787 §4.1: when does an outbound packet reuse an
/// existing mapping?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MappingBehavior {
    /// The same mapping for every destination (REQ-1 says a NAT MUST behave
    /// this way).
    EndpointIndependent,
    /// The same mapping for destinations with the same IP address.
    AddressDependent,
    /// A new mapping for each destination IP address and port (the classic
    /// "symmetric NAT").
    AddressAndPortDependent,
}

/// Filtering behaviour, RFC 4787 §5: which inbound packets does a mapping let
/// through?
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FilteringBehavior {
    /// Any external endpoint may send to the mapping.
    EndpointIndependent,
    /// Only IP addresses the internal endpoint has sent to (any port).
    AddressDependent,
    /// Only IP addresses and ports the internal endpoint has sent to.
    AddressAndPortDependent,
}

impl fmt::Display for MappingBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappingBehavior::EndpointIndependent => "endpoint-independent mapping",
            MappingBehavior::AddressDependent => "address-dependent mapping",
            MappingBehavior::AddressAndPortDependent => "address-and-port-dependent mapping",
        })
    }
}

impl fmt::Display for FilteringBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilteringBehavior::EndpointIndependent => "endpoint-independent filtering",
            FilteringBehavior::AddressDependent => "address-dependent filtering",
            FilteringBehavior::AddressAndPortDependent => "address-and-port-dependent filtering",
        })
    }
}
