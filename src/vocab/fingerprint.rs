//! A certificate fingerprint (RFC 8122 §5, RFC 4572 §5): what SDP's
//! `a=fingerprint` line carries and what DTLS checks the peer's
//! certificate against (RFC 8842 §5). Both sides use this one type; SDP's
//! attribute keeps the line as written (any hash name) and converts with
//! `sdp::Fingerprint::to_dtls`.

use std::fmt;

use ring::digest;

/// A hash function a fingerprint may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// `sha-1` (still allowed for verifying a peer's fingerprint).
    Sha1,
    /// `sha-256`, what we generate.
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl HashAlgorithm {
    /// The SDP token (RFC 8122 §5: the IANA "Hash Function Textual Names").
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha1 => "sha-1",
            HashAlgorithm::Sha256 => "sha-256",
            HashAlgorithm::Sha384 => "sha-384",
            HashAlgorithm::Sha512 => "sha-512",
        }
    }

    /// The algorithm of a token, compared without regard to case (RFC 8122
    /// §5).
    pub fn from_name(name: &str) -> Option<HashAlgorithm> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sha-1" => HashAlgorithm::Sha1,
            "sha-256" => HashAlgorithm::Sha256,
            "sha-384" => HashAlgorithm::Sha384,
            "sha-512" => HashAlgorithm::Sha512,
            _ => return None,
        })
    }

    /// The digest length in bytes.
    pub fn output_len(self) -> usize {
        self.digest().output_len()
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            HashAlgorithm::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlgorithm::Sha256 => &digest::SHA256,
            HashAlgorithm::Sha384 => &digest::SHA384,
            HashAlgorithm::Sha512 => &digest::SHA512,
        }
    }
}

/// Why a fingerprint's text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FingerprintError {
    /// No space between the hash name and the digest.
    Shape,
    /// A hash function we do not know.
    UnknownHash,
    /// A byte that is not two hex digits.
    BadHex,
    /// The digest's length is not the hash function's.
    WrongLength {
        /// The hash function's length.
        expected: usize,
        /// The bytes given.
        got: usize,
    },
}

impl fmt::Display for FingerprintError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FingerprintError::Shape => f.write_str("fingerprint needs `ALGORITHM HEX:HEX:…`"),
            FingerprintError::UnknownHash => f.write_str("unsupported fingerprint hash function"),
            FingerprintError::BadHex => {
                f.write_str("fingerprint bytes must be two hex digits each")
            }
            FingerprintError::WrongLength { expected, got } => write!(
                f,
                "fingerprint has {got} bytes, its hash function {expected}"
            ),
        }
    }
}

impl std::error::Error for FingerprintError {}

/// A certificate fingerprint as carried in `a=fingerprint:` (RFC 8122 §5):
/// `sha-256 AB:CD:…`, the hash of the DER certificate in upper-case hex pairs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash function.
    pub algorithm: HashAlgorithm,
    /// The digest bytes.
    pub value: Vec<u8>,
}

impl Fingerprint {
    /// Hashes a DER certificate.
    pub fn of(algorithm: HashAlgorithm, certificate_der: &[u8]) -> Self {
        Fingerprint {
            algorithm,
            value: digest::digest(algorithm.digest(), certificate_der)
                .as_ref()
                .to_vec(),
        }
    }

    /// Whether `certificate_der` hashes to this fingerprint.
    pub fn matches(&self, certificate_der: &[u8]) -> bool {
        Fingerprint::of(self.algorithm, certificate_der) == *self
    }

    /// Parses `sha-256 AB:CD:…` (the value of `a=fingerprint:`). The hash
    /// name is case-insensitive (RFC 8122 §5 says "case-insensitive" for the
    /// token), and so are the hex digits.
    pub fn parse(text: &str) -> Result<Self, FingerprintError> {
        let text = text.trim();
        let (name, hex) = text.split_once(' ').ok_or(FingerprintError::Shape)?;
        let algorithm = HashAlgorithm::from_name(name).ok_or(FingerprintError::UnknownHash)?;
        let expected = algorithm.output_len();
        let mut value = Vec::with_capacity(expected);
        for pair in hex.trim().split(':') {
            if pair.len() != 2 {
                return Err(FingerprintError::BadHex);
            }
            // Bounded: a digest is at most 64 bytes.
            if value.len() == expected {
                return Err(FingerprintError::WrongLength {
                    expected,
                    got: hex.trim().split(':').count(),
                });
            }
            let byte = u8::from_str_radix(pair, 16).map_err(|_| FingerprintError::BadHex)?;
            value.push(byte);
        }
        if value.len() != expected {
            return Err(FingerprintError::WrongLength {
                expected,
                got: value.len(),
            });
        }
        Ok(Fingerprint { algorithm, value })
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm.name())?;
        for (i, b) in self.value.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_refusals() {
        let f = Fingerprint::of(HashAlgorithm::Sha256, b"certificate");
        let text = f.to_string();
        assert!(text.starts_with("sha-256 "));
        assert_eq!(Fingerprint::parse(&text), Ok(f.clone()));
        assert_eq!(Fingerprint::parse(&text.to_lowercase()), Ok(f.clone()));
        assert!(f.matches(b"certificate"));
        assert!(!f.matches(b"another"));
        assert_eq!(Fingerprint::parse("sha-256"), Err(FingerprintError::Shape));
        assert_eq!(
            Fingerprint::parse("md5 AB:CD"),
            Err(FingerprintError::UnknownHash)
        );
        assert_eq!(
            Fingerprint::parse("sha-256 AB:CD"),
            Err(FingerprintError::WrongLength {
                expected: 32,
                got: 2
            })
        );
        assert_eq!(
            Fingerprint::parse("sha-256 ABC:D"),
            Err(FingerprintError::BadHex)
        );
        let long = format!("{text}:00");
        assert!(matches!(
            Fingerprint::parse(&long),
            Err(FingerprintError::WrongLength { expected: 32, .. })
        ));
    }
}
