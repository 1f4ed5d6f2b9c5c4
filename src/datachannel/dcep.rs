//! DCEP, the Data Channel Establishment Protocol (RFC 8832), and the SCTP
//! payload protocol identifiers of WebRTC data channels (RFC 8831 §8).
//!
//! Two messages, both sent on the channel's own stream with PPID 50:
//!
//! ```text
//! DATA_CHANNEL_OPEN (RFC 8832 §5.1)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Message Type  | Channel Type  |           Priority            |
//! |     0x03      |U| 0 0 0 0 0 kind|                             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Reliability Parameter                      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Label Length          |       Protocol Length         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                     Label (UTF-8, no NUL)                     /
//! \                   Protocol (UTF-8, no NUL)                    /
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! DATA_CHANNEL_ACK (RFC 8832 §5.2)
//! +-+-+-+-+-+-+-+-+
//! | Message Type  |
//! |     0x02      |
//! +-+-+-+-+-+-+-+-+
//! ```

use std::fmt;

use super::Error;

/// RFC 8832 §8.2.1: the DCEP message type of DATA_CHANNEL_ACK.
pub const MESSAGE_TYPE_ACK: u8 = 0x02;
/// RFC 8832 §8.2.1: the DCEP message type of DATA_CHANNEL_OPEN.
pub const MESSAGE_TYPE_OPEN: u8 = 0x03;
/// The fixed part of a DATA_CHANNEL_OPEN, before label and protocol.
pub const OPEN_HEADER_LEN: usize = 12;

/// SCTP payload protocol identifiers of WebRTC (RFC 8831 §8, RFC 8832 §8.1).
///
/// The PPID tells the receiver what a user message is: a DCEP control
/// message, a UTF-8 string or binary data. SCTP cannot carry an empty user
/// message, so an empty string or an empty binary message travels as one
/// zero byte under its own PPID (RFC 8831 §6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ppid {
    /// 50: WebRTC DCEP (DATA_CHANNEL_OPEN, DATA_CHANNEL_ACK).
    Dcep,
    /// 51: WebRTC String, a UTF-8 text message.
    String,
    /// 52: WebRTC Binary Partial (deprecated, RFC 8831 §8): a fragment of a
    /// binary message, from the days before SCTP's explicit EOR.
    BinaryPartial,
    /// 53: WebRTC Binary.
    Binary,
    /// 54: WebRTC String Partial (deprecated, RFC 8831 §8).
    StringPartial,
    /// 56: WebRTC String Empty: an empty text message, sent as one zero byte.
    StringEmpty,
    /// 57: WebRTC Binary Empty: an empty binary message, sent as one zero byte.
    BinaryEmpty,
    /// Any other value (not a WebRTC message; dropped on receipt).
    Other(u32),
}

impl Ppid {
    /// The numeric value on the wire.
    pub fn to_u32(self) -> u32 {
        match self {
            Ppid::Dcep => 50,
            Ppid::String => 51,
            Ppid::BinaryPartial => 52,
            Ppid::Binary => 53,
            Ppid::StringPartial => 54,
            Ppid::StringEmpty => 56,
            Ppid::BinaryEmpty => 57,
            Ppid::Other(v) => v,
        }
    }

    /// The PPID for a value from the wire.
    pub fn from_u32(v: u32) -> Ppid {
        match v {
            50 => Ppid::Dcep,
            51 => Ppid::String,
            52 => Ppid::BinaryPartial,
            53 => Ppid::Binary,
            54 => Ppid::StringPartial,
            56 => Ppid::StringEmpty,
            57 => Ppid::BinaryEmpty,
            v => Ppid::Other(v),
        }
    }
}

/// How a channel retransmits (the low bits of the channel type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReliabilityKind {
    /// Retransmit until acknowledged (channel type 0x00 / 0x80).
    Reliable,
    /// At most `reliability parameter` retransmissions (0x01 / 0x81).
    PartialRexmit,
    /// Retransmit for at most `reliability parameter` milliseconds
    /// (0x02 / 0x82).
    PartialTimed,
}

/// The Channel Type byte of a DATA_CHANNEL_OPEN (RFC 8832 §5.1): a kind of
/// reliability and, in the top bit, unordered delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChannelType {
    /// How messages are retransmitted.
    pub reliability: ReliabilityKind,
    /// RFC 8832 §5.1: the high bit (0x80) asks for unordered delivery.
    pub unordered: bool,
}

impl ChannelType {
    /// The byte on the wire.
    pub fn to_u8(self) -> u8 {
        let kind = match self.reliability {
            ReliabilityKind::Reliable => 0x00,
            ReliabilityKind::PartialRexmit => 0x01,
            ReliabilityKind::PartialTimed => 0x02,
        };
        kind | if self.unordered { 0x80 } else { 0 }
    }

    /// RFC 8832 §8.2.2: the six registered values; anything else is refused.
    pub fn from_u8(b: u8) -> Option<ChannelType> {
        let reliability = match b & 0x7f {
            0x00 => ReliabilityKind::Reliable,
            0x01 => ReliabilityKind::PartialRexmit,
            0x02 => ReliabilityKind::PartialTimed,
            _ => return None,
        };
        Some(ChannelType {
            reliability,
            unordered: b & 0x80 != 0,
        })
    }
}

/// The priorities of RFC 8832 §5.1 (any `u16` is allowed on the wire; these
/// are the values the W3C API maps its four levels to).
pub mod priority {
    /// "very-low" (W3C) / below normal.
    pub const BELOW_NORMAL: u16 = 128;
    /// "low" (the W3C default) / normal.
    pub const NORMAL: u16 = 256;
    /// "medium" / high.
    pub const HIGH: u16 = 512;
    /// "high" / extra high.
    pub const EXTRA_HIGH: u16 = 1024;
}

/// A DATA_CHANNEL_OPEN message (RFC 8832 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DataChannelOpen {
    /// Ordered or not, and how reliable.
    pub channel_type: ChannelType,
    /// The channel's priority (see [`priority`]).
    pub priority: u16,
    /// Retransmissions (PartialRexmit) or milliseconds (PartialTimed);
    /// ignored for reliable channels (RFC 8832 §5.1), but kept as sent.
    pub reliability_parameter: u32,
    /// The channel's name; may be empty.
    pub label: String,
    /// The subprotocol (an IANA WebSocket subprotocol name); may be empty.
    pub protocol: String,
}

/// A DCEP message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DcepMessage {
    /// DATA_CHANNEL_OPEN: "please open a channel on this stream".
    Open(DataChannelOpen),
    /// DATA_CHANNEL_ACK: "opened".
    Ack,
}

impl DcepMessage {
    /// Parses one DCEP message (the whole payload of one SCTP user message
    /// with PPID 50).
    ///
    /// Strict: an OPEN whose lengths do not add up exactly, an unknown
    /// message or channel type, or a label or protocol that is not UTF-8 is
    /// refused (RFC 8832 §6: an OPEN that "is not well formed" is rejected).
    pub fn parse(buf: &[u8]) -> Result<DcepMessage, Error> {
        let Some(&typ) = buf.first() else {
            return Err(Error::Truncated {
                what: "DCEP message type",
                needed: 1,
                got: 0,
            });
        };
        match typ {
            // RFC 8832 §5.2: the ACK is the message type alone. pion 3.1
            // pads it to 4 bytes (zeros); the ACK carries nothing else, so
            // bytes after the type are ignored rather than failing the
            // channel (tests/interop_pion.rs).
            MESSAGE_TYPE_ACK => Ok(DcepMessage::Ack),
            MESSAGE_TYPE_OPEN => DataChannelOpen::parse(buf).map(DcepMessage::Open),
            other => Err(Error::UnknownMessageType(other)),
        }
    }

    /// Appends the message to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            DcepMessage::Ack => out.push(MESSAGE_TYPE_ACK),
            DcepMessage::Open(open) => open.emit(out),
        }
    }

    /// The message as a new buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }
}

// ANCHOR: decode_open
impl DataChannelOpen {
    fn parse(buf: &[u8]) -> Result<DataChannelOpen, Error> {
        if buf.len() < OPEN_HEADER_LEN {
            return Err(Error::Truncated {
                what: "DATA_CHANNEL_OPEN header",
                needed: OPEN_HEADER_LEN,
                got: buf.len(),
            });
        }
        let channel_type = ChannelType::from_u8(buf[1]).ok_or(Error::UnknownChannelType(buf[1]))?;
        let priority = u16::from_be_bytes([buf[2], buf[3]]);
        let reliability_parameter = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let label_len = usize::from(u16::from_be_bytes([buf[8], buf[9]]));
        let protocol_len = usize::from(u16::from_be_bytes([buf[10], buf[11]]));
        let expected = OPEN_HEADER_LEN + label_len + protocol_len;
        if buf.len() != expected {
            return Err(Error::BadLength {
                what: "DATA_CHANNEL_OPEN (12 + label length + protocol length)",
                expected,
                got: buf.len(),
            });
        }
        let label_end = OPEN_HEADER_LEN + label_len;
        let label = std::str::from_utf8(&buf[OPEN_HEADER_LEN..label_end])
            .map_err(|_| Error::InvalidUtf8 { field: "label" })?;
        let protocol = std::str::from_utf8(&buf[label_end..])
            .map_err(|_| Error::InvalidUtf8 { field: "protocol" })?;
        Ok(DataChannelOpen {
            channel_type,
            priority,
            reliability_parameter,
            label: label.to_owned(),
            protocol: protocol.to_owned(),
        })
    }
    // ANCHOR_END: decode_open

    /// Appends the message to `out`. Label and protocol longer than 65,535
    /// bytes cannot be expressed; the channel manager refuses them before
    /// they get here, and this encoder truncates them (at a character
    /// boundary) rather than write a wrong length.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let label = truncate_utf8(&self.label, usize::from(u16::MAX));
        let protocol = truncate_utf8(&self.protocol, usize::from(u16::MAX));
        out.reserve(OPEN_HEADER_LEN + label.len() + protocol.len());
        out.push(MESSAGE_TYPE_OPEN);
        out.push(self.channel_type.to_u8());
        out.extend_from_slice(&self.priority.to_be_bytes());
        out.extend_from_slice(&self.reliability_parameter.to_be_bytes());
        // Both lengths fit: truncated to u16::MAX above.
        out.extend_from_slice(&(label.len() as u16).to_be_bytes());
        out.extend_from_slice(&(protocol.len() as u16).to_be_bytes());
        out.extend_from_slice(label.as_bytes());
        out.extend_from_slice(protocol.as_bytes());
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl fmt::Display for DcepMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DcepMessage::Ack => write!(f, "DATA_CHANNEL_ACK"),
            DcepMessage::Open(o) => {
                let kind = match o.channel_type.reliability {
                    ReliabilityKind::Reliable => "reliable".to_string(),
                    ReliabilityKind::PartialRexmit => {
                        format!("max {} retransmissions", o.reliability_parameter)
                    }
                    ReliabilityKind::PartialTimed => {
                        format!("lifetime {} ms", o.reliability_parameter)
                    }
                };
                write!(
                    f,
                    "DATA_CHANNEL_OPEN label {:?} protocol {:?}, {}, {}, priority {}",
                    o.label,
                    o.protocol,
                    if o.channel_type.unordered {
                        "unordered"
                    } else {
                        "ordered"
                    },
                    kind,
                    o.priority
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_encodes_as_rfc8832_draws_it() {
        let open = DataChannelOpen {
            channel_type: ChannelType {
                reliability: ReliabilityKind::PartialRexmit,
                unordered: true,
            },
            priority: priority::NORMAL,
            reliability_parameter: 3,
            label: "chat".into(),
            protocol: "x".into(),
        };
        let bytes = DcepMessage::Open(open.clone()).to_vec();
        assert_eq!(
            bytes,
            [
                0x03, 0x81, 0x01, 0x00, 0, 0, 0, 3, 0, 4, 0, 1, b'c', b'h', b'a', b't', b'x'
            ]
        );
        assert_eq!(DcepMessage::parse(&bytes), Ok(DcepMessage::Open(open)));
        assert_eq!(DcepMessage::parse(&[0x02]), Ok(DcepMessage::Ack));
    }

    #[test]
    fn channel_types_are_the_six_registered_values() {
        let mut known = Vec::new();
        for b in 0..=255u8 {
            if let Some(t) = ChannelType::from_u8(b) {
                assert_eq!(t.to_u8(), b);
                known.push(b);
            }
        }
        assert_eq!(known, [0x00, 0x01, 0x02, 0x80, 0x81, 0x82]);
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert!(matches!(
            DcepMessage::parse(&[]),
            Err(Error::Truncated { .. })
        ));
        assert_eq!(
            DcepMessage::parse(&[0x01]),
            Err(Error::UnknownMessageType(1))
        );
        // pion's padded ACK reads as an ACK.
        assert_eq!(DcepMessage::parse(&[0x02, 0, 0, 0]), Ok(DcepMessage::Ack));
        assert!(matches!(
            DcepMessage::parse(&[0x03, 0, 1, 0, 0, 0, 0, 0, 0, 5]),
            Err(Error::Truncated { .. })
        ));
        // Label length past the end.
        assert!(matches!(
            DcepMessage::parse(&[0x03, 0, 1, 0, 0, 0, 0, 0, 0, 5, 0, 0, b'a']),
            Err(Error::BadLength { expected: 17, .. })
        ));
        assert_eq!(
            DcepMessage::parse(&[0x03, 0x03, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::UnknownChannelType(3))
        );
        assert_eq!(
            DcepMessage::parse(&[0x03, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0xff]),
            Err(Error::InvalidUtf8 { field: "label" })
        );
        assert_eq!(
            DcepMessage::parse(&[0x03, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xc3]),
            Err(Error::InvalidUtf8 { field: "protocol" })
        );
    }

    #[test]
    fn ppids_round_trip() {
        for v in [50, 51, 52, 53, 54, 55, 56, 57, 0, 1_000_000] {
            assert_eq!(Ppid::from_u32(v).to_u32(), v);
        }
        assert_eq!(Ppid::from_u32(55), Ppid::Other(55));
    }

    #[test]
    fn overlong_label_is_truncated_at_a_char_boundary() {
        let open = DataChannelOpen {
            channel_type: ChannelType::from_u8(0).unwrap(),
            priority: 256,
            reliability_parameter: 0,
            label: "é".repeat(40_000),
            protocol: String::new(),
        };
        let bytes = DcepMessage::Open(open).to_vec();
        let Ok(DcepMessage::Open(back)) = DcepMessage::parse(&bytes) else {
            panic!("does not decode");
        };
        assert_eq!(back.label.len(), 65_534);
    }

    fn arb_open() -> impl Strategy<Value = DataChannelOpen> {
        (
            prop::sample::select(vec![0u8, 1, 2, 0x80, 0x81, 0x82]),
            any::<u16>(),
            any::<u32>(),
            ".{0,40}",
            ".{0,20}",
        )
            .prop_map(|(t, priority, p, label, protocol)| DataChannelOpen {
                channel_type: ChannelType::from_u8(t).expect("registered value"),
                priority,
                reliability_parameter: p,
                label,
                protocol,
            })
    }

    proptest! {
        #[test]
        fn dcep_round_trips(open in arb_open(), ack in any::<bool>()) {
            let m = if ack { DcepMessage::Ack } else { DcepMessage::Open(open) };
            let bytes = m.to_vec();
            prop_assert_eq!(DcepMessage::parse(&bytes), Ok(m));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(m) = DcepMessage::parse(&bytes) {
                // What parses re-encodes to the same bytes (the codec is
                // strict), except an ACK's padding (pion pads it), dropped.
                if matches!(m, DcepMessage::Ack) {
                    prop_assert_eq!(bytes.first(), Some(&2));
                    prop_assert_eq!(m.to_vec(), vec![2]);
                } else {
                    prop_assert_eq!(m.to_vec(), bytes);
                }
            }
        }

        #[test]
        fn open_prefixes_never_panic(open in arb_open(), cut in any::<prop::sample::Index>()) {
            let bytes = DcepMessage::Open(open).to_vec();
            let cut = cut.index(bytes.len());
            prop_assert!(DcepMessage::parse(&bytes[..cut]).is_err());
        }
    }
}
