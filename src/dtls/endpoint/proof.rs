//! Values that exist only once a check ran (DESIGN §2): their fields are
//! private to this module, so a state that holds one cannot be built
//! without running the check in its constructor. Each starts from an
//! [`AcceptedCertificate`] (the fingerprint check).

use super::{AcceptedCertificate, Failure, Keys, ring_eq, sha};
use crate::dtls::Error;
use crate::dtls::handshake::{AlertDescription, DigitallySigned, NamedGroup, ServerKeyExchange};
use crate::dtls::prf::Sender;
use crate::dtls::record::CipherSuite;

/// The server's ECDHE share, signed by the accepted certificate's key
/// over client_random + server_random + ServerECDHParams (RFC 8422 §5.4).
#[derive(Debug)]
pub(super) struct VerifiedKeyShare {
    group: NamedGroup,
    public_key: Vec<u8>,
}

impl VerifiedKeyShare {
    /// The key kind must fit `suite` (RFC 8422 §5.3: ECDHE_ECDSA or
    /// ECDHE_RSA), the scheme be one we offered, and the signature verify
    /// (`ServerKeyExchange::verify`).
    pub(super) fn verify(
        cert: &AcceptedCertificate,
        suite: CipherSuite,
        client_random: &[u8; 32],
        server_random: &[u8; 32],
        ske: &ServerKeyExchange,
    ) -> Result<Self, Failure> {
        ske.verify(cert.key(), suite, client_random, server_random)
            .map_err(|e| {
                let alert = match e {
                    Error::BadSignature => AlertDescription::DECRYPT_ERROR,
                    Error::UnsupportedAlgorithm(_) => AlertDescription::UNSUPPORTED_CERTIFICATE,
                    _ => AlertDescription::ILLEGAL_PARAMETER,
                };
                (e, alert)
            })?;
        Ok(VerifiedKeyShare {
            group: ske.group,
            public_key: ske.public_key.clone(),
        })
    }

    pub(super) fn group(&self) -> NamedGroup {
        self.group
    }

    pub(super) fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

/// The client signed the transcript with its certificate's key
/// (CertificateVerify, RFC 5246 §7.4.8).
#[derive(Debug)]
pub(super) struct ClientKeyProven(AcceptedCertificate);

impl ClientKeyProven {
    pub(super) fn verify(
        cert: AcceptedCertificate,
        transcript: &[u8],
        cv: &DigitallySigned,
    ) -> Result<Self, Failure> {
        cert.verify_signature(cv.scheme, transcript, &cv.signature)
            .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
        Ok(ClientKeyProven(cert))
    }
}

/// The peer proved it holds the accepted certificate's key: the server by
/// signing its ECDHE share, the client by its CertificateVerify.
#[derive(Debug)]
pub(super) struct AuthenticatedPeer(AcceptedCertificate);

impl AuthenticatedPeer {
    /// The server: its certificate and the share that certificate signed.
    pub(super) fn server(cert: AcceptedCertificate, _signed: &VerifiedKeyShare) -> Self {
        AuthenticatedPeer(cert)
    }

    /// The client, by its CertificateVerify.
    pub(super) fn client(proven: ClientKeyProven) -> Self {
        AuthenticatedPeer(proven.0)
    }

    pub(super) fn certificate(&self) -> &AcceptedCertificate {
        &self.0
    }
}

/// The peer's Finished matched the transcript hash under the master secret
/// (RFC 5246 §7.4.9).
#[derive(Debug)]
pub(super) struct FinishedChecked(());

impl FinishedChecked {
    pub(super) fn check(
        keys: &Keys,
        sender: Sender,
        transcript: &[u8],
        verify_data: &[u8; 12],
    ) -> Result<Self, Failure> {
        let h = keys.params.suite.prf_hash();
        let expected = keys
            .master
            .verify_data(h, sender, &sha(h.digest_algorithm(), transcript));
        if ring_eq(&expected, verify_data) {
            Ok(FinishedChecked(()))
        } else {
            Err((Error::BadFinished, AlertDescription::DECRYPT_ERROR))
        }
    }
}
