//! Headless Chromium, relay only (`iceTransportPolicy: "relay"`), through
//! `rtclab turn-server` over UDP and over TCP (RFC 8656 §3.1), calls a Rust
//! `PeerConnection` on 127.0.0.1: a data-channel message goes each way, and
//! the pair the browser selected is a relayed candidate of the protocol
//! asked (`relayProtocol` in getStats). The page is `tests/pages/turn.*`,
//! the Rust side `tests/common/rtc.rs`. The server runs with
//! `--allow-loopback-peers`: the Rust peer's host candidate is on loopback.
//! Each run is bounded (60 s) and prints the page's trail, the signaling
//! trace and both processes' output on failure; a missing browser is a loud
//! skip (a failure under `RTCLAB_REQUIRE_INTEROP=1`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::browser::{BrowserKind, launch};
use common::rtc::RtcPeer;
use common::{Peer, free_udp_port, wait_for_stun};
use rtclab::datachannel::{Event as DcEvent, Message};
use rtclab::peer;
use rtclab::signaling::{Config, Page, Server};
use serde_json::Value;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pages() -> Vec<Page> {
    vec![
        Page {
            path: "/test/turn.html",
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("pages/turn.html"),
        },
        Page {
            path: "/test/turn.js",
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("pages/turn.js"),
        },
    ]
}

/// `rtclab turn-server` on 127.0.0.1:`port`, UDP and TCP.
fn start_turn_server(port: u16) -> Peer {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_rtclab"));
    let args: Vec<String> = [
        "turn-server",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--user",
        "alice:secret",
        "--allow-loopback-peers",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let peer = Peer::start("rtclab-turn-server", &bin, &args);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        wait_for_stun(addr, Duration::from_secs(10)),
        "our TURN server did not answer on {addr}:\n{}",
        peer.output()
    );
    peer
}

/// Runs one relay-only call over `transport` ("udp" or "tcp") and returns
/// the page's report; `None` when Chromium is missing.
async fn relay_only(transport: &str) -> Option<Value> {
    let _one_at_a_time = BROWSER.lock().await;
    let port = free_udp_port(false);
    let turn = start_turn_server(port);

    let (reports, mut reported) = mpsc::channel(1024);
    let mut config = Config::default();
    config.report_to = Some(reports);
    config.pages.extend(pages());
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let handle = server.handle();
    tokio::spawn(server.run());

    let room = format!("turn-{transport}");
    let mut rtc = RtcPeer::join(&handle, &room, 42, |_| {}).await;
    let turn_url = format!("turn:127.0.0.1:{port}?transport={transport}");
    let url = format!(
        "http://{addr}/test/turn.html?room={room}&turn={}&user=alice&pass=secret",
        turn_url.replace('?', "%3F").replace('=', "%3D")
    );
    let mut browser = launch(BrowserKind::Chromium, &url)?;

    let mut report: Option<Value> = None;
    let mut notes: Vec<String> = Vec::new();
    let mut page_message = None;
    let deadline = tokio::time::Instant::now() + LIMIT;
    let failure = loop {
        tokio::select! {
            e = rtc.next() => match e {
                Ok(peer::Event::DataChannel(DcEvent::Message { channel, message: Message::Text(t) })) => {
                    let now = std::time::Instant::now();
                    let r = rtc.pc().send_text(now, channel, &format!("echo: {t}"))
                        .and_then(|()| rtc.pc().send_text(now, channel, "hello from rust"));
                    if let Err(e) = r {
                        break Some(format!("Rust side: send: {e}"));
                    }
                    page_message = Some(t);
                }
                Ok(peer::Event::Error(e)) => break Some(format!("Rust side: error event: {e}")),
                Ok(_) => {}
                Err(e) => break Some(format!("Rust side: {e}")),
            },
            r = reported.recv() => {
                let Some(body) = r else { break Some("report channel closed".into()) };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                if let Some(n) = v["note"].as_str() {
                    notes.push(n.to_string());
                } else {
                    let ok = v["ok"] == Value::Bool(true);
                    report = Some(v);
                    if ok { break None; }
                    break Some("the page reported a failure".into());
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(status) = browser.process.wait_exit(Duration::ZERO) {
                    break Some(format!("Chromium exited early: {status}"));
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            break Some(format!("not done within {LIMIT:?}"));
        }
    };
    if let Some(f) = failure {
        notes.sort_by_key(|n| {
            n.split_whitespace()
                .next()
                .and_then(|t| t.parse::<u64>().ok())
        });
        panic!(
            "relay only over {transport}: {f}\n--- page report ---\n{}\n--- page trail ---\n{}\n--- Rust signaling trace ---\n{}\n--- TURN server ---\n{}",
            report.map(|r| r.to_string()).unwrap_or_default(),
            notes.join("\n"),
            rtc.trace_text(),
            turn.output(),
        );
    }
    assert_eq!(page_message.as_deref(), Some("ping from the page"));
    drop(browser);
    handle.shutdown();
    report
}

fn check(report: &Value, transport: &str) {
    eprintln!("relay only over {transport}: selected pair {report}");
    let local = &report["local"];
    assert_eq!(local["candidateType"], "relay", "{report}");
    assert_eq!(local["relayProtocol"], transport, "{report}");
    let messages = report["messages"].as_array().expect("messages");
    assert!(messages.iter().any(|m| m == "echo: ping from the page"));
    assert!(messages.iter().any(|m| m == "hello from rust"));
}

#[tokio::test]
async fn chromium_relay_only_over_udp() {
    if let Some(r) = relay_only("udp").await {
        check(&r, "udp");
    }
}

#[tokio::test]
async fn chromium_relay_only_over_tcp() {
    if let Some(r) = relay_only("tcp").await {
        check(&r, "tcp");
    }
}
