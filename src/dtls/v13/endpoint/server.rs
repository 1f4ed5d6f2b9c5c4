//! The DTLS 1.3 server's states (RFC 8446 §4, RFC 9147 §5): before its
//! answer it keeps no state for a stranger (the ClientHello is read on a
//! throw-away record layer, and a HelloRetryRequest's cookie carries all
//! it needs, RFC 9147 §5.1); after it, one type per message it expects.
//!
//! ```text
//! (ExpectClientHello) ──ClientHello, no cookie──► HelloRetryRequest, stateless
//!        │ ClientHello with our cookie (or cookies off)
//!        ▼ flight 2: ServerHello {EE, CR, Certificate, CV, Finished}
//! ExpectCertificate ──(AcceptedCertificate)──► ExpectCertificateVerify
//!   ──(VerifiedPeer)──► ExpectFinished ──(FinishedChecked)──► Connected, ACK
//! ```

use std::net::SocketAddr;
use std::time::Instant;

use rand::Rng;
use ring::hmac;

use super::super::key_schedule::{self as ks, ApplicationSecrets, EarlySecret};
use super::super::key_share;
use super::super::messages::{self as m, Handshake, ServerHelloKind};
use super::super::record::RecordLayer;
use super::super::transcript::Transcript;
use super::proof::{AcceptedCertificate, VerifiedPeer};
use super::{
    Endpoint, Failure, GROUPS, HandshakeKeys, P, Role, SIGNATURE_SCHEMES, State, unexpected,
};
use crate::dtls::Error;
use crate::dtls::cert::SignatureScheme;
use crate::dtls::handshake::{
    AlertDescription, HandshakeMessage, HandshakeType, NamedGroup, Reassembler, fragments,
};
use crate::dtls::record::ContentType;
use crate::machine::Transmit;

/// Cookie layout: flags (1), selected group (2), hash of ClientHello1
/// (32), HMAC (32).
const COOKIE_LEN: usize = 1 + 2 + 32 + 32;

impl Endpoint {
    /// A server before its first answer: reads the epoch-0 ClientHello
    /// on a throw-away record layer (no state kept for strangers).
    pub(super) fn receive_client_hello(
        &mut self,
        now: Instant,
        source: SocketAddr,
        datagram: &[u8],
    ) {
        let mut scratch = RecordLayer::new();
        let mut got = Vec::new();
        scratch.receive(datagram, &mut got);
        for r in got {
            if r.content_type != ContentType::Handshake || r.number.epoch != 0 {
                continue;
            }
            for f in fragments(&r.fragment) {
                let Ok(f) = f else { break };
                if f.header.msg_type != HandshakeType::ClientHello {
                    continue;
                }
                if self.core.reassembler.next_seq() != f.header.message_seq
                    || self.core.hello_source != Some(source)
                {
                    self.core.reassembler = Reassembler::with_next_seq(f.header.message_seq);
                    self.core.hello_source = Some(source);
                }
                self.core.reassembler.insert(&f);
                if let Some(msg) = self.core.reassembler.pop() {
                    self.core.reassembler = Reassembler::new();
                    match on_client_hello(self, now, &msg, source, r.number.sequence) {
                        Ok(Some(state)) => {
                            // Mark the hello's records as seen on the real
                            // record layer, so replays of it are dropped.
                            let mut seen = Vec::new();
                            self.core.records.receive(datagram, &mut seen);
                            self.state = state;
                            return;
                        }
                        Ok(None) => {}
                        Err((e, _)) => {
                            tracing::debug!(%e, "ClientHello dropped");
                        }
                    }
                }
            }
        }
    }

    /// The key of this server's cookie MACs (HMAC-SHA256 under a secret
    /// of its own).
    fn cookie_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.core.cookie_secret)
    }
}

/// What the cookie's MAC covers: the address the hello came from, then
/// the cookie's head.
fn cookie_message(source: SocketAddr, head: &[u8]) -> Vec<u8> {
    let mut msg = source.to_string().into_bytes();
    msg.extend_from_slice(head);
    msg
}

/// The HelloRetryRequest for a ClientHello (deterministic: rebuilt
/// identically from the cookie when the second ClientHello comes, so the
/// server keeps no state before the return-routability check, RFC 9147
/// §5.1).
fn hello_retry(selected_group: Option<NamedGroup>, cookie: Vec<u8>) -> Handshake {
    Handshake::ServerHello(ServerHelloKind::HelloRetryRequest(m::HelloRetryRequest {
        legacy_session_id_echo: vec![],
        cipher_suite: m::TLS_AES_128_GCM_SHA256,
        selected_version: m::DTLS_1_3,
        selected_group,
        cookie: Some(cookie),
        other: vec![],
    }))
}

/// A whole ClientHello from `source`, in a record of sequence number
/// `record_sequence`: refused, answered statelessly by a HelloRetryRequest
/// (`None`), or answered by our flight 2 (the state after it).
fn on_client_hello(
    e: &mut Endpoint,
    now: Instant,
    msg: &HandshakeMessage,
    source: SocketAddr,
    record_sequence: u64,
) -> Result<Option<State>, Failure> {
    let ch = m::ClientHello::parse(&msg.body).map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
    check_client_hello(&ch)?;
    let prefs: Vec<NamedGroup> = e
        .core
        .config
        .dtls13_key_shares
        .iter()
        .copied()
        .chain(GROUPS)
        .collect();
    let share = prefs.iter().find_map(|g| ch.key_share(*g)).cloned();
    let transcript = match &ch.cookie {
        None => {
            let group_needed = share.is_none();
            if !group_needed && !e.core.config.use_cookie {
                Transcript::new()
            } else {
                let selected = if group_needed {
                    Some(
                        *prefs
                            .iter()
                            .find(|g| ch.supported_groups.contains(g))
                            .ok_or((
                                Error::UnsupportedAlgorithm("no key share group in common"),
                                AlertDescription::HANDSHAKE_FAILURE,
                            ))?,
                    )
                } else {
                    None
                };
                send_hello_retry(e, msg, selected, source, record_sequence);
                return Ok(None);
            }
        }
        Some(cookie) => {
            let transcript = check_cookie(e, cookie, source)?;
            // RFC 9147 §5.2: after a HelloRetryRequest (message_seq 0)
            // the ServerHello is the server's message 1.
            e.core.next_send_seq = 1;
            transcript
        }
    };
    let share = share.ok_or((
        Error::InvalidValue {
            what: "second ClientHello without the requested key share",
            value: 0,
        },
        AlertDescription::ILLEGAL_PARAMETER,
    ))?;
    answer(e, now, &ch, msg, share, transcript, source, record_sequence).map(Some)
}

/// What a server needs of any ClientHello it answers: DTLS 1.3 offered,
/// TLS_AES_128_GCM_SHA256, and ECDSA P-256 signatures accepted.
fn check_client_hello(ch: &m::ClientHello) -> Result<(), Failure> {
    if !ch.offers_dtls13() {
        return Err((
            Error::InvalidValue {
                what: "ClientHello without DTLS 1.3 in supported_versions",
                value: 0,
            },
            AlertDescription::PROTOCOL_VERSION,
        ));
    }
    if !ch.cipher_suites.contains(&m::TLS_AES_128_GCM_SHA256) {
        return Err((
            Error::UnsupportedAlgorithm("no TLS_AES_128_GCM_SHA256 offered"),
            AlertDescription::HANDSHAKE_FAILURE,
        ));
    }
    if !ch
        .signature_algorithms
        .contains(&SignatureScheme::ECDSA_SECP256R1_SHA256)
    {
        return Err((
            Error::UnsupportedAlgorithm("client does not accept ECDSA P-256 signatures"),
            AlertDescription::HANDSHAKE_FAILURE,
        ));
    }
    Ok(())
}

/// Sends the HelloRetryRequest with a cookie holding the group asked for
/// and ClientHello1's hash, MACed with the client's address; keeps
/// nothing (RFC 9147 §5.1).
fn send_hello_retry(
    e: &mut Endpoint,
    msg: &HandshakeMessage,
    selected: Option<NamedGroup>,
    source: SocketAddr,
    record_sequence: u64,
) {
    let mut t = Transcript::new();
    t.add_message(msg);
    let mut cookie = Vec::with_capacity(COOKIE_LEN);
    cookie.push(u8::from(selected.is_some()));
    cookie.extend_from_slice(&selected.map_or(0, |g| g.0).to_be_bytes());
    cookie.extend_from_slice(&t.hash());
    let mac = hmac::sign(&e.cookie_key(), &cookie_message(source, &cookie));
    cookie.extend_from_slice(mac.as_ref());
    let hrr = hello_retry(selected, cookie).to_message(0);
    let mut frag = Vec::new();
    hrr.emit_unfragmented(&mut frag);
    // RFC 9147 §5.1: the HelloRetryRequest takes the ClientHello's record
    // sequence number (so repeated ones never duplicate a number).
    let mut scratch = RecordLayer::new();
    scratch.advance_write_sequence(record_sequence);
    let mut out = Vec::new();
    if scratch
        .seal(ContentType::Handshake, &frag, 0, &mut out)
        .is_ok()
    {
        e.core.transmits.push_back(Transmit {
            source: e.core.local,
            destination: source,
            contents: out,
        });
    }
}

/// A second ClientHello's cookie must be ours, for this address; gives
/// the transcript it stands for (ClientHello1's hash and our
/// HelloRetryRequest, RFC 8446 §4.4.1).
fn check_cookie(e: &Endpoint, cookie: &[u8], source: SocketAddr) -> Result<Transcript, Failure> {
    let ours = cookie.len() == COOKIE_LEN
        && hmac::verify(
            &e.cookie_key(),
            &cookie_message(source, &cookie[..COOKIE_LEN - 32]),
            &cookie[COOKIE_LEN - 32..],
        )
        .is_ok();
    if !ours {
        return Err((
            Error::InvalidValue {
                what: "ClientHello cookie (not ours)",
                value: cookie.len() as u64,
            },
            AlertDescription::ILLEGAL_PARAMETER,
        ));
    }
    let selected = (cookie[0] == 1).then(|| NamedGroup(u16::from_be_bytes([cookie[1], cookie[2]])));
    let mut ch1 = [0u8; 32];
    ch1.copy_from_slice(&cookie[3..35]);
    let mut transcript = Transcript::after_hello_retry(&ch1);
    let hrr = hello_retry(selected, cookie.to_vec()).to_message(0);
    transcript.add_message(&hrr);
    Ok(transcript)
}

/// Flight 2: ServerHello in epoch 0, then EncryptedExtensions (use_srtp),
/// CertificateRequest, Certificate, CertificateVerify and Finished in
/// epoch 2 (RFC 8446 §2); the application secrets are derived at once
/// (§7.1: they hash the transcript through our Finished).
#[allow(clippy::too_many_arguments)]
fn answer(
    e: &mut Endpoint,
    now: Instant,
    ch: &m::ClientHello,
    msg: &HandshakeMessage,
    share: m::KeyShareEntry,
    mut transcript: Transcript,
    source: SocketAddr,
    record_sequence: u64,
) -> Result<State, Failure> {
    // From here on the client proved its address (or we skip cookies).
    // Our records continue above the number a stateless
    // HelloRetryRequest may have used.
    e.core.records.advance_write_sequence(record_sequence);
    e.core.peer = Some(source);
    e.core.client_random = ch.random;
    e.core.reassembler = Reassembler::with_next_seq(msg.message_seq.wrapping_add(1));
    transcript.add_message(msg);
    let (public, shared) =
        key_share::server_share(share.group, &share.key_exchange, &mut e.core.rng)
            .map_err(|e| (e, AlertDescription::ILLEGAL_PARAMETER))?;
    let mut random = [0u8; 32];
    e.core.rng.fill(&mut random);
    let srtp_profile = ch.use_srtp.as_ref().and_then(|u| {
        e.core
            .config
            .srtp_profiles
            .iter()
            .find(|p| u.profiles.contains(p))
            .copied()
    });
    e.begin_flight();
    let sh = Handshake::ServerHello(ServerHelloKind::ServerHello(m::ServerHello {
        random,
        legacy_session_id_echo: vec![],
        cipher_suite: m::TLS_AES_128_GCM_SHA256,
        selected_version: m::DTLS_1_3,
        key_share: Some(m::KeyShareEntry {
            group: share.group,
            key_exchange: public,
        }),
        other: vec![],
    }));
    e.queue(sh, 0, Some(&mut transcript));
    let secret = EarlySecret::new(P).handshake_secret(shared.as_bytes());
    let traffic = secret.traffic_secrets(&transcript.hash());
    e.install(2, &traffic.client, &traffic.server)?;
    let ee = Handshake::EncryptedExtensions(m::EncryptedExtensions {
        supported_groups: vec![],
        use_srtp: srtp_profile.map(|p| m::UseSrtp {
            profiles: vec![p],
            mki: vec![],
        }),
        other: vec![],
    });
    e.queue(ee, 2, Some(&mut transcript));
    if e.core.config.require_client_certificate {
        let cr = Handshake::CertificateRequest(m::CertificateRequest {
            context: vec![],
            signature_algorithms: SIGNATURE_SCHEMES.to_vec(),
            other: vec![],
        });
        e.queue(cr, 2, Some(&mut transcript));
    }
    let c = e.own_certificate();
    e.queue(c, 2, Some(&mut transcript));
    let cv = e.own_certificate_verify(m::Signer::Server, &transcript)?;
    e.queue(cv, 2, Some(&mut transcript));
    let fin = Handshake::Finished(m::Finished {
        verify_data: ks::verify_data(&ks::finished_key(P, &traffic.server), &transcript.hash()),
    });
    e.queue(fin, 2, Some(&mut transcript));
    let app = secret
        .master_secret()
        .application_secrets(&transcript.hash());
    e.send_flight(now);
    e.group = Some(share.group);
    Ok(State::ServerExpectCertificate(Box::new(
        ExpectCertificate {
            keys: HandshakeKeys {
                transcript,
                secret,
                traffic,
                srtp_profile,
                group: share.group,
            },
            app,
        },
    )))
}

/// Flight 2 sent; the client's Certificate next.
#[derive(Debug)]
pub(super) struct ExpectCertificate {
    keys: HandshakeKeys,
    app: ApplicationSecrets,
}

impl ExpectCertificate {
    pub(super) fn handle(
        mut self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let Handshake::Certificate(c) = parsed else {
            return Err(unexpected("handshake message out of order"));
        };
        if !e.core.config.require_client_certificate {
            return Err(unexpected("Certificate not requested"));
        }
        let cert = e.accept_certificate(c)?;
        self.keys.transcript.add_message(msg);
        Ok(State::ServerExpectCertificateVerify(Box::new(
            ExpectCertificateVerify {
                keys: self.keys,
                app: self.app,
                cert,
            },
        )))
    }
}

/// The client's certificate accepted (its fingerprint matched); its
/// CertificateVerify next.
#[derive(Debug)]
pub(super) struct ExpectCertificateVerify {
    keys: HandshakeKeys,
    app: ApplicationSecrets,
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
            .certificate_verify(self.cert, m::Signer::Client, msg, parsed)?;
        Ok(State::ServerExpectFinished(Box::new(ExpectFinished {
            keys: self.keys,
            app: self.app,
            peer,
        })))
    }
}

/// The client proved its key; its Finished next.
#[derive(Debug)]
pub(super) struct ExpectFinished {
    keys: HandshakeKeys,
    app: ApplicationSecrets,
    peer: VerifiedPeer,
}

impl ExpectFinished {
    pub(super) fn handle(
        self,
        e: &mut Endpoint,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<State, Failure> {
        let mut k = self.keys;
        let checked = k.finished(Role::Client, msg, parsed)?;
        e.install(3, &self.app.traffic.client, &self.app.traffic.server)?;
        // Our flight is done; acknowledge the client's (RFC 9147 §7: the
        // server's last flight is an ACK).
        e.flight.clear();
        e.core.retransmit_at = None;
        e.send_ack();
        e.established(&k, self.peer, checked, self.app)
    }
}
