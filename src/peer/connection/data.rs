//! Data channels: the SCTP association over DTLS and its channels
//! (RFC 8831, RFC 8832), started once DTLS is up and stopped when the
//! m-line goes.

use super::*;

impl PeerConnection {
    /// Drops the data-channel m-line: every channel closes now, gracefully
    /// (its streams reset after what it queued, RFC 8831 §6.7; then an SCTP
    /// SHUTDOWN, RFC 9260 §9.2: nothing queued is lost, and
    /// [`datachannel::Event::Closed`] comes for each), and the next offer
    /// rejects the m-line (port 0, JSEP §5.2.2); a peer that applies it
    /// closes its side the same way. Channels can be created again later:
    /// a new m-line and association (an association not yet closed then is
    /// aborted).
    pub fn remove_data_channels(&mut self, now: Instant) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        self.session.remove_data_channel();
        self.pending_channels.clear();
        self.stop_data(now, true);
        Ok(())
    }

    /// Aborts SCTP and forgets the association (its channels close).
    /// Ends the data channels' association: gracefully once it is up
    /// (`flush_sctp` drops it once closed), else by ABORT. `local`: we
    /// removed the m-line, so our channels close at once by resetting their
    /// streams after what they queued (RFC 8831 §6.7, RFC 6525); else the
    /// peer did, and our channels stay open until its resets or the end of
    /// the association, so that what it sent before is still delivered (a
    /// closing channel discards what arrives, W3C). Either way SHUTDOWN
    /// (RFC 9260 §9.2) ends the association once everything queued is
    /// acknowledged: nothing is lost.
    pub(super) fn stop_data(&mut self, now: Instant, local: bool) {
        if self.data_closing {
            return;
        }
        // A new association numbers its handles from 0 again.
        self.next_channel = 0;
        if let Some(d) = self.data.as_mut()
            && self.data_started
            && !d.is_closed()
        {
            if local {
                let ids: Vec<ChannelId> = d.channels().map(|c| c.id()).collect();
                for id in ids {
                    d.close(now, id);
                }
            }
            d.shutdown(now);
            self.data_closing = true;
            self.flush_sctp();
            return;
        }
        if let Some(d) = self.data.as_mut() {
            d.abort(now);
        }
        self.flush_sctp();
        self.data = None;
        self.data_started = false;
        self.data_closing = false;
    }

    /// `createDataChannel`. Before SCTP exists the channel waits (and the
    /// next offer carries a data-channel m-line); it opens with
    /// [`datachannel::Event::Open`].
    pub fn create_data_channel(&mut self, init: ChannelInit) -> Result<ChannelId, Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        if let Some(d) = self.data.as_mut().filter(|_| !self.data_closing) {
            let id = d.create_channel(init)?;
            self.flush_sctp();
            return Ok(id);
        }
        if init.max_retransmits.is_some() && init.max_packet_life_time.is_some() {
            return Err(Error::DataChannel(datachannel::Error::InvalidInit(
                "maxRetransmits and maxPacketLifeTime are mutually exclusive",
            )));
        }
        self.session.add_data_channel();
        self.pending_channels.push(init);
        let id = ChannelId(self.next_channel);
        self.next_channel += 1;
        Ok(id)
    }

    /// Sends a text message on a data channel.
    pub fn send_text(&mut self, now: Instant, id: ChannelId, text: &str) -> Result<(), Error> {
        self.send_message(text.len(), |d| d.send_text(now, id, text))
    }

    /// Sends a binary message on a data channel.
    pub fn send_binary(&mut self, now: Instant, id: ChannelId, data: &[u8]) -> Result<(), Error> {
        self.send_message(data.len(), |d| d.send_binary(now, id, data))
    }

    /// One message of `len` bytes handed to the data channels by `send`,
    /// counted for `stats()`.
    pub(super) fn send_message(
        &mut self,
        len: usize,
        send: impl FnOnce(&mut datachannel::Connection) -> Result<(), datachannel::Error>,
    ) -> Result<(), Error> {
        let d = self
            .data
            .as_mut()
            .ok_or(Error::Misuse("data channels not up"))?;
        send(d)?;
        self.dc_stats.messages_sent += 1;
        self.dc_stats.bytes_sent += len as u64;
        self.flush_sctp();
        Ok(())
    }

    /// Sets the level at or below which `buffered_amount` falling fires
    /// the channel's buffered-amount-low event (W3C
    /// `bufferedAmountLowThreshold`; 0 by default): a sender that refills
    /// when it fires keeps the pipe full without queueing everything.
    pub fn set_buffered_amount_low_threshold(&mut self, id: ChannelId, threshold: usize) {
        if let Some(d) = self.data.as_mut() {
            d.set_buffered_amount_low_threshold(id, threshold);
        }
    }

    /// Closes one data channel.
    pub fn close_data_channel(&mut self, now: Instant, id: ChannelId) {
        if let Some(d) = self.data.as_mut() {
            d.close(now, id);
        }
        self.flush_sctp();
    }

    pub(super) fn make_data(
        &mut self,
        now: Instant,
        role: sdp::DtlsRole,
        sctp: sdp::SctpParams,
    ) -> Result<(), Error> {
        let role = match role {
            sdp::DtlsRole::Client => DtlsRole::Client,
            sdp::DtlsRole::Server => DtlsRole::Server,
        };
        let mut config = ConnectionConfig::new(role);
        config.sctp = self.sctp_config.clone();
        config.sctp.local_port = sctp.local_port;
        config.sctp.remote_port = sctp.remote_port;
        // RFC 8841 §6: 0 means the peer takes messages of any size.
        config.remote_max_message_size = match sctp.remote_max_message_size {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let mut d = datachannel::Connection::new(config, StdRng::seed_from_u64(self.rng.random()));
        for (i, init) in std::mem::take(&mut self.pending_channels)
            .into_iter()
            .enumerate()
        {
            let id = d.create_channel(init)?;
            // A fresh manager numbers handles from 0, as we did.
            debug_assert_eq!(id, ChannelId(i as u64));
        }
        self.data = Some(d);
        if self.state == PeerConnectionState::Connected {
            self.start_data(now);
        }
        Ok(())
    }

    pub(super) fn start_data(&mut self, now: Instant) {
        if let Some(d) = self.data.as_mut()
            && !self.data_started
        {
            self.data_started = true;
            d.start(now);
        }
        self.flush_sctp();
    }

    /// SCTP packets out as DTLS application data; SCTP events up.
    pub(super) fn flush_sctp(&mut self) {
        let (Some(d), Some(t)) = (self.data.as_mut(), self.transport.as_mut()) else {
            return;
        };
        if self.data_started {
            while d.poll_transmit_into(&mut self.sctp_out) {
                // Lost if DTLS is down: SCTP retransmits.
                let _ = t.send_application_data(&self.sctp_out);
            }
        }
        while let Some(e) = d.poll_event() {
            let st = &mut self.dc_stats;
            match &e {
                datachannel::Event::Open(_) => st.channels_opened += 1,
                datachannel::Event::Closed(_) => st.channels_closed += 1,
                datachannel::Event::Message { message, .. } => {
                    st.messages_received += 1;
                    st.bytes_received += message.len() as u64;
                }
                _ => {}
            }
            if self.events.len() < MAX_EVENTS {
                self.events.push_back(Event::DataChannel(e));
            }
        }
        if self.data_closing && d.is_closed() {
            self.data = None;
            self.data_started = false;
            self.data_closing = false;
        }
    }

    /// The data channels' SCTP connection, once negotiated.
    pub fn data_channels(&self) -> Option<&datachannel::Connection> {
        self.data.as_ref()
    }
}
