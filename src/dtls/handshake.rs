//! Handshake messages of DTLS 1.2: the fragment header, fragmentation and
//! bounded reassembly, and a typed codec for every message the WebRTC
//! handshake uses.
//!
//! Each handshake message travels in one or more fragments, each with a
//! 12-byte header (RFC 6347 §4.2.2):
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   msg_type    |        length (whole message, 24 bits)        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          message_seq          |  fragment_offset (24 bits)  …
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! …               |       fragment_length (24 bits)               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 fragment_length bytes of the body …           |
//! ```
//!
//! Chromium's ClientHello (1,413 bytes, mostly a post-quantum key share)
//! arrives as two fragments in two datagrams; [`Reassembler`] puts such
//! messages back together, within fixed memory bounds.

use super::Error;
use super::cert::{KeyAlgorithm, PublicKeyInfo, SignatureScheme};
use super::codec::{Reader, put_u16, put_u24, put_vec};
use super::record::{Authentication, CipherSuite};

/// Bytes in a handshake fragment header.
pub const HANDSHAKE_HEADER_LEN: usize = 12;

/// Largest handshake message we accept or buffer (a certificate chain of a
/// few RSA certificates fits; bounds memory per message).
pub const MAX_HANDSHAKE_LEN: usize = 1 << 15;

/// Most bytes the reassembler buffers across all pending messages.
pub const MAX_REASSEMBLY_BYTES: usize = 1 << 16;

/// How far ahead of the next expected message_seq we buffer.
pub const MAX_MESSAGES_AHEAD: u16 = 8;

/// HandshakeType (RFC 5246 §7.4, RFC 6347 §4.3.2, RFC 5077 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeType {
    /// 0 (renegotiation; refused).
    HelloRequest,
    /// 1.
    ClientHello,
    /// 2.
    ServerHello,
    /// 3 (DTLS only: the cookie exchange).
    HelloVerifyRequest,
    /// 4 (session tickets; parsed and ignored).
    NewSessionTicket,
    /// 11.
    Certificate,
    /// 12.
    ServerKeyExchange,
    /// 13.
    CertificateRequest,
    /// 14.
    ServerHelloDone,
    /// 15.
    CertificateVerify,
    /// 16.
    ClientKeyExchange,
    /// 20.
    Finished,
    /// Any other value.
    Other(u8),
}

impl HandshakeType {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        use HandshakeType::*;
        match self {
            HelloRequest => 0,
            ClientHello => 1,
            ServerHello => 2,
            HelloVerifyRequest => 3,
            NewSessionTicket => 4,
            Certificate => 11,
            ServerKeyExchange => 12,
            CertificateRequest => 13,
            ServerHelloDone => 14,
            CertificateVerify => 15,
            ClientKeyExchange => 16,
            Finished => 20,
            Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        use HandshakeType::*;
        match v {
            0 => HelloRequest,
            1 => ClientHello,
            2 => ServerHello,
            3 => HelloVerifyRequest,
            4 => NewSessionTicket,
            11 => Certificate,
            12 => ServerKeyExchange,
            13 => CertificateRequest,
            14 => ServerHelloDone,
            15 => CertificateVerify,
            16 => ClientKeyExchange,
            20 => Finished,
            v => Other(v),
        }
    }
}

// ---------------------------------------------------------------------------
// Fragments.

/// The 12-byte header in front of every handshake fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandshakeHeader {
    /// Message type.
    pub msg_type: HandshakeType,
    /// Length of the whole message body.
    pub length: u32,
    /// Position of the message in the handshake (0, 1, 2, … per sender).
    pub message_seq: u16,
    /// Where this fragment starts in the body.
    pub fragment_offset: u32,
    /// Bytes of body in this fragment.
    pub fragment_length: u32,
}

impl HandshakeHeader {
    /// Writes the 12 header bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.msg_type.to_u8());
        put_u24(out, self.length);
        put_u16(out, self.message_seq);
        put_u24(out, self.fragment_offset);
        put_u24(out, self.fragment_length);
    }
}

/// One handshake fragment as found in a record; the body borrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeFragment<'a> {
    /// Header (its `fragment_length` equals `body.len()`).
    pub header: HandshakeHeader,
    /// This fragment's part of the body.
    pub body: &'a [u8],
}

impl<'a> HandshakeFragment<'a> {
    /// Writes header and body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        self.header.emit(out);
        out.extend_from_slice(self.body);
    }

    /// Parses one fragment from the front of `r`, checking that it lies
    /// inside its message and the message is not too large.
    fn parse(r: &mut Reader<'a>) -> Result<Self, Error> {
        let msg_type = HandshakeType::from_u8(r.u8("handshake msg_type")?);
        let length = r.u24("handshake length")?;
        let message_seq = r.u16("handshake message_seq")?;
        let fragment_offset = r.u24("handshake fragment_offset")?;
        let fragment_length = r.u24("handshake fragment_length")?;
        let body = r.take(fragment_length as usize, "handshake fragment body")?;
        if fragment_offset as u64 + fragment_length as u64 > length as u64 {
            return Err(Error::InvalidValue {
                what: "handshake fragment end (offset + length beyond message length)",
                value: fragment_offset as u64 + fragment_length as u64,
            });
        }
        if length as usize > MAX_HANDSHAKE_LEN {
            return Err(Error::TooLarge {
                what: "handshake message",
                len: length as usize,
                max: MAX_HANDSHAKE_LEN,
            });
        }
        Ok(HandshakeFragment {
            header: HandshakeHeader {
                msg_type,
                length,
                message_seq,
                fragment_offset,
                fragment_length,
            },
            body,
        })
    }
}

/// Splits a handshake record's payload into fragments (several messages may
/// share one record, RFC 6347 §4.2.3). Stops at the first malformed one.
pub fn fragments(record_payload: &[u8]) -> Fragments<'_> {
    Fragments {
        reader: Reader::new(record_payload),
        failed: false,
    }
}

/// Iterator returned by [`fragments`].
#[derive(Debug, Clone)]
pub struct Fragments<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for Fragments<'a> {
    type Item = Result<HandshakeFragment<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let r = HandshakeFragment::parse(&mut self.reader);
        self.failed = r.is_err();
        Some(r)
    }
}

/// A complete handshake message (type, sequence and whole body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeMessage {
    /// Message type.
    pub msg_type: HandshakeType,
    /// Its message_seq.
    pub message_seq: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

impl HandshakeMessage {
    /// Writes the message as a single fragment (offset 0, fragment_length =
    /// length). This is also the form the transcript hash covers (RFC 6347
    /// §4.2.6: the hash is over messages as if unfragmented).
    pub fn emit_unfragmented(&self, out: &mut Vec<u8>) {
        let len = self.body.len() as u32;
        HandshakeHeader {
            msg_type: self.msg_type,
            length: len,
            message_seq: self.message_seq,
            fragment_offset: 0,
            fragment_length: len,
        }
        .emit(out);
        out.extend_from_slice(&self.body);
    }

    /// Cuts the message into fragments whose header plus body fit in
    /// `max_fragment_len` bytes (RFC 6347 §4.2.3), calling `emit` with each
    /// one. A message with an empty body still yields one fragment.
    pub fn fragment(&self, max_fragment_len: usize, mut emit: impl FnMut(HandshakeFragment<'_>)) {
        let chunk = max_fragment_len.saturating_sub(HANDSHAKE_HEADER_LEN).max(1);
        let len = self.body.len() as u32;
        let mut offset = 0usize;
        loop {
            let end = (offset + chunk).min(self.body.len());
            emit(HandshakeFragment {
                header: HandshakeHeader {
                    msg_type: self.msg_type,
                    length: len,
                    message_seq: self.message_seq,
                    fragment_offset: offset as u32,
                    fragment_length: (end - offset) as u32,
                },
                body: &self.body[offset..end],
            });
            offset = end;
            if offset >= self.body.len() {
                break;
            }
        }
    }
}

/// What [`Reassembler::insert`] did with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored (or already had those bytes).
    Buffered,
    /// Its message_seq is below the next expected one: a retransmission of
    /// something already delivered (RFC 6347 §4.2.4: may mean our last
    /// flight was lost).
    Old,
    /// Dropped: too far ahead, over the memory budget, or inconsistent
    /// with earlier fragments of the same message.
    Dropped,
}

#[derive(Debug)]
struct Partial {
    msg_type: HandshakeType,
    message_seq: u16,
    body: Vec<u8>,
    /// Received byte ranges, sorted, disjoint, non-adjacent.
    have: Vec<(usize, usize)>,
}

impl Partial {
    fn complete(&self) -> bool {
        self.body.is_empty() || self.have == [(0, self.body.len())]
    }

    fn add(&mut self, start: usize, bytes: &[u8]) -> bool {
        let end = start + bytes.len();
        if bytes.is_empty() {
            return true;
        }
        let mut ranges = self.have.clone();
        ranges.push((start, end));
        ranges.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
        for (s, e) in ranges {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        // Bound the bookkeeping: a peer sending many small fragments with
        // gaps between them gets the ones that open a new gap dropped
        // (retransmissions fill in later), not a growing list.
        if merged.len() > MAX_GAPS {
            return false;
        }
        self.body[start..end].copy_from_slice(bytes);
        self.have = merged;
        true
    }
}

/// Most disjoint received ranges kept per message being reassembled.
const MAX_GAPS: usize = 32;

/// Puts handshake fragments back into whole messages, delivered in
/// message_seq order (RFC 6347 §4.2.2), with memory bounded by
/// [`MAX_REASSEMBLY_BYTES`] and [`MAX_MESSAGES_AHEAD`].
#[derive(Debug, Default)]
pub struct Reassembler {
    next_seq: u16,
    pending: Vec<Partial>,
    buffered: usize,
}

impl Reassembler {
    /// Expecting message_seq 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts at another message_seq (a server that answered a ClientHello
    /// statelessly with HelloVerifyRequest expects the second ClientHello at
    /// message_seq 1, RFC 6347 §4.2.2).
    pub fn with_next_seq(next_seq: u16) -> Self {
        Reassembler {
            next_seq,
            ..Self::default()
        }
    }

    /// The next message_seq to be delivered.
    pub fn next_seq(&self) -> u16 {
        self.next_seq
    }

    /// Adds one fragment.
    pub fn insert(&mut self, fragment: &HandshakeFragment<'_>) -> Inserted {
        let h = &fragment.header;
        if h.message_seq < self.next_seq {
            return Inserted::Old;
        }
        if h.message_seq - self.next_seq >= MAX_MESSAGES_AHEAD
            || h.length as usize > MAX_HANDSHAKE_LEN
            || (h.fragment_offset as usize + fragment.body.len()) > h.length as usize
        {
            return Inserted::Dropped;
        }
        let idx = match self
            .pending
            .iter()
            .position(|p| p.message_seq == h.message_seq)
        {
            Some(i) => {
                let p = &self.pending[i];
                if p.msg_type != h.msg_type || p.body.len() != h.length as usize {
                    return Inserted::Dropped;
                }
                i
            }
            None => {
                if self.buffered + h.length as usize > MAX_REASSEMBLY_BYTES {
                    return Inserted::Dropped;
                }
                self.buffered += h.length as usize;
                self.pending.push(Partial {
                    msg_type: h.msg_type,
                    message_seq: h.message_seq,
                    body: vec![0; h.length as usize],
                    have: Vec::new(),
                });
                self.pending.len() - 1
            }
        };
        if self.pending[idx].add(h.fragment_offset as usize, fragment.body) {
            Inserted::Buffered
        } else {
            Inserted::Dropped
        }
    }

    /// The next whole message in order, if it is complete.
    pub fn pop(&mut self) -> Option<HandshakeMessage> {
        let i = self
            .pending
            .iter()
            .position(|p| p.message_seq == self.next_seq && p.complete())?;
        let p = self.pending.swap_remove(i);
        self.buffered -= p.body.len();
        self.next_seq = self.next_seq.wrapping_add(1);
        Some(HandshakeMessage {
            msg_type: p.msg_type,
            message_seq: p.message_seq,
            body: p.body,
        })
    }
}

// ---------------------------------------------------------------------------
// Registries used by the messages.

/// NamedGroup (RFC 8422 §5.1.1, RFC 7919, RFC 8446 §4.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamedGroup(pub u16);

impl NamedGroup {
    /// secp256r1 (P-256).
    pub const SECP256R1: Self = NamedGroup(0x0017);
    /// secp384r1 (P-384).
    pub const SECP384R1: Self = NamedGroup(0x0018);
    /// X25519 (RFC 8422 §5.1.1).
    pub const X25519: Self = NamedGroup(0x001d);
    /// X25519MLKEM768 (what Chromium and Firefox offer first for 1.3).
    pub const X25519_MLKEM768: Self = NamedGroup(0x11ec);

    /// The IANA name, or `None` for a group we do not know.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            NamedGroup::SECP256R1 => "secp256r1",
            NamedGroup::SECP384R1 => "secp384r1",
            NamedGroup::X25519 => "x25519",
            NamedGroup::X25519_MLKEM768 => "X25519MLKEM768",
            _ => return None,
        })
    }
}

/// SRTPProtectionProfile (RFC 5764 §4.1.2, RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SrtpProfile(pub u16);

impl SrtpProfile {
    /// SRTP_AES128_CM_HMAC_SHA1_80.
    pub const AES128_CM_HMAC_SHA1_80: Self = SrtpProfile(0x0001);
    /// SRTP_AES128_CM_HMAC_SHA1_32.
    pub const AES128_CM_HMAC_SHA1_32: Self = SrtpProfile(0x0002);
    /// SRTP_AEAD_AES_128_GCM.
    pub const AEAD_AES_128_GCM: Self = SrtpProfile(0x0007);
    /// SRTP_AEAD_AES_256_GCM.
    pub const AEAD_AES_256_GCM: Self = SrtpProfile(0x0008);

    /// The four profiles WebRTC uses, in rtclab's order of preference.
    pub const ALL: [SrtpProfile; 4] = [
        SrtpProfile::AEAD_AES_128_GCM,
        SrtpProfile::AEAD_AES_256_GCM,
        SrtpProfile::AES128_CM_HMAC_SHA1_80,
        SrtpProfile::AES128_CM_HMAC_SHA1_32,
    ];

    /// The IANA name (RFC 5764 §4.1.2, RFC 7714 §14.2), or `None` for a
    /// profile we do not know.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            SrtpProfile::AES128_CM_HMAC_SHA1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
            SrtpProfile::AES128_CM_HMAC_SHA1_32 => "SRTP_AES128_CM_HMAC_SHA1_32",
            SrtpProfile::AEAD_AES_128_GCM => "SRTP_AEAD_AES_128_GCM",
            SrtpProfile::AEAD_AES_256_GCM => "SRTP_AEAD_AES_256_GCM",
            _ => return None,
        })
    }

    /// A profile by its IANA name or OpenSSL's (`SRTP_AES128_CM_SHA1_80`),
    /// case-insensitive, the `SRTP_` prefix optional.
    pub fn from_name(name: &str) -> Option<Self> {
        let n = name.trim().to_ascii_uppercase();
        let n = n.strip_prefix("SRTP_").unwrap_or(&n);
        Some(match n {
            "AES128_CM_HMAC_SHA1_80" | "AES128_CM_SHA1_80" => SrtpProfile::AES128_CM_HMAC_SHA1_80,
            "AES128_CM_HMAC_SHA1_32" | "AES128_CM_SHA1_32" => SrtpProfile::AES128_CM_HMAC_SHA1_32,
            "AEAD_AES_128_GCM" => SrtpProfile::AEAD_AES_128_GCM,
            "AEAD_AES_256_GCM" => SrtpProfile::AEAD_AES_256_GCM,
            _ => return None,
        })
    }
}

/// Extension type code points (IANA "TLS ExtensionType Values").
pub mod extension_type {
    /// supported_groups (RFC 8422 §5.1.1).
    pub const SUPPORTED_GROUPS: u16 = 10;
    /// ec_point_formats (RFC 8422 §5.1.2).
    pub const EC_POINT_FORMATS: u16 = 11;
    /// signature_algorithms (RFC 5246 §7.4.1.4.1).
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    /// use_srtp (RFC 5764 §4.1.1).
    pub const USE_SRTP: u16 = 14;
    /// extended_master_secret (RFC 7627 §5.1).
    pub const EXTENDED_MASTER_SECRET: u16 = 23;
    /// supported_versions (RFC 8446 §4.2.1).
    pub const SUPPORTED_VERSIONS: u16 = 43;
    /// key_share (RFC 8446 §4.2.8), kept as unknown.
    pub const KEY_SHARE: u16 = 51;
    /// renegotiation_info (RFC 5746 §3.2).
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
}

/// A hello extension. The ones a DTLS 1.2 WebRTC handshake uses are typed;
/// everything else (key_share, psk_key_exchange_modes, ALPN, …) is kept as
/// [`Extension::Unknown`] so it can be ignored or echoed in a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extension {
    /// supported_groups: groups the client can do ECDHE with.
    SupportedGroups(Vec<NamedGroup>),
    /// ec_point_formats (RFC 8422 §5.1.2); only uncompressed (0) is used.
    EcPointFormats(Vec<u8>),
    /// signature_algorithms: schemes the sender accepts.
    SignatureAlgorithms(Vec<SignatureScheme>),
    /// use_srtp (RFC 5764 §4.1.1): offered (client) or chosen (server, one
    /// profile) SRTP protection profiles and the MKI.
    UseSrtp {
        /// Profiles, in preference order.
        profiles: Vec<SrtpProfile>,
        /// srtp_mki (normally empty in WebRTC).
        mki: Vec<u8>,
    },
    /// extended_master_secret (RFC 7627): empty.
    ExtendedMasterSecret,
    /// renegotiation_info (RFC 5746): empty on an initial handshake.
    RenegotiationInfo(Vec<u8>),
    /// supported_versions in a ClientHello: versions offered (DTLS 1.3 is
    /// 0xfefc, 1.2 is 0xfefd).
    SupportedVersions(Vec<u16>),
    /// supported_versions in a ServerHello: the selected version.
    SelectedVersion(u16),
    /// Anything else, with its raw body.
    Unknown {
        /// Extension type.
        typ: u16,
        /// Extension body.
        data: Vec<u8>,
    },
}

/// Which hello an extension list belongs to (supported_versions differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HelloSide {
    Client,
    Server,
}

impl Extension {
    /// The extension's type code point.
    pub fn typ(&self) -> u16 {
        use extension_type as t;
        match self {
            Extension::SupportedGroups(_) => t::SUPPORTED_GROUPS,
            Extension::EcPointFormats(_) => t::EC_POINT_FORMATS,
            Extension::SignatureAlgorithms(_) => t::SIGNATURE_ALGORITHMS,
            Extension::UseSrtp { .. } => t::USE_SRTP,
            Extension::ExtendedMasterSecret => t::EXTENDED_MASTER_SECRET,
            Extension::RenegotiationInfo(_) => t::RENEGOTIATION_INFO,
            Extension::SupportedVersions(_) | Extension::SelectedVersion(_) => {
                t::SUPPORTED_VERSIONS
            }
            Extension::Unknown { typ, .. } => *typ,
        }
    }

    pub(crate) fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.typ());
        put_vec(out, 2, |o| match self {
            Extension::SupportedGroups(g) => put_vec(o, 2, |o| {
                g.iter().for_each(|g| put_u16(o, g.0));
            }),
            Extension::EcPointFormats(f) => put_vec(o, 1, |o| o.extend_from_slice(f)),
            Extension::SignatureAlgorithms(s) => put_vec(o, 2, |o| {
                s.iter().for_each(|s| put_u16(o, s.0));
            }),
            Extension::UseSrtp { profiles, mki } => {
                put_vec(o, 2, |o| profiles.iter().for_each(|p| put_u16(o, p.0)));
                put_vec(o, 1, |o| o.extend_from_slice(mki));
            }
            Extension::ExtendedMasterSecret => {}
            Extension::RenegotiationInfo(r) => put_vec(o, 1, |o| o.extend_from_slice(r)),
            Extension::SupportedVersions(v) => {
                put_vec(o, 1, |o| v.iter().for_each(|v| put_u16(o, *v)));
            }
            Extension::SelectedVersion(v) => put_u16(o, *v),
            Extension::Unknown { data, .. } => o.extend_from_slice(data),
        });
    }

    pub(crate) fn parse(typ: u16, data: &[u8], side: HelloSide) -> Result<Self, Error> {
        use extension_type as t;
        let mut r = Reader::new(data);
        let ext = match typ {
            t::SUPPORTED_GROUPS => Extension::SupportedGroups(
                u16_list(r.vec16("supported_groups")?, "supported_groups")?
                    .into_iter()
                    .map(NamedGroup)
                    .collect(),
            ),
            t::EC_POINT_FORMATS => Extension::EcPointFormats(r.vec8("ec_point_formats")?.to_vec()),
            t::SIGNATURE_ALGORITHMS => Extension::SignatureAlgorithms(
                u16_list(r.vec16("signature_algorithms")?, "signature_algorithms")?
                    .into_iter()
                    .map(SignatureScheme)
                    .collect(),
            ),
            t::USE_SRTP => {
                let profiles = u16_list(r.vec16("use_srtp profiles")?, "use_srtp profiles")?
                    .into_iter()
                    .map(SrtpProfile)
                    .collect();
                let mki = r.vec8("use_srtp mki")?.to_vec();
                Extension::UseSrtp { profiles, mki }
            }
            t::EXTENDED_MASTER_SECRET => Extension::ExtendedMasterSecret,
            t::RENEGOTIATION_INFO => {
                Extension::RenegotiationInfo(r.vec8("renegotiation_info")?.to_vec())
            }
            t::SUPPORTED_VERSIONS if side == HelloSide::Client => {
                let list = r.vec8("supported_versions")?;
                Extension::SupportedVersions(u16_list(list, "supported_versions")?)
            }
            t::SUPPORTED_VERSIONS => Extension::SelectedVersion(r.u16("selected_version")?),
            _ => Extension::Unknown {
                typ,
                data: r.rest().to_vec(),
            },
        };
        r.finish("extension body")?;
        Ok(ext)
    }
}

fn u16_list(bytes: &[u8], what: &'static str) -> Result<Vec<u16>, Error> {
    if bytes.len() % 2 != 0 {
        return Err(Error::InvalidValue {
            what,
            value: bytes.len() as u64,
        });
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect())
}

/// RFC 5246 §7.4.1.4: an optional extensions block; no type may repeat.
fn parse_extensions(r: &mut Reader<'_>, side: HelloSide) -> Result<Vec<Extension>, Error> {
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let mut block = Reader::new(r.vec16("extensions")?);
    let mut out: Vec<Extension> = Vec::new();
    while !block.is_empty() {
        let typ = block.u16("extension type")?;
        let data = block.vec16("extension data")?;
        if out.iter().any(|e| e.typ() == typ) {
            return Err(Error::InvalidValue {
                what: "duplicate extension type",
                value: typ.into(),
            });
        }
        out.push(Extension::parse(typ, data, side)?);
    }
    Ok(out)
}

fn emit_extensions(extensions: &[Extension], out: &mut Vec<u8>) {
    if !extensions.is_empty() {
        put_vec(out, 2, |o| extensions.iter().for_each(|e| e.emit(o)));
    }
}

fn u16_vec(out: &mut Vec<u8>, prefix: usize, items: impl Iterator<Item = u16>) {
    put_vec(out, prefix, |o| items.for_each(|v| put_u16(o, v)));
}

// ---------------------------------------------------------------------------
// Messages.

/// ClientHello (RFC 5246 §7.4.1.2 with DTLS's cookie, RFC 6347 §4.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// client_version (0xfefd for DTLS 1.2; 1.3 clients also say 0xfefd here).
    pub version: u16,
    /// 32 random bytes.
    pub random: [u8; 32],
    /// session_id (0–32 bytes).
    pub session_id: Vec<u8>,
    /// The cookie from a HelloVerifyRequest (empty at first).
    pub cookie: Vec<u8>,
    /// Offered cipher suites (raw code points, including ones we lack).
    pub cipher_suites: Vec<u16>,
    /// compression_methods (must contain 0, null).
    pub compression_methods: Vec<u8>,
    /// Extensions, in order.
    pub extensions: Vec<Extension>,
}

impl ClientHello {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.version);
        out.extend_from_slice(&self.random);
        put_vec(out, 1, |o| o.extend_from_slice(&self.session_id));
        put_vec(out, 1, |o| o.extend_from_slice(&self.cookie));
        u16_vec(out, 2, self.cipher_suites.iter().copied());
        put_vec(out, 1, |o| o.extend_from_slice(&self.compression_methods));
        emit_extensions(&self.extensions, out);
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let version = r.u16("client_version")?;
        let random = r.array("client random")?;
        let session_id = r.vec8("session_id")?;
        if session_id.len() > 32 {
            return Err(Error::TooLarge {
                what: "session_id",
                len: session_id.len(),
                max: 32,
            });
        }
        let cookie = r.vec8("cookie")?.to_vec();
        let suites = r.vec16("cipher_suites")?;
        if suites.is_empty() {
            return Err(Error::InvalidValue {
                what: "cipher_suites length",
                value: 0,
            });
        }
        let cipher_suites = u16_list(suites, "cipher_suites length")?;
        let compression_methods = r.vec8("compression_methods")?.to_vec();
        if compression_methods.is_empty() {
            return Err(Error::InvalidValue {
                what: "compression_methods length",
                value: 0,
            });
        }
        let extensions = parse_extensions(&mut r, HelloSide::Client)?;
        r.finish("ClientHello")?;
        Ok(ClientHello {
            version,
            random,
            session_id: session_id.to_vec(),
            cookie,
            cipher_suites,
            compression_methods,
            extensions,
        })
    }

    /// The first extension of type `typ`.
    pub fn extension(&self, typ: u16) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.typ() == typ)
    }
}

/// HelloVerifyRequest (RFC 6347 §4.2.1): the server's stateless cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloVerifyRequest {
    /// server_version (RFC 6347 §4.2.1: 0xfeff is fine here for any version).
    pub version: u16,
    /// The cookie (at most 255 bytes).
    pub cookie: Vec<u8>,
}

impl HelloVerifyRequest {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.version);
        put_vec(out, 1, |o| o.extend_from_slice(&self.cookie));
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let version = r.u16("server_version")?;
        let cookie = r.vec8("cookie")?.to_vec();
        r.finish("HelloVerifyRequest")?;
        Ok(HelloVerifyRequest { version, cookie })
    }
}

/// ServerHello (RFC 5246 §7.4.1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// server_version (0xfefd).
    pub version: u16,
    /// 32 random bytes.
    pub random: [u8; 32],
    /// session_id (0–32 bytes).
    pub session_id: Vec<u8>,
    /// Chosen suite.
    pub cipher_suite: u16,
    /// Chosen compression (0).
    pub compression_method: u8,
    /// Extensions, in order.
    pub extensions: Vec<Extension>,
}

impl ServerHello {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.version);
        out.extend_from_slice(&self.random);
        put_vec(out, 1, |o| o.extend_from_slice(&self.session_id));
        put_u16(out, self.cipher_suite);
        out.push(self.compression_method);
        emit_extensions(&self.extensions, out);
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let version = r.u16("server_version")?;
        let random = r.array("server random")?;
        let session_id = r.vec8("session_id")?;
        if session_id.len() > 32 {
            return Err(Error::TooLarge {
                what: "session_id",
                len: session_id.len(),
                max: 32,
            });
        }
        let cipher_suite = r.u16("cipher_suite")?;
        let compression_method = r.u8("compression_method")?;
        let extensions = parse_extensions(&mut r, HelloSide::Server)?;
        r.finish("ServerHello")?;
        Ok(ServerHello {
            version,
            random,
            session_id: session_id.to_vec(),
            cipher_suite,
            compression_method,
            extensions,
        })
    }

    /// The first extension of type `typ`.
    pub fn extension(&self, typ: u16) -> Option<&Extension> {
        self.extensions.iter().find(|e| e.typ() == typ)
    }
}

/// Certificate (RFC 5246 §7.4.2): DER certificates, the sender's first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateMsg {
    /// certificate_list.
    pub certificates: Vec<Vec<u8>>,
}

impl CertificateMsg {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_vec(out, 3, |o| {
            for c in &self.certificates {
                put_vec(o, 3, |o| o.extend_from_slice(c));
            }
        });
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let mut list = Reader::new(r.vec24("certificate_list")?);
        r.finish("Certificate")?;
        let mut certificates = Vec::new();
        while !list.is_empty() {
            let c = list.vec24("ASN.1Cert")?;
            if c.is_empty() {
                return Err(Error::InvalidValue {
                    what: "ASN.1Cert length",
                    value: 0,
                });
            }
            certificates.push(c.to_vec());
        }
        Ok(CertificateMsg { certificates })
    }
}

/// DigitallySigned (RFC 5246 §4.7): a scheme and a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigitallySigned {
    /// SignatureAndHashAlgorithm.
    pub scheme: SignatureScheme,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl DigitallySigned {
    fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.scheme.0);
        put_vec(out, 2, |o| o.extend_from_slice(&self.signature));
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let scheme = SignatureScheme(r.u16("signature algorithm")?);
        let signature = r.vec16("signature")?.to_vec();
        Ok(DigitallySigned { scheme, signature })
    }
}

/// ServerKeyExchange for ECDHE (RFC 8422 §5.4): a named curve, the server's
/// ephemeral public key, and a signature over
/// `client_random + server_random + params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerKeyExchange {
    /// The group (curve_type is always named_curve, 3).
    pub group: NamedGroup,
    /// The server's ephemeral public key (X25519: 32 bytes; P-256: 65,
    /// uncompressed).
    pub public_key: Vec<u8>,
    /// Signature over the randoms and the params.
    pub signed: DigitallySigned,
}

/// ECCurveType named_curve (RFC 8422 §5.4).
const NAMED_CURVE: u8 = 3;

impl ServerKeyExchange {
    /// The ServerECDHParams bytes: what the signature covers after the two
    /// randoms (RFC 8422 §5.4).
    pub fn params(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.public_key.len());
        out.push(NAMED_CURVE);
        put_u16(&mut out, self.group.0);
        put_vec(&mut out, 1, |o| o.extend_from_slice(&self.public_key));
        out
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.params());
        self.signed.emit(out);
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let curve_type = r.u8("ECCurveType")?;
        if curve_type != NAMED_CURVE {
            return Err(Error::InvalidValue {
                what: "ECCurveType (only named_curve)",
                value: curve_type.into(),
            });
        }
        let group = NamedGroup(r.u16("named curve")?);
        let public_key = r.vec8("ECDH public key")?;
        if public_key.is_empty() {
            return Err(Error::InvalidValue {
                what: "ECDH public key length",
                value: 0,
            });
        }
        let signed = DigitallySigned::parse(&mut r)?;
        r.finish("ServerKeyExchange")?;
        Ok(ServerKeyExchange {
            group,
            public_key: public_key.to_vec(),
            signed,
        })
    }
}

/// The signature schemes a DTLS 1.2 client offers in signature_algorithms
/// (RFC 5246 §7.4.1.4.1) and so accepts on the server's ServerKeyExchange:
/// ECDSA for ECDHE_ECDSA servers, RSA PSS and PKCS#1 v1.5 for ECDHE_RSA
/// ones (OpenSSL 3 signs with PSS when offered; RFC 8422 §5.4 lets a 1.2
/// server use any pair the client listed).
pub const CLIENT_SIGNATURE_SCHEMES: [SignatureScheme; 8] = [
    SignatureScheme::ECDSA_SECP256R1_SHA256,
    SignatureScheme::ECDSA_SECP384R1_SHA384,
    SignatureScheme::RSA_PSS_RSAE_SHA256,
    SignatureScheme::RSA_PSS_RSAE_SHA384,
    SignatureScheme::RSA_PSS_RSAE_SHA512,
    SignatureScheme::RSA_PKCS1_SHA256,
    SignatureScheme::RSA_PKCS1_SHA384,
    SignatureScheme::RSA_PKCS1_SHA512,
];

impl ServerKeyExchange {
    /// The client's check of the server's ECDHE share: the server's
    /// certificate key is the kind `suite` names (RFC 8422 §5.3: ECDSA for
    /// ECDHE_ECDSA, RSA for ECDHE_RSA), the signature uses a scheme we
    /// offered (RFC 5246 §7.4.1.4.1) of that kind, and it verifies over
    /// `client_random + server_random + ServerECDHParams` (RFC 8422 §5.4,
    /// RFC 5246 §7.4.3).
    pub fn verify(
        &self,
        key: &PublicKeyInfo,
        suite: CipherSuite,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Result<(), Error> {
        let key_fits = match suite.authentication() {
            Authentication::Ecdsa => key.algorithm != KeyAlgorithm::Rsa,
            Authentication::Rsa => key.algorithm == KeyAlgorithm::Rsa,
            Authentication::Any => false,
        };
        if !key_fits {
            return Err(Error::UnsupportedAlgorithm(
                "the server certificate's key does not fit the cipher suite (RFC 8422 §5.3)",
            ));
        }
        if !CLIENT_SIGNATURE_SCHEMES.contains(&self.signed.scheme) {
            return Err(Error::InvalidValue {
                what: "ServerKeyExchange signature scheme not offered",
                value: self.signed.scheme.0.into(),
            });
        }
        let mut signed = Vec::with_capacity(64 + self.public_key.len() + 4);
        signed.extend_from_slice(client_random);
        signed.extend_from_slice(server_random);
        signed.extend_from_slice(&self.params());
        key.verify(self.signed.scheme, &signed, &self.signed.signature)
    }
}

/// CertificateRequest (RFC 5246 §7.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// ClientCertificateType values (64 = ecdsa_sign, 1 = rsa_sign).
    pub certificate_types: Vec<u8>,
    /// Schemes the server accepts in CertificateVerify.
    pub signature_schemes: Vec<SignatureScheme>,
    /// certificate_authorities, raw DER DistinguishedNames (empty in WebRTC).
    pub authorities: Vec<Vec<u8>>,
}

impl CertificateRequest {
    /// ClientCertificateType ecdsa_sign (RFC 8422 §5.5).
    pub const ECDSA_SIGN: u8 = 64;
    /// ClientCertificateType rsa_sign.
    pub const RSA_SIGN: u8 = 1;

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_vec(out, 1, |o| o.extend_from_slice(&self.certificate_types));
        u16_vec(out, 2, self.signature_schemes.iter().map(|s| s.0));
        put_vec(out, 2, |o| {
            for a in &self.authorities {
                put_vec(o, 2, |o| o.extend_from_slice(a));
            }
        });
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let certificate_types = r.vec8("certificate_types")?.to_vec();
        let signature_schemes = u16_list(
            r.vec16("supported_signature_algorithms")?,
            "supported_signature_algorithms",
        )?
        .into_iter()
        .map(SignatureScheme)
        .collect();
        let mut cas = Reader::new(r.vec16("certificate_authorities")?);
        r.finish("CertificateRequest")?;
        let mut authorities = Vec::new();
        while !cas.is_empty() {
            authorities.push(cas.vec16("DistinguishedName")?.to_vec());
        }
        Ok(CertificateRequest {
            certificate_types,
            signature_schemes,
            authorities,
        })
    }
}

/// ClientKeyExchange for ECDHE (RFC 8422 §5.7): the client's ephemeral
/// public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientKeyExchange {
    /// ecdh_Yc.
    pub public_key: Vec<u8>,
}

impl ClientKeyExchange {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_vec(out, 1, |o| o.extend_from_slice(&self.public_key));
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let public_key = r.vec8("ecdh_Yc")?;
        r.finish("ClientKeyExchange")?;
        if public_key.is_empty() {
            return Err(Error::InvalidValue {
                what: "ecdh_Yc length",
                value: 0,
            });
        }
        Ok(ClientKeyExchange {
            public_key: public_key.to_vec(),
        })
    }
}

/// NewSessionTicket (RFC 5077 §3.3). OpenSSL's server sends one; we parse
/// it (it is part of the transcript) and otherwise ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSessionTicket {
    /// ticket_lifetime_hint in seconds.
    pub lifetime_hint: u32,
    /// The opaque ticket.
    pub ticket: Vec<u8>,
}

impl NewSessionTicket {
    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lifetime_hint.to_be_bytes());
        put_vec(out, 2, |o| o.extend_from_slice(&self.ticket));
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let lifetime_hint = u32::from_be_bytes(r.array("ticket_lifetime_hint")?);
        let ticket = r.vec16("ticket")?.to_vec();
        r.finish("NewSessionTicket")?;
        Ok(NewSessionTicket {
            lifetime_hint,
            ticket,
        })
    }
}

/// Length of verify_data for every suite we support (RFC 5246 §7.4.9).
pub const VERIFY_DATA_LEN: usize = 12;

/// A typed handshake message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// HelloRequest (empty body; we refuse renegotiation).
    HelloRequest,
    /// ClientHello.
    ClientHello(ClientHello),
    /// ServerHello.
    ServerHello(ServerHello),
    /// HelloVerifyRequest.
    HelloVerifyRequest(HelloVerifyRequest),
    /// NewSessionTicket.
    NewSessionTicket(NewSessionTicket),
    /// Certificate.
    Certificate(CertificateMsg),
    /// ServerKeyExchange (ECDHE).
    ServerKeyExchange(ServerKeyExchange),
    /// CertificateRequest.
    CertificateRequest(CertificateRequest),
    /// ServerHelloDone (empty).
    ServerHelloDone,
    /// CertificateVerify: a signature over the transcript so far.
    CertificateVerify(DigitallySigned),
    /// ClientKeyExchange (ECDHE).
    ClientKeyExchange(ClientKeyExchange),
    /// Finished: verify_data.
    Finished([u8; VERIFY_DATA_LEN]),
}

impl Handshake {
    /// The msg_type for this body.
    pub fn msg_type(&self) -> HandshakeType {
        match self {
            Handshake::HelloRequest => HandshakeType::HelloRequest,
            Handshake::ClientHello(_) => HandshakeType::ClientHello,
            Handshake::ServerHello(_) => HandshakeType::ServerHello,
            Handshake::HelloVerifyRequest(_) => HandshakeType::HelloVerifyRequest,
            Handshake::NewSessionTicket(_) => HandshakeType::NewSessionTicket,
            Handshake::Certificate(_) => HandshakeType::Certificate,
            Handshake::ServerKeyExchange(_) => HandshakeType::ServerKeyExchange,
            Handshake::CertificateRequest(_) => HandshakeType::CertificateRequest,
            Handshake::ServerHelloDone => HandshakeType::ServerHelloDone,
            Handshake::CertificateVerify(_) => HandshakeType::CertificateVerify,
            Handshake::ClientKeyExchange(_) => HandshakeType::ClientKeyExchange,
            Handshake::Finished(_) => HandshakeType::Finished,
        }
    }

    /// Appends the body (no handshake header).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Handshake::HelloRequest | Handshake::ServerHelloDone => {}
            Handshake::ClientHello(m) => m.emit(out),
            Handshake::ServerHello(m) => m.emit(out),
            Handshake::HelloVerifyRequest(m) => m.emit(out),
            Handshake::NewSessionTicket(m) => m.emit(out),
            Handshake::Certificate(m) => m.emit(out),
            Handshake::ServerKeyExchange(m) => m.emit(out),
            Handshake::CertificateRequest(m) => m.emit(out),
            Handshake::CertificateVerify(m) => m.emit(out),
            Handshake::ClientKeyExchange(m) => m.emit(out),
            Handshake::Finished(v) => out.extend_from_slice(v),
        }
    }

    /// Wraps the body in a [`HandshakeMessage`] with this message_seq.
    pub fn to_message(&self, message_seq: u16) -> HandshakeMessage {
        let mut body = Vec::new();
        self.emit_body(&mut body);
        HandshakeMessage {
            msg_type: self.msg_type(),
            message_seq,
            body,
        }
    }

    /// Parses a whole body of the given type.
    pub fn parse(msg_type: HandshakeType, body: &[u8]) -> Result<Self, Error> {
        let empty = |what| {
            if body.is_empty() {
                Ok(())
            } else {
                Err(Error::TrailingBytes {
                    what,
                    offset: 0,
                    count: body.len(),
                })
            }
        };
        Ok(match msg_type {
            HandshakeType::HelloRequest => {
                empty("HelloRequest")?;
                Handshake::HelloRequest
            }
            HandshakeType::ClientHello => Handshake::ClientHello(ClientHello::parse(body)?),
            HandshakeType::ServerHello => Handshake::ServerHello(ServerHello::parse(body)?),
            HandshakeType::HelloVerifyRequest => {
                Handshake::HelloVerifyRequest(HelloVerifyRequest::parse(body)?)
            }
            HandshakeType::NewSessionTicket => {
                Handshake::NewSessionTicket(NewSessionTicket::parse(body)?)
            }
            HandshakeType::Certificate => Handshake::Certificate(CertificateMsg::parse(body)?),
            HandshakeType::ServerKeyExchange => {
                Handshake::ServerKeyExchange(ServerKeyExchange::parse(body)?)
            }
            HandshakeType::CertificateRequest => {
                Handshake::CertificateRequest(CertificateRequest::parse(body)?)
            }
            HandshakeType::ServerHelloDone => {
                empty("ServerHelloDone")?;
                Handshake::ServerHelloDone
            }
            HandshakeType::CertificateVerify => {
                let mut r = Reader::new(body);
                let signed = DigitallySigned::parse(&mut r)?;
                r.finish("CertificateVerify")?;
                Handshake::CertificateVerify(signed)
            }
            HandshakeType::ClientKeyExchange => {
                Handshake::ClientKeyExchange(ClientKeyExchange::parse(body)?)
            }
            HandshakeType::Finished => {
                let mut r = Reader::new(body);
                let v = r.array("verify_data")?;
                r.finish("Finished")?;
                Handshake::Finished(v)
            }
            HandshakeType::Other(v) => {
                return Err(Error::InvalidValue {
                    what: "handshake msg_type",
                    value: v.into(),
                });
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Alerts (RFC 5246 §7.2): carried in their own record type, not in a
// handshake message, but part of the same conversation.

/// AlertLevel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertLevel {
    /// 1.
    Warning,
    /// 2: the association ends.
    Fatal,
    /// Any other value (treated as fatal by the endpoint).
    Other(u8),
}

impl AlertLevel {
    fn to_u8(self) -> u8 {
        match self {
            AlertLevel::Warning => 1,
            AlertLevel::Fatal => 2,
            AlertLevel::Other(v) => v,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => AlertLevel::Warning,
            2 => AlertLevel::Fatal,
            v => AlertLevel::Other(v),
        }
    }
}

/// AlertDescription (RFC 5246 §7.2, RFC 5746, RFC 8446 §6 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlertDescription(pub u8);

impl AlertDescription {
    /// 0: orderly close.
    pub const CLOSE_NOTIFY: Self = AlertDescription(0);
    /// 10.
    pub const UNEXPECTED_MESSAGE: Self = AlertDescription(10);
    /// 20.
    pub const BAD_RECORD_MAC: Self = AlertDescription(20);
    /// 22.
    pub const RECORD_OVERFLOW: Self = AlertDescription(22);
    /// 40.
    pub const HANDSHAKE_FAILURE: Self = AlertDescription(40);
    /// 42.
    pub const BAD_CERTIFICATE: Self = AlertDescription(42);
    /// 43.
    pub const UNSUPPORTED_CERTIFICATE: Self = AlertDescription(43);
    /// 46.
    pub const CERTIFICATE_UNKNOWN: Self = AlertDescription(46);
    /// 47.
    pub const ILLEGAL_PARAMETER: Self = AlertDescription(47);
    /// 50.
    pub const DECODE_ERROR: Self = AlertDescription(50);
    /// 51.
    pub const DECRYPT_ERROR: Self = AlertDescription(51);
    /// 70.
    pub const PROTOCOL_VERSION: Self = AlertDescription(70);
    /// 71.
    pub const INSUFFICIENT_SECURITY: Self = AlertDescription(71);
    /// 80.
    pub const INTERNAL_ERROR: Self = AlertDescription(80);
    /// 90.
    pub const USER_CANCELED: Self = AlertDescription(90);
    /// 100 (RFC 5746: we refuse renegotiation).
    pub const NO_RENEGOTIATION: Self = AlertDescription(100);
    /// 109 (RFC 8446 §6.2).
    pub const MISSING_EXTENSION: Self = AlertDescription(109);
    /// 110.
    pub const UNSUPPORTED_EXTENSION: Self = AlertDescription(110);
    /// 116 (RFC 8446 §6.2).
    pub const CERTIFICATE_REQUIRED: Self = AlertDescription(116);
}

/// An Alert record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Alert {
    /// Level.
    pub level: AlertLevel,
    /// Description.
    pub description: AlertDescription,
}

impl Alert {
    /// A fatal alert.
    pub fn fatal(description: AlertDescription) -> Self {
        Alert {
            level: AlertLevel::Fatal,
            description,
        }
    }

    /// close_notify (sent at warning level, RFC 5246 §7.2.1).
    pub fn close_notify() -> Self {
        Alert {
            level: AlertLevel::Warning,
            description: AlertDescription::CLOSE_NOTIFY,
        }
    }

    /// The two payload bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.level.to_u8());
        out.push(self.description.0);
    }

    /// Parses an Alert record payload.
    pub fn parse(payload: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(payload);
        let level = AlertLevel::from_u8(r.u8("alert level")?);
        let description = AlertDescription(r.u8("alert description")?);
        r.finish("Alert")?;
        Ok(Alert { level, description })
    }
}

#[cfg(test)]
mod tests;

/// Test fixtures shared with the endpoint's tests.
#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) use super::tests::{chromium_client_hello_body, firefox_client_hello_body};
}
