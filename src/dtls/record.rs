//! The DTLS 1.2 record layer (RFC 6347 §4.1): framing, AEAD protection and
//! the anti-replay window.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  content type |    version (0xfefd = DTLS 1.2)  |     epoch   …
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! …    epoch      |           sequence number (48 bits)         …
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! …               |            length             |  fragment … |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A datagram carries one or more whole records back to back (RFC 6347
//! §4.1.1). Epoch 0 is in the clear; after ChangeCipherSpec each side's
//! records use epoch 1 and an AEAD:
//!
//! ```text
//! AES-GCM (RFC 5288 §3):  fragment = explicit_nonce[8] · ciphertext · tag[16]
//!                          nonce    = write_IV[4] · explicit_nonce[8]
//! ChaCha20 (RFC 7905 §2): fragment = ciphertext · tag[16]
//!                          nonce    = write_IV[12] XOR (0[4] · epoch[2] · seq[6])
//! AAD (RFC 5246 §6.2.3.3 with RFC 6347 §4.1.2.1's 64-bit epoch·seq):
//!          epoch[2] · seq[6] · type[1] · version[2] · plaintext length[2]
//! ```

use ring::aead;

use super::Error;
use super::codec::Reader;
use super::prf::PrfHash;

/// Bytes in a record header.
pub const RECORD_HEADER_LEN: usize = 13;

/// RFC 5246 §6.2.1: a plaintext fragment is at most 2^14 bytes.
pub const MAX_PLAINTEXT_LEN: usize = 1 << 14;

/// RFC 5246 §6.2.3: a protected fragment is at most 2^14 + 2048 bytes.
pub const MAX_CIPHERTEXT_LEN: usize = MAX_PLAINTEXT_LEN + 2048;

/// Largest sequence number (48 bits, RFC 6347 §4.1).
pub const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// The record's content type (RFC 5246 §6.2.1, RFC 6347 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// 20: switches the sender to the next epoch.
    ChangeCipherSpec,
    /// 21: warnings and fatal errors.
    Alert,
    /// 22: handshake messages.
    Handshake,
    /// 23: application data (SCTP in WebRTC).
    ApplicationData,
    /// Anything else (e.g. 24 heartbeat, 25 tls12_cid); dropped by the
    /// endpoint.
    Other(u8),
}

impl ContentType {
    /// Wire value.
    pub fn to_u8(self) -> u8 {
        match self {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
            ContentType::Other(v) => v,
        }
    }

    /// From the wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            20 => ContentType::ChangeCipherSpec,
            21 => ContentType::Alert,
            22 => ContentType::Handshake,
            23 => ContentType::ApplicationData,
            v => ContentType::Other(v),
        }
    }
}

/// DTLS 1.2 on the wire (RFC 6347 §4.1: the one's complement of 1.2).
pub const DTLS_1_2: u16 = 0xfefd;
/// DTLS 1.0 on the wire; browsers put it on the ClientHello's record.
pub const DTLS_1_0: u16 = 0xfeff;

/// A parsed record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordHeader {
    /// What the fragment carries.
    pub content_type: ContentType,
    /// Protocol version (0xfefd; 0xfeff is accepted, RFC 6347 §4.1 lets
    /// early records carry it).
    pub version: u16,
    /// Epoch: 0 before ChangeCipherSpec, +1 at each cipher change.
    pub epoch: u16,
    /// 48-bit sequence number, per epoch.
    pub sequence: u64,
    /// Fragment length.
    pub length: u16,
}

impl RecordHeader {
    /// Writes the 13 header bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    /// The 13 header bytes.
    pub fn to_bytes(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0] = self.content_type.to_u8();
        b[1..3].copy_from_slice(&self.version.to_be_bytes());
        b[3..11].copy_from_slice(&self.epoch_seq());
        b[11..13].copy_from_slice(&self.length.to_be_bytes());
        b
    }

    fn parse(r: &mut Reader<'_>) -> Result<Self, Error> {
        let content_type = ContentType::from_u8(r.u8("record content type")?);
        let version = r.u16("record version")?;
        // RFC 6347 §4.1: DTLS versions have major byte 0xfe. We accept 1.0
        // and 1.2 here; the handshake decides what is negotiated.
        if version != DTLS_1_2 && version != DTLS_1_0 {
            return Err(Error::InvalidValue {
                what: "record version",
                value: version.into(),
            });
        }
        let epoch = r.u16("record epoch")?;
        let sequence = r.u48("record sequence number")?;
        let length = r.u16("record length")?;
        if usize::from(length) > MAX_CIPHERTEXT_LEN {
            return Err(Error::TooLarge {
                what: "record",
                len: length.into(),
                max: MAX_CIPHERTEXT_LEN,
            });
        }
        Ok(RecordHeader {
            content_type,
            version,
            epoch,
            sequence,
            length,
        })
    }

    /// The 8-byte `epoch · sequence_number` that replaces TLS's implicit
    /// sequence number in the nonce and the AAD (RFC 6347 §4.1.2.1).
    fn epoch_seq(&self) -> [u8; 8] {
        ((u64::from(self.epoch) << 48) | (self.sequence & MAX_SEQUENCE)).to_be_bytes()
    }

    /// RFC 5246 §6.2.3.3: `additional_data = seq_num + type + version +
    /// length`, where length is the *plaintext* length.
    fn aad(&self, plaintext_len: usize) -> [u8; 13] {
        let mut aad = [0u8; 13];
        aad[..8].copy_from_slice(&self.epoch_seq());
        aad[8] = self.content_type.to_u8();
        aad[9..11].copy_from_slice(&self.version.to_be_bytes());
        aad[11..13].copy_from_slice(&(plaintext_len as u16).to_be_bytes());
        aad
    }
}

/// One record as found in a datagram; the fragment borrows the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The header.
    pub header: RecordHeader,
    /// The fragment (`header.length` bytes), protected or not.
    pub fragment: &'a [u8],
}

impl<'a> Record<'a> {
    /// Writes header and fragment (the header's length is taken from the
    /// fragment).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut h = self.header;
        h.length = self.fragment.len() as u16;
        h.emit(out);
        out.extend_from_slice(self.fragment);
    }
}

/// Splits a datagram into records (RFC 6347 §4.1.1: several records may
/// share a datagram, none may span two).
///
/// Yields records until the end or the first malformed header; after an
/// error the iterator ends, since the rest cannot be framed.
pub fn records(datagram: &[u8]) -> Records<'_> {
    Records {
        reader: Reader::new(datagram),
        failed: false,
    }
}

/// Iterator returned by [`records`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    reader: Reader<'a>,
    failed: bool,
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let r = RecordHeader::parse(&mut self.reader).and_then(|header| {
            let fragment = self.reader.take(header.length.into(), "record fragment")?;
            Ok(Record { header, fragment })
        });
        self.failed = r.is_err();
        Some(r)
    }
}

/// The cipher suites rtclab negotiates: ECDHE with an AEAD, the server
/// authenticated by ECDSA (ours, and most WebRTC stacks') or by RSA
/// (GStreamer's and other OpenSSL-based stacks' RSA-2048 certificates,
/// which rtclab meets as a DTLS 1.2 client only: our own certificate is
/// always ECDSA P-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (0xc02b, RFC 5289), preferred.
    EcdheEcdsaAes128GcmSha256,
    /// TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (0xc02c, RFC 5289).
    EcdheEcdsaAes256GcmSha384,
    /// TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 (0xcca9, RFC 7905).
    EcdheEcdsaChacha20Poly1305Sha256,
    /// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (0xc02f, RFC 5289).
    EcdheRsaAes128GcmSha256,
    /// TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 (0xc030, RFC 5289).
    EcdheRsaAes256GcmSha384,
    /// TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 (0xcca8, RFC 7905).
    EcdheRsaChacha20Poly1305Sha256,
    /// TLS_AES_128_GCM_SHA256 (0x1301, RFC 8446 §B.4): DTLS 1.3's suite,
    /// negotiated only by [`super::v13`] (never in [`CipherSuite::ALL`],
    /// whose suites 1.2 offers).
    Tls13Aes128GcmSha256,
}

/// How the server of a DTLS 1.2 suite proves its ECDHE share: the key type
/// its certificate must carry and that signs its ServerKeyExchange (RFC 8422
/// §2.1 ECDHE_ECDSA, §2.2 ECDHE_RSA; §5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Authentication {
    /// An ECDSA-capable certificate, ECDSA signatures.
    Ecdsa,
    /// An RSA certificate, RSA (PKCS#1 v1.5 or PSS) signatures.
    Rsa,
    /// DTLS 1.3: the suite does not fix it (RFC 8446 §4.4.2).
    Any,
}

impl CipherSuite {
    /// All DTLS 1.2 suites, most preferred first: a client offers them all,
    /// a server picks only among those its certificate can sign for
    /// ([`Self::authentication`]; rtclab's is ECDSA).
    pub const ALL: [CipherSuite; 6] = [
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        CipherSuite::EcdheEcdsaAes256GcmSha384,
        CipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
        CipherSuite::EcdheRsaAes128GcmSha256,
        CipherSuite::EcdheRsaAes256GcmSha384,
        CipherSuite::EcdheRsaChacha20Poly1305Sha256,
    ];

    /// IANA code point.
    pub fn code(self) -> u16 {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => 0xc02b,
            CipherSuite::EcdheEcdsaAes256GcmSha384 => 0xc02c,
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => 0xcca9,
            CipherSuite::EcdheRsaAes128GcmSha256 => 0xc02f,
            CipherSuite::EcdheRsaAes256GcmSha384 => 0xc030,
            CipherSuite::EcdheRsaChacha20Poly1305Sha256 => 0xcca8,
            CipherSuite::Tls13Aes128GcmSha256 => 0x1301,
        }
    }

    /// The IANA name (`TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256`, …).
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::EcdheEcdsaAes256GcmSha384 => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => {
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"
            }
            CipherSuite::EcdheRsaAes128GcmSha256 => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            CipherSuite::EcdheRsaAes256GcmSha384 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            CipherSuite::EcdheRsaChacha20Poly1305Sha256 => {
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
            }
            CipherSuite::Tls13Aes128GcmSha256 => "TLS_AES_128_GCM_SHA256",
        }
    }

    /// The suite for a code point, if we support it.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The server's certificate key and signature kind (RFC 8422 §2).
    pub fn authentication(self) -> Authentication {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256
            | CipherSuite::EcdheEcdsaAes256GcmSha384
            | CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => Authentication::Ecdsa,
            CipherSuite::EcdheRsaAes128GcmSha256
            | CipherSuite::EcdheRsaAes256GcmSha384
            | CipherSuite::EcdheRsaChacha20Poly1305Sha256 => Authentication::Rsa,
            CipherSuite::Tls13Aes128GcmSha256 => Authentication::Any,
        }
    }

    /// The PRF hash (RFC 5289 §3.2, RFC 7905 §2).
    pub fn prf_hash(self) -> PrfHash {
        match self {
            CipherSuite::EcdheEcdsaAes256GcmSha384 | CipherSuite::EcdheRsaAes256GcmSha384 => {
                PrfHash::Sha384
            }
            _ => PrfHash::Sha256,
        }
    }

    /// AEAD key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256
            | CipherSuite::EcdheRsaAes128GcmSha256
            | CipherSuite::Tls13Aes128GcmSha256 => 16,
            _ => 32,
        }
    }

    fn is_chacha20(self) -> bool {
        matches!(
            self,
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256
                | CipherSuite::EcdheRsaChacha20Poly1305Sha256
        )
    }

    /// Length of the write IV from the key block: 4 for GCM (the salt, RFC
    /// 5288 §3), 12 for ChaCha20-Poly1305 (RFC 7905 §2).
    pub fn fixed_iv_len(self) -> usize {
        if self.is_chacha20() { 12 } else { 4 }
    }

    /// Bytes of explicit nonce carried in each record: 8 for GCM, 0 for
    /// ChaCha20-Poly1305.
    pub fn explicit_nonce_len(self) -> usize {
        if self.is_chacha20() { 0 } else { 8 }
    }

    /// Bytes a protected record adds to its plaintext (explicit nonce + tag).
    pub fn overhead(self) -> usize {
        self.explicit_nonce_len() + TAG_LEN
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256
            | CipherSuite::EcdheRsaAes128GcmSha256
            | CipherSuite::Tls13Aes128GcmSha256 => &aead::AES_128_GCM,
            CipherSuite::EcdheEcdsaAes256GcmSha384 | CipherSuite::EcdheRsaAes256GcmSha384 => {
                &aead::AES_256_GCM
            }
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256
            | CipherSuite::EcdheRsaChacha20Poly1305Sha256 => &aead::CHACHA20_POLY1305,
        }
    }
}

const TAG_LEN: usize = 16;

/// One direction's record protection: an AEAD key and its write IV.
pub struct RecordProtection {
    suite: CipherSuite,
    key: aead::LessSafeKey,
    iv: [u8; 12],
}

impl std::fmt::Debug for RecordProtection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordProtection")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl RecordProtection {
    /// Builds from a key and IV out of the key block (RFC 5246 §6.3).
    pub fn new(suite: CipherSuite, key: &[u8], iv: &[u8]) -> Result<Self, Error> {
        if key.len() != suite.key_len() || iv.len() != suite.fixed_iv_len() {
            return Err(Error::Misuse("key or IV length does not fit the suite"));
        }
        let key = aead::UnboundKey::new(suite.aead(), key)
            .map_err(|_| Error::Crypto("AEAD key rejected"))?;
        let mut fixed = [0u8; 12];
        fixed[..iv.len()].copy_from_slice(iv);
        Ok(RecordProtection {
            suite,
            key: aead::LessSafeKey::new(key),
            iv: fixed,
        })
    }

    /// The suite.
    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    /// The nonce for a record. GCM: salt · explicit (we send epoch · seq as
    /// the explicit part, unique per key as RFC 5288 §3 requires). ChaCha20:
    /// IV XOR left-padded epoch · seq (RFC 7905 §2).
    fn nonce(&self, explicit: [u8; 8]) -> aead::Nonce {
        let mut n = self.iv;
        if self.suite.is_chacha20() {
            for (a, b) in n[4..].iter_mut().zip(explicit) {
                *a ^= b;
            }
        } else {
            n[4..].copy_from_slice(&explicit);
        }
        aead::Nonce::assume_unique_for_key(n)
    }

    /// Appends one protected record (header and fragment) to `out`.
    ///
    /// The caller owns the sequence numbering: each (epoch, sequence) must
    /// be used once per key. [`RecordLayer`] does this.
    pub fn seal(
        &self,
        content_type: ContentType,
        epoch: u16,
        sequence: u64,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(Error::TooLarge {
                what: "record plaintext",
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        if sequence > MAX_SEQUENCE {
            return Err(Error::Misuse("sequence number above 2^48 - 1"));
        }
        let header = RecordHeader {
            content_type,
            version: DTLS_1_2,
            epoch,
            sequence,
            length: (plaintext.len() + self.suite.overhead()) as u16,
        };
        // One reservation for header, nonce, body and tag: no reallocation
        // on the hot path when the caller reuses `out`.
        out.reserve(RECORD_HEADER_LEN + plaintext.len() + self.suite.overhead());
        header.emit(out);
        let explicit = header.epoch_seq();
        if self.suite.explicit_nonce_len() == 8 {
            out.extend_from_slice(&explicit);
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                self.nonce(explicit),
                aead::Aad::from(header.aad(plaintext.len())),
                &mut out[start..],
            )
            .map_err(|_| Error::Crypto("AEAD seal"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Decrypts a record's fragment in place and returns the plaintext, a
    /// sub-slice of `fragment`. Any failure is [`Error::BadRecordMac`]:
    /// RFC 6347 §4.1.2.7 says such records are silently discarded.
    pub fn open_in_place<'b>(
        &self,
        header: &RecordHeader,
        fragment: &'b mut [u8],
    ) -> Result<&'b mut [u8], Error> {
        let explicit_len = self.suite.explicit_nonce_len();
        let Some(plaintext_len) = fragment.len().checked_sub(explicit_len + TAG_LEN) else {
            return Err(Error::BadRecordMac);
        };
        let explicit: [u8; 8] = if explicit_len == 8 {
            let mut e = [0u8; 8];
            e.copy_from_slice(&fragment[..8]);
            e
        } else {
            header.epoch_seq()
        };
        let aad = header.aad(plaintext_len);
        let plain = self
            .key
            .open_in_place(
                self.nonce(explicit),
                aead::Aad::from(aad),
                &mut fragment[explicit_len..],
            )
            .map_err(|_| Error::BadRecordMac)?;
        Ok(plain)
    }
}

/// The anti-replay window of RFC 6347 §4.1.2.6: the highest sequence number
/// authenticated so far and a bitmap of the 64 numbers at and below it.
///
/// [`ReplayWindow::check`] before decrypting (cheap rejection);
/// [`ReplayWindow::mark`] only after the record authenticated, so forged
/// records cannot move the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest accepted sequence number, `None` before the first.
    top: Option<u64>,
    /// Bit i set: `top - i` was received.
    bitmap: u64,
}

impl ReplayWindow {
    /// Window size (RFC 6347 §4.1.2.6 suggests at least 32; 64 here).
    pub const SIZE: u64 = 64;

    /// A fresh window (for a new epoch).
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `sequence` is new and inside the window.
    pub fn check(&self, sequence: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if sequence > top => true,
            Some(top) => {
                let back = top - sequence;
                back < Self::SIZE && self.bitmap & (1 << back) == 0
            }
        }
    }

    /// Records `sequence` as received (call after authentication).
    pub fn mark(&mut self, sequence: u64) {
        match self.top {
            None => {
                self.top = Some(sequence);
                self.bitmap = 1;
            }
            Some(top) if sequence > top => {
                let shift = sequence - top;
                self.bitmap = if shift >= Self::SIZE {
                    0
                } else {
                    self.bitmap << shift
                } | 1;
                self.top = Some(sequence);
            }
            Some(top) => {
                let back = top - sequence;
                if back < Self::SIZE {
                    self.bitmap |= 1 << back;
                }
            }
        }
    }
}

/// A record that passed framing, decryption and the replay check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plaintext {
    /// Content type.
    pub content_type: ContentType,
    /// Epoch it arrived in.
    pub epoch: u16,
    /// Its sequence number.
    pub sequence: u64,
    /// Decrypted fragment.
    pub fragment: Vec<u8>,
}

struct ReadEpoch {
    epoch: u16,
    protection: Option<RecordProtection>,
    window: ReplayWindow,
}

/// Both directions of the record layer for one association: the epochs we
/// read, the epoch and sequence numbers we write, and what was dropped.
///
/// Reading keeps at most two epochs (the current one and the one before, so
/// retransmitted epoch-0 handshake records still arrive while epoch 1
/// starts); records of other epochs are dropped (buffering of a future
/// epoch's records is not implemented yet).
pub struct RecordLayer {
    read: Vec<ReadEpoch>,
    write_epoch: u16,
    write_sequence: u64,
    write_protection: Option<RecordProtection>,
    /// Write sequence of the previous epoch, for retransmitting its flight.
    previous_write: Option<(u16, u64, Option<RecordProtection>)>,
    dropped: u64,
    /// Records of the epoch after the newest readable one, kept until its
    /// keys are installed (bounded by [`MAX_FUTURE_RECORDS`] and
    /// [`MAX_FUTURE_BYTES`]).
    future: Vec<(RecordHeader, Vec<u8>)>,
    /// Buffers of opened records given back ([`RecordLayer::recycle`]),
    /// reused for the next ones: reading allocates nothing once warm.
    pool: Vec<Vec<u8>>,
}

/// Record buffers kept for reuse.
const RECORD_POOL: usize = 16;

/// Most records of a not-yet-readable epoch kept (RFC 6347 §4.1: such
/// records "MAY be buffered").
pub const MAX_FUTURE_RECORDS: usize = 8;

/// Most bytes of such records kept.
pub const MAX_FUTURE_BYTES: usize = 16 * 1024;

impl std::fmt::Debug for RecordLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordLayer")
            .field("write_epoch", &self.write_epoch)
            .field("write_sequence", &self.write_sequence)
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
    /// Epoch 0 both ways, no protection.
    pub fn new() -> Self {
        RecordLayer {
            read: vec![ReadEpoch {
                epoch: 0,
                protection: None,
                window: ReplayWindow::new(),
            }],
            write_epoch: 0,
            write_sequence: 0,
            write_protection: None,
            previous_write: None,
            dropped: 0,
            future: Vec::new(),
            pool: Vec::new(),
        }
    }

    /// Gives back the buffer of a record opened before (an application
    /// data fragment the caller is done with), to carry a later one.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < RECORD_POOL {
            self.pool.push(buf);
        }
    }

    /// Records dropped so far (malformed, unknown epoch, failed
    /// authentication, replayed).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The epoch we write in.
    pub fn write_epoch(&self) -> u16 {
        self.write_epoch
    }

    /// Installs the peer's keys for the next epoch (after its
    /// ChangeCipherSpec). The epoch before stays readable; older ones go.
    pub fn install_read(&mut self, protection: RecordProtection) {
        let next = self.read.last().map_or(0, |e| e.epoch.wrapping_add(1));
        self.read.push(ReadEpoch {
            epoch: next,
            protection: Some(protection),
            window: ReplayWindow::new(),
        });
        if self.read.len() > 2 {
            self.read.remove(0);
        }
    }

    /// Moves our writing to the next epoch with these keys (after sending
    /// ChangeCipherSpec); sequence numbers restart at 0 (RFC 6347 §4.1).
    pub fn install_write(&mut self, protection: RecordProtection) {
        let old = self.write_protection.replace(protection);
        self.previous_write = Some((self.write_epoch, self.write_sequence, old));
        self.write_epoch = self.write_epoch.wrapping_add(1);
        self.write_sequence = 0;
    }

    /// Moves the next write sequence number forward to `next` (never back).
    /// A stateless server continues after the ClientHello's record sequence
    /// number, which its HelloVerifyRequest reused (RFC 6347 §4.2.1).
    pub fn set_write_sequence(&mut self, next: u64) {
        self.write_sequence = self.write_sequence.max(next.min(MAX_SEQUENCE));
    }

    /// Appends one record in the current write epoch to `out`.
    pub fn seal(
        &mut self,
        content_type: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let epoch = self.write_epoch;
        let seq = next_sequence(&mut self.write_sequence)?;
        seal_with(
            self.write_protection.as_ref(),
            content_type,
            epoch,
            seq,
            plaintext,
            out,
        )
    }

    /// Appends one record in the previous write epoch (to retransmit a
    /// flight that straddles a ChangeCipherSpec, RFC 6347 §4.2.4); falls back
    /// to the current epoch when there is none.
    pub fn seal_previous_epoch(
        &mut self,
        content_type: ContentType,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        match &mut self.previous_write {
            Some((epoch, seq, prot)) => {
                let s = next_sequence(seq)?;
                seal_with(prot.as_ref(), content_type, *epoch, s, plaintext, out)
            }
            None => self.seal(content_type, plaintext, out),
        }
    }

    /// Parses, decrypts and replay-checks every record in a datagram,
    /// appending the good ones to `out`. Bad records are dropped silently
    /// (RFC 6347 §4.1.2.7) and counted in [`RecordLayer::dropped`]; a
    /// malformed header drops the rest of the datagram.
    pub fn receive(&mut self, datagram: &[u8], out: &mut Vec<Plaintext>) {
        for record in records(datagram) {
            let Ok(record) = record else {
                self.dropped += 1;
                return;
            };
            if let Some(p) = self.open_record(&record) {
                out.push(p);
            }
        }
    }

    /// Decrypts and replay-checks one record (from [`records`]); `None`
    /// (counted in [`RecordLayer::dropped`]) when it must be dropped. The
    /// endpoint opens a datagram's records one by one, so that keys derived
    /// from an earlier record open a later one of the same datagram.
    pub fn open_record(&mut self, record: &Record<'_>) -> Option<Plaintext> {
        let p = self.open(record);
        if p.is_none() {
            self.dropped += 1;
        }
        p
    }

    /// Counts a record dropped before it reached [`RecordLayer::open_record`]
    /// (a datagram that did not frame).
    pub fn count_dropped(&mut self) {
        self.dropped += 1;
    }

    /// After [`RecordLayer::install_read`], opens the buffered records of the
    /// epoch that just became readable and appends them to `out`.
    pub fn take_unlocked<E: Extend<Plaintext>>(&mut self, out: &mut E) {
        if self.future.is_empty() {
            return;
        }
        let newest = self.read.last().map(|e| e.epoch);
        if self.future.iter().all(|(h, _)| Some(h.epoch) != newest) {
            return;
        }
        let buffered = std::mem::take(&mut self.future);
        for (header, fragment) in buffered {
            if let Some(p) = self.open_record(&Record {
                header,
                fragment: &fragment,
            }) {
                out.extend(Some(p));
            }
        }
    }

    fn open(&mut self, record: &Record<'_>) -> Option<Plaintext> {
        let h = &record.header;
        let newest = self.read.last().map_or(0, |e| e.epoch);
        if h.epoch == newest.wrapping_add(1) {
            let bytes: usize = self.future.iter().map(|(_, f)| f.len()).sum();
            if self.future.len() < MAX_FUTURE_RECORDS
                && bytes + record.fragment.len() <= MAX_FUTURE_BYTES
            {
                self.future.push((*h, record.fragment.to_vec()));
            }
            return None;
        }
        let state = self.read.iter_mut().find(|e| e.epoch == h.epoch)?;
        if !state.window.check(h.sequence) {
            return None;
        }
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(record.fragment);
        let fragment = match &state.protection {
            None => buf,
            Some(p) => {
                let len = p.open_in_place(h, &mut buf).ok()?.len();
                let start = p.suite().explicit_nonce_len();
                buf.truncate(start + len);
                buf.drain(..start);
                buf
            }
        };
        if fragment.len() > MAX_PLAINTEXT_LEN {
            return None;
        }
        state.window.mark(h.sequence);
        Some(Plaintext {
            content_type: h.content_type,
            epoch: h.epoch,
            sequence: h.sequence,
            fragment,
        })
    }
}

fn next_sequence(seq: &mut u64) -> Result<u64, Error> {
    if *seq > MAX_SEQUENCE {
        // RFC 6347 §4.1: sequence numbers must not wrap; renegotiation is
        // refused, so the association is spent.
        return Err(Error::Misuse("record sequence numbers exhausted"));
    }
    let s = *seq;
    *seq += 1;
    Ok(s)
}

fn seal_with(
    protection: Option<&RecordProtection>,
    content_type: ContentType,
    epoch: u16,
    sequence: u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    match protection {
        Some(p) => p.seal(content_type, epoch, sequence, plaintext, out),
        None => {
            if plaintext.len() > MAX_PLAINTEXT_LEN {
                return Err(Error::TooLarge {
                    what: "record plaintext",
                    len: plaintext.len(),
                    max: MAX_PLAINTEXT_LEN,
                });
            }
            Record {
                header: RecordHeader {
                    content_type,
                    version: DTLS_1_2,
                    epoch,
                    sequence,
                    length: 0,
                },
                fragment: plaintext,
            }
            .emit(out);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::test_util::hex;
    use proptest::prelude::*;

    fn protection(suite: CipherSuite, seed: u8) -> RecordProtection {
        let key: Vec<u8> = (0..suite.key_len() as u8).map(|i| i ^ seed).collect();
        let iv: Vec<u8> = (0..suite.fixed_iv_len() as u8)
            .map(|i| i.wrapping_mul(7) ^ seed)
            .collect();
        RecordProtection::new(suite, &key, &iv).unwrap()
    }

    /// The first record of the Chromium capture (frame 5): a DTLS 1.0
    /// handshake record, epoch 0, sequence 0, 1187 bytes.
    #[test]
    fn parses_header_from_capture() {
        let mut d = hex("16 feff 0000 000000000000 04a3");
        d.extend(std::iter::repeat_n(0, 1187));
        let recs: Vec<_> = records(&d).collect();
        assert_eq!(recs.len(), 1);
        let r = recs[0].as_ref().unwrap();
        assert_eq!(r.header.content_type, ContentType::Handshake);
        assert_eq!(r.header.version, DTLS_1_0);
        assert_eq!((r.header.epoch, r.header.sequence), (0, 0));
        assert_eq!(r.fragment.len(), 1187);
    }

    #[test]
    fn several_records_per_datagram_and_truncation() {
        let mut d = Vec::new();
        for (i, body) in [&b"abc"[..], b"", b"hello"].iter().enumerate() {
            Record {
                header: RecordHeader {
                    content_type: ContentType::Handshake,
                    version: DTLS_1_2,
                    epoch: 0,
                    sequence: i as u64,
                    length: 0,
                },
                fragment: body,
            }
            .emit(&mut d);
        }
        let recs: Vec<_> = records(&d).map(|r| r.unwrap()).collect();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[2].fragment, b"hello");
        assert_eq!(recs[2].header.sequence, 2);
        let cut: Vec<_> = records(&d[..d.len() - 1]).collect();
        assert_eq!(cut.len(), 3);
        assert!(matches!(cut[2], Err(Error::Truncated { .. })));
        // A bad version stops framing.
        let mut bad = d.clone();
        bad[1] = 0x03;
        assert_eq!(records(&bad).count(), 1);
    }

    /// AES-128-GCM record built by hand per RFC 5288 / RFC 5246 §6.2.3.3,
    /// checked against an independent `ring` call: the framing (explicit
    /// nonce placement, AAD with the plaintext length) is exactly ours.
    #[test]
    fn gcm_layout() {
        let suite = CipherSuite::EcdheEcdsaAes128GcmSha256;
        let key = [0x11u8; 16];
        let salt = [1, 2, 3, 4];
        let p = RecordProtection::new(suite, &key, &salt).unwrap();
        let mut out = Vec::new();
        p.seal(ContentType::ApplicationData, 1, 5, b"ping", &mut out)
            .unwrap();
        // Header: type 23, fefd, epoch 1, seq 5, length 8 + 4 + 16.
        assert_eq!(&out[..13], &hex("17 fefd 0001 000000000005 001c")[..]);
        assert_eq!(&out[13..21], &hex("0001000000000005")[..]);
        let k = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).unwrap());
        let nonce = hex("01020304 0001000000000005");
        let aad = hex("0001000000000005 17 fefd 0004");
        let mut ct = out[21..].to_vec();
        let plain = k
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                aead::Aad::from(&aad),
                &mut ct,
            )
            .unwrap();
        assert_eq!(plain, b"ping");
    }

    /// ChaCha20-Poly1305 per RFC 7905 §2: no explicit nonce, nonce = IV XOR
    /// padded epoch·seq.
    #[test]
    fn chacha_layout() {
        let suite = CipherSuite::EcdheEcdsaChacha20Poly1305Sha256;
        let key = [0x22u8; 32];
        let iv = hex("a0a1a2a3a4a5a6a7a8a9aaab");
        let p = RecordProtection::new(suite, &key, &iv).unwrap();
        let mut out = Vec::new();
        p.seal(
            ContentType::Handshake,
            1,
            0x0102_0304_0506,
            b"fin",
            &mut out,
        )
        .unwrap();
        assert_eq!(&out[..13], &hex("16 fefd 0001 010203040506 0013")[..]);
        let k =
            aead::LessSafeKey::new(aead::UnboundKey::new(&aead::CHACHA20_POLY1305, &key).unwrap());
        // a0a1a2a3 · (a4a5a6a7a8a9aaab XOR 0001010203040506)
        let nonce = hex("a0a1a2a3 a4a4a7a5abadafad");
        let aad = hex("0001010203040506 16 fefd 0003");
        let mut ct = out[13..].to_vec();
        let plain = k
            .open_in_place(
                aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
                aead::Aad::from(&aad),
                &mut ct,
            )
            .unwrap();
        assert_eq!(plain, b"fin");
    }

    #[test]
    fn tampered_record_rejected() {
        for suite in CipherSuite::ALL {
            let p = protection(suite, 9);
            let mut out = Vec::new();
            p.seal(
                ContentType::ApplicationData,
                1,
                3,
                b"data channel",
                &mut out,
            )
            .unwrap();
            for i in 0..out.len() {
                let mut bad = out.clone();
                bad[i] ^= 0x01;
                let Some(Ok(rec)) = records(&bad).next() else {
                    continue; // header no longer frames: dropped earlier
                };
                let mut frag = rec.fragment.to_vec();
                assert_eq!(
                    p.open_in_place(&rec.header, &mut frag).map(|_| ()),
                    Err(Error::BadRecordMac),
                    "{suite:?} byte {i}"
                );
            }
            // Wrong key.
            let rec = records(&out).next().unwrap().unwrap();
            let mut frag = rec.fragment.to_vec();
            assert!(
                protection(suite, 10)
                    .open_in_place(&rec.header, &mut frag)
                    .is_err()
            );
            // Too short for a tag.
            let mut short = [0u8; 10];
            assert!(p.open_in_place(&rec.header, &mut short).is_err());
        }
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::new();
        assert!(w.check(10));
        w.mark(10);
        assert!(!w.check(10));
        assert!(w.check(9));
        assert!(w.check(11));
        w.mark(80);
        assert!(!w.check(10)); // fell off the left edge (80 - 10 >= 64)
        assert!(w.check(17)); // 80 - 17 = 63: inside, unseen
        assert!(!w.check(16));
        w.mark(17);
        assert!(!w.check(17));
        w.mark(1000);
        assert!(!w.check(80));
        assert!(w.check(999));
        assert!(!w.check(1000));
    }

    fn layers(suite: CipherSuite) -> (RecordLayer, RecordLayer) {
        let (mut a, mut b) = (RecordLayer::new(), RecordLayer::new());
        a.install_write(protection(suite, 1));
        b.install_read(protection(suite, 1));
        b.install_write(protection(suite, 2));
        a.install_read(protection(suite, 2));
        (a, b)
    }

    #[test]
    fn layer_drops_replays_and_forgeries_but_keeps_going() {
        for suite in CipherSuite::ALL {
            let (mut a, mut b) = layers(suite);
            let mut d1 = Vec::new();
            a.seal(ContentType::ApplicationData, b"one", &mut d1)
                .unwrap();
            let mut d2 = Vec::new();
            a.seal(ContentType::ApplicationData, b"two", &mut d2)
                .unwrap();
            let mut got = Vec::new();
            b.receive(&d2, &mut got);
            b.receive(&d2, &mut got); // replay
            let mut forged = d1.clone();
            let last = forged.len() - 1;
            forged[last] ^= 0x80;
            b.receive(&forged, &mut got); // tampered: dropped, window untouched
            b.receive(&d1, &mut got); // genuine, out of order: accepted
            let texts: Vec<_> = got.iter().map(|p| p.fragment.as_slice()).collect();
            assert_eq!(texts, [&b"two"[..], b"one"]);
            assert_eq!(got[0].epoch, 1);
            assert_eq!(got[0].sequence, 1);
            assert_eq!(b.dropped(), 2);
            // The other direction works too.
            let mut d = Vec::new();
            b.seal(ContentType::ApplicationData, b"back", &mut d)
                .unwrap();
            let mut back = Vec::new();
            a.receive(&d, &mut back);
            assert_eq!(back[0].fragment, b"back");
        }
    }

    #[test]
    fn epoch_zero_then_one() {
        let suite = CipherSuite::EcdheEcdsaAes128GcmSha256;
        let (mut a, mut b) = (RecordLayer::new(), RecordLayer::new());
        let mut d = Vec::new();
        a.seal(ContentType::Handshake, b"hello", &mut d).unwrap();
        a.seal(ContentType::ChangeCipherSpec, &[1], &mut d).unwrap();
        a.install_write(protection(suite, 1));
        a.seal(ContentType::Handshake, b"finished", &mut d).unwrap();
        let mut got = Vec::new();
        b.receive(&d, &mut got);
        // Epoch 1 is not installed yet: the last record is dropped.
        assert_eq!(got.len(), 2);
        b.install_read(protection(suite, 1));
        b.receive(&d, &mut got);
        // Epoch-0 records are now replays; the epoch-1 one arrives.
        assert_eq!(got.len(), 3);
        assert_eq!(got[2].fragment, b"finished");
        assert_eq!((got[2].epoch, got[2].sequence), (1, 0));
        // Retransmission in the previous epoch.
        let mut r = Vec::new();
        a.seal_previous_epoch(ContentType::Handshake, b"again", &mut r)
            .unwrap();
        let h = records(&r).next().unwrap().unwrap().header;
        assert_eq!((h.epoch, h.sequence), (0, 2));
    }

    #[test]
    fn next_epoch_records_buffered_until_keys_arrive() {
        let suite = CipherSuite::EcdheEcdsaAes128GcmSha256;
        let (mut a, mut b) = (RecordLayer::new(), RecordLayer::new());
        a.install_write(protection(suite, 1));
        let mut got = Vec::new();
        for i in 0..20u8 {
            let mut d = Vec::new();
            a.seal(ContentType::Handshake, &[i], &mut d).unwrap();
            b.receive(&d, &mut got);
        }
        assert!(got.is_empty());
        b.take_unlocked(&mut got);
        assert!(got.is_empty()); // still no keys
        b.install_read(protection(suite, 1));
        b.take_unlocked(&mut got);
        // Only the first MAX_FUTURE_RECORDS were kept.
        let firsts: Vec<u8> = got.iter().map(|p| p.fragment[0]).collect();
        assert_eq!(firsts, (0..MAX_FUTURE_RECORDS as u8).collect::<Vec<_>>());
        // Epoch 2 and beyond are not buffered.
        let mut far = Vec::new();
        RecordProtection::new(suite, &[0; 16], &[0; 4])
            .unwrap()
            .seal(ContentType::Handshake, 3, 0, b"x", &mut far)
            .unwrap();
        b.receive(&far, &mut got);
        assert!(b.future.is_empty());
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(suite in 0usize..3, ct in any::<u8>(), epoch in any::<u16>(),
                                seq in 0u64..=MAX_SEQUENCE,
                                data in proptest::collection::vec(any::<u8>(), 0..1500)) {
            let suite = CipherSuite::ALL[suite];
            let p = protection(suite, 3);
            let mut out = Vec::new();
            p.seal(ContentType::from_u8(ct), epoch, seq, &data, &mut out).unwrap();
            prop_assert_eq!(out.len(), RECORD_HEADER_LEN + data.len() + suite.overhead());
            let rec = records(&out).next().unwrap().unwrap();
            prop_assert_eq!(rec.header.epoch, epoch);
            prop_assert_eq!(rec.header.sequence, seq);
            prop_assert_eq!(rec.header.content_type, ContentType::from_u8(ct));
            let mut frag = rec.fragment.to_vec();
            let plain = p.open_in_place(&rec.header, &mut frag).unwrap();
            prop_assert_eq!(&plain[..], &data[..]);
        }

        #[test]
        fn plaintext_record_round_trip(ct in any::<u8>(), v in prop_oneof![Just(DTLS_1_0), Just(DTLS_1_2)],
                                       epoch in any::<u16>(), seq in 0u64..=MAX_SEQUENCE,
                                       data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let header = RecordHeader { content_type: ContentType::from_u8(ct), version: v, epoch,
                                        sequence: seq, length: data.len() as u16 };
            let mut out = Vec::new();
            Record { header, fragment: &data }.emit(&mut out);
            let rec = records(&out).next().unwrap().unwrap();
            prop_assert_eq!(rec, Record { header, fragment: &data });
        }

        #[test]
        fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = records(&data).count();
            let (_, mut b) = layers(CipherSuite::EcdheEcdsaAes128GcmSha256);
            let mut got = Vec::new();
            b.receive(&data, &mut got);
        }

        /// The window accepts a sequence number exactly once, and never one
        /// more than 63 below the highest.
        #[test]
        fn replay_window_model(seqs in proptest::collection::vec(0u64..200, 0..300)) {
            let mut w = ReplayWindow::new();
            let mut seen = std::collections::BTreeSet::new();
            let mut top: Option<u64> = None;
            for s in seqs {
                let fresh = !seen.contains(&s) && top.is_none_or(|t| s + 64 > t);
                prop_assert_eq!(w.check(s), fresh);
                if fresh {
                    w.mark(s);
                    seen.insert(s);
                    top = Some(top.map_or(s, |t| t.max(s)));
                }
            }
        }
    }
}
