//! Certificates for WebRTC's DTLS: a self-signed ECDSA P-256 certificate
//! written by our own minimal DER writer, its SDP fingerprint, and a minimal
//! DER reader that takes the public key out of a peer's certificate.
//!
//! In WebRTC nobody checks a certificate against an authority: each peer makes
//! a throw-away self-signed certificate, puts the hash of it in its SDP
//! (`a=fingerprint:sha-256 AB:CD:…`, RFC 8122 §5), and the other peer accepts
//! the DTLS handshake only if the certificate it receives hashes to that value
//! (RFC 8842 §5). The signaling channel vouches for the fingerprint; the
//! fingerprint vouches for the key. So all we need from X.509 is:
//!
//! ```text
//! Certificate ::= SEQUENCE {                          RFC 5280 §4.1
//!   tbsCertificate SEQUENCE {
//!     version        [0] EXPLICIT INTEGER 2 (v3)
//!     serialNumber   INTEGER (positive, ≤ 20 bytes)
//!     signature      AlgorithmIdentifier  (ecdsa-with-SHA256)
//!     issuer         Name                  CN=rtclab
//!     validity       SEQUENCE { notBefore Time, notAfter Time }
//!     subject        Name                  CN=rtclab
//!     subjectPublicKeyInfo SEQUENCE {
//!       algorithm    SEQUENCE { id-ecPublicKey, prime256v1 }
//!       subjectPublicKey BIT STRING (04 || X || Y)
//!     } }
//!   signatureAlgorithm AlgorithmIdentifier (ecdsa-with-SHA256)
//!   signatureValue     BIT STRING (DER Ecdsa-Sig-Value)
//! }
//! ```
//!
//! `ring` generates the key (PKCS#8) and signs; the bytes around them are ours.
//! `ring`'s `SecureRandom` is sealed, so key generation and ECDSA nonces come
//! from the operating system ([`ring::rand::SystemRandom`]); only the serial
//! number comes from the caller's RNG.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};

use super::Error;

// ---------------------------------------------------------------------------
// DER writer (X.690 §8, §10: definite lengths, minimal encodings).

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_UTF8_STRING: u8 = 0x0c;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_CONTEXT_0: u8 = 0xa0;

// OIDs, content octets only (X.690 §8.19).
/// 1.2.840.10045.2.1 id-ecPublicKey (RFC 5480 §2.1.1).
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 secp256r1 / prime256v1 (RFC 5480 §2.1.1.1).
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.3.132.0.34 secp384r1.
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// 1.2.840.10045.4.3.2 ecdsa-with-SHA256 (RFC 5758 §3.2).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// 1.2.840.113549.1.1.1 rsaEncryption (RFC 3279 §2.3.1).
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// 1.2.840.113549.1.1.10 id-RSASSA-PSS (RFC 4055 §3.1).
const OID_RSASSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
/// 2.5.4.3 commonName.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];

/// Appends a tag, a definite length and the contents written by `body`.
fn der_emit<F: FnOnce(&mut Vec<u8>)>(out: &mut Vec<u8>, tag: u8, body: F) {
    let mut contents = Vec::new();
    body(&mut contents);
    der_emit_bytes(out, tag, &contents);
}

/// Appends a tag, a definite length in its shortest form (X.690 §10.1) and
/// `contents`.
fn der_emit_bytes(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = (len as u64).to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (8 - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(contents);
}

/// A non-negative INTEGER from big-endian magnitude bytes: leading zeros
/// removed, one 0x00 put back when the top bit is set (X.690 §8.3).
fn der_emit_unsigned(out: &mut Vec<u8>, magnitude: &[u8]) {
    let skip = magnitude.iter().take_while(|b| **b == 0).count();
    let m = &magnitude[skip..];
    der_emit(out, TAG_INTEGER, |o| {
        if m.first().is_none_or(|b| b & 0x80 != 0) {
            o.push(0);
        }
        o.extend_from_slice(m);
    });
}

fn der_emit_name(out: &mut Vec<u8>, common_name: &str) {
    der_emit(out, TAG_SEQUENCE, |o| {
        der_emit(o, TAG_SET, |o| {
            der_emit(o, TAG_SEQUENCE, |o| {
                der_emit_bytes(o, TAG_OID, OID_COMMON_NAME);
                der_emit_bytes(o, TAG_UTF8_STRING, common_name.as_bytes());
            })
        })
    });
}

/// RFC 5280 §4.1.2.5: UTCTime `YYMMDDHHMMSSZ` for 1950–2049,
/// GeneralizedTime `YYYYMMDDHHMMSSZ` from 2050 on.
fn der_emit_time(out: &mut Vec<u8>, unix: u64) {
    let (y, mo, d, h, mi, s) = civil_from_unix(unix);
    if y < 2050 {
        let t = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        der_emit_bytes(out, TAG_UTC_TIME, t.as_bytes());
    } else {
        let t = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        der_emit_bytes(out, TAG_GENERALIZED_TIME, t.as_bytes());
    }
}

/// Seconds since 1970 to (year, month, day, hour, minute, second), proleptic
/// Gregorian calendar (the "days from civil" inverse, by eras of 400 years).
fn civil_from_unix(unix: u64) -> (u64, u64, u64, u64, u64, u64) {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of (March-based) year
    let mp = (5 * doy + 2) / 153; // March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d, secs / 3600, secs % 3600 / 60, secs % 60)
}

// ---------------------------------------------------------------------------
// Our certificate.

/// How long generated certificates are valid: from one day before `now`
/// (tolerates a peer's clock running behind) to 30 days after.
const VALID_BEFORE_NOW_S: u64 = 86_400;
const VALID_AFTER_NOW_S: u64 = 30 * 86_400;

/// A self-signed ECDSA P-256 certificate and its private key.
pub struct Certificate {
    der: Vec<u8>,
    pkcs8: Vec<u8>,
    key_pair: EcdsaKeyPair,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint().to_string())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// Generates a fresh key and a self-signed X.509 v3 certificate for it,
    /// CN=rtclab, valid from `now` − 1 day to `now` + 30 days, with a random
    /// positive 16-byte serial number from `rng`.
    pub fn generate<R: rand::Rng + ?Sized>(rng: &mut R, now: SystemTime) -> Result<Self, Error> {
        let sys = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &sys)
            .map_err(|_| Error::Crypto("P-256 key generation"))?;
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            pkcs8.as_ref(),
            &sys,
        )
        .map_err(|_| Error::Crypto("P-256 key we just generated was rejected"))?;
        let unix = now
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Error::Misuse("certificate time before 1970"))?
            .as_secs();
        let mut serial = [0u8; 16];
        rng.fill(&mut serial);
        serial[0] &= 0x7f; // positive (RFC 5280 §4.1.2.2)
        serial[0] |= 0x01; // and never zero

        let mut tbs = Vec::new();
        der_emit(&mut tbs, TAG_SEQUENCE, |o| {
            der_emit(o, TAG_CONTEXT_0, |o| der_emit_bytes(o, TAG_INTEGER, &[2]));
            der_emit_unsigned(o, &serial);
            der_emit(o, TAG_SEQUENCE, |o| {
                der_emit_bytes(o, TAG_OID, OID_ECDSA_SHA256)
            });
            der_emit_name(o, "rtclab");
            der_emit(o, TAG_SEQUENCE, |o| {
                der_emit_time(o, unix.saturating_sub(VALID_BEFORE_NOW_S));
                der_emit_time(o, unix.saturating_add(VALID_AFTER_NOW_S));
            });
            der_emit_name(o, "rtclab");
            der_emit(o, TAG_SEQUENCE, |o| {
                der_emit(o, TAG_SEQUENCE, |o| {
                    der_emit_bytes(o, TAG_OID, OID_EC_PUBLIC_KEY);
                    der_emit_bytes(o, TAG_OID, OID_P256);
                });
                der_emit(o, TAG_BIT_STRING, |o| {
                    o.push(0); // no unused bits
                    o.extend_from_slice(key_pair.public_key().as_ref());
                });
            });
        });
        let sig = key_pair
            .sign(&sys, &tbs)
            .map_err(|_| Error::Crypto("ECDSA signing"))?;
        let mut der = Vec::new();
        der_emit(&mut der, TAG_SEQUENCE, |o| {
            o.extend_from_slice(&tbs);
            der_emit(o, TAG_SEQUENCE, |o| {
                der_emit_bytes(o, TAG_OID, OID_ECDSA_SHA256)
            });
            der_emit(o, TAG_BIT_STRING, |o| {
                o.push(0);
                o.extend_from_slice(sig.as_ref());
            });
        });
        Ok(Certificate {
            der,
            pkcs8: pkcs8.as_ref().to_vec(),
            key_pair,
        })
    }

    /// Loads a certificate and its P-256 PKCS#8 private key (e.g. from
    /// `--cert`/`--key` PEM files, via [`parse_pem`]). Fails if the key does
    /// not match the certificate.
    pub fn from_der(der: Vec<u8>, pkcs8: Vec<u8>) -> Result<Self, Error> {
        let key_pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| Error::UnsupportedAlgorithm("private key is not PKCS#8 ECDSA P-256"))?;
        let spki = PublicKeyInfo::parse_certificate(&der)?;
        if spki.key != key_pair.public_key().as_ref() {
            return Err(Error::Misuse("private key does not match the certificate"));
        }
        Ok(Certificate {
            der,
            pkcs8,
            key_pair,
        })
    }

    /// A second handle on the same certificate and key (a server that
    /// gives every connection the one certificate, as browsers do per
    /// `RTCPeerConnection`).
    pub fn try_clone(&self) -> Result<Self, Error> {
        Certificate::from_der(self.der.clone(), self.pkcs8.clone())
    }

    /// Loads a certificate and its key from PEM text, as `--cert`/`--key`
    /// give them: the first `CERTIFICATE` block, and a P-256 key either as
    /// PKCS#8 (`PRIVATE KEY`, RFC 5208 §5, what `openssl genpkey` and
    /// [`Certificate::private_key_pem`] write) or as SEC1 (`EC PRIVATE KEY`,
    /// RFC 5915 §3, what `openssl ecparam -genkey` writes), which is wrapped
    /// into PKCS#8 here for `ring`.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<Self, Error> {
        let der = parse_pem(certificate_pem, "CERTIFICATE")?;
        let pkcs8 = if key_pem.contains("-----BEGIN EC PRIVATE KEY-----") {
            sec1_to_pkcs8(&parse_pem(key_pem, "EC PRIVATE KEY")?)
        } else if key_pem.contains("-----BEGIN PRIVATE KEY-----") {
            parse_pem(key_pem, "PRIVATE KEY")?
        } else {
            return Err(Error::UnsupportedAlgorithm(
                "key PEM has neither `PRIVATE KEY` (PKCS#8) nor `EC PRIVATE KEY` (SEC1)",
            ));
        };
        Self::from_der(der, pkcs8)
    }

    /// The certificate in DER, as sent in the Certificate message.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate as PEM (`-----BEGIN CERTIFICATE-----`).
    pub fn certificate_pem(&self) -> String {
        emit_pem("CERTIFICATE", &self.der)
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn private_key_pem(&self) -> String {
        emit_pem("PRIVATE KEY", &self.pkcs8)
    }

    /// The SHA-256 fingerprint for `a=fingerprint` (RFC 8122 §5).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(HashAlgorithm::Sha256, &self.der)
    }

    /// Signs `message` with ECDSA P-256 / SHA-256 (DER signature, as TLS's
    /// `ecdsa_secp256r1_sha256` wants).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.key_pair
            .sign(&SystemRandom::new(), message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| Error::Crypto("ECDSA signing"))
    }
}

/// Wraps a SEC1 `ECPrivateKey` (RFC 5915 §3) for P-256 in a PKCS#8 v1
/// `PrivateKeyInfo` (RFC 5208 §5): `SEQUENCE { INTEGER 0, SEQUENCE {
/// id-ecPublicKey, prime256v1 }, OCTET STRING ecPrivateKey }`. A key of
/// another curve then fails in `ring`, with a clear error.
fn sec1_to_pkcs8(ec_private_key: &[u8]) -> Vec<u8> {
    const TAG_OCTET_STRING: u8 = 0x04;
    let mut out = Vec::with_capacity(ec_private_key.len() + 32);
    der_emit(&mut out, TAG_SEQUENCE, |o| {
        der_emit_bytes(o, TAG_INTEGER, &[0]);
        der_emit(o, TAG_SEQUENCE, |o| {
            der_emit_bytes(o, TAG_OID, OID_EC_PUBLIC_KEY);
            der_emit_bytes(o, TAG_OID, OID_P256);
        });
        der_emit_bytes(o, TAG_OCTET_STRING, ec_private_key);
    });
    out
}

// ---------------------------------------------------------------------------
// PEM (RFC 7468) and base64 (RFC 4648 §4).

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn emit_base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn parse_base64(text: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(Error::BadCertificate("invalid base64 character in PEM")),
        };
        if padding > 0 {
            return Err(Error::BadCertificate("base64 data after padding in PEM"));
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

fn emit_pem(label: &str, der: &[u8]) -> String {
    let b64 = emit_base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII.
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Parses the first PEM block labelled `label` (e.g. "CERTIFICATE",
/// "PRIVATE KEY") in `text` to DER.
pub fn parse_pem(text: &str, label: &str) -> Result<Vec<u8>, Error> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or(Error::BadCertificate("PEM BEGIN line not found"))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or(Error::BadCertificate("PEM END line not found"))?;
    parse_base64(&text[start..start + stop])
}

// ---------------------------------------------------------------------------
// Fingerprints (RFC 8122 §5, RFC 4572 §5).

pub use crate::vocab::fingerprint::{Fingerprint, FingerprintError, HashAlgorithm};

impl Fingerprint {
    /// Checks that `certificate_der` hashes to this fingerprint (RFC 8842
    /// §5: the handshake goes on only if it does).
    pub fn verify(&self, certificate_der: &[u8]) -> Result<(), Error> {
        if self.matches(certificate_der) {
            Ok(())
        } else {
            Err(Error::FingerprintMismatch)
        }
    }
}

// ---------------------------------------------------------------------------
// DER reader: just enough to find SubjectPublicKeyInfo.

/// A cursor over DER (X.690) that never panics.
struct Der<'a> {
    buf: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Der { buf }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Reads one TLV with a single-byte tag and a definite length of at most
    /// 4 bytes; returns (tag, contents).
    fn parse_any(&mut self) -> Result<(u8, &'a [u8]), Error> {
        let [tag, first, ..] = *self.buf else {
            return Err(Error::BadCertificate("truncated DER header"));
        };
        if tag & 0x1f == 0x1f {
            return Err(Error::BadCertificate("multi-byte DER tag"));
        }
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err(Error::BadCertificate("indefinite or huge DER length"));
            }
            let bytes = self
                .buf
                .get(2..2 + n)
                .ok_or(Error::BadCertificate("truncated DER length"))?;
            let len = bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            (len, 2 + n)
        };
        let end = header
            .checked_add(len)
            .ok_or(Error::BadCertificate("DER length overflow"))?;
        let contents = self
            .buf
            .get(header..end)
            .ok_or(Error::BadCertificate("DER contents run past the end"))?;
        self.buf = &self.buf[end..];
        Ok((tag, contents))
    }

    fn parse(&mut self, tag: u8, what: &'static str) -> Result<&'a [u8], Error> {
        let (t, contents) = self.parse_any()?;
        if t != tag {
            return Err(Error::BadCertificate(what));
        }
        Ok(contents)
    }
}

/// The kind of public key in a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// id-ecPublicKey on P-256.
    EcdsaP256,
    /// id-ecPublicKey on P-384.
    EcdsaP384,
    /// rsaEncryption (the key may be used for PKCS#1 v1.5 and PSS).
    Rsa,
}

/// TLS SignatureAndHashAlgorithm / SignatureScheme code points
/// (RFC 5246 §7.4.1.4.1; RFC 8446 §4.2.3 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureScheme(pub u16);

impl SignatureScheme {
    /// ECDSA with SHA-256 (in TLS 1.2 any curve; we sign with P-256).
    pub const ECDSA_SECP256R1_SHA256: Self = SignatureScheme(0x0403);
    /// ECDSA with SHA-384.
    pub const ECDSA_SECP384R1_SHA384: Self = SignatureScheme(0x0503);
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    pub const RSA_PKCS1_SHA256: Self = SignatureScheme(0x0401);
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    pub const RSA_PKCS1_SHA384: Self = SignatureScheme(0x0501);
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    pub const RSA_PKCS1_SHA512: Self = SignatureScheme(0x0601);
    /// RSASSA-PSS (rsaEncryption key) with SHA-256.
    pub const RSA_PSS_RSAE_SHA256: Self = SignatureScheme(0x0804);
    /// RSASSA-PSS (rsaEncryption key) with SHA-384.
    pub const RSA_PSS_RSAE_SHA384: Self = SignatureScheme(0x0805);
    /// RSASSA-PSS (rsaEncryption key) with SHA-512.
    pub const RSA_PSS_RSAE_SHA512: Self = SignatureScheme(0x0806);
}

/// A peer's public key, taken from its certificate's SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    /// Key type (and curve).
    pub algorithm: KeyAlgorithm,
    /// The subjectPublicKey bits: an uncompressed EC point, or a DER
    /// RSAPublicKey.
    pub key: Vec<u8>,
}

impl PublicKeyInfo {
    /// Walks a DER certificate to its SubjectPublicKeyInfo (RFC 5280 §4.1,
    /// RFC 5480 §2, RFC 3279 §2.3.1). Nothing else is checked: in WebRTC the
    /// fingerprint is the trust anchor.
    pub fn parse_certificate(der: &[u8]) -> Result<Self, Error> {
        let mut outer = Der::new(der);
        let cert = outer.parse(TAG_SEQUENCE, "Certificate is not a SEQUENCE")?;
        let mut cert = Der::new(cert);
        let tbs = cert.parse(TAG_SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
        let mut tbs = Der::new(tbs);
        if tbs.peek_tag() == Some(TAG_CONTEXT_0) {
            tbs.parse_any()?; // version
        }
        tbs.parse(TAG_INTEGER, "serialNumber is not an INTEGER")?;
        tbs.parse(TAG_SEQUENCE, "signature is not a SEQUENCE")?;
        tbs.parse(TAG_SEQUENCE, "issuer is not a SEQUENCE")?;
        tbs.parse(TAG_SEQUENCE, "validity is not a SEQUENCE")?;
        tbs.parse(TAG_SEQUENCE, "subject is not a SEQUENCE")?;
        let spki = tbs.parse(TAG_SEQUENCE, "subjectPublicKeyInfo is not a SEQUENCE")?;
        Self::parse_spki(spki)
    }

    /// Parses the contents of a SubjectPublicKeyInfo SEQUENCE.
    fn parse_spki(spki: &[u8]) -> Result<Self, Error> {
        let mut spki = Der::new(spki);
        let alg = spki.parse(TAG_SEQUENCE, "AlgorithmIdentifier is not a SEQUENCE")?;
        let bits = spki.parse(TAG_BIT_STRING, "subjectPublicKey is not a BIT STRING")?;
        let key = match bits {
            [0, key @ ..] => key,
            _ => return Err(Error::BadCertificate("subjectPublicKey has unused bits")),
        };
        let mut alg = Der::new(alg);
        let oid = alg.parse(TAG_OID, "algorithm is not an OID")?;
        let algorithm = if oid == OID_EC_PUBLIC_KEY {
            // RFC 5480 §2.1.1: parameters are a namedCurve OID.
            let curve = alg.parse(TAG_OID, "EC parameters are not a named curve")?;
            if curve == OID_P256 {
                KeyAlgorithm::EcdsaP256
            } else if curve == OID_P384 {
                KeyAlgorithm::EcdsaP384
            } else {
                return Err(Error::UnsupportedAlgorithm(
                    "EC curve other than P-256/P-384",
                ));
            }
        } else if oid == OID_RSA_ENCRYPTION {
            // RFC 3279 §2.3.1: parameters NULL (tolerate absent).
            if alg.peek_tag().is_some() {
                alg.parse(TAG_NULL, "rsaEncryption parameters are not NULL")?;
            }
            KeyAlgorithm::Rsa
        } else if oid == OID_RSASSA_PSS {
            return Err(Error::UnsupportedAlgorithm(
                "RSASSA-PSS-only (id-RSASSA-PSS) keys",
            ));
        } else {
            return Err(Error::UnsupportedAlgorithm("public key type"));
        };
        Ok(PublicKeyInfo {
            algorithm,
            key: key.to_vec(),
        })
    }

    /// Verifies a TLS signature (`DigitallySigned`, RFC 5246 §4.7) made with
    /// this key. ECDSA signatures are DER `Ecdsa-Sig-Value` (RFC 8422 §5.4);
    /// the key's curve and the scheme's hash may mix in TLS 1.2. RSA keys
    /// must be 2048–8192 bits; PSS uses a salt as long as the hash (RFC 8446
    /// §4.2.3).
    pub fn verify(
        &self,
        scheme: SignatureScheme,
        message: &[u8],
        signature_bytes: &[u8],
    ) -> Result<(), Error> {
        use KeyAlgorithm as K;
        use SignatureScheme as S;
        use signature as s;
        let alg: &dyn s::VerificationAlgorithm = match (self.algorithm, scheme) {
            (K::EcdsaP256, S::ECDSA_SECP256R1_SHA256) => &s::ECDSA_P256_SHA256_ASN1,
            (K::EcdsaP256, S::ECDSA_SECP384R1_SHA384) => &s::ECDSA_P256_SHA384_ASN1,
            (K::EcdsaP384, S::ECDSA_SECP256R1_SHA256) => &s::ECDSA_P384_SHA256_ASN1,
            (K::EcdsaP384, S::ECDSA_SECP384R1_SHA384) => &s::ECDSA_P384_SHA384_ASN1,
            (K::Rsa, S::RSA_PKCS1_SHA256) => &s::RSA_PKCS1_2048_8192_SHA256,
            (K::Rsa, S::RSA_PKCS1_SHA384) => &s::RSA_PKCS1_2048_8192_SHA384,
            (K::Rsa, S::RSA_PKCS1_SHA512) => &s::RSA_PKCS1_2048_8192_SHA512,
            (K::Rsa, S::RSA_PSS_RSAE_SHA256) => &s::RSA_PSS_2048_8192_SHA256,
            (K::Rsa, S::RSA_PSS_RSAE_SHA384) => &s::RSA_PSS_2048_8192_SHA384,
            (K::Rsa, S::RSA_PSS_RSAE_SHA512) => &s::RSA_PSS_2048_8192_SHA512,
            _ => {
                return Err(Error::UnsupportedAlgorithm(
                    "signature scheme does not fit the certificate's key",
                ));
            }
        };
        s::UnparsedPublicKey::new(alg, &self.key)
            .verify(message, signature_bytes)
            .map_err(|_| Error::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::test_util::openssl_available;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use std::path::{Path, PathBuf};
    use std::process::Command;
    use std::time::Duration;

    fn at(unix: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(unix)
    }

    fn cert() -> Certificate {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        // 2026-11-25T22:00:00Z
        Certificate::generate(&mut rng, at(1_795_644_000)).unwrap()
    }

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "rtclab-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn path(&self, f: &str) -> PathBuf {
            self.0.join(f)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn openssl(args: &[&str], dir: &Path) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn pem_round_trip_and_openssl_keys() {
        let c = cert();
        let again = Certificate::from_pem(&c.certificate_pem(), &c.private_key_pem()).unwrap();
        assert_eq!(again.der(), c.der());
        assert!(Certificate::from_pem(&c.certificate_pem(), "junk").is_err());
        let other =
            Certificate::generate(&mut rand::rngs::StdRng::seed_from_u64(8), at(0)).unwrap();
        assert_eq!(
            Certificate::from_pem(&c.certificate_pem(), &other.private_key_pem()).unwrap_err(),
            Error::Misuse("private key does not match the certificate")
        );
        if !crate::dtls::test_util::openssl_available() {
            eprintln!("SKIPPED: no openssl for the SEC1/PKCS#8 key test");
            return;
        }
        let dir = TempDir::new("pem-keys");
        // SEC1 (`EC PRIVATE KEY`) and PKCS#8 (`PRIVATE KEY`) as openssl writes them.
        openssl(
            &[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
                "sec1.pem",
            ],
            &dir.0,
        );
        openssl(
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "sec1.pem", "-out", "p8.pem",
            ],
            &dir.0,
        );
        openssl(
            &[
                "req", "-new", "-x509", "-key", "sec1.pem", "-subj", "/CN=t", "-days", "1", "-out",
                "c.pem",
            ],
            &dir.0,
        );
        let cert_pem = std::fs::read_to_string(dir.path("c.pem")).unwrap();
        for key in ["sec1.pem", "p8.pem"] {
            let key_pem = std::fs::read_to_string(dir.path(key)).unwrap();
            let c =
                Certificate::from_pem(&cert_pem, &key_pem).unwrap_or_else(|e| panic!("{key}: {e}"));
            assert!(!c.sign(b"x").unwrap().is_empty());
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        // `date -u -d @1795644000` = Wed Nov 25 22:00:00 UTC 2026
        assert_eq!(civil_from_unix(1_795_644_000), (2026, 11, 25, 22, 0, 0));
        // 2000-02-29T23:59:59Z (a leap day in a century leap year)
        assert_eq!(civil_from_unix(951_868_799), (2000, 2, 29, 23, 59, 59));
        // 2050-01-01T00:00:00Z switches to GeneralizedTime.
        assert_eq!(civil_from_unix(2_524_608_000), (2050, 1, 1, 0, 0, 0));
        let mut v = Vec::new();
        der_emit_time(&mut v, 2_524_608_000);
        assert_eq!(v, b"\x18\x0f20500101000000Z");
        v.clear();
        der_emit_time(&mut v, 1_795_644_000);
        assert_eq!(v, b"\x17\x0d261125220000Z");
    }

    #[test]
    fn der_lengths_and_integers() {
        let mut v = Vec::new();
        der_emit_bytes(&mut v, 4, &[0; 200]);
        assert_eq!(&v[..3], &[4, 0x81, 200]);
        v.clear();
        der_emit_bytes(&mut v, 4, &[0; 300]);
        assert_eq!(&v[..4], &[4, 0x82, 1, 44]);
        v.clear();
        der_emit_unsigned(&mut v, &[0, 0, 0x80]);
        assert_eq!(v, [2, 2, 0, 0x80]);
        v.clear();
        der_emit_unsigned(&mut v, &[0, 0x7f]);
        assert_eq!(v, [2, 1, 0x7f]);
        v.clear();
        der_emit_unsigned(&mut v, &[0]);
        assert_eq!(v, [2, 1, 0]);
    }

    #[test]
    fn our_certificate_reads_back_and_signs() {
        let c = cert();
        let spki = PublicKeyInfo::parse_certificate(c.der()).unwrap();
        assert_eq!(spki.algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(spki.key.len(), 65);
        let sig = c.sign(b"hello").unwrap();
        spki.verify(SignatureScheme::ECDSA_SECP256R1_SHA256, b"hello", &sig)
            .unwrap();
        assert_eq!(
            spki.verify(SignatureScheme::ECDSA_SECP256R1_SHA256, b"hellO", &sig),
            Err(Error::BadSignature)
        );
        assert!(
            spki.verify(SignatureScheme::RSA_PKCS1_SHA256, b"hello", &sig)
                .is_err()
        );
        // PEM round trip and reload.
        let der = parse_pem(&c.certificate_pem(), "CERTIFICATE").unwrap();
        let key = parse_pem(&c.private_key_pem(), "PRIVATE KEY").unwrap();
        assert_eq!(der, c.der());
        let again = Certificate::from_der(der, key).unwrap();
        assert_eq!(again.fingerprint(), c.fingerprint());
        // A key from another certificate is refused.
        let other = cert();
        assert!(Certificate::from_der(c.der().to_vec(), other.pkcs8.clone()).is_err());
    }

    #[test]
    fn fingerprint_text() {
        let c = cert();
        let f = c.fingerprint();
        let text = f.to_string();
        assert!(text.starts_with("sha-256 "));
        assert_eq!(text.len(), "sha-256 ".len() + 32 * 3 - 1);
        assert_eq!(Fingerprint::parse(&text).unwrap(), f);
        assert_eq!(Fingerprint::parse(&text.to_lowercase()).unwrap(), f);
        f.verify(c.der()).unwrap();
        assert_eq!(f.verify(cert().der()), Err(Error::FingerprintMismatch));
        for alg in [
            HashAlgorithm::Sha1,
            HashAlgorithm::Sha384,
            HashAlgorithm::Sha512,
        ] {
            let fp = Fingerprint::parse(&Fingerprint::of(alg, c.der()).to_string()).unwrap();
            fp.verify(c.der()).unwrap();
        }
        for bad in [
            "",
            "sha-256",
            "md5 AB:CD",
            "sha-256 AB:CD",
            "sha-256 ABC:D",
            "sha-1 ZZ:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00",
        ] {
            assert!(Fingerprint::parse(bad).is_err(), "{bad}");
        }
    }

    /// OpenSSL parses our certificate and prints our fingerprint.
    #[test]
    fn openssl_reads_our_certificate() {
        if !openssl_available() {
            eprintln!("SKIPPED openssl_reads_our_certificate: no `openssl` binary on PATH");
            return;
        }
        let dir = TempDir::new("cert");
        let c = cert();
        std::fs::write(dir.path("our.pem"), c.certificate_pem()).unwrap();
        std::fs::write(dir.path("our.key"), c.private_key_pem()).unwrap();
        let text = openssl(&["x509", "-in", "our.pem", "-noout", "-text"], &dir.0);
        assert!(text.contains("Version: 3 (0x2)"), "{text}");
        assert!(text.contains("Issuer: CN = rtclab"), "{text}");
        assert!(text.contains("Subject: CN = rtclab"), "{text}");
        assert!(
            text.contains("Not Before: Nov 24 22:00:00 2026 GMT"),
            "{text}"
        );
        assert!(
            text.contains("Not After : Dec 25 22:00:00 2026 GMT"),
            "{text}"
        );
        assert!(text.contains("ASN1 OID: prime256v1"), "{text}");
        assert!(
            text.contains("Signature Algorithm: ecdsa-with-SHA256"),
            "{text}"
        );
        let fp = openssl(
            &[
                "x509",
                "-in",
                "our.pem",
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
            &dir.0,
        );
        let hex = fp.trim().split_once('=').unwrap().1;
        assert_eq!(format!("sha-256 {hex}"), c.fingerprint().to_string());
        // OpenSSL verifies our self-signature, and accepts our key.
        openssl(
            &["verify", "-CAfile", "our.pem", "-no_check_time", "our.pem"],
            &dir.0,
        );
        let pubkey = openssl(&["pkey", "-in", "our.key", "-pubout"], &dir.0);
        let cert_pub = openssl(&["x509", "-in", "our.pem", "-noout", "-pubkey"], &dir.0);
        assert_eq!(pubkey, cert_pub);
    }

    /// Certificates made by `openssl req -x509` parse with our reader, and
    /// signatures made by `openssl dgst -sign` verify with the key we read.
    #[test]
    fn openssl_certificates_parse_and_verify() {
        if !openssl_available() {
            eprintln!("SKIPPED openssl_certificates_parse_and_verify: no `openssl` binary on PATH");
            return;
        }
        let dir = TempDir::new("peer");
        std::fs::write(dir.path("msg"), b"ServerKeyExchange params").unwrap();
        let msg = b"ServerKeyExchange params";
        type Sig<'a> = (&'a str, &'a [&'a str], SignatureScheme);
        let cases: &[(&str, &[&str], KeyAlgorithm, &[Sig])] = &[
            (
                "p256",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
                KeyAlgorithm::EcdsaP256,
                &[
                    ("-sha256", &[], SignatureScheme::ECDSA_SECP256R1_SHA256),
                    ("-sha384", &[], SignatureScheme::ECDSA_SECP384R1_SHA384),
                ],
            ),
            (
                "p384",
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
                KeyAlgorithm::EcdsaP384,
                &[("-sha384", &[], SignatureScheme::ECDSA_SECP384R1_SHA384)],
            ),
            (
                "rsa",
                &["-newkey", "rsa:2048"],
                KeyAlgorithm::Rsa,
                &[
                    ("-sha256", &[], SignatureScheme::RSA_PKCS1_SHA256),
                    ("-sha512", &[], SignatureScheme::RSA_PKCS1_SHA512),
                    (
                        "-sha256",
                        &[
                            "-sigopt",
                            "rsa_padding_mode:pss",
                            "-sigopt",
                            "rsa_pss_saltlen:digest",
                        ],
                        SignatureScheme::RSA_PSS_RSAE_SHA256,
                    ),
                ],
            ),
        ];
        for (name, keyargs, alg, sigs) in cases {
            let key = format!("{name}.key");
            let pem = format!("{name}.pem");
            let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj", "/CN=peer"];
            args.extend_from_slice(keyargs);
            args.extend_from_slice(&["-keyout", &key, "-out", &pem]);
            openssl(&args, &dir.0);
            let text = std::fs::read_to_string(dir.path(&pem)).unwrap();
            let der = parse_pem(&text, "CERTIFICATE").unwrap();
            let spki = PublicKeyInfo::parse_certificate(&der).unwrap();
            assert_eq!(spki.algorithm, *alg, "{name}");
            let fp = openssl(
                &["x509", "-in", &pem, "-noout", "-fingerprint", "-sha256"],
                &dir.0,
            );
            let fp =
                Fingerprint::parse(&format!("sha-256 {}", fp.trim().split_once('=').unwrap().1))
                    .unwrap();
            fp.verify(&der).unwrap();
            for (digest, extra, scheme) in *sigs {
                let mut args = vec!["dgst", digest, "-sign", &key];
                args.extend_from_slice(extra);
                args.extend_from_slice(&["-out", "sig", "msg"]);
                openssl(&args, &dir.0);
                let sig = std::fs::read(dir.path("sig")).unwrap();
                spki.verify(*scheme, msg, &sig)
                    .unwrap_or_else(|e| panic!("{name} {digest} {extra:?}: {e}"));
                assert_eq!(
                    spki.verify(*scheme, b"other", &sig),
                    Err(Error::BadSignature)
                );
            }
        }
    }

    #[test]
    fn base64_round_trip_edges() {
        for n in 0..10 {
            let data: Vec<u8> = (0..n as u8).collect();
            assert_eq!(parse_base64(&emit_base64(&data)).unwrap(), data);
        }
        assert_eq!(emit_base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(emit_base64(b"fo"), "Zm8=");
    }

    proptest! {
        #[test]
        fn der_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = PublicKeyInfo::parse_certificate(&bytes);
        }

        #[test]
        fn der_reader_survives_mutated_certificates(index in 0usize..400, byte in any::<u8>()) {
            let c = cert();
            let mut der = c.der().to_vec();
            let i = index % der.len();
            der[i] = byte;
            let _ = PublicKeyInfo::parse_certificate(&der);
            let _ = PublicKeyInfo::parse_certificate(&der[..i]);
        }

        #[test]
        fn base64_round_trip(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assert_eq!(parse_base64(&emit_base64(&data)).unwrap(), data);
        }

        #[test]
        fn fingerprint_parse_never_panics(s in "\\PC{0,120}") {
            let _ = Fingerprint::parse(&s);
        }
    }
}
