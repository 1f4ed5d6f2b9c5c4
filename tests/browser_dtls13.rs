//! DTLS 1.3 with real browsers: headless Chromium and Firefox ESR open data
//! channels with rtclab's `PeerConnection` whose transport runs the
//! version-negotiating DTLS endpoint with `dtls_max_version` 1.3, in both
//! DTLS roles. The page is `tests/pages/datachannel.*` (case `kinds`: three
//! channels, 20 messages each way, the Rust side echoing); its report
//! carries the browser's `getStats()` transport `tlsVersion`, which must be
//! `FEFC` (DTLS 1.3), as our side's negotiated version must be.
//!
//! `setup_time_dtls12_vs_dtls13` (ignored: a measurement, run on demand)
//! prints how long the connection took to set up with each browser in
//! each role, 1.2 against 1.3: from the Rust side's first `connecting` to
//! `connected` (ICE and DTLS), and from ICE's `connected` to the
//! PeerConnection's (the part of DTLS that did not overlap ICE).
//!
//! Firefox ESR 153 offers DTLS 1.3 by default (its
//! `media.peerconnection.dtls.version.max` is 772); Chromium 156 too.
//! Skips loudly when a browser is missing (fails under
//! `RTCLAB_REQUIRE_INTEROP=1`).

mod common;

use std::time::Duration;

use common::browser::{BrowserKind, launch};
use common::rtc::RtcPeer;
use rtclab::datachannel::{Event as DcEvent, Message};
use rtclab::dtls::endpoint::Version;
use rtclab::dtls::handshake::NamedGroup;
use rtclab::ice::ConnectionState as IceState;
use rtclab::peer::{self, IceRole, PeerConnectionState, transport::Config as TransportConfig};
use rtclab::sdp::Setup;
use rtclab::signaling::{Config, Page, Server};
use serde_json::Value;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);

/// How long the Rust side took to connect.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// `connecting` → `connected`.
    setup: Duration,
    /// ICE `connected` → PeerConnection `connected`.
    after_ice: Duration,
}
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pages() -> Vec<Page> {
    vec![
        Page {
            path: "/test/datachannel.html",
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("pages/datachannel.html"),
        },
        Page {
            path: "/test/datachannel.js",
            content_type: "text/javascript; charset=utf-8",
            body: include_bytes!("pages/datachannel.js"),
        },
    ]
}

/// Runs the `kinds` case with the page offering and rtclab answering
/// `setup` on DTLS up to `max`; returns the page's report and our
/// negotiated version and key share, `None` when the browser is missing.
async fn run(
    kind: BrowserKind,
    setup: Setup,
    max: Version,
) -> Option<(Value, Option<Version>, Option<NamedGroup>, Timing)> {
    run_capturing(kind, setup, max, None).await
}

/// As [`run`], writing the Rust side's pcapng (key log inside) to `pcap`.
async fn run_capturing(
    kind: BrowserKind,
    setup: Setup,
    max: Version,
    pcap: Option<&std::path::Path>,
) -> Option<(Value, Option<Version>, Option<NamedGroup>, Timing)> {
    let _one_at_a_time = BROWSER.lock().await;
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
    let room = format!("dtls13-{kind:?}-{setup:?}-{max:?}");
    let mut rtc = RtcPeer::join(&handle, &room, 42, |c| {
        c.answer_setup = setup;
        // PeerConnection puts its own certificate in; this one is a stand-in.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        let cert =
            rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
                .expect("certificate");
        let mut t = TransportConfig::new(IceRole::Controlled, cert);
        t.ice.checks.rto = rtclab::peer::HANDSHAKE_RTO;
        t.dtls_retransmit_timeout = rtclab::peer::HANDSHAKE_RTO;
        t.dtls_max_version = max;
        c.transport = Some(t);
    })
    .await;
    if let Some(path) = pcap {
        let sink = rtclab::capture::Capture::create(path).expect("capture file");
        rtc.driver.set_capture(sink, |pc, sink| {
            if let Some(line) = rtclab::runtime::live::key_log_line(pc) {
                sink.key_log_line(&line);
            }
        });
    }
    let url = format!("http://{addr}/test/datachannel.html?room={room}&case=kinds&offer=page");
    let mut browser = launch(kind, &url)?;
    let mut report: Option<Value> = None;
    let mut notes = Vec::new();
    let (mut connecting, mut ice_connected, mut connected) = (None, None, None);
    let deadline = tokio::time::Instant::now() + LIMIT;
    let failure = loop {
        tokio::select! {
            e = rtc.next() => match e {
                Ok(peer::Event::ConnectionState(PeerConnectionState::Failed)) => {
                    break Some("connection failed".to_string());
                }
                Ok(peer::Event::ConnectionState(PeerConnectionState::Connecting)) => {
                    connecting.get_or_insert_with(std::time::Instant::now);
                }
                Ok(peer::Event::ConnectionState(PeerConnectionState::Connected)) => {
                    connected.get_or_insert_with(std::time::Instant::now);
                }
                Ok(peer::Event::IceConnectionState(IceState::Connected)) => {
                    ice_connected.get_or_insert_with(std::time::Instant::now);
                }
                Ok(peer::Event::DataChannel(DcEvent::Message { channel, message })) => {
                    let now = std::time::Instant::now();
                    let _ = match message {
                        Message::Text(t) => rtc.pc().send_text(now, channel, &t),
                        Message::Binary(b) => rtc.pc().send_binary(now, channel, &b),
                    };
                }
                Ok(_) => {}
                Err(e) => break Some(format!("Rust side: {e}")),
            },
            r = reported.recv() => {
                let Some(body) = r else { break Some("report channel closed".into()) };
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::String(body));
                if let Some(n) = v["note"].as_str() {
                    notes.push(n.to_string());
                } else {
                    report = Some(v);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if let Some(status) = browser.process.wait_exit(Duration::ZERO) {
                    break Some(format!("{kind:?} exited early: {status}"));
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            break Some(format!("not done within {LIMIT:?}"));
        }
        if let Some(r) = &report {
            if r["ok"] != Value::Bool(true) {
                break Some("the page reported a failure".into());
            }
            break None;
        }
    };
    if let Some(f) = failure {
        panic!(
            "{kind:?} {setup:?} {max:?}: {f}\n--- page report ---\n{}\n--- page trail ---\n{}\n--- Rust signaling trace ---\n{}\n",
            report.map(|r| r.to_string()).unwrap_or_default(),
            notes.join("\n"),
            rtc.trace_text(),
        );
    }
    let dtls = rtc.pc().transport().and_then(|t| t.dtls());
    let version = dtls.and_then(|d| d.version());
    let group = dtls
        .and_then(|d| d.as_dtls13())
        .and_then(|d| d.key_share_group());
    drop(browser);
    handle.shutdown();
    if let Some(mut c) = rtc.driver.take_capture() {
        c.flush().expect("capture written");
    }
    let (Some(a), Some(i), Some(b)) = (connecting, ice_connected, connected) else {
        panic!("connection states not seen: {connecting:?} {ice_connected:?} {connected:?}");
    };
    let timing = Timing {
        setup: b - a,
        after_ice: b.saturating_duration_since(i),
    };
    Some((report.expect("a report"), version, group, timing))
}

async fn dtls13(kind: BrowserKind, setup: Setup) {
    let Some((report, version, group, _)) = run(kind, setup, Version::Dtls13).await else {
        return;
    };
    eprintln!("{kind:?} as {setup:?}: {}", report["dtls"]);
    assert_eq!(report["dtls"]["tlsVersion"], "FEFC", "{report}");
    assert_eq!(version, Some(Version::Dtls13));
    assert_eq!(group, Some(NamedGroup::X25519_MLKEM768));
}

async fn dtls12(kind: BrowserKind) {
    let Some((report, version, _, _)) = run(kind, Setup::Active, Version::Dtls12).await else {
        return;
    };
    assert_eq!(report["dtls"]["tlsVersion"], "FEFD", "{report}");
    assert_eq!(version, Some(Version::Dtls12));
}

#[tokio::test]
async fn chromium_dtls13_rust_as_dtls_client() {
    dtls13(BrowserKind::Chromium, Setup::Active).await;
}

#[tokio::test]
async fn chromium_dtls13_rust_as_dtls_server() {
    dtls13(BrowserKind::Chromium, Setup::Passive).await;
}

#[tokio::test]
async fn firefox_dtls13_rust_as_dtls_client() {
    dtls13(BrowserKind::Firefox, Setup::Active).await;
}

#[tokio::test]
async fn firefox_dtls13_rust_as_dtls_server() {
    dtls13(BrowserKind::Firefox, Setup::Passive).await;
}

#[tokio::test]
async fn chromium_still_dtls12_when_told() {
    dtls12(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_still_dtls12_when_told() {
    dtls12(BrowserKind::Firefox).await;
}

/// `cargo test --test browser_dtls13 setup_time -- --ignored --nocapture`:
/// the median set-up time over `RTCLAB_SETUP_RUNS` (default 3) calls per
/// browser, role and version (loopback, so this is CPU and protocol round
/// trips, not network delay).
#[tokio::test]
#[ignore = "a measurement, not a test; run on demand"]
async fn setup_time_dtls12_vs_dtls13() {
    let runs: usize = std::env::var("RTCLAB_SETUP_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    for kind in [BrowserKind::Chromium, BrowserKind::Firefox] {
        for setup in [Setup::Passive, Setup::Active] {
            for max in [Version::Dtls12, Version::Dtls13] {
                let mut total = Vec::new();
                let mut dtls = Vec::new();
                for _ in 0..runs {
                    let Some((_, version, _, t)) = run(kind, setup, max).await else {
                        return;
                    };
                    assert_eq!(version, Some(max));
                    total.push(t.setup);
                    dtls.push(t.after_ice);
                }
                let role = match setup {
                    Setup::Passive => "rtclab DTLS server",
                    _ => "rtclab DTLS client",
                };
                println!(
                    "setup {kind:?} {role} {max:?}: {:.1} ms (ICE connected to connected {:.1} ms), median of {runs}",
                    median(total).as_secs_f64() * 1e3,
                    median(dtls).as_secs_f64() * 1e3,
                );
            }
        }
    }
}

/// The book's trace (chapter 5b): `RTCLAB_BOOK_PCAP=DIR cargo test --test
/// browser_dtls13 book_trace -- --ignored` writes DIR/chromium-dtls13.pcapng
/// and DIR/chromium-dtls12.pcapng (Chromium offering, rtclab the DTLS
/// server); `rtclab xray` prints them.
#[tokio::test]
#[ignore = "writes the book's captures; run on demand"]
async fn book_trace() {
    let dir =
        std::path::PathBuf::from(std::env::var("RTCLAB_BOOK_PCAP").expect("RTCLAB_BOOK_PCAP"));
    for (max, name) in [(Version::Dtls13, "dtls13"), (Version::Dtls12, "dtls12")] {
        let path = dir.join(format!("chromium-{name}.pcapng"));
        let Some((_, version, _, _)) =
            run_capturing(BrowserKind::Chromium, Setup::Passive, max, Some(&path)).await
        else {
            return;
        };
        assert_eq!(version, Some(max));
    }
}
