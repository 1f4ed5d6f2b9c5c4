//! DTLS 1.3 handshake messages (RFC 8446 §4 as RFC 9147 §5 carries them)
//! and the ACK message (RFC 9147 §7).
//!
//! The handshake header and its fragmentation are DTLS 1.2's
//! ([`crate::dtls::handshake::HandshakeHeader`], `fragments`,
//! [`crate::dtls::handshake::Reassembler`]: RFC 9147 §5.2 keeps the 12-byte
//! header with message_seq, fragment_offset and fragment_length), and so are
//! the ClientHello and ServerHello wire layouts and the extension codec
//! ([`crate::dtls::handshake::Extension`]). This module adds the typed 1.3
//! view of those hellos (supported_versions, key_share, cookie, the
//! HelloRetryRequest form) and the messages 1.3 introduces or reshapes:
//! EncryptedExtensions, CertificateRequest and Certificate with contexts
//! and per-entry extensions, CertificateVerify's signed content, Finished
//! with a hash-sized verify_data, KeyUpdate, NewSessionTicket (parsed, then
//! ignored), and ACK.

use super::key_schedule::{HASH_LEN, TranscriptHash};
use super::record::RecordNumber;
use crate::dtls::Error;
use crate::dtls::cert::SignatureScheme;
use crate::dtls::codec::{Reader, put_u16, put_vec};
use crate::dtls::handshake::{
    self as hs, Extension, HandshakeMessage, HandshakeType, HelloSide, NamedGroup, SrtpProfile,
};

/// DTLS 1.3 in supported_versions (RFC 9147 §5.3: the one's complement of
/// 1.3, 0xfefc).
pub const DTLS_1_3: u16 = 0xfefc;

/// DTLS 1.2: what legacy_version says in every 1.3 hello (RFC 9147 §5.3).
pub const DTLS_1_2: u16 = 0xfefd;

/// TLS_AES_128_GCM_SHA256 (RFC 8446 §B.4), the suite of this module's
/// record layer.
pub const TLS_AES_128_GCM_SHA256: u16 = 0x1301;

/// Extension code points new in 1.3 (IANA "TLS ExtensionType Values").
pub mod extension_type {
    pub use crate::dtls::handshake::extension_type::*;
    /// cookie (RFC 8446 §4.2.2).
    pub const COOKIE: u16 = 44;
    /// psk_key_exchange_modes (RFC 8446 §4.2.9).
    pub const PSK_KEY_EXCHANGE_MODES: u16 = 45;
    /// signature_algorithms_cert (RFC 8446 §4.2.3).
    pub const SIGNATURE_ALGORITHMS_CERT: u16 = 50;
    /// pre_shared_key (RFC 8446 §4.2.11).
    pub const PRE_SHARED_KEY: u16 = 41;
    /// early_data (RFC 8446 §4.2.10).
    pub const EARLY_DATA: u16 = 42;
}

/// Handshake types new in 1.3, as DTLS 1.2's [`HandshakeType`] spells them.
pub mod msg_type {
    use crate::dtls::handshake::HandshakeType;
    /// end_of_early_data (5): never sent (no 0-RTT here).
    pub const END_OF_EARLY_DATA: HandshakeType = HandshakeType::Other(5);
    /// encrypted_extensions (8).
    pub const ENCRYPTED_EXTENSIONS: HandshakeType = HandshakeType::Other(8);
    /// key_update (24).
    pub const KEY_UPDATE: HandshakeType = HandshakeType::Other(24);
    /// message_hash (254): the transcript's stand-in for a ClientHello
    /// answered by a HelloRetryRequest (RFC 8446 §4.4.1).
    pub const MESSAGE_HASH: HandshakeType = HandshakeType::Other(254);
}

/// RFC 8446 §4.1.3: a ServerHello whose random is SHA-256("HelloRetryRequest")
/// is a HelloRetryRequest.
pub const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// RFC 8446 §4.1.3: the last 8 bytes of a 1.3-capable server's random when
/// it negotiates (D)TLS 1.2: "DOWNGRD" then 01.
pub const DOWNGRADE_TO_1_2: [u8; 8] = *b"DOWNGRD\x01";

/// Whether a ServerHello random carries the downgrade sentinel; a client
/// that offered 1.3 and gets 1.2 with it must abort (RFC 8446 §4.1.3).
pub fn has_downgrade_sentinel(server_random: &[u8; 32]) -> bool {
    server_random[24..] == DOWNGRADE_TO_1_2
}

// ---------------------------------------------------------------------------
// Extensions.

/// One KeyShareEntry (RFC 8446 §4.2.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyShareEntry {
    /// The group.
    pub group: NamedGroup,
    /// The public value (see [`super::key_share`] for each group's layout).
    pub key_exchange: Vec<u8>,
}

impl KeyShareEntry {
    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let group = NamedGroup(r.u16("KeyShareEntry group")?);
        let key_exchange = r.vec16("KeyShareEntry key_exchange")?;
        if key_exchange.is_empty() {
            return Err(Error::InvalidValue {
                what: "KeyShareEntry key_exchange length",
                value: 0,
            });
        }
        Ok(KeyShareEntry {
            group,
            key_exchange: key_exchange.to_vec(),
        })
    }

    fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.group.0);
        put_vec(out, 2, |o| o.extend_from_slice(&self.key_exchange));
    }
}

/// use_srtp's contents (RFC 5764 §4.1.1), in ClientHello and, in 1.3,
/// EncryptedExtensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UseSrtp {
    /// Profiles (one in the server's answer).
    pub profiles: Vec<SrtpProfile>,
    /// srtp_mki (empty in WebRTC).
    pub mki: Vec<u8>,
}

/// Parses a mandatory extension block (`Extension extensions<0..2^16-1>`,
/// always length-prefixed outside the hellos), refusing repeated types
/// (RFC 8446 §4.2).
fn parse_extension_block(r: &mut Reader<'_>, side: HelloSide) -> Result<Vec<Extension>, Error> {
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

fn put_extension_block(out: &mut Vec<u8>, extensions: &[Extension]) {
    put_vec(out, 2, |o| extensions.iter().for_each(|e| e.emit(o)));
}

/// The typed extensions of a 1.3 message, sorted out of a parsed list; what
/// has no field here stays in `other`, in order.
#[derive(Default)]
struct Sorted {
    supported_versions: Vec<u16>,
    selected_version: Option<u16>,
    supported_groups: Vec<NamedGroup>,
    signature_algorithms: Vec<SignatureScheme>,
    key_share: Option<Vec<u8>>,
    cookie: Option<Vec<u8>>,
    use_srtp: Option<UseSrtp>,
    other: Vec<Extension>,
}

fn non_empty<T>(list: Vec<T>, what: &'static str) -> Result<Vec<T>, Error> {
    if list.is_empty() {
        Err(Error::InvalidValue { what, value: 0 })
    } else {
        Ok(list)
    }
}

impl Sorted {
    fn from(extensions: Vec<Extension>) -> Result<Self, Error> {
        use extension_type as t;
        let mut s = Sorted::default();
        for e in extensions {
            match e {
                // RFC 8446 §4.2.1, §4.2.7, §4.2.3: these lists have a
                // minimum length of one entry, so "absent" and "empty" are
                // told apart by refusing the latter.
                Extension::SupportedVersions(v) => {
                    s.supported_versions = non_empty(v, "supported_versions length")?
                }
                Extension::SelectedVersion(v) => s.selected_version = Some(v),
                Extension::SupportedGroups(g) => {
                    s.supported_groups = non_empty(g, "supported_groups length")?
                }
                Extension::SignatureAlgorithms(a) => {
                    s.signature_algorithms = non_empty(a, "signature_algorithms length")?
                }
                Extension::UseSrtp { profiles, mki } => {
                    s.use_srtp = Some(UseSrtp {
                        profiles: non_empty(profiles, "use_srtp profiles length")?,
                        mki,
                    })
                }
                Extension::Unknown { typ, data } if typ == t::KEY_SHARE => s.key_share = Some(data),
                Extension::Unknown { typ, data } if typ == t::COOKIE => {
                    let mut r = Reader::new(&data);
                    let cookie = r.vec16("cookie")?;
                    r.finish("cookie extension")?;
                    s.cookie = Some(non_empty(cookie.to_vec(), "cookie length")?);
                }
                other => s.other.push(other),
            }
        }
        Ok(s)
    }
}

fn key_share_extension(body: impl FnOnce(&mut Vec<u8>)) -> Extension {
    let mut data = Vec::new();
    body(&mut data);
    Extension::Unknown {
        typ: extension_type::KEY_SHARE,
        data,
    }
}

fn cookie_extension(cookie: &[u8]) -> Extension {
    let mut data = Vec::new();
    put_vec(&mut data, 2, |o| o.extend_from_slice(cookie));
    Extension::Unknown {
        typ: extension_type::COOKIE,
        data,
    }
}

// ---------------------------------------------------------------------------
// Hellos.

/// A DTLS 1.3 ClientHello (RFC 8446 §4.1.2, RFC 9147 §5.3), typed. The wire
/// layout is DTLS 1.2's ([`hs::ClientHello`]), legacy_cookie included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    /// legacy_version: 0xfefd (DTLS 1.2) in every 1.3 ClientHello.
    pub legacy_version: u16,
    /// 32 random bytes.
    pub random: [u8; 32],
    /// legacy_session_id (0–32 bytes; DTLS 1.3 clients send none).
    pub legacy_session_id: Vec<u8>,
    /// legacy_cookie: empty in a 1.3 client's first hello and ignored by a
    /// 1.3 server (RFC 9147 §5.1, §5.3); non-empty only when a 1.2 server's
    /// HelloVerifyRequest answered the first one.
    pub legacy_cookie: Vec<u8>,
    /// cipher_suites, 1.3 and 1.2 ones mixed (a client offering both).
    pub cipher_suites: Vec<u16>,
    /// supported_versions (RFC 8446 §4.2.1); empty when absent (a 1.2-only
    /// client).
    pub supported_versions: Vec<u16>,
    /// supported_groups (§4.2.7); empty when absent.
    pub supported_groups: Vec<NamedGroup>,
    /// signature_algorithms (§4.2.3); empty when absent.
    pub signature_algorithms: Vec<SignatureScheme>,
    /// key_share's client_shares (§4.2.8): `None` when absent, possibly
    /// empty (a client asking for a HelloRetryRequest).
    pub key_shares: Option<Vec<KeyShareEntry>>,
    /// use_srtp (RFC 5764 §4.1.1).
    pub use_srtp: Option<UseSrtp>,
    /// cookie (§4.2.2): the HelloRetryRequest's, echoed.
    pub cookie: Option<Vec<u8>>,
    /// Every other extension, in order.
    pub other: Vec<Extension>,
}

impl ClientHello {
    /// Whether DTLS 1.3 is among the offered versions.
    pub fn offers_dtls13(&self) -> bool {
        self.supported_versions.contains(&DTLS_1_3)
    }

    /// The key share offered for `group`, if any.
    pub fn key_share(&self, group: NamedGroup) -> Option<&KeyShareEntry> {
        self.key_shares.as_ref()?.iter().find(|k| k.group == group)
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let ch = hs::ClientHello::parse(body)?;
        // RFC 8446 §4.1.2: legacy_compression_methods is exactly one null.
        if ch.compression_methods != [0] {
            return Err(Error::InvalidValue {
                what: "legacy_compression_methods (must be exactly null)",
                value: ch.compression_methods.len() as u64,
            });
        }
        let s = Sorted::from(ch.extensions)?;
        let key_shares = match s.key_share {
            None => None,
            Some(data) => {
                let mut r = Reader::new(&data);
                let mut list = Reader::new(r.vec16("client_shares")?);
                r.finish("key_share extension")?;
                let mut shares: Vec<KeyShareEntry> = Vec::new();
                while !list.is_empty() {
                    let k = KeyShareEntry::parse(&mut list)?;
                    // §4.2.8: one share per group.
                    if shares.iter().any(|s| s.group == k.group) {
                        return Err(Error::InvalidValue {
                            what: "duplicate KeyShareEntry group",
                            value: k.group.0.into(),
                        });
                    }
                    shares.push(k);
                }
                Some(shares)
            }
        };
        Ok(ClientHello {
            legacy_version: ch.version,
            random: ch.random,
            legacy_session_id: ch.session_id,
            legacy_cookie: ch.cookie,
            cipher_suites: ch.cipher_suites,
            supported_versions: s.supported_versions,
            supported_groups: s.supported_groups,
            signature_algorithms: s.signature_algorithms,
            key_shares,
            use_srtp: s.use_srtp,
            cookie: s.cookie,
            other: s.other,
        })
    }

    /// The extensions in the order we write them: the typed ones, then
    /// `other`.
    fn extensions(&self) -> Vec<Extension> {
        let mut e = Vec::with_capacity(6 + self.other.len());
        if !self.supported_versions.is_empty() {
            e.push(Extension::SupportedVersions(
                self.supported_versions.clone(),
            ));
        }
        if !self.supported_groups.is_empty() {
            e.push(Extension::SupportedGroups(self.supported_groups.clone()));
        }
        if !self.signature_algorithms.is_empty() {
            e.push(Extension::SignatureAlgorithms(
                self.signature_algorithms.clone(),
            ));
        }
        if let Some(shares) = &self.key_shares {
            e.push(key_share_extension(|o| {
                put_vec(o, 2, |o| shares.iter().for_each(|k| k.emit(o)));
            }));
        }
        if let Some(u) = &self.use_srtp {
            e.push(Extension::UseSrtp {
                profiles: u.profiles.clone(),
                mki: u.mki.clone(),
            });
        }
        if let Some(c) = &self.cookie {
            e.push(cookie_extension(c));
        }
        e.extend(self.other.iter().cloned());
        e
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        hs::ClientHello {
            version: self.legacy_version,
            random: self.random,
            session_id: self.legacy_session_id.clone(),
            cookie: self.legacy_cookie.clone(),
            cipher_suites: self.cipher_suites.clone(),
            compression_methods: vec![0],
            extensions: self.extensions(),
        }
        .emit(out);
    }
}

/// A DTLS 1.3 ServerHello (RFC 8446 §4.1.3), typed: legacy_version 0xfefd,
/// the selected version in supported_versions, the server's key share.
/// (use_srtp moves to EncryptedExtensions in 1.3.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerHello {
    /// 32 random bytes (never [`HELLO_RETRY_REQUEST_RANDOM`]).
    pub random: [u8; 32],
    /// legacy_session_id_echo: empty, since RFC 9147 §5 forbids a DTLS
    /// server to echo the client's legacy_session_id (no middlebox
    /// compatibility mode in DTLS); kept as received.
    pub legacy_session_id_echo: Vec<u8>,
    /// The chosen suite.
    pub cipher_suite: u16,
    /// supported_versions' selected_version (0xfefc).
    pub selected_version: u16,
    /// The server's key share (absent only with a PSK, which we never use).
    pub key_share: Option<KeyShareEntry>,
    /// Every other extension, in order.
    pub other: Vec<Extension>,
}

/// A HelloRetryRequest (RFC 8446 §4.1.4): a ServerHello with the special
/// random, asking for another ClientHello with a share of `selected_group`
/// and/or echoing `cookie` (DTLS 1.3's return-routability check, RFC 9147
/// §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloRetryRequest {
    /// legacy_session_id_echo.
    pub legacy_session_id_echo: Vec<u8>,
    /// The chosen suite.
    pub cipher_suite: u16,
    /// supported_versions' selected_version.
    pub selected_version: u16,
    /// key_share's selected_group, when the client must send another share.
    pub selected_group: Option<NamedGroup>,
    /// The cookie the client must echo.
    pub cookie: Option<Vec<u8>>,
    /// Every other extension, in order.
    pub other: Vec<Extension>,
}

/// What a msg_type 2 message is in 1.3: a ServerHello or a HelloRetryRequest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHelloKind {
    /// A ServerHello.
    ServerHello(ServerHello),
    /// A HelloRetryRequest.
    HelloRetryRequest(HelloRetryRequest),
}

fn selected_version(s: &Sorted) -> Result<u16, Error> {
    // RFC 8446 §4.2.1: a 1.3 ServerHello or HRR must carry
    // supported_versions; without it the server chose 1.2 and the 1.2 code
    // owns the message.
    s.selected_version.ok_or(Error::InvalidValue {
        what: "ServerHello without supported_versions (not a 1.3 ServerHello)",
        value: 0,
    })
}

impl ServerHelloKind {
    /// Parses a whole msg_type 2 body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let sh = hs::ServerHello::parse(body)?;
        if sh.version != DTLS_1_2 {
            return Err(Error::InvalidValue {
                what: "ServerHello legacy_version (must be 0xfefd)",
                value: sh.version.into(),
            });
        }
        if sh.compression_method != 0 {
            return Err(Error::InvalidValue {
                what: "legacy_compression_method",
                value: sh.compression_method.into(),
            });
        }
        let s = Sorted::from(sh.extensions)?;
        let version = selected_version(&s)?;
        if !s.supported_versions.is_empty()
            || !s.supported_groups.is_empty()
            || !s.signature_algorithms.is_empty()
            || s.use_srtp.is_some()
        {
            return Err(Error::InvalidValue {
                what: "extension not allowed in a ServerHello",
                value: 0,
            });
        }
        if sh.random == HELLO_RETRY_REQUEST_RANDOM {
            let selected_group = match s.key_share {
                None => None,
                Some(data) => {
                    let mut r = Reader::new(&data);
                    let g = NamedGroup(r.u16("selected_group")?);
                    r.finish("HelloRetryRequest key_share")?;
                    Some(g)
                }
            };
            return Ok(ServerHelloKind::HelloRetryRequest(HelloRetryRequest {
                legacy_session_id_echo: sh.session_id,
                cipher_suite: sh.cipher_suite,
                selected_version: version,
                selected_group,
                cookie: s.cookie,
                other: s.other,
            }));
        }
        if s.cookie.is_some() {
            return Err(Error::InvalidValue {
                what: "cookie in a ServerHello",
                value: extension_type::COOKIE.into(),
            });
        }
        let key_share = match s.key_share {
            None => None,
            Some(data) => {
                let mut r = Reader::new(&data);
                let k = KeyShareEntry::parse(&mut r)?;
                r.finish("ServerHello key_share")?;
                Some(k)
            }
        };
        Ok(ServerHelloKind::ServerHello(ServerHello {
            random: sh.random,
            legacy_session_id_echo: sh.session_id,
            cipher_suite: sh.cipher_suite,
            selected_version: version,
            key_share,
            other: s.other,
        }))
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let (random, session_id, cipher_suite, mut extensions, other) = match self {
            ServerHelloKind::ServerHello(m) => {
                let mut e = vec![Extension::SelectedVersion(m.selected_version)];
                if let Some(k) = &m.key_share {
                    e.push(key_share_extension(|o| k.emit(o)));
                }
                (
                    m.random,
                    &m.legacy_session_id_echo,
                    m.cipher_suite,
                    e,
                    &m.other,
                )
            }
            ServerHelloKind::HelloRetryRequest(m) => {
                let mut e = vec![Extension::SelectedVersion(m.selected_version)];
                if let Some(g) = m.selected_group {
                    e.push(key_share_extension(|o| put_u16(o, g.0)));
                }
                if let Some(c) = &m.cookie {
                    e.push(cookie_extension(c));
                }
                (
                    HELLO_RETRY_REQUEST_RANDOM,
                    &m.legacy_session_id_echo,
                    m.cipher_suite,
                    e,
                    &m.other,
                )
            }
        };
        extensions.extend(other.iter().cloned());
        hs::ServerHello {
            version: DTLS_1_2,
            random,
            session_id: session_id.clone(),
            cipher_suite,
            compression_method: 0,
            extensions,
        }
        .emit(out);
    }
}

// ---------------------------------------------------------------------------
// The encrypted flight.

/// EncryptedExtensions (RFC 8446 §4.3.1): the server's answers that need no
/// cleartext; in WebRTC chiefly use_srtp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedExtensions {
    /// supported_groups (the server's preference, informational); empty when
    /// absent.
    pub supported_groups: Vec<NamedGroup>,
    /// use_srtp: the chosen profile.
    pub use_srtp: Option<UseSrtp>,
    /// Every other extension, in order.
    pub other: Vec<Extension>,
}

impl EncryptedExtensions {
    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let s = Sorted::from(parse_extension_block(&mut r, HelloSide::Server)?)?;
        r.finish("EncryptedExtensions")?;
        // RFC 8446 §4.2: these belong to the hellos or CertificateRequest.
        if s.selected_version.is_some()
            || s.key_share.is_some()
            || s.cookie.is_some()
            || !s.signature_algorithms.is_empty()
        {
            return Err(Error::InvalidValue {
                what: "extension not allowed in EncryptedExtensions",
                value: 0,
            });
        }
        Ok(EncryptedExtensions {
            supported_groups: s.supported_groups,
            use_srtp: s.use_srtp,
            other: s.other,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut e = Vec::with_capacity(2 + self.other.len());
        if !self.supported_groups.is_empty() {
            e.push(Extension::SupportedGroups(self.supported_groups.clone()));
        }
        if let Some(u) = &self.use_srtp {
            e.push(Extension::UseSrtp {
                profiles: u.profiles.clone(),
                mki: u.mki.clone(),
            });
        }
        e.extend(self.other.iter().cloned());
        put_extension_block(out, &e);
    }
}

/// CertificateRequest in its 1.3 form (RFC 8446 §4.3.2): a context and
/// extensions, signature_algorithms required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateRequest {
    /// certificate_request_context (empty in the handshake).
    pub context: Vec<u8>,
    /// signature_algorithms: what the client may sign CertificateVerify with.
    pub signature_algorithms: Vec<SignatureScheme>,
    /// Every other extension, in order.
    pub other: Vec<Extension>,
}

impl CertificateRequest {
    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let context = r.vec8("certificate_request_context")?.to_vec();
        let s = Sorted::from(parse_extension_block(&mut r, HelloSide::Server)?)?;
        r.finish("CertificateRequest")?;
        if s.signature_algorithms.is_empty() {
            return Err(Error::InvalidValue {
                what: "CertificateRequest without signature_algorithms",
                value: 0,
            });
        }
        if s.selected_version.is_some()
            || s.key_share.is_some()
            || s.cookie.is_some()
            || s.use_srtp.is_some()
            || !s.supported_groups.is_empty()
        {
            return Err(Error::InvalidValue {
                what: "extension not allowed in CertificateRequest",
                value: 0,
            });
        }
        Ok(CertificateRequest {
            context,
            signature_algorithms: s.signature_algorithms,
            other: s.other,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_vec(out, 1, |o| o.extend_from_slice(&self.context));
        let mut e = vec![Extension::SignatureAlgorithms(
            self.signature_algorithms.clone(),
        )];
        e.extend(self.other.iter().cloned());
        put_extension_block(out, &e);
    }
}

/// One CertificateEntry (RFC 8446 §4.4.2): DER and per-certificate
/// extensions (OCSP status, SCTs; kept raw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateEntry {
    /// cert_data: the DER certificate.
    pub cert_data: Vec<u8>,
    /// extensions.
    pub extensions: Vec<Extension>,
}

/// Certificate in its 1.3 form (RFC 8446 §4.4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// certificate_request_context: empty from a server; the request's from
    /// a client.
    pub context: Vec<u8>,
    /// The chain, the sender's own certificate first (empty: a client with
    /// no certificate).
    pub entries: Vec<CertificateEntry>,
}

impl Certificate {
    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let context = r.vec8("certificate_request_context")?.to_vec();
        let mut list = Reader::new(r.vec24("certificate_list")?);
        r.finish("Certificate")?;
        let mut entries = Vec::new();
        while !list.is_empty() {
            let cert_data = list.vec24("cert_data")?;
            if cert_data.is_empty() {
                return Err(Error::InvalidValue {
                    what: "cert_data length",
                    value: 0,
                });
            }
            let extensions = parse_extension_block(&mut list, HelloSide::Server)?;
            entries.push(CertificateEntry {
                cert_data: cert_data.to_vec(),
                extensions,
            });
        }
        Ok(Certificate { context, entries })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_vec(out, 1, |o| o.extend_from_slice(&self.context));
        put_vec(out, 3, |o| {
            for e in &self.entries {
                put_vec(o, 3, |o| o.extend_from_slice(&e.cert_data));
                put_extension_block(o, &e.extensions);
            }
        });
    }
}

/// Who signs a CertificateVerify (its context string differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signer {
    /// "TLS 1.3, server CertificateVerify".
    Server,
    /// "TLS 1.3, client CertificateVerify".
    Client,
}

/// CertificateVerify (RFC 8446 §4.4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateVerify {
    /// The signature scheme.
    pub scheme: SignatureScheme,
    /// The signature.
    pub signature: Vec<u8>,
}

impl CertificateVerify {
    /// RFC 8446 §4.4.3: what is signed: 64 spaces, the context string, a
    /// zero byte, and the transcript hash up to (not including) this
    /// message. DTLS 1.3 keeps TLS 1.3's context strings (RFC 9147 changes
    /// only the HKDF label prefix).
    pub fn signed_content(signer: Signer, transcript_hash: &TranscriptHash) -> Vec<u8> {
        let context: &[u8] = match signer {
            Signer::Server => b"TLS 1.3, server CertificateVerify",
            Signer::Client => b"TLS 1.3, client CertificateVerify",
        };
        let mut m = Vec::with_capacity(64 + context.len() + 1 + HASH_LEN);
        m.extend_from_slice(&[0x20; 64]);
        m.extend_from_slice(context);
        m.push(0);
        m.extend_from_slice(transcript_hash);
        m
    }

    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let scheme = SignatureScheme(r.u16("CertificateVerify algorithm")?);
        let signature = r.vec16("CertificateVerify signature")?.to_vec();
        r.finish("CertificateVerify")?;
        Ok(CertificateVerify { scheme, signature })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_u16(out, self.scheme.0);
        put_vec(out, 2, |o| o.extend_from_slice(&self.signature));
    }
}

/// Finished (RFC 8446 §4.4.4): verify_data is Hash.length bytes (32, SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// HMAC(finished_key, transcript hash).
    pub verify_data: [u8; HASH_LEN],
}

impl Finished {
    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let verify_data = r.array("verify_data")?;
        r.finish("Finished")?;
        Ok(Finished { verify_data })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.verify_data);
    }
}

/// KeyUpdate (RFC 8446 §4.6.3; RFC 9147 §8: acknowledged by ACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUpdate {
    /// update_not_requested (0).
    NotRequested,
    /// update_requested (1): the peer must update its sending keys too.
    Requested,
}

impl KeyUpdate {
    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let v = r.u8("request_update")?;
        r.finish("KeyUpdate")?;
        match v {
            0 => Ok(KeyUpdate::NotRequested),
            1 => Ok(KeyUpdate::Requested),
            v => Err(Error::InvalidValue {
                what: "KeyUpdate request_update",
                value: v.into(),
            }),
        }
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(match self {
            KeyUpdate::NotRequested => 0,
            KeyUpdate::Requested => 1,
        });
    }
}

/// NewSessionTicket in its 1.3 form (RFC 8446 §4.6.1). We resume no
/// sessions: parsed (to refuse garbage) and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSessionTicket {
    /// ticket_lifetime in seconds.
    pub lifetime: u32,
    /// ticket_age_add.
    pub age_add: u32,
    /// ticket_nonce.
    pub nonce: Vec<u8>,
    /// The ticket.
    pub ticket: Vec<u8>,
    /// extensions (early_data).
    pub extensions: Vec<Extension>,
}

impl NewSessionTicket {
    /// Parses a whole body.
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let lifetime = u32::from_be_bytes(r.array("ticket_lifetime")?);
        let age_add = u32::from_be_bytes(r.array("ticket_age_add")?);
        let nonce = r.vec8("ticket_nonce")?.to_vec();
        let ticket = r.vec16("ticket")?.to_vec();
        if ticket.is_empty() {
            return Err(Error::InvalidValue {
                what: "ticket length",
                value: 0,
            });
        }
        let extensions = parse_extension_block(&mut r, HelloSide::Server)?;
        r.finish("NewSessionTicket")?;
        Ok(NewSessionTicket {
            lifetime,
            age_add,
            nonce,
            ticket,
            extensions,
        })
    }

    /// Appends the body.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.lifetime.to_be_bytes());
        out.extend_from_slice(&self.age_add.to_be_bytes());
        put_vec(out, 1, |o| o.extend_from_slice(&self.nonce));
        put_vec(out, 2, |o| o.extend_from_slice(&self.ticket));
        put_extension_block(out, &self.extensions);
    }
}

/// A typed DTLS 1.3 handshake message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// client_hello (1).
    ClientHello(ClientHello),
    /// server_hello (2), a ServerHello or a HelloRetryRequest.
    ServerHello(ServerHelloKind),
    /// new_session_ticket (4).
    NewSessionTicket(NewSessionTicket),
    /// encrypted_extensions (8).
    EncryptedExtensions(EncryptedExtensions),
    /// certificate (11).
    Certificate(Certificate),
    /// certificate_request (13).
    CertificateRequest(CertificateRequest),
    /// certificate_verify (15).
    CertificateVerify(CertificateVerify),
    /// finished (20).
    Finished(Finished),
    /// key_update (24).
    KeyUpdate(KeyUpdate),
}

impl Handshake {
    /// The msg_type for this body.
    pub fn msg_type(&self) -> HandshakeType {
        match self {
            Handshake::ClientHello(_) => HandshakeType::ClientHello,
            Handshake::ServerHello(_) => HandshakeType::ServerHello,
            Handshake::NewSessionTicket(_) => HandshakeType::NewSessionTicket,
            Handshake::EncryptedExtensions(_) => msg_type::ENCRYPTED_EXTENSIONS,
            Handshake::Certificate(_) => HandshakeType::Certificate,
            Handshake::CertificateRequest(_) => HandshakeType::CertificateRequest,
            Handshake::CertificateVerify(_) => HandshakeType::CertificateVerify,
            Handshake::Finished(_) => HandshakeType::Finished,
            Handshake::KeyUpdate(_) => msg_type::KEY_UPDATE,
        }
    }

    /// Appends the body (no handshake header).
    pub fn emit_body(&self, out: &mut Vec<u8>) {
        match self {
            Handshake::ClientHello(m) => m.emit(out),
            Handshake::ServerHello(m) => m.emit(out),
            Handshake::NewSessionTicket(m) => m.emit(out),
            Handshake::EncryptedExtensions(m) => m.emit(out),
            Handshake::Certificate(m) => m.emit(out),
            Handshake::CertificateRequest(m) => m.emit(out),
            Handshake::CertificateVerify(m) => m.emit(out),
            Handshake::Finished(m) => m.emit(out),
            Handshake::KeyUpdate(m) => m.emit(out),
        }
    }

    /// Wraps the body in a [`HandshakeMessage`] with this message_seq, ready
    /// for DTLS 1.2's fragmentation (RFC 9147 §5.2 keeps it).
    pub fn to_message(&self, message_seq: u16) -> HandshakeMessage {
        let mut body = Vec::new();
        self.emit_body(&mut body);
        HandshakeMessage {
            msg_type: self.msg_type(),
            message_seq,
            body,
        }
    }

    /// Parses a whole body of the given type. Types that 1.3 removed
    /// (HelloVerifyRequest, ServerKeyExchange, ServerHelloDone,
    /// ClientKeyExchange, …) and unknown ones are refused.
    pub fn parse(typ: HandshakeType, body: &[u8]) -> Result<Self, Error> {
        Ok(match typ {
            HandshakeType::ClientHello => Handshake::ClientHello(ClientHello::parse(body)?),
            HandshakeType::ServerHello => Handshake::ServerHello(ServerHelloKind::parse(body)?),
            HandshakeType::NewSessionTicket => {
                Handshake::NewSessionTicket(NewSessionTicket::parse(body)?)
            }
            msg_type::ENCRYPTED_EXTENSIONS => {
                Handshake::EncryptedExtensions(EncryptedExtensions::parse(body)?)
            }
            HandshakeType::Certificate => Handshake::Certificate(Certificate::parse(body)?),
            HandshakeType::CertificateRequest => {
                Handshake::CertificateRequest(CertificateRequest::parse(body)?)
            }
            HandshakeType::CertificateVerify => {
                Handshake::CertificateVerify(CertificateVerify::parse(body)?)
            }
            HandshakeType::Finished => Handshake::Finished(Finished::parse(body)?),
            msg_type::KEY_UPDATE => Handshake::KeyUpdate(KeyUpdate::parse(body)?),
            other => {
                return Err(Error::InvalidValue {
                    what: "DTLS 1.3 handshake msg_type",
                    value: other.to_u8().into(),
                });
            }
        })
    }
}

// ---------------------------------------------------------------------------
// ACK.

/// Bytes of one RecordNumber in an ACK.
const RECORD_NUMBER_LEN: usize = 16;

/// The ACK message (RFC 9147 §7): the record numbers of handshake records
/// received, in a record of content type ack (26).
///
/// ```text
/// struct { RecordNumber record_numbers<0..2^16-1>; } ACK;
/// struct { uint64 epoch; uint64 sequence_number; } RecordNumber;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ack {
    /// The records acknowledged (RFC 9147 §7.1 suggests ascending order).
    pub records: Vec<RecordNumber>,
}

impl Ack {
    /// Most record numbers an ACK holds (the 16-bit length / 16 bytes).
    pub const MAX_RECORDS: usize = (u16::MAX as usize) / RECORD_NUMBER_LEN;

    /// Parses a whole ACK record's content.
    pub fn parse(content: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(content);
        let list = r.vec16("record_numbers")?;
        r.finish("ACK")?;
        if list.len() % RECORD_NUMBER_LEN != 0 {
            return Err(Error::InvalidValue {
                what: "ACK record_numbers length (multiple of 16)",
                value: list.len() as u64,
            });
        }
        let records = list
            .chunks_exact(RECORD_NUMBER_LEN)
            .map(|c| {
                let mut epoch = [0u8; 8];
                let mut sequence = [0u8; 8];
                epoch.copy_from_slice(&c[..8]);
                sequence.copy_from_slice(&c[8..]);
                RecordNumber {
                    epoch: u64::from_be_bytes(epoch),
                    sequence: u64::from_be_bytes(sequence),
                }
            })
            .collect();
        Ok(Ack { records })
    }

    /// Appends the content. Writes at most [`Ack::MAX_RECORDS`] numbers (the
    /// first ones); an ACK may always name fewer records than it could.
    pub fn emit(&self, out: &mut Vec<u8>) {
        put_vec(out, 2, |o| {
            for n in self.records.iter().take(Self::MAX_RECORDS) {
                o.extend_from_slice(&n.epoch.to_be_bytes());
                o.extend_from_slice(&n.sequence.to_be_bytes());
            }
        });
    }
}

#[cfg(test)]
pub(crate) mod tests;
