//! Frame assembly: a small jitter buffer that turns RTP packets, arriving out
//! of order, duplicated or not at all, into whole frames.
//!
//! Packets are kept by extended sequence number (RFC 3550 A.1, wrap-aware). A
//! frame is a run of consecutive sequence numbers with one timestamp, ending at
//! the packet with the marker bit (RFC 3550 §5.1: for video, the last packet of
//! a frame; see [`Depacketizer::is_frame_end`]) or just before the timestamp
//! changes. Frames come out in order; a
//! missing packet holds everything behind it back until it arrives (after a
//! NACK) or the caller gives up on it ([`FrameAssembler::give_up`], or
//! [`FrameAssembler::give_up_if_stalled`] after a time the caller picks).
//!
//! After a loss the decoder's reference chain is broken, so the assembler drops
//! frames until the next keyframe start (for VP8: S=1, PID=0, P=0) and raises a
//! "keyframe needed" flag for the caller to turn into a PLI or FIR. The same
//! happens when the buffer is full: the oldest packet is dropped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::Error;
use super::payload::Depacketizer;
use super::seq::SeqUnwrapper;

/// A reassembled frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The RTP timestamp of its packets.
    pub timestamp: u32,
    /// Extended sequence number of its first packet.
    pub first_seq: u64,
    /// Extended sequence number of its last packet.
    pub last_seq: u64,
    /// True if it starts with a keyframe start.
    pub keyframe: bool,
    /// The depacketized media (e.g. a VP8 frame, an Annex-B access unit).
    pub data: Vec<u8>,
}

/// What [`FrameAssembler::insert`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored.
    Stored,
    /// Already stored: ignored.
    Duplicate,
    /// Older than frames already emitted or given up on: ignored.
    TooOld,
}

#[derive(Debug, Clone)]
struct Slot {
    timestamp: u32,
    marker: bool,
    payload: Vec<u8>,
}

/// Orders packets and emits complete frames; see the module doc.
#[derive(Debug, Clone)]
pub struct FrameAssembler<D: Depacketizer> {
    depacketizer: D,
    capacity: usize,
    unwrapper: SeqUnwrapper,
    packets: BTreeMap<u64, Slot>,
    /// First sequence number of the next frame, when in sync.
    next: Option<u64>,
    waiting_for_keyframe: bool,
    keyframe_request: bool,
    dropped_packets: u64,
    /// Payload buffers of emitted or dropped packets, for reuse.
    pool: Vec<Vec<u8>>,
    /// When the head of the buffer was first seen blocked by a gap.
    stalled_since: Option<Instant>,
}

impl<D: Depacketizer> FrameAssembler<D> {
    /// An assembler holding at most `capacity` packets (more than the largest
    /// frame, in packets). It starts waiting for a keyframe.
    pub fn new(depacketizer: D, capacity: usize) -> Self {
        FrameAssembler {
            depacketizer,
            capacity: capacity.max(1),
            unwrapper: SeqUnwrapper::new(),
            packets: BTreeMap::new(),
            next: None,
            waiting_for_keyframe: true,
            keyframe_request: false,
            dropped_packets: 0,
            pool: Vec::new(),
            stalled_since: None,
        }
    }

    /// Stores a packet's payload. When the buffer overflows, the oldest packet
    /// is dropped and a keyframe is needed.
    pub fn insert(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &[u8]) -> Inserted {
        let ext = self.unwrapper.unwrap(seq);
        if self.next.is_some_and(|n| ext < n) {
            return Inserted::TooOld;
        }
        if self.packets.contains_key(&ext) {
            return Inserted::Duplicate;
        }
        self.packets.insert(
            ext,
            Slot {
                timestamp,
                marker,
                payload: {
                    // Reuse a recycled buffer: no allocation per packet once warm.
                    let mut buf = self.pool.pop().unwrap_or_default();
                    buf.clear();
                    buf.extend_from_slice(payload);
                    buf
                },
            },
        );
        while self.packets.len() > self.capacity {
            self.drop_oldest();
            self.lose_sync();
        }
        Inserted::Stored
    }

    /// Stores a checked RTP packet (see [`FrameAssembler::insert`]).
    pub fn insert_packet(&mut self, p: &super::RtpPacket<'_>) -> Inserted {
        self.insert(p.sequence_number(), p.timestamp(), p.marker(), p.payload())
    }

    /// Gives up on the packets missing before the next frame: drops up to the
    /// next keyframe start and raises the keyframe request.
    pub fn give_up(&mut self) {
        self.lose_sync();
    }

    /// Gives up on a gap that has blocked the next frame for `max_wait` (call
    /// after draining [`FrameAssembler::pop_frame`]; a sans-IO caller passes its
    /// clock). Returns true if it gave up. Pick `max_wait` a little above the
    /// time NACK retransmissions need (a few RTTs).
    pub fn give_up_if_stalled(&mut self, now: Instant, max_wait: Duration) -> bool {
        if self.packets.is_empty() {
            self.stalled_since = None;
            return false;
        }
        match self.stalled_since {
            None => {
                self.stalled_since = Some(now);
                false
            }
            Some(t) if now.saturating_duration_since(t) >= max_wait => {
                self.stalled_since = None;
                self.give_up();
                true
            }
            Some(_) => false,
        }
    }

    /// When [`FrameAssembler::give_up_if_stalled`] would give up, if stalled.
    pub fn stall_deadline(&self, max_wait: Duration) -> Option<Instant> {
        self.stalled_since.map(|t| t + max_wait)
    }

    fn drop_oldest(&mut self) {
        if let Some((_, slot)) = self.packets.pop_first() {
            self.dropped_packets += 1;
            self.recycle(slot.payload);
        }
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.pool.len() < self.capacity {
            self.pool.push(buf);
        }
    }

    fn lose_sync(&mut self) {
        self.next = None;
        self.waiting_for_keyframe = true;
        self.keyframe_request = true;
        self.resync();
    }

    /// Out of sync: drop everything before the first stored keyframe start.
    fn resync(&mut self) {
        let start = self.packets.iter().find(|(_, s)| {
            self.depacketizer.is_frame_start(&s.payload)
                && (!self.waiting_for_keyframe || self.depacketizer.is_keyframe(&s.payload))
        });
        if let Some((&seq, _)) = start {
            while self
                .packets
                .first_key_value()
                .is_some_and(|(&k, _)| k < seq)
            {
                self.drop_oldest();
            }
            self.next = Some(seq);
        }
    }

    /// True once (then cleared) if frames were lost and the sender should be
    /// asked for a keyframe (PLI or FIR).
    pub fn take_keyframe_request(&mut self) -> bool {
        std::mem::take(&mut self.keyframe_request)
    }

    /// True while frames are dropped until a keyframe arrives.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Packets dropped so far (overflow, give-up, undecodable frames).
    pub fn dropped_packets(&self) -> u64 {
        self.dropped_packets
    }

    /// Packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True if no packet is held.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Sequence numbers missing between the next frame's start and the highest
    /// packet held (at most `limit` of them): what a NACK should ask for.
    pub fn missing(&self, limit: usize) -> Vec<u16> {
        let (Some(n), Some((&hi, _))) = (self.next, self.packets.last_key_value()) else {
            return Vec::new();
        };
        (n..hi)
            .filter(|s| !self.packets.contains_key(s))
            .take(limit)
            .map(|s| s as u16)
            .collect()
    }

    /// The next complete frame, if any. Frames that cannot be decoded (a
    /// malformed payload, or not a keyframe while one is awaited) are dropped.
    pub fn pop_frame(&mut self) -> Option<Frame> {
        loop {
            if self.next.is_none() {
                self.resync();
            }
            let start = self.next?;
            let first = self.packets.get(&start)?;
            let timestamp = first.timestamp;
            let keyframe = self.depacketizer.is_keyframe(&first.payload);
            // Walk consecutive packets to the end of the frame.
            let mut s = start;
            let mut size = 0;
            let end = loop {
                let p = self.packets.get(&s)?;
                // An upper bound on the frame for most formats (H.264 adds
                // start codes), so the frame is allocated once.
                size += p.payload.len() + 4;
                if p.timestamp != timestamp {
                    break s - 1;
                }
                if self.depacketizer.is_frame_end(&p.payload, p.marker) {
                    break s;
                }
                s += 1;
            };
            let mut data = Vec::with_capacity(size + 16);
            let mut result: Result<(), Error> = Ok(());
            self.depacketizer.reset();
            for seq in start..=end {
                if let Some(slot) = self.packets.remove(&seq) {
                    if result.is_ok() {
                        result = self.depacketizer.depacketize(&slot.payload, &mut data);
                    }
                    self.recycle(slot.payload);
                }
            }
            self.next = Some(end + 1);
            if self.waiting_for_keyframe && !keyframe {
                self.dropped_packets += end + 1 - start;
                self.keyframe_request = true;
                continue;
            }
            if result.is_err() {
                self.dropped_packets += end + 1 - start;
                self.lose_sync();
                continue;
            }
            self.waiting_for_keyframe = false;
            self.stalled_since = None;
            return Some(Frame {
                timestamp,
                first_seq: start,
                last_seq: end,
                keyframe,
                data,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::payload::Packetizer;
    use super::super::vp8::{Vp8Depacketizer, Vp8Packetizer};
    use super::*;
    use proptest::prelude::*;

    /// (seq, timestamp, marker, payload) packets carrying VP8 frames.
    fn vp8_stream(
        first_seq: u16,
        frames: &[Vec<u8>],
        mtu: usize,
    ) -> Vec<(u16, u32, bool, Vec<u8>)> {
        let mut pk = Vp8Packetizer::new(0);
        let mut seq = first_seq;
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let mut payloads = Vec::new();
            pk.packetize(f, mtu, &mut payloads).unwrap();
            let n = payloads.len();
            for (k, p) in payloads.into_iter().enumerate() {
                out.push((seq, 3000 * i as u32, k + 1 == n, p));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    /// A VP8 frame body: first byte's low bit 0 for a keyframe.
    fn frame(key: bool, len: usize, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len];
        f[0] = if key { 0x10 } else { 0x11 };
        f
    }

    fn drain<D: Depacketizer>(a: &mut FrameAssembler<D>) -> Vec<Frame> {
        std::iter::from_fn(|| a.pop_frame()).collect()
    }

    #[test]
    fn reorders_across_wrap_and_ignores_duplicates() {
        let frames = vec![
            frame(true, 2500, 1),
            frame(false, 900, 2),
            frame(false, 1500, 3),
        ];
        let mut pkts = vp8_stream(65533, &frames, 1000);
        pkts.reverse();
        let mut a = FrameAssembler::new(Vp8Depacketizer, 64);
        for (s, t, m, p) in &pkts {
            assert_eq!(a.insert(*s, *t, *m, p), Inserted::Stored);
        }
        assert_eq!(
            a.insert(pkts[0].0, pkts[0].1, pkts[0].2, &pkts[0].3),
            Inserted::Duplicate
        );
        let out = drain(&mut a);
        assert_eq!(
            out.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
            frames
        );
        assert!(out[0].keyframe && !out[1].keyframe);
        assert!(!a.take_keyframe_request());
        assert_eq!(
            a.insert(pkts[0].0, pkts[0].1, pkts[0].2, &pkts[0].3),
            Inserted::TooOld
        );
    }

    #[test]
    fn gap_holds_back_then_give_up_waits_for_keyframe() {
        let frames = vec![
            frame(true, 1500, 1),
            frame(false, 1500, 2),
            frame(false, 500, 3),
            frame(true, 500, 4),
        ];
        let pkts = vp8_stream(10, &frames, 1000);
        let mut a = FrameAssembler::new(Vp8Depacketizer, 64);
        for (i, (s, t, m, p)) in pkts.iter().enumerate() {
            if i != 2 {
                a.insert(*s, *t, *m, p);
            }
        }
        // Frame 0 out; frame 1 lacks its first packet (seq 12), so nothing more.
        assert_eq!(drain(&mut a).len(), 1);
        assert_eq!(a.missing(10), vec![12]);
        a.give_up();
        assert!(a.take_keyframe_request());
        // Frame 2 (delta) is dropped, frame 3 (key) comes out.
        let out = drain(&mut a);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, frames[3]);
        assert!(a.is_empty());
    }

    #[test]
    fn stalled_gap_is_given_up_after_max_wait() {
        let frames = vec![
            frame(true, 100, 1),
            frame(false, 100, 2),
            frame(true, 100, 3),
        ];
        let pkts = vp8_stream(0, &frames, 1000);
        let mut a = FrameAssembler::new(Vp8Depacketizer, 64);
        let t0 = Instant::now();
        let wait = Duration::from_millis(200);
        for (i, (s, t, m, p)) in pkts.iter().enumerate() {
            if i != 1 {
                a.insert(*s, *t, *m, p);
            }
        }
        assert_eq!(drain(&mut a).len(), 1);
        assert!(!a.give_up_if_stalled(t0, wait));
        assert_eq!(a.stall_deadline(wait), Some(t0 + wait));
        assert!(!a.give_up_if_stalled(t0 + Duration::from_millis(100), wait));
        assert!(a.give_up_if_stalled(t0 + wait, wait));
        assert!(a.take_keyframe_request());
        assert_eq!(drain(&mut a)[0].data, frames[2]);
        assert!(!a.give_up_if_stalled(t0 + wait, wait));
    }

    #[test]
    fn overflow_drops_oldest_and_asks_for_keyframe() {
        let frames = vec![
            frame(true, 3000, 1),
            frame(false, 100, 2),
            frame(true, 100, 3),
        ];
        let pkts = vp8_stream(0, &frames, 1000);
        let mut a = FrameAssembler::new(Vp8Depacketizer, 3);
        // First packet of the keyframe is lost: packets pile up behind it.
        for (s, t, m, p) in pkts.iter().skip(1) {
            a.insert(*s, *t, *m, p);
        }
        let out = drain(&mut a);
        assert!(a.take_keyframe_request());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, frames[2]);
    }

    #[test]
    fn joins_mid_stream_at_a_keyframe() {
        let frames = vec![
            frame(false, 100, 1),
            frame(false, 100, 2),
            frame(true, 100, 3),
            frame(false, 100, 4),
        ];
        let pkts = vp8_stream(100, &frames, 1000);
        let mut a = FrameAssembler::new(Vp8Depacketizer, 64);
        for (s, t, m, p) in &pkts {
            a.insert(*s, *t, *m, p);
        }
        let out = drain(&mut a);
        assert_eq!(
            out.iter().map(|f| f.data.clone()).collect::<Vec<_>>(),
            frames[2..].to_vec()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn shuffled_duplicated_stream_reassembles(
            first in any::<u16>(),
            sizes in proptest::collection::vec(1usize..3000, 1..10),
            mtu in 50usize..1200,
            order in any::<proptest::sample::Index>(),
            dups in proptest::collection::vec(any::<proptest::sample::Index>(), 0..5),
        ) {
            let frames: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| frame(i == 0, n, i as u8)).collect();
            let mut pkts = vp8_stream(first, &frames, mtu);
            for d in &dups {
                let p = d.get(&pkts).clone();
                pkts.push(p);
            }
            // A deterministic shuffle of a window of packets.
            let k = order.index(pkts.len());
            pkts[..k].reverse();
            let mut a = FrameAssembler::new(Vp8Depacketizer, 4096);
            for (s, t, m, p) in &pkts {
                a.insert(*s, *t, *m, p);
            }
            let out: Vec<Vec<u8>> = drain(&mut a).into_iter().map(|f| f.data).collect();
            prop_assert_eq!(out, frames);
        }

        #[test]
        fn arbitrary_packets_never_panic(pkts in proptest::collection::vec((any::<u16>(), 0u32..4, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..8)), 0..60)) {
            let mut a = FrameAssembler::new(Vp8Depacketizer, 16);
            for (s, t, m, p) in &pkts {
                a.insert(*s, *t, *m, p);
                while a.pop_frame().is_some() {}
                if s % 7 == 0 { a.give_up(); }
            }
            prop_assert!(a.len() <= 16);
        }
    }
}
