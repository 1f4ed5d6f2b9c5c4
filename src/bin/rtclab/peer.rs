//! `rtclab peer`: a Rust peer as a process. It joins a room of `rtclab
//! signaling` as a member (the codelab's rooms, see `rtclab::signaling`),
//! offers or answers as the room decides, trickles its candidates, and
//! then, by its flags, echoes data-channel messages, sends and saves files,
//! sends video from an IVF file and records what it receives. It prints
//! each layer's state as it comes up, one line each on stdout.
//!
//! Who offers: the codelab's rule. The room's first member (`created`) is
//! the initiator: when the server says `ready`, the first of `members`
//! offers, the other waits for the offer and answers. A page that follows
//! the same rule (and the same payloads, below) meets `rtclab peer` in a
//! room, as two `rtclab peer` processes meet each other.
//!
//! What goes in the room's `message`s (`data`), as the demo's page sends:
//!
//! ```text
//! {"type":"offer","sdp":"v=0…"}      {"type":"answer","sdp":"v=0…"}
//! {"type":"candidate","candidate":"candidate:…","sdpMid":"0","sdpMLineIndex":0}
//! {"type":"candidate","candidate":""}          end of candidates (RFC 8838)
//! ```
//!
//! Files go over a reliable, ordered data channel labelled `file`, made by
//! the sender: one text message, the header
//! `{"type":"file","name":"photo.jpg","bytes":1048576,"sha256":"<hex>"}`,
//! then binary messages of 16 KiB carrying the bytes in order. The receiver
//! hashes them as they come (with `--save DIR`, writes `DIR/NAME`, the
//! header's name without its directories, through `NAME.part`) and answers
//! on the same channel `{"type":"file-ack","ok":true,"bytes":N,"sha256":"<hex>"}`
//! (`ok` false when the hash or the length differs). The sender keeps at
//! most 1 MiB buffered on the channel, refilled at `bufferedamountlow`.
//!
//! Every other channel's messages are echoed back as they came (text as
//! text, binary as binary).
//!
//! Video: `--video FILE.ivf` adds a track with the IVF file's codec (VP8,
//! VP9 or AV1 by its FourCC) and sends its frames once at the pace of their
//! timestamps; `--record FILE.ivf` writes the first received video m-line's
//! frames (RTP timestamps, 1/90000 s time base) and the file is complete
//! when the peer exits.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::ice::ConnectionState as IceState;
use rtclab::peer::{self, IceServer, IceTransportPolicy, PeerConnectionState, TrackCodec, TrackId};
use rtclab::rtp::ivf::{IvfHeader, IvfReader, IvfWriter};
use rtclab::runtime::LivePeer;
use rtclab::sdp::{MediaKind, SessionDescription};
use rtclab::signaling::{ClientId, ClientMessage, ServerMessage};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The label of the file channel.
const FILE_LABEL: &str = "file";
/// The size of a file's binary messages.
const CHUNK: usize = 16 * 1024;
/// Most bytes the sender keeps buffered on the file channel.
const HIGH_WATER: usize = 1 << 20;
/// Refilled when the buffered amount falls to this.
const LOW_WATER: usize = 256 * 1024;
/// How long the peer stays after its transfers are done, so that its last
/// messages (an acknowledgement) are delivered before it closes.
const LINGER: Duration = Duration::from_millis(500);
/// How often the byte counters are printed.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// `rtclab peer …`.
#[derive(Args)]
pub struct PeerArgs {
    /// The signaling server, `ws://HOST:PORT` (`/ws` is added when the URL
    /// has no path).
    #[arg(long)]
    server: String,
    /// The room to join (1–64 of `A-Z a-z 0-9 - _ .`).
    #[arg(long)]
    room: String,
    /// A STUN server, `stun:HOST[:PORT]` (server-reflexive candidates).
    #[arg(long, value_name = "URL")]
    stun: Option<String>,
    /// A TURN server, `turn:HOST[:PORT][?transport=udp|tcp]` (a relayed
    /// candidate); needs --user.
    #[arg(long, value_name = "URL", requires = "user")]
    turn: Option<String>,
    /// The TURN credentials, `USERNAME:PASSWORD`.
    #[arg(long, value_name = "USER:PASSWORD")]
    user: Option<String>,
    /// Use the relayed candidate only (W3C iceTransportPolicy "relay").
    #[arg(long, requires = "turn")]
    relay_only: bool,
    /// The UDP address to bind; on 0.0.0.0 every non-loopback address of
    /// the machine is a host candidate.
    #[arg(long, default_value = "0.0.0.0:0")]
    udp: SocketAddr,
    /// Send this file over the `file` channel.
    #[arg(long, value_name = "FILE")]
    send: Option<PathBuf>,
    /// Save received files in this directory (without it, they are
    /// checked and dropped).
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
    /// Send the frames of this IVF file (VP8, VP9 or AV1) at their pace.
    #[arg(long, value_name = "FILE.ivf")]
    video: Option<PathBuf>,
    /// Record received video to this IVF file.
    #[arg(long, value_name = "FILE.ivf")]
    record: Option<PathBuf>,
    /// Exit (0) once every transfer asked is done: the file sent and
    /// acknowledged (--send), one file received (--save), the video sent
    /// (--video). A failed transfer exits 1. Without it, the peer runs
    /// until the other leaves (then exits 0 if nothing asked is pending)
    /// or Ctrl-C.
    #[arg(long)]
    exit_after_transfer: bool,
    /// Give up (exit 1) when the connection is not up this many seconds
    /// after the offer or answer (waiting for a peer to join has no limit).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    connect_timeout: u64,
    /// Capture every datagram of the call to this pcapng file, with the
    /// DTLS secrets inside and the decrypted RTP/RTCP on a second
    /// interface (open it with `rtclab xray FILE` or Wireshark).
    /// `$SSLKEYLOGFILE` is honoured either way.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

/// A file being sent.
struct Outgoing {
    name: String,
    data: Vec<u8>,
    sha256: String,
    channel: Option<ChannelId>,
    sent: usize,
    started: Option<Instant>,
    acked: bool,
}

/// A file being received.
struct Incoming {
    name: String,
    expected: u64,
    sha256: String,
    received: u64,
    hash: ring::digest::Context,
    file: Option<(PathBuf, std::fs::File)>,
    started: Instant,
}

/// The video to send: the file's frames with their send times.
struct VideoOut {
    codec: TrackCodec,
    frames: Vec<(Duration, u32, Vec<u8>)>,
    next: usize,
    track: Option<TrackId>,
    started: Option<Instant>,
}

struct Recorder {
    path: PathBuf,
    mid: Option<String>,
    writer: Option<IvfWriter>,
    frames: u64,
}

struct Session {
    args: PeerArgs,
    me: Option<ClientId>,
    peer: Option<LivePeer>,
    /// Signaling messages to send.
    outbox: Vec<ClientMessage>,
    first_mid: String,
    remote_sdp: Option<String>,
    sctp_up: bool,
    printed_pair: bool,
    outgoing: Option<Outgoing>,
    incoming: Option<Incoming>,
    files_received: usize,
    video: Option<VideoOut>,
    record: Option<Recorder>,
    /// Set when the run is over: the exit status.
    done: Option<Result<(), String>>,
    /// When the transfers finished (the peer then lingers).
    finished_at: Option<Instant>,
    /// When we offered or answered.
    negotiated_at: Option<Instant>,
}

/// Runs `rtclab peer` until its transfers are done (with
/// --exit-after-transfer), the call ends, or Ctrl-C.
pub async fn run(args: PeerArgs) -> Result<(), String> {
    rtclab::signaling::validate_room_name(&args.room)?;
    let outgoing = match &args.send {
        Some(path) => Some(read_outgoing(path)?),
        None => None,
    };
    let video = match &args.video {
        Some(path) => Some(read_video(path)?),
        None => None,
    };
    if let Some(dir) = &args.save {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let url = ws_url(&args.server);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| format!("signaling: no WebSocket handshake with {url} in 10 s"))?
    .map_err(|e| format!("signaling: cannot connect to {url}: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    say(format!("signaling: connected to {url}"));
    let record = args.record.clone().map(|path| Recorder {
        path,
        mid: None,
        writer: None,
        frames: 0,
    });
    let mut s = Session {
        me: None,
        peer: None,
        outbox: vec![ClientMessage::CreateOrJoin {
            room: args.room.clone(),
        }],
        first_mid: "0".into(),
        remote_sdp: None,
        sctp_up: false,
        printed_pair: false,
        outgoing,
        incoming: None,
        files_received: 0,
        video,
        record,
        done: None,
        finished_at: None,
        negotiated_at: None,
        args,
    };
    let mut stats = tokio::time::interval(STATS_EVERY);
    stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    stats.tick().await;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while s.done.is_none() {
        for m in s.outbox.drain(..) {
            sink.send(WsMessage::Text(m.to_json().into()))
                .await
                .map_err(|e| format!("signaling: {e}"))?;
        }
        let video_at = s.next_video_at();
        let linger_until = s.finished_at.map(|t| t + LINGER);
        let connect_by = s
            .negotiated_at
            .map(|t| t + Duration::from_secs(s.args.connect_timeout));
        let connected = s
            .peer
            .as_ref()
            .is_some_and(|p| p.connection().connection_state() == PeerConnectionState::Connected);
        let peer = &mut s.peer;
        let peer_event = async move {
            match peer.as_mut() {
                Some(p) => p.next_event().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = stream.next() => match m {
                Some(Ok(WsMessage::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(m) => s.on_signal(m).await,
                    Err(e) => eprintln!("signaling: unreadable message ({e}): {text}"),
                },
                Some(Ok(WsMessage::Close(_))) | None => {
                    if s.finished_at.is_some() {
                        s.done = Some(Ok(()));
                    } else {
                        s.done = Some(Err("signaling: the server closed the connection".into()));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => s.done = Some(Err(format!("signaling: {e}"))),
            },
            e = peer_event => match e {
                Ok(e) => s.on_peer(e),
                Err(e) => s.done = Some(Err(format!("UDP socket: {e}"))),
            },
            _ = sleep_until(video_at) => s.send_video(),
            _ = sleep_until(linger_until) => s.done = Some(Ok(())),
            _ = sleep_until(connect_by.filter(|_| !connected && s.finished_at.is_none())) => {
                s.done = Some(Err(format!(
                    "not connected {} s after the offer/answer", s.args.connect_timeout
                )));
            }
            _ = stats.tick() => s.print_bytes(),
            _ = &mut ctrl_c => s.done = Some(Ok(())),
        }
        s.check_finished();
    }
    s.print_bytes();
    if let Some(p) = s.peer.as_mut() {
        p.close().await;
    }
    let _ = sink
        .send(WsMessage::Text(ClientMessage::Bye {}.to_json().into()))
        .await;
    let _ = sink.close().await;
    if let Some(r) = s.record.take() {
        r.finish()?;
    }
    s.done.unwrap_or(Ok(()))
}

/// Prints one line of progress on stdout, flushed (tests read it as it
/// comes).
fn say(line: String) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// `ws://host:port` → `ws://host:port/ws`; a URL with a path stays.
fn ws_url(server: &str) -> String {
    let after_scheme = server.split_once("://").map_or(server, |(_, r)| r);
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("ws://{server}")
    };
    if after_scheme.contains('/') {
        url
    } else {
        format!("{url}/ws")
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn read_outgoing(path: &Path) -> Result<Outgoing, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
    Ok(Outgoing {
        name,
        data,
        sha256,
        channel: None,
        sent: 0,
        started: None,
        acked: false,
    })
}

/// The IVF file's frames with the instant each is due (from its first) and
/// its RTP timestamp (90 kHz).
fn read_video(path: &Path) -> Result<VideoOut, String> {
    let file = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let (header, reader) =
        IvfReader::new(&file).map_err(|e| format!("{}: not an IVF file: {e}", path.display()))?;
    let codec = match &header.fourcc {
        b"VP80" => TrackCodec::Vp8,
        b"VP90" => TrackCodec::Vp9,
        b"AV01" => TrackCodec::Av1,
        other => {
            return Err(format!(
                "{}: IVF FourCC {:?}: only VP80, VP90 and AV01 are sent",
                path.display(),
                String::from_utf8_lossy(other)
            ));
        }
    };
    if header.timebase_den == 0 {
        return Err(format!("{}: IVF time base denominator 0", path.display()));
    }
    let mut frames = Vec::new();
    let mut first = None;
    for f in reader {
        let (ts, data) = f.map_err(|e| format!("{}: {e}", path.display()))?;
        let first = *first.get_or_insert(ts);
        // Seconds = ticks × num / den.
        let ticks = ts.saturating_sub(first) as u128 * u128::from(header.timebase_num.max(1));
        let den = u128::from(header.timebase_den);
        let at = Duration::from_micros((ticks * 1_000_000 / den) as u64);
        let rtp = (ticks * 90_000 / den) as u32;
        frames.push((at, rtp, data.to_vec()));
    }
    if frames.is_empty() {
        return Err(format!("{}: the IVF file has no frame", path.display()));
    }
    Ok(VideoOut {
        codec,
        frames,
        next: 0,
        track: None,
        started: None,
    })
}

impl Recorder {
    fn write(&mut self, codec: Option<TrackCodec>, timestamp: u32, frame: &[u8]) {
        let writer = self.writer.get_or_insert_with(|| {
            let fourcc = match codec {
                Some(TrackCodec::Vp9) => *b"VP90",
                Some(TrackCodec::Av1) => *b"AV01",
                Some(TrackCodec::H264) => *b"H264",
                _ => *b"VP80",
            };
            let (width, height) = vp8_size(frame).unwrap_or((0, 0));
            IvfWriter::new(&IvfHeader {
                fourcc,
                width,
                height,
                timebase_den: 90_000,
                timebase_num: 1,
                frame_count: 0,
            })
        });
        if writer.write_frame(u64::from(timestamp), frame).is_ok() {
            self.frames += 1;
        }
    }

    fn finish(self) -> Result<(), String> {
        let Some(w) = self.writer else {
            say(format!(
                "record: no video received; {} not written",
                self.path.display()
            ));
            return Ok(());
        };
        std::fs::write(&self.path, w.finish())
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        say(format!(
            "record: {} frames written to {}",
            self.frames,
            self.path.display()
        ));
        Ok(())
    }
}

/// A VP8 keyframe's width and height (RFC 6386 §9.1: a 3-byte frame tag
/// with bit 0 clear, the start code 9d 01 2a, then 14-bit sizes).
fn vp8_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

/// A file name from a header, without directories: `None` if nothing
/// usable is left.
fn safe_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next()?;
    if base.is_empty() || base == "." || base == ".." || base.len() > 255 || base.contains('\0') {
        return None;
    }
    Some(base.to_string())
}

impl Session {
    fn signal(&mut self, data: Value) {
        self.outbox.push(ClientMessage::Message {
            to: None,
            data: data.into(),
        });
    }

    fn fail(&mut self, why: String) {
        if self.done.is_none() {
            self.done = Some(Err(why));
        }
    }

    async fn on_signal(&mut self, m: ServerMessage) {
        match m {
            ServerMessage::Created { room, id } => {
                self.me = Some(id);
                say(format!(
                    "signaling: created room {room} as member {id}; waiting for a peer"
                ));
            }
            ServerMessage::Joined { room, id, members } => {
                self.me = Some(id);
                let list: Vec<String> = members.iter().map(|m| m.to_string()).collect();
                say(format!(
                    "signaling: joined room {room} as member {id} (there: {})",
                    list.join(", ")
                ));
            }
            ServerMessage::Ready { members, .. } => {
                // The codelab's rule: the room's first member offers.
                if self.peer.is_none() && members.first() == self.me.as_ref() {
                    say("signaling: room ready; we offer".to_string());
                    if let Err(e) = self.offer().await {
                        self.fail(e);
                    }
                } else if self.peer.is_none() {
                    say("signaling: room ready; waiting for the offer".to_string());
                }
            }
            ServerMessage::Full { room } => {
                self.fail(format!("signaling: room {room} is full"));
            }
            ServerMessage::Bye { id, .. } => {
                say(format!("signaling: member {id} left"));
                if self.peer.is_some() {
                    self.call_ended();
                }
            }
            ServerMessage::Message { data, .. } => self.on_data(&data.to_value()).await,
            ServerMessage::Error { reason, .. } => {
                eprintln!("signaling: refused: {reason}");
            }
            _ => {}
        }
    }

    async fn on_data(&mut self, data: &Value) {
        match data.get("type").and_then(Value::as_str) {
            Some("offer") => {
                let Some(sdp) = data.get("sdp").and_then(Value::as_str) else {
                    return;
                };
                if self.peer.is_some() {
                    eprintln!("signaling: a second offer ignored (no renegotiation)");
                    return;
                }
                if let Err(e) = self.answer(sdp).await {
                    self.fail(e);
                }
            }
            Some("answer") => {
                let Some(sdp) = data.get("sdp").and_then(Value::as_str) else {
                    return;
                };
                self.remote_sdp = Some(sdp.to_string());
                let Some(p) = self.peer.as_mut() else {
                    return;
                };
                match p.accept_answer(sdp) {
                    Ok(()) => say("signaling: answer applied".into()),
                    Err(e) => self.fail(format!("the answer was refused: {e}")),
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
                            tracing::debug!("peer: candidate ignored ({e}): {c}");
                        }
                    }
                }
            }
            Some("error") => {
                let why = data.get("message").and_then(Value::as_str).unwrap_or("?");
                eprintln!("signaling: the peer says: {why}");
            }
            _ => {
                // Text from a /07_signaling/ page: show it.
                if let Some(t) = data.get("text").and_then(Value::as_str) {
                    say(format!("signaling: text from the room: {t}"));
                }
            }
        }
    }

    async fn bind(&self) -> Result<LivePeer, String> {
        let mut config = LivePeer::config().map_err(|e| format!("certificate: {e}"))?;
        if let Some(url) = &self.args.stun {
            config
                .ice_servers
                .push(IceServer::stun(&resolve_url(url).await?));
        }
        if let Some(url) = &self.args.turn {
            let user = self.args.user.as_deref().unwrap_or("");
            let (name, pass) = user
                .split_once(':')
                .ok_or("--user takes USERNAME:PASSWORD")?;
            config
                .ice_servers
                .push(IceServer::turn(&resolve_url(url).await?, name, pass));
        }
        if self.args.relay_only {
            config.ice_transport_policy = IceTransportPolicy::Relay;
        }
        let mut peer = LivePeer::bind(config, self.args.udp)
            .await
            .map_err(|e| format!("cannot bind UDP: {e}"))?;
        say(format!("udp: bound {}", peer.local_addr()));
        if let Some(path) = &self.args.pcap {
            let sink = rtclab::capture::Capture::create(path).map_err(|e| e.to_string())?;
            peer.set_capture(sink);
            say(format!("capture: writing {}", path.display()));
        }
        Ok(peer)
    }

    async fn offer(&mut self) -> Result<(), String> {
        let mut peer = self.bind().await?;
        if let Some(v) = self.video.as_mut() {
            v.track = Some(
                peer.connection_mut()
                    .add_track_with_codec(v.codec)
                    .map_err(|e| format!("add_track: {e}"))?,
            );
        } else if self.record.is_some() {
            // A video m-line to receive on: a track removed before the
            // offer is offered `recvonly`.
            let t = peer
                .add_track(MediaKind::Video)
                .map_err(|e| format!("add_track: {e}"))?;
            peer.connection_mut()
                .remove_track(t)
                .map_err(|e| format!("remove_track: {e}"))?;
        }
        peer.create_data_channel(ChannelInit::new("chat"))
            .map_err(|e| format!("create_data_channel: {e}"))?;
        self.open_file_channel(&mut peer)?;
        let offer = peer.offer().map_err(|e| format!("offer: {e}"))?;
        self.first_mid = first_mid(&offer);
        self.signal(json!({"type": "offer", "sdp": offer}));
        self.negotiated_at = Some(Instant::now());
        say("signaling: offer sent".into());
        self.peer = Some(peer);
        Ok(())
    }

    async fn answer(&mut self, offer: &str) -> Result<(), String> {
        let mut peer = self.bind().await?;
        if let Some(v) = self.video.as_mut() {
            v.track = Some(
                peer.connection_mut()
                    .add_track_with_codec(v.codec)
                    .map_err(|e| format!("add_track: {e}"))?,
            );
        }
        self.first_mid = first_mid(offer);
        self.remote_sdp = Some(offer.to_string());
        let answer = peer
            .answer(offer)
            .map_err(|e| format!("the offer was refused: {e}"))?;
        // Our file channel is made after the offer/answer (the offer's
        // m=application carries it), and opens once SCTP is up.
        self.open_file_channel(&mut peer)?;
        self.signal(json!({"type": "answer", "sdp": answer}));
        self.negotiated_at = Some(Instant::now());
        say("signaling: answer sent".into());
        self.peer = Some(peer);
        Ok(())
    }

    fn open_file_channel(&mut self, peer: &mut LivePeer) -> Result<(), String> {
        if let Some(o) = self.outgoing.as_mut() {
            let id = peer
                .create_data_channel(ChannelInit::new(FILE_LABEL))
                .map_err(|e| format!("create_data_channel: {e}"))?;
            peer.connection_mut()
                .set_buffered_amount_low_threshold(id, LOW_WATER);
            o.channel = Some(id);
        }
        Ok(())
    }

    fn label(&self, id: ChannelId) -> Option<String> {
        let dc = self.peer.as_ref()?.connection().data_channels()?;
        Some(dc.channel(id)?.label().to_string())
    }

    fn on_peer(&mut self, e: peer::Event) {
        match e {
            peer::Event::LocalCandidate(c) => {
                say(format!("ice: gathered {} {}:{}", c.kind, c.address, c.port));
                let mid = self.first_mid.clone();
                self.signal(json!({"type": "candidate", "candidate": c.to_string(),
                    "sdpMid": mid, "sdpMLineIndex": 0}));
            }
            peer::Event::GatheringComplete => {
                let mid = self.first_mid.clone();
                self.signal(json!({"type": "candidate", "candidate": "",
                    "sdpMid": mid, "sdpMLineIndex": 0}));
            }
            peer::Event::IceConnectionState(state) => {
                say(format!("ice: {}", format!("{state:?}").to_lowercase()));
                if state == IceState::Connected && !self.printed_pair {
                    self.print_pair();
                }
                if state == IceState::Failed {
                    self.fail("ICE failed: no candidate pair works".into());
                }
            }
            peer::Event::ConnectionState(state) => match state {
                PeerConnectionState::Connected => self.print_dtls(),
                PeerConnectionState::Failed => self.fail("the connection failed".into()),
                PeerConnectionState::Closed => {
                    say("peer: the connection closed".into());
                    self.call_ended();
                }
                _ => {}
            },
            peer::Event::Track { mid, kind } => {
                say(format!("media: the peer sends {kind:?} on mid {mid}"));
                if let Some(r) = self.record.as_mut()
                    && kind == MediaKind::Video
                    && r.mid.is_none()
                {
                    r.mid = Some(mid);
                }
            }
            peer::Event::Frame { mid, frame } => {
                let codec = self.remote_codec(&mid);
                if let Some(r) = self.record.as_mut()
                    && r.mid.as_deref() == Some(&mid)
                {
                    r.write(codec, frame.timestamp, &frame.data);
                    if r.frames == 1 {
                        say(format!("record: first frame on mid {mid}"));
                    }
                }
            }
            peer::Event::DataChannel(DcEvent::Open(id)) => {
                if !self.sctp_up {
                    self.sctp_up = true;
                    say("sctp: association established".into());
                }
                let label = self.label(id).unwrap_or_default();
                say(format!("datachannel: {label:?} open (id {})", id.0));
                if self.outgoing.as_ref().and_then(|o| o.channel) == Some(id) {
                    self.start_file();
                }
                if self.video.as_ref().is_some_and(|v| v.started.is_none()) {
                    // Video starts with the first open channel: DTLS and
                    // SRTP are up by then.
                    if let Some(v) = self.video.as_mut() {
                        v.started = Some(Instant::now());
                    }
                    say("video: sending".into());
                }
            }
            peer::Event::DataChannel(DcEvent::BufferedAmountLow(id))
                if self.outgoing.as_ref().and_then(|o| o.channel) == Some(id) =>
            {
                self.pump_file();
            }
            peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                if self.label(channel).as_deref() == Some(FILE_LABEL) {
                    self.on_file_message(channel, message);
                } else if let Some(p) = self.peer.as_mut() {
                    // Echo.
                    let r = match &message {
                        Message::Text(t) => p.send_text(channel, t),
                        Message::Binary(b) => p.send_binary(channel, b),
                    };
                    if let Err(e) = r {
                        eprintln!("datachannel: echo failed: {e}");
                    }
                }
            }
            peer::Event::Error(e) => eprintln!("peer: {e}"),
            _ => {}
        }
    }

    fn remote_codec(&self, mid: &str) -> Option<TrackCodec> {
        let sdp = SessionDescription::parse_str(self.remote_sdp.as_deref()?).ok()?;
        let m = sdp.media.iter().find(|m| m.mid() == Some(mid))?;
        m.payload_types().find_map(|pt| {
            let name = &m.rtpmap(pt)?.encoding;
            TrackCodec::from_sdp(name, m.fmtp(pt).map(|f| f.params.as_str()))
        })
    }

    fn print_pair(&mut self) {
        let Some(t) = self.peer.as_ref().and_then(|p| p.connection().transport()) else {
            return;
        };
        if let Some((l, r)) = t.selected_pair() {
            self.printed_pair = true;
            say(format!(
                "ice: selected pair local {} {}:{} <-> remote {} {}:{}",
                l.kind, l.address, l.port, r.kind, r.address, r.port
            ));
        }
    }

    fn print_dtls(&mut self) {
        if !self.printed_pair {
            self.print_pair();
        }
        let Some(t) = self.peer.as_ref().and_then(|p| p.connection().transport()) else {
            return;
        };
        say(format!(
            "dtls: connected as {}, {}, SRTP {}",
            t.dtls_role()
                .map_or("?".into(), |r| format!("{r:?}").to_lowercase()),
            t.dtls_cipher_suite().map_or("?", |c| c.name()),
            t.srtp_profile().map_or("none", |p| p.name()),
        ));
    }

    fn print_bytes(&self) {
        let Some(p) = self.peer.as_ref() else {
            return;
        };
        let st = p.connection().stats();
        say(format!(
            "bytes: sent {} received {} (data channels: sent {} received {})",
            st.transport.bytes_sent,
            st.transport.bytes_received,
            st.data_channels.bytes_sent,
            st.data_channels.bytes_received
        ));
    }

    // ---- files -----------------------------------------------------------

    fn start_file(&mut self) {
        let (Some(o), Some(p)) = (self.outgoing.as_mut(), self.peer.as_mut()) else {
            return;
        };
        let Some(id) = o.channel else {
            return;
        };
        let header = json!({"type": "file", "name": o.name, "bytes": o.data.len(),
            "sha256": o.sha256});
        if let Err(e) = p.send_text(id, &header.to_string()) {
            self.fail(format!("file: cannot send the header: {e}"));
            return;
        }
        o.started = Some(Instant::now());
        say(format!(
            "file: sending {} ({} bytes, sha256 {})",
            o.name,
            o.data.len(),
            o.sha256
        ));
        self.pump_file();
    }

    /// Sends chunks until the channel holds [`HIGH_WATER`] bytes or the
    /// file is all queued.
    fn pump_file(&mut self) {
        let (Some(o), Some(p)) = (self.outgoing.as_mut(), self.peer.as_mut()) else {
            return;
        };
        let (Some(id), Some(_)) = (o.channel, o.started) else {
            return;
        };
        while o.sent < o.data.len() {
            let buffered = p
                .connection()
                .data_channels()
                .map_or(0, |d| d.buffered_amount(id));
            if buffered >= HIGH_WATER {
                break;
            }
            let end = (o.sent + CHUNK).min(o.data.len());
            if let Err(e) = p.send_binary(id, &o.data[o.sent..end]) {
                let why = format!("file: send failed: {e}");
                self.fail(why);
                return;
            }
            o.sent = end;
        }
    }

    fn on_file_message(&mut self, channel: ChannelId, message: Message) {
        match message {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v.get("type").and_then(Value::as_str) {
                    Some("file") => self.file_header(channel, &v),
                    Some("file-ack") => self.file_ack(&v),
                    _ => eprintln!("file: unknown message on the file channel: {t}"),
                }
            }
            Message::Binary(b) => self.file_chunk(channel, &b),
        }
    }

    fn file_header(&mut self, channel: ChannelId, v: &Value) {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .and_then(safe_name)
            .unwrap_or_else(|| "received.bin".into());
        let expected = v.get("bytes").and_then(Value::as_u64).unwrap_or(0);
        let sha256 = v
            .get("sha256")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_ascii_lowercase();
        let file = match &self.args.save {
            Some(dir) => {
                let part = dir.join(format!("{name}.part"));
                match std::fs::File::create(&part) {
                    Ok(f) => Some((part, f)),
                    Err(e) => {
                        self.fail(format!("file: cannot create {}: {e}", part.display()));
                        return;
                    }
                }
            }
            None => None,
        };
        say(format!(
            "file: receiving {name} ({expected} bytes, sha256 {sha256})"
        ));
        self.incoming = Some(Incoming {
            name,
            expected,
            sha256,
            received: 0,
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            file,
            started: Instant::now(),
        });
        if expected == 0 {
            self.file_complete(channel);
        }
    }

    fn file_chunk(&mut self, channel: ChannelId, chunk: &[u8]) {
        let Some(f) = self.incoming.as_mut() else {
            eprintln!("file: {} bytes with no header; dropped", chunk.len());
            return;
        };
        let room = f.expected - f.received;
        let take = &chunk[..chunk.len().min(usize::try_from(room).unwrap_or(usize::MAX))];
        f.hash.update(take);
        f.received += take.len() as u64;
        if let Some((path, file)) = f.file.as_mut() {
            use std::io::Write as _;
            if let Err(e) = file.write_all(take) {
                let why = format!("file: cannot write {}: {e}", path.display());
                self.fail(why);
                return;
            }
        }
        if f.received == f.expected {
            self.file_complete(channel);
        }
    }

    fn file_complete(&mut self, channel: ChannelId) {
        let Some(f) = self.incoming.take() else {
            return;
        };
        let digest = hex(f.hash.finish().as_ref());
        let ok = f.sha256.is_empty() || f.sha256 == digest;
        let secs = f.started.elapsed().as_secs_f64();
        let mut saved = String::new();
        if let Some((part, file)) = f.file {
            drop(file);
            if ok {
                let path = part.with_file_name(&f.name);
                match std::fs::rename(&part, &path) {
                    Ok(()) => saved = format!(", saved to {}", path.display()),
                    Err(e) => {
                        self.fail(format!("file: cannot rename {}: {e}", part.display()));
                        return;
                    }
                }
            } else {
                let _ = std::fs::remove_file(&part);
            }
        }
        say(format!(
            "file: received {} ({} bytes in {secs:.2} s, sha256 {digest}, {}){saved}",
            f.name,
            f.received,
            if ok { "hash matches" } else { "HASH MISMATCH" }
        ));
        let ack = json!({"type": "file-ack", "ok": ok, "bytes": f.received, "sha256": digest});
        if let Some(p) = self.peer.as_mut()
            && let Err(e) = p.send_text(channel, &ack.to_string())
        {
            eprintln!("file: cannot acknowledge: {e}");
        }
        if ok {
            self.files_received += 1;
        } else {
            self.fail(format!("file: {} arrived with another hash", f.name));
        }
    }

    fn file_ack(&mut self, v: &Value) {
        let Some(o) = self.outgoing.as_mut() else {
            return;
        };
        let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false)
            && v.get("sha256").and_then(Value::as_str) == Some(o.sha256.as_str());
        let secs = o.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        if ok {
            o.acked = true;
            say(format!(
                "file: {} sent and acknowledged ({} bytes in {secs:.2} s, {:.1} MB/s)",
                o.name,
                o.data.len(),
                o.data.len() as f64 / secs.max(1e-6) / 1e6
            ));
        } else {
            let why = format!("file: the peer reports a bad transfer of {}: {v}", o.name);
            self.fail(why);
        }
    }

    // ---- video -----------------------------------------------------------

    fn next_video_at(&self) -> Option<Instant> {
        let v = self.video.as_ref()?;
        let started = v.started?;
        v.frames.get(v.next).map(|(at, _, _)| started + *at)
    }

    fn send_video(&mut self) {
        let (Some(v), Some(p)) = (self.video.as_mut(), self.peer.as_mut()) else {
            return;
        };
        let Some(track) = v.track else {
            return;
        };
        let Some((_, ts, data)) = v.frames.get(v.next) else {
            return;
        };
        if let Err(e) = p.send_frame(track, *ts, data) {
            eprintln!("video: frame {} not sent: {e}", v.next);
        }
        v.next += 1;
        if v.next == v.frames.len() {
            say(format!("video: {} frames sent", v.frames.len()));
        }
    }

    /// Whether a transfer asked for (--send, --save, --video) is not done.
    fn pending(&self) -> bool {
        self.outgoing.as_ref().is_some_and(|o| !o.acked)
            || (self.args.save.is_some() && self.files_received == 0)
            || self.video.as_ref().is_some_and(|v| v.next < v.frames.len())
    }

    /// The other side left or closed: the run is over, a failure if a
    /// transfer was still pending.
    fn call_ended(&mut self) {
        if self.pending() {
            self.fail("the peer left before the transfers were done".into());
        } else if self.done.is_none() {
            self.done = Some(Ok(()));
        }
    }

    /// With --exit-after-transfer: starts the linger once every transfer
    /// asked for is done.
    fn check_finished(&mut self) {
        if !self.args.exit_after_transfer || self.finished_at.is_some() || self.done.is_some() {
            return;
        }
        let anything = self.args.send.is_some() || self.args.save.is_some() || self.video.is_some();
        if anything && !self.pending() {
            say("done: every transfer finished".into());
            self.finished_at = Some(Instant::now());
        }
    }
}

fn first_mid(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .unwrap_or("0")
        .to_string()
}

/// `stun:HOST[:PORT]` / `turn:HOST[:PORT][?…]` with HOST a name: the same
/// URL with its first IPv4 address (the connection resolves no names).
async fn resolve_url(url: &str) -> Result<String, String> {
    let Some((scheme, rest)) = url.split_once(':') else {
        return Ok(url.to_string());
    };
    let (hostport, query) = match rest.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (rest, None),
    };
    let (host, port) = if hostport.starts_with('[') {
        // An IPv6 address: nothing to resolve.
        return Ok(url.to_string());
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>().map_err(|_| format!("bad port in {url}"))?,
            ),
            None => (hostport, 3478),
        }
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Ok(url.to_string());
    }
    let addr = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| format!("cannot resolve {bare}: {e}"))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("{bare} has no IPv4 address"))?;
    Ok(match query {
        Some(q) => format!("{scheme}:{addr}?{q}"),
        None => format!("{scheme}:{addr}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        assert_eq!(ws_url("ws://127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("ws://h:1/x"), "ws://h:1/x");
        assert_eq!(ws_url("h:1"), "ws://h:1/ws");
        assert_eq!(safe_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_name("a\\b.txt").as_deref(), Some("b.txt"));
        assert_eq!(safe_name(".."), None);
        assert_eq!(safe_name("dir/"), None);
    }
}
