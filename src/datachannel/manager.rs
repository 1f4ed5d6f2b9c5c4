//! The channel manager: every data channel of one SCTP association, at the
//! level of SCTP user messages, without depending on SCTP itself.
//!
//! ```text
//!   application ──create_channel / send_text / send_binary / close──► ChannelManager
//!   ChannelManager ──poll_output()──► Output::Message { stream, ppid, data, unordered, reliability }
//!                                     Output::ResetStreams(streams)          ──► SCTP
//!   SCTP events ──handle_connected / handle_message / handle_streams_reset /
//!                 handle_outgoing_streams_reset / handle_buffered_amount──► ChannelManager
//!   ChannelManager ──poll_event()──► Open · Message · Closing · Closed · Error · BufferedAmountLow
//! ```
//!
//! [`Connection`](super::Connection) wires it to an [`sctp::Association`](crate::sctp::Association)
//! (the unit tests wire two managers
//! together through an in-memory fake instead).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use super::Error;
use super::dcep::{ChannelType, DataChannelOpen, DcepMessage, Ppid, ReliabilityKind, priority};
use crate::vocab::DtlsRole as Role;

/// RFC 8841 §6 leaves the size to SDP (`a=max-message-size`); the issue's
/// default when SDP says nothing is 256 KiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024;

/// The W3C API reserves stream id 65535; ids are 0..=65534.
pub const MAX_STREAM_ID: u16 = 65534;

/// A data channel's handle. Never reused within one manager, unlike stream
/// ids (which a closed channel gives back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelId(pub u64);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How a channel's messages are retransmitted (RFC 8831 §6.1, RFC 3758).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reliability {
    /// Retransmitted until acknowledged.
    Reliable,
    /// Given up after this many retransmissions (`maxRetransmits`).
    MaxRetransmits(u16),
    /// Given up once this old (`maxPacketLifeTime`).
    Lifetime(Duration),
}

/// What `RTCPeerConnection.createDataChannel(label, init)` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInit {
    /// The channel's name.
    pub label: String,
    /// The subprotocol name (may be empty).
    pub protocol: String,
    /// In-order delivery (default true).
    pub ordered: bool,
    /// Partial reliability by retransmission count.
    pub max_retransmits: Option<u16>,
    /// Partial reliability by lifetime, in milliseconds.
    pub max_packet_life_time: Option<u16>,
    /// `Some(id)`: a pre-negotiated channel on stream `id`; both sides must
    /// create it with the same id and options, and no DCEP is sent.
    pub negotiated: Option<u16>,
    /// RFC 8832 §5.1 priority (default [`priority::NORMAL`]).
    pub priority: u16,
}

impl Default for ChannelInit {
    fn default() -> Self {
        ChannelInit {
            label: String::new(),
            protocol: String::new(),
            ordered: true,
            max_retransmits: None,
            max_packet_life_time: None,
            negotiated: None,
            priority: priority::NORMAL,
        }
    }
}

impl ChannelInit {
    /// A reliable ordered channel with this label.
    pub fn new(label: &str) -> Self {
        ChannelInit {
            label: label.to_owned(),
            ..ChannelInit::default()
        }
    }
}

/// The W3C `RTCDataChannelState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadyState {
    /// Created, waiting for the SCTP association.
    Connecting,
    /// Messages can be sent.
    Open,
    /// Closing: the stream reset is under way.
    Closing,
    /// Closed (the last event a channel gets).
    Closed,
}

impl fmt::Display for ReadyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadyState::Connecting => "connecting",
            ReadyState::Open => "open",
            ReadyState::Closing => "closing",
            ReadyState::Closed => "closed",
        })
    }
}

/// A message received on a channel, or given to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A UTF-8 string (PPID 51, or 56 when empty).
    Text(String),
    /// Bytes (PPID 53, or 57 when empty).
    Binary(Vec<u8>),
}

impl Message {
    /// The message's size as the API counts it (bytes of UTF-8 for text).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(s) => s.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// True for the empty string and empty binary message.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the manager reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The channel is open: ours once the association is up (and our
    /// DATA_CHANNEL_OPEN went out), the peer's when its OPEN arrived (a new
    /// channel: `is_incoming()` is true; W3C `datachannel` then `open`).
    Open(ChannelId),
    /// A message arrived.
    Message {
        /// On which channel.
        channel: ChannelId,
        /// What.
        message: Message,
    },
    /// The peer started closing the channel (its outgoing stream was reset).
    Closing(ChannelId),
    /// The channel is closed; its handle is gone and its stream id free.
    Closed(ChannelId),
    /// Something went wrong: the peer sent something invalid (with `channel`
    /// `None` when it concerns no channel of ours, such as a refused OPEN),
    /// or the transport failed.
    Error {
        /// The channel concerned, if any.
        channel: Option<ChannelId>,
        /// What.
        error: Error,
    },
    /// `buffered_amount` fell from above the channel's low threshold to at
    /// or below it (W3C `bufferedamountlow`).
    BufferedAmountLow(ChannelId),
}

/// What the manager asks of SCTP, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one user message.
    Message(OutgoingMessage),
    /// Reset these outgoing streams (RFC 6525), after everything queued
    /// before on them has been sent.
    ResetStreams(Vec<u16>),
}

/// One SCTP user message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The SCTP stream.
    pub stream: u16,
    /// The payload protocol identifier.
    pub ppid: Ppid,
    /// The payload (one zero byte for an empty message).
    pub data: Vec<u8>,
    /// Unordered delivery.
    pub unordered: bool,
    /// How hard SCTP should try.
    pub reliability: Reliability,
}

/// Settings of a [`ChannelManager`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Our DTLS role, if already known (it picks even or odd stream ids;
    /// [`ChannelManager::set_role`] sets it later).
    pub role: Option<Role>,
    /// The largest message the peer accepts (its SDP `a=max-message-size`).
    pub max_message_size: usize,
    /// The largest message we reassemble from deprecated partial PPIDs.
    pub max_receive_message_size: usize,
    /// Stream ids are below this (the SCTP association's stream count).
    pub max_streams: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_receive_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_streams: u16::MAX,
        }
    }
}

/// One data channel, as the application sees it.
#[derive(Debug, Clone)]
pub struct Channel {
    id: ChannelId,
    stream: Option<u16>,
    label: String,
    protocol: String,
    ordered: bool,
    reliability: Reliability,
    negotiated: bool,
    incoming: bool,
    priority: u16,
    state: ReadyState,
    /// RFC 8832 §6: false while our OPEN awaits its ACK (messages go
    /// ordered until then).
    acked: bool,
    /// App bytes queued in the manager's output, not yet polled.
    pending: usize,
    /// App bytes SCTP holds for this stream (as it last reported).
    in_transport: usize,
    low_threshold: usize,
    reset_out: bool,
    reset_out_done: bool,
    reset_in: bool,
    /// Deprecated partial messages (PPID 52/54) being put together.
    partial: Vec<u8>,
}

impl Channel {
    /// The handle.
    pub fn id(&self) -> ChannelId {
        self.id
    }
    /// The SCTP stream id (W3C `id`), once the DTLS role is known.
    pub fn stream(&self) -> Option<u16> {
        self.stream
    }
    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// The subprotocol.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }
    /// In-order delivery.
    pub fn ordered(&self) -> bool {
        self.ordered
    }
    /// How reliable.
    pub fn reliability(&self) -> Reliability {
        self.reliability
    }
    /// W3C `maxRetransmits`.
    pub fn max_retransmits(&self) -> Option<u16> {
        match self.reliability {
            Reliability::MaxRetransmits(n) => Some(n),
            _ => None,
        }
    }
    /// W3C `maxPacketLifeTime`, in milliseconds.
    pub fn max_packet_life_time(&self) -> Option<u16> {
        match self.reliability {
            Reliability::Lifetime(d) => Some(u16::try_from(d.as_millis()).unwrap_or(u16::MAX)),
            _ => None,
        }
    }
    /// Pre-negotiated (no DCEP).
    pub fn negotiated(&self) -> bool {
        self.negotiated
    }
    /// Opened by the peer's DATA_CHANNEL_OPEN.
    pub fn is_incoming(&self) -> bool {
        self.incoming
    }
    /// RFC 8832 priority.
    pub fn priority(&self) -> u16 {
        self.priority
    }
    /// W3C `readyState`.
    pub fn ready_state(&self) -> ReadyState {
        self.state
    }
    /// W3C `bufferedAmount`: bytes of application data sent but not yet
    /// handed to the network (queued here or in SCTP).
    pub fn buffered_amount(&self) -> usize {
        self.pending + self.in_transport
    }
    /// W3C `bufferedAmountLowThreshold`.
    pub fn buffered_amount_low_threshold(&self) -> usize {
        self.low_threshold
    }
}

/// Every data channel of one association (see the module doc).
#[derive(Debug)]
pub struct ChannelManager {
    config: Config,
    connected: bool,
    next_id: u64,
    channels: BTreeMap<ChannelId, Channel>,
    streams: BTreeMap<u16, ChannelId>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
}

impl ChannelManager {
    /// A manager with no channels, before the association is up.
    pub fn new(config: Config) -> Self {
        ChannelManager {
            config,
            connected: false,
            next_id: 0,
            channels: BTreeMap::new(),
            streams: BTreeMap::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Sets our DTLS role (known once SDP has settled `a=setup`); channels
    /// created before get their stream ids now.
    pub fn set_role(&mut self, role: Role) {
        self.config.role = Some(role);
        let waiting: Vec<ChannelId> = self
            .channels
            .values()
            .filter(|c| c.stream.is_none())
            .map(|c| c.id)
            .collect();
        for id in waiting {
            self.assign_stream_or_fail(id);
        }
    }

    /// Sets the largest message the peer accepts (its `a=max-message-size`;
    /// 0 there means "no limit", pass `usize::MAX`).
    pub fn set_max_message_size(&mut self, max: usize) {
        self.config.max_message_size = max;
    }

    /// The largest message [`ChannelManager::send_binary`] accepts.
    pub fn max_message_size(&self) -> usize {
        self.config.max_message_size
    }

    #[cfg(test)]
    pub(crate) fn config_for_test(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Sets the stream count the association negotiated.
    pub fn set_max_streams(&mut self, max: u16) {
        self.config.max_streams = max;
    }

    /// A channel by handle.
    pub fn channel(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.get(&id)
    }

    /// The channel on a stream.
    pub fn channel_on_stream(&self, stream: u16) -> Option<&Channel> {
        self.streams
            .get(&stream)
            .and_then(|id| self.channels.get(id))
    }

    /// Every channel that is not closed, by handle.
    pub fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// `createDataChannel`: a new channel. It opens (event
    /// [`Event::Open`]) once the association is up.
    pub fn create_channel(&mut self, init: ChannelInit) -> Result<ChannelId, Error> {
        let reliability = match (init.max_retransmits, init.max_packet_life_time) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidInit(
                    "maxRetransmits and maxPacketLifeTime are mutually exclusive",
                ));
            }
            (Some(n), None) => Reliability::MaxRetransmits(n),
            (None, Some(ms)) => Reliability::Lifetime(Duration::from_millis(u64::from(ms))),
            (None, None) => Reliability::Reliable,
        };
        if init.label.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidInit("label longer than 65535 bytes"));
        }
        if init.protocol.len() > usize::from(u16::MAX) {
            return Err(Error::InvalidInit("protocol longer than 65535 bytes"));
        }
        if let Some(s) = init.negotiated {
            if s > MAX_STREAM_ID || s >= self.config.max_streams {
                return Err(Error::InvalidInit("negotiated id above the stream limit"));
            }
            if self.streams.contains_key(&s) {
                return Err(Error::IdInUse { stream: s });
            }
        }
        let stream = match (init.negotiated, self.config.role) {
            (Some(s), _) => Some(s),
            (None, Some(role)) => Some(self.free_stream(role)?),
            (None, None) => None,
        };
        let id = ChannelId(self.next_id);
        self.next_id += 1;
        let channel = Channel {
            id,
            stream,
            label: init.label,
            protocol: init.protocol,
            ordered: init.ordered,
            reliability,
            negotiated: init.negotiated.is_some(),
            incoming: false,
            priority: init.priority,
            state: ReadyState::Connecting,
            acked: init.negotiated.is_some(),
            pending: 0,
            in_transport: 0,
            low_threshold: 0,
            reset_out: false,
            reset_out_done: false,
            reset_in: false,
            partial: Vec::new(),
        };
        if let Some(s) = stream {
            self.streams.insert(s, id);
        }
        self.channels.insert(id, channel);
        if self.connected {
            self.open_local(id);
        }
        Ok(id)
    }

    /// Sends a text message (PPID 51; 56 with one zero byte when empty).
    pub fn send_text(&mut self, id: ChannelId, text: &str) -> Result<(), Error> {
        self.send_inner(id, text.as_bytes(), true)
    }

    /// Sends a binary message (PPID 53; 57 with one zero byte when empty).
    pub fn send_binary(&mut self, id: ChannelId, data: &[u8]) -> Result<(), Error> {
        self.send_inner(id, data, false)
    }

    /// Sends a [`Message`].
    pub fn send(&mut self, id: ChannelId, message: &Message) -> Result<(), Error> {
        match message {
            Message::Text(s) => self.send_text(id, s),
            Message::Binary(b) => self.send_binary(id, b),
        }
    }

    fn send_inner(&mut self, id: ChannelId, data: &[u8], text: bool) -> Result<(), Error> {
        let max = self.config.max_message_size;
        let c = self.channels.get_mut(&id).ok_or(Error::UnknownChannel)?;
        if c.state != ReadyState::Open {
            return Err(Error::NotOpen { state: c.state });
        }
        if data.len() > max {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max,
            });
        }
        // An open channel always has a stream (open_local checks).
        let Some(stream) = c.stream else {
            return Err(Error::NotOpen { state: c.state });
        };
        // ANCHOR: send_rules
        // RFC 8831 §6.6: SCTP cannot send an empty user message; an empty
        // one is one zero byte with the "empty" PPID.
        let (ppid, payload) = match (text, data.is_empty()) {
            (true, false) => (Ppid::String, data.to_vec()),
            (false, false) => (Ppid::Binary, data.to_vec()),
            (true, true) => (Ppid::StringEmpty, vec![0]),
            (false, true) => (Ppid::BinaryEmpty, vec![0]),
        };
        c.pending += data.len();
        // RFC 8832 §6: until the ACK arrives, the initiator sends ordered,
        // so that no message can overtake the OPEN.
        let unordered = !c.ordered && c.acked;
        self.outputs.push_back(Output::Message(OutgoingMessage {
            stream,
            ppid,
            data: payload,
            unordered,
            reliability: c.reliability,
        }));
        // ANCHOR_END: send_rules
        Ok(())
    }

    /// `close()`: starts closing the channel by resetting its outgoing
    /// stream (RFC 8831 §6.7), after what is queued on it. Closing a closed
    /// or closing channel does nothing.
    pub fn close(&mut self, id: ChannelId) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        match c.state {
            ReadyState::Closing | ReadyState::Closed => {}
            ReadyState::Connecting => {
                // Nothing went on the wire: closed at once.
                self.finish(id);
            }
            ReadyState::Open => {
                c.state = ReadyState::Closing;
                self.reset_outgoing(id);
            }
        }
    }

    /// W3C `bufferedAmount` (0 for an unknown channel).
    pub fn buffered_amount(&self, id: ChannelId) -> usize {
        self.channels.get(&id).map_or(0, Channel::buffered_amount)
    }

    /// W3C `bufferedAmountLowThreshold`.
    pub fn set_buffered_amount_low_threshold(&mut self, id: ChannelId, threshold: usize) {
        if let Some(c) = self.channels.get_mut(&id) {
            c.low_threshold = threshold;
        }
    }

    /// The next thing to hand to SCTP, in order.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.outputs.pop_front()?;
        if let Output::Message(m) = &out {
            if let Some(id) = self.streams.get(&m.stream) {
                if let Some(c) = self.channels.get_mut(id) {
                    let n = app_len(m);
                    c.pending = c.pending.saturating_sub(n);
                    c.in_transport += n;
                }
            }
        }
        Some(out)
    }

    /// True if [`ChannelManager::poll_output`] has something.
    pub fn has_output(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // ---- inputs from SCTP ------------------------------------------------

    /// The association is established: channels created so far open.
    pub fn handle_connected(&mut self) {
        if self.connected {
            return;
        }
        self.connected = true;
        let waiting: Vec<ChannelId> = self
            .channels
            .values()
            .filter(|c| c.state == ReadyState::Connecting)
            .map(|c| c.id)
            .collect();
        for id in waiting {
            self.open_local(id);
        }
    }

    /// One SCTP user message arrived.
    pub fn handle_message(&mut self, stream: u16, ppid: u32, data: Vec<u8>) {
        let ppid = Ppid::from_u32(ppid);
        if ppid == Ppid::Dcep {
            self.handle_dcep(stream, &data);
            return;
        }
        let Some(&id) = self.streams.get(&stream) else {
            tracing::debug!(
                stream,
                "user message on a stream without a channel: dropped"
            );
            return;
        };
        let max = self.config.max_receive_message_size;
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        // libwebrtc's rule too: user data from the peer means it has our
        // OPEN (it came before on the same ordered stream): an implicit ACK.
        c.acked = true;
        if c.state != ReadyState::Open {
            // W3C: a message on a channel that is not open is discarded.
            return;
        }
        let message = match ppid {
            Ppid::String => match String::from_utf8(data) {
                Ok(s) => Message::Text(s),
                Err(_) => {
                    self.error(Some(id), Error::TextNotUtf8 { stream });
                    return;
                }
            },
            Ppid::Binary => Message::Binary(data),
            Ppid::StringEmpty => Message::Text(String::new()),
            Ppid::BinaryEmpty => Message::Binary(Vec::new()),
            // RFC 8831 §8: 52 and 54 are deprecated; old peers sent a large
            // message as partial pieces ended by one with the plain PPID. We
            // still put them together, up to our size limit.
            Ppid::BinaryPartial | Ppid::StringPartial => {
                if c.partial.len() + data.len() > max {
                    let size = c.partial.len() + data.len();
                    c.partial = Vec::new();
                    self.error(Some(id), Error::MessageTooLarge { size, max });
                } else {
                    c.partial.extend_from_slice(&data);
                }
                return;
            }
            Ppid::Dcep => return, // handled above
            Ppid::Other(p) => {
                self.error(Some(id), Error::UnknownPpid { stream, ppid: p });
                return;
            }
        };
        let message = if c.partial.is_empty() {
            message
        } else {
            let mut whole = std::mem::take(&mut c.partial);
            if whole.len() + message.len() > max {
                let size = whole.len() + message.len();
                self.error(Some(id), Error::MessageTooLarge { size, max });
                return;
            }
            match message {
                Message::Binary(b) => {
                    whole.extend_from_slice(&b);
                    Message::Binary(whole)
                }
                Message::Text(s) => {
                    whole.extend_from_slice(s.as_bytes());
                    match String::from_utf8(whole) {
                        Ok(s) => Message::Text(s),
                        Err(_) => {
                            self.error(Some(id), Error::TextNotUtf8 { stream });
                            return;
                        }
                    }
                }
            }
        };
        self.events.push_back(Event::Message {
            channel: id,
            message,
        });
    }

    fn handle_dcep(&mut self, stream: u16, data: &[u8]) {
        let existing = self.streams.get(&stream).copied();
        match DcepMessage::parse(data) {
            Ok(DcepMessage::Ack) => match existing.and_then(|id| self.channels.get_mut(&id)) {
                Some(c) => c.acked = true,
                None => tracing::debug!(stream, "DATA_CHANNEL_ACK for no channel: ignored"),
            },
            Ok(DcepMessage::Open(open)) => self.handle_open(stream, open, existing),
            Err(e) => {
                // RFC 8832 §6: a malformed OPEN closes the stream, no ACK.
                // (A malformed message on an existing channel's stream is
                // reported but leaves the channel alone.)
                if existing.is_none() && data.first() == Some(&super::dcep::MESSAGE_TYPE_OPEN) {
                    self.refuse(stream);
                }
                self.error(existing, e);
            }
        }
    }

    fn handle_open(&mut self, stream: u16, open: DataChannelOpen, existing: Option<ChannelId>) {
        if existing.is_some() {
            // RFC 8832 §6: an OPEN on a used stream is refused by closing
            // "the corresponding data channel".
            self.error(existing, Error::StreamInUse { stream });
            if let Some(id) = existing {
                self.close(id);
            }
            return;
        }
        // ANCHOR: parity
        // RFC 8832 §6: the DTLS client opens even streams, the server odd
        // ones; the peer's OPEN must be on the peer's parity.
        let ours = match self.config.role {
            Some(Role::Client) => stream % 2 == 0,
            Some(Role::Server) => stream % 2 == 1,
            None => false,
        };
        if ours {
            self.refuse(stream);
            self.error(None, Error::WrongStreamParity { stream });
            return;
        }
        // ANCHOR_END: parity
        // A channel is one stream id used both ways (RFC 8832 §6): an OPEN on
        // a stream we cannot send on (at or above the negotiated stream count,
        // or the reserved 65535) would make a channel whose ACK never leaves.
        if stream > MAX_STREAM_ID || stream >= self.config.max_streams {
            self.refuse(stream);
            self.error(
                None,
                Error::StreamOutOfRange {
                    stream,
                    max_streams: self.config.max_streams,
                },
            );
            return;
        }
        let reliability = match open.channel_type.reliability {
            ReliabilityKind::Reliable => Reliability::Reliable,
            // The W3C API holds a u16; a larger count is as good as reliable.
            ReliabilityKind::PartialRexmit => Reliability::MaxRetransmits(
                u16::try_from(open.reliability_parameter).unwrap_or(u16::MAX),
            ),
            ReliabilityKind::PartialTimed => {
                Reliability::Lifetime(Duration::from_millis(u64::from(open.reliability_parameter)))
            }
        };
        let id = ChannelId(self.next_id);
        self.next_id += 1;
        self.channels.insert(
            id,
            Channel {
                id,
                stream: Some(stream),
                label: open.label,
                protocol: open.protocol,
                ordered: !open.channel_type.unordered,
                reliability,
                negotiated: false,
                incoming: true,
                priority: open.priority,
                state: ReadyState::Open,
                acked: true,
                pending: 0,
                in_transport: 0,
                low_threshold: 0,
                reset_out: false,
                reset_out_done: false,
                reset_in: false,
                partial: Vec::new(),
            },
        );
        self.streams.insert(stream, id);
        // RFC 8832 §6: the ACK goes back on the same stream id.
        self.push_dcep(stream, &DcepMessage::Ack);
        self.events.push_back(Event::Open(id));
    }

    // ANCHOR: streams_reset
    /// The peer reset these of its outgoing streams (our incoming ones): it
    /// is closing those channels (RFC 8831 §6.7). We reset ours in turn.
    pub fn handle_streams_reset(&mut self, streams: &[u16]) {
        for &stream in streams {
            let Some(&id) = self.streams.get(&stream) else {
                continue;
            };
            let Some(c) = self.channels.get_mut(&id) else {
                continue;
            };
            c.reset_in = true;
            let refused = !c.acked;
            match c.state {
                ReadyState::Open | ReadyState::Connecting => {
                    c.state = ReadyState::Closing;
                    if refused {
                        // RFC 8832 §6: a reset with no ACK is the peer's "no".
                        self.error(Some(id), Error::OpenRefused { stream });
                    }
                    self.events.push_back(Event::Closing(id));
                    self.reset_outgoing(id);
                }
                ReadyState::Closing => {
                    if self.channels.get(&id).is_some_and(|c| c.reset_out_done) {
                        self.finish(id);
                    }
                }
                ReadyState::Closed => {}
            }
        }
    }

    // ANCHOR_END: streams_reset

    /// Our reset of these outgoing streams completed.
    pub fn handle_outgoing_streams_reset(&mut self, streams: &[u16]) {
        for &stream in streams {
            let Some(&id) = self.streams.get(&stream) else {
                continue;
            };
            let Some(c) = self.channels.get_mut(&id) else {
                continue;
            };
            c.reset_out_done = true;
            if c.reset_in {
                self.finish(id);
            }
        }
    }

    /// SCTP now buffers `buffered` bytes for `stream` (W3C
    /// `bufferedAmount` goes down as SCTP sends).
    pub fn handle_buffered_amount(&mut self, stream: u16, buffered: usize) {
        let Some(&id) = self.streams.get(&stream) else {
            return;
        };
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        let before = c.buffered_amount();
        c.in_transport = buffered;
        let after = c.buffered_amount();
        if before > c.low_threshold && after <= c.low_threshold {
            self.events.push_back(Event::BufferedAmountLow(id));
        }
    }

    /// The association closed: every channel closes.
    pub fn handle_transport_closed(&mut self) {
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in ids {
            self.finish(id);
        }
        self.connected = false;
    }

    /// The association aborted: every channel gets an error, then closes.
    pub fn handle_transport_aborted(&mut self, reason: &str) {
        let ids: Vec<ChannelId> = self.channels.keys().copied().collect();
        for id in ids {
            self.error(Some(id), Error::TransportAborted(reason.to_owned()));
            self.finish(id);
        }
        self.connected = false;
    }

    // ---- internals --------------------------------------------------------

    /// Lowest free stream id of our parity (RFC 8832 §6).
    fn free_stream(&self, role: Role) -> Result<u16, Error> {
        let first = match role {
            Role::Client => 0u32,
            Role::Server => 1,
        };
        let limit = u32::from(self.config.max_streams).min(u32::from(MAX_STREAM_ID) + 1);
        let mut s = first;
        while s < limit {
            // s < limit <= 65535: fits.
            let s16 = s as u16;
            if !self.streams.contains_key(&s16) {
                return Ok(s16);
            }
            s += 2;
        }
        Err(Error::NoStreamAvailable)
    }

    fn assign_stream_or_fail(&mut self, id: ChannelId) {
        let Some(role) = self.config.role else {
            return;
        };
        match self.free_stream(role) {
            Ok(s) => {
                self.streams.insert(s, id);
                if let Some(c) = self.channels.get_mut(&id) {
                    c.stream = Some(s);
                }
            }
            Err(e) => {
                self.error(Some(id), e);
                self.finish(id);
            }
        }
    }

    /// Our channel opens: send the OPEN (unless negotiated), report Open.
    fn open_local(&mut self, id: ChannelId) {
        if self.channels.get(&id).is_some_and(|c| c.stream.is_none()) {
            self.assign_stream_or_fail(id);
        }
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        let Some(stream) = c.stream else {
            // Still no role: the DTLS role must be set before SCTP connects.
            self.error(
                Some(id),
                Error::InvalidInit("no DTLS role: cannot pick a stream id"),
            );
            self.finish(id);
            return;
        };
        c.state = ReadyState::Open;
        if !c.negotiated {
            let reliability_parameter = match c.reliability {
                Reliability::Reliable => 0,
                Reliability::MaxRetransmits(n) => u32::from(n),
                Reliability::Lifetime(d) => u32::try_from(d.as_millis()).unwrap_or(u32::MAX),
            };
            let kind = match c.reliability {
                Reliability::Reliable => ReliabilityKind::Reliable,
                Reliability::MaxRetransmits(_) => ReliabilityKind::PartialRexmit,
                Reliability::Lifetime(_) => ReliabilityKind::PartialTimed,
            };
            let open = DcepMessage::Open(DataChannelOpen {
                channel_type: ChannelType {
                    reliability: kind,
                    unordered: !c.ordered,
                },
                priority: c.priority,
                reliability_parameter,
                label: c.label.clone(),
                protocol: c.protocol.clone(),
            });
            self.push_dcep(stream, &open);
        }
        self.events.push_back(Event::Open(id));
    }

    /// RFC 8832 §6: DCEP messages go reliable and ordered, with PPID 50.
    fn push_dcep(&mut self, stream: u16, m: &DcepMessage) {
        self.outputs.push_back(Output::Message(OutgoingMessage {
            stream,
            ppid: Ppid::Dcep,
            data: m.to_vec(),
            unordered: false,
            reliability: Reliability::Reliable,
        }));
    }

    /// Refuses a peer's OPEN on a stream with no channel of ours: reset our
    /// outgoing stream of that id, send no ACK (RFC 8832 §6).
    /// Refuses an OPEN by resetting the stream (RFC 8832 §6). A stream we
    /// cannot send on has no outgoing side to reset (RFC 6525 §5.1.2 resets
    /// outgoing streams only, and SCTP refuses the whole request if one id
    /// is out of range): that one is only left unused.
    fn refuse(&mut self, stream: u16) {
        if stream <= MAX_STREAM_ID && stream < self.config.max_streams {
            self.push_reset(stream);
        }
    }

    fn reset_outgoing(&mut self, id: ChannelId) {
        let Some(c) = self.channels.get_mut(&id) else {
            return;
        };
        if c.reset_out {
            return;
        }
        c.reset_out = true;
        if let Some(s) = c.stream {
            self.push_reset(s);
        }
    }

    /// Queues a reset, merged with a reset queued just before (closing many
    /// channels at once costs one RE-CONFIG, not one each).
    fn push_reset(&mut self, stream: u16) {
        if let Some(Output::ResetStreams(v)) = self.outputs.back_mut() {
            if !v.contains(&stream) {
                v.push(stream);
            }
            return;
        }
        self.outputs.push_back(Output::ResetStreams(vec![stream]));
    }

    /// The channel is closed: forget it, free its stream, report Closed.
    fn finish(&mut self, id: ChannelId) {
        if let Some(c) = self.channels.remove(&id) {
            if let Some(s) = c.stream {
                if self.streams.get(&s) == Some(&id) {
                    self.streams.remove(&s);
                }
            }
            self.events.push_back(Event::Closed(id));
        }
    }

    fn error(&mut self, channel: Option<ChannelId>, error: Error) {
        tracing::debug!(?channel, %error, "data channel error");
        self.events.push_back(Event::Error { channel, error });
    }
}

/// The application bytes a message counts for in `bufferedAmount`.
fn app_len(m: &OutgoingMessage) -> usize {
    match m.ppid {
        Ppid::String | Ppid::Binary | Ppid::StringPartial | Ppid::BinaryPartial => m.data.len(),
        _ => 0,
    }
}
