//! Key shares of the TLS 1.3 key_share extension (RFC 8446 §4.2.8) for the
//! groups DTLS 1.3 peers offer: X25519, P-256 (secp256r1) and the
//! post-quantum hybrid X25519MLKEM768 that Chromium and Firefox send first.
//!
//! X25519MLKEM768 (code point 0x11EC, draft-ietf-tls-ecdhe-mlkem) puts the
//! ML-KEM part **first** in every field:
//!
//! ```text
//! client share  = ML-KEM-768 encapsulation key (1184) || X25519 public (32) = 1216 bytes
//! server share  = ML-KEM-768 ciphertext        (1088) || X25519 public (32) = 1120 bytes
//! shared secret = ML-KEM-768 shared secret       (32) || X25519 secret (32) =   64 bytes
//! ```
//!
//! The shared secret is the (EC)DHE input of the key schedule
//! ([`super::key_schedule::EarlySecret::handshake_secret`]).
//!
//! The primitives are libraries': X25519 and P-256 from `ring`, ML-KEM-768
//! (FIPS 203) from RustCrypto's `ml-kem`. ML-KEM's randomness (the key
//! seed d‖z and the encapsulation's m) comes from the caller's RNG, through
//! the crate's deterministic entry points; ring's ephemeral keys take only
//! ring's own (sealed) system RNG, as in the DTLS 1.2 endpoint.

use ml_kem::array::Array;
use ml_kem::{Decapsulate, KeyExport, MlKem768};
use ring::agreement;

use crate::dtls::Error;
use crate::dtls::handshake::NamedGroup;

/// Bytes of an ML-KEM-768 encapsulation key.
pub const MLKEM768_ENCAPSULATION_KEY_LEN: usize = 1184;
/// Bytes of an ML-KEM-768 ciphertext.
pub const MLKEM768_CIPHERTEXT_LEN: usize = 1088;
/// Bytes of an X25519 public key and shared secret.
pub const X25519_LEN: usize = 32;
/// Bytes of an uncompressed P-256 point (0x04 || x || y, RFC 8446 §4.2.8.2).
pub const P256_POINT_LEN: usize = 65;
/// The hybrid's client share: encapsulation key then X25519 public key.
pub const X25519MLKEM768_CLIENT_LEN: usize = MLKEM768_ENCAPSULATION_KEY_LEN + X25519_LEN;
/// The hybrid's server share: ciphertext then X25519 public key.
pub const X25519MLKEM768_SERVER_LEN: usize = MLKEM768_CIPHERTEXT_LEN + X25519_LEN;

/// The groups we can do a key share in, in our order of preference.
pub const SUPPORTED_GROUPS: [NamedGroup; 3] = [
    NamedGroup::X25519_MLKEM768,
    NamedGroup::X25519,
    NamedGroup::SECP256R1,
];

/// Whether we can complete a share of `group`.
pub fn is_supported(group: NamedGroup) -> bool {
    SUPPORTED_GROUPS.contains(&group)
}

/// The shared secret a key exchange agreed (32 bytes, or 64 for the
/// hybrid). Its `Debug` hides the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SharedSecret(Vec<u8>);

impl SharedSecret {
    /// The bytes, for the key schedule.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSecret({} bytes)", self.0.len())
    }
}

/// The private half of a share, used once.
enum Private {
    Ecdh(
        &'static agreement::Algorithm,
        agreement::EphemeralPrivateKey,
    ),
    Hybrid {
        // Boxed: ML-KEM's decapsulation key is a few kilobytes.
        mlkem: Box<ml_kem::DecapsulationKey<MlKem768>>,
        x25519: agreement::EphemeralPrivateKey,
    },
}

/// A key share we offered in a ClientHello: the public part to send and
/// the private part that completes the exchange with the server's share.
pub struct ClientShare {
    group: NamedGroup,
    public: Vec<u8>,
    private: Private,
}

impl std::fmt::Debug for ClientShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientShare")
            .field("group", &self.group)
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

fn ecdh_algorithm(group: NamedGroup) -> Option<&'static agreement::Algorithm> {
    match group {
        NamedGroup::X25519 => Some(&agreement::X25519),
        NamedGroup::SECP256R1 => Some(&agreement::ECDH_P256),
        _ => None,
    }
}

fn ecdh_key(
    alg: &'static agreement::Algorithm,
) -> Result<(agreement::EphemeralPrivateKey, Vec<u8>), Error> {
    let rng = ring::rand::SystemRandom::new();
    let private = agreement::EphemeralPrivateKey::generate(alg, &rng)
        .map_err(|_| Error::Crypto("ECDHE key generation"))?;
    let public = private
        .compute_public_key()
        .map_err(|_| Error::Crypto("ECDHE public key"))?
        .as_ref()
        .to_vec();
    Ok((private, public))
}

/// ECDH with the peer's public key. RFC 8446 §7.4.2 / RFC 7748 §6.1: an
/// all-zero X25519 result (a small-order point) is refused, as is a P-256
/// point off the curve (§4.2.8.2); ring checks both.
fn ecdh_agree(
    alg: &'static agreement::Algorithm,
    private: agreement::EphemeralPrivateKey,
    peer: &[u8],
) -> Result<Vec<u8>, Error> {
    agreement::agree_ephemeral(
        private,
        &agreement::UnparsedPublicKey::new(alg, peer),
        |s| s.to_vec(),
    )
    .map_err(|_| Error::InvalidValue {
        what: "key_share public key (not a valid point, or a small-order one)",
        value: peer.len() as u64,
    })
}

fn check_len(what: &'static str, got: usize, want: usize) -> Result<(), Error> {
    if got == want {
        Ok(())
    } else {
        Err(Error::InvalidValue {
            what,
            value: got as u64,
        })
    }
}

fn share_len(group: NamedGroup, client: bool) -> Option<usize> {
    Some(match group {
        NamedGroup::X25519 => X25519_LEN,
        NamedGroup::SECP256R1 => P256_POINT_LEN,
        NamedGroup::X25519_MLKEM768 if client => X25519MLKEM768_CLIENT_LEN,
        NamedGroup::X25519_MLKEM768 => X25519MLKEM768_SERVER_LEN,
        _ => return None,
    })
}

impl ClientShare {
    /// A fresh share for `group`. For the hybrid, the ML-KEM key comes from
    /// 64 bytes of `rng` (FIPS 203's seed d‖z).
    pub fn generate<R: rand::CryptoRng + ?Sized>(
        group: NamedGroup,
        rng: &mut R,
    ) -> Result<Self, Error> {
        if let Some(alg) = ecdh_algorithm(group) {
            let (private, public) = ecdh_key(alg)?;
            return Ok(ClientShare {
                group,
                public,
                private: Private::Ecdh(alg, private),
            });
        }
        if group != NamedGroup::X25519_MLKEM768 {
            return Err(Error::UnsupportedAlgorithm("key share group"));
        }
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let mlkem = ml_kem::DecapsulationKey::<MlKem768>::from_seed(Array::from(seed));
        let (x25519, x_public) = ecdh_key(&agreement::X25519)?;
        let mut public = Vec::with_capacity(X25519MLKEM768_CLIENT_LEN);
        public.extend_from_slice(&mlkem.encapsulation_key().to_bytes());
        public.extend_from_slice(&x_public);
        debug_assert_eq!(public.len(), X25519MLKEM768_CLIENT_LEN);
        Ok(ClientShare {
            group,
            public,
            private: Private::Hybrid {
                mlkem: Box::new(mlkem),
                x25519,
            },
        })
    }

    /// The group.
    pub fn group(&self) -> NamedGroup {
        self.group
    }

    /// The key_exchange bytes of our KeyShareEntry.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// Completes the exchange with the server's key_exchange bytes
    /// (consumes the private key: it is used once).
    pub fn complete(self, server_share: &[u8]) -> Result<SharedSecret, Error> {
        let want = share_len(self.group, false).unwrap_or(0);
        check_len("server key_share length", server_share.len(), want)?;
        match self.private {
            Private::Ecdh(alg, private) => {
                Ok(SharedSecret(ecdh_agree(alg, private, server_share)?))
            }
            Private::Hybrid { mlkem, x25519 } => {
                let (ct, x_public) = server_share.split_at(MLKEM768_CIPHERTEXT_LEN);
                let ct = Array::try_from(ct).map_err(|_| Error::InvalidValue {
                    what: "ML-KEM ciphertext length",
                    value: ct.len() as u64,
                })?;
                // FIPS 203 decapsulation never fails: a bad ciphertext
                // gives an unrelated secret (implicit rejection), caught by
                // the Finished check.
                let k = mlkem.decapsulate(&ct);
                let mut secret = Vec::with_capacity(2 * 32);
                secret.extend_from_slice(k.as_slice());
                secret.extend_from_slice(&ecdh_agree(&agreement::X25519, x25519, x_public)?);
                Ok(SharedSecret(secret))
            }
        }
    }
}

/// The server's side: given the client's key_exchange bytes for `group`,
/// returns our key_exchange bytes for the ServerHello and the shared secret.
/// For the hybrid, the encapsulation's 32 random bytes come from `rng`; a
/// client encapsulation key that fails FIPS 203's modulus check is refused.
pub fn server_share<R: rand::CryptoRng + ?Sized>(
    group: NamedGroup,
    client_share: &[u8],
    rng: &mut R,
) -> Result<(Vec<u8>, SharedSecret), Error> {
    let Some(want) = share_len(group, true) else {
        return Err(Error::UnsupportedAlgorithm("key share group"));
    };
    check_len("client key_share length", client_share.len(), want)?;
    if let Some(alg) = ecdh_algorithm(group) {
        let (private, public) = ecdh_key(alg)?;
        let secret = ecdh_agree(alg, private, client_share)?;
        return Ok((public, SharedSecret(secret)));
    }
    let (ek, x_client) = client_share.split_at(MLKEM768_ENCAPSULATION_KEY_LEN);
    let invalid_ek = Error::InvalidValue {
        what: "ML-KEM-768 encapsulation key (fails the FIPS 203 modulus check)",
        value: ek.len() as u64,
    };
    let ek = Array::try_from(ek).map_err(|_| invalid_ek.clone())?;
    let ek = ml_kem::EncapsulationKey::<MlKem768>::new(&ek).map_err(|_| invalid_ek)?;
    let mut m = [0u8; 32];
    rng.fill_bytes(&mut m);
    let (ct, k) = ek.encapsulate_deterministic(&Array::from(m));
    let (x_private, x_public) = ecdh_key(&agreement::X25519)?;
    let x_secret = ecdh_agree(&agreement::X25519, x_private, x_client)?;
    let mut public = Vec::with_capacity(X25519MLKEM768_SERVER_LEN);
    public.extend_from_slice(ct.as_slice());
    public.extend_from_slice(&x_public);
    let mut secret = Vec::with_capacity(64);
    secret.extend_from_slice(k.as_slice());
    secret.extend_from_slice(&x_secret);
    Ok((public, SharedSecret(secret)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::test_util::hex;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn every_group_agrees() {
        let mut rng = StdRng::seed_from_u64(7);
        for (group, client_len, server_len, secret_len) in [
            (NamedGroup::X25519, 32, 32, 32),
            (NamedGroup::SECP256R1, 65, 65, 32),
            (NamedGroup::X25519_MLKEM768, 1216, 1120, 64),
        ] {
            let client = ClientShare::generate(group, &mut rng).unwrap();
            assert_eq!(client.group(), group);
            assert_eq!(client.public().len(), client_len, "{group:?}");
            let (server_public, server_secret) =
                server_share(group, client.public(), &mut rng).unwrap();
            assert_eq!(server_public.len(), server_len, "{group:?}");
            let client_secret = client.complete(&server_public).unwrap();
            assert_eq!(client_secret, server_secret, "{group:?}");
            assert_eq!(client_secret.as_bytes().len(), secret_len);
        }
    }

    /// The hybrid's fields are ML-KEM first, X25519 second
    /// (draft-ietf-tls-ecdhe-mlkem): the first 32 bytes of the secret are
    /// what ML-KEM alone gives for the first 1088 bytes of the server share.
    #[test]
    fn hybrid_order_is_mlkem_first() {
        let client =
            ClientShare::generate(NamedGroup::X25519_MLKEM768, &mut StdRng::seed_from_u64(1))
                .unwrap();
        // The same seed again gives the same ML-KEM key: its encapsulation
        // key leads the share.
        let mut seed = [0u8; 64];
        rand::RngCore::fill_bytes(&mut StdRng::seed_from_u64(1), &mut seed);
        let dk = ml_kem::DecapsulationKey::<MlKem768>::from_seed(Array::from(seed));
        assert_eq!(
            &client.public()[..MLKEM768_ENCAPSULATION_KEY_LEN],
            dk.encapsulation_key().to_bytes().as_slice()
        );
        let (server_public, secret) = server_share(
            NamedGroup::X25519_MLKEM768,
            client.public(),
            &mut StdRng::seed_from_u64(2),
        )
        .unwrap();
        let ct = Array::try_from(&server_public[..MLKEM768_CIPHERTEXT_LEN]).unwrap();
        assert_eq!(&secret.as_bytes()[..32], dk.decapsulate(&ct).as_slice());
        assert_eq!(client.complete(&server_public).unwrap(), secret);
    }

    /// ML-KEM-768 against an independent implementation (Python
    /// `cryptography` on OpenSSL 4.0): key from seed, and decapsulation.
    #[test]
    fn mlkem768_known_answer() {
        let kat = include_str!("../../../tests/fixtures/dtls13/mlkem768_kat.txt");
        let field = |name: &str| {
            kat.lines()
                .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
                .map(hex)
                .unwrap_or_else(|| panic!("{name} in the KAT"))
        };
        let seed: [u8; 64] = field("seed").try_into().unwrap();
        let dk = ml_kem::DecapsulationKey::<MlKem768>::from_seed(Array::from(seed));
        let ek = dk.encapsulation_key().to_bytes();
        assert_eq!(
            crate::dtls::v13::key_schedule::sha256(ek.as_slice()).to_vec(),
            field("ek_sha256")
        );
        let ct = Array::try_from(&field("ct")[..]).unwrap();
        assert_eq!(dk.decapsulate(&ct).as_slice(), &field("ss")[..]);
    }

    #[test]
    fn bad_shares_are_refused() {
        let mut rng = StdRng::seed_from_u64(3);
        // Wrong lengths.
        for (group, len) in [
            (NamedGroup::X25519, 31),
            (NamedGroup::SECP256R1, 64),
            (NamedGroup::X25519_MLKEM768, 1215),
            (NamedGroup::X25519_MLKEM768, 32),
        ] {
            assert!(matches!(
                server_share(group, &vec![4; len], &mut rng),
                Err(Error::InvalidValue { .. })
            ));
        }
        // X25519's all-zero point is of small order (RFC 7748 §6.1).
        assert!(server_share(NamedGroup::X25519, &[0; 32], &mut rng).is_err());
        // A P-256 point not on the curve.
        let mut p = vec![4u8; 65];
        p[1] = 1;
        assert!(server_share(NamedGroup::SECP256R1, &p, &mut rng).is_err());
        // An ML-KEM key whose coefficients are all 0xfff (>= q = 3329) fails
        // FIPS 203's modulus check.
        let mut bad = vec![0xffu8; X25519MLKEM768_CLIENT_LEN];
        bad[MLKEM768_ENCAPSULATION_KEY_LEN..].copy_from_slice(&[9; 32]);
        assert!(server_share(NamedGroup::X25519_MLKEM768, &bad, &mut rng).is_err());
        // Groups we lack.
        assert!(ClientShare::generate(NamedGroup::SECP384R1, &mut rng).is_err());
        assert!(server_share(NamedGroup(0x0100), &[0; 32], &mut rng).is_err());
        // A client refuses a server share of the wrong length.
        let c = ClientShare::generate(NamedGroup::X25519_MLKEM768, &mut rng).unwrap();
        assert!(c.complete(&[1; 1121]).is_err());
    }
}
