//! [`SimHost`]: an [`Association`] as a [`Machine`], each SCTP packet one UDP
//! datagram (DTLS comes in between in a real peer), with an optional bulk
//! sender and a verifying sink for transfer tests and benchmarks.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use crate::machine::{Machine, Receive, Transmit};
use crate::sctp::{self, Association, Event, SendOptions};

/// Keeps a stream busy with numbered messages whose bytes can be checked.
#[derive(Debug, Clone)]
pub struct BulkSender {
    /// Stream to send on.
    pub stream: u16,
    /// PPID of every message (53: WebRTC binary).
    pub ppid: u32,
    /// Bytes per message (at least 8: the message number comes first).
    pub message_size: usize,
    /// Messages to send in all.
    pub messages: u64,
    /// Messages sent so far.
    pub sent: u64,
    /// Keep at most this many bytes buffered on the stream.
    pub high_water: usize,
    /// Options of every send.
    pub options: SendOptions,
    buf: Vec<u8>,
}

impl BulkSender {
    /// A sender of `messages` messages of `message_size` bytes.
    pub fn new(stream: u16, message_size: usize, messages: u64) -> BulkSender {
        BulkSender {
            stream,
            ppid: 53,
            message_size: message_size.max(8),
            messages,
            sent: 0,
            high_water: 8 * 1024 * 1024,
            options: SendOptions::default(),
            buf: Vec::new(),
        }
    }

    /// Fills `buf` with message number `n`: the number, then bytes derived from it.
    pub fn fill(buf: &mut Vec<u8>, n: u64, size: usize) {
        buf.clear();
        buf.extend_from_slice(&n.to_le_bytes());
        let seed = (n as u8).wrapping_mul(31);
        buf.extend((8..size).map(|i| seed.wrapping_add(i as u8)));
    }

    /// Checks a message made by [`BulkSender::fill`]; returns its number.
    pub fn check(data: &[u8], size: usize) -> Option<u64> {
        if data.len() != size || size < 8 {
            return None;
        }
        let n = u64::from_le_bytes(data[..8].try_into().ok()?);
        let seed = (n as u8).wrapping_mul(31);
        data[8..]
            .iter()
            .enumerate()
            .all(|(i, &b)| b == seed.wrapping_add((i + 8) as u8))
            .then_some(n)
    }

    fn pump(&mut self, a: &mut Association, now: Instant) {
        while self.sent < self.messages && a.buffered_amount(self.stream) < self.high_water {
            Self::fill(&mut self.buf, self.sent, self.message_size);
            match a.send(now, self.stream, self.ppid, &self.buf, self.options) {
                Ok(()) => self.sent += 1,
                Err(sctp::Error::BufferFull) | Err(_) => break,
            }
        }
    }

    /// Whether every message was handed to the association.
    pub fn done(&self) -> bool {
        self.sent >= self.messages
    }
}

/// Counts and verifies messages from a [`BulkSender`] instead of queueing
/// them as events.
#[derive(Debug, Clone, Default)]
pub struct BulkSink {
    /// Expected message size.
    pub message_size: usize,
    /// Messages received.
    pub messages: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Messages whose number was not the next one (0 for an intact ordered transfer).
    pub out_of_order: u64,
    /// Messages whose bytes were wrong.
    pub corrupt: u64,
    /// Verify every byte (slower in debug builds).
    pub verify: bool,
    /// The numbers seen, when `record` is set.
    pub seen: Vec<u64>,
    /// Keep the numbers of received messages in `seen`.
    pub record: bool,
    /// When the last message arrived.
    pub last_at: Option<Instant>,
    next: u64,
}

impl BulkSink {
    /// A sink for messages of `message_size` bytes.
    pub fn new(message_size: usize, verify: bool) -> BulkSink {
        BulkSink {
            message_size,
            verify,
            ..BulkSink::default()
        }
    }

    fn take(&mut self, data: &[u8], now: Instant) {
        self.messages += 1;
        self.bytes += data.len() as u64;
        self.last_at = Some(now);
        let n = if self.verify {
            BulkSender::check(data, self.message_size)
        } else if data.len() >= 8 {
            data[..8].try_into().ok().map(u64::from_le_bytes)
        } else {
            None
        };
        match n {
            Some(n) => {
                if n != self.next {
                    self.out_of_order += 1;
                }
                self.next = n + 1;
                if self.record {
                    self.seen.push(n);
                }
            }
            None => self.corrupt += 1,
        }
    }
}

/// An [`Association`] on a simulated host: SCTP packets as UDP datagrams
/// to `peer`.
#[derive(Debug)]
pub struct SimHost {
    /// The association.
    pub association: Association,
    /// Where packets go.
    pub peer: SocketAddr,
    /// Optional bulk source, topped up after every input.
    pub bulk: Option<BulkSender>,
    /// Optional sink that swallows `Message` events.
    pub sink: Option<BulkSink>,
    events: VecDeque<Event>,
    buf: Vec<u8>,
}

impl SimHost {
    /// Wraps an association talking to `peer`.
    pub fn new(association: Association, peer: SocketAddr) -> SimHost {
        SimHost {
            association,
            peer,
            bulk: None,
            sink: None,
            events: VecDeque::new(),
            buf: Vec::new(),
        }
    }

    /// Tops up the bulk sender and drains events now (after setting
    /// `bulk` or `sink` from a test, before the simulator runs).
    pub fn handle_timeout_now(&mut self, now: Instant) {
        self.pump(now);
    }

    fn pump(&mut self, now: Instant) {
        while let Some(e) = self.association.poll_event() {
            match (e, &mut self.sink) {
                (Event::Message { data, .. }, Some(sink)) => sink.take(&data, now),
                (Event::BufferedAmountDecreased { .. }, _) if self.bulk.is_some() => {}
                (e, _) => self.events.push_back(e),
            }
        }
        if self.association.state() == crate::sctp::State::Established {
            if let Some(b) = &mut self.bulk {
                b.pump(&mut self.association, now);
            }
        }
    }
}

impl Machine for SimHost {
    type Event = Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.association.handle_packet(now, d.contents);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.association.handle_timeout(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.association.poll_transmit_into(&mut self.buf) {
            return None;
        }
        Some(Transmit {
            source: None,
            destination: self.peer,
            contents: self.buf.clone(),
        })
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.association.poll_timeout()
    }
}
