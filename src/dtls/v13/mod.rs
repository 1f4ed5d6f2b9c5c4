//! DTLS 1.3 (RFC 9147 on RFC 8446): the building blocks.
//!
//! What DTLS 1.3 changes from the 1.2 of [`super`]:
//!
//! - **Key schedule**: HKDF instead of the PRF, secrets per stage (handshake,
//!   application), labels prefixed `"dtls13"` (RFC 9147 §5.9; RFC 8446 §7)
//!   ([`key_schedule`]).
//! - **Encrypted handshake**: everything after ServerHello travels in epoch 2
//!   (handshake keys); application data in epoch 3 and up (RFC 9147 §6.1).
//! - **Unified record header** for protected records: one flags byte
//!   `0b001CSLEE`, an 8- or 16-bit sequence number, an optional length; the
//!   epoch is only its low two bits (RFC 9147 §4); and **record number
//!   encryption** hides the sequence number (§4.2.3) ([`record`]).
//! - **Version negotiation** by `supported_versions` (0xfefc); the cookie
//!   moves from HelloVerifyRequest to HelloRetryRequest (§5.1); the
//!   handshake messages keep DTLS's 12-byte header (§5.2); ServerKeyExchange
//!   and ServerHelloDone are gone, EncryptedExtensions and the 1.3 forms of
//!   Certificate/CertificateRequest/CertificateVerify come in
//!   ([`messages`]).
//! - **ACKs**: the handshake's reliability uses explicit ACK messages
//!   (content type 26) listing received record numbers, instead of only
//!   retransmitting whole flights (§7).
//! - **Key shares** in the first flight (key_share), including the
//!   post-quantum hybrid X25519MLKEM768 browsers send ([`key_share`]).
//! - **KeyUpdate** replaces renegotiation; epochs are 64-bit (§8).
//!
//! This module holds the pieces, each tested on its own (RFC 8448 vectors for
//! the schedule and the record AEAD). The handshake state machine that
//! assembles them, with typed states, comes next.

pub mod key_schedule;
pub mod key_share;
pub mod messages;
pub mod record;
pub mod transcript;

#[cfg(test)]
mod tests;
