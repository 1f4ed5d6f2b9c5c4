//! `rtclab demo` with a Rust client in the browser's role: it joins a room
//! over the signaling WebSocket, invites the demo's Rust peer with `POST
//! /report {"invite":…}`, offers (a VP8 camera track and the `chat` and
//! `photo` channels, as the page does), trickles candidates, and checks
//! what a visitor would see: its frames come back identical, the chat
//! echoes, a photo is acknowledged with the right SHA-256, the live panel
//! reports each layer; then the demo stops as on Ctrl-C and the client
//! sees the peer close. Bounded by timeouts; needs nothing installed.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
use rtclab::demo::{Config, Demo, Summary};
use rtclab::peer::{self, PeerConnectionState, TrackCodec};
use rtclab::runtime::LivePeer;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const LIMIT: Duration = Duration::from_secs(30);

async fn start_demo() -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Summary>,
) {
    let demo = Demo::bind(Config::new("127.0.0.1:0".parse().unwrap()))
        .await
        .expect("bind");
    let addr = demo.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        demo.run_until(async {
            let _ = stopped.await;
        })
        .await
        .expect("demo run")
    });
    (addr, stop, task)
}

/// `POST path` with `body` over a fresh TCP connection; the status code.
async fn post(addr: SocketAddr, path: &str, body: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Default, Debug)]
struct Seen {
    chat: Vec<String>,
    photo_ack: Option<Value>,
    frames_back: usize,
    frames_wrong: usize,
    stats: Option<Value>,
    closed: bool,
    bye: bool,
}

/// One visitor session; `video`: whether the "browser" has a camera.
/// Keeps only H.264 (and its RTX) on the offer's video m-line, as a
/// client without VP8 writes it.
fn h264_only(offer: &str) -> String {
    let mut drop = Vec::new();
    let mut keep_h264 = Vec::new();
    for l in offer.lines() {
        if let Some(rest) = l.strip_prefix("a=rtpmap:") {
            let (pt, name) = rest.split_once(' ').expect("rtpmap");
            if name.starts_with("H264/") {
                keep_h264.push(pt.to_string());
            } else if name.starts_with("VP8/") || name.starts_with("VP9/") {
                drop.push(pt.to_string());
            }
        }
    }
    for l in offer.lines() {
        if let Some(rest) = l.strip_prefix("a=fmtp:")
            && let Some((pt, params)) = rest.split_once(' ')
            && let Some(apt) = params.strip_prefix("apt=")
            && !keep_h264.iter().any(|k| k == apt)
        {
            drop.push(pt.to_string());
        }
    }
    let dropped = |pt: &str| drop.iter().any(|d| d == pt);
    let mut out = String::new();
    for l in offer.lines() {
        let pt_of = |prefix: &str| {
            l.strip_prefix(prefix)
                .and_then(|r| r.split([' ', ':']).next())
                .map(str::to_string)
        };
        let named = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
            .iter()
            .find_map(|p| pt_of(p));
        if named.as_deref().is_some_and(dropped) {
            continue;
        }
        if l.starts_with("m=video ") {
            let mut parts: Vec<&str> = l.split(' ').collect();
            parts.retain(|p| !dropped(p));
            out.push_str(&parts.join(" "));
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out
}

/// How the visitor's call is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The visitor offers (as the page does).
    Offer,
    /// The visitor offers its camera `sendonly`: it wants no video back.
    OfferSendOnly,
    /// The visitor only answers: it sends `offer-request`.
    AskOffer,
}

async fn visit(video: Option<TrackCodec>) {
    visit_as(video, Mode::Offer).await;
}

/// `offer` with its video m-line `sendonly`.
fn send_only(offer: &str) -> String {
    let mut in_video = false;
    let mut out = String::new();
    for l in offer.lines() {
        if l.starts_with("m=") {
            in_video = l.starts_with("m=video ");
        }
        if in_video && l == "a=sendrecv" {
            out.push_str("a=sendonly");
        } else {
            out.push_str(l);
        }
        out.push_str("\r\n");
    }
    out
}

async fn visit_as(video: Option<TrackCodec>, mode: Mode) {
    let (addr, stop, task) = start_demo().await;
    let page = get(addr, "/").await;
    assert!(
        page.contains("200 OK") && page.contains("rtclab demo"),
        "{page}"
    );
    assert!(get(addr, "/demo/demo.js").await.contains("200 OK"));

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("websocket");
    let room = match (video, mode) {
        (_, Mode::AskOffer) => "rust-ask-offer",
        (_, Mode::OfferSendOnly) => "rust-sendonly",
        (Some(TrackCodec::H264), _) => "rust-h264",
        (Some(_), _) => "rust-video",
        (None, _) => "rust-data",
    };
    let join = json!({"type": "create or join", "room": room});
    ws.send(WsMessage::text(join.to_string()))
        .await
        .expect("ws");

    let mut peer = LivePeer::bind(
        LivePeer::config().expect("cert"),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("bind");
    let track = video.map(|codec| {
        peer.connection_mut()
            .add_track_with_codec(codec)
            .expect("track")
    });
    // The offerer makes the channels: we, or the demo after
    // `offer-request` (then they are known when they open).
    let (mut chat, mut photo_ch) = (None, None);
    if mode != Mode::AskOffer {
        chat = Some(
            peer.create_data_channel(ChannelInit::new("chat"))
                .expect("chat"),
        );
        photo_ch = Some(
            peer.create_data_channel(ChannelInit::new("photo"))
                .expect("photo"),
        );
    }
    let mut answer_seen = String::new();
    let photo: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut frames_sent: Vec<Vec<u8>> = Vec::new();
    let mut seen = Seen::default();
    let mut connected = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(33));

    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            let done = seen.chat.iter().any(|t| t == "echo: hello rust")
                && seen.photo_ack.is_some()
                && (video.is_none()
                    || if mode == Mode::OfferSendOnly {
                        seen.stats.as_ref().is_some_and(|s| s["frames"]["in"].as_u64() >= Some(10))
                    } else {
                        seen.frames_back >= 10
                    })
                && seen.stats.as_ref().is_some_and(|s| s["sctp"] == "Established");
            if done {
                break;
            }
            tokio::select! {
                m = ws.next() => {
                    let text = match m {
                        Some(Ok(WsMessage::Text(text))) => text,
                        // The server's keepalive pings (tungstenite answers them).
                        Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                        m => panic!("websocket ended: {m:?}"),
                    };
                    let m: Value = serde_json::from_str(text.as_str()).expect("json");
                    match m["type"].as_str() {
                        Some("created") => {
                            let body = json!({"invite": room}).to_string();
                            assert_eq!(post(addr, "/report", &body).await, 204);
                        }
                        Some("ready") if mode == Mode::AskOffer => {
                            let msg = json!({"type": "message", "data": {"type": "offer-request"}});
                            ws.send(WsMessage::text(msg.to_string())).await.expect("ws");
                        }
                        Some("ready") => {
                            let mut offer = peer.offer().expect("offer");
                            if mode == Mode::OfferSendOnly {
                                offer = send_only(&offer);
                            }
                            if video == Some(TrackCodec::H264) {
                                // What a client without VP8 would offer; the
                                // answer to it is a subset of ours.
                                offer = h264_only(&offer);
                            }
                            let msg = json!({"type": "message", "data": {"type": "offer", "sdp": offer}});
                            ws.send(WsMessage::text(msg.to_string())).await.expect("ws");
                        }
                        Some("message") => {
                            let d = &m["data"];
                            match d["type"].as_str() {
                                Some("answer") => {
                                    answer_seen = d["sdp"].as_str().expect("sdp").to_string();
                                    peer.accept_answer(&answer_seen).expect("answer");
                                }
                                Some("offer") if mode == Mode::AskOffer => {
                                    let answer = peer.answer(d["sdp"].as_str().expect("sdp")).expect("our answer");
                                    let msg = json!({"type": "message", "data": {"type": "answer", "sdp": answer}});
                                    ws.send(WsMessage::text(msg.to_string())).await.expect("ws");
                                }
                                Some("candidate") => match d["candidate"].as_str() {
                                    Some("") => peer.add_end_of_candidates(),
                                    Some(c) => peer.add_ice_candidate(c).expect("candidate"),
                                    None => panic!("{d}"),
                                },
                                Some("stats") => seen.stats = Some(d.clone()),
                                Some("error") => panic!("the demo's peer failed: {d}"),
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
                e = peer.next_event() => match e.expect("io") {
                    peer::Event::LocalCandidate(c) => {
                        let msg = json!({"type": "message", "data": {"type": "candidate",
                            "candidate": c.to_string(), "sdpMid": "0", "sdpMLineIndex": 0}});
                        ws.send(WsMessage::text(msg.to_string())).await.expect("ws");
                    }
                    peer::Event::ConnectionState(PeerConnectionState::Connected) => connected = true,
                    peer::Event::DataChannel(DcEvent::Open(id)) => {
                        let label = peer.connection().data_channels()
                            .and_then(|dc| dc.channel(id)).map(|c| c.label().to_string());
                        if label.as_deref() == Some("chat") {
                            chat = Some(id);
                            peer.send_text(id, "hello rust").expect("chat");
                        } else if label.as_deref() == Some("photo") {
                            photo_ch = Some(id);
                            let header = json!({"type": "photo", "bytes": photo.len(), "sha256": sha256_hex(&photo)});
                            peer.send_text(id, &header.to_string()).expect("header");
                            for c in photo.chunks(16 * 1024) {
                                peer.send_binary(id, c).expect("chunk");
                            }
                        }
                    }
                    peer::Event::DataChannel(DcEvent::Message { channel, message: Message::Text(t) }) => {
                        if Some(channel) == chat {
                            seen.chat.push(t);
                        } else if Some(channel) == photo_ch {
                            seen.photo_ack = Some(serde_json::from_str(&t).expect("ack json"));
                        }
                    }
                    peer::Event::Frame { frame, .. } => {
                        if frames_sent.contains(&frame.data) {
                            seen.frames_back += 1;
                        } else {
                            seen.frames_wrong += 1;
                        }
                    }
                    peer::Event::Error(e) => panic!("client peer failed: {e}"),
                    _ => {}
                },
                _ = ticker.tick() => {
                    if let (true, Some(t)) = (connected, track) {
                        let n = frames_sent.len() as u32;
                        let mut f = vec![0x10u8; 1500 + (n as usize % 7) * 400];
                        if video == Some(TrackCodec::H264) {
                            // A keyframe access unit, Annex-B: SPS, PPS and an
                            // IDR slice carrying its number in ASCII (no zero
                            // bytes, so no start code inside it).
                            let head = [
                                0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1F, 0, 0, 0, 1, 0x68, 0xCE,
                                0x3C, 0x80, 0, 0, 0, 1, 0x65, 0x88,
                            ];
                            f[..head.len()].copy_from_slice(&head);
                            f[head.len()..head.len() + 8]
                                .copy_from_slice(format!("{n:08}").as_bytes());
                        } else {
                            // A VP8 keyframe-looking payload (P bit 0), a new one each time.
                            f[1..5].copy_from_slice(&n.to_be_bytes());
                        }
                        peer.send_frame(t, n * 3000, &f).expect("frame");
                        frames_sent.push(f);
                    }
                }
            }
        }
    })
    .await;
    assert!(outcome.is_ok(), "not done within {LIMIT:?}: {seen:#?}");
    assert_eq!(seen.frames_wrong, 0, "{seen:#?}");
    if mode == Mode::OfferSendOnly {
        // RFC 3264 §6.1: a sendonly stream is answered recvonly, and the
        // demo made no track that would fail to send.
        let video_section = answer_seen
            .split("m=")
            .find(|m| m.starts_with("video "))
            .expect("a video m-line in the answer");
        assert!(video_section.contains("a=recvonly"), "{answer_seen}");
        assert_eq!(seen.frames_back, 0, "{seen:#?}");
    }
    let ack = seen.photo_ack.clone().expect("ack");
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["bytes"], photo.len(), "{ack}");
    assert_eq!(ack["sha256"], sha256_hex(&photo), "{ack}");
    assert!(
        seen.chat[0].starts_with("Hello from the Rust peer"),
        "{:?}",
        seen.chat
    );
    let stats = seen.stats.clone().expect("stats");
    assert_eq!(stats["connection"], "Connected", "{stats}");
    assert!(stats["pair"]["local"].as_str().is_some(), "{stats}");
    assert!(
        stats["dtls_suite"]
            .as_str()
            .is_some_and(|s| s.starts_with("TLS_ECDHE_ECDSA_WITH_")),
        "{stats}"
    );
    if video.is_some() {
        assert!(
            stats["srtp"]
                .as_str()
                .is_some_and(|s| s.starts_with("SRTP_")),
            "{stats}"
        );
    }
    eprintln!("live panel: {stats}");

    // Ctrl-C: the demo closes its peer (close_notify) and leaves the room.
    stop.send(()).expect("stop");
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while !(seen.closed && seen.bye) {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(WsMessage::Text(t))) if t.as_str().contains("\"bye\"") => seen.bye = true,
                    Some(Ok(_)) => {}
                    _ => seen.bye = true,
                },
                e = peer.next_event() => {
                    if let Ok(peer::Event::ConnectionState(PeerConnectionState::Closed)) = e {
                        seen.closed = true;
                    }
                }
            }
        }
    })
    .await;
    assert!(seen.closed, "the client never saw the demo's close_notify");
    assert!(seen.bye, "the room never heard bye");
    let summary = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the demo stops")
        .expect("task");
    assert_eq!(summary.sessions, 1);
}

#[tokio::test]
async fn a_visitor_with_a_camera_gets_video_chat_photo_and_the_panel() {
    visit(Some(TrackCodec::Vp8)).await;
}

/// A client whose only video codec is H.264 (no VP8) gets its video back
/// in H.264: the demo's track takes the codec the offer leads with.
#[tokio::test]
async fn a_visitor_offering_only_h264_gets_its_video_back() {
    visit(Some(TrackCodec::H264)).await;
}

/// A visitor that sends its camera but wants no video back is answered
/// `recvonly`: the demo receives the frames and sends none, with no error.
#[tokio::test]
async fn a_visitor_sending_only_gets_a_recvonly_answer() {
    visit_as(Some(TrackCodec::Vp8), Mode::OfferSendOnly).await;
}

/// A client that only answers asks the demo to offer (`offer-request`):
/// it gets the demo's VP8 track reflecting its video, and the chat and
/// photo channels the page would have made.
#[tokio::test]
async fn a_client_that_only_answers_gets_an_offer() {
    visit_as(Some(TrackCodec::Vp8), Mode::AskOffer).await;
}

#[tokio::test]
async fn a_visitor_without_a_camera_gets_a_data_only_session() {
    visit(None).await;
}

#[tokio::test]
async fn bad_invitations_are_refused_and_other_reports_pass_through() {
    let (reports, mut reported) = tokio::sync::mpsc::channel(4);
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.reports = Some(reports);
    config.max_sessions = 0;
    let demo = Demo::bind(config).await.expect("bind");
    let addr = demo.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(demo.run_until(async {
        let _ = stopped.await;
    }));
    assert_eq!(
        post(addr, "/report", r#"{"invite":"bad room!"}"#).await,
        204
    );
    // At the limit, the visitor is told why no peer comes.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .expect("websocket");
    let join = json!({"type": "create or join", "room": "fine"});
    ws.send(WsMessage::text(join.to_string()))
        .await
        .expect("ws");
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = ws.next().await {
            let WsMessage::Text(t) = m else { continue };
            let m: Value = serde_json::from_str(t.as_str()).expect("json");
            if m["type"] == "created" {
                assert_eq!(post(addr, "/report", r#"{"invite":"fine"}"#).await, 204);
            }
            if m["type"] == "message" && m["data"]["type"] == "error" {
                return m["data"]["message"].as_str().unwrap_or("").to_string();
            }
        }
        String::new()
    })
    .await
    .expect("an explanation in time");
    assert!(told.contains("limit"), "{told}");
    assert_eq!(post(addr, "/report", r#"{"frames":3}"#).await, 204);
    let r = tokio::time::timeout(Duration::from_secs(5), reported.recv())
        .await
        .expect("a report");
    assert_eq!(r.as_deref(), Some(r#"{"frames":3}"#));
    stop.send(()).expect("stop");
    let summary = task.await.expect("task").expect("run");
    assert_eq!(
        summary,
        Summary {
            sessions: 0,
            refused: 2
        }
    );
}
