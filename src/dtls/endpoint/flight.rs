//! Flights and their retransmission (RFC 6347 §4.2.4): our current flight
//! is kept whole, packed into datagrams of at most the MTU, and sent again
//! when the timer fires or the peer's retransmitted flight shows ours was
//! lost.

use std::time::Instant;

use super::{Endpoint, Failure, State};
use crate::dtls::Error;
use crate::dtls::handshake::{AlertDescription, Handshake, HandshakeMessage};
use crate::dtls::record::{ContentType, RECORD_HEADER_LEN, RecordProtection};

/// One record of a flight, kept to retransmit it.
#[derive(Debug, Clone)]
pub(super) struct FlightItem {
    /// Sent in the epoch before the current write epoch (ChangeCipherSpec
    /// splits flights 5 and 6 across two epochs).
    previous_epoch: bool,
    content_type: ContentType,
    /// A handshake message (fragmented at send time) or a raw payload.
    message: Option<HandshakeMessage>,
    payload: Vec<u8>,
}

impl FlightItem {
    /// A handshake message, sent in the current epoch.
    pub(super) fn handshake(message: HandshakeMessage) -> Self {
        FlightItem {
            previous_epoch: false,
            content_type: ContentType::Handshake,
            message: Some(message),
            payload: Vec::new(),
        }
    }
}

impl Endpoint {
    /// Starts a new flight of ours; the peer's next flight starts with the
    /// next message_seq we expect.
    pub(super) fn begin_flight(&mut self) {
        self.flight.clear();
        self.peer_flight_start = self.core.reassembler.next_seq();
    }

    /// Adds a handshake message to the current flight and to the transcript.
    pub(super) fn add_message(&mut self, msg: &Handshake) {
        let message = msg.to_message(self.core.next_send_seq);
        self.core.next_send_seq = self.core.next_send_seq.wrapping_add(1);
        message.emit_unfragmented(&mut self.transcript);
        self.flight.push(FlightItem::handshake(message));
    }

    fn add_change_cipher_spec(&mut self) {
        self.flight.push(FlightItem {
            previous_epoch: false,
            content_type: ContentType::ChangeCipherSpec,
            message: None,
            payload: vec![1],
        });
    }

    /// Packs the flight's records into datagrams of at most `mtu` bytes and
    /// queues them; arms the retransmission timer when `expect_reply`.
    pub(super) fn send_flight(&mut self, now: Instant, expect_reply: bool) -> Result<(), Error> {
        let mtu = self.core.config.mtu.max(RECORD_HEADER_LEN + 64);
        let overhead = RECORD_HEADER_LEN + 8 + 16; // worst case: GCM
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        let items = self.flight.clone();
        for item in &items {
            let mut payloads = Vec::new();
            match &item.message {
                Some(m) => m.fragment(mtu - overhead, |f| {
                    let mut p = Vec::new();
                    f.emit(&mut p);
                    payloads.push(p);
                }),
                None => payloads.push(item.payload.clone()),
            }
            for p in payloads {
                if !current.is_empty() && current.len() + p.len() + overhead > mtu {
                    datagrams.push(std::mem::take(&mut current));
                }
                if item.previous_epoch {
                    self.core
                        .records
                        .seal_previous_epoch(item.content_type, &p, &mut current)?;
                } else {
                    self.core
                        .records
                        .seal(item.content_type, &p, &mut current)?;
                }
            }
        }
        if !current.is_empty() {
            datagrams.push(current);
        }
        for d in datagrams {
            self.core.push_datagram(d);
        }
        self.core.retransmit_at = expect_reply.then(|| now + self.core.retransmit_timeout);
        Ok(())
    }

    /// As [`Endpoint::send_flight`] inside a handshake step.
    pub(super) fn send_handshake_flight(
        &mut self,
        now: Instant,
        expect_reply: bool,
    ) -> Result<(), Failure> {
        self.send_flight(now, expect_reply)
            .map_err(|e| (e, AlertDescription::INTERNAL_ERROR))
    }

    /// Sends our whole flight again (RFC 6347 §4.2.4).
    pub(super) fn retransmit(&mut self, now: Instant) {
        if self.flight.is_empty() {
            return;
        }
        let expect_reply = !matches!(self.state, State::Connected(_));
        if let Err(e) = self.send_flight(now, expect_reply) {
            self.fail(e, AlertDescription::INTERNAL_ERROR);
        }
    }

    /// Sends the flight so far plus ChangeCipherSpec in the current epoch,
    /// switches writing to `write`, then sends Finished in the new epoch
    /// (RFC 5246 §7.1). The whole flight is kept for retransmission: the
    /// records sent before ChangeCipherSpec are retransmitted in epoch 0.
    pub(super) fn send_with_finished(
        &mut self,
        now: Instant,
        write: RecordProtection,
        verify: [u8; 12],
        expect_reply: bool,
    ) -> Result<(), Failure> {
        self.add_change_cipher_spec();
        self.send_handshake_flight(now, false)?;
        self.core.records.install_write(write);
        for item in &mut self.flight {
            item.previous_epoch = true;
        }
        let before = std::mem::take(&mut self.flight);
        self.add_message(&Handshake::Finished(verify));
        self.send_handshake_flight(now, expect_reply)?;
        let fin = std::mem::take(&mut self.flight);
        self.flight = before;
        self.flight.extend(fin);
        Ok(())
    }
}
