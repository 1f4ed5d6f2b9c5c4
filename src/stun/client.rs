//! Sans-IO STUN client transactions (RFC 8489 §6.2).
//!
//! Over UDP a request may be lost, so the client retransmits it: the first
//! retransmission after RTO, then at doubling intervals, `Rc` transmissions in
//! all; if no response has come `Rm × RTO` after the last one, the transaction
//! has failed. With the RFC's defaults (RTO = 500 ms, Rc = 7, Rm = 16) a request
//! goes out at 0, 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s and fails at 39.5 s.
//!
//! ```text
//!  t(s)  0    0.5      1.5            3.5                    7.5 …   39.5
//!        │req │req     │req           │req                   │req     ✗ timeout
//! ```
//!
//! Responses are matched to requests by transaction id (and method). A response
//! that fails the FINGERPRINT check, or whose MESSAGE-INTEGRITY does not match
//! the key the request was sent with, is discarded "as if it had never been
//! received" (RFC 8489 §9.1.4, §9.2.5) and the transaction keeps waiting.

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::attributes::error_code;
use super::error::Error;
use super::integrity::IntegrityKey;
use super::message::{Class, Message, TransactionId};
use crate::machine::{Machine, Receive, Transmit};

/// Retransmission parameters (RFC 8489 §6.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The initial retransmission timeout. RFC 8489: "SHOULD be greater than
    /// 500 ms" on the open Internet; ICE and tests may use less.
    pub rto: Duration,
    /// How many times the request is sent in all (Rc, default 7).
    pub rc: u32,
    /// The final wait, in multiples of the initial RTO (Rm, default 16).
    pub rm: u32,
    /// The most transactions in flight at once; [`Client::start`] refuses more.
    pub max_transactions: usize,
}

// ANCHOR: rfc_defaults
impl Default for Config {
    fn default() -> Self {
        Config {
            rto: Duration::from_millis(500),
            rc: 7,
            rm: 16,
            max_transactions: 1024,
        }
    }
}
// ANCHOR_END: rfc_defaults

impl Config {
    /// When a transaction started at 0 gives up if nothing answers.
    pub fn timeout(&self) -> Duration {
        // Transmissions at 0, RTO, 3 RTO, …, (2^(Rc-1) - 1) RTO, then Rm × RTO.
        let last = self.rto * ((1u32 << self.rc.saturating_sub(1).min(20)) - 1);
        last + self.rto * self.rm
    }
}

/// A response that completed a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Who sent it.
    pub source: SocketAddr,
    /// The local address it arrived on.
    pub destination: SocketAddr,
    /// The whole message.
    pub bytes: Vec<u8>,
}

impl Response {
    /// The response decoded (it decoded once already, so this succeeds).
    pub fn message(&self) -> Result<Message<'_>, Error> {
        Message::parse(&self.bytes)
    }
}

/// Why a transaction did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransactionError {
    /// No response after the last retransmission and the final wait.
    Timeout {
        /// Where the request went.
        destination: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
    /// The server answered with an error response.
    ErrorResponse {
        /// The ERROR-CODE code (0 if the response carried none).
        code: u16,
        /// Its reason phrase.
        reason: String,
        /// The whole response, for attributes such as REALM, NONCE,
        /// UNKNOWN-ATTRIBUTES or ALTERNATE-SERVER.
        response: Response,
    },
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransactionError::Timeout { destination, after } => write!(
                f,
                "no STUN response from {destination} after {:.1} s",
                after.as_secs_f64()
            ),
            TransactionError::ErrorResponse { code, reason, .. } => {
                write!(f, "STUN error response {code} {reason}")
            }
        }
    }
}

impl std::error::Error for TransactionError {}

/// What the client reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A transaction ended.
    Completed {
        /// Which one.
        id: TransactionId,
        /// Its outcome.
        result: Result<Response, TransactionError>,
    },
}

#[derive(Debug)]
struct Transaction {
    id: TransactionId,
    method: super::message::Method,
    destination: SocketAddr,
    source: Option<SocketAddr>,
    request: Vec<u8>,
    key: Option<IntegrityKey>,
    started: Instant,
    sent: u32,
    interval: Duration,
    next: Instant,
}

/// Runs any number of client transactions, each retransmitted on its own
/// schedule.
#[derive(Debug)]
pub struct Client {
    config: Config,
    transactions: Vec<Transaction>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Client {
    /// A client with the given retransmission parameters.
    pub fn new(config: Config) -> Self {
        Client {
            config,
            transactions: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Starts a transaction for `request`, an encoded STUN request, and queues
    /// its first transmission. `key` is the key the request was protected with
    /// (responses must then carry a matching MESSAGE-INTEGRITY).
    pub fn start(
        &mut self,
        now: Instant,
        request: Vec<u8>,
        destination: SocketAddr,
        source: Option<SocketAddr>,
        key: Option<IntegrityKey>,
    ) -> Result<TransactionId, Error> {
        let msg = Message::parse(&request)?;
        if msg.class() != Class::Request {
            return Err(Error::Encode("a client transaction needs a request"));
        }
        let id = msg.transaction_id();
        let method = msg.method();
        if self.transactions.iter().any(|t| t.id == id) {
            return Err(Error::Encode("transaction id already in use"));
        }
        if self.transactions.len() >= self.config.max_transactions {
            return Err(Error::Encode("too many transactions in flight"));
        }
        tracing::debug!(%id, %destination, "STUN request");
        self.transmits.push_back(Transmit {
            source,
            destination,
            contents: request.clone(),
        });
        let single = self.config.rc <= 1;
        let interval = if single {
            self.config.rto * self.config.rm
        } else {
            self.config.rto
        };
        self.transactions.push(Transaction {
            id,
            method,
            destination,
            source,
            request,
            key,
            started: now,
            sent: 1,
            interval,
            next: now + interval,
        });
        Ok(id)
    }

    /// Forgets a transaction without an event. Returns whether it existed.
    pub fn cancel(&mut self, id: TransactionId) -> bool {
        let before = self.transactions.len();
        self.transactions.retain(|t| t.id != id);
        before != self.transactions.len()
    }

    /// Whether a transaction is still waiting for its response.
    pub fn is_pending(&self, id: TransactionId) -> bool {
        self.transactions.iter().any(|t| t.id == id)
    }

    /// How many transactions are in flight.
    pub fn pending(&self) -> usize {
        self.transactions.len()
    }

    /// Offers a datagram. Returns `true` if it was a response to one of our
    /// transactions (whether it completed it or was discarded as forged),
    /// `false` if it is not ours, so a caller multiplexing several protocols
    /// can pass it on.
    pub fn handle_response(&mut self, _now: Instant, d: Receive<'_>) -> bool {
        let Ok(msg) = Message::parse(d.contents) else {
            return false;
        };
        if !matches!(msg.class(), Class::Success | Class::Error) {
            return false;
        }
        let id = msg.transaction_id();
        let Some(pos) = self.transactions.iter().position(|t| t.id == id) else {
            return false;
        };
        let tx = &self.transactions[pos];
        if msg.method() != tx.method {
            tracing::debug!(%id, "STUN response with the wrong method discarded");
            return true;
        }
        if msg.verify_fingerprint().is_err() {
            tracing::debug!(%id, "STUN response with a bad FINGERPRINT discarded");
            return true;
        }
        if let Some(key) = &tx.key {
            // RFC 8489 §9.2.5: a 401 or 438 cannot carry integrity (the server
            // may not know the key yet); every other response must.
            let exempt = msg.class() == Class::Error
                && !msg.has_integrity()
                && matches!(
                    msg.error_code(),
                    Ok(Some(e)) if e.code == error_code::UNAUTHENTICATED
                        || e.code == error_code::STALE_NONCE
                );
            if !exempt && msg.verify_integrity(key).is_err() {
                tracing::debug!(%id, "STUN response failing MESSAGE-INTEGRITY discarded");
                return true;
            }
        }
        let response = Response {
            source: d.source,
            destination: d.destination,
            bytes: d.contents.to_vec(),
        };
        let result = if msg.class() == Class::Success {
            Ok(response)
        } else {
            let (code, reason) = match msg.error_code() {
                Ok(Some(e)) => (e.code, e.reason.to_string()),
                _ => (0, String::new()),
            };
            Err(TransactionError::ErrorResponse {
                code,
                reason,
                response,
            })
        };
        tracing::debug!(%id, ok = result.is_ok(), "STUN transaction completed");
        self.transactions.swap_remove(pos);
        self.events.push_back(Event::Completed { id, result });
        true
    }
}

impl Machine for Client {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        self.handle_response(now, datagram);
    }

    // ANCHOR: retransmit
    fn handle_timeout(&mut self, now: Instant) {
        let config = self.config;
        let mut i = 0;
        while i < self.transactions.len() {
            let tx = &mut self.transactions[i];
            if tx.next > now {
                i += 1;
                continue;
            }
            if tx.sent >= config.rc.max(1) {
                // RFC 8489 §6.2.1: Rm × RTO after the last transmission, give up.
                let tx = self.transactions.swap_remove(i);
                tracing::debug!(id = %tx.id, "STUN transaction timed out");
                self.events.push_back(Event::Completed {
                    id: tx.id,
                    result: Err(TransactionError::Timeout {
                        destination: tx.destination,
                        after: now.saturating_duration_since(tx.started),
                    }),
                });
                continue;
            }
            self.transmits.push_back(Transmit {
                source: tx.source,
                destination: tx.destination,
                contents: tx.request.clone(),
            });
            tx.sent += 1;
            tx.interval = if tx.sent >= config.rc {
                config.rto * config.rm
            } else {
                tx.interval * 2
            };
            // Schedule from the due time, not from `now`, so a late wake-up
            // does not stretch the whole schedule.
            tx.next = (tx.next + tx.interval).max(now);
            i += 1;
        }
    }
    // ANCHOR_END: retransmit

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.transactions.iter().map(|t| t.next).min()
    }
}
