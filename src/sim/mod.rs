//! A deterministic network simulator for sans-IO machines.
//!
//! Every protocol machine in rtclab (STUN transactions, ICE agents, DTLS and
//! SCTP endpoints, whole peers) implements [`Machine`](crate::machine::Machine)
//! and never reads a clock or opens a socket. That lets this module run them
//! on a made-up network at virtual time: a minute of lossy, jittery traffic
//! through NATs finishes in milliseconds, and the same seed replays exactly
//! the same run, so a failure seen once can be stepped through forever.
//!
//! ## The model
//!
//! ```text
//!                                   the public internet (a realm)
//!   ┌────────────┐  uplink   ┌──────────────────────────────────────────┐
//!   │ host0      │──────────►│                                          │
//!   │ 192.0.2.1  │◄──────────│   routing by destination address         │
//!   └────────────┘ downlink  │                                          │
//!                            └───────┬─────────────────────────┬────────┘
//!                                    │ 203.0.113.1             │ 198.51.100.1
//!                             ┌──────┴──────┐           ┌──────┴──────┐
//!                             │   nat0      │           │   nat1      │  NAT boxes:
//!                             │ (RFC 4787)  │           │             │  mapping,
//!                             └──────┬──────┘           └──────┬──────┘  filtering,
//!                     realm inside nat0                realm inside nat1  timeouts,
//!                  ┌─────────┴──────────┐                      │          hairpinning
//!            ┌─────┴─────┐        ┌─────┴─────┐          ┌─────┴─────┐
//!            │ host1     │        │ host2     │          │ host3     │
//!            │ 10.0.0.2  │        │ 10.0.0.3  │          │ 10.0.0.2  │
//!            └───────────┘        └───────────┘          └───────────┘
//! ```
//!
//! - A **host** owns one machine and one or more socket addresses (a STUN
//!   server for RFC 5780 behaviour discovery has two IPs with two ports
//!   each). The first address is the source of `Transmit { source: None, .. }`.
//! - Each host has an **access link** per direction ([`LinkConfig`]): delay,
//!   jitter, independent or bursty ([`GilbertElliott`]) loss, duplication,
//!   reordering, an MTU, and a rate-limited drop-tail queue (sizes count the
//!   IP and UDP headers). A datagram crosses the sender's uplink, any NATs,
//!   then the receiver's downlink; with the default 5 ms per link a
//!   host-to-host trip takes 10 ms each way. The core adds no delay, nor
//!   do NATs unless given a WAN link ([`Sim::set_nat_link`]) that every host
//!   behind them then shares (a home's uplink, an ocean between sites).
//!   [`Sim::set_link`], [`Sim::set_uplink`] and [`Sim::set_downlink`] change
//!   a link at any time (a link with `loss: 1.0` is a cut cable).
//! - A **realm** is an address space: the public internet, or the inside of
//!   one NAT. Hosts behind the same NAT reach each other directly by private
//!   address; everything else goes out through the NAT ([`NatConfig`]: the
//!   mapping and filtering behaviours of RFC 4787, binding timeout, port
//!   preservation, hairpinning). A NAT may sit behind another NAT
//!   ([`Sim::add_nat_behind`]), and a host may move to another network
//!   ([`Sim::move_host`]). A datagram nobody owns is dropped and counted;
//!   there is no ICMP.
//!
//! ## Time and steps
//!
//! The clock starts at an `Instant` taken once in [`Sim::new`]; only offsets
//! matter. [`Sim::step`] collects every pending transmit, jumps to the
//! earliest of the next datagram event and every machine's `poll_timeout()`,
//! delivers what is due (`handle_receive`), fires due timers
//! (`handle_timeout`), and collects the transmits that produced. The
//! simulator never calls `poll_event`: events wait in the machine for the
//! test ([`Sim::events`], [`Sim::machine_mut`]).
//!
//! Zero-progress guard: consecutive steps are at least [`MIN_STEP`] (1 µs)
//! apart, so a machine that keeps returning a timeout in the past is woken
//! at `now`, `now + 1 µs`, … and time still moves. If it does so more than
//! [`DEFAULT_SPIN_LIMIT`] times in a row (right after `handle_timeout(t)` it
//! still wants a timeout `≤ t`), the simulator panics naming the machine
//! rather than crawl: that machine breaks the contract.
//!
//! Give machines `sim.now()` as their notion of the current time when you
//! build them or call their API (never `Instant::now()`), then run the
//! network with [`Sim::step`], [`Sim::run_for`], [`Sim::run_until`] or, most
//! often in tests, [`Sim::run_until_with`] / [`Sim::run_for_with`], which stop
//! as soon as a predicate holds and report whether it did before the
//! deadline.
//!
//! ## Determinism
//!
//! All randomness (loss, jitter, duplication, reordering, NAT port choice)
//! comes from the seed, through one RNG per link direction and per NAT, so a
//! change to one host's link does not reshuffle the others. Ties are broken
//! by scheduling order and host order, never by hash order.
//!
//! ## Watching packets
//!
//! Every delivery is logged with `tracing::trace!` (drops at `debug`), and
//! [`Sim::set_capture`] keeps a bounded list of [`CaptureRecord`]s (sent,
//! delivered, dropped with the reason) for a test or a chapter to print, or
//! to save with [`write_pcap`] and open in Wireshark (each record wrapped
//! in the IPv4/IPv6 and UDP headers it would have had).
//!
//! ## Left out
//!
//! ICMP (unreachables, "packet too big"), TCP, IP fragmentation (an MTU
//! drops, it never fragments), delay inside the core or at NATs, NATs with
//! several public addresses (RFC 4787 §4.1 "IP address pooling") and port
//! parity or contiguity (§4.2.2, §4.2.3), ALGs, and NAT behaviour for
//! anything but UDP.
//!
//! ## Example
//!
//! ```
//! use std::collections::VecDeque;
//! use std::net::SocketAddr;
//! use std::time::{Duration, Instant};
//! use rtclab::machine::{Machine, Receive, Transmit};
//! use rtclab::sim::{CaptureKind, NatConfig, Sim};
//!
//! /// Sends every datagram back where it came from.
//! #[derive(Default)]
//! struct Echo { out: VecDeque<Transmit> }
//!
//! impl Machine for Echo {
//!     type Event = ();
//!     fn handle_receive(&mut self, _now: Instant, d: Receive<'_>) {
//!         self.out.push_back(Transmit {
//!             source: Some(d.destination),
//!             destination: d.source,
//!             contents: d.contents.to_vec(),
//!         });
//!     }
//!     fn handle_timeout(&mut self, _now: Instant) {}
//!     fn poll_transmit(&mut self) -> Option<Transmit> { self.out.pop_front() }
//!     fn poll_event(&mut self) -> Option<()> { None }
//!     fn poll_timeout(&self) -> Option<Instant> { None }
//! }
//!
//! let server: SocketAddr = "192.0.2.1:7".parse().unwrap();
//! let mut sim = Sim::new(42);
//! sim.add_host(Echo::default(), &[server]);
//! let nat = sim.add_nat(NatConfig::new("203.0.113.1".parse().unwrap()));
//! let client = sim.add_host_behind(nat, Echo::default(), &["10.0.0.2:5000".parse().unwrap()]);
//!
//! // The client sends one datagram: an API call on its machine.
//! sim.machine_mut::<Echo>(client).out.push_back(Transmit {
//!     source: None,
//!     destination: server,
//!     contents: b"hello".to_vec(),
//! });
//! sim.set_capture(true);
//! sim.run_for(Duration::from_millis(100));
//!
//! // Both echo forever (10 ms each way): five round trips in 100 ms.
//! assert_eq!(sim.host_stats(client).delivered, 5);
//! // The server saw the NAT's public address, not 10.0.0.2.
//! let seen = sim.drain_capture().into_iter()
//!     .find(|r| r.kind == CaptureKind::Delivered && r.destination == server)
//!     .unwrap();
//! assert_eq!(seen.source.ip().to_string(), "203.0.113.1");
//! ```

mod echo;
mod link;
mod nat;
mod network;
mod pcap;
pub mod sctp;

pub use echo::Echo;
pub use link::{GilbertElliott, LinkConfig};
pub use nat::{FilteringBehavior, MappingBehavior, NatBinding, NatConfig, NatStats};
pub use network::{
    CaptureKind, CaptureRecord, DEFAULT_CAPTURE_LIMIT, DEFAULT_SPIN_LIMIT, DropReason, HostId,
    MIN_STEP, NatId, Sim, Stats,
};
pub use pcap::write_pcap;
pub(crate) use pcap::{ip_transport_packet, ip_udp_packet};
