//! Errors of the `dtls` module.

use std::fmt;

/// What went wrong in the DTLS layer: a misbehaving peer (malformed or
/// unauthentic input) or API misuse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Input ended before a field was complete.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Offset where the field starts, within the structure being parsed.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left from `offset`.
        got: usize,
    },
    /// A structure had bytes left over after its last field.
    TrailingBytes {
        /// The structure.
        what: &'static str,
        /// Offset of the first extra byte.
        offset: usize,
        /// How many extra bytes.
        count: usize,
    },
    /// A field has a value the protocol does not allow here.
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value seen.
        value: u64,
    },
    /// A length is above what we accept (bounds our memory).
    TooLarge {
        /// The thing that is too large.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Our limit.
        max: usize,
    },
    /// A protected record failed authentication (wrong key, tampered bytes).
    BadRecordMac,
    /// A record's sequence number was already seen or is too old
    /// (RFC 6347 §4.1.2.6).
    Replayed {
        /// The record's epoch.
        epoch: u16,
        /// The record's sequence number.
        sequence: u64,
    },
    /// A certificate's DER does not have the shape we expect.
    BadCertificate(&'static str),
    /// The peer uses an algorithm (key type, curve, signature) we do not support.
    UnsupportedAlgorithm(&'static str),
    /// A signature did not verify.
    BadSignature,
    /// The peer's Finished did not match our transcript: the handshake was
    /// tampered with (or a bug); RFC 5246 §7.4.9.
    BadFinished,
    /// The peer's certificate does not match the fingerprint from the SDP.
    FingerprintMismatch,
    /// A flight was retransmitted the maximum number of times without an
    /// answer (RFC 6347 §4.2.4).
    HandshakeTimeout,
    /// The API was used in a way it does not allow (a bug in the caller).
    Misuse(&'static str),
    /// A cryptographic primitive failed where it should not (e.g. key generation).
    Crypto(&'static str),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated {
                what,
                offset,
                needed,
                got,
            } => write!(
                f,
                "truncated {what} at offset {offset}: needs {needed} bytes, {got} left"
            ),
            Error::TrailingBytes {
                what,
                offset,
                count,
            } => write!(
                f,
                "{count} unexpected bytes after {what} at offset {offset}"
            ),
            Error::InvalidValue { what, value } => write!(f, "invalid {what}: {value}"),
            Error::TooLarge { what, len, max } => {
                write!(f, "{what} too large: {len} bytes, limit {max}")
            }
            Error::BadRecordMac => f.write_str("record failed authentication"),
            Error::Replayed { epoch, sequence } => {
                write!(f, "replayed record: epoch {epoch}, sequence {sequence}")
            }
            Error::BadCertificate(why) => write!(f, "bad certificate: {why}"),
            Error::UnsupportedAlgorithm(what) => write!(f, "unsupported algorithm: {what}"),
            Error::BadSignature => f.write_str("signature verification failed"),
            Error::BadFinished => {
                f.write_str("Finished verify_data mismatch: the handshake was altered")
            }
            Error::FingerprintMismatch => {
                f.write_str("peer certificate does not match the expected fingerprint")
            }
            Error::HandshakeTimeout => {
                f.write_str("handshake timed out: the peer stopped answering")
            }
            Error::Misuse(why) => write!(f, "API misuse: {why}"),
            Error::Crypto(why) => write!(f, "crypto failure: {why}"),
        }
    }
}

impl std::error::Error for Error {}
