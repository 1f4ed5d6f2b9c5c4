//! The DTLS 1.2 server's states (RFC 6347 §4.2.4's flights 2, 4 and 6;
//! RFC 5246 §7.3): one type per message it expects next.
//!
//! ```text
//! ExpectClientHello ──no valid cookie──► HelloVerifyRequest (no state kept)
//!        │ ClientHello + cookie: flight 4
//!        ▼
//! ExpectCertificate ──► ExpectClientKeyExchange ──► ExpectCertificateVerify
//!  (AcceptedCertificate)        (keys derived)         (ClientKeyProven)
//!                                                        ▼
//!                         Connected ◄──Finished── ExpectFinished (flight 6)
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use ring::{agreement, hmac};

use super::proof::{AuthenticatedPeer, ClientKeyProven, FinishedChecked};
use super::{
    AcceptedCertificate, Endpoint, Failure, Keys, Params, State, Version, ephemeral_key, ring_eq,
    sha,
};
use crate::dtls::Error;
use crate::dtls::cert::SignatureScheme;
use crate::dtls::handshake::{
    AlertDescription, CertificateMsg, CertificateRequest, ClientHello, DigitallySigned, Extension,
    Handshake, HandshakeMessage, HelloVerifyRequest, NamedGroup, Reassembler, ServerHello,
    ServerKeyExchange, extension_type,
};
use crate::dtls::prf::Sender;
use crate::dtls::record::{Authentication, ContentType, DTLS_1_2, RecordProtection};
use crate::machine::Transmit;

/// Our ephemeral ECDHE key, kept from flight 4 for the ClientKeyExchange.
struct Ecdhe {
    group: NamedGroup,
    private: agreement::EphemeralPrivateKey,
}

/// Flight 4 sent, a certificate asked for; the client's Certificate next.
pub(super) struct ExpectCertificate {
    params: Params,
    ecdhe: Ecdhe,
}

impl ExpectCertificate {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        match parsed {
            Handshake::Certificate(c) => {
                msg.emit_unfragmented(&mut e.transcript);
                e.core.retransmit_at = None;
                let cert = e.accept_peer_certificate(c)?;
                Ok(State::ServerExpectClientKeyExchange(Box::new(
                    ExpectClientKeyExchange {
                        params: self.params,
                        ecdhe: self.ecdhe,
                        client: Some(cert),
                    },
                )))
            }
            Handshake::ClientKeyExchange(_) => Err((
                Error::BadCertificate("client sent no certificate"),
                AlertDescription::HANDSHAKE_FAILURE,
            )),
            _ => Err(e.unexpected()),
        }
    }
}

/// The client's ECDHE share next (after its accepted certificate, if one
/// was asked for).
pub(super) struct ExpectClientKeyExchange {
    params: Params,
    ecdhe: Ecdhe,
    client: Option<AcceptedCertificate>,
}

impl ExpectClientKeyExchange {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::ClientKeyExchange(cke) = parsed else {
            return Err(e.unexpected());
        };
        e.core.retransmit_at = None;
        let alg = if self.ecdhe.group == NamedGroup::X25519 {
            &agreement::X25519
        } else {
            &agreement::ECDH_P256
        };
        let pms = agreement::agree_ephemeral(
            self.ecdhe.private,
            &agreement::UnparsedPublicKey::new(alg, &cke.public_key),
            |k| k.to_vec(),
        )
        .map_err(|_| {
            (
                Error::InvalidValue {
                    what: "client ECDHE public key",
                    value: cke.public_key.len() as u64,
                },
                AlertDescription::ILLEGAL_PARAMETER,
            )
        })?;
        msg.emit_unfragmented(&mut e.transcript);
        let (keys, write, read) = e.derive_keys(self.params, &pms)?;
        e.core.records.install_read(read);
        Ok(match self.client {
            Some(cert) => State::ServerExpectCertificateVerify(Box::new(ExpectCertificateVerify {
                keys,
                write,
                cert,
            })),
            None => State::ServerExpectFinished(Box::new(ExpectFinished {
                keys,
                write,
                client: None,
            })),
        })
    }
}

/// Keys derived; the client's CertificateVerify next.
pub(super) struct ExpectCertificateVerify {
    keys: Keys,
    /// Our write keys, installed when our ChangeCipherSpec goes out.
    write: RecordProtection,
    cert: AcceptedCertificate,
}

impl ExpectCertificateVerify {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::CertificateVerify(cv) = parsed else {
            return Err(e.unexpected());
        };
        let proven = ClientKeyProven::verify(self.cert, &e.transcript, &cv)?;
        msg.emit_unfragmented(&mut e.transcript);
        Ok(State::ServerExpectFinished(Box::new(ExpectFinished {
            keys: self.keys,
            write: self.write,
            client: Some(proven),
        })))
    }
}

/// The client's Finished next; a client that sent a certificate has proven
/// its key by now (the only way to hold a [`ClientKeyProven`]).
pub(super) struct ExpectFinished {
    keys: Keys,
    write: RecordProtection,
    client: Option<ClientKeyProven>,
}

impl ExpectFinished {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::Finished(v) = parsed else {
            return Err(e.unexpected());
        };
        let checked = FinishedChecked::check(&self.keys, Sender::Client, &e.transcript, &v)?;
        let Some(client) = self.client else {
            return Err((
                Error::BadCertificate("peer sent no certificate"),
                AlertDescription::HANDSHAKE_FAILURE,
            ));
        };
        msg.emit_unfragmented(&mut e.transcript);
        e.begin_flight();
        let h = self.keys.params.suite.prf_hash();
        let hash = sha(h.digest_algorithm(), &e.transcript);
        let verify = self.keys.master.verify_data(h, Sender::Server, &hash);
        e.send_with_finished(now, self.write, verify, false)?;
        e.established(&self.keys, AuthenticatedPeer::client(client), checked)
    }
}

impl Endpoint {
    fn cookie_for(&self, peer: SocketAddr, ch: &ClientHello) -> Vec<u8> {
        // RFC 6347 §4.2.1: Cookie = HMAC(Secret, Client-IP, Client-Parameters).
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.core.cookie_secret);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(peer.to_string().as_bytes());
        ctx.update(&ch.random);
        ctx.update(&ch.session_id);
        for s in &ch.cipher_suites {
            ctx.update(&s.to_be_bytes());
        }
        ctx.sign().as_ref()[..20].to_vec()
    }

    /// A ClientHello while waiting for one. Without a valid cookie the
    /// answer is a HelloVerifyRequest and no state is kept; with one, the
    /// peer is set and flight 4 sent.
    pub(super) fn server_on_client_hello(
        &mut self,
        now: Instant,
        msg: &HandshakeMessage,
        record_seq: u64,
        source: SocketAddr,
    ) -> Result<(), Failure> {
        let ch = ClientHello::parse(&msg.body).map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        if self.core.config.use_cookie {
            let expected = self.cookie_for(source, &ch);
            if !ring_eq(&ch.cookie, &expected) {
                // Stateless: the HelloVerifyRequest reuses the ClientHello's
                // message_seq and record sequence number (RFC 6347 §4.2.1).
                let hvr = Handshake::HelloVerifyRequest(HelloVerifyRequest {
                    version: DTLS_1_2,
                    cookie: expected,
                });
                let m = hvr.to_message(msg.message_seq);
                let mut body = Vec::new();
                m.emit_unfragmented(&mut body);
                let mut out = Vec::new();
                crate::dtls::record::Record {
                    header: crate::dtls::record::RecordHeader {
                        content_type: ContentType::Handshake,
                        version: DTLS_1_2,
                        epoch: 0,
                        sequence: record_seq,
                        length: 0,
                    },
                    fragment: &body,
                }
                .emit(&mut out);
                self.core.transmits.push_back(Transmit {
                    source: self.core.local,
                    destination: source,
                    contents: out,
                });
                return Ok(());
            }
        }
        self.core.peer = Some(source);
        // Negotiate.
        let suite = self
            .core
            .config
            .cipher_suites
            .iter()
            .copied()
            // Our certificate is ECDSA: ECDHE_RSA suites are the client's only.
            .filter(|s| s.authentication() == Authentication::Ecdsa)
            .find(|s| ch.cipher_suites.contains(&s.code()))
            .ok_or((
                Error::UnsupportedAlgorithm("no common cipher suite"),
                AlertDescription::HANDSHAKE_FAILURE,
            ))?;
        let mut group = None;
        let mut srtp_profile = None;
        let mut ems = false;
        let mut reneg = ch.cipher_suites.contains(&0x00ff);
        let mut ecdsa_ok = true;
        for e in &ch.extensions {
            match e {
                Extension::SupportedGroups(groups) => {
                    group = [NamedGroup::X25519, NamedGroup::SECP256R1]
                        .into_iter()
                        .find(|g| groups.contains(g));
                }
                Extension::UseSrtp { profiles, .. } => {
                    srtp_profile = self
                        .core
                        .config
                        .srtp_profiles
                        .iter()
                        .copied()
                        .find(|p| profiles.contains(p));
                }
                Extension::ExtendedMasterSecret => ems = true,
                Extension::RenegotiationInfo(r) => {
                    if !r.is_empty() {
                        return Err((
                            Error::InvalidValue {
                                what: "renegotiation_info length",
                                value: r.len() as u64,
                            },
                            AlertDescription::HANDSHAKE_FAILURE,
                        ));
                    }
                    reneg = true;
                }
                Extension::SignatureAlgorithms(s) => {
                    ecdsa_ok = s.contains(&SignatureScheme::ECDSA_SECP256R1_SHA256)
                }
                _ => {}
            }
        }
        // RFC 8422 §4: without supported_groups, P-256 may be assumed.
        let group = if ch.extension(extension_type::SUPPORTED_GROUPS).is_none() {
            Some(NamedGroup::SECP256R1)
        } else {
            group
        }
        .ok_or((
            Error::UnsupportedAlgorithm("no common ECDHE group"),
            AlertDescription::HANDSHAKE_FAILURE,
        ))?;
        if !ecdsa_ok {
            return Err((
                Error::UnsupportedAlgorithm("client does not accept ecdsa_secp256r1_sha256"),
                AlertDescription::HANDSHAKE_FAILURE,
            ));
        }
        self.core.client_random = ch.random;
        let mut server_random = [0u8; 32];
        rand::Rng::fill(&mut self.core.rng, &mut server_random);
        if self.core.config.max_version >= Version::Dtls13 {
            // RFC 8446 §4.1.3: a server able to do 1.3 that negotiates
            // 1.2 says so in the last 8 bytes of its random.
            server_random[24..].copy_from_slice(&crate::dtls::v13::messages::DOWNGRADE_TO_1_2);
        }
        let params = Params {
            suite,
            srtp_profile,
            ems,
            server_random,
        };
        // The handshake proper: the transcript starts with this ClientHello.
        // Our message_seq restarts from the ClientHello's (0 without a
        // cookie exchange; 1 after it, since our HelloVerifyRequest counted
        // as 0: RFC 6347 §4.2.2), and our record sequence numbers continue
        // after the HelloVerifyRequest's.
        self.transcript.clear();
        msg.emit_unfragmented(&mut self.transcript);
        self.core.next_send_seq = msg.message_seq;
        self.core.reassembler = Reassembler::with_next_seq(msg.message_seq.wrapping_add(1));
        self.core.records.set_write_sequence(record_seq);
        self.state = self.send_flight4(now, params, group, reneg)?;
        Ok(())
    }

    /// Flight 4: ServerHello, Certificate, ServerKeyExchange (signed),
    /// [CertificateRequest], ServerHelloDone.
    fn send_flight4(
        &mut self,
        now: Instant,
        params: Params,
        group: NamedGroup,
        reneg: bool,
    ) -> Result<State, Failure> {
        let mut extensions = Vec::new();
        if reneg {
            extensions.push(Extension::RenegotiationInfo(Vec::new()));
        }
        if params.ems {
            extensions.push(Extension::ExtendedMasterSecret);
        }
        if let Some(p) = params.srtp_profile {
            extensions.push(Extension::UseSrtp {
                profiles: vec![p],
                mki: Vec::new(),
            });
        }
        extensions.push(Extension::EcPointFormats(vec![0]));
        self.begin_flight();
        self.add_message(&Handshake::ServerHello(ServerHello {
            version: DTLS_1_2,
            random: params.server_random,
            session_id: Vec::new(),
            cipher_suite: params.suite.code(),
            compression_method: 0,
            extensions,
        }));
        self.add_message(&Handshake::Certificate(CertificateMsg {
            certificates: vec![self.core.config.certificate.der().to_vec()],
        }));
        // Our ephemeral key: generate now, keep the private half for the
        // ClientKeyExchange.
        let (_, private, public) = ephemeral_key(group)?;
        let mut ske = ServerKeyExchange {
            group,
            public_key: public,
            signed: DigitallySigned {
                scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
                signature: Vec::new(),
            },
        };
        let mut signed = Vec::new();
        signed.extend_from_slice(&self.core.client_random);
        signed.extend_from_slice(&params.server_random);
        signed.extend_from_slice(&ske.params());
        ske.signed.signature = self
            .core
            .config
            .certificate
            .sign(&signed)
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
        self.add_message(&Handshake::ServerKeyExchange(ske));
        let ecdhe = Ecdhe { group, private };
        if self.core.config.require_client_certificate {
            // RFC 5246 §7.4.4: ECDSA and RSA client certificates both
            // verify (AcceptedCertificate's key checks either);
            // GStreamer's webrtcbin makes an RSA-2048 one.
            self.add_message(&Handshake::CertificateRequest(CertificateRequest {
                certificate_types: vec![
                    CertificateRequest::ECDSA_SIGN,
                    CertificateRequest::RSA_SIGN,
                ],
                signature_schemes: vec![
                    SignatureScheme::ECDSA_SECP256R1_SHA256,
                    SignatureScheme::RSA_PSS_RSAE_SHA256,
                    SignatureScheme::RSA_PKCS1_SHA256,
                ],
                authorities: Vec::new(),
            }));
        }
        self.add_message(&Handshake::ServerHelloDone);
        self.send_handshake_flight(now, true)?;
        Ok(if self.core.config.require_client_certificate {
            State::ServerExpectCertificate(Box::new(ExpectCertificate { params, ecdhe }))
        } else {
            State::ServerExpectClientKeyExchange(Box::new(ExpectClientKeyExchange {
                params,
                ecdhe,
                client: None,
            }))
        })
    }
}
