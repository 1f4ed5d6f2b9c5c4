//! STUN errors: what was wrong on the wire, where, and what the API was asked.

use std::fmt;

/// Everything that can go wrong while decoding, verifying or building a STUN
/// message.
///
/// Variants that describe the bytes (`Truncated`, `BadHeader`, …) mean the
/// *peer* misbehaved; `Encode` means the *caller* asked for something the wire
/// cannot carry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The buffer ends before `needed` bytes were available at `offset`.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Where it started.
        offset: usize,
        /// How many bytes it needed from `offset`.
        needed: usize,
        /// How many there were from `offset`.
        got: usize,
    },
    /// The 20-byte header is not a STUN header (top bits, cookie, length).
    BadHeader(&'static str),
    /// An attribute's value does not fit its type's grammar.
    BadAttribute {
        /// The attribute type.
        typ: u16,
        /// The offset of the attribute header in the message.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 is missing or does not match.
    IntegrityMismatch,
    /// The message carries no MESSAGE-INTEGRITY(-SHA256) but one was required.
    IntegrityMissing,
    /// FINGERPRINT does not match the CRC-32 of the message.
    FingerprintMismatch,
    /// The message cannot be built as asked (API misuse).
    Encode(&'static str),
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
                "STUN {what} at offset {offset} needs {needed} bytes, {got} left"
            ),
            Error::BadHeader(why) => write!(f, "not a STUN header: {why}"),
            Error::BadAttribute {
                typ,
                offset,
                reason,
            } => write!(
                f,
                "STUN attribute {} (0x{typ:04x}) at offset {offset}: {reason}",
                super::attributes::attribute_name(*typ)
            ),
            Error::IntegrityMismatch => write!(f, "STUN MESSAGE-INTEGRITY does not match"),
            Error::IntegrityMissing => write!(f, "STUN MESSAGE-INTEGRITY is missing"),
            Error::FingerprintMismatch => write!(f, "STUN FINGERPRINT does not match"),
            Error::Encode(why) => write!(f, "cannot encode STUN message: {why}"),
        }
    }
}

impl std::error::Error for Error {}
