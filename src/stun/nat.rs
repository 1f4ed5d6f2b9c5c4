//! NAT behaviour discovery (RFC 5780 §4.3 and §4.4), sans-IO.
//!
//! RFC 4787 describes a NAT by two behaviours:
//!
//! - **mapping**: which outgoing flows share one public address:port. An
//!   *endpoint-independent* NAT reuses the mapping for every destination; an
//!   *address-dependent* one makes a new mapping per destination IP; an
//!   *address-and-port-dependent* one per destination IP and port.
//! - **filtering**: which incoming packets a mapping lets in: from anyone
//!   (endpoint-independent), from IPs we sent to (address-dependent), or only
//!   from the exact IP:port we sent to (address-and-port-dependent).
//!
//! With an RFC 5780 server (two IPs A1, A2 and two ports P1, P2; we talk to
//! A1:P1 and it tells us A2:P2 in OTHER-ADDRESS) the tests are:
//!
//! ```text
//! mapping                                    filtering
//! I   → A1:P1           mapped M1           I   → A1:P1                     (reply: yes)
//!     M1 = our address? → no NAT            II  → A1:P1 CHANGE-REQUEST ip+port
//! II  → A2:P1           mapped M2               reply from A2:P2? → endpoint-independent
//!     M2 = M1?          → endpoint-indep.   III → A1:P1 CHANGE-REQUEST port
//! III → A2:P2           mapped M3               reply from A1:P2? → address-dependent
//!     M3 = M2?          → address-dependent                   else → address-and-port-dependent
//!                  else → address-and-port-dependent
//! ```
//!
//! The filtering tests run first, because the mapping tests send to A2 and
//! would open the filter for it. All tests use one local socket; a test that
//! expects no reply waits for the transaction to time out, so discovery uses
//! a shorter retransmission schedule than plain STUN ([`NatDiscovery::new`]).

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::Rng;

use super::attributes::{Attribute, attr};
use super::client::{self, Client, Response, TransactionError};
use super::message::{MessageEncoder, MessageType, TransactionId};
use crate::machine::{Machine, Receive, Transmit};

/// RFC 4787 §4.1 mapping behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingBehavior {
    /// The mapped address is our own: no NAT on the path.
    NoNat,
    /// Endpoint-independent mapping.
    EndpointIndependent,
    /// Address-dependent mapping.
    AddressDependent,
    /// Address-and-port-dependent mapping.
    AddressAndPortDependent,
}

/// RFC 4787 §5 filtering behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilteringBehavior {
    /// Endpoint-independent filtering.
    EndpointIndependent,
    /// Address-dependent filtering.
    AddressDependent,
    /// Address-and-port-dependent filtering.
    AddressAndPortDependent,
}

impl fmt::Display for MappingBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MappingBehavior::NoNat => "no NAT (direct mapping)",
            MappingBehavior::EndpointIndependent => "endpoint-independent mapping",
            MappingBehavior::AddressDependent => "address-dependent mapping",
            MappingBehavior::AddressAndPortDependent => "address-and-port-dependent mapping",
        })
    }
}

impl fmt::Display for FilteringBehavior {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilteringBehavior::EndpointIndependent => "endpoint-independent filtering",
            FilteringBehavior::AddressDependent => "address-dependent filtering",
            FilteringBehavior::AddressAndPortDependent => "address-and-port-dependent filtering",
        })
    }
}

/// Which tests to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryMode {
    /// Only test I: the mapped address.
    Binding,
    /// The mapping tests (§4.3).
    Mapping,
    /// The filtering tests (§4.4).
    Filtering,
    /// Both.
    Both,
}

/// What discovery found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatReport {
    /// Our local address, if the caller told us.
    pub local: Option<SocketAddr>,
    /// The mapped (server-reflexive) address from test I.
    pub mapped: SocketAddr,
    /// The server's OTHER-ADDRESS, if it supports RFC 5780.
    pub other_address: Option<SocketAddr>,
    /// The server's SOFTWARE, if sent.
    pub software: Option<String>,
    /// The mapping behaviour, if tested.
    pub mapping: Option<MappingBehavior>,
    /// The filtering behaviour, if tested.
    pub filtering: Option<FilteringBehavior>,
}

/// Why discovery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Test I got no answer: the server is unreachable or not a STUN server.
    NoResponse(TransactionError),
    /// The server answered with an error.
    Server(TransactionError),
    /// A response lacked the mapped address.
    NoMappedAddress,
    /// The server does not support RFC 5780 (no OTHER-ADDRESS, or 420 for
    /// CHANGE-REQUEST), so the behaviour cannot be tested.
    NoRfc5780,
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NoResponse(e) => write!(f, "the STUN server did not answer: {e}"),
            DiscoveryError::Server(e) => write!(f, "the STUN server refused: {e}"),
            DiscoveryError::NoMappedAddress => {
                write!(f, "the STUN response has no (XOR-)MAPPED-ADDRESS")
            }
            DiscoveryError::NoRfc5780 => write!(
                f,
                "the STUN server does not support RFC 5780 (no OTHER-ADDRESS): behaviour cannot be tested"
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DiscoveryError::NoResponse(e) | DiscoveryError::Server(e) => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Test1,
    Filter2,
    Filter3,
    Map2,
    Map3,
    Done,
}

/// The discovery client, a sans-IO machine emitting one event with the result.
pub struct NatDiscovery<R: Rng> {
    client: Client,
    rng: R,
    server: SocketAddr,
    local: Option<SocketAddr>,
    mode: DiscoveryMode,
    step: Step,
    pending: Option<TransactionId>,
    report: Option<NatReport>,
    map2: Option<SocketAddr>,
    result: Option<Result<NatReport, DiscoveryError>>,
}

impl<R: Rng> fmt::Debug for NatDiscovery<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatDiscovery")
            .field("server", &self.server)
            .field("step", &self.step)
            .finish()
    }
}

impl<R: Rng> NatDiscovery<R> {
    /// The retransmission schedule used for the tests: 200 ms RTO, 5 sends,
    /// give up 1.6 s after the last, so a test that expects silence costs 4.6 s.
    pub fn default_config() -> client::Config {
        client::Config {
            rto: Duration::from_millis(200),
            rc: 5,
            rm: 8,
            max_transactions: 4,
        }
    }

    /// Discovery against `server` (the primary address A1:P1), starting at
    /// `now` (test I is queued at once). `local` is our own address if known
    /// (it tells "no NAT" apart).
    pub fn new(
        now: Instant,
        server: SocketAddr,
        local: Option<SocketAddr>,
        mode: DiscoveryMode,
        rng: R,
    ) -> Self {
        Self::with_config(now, server, local, mode, rng, Self::default_config())
    }

    /// As [`NatDiscovery::new`], with a chosen retransmission schedule.
    pub fn with_config(
        now: Instant,
        server: SocketAddr,
        local: Option<SocketAddr>,
        mode: DiscoveryMode,
        rng: R,
        config: client::Config,
    ) -> Self {
        let mut d = NatDiscovery {
            client: Client::new(config),
            rng,
            server,
            local,
            mode,
            step: Step::Test1,
            pending: None,
            report: None,
            map2: None,
            result: None,
        };
        d.send(now, server, None);
        d
    }

    /// Whether discovery has finished (its event may still be undrained).
    pub fn is_done(&self) -> bool {
        self.step == Step::Done
    }

    fn send(&mut self, now: Instant, to: SocketAddr, change: Option<(bool, bool)>) {
        let tid = TransactionId::random(&mut self.rng);
        let mut buf = Vec::with_capacity(64);
        let mut enc = MessageEncoder::new(&mut buf, MessageType::BINDING_REQUEST, tid);
        if let Some((change_ip, change_port)) = change {
            enc.attribute(&Attribute::ChangeRequest {
                change_ip,
                change_port,
            });
        }
        enc.fingerprint();
        // A fixed, small message: encoding cannot fail, and a fresh random id
        // cannot collide with the single transaction in flight.
        if enc.finish().is_ok() {
            self.pending = self.client.start(now, buf, to, None, None).ok();
        }
    }

    fn finish(&mut self, result: Result<NatReport, DiscoveryError>) {
        self.step = Step::Done;
        self.pending = None;
        self.result = Some(result);
    }

    fn mapped(resp: &Response) -> Option<SocketAddr> {
        let msg = resp.message().ok()?;
        msg.xor_mapped_address()
            .ok()
            .flatten()
            .or_else(|| msg.mapped_address().ok().flatten())
    }

    fn after_test1(&mut self, now: Instant) {
        let Some(report) = &self.report else { return };
        let needs_5780 = self.mode != DiscoveryMode::Binding;
        if needs_5780 && report.other_address.is_none() {
            return self.finish(Err(DiscoveryError::NoRfc5780));
        }
        match self.mode {
            DiscoveryMode::Binding => {
                let r = report.clone();
                self.finish(Ok(r))
            }
            DiscoveryMode::Filtering | DiscoveryMode::Both => {
                self.step = Step::Filter2;
                self.send(now, self.server, Some((true, true)));
            }
            DiscoveryMode::Mapping => self.start_mapping(now),
        }
    }

    fn start_mapping(&mut self, now: Instant) {
        let Some(report) = &mut self.report else {
            return;
        };
        if Some(report.mapped) == self.local {
            report.mapping = Some(MappingBehavior::NoNat);
            let r = report.clone();
            return self.finish(Ok(r));
        }
        let Some(other) = report.other_address else {
            return self.finish(Err(DiscoveryError::NoRfc5780));
        };
        self.step = Step::Map2;
        self.send(now, SocketAddr::new(other.ip(), self.server.port()), None);
    }

    fn on_result(&mut self, now: Instant, result: Result<Response, TransactionError>) {
        match (self.step, result) {
            (Step::Test1, Ok(resp)) => {
                let Some(mapped) = Self::mapped(&resp) else {
                    return self.finish(Err(DiscoveryError::NoMappedAddress));
                };
                let msg = resp.message().ok();
                let other = msg.and_then(|m| m.address(attr::OTHER_ADDRESS).ok().flatten());
                let software = msg.and_then(|m| match m.attribute(attr::SOFTWARE) {
                    Ok(Some(Attribute::Software(s))) => Some(s.to_string()),
                    _ => None,
                });
                self.report = Some(NatReport {
                    local: self.local,
                    mapped,
                    other_address: other,
                    software,
                    mapping: None,
                    filtering: None,
                });
                self.after_test1(now);
            }
            (Step::Test1, Err(e @ TransactionError::Timeout { .. })) => {
                self.finish(Err(DiscoveryError::NoResponse(e)))
            }
            (Step::Test1, Err(e)) => self.finish(Err(DiscoveryError::Server(e))),
            (Step::Filter2 | Step::Filter3, Err(TransactionError::ErrorResponse { code, .. }))
                if code == super::attributes::error_code::UNKNOWN_ATTRIBUTE =>
            {
                self.finish(Err(DiscoveryError::NoRfc5780))
            }
            // ANCHOR: filtering_tests
            (Step::Filter2, r) => {
                if r.is_ok() {
                    self.set_filtering(FilteringBehavior::EndpointIndependent);
                    self.after_filtering(now);
                } else {
                    self.step = Step::Filter3;
                    self.send(now, self.server, Some((false, true)));
                }
            }
            (Step::Filter3, r) => {
                self.set_filtering(if r.is_ok() {
                    FilteringBehavior::AddressDependent
                } else {
                    FilteringBehavior::AddressAndPortDependent
                });
                self.after_filtering(now);
            }
            // ANCHOR_END: filtering_tests
            // ANCHOR: mapping_tests
            (Step::Map2, Ok(resp)) => {
                let Some(m2) = Self::mapped(&resp) else {
                    return self.finish(Err(DiscoveryError::NoMappedAddress));
                };
                let m1 = self.report.as_ref().map(|r| r.mapped);
                if Some(m2) == m1 {
                    self.set_mapping(MappingBehavior::EndpointIndependent);
                } else {
                    self.map2 = Some(m2);
                    self.step = Step::Map3;
                    if let Some(other) = self.report.as_ref().and_then(|r| r.other_address) {
                        self.send(now, other, None);
                    }
                }
            }
            (Step::Map3, Ok(resp)) => {
                let Some(m3) = Self::mapped(&resp) else {
                    return self.finish(Err(DiscoveryError::NoMappedAddress));
                };
                self.set_mapping(if Some(m3) == self.map2 {
                    MappingBehavior::AddressDependent
                } else {
                    MappingBehavior::AddressAndPortDependent
                });
            }
            // ANCHOR_END: mapping_tests
            (Step::Map2 | Step::Map3, Err(e)) => self.finish(Err(DiscoveryError::Server(e))),
            (Step::Done, _) => {}
        }
    }

    fn set_filtering(&mut self, f: FilteringBehavior) {
        if let Some(r) = &mut self.report {
            r.filtering = Some(f);
        }
    }

    fn after_filtering(&mut self, now: Instant) {
        if self.mode == DiscoveryMode::Both {
            self.start_mapping(now);
        } else if let Some(r) = self.report.clone() {
            self.finish(Ok(r));
        }
    }

    fn set_mapping(&mut self, m: MappingBehavior) {
        if let Some(r) = &mut self.report {
            r.mapping = Some(m);
            let r = r.clone();
            self.finish(Ok(r));
        }
    }

    fn drain_client(&mut self, now: Instant) {
        while let Some(client::Event::Completed { id, result }) = self.client.poll_event() {
            if Some(id) == self.pending {
                self.pending = None;
                self.on_result(now, result);
            }
        }
    }
}

impl<R: Rng> Machine for NatDiscovery<R> {
    type Event = Result<NatReport, DiscoveryError>;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        self.client.handle_response(now, datagram);
        self.drain_client(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.client.handle_timeout(now);
        self.drain_client(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.client.poll_transmit()
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        self.result.take()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.client.poll_timeout()
    }
}
