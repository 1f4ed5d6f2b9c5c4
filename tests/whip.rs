//! WHIP (RFC 9725) and WHEP over real HTTP: the signaling server with its
//! `whip` option, a backend of `LivePeer`s in the test, and Rust clients
//! that speak HTTP/1.1 over a plain `TcpStream`.
//!
//! - publish: a `LivePeer` offers video and a data channel, POSTs the offer
//!   with a bearer token, trickles its candidates with PATCH (If-Match: the
//!   ETag), connects; the backend counts its VP8 frames and echoes its
//!   data channel; DELETE ends the session.
//! - play: a client offers recvonly video; the backend's peer sends a
//!   generated VP8 stream; the client receives the frames.
//! - every refusal the RFC names, over the wire.
//! - headless Chromium on web/whip (served at /wish/, `fetch` only):
//!   one page publishes its fake camera through WHIP (trickling with
//!   PATCH), another plays through WHEP and decodes the backend's VP8.
//! - aiortc as a WHIP client (tests/interop/aiortc_whip.py, in the venv
//!   `scripts/test` makes): its video reaches the backend, its data channel
//!   is echoed, its DELETE ends the session.

#[path = "common/mod.rs"]
mod common;
#[path = "interop/harness.rs"]
mod harness;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
use rtclab::peer::{self, PeerConnectionState};
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::signaling::{Config as SignalingConfig, Server};
use rtclab::whip::server::Mount;
use rtclab::whip::{self, Backend, BoxFuture, Config, ResourceId, SdpFrag, answer_with_candidates};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const TOKEN: &str = "let-me-in";

enum Cmd {
    Candidate(String),
    EndOfCandidates,
    Close,
}

/// Counters the sessions' tasks keep.
#[derive(Default)]
struct Counts {
    frames_in: AtomicUsize,
    echoed: AtomicUsize,
    frames_out: AtomicUsize,
    closed: AtomicUsize,
}

#[derive(Default)]
struct TestBackend {
    sessions: Mutex<HashMap<ResourceId, mpsc::UnboundedSender<Cmd>>>,
    counts: Arc<Counts>,
    full: AtomicBool,
}

/// VP8 frames: a keyframe (P bit 0) every 30, interframes between (what
/// the Rust publisher sends; the backend only counts them).
fn vp8_frame(i: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..800).map(|k| (k * 7 + i) as u8).collect();
    f[0] = if i % 30 == 0 { f[0] & !1 } else { f[0] | 1 };
    f
}

/// The 60 real VP8 frames of tests/fixtures/media/fake-camera-vp8.ivf
/// (a keyframe first): what a WHEP session plays, looped, so that a
/// browser decodes it.
fn clip() -> &'static [(u32, Vec<u8>)] {
    static CLIP: std::sync::OnceLock<Vec<(u32, Vec<u8>)>> = std::sync::OnceLock::new();
    CLIP.get_or_init(|| {
        harness::clip_frames(&harness::root().join("tests/fixtures/media/fake-camera-vp8.ivf"))
    })
}

/// The `i`th frame played (the clip looped, from its keyframe).
fn played(i: usize) -> &'static [u8] {
    &clip()[i % clip().len()].1
}

impl TestBackend {
    async fn session(
        &self,
        resource: ResourceId,
        offer: String,
        play: bool,
    ) -> Result<String, whip::Error> {
        if self.full.load(Ordering::Relaxed) {
            return Err(whip::Error::Full { retry_after: 3 });
        }
        let config = LivePeer::config().map_err(|e| whip::Error::Internal(e.to_string()))?;
        let mut peer = LivePeer::bind(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .map_err(|e| whip::Error::Internal(e.to_string()))?;
        let track = if play {
            Some(
                peer.add_track(MediaKind::Video)
                    .map_err(|e| whip::Error::Internal(e.to_string()))?,
            )
        } else {
            None
        };
        let answer = peer
            .answer(&offer)
            .map_err(|e| whip::Error::BadSdp(e.to_string()))?;
        let port = peer.local_addr().port();
        let answer = answer_with_candidates(
            &answer,
            &[format!(
                "candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"
            )],
            true,
        );
        let (tx, mut rx) = mpsc::unbounded_channel();
        self.sessions.lock().expect("lock").insert(resource, tx);
        let counts = self.counts.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            let mut connected = false;
            let mut sent = 0usize;
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Candidate(c)) => {
                            let _ = peer.add_ice_candidate(&c);
                        }
                        Some(Cmd::EndOfCandidates) => peer.add_end_of_candidates(),
                        Some(Cmd::Close) | None => {
                            peer.close().await;
                            counts.closed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    },
                    _ = tick.tick(), if connected && track.is_some() => {
                        if let Some(t) = track {
                            let ts = (sent as u32).wrapping_mul(3000);
                            if peer.send_frame(t, ts, played(sent)).is_ok() {
                                sent += 1;
                                counts.frames_out.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    e = peer.next_event() => match e {
                        Ok(peer::Event::ConnectionState(PeerConnectionState::Connected)) => connected = true,
                        Ok(peer::Event::Frame { .. }) => {
                            counts.frames_in.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(peer::Event::DataChannel(DcEvent::Message { channel, message: Message::Text(t) })) => {
                            if peer.send_text(channel, &t).is_ok() {
                                counts.echoed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                }
            }
        });
        Ok(answer)
    }
}

impl Backend for TestBackend {
    fn publish(
        &self,
        resource: ResourceId,
        _room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, whip::Error>> {
        Box::pin(self.session(resource, offer, false))
    }

    fn play(
        &self,
        resource: ResourceId,
        _room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, whip::Error>> {
        Box::pin(self.session(resource, offer, true))
    }

    fn patch(
        &self,
        resource: ResourceId,
        frag: SdpFrag,
        restart: bool,
    ) -> BoxFuture<'_, Result<Option<SdpFrag>, whip::Error>> {
        Box::pin(async move {
            if restart {
                return Err(whip::Error::Unsupported("ICE restart"));
            }
            let sessions = self.sessions.lock().expect("lock");
            let tx = sessions.get(&resource).ok_or(whip::Error::NotFound)?;
            for (_, c) in frag.candidates() {
                let _ = tx.send(Cmd::Candidate(format!("a={c}")));
            }
            if frag.end_of_candidates() {
                let _ = tx.send(Cmd::EndOfCandidates);
            }
            Ok(None)
        })
    }

    fn delete(&self, resource: ResourceId) -> BoxFuture<'_, Result<(), whip::Error>> {
        Box::pin(async move {
            let tx = self
                .sessions
                .lock()
                .expect("lock")
                .remove(&resource)
                .ok_or(whip::Error::NotFound)?;
            let _ = tx.send(Cmd::Close);
            Ok(())
        })
    }
}

/// A response: status, header fields (names lower-cased), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        head += &format!("{n}: {v}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).await.expect("write head");
    s.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of head");
    let head = std::str::from_utf8(&raw[..split]).expect("head is text");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

const AUTH: (&str, &str) = ("Authorization", "Bearer let-me-in");
const SDP: (&str, &str) = ("Content-Type", "application/sdp");
const FRAG: (&str, &str) = ("Content-Type", "application/trickle-ice-sdpfrag");

async fn start() -> (SocketAddr, Arc<TestBackend>, Mount) {
    start_reporting(None).await
}

/// [`start`], with the pages' `POST /report` bodies sent to `reports`.
async fn start_reporting(
    reports: Option<mpsc::Sender<String>>,
) -> (SocketAddr, Arc<TestBackend>, Mount) {
    let backend = Arc::new(TestBackend::default());
    let (addr, mount) = serve(backend.clone(), reports).await;
    (addr, backend, mount)
}

/// The signaling server with WHIP/WHEP around `backend`.
async fn serve(
    backend: Arc<dyn Backend>,
    reports: Option<mpsc::Sender<String>>,
) -> (SocketAddr, Mount) {
    let mut config = Config::with_token(Some(TOKEN.into()));
    config.ice_servers = vec![rtclab::whip::http::IceServerLink {
        url: "stun:127.0.0.1:3478".into(),
        credentials: None,
    }];
    config.max_body = 32 * 1024;
    let mount = Mount::new(config, backend);
    let mut sc = SignalingConfig::default();
    sc.whip = Some(mount.clone());
    sc.report_to = reports;
    let server = Server::bind("127.0.0.1:0".parse().expect("addr"), sc)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(server.run());
    (addr, mount)
}

/// Trickles `c` to the session at `location` (If-Match: `etag`).
async fn trickle(addr: SocketAddr, location: &str, etag: &str, c: &str) -> u16 {
    let frag = format!("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na={c}\r\n");
    http(
        addr,
        "PATCH",
        location,
        &[AUTH, FRAG, ("If-Match", etag)],
        frag.as_bytes(),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_publish_trickle_echo_and_delete() {
    let (addr, backend, mount) = start().await;
    let mut client = LivePeer::bind(
        LivePeer::config().expect("config"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("bind");
    let video = client.add_track(MediaKind::Video).expect("track");
    let chat = client
        .create_data_channel(ChannelInit::new("chat"))
        .expect("channel");
    let offer = client.offer().expect("offer");
    let r = http(addr, "POST", "/whip/room1", &[AUTH, SDP], offer.as_bytes()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.get("content-type"), Some("application/sdp"));
    let location = r.get("location").expect("Location").to_string();
    assert!(location.starts_with("/whip/resource/"), "{location}");
    let etag = r.get("etag").expect("ETag").to_string();
    assert_eq!(
        r.get("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert_eq!(r.all("link"), ["<stun:127.0.0.1:3478>; rel=\"ice-server\""]);
    assert_eq!(r.get("access-control-allow-origin"), Some("*"));
    let answer = String::from_utf8(r.body).expect("answer text");
    assert!(answer.contains("a=candidate:"), "{answer}");
    client.accept_answer(&answer).expect("answer");
    assert_eq!(mount.sessions(), 1);

    // Trickle our candidates, frames and a chat once connected.
    let mut echoes = Vec::new();
    let mut frame = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut connected = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while echoes.len() < 3 || backend.counts.frames_in.load(Ordering::Relaxed) < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: {} echoes, {} frames in",
            echoes.len(),
            backend.counts.frames_in.load(Ordering::Relaxed)
        );
        tokio::select! {
            e = client.next_event() => match e.expect("socket") {
                peer::Event::LocalCandidate(c) => {
                    let line = format!("candidate:{}", c.to_string().trim_start_matches("candidate:"));
                    assert_eq!(trickle(addr, &location, &etag, &line).await, 204);
                }
                peer::Event::ConnectionState(PeerConnectionState::Connected) => connected = true,
                peer::Event::DataChannel(DcEvent::Open(id)) if id == chat => {
                    for i in 0..3 {
                        client.send_text(chat, &format!("hello {i}")).expect("send");
                    }
                }
                peer::Event::DataChannel(DcEvent::Message { message, .. }) => echoes.push(message),
                _ => {}
            },
            _ = tick.tick(), if connected => {
                client
                    .send_frame(video, (frame as u32) * 3000, &vp8_frame(frame))
                    .expect("frame");
                frame += 1;
            }
        }
    }
    let want: Vec<Message> = (0..3)
        .map(|i| Message::Text(format!("hello {i}")))
        .collect();
    assert_eq!(echoes, want);

    // A wrong ETag: 412; an ICE restart without If-Match: 428, with it:
    // 422 (this backend has no restart).
    let r = http(
        addr,
        "PATCH",
        &location,
        &[AUTH, FRAG, ("If-Match", "\"stale\"")],
        b"a=end-of-candidates\r\n",
    )
    .await;
    assert_eq!(r.status, 412);
    let restart = b"a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword1\r\n";
    let r = http(addr, "PATCH", &location, &[AUTH, FRAG], restart).await;
    assert_eq!(r.status, 428);
    let r = http(
        addr,
        "PATCH",
        &location,
        &[AUTH, FRAG, ("If-Match", "*")],
        restart,
    )
    .await;
    assert_eq!(r.status, 422);

    // DELETE ends it: 200, the backend's peer closes; again: 404.
    let r = http(addr, "DELETE", &location, &[AUTH], b"").await;
    assert_eq!(r.status, 200);
    let r = http(addr, "DELETE", &location, &[AUTH], b"").await;
    assert_eq!(r.status, 404);
    assert_eq!(mount.sessions(), 0);
    for _ in 0..100 {
        if backend.counts.closed.load(Ordering::Relaxed) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(backend.counts.closed.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_plays_a_vp8_stream_to_a_recvonly_offer() {
    let (addr, backend, _mount) = start().await;
    let mut client = LivePeer::bind(
        LivePeer::config().expect("config"),
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("bind");
    client.add_track(MediaKind::Video).expect("track");
    let offer = client.offer().expect("offer");
    // WHEP clients offer recvonly (a browser's addTransceiver('video',
    // {direction: 'recvonly'})).
    let recvonly = offer.replace("a=sendrecv", "a=recvonly");
    let r = http(
        addr,
        "POST",
        "/whep/room1",
        &[AUTH, SDP],
        recvonly.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.get("location")
            .is_some_and(|l| l.starts_with("/whep/resource/"))
    );
    let answer = String::from_utf8(r.body).expect("answer");
    assert!(answer.contains("a=sendonly"), "{answer}");
    client.accept_answer(&answer).expect("answer");
    let mut frames = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while frames.len() < 20 {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = tokio::time::timeout(left, client.next_event())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "timed out: {} frames in, {} sent",
                    frames.len(),
                    backend.counts.frames_out.load(Ordering::Relaxed)
                )
            })
            .expect("socket");
        if let peer::Event::Frame { frame, .. } = e {
            frames.push(frame.data);
        }
    }
    // Every frame is one the backend sent, in order, from a keyframe on.
    let first = (0..clip().len())
        .find(|&i| played(i) == frames[0])
        .expect("a frame the backend sent");
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(f, played(first + k), "frame {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_over_http() {
    let (addr, backend, _mount) = start().await;
    let offer = b"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";
    // No token, a wrong one: 401 with a Bearer challenge.
    let r = http(addr, "POST", "/whip/a", &[SDP], offer).await;
    assert_eq!(r.status, 401);
    assert!(
        r.get("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer"))
    );
    let r = http(
        addr,
        "POST",
        "/whip/a",
        &[("Authorization", "Bearer nope"), SDP],
        offer,
    )
    .await;
    assert_eq!(r.status, 401);
    // Wrong media type; SDP the backend cannot answer (no m-line).
    let r = http(
        addr,
        "POST",
        "/whip/a",
        &[AUTH, ("Content-Type", "text/plain")],
        offer,
    )
    .await;
    assert_eq!(r.status, 415);
    let r = http(addr, "POST", "/whip/a", &[AUTH, SDP], b"garbage").await;
    assert_eq!(r.status, 400);
    let r = http(addr, "POST", "/whip/a", &[AUTH, SDP], offer).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    // Too big a body: 413.
    let big = vec![b'v'; 40 * 1024];
    let r = http(addr, "POST", "/whip/a", &[AUTH, SDP], &big).await;
    assert_eq!(r.status, 413);
    // Methods: 405 with Allow; OPTIONS is a CORS preflight (no token).
    let r = http(addr, "GET", "/whip/a", &[AUTH], b"").await;
    assert_eq!((r.status, r.get("allow")), (405, Some("POST, OPTIONS")));
    let r = http(addr, "OPTIONS", "/whep/a", &[], b"").await;
    assert_eq!(r.status, 204);
    assert_eq!(r.get("accept-post"), Some("application/sdp"));
    assert!(
        r.get("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    assert!(
        r.get("access-control-allow-headers")
            .is_some_and(|m| m.contains("Authorization"))
    );
    // Unknown sessions: 404.
    let r = http(addr, "DELETE", "/whip/resource/0123abcd", &[AUTH], b"").await;
    assert_eq!(r.status, 404);
    // At capacity: 503 with Retry-After.
    backend.full.store(true, Ordering::Relaxed);
    let r = http(addr, "POST", "/whip/a", &[AUTH, SDP], offer).await;
    assert_eq!((r.status, r.get("retry-after")), (503, Some("3")));
    // The rest of the server is unchanged: pages are still served.
    let r = http(addr, "GET", "/", &[], b"").await;
    assert_eq!(r.status, 200);
}

/// aiortc publishes through WHIP: one POST with its complete offer (no
/// trickle), its VP8 video counted by the backend, its data channel echoed,
/// its DELETE ending the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiortc_publishes_through_whip() {
    let python = std::env::var_os("RTCLAB_AIORTC_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| harness::root().join("target/interop-venv/bin/python"));
    let ok = std::process::Command::new(&python)
        .args(["-c", "import aiortc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        harness::skip(
            &format!("aiortc ({})", python.display()),
            "run scripts/test, which makes target/interop-venv with `pip install aiortc`",
        );
        return;
    }
    let (addr, backend, mount) = start().await;
    let script = harness::root().join("tests/interop/aiortc_whip.py");
    let mut f = harness::Foreign::start(
        "aiortc-whip",
        &python,
        &[
            script.display().to_string(),
            format!("http://{addr}"),
            TOKEN.into(),
            "aiortc".into(),
        ],
        &[],
    );
    let mut steps = Vec::new();
    let deadline = Duration::from_secs(60);
    while let Ok(Some(v)) = tokio::time::timeout(deadline, f.recv()).await {
        let done = v["step"] == "delete" || v["step"] == "error";
        steps.push(v);
        if done {
            break;
        }
    }
    let out = f.output();
    let step = |name: &str| steps.iter().find(|v| v["step"] == name).cloned();
    let post = step("post").unwrap_or_else(|| panic!("no POST: {steps:?}\n{out}"));
    assert_eq!(post["status"], 201, "{steps:?}\n{out}");
    assert_eq!(post["content_type"], "application/sdp");
    assert!(post["etag"].is_string());
    let echoed = step("echoed").unwrap_or_else(|| panic!("no echo: {steps:?}\n{out}"));
    assert_eq!(
        echoed["messages"],
        serde_json::json!(["hello 0", "hello 1", "hello 2"])
    );
    let frames = backend.counts.frames_in.load(Ordering::Relaxed);
    assert!(frames >= 10, "aiortc's video: {frames} frames\n{out}");
    let delete = step("delete").unwrap_or_else(|| panic!("no DELETE: {steps:?}\n{out}"));
    assert_eq!(delete["status"], 200);
    assert_eq!(mount.sessions(), 0);
    println!("aiortc published {frames} VP8 frames through WHIP");
}

/// Runs web/whip in headless Chromium in `mode` and returns its report.
async fn browser_page(mode: &str) -> Option<(serde_json::Value, Arc<TestBackend>)> {
    let (tx, mut reports) = mpsc::channel(4);
    let (addr, backend, mount) = start_reporting(Some(tx)).await;
    let url = format!("http://{addr}/wish/?mode={mode}&room=r1&token={TOKEN}&report=1");
    let browser = common::browser::launch(common::browser::BrowserKind::Chromium, &url)?;
    let body = tokio::time::timeout(Duration::from_secs(60), reports.recv())
        .await
        .unwrap_or_else(|_| panic!("no report from the {mode} page in 60 s"))
        .expect("a report");
    drop(browser);
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    eprintln!("{mode} page reported: {report}");
    assert_eq!(report["post"], 201, "{report:#}");
    assert_eq!(report["ok"], true, "{report:#}");
    assert_eq!(report["delete"], 200, "{report:#}");
    assert_eq!(mount.sessions(), 0);
    Some((report, backend))
}

/// Chromium publishes its fake camera through WHIP from a page that uses
/// only `fetch`, trickling its candidates with PATCH; the backend decodes
/// nothing but counts the frames it assembled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_through_whip() {
    let Some((report, backend)) = browser_page("publish").await else {
        return;
    };
    let patches = report["patches"].as_array().cloned().unwrap_or_default();
    assert!(!patches.is_empty(), "{report:#}");
    assert!(patches.iter().all(|s| s == 204), "{report:#}");
    let frames = backend.counts.frames_in.load(Ordering::Relaxed);
    assert!(
        frames >= 20,
        "the backend assembled {frames} frames: {report:#}"
    );
}

/// Chromium plays through WHEP (a recvonly offer) and decodes the
/// backend's VP8 clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_through_whep() {
    let Some((report, _)) = browser_page("play").await else {
        return;
    };
    assert!(report["frames"].as_u64().unwrap_or(0) >= 30, "{report:#}");
}

/// What the [`SetBackend`]'s task is asked.
enum SetCmd {
    Create {
        resource: ResourceId,
        offer: String,
        play: bool,
        reply: tokio::sync::oneshot::Sender<Result<String, whip::Error>>,
    },
    Candidate(ResourceId, String),
    End(ResourceId),
    Delete(ResourceId, tokio::sync::oneshot::Sender<bool>),
}

/// A backend the way the SFU is built: every session is a
/// `PeerConnection` in one `peer::PeerSet` on one UDP socket, driven by one
/// `runtime::Driver` in one task; the HTTP side talks to it by messages.
struct SetBackend {
    tx: mpsc::UnboundedSender<SetCmd>,
    counts: Arc<Counts>,
    /// The set's routing counters, as last seen by the task.
    stats: Arc<Mutex<(rtclab::peer::set::Stats, usize)>>,
}

impl SetBackend {
    async fn start() -> SetBackend {
        use rand::SeedableRng;
        use rtclab::peer::{self, PeerConnection, PeerKey, PeerSet, SdpType};
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let local = socket.local_addr().expect("addr");
        let mut driver =
            rtclab::runtime::Driver::from_sockets(PeerSet::new(), vec![socket]).expect("driver");
        let (tx, mut rx) = mpsc::unbounded_channel::<SetCmd>();
        let counts = Arc::new(Counts::default());
        let stats = Arc::new(Mutex::new(Default::default()));
        let (c, st) = (counts.clone(), stats.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(7);
            let mut sessions: HashMap<ResourceId, PeerKey> = HashMap::new();
            // Playing peers: key → (track, frames sent, connected).
            let mut players: HashMap<PeerKey, (rtclab::peer::TrackId, usize, bool)> =
                HashMap::new();
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tokio::select! {
                    cmd = rx.recv() => {
                        let Some(cmd) = cmd else { return };
                        let now = std::time::Instant::now();
                        match cmd {
                            SetCmd::Create { resource, offer, play, reply } => {
                                let cert = rtclab::dtls::cert::Certificate::generate(
                                    &mut rng,
                                    std::time::SystemTime::now(),
                                )
                                .expect("certificate");
                                let mut pc = PeerConnection::new(
                                    peer::Config::new(cert, vec![local]),
                                    rand::rngs::StdRng::seed_from_u64(rand::Rng::random(&mut rng)),
                                );
                                let track = if play {
                                    Some(pc.add_track(MediaKind::Video).expect("track"))
                                } else {
                                    None
                                };
                                let answer = pc
                                    .set_remote_description(now, SdpType::Offer, &offer)
                                    .and_then(|()| pc.create_answer())
                                    .and_then(|a| {
                                        pc.set_local_description(now, SdpType::Answer, &a).map(|()| a)
                                    });
                                let answer = match answer {
                                    Ok(a) => a,
                                    Err(e) => {
                                        let _ = reply.send(Err(whip::Error::BadSdp(e.to_string())));
                                        continue;
                                    }
                                };
                                let key = driver.machine_mut().insert(pc);
                                sessions.insert(resource, key);
                                if let Some(t) = track {
                                    players.insert(key, (t, 0, false));
                                }
                                let line = format!(
                                    "candidate:1 1 udp 2130706431 127.0.0.1 {} typ host",
                                    local.port()
                                );
                                let _ = reply.send(Ok(answer_with_candidates(&answer, &[line], true)));
                            }
                            SetCmd::Candidate(r, line) => {
                                if let Some(mut pc) = sessions.get(&r).and_then(|&k| driver.machine_mut().get_mut(k)) {
                                    let _ = pc.add_ice_candidate(now, &line);
                                }
                            }
                            SetCmd::End(r) => {
                                if let Some(mut pc) = sessions.get(&r).and_then(|&k| driver.machine_mut().get_mut(k)) {
                                    pc.add_end_of_candidates(now);
                                }
                            }
                            SetCmd::Delete(r, reply) => {
                                let key = sessions.remove(&r);
                                let found = key.is_some();
                                if let Some(k) = key {
                                    players.remove(&k);
                                    if let Some(mut pc) = driver.machine_mut().remove(k) {
                                        pc.close(now);
                                        c.closed.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                                let _ = reply.send(found);
                            }
                        }
                    }
                    _ = tick.tick() => {
                        let now = std::time::Instant::now();
                        for (&k, (track, sent, connected)) in players.iter_mut() {
                            if !*connected {
                                continue;
                            }
                            if let Some(mut pc) = driver.machine_mut().get_mut(k) {
                                let ts = (*sent as u32).wrapping_mul(3000);
                                if pc.send_frame(now, *track, ts, played(*sent)).is_ok() {
                                    *sent += 1;
                                    c.frames_out.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        let set = driver.machine();
                        *st.lock().expect("lock") = (set.stats(), set.tuple_count());
                    }
                    e = driver.next_event() => {
                        let Ok((key, e)) = e else { return };
                        match e {
                            peer::Event::ConnectionState(PeerConnectionState::Connected) => {
                                if let Some(p) = players.get_mut(&key) {
                                    p.2 = true;
                                }
                            }
                            peer::Event::Frame { .. } => {
                                c.frames_in.fetch_add(1, Ordering::Relaxed);
                            }
                            peer::Event::DataChannel(DcEvent::Message { channel, message: Message::Text(t) }) => {
                                if let Some(mut pc) = driver.machine_mut().get_mut(key) {
                                    let _ = pc.send_text(std::time::Instant::now(), channel, &t);
                                    c.echoed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
        });
        SetBackend { tx, counts, stats }
    }

    async fn create(
        &self,
        resource: ResourceId,
        offer: String,
        play: bool,
    ) -> Result<String, whip::Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx
            .send(SetCmd::Create {
                resource,
                offer,
                play,
                reply,
            })
            .map_err(|_| whip::Error::Internal("the peer set stopped".into()))?;
        answer
            .await
            .map_err(|_| whip::Error::Internal("the peer set stopped".into()))?
    }
}

impl Backend for SetBackend {
    fn publish(
        &self,
        resource: ResourceId,
        _room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, whip::Error>> {
        Box::pin(self.create(resource, offer, false))
    }

    fn play(
        &self,
        resource: ResourceId,
        _room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, whip::Error>> {
        Box::pin(self.create(resource, offer, true))
    }

    fn patch(
        &self,
        resource: ResourceId,
        frag: SdpFrag,
        restart: bool,
    ) -> BoxFuture<'_, Result<Option<SdpFrag>, whip::Error>> {
        Box::pin(async move {
            if restart {
                return Err(whip::Error::Unsupported("ICE restart"));
            }
            for (_, c) in frag.candidates() {
                let _ = self
                    .tx
                    .send(SetCmd::Candidate(resource.clone(), format!("a={c}")));
            }
            if frag.end_of_candidates() {
                let _ = self.tx.send(SetCmd::End(resource));
            }
            Ok(None)
        })
    }

    fn delete(&self, resource: ResourceId) -> BoxFuture<'_, Result<(), whip::Error>> {
        Box::pin(async move {
            let (reply, found) = tokio::sync::oneshot::channel();
            let _ = self.tx.send(SetCmd::Delete(resource, reply));
            match found.await {
                Ok(true) => Ok(()),
                _ => Err(whip::Error::NotFound),
            }
        })
    }
}

/// Both building blocks of the SFU together: two Chromiums, one publishing
/// through WHIP and one playing through WHEP, both served by
/// `PeerConnection`s of one `PeerSet` on one UDP port (routed by the ufrag
/// of their first checks, then by their validated 5-tuples).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_and_plays_through_one_peer_set() {
    let backend = Arc::new(SetBackend::start().await);
    let (tx, mut reports) = mpsc::channel(4);
    let (addr, mount) = serve(backend.clone(), Some(tx)).await;
    let mut browsers = Vec::new();
    for mode in ["publish", "play"] {
        let url = format!("http://{addr}/wish/?mode={mode}&room=r1&token={TOKEN}&report=1");
        match common::browser::launch(common::browser::BrowserKind::Chromium, &url) {
            Some(b) => browsers.push(b),
            None => return,
        }
    }
    let mut got = HashMap::new();
    while got.len() < 2 {
        let body = tokio::time::timeout(Duration::from_secs(60), reports.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of 2 pages reported in 60 s: {got:?}", got.len()))
            .expect("a report");
        let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
        eprintln!("page reported: {report}");
        got.insert(report["mode"].as_str().unwrap_or("").to_string(), report);
    }
    drop(browsers);
    let (stats, _) = *backend.stats.lock().expect("lock");
    eprintln!("peer set: {stats:?}");
    for mode in ["publish", "play"] {
        let r = &got[mode];
        assert_eq!(r["post"], 201, "{r:#}");
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["delete"], 200, "{r:#}");
    }
    let frames = backend.counts.frames_in.load(Ordering::Relaxed);
    assert!(
        frames >= 20,
        "the set assembled {frames} frames of the publisher"
    );
    assert!(
        stats.routed_by_ufrag >= 2 && stats.routed_by_tuple > 0,
        "{stats:?}"
    );
    assert_eq!(backend.counts.closed.load(Ordering::Relaxed), 2);
    assert_eq!(mount.sessions(), 0);
}
