//! Sequence-number and timestamp arithmetic with wrap-around.
//!
//! RFC 3550 §5.1: the sequence number is 16 bits and the timestamp 32 bits; both
//! start at random values and wrap. Receivers compare them modulo 2^16 (2^32) and
//! extend them to a wider counter by counting wraps ("cycles", RFC 3550 A.1; the
//! rollover counter of SRTP, RFC 3711 §3.3.1).

/// A 16-bit RTP sequence number with wrap-around comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNo(pub u16);

// ANCHOR: seq_diff
impl SeqNo {
    /// The signed distance from `other` to `self` taken the short way round the
    /// circle: positive if `self` is newer.
    pub fn diff(self, other: SeqNo) -> i16 {
        self.0.wrapping_sub(other.0) as i16
    }

    /// True if `self` comes after `other` (within half the sequence space).
    pub fn is_newer_than(self, other: SeqNo) -> bool {
        self.diff(other) > 0
    }

    /// The next sequence number (wraps from 65535 to 0).
    pub fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }
}
// ANCHOR_END: seq_diff

/// True if 32-bit timestamp `a` comes after `b` (modulo 2^32, within half the space).
pub fn timestamp_newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// The signed distance from timestamp `b` to `a` taken the short way round.
pub fn timestamp_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// Extends 16-bit sequence numbers to 64-bit by tracking rollovers.
///
/// Each input is placed at the 64-bit value closest to the highest value seen so
/// far, so late (reordered) packets from before a wrap get the old rollover count
/// and packets after it get the new one. The rollover count is the value's upper
/// bits (`ext >> 16`), as SRTP's ROC.
#[derive(Debug, Clone, Default)]
pub struct SeqUnwrapper {
    highest: Option<u64>,
}

impl SeqUnwrapper {
    /// A tracker that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The 64-bit extension of `seq`, updating the highest value seen.
    ///
    /// The first value is placed at `2^16 + seq` (one rollover up) so a packet
    /// slightly older than the first one does not go below zero.
    pub fn unwrap(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// The 64-bit extension of `seq` without updating the tracker.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1 << 16) | seq as u64,
            Some(h) => {
                let d = seq.wrapping_sub(h as u16) as i16 as i64;
                // `h` is at least 2^16 and a step is at most 2^15, so this stays positive.
                (h as i64 + d) as u64
            }
        }
    }

    /// The highest extended value seen, if any.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    /// The rollover count of the highest value (number of wraps since the first packet).
    pub fn roc(&self) -> u32 {
        self.highest.map_or(0, |h| ((h >> 16) - 1) as u32)
    }
}

/// Extends 32-bit RTP timestamps to 64-bit, in the same way as [`SeqUnwrapper`].
#[derive(Debug, Clone, Default)]
pub struct TimestampUnwrapper {
    highest: Option<u64>,
}

impl TimestampUnwrapper {
    /// A tracker that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The 64-bit extension of `ts`, updating the highest value seen.
    pub fn unwrap(&mut self, ts: u32) -> u64 {
        let ext = match self.highest {
            None => (1 << 32) | ts as u64,
            Some(h) => (h as i64 + ts.wrapping_sub(h as u32) as i32 as i64) as u64,
        };
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn compare_across_wrap() {
        assert!(SeqNo(0).is_newer_than(SeqNo(65535)));
        assert!(!SeqNo(65535).is_newer_than(SeqNo(0)));
        assert_eq!(SeqNo(2).diff(SeqNo(65534)), 4);
        assert_eq!(SeqNo(65535).next(), SeqNo(0));
        assert!(timestamp_newer(5, u32::MAX - 5));
        assert_eq!(timestamp_diff(5, u32::MAX), 6);
    }

    #[test]
    fn unwrap_handles_rollover_and_reordering() {
        let mut u = SeqUnwrapper::new();
        let base = u.unwrap(65534);
        assert_eq!(u.unwrap(65535), base + 1);
        assert_eq!(u.unwrap(1), base + 3);
        assert_eq!(u.roc(), 1);
        // A late packet from before the wrap keeps the old rollover count.
        assert_eq!(u.unwrap(0), base + 2);
        assert_eq!(u.unwrap(65533), base - 1);
        assert_eq!(u.highest(), Some(base + 3));
    }

    #[test]
    fn unwrap_timestamps() {
        let mut u = TimestampUnwrapper::new();
        let a = u.unwrap(u32::MAX - 10);
        assert_eq!(u.unwrap(10), a + 21);
        assert_eq!(u.unwrap(u32::MAX), a + 10);
    }

    proptest! {
        #[test]
        fn unwrap_follows_a_walk(start in any::<u16>(), steps in proptest::collection::vec(-1000i64..3000, 0..200)) {
            let mut u = SeqUnwrapper::new();
            let mut truth = (1u64 << 16) + start as u64;
            prop_assert_eq!(u.unwrap(start), truth);
            for s in steps {
                truth = (truth as i64 + s).max(1 << 16) as u64;
                let h = u.highest().unwrap_or(0);
                // Only steps within half the space from the highest are decidable.
                if (truth as i64 - h as i64).abs() < 30000 {
                    prop_assert_eq!(u.unwrap(truth as u16), truth);
                }
            }
        }
    }
}
