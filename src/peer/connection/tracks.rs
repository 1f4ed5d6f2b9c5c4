//! Track senders: adding and removing tracks (one or several simulcast
//! layers, RFC 8853), packetizing frames or forwarding RTP, the pacer and
//! the bandwidth estimate it follows.

use super::*;
use crate::machine::TransmitMeta;

impl PeerConnection {
    /// `addTrack`: a sending transceiver of `kind` (VP8 for video, Opus for
    /// audio), signaled by the next offer or answer.
    pub fn add_track(&mut self, kind: MediaKind) -> Result<TrackId, Error> {
        match kind {
            MediaKind::Video => self.add_track_with_codec(TrackCodec::Vp8),
            MediaKind::Audio => self.add_track_with_codec(TrackCodec::Opus),
            MediaKind::Application => Err(Error::Misuse("a track is audio or video")),
        }
    }

    /// `addTrack` with the codec the track sends: VP8, VP9, AV1 or H.264 for
    /// video, Opus for audio. The m-line offers every codec of our capabilities
    /// (the peer may send us any); this track sends with `codec` if the
    /// offer/answer kept it ([`PeerConnection::send_frame`] fails if not).
    pub fn add_track_with_codec(&mut self, codec: TrackCodec) -> Result<TrackId, Error> {
        self.add_track_in_stream(codec, None)
    }

    /// `addTrack(track, stream)`: as [`PeerConnection::add_track_with_codec`],
    /// the track signaled as part of the media stream `stream_id` (its
    /// `a=msid`, RFC 8830 §2), so that the peer's `ontrack` groups it with
    /// the other tracks of that stream (an SFU gives each participant's
    /// audio and video one stream id). `None`: a stream of its own.
    pub fn add_track_in_stream(
        &mut self,
        codec: TrackCodec,
        stream_id: Option<&str>,
    ) -> Result<TrackId, Error> {
        self.add_layers(codec, stream_id, &[]).map(|t| t[0])
    }

    /// `addTrack` with `sendEncodings` of several `rid`s: simulcast (RFC
    /// 8853). One video track sent as `rids.len()` independent RTP streams,
    /// lowest quality first (the order of `a=simulcast:send`), each with its
    /// own SSRC, RTX stream and sequence numbers, told apart by the rid
    /// header extension (RFC 8852): the receiver (an SFU) forwards to each
    /// subscriber the layer its link carries. Returns one [`TrackId`] per
    /// layer, in `rids`' order: the application encodes the picture once
    /// per layer (at its own resolution and bitrate) and sends each with
    /// [`PeerConnection::send_frame`] (or [`PeerConnection::send_rtp`]).
    ///
    /// The offer carries `a=rid:<rid> send` lines and `a=simulcast:send`.
    /// The layers the answer's `a=simulcast:recv` lists are sent; the others
    /// are not negotiated (sending on them fails). A peer that does not take
    /// simulcast receives the first layer alone, without a rid; an answer
    /// we give sends the first layer only (simulcast is the offerer's to
    /// propose, RFC 8853 §5.2).
    ///
    /// Rids are 1 to 16 letters, digits, `-` or `_` (RFC 8851 §10: the
    /// grammar's `rid-id`, bounded here as a [`Mid`]), 2 to 4 of them, all
    /// different; the codec must be a video one.
    pub fn add_simulcast_track(
        &mut self,
        codec: TrackCodec,
        stream_id: Option<&str>,
        rids: &[&str],
    ) -> Result<Vec<TrackId>, Error> {
        if codec.kind() != MediaKind::Video {
            return Err(Error::Misuse("simulcast is for video tracks"));
        }
        if !(2..=4).contains(&rids.len()) {
            return Err(Error::Misuse("simulcast takes 2 to 4 rids"));
        }
        let valid = |r: &str| {
            (1..=16).contains(&r.len())
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !rids.iter().all(|r| valid(r)) {
            return Err(Error::Misuse(
                "a rid is 1 to 16 letters, digits, '-' or '_' (RFC 8851 §10)",
            ));
        }
        if rids.iter().enumerate().any(|(i, r)| rids[..i].contains(r)) {
            return Err(Error::Misuse("the rids of a simulcast track differ"));
        }
        self.add_layers(codec, stream_id, rids)
    }

    /// One sender per layer (`rids`, or one stream without), all on one
    /// new transceiver.
    pub(super) fn add_layers(
        &mut self,
        codec: TrackCodec,
        stream_id: Option<&str>,
        rids: &[&str],
    ) -> Result<Vec<TrackId>, Error> {
        let kind = codec.kind();
        let packetizer = codec.packetizer(&mut self.rng);
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        let ssrc: u32 = self.rng.random();
        let rtx_ssrc = (kind == MediaKind::Video).then(|| self.rng.random::<u32>());
        let n = self.senders.len();
        // RFC 8830 §2: msid-id is 1*64 token-char.
        let stream_id = match stream_id {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                id.to_string()
            }
            Some(_) => return Err(Error::Misuse("a stream id is 1 to 64 token characters")),
            None => format!("rtclab-stream-{n}"),
        };
        let sender = LocalSender {
            stream_id,
            track_id: format!("rtclab-track-{n}"),
            ssrc,
            rtx_ssrc,
            cname: self.cname.clone(),
            rids: rids.iter().map(|r| r.to_string()).collect(),
        };
        // An m-line of the peer's offer without a sender of ours takes the
        // track when we answer (JSEP §5.3.1); else a new transceiver.
        let transceiver = self
            .session
            .add_transceiver(kind, Direction::SendRecv, Some(sender));
        let clock_rate = if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
        };
        let mut tracks = Vec::with_capacity(rids.len().max(1));
        let mut first = Some((ssrc, rtx_ssrc, packetizer));
        for layer in 0..rids.len().max(1) {
            // The first layer takes the SSRCs the a=ssrc lines signal.
            let (ssrc, rtx_ssrc, packetizer) = match first.take() {
                Some(first) => first,
                None => (
                    self.rng.random(),
                    Some(self.rng.random()),
                    codec.packetizer(&mut self.rng),
                ),
            };
            let first_seq = self.rng.random();
            tracks.push(TrackId(self.senders.len()));
            self.senders.push(Sender {
                transceiver,
                codec,
                kind,
                rtx_ssrc,
                stream: SendStream::new(ssrc, 0, clock_rate, first_seq),
                negotiated: false,
                mid: None,
                mid_ext: None,
                ext_out: ExtIds::default(),
                removed: false,
                packetizer,
                codec_name: None,
                rid: rids.get(layer).map(|r| r.to_string()),
                send_rid: false,
            });
        }
        Ok(tracks)
    }

    /// `removeTrack` (JSEP §4.1.8): the track stops sending at once; the
    /// next offer or answer signals it (its m-line goes from `sendrecv` to
    /// `recvonly`, or from `sendonly` to `inactive`, and keeps its port:
    /// only a stopped transceiver is rejected with port 0, JSEP §5.2.2),
    /// and the peer's receiver then ends ([`Event::TrackEnded`]). An RTCP
    /// BYE for its SSRCs goes out now (RFC 3550 §6.6).
    pub fn remove_track(&mut self, track: TrackId) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        let s = self
            .senders
            .get(track.0)
            .ok_or(Error::Misuse("no such track"))?;
        if s.removed {
            return Ok(());
        }
        // Every layer of a simulcast track goes with it (one transceiver).
        let transceiver = s.transceiver;
        let mut sources = Vec::new();
        for s in self
            .senders
            .iter_mut()
            .filter(|s| s.transceiver == transceiver && !s.removed)
        {
            s.removed = true;
            s.negotiated = false;
            if s.stream.stats().packets_sent > 0 {
                sources.extend([Some(s.stream.ssrc()), s.rtx_ssrc].into_iter().flatten());
            }
        }
        sources.truncate(MAX_REPORT_BLOCKS);
        self.session.remove_track(transceiver)?;
        if !sources.is_empty() {
            self.send_bye(sources);
        }
        Ok(())
    }

    /// Sends one encoded frame (VP8, VP9, an AV1 temporal unit, an H.264
    /// Annex-B access unit, or Opus) on
    /// `track` with RTP timestamp `timestamp`; returns how many RTP packets
    /// it took.
    pub fn send_frame(
        &mut self,
        now: Instant,
        track: TrackId,
        timestamp: u32,
        frame: &[u8],
    ) -> Result<usize, Error> {
        // abs-send-time (for a peer without transport-cc, which estimates
        // on its side and answers with REMB): our NTP time, 6.18 seconds.
        let ast = crate::rtp::ext::values::abs_send_time_from_ntp(self.ntp(now));
        let (t, s) = sending(&mut self.transport, &mut self.senders, track)?;
        self.payloads.clear();
        s.packetizer
            .packetize_into(frame, MAX_RTP_PAYLOAD, &mut self.payloads)?;
        let n = self.payloads.len();
        let tcc_id = s.tcc_id();
        // Sent only without transport-cc, as libwebrtc does.
        let ast_id = s
            .ext_id(CANONICAL_ABS_SEND_TIME)
            .filter(|_| tcc_id.is_none());
        for (i, payload) in self.payloads.iter().enumerate() {
            // RFC 8843 §15: the mid header extension lets the receiver
            // route a new SSRC to its m-line; transport-cc numbers every
            // packet for the peer's feedback.
            let tcc = self.twcc_send_seq.to_be_bytes();
            let mut elements: [(u8, &[u8]); 4] = [(0, &[]); 4];
            let mut k = 0;
            if let (Some(id), Some(mid)) = (s.mid_ext, s.mid.as_deref()) {
                elements[k] = (id, mid.as_bytes());
                k += 1;
            }
            // RFC 8852 §3.1: a simulcast layer names itself in every packet.
            if let (Some(id), Some(rid)) = (s.rid_ext(), s.rid.as_deref()) {
                elements[k] = (id, rid.as_bytes());
                k += 1;
            }
            if let Some(id) = ast_id {
                elements[k] = (id, &ast);
                k += 1;
            }
            if let Some(id) = tcc_id {
                elements[k] = (id, &tcc);
                k += 1;
                if self.pacer.is_none() {
                    // Paced, the number is stamped as the packet leaves.
                    self.twcc_send_seq = self.twcc_send_seq.wrapping_add(1);
                }
            }
            if let Some(pacer) = self.pacer.as_mut() {
                let mut buf = self.pace_pool.pop().unwrap_or_default();
                buf.clear();
                s.stream.emit_packet(
                    now,
                    timestamp,
                    i + 1 == n,
                    &elements[..k],
                    payload,
                    &mut buf,
                )?;
                let priority = match s.kind {
                    MediaKind::Audio => Priority::Audio,
                    _ => Priority::Video,
                };
                let size = buf.len() + SRTP_OVERHEAD;
                if let Err((_, (_, buf))) = pacer.enqueue(now, priority, size, (tcc_id, buf)) {
                    self.pace_pool.push(buf);
                    return Err(Error::Congested);
                }
                continue;
            }
            self.packet.clear();
            // RFC 3550 §5.1: the marker ends the frame.
            s.stream.emit_packet(
                now,
                timestamp,
                i + 1 == n,
                &elements[..k],
                payload,
                &mut self.packet,
            )?;
            t.send_rtp(&self.packet)?;
            if tcc_id.is_some() {
                let seq = u16::from_be_bytes(tcc);
                self.bwe
                    .on_packet_sent(now, seq, self.packet.len() + SRTP_OVERHEAD, None);
            }
            self.media_stats.rtp_sent += 1;
        }
        self.pace(now);
        Ok(n)
    }

    /// RTP mode, sending: one RTP packet on `track`, as a forwarder sends
    /// what it received ([`Event::Rtp`]). The packet's marker, sequence
    /// number, timestamp and payload are kept (a forwarder that switches
    /// sources keeps them continuous with [`RtpPacketMut`]'s setters first,
    /// or gives [`PeerConnection::send_rtp_into`] its [`Renumber`]);
    /// the SSRC and payload type become the track's; its extension
    /// elements, in the canonical ids of [`RTP_MODE_EXTENSIONS`], are
    /// rewritten to the ids negotiated on the track's m-line (those not
    /// negotiated are dropped, and so are a simulcast layer's rid and
    /// repaired-rid), the mid element to the track's own mid;
    /// padding is dropped. The packet is kept for RTX and protected with
    /// SRTP.
    ///
    /// [`RtpPacketMut`]: crate::rtp::RtpPacketMut
    pub fn send_rtp(&mut self, now: Instant, track: TrackId, packet: &[u8]) -> Result<(), Error> {
        let mut datagram = std::mem::take(&mut self.packet);
        let r = self.send_rtp_into(now, track, packet, None, &mut datagram);
        if let (Ok(meta), Some(t)) = (&r, self.transport.as_mut()) {
            t.queue_protected(*meta, &datagram);
        }
        self.packet = datagram;
        r.map(drop)
    }

    /// As [`PeerConnection::send_rtp`], but the SRTP datagram is written
    /// into `datagram` (its contents replaced) and its addresses returned,
    /// for the caller to send: a forwarder sending one packet to many
    /// connections gathers their datagrams in one buffer of its own
    /// instead of each connection's queue (the copy each subscriber gets
    /// is then written once, where the next one is written too). The
    /// packet counts as sent: the caller must send it.
    ///
    /// `renumber`, if given, replaces the packet's sequence number,
    /// timestamp and marker as the header is written: a forwarder's
    /// rewrite for this subscriber, without a copy of the packet to
    /// rewrite first.
    pub fn send_rtp_into(
        &mut self,
        now: Instant,
        track: TrackId,
        packet: &[u8],
        renumber: Option<Renumber>,
        datagram: &mut Vec<u8>,
    ) -> Result<TransmitMeta, Error> {
        let (t, s) = sending(&mut self.transport, &mut self.senders, track)?;
        let p = RtpPacket::new_checked(packet)?;
        let tcc = self.twcc_send_seq.to_be_bytes();
        if s.tcc_id().is_some() {
            self.twcc_send_seq = self.twcc_send_seq.wrapping_add(1);
        }
        write_forwarded(s, &p, &tcc, renumber, datagram)?;
        s.stream.record_packet(now, datagram)?;
        let plain_len = datagram.len();
        let meta = t.protect_rtp(datagram)?;
        if s.tcc_id().is_some() {
            let seq = u16::from_be_bytes(tcc);
            self.bwe
                .on_packet_sent(now, seq, plain_len + SRTP_OVERHEAD, None);
        }
        self.media_stats.rtp_sent += 1;
        Ok(meta)
    }

    /// RTP mode, repairing: sends again, on `track`'s RTX stream (RFC 4588
    /// §4), a packet sent earlier with [`PeerConnection::send_rtp`] that
    /// the caller kept itself, given as it was given then (a forwarder
    /// answers [`Event::NackUnanswered`] from one cache per source rather
    /// than a history per receiver, [`Config::rtx_history`]). Its header is
    /// rewritten as `send_rtp` rewrites it, with a transport-wide sequence
    /// number of its own. `Ok(false)`: not sent, because the track has no
    /// RTX stream or sent this sequence number again less than a round
    /// trip ago (one copy per request that could have been answered, as
    /// for the history's own packets).
    pub fn resend_rtp(
        &mut self,
        now: Instant,
        track: TrackId,
        packet: &[u8],
    ) -> Result<bool, Error> {
        let (t, s) = sending(&mut self.transport, &mut self.senders, track)?;
        let p = RtpPacket::new_checked(packet)?;
        // The transport-wide number is stamped as it leaves (a copy that
        // does not leave takes none: a hole would read as a loss).
        write_forwarded(s, &p, &[0, 0], None, &mut self.packet)?;
        let (tcc_id, seq, bwe) = (s.tcc_id(), &mut self.twcc_send_seq, &mut self.bwe);
        let sent = s.stream.resend(now, &self.packet, |out| {
            let numbered = stamp_tcc(out, tcc_id, seq);
            let size = out.len() + SRTP_OVERHEAD;
            let ok = t.send_rtp(out).is_ok();
            if let (true, Some(n)) = (ok, numbered) {
                bwe.on_packet_sent(now, n, size, None);
            }
            ok
        });
        self.media_stats.rtx_sent += u64::from(sent);
        Ok(sent)
    }

    /// Keeps `packets` of `track` for RTX from now on, whatever
    /// [`Config::rtx_history`] says (what was kept goes if it changes): a
    /// forwarder whose cache cannot answer for one of its tracks (scalable
    /// video, whose layers it thins per receiver) gives that one a history.
    pub fn set_rtx_history(&mut self, track: TrackId, packets: usize) -> Result<(), Error> {
        let s = self
            .senders
            .get_mut(track.0)
            .ok_or(Error::Misuse("no such track"))?;
        s.stream.set_rtx_history(packets);
        Ok(())
    }

    /// RTP mode, receiving: the receiver of `mid` hands its packets to the
    /// application as [`Event::Rtp`] instead of assembling frames (`true`),
    /// or assembles frames again (`false`). NACKs for losses still go out,
    /// RTX is still turned back into originals; no frame is given up, so
    /// no PLI is sent by itself ([`PeerConnection::request_keyframe`] asks).
    pub fn set_rtp_mode(&mut self, mid: &str, on: bool) -> Result<(), Error> {
        if !self.receivers.iter().any(|r| r.mid == mid) {
            return Err(Error::Misuse("no receiver with this mid"));
        }
        if on && Mid::new(mid).is_none() {
            return Err(Error::Misuse("RTP mode needs a mid of at most 16 bytes"));
        }
        // Every simulcast layer of the m-line; frames are assembled from
        // the primary one only.
        for r in self.receivers.iter_mut().filter(|r| r.mid == mid) {
            if r.rtp_mode != on {
                r.rtp_mode = on;
                let d = (!on && r.primary)
                    .then(|| r.current.map(|c| c.depacketizer()))
                    .flatten();
                r.stream.set_depacketizer(d);
            }
        }
        Ok(())
    }

    /// Gives the buffer of an [`Event::Rtp`] back, to be reused for a later
    /// packet (the receive path then allocates nothing).
    pub fn recycle_rtp(&mut self, packet: Vec<u8>) {
        if let Some(t) = self.transport.as_mut() {
            t.recycle(packet);
        }
    }

    /// The mid our track was given, once in an offer or answer.
    pub fn track_mid(&self, track: TrackId) -> Option<&str> {
        let s = self.senders.get(track.0)?;
        self.session
            .transceivers()
            .get(s.transceiver)?
            .mid
            .as_deref()
    }

    /// Probes the link at `bitrate` bits per second now (padding at that
    /// rate for a few tens of milliseconds, GCC's probing): a forwarder
    /// asks this before moving a receiver up to a layer its estimate does
    /// not show yet. Needs [`Config::pacing`]; without it nothing happens.
    pub fn probe_bandwidth(&mut self, now: Instant, bitrate: u64) {
        if self.pacer.is_none() {
            return;
        }
        self.last_now = Some(now);
        self.bwe
            .request_probe(now, crate::rtp::bwe::Bitrate::from_f64(bitrate as f64));
        self.bwe_events();
        self.pace(now);
    }

    /// With [`Config::pacing`]: sends what the pacer lets go at `now`,
    /// stamping each packet's transport-wide sequence number as it leaves;
    /// a probe's padding is RTX copies of the newest packet of a video
    /// track (what libwebrtc sends too: useful bytes, and a receiver that
    /// already has the packet just drops the copy).
    pub(super) fn pace(&mut self, now: Instant) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        while let Some(release) = pacer.poll_release(now) {
            match release {
                Release::Packet {
                    item: (tcc_id, mut buf),
                    size,
                    probe,
                } => {
                    let seq = stamp_tcc(&mut buf, tcc_id, &mut self.twcc_send_seq);
                    if t.send_rtp(&buf).is_ok() {
                        self.media_stats.rtp_sent += 1;
                        if let Some(seq) = seq {
                            self.bwe.on_packet_sent(now, seq, size, probe);
                        }
                    }
                    if self.pace_pool.len() < 64 {
                        self.pace_pool.push(buf);
                    }
                }
                Release::Padding { size, probe } => {
                    let Some(s) = self
                        .senders
                        .iter_mut()
                        .find(|s| s.negotiated && s.kind == MediaKind::Video)
                    else {
                        continue;
                    };
                    let tcc_id = s.tcc_id();
                    let mut sent = 0;
                    while sent < size {
                        self.packet.clear();
                        if !s.stream.emit_padding_rtx(&mut self.packet) {
                            break;
                        }
                        let seq = stamp_tcc(&mut self.packet, tcc_id, &mut self.twcc_send_seq);
                        let len = self.packet.len() + SRTP_OVERHEAD;
                        if t.send_rtp(&self.packet).is_err() {
                            break;
                        }
                        if let Some(seq) = seq {
                            self.bwe.on_packet_sent(now, seq, len, Some(probe));
                        }
                        sent += len;
                    }
                }
            }
        }
        self.bwe_events();
    }

    /// W3C `availableOutgoingBitrate`: the send-side estimate, once
    /// transport-cc feedback about our packets came back.
    pub fn available_outgoing_bitrate(&self) -> Option<u64> {
        (self.media_stats.twcc_feedback_received > 0).then(|| self.bwe.estimate().as_u64())
    }

    /// The estimator's news: [`Event::BandwidthEstimate`] when the estimate
    /// moved by 5 % or more since the last one reported (it changes with
    /// nearly every feedback, 20 times a second). Probes need a pacer to
    /// send their padding; without one the estimate climbs by the AIMD
    /// rules alone.
    pub(super) fn bwe_events(&mut self) {
        while let Some(e) = self.bwe.poll_event() {
            let rate = match e {
                BweEvent::Estimate(rate) => rate,
                BweEvent::Probe(cluster) => {
                    if let (Some(p), Some(now)) = (self.pacer.as_mut(), self.last_now) {
                        p.start_probe(now, cluster);
                    }
                    continue;
                }
            };
            if let Some(p) = self.pacer.as_mut() {
                p.set_estimate(rate);
            }
            let rate = rate.as_u64();
            let moved = self
                .bwe_reported
                .is_none_or(|last| rate.abs_diff(last) * 20 >= last);
            if moved {
                self.bwe_reported = Some(rate);
                self.push(Event::BandwidthEstimate { bitrate: rate });
            }
        }
    }
}

/// A forwarder's numbering of a packet it sends on
/// ([`PeerConnection::send_rtp_into`]): its sequence number and timestamp
/// in the subscriber's stream, and its marker if that changes (a thinned
/// scalable stream ends its frames on a lower layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Renumber {
    /// The sequence number sent.
    pub sequence_number: u16,
    /// The timestamp sent.
    pub timestamp: u32,
    /// The marker sent; `None` keeps the packet's.
    pub marker: Option<bool>,
}

/// Writes the RTP mode packet `p` into `out` as `track` sends it
/// ([`PeerConnection::send_rtp`]): the track's SSRC and payload type, its
/// mid (and rid) elements, `tcc` as the transport-wide sequence number,
/// the other elements under their negotiated ids (at most 16 are kept);
/// renumbered if `renumber` says.
fn write_forwarded(
    s: &Sender,
    p: &RtpPacket<'_>,
    tcc: &[u8; 2],
    renumber: Option<Renumber>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    let mut elements: [(u8, &[u8]); 16] = [(0, &[]); 16];
    let mut n = 0;
    if let Some(mid) = s.mid_ext.zip(s.mid.as_deref()) {
        elements[0] = (mid.0, mid.1.as_bytes());
        n = 1;
    }
    if let (Some(id), Some(rid)) = (s.rid_ext(), s.rid.as_deref()) {
        elements[n] = (id, rid.as_bytes());
        n += 1;
    }
    if let Some(id) = s.tcc_id() {
        elements[n] = (id, tcc);
        n += 1;
    }
    for e in p.extensions().map_while(Result::ok) {
        if matches!(
            e.id,
            CANONICAL_MID | CANONICAL_TRANSPORT_CC | CANONICAL_RID | CANONICAL_REPAIRED_RID
        ) || n == elements.len()
        {
            continue;
        }
        if let Some(id) = s.ext_id(e.id) {
            elements[n] = (id, e.data);
            n += 1;
        }
    }
    out.clear();
    let fields = HeaderFields {
        marker: renumber.and_then(|r| r.marker).unwrap_or(p.marker()),
        payload_type: s.stream.payload_type(),
        sequence_number: renumber.map_or(p.sequence_number(), |r| r.sequence_number),
        timestamp: renumber.map_or(p.timestamp(), |r| r.timestamp),
        ssrc: s.stream.ssrc(),
    };
    emit_rtp_packet(fields, &elements[..n], true, p.payload(), out)?;
    Ok(())
}
