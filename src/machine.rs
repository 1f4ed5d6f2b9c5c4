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

use std::collections::VecDeque;
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

/// Datagrams waiting to be sent, back to back in one reused buffer: after
/// the buffer has grown to a burst's size, queuing and draining a datagram
/// allocate nothing ([`Machine::poll_transmit_into`] copies it out). The
/// buffer is released after a timer period in which nothing was queued.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    bytes: Vec<u8>,
    /// Each datagram's addresses and length, oldest first; the oldest
    /// starts at `head`.
    items: VecDeque<(TransmitMeta, usize)>,
    head: usize,
    /// Something was queued since the last [`Outbox::trim`].
    used: bool,
}

impl Outbox {
    /// The most bytes a queue in use keeps between bursts.
    const KEEP: usize = 1 << 20;

    /// Queues the bytes `write` appends as one datagram (nothing when it
    /// fails or writes nothing).
    pub(crate) fn push_with<E>(
        &mut self,
        meta: TransmitMeta,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.items.is_empty() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head > 1 << 16 && 2 * self.head > self.bytes.len() {
            // Drained from the front while filled at the back: move the
            // rest down rather than grow forever.
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        let start = self.bytes.len();
        if let Err(e) = write(&mut self.bytes) {
            self.bytes.truncate(start);
            return Err(e);
        }
        let len = self.bytes.len() - start;
        if len > 0 {
            self.items.push_back((meta, len));
            self.used = true;
        }
        Ok(())
    }

    pub(crate) fn push(&mut self, meta: TransmitMeta, datagram: &[u8]) {
        let _ = self.push_with(meta, |b| {
            b.extend_from_slice(datagram);
            Ok::<(), ()>(())
        });
    }

    /// The oldest datagram, appended to `buf`.
    pub(crate) fn pop_into(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        let (meta, len) = self.items.pop_front()?;
        let start = self.head;
        self.head += len;
        buf.extend_from_slice(&self.bytes[start..self.head]);
        if self.items.is_empty() {
            self.bytes.clear();
            self.head = 0;
        }
        Some(meta)
    }

    /// Releases the buffer if nothing was queued since the last call, or
    /// if it is empty and a burst grew it past [`Outbox::KEEP`] (a
    /// forwarder's instant joins, say): a busy queue keeps what its usual
    /// traffic needs, not its largest burst.
    pub(crate) fn trim(&mut self) {
        if self.items.is_empty() && (!self.used || self.bytes.capacity() > Self::KEEP) {
            self.bytes = Vec::new();
            self.items = VecDeque::new();
        }
        self.used = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The outbox hands out exactly what was queued, in order, with
        /// its addresses, whatever the interleaving of pushes, pops and
        /// timers (including the compaction of a buffer drained from the
        /// front while filled at the back).
        #[test]
        fn outbox_keeps_datagrams_and_order(
            ops in proptest::collection::vec((0u8..4, 0usize..3000), 0..400)
        ) {
            let mut outbox = Outbox::default();
            let mut model = VecDeque::new();
            let mut n = 0u32;
            let mut buf = Vec::new();
            for (op, len) in ops {
                match op {
                    0 | 1 => {
                        n += 1;
                        let meta = TransmitMeta {
                            source: None,
                            destination: SocketAddr::from(([10, 0, 0, 1], n as u16)),
                        };
                        let d: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
                        outbox.push(meta, &d);
                        if !d.is_empty() {
                            model.push_back((meta, d));
                        }
                    }
                    2 => {
                        buf.clear();
                        buf.push(0xee);
                        let got = outbox.pop_into(&mut buf);
                        let want = model.pop_front();
                        prop_assert_eq!(got, want.as_ref().map(|(m, _)| *m));
                        let mut expected = vec![0xee];
                        if let Some((_, d)) = want {
                            expected.extend_from_slice(&d);
                        }
                        prop_assert_eq!(&buf, &expected);
                    }
                    _ => outbox.trim(),
                }
            }
            while let Some((m, d)) = model.pop_front() {
                buf.clear();
                prop_assert_eq!(outbox.pop_into(&mut buf), Some(m));
                prop_assert_eq!(&buf, &d);
            }
            prop_assert_eq!(outbox.pop_into(&mut buf), None);
        }
    }
}
