//! The TLS 1.2 pseudorandom function and the key schedule built on it.
//!
//! Everything secret in a DTLS 1.2 connection comes out of one function,
//! `PRF(secret, label, seed)` (RFC 5246 §5), fed with different labels:
//!
//! ```text
//!  pre_master_secret (ECDHE shared x-coordinate)
//!        │  PRF(pms, "extended master secret", session_hash)        RFC 7627 §4
//!        │  (or "master secret", client_random + server_random)     RFC 5246 §8.1
//!        ▼
//!  master_secret (48 bytes)
//!        ├─ PRF(ms, "key expansion", server_random + client_random) RFC 5246 §6.3
//!        │     → client_write_key · server_write_key · client_write_IV · server_write_IV
//!        ├─ PRF(ms, "client finished" / "server finished", Hash(handshake))  §7.4.9
//!        │     → verify_data (12 bytes)
//!        └─ PRF(ms, "EXTRACTOR-dtls_srtp", client_random + server_random)   RFC 5705 §4
//!              → client SRTP key · server SRTP key · client salt · server salt  RFC 5764 §4.2
//! ```
//!
//! The hash inside the PRF is the cipher suite's: SHA-256 for the
//! `_SHA256` suites, SHA-384 for `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`
//! (RFC 5246 §5, RFC 5289 §3.2). Only HMAC comes from `ring`.

use ring::{digest, hmac};
use std::fmt;

use super::Error;

/// The hash a cipher suite names for its PRF and its handshake transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrfHash {
    /// SHA-256 (`*_SHA256` suites).
    Sha256,
    /// SHA-384 (`*_SHA384` suites).
    Sha384,
}

impl PrfHash {
    fn hmac_algorithm(self) -> hmac::Algorithm {
        match self {
            PrfHash::Sha256 => hmac::HMAC_SHA256,
            PrfHash::Sha384 => hmac::HMAC_SHA384,
        }
    }

    /// The `ring` digest algorithm, for the handshake transcript hash.
    pub fn digest_algorithm(self) -> &'static digest::Algorithm {
        match self {
            PrfHash::Sha256 => &digest::SHA256,
            PrfHash::Sha384 => &digest::SHA384,
        }
    }

    /// Output length of the hash in bytes (32 or 48).
    pub fn output_len(self) -> usize {
        self.digest_algorithm().output_len()
    }
}

/// `P_hash(secret, seed)` of RFC 5246 §5, filling all of `out`:
///
/// ```text
/// A(0) = seed;  A(i) = HMAC_hash(secret, A(i-1))
/// P_hash = HMAC_hash(secret, A(1) + seed) + HMAC_hash(secret, A(2) + seed) + ...
/// ```
///
/// The last block is truncated to fit `out`.
pub fn p_hash(hash: PrfHash, secret: &[u8], seed_parts: &[&[u8]], out: &mut [u8]) {
    let key = hmac::Key::new(hash.hmac_algorithm(), secret);
    // A(1) = HMAC(secret, seed).
    let mut ctx = hmac::Context::with_key(&key);
    for part in seed_parts {
        ctx.update(part);
    }
    let mut a = ctx.sign();
    for chunk in out.chunks_mut(hash.output_len()) {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        for part in seed_parts {
            ctx.update(part);
        }
        let block = ctx.sign();
        chunk.copy_from_slice(&block.as_ref()[..chunk.len()]);
        a = hmac::sign(&key, a.as_ref());
    }
}

/// `PRF(secret, label, seed) = P_<hash>(secret, label + seed)` (RFC 5246 §5),
/// filling all of `out`. The label is ASCII without a terminating NUL.
pub fn prf(hash: PrfHash, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    p_hash(hash, secret, &[label, seed], out);
}

/// Same as [`prf`] with the seed given in two parts (`client_random +
/// server_random` and friends), so callers need not concatenate.
fn prf2(hash: PrfHash, secret: &[u8], label: &[u8], seed1: &[u8], seed2: &[u8], out: &mut [u8]) {
    p_hash(hash, secret, &[label, seed1, seed2], out);
}

/// The 48-byte master secret. Its `Debug` does not print the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterSecret(pub [u8; 48]);

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterSecret(..)")
    }
}

impl MasterSecret {
    /// RFC 5246 §8.1: `master_secret = PRF(pre_master_secret, "master secret",
    /// ClientHello.random + ServerHello.random)[0..47]`.
    ///
    /// Used only when the peer did not negotiate `extended_master_secret`.
    pub fn derive(
        hash: PrfHash,
        pre_master_secret: &[u8],
        client_random: &[u8; 32],
        server_random: &[u8; 32],
    ) -> Self {
        let mut ms = [0u8; 48];
        prf2(
            hash,
            pre_master_secret,
            b"master secret",
            client_random,
            server_random,
            &mut ms,
        );
        MasterSecret(ms)
    }

    /// RFC 7627 §4: `master_secret = PRF(pre_master_secret, "extended master
    /// secret", session_hash)[0..47]`, where `session_hash` is the transcript
    /// hash of every handshake message up to and including ClientKeyExchange.
    /// It binds the master secret to the whole handshake (no triple-handshake
    /// attack).
    pub fn derive_extended(hash: PrfHash, pre_master_secret: &[u8], session_hash: &[u8]) -> Self {
        let mut ms = [0u8; 48];
        prf(
            hash,
            pre_master_secret,
            b"extended master secret",
            session_hash,
            &mut ms,
        );
        MasterSecret(ms)
    }

    /// The key block of RFC 5246 §6.3:
    ///
    /// ```text
    /// key_block = PRF(master_secret, "key expansion",
    ///                 server_random + client_random)     (note the order)
    /// client_write_MAC_key · server_write_MAC_key   (empty for AEAD suites)
    /// client_write_key · server_write_key
    /// client_write_IV · server_write_IV
    /// ```
    ///
    /// `iv_len` is 4 for AES-GCM (the implicit part of the nonce, RFC 5288 §3)
    /// and 12 for ChaCha20-Poly1305 (RFC 7905 §2).
    pub fn key_block(
        &self,
        hash: PrfHash,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        key_len: usize,
        iv_len: usize,
    ) -> KeyBlock {
        let mut block = vec![0u8; 2 * key_len + 2 * iv_len];
        prf2(
            hash,
            &self.0,
            b"key expansion",
            server_random,
            client_random,
            &mut block,
        );
        let (client_write_key, rest) = block.split_at(key_len);
        let (server_write_key, rest) = rest.split_at(key_len);
        let (client_write_iv, server_write_iv) = rest.split_at(iv_len);
        KeyBlock {
            client_write_key: client_write_key.to_vec(),
            server_write_key: server_write_key.to_vec(),
            client_write_iv: client_write_iv.to_vec(),
            server_write_iv: server_write_iv.to_vec(),
        }
    }

    /// RFC 5246 §7.4.9: `verify_data = PRF(master_secret, finished_label,
    /// Hash(handshake_messages))[0..11]`, with `finished_label` "client
    /// finished" or "server finished" by who sends the Finished.
    pub fn verify_data(&self, hash: PrfHash, sender: Sender, handshake_hash: &[u8]) -> [u8; 12] {
        let label: &[u8] = match sender {
            Sender::Client => b"client finished",
            Sender::Server => b"server finished",
        };
        let mut out = [0u8; 12];
        prf(hash, &self.0, label, handshake_hash, &mut out);
        out
    }

    // ANCHOR: exporter
    /// RFC 5705 §4, without a context value: `PRF(master_secret, label,
    /// client_random + server_random)[length]`.
    ///
    /// RFC 5705 §4 forbids the labels the handshake itself uses; those are
    /// rejected with [`Error::Misuse`].
    pub fn export_keying_material(
        &self,
        hash: PrfHash,
        label: &str,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        length: usize,
    ) -> Result<Vec<u8>, Error> {
        const RESERVED: [&str; 5] = [
            "client finished",
            "server finished",
            "master secret",
            "key expansion",
            "extended master secret",
        ];
        if RESERVED.contains(&label) {
            return Err(Error::Misuse(
                "exporter label reserved by TLS (RFC 5705 §4)",
            ));
        }
        if length > 1 << 16 {
            return Err(Error::Misuse("exporter length above 65536 bytes"));
        }
        let mut out = vec![0u8; length];
        prf2(
            hash,
            &self.0,
            label.as_bytes(),
            client_random,
            server_random,
            &mut out,
        );
        Ok(out)
    }
    // ANCHOR_END: exporter
}

/// Which side sent a Finished message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// The client (label "client finished").
    Client,
    /// The server (label "server finished").
    Server,
}

/// The traffic keys of RFC 5246 §6.3 for an AEAD suite (no MAC keys).
#[derive(Clone, PartialEq, Eq)]
pub struct KeyBlock {
    /// Key protecting what the client sends.
    pub client_write_key: Vec<u8>,
    /// Key protecting what the server sends.
    pub server_write_key: Vec<u8>,
    /// Client's implicit nonce (4-byte GCM salt or 12-byte ChaCha20 IV).
    pub client_write_iv: Vec<u8>,
    /// Server's implicit nonce.
    pub server_write_iv: Vec<u8>,
}

impl fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBlock(..)")
    }
}

/// The label RFC 5764 §4.2 gives the exporter for SRTP keys.
pub const DTLS_SRTP_EXPORTER_LABEL: &str = "EXTRACTOR-dtls_srtp";

/// SRTP master keys and salts for both directions (RFC 5764 §4.2).
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpKeyingMaterial {
    /// Master key protecting what the DTLS client sends.
    pub client_write_key: Vec<u8>,
    /// Master salt for what the DTLS client sends.
    pub client_write_salt: Vec<u8>,
    /// Master key protecting what the DTLS server sends.
    pub server_write_key: Vec<u8>,
    /// Master salt for what the DTLS server sends.
    pub server_write_salt: Vec<u8>,
}

impl fmt::Debug for SrtpKeyingMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SrtpKeyingMaterial(..)")
    }
}

impl SrtpKeyingMaterial {
    // ANCHOR: srtp_split
    /// Splits exporter output into keys and salts, RFC 5764 §4.2:
    ///
    /// ```text
    /// client_write_SRTP_master_key[key_len] · server_write_SRTP_master_key[key_len]
    /// client_write_SRTP_master_salt[salt_len] · server_write_SRTP_master_salt[salt_len]
    /// ```
    ///
    /// `material` must be exactly `2 * (key_len + salt_len)` bytes (60 for the
    /// AES_CM profiles: 16 + 14; 56 for AEAD_AES_128_GCM: 16 + 12; 88 for
    /// AEAD_AES_256_GCM: 32 + 12, RFC 7714 §12).
    pub fn split(material: &[u8], key_len: usize, salt_len: usize) -> Result<Self, Error> {
        if material.len() != 2 * (key_len + salt_len) {
            return Err(Error::Misuse(
                "SRTP keying material length is not 2 * (key_len + salt_len)",
            ));
        }
        let (ck, rest) = material.split_at(key_len);
        let (sk, rest) = rest.split_at(key_len);
        let (cs, ss) = rest.split_at(salt_len);
        Ok(SrtpKeyingMaterial {
            client_write_key: ck.to_vec(),
            server_write_key: sk.to_vec(),
            client_write_salt: cs.to_vec(),
            server_write_salt: ss.to_vec(),
        })
    }
    // ANCHOR_END: srtp_split

    /// Runs the exporter with [`DTLS_SRTP_EXPORTER_LABEL`] and splits the
    /// result (RFC 5764 §4.2).
    pub fn export(
        master: &MasterSecret,
        hash: PrfHash,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        key_len: usize,
        salt_len: usize,
    ) -> Result<Self, Error> {
        let material = master.export_keying_material(
            hash,
            DTLS_SRTP_EXPORTER_LABEL,
            client_random,
            server_random,
            2 * (key_len + salt_len),
        )?;
        Self::split(&material, key_len, salt_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::test_util::{hex, openssl_available};
    use proptest::prelude::*;

    /// The TLS 1.2 PRF (P_SHA256) vector circulated on the IETF TLS list;
    /// `openssl kdf ... TLS1-PRF` prints the same 100 bytes.
    #[test]
    fn prf_sha256_known_answer() {
        let secret = hex("9bbe436ba940f017b17652849a71db35");
        let seed = hex("a0ba9f936cda311827a6f796ffd5198c");
        let mut out = [0u8; 100];
        prf(PrfHash::Sha256, &secret, b"test label", &seed, &mut out);
        assert_eq!(
            out.to_vec(),
            hex(
                "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a\
                 6b301791e90d35c9c9a46b4e14baf9af0fa022f7077def17abfd3797c0564bab\
                 4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff701\
                 87347b66"
            )
        );
    }

    /// The P_SHA384 companion vector (148 bytes).
    #[test]
    fn prf_sha384_known_answer() {
        let secret = hex("b80b733d6ceefcdc71566ea48e5567df");
        let seed = hex("cd665cf6a8447dd6ff8b27555edb7465");
        let mut out = [0u8; 148];
        prf(PrfHash::Sha384, &secret, b"test label", &seed, &mut out);
        assert_eq!(
            out.to_vec(),
            hex(
                "7b0c18e9ced410ed1804f2cfa34a336a1c14dffb4900bb5fd7942107e81c83cd\
                 e9ca0faa60be9fe34f82b1233c9146a0e534cb400fed2700884f9dc236f80edd\
                 8bfa961144c9e8d792eca722a7b32fc3d416d473ebc2c5fd4abfdad05d918425\
                 9b5bf8cd4d90fa0d31e2dec479e4f1a26066f2eea9a69236a3e52655c9e9aee6\
                 91c8f3a26854308d5eaa3be85e0990703d73e56f"
            )
        );
    }

    fn openssl_prf(digest: &str, secret: &[u8], label: &str, seed: &[u8], len: usize) -> Vec<u8> {
        let hexs = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let out = std::process::Command::new("openssl")
            .args([
                "kdf",
                "-keylen",
                &len.to_string(),
                "-kdfopt",
                &format!("digest:{digest}"),
                "-kdfopt",
                &format!("hexsecret:{}", hexs(secret)),
                "-kdfopt",
                &format!("seed:{label}"),
                "-kdfopt",
                &format!("hexseed:{}", hexs(seed)),
                "TLS1-PRF",
            ])
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        hex(&String::from_utf8_lossy(&out.stdout).trim().replace(':', ""))
    }

    /// Cross-check against OpenSSL's TLS1-PRF for lengths around the block
    /// boundaries (32/48 bytes) and for each label the key schedule uses.
    #[test]
    fn prf_matches_openssl() {
        if !openssl_available() {
            eprintln!("SKIPPED prf_matches_openssl: no `openssl` binary on PATH");
            return;
        }
        let secret = hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
        let seed: Vec<u8> = (0..64u8).collect();
        for (hash, name) in [(PrfHash::Sha256, "SHA256"), (PrfHash::Sha384, "SHA384")] {
            for len in [1, 12, 31, 32, 33, 47, 48, 49, 60, 88, 97] {
                for label in ["master secret", "key expansion", "EXTRACTOR-dtls_srtp"] {
                    let mut ours = vec![0u8; len];
                    prf(hash, &secret, label.as_bytes(), &seed, &mut ours);
                    assert_eq!(ours, openssl_prf(name, &secret, label, &seed, len));
                }
            }
        }
    }

    fn randoms() -> ([u8; 32], [u8; 32]) {
        let mut c = [0u8; 32];
        let mut s = [0u8; 32];
        for i in 0..32 {
            c[i] = i as u8;
            s[i] = 0x80 + i as u8;
        }
        (c, s)
    }

    /// The master secret is the PRF with label "master secret" over
    /// client_random + server_random (value computed with `openssl kdf`).
    #[test]
    fn master_secret_known_answer() {
        let (cr, sr) = randoms();
        let pms = [0x42u8; 32];
        let ms = MasterSecret::derive(PrfHash::Sha256, &pms, &cr, &sr);
        // openssl kdf -keylen 48 -kdfopt digest:SHA256 -kdfopt hexsecret:42..42
        //   -kdfopt "seed:master secret" -kdfopt hexseed:<cr><sr> TLS1-PRF
        assert_eq!(
            ms.0.to_vec(),
            hex(
                "22d9db92b96179c821f2786327f6cfcecc0c5a77bbaba2c2bb49e584a0a497f0\
                 85f95d26b75a9083d9d3896651ffb88b"
            )
        );
    }

    /// Master secret, extended master secret, key block (server_random
    /// first), Finished and exporter each equal OpenSSL's TLS1-PRF with the
    /// RFC's label and seed order.
    #[test]
    fn key_schedule_matches_openssl() {
        if !openssl_available() {
            eprintln!("SKIPPED key_schedule_matches_openssl: no `openssl` binary on PATH");
            return;
        }
        let (cr, sr) = randoms();
        let pms = [0x42u8; 32];
        let cat = |a: &[u8], b: &[u8]| [a, b].concat();
        for (hash, name) in [(PrfHash::Sha256, "SHA256"), (PrfHash::Sha384, "SHA384")] {
            let ms = MasterSecret::derive(hash, &pms, &cr, &sr);
            assert_eq!(
                ms.0.to_vec(),
                openssl_prf(name, &pms, "master secret", &cat(&cr, &sr), 48)
            );
            let session_hash = [7u8; 48];
            let ems = MasterSecret::derive_extended(hash, &pms, &session_hash[..hash.output_len()]);
            assert_eq!(
                ems.0.to_vec(),
                openssl_prf(
                    name,
                    &pms,
                    "extended master secret",
                    &session_hash[..hash.output_len()],
                    48
                )
            );
            // Key block: server_random first.
            let kb = ms.key_block(hash, &cr, &sr, 16, 4);
            let want = openssl_prf(name, &ms.0, "key expansion", &cat(&sr, &cr), 40);
            assert_eq!(kb.client_write_key, want[0..16]);
            assert_eq!(kb.server_write_key, want[16..32]);
            assert_eq!(kb.client_write_iv, want[32..36]);
            assert_eq!(kb.server_write_iv, want[36..40]);
            let fin = ms.verify_data(hash, Sender::Server, &session_hash[..hash.output_len()]);
            assert_eq!(
                fin.to_vec(),
                openssl_prf(
                    name,
                    &ms.0,
                    "server finished",
                    &session_hash[..hash.output_len()],
                    12
                )
            );
            let exp = ms
                .export_keying_material(hash, DTLS_SRTP_EXPORTER_LABEL, &cr, &sr, 60)
                .unwrap();
            assert_eq!(
                exp,
                openssl_prf(name, &ms.0, "EXTRACTOR-dtls_srtp", &cat(&cr, &sr), 60)
            );
        }
    }

    #[test]
    fn srtp_split_layout() {
        let material: Vec<u8> = (0..60u8).collect();
        let k = SrtpKeyingMaterial::split(&material, 16, 14).unwrap();
        assert_eq!(k.client_write_key, material[0..16]);
        assert_eq!(k.server_write_key, material[16..32]);
        assert_eq!(k.client_write_salt, material[32..46]);
        assert_eq!(k.server_write_salt, material[46..60]);
        assert!(SrtpKeyingMaterial::split(&material, 16, 12).is_err());
        // AEAD_AES_256_GCM: 88 bytes.
        let (cr, sr) = randoms();
        let ms = MasterSecret([1; 48]);
        let k = SrtpKeyingMaterial::export(&ms, PrfHash::Sha256, &cr, &sr, 32, 12).unwrap();
        assert_eq!(k.client_write_key.len(), 32);
        assert_eq!(k.server_write_salt.len(), 12);
    }

    #[test]
    fn exporter_refuses_reserved_labels() {
        let (cr, sr) = randoms();
        let ms = MasterSecret([1; 48]);
        assert!(
            ms.export_keying_material(PrfHash::Sha256, "key expansion", &cr, &sr, 10)
                .is_err()
        );
    }

    proptest! {
        /// Output is a prefix of any longer output (P_hash is a stream).
        #[test]
        fn prf_prefix_property(secret in proptest::collection::vec(any::<u8>(), 0..80),
                               seed in proptest::collection::vec(any::<u8>(), 0..80),
                               a in 0usize..200, b in 0usize..200) {
            let (short, long) = (a.min(b), a.max(b));
            let mut x = vec![0u8; short];
            let mut y = vec![0u8; long];
            prf(PrfHash::Sha384, &secret, b"l", &seed, &mut x);
            prf(PrfHash::Sha384, &secret, b"l", &seed, &mut y);
            prop_assert_eq!(&x[..], &y[..short]);
        }
    }
}
