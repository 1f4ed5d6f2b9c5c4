//! DTLS 1.3 (RFC 9147 on RFC 8446): the building blocks of the handshake
//! Chromium and Firefox already offer, each tested on its own.
//!
//! ## What DTLS 1.3 changes from the 1.2 of [`super`]
//!
//! - **Version negotiation** by the `supported_versions` extension (0xfefc);
//!   every hello says 0xfefd in legacy_version (RFC 9147 §5.3). A 1.3
//!   server that picks 1.2 marks its random with a downgrade sentinel
//!   (RFC 8446 §4.1.3).
//! - **One round trip**: the key share travels in the ClientHello
//!   (key_share, RFC 8446 §4.2.8) and everything after the ServerHello is
//!   encrypted (epoch 2), application data in epoch 3 and up (RFC 9147
//!   §6.1). ServerKeyExchange, ServerHelloDone, ClientKeyExchange and
//!   ChangeCipherSpec are gone; EncryptedExtensions and the 1.3 forms of
//!   Certificate, CertificateRequest and CertificateVerify come in.
//! - **The cookie** moves from HelloVerifyRequest to HelloRetryRequest
//!   (RFC 9147 §5.1), and the transcript replaces a retried ClientHello by
//!   its hash (RFC 8446 §4.4.1).
//! - **Key schedule**: HKDF stages instead of the PRF, with labels
//!   prefixed `"dtls13"` (RFC 9147 §5.9); a separate key per direction and
//!   epoch, plus an `sn` key for record numbers.
//! - **Records**: protected records use the short unified header (RFC 9147
//!   §4) whose sequence number is encrypted (§4.2.3), and carry their true
//!   content type inside, with optional padding (RFC 8446 §5.4).
//! - **Reliability by ACK**: the receiver names the handshake records it
//!   got (content type 26, RFC 9147 §7), so a sender retransmits only what
//!   was lost rather than whole flights.
//! - **KeyUpdate** replaces renegotiation; epochs are 64-bit (RFC 9147 §8).
//! - **The transcript** leaves out DTLS's message_seq and fragment fields
//!   (RFC 9147 §5.2).
//!
//! ## The 1-RTT handshake, as WebRTC runs it (mutual authentication)
//!
//! ```text
//!   client                                              server
//!   ClientHello (key_share: X25519MLKEM768, ...)  ───►              epoch 0
//!                          ◄───  ServerHello (key_share)              epoch 0
//!                                {EncryptedExtensions (use_srtp)}     epoch 2
//!                                {CertificateRequest}
//!                                {Certificate} {CertificateVerify}
//!                                {Finished}
//!   {Certificate} {CertificateVerify} {Finished}  ───►              epoch 2
//!                          ◄───  [ACK]                                epoch 3
//!   [application data]           ◄──────►    [application data]     epoch 3
//! ```
//!
//! ## Implemented so far
//!
//! - [`key_schedule`]: HKDF-Expand-Label with the prefix as a parameter,
//!   Derive-Secret, the early/handshake/master stages, traffic keys, IVs
//!   and `sn` keys, Finished, KeyUpdate's next secret, the exporter for
//!   SRTP, the 1.3 key log lines; checked against RFC 8448 §3.
//! - [`record`]: DTLSPlaintext and the unified header, AES-128-GCM over
//!   DTLSInnerPlaintext, record number encryption, epoch and sequence
//!   reconstruction, per-epoch replay windows, several records per
//!   datagram; RFC 8448's client Finished record as vector.
//! - [`messages`]: the 1.3 hellos (typed, on the 1.2 wire codec) and every
//!   other 1.3 handshake message, and ACK; RFC 8448's messages and real
//!   Chromium 156 ClientHellos as vectors.
//! - [`key_share`]: X25519, P-256 and X25519MLKEM768 (ML-KEM-768 from
//!   RustCrypto's `ml-kem`), with a known answer from another ML-KEM.
//! - [`transcript`]: the running hash with the HelloRetryRequest rule.
//! - A test driving a whole handshake through these pieces by hand
//!   (`tests.rs`): the script the state machine follows.
//! - [`endpoint`]: the handshake state machines, client and server, as one
//!   sans-IO [`endpoint::Endpoint`] implementing [`crate::machine::Machine`]:
//!   one type per expected message (`endpoint/client.rs`, `server.rs`),
//!   holding only what is known there, with the certificate,
//!   CertificateVerify and Finished checks as proof values the next
//!   state's constructor requires (`proof.rs`); ClientHello with a share of each
//!   configured group (X25519MLKEM768 and X25519 by default), stateless
//!   HelloRetryRequest cookies and group retries (RFC 9147 §5.1, RFC 8446
//!   §4.1.4), EncryptedExtensions with use_srtp, mutual ECDSA P-256
//!   authentication with the SDP fingerprint checked, one handshake
//!   fragment per record so that ACKs (RFC 9147 §7) name exactly what
//!   arrived and only the rest is resent, on a doubling timer and in the
//!   epoch first used (§5.8), a delayed ACK for a partial flight,
//!   KeyUpdate both ways (§8), close_notify and fatal alerts, the SRTP
//!   exporter, the five TLS 1.3 key log lines; and a client that offers
//!   1.2 too and hands a 1.2 answer over
//!   ([`crate::dtls::endpoint_auto::AutoEndpoint`] does the hand-over).
//!   Tested in memory (loss, reordering, duplication, 300-byte MTU, lost
//!   ACKs, KeyUpdate, wrong fingerprint), in the simulator
//!   (`tests/dtls13_sim.rs`), against Chromium and Firefox in both roles
//!   with data channels and video (`tests/browser_dtls13.rs`) and against
//!   dimpl, a third DTLS 1.3 implementation (`tests/dtls13_dimpl.rs`).
//!
//! ## Not yet here
//!
//! Only TLS_AES_128_GCM_SHA256; no PSK, 0-RTT, connection IDs or session
//! tickets (NewSessionTicket is acknowledged and ignored). The server's
//! first flight is paced by nothing but the MTU; the 1.3 record layer does
//! not reuse application-data buffers yet (1.2's does); the server does
//! not send application data before the client's Finished (0.5-RTT).

pub mod endpoint;
pub mod key_schedule;
pub mod key_share;
pub mod messages;
pub mod record;
pub mod transcript;

#[cfg(test)]
mod tests;
