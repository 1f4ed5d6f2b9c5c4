//! A sans-IO STUN Binding server (RFC 8489 §6.3), with NAT behaviour
//! discovery support (RFC 5780 §6) when it has a second address.
//!
//! An RFC 5780 server listens on two IP addresses and two ports, four sockets
//! in all, and can answer from a different address or port than the request
//! came to (CHANGE-REQUEST):
//!
//! ```text
//!             port P1          port P2
//!   IP A1   primary A1:P1    A1:P2
//!   IP A2   A2:P1            alternate A2:P2   ← OTHER-ADDRESS
//! ```
//!
//! Every success response carries XOR-MAPPED-ADDRESS, and with a second
//! address MAPPED-ADDRESS, RESPONSE-ORIGIN and OTHER-ADDRESS; FINGERPRINT
//! when the request had one, SOFTWARE only when configured.
//!
//! Safety rules this server keeps:
//! - It answers nothing malformed, no indication and no response (a reflector
//!   must not be a loop partner).
//! - It never sends more than a fixed, small number of bytes per request (at
//!   most [`MAX_RESPONSE_LEN`]), whatever the request holds: no amplification
//!   beyond what the response needs. PADDING is never reflected.
//! - Its answers are as small as the RFCs let them be, because a forged
//!   source address turns every answer into traffic at a victim: SOFTWARE
//!   (RFC 8489 §14.14, a MAY) is off unless configured, and FINGERPRINT
//!   (§14.7, which exists to tell STUN from other protocols sharing a
//!   port, as ICE does, RFC 8445 §7) is sent only when the request carried
//!   one: a client that multiplexes asks for it that way, and a plain
//!   Binding client does not need it. A 20-byte Binding request gets
//!   32 bytes over IPv4 (1.6×), 44 over IPv6; with RFC 5780's attributes
//!   68 (3.4×). `rtclab speed stun-server` prints the worst ratio.
//! - It keeps no state per client.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use super::attributes::{self, Attribute, ErrorCode, attr, error_code};
use super::message::{Class, Message, MessageEncoder, MessageType, Method};
use crate::machine::{Machine, Receive, Transmit};

// ANCHOR: max_response_len
/// The largest response this server ever sends: the header, four address
/// attributes at their IPv6 size, SOFTWARE at its 128-byte cap, FINGERPRINT.
/// (An error response, with ERROR-CODE and at most 16 UNKNOWN-ATTRIBUTES
/// entries in place of the addresses, is smaller.)
pub const MAX_RESPONSE_LEN: usize = 20 + 4 * 24 + (4 + 128) + 8;
// ANCHOR_END: max_response_len

/// rtclab's SOFTWARE value, for a server configured to send one.
pub const SOFTWARE: &str = concat!("rtclab ", env!("CARGO_PKG_VERSION"));

/// How the server is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The primary address A1:P1.
    pub primary: SocketAddr,
    /// The alternate address A2:P2 (a different IP and a different port). With
    /// it the server supports RFC 5780.
    pub alternate: Option<SocketAddr>,
    /// SOFTWARE, at most 128 bytes (longer is cut at a character boundary);
    /// none by default (each answer is then 16 bytes smaller: see the
    /// module doc on amplification).
    pub software: Option<String>,
    /// Whether to answer RESPONSE-PORT by sending to another port of the
    /// client's address (RFC 5780 §6.1).
    pub allow_response_port: bool,
}

impl Config {
    /// A plain Binding server on `primary`.
    pub fn new(primary: SocketAddr) -> Self {
        Config {
            primary,
            alternate: None,
            software: None,
            allow_response_port: true,
        }
    }
}

/// Counters, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Binding requests answered with a success response.
    pub success: u64,
    /// Requests answered with an error response.
    pub errors: u64,
    /// Datagrams dropped: malformed, not a request, or with a bad FINGERPRINT.
    pub dropped: u64,
}

/// The Binding server. It never emits events; it only answers.
#[derive(Debug)]
pub struct BindingServer {
    config: Config,
    locals: Vec<SocketAddr>,
    transmits: VecDeque<Transmit>,
    stats: ServerStats,
}

/// Why a server configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub &'static str);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ConfigError {}

impl BindingServer {
    /// A server; checks that an alternate address differs in IP and in port.
    pub fn new(mut config: Config) -> Result<Self, ConfigError> {
        let p = config.primary;
        let locals = match config.alternate {
            None => vec![p],
            Some(a) => {
                if a.ip() == p.ip() || a.port() == p.port() {
                    return Err(ConfigError(
                        "the alternate address must differ from the primary in both IP and port (RFC 5780 §6)",
                    ));
                }
                if a.is_ipv4() != p.is_ipv4() {
                    return Err(ConfigError(
                        "the alternate address must be of the primary's family",
                    ));
                }
                vec![
                    p,
                    SocketAddr::new(p.ip(), a.port()),
                    SocketAddr::new(a.ip(), p.port()),
                    a,
                ]
            }
        };
        if let Some(s) = &mut config.software {
            let mut cut = s.len().min(128);
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
        }
        Ok(BindingServer {
            config,
            locals,
            transmits: VecDeque::new(),
            stats: ServerStats::default(),
        })
    }

    /// The addresses to listen on: one, or four with RFC 5780.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    /// The counters.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    // ANCHOR: response_origin
    /// The address to answer from: the one the request came to, with IP and/or
    /// port swapped as CHANGE-REQUEST asks (RFC 5780 §6.1).
    fn response_origin(&self, to: SocketAddr, change_ip: bool, change_port: bool) -> SocketAddr {
        let Some(alt) = self.config.alternate else {
            return to;
        };
        let p = self.config.primary;
        let ip = if change_ip {
            if to.ip() == p.ip() { alt.ip() } else { p.ip() }
        } else {
            to.ip()
        };
        let port = if change_port {
            if to.port() == p.port() {
                alt.port()
            } else {
                p.port()
            }
        } else {
            to.port()
        };
        SocketAddr::new(ip, port)
    }
    // ANCHOR_END: response_origin

    fn knows(&self, t: u16) -> bool {
        match t {
            attr::CHANGE_REQUEST => self.config.alternate.is_some(),
            attr::RESPONSE_PORT => self.config.allow_response_port,
            attr::MAPPED_ADDRESS
            | attr::USERNAME
            | attr::USERHASH
            | attr::MESSAGE_INTEGRITY
            | attr::MESSAGE_INTEGRITY_SHA256
            | attr::ERROR_CODE
            | attr::UNKNOWN_ATTRIBUTES
            | attr::REALM
            | attr::NONCE
            | attr::PASSWORD_ALGORITHM
            | attr::XOR_MAPPED_ADDRESS
            | attr::PRIORITY
            | attr::USE_CANDIDATE
            | attr::PADDING => true,
            _ => false,
        }
    }

    /// Answers one datagram (or drops it). The answer, if any, is queued.
    pub fn handle(&mut self, d: Receive<'_>) {
        let Ok(msg) = Message::parse(d.contents) else {
            self.stats.dropped += 1;
            return;
        };
        // RFC 8489 §6.3: only requests are answered; a bad FINGERPRINT or a
        // malformed attribute means the datagram is not for us, or is broken.
        if msg.class() != Class::Request
            || msg.verify_fingerprint().is_err()
            || msg.validate().is_err()
        {
            self.stats.dropped += 1;
            tracing::debug!(from = %d.source, "dropped a STUN datagram");
            return;
        }
        let tid = msg.transaction_id();
        let mut out = Vec::with_capacity(128);
        let method = msg.method();

        if method != Method::BINDING {
            self.error_response(d, &msg, error_code::BAD_REQUEST, None, &mut out);
            return;
        }
        let mut unknown = [0u16; 16];
        let mut n = 0;
        for t in msg.unknown_comprehension_required(|t| self.knows(t)) {
            if n < unknown.len() && !unknown[..n].contains(&t) {
                unknown[n] = t;
                n += 1;
            }
        }
        if n > 0 {
            // RFC 8489 §6.3.1.1: 420 with UNKNOWN-ATTRIBUTES listing them.
            self.error_response(
                d,
                &msg,
                error_code::UNKNOWN_ATTRIBUTE,
                Some(&unknown[..n]),
                &mut out,
            );
            return;
        }
        let (change_ip, change_port) = match msg.attribute(attr::CHANGE_REQUEST) {
            Ok(Some(Attribute::ChangeRequest {
                change_ip,
                change_port,
            })) => (change_ip, change_port),
            _ => (false, false),
        };
        let response_port = match msg.attribute(attr::RESPONSE_PORT) {
            Ok(Some(Attribute::ResponsePort(p))) => Some(p),
            _ => None,
        };
        // RFC 5780 §6.1 and §7.5: a request with both PADDING and RESPONSE-PORT
        // gets a 400, so that padded traffic cannot be aimed at another port.
        if response_port.is_some() && msg.get(attr::PADDING).is_some() {
            self.error_response(d, &msg, error_code::BAD_REQUEST, None, &mut out);
            return;
        }
        // ANCHOR: binding_success
        let origin = self.response_origin(d.destination, change_ip, change_port);
        let destination = match response_port {
            Some(p) => SocketAddr::new(d.source.ip(), p),
            None => d.source,
        };
        let mut enc = MessageEncoder::new(&mut out, MessageType::BINDING_SUCCESS, tid);
        enc.attribute(&Attribute::XorMappedAddress(d.source));
        if let Some(alt) = self.config.alternate {
            // Behaviour-discovery clients older than RFC 5389 read only
            // MAPPED-ADDRESS, so an RFC 5780 server sends it too.
            enc.attribute(&Attribute::MappedAddress(d.source));
            enc.attribute(&Attribute::ResponseOrigin(origin));
            enc.attribute(&Attribute::OtherAddress(alt));
        }
        if let Some(s) = &self.config.software {
            enc.attribute(&Attribute::Software(s));
        }
        if msg.has_fingerprint() {
            enc.fingerprint();
        }
        if enc.finish().is_err() {
            self.stats.dropped += 1;
            return;
        }
        tracing::debug!(from = %d.source, to = %d.destination, %origin, "Binding request answered");
        self.stats.success += 1;
        self.transmits.push_back(Transmit {
            source: Some(origin),
            destination,
            contents: out,
        });
        // ANCHOR_END: binding_success
    }

    fn error_response(
        &mut self,
        d: Receive<'_>,
        msg: &Message<'_>,
        code: u16,
        unknown: Option<&[u16]>,
        out: &mut Vec<u8>,
    ) {
        let typ = MessageType::new(Class::Error, msg.method());
        let mut list = Vec::new();
        let mut enc = MessageEncoder::new(out, typ, msg.transaction_id());
        enc.attribute(&Attribute::ErrorCode(ErrorCode {
            code,
            reason: error_code::reason(code),
        }));
        if let Some(types) = unknown {
            attributes::emit_unknown_attributes(types, &mut list);
            enc.raw_attribute(attr::UNKNOWN_ATTRIBUTES, &list);
        }
        if let Some(s) = &self.config.software {
            enc.attribute(&Attribute::Software(s));
        }
        if msg.has_fingerprint() {
            enc.fingerprint();
        }
        if enc.finish().is_err() {
            return;
        }
        tracing::debug!(from = %d.source, code, "STUN error response");
        self.stats.errors += 1;
        self.transmits.push_back(Transmit {
            source: Some(d.destination),
            destination: d.source,
            contents: std::mem::take(out),
        });
    }
}

impl Machine for BindingServer {
    type Event = Infallible;

    fn handle_receive(&mut self, _now: Instant, datagram: Receive<'_>) {
        self.handle(datagram);
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Infallible> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
