//! ChannelData (RFC 8656 §12.4): the 4-byte framing that carries data between
//! a client and its TURN server once a channel is bound, instead of a 36-byte
//! (IPv4) Send or Data indication.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |         Channel Number        |            Length             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! /                       Application Data                        /
//! +-------------------------------+-------------------------------+
//! ```
//!
//! The padding rule, exactly: `Length` counts the application data only,
//! never the padding. Over TCP (and TLS) the message is padded to a multiple
//! of 4 bytes so that the next message starts aligned; over UDP the padding
//! "is not required but MAY be included" (RFC 8656 §12.5). So a UDP receiver
//! accepts a datagram of `4 + Length` bytes or more (the extra bytes are
//! padding, ignored), and discards one shorter than `4 + Length` (§12.6).
//! rtclab writes no padding over UDP, and pads when asked for a stream.

use std::fmt;

/// RFC 8656 §12: the first channel number a client may bind.
pub const MIN_CHANNEL: u16 = 0x4000;
/// RFC 8656 §12: the last (0x5000–0xFFFF are reserved; RFC 5766 allowed up to 0x7FFF).
pub const MAX_CHANNEL: u16 = 0x4FFF;

/// RFC 5766 §11: the older, wider range (0x4000–0x7FFF) that deployed
/// clients still use (coturn's `turnutils_uclient` picks channels up to
/// 0x7FFF). rtclab's server accepts it; its client binds only RFC 8656's.
pub const MAX_CHANNEL_RFC5766: u16 = 0x7FFF;

/// Whether `n` is a channel number a client may bind (RFC 8656 §12).
pub fn is_valid_channel(n: u16) -> bool {
    (MIN_CHANNEL..=MAX_CHANNEL).contains(&n)
}

/// Whether `n` is in RFC 5766's channel range (0x4000–0x7FFF).
pub fn is_valid_channel_rfc5766(n: u16) -> bool {
    (MIN_CHANNEL..=MAX_CHANNEL_RFC5766).contains(&n)
}

/// Like [`is_channel_data`] for RFC 5766's range: first byte 0x40–0x7F. Only
/// for a socket that carries nothing but STUN and TURN (a TURN server's).
pub fn is_channel_data_rfc5766(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| (0x40..=0x7F).contains(b))
}

/// RFC 7983 / RFC 8656 §12: a datagram whose first byte is 0x40–0x4F is
/// ChannelData (STUN starts 0x00–0x03).
pub fn is_channel_data(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| (0x40..=0x4F).contains(b))
}

/// Why bytes are not a ChannelData message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelDataError {
    /// The channel number is outside 0x4000–0x4FFF.
    BadChannel(u16),
    /// Fewer than the 4 header bytes (`what` is `"header"`), or fewer bytes
    /// after the header than `Length` says (`"data"`).
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed: 4 for the header, else what the length field claims
        /// (with padding, in a stream).
        needed: usize,
        /// Bytes there (after the header, for the data).
        got: usize,
    },
    /// A UDP datagram holds more than the message and its (at most 3 bytes
    /// of) padding.
    TooLong,
    /// API misuse: the data does not fit the 16-bit length.
    DataTooLong(usize),
}

impl fmt::Display for ChannelDataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelDataError::BadChannel(c) => {
                write!(f, "ChannelData channel 0x{c:04x} outside 0x4000-0x4FFF")
            }
            ChannelDataError::Truncated { what, needed, got } => {
                write!(f, "ChannelData {what} needs {needed} bytes, {got} there")
            }
            ChannelDataError::TooLong => {
                write!(f, "ChannelData datagram longer than its padded length")
            }
            ChannelDataError::DataTooLong(n) => {
                write!(f, "{n} bytes do not fit one ChannelData message")
            }
        }
    }
}

impl std::error::Error for ChannelDataError {}

/// A ChannelData message, its data borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// The channel number (0x4000–0x4FFF).
    pub channel: u16,
    /// The application data, without padding.
    pub data: &'a [u8],
}

impl<'a> ChannelData<'a> {
    /// Decodes a ChannelData message received in one UDP datagram (RFC 8656
    /// §12.6): at least `4 + Length` bytes; up to 3 bytes of padding after
    /// the data are accepted and ignored, anything more is refused.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ChannelDataError> {
        Self::parse_range(buf, MAX_CHANNEL)
    }

    /// As [`ChannelData::parse`], accepting RFC 5766's channels up to 0x7FFF.
    pub fn parse_rfc5766(buf: &'a [u8]) -> Result<Self, ChannelDataError> {
        Self::parse_range(buf, MAX_CHANNEL_RFC5766)
    }

    fn parse_range(buf: &'a [u8], max: u16) -> Result<Self, ChannelDataError> {
        if buf.len() < 4 {
            return Err(ChannelDataError::Truncated {
                what: "header",
                needed: 4,
                got: buf.len(),
            });
        }
        let channel = u16::from_be_bytes([buf[0], buf[1]]);
        if !(MIN_CHANNEL..=max).contains(&channel) {
            return Err(ChannelDataError::BadChannel(channel));
        }
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let available = buf.len() - 4;
        if available < length {
            return Err(ChannelDataError::Truncated {
                what: "data",
                needed: length,
                got: available,
            });
        }
        if available > length + crate::stun::attributes::padding(length) {
            return Err(ChannelDataError::TooLong);
        }
        Ok(ChannelData {
            channel,
            data: &buf[4..4 + length],
        })
    }

    /// Decodes the first ChannelData message of a stream buffer (TCP/TLS):
    /// returns it and the number of bytes it used, padding included.
    pub fn parse_stream(buf: &'a [u8]) -> Result<(Self, usize), ChannelDataError> {
        if buf.len() < 4 {
            return Err(ChannelDataError::Truncated {
                what: "header",
                needed: 4,
                got: buf.len(),
            });
        }
        let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let used = 4 + length + crate::stun::attributes::padding(length);
        let end = used.min(buf.len());
        let cd = Self::parse(&buf[..end])?;
        if buf.len() < used {
            return Err(ChannelDataError::Truncated {
                what: "data",
                needed: used - 4,
                got: buf.len() - 4,
            });
        }
        Ok((cd, used))
    }

    /// Appends the message, unpadded (UDP, RFC 8656 §12.5).
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<usize, ChannelDataError> {
        self.emit_with(out, false)
    }

    /// Appends the message padded to a multiple of 4 bytes (TCP/TLS, and
    /// allowed over UDP).
    pub fn emit_padded(&self, out: &mut Vec<u8>) -> Result<usize, ChannelDataError> {
        self.emit_with(out, true)
    }

    /// Writing accepts RFC 5766's range too (0x4000–0x7FFF), so that a
    /// server can answer an older client on the channel it bound.
    fn emit_with(&self, out: &mut Vec<u8>, pad: bool) -> Result<usize, ChannelDataError> {
        let len = u16::try_from(self.data.len())
            .map_err(|_| ChannelDataError::DataTooLong(self.data.len()))?;
        if !is_valid_channel_rfc5766(self.channel) {
            return Err(ChannelDataError::BadChannel(self.channel));
        }
        let start = out.len();
        out.extend_from_slice(&self.channel.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(self.data);
        if pad {
            let p = crate::stun::attributes::padding(self.data.len());
            out.resize(out.len() + p, 0);
        }
        Ok(out.len() - start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_layout() {
        let mut out = Vec::new();
        ChannelData {
            channel: 0x4001,
            data: b"hello",
        }
        .emit(&mut out)
        .unwrap();
        assert_eq!(out, b"\x40\x01\x00\x05hello");
        out.clear();
        ChannelData {
            channel: 0x4001,
            data: b"hello",
        }
        .emit_padded(&mut out)
        .unwrap();
        assert_eq!(out, b"\x40\x01\x00\x05hello\0\0\0");
    }

    #[test]
    fn padding_rule_over_udp() {
        // Unpadded and padded both decode; the length counts no padding.
        for buf in [
            &b"\x40\x00\x00\x05hello"[..],
            &b"\x40\x00\x00\x05hello\0\0\0"[..],
        ] {
            let cd = ChannelData::parse(buf).unwrap();
            assert_eq!(cd.data, b"hello");
        }
        assert_eq!(
            ChannelData::parse(b"\x40\x00\x00\x05hell"),
            Err(ChannelDataError::Truncated {
                what: "data",
                needed: 5,
                got: 4
            })
        );
        assert_eq!(
            ChannelData::parse(b"\x40\x00\x00\x05hello\0\0\0\0"),
            Err(ChannelDataError::TooLong)
        );
        assert_eq!(
            ChannelData::parse(b"\x50\x00\x00\x00"),
            Err(ChannelDataError::BadChannel(0x5000))
        );
        assert!(ChannelData::parse_rfc5766(b"\x7f\xff\x00\x00").is_ok());
        assert!(ChannelData::parse_rfc5766(b"\x80\x00\x00\x00").is_err());
        // A server answers an RFC 5766 client on its channel.
        let mut out = Vec::new();
        ChannelData {
            channel: 0x7FFF,
            data: b"x",
        }
        .emit(&mut out)
        .unwrap();
        assert_eq!(ChannelData::parse_rfc5766(&out).unwrap().channel, 0x7FFF);
        assert_eq!(
            ChannelData {
                channel: 0x3FFF,
                data: b""
            }
            .emit(&mut Vec::new()),
            Err(ChannelDataError::BadChannel(0x3FFF))
        );
    }

    #[test]
    fn stream_decoding_steps_over_padding() {
        let mut out = Vec::new();
        ChannelData {
            channel: 0x4000,
            data: b"abc",
        }
        .emit_padded(&mut out)
        .unwrap();
        ChannelData {
            channel: 0x4FFF,
            data: b"defgh",
        }
        .emit_padded(&mut out)
        .unwrap();
        let (a, n) = ChannelData::parse_stream(&out).unwrap();
        assert_eq!((a.channel, a.data, n), (0x4000, &b"abc"[..], 8));
        let (b, m) = ChannelData::parse_stream(&out[n..]).unwrap();
        assert_eq!((b.channel, b.data, m), (0x4FFF, &b"defgh"[..], 12));
        assert!(ChannelData::parse_stream(&out[..7]).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(channel in MIN_CHANNEL..=MAX_CHANNEL, data in proptest::collection::vec(any::<u8>(), 0..1500), pad in any::<bool>()) {
            let mut out = Vec::new();
            let cd = ChannelData { channel, data: &data };
            let n = if pad { cd.emit_padded(&mut out) } else { cd.emit(&mut out) }.unwrap();
            prop_assert_eq!(n, out.len());
            prop_assert_eq!(out.len() % 4 == 0 || !pad, true);
            prop_assert!(is_channel_data(&out));
            prop_assert_eq!(ChannelData::parse(&out).unwrap(), cd);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(cd) = ChannelData::parse(&buf) {
                prop_assert!(4 + cd.data.len() <= buf.len());
            }
            if let Ok((cd, n)) = ChannelData::parse_stream(&buf) {
                prop_assert!(n <= buf.len() && cd.data.len() + 4 <= n);
            }
        }
    }
}
