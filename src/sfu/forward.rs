//! The forwarding pieces of the SFU, each small and tested alone: the
//! per-subscriber rewriter that keeps a stream continuous across sources,
//! the keyframe cache behind instant join, the keyframe-request throttle,
//! the layer chooser, and the per-layer rate meter.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::peer::Renumber;
use crate::rtp::RtpPacket;

/// Keeps one outgoing stream continuous while its source changes (another
/// simulcast layer, another publisher's track on a recycled slot): every
/// packet's sequence number and timestamp are shifted by offsets chosen
/// when the source changes, so the subscriber's jitter buffer sees one
/// stream with no jump (RFC 3550 §5.1: the sequence number increments by
/// one per packet; the timestamp advances with the sampling clock).
///
/// Within one source the offsets stay put: a packet the SFU lost keeps its
/// hole in the numbering, so the subscriber NACKs it, and a late
/// retransmission fills that hole. A packet taken out (an SVC layer the
/// subscriber does not decode, [`Rewriter::skip`]) moves the ones after
/// it down by one; which packets of the last [`NUMBERING_WINDOW`] were
/// taken out is remembered, so that a packet arriving late still gets the
/// number it had a right to, and a subscriber's NACK maps back to the
/// source packet that had (or was to have) that number.
#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    /// The source forwarded now.
    current: Option<Numbering>,
    /// The highest sequence number and its timestamp sent, and when.
    last: Option<(u16, u32, Instant)>,
    /// The source before the last switch, to repair what it sent.
    previous: Option<Numbering>,
}

/// How many source packets back (from the newest) the numbering of a
/// source is known: a late packet or a NACK older than this is dropped.
/// A power of two, so that the ring of bits stays aligned over the
/// sequence number's wrap.
pub const NUMBERING_WINDOW: u16 = 1024;
const WORDS: usize = NUMBERING_WINDOW as usize / 64;

/// One bit per source sequence number of the window (by `seq % window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SeqBits([u64; WORDS]);

impl SeqBits {
    fn index(seq: u16) -> (usize, u32) {
        let i = seq % NUMBERING_WINDOW;
        (usize::from(i / 64), u32::from(i % 64))
    }
    fn get(&self, seq: u16) -> bool {
        let (w, b) = Self::index(seq);
        self.0[w] >> b & 1 == 1
    }
    fn set(&mut self, seq: u16, on: bool) {
        let (w, b) = Self::index(seq);
        if on {
            self.0[w] |= 1 << b;
        } else {
            self.0[w] &= !(1 << b);
        }
    }
}

/// How one source's packets were numbered.
#[derive(Debug, Clone, Copy)]
struct Numbering {
    ssrc: u32,
    /// The oldest source sequence number still forwarded: the first one
    /// taken at the switch, later the oldest of the window.
    first: u16,
    /// The newest source sequence number seen (mapped or skipped).
    top: Option<u16>,
    /// A packet newer than `top` goes out as `seq + seq_offset`.
    seq_offset: u16,
    ts_offset: u32,
    /// The outgoing number of the source's first packet, until the
    /// window has moved past it (the previous source's packets, numbered
    /// before it, are then older than the window too).
    start_out: Option<u16>,
    /// The highest outgoing number mapped from it.
    last_out: Option<u16>,
    /// Packets skipped when they were the newest: they took no number.
    unnumbered: SeqBits,
    /// Packets skipped late: their number stays a hole for good.
    withheld: SeqBits,
}

/// `a` is `b` or after it, in sequence number space (RFC 3550 §A.1).
fn at_or_after(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) >= 0
}

impl Numbering {
    fn new(ssrc: u32, first: u16, seq_offset: u16, ts_offset: u32) -> Numbering {
        Numbering {
            ssrc,
            first,
            top: None,
            seq_offset,
            ts_offset,
            start_out: Some(first.wrapping_add(seq_offset)),
            last_out: None,
            unnumbered: SeqBits([0; WORDS]),
            withheld: SeqBits([0; WORDS]),
        }
    }

    /// Where `seq` stands: `Some(true)` newer than every packet seen,
    /// `Some(false)` within the window, `None` before the switch or the
    /// window.
    fn classify(&self, seq: u16) -> Option<bool> {
        if !at_or_after(seq, self.first) {
            return None;
        }
        match self.top {
            None => Some(true),
            Some(top) if !at_or_after(top, seq) => Some(true),
            Some(top) => (top.wrapping_sub(seq) < NUMBERING_WINDOW).then_some(false),
        }
    }

    /// `seq` is the newest now: the window moves up to it.
    fn advance(&mut self, seq: u16) {
        let from = self.top.unwrap_or(seq.wrapping_sub(NUMBERING_WINDOW));
        let n = seq.wrapping_sub(from).min(NUMBERING_WINDOW);
        for k in 0..n {
            let q = seq.wrapping_sub(k);
            self.unnumbered.set(q, false);
            self.withheld.set(q, false);
        }
        self.top = Some(seq);
        if seq.wrapping_sub(self.first) >= NUMBERING_WINDOW {
            self.first = seq.wrapping_sub(NUMBERING_WINDOW - 1);
            self.start_out = None;
        }
    }

    /// The outgoing number of a packet within the window that took one:
    /// each packet after it that took none moved the offset down since.
    fn number_of_late(&self, seq: u16) -> Option<u16> {
        let top = self.top?;
        if self.unnumbered.get(seq) {
            return None;
        }
        let back = top.wrapping_sub(seq);
        let later_unnumbered = (0..back)
            .filter(|&k| self.unnumbered.get(top.wrapping_sub(k)))
            .count() as u16;
        Some(
            seq.wrapping_add(self.seq_offset)
                .wrapping_add(later_unnumbered),
        )
    }

    /// Whether `out` is at or after the source's first outgoing number.
    fn numbered(&self, out: u16) -> bool {
        self.start_out.is_none_or(|s| at_or_after(out, s))
    }

    /// The source packet numbered `out`, walking down from the newest.
    fn source_of(&self, out: u16) -> Option<u16> {
        let top = self.top?;
        if !self.last_out.is_some_and(|l| at_or_after(l, out)) || !self.numbered(out) {
            return None;
        }
        let span = top.wrapping_sub(self.first).min(NUMBERING_WINDOW - 1);
        let mut later_unnumbered = 0u16;
        for back in 0..=span {
            let seq = top.wrapping_sub(back);
            if self.unnumbered.get(seq) {
                later_unnumbered += 1;
                continue;
            }
            let n = seq
                .wrapping_add(self.seq_offset)
                .wrapping_add(later_unnumbered);
            if n == out {
                return (!self.withheld.get(seq)).then_some(seq);
            }
            if !at_or_after(n, out) {
                return None;
            }
        }
        None
    }
}

/// Where an outgoing packet came from ([`Rewriter::locate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The source's SSRC.
    pub ssrc: u32,
    /// The packet's sequence number in the source.
    pub seq: u16,
    /// What was added to the source's timestamp.
    pub ts_offset: u32,
}

impl Rewriter {
    /// A rewriter for a stream on a `clock_rate` clock.
    pub fn new(clock_rate: u32) -> Rewriter {
        Rewriter {
            clock_rate: clock_rate.max(1),
            current: None,
            last: None,
            previous: None,
        }
    }

    /// Forgets the source and what was sent, keeping the clock: the next
    /// [`Rewriter::switch_to`] starts the stream afresh.
    pub fn reset(&mut self) {
        *self = Rewriter::new(self.clock_rate);
    }

    /// The SSRC forwarded now.
    pub fn source(&self) -> Option<u32> {
        self.current.as_ref().map(|c| c.ssrc)
    }

    // ANCHOR: switch_to
    /// Starts forwarding from `ssrc`, whose next packet has `seq` and
    /// `timestamp` (a keyframe's first packet): the offsets are chosen so
    /// that it follows the last packet sent by one sequence number and by
    /// the time elapsed since (at least one tick).
    pub fn switch_to(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32) {
        let (seq_offset, ts_offset) = match self.last {
            None => (0, 0),
            Some((last_seq, last_ts, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000)
                    .clamp(1, u128::from(u32::MAX / 2)) as u32;
                (
                    last_seq.wrapping_add(1).wrapping_sub(seq),
                    last_ts.wrapping_add(ticks).wrapping_sub(timestamp),
                )
            }
        };
        let old = self
            .current
            .replace(Numbering::new(ssrc, seq, seq_offset, ts_offset));
        if let Some(old) = old.filter(|o| o.last_out.is_some()) {
            self.previous = Some(old);
        }
    }
    // ANCHOR_END: switch_to

    // ANCHOR: map
    /// The outgoing `(sequence number, timestamp)` of a packet of the
    /// current source, or `None` to drop it (another source, older than
    /// the switch, or one that took no number).
    pub fn map(&mut self, now: Instant, ssrc: u32, seq: u16, timestamp: u32) -> Option<(u16, u32)> {
        let c = self.current.as_mut().filter(|c| c.ssrc == ssrc)?;
        let out = match c.classify(seq)? {
            true => {
                c.advance(seq);
                seq.wrapping_add(c.seq_offset)
            }
            // Late: the number its place kept.
            false => c.number_of_late(seq)?,
        };
        let out = (out, timestamp.wrapping_add(c.ts_offset));
        if c.last_out.is_none_or(|l| !at_or_after(l, out.0)) {
            c.last_out = Some(out.0);
        }
        let newer = self
            .last
            .is_none_or(|(s, _, _)| (out.0.wrapping_sub(s) as i16) > 0);
        if newer {
            self.last = Some((out.0, out.1, now));
        }
        Some(out)
    }
    // ANCHOR_END: map

    /// A packet of the current source that is not forwarded (an SVC layer
    /// the subscriber does not decode): the packets after it move down by
    /// one, so the subscriber sees no hole to NACK. Only a packet newer
    /// than every one seen can be taken out; a late one that is skipped
    /// is simply not sent (its number stays a hole, and a NACK for it
    /// finds nothing to send).
    pub fn skip(&mut self, ssrc: u32, seq: u16) {
        let Some(c) = self.current.as_mut().filter(|c| c.ssrc == ssrc) else {
            return;
        };
        match c.classify(seq) {
            Some(true) => {
                c.advance(seq);
                c.unnumbered.set(seq, true);
                c.seq_offset = c.seq_offset.wrapping_sub(1);
            }
            Some(false) if !c.unnumbered.get(seq) => c.withheld.set(seq, true),
            _ => {}
        }
    }

    /// The source sequence number of an outgoing one, if it was sent from
    /// the current source (to pass a subscriber's NACK on).
    pub fn source_seq(&self, out_seq: u16) -> Option<u16> {
        let ssrc = self.source()?;
        self.locate(out_seq)
            .filter(|o| o.ssrc == ssrc)
            .map(|o| o.seq)
    }

    /// Where the packet sent as `out_seq` came from: from the current
    /// source or the one before the last switch, within the last
    /// [`NUMBERING_WINDOW`] packets of its source. A number the SFU never
    /// got the packet for (a hole the subscriber NACKs) names the source
    /// packet that was to fill it; a number left a hole on purpose (a
    /// packet skipped late) names none. What repairs a subscriber's loss
    /// from a cache of the source's packets, or asks the publisher.
    pub fn locate(&self, out_seq: u16) -> Option<Origin> {
        let c = self.current.as_ref()?;
        let n = if c.numbered(out_seq) {
            c
        } else {
            self.previous.as_ref()?
        };
        n.source_of(out_seq).map(|seq| Origin {
            ssrc: n.ssrc,
            seq,
            ts_offset: n.ts_offset,
        })
    }

    /// The packet's sequence number and timestamp in this stream, for
    /// [`PeerConnection::send_rtp_into`] to write as it writes the header
    /// (no copy of the packet is rewritten first); `None` to drop it.
    ///
    /// [`PeerConnection::send_rtp_into`]: crate::peer::PeerConnection::send_rtp_into
    pub fn renumber(&mut self, now: Instant, p: &RtpPacket<'_>) -> Option<Renumber> {
        let (sequence_number, timestamp) =
            self.map(now, p.ssrc(), p.sequence_number(), p.timestamp())?;
        Some(Renumber {
            sequence_number,
            timestamp,
            marker: None,
        })
    }
}

/// The packets of one layer since its last keyframe began, so that a new
/// subscriber starts at once from that keyframe instead of waiting for a
/// PLI round trip and the publisher's next keyframe ("instant join").
///
/// Bounded: past `max_packets` or `max_bytes` (a long GOP) the cache is
/// dropped until the next keyframe, and a joiner asks for one as usual.
#[derive(Debug)]
pub struct KeyframeCache {
    packets: VecDeque<Vec<u8>>,
    bytes: usize,
    max_packets: usize,
    max_bytes: usize,
    /// The cache starts at a keyframe's first packet.
    valid: bool,
    /// Joiners started from this keyframe so far.
    replays: u32,
}

impl KeyframeCache {
    /// A cache of at most `max_packets` packets and `max_bytes` bytes.
    pub fn new(max_packets: usize, max_bytes: usize) -> KeyframeCache {
        KeyframeCache {
            packets: VecDeque::new(),
            bytes: 0,
            max_packets,
            max_bytes,
            replays: 0,
            valid: false,
        }
    }

    // ANCHOR: cache_push
    /// Records one packet of the layer; `keyframe_start` when it begins a
    /// keyframe (the cache restarts there).
    pub fn push(&mut self, packet: &[u8], keyframe_start: bool) {
        if keyframe_start {
            self.clear();
            self.valid = true;
        }
        if !self.valid {
            return;
        }
        if self.packets.len() >= self.max_packets || self.bytes + packet.len() > self.max_bytes {
            self.clear();
            return;
        }
        self.bytes += packet.len();
        // Reuse the buffer of the oldest packet dropped earlier, if any.
        self.packets.push_back(packet.to_vec());
    }
    // ANCHOR_END: cache_push

    /// Whether the cache holds a keyframe and what followed it.
    pub fn is_ready(&self) -> bool {
        self.valid && !self.packets.is_empty()
    }

    /// The cached packets, the keyframe's first packet first.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.packets.iter().map(Vec::as_slice)
    }

    /// The bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Counts a joiner started from the cache; how many were before it,
    /// from the same keyframe.
    pub fn count_replay(&mut self) -> u32 {
        self.replays += 1;
        self.replays - 1
    }

    /// The packets held.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True if it holds none.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// Forgets everything until the next keyframe.
    pub fn clear(&mut self) {
        self.packets.clear();
        self.bytes = 0;
        self.valid = false;
        self.replays = 0;
    }
}

/// Keyframe requests to one publisher's stream, aggregated: however many
/// subscribers ask (joiners, layer switches, decoder errors), at most one
/// PLI goes out per `interval`; a request inside the interval is kept and
/// sent when it ends (RFC 4585 §3.5.3 asks feedback senders to limit
/// themselves; RFC 5104 §4.3.1.2 warns of FIR storms from many receivers).
#[derive(Debug, Clone)]
pub struct KeyframeThrottle {
    interval: Duration,
    last: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    /// At most one request per `interval`.
    pub fn new(interval: Duration) -> KeyframeThrottle {
        KeyframeThrottle {
            interval,
            last: None,
            pending: false,
        }
    }

    // ANCHOR: throttle
    /// Someone wants a keyframe: `true` if a request goes out now.
    pub fn request(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|l| now.saturating_duration_since(l) < self.interval)
        {
            self.pending = true;
            return false;
        }
        self.last = Some(now);
        self.pending = false;
        true
    }
    // ANCHOR_END: throttle

    /// A keyframe arrived: requests waiting for one are satisfied.
    pub fn on_keyframe(&mut self) {
        self.pending = false;
    }

    /// When a kept request is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending
            .then(|| self.last.map(|l| l + self.interval))
            .flatten()
    }

    /// `true` if a kept request goes out now.
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.pending && self.poll_timeout().is_some_and(|t| t <= now) {
            self.pending = false;
            self.last = Some(now);
            return true;
        }
        false
    }
}

/// The bitrate of one layer as received, over a sliding second (what the
/// layer chooser compares with a subscriber's estimate).
#[derive(Debug, Clone, Default)]
pub struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    rate: u64,
    last_packet: Option<Instant>,
}

impl RateMeter {
    const WINDOW: Duration = Duration::from_millis(1000);

    /// A packet of `len` bytes arrived.
    pub fn on_packet(&mut self, now: Instant, len: usize) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let measured = self.bytes * 8 * 1_000_000 / (elapsed.as_micros().max(1) as u64);
            // Smooth a little: one keyframe does not make a layer.
            self.rate = if self.rate == 0 {
                measured
            } else {
                (self.rate * 3 + measured) / 4
            };
            self.window_start = Some(now);
            self.bytes = 0;
        }
        self.bytes += len as u64;
        self.last_packet = Some(now);
    }

    /// Bits per second: over the last whole window, or before one has
    /// passed, over what there is once it spans a quarter second (0
    /// before that).
    pub fn bitrate(&self) -> u64 {
        if self.rate > 0 {
            return self.rate;
        }
        match (self.window_start, self.last_packet) {
            (Some(start), Some(last)) => {
                let us = last.saturating_duration_since(start).as_micros() as u64;
                if us >= 250_000 {
                    self.bytes * 8 * 1_000_000 / us
                } else {
                    0
                }
            }
            _ => 0,
        }
    }

    /// Whether the layer sent within `within` of `now` (a paused layer
    /// does not count).
    pub fn active(&self, now: Instant, within: Duration) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) <= within)
    }
}

// ANCHOR: choose_layer
/// Which simulcast layer a subscriber should get: the best whose rate fits
/// in `estimate` with some headroom, the lowest if none does; `layers` are
/// `(index, bitrate)` of the active layers. An upward move needs 15 %
/// headroom over the layer's rate, staying needs none, so that an estimate
/// hovering at a layer's rate does not flap between two.
pub fn choose_layer(
    layers: &[(usize, u64)],
    estimate: Option<u64>,
    current: Option<usize>,
) -> Option<usize> {
    // Equal rates (layers not measured yet) order by index: the page
    // lists its layers from low to high.
    let lowest = layers
        .iter()
        .min_by_key(|(i, r)| (*r, *i))
        .map(|(i, _)| *i)?;
    let Some(est) = estimate else {
        return Some(
            current
                .filter(|c| layers.iter().any(|(i, _)| i == c))
                .unwrap_or(lowest),
        );
    };
    let current_rate = current.and_then(|c| layers.iter().find(|(i, _)| *i == c).map(|(_, r)| *r));
    layers
        .iter()
        .filter(|(i, r)| {
            if Some(*i) == current {
                *r <= est
            } else if current_rate.is_some_and(|c| *r <= c) {
                // Down (or sideways): fits plainly.
                *r <= est
            } else {
                r.saturating_mul(115) / 100 <= est
            }
        })
        .max_by_key(|(i, r)| (*r, *i))
        .map(|(i, _)| *i)
        .or(Some(lowest))
}
// ANCHOR_END: choose_layer

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_packets_leave_no_hole() {
        let now = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_to(now, 7, 100, 0);
        assert_eq!(r.map(now, 7, 100, 0), Some((100, 0)));
        r.skip(7, 101);
        r.skip(7, 102);
        assert_eq!(r.map(now, 7, 103, 0), Some((101, 0)));
        // A late packet already passed is not renumbered again.
        r.skip(7, 99);
        r.skip(7, 100);
        assert_eq!(r.map(now, 7, 104, 0), Some((102, 0)));
        // Another source's packets do not count.
        r.skip(8, 105);
        assert_eq!(r.map(now, 7, 105, 0), Some((103, 0)));
    }
    use crate::rtp::{HeaderFields, RtpPacket, emit_rtp_packet};

    fn packet(ssrc: u32, seq: u16, ts: u32) -> Vec<u8> {
        let mut buf = Vec::new();
        emit_rtp_packet(
            HeaderFields {
                marker: false,
                payload_type: 96,
                sequence_number: seq,
                timestamp: ts,
                ssrc,
            },
            &[],
            false,
            &[1, 2, 3],
            &mut buf,
        )
        .unwrap();
        buf
    }

    #[test]
    fn rewriter_keeps_the_stream_continuous_across_a_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_to(t0, 1, 1000, 5000);
        assert_eq!(r.map(t0, 1, 1000, 5000), Some((1000, 5000)));
        assert_eq!(r.map(t0, 1, 1001, 5000), Some((1001, 5000)));
        // A packet of another source is not ours.
        assert_eq!(r.map(t0, 2, 7, 9), None);
        // Switch 100 ms later to a source with other numbering.
        let t1 = t0 + Duration::from_millis(100);
        r.switch_to(t1, 2, 60_000, 4_000_000_000);
        assert_eq!(
            r.map(t1, 2, 60_000, 4_000_000_000),
            Some((1002, 5000 + 9000))
        );
        assert_eq!(
            r.map(t1, 2, 60_001, 4_000_003_000),
            Some((1003, 5000 + 12_000))
        );
        // Older than the switch point: dropped.
        assert_eq!(r.map(t1, 2, 59_999, 0), None);
        // The old source no longer passes.
        assert_eq!(r.map(t1, 1, 1002, 5000), None);
        // A NACK for an outgoing number maps back to the source.
        assert_eq!(r.source_seq(1003), Some(60_001));
        assert_eq!(r.source_seq(1001), None);
    }

    #[test]
    fn locate_finds_the_source_of_a_packet_sent_before_or_after_a_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        assert_eq!(r.locate(5), None);
        r.switch_to(t0, 1, 1000, 5000);
        for q in 1000..1010 {
            r.map(t0, 1, q, 5000);
        }
        let o = |ssrc, seq, ts_offset| {
            Some(Origin {
                ssrc,
                seq,
                ts_offset,
            })
        };
        assert_eq!(r.locate(1004), o(1, 1004, 0));
        // Not sent yet; before the stream began.
        assert_eq!(r.locate(1010), None);
        assert_eq!(r.locate(999), None);
        let t1 = t0 + Duration::from_millis(100);
        r.switch_to(t1, 2, 60_000, 4_000_000_000);
        for q in 60_000..60_005 {
            r.map(t1, 2, q, 4_000_000_000);
        }
        let ts = 5000u32.wrapping_add(9000).wrapping_sub(4_000_000_000);
        assert_eq!(r.locate(1011), o(2, 60_001, ts));
        // Sent from the first source before the switch.
        assert_eq!(r.locate(1004), o(1, 1004, 0));
        assert_eq!(r.locate(999), None);
        // A skip moves what follows it down by one; what went before it
        // keeps its number.
        r.skip(2, 60_005);
        r.map(t1, 2, 60_006, 0);
        assert_eq!(r.locate(1015), o(2, 60_006, ts));
        assert_eq!(r.locate(1013), o(2, 60_003, ts));
        assert_eq!(r.source_seq(1013), Some(60_003));
        assert_eq!(r.source_seq(1015), Some(60_006));
        // Two switches on: the first source is forgotten.
        r.switch_to(t1, 3, 7, 7);
        assert_eq!(r.locate(1004), None);
    }

    /// A subscriber's NACK for a number of a stream thinned by skips
    /// (SVC) names the source packet that had that number, or that was to
    /// have it (the SFU lost it: asked of the publisher), and nothing for
    /// a number left a hole on purpose; a packet arriving late, after
    /// later ones were skipped, gets the number its place kept, not one
    /// already sent.
    #[test]
    fn nacks_and_late_packets_map_back_across_skips() {
        let now = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_to(now, 7, 100, 0);
        let o = |seq| {
            Some(Origin {
                ssrc: 7,
                seq,
                ts_offset: 0,
            })
        };
        assert_eq!(r.map(now, 7, 100, 0), Some((100, 0)));
        // 101 is late, 102 skipped, 103 sent: 101's number is 101.
        r.skip(7, 102);
        assert_eq!(r.map(now, 7, 103, 0), Some((102, 0)));
        assert_eq!(r.locate(101), o(101), "the SFU's loss, to ask for");
        assert_eq!(r.map(now, 7, 101, 0), Some((101, 0)), "not 100 again");
        assert_eq!(r.locate(102), o(103));
        // 104 lost by the SFU, 105 skipped, 106 sent: the hole at 103 is
        // 104's, not the skipped 105's.
        r.skip(7, 105);
        assert_eq!(r.map(now, 7, 106, 0), Some((104, 0)));
        assert_eq!(r.locate(103), o(104));
        assert_eq!(r.locate(104), o(106));
        // 108 sent before 107, which comes late and is skipped: its
        // number stays a hole, and a NACK for it names nothing.
        assert_eq!(r.map(now, 7, 108, 0), Some((106, 0)));
        r.skip(7, 107);
        assert_eq!(r.locate(105), None);
        assert_eq!(r.locate(106), o(108));
        // Not sent yet.
        assert_eq!(r.locate(107), None);
        // A long run of skips between two packets sent.
        for q in 109..400 {
            r.skip(7, q);
        }
        assert_eq!(r.map(now, 7, 400, 0), Some((107, 0)));
        assert_eq!(r.locate(107), o(400));
        assert_eq!(r.locate(106), o(108));
    }

    /// The numbering holds past half the sequence space from the switch
    /// (a source's packets are compared with the window, not with where
    /// the stream began).
    #[test]
    fn a_long_stream_keeps_flowing() {
        let now = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.switch_to(now, 1, 0, 0);
        for k in 0..70_000u32 {
            let q = k as u16;
            assert_eq!(r.map(now, 1, q, k), Some((q, k)), "packet {k}");
            if k % 1000 == 999 {
                assert_eq!(r.source_seq(q.wrapping_sub(3)), Some(q.wrapping_sub(3)));
            }
        }
        // Far older than the window: dropped, and not located.
        assert_eq!(r.map(now, 1, 70_000u32.wrapping_sub(5000) as u16, 0), None);
    }

    #[test]
    fn rewriter_wraps() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.switch_to(t0, 1, 65_535, u32::MAX);
        assert_eq!(r.map(t0, 1, 65_535, u32::MAX), Some((65_535, u32::MAX)));
        r.switch_to(t0, 2, 10, 10);
        // At least one tick later even with no time elapsed.
        assert_eq!(r.map(t0, 2, 10, 10), Some((0, 0)));
        let buf = packet(2, 11, 970);
        let p = RtpPacket::new_checked(&buf).unwrap();
        let n = r.renumber(t0, &p).unwrap();
        assert_eq!((n.sequence_number, n.timestamp, n.marker), (1, 960, None));
    }

    #[test]
    fn cache_restarts_at_keyframes_and_stays_bounded() {
        let mut c = KeyframeCache::new(4, 1000);
        c.push(&[1; 10], false);
        assert!(!c.is_ready(), "no keyframe yet");
        c.push(&[2; 10], true);
        c.push(&[3; 10], false);
        assert!(c.is_ready());
        assert_eq!(c.packets().count(), 2);
        c.push(&[4; 10], true);
        assert_eq!(c.packets().next(), Some(&[4u8; 10][..]));
        for _ in 0..4 {
            c.push(&[5; 10], false);
        }
        assert!(
            !c.is_ready(),
            "past its bound the cache waits for a keyframe"
        );
        c.push(&[6; 10], false);
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn throttle_sends_one_request_per_interval() {
        let t0 = Instant::now();
        let mut t = KeyframeThrottle::new(Duration::from_millis(500));
        assert!(t.request(t0));
        for k in 1..10 {
            assert!(!t.request(t0 + Duration::from_millis(k * 10)));
        }
        assert_eq!(t.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        assert!(!t.handle_timeout(t0 + Duration::from_millis(499)));
        assert!(t.handle_timeout(t0 + Duration::from_millis(500)));
        assert_eq!(t.poll_timeout(), None);
        // A keyframe that arrives meanwhile satisfies a kept request.
        assert!(!t.request(t0 + Duration::from_millis(600)));
        t.on_keyframe();
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn layers_follow_the_estimate_with_headroom_upward() {
        let layers = [(0, 150_000), (1, 500_000), (2, 1_500_000)];
        assert_eq!(choose_layer(&layers, None, None), Some(0));
        assert_eq!(choose_layer(&layers, Some(100_000), None), Some(0));
        assert_eq!(choose_layer(&layers, Some(600_000), Some(0)), Some(1));
        assert_eq!(choose_layer(&layers, Some(560_000), Some(0)), Some(0));
        // 15 % headroom to go up.
        assert_eq!(choose_layer(&layers, Some(1_600_000), Some(1)), Some(1));
        assert_eq!(choose_layer(&layers, Some(1_800_000), Some(1)), Some(2));
        // Staying needs only the rate itself.
        assert_eq!(choose_layer(&layers, Some(1_550_000), Some(2)), Some(2));
        assert_eq!(choose_layer(&layers, Some(300_000), Some(2)), Some(0));
        assert_eq!(choose_layer(&[], Some(1), None), None);
    }

    #[test]
    fn rate_meter_measures_a_second() {
        let t0 = Instant::now();
        let mut m = RateMeter::default();
        for k in 0..=100 {
            m.on_packet(t0 + Duration::from_millis(k * 10), 1250);
        }
        // 100 packets of 1250 bytes in one second: 1 Mbit/s.
        assert!(
            (990_000..=1_010_000).contains(&m.bitrate()),
            "{}",
            m.bitrate()
        );
        assert!(m.active(t0 + Duration::from_millis(1100), Duration::from_millis(200)));
        assert!(!m.active(t0 + Duration::from_secs(3), Duration::from_millis(200)));
    }
}
