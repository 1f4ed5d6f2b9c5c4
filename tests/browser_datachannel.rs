//! Data channels between a real browser (headless Chromium and Firefox ESR)
//! and rtclab's `PeerConnection` on 127.0.0.1, signaled through rtclab's own
//! signaling server (issue 8 §3). The page is `tests/pages/datachannel.*`;
//! the Rust side is `tests/common/rtc.rs` plus [`Responder`] here, which
//! plays the Rust half of every case:
//!
//! | case | page | Rust |
//! |---|---|---|
//! | `echo` | sends text and binary of 0 B … 256 KiB, checks the echoes by SHA-256, then says `ctl:your-turn` and echoes | echoes, then sends the same sizes and checks the page's echoes |
//! | `kinds` | ordered, unordered and `maxRetransmits: 0` channels, 20 messages each | echoes |
//! | `bulk` | 20 MiB up with its SHA-256; then asks for 20 MiB down; then the same between two of its own peer connections | hashes with `ring`, answers `ctl:sha:`; sends 20 MiB and its hash |
//! | `close-page` | `dc.close()` after one echo, reports on `onclose` | sees the stream reset (`Closed`) |
//! | `close-rust` | asks Rust to close, reports on `onclose` | `close_data_channel` |
//!
//! Each test is bounded (60 s), prints the page's trail, the signaling
//! trace and the browser's output on failure, and skips loudly when the
//! browser is missing (fails under `RTCLAB_REQUIRE_INTEROP=1`).

mod common;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use common::browser::{BrowserKind, launch};
use common::rtc::RtcPeer;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use rtclab::datachannel::{ChannelId, ChannelInit, Event as DcEvent, Message};
use rtclab::peer::{self, DtlsRole, PeerConnectionState};
use rtclab::sdp::Setup;
use rtclab::signaling::{Config, Page, Server};
use serde_json::Value;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const SIZES: [usize; 5] = [0, 1, 1024, 64 * 1024, 256 * 1024];
const BULK: usize = 20 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

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

fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The same text the page makes for a size.
fn text(n: usize) -> String {
    "abcdefghijklmnopqrstuvwxyz0123456789"
        .chars()
        .cycle()
        .take(n)
        .collect()
}

/// What the Rust side does in the offer/answer exchange.
#[derive(Clone, Copy, Debug)]
enum Roles {
    /// The page offers; Rust answers `a=setup:active` (DTLS client).
    AnswerActive,
    /// The page offers; Rust answers `a=setup:passive` (DTLS server).
    AnswerPassive,
    /// Rust offers (`actpass`) and creates the case's channels.
    Offer,
}

/// The Rust half of every case (see the module doc).
#[derive(Default)]
struct Responder {
    labels: HashMap<ChannelId, String>,
    open_at: Option<Instant>,
    failed: Option<String>,
    // echo
    expect_back: VecDeque<(bool, String)>,
    echo_checked: usize,
    echo_turn: bool,
    // kinds
    echoed: HashMap<String, usize>,
    // bulk
    up: Option<ring::digest::Context>,
    up_bytes: usize,
    up_started: Option<Instant>,
    up_secs: Option<f64>,
    down_data: Vec<u8>,
    down_sent: usize,
    down_channel: Option<ChannelId>,
    down_started: Option<Instant>,
    down_secs: Option<f64>,
    down_ok: bool,
    // quiet
    quiet_sent: usize,
    // close
    closed: Vec<String>,
    closing: Vec<String>,
}

impl Responder {
    fn on_event(&mut self, rtc: &mut RtcPeer, e: peer::Event) {
        let now = Instant::now();
        match e {
            peer::Event::ConnectionState(PeerConnectionState::Failed) => {
                self.failed = Some("connection failed".into());
            }
            peer::Event::Error(e) => self.failed = Some(format!("error event: {e}")),
            peer::Event::DataChannel(DcEvent::Open(id)) => {
                self.open_at.get_or_insert(now);
                if let Some(c) = rtc.pc().data_channels().and_then(|d| d.channel(id)) {
                    self.labels.insert(id, c.label().to_string());
                }
            }
            peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                self.on_message(rtc, channel, message);
            }
            peer::Event::DataChannel(DcEvent::Closing(id)) => {
                self.closing
                    .push(self.labels.get(&id).cloned().unwrap_or_default());
            }
            peer::Event::DataChannel(DcEvent::Closed(id)) => {
                self.closed
                    .push(self.labels.get(&id).cloned().unwrap_or_default());
            }
            peer::Event::DataChannel(DcEvent::BufferedAmountLow(id))
                if self.down_channel == Some(id) =>
            {
                self.send_down(rtc, id);
            }
            peer::Event::DataChannel(DcEvent::Error { channel, error }) => {
                self.failed = Some(format!("data channel error on {channel:?}: {error}"));
            }
            _ => {}
        }
    }

    fn on_message(&mut self, rtc: &mut RtcPeer, ch: ChannelId, m: Message) {
        let now = Instant::now();
        let label = self.labels.get(&ch).cloned().unwrap_or_default();
        let pc = rtc.pc();
        let send = |pc: &mut rtclab::peer::PeerConnection, m: &Message| match m {
            Message::Text(t) => pc.send_text(Instant::now(), ch, t),
            Message::Binary(b) => pc.send_binary(Instant::now(), ch, b),
        };
        let ctl = match &m {
            Message::Text(t) if t.starts_with("ctl:") => Some(t.clone()),
            _ => None,
        };
        let r = match (label.as_str(), ctl.as_deref()) {
            ("echo", Some("ctl:your-turn")) => {
                self.echo_turn = true;
                let mut rng = StdRng::seed_from_u64(7);
                let mut out = Vec::new();
                for n in SIZES {
                    out.push(Message::Text(text(n)));
                }
                for n in SIZES {
                    let mut b = vec![0u8; n];
                    rng.fill_bytes(&mut b);
                    out.push(Message::Binary(b));
                }
                let mut r = Ok(());
                for m in out {
                    let (is_text, bytes) = match &m {
                        Message::Text(t) => (true, t.as_bytes()),
                        Message::Binary(b) => (false, b.as_slice()),
                    };
                    self.expect_back.push_back((is_text, sha256_hex(bytes)));
                    r = r.and(send(pc, &m));
                }
                r
            }
            ("echo", None) if self.echo_turn => {
                let (is_text, bytes) = match &m {
                    Message::Text(t) => (true, t.as_bytes()),
                    Message::Binary(b) => (false, b.as_slice()),
                };
                match self.expect_back.pop_front() {
                    Some(want) if want == (is_text, sha256_hex(bytes)) => self.echo_checked += 1,
                    want => {
                        self.failed = Some(format!(
                            "echo {} from the page: {} bytes (text {is_text}) is not what was sent ({want:?})",
                            self.echo_checked,
                            bytes.len()
                        ))
                    }
                }
                Ok(())
            }
            ("bulk", None) => {
                if let Message::Binary(b) = &m {
                    self.up_started.get_or_insert(now);
                    self.up
                        .get_or_insert_with(|| ring::digest::Context::new(&ring::digest::SHA256))
                        .update(b);
                    self.up_bytes += b.len();
                }
                Ok(())
            }
            ("bulk", Some(c)) if c.starts_with("ctl:end:") => {
                let digest = self
                    .up
                    .take()
                    .map(|c| hex(c.finish().as_ref()))
                    .unwrap_or_default();
                self.up_secs = self.up_started.map(|t| t.elapsed().as_secs_f64());
                if self.up_bytes != BULK || c != format!("ctl:end:{digest}") {
                    self.failed = Some(format!(
                        "bulk up: {} bytes with SHA-256 {digest}, page said {c}",
                        self.up_bytes
                    ));
                }
                pc.send_text(now, ch, &format!("ctl:sha:{digest}"))
            }
            ("bulk", Some("ctl:send-me")) => {
                let mut rng = StdRng::seed_from_u64(20);
                self.down_data = vec![0u8; BULK];
                rng.fill_bytes(&mut self.down_data);
                self.down_channel = Some(ch);
                self.down_started = Some(now);
                self.send_down(rtc, ch);
                Ok(())
            }
            ("bulk", Some(c)) if c.starts_with("ctl:sha:") => {
                self.down_secs = self.down_started.map(|t| t.elapsed().as_secs_f64());
                let want = format!("ctl:sha:{}", sha256_hex(&self.down_data));
                self.down_ok = c == want;
                if !self.down_ok {
                    self.failed = Some(format!("bulk down: page hashed {c}, sent {want}"));
                }
                Ok(())
            }
            ("quiet", Some("ctl:next")) => {
                let n = self.quiet_sent;
                self.quiet_sent += 1;
                pc.send_text(now, ch, &format!("m{n}"))
            }
            ("c", Some("ctl:close-me")) => {
                pc.close_data_channel(now, ch);
                Ok(())
            }
            (_, Some(_)) => Ok(()),
            // Everything else is echoed (echo before Rust's turn, kinds, c).
            (l, None) => {
                *self.echoed.entry(l.to_string()).or_default() += 1;
                send(pc, &m)
            }
        };
        if let Err(e) = r {
            self.failed = Some(format!("sending on {label}: {e}"));
        }
    }

    /// Tops the bulk download up to 4 MiB in flight (the next top-up comes
    /// with `BufferedAmountLow`, when it has drained), then the hash.
    fn send_down(&mut self, rtc: &mut RtcPeer, ch: ChannelId) {
        let now = Instant::now();
        let pc = rtc.pc();
        let mut queued = 0;
        while self.down_sent < BULK && queued < 4 * 1024 * 1024 {
            let end = (self.down_sent + CHUNK).min(BULK);
            if let Err(e) = pc.send_binary(now, ch, &self.down_data[self.down_sent..end]) {
                self.failed = Some(format!("bulk down at {}: {e}", self.down_sent));
                return;
            }
            queued += end - self.down_sent;
            self.down_sent = end;
        }
        if self.down_sent == BULK && self.down_channel.take().is_some() {
            let digest = sha256_hex(&self.down_data);
            if let Err(e) = pc.send_text(now, ch, &format!("ctl:end:{digest}")) {
                self.failed = Some(format!("bulk down end: {e}"));
            }
        }
    }

    /// Whether the Rust half of `case` is done.
    fn done(&self, case: &str) -> bool {
        match case {
            "echo" => self.echo_checked == 2 * SIZES.len(),
            "kinds" => ["ordered", "unordered", "rexmit0"]
                .iter()
                .all(|l| self.echoed.get(*l) == Some(&20)),
            "bulk" => self.down_ok,
            "close-page" | "close-rust" => self.closed.iter().any(|l| l == "c"),
            "quiet" => self.quiet_sent == 5,
            _ => false,
        }
    }
}

/// What one run saw.
struct Outcome {
    report: Value,
    responder: Responder,
    rtc: RtcPeer,
    load_to_open_ms: Option<f64>,
}

/// Runs `case` against `kind` with `roles`; `None` when the browser is
/// missing (a loud skip).
async fn run(kind: BrowserKind, case: &str, roles: Roles) -> Option<Outcome> {
    // One browser at a time: on a small machine two browsers plus two
    // debug-built Rust peers starve each other, and the 20 MiB cases then
    // measure the scheduler. Each test's 60 s start once it has the lock.
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

    let room = format!("dc-{case}");
    let answer_setup = match roles {
        Roles::AnswerPassive => Setup::Passive,
        _ => Setup::Active,
    };
    let mut rtc = RtcPeer::join(&handle, &room, 42, |c| c.answer_setup = answer_setup).await;
    let rust_offers = matches!(roles, Roles::Offer);
    if rust_offers {
        rtc.offer_when_ready = true;
        let inits: Vec<ChannelInit> = match case {
            "kinds" => {
                let mut u = ChannelInit::new("unordered");
                u.ordered = false;
                let mut r = ChannelInit::new("rexmit0");
                r.max_retransmits = Some(0);
                vec![ChannelInit::new("ordered"), u, r]
            }
            "bulk" => vec![ChannelInit::new("bulk")],
            "close-page" | "close-rust" => vec![ChannelInit::new("c")],
            _ => vec![ChannelInit::new("echo")],
        };
        for init in inits {
            rtc.pc()
                .create_data_channel(init)
                .expect("create_data_channel");
        }
    }
    let offer = if rust_offers { "rust" } else { "page" };
    let url = format!("http://{addr}/test/datachannel.html?room={room}&case={case}&offer={offer}");
    let loaded = Instant::now();
    let mut browser = launch(kind, &url)?;

    let mut responder = Responder::default();
    let mut report: Option<Value> = None;
    let mut notes: Vec<String> = Vec::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let failure = loop {
        tokio::select! {
            e = rtc.next() => match e {
                Ok(e) => responder.on_event(&mut rtc, e),
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
        if let Some(f) = responder.failed.take() {
            break Some(format!("Rust side: {f}"));
        }
        if let Some(r) = &report {
            if r["ok"] != Value::Bool(true) {
                break Some("the page reported a failure".into());
            }
            if responder.done(case) {
                break None;
            }
        }
    };
    if let Some(f) = failure {
        notes.sort_by_key(|n| {
            n.split_whitespace()
                .next()
                .and_then(|t| t.parse::<u64>().ok())
        });
        panic!(
            "{kind:?} {case} {roles:?}: {f}\n--- page report ---\n{}\n--- page trail ---\n{}\n--- Rust signaling trace ---\n{}\n",
            report.map(|r| r.to_string()).unwrap_or_default(),
            notes.join("\n"),
            rtc.trace_text(),
        );
    }
    drop(browser);
    handle.shutdown();
    let report = report.expect("a report");
    let load_to_open_ms = responder
        .open_at
        .map(|t| t.duration_since(loaded).as_secs_f64() * 1000.0);
    Some(Outcome {
        report,
        responder,
        rtc,
        load_to_open_ms,
    })
}

fn check_dtls_role(o: &mut Outcome, want: DtlsRole) {
    let got = o.rtc.pc().transport().and_then(|t| t.dtls_role());
    assert_eq!(got, Some(want), "our DTLS role");
}

async fn echo(kind: BrowserKind, roles: Roles) {
    let Some(mut o) = run(kind, "echo", roles).await else {
        return;
    };
    eprintln!(
        "{kind:?} echo {roles:?}: data channel open {:.0} ms after the page's navigation start ({:.0} ms after the offer; {:.0} ms after the browser was started); results {}",
        o.report["openMs"].as_f64().unwrap_or(f64::NAN),
        o.report["offerToOpenMs"].as_f64().unwrap_or(f64::NAN),
        o.load_to_open_ms.unwrap_or(f64::NAN),
        o.report["results"]
    );
    assert_eq!(o.report["results"].as_array().map(Vec::len), Some(10));
    assert_eq!(o.responder.echo_checked, 10);
    let want = match roles {
        Roles::AnswerActive => DtlsRole::Client,
        // As offerer we sent actpass: both browsers answer active.
        Roles::AnswerPassive | Roles::Offer => DtlsRole::Server,
    };
    check_dtls_role(&mut o, want);
}

#[tokio::test]
async fn chromium_echo_browser_created_channel() {
    echo(BrowserKind::Chromium, Roles::AnswerActive).await;
}

#[tokio::test]
async fn firefox_echo_browser_created_channel() {
    echo(BrowserKind::Firefox, Roles::AnswerActive).await;
}

#[tokio::test]
async fn chromium_echo_rust_created_channel_rust_offers() {
    echo(BrowserKind::Chromium, Roles::Offer).await;
}

#[tokio::test]
async fn firefox_echo_rust_created_channel_rust_offers() {
    echo(BrowserKind::Firefox, Roles::Offer).await;
}

#[tokio::test]
async fn chromium_echo_rust_answers_passive_as_dtls_server() {
    echo(BrowserKind::Chromium, Roles::AnswerPassive).await;
}

#[tokio::test]
async fn firefox_echo_rust_answers_passive_as_dtls_server() {
    echo(BrowserKind::Firefox, Roles::AnswerPassive).await;
}

async fn kinds(kind: BrowserKind, roles: Roles) {
    let Some(mut o) = run(kind, "kinds", roles).await else {
        return;
    };
    eprintln!(
        "{kind:?} kinds {roles:?}: page saw {}",
        o.report["channels"]
    );
    // Both ends agree on each channel's kind.
    let want: [(&str, bool, Option<u16>); 3] = [
        ("ordered", true, None),
        ("unordered", false, None),
        ("rexmit0", true, Some(0)),
    ];
    let channels = o.report["channels"].as_array().cloned().unwrap_or_default();
    let pc = o.rtc.pc();
    let dc = pc.data_channels().expect("data channels");
    for (label, ordered, rexmit) in want {
        let page = channels
            .iter()
            .find(|c| c["label"] == label)
            .unwrap_or_else(|| panic!("the page has no {label}"));
        assert_eq!(page["ordered"], ordered, "{label} at the page");
        assert_eq!(
            page["maxRetransmits"].as_u64(),
            rexmit.map(u64::from),
            "{label} at the page"
        );
        let ours = dc
            .channels()
            .find(|c| c.label() == label)
            .unwrap_or_else(|| panic!("Rust has no {label}"));
        assert_eq!(ours.ordered(), ordered, "{label} at Rust");
        assert_eq!(ours.max_retransmits(), rexmit, "{label} at Rust");
    }
}

#[tokio::test]
async fn chromium_channel_kinds_browser_created() {
    kinds(BrowserKind::Chromium, Roles::AnswerActive).await;
}

#[tokio::test]
async fn firefox_channel_kinds_browser_created() {
    kinds(BrowserKind::Firefox, Roles::AnswerActive).await;
}

#[tokio::test]
async fn chromium_channel_kinds_rust_created() {
    kinds(BrowserKind::Chromium, Roles::Offer).await;
}

#[tokio::test]
async fn firefox_channel_kinds_rust_created() {
    kinds(BrowserKind::Firefox, Roles::Offer).await;
}

async fn bulk(kind: BrowserKind) {
    let Some(o) = run(kind, "bulk", Roles::AnswerActive).await else {
        return;
    };
    let r = &o.report;
    let mib = BULK as f64 / 1048576.0;
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    eprintln!(
        "{kind:?} bulk 20 MiB: browser→rtclab {:.1} MiB/s (page clock; Rust clock {:.1}), rtclab→browser {:.1} MiB/s (Rust clock {:.1}), {kind:?}↔{kind:?} on one page {:.1} MiB/s; ratio browser→rtclab / browser↔browser {:.2}; open {:.0} ms after the browser was started",
        f("upMiBps"),
        o.responder.up_secs.map(|s| mib / s).unwrap_or(f64::NAN),
        f("downMiBps"),
        o.responder.down_secs.map(|s| mib / s).unwrap_or(f64::NAN),
        f("localMiBps"),
        f("upMiBps") / f("localMiBps"),
        o.load_to_open_ms.unwrap_or(f64::NAN),
    );
    assert_eq!(r["upOk"], true);
    assert_eq!(r["downOk"], true);
    assert_eq!(r["localOk"], true);
    assert_eq!(o.responder.up_bytes, BULK);
}

#[tokio::test]
async fn chromium_bulk_20_mib_with_checksums() {
    bulk(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_bulk_20_mib_with_checksums() {
    bulk(BrowserKind::Firefox).await;
}

/// Five lone messages to a browser that sends nothing back for 300 ms
/// after each: every one is acknowledged without a retransmission timeout,
/// although rtclab's RTO floor (100 ms) is below the browser's delayed
/// SACK (200 ms). The last DATA chunk before rtclab goes quiet carries the
/// I bit (RFC 9260 §3.3.1), and dcSCTP and usrsctp both SACK it at once.
async fn quiet(kind: BrowserKind) {
    let Some(mut o) = run(kind, "quiet", Roles::AnswerActive).await else {
        return;
    };
    assert_eq!(o.responder.quiet_sent, 5);
    let a = o
        .rtc
        .pc()
        .data_channels()
        .expect("data channels")
        .association();
    eprintln!("{kind:?} quiet: rto {:?}, {:?}", a.rto(), a.stats);
    assert_eq!(a.stats.timeouts, 0, "{kind:?}: {:?}", a.stats);
    assert_eq!(a.stats.retransmitted_chunks, 0, "{kind:?}: {:?}", a.stats);
    assert_eq!(a.rto(), Duration::from_millis(100), "loopback: the floor");
}

#[tokio::test]
async fn chromium_sacks_lone_messages_at_once() {
    quiet(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_sacks_lone_messages_at_once() {
    quiet(BrowserKind::Firefox).await;
}

async fn close(kind: BrowserKind, case: &str, roles: Roles) {
    let Some(o) = run(kind, case, roles).await else {
        return;
    };
    eprintln!(
        "{kind:?} {case} {roles:?}: page {}, Rust saw closing {:?} closed {:?}",
        o.report, o.responder.closing, o.responder.closed
    );
    assert_eq!(o.report["readyState"], "closed");
    assert!(o.responder.closed.iter().any(|l| l == "c"));
    if case == "close-page" {
        // The page reset its stream first: Rust heard it as Closing.
        assert!(o.responder.closing.iter().any(|l| l == "c"));
    }
}

#[tokio::test]
async fn chromium_close_from_browser() {
    close(BrowserKind::Chromium, "close-page", Roles::AnswerActive).await;
}

#[tokio::test]
async fn firefox_close_from_browser() {
    close(BrowserKind::Firefox, "close-page", Roles::AnswerActive).await;
}

#[tokio::test]
async fn chromium_close_from_rust() {
    close(BrowserKind::Chromium, "close-rust", Roles::AnswerActive).await;
}

#[tokio::test]
async fn firefox_close_from_rust() {
    close(BrowserKind::Firefox, "close-rust", Roles::AnswerActive).await;
}

#[tokio::test]
async fn chromium_close_from_rust_on_a_rust_created_channel() {
    close(BrowserKind::Chromium, "close-rust", Roles::Offer).await;
}

#[tokio::test]
async fn firefox_close_from_browser_on_a_rust_created_channel() {
    close(BrowserKind::Firefox, "close-page", Roles::Offer).await;
}
