//! # SCTP over DTLS — the transport under data channels
//!
//! SCTP (RFC 9260) gives WebRTC data channels what UDP lacks: messages
//! instead of datagrams, many independent streams in one association,
//! reliable or partially reliable delivery (RFC 3758), ordered or unordered,
//! congestion control that shares the path fairly, and stream reset to close
//! a channel (RFC 6525). In WebRTC each SCTP packet rides in one DTLS record
//! (RFC 8261): no IP, no ports to bind, one path, no multi-homing.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     Source Port Number        |     Destination Port Number   |  5000 / 5000
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Verification Tag                         |  the receiver's initiate tag
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Checksum                            |  CRC32c
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  chunk: type, flags, length, value … (padded to 4 bytes)     |  DATA, SACK, INIT, …
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  chunk …                                                      |
//! ```
//!
//! The [`Association`] is sans-IO like every machine in rtclab: feed it
//! packets ([`Association::handle_packet`]) and time, drain
//! [`Association::poll_transmit`] and [`Association::poll_event`].
//! [`crate::sim::sctp::SimHost`] wraps one as a
//! [`Machine`](crate::machine::Machine) that sends each SCTP packet as a UDP
//! datagram, for the simulator.
//!
//! ## Implemented
//!
//! - RFC 9260: common header and CRC32c (§3.1, §6.8); every chunk of §3.3;
//!   the four-way handshake with an HMAC-SHA256 state cookie, no state kept
//!   before COOKIE ECHO (§5.1), INIT collision (§5.2.1, §5.2.4 cases B and
//!   D); verification tags (§8.5) and out-of-the-blue packets (§8.4);
//!   unknown chunks and parameters by their upper two bits (§3.2, §3.2.1);
//!   TSN/SSN tracking, SACK with gap blocks and duplicates, delayed SACK
//!   every second packet or 200 ms (§6.2); the I bit both ways (§3.3.1,
//!   from RFC 7053): set on the last chunk before we must wait for a SACK,
//!   honoured on receipt; RTO per RFC 6298 (§6.3), measured on the chunk
//!   the peer SACKs at once; fast
//!   retransmit and fast recovery (§7.2.4); slow start, congestion avoidance,
//!   cwnd, ssthresh, partial_bytes_acked (§7.2); the peer's rwnd with
//!   zero-window probing (§6.1); our receive window as a hard bound on
//!   what we hold, for every DATA chunk: past it, only the chunk that
//!   fills the hole at the cumulative TSN is taken (§6.2), and each held
//!   message or fragment run costs 64 bytes of it besides its data;
//!   bundling up to the MTU (§6.10); fragmentation and bounded reassembly
//!   (§6.9: at most 4096 runs, and runs that can no longer complete are
//!   dropped once the cumulative TSN passes them); ordered and unordered
//!   delivery (§6.6); idle HEARTBEAT (§8.3); graceful shutdown (§9.2) and
//!   ABORT (§9.1).
//! - RFC 3758: FORWARD TSN, abandoning by retransmission count and by
//!   lifetime.
//! - RFC 6525: outgoing SSN reset request and its response, both ways.
//! - RFC 8260: I-DATA and I-FORWARD-TSN as wire types (codec only); the
//!   round-robin stream scheduler of §3.2 (by whole message, since DATA
//!   fragments of one message take consecutive TSNs).
//!
//! ## Left out
//!
//! Reneging (§6.2: we never drop data we acknowledged in a gap block, and
//! our sender does not look for a peer that does), multi-homing and path
//! management (one path: DTLS), association restart
//! (§5.2.4 case A: an INIT in ESTABLISHED is ignored), ECN, AUTH (RFC 4895),
//! the RFC 6525 SSN/TSN reset and add-streams requests (answered "denied"
//! by omission: they are unknown parameters), stream schedulers other than
//! round robin (no priorities), and I-DATA in the association (not advertised, so a peer
//! never sends it; browsers do not negotiate it for data channels either).

mod association;
pub mod chunk;
pub mod congestion;
pub mod packet;
pub mod param;
mod rack;
mod receive;
mod reset;
mod rto;
mod send_queue;
mod timer;

pub use association::{Association, Stats};
pub use chunk::Chunk;
pub use packet::{CommonHeader, Packet};

use std::fmt;
use std::time::Duration;

/// Association states (RFC 9260 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No association (also the state of a passive side waiting for INIT: no
    /// state is kept before a valid COOKIE ECHO).
    Closed,
    /// INIT sent, waiting for INIT ACK.
    CookieWait,
    /// COOKIE ECHO sent, waiting for COOKIE ACK.
    CookieEchoed,
    /// Up: data flows both ways.
    Established,
    /// The user asked to shut down; waiting for outstanding data to be acked.
    ShutdownPending,
    /// SHUTDOWN sent.
    ShutdownSent,
    /// The peer sent SHUTDOWN; finishing our outstanding data.
    ShutdownReceived,
    /// SHUTDOWN ACK sent.
    ShutdownAckSent,
}

/// How hard to try to deliver a message (RFC 3758 PR-SCTP; the reliability
/// of an `RTCDataChannel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reliability {
    /// Retransmit until acknowledged.
    #[default]
    Reliable,
    /// Retransmit at most this many times, then abandon (`maxRetransmits`).
    MaxRetransmits(u16),
    /// Abandon once this long has passed since `send` (`maxPacketLifeTime`).
    Lifetime(Duration),
}

/// Options of one [`Association::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    /// Deliver as soon as complete, not in stream order (the U bit).
    pub unordered: bool,
    /// Partial reliability.
    pub reliability: Reliability,
}

/// What happened, for the user of an [`Association`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The association is established (once, on either side).
    Connected,
    /// A whole user message.
    Message {
        /// Stream identifier.
        stream: u16,
        /// Payload protocol identifier.
        ppid: u32,
        /// The message.
        data: Vec<u8>,
    },
    /// The peer reset these incoming streams (a channel was closed); their
    /// sequence numbers start again at 0.
    StreamsReset {
        /// The streams (empty: all).
        streams: Vec<u16>,
    },
    /// Our reset request for these outgoing streams completed.
    OutgoingStreamsReset {
        /// The streams.
        streams: Vec<u16>,
    },
    /// Data on this stream was acknowledged or abandoned.
    BufferedAmountDecreased {
        /// Stream identifier.
        stream: u16,
        /// Bytes still queued on the stream.
        buffered: usize,
    },
    /// The association closed gracefully (SHUTDOWN sequence).
    Closed,
    /// The association ended abruptly: ABORT from the peer or from us, too
    /// many retransmissions, a protocol violation.
    Aborted {
        /// Why, readable.
        reason: String,
    },
}

/// Settings of an association.
#[derive(Debug, Clone)]
pub struct Config {
    /// Our SCTP port (WebRTC: 5000 unless `a=sctp-port` says otherwise).
    pub local_port: u16,
    /// The peer's SCTP port.
    pub remote_port: u16,
    /// Largest SCTP packet we send (common header included). 1200 keeps a
    /// DTLS record plus UDP/IP under common path MTUs, as browsers do.
    pub mtu: usize,
    /// Largest user message, both ways (`a=max-message-size`, default 256
    /// KiB): `send` refuses bigger ones and reassembly aborts past it.
    pub max_message_size: usize,
    /// Our receive window (a_rwnd): bytes we buffer for reassembly and
    /// ordering (64 more per message or fragment run held, for its
    /// bookkeeping). It bounds the receiver's memory and the sender's
    /// flight: past it, only a DATA chunk that fills the hole at the
    /// cumulative TSN + 1 is accepted (RFC 9260 §6.2), within
    /// [`Association::receive_limit`](crate::sctp::Association::receive_limit).
    /// Keep it above `max_message_size`: a message is delivered only whole.
    pub receive_window: u32,
    /// Most bytes `send` may queue (unsent plus unacknowledged) before it
    /// returns [`Error::BufferFull`].
    pub send_buffer: usize,
    /// Initial RTO.
    pub rto_initial: Duration,
    /// Lowest RTO.
    pub rto_min: Duration,
    /// Highest RTO.
    pub rto_max: Duration,
    /// Most packets of new data sent in answer to one input (RFC 9260 §7.2.4 Max.Burst).
    pub max_burst: usize,
    /// Outbound streams we ask for and inbound streams we allow.
    pub streams: u16,
    /// INIT / COOKIE ECHO retransmissions before giving up.
    pub max_init_retransmits: u32,
    /// Consecutive retransmission timeouts before the association is
    /// declared dead (Association.Max.Retrans).
    pub max_retransmits: u32,
    /// How long a state cookie stays valid.
    pub cookie_lifetime: Duration,
    /// Delay before a SACK for a lone packet.
    pub delayed_sack: Duration,
    /// Idle interval between HEARTBEATs (`None`: never send any).
    pub heartbeat_interval: Option<Duration>,
}

impl Default for Config {
    /// WebRTC defaults. The timers are chosen for real time:
    /// `rto_initial` 500 ms (the handshake rides an already working DTLS
    /// path, so RFC 9260's 1 s is too cautious), `rto_min` 100 ms (RFC
    /// 9260's 1 s minimum is far too slow for interactive data; going below
    /// the peer's 200 ms delayed SACK is safe because the last DATA chunk
    /// before we go quiet carries the I bit, so its SACK is never held
    /// back, see `emit_data_chunks`), `rto_max` 10 s (a peer silent for
    /// that long is as good as gone for a call; RFC 9260 says 60 s).
    fn default() -> Self {
        Config {
            local_port: 5000,
            remote_port: 5000,
            mtu: 1200,
            max_message_size: 256 * 1024,
            receive_window: 4 * 1024 * 1024,
            send_buffer: 16 * 1024 * 1024,
            rto_initial: Duration::from_millis(500),
            rto_min: Duration::from_millis(100),
            rto_max: Duration::from_secs(10),
            max_burst: 4,
            streams: 1024,
            max_init_retransmits: 8,
            max_retransmits: 10,
            cookie_lifetime: Duration::from_secs(60),
            delayed_sack: Duration::from_millis(200),
            heartbeat_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// Errors of the SCTP layer: malformed input from the network, and API misuse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Input ended early.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        got: usize,
    },
    /// A length field is impossible.
    BadLength {
        /// Which structure.
        what: &'static str,
        /// Offset of the structure.
        offset: usize,
        /// The length it claimed.
        length: usize,
    },
    /// CRC32c mismatch.
    BadChecksum {
        /// Checksum in the packet.
        have: u32,
        /// Checksum of the packet.
        want: u32,
    },
    /// A mandatory parameter is missing.
    MissingParameter {
        /// In which chunk.
        chunk: &'static str,
        /// Which parameter.
        param: &'static str,
    },
    /// The association is not in a state that allows this call.
    InvalidState(State),
    /// A message larger than `max_message_size`.
    MessageTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// SCTP cannot carry an empty message (RFC 9260 §3.3.1); data channels
    /// send one byte with an "empty" PPID instead (RFC 8831 §6.6).
    EmptyMessage,
    /// The stream is not one of the negotiated outbound streams.
    InvalidStream(u16),
    /// The stream is being reset; send again after `OutgoingStreamsReset`.
    StreamResetting(u16),
    /// The send buffer is full (`Config::send_buffer`).
    BufferFull,
    /// The peer did not announce RE-CONFIG support.
    ResetNotSupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated { what, needed, got } => {
                write!(f, "{what} truncated: need {needed} bytes, have {got}")
            }
            Error::BadLength {
                what,
                offset,
                length,
            } => write!(f, "{what} at offset {offset} has bad length {length}"),
            Error::BadChecksum { have, want } => write!(
                f,
                "bad CRC32c: packet says {have:#010x}, computed {want:#010x}"
            ),
            Error::MissingParameter { chunk, param } => {
                write!(f, "{chunk} lacks mandatory {param}")
            }
            Error::InvalidState(s) => write!(f, "not allowed in state {s:?}"),
            Error::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds max message size {max}")
            }
            Error::EmptyMessage => write!(f, "SCTP cannot send an empty message"),
            Error::InvalidStream(s) => write!(
                f,
                "stream {s} is not an outbound stream of this association"
            ),
            Error::StreamResetting(s) => write!(f, "stream {s} is being reset"),
            Error::BufferFull => write!(f, "send buffer full"),
            Error::ResetNotSupported => {
                write!(f, "peer does not support stream reset (RE-CONFIG)")
            }
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests;
