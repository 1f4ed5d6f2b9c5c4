//! `rtclab sfu` with real browsers: three participants (two Chromium, one
//! Firefox ESR) in one room, each publishing its fake camera and
//! microphone (simulcast, three layers); each must decode both others'
//! video. Then one leaves and a late Chromium joins and decodes within a
//! stated bound. A missing browser is a loud skip (a failure under
//! `RTCLAB_REQUIRE_INTEROP=1`).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::browser::{Browser, BrowserKind, launch};
use rand::SeedableRng;
use rtclab::sfu::server::{Config, Server};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Frames decoded per remote video stream that count as "decoding".
const DECODING: u64 = 30;

struct Reports {
    rx: mpsc::Receiver<String>,
    /// The last report of each participant (by its id).
    last: HashMap<String, Value>,
}

impl Reports {
    async fn drain_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Ok(Some(body)) = tokio::time::timeout_at(end, self.rx.recv()).await {
            if let Ok(v) = serde_json::from_str::<Value>(&body)
                && let Some(me) = v["me"].as_str()
            {
                self.last.insert(me.to_string(), v);
            }
        }
    }

    /// Remote video streams of `me` that decoded at least `n` frames.
    fn decoding(&self, me: &str, n: u64) -> usize {
        self.last.get(me).map_or(0, |r| {
            r["inbound"].as_array().map_or(0, |a| {
                a.iter()
                    .filter(|i| i["framesDecoded"].as_u64().unwrap_or(0) >= n)
                    .count()
            })
        })
    }

    async fn wait(&mut self, limit: Duration, mut done: impl FnMut(&Reports) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            self.drain_for(Duration::from_millis(500)).await;
            if done(self) {
                return true;
            }
        }
        false
    }
}

async fn start() -> (String, Reports, oneshot::Sender<()>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let cert = rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
        .expect("certificate");
    let (reports, rx) = mpsc::channel(256);
    let server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        sfu: rtclab::sfu::Config::new(cert, Vec::new()),
        reports: Some(reports),
        whip: None,
    })
    .await
    .expect("bind");
    let url = format!("http://{}/sfu/", server.http_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    (
        url,
        Reports {
            rx,
            last: HashMap::new(),
        },
        stop,
    )
}

fn open(kind: BrowserKind, url: &str, room: &str) -> Option<Browser> {
    launch(kind, &format!("{url}?room={room}&autotest=1"))
}

fn dump(r: &Reports, browsers: &mut [Browser]) -> String {
    let mut s = format!("reports: {:#?}\n", r.last);
    for b in browsers {
        s.push_str(&b.process.output());
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_browsers_see_each_other_then_one_leaves_and_one_joins_late() {
    let (url, mut reports, stop) = start().await;
    let Some(a) = open(BrowserKind::Chromium, &url, "trio") else {
        return;
    };
    let Some(b) = open(BrowserKind::Chromium, &url, "trio") else {
        return;
    };
    let Some(c) = open(BrowserKind::Firefox, &url, "trio") else {
        return;
    };
    let mut browsers = vec![a, b, c];
    let ok = reports
        .wait(Duration::from_secs(60), |r| {
            r.last.len() == 3 && r.last.keys().all(|me| r.decoding(me, DECODING) >= 2)
        })
        .await;
    assert!(
        ok,
        "everyone decodes both others:\n{}",
        dump(&reports, &mut browsers)
    );
    // The Firefox participant leaves.
    let firefox = browsers.pop().expect("firefox");
    drop(firefox);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A late Chromium joins; it must decode both within the bound.
    let joined = Instant::now();
    let Some(late) = open(BrowserKind::Chromium, &url, "trio") else {
        return;
    };
    browsers.push(late);
    reports.last.clear();
    let ok = reports
        .wait(Duration::from_secs(30), |r| {
            r.last.len() >= 3
                && r.last.keys().any(|me| {
                    r.decoding(me, 1) >= 2
                        && r.last[me]["inbound"].as_array().is_some_and(|a| {
                            a.iter()
                                .filter(|i| i["framesDecoded"].as_u64().unwrap_or(0) >= 1)
                                .count()
                                == 2
                        })
                        && r.last[me]["streams"]
                            .as_object()
                            .is_some_and(|s| s.len() == 2)
                })
        })
        .await;
    let took = joined.elapsed();
    assert!(
        ok,
        "the late joiner decodes both others:\n{}",
        dump(&reports, &mut browsers)
    );
    eprintln!("late joiner: browser start → both streams decoding in {took:?}");
    let _ = stop.send(());
}

/// Simulcast: two Chromium publish three layers each; one page (p2) caps
/// what it receives at 250 kbit/s. The capped one must get the other's
/// lowest layer (a quarter of 1280×720). Whether a publisher sends its
/// higher layers is its own congestion controller's choice: when p2's
/// uplink estimate lets it send them, the uncapped p1 must get one of
/// them (the SFU probes each subscriber's link to move it up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_layer_its_limit_carries() {
    let (url, mut reports, stop) = start().await;
    let Some(a) = open(BrowserKind::Chromium, &url, "layers") else {
        return;
    };
    let Some(b) = launch(
        BrowserKind::Chromium,
        &format!("{url}?room=layers&autotest=1&maxkbps=250"),
    ) else {
        return;
    };
    let mut browsers = vec![a, b];
    // The width p `me` sees of `other`'s video.
    let width = |r: &Reports, me: &str, other: &str| -> u64 {
        r.last
            .get(me)
            .and_then(|v| v["streams"][other]["width"].as_u64())
            .unwrap_or(0)
    };
    // Whether `me` sends a layer above the lowest.
    let sends_high = |r: &Reports, me: &str| -> bool {
        r.last.get(me).is_some_and(|v| {
            v["outbound"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|o| o["rid"] != "l" && o["frameWidth"].as_u64().unwrap_or(0) > 320)
            })
        })
    };
    let mut p2_sent_high = false;
    let ok = reports
        .wait(Duration::from_secs(45), |r| {
            p2_sent_high |= sends_high(r, "p2");
            let capped_low = width(r, "p2", "p1") == 320;
            capped_low
                && (!p2_sent_high || width(r, "p1", "p2") > 320)
                && r.last.len() == 2
                && (p2_sent_high || r.decoding("p1", DECODING) >= 1)
        })
        .await;
    assert!(
        ok,
        "p2 (250 kbit/s) on p1's lowest layer, and p1 above p2's lowest when p2 sends higher layers:\n{}",
        dump(&reports, &mut browsers)
    );
    eprintln!(
        "p1 sees p2 at {} px wide (p2 sent a higher layer: {p2_sent_high}), p2 sees p1 at {}",
        width(&reports, "p1", "p2"),
        width(&reports, "p2", "p1")
    );
    let _ = stop.send(());
}
