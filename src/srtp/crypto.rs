//! The per-packet transforms: AES counter mode + HMAC-SHA1 (RFC 3711 §4.1.1,
//! §4.2) and AES-GCM (RFC 7714), and the key derivation of RFC 3711 §4.3.
//!
//! Nothing here keeps per-stream state: a [`Transform`] holds one direction's
//! session keys for SRTP or for SRTCP and is told the SSRC and index.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes128Enc, Aes256Enc, Block};
use hmac::{Hmac, Mac};
use ring::aead;
use sha1::Sha1;

use super::{Error, ProtectionProfile};

/// RFC 3711 §4.3.1 key derivation labels (the `<label>` of the PRF input).
pub(crate) mod label {
    pub const RTP_ENCRYPTION: u8 = 0x00;
    pub const RTP_AUTH: u8 = 0x01;
    pub const RTP_SALT: u8 = 0x02;
    pub const RTCP_ENCRYPTION: u8 = 0x03;
    pub const RTCP_AUTH: u8 = 0x04;
    pub const RTCP_SALT: u8 = 0x05;
}

/// The raw AES block cipher, in the two key sizes SRTP uses.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per context and never moved per packet"
)]
pub(crate) enum Aes {
    A128(Aes128Enc),
    A256(Aes256Enc),
}

impl Aes {
    /// `None` unless the key is 16 or 32 bytes.
    pub(crate) fn new(key: &[u8]) -> Option<Aes> {
        match key.len() {
            16 => Aes128Enc::new_from_slice(key).ok().map(Aes::A128),
            32 => Aes256Enc::new_from_slice(key).ok().map(Aes::A256),
            _ => None,
        }
    }

    #[inline]
    fn encrypt_blocks(&self, blocks: &mut [Block]) {
        match self {
            Aes::A128(a) => a.encrypt_blocks(blocks),
            Aes::A256(a) => a.encrypt_blocks(blocks),
        }
    }
}

/// RFC 3711 §4.1.1: XORs `data` with the AES counter-mode keystream
/// `E(k, IV) || E(k, IV + 1 mod 2^128) || …`.
///
/// Keystream blocks are made 32 at a time so that AES-NI can pipeline them,
/// and XORed in as 128-bit words.
pub(crate) fn ctr_xor(aes: &Aes, iv: [u8; 16], data: &mut [u8]) {
    const PARALLEL: usize = 32;
    let mut counter = u128::from_be_bytes(iv);
    let mut keystream = [Block::default(); PARALLEL];
    for chunk in data.chunks_mut(16 * PARALLEL) {
        let blocks = chunk.len().div_ceil(16);
        for block in keystream[..blocks].iter_mut() {
            *block = counter.to_be_bytes().into();
            counter = counter.wrapping_add(1);
        }
        aes.encrypt_blocks(&mut keystream[..blocks]);
        let mut whole = chunk.chunks_exact_mut(16);
        for (bytes, block) in (&mut whole).zip(keystream.iter()) {
            let mut word = [0u8; 16];
            word.copy_from_slice(bytes);
            let x = u128::from_ne_bytes(word) ^ u128::from_ne_bytes(block.0);
            bytes.copy_from_slice(&x.to_ne_bytes());
        }
        let tail = whole.into_remainder();
        // A partial last block uses the start of the last keystream block.
        for (b, k) in tail.iter_mut().zip(keystream[blocks - 1].iter()) {
            *b ^= *k;
        }
    }
}

/// RFC 3711 §4.3.1 and §4.3.3: the AES-CM PRF with key derivation rate 0
/// (so `r = 0`): `x = (label << 48) XOR master_salt`, output = AES-CM keystream
/// with `IV = x * 2^16`.
///
/// RFC 7714 §11: the 96-bit GCM master salt goes through the same PRF; it is
/// padded on the right to 112 bits (the layout libsrtp uses), so the label
/// still lands in byte 7 of `x`.
pub(crate) fn kdf(master: &Aes, master_salt: &[u8], label: u8, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    let n = master_salt.len().min(14);
    iv[..n].copy_from_slice(&master_salt[..n]);
    iv[7] ^= label;
    out.fill(0);
    ctr_xor(master, iv, out);
}

/// RFC 3711 §4.1.1: `IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16)`.
pub(crate) fn cm_iv(salt: &[u8; 14], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..14].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    // The 48-bit index occupies bytes 8..14.
    for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= s;
    }
    iv
}

// ANCHOR: gcm_rtp_nonce
/// RFC 7714 §8.1: `IV = (00 00 || SSRC || ROC || SEQ) XOR salt`.
pub(crate) fn gcm_rtp_nonce(salt: &[u8; 12], ssrc: u32, index: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[2..6].copy_from_slice(&ssrc.to_be_bytes());
    // ROC || SEQ is the 48-bit index.
    n[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
    for (b, s) in n.iter_mut().zip(salt) {
        *b ^= s;
    }
    n
}
// ANCHOR_END: gcm_rtp_nonce

/// RFC 7714 §9.1: `IV = (00 00 || SSRC || 00 00 || 0 || SRTCP index) XOR salt`.
pub(crate) fn gcm_rtcp_nonce(salt: &[u8; 12], ssrc: u32, index: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[2..6].copy_from_slice(&ssrc.to_be_bytes());
    n[8..12].copy_from_slice(&(index & 0x7fff_ffff).to_be_bytes());
    for (b, s) in n.iter_mut().zip(salt) {
        *b ^= s;
    }
    n
}

/// One direction's session keys for SRTP or for SRTCP.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per context and never moved per packet"
)]
pub(crate) enum Transform {
    /// AES-128 counter mode and HMAC-SHA1 truncated to `tag_len`.
    AesCm {
        aes: Aes,
        salt: [u8; 14],
        /// Keyed once; cloned per packet (a copy of the state, no allocation).
        mac: Hmac<Sha1>,
        tag_len: usize,
    },
    /// AES-GCM with a 16-byte tag.
    Gcm {
        key: aead::LessSafeKey,
        salt: [u8; 12],
    },
}

/// The E bit of the SRTCP trailer (RFC 3711 §3.4).
pub(crate) const E_BIT: u32 = 0x8000_0000;
/// GCM tag length (RFC 7714 §7).
pub(crate) const GCM_TAG_LEN: usize = 16;

impl Transform {
    /// Derives the session keys for SRTP (`rtcp == false`) or SRTCP from a
    /// master key and salt whose lengths the caller checked.
    pub(crate) fn derive(
        profile: ProtectionProfile,
        master_key: &[u8],
        master_salt: &[u8],
        rtcp: bool,
    ) -> Result<Transform, Error> {
        let master = Aes::new(master_key).ok_or(Error::BadKeyLength {
            profile,
            expected: profile.master_key_len(),
            got: master_key.len(),
        })?;
        let (enc_label, auth_label, salt_label) = if rtcp {
            (label::RTCP_ENCRYPTION, label::RTCP_AUTH, label::RTCP_SALT)
        } else {
            (label::RTP_ENCRYPTION, label::RTP_AUTH, label::RTP_SALT)
        };
        let key_len = profile.master_key_len();
        let mut key = [0u8; 32];
        kdf(&master, master_salt, enc_label, &mut key[..key_len]);
        let transform = if profile.is_aead() {
            let mut salt = [0u8; 12];
            kdf(&master, master_salt, salt_label, &mut salt);
            Transform::gcm(profile, &key[..key_len], salt)
        } else {
            let mut salt = [0u8; 14];
            kdf(&master, master_salt, salt_label, &mut salt);
            // RFC 3711 §8.2: the session authentication key is 160 bits.
            let mut auth = [0u8; 20];
            kdf(&master, master_salt, auth_label, &mut auth);
            let tag_len = if rtcp {
                profile.rtcp_tag_len()
            } else {
                profile.rtp_tag_len()
            };
            Transform::aes_cm(&key[..16], salt, &auth, tag_len)
        };
        Ok(transform)
    }

    /// An AES-CM/HMAC-SHA1 transform from session keys (used by the RFC
    /// vectors, which start from session keys).
    pub(crate) fn aes_cm(key: &[u8], salt: [u8; 14], auth: &[u8], tag_len: usize) -> Transform {
        // A 16-byte key (checked by every caller) always makes an AES-128.
        let aes = Aes::new(key).unwrap_or_else(|| unreachable!("AES-CM key is 16 bytes"));
        // HMAC accepts a key of any length; this never fails.
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(auth)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        Transform::AesCm {
            aes,
            salt,
            mac,
            tag_len,
        }
    }

    /// A GCM transform from session keys.
    pub(crate) fn gcm(profile: ProtectionProfile, key: &[u8], salt: [u8; 12]) -> Transform {
        let algorithm = if key.len() == 32 {
            &aead::AES_256_GCM
        } else {
            &aead::AES_128_GCM
        };
        // ring refuses only keys of the wrong length; the caller derived a key of
        // exactly the profile's length.
        let unbound = aead::UnboundKey::new(algorithm, key)
            .unwrap_or_else(|_| unreachable!("{profile}: session key length matches"));
        Transform::Gcm {
            key: aead::LessSafeKey::new(unbound),
            salt,
        }
    }

    /// Tag length this transform appends.
    pub(crate) fn tag_len(&self) -> usize {
        match self {
            Transform::AesCm { tag_len, .. } => *tag_len,
            Transform::Gcm { .. } => GCM_TAG_LEN,
        }
    }

    // ANCHOR: protect_rtp
    /// Protects the RTP packet in `buf` (header of `header_len` bytes) with
    /// packet index `index`, appending the tag.
    pub(crate) fn protect_rtp(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<(), Error> {
        match self {
            Transform::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                // RFC 3711 §3.3 step 5: encrypt the payload…
                ctr_xor(aes, cm_iv(salt, ssrc, index), &mut buf[header_len..]);
                // …step 7: tag = HMAC(k_a, authenticated portion || ROC).
                let roc = (index >> 16) as u32;
                let tag = rtp_hmac(mac, buf, roc);
                buf.extend_from_slice(&tag[..*tag_len]);
                Ok(())
            }
            Transform::Gcm { key, salt } => {
                // RFC 7714 §8.2: AAD is the RTP header, the payload is sealed.
                let nonce = aead::Nonce::assume_unique_for_key(gcm_rtp_nonce(salt, ssrc, index));
                let (header, payload) = buf.split_at_mut(header_len);
                let tag = key
                    .seal_in_place_separate_tag(nonce, aead::Aad::from(&*header), payload)
                    .map_err(|_| Error::TooLong)?;
                buf.extend_from_slice(tag.as_ref());
                Ok(())
            }
        }
    }
    // ANCHOR_END: protect_rtp

    /// Verifies and decrypts the SRTP packet in `buf`, removing the tag.
    /// `Err(())` means the tag did not verify. The caller checked that
    /// `buf.len() >= header_len + tag_len`. AES-CM leaves `buf` untouched on
    /// failure; GCM zeroes the encrypted payload.
    pub(crate) fn unprotect_rtp(
        &self,
        buf: &mut Vec<u8>,
        header_len: usize,
        ssrc: u32,
        index: u64,
    ) -> Result<(), ()> {
        match self {
            Transform::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                let end = buf.len() - tag_len;
                let roc = (index >> 16) as u32;
                let mut m = mac.clone();
                m.update(&buf[..end]);
                m.update(&roc.to_be_bytes());
                // Constant-time comparison of the leftmost tag_len bytes.
                m.verify_truncated_left(&buf[end..]).map_err(|_| ())?;
                ctr_xor(aes, cm_iv(salt, ssrc, index), &mut buf[header_len..end]);
                buf.truncate(end);
                Ok(())
            }
            Transform::Gcm { key, salt } => {
                let nonce = aead::Nonce::assume_unique_for_key(gcm_rtp_nonce(salt, ssrc, index));
                let (header, rest) = buf.split_at_mut(header_len);
                let plain = key
                    .open_in_place(nonce, aead::Aad::from(&*header), rest)
                    .map_err(|_| ())?
                    .len();
                buf.truncate(header_len + plain);
                Ok(())
            }
        }
    }

    /// Protects the RTCP packet in `buf` with SRTCP index `index` (31 bits),
    /// encrypting unless `encrypt` is false (E = 0, authentication only).
    pub(crate) fn protect_rtcp(
        &self,
        buf: &mut Vec<u8>,
        ssrc: u32,
        index: u32,
        encrypt: bool,
    ) -> Result<(), Error> {
        let trailer = (index & 0x7fff_ffff) | if encrypt { E_BIT } else { 0 };
        match self {
            Transform::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                // RFC 3711 §3.4: encrypt after the first 8 bytes, append E|index,
                // then the tag over everything before it.
                if encrypt {
                    ctr_xor(aes, cm_iv(salt, ssrc, u64::from(index)), &mut buf[8..]);
                }
                buf.extend_from_slice(&trailer.to_be_bytes());
                let mut m = mac.clone();
                m.update(buf);
                let tag = m.finalize().into_bytes();
                buf.extend_from_slice(&tag[..*tag_len]);
                Ok(())
            }
            Transform::Gcm { key, salt } => {
                let nonce = aead::Nonce::assume_unique_for_key(gcm_rtcp_nonce(salt, ssrc, index));
                if encrypt {
                    // RFC 7714 §9.2: AAD = header (8 bytes) || E|index.
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&trailer.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(nonce, aead::Aad::from(aad), &mut buf[8..])
                        .map_err(|_| Error::TooLong)?;
                    buf.extend_from_slice(tag.as_ref());
                    buf.extend_from_slice(&trailer.to_be_bytes());
                } else {
                    // RFC 7714 §9.3: E = 0, AAD = whole packet || E|index, no
                    // plaintext. Wire order is packet || tag || E|index.
                    buf.extend_from_slice(&trailer.to_be_bytes());
                    let tag = key
                        .seal_in_place_separate_tag(nonce, aead::Aad::from(&buf[..]), &mut [])
                        .map_err(|_| Error::TooLong)?;
                    buf.extend_from_slice(tag.as_ref());
                    let n = buf.len();
                    buf[n - 4 - GCM_TAG_LEN..].rotate_left(4);
                }
                Ok(())
            }
        }
    }

    /// Verifies (and decrypts if E = 1) the SRTCP packet in `buf`, removing
    /// the trailer and tag. The caller checked the length and read `trailer`.
    pub(crate) fn unprotect_rtcp(
        &self,
        buf: &mut Vec<u8>,
        ssrc: u32,
        trailer: u32,
    ) -> Result<(), ()> {
        let index = trailer & 0x7fff_ffff;
        let encrypted = trailer & E_BIT != 0;
        match self {
            Transform::AesCm {
                aes,
                salt,
                mac,
                tag_len,
            } => {
                let end = buf.len() - tag_len;
                let mut m = mac.clone();
                m.update(&buf[..end]);
                m.verify_truncated_left(&buf[end..]).map_err(|_| ())?;
                let body_end = end - 4;
                if encrypted {
                    let iv = cm_iv(salt, ssrc, u64::from(index));
                    ctr_xor(aes, iv, &mut buf[8..body_end]);
                }
                buf.truncate(body_end);
                Ok(())
            }
            Transform::Gcm { key, salt } => {
                let nonce = aead::Nonce::assume_unique_for_key(gcm_rtcp_nonce(salt, ssrc, index));
                let n = buf.len();
                if encrypted {
                    let mut aad = [0u8; 12];
                    aad[..8].copy_from_slice(&buf[..8]);
                    aad[8..].copy_from_slice(&trailer.to_be_bytes());
                    let plain = key
                        .open_in_place(nonce, aead::Aad::from(aad), &mut buf[8..n - 4])
                        .map_err(|_| ())?
                        .len();
                    buf.truncate(8 + plain);
                } else {
                    // Move E|index in front of the tag so that packet || E|index
                    // is one contiguous AAD; put it back if the tag is wrong.
                    let body_end = n - 4 - GCM_TAG_LEN;
                    buf[body_end..].rotate_right(4);
                    let mut tag = [0u8; GCM_TAG_LEN];
                    tag.copy_from_slice(&buf[n - GCM_TAG_LEN..]);
                    let result = key.open_in_place_separate_tag(
                        nonce,
                        aead::Aad::from(&buf[..n - GCM_TAG_LEN]),
                        aead::Tag::from(tag),
                        &mut [],
                        0..,
                    );
                    if result.is_err() {
                        buf[body_end..].rotate_left(4);
                        return Err(());
                    }
                    buf.truncate(body_end);
                }
                Ok(())
            }
        }
    }
}

/// RFC 3711 §4.2: HMAC-SHA1 over the authenticated portion and the ROC.
fn rtp_hmac(mac: &Hmac<Sha1>, authenticated: &[u8], roc: u32) -> [u8; 20] {
    let mut m = mac.clone();
    m.update(authenticated);
    m.update(&roc.to_be_bytes());
    let mut tag = [0u8; 20];
    tag.copy_from_slice(&m.finalize().into_bytes());
    tag
}
