//! Media with real browsers (issue 8 §3): headless Chromium and Firefox ESR
//! against a Rust [`LivePeer`], signaled through our own server. The page
//! (`tests/pages/media/`) runs one case per load and POSTs its `getStats()`
//! summary to `/report` twice a second; this side drives the peer, checks
//! what arrived and reads the page's reports. Each case is bounded (60 s);
//! a missing browser is a loud skip (a failure under
//! `RTCLAB_REQUIRE_INTEROP=1`); the browser's output and the page's log are
//! printed on failure.
//!
//! Cases (each run for both browsers, H.264 for Chromium only):
//! 1. camera → Rust in VP8 (an IVF file, read back), H.264 (Annex-B), VP9
//!    and AV1 (IVF files that `vpxdec` and `dav1d` must decode whole);
//! 2. a VP8 clip (`tests/fixtures/media/fake-camera-vp8.ivf`) → the page;
//! 3. reflect: camera → Rust → the page, in VP8, VP9 and AV1 (both
//!    browsers encode all three here); the page must decode the codec and
//!    the Rust side's keyframes must have its structure (VP9 frame_type 0,
//!    an AV1 unit with a temporal delimiter and a sequence header);
//! 4. Opus both ways (the microphone's packets reflected);
//! 5. renegotiation: the page adds a track (its new offer), then Rust adds
//!    one (our new offer); media flows on both new tracks;
//! 6. the photo of codelab step 9: a canvas snapshot in 64000-byte chunks
//!    over a data channel, its SHA-256 checked here.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::browser::{Browser, BrowserKind, launch};
use rtclab::peer::{self, TrackCodec, TrackId};
use rtclab::runtime::LivePeer;
use rtclab::signaling::{ClientId, ClientMessage, Config, Member, Page, Server, ServerMessage};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// How long one case may run.
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// One step of a case: what happened next.
enum Step {
    /// The peer said something (candidates are already signaled).
    Peer(peer::Event),
    /// The page offered (first offer or a renegotiation); the case answers
    /// with [`Run::answer`] after adding its tracks.
    Offer(String),
    /// A fresh report from the page (also kept in [`Run::last`]).
    Report,
    /// 10 ms passed (pacing for senders).
    Tick,
}

/// One browser, one page, one Rust peer.
struct Run {
    kind: BrowserKind,
    browser: Browser,
    member: Member,
    visitor: Option<ClientId>,
    peer: Option<LivePeer>,
    reports: mpsc::Receiver<String>,
    /// The page's latest report (`Null` until one came).
    last: Value,
    first_mid: String,
    deadline: Instant,
    tick: tokio::time::Interval,
    handle: rtclab::signaling::Handle,
}

impl Run {
    /// Serves the page, joins the room as the Rust member and starts the
    /// browser on `?query`; `None` after a loud skip.
    async fn start(kind: BrowserKind, query: &str) -> Option<Run> {
        let (tx, reports) = mpsc::channel(64);
        let mut config = Config::default();
        config.report_to = Some(tx);
        config.pages.push(Page {
            path: "/test/media/",
            content_type: HTML,
            body: include_bytes!("pages/media/index.html"),
        });
        config.pages.push(Page {
            path: "/test/media/media.js",
            content_type: JS,
            body: include_bytes!("pages/media/media.js"),
        });
        let server = Server::bind("127.0.0.1:0".parse().expect("addr"), config)
            .await
            .expect("bind the signaling server");
        let addr = server.local_addr().expect("addr");
        let handle = server.handle();
        tokio::spawn(server.run());
        let mut member = handle.member().expect("a Rust member");
        member.send(ClientMessage::CreateOrJoin {
            room: "media".into(),
        });
        match member.recv().await {
            Some(ServerMessage::Created { .. }) => {}
            other => panic!("the Rust member did not create the room: {other:?}"),
        }
        let browser = launch(kind, &format!("http://{addr}/test/media/?{query}"))?;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        Some(Run {
            kind,
            browser,
            member,
            visitor: None,
            peer: None,
            reports,
            last: Value::Null,
            first_mid: "0".into(),
            deadline: Instant::now() + CASE_LIMIT,
            tick,
            handle,
        })
    }

    fn signal(&self, data: Value) {
        self.member.send(ClientMessage::Message {
            to: self.visitor,
            data: data.into(),
        });
    }

    fn peer(&mut self) -> &mut LivePeer {
        self.peer
            .as_mut()
            .expect("the peer exists once the page offered")
    }

    /// Fails the test with everything known (the browser's output follows,
    /// printed by its drop).
    fn fail(&self, why: &str) -> ! {
        let log = self.last["log"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            })
            .unwrap_or_default();
        let mut last = self.last.clone();
        if let Some(o) = last.as_object_mut() {
            o.remove("log");
        }
        let state = self.peer.as_ref().map(|p| {
            let pc = p.connection();
            format!(
                "signaling {:?}, connection {:?}, media {:?}",
                pc.signaling_state(),
                pc.connection_state(),
                pc.media_stats()
            )
        });
        panic!(
            "{:?}: {why}\n rust peer: {state:?}\n page log:\n  {log}\n last report: {last}",
            self.kind
        );
    }

    /// Answers the page's offer: binds the peer on the first one (after
    /// `tracks` are added), or answers a renegotiation. Returns the new tracks.
    async fn answer(&mut self, offer: &str, tracks: &[TrackCodec]) -> Vec<TrackId> {
        if self.peer.is_none() {
            let config = LivePeer::config().expect("certificate");
            let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
            self.peer = Some(LivePeer::bind(config, lo).await.expect("bind UDP"));
            self.first_mid = offer
                .lines()
                .find_map(|l| l.trim_end().strip_prefix("a=mid:"))
                .unwrap_or("0")
                .to_string();
        }
        let mut ids = Vec::new();
        for &codec in tracks {
            match self.peer().connection_mut().add_track_with_codec(codec) {
                Ok(id) => ids.push(id),
                Err(e) => self.fail(&format!("add_track_with_codec({codec:?}): {e}")),
            }
        }
        match self.peer().answer(offer) {
            Ok(answer) => self.signal(json!({"type": "answer", "sdp": answer})),
            Err(e) => self.fail(&format!("the page's offer was refused: {e}\n{offer}")),
        }
        ids
    }

    /// Offers from the Rust side (a renegotiation); the page's answer is
    /// applied when it comes.
    #[allow(dead_code)] // used by the renegotiation case
    fn offer(&mut self) {
        match self.peer().offer() {
            Ok(offer) => self.signal(json!({"type": "offer", "sdp": offer})),
            Err(e) => self.fail(&format!("create_offer: {e}")),
        }
    }

    /// The next step; fails the test at the deadline or if the browser
    /// exits.
    async fn step(&mut self) -> Step {
        loop {
            if Instant::now() > self.deadline {
                self.fail("the case did not finish within 60 s");
            }
            let peer = &mut self.peer;
            let peer_event = async move {
                match peer.as_mut() {
                    Some(p) => p.next_event().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                e = peer_event => match e {
                    Ok(peer::Event::LocalCandidate(c)) => self.signal(json!({
                        "type": "candidate", "candidate": c.to_string(),
                        "sdpMid": self.first_mid, "sdpMLineIndex": 0,
                    })),
                    Ok(peer::Event::GatheringComplete) => {}
                    Ok(peer::Event::Error(e)) => self.fail(&format!("peer error: {e}")),
                    Ok(e) => return Step::Peer(e),
                    Err(e) => self.fail(&format!("UDP: {e}")),
                },
                m = self.member.recv() => match m {
                    Some(ServerMessage::Join { id, .. }) => self.visitor = Some(id),
                    Some(ServerMessage::Message { from, data }) => {
                        let data = data.to_value();
                        self.visitor.get_or_insert(from);
                        match data["type"].as_str() {
                            Some("offer") => {
                                return Step::Offer(data["sdp"].as_str().unwrap_or("").to_string());
                            }
                            Some("answer") => {
                                let sdp = data["sdp"].as_str().unwrap_or("").to_string();
                                if let Err(e) = self.peer().accept_answer(&sdp) {
                                    self.fail(&format!("the page's answer was refused: {e}\n{sdp}"));
                                }
                            }
                            Some("candidate") => {
                                if let Some(p) = self.peer.as_mut() {
                                    match data["candidate"].as_str() {
                                        Some("") | None => p.add_end_of_candidates(),
                                        // mDNS, TCP, IPv6 candidates may be refused: fine.
                                        Some(c) => { let _ = p.add_ice_candidate(c); }
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                    Some(ServerMessage::Bye { .. }) => self.fail("the page left"),
                    Some(_) => {}
                    None => self.fail("the signaling server stopped"),
                },
                r = self.reports.recv() => {
                    if let Some(body) = r {
                        self.last = serde_json::from_str(&body).unwrap_or(Value::Null);
                        return Step::Report;
                    }
                }
                _ = self.tick.tick() => {
                    if let Some(status) = self.browser.process.wait_exit(Duration::ZERO) {
                        self.fail(&format!("the browser exited: {status}"));
                    }
                    return Step::Tick;
                }
            }
        }
    }

    /// The page's inbound-rtp entries of `kind`.
    fn inbound(&self, kind: &str) -> Vec<Value> {
        self.last["inbound"]
            .as_array()
            .map(|a| a.iter().filter(|s| s["kind"] == kind).cloned().collect())
            .unwrap_or_default()
    }

    async fn finish(mut self) {
        if let Some(p) = self.peer.as_mut() {
            p.close().await;
        }
        self.handle.shutdown();
    }
}

// ---------------------------------------------------------------------------
// Case 1: video browser → Rust.

/// What the Rust side received on one m-line.
#[derive(Default)]
struct Received {
    frames: Vec<(u32, Vec<u8>)>,
    keyframes: usize,
}

/// The camera in `codec` to Rust; `want` frames collected (the first a
/// keyframe); returns them.
async fn camera_to_rust(kind: BrowserKind, codec: TrackCodec, want: usize) -> Option<Received> {
    let mut run = Run::start(kind, &format!("case=send&codec={}", codec.name())).await?;
    let mut got = Received::default();
    while got.frames.len() < want {
        match run.step().await {
            Step::Offer(sdp) => {
                run.answer(&sdp, &[]).await;
            }
            Step::Peer(peer::Event::Frame { frame, .. }) => {
                // Frames before the first keyframe cannot be decoded: the
                // file starts at a keyframe.
                if got.frames.is_empty() && !frame.keyframe {
                    continue;
                }
                got.keyframes += usize::from(frame.keyframe);
                got.frames.push((frame.timestamp, frame.data));
            }
            _ => {}
        }
    }
    let negotiated = run
        .peer()
        .connection()
        .stats()
        .inbound
        .first()
        .map(|s| format!("{s:?}"));
    eprintln!(
        "{kind:?} {}: {} frames, {} keyframes; {negotiated:?}",
        codec.name(),
        got.frames.len(),
        got.keyframes
    );
    run.finish().await;
    Some(got)
}

/// Writes the frames as an IVF file (90 kHz timestamps rebased to 1/90000).
fn ivf_file(frames: &[(u32, Vec<u8>)], fourcc: [u8; 4], width: u16, height: u16) -> Vec<u8> {
    let mut out = Vec::new();
    rtclab::rtp::ivf::IvfHeader {
        fourcc,
        width,
        height,
        timebase_den: 90_000,
        timebase_num: 1,
        frame_count: frames.len() as u32,
    }
    .write(&mut out);
    let first = frames.first().map_or(0, |f| f.0);
    for (ts, data) in frames {
        rtclab::rtp::ivf::write_frame(u64::from(ts.wrapping_sub(first)), data, &mut out)
            .expect("frame");
    }
    out
}

/// VP8 keyframe header (RFC 6386 §9.1): 3-byte frame tag (bit 0 = 0 for a
/// keyframe), start code 9d 01 2a, 14-bit width and height.
fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}

async fn vp8_camera_to_rust(kind: BrowserKind) {
    let Some(got) = camera_to_rust(kind, TrackCodec::Vp8, 60).await else {
        return;
    };
    let (w, h) = vp8_keyframe_size(&got.frames[0].1).expect("the first frame is a VP8 keyframe");
    let file = ivf_file(&got.frames, *b"VP80", w, h);
    let path = std::env::temp_dir().join(format!("rtclab-{}-camera.ivf", kind.name()));
    std::fs::write(&path, &file).expect("write IVF");
    if let Ok(dir) = std::env::var("RTCLAB_RECORD_CLIP") {
        // How tests/fixtures/media/fake-camera-vp8.ivf was made.
        std::fs::write(dir, &file).expect("write the clip");
    }
    // Read it back as any IVF reader would.
    let (header, reader) = rtclab::rtp::ivf::IvfReader::new(&file).expect("IVF parses");
    assert_eq!(&header.fourcc, b"VP80");
    assert_eq!(header.frame_count as usize, got.frames.len());
    assert!(
        (16..=4096).contains(&header.width) && (16..=4096).contains(&header.height),
        "{header:?}"
    );
    let frames: Vec<_> = reader.collect::<Result<Vec<_>, _>>().expect("frames parse");
    assert!(frames.len() >= 60, "{} frames", frames.len());
    assert_eq!(vp8_keyframe_size(frames[0].1), Some((w, h)));
    assert!(got.keyframes >= 1);
    eprintln!(
        "{kind:?}: {} ({w}x{h}, {} frames, {} bytes)",
        path.display(),
        frames.len(),
        file.len()
    );
}

#[tokio::test]
async fn chromium_vp8_camera_to_rust() {
    vp8_camera_to_rust(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_vp8_camera_to_rust() {
    vp8_camera_to_rust(BrowserKind::Firefox).await;
}

/// The NAL unit types of an Annex-B stream (4- or 3-byte start codes).
fn nal_types(stream: &[u8]) -> Vec<u8> {
    rtclab::rtp::h264::split_annex_b(stream)
        .filter_map(|nal| nal.first().map(|b| b & 0x1f))
        .collect()
}

#[tokio::test]
async fn chromium_h264_camera_to_rust() {
    let Some(got) = camera_to_rust(BrowserKind::Chromium, TrackCodec::H264, 60).await else {
        return;
    };
    // The access units, one after another, are the Annex-B file.
    let file: Vec<u8> = got
        .frames
        .iter()
        .flat_map(|(_, au)| au.iter().copied())
        .collect();
    let path = std::env::temp_dir().join("rtclab-chromium-camera.h264");
    std::fs::write(&path, &file).expect("write Annex-B");
    assert_eq!(
        file[..4],
        [0, 0, 0, 1],
        "an Annex-B stream starts with a start code"
    );
    let first = nal_types(&got.frames[0].1);
    for t in [7, 8, 5] {
        assert!(
            first.contains(&t),
            "the first access unit lacks NAL type {t}: {first:?}"
        );
    }
    let types = nal_types(&file);
    let slices = types.iter().filter(|&&t| t == 1 || t == 5).count();
    assert!(slices >= 60, "{slices} slices in {types:?}");
    // Every access unit reads back as one.
    let units = rtclab::rtp::h264::AnnexBReader::new(&file).count();
    assert!(units >= 60, "{units} access units");
    eprintln!(
        "Chromium: {} ({} access units, {} bytes, {} keyframes)",
        path.display(),
        units,
        file.len(),
        got.keyframes
    );
}

/// Camera → Rust in VP9 or AV1, written to an IVF file (fourcc `VP90` /
/// `AV01`) that a reference decoder (libvpx's `vpxdec`, `dav1d`) must
/// decode whole: the depacketized frames are what decoders want (AV1: each
/// temporal unit in the low-overhead format, sizes restored).
async fn camera_to_ivf_decoded(kind: BrowserKind, codec: TrackCodec) {
    let (fourcc, decoder, package) = match codec {
        TrackCodec::Vp9 => (*b"VP90", "vpxdec", "vpx-tools"),
        _ => (*b"AV01", "dav1d", "dav1d"),
    };
    let Some(decoder) = common::require_binary(decoder, package) else {
        return;
    };
    let Some(got) = camera_to_rust(kind, codec, 60).await else {
        return;
    };
    assert!(
        keyframe_structure_ok(codec, &got.frames[0].1),
        "the first {codec:?} frame is not a keyframe of the codec's structure"
    );
    let file = ivf_file(&got.frames, fourcc, 320, 240);
    let path = std::env::temp_dir().join(format!(
        "rtclab-{}-camera-{}.ivf",
        kind.name(),
        codec.name().to_lowercase()
    ));
    std::fs::write(&path, &file).expect("write IVF");
    let mut cmd = std::process::Command::new(&decoder);
    match codec {
        TrackCodec::Vp9 => cmd.args(["--summary", "-o", "/dev/null"]).arg(&path),
        _ => cmd
            .args(["--muxer", "null", "-o", "/dev/null", "-i"])
            .arg(&path),
    };
    let out = cmd.output().expect("run the decoder");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{decoder:?} failed on {path:?}:\n{text}"
    );
    // "60 decoded frames/60 showed frames" (vpxdec --summary), "Decoded
    // 60/60 frames" (dav1d): every frame decoded.
    let decoded = text
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<usize>().ok())
        .find(|&n| n == got.frames.len());
    assert!(
        decoded.is_some(),
        "{decoder:?} did not decode all {} frames:\n{text}",
        got.frames.len()
    );
    eprintln!(
        "{kind:?}: {} ({} frames, {} bytes) decoded by {decoder:?}: {}",
        path.display(),
        got.frames.len(),
        file.len(),
        text.trim().lines().last().unwrap_or("")
    );
}

#[tokio::test]
async fn chromium_vp9_camera_to_rust_decodes() {
    camera_to_ivf_decoded(BrowserKind::Chromium, TrackCodec::Vp9).await;
}

#[tokio::test]
async fn chromium_av1_camera_to_rust_decodes() {
    camera_to_ivf_decoded(BrowserKind::Chromium, TrackCodec::Av1).await;
}

#[tokio::test]
async fn firefox_vp9_camera_to_rust_decodes() {
    camera_to_ivf_decoded(BrowserKind::Firefox, TrackCodec::Vp9).await;
}

#[tokio::test]
async fn firefox_av1_camera_to_rust_decodes() {
    camera_to_ivf_decoded(BrowserKind::Firefox, TrackCodec::Av1).await;
}

// ---------------------------------------------------------------------------
// Case 2: video Rust → browser, from a clip.

/// The clip case 2 sends: 2 s of Chromium's fake camera, 320×240 VP8,
/// recorded by case 1 (`RTCLAB_RECORD_CLIP=path`).
const CLIP: &[u8] = include_bytes!("fixtures/media/fake-camera-vp8.ivf");

/// Plays an IVF clip in a loop at its own pace, as RTP timestamps (90 kHz)
/// and send times; restarts at its first frame (a keyframe) on request.
struct ClipPlayer {
    frames: Vec<(u32, &'static [u8])>,
    /// One loop's length in 90 kHz ticks (last frame + one frame time).
    period: u32,
    next: usize,
    /// RTP timestamp of the current loop's start.
    base: u32,
    started: Instant,
    /// Media time (ticks) of `started`.
    at: u64,
    sent: u64,
}

impl ClipPlayer {
    fn new(file: &'static [u8]) -> ClipPlayer {
        let (header, reader) = rtclab::rtp::ivf::IvfReader::new(file).expect("the clip is IVF");
        let scale = 90_000 * u64::from(header.timebase_num) / u64::from(header.timebase_den.max(1));
        let frames: Vec<(u32, &[u8])> = reader
            .map(|f| f.expect("clip frame"))
            .map(|(ts, data)| ((ts * scale) as u32, data))
            .collect();
        let step = frames
            .last()
            .map_or(3000, |f| f.0 / (frames.len().max(2) as u32 - 1));
        let period = frames.last().map_or(0, |f| f.0) + step;
        ClipPlayer {
            frames,
            period,
            next: 0,
            base: 0x1000,
            started: Instant::now(),
            at: 0,
            sent: 0,
        }
    }

    /// The frames due by now.
    fn due(&mut self) -> Vec<(u32, &'static [u8])> {
        let now_ticks = self.at + (self.started.elapsed().as_micros() as u64 * 9 / 100);
        let mut out = Vec::new();
        loop {
            let (ts, data) = self.frames[self.next];
            let t = self.base.wrapping_add(ts);
            if u64::from(t.wrapping_sub(0x1000)) > now_ticks {
                break;
            }
            out.push((t, data));
            self.sent += 1;
            self.next += 1;
            if self.next == self.frames.len() {
                self.next = 0;
                self.base = self.base.wrapping_add(self.period);
            }
        }
        out
    }

    /// Jumps to the first frame (the keyframe) right away.
    fn restart(&mut self) {
        if self.next != 0 {
            self.base = self.base.wrapping_add(self.period);
            // Media time continues from the next loop's start.
            self.at = u64::from(self.base.wrapping_sub(0x1000));
            self.started = Instant::now();
            self.next = 0;
        }
    }
}

/// The page's counters for its (first) inbound video.
fn video_in(run: &Run) -> (u64, u64, u64) {
    let v = run.inbound("video");
    let Some(s) = v.first() else { return (0, 0, 0) };
    (
        s["framesDecoded"].as_u64().unwrap_or(0),
        s["keyFramesDecoded"].as_u64().unwrap_or(0),
        s["pliCount"].as_u64().unwrap_or(0),
    )
}

async fn clip_to_browser(kind: BrowserKind) {
    let Some(mut run) = Run::start(kind, "case=recv&codec=VP8").await else {
        return;
    };
    let mut player = ClipPlayer::new(CLIP);
    let mut track = None;
    let mut sending = false;
    let mut seen = Vec::new();
    loop {
        match run.step().await {
            Step::Offer(sdp) => track = run.answer(&sdp, &[TrackCodec::Vp8]).await.first().copied(),
            Step::Peer(peer::Event::ConnectionState(
                rtclab::peer::PeerConnectionState::Connected,
            )) => {
                sending = true;
                player = ClipPlayer::new(CLIP);
            }
            Step::Peer(peer::Event::KeyframeRequested(_)) => player.restart(),
            Step::Tick if sending => {
                let track = track.expect("our track");
                for (ts, frame) in player.due() {
                    if let Err(e) = run.peer().send_frame(track, ts, frame) {
                        run.fail(&format!("send_frame: {e}"));
                    }
                }
            }
            Step::Report => {
                let (decoded, keys, plis) = video_in(&run);
                seen.push(decoded);
                // Growing: at least 45 frames (1.5 s of the clip), still
                // growing over the last second.
                let n = seen.len();
                if decoded >= 45 && keys >= 1 && n >= 3 && seen[n - 3] < decoded {
                    eprintln!(
                        "{kind:?}: framesDecoded {decoded}, keyFramesDecoded {keys}, pliCount {plis}, sent {}",
                        player.sent
                    );
                    let s = &run.inbound("video")[0];
                    assert_eq!(s["codec"], "video/VP8", "{s}");
                    assert_eq!(s["frameWidth"], 320, "{s}");
                    // No decode errors: what arrived was decoded (a few
                    // may still be in flight).
                    assert!(
                        decoded + 10 >= s["framesReceived"].as_u64().unwrap_or(0),
                        "{s}"
                    );
                    break;
                }
            }
            _ => {}
        }
    }
    run.finish().await;
}

#[tokio::test]
async fn chromium_vp8_clip_to_browser() {
    clip_to_browser(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_vp8_clip_to_browser() {
    clip_to_browser(BrowserKind::Firefox).await;
}

// ---------------------------------------------------------------------------
// Case 3: reflect, browser → Rust → browser (as the demo does).

/// Whether `frame` is a keyframe of `codec` with the structure a decoder
/// starts from: a VP8 keyframe header with its size; a VP9 keyframe
/// (uncompressed header frame_type 0, RFC 9628 §4.2's P bit agreeing); an
/// AV1 temporal unit opening with a temporal delimiter and holding a
/// sequence header OBU (what N=1 announced).
fn keyframe_structure_ok(codec: TrackCodec, frame: &[u8]) -> bool {
    match codec {
        TrackCodec::Vp8 => vp8_keyframe_size(frame).is_some(),
        TrackCodec::Vp9 => rtclab::rtp::vp9::frame_is_keyframe(frame),
        TrackCodec::Av1 => {
            use rtclab::rtp::av1::{ObuReader, TEMPORAL_DELIMITER, has_sequence_header};
            frame.starts_with(&TEMPORAL_DELIMITER)
                && has_sequence_header(frame)
                && ObuReader::new(frame).all(|o| o.is_ok())
        }
        _ => true,
    }
}

/// Camera → Rust → page in `codec`: the Rust side reflects every frame on
/// its own track; the page must decode them in that codec, and the Rust
/// side must have got keyframes of the right structure.
async fn reflect(kind: BrowserKind, codec: TrackCodec) {
    let query = format!("case=reflect&codec={}", codec.name());
    let Some(mut run) = Run::start(kind, &query).await else {
        return;
    };
    let mut track = None;
    let mut camera_mid = None;
    let mut reflected = 0u64;
    let mut keyframes = 0u64;
    let mut seen = Vec::new();
    loop {
        match run.step().await {
            Step::Offer(sdp) => track = run.answer(&sdp, &[codec]).await.first().copied(),
            Step::Peer(peer::Event::Track { mid, .. }) => camera_mid = Some(mid),
            Step::Peer(peer::Event::Frame { mid, frame }) if Some(&mid) == camera_mid.as_ref() => {
                if frame.keyframe {
                    if !keyframe_structure_ok(codec, &frame.data) {
                        let head = &frame.data[..frame.data.len().min(32)];
                        run.fail(&format!(
                            "a {codec:?} keyframe of bad structure: {head:02x?}"
                        ));
                    }
                    keyframes += 1;
                }
                let track = track.expect("our track");
                // Same RTP timestamp: the reflection keeps the camera's timing.
                if let Err(e) = run.peer().send_frame(track, frame.timestamp, &frame.data) {
                    run.fail(&format!("send_frame: {e}"));
                }
                reflected += 1;
            }
            Step::Peer(peer::Event::KeyframeRequested(_)) => {
                // No encoder here: ask the camera's encoder (PLI).
                if let Some(mid) = camera_mid.clone() {
                    let _ = run.peer().request_keyframe(&mid);
                }
            }
            Step::Report => {
                let (decoded, keys, plis) = video_in(&run);
                seen.push(decoded);
                let n = seen.len();
                if decoded >= 30 && keys >= 1 && n >= 3 && seen[n - 3] < decoded {
                    eprintln!(
                        "{kind:?} {}: reflected {reflected} frames ({keyframes} keyframes); page framesDecoded {decoded}, keyFramesDecoded {keys}, pliCount {plis}",
                        codec.name()
                    );
                    let s = &run.inbound("video")[0];
                    let want = format!("video/{}", codec.name());
                    assert_eq!(s["codec"].as_str(), Some(want.as_str()), "{s}");
                    assert!(keyframes >= 1, "no keyframe reached the Rust side");
                    break;
                }
            }
            _ => {}
        }
    }
    run.finish().await;
}

#[tokio::test]
async fn chromium_reflect_camera() {
    reflect(BrowserKind::Chromium, TrackCodec::Vp8).await;
}

#[tokio::test]
async fn firefox_reflect_camera() {
    reflect(BrowserKind::Firefox, TrackCodec::Vp8).await;
}

#[tokio::test]
async fn chromium_reflect_camera_vp9() {
    reflect(BrowserKind::Chromium, TrackCodec::Vp9).await;
}

#[tokio::test]
async fn chromium_reflect_camera_av1() {
    reflect(BrowserKind::Chromium, TrackCodec::Av1).await;
}

#[tokio::test]
async fn firefox_reflect_camera_vp9() {
    reflect(BrowserKind::Firefox, TrackCodec::Vp9).await;
}

#[tokio::test]
async fn firefox_reflect_camera_av1() {
    reflect(BrowserKind::Firefox, TrackCodec::Av1).await;
}

// ---------------------------------------------------------------------------
// Case 4: Opus both ways (the microphone's frames reflected).

/// RFC 6716 §3.1: the TOC byte's configuration (bits 7–3: mode, bandwidth,
/// frame size) and frame-count code (bits 1–0); a code-3 packet carries a
/// frame count byte with M in 1..=48.
fn opus_toc_valid(packet: &[u8]) -> bool {
    match packet {
        [] => false,
        [toc, rest @ ..] => match toc & 3 {
            // One frame; two equal frames (even length); two frames with
            // a length byte.
            0 => true,
            1 => rest.len() % 2 == 0,
            2 => !rest.is_empty(),
            _ => rest.first().is_some_and(|m| (1..=48).contains(&(m & 0x3f))),
        },
    }
}

async fn opus_both_ways(kind: BrowserKind) {
    let Some(mut run) = Run::start(kind, "case=audio").await else {
        return;
    };
    let mut track = None;
    let mut mic_mid = None;
    let mut received = 0u64;
    let mut configs = std::collections::BTreeSet::new();
    loop {
        match run.step().await {
            Step::Offer(sdp) => {
                track = run.answer(&sdp, &[TrackCodec::Opus]).await.first().copied()
            }
            Step::Peer(peer::Event::Track { mid, .. }) => mic_mid = Some(mid),
            Step::Peer(peer::Event::Frame { mid, frame }) if Some(&mid) == mic_mid.as_ref() => {
                if !opus_toc_valid(&frame.data) {
                    run.fail(&format!(
                        "an invalid Opus packet: {:02x?}",
                        &frame.data[..frame.data.len().min(8)]
                    ));
                }
                configs.insert(frame.data[0] >> 3);
                received += 1;
                let track = track.expect("our track");
                if let Err(e) = run.peer().send_frame(track, frame.timestamp, &frame.data) {
                    run.fail(&format!("send_frame: {e}"));
                }
            }
            Step::Report => {
                let a = run.inbound("audio");
                let Some(s) = a.first() else { continue };
                let packets = s["packetsReceived"].as_u64().unwrap_or(0);
                let samples = s["totalSamplesReceived"].as_u64().unwrap_or(0);
                if received >= 50 && packets >= 50 && samples > 0 {
                    eprintln!(
                        "{kind:?}: Rust received {received} Opus packets (TOC configs {configs:?}); page packetsReceived {packets}, totalSamplesReceived {samples}, codec {}",
                        s["codec"]
                    );
                    assert_eq!(s["codec"], "audio/opus", "{s}");
                    break;
                }
            }
            _ => {}
        }
    }
    run.finish().await;
}

#[tokio::test]
async fn chromium_opus_both_ways() {
    opus_both_ways(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_opus_both_ways() {
    opus_both_ways(BrowserKind::Firefox).await;
}

// ---------------------------------------------------------------------------
// Case 5: renegotiation from each side.

async fn renegotiation(kind: BrowserKind) {
    let Some(mut run) = Run::start(kind, "case=reneg&codec=VP8").await else {
        return;
    };
    let mut frames: std::collections::BTreeMap<String, u64> = Default::default();
    let mut asked = false;
    let mut offers = 0;
    let mut our_track = None;
    let mut seen = Vec::new();
    loop {
        match run.step().await {
            Step::Offer(sdp) => {
                offers += 1;
                run.answer(&sdp, &[]).await;
            }
            Step::Peer(peer::Event::Frame { mid, frame }) => {
                let first = run.first_mid.clone();
                *frames.entry(mid.clone()).or_default() += 1;
                if !asked && frames.get(&first).copied().unwrap_or(0) >= 10 {
                    // 1. The browser adds a track: it offers again.
                    asked = true;
                    run.signal(json!({"type": "add-track"}));
                }
                let second = frames.keys().find(|m| **m != first).cloned();
                if our_track.is_none() && second.is_some_and(|m| frames[&m] >= 10) {
                    // 2. Media flows on the browser's new track; now we
                    // add one and offer.
                    let id = match run
                        .peer()
                        .connection_mut()
                        .add_track_with_codec(TrackCodec::Vp8)
                    {
                        Ok(id) => id,
                        Err(e) => run.fail(&format!("add_track: {e}")),
                    };
                    our_track = Some(id);
                    run.offer();
                }
                // 3. Our new track reflects the first camera track.
                if let Some(t) = our_track
                    && mid == first
                    && run.peer().connection().signaling_state()
                        == rtclab::peer::SignalingState::Stable
                {
                    let _ = run.peer().send_frame(t, frame.timestamp, &frame.data);
                }
            }
            Step::Peer(peer::Event::KeyframeRequested(_)) => {
                let first = run.first_mid.clone();
                let _ = run.peer().request_keyframe(&first);
            }
            Step::Report if our_track.is_some() => {
                let (decoded, keys, _) = video_in(&run);
                seen.push(decoded);
                let n = seen.len();
                if decoded >= 20 && keys >= 1 && n >= 3 && seen[n - 3] < decoded {
                    eprintln!(
                        "{kind:?}: page offers {offers}; frames per mid at Rust {frames:?}; page framesDecoded on our new track {decoded}"
                    );
                    assert_eq!(offers, 2);
                    assert_eq!(frames.len(), 2, "{frames:?}");
                    break;
                }
            }
            _ => {}
        }
    }
    run.finish().await;
}

#[tokio::test]
async fn chromium_renegotiation_both_sides() {
    renegotiation(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_renegotiation_both_sides() {
    renegotiation(BrowserKind::Firefox).await;
}

// ---------------------------------------------------------------------------
// Case 6: the photo of codelab step 9 over a data channel.

async fn photo(kind: BrowserKind) {
    use rtclab::datachannel::{Event as DcEvent, Message};
    let Some(mut run) = Run::start(kind, "case=photo").await else {
        return;
    };
    let mut header: Option<Value> = None;
    let mut data = Vec::new();
    let mut chunks = 0;
    loop {
        match run.step().await {
            Step::Offer(sdp) => {
                run.answer(&sdp, &[]).await;
            }
            Step::Peer(peer::Event::DataChannel(DcEvent::Message { message, .. })) => match message
            {
                Message::Text(t) => header = serde_json::from_str(&t).ok(),
                Message::Binary(b) => {
                    chunks += 1;
                    data.extend_from_slice(&b);
                }
            },
            _ => {}
        }
        let Some(h) = header.as_ref() else { continue };
        let bytes = h["bytes"].as_u64().unwrap_or(0) as usize;
        if data.len() >= bytes {
            assert_eq!(data.len(), 320 * 240 * 4, "RGBA pixels of a 320×240 canvas");
            let digest = ring::digest::digest(&ring::digest::SHA256, &data);
            let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                h["sha256"].as_str(),
                Some(hex.as_str()),
                "the photo's SHA-256"
            );
            // A camera frame, not a blank canvas.
            assert!(
                data.chunks(4).any(|p| p[..3] != [0, 0, 0]),
                "the photo is all black"
            );
            eprintln!(
                "{kind:?}: photo of {} bytes in {chunks} chunks, SHA-256 {hex} matches",
                data.len()
            );
            break;
        }
    }
    run.finish().await;
}

#[tokio::test]
async fn chromium_photo_over_a_data_channel() {
    photo(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_photo_over_a_data_channel() {
    photo(BrowserKind::Firefox).await;
}
