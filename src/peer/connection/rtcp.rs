//! Receivers and RTCP: incoming RTP routed to its track (RFC 8843 §9.2
//! by MID or SSRC), frame assembly and feedback (NACK, PLI, FIR, REMB,
//! transport-cc; RFC 4585, RFC 5104), sender and receiver reports
//! (RFC 3550 §6) and BYE.

use super::*;

impl PeerConnection {
    /// Asks the peer for a keyframe on the m-line `mid` it sends on (RTCP
    /// PLI, RFC 4585 §6.3.1), e.g. after a decoder error. Receivers also
    /// send one by themselves when they had to give up a frame.
    ///
    /// On an m-line that receives simulcast, every layer is asked; see
    /// [`PeerConnection::request_keyframe_layer`] for one.
    pub fn request_keyframe(&mut self, mid: &str) -> Result<(), Error> {
        self.request_keyframes(mid, None)
    }

    /// Asks for a keyframe on one simulcast layer of `mid` (its rid, RFC
    /// 8852), or on every layer with `None`: what a forwarder does when a
    /// receiver switches to that layer.
    pub fn request_keyframe_layer(&mut self, mid: &str, rid: Option<&str>) -> Result<(), Error> {
        self.request_keyframes(mid, rid)
    }

    pub(super) fn request_keyframes(&mut self, mid: &str, rid: Option<&str>) -> Result<(), Error> {
        let rtcp_ssrc = self.rtcp_ssrc;
        let mut ssrcs = [0u32; 8];
        let mut n = 0;
        let mut found = false;
        for r in self.receivers.iter_mut().filter(|r| r.mid == mid) {
            if rid.is_some_and(|rid| r.rid.as_deref() != Some(rid)) {
                continue;
            }
            found = true;
            if let Some(pli) = r.stream.pli(rtcp_ssrc)
                && n < ssrcs.len()
            {
                ssrcs[n] = pli.media_ssrc;
                n += 1;
            }
        }
        if !found {
            return Err(Error::Misuse("no receiver with this mid (and rid)"));
        }
        if n == 0 {
            return Err(Error::Misuse("no media seen on this mid yet"));
        }
        for &ssrc in &ssrcs[..n] {
            self.send_pli(ssrc)?;
            self.media_stats.plis_sent += 1;
        }
        Ok(())
    }

    pub(super) fn send_pli(&mut self, media_ssrc: u32) -> Result<(), Error> {
        self.send_feedback(&RtcpPacket::Pli(Pli {
            sender_ssrc: self.rtcp_ssrc,
            media_ssrc,
        }))
    }

    /// One RTCP feedback packet, alone (RFC 5506: reduced-size RTCP).
    pub(super) fn send_feedback(&mut self, p: &RtcpPacket) -> Result<(), Error> {
        let t = self
            .transport
            .as_mut()
            .ok_or(Error::Misuse("not connected"))?;
        self.packet.clear();
        p.emit(&mut self.packet)?;
        t.send_rtcp(&self.packet)?;
        Ok(())
    }

    /// The media SSRC the peer sends on `mid` (on its simulcast layer
    /// `rid`, or the first layer).
    pub(super) fn receiving_ssrc(&self, mid: &str, rid: Option<&str>) -> Result<u32, Error> {
        let r = self
            .receivers
            .iter()
            .find(|r| r.mid == mid && rid.is_none_or(|rid| r.rid.as_deref() == Some(rid)))
            .ok_or(Error::Misuse("no receiver with this mid (and rid)"))?;
        r.stream
            .ssrc()
            .ok_or(Error::Misuse("no media seen on this mid yet"))
    }

    /// Asks for a keyframe with a Full Intra Request (RFC 5104 §4.3.1)
    /// instead of a PLI, for senders that want a decoder refresh point
    /// (a forwarder switching a receiver to this stream). Each call is a
    /// new request (its sequence number advances).
    pub fn request_keyframe_fir(&mut self, mid: &str) -> Result<(), Error> {
        let media_ssrc = self.receiving_ssrc(mid, None)?;
        self.fir_seq = self.fir_seq.wrapping_add(1);
        self.send_feedback(&RtcpPacket::Fir(Fir {
            sender_ssrc: self.rtcp_ssrc,
            entries: vec![(media_ssrc, self.fir_seq)],
        }))
    }

    /// Asks the peer to retransmit `sequence_numbers` of what it sends on
    /// `mid` (a generic NACK, RFC 4585 §6.2.1): what a forwarder does when
    /// one of its receivers NACKs a packet it no longer has
    /// ([`Event::NackUnanswered`]). Receivers NACK losses by themselves.
    pub fn send_nack(&mut self, mid: &str, sequence_numbers: &[u16]) -> Result<(), Error> {
        self.send_nack_layer(mid, None, sequence_numbers)
    }

    /// [`PeerConnection::send_nack`] for one simulcast layer of `mid` (its
    /// rid; `None`: the first layer).
    pub fn send_nack_layer(
        &mut self,
        mid: &str,
        rid: Option<&str>,
        sequence_numbers: &[u16],
    ) -> Result<(), Error> {
        let media_ssrc = self.receiving_ssrc(mid, rid)?;
        if sequence_numbers.is_empty() {
            return Ok(());
        }
        let nack = Nack::from_lost(self.rtcp_ssrc, media_ssrc, sequence_numbers.iter().copied());
        self.send_feedback(&RtcpPacket::Nack(nack))?;
        self.media_stats.nacks_sent += 1;
        Ok(())
    }

    /// Tells the peer our receive-side estimate for everything it sends
    /// us (REMB, draft-alvestrand-rmcat-remb-03 §2.2), e.g. the smallest
    /// estimate of a forwarder's receivers.
    pub fn send_remb(&mut self, bitrate: u64) -> Result<(), Error> {
        let ssrcs: Vec<u32> = self
            .receivers
            .iter()
            .filter_map(|r| r.stream.ssrc())
            .collect();
        self.send_feedback(&RtcpPacket::Remb(Remb {
            sender_ssrc: self.rtcp_ssrc,
            bitrate,
            ssrcs,
        }))
    }

    /// RTCP from the peer (one compound, or a reduced-size packet, RFC
    /// 5506): report blocks about our SSRCs give the round-trip time (RFC
    /// 3550 §6.4.1: now − LSR − DLSR) and the peer's loss; an SR from a
    /// source we receive is remembered for our next report's LSR/DLSR;
    /// NACKs are answered from the RTX history; PLI and FIR (RFC 5104
    /// §4.3) on one of our SSRCs become [`Event::KeyframeRequested`].
    pub(super) fn on_rtcp(&mut self, now: Instant, p: &[u8]) {
        self.transport_stats.rtcp_packets_received += 1;
        let Ok(packets) = RtcpPacket::parse_compound(p, true) else {
            return;
        };
        let now_compact = ntp_compact(self.ntp(now));
        for packet in packets {
            match &packet {
                RtcpPacket::SenderReport(sr) => {
                    if let Some(r) = self
                        .receivers
                        .iter_mut()
                        .find(|r| r.stream.ssrc() == Some(sr.ssrc))
                    {
                        r.stream.on_sender_report(now, sr);
                    }
                    self.on_report_blocks(now, now_compact, &sr.reports);
                }
                RtcpPacket::ReceiverReport(rr) => {
                    self.on_report_blocks(now, now_compact, &rr.reports)
                }
                RtcpPacket::Nack(nack) => {
                    let Some(i) = self.sender_index(nack.media_ssrc) else {
                        continue;
                    };
                    // What the history no longer holds: a forwarder may
                    // ask its source for it (send_nack).
                    let missing: Vec<u16> = self.senders[i].stream.not_kept(nack).collect();
                    if !missing.is_empty() {
                        self.push(Event::NackUnanswered {
                            track: TrackId(i),
                            sequence_numbers: missing,
                        });
                    }
                    let s = &mut self.senders[i];
                    let Some(t) = self.transport.as_mut() else {
                        continue;
                    };
                    // RFC 4588 §4: each NACKed packet still kept goes out
                    // again on the RTX stream, with a transport-wide
                    // sequence number of its own.
                    let (tcc_id, seq, bwe) = (s.tcc_id(), &mut self.twcc_send_seq, &mut self.bwe);
                    // RFC 8852 §3.2: an RTX packet of a simulcast layer
                    // names the layer it repairs in repaired-rid, not rid.
                    let rid_ids = s.rid_ext().map(|id| (id, s.ext_id(CANONICAL_REPAIRED_RID)));
                    let sent = s.stream.on_nack(now, nack, |p| {
                        if let (Some((rid, repaired)), Ok(mut m)) =
                            (rid_ids, RtpPacketMut::new_checked(p))
                        {
                            m.remap_extension_ids(|id| if id == rid { repaired } else { Some(id) });
                        }
                        let mut numbered = None;
                        if let (Some(id), Ok(mut m)) = (tcc_id, RtpPacketMut::new_checked(p))
                            && let Some(e) = m.extension_element_mut(id)
                            && e.len() == 2
                        {
                            e.copy_from_slice(&seq.to_be_bytes());
                            numbered = Some(*seq);
                            *seq = seq.wrapping_add(1);
                        }
                        let size = p.len() + SRTP_OVERHEAD;
                        let ok = t.send_rtp(p).is_ok();
                        if let (true, Some(n)) = (ok, numbered) {
                            bwe.on_packet_sent(now, n, size, None);
                        }
                        ok
                    });
                    self.media_stats.rtx_sent += sent as u64;
                }
                RtcpPacket::Pli(pli) => {
                    if let Some(i) = self.sender_index(pli.media_ssrc) {
                        self.senders[i].stream.on_pli();
                        self.push(Event::KeyframeRequested(TrackId(i)));
                    }
                }
                RtcpPacket::Fir(fir) => {
                    for (ssrc, _) in &fir.entries {
                        if let Some(i) = self.sender_index(*ssrc) {
                            self.senders[i].stream.on_fir();
                            self.push(Event::KeyframeRequested(TrackId(i)));
                        }
                    }
                }
                RtcpPacket::TransportCc(fb) => {
                    self.media_stats.twcc_feedback_received += 1;
                    self.bwe.on_feedback(now, fb);
                    self.bwe_events();
                }
                RtcpPacket::Remb(remb) => self.push(Event::Remb {
                    bitrate: remb.bitrate,
                }),
                RtcpPacket::Bye(bye) => {
                    // RFC 3550 §6.6: the source left; its track ends.
                    for ssrc in &bye.sources {
                        if let Some(i) = self
                            .receivers
                            .iter()
                            .position(|r| r.stream.ssrc() == Some(*ssrc))
                        {
                            let mid = self.receivers[i].mid.clone();
                            self.remove_receiver(i);
                            // A simulcast m-line ends with its last layer.
                            if !self.receivers.iter().any(|r| r.mid == mid) {
                                self.push(Event::TrackEnded { mid });
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }

    pub(super) fn sender_index(&self, ssrc: u32) -> Option<usize> {
        self.senders.iter().position(|s| s.stream.ssrc() == ssrc)
    }

    /// Report blocks about our senders: RTT, fraction and cumulative loss.
    pub(super) fn on_report_blocks(
        &mut self,
        now: Instant,
        now_compact: u32,
        blocks: &[ReportBlock],
    ) {
        for b in blocks {
            if let Some(s) = self.senders.iter_mut().find(|s| s.stream.ssrc() == b.ssrc) {
                s.stream.on_report_block(now_compact, b);
                // The loss-based controller also reads RFC 3550 loss.
                self.bwe.on_report_block(now, b);
            }
        }
        self.bwe_events();
    }

    /// A REMB when the receive-side estimator has one due (at most once a
    /// second, or at once on a 3 % fall), feedback alone (RFC 5506).
    pub(super) fn remb_due(&mut self, now: Instant) {
        let (Some(r), Some(t)) = (self.remb.as_mut(), self.transport.as_mut()) else {
            return;
        };
        if let Some(remb) = r.poll_remb(now) {
            self.packet.clear();
            if RtcpPacket::Remb(remb).emit(&mut self.packet).is_ok() {
                let _ = t.send_rtcp(&self.packet);
            }
        }
    }

    /// Our NTP time (RFC 3550 §4) at `now`.
    pub(super) fn ntp(&mut self, now: Instant) -> u64 {
        let epoch = *self.epoch.get_or_insert(now);
        let base = self
            .wall_clock
            .and_then(|w| w.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        ntp_from_unix(base + now.saturating_duration_since(epoch))
    }

    /// The next report interval: RFC 3550 §6.3.1, the mean interval times
    /// a random factor in [0.5, 1.5] so reports of many members spread out.
    pub(super) fn rtcp_delay(&mut self) -> Duration {
        let factor: f64 = self.rng.random_range(0.5..1.5);
        self.rtcp_interval.mul_f64(factor)
    }

    /// One compound RTCP packet (RFC 3550 §6.1): an SR for each track that
    /// sent since the last report (RFC 3550 §6.4; several SSRCs of one
    /// endpoint share the one RTCP stream of the BUNDLE 5-tuple, RFC 8108
    /// §5.3 and RFC 8843 §7), else an RR from our feedback SSRC; report
    /// blocks (RFC 3550 §6.4.1) for every source we receive ride in the
    /// first one; then SDES with our CNAME for each SSRC reported (§6.5.1).
    pub(super) fn send_reports(&mut self, now: Instant) {
        let ntp = self.ntp(now);
        let mut blocks: Vec<ReportBlock> = self
            .receivers
            .iter_mut()
            .filter_map(|r| r.stream.report_block(now))
            .collect();
        blocks.truncate(MAX_REPORT_BLOCKS);
        let mut packets = Vec::new();
        let mut ssrcs = Vec::new();
        for s in self.senders.iter_mut().filter(|s| !s.removed) {
            let Some(mut sr) = s.stream.sender_report(now, ntp, Vec::new()) else {
                continue;
            };
            if packets.is_empty() {
                sr.reports = std::mem::take(&mut blocks);
            }
            ssrcs.push(sr.ssrc);
            packets.push(RtcpPacket::SenderReport(sr));
            if ssrcs.len() >= MAX_REPORT_BLOCKS {
                break;
            }
        }
        if packets.is_empty() {
            if blocks.is_empty() && self.receivers.is_empty() {
                // Nothing sent, nothing received: nothing to report.
                return;
            }
            ssrcs.push(self.rtcp_ssrc);
            packets.push(RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.rtcp_ssrc,
                reports: blocks,
                profile_extension: Vec::new(),
            }));
        }
        let cname = self.cname.as_bytes();
        let cname = cname[..cname.len().min(255)].to_vec();
        packets.push(RtcpPacket::Sdes(Sdes {
            chunks: ssrcs
                .iter()
                .map(|&ssrc| SdesChunk {
                    ssrc,
                    items: vec![(sdes_type::CNAME, cname.clone())],
                })
                .collect(),
        }));
        self.send_compound(&packets);
        self.transport_stats.rtcp_reports_sent += 1;
    }

    /// RFC 3550 §6.6: a BYE for `sources` (after an RR, as a compound must
    /// start with a report).
    pub(super) fn send_bye(&mut self, sources: Vec<u32>) {
        let packets = [
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: self.rtcp_ssrc,
                reports: Vec::new(),
                profile_extension: Vec::new(),
            }),
            RtcpPacket::Bye(Bye {
                sources,
                reason: None,
            }),
        ];
        self.send_compound(&packets);
    }

    pub(super) fn send_compound(&mut self, packets: &[RtcpPacket]) {
        let Some(t) = self.transport.as_mut() else {
            return;
        };
        self.packet.clear();
        if RtcpPacket::emit_compound(packets, &mut self.packet).is_ok() {
            // Lost if not connected: reports are periodic anyway.
            let _ = t.send_rtcp(&self.packet);
        }
    }

    /// Routes one RTP packet: by SSRC, else by the mid header extension
    /// (RFC 8843 §9.2), learning the SSRC; else by a payload type only one
    /// receiver uses.
    pub(super) fn on_rtp(&mut self, now: Instant, p: Vec<u8>) {
        let Ok(packet) = RtpPacket::new_checked(&p) else {
            return;
        };
        let ssrc = packet.ssrc();
        // The transport-wide sequence number, if negotiated: its arrival
        // time goes into our next transport-cc feedback, whichever stream
        // the packet belongs to (padding and probes included).
        if let Some(seq) = self
            .remote_tcc_ext
            .and_then(|id| packet.extension_element(id))
            .and_then(crate::rtp::ext::values::transport_cc_seq)
        {
            let epoch = *self.epoch.get_or_insert(now);
            let us = now.saturating_duration_since(epoch).as_micros() as i64;
            self.twcc.on_packet(seq, us);
            self.twcc_media_ssrc = ssrc;
            self.next_twcc.get_or_insert(now + TWCC_INTERVAL);
        }
        let idx = match self.ssrc_routes.get(&ssrc) {
            Some(&i) => Some(i),
            None => {
                let by_mid = self
                    .remote_mid_ext
                    .and_then(|id| packet.extension_element(id))
                    .and_then(|mid| {
                        let i = self
                            .receivers
                            .iter()
                            .position(|r| r.mid.as_bytes() == mid)?;
                        let r = &self.receivers[i];
                        if r.rid.is_none() {
                            return Some(i);
                        }
                        // Simulcast: the layer by the rid, or for an RTX
                        // stream by the rid it repairs (RFC 8852 §3).
                        let rid = r
                            .rid_ext
                            .and_then(|id| packet.extension_element(id))
                            .or_else(|| {
                                r.repaired_rid_ext
                                    .and_then(|id| packet.extension_element(id))
                            });
                        // A sender that agreed to simulcast but sends one
                        // stream without rids (Firefox, when it drops its
                        // layers) is the first layer.
                        let Some(rid) = rid else {
                            return Some(i);
                        };
                        self.receivers.iter().position(|l| {
                            l.mid.as_bytes() == mid && l.rid.is_some_and(|x| x.as_bytes() == rid)
                        })
                    });
                let by_pt = || {
                    let pt = packet.payload_type();
                    let mut it = self
                        .receivers
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.payload_types.contains(&pt));
                    match (it.next(), it.next()) {
                        (Some((i, _)), None) => Some(i),
                        _ => None,
                    }
                };
                let found = by_mid.or_else(by_pt);
                if let Some(i) = found
                    && self.ssrc_routes.len() < 1024
                {
                    self.ssrc_routes.insert(ssrc, i);
                }
                found
            }
        };
        let Some(i) = idx else {
            return;
        };
        let Some(r) = self.receivers.get_mut(i) else {
            return;
        };
        let pt = packet.payload_type();
        if !r.payload_types.contains(&pt) && !r.stream.is_rtx(pt) {
            return;
        }

        // Receive-side estimation over abs-send-time, for a REMB sender.
        if r.remb
            && let Some(ast) = r
                .ext_in
                .iter()
                .find(|(_, c)| *c == CANONICAL_ABS_SEND_TIME)
                .and_then(|(id, _)| packet.extension_element(*id))
                .and_then(crate::rtp::ext::values::abs_send_time)
        {
            let rtcp_ssrc = self.rtcp_ssrc;
            self.remb
                .get_or_insert_with(|| {
                    RembEstimator::new(
                        rtcp_ssrc,
                        BweConfig::default().start,
                        BweConfig::default().min,
                        BweConfig::default().max,
                    )
                })
                .on_packet(now, ast, p.len(), packet.ssrc());
        }
        // The peer may switch codecs among the negotiated payload types:
        // a new depacketizer (frames of the old codec in flight are lost).
        if let Some((_, codec, name)) = r.codecs.iter().find(|(p, _, _)| *p == pt) {
            if r.current != Some(*codec) {
                r.current = Some(*codec);
                if !r.rtp_mode {
                    r.stream.set_depacketizer(Some(codec.depacketizer()));
                }
            }
            if r.current_name.as_deref() != Some(name.as_str()) {
                r.current_name = Some(name.clone());
            }
        }
        let rtx = match r.stream.receive(now, &packet) {
            Some(Received::Rtx) => true,
            Some(Received::Media) => false,
            None => return,
        };
        self.media_stats.rtx_received += u64::from(rtx);
        if r.rtp_mode
            && let Some(mid) = r.mid_key
        {
            let rid = r.rid;
            // The packet goes to the application in the buffer it came
            // in, its extension ids made canonical.
            let mut buf = p;
            if rtx {
                buf.clear();
                buf.extend_from_slice(r.stream.rebuilt());
            }
            if let Ok(mut m) = RtpPacketMut::new_checked(&mut buf) {
                let map = &r.ext_in;
                m.remap_extension_ids(|id| map.iter().find(|(n, _)| *n == id).map(|(_, c)| *c));
            }
            self.push(Event::Rtp {
                mid,
                rid,
                packet: buf,
            });
        } else if let Some(t) = self.transport.as_mut() {
            t.recycle(p);
        }
        self.receiver_feedback(now, i);
    }

    /// A receiver's frames out; its NACKs (RFC 4585 §6.2.1) and, when a
    /// frame is given up, a PLI.
    pub(super) fn receiver_feedback(&mut self, now: Instant, i: usize) {
        let rtcp_ssrc = self.rtcp_ssrc;
        let Some(r) = self.receivers.get_mut(i) else {
            return;
        };
        let mut rtcp = std::mem::take(&mut self.feedback);
        r.stream.feedback(now, rtcp_ssrc, |p| rtcp.push(p));
        if let Some(t) = self.transport.as_mut() {
            for p in rtcp.drain(..) {
                self.packet.clear();
                if p.emit(&mut self.packet).is_ok() && t.send_rtcp(&self.packet).is_ok() {
                    match p {
                        RtcpPacket::Nack(_) => self.media_stats.nacks_sent += 1,
                        _ => self.media_stats.plis_sent += 1,
                    }
                }
            }
        }
        rtcp.clear();
        self.feedback = rtcp;
        while let Some(frame) = r.stream.pop_frame() {
            self.media_stats.frames_received += 1;
            let e = Event::Frame {
                mid: r.mid.clone(),
                frame,
            };
            if self.events.len() < MAX_EVENTS {
                self.events.push_back(e);
            }
        }
    }

    /// Drops receiver `i` and re-points the SSRC routes past it.
    pub(super) fn remove_receiver(&mut self, i: usize) {
        if i >= self.receivers.len() {
            return;
        }
        self.receivers.remove(i);
        self.ssrc_routes.retain(|_, r| *r != i);
        for r in self.ssrc_routes.values_mut() {
            if *r > i {
                *r -= 1;
            }
        }
    }
}
