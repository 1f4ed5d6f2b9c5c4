//! A real call's capture: `rtclab demo --pcap` (Config::pcap) while
//! headless Chromium calls the demo's Rust peer (chat and photo channels,
//! no camera); tshark reads the Rust peer's pcapng with no key file and
//! shows the DCEP OPEN of the page's "chat" channel and its text messages
//! decrypted; `rtclab xray` shows the same from rtclab's parsers. Missing
//! Chromium or tshark: a loud skip (a failure with
//! `RTCLAB_REQUIRE_INTEROP=1`).

mod common;
#[path = "common/sfu_server.rs"]
mod sfu_server;
#[path = "common/tshark.rs"]
mod tshark;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::{BrowserKind, launch};
use common::demo::DemoServer;
use common::http_get;
use rtclab::capture::pcapng::{self, Direction};
use rtclab::demo::Config;
use serde_json::Value;
use tokio::sync::mpsc;
use tshark::{dcep, sctp_over_dtls, texts};

/// The port of the capture's first outbound datagram: the capturing
/// peer's.
fn local_port(cap: &pcapng::Capture<'_>) -> u16 {
    cap.packets
        .iter()
        .filter(|p| p.direction == Some(Direction::Outbound))
        .find_map(|p| pcapng::udp(cap.interfaces[p.interface].link_type, p.data))
        .expect("an outbound datagram")
        .source
        .port()
}

/// What the ladder of a call with the demo's Rust peer shows: the DTLS
/// handshake, decrypted, and the page's "chat" channel and its echo.
const CHAT_CALL: [&str; 4] = [
    "ClientHello",
    "Finished (decrypted)",
    "DATA_CHANNEL_OPEN label \"chat\"",
    "text \"echo: hello rust\"",
];

/// `rtclab xray`'s ladder of a capture has every one of `needles`.
fn assert_ladder_has(bytes: &[u8], needles: &[&str]) {
    let ladder = rtclab::capture::xray::xray(bytes, &Default::default()).expect("ladder");
    for needle in needles {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
}

/// A temporary directory of this test's own.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rtclab-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

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
    let dir = temp_dir("xray-browser");
    let mut config = Config::new("127.0.0.1:0".parse().unwrap());
    config.pcap = Some(dir.join("chromium.pcapng"));
    let mut demo = DemoServer::start(config).await;
    let query = "&nocam=1&need=chat,photo";
    let Some((browser, _)) = demo.autotest(BrowserKind::Chromium, query).await else {
        return;
    };
    drop(browser);
    demo.stop().await;

    // The Rust peer's capture (session 1), flushed when the peer ended.
    let file = dir.join("chromium-1.pcapng");
    let bytes = std::fs::read(&file).expect("the capture file");
    let cap = pcapng::read(&bytes).expect("pcapng");
    assert!(
        cap.key_log.starts_with("CLIENT_RANDOM "),
        "no key log in the capture"
    );
    let sctp = sctp_over_dtls(&openssl, &dir, local_port(&cap));
    let dcep = dcep(&bin, &file, &sctp);
    assert!(
        dcep.lines().any(|l| l == "3\tchat"),
        "no DATA_CHANNEL_OPEN \"chat\":\n{dcep}"
    );
    let texts: Vec<String> = texts(&bin, &file, &sctp)
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    assert!(texts.iter().any(|t| t == "echo: hello rust"), "{texts:?}");

    // rtclab's own x-ray of the same file.
    assert_ladder_has(&bytes, &CHAT_CALL);
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
    let mut demo = DemoServer::on_loopback().await;
    let Some((browser, report)) = demo.autotest(BrowserKind::Chromium, "").await else {
        return;
    };
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
    let (head, bytes) = http_get(demo.addr, path).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/x-pcapng"), "{head}");
    let (missing, _) = http_get(demo.addr, "/demo/capture/0123.pcapng").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    drop(browser);
    demo.stop().await;

    assert_ladder_has(&bytes, &[&CHAT_CALL[..], &["VP8"]].concat());
    let dir = temp_dir("xray-panel");
    let file = dir.join("download.pcapng");
    std::fs::write(&file, &bytes).expect("write");
    let cap = pcapng::read(&bytes).expect("pcapng");
    let sctp = sctp_over_dtls(&openssl, &dir, local_port(&cap));
    let dcep = dcep(&bin, &file, &sctp);
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
    let (reports, mut reported) = mpsc::channel(64);
    let configure = |c: &mut rtclab::sfu::server::Config| {
        c.reports = Some(reports);
        c.whip = None;
    };
    let (addr, _, ()) = sfu_server::start_sfu_with(configure, |mut server| {
        server.set_downloads(32 << 20);
        (server, ())
    });
    let url = format!("http://{addr}/sfu/?room=xray&autotest=1");
    let Some(mut browser) = launch(BrowserKind::Chromium, &url) else {
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
    let what = "panel showing the call";
    let last = browser
        .report(&mut reported, Duration::from_secs(45), what, done)
        .await;
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

    let cap = pcapng::read(&bytes).expect("pcapng");
    assert_eq!(cap.key_log.lines().count(), 1, "{}", cap.key_log);
    // The page's camera, decrypted on the plaintext interface.
    assert_ladder_has(&bytes, &[&CHAT_CALL[..3], &["VP8"]].concat());
}
