//! The DTLS 1.3 record layer (RFC 9147 §4): the two record forms, AEAD
//! protection with AES-128-GCM, record number encryption, the reconstruction
//! of epoch and sequence number from their low bits, and the per-epoch
//! anti-replay window.
//!
//! Unprotected records (epoch 0: ClientHello, ServerHello, HelloRetryRequest,
//! plaintext alerts and ACKs) keep DTLS 1.2's 13-byte header
//! (`DTLSPlaintext`, [`crate::dtls::record::RecordHeader`]). Protected
//! records use the unified header (`DTLSCiphertext`, §4):
//!
//! ```text
//!  0 1 2 3 4 5 6 7
//! +-+-+-+-+-+-+-+-+
//! |0|0|1|C|S|L|E E|   C: connection id present (refused: we negotiate none)
//! +-+-+-+-+-+-+-+-+   S: 16-bit sequence number (else 8-bit)
//! | seq (8 or 16) |   L: 16-bit length present (else: rest of the datagram)
//! +-+-+-+-+-+-+-+-+   EE: the epoch's two low bits
//! | length (opt.) |
//! +-+-+-+-+-+-+-+-+
//! /  encrypted    /   AEAD(DTLSInnerPlaintext = content || type || zeros)
//! /  record       /
//! +-+-+-+-+-+-+-+-+
//! ```
//!
//! On the wire the sequence bits are masked with AES-ECB(sn_key,
//! ciphertext[0..16]) (§4.2.3); the AEAD's additional data is the header
//! *before* that masking, and its nonce is the write IV XOR the full 64-bit
//! sequence number (§4, RFC 8446 §5.3; the epoch is not in it).
//!
//! [`RecordLayer`] keeps the epochs: it writes DTLSPlaintext in epoch 0 and
//! DTLSCiphertext above, and on receipt picks the newest epoch with the
//! record's epoch bits, unmasks and reconstructs the sequence number,
//! checks the replay window, decrypts, and marks the window. Records of the
//! next epoch wait (bounded) for its keys (§4.2.1); records that fail are
//! dropped and counted, never answered (§4.5.2); the AEAD limits of §4.5.3
//! are kept.

use ring::aead;
use ring::aead::quic::{AES_128, HeaderProtectionKey};

use super::key_schedule::{IV_LEN, KEY_LEN, TrafficKeys};
use crate::dtls::Error;
use crate::dtls::record::{self as record12, ContentType, RECORD_HEADER_LEN, ReplayWindow};

/// ContentType ack (RFC 9147 §7): the handshake's acknowledgements.
pub const CONTENT_TYPE_ACK: u8 = 26;

/// The AEAD tag (AES-128-GCM).
pub const TAG_LEN: usize = 16;

/// RFC 8446 §5.4: DTLSInnerPlaintext is at most 2^14 + 1 bytes.
pub const MAX_INNER_PLAINTEXT_LEN: usize = (1 << 14) + 1;

/// RFC 8446 §5.2: an encrypted record is at most 2^14 + 256 bytes.
pub const MAX_ENCRYPTED_LEN: usize = (1 << 14) + 256;

/// RFC 9147 §4.2.3: record number encryption samples 16 bytes of ciphertext;
/// shorter records are refused.
pub const MIN_ENCRYPTED_LEN: usize = 16;

/// The largest unified header: flags, 16-bit sequence number, length.
pub const MAX_UNIFIED_HEADER_LEN: usize = 5;

/// Epochs whose read keys are kept at once: the current one and a few
/// before it, for records reordered across a key change (RFC 9147 §4.2.1).
pub const MAX_READ_EPOCHS: usize = 4;

/// A record's full number, as the ACK message and the AEAD nonce use it
/// (RFC 9147 §4: `struct { uint64 epoch; uint64 sequence_number; }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordNumber {
    /// The epoch.
    pub epoch: u64,
    /// The sequence number within the epoch.
    pub sequence: u64,
}

/// The S bit: how many low bits of the sequence number travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeqLen {
    /// 8 bits (S = 0).
    Eight,
    /// 16 bits (S = 1).
    Sixteen,
}

impl SeqLen {
    /// Bytes on the wire.
    pub fn bytes(self) -> usize {
        match self {
            SeqLen::Eight => 1,
            SeqLen::Sixteen => 2,
        }
    }

    fn bits(self) -> u32 {
        8 * self.bytes() as u32
    }
}

/// How a protected record's header is written: sequence number size and
/// whether the length is present (only the last record of a datagram may
/// leave it out, RFC 9147 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HeaderForm {
    /// The S bit.
    pub seq_len: SeqLen,
    /// The L bit.
    pub with_length: bool,
}

impl HeaderForm {
    /// 16-bit sequence number with a length: what we send by default (it
    /// tolerates the most loss and lets any record be followed by another).
    pub const FULL: HeaderForm = HeaderForm {
        seq_len: SeqLen::Sixteen,
        with_length: true,
    };

    /// Bytes of this header form.
    pub fn len(self) -> usize {
        1 + self.seq_len.bytes() + if self.with_length { 2 } else { 0 }
    }

    /// Never empty (clippy's `len` without `is_empty`).
    pub fn is_empty(self) -> bool {
        false
    }
}

/// A DTLSCiphertext unified header (RFC 9147 §4) as parsed from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UnifiedHeader {
    /// Sequence number size and length presence.
    pub form: HeaderForm,
    /// The epoch's two low bits (EE).
    pub epoch_bits: u8,
    /// The sequence number's low 8 or 16 bits as on the wire (masked by
    /// record number encryption until [`RecordProtection::unmask`]).
    pub sequence_bits: u16,
    /// The encrypted record's length: from the header when L = 1, else the
    /// rest of the datagram.
    pub length: u16,
}

/// Fixed bits `001` of the unified header's first byte.
const FIXED_BITS: u8 = 0b0010_0000;
const C_BIT: u8 = 0x10;
const S_BIT: u8 = 0x08;
const L_BIT: u8 = 0x04;

impl UnifiedHeader {
    /// Whether a record's first byte starts a DTLSCiphertext (RFC 9147 §4.1:
    /// the top three bits are 001).
    pub fn is_ciphertext(first: u8) -> bool {
        first & 0b1110_0000 == FIXED_BITS
    }

    /// Bytes of the header on the wire.
    pub fn len(&self) -> usize {
        self.form.len()
    }

    /// Never empty (clippy's `len` without `is_empty`).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the header (the length field, when present, is `self.length`).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut flags = FIXED_BITS | (self.epoch_bits & 0x03);
        if self.form.seq_len == SeqLen::Sixteen {
            flags |= S_BIT;
        }
        if self.form.with_length {
            flags |= L_BIT;
        }
        out.push(flags);
        match self.form.seq_len {
            SeqLen::Eight => out.push(self.sequence_bits as u8),
            SeqLen::Sixteen => out.extend_from_slice(&self.sequence_bits.to_be_bytes()),
        }
        if self.form.with_length {
            out.extend_from_slice(&self.length.to_be_bytes());
        }
    }

    /// Parses a header at the start of `buf` (the rest of a datagram),
    /// returning it and its length in bytes. A length-less header takes the
    /// rest of `buf` as its record.
    pub fn parse(buf: &[u8]) -> Result<(Self, usize), Error> {
        let Some(&flags) = buf.first() else {
            return Err(Error::Truncated {
                what: "unified header",
                offset: 0,
                needed: 1,
                got: 0,
            });
        };
        if !Self::is_ciphertext(flags) {
            return Err(Error::InvalidValue {
                what: "unified header fixed bits (001)",
                value: flags.into(),
            });
        }
        // RFC 9147 §9: a connection ID appears only once negotiated; we
        // negotiate none, so a record carrying one is not ours to frame.
        if flags & C_BIT != 0 {
            return Err(Error::InvalidValue {
                what: "unified header C bit (no connection id was negotiated)",
                value: flags.into(),
            });
        }
        let form = HeaderForm {
            seq_len: if flags & S_BIT != 0 {
                SeqLen::Sixteen
            } else {
                SeqLen::Eight
            },
            with_length: flags & L_BIT != 0,
        };
        let header_len = form.len();
        if buf.len() < header_len {
            return Err(Error::Truncated {
                what: "unified header",
                offset: 0,
                needed: header_len,
                got: buf.len(),
            });
        }
        let sequence_bits = match form.seq_len {
            SeqLen::Eight => u16::from(buf[1]),
            SeqLen::Sixteen => u16::from_be_bytes([buf[1], buf[2]]),
        };
        let rest = buf.len() - header_len;
        let length = if form.with_length {
            let at = 1 + form.seq_len.bytes();
            let length = u16::from_be_bytes([buf[at], buf[at + 1]]);
            if usize::from(length) > rest {
                return Err(Error::Truncated {
                    what: "encrypted record",
                    offset: header_len,
                    needed: length.into(),
                    got: rest,
                });
            }
            length
        } else {
            // The record is the rest of the datagram; a datagram is far
            // below 64 KiB, and anything larger is refused below anyway.
            u16::try_from(rest).map_err(|_| Error::TooLarge {
                what: "encrypted record",
                len: rest,
                max: MAX_ENCRYPTED_LEN,
            })?
        };
        if usize::from(length) > MAX_ENCRYPTED_LEN {
            return Err(Error::TooLarge {
                what: "encrypted record",
                len: length.into(),
                max: MAX_ENCRYPTED_LEN,
            });
        }
        Ok((
            UnifiedHeader {
                form,
                epoch_bits: flags & 0x03,
                sequence_bits,
                length,
            },
            header_len,
        ))
    }
}

/// A protected record as framed in a datagram; borrows the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CiphertextRecord<'a> {
    /// The parsed header (sequence bits still masked).
    pub header: UnifiedHeader,
    /// The header's bytes as received.
    pub header_bytes: &'a [u8],
    /// The encrypted record (ciphertext and tag).
    pub encrypted: &'a [u8],
}

/// One record of a DTLS 1.3 datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// DTLSPlaintext (epoch 0), DTLS 1.2's header.
    Plaintext(record12::Record<'a>),
    /// DTLSCiphertext with the unified header.
    Ciphertext(CiphertextRecord<'a>),
}

/// Splits a datagram into DTLS 1.3 records, demultiplexing each by its first
/// byte (RFC 9147 §4.1): alert (21), handshake (22) and ack (26) are
/// DTLSPlaintext; `001xxxxx` is DTLSCiphertext; anything else ends the
/// datagram with an error (it cannot be framed, so what follows is lost).
pub fn records(datagram: &[u8]) -> Records<'_> {
    Records {
        rest: datagram,
        offset: 0,
        failed: false,
    }
}

/// Iterator returned by [`records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
    offset: usize,
    failed: bool,
}

impl<'a> Records<'a> {
    fn frame(&mut self) -> Result<Record<'a>, Error> {
        let first = self.rest[0];
        if UnifiedHeader::is_ciphertext(first) {
            let (header, header_len) = UnifiedHeader::parse(self.rest)?;
            let total = header_len + usize::from(header.length);
            let (record, rest) = self.rest.split_at(total);
            self.rest = rest;
            self.offset += total;
            return Ok(Record::Ciphertext(CiphertextRecord {
                header,
                header_bytes: &record[..header_len],
                encrypted: &record[header_len..],
            }));
        }
        match first {
            21 | 22 | CONTENT_TYPE_ACK => {
                let rec = record12::records(self.rest)
                    .next()
                    .unwrap_or(Err(Error::Misuse("empty datagram rest (bug)")))?;
                let total = RECORD_HEADER_LEN + rec.fragment.len();
                self.rest = &self.rest[total..];
                self.offset += total;
                Ok(Record::Plaintext(rec))
            }
            other => Err(Error::InvalidValue {
                what: "DTLS 1.3 record first byte",
                value: other.into(),
            }),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let r = self.frame();
        self.failed = r.is_err();
        Some(r)
    }
}

/// RFC 8446 §5.3: the per-record nonce is the write IV XOR the 64-bit
/// sequence number, left-padded to the IV's length (RFC 9147 §4: the
/// sequence number alone, not the epoch).
pub fn nonce(iv: &[u8; IV_LEN], sequence: u64) -> [u8; IV_LEN] {
    let mut n = *iv;
    for (a, b) in n[IV_LEN - 8..].iter_mut().zip(sequence.to_be_bytes()) {
        *a ^= b;
    }
    n
}

/// Removes DTLSInnerPlaintext's zero padding and returns the true content
/// type and the content (RFC 8446 §5.4: the content type is the last
/// non-zero byte; none at all is an unexpected_message).
pub fn split_inner_plaintext(inner: &[u8]) -> Result<(ContentType, &[u8]), Error> {
    let Some(at) = inner.iter().rposition(|&b| b != 0) else {
        return Err(Error::InvalidValue {
            what: "DTLSInnerPlaintext without a content type (all zeros)",
            value: 0,
        });
    };
    Ok((ContentType::from_u8(inner[at]), &inner[..at]))
}

/// One direction's DTLS 1.3 record protection for one epoch: the AEAD key,
/// its IV, and the record number encryption key.
pub struct RecordProtection {
    key: aead::LessSafeKey,
    iv: [u8; IV_LEN],
    sn: HeaderProtectionKey,
}

impl std::fmt::Debug for RecordProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordProtection(AES-128-GCM, ..)")
    }
}

impl RecordProtection {
    /// From the keys a traffic secret gives ([`TrafficKeys::derive`]).
    pub fn new(keys: &TrafficKeys) -> Result<Self, Error> {
        Self::from_parts(&keys.key, &keys.iv, &keys.sn_key)
    }

    /// From raw key, IV and sn_key.
    pub fn from_parts(
        key: &[u8; KEY_LEN],
        iv: &[u8; IV_LEN],
        sn_key: &[u8; KEY_LEN],
    ) -> Result<Self, Error> {
        let key = aead::UnboundKey::new(&aead::AES_128_GCM, key)
            .map_err(|_| Error::Crypto("AES-128-GCM key rejected"))?;
        // ring's QUIC header protection with AES_128 is exactly
        // AES-ECB(key, 16-byte sample) truncated to 5 bytes: the mask RFC
        // 9147 §4.2.3 asks for (we use its first one or two bytes).
        let sn = HeaderProtectionKey::new(&AES_128, sn_key)
            .map_err(|_| Error::Crypto("sn_key rejected"))?;
        Ok(RecordProtection {
            key: aead::LessSafeKey::new(key),
            iv: *iv,
            sn,
        })
    }

    /// RFC 9147 §4.2.3: the record number mask, AES-ECB(sn_key,
    /// ciphertext[0..16]). Refuses ciphertexts shorter than 16 bytes.
    pub fn mask(&self, encrypted: &[u8]) -> Result<[u8; 2], Error> {
        let sample = encrypted
            .get(..MIN_ENCRYPTED_LEN)
            .ok_or(Error::BadRecordMac)?;
        let m = self
            .sn
            .new_mask(sample)
            .map_err(|_| Error::Crypto("record number mask"))?;
        Ok([m[0], m[1]])
    }

    /// The sequence bits of a received header with record number encryption
    /// removed.
    pub fn unmask(&self, header: &UnifiedHeader, encrypted: &[u8]) -> Result<u16, Error> {
        let m = self.mask(encrypted)?;
        Ok(match header.form.seq_len {
            SeqLen::Eight => header.sequence_bits ^ u16::from(m[0]),
            SeqLen::Sixteen => header.sequence_bits ^ u16::from_be_bytes(m),
        })
    }

    /// AEAD-seals `content || content_type || zeros(padding)` under the
    /// nonce for `sequence` with `aad`, appending ciphertext and tag to
    /// `out`. The core of [`RecordProtection::seal`], separate so that it
    /// can be checked against TLS 1.3 vectors (same AEAD, TLS's header as AAD).
    pub fn seal_inner(
        &self,
        sequence: u64,
        aad: &[u8],
        content_type: ContentType,
        content: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let inner_len = content.len() + 1 + padding;
        if inner_len > MAX_INNER_PLAINTEXT_LEN {
            return Err(Error::TooLarge {
                what: "DTLSInnerPlaintext",
                len: inner_len,
                max: MAX_INNER_PLAINTEXT_LEN,
            });
        }
        out.reserve(inner_len + TAG_LEN);
        let start = out.len();
        out.extend_from_slice(content);
        out.push(content_type.to_u8());
        out.resize(start + inner_len, 0);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce(&self.iv, sequence)),
                aead::Aad::from(aad),
                &mut out[start..],
            )
            .map_err(|_| Error::Crypto("AEAD seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens `encrypted` in place and returns the content type and the
    /// content (a sub-slice). Any failure is [`Error::BadRecordMac`] or an
    /// invalid inner plaintext.
    pub fn open_inner<'b>(
        &self,
        sequence: u64,
        aad: &[u8],
        encrypted: &'b mut [u8],
    ) -> Result<(ContentType, &'b [u8]), Error> {
        if encrypted.len() < TAG_LEN + 1 {
            return Err(Error::BadRecordMac);
        }
        let inner = self
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce(&self.iv, sequence)),
                aead::Aad::from(aad),
                encrypted,
            )
            .map_err(|_| Error::BadRecordMac)?;
        split_inner_plaintext(inner)
    }

    /// Appends one DTLSCiphertext record to `out` (several may follow each
    /// other in one datagram; only the last may be length-less).
    ///
    /// The caller owns the numbering: each (epoch, sequence) once per key
    /// ([`RecordLayer`] does it).
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        &self,
        number: RecordNumber,
        form: HeaderForm,
        content_type: ContentType,
        content: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let encrypted_len = content.len() + 1 + padding + TAG_LEN;
        let length = u16::try_from(encrypted_len)
            .ok()
            .filter(|&l| usize::from(l) <= MAX_ENCRYPTED_LEN)
            .ok_or(Error::TooLarge {
                what: "encrypted record",
                len: encrypted_len,
                max: MAX_ENCRYPTED_LEN,
            })?;
        let seq_mask = match form.seq_len {
            SeqLen::Eight => 0xff,
            SeqLen::Sixteen => 0xffff,
        };
        let header = UnifiedHeader {
            form,
            epoch_bits: (number.epoch & 0x03) as u8,
            sequence_bits: (number.sequence & seq_mask) as u16,
            length,
        };
        // The header goes out as is; the AAD is a copy of it before the
        // sequence bits get masked (no allocation per record).
        let header_at = out.len();
        header.emit(out);
        let body_at = out.len();
        let mut aad = [0u8; MAX_UNIFIED_HEADER_LEN];
        let aad = &mut aad[..body_at - header_at];
        aad.copy_from_slice(&out[header_at..body_at]);
        self.seal_inner(number.sequence, aad, content_type, content, padding, out)?;
        // §4.2.3: mask the sequence bits with the encrypted record's first
        // 16 bytes (always there: the tag alone is 16).
        let m = self.mask(&out[body_at..])?;
        out[header_at + 1] ^= m[0];
        if form.seq_len == SeqLen::Sixteen {
            out[header_at + 2] ^= m[1];
        }
        Ok(())
    }

    /// Opens a received DTLSCiphertext whose full sequence number the caller
    /// reconstructed: the AAD is the header with the unmasked sequence bits
    /// (RFC 9147 §4). Decrypts into `scratch` (cleared first) and returns
    /// the content type and content.
    pub fn open<'s>(
        &self,
        record: &CiphertextRecord<'_>,
        sequence: u64,
        scratch: &'s mut Vec<u8>,
    ) -> Result<(ContentType, &'s [u8]), Error> {
        let mut aad = [0u8; MAX_UNIFIED_HEADER_LEN];
        let n = record.header_bytes.len().min(MAX_UNIFIED_HEADER_LEN);
        aad[..n].copy_from_slice(&record.header_bytes[..n]);
        match record.header.form.seq_len {
            SeqLen::Eight => aad[1] = sequence as u8,
            SeqLen::Sixteen => aad[1..3].copy_from_slice(&(sequence as u16).to_be_bytes()),
        }
        scratch.clear();
        scratch.extend_from_slice(record.encrypted);
        self.open_inner(sequence, &aad[..n], scratch)
    }
}

/// RFC 9147 §4.2.2: the full value whose low `bits` bits are `low` and
/// which is numerically closest to `expected` (one more than the highest
/// number deprotected so far). Never below zero.
pub fn reconstruct(expected: u64, low: u64, bits: u32) -> u64 {
    let window = 1u64 << bits;
    let mask = window - 1;
    let candidate = (expected & !mask) | (low & mask);
    let distance = |c: u64| c.abs_diff(expected);
    let mut best = candidate;
    if let Some(below) = candidate.checked_sub(window) {
        if distance(below) < distance(best) {
            best = below;
        }
    }
    if let Some(above) = candidate.checked_add(window) {
        if distance(above) < distance(best) {
            best = above;
        }
    }
    best
}

/// A record that framed, deprotected (when protected) and passed the replay
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its epoch and full sequence number (what an ACK names).
    pub number: RecordNumber,
    /// The true content type (for protected records, from inside).
    pub content_type: ContentType,
    /// The content.
    pub fragment: Vec<u8>,
}

/// Read state of one epoch.
struct ReadEpoch {
    epoch: u64,
    protection: RecordProtection,
    /// One more than the highest sequence number deprotected here.
    next: u64,
    replay: ReplayWindow,
    /// Records that failed authentication under this key (RFC 9147 §4.5.3).
    auth_failures: u64,
}

/// The sending side of one epoch.
struct WriteEpoch {
    epoch: u64,
    protection: Option<RecordProtection>,
    next: u64,
}

/// Largest sequence number sent: the DTLSPlaintext header has 48 bits, and
/// RFC 9147 §4.2.1 asks to rekey rather than wrap.
pub const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// RFC 9147 §4.5.3 and its Appendix B: records one AES-GCM key may protect
/// in DTLS (2^23) for the confidentiality margin TLS 1.3 keeps. We refuse
/// to seal more under one key.
pub const CONFIDENTIALITY_LIMIT: u64 = 1 << 23;

/// When a KeyUpdate becomes due: half the confidentiality limit, leaving
/// room for the update's round trip and retransmissions.
pub const KEY_UPDATE_DUE: u64 = CONFIDENTIALITY_LIMIT / 2;

/// Most records of a not-yet-readable epoch held at once (RFC 9147
/// §4.2.1 allows buffering them): a server's encrypted flight usually
/// shares the ServerHello's datagrams, and dropping it would cost a
/// retransmission.
pub const MAX_PENDING_RECORDS: usize = 8;

/// Earlier write epochs kept for retransmissions (0 and 2 while a flight
/// spanning them may still be resent).
pub const MAX_OLD_WRITE_EPOCHS: usize = 2;

/// Most bytes of such records held at once.
pub const MAX_PENDING_BYTES: usize = 16 * 1024;

/// RFC 9147 §4.5.3: for AEAD_AES_128_GCM, at most 2^36 records may fail
/// authentication under one key; then the connection is closed (or the
/// key, once a KeyUpdate has replaced it, dropped).
pub const INTEGRITY_LIMIT: u64 = 1 << 36;

/// The DTLS 1.3 record layer: epoch 0 in the clear, protected epochs with
/// their keys, both directions.
pub struct RecordLayer {
    write: WriteEpoch,
    /// Earlier write epochs still needed to retransmit a flight sent in
    /// them (a ServerHello in epoch 0 after the server moved to 2, a
    /// client's Finished in epoch 2 after it moved to 3: RFC 9147 §5.8
    /// retransmits records in their original epoch); at most
    /// [`MAX_OLD_WRITE_EPOCHS`].
    old_write: Vec<WriteEpoch>,
    /// Newest last; at most [`MAX_READ_EPOCHS`].
    read: Vec<ReadEpoch>,
    /// Epoch 0's replay window (DTLSPlaintext carries the full number).
    read_plain: ReplayWindow,
    /// Whether epoch-0 records are still accepted (until the handshake
    /// moves past them).
    accept_plain: bool,
    dropped: u64,
    scratch: Vec<u8>,
    /// Protected records of the epoch after the newest readable one, held
    /// until its keys come (bounded by [`MAX_PENDING_RECORDS`] and
    /// [`MAX_PENDING_BYTES`]).
    pending: Vec<Vec<u8>>,
    /// The header form of protected records we write.
    pub form: HeaderForm,
}

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLayer")
            .field("write_epoch", &self.write.epoch)
            .field(
                "read_epochs",
                &self.read.iter().map(|r| r.epoch).collect::<Vec<_>>(),
            )
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Default for RecordLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RecordLayer {
    /// A record layer in epoch 0 both ways.
    pub fn new() -> Self {
        RecordLayer {
            write: WriteEpoch {
                epoch: 0,
                protection: None,
                next: 0,
            },
            old_write: Vec::new(),
            read: Vec::new(),
            read_plain: ReplayWindow::new(),
            accept_plain: true,
            dropped: 0,
            scratch: Vec::new(),
            pending: Vec::new(),
            form: HeaderForm::FULL,
        }
    }

    /// Records dropped (unframable, undecryptable, replayed, unknown epoch).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The epoch we write in.
    pub fn write_epoch(&self) -> u64 {
        self.write.epoch
    }

    /// The number the next record we write will have.
    pub fn next_write_number(&self) -> RecordNumber {
        RecordNumber {
            epoch: self.write.epoch,
            sequence: self.write.next,
        }
    }

    /// Starts writing in `epoch` (above the current one) with these keys;
    /// sequence numbers restart at 0 (RFC 9147 §4.2).
    pub fn install_write(&mut self, epoch: u64, keys: &TrafficKeys) -> Result<(), Error> {
        if epoch <= self.write.epoch {
            return Err(Error::Misuse("write epochs only move forward"));
        }
        let old = std::mem::replace(
            &mut self.write,
            WriteEpoch {
                epoch,
                protection: Some(RecordProtection::new(keys)?),
                next: 0,
            },
        );
        if self.old_write.len() == MAX_OLD_WRITE_EPOCHS {
            self.old_write.remove(0);
        }
        self.old_write.push(old);
        Ok(())
    }

    /// Moves the current write epoch's next sequence number up to
    /// `sequence` (never down). A stateless server answers a ClientHello
    /// in the record number the hello had (as RFC 6347 §4.2.1 has it),
    /// and its ServerHello must then come after that number, or the
    /// client's replay window drops it.
    pub fn advance_write_sequence(&mut self, sequence: u64) {
        self.write.next = self.write.next.max(sequence.min(MAX_SEQUENCE));
    }

    /// Forgets the write keys of epochs below the current one (no flight
    /// sent in them needs retransmitting any more).
    pub fn drop_old_write_epochs(&mut self) {
        self.old_write.clear();
    }

    /// As [`RecordLayer::seal`], in `epoch`: the current write epoch or
    /// an earlier one still kept (to retransmit a record in the epoch it
    /// was first sent in, RFC 9147 §5.8).
    pub fn seal_in(
        &mut self,
        epoch: u64,
        content_type: ContentType,
        content: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<RecordNumber, Error> {
        if epoch == self.write.epoch {
            return self.seal(content_type, content, padding, out);
        }
        let form = self.form;
        let w = self
            .old_write
            .iter_mut()
            .find(|w| w.epoch == epoch)
            .ok_or(Error::Misuse("no write keys kept for that epoch"))?;
        Self::seal_with(w, form, content_type, content, padding, out)
    }

    /// Accepts records of `epoch` (above every epoch installed so far) with
    /// these keys. Older epochs stay readable, up to [`MAX_READ_EPOCHS`].
    pub fn install_read(&mut self, epoch: u64, keys: &TrafficKeys) -> Result<(), Error> {
        if epoch == 0 || self.read.last().is_some_and(|r| epoch <= r.epoch) {
            return Err(Error::Misuse("read epochs only move forward, above 0"));
        }
        if self.read.len() == MAX_READ_EPOCHS {
            self.read.remove(0);
        }
        self.read.push(ReadEpoch {
            epoch,
            protection: RecordProtection::new(keys)?,
            next: 0,
            replay: ReplayWindow::new(),
            auth_failures: 0,
        });
        Ok(())
    }

    /// Whether the write key has protected enough records that a KeyUpdate
    /// is due ([`KEY_UPDATE_DUE`]); sealing stops at
    /// [`CONFIDENTIALITY_LIMIT`].
    pub fn key_update_due(&self) -> bool {
        self.write.protection.is_some() && self.write.next >= KEY_UPDATE_DUE
    }

    /// Records that failed authentication under the newest read key.
    pub fn auth_failures(&self) -> u64 {
        self.read.last().map_or(0, |r| r.auth_failures)
    }

    /// Whether some read key reached the integrity limit (RFC 9147 §4.5.3):
    /// the connection must close unless a KeyUpdate already replaced that
    /// key (then drop it with [`RecordLayer::drop_read_epochs_below`]).
    pub fn integrity_limit_reached(&self) -> bool {
        self.read.iter().any(|r| r.auth_failures >= INTEGRITY_LIMIT)
    }

    /// Test hook: jumps the write sequence number (to reach the limits
    /// without sealing millions of records).
    #[cfg(test)]
    pub(crate) fn set_write_sequence(&mut self, next: u64) {
        self.write.next = next;
    }

    /// Test hook: sets the newest read key's failure count.
    #[cfg(test)]
    pub(crate) fn set_auth_failures(&mut self, n: u64) {
        if let Some(r) = self.read.last_mut() {
            r.auth_failures = n;
        }
    }

    /// Stops accepting unprotected records (epoch 0), once the handshake no
    /// longer expects any.
    pub fn close_plaintext(&mut self) {
        self.accept_plain = false;
    }

    /// Forgets read epochs below `epoch` (after the reorder allowance).
    pub fn drop_read_epochs_below(&mut self, epoch: u64) {
        self.read.retain(|r| r.epoch >= epoch);
    }

    /// Appends one record in the current write epoch to `out` (a datagram
    /// being built; records are packed back to back). In epoch 0 this is a
    /// DTLSPlaintext; above, a DTLSCiphertext in [`RecordLayer::form`]
    /// with `padding` zero bytes. Returns the record's number.
    pub fn seal(
        &mut self,
        content_type: ContentType,
        content: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<RecordNumber, Error> {
        let form = self.form;
        Self::seal_with(&mut self.write, form, content_type, content, padding, out)
    }

    fn seal_with(
        write: &mut WriteEpoch,
        form: HeaderForm,
        content_type: ContentType,
        content: &[u8],
        padding: usize,
        out: &mut Vec<u8>,
    ) -> Result<RecordNumber, Error> {
        let number = RecordNumber {
            epoch: write.epoch,
            sequence: write.next,
        };
        if number.sequence > MAX_SEQUENCE
            || (write.protection.is_some() && number.sequence >= CONFIDENTIALITY_LIMIT)
        {
            return Err(Error::Misuse(
                "this key's record limit (RFC 9147 §4.5.3) is reached: KeyUpdate first",
            ));
        }
        match &write.protection {
            None => {
                let length = u16::try_from(content.len())
                    .ok()
                    .filter(|&l| usize::from(l) <= record12::MAX_PLAINTEXT_LEN)
                    .ok_or(Error::TooLarge {
                        what: "record plaintext",
                        len: content.len(),
                        max: record12::MAX_PLAINTEXT_LEN,
                    })?;
                record12::RecordHeader {
                    content_type,
                    version: record12::DTLS_1_2,
                    epoch: 0,
                    sequence: number.sequence,
                    length,
                }
                .emit(out);
                out.extend_from_slice(content);
            }
            Some(p) => p.seal(number, form, content_type, content, padding, out)?,
        }
        write.next += 1;
        Ok(number)
    }

    /// Frames, deprotects and replay-checks every record of a datagram,
    /// appending the good ones to `out`; the others are dropped and counted
    /// (RFC 9147 §4.5.2: invalid records are silently discarded).
    pub fn receive(&mut self, datagram: &[u8], out: &mut Vec<Received>) {
        for record in records(datagram) {
            let got = match record {
                Err(_) => None,
                Ok(Record::Plaintext(r)) => self.receive_plain(&r),
                Ok(Record::Ciphertext(r)) => {
                    if self.hold_if_next_epoch(&r) {
                        continue;
                    }
                    self.receive_protected(&r)
                }
            };
            match got {
                Some(r) => out.push(r),
                None => self.dropped += 1,
            }
        }
    }

    /// Records held for an epoch whose keys were not installed yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// After [`RecordLayer::install_read`]: opens the held records the new
    /// keys can read, appending them to `out`; those of a still later epoch
    /// stay held.
    pub fn take_unlocked(&mut self, out: &mut Vec<Received>) {
        for bytes in std::mem::take(&mut self.pending) {
            let Ok((header, n)) = UnifiedHeader::parse(&bytes) else {
                continue;
            };
            let r = CiphertextRecord {
                header,
                header_bytes: &bytes[..n],
                encrypted: &bytes[n..n + usize::from(header.length)],
            };
            if self.next_epoch_bits() == Some(header.epoch_bits) {
                self.pending.push(bytes);
                continue;
            }
            match self.receive_protected(&r) {
                Some(got) => out.push(got),
                None => self.dropped += 1,
            }
        }
    }

    /// The epoch bits of the epoch after the newest readable one (2, the
    /// handshake's, before any).
    fn next_epoch_bits(&self) -> Option<u8> {
        let next = self
            .read
            .last()
            .map_or(Some(2), |e| e.epoch.checked_add(1))?;
        // Bits no installed epoch has: otherwise the record is that
        // epoch's (§4.2.2).
        let bits = (next & 0x03) as u8;
        (!self.read.iter().any(|e| (e.epoch & 0x03) as u8 == bits)).then_some(bits)
    }

    /// Holds a record of the next epoch (bounded); true if held.
    fn hold_if_next_epoch(&mut self, r: &CiphertextRecord<'_>) -> bool {
        if self.next_epoch_bits() != Some(r.header.epoch_bits) {
            return false;
        }
        let size = r.header_bytes.len() + r.encrypted.len();
        let held: usize = self.pending.iter().map(Vec::len).sum();
        if self.pending.len() >= MAX_PENDING_RECORDS || held + size > MAX_PENDING_BYTES {
            return false;
        }
        let mut bytes = Vec::with_capacity(size);
        bytes.extend_from_slice(r.header_bytes);
        bytes.extend_from_slice(r.encrypted);
        self.pending.push(bytes);
        true
    }

    fn receive_plain(&mut self, r: &record12::Record<'_>) -> Option<Received> {
        // RFC 9147 §4: DTLSPlaintext is only for epoch 0.
        if !self.accept_plain || r.header.epoch != 0 {
            return None;
        }
        let sequence = r.header.sequence;
        if !self.read_plain.check(sequence) {
            return None;
        }
        self.read_plain.mark(sequence);
        Some(Received {
            number: RecordNumber { epoch: 0, sequence },
            content_type: r.header.content_type,
            fragment: r.fragment.to_vec(),
        })
    }

    fn receive_protected(&mut self, r: &CiphertextRecord<'_>) -> Option<Received> {
        // §4.2.2: the newest epoch whose two low bits match.
        let bits = u64::from(r.header.epoch_bits);
        let e = self
            .read
            .iter_mut()
            .rev()
            .find(|e| e.epoch & 0x03 == bits)?;
        let low = e.protection.unmask(&r.header, r.encrypted).ok()?;
        let sequence = reconstruct(e.next, low.into(), r.header.form.seq_len.bits());
        if sequence > MAX_SEQUENCE || !e.replay.check(sequence) {
            return None;
        }
        let Ok((content_type, content)) = e.protection.open(r, sequence, &mut self.scratch) else {
            e.auth_failures += 1;
            return None;
        };
        // §4.5.1: only an authenticated record moves the window.
        e.replay.mark(sequence);
        e.next = e.next.max(sequence + 1);
        Some(Received {
            number: RecordNumber {
                epoch: e.epoch,
                sequence,
            },
            content_type,
            fragment: content.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests;
