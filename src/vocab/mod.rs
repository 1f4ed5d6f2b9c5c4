//! Leaf vocabulary: the few types that modules of one layer and another
//! both speak, kept here so that neither imports the other sideways
//! (DESIGN §1: leaf vocabulary → protocol modules → `peer` → app tier →
//! runtime). This module imports nothing from the crate.
//!
//! - [`DtlsRole`]: which side of the DTLS handshake (SDP's `a=setup`
//!   decides it, DTLS runs by it, data channels pick stream ids by it);
//! - [`fingerprint`]: a certificate's fingerprint (SDP carries it, DTLS
//!   checks it);
//! - [`candidate`]: an ICE candidate and its `candidate:` line (the agent
//!   pairs it, SDP and signaling carry it);
//! - [`mid`]: an m-line's id as a `Copy` value (SDP names it, RTP carries
//!   it, `peer` routes by it);
//! - [`codec`]: media kinds, RTCP feedback tokens and the codec registry
//!   (SDP offers it, RTP packetizes by it);
//! - [`nat`]: RFC 4787's mapping and filtering behaviours (STUN discovery
//!   reports them, the simulator's NAT behaves by them).

pub mod candidate;
pub mod codec;
pub mod fingerprint;
pub mod mid;
pub mod nat;

pub use candidate::{Candidate, CandidateError, CandidateKind};
pub use codec::{Feedback, MediaKind};
pub use fingerprint::{Fingerprint, FingerprintError, HashAlgorithm};
pub use mid::Mid;
pub use nat::{FilteringBehavior, MappingBehavior};

/// Which side of the DTLS handshake an endpoint takes (RFC 5763 §5: the
/// SDP `a=setup` answer decides it). DTLS runs the handshake by it; data
/// channels pick their stream ids by it (RFC 8832 §6: the client uses even
/// ids, the server odd ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DtlsRole {
    /// Sends the ClientHello (`a=setup:active`).
    Client,
    /// Answers it (`a=setup:passive`).
    Server,
}
