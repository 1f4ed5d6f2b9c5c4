//! Our flights and their reliability, RFC 9147's way: every handshake
//! fragment travels in its own record (so that an ACK, §7, names exactly
//! what arrived), unacknowledged fragments are resent on a doubling timer
//! (§5.8) in the epoch they were first sent in, and the peer's records are
//! acknowledged (at once, or after a short delay for a partial flight).

use std::time::Instant;

use super::super::key_schedule::{self as ks, TrafficKeys};
use super::super::messages::{self as m, Handshake};
use super::super::record::{CONTENT_TYPE_ACK, RecordNumber};
use super::super::transcript::Transcript;
use super::{Endpoint, P, State};
use crate::dtls::handshake::{
    AlertDescription, HandshakeFragment, HandshakeHeader, HandshakeMessage,
};
use crate::dtls::record::ContentType;

/// Bytes a protected record adds around its content: the unified header
/// in its full form (5), the inner content type (1) and the tag (16).
const PROTECTED_OVERHEAD: usize = 5 + 1 + 16;
/// A DTLSPlaintext header.
const PLAINTEXT_OVERHEAD: usize = 13;
/// A handshake fragment header.
const FRAGMENT_HEADER: usize = 12;

/// One handshake message of our current flight, kept until acknowledged.
#[derive(Debug)]
pub(super) struct FlightMessage {
    /// The epoch its records are sealed in (on retransmission too).
    epoch: u64,
    pub(super) message: HandshakeMessage,
    /// Body ranges acknowledged, merged.
    acked: Vec<(usize, usize)>,
    /// Records sent and the body range each carried.
    sent: Vec<(RecordNumber, usize, usize)>,
    /// An empty body, acknowledged.
    empty_acked: bool,
}

impl FlightMessage {
    fn unacked(&self) -> Vec<(usize, usize)> {
        let len = self.message.body.len();
        if len == 0 {
            return if self.empty_acked {
                vec![]
            } else {
                vec![(0, 0)]
            };
        }
        let mut out = Vec::new();
        let mut at = 0;
        for &(s, e) in &self.acked {
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
        }
        if at < len {
            out.push((at, len));
        }
        out
    }

    fn ack(&mut self, number: &RecordNumber) {
        let hits: Vec<(usize, usize)> = self
            .sent
            .iter()
            .filter(|(n, _, _)| n == number)
            .map(|&(_, s, e)| (s, e))
            .collect();
        for (s, e) in hits {
            if s == e {
                self.empty_acked = true;
                continue;
            }
            self.acked.push((s, e));
            self.acked.sort_unstable();
            let mut merged: Vec<(usize, usize)> = Vec::new();
            for &(s, e) in &self.acked {
                match merged.last_mut() {
                    Some(l) if s <= l.1 => l.1 = l.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            self.acked = merged;
        }
    }
}

impl Endpoint {
    /// Adds a message to the current flight (sent by
    /// [`Endpoint::send_flight`]) and to `transcript`.
    pub(super) fn queue(
        &mut self,
        msg: Handshake,
        epoch: u64,
        transcript: Option<&mut Transcript>,
    ) {
        let message = msg.to_message(self.core.next_send_seq);
        self.core.next_send_seq = self.core.next_send_seq.wrapping_add(1);
        if let Some(t) = transcript {
            t.add_message(&message);
        }
        self.flight.push(FlightMessage {
            epoch,
            message,
            acked: Vec::new(),
            sent: Vec::new(),
            empty_acked: false,
        });
    }

    /// Sends every unacknowledged fragment of the flight, packed into
    /// datagrams of at most [`Config::mtu`] bytes, one fragment per record
    /// (so that an ACK names exactly what arrived), and arms the
    /// retransmission timer (RFC 9147 §5.8).
    pub(super) fn send_flight(&mut self, now: Instant) {
        let mtu = self.core.config.mtu.max(200);
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut d: Vec<u8> = Vec::new();
        let mut frag = Vec::new();
        for i in 0..self.flight.len() {
            let epoch = self.flight[i].epoch;
            let overhead = if epoch == 0 {
                PLAINTEXT_OVERHEAD
            } else {
                PROTECTED_OVERHEAD
            } + FRAGMENT_HEADER;
            for (start, end) in self.flight[i].unacked() {
                let mut at = start;
                loop {
                    let room = mtu.saturating_sub(d.len() + overhead);
                    if room < 64.min(end - at + 1) && !d.is_empty() {
                        datagrams.push(std::mem::take(&mut d));
                        continue;
                    }
                    let take = (end - at).min(mtu - overhead);
                    let take = take.min(room.max(1));
                    let msg = &self.flight[i].message;
                    frag.clear();
                    HandshakeFragment {
                        header: HandshakeHeader {
                            msg_type: msg.msg_type,
                            length: msg.body.len() as u32,
                            message_seq: msg.message_seq,
                            fragment_offset: at as u32,
                            fragment_length: take as u32,
                        },
                        body: &msg.body[at..at + take],
                    }
                    .emit(&mut frag);
                    match self
                        .core
                        .records
                        .seal_in(epoch, ContentType::Handshake, &frag, 0, &mut d)
                    {
                        Ok(number) => self.flight[i].sent.push((number, at, at + take)),
                        Err(e) => {
                            self.fail(e, AlertDescription::INTERNAL_ERROR);
                            return;
                        }
                    }
                    at += take;
                    if at >= end {
                        break;
                    }
                }
            }
        }
        if !d.is_empty() {
            datagrams.push(d);
        }
        for d in datagrams {
            self.core.push_datagram(d);
        }
        self.core.retransmit_at = if self.flight.is_empty() {
            None
        } else {
            Some(now + self.core.retransmit_timeout)
        };
    }

    /// A new flight starts: the previous one is implicitly acknowledged.
    pub(super) fn begin_flight(&mut self) {
        self.flight.clear();
        self.core.retransmits = 0;
        self.core.retransmit_timeout = self.core.config.initial_retransmit_timeout;
    }

    /// Sends an ACK of the peer's records received so far (RFC 9147 §7),
    /// in the current write epoch.
    pub(super) fn send_ack(&mut self) {
        self.ack_at = None;
        if self.to_ack.is_empty() {
            return;
        }
        let mut records = self.to_ack.clone();
        records.sort_unstable_by_key(|r| (r.epoch, r.sequence));
        records.dedup();
        // Only epochs at or below the one we write in may be named.
        let epoch = self.core.records.write_epoch();
        records.retain(|r| r.epoch <= epoch);
        if records.is_empty() {
            return;
        }
        let mut body = Vec::new();
        m::Ack { records }.emit(&mut body);
        let mut out = Vec::new();
        if self
            .core
            .records
            .seal(ContentType::Other(CONTENT_TYPE_ACK), &body, 0, &mut out)
            .is_ok()
        {
            self.core.push_datagram(out);
        }
    }

    /// The peer's ACK (RFC 9147 §7): what it names is not resent; a
    /// flight wholly acknowledged stops the timer (and a KeyUpdate's
    /// switches our sending keys, §8).
    pub(super) fn on_ack(&mut self, ack: &m::Ack) {
        if self.flight.is_empty() {
            return;
        }
        for n in &ack.records {
            for f in &mut self.flight {
                f.ack(n);
            }
        }
        if self.flight.iter().all(|f| f.unacked().is_empty()) {
            let was_update = self
                .flight
                .iter()
                .any(|f| f.message.msg_type == m::msg_type::KEY_UPDATE);
            self.flight.clear();
            self.core.retransmit_at = None;
            self.core.retransmits = 0;
            self.core.retransmit_timeout = self.core.config.initial_retransmit_timeout;
            if let State::Connected(c) = &mut self.state {
                // The client's Finished flight is acknowledged: the keys of
                // epoch 2 may go.
                self.core.records.drop_old_write_epochs();
                if was_update && c.update_pending {
                    c.update_pending = false;
                    c.write_secret = ks::next_traffic_secret(P, &c.write_secret);
                    c.write_epoch += 1;
                    let keys = TrafficKeys::derive(P, &c.write_secret);
                    let _ = self.core.records.install_write(c.write_epoch, &keys);
                }
            }
        }
    }
}
