//! What the DTLS 1.2 and 1.3 endpoints share around their handshakes: the
//! peer and its path, the randomness, handshake message numbering and
//! reassembly, the retransmission timer, the queues of datagrams to send
//! and events to report, and the things every version does with them
//! (send a record, send an alert, fail with one, accept the peer's
//! certificate by its fingerprint, read the peer's alert).
//!
//! Each version keeps what differs: its typed handshake states (1.2's in
//! [`super::endpoint`], 1.3's in [`super::v13::endpoint`]), its record
//! layer (the `R` of [`Core`], sealed through [`SealRecord`]) and its
//! flight (1.2 resends a whole flight, RFC 6347 §4.2.4; 1.3 only what the
//! peer's ACKs leave, RFC 9147 §7).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{Rng, rngs::StdRng};

use super::Error;
use super::cert::Fingerprint;
use super::endpoint::{
    AcceptedCertificate, Config, Event, MAX_RETRANSMIT_TIMEOUT, MAX_RETRANSMITS, Role,
};
use super::handshake::{Alert, AlertDescription, AlertLevel, Reassembler};
use super::record::ContentType;
use crate::machine::Transmit;

/// A failure: the error reported and the fatal alert sent.
pub(crate) type Failure = (Error, AlertDescription);

/// A record layer as the core uses it: one record of `content_type` in the
/// current write epoch, appended to `out`.
pub(crate) trait SealRecord {
    fn seal_record(
        &mut self,
        content_type: ContentType,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error>;
}

impl SealRecord for super::record::RecordLayer {
    fn seal_record(
        &mut self,
        content_type: ContentType,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.seal(content_type, content, out)
    }
}

impl SealRecord for super::v13::record::RecordLayer {
    fn seal_record(
        &mut self,
        content_type: ContentType,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        self.seal(content_type, content, 0, out).map(|_| ())
    }
}

/// What a peer's alert record means for the endpoint (RFC 5246 §7.2,
/// RFC 8446 §6).
pub(crate) enum PeerAlert {
    /// close_notify: the peer closed; [`Event::Closed`] is the
    /// endpoint's to report (1.2 answers with its own close_notify).
    CloseNotify,
    /// A fatal alert, reported as [`Event::PeerAlert`]; the timer is
    /// stopped and the endpoint moves to its failed state.
    Fatal,
    /// A warning, or no alert at all: nothing changes.
    Ignored,
}

/// The scaffolding of one DTLS endpoint, either version (see the module
/// doc). Its fields are the endpoint's, read and written by its handshake
/// states as before; the methods are what both versions do alike.
pub(crate) struct Core<R> {
    pub(crate) role: Role,
    pub(crate) config: Config,
    /// The endpoint's randomness (client random, cookie secret, 1.3 key
    /// shares), given by its caller (see the crate doc).
    pub(crate) rng: StdRng,
    pub(crate) records: R,
    pub(crate) reassembler: Reassembler,
    /// The message_seq of our next handshake message.
    pub(crate) next_send_seq: u16,
    pub(crate) client_random: [u8; 32],
    /// Server: the key of its stateless cookies (RFC 6347 §4.2.1, RFC
    /// 9147 §5.1).
    pub(crate) cookie_secret: [u8; 32],
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) local: Option<SocketAddr>,
    /// Server, before its answer: whose fragmented hello is being
    /// reassembled.
    pub(crate) hello_source: Option<SocketAddr>,
    /// A datagram came from the peer (a client knows its path works).
    pub(crate) heard_from_peer: bool,
    pub(crate) retransmit_at: Option<Instant>,
    pub(crate) retransmit_timeout: Duration,
    pub(crate) retransmits: u32,
    pub(crate) transmits: VecDeque<Transmit>,
    pub(crate) events: VecDeque<Event>,
    /// The fingerprint of a peer certificate refused because it did not
    /// match [`Config::expected_fingerprint`] (in that fingerprint's hash).
    pub(crate) rejected_fingerprint: Option<Fingerprint>,
}

impl<R: SealRecord> Core<R> {
    /// A fresh endpoint's scaffolding; draws the cookie secret from `rng`.
    pub(crate) fn new(
        role: Role,
        config: Config,
        peer: Option<SocketAddr>,
        records: R,
        mut rng: StdRng,
    ) -> Self {
        let mut cookie_secret = [0u8; 32];
        rng.fill(&mut cookie_secret);
        let retransmit_timeout = config.initial_retransmit_timeout;
        Core {
            role,
            config,
            rng,
            records,
            reassembler: Reassembler::new(),
            next_send_seq: 0,
            client_random: [0; 32],
            cookie_secret,
            peer,
            local: None,
            hello_source: None,
            heard_from_peer: false,
            retransmit_at: None,
            retransmit_timeout,
            retransmits: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rejected_fingerprint: None,
        }
    }

    /// The peer now sends from (and is sent to at) `peer` (see the 1.2
    /// endpoint's `set_peer`); ignored before the peer is known.
    pub(crate) fn set_peer(&mut self, peer: SocketAddr) {
        if self.peer.is_some() {
            self.peer = Some(peer);
        }
    }

    /// Queues `contents` as a datagram to the peer (dropped while the peer
    /// is unknown).
    pub(crate) fn push_datagram(&mut self, contents: Vec<u8>) {
        if let Some(destination) = self.peer {
            self.transmits.push_back(Transmit {
                source: self.local,
                destination,
                contents,
            });
        }
    }

    /// Sends application data, one record in a datagram of its own (at
    /// most 2^14 bytes), once `connected`.
    pub(crate) fn send(&mut self, connected: bool, data: &[u8]) -> Result<(), Error> {
        let mut out = Vec::with_capacity(data.len() + 64);
        self.seal_application_data(connected, data, &mut out)?;
        self.push_datagram(out);
        Ok(())
    }

    /// Appends one application data record to `out`, once `connected`.
    pub(crate) fn seal_application_data(
        &mut self,
        connected: bool,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        if !connected {
            return Err(Error::Misuse("send before the handshake completed"));
        }
        self.records
            .seal_record(ContentType::ApplicationData, data, out)
    }

    /// Sends `alert` in the current write epoch (nothing when it cannot be
    /// sealed: the association is going away anyway).
    pub(crate) fn send_alert(&mut self, alert: Alert) {
        let mut payload = Vec::new();
        alert.emit(&mut payload);
        let mut out = Vec::new();
        if self
            .records
            .seal_record(ContentType::Alert, &payload, &mut out)
            .is_ok()
        {
            self.push_datagram(out);
        }
    }

    /// The handshake or association failed: sends the fatal `alert`, stops
    /// the timer and reports `error`. The endpoint moves its own state to
    /// failed and drops its flight.
    pub(crate) fn fail(&mut self, error: Error, alert: AlertDescription) {
        self.send_alert(Alert::fatal(alert));
        self.retransmit_at = None;
        self.events.push_back(Event::Failed(error));
    }

    /// Whether a datagram from `source` to `destination` is ours to read:
    /// one from the peer, or from anyone while `any_source` (a server
    /// waiting for a ClientHello). Notes that the peer was heard from and
    /// which of our addresses it reached.
    pub(crate) fn accepts(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        any_source: bool,
    ) -> bool {
        if let Some(peer) = self.peer {
            if peer != source && !any_source {
                return false; // not our peer
            }
            self.heard_from_peer |= peer == source;
        }
        self.local.get_or_insert(destination);
        true
    }

    /// Client: our first flight went out at least `older_than` before
    /// `now` and nothing came back (see the 1.2 endpoint's
    /// `resend_unanswered_client_hello`).
    pub(crate) fn unanswered_since(&self, now: Instant, older_than: Duration) -> bool {
        let sent = self
            .retransmit_at
            .map(|at| at.checked_sub(self.retransmit_timeout).unwrap_or(at));
        !self.heard_from_peer
            && sent.is_some_and(|t| now.saturating_duration_since(t) >= older_than)
    }

    /// The retransmission timer at `now` (RFC 6347 §4.2.4.1, RFC 9147
    /// §5.8): `Ok(true)` when our flight is due again (the timeout doubles,
    /// up to [`MAX_RETRANSMIT_TIMEOUT`]), `Ok(false)` when not yet, and the
    /// failure to end with after [`MAX_RETRANSMITS`].
    pub(crate) fn timer(&mut self, now: Instant, state: &'static str) -> Result<bool, Failure> {
        let Some(at) = self.retransmit_at else {
            return Ok(false);
        };
        if now < at {
            return Ok(false);
        }
        if self.retransmits >= MAX_RETRANSMITS {
            return Err((Error::HandshakeTimeout, AlertDescription::HANDSHAKE_FAILURE));
        }
        self.retransmits += 1;
        tracing::debug!(
            retransmits = self.retransmits,
            waited = ?self.retransmit_timeout,
            state,
            "DTLS flight retransmitted"
        );
        self.retransmit_timeout = (self.retransmit_timeout * 2).min(MAX_RETRANSMIT_TIMEOUT);
        Ok(true)
    }

    /// Accepts the peer's certificate `der` by the SDP's fingerprint; a
    /// refused one is remembered for the endpoint's
    /// `rejected_fingerprint`.
    pub(crate) fn accept_certificate(
        &mut self,
        der: Vec<u8>,
    ) -> Result<AcceptedCertificate, Failure> {
        AcceptedCertificate::check(der, self.config.expected_fingerprint.as_ref()).map_err(
            |(e, a, got)| {
                self.rejected_fingerprint = got;
                (e, a)
            },
        )
    }

    /// Reads an alert record from the peer (see [`PeerAlert`]).
    pub(crate) fn on_alert(&mut self, fragment: &[u8]) -> PeerAlert {
        let Ok(alert) = Alert::parse(fragment) else {
            return PeerAlert::Ignored;
        };
        if alert.description == AlertDescription::CLOSE_NOTIFY {
            return PeerAlert::CloseNotify;
        }
        if alert.level == AlertLevel::Warning {
            return PeerAlert::Ignored;
        }
        self.retransmit_at = None;
        self.events.push_back(Event::PeerAlert(alert));
        PeerAlert::Fatal
    }
}
