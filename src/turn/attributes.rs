//! The TURN attributes of RFC 8656 §18, typed.
//!
//! They are ordinary STUN TLVs (see [`crate::stun::attributes`]); the STUN
//! codec keeps them as [`Attribute::Other`](crate::stun::Attribute::Other) and
//! this module gives them types. It lives beside `stun` rather than inside
//! `stun::Attribute` so that a STUN-only reader (ICE, the Binding server) never
//! sees TURN's vocabulary, and the STUN codec stays as it is.
//!
//! ```text
//!  CHANNEL-NUMBER           REQUESTED-TRANSPORT       EVEN-PORT
//! +--------+--------+      +----+---------------+    +-+-------+
//! | number |  RFFU  |      | 17 |     RFFU      |    |R| RFFU  |  (1 byte)
//! +--------+--------+      +----+---------------+    +-+-------+
//!  LIFETIME: 32-bit seconds · DATA: the payload · DONT-FRAGMENT: no value
//!  XOR-PEER-ADDRESS, XOR-RELAYED-ADDRESS: as XOR-MAPPED-ADDRESS
//!  REQUESTED-ADDRESS-FAMILY: family (1 IPv4, 2 IPv6), 3 bytes RFFU
//!  RESERVATION-TOKEN: 8 opaque bytes
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use crate::stun::attributes::{emit_xor_address, parse_xor_address};
use crate::stun::{self, Message, MessageEncoder, TransactionId, attr};

/// RFC 8656 §18.8 / §14.7: the protocol number for UDP in REQUESTED-TRANSPORT.
pub const PROTOCOL_UDP: u8 = 17;

/// An IP address family, as REQUESTED-ADDRESS-FAMILY carries it (RFC 8656 §18.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// 0x01.
    Ipv4,
    /// 0x02.
    Ipv6,
}

impl AddressFamily {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            AddressFamily::Ipv4 => 0x01,
            AddressFamily::Ipv6 => 0x02,
        }
    }
    /// The family of an address.
    pub fn of(a: SocketAddr) -> Self {
        if a.is_ipv4() {
            AddressFamily::Ipv4
        } else {
            AddressFamily::Ipv6
        }
    }
}

/// A TURN attribute, its variable parts borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnAttribute<'a> {
    /// CHANNEL-NUMBER (RFC 8656 §18.1): 16-bit channel, 16 bits RFFU.
    ChannelNumber(u16),
    /// LIFETIME (RFC 8656 §18.2): seconds until the allocation expires.
    Lifetime(u32),
    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    XorPeerAddress(SocketAddr),
    /// DATA (RFC 8656 §18.4): the application payload.
    Data(&'a [u8]),
    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    XorRelayedAddress(SocketAddr),
    /// REQUESTED-ADDRESS-FAMILY (RFC 8656 §18.6).
    RequestedAddressFamily(AddressFamily),
    /// EVEN-PORT (RFC 8656 §18.7): the R bit asks to reserve the next port too.
    EvenPort {
        /// The R bit.
        reserve: bool,
    },
    /// REQUESTED-TRANSPORT (RFC 8656 §18.8): the IP protocol number (17 = UDP).
    RequestedTransport(u8),
    /// DONT-FRAGMENT (RFC 8656 §18.9), no value.
    DontFragment,
    /// RESERVATION-TOKEN (RFC 8656 §18.10): 8 opaque bytes.
    ReservationToken([u8; 8]),
}

/// Whether `typ` is one of the TURN attributes this module types.
pub fn is_turn_attribute(typ: u16) -> bool {
    matches!(
        typ,
        attr::CHANNEL_NUMBER
            | attr::LIFETIME
            | attr::XOR_PEER_ADDRESS
            | attr::DATA
            | attr::XOR_RELAYED_ADDRESS
            | attr::REQUESTED_ADDRESS_FAMILY
            | attr::EVEN_PORT
            | attr::REQUESTED_TRANSPORT
            | attr::DONT_FRAGMENT
            | attr::RESERVATION_TOKEN
    )
}

fn four(value: &[u8], err: &'static str) -> Result<[u8; 4], &'static str> {
    value.try_into().map_err(|_| err)
}

impl<'a> TurnAttribute<'a> {
    /// The type code.
    pub fn typ(&self) -> u16 {
        match self {
            TurnAttribute::ChannelNumber(_) => attr::CHANNEL_NUMBER,
            TurnAttribute::Lifetime(_) => attr::LIFETIME,
            TurnAttribute::XorPeerAddress(_) => attr::XOR_PEER_ADDRESS,
            TurnAttribute::Data(_) => attr::DATA,
            TurnAttribute::XorRelayedAddress(_) => attr::XOR_RELAYED_ADDRESS,
            TurnAttribute::RequestedAddressFamily(_) => attr::REQUESTED_ADDRESS_FAMILY,
            TurnAttribute::EvenPort { .. } => attr::EVEN_PORT,
            TurnAttribute::RequestedTransport(_) => attr::REQUESTED_TRANSPORT,
            TurnAttribute::DontFragment => attr::DONT_FRAGMENT,
            TurnAttribute::ReservationToken(_) => attr::RESERVATION_TOKEN,
        }
    }

    /// Decodes the value of a TURN attribute of type `typ`; `Err` for a
    /// malformed value or a type that is not a TURN attribute.
    pub fn parse(typ: u16, value: &'a [u8], tid: &TransactionId) -> Result<Self, &'static str> {
        Ok(match typ {
            attr::CHANNEL_NUMBER => {
                let b = four(value, "CHANNEL-NUMBER is not 4 bytes")?;
                TurnAttribute::ChannelNumber(u16::from_be_bytes([b[0], b[1]]))
            }
            attr::LIFETIME => {
                TurnAttribute::Lifetime(u32::from_be_bytes(four(value, "LIFETIME is not 4 bytes")?))
            }
            attr::XOR_PEER_ADDRESS => TurnAttribute::XorPeerAddress(parse_xor_address(value, tid)?),
            attr::DATA => TurnAttribute::Data(value),
            attr::XOR_RELAYED_ADDRESS => {
                TurnAttribute::XorRelayedAddress(parse_xor_address(value, tid)?)
            }
            attr::REQUESTED_ADDRESS_FAMILY => {
                let b = four(value, "REQUESTED-ADDRESS-FAMILY is not 4 bytes")?;
                TurnAttribute::RequestedAddressFamily(match b[0] {
                    0x01 => AddressFamily::Ipv4,
                    0x02 => AddressFamily::Ipv6,
                    _ => return Err("REQUESTED-ADDRESS-FAMILY names an unknown family"),
                })
            }
            attr::EVEN_PORT => {
                // RFC 8656 §18.7: one byte, the R bit on top, 7 RFFU bits.
                let [b]: [u8; 1] = value.try_into().map_err(|_| "EVEN-PORT is not 1 byte")?;
                TurnAttribute::EvenPort {
                    reserve: b & 0x80 != 0,
                }
            }
            attr::REQUESTED_TRANSPORT => {
                let b = four(value, "REQUESTED-TRANSPORT is not 4 bytes")?;
                TurnAttribute::RequestedTransport(b[0])
            }
            attr::DONT_FRAGMENT => {
                if !value.is_empty() {
                    return Err("DONT-FRAGMENT has a value");
                }
                TurnAttribute::DontFragment
            }
            attr::RESERVATION_TOKEN => TurnAttribute::ReservationToken(
                value
                    .try_into()
                    .map_err(|_| "RESERVATION-TOKEN is not 8 bytes")?,
            ),
            _ => return Err("not a TURN attribute"),
        })
    }

    /// Appends the value (without header or padding) to `out`.
    pub fn emit_value(&self, tid: &TransactionId, out: &mut Vec<u8>) {
        match *self {
            TurnAttribute::ChannelNumber(c) => {
                out.extend_from_slice(&c.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            TurnAttribute::Lifetime(s) => out.extend_from_slice(&s.to_be_bytes()),
            TurnAttribute::XorPeerAddress(a) | TurnAttribute::XorRelayedAddress(a) => {
                emit_xor_address(a, tid, out)
            }
            TurnAttribute::Data(d) => out.extend_from_slice(d),
            TurnAttribute::RequestedAddressFamily(f) => out.extend_from_slice(&[f.code(), 0, 0, 0]),
            TurnAttribute::EvenPort { reserve } => out.push(if reserve { 0x80 } else { 0 }),
            TurnAttribute::RequestedTransport(p) => out.extend_from_slice(&[p, 0, 0, 0]),
            TurnAttribute::DontFragment => {}
            TurnAttribute::ReservationToken(t) => out.extend_from_slice(&t),
        }
    }

    /// Appends the attribute to a message being built.
    pub fn emit(&self, enc: &mut MessageEncoder<'_>) {
        let tid = enc.transaction_id();
        enc.with_value(self.typ(), |out| self.emit_value(&tid, out));
    }
}

/// The first attribute of TURN type `typ` in `msg`, typed; `Ok(None)` when absent.
pub fn get<'a>(msg: &Message<'a>, typ: u16) -> Result<Option<TurnAttribute<'a>>, stun::Error> {
    match msg.get(typ) {
        None => Ok(None),
        Some(a) => TurnAttribute::parse(a.typ, a.value, &msg.transaction_id())
            .map(Some)
            .map_err(|reason| stun::Error::BadAttribute {
                typ: a.typ,
                offset: a.offset,
                reason,
            }),
    }
}

/// Every XOR-PEER-ADDRESS of a message, in order (CreatePermission may carry
/// several, RFC 8656 §9.1); the first malformed one is an error.
pub fn peer_addresses(msg: &Message<'_>) -> Result<Vec<SocketAddr>, stun::Error> {
    let tid = msg.transaction_id();
    msg.attributes()
        .filter(|a| a.typ == attr::XOR_PEER_ADDRESS)
        .map(|a| {
            parse_xor_address(a.value, &tid).map_err(|reason| stun::Error::BadAttribute {
                typ: a.typ,
                offset: a.offset,
                reason,
            })
        })
        .collect()
}

/// LIFETIME of a message as a duration, if present and well formed.
pub fn lifetime(msg: &Message<'_>) -> Option<Duration> {
    match get(msg, attr::LIFETIME) {
        Ok(Some(TurnAttribute::Lifetime(s))) => Some(Duration::from_secs(u64::from(s))),
        _ => None,
    }
}

/// XOR-PEER-ADDRESS (the first one), if present and well formed.
pub fn peer_address(msg: &Message<'_>) -> Option<SocketAddr> {
    match get(msg, attr::XOR_PEER_ADDRESS) {
        Ok(Some(TurnAttribute::XorPeerAddress(a))) => Some(a),
        _ => None,
    }
}

/// DATA, if present.
pub fn data<'a>(msg: &Message<'a>) -> Option<&'a [u8]> {
    msg.get(attr::DATA).map(|a| a.value)
}

/// CHANNEL-NUMBER, if present and well formed.
pub fn channel_number(msg: &Message<'_>) -> Option<u16> {
    match get(msg, attr::CHANNEL_NUMBER) {
        Ok(Some(TurnAttribute::ChannelNumber(c))) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{Class, MessageType, Method};
    use proptest::prelude::*;

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    fn arb_owned() -> impl Strategy<Value = (u16, Vec<u8>, SocketAddr, u32, bool, u8, [u8; 8])> {
        (
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..200),
            arb_addr(),
            any::<u32>(),
            any::<bool>(),
            any::<u8>(),
            any::<[u8; 8]>(),
        )
    }

    proptest! {
        #[test]
        fn every_attribute_round_trips_through_a_message(
            (chan, data, addr, life, r, proto, token) in arb_owned(), tid in any::<[u8; 12]>()
        ) {
            let tid = TransactionId(tid);
            let attrs = [
                TurnAttribute::ChannelNumber(chan),
                TurnAttribute::Lifetime(life),
                TurnAttribute::XorPeerAddress(addr),
                TurnAttribute::Data(&data),
                TurnAttribute::XorRelayedAddress(addr),
                TurnAttribute::RequestedAddressFamily(AddressFamily::of(addr)),
                TurnAttribute::EvenPort { reserve: r },
                TurnAttribute::RequestedTransport(proto),
                TurnAttribute::DontFragment,
                TurnAttribute::ReservationToken(token),
            ];
            let mut out = Vec::new();
            let mut enc = MessageEncoder::new(
                &mut out, MessageType::new(Class::Request, Method::ALLOCATE), tid);
            for a in &attrs {
                a.emit(&mut enc);
            }
            enc.finish().unwrap();
            let msg = Message::parse(&out).unwrap();
            for a in &attrs {
                prop_assert_eq!(get(&msg, a.typ()).unwrap(), Some(*a));
            }
        }

        #[test]
        fn arbitrary_values_never_panic(typ in 0u16..0x30, value in proptest::collection::vec(any::<u8>(), 0..40)) {
            let tid = TransactionId([7; 12]);
            if let Ok(a) = TurnAttribute::parse(typ, &value, &tid) {
                let mut v = Vec::new();
                a.emit_value(&tid, &mut v);
                prop_assert_eq!(TurnAttribute::parse(typ, &v, &tid).unwrap(), a);
            }
        }
    }

    #[test]
    fn xor_peer_address_matches_the_stun_codec() {
        // The TURN XOR addresses use XOR-MAPPED-ADDRESS's format, so the STUN
        // view's generic reader agrees with the typed one.
        let tid = TransactionId([1; 12]);
        let peer: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::new(Class::Indication, Method::SEND),
            tid,
        );
        TurnAttribute::XorPeerAddress(peer).emit(&mut enc);
        TurnAttribute::XorPeerAddress("[2001:db8::1]:9".parse().unwrap()).emit(&mut enc);
        enc.finish().unwrap();
        let msg = Message::parse(&out).unwrap();
        assert_eq!(msg.address(attr::XOR_PEER_ADDRESS).unwrap(), Some(peer));
        assert_eq!(peer_addresses(&msg).unwrap().len(), 2);
        // On the wire the port is XORed with 0x2112: 4000 ^ 0x2112 = 0x2EB2.
        assert_eq!(&out[20 + 6..20 + 8], &(4000u16 ^ 0x2112).to_be_bytes());
    }

    #[test]
    fn malformed_values_are_refused() {
        let tid = TransactionId([0; 12]);
        assert!(TurnAttribute::parse(attr::LIFETIME, &[0, 0, 1], &tid).is_err());
        assert!(TurnAttribute::parse(attr::EVEN_PORT, &[0, 0], &tid).is_err());
        assert!(TurnAttribute::parse(attr::DONT_FRAGMENT, &[0], &tid).is_err());
        assert!(TurnAttribute::parse(attr::REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0], &tid).is_err());
        assert!(TurnAttribute::parse(attr::USERNAME, b"x", &tid).is_err());
    }
}
