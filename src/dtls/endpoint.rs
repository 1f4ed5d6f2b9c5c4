//! The DTLS 1.2 handshake state machines, client and server, as one sans-IO
//! [`Endpoint`] (RFC 6347 §4.2, RFC 5246 §7.3, RFC 8422, RFC 5764); and
//! what both versions share: [`Config`], [`Event`], [`Connected`] and the
//! accepted peer certificate every authentication proof starts from.
//!
//! The endpoint owns a [`RecordLayer`] and a [`Reassembler`], sends whole
//! flights and retransmits them on a timer (RFC 6347 §4.2.4, `flight`),
//! and reports [`Event`]s. It never touches a socket or a clock.
//!
//! The handshake is one type per "expecting X" state, in `client` and
//! `server` (rustls's shape): each holds only what is known once it is
//! reached, consumes itself on the message it expects and returns the next
//! state. A state that relies on a check can only be built from the value
//! that check returns (`proof`): the client's flight 5 needs the server's
//! ECDHE share as a `VerifiedKeyShare` (its signature checked by the
//! `AcceptedCertificate`, which hashes to the SDP's fingerprint); the
//! server's `ExpectFinished` holds the client's `ClientKeyProven`
//! (CertificateVerify checked); and the connected state is built only from
//! an `AuthenticatedPeer` and a `FinishedChecked`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, rngs::StdRng};
use ring::{agreement, digest};

use super::Error;
use super::cert::{Certificate, Fingerprint};
use super::core::{Core, Failure, PeerAlert};
use super::handshake::{
    Alert, AlertDescription, Handshake, HandshakeMessage, HandshakeType, Inserted, NamedGroup,
    Reassembler, SrtpProfile, fragments,
};
use super::prf::{MasterSecret, SrtpKeyingMaterial};
use super::record::{CipherSuite, ContentType, Plaintext, RecordLayer, RecordProtection, records};
use crate::machine::{Machine, Receive, Transmit};

pub(crate) use accepted::AcceptedCertificate;
use flight::FlightItem;

mod client;
mod flight;
mod proof;
mod server;

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

/// Where the handshake is: one type per "expecting X" state (in `client`
/// and `server`), each holding what is known once it is reached.
enum State {
    ClientExpectServerHello(client::ExpectServerHello),
    ClientExpectCertificate(Box<client::ExpectCertificate>),
    ClientExpectServerKeyExchange(Box<client::ExpectServerKeyExchange>),
    ClientExpectCertificateRequest(Box<client::ExpectCertificateRequest>),
    ClientExpectServerHelloDone(Box<client::ExpectServerHelloDone>),
    ClientExpectFinished(Box<client::ExpectFinished>),
    ServerExpectClientHello,
    ServerExpectCertificate(Box<server::ExpectCertificate>),
    ServerExpectClientKeyExchange(Box<server::ExpectClientKeyExchange>),
    ServerExpectCertificateVerify(Box<server::ExpectCertificateVerify>),
    ServerExpectFinished(Box<server::ExpectFinished>),
    Connected(Box<Established>),
    Closed,
    Failed,
    /// While a message is being handled (the state is moved out).
    Busy,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ClientExpectServerHello(_) => "ClientExpectServerHello",
            State::ClientExpectCertificate(_) => "ClientExpectCertificate",
            State::ClientExpectServerKeyExchange(_) => "ClientExpectServerKeyExchange",
            State::ClientExpectCertificateRequest(_) => "ClientExpectCertificateRequest",
            State::ClientExpectServerHelloDone(_) => "ClientExpectServerHelloDone",
            State::ClientExpectFinished(_) => "ClientExpectFinished",
            State::ServerExpectClientHello => "ServerExpectClientHello",
            State::ServerExpectCertificate(_) => "ServerExpectCertificate",
            State::ServerExpectClientKeyExchange(_) => "ServerExpectClientKeyExchange",
            State::ServerExpectCertificateVerify(_) => "ServerExpectCertificateVerify",
            State::ServerExpectFinished(_) => "ServerExpectFinished",
            State::Connected(_) => "Connected",
            State::Closed => "Closed",
            State::Failed => "Failed",
            State::Busy => "Busy",
        }
    }
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parameters the hellos negotiated.
#[derive(Debug, Clone)]
struct Params {
    suite: CipherSuite,
    srtp_profile: Option<SrtpProfile>,
    ems: bool,
    server_random: [u8; 32],
}

/// What both roles hold once the master secret exists.
struct Keys {
    params: Params,
    master: MasterSecret,
}

/// The association after the handshake: whom it authenticated.
struct Established {
    peer: proof::AuthenticatedPeer,
}

/// A DTLS 1.2 endpoint for one peer.
pub struct Endpoint {
    /// What 1.3 has too: the peer, randomness, the record layer, the
    /// timer, the queues (`dtls/core.rs`).
    core: Core<RecordLayer>,
    state: State,
    /// Unfragmented handshake messages so far (RFC 5246 §7.4.9's
    /// handshake_messages; RFC 6347 §4.2.6 leaves out the first ClientHello
    /// and HelloVerifyRequest).
    transcript: Vec<u8>,
    /// Our current flight, kept to retransmit it.
    flight: Vec<FlightItem>,
    /// First message_seq of the peer flight that answers ours.
    peer_flight_start: u16,
    /// The NSS key log line, once the master secret exists.
    key_log: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("role", &self.core.role)
            .field("state", &self.state)
            .field("peer", &self.core.peer)
            .finish_non_exhaustive()
    }
}

fn sha(hash: &'static digest::Algorithm, data: &[u8]) -> Vec<u8> {
    digest::digest(hash, data).as_ref().to_vec()
}

impl Endpoint {
    /// A client; its ClientHello to `peer` is queued at once (drain
    /// [`Machine::poll_transmit`]). `rng` draws its randoms and cookie
    /// secret (seed it for a reproducible handshake).
    pub fn client(config: Config, peer: SocketAddr, rng: StdRng, now: Instant) -> Self {
        let mut e = Self::new(Role::Client, config, Some(peer), rng);
        e.core.rng.fill(&mut e.core.client_random);
        match e.send_client_hello(now, Vec::new(), false) {
            Ok(s) => e.state = State::ClientExpectServerHello(s),
            Err((error, alert)) => e.fail(error, alert),
        }
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
        rng: StdRng,
        now: Instant,
        client_random: [u8; 32],
        hello: HandshakeMessage,
        records_sent: u64,
    ) -> Self {
        let mut e = Self::new(Role::Client, config, Some(peer), rng);
        e.core.client_random = client_random;
        e.core.records.set_write_sequence(records_sent);
        e.begin_flight();
        e.core.next_send_seq = hello.message_seq.wrapping_add(1);
        hello.emit_unfragmented(&mut e.transcript);
        e.flight.push(FlightItem::handshake(hello));
        e.core.retransmit_at = Some(now + e.core.retransmit_timeout);
        e.core.heard_from_peer = true;
        e.state = State::ClientExpectServerHello(client::ExpectServerHello::offered_dtls13());
        e
    }

    /// A server that answers the first ClientHello it receives; `rng` as
    /// for [`Endpoint::client`].
    pub fn server(config: Config, rng: StdRng) -> Self {
        Self::new(Role::Server, config, None, rng)
    }

    fn new(role: Role, config: Config, peer: Option<SocketAddr>, rng: StdRng) -> Self {
        Endpoint {
            core: Core::new(role, config, peer, RecordLayer::new(), rng),
            state: match role {
                Role::Client => State::Busy, // set by the constructor
                Role::Server => State::ServerExpectClientHello,
            },
            transcript: Vec::new(),
            flight: Vec::new(),
            peer_flight_start: 0,
            key_log: None,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.core.role
    }

    /// The peer: the address given to [`Endpoint::client`], or for a server
    /// the client whose ClientHello carried a valid cookie (`None` before).
    pub fn peer(&self) -> Option<SocketAddr> {
        self.core.peer
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
        self.core.set_peer(peer);
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
        if matches!(self.state, State::ClientExpectServerHello(_))
            && self.core.unanswered_since(now, older_than)
        {
            tracing::debug!("DTLS ClientHello resent on the selected pair");
            self.retransmit(now);
        }
    }

    /// Whether the handshake completed and the association is open.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// The peer's certificate (DER), once the handshake completed.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match &self.state {
            State::Connected(c) => Some(c.peer.certificate().der()),
            _ => None,
        }
    }

    /// The NSS key log line for this association, once the master secret
    /// exists: `CLIENT_RANDOM <client_random hex> <master_secret hex>`.
    /// Whoever owns the I/O appends it to the file named by `SSLKEYLOGFILE`
    /// so Wireshark can decrypt a capture (the endpoint itself does no
    /// file I/O).
    pub fn key_log_line(&self) -> Option<String> {
        self.key_log.clone()
    }

    /// After [`Event::Failed`] with [`Error::FingerprintMismatch`]: the
    /// fingerprint the refused certificate actually has, computed with the
    /// hash of [`Config::expected_fingerprint`], so that the caller can say
    /// "expected X, got Y".
    pub fn rejected_fingerprint(&self) -> Option<&Fingerprint> {
        self.core.rejected_fingerprint.as_ref()
    }

    /// Records dropped by the record layer (bad, replayed, unknown epoch).
    pub fn dropped_records(&self) -> u64 {
        self.core.records.dropped()
    }

    /// Sends application data (one record per call; at most 2^14 bytes).
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.core.send(self.is_connected(), data)
    }

    /// Gives back the buffer of an [`Event::ApplicationData`] the caller
    /// is done with, to carry a later record (no allocation per record).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        self.core.records.recycle(buf);
    }

    /// As [`Endpoint::send`], but the record is appended to `out` instead of
    /// queued as a [`Transmit`]: the caller (a transport that gathers its
    /// datagrams in one reused buffer) sends `out`'s new bytes as one
    /// datagram to the peer. No allocation once `out` has room. Anything
    /// [`Machine::poll_transmit`] still holds (a handshake flight, an
    /// alert) should be sent first, to keep records in order.
    pub fn seal_application_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        self.core
            .seal_application_data(self.is_connected(), data, out)
    }

    /// Sends close_notify and closes.
    pub fn close(&mut self) {
        if self.is_connected() {
            self.core.send_alert(Alert::close_notify());
        }
        self.state = State::Closed;
        self.core.retransmit_at = None;
    }

    // -----------------------------------------------------------------------
    // Failure.

    fn fail(&mut self, error: Error, alert: AlertDescription) {
        if matches!(self.state, State::Failed | State::Closed) {
            return;
        }
        self.core.fail(error, alert);
        self.state = State::Failed;
        self.flight.clear();
    }

    // -----------------------------------------------------------------------
    // The handshake: each state consumes itself on the message it expects
    // and returns the next.

    fn handle_message(&mut self, now: Instant, msg: HandshakeMessage) -> Result<(), Failure> {
        let parsed = Handshake::parse(msg.msg_type, &msg.body)
            .map_err(|e| (e, AlertDescription::DECODE_ERROR))?;
        if self.core.role == Role::Client && matches!(parsed, Handshake::HelloRequest) {
            return Ok(()); // renegotiation refused: ignored
        }
        let next = match std::mem::replace(&mut self.state, State::Busy) {
            State::ClientExpectServerHello(s) => s.handle(self, now, &msg, parsed),
            State::ClientExpectCertificate(s) => (*s).handle(self, &msg, parsed),
            State::ClientExpectServerKeyExchange(s) => (*s).handle(self, &msg, parsed),
            State::ClientExpectCertificateRequest(s) => (*s).handle(self, now, &msg, parsed),
            State::ClientExpectServerHelloDone(s) => (*s).handle(self, now, &msg, parsed),
            State::ClientExpectFinished(s) => (*s).handle(self, &msg, parsed),
            State::ServerExpectCertificate(s) => (*s).handle(self, &msg, parsed),
            State::ServerExpectClientKeyExchange(s) => (*s).handle(self, &msg, parsed),
            State::ServerExpectCertificateVerify(s) => (*s).handle(self, &msg, parsed),
            State::ServerExpectFinished(s) => (*s).handle(self, now, &msg, parsed),
            State::ServerExpectClientHello
            | State::Connected(_)
            | State::Closed
            | State::Failed
            | State::Busy => Err(self.unexpected()),
        }?;
        self.state = next;
        Ok(())
    }

    fn unexpected(&self) -> Failure {
        let what = match self.core.role {
            Role::Client => "unexpected handshake message for the client's state",
            Role::Server => "unexpected handshake message for the server's state",
        };
        (Error::Misuse(what), AlertDescription::UNEXPECTED_MESSAGE)
    }

    /// Accepts the peer's Certificate message (RFC 5246 §7.4.2, §7.4.6) by
    /// its fingerprint; a refused one is remembered for
    /// [`Endpoint::rejected_fingerprint`].
    fn accept_peer_certificate(
        &mut self,
        c: super::handshake::CertificateMsg,
    ) -> Result<AcceptedCertificate, Failure> {
        let Some(der) = c.certificates.into_iter().next() else {
            return Err((
                Error::BadCertificate("no certificate"),
                AlertDescription::HANDSHAKE_FAILURE,
            ));
        };
        self.core.accept_certificate(der)
    }

    /// Derives the master secret (RFC 7627 §4 when negotiated, RFC 5246
    /// §8.1 otherwise) from the transcript so far, and the traffic keys:
    /// (ours to write, the peer's to read).
    fn derive_keys(
        &mut self,
        params: Params,
        pms: &[u8],
    ) -> Result<(Keys, RecordProtection, RecordProtection), Failure> {
        let h = params.suite.prf_hash();
        let master = if params.ems {
            let session_hash = sha(h.digest_algorithm(), &self.transcript);
            MasterSecret::derive_extended(h, pms, &session_hash)
        } else {
            MasterSecret::derive(h, pms, &self.core.client_random, &params.server_random)
        };
        let kb = master.key_block(
            h,
            &self.core.client_random,
            &params.server_random,
            params.suite.key_len(),
            params.suite.fixed_iv_len(),
        );
        let internal = |e| (e, AlertDescription::INTERNAL_ERROR);
        let client = RecordProtection::new(params.suite, &kb.client_write_key, &kb.client_write_iv)
            .map_err(internal)?;
        let server = RecordProtection::new(params.suite, &kb.server_write_key, &kb.server_write_iv)
            .map_err(internal)?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        self.key_log = Some(format!(
            "CLIENT_RANDOM {} {}",
            hex(&self.core.client_random),
            hex(&master.0)
        ));
        let (write, read) = match self.core.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        };
        Ok((Keys { params, master }, write, read))
    }

    /// Both roles: the handshake is done (the peer authenticated, its
    /// Finished checked); exports the SRTP keys and reports it.
    fn established(
        &mut self,
        keys: &Keys,
        peer: proof::AuthenticatedPeer,
        _finished: proof::FinishedChecked,
    ) -> Result<State, Failure> {
        let Keys { params, master } = keys;
        let peer_certificate = peer.certificate().der().to_vec();
        let peer_fingerprint = peer.certificate().fingerprint().clone();
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
                        &self.core.client_random,
                        &params.server_random,
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
        self.core.retransmit_at = None;
        if self.core.role == Role::Client {
            // The client's last flight is never retransmitted once the
            // server's Finished arrived; the server keeps its own to answer
            // a retransmitted client flight (RFC 6347 §4.2.4).
            self.flight.clear();
        }
        self.core
            .events
            .push_back(Event::Connected(Box::new(Connected {
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
        Ok(State::Connected(Box::new(Established { peer })))
    }

    // Receiving.

    fn expecting_client_hello(&self) -> bool {
        matches!(self.state, State::ServerExpectClientHello)
    }

    fn receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        datagram: &[u8],
    ) {
        if matches!(self.state, State::Failed | State::Closed)
            || !self
                .core
                .accepts(source, destination, self.expecting_client_hello())
        {
            return;
        }
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
            self.core.records.take_unlocked(&mut unlocked);
            let p = if let Some(p) = unlocked.pop_front() {
                p
            } else {
                let record = match framed.next() {
                    None => break,
                    Some(Err(_)) => {
                        self.core.records.count_dropped();
                        break;
                    }
                    Some(Ok(record)) => record,
                };
                let opened = if self.expecting_client_hello() {
                    scratch
                        .get_or_insert_with(RecordLayer::new)
                        .open_record(&record)
                } else {
                    self.core.records.open_record(&record)
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
                        if self.expecting_client_hello() {
                            if f.header.msg_type != HandshakeType::ClientHello {
                                continue;
                            }
                            // One bounded reassembly of a fragmented hello at
                            // a time, restarted when another source or
                            // message_seq shows up: strangers cannot mix
                            // their fragments into someone else's hello.
                            if self.core.reassembler.next_seq() != f.header.message_seq
                                || self.core.hello_source != Some(source)
                            {
                                self.core.reassembler =
                                    Reassembler::with_next_seq(f.header.message_seq);
                                self.core.hello_source = Some(source);
                            }
                            self.core.reassembler.insert(&f);
                            if let Some(m) = self.core.reassembler.pop() {
                                self.core.reassembler = Reassembler::new();
                                if let Err((e, a)) =
                                    self.server_on_client_hello(now, &m, p.sequence, source)
                                {
                                    // Before a valid cookie (peer unset) a
                                    // bad hello is dropped without state, or
                                    // any stranger could kill the endpoint;
                                    // after it, the handshake fails.
                                    if self.core.peer.is_some() {
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
                        if self.core.reassembler.insert(&f) == Inserted::Old
                            && f.header.message_seq < self.peer_flight_start
                        {
                            retransmit = true;
                        }
                    }
                    while let Some(m) = self.core.reassembler.pop() {
                        if let Err((e, a)) = self.handle_message(now, m) {
                            self.fail(e, a);
                            return;
                        }
                    }
                }
                ContentType::ChangeCipherSpec => {
                    // Keys are installed when derived; CCS itself carries
                    // nothing we need (RFC 5246 §7.1).
                }
                ContentType::Alert => match self.core.on_alert(&p.fragment) {
                    PeerAlert::CloseNotify => {
                        // RFC 5246 §7.2.1: answer with our own close_notify.
                        self.close();
                        self.core.events.push_back(Event::Closed);
                        return;
                    }
                    PeerAlert::Fatal => {
                        self.state = State::Failed;
                        return;
                    }
                    PeerAlert::Ignored => {}
                },
                ContentType::ApplicationData => {
                    if self.is_connected() && p.epoch > 0 {
                        self.core
                            .events
                            .push_back(Event::ApplicationData(p.fragment));
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

/// The check both DTLS versions start peer authentication with, as a value
/// only the check can make (DESIGN §2). WebRTC has no certificate
/// authorities: the peer's certificate is trusted because it hashes to the
/// fingerprint the signaling carried (RFC 8842 §5, RFC 8122 §5). The
/// version-specific proofs (1.2's signed ServerKeyExchange and
/// CertificateVerify in `proof`, 1.3's in [`super::v13::endpoint`]) take
/// an [`AcceptedCertificate`] to be built.
mod accepted {
    use crate::dtls::Error;
    use crate::dtls::cert::{Fingerprint, HashAlgorithm, PublicKeyInfo, SignatureScheme};
    use crate::dtls::handshake::AlertDescription;
    /// The peer's certificate, accepted: it hashes to the fingerprint the
    /// signaling gave (when one was configured, RFC 8842 §5) and its public key
    /// is one we can verify. Its fields are private to this module: only
    /// [`AcceptedCertificate::check`] makes one.
    #[derive(Debug, Clone)]
    pub(crate) struct AcceptedCertificate {
        der: Vec<u8>,
        key: PublicKeyInfo,
        fingerprint: Fingerprint,
    }

    impl AcceptedCertificate {
        // ANCHOR: fingerprint_check
        /// Accepts `der` if it matches `expected` (when given) and carries a
        /// key we verify. A mismatch also returns the fingerprint `der`
        /// actually has (in the expected one's hash), so the caller can say
        /// "expected X, got Y".
        pub(crate) fn check(
            der: Vec<u8>,
            expected: Option<&Fingerprint>,
        ) -> Result<Self, (Error, AlertDescription, Option<Fingerprint>)> {
            if let Some(fp) = expected
                && let Err(e) = fp.verify(&der)
            {
                let got = Fingerprint::of(fp.algorithm, &der);
                return Err((e, AlertDescription::BAD_CERTIFICATE, Some(got)));
            }
            let key = PublicKeyInfo::parse_certificate(&der)
                .map_err(|e| (e, AlertDescription::UNSUPPORTED_CERTIFICATE, None))?;
            let fingerprint = Fingerprint::of(HashAlgorithm::Sha256, &der);
            Ok(AcceptedCertificate {
                der,
                key,
                fingerprint,
            })
        }
        // ANCHOR_END: fingerprint_check

        /// The certificate (DER).
        pub(crate) fn der(&self) -> &[u8] {
            &self.der
        }

        /// Its SHA-256 fingerprint.
        pub(crate) fn fingerprint(&self) -> &Fingerprint {
            &self.fingerprint
        }

        /// Its public key.
        pub(crate) fn key(&self) -> &PublicKeyInfo {
            &self.key
        }

        /// Checks a signature by the certificate's key over `message` (what a
        /// version-specific proof runs before it exists).
        pub(crate) fn verify_signature(
            &self,
            scheme: SignatureScheme,
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), Error> {
            self.key.verify(scheme, message, signature)
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
        match self.core.timer(now, self.state.name()) {
            Ok(true) => self.retransmit(now),
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
        self.core.retransmit_at
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
    Failure,
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
