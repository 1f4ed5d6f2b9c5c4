//! # Data channels — DCEP over SCTP (RFC 8831, RFC 8832)
//!
//! `RTCDataChannel` is a named, bidirectional message pipe between two
//! peers. All of a peer connection's channels share one SCTP association,
//! which runs inside DTLS (RFC 8261); each channel is one SCTP stream id, used
//! in both directions. A channel is opened in-band with DCEP, the Data
//! Channel Establishment Protocol: the opener sends DATA_CHANNEL_OPEN (label,
//! protocol, ordered or not, how reliable) on a free stream, the other side
//! answers DATA_CHANNEL_ACK on the same stream. Or both sides agree on the
//! stream id beforehand (`negotiated`), and no DCEP is sent at all.
//!
//! ```text
//!   peer A (DTLS client: even ids)                peer B (DTLS server: odd ids)
//!   create_channel("chat") → stream 0
//!     ── DATA (stream 0, PPID 50) DATA_CHANNEL_OPEN "chat" ─────────►  Event::Open (incoming)
//!     ── DATA (stream 0, PPID 51) "hi", ordered (no ACK yet) ───────►  Event::Message
//!     ◄─ DATA (stream 0, PPID 50) DATA_CHANNEL_ACK ─────────────────
//!     ◄─ DATA (stream 0, PPID 53) [binary] ──────────────────────────
//!   close(): RE-CONFIG reset outgoing stream 0 ───────────────────►  Event::Closing
//!     ◄─ RE-CONFIG reset outgoing stream 0 ─────────────────────────
//!   Event::Closed                                                    Event::Closed
//! ```
//!
//! The SCTP payload protocol identifier (PPID) of each user message says what
//! it is: 50 DCEP, 51 text, 53 binary, 56/57 empty text/binary (one zero byte,
//! since SCTP cannot send nothing), 52/54 the deprecated partial pieces.
//!
//! ## What is here
//!
//! - [`dcep`]: the two DCEP messages, the channel types, the PPIDs
//!   (RFC 8832 §5, §8; RFC 8831 §8).
//! - [`ChannelManager`]: every channel of one association at the level of
//!   SCTP user messages, sans-IO and independent of the `sctp` module:
//!   stream-id parity by DTLS role (RFC 8832 §6), the OPEN/ACK handshake with
//!   messages ordered until the ACK (RFC 8832 §6), pre-negotiated channels,
//!   text/binary/empty messages (RFC 8831 §6.6), `max-message-size`, closing
//!   by stream reset (RFC 8831 §6.7), and the W3C `RTCDataChannel`
//!   semantics of `readyState`, `bufferedAmount` and `bufferedamountlow`.
//! - [`Connection`]: an [`sctp::Association`](crate::sctp::Association) and a
//!   `ChannelManager`, sans-IO: SCTP packets (DTLS application data) in and
//!   out, timers, the channel API. What a peer connection owns.
//!
//! ## What is left out
//!
//! Priorities are carried in DCEP but do not change SCTP's scheduling. The
//! deprecated partial PPIDs are reassembled on receipt (bounded) but never
//! sent. `bufferedAmount` counts what SCTP reports for the stream, which
//! includes the few bytes of DCEP messages still in flight.

mod connection;
pub mod dcep;
mod error;
mod manager;

pub use connection::{Connection, ConnectionConfig};

pub use dcep::{DcepMessage, Ppid};
pub use error::Error;
pub use manager::{
    Channel, ChannelId, ChannelInit, ChannelManager, Config, DEFAULT_MAX_MESSAGE_SIZE, Event,
    MAX_STREAM_ID, Message, OutgoingMessage, Output, ReadyState, Reliability,
};

#[cfg(test)]
mod tests;
