//! DTLS 1.2: the handshake that authenticates a WebRTC peer and keys its
//! media and data.
//!
//! Once ICE has found a working 5-tuple, the two peers run a DTLS 1.2
//! handshake over it (RFC 8842). It does three jobs:
//!
//! 1. **Authenticates** each peer by its certificate, whose hash both sides
//!    already exchanged in SDP (`a=fingerprint:sha-256 AB:CD:…`): no
//!    certificate authority, just "is this the certificate the signaling said
//!    it would be" ([`cert`]).
//! 2. **Protects the data channel**: SCTP runs inside DTLS application-data
//!    records ([`record`]).
//! 3. **Keys SRTP**: the `use_srtp` extension picks an SRTP profile, and the
//!    exporter of RFC 5705 with label `EXTRACTOR-dtls_srtp` yields the SRTP
//!    master keys and salts for both directions (RFC 5764 §4.2, [`prf`]).
//!
//! ## The flights (RFC 6347 §4.2.4; mutual authentication as WebRTC needs)
//!
//! ```text
//!   client (setup:active)                           server (setup:passive)
//!   1  ClientHello                  ───────►
//!   2                               ◄───────  HelloVerifyRequest (cookie)
//!   3  ClientHello (+cookie)        ───────►
//!   4                               ◄───────  ServerHello, Certificate,
//!                                             ServerKeyExchange (ECDHE, signed),
//!                                             CertificateRequest, ServerHelloDone
//!   5  Certificate, ClientKeyExchange,
//!      CertificateVerify, [ChangeCipherSpec],
//!      Finished                     ───────►
//!   6                               ◄───────  [NewSessionTicket], [ChangeCipherSpec],
//!                                             Finished
//!      application data (SCTP)      ◄──────►  application data
//! ```
//!
//! Flights 2–3 are optional (a server may skip the cookie). Each flight is
//! retransmitted whole until the next one arrives; Finished is protected in
//! epoch 1.
//!
//! ## The record header (RFC 6347 §4.1)
//!
//! ```text
//! +--------+----------+--------+--------------------+--------+-----------
//! | type   | version  | epoch  | sequence number    | length | fragment …
//! | 1 byte | 2 (fefd) | 2      | 6                  | 2      | length bytes
//! +--------+----------+--------+--------------------+--------+-----------
//! ```
//!
//! Inside handshake records, each message fragment has its own 12-byte
//! header (msg_type, length, message_seq, fragment_offset, fragment_length:
//! see [`handshake`]).
//!
//! ## Implemented so far
//!
//! - [`prf`]: PRF P_SHA256/P_SHA384 (RFC 5246 §5), master secret (§8.1) and
//!   extended master secret (RFC 7627 §4), key block (§6.3), Finished
//!   verify_data (§7.4.9), exporter (RFC 5705 §4), SRTP key split (RFC 5764
//!   §4.2).
//! - [`cert`]: self-signed ECDSA P-256 X.509 v3 certificates with our own DER
//!   writer (RFC 5280 §4.1), PEM (RFC 7468), fingerprints (RFC 8122 §5), a
//!   SubjectPublicKeyInfo reader (RFC 5480, RFC 3279) and signature
//!   verification for ECDSA P-256/P-384 and RSA PKCS#1 v1.5 / PSS.
//! - [`record`]: record framing (RFC 6347 §4.1), AEAD protection for
//!   TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 / _AES_256_GCM_SHA384 (RFC 5288
//!   §3, RFC 5289) and _CHACHA20_POLY1305_SHA256 (RFC 7905 §2), and the
//!   same three with ECDHE_RSA (a client's only: a server with an RSA
//!   certificate, GStreamer's; ours is always ECDSA), the
//!   anti-replay window (RFC 6347 §4.1.2.6), silent discard of bad records
//!   (§4.1.2.7).
//! - [`handshake`]: handshake fragments, fragmentation and bounded
//!   reassembly (RFC 6347 §4.2.2–4.2.3), every message of the flights above
//!   plus NewSessionTicket (RFC 5077 §3.3), the extensions WebRTC uses
//!   (use_srtp RFC 5764 §4.1.1, extended_master_secret, renegotiation_info
//!   RFC 5746, supported_groups and ec_point_formats RFC 8422 §5.1,
//!   signature_algorithms, supported_versions), Alerts (RFC 5246 §7.2).
//! - [`endpoint`]: the client and server state machines, one type per
//!   "expecting X" state (`endpoint/client.rs`, `endpoint/server.rs`,
//!   rustls's shape), under one sans-IO [`endpoint::Endpoint`]
//!   implementing [`crate::machine::Machine`]: flights packed to the MTU
//!   and retransmitted on a doubling timer (RFC 6347 §4.2.4,
//!   `endpoint/flight.rs`), stateless HelloVerifyRequest cookies (§4.2.1),
//!   ECDHE with X25519 or P-256 (RFC 8422), ECDSA P-256 signatures both
//!   ways with CertificateRequest / CertificateVerify (RFC 5246 §7.4.4,
//!   §7.4.8), the SDP fingerprint check, Finished (§7.4.9), use_srtp and
//!   the SRTP exporter, fatal alerts on failure, close_notify, records of
//!   the next epoch buffered (bounded), the NSS key log line. What a state
//!   relies on (the fingerprint checked, the ServerKeyExchange signature
//!   verified, CertificateVerify verified, Finished checked) is a proof
//!   value (`endpoint/proof.rs`) that only the checking constructor makes
//!   and that the next state needs to be built. Proven against
//!   `openssl s_server` and `openssl s_client` (`tests/dtls_openssl.rs`).
//! - [`crate::speed::dtls`](mod@crate::speed::dtls): the figures for
//!   `rtclab speed dtls`.
//! - [`v13`]: DTLS 1.3 (RFC 9147): key schedule, record layer, messages,
//!   key shares (X25519MLKEM768 too) and the handshake state machines.
//! - [`endpoint_auto`]: one endpoint for both versions: 1.2 by default,
//!   1.3 offered with [`endpoint::Config::max_version`], falling back to
//!   1.2 with a peer that answers 1.2 (downgrade sentinel checked); what
//!   `peer::Transport` runs.
//! - `core` (crate-private): the scaffolding both endpoints are built on,
//!   so that 1.2 and 1.3 differ only in their handshake states, record
//!   layers and flights: the peer and its path, the caller's RNG, message
//!   numbering and reassembly, the retransmission timer, the transmit and
//!   event queues, sending records and alerts, failing with a fatal
//!   alert, the fingerprint check of the peer's certificate, the peer's
//!   alerts.
//!
//! Around it: `rtclab dtls client|server --dtls 1.2|1.3|auto`, a small
//! `openssl s_client/s_server` (handshake over UDP with the runtime's
//! `Driver`; it prints the version, suite, 1.3 key share, SRTP profile, the
//! peer's fingerprint and the keying material, carries stdin lines as
//! application data, and appends the key log (1.2's `CLIENT_RANDOM` line or
//! 1.3's traffic secrets) to `SSLKEYLOGFILE`; `rtclab xray` decrypts both
//! versions from a capture's key log;
//! `tests/dtls_cli.rs` runs it against OpenSSL); handshakes in the
//! [`crate::sim`] network under loss, reordering, duplication and a
//! 300-byte MTU (`tests/sim_dtls.rs`); fuzz targets `dtls_record`,
//! `dtls_handshake` and `dtls_endpoint` in `fuzz/`; chapter 5's DTLS part
//! with `examples/05_dtls.rs`.
//!
//! ## Not yet here
//!
//! We sign only with ECDSA P-256 (RSA and P-384 peers are verified, not
//! impersonated) and offer only X25519 and P-256 for ECDHE in 1.2. Renegotiation, session
//! resumption, connection IDs and CBC suites are out of scope.

pub mod cert;
mod codec;
mod core;
pub mod endpoint;
pub mod endpoint_auto;
mod error;
pub mod handshake;
pub mod prf;
pub mod record;
pub mod v13;

pub use error::Error;

#[cfg(test)]
pub(crate) mod test_util {
    /// Decodes hex (whitespace ignored); panics on bad input (tests only).
    pub(crate) fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(s.len() % 2 == 0, "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    /// Whether an `openssl` binary runs here.
    pub(crate) fn openssl_available() -> bool {
        std::process::Command::new("openssl")
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }
}
