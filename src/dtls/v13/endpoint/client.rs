//! The DTLS 1.3 client's states (RFC 8446 §4, RFC 9147 §5): one type per
//! message it expects next, each consuming itself on that message and
//! returning the next state.
//!
//! ```text
//! ExpectServerHello ──HelloRetryRequest──► ExpectServerHello (new hello)
//!    │ ServerHello (1.3)            └──ServerHello 1.2 / HelloVerifyRequest──► FellBack
//!    ▼                                   (when 1.2 was offered too)
//! ExpectEncryptedExtensions ──► ExpectCertificate ──CertificateRequest──► ExpectCertificate
//!                                    │ Certificate (AcceptedCertificate)
//!                                    ▼
//!                          ExpectCertificateVerify ──(VerifiedPeer)──► ExpectFinished
//!                 flight 3 ◄── Finished (FinishedChecked) ──► Connected
//! ```

use std::time::Instant;

use super::super::key_schedule::{self as ks, EarlySecret};
use super::super::key_share::ClientShare;
use super::super::messages::{self as m, Handshake, ServerHelloKind};
use super::super::transcript::Transcript;
use super::proof::{AcceptedCertificate, VerifiedPeer};
use super::{
    Endpoint, Failure, Fallback, GROUPS, HandshakeKeys, P, Role, SIGNATURE_SCHEMES, State,
    unexpected,
};
use crate::dtls::Error;
use crate::dtls::cert::SignatureScheme;
use crate::dtls::handshake::{AlertDescription, Extension, HandshakeMessage, HandshakeType};

/// ClientHello sent (kept in the flight for retransmission); ServerHello,
/// HelloRetryRequest or, when 1.2 was offered too, a 1.2 answer next.
#[derive(Debug)]
pub(super) struct ExpectServerHello {
    /// Our shares (one per group offered).
    shares: Vec<ClientShare>,
    transcript: Transcript,
    /// The ClientHello as sent (for a fallback to 1.2).
    hello_message: HandshakeMessage,
    /// A HelloRetryRequest was answered already (a second one is fatal,
    /// RFC 8446 §4.1.4).
    retried: bool,
}

impl ExpectServerHello {
    /// The first ClientHello: a share of each configured group, queued as
    /// flight 1 (the caller sends it).
    pub(super) fn first(e: &mut Endpoint) -> Result<Self, Failure> {
        let mut shares = Vec::new();
        for g in &e.core.config.dtls13_key_shares {
            shares.push(
                ClientShare::generate(*g, &mut e.core.rng)
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?,
            );
        }
        let hello = client_hello(e, &shares, None);
        Ok(Self::queue(e, shares, Transcript::new(), hello, false))
    }

    /// Queues `hello` as a new flight 1 and waits for its answer.
    fn queue(
        e: &mut Endpoint,
        shares: Vec<ClientShare>,
        mut transcript: Transcript,
        hello: m::ClientHello,
        retried: bool,
    ) -> Self {
        e.begin_flight();
        e.queue(Handshake::ClientHello(hello), 0, Some(&mut transcript));
        let hello_message = e.flight[0].message.clone();
        ExpectServerHello {
            shares,
            transcript,
            hello_message,
            retried,
        }
    }

    pub(super) fn handle(
        mut self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
    ) -> Result<State, Failure> {
        if msg.msg_type == HandshakeType::HelloVerifyRequest && e.offer_dtls12 {
            // Only a 1.2 server sends it (RFC 9147 §5.1 replaced it).
            return Ok(self.fall_back(e));
        }
        if msg.msg_type != HandshakeType::ServerHello {
            return Err(unexpected("expected a ServerHello"));
        }
        let parsed = match ServerHelloKind::parse(&msg.body) {
            Ok(p) => p,
            Err(err) => {
                // RFC 8446 §4.2.1: no supported_versions means the server
                // chose 1.2; hand over if we offered it.
                if e.offer_dtls12 && !self.retried {
                    return Ok(self.fall_back(e));
                }
                return Err((err, AlertDescription::PROTOCOL_VERSION));
            }
        };
        match parsed {
            ServerHelloKind::HelloRetryRequest(hrr) => self.on_hello_retry(e, now, msg, hrr),
            ServerHelloKind::ServerHello(sh) => {
                if sh.selected_version == m::DTLS_1_2 && e.offer_dtls12 && !self.retried {
                    return Ok(self.fall_back(e));
                }
                check_version_and_suite(sh.selected_version, sh.cipher_suite)?;
                let ks_entry = sh.key_share.ok_or((
                    Error::InvalidValue {
                        what: "ServerHello without key_share",
                        value: 0,
                    },
                    AlertDescription::MISSING_EXTENSION,
                ))?;
                let idx = self
                    .shares
                    .iter()
                    .position(|s| s.group() == ks_entry.group)
                    .ok_or((
                        Error::InvalidValue {
                            what: "ServerHello key_share group (not offered)",
                            value: ks_entry.group.0.into(),
                        },
                        AlertDescription::ILLEGAL_PARAMETER,
                    ))?;
                let share = self.shares.swap_remove(idx);
                let shared = share
                    .complete(&ks_entry.key_exchange)
                    .map_err(|e| (e, AlertDescription::ILLEGAL_PARAMETER))?;
                let mut transcript = self.transcript;
                transcript.add_message(msg);
                let secret = EarlySecret::new(P).handshake_secret(shared.as_bytes());
                let traffic = secret.traffic_secrets(&transcript.hash());
                e.install(2, &traffic.server, &traffic.client)?;
                // The ClientHello is answered: flight 1 is done.
                e.begin_flight();
                e.core.retransmit_at = None;
                e.group = Some(ks_entry.group);
                Ok(State::ClientExpectEncryptedExtensions(Box::new(
                    ExpectEncryptedExtensions {
                        keys: HandshakeKeys {
                            transcript,
                            secret,
                            traffic,
                            srtp_profile: None,
                            group: ks_entry.group,
                        },
                    },
                )))
            }
        }
    }

    /// A HelloRetryRequest (RFC 8446 §4.1.4, RFC 9147 §5.1): a cookie to
    /// echo and/or the one group the server wants a share of.
    fn on_hello_retry(
        self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
        hrr: m::HelloRetryRequest,
    ) -> Result<State, Failure> {
        if self.retried {
            return Err((
                Error::Misuse("a second HelloRetryRequest (RFC 8446 §4.1.4)"),
                AlertDescription::UNEXPECTED_MESSAGE,
            ));
        }
        check_version_and_suite(hrr.selected_version, hrr.cipher_suite)?;
        // RFC 8446 §4.4.1: ClientHello1 becomes its hash.
        let ch1 = self.transcript.hash();
        let mut transcript = Transcript::after_hello_retry(&ch1);
        transcript.add_message(msg);
        let mut shares = self.shares;
        if let Some(g) = hrr.selected_group {
            if !GROUPS.contains(&g) || shares.iter().any(|s| s.group() == g) {
                return Err((
                    Error::InvalidValue {
                        what: "HelloRetryRequest selected_group",
                        value: g.0.into(),
                    },
                    AlertDescription::ILLEGAL_PARAMETER,
                ));
            }
            shares = vec![
                ClientShare::generate(g, &mut e.core.rng)
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?,
            ];
        } else if hrr.cookie.is_none() {
            return Err((
                Error::Misuse("HelloRetryRequest that changes nothing"),
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let mut hello = client_hello(e, &shares, hrr.cookie);
        // After a 1.3 HelloRetryRequest the server has chosen 1.3.
        hello.supported_versions = vec![m::DTLS_1_3];
        hello.cipher_suites = vec![m::TLS_AES_128_GCM_SHA256];
        let next = Self::queue(e, shares, transcript, hello, true);
        e.send_flight(now);
        Ok(State::ClientExpectServerHello(Box::new(next)))
    }

    /// The server answered 1.2: the 1.2 machine continues from our hello.
    fn fall_back(self, e: &mut Endpoint) -> State {
        e.flight.clear();
        e.core.retransmit_at = None;
        tracing::debug!("DTLS server answered 1.2: falling back");
        State::FellBack(Box::new(Fallback {
            hello: self.hello_message,
            client_random: e.core.client_random,
        }))
    }
}

/// ServerHello read, handshake keys installed (epoch 2);
/// EncryptedExtensions next.
#[derive(Debug)]
pub(super) struct ExpectEncryptedExtensions {
    keys: HandshakeKeys,
}

impl ExpectEncryptedExtensions {
    pub(super) fn handle(
        mut self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::EncryptedExtensions(ee) = parsed else {
            return Err(unexpected("expected EncryptedExtensions"));
        };
        if let Some(u) = ee.use_srtp {
            // RFC 5764 §4.1.1: the server picks one profile we offered.
            match u.profiles.as_slice() {
                [p] if e.core.config.srtp_profiles.contains(p) => {
                    self.keys.srtp_profile = Some(*p);
                }
                _ => {
                    return Err((
                        Error::InvalidValue {
                            what: "use_srtp profile chosen by the server",
                            value: u.profiles.first().map_or(0, |p| p.0.into()),
                        },
                        AlertDescription::ILLEGAL_PARAMETER,
                    ));
                }
            }
        }
        self.keys.transcript.add_message(msg);
        Ok(State::ClientExpectCertificate(Box::new(
            ExpectCertificate {
                keys: self.keys,
                requested: false,
            },
        )))
    }
}

/// EncryptedExtensions read; CertificateRequest (once) or the server's
/// Certificate next.
#[derive(Debug)]
pub(super) struct ExpectCertificate {
    keys: HandshakeKeys,
    /// The server asked for our certificate (RFC 8446 §4.3.2).
    requested: bool,
}

impl ExpectCertificate {
    pub(super) fn handle(
        mut self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        match parsed {
            Handshake::CertificateRequest(cr) if !self.requested => {
                if !cr.context.is_empty()
                    || !cr
                        .signature_algorithms
                        .contains(&SignatureScheme::ECDSA_SECP256R1_SHA256)
                {
                    return Err((
                        Error::UnsupportedAlgorithm(
                            "server does not accept ECDSA P-256 client certificates",
                        ),
                        AlertDescription::HANDSHAKE_FAILURE,
                    ));
                }
                self.keys.transcript.add_message(msg);
                self.requested = true;
                Ok(State::ClientExpectCertificate(Box::new(self)))
            }
            Handshake::Certificate(c) => {
                let cert = e.accept_certificate(c)?;
                self.keys.transcript.add_message(msg);
                Ok(State::ClientExpectCertificateVerify(Box::new(
                    ExpectCertificateVerify {
                        keys: self.keys,
                        requested: self.requested,
                        cert,
                    },
                )))
            }
            _ => Err(unexpected("expected CertificateRequest or Certificate")),
        }
    }
}

/// The server's certificate accepted (its fingerprint matched);
/// CertificateVerify next.
#[derive(Debug)]
pub(super) struct ExpectCertificateVerify {
    keys: HandshakeKeys,
    requested: bool,
    cert: AcceptedCertificate,
}

impl ExpectCertificateVerify {
    pub(super) fn handle(
        mut self,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let peer = self
            .keys
            .certificate_verify(self.cert, m::Signer::Server, msg, parsed)?;
        Ok(State::ClientExpectFinished(Box::new(ExpectFinished {
            keys: self.keys,
            requested: self.requested,
            peer,
        })))
    }
}

/// The server proved its key (CertificateVerify checked); its Finished
/// next, then our flight 3.
#[derive(Debug)]
pub(super) struct ExpectFinished {
    keys: HandshakeKeys,
    requested: bool,
    peer: VerifiedPeer,
}

impl ExpectFinished {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        now: Instant,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let mut k = self.keys;
        let checked = k.finished(Role::Server, msg, parsed)?;
        let master = k.secret.master_secret();
        let app = master.application_secrets(&k.transcript.hash());
        // Flight 3, in epoch 2 (RFC 8446 §4.4).
        e.begin_flight();
        if self.requested {
            let c = e.own_certificate();
            e.queue(c, 2, Some(&mut k.transcript));
            let cv = e.own_certificate_verify(m::Signer::Client, &k.transcript)?;
            e.queue(cv, 2, Some(&mut k.transcript));
        }
        let fin = Handshake::Finished(m::Finished {
            verify_data: ks::verify_data(
                &ks::finished_key(P, &k.traffic.client),
                &k.transcript.hash(),
            ),
        });
        e.queue(fin, 2, Some(&mut k.transcript));
        e.install(3, &app.traffic.server, &app.traffic.client)?;
        e.send_flight(now);
        // Our flight implicitly acknowledges the server's (§7.1).
        e.to_ack.clear();
        e.ack_at = None;
        e.established(&k, self.peer, checked, app)
    }
}

/// The ClientHello for `shares` (and the cookie of a HelloRetryRequest):
/// DTLS 1.3 with TLS_AES_128_GCM_SHA256, every group we can complete, and,
/// when the endpoint offers 1.2 too, 1.2's suites, schemes and extensions
/// beside (RFC 8446 §4.1.2, RFC 9147 §5.3).
fn client_hello(e: &Endpoint, shares: &[ClientShare], cookie: Option<Vec<u8>>) -> m::ClientHello {
    let mut suites = vec![m::TLS_AES_128_GCM_SHA256];
    let mut versions = vec![m::DTLS_1_3];
    let mut schemes = SIGNATURE_SCHEMES.to_vec();
    let mut other = Vec::new();
    if e.offer_dtls12 {
        suites.extend(e.core.config.cipher_suites.iter().map(|s| s.code()));
        versions.push(m::DTLS_1_2);
        schemes.extend([
            SignatureScheme::RSA_PKCS1_SHA256,
            SignatureScheme::RSA_PKCS1_SHA384,
            SignatureScheme::RSA_PKCS1_SHA512,
        ]);
        other.push(Extension::EcPointFormats(vec![0]));
        other.push(Extension::RenegotiationInfo(Vec::new()));
        if e.core.config.offer_extended_master_secret {
            other.push(Extension::ExtendedMasterSecret);
        }
    }
    m::ClientHello {
        legacy_version: m::DTLS_1_2,
        random: e.core.client_random,
        legacy_session_id: vec![],
        legacy_cookie: vec![],
        cipher_suites: suites,
        supported_versions: versions,
        supported_groups: GROUPS.to_vec(),
        signature_algorithms: schemes,
        key_shares: Some(
            shares
                .iter()
                .map(|s| m::KeyShareEntry {
                    group: s.group(),
                    key_exchange: s.public().to_vec(),
                })
                .collect(),
        ),
        use_srtp: (!e.core.config.srtp_profiles.is_empty()).then(|| m::UseSrtp {
            profiles: e.core.config.srtp_profiles.clone(),
            mki: vec![],
        }),
        cookie,
        other,
    }
}

/// A 1.3 answer must select DTLS 1.3 and the one suite we offered.
fn check_version_and_suite(version: u16, suite: u16) -> Result<(), Failure> {
    if version != m::DTLS_1_3 {
        return Err((
            Error::InvalidValue {
                what: "selected_version",
                value: version.into(),
            },
            AlertDescription::ILLEGAL_PARAMETER,
        ));
    }
    if suite != m::TLS_AES_128_GCM_SHA256 {
        return Err((
            Error::InvalidValue {
                what: "cipher suite (we offered TLS_AES_128_GCM_SHA256)",
                value: suite.into(),
            },
            AlertDescription::ILLEGAL_PARAMETER,
        ));
    }
    Ok(())
}
