//! `rtclab demo` with a real browser: headless Chromium (and Firefox ESR)
//! opens the demo page with `?autotest=1`; the page calls the demo's Rust
//! peer with its fake camera, sends a chat line and a snapshot, counts the
//! video frames that come back reflected, and POSTs the result to
//! `/report`, which the demo hands to this test. A missing browser is a
//! loud skip (a failure under `RTCLAB_REQUIRE_INTEROP=1`); the browser's
//! output is printed on failure.

mod common;

use std::time::Duration;

use common::browser::{BrowserKind, launch};
use common::demo::DemoServer;
use rtclab::demo::Config;
use rtclab::signaling::Page;
use serde_json::Value;

async fn autotest(kind: BrowserKind, query: &str) -> Option<Value> {
    let mut demo = DemoServer::on_loopback().await;
    let (browser, report) = demo.autotest(kind, query).await?;
    drop(browser);
    let summary = demo.stop().await;
    assert_eq!(summary.sessions, 1);
    Some(report)
}

fn check_video(report: &Value) {
    assert_eq!(report["camera"], true, "{report:#}");
    let back = report["framesBack"].as_u64().unwrap_or(0);
    let decoded = report["browser"]["framesDecoded"].as_u64().unwrap_or(0);
    assert!(
        back.max(decoded) >= 30,
        "too few reflected frames: {report:#}"
    );
    let rust = &report["rust"];
    assert!(
        rust["frames"]["out"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    assert!(rust["srtp"].as_str().is_some(), "{report:#}");
}

fn check_data(report: &Value) {
    assert_eq!(report["chatEcho"], "echo: hello rust", "{report:#}");
    assert_eq!(report["photoAck"]["ok"], true, "{report:#}");
    assert!(
        report["photoAck"]["bytes"].as_u64().unwrap_or(0) > 1000,
        "{report:#}"
    );
}

#[tokio::test]
async fn chromium_video_comes_back_reflected() {
    if let Some(r) = autotest(BrowserKind::Chromium, "&need=video").await {
        check_video(&r);
    }
}

#[tokio::test]
async fn chromium_video_reflected_chat_and_photo() {
    if let Some(r) = autotest(BrowserKind::Chromium, "").await {
        check_video(&r);
        check_data(&r);
    }
}

#[tokio::test]
async fn chromium_without_a_camera_gets_chat_and_photo() {
    if let Some(r) = autotest(BrowserKind::Chromium, "&nocam=1&need=chat,photo").await {
        assert_eq!(r["camera"], false, "{r:#}");
        check_data(&r);
    }
}

/// `?offer=rust`: the page asks the Rust peer to offer (`offer-request`)
/// and answers; the camera still comes back reflected, chat and photo work.
#[tokio::test]
async fn chromium_answers_the_rust_peers_offer() {
    if let Some(r) = autotest(BrowserKind::Chromium, "&offer=rust").await {
        assert_eq!(r["rustOffered"], true, "{r:#}");
        check_video(&r);
        check_data(&r);
    }
}

#[tokio::test]
async fn firefox_video_reflected_chat_and_photo() {
    if let Some(r) = autotest(BrowserKind::Firefox, "").await {
        check_video(&r);
        check_data(&r);
    }
}

#[tokio::test]
async fn firefox_without_a_camera_gets_chat_and_photo() {
    if let Some(r) = autotest(BrowserKind::Firefox, "&nocam=1&need=chat,photo").await {
        assert_eq!(r["camera"], false, "{r:#}");
        check_data(&r);
    }
}

/// Two tabs of the call mode (codelab step 8) side by side.
const TWO_TABS: &str = r#"<!doctype html>
<title>two tabs</title>
<iframe allow="camera" width="640" height="480" src="/demo/?call=tabs&autotest=1"></iframe>
<iframe allow="camera" width="640" height="480" src="/demo/?call=tabs&autotest=1"></iframe>
"#;

/// The second mode: two Chromium tabs in one room call each other through
/// the demo's signaling (browser to browser; no Rust peer in the media).
#[tokio::test]
async fn two_chromium_tabs_call_each_other() {
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.pages.push(Page {
        path: "/test/tabs.html",
        content_type: "text/html; charset=utf-8",
        body: TWO_TABS.as_bytes(),
    });
    let mut demo = DemoServer::start(config).await;
    let url = format!("http://{}/test/tabs.html", demo.addr);
    let Some(mut browser) = launch(BrowserKind::Chromium, &url) else {
        return;
    };
    let mut got = Vec::new();
    let mut both = |r: &Value| {
        got.push(r.clone());
        got.len() == 2
    };
    let limit = Duration::from_secs(60);
    browser
        .report(&mut demo.reported, limit, "second tab's report", &mut both)
        .await;
    drop(browser);
    for r in &got {
        assert_eq!(r["mode"], "call", "{r:#}");
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["chatEcho"], "hello rust", "{r:#}");
    }
    let summary = demo.stop().await;
    assert_eq!(summary.sessions, 0, "no Rust peer in a tab-to-tab call");
}
