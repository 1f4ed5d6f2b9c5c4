//! Data-channel errors: what the peer sent wrong, and what the API was asked
//! that it cannot do.

use std::fmt;

/// Everything that can go wrong in the `datachannel` module.
///
/// The first group (`Truncated` … `UnknownPpid`) means the *peer*
/// misbehaved; they arrive as [`Event::Error`](super::Event::Error) and
/// never stop the other channels. The second group (`MessageTooLarge` …
/// `InvalidInit`) means the *caller* asked for something impossible; they are
/// returned by the API call. The last group comes from the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A DCEP message ends before a field it needs.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// How many bytes it needed.
        needed: usize,
        /// How many there were.
        got: usize,
    },
    /// A DCEP message's length does not match what its fields say.
    BadLength {
        /// Which message.
        what: &'static str,
        /// The length its fields imply.
        expected: usize,
        /// Its actual length.
        got: usize,
    },
    /// A DCEP message type other than OPEN (0x03) or ACK (0x02).
    UnknownMessageType(u8),
    /// A DATA_CHANNEL_OPEN channel type that RFC 8832 §8.2.2 does not register.
    UnknownChannelType(u8),
    /// A label or protocol that is not UTF-8.
    InvalidUtf8 {
        /// `"label"` or `"protocol"`.
        field: &'static str,
    },
    /// A DATA_CHANNEL_OPEN on a stream whose parity belongs to us
    /// (RFC 8832 §6: the DTLS client opens even streams, the server odd ones).
    WrongStreamParity {
        /// The stream it came on.
        stream: u16,
    },
    /// A DATA_CHANNEL_OPEN on a stream we cannot send on: at or above the
    /// negotiated stream count, or the reserved 65535 (RFC 8832 §6).
    StreamOutOfRange {
        /// The stream it came on.
        stream: u16,
        /// The usable streams are `0..max_streams`.
        max_streams: u16,
    },
    /// A DATA_CHANNEL_OPEN on a stream that already carries a channel.
    StreamInUse {
        /// The stream.
        stream: u16,
    },
    /// A text message (PPID 51) whose bytes are not UTF-8.
    TextNotUtf8 {
        /// The stream it came on.
        stream: u16,
    },
    /// A user message with a PPID that is not a WebRTC one.
    UnknownPpid {
        /// The stream it came on.
        stream: u16,
        /// The PPID.
        ppid: u32,
    },
    /// A message (or a reassembly of deprecated partial messages) larger
    /// than the size limit.
    MessageTooLarge {
        /// Its size in bytes.
        size: usize,
        /// The limit (the peer's `a=max-message-size` when sending).
        max: usize,
    },
    /// Every stream id of our parity below the stream limit is in use.
    NoStreamAvailable,
    /// The pre-negotiated stream id is already used by another channel.
    IdInUse {
        /// The id.
        stream: u16,
    },
    /// No channel has that id (it was never created, or it has closed).
    UnknownChannel,
    /// The channel is not open (W3C `InvalidStateError`).
    NotOpen {
        /// Its state.
        state: super::ReadyState,
    },
    /// The channel options are inconsistent (W3C `TypeError`).
    InvalidInit(&'static str),
    /// The peer refused our DATA_CHANNEL_OPEN (it reset the stream without
    /// an ACK, RFC 8832 §6).
    OpenRefused {
        /// The stream.
        stream: u16,
    },
    /// The SCTP association was aborted.
    TransportAborted(String),
    /// SCTP's send buffer cannot take the message: `queued` bytes wait
    /// of the `limit` the association was configured with.
    SendBufferFull {
        /// Bytes already queued.
        queued: usize,
        /// `sctp::Config::send_buffer`.
        limit: usize,
    },
    /// The SCTP association refused an operation.
    Transport(crate::sctp::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error as E;
        match self {
            E::Truncated { what, needed, got } => {
                write!(f, "DCEP {what} needs {needed} bytes, the message has {got}")
            }
            E::BadLength {
                what,
                expected,
                got,
            } => write!(
                f,
                "{what}: its fields say {expected} bytes, the message has {got}"
            ),
            E::UnknownMessageType(t) => write!(f, "unknown DCEP message type 0x{t:02x}"),
            E::UnknownChannelType(t) => {
                write!(f, "unknown DATA_CHANNEL_OPEN channel type 0x{t:02x}")
            }
            E::InvalidUtf8 { field } => write!(f, "DATA_CHANNEL_OPEN {field} is not UTF-8"),
            E::WrongStreamParity { stream } => write!(
                f,
                "DATA_CHANNEL_OPEN on stream {stream}, whose parity is ours (RFC 8832 §6)"
            ),
            E::StreamOutOfRange {
                stream,
                max_streams,
            } => write!(
                f,
                "DATA_CHANNEL_OPEN on stream {stream}, outside the {max_streams} streams \
                 negotiated (RFC 8832 §6)"
            ),
            E::StreamInUse { stream } => {
                write!(f, "DATA_CHANNEL_OPEN on stream {stream}, already in use")
            }
            E::TextNotUtf8 { stream } => {
                write!(f, "text message on stream {stream} is not UTF-8")
            }
            E::UnknownPpid { stream, ppid } => {
                write!(f, "message with unknown PPID {ppid} on stream {stream}")
            }
            E::MessageTooLarge { size, max } => write!(
                f,
                "message of {size} bytes exceeds the maximum message size of {max} bytes"
            ),
            E::NoStreamAvailable => write!(f, "no free SCTP stream id for a new channel"),
            E::IdInUse { stream } => write!(f, "stream id {stream} is already in use"),
            E::UnknownChannel => write!(f, "no such data channel"),
            E::NotOpen { state } => write!(f, "the data channel is {state}, not open"),
            E::InvalidInit(why) => write!(f, "invalid data channel options: {why}"),
            E::OpenRefused { stream } => write!(
                f,
                "the peer refused the channel on stream {stream} (reset without ACK)"
            ),
            E::TransportAborted(reason) => write!(f, "the SCTP association aborted: {reason}"),
            E::SendBufferFull { queued, limit } => {
                write!(f, "send buffer full ({queued} of {limit} bytes queued)")
            }
            E::Transport(e) => write!(f, "SCTP: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Transport(e) => Some(e),
            _ => None,
        }
    }
}
