//! The send queue: fragments waiting for their TSN, one FIFO per stream,
//! served round robin by message.
//!
//! With DATA chunks a message's fragments must carry consecutive TSNs (RFC
//! 9260 §6.9), so the scheduler may switch streams only between messages
//! (I-DATA, RFC 8260, lifts that). Round robin by message is the fair
//! scheduler of RFC 8260 §3.2 ("Round-Robin Scheduler") and of usrsctp's
//! `SCTP_SS_ROUND_ROBIN`: a bulk transfer on one stream cannot starve a
//! small message on another, which waits at most one message per busy
//! stream instead of behind everything queued before it.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use super::chunk::FLAG_END;

/// A fragment handed to `send`, waiting for its TSN.
#[derive(Debug)]
pub(super) struct Pending {
    pub stream: u16,
    pub ppid: u32,
    pub flags: u8,
    pub data: Bytes,
    pub max_rtx: Option<u16>,
    pub expires: Option<Instant>,
}

/// Per-stream FIFOs and the round-robin turn among them.
#[derive(Debug, Default)]
pub(super) struct SendQueue {
    streams: HashMap<u16, VecDeque<Pending>>,
    /// Streams with queued fragments waiting for their turn (never the
    /// current one).
    ring: VecDeque<u16>,
    /// The stream whose message is being sent: its fragments go first
    /// until the one with the E bit.
    current: Option<u16>,
    len: usize,
}

impl SendQueue {
    /// Queues a fragment at the back of its stream.
    pub fn push(&mut self, p: Pending) {
        let stream = p.stream;
        let q = self.streams.entry(stream).or_default();
        if q.is_empty() && self.current != Some(stream) {
            self.ring.push_back(stream);
        }
        q.push_back(p);
        self.len += 1;
    }

    /// The fragment that goes next: the current message's next fragment,
    /// else the first fragment of the next stream in turn (which becomes
    /// current).
    pub fn peek(&mut self) -> Option<&Pending> {
        loop {
            let s = match self.current {
                Some(s) => s,
                None => {
                    let s = self.ring.pop_front()?;
                    self.current = Some(s);
                    s
                }
            };
            if self.streams.get(&s).is_some_and(|q| !q.is_empty()) {
                return self.streams.get(&s).and_then(VecDeque::front);
            }
            self.current = None;
        }
    }

    /// Takes the current stream's next fragment (what [`SendQueue::peek`]
    /// showed). After a message's last fragment the stream goes to the back
    /// of the turn if it has more. (`send` queues a message's fragments
    /// together, so the current stream runs dry mid-message only when a
    /// message is dropped, which pops up to its E fragment.)
    pub fn pop(&mut self) -> Option<Pending> {
        let s = self.current?;
        let q = self.streams.get_mut(&s)?;
        let p = q.pop_front()?;
        self.len -= 1;
        if p.flags & FLAG_END != 0 {
            self.current = None;
            if !q.is_empty() {
                self.ring.push_back(s);
            }
        }
        Some(p)
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.streams.clear();
        self.ring.clear();
        self.current = None;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sctp::chunk::FLAG_BEGIN;

    fn frag(stream: u16, n: u8, flags: u8) -> Pending {
        Pending {
            stream,
            ppid: 53,
            flags,
            data: Bytes::from(vec![n]),
            max_rtx: None,
            expires: None,
        }
    }

    fn drain(q: &mut SendQueue) -> Vec<(u16, u8)> {
        let mut v = Vec::new();
        while q.peek().is_some() {
            let p = q.pop().expect("peeked");
            v.push((p.stream, p.data[0]));
        }
        v
    }

    #[test]
    fn streams_take_turns_by_whole_message() {
        let mut q = SendQueue::default();
        // Stream 1: a message in three fragments, then a whole one.
        q.push(frag(1, 10, FLAG_BEGIN));
        q.push(frag(1, 11, 0));
        q.push(frag(1, 12, FLAG_END));
        q.push(frag(1, 13, FLAG_BEGIN | FLAG_END));
        // Streams 2 and 3: two whole messages each.
        for s in [2, 3] {
            q.push(frag(s, 20, FLAG_BEGIN | FLAG_END));
            q.push(frag(s, 21, FLAG_BEGIN | FLAG_END));
        }
        assert_eq!(q.len, 8);
        assert_eq!(
            drain(&mut q),
            [
                (1, 10),
                (1, 11),
                (1, 12),
                (2, 20),
                (3, 20),
                (1, 13),
                (2, 21),
                (3, 21)
            ]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_message_is_never_interleaved_with_another_stream() {
        let mut q = SendQueue::default();
        q.push(frag(1, 0, FLAG_BEGIN));
        assert_eq!(q.peek().map(|p| p.stream), Some(1));
        let _ = q.pop();
        // Another stream's message arrives while stream 1 is mid-message.
        q.push(frag(2, 0, FLAG_BEGIN | FLAG_END));
        q.push(frag(1, 1, FLAG_END));
        assert_eq!(drain(&mut q), [(1, 1), (2, 0)]);
    }

    #[test]
    fn pop_without_current_message_takes_nothing() {
        let mut q = SendQueue::default();
        q.push(frag(4, 0, FLAG_BEGIN | FLAG_END));
        assert!(q.pop().is_none(), "pop only continues what peek chose");
        assert_eq!(drain(&mut q), [(4, 0)]);
        q.push(frag(4, 1, FLAG_BEGIN | FLAG_END));
        q.clear();
        assert!(q.peek().is_none() && q.is_empty());
    }
}
