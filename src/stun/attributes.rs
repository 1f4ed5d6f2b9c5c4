//! STUN attributes: their type codes, typed values, and the codecs for each.
//!
//! Every attribute is a TLV (RFC 8489 §14):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Type                  |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Value (variable)                ....
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! `Length` counts the value without its padding to a multiple of four bytes.
//! Types below 0x8000 are *comprehension-required*: a server that does not know
//! one answers 420 (Unknown Attribute). Types from 0x8000 up are
//! *comprehension-optional* and are skipped when unknown.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::Error;
use super::message::{MAGIC_COOKIE, TransactionId};

/// Attribute type codes (IANA "STUN Attributes" registry).
pub mod attr {
    /// RFC 8489 §14.1.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// RFC 5780 §7.2.
    pub const CHANGE_REQUEST: u16 = 0x0003;
    /// RFC 8489 §14.3.
    pub const USERNAME: u16 = 0x0006;
    /// RFC 8489 §14.5.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// RFC 8489 §14.8.
    pub const ERROR_CODE: u16 = 0x0009;
    /// RFC 8489 §14.13.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// RFC 8656 §18.1 (TURN).
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// RFC 8656 §18.2 (TURN).
    pub const LIFETIME: u16 = 0x000D;
    /// RFC 8656 §18.3 (TURN).
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// RFC 8656 §18.4 (TURN).
    pub const DATA: u16 = 0x0013;
    /// RFC 8489 §14.9.
    pub const REALM: u16 = 0x0014;
    /// RFC 8489 §14.10.
    pub const NONCE: u16 = 0x0015;
    /// RFC 8656 §18.5 (TURN).
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// RFC 8656 §18.6 (TURN).
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// RFC 8656 §18.7 (TURN).
    pub const EVEN_PORT: u16 = 0x0018;
    /// RFC 8656 §18.8 (TURN).
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// RFC 8656 §18.9 (TURN).
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// RFC 8489 §14.6.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// RFC 8489 §14.12.
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// RFC 8489 §14.4.
    pub const USERHASH: u16 = 0x001E;
    /// RFC 8489 §14.2.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RFC 8656 §18.10 (TURN).
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// RFC 8445 §16.1 (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// RFC 8445 §16.1 (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// RFC 5780 §7.6.
    pub const PADDING: u16 = 0x0026;
    /// RFC 5780 §7.5.
    pub const RESPONSE_PORT: u16 = 0x0027;
    /// RFC 8656 §18.11 (TURN).
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    /// RFC 8656 §18.12 (TURN).
    pub const ADDRESS_ERROR_CODE: u16 = 0x8001;
    /// RFC 8489 §14.11.
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    /// RFC 8489 §14.16.
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    /// RFC 8656 §18.13 (TURN).
    pub const ICMP: u16 = 0x8004;
    /// RFC 8489 §14.14.
    pub const SOFTWARE: u16 = 0x8022;
    /// RFC 8489 §14.15.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// RFC 8489 §14.7.
    pub const FINGERPRINT: u16 = 0x8028;
    /// RFC 8445 §16.1 (ICE).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// RFC 8445 §16.1 (ICE).
    pub const ICE_CONTROLLING: u16 = 0x802A;
    /// RFC 5780 §7.3.
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    /// RFC 5780 §7.4.
    pub const OTHER_ADDRESS: u16 = 0x802C;
    /// Chromium's GOOG-NETWORK-INFO (network id and cost), comprehension-optional.
    pub const GOOG_NETWORK_INFO: u16 = 0xC057;
}

/// The name of an attribute type, for logs and errors.
pub fn attribute_name(typ: u16) -> &'static str {
    use attr::*;
    match typ {
        MAPPED_ADDRESS => "MAPPED-ADDRESS",
        CHANGE_REQUEST => "CHANGE-REQUEST",
        USERNAME => "USERNAME",
        MESSAGE_INTEGRITY => "MESSAGE-INTEGRITY",
        ERROR_CODE => "ERROR-CODE",
        UNKNOWN_ATTRIBUTES => "UNKNOWN-ATTRIBUTES",
        CHANNEL_NUMBER => "CHANNEL-NUMBER",
        LIFETIME => "LIFETIME",
        XOR_PEER_ADDRESS => "XOR-PEER-ADDRESS",
        DATA => "DATA",
        REALM => "REALM",
        NONCE => "NONCE",
        XOR_RELAYED_ADDRESS => "XOR-RELAYED-ADDRESS",
        REQUESTED_ADDRESS_FAMILY => "REQUESTED-ADDRESS-FAMILY",
        EVEN_PORT => "EVEN-PORT",
        REQUESTED_TRANSPORT => "REQUESTED-TRANSPORT",
        DONT_FRAGMENT => "DONT-FRAGMENT",
        MESSAGE_INTEGRITY_SHA256 => "MESSAGE-INTEGRITY-SHA256",
        PASSWORD_ALGORITHM => "PASSWORD-ALGORITHM",
        USERHASH => "USERHASH",
        XOR_MAPPED_ADDRESS => "XOR-MAPPED-ADDRESS",
        RESERVATION_TOKEN => "RESERVATION-TOKEN",
        PRIORITY => "PRIORITY",
        USE_CANDIDATE => "USE-CANDIDATE",
        PADDING => "PADDING",
        RESPONSE_PORT => "RESPONSE-PORT",
        ADDITIONAL_ADDRESS_FAMILY => "ADDITIONAL-ADDRESS-FAMILY",
        ADDRESS_ERROR_CODE => "ADDRESS-ERROR-CODE",
        PASSWORD_ALGORITHMS => "PASSWORD-ALGORITHMS",
        ALTERNATE_DOMAIN => "ALTERNATE-DOMAIN",
        ICMP => "ICMP",
        SOFTWARE => "SOFTWARE",
        ALTERNATE_SERVER => "ALTERNATE-SERVER",
        FINGERPRINT => "FINGERPRINT",
        ICE_CONTROLLED => "ICE-CONTROLLED",
        ICE_CONTROLLING => "ICE-CONTROLLING",
        RESPONSE_ORIGIN => "RESPONSE-ORIGIN",
        OTHER_ADDRESS => "OTHER-ADDRESS",
        GOOG_NETWORK_INFO => "GOOG-NETWORK-INFO",
        _ => "unknown",
    }
}

/// RFC 8489 §14: types 0x0000–0x7FFF must be understood by the receiver.
pub fn is_comprehension_required(typ: u16) -> bool {
    typ < 0x8000
}

/// Bytes of padding after a value of `len` bytes (RFC 8489 §14: values are
/// padded to a multiple of 4).
pub const fn padding(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// The password algorithms of RFC 8489 §18.5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PasswordAlgorithm {
    /// 0x0001: the key is MD5(username ":" realm ":" password) (RFC 8489 §9.2.2).
    Md5,
    /// 0x0002: the key is SHA-256(username ":" realm ":" password).
    Sha256,
    /// Any other code; its parameters are kept as received.
    Other(u16),
}

impl PasswordAlgorithm {
    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            PasswordAlgorithm::Md5 => 0x0001,
            PasswordAlgorithm::Sha256 => 0x0002,
            PasswordAlgorithm::Other(c) => c,
        }
    }
    /// From the wire code.
    pub fn from_code(code: u16) -> Self {
        match code {
            0x0001 => PasswordAlgorithm::Md5,
            0x0002 => PasswordAlgorithm::Sha256,
            c => PasswordAlgorithm::Other(c),
        }
    }
}

/// A list of (algorithm, parameters) pairs as carried by PASSWORD-ALGORITHMS
/// (RFC 8489 §14.11), borrowed from the message; iterate it to read the entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordAlgorithms<'a> {
    raw: &'a [u8],
}

impl<'a> PasswordAlgorithms<'a> {
    /// Checks the grammar of the value and wraps it.
    fn parse(raw: &'a [u8]) -> Result<Self, &'static str> {
        let mut rest = raw;
        while !rest.is_empty() {
            let (_, _, next) = split_algorithm(rest)?;
            rest = next;
        }
        Ok(PasswordAlgorithms { raw })
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (PasswordAlgorithm, &'a [u8])> + 'a {
        let mut rest = self.raw;
        std::iter::from_fn(move || {
            if rest.is_empty() {
                return None;
            }
            // The grammar was checked in `parse`, so this cannot fail; stop
            // quietly if it somehow did.
            let (alg, params, next) = split_algorithm(rest).ok()?;
            rest = next;
            Some((alg, params))
        })
    }

    /// Writes the value for a list of entries.
    pub fn emit(entries: &[(PasswordAlgorithm, &[u8])], out: &mut Vec<u8>) {
        for (alg, params) in entries {
            out.extend_from_slice(&alg.code().to_be_bytes());
            out.extend_from_slice(&(params.len() as u16).to_be_bytes());
            out.extend_from_slice(params);
            out.resize(out.len() + padding(params.len()), 0);
        }
    }
}

/// One (algorithm, parameters) entry and the rest, RFC 8489 §14.11:
/// 16-bit algorithm, 16-bit parameters length, parameters padded to 4 bytes.
fn split_algorithm(b: &[u8]) -> Result<(PasswordAlgorithm, &[u8], &[u8]), &'static str> {
    if b.len() < 4 {
        return Err("password algorithm entry shorter than 4 bytes");
    }
    let alg = PasswordAlgorithm::from_code(u16::from_be_bytes([b[0], b[1]]));
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let padded = len + padding(len);
    if b.len() < 4 + padded {
        return Err("password algorithm parameters overrun the attribute");
    }
    Ok((alg, &b[4..4 + len], &b[4 + padded..]))
}

/// The list of attribute types in UNKNOWN-ATTRIBUTES (RFC 8489 §14.13),
/// borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownAttributes<'a> {
    raw: &'a [u8],
}

impl<'a> UnknownAttributes<'a> {
    /// The attribute types listed.
    pub fn iter(&self) -> impl Iterator<Item = u16> + 'a {
        self.raw
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
}

/// ERROR-CODE (RFC 8489 §14.8): a code from 300 to 699 and a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The code, `class * 100 + number`.
    pub code: u16,
    /// The UTF-8 reason phrase (at most 763 bytes).
    pub reason: &'a str,
}

/// Error codes used by rtclab (RFC 8489 §14.8, RFC 8445 §7.3.1.1, RFC 8656 §19).
pub mod error_code {
    /// Try Alternate.
    pub const TRY_ALTERNATE: u16 = 300;
    /// Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// Unauthenticated.
    pub const UNAUTHENTICATED: u16 = 401;
    /// Forbidden (TURN).
    pub const FORBIDDEN: u16 = 403;
    /// Unknown Attribute.
    pub const UNKNOWN_ATTRIBUTE: u16 = 420;
    /// Allocation Mismatch (TURN).
    pub const ALLOCATION_MISMATCH: u16 = 437;
    /// Stale Nonce.
    pub const STALE_NONCE: u16 = 438;
    /// Role Conflict (ICE).
    pub const ROLE_CONFLICT: u16 = 487;
    /// Server Error.
    pub const SERVER_ERROR: u16 = 500;

    /// The RFC's recommended reason phrase for a code.
    pub fn reason(code: u16) -> &'static str {
        match code {
            300 => "Try Alternate",
            400 => "Bad Request",
            401 => "Unauthenticated",
            403 => "Forbidden",
            420 => "Unknown Attribute",
            437 => "Allocation Mismatch",
            438 => "Stale Nonce",
            440 => "Address Family not Supported",
            441 => "Wrong Credentials",
            442 => "Unsupported Transport Protocol",
            443 => "Peer Address Family Mismatch",
            486 => "Allocation Quota Reached",
            487 => "Role Conflict",
            500 => "Server Error",
            508 => "Insufficient Capacity",
            _ => "",
        }
    }
}

/// A decoded attribute, borrowing its variable-length parts from the message.
///
/// Attributes rtclab does not model (TURN's arrive with the TURN module, and
/// anything unknown) decode as [`Attribute::Other`] with their raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute<'a> {
    /// MAPPED-ADDRESS (RFC 8489 §14.1): the reflexive address, in the clear.
    MappedAddress(SocketAddr),
    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2): the reflexive address, XORed.
    XorMappedAddress(SocketAddr),
    /// USERNAME (RFC 8489 §14.3), at most 509 bytes of UTF-8.
    Username(&'a str),
    /// USERHASH (RFC 8489 §14.4): SHA-256(username ":" realm).
    UserHash(&'a [u8; 32]),
    /// MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1.
    MessageIntegrity(&'a [u8; 20]),
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6): HMAC-SHA256, 16 to 32 bytes.
    MessageIntegritySha256(&'a [u8]),
    /// FINGERPRINT (RFC 8489 §14.7): CRC-32 XOR 0x5354554E.
    Fingerprint(u32),
    /// ERROR-CODE (RFC 8489 §14.8).
    ErrorCode(ErrorCode<'a>),
    /// REALM (RFC 8489 §14.9).
    Realm(&'a str),
    /// NONCE (RFC 8489 §14.10).
    Nonce(&'a str),
    /// PASSWORD-ALGORITHMS (RFC 8489 §14.11).
    PasswordAlgorithms(PasswordAlgorithms<'a>),
    /// PASSWORD-ALGORITHM (RFC 8489 §14.12), with its parameters.
    PasswordAlgorithm(PasswordAlgorithm, &'a [u8]),
    /// UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    UnknownAttributes(UnknownAttributes<'a>),
    /// SOFTWARE (RFC 8489 §14.14).
    Software(&'a str),
    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    AlternateServer(SocketAddr),
    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    AlternateDomain(&'a str),
    /// PRIORITY (RFC 8445 §7.1.1).
    Priority(u32),
    /// USE-CANDIDATE (RFC 8445 §7.1.2), no value.
    UseCandidate,
    /// ICE-CONTROLLED with its tie-breaker (RFC 8445 §7.1.3).
    IceControlled(u64),
    /// ICE-CONTROLLING with its tie-breaker (RFC 8445 §7.1.3).
    IceControlling(u64),
    /// CHANGE-REQUEST (RFC 5780 §7.2).
    ChangeRequest {
        /// Answer from the other IP address.
        change_ip: bool,
        /// Answer from the other port.
        change_port: bool,
    },
    /// RESPONSE-ORIGIN (RFC 5780 §7.3): where the response was sent from.
    ResponseOrigin(SocketAddr),
    /// OTHER-ADDRESS (RFC 5780 §7.4): the server's alternate address and port.
    OtherAddress(SocketAddr),
    /// RESPONSE-PORT (RFC 5780 §7.5).
    ResponsePort(u16),
    /// PADDING (RFC 5780 §7.6).
    Padding(&'a [u8]),
    /// Any other attribute, kept raw.
    Other {
        /// Its type.
        typ: u16,
        /// Its value, without padding.
        value: &'a [u8],
    },
}

impl<'a> Attribute<'a> {
    /// The attribute's type code.
    pub fn typ(&self) -> u16 {
        use attr::*;
        match self {
            Attribute::MappedAddress(_) => MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => XOR_MAPPED_ADDRESS,
            Attribute::Username(_) => USERNAME,
            Attribute::UserHash(_) => USERHASH,
            Attribute::MessageIntegrity(_) => MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => FINGERPRINT,
            Attribute::ErrorCode(_) => ERROR_CODE,
            Attribute::Realm(_) => REALM,
            Attribute::Nonce(_) => NONCE,
            Attribute::PasswordAlgorithms(_) => PASSWORD_ALGORITHMS,
            Attribute::PasswordAlgorithm(..) => PASSWORD_ALGORITHM,
            Attribute::UnknownAttributes(_) => UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => SOFTWARE,
            Attribute::AlternateServer(_) => ALTERNATE_SERVER,
            Attribute::AlternateDomain(_) => ALTERNATE_DOMAIN,
            Attribute::Priority(_) => PRIORITY,
            Attribute::UseCandidate => USE_CANDIDATE,
            Attribute::IceControlled(_) => ICE_CONTROLLED,
            Attribute::IceControlling(_) => ICE_CONTROLLING,
            Attribute::ChangeRequest { .. } => CHANGE_REQUEST,
            Attribute::ResponseOrigin(_) => RESPONSE_ORIGIN,
            Attribute::OtherAddress(_) => OTHER_ADDRESS,
            Attribute::ResponsePort(_) => RESPONSE_PORT,
            Attribute::Padding(_) => PADDING,
            Attribute::Other { typ, .. } => *typ,
        }
    }

    /// Decodes the value of an attribute of type `typ`. `tid` is the message's
    /// transaction id (the XOR-address attributes need it).
    pub fn parse(typ: u16, value: &'a [u8], tid: &TransactionId) -> Result<Self, &'static str> {
        use attr::*;
        Ok(match typ {
            MAPPED_ADDRESS => Attribute::MappedAddress(parse_address(value)?),
            XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(parse_xor_address(value, tid)?),
            USERNAME => Attribute::Username(utf8(value, 509)?),
            USERHASH => {
                Attribute::UserHash(value.try_into().map_err(|_| "USERHASH is not 32 bytes")?)
            }
            MESSAGE_INTEGRITY => Attribute::MessageIntegrity(
                value
                    .try_into()
                    .map_err(|_| "MESSAGE-INTEGRITY is not 20 bytes")?,
            ),
            MESSAGE_INTEGRITY_SHA256 => {
                // RFC 8489 §14.6: at least 16 bytes, a multiple of 4, at most 32.
                if value.len() < 16 || value.len() > 32 || value.len() % 4 != 0 {
                    return Err(
                        "MESSAGE-INTEGRITY-SHA256 length is not 16..=32 and a multiple of 4",
                    );
                }
                Attribute::MessageIntegritySha256(value)
            }
            FINGERPRINT => Attribute::Fingerprint(be_u32(value, "FINGERPRINT is not 4 bytes")?),
            ERROR_CODE => Attribute::ErrorCode(parse_error_code(value)?),
            REALM => Attribute::Realm(utf8(value, 763)?),
            NONCE => Attribute::Nonce(utf8(value, 763)?),
            PASSWORD_ALGORITHMS => Attribute::PasswordAlgorithms(PasswordAlgorithms::parse(value)?),
            PASSWORD_ALGORITHM => {
                let (alg, params, rest) = split_algorithm(value)?;
                if !rest.is_empty() {
                    return Err("PASSWORD-ALGORITHM has bytes after its parameters");
                }
                Attribute::PasswordAlgorithm(alg, params)
            }
            UNKNOWN_ATTRIBUTES => {
                if value.len() % 2 != 0 {
                    return Err("UNKNOWN-ATTRIBUTES length is odd");
                }
                Attribute::UnknownAttributes(UnknownAttributes { raw: value })
            }
            SOFTWARE => Attribute::Software(utf8(value, 763)?),
            ALTERNATE_SERVER => Attribute::AlternateServer(parse_address(value)?),
            ALTERNATE_DOMAIN => Attribute::AlternateDomain(utf8(value, 255)?),
            PRIORITY => Attribute::Priority(be_u32(value, "PRIORITY is not 4 bytes")?),
            USE_CANDIDATE => {
                if !value.is_empty() {
                    return Err("USE-CANDIDATE has a value");
                }
                Attribute::UseCandidate
            }
            ICE_CONTROLLED => {
                Attribute::IceControlled(be_u64(value, "ICE-CONTROLLED is not 8 bytes")?)
            }
            ICE_CONTROLLING => {
                Attribute::IceControlling(be_u64(value, "ICE-CONTROLLING is not 8 bytes")?)
            }
            CHANGE_REQUEST => {
                let v = be_u32(value, "CHANGE-REQUEST is not 4 bytes")?;
                Attribute::ChangeRequest {
                    change_ip: v & 0x4 != 0,
                    change_port: v & 0x2 != 0,
                }
            }
            RESPONSE_ORIGIN => Attribute::ResponseOrigin(parse_address(value)?),
            OTHER_ADDRESS => Attribute::OtherAddress(parse_address(value)?),
            RESPONSE_PORT => {
                // RFC 5780 §7.5: a 16-bit port followed by 16 bits of padding.
                let v = be_u32(value, "RESPONSE-PORT is not 4 bytes")?;
                Attribute::ResponsePort((v >> 16) as u16)
            }
            PADDING => Attribute::Padding(value),
            _ => Attribute::Other { typ, value },
        })
    }

    /// Appends the attribute's value (without header or padding) to `out`.
    pub fn emit_value(&self, tid: &TransactionId, out: &mut Vec<u8>) {
        match *self {
            Attribute::MappedAddress(a)
            | Attribute::AlternateServer(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a) => emit_address(a, out),
            Attribute::XorMappedAddress(a) => emit_xor_address(a, tid, out),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s)
            | Attribute::AlternateDomain(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::UserHash(h) => out.extend_from_slice(h),
            Attribute::MessageIntegrity(h) => out.extend_from_slice(h),
            Attribute::MessageIntegritySha256(h) => out.extend_from_slice(h),
            Attribute::Fingerprint(v) | Attribute::Priority(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::ErrorCode(e) => emit_error_code(e, out),
            Attribute::PasswordAlgorithms(p) => out.extend_from_slice(p.raw),
            Attribute::PasswordAlgorithm(alg, params) => {
                PasswordAlgorithms::emit(&[(alg, params)], out)
            }
            Attribute::UnknownAttributes(u) => out.extend_from_slice(u.raw),
            Attribute::UseCandidate => {}
            Attribute::IceControlled(v) | Attribute::IceControlling(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::ChangeRequest {
                change_ip,
                change_port,
            } => {
                let v = (u32::from(change_ip) << 2) | (u32::from(change_port) << 1);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Attribute::ResponsePort(p) => {
                out.extend_from_slice(&p.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::Padding(p) => out.extend_from_slice(p),
            Attribute::Other { value, .. } => out.extend_from_slice(value),
        }
    }
}

/// Builds an UNKNOWN-ATTRIBUTES value from a list of types.
pub fn emit_unknown_attributes(types: &[u16], out: &mut Vec<u8>) {
    for t in types {
        out.extend_from_slice(&t.to_be_bytes());
    }
}

/// Wraps an already-encoded UNKNOWN-ATTRIBUTES value (an even number of bytes).
pub fn unknown_attributes(raw: &[u8]) -> Option<UnknownAttributes<'_>> {
    (raw.len() % 2 == 0).then_some(UnknownAttributes { raw })
}

/// Wraps an already-encoded PASSWORD-ALGORITHMS value, checking its grammar.
pub fn password_algorithms(raw: &[u8]) -> Option<PasswordAlgorithms<'_>> {
    PasswordAlgorithms::parse(raw).ok()
}

fn utf8(value: &[u8], max: usize) -> Result<&str, &'static str> {
    if value.len() > max {
        return Err("text value longer than the RFC allows");
    }
    std::str::from_utf8(value).map_err(|_| "text value is not UTF-8")
}

fn be_u32(value: &[u8], err: &'static str) -> Result<u32, &'static str> {
    let b: [u8; 4] = value.try_into().map_err(|_| err)?;
    Ok(u32::from_be_bytes(b))
}

fn be_u64(value: &[u8], err: &'static str) -> Result<u64, &'static str> {
    let b: [u8; 8] = value.try_into().map_err(|_| err)?;
    Ok(u64::from_be_bytes(b))
}

/// RFC 8489 §14.8: 21 reserved bits, a 3-bit class (3..=6), an 8-bit number
/// (0..=99), then the reason phrase.
fn parse_error_code(value: &[u8]) -> Result<ErrorCode<'_>, &'static str> {
    if value.len() < 4 {
        return Err("ERROR-CODE shorter than 4 bytes");
    }
    let class = u16::from(value[2] & 0x07);
    let number = u16::from(value[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err("ERROR-CODE class or number out of range");
    }
    let reason = utf8(&value[4..], 763)?;
    Ok(ErrorCode {
        code: class * 100 + number,
        reason,
    })
}

fn emit_error_code(e: ErrorCode<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0, (e.code / 100) as u8 & 0x07, (e.code % 100) as u8]);
    out.extend_from_slice(e.reason.as_bytes());
}

/// RFC 8489 §14.1: 8 reserved bits, family (0x01 IPv4, 0x02 IPv6), port, address.
pub fn parse_address(value: &[u8]) -> Result<SocketAddr, &'static str> {
    if value.len() < 4 {
        return Err("address shorter than 4 bytes");
    }
    let port = u16::from_be_bytes([value[2], value[3]]);
    let ip = match (value[1], value.len()) {
        (0x01, 8) => IpAddr::V4(Ipv4Addr::new(value[4], value[5], value[6], value[7])),
        (0x02, 20) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&value[4..20]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
        (0x01 | 0x02, _) => return Err("address length does not match its family"),
        _ => return Err("unknown address family"),
    };
    Ok(SocketAddr::new(ip, port))
}

/// Writes a plain address value.
pub fn emit_address(a: SocketAddr, out: &mut Vec<u8>) {
    match a.ip() {
        IpAddr::V4(ip) => {
            out.extend_from_slice(&[0, 0x01]);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.extend_from_slice(&[0, 0x02]);
            out.extend_from_slice(&a.port().to_be_bytes());
            out.extend_from_slice(&ip.octets());
        }
    }
}

// ANCHOR: xor_address
/// The 16 bytes an IPv6 address is XORed with: the magic cookie and the
/// transaction id (RFC 8489 §14.2).
fn xor_key(tid: &TransactionId) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    k[4..].copy_from_slice(&tid.0);
    k
}

/// RFC 8489 §14.2: the port is XORed with the top 16 bits of the magic cookie,
/// an IPv4 address with the cookie, an IPv6 address with cookie ‖ transaction id.
pub fn parse_xor_address(value: &[u8], tid: &TransactionId) -> Result<SocketAddr, &'static str> {
    let a = parse_address(value)?;
    Ok(xor_address(a, tid))
}

/// Writes an XORed address value.
pub fn emit_xor_address(a: SocketAddr, tid: &TransactionId, out: &mut Vec<u8>) {
    emit_address(xor_address(a, tid), out)
}

/// XOR is its own inverse: the same function encodes and decodes.
fn xor_address(a: SocketAddr, tid: &TransactionId) -> SocketAddr {
    let port = a.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let key = xor_key(tid);
    let ip = match a.ip() {
        IpAddr::V4(ip) => {
            let v = u32::from(ip) ^ MAGIC_COOKIE;
            IpAddr::V4(Ipv4Addr::from(v))
        }
        IpAddr::V6(ip) => {
            let mut o = ip.octets();
            for (b, k) in o.iter_mut().zip(key) {
                *b ^= k;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
    };
    SocketAddr::new(ip, port)
}
// ANCHOR_END: xor_address

/// Maps a per-attribute decode failure to the message-level error.
pub(crate) fn bad_attribute(typ: u16, offset: usize, reason: &'static str) -> Error {
    Error::BadAttribute {
        typ,
        offset,
        reason,
    }
}
