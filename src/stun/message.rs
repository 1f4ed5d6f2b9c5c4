//! The STUN message: header, decoding as a zero-copy view, and encoding.
//!
//! RFC 8489 §5, the 20-byte header:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |0 0|     STUN Message Type     |         Message Length        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         Magic Cookie                          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! |                     Transaction ID (96 bits)                  |
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The message type interleaves a 12-bit method with a 2-bit class:
//!
//! ```text
//!  0                 1
//!  2  3  4 5 6 7 8 9 0 1 2 3 4 5
//! +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
//! |M |M |M|M|M|C|M|M|M|C|M|M|M|M|
//! |11|10|9|8|7|1|6|5|4|0|3|2|1|0|
//! +--+--+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::fmt;
use std::net::SocketAddr;

use super::attributes::{self, Attribute, attr, bad_attribute, padding};
use super::error::Error;
use super::integrity::{self, IntegrityKey};

// ANCHOR: magic_cookie
/// RFC 8489 §5: the fixed value that tells STUN apart from other protocols.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
// ANCHOR_END: magic_cookie

/// Length of the STUN header.
pub const HEADER_LEN: usize = 20;

/// A 96-bit transaction id (RFC 8489 §5): random, chosen by the client, echoed
/// by the server; it matches responses to requests.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// A fresh random id from the caller's RNG (RFC 8489 §6: "uniformly and
    /// randomly chosen from the interval 0 .. 2**96-1").
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut id = [0u8; 12];
        rng.fill_bytes(&mut id);
        TransactionId(id)
    }
}

impl fmt::Debug for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The class of a message (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// 0b00: a request, which expects a response.
    Request,
    /// 0b01: an indication, which does not.
    Indication,
    /// 0b10: a success response.
    Success,
    /// 0b11: an error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        }
    }
    fn from_bits(b: u16) -> Self {
        match b & 0b11 {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        }
    }
}

/// A 12-bit STUN method (IANA "STUN Methods").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// Allocate (TURN, RFC 8656).
    pub const ALLOCATE: Method = Method(0x003);
    /// Refresh (TURN).
    pub const REFRESH: Method = Method(0x004);
    /// Send (TURN).
    pub const SEND: Method = Method(0x006);
    /// Data (TURN).
    pub const DATA: Method = Method(0x007);
    /// CreatePermission (TURN).
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// ChannelBind (TURN).
    pub const CHANNEL_BIND: Method = Method(0x009);

    /// A method from its number; `None` if it does not fit 12 bits.
    pub const fn new(value: u16) -> Option<Method> {
        if value <= 0xFFF {
            Some(Method(value))
        } else {
            None
        }
    }

    /// The method's number.
    pub const fn value(self) -> u16 {
        self.0
    }
}

/// Class and method together: the 14-bit message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The class.
    pub class: Class,
    /// The method.
    pub method: Method,
}

impl MessageType {
    /// A type from its parts.
    pub const fn new(class: Class, method: Method) -> Self {
        MessageType { class, method }
    }

    /// A Binding request.
    pub const BINDING_REQUEST: MessageType = MessageType::new(Class::Request, Method::BINDING);
    /// A Binding success response.
    pub const BINDING_SUCCESS: MessageType = MessageType::new(Class::Success, Method::BINDING);
    /// A Binding error response.
    pub const BINDING_ERROR: MessageType = MessageType::new(Class::Error, Method::BINDING);

    // ANCHOR: message_type_bits
    /// RFC 8489 §5: interleave the method bits M0–M11 with the class bits C0, C1.
    pub fn to_u16(self) -> u16 {
        let m = self.method.0;
        let c = self.class.bits();
        (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
    }
    // ANCHOR_END: message_type_bits

    /// The inverse of [`MessageType::to_u16`]; the top two bits must be zero.
    pub fn from_u16(t: u16) -> Self {
        let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
        let class = ((t >> 4) & 1) | ((t >> 7) & 2);
        MessageType {
            class: Class::from_bits(class),
            method: Method(method),
        }
    }
}

/// An attribute as found in a message: its type, raw value and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The attribute type.
    pub typ: u16,
    /// The value, without padding.
    pub value: &'a [u8],
    /// Offset of the attribute header from the start of the message.
    pub offset: usize,
}

/// A decoded STUN message: a checked view over the bytes, allocation-free.
///
/// [`Message::parse`] checks the header and that every attribute's TLV framing
/// fits; it does not interpret values (that happens when an attribute is
/// read) and it does not check integrity (that needs a key:
/// [`Message::verify_integrity`]).
///
/// RFC 8489 §14.5–14.7 ordering rules are applied to what the view shows:
/// after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count,
/// after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT, and after FINGERPRINT
/// nothing. Everything else there is ignored, as the RFC says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    raw: &'a [u8],
    typ: MessageType,
    tid: TransactionId,
    integrity: Option<u16>,
    integrity_sha256: Option<u16>,
    fingerprint: Option<u16>,
}

impl fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_struct("Message");
        l.field("class", &self.typ.class)
            .field("method", &self.typ.method.0)
            .field("tid", &self.tid);
        let attrs: Vec<_> = self
            .attributes()
            .map(|a| match Attribute::parse(a.typ, a.value, &self.tid) {
                Ok(v) => format!("{v:?}"),
                Err(e) => format!("{}: {e}", attributes::attribute_name(a.typ)),
            })
            .collect();
        l.field("attributes", &attrs).finish()
    }
}

// ANCHOR: is_stun
/// True when `buf` starts like a STUN message (RFC 7983 demultiplexing plus the
/// magic cookie): a cheap test before [`Message::parse`].
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC_COOKIE.to_be_bytes()
}
// ANCHOR_END: is_stun

impl<'a> Message<'a> {
    /// Decodes a message that fills the whole datagram `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated {
                what: "header",
                offset: 0,
                needed: HEADER_LEN,
                got: buf.len(),
            });
        }
        // RFC 8489 §5: "The most significant 2 bits of every STUN message MUST be zeroes."
        if buf[0] & 0xC0 != 0 {
            return Err(Error::BadHeader("the two top bits are not zero"));
        }
        if buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(Error::BadHeader("wrong magic cookie"));
        }
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        // RFC 8489 §5: the length excludes the header and is a multiple of 4.
        if length % 4 != 0 {
            return Err(Error::BadHeader("message length is not a multiple of 4"));
        }
        if buf.len() < HEADER_LEN + length {
            return Err(Error::Truncated {
                what: "message body",
                offset: HEADER_LEN,
                needed: length,
                got: buf.len() - HEADER_LEN,
            });
        }
        if buf.len() > HEADER_LEN + length {
            return Err(Error::BadHeader(
                "datagram is longer than the message length says",
            ));
        }
        let typ = MessageType::from_u16(u16::from_be_bytes([buf[0], buf[1]]));
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);
        let mut m = Message {
            raw: buf,
            typ,
            tid: TransactionId(tid),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
        };
        // Walk the TLVs: every one must fit, and we note where the integrity
        // attributes are.
        let mut off = HEADER_LEN;
        while off < buf.len() {
            if buf.len() - off < 4 {
                return Err(Error::Truncated {
                    what: "attribute header",
                    offset: off,
                    needed: 4,
                    got: buf.len() - off,
                });
            }
            let t = u16::from_be_bytes([buf[off], buf[off + 1]]);
            let len = usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]]));
            let padded = len + padding(len);
            if buf.len() - off - 4 < padded {
                return Err(Error::Truncated {
                    what: attributes::attribute_name(t),
                    offset: off,
                    needed: 4 + padded,
                    got: buf.len() - off,
                });
            }
            if m.fingerprint.is_none() {
                // Offsets fit u16: the message is at most 20 + 65535 bytes, and
                // an attribute header starts at least 4 bytes before the end.
                let o = off as u16;
                match t {
                    attr::MESSAGE_INTEGRITY
                        if m.integrity.is_none() && m.integrity_sha256.is_none() =>
                    {
                        if len != 20 {
                            return Err(bad_attribute(t, off, "MESSAGE-INTEGRITY is not 20 bytes"));
                        }
                        m.integrity = Some(o)
                    }
                    attr::MESSAGE_INTEGRITY_SHA256 if m.integrity_sha256.is_none() => {
                        if !(16..=32).contains(&len) || len % 4 != 0 {
                            return Err(bad_attribute(
                                t,
                                off,
                                "MESSAGE-INTEGRITY-SHA256 length is not 16..=32 and a multiple of 4",
                            ));
                        }
                        m.integrity_sha256 = Some(o)
                    }
                    attr::FINGERPRINT => {
                        if len != 4 {
                            return Err(bad_attribute(t, off, "FINGERPRINT is not 4 bytes"));
                        }
                        m.fingerprint = Some(o)
                    }
                    _ => {}
                }
            }
            off += 4 + padded;
        }
        Ok(m)
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Class and method.
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// The class.
    pub fn class(&self) -> Class {
        self.typ.class
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.typ.method
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    /// The attributes that count, in order (see the type's doc for the
    /// ordering rules).
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes {
            raw: self.raw,
            off: HEADER_LEN,
            phase: Phase::Body,
        }
    }

    /// The first attribute of type `typ`, raw.
    pub fn get(&self, typ: u16) -> Option<RawAttribute<'a>> {
        self.attributes().find(|a| a.typ == typ)
    }

    /// The first attribute of type `typ`, decoded; `Ok(None)` when absent.
    pub fn attribute(&self, typ: u16) -> Result<Option<Attribute<'a>>, Error> {
        match self.get(typ) {
            None => Ok(None),
            Some(a) => Attribute::parse(a.typ, a.value, &self.tid)
                .map(Some)
                .map_err(|reason| bad_attribute(a.typ, a.offset, reason)),
        }
    }

    /// Every attribute decoded; the first malformed one is an error. A server
    /// calls this before answering, so that it answers nothing malformed.
    pub fn validate(&self) -> Result<(), Error> {
        for a in self.attributes() {
            Attribute::parse(a.typ, a.value, &self.tid)
                .map_err(|reason| bad_attribute(a.typ, a.offset, reason))?;
        }
        Ok(())
    }

    /// The comprehension-required attribute types that `known` does not know
    /// (RFC 8489 §6.3.1: a request with any gets a 420 listing them).
    pub fn unknown_comprehension_required(
        &self,
        known: impl Fn(u16) -> bool + 'a,
    ) -> impl Iterator<Item = u16> + 'a {
        self.attributes()
            .map(|a| a.typ)
            .filter(move |&t| attributes::is_comprehension_required(t) && !known(t))
    }

    /// XOR-MAPPED-ADDRESS, if present.
    pub fn xor_mapped_address(&self) -> Result<Option<SocketAddr>, Error> {
        self.address(attr::XOR_MAPPED_ADDRESS)
    }

    /// MAPPED-ADDRESS, if present (old servers send only this one).
    pub fn mapped_address(&self) -> Result<Option<SocketAddr>, Error> {
        self.address(attr::MAPPED_ADDRESS)
    }

    /// Any of the address attributes, decoded.
    pub fn address(&self, typ: u16) -> Result<Option<SocketAddr>, Error> {
        Ok(match self.attribute(typ)? {
            Some(
                Attribute::MappedAddress(a)
                | Attribute::XorMappedAddress(a)
                | Attribute::AlternateServer(a)
                | Attribute::ResponseOrigin(a)
                | Attribute::OtherAddress(a),
            ) => Some(a),
            Some(Attribute::Other { value, .. }) => {
                // The TURN XOR-*-ADDRESS attributes share XOR-MAPPED-ADDRESS's format.
                Some(
                    attributes::parse_xor_address(value, &self.tid)
                        .map_err(|r| bad_attribute(typ, 0, r))?,
                )
            }
            _ => None,
        })
    }

    /// USERNAME, if present.
    pub fn username(&self) -> Result<Option<&'a str>, Error> {
        Ok(match self.attribute(attr::USERNAME)? {
            Some(Attribute::Username(u)) => Some(u),
            _ => None,
        })
    }

    /// ERROR-CODE, if present.
    pub fn error_code(&self) -> Result<Option<attributes::ErrorCode<'a>>, Error> {
        Ok(match self.attribute(attr::ERROR_CODE)? {
            Some(Attribute::ErrorCode(e)) => Some(e),
            _ => None,
        })
    }

    /// Whether MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 is present.
    pub fn has_integrity(&self) -> bool {
        self.integrity.is_some() || self.integrity_sha256.is_some()
    }

    /// Whether FINGERPRINT is present.
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Checks MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY
    /// (RFC 8489 §9.1.3: prefer the stronger one when both are there).
    pub fn verify_integrity(&self, key: &IntegrityKey) -> Result<(), Error> {
        if let Some(o) = self.integrity_sha256 {
            let o = usize::from(o);
            let len = usize::from(u16::from_be_bytes([self.raw[o + 2], self.raw[o + 3]]));
            let tag = &self.raw[o + 4..o + 4 + len];
            integrity::verify_sha256(self.raw, o, tag, key)
        } else if let Some(o) = self.integrity {
            let o = usize::from(o);
            let tag = &self.raw[o + 4..o + 24];
            integrity::verify_sha1(self.raw, o, tag, key)
        } else {
            Err(Error::IntegrityMissing)
        }
    }

    /// Checks FINGERPRINT; `Ok(false)` when the message has none.
    pub fn verify_fingerprint(&self) -> Result<bool, Error> {
        match self.fingerprint {
            None => Ok(false),
            Some(o) => {
                let o = usize::from(o);
                let want = u32::from_be_bytes([
                    self.raw[o + 4],
                    self.raw[o + 5],
                    self.raw[o + 6],
                    self.raw[o + 7],
                ]);
                if integrity::fingerprint(self.raw, o) == want {
                    Ok(true)
                } else {
                    Err(Error::FingerprintMismatch)
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Body,
    AfterIntegrity,
    AfterIntegritySha256,
    Done,
}

/// Iterator over the attributes of a [`Message`] that count.
#[derive(Clone)]
pub struct Attributes<'a> {
    raw: &'a [u8],
    off: usize,
    phase: Phase,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        loop {
            if self.phase == Phase::Done || self.raw.len() - self.off < 4 {
                return None;
            }
            let off = self.off;
            let b = self.raw;
            let typ = u16::from_be_bytes([b[off], b[off + 1]]);
            let len = usize::from(u16::from_be_bytes([b[off + 2], b[off + 3]]));
            let end = off + 4 + len;
            // Framing was checked by `Message::parse`; stay safe anyway.
            let value = b.get(off + 4..end)?;
            self.off = (end + padding(len)).min(b.len());
            let counts = match (self.phase, typ) {
                (Phase::Body, attr::MESSAGE_INTEGRITY) => {
                    self.phase = Phase::AfterIntegrity;
                    true
                }
                (Phase::Body | Phase::AfterIntegrity, attr::MESSAGE_INTEGRITY_SHA256) => {
                    self.phase = Phase::AfterIntegritySha256;
                    true
                }
                (_, attr::FINGERPRINT) => {
                    self.phase = Phase::Done;
                    true
                }
                (Phase::Body, _) => true,
                _ => false,
            };
            if counts {
                return Some(RawAttribute {
                    typ,
                    value,
                    offset: off,
                });
            }
        }
    }
}

/// Builds a STUN message into a caller's buffer.
///
/// Attributes are appended in order; [`MessageEncoder::message_integrity`],
/// [`MessageEncoder::message_integrity_sha256`] and
/// [`MessageEncoder::fingerprint`] come last, in that order. The header's
/// length field is kept current as attributes are added. An impossible request
/// (a value too long for its length field) is remembered and reported by
/// [`MessageEncoder::finish`], so calls can be chained.
pub struct MessageEncoder<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
    tid: TransactionId,
    pad_byte: u8,
    error: Option<Error>,
}

impl<'b> MessageEncoder<'b> {
    /// Starts a message of type `typ` at the end of `out`.
    pub fn new(out: &'b mut Vec<u8>, typ: MessageType, tid: TransactionId) -> Self {
        let start = out.len();
        out.extend_from_slice(&typ.to_u16().to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        out.extend_from_slice(&tid.0);
        MessageEncoder {
            out,
            start,
            tid,
            pad_byte: 0,
            error: None,
        }
    }

    /// The byte used for padding (zero by default). RFC 8489 §14 leaves the
    /// padding's content to the sender; the RFC 5769 vectors pad with spaces.
    pub fn padding_byte(&mut self, b: u8) -> &mut Self {
        self.pad_byte = b;
        self
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    fn set_length(&mut self, len: usize) {
        match u16::try_from(len) {
            Ok(l) => {
                self.out[self.start + 2..self.start + 4].copy_from_slice(&l.to_be_bytes());
            }
            Err(_) => {
                self.error
                    .get_or_insert(Error::Encode("message longer than 65535 bytes"));
            }
        }
    }

    fn body_len(&self) -> usize {
        self.out.len() - self.start - HEADER_LEN
    }

    /// Appends a typed attribute.
    pub fn attribute(&mut self, a: &Attribute<'_>) -> &mut Self {
        let typ = a.typ();
        let tid = self.tid;
        self.with_value(typ, |out| a.emit_value(&tid, out))
    }

    /// Appends an attribute whose value is `value`.
    pub fn raw_attribute(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.with_value(typ, |out| out.extend_from_slice(value))
    }

    /// Appends an attribute whose value `write` appends to the buffer.
    pub fn with_value(&mut self, typ: u16, write: impl FnOnce(&mut Vec<u8>)) -> &mut Self {
        let hdr = self.out.len();
        self.out.extend_from_slice(&typ.to_be_bytes());
        self.out.extend_from_slice(&[0, 0]);
        write(self.out);
        let len = self.out.len() - hdr - 4;
        match u16::try_from(len) {
            Ok(l) => self.out[hdr + 2..hdr + 4].copy_from_slice(&l.to_be_bytes()),
            Err(_) => {
                self.error
                    .get_or_insert(Error::Encode("attribute value longer than 65535 bytes"));
            }
        }
        let pad = padding(len);
        let fill = self.pad_byte;
        self.out.resize(self.out.len() + pad, fill);
        let body = self.body_len();
        self.set_length(body);
        self
    }

    /// Appends MESSAGE-INTEGRITY (RFC 8489 §14.5): HMAC-SHA1 over the message
    /// so far, with the length field already counting this attribute.
    pub fn message_integrity(&mut self, key: &IntegrityKey) -> &mut Self {
        let body = self.body_len() + 24;
        self.set_length(body);
        let tag = key.hmac_sha1(&self.out[self.start..]);
        self.out
            .extend_from_slice(&attr::MESSAGE_INTEGRITY.to_be_bytes());
        self.out.extend_from_slice(&20u16.to_be_bytes());
        self.out.extend_from_slice(&tag);
        self
    }

    /// Appends MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6), untruncated.
    pub fn message_integrity_sha256(&mut self, key: &IntegrityKey) -> &mut Self {
        let body = self.body_len() + 36;
        self.set_length(body);
        let tag = key.hmac_sha256(&self.out[self.start..]);
        self.out
            .extend_from_slice(&attr::MESSAGE_INTEGRITY_SHA256.to_be_bytes());
        self.out.extend_from_slice(&32u16.to_be_bytes());
        self.out.extend_from_slice(&tag);
        self
    }

    /// Appends FINGERPRINT (RFC 8489 §14.7): CRC-32 of the message so far, with
    /// the length field counting this attribute, XORed with 0x5354554E.
    pub fn fingerprint(&mut self) -> &mut Self {
        let body = self.body_len() + 8;
        self.set_length(body);
        let crc = integrity::fingerprint_of(&self.out[self.start..]);
        self.out.extend_from_slice(&attr::FINGERPRINT.to_be_bytes());
        self.out.extend_from_slice(&4u16.to_be_bytes());
        self.out.extend_from_slice(&crc.to_be_bytes());
        self
    }

    /// Ends the message: its length in bytes, or the first error met.
    pub fn finish(&mut self) -> Result<usize, Error> {
        match self.error.take() {
            Some(e) => {
                self.out.truncate(self.start);
                Err(e)
            }
            None => Ok(self.out.len() - self.start),
        }
    }
}
