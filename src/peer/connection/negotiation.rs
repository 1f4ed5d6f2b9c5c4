//! Negotiation: offers and answers through [`sdp::Session`], applying
//! what was agreed (transport roles, senders, receivers, data channels;
//! JSEP §5.2–§5.7), rollback, and remote candidates (RFC 8838 trickle).

use super::*;

impl PeerConnection {
    /// `createOffer`: our offer as SDP text (we become the ICE controlling
    /// side and offer `a=setup:actpass`).
    pub fn create_offer(&mut self, now: Instant) -> Result<String, Error> {
        match self.signaling {
            SignalingState::Stable | SignalingState::HaveLocalOffer => {}
            SignalingState::HaveRemoteOffer => {
                return Err(Error::Misuse("a remote offer is pending: answer it"));
            }
            SignalingState::Closed => return Err(Error::Closed),
        }
        self.ensure_transport(now, IceRole::Controlling)?;
        let sd = self.session.create_offer()?;
        let text = sd.to_string();
        self.pending_offer = Some(text.clone());
        Ok(text)
    }

    /// `createAnswer`: our answer to the remote offer as SDP text.
    pub fn create_answer(&mut self) -> Result<String, Error> {
        let offer = self
            .remote_offer
            .as_ref()
            .ok_or(Error::Misuse("no remote offer to answer"))?;
        let (sd, negotiated) = self.session.create_answer(offer)?;
        let text = sd.to_string();
        self.pending_answer = Some((text.clone(), negotiated));
        Ok(text)
    }

    /// `setLocalDescription` with the text [`PeerConnection::create_offer`]
    /// or [`PeerConnection::create_answer`] gave, or [`SdpType::Rollback`].
    pub fn set_local_description(
        &mut self,
        now: Instant,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        match kind {
            SdpType::Rollback => self.rollback(),
            SdpType::Offer => {
                if self.pending_offer.as_deref() != Some(sdp) {
                    return Err(Error::Misuse("not the offer create_offer made"));
                }
                self.set_signaling(SignalingState::HaveLocalOffer);
                Ok(())
            }
            SdpType::Answer => {
                let (text, negotiated) = self
                    .pending_answer
                    .take()
                    .ok_or(Error::Misuse("no answer was created"))?;
                if text != sdp {
                    self.pending_answer = Some((text, negotiated));
                    return Err(Error::Misuse("not the answer create_answer made"));
                }
                self.remote_offer = None;
                self.apply(now, negotiated)?;
                self.set_signaling(SignalingState::Stable);
                Ok(())
            }
        }
    }

    /// `setRemoteDescription`: the peer's offer (we become ICE controlled
    /// and answer `a=setup:active`, the DTLS client) or its answer to ours,
    /// or [`SdpType::Rollback`] of the peer's pending offer.
    ///
    /// Glare (both sides offered at once): an offer that arrives while ours
    /// is pending rolls ours back first (the W3C "implicit rollback" that
    /// the polite peer of perfect negotiation relies on); the impolite peer
    /// simply does not call this with the colliding offer. Tracks and
    /// channels of the rolled-back offer stay, for the next offer.
    pub fn set_remote_description(
        &mut self,
        now: Instant,
        kind: SdpType,
        sdp: &str,
    ) -> Result<(), Error> {
        if self.signaling == SignalingState::Closed {
            return Err(Error::Closed);
        }
        if kind == SdpType::Rollback {
            return self.rollback();
        }
        let sd = SessionDescription::parse_str(sdp)?;
        match kind {
            SdpType::Rollback => self.rollback(),
            SdpType::Offer => {
                if self.signaling == SignalingState::HaveLocalOffer {
                    // W3C setRemoteDescription, offer in have-local-offer:
                    // implicit rollback of ours.
                    self.rollback()?;
                }
                self.ensure_transport(now, IceRole::Controlled)?;
                self.remote_offer = Some(sd);
                self.set_signaling(SignalingState::HaveRemoteOffer);
                Ok(())
            }
            SdpType::Answer => {
                if self.signaling != SignalingState::HaveLocalOffer {
                    return Err(Error::Misuse("an answer without our offer"));
                }
                let negotiated = self.session.set_remote_answer(&sd)?;
                self.pending_offer = None;
                self.apply(now, negotiated)?;
                self.set_signaling(SignalingState::Stable);
                Ok(())
            }
        }
    }

    /// JSEP §4.1.10.2 rollback: the pending offer (ours, or the peer's and
    /// our unapplied answer to it) is dropped, nothing it proposed is
    /// applied, and the state is `stable` again. Refused in `stable`.
    pub(super) fn rollback(&mut self) -> Result<(), Error> {
        match self.signaling {
            SignalingState::HaveLocalOffer => {
                self.pending_offer = None;
            }
            SignalingState::HaveRemoteOffer => {
                self.remote_offer = None;
                self.pending_answer = None;
            }
            SignalingState::Stable => {
                return Err(Error::Misuse("nothing to roll back in the stable state"));
            }
            SignalingState::Closed => return Err(Error::Closed),
        }
        self.set_signaling(SignalingState::Stable);
        Ok(())
    }

    /// `addIceCandidate`: one trickled remote candidate (`candidate:…`,
    /// with or without the `a=` prefix). Kept until the remote description
    /// is set.
    pub fn add_ice_candidate(&mut self, now: Instant, candidate: &str) -> Result<(), Error> {
        let line = candidate.trim();
        let line = line.strip_prefix("a=").unwrap_or(line);
        let c: Candidate = line.parse().map_err(Error::Candidate)?;
        if self.negotiated.is_none() && self.remote_offer.is_none() {
            if self.early_candidates.len() >= MAX_EARLY_CANDIDATES {
                return Err(Error::Misuse("too many candidates before the description"));
            }
            self.early_candidates.push(c);
            return Ok(());
        }
        let t = self.transport.as_mut().ok_or(Error::Closed)?;
        t.add_remote_candidate(now, c)?;
        self.drain(now);
        Ok(())
    }

    /// The peer signaled end-of-candidates (RFC 8838 §13).
    pub fn add_end_of_candidates(&mut self, now: Instant) {
        if self.negotiated.is_none() && self.remote_offer.is_none() {
            self.early_end_of_candidates = true;
            return;
        }
        if let Some(t) = self.transport.as_mut() {
            t.end_of_candidates(now);
        }
        self.drain(now);
    }

    pub(super) fn ensure_transport(&mut self, now: Instant, role: IceRole) -> Result<(), Error> {
        if self.transport.is_some() {
            return Ok(());
        }
        let certificate = self.certificate.take().ok_or(Error::Closed)?;
        let mut config = match self.transport_config.take() {
            Some(mut c) => {
                c.ice_role = role;
                c.certificate = certificate;
                c
            }
            None => {
                let mut c = TransportConfig::new(role, certificate);
                c.ice.checks.rto = HANDSHAKE_RTO;
                c.dtls_retransmit_timeout = HANDSHAKE_RTO;
                c
            }
        };
        config.host_candidates = self.host_candidates.clone();
        config.stun_server = self.stun_server;
        let servers = ice_servers::resolve(&self.ice_servers).map_err(Error::IceServer)?;
        if config.stun_server.is_none() {
            config.stun_server = servers.stun;
        }
        if let Some((server, user, pass)) = servers.turn {
            config.turn = Some(match servers.turn_transport {
                crate::turn::ServerTransport::Udp => {
                    crate::turn::client::Config::new(server, &user, &pass)
                }
                crate::turn::ServerTransport::Tcp => {
                    crate::turn::client::Config::tcp(server, &user, &pass)
                }
            });
        }
        if self.ice_transport_policy == IceTransportPolicy::Relay {
            if config.turn.is_none() {
                return Err(Error::Misuse(
                    "iceTransportPolicy relay needs a TURN server in ice_servers",
                ));
            }
            // Only the relayed candidate: no host or server-reflexive one
            // is signaled or used (W3C §4.2.6).
            config.ice.relay_only = true;
            config.stun_server = None;
        }
        if let Some(c) = self.ice_credentials.take() {
            config.local_credentials = Some(c);
        }
        let seed: u64 = self.rng.random();
        let t = Transport::new(config, now, StdRng::seed_from_u64(seed))?;
        let creds = t.local_credentials().clone();
        let params = self.session.transport_mut();
        params.ice_ufrag = creds.ufrag;
        params.ice_pwd = creds.pwd;
        self.transport = Some(t);
        self.set_state(PeerConnectionState::Connecting);
        self.drain(now);
        Ok(())
    }

    /// A completed offer/answer: transport keyed, senders and receivers
    /// set up, SCTP made.
    pub(super) fn apply(&mut self, now: Instant, n: Negotiated) -> Result<(), Error> {
        let first = self.negotiated.is_none();
        let t = self.transport.as_mut().ok_or(Error::Closed)?;
        if first {
            t.set_remote_credentials(
                now,
                &Credentials {
                    ufrag: n.remote_ice_ufrag.clone(),
                    pwd: n.remote_ice_pwd.clone(),
                },
            );
            let role = match n.dtls_role {
                sdp::DtlsRole::Client => DtlsRole::Client,
                sdp::DtlsRole::Server => DtlsRole::Server,
            };
            // RFC 8122 §5: the certificate must match a signaled fingerprint.
            let fps: Vec<_> = n
                .remote_fingerprints
                .iter()
                .filter_map(|f| f.to_dtls())
                .collect();
            t.set_remote_dtls(now, role, fps)?;
            for c in n.remote_candidates.iter().cloned() {
                let _ = t.add_remote_candidate(now, c);
            }
            for c in std::mem::take(&mut self.early_candidates) {
                let _ = t.add_remote_candidate(now, c);
            }
            if n.remote_end_of_candidates || self.early_end_of_candidates {
                t.end_of_candidates(now);
            }
        }
        let mid_uri = crate::sdp::codec::uri::MID;
        for m in &n.media {
            let Some(mid) = m.mid.as_ref() else {
                continue;
            };
            // A receiver whose m-line no longer brings media ends (the
            // peer removed its track: its direction lost `send`, or the
            // m-line was rejected, JSEP §5.10/§5.11).
            let receiving = !m.rejected && m.direction.receives();
            if !receiving && self.receivers.iter().any(|r| &r.mid == mid) {
                while let Some(i) = self.receivers.iter().position(|r| &r.mid == mid) {
                    self.remove_receiver(i);
                }
                self.push(Event::TrackEnded { mid: mid.clone() });
            }
            // A rejected data m-line ends the association (RFC 8841 §5).
            let was_data = self
                .negotiated
                .as_ref()
                .and_then(|old| old.by_mid(mid))
                .is_some_and(|o| o.kind == Some(MediaKind::Application) && !o.rejected);
            if m.rejected {
                if was_data || m.kind == Some(MediaKind::Application) {
                    self.stop_data(now, false);
                }
                continue;
            }
            let Some(kind) = m.kind else {
                continue;
            };
            let mid_ext = m
                .extensions
                .iter()
                .find(|(_, u)| u == mid_uri)
                .and_then(|(id, _)| u8::try_from(*id).ok());
            if kind == MediaKind::Application {
                if self.data_closing {
                    // A new data m-line while the old association still
                    // closes: that one goes now.
                    if let Some(d) = self.data.as_mut() {
                        d.abort(now);
                    }
                    self.flush_sctp();
                    self.data = None;
                    self.data_started = false;
                    self.data_closing = false;
                }
                if self.data.is_none()
                    && let Some(sctp) = m.sctp
                {
                    self.make_data(now, n.dtls_role, sctp)?;
                }
                continue;
            }
            // Our sender on this m-line: the first negotiated codec that is
            // the track's (RFC 3264 §5.1: any payload type of the answer
            // may be sent).
            for s in &mut self.senders {
                let tr = self.session.transceivers().get(s.transceiver);
                let tmid = tr.and_then(|t| t.mid.clone());
                if tmid.as_deref() == Some(mid.as_str()) {
                    s.mid = Some(mid.clone());
                    s.mid_ext = mid_ext;
                    s.ext_out = ExtIds::new(ext_map(&m.extensions));
                    // Simulcast (RFC 8853 §5.2): the layers the answer
                    // took send with their rid; without simulcast agreed,
                    // the first layer sends alone, as a plain stream.
                    let first_layer = tr
                        .and_then(|t| t.sender.as_ref())
                        .and_then(|l| l.rids.first());
                    let layer_sends = match &s.rid {
                        None => true,
                        Some(rid) if m.send_rids.is_empty() => first_layer == Some(rid),
                        Some(rid) => m.send_rids.contains(rid),
                    };
                    s.send_rid = s.rid.is_some() && !m.send_rids.is_empty();
                    let codec = m
                        .codecs
                        .iter()
                        .find(|c| TrackCodec::from_negotiated(c) == Some(s.codec))
                        .filter(|_| m.direction.sends() && !s.removed && layer_sends);
                    s.negotiated = codec.is_some();
                    s.codec_name = codec.map(|c| c.name.clone());
                    if let Some(c) = codec {
                        s.stream.set_codec(c.payload_type, c.clock_rate);
                        // The codec (and so its RTX payload type) may
                        // change in a renegotiation; the history stays.
                        if let (Some(pt), Some(rtx_ssrc)) = (c.rtx_payload_type, s.rtx_ssrc) {
                            let first = self.rng.random();
                            s.stream.set_rtx(rtx_ssrc, pt, self.rtx_history, first);
                        }
                    }
                }
            }
            // A receiver where the peer sends.
            if m.direction.receives() && !self.receivers.iter().any(|r| &r.mid == mid) {
                let codecs: Vec<(u8, TrackCodec, String)> = m
                    .codecs
                    .iter()
                    .filter_map(|c| {
                        TrackCodec::from_negotiated(c).map(|k| (c.payload_type, k, c.name.clone()))
                    })
                    .collect();
                let first = codecs.first().map(|c| c.1).unwrap_or(match kind {
                    MediaKind::Audio => TrackCodec::Opus,
                    _ => TrackCodec::Vp8,
                });
                let clock_rate = m.codecs.first().map_or(90_000, |c| c.clock_rate);
                let ext_id = |uri: &str| {
                    m.extensions
                        .iter()
                        .find(|(_, u)| u == uri)
                        .and_then(|(id, _)| u8::try_from(*id).ok())
                };
                // One receiver per simulcast layer (RFC 8853), or one.
                let layers: Vec<Option<Mid>> = if m.receive_rids.is_empty() {
                    vec![None]
                } else {
                    m.receive_rids
                        .iter()
                        .filter_map(|r| Mid::new(r))
                        .map(Some)
                        .collect()
                };
                for (layer, rid) in layers.into_iter().enumerate() {
                    let idx = self.receivers.len();
                    let primary = layer == 0;
                    let mut stream = ReceiveStream::new(
                        clock_rate,
                        primary.then(|| first.depacketizer()),
                        ASSEMBLER_CAPACITY,
                        kind == MediaKind::Video, // NACKs for video (RFC 4585 §6.2.1)
                        MAX_WAIT,
                    );
                    if rid.is_none()
                        && let Some(&ssrc) = m.remote_ssrcs.first()
                    {
                        stream.set_ssrc(ssrc);
                    }
                    stream.set_rtx_types(
                        m.codecs
                            .iter()
                            .filter_map(|c| c.rtx_payload_type.map(|r| (r, c.payload_type)))
                            .collect(),
                    );
                    self.receivers.push(Receiver {
                        mid: mid.clone(),
                        mid_key: Mid::new(mid),
                        rid,
                        primary,
                        rid_ext: ext_id(crate::sdp::codec::uri::RTP_STREAM_ID),
                        repaired_rid_ext: ext_id(crate::sdp::codec::uri::REPAIRED_RTP_STREAM_ID),
                        kind,
                        payload_types: m.codecs.iter().map(|c| c.payload_type).collect(),
                        codecs: codecs.clone(),
                        current: Some(first),
                        current_name: None,
                        rtp_mode: false,
                        remb: m
                            .codecs
                            .iter()
                            .any(|c| c.feedback.iter().any(|f| f.kind == "goog-remb"))
                            && !m
                                .codecs
                                .iter()
                                .any(|c| c.feedback.iter().any(|f| f.kind == "transport-cc")),
                        ext_in: ext_map(&m.extensions).collect(),
                        stream,
                    });
                    // Signaled SSRCs route to the single stream; simulcast
                    // layers are told apart by their rid (RFC 8852).
                    if rid.is_none() {
                        for &ssrc in &m.remote_ssrcs {
                            self.ssrc_routes.insert(ssrc, idx);
                        }
                        for &(_, rtx) in &m.remote_rtx_ssrcs {
                            self.ssrc_routes.insert(rtx, idx);
                        }
                    }
                }
                if self.remote_tcc_ext.is_none() {
                    self.remote_tcc_ext = ext_id(crate::sdp::codec::uri::TRANSPORT_CC);
                }
                if self.remote_mid_ext.is_none() {
                    self.remote_mid_ext = mid_ext;
                }
                self.push(Event::Track {
                    mid: mid.clone(),
                    kind,
                });
            }
        }
        self.negotiated = Some(n);
        self.drain(now);
        Ok(())
    }
}
