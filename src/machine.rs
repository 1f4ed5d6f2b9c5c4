//! The one shape every protocol state machine in rtclab shares: sans-IO.
//!
//! A machine is a plain struct. It never opens a socket, reads a clock, spawns a
//! task or asks the operating system for randomness. Everything it needs comes in
//! through three doors, and everything it wants done comes out through three
//! others:
//!
//! ```text
//!              handle_receive(now, datagram)      poll_transmit() -> Transmit
//!                                                 (or poll_transmit_into(buf))
//!   caller ──► handle_timeout(now)          ──►   poll_event()    -> Event     ──► caller
//!              API calls (send, close, …)         poll_timeout()  -> Instant
//! ```
//!
//! The caller (the tokio [`runtime`](crate::runtime), the [`sim`](crate::sim)
//! network, a fuzzer, a test or a chapter's example stepping by hand) feeds inputs
//! and then drains the outputs until each `poll_*` returns `None`. Time is an
//! [`Instant`] handed in, so the same code runs at wall-clock time over real UDP
//! and at virtual time in the simulator, where a minute of lossy traffic takes
//! milliseconds and replays exactly from a seed.
//!
//! Models to learn from: quinn-proto, rustls, str0m and smoltcp share this shape.

use std::net::SocketAddr;
use std::time::Instant;

// ANCHOR: datagrams
/// A datagram that arrived on one of the machine's local addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receive<'a> {
    /// Who sent it.
    pub source: SocketAddr,
    /// The local address it arrived on.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub contents: &'a [u8],
}

/// A datagram the machine wants sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from. `None` means "the machine's only (or
    /// first) socket": a client that does not care which local port it uses.
    pub source: Option<SocketAddr>,
    /// Where to send it.
    pub destination: SocketAddr,
    /// The UDP payload.
    pub contents: Vec<u8>,
}

/// Where a datagram written by [`Machine::poll_transmit_into`] goes: a
/// [`Transmit`] without its contents, which are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransmitMeta {
    /// The local address to send from (as [`Transmit::source`]).
    pub source: Option<SocketAddr>,
    /// Where to send it.
    pub destination: SocketAddr,
}

impl Transmit {
    /// Its addresses, without the contents.
    pub fn meta(&self) -> TransmitMeta {
        TransmitMeta {
            source: self.source,
            destination: self.destination,
        }
    }
}
// ANCHOR_END: datagrams

// ANCHOR: machine_trait
/// The sans-IO contract of DESIGN §2, as a trait so that the runtime and the
/// simulator can drive any machine.
///
/// Implementations keep their inherent methods (with richer signatures where a
/// protocol needs them); this trait is the common denominator a driver needs.
pub trait Machine {
    /// What happened, for the application: a transaction finished, a channel
    /// opened, a frame arrived.
    type Event;

    /// Feeds one received datagram.
    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>);

    /// Tells the machine that time has advanced to `now`; it fires every timer
    /// that is due.
    fn handle_timeout(&mut self, now: Instant);

    /// The next datagram to send, if any. Drain until `None`.
    fn poll_transmit(&mut self) -> Option<Transmit>;

    /// The next datagram to send, appended to `buf` (whatever `buf` held
    /// stays in front of it: a driver can gather several datagrams in one
    /// buffer for one batched system call); its addresses are returned.
    /// Drain until `None`, which leaves `buf` as it was.
    ///
    /// Same datagrams, same order as [`Machine::poll_transmit`] (a caller
    /// may mix the two). This default copies what `poll_transmit` returns;
    /// a machine on a hot path (a `PeerConnection`'s transport) overrides
    /// it to write from buffers it reuses, so that a driver sending through
    /// this door allocates nothing per datagram.
    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        let t = self.poll_transmit()?;
        buf.extend_from_slice(&t.contents);
        Some(t.meta())
    }

    /// The next event, if any. Drain until `None`.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// The next instant at which [`Machine::handle_timeout`] must be called,
    /// or `None` when no timer is armed.
    fn poll_timeout(&self) -> Option<Instant>;
}
// ANCHOR_END: machine_trait
