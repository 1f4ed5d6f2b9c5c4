//! The simplest far end a test can want: a machine that sends every datagram
//! back where it came from.

use std::collections::VecDeque;
use std::time::Instant;

use crate::machine::{Machine, Receive, Transmit};

/// Sends every datagram back to its source, from the address it arrived on
/// (a UDP echo server, RFC 862, as a sans-IO machine).
#[derive(Debug, Default)]
pub struct Echo {
    out: VecDeque<Transmit>,
    echoed: u64,
}

impl Echo {
    /// Queues a datagram of its own (for a test where the echo host must
    /// speak first, to open a NAT binding, say).
    pub fn send(&mut self, t: Transmit) {
        self.out.push_back(t);
    }

    /// How many datagrams it has echoed.
    pub fn echoed(&self) -> u64 {
        self.echoed
    }
}

impl Machine for Echo {
    type Event = ();

    fn handle_receive(&mut self, _now: Instant, d: Receive<'_>) {
        self.echoed += 1;
        self.out.push_back(Transmit {
            source: Some(d.destination),
            destination: d.source,
            contents: d.contents.to_vec(),
        });
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    fn poll_event(&mut self) -> Option<()> {
        None
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
