//! A real call's capture: `rtclab demo --pcap` (Config::pcap) while
//! headless Chromium calls the demo's Rust peer (chat and photo channels,
//! no camera); tshark reads the Rust peer's pcapng with no key file and
//! shows the DCEP OPEN of the page's "chat" channel and its text messages
//! decrypted; `rtclab xray` shows the same from rtclab's parsers. Missing
//! Chromium or tshark: a loud skip (a failure with
//! `RTCLAB_REQUIRE_INTEROP=1`).

mod common;
#[path = "common/tshark.rs"]
mod tshark;

use std::time::Duration;

use common::browser::{BrowserKind, launch};
use rtclab::capture::pcapng::{self, Direction};
use rtclab::demo::{Config, Demo};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tshark::{hex, sctp_over_dtls, tshark};

/// The start of a real call for the book: the network interface's packets
/// up to the one that carries the Rust peer's first echo on "chat", SRTP
/// and SRTCP left out (first byte 128 to 191, RFC 7983), with the key log.
/// Small enough to check in, and `rtclab xray` reads the same ladder from
/// it every time.
fn book_excerpt(cap: &pcapng::Capture<'_>) -> Vec<u8> {
    use rtclab::capture::xray;
    let echo = xray::decode(cap)
        .into_iter()
        .find(|l| l.text.contains("text \"echo: hello rust\""))
        .expect("the echo is in the ladder")
        .packet;
    let mut out = Vec::new();
    pcapng::Writer::section(&mut out);
    let network = &cap.interfaces[0];
    assert_eq!(network.link_type, pcapng::LINKTYPE_RAW);
    pcapng::Writer::interface(&mut out, &network.name, &network.description);
    pcapng::Writer::secrets(&mut out, &cap.key_log);
    for p in cap.packets.iter().take(echo) {
        let Some(udp) = pcapng::udp(network.link_type, p.data) else {
            continue;
        };
        let media = matches!(udp.payload.first(), Some(128..=191));
        if p.interface == 0 && !media {
            pcapng::Writer::packet(&mut out, 0, p.time, p.direction, p.data);
        }
    }
    out
}

#[tokio::test]
async fn chromium_call_capture_decrypts_in_tshark() {
    let Some(bin) = common::require_binary("tshark", "tshark") else {
        return;
    };
    let Some(openssl) = common::require_binary("openssl", "openssl") else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("rtclab-xray-browser-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (reports, mut reported) = mpsc::channel(8);
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.reports = Some(reports);
    config.pcap = Some(dir.join("chromium.pcapng"));
    let demo = Demo::bind(config).await.expect("bind");
    let addr = demo.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(demo.run_until(async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/demo/?autotest=1&limit=40&nocam=1&need=chat,photo");
    let Some(mut browser) = launch(BrowserKind::Chromium, &url) else {
        let _ = stop.send(());
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let report = loop {
        match tokio::time::timeout(Duration::from_millis(500), reported.recv()).await {
            Ok(Some(body)) => {
                let v: Value = serde_json::from_str(&body).expect("a JSON report");
                if v["type"] == "result" {
                    break v;
                }
            }
            _ => {
                let exited = browser.process.wait_exit(Duration::ZERO);
                assert!(
                    exited.is_none() && tokio::time::Instant::now() < deadline,
                    "no result from the page within 60 s (exited: {exited:?})"
                );
            }
        }
    };
    assert_eq!(report["ok"], true, "{report:#}");
    drop(browser);
    let _ = stop.send(());
    task.await.expect("task").expect("run");

    // The Rust peer's capture (session 1), flushed when the peer ended.
    let file = dir.join("chromium-1.pcapng");
    let bytes = std::fs::read(&file).expect("the capture file");
    let cap = pcapng::read(&bytes).expect("pcapng");
    assert!(
        cap.key_log.starts_with("CLIENT_RANDOM "),
        "no key log in the capture"
    );
    let port = cap
        .packets
        .iter()
        .filter(|p| p.direction == Some(Direction::Outbound))
        .find_map(|p| pcapng::udp(cap.interfaces[p.interface].link_type, p.data))
        .expect("an outbound datagram")
        .source
        .port();
    let sctp = sctp_over_dtls(&openssl, &dir, port);
    let sctp = ["-o", sctp.as_str()];
    let dcep = tshark(
        &bin,
        &file,
        &[
            &sctp[..],
            &[
                "-Y",
                "rtcdc",
                "-T",
                "fields",
                "-e",
                "rtcdc.message_type",
                "-e",
                "rtcdc.label",
            ],
        ]
        .concat(),
    );
    assert!(
        dcep.lines().any(|l| l == "3\tchat"),
        "no DATA_CHANNEL_OPEN \"chat\":\n{dcep}"
    );
    let texts = tshark(
        &bin,
        &file,
        &[
            &sctp[..],
            &[
                "-o",
                "sctp.ulp_dissection:FALSE",
                "-Y",
                "sctp.data_payload_proto_id == 51",
                "-T",
                "fields",
                "-e",
                "data.data",
            ],
        ]
        .concat(),
    );
    let texts: Vec<String> = texts
        .lines()
        .map(|h| String::from_utf8_lossy(&hex(h)).into_owned())
        .collect();
    assert!(texts.iter().any(|t| t == "echo: hello rust"), "{texts:?}");

    // rtclab's own x-ray of the same file.
    let ladder = rtclab::capture::xray::xray(&bytes, &Default::default()).expect("ladder");
    for needle in [
        "ClientHello",
        "Finished (decrypted)",
        "DATA_CHANNEL_OPEN label \"chat\"",
        "text \"echo: hello rust\"",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    // Chapter 8b shows this call: `RTCLAB_BLESS=1` keeps its start as the
    // book's capture, from which tests/xray.rs draws the chapter's ladder.
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/xray/chromium_call.pcapng");
        std::fs::write(&path, book_excerpt(&cap)).expect("write the book's capture");
        eprintln!("wrote {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `GET path` from the demo: the status line and the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.expect("read");
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    (head, all[end + 4..].to_vec())
}

/// The demo page's live x-ray panel (issue 18 §3): Chromium calls the Rust
/// peer with its fake camera, chat and photo; the panel (read from the
/// page's DOM) shows the DTLS handshake of the call, SCTP, DCEP and RTP
/// lines; its "download capture" link hands over a pcapng that rtclab's
/// x-ray and tshark (with no key file) read decrypted.
#[tokio::test]
async fn chromium_demo_xray_panel_and_download() {
    let Some(bin) = common::require_binary("tshark", "tshark") else {
        return;
    };
    let Some(openssl) = common::require_binary("openssl", "openssl") else {
        return;
    };
    let (reports, mut reported) = mpsc::channel(8);
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.reports = Some(reports);
    let demo = Demo::bind(config).await.expect("bind");
    let addr = demo.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(demo.run_until(async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/demo/?autotest=1&limit=40");
    let Some(mut browser) = launch(BrowserKind::Chromium, &url) else {
        let _ = stop.send(());
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let report = loop {
        match tokio::time::timeout(Duration::from_millis(500), reported.recv()).await {
            Ok(Some(body)) => {
                let v: Value = serde_json::from_str(&body).expect("a JSON report");
                if v["type"] == "result" {
                    break v;
                }
            }
            _ => {
                let exited = browser.process.wait_exit(Duration::ZERO);
                assert!(
                    exited.is_none() && tokio::time::Instant::now() < deadline,
                    "no result from the page within 60 s (exited: {exited:?})"
                );
            }
        }
    };
    assert_eq!(report["ok"], true, "{report:#}");
    let xray = &report["xray"];
    let shown: Vec<&str> = xray["dtlsShown"]
        .as_array()
        .expect("the panel's DTLS lines")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for needle in [
        "Handshake: ClientHello",
        "Handshake: ServerHello",
        "Finished (decrypted)",
    ] {
        assert!(
            shown.iter().any(|l| l.contains(needle)),
            "the panel shows no {needle:?}: {shown:#?}"
        );
    }
    for layer in ["STUN", "DTLS", "SCTP", "DCEP", "RTP", "RTCP"] {
        assert!(
            xray["layers"][layer].as_u64().unwrap_or(0) > 0,
            "no {layer} line in the panel: {xray:#}"
        );
    }

    // The download, while the call goes on.
    let path = xray["capture"].as_str().expect("the capture's URL");
    let (head, bytes) = http_get(addr, path).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/x-pcapng"), "{head}");
    let (missing, _) = http_get(addr, "/demo/capture/0123.pcapng").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    drop(browser);
    let _ = stop.send(());
    task.await.expect("task").expect("run");

    let ladder = rtclab::capture::xray::xray(&bytes, &Default::default()).expect("ladder");
    for needle in [
        "ClientHello",
        "Finished (decrypted)",
        "DATA_CHANNEL_OPEN label \"chat\"",
        "text \"echo: hello rust\"",
        "VP8",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    let dir = std::env::temp_dir().join(format!("rtclab-xray-panel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("download.pcapng");
    std::fs::write(&file, &bytes).expect("write");
    let cap = pcapng::read(&bytes).expect("pcapng");
    let port = cap
        .packets
        .iter()
        .filter(|p| p.direction == Some(Direction::Outbound))
        .find_map(|p| pcapng::udp(cap.interfaces[p.interface].link_type, p.data))
        .expect("an outbound datagram")
        .source
        .port();
    let sctp = sctp_over_dtls(&openssl, &dir, port);
    let dcep = tshark(
        &bin,
        &file,
        &[
            "-o",
            &sctp,
            "-Y",
            "rtcdc",
            "-T",
            "fields",
            "-e",
            "rtcdc.message_type",
            "-e",
            "rtcdc.label",
        ],
    );
    assert!(
        dcep.lines().any(|l| l == "3\tchat"),
        "no DATA_CHANNEL_OPEN \"chat\" in the download:\n{dcep}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The SFU page's live x-ray panel (issue 18 §3, "the SFU page gets the
/// same per participant"): `rtclab sfu --xray` (Server::set_downloads)
/// while headless Chromium joins a room with its fake camera and its
/// "chat" channel; the page's panel (read from its DOM, in its reports)
/// shows its own connection's DTLS handshake decrypted, and STUN, SCTP,
/// DCEP, RTP and RTCP lines; its download is this participant's pcapng,
/// which `rtclab xray` reads with the decrypted VP8 on the plaintext
/// interface.
#[tokio::test]
async fn chromium_sfu_xray_panel_and_download() {
    use rtclab::sfu::server::{Config as SfuServer, Server};
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let cert = rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
        .expect("certificate");
    let (reports, mut reported) = mpsc::channel(64);
    let mut server = Server::bind(SfuServer {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        sfu: rtclab::sfu::Config::new(cert, Vec::new()),
        reports: Some(reports),
        whip: None,
    })
    .await
    .expect("bind");
    server.set_downloads(32 << 20);
    let addr = server.http_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let url = format!("http://{addr}/sfu/?room=xray&autotest=1");
    let Some(mut browser) = launch(BrowserKind::Chromium, &url) else {
        let _ = stop.send(());
        return;
    };
    let layers = ["STUN", "DTLS", "SCTP", "DCEP", "RTP", "RTCP"];
    let dtls = [
        "Handshake: ClientHello",
        "Handshake: ServerHello",
        "Finished (decrypted)",
    ];
    let done = |v: &Value| {
        let x = &v["xray"];
        let shown: Vec<&str> = x["dtlsShown"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        layers
            .iter()
            .all(|l| x["layers"][*l].as_u64().unwrap_or(0) > 0)
            && dtls.iter().all(|n| shown.iter().any(|l| l.contains(n)))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    let mut last = Value::Null;
    while !done(&last) {
        match tokio::time::timeout(Duration::from_millis(500), reported.recv()).await {
            Ok(Some(body)) => last = serde_json::from_str(&body).expect("a JSON report"),
            _ => {
                let exited = browser.process.wait_exit(Duration::ZERO);
                assert!(
                    exited.is_none() && tokio::time::Instant::now() < deadline,
                    "the panel did not show the call within 45 s (exited: {exited:?}); last report:\n{last:#}"
                );
            }
        }
    }
    assert_eq!(last["connection"], "connected", "{last:#}");

    // The page's download: its own share of the SFU's capture.
    let path = last["xray"]["capture"]
        .as_str()
        .expect("the capture's URL")
        .to_string();
    assert!(path.starts_with("/sfu/capture/"), "{path}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (head, bytes) = http_get(addr, &path).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/x-pcapng"), "{head}");
    drop(browser);
    let _ = stop.send(());
    task.await.expect("task").expect("run");

    let cap = pcapng::read(&bytes).expect("pcapng");
    assert_eq!(cap.key_log.lines().count(), 1, "{}", cap.key_log);
    let ladder = rtclab::capture::xray::xray(&bytes, &Default::default()).expect("ladder");
    for needle in [
        "ClientHello",
        "Finished (decrypted)",
        "DATA_CHANNEL_OPEN label \"chat\"",
        // The page's camera, decrypted on the plaintext interface.
        "VP8",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
}
