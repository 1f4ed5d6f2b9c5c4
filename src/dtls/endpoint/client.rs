//! The DTLS 1.2 client's states (RFC 6347 §4.2.4's flights 1, 3 and 5;
//! RFC 5246 §7.3): one type per message it expects next.
//!
//! ```text
//! ExpectServerHello ──HelloVerifyRequest──► ExpectServerHello (hello + cookie)
//!        │ ServerHello
//!        ▼
//! ExpectCertificate ──► ExpectServerKeyExchange ──► ExpectCertificateRequest
//!   (AcceptedCertificate)     (VerifiedKeyShare)         │ CertificateRequest
//!                                                        ▼
//!                          ServerHelloDone ◄── ExpectServerHelloDone
//!                    flight 5 ──► ExpectFinished ──Finished──► Connected
//! ```

use std::time::Instant;

use super::proof::{AuthenticatedPeer, FinishedChecked, VerifiedKeyShare};
use super::{AcceptedCertificate, Endpoint, Failure, Keys, Params, State, ephemeral_key, sha};
use crate::dtls::Error;
use crate::dtls::cert::SignatureScheme;
use crate::dtls::handshake::{
    AlertDescription, CLIENT_SIGNATURE_SCHEMES, CertificateMsg, CertificateRequest, ClientHello,
    ClientKeyExchange, DigitallySigned, Extension, Handshake, HandshakeMessage, NamedGroup,
    ServerHello,
};
use crate::dtls::prf::Sender;
use crate::dtls::record::{CipherSuite, DTLS_1_2};
use ring::agreement;

/// The session_ticket extension type (RFC 5077 §3.2).
const SESSION_TICKET: u16 = 35;

/// ClientHello sent (with the cookie of the last HelloVerifyRequest, if
/// any: it is in the flight kept for retransmission); ServerHello or
/// HelloVerifyRequest next.
pub(super) struct ExpectServerHello {
    /// Our ClientHello offered DTLS 1.3 (the downgrade sentinel is
    /// checked).
    offered_dtls13: bool,
}

impl ExpectServerHello {
    /// After a 1.3 ClientHello that offered 1.2 too
    /// ([`Endpoint::client_after_hello`]).
    pub(super) fn offered_dtls13() -> Self {
        ExpectServerHello {
            offered_dtls13: true,
        }
    }

    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        match parsed {
            Handshake::HelloVerifyRequest(hvr) => {
                if hvr.cookie.is_empty() {
                    return Err((
                        Error::InvalidValue {
                            what: "HelloVerifyRequest cookie length",
                            value: 0,
                        },
                        AlertDescription::ILLEGAL_PARAMETER,
                    ));
                }
                e.core.retransmits = 0;
                e.core.retransmit_timeout = e.core.config.initial_retransmit_timeout;
                let next = e.send_client_hello(now, hvr.cookie, self.offered_dtls13)?;
                Ok(State::ClientExpectServerHello(next))
            }
            Handshake::ServerHello(sh) => {
                let params = self.on_server_hello(e, sh)?;
                msg.emit_unfragmented(&mut e.transcript);
                // The server's first flight is arriving: stop retransmitting
                // ours.
                e.core.retransmit_at = None;
                Ok(State::ClientExpectCertificate(Box::new(
                    ExpectCertificate { params },
                )))
            }
            _ => Err(e.unexpected()),
        }
    }

    fn on_server_hello(&self, e: &Endpoint, sh: ServerHello) -> Result<Params, Failure> {
        if sh.version != DTLS_1_2 {
            return Err((
                Error::InvalidValue {
                    what: "server_version",
                    value: sh.version.into(),
                },
                AlertDescription::PROTOCOL_VERSION,
            ));
        }
        // RFC 8446 §4.1.3: a server that speaks 1.3 but answers 1.2 marks
        // its random; seeing the mark after offering 1.3 means someone
        // removed 1.3 from our hello.
        if self.offered_dtls13 && crate::dtls::v13::messages::has_downgrade_sentinel(&sh.random) {
            return Err((
                Error::InvalidValue {
                    what: "ServerHello random with the DTLS 1.3 downgrade sentinel",
                    value: 0,
                },
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let suite = CipherSuite::from_code(sh.cipher_suite)
            .filter(|s| e.core.config.cipher_suites.contains(s))
            .ok_or((
                Error::InvalidValue {
                    what: "cipher_suite not offered",
                    value: sh.cipher_suite.into(),
                },
                AlertDescription::ILLEGAL_PARAMETER,
            ))?;
        if sh.compression_method != 0 {
            return Err((
                Error::InvalidValue {
                    what: "compression_method",
                    value: sh.compression_method.into(),
                },
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let mut srtp_profile = None;
        let mut ems = false;
        for x in &sh.extensions {
            match x {
                Extension::UseSrtp { profiles, .. } => {
                    // RFC 5764 §4.1.1: exactly one profile, one we offered.
                    match profiles.as_slice() {
                        [p] if e.core.config.srtp_profiles.contains(p) => srtp_profile = Some(*p),
                        _ => {
                            return Err((
                                Error::InvalidValue {
                                    what: "use_srtp profile in ServerHello",
                                    value: profiles.len() as u64,
                                },
                                AlertDescription::ILLEGAL_PARAMETER,
                            ));
                        }
                    }
                }
                Extension::ExtendedMasterSecret => {
                    // RFC 5246 §7.4.1.4: a server may only echo what we offered.
                    if !e.core.config.offer_extended_master_secret {
                        return Err((
                            Error::Misuse("extended_master_secret not offered"),
                            AlertDescription::UNSUPPORTED_EXTENSION,
                        ));
                    }
                    ems = true
                }
                Extension::RenegotiationInfo(r) if !r.is_empty() => {
                    return Err((
                        Error::InvalidValue {
                            what: "renegotiation_info length",
                            value: r.len() as u64,
                        },
                        AlertDescription::HANDSHAKE_FAILURE,
                    ));
                }
                _ => {}
            }
        }
        Ok(Params {
            suite,
            srtp_profile,
            ems,
            server_random: sh.random,
        })
    }
}

/// ServerHello read; the server's Certificate next.
pub(super) struct ExpectCertificate {
    params: Params,
}

impl ExpectCertificate {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::Certificate(c) = parsed else {
            return Err(e.unexpected());
        };
        msg.emit_unfragmented(&mut e.transcript);
        let cert = e.accept_peer_certificate(c)?;
        Ok(State::ClientExpectServerKeyExchange(Box::new(
            ExpectServerKeyExchange {
                params: self.params,
                cert,
            },
        )))
    }
}

/// The server's certificate accepted (its fingerprint checked); its signed
/// ECDHE share next.
pub(super) struct ExpectServerKeyExchange {
    params: Params,
    cert: AcceptedCertificate,
}

impl ExpectServerKeyExchange {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::ServerKeyExchange(ske) = parsed else {
            return Err(e.unexpected());
        };
        if ske.group != NamedGroup::X25519 && ske.group != NamedGroup::SECP256R1 {
            return Err((
                Error::UnsupportedAlgorithm("ECDHE group not offered"),
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let share = VerifiedKeyShare::verify(
            &self.cert,
            self.params.suite,
            &e.core.client_random,
            &self.params.server_random,
            &ske,
        )?;
        msg.emit_unfragmented(&mut e.transcript);
        Ok(State::ClientExpectCertificateRequest(Box::new(
            ExpectCertificateRequest {
                params: self.params,
                cert: self.cert,
                share,
            },
        )))
    }
}

/// The server's share verified; CertificateRequest or ServerHelloDone next.
pub(super) struct ExpectCertificateRequest {
    params: Params,
    cert: AcceptedCertificate,
    share: VerifiedKeyShare,
}

impl ExpectCertificateRequest {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        match parsed {
            Handshake::CertificateRequest(cr) => {
                if !cr
                    .signature_schemes
                    .contains(&SignatureScheme::ECDSA_SECP256R1_SHA256)
                    || !cr
                        .certificate_types
                        .contains(&CertificateRequest::ECDSA_SIGN)
                {
                    return Err((
                        Error::UnsupportedAlgorithm(
                            "server does not accept ECDSA P-256 client certificates",
                        ),
                        AlertDescription::HANDSHAKE_FAILURE,
                    ));
                }
                msg.emit_unfragmented(&mut e.transcript);
                Ok(State::ClientExpectServerHelloDone(Box::new(
                    ExpectServerHelloDone {
                        params: self.params,
                        cert: self.cert,
                        share: self.share,
                    },
                )))
            }
            Handshake::ServerHelloDone => {
                msg.emit_unfragmented(&mut e.transcript);
                e.send_flight5(now, self.params, self.cert, self.share, false)
            }
            _ => Err(e.unexpected()),
        }
    }
}

/// The server asked for our certificate; ServerHelloDone next.
pub(super) struct ExpectServerHelloDone {
    params: Params,
    cert: AcceptedCertificate,
    share: VerifiedKeyShare,
}

impl ExpectServerHelloDone {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::ServerHelloDone = parsed else {
            return Err(e.unexpected());
        };
        msg.emit_unfragmented(&mut e.transcript);
        e.send_flight5(now, self.params, self.cert, self.share, true)
    }
}

/// Flight 5 sent; the server's Finished next (a NewSessionTicket may come
/// before it).
pub(super) struct ExpectFinished {
    keys: Keys,
    server: AuthenticatedPeer,
}

impl ExpectFinished {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        match parsed {
            Handshake::NewSessionTicket(_) => {
                // RFC 5077 §3.3: part of the transcript; we do not resume.
                msg.emit_unfragmented(&mut e.transcript);
                Ok(State::ClientExpectFinished(Box::new(self)))
            }
            Handshake::Finished(v) => {
                let checked =
                    FinishedChecked::check(&self.keys, Sender::Server, &e.transcript, &v)?;
                msg.emit_unfragmented(&mut e.transcript);
                e.established(&self.keys, self.server, checked)
            }
            _ => Err(e.unexpected()),
        }
    }
}

impl Endpoint {
    fn client_hello(&self, cookie: Vec<u8>) -> ClientHello {
        let mut extensions = vec![
            Extension::SupportedGroups(vec![NamedGroup::X25519, NamedGroup::SECP256R1]),
            Extension::EcPointFormats(vec![0]),
            Extension::SignatureAlgorithms(CLIENT_SIGNATURE_SCHEMES.to_vec()),
            Extension::RenegotiationInfo(Vec::new()),
        ];
        if self.core.config.offer_extended_master_secret {
            extensions.push(Extension::ExtendedMasterSecret);
        }
        if self.core.config.offer_session_ticket {
            extensions.push(Extension::Unknown {
                typ: SESSION_TICKET,
                data: Vec::new(),
            });
        }
        if !self.core.config.srtp_profiles.is_empty() {
            extensions.push(Extension::UseSrtp {
                profiles: self.core.config.srtp_profiles.clone(),
                mki: Vec::new(),
            });
        }
        ClientHello {
            version: DTLS_1_2,
            random: self.core.client_random,
            session_id: Vec::new(),
            cookie,
            cipher_suites: self
                .core
                .config
                .cipher_suites
                .iter()
                .map(|s| s.code())
                .collect(),
            compression_methods: vec![0],
            extensions,
        }
    }

    /// Flights 1 and 3: the ClientHello, with the cookie once the server
    /// sent one.
    pub(super) fn send_client_hello(
        &mut self,
        now: Instant,
        cookie: Vec<u8>,
        offered_dtls13: bool,
    ) -> Result<ExpectServerHello, Failure> {
        self.begin_flight();
        // RFC 6347 §4.2.6: the transcript starts with the ClientHello that
        // the server accepts; a HelloVerifyRequest resets it.
        self.transcript.clear();
        let hello = Handshake::ClientHello(self.client_hello(cookie));
        self.add_message(&hello);
        self.send_handshake_flight(now, true)?;
        Ok(ExpectServerHello { offered_dtls13 })
    }

    /// Flight 5: [Certificate], ClientKeyExchange, [CertificateVerify],
    /// ChangeCipherSpec, Finished. Needs the server's share as verified by
    /// its accepted certificate.
    fn send_flight5(
        &mut self,
        now: Instant,
        params: Params,
        cert: AcceptedCertificate,
        share: VerifiedKeyShare,
        certificate_requested: bool,
    ) -> Result<State, Failure> {
        let (alg, private, public) = ephemeral_key(share.group())?;
        // RFC 8422 §5.10: the premaster secret is the shared x-coordinate
        // (X25519: the shared secret), which is what ring returns.
        let pms = agreement::agree_ephemeral(
            private,
            &agreement::UnparsedPublicKey::new(alg, share.public_key()),
            |k| k.to_vec(),
        )
        .map_err(|_| {
            (
                Error::InvalidValue {
                    what: "peer ECDHE public key",
                    value: share.public_key().len() as u64,
                },
                AlertDescription::ILLEGAL_PARAMETER,
            )
        })?;
        let server = AuthenticatedPeer::server(cert, &share);
        self.begin_flight();
        if certificate_requested {
            let cert = Handshake::Certificate(CertificateMsg {
                certificates: vec![self.core.config.certificate.der().to_vec()],
            });
            self.add_message(&cert);
        }
        self.add_message(&Handshake::ClientKeyExchange(ClientKeyExchange {
            public_key: public,
        }));
        let (keys, write, read) = self.derive_keys(params, &pms)?;
        if certificate_requested {
            // RFC 5246 §7.4.8: signature over all handshake messages so far.
            let sig = self
                .core
                .config
                .certificate
                .sign(&self.transcript)
                .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
            self.add_message(&Handshake::CertificateVerify(DigitallySigned {
                scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
                signature: sig,
            }));
        }
        self.core.records.install_read(read);
        let h = keys.params.suite.prf_hash();
        let verify = keys.master.verify_data(
            h,
            Sender::Client,
            &sha(h.digest_algorithm(), &self.transcript),
        );
        self.send_with_finished(now, write, verify, true)?;
        Ok(State::ClientExpectFinished(Box::new(ExpectFinished {
            keys,
            server,
        })))
    }
}
