//! Loss recovery: a NACK generator on the receiver (RFC 4585 §6.2.1), a
//! bounded send history and RTX retransmission (RFC 4588) on the sender.
//!
//! The receiver notices holes in the sequence numbers and asks for them with a
//! generic NACK, again every retry interval (about one RTT) until they arrive
//! or it gives up. The sender keeps its last packets; for each NACKed one still
//! in its history it sends an RTX packet on a separate SSRC and payload type
//! (`a=rtpmap:97 rtx/90000`, `a=fmtp:97 apt=96`, `a=ssrc-group:FID`):
//!
//! ```text
//! RTX packet (RFC 4588 §4): original header with the RTX SSRC, PT and the RTX
//! stream's own sequence number, then
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            OSN                |   original payload ...        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::packet::{RtpPacket, RtpPacketMut};
use super::rtcp::Nack;
use super::seq::SeqUnwrapper;
use super::{Error, truncated};

#[derive(Debug, Clone, Copy)]
struct Missing {
    last_sent: Option<Instant>,
    retries: u32,
}

/// Receiver side: tracks missing sequence numbers and decides when to NACK them.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    unwrapper: SeqUnwrapper,
    highest: Option<u64>,
    lowest: u64,
    missing: BTreeMap<u64, Missing>,
    /// At most this many outstanding holes; older ones are forgotten.
    pub max_missing: usize,
    /// Each hole is asked for at most this many times.
    pub max_retries: u32,
    /// Time between two requests for the same packet (set it to about the RTT).
    pub retry_interval: Duration,
    gave_up: u64,
}

impl Default for NackGenerator {
    fn default() -> Self {
        NackGenerator {
            unwrapper: SeqUnwrapper::new(),
            highest: None,
            lowest: u64::MAX,
            missing: BTreeMap::new(),
            max_missing: 1000,
            max_retries: 10,
            retry_interval: Duration::from_millis(100),
            gave_up: 0,
        }
    }
}

impl NackGenerator {
    /// A generator with default limits (1000 holes, 10 retries, 100 ms).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the arrival of `seq` (an original or a recovered packet).
    pub fn on_packet(&mut self, seq: u16) {
        let ext = self.unwrapper.unwrap(seq);
        match self.highest {
            None => self.highest = Some(ext),
            Some(h) if ext > h => {
                // Every number skipped over is now missing; a jump larger than
                // the bound keeps only the newest holes.
                let from = (h + 1).max(ext.saturating_sub(self.max_missing as u64));
                for s in from..ext {
                    self.missing.insert(
                        s,
                        Missing {
                            last_sent: None,
                            retries: 0,
                        },
                    );
                }
                self.highest = Some(ext);
                while self.missing.len() > self.max_missing {
                    self.missing.pop_first();
                    self.gave_up += 1;
                }
            }
            Some(_) => {
                self.missing.remove(&ext);
                // Below everything seen so far (reordering at the start of a
                // stream): the numbers in between are missing too.
                if ext < self.lowest {
                    let to = self.lowest.min(ext + 1 + self.max_missing as u64);
                    for s in ext + 1..to {
                        self.missing.insert(
                            s,
                            Missing {
                                last_sent: None,
                                retries: 0,
                            },
                        );
                    }
                    while self.missing.len() > self.max_missing {
                        self.missing.pop_first();
                        self.gave_up += 1;
                    }
                }
            }
        }
        self.lowest = self.lowest.min(ext);
    }

    /// The sequence numbers to NACK now (oldest first), marking them sent.
    /// Holes asked for `max_retries` times are dropped.
    pub fn poll_nack(&mut self, now: Instant) -> Vec<u16> {
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for (&s, m) in self.missing.iter_mut() {
            if m.last_sent.is_some_and(|t| now < t + self.retry_interval) {
                continue;
            }
            if m.retries >= self.max_retries {
                expired.push(s);
                continue;
            }
            m.retries += 1;
            m.last_sent = Some(now);
            out.push(s as u16);
        }
        for s in expired {
            self.missing.remove(&s);
            self.gave_up += 1;
        }
        out
    }

    /// Builds the NACK packet for [`NackGenerator::poll_nack`]'s output, if any.
    pub fn poll_nack_packet(
        &mut self,
        now: Instant,
        sender_ssrc: u32,
        media_ssrc: u32,
    ) -> Option<Nack> {
        let lost = self.poll_nack(now);
        (!lost.is_empty()).then(|| Nack::from_lost(sender_ssrc, media_ssrc, lost))
    }

    /// When [`NackGenerator::poll_nack`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.missing
            .values()
            .filter_map(|m| m.last_sent.map(|t| t + self.retry_interval))
            .min()
    }

    /// Forgets every outstanding hole (e.g. after the frame assembler gave up
    /// and a keyframe was requested: retransmissions would come too late).
    pub fn clear(&mut self) {
        self.gave_up += self.missing.len() as u64;
        self.missing.clear();
    }

    /// Holes currently outstanding.
    pub fn missing_count(&self) -> usize {
        self.missing.len()
    }

    /// Holes given up on so far (too many retries, or pushed out by the bound).
    pub fn gave_up(&self) -> u64 {
        self.gave_up
    }
}

/// Sender side: the last `capacity` packets sent, by sequence number.
///
/// A ring of reused buffers: slot `n mod capacity` holds the packet with
/// extended sequence number `n`, so storing a packet copies it into a buffer
/// that already has room (no allocation once the ring has gone round), and
/// a newer packet overwrites the one `capacity` sequence numbers older.
/// Slots are made as packets arrive: a stream that never sends holds none.
#[derive(Debug, Clone)]
pub struct SendHistory {
    capacity: usize,
    unwrapper: SeqUnwrapper,
    /// `(extended sequence number, packet, last retransmitted)`;
    /// `u64::MAX` marks an empty slot.
    slots: Vec<(u64, Vec<u8>, Option<Instant>)>,
    /// The extended sequence number of the packet stored last
    /// (`u64::MAX`: none yet).
    last: u64,
}

/// A history of one packet is a forwarder's ([`crate::peer::Config::rtx_history`]):
/// its receivers' NACKs are answered from the forwarder's own cache, and
/// the one packet is kept as padding for bandwidth probes, which any
/// recent packet serves. It is refreshed once per this many packets
/// rather than copied for each: a forwarder sends every packet to
/// hundreds of receivers, and each copy wrote a cold buffer.
const ONE_SLOT_REFRESH: u64 = 64;

impl SendHistory {
    /// A history keeping at most `capacity` packets.
    pub fn new(capacity: usize) -> Self {
        SendHistory {
            capacity: capacity.max(1),
            unwrapper: SeqUnwrapper::new(),
            slots: Vec::new(),
            last: u64::MAX,
        }
    }

    /// Remembers a packet just sent (a whole RTP packet, before SRTP).
    pub fn store(&mut self, packet: &[u8]) -> Result<(), Error> {
        let seq = RtpPacket::new_checked(packet)?.sequence_number();
        let ext = self.unwrapper.unwrap(seq);
        if self.capacity == 1
            && self.last != u64::MAX
            && ext > self.last
            && ext - self.last < ONE_SLOT_REFRESH
        {
            return Ok(());
        }
        self.last = ext;
        let i = (ext % self.capacity as u64) as usize;
        while self.slots.len() <= i {
            // Room for any packet of a 1500-byte path: a slot never grows
            // again when a larger packet comes round to it.
            self.slots.push((u64::MAX, Vec::with_capacity(1500), None));
        }
        let slot = &mut self.slots[i];
        slot.0 = ext;
        slot.1.clear();
        slot.1.extend_from_slice(packet);
        slot.2 = None;
        Ok(())
    }

    /// The packet sent with `seq`, if still kept.
    pub fn get(&self, seq: u16) -> Option<&[u8]> {
        let ext = self.unwrapper.peek(seq);
        let (n, p, _) = self.slots.get((ext % self.capacity as u64) as usize)?;
        (*n == ext).then_some(p.as_slice())
    }

    /// The packet sent with `seq`, if kept and not retransmitted less than
    /// `min_interval` before `now`; marked retransmitted at `now`.
    fn take_for_resend(&mut self, seq: u16, now: Instant, min_interval: Duration) -> Option<&[u8]> {
        let ext = self.unwrapper.peek(seq);
        let (n, p, resent) = self.slots.get_mut((ext % self.capacity as u64) as usize)?;
        if *n != ext || resent.is_some_and(|t| now.saturating_duration_since(t) < min_interval) {
            return None;
        }
        *resent = Some(now);
        Some(p.as_slice())
    }

    /// The packet stored last, if still kept (it always is: nothing
    /// stored after it took its slot): with a full history the newest
    /// sent, with a one-packet history one of the last
    /// [`ONE_SLOT_REFRESH`].
    pub fn newest(&self) -> Option<&[u8]> {
        let (n, p, _) = self
            .slots
            .get((self.last % self.capacity as u64) as usize)?;
        (*n == self.last).then_some(p.as_slice())
    }

    /// Packets kept.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|(n, _, _)| *n != u64::MAX).count()
    }

    /// True if nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sender side: turns NACKed sequence numbers into RTX packets.
#[derive(Debug, Clone)]
pub struct RtxSender {
    /// The packets sent on the original stream.
    pub history: SendHistory,
    /// The RTX stream's SSRC.
    pub rtx_ssrc: u32,
    /// The RTX payload type (`apt` points at the original).
    pub rtx_payload_type: u8,
    /// The RTX stream's next sequence number.
    pub rtx_seq: u16,
    /// Packets resent from outside the history ([`RtxSender::resend_at`]):
    /// `(sequence number, when)` in slot `seq mod RECENT_RESENDS`, made at
    /// the first such resend.
    recent: Vec<(u16, Option<Instant>)>,
}

/// How many of the latest packets resent from outside the history
/// [`RtxSender::resend_at`] remembers, to send each once per interval.
const RECENT_RESENDS: usize = 64;

impl RtxSender {
    /// A sender keeping `capacity` packets; start `rtx_seq` at a random value.
    pub fn new(capacity: usize, rtx_ssrc: u32, rtx_payload_type: u8, rtx_seq: u16) -> Self {
        RtxSender {
            history: SendHistory::new(capacity),
            rtx_ssrc,
            rtx_payload_type,
            rtx_seq,
            recent: Vec::new(),
        }
    }

    /// Keeps at most `capacity` packets from now on (the packets kept go
    /// when it changes).
    pub fn set_capacity(&mut self, capacity: usize) {
        if self.history.capacity != capacity.max(1) {
            self.history = SendHistory::new(capacity);
        }
    }

    /// The RTX packet for `original`, a packet the caller kept itself
    /// rather than the history (a forwarder's cache per source), written
    /// into `buf` and handed to `send`, unless the same sequence number
    /// was resent less than `min_interval` before `now` (as
    /// [`RtxSender::on_nack_at`] spaces the history's packets). Whether it
    /// was handed over.
    pub fn resend_at(
        &mut self,
        original: &[u8],
        now: Instant,
        min_interval: Duration,
        buf: &mut Vec<u8>,
        send: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let Ok(p) = RtpPacket::new_checked(original) else {
            return false;
        };
        let seq = p.sequence_number();
        if self.recent.is_empty() {
            self.recent = vec![(0, None); RECENT_RESENDS];
        }
        let slot = &mut self.recent[usize::from(seq) % RECENT_RESENDS];
        if slot.0 == seq
            && slot
                .1
                .is_some_and(|t| now.saturating_duration_since(t) < min_interval)
        {
            return false;
        }
        buf.clear();
        if emit_rtx(
            original,
            self.rtx_ssrc,
            self.rtx_payload_type,
            self.rtx_seq,
            buf,
        )
        .is_err()
        {
            return false;
        }
        *slot = (seq, Some(now));
        self.rtx_seq = self.rtx_seq.wrapping_add(1);
        send(buf);
        true
    }

    /// The RTX packets answering a NACK (packets no longer kept are skipped).
    pub fn on_nack(&mut self, nack: &Nack) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        self.on_nack_each(nack, &mut buf, |p| out.push(p.clone()));
        out
    }

    /// Answers a NACK without allocating: each RTX packet is written into
    /// `buf` (cleared first) and handed to `send`, which may change it in
    /// place (SRTP protects it there). Returns how many were sent.
    pub fn on_nack_each(
        &mut self,
        nack: &Nack,
        buf: &mut Vec<u8>,
        mut send: impl FnMut(&mut Vec<u8>),
    ) -> usize {
        let mut n = 0;
        for seq in nack.lost() {
            let Some(orig) = self.history.get(seq) else {
                continue;
            };
            buf.clear();
            if emit_rtx(
                orig,
                self.rtx_ssrc,
                self.rtx_payload_type,
                self.rtx_seq,
                buf,
            )
            .is_ok()
            {
                self.rtx_seq = self.rtx_seq.wrapping_add(1);
                send(buf);
                n += 1;
            }
        }
        n
    }
}

impl RtxSender {
    /// As [`RtxSender::on_nack_each`], at `now`, skipping a packet already
    /// retransmitted less than `min_interval` ago (about one RTT): a
    /// receiver that asks again before the first copy could arrive (its
    /// retry timer shorter than a queue that congestion has lengthened)
    /// gets one copy, not one per request. Without this, every lost packet
    /// on a congested link comes back as many times as the receiver
    /// retries, and the retransmissions keep the link congested (libwebrtc
    /// spaces them by the RTT the same way).
    pub fn on_nack_at(
        &mut self,
        nack: &Nack,
        now: Instant,
        min_interval: Duration,
        buf: &mut Vec<u8>,
        mut send: impl FnMut(&mut Vec<u8>),
    ) -> usize {
        let mut n = 0;
        for seq in nack.lost() {
            let Some(orig) = self.history.take_for_resend(seq, now, min_interval) else {
                continue;
            };
            buf.clear();
            if emit_rtx(
                orig,
                self.rtx_ssrc,
                self.rtx_payload_type,
                self.rtx_seq,
                buf,
            )
            .is_ok()
            {
                self.rtx_seq = self.rtx_seq.wrapping_add(1);
                send(buf);
                n += 1;
            }
        }
        n
    }
}

/// Writes the RTX packet for `original` (RFC 4588 §4): same header fields
/// except SSRC, payload type and sequence number; the payload is the original
/// sequence number (OSN) then the original payload; padding is not copied.
pub fn emit_rtx(
    original: &[u8],
    rtx_ssrc: u32,
    rtx_pt: u8,
    rtx_seq: u16,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let p = RtpPacket::new_checked(original)?;
    let start = out.len();
    out.extend_from_slice(&original[..p.header_len()]);
    out[start] &= !0x20; // no padding bit: the padding stays behind
    out.extend_from_slice(&p.sequence_number().to_be_bytes());
    out.extend_from_slice(p.payload());
    let mut rtx = RtpPacketMut::new_checked(&mut out[start..])?;
    rtx.set_ssrc(rtx_ssrc);
    rtx.set_payload_type(rtx_pt);
    rtx.set_sequence_number(rtx_seq);
    Ok(())
}

/// Rebuilds the original packet from an RTX packet (RFC 4588 §4), given the
/// original stream's SSRC and payload type (from `a=ssrc-group:FID` and `apt`).
pub fn parse_rtx(rtx: &[u8], ssrc: u32, payload_type: u8, out: &mut Vec<u8>) -> Result<u16, Error> {
    let p = RtpPacket::new_checked(rtx)?;
    let payload = p.payload();
    if payload.len() < 2 {
        return Err(truncated("RTX original sequence number", 2, payload.len()));
    }
    let osn = u16::from_be_bytes([payload[0], payload[1]]);
    let start = out.len();
    out.extend_from_slice(&rtx[..p.header_len()]);
    out[start] &= !0x20; // the RTX packet's padding is not the original's
    out.extend_from_slice(&payload[2..]);
    let mut original = RtpPacketMut::new_checked(&mut out[start..])?;
    original.set_ssrc(ssrc);
    original.set_payload_type(payload_type);
    original.set_sequence_number(osn);
    Ok(osn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;
    use proptest::prelude::*;

    #[test]
    fn a_packet_kept_outside_the_history_is_resent_once_per_interval() {
        let t0 = Instant::now();
        let mut rtx = RtxSender::new(1, 9, 97, 500);
        let mut original = Vec::new();
        crate::rtp::emit_rtp_packet(
            crate::rtp::HeaderFields {
                marker: true,
                payload_type: 96,
                sequence_number: 4242,
                timestamp: 7,
                ssrc: 1,
            },
            &[],
            false,
            &[1, 2, 3],
            &mut original,
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut sent = Vec::new();
        let gap = Duration::from_millis(100);
        assert!(rtx.resend_at(&original, t0, gap, &mut buf, |p| sent.push(p.clone())));
        // Asked again within the interval: not sent; after it: sent.
        assert!(!rtx.resend_at(&original, t0 + gap / 2, gap, &mut buf, |_| panic!()));
        assert!(rtx.resend_at(&original, t0 + gap, gap, &mut buf, |p| sent.push(p.clone())));
        assert_eq!(sent.len(), 2);
        let mut back = Vec::new();
        assert_eq!(parse_rtx(&sent[1], 1, 96, &mut back), Ok(4242));
        assert_eq!(back, original);
        let r = RtpPacket::new_checked(&sent[1]).unwrap();
        assert_eq!((r.ssrc(), r.sequence_number()), (9, 501));
        // Garbage is not sent.
        assert!(!rtx.resend_at(&[1, 2], t0, gap, &mut buf, |_| panic!()));
    }

    #[test]
    fn nack_generator_retries_and_gives_up() {
        let t0 = Instant::now();
        let mut g = NackGenerator {
            max_retries: 2,
            ..NackGenerator::new()
        };
        for s in [65534u16, 65535, 2, 3] {
            g.on_packet(s);
        }
        assert_eq!(g.poll_nack(t0), vec![0, 1]);
        assert_eq!(
            g.poll_nack(t0 + Duration::from_millis(50)),
            Vec::<u16>::new()
        );
        assert_eq!(g.poll_timeout(), Some(t0 + Duration::from_millis(100)));
        g.on_packet(0); // recovered
        assert_eq!(g.poll_nack(t0 + Duration::from_millis(100)), vec![1]);
        assert!(g.poll_nack(t0 + Duration::from_millis(200)).is_empty());
        assert_eq!(g.gave_up(), 1);
        assert_eq!(g.missing_count(), 0);
        g.on_packet(6);
        assert_eq!(g.missing_count(), 2);
        g.clear();
        assert_eq!((g.missing_count(), g.gave_up()), (0, 3));
        assert!(g.poll_nack(t0 + Duration::from_secs(1)).is_empty());
    }

    #[test]
    fn a_packet_is_retransmitted_once_per_interval() {
        let t0 = Instant::now();
        let mut tx = RtxSender::new(16, 0xBBBB, 97, 500);
        for seq in 10..14u16 {
            let mut p = vec![0x80, 96];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0xAA, 0xAA, 7]);
            tx.history.store(&p).unwrap();
        }
        let nack = Nack::from_lost(1, 0xAAAA, [11, 12]);
        let rtt = Duration::from_millis(50);
        let mut buf = Vec::new();
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut ask = |tx: &mut RtxSender, nack: &Nack, at: Instant| {
            tx.on_nack_at(nack, at, rtt, &mut buf, |p| sent.push(p.clone()))
        };
        assert_eq!(ask(&mut tx, &nack, t0), 2);
        // Asked again within the interval: the copies may still arrive.
        assert_eq!(ask(&mut tx, &nack, t0 + Duration::from_millis(20)), 0);
        // After it, again (the copy was lost too); numbered on.
        let after = t0 + Duration::from_millis(60);
        assert_eq!(ask(&mut tx, &nack, after), 2);
        // Never stored: nothing.
        assert_eq!(ask(&mut tx, &Nack::from_lost(1, 0xAAAA, [27]), after), 0);
        let seqs: Vec<u16> = sent
            .iter()
            .map(|p| RtpPacket::new_checked(p).unwrap().sequence_number())
            .collect();
        assert_eq!(seqs, [500, 501, 502, 503]);
    }

    #[test]
    fn reordering_at_the_start_finds_holes_below_the_first_packet() {
        let mut g = NackGenerator::new();
        g.on_packet(105);
        g.on_packet(101);
        g.on_packet(103);
        assert_eq!(g.poll_nack(Instant::now()), vec![102, 104]);
    }

    #[test]
    fn huge_jump_is_bounded() {
        let mut g = NackGenerator {
            max_missing: 10,
            ..NackGenerator::new()
        };
        g.on_packet(0);
        g.on_packet(30000);
        assert_eq!(g.missing_count(), 10);
        assert_eq!(
            g.poll_nack(Instant::now()),
            (29990..30000).collect::<Vec<u16>>()
        );
    }

    /// A full history's newest is the packet sent last; a one-packet
    /// history (a forwarder's probe padding) copies one packet in
    /// [`ONE_SLOT_REFRESH`], across the sequence number's wrap too.
    #[test]
    fn a_one_packet_history_is_refreshed_not_copied_each_time() {
        let packet = |seq: u16| {
            let h = RtpHeader {
                payload_type: 96,
                sequence_number: seq,
                ssrc: 0xAAAA,
                ..Default::default()
            };
            let mut p = Vec::new();
            h.emit_packet(&[seq as u8; 20], 0, &mut p).unwrap();
            p
        };
        let seq_of = |p: &[u8]| RtpPacket::new_checked(p).unwrap().sequence_number();
        let mut full = SendHistory::new(8);
        let mut one = SendHistory::new(1);
        assert_eq!(one.newest(), None);
        let mut stored = 0;
        let start = 65_500u16;
        for k in 0..200u16 {
            let seq = start.wrapping_add(k);
            full.store(&packet(seq)).unwrap();
            let before = one.newest().map(seq_of);
            one.store(&packet(seq)).unwrap();
            let after = one.newest().map(seq_of);
            stored += usize::from(after != before);
            assert_eq!(full.newest().map(seq_of), Some(seq));
            let age = seq.wrapping_sub(after.unwrap());
            assert!(u64::from(age) < ONE_SLOT_REFRESH, "{age} packets old");
        }
        assert_eq!(stored, 200usize.div_ceil(ONE_SLOT_REFRESH as usize));
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn rtx_round_trip_through_history() {
        let mut tx = RtxSender::new(4, 0xBBBB, 97, 500);
        let mut sent = Vec::new();
        for seq in 10u16..16 {
            let h = RtpHeader {
                payload_type: 96,
                sequence_number: seq,
                ssrc: 0xAAAA,
                timestamp: 9,
                marker: true,
                ..Default::default()
            };
            let mut p = Vec::new();
            h.emit_packet(&[seq as u8; 20], 3, &mut p).unwrap();
            tx.history.store(&p).unwrap();
            sent.push(p);
        }
        assert_eq!(tx.history.len(), 4);
        let rtx = tx.on_nack(&Nack::from_lost(1, 0xAAAA, [10, 13, 15]));
        assert_eq!(rtx.len(), 2); // 10 fell out of the history
        let r = RtpPacket::new_checked(&rtx[0]).unwrap();
        assert_eq!(
            (r.ssrc(), r.payload_type(), r.sequence_number()),
            (0xBBBB, 97, 500)
        );
        assert_eq!(&r.payload()[..2], &[0, 13]);
        let mut orig = Vec::new();
        assert_eq!(parse_rtx(&rtx[1], 0xAAAA, 96, &mut orig).unwrap(), 15);
        // The original minus its padding.
        let o = RtpPacket::new_checked(&sent[5]).unwrap();
        let d = RtpPacket::new_checked(&orig).unwrap();
        assert_eq!(RtpHeader::from_packet(&o), RtpHeader::from_packet(&d));
        assert_eq!(o.payload(), d.payload());
    }

    proptest! {
        #[test]
        fn rtx_decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = parse_rtx(&data, 1, 96, &mut Vec::new());
        }

        #[test]
        fn generator_is_bounded(seqs in proptest::collection::vec(any::<u16>(), 0..100), t in proptest::collection::vec(0u64..1000, 0..20)) {
            let mut g = NackGenerator { max_missing: 50, ..NackGenerator::new() };
            let now = Instant::now();
            for s in seqs { g.on_packet(s); }
            for ms in t { let _ = g.poll_nack(now + Duration::from_millis(ms)); }
            prop_assert!(g.missing_count() <= 50);
        }
    }
}
