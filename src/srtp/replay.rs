//! Packet-index estimation (RFC 3711 §3.3.1, Appendix A) and the replay
//! window (§3.3.2).

/// RFC 3711 Appendix A: the 48-bit index `v * 2^16 + SEQ` of a packet with
/// sequence number `seq`, given the highest index seen so far (`ROC * 2^16 +
/// s_l`). `v` is the ROC, ROC - 1 or ROC + 1, whichever puts the packet
/// closest to `s_l`:
///
/// ```text
/// if s_l < 32768:  v = ROC - 1 if SEQ - s_l > 32768, else ROC
/// else:            v = ROC + 1 if s_l - 32768 > SEQ, else ROC
/// ```
///
/// While the ROC is 0 there is no earlier ROC, so a guess of ROC - 1 stays 0
/// (libsrtp does the same). `None` when ROC + 1 would pass 2^32 - 1: the index
/// space is spent and the keys must change.
pub(crate) fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let s_l = highest & 0xffff;
    let seq = u64::from(seq);
    let v = if s_l < 32768 {
        if seq > s_l + 32768 {
            roc.saturating_sub(1)
        } else {
            roc
        }
    } else if s_l - 32768 > seq {
        roc + 1
    } else {
        roc
    };
    if v > u64::from(u32::MAX) {
        return None;
    }
    Some((v << 16) | seq)
}

/// Why the window refused an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Seen before.
    Replayed,
    /// Further behind the highest index than the window reaches.
    TooOld { highest: u64 },
}

/// A sliding window of the indices received (RFC 3711 §3.3.2), as a ring of
/// bit words: index `i` is bit `i % 64` of word `(i / 64) % words`. At least
/// one word more than the window needs is kept, so that moving the window
/// forward only ever clears whole words; the word count is a power of two so
/// that `% words` is a mask, not a division, on the per-packet path.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    /// The highest index accepted so far; `None` before the first packet.
    highest: Option<u64>,
    /// Indices `highest - size + 1 ..= highest` are tracked.
    size: u64,
    bits: Box<[u64]>,
}

impl ReplayWindow {
    /// A window tracking `size` indices (the caller checked `size >= 64`).
    pub(crate) fn new(size: usize) -> Self {
        let words = (size.div_ceil(64) + 1).next_power_of_two();
        ReplayWindow {
            highest: None,
            size: size as u64,
            bits: vec![0; words].into_boxed_slice(),
        }
    }

    /// The highest index accepted so far.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn slot(&self, index: u64) -> (usize, u64) {
        let mask = self.bits.len() as u64 - 1;
        (((index / 64) & mask) as usize, 1u64 << (index % 64))
    }

    /// Whether `index` may be accepted. Does not change the window.
    pub(crate) fn check(&self, index: u64) -> Result<(), Refused> {
        let Some(highest) = self.highest else {
            return Ok(());
        };
        if index > highest {
            return Ok(());
        }
        if highest - index >= self.size {
            return Err(Refused::TooOld { highest });
        }
        let (word, bit) = self.slot(index);
        if self.bits[word] & bit != 0 {
            return Err(Refused::Replayed);
        }
        Ok(())
    }

    /// Records `index` as received (after it authenticated). An index that
    /// [`check`](Self::check) refused is ignored.
    pub(crate) fn accept(&mut self, index: u64) {
        if self.check(index).is_err() {
            return;
        }
        match self.highest {
            Some(highest) if index <= highest => {}
            Some(highest) => {
                let words = self.bits.len() as u64;
                let mask = words - 1;
                let from = highest / 64;
                let steps = (index / 64 - from).min(words);
                for i in 1..=steps {
                    self.bits[((from + i) & mask) as usize] = 0;
                }
                self.highest = Some(index);
            }
            None => self.highest = Some(index),
        }
        let (word, bit) = self.slot(index);
        self.bits[word] |= bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn estimate_follows_appendix_a() {
        // In order within one ROC.
        assert_eq!(estimate_index(100, 101), Some(101));
        // Wrap forward: s_l = 65535, SEQ = 0 → ROC + 1.
        assert_eq!(estimate_index(0xffff, 0), Some(0x1_0000));
        assert_eq!(estimate_index(0x3_fff0, 5), Some(0x4_0005));
        // A late packet from before the wrap → ROC - 1.
        assert_eq!(estimate_index(0x4_0005, 0xfff0), Some(0x3_fff0));
        // ROC 0 has no predecessor.
        assert_eq!(estimate_index(5, 0xfff0), Some(0xfff0));
        // The last ROC cannot wrap.
        assert_eq!(estimate_index(0xffff_ffff_fff0, 3), None);
        assert_eq!(
            estimate_index(0xffff_ffff_fff0, 0xfff5),
            Some(0xffff_ffff_fff5)
        );
    }

    #[test]
    fn window_accepts_once_and_refuses_old() {
        let mut w = ReplayWindow::new(64);
        assert_eq!(w.check(1000), Ok(()));
        w.accept(1000);
        assert_eq!(w.check(1000), Err(Refused::Replayed));
        assert_eq!(w.check(999), Ok(()));
        assert_eq!(w.check(937), Ok(()));
        assert_eq!(w.check(936), Err(Refused::TooOld { highest: 1000 }));
        w.accept(990);
        assert_eq!(w.check(990), Err(Refused::Replayed));
        // A big jump clears everything.
        w.accept(1_000_000);
        assert_eq!(w.check(1000), Err(Refused::TooOld { highest: 1_000_000 }));
        assert_eq!(w.check(999_999), Ok(()));
    }

    proptest! {
        /// The ring of words behaves exactly like a set of the indices seen,
        /// restricted to the last `size`.
        #[test]
        fn window_matches_a_model(size in 64usize..300, steps in proptest::collection::vec(0u64..400, 1..300)) {
            let mut w = ReplayWindow::new(size);
            let mut seen = std::collections::BTreeSet::new();
            let mut highest: Option<u64> = None;
            let mut base = 0u64;
            for (k, s) in steps.into_iter().enumerate() {
                // Mostly move forward, sometimes look back.
                let index = if k % 3 == 0 { base.saturating_sub(s) } else { base += s % 50; base };
                let expected = match highest {
                    None => Ok(()),
                    Some(h) if index > h => Ok(()),
                    Some(h) if h - index >= size as u64 => Err(Refused::TooOld { highest: h }),
                    Some(_) if seen.contains(&index) => Err(Refused::Replayed),
                    Some(_) => Ok(()),
                };
                prop_assert_eq!(w.check(index), expected);
                if expected.is_ok() {
                    w.accept(index);
                    seen.insert(index);
                    highest = Some(highest.map_or(index, |h| h.max(index)));
                }
                prop_assert_eq!(w.highest(), highest);
            }
        }
    }
}
