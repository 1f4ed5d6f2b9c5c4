//! The DTLS 1.2 handshake state machines, client and server, as one sans-IO
//! [`Endpoint`] (RFC 6347 §4.2, RFC 5246 §7.3, RFC 8422, RFC 5764).
//!
//! The endpoint owns a [`RecordLayer`] and a [`Reassembler`], sends whole
//! flights and retransmits them on a timer (RFC 6347 §4.2.4), and reports
//! [`Event`]s. It never touches a socket or a clock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng, rngs::StdRng};
use ring::{agreement, digest, hmac};

use super::Error;
use super::cert::{Certificate, Fingerprint, HashAlgorithm, PublicKeyInfo, SignatureScheme};
use super::handshake::{
    Alert, AlertDescription, AlertLevel, CLIENT_SIGNATURE_SCHEMES, CertificateMsg,
    CertificateRequest, ClientHello, ClientKeyExchange, DigitallySigned, Extension, Handshake,
    HandshakeMessage, HandshakeType, HelloVerifyRequest, Inserted, NamedGroup, Reassembler,
    ServerHello, ServerKeyExchange, SrtpProfile, extension_type, fragments,
};
use super::prf::{MasterSecret, Sender, SrtpKeyingMaterial};
use super::record::{
    Authentication, CipherSuite, ContentType, DTLS_1_2, Plaintext, RECORD_HEADER_LEN, RecordLayer,
    RecordProtection, records,
};
use crate::machine::{Machine, Receive, Transmit};

// ANCHOR: retransmit_timeout
/// Initial retransmission timeout.
///
/// RFC 6347 §4.2.4.1 suggests 1 s. WebRTC is interactive: the handshake sits
/// between ICE success and the first media frame, and on the paths it runs
/// over (ICE has just measured them) a round trip is rarely above 200 ms, so
/// a lost flight costing a whole second is visible to the user. 250 ms
/// covers one such round trip plus signing time; the timer still doubles on
/// each retransmission (up to [`MAX_RETRANSMIT_TIMEOUT`]), so a slow path
/// costs a few spurious retransmissions, never congestion.
pub const INITIAL_RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(250);

/// Cap of the doubling timer (RFC 6347 §4.2.4.1: 60 s).
pub const MAX_RETRANSMIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Retransmissions of one flight before the handshake fails.
pub const MAX_RETRANSMITS: u32 = 8;
// ANCHOR_END: retransmit_timeout

/// The session_ticket extension type (RFC 5077 §3.2).
const SESSION_TICKET: u16 = 35;

/// Configuration of an endpoint.
#[derive(Debug)]
pub struct Config {
    /// Our certificate and key.
    pub certificate: Certificate,
    /// Fingerprint the peer's certificate must match (from its SDP); `None`
    /// accepts any certificate (tests, `rtclab dtls` without
    /// `--fingerprint`).
    pub expected_fingerprint: Option<Fingerprint>,
    /// SRTP profiles to offer or accept, preferred first; empty: no use_srtp.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Cipher suites, preferred first.
    pub cipher_suites: Vec<CipherSuite>,
    /// Largest datagram we send (the path MTU minus IP/UDP headers).
    pub mtu: usize,
    /// Initial retransmission timeout.
    pub initial_retransmit_timeout: Duration,
    /// Server: ask the client for a certificate (WebRTC requires it).
    pub require_client_certificate: bool,
    /// Server: answer a ClientHello without a cookie with a
    /// HelloVerifyRequest (RFC 6347 §4.2.1).
    pub use_cookie: bool,
    /// Client: offer extended_master_secret (RFC 7627). On by default;
    /// off only to talk to (or test as) a peer without it.
    pub offer_extended_master_secret: bool,
    /// Client: offer an empty session_ticket extension (RFC 5077 §3.2).
    /// We never resume, but a server that issues tickets then sends a
    /// NewSessionTicket, which we take into the transcript and ignore. Off
    /// by default; the OpenSSL interop test turns it on to cover that path.
    pub offer_session_ticket: bool,
    /// The highest DTLS version offered (client) or accepted (server).
    /// [`Version::Dtls12`] by default; with [`Version::Dtls13`] an
    /// [`super::endpoint_auto::AutoEndpoint`] offers 1.3 beside 1.2 and
    /// falls back to 1.2 when the peer does not speak 1.3.
    pub max_version: Version,
    /// DTLS 1.3 key share groups: a client sends a share of each (the
    /// hybrid X25519MLKEM768 first, as Chromium and Firefox do); a server
    /// prefers them in this order.
    pub dtls13_key_shares: Vec<NamedGroup>,
}

/// A DTLS version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    /// DTLS 1.2 (RFC 6347), 0xfefd on the wire.
    Dtls12,
    /// DTLS 1.3 (RFC 9147), 0xfefc.
    Dtls13,
}

impl Version {
    /// The wire value (what getStats' `tlsVersion` shows in hex: FEFD,
    /// FEFC).
    pub fn code(self) -> u16 {
        match self {
            Version::Dtls12 => 0xfefd,
            Version::Dtls13 => 0xfefc,
        }
    }
}

impl Config {
    /// WebRTC defaults around a certificate: all suites and SRTP profiles,
    /// MTU 1200, client certificates required, cookies on.
    pub fn new(certificate: Certificate) -> Self {
        Config {
            certificate,
            expected_fingerprint: None,
            srtp_profiles: vec![
                SrtpProfile::AEAD_AES_128_GCM,
                SrtpProfile::AEAD_AES_256_GCM,
                SrtpProfile::AES128_CM_HMAC_SHA1_80,
                SrtpProfile::AES128_CM_HMAC_SHA1_32,
            ],
            cipher_suites: CipherSuite::ALL.to_vec(),
            mtu: 1200,
            initial_retransmit_timeout: INITIAL_RETRANSMIT_TIMEOUT,
            require_client_certificate: true,
            use_cookie: true,
            offer_extended_master_secret: true,
            offer_session_ticket: false,
            max_version: Version::Dtls12,
            dtls13_key_shares: super::v13::endpoint::DEFAULT_KEY_SHARES.to_vec(),
        }
    }
}

/// SRTP master key and salt lengths of a profile (RFC 5764 §4.1.2, RFC 7714
/// §12).
pub fn srtp_key_salt_len(profile: SrtpProfile) -> Option<(usize, usize)> {
    match profile {
        SrtpProfile::AES128_CM_HMAC_SHA1_80 | SrtpProfile::AES128_CM_HMAC_SHA1_32 => Some((16, 14)),
        SrtpProfile::AEAD_AES_128_GCM => Some((16, 12)),
        SrtpProfile::AEAD_AES_256_GCM => Some((32, 12)),
        _ => None,
    }
}

/// What a finished handshake agreed on.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The version negotiated.
    pub version: Version,
    /// The suite.
    pub cipher_suite: CipherSuite,
    /// DTLS 1.3: the key share group (X25519MLKEM768 with the browsers);
    /// `None` in 1.2 (its ECDHE group is not reported).
    pub key_share_group: Option<NamedGroup>,
    /// The SRTP profile, if use_srtp was negotiated.
    pub srtp_profile: Option<SrtpProfile>,
    /// The raw exporter output for SRTP (60, 56 or 88 bytes).
    pub srtp_keying_material: Option<Vec<u8>>,
    /// The same, split into keys and salts.
    pub srtp_keys: Option<SrtpKeyingMaterial>,
    /// The peer's certificate (DER).
    pub peer_certificate: Vec<u8>,
    /// Its SHA-256 fingerprint.
    pub peer_fingerprint: Fingerprint,
    /// Whether the extended master secret was used.
    pub extended_master_secret: bool,
}

/// What happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The handshake completed.
    Connected(Box<Connected>),
    /// Application data arrived.
    ApplicationData(Vec<u8>),
    /// The peer closed with close_notify.
    Closed,
    /// The handshake or association failed; a fatal alert was sent when it
    /// made sense.
    Failed(Error),
    /// The peer sent a fatal alert.
    PeerAlert(Alert),
}

/// Client or server: the crate's one DTLS role type, kept in the leaf
/// [`crate::vocab`] (data channels take it too), named `Role` here.
pub use crate::vocab::DtlsRole as Role;

/// Where the handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ClientWaitServerHello,
    ClientWaitCertificate,
    ClientWaitKeyExchange,
    ClientWaitCertRequestOrDone,
    ClientWaitDone,
    ClientWaitFinished,
    ServerWaitClientHello,
    ServerWaitCertificate,
    ServerWaitKeyExchange,
    ServerWaitCertificateVerify,
    ServerWaitFinished,
    Connected,
    Closed,
    Failed,
}

/// One record of a flight, kept to retransmit it.
#[derive(Debug, Clone)]
struct FlightItem {
    /// Sent in the epoch before the current write epoch (ChangeCipherSpec
    /// splits flights 5 and 6 across two epochs).
    previous_epoch: bool,
    content_type: ContentType,
    /// A handshake message (fragmented at send time) or a raw payload.
    message: Option<HandshakeMessage>,
    payload: Vec<u8>,
}

/// Negotiated parameters.
#[derive(Debug, Clone)]
struct Params {
    suite: CipherSuite,
    srtp_profile: Option<SrtpProfile>,
    ems: bool,
}

/// A DTLS 1.2 endpoint for one peer.
pub struct Endpoint {
    role: Role,
    config: Config,
    rng: StdRng,
    state: State,
    peer: Option<SocketAddr>,
    local: Option<SocketAddr>,
    records: RecordLayer,
    reassembler: Reassembler,
    /// Unfragmented handshake messages so far (RFC 5246 §7.4.9's
    /// handshake_messages; RFC 6347 §4.2.6 leaves out the first ClientHello
    /// and HelloVerifyRequest).
    transcript: Vec<u8>,
    next_send_seq: u16,
    client_random: [u8; 32],
    server_random: [u8; 32],
    cookie: Vec<u8>,
    cookie_secret: [u8; 32],
    params: Option<Params>,
    /// The peer's certificate, once its fingerprint checked out.
    peer_certificate: Option<proof::AcceptedCertificate>,
    /// Client: the server's ECDHE share, once its signature verified.
    server_share: Option<proof::VerifiedKeyShare>,
    /// Server, before a valid cookie: whose fragmented hello is being
    /// reassembled.
    hello_source: Option<SocketAddr>,
    /// Server: the client's CertificateVerify, once it verified.
    client_proven: Option<proof::ClientKeyProven>,
    certificate_requested: bool,
    server_ecdhe: Option<(NamedGroup, agreement::EphemeralPrivateKey)>,
    pending_write: Option<RecordProtection>,
    master: Option<MasterSecret>,
    flight: Vec<FlightItem>,
    /// First message_seq of the peer flight that answers ours.
    peer_flight_start: u16,
    retransmit_at: Option<Instant>,
    retransmit_timeout: Duration,
    retransmits: u32,
    /// A datagram came from the peer (a client knows its path works).
    heard_from_peer: bool,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    /// The fingerprint of a peer certificate refused because it did not
    /// match [`Config::expected_fingerprint`] (in that fingerprint's hash).
    rejected_fingerprint: Option<Fingerprint>,
    /// Client: our ClientHello offered DTLS 1.3 (the downgrade sentinel
    /// is checked).
    offered_dtls13: bool,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("role", &self.role)
            .field("state", &self.state)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn sha(hash: &'static digest::Algorithm, data: &[u8]) -> Vec<u8> {
    digest::digest(hash, data).as_ref().to_vec()
}

impl Endpoint {
    /// A client; its ClientHello to `peer` is queued at once (drain
    /// [`Machine::poll_transmit`]).
    pub fn client(config: Config, peer: SocketAddr, rng_seed: u64, now: Instant) -> Self {
        let mut e = Self::new(Role::Client, config, Some(peer), rng_seed);
        e.rng.fill(&mut e.client_random);
        e.state = State::ClientWaitServerHello;
        e.send_client_hello(now);
        e
    }

    /// A client taking over a handshake whose ClientHello a DTLS 1.3
    /// client sent offering 1.2 too, after the server answered 1.2 (a
    /// HelloVerifyRequest, or a ServerHello without supported_versions):
    /// `hello` is in the transcript and is the flight to retransmit, our
    /// records continue after the `records_sent` it took, and a
    /// ServerHello whose random carries the downgrade sentinel is refused
    /// (RFC 8446 §4.1.3: a 1.3 server was made to pick 1.2).
    pub fn client_after_hello(
        config: Config,
        peer: SocketAddr,
        rng_seed: u64,
        now: Instant,
        client_random: [u8; 32],
        hello: HandshakeMessage,
        records_sent: u64,
    ) -> Self {
        let mut e = Self::new(Role::Client, config, Some(peer), rng_seed);
        e.client_random = client_random;
        e.offered_dtls13 = true;
        e.state = State::ClientWaitServerHello;
        e.records.set_write_sequence(records_sent);
        e.begin_flight();
        e.next_send_seq = hello.message_seq.wrapping_add(1);
        hello.encode_unfragmented(&mut e.transcript);
        e.flight.push(FlightItem {
            previous_epoch: false,
            content_type: ContentType::Handshake,
            message: Some(hello),
            payload: Vec::new(),
        });
        e.retransmit_at = Some(now + e.retransmit_timeout);
        e.heard_from_peer = true;
        e
    }

    /// A server that answers the first ClientHello it receives.
    pub fn server(config: Config, rng_seed: u64) -> Self {
        Self::new(Role::Server, config, None, rng_seed)
    }

    fn new(role: Role, config: Config, peer: Option<SocketAddr>, rng_seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(rng_seed);
        let mut cookie_secret = [0u8; 32];
        rng.fill(&mut cookie_secret);
        let retransmit_timeout = config.initial_retransmit_timeout;
        Endpoint {
            role,
            config,
            rng,
            state: match role {
                Role::Client => State::ClientWaitServerHello,
                Role::Server => State::ServerWaitClientHello,
            },
            peer,
            local: None,
            records: RecordLayer::new(),
            reassembler: Reassembler::new(),
            transcript: Vec::new(),
            next_send_seq: 0,
            client_random: [0; 32],
            server_random: [0; 32],
            cookie: Vec::new(),
            cookie_secret,
            params: None,
            peer_certificate: None,
            server_share: None,
            hello_source: None,
            client_proven: None,
            certificate_requested: false,
            server_ecdhe: None,
            pending_write: None,
            master: None,
            flight: Vec::new(),
            peer_flight_start: 0,
            retransmit_at: None,
            retransmit_timeout,
            retransmits: 0,
            heard_from_peer: false,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rejected_fingerprint: None,
            offered_dtls13: false,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer: the address given to [`Endpoint::client`], or for a server
    /// the client whose ClientHello carried a valid cookie (`None` before).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// The peer now sends from (and is sent to at) `peer`. DTLS binds
    /// nothing to an address (RFC 6347 §4.1: the association is its keys
    /// and epochs), but this endpoint only reads datagrams from its peer's.
    /// Under ICE the path may change during the call: the controlling
    /// agent can move to another candidate pair, and RFC 8445 §12 has an
    /// agent accept data on any valid pair. A transport that vets sources
    /// itself (ICE remote candidates, consent) calls this when its peer
    /// moves. Ignored before the peer is known (a server waiting for its
    /// ClientHello).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        if self.peer.is_some() {
            self.peer = Some(peer);
        }
    }

    /// The path to the peer changed before it answered our first flight
    /// (ICE selected a pair after the handshake had started on a valid
    /// one, RFC 8445 §12.1): a client whose ClientHello went out at least
    /// `older_than` ago sends it again at once instead of at its
    /// retransmission timer, whose back-off is left alone. Firefox reads
    /// no DTLS before its ICE has selected a pair, so the first copy is
    /// lost to it, and waiting for the timer cost 100 ms per call. Does
    /// nothing once the peer has been heard from, or in any other state.
    pub fn resend_unanswered_client_hello(&mut self, now: Instant, older_than: Duration) {
        let sent = self
            .retransmit_at
            .map(|at| at.checked_sub(self.retransmit_timeout).unwrap_or(at));
        if self.role == Role::Client
            && self.state == State::ClientWaitServerHello
            && !self.heard_from_peer
            && sent.is_some_and(|t| now.saturating_duration_since(t) >= older_than)
        {
            tracing::debug!("DTLS ClientHello resent on the selected pair");
            self.retransmit(now);
        }
    }

    /// Whether the handshake completed and the association is open.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// The NSS key log line for this association, once the master secret
    /// exists: `CLIENT_RANDOM <client_random hex> <master_secret hex>`.
    /// Whoever owns the I/O appends it to the file named by `SSLKEYLOGFILE`
    /// so Wireshark can decrypt a capture (the endpoint itself does no
    /// file I/O).
    pub fn key_log_line(&self) -> Option<String> {
        let master = self.master.as_ref()?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        Some(format!(
            "CLIENT_RANDOM {} {}",
            hex(&self.client_random),
            hex(&master.0)
        ))
    }

    /// After [`Event::Failed`] with [`Error::FingerprintMismatch`]: the
    /// fingerprint the refused certificate actually has, computed with the
    /// hash of [`Config::expected_fingerprint`], so that the caller can say
    /// "expected X, got Y".
    pub fn rejected_fingerprint(&self) -> Option<&Fingerprint> {
        self.rejected_fingerprint.as_ref()
    }

    /// Records dropped by the record layer (bad, replayed, unknown epoch).
    pub fn dropped_records(&self) -> u64 {
        self.records.dropped()
    }

    /// Sends application data (one record per call; at most 2^14 bytes).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.state != State::Connected {
            return Err(Error::Misuse("send before the handshake completed"));
        }
        let mut out = Vec::with_capacity(data.len() + 64);
        self.records
            .seal(ContentType::ApplicationData, data, &mut out)?;
        self.push_datagram(out);
        Ok(())
    }

    /// Gives back the buffer of an [`Event::ApplicationData`] the caller
    /// is done with, to carry a later record (no allocation per record).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.records.recycle(buf);
    }

    /// As [`Endpoint::send`], but the record is appended to `out` instead of
    /// queued as a [`Transmit`]: the caller (a transport that gathers its
    /// datagrams in one reused buffer) sends `out`'s new bytes as one
    /// datagram to the peer. No allocation once `out` has room. Anything
    /// [`Machine::poll_transmit`] still holds (a handshake flight, an
    /// alert) should be sent first, to keep records in order.
    pub fn seal_application_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.state != State::Connected {
            return Err(Error::Misuse("send before the handshake completed"));
        }
        self.records.seal(ContentType::ApplicationData, data, out)
    }

    /// Sends close_notify and closes.
    pub fn close(&mut self) {
        if self.state == State::Connected {
            let mut out = Vec::new();
            let mut alert = Vec::new();
            Alert::close_notify().encode(&mut alert);
            if self
                .records
                .seal(ContentType::Alert, &alert, &mut out)
                .is_ok()
            {
                self.push_datagram(out);
            }
        }
        self.state = State::Closed;
        self.retransmit_at = None;
    }

    fn push_datagram(&mut self, contents: Vec<u8>) {
        if let Some(destination) = self.peer {
            self.transmits.push_back(Transmit {
                source: self.local,
                destination,
                contents,
            });
        }
    }

    // -----------------------------------------------------------------------
    // Failure.

    fn fail(&mut self, error: Error, alert: AlertDescription) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        let mut payload = Vec::new();
        Alert::fatal(alert).encode(&mut payload);
        let mut out = Vec::new();
        if self
            .records
            .seal(ContentType::Alert, &payload, &mut out)
            .is_ok()
        {
            self.push_datagram(out);
        }
        self.state = State::Failed;
        self.retransmit_at = None;
        self.flight.clear();
        self.events.push_back(Event::Failed(error));
    }

    // -----------------------------------------------------------------------
    // Flights.

    /// Starts a new flight of ours; the peer's next flight starts with the
    /// next message_seq we expect.
    fn begin_flight(&mut self) {
        self.flight.clear();
        self.peer_flight_start = self.reassembler.next_seq();
    }

    /// Adds a handshake message to the current flight and to the transcript.
    fn add_message(&mut self, msg: &Handshake) {
        let message = msg.to_message(self.next_send_seq);
        self.next_send_seq = self.next_send_seq.wrapping_add(1);
        message.encode_unfragmented(&mut self.transcript);
        self.flight.push(FlightItem {
            previous_epoch: false,
            content_type: ContentType::Handshake,
            message: Some(message),
            payload: Vec::new(),
        });
    }

    fn add_change_cipher_spec(&mut self) {
        self.flight.push(FlightItem {
            previous_epoch: false,
            content_type: ContentType::ChangeCipherSpec,
            message: None,
            payload: vec![1],
        });
    }

    /// Packs the flight's records into datagrams of at most `mtu` bytes and
    /// queues them; arms the retransmission timer when `expect_reply`.
    fn send_flight(&mut self, now: Instant, expect_reply: bool) {
        let mtu = self.config.mtu.max(RECORD_HEADER_LEN + 64);
        let overhead = RECORD_HEADER_LEN + 8 + 16; // worst case: GCM
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        let items = self.flight.clone();
        for item in &items {
            let mut payloads = Vec::new();
            match &item.message {
                Some(m) => m.fragment(mtu - overhead, |f| {
                    let mut p = Vec::new();
                    f.encode(&mut p);
                    payloads.push(p);
                }),
                None => payloads.push(item.payload.clone()),
            }
            for p in payloads {
                if !current.is_empty() && current.len() + p.len() + overhead > mtu {
                    datagrams.push(std::mem::take(&mut current));
                }
                let sealed = if item.previous_epoch {
                    self.records
                        .seal_previous_epoch(item.content_type, &p, &mut current)
                } else {
                    self.records.seal(item.content_type, &p, &mut current)
                };
                if let Err(e) = sealed {
                    self.fail(e, AlertDescription::INTERNAL_ERROR);
                    return;
                }
            }
        }
        if !current.is_empty() {
            datagrams.push(current);
        }
        for d in datagrams {
            self.push_datagram(d);
        }
        self.retransmit_at = expect_reply.then(|| now + self.retransmit_timeout);
    }

    /// After ChangeCipherSpec moved writing to epoch 1, the records sent
    /// before it must be retransmitted in epoch 0.
    fn mark_sent_items_previous_epoch(&mut self) {
        for item in &mut self.flight {
            item.previous_epoch = true;
        }
    }

    fn retransmit(&mut self, now: Instant) {
        if self.flight.is_empty() {
            return;
        }
        let expect_reply = self.state != State::Connected;
        self.send_flight(now, expect_reply);
    }

    // -----------------------------------------------------------------------
    // Client.

    fn client_hello(&self) -> ClientHello {
        let mut extensions = vec![
            Extension::SupportedGroups(vec![NamedGroup::X25519, NamedGroup::SECP256R1]),
            Extension::EcPointFormats(vec![0]),
            Extension::SignatureAlgorithms(CLIENT_SIGNATURE_SCHEMES.to_vec()),
            Extension::RenegotiationInfo(Vec::new()),
        ];
        if self.config.offer_extended_master_secret {
            extensions.push(Extension::ExtendedMasterSecret);
        }
        if self.config.offer_session_ticket {
            extensions.push(Extension::Unknown {
                typ: SESSION_TICKET,
                data: Vec::new(),
            });
        }
        if !self.config.srtp_profiles.is_empty() {
            extensions.push(Extension::UseSrtp {
                profiles: self.config.srtp_profiles.clone(),
                mki: Vec::new(),
            });
        }
        ClientHello {
            version: DTLS_1_2,
            random: self.client_random,
            session_id: Vec::new(),
            cookie: self.cookie.clone(),
            cipher_suites: self.config.cipher_suites.iter().map(|s| s.code()).collect(),
            compression_methods: vec![0],
            extensions,
        }
    }

    fn send_client_hello(&mut self, now: Instant) {
        self.begin_flight();
        // RFC 6347 §4.2.6: the transcript starts with the ClientHello that
        // the server accepts; a HelloVerifyRequest resets it.
        self.transcript.clear();
        let hello = Handshake::ClientHello(self.client_hello());
        self.add_message(&hello);
        self.send_flight(now, true);
    }

    fn client_handle(
        &mut self,
        now: Instant,
        msg: HandshakeMessage,
    ) -> Result<(), (Error, AlertDescription)> {
        let parsed = Handshake::parse(msg.msg_type, &msg.body)
            .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        let unexpected =
            |what: &'static str| Err((Error::Misuse(what), AlertDescription::UNEXPECTED_MESSAGE));
        match (self.state, parsed) {
            (State::ClientWaitServerHello, Handshake::HelloVerifyRequest(hvr)) => {
                if hvr.cookie.is_empty() {
                    return Err((
                        Error::InvalidValue {
                            what: "HelloVerifyRequest cookie length",
                            value: 0,
                        },
                        AlertDescription::ILLEGAL_PARAMETER,
                    ));
                }
                self.cookie = hvr.cookie;
                self.retransmits = 0;
                self.retransmit_timeout = self.config.initial_retransmit_timeout;
                self.send_client_hello(now);
                Ok(())
            }
            (State::ClientWaitServerHello, Handshake::ServerHello(sh)) => {
                self.client_on_server_hello(&msg, sh)
            }
            (State::ClientWaitCertificate, Handshake::Certificate(c)) => {
                msg.encode_unfragmented(&mut self.transcript);
                self.accept_peer_certificate(c)?;
                self.state = State::ClientWaitKeyExchange;
                Ok(())
            }
            (State::ClientWaitKeyExchange, Handshake::ServerKeyExchange(ske)) => {
                self.client_on_server_key_exchange(&ske)?;
                msg.encode_unfragmented(&mut self.transcript);
                self.state = State::ClientWaitCertRequestOrDone;
                Ok(())
            }
            (State::ClientWaitCertRequestOrDone, Handshake::CertificateRequest(cr)) => {
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
                msg.encode_unfragmented(&mut self.transcript);
                self.certificate_requested = true;
                self.state = State::ClientWaitDone;
                Ok(())
            }
            (
                State::ClientWaitCertRequestOrDone | State::ClientWaitDone,
                Handshake::ServerHelloDone,
            ) => {
                msg.encode_unfragmented(&mut self.transcript);
                self.client_send_flight5(now)
            }
            (State::ClientWaitFinished, Handshake::NewSessionTicket(_)) => {
                // RFC 5077 §3.3: part of the transcript; we do not resume.
                msg.encode_unfragmented(&mut self.transcript);
                Ok(())
            }
            (State::ClientWaitFinished, Handshake::Finished(v)) => {
                let (params, master) = self.keys()?;
                let hash = sha(params.suite.prf_hash().digest_algorithm(), &self.transcript);
                let expected = master.verify_data(params.suite.prf_hash(), Sender::Server, &hash);
                if !ring_eq(&expected, &v) {
                    return Err((Error::BadFinished, AlertDescription::DECRYPT_ERROR));
                }
                msg.encode_unfragmented(&mut self.transcript);
                self.connected()?;
                Ok(())
            }
            (_, Handshake::HelloRequest) => Ok(()), // renegotiation refused: ignored
            _ => unexpected("unexpected handshake message for the client's state"),
        }
    }

    fn client_on_server_hello(
        &mut self,
        msg: &HandshakeMessage,
        sh: ServerHello,
    ) -> Result<(), (Error, AlertDescription)> {
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
        if self.offered_dtls13 && super::v13::messages::has_downgrade_sentinel(&sh.random) {
            return Err((
                Error::InvalidValue {
                    what: "ServerHello random with the DTLS 1.3 downgrade sentinel",
                    value: 0,
                },
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let suite = CipherSuite::from_code(sh.cipher_suite)
            .filter(|s| self.config.cipher_suites.contains(s))
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
        for e in &sh.extensions {
            match e {
                Extension::UseSrtp { profiles, .. } => {
                    // RFC 5764 §4.1.1: exactly one profile, one we offered.
                    match profiles.as_slice() {
                        [p] if self.config.srtp_profiles.contains(p) => srtp_profile = Some(*p),
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
                    if !self.config.offer_extended_master_secret {
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
        self.server_random = sh.random;
        self.params = Some(Params {
            suite,
            srtp_profile,
            ems,
        });
        msg.encode_unfragmented(&mut self.transcript);
        self.state = State::ClientWaitCertificate;
        // The server's first flight is arriving: stop retransmitting ours.
        self.retransmit_at = None;
        Ok(())
    }

    fn accept_peer_certificate(
        &mut self,
        c: CertificateMsg,
    ) -> Result<(), (Error, AlertDescription)> {
        let Some(der) = c.certificates.into_iter().next() else {
            return Err((
                Error::BadCertificate("no certificate"),
                AlertDescription::HANDSHAKE_FAILURE,
            ));
        };
        if let Some(expected) = &self.config.expected_fingerprint {
            let actual = Fingerprint::of(expected.algorithm, &der);
            if actual != *expected {
                self.rejected_fingerprint = Some(actual);
            }
        }
        self.peer_certificate = Some(proof::AcceptedCertificate::check(
            der,
            self.config.expected_fingerprint.as_ref(),
        )?);
        Ok(())
    }

    fn client_on_server_key_exchange(
        &mut self,
        ske: &ServerKeyExchange,
    ) -> Result<(), (Error, AlertDescription)> {
        if ske.group != NamedGroup::X25519 && ske.group != NamedGroup::SECP256R1 {
            return Err((
                Error::UnsupportedAlgorithm("ECDHE group not offered"),
                AlertDescription::ILLEGAL_PARAMETER,
            ));
        }
        let cert = self.peer_certificate.as_ref().ok_or((
            Error::Misuse("no server certificate"),
            AlertDescription::UNEXPECTED_MESSAGE,
        ))?;
        let suite = self.params.as_ref().map(|p| p.suite).ok_or((
            Error::Misuse("no ServerHello"),
            AlertDescription::UNEXPECTED_MESSAGE,
        ))?;
        self.server_share = Some(proof::VerifiedKeyShare::verify(
            cert,
            suite,
            &self.client_random,
            &self.server_random,
            ske,
        )?);
        Ok(())
    }

    fn keys(&self) -> Result<(Params, MasterSecret), (Error, AlertDescription)> {
        match (&self.params, &self.master) {
            (Some(p), Some(m)) => Ok((p.clone(), m.clone())),
            _ => Err((
                Error::Misuse("keys not derived yet"),
                AlertDescription::UNEXPECTED_MESSAGE,
            )),
        }
    }

    /// ECDHE with an ephemeral key; returns (our public key, premaster).
    fn ecdhe(
        &mut self,
        group: NamedGroup,
        peer_public: &[u8],
    ) -> Result<(Vec<u8>, Vec<u8>), (Error, AlertDescription)> {
        let (alg, private, public) = ephemeral_key(group)?;
        // RFC 8422 §5.10: the premaster secret is the shared x-coordinate
        // (X25519: the shared secret), which is what ring returns.
        let pms = agreement::agree_ephemeral(
            private,
            &agreement::UnparsedPublicKey::new(alg, peer_public),
            |k| k.to_vec(),
        )
        .map_err(|_| {
            (
                Error::InvalidValue {
                    what: "peer ECDHE public key",
                    value: peer_public.len() as u64,
                },
                AlertDescription::ILLEGAL_PARAMETER,
            )
        })?;
        Ok((public, pms))
    }

    /// Derives the master secret (RFC 7627 §4 when negotiated, RFC 5246
    /// §8.1 otherwise) from the transcript so far, and the traffic keys.
    fn derive_keys(
        &mut self,
        pms: &[u8],
    ) -> Result<(RecordProtection, RecordProtection), (Error, AlertDescription)> {
        let params = self.params.clone().ok_or((
            Error::Misuse("no parameters"),
            AlertDescription::INTERNAL_ERROR,
        ))?;
        let h = params.suite.prf_hash();
        let master = if params.ems {
            let session_hash = sha(h.digest_algorithm(), &self.transcript);
            MasterSecret::derive_extended(h, pms, &session_hash)
        } else {
            MasterSecret::derive(h, pms, &self.client_random, &self.server_random)
        };
        let kb = master.key_block(
            h,
            &self.client_random,
            &self.server_random,
            params.suite.key_len(),
            params.suite.fixed_iv_len(),
        );
        let internal = |e| (e, AlertDescription::INTERNAL_ERROR);
        let client = RecordProtection::new(params.suite, &kb.client_write_key, &kb.client_write_iv)
            .map_err(internal)?;
        let server = RecordProtection::new(params.suite, &kb.server_write_key, &kb.server_write_iv)
            .map_err(internal)?;
        self.master = Some(master);
        Ok(match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        })
    }

    fn client_send_flight5(&mut self, now: Instant) -> Result<(), (Error, AlertDescription)> {
        let share = self.server_share.take().ok_or((
            Error::Misuse("no ServerKeyExchange"),
            AlertDescription::UNEXPECTED_MESSAGE,
        ))?;
        let (public, pms) = self.ecdhe(share.group(), share.public_key())?;
        self.begin_flight();
        if self.certificate_requested {
            let cert = Handshake::Certificate(CertificateMsg {
                certificates: vec![self.config.certificate.der().to_vec()],
            });
            self.add_message(&cert);
        }
        self.add_message(&Handshake::ClientKeyExchange(ClientKeyExchange {
            public_key: public,
        }));
        let (write, read) = self.derive_keys(&pms)?;
        if self.certificate_requested {
            // RFC 5246 §7.4.8: signature over all handshake messages so far.
            let sig = self
                .config
                .certificate
                .sign(&self.transcript)
                .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
            self.add_message(&Handshake::CertificateVerify(DigitallySigned {
                scheme: SignatureScheme::ECDSA_SECP256R1_SHA256,
                signature: sig,
            }));
        }
        self.records.install_read(read);
        let (params, master) = self.keys()?;
        let h = params.suite.prf_hash();
        let verify = master.verify_data(
            h,
            Sender::Client,
            &sha(h.digest_algorithm(), &self.transcript),
        );
        self.send_with_finished(now, write, verify, true);
        self.state = State::ClientWaitFinished;
        Ok(())
    }

    /// Sends the flight so far plus ChangeCipherSpec in the current epoch,
    /// switches writing to `write`, then sends Finished in the new epoch
    /// (RFC 5246 §7.1). The whole flight is kept for retransmission.
    fn send_with_finished(
        &mut self,
        now: Instant,
        write: RecordProtection,
        verify: [u8; 12],
        expect_reply: bool,
    ) {
        self.add_change_cipher_spec();
        self.send_flight(now, false);
        self.records.install_write(write);
        self.mark_sent_items_previous_epoch();
        let before = std::mem::take(&mut self.flight);
        self.add_message(&Handshake::Finished(verify));
        self.send_flight(now, expect_reply);
        let fin = std::mem::take(&mut self.flight);
        self.flight = before;
        self.flight.extend(fin);
    }

    // -----------------------------------------------------------------------
    // Server.

    fn cookie_for(&self, peer: SocketAddr, ch: &ClientHello) -> Vec<u8> {
        // RFC 6347 §4.2.1: Cookie = HMAC(Secret, Client-IP, Client-Parameters).
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.cookie_secret);
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
    /// answer is a HelloVerifyRequest and no state is kept.
    fn server_on_client_hello(
        &mut self,
        now: Instant,
        msg: &HandshakeMessage,
        record_seq: u64,
        source: SocketAddr,
    ) -> Result<(), (Error, AlertDescription)> {
        let ch = ClientHello::parse(&msg.body).map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        if self.config.use_cookie {
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
                m.encode_unfragmented(&mut body);
                let mut out = Vec::new();
                super::record::Record {
                    header: super::record::RecordHeader {
                        content_type: ContentType::Handshake,
                        version: DTLS_1_2,
                        epoch: 0,
                        sequence: record_seq,
                        length: 0,
                    },
                    fragment: &body,
                }
                .encode(&mut out);
                self.transmits.push_back(Transmit {
                    source: self.local,
                    destination: source,
                    contents: out,
                });
                return Ok(());
            }
        }
        self.peer = Some(source);
        // Negotiate.
        let suite = self
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
        self.client_random = ch.random;
        self.rng.fill(&mut self.server_random);
        if self.config.max_version >= Version::Dtls13 {
            // RFC 8446 §4.1.3: a server able to do 1.3 that negotiates
            // 1.2 says so in the last 8 bytes of its random.
            self.server_random[24..].copy_from_slice(&super::v13::messages::DOWNGRADE_TO_1_2);
        }
        self.params = Some(Params {
            suite,
            srtp_profile,
            ems,
        });
        // The handshake proper: the transcript starts with this ClientHello.
        // Our message_seq restarts from the ClientHello's (0 without a
        // cookie exchange; 1 after it, since our HelloVerifyRequest counted
        // as 0: RFC 6347 §4.2.2), and our record sequence numbers continue
        // after the HelloVerifyRequest's.
        self.transcript.clear();
        msg.encode_unfragmented(&mut self.transcript);
        self.next_send_seq = msg.message_seq;
        self.reassembler = Reassembler::with_next_seq(msg.message_seq.wrapping_add(1));
        self.records.set_write_sequence(record_seq);
        self.server_send_flight4(now, group, reneg)
    }

    fn server_send_flight4(
        &mut self,
        now: Instant,
        group: NamedGroup,
        reneg: bool,
    ) -> Result<(), (Error, AlertDescription)> {
        let params = self.params.clone().ok_or((
            Error::Misuse("no parameters"),
            AlertDescription::INTERNAL_ERROR,
        ))?;
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
            random: self.server_random,
            session_id: Vec::new(),
            cipher_suite: params.suite.code(),
            compression_method: 0,
            extensions,
        }));
        self.add_message(&Handshake::Certificate(CertificateMsg {
            certificates: vec![self.config.certificate.der().to_vec()],
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
        signed.extend_from_slice(&self.client_random);
        signed.extend_from_slice(&self.server_random);
        signed.extend_from_slice(&ske.params());
        ske.signed.signature = self
            .config
            .certificate
            .sign(&signed)
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
        self.add_message(&Handshake::ServerKeyExchange(ske));
        self.server_ecdhe = Some((group, private));
        if self.config.require_client_certificate {
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
        self.send_flight(now, true);
        self.state = if self.config.require_client_certificate {
            State::ServerWaitCertificate
        } else {
            State::ServerWaitKeyExchange
        };
        Ok(())
    }

    fn server_handle(
        &mut self,
        now: Instant,
        msg: HandshakeMessage,
    ) -> Result<(), (Error, AlertDescription)> {
        let parsed = Handshake::parse(msg.msg_type, &msg.body)
            .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        match (self.state, parsed) {
            (State::ServerWaitCertificate, Handshake::Certificate(c)) => {
                msg.encode_unfragmented(&mut self.transcript);
                self.retransmit_at = None;
                self.accept_peer_certificate(c)?;
                self.state = State::ServerWaitKeyExchange;
                Ok(())
            }
            (State::ServerWaitKeyExchange, Handshake::ClientKeyExchange(cke)) => {
                self.retransmit_at = None;
                let (group, private) = self.server_ecdhe.take().ok_or((
                    Error::Misuse("no ECDHE key"),
                    AlertDescription::INTERNAL_ERROR,
                ))?;
                let alg = if group == NamedGroup::X25519 {
                    &agreement::X25519
                } else {
                    &agreement::ECDH_P256
                };
                let pms = agreement::agree_ephemeral(
                    private,
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
                msg.encode_unfragmented(&mut self.transcript);
                let (write, read) = self.derive_keys(&pms)?;
                self.records.install_read(read);
                self.pending_write = Some(write);
                self.state = if self.peer_certificate.is_some() {
                    State::ServerWaitCertificateVerify
                } else {
                    State::ServerWaitFinished
                };
                Ok(())
            }
            (State::ServerWaitCertificateVerify, Handshake::CertificateVerify(cv)) => {
                let cert = self.peer_certificate.as_ref().ok_or((
                    Error::Misuse("no client certificate"),
                    AlertDescription::UNEXPECTED_MESSAGE,
                ))?;
                self.client_proven =
                    Some(proof::ClientKeyProven::verify(cert, &self.transcript, &cv)?);
                msg.encode_unfragmented(&mut self.transcript);
                self.state = State::ServerWaitFinished;
                Ok(())
            }
            (State::ServerWaitFinished, Handshake::Finished(v)) => {
                // A client that sent a certificate must have proven its key.
                if self.peer_certificate.is_some() && self.client_proven.is_none() {
                    return Err((
                        Error::Misuse("Finished before CertificateVerify"),
                        AlertDescription::UNEXPECTED_MESSAGE,
                    ));
                }
                let (params, master) = self.keys()?;
                let h = params.suite.prf_hash();
                let hash = sha(h.digest_algorithm(), &self.transcript);
                let expected = master.verify_data(h, Sender::Client, &hash);
                if !ring_eq(&expected, &v) {
                    return Err((Error::BadFinished, AlertDescription::DECRYPT_ERROR));
                }
                msg.encode_unfragmented(&mut self.transcript);
                let write = self.pending_write.take().ok_or((
                    Error::Misuse("no write keys"),
                    AlertDescription::INTERNAL_ERROR,
                ))?;
                self.begin_flight();
                let hash = sha(h.digest_algorithm(), &self.transcript);
                let verify = master.verify_data(h, Sender::Server, &hash);
                self.send_with_finished(now, write, verify, false);
                self.connected()?;
                Ok(())
            }
            (State::ServerWaitCertificate, Handshake::ClientKeyExchange(_)) => Err((
                Error::BadCertificate("client sent no certificate"),
                AlertDescription::HANDSHAKE_FAILURE,
            )),
            _ => Err((
                Error::Misuse("unexpected handshake message for the server's state"),
                AlertDescription::UNEXPECTED_MESSAGE,
            )),
        }
    }

    fn connected(&mut self) -> Result<(), (Error, AlertDescription)> {
        let (params, master) = self.keys()?;
        let peer = self.peer_certificate.as_ref().ok_or((
            Error::BadCertificate("peer sent no certificate"),
            AlertDescription::HANDSHAKE_FAILURE,
        ))?;
        let peer_certificate = peer.der().to_vec();
        let peer_fingerprint = peer.fingerprint().clone();
        // ANCHOR: srtp_export
        let (material, keys) = match params
            .srtp_profile
            .and_then(|p| srtp_key_salt_len(p).map(|l| (p, l)))
        {
            Some((_, (k, s))) => {
                let m = master
                    .export_keying_material(
                        params.suite.prf_hash(),
                        super::prf::DTLS_SRTP_EXPORTER_LABEL,
                        &self.client_random,
                        &self.server_random,
                        2 * (k + s),
                    )
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
                let keys = SrtpKeyingMaterial::split(&m, k, s)
                    .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))?;
                (Some(m), Some(keys))
            }
            None => (None, None),
        };
        // ANCHOR_END: srtp_export
        self.state = State::Connected;
        self.retransmit_at = None;
        if self.role == Role::Client {
            // The client's last flight is never retransmitted once the
            // server's Finished arrived; the server keeps its own to answer
            // a retransmitted client flight (RFC 6347 §4.2.4).
            self.flight.clear();
        }
        self.events.push_back(Event::Connected(Box::new(Connected {
            version: Version::Dtls12,
            key_share_group: None,
            cipher_suite: params.suite,
            srtp_profile: params.srtp_profile,
            srtp_keying_material: material,
            srtp_keys: keys,
            peer_fingerprint,
            peer_certificate,
            extended_master_secret: params.ems,
        })));
        Ok(())
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
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        if let Some(peer) = self.peer {
            if peer != source && self.state != State::ServerWaitClientHello {
                return; // not our peer
            }
            self.heard_from_peer |= peer == source;
        }
        self.local.get_or_insert(destination);
        // Pre-cookie server: record-layer replay state must not be kept for
        // strangers; use a throw-away record layer (made only then: the
        // data path allocates nothing per datagram for it).
        let mut scratch: Option<RecordLayer> = None;
        let mut retransmit = false;
        let mut framed = records(datagram);
        let mut unlocked: VecDeque<Plaintext> = VecDeque::new();
        loop {
            // Records of a later epoch buffered earlier, once the record
            // processed last installed their keys, come first; then this
            // datagram's records, one at a time: a ClientKeyExchange early
            // in a datagram yields the keys that open the Finished later in
            // it.
            self.records.take_unlocked(&mut unlocked);
            let p = if let Some(p) = unlocked.pop_front() {
                p
            } else {
                let record = match framed.next() {
                    None => break,
                    Some(Err(_)) => {
                        self.records.count_dropped();
                        break;
                    }
                    Some(Ok(record)) => record,
                };
                let opened = if self.state == State::ServerWaitClientHello {
                    scratch
                        .get_or_insert_with(RecordLayer::new)
                        .open_record(&record)
                } else {
                    self.records.open_record(&record)
                };
                let Some(p) = opened else { continue };
                p
            };
            match p.content_type {
                ContentType::Handshake => {
                    for f in fragments(&p.fragment) {
                        let Ok(f) = f else { break };
                        // Finished must come protected; nothing else may
                        // (RFC 5246 §7.4.9, §7.1).
                        let is_fin = f.header.msg_type == HandshakeType::Finished;
                        if is_fin != (p.epoch > 0) {
                            continue;
                        }
                        if self.state == State::ServerWaitClientHello {
                            if f.header.msg_type != HandshakeType::ClientHello {
                                continue;
                            }
                            // One bounded reassembly of a fragmented hello at
                            // a time, restarted when another source or
                            // message_seq shows up: strangers cannot mix
                            // their fragments into someone else's hello.
                            if self.reassembler.next_seq() != f.header.message_seq
                                || self.hello_source != Some(source)
                            {
                                self.reassembler = Reassembler::with_next_seq(f.header.message_seq);
                                self.hello_source = Some(source);
                            }
                            self.reassembler.insert(&f);
                            if let Some(m) = self.reassembler.pop() {
                                self.reassembler = Reassembler::new();
                                if let Err((e, a)) =
                                    self.server_on_client_hello(now, &m, p.sequence, source)
                                {
                                    // Before a valid cookie (peer unset) a
                                    // bad hello is dropped without state, or
                                    // any stranger could kill the endpoint;
                                    // after it, the handshake fails.
                                    if self.peer.is_some() {
                                        self.fail(e, a);
                                        return;
                                    }
                                }
                            }
                            continue;
                        }
                        // RFC 6347 §4.2.4: a message from the peer's
                        // previous flight means it lost our last flight.
                        // (Duplicates within its current flight do not.)
                        if self.reassembler.insert(&f) == Inserted::Old
                            && f.header.message_seq < self.peer_flight_start
                        {
                            retransmit = true;
                        }
                    }
                    while let Some(m) = self.reassembler.pop() {
                        let r = match self.role {
                            Role::Client => self.client_handle(now, m),
                            Role::Server => self.server_handle(now, m),
                        };
                        if let Err((e, a)) = r {
                            self.fail(e, a);
                            return;
                        }
                    }
                }
                ContentType::ChangeCipherSpec => {
                    // Keys are installed when derived; CCS itself carries
                    // nothing we need (RFC 5246 §7.1).
                }
                ContentType::Alert => {
                    let Ok(alert) = Alert::parse(&p.fragment) else {
                        continue;
                    };
                    if alert.description == AlertDescription::CLOSE_NOTIFY {
                        // RFC 5246 §7.2.1: answer with our own close_notify.
                        self.close();
                        self.events.push_back(Event::Closed);
                        return;
                    }
                    if alert.level != AlertLevel::Warning {
                        self.state = State::Failed;
                        self.retransmit_at = None;
                        self.events.push_back(Event::PeerAlert(alert));
                        return;
                    }
                }
                ContentType::ApplicationData => {
                    if self.state == State::Connected && p.epoch > 0 {
                        self.events.push_back(Event::ApplicationData(p.fragment));
                    }
                }
                ContentType::Other(_) => {}
            }
        }
        // RFC 6347 §4.2.4: a retransmitted flight from the peer means ours
        // was lost.
        if retransmit && !self.flight.is_empty() {
            self.retransmit(now);
        }
    }
}

/// Values that exist only once a check ran (DESIGN §2): their fields are
/// private to this module, so the endpoint cannot make one without running
/// the check in its constructor.
mod proof {
    use super::*;

    /// The peer's certificate, accepted: it hashes to the fingerprint the
    /// signaling gave (when one was configured, RFC 8842 §5) and its public
    /// key is one we can verify.
    #[derive(Debug, Clone)]
    pub(super) struct AcceptedCertificate {
        der: Vec<u8>,
        key: PublicKeyInfo,
        fingerprint: Fingerprint,
    }

    impl AcceptedCertificate {
        // ANCHOR: fingerprint_check
        pub(super) fn check(
            der: Vec<u8>,
            expected: Option<&Fingerprint>,
        ) -> Result<Self, (Error, AlertDescription)> {
            if let Some(fp) = expected {
                fp.verify(&der)
                    .map_err(|e| (e, AlertDescription::BAD_CERTIFICATE))?;
            }
            let key = PublicKeyInfo::from_certificate(&der)
                .map_err(|e| (e, AlertDescription::UNSUPPORTED_CERTIFICATE))?;
            let fingerprint = Fingerprint::of(HashAlgorithm::Sha256, &der);
            Ok(AcceptedCertificate {
                der,
                key,
                fingerprint,
            })
        }
        // ANCHOR_END: fingerprint_check

        pub(super) fn der(&self) -> &[u8] {
            &self.der
        }

        pub(super) fn fingerprint(&self) -> &Fingerprint {
            &self.fingerprint
        }
    }

    /// The server's ECDHE share, signed by the accepted certificate's key
    /// over client_random + server_random + ServerECDHParams (RFC 8422 §5.4).
    #[derive(Debug)]
    pub(super) struct VerifiedKeyShare {
        group: NamedGroup,
        public_key: Vec<u8>,
    }

    impl VerifiedKeyShare {
        pub(super) fn verify(
            cert: &AcceptedCertificate,
            suite: CipherSuite,
            client_random: &[u8; 32],
            server_random: &[u8; 32],
            ske: &ServerKeyExchange,
        ) -> Result<Self, (Error, AlertDescription)> {
            ske.verify(&cert.key, suite, client_random, server_random)
                .map_err(|e| {
                    let alert = match e {
                        Error::BadSignature => AlertDescription::DECRYPT_ERROR,
                        Error::UnsupportedAlgorithm(_) => AlertDescription::UNSUPPORTED_CERTIFICATE,
                        _ => AlertDescription::ILLEGAL_PARAMETER,
                    };
                    (e, alert)
                })?;
            Ok(VerifiedKeyShare {
                group: ske.group,
                public_key: ske.public_key.clone(),
            })
        }

        pub(super) fn group(&self) -> NamedGroup {
            self.group
        }

        pub(super) fn public_key(&self) -> &[u8] {
            &self.public_key
        }
    }

    /// The client signed the transcript with its certificate's key
    /// (CertificateVerify, RFC 5246 §7.4.8).
    #[derive(Debug)]
    pub(super) struct ClientKeyProven(());

    impl ClientKeyProven {
        pub(super) fn verify(
            cert: &AcceptedCertificate,
            transcript: &[u8],
            cv: &DigitallySigned,
        ) -> Result<Self, (Error, AlertDescription)> {
            cert.key
                .verify(cv.scheme, transcript, &cv.signature)
                .map_err(|e| (e, AlertDescription::DECRYPT_ERROR))?;
            Ok(ClientKeyProven(()))
        }
    }
}

/// Constant-time comparison for MACs and cookies.
fn ring_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        let Some(at) = self.retransmit_at else { return };
        if now < at {
            return;
        }
        if self.retransmits >= MAX_RETRANSMITS {
            self.fail(Error::HandshakeTimeout, AlertDescription::HANDSHAKE_FAILURE);
            return;
        }
        self.retransmits += 1;
        tracing::debug!(
            retransmits = self.retransmits,
            waited = ?self.retransmit_timeout,
            state = ?self.state,
            "DTLS flight retransmitted"
        );
        self.retransmit_timeout = (self.retransmit_timeout * 2).min(MAX_RETRANSMIT_TIMEOUT);
        self.retransmit(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.retransmit_at
    }
}

/// A fresh ECDHE key pair for `group` (X25519, else P-256): the algorithm,
/// the private half (used once) and our public key as sent on the wire.
fn ephemeral_key(
    group: NamedGroup,
) -> Result<
    (
        &'static agreement::Algorithm,
        agreement::EphemeralPrivateKey,
        Vec<u8>,
    ),
    (Error, AlertDescription),
> {
    let alg = if group == NamedGroup::X25519 {
        &agreement::X25519
    } else {
        &agreement::ECDH_P256
    };
    let internal = |what| (Error::Crypto(what), AlertDescription::INTERNAL_ERROR);
    let rng = ring::rand::SystemRandom::new();
    let private = agreement::EphemeralPrivateKey::generate(alg, &rng)
        .map_err(|_| internal("ECDHE key generation"))?;
    let public = private
        .compute_public_key()
        .map_err(|_| internal("ECDHE public key"))?
        .as_ref()
        .to_vec();
    Ok((alg, private, public))
}

#[cfg(test)]
mod tests;
