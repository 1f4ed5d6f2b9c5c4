//! Leaf vocabulary: the few types that modules of one layer and another
//! both speak, kept here so that neither imports the other sideways
//! (DESIGN §1: leaf vocabulary → protocol modules → `peer` → app tier →
//! runtime). This module imports nothing from the crate.

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
