//! The codelab step 7 page in headless Chromium and Firefox: two tabs of
//! `/07_signaling/` join the same room on our server and exchange a message;
//! each page POSTs what it saw to the server's `/report`, which this test
//! reads. A missing browser is a loud skip (a failure under
//! `RTCLAB_REQUIRE_INTEROP=1`); the browser's output is printed on failure.

mod common;

use std::time::Duration;

use common::browser::{BrowserKind, launch};
use rtclab::signaling::{Config, Page, Server};
use serde_json::Value;
use tokio::sync::mpsc;

/// The two pages of the test, side by side.
const TWO_PAGES: &str = r#"<!doctype html>
<title>two pages</title>
<iframe src="/07_signaling/?room=browsers&say=hello-from-alice&report=1"></iframe>
<iframe src="/07_signaling/?room=browsers&say=hello-from-bob&report=1"></iframe>
"#;

#[tokio::test]
async fn two_chromium_pages_join_a_room_and_exchange_a_message() {
    two_pages(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn two_firefox_pages_join_a_room_and_exchange_a_message() {
    two_pages(BrowserKind::Firefox).await;
}

async fn two_pages(kind: BrowserKind) {
    let (reports, mut reported) = mpsc::channel(8);
    let mut config = Config::default();
    config.report_to = Some(reports);
    // Headless Chromium opens one target only, so one test page holds the
    // two "tabs" as frames.
    config.pages.push(Page {
        path: "/test/two.html",
        content_type: "text/html; charset=utf-8",
        body: TWO_PAGES.as_bytes(),
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let handle = server.handle();
    tokio::spawn(server.run());

    let url = format!("http://{addr}/test/two.html");
    let Some(mut browser) = launch(kind, &url) else {
        return;
    };

    let mut got: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < 2 {
        match tokio::time::timeout(Duration::from_millis(500), reported.recv()).await {
            Ok(Some(body)) => got.push(serde_json::from_str(&body).expect("a JSON report")),
            _ => {
                let exited = browser.process.wait_exit(Duration::ZERO);
                assert!(
                    exited.is_none() && tokio::time::Instant::now() < deadline,
                    "{} of 2 pages reported within 60 s ({kind:?} exited: {exited:?}): {got:?}",
                    got.len(),
                );
            }
        }
    }
    drop(browser);

    let mut ids = Vec::new();
    for r in &got {
        let said = r["said"].as_str().expect("said");
        let other = if said == "hello-from-alice" {
            "hello-from-bob"
        } else {
            "hello-from-alice"
        };
        assert_eq!(r["room"], "browsers", "{r}");
        assert_eq!(r["received"], serde_json::json!([{"text": other}]), "{r}");
        // The page saw the codelab's sequence: created or joined, then ready.
        let types: Vec<&str> = r["seen"]
            .as_array()
            .expect("seen")
            .iter()
            .filter_map(|m| m["received"]["type"].as_str())
            .collect();
        assert!(
            types.starts_with(&["created", "join", "ready"])
                || types.starts_with(&["joined", "ready"]),
            "{types:?}"
        );
        ids.push(r["id"].as_u64().expect("id"));
    }
    assert_ne!(ids[0], ids[1]);
    handle.shutdown();
}
