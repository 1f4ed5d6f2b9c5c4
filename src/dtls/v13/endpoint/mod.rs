//! The DTLS 1.3 handshake state machines, client and server, as one sans-IO
//! [`Endpoint`] (RFC 9147 §5, RFC 8446 §4), on the record layer, messages,
//! key schedule and key shares of this module.
//!
//! The handshake is one type per "expecting X" state, in `client` and
//! `server` (rustls's shape, as the 1.2 endpoint's): each holds only what
//! is known once it is reached, consumes itself on the message it expects
//! and returns the next state. A state that relies on a check can only be
//! built from the value that check returns (`proof`):
//! `AcceptedCertificate` (the certificate hashes to the SDP's fingerprint;
//! shared with 1.2) is required by `ExpectCertificateVerify`,
//! `VerifiedPeer` (its CertificateVerify signature over the transcript
//! verified) by `ExpectFinished`, and the connected state is built only
//! from a `VerifiedPeer` and a `FinishedChecked` (the peer's Finished
//! matched). The key schedule's stages are types of their own too
//! ([`super::key_schedule`]: early, handshake, master secret).
//!
//! Reliability is RFC 9147's (`flight`): every handshake fragment travels
//! in its own record; the peer's ACK (§7) names the records it got, and the
//! retransmission timer (§5.8) resends only the fragments not
//! acknowledged, in the epoch they were first sent in. A flight is
//! implicitly acknowledged by the peer's next flight (§7.1).
//!
//! The configuration, events and the "connected" summary are those of the
//! 1.2 endpoint ([`crate::dtls::endpoint`]), so that
//! [`crate::dtls::endpoint_auto::AutoEndpoint`] can run either.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, rngs::StdRng};

use super::key_schedule::{
    self as ks, HandshakeSecret, LabelPrefix, Secret, TrafficKeys, TrafficSecrets,
};
use super::messages::{self as m, Handshake};
use super::record::{CONTENT_TYPE_ACK, Received, RecordLayer, RecordNumber};
use super::transcript::Transcript;
use crate::dtls::Error;
use crate::dtls::cert::{Fingerprint, SignatureScheme};
use crate::dtls::core::{Core, Failure, PeerAlert};
use crate::dtls::endpoint::{Config, Connected, Event, Role, Version, srtp_key_salt_len};
use crate::dtls::handshake::{
    Alert, AlertDescription, HandshakeMessage, HandshakeType, Inserted, NamedGroup, SrtpProfile,
    fragments,
};
use crate::dtls::prf::SrtpKeyingMaterial;
use crate::dtls::record::{CipherSuite, ContentType};
use crate::machine::{Machine, Receive, Transmit};

use flight::FlightMessage;

mod client;
mod flight;
mod proof;
mod server;

const P: LabelPrefix = LabelPrefix::Dtls13;

/// Key share groups we offer (client, a share of each, preferred first) and
/// accept (server, in this order of preference): the hybrid the browsers
/// offer, then X25519, then P-256 (asked for by HelloRetryRequest only).
pub const DEFAULT_KEY_SHARES: [NamedGroup; 2] = [NamedGroup::X25519_MLKEM768, NamedGroup::X25519];

/// Groups we can complete, preferred first.
const GROUPS: [NamedGroup; 3] = [
    NamedGroup::X25519_MLKEM768,
    NamedGroup::X25519,
    NamedGroup::SECP256R1,
];

/// Signature schemes we verify (certificates and CertificateVerify; RFC
/// 8446 §4.2.3 leaves PKCS#1 v1.5 to certificates and 1.2).
const SIGNATURE_SCHEMES: [SignatureScheme; 5] = [
    SignatureScheme::ECDSA_SECP256R1_SHA256,
    SignatureScheme::ECDSA_SECP384R1_SHA384,
    SignatureScheme::RSA_PSS_RSAE_SHA256,
    SignatureScheme::RSA_PSS_RSAE_SHA384,
    SignatureScheme::RSA_PSS_RSAE_SHA512,
];

/// Records of the peer's flight held before an ACK is sent for a partial
/// flight.
const MAX_TO_ACK: usize = 64;

/// What both roles know once the handshake keys exist.
#[derive(Debug)]
struct HandshakeKeys {
    transcript: Transcript,
    secret: HandshakeSecret,
    traffic: TrafficSecrets,
    srtp_profile: Option<SrtpProfile>,
    group: NamedGroup,
}

impl HandshakeKeys {
    /// The peer's CertificateVerify, over the transcript so far and signed
    /// by `cert`'s key as `signer` (RFC 8446 §4.4.3), then taken into the
    /// transcript.
    fn certificate_verify(
        &mut self,
        cert: proof::AcceptedCertificate,
        signer: m::Signer,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<proof::VerifiedPeer, Failure> {
        let Handshake::CertificateVerify(cv) = parsed else {
            return Err(unexpected("expected CertificateVerify"));
        };
        let peer = proof::VerifiedPeer::verify(cert, signer, &self.transcript.hash(), &cv)
            .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
        self.transcript.add_message(msg);
        Ok(peer)
    }

    /// The Finished of the peer in role `from`, under the finished key of
    /// its handshake traffic secret (RFC 8446 §4.4.4), then taken into the
    /// transcript.
    fn finished(
        &mut self,
        from: Role,
        msg: &HandshakeMessage,
        parsed: Handshake,
    ) -> Result<proof::FinishedChecked, Failure> {
        let Handshake::Finished(f) = parsed else {
            return Err(unexpected("expected Finished"));
        };
        let base_key = match from {
            Role::Client => &self.traffic.client,
            Role::Server => &self.traffic.server,
        };
        let checked = proof::FinishedChecked::check(base_key, &self.transcript, &f)
            .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
        self.transcript.add_message(msg);
        Ok(checked)
    }
}

/// Client, after a 1.2 answer, for the caller to hand over to the 1.2
/// machine.
#[derive(Debug, Clone)]
pub struct Fallback {
    /// The ClientHello as sent.
    pub hello: HandshakeMessage,
    /// Its random.
    pub client_random: [u8; 32],
}

/// Where the handshake is: one type per "expecting X" state (in `client`
/// and `server`), each holding what is known once it is reached.
#[derive(Debug)]
enum State {
    ClientExpectServerHello(Box<client::ExpectServerHello>),
    ClientExpectEncryptedExtensions(Box<client::ExpectEncryptedExtensions>),
    ClientExpectCertificate(Box<client::ExpectCertificate>),
    ClientExpectCertificateVerify(Box<client::ExpectCertificateVerify>),
    ClientExpectFinished(Box<client::ExpectFinished>),
    ServerExpectClientHello,
    ServerExpectCertificate(Box<server::ExpectCertificate>),
    ServerExpectCertificateVerify(Box<server::ExpectCertificateVerify>),
    ServerExpectFinished(Box<server::ExpectFinished>),
    Connected(Box<Established>),
    /// The server answered 1.2: see [`Endpoint::take_fallback`].
    FellBack(Box<Fallback>),
    Closed,
    Failed,
    /// While a message is being handled (the state is moved out).
    Busy,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ClientExpectServerHello(_) => "ClientExpectServerHello",
            State::ClientExpectEncryptedExtensions(_) => "ClientExpectEncryptedExtensions",
            State::ClientExpectCertificate(_) => "ClientExpectCertificate",
            State::ClientExpectCertificateVerify(_) => "ClientExpectCertificateVerify",
            State::ClientExpectFinished(_) => "ClientExpectFinished",
            State::ServerExpectClientHello => "ServerExpectClientHello",
            State::ServerExpectCertificate(_) => "ServerExpectCertificate",
            State::ServerExpectCertificateVerify(_) => "ServerExpectCertificateVerify",
            State::ServerExpectFinished(_) => "ServerExpectFinished",
            State::Connected(_) => "Connected",
            State::FellBack(_) => "FellBack",
            State::Closed => "Closed",
            State::Failed => "Failed",
            State::Busy => "Busy",
        }
    }

    /// The epoch the peer's records are read in now.
    fn read_epoch(&self) -> u64 {
        match self {
            State::Connected(c) => c.read_epoch,
            State::ServerExpectCertificate(_)
            | State::ServerExpectCertificateVerify(_)
            | State::ServerExpectFinished(_)
            | State::ClientExpectEncryptedExtensions(_)
            | State::ClientExpectCertificate(_)
            | State::ClientExpectCertificateVerify(_)
            | State::ClientExpectFinished(_) => 2,
            _ => 0,
        }
    }

    /// A server waiting for the client's last flight.
    fn server_awaits_client_flight(&self) -> bool {
        matches!(
            self,
            State::ServerExpectCertificate(_)
                | State::ServerExpectCertificateVerify(_)
                | State::ServerExpectFinished(_)
        )
    }
}

/// The association after the handshake: the application traffic secrets
/// (for KeyUpdate) and the epochs they key.
#[derive(Debug)]
struct Established {
    peer: proof::VerifiedPeer,
    read_secret: Secret,
    read_epoch: u64,
    write_secret: Secret,
    write_epoch: u64,
    /// A KeyUpdate of ours waits for its ACK before we switch (RFC 9147
    /// §8).
    update_pending: bool,
    key_log: [String; 5],
}

/// A DTLS 1.3 endpoint for one peer.
pub struct Endpoint {
    /// What 1.2 has too: the peer, randomness, the record layer, the
    /// timer, the queues (`dtls/core.rs`).
    core: Core<RecordLayer>,
    /// Client: offer 1.2 beside 1.3 (and fall back to it).
    offer_dtls12: bool,
    state: State,
    flight: Vec<FlightMessage>,
    /// Records of the peer's current flight (and of post-handshake
    /// messages) to acknowledge.
    to_ack: Vec<RecordNumber>,
    ack_at: Option<Instant>,
    /// The key share group of the handshake.
    group: Option<NamedGroup>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint13")
            .field("role", &self.core.role)
            .field("state", &self.state.name())
            .field("peer", &self.core.peer)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A client offering DTLS 1.3 only; its ClientHello to `peer` is queued
    /// at once.
    pub fn client(config: Config, peer: SocketAddr, rng: StdRng, now: Instant) -> Self {
        Self::client_offering(config, peer, rng, now, false)
    }

    /// A client; with `offer_dtls12` its ClientHello also offers DTLS 1.2
    /// (its suites and extensions), and a 1.2 answer ends this machine in
    /// [`Endpoint::take_fallback`] for the 1.2 one to continue.
    pub fn client_offering(
        config: Config,
        peer: SocketAddr,
        rng: StdRng,
        now: Instant,
        offer_dtls12: bool,
    ) -> Self {
        let mut e = Self::new(Role::Client, config, Some(peer), rng);
        e.offer_dtls12 = offer_dtls12;
        e.core.rng.fill(&mut e.core.client_random);
        match client::ExpectServerHello::first(&mut e) {
            Ok(state) => {
                e.state = State::ClientExpectServerHello(Box::new(state));
                e.send_flight(now);
            }
            Err((err, _)) => {
                e.state = State::Failed;
                e.core.events.push_back(Event::Failed(err));
            }
        }
        e
    }

    /// A server that answers the first ClientHello it receives (with a
    /// HelloRetryRequest cookie first when [`Config::use_cookie`]).
    pub fn server(config: Config, rng: StdRng) -> Self {
        Self::new(Role::Server, config, None, rng)
    }

    fn new(role: Role, config: Config, peer: Option<SocketAddr>, rng: StdRng) -> Self {
        Endpoint {
            core: Core::new(role, config, peer, RecordLayer::new(), rng),
            offer_dtls12: false,
            state: match role {
                Role::Client => State::Failed,
                Role::Server => State::ServerExpectClientHello,
            },
            flight: Vec::new(),
            to_ack: Vec::new(),
            ack_at: None,
            group: None,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.core.role
    }

    /// The peer (a server's: the client whose hello it answered).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.core.peer
    }

    /// The peer now sends from `peer` (see the 1.2 endpoint's `set_peer`).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        self.core.set_peer(peer);
    }

    /// Whether the handshake completed.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// The peer's certificate (DER), once its signature checked out and
    /// the handshake completed.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match &self.state {
            State::Connected(c) => Some(c.peer.certificate().der()),
            _ => None,
        }
    }

    /// Client: no answer from the server yet.
    pub fn version_undecided(&self) -> bool {
        matches!(self.state, State::ClientExpectServerHello(_))
    }

    /// Epoch-0 records written so far (the 1.2 machine that takes over
    /// after a fallback continues after them).
    pub fn epoch0_records_sent(&self) -> u64 {
        if self.core.records.write_epoch() == 0 {
            self.core.records.next_write_number().sequence
        } else {
            0
        }
    }

    /// The configuration and the random generator back, for the 1.2
    /// machine that goes on after a fallback.
    pub fn into_parts(self) -> (Config, StdRng) {
        (self.core.config, self.core.rng)
    }

    /// Gives back an application data buffer (nothing reused yet in 1.3).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        drop(buf);
    }

    /// The key share group the handshake used.
    pub fn key_share_group(&self) -> Option<NamedGroup> {
        self.group
    }

    /// Client: after a 1.2 answer, what the 1.2 machine needs to go on
    /// from our ClientHello (once; the endpoint is then closed).
    pub fn take_fallback(&mut self) -> Option<Fallback> {
        if !matches!(self.state, State::FellBack(_)) {
            return None;
        }
        match std::mem::replace(&mut self.state, State::Closed) {
            State::FellBack(f) => Some(*f),
            _ => None,
        }
    }

    /// A client that offered 1.3 and has had no answer yet resends its
    /// ClientHello now (see the 1.2 endpoint's method of the same name).
    pub fn resend_unanswered_client_hello(&mut self, now: Instant, older_than: Duration) {
        if matches!(self.state, State::ClientExpectServerHello(_))
            && self.core.unanswered_since(now, older_than)
        {
            self.send_flight(now);
        }
    }

    /// The SSLKEYLOGFILE lines of the association (RFC 9147 keys under
    /// the TLS 1.3 labels), once connected.
    pub fn key_log_lines(&self) -> Option<&[String; 5]> {
        match &self.state {
            State::Connected(c) => Some(&c.key_log),
            _ => None,
        }
    }

    /// The fingerprint of a refused peer certificate (after
    /// [`Error::FingerprintMismatch`]).
    pub fn rejected_fingerprint(&self) -> Option<&Fingerprint> {
        self.core.rejected_fingerprint.as_ref()
    }

    /// Records dropped by the record layer.
    pub fn dropped_records(&self) -> u64 {
        self.core.records.dropped()
    }

    /// Sends application data (one record; at most 2^14 bytes).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.core.send(self.is_connected(), data)
    }

    /// Appends one application data record to `out` (a datagram the
    /// caller sends).
    pub fn seal_application_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.core
            .seal_application_data(self.is_connected(), data, out)
    }

    /// Asks for new sending keys (RFC 8446 §4.6.3, RFC 9147 §8): sends a
    /// KeyUpdate; we switch once it is acknowledged.
    pub fn update_keys(&mut self, now: Instant, request_peer: bool) -> Result<(), Error> {
        match &mut self.state {
            State::Connected(c) if !c.update_pending => c.update_pending = true,
            State::Connected(_) => return Err(Error::Misuse("a KeyUpdate is already pending")),
            _ => return Err(Error::Misuse("KeyUpdate before the handshake completed")),
        }
        let update = if request_peer {
            m::KeyUpdate::Requested
        } else {
            m::KeyUpdate::NotRequested
        };
        self.flight.clear();
        let epoch = self.core.records.write_epoch();
        self.queue(Handshake::KeyUpdate(update), epoch, None);
        self.send_flight(now);
        Ok(())
    }

    /// Sends close_notify and closes.
    pub fn close(&mut self) {
        if self.is_connected() {
            self.core.send_alert(Alert::close_notify());
        }
        self.state = State::Closed;
        self.core.retransmit_at = None;
        self.ack_at = None;
    }

    // -----------------------------------------------------------------------
    // Sending.

    fn fail(&mut self, error: Error, alert: AlertDescription) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        tracing::debug!(%error, state = self.state.name(), "DTLS 1.3 handshake failed");
        self.core.fail(error, alert);
        self.state = State::Failed;
        self.ack_at = None;
        self.flight.clear();
    }

    /// Installs the keys of `epoch`, reading with `read` and writing with
    /// `write`.
    fn install(&mut self, epoch: u64, read: &Secret, write: &Secret) -> Result<(), Failure> {
        self.core
            .records
            .install_read(epoch, &TrafficKeys::derive(P, read))
            .and_then(|_| {
                self.core
                    .records
                    .install_write(epoch, &TrafficKeys::derive(P, write))
            })
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))
    }

    fn accept_certificate(
        &mut self,
        c: m::Certificate,
    ) -> Result<proof::AcceptedCertificate, Failure> {
        if !c.context.is_empty() && self.core.role == Role::Client {
            return Err((
                Error::InvalidValue {
                    what: "server Certificate request context (must be empty)",
                    value: c.context.len() as u64,
                },
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let Some(first) = c.entries.into_iter().next() else {
            return Err((
                Error::BadCertificate("peer sent no certificate"),
                AlertDescription::CERTIFICATE_REQUIRED,
            ));
        };
        self.core.accept_certificate(first.cert_data)
    }

    fn own_certificate(&self) -> Handshake {
        Handshake::Certificate(m::Certificate {
            context: vec![],
            entries: vec![m::CertificateEntry {
                cert_data: self.core.config.certificate.der().to_vec(),
                extensions: vec![],
            }],
        })
    }

    fn own_certificate_verify(
        &self,
        signer: m::Signer,
        transcript: &Transcript,
    ) -> Result<Handshake, Failure> {
        let content = m::CertificateVerify::signed_content(signer, &transcript.hash());
        let signature = self
            .core
            .config
            .certificate
            .sign(&content)
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
        Ok(Handshake::CertificateVerify(m::CertificateVerify {
            scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
            signature,
        }))
    }

    /// Both roles: the handshake is done (the peer's key proven, its
    /// Finished checked: the connected state needs both proofs); exports
    /// the SRTP keys and reports it.
    fn established(
        &mut self,
        k: &HandshakeKeys,
        peer: proof::VerifiedPeer,
        _finished: proof::FinishedChecked,
        app: ks::ApplicationSecrets,
    ) -> Result<State, Failure> {
        let (material, keys) = match k
            .srtp_profile
            .and_then(|p| srtp_key_salt_len(p).map(|l| (p, l)))
        {
            Some((_, (key, salt))) => {
                // RFC 5764 §4.2 through the 1.3 exporter (RFC 8446 §7.5,
                // RFC 9147 §5.9 keeps the label).
                let m = app.exporter.srtp_keying_material(2 * (key + salt));
                let keys = SrtpKeyingMaterial::split(&m, key, salt)
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
                (Some(m), Some(keys))
            }
            None => (None, None),
        };
        self.core
            .events
            .push_back(Event::Connected(Box::new(Connected {
                cipher_suite: CipherSuite::Tls13Aes128GcmSha256,
                version: Version::Dtls13,
                key_share_group: Some(k.group),
                srtp_profile: k.srtp_profile,
                srtp_keying_material: material,
                srtp_keys: keys,
                peer_certificate: peer.certificate().der().to_vec(),
                peer_fingerprint: peer.certificate().fingerprint().clone(),
                extended_master_secret: true,
            })));
        let key_log = ks::key_log_lines(&self.core.client_random, &k.traffic, &app);
        let (read_secret, write_secret) = match self.core.role {
            Role::Client => (app.traffic.server.clone(), app.traffic.client.clone()),
            Role::Server => (app.traffic.client.clone(), app.traffic.server.clone()),
        };
        // Epoch 0 is over both ways (RFC 9147 §6.1).
        self.core.records.close_plaintext();
        Ok(State::Connected(Box::new(Established {
            peer,
            read_secret,
            read_epoch: 3,
            write_secret,
            write_epoch: 3,
            update_pending: false,
            key_log,
        })))
    }

    // -----------------------------------------------------------------------
    // Receiving.

    fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        let expecting_hello = matches!(self.state, State::ServerExpectClientHello);
        if matches!(
            self.state,
            State::Failed | State::Closed | State::FellBack(_)
        ) || !self.core.accepts(source, destination, expecting_hello)
        {
            return;
        }
        if expecting_hello {
            self.receive_client_hello(now, source, datagram);
            return;
        }
        let mut got = Vec::new();
        self.core.records.receive(datagram, &mut got);
        self.process(now, got);
    }

    fn process(&mut self, now: Instant, got: Vec<Received>) {
        let mut queue: VecDeque<Received> = got.into();
        let mut new_handshake_records = false;
        let mut peer_retransmitted = false;
        while let Some(r) = queue.pop_front() {
            match r.content_type {
                ContentType::Handshake => {
                    let mut took = false;
                    for f in fragments(&r.fragment) {
                        let Ok(f) = f else { break };
                        match self.core.reassembler.insert(&f) {
                            Inserted::Old => peer_retransmitted = true,
                            Inserted::Buffered => took = true,
                            Inserted::Dropped => {}
                        }
                    }
                    if took || peer_retransmitted {
                        if self.to_ack.len() < MAX_TO_ACK {
                            self.to_ack.push(r.number);
                        }
                        new_handshake_records |= took;
                    }
                    while let Some(msg) = self.core.reassembler.pop() {
                        let epoch_before = self.state.read_epoch();
                        if let Err((e, a)) = self.handle_message(now, &msg, r.number.epoch) {
                            self.fail(e, a);
                            return;
                        }
                        if matches!(self.state, State::FellBack(_) | State::Failed) {
                            return;
                        }
                        // New read keys: records held for them now open.
                        if self.state.read_epoch() != epoch_before {
                            let mut unlocked = Vec::new();
                            self.core.records.take_unlocked(&mut unlocked);
                            queue.extend(unlocked);
                        }
                    }
                }
                ContentType::Other(CONTENT_TYPE_ACK) => {
                    if let Ok(ack) = m::Ack::parse(&r.fragment) {
                        self.on_ack(&ack);
                    }
                }
                // RFC 9147 §6.1: application data only in epoch 3 and up.
                ContentType::ApplicationData if self.is_connected() && r.number.epoch >= 3 => {
                    self.core
                        .events
                        .push_back(Event::ApplicationData(r.fragment));
                }
                ContentType::Alert => match self.core.on_alert(&r.fragment) {
                    PeerAlert::CloseNotify => {
                        self.state = State::Closed;
                        self.core.retransmit_at = None;
                        self.ack_at = None;
                        self.core.events.push_back(Event::Closed);
                        return;
                    }
                    PeerAlert::Fatal => {
                        self.state = State::Failed;
                        self.ack_at = None;
                        return;
                    }
                    PeerAlert::Ignored => {}
                },
                _ => {}
            }
        }
        if peer_retransmitted {
            // RFC 9147 §5.8.1/§7.1: the peer resent something we already
            // had: our answer (or ACK) was lost.
            match &self.state {
                State::Connected(_) if self.flight.is_empty() => self.send_ack(),
                _ if !self.flight.is_empty() => self.send_flight(now),
                _ => {}
            }
        } else if new_handshake_records && self.awaiting_flight() {
            if self.state.server_awaits_client_flight() {
                // Part of the client's next flight acknowledges all of ours
                // (RFC 9147 §7.1: the client sends it only once it has
                // our whole flight).
                self.flight.clear();
                self.core.retransmit_at = None;
            }
            // Part of the peer's flight is here: acknowledge it soon so
            // that only the rest is resent (RFC 9147 §7.1).
            let delay = self.core.config.initial_retransmit_timeout / 4;
            self.ack_at.get_or_insert(now + delay);
        }
    }

    /// Whether we wait for more of a peer flight (a partial one is
    /// worth an ACK).
    fn awaiting_flight(&self) -> bool {
        !matches!(
            self.state,
            State::Connected(_)
                | State::ClientExpectServerHello(_)
                | State::ServerExpectClientHello
        )
    }

    fn handle_message(
        &mut self,
        now: Instant,
        msg: &HandshakeMessage,
        epoch: u64,
    ) -> Result<(), Failure> {
        // RFC 9147 §6.1: only the hellos travel in epoch 0.
        let hello = matches!(
            msg.msg_type,
            HandshakeType::ClientHello
                | HandshakeType::ServerHello
                | HandshakeType::HelloVerifyRequest
        );
        if hello != (epoch == 0) {
            return Err(unexpected("handshake message in the wrong epoch"));
        }
        let state = std::mem::replace(&mut self.state, State::Busy);
        if let State::Connected(mut c) = state {
            let r = self.post_handshake(now, &mut c, msg);
            self.state = State::Connected(c);
            return r;
        }
        // Each state consumes itself on the message it expects and returns
        // the next.
        let next = match state {
            State::ClientExpectServerHello(s) => (*s).handle(self, now, msg),
            state => {
                let parsed = Handshake::parse(msg.msg_type, &msg.body)
                    .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
                match state {
                    State::ClientExpectEncryptedExtensions(s) => (*s).handle(self, msg, parsed),
                    State::ClientExpectCertificate(s) => (*s).handle(self, msg, parsed),
                    State::ClientExpectCertificateVerify(s) => (*s).handle(msg, parsed),
                    State::ClientExpectFinished(s) => (*s).handle(self, now, msg, parsed),
                    State::ServerExpectCertificate(s) => (*s).handle(self, msg, parsed),
                    State::ServerExpectCertificateVerify(s) => (*s).handle(msg, parsed),
                    State::ServerExpectFinished(s) => (*s).handle(self, msg, parsed),
                    _ => Err(unexpected("handshake message out of order")),
                }
            }
        }?;
        self.state = next;
        Ok(())
    }

    /// Messages after the handshake: KeyUpdate (RFC 8446 §4.6.3, RFC 9147
    /// §8) and NewSessionTicket (ignored: we never resume).
    fn post_handshake(
        &mut self,
        now: Instant,
        c: &mut Established,
        msg: &HandshakeMessage,
    ) -> Result<(), Failure> {
        let parsed = Handshake::parse(msg.msg_type, &msg.body)
            .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        match parsed {
            Handshake::KeyUpdate(u) => {
                c.read_secret = ks::next_traffic_secret(P, &c.read_secret);
                c.read_epoch += 1;
                self.core
                    .records
                    .install_read(c.read_epoch, &TrafficKeys::derive(P, &c.read_secret))
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
                self.send_ack();
                self.to_ack.clear();
                if u == m::KeyUpdate::Requested && !c.update_pending {
                    c.update_pending = true;
                    self.flight.clear();
                    let epoch = self.core.records.write_epoch();
                    self.queue(
                        Handshake::KeyUpdate(m::KeyUpdate::NotRequested),
                        epoch,
                        None,
                    );
                    self.send_flight(now);
                }
                Ok(())
            }
            Handshake::NewSessionTicket(_) => {
                self.send_ack();
                self.to_ack.clear();
                Ok(())
            }
            Handshake::Finished(_) => Ok(()),
            _ => Err(unexpected("handshake message after the handshake")),
        }
    }
}

fn unexpected(what: &'static str) -> Failure {
    (Error::Misuse(what), AlertDescription::UNEXPECTED_MESSAGE)
}

impl Machine for Endpoint {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        self.receive(
            now,
            datagram.source,
            datagram.destination,
            datagram.contents,
        );
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.ack_at.is_some_and(|at| now >= at) {
            self.send_ack();
        }
        match self.core.timer(now, self.state.name()) {
            Ok(true) => self.send_flight(now),
            Ok(false) => {}
            Err((error, alert)) => self.fail(error, alert),
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.core.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.core.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.core.retransmit_at, self.ack_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests;
