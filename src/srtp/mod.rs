//! SRTP and SRTCP: confidentiality, integrity and replay protection for RTP and
//! RTCP (RFC 3711, with the AES-GCM transforms of RFC 7714).
//!
//! WebRTC never sends plain RTP. Once DTLS has agreed a protection profile
//! (RFC 5764 `use_srtp`) and both sides have run the keying-material exporter,
//! every RTP packet is *protected*: its payload is encrypted and a tag over the
//! header and payload is appended. The header stays readable, so routers and an
//! SFU can still see the SSRC, sequence number and timestamp.
//!
//! ```text
//!  SRTP (RFC 3711 §3.1, RFC 7714 §8)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+<+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         | |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//! |                           timestamp                           | |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//! |           synchronization source (SSRC) identifier            | |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+ |
//! |            contributing source (CSRC) identifiers             | |
//! |                    ....  [header extension]                   | |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//! |                    payload  ...  (encrypted)                  | |
//! |                               +-------------------------------+ |
//! |                               | RTP padding   | RTP pad count | |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+<+
//! ~                     [SRTP MKI] (not used here)                ~ |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//! :     authentication tag (10 or 4 bytes HMAC-SHA1, 16 GCM)      : |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+ |
//!                                   authenticated portion ----------+
//!
//!  SRTCP (RFC 3711 §3.4, RFC 7714 §9)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|    RC   |   PT=SR or RR   |             length          |
//! |                         SSRC of sender                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   rest of the (compound) RTCP packet ... (encrypted if E=1)   |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |E|                         SRTCP index                         |  AES-CM: index, then tag
//! :                   authentication tag (10 bytes)               :
//!                                                                    AES-GCM: tag (16), then E|index
//! ```
//!
//! ## What is implemented
//!
//! - Profiles (RFC 5764 §4.1.2, RFC 7714 §14.2): `SRTP_AES128_CM_HMAC_SHA1_80`
//!   (0x0001), `SRTP_AES128_CM_HMAC_SHA1_32` (0x0002), `SRTP_AEAD_AES_128_GCM`
//!   (0x0007), `SRTP_AEAD_AES_256_GCM` (0x0008); [`ProtectionProfile`] also
//!   splits the DTLS exporter output into the two directions' master keys.
//! - Key derivation (RFC 3711 §4.3 with the AES-CM PRF of §4.3.3; RFC 7714 §11
//!   for the 96-bit GCM salts; the AES-256 PRF of RFC 6188 for AES-256-GCM).
//! - AES counter mode (RFC 3711 §4.1.1) on the raw AES block of the `aes` crate,
//!   and HMAC-SHA1 tags (§4.2) over the authenticated portion and the ROC.
//! - AEAD_AES_128_GCM / AEAD_AES_256_GCM through `ring::aead`, with the IVs of
//!   RFC 7714 §8.1 (SRTP) and §9.1 (SRTCP) and the AAD of §8.2 / §9.2.
//! - The rollover counter and packet-index estimation (RFC 3711 §3.3.1,
//!   Appendix A) across sequence-number wrap; the SRTCP index and E bit (§3.4).
//! - A replay window per SSRC for SRTP and for SRTCP (§3.3.2), its size
//!   configurable ([`Config::replay_window`], 64 and up), updated only after a
//!   packet authenticated.
//! - Per-SSRC state created on demand, at most [`Config::max_streams`] SSRCs.
//! - A failed unprotect never changes the context (ROC, window, streams).
//!
//! ## What is left out
//!
//! - MKI (master key identifiers, §3.1): WebRTC negotiates keys by DTLS and
//!   never sends one.
//! - A key derivation rate other than 0 (§4.3.1): only the initial derivation.
//! - The NULL cipher and authentication-only profiles; AES-256-CM (RFC 6188)
//!   and the `_8` GCM tags; header-extension encryption (RFC 6904).
//! - Re-keying when the 2^48 SRTP / 2^31 SRTCP indices run out: the context
//!   reports [`Error::IndexExhausted`] instead.
//! - Sending the same SSRC and sequence number twice with different payloads
//!   reuses a keystream; the sender does not refuse it (RTX uses its own SSRC).
//!
//! ## How it is checked
//!
//! Unit tests beside the code: RFC 3711 Appendix B.2 (keystream) and B.3 (key
//! derivation), RFC 6188 §7.2 (AES-256 PRF), RFC 7714 §16 (SRTP) and §17
//! (SRTCP, encrypted and authentication-only) for both GCM key sizes, and
//! libsrtp's AES_CM_128_HMAC_SHA1_80 validation packet; proptests for round
//! trips across the sequence wrap, arbitrary input, flipped bits and replays.
//! `tests/srtp_libsrtp.rs` (feature `libsrtp`) shows that rtclab and libsrtp
//! produce byte-identical packets and accept each other's, for every profile.
//! `tests/srtp_alloc.rs` counts allocations on the hot path (none).
//! [`crate::speed::srtp`] gives the figures of `rtclab speed srtp`.
//!
//! ## Using it
//!
//! One [`SrtpContext`] per direction: the local sender's master key protects,
//! the remote sender's master key unprotects. Buffers are `Vec<u8>` worked on in
//! place; protecting appends the tag, so a buffer with spare capacity (16 bytes
//! is enough for every profile) never reallocates.
//!
//! ```
//! use rtclab::srtp::{Config, ProtectionProfile, SrtpContext};
//!
//! let profile = ProtectionProfile::AeadAes128Gcm;
//! let material = [7u8; 56]; // from the DTLS exporter, RFC 5764 §4.2
//! let (client, server) = profile.split_keying_material(&material)?;
//! let mut tx = SrtpContext::new(profile, client.key(), client.salt(), Config::default())?;
//! let mut rx = SrtpContext::new(profile, client.key(), client.salt(), Config::default())?;
//! # let _ = server;
//!
//! let mut packet = Vec::with_capacity(1500);
//! packet.extend_from_slice(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
//! packet.extend_from_slice(b"hello");
//! tx.protect_rtp(&mut packet)?;
//! rx.unprotect_rtp(&mut packet)?;
//! assert_eq!(&packet[12..], b"hello");
//! # Ok::<(), rtclab::srtp::Error>(())
//! ```

mod context;
mod crypto;
mod replay;

#[cfg(test)]
mod tests;

use std::fmt;

pub use context::SrtpContext;

/// An SRTP protection profile, as negotiated by DTLS `use_srtp` (RFC 5764 §4.1.2,
/// RFC 7714 §14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProtectionProfile {
    /// `SRTP_AES128_CM_HMAC_SHA1_80` (0x0001): AES-128 counter mode, 80-bit
    /// HMAC-SHA1 tags on SRTP and SRTCP.
    Aes128CmHmacSha1_80,
    /// `SRTP_AES128_CM_HMAC_SHA1_32` (0x0002): as `_80` but 32-bit SRTP tags;
    /// SRTCP keeps its 80-bit tag (RFC 5764 §4.1.2).
    Aes128CmHmacSha1_32,
    /// `SRTP_AEAD_AES_128_GCM` (0x0007): AES-128-GCM, 16-byte tags (RFC 7714).
    AeadAes128Gcm,
    /// `SRTP_AEAD_AES_256_GCM` (0x0008): AES-256-GCM, 16-byte tags (RFC 7714).
    AeadAes256Gcm,
}

impl ProtectionProfile {
    /// Every supported profile, in the order a WebRTC offer would prefer them.
    pub const ALL: [ProtectionProfile; 4] = [
        ProtectionProfile::AeadAes128Gcm,
        ProtectionProfile::AeadAes256Gcm,
        ProtectionProfile::Aes128CmHmacSha1_80,
        ProtectionProfile::Aes128CmHmacSha1_32,
    ];

    /// The profile with this RFC 5764 / RFC 7714 identifier, if supported.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            0x0001 => Some(Self::Aes128CmHmacSha1_80),
            0x0002 => Some(Self::Aes128CmHmacSha1_32),
            0x0007 => Some(Self::AeadAes128Gcm),
            0x0008 => Some(Self::AeadAes256Gcm),
            _ => None,
        }
    }

    /// The two-byte identifier carried in the DTLS `use_srtp` extension.
    pub fn id(self) -> u16 {
        match self {
            Self::Aes128CmHmacSha1_80 => 0x0001,
            Self::Aes128CmHmacSha1_32 => 0x0002,
            Self::AeadAes128Gcm => 0x0007,
            Self::AeadAes256Gcm => 0x0008,
        }
    }

    /// The name registered for the profile (`SRTP_AEAD_AES_128_GCM`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
            Self::Aes128CmHmacSha1_32 => "SRTP_AES128_CM_HMAC_SHA1_32",
            Self::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            Self::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        }
    }

    /// Length of the master key (and of the session encryption key) in bytes.
    pub fn master_key_len(self) -> usize {
        match self {
            Self::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Length of the master salt (and of the session salt) in bytes: 112 bits
    /// for AES-CM (RFC 3711 §8.2), 96 bits for GCM (RFC 7714 §12).
    pub fn master_salt_len(self) -> usize {
        if self.is_aead() { 12 } else { 14 }
    }

    /// Length of the authentication tag appended to SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Self::Aes128CmHmacSha1_80 => 10,
            Self::Aes128CmHmacSha1_32 => 4,
            Self::AeadAes128Gcm | Self::AeadAes256Gcm => 16,
        }
    }

    /// Length of the authentication tag of SRTCP packets: 80 bits for both
    /// AES-CM profiles (RFC 5764 §4.1.2), 16 bytes for GCM.
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() { 16 } else { 10 }
    }

    /// How many bytes `protect_rtp` appends: the tag.
    pub fn rtp_overhead(self) -> usize {
        self.rtp_tag_len()
    }

    /// How many bytes `protect_rtcp` appends: the tag and the 4-byte E|index.
    pub fn rtcp_overhead(self) -> usize {
        self.rtcp_tag_len() + 4
    }

    /// Whether this is an AEAD (AES-GCM) profile.
    pub fn is_aead(self) -> bool {
        matches!(self, Self::AeadAes128Gcm | Self::AeadAes256Gcm)
    }

    /// How many bytes to ask of the DTLS keying-material exporter (label
    /// `EXTRACTOR-dtls_srtp`): `2 * (key + salt)` (RFC 5764 §4.2).
    pub fn keying_material_len(self) -> usize {
        2 * (self.master_key_len() + self.master_salt_len())
    }

    /// Splits DTLS exporter output into the client's and the server's master
    /// keys. RFC 5764 §4.2: `client_write_key | server_write_key |
    /// client_write_salt | server_write_salt`. The DTLS client protects with
    /// the first and unprotects with the second; the server the other way.
    pub fn split_keying_material(self, material: &[u8]) -> Result<(MasterKey, MasterKey), Error> {
        let expected = self.keying_material_len();
        if material.len() != expected {
            return Err(Error::BadKeyingMaterialLength {
                profile: self,
                expected,
                got: material.len(),
            });
        }
        let k = self.master_key_len();
        let s = self.master_salt_len();
        let client = MasterKey::new(self, &material[..k], &material[2 * k..2 * k + s])?;
        let server = MasterKey::new(self, &material[k..2 * k], &material[2 * k + s..])?;
        Ok((client, server))
    }
}

impl fmt::Display for ProtectionProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One sender's master key and master salt, checked against a profile.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    profile: ProtectionProfile,
    key: [u8; 32],
    salt: [u8; 14],
}

impl MasterKey {
    /// Checks the lengths against `profile` and keeps a copy.
    pub fn new(profile: ProtectionProfile, key: &[u8], salt: &[u8]) -> Result<Self, Error> {
        check_lengths(profile, key, salt)?;
        let mut k = [0; 32];
        let mut s = [0; 14];
        k[..key.len()].copy_from_slice(key);
        s[..salt.len()].copy_from_slice(salt);
        Ok(MasterKey {
            profile,
            key: k,
            salt: s,
        })
    }

    /// The profile the key was made for.
    pub fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// The master key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.profile.master_key_len()]
    }

    /// The master salt bytes.
    pub fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.master_salt_len()]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("MasterKey")
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

pub(crate) fn check_lengths(
    profile: ProtectionProfile,
    key: &[u8],
    salt: &[u8],
) -> Result<(), Error> {
    if key.len() != profile.master_key_len() {
        return Err(Error::BadKeyLength {
            profile,
            expected: profile.master_key_len(),
            got: key.len(),
        });
    }
    if salt.len() != profile.master_salt_len() {
        return Err(Error::BadSaltLength {
            profile,
            expected: profile.master_salt_len(),
            got: salt.len(),
        });
    }
    Ok(())
}

/// Tunables of an [`SrtpContext`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// How many packet indices behind the highest one received are still
    /// accepted (once each): RFC 3711 §3.3.2 asks for at least 64. Applies to
    /// SRTP and SRTCP alike. Between 64 and [`Config::MAX_REPLAY_WINDOW`].
    pub replay_window: usize,
    /// How many SSRCs the context keeps state for. A packet from one more SSRC
    /// is refused with [`Error::TooManyStreams`]. At least 1.
    pub max_streams: usize,
}

impl Config {
    /// The largest replay window accepted (bits of state per SSRC and kind).
    pub const MAX_REPLAY_WINDOW: usize = 1 << 15;

    /// The defaults: a 128-packet window (as libsrtp), 1024 SSRCs.
    pub const DEFAULT: Config = Config {
        replay_window: 128,
        max_streams: 1024,
    };

    /// Returns `self` with another replay window size.
    pub fn with_replay_window(mut self, packets: usize) -> Self {
        self.replay_window = packets;
        self
    }

    /// Returns `self` with another SSRC bound.
    pub fn with_max_streams(mut self, streams: usize) -> Self {
        self.max_streams = streams;
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if !(64..=Self::MAX_REPLAY_WINDOW).contains(&self.replay_window) {
            return Err(Error::BadConfig(
                "replay_window must be between 64 and Config::MAX_REPLAY_WINDOW",
            ));
        }
        if self.max_streams == 0 {
            return Err(Error::BadConfig("max_streams must be at least 1"));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Everything that can go wrong protecting or unprotecting.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The packet is shorter than its headers, CSRCs, extension or tag say.
    Truncated {
        /// What did not fit (`"RTP header"`, `"SRTCP trailer"`, …).
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes present.
        got: usize,
    },
    /// The version field is not 2.
    BadVersion(u8),
    /// The authentication tag did not verify: corrupted, forged, or keyed
    /// differently. The context is unchanged.
    AuthenticationFailed {
        /// SSRC of the packet.
        ssrc: u32,
        /// The SRTP packet index (ROC << 16 | SEQ) or SRTCP index tried.
        index: u64,
    },
    /// This index was already received (RFC 3711 §3.3.2).
    Replayed {
        /// SSRC of the packet.
        ssrc: u32,
        /// The index seen twice.
        index: u64,
    },
    /// The index is older than the replay window reaches: it cannot be told
    /// from a replay, so it is refused (RFC 3711 §3.3.2).
    TooOld {
        /// SSRC of the packet.
        ssrc: u32,
        /// The index of the packet.
        index: u64,
        /// The highest index received so far.
        highest: u64,
    },
    /// A new SSRC arrived but the context already keeps
    /// [`Config::max_streams`] of them.
    TooManyStreams {
        /// The configured bound.
        limit: usize,
    },
    /// The rollover counter (2^32 wraps) or the 31-bit SRTCP index ran out:
    /// the keys must be renegotiated.
    IndexExhausted {
        /// SSRC of the stream.
        ssrc: u32,
    },
    /// A master key of the wrong length for the profile (API misuse).
    BadKeyLength {
        /// The profile.
        profile: ProtectionProfile,
        /// Its key length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A master salt of the wrong length for the profile (API misuse).
    BadSaltLength {
        /// The profile.
        profile: ProtectionProfile,
        /// Its salt length.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// DTLS exporter output of the wrong length for the profile (API misuse).
    BadKeyingMaterialLength {
        /// The profile.
        profile: ProtectionProfile,
        /// `2 * (key + salt)`.
        expected: usize,
        /// The length given.
        got: usize,
    },
    /// A [`Config`] value out of range (API misuse).
    BadConfig(&'static str),
    /// The packet is too long for the cipher (GCM's limit; never for a UDP
    /// datagram).
    TooLong,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, needed, got } => {
                write!(f, "SRTP: {what} needs {needed} bytes, packet has {got}")
            }
            Error::BadVersion(v) => write!(f, "SRTP: version {v}, expected 2"),
            Error::AuthenticationFailed { ssrc, index } => write!(
                f,
                "SRTP: authentication tag does not verify (SSRC {ssrc:#010x}, index {index})"
            ),
            Error::Replayed { ssrc, index } => {
                write!(
                    f,
                    "SRTP: replayed packet (SSRC {ssrc:#010x}, index {index})"
                )
            }
            Error::TooOld {
                ssrc,
                index,
                highest,
            } => write!(
                f,
                "SRTP: packet index {index} is behind the replay window (SSRC {ssrc:#010x}, highest {highest})"
            ),
            Error::TooManyStreams { limit } => {
                write!(
                    f,
                    "SRTP: new SSRC refused, the context already keeps {limit}"
                )
            }
            Error::IndexExhausted { ssrc } => write!(
                f,
                "SRTP: packet index space exhausted for SSRC {ssrc:#010x}; re-key needed"
            ),
            Error::BadKeyLength {
                profile,
                expected,
                got,
            } => write!(
                f,
                "SRTP: {profile} needs a {expected}-byte master key, got {got}"
            ),
            Error::BadSaltLength {
                profile,
                expected,
                got,
            } => write!(
                f,
                "SRTP: {profile} needs a {expected}-byte master salt, got {got}"
            ),
            Error::BadKeyingMaterialLength {
                profile,
                expected,
                got,
            } => write!(
                f,
                "SRTP: {profile} needs {expected} bytes of keying material, got {got}"
            ),
            Error::BadConfig(why) => write!(f, "SRTP: bad configuration: {why}"),
            Error::TooLong => f.write_str("SRTP: packet too long for the cipher"),
        }
    }
}

impl std::error::Error for Error {}
