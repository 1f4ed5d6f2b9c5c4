//! Values that exist only once a DTLS 1.3 check ran (DESIGN §2): their
//! fields are private to this module, so a state that holds one cannot be
//! built without running the check. Both start, as 1.2's do, from the
//! [`AcceptedCertificate`] (the certificate hashes to the SDP's
//! fingerprint), which is shared with 1.2.

use super::super::key_schedule::{self as ks, Secret};
use super::super::messages as m;
use super::super::transcript::Transcript;
use super::{P, SIGNATURE_SCHEMES};
use crate::dtls::Error;

pub(super) use crate::dtls::endpoint::AcceptedCertificate;

/// The accepted certificate's key signed the transcript
/// (CertificateVerify, RFC 8446 §4.4.3).
#[derive(Debug)]
pub(super) struct VerifiedPeer(AcceptedCertificate);

impl VerifiedPeer {
    /// Checks `cv` over the transcript hash up to (not including) it, with
    /// the context string of `signer` (RFC 8446 §4.4.3: 64 spaces, the
    /// context, a zero byte, the hash).
    pub(super) fn verify(
        cert: AcceptedCertificate,
        signer: m::Signer,
        transcript_hash: &ks::TranscriptHash,
        cv: &m::CertificateVerify,
    ) -> Result<Self, Error> {
        // RFC 8446 §4.4.3: PKCS#1 v1.5 is not for CertificateVerify.
        if !SIGNATURE_SCHEMES.contains(&cv.scheme) {
            return Err(Error::UnsupportedAlgorithm("CertificateVerify scheme"));
        }
        let content = m::CertificateVerify::signed_content(signer, transcript_hash);
        cert.verify_signature(cv.scheme, &content, &cv.signature)?;
        Ok(VerifiedPeer(cert))
    }

    pub(super) fn certificate(&self) -> &AcceptedCertificate {
        &self.0
    }
}

/// The peer's Finished matched our transcript (RFC 8446 §4.4.4).
#[derive(Debug)]
pub(super) struct FinishedChecked(());

impl FinishedChecked {
    /// `f` must be the HMAC, under the finished key of the peer's
    /// handshake traffic secret `base_key`, of the transcript hash up to
    /// (not including) it.
    pub(super) fn check(
        base_key: &Secret,
        transcript: &Transcript,
        f: &m::Finished,
    ) -> Result<Self, Error> {
        let key = ks::finished_key(P, base_key);
        if ks::verify_finished(&key, &transcript.hash(), &f.verify_data) {
            Ok(FinishedChecked(()))
        } else {
            Err(Error::BadFinished)
        }
    }
}
