//! One browser visitor's Rust peer: it joins the visitor's room as a
//! signaling member, answers the page's offer, reflects its camera, talks
//! on the chat channel, checks photos, and reports what it sees each second.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use crate::peer::{self, PeerConnectionState, TrackCodec, TrackId};
use crate::runtime::LivePeer;
use crate::sdp::{Direction, MediaKind, SessionDescription};
use crate::signaling::{ClientId, ClientMessage, Member, ServerMessage};

/// How long a visitor has to send its offer after the Rust peer joined.
const OFFER_TIMEOUT: Duration = Duration::from_secs(30);
/// The live panel's period.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// The x-ray panel's period.
const XRAY_EVERY: Duration = Duration::from_millis(250);
/// The largest photo the Rust peer takes.
const MAX_PHOTO: usize = 16 << 20;

/// A photo being received on the `photo` channel: a JSON header (`bytes`,
/// `sha256`), then binary chunks until `bytes` arrived.
struct Photo {
    expected: usize,
    sha256: String,
    data: Vec<u8>,
    chunks: usize,
    started: Instant,
}

/// Counters for the live panel, with last second's values for rates.
#[derive(Default, Clone, Copy)]
struct Counts {
    rtp_in: u64,
    rtp_out: u64,
    frames_in: u64,
    frames_out: u64,
    dc_bytes_in: u64,
    dc_bytes_out: u64,
    dc_messages_in: u64,
    dc_messages_out: u64,
}

struct Session {
    member: Member,
    /// The browser's member id.
    visitor: Option<ClientId>,
    peer: Option<LivePeer>,
    udp_ip: IpAddr,
    /// Where the peer's capture goes (`--pcap`).
    pcap: Option<std::path::PathBuf>,
    /// The x-ray panel's capture, if the panel is on.
    xray: Option<super::xray::Recording>,
    /// Our video track (reflecting the camera), when the offer had one.
    track: Option<TrackId>,
    /// Whether the page was told that sending the video back failed.
    send_failure_shown: bool,
    /// The mid the browser's camera arrives on.
    camera_mid: Option<String>,
    /// The first mid of the offer (for the candidates we signal).
    first_mid: String,
    /// Keyframes asked of the browser since the last panel.
    keyframe_requests: u64,
    photo: Option<Photo>,
    counts: Counts,
    last: Counts,
    last_at: Instant,
    started: Instant,
    failed: Option<String>,
}

/// Runs one visitor's session until the visitor leaves, the peer fails,
/// the offer never comes, or `stop` turns true (Ctrl-C).
pub(super) async fn run(
    member: Member,
    room: String,
    udp_ip: IpAddr,
    pcap: Option<std::path::PathBuf>,
    xray: Option<super::xray::Recording>,
    mut stop: watch::Receiver<bool>,
) {
    member.send(ClientMessage::CreateOrJoin { room: room.clone() });
    let now = Instant::now();
    let mut s = Session {
        member,
        visitor: None,
        peer: None,
        udp_ip,
        pcap,
        xray,
        track: None,
        send_failure_shown: false,
        camera_mid: None,
        first_mid: "0".into(),
        keyframe_requests: 0,
        photo: None,
        counts: Counts::default(),
        last: Counts::default(),
        last_at: now,
        started: now,
        failed: None,
    };
    tracing::info!(%room, "demo: a Rust peer joins");
    let mut tick = tokio::time::interval(STATS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut xray_tick = tokio::time::interval(XRAY_EVERY);
    xray_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let peer = &mut s.peer;
        let peer_event = async move {
            match peer.as_mut() {
                Some(p) => p.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = async { stop.wait_for(|s| *s).await.is_ok() } => break,
            m = s.member.recv() => match m {
                Some(m) => {
                    if !s.on_signal(m).await {
                        break;
                    }
                }
                None => break, // the server stops
            },
            e = peer_event => match e {
                Ok(e) => s.on_peer(e),
                Err(e) => {
                    s.fail(format!("UDP socket error: {e}"));
                }
            },
            _ = tick.tick() => {
                if s.peer.is_none() && s.started.elapsed() > OFFER_TIMEOUT {
                    tracing::info!(%room, "demo: no offer came; leaving");
                    break;
                }
                s.send_stats();
            }
            _ = xray_tick.tick() => s.send_xray(),
        }
        if s.failed.is_some() && s.peer.is_none() {
            break;
        }
    }
    if let Some(p) = s.peer.as_mut() {
        // SCTP ABORT and DTLS close_notify go out before we leave.
        p.close().await;
    }
    s.member.send(ClientMessage::Bye {});
    let c = s.counts;
    tracing::info!(
        %room,
        frames_in = c.frames_in,
        frames_out = c.frames_out,
        messages_in = c.dc_messages_in,
        "demo: the Rust peer left"
    );
}

/// Tells the visitor of `room` why no Rust peer comes, and leaves.
pub(super) async fn refuse(mut member: Member, room: String, why: String) {
    member.send(ClientMessage::CreateOrJoin { room });
    let wait = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(m) = member.recv().await {
            if let ServerMessage::Joined { members, .. } = m {
                return members.first().copied();
            }
            if matches!(
                m,
                ServerMessage::Created { .. } | ServerMessage::Full { .. }
            ) {
                return None;
            }
        }
        None
    });
    if let Ok(Some(visitor)) = wait.await {
        member.send(ClientMessage::Message {
            to: Some(visitor),
            data: json!({"type": "error", "message": why}).into(),
        });
    }
    member.send(ClientMessage::Bye {});
}

impl Session {
    fn signal(&self, data: Value) {
        self.member.send(ClientMessage::Message {
            to: self.visitor,
            data: data.into(),
        });
    }

    fn fail(&mut self, why: String) {
        tracing::warn!("demo: {why}");
        self.signal(json!({"type": "error", "message": why}));
        self.send_stats();
        self.failed = Some(why);
        self.peer = None;
    }

    /// Returns false when the session is over.
    async fn on_signal(&mut self, m: ServerMessage) -> bool {
        match m {
            ServerMessage::Joined { members, .. } => {
                self.visitor = members.first().copied();
                true
            }
            // Someone else made the room first (or it filled): not ours.
            ServerMessage::Created { .. } | ServerMessage::Full { .. } => false,
            ServerMessage::Bye { id, .. } => Some(id) != self.visitor,
            ServerMessage::Message { from, data } => {
                if self.visitor.is_none() {
                    self.visitor = Some(from);
                }
                if Some(from) == self.visitor {
                    self.on_data(&data.to_value()).await;
                }
                true
            }
            ServerMessage::Error { reason, .. } => {
                tracing::warn!("demo: signaling refused a message: {reason}");
                true
            }
            _ => true,
        }
    }

    /// The page's offer and candidates.
    // ANCHOR: on_data
    async fn on_data(&mut self, data: &Value) {
        match data.get("type").and_then(Value::as_str) {
            Some("offer") => {
                let Some(sdp) = data.get("sdp").and_then(Value::as_str) else {
                    return;
                };
                if self.peer.is_some() {
                    self.signal(json!({"type": "error",
                        "message": "renegotiation is not supported by the demo yet; reload the page"}));
                    return;
                }
                if let Err(e) = self.answer(sdp).await {
                    self.fail(e);
                }
            }
            // A client that only answers asks us to offer.
            Some("offer-request") => {
                if self.peer.is_some() {
                    self.signal(json!({"type": "error",
                        "message": "renegotiation is not supported by the demo yet; reload the page"}));
                    return;
                }
                let video = data.get("video").and_then(Value::as_bool).unwrap_or(true);
                if let Err(e) = self.offer(video).await {
                    self.fail(e);
                }
            }
            Some("answer") => {
                let Some(sdp) = data.get("sdp").and_then(Value::as_str) else {
                    return;
                };
                let Some(p) = self.peer.as_mut() else {
                    return;
                };
                if let Err(e) = p.accept_answer(sdp) {
                    self.fail(format!("the answer was refused: {e}"));
                }
            }
            Some("candidate") => {
                let Some(p) = self.peer.as_mut() else {
                    return;
                };
                match data.get("candidate").and_then(Value::as_str) {
                    Some("") | None => p.add_end_of_candidates(),
                    Some(c) => {
                        // mDNS (`….local`) and TCP candidates are not for us.
                        if let Err(e) = p.add_ice_candidate(c) {
                            tracing::debug!("demo: candidate ignored ({e}): {c}");
                        }
                    }
                }
            }
            _ => {}
        }
    }
    // ANCHOR_END: on_data

    async fn bind(&self) -> Result<LivePeer, String> {
        let config = LivePeer::config().map_err(|e| format!("certificate: {e}"))?;
        let mut peer = LivePeer::bind(config, SocketAddr::new(self.udp_ip, 0))
            .await
            .map_err(|e| format!("cannot bind a UDP port: {e}"))?;
        let file = self.pcap.as_ref().and_then(|path| {
            std::fs::File::create(path)
                .inspect_err(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "demo: no capture file");
                })
                .ok()
        });
        match (&self.xray, file) {
            (Some(x), file) => peer.set_capture(x.capture(file)),
            (None, Some(f)) => peer.set_capture(crate::capture::Capture::new(f)),
            (None, None) => {}
        }
        Ok(peer)
    }

    /// For a client that only answers: we offer a VP8 track (when `video`)
    /// that reflects the client's video as it does the page's, and the
    /// page's two channels, `chat` and `photo`.
    async fn offer(&mut self, video: bool) -> Result<(), String> {
        let mut peer = self.bind().await?;
        if video {
            self.track = Some(
                peer.connection_mut()
                    .add_track_with_codec(TrackCodec::Vp8)
                    .map_err(|e| format!("add_track: {e}"))?,
            );
        }
        for label in ["chat", "photo"] {
            peer.create_data_channel(ChannelInit::new(label))
                .map_err(|e| format!("create_data_channel: {e}"))?;
        }
        let offer = peer.offer().map_err(|e| format!("offer: {e}"))?;
        self.first_mid = offer
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .unwrap_or("0")
            .to_string();
        self.signal(json!({"type": "offer", "sdp": offer}));
        tracing::info!(udp = %peer.local_addr(), video, "demo: offered");
        self.peer = Some(peer);
        Ok(())
    }

    async fn answer(&mut self, offer: &str) -> Result<(), String> {
        let mut peer = self.bind().await?;
        // The camera's m-line takes our track: what we receive on it, we
        // send back on it (sendrecv), in the codec the visitor will send:
        // the first of its offer's that we can send. With none, or when
        // the visitor does not receive video (`sendonly`), no track: the
        // answer is `recvonly` (RFC 3264 §6.1), and nothing fails to send.
        let has_video = offer.lines().any(|l| l.starts_with("m=video "));
        let codec = offered_video_codec(offer);
        if let Some(codec) = codec {
            self.track = Some(
                peer.connection_mut()
                    .add_track_with_codec(codec)
                    .map_err(|e| format!("add_track: {e}"))?,
            );
        }
        self.first_mid = offer
            .lines()
            .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .unwrap_or("0")
            .to_string();
        let answer = peer
            .answer(offer)
            .map_err(|e| format!("the offer was refused: {e}"))?;
        self.signal(json!({"type": "answer", "sdp": answer}));
        tracing::info!(udp = %peer.local_addr(), video = has_video, ?codec, "demo: answered");
        self.peer = Some(peer);
        Ok(())
    }

    fn on_peer(&mut self, e: peer::Event) {
        match e {
            // ANCHOR: trickle_out
            peer::Event::LocalCandidate(c) => self.signal(json!({
                "type": "candidate",
                "candidate": c.to_string(),
                "sdpMid": self.first_mid,
                "sdpMLineIndex": 0,
            })),
            peer::Event::GatheringComplete => self.signal(json!({
                "type": "candidate", "candidate": "",
                "sdpMid": self.first_mid, "sdpMLineIndex": 0,
            })),
            // ANCHOR_END: trickle_out
            peer::Event::ConnectionState(state) => {
                tracing::info!(?state, "demo: connection state");
                self.send_stats();
                if state == PeerConnectionState::Failed && self.failed.is_none() {
                    self.fail("the connection failed (ICE or DTLS)".into());
                }
            }
            peer::Event::Track {
                mid,
                kind: MediaKind::Video,
            } => {
                self.camera_mid = Some(mid);
            }
            peer::Event::Frame { mid, frame } => {
                self.counts.frames_in += 1;
                if Some(&mid) != self.camera_mid.as_ref() {
                    return;
                }
                if let (Some(track), Some(p)) = (self.track, self.peer.as_mut()) {
                    // The same RTP timestamp: the reflected video keeps the
                    // camera's timing.
                    match p.send_frame(track, frame.timestamp, &frame.data) {
                        Ok(_) => self.counts.frames_out += 1,
                        Err(e) if !self.send_failure_shown => {
                            // Once: the page shows it in a banner; the call
                            // (chat, photo) goes on.
                            self.send_failure_shown = true;
                            let why = format!("cannot send the video back: {e}");
                            tracing::warn!("demo: {why}");
                            self.signal(json!({"type": "error", "message": why}));
                        }
                        Err(_) => {}
                    }
                }
            }
            peer::Event::KeyframeRequested(_) => {
                // We have no encoder: the browser's decoder wants a
                // keyframe, so ask the camera's encoder for one.
                if let (Some(mid), Some(p)) = (self.camera_mid.clone(), self.peer.as_mut())
                    && p.request_keyframe(&mid).is_ok()
                {
                    self.keyframe_requests += 1;
                }
            }
            peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                self.counts.dc_messages_in += 1;
                self.counts.dc_bytes_in += message.len() as u64;
                self.on_message(channel, message);
            }
            peer::Event::DataChannel(DcEvent::Open(id))
                if self.label(id).as_deref() == Some("chat") =>
            {
                self.send_text(
                    id,
                    "Hello from the Rust peer! I echo what you write; try /help.",
                );
            }
            peer::Event::Error(e) if self.failed.is_none() => self.fail(e.to_string()),
            _ => {}
        }
    }

    fn label(&self, id: ChannelId) -> Option<String> {
        let p = self.peer.as_ref()?;
        let dc = p.connection().data_channels()?;
        Some(dc.channel(id)?.label().to_string())
    }

    fn send_text(&mut self, id: ChannelId, text: &str) {
        if let Some(p) = self.peer.as_mut()
            && p.send_text(id, text).is_ok()
        {
            self.counts.dc_messages_out += 1;
            self.counts.dc_bytes_out += text.len() as u64;
        }
    }

    fn on_message(&mut self, id: ChannelId, message: Message) {
        match (self.label(id).as_deref(), message) {
            (Some("chat"), Message::Text(t)) => {
                let reply = self.chat_reply(&t);
                self.send_text(id, &reply);
            }
            (Some("photo"), Message::Text(t)) => self.photo_header(id, &t),
            (Some("photo"), Message::Binary(b)) => self.photo_chunk(id, &b),
            (_, Message::Text(t)) => self.send_text(id, &t),
            (_, Message::Binary(_)) => {}
        }
    }

    fn chat_reply(&self, text: &str) -> String {
        match text.trim() {
            "/help" => {
                "Commands: /help, /stats, /whoami. Anything else comes back as an echo.".into()
            }
            "/stats" => {
                let c = &self.counts;
                format!(
                    "So far I received {} RTP packets and {} frames, and reflected {} frames.",
                    c.rtp_in, c.frames_in, c.frames_out
                )
            }
            "/whoami" => match self.peer.as_ref().and_then(|p| {
                let (l, r) = p.connection().transport()?.selected_pair()?;
                Some((l.clone(), r.clone()))
            }) {
                Some((l, r)) => format!(
                    "You are {}:{} ({}); I am {}:{}.",
                    r.address, r.port, r.kind, l.address, l.port
                ),
                None => "ICE has not selected a pair yet.".into(),
            },
            _ => format!("echo: {text}"),
        }
    }

    fn photo_header(&mut self, id: ChannelId, text: &str) {
        let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let bytes = v.get("bytes").and_then(Value::as_u64).unwrap_or(0) as usize;
        if bytes == 0 || bytes > MAX_PHOTO {
            let reply = json!({"type": "photo-ack", "ok": false,
                "error": format!("a photo must be 1 byte to {MAX_PHOTO} bytes")});
            self.send_text(id, &reply.to_string());
            return;
        }
        self.photo = Some(Photo {
            expected: bytes,
            sha256: v
                .get("sha256")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            data: Vec::with_capacity(bytes),
            chunks: 0,
            started: Instant::now(),
        });
    }

    fn photo_chunk(&mut self, id: ChannelId, chunk: &[u8]) {
        let Some(photo) = self.photo.as_mut() else {
            return;
        };
        photo.chunks += 1;
        let room = photo.expected - photo.data.len();
        photo
            .data
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        if photo.data.len() < photo.expected {
            return;
        }
        let Some(photo) = self.photo.take() else {
            return;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, &photo.data);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        let matches = photo.sha256.is_empty() || photo.sha256 == hex;
        let reply = json!({
            "type": "photo-ack",
            "ok": matches,
            "bytes": photo.data.len(),
            "chunks": photo.chunks,
            "sha256": hex,
            "ms": photo.started.elapsed().as_millis() as u64,
        });
        self.send_text(id, &reply.to_string());
    }

    /// The x-ray panel: the ladder decoded since the last time, and the
    /// capture's download (flushed first, so that it holds those packets).
    fn send_xray(&mut self) {
        let (Some(x), Some(p)) = (self.xray.as_ref(), self.peer.as_mut()) else {
            return;
        };
        let Some(c) = p.capture_mut() else { return };
        let lines = c.take_live(Instant::now());
        if lines.is_empty() {
            return;
        }
        let _ = c.flush();
        for m in super::xray::messages(x, &lines) {
            self.signal(m);
        }
    }

    /// The live panel: each layer's state and counters, as the Rust side
    /// sees them.
    fn send_stats(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last_at).as_secs_f64().max(0.001);
        let mut v = json!({"type": "stats", "uptime_s": self.started.elapsed().as_secs()});
        if let Some(p) = self.peer.as_ref() {
            let pc = p.connection();
            v["udp"] = json!(p.local_addr().to_string());
            v["signaling"] = json!(format!("{:?}", pc.signaling_state()));
            v["connection"] = json!(format!("{:?}", pc.connection_state()));
            if let Some(t) = pc.transport() {
                let st = t.stats();
                self.counts.rtp_in = st.rtp_received;
                self.counts.rtp_out = st.rtp_sent;
                v["transport"] = json!(format!("{:?}", t.state()));
                v["ice"] = json!(t.ice().map(|a| format!("{:?}", a.state())));
                v["ice_role"] = json!(format!("{:?}", t.ice_role()));
                if let Some((l, r)) = t.selected_pair() {
                    v["pair"] = json!({
                        "local": format!("{}:{} {}", l.address, l.port, l.kind),
                        "remote": format!("{}:{} {}", r.address, r.port, r.kind),
                    });
                }
                v["dtls_role"] = json!(t.dtls_role().map(|r| format!("{r:?}")));
                v["dtls_suite"] = json!(t.dtls_cipher_suite().map(|c| c.name()));
                v["srtp"] = json!(t.srtp_profile().map(|p| p.name()));
                v["dropped"] = json!(st.dropped_unprotect + st.dropped_unknown_source);
            }
            if let Some(dc) = pc.data_channels() {
                v["sctp"] = json!(format!("{:?}", dc.association().state()));
                let channels: Vec<Value> = dc
                    .channels()
                    .map(|c| json!({"label": c.label(), "state": format!("{:?}", c.ready_state())}))
                    .collect();
                v["channels"] = json!(channels);
            }
            let ms = pc.media_stats();
            v["nacks_sent"] = json!(ms.nacks_sent);
            v["plis_sent"] = json!(ms.plis_sent + self.keyframe_requests);
        }
        let c = self.counts;
        let l = self.last;
        let rate = |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / dt * 10.0).round() / 10.0;
        v["rtp"] = json!({
            "in": c.rtp_in, "out": c.rtp_out,
            "in_per_s": rate(c.rtp_in, l.rtp_in), "out_per_s": rate(c.rtp_out, l.rtp_out),
        });
        v["frames"] = json!({
            "in": c.frames_in, "out": c.frames_out,
            "in_per_s": rate(c.frames_in, l.frames_in), "out_per_s": rate(c.frames_out, l.frames_out),
        });
        v["data"] = json!({
            "bytes_in": c.dc_bytes_in, "bytes_out": c.dc_bytes_out,
            "messages_in": c.dc_messages_in, "messages_out": c.dc_messages_out,
        });
        if let Some(f) = &self.failed {
            v["error"] = json!(f);
        }
        self.last = c;
        self.last_at = now;
        if self.visitor.is_some() {
            self.signal(v);
        }
    }
}

/// The codec the visitor will send its camera in, if we can send it too:
/// the first of its first video m-line's codecs (in the offer's order of
/// preference, RFC 3264 §5.1) that the codec registry can packetize (VP8,
/// VP9 profile 0, AV1 profile 0, H.264 in packetization mode 1). `None`
/// when the visitor does not receive video: its m-line is `sendonly` or
/// `inactive` (RFC 3264 §6.1: we may then only answer `recvonly` or
/// `inactive`).
fn offered_video_codec(offer: &str) -> Option<TrackCodec> {
    let sdp = SessionDescription::parse_str(offer).ok()?;
    let video = sdp
        .media
        .iter()
        .find(|m| m.media == "video" && !m.is_rejected())?;
    let direction = video
        .direction()
        .or(sdp.direction())
        .unwrap_or(Direction::SendRecv);
    if !matches!(direction, Direction::SendRecv | Direction::RecvOnly) {
        return None;
    }
    video.payload_types().find_map(|pt| {
        let name = &video.rtpmap(pt)?.encoding;
        let fmtp = video.fmtp(pt).map(|f| f.params.as_str());
        TrackCodec::from_sdp(name, fmtp).filter(|c| c.kind() == MediaKind::Video)
    })
}
