//! One DTLS endpoint for both versions: it runs the DTLS 1.2 machine
//! ([`super::endpoint::Endpoint`]) or the DTLS 1.3 one
//! ([`super::v13::endpoint::Endpoint`]), picking by version negotiation
//! (RFC 8446 §4.2.1, RFC 9147 §5.3).
//!
//! - [`Config::max_version`] = [`Version::Dtls12`] (the default): the 1.2
//!   machine alone, exactly as before.
//! - [`Version::Dtls13`], client: the 1.3 machine sends a ClientHello that
//!   offers both versions (supported_versions 0xfefc, 0xfefd; the 1.3 and
//!   1.2 suites; the 1.2 extensions too). A 1.3 ServerHello or
//!   HelloRetryRequest continues in 1.3; a HelloVerifyRequest or a 1.2
//!   ServerHello hands the handshake to the 1.2 machine, which takes that
//!   ClientHello as its own (transcript, record numbers) and reads the
//!   datagrams received so far again. It then refuses a ServerHello
//!   carrying the downgrade sentinel (RFC 8446 §4.1.3).
//! - [`Version::Dtls13`], server: the first datagrams are held (at most
//!   [`MAX_HELD`]) until a whole ClientHello is in; if it offers 1.3 the
//!   1.3 machine answers it, else the 1.2 machine (which marks its random
//!   with the downgrade sentinel). Either reads the held datagrams.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;

use super::Error;
use super::cert::Fingerprint;
use super::endpoint::{Config, Endpoint as Endpoint12, Event, Role, Version};
use super::handshake::{HandshakeType, Reassembler, fragments};
use super::record::ContentType;
use super::v13::endpoint::Endpoint as Endpoint13;
use super::v13::messages::ClientHello as ClientHello13;
use super::v13::record::RecordLayer as RecordLayer13;
use crate::machine::{Machine, Receive, Transmit};

/// Datagrams held while the version is not decided yet.
pub const MAX_HELD: usize = 8;

/// A datagram kept to be read again: source, destination, bytes.
type Held = (SocketAddr, SocketAddr, Vec<u8>);

enum Inner {
    V12(Box<Endpoint12>),
    V13(Box<Endpoint13>),
    /// Server, before a whole ClientHello.
    Undecided(Box<Undecided>),
    /// Only while one machine replaces another.
    Switching,
}

struct Undecided {
    config: Config,
    rng: StdRng,
    held: Vec<Held>,
    reassembler: Reassembler,
    source: Option<SocketAddr>,
}

/// A DTLS endpoint that speaks 1.2 or 1.3 (see the module doc).
pub struct AutoEndpoint {
    inner: Inner,
    role: Role,
    /// Client on 1.3 before the server answered: what it received, to be
    /// read again by the 1.2 machine after a fallback.
    held: Vec<Held>,
    /// Datagrams and events of a machine replaced by another.
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for AutoEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Inner::V12(e) => e.fmt(f),
            Inner::V13(e) => e.fmt(f),
            Inner::Undecided(_) | Inner::Switching => f.write_str("AutoEndpoint(undecided)"),
        }
    }
}

impl AutoEndpoint {
    /// A client; its ClientHello to `peer` is queued at once. `rng` goes
    /// to the machine that runs (after a fallback, the 1.3 machine hands
    /// it on to the 1.2 one).
    pub fn client(config: Config, peer: SocketAddr, rng: StdRng, now: Instant) -> Self {
        let inner = if config.max_version >= Version::Dtls13 {
            Inner::V13(Box::new(Endpoint13::client_offering(
                config, peer, rng, now, true,
            )))
        } else {
            Inner::V12(Box::new(Endpoint12::client(config, peer, rng, now)))
        };
        Self::with(inner, Role::Client)
    }

    /// A server for the first ClientHello it receives; `rng` goes to the
    /// machine of the version that ClientHello picks.
    pub fn server(config: Config, rng: StdRng) -> Self {
        let inner = if config.max_version >= Version::Dtls13 {
            Inner::Undecided(Box::new(Undecided {
                config,
                rng,
                held: Vec::new(),
                reassembler: Reassembler::new(),
                source: None,
            }))
        } else {
            Inner::V12(Box::new(Endpoint12::server(config, rng)))
        };
        Self::with(inner, Role::Server)
    }

    /// A client offering DTLS 1.3 alone (no 1.2 in its ClientHello, no
    /// fallback): a 1.2-only server refuses it (`rtclab dtls --dtls 1.3`).
    pub fn client_dtls13_only(config: Config, peer: SocketAddr, rng: StdRng, now: Instant) -> Self {
        let e = Endpoint13::client(config, peer, rng, now);
        Self::with(Inner::V13(Box::new(e)), Role::Client)
    }

    /// A server answering DTLS 1.3 alone: a ClientHello without 1.3 in
    /// supported_versions gets a protocol_version alert (RFC 8446 §4.2.1).
    pub fn server_dtls13_only(config: Config, rng: StdRng) -> Self {
        let e = Endpoint13::server(config, rng);
        Self::with(Inner::V13(Box::new(e)), Role::Server)
    }

    fn with(inner: Inner, role: Role) -> Self {
        AutoEndpoint {
            inner,
            role,
            held: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The version in use: `None` while a server waits for a ClientHello
    /// or a client for the server's answer.
    pub fn version(&self) -> Option<Version> {
        match &self.inner {
            Inner::V12(_) => Some(Version::Dtls12),
            Inner::V13(e) if e.is_connected() || e.key_share_group().is_some() => {
                Some(Version::Dtls13)
            }
            _ => None,
        }
    }

    /// The 1.2 machine, when that is the one running.
    pub fn as_dtls12(&self) -> Option<&Endpoint12> {
        match &self.inner {
            Inner::V12(e) => Some(e),
            _ => None,
        }
    }

    /// The 1.3 machine, when that is the one running.
    pub fn as_dtls13(&self) -> Option<&Endpoint13> {
        match &self.inner {
            Inner::V13(e) => Some(e),
            _ => None,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The peer, once known.
    pub fn peer(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::V12(e) => e.peer(),
            Inner::V13(e) => e.peer(),
            Inner::Undecided(_) | Inner::Switching => None,
        }
    }

    /// The peer moved (see [`Endpoint12::set_peer`]).
    pub fn set_peer(&mut self, peer: SocketAddr) {
        match &mut self.inner {
            Inner::V12(e) => e.set_peer(peer),
            Inner::V13(e) => e.set_peer(peer),
            Inner::Undecided(_) | Inner::Switching => {}
        }
    }

    /// See [`Endpoint12::resend_unanswered_client_hello`].
    pub fn resend_unanswered_client_hello(&mut self, now: Instant, older_than: Duration) {
        match &mut self.inner {
            Inner::V12(e) => e.resend_unanswered_client_hello(now, older_than),
            Inner::V13(e) => e.resend_unanswered_client_hello(now, older_than),
            Inner::Undecided(_) | Inner::Switching => {}
        }
    }

    /// Whether the handshake completed.
    pub fn is_connected(&self) -> bool {
        match &self.inner {
            Inner::V12(e) => e.is_connected(),
            Inner::V13(e) => e.is_connected(),
            Inner::Undecided(_) | Inner::Switching => false,
        }
    }

    /// The NSS key log lines (one for 1.2, five for 1.3, joined by
    /// newlines), once known.
    pub fn key_log_line(&self) -> Option<String> {
        match &self.inner {
            Inner::V12(e) => e.key_log_line(),
            Inner::V13(e) => e.key_log_lines().map(|l| l.join("\n")),
            Inner::Undecided(_) | Inner::Switching => None,
        }
    }

    /// See [`Endpoint12::rejected_fingerprint`].
    pub fn rejected_fingerprint(&self) -> Option<&Fingerprint> {
        match &self.inner {
            Inner::V12(e) => e.rejected_fingerprint(),
            Inner::V13(e) => e.rejected_fingerprint(),
            Inner::Undecided(_) | Inner::Switching => None,
        }
    }

    /// Records dropped by the record layer.
    pub fn dropped_records(&self) -> u64 {
        match &self.inner {
            Inner::V12(e) => e.dropped_records(),
            Inner::V13(e) => e.dropped_records(),
            Inner::Undecided(_) | Inner::Switching => 0,
        }
    }

    /// Sends application data.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        match &mut self.inner {
            Inner::V12(e) => e.send(data),
            Inner::V13(e) => e.send(data),
            Inner::Undecided(_) | Inner::Switching => {
                Err(Error::Misuse("send before the handshake completed"))
            }
        }
    }

    /// Gives back an [`Event::ApplicationData`] buffer (1.2 reuses it).
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if let Inner::V12(e) = &mut self.inner {
            e.recycle(buf);
        }
    }

    /// Appends one application data record to `out`.
    pub fn seal_application_data(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        match &mut self.inner {
            Inner::V12(e) => e.seal_application_data(data, out),
            Inner::V13(e) => e.seal_application_data(data, out),
            Inner::Undecided(_) | Inner::Switching => {
                Err(Error::Misuse("send before the handshake completed"))
            }
        }
    }

    /// Sends close_notify and closes.
    pub fn close(&mut self) {
        match &mut self.inner {
            Inner::V12(e) => e.close(),
            Inner::V13(e) => e.close(),
            Inner::Undecided(_) | Inner::Switching => {}
        }
    }

    /// Client: the 1.3 machine saw a 1.2 answer; the 1.2 machine goes on
    /// from our ClientHello and reads what came so far.
    fn maybe_fall_back(&mut self, now: Instant) {
        let Inner::V13(e) = &mut self.inner else {
            return;
        };
        let records_sent = e.epoch0_records_sent();
        let Some(fallback) = e.take_fallback() else {
            return;
        };
        while let Some(t) = e.poll_transmit() {
            self.transmits.push_back(t);
        }
        while let Some(ev) = e.poll_event() {
            self.events.push_back(ev);
        }
        let Some(peer) = e.peer() else { return };
        let Inner::V13(e) = std::mem::replace(&mut self.inner, Inner::Switching) else {
            return;
        };
        let (config, rng) = e.into_parts();
        let mut e12 = Endpoint12::client_after_hello(
            config,
            peer,
            rng,
            now,
            fallback.client_random,
            fallback.hello,
            records_sent,
        );
        for (source, destination, d) in std::mem::take(&mut self.held) {
            e12.handle_receive(
                now,
                Receive {
                    source,
                    destination,
                    contents: &d,
                },
            );
        }
        self.inner = Inner::V12(Box::new(e12));
    }

    /// Server, undecided: holds the datagram; once a whole ClientHello
    /// is in, starts the machine for its version and replays.
    fn receive_undecided(&mut self, now: Instant, datagram: Receive<'_>) {
        let Inner::Undecided(u) = &mut self.inner else {
            return;
        };
        let mut scratch = RecordLayer13::new();
        let mut got = Vec::new();
        scratch.receive(datagram.contents, &mut got);
        let mut hello = None;
        for r in got {
            if r.content_type != ContentType::Handshake || r.number.epoch != 0 {
                continue;
            }
            for f in fragments(&r.fragment) {
                let Ok(f) = f else { break };
                if f.header.msg_type != HandshakeType::ClientHello {
                    continue;
                }
                if u.reassembler.next_seq() != f.header.message_seq
                    || u.source != Some(datagram.source)
                {
                    // One hello at a time, from one source.
                    u.reassembler = Reassembler::with_next_seq(f.header.message_seq);
                    u.source = Some(datagram.source);
                    u.held.clear();
                }
                u.reassembler.insert(&f);
                if let Some(m) = u.reassembler.pop() {
                    hello = Some(m);
                }
            }
        }
        if u.source != Some(datagram.source) {
            return; // nothing of a hello
        }
        if u.held.len() < MAX_HELD {
            u.held.push((
                datagram.source,
                datagram.destination,
                datagram.contents.to_vec(),
            ));
        }
        let Some(hello) = hello else { return };
        let offers_13 = ClientHello13::parse(&hello.body).is_ok_and(|ch| ch.offers_dtls13());
        let Inner::Undecided(u) = std::mem::replace(&mut self.inner, Inner::Switching) else {
            return;
        };
        let u = *u;
        tracing::debug!(
            dtls13 = offers_13,
            "DTLS server: version chosen by the ClientHello"
        );
        self.inner = if offers_13 {
            let mut e = Endpoint13::server(u.config, u.rng);
            replay(&mut e, now, &u.held);
            Inner::V13(Box::new(e))
        } else {
            let mut e = Endpoint12::server(u.config, u.rng);
            replay(&mut e, now, &u.held);
            Inner::V12(Box::new(e))
        };
    }
}

fn replay<M: Machine>(machine: &mut M, now: Instant, held: &[Held]) {
    for (source, destination, d) in held {
        machine.handle_receive(
            now,
            Receive {
                source: *source,
                destination: *destination,
                contents: d,
            },
        );
    }
}

impl Machine for AutoEndpoint {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        match &mut self.inner {
            Inner::V12(e) => e.handle_receive(now, datagram),
            Inner::V13(e) => {
                let undecided = e.version_undecided();
                if undecided && self.held.len() < MAX_HELD {
                    self.held.push((
                        datagram.source,
                        datagram.destination,
                        datagram.contents.to_vec(),
                    ));
                }
                e.handle_receive(now, datagram);
                if undecided {
                    if e.version_undecided() {
                        return;
                    }
                    self.maybe_fall_back(now);
                    self.held.clear();
                }
            }
            Inner::Undecided(_) => self.receive_undecided(now, datagram),
            Inner::Switching => {}
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        match &mut self.inner {
            Inner::V12(e) => e.handle_timeout(now),
            Inner::V13(e) => e.handle_timeout(now),
            Inner::Undecided(_) | Inner::Switching => {}
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        if let Some(t) = self.transmits.pop_front() {
            return Some(t);
        }
        match &mut self.inner {
            Inner::V12(e) => e.poll_transmit(),
            Inner::V13(e) => e.poll_transmit(),
            Inner::Undecided(_) | Inner::Switching => None,
        }
    }

    fn poll_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        match &mut self.inner {
            Inner::V12(e) => e.poll_event(),
            Inner::V13(e) => e.poll_event(),
            Inner::Undecided(_) | Inner::Switching => None,
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.inner {
            Inner::V12(e) => e.poll_timeout(),
            Inner::V13(e) => e.poll_timeout(),
            Inner::Undecided(_) | Inner::Switching => None,
        }
    }
}

#[cfg(test)]
mod tests;
