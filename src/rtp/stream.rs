//! One RTP stream's parts: a [`SendStream`] and a [`ReceiveStream`], the
//! per-SSRC state every sender and receiver keeps, whatever carries the
//! packets. [`session`](super::session)'s two machines (chapter 4) and
//! [`PeerConnection`](crate::peer::PeerConnection) are both built from them.
//!
//! ```text
//!  SendStream                                   ReceiveStream
//!  emit_packet(ts, marker, exts, payload)      receive(packet)
//!   │ sequence number (RFC 3550 §5.1)             │ RTX → original (RFC 4588 §4)
//!   │ clear copy kept for RTX (SendHistory)       │ loss and jitter (RFC 3550 A.3, A.8)
//!   │ SR counts (§6.4.1)                          │ NACK generator (RFC 4585 §6.2.1)
//!   ▼                                             │ frame assembly (or RTP out as is)
//!  on_nack → RTX packets                          ▼
//!  on_report_block → RTT, loss                  feedback → NACK, PLI when a frame is given up
//!  sender_report → SR                           report_block → our RR/SR block
//! ```
//!
//! Neither protects, sends or keeps time: the caller applies SRTP, puts the
//! datagrams on the wire and passes `now`. Neither allocates per packet
//! once warm: packets are written into the caller's buffer, the RTX history
//! is a ring of reused buffers, an RTX packet is rebuilt into a buffer the
//! stream keeps.

use std::time::{Duration, Instant};

use super::jitter::{Frame, FrameAssembler};
use super::nack::{NackGenerator, RtxSender, emit_rtx, parse_rtx};
use super::packet::{HeaderFields, emit_rtp_packet};
use super::payload::Depacketizer;
use super::rtcp::{Nack, Pli, ReportBlock, RtcpPacket, SenderReport};
use super::stats::{ReceiverStats, SenderStats, rtt_from_report};
use super::{Error, RtpPacket};

/// The spacing of two retransmissions of one packet before the first
/// receiver report gives an RTT, and its bounds after.
const DEFAULT_RTX_SPACING: Duration = Duration::from_millis(100);
const MIN_RTX_SPACING: Duration = Duration::from_millis(5);
const MAX_RTX_SPACING: Duration = Duration::from_secs(1);

/// What a [`SendStream`] counts (W3C `RTCOutboundRtpStreamStats` and the
/// `remote-inbound-rtp` figures the peer's reports carry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Original RTP packets sent.
    pub packets_sent: u64,
    /// Their payload bytes.
    pub bytes_sent: u64,
    /// Their RTP header bytes.
    pub header_bytes_sent: u64,
    /// RTX packets sent in answer to NACKs.
    pub retransmitted_packets_sent: u64,
    /// Their payload bytes, OSN included.
    pub retransmitted_bytes_sent: u64,
    /// Frames sent (packets with the marker bit).
    pub frames_sent: u64,
    /// NACK packets received for this stream.
    pub nack_count: u64,
    /// Sequence numbers those NACKs asked for.
    pub nacked_packets: u64,
    /// PLIs received.
    pub pli_count: u64,
    /// FIRs received.
    pub fir_count: u64,
    /// Sender reports written.
    pub sender_reports_sent: u64,
    /// Report blocks about this stream received.
    pub reports_received: u64,
    /// The last round-trip time from a report block (RFC 3550 §6.4.1).
    pub round_trip_time: Option<Duration>,
    /// The peer's last fraction lost, out of 256.
    pub fraction_lost: u8,
    /// The peer's cumulative loss count.
    pub remote_packets_lost: i64,
}

/// The sending half of one stream: sequence numbers, the RTX history and
/// retransmissions, the sender-report counts, statistics.
#[derive(Debug, Clone)]
pub struct SendStream {
    ssrc: u32,
    payload_type: u8,
    clock_rate: u32,
    seq: u16,
    /// The RTX stream (RFC 4588) and the history it answers from.
    rtx: Option<RtxSender>,
    /// RFC 8285 §4.1.1: the two-byte form may be used (`extmap-allow-mixed`).
    allow_two_byte: bool,
    sr: SenderStats,
    /// The RTP timestamp of the last packet and when it was written (the
    /// SR's RTP time is extrapolated from it).
    last_packet: Option<(u32, Instant)>,
    /// RTP written since our last SR (RFC 3550 §6.4: only senders send SRs).
    sent_since_report: bool,
    stats: SendStats,
    rtx_buf: Vec<u8>,
}

impl SendStream {
    /// A stream with SSRC `ssrc`, payload type `payload_type` on a
    /// `clock_rate` clock, whose first sequence number is `first_seq`
    /// (random, RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8, clock_rate: u32, first_seq: u16) -> Self {
        SendStream {
            ssrc,
            payload_type,
            clock_rate: clock_rate.max(1),
            seq: first_seq,
            rtx: None,
            allow_two_byte: false,
            sr: SenderStats::default(),
            last_packet: None,
            sent_since_report: false,
            stats: SendStats::default(),
            rtx_buf: Vec::new(),
        }
    }

    /// Turns on retransmission: RTX on `rtx_ssrc` with payload type
    /// `rtx_pt`, from a history of `history` packets. Called again (a
    /// renegotiation may change the payload type), it keeps the history.
    pub fn set_rtx(&mut self, rtx_ssrc: u32, rtx_pt: u8, history: usize, first_rtx_seq: u16) {
        match self.rtx.as_mut() {
            Some(r) => {
                r.rtx_ssrc = rtx_ssrc;
                r.rtx_payload_type = rtx_pt;
            }
            None => self.rtx = Some(RtxSender::new(history, rtx_ssrc, rtx_pt, first_rtx_seq)),
        }
    }

    /// Sets the payload type and clock of what follows (a renegotiation).
    pub fn set_codec(&mut self, payload_type: u8, clock_rate: u32) {
        self.payload_type = payload_type;
        self.clock_rate = clock_rate.max(1);
    }

    /// Allows the two-byte extension form (RFC 8285 §4.1.1, `extmap-allow-mixed`).
    pub fn set_allow_two_byte(&mut self, allow: bool) {
        self.allow_two_byte = allow;
    }

    /// The media SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The RTX SSRC, if retransmission is on.
    pub fn rtx_ssrc(&self) -> Option<u32> {
        self.rtx.as_ref().map(|r| r.rtx_ssrc)
    }

    /// The payload type written.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The media clock rate.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The sequence number the next packet gets.
    pub fn next_sequence_number(&self) -> u16 {
        self.seq
    }

    /// What was counted so far.
    pub fn stats(&self) -> &SendStats {
        &self.stats
    }

    // ANCHOR: write_packet
    /// Appends the stream's next packet to `out`: the header (this stream's
    /// SSRC, payload type and next sequence number; `marker` ends a video
    /// frame, RFC 3550 §5.1), the extension elements `extensions` (`(id,
    /// data)`, RFC 8285) and `payload`. A clear copy is kept for RTX: the
    /// caller protects `out` with SRTP afterwards.
    pub fn emit_packet(
        &mut self,
        now: Instant,
        timestamp: u32,
        marker: bool,
        extensions: &[(u8, &[u8])],
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let start = out.len();
        let fields = HeaderFields {
            marker,
            payload_type: self.payload_type,
            sequence_number: self.seq,
            timestamp,
            ssrc: self.ssrc,
        };
        emit_rtp_packet(fields, extensions, self.allow_two_byte, payload, out)?;
        self.seq = self.seq.wrapping_add(1);
        self.on_written(now, &out[start..], payload.len())
    }
    // ANCHOR_END: write_packet

    /// Records a packet the caller wrote itself (RTP mode: its sequence
    /// number and timestamp are the caller's; the next
    /// [`SendStream::emit_packet`] continues after its sequence number).
    pub fn record_packet(&mut self, now: Instant, packet: &[u8]) -> Result<(), Error> {
        let p = RtpPacket::new_checked(packet)?;
        self.seq = p.sequence_number().wrapping_add(1);
        self.on_written(now, packet, p.payload().len())
    }

    fn on_written(&mut self, now: Instant, packet: &[u8], payload: usize) -> Result<(), Error> {
        let p = RtpPacket::new_checked(packet)?;
        tracing::trace!(
            ssrc = p.ssrc(),
            pt = p.payload_type(),
            seq = p.sequence_number(),
            ts = p.timestamp(),
            marker = p.marker(),
            bytes = payload,
            "RTP sent"
        );
        if let Some(rtx) = self.rtx.as_mut() {
            rtx.history.store(packet)?;
        }
        self.sr.on_sent(payload);
        let s = &mut self.stats;
        s.packets_sent += 1;
        s.bytes_sent += payload as u64;
        s.header_bytes_sent += (packet.len() - payload) as u64;
        s.frames_sent += u64::from(p.marker());
        self.last_packet = Some((p.timestamp(), now));
        self.sent_since_report = true;
        Ok(())
    }

    // ANCHOR: on_nack
    /// Answers a NACK for this stream (RFC 4585 §6.2.1) with RTX packets
    /// (RFC 4588 §4) of every asked-for packet still kept: each is written
    /// into a buffer the stream reuses and handed to `send`, which protects
    /// it in place and says whether it went out. Returns how many did.
    /// A packet already retransmitted within the last round trip (as the
    /// receiver reports measure it, 100 ms before any report) is not sent
    /// again: one copy per request that could have been answered.
    pub fn on_nack(
        &mut self,
        now: Instant,
        nack: &Nack,
        mut send: impl FnMut(&mut Vec<u8>) -> bool,
    ) -> usize {
        tracing::trace!(media_ssrc = nack.media_ssrc, pairs = ?nack.pairs, "RTCP NACK received");
        self.stats.nack_count += 1;
        self.stats.nacked_packets += nack.lost().count() as u64;
        let spacing = self.rtx_spacing();
        let Some(rtx) = self.rtx.as_mut() else {
            return 0;
        };
        let (mut packets, mut bytes) = (0, 0);
        rtx.on_nack_at(nack, now, spacing, &mut self.rtx_buf, |p| {
            let payload = RtpPacket::new_checked(p).map_or(0, |r| r.payload().len());
            if send(p) {
                packets += 1;
                bytes += payload as u64;
            }
        });
        self.stats.retransmitted_packets_sent += packets;
        self.stats.retransmitted_bytes_sent += bytes;
        packets as usize
    }
    // ANCHOR_END: on_nack

    /// Resends on the RTX stream (RFC 4588 §4) `original`, a packet of this
    /// stream as it was sent, kept by the caller rather than the history
    /// (an SFU keeps one cache per source for all its receivers), spaced
    /// as [`SendStream::on_nack`] spaces the history's. `send` protects it
    /// in place and says whether it went out. Whether it did.
    pub fn resend(
        &mut self,
        now: Instant,
        original: &[u8],
        send: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> bool {
        let spacing = self.rtx_spacing();
        let Some(rtx) = self.rtx.as_mut() else {
            return false;
        };
        let mut sent = false;
        rtx.resend_at(original, now, spacing, &mut self.rtx_buf, |p| {
            sent = send(p);
        });
        if sent {
            let payload = RtpPacket::new_checked(original).map_or(0, |r| r.payload().len());
            self.stats.retransmitted_packets_sent += 1;
            self.stats.retransmitted_bytes_sent += payload as u64;
        }
        sent
    }

    /// Keeps at most `packets` for RTX from now on (what was kept goes if
    /// it changes); nothing without RTX.
    pub fn set_rtx_history(&mut self, packets: usize) {
        if let Some(rtx) = self.rtx.as_mut() {
            rtx.set_capacity(packets);
        }
    }

    /// How far apart two retransmissions of one packet go: about a round
    /// trip, as the receiver reports measure it.
    fn rtx_spacing(&self) -> Duration {
        self.stats
            .round_trip_time
            .unwrap_or(DEFAULT_RTX_SPACING)
            .clamp(MIN_RTX_SPACING, MAX_RTX_SPACING)
    }

    /// The sequence numbers `nack` asks for that the history no longer
    /// holds (all of them without RTX).
    pub fn not_kept<'a>(&'a self, nack: &'a Nack) -> impl Iterator<Item = u16> + 'a {
        nack.lost().filter(|&seq| {
            self.rtx
                .as_ref()
                .is_none_or(|r| r.history.get(seq).is_none())
        })
    }

    /// Writes into `out` an RTX copy of the newest packet kept (RFC 4588
    /// §4), as padding for a bandwidth probe; false if there is none.
    pub fn emit_padding_rtx(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(rtx) = self.rtx.as_mut() else {
            return false;
        };
        let Some(original) = rtx.history.newest() else {
            return false;
        };
        if emit_rtx(
            original,
            rtx.rtx_ssrc,
            rtx.rtx_payload_type,
            rtx.rtx_seq,
            out,
        )
        .is_err()
        {
            return false;
        }
        rtx.rtx_seq = rtx.rtx_seq.wrapping_add(1);
        true
    }

    /// A report block about this stream (in an RR or SR from the peer): the
    /// round-trip time (RFC 3550 §6.4.1: now − LSR − DLSR, `now_compact`
    /// being our NTP time's middle 32 bits) and the peer's loss.
    pub fn on_report_block(&mut self, now_compact: u32, block: &ReportBlock) {
        let s = &mut self.stats;
        s.reports_received += 1;
        s.fraction_lost = block.fraction_lost;
        s.remote_packets_lost = i64::from(block.cumulative_lost);
        if let Some(rtt) = rtt_from_report(now_compact, block) {
            s.round_trip_time = Some(rtt);
        }
    }

    /// A PLI for this stream arrived (RFC 4585 §6.3.1).
    pub fn on_pli(&mut self) {
        self.stats.pli_count += 1;
    }

    /// A FIR for this stream arrived (RFC 5104 §4.3.1).
    pub fn on_fir(&mut self) {
        self.stats.fir_count += 1;
    }

    /// The SR for this stream at `now` (NTP time `ntp`), carrying `reports`,
    /// if it sent RTP since its last one (RFC 3550 §6.4: a participant that
    /// has not sent sends an RR instead).
    pub fn sender_report(
        &mut self,
        now: Instant,
        ntp: u64,
        reports: Vec<ReportBlock>,
    ) -> Option<SenderReport> {
        if !self.sent_since_report {
            return None;
        }
        self.sent_since_report = false;
        // RFC 3550 §6.4.1: the RTP timestamp of the same instant as the NTP
        // one, extrapolated from the last packet written.
        let rtp_time = self.last_packet.map_or(0, |(ts, at)| {
            let elapsed = now.saturating_duration_since(at);
            let ticks = elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
            ts.wrapping_add(ticks as u32)
        });
        self.stats.sender_reports_sent += 1;
        Some(self.sr.sender_report(self.ssrc, ntp, rtp_time, reports))
    }
}

/// What a [`ReceiveStream`] counts (W3C `RTCInboundRtpStreamStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveStats {
    /// Packets received on the media SSRC (RTX excluded).
    pub packets_received: u64,
    /// Their payload bytes.
    pub bytes_received: u64,
    /// Their RTP header bytes.
    pub header_bytes_received: u64,
    /// RTX packets received and turned back into originals.
    pub rtx_packets_received: u64,
    /// Packets refused (an RTX packet that cannot be decoded or arrives
    /// before the media SSRC is known).
    pub rejected: u64,
    /// Frames delivered.
    pub frames_received: u64,
    /// Of those, keyframes.
    pub keyframes_received: u64,
    /// NACK packets sent.
    pub nack_count: u64,
    /// Sequence numbers asked for in them.
    pub nacked_packets: u64,
    /// PLIs sent.
    pub pli_count: u64,
    /// Sender reports received.
    pub sender_reports_received: u64,
}

/// What [`ReceiveStream::receive`] made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A packet of the media stream.
    Media,
    /// An RTX packet, turned back into the original
    /// ([`ReceiveStream::rebuilt`]).
    Rtx,
}

/// The receiving half of one stream: RTX decoding, reception statistics,
/// NACKs, frame assembly (or none: RTP mode), keyframe requests.
#[derive(Debug)]
pub struct ReceiveStream<D: Depacketizer> {
    /// The media SSRC: configured, or learned from the first media packet.
    ssrc: Option<u32>,
    /// `(rtx payload type, media payload type)` pairs (`apt=`, RFC 4588 §8.6).
    rtx_types: Vec<(u8, u8)>,
    clock_rate: u32,
    /// How long a hole may stay open before its frame is given up.
    max_wait: Duration,
    nack: Option<NackGenerator>,
    /// `None`: RTP mode, packets are handed on as they are.
    assembler: Option<FrameAssembler<D>>,
    capacity: usize,
    /// RFC 3550 A.3/A.8 statistics of the media SSRC, for our report blocks.
    rtcp: Option<ReceiverStats>,
    stats: ReceiveStats,
    /// The original rebuilt from the last RTX packet.
    rebuilt: Vec<u8>,
}

impl<D: Depacketizer> ReceiveStream<D> {
    /// A receiver on a `clock_rate` clock: with frame assembly by
    /// `depacketizer` (holding at most `capacity` packets) or, with `None`,
    /// none (RTP mode); with NACKs (video) if `nack`; giving a frame up after
    /// `max_wait` (NACKs are retried every tenth of it).
    pub fn new(
        clock_rate: u32,
        depacketizer: Option<D>,
        capacity: usize,
        nack: bool,
        max_wait: Duration,
    ) -> Self {
        ReceiveStream {
            ssrc: None,
            rtx_types: Vec::new(),
            clock_rate: clock_rate.max(1),
            max_wait,
            nack: nack.then(|| {
                let mut g = NackGenerator::new();
                // Stop asking well before the frame is given up.
                g.retry_interval = max_wait / 10;
                g
            }),
            assembler: depacketizer.map(|d| FrameAssembler::new(d, capacity)),
            capacity,
            rtcp: None,
            stats: ReceiveStats::default(),
            rebuilt: Vec::new(),
        }
    }

    /// Fixes the media SSRC (from `a=ssrc`), instead of learning it.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.rtcp = None;
        }
    }

    /// The RTX payload types and the media payload type each repairs.
    pub fn set_rtx_types(&mut self, pairs: Vec<(u8, u8)>) {
        self.rtx_types = pairs;
    }

    /// A new depacketizer (the peer switched codec): frames in flight are
    /// dropped. `None` switches to RTP mode.
    pub fn set_depacketizer(&mut self, depacketizer: Option<D>) {
        self.assembler = depacketizer.map(|d| FrameAssembler::new(d, self.capacity));
    }

    /// True when frames are assembled, false in RTP mode.
    pub fn assembles(&self) -> bool {
        self.assembler.is_some()
    }

    /// The media clock rate.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The media SSRC, once known.
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// True if `pt` is one of the stream's RTX payload types.
    pub fn is_rtx(&self, pt: u8) -> bool {
        self.rtx_types.iter().any(|(r, _)| *r == pt)
    }

    /// What was counted so far.
    pub fn stats(&self) -> &ReceiveStats {
        &self.stats
    }

    /// RFC 3550 A.3 cumulative loss and A.8 jitter (in clock ticks).
    pub fn loss_and_jitter(&self) -> (i64, u32) {
        self.rtcp
            .as_ref()
            .map_or((0, 0), |r| (r.cumulative_lost(), r.jitter()))
    }

    /// The original rebuilt from the last RTX packet [`ReceiveStream::receive`]
    /// took (valid after it returned [`Received::Rtx`]).
    pub fn rebuilt(&self) -> &[u8] {
        &self.rebuilt
    }

    // ANCHOR: receive
    /// One RTP packet routed to this stream (after SRTP). An RTX packet is
    /// turned back into the original (RFC 4588 §4); a media packet from a
    /// new SSRC starts the statistics over (RFC 3550 A.1). The original then
    /// feeds the NACK generator and the frame assembler. `None`: refused.
    pub fn receive(&mut self, now: Instant, packet: &RtpPacket<'_>) -> Option<Received> {
        let pt = packet.payload_type();
        tracing::trace!(
            ssrc = packet.ssrc(),
            pt,
            seq = packet.sequence_number(),
            ts = packet.timestamp(),
            marker = packet.marker(),
            bytes = packet.payload().len(),
            "RTP received"
        );
        if let Some(&(_, media_pt)) = self.rtx_types.iter().find(|(r, _)| *r == pt) {
            let mut buf = std::mem::take(&mut self.rebuilt);
            buf.clear();
            let ok = self.ssrc.is_some_and(|media_ssrc| {
                parse_rtx(packet.as_bytes(), media_ssrc, media_pt, &mut buf).is_ok()
            });
            let result = match RtpPacket::new_checked(&buf) {
                Ok(original) if ok => {
                    self.stats.rtx_packets_received += 1;
                    self.on_original(&original);
                    Some(Received::Rtx)
                }
                _ => {
                    self.stats.rejected += 1;
                    None
                }
            };
            self.rebuilt = buf;
            return result;
        }
        let ssrc = packet.ssrc();
        if self.ssrc != Some(ssrc) || self.rtcp.is_none() {
            self.ssrc = Some(ssrc);
            self.rtcp = Some(ReceiverStats::new(ssrc, self.clock_rate));
        }
        let payload = packet.payload().len();
        let s = &mut self.stats;
        s.packets_received += 1;
        s.bytes_received += payload as u64;
        s.header_bytes_received += (packet.as_bytes().len() - payload) as u64;
        if let Some(r) = self.rtcp.as_mut() {
            r.on_packet(now, packet.sequence_number(), packet.timestamp());
        }
        self.on_original(packet);
        Some(Received::Media)
    }
    // ANCHOR_END: receive

    fn on_original(&mut self, p: &RtpPacket<'_>) {
        if let Some(n) = self.nack.as_mut() {
            n.on_packet(p.sequence_number());
        }
        if let Some(a) = self.assembler.as_mut() {
            a.insert_packet(p);
        }
    }

    // ANCHOR: feedback
    /// What to ask the sender for at `now`, as RTCP packets from
    /// `sender_ssrc` handed to `send`: a NACK for what is missing (RFC 4585
    /// §6.2.1); and when a frame waited `max_wait` for a packet, that frame
    /// is given up and a PLI (§6.3.1) asks for a keyframe instead, since a
    /// retransmission would come too late.
    pub fn feedback(&mut self, now: Instant, sender_ssrc: u32, mut send: impl FnMut(RtcpPacket)) {
        let Some(media) = self.ssrc else {
            return;
        };
        if let Some(nack) = self
            .nack
            .as_mut()
            .and_then(|n| n.poll_nack_packet(now, sender_ssrc, media))
        {
            self.stats.nack_count += 1;
            self.stats.nacked_packets += nack.lost().count() as u64;
            tracing::trace!(media_ssrc = media, pairs = ?nack.pairs, "RTCP NACK sent");
            send(RtcpPacket::Nack(nack));
        }
        let Some(a) = self.assembler.as_mut() else {
            return;
        };
        a.give_up_if_stalled(now, self.max_wait);
        if a.take_keyframe_request() {
            if let Some(n) = self.nack.as_mut() {
                n.clear();
            }
            if let Some(pli) = self.pli(sender_ssrc) {
                tracing::trace!(media_ssrc = media, "RTCP PLI sent: a frame waited too long");
                send(RtcpPacket::Pli(pli));
            }
        }
    }
    // ANCHOR_END: feedback

    /// A PLI asking the sender of this stream for a keyframe (counted), if
    /// its SSRC is known.
    pub fn pli(&mut self, sender_ssrc: u32) -> Option<Pli> {
        let media_ssrc = self.ssrc?;
        self.stats.pli_count += 1;
        Some(Pli {
            sender_ssrc,
            media_ssrc,
        })
    }

    /// The next whole frame, in order.
    pub fn pop_frame(&mut self) -> Option<Frame> {
        let f = self.assembler.as_mut()?.pop_frame()?;
        self.stats.frames_received += 1;
        self.stats.keyframes_received += u64::from(f.keyframe);
        Some(f)
    }

    /// An SR from the stream's sender (for our LSR/DLSR, RFC 3550 §6.4.1).
    pub fn on_sender_report(&mut self, now: Instant, sr: &SenderReport) {
        self.stats.sender_reports_received += 1;
        if let Some(r) = self.rtcp.as_mut() {
            r.on_sender_report(now, sr);
        }
    }

    /// Our report block about this stream (RFC 3550 §6.4.1), once media came.
    pub fn report_block(&mut self, now: Instant) -> Option<ReportBlock> {
        self.rtcp.as_mut().map(|r| r.report_block(now))
    }

    /// When [`ReceiveStream::feedback`] must run next (a NACK retry, a frame
    /// to give up).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let nack = self.nack.as_ref().and_then(|n| n.poll_timeout());
        let stall = self
            .assembler
            .as_ref()
            .and_then(|a| a.stall_deadline(self.max_wait));
        nack.into_iter().chain(stall).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};
    use crate::rtp::{Packetizer, RtpPacketMut};
    use proptest::prelude::*;

    fn video_pair() -> (SendStream, ReceiveStream<Vp8Depacketizer>) {
        let mut tx = SendStream::new(7, 96, 90_000, 65_530);
        tx.set_rtx(8, 97, 64, 100);
        let mut rx = ReceiveStream::new(
            90_000,
            Some(Vp8Depacketizer),
            64,
            true,
            Duration::from_secs(1),
        );
        rx.set_rtx_types(vec![(97, 96)]);
        (tx, rx)
    }

    fn frame_packets(tx: &mut SendStream, now: Instant, ts: u32, frame: &[u8]) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        Vp8Packetizer::new(1)
            .packetize(frame, 500, &mut payloads)
            .unwrap();
        let n = payloads.len();
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut out = Vec::new();
                tx.emit_packet(now, ts, i + 1 == n, &[(1, b"0")], p, &mut out)
                    .unwrap();
                out
            })
            .collect()
    }

    #[test]
    fn a_lost_packet_is_nacked_and_repaired_by_rtx() {
        let now = Instant::now();
        let (mut tx, mut rx) = video_pair();
        let frame: Vec<u8> = (0..1800).map(|i| i as u8).collect();
        let packets = frame_packets(&mut tx, now, 3000, &frame);
        assert_eq!(packets.len(), 4);
        // The sequence numbers wrap: 65530..=65533.
        for (i, p) in packets.iter().enumerate() {
            if i != 1 {
                rx.receive(now, &RtpPacket::new_checked(p).unwrap());
            }
        }
        assert!(rx.pop_frame().is_none());
        let mut nacks = Vec::new();
        rx.feedback(now, 99, |p| nacks.push(p));
        let [RtcpPacket::Nack(nack)] = nacks.as_slice() else {
            panic!("one NACK expected, got {nacks:?}");
        };
        let mut rtx = Vec::new();
        assert_eq!(
            tx.on_nack(now, nack, |p| {
                rtx.push(p.clone());
                true
            }),
            1
        );
        let r = RtpPacket::new_checked(&rtx[0]).unwrap();
        assert_eq!(
            (r.ssrc(), r.payload_type(), r.sequence_number()),
            (8, 97, 100)
        );
        assert_eq!(rx.receive(now, &r), Some(Received::Rtx));
        assert_eq!(rx.rebuilt(), packets[1].as_slice());
        assert_eq!(rx.pop_frame().map(|f| f.data), Some(frame));
        assert_eq!(rx.stats().rtx_packets_received, 1);
        assert_eq!(rx.stats().packets_received, 3);
        assert_eq!(tx.stats().retransmitted_packets_sent, 1);
        assert_eq!(tx.stats().frames_sent, 1);
    }

    #[test]
    fn a_stalled_frame_is_given_up_with_a_pli() {
        let now = Instant::now();
        let (mut tx, mut rx) = video_pair();
        let packets = frame_packets(&mut tx, now, 0, &[1; 1500]);
        rx.receive(now, &RtpPacket::new_checked(&packets[0]).unwrap());
        rx.receive(now, &RtpPacket::new_checked(&packets[2]).unwrap());
        rx.feedback(now, 99, |_| {}); // the hole is seen: the wait starts
        let due = rx.poll_timeout().unwrap();
        assert!(due <= now + Duration::from_secs(1));
        let mut out = Vec::new();
        rx.feedback(now + Duration::from_secs(2), 99, |p| out.push(p));
        assert!(out.iter().any(|p| matches!(p, RtcpPacket::Pli(_))));
        assert_eq!(rx.stats().pli_count, 1);
    }

    #[test]
    fn sender_reports_only_after_sending() {
        let now = Instant::now();
        let (mut tx, _) = video_pair();
        assert!(tx.sender_report(now, 1 << 32, Vec::new()).is_none());
        frame_packets(&mut tx, now, 90_000, &[0; 100]);
        let sr = tx
            .sender_report(now + Duration::from_secs(1), 2 << 32, Vec::new())
            .unwrap();
        assert_eq!(sr.rtp_time, 180_000);
        assert_eq!(sr.packet_count, 1);
        assert!(tx.sender_report(now, 3 << 32, Vec::new()).is_none());
    }

    #[test]
    fn rtp_mode_hands_packets_on_and_record_keeps_them_for_rtx() {
        let now = Instant::now();
        let mut rx: ReceiveStream<Vp8Depacketizer> =
            ReceiveStream::new(90_000, None, 64, true, Duration::from_secs(1));
        let mut tx = SendStream::new(1, 96, 90_000, 0);
        tx.set_rtx(2, 97, 16, 0);
        // A forwarded packet: rewritten in place, then recorded.
        let mut p = Vec::new();
        SendStream::new(55, 100, 90_000, 4242)
            .emit_packet(now, 9, true, &[(3, b"ab")], b"xyz", &mut p)
            .unwrap();
        let mut m = RtpPacketMut::new_checked(&mut p).unwrap();
        m.set_ssrc(1);
        m.set_payload_type(96);
        m.remap_extension_ids(|id| (id == 3).then_some(5));
        tx.record_packet(now, &p).unwrap();
        assert_eq!(tx.next_sequence_number(), 4243);
        assert_eq!(
            rx.receive(now, &RtpPacket::new_checked(&p).unwrap()),
            Some(Received::Media)
        );
        assert!(rx.pop_frame().is_none());
        let q = RtpPacket::new_checked(&p).unwrap();
        assert_eq!(q.extension_element(5), Some(&b"ab"[..]));
        let nack = Nack {
            sender_ssrc: 0,
            media_ssrc: 1,
            pairs: vec![(4242, 0)],
        };
        assert_eq!(tx.on_nack(now, &nack, |_| true), 1);
    }

    proptest! {
        #[test]
        fn any_packet_never_panics_the_receiver(data in proptest::collection::vec(any::<u8>(), 12..300)) {
            let now = Instant::now();
            let (_, mut rx) = video_pair();
            if let Ok(p) = RtpPacket::new_checked(&data) {
                rx.receive(now, &p);
                rx.receive(now, &p);
            }
            rx.feedback(now + Duration::from_secs(5), 1, |_| {});
            while rx.pop_frame().is_some() {}
        }
    }
}
