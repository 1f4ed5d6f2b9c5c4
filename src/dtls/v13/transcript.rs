//! The running transcript hash of a DTLS 1.3 handshake (RFC 8446 §4.4.1,
//! RFC 9147 §5.2).
//!
//! Two rules make it differ from DTLS 1.2's:
//!
//! - RFC 9147 §5.2: each message enters the hash in its TLS 1.3 form,
//!   `msg_type (1) || length (3) || body`, *without* DTLS's message_seq,
//!   fragment_offset and fragment_length (1.2 hashed the 12-byte header).
//!   Retransmissions and fragments never enter it: one message, once.
//! - RFC 8446 §4.4.1: when the server answers the first ClientHello with a
//!   HelloRetryRequest, that ClientHello is replaced by a synthetic
//!   `message_hash` message holding its hash:
//!
//! ```text
//! Transcript-Hash(ClientHello1, HelloRetryRequest, ... Mn) =
//!     Hash(message_hash ||        /* Handshake type 254 */
//!          00 00 Hash.length ||   /* Handshake message length (bytes) */
//!          Hash(ClientHello1) ||  /* Hash of ClientHello1 */
//!          HelloRetryRequest || ... || Mn)
//! ```
//!
//! so that a stateless server can rebuild the transcript from the hash it
//! kept in its cookie.

use ring::digest;

use super::key_schedule::{HASH_LEN, TranscriptHash};
use super::messages::msg_type;
use crate::dtls::handshake::{HandshakeMessage, HandshakeType};

/// A running SHA-256 over the handshake messages in their TLS 1.3 form.
#[derive(Clone)]
pub struct Transcript {
    hash: digest::Context,
    messages: usize,
}

impl std::fmt::Debug for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcript")
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

/// The 4-byte TLS 1.3 handshake header of a message (RFC 8446 §4): type and
/// 24-bit length. Bodies of 2^24 bytes or more cannot exist (the DTLS
/// header's length is 24 bits too); a longer slice is a bug in rtclab.
pub fn tls_header(typ: HandshakeType, body_len: usize) -> [u8; 4] {
    assert!(body_len < 1 << 24, "handshake body over 2^24 bytes (bug)");
    let l = (body_len as u32).to_be_bytes();
    [typ.to_u8(), l[1], l[2], l[3]]
}

impl Transcript {
    /// An empty transcript.
    pub fn new() -> Self {
        Transcript {
            hash: digest::Context::new(&digest::SHA256),
            messages: 0,
        }
    }

    /// RFC 8446 §4.4.1: the transcript after a HelloRetryRequest, starting
    /// with the synthetic `message_hash` message that stands for the first
    /// ClientHello, given that ClientHello's hash ([`Transcript::hash`] of a
    /// transcript holding only it). Add the HelloRetryRequest next.
    pub fn after_hello_retry(client_hello1_hash: &TranscriptHash) -> Self {
        let mut t = Transcript::new();
        t.add(msg_type::MESSAGE_HASH, client_hello1_hash);
        t
    }

    /// Adds one whole message (type and body; RFC 9147 §5.2: no DTLS
    /// fields).
    pub fn add(&mut self, typ: HandshakeType, body: &[u8]) {
        self.hash.update(&tls_header(typ, body.len()));
        self.hash.update(body);
        self.messages += 1;
    }

    /// Adds a reassembled DTLS handshake message (its message_seq is left
    /// out, as RFC 9147 §5.2 says).
    pub fn add_message(&mut self, message: &HandshakeMessage) {
        self.add(message.msg_type, &message.body);
    }

    /// The hash of everything added so far (the transcript goes on).
    pub fn hash(&self) -> TranscriptHash {
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(self.hash.clone().finish().as_ref());
        out
    }

    /// How many messages were added (the synthetic message_hash counts).
    pub fn messages(&self) -> usize {
        self.messages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtls::test_util::hex;
    use crate::dtls::v13::key_schedule::sha256;
    use crate::dtls::v13::messages::{self, Handshake, ServerHelloKind};

    /// RFC 8448 §3: the messages added one by one (TLS framing split into
    /// type and body) give the hashes the trace prints for its secrets.
    #[test]
    fn rfc8448_transcript() {
        let msgs = messages::tests::rfc8448_messages();
        let mut t = Transcript::new();
        let mut hashes = Vec::new();
        for (_, m) in &msgs {
            let typ = HandshakeType::from_u8(m[0]);
            t.add(typ, &m[4..]);
            hashes.push(t.hash());
        }
        assert_eq!(t.messages(), 7);
        assert_eq!(
            hashes[1].to_vec(),
            hex("860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8")
        );
        assert_eq!(
            hashes[5].to_vec(),
            hex("9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13")
        );
        assert_eq!(
            hashes[6].to_vec(),
            hex("209145a96ee8e2a122ff810047cc952684658d6049e86429426db87c54ad143d")
        );
        // Hashing never consumed the running state.
        assert_eq!(t.hash(), hashes[6]);
    }

    /// The same message through DTLS's 12-byte header and fragmentation
    /// gives the same transcript as its TLS form (RFC 9147 §5.2).
    #[test]
    fn dtls_fields_stay_out() {
        let msgs = messages::tests::rfc8448_messages();
        let (_, cert) = &msgs[3];
        let message = HandshakeMessage {
            msg_type: HandshakeType::Certificate,
            message_seq: 7,
            body: cert[4..].to_vec(),
        };
        let mut a = Transcript::new();
        a.add_message(&message);
        assert_eq!(a.hash(), sha256(cert));
    }

    /// RFC 8446 §4.4.1's construction, byte by byte, with RFC 8448 §5's
    /// HelloRetryRequest (its legacy_version made DTLS's) after a stand-in
    /// first ClientHello.
    #[test]
    fn hello_retry_request_substitution() {
        let ch1 = b"first ClientHello body".to_vec();
        let mut first = Transcript::new();
        first.add(HandshakeType::ClientHello, &ch1);
        let ch1_hash = first.hash();
        assert_eq!(
            ch1_hash,
            sha256(&[&tls_header(HandshakeType::ClientHello, ch1.len())[..], &ch1].concat())
        );

        let mut hrr = hex(RFC8448_HRR);
        hrr[4..6].copy_from_slice(&messages::DTLS_1_2.to_be_bytes());
        let Ok(Handshake::ServerHello(ServerHelloKind::HelloRetryRequest(parsed))) =
            Handshake::parse(HandshakeType::ServerHello, &hrr[4..])
        else {
            panic!("RFC 8448's HelloRetryRequest does not parse");
        };
        assert_eq!(
            parsed.selected_group,
            Some(crate::dtls::handshake::NamedGroup::SECP256R1)
        );
        assert_eq!(parsed.cookie.as_ref().map(Vec::len), Some(0x72));

        let mut t = Transcript::after_hello_retry(&ch1_hash);
        t.add(HandshakeType::ServerHello, &hrr[4..]);
        let mut manual = vec![254, 0, 0, 32];
        manual.extend_from_slice(&ch1_hash);
        manual.extend_from_slice(&hrr);
        assert_eq!(t.hash(), sha256(&manual));
        assert_eq!(t.messages(), 2);
    }

    /// RFC 8448 §5: the server's HelloRetryRequest (176 octets, TLS framing),
    /// asking for a P-256 share and carrying a cookie.
    const RFC8448_HRR: &str = "
        02 00 00 ac 03 03 cf 21 ad 74 e5 9a 61 11 be 1d 8c 02 1e 65 b8 91 c2 a2
        11 16 7a bb 8c 5e 07 9e 09 e2 c8 a8 33 9c 00 13 01 00 00 84 00 33 00 02
        00 17 00 2c 00 74 00 72 71 dc d0 4b b8 8b c3 18 91 19 39 8a 00 00 00 00
        ee fa fc 76 c1 46 b8 23 b0 96 f8 aa ca d3 65 dd 00 30 95 3f 4e df 62 56
        36 e5 f2 1b b2 e2 3f cc 65 4b 1b 5b 40 31 8d 10 d1 37 ab cb b8 75 74 e3
        6e 8a 1f 02 5f 7d fa 5d 6e 50 78 1b 5e da 4a a1 5b 0c 8b e7 78 25 7d 16
        aa 30 30 e9 e7 84 1d d9 e4 c0 34 22 67 e8 ca 0c af 57 1f b2 b7 cf f0 f9
        34 b0 00 2b 00 02 03 04";
}
