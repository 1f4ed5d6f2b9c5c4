//! The Rust side of the foreign-stack interop tests (tests/interop_*.rs):
//! a [`LivePeer`] on 127.0.0.1 and a foreign WebRTC peer as a child process
//! (aiortc, pion, GStreamer webrtcbin), signaling over the child's stdin and
//! stdout as JSON lines.
//!
//! The protocol every foreign peer speaks:
//!
//! ```text
//!   test → peer   {"type":"config", "role":"offer"|"answer", "channels":[…],
//!                  "video":"VP8"|"H264"|null, "clip":PATH, "turn":{…}|null}
//!   both ways     {"type":"offer"|"answer", "sdp":…}
//!                 {"type":"candidate", "candidate":"candidate:…"|"", "sdpMid":…}
//!   peer → test   {"type":"channel", "label", "ordered", "maxRetransmits",
//!                  "maxPacketLifeTime"}         a channel opened (as it sees it)
//!                 {"type":"frame", "sha256", "len"}   one encoded frame received
//!                 {"type":"state", "state"}          its connection state
//!                 {"type":"log", …}                  anything else, ignored
//!   test → peer   {"type":"bye"}                     close and exit
//! ```
//!
//! The foreign peer echoes every data-channel message on the channel it came
//! on, creates the channels of `channels` when it offers, sends the IVF clip
//! `clip` on its video track (frames as they are in the file, no re-encoding),
//! and reports the SHA-256 of every encoded frame it receives. The Rust side
//! checks everything: the channels' options as both sides see them, every
//! echo (a 64 KiB message and a multi-MiB transfer by checksum), every frame
//! both ways by hash, and which DTLS role it played.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::dtls::endpoint::Role as DtlsRole;
use rtclab::peer::{self, IceServer, IceTransportPolicy, PeerConnectionState, TrackCodec, TrackId};
use rtclab::runtime::LivePeer;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The VP8 clip both sides send: 60 frames (3 s) of Chromium's fake camera.
pub const CLIP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/media/fake-camera-vp8.ivf"
);

/// The H.264 clip: 40 access units (Annex B, constrained baseline,
/// 240×176, SPS and PPS before each IDR), made with GStreamer's
/// `videotestsrc pattern=smpte horizontal-speed=4 ! openh264enc gop-size=30
/// ! h264parse config-interval=-1` and stored as IVF frames.
pub const H264_CLIP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/media/h264-smpte-240x176.ivf"
);

/// [`H264_CLIP`] without its access unit delimiters, written to a
/// temporary file (what a stack whose payloader drops AUDs sends).
pub fn h264_clip_without_auds() -> PathBuf {
    let file = std::fs::read(H264_CLIP).expect("H.264 clip");
    let mut out = file[..32].to_vec();
    for (ts, frame) in clip_frames(Path::new(H264_CLIP)) {
        let au = canonical("H264", &frame);
        out.extend_from_slice(&(au.len() as u32).to_le_bytes());
        out.extend_from_slice(&u64::from(ts).to_le_bytes());
        out.extend_from_slice(&au);
    }
    let path = std::env::temp_dir().join(format!(
        "rtclab-h264-no-aud-{}-{}.ivf",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::write(&path, out).expect("write clip");
    path
}

/// What both sides hash of a frame: VP8 as it is; an H.264 access unit as
/// its NAL units without access unit delimiters (type 9, which packetizers
/// may drop), each after a 4-byte start code (depacketizers write 3 or 4).
pub fn canonical(codec: &str, data: &[u8]) -> Vec<u8> {
    if codec != "H264" {
        return data.to_vec();
    }
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(data.len());
        let mut nal = &data[s + 3..end];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if nal.is_empty() || nal[0] & 0x1f == 9 {
            continue;
        }
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// One data channel of a case: label and options.
#[derive(Clone, Copy, Debug)]
pub struct ChannelSpec {
    pub label: &'static str,
    pub ordered: bool,
    pub max_retransmits: Option<u16>,
    pub max_packet_life_time: Option<u16>,
}

impl ChannelSpec {
    /// Partially reliable (RFC 3758): a message may be abandoned, by design,
    /// when a packet is lost (loopback loses some when the bulk transfer
    /// fills the socket buffers), so one echo of the several sent proves
    /// the channel.
    pub fn partial(&self) -> bool {
        self.max_retransmits.is_some() || self.max_packet_life_time.is_some()
    }
}

/// The channels of a data case: reliable ordered (with the 64 KiB message),
/// unordered, partially reliable by count and by lifetime, and `bulk` for
/// the multi-MiB transfer.
pub const CHANNELS: &[ChannelSpec] = &[
    ChannelSpec {
        label: "ordered",
        ordered: true,
        max_retransmits: None,
        max_packet_life_time: None,
    },
    ChannelSpec {
        label: "unordered",
        ordered: false,
        max_retransmits: None,
        max_packet_life_time: None,
    },
    ChannelSpec {
        label: "rexmit0",
        ordered: false,
        max_retransmits: Some(0),
        max_packet_life_time: None,
    },
    ChannelSpec {
        label: "lifetime",
        ordered: true,
        max_retransmits: None,
        max_packet_life_time: Some(1500),
    },
    ChannelSpec {
        label: "bulk",
        ordered: true,
        max_retransmits: None,
        max_packet_life_time: None,
    },
];

/// What one call does.
#[derive(Clone, Debug)]
pub struct Case {
    /// rtclab offers (and so the foreign side picks the DTLS role), or the
    /// foreign side does.
    pub rtclab_offers: bool,
    /// Data channels ([`CHANNELS`]), created by the offerer.
    pub channels: bool,
    /// Bytes sent on `bulk` and echoed back.
    pub bulk_bytes: usize,
    /// Video both ways in this codec ("VP8", "H264"), frames from [`CLIP`]
    /// (or `clip`).
    pub video: Option<&'static str>,
    /// The clip both sides send (IVF).
    pub clip: PathBuf,
    /// The foreign side relay-only through `rtclab turn-server`.
    pub turn: bool,
    /// rtclab relay-only too, through the same server (relay to relay).
    pub rtclab_relayed: bool,
    /// Percent of the clip's frames each side must receive. A busy loopback
    /// (CI's two cores, shared) drops a datagram now and then, and a frame
    /// whose packet is lost and not resent is gone; every frame that does
    /// arrive must be the clip's, in order. All frames are waited for until
    /// 1.5 s after rtclab sent the clip's last, or until the far side gives
    /// out a frame of the tail rtclab sends after the clip (then it gave
    /// out every frame it will).
    pub min_percent: usize,
    /// The size of the "64 KiB" message on `ordered`.
    pub large_message: usize,
    /// When the foreign side offers, rtclab answers `setup:passive` (it
    /// stays the DTLS server) instead of `active`.
    pub answer_passive: bool,
    /// Whether the foreign side sends the clip too (else it only receives).
    pub foreign_sends_video: bool,
    /// The foreign packetizer's MTU, where it has a setting (GStreamer).
    pub foreign_mtu: Option<u32>,
}

impl Case {
    pub fn data(rtclab_offers: bool) -> Case {
        Case {
            rtclab_offers,
            channels: true,
            bulk_bytes: 4 << 20,
            video: None,
            clip: PathBuf::from(CLIP),
            turn: false,
            rtclab_relayed: false,
            min_percent: 90,
            large_message: 64 << 10,
            answer_passive: false,
            foreign_sends_video: true,
            foreign_mtu: None,
        }
    }

    /// H.264 both ways, from [`H264_CLIP`].
    pub fn h264(rtclab_offers: bool) -> Case {
        Case {
            video: Some("H264"),
            clip: PathBuf::from(H264_CLIP),
            ..Case::video(rtclab_offers)
        }
    }

    pub fn video(rtclab_offers: bool) -> Case {
        Case {
            rtclab_offers,
            channels: false,
            bulk_bytes: 0,
            video: Some("VP8"),
            clip: PathBuf::from(CLIP),
            turn: false,
            rtclab_relayed: false,
            min_percent: 90,
            large_message: 64 << 10,
            answer_passive: false,
            foreign_sends_video: true,
            foreign_mtu: None,
        }
    }
}

/// What a case saw, for the test's own extra checks.
#[derive(Debug, Default)]
pub struct Outcome {
    pub dtls_role: Option<DtlsRole>,
    pub frames_from_foreign: usize,
    pub frames_to_foreign: usize,
    pub bulk_bytes: usize,
    /// The foreign side's offer or answer, as it sent it.
    pub foreign_sdp: String,
    /// Ours.
    pub our_sdp: String,
    pub elapsed: Duration,
    /// The foreign side's candidates as it signaled them (in its SDP or
    /// trickled): their `typ`s.
    pub foreign_candidate_types: Vec<String>,
    /// Ours as we signaled them.
    pub our_candidate_types: Vec<String>,
}

/// Whether interop is mandatory (CI sets `RTCLAB_REQUIRE_INTEROP=1`).
pub fn interop_required() -> bool {
    std::env::var("RTCLAB_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// A loud skip (a failure under `RTCLAB_REQUIRE_INTEROP=1`): `what` is
/// missing, `how` says how to get it.
pub fn skip(what: &str, how: &str) {
    assert!(
        !interop_required(),
        "{what} is missing and RTCLAB_REQUIRE_INTEROP=1: {how}"
    );
    eprintln!("\n*** SKIPPED: {what} is missing ({how}); this interop test did not run ***\n");
}

/// The repository's root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A foreign peer: the child process, its stdin, its stdout lines, and a
/// log of everything it printed (shown when the test fails).
pub struct Foreign {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    log: PathBuf,
}

impl Foreign {
    /// Starts `program args…` with piped stdin/stdout; stderr and a copy of
    /// stdout go to a log file.
    pub fn start(name: &str, program: &Path, args: &[String], env: &[(&str, &str)]) -> Foreign {
        let log = std::env::temp_dir().join(format!(
            "rtclab-{name}-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        // Both writers append (stderr by the child, stdout's copy by the
        // reader thread), so neither overwrites the other.
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("create log file");
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::unbounded_channel();
        let copy = log.clone();
        std::thread::spawn(move || {
            let mut out = std::fs::OpenOptions::new().append(true).open(&copy).ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = out.as_mut() {
                    let shown: String = line.chars().take(300).collect();
                    let _ = writeln!(f, "[stdout] {shown}");
                }
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Foreign {
            name: name.to_string(),
            child,
            stdin,
            lines,
            log,
        }
    }

    /// Sends one JSON line.
    pub fn send(&mut self, v: &Value) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        let r = stdin
            .write_all(format!("{v}\n").as_bytes())
            .and_then(|_| stdin.flush());
        if let Err(e) = r {
            panic!("writing to {}'s stdin: {e}\n{}", self.name, self.output());
        }
    }

    /// The next JSON line it prints (`None` once it exited).
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            let line = self.lines.recv().await?;
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                return Some(v);
            }
        }
    }

    /// What it printed so far (stderr and stdout).
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Asks it to close, waits a little, then kills it.
    pub fn stop(&mut self) {
        self.send(&json!({"type": "bye"}));
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- output of {} ----\n{}\n---- end ----",
                self.name,
                self.output()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

// Some test files load this harness and tests/common both.
#[allow(clippy::duplicate_mod)]
#[path = "../common/ports.rs"]
mod ports;

/// `rtclab turn-server` on 127.0.0.1 (user `alice:secret`, loopback peers
/// allowed: the Rust peer is on 127.0.0.1), started as
/// tests/interop_turn_server.rs does; killed when dropped.
pub struct TurnServer {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl TurnServer {
    /// Starts it on a free port, UDP only: the foreign peers use UDP TURN,
    /// and the same port on TCP may be another socket's (any connection's
    /// local port; it once was, and the server exited "Address already in
    /// use").
    pub fn start() -> TurnServer {
        TurnServer::start_with(&["--no-tcp"])
    }

    /// Starts it on a free port with `extra` arguments. A port taken
    /// before the server binds it is tried again with another.
    pub fn start_with(extra: &[&str]) -> TurnServer {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut server = TurnServer::spawn(ports::free_udp_port(false), extra);
            let addr: SocketAddr = ([127, 0, 0, 1], server.port).into();
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut exited = false;
            while !exited && Instant::now() < deadline {
                if wait_for_stun(addr, Duration::from_millis(200)) {
                    return server;
                }
                exited = server.child.try_wait().ok().flatten().is_some();
            }
            let output = server.output();
            assert!(
                exited && output.contains("in use") && tries < 5,
                "rtclab turn-server did not answer on {addr}:\n{output}"
            );
            eprintln!("rtclab turn-server: {addr} taken, another port");
        }
    }

    fn spawn(port: u16, extra: &[&str]) -> TurnServer {
        let log = std::env::temp_dir().join(format!(
            "rtclab-turn-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        let out = std::fs::File::create(&log).expect("log");
        let err = out.try_clone().expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_rtclab"))
            .args([
                "turn-server",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--realm",
                "rtclab",
                "--user",
                "alice:secret",
                "--allow-loopback-peers",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start rtclab turn-server");
        TurnServer { child, port, log }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The foreign side's `turn` config.
    pub fn config(&self) -> Value {
        json!({
            "url": format!("turn:127.0.0.1:{}", self.port),
            "host": "127.0.0.1",
            "port": self.port,
            "username": "alice",
            "credential": "secret",
        })
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- output of rtclab turn-server ----\n{}\n---- end ----",
                self.output()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn wait_for_stun(addr: SocketAddr, within: Duration) -> bool {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(50))).ok();
    let req = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let _ = s.send_to(&req, addr);
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if n >= 20 && buf[0] == 0x01 && buf[1] == 0x01 {
                return true;
            }
        }
    }
    false
}

/// The frames of an IVF clip with their RTP (90 kHz) timestamps.
pub fn clip_frames(path: &Path) -> Vec<(u32, Vec<u8>)> {
    let file = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (header, reader) = rtclab::rtp::ivf::IvfReader::new(&file).expect("the clip is IVF");
    let scale = 90_000 * u64::from(header.timebase_num) / u64::from(header.timebase_den.max(1));
    reader
        .map(|f| f.expect("clip frame"))
        .map(|(ts, data)| ((ts * scale) as u32, data.to_vec()))
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A deterministic pseudo-random payload.
fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// One channel's expected echoes.
#[derive(Default)]
struct ChannelCheck {
    spec: Option<ChannelSpec>,
    /// Messages sent and not yet echoed (by content).
    pending: Vec<Message>,
    /// Whether the foreign side reported the channel with our options.
    reported: bool,
    /// For `bulk`: bytes echoed and their running hash input.
    bulk_in: Vec<u8>,
    bulk_sent_hash: String,
    sent: bool,
    /// Echoes received.
    echoed: usize,
    /// On a partially reliable channel: when the last messages went, and
    /// how many more were sent since (see `run`'s tick).
    last_sent: Option<Instant>,
    resent: usize,
}

/// Runs one call of `case` against the foreign peer started by `start`
/// (which gets the case's `turn` config) and checks everything; returns
/// what it saw. Panics with the foreign peer's output on any failure or
/// after `limit`.
pub async fn run(name: &str, mut foreign: Foreign, case: &Case, limit: Duration) -> Outcome {
    let turn = case.turn.then(TurnServer::start);
    let started = Instant::now();
    let clip = case
        .video
        .map(|_| clip_frames(&case.clip))
        .unwrap_or_default();
    let codec_name = case.video.unwrap_or("VP8");
    let clip_hashes: Vec<String> = clip
        .iter()
        .map(|(_, f)| sha256_hex(&canonical(codec_name, f)))
        .collect();
    // The tail after the clip is its first frame again (`split_tail`).
    assert!(
        clip_hashes
            .iter()
            .skip(1)
            .all(|h| Some(h) != clip_hashes.first()),
        "the clip's first frame must be unlike the others"
    );
    let channels: Vec<Value> = if case.channels {
        CHANNELS
            .iter()
            .map(|c| {
                json!({"label": c.label, "ordered": c.ordered,
                    "maxRetransmits": c.max_retransmits,
                    "maxPacketLifeTime": c.max_packet_life_time})
            })
            .collect()
    } else {
        Vec::new()
    };
    foreign.send(&json!({
        "type": "config",
        "role": if case.rtclab_offers { "answer" } else { "offer" },
        "channels": channels,
        "video": case.video,
        "clip": case.clip.display().to_string(),
        "send_video": case.foreign_sends_video,
        "mtu": case.foreign_mtu,
        "turn": turn.as_ref().map(TurnServer::config),
    }));

    let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let mut config = LivePeer::config().expect("cert");
    if case.rtclab_relayed {
        let t = turn.as_ref().expect("rtclab_relayed needs turn");
        config.ice_servers = vec![IceServer::turn(
            &format!("turn:127.0.0.1:{}", t.port),
            "alice",
            "secret",
        )];
        config.ice_transport_policy = IceTransportPolicy::Relay;
    }
    if case.answer_passive {
        // RFC 8842 §5.3: the answerer may take either role.
        config.answer_setup = rtclab::sdp::Setup::Passive;
    }
    let mut peer = LivePeer::bind(config, lo).await.expect("bind");
    let codec = case.video.map(|v| match v {
        "VP8" => TrackCodec::Vp8,
        "H264" => TrackCodec::H264,
        other => panic!("codec {other}"),
    });
    let mut track: Option<TrackId> = None;
    let mut checks: HashMap<ChannelId, ChannelCheck> = HashMap::new();
    let mut reported: BTreeMap<String, Value> = BTreeMap::new();
    let mut out = Outcome::default();
    let mut first_mid = "0".to_string();
    if case.rtclab_offers {
        for c in CHANNELS.iter().filter(|_| case.channels) {
            let id = peer
                .create_data_channel(ChannelInit {
                    label: c.label.into(),
                    ordered: c.ordered,
                    max_retransmits: c.max_retransmits,
                    max_packet_life_time: c.max_packet_life_time,
                    ..ChannelInit::default()
                })
                .expect("channel");
            checks.entry(id).or_default().spec = Some(*c);
        }
        if let Some(codec) = codec {
            track = Some(
                peer.connection_mut()
                    .add_track_with_codec(codec)
                    .expect("track"),
            );
        }
        let offer = peer.offer().expect("offer");
        first_mid = first_mid_of(&offer);
        out.our_sdp = offer.clone();
        out.our_candidate_types.extend(candidate_types(&offer));
        foreign.send(&json!({"type": "offer", "sdp": offer}));
    }

    let mut frames_in: Vec<String> = Vec::new();
    let mut frames_out: Vec<String> = Vec::new();
    let mut video_mid: Option<String> = None;
    let mut connected_at: Option<Instant> = None;
    let mut sent_frames = 0usize;
    let mut sent_all_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let mut foreign_closed = false;

    let result = tokio::time::timeout(limit, async {
        loop {
            // Done?
            let channels_done = !case.channels
                || (checks.len() == CHANNELS.len()
                    && checks
                        .values()
                        .all(|c| c.sent && c.reported
                            && (c.pending.is_empty()
                                || (c.spec.is_some_and(|s| s.partial()) && c.echoed > 0))
                            && (c.spec.is_none_or(|s| s.label != "bulk")
                                || c.bulk_in.len() == case.bulk_bytes)));
            let need = if sent_all_at.is_some_and(|t| t.elapsed() > Duration::from_millis(1500)) {
                (clip.len() * case.min_percent).div_ceil(100)
            } else {
                clip.len()
            };
            // The foreign side released every frame it will once one of
            // the tail's came out (jitter buffers give frames in order).
            let (clip_out, tail_out) = split_tail(&frames_out, &clip_hashes);
            let video_done = case.video.is_none()
                || ((frames_in.len() >= need || !case.foreign_sends_video)
                    && (clip_out.len() >= need || tail_out));
            if channels_done && video_done {
                break;
            }
            tokio::select! {
                line = foreign.recv(), if !foreign_closed => {
                    let Some(v) = line else {
                        foreign_closed = true;
                        panic!("{name} exited");
                    };
                    match v["type"].as_str().unwrap_or("") {
                        "offer" => {
                            let sdp = v["sdp"].as_str().expect("sdp").to_string();
                            out.foreign_candidate_types.extend(candidate_types(&sdp));
                            out.foreign_sdp = sdp.clone();
                            first_mid = first_mid_of(&sdp);
                            if let Some(codec) = codec {
                                track = Some(peer.connection_mut().add_track_with_codec(codec).expect("track"));
                            }
                            let answer = peer.answer(&sdp).unwrap_or_else(|e| panic!("{name}'s offer refused: {e}"));
                            out.our_sdp = answer.clone();
                            out.our_candidate_types.extend(candidate_types(&answer));
                            foreign.send(&json!({"type": "answer", "sdp": answer}));
                        }
                        "answer" => {
                            let sdp = v["sdp"].as_str().expect("sdp").to_string();
                            out.foreign_candidate_types.extend(candidate_types(&sdp));
                            out.foreign_sdp = sdp.clone();
                            peer.accept_answer(&sdp).unwrap_or_else(|e| panic!("{name}'s answer refused: {e}"));
                        }
                        "candidate" => {
                            let c = v["candidate"].as_str().unwrap_or("");
                            if c.is_empty() {
                                peer.add_end_of_candidates();
                            } else {
                                out.foreign_candidate_types.extend(candidate_types(c));
                                if let Err(e) = peer.add_ice_candidate(c) {
                                    eprintln!("{name}'s candidate ignored ({e}): {c}");
                                }
                            }
                        }
                        "channel" => {
                            let label = v["label"].as_str().unwrap_or("").to_string();
                            reported.insert(label, v.clone());
                        }
                        "frame" => {
                            if let Some(c) = v["codec"].as_str() {
                                assert!(c.eq_ignore_ascii_case(codec_name), "{name} received {c}, not {codec_name}");
                            }
                            // A frame the far side says it assembled without
                            // its first packet (aiortc, when the stream's
                            // first packet is lost) counts as lost.
                            if v["partial"].as_bool() == Some(true) {
                                eprintln!("{name} assembled a frame without its start: {v}");
                                continue;
                            }
                            frames_out.push(v["sha256"].as_str().unwrap_or("").to_string());
                        }
                        "error" => panic!("{name} failed: {v}"),
                        _ => {}
                    }
                }
                e = peer.next_event() => match e.expect("udp") {
                    peer::Event::LocalCandidate(c) => {
                        out.our_candidate_types.extend(candidate_types(&c.to_string()));
                        foreign.send(&json!({"type": "candidate", "candidate": c.to_string(),
                            "sdpMid": first_mid, "sdpMLineIndex": 0}));
                    }
                    peer::Event::GatheringComplete => {
                        foreign.send(&json!({"type": "candidate", "candidate": "",
                            "sdpMid": first_mid, "sdpMLineIndex": 0}));
                    }
                    peer::Event::ConnectionState(s) => {
                        if s == PeerConnectionState::Connected && connected_at.is_none() {
                            connected_at = Some(Instant::now());
                            out.dtls_role = peer.connection().transport().and_then(|t| t.dtls_role());
                        }
                        assert!(s != PeerConnectionState::Failed, "the connection to {name} failed");
                    }
                    peer::Event::Track { mid, .. } => video_mid = Some(mid),
                    peer::Event::Frame { mid, frame } => {
                        if video_mid.is_none() {
                            video_mid = Some(mid);
                        }
                        frames_in.push(sha256_hex(&canonical(codec_name, &frame.data)));
                    }
                    peer::Event::KeyframeRequested(_) => {}
                    peer::Event::DataChannel(DcEvent::Open(id)) => {
                        let (spec, incoming) = {
                            let dc = peer.connection().data_channels().expect("channels");
                            let ch = dc.channel(id).expect("open channel");
                            let spec = CHANNELS.iter().find(|c| c.label == ch.label()).copied();
                            if let Some(s) = spec {
                                assert_eq!(ch.ordered(), s.ordered, "{}: ordered", s.label);
                                assert_eq!(ch.max_retransmits(), s.max_retransmits, "{}: maxRetransmits", s.label);
                                assert_eq!(ch.max_packet_life_time(), s.max_packet_life_time, "{}: maxPacketLifeTime", s.label);
                            }
                            (spec, ch.is_incoming())
                        };
                        let Some(spec) = spec else { continue };
                        assert_eq!(incoming, !case.rtclab_offers, "{}: created by the offerer", spec.label);
                        let check = checks.entry(id).or_default();
                        check.spec = Some(spec);
                        check.sent = true;
                        let mut msgs = vec![
                            Message::Text(format!("hello on {} from rtclab ✓", spec.label)),
                            Message::Binary(payload(1000, 1)),
                        ];
                        if spec.partial() {
                            msgs.extend((0..6).map(|i| Message::Text(format!("{} #{i}", spec.label))));
                        }
                        if spec.label == "ordered" {
                            msgs.push(Message::Binary(payload(case.large_message, 2)));
                            msgs.push(Message::Text("after the 64 KiB message".into()));
                        }
                        for m in &msgs {
                            match m {
                                Message::Text(t) => peer.send_text(id, t).expect("send"),
                                Message::Binary(b) => peer.send_binary(id, b).expect("send"),
                            }
                        }
                        check.pending = msgs;
                        check.last_sent = Some(Instant::now());
                        if spec.label == "bulk" {
                            let data = payload(case.bulk_bytes, 3);
                            check.bulk_sent_hash = sha256_hex(&data);
                            for chunk in data.chunks(16 << 10) {
                                peer.send_binary(id, chunk).expect("bulk");
                            }
                        }
                    }
                    peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                        let check = checks.get_mut(&channel).expect("a channel of ours");
                        let spec = check.spec.expect("spec");
                        if spec.label == "bulk" && !check.pending.contains(&message) {
                            if let Message::Binary(b) = &message {
                                check.bulk_in.extend_from_slice(b);
                                if check.bulk_in.len() >= case.bulk_bytes {
                                    assert_eq!(check.bulk_in.len(), case.bulk_bytes, "bulk: too many bytes echoed");
                                    assert_eq!(sha256_hex(&check.bulk_in), check.bulk_sent_hash, "bulk: checksum");
                                    out.bulk_bytes = check.bulk_in.len();
                                }
                                continue;
                            }
                        }
                        let at = check.pending.iter().position(|m| *m == message);
                        let Some(at) = at else {
                            panic!("{}: unexpected echo ({} bytes)", spec.label, message.len());
                        };
                        if spec.ordered && spec.partial() {
                            // Ordered but partially reliable: what was sent
                            // before this echo and not echoed is abandoned
                            // (it can no longer come, in order).
                            check.pending.drain(..at);
                        } else if spec.ordered {
                            assert_eq!(at, 0, "{}: echoes out of order", spec.label);
                        }
                        let at = if spec.ordered { 0 } else { at };
                        check.pending.remove(at);
                        check.echoed += 1;
                    }
                    peer::Event::DataChannel(DcEvent::Error { error, .. }) => panic!("data channel error: {error}"),
                    peer::Event::Error(e) => panic!("rtclab: {e}"),
                    _ => {}
                },
                _ = tick.tick() => {
                    // Video: the clip, paced at its own timestamps, once
                    // the connection is up.
                    // (300 ms after: the far side may still be setting up
                    // SRTP when our DTLS handshake completes.)
                    if let (Some(t0), Some(track)) = (connected_at, track)
                        && t0.elapsed() >= Duration::from_millis(300)
                    {
                        let base = clip.first().map_or(0, |f| f.0);
                        let now = t0.elapsed().saturating_sub(Duration::from_millis(300));
                        let now = (now.as_micros() as u64 * 9 / 100) as u32;
                        // After the clip, a tail: its first frame again at
                        // the clip's frame rate until the far side is done,
                        // as a live source would go on. aiortc 1.16's
                        // jitter buffer knows a frame is whole only when
                        // the next one starts, and gives out at most one
                        // frame per packet it receives (jitterbuffer.py
                        // `_remove_frame`): after a hole that a
                        // retransmission filled late, the frames behind it
                        // come out only as more packets arrive.
                        let last = clip.last().map_or(0, |f| f.0 - base);
                        let step = last / clip.len().saturating_sub(1).max(1) as u32;
                        while !clip.is_empty() {
                            let (ts, data) = match clip.get(sent_frames) {
                                Some((ts, data)) => (ts - base, data),
                                None => (last + step * (sent_frames + 1 - clip.len()) as u32, &clip[0].1),
                            };
                            if ts > now {
                                break;
                            }
                            peer.send_frame(track, 0x1000 + ts, data).expect("send_frame");
                            sent_frames += 1;
                            if sent_frames == clip.len() + 1 {
                                sent_all_at = Some(Instant::now());
                            }
                        }
                    }
                    // A partially reliable channel with no echo yet gets
                    // one more message each second (up to 20). Its first
                    // ones, sent with the bulk transfer, may all expire
                    // in our send queue behind a retransmission timeout
                    // when the loaded loopback drops a packet (the
                    // lifetime counts from `send`, RFC 3758 §3.5 A3): on
                    // two suites run at once, all 8 of `lifetime`'s did.
                    for (&id, check) in checks.iter_mut() {
                        let Some(spec) = check.spec.filter(|s| s.partial()) else { continue };
                        if check.echoed > 0 || check.resent >= 20
                            || check.last_sent.is_none_or(|t| t.elapsed() < Duration::from_secs(1))
                        {
                            continue;
                        }
                        check.resent += 1;
                        check.last_sent = Some(Instant::now());
                        let text = format!("{} again #{}", spec.label, check.resent);
                        peer.send_text(id, &text).expect("send");
                        check.pending.push(Message::Text(text));
                    }
                    // The channels' options as the foreign side sees them.
                    for check in checks.values_mut() {
                        let Some(spec) = check.spec else { continue };
                        if check.reported {
                            continue;
                        }
                        if let Some(r) = reported.get(spec.label) {
                            assert_eq!(r["ordered"].as_bool(), Some(spec.ordered), "{name} sees {}: {r}", spec.label);
                            assert_eq!(r["maxRetransmits"].as_u64(), spec.max_retransmits.map(u64::from), "{name} sees {}: {r}", spec.label);
                            assert_eq!(r["maxPacketLifeTime"].as_u64(), spec.max_packet_life_time.map(u64::from), "{name} sees {}: {r}", spec.label);
                            check.reported = true;
                        }
                    }
                }
            }
        }
    })
    .await;
    if result.is_err() {
        let pending: Vec<String> = checks
            .values()
            .filter_map(|c| {
                let s = c.spec?;
                Some(format!(
                    "{}: sent {} pending {} reported {} bulk {}",
                    s.label,
                    c.sent,
                    c.pending.len(),
                    c.reported,
                    c.bulk_in.len()
                ))
            })
            .collect();
        panic!(
            "{name}: not done in {limit:?}: state {:?}, channels {pending:?}, frames to rtclab {}/{}, \
             frames to {name} {}/{} (sent {sent_frames}), our codecs: {:?}, media: {:?}, turn: {}",
            peer.connection().connection_state(),
            frames_in.len(),
            clip.len(),
            frames_out.len(),
            clip.len(),
            out.our_sdp
                .lines()
                .filter(|l| l.starts_with("m=")
                    || l.starts_with("a=rtpmap")
                    || l.starts_with("a=fmtp"))
                .collect::<Vec<_>>(),
            (
                peer.connection().media_stats(),
                peer.connection().transport().map(|t| t.stats())
            ),
            turn.as_ref().map(|t| t.output()).unwrap_or_default(),
        );
    }
    // Frame by frame: what each side received is the clip, in order, in
    // the codec asked for (a stack may pack any bytes in any payload
    // format: the codec on the wire is checked too).
    if case.video.is_some() {
        let stats = peer.connection().stats();
        for s in stats.inbound.iter().filter(|_| case.foreign_sends_video) {
            assert!(
                s.codec
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(codec_name)),
                "{name} sent {:?}, not {codec_name}",
                s.codec
            );
        }
        for s in &stats.outbound {
            assert!(
                s.codec
                    .as_deref()
                    .is_some_and(|c| c.eq_ignore_ascii_case(codec_name)),
                "rtclab sent {:?}, not {codec_name}",
                s.codec
            );
        }
        if case.foreign_sends_video {
            assert!(
                in_order(&frames_in, &clip_hashes),
                "frames from {name} differ from the clip: {:?}",
                clip_positions(&frames_in, &clip_hashes)
            );
        }
        let (to_foreign, _) = split_tail(&frames_out, &clip_hashes);
        assert!(
            in_order(to_foreign, &clip_hashes),
            "frames to {name} differ from the clip: {:?}",
            clip_positions(to_foreign, &clip_hashes)
        );
        let need = (clip.len() * case.min_percent).div_ceil(100);
        assert!(
            to_foreign.len() >= need,
            "{name} released {} of the clip's {} frames, fewer than {need}",
            to_foreign.len(),
            clip.len()
        );
    }
    // `RTCLAB_SAVE_SDP=DIR`: keep the foreign side's description (how the
    // fixtures in tests/fixtures/sdp/ were made).
    if let Some(dir) = std::env::var_os("RTCLAB_SAVE_SDP") {
        let kind = if case.rtclab_offers {
            "answer"
        } else {
            "offer"
        };
        let what = match (case.channels, case.video.is_some()) {
            (true, true) => "av_data",
            (false, true) => "video",
            _ => "data",
        };
        let path = Path::new(&dir).join(format!("{name}_{kind}_{what}.sdp"));
        std::fs::write(&path, &out.foreign_sdp).expect("save SDP");
    }
    out.frames_from_foreign = frames_in.len();
    out.frames_to_foreign = split_tail(&frames_out, &clip_hashes).0.len();
    out.elapsed = started.elapsed();
    peer.close().await;
    foreign.stop();
    eprintln!(
        "{name}: done in {:?}, DTLS {:?}, frames in/out {}/{}, bulk {} bytes",
        out.elapsed, out.dtls_role, out.frames_from_foreign, out.frames_to_foreign, out.bulk_bytes
    );
    drop(turn);
    out
}

/// The frames of `got` before the clip's tail (its first frame again, sent
/// after the clip), and whether any of the tail came.
fn split_tail<'a>(got: &'a [String], clip: &[String]) -> (&'a [String], bool) {
    let tail = got
        .iter()
        .skip(1)
        .position(|h| Some(h) == clip.first())
        .map(|p| p + 1);
    match tail {
        Some(at) => (&got[..at], true),
        None => (got, false),
    }
}

/// Where each hash of `got` is in `clip` (`None`: not a clip frame).
fn clip_positions(got: &[String], clip: &[String]) -> Vec<Option<usize>> {
    got.iter()
        .map(|h| clip.iter().position(|c| c == h))
        .collect()
}

/// Whether every hash of `got` is one of `clip`'s, in the clip's order.
fn in_order(got: &[String], clip: &[String]) -> bool {
    let mut at = 0;
    got.iter()
        .all(|h| match clip[at..].iter().position(|c| c == h) {
            Some(p) => {
                at += p + 1;
                true
            }
            None => false,
        })
}

fn first_mid_of(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
        .unwrap_or("0")
        .to_string()
}

/// Both sides signaled relayed candidates only (and some).
pub fn assert_relayed(out: &Outcome) {
    for (who, types) in [
        ("the foreign side", &out.foreign_candidate_types),
        ("rtclab", &out.our_candidate_types),
    ] {
        assert!(
            !types.is_empty() && types.iter().all(|t| t == "relay"),
            "{who} signaled {types:?}"
        );
    }
}

/// The `typ` of every candidate in `text` (an SDP or one candidate line).
pub fn candidate_types(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.contains("candidate:"))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "typ")?;
            it.next().map(str::to_string)
        })
        .collect()
}
