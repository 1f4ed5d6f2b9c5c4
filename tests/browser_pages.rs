//! The codelab's pages (`web/04_camera` … `web/09_photo`, one per step of
//! the book) in headless Chromium and in headless Firefox ESR, each with
//! its fake camera: each page runs its step with `?report=1` and POSTs
//! what it saw to `/report`, which the test reads. One browser start per
//! page and browser; every page runs in both. Step 7's page has its own test
//! (tests/signaling_browser.rs). A missing browser is a loud skip (a
//! failure under `RTCLAB_REQUIRE_INTEROP=1`); the browser's output is
//! printed on failure.

mod common;

use std::time::Duration;

use common::browser::{BrowserKind, launch};
use rtclab::signaling::{Config, Page, Server};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// Waits for `n` reports from the browser `kind` at `url` (at most 60 s).
async fn reports(
    kind: BrowserKind,
    url: &str,
    reported: &mut mpsc::Receiver<String>,
    n: usize,
) -> Option<Vec<Value>> {
    let mut browser = launch(kind, url)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut got: Vec<Value> = Vec::new();
    while got.len() < n {
        match tokio::time::timeout(Duration::from_millis(500), reported.recv()).await {
            Ok(Some(body)) => {
                let v: Value = serde_json::from_str(&body).expect("a JSON report");
                // The demo's own invitations are not reports.
                if v.get("invite").is_none() {
                    got.push(v);
                }
            }
            _ => {
                let exited = browser.process.wait_exit(Duration::ZERO);
                assert!(
                    exited.is_none() && tokio::time::Instant::now() < deadline,
                    "{} of {n} reports from {url} within 60 s (exited: {exited:?}): {got:?}",
                    got.len()
                );
            }
        }
    }
    drop(browser);
    eprintln!("{} at {url} reported: {got:?}", kind.name());
    Some(got)
}

/// Runs `path` in `kind` on a signaling server (with `extra` pages) and
/// returns its `n` reports.
async fn on_signaling(
    kind: BrowserKind,
    path: &str,
    extra: &[Page],
    n: usize,
) -> Option<Vec<Value>> {
    let (tx, mut rx) = mpsc::channel(8);
    let mut config = Config::default();
    config.report_to = Some(tx);
    config.pages.extend_from_slice(extra);
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let handle = server.handle();
    tokio::spawn(server.run());
    let got = reports(kind, &format!("http://{addr}{path}"), &mut rx, n).await;
    handle.shutdown();
    got
}

/// Step 4: the camera plays in the `<video>` and its frames are redrawn as
/// ASCII art.
async fn step4_camera_plays_and_draws_ascii(kind: BrowserKind) {
    let Some(r) = on_signaling(kind, "/04_camera/?report=1", &[], 1).await else {
        return;
    };
    let r = &r[0];
    assert_eq!(r["error"], Value::Null, "{r}");
    assert!(r["frames"].as_u64().unwrap() >= 30, "{r}");
    assert!(r["width"].as_u64().unwrap() > 0, "{r}");
    let ascii = r["ascii"].as_str().unwrap();
    assert_eq!(ascii.lines().count(), 36, "{ascii}");
    assert!(ascii.lines().all(|l| l.chars().count() == 64), "{ascii}");
    let mut shades: Vec<char> = ascii.chars().filter(|c| *c != '\n').collect();
    shades.sort();
    shades.dedup();
    match kind {
        // A picture, not a blank: Chromium's fake camera draws a pattern,
        // so several shades of the ramp appear.
        BrowserKind::Chromium => assert!(shades.len() >= 3, "{ascii}"),
        // Firefox's fake camera is one flat colour that changes over time:
        // one shade, but not the black of a canvas nothing was drawn on.
        BrowserKind::Firefox => assert!(shades.iter().any(|c| *c != ' '), "{ascii}"),
    }
}

/// Step 5: two peer connections in one page; the receiving one decodes the
/// camera's frames.
async fn step5_video_between_two_peer_connections(kind: BrowserKind) {
    let Some(r) = on_signaling(kind, "/05_peerconnection/?auto=1&report=1", &[], 1).await else {
        return;
    };
    let r = &r[0];
    assert!(r["framesDecoded"].as_u64().unwrap() >= 30, "{r}");
    assert!(r["width"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(
        r["signaling"],
        serde_json::json!(["stable", "stable"]),
        "{r}"
    );
}

/// Step 6: a message over a data channel between two peer connections in
/// one page.
async fn step6_text_over_a_data_channel(kind: BrowserKind) {
    let Some(r) = on_signaling(
        kind,
        "/06_datachannel/?say=hello%20channel&report=1",
        &[],
        1,
    )
    .await
    else {
        return;
    };
    let r = &r[0];
    assert_eq!(r["received"], "hello channel", "{r}");
    assert_eq!(r["label"], "sendDataChannel", "{r}");
    assert_eq!(r["sctp"]["state"], "connected", "{r}");
}

/// Step 8's two tabs: the second is loaded from the first's invite link.
const CALL_TABS: &str = r#"<!doctype html>
<title>two tabs</title>
<iframe id="a" allow="camera" width="400" height="400" src="/08_call/?report=1"></iframe>
<iframe id="b" allow="camera" width="400" height="400"></iframe>
<script>
const wait = setInterval(() => {
  const link = document.getElementById('a').contentDocument?.getElementById('invite-link');
  if (link && link.value) {
    clearInterval(wait);
    document.getElementById('b').src = link.value + '&report=1';
  }
}, 100);
</script>
"#;

/// Step 8 between two tabs: each decodes the other's camera.
async fn step8_call_between_two_tabs_by_invite_link(kind: BrowserKind) {
    let page = Page {
        path: "/test/call.html",
        content_type: "text/html; charset=utf-8",
        body: CALL_TABS.as_bytes(),
    };
    let Some(got) = on_signaling(kind, "/test/call.html", &[page], 2).await else {
        return;
    };
    assert_eq!(got[0]["room"], got[1]["room"]);
    for r in &got {
        assert_eq!(r["rust"], false, "{r}");
        assert!(r["framesDecoded"].as_u64().unwrap() >= 30, "{r}");
        assert_eq!(r["connection"], "connected", "{r}");
    }
}

/// Step 9's two tabs: the first opens a new room; the second is loaded from
/// the first's invite link (as a reader pastes it), with the test hook.
const PHOTO_TABS: &str = r#"<!doctype html>
<title>two tabs</title>
<iframe id="a" allow="camera" width="400" height="400" src="/09_photo/?report=1"></iframe>
<iframe id="b" allow="camera" width="400" height="400"></iframe>
<script>
const wait = setInterval(() => {
  const link = document.getElementById('a').contentDocument?.getElementById('invite-link');
  if (link && link.value) {
    clearInterval(wait);
    document.getElementById('b').src = link.value + '&report=1';
  }
}, 100);
</script>
"#;

/// Step 9: a photo (its RGBA pixels, as the codelab sends them) from the
/// first tab to the second over the "photo" data channel, in 16 KiB
/// pieces: it arrives whole (size and SHA-256, width × height × 4 bytes),
/// and the sender gets the receiver's acknowledgement.
async fn step9_photo_between_two_tabs_by_invite_link(kind: BrowserKind) {
    let page = Page {
        path: "/test/photo.html",
        content_type: "text/html; charset=utf-8",
        body: PHOTO_TABS.as_bytes(),
    };
    let Some(got) = on_signaling(kind, "/test/photo.html", &[page], 2).await else {
        return;
    };
    let sender = got.iter().find(|r| r["role"] == "sender").expect("sender");
    let receiver = got
        .iter()
        .find(|r| r["role"] == "receiver")
        .expect("receiver");
    assert_eq!(sender["room"], receiver["room"]);
    let bytes = sender["sent"]["bytes"].as_u64().unwrap();
    let (w, h) = (
        sender["sent"]["width"].as_u64().unwrap(),
        sender["sent"]["height"].as_u64().unwrap(),
    );
    assert!(w > 0 && h > 0, "{sender}");
    assert_eq!(bytes, w * h * 4, "{sender}");
    assert_eq!(receiver["ok"], true, "{receiver}");
    assert_eq!(receiver["bytes"].as_u64(), Some(bytes), "{receiver}");
    assert_eq!(
        receiver["chunks"].as_u64(),
        Some(bytes.div_ceil(16 * 1024)),
        "{receiver}"
    );
    assert_eq!(receiver["width"], sender["sent"]["width"], "{receiver}");
    assert_eq!(receiver["height"], sender["sent"]["height"], "{receiver}");
    assert_eq!(sender["ack"]["ok"], true, "{sender}");
    assert_eq!(sender["ack"]["bytes"].as_u64(), Some(bytes), "{sender}");
}

/// Runs `path` in `kind` on `rtclab demo` (its Rust peers, `extra` pages)
/// and returns the `n` reports and how many Rust peers the demo started.
async fn on_demo(
    kind: BrowserKind,
    path: &str,
    extra: &[Page],
    n: usize,
) -> Option<(Vec<Value>, usize)> {
    use rtclab::demo::{Config, Demo};
    let (tx, mut rx) = mpsc::channel(8);
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.reports = Some(tx);
    config.pages.extend_from_slice(extra);
    let demo = Demo::bind(config).await.expect("bind");
    let addr = demo.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(demo.run_until(async {
        let _ = stopped.await;
    }));
    let got = reports(kind, &format!("http://{addr}{path}"), &mut rx, n).await;
    let _ = stop.send(());
    let summary = task.await.expect("task").expect("run");
    got.map(|g| (g, summary.sessions))
}

/// Step 8 with the Rust peer: the page, served by `rtclab demo`, invites
/// the demo's Rust peer into its room, offers its camera, and decodes the
/// frames the Rust peer sends back.
async fn step8_call_with_the_demos_rust_peer(kind: BrowserKind) {
    let Some((r, sessions)) = on_demo(kind, "/08_call/?peer=rust&report=1", &[], 1).await else {
        return;
    };
    let r = &r[0];
    assert_eq!(r["rust"], true, "{r}");
    assert!(r["framesDecoded"].as_u64().unwrap() >= 30, "{r}");
    assert!(r["width"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["connection"], "connected", "{r}");
    assert_eq!(sessions, 1);
}

/// Step 9 with the Rust peer: the page, served by `rtclab demo`, sends the
/// photo to the demo's Rust peer, which checks its size and SHA-256 and
/// acknowledges it.
async fn step9_photo_to_the_demos_rust_peer(kind: BrowserKind) {
    let Some((r, sessions)) = on_demo(kind, "/09_photo/?peer=rust&report=1", &[], 1).await else {
        return;
    };
    let r = &r[0];
    assert_eq!(r["role"], "sender", "{r}");
    let bytes = r["sent"]["bytes"].as_u64().unwrap();
    assert!(bytes > 0, "{r}");
    assert_eq!(r["ack"]["ok"], true, "{r}");
    assert_eq!(r["ack"]["bytes"].as_u64(), Some(bytes), "{r}");
    assert_eq!(
        r["ack"]["chunks"].as_u64(),
        Some(bytes.div_ceil(16 * 1024)),
        "{r}"
    );
    assert_eq!(sessions, 1);
}

/// The demo's call mode: the first tab opens `/demo/?call=new`, the second
/// is loaded from the first tab's invite link; the two meet in one room.
const DEMO_TABS: &str = r#"<!doctype html>
<title>two tabs</title>
<iframe id="a" allow="camera" width="640" height="480" src="/demo/?call=new&autotest=1"></iframe>
<iframe id="b" allow="camera" width="640" height="480"></iframe>
<script>
const wait = setInterval(() => {
  const link = document.getElementById('a').contentDocument?.getElementById('invite-link');
  if (link && link.value) {
    clearInterval(wait);
    document.getElementById('b').src = link.value + '&autotest=1';
  }
}, 100);
</script>
"#;

async fn demo_call_new_and_its_invite_link_meet(kind: BrowserKind) {
    let page = Page {
        path: "/test/tabs.html",
        content_type: "text/html; charset=utf-8",
        body: DEMO_TABS.as_bytes(),
    };
    let Some((got, sessions)) = on_demo(kind, "/test/tabs.html", &[page], 2).await else {
        return;
    };
    for r in &got {
        assert_eq!(r["mode"], "call", "{r:#}");
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["chatEcho"], "hello rust", "{r:#}");
    }
    assert_eq!(sessions, 0, "no Rust peer in a tab-to-tab call");
}

// One test per page and browser. Chromium: Debian's `chromium`
// (libwebrtc); Firefox: Debian's `firefox-esr` (nICEr, NSS, usrsctp), with
// its fake camera (DESIGN §5's prefs in tests/common/browser.rs).

#[tokio::test]
async fn step4_camera_plays_and_draws_ascii_in_chromium() {
    step4_camera_plays_and_draws_ascii(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step5_video_between_two_peer_connections_in_chromium() {
    step5_video_between_two_peer_connections(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step6_text_over_a_data_channel_in_chromium() {
    step6_text_over_a_data_channel(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step8_call_between_two_tabs_by_invite_link_in_chromium() {
    step8_call_between_two_tabs_by_invite_link(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step9_photo_between_two_tabs_by_invite_link_in_chromium() {
    step9_photo_between_two_tabs_by_invite_link(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step8_call_with_the_demos_rust_peer_in_chromium() {
    step8_call_with_the_demos_rust_peer(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step9_photo_to_the_demos_rust_peer_in_chromium() {
    step9_photo_to_the_demos_rust_peer(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn demo_call_new_and_its_invite_link_meet_in_chromium() {
    demo_call_new_and_its_invite_link_meet(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn step4_camera_plays_and_draws_ascii_in_firefox() {
    step4_camera_plays_and_draws_ascii(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn step5_video_between_two_peer_connections_in_firefox() {
    step5_video_between_two_peer_connections(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn step6_text_over_a_data_channel_in_firefox() {
    step6_text_over_a_data_channel(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn step8_call_between_two_tabs_by_invite_link_in_firefox() {
    step8_call_between_two_tabs_by_invite_link(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn step9_photo_between_two_tabs_by_invite_link_in_firefox() {
    step9_photo_between_two_tabs_by_invite_link(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn step8_call_with_the_demos_rust_peer_in_firefox() {
    step8_call_with_the_demos_rust_peer(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn step9_photo_to_the_demos_rust_peer_in_firefox() {
    step9_photo_to_the_demos_rust_peer(BrowserKind::Firefox).await;
}

#[tokio::test]
async fn demo_call_new_and_its_invite_link_meet_in_firefox() {
    demo_call_new_and_its_invite_link_meet(BrowserKind::Firefox).await;
}
