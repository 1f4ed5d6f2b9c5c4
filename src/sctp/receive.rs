//! The receiver's record of TSNs (RFC 9260 §6.2): the cumulative TSN, the
//! disjoint ranges received above it (the SACK's gap blocks) and the
//! duplicates seen since the last SACK; and the SACK that reports them.
//!
//! TSNs are unwrapped to 64 bits, starting at 2^32 so that serial
//! arithmetic (§1.6) never goes negative.

use std::collections::BTreeMap;

use super::chunk::kind;

/// Most duplicate TSNs reported in one SACK (§6.2 leaves the number to us).
const MAX_DUPS: usize = 16;
/// Most gap blocks in one SACK (besides the room the packet leaves).
const MAX_GAP_BLOCKS: usize = 256;

/// Which TSNs arrived.
#[derive(Debug, Clone, Default)]
pub struct ReceiveTracker {
    /// Every TSN up to here was received (unwrapped).
    cum: u64,
    /// The highest TSN received (unwrapped).
    highest: u64,
    /// Disjoint ranges received above `cum + 1`: first TSN → last TSN.
    ranges: BTreeMap<u64, u64>,
    /// Duplicates received since the last SACK (§6.2), at most `MAX_DUPS`.
    dups: Vec<u32>,
}

impl ReceiveTracker {
    /// Starts at the peer's initial TSN (from its INIT or INIT ACK): the
    /// cumulative TSN is the one before it.
    pub fn init(&mut self, peer_initial_tsn: u32) {
        self.cum = (1u64 << 32) + peer_initial_tsn.wrapping_sub(1) as u64;
        self.highest = self.cum;
    }

    /// The cumulative TSN (unwrapped).
    pub fn cum(&self) -> u64 {
        self.cum
    }

    /// The highest TSN received (unwrapped).
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The 64-bit TSN nearest the cumulative TSN with these low 32 bits.
    pub fn unwrap(&self, tsn: u32) -> u64 {
        let d = tsn.wrapping_sub(self.cum as u32) as i32 as i64;
        (self.cum as i64 + d).max(0) as u64
    }

    /// Whether `t` was received.
    pub fn is_received(&self, t: u64) -> bool {
        if t <= self.cum {
            return true;
        }
        self.ranges
            .range(..=t)
            .next_back()
            .is_some_and(|(_, &e)| e >= t)
    }

    /// Whether a range of received TSNs starts at `t`.
    pub fn range_starts_at(&self, t: u64) -> bool {
        self.ranges.contains_key(&t)
    }

    /// How many disjoint ranges are held above the cumulative TSN.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// Whether TSNs are missing below the highest received (a gap is open).
    pub fn has_gaps(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// Whether duplicates wait to be reported.
    pub fn has_dups(&self) -> bool {
        !self.dups.is_empty()
    }

    /// Notes that the new TSN `t` arrived: the cumulative TSN moves over
    /// it and every range it then touches, or `t` joins or opens a range.
    pub fn record(&mut self, t: u64) {
        if t == self.cum + 1 {
            self.cum = t;
            while let Some((&s, &e)) = self.ranges.first_key_value() {
                if s == self.cum + 1 {
                    self.cum = e;
                    self.ranges.pop_first();
                } else {
                    break;
                }
            }
        } else {
            let before = self.ranges.range(..t).next_back().map(|(&s, &e)| (s, e));
            let after = self.ranges.get(&(t + 1)).copied();
            match (before, after) {
                (Some((s, e)), Some(e2)) if e + 1 == t => {
                    self.ranges.remove(&(t + 1));
                    self.ranges.insert(s, e2);
                }
                (Some((s, e)), _) if e + 1 == t => {
                    self.ranges.insert(s, t);
                }
                (_, Some(e2)) => {
                    self.ranges.remove(&(t + 1));
                    self.ranges.insert(t, e2);
                }
                _ => {
                    self.ranges.insert(t, t);
                }
            }
        }
        self.highest = self.highest.max(t);
    }

    /// §6.2: a DATA chunk with a TSN already received; reported in the
    /// next SACK (the first `MAX_DUPS` of them).
    pub fn note_duplicate(&mut self, tsn: u32) {
        if self.dups.len() < MAX_DUPS {
            self.dups.push(tsn);
        }
    }

    /// RFC 3758 §3.6: the peer moved the cumulative TSN to `new` (above
    /// ours): ranges at or below it go, and the cumulative TSN moves on
    /// over every range it then touches.
    pub fn forward_to(&mut self, new: u64) {
        self.cum = new;
        self.highest = self.highest.max(new);
        let above = self.ranges.split_off(&(new + 1));
        let below = std::mem::replace(&mut self.ranges, above);
        for (_, e) in below {
            if e > self.cum {
                self.cum = e;
            }
        }
        while let Some((&s, &e)) = self.ranges.first_key_value() {
            if s <= self.cum + 1 {
                self.cum = self.cum.max(e);
                self.ranges.pop_first();
            } else {
                break;
            }
        }
    }

    /// Forgets the ranges (the association closed).
    pub fn clear_ranges(&mut self) {
        self.ranges.clear();
    }

    /// Appends a SACK chunk (§3.3.4) for what was received, advertising
    /// `a_rwnd`, in at most `room` bytes (gap blocks that do not fit are
    /// left out, the lowest kept), and forgets the duplicates it reported.
    pub fn emit_sack(&mut self, out: &mut Vec<u8>, room: usize, a_rwnd: u32) {
        let cum = self.cum as u32;
        let max_gaps = ((room.saturating_sub(16 + 4 * self.dups.len())) / 4).min(MAX_GAP_BLOCKS);
        let start = out.len();
        out.extend_from_slice(&[kind::SACK, 0, 0, 0]);
        out.extend_from_slice(&cum.to_be_bytes());
        out.extend_from_slice(&a_rwnd.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        let mut n = 0u16;
        for (&s, &e) in &self.ranges {
            if n as usize >= max_gaps {
                break;
            }
            let (so, eo) = (s - self.cum, e - self.cum);
            if so > 0xFFFF {
                break;
            }
            out.extend_from_slice(&(so as u16).to_be_bytes());
            out.extend_from_slice(&(eo.min(0xFFFF) as u16).to_be_bytes());
            n += 1;
        }
        for d in &self.dups {
            out.extend_from_slice(&d.to_be_bytes());
        }
        let nd = self.dups.len() as u16;
        self.dups.clear();
        out[start + 12..start + 14].copy_from_slice(&n.to_be_bytes());
        out[start + 14..start + 16].copy_from_slice(&nd.to_be_bytes());
        let len = (out.len() - start) as u16;
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::super::chunk::{Chunk, GapBlock, Sack};
    use super::*;

    fn sack_of(r: &mut ReceiveTracker, room: usize) -> Sack {
        let mut out = Vec::new();
        r.emit_sack(&mut out, room, 1000);
        let len = u16::from_be_bytes([out[2], out[3]]) as usize;
        assert_eq!(len, out.len());
        match Chunk::parse(out[0], out[1], &out[4..]) {
            Ok(Chunk::Sack(s)) => s,
            other => panic!("not a SACK: {other:?}"),
        }
    }

    fn tracker(initial: u32) -> ReceiveTracker {
        let mut r = ReceiveTracker::default();
        r.init(initial);
        r
    }

    #[test]
    fn in_order_tsns_move_the_cumulative_tsn() {
        let mut r = tracker(100);
        assert_eq!(r.cum() as u32, 99);
        for tsn in 100..110u32 {
            let t = r.unwrap(tsn);
            assert!(!r.is_received(t));
            r.record(t);
        }
        assert_eq!(r.cum() as u32, 109);
        assert!(!r.has_gaps());
        let s = sack_of(&mut r, 1200);
        assert_eq!(s.cum_tsn_ack, 109);
        assert_eq!(s.a_rwnd, 1000);
        assert!(s.gaps.is_empty() && s.dups.is_empty());
    }

    #[test]
    fn gaps_become_blocks_and_merge_when_filled() {
        // §3.3.4: gap block offsets are relative to the cumulative TSN.
        let mut r = tracker(1);
        for tsn in [1u32, 3, 4, 7, 6, 9] {
            r.record(r.unwrap(tsn));
        }
        assert_eq!(r.range_count(), 3);
        assert!(r.range_starts_at(r.unwrap(3)));
        let s = sack_of(&mut r, 1200);
        assert_eq!(s.cum_tsn_ack, 1);
        assert_eq!(
            s.gaps,
            vec![
                GapBlock { start: 2, end: 3 },
                GapBlock { start: 5, end: 6 },
                GapBlock { start: 8, end: 8 },
            ]
        );
        r.record(r.unwrap(2));
        assert_eq!(r.cum() as u32, 4);
        r.record(r.unwrap(8));
        assert_eq!(r.range_count(), 1);
        r.record(r.unwrap(5));
        assert_eq!(r.cum() as u32, 9);
        assert!(!r.has_gaps());
        assert_eq!(r.highest() as u32, 9);
    }

    #[test]
    fn duplicates_are_reported_once_and_capped() {
        // §6.2: duplicates go in the next SACK.
        let mut r = tracker(10);
        r.record(r.unwrap(10));
        for _ in 0..40 {
            r.note_duplicate(10);
        }
        assert!(r.has_dups());
        let s = sack_of(&mut r, 1200);
        assert_eq!(s.dups.len(), MAX_DUPS);
        assert!(!r.has_dups());
        assert!(sack_of(&mut r, 1200).dups.is_empty());
    }

    #[test]
    fn a_small_room_keeps_the_lowest_blocks() {
        let mut r = tracker(0);
        for tsn in (2..40u32).step_by(2) {
            r.record(r.unwrap(tsn));
        }
        let s = sack_of(&mut r, 16 + 3 * 4);
        assert_eq!(s.gaps.len(), 3);
        assert_eq!(s.gaps[0], GapBlock { start: 3, end: 3 });
    }

    #[test]
    fn tsns_unwrap_across_the_32_bit_edge() {
        let mut r = tracker(u32::MAX - 1);
        for tsn in [u32::MAX - 1, u32::MAX, 0, 1] {
            let t = r.unwrap(tsn);
            assert!(!r.is_received(t));
            r.record(t);
        }
        assert_eq!(r.cum() as u32, 1);
        assert!(r.is_received(r.unwrap(u32::MAX)));
        assert_eq!(sack_of(&mut r, 1200).cum_tsn_ack, 1);
    }

    #[test]
    fn forward_tsn_skips_and_merges_ranges() {
        // RFC 3758 §3.6.
        let mut r = tracker(1);
        for tsn in [3u32, 5, 6, 9] {
            r.record(r.unwrap(tsn));
        }
        r.forward_to(r.unwrap(4));
        // 3 was below the new point, 5..=6 touches it: cum = 6; 9 stays.
        assert_eq!(r.cum() as u32, 6);
        assert_eq!(r.range_count(), 1);
        r.forward_to(r.unwrap(8));
        assert_eq!(r.cum() as u32, 9);
        assert!(!r.has_gaps());
    }
}
