//! TURN over TCP: cutting a byte stream into messages (RFC 8656 §3.1).
//!
//! Over TCP (and TLS) a client sends STUN messages and ChannelData messages
//! back to back, with no length prefix of their own: each says its length in
//! its header. The first two bits tell them apart (RFC 8656 §12; RFC 7983
//! for the demultiplexing):
//!
//! ```text
//!  00  STUN:        type(2) length(2) cookie(4) tid(12) | length bytes
//!  01  ChannelData: channel(2) length(2)                | length bytes, padded to 4
//!  1x  neither: the stream is not TURN, the connection is closed
//! ```
//!
//! RFC 8656 §12.5: over TCP, ChannelData is padded to a multiple of 4 bytes
//! (the padding is not counted in its length) so that the next message
//! starts aligned; a STUN message's length is a multiple of 4 already.
//!
//! [`Framer`] is sans-IO: the caller pushes what it read and takes whole
//! messages out. It never holds more than one message's worth of unread
//! bytes beyond what was just pushed: a peer that announces 64 KiB and sends
//! them one byte a minute costs at most [`MAX_MESSAGE`] bytes (the runtime
//! closes such a connection when it makes no allocation in time).

use std::fmt;

/// The longest message on the stream: a STUN message (length a multiple
/// of 4, at most 65532) with its 20-byte header; a ChannelData message
/// is at most 4 + 65535 + 1 bytes of padding, less.
pub const MAX_MESSAGE: usize = 20 + 65532;
/// Most bytes one [`Framer::push`] may add.
pub const MAX_PUSH: usize = 64 * 1024;

/// Why a stream is not a TURN stream any more (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// A message starts with bits 10 or 11: neither STUN nor ChannelData.
    NotTurn {
        /// The first byte.
        byte: u8,
        /// Its offset in the stream.
        offset: u64,
    },
    /// A STUN header whose length is not a multiple of 4 (RFC 8489 §5).
    BadStunLength {
        /// The length field.
        length: u16,
        /// The message's offset in the stream.
        offset: u64,
    },
    /// More than [`MAX_PUSH`] bytes pushed at once.
    PushTooLarge(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotTurn { byte, offset } => write!(
                f,
                "byte {byte:#04x} at stream offset {offset} starts neither a STUN nor a ChannelData message"
            ),
            FrameError::BadStunLength { length, offset } => write!(
                f,
                "STUN message at stream offset {offset} has length {length}, not a multiple of 4"
            ),
            FrameError::PushTooLarge(n) => {
                write!(f, "{n} bytes pushed at once (at most {MAX_PUSH})")
            }
        }
    }
}

impl std::error::Error for FrameError {}

/// Cuts a TURN-over-TCP byte stream into messages.
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    /// Where the next message starts in `buf`.
    start: usize,
    /// The stream offset of `buf[0]`, for error messages.
    offset: u64,
    /// Set once the stream was found not to be TURN.
    failed: Option<FrameError>,
}

impl Framer {
    /// An empty framer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the stream (at most [`MAX_PUSH`]); take the
    /// whole messages out with [`Framer::next_message`] before pushing
    /// more.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if bytes.len() > MAX_PUSH {
            return Err(FrameError::PushTooLarge(bytes.len()));
        }
        if self.start > 0 {
            // Drop what was taken out, so that the buffer holds only the
            // message in progress (at most MAX_MESSAGE - 1 bytes) and this
            // push.
            self.buf.drain(..self.start);
            self.offset += self.start as u64;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    /// How many bytes are held, read but not taken out as messages.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message (padding included for ChannelData), `None`
    /// until enough bytes have come; an error once the stream is not TURN
    /// (it stays failed).
    pub fn next_message(&mut self) -> Result<Option<&[u8]>, FrameError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let rest = self.buf.get(self.start..).unwrap_or_default();
        let Some(&[b0, _, l0, l1]) = rest.get(..4) else {
            return Ok(None);
        };
        let length = u16::from_be_bytes([l0, l1]);
        let offset = self.offset + self.start as u64;
        let total = match b0 >> 6 {
            0 if length % 4 != 0 => {
                let e = FrameError::BadStunLength { length, offset };
                self.failed = Some(e);
                return Err(e);
            }
            0 => 20 + usize::from(length),
            1 => {
                let l = usize::from(length);
                4 + l + crate::stun::attributes::padding(l)
            }
            _ => {
                let e = FrameError::NotTurn { byte: b0, offset };
                self.failed = Some(e);
                return Err(e);
            }
        };
        if rest.len() < total {
            return Ok(None);
        }
        let begin = self.start;
        self.start += total;
        Ok(self.buf.get(begin..begin + total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{MessageEncoder, MessageType, TransactionId};
    use crate::turn::ChannelData;
    use proptest::prelude::*;

    fn stun(tid: u8, software: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = MessageEncoder::new(
            &mut out,
            MessageType::BINDING_REQUEST,
            TransactionId([tid; 12]),
        );
        if !software.is_empty() {
            enc.attribute(&crate::stun::Attribute::Software(software));
        }
        enc.finish().unwrap();
        out
    }

    fn channel_data(channel: u16, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        ChannelData { channel, data }.emit_padded(&mut out).unwrap();
        out
    }

    fn all(f: &mut Framer) -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        while let Some(m) = f.next_message().unwrap() {
            v.push(m.to_vec());
        }
        v
    }

    #[test]
    fn messages_back_to_back_with_channel_data_padding() {
        let a = stun(1, "x");
        let b = channel_data(0x4001, b"hello"); // 4 + 5 + 3 of padding
        assert_eq!(b.len(), 12);
        let c = channel_data(0x4002, b"");
        let mut stream = [a.clone(), b.clone(), c.clone()].concat();
        stream.extend_from_slice(&b[..3]);
        let mut f = Framer::new();
        f.push(&stream).unwrap();
        assert_eq!(all(&mut f), vec![a, b.clone(), c]);
        assert_eq!(f.buffered(), 3);
        f.push(&b[3..]).unwrap();
        assert_eq!(all(&mut f), vec![b]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn a_stream_that_is_not_turn_fails_and_stays_failed() {
        let mut f = Framer::new();
        f.push(&stun(1, "")).unwrap();
        f.push(&[0x80, 0, 0, 0]).unwrap();
        assert!(f.next_message().unwrap().is_some());
        let e = f.next_message().unwrap_err();
        assert_eq!(
            e,
            FrameError::NotTurn {
                byte: 0x80,
                offset: 20
            }
        );
        assert!(e.to_string().contains("offset 20"), "{e}");
        assert_eq!(f.push(b"more"), Err(e));
        let mut f = Framer::new();
        f.push(&[0, 1, 0, 5]).unwrap();
        assert!(matches!(
            f.next_message(),
            Err(FrameError::BadStunLength { length: 5, .. })
        ));
    }

    /// A 64 KiB length announced and then trickled in: the framer holds
    /// that one message and nothing more.
    #[test]
    fn a_slow_loris_costs_one_message_at_most() {
        let mut f = Framer::new();
        f.push(&[0x40, 0x00, 0xff, 0xff]).unwrap();
        for _ in 0..65535 / 1024 {
            f.push(&[0xaa; 1024]).unwrap();
            assert!(f.next_message().unwrap().is_none());
            assert!(f.buffered() < MAX_MESSAGE);
        }
        f.push(&[0xaa; 1024]).unwrap();
        let m = f.next_message().unwrap().unwrap();
        assert_eq!(m.len(), 4 + 65535 + 1);
        assert!(f.buffered() < 1024);
        assert_eq!(
            f.push(&vec![0; MAX_PUSH + 1]),
            Err(FrameError::PushTooLarge(MAX_PUSH + 1))
        );
    }

    proptest! {
        /// Any sequence of messages, written back to back and read in any
        /// chunks, comes out as the same messages.
        #[test]
        fn framing_round_trip(
            msgs in proptest::collection::vec(
                prop_oneof![
                    (any::<u8>(), "[a-z]{0,40}").prop_map(|(t, s)| stun(t, &s)),
                    (0x4000u16..0x7fff, proptest::collection::vec(any::<u8>(), 0..300))
                        .prop_map(|(c, d)| channel_data(c, &d)),
                ],
                0..12,
            ),
            cuts in proptest::collection::vec(1usize..200, 1..20),
        ) {
            let stream = msgs.concat();
            let mut f = Framer::new();
            let mut got = Vec::new();
            let mut at = 0;
            let mut k = 0;
            while at < stream.len() {
                let n = cuts[k % cuts.len()].min(stream.len() - at);
                k += 1;
                f.push(&stream[at..at + n]).unwrap();
                at += n;
                got.extend(all(&mut f));
            }
            prop_assert_eq!(got, msgs);
            prop_assert_eq!(f.buffered(), 0);
        }

        /// Arbitrary bytes never panic, and the framer never holds more
        /// than one message plus the last push.
        #[test]
        fn arbitrary_bytes_stay_bounded(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 0..20),
        ) {
            let mut f = Framer::new();
            for c in &chunks {
                if f.push(c).is_err() {
                    break;
                }
                while let Ok(Some(_)) = f.next_message() {}
                prop_assert!(f.buffered() <= MAX_MESSAGE + c.len());
            }
        }
    }
}
