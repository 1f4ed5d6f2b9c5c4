//! The DTLS 1.3 handshake state machines, client and server, as one sans-IO
//! [`Endpoint`] (RFC 9147 §5, RFC 8446 §4), on the record layer, messages,
//! key schedule and key shares of this module.
//!
//! Each state holds only what is known once it is reached, and the states
//! that rely on a check can only be built from the value that check
//! returns: [`proof::AcceptedCertificate`] (the certificate hashes to the
//! SDP's fingerprint), [`proof::VerifiedPeer`] (its CertificateVerify
//! signature over the transcript verified) and [`proof::FinishedChecked`]
//! (the peer's Finished matched). [`State::Connected`] takes all three.
//!
//! Reliability is RFC 9147's: every handshake fragment travels in its own
//! record; the peer's ACK (§7) names the records it got, and the
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

use rand::{Rng, SeedableRng, rngs::StdRng};
use ring::hmac;

use super::key_schedule::{
    self as ks, EarlySecret, HandshakeSecret, LabelPrefix, Secret, TrafficKeys, TrafficSecrets,
};
use super::key_share::{self, ClientShare};
use super::messages::{self as m, Handshake, ServerHelloKind};
use super::record::{CONTENT_TYPE_ACK, Received, RecordLayer, RecordNumber};
use super::transcript::Transcript;
use crate::dtls::Error;
use crate::dtls::cert::{Fingerprint, SignatureScheme};
use crate::dtls::endpoint::{
    Config, Connected, Event, MAX_RETRANSMIT_TIMEOUT, MAX_RETRANSMITS, Role, Version,
    srtp_key_salt_len,
};
use crate::dtls::handshake::{
    Alert, AlertDescription, AlertLevel, Extension, HandshakeFragment, HandshakeHeader,
    HandshakeMessage, HandshakeType, Inserted, NamedGroup, Reassembler, SrtpProfile, fragments,
};
use crate::dtls::prf::SrtpKeyingMaterial;
use crate::dtls::record::{CipherSuite, ContentType};
use crate::machine::{Machine, Receive, Transmit};

const P: LabelPrefix = LabelPrefix::Dtls13;

/// Bytes a protected record adds around its content: the unified header
/// in its full form (5), the inner content type (1) and the tag (16).
const PROTECTED_OVERHEAD: usize = 5 + 1 + 16;
/// A DTLSPlaintext header.
const PLAINTEXT_OVERHEAD: usize = 13;
/// A handshake fragment header.
const FRAGMENT_HEADER: usize = 12;

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

/// Cookie layout: flags (1), selected group (2), hash of ClientHello1
/// (32), HMAC (32).
const COOKIE_LEN: usize = 1 + 2 + 32 + 32;

/// Records of the peer's flight held before an ACK is sent for a partial
/// flight.
const MAX_TO_ACK: usize = 64;

type Failure = (Error, AlertDescription);

/// One handshake message of our current flight, kept until acknowledged.
#[derive(Debug)]
struct FlightMessage {
    /// The epoch its records are sealed in (on retransmission too).
    epoch: u64,
    message: HandshakeMessage,
    /// Body ranges acknowledged, merged.
    acked: Vec<(usize, usize)>,
    /// Records sent and the body range each carried.
    sent: Vec<(RecordNumber, usize, usize)>,
    /// An empty body, acknowledged.
    empty_acked: bool,
}

impl FlightMessage {
    fn unacked(&self) -> Vec<(usize, usize)> {
        let len = self.message.body.len();
        if len == 0 {
            return if self.empty_acked {
                vec![]
            } else {
                vec![(0, 0)]
            };
        }
        let mut out = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.acked {
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
        }
        if at < len {
            out.push((at, len));
        }
        out
    }

    fn ack(&mut self, number: &RecordNumber) {
        let hits: Vec<(usize, usize)> = self
            .sent
            .iter()
            .filter(|(n, _, _)| n == number)
            .map(|&(_, s, e)| (s, e))
            .collect();
        for (s, e) in hits {
            if s == e {
                self.empty_acked = true;
                continue;
            }
            self.acked.push((s, e));
            self.acked.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for &(s, e) in &self.acked {
                match merged.last_mut() {
                    Some(l) if s <= l.1 => l.1 = l.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            self.acked = merged;
        }
    }
}

/// What both roles know once the handshake keys exist.
#[derive(Debug)]
struct HandshakeKeys {
    transcript: Transcript,
    secret: HandshakeSecret,
    traffic: TrafficSecrets,
    srtp_profile: Option<SrtpProfile>,
    group: NamedGroup,
}

/// Client, ClientHello sent.
#[derive(Debug)]
struct ClientWaitServerHello {
    /// Our shares (one per group offered).
    shares: Vec<ClientShare>,
    transcript: Transcript,
    /// The ClientHello as sent (for a fallback to 1.2 or a retry).
    hello: m::ClientHello,
    hello_message: HandshakeMessage,
    /// A HelloRetryRequest was answered already (a second one is fatal,
    /// RFC 8446 §4.1.4).
    retried: bool,
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

/// Where the handshake is. The proofs a state needs are fields only their
/// checking constructors can make.
#[derive(Debug)]
enum State {
    ClientWaitServerHello(Box<ClientWaitServerHello>),
    ClientWaitEncryptedExtensions(Box<HandshakeKeys>),
    /// EncryptedExtensions read; CertificateRequest or Certificate next.
    ClientWaitCertificate(Box<HandshakeKeys>, bool),
    ClientWaitCertificateVerify(Box<HandshakeKeys>, bool, proof::AcceptedCertificate),
    ClientWaitFinished(Box<HandshakeKeys>, bool, proof::VerifiedPeer),
    ServerWaitClientHello,
    ServerWaitCertificate(Box<HandshakeKeys>, Box<ks::ApplicationSecrets>),
    ServerWaitCertificateVerify(
        Box<HandshakeKeys>,
        Box<ks::ApplicationSecrets>,
        proof::AcceptedCertificate,
    ),
    ServerWaitFinished(
        Box<HandshakeKeys>,
        Box<ks::ApplicationSecrets>,
        proof::VerifiedPeer,
    ),
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
            State::ClientWaitServerHello(_) => "ClientWaitServerHello",
            State::ClientWaitEncryptedExtensions(_) => "ClientWaitEncryptedExtensions",
            State::ClientWaitCertificate(..) => "ClientWaitCertificate",
            State::ClientWaitCertificateVerify(..) => "ClientWaitCertificateVerify",
            State::ClientWaitFinished(..) => "ClientWaitFinished",
            State::ServerWaitClientHello => "ServerWaitClientHello",
            State::ServerWaitCertificate(..) => "ServerWaitCertificate",
            State::ServerWaitCertificateVerify(..) => "ServerWaitCertificateVerify",
            State::ServerWaitFinished(..) => "ServerWaitFinished",
            State::Connected(_) => "Connected",
            State::FellBack(_) => "FellBack",
            State::Closed => "Closed",
            State::Failed => "Failed",
            State::Busy => "Busy",
        }
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
    role: Role,
    config: Config,
    /// Client: offer 1.2 beside 1.3 (and fall back to it).
    offer_dtls12: bool,
    rng: StdRng,
    state: State,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    records: RecordLayer,
    reassembler: Reassembler,
    next_send_seq: u16,
    client_random: [u8; 32],
    cookie_secret: [u8; 32],
    flight: Vec<FlightMessage>,
    /// Records of the peer's current flight (and of post-handshake
    /// messages) to acknowledge.
    to_ack: Vec<RecordNumber>,
    ack_at: Option<Instant>,
    retransmit_at: Option<Instant>,
    retransmit_timeout: Duration,
    retransmits: u32,
    heard_from_peer: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    rejected_fingerprint: Option<Fingerprint>,
    /// The key share group of the handshake.
    group: Option<NamedGroup>,
    /// Server, before an answer: whose fragmented hello is being
    /// reassembled.
    hello_source: Option<SocketAddr>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint13")
            .field("role", &self.role)
            .field("state", &self.state.name())
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// A client offering DTLS 1.3 only; its ClientHello to `peer` is queued
    /// at once.
    pub fn client(config: Config, peer: SocketAddr, rng_seed: u64, now: Instant) -> Self {
        Self::client_offering(config, peer, rng_seed, now, false)
    }

    /// A client; with `offer_dtls12` its ClientHello also offers DTLS 1.2
    /// (its suites and extensions), and a 1.2 answer ends this machine in
    /// [`Endpoint::take_fallback`] for the 1.2 one to continue.
    pub fn client_offering(
        config: Config,
        peer: SocketAddr,
        rng_seed: u64,
        now: Instant,
        offer_dtls12: bool,
    ) -> Self {
        let mut e = Self::new(Role::Client, config, Some(peer), rng_seed);
        e.offer_dtls12 = offer_dtls12;
        e.rng.fill(&mut e.client_random);
        match e.first_client_hello() {
            Ok(state) => {
                e.state = State::ClientWaitServerHello(Box::new(state));
                e.send_flight(now);
            }
            Err((err, _)) => {
                e.state = State::Failed;
                e.events.push_back(Event::Failed(err));
            }
        }
        e
    }

    /// A server that answers the first ClientHello it receives (with a
    /// HelloRetryRequest cookie first when [`Config::use_cookie`]).
    pub fn server(config: Config, rng_seed: u64) -> Self {
        Self::new(Role::Server, config, None, rng_seed)
    }

    fn new(role: Role, config: Config, peer: Option<SocketAddr>, rng_seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(rng_seed ^ 0x1313_1313);
        let mut cookie_secret = [0u8; 32];
        rng.fill(&mut cookie_secret);
        let retransmit_timeout = config.initial_retransmit_timeout;
        Endpoint {
            role,
            config,
            offer_dtls12: false,
            rng,
            state: match role {
                Role::Client => State::Failed,
                Role::Server => State::ServerWaitClientHello,
            },
            peer,
            local: None,
            records: RecordLayer::new(),
            reassembler: Reassembler::new(),
            next_send_seq: 0,
            client_random: [0; 32],
            cookie_secret,
            flight: Vec::new(),
            to_ack: Vec::new(),
            ack_at: None,
            retransmit_at: None,
            retransmit_timeout,
            retransmits: 0,
            heard_from_peer: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rejected_fingerprint: None,
            group: None,
            hello_source: None,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer (a server's: the client whose hello it answered).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The peer now sends from `peer` (see the 1.2 endpoint's `set_peer`).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        if self.peer.is_some() {
            self.peer = Some(peer);
        }
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
        matches!(self.state, State::ClientWaitServerHello(_))
    }

    /// Epoch-0 records written so far (the 1.2 machine that takes over
    /// after a fallback continues after them).
    pub fn epoch0_records_sent(&self) -> u64 {
        if self.records.write_epoch() == 0 {
            self.records.next_write_number().sequence
        } else {
            0
        }
    }

    /// The configuration back (for the 1.2 machine after a fallback).
    pub fn into_config(self) -> Config {
        self.config
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
        let sent = self
            .retransmit_at
            .map(|at| at.checked_sub(self.retransmit_timeout).unwrap_or(at));
        if matches!(self.state, State::ClientWaitServerHello(_))
            && !self.heard_from_peer
            && sent.is_some_and(|t| now.saturating_duration_since(t) >= older_than)
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
        self.rejected_fingerprint.as_ref()
    }

    /// Records dropped by the record layer.
    pub fn dropped_records(&self) -> u64 {
        self.records.dropped()
    }

    /// Sends application data (one record; at most 2^14 bytes).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut out = Vec::with_capacity(data.len() + 32);
        self.seal_application_data(data, &mut out)?;
        self.push_datagram(out);
        Ok(())
    }

    /// Appends one application data record to `out` (a datagram the
    /// caller sends).
    pub fn seal_application_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if !self.is_connected() {
            return Err(Error::Misuse("send before the handshake completed"));
        }
        self.records
            .seal(ContentType::ApplicationData, data, 0, out)
            .map(|_| ())
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
        let epoch = self.records.write_epoch();
        self.queue(Handshake::KeyUpdate(update), epoch, None);
        self.send_flight(now);
        Ok(())
    }

    /// Sends close_notify and closes.
    pub fn close(&mut self) {
        if self.is_connected() {
            let mut alert = Vec::new();
            Alert::close_notify().encode(&mut alert);
            let mut out = Vec::new();
            if self
                .records
                .seal(ContentType::Alert, &alert, 0, &mut out)
                .is_ok()
            {
                self.push_datagram(out);
            }
        }
        self.state = State::Closed;
        self.retransmit_at = None;
        self.ack_at = None;
    }

    // -----------------------------------------------------------------------
    // Sending.

    fn push_datagram(&mut self, contents: Vec<u8>) {
        if let Some(destination) = self.peer {
            self.transmits.push_back(Transmit {
                source: self.local,
                destination,
                contents,
            });
        }
    }

    /// Adds a message to the current flight (sent by
    /// [`Endpoint::send_flight`]) and to `transcript`.
    fn queue(&mut self, msg: Handshake, epoch: u64, transcript: Option<&mut Transcript>) {
        let message = msg.to_message(self.next_send_seq);
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        if let Some(t) = transcript {
            t.add_message(&message);
        }
        self.flight.push(FlightMessage {
            epoch,
            message,
            acked: Vec::new(),
            sent: Vec::new(),
            empty_acked: false,
        });
    }

    /// Sends every unacknowledged fragment of the flight, packed into
    /// datagrams of at most [`Config::mtu`] bytes, one fragment per record
    /// (so that an ACK names exactly what arrived), and arms the
    /// retransmission timer (RFC 9147 §5.8).
    fn send_flight(&mut self, now: Instant) {
        let mtu = self.config.mtu.max(200);
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut d: Vec<u8> = Vec::new();
        let mut frag = Vec::new();
        for i in 0..self.flight.len() {
            let epoch = self.flight[i].epoch;
            let overhead = if epoch == 0 {
                PLAINTEXT_OVERHEAD
            } else {
                PROTECTED_OVERHEAD
            } + FRAGMENT_HEADER;
            for (start, end) in self.flight[i].unacked() {
                let mut at = start;
                loop {
                    let room = mtu.saturating_sub(d.len() + overhead);
                    if room < 64.min(end - at + 1) && !d.is_empty() {
                        datagrams.push(std::mem::take(&mut d));
                        continue;
                    }
                    let take = (end - at).min(mtu - overhead);
                    let take = take.min(room.max(1));
                    let msg = &self.flight[i].message;
                    frag.clear();
                    HandshakeFragment {
                        header: HandshakeHeader {
                            msg_type: msg.msg_type,
                            length: msg.body.len() as u32,
                            message_seq: msg.message_seq,
                            fragment_offset: at as u32,
                            fragment_length: take as u32,
                        },
                        body: &msg.body[at..at + take],
                    }
                    .encode(&mut frag);
                    match self
                        .records
                        .seal_in(epoch, ContentType::Handshake, &frag, 0, &mut d)
                    {
                        Ok(number) => self.flight[i].sent.push((number, at, at + take)),
                        Err(e) => {
                            self.fail(e, AlertDescription::INTERNAL_ERROR);
                            return;
                        }
                    }
                    at += take;
                    if at >= end {
                        break;
                    }
                }
            }
        }
        if !d.is_empty() {
            datagrams.push(d);
        }
        for d in datagrams {
            self.push_datagram(d);
        }
        self.retransmit_at = if self.flight.is_empty() {
            None
        } else {
            Some(now + self.retransmit_timeout)
        };
    }

    /// A new flight starts: the previous one is implicitly acknowledged.
    fn begin_flight(&mut self) {
        self.flight.clear();
        self.retransmits = 0;
        self.retransmit_timeout = self.config.initial_retransmit_timeout;
    }

    /// Sends an ACK of the peer's records received so far (RFC 9147 §7),
    /// in the current write epoch.
    fn send_ack(&mut self) {
        self.ack_at = None;
        if self.to_ack.is_empty() {
            return;
        }
        let mut records = self.to_ack.clone();
        records.sort_unstable_by_key(|r| (r.epoch, r.sequence));
        records.dedup();
        // Only epochs at or below the one we write in may be named.
        let epoch = self.records.write_epoch();
        records.retain(|r| r.epoch <= epoch);
        if records.is_empty() {
            return;
        }
        let mut body = Vec::new();
        m::Ack { records }.encode(&mut body);
        let mut out = Vec::new();
        if self
            .records
            .seal(ContentType::Other(CONTENT_TYPE_ACK), &body, 0, &mut out)
            .is_ok()
        {
            self.push_datagram(out);
        }
    }

    fn fail(&mut self, error: Error, alert: AlertDescription) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        tracing::debug!(%error, state = self.state.name(), "DTLS 1.3 handshake failed");
        let mut payload = Vec::new();
        Alert::fatal(alert).encode(&mut payload);
        let mut out = Vec::new();
        if self
            .records
            .seal(ContentType::Alert, &payload, 0, &mut out)
            .is_ok()
        {
            self.push_datagram(out);
        }
        self.state = State::Failed;
        self.retransmit_at = None;
        self.ack_at = None;
        self.flight.clear();
        self.events.push_back(Event::Failed(error));
    }

    // -----------------------------------------------------------------------
    // Client.

    fn client_hello(&self, shares: &[ClientShare], cookie: Option<Vec<u8>>) -> m::ClientHello {
        let mut suites = vec![m::TLS_AES_128_GCM_SHA256];
        let mut versions = vec![m::DTLS_1_3];
        let mut schemes = SIGNATURE_SCHEMES.to_vec();
        let mut other = Vec::new();
        if self.offer_dtls12 {
            suites.extend(self.config.cipher_suites.iter().map(|s| s.code()));
            versions.push(m::DTLS_1_2);
            schemes.extend([
                SignatureScheme::RSA_PKCS1_SHA256,
                SignatureScheme::RSA_PKCS1_SHA384,
                SignatureScheme::RSA_PKCS1_SHA512,
            ]);
            other.push(Extension::EcPointFormats(vec![0]));
            other.push(Extension::RenegotiationInfo(Vec::new()));
            if self.config.offer_extended_master_secret {
                other.push(Extension::ExtendedMasterSecret);
            }
        }
        m::ClientHello {
            legacy_version: m::DTLS_1_2,
            random: self.client_random,
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
            use_srtp: (!self.config.srtp_profiles.is_empty()).then(|| m::UseSrtp {
                profiles: self.config.srtp_profiles.clone(),
                mki: vec![],
            }),
            cookie,
            other,
        }
    }

    fn first_client_hello(&mut self) -> Result<ClientWaitServerHello, Failure> {
        let mut shares = Vec::new();
        for g in &self.config.dtls13_key_shares {
            shares.push(
                ClientShare::generate(*g, &mut self.rng)
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?,
            );
        }
        let hello = self.client_hello(&shares, None);
        let mut transcript = Transcript::new();
        self.begin_flight();
        self.queue(
            Handshake::ClientHello(hello.clone()),
            0,
            Some(&mut transcript),
        );
        let hello_message = self.flight[0].message.clone();
        Ok(ClientWaitServerHello {
            shares,
            transcript,
            hello,
            hello_message,
            retried: false,
        })
    }

    fn client_on_server_hello(
        &mut self,
        now: Instant,
        mut st: Box<ClientWaitServerHello>,
        msg: &HandshakeMessage,
    ) -> Result<State, Failure> {
        let parsed = match ServerHelloKind::parse(&msg.body) {
            Ok(p) => p,
            Err(e) => {
                // RFC 8446 §4.2.1: no supported_versions means the server
                // chose 1.2; hand over if we offered it.
                if self.offer_dtls12 && !st.retried && msg.msg_type == HandshakeType::ServerHello {
                    return Ok(self.fall_back(&st));
                }
                return Err((e, AlertDescription::PROTOCOL_VERSION));
            }
        };
        match parsed {
            ServerHelloKind::HelloRetryRequest(hrr) => {
                if st.retried {
                    return Err((
                        Error::Misuse("a second HelloRetryRequest (RFC 8446 §4.1.4)"),
                        AlertDescription::UNEXPECTED_MESSAGE,
                    ));
                }
                check_version_and_suite(hrr.selected_version, hrr.cipher_suite)?;
                // RFC 8446 §4.4.1: ClientHello1 becomes its hash.
                let ch1 = st.transcript.hash();
                let mut transcript = Transcript::after_hello_retry(&ch1);
                transcript.add_message(msg);
                let mut shares = std::mem::take(&mut st.shares);
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
                        ClientShare::generate(g, &mut self.rng)
                            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?,
                    ];
                } else if hrr.cookie.is_none() {
                    return Err((
                        Error::Misuse("HelloRetryRequest that changes nothing"),
                        AlertDescription::ILLEGAL_PARAMETER,
                    ));
                }
                let mut hello = self.client_hello(&shares, hrr.cookie.clone());
                // After a 1.3 HelloRetryRequest the server has chosen 1.3.
                hello.supported_versions = vec![m::DTLS_1_3];
                hello.cipher_suites = vec![m::TLS_AES_128_GCM_SHA256];
                self.begin_flight();
                self.queue(
                    Handshake::ClientHello(hello.clone()),
                    0,
                    Some(&mut transcript),
                );
                self.send_flight(now);
                let hello_message = self.flight[0].message.clone();
                Ok(State::ClientWaitServerHello(Box::new(
                    ClientWaitServerHello {
                        shares,
                        transcript,
                        hello,
                        hello_message,
                        retried: true,
                    },
                )))
            }
            ServerHelloKind::ServerHello(sh) => {
                if sh.selected_version == m::DTLS_1_2 && self.offer_dtls12 && !st.retried {
                    return Ok(self.fall_back(&st));
                }
                check_version_and_suite(sh.selected_version, sh.cipher_suite)?;
                let ks_entry = sh.key_share.ok_or((
                    Error::InvalidValue {
                        what: "ServerHello without key_share",
                        value: 0,
                    },
                    AlertDescription::MISSING_EXTENSION,
                ))?;
                let idx = st
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
                let share = st.shares.swap_remove(idx);
                let shared = share
                    .complete(&ks_entry.key_exchange)
                    .map_err(|e| (e, AlertDescription::ILLEGAL_PARAMETER))?;
                let mut transcript = std::mem::take(&mut st.transcript);
                transcript.add_message(msg);
                let secret = EarlySecret::new(P).handshake_secret(shared.as_bytes());
                let traffic = secret.traffic_secrets(&transcript.hash());
                self.install(2, &traffic.server, &traffic.client)?;
                // The ClientHello is answered: flight 1 is done.
                self.begin_flight();
                self.retransmit_at = None;
                self.group = Some(ks_entry.group);
                Ok(State::ClientWaitEncryptedExtensions(Box::new(
                    HandshakeKeys {
                        transcript,
                        secret,
                        traffic,
                        srtp_profile: None,
                        group: ks_entry.group,
                    },
                )))
            }
        }
    }

    fn fall_back(&mut self, st: &ClientWaitServerHello) -> State {
        self.flight.clear();
        self.retransmit_at = None;
        tracing::debug!("DTLS server answered 1.2: falling back");
        let _ = &st.hello;
        State::FellBack(Box::new(Fallback {
            hello: st.hello_message.clone(),
            client_random: self.client_random,
        }))
    }

    /// Installs the keys of `epoch`, reading with `read` and writing with
    /// `write`.
    fn install(&mut self, epoch: u64, read: &Secret, write: &Secret) -> Result<(), Failure> {
        self.records
            .install_read(epoch, &TrafficKeys::derive(P, read))
            .and_then(|_| {
                self.records
                    .install_write(epoch, &TrafficKeys::derive(P, write))
            })
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))
    }

    fn client_handle(
        &mut self,
        now: Instant,
        state: State,
        msg: &HandshakeMessage,
    ) -> Result<State, Failure> {
        if let State::ClientWaitServerHello(st) = state {
            if msg.msg_type == HandshakeType::HelloVerifyRequest && self.offer_dtls12 {
                // Only a 1.2 server sends it (RFC 9147 §5.1 replaced it).
                return Ok(self.fall_back(&st));
            }
            if msg.msg_type != HandshakeType::ServerHello {
                return Err(unexpected("expected a ServerHello"));
            }
            return self.client_on_server_hello(now, st, msg);
        }
        let parsed = Handshake::parse(msg.msg_type, &msg.body)
            .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        match (state, parsed) {
            (State::ClientWaitEncryptedExtensions(mut k), Handshake::EncryptedExtensions(ee)) => {
                if let Some(u) = ee.use_srtp {
                    // RFC 5764 §4.1.1: the server picks one profile we
                    // offered.
                    match u.profiles.as_slice() {
                        [p] if self.config.srtp_profiles.contains(p) => {
                            k.srtp_profile = Some(*p);
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
                k.transcript.add_message(msg);
                Ok(State::ClientWaitCertificate(k, false))
            }
            (State::ClientWaitCertificate(mut k, false), Handshake::CertificateRequest(cr)) => {
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
                k.transcript.add_message(msg);
                Ok(State::ClientWaitCertificate(k, true))
            }
            (State::ClientWaitCertificate(mut k, requested), Handshake::Certificate(c)) => {
                let cert = self.accept_certificate(c)?;
                k.transcript.add_message(msg);
                Ok(State::ClientWaitCertificateVerify(k, requested, cert))
            }
            (
                State::ClientWaitCertificateVerify(mut k, requested, cert),
                Handshake::CertificateVerify(cv),
            ) => {
                let peer =
                    proof::VerifiedPeer::verify(cert, m::Signer::Server, &k.transcript.hash(), &cv)
                        .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
                k.transcript.add_message(msg);
                Ok(State::ClientWaitFinished(k, requested, peer))
            }
            (State::ClientWaitFinished(mut k, requested, peer), Handshake::Finished(f)) => {
                let checked = proof::FinishedChecked::check(&k.traffic.server, &k.transcript, &f)
                    .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
                k.transcript.add_message(msg);
                let master = k.secret.master_secret();
                let app = master.application_secrets(&k.transcript.hash());
                // Flight 3, in epoch 2 (RFC 8446 §4.4).
                self.begin_flight();
                if requested {
                    let c = self.own_certificate();
                    self.queue(c, 2, Some(&mut k.transcript));
                    let cv = self.own_certificate_verify(m::Signer::Client, &k.transcript)?;
                    self.queue(cv, 2, Some(&mut k.transcript));
                }
                let fin = Handshake::Finished(m::Finished {
                    verify_data: ks::verify_data(
                        &ks::finished_key(P, &k.traffic.client),
                        &k.transcript.hash(),
                    ),
                });
                self.queue(fin, 2, Some(&mut k.transcript));
                self.install(3, &app.traffic.server, &app.traffic.client)?;
                self.send_flight(now);
                // Our flight implicitly acknowledges the server's (§7.1).
                self.to_ack.clear();
                self.ack_at = None;
                self.established(&k, peer, checked, app)
            }
            (s, _) => {
                let _ = s;
                Err(unexpected("handshake message out of order"))
            }
        }
    }

    fn accept_certificate(
        &mut self,
        c: m::Certificate,
    ) -> Result<proof::AcceptedCertificate, Failure> {
        if !c.context.is_empty() && self.role == Role::Client {
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
        proof::AcceptedCertificate::check(
            first.cert_data,
            self.config.expected_fingerprint.as_ref(),
        )
        .map_err(|(e, a, got)| {
            self.rejected_fingerprint = got;
            (e, a)
        })
    }

    fn own_certificate(&self) -> Handshake {
        Handshake::Certificate(m::Certificate {
            context: vec![],
            entries: vec![m::CertificateEntry {
                cert_data: self.config.certificate.der().to_vec(),
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
            .config
            .certificate
            .sign(&content)
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
        Ok(Handshake::CertificateVerify(m::CertificateVerify {
            scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
            signature,
        }))
    }

    /// Both roles: the handshake is done; reports it.
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
        self.events.push_back(Event::Connected(Box::new(Connected {
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
        let key_log = ks::key_log_lines(&self.client_random, &k.traffic, &app);
        let (read_secret, write_secret) = match self.role {
            Role::Client => (app.traffic.server.clone(), app.traffic.client.clone()),
            Role::Server => (app.traffic.client.clone(), app.traffic.server.clone()),
        };
        // Epoch 0 is over both ways (RFC 9147 §6.1).
        self.records.close_plaintext();
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
    // Server.

    fn cookie_mac(&self, source: SocketAddr, head: &[u8]) -> [u8; 32] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.cookie_secret);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(source.to_string().as_bytes());
        ctx.update(head);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// The HelloRetryRequest for a ClientHello (deterministic: rebuilt
    /// identically from the cookie when the second ClientHello comes, so
    /// the server keeps no state before the return-routability check, RFC
    /// 9147 §5.1).
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

    fn server_on_client_hello(
        &mut self,
        now: Instant,
        msg: &HandshakeMessage,
        source: SocketAddr,
        record_sequence: u64,
    ) -> Result<Option<State>, Failure> {
        let ch =
            m::ClientHello::parse(&msg.body).map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
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
        let prefs: Vec<NamedGroup> = self
            .config
            .dtls13_key_shares
            .iter()
            .copied()
            .chain(GROUPS)
            .collect();
        let share = prefs.iter().find_map(|g| ch.key_share(*g)).cloned();
        let mut transcript;
        match &ch.cookie {
            None => {
                let group_needed = share.is_none();
                if !group_needed && !self.config.use_cookie {
                    transcript = Transcript::new();
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
                    let mut t = Transcript::new();
                    t.add_message(msg);
                    let mut cookie = Vec::with_capacity(COOKIE_LEN);
                    cookie.push(u8::from(selected.is_some()));
                    cookie.extend_from_slice(&selected.map_or(0, |g| g.0).to_be_bytes());
                    cookie.extend_from_slice(&t.hash());
                    let mac = self.cookie_mac(source, &cookie);
                    cookie.extend_from_slice(&mac);
                    // Stateless: the HRR is sent and forgotten.
                    let hrr = Self::hello_retry(selected, cookie).to_message(0);
                    let mut frag = Vec::new();
                    hrr.encode_unfragmented(&mut frag);
                    let mut scratch = RecordLayer::new();
                    scratch.advance_write_sequence(record_sequence);
                    let mut out = Vec::new();
                    if scratch
                        .seal(ContentType::Handshake, &frag, 0, &mut out)
                        .is_ok()
                    {
                        self.transmits.push_back(Transmit {
                            source: self.local,
                            destination: source,
                            contents: out,
                        });
                    }
                    return Ok(None);
                }
            }
            Some(cookie) => {
                if cookie.len() != COOKIE_LEN
                    || self.cookie_mac(source, &cookie[..COOKIE_LEN - 32])[..]
                        != cookie[COOKIE_LEN - 32..]
                {
                    return Err((
                        Error::InvalidValue {
                            what: "ClientHello cookie (not ours)",
                            value: cookie.len() as u64,
                        },
                        AlertDescription::ILLEGAL_PARAMETER,
                    ));
                }
                let selected = (cookie[0] == 1)
                    .then(|| NamedGroup(u16::from_be_bytes([cookie[1], cookie[2]])));
                let mut ch1 = [0u8; 32];
                ch1.copy_from_slice(&cookie[3..35]);
                transcript = Transcript::after_hello_retry(&ch1);
                let hrr = Self::hello_retry(selected, cookie.clone()).to_message(0);
                transcript.add_message(&hrr);
                // RFC 9147 §5.2: after a HelloRetryRequest (message_seq 0)
                // the ServerHello is the server's message 1.
                self.next_send_seq = 1;
            }
        }
        let share = share.ok_or((
            Error::InvalidValue {
                what: "second ClientHello without the requested key share",
                value: 0,
            },
            AlertDescription::ILLEGAL_PARAMETER,
        ))?;
        // From here on the client proved its address (or we skip cookies).
        // Our records continue above the number a stateless
        // HelloRetryRequest may have used.
        self.records.advance_write_sequence(record_sequence);
        self.peer = Some(source);
        self.client_random = ch.random;
        self.reassembler = Reassembler::with_next_seq(msg.message_seq.wrapping_add(1));
        transcript.add_message(msg);
        let (public, shared) =
            key_share::server_share(share.group, &share.key_exchange, &mut self.rng)
                .map_err(|e| (e, AlertDescription::ILLEGAL_PARAMETER))?;
        let mut random = [0u8; 32];
        self.rng.fill(&mut random);
        let srtp_profile = ch.use_srtp.as_ref().and_then(|u| {
            self.config
                .srtp_profiles
                .iter()
                .find(|p| u.profiles.contains(p))
                .copied()
        });
        self.begin_flight();
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
        self.queue(sh, 0, Some(&mut transcript));
        let secret = EarlySecret::new(P).handshake_secret(shared.as_bytes());
        let traffic = secret.traffic_secrets(&transcript.hash());
        self.install(2, &traffic.client, &traffic.server)?;
        let ee = Handshake::EncryptedExtensions(m::EncryptedExtensions {
            supported_groups: vec![],
            use_srtp: srtp_profile.map(|p| m::UseSrtp {
                profiles: vec![p],
                mki: vec![],
            }),
            other: vec![],
        });
        self.queue(ee, 2, Some(&mut transcript));
        if self.config.require_client_certificate {
            let cr = Handshake::CertificateRequest(m::CertificateRequest {
                context: vec![],
                signature_algorithms: SIGNATURE_SCHEMES.to_vec(),
                other: vec![],
            });
            self.queue(cr, 2, Some(&mut transcript));
        }
        let c = self.own_certificate();
        self.queue(c, 2, Some(&mut transcript));
        let cv = self.own_certificate_verify(m::Signer::Server, &transcript)?;
        self.queue(cv, 2, Some(&mut transcript));
        let fin = Handshake::Finished(m::Finished {
            verify_data: ks::verify_data(&ks::finished_key(P, &traffic.server), &transcript.hash()),
        });
        self.queue(fin, 2, Some(&mut transcript));
        // RFC 8446 §7.1: the application secrets hash the transcript
        // through the server's Finished.
        let app = Box::new(
            secret
                .master_secret()
                .application_secrets(&transcript.hash()),
        );
        self.send_flight(now);
        self.group = Some(share.group);
        let keys = Box::new(HandshakeKeys {
            transcript,
            secret,
            traffic,
            srtp_profile,
            group: share.group,
        });
        Ok(Some(State::ServerWaitCertificate(keys, app)))
    }

    fn server_handle(
        &mut self,
        now: Instant,
        state: State,
        msg: &HandshakeMessage,
    ) -> Result<State, Failure> {
        let parsed = Handshake::parse(msg.msg_type, &msg.body)
            .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        match (state, parsed) {
            (State::ServerWaitCertificate(mut k, app), Handshake::Certificate(c)) => {
                if !self.config.require_client_certificate {
                    return Err(unexpected("Certificate not requested"));
                }
                let cert = self.accept_certificate(c)?;
                k.transcript.add_message(msg);
                Ok(State::ServerWaitCertificateVerify(k, app, cert))
            }
            (
                State::ServerWaitCertificateVerify(mut k, app, cert),
                Handshake::CertificateVerify(cv),
            ) => {
                let peer =
                    proof::VerifiedPeer::verify(cert, m::Signer::Client, &k.transcript.hash(), &cv)
                        .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
                k.transcript.add_message(msg);
                Ok(State::ServerWaitFinished(k, app, peer))
            }
            (State::ServerWaitFinished(mut k, app, peer), Handshake::Finished(f)) => {
                let checked = proof::FinishedChecked::check(&k.traffic.client, &k.transcript, &f)
                    .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
                k.transcript.add_message(msg);
                self.install(3, &app.traffic.client, &app.traffic.server)?;
                // Our flight is done; acknowledge the client's (RFC 9147
                // §7: the server's last flight is an ACK).
                self.flight.clear();
                self.retransmit_at = None;
                self.send_ack();
                let _ = now;
                self.established(&k, peer, checked, *app)
            }
            _ => Err(unexpected("handshake message out of order")),
        }
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
        if matches!(
            self.state,
            State::Failed | State::Closed | State::FellBack(_)
        ) {
            return;
        }
        if let Some(peer) = self.peer {
            if peer != source && !matches!(self.state, State::ServerWaitClientHello) {
                return;
            }
            self.heard_from_peer |= peer == source;
        }
        self.local.get_or_insert(destination);
        if matches!(self.state, State::ServerWaitClientHello) {
            self.receive_client_hello(now, source, datagram);
            return;
        }
        let mut got = Vec::new();
        self.records.receive(datagram, &mut got);
        self.process(now, got);
    }

    /// A server before its first answer: reads the epoch-0 ClientHello
    /// on a throw-away record layer (no state kept for strangers).
    fn receive_client_hello(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
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
                if self.reassembler.next_seq() != f.header.message_seq
                    || self.hello_source != Some(source)
                {
                    self.reassembler = Reassembler::with_next_seq(f.header.message_seq);
                    self.hello_source = Some(source);
                }
                self.reassembler.insert(&f);
                if let Some(msg) = self.reassembler.pop() {
                    self.reassembler = Reassembler::new();
                    match self.server_on_client_hello(now, &msg, source, r.number.sequence) {
                        Ok(Some(state)) => {
                            // Mark the hello's records as seen on the real
                            // record layer, so replays of it are dropped.
                            let mut seen = Vec::new();
                            self.records.receive(datagram, &mut seen);
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
                        match self.reassembler.insert(&f) {
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
                    while let Some(msg) = self.reassembler.pop() {
                        let epoch_before = self.records_read_epoch();
                        if let Err((e, a)) = self.handle_message(now, &msg, r.number.epoch) {
                            self.fail(e, a);
                            return;
                        }
                        if matches!(self.state, State::FellBack(_) | State::Failed) {
                            return;
                        }
                        // New read keys: records held for them now open.
                        if self.records_read_epoch() != epoch_before {
                            let mut unlocked = Vec::new();
                            self.records.take_unlocked(&mut unlocked);
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
                    self.events.push_back(Event::ApplicationData(r.fragment));
                }
                ContentType::Alert => {
                    let Ok(alert) = Alert::parse(&r.fragment) else {
                        continue;
                    };
                    if alert.description == AlertDescription::CLOSE_NOTIFY {
                        self.state = State::Closed;
                        self.retransmit_at = None;
                        self.ack_at = None;
                        self.events.push_back(Event::Closed);
                        return;
                    }
                    if alert.level != AlertLevel::Warning {
                        self.state = State::Failed;
                        self.retransmit_at = None;
                        self.ack_at = None;
                        self.events.push_back(Event::PeerAlert(alert));
                        return;
                    }
                }
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
            if matches!(
                self.state,
                State::ServerWaitCertificate(..)
                    | State::ServerWaitCertificateVerify(..)
                    | State::ServerWaitFinished(..)
            ) {
                // Part of the client's next flight acknowledges all of ours
                // (RFC 9147 §7.1: the client sends it only once it has
                // our whole flight).
                self.flight.clear();
                self.retransmit_at = None;
            }
            // Part of the peer's flight is here: acknowledge it soon so
            // that only the rest is resent (RFC 9147 §7.1).
            let delay = self.config.initial_retransmit_timeout / 4;
            self.ack_at.get_or_insert(now + delay);
        }
    }

    fn records_read_epoch(&self) -> u64 {
        match &self.state {
            State::Connected(c) => c.read_epoch,
            State::ClientWaitServerHello(_) | State::ServerWaitClientHello => 0,
            State::ServerWaitCertificate(..)
            | State::ServerWaitCertificateVerify(..)
            | State::ServerWaitFinished(..)
            | State::ClientWaitEncryptedExtensions(_)
            | State::ClientWaitCertificate(..)
            | State::ClientWaitCertificateVerify(..)
            | State::ClientWaitFinished(..) => 2,
            _ => 0,
        }
    }

    /// Whether we wait for more of a peer flight (a partial one is
    /// worth an ACK).
    fn awaiting_flight(&self) -> bool {
        !matches!(
            self.state,
            State::Connected(_) | State::ClientWaitServerHello(_) | State::ServerWaitClientHello
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
        let next = match self.role {
            Role::Client => self.client_handle(now, state, msg),
            Role::Server => self.server_handle(now, state, msg),
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
                self.records
                    .install_read(c.read_epoch, &TrafficKeys::derive(P, &c.read_secret))
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
                self.send_ack();
                self.to_ack.clear();
                if u == m::KeyUpdate::Requested && !c.update_pending {
                    c.update_pending = true;
                    self.flight.clear();
                    let epoch = self.records.write_epoch();
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

    fn on_ack(&mut self, ack: &m::Ack) {
        if self.flight.is_empty() {
            return;
        }
        for n in &ack.records {
            for f in &mut self.flight {
                f.ack(n);
            }
        }
        if self.flight.iter().all(|f| f.unacked().is_empty()) {
            let was_update = self
                .flight
                .iter()
                .any(|f| f.message.msg_type == m::msg_type::KEY_UPDATE);
            self.flight.clear();
            self.retransmit_at = None;
            self.retransmits = 0;
            self.retransmit_timeout = self.config.initial_retransmit_timeout;
            if let State::Connected(c) = &mut self.state {
                // The client's Finished flight is acknowledged: the keys of
                // epoch 2 may go.
                self.records.drop_old_write_epochs();
                if was_update && c.update_pending {
                    c.update_pending = false;
                    c.write_secret = ks::next_traffic_secret(P, &c.write_secret);
                    c.write_epoch += 1;
                    let keys = TrafficKeys::derive(P, &c.write_secret);
                    let _ = self.records.install_write(c.write_epoch, &keys);
                }
            }
        }
    }
}

fn unexpected(what: &'static str) -> Failure {
    (Error::Misuse(what), AlertDescription::UNEXPECTED_MESSAGE)
}

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
        let Some(at) = self.retransmit_at else { return };
        if now < at {
            return;
        }
        if self.retransmits >= MAX_RETRANSMITS {
            self.fail(Error::HandshakeTimeout, AlertDescription::HANDSHAKE_FAILURE);
            return;
        }
        self.retransmits += 1;
        self.retransmit_timeout = (self.retransmit_timeout * 2).min(MAX_RETRANSMIT_TIMEOUT);
        tracing::debug!(
            retransmits = self.retransmits,
            state = self.state.name(),
            "DTLS 1.3 flight retransmitted"
        );
        self.send_flight(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.retransmit_at, self.ack_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Values that only a passed check can make.
mod proof {
    use super::*;

    /// Shared with 1.2: the certificate whose fingerprint checked out.
    pub(super) use crate::dtls::endpoint::AcceptedCertificate;

    /// The accepted certificate's key signed the transcript
    /// (CertificateVerify, RFC 8446 §4.4.3).
    #[derive(Debug)]
    pub(super) struct VerifiedPeer(AcceptedCertificate);

    impl VerifiedPeer {
        pub(super) fn verify(
            cert: AcceptedCertificate,
            signer: m::Signer,
            transcript_hash: &ks::TranscriptHash,
            cv: &m::CertificateVerify,
        ) -> Result<Self, Error> {
            // RFC 8446 §4.4.3: PKCS#1 v1.5 is not for CertificateVerify.
            if !SIGNATURE_SCHEMES.contains(&cv.scheme) {
                return Err(Error::UnsupportedAlgorithm("CertificateVerify scheme"));
            }
            let content = m::CertificateVerify::signed_content(signer, transcript_hash);
            cert.verify_signature(cv.scheme, &content, &cv.signature)?;
            Ok(VerifiedPeer(cert))
        }

        pub(super) fn certificate(&self) -> &AcceptedCertificate {
            &self.0
        }
    }

    /// The peer's Finished matched our transcript (RFC 8446 §4.4.4).
    #[derive(Debug)]
    pub(super) struct FinishedChecked(());

    impl FinishedChecked {
        pub(super) fn check(
            base_key: &Secret,
            transcript: &Transcript,
            f: &m::Finished,
        ) -> Result<Self, Error> {
            let key = ks::finished_key(P, base_key);
            if ks::verify_finished(&key, &transcript.hash(), &f.verify_data) {
                Ok(FinishedChecked(()))
            } else {
                Err(Error::BadFinished)
            }
        }
    }
}

#[cfg(test)]
mod tests;
