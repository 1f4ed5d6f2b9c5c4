//! One media stream, sender and receiver, as sans-IO [`Machine`]s: the pieces
//! of this module wired together the way a browser wires them for one track.
//!
//! ```text
//!  MediaSender                                              MediaReceiver
//!  send_frame(frame)                                        poll_event() -> Frame
//!   │ packetize (Packetizer)                                 ▲ frame assembly
//!   │ RTP header, seq, timestamp                             │ NACK generator ──► NACK ─┐
//!   │ SendHistory ◄── NACK: RTX (RFC 4588) ◄─┐               │ RTX → original           │
//!   │ SRTP protect ──► datagram ─────────────┼─────────────► SRTP unprotect             │
//!   │ SR every second                        │               │ (replays refused)        │
//!   ▼                                        └── SRTCP unprotect ◄── SRTCP protect ◄────┘
//!                                       RR every second, PLI when a frame is given up
//! ```
//!
//! The sender protects RTP with its own master key and unprotects the
//! receiver's RTCP with the receiver's; the receiver the other way round
//! (RFC 5764 §4.2: each side protects what it sends with its write key).
//! RTP and RTCP share one address (rtcp-mux, RFC 5761), and RTCP feedback is
//! sent alone, without a report in front (reduced-size RTCP, RFC 5506).
//!
//! Each machine is a [`SendStream`] or a [`ReceiveStream`] (the per-stream
//! state [`PeerConnection`](crate::peer::PeerConnection) keeps too: one
//! pipeline) plus SRTP and a report timer. What a peer connection adds and
//! this leaves out: SDP (payload types and SSRCs are given in
//! [`StreamConfig`]), many streams on one transport, the RTCP interval of
//! RFC 3550 §6.3 (a fixed second here), congestion control, and answering a
//! PLI (the sender reports it as [`SenderEvent::KeyframeRequested`]; the
//! encoder is the application's).

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::machine::{Machine, Receive, Transmit};
use crate::srtp::{self, Config, MasterKey, SrtpContext};

use super::jitter::Frame;
use super::payload::{Depacketizer, Packetizer, Payloads};
use super::rtcp::{ReceiverReport, RtcpPacket, is_rtcp};
use super::stats::{ntp_compact, ntp_from_unix, rtt_from_report};
use super::stream::{ReceiveStream, Received, SendStream};
use super::{Error, RtpPacket};

/// What both ends of one stream agree on (in WebRTC, through SDP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    /// The media SSRC (`a=ssrc`).
    pub ssrc: u32,
    /// The RTX SSRC (`a=ssrc-group:FID ssrc rtx_ssrc`).
    pub rtx_ssrc: u32,
    /// The receiver's SSRC, the sender of its RTCP feedback.
    pub receiver_ssrc: u32,
    /// The media payload type (`a=rtpmap:96 VP8/90000`).
    pub payload_type: u8,
    /// The RTX payload type (`a=rtpmap:97 rtx/90000`, `a=fmtp:97 apt=96`).
    pub rtx_payload_type: u8,
    /// The media clock: 90 000 Hz for video, 48 000 Hz for Opus.
    pub clock_rate: u32,
    /// Largest RTP payload the packetizer may produce (the path MTU minus
    /// IP, UDP, RTP and SRTP overhead).
    pub max_payload: usize,
    /// Packets the sender keeps for retransmission.
    pub history: usize,
    /// How long the receiver waits for a missing packet before it gives up
    /// on the frame and asks for a keyframe.
    pub max_wait: Duration,
    /// How often each side sends its report (SR, RR).
    pub report_interval: Duration,
}

impl StreamConfig {
    /// A video stream (90 kHz clock, 1200-byte payloads) with RTX.
    pub fn video(ssrc: u32) -> Self {
        StreamConfig {
            ssrc,
            rtx_ssrc: ssrc.wrapping_add(1),
            receiver_ssrc: ssrc.wrapping_add(2),
            payload_type: 96,
            rtx_payload_type: 97,
            clock_rate: 90_000,
            max_payload: 1200,
            history: 1024,
            max_wait: Duration::from_secs(1),
            report_interval: Duration::from_secs(1),
        }
    }

    /// An Opus stream (48 kHz clock, payload type 111) with RTX.
    pub fn audio(ssrc: u32) -> Self {
        StreamConfig {
            payload_type: 111,
            rtx_payload_type: 112,
            clock_rate: 48_000,
            ..Self::video(ssrc)
        }
    }
}

/// What went wrong sending a frame (API misuse or an exhausted key).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The frame could not be packetized or written.
    Rtp(Error),
    /// SRTP refused to protect (e.g. the index space ran out).
    Srtp(srtp::Error),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Rtp(e) => write!(f, "cannot send the frame: {e}"),
            SessionError::Srtp(e) => write!(f, "cannot protect the packet: {e}"),
        }
    }
}

impl std::error::Error for SessionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SessionError::Rtp(e) => Some(e),
            SessionError::Srtp(e) => Some(e),
        }
    }
}

impl From<Error> for SessionError {
    fn from(e: Error) -> Self {
        SessionError::Rtp(e)
    }
}

impl From<srtp::Error> for SessionError {
    fn from(e: srtp::Error) -> Self {
        SessionError::Srtp(e)
    }
}

/// Counts kept by both ends, for tests and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Media packets sent (sender) or media packets accepted (receiver),
    /// retransmissions excluded.
    pub packets: u64,
    /// RTX packets sent (sender) or recovered through RTX (receiver).
    pub retransmitted: u64,
    /// Sequence numbers asked for in NACKs (sent by the receiver, received by
    /// the sender).
    pub nacked: u64,
    /// PLIs sent (receiver) or received (sender).
    pub plis: u64,
    /// Datagrams refused by SRTP/SRTCP as replays (network duplicates).
    pub replays: u64,
    /// Datagrams refused for any other reason (bad tag, malformed, unknown SSRC).
    pub rejected: u64,
    /// RTCP reports sent (SR or RR).
    pub reports: u64,
}

/// What the sender tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SenderEvent {
    /// The receiver asked for a keyframe (PLI): encode the next frame as one.
    KeyframeRequested,
    /// A receiver report came back: the round-trip time from LSR/DLSR
    /// (RFC 3550 §6.4.1) and the loss it reported.
    Report {
        /// The round-trip time, if the report referenced one of our SRs.
        rtt: Option<Duration>,
        /// Loss since the previous report, in 1/256.
        fraction_lost: u8,
        /// Packets lost so far.
        cumulative_lost: i32,
    },
}

/// The sending end of one stream.
pub struct MediaSender<P: Packetizer> {
    config: StreamConfig,
    remote: SocketAddr,
    packetizer: P,
    /// Sequence numbers, the RTX history, SR counts: the part
    /// `PeerConnection` shares.
    stream: SendStream,
    /// Protects our RTP (and RTX) with our master key.
    srtp: SrtpContext,
    /// Unprotects the receiver's RTCP with its master key.
    srtcp: SrtpContext,
    /// The virtual NTP clock: time since `epoch`, offset as if from 1970.
    epoch: Instant,
    next_report: Option<Instant>,
    payloads: Payloads,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SenderEvent>,
    stats: SessionStats,
}

impl<P: Packetizer> fmt::Debug for MediaSender<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaSender")
            .field("config", &self.config)
            .field("remote", &self.remote)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<P: Packetizer> MediaSender<P> {
    /// A sender to `remote`, protecting with `local_key` and checking the
    /// receiver's RTCP with `remote_key`. `first_seq` should be random
    /// (RFC 3550 §5.1). `now` starts the report clock.
    pub fn new(
        now: Instant,
        config: StreamConfig,
        remote: SocketAddr,
        packetizer: P,
        local_key: &MasterKey,
        remote_key: &MasterKey,
        first_seq: u16,
    ) -> Result<Self, srtp::Error> {
        let mut stream = SendStream::new(
            config.ssrc,
            config.payload_type,
            config.clock_rate,
            first_seq,
        );
        stream.set_rtx(
            config.rtx_ssrc,
            config.rtx_payload_type,
            config.history,
            first_seq ^ 0x5a5a,
        );
        Ok(MediaSender {
            stream,
            config,
            remote,
            packetizer,
            srtp: SrtpContext::from_master_key(local_key, Config::default())?,
            srtcp: SrtpContext::from_master_key(remote_key, Config::default())?,
            epoch: now,
            next_report: None,
            payloads: Payloads::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: SessionStats::default(),
        })
    }

    // ANCHOR: send_frame
    /// Packetizes one encoded frame with RTP timestamp `timestamp`, protects
    /// each packet and queues it; returns how many packets it took.
    pub fn send_frame(
        &mut self,
        now: Instant,
        timestamp: u32,
        frame: &[u8],
    ) -> Result<usize, SessionError> {
        self.payloads.clear();
        self.packetizer
            .packetize_into(frame, self.config.max_payload, &mut self.payloads)?;
        let n = self.payloads.len();
        for (i, payload) in self.payloads.iter().enumerate() {
            let mut packet = Vec::with_capacity(12 + payload.len() + 16);
            // RFC 3550 §5.1: the marker ends the frame. The stream numbers
            // the packet and keeps it in the clear for RTX.
            self.stream
                .emit_packet(now, timestamp, i + 1 == n, &[], payload, &mut packet)?;
            self.srtp.protect_rtp(&mut packet)?;
            self.stats.packets += 1;
            self.transmits.push_back(Transmit {
                source: None,
                destination: self.remote,
                contents: packet,
            });
        }
        self.next_report
            .get_or_insert(now + self.config.report_interval);
        Ok(n)
    }
    // ANCHOR_END: send_frame

    /// The counts so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The stream's configuration.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    fn transmit(&mut self, contents: Vec<u8>) {
        self.transmits.push_back(Transmit {
            source: None,
            destination: self.remote,
            contents,
        });
    }

    fn ntp(&self, now: Instant) -> u64 {
        ntp_from_unix(now.saturating_duration_since(self.epoch))
    }

    fn on_rtcp(&mut self, now: Instant, packet: &RtcpPacket) {
        match packet {
            RtcpPacket::Nack(nack) if nack.media_ssrc == self.config.ssrc => {
                self.stats.nacked += nack.lost().count() as u64;
                let (srtp, transmits, remote) = (&mut self.srtp, &mut self.transmits, self.remote);
                // Each RTX packet is protected and queued.
                let sent = self.stream.on_nack(now, nack, |rtx| {
                    let ok = srtp.protect_rtp(rtx).is_ok();
                    if ok {
                        transmits.push_back(Transmit {
                            source: None,
                            destination: remote,
                            contents: rtx.clone(),
                        });
                    }
                    ok
                });
                self.stats.retransmitted += sent as u64;
            }
            RtcpPacket::Pli(pli) if pli.media_ssrc == self.config.ssrc => {
                self.stream.on_pli();
                self.stats.plis += 1;
                self.events.push_back(SenderEvent::KeyframeRequested);
            }
            RtcpPacket::ReceiverReport(rr) => {
                for block in rr.reports.iter().filter(|b| b.ssrc == self.config.ssrc) {
                    self.stream
                        .on_report_block(ntp_compact(self.ntp(now)), block);
                    self.events.push_back(SenderEvent::Report {
                        rtt: rtt_from_report(ntp_compact(self.ntp(now)), block),
                        fraction_lost: block.fraction_lost,
                        cumulative_lost: block.cumulative_lost,
                    });
                }
            }
            _ => {}
        }
    }
}

impl<P: Packetizer> Machine for MediaSender<P> {
    type Event = SenderEvent;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        if !is_rtcp(datagram.contents) {
            self.stats.rejected += 1;
            return;
        }
        let mut buf = datagram.contents.to_vec();
        match self.srtcp.unprotect_rtcp(&mut buf) {
            Ok(()) => {}
            Err(srtp::Error::Replayed { .. }) => {
                self.stats.replays += 1;
                return;
            }
            Err(_) => {
                self.stats.rejected += 1;
                return;
            }
        }
        match RtcpPacket::parse_compound(&buf, true) {
            Ok(packets) => {
                for p in &packets {
                    self.on_rtcp(now, p);
                }
            }
            Err(_) => self.stats.rejected += 1,
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let Some(due) = self.next_report else { return };
        if now < due {
            return;
        }
        self.next_report = Some(now + self.config.report_interval);
        let ntp = self.ntp(now);
        let Some(sr) = self.stream.sender_report(now, ntp, Vec::new()) else {
            return; // nothing sent since the last report
        };
        let mut buf = Vec::new();
        // Our RTCP is protected with our own key, like our RTP.
        if RtcpPacket::SenderReport(sr).emit(&mut buf).is_ok()
            && self.srtp.protect_rtcp(&mut buf).is_ok()
        {
            self.stats.reports += 1;
            self.transmit(buf);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<SenderEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_report
    }
}

/// The receiving end of one stream. Its events are the frames, in order.
pub struct MediaReceiver<D: Depacketizer> {
    config: StreamConfig,
    remote: SocketAddr,
    /// RTX decoding, statistics, NACKs, frame assembly: the part
    /// `PeerConnection` shares.
    stream: ReceiveStream<D>,
    /// Unprotects the sender's RTP and RTX with its master key.
    srtp: SrtpContext,
    /// Protects our RTCP with our master key.
    srtcp: SrtpContext,
    next_report: Option<Instant>,
    buf: Vec<u8>,
    transmits: VecDeque<Transmit>,
    frames: VecDeque<Frame>,
    stats: SessionStats,
}

impl<D: Depacketizer> fmt::Debug for MediaReceiver<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaReceiver")
            .field("config", &self.config)
            .field("remote", &self.remote)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<D: Depacketizer> MediaReceiver<D> {
    /// A receiver whose feedback goes to `remote`; it unprotects with the
    /// sender's `remote_key` and protects its RTCP with `local_key`.
    pub fn new(
        config: StreamConfig,
        remote: SocketAddr,
        depacketizer: D,
        local_key: &MasterKey,
        remote_key: &MasterKey,
    ) -> Result<Self, srtp::Error> {
        let mut stream = ReceiveStream::new(
            config.clock_rate,
            Some(depacketizer),
            config.history,
            true,
            config.max_wait,
        );
        stream.set_ssrc(config.ssrc);
        stream.set_rtx_types(vec![(config.rtx_payload_type, config.payload_type)]);
        Ok(MediaReceiver {
            stream,
            config,
            remote,
            srtp: SrtpContext::from_master_key(remote_key, Config::default())?,
            srtcp: SrtpContext::from_master_key(local_key, Config::default())?,
            next_report: None,
            buf: Vec::new(),
            transmits: VecDeque::new(),
            frames: VecDeque::new(),
            stats: SessionStats::default(),
        })
    }

    /// The counts so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Reception statistics of the media stream (loss and jitter:
    /// [`ReceiveStream::loss_and_jitter`]).
    pub fn stream(&self) -> &ReceiveStream<D> {
        &self.stream
    }

    fn send_rtcp(&mut self, packet: RtcpPacket) {
        let mut buf = Vec::new();
        if packet.emit(&mut buf).is_ok() && self.srtcp.protect_rtcp(&mut buf).is_ok() {
            self.transmits.push_back(Transmit {
                source: None,
                destination: self.remote,
                contents: buf,
            });
        }
    }

    /// NACKs what is missing now; gives a frame up after `max_wait` and asks
    /// for a keyframe instead (PLI): [`ReceiveStream::feedback`].
    fn feedback(&mut self, now: Instant) {
        let mut rtcp = Vec::new();
        self.stream
            .feedback(now, self.config.receiver_ssrc, |p| rtcp.push(p));
        for p in rtcp {
            match &p {
                RtcpPacket::Nack(n) => self.stats.nacked += n.lost().count() as u64,
                RtcpPacket::Pli(_) => self.stats.plis += 1,
                _ => {}
            }
            self.send_rtcp(p);
        }
        while let Some(frame) = self.stream.pop_frame() {
            self.frames.push_back(frame);
        }
    }

    /// Unprotects one datagram into `self.buf`; false if refused.
    fn unprotect(&mut self, contents: &[u8]) -> bool {
        self.buf.clear();
        self.buf.extend_from_slice(contents);
        match self.srtp.unprotect_rtp(&mut self.buf) {
            Ok(()) => true,
            Err(srtp::Error::Replayed { .. }) => {
                self.stats.replays += 1;
                false
            }
            Err(_) => {
                self.stats.rejected += 1;
                false
            }
        }
    }
}

impl<D: Depacketizer> Machine for MediaReceiver<D> {
    type Event = Frame;

    fn handle_receive(&mut self, now: Instant, datagram: Receive<'_>) {
        if is_rtcp(datagram.contents) {
            let mut buf = datagram.contents.to_vec();
            if self.srtp.unprotect_rtcp(&mut buf).is_ok() {
                for p in RtcpPacket::parse_compound(&buf, true).unwrap_or_default() {
                    if let RtcpPacket::SenderReport(sr) = p {
                        self.stream.on_sender_report(now, &sr);
                    }
                }
            }
            return;
        }
        if !self.unprotect(datagram.contents) {
            return;
        }
        let Ok(packet) = RtpPacket::new_checked(&self.buf) else {
            self.stats.rejected += 1;
            return;
        };
        let (ssrc, pt) = (packet.ssrc(), packet.payload_type());
        let ours = (ssrc == self.config.rtx_ssrc && pt == self.config.rtx_payload_type)
            || (ssrc == self.config.ssrc && pt == self.config.payload_type);
        // The stream turns RTX back into the original and feeds the NACK
        // generator, the statistics and the frame assembler.
        match self.stream.receive(now, &packet).filter(|_| ours) {
            Some(Received::Media) => self.stats.packets += 1,
            Some(Received::Rtx) => self.stats.retransmitted += 1,
            None => {
                self.stats.rejected += 1;
                return;
            }
        }
        self.next_report
            .get_or_insert(now + self.config.report_interval);
        self.feedback(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.feedback(now);
        if self.next_report.is_some_and(|t| now >= t) {
            self.next_report = Some(now + self.config.report_interval);
            let rr = ReceiverReport {
                ssrc: self.config.receiver_ssrc,
                reports: self.stream.report_block(now).into_iter().collect(),
                profile_extension: Vec::new(),
            };
            self.stats.reports += 1;
            self.send_rtcp(RtcpPacket::ReceiverReport(rr));
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn poll_event(&mut self) -> Option<Frame> {
        self.frames.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.stream.poll_timeout(), self.next_report]
            .into_iter()
            .flatten()
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};
    use crate::srtp::ProtectionProfile;
    use proptest::prelude::*;

    fn pair(
        now: Instant,
    ) -> (
        MediaSender<Vp8Packetizer>,
        MediaReceiver<Vp8Depacketizer>,
        SocketAddr,
        SocketAddr,
    ) {
        let (a, b): (SocketAddr, SocketAddr) = (
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        let p = ProtectionProfile::AeadAes128Gcm;
        let (ck, sk) = p.split_keying_material(&[9; 56]).unwrap();
        let cfg = StreamConfig::video(7);
        let tx = MediaSender::new(now, cfg.clone(), b, Vp8Packetizer::new(1), &ck, &sk, 1).unwrap();
        let rx = MediaReceiver::new(cfg, a, Vp8Depacketizer, &sk, &ck).unwrap();
        (tx, rx, a, b)
    }

    #[test]
    fn a_frame_crosses_and_a_tampered_packet_is_rejected() {
        let now = Instant::now();
        let (mut tx, mut rx, a, b) = pair(now);
        assert_eq!(tx.send_frame(now, 0, &[0x10; 3000]).unwrap(), 3);
        let packets: Vec<_> = std::iter::from_fn(|| tx.poll_transmit()).collect();
        let mut bad = packets[0].contents.clone();
        bad[20] ^= 1;
        for contents in std::iter::once(&bad).chain(packets.iter().map(|t| &t.contents)) {
            rx.handle_receive(
                now,
                Receive {
                    source: a,
                    destination: b,
                    contents,
                },
            );
        }
        assert_eq!(rx.poll_event().map(|f| f.data), Some(vec![0x10; 3000]));
        assert_eq!(rx.stats().rejected, 1);
        assert_eq!(rx.stats().packets, 3);
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let now = Instant::now();
            let (mut tx, mut rx, a, b) = pair(now);
            let d = Receive { source: a, destination: b, contents: &data };
            tx.handle_receive(now, d);
            rx.handle_receive(now, d);
            rx.handle_timeout(now + Duration::from_secs(2));
            tx.handle_timeout(now + Duration::from_secs(2));
            prop_assert!(rx.poll_event().is_none());
        }
    }
}
