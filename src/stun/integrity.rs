//! Credentials, MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.
//!
//! - Short-term credentials (RFC 8489 §9.1, used by ICE): the key is the
//!   password itself.
//! - Long-term credentials (RFC 8489 §9.2, used by TURN): the key is
//!   MD5(username ":" realm ":" password), or SHA-256 of the same with the
//!   SHA-256 password algorithm.
//!
//! Both integrity attributes are an HMAC over the message *up to* the attribute,
//! computed as if the header's length field already counted the attribute
//! itself (and nothing after it). FINGERPRINT is a CRC-32 computed the same way
//! and XORed with 0x5354554E, so that STUN stays recognisable when multiplexed.
//!
//! Not done: the OpaqueString/SASLprep normalisation of passwords (RFC 8265);
//! pass passwords already normalised (ICE passwords are plain ASCII).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

use super::attributes::PasswordAlgorithm;
use super::error::Error;
use super::message::HEADER_LEN;

/// RFC 8489 §14.7: the value FINGERPRINT's CRC is XORed with ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554E;

const CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// A key for MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256, with both HMAC
/// states keyed once so that each message costs only the hashing itself.
#[derive(Clone)]
pub struct IntegrityKey {
    key: Vec<u8>,
    sha1: Hmac<Sha1>,
    sha256: ring::hmac::Key,
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IntegrityKey(..)")
    }
}

impl IntegrityKey {
    /// A key from raw bytes.
    pub fn from_bytes(key: &[u8]) -> Self {
        IntegrityKey {
            key: key.to_vec(),
            // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
            sha1: <Hmac<Sha1> as Mac>::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length")),
            sha256: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
        }
    }

    /// Short-term credentials (RFC 8489 §9.1.1): the key is the password.
    pub fn short_term(password: &str) -> Self {
        Self::from_bytes(password.as_bytes())
    }

    /// Long-term credentials (RFC 8489 §9.2.2): the key is the hash, by the
    /// password algorithm, of `username ":" realm ":" password`.
    pub fn long_term(
        username: &str,
        realm: &str,
        password: &str,
        algorithm: PasswordAlgorithm,
    ) -> Result<Self, Error> {
        let input = [
            username.as_bytes(),
            b":",
            realm.as_bytes(),
            b":",
            password.as_bytes(),
        ];
        match algorithm {
            PasswordAlgorithm::Md5 => {
                let mut h = Md5::new();
                for part in input {
                    h.update(part);
                }
                Ok(Self::from_bytes(&h.finalize()))
            }
            PasswordAlgorithm::Sha256 => {
                let mut h = ring::digest::Context::new(&ring::digest::SHA256);
                for part in input {
                    h.update(part);
                }
                Ok(Self::from_bytes(h.finish().as_ref()))
            }
            PasswordAlgorithm::Other(_) => Err(Error::Encode("unknown password algorithm")),
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn hmac_sha1(&self, data: &[u8]) -> [u8; 20] {
        let mut mac = self.sha1.clone();
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    pub(crate) fn hmac_sha256(&self, data: &[u8]) -> [u8; 32] {
        let tag = ring::hmac::sign(&self.sha256, data);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// USERHASH (RFC 8489 §14.4): SHA-256(username ":" realm).
pub fn userhash(username: &str, realm: &str) -> [u8; 32] {
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(h.finish().as_ref());
    out
}

// ANCHOR: header_with_length
/// The header with its length field replaced by `length`.
fn header_with_length(msg: &[u8], length: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&msg[..HEADER_LEN]);
    // The caller passes an attribute offset inside a decoded message, so the
    // length fits 16 bits.
    h[2..4].copy_from_slice(&(length as u16).to_be_bytes());
    h
}
// ANCHOR_END: header_with_length

/// RFC 8489 §14.5: HMAC-SHA1 over the message up to the attribute at `at`,
/// the length field counting up to the end of that 24-byte attribute.
pub(crate) fn verify_sha1(
    msg: &[u8],
    at: usize,
    tag: &[u8],
    key: &IntegrityKey,
) -> Result<(), Error> {
    let header = header_with_length(msg, at + 24 - HEADER_LEN);
    let mut mac = key.sha1.clone();
    mac.update(&header);
    mac.update(&msg[HEADER_LEN..at]);
    // `verify_slice` compares in constant time (the `subtle` crate).
    mac.verify_slice(tag).map_err(|_| Error::IntegrityMismatch)
}

/// RFC 8489 §14.6: as MESSAGE-INTEGRITY with HMAC-SHA256; a truncated tag is
/// compared with the leading bytes of the full one.
pub(crate) fn verify_sha256(
    msg: &[u8],
    at: usize,
    tag: &[u8],
    key: &IntegrityKey,
) -> Result<(), Error> {
    let header = header_with_length(msg, at + 4 + tag.len() - HEADER_LEN);
    let mut ctx = ring::hmac::Context::with_key(&key.sha256);
    ctx.update(&header);
    ctx.update(&msg[HEADER_LEN..at]);
    let full = ctx.sign();
    // The parser admits 16..=32 bytes, so the prefix exists; compared in
    // constant time.
    match full.as_ref().get(..tag.len()) {
        Some(prefix) if constant_time_eq(prefix, tag) => Ok(()),
        _ => Err(Error::IntegrityMismatch),
    }
}

/// Whether `a == b`, in a time that depends only on their lengths, not on
/// where they first differ: a MAC compared byte by byte with an early exit
/// tells an attacker, from the answer's timing, how many leading bytes of
/// a forged tag were right. For MESSAGE-INTEGRITY-SHA256 and the TURN
/// server's nonce MACs (MESSAGE-INTEGRITY goes through `hmac`'s own
/// constant-time `verify_slice`).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

// ANCHOR: fingerprint
/// RFC 8489 §14.7: the FINGERPRINT value for the attribute at `at`.
pub(crate) fn fingerprint(msg: &[u8], at: usize) -> u32 {
    let header = header_with_length(msg, at + 8 - HEADER_LEN);
    let mut d = CRC32.digest();
    d.update(&header);
    d.update(&msg[HEADER_LEN..at]);
    d.finalize() ^ FINGERPRINT_XOR
}
// ANCHOR_END: fingerprint

/// The FINGERPRINT value for a message being built whose length field is
/// already final.
pub(crate) fn fingerprint_of(msg_so_far: &[u8]) -> u32 {
    CRC32.checksum(msg_so_far) ^ FINGERPRINT_XOR
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"xbc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
