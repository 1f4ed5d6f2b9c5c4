//! [`IceTransport`]: an ICE [`Agent`] and the TURN [`Client`](turn::Client)
//! that gives it a relayed candidate, as one sans-IO machine.
//!
//! ```text
//!            API (candidates, credentials, send)          Event
//!                         │                                   ▲
//!   ┌─────────────────────▼───────────────────────────────────┴──────┐
//!   │ IceTransport                                                    │
//!   │   Agent ── Transmit{source: host} ──────────────────────────────┼──► socket
//!   │     │   ── Transmit{source: relayed} ─► turn::Client.send_to ───┼──► TURN server
//!   │     ▲                                   (Send / ChannelData)    │
//!   │     └── Receive{destination: relayed} ◄─ Data / ChannelData ◄───┼─── TURN server
//!   └─────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The agent tags every datagram with the base it is sent from; a relayed
//! candidate's base is its relayed address (RFC 8445 §5.1.1.2). So the
//! transport needs no knowledge of pairs: a transmit whose `source` is the
//! relayed address goes through the allocation, anything else goes out as
//! is. What the TURN server relays back is unwrapped and fed to the agent
//! as if it had arrived on a socket bound to the relayed address.
//!
//! What it does about TURN (RFC 8656):
//!
//! - allocates from the first host candidate of the server's address family,
//!   and holds back [`Event::GatheringComplete`] until the allocation
//!   succeeded (the relayed candidate is announced) or failed;
//! - installs a permission (§9) for the IP of every remote candidate, so
//!   that the peer's checks to our relayed address are let through, not only
//!   the answers to ours;
//! - sends by Send indication (§11) until the selected pair runs over the
//!   relay, then binds a channel (§12) to the remote address of that pair
//!   and sends ChannelData from then on;
//! - the TURN client refreshes the allocation, the permissions and the
//!   channel on its own timers; [`IceTransport::close`] releases the
//!   allocation (Refresh with LIFETIME 0, §7.4);
//! - drops Data indications from peers it never asked a permission for and
//!   ChannelData on channels it never bound (§12.6), without keeping any
//!   state about them.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::agent::{Agent, Config, Credentials, Error, Event};
use super::candidate::Candidate;
use crate::machine::{Machine, Receive, Transmit};
use crate::turn::{self};

/// Most peer IPs the transport asks permissions for (the TURN client keeps
/// at most 256).
const MAX_PERMITTED: usize = 128;

/// How an [`IceTransport`] is set up.
#[derive(Debug, Clone, Default)]
pub struct TransportConfig {
    /// The ICE agent's configuration (role, STUN server, timers, caps).
    pub agent: Config,
    /// A TURN server and credentials, for a relayed candidate. Its `local`
    /// is filled in with the host candidate the allocation is made from.
    pub turn: Option<turn::client::Config>,
}

/// Where the relayed candidate stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayStatus {
    /// No TURN server configured.
    Disabled,
    /// Waiting for a host candidate of the server's address family.
    Waiting,
    /// Allocate sent.
    Allocating,
    /// The relayed candidate exists.
    Allocated {
        /// The relayed transport address on the TURN server.
        relayed: SocketAddr,
    },
    /// The allocation failed, expired, or was released.
    Closed {
        /// Why, if it failed.
        error: Option<turn::Error>,
    },
}

/// Counters of what went through the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Datagrams the agent sent through the allocation.
    pub sent: u64,
    /// Datagrams from the allocation handed to the agent.
    pub received: u64,
    /// Relayed datagrams from a peer we never asked a permission for
    /// (the server should not relay those; spoofed or stale): dropped.
    pub refused: u64,
    /// Datagrams the agent sent from the relayed candidate that could not go
    /// out (no allocation, a peer the server refused a permission for, the
    /// TURN client's queue full): dropped.
    pub dropped: u64,
    /// Channels bound for a selected relayed pair.
    pub channels_bound: u64,
}

/// An ICE agent plus its TURN allocation: see the [module doc](self).
#[derive(Debug)]
pub struct IceTransport {
    agent: Agent,
    turn_config: Option<turn::client::Config>,
    turn: Option<turn::Client>,
    turn_rng: Option<StdRng>,
    relayed: Option<SocketAddr>,
    relay_error: Option<turn::Error>,
    /// Peer IPs we asked a permission for (and that were not refused).
    permitted: HashSet<IpAddr>,
    /// Peer IPs the server refused a permission for (403: its own
    /// addresses, for one): not asked again, nothing relayed to them.
    refused: HashSet<IpAddr>,
    /// The remote address a channel was requested for.
    channel_for: Option<SocketAddr>,
    now: Option<Instant>,
    stats: RelayStats,
}

impl IceTransport {
    /// A transport; the agent and the TURN client get RNGs seeded from `rng`.
    pub fn new(config: TransportConfig, mut rng: StdRng) -> IceTransport {
        let agent = Agent::new(config.agent, StdRng::from_rng(&mut rng));
        let turn_rng = config.turn.as_ref().map(|_| StdRng::from_rng(&mut rng));
        IceTransport {
            agent,
            turn_config: config.turn,
            turn: None,
            turn_rng,
            relayed: None,
            relay_error: None,
            permitted: HashSet::new(),
            refused: HashSet::new(),
            channel_for: None,
            now: None,
            stats: RelayStats::default(),
        }
    }

    /// The ICE agent, to read its state, check list and candidates.
    pub fn agent(&self) -> &Agent {
        &self.agent
    }

    /// The ICE agent, for calls this type does not wrap. What such a call
    /// queues is routed on the next `poll_transmit` or `handle_*` call.
    pub fn agent_mut(&mut self) -> &mut Agent {
        &mut self.agent
    }

    /// The TURN client, once an allocation was started.
    pub fn turn_client(&self) -> Option<&turn::Client> {
        self.turn.as_ref()
    }

    /// Where the relayed candidate stands.
    pub fn relay_status(&self) -> RelayStatus {
        match (&self.turn_config, &self.turn) {
            (None, _) => RelayStatus::Disabled,
            (Some(_), None) => RelayStatus::Waiting,
            (Some(_), Some(c)) => match c.state() {
                turn::State::Idle | turn::State::Allocating => RelayStatus::Allocating,
                turn::State::Allocated | turn::State::Closing => match self.relayed {
                    Some(relayed) => RelayStatus::Allocated { relayed },
                    None => RelayStatus::Allocating,
                },
                turn::State::Closed => RelayStatus::Closed {
                    error: self.relay_error.clone(),
                },
            },
        }
    }

    /// The relayed address, once allocated (kept after the allocation
    /// ended, see [`IceTransport::relay_status`]).
    pub fn relayed_address(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// What went through the relay.
    pub fn relay_stats(&self) -> RelayStats {
        self.stats
    }

    /// Our ufrag and password, to signal.
    pub fn local_credentials(&self) -> &Credentials {
        self.agent.local_credentials()
    }

    /// Adds a host candidate ([`Agent::add_local_host`]). The first one of
    /// the TURN server's address family also starts the allocation (RFC 8656
    /// §7.1), from that socket.
    pub fn add_local_host(&mut self, now: Instant, addr: SocketAddr) -> Result<Candidate, Error> {
        self.now = Some(now);
        let start_turn = self.turn.is_none()
            && self
                .turn_config
                .as_ref()
                .is_some_and(|c| c.server.is_ipv4() == addr.is_ipv4());
        if start_turn {
            // Before the host is added, so that GatheringComplete waits.
            self.agent.begin_external_gathering();
        }
        let c = match self.agent.add_local_host(now, addr) {
            Ok(c) => c,
            Err(e) => {
                if start_turn {
                    self.agent.end_external_gathering(now);
                }
                return Err(e);
            }
        };
        if start_turn
            && let (Some(mut config), Some(rng)) = (self.turn_config.clone(), self.turn_rng.take())
        {
            config.local = Some(addr);
            let mut client = turn::Client::new(config, rng);
            if let Err(e) = client.allocate(now) {
                tracing::debug!(error = %e, "TURN allocate not sent");
                self.relay_error = Some(e);
                self.agent.end_external_gathering(now);
            }
            self.turn = Some(client);
        }
        self.sync(now);
        Ok(c)
    }

    /// Sets the peer's ufrag and password ([`Agent::set_remote_credentials`]).
    pub fn set_remote_credentials(&mut self, now: Instant, ufrag: &str, pwd: &str) {
        self.now = Some(now);
        self.agent.set_remote_credentials(now, ufrag, pwd);
        self.sync(now);
    }

    /// Adds a remote candidate ([`Agent::add_remote_candidate`]) and, once
    /// allocated, a TURN permission for its IP.
    pub fn add_remote_candidate(&mut self, now: Instant, c: Candidate) -> Result<(), Error> {
        self.now = Some(now);
        let r = self.agent.add_remote_candidate(now, c);
        self.sync(now);
        r
    }

    /// The peer signaled end-of-candidates ([`Agent::end_of_remote_candidates`]).
    pub fn end_of_remote_candidates(&mut self, now: Instant) {
        self.now = Some(now);
        self.agent.end_of_remote_candidates(now);
        self.sync(now);
    }

    /// Sends `data` over the selected pair ([`Agent::send`]), through the
    /// relay when the pair's local candidate is the relayed one.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        self.agent.send(data)
    }

    /// ICE restart ([`Agent::restart`]); the allocation is kept and its
    /// candidate signaled again.
    pub fn restart(&mut self, now: Instant) -> Credentials {
        self.now = Some(now);
        let c = self.agent.restart(now);
        self.sync(now);
        c
    }

    /// Releases the TURN allocation (RFC 8656 §7.4: a Refresh with LIFETIME
    /// 0). The agent keeps its other candidates.
    pub fn close(&mut self, now: Instant) {
        self.now = Some(now);
        if let Some(t) = &mut self.turn
            && let Err(e) = t.close(now)
        {
            tracing::debug!(error = %e, "TURN close");
        }
        self.sync(now);
    }

    /// Reacts to what the agent and the TURN client did: relayed candidate,
    /// permissions, channel for the selected pair, relayed data.
    fn sync(&mut self, now: Instant) {
        self.drain_turn(now);
        let Some(relayed) = self.relayed else { return };
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        if turn.state() != turn::State::Allocated {
            return;
        }
        // RFC 8656 §9: the server relays nothing from a peer without a
        // permission for its IP, so ask one for every remote candidate
        // before its checks arrive.
        for c in self.agent.remote_candidates() {
            let Some(a) = c.socket_addr() else { continue };
            if a.is_ipv4() != relayed.is_ipv4()
                || self.permitted.contains(&a.ip())
                || self.refused.contains(&a.ip())
                || self.permitted.len() >= MAX_PERMITTED
            {
                continue;
            }
            match turn.create_permission(now, a) {
                Ok(()) => {
                    self.permitted.insert(a.ip());
                }
                Err(e) => tracing::debug!(peer = %a, error = %e, "TURN permission not asked"),
            }
        }
        // RFC 8656 §12: a channel for the pair in use; Send indications
        // before that (and for every other pair).
        if let Some((base, remote)) = self.agent.selected_path()
            && base == relayed
            && self.channel_for != Some(remote)
        {
            match turn.bind_channel(now, remote) {
                Ok(ch) => {
                    tracing::debug!(%remote, channel = ch, "TURN channel for the selected pair");
                    self.channel_for = Some(remote);
                    self.stats.channels_bound += 1;
                }
                Err(e) => tracing::debug!(%remote, error = %e, "TURN channel not bound"),
            }
        }
        self.drain_turn(now);
    }

    fn drain_turn(&mut self, now: Instant) {
        loop {
            let Some(turn) = self.turn.as_mut() else {
                return;
            };
            let Some(e) = turn.poll_event() else { return };
            match e {
                turn::client::Event::Allocated {
                    relayed, mapped, ..
                } => {
                    let server = turn.server();
                    // RFC 8445 §5.1.1.2: the related address of a relayed
                    // candidate is the mapped address the server saw.
                    let mapped = mapped.unwrap_or(relayed);
                    if let Err(e) = self.agent.add_local_relayed(now, relayed, mapped, server) {
                        tracing::debug!(error = %e, "relayed candidate not added");
                    } else {
                        self.relayed = Some(relayed);
                    }
                    self.agent.end_external_gathering(now);
                }
                turn::client::Event::AllocationFailed(e) => {
                    tracing::debug!(error = %e, "TURN allocation failed");
                    self.relay_error = Some(e);
                    self.agent.end_external_gathering(now);
                }
                // ANCHOR: route_in
                turn::client::Event::Data { peer, data } => {
                    let permitted =
                        self.permitted.contains(&peer.ip()) || turn.has_permission(peer.ip());
                    match self.relayed {
                        Some(relayed) if permitted => {
                            self.stats.received += 1;
                            self.agent.handle_receive(
                                now,
                                Receive {
                                    source: peer,
                                    destination: relayed,
                                    contents: &data,
                                },
                            );
                        }
                        _ => {
                            tracing::debug!(%peer, "relayed datagram from a peer without permission dropped");
                            self.stats.refused += 1;
                        }
                    }
                }
                // ANCHOR_END: route_in
                turn::client::Event::ChannelBindFailed { peer, error } => {
                    tracing::debug!(%peer, %error, "TURN ChannelBind failed");
                    if self.channel_for == Some(peer) {
                        self.channel_for = None;
                    }
                }
                turn::client::Event::PermissionFailed { peer, error } => {
                    tracing::debug!(%peer, %error, "TURN permission failed");
                    self.permitted.remove(&peer);
                    // 403: the server will not relay to that IP (its own
                    // addresses, say); not asked again. Other failures
                    // (a timeout) are asked again on the next sync.
                    let forbidden = matches!(error, turn::Error::ErrorResponse { code: 403, .. });
                    if forbidden && self.refused.len() < MAX_PERMITTED {
                        self.refused.insert(peer);
                    }
                }
                turn::client::Event::Closed => {
                    // `relayed` stays: what the agent still sends from the
                    // relayed candidate is dropped, not sent from a socket.
                    tracing::debug!("TURN allocation closed");
                    self.channel_for = None;
                    self.permitted.clear();
                    self.refused.clear();
                }
                other => tracing::trace!(?other, "TURN"),
            }
        }
    }

    /// Sends an agent transmit whose source is the relayed address through
    /// the allocation.
    fn relay(&mut self, t: Transmit) {
        let now = self.now;
        if self.refused.contains(&t.destination.ip()) {
            self.stats.dropped += 1;
            return;
        }
        match (&mut self.turn, now) {
            (Some(turn), Some(now)) => match turn.send_to(now, t.destination, &t.contents) {
                Ok(()) => self.stats.sent += 1,
                Err(e) => {
                    tracing::debug!(to = %t.destination, error = %e, "relayed datagram dropped");
                    self.stats.dropped += 1;
                }
            },
            _ => self.stats.dropped += 1,
        }
    }
}

impl Machine for IceTransport {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.now = Some(now);
        if let Some(turn) = &mut self.turn
            && d.source == turn.server()
            && turn.handle(now, d)
        {
            self.sync(now);
            return;
        }
        self.agent.handle_receive(now, d);
        self.sync(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.now = Some(now);
        self.agent.handle_timeout(now);
        if let Some(t) = &mut self.turn {
            t.handle_timeout(now);
        }
        self.sync(now);
    }

    // ANCHOR: route_out
    fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            if let Some(t) = self.turn.as_mut().and_then(|c| c.poll_transmit()) {
                return Some(t);
            }
            let t = self.agent.poll_transmit()?;
            if self.relayed.is_some() && t.source == self.relayed {
                self.relay(t);
                continue;
            }
            return Some(t);
        }
    }
    // ANCHOR_END: route_out

    fn poll_event(&mut self) -> Option<Event> {
        self.agent.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let a = self.agent.poll_timeout();
        let t = self.turn.as_ref().and_then(|t| t.poll_timeout());
        match (a, t) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    fn transport(now: Instant) -> IceTransport {
        let config = TransportConfig {
            agent: Config::default(),
            turn: Some(turn::client::Config::new(
                addr("198.51.100.2:3478"),
                "alice",
                "secret",
            )),
        };
        let mut t = IceTransport::new(config, StdRng::seed_from_u64(1));
        t.add_local_host(now, addr("10.0.0.2:5000")).expect("host");
        t
    }

    /// Gathering is complete only once the allocation is settled: here the
    /// TURN server never answers, and GatheringComplete waits for the
    /// Allocate transaction to time out.
    #[test]
    fn gathering_waits_for_the_allocation() {
        let start = Instant::now();
        let mut t = transport(start);
        assert_eq!(t.relay_status(), RelayStatus::Allocating);
        let first = t.poll_transmit().expect("an Allocate request");
        assert_eq!(first.destination, addr("198.51.100.2:3478"));
        assert_eq!(first.source, Some(addr("10.0.0.2:5000")));
        let mut complete_at = None;
        let mut now = start;
        for _ in 0..100 {
            while t.poll_transmit().is_some() {}
            while let Some(e) = t.poll_event() {
                if e == Event::GatheringComplete {
                    complete_at = Some(now);
                }
            }
            if complete_at.is_some() {
                break;
            }
            let Some(next) = t.poll_timeout() else { break };
            now = next;
            t.handle_timeout(now);
        }
        let at = complete_at.expect("GatheringComplete after the allocation failed");
        assert!(at - start > Duration::from_secs(5), "{:?}", at - start);
        assert!(matches!(
            t.relay_status(),
            RelayStatus::Closed { error: Some(_) }
        ));
        assert_eq!(t.agent().local_candidates().len(), 1);
    }

    proptest::proptest! {
        /// Whatever arrives, from the TURN server's address or elsewhere,
        /// nothing panics and nothing reaches the agent as a candidate.
        #[test]
        fn arbitrary_datagrams_never_panic(
            b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            from_server in proptest::prelude::any::<bool>(),
        ) {
            let now = Instant::now();
            let mut t = transport(now);
            let source = if from_server { addr("198.51.100.2:3478") } else { addr("192.0.2.9:9") };
            t.handle_receive(now, Receive { source, destination: addr("10.0.0.2:5000"), contents: &b });
            while t.poll_transmit().is_some() {}
            while t.poll_event().is_some() {}
            proptest::prop_assert_eq!(t.agent().local_candidates().len(), 1);
        }
    }
}
