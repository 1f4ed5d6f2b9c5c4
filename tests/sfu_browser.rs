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
    start_with(true).await
}

/// The server, with scalable video on.
async fn start_scalable() -> (String, Reports, oneshot::Sender<()>) {
    start_config(true, true, None).await
}

/// The server, with the keyframe cache on or off.
async fn start_with(keyframe_cache: bool) -> (String, Reports, oneshot::Sender<()>) {
    start_config(keyframe_cache, false, None).await
}

/// The server; `capture`: its socket captured there
/// ([`Server::set_capture_file`]).
async fn start_config(
    keyframe_cache: bool,
    scalable_video: bool,
    capture: Option<std::fs::File>,
) -> (String, Reports, oneshot::Sender<()>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let cert = rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
        .expect("certificate");
    let (reports, rx) = mpsc::channel(256);
    let mut sfu = rtclab::sfu::Config::new(cert, Vec::new());
    sfu.keyframe_cache = keyframe_cache;
    sfu.scalable_video = scalable_video;
    let mut server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        sfu,
        reports: Some(reports),
        whip: None,
    })
    .await
    .expect("bind");
    if let Some(file) = capture {
        server.set_capture_file(file);
    }
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

/// The capped page's name and the other's, once both report (told apart
/// by the cap in the capped page's reports, not by join order).
fn names(r: &Reports) -> Option<(String, String)> {
    let capped = r
        .last
        .iter()
        .find(|(_, v)| v["maxkbps"].as_u64().is_some())?
        .0;
    let free = r.last.keys().find(|k| *k != capped)?;
    Some((capped.clone(), free.clone()))
}

/// The width page `me` sees of `other`'s video.
fn width(r: &Reports, me: &str, other: &str) -> u64 {
    r.last
        .get(me)
        .and_then(|v| v["streams"][other]["width"].as_u64())
        .unwrap_or(0)
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

/// Simulcast: two Chromium publish three layers each; one page caps what
/// it receives at 100 kbit/s. The capped page must get a layer below the
/// other's top one (the lowest, a quarter of 1280×720, in most runs); the uncapped page
/// must move up to a higher layer of the capped one's (the SFU probes its
/// link and switches at a keyframe), once the capped page's own uplink
/// estimate lets it send one (its congestion controller's choice: with
/// the SFU's offers keeping `a=simulcast:recv`, it does within seconds).
/// The pages are told apart by the cap their reports carry, not by join
/// order (which the SFU's names follow).
///
/// Chromium's encoder decides which layers it sends: on a loaded machine
/// it has kept its top layer off for the whole minute and the capped page
/// got the middle layer, the other's top one then (1 run of 3 in one CI
/// session; the SFU picks by each layer's measured rate, and layers that
/// Chromium limits for bandwidth can measure in any order; the rates of
/// that run were not recorded). The scenario runs once more, with fresh
/// browsers and SFU, before it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_the_layer_its_limit_carries() {
    let mut failure = String::new();
    for attempt in 1..=2 {
        match simulcast_layers_by_limit().await {
            None => return,
            Some(Ok(line)) => {
                eprintln!("{line}");
                return;
            }
            Some(Err(e)) => {
                eprintln!("simulcast attempt {attempt} failed");
                failure = e;
            }
        }
    }
    panic!("{failure}");
}

/// One run of [`each_subscriber_gets_the_layer_its_limit_carries`]: `None`
/// without Chromium, else what it saw.
async fn simulcast_layers_by_limit() -> Option<Result<String, String>> {
    let (url, mut reports, stop) = start().await;
    let a = open(BrowserKind::Chromium, &url, "layers")?;
    let b = launch(
        BrowserKind::Chromium,
        &format!("{url}?room=layers&autotest=1&maxkbps=100"),
    )?;
    let mut browsers = vec![a, b];
    // Whether `me` sends a layer above the lowest.
    let sends_high = |r: &Reports, me: &str| -> bool {
        r.last.get(me).is_some_and(|v| {
            v["outbound"].as_array().is_some_and(|a| {
                a.iter().any(|o| {
                    o["rid"] != "l"
                        && o["frameWidth"].as_u64().unwrap_or(0) > 320
                        && o["targetBitrate"].as_u64().unwrap_or(0) > 0
                })
            })
        })
    };
    // The widest layer `me` sends now.
    let top_width = |r: &Reports, me: &str| -> u64 {
        r.last
            .get(me)
            .and_then(|v| v["outbound"].as_array())
            .map_or(0, |a| {
                a.iter()
                    .filter(|o| o["targetBitrate"].as_u64().unwrap_or(0) > 0)
                    .filter_map(|o| o["frameWidth"].as_u64())
                    .max()
                    .unwrap_or(0)
            })
    };
    let ok = reports
        .wait(Duration::from_secs(60), |r| {
            let Some((capped, free)) = names(r) else {
                return false;
            };
            // The SFU picks by each layer's measured rate: a middle layer
            // of a still picture can measure under the cap, so the capped
            // page must get a layer below the other's top, not always
            // the lowest (it got 320 px in most runs, 640 px once).
            let seen = width(r, &capped, &free);
            let top = top_width(r, &free);
            seen > 0
                && (seen < top || top <= 320)
                && sends_high(r, &capped)
                && width(r, &free, &capped) > 320
        })
        .await;
    if !ok {
        let failure = format!(
            "the capped page below the other's top layer, and the other above the capped one's lowest:\n{}",
            dump(&reports, &mut browsers)
        );
        drop(browsers);
        let _ = stop.send(());
        return Some(Err(failure));
    }
    let (capped, free) = names(&reports).unwrap();
    let line = format!(
        "{free} (uncapped) sees {capped} at {} px wide, {capped} (100 kbit/s) sees {free} at {}",
        width(&reports, &free, &capped),
        width(&reports, &capped, &free)
    );
    drop(browsers);
    let _ = stop.send(());
    Some(Ok(line))
}

/// Instant join, measured in the browser: a Chromium publishes for a few
/// seconds (its VP8 encoder sends no periodic keyframes), then a second
/// Chromium joins; its page times its join (WebSocket open) and the
/// track's arrival to the first frame its video element presents. Once
/// with the SFU's keyframe cache, once without (a PLI round trip to the
/// publisher instead). Both must come within 10 s of joining; the figures
/// are printed for the note. `RTCLAB_JOIN_ROUNDS=N` alternates N rounds of
/// each (one in CI: on a shared machine one sample is noise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_first_frame_with_and_without_the_cache() {
    let rounds: usize = std::env::var("RTCLAB_JOIN_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut figures = Vec::new();
    for cache in std::iter::repeat_n([true, false], rounds).flatten() {
        let (url, mut reports, stop) = start_with(cache).await;
        let Some(first) = open(BrowserKind::Chromium, &url, "join") else {
            return;
        };
        let mut browsers = vec![first];
        let ok = reports
            .wait(Duration::from_secs(40), |r| {
                r.last
                    .values()
                    .any(|v| v["outbound"].as_array().is_some_and(|a| !a.is_empty()))
            })
            .await;
        assert!(
            ok,
            "the publisher sends:\n{}",
            dump(&reports, &mut browsers)
        );
        // Well past its first keyframe.
        reports.drain_for(Duration::from_secs(5)).await;
        let publisher = reports.last.keys().next().cloned().unwrap();
        let Some(late) = open(BrowserKind::Chromium, &url, "join") else {
            return;
        };
        browsers.push(late);
        let joiner = |r: &Reports| r.last.keys().find(|k| **k != publisher).cloned();
        let first_frame = |r: &Reports| -> Option<(u64, u64)> {
            let me = joiner(r)?;
            let f = &r.last[&me]["streams"][&publisher]["firstFrame"];
            Some((f["sinceJoin"].as_u64()?, f["sinceTrack"].as_u64()?))
        };
        let ok = reports
            .wait(Duration::from_secs(30), |r| first_frame(r).is_some())
            .await;
        assert!(
            ok,
            "the late joiner presents a frame:\n{}",
            dump(&reports, &mut browsers)
        );
        let (since_join, since_track) = first_frame(&reports).unwrap();
        assert!(since_join < 10_000, "{since_join} ms after joining");
        figures.push((cache, since_join, since_track));
        drop(browsers);
        let _ = stop.send(());
    }
    for (cache, join, track) in &figures {
        eprintln!(
            "late joiner, keyframe cache {}: join → first frame {join} ms, track → first frame {track} ms",
            if *cache { "on " } else { "off" }
        );
    }
    for cache in [true, false] {
        let median = |pick: fn(&(bool, u64, u64)) -> u64| {
            let mut v: Vec<u64> = figures.iter().filter(|f| f.0 == cache).map(pick).collect();
            v.sort_unstable();
            v[v.len() / 2]
        };
        eprintln!(
            "median of {rounds}, keyframe cache {}: join → first frame {} ms, track → first frame {} ms",
            if cache { "on " } else { "off" },
            median(|f| f.1),
            median(|f| f.2)
        );
    }
}

/// Scalable video: two Chromium publish one AV1 stream each with three
/// spatial and three temporal layers (`L3T3_KEY`); the SFU reads each
/// frame's Dependency Descriptor and forwards per subscriber the decode
/// target its link carries. One page caps what it receives at 100
/// kbit/s. Over a 5 s window, measured in the pages: the capped page
/// receives at most twice its cap (a key frame's bytes on top of its
/// target) and less than half of what the other publishes, the uncapped
/// page more than the capped one; both decode.
///
/// The pages need only have published two spatial layers (640 px) at
/// some point, not three at once: Chromium's encoder drops its top layer
/// while its own estimate ramps, and on CI's two loaded cores one page's
/// stayed at 640 px for a minute (limitation "bandwidth", estimate 700
/// kbit/s), so requiring 1280 px on both tested Chromium's ramp, not us.
/// Chromium then reports the mode it sends (`L2T3_KEY`), which counts.
/// In 11 full runs of this file on a loaded machine (load 15-20), VP9
/// failed this wait twice with a page at `L1T3`, 320 px for the whole
/// minute (limitation "bandwidth", uplink estimate 270-290 kbit/s), both
/// pages decoding: the publisher's ramp again.
///
/// The check is on bytes, not on the width seen: in `_KEY` modes the
/// spatial layers depend on each other only at key frames, so a decode
/// target of S2 carries S2's frames alone, and Chromium's AV1 encoder
/// (bandwidth limited on this shared machine) gives S2 or S1 as little as
/// 40-130 kbit/s: a 1280 px target at 7.5 fps can fit a cap that a 320 px
/// one at 30 fps does not, and the SFU picks by rate.
///
/// It needs the SFU's re-offers to keep `a=extmap-allow-mixed` (without
/// it Chromium cannot send the descriptor's template structure, which
/// takes two-byte elements, and turns the descriptor off).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalable_video_each_subscriber_gets_the_decode_target_it_carries() {
    scalable_video("AV1", "").await;
}

/// The same with VP9 `L3T3_KEY` without the Dependency Descriptor (the
/// pages stop it, `?dd=0`: Chromium 156 sends it for VP9 too when it is
/// negotiated, and the SFU then forwards by it): the layers are read from
/// the VP9 payload descriptor (flexible mode, layer indices in every
/// packet, [`rtclab::sfu::vp9svc`]); the same byte-rate checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scalable_vp9_each_subscriber_gets_the_layers_it_carries() {
    scalable_video("VP9", "&dd=0").await;
}

/// Two Chromium publish `codec` in `L3T3_KEY` (`extra`: more of the
/// pages' query), one capped at 100 kbit/s (see
/// [`scalable_video_each_subscriber_gets_the_decode_target_it_carries`]).
async fn scalable_video(codec: &str, extra: &str) {
    const CAP_KBPS: f64 = 100.0;
    let (url, mut reports, stop) = start_scalable().await;
    let room = format!("svc-{codec}");
    let Some(a) = launch(
        BrowserKind::Chromium,
        &format!("{url}?room={room}&autotest=1&codec={codec}&svc=L3T3_KEY{extra}"),
    ) else {
        return;
    };
    let Some(b) = launch(
        BrowserKind::Chromium,
        &format!(
            "{url}?room={room}&autotest=1&codec={codec}&svc=L3T3_KEY{extra}&maxkbps={}",
            CAP_KBPS as u64
        ),
    ) else {
        return;
    };
    let mut browsers = vec![a, b];
    // Widest L3T3_KEY frame each page has reported publishing so far.
    let mut widest: HashMap<String, u64> = HashMap::new();
    let ok = reports
        .wait(Duration::from_secs(60), |r| {
            for (me, v) in &r.last {
                let w = v["outbound"].as_array().into_iter().flatten();
                let w = w
                    // Chromium reports the mode it sends now: `L2T3_KEY`
                    // with its top layer off, `L1T3` with one layer left.
                    .filter(|o| {
                        o["scalabilityMode"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("L3") || m.starts_with("L2"))
                    })
                    .filter_map(|o| o["frameWidth"].as_u64())
                    .max()
                    .unwrap_or(0);
                let seen = widest.entry(me.clone()).or_default();
                *seen = (*seen).max(w);
            }
            names(r).is_some_and(|(capped, free)| {
                [&capped, &free]
                    .iter()
                    .all(|me| widest.get(*me).is_some_and(|w| *w >= 640))
                    && r.decoding(&capped, DECODING) == 1
                    && r.decoding(&free, DECODING) == 1
            })
        })
        .await;
    assert!(
        ok,
        "both publish L3T3_KEY with at least two spatial layers (640 px) and decode the other \
         (widest seen: {widest:?}):\n{}",
        dump(&reports, &mut browsers)
    );
    // Per page: video bytes received, frames decoded, video bytes sent.
    let counters = |r: &Reports, me: &str| -> [u64; 3] {
        let v = &r.last[me];
        let inbound = v["inbound"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["framesDecoded"].is_u64()));
        let get = |o: Option<&Value>, k: &str| o.and_then(|o| o[k].as_u64()).unwrap_or(0);
        let sent = v["outbound"]
            .as_array()
            .map_or(0, |a| a.iter().map(|o| get(Some(o), "bytesSent")).sum());
        [
            get(inbound, "bytesReceived"),
            get(inbound, "framesDecoded"),
            sent,
        ]
    };
    let (capped, free) = names(&reports).unwrap();
    let mut windows = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    let passed = loop {
        let before = [counters(&reports, &capped), counters(&reports, &free)];
        let t0 = Instant::now();
        reports.drain_for(Duration::from_secs(5)).await;
        let secs = t0.elapsed().as_secs_f64();
        let after = [counters(&reports, &capped), counters(&reports, &free)];
        let rate = |i: usize, k: usize| {
            after[i][k].saturating_sub(before[i][k]) as f64 / secs
                * if k == 1 { 1.0 } else { 0.008 }
        };
        // kbit/s received, fps decoded, kbit/s the other publishes.
        let w = (
            [rate(0, 0), rate(0, 1), rate(1, 2)],
            [rate(1, 0), rate(1, 1), rate(0, 2)],
            width(&reports, &capped, &free),
            width(&reports, &free, &capped),
        );
        windows.push(w);
        let ([c_rx, c_fps, f_tx], [f_rx, f_fps, _], _, _) = w;
        if c_rx <= 2.0 * CAP_KBPS && c_rx < f_tx / 2.0 && f_rx > c_rx && c_fps > 3.0 && f_fps > 3.0
        {
            break true;
        }
        if Instant::now() > end {
            break false;
        }
    };
    assert!(
        passed,
        "the capped page under its cap and well under what the other sends, the other above it, both decoding; \
         per 5 s window ([kbit/s in, fps, the other's kbit/s out] capped, then uncapped; widths seen): {windows:#?}\n{}",
        dump(&reports, &mut browsers)
    );
    let ([c_rx, c_fps, f_tx], [f_rx, f_fps, c_tx], c_w, f_w) = windows[windows.len() - 1];
    eprintln!(
        "SVC {codec}: {free} (uncapped) receives {capped}'s {c_tx:.0} kbit/s as {f_rx:.0} kbit/s, {f_w} px, {f_fps:.0} fps; \
         {capped} ({CAP_KBPS} kbit/s) receives {free}'s {f_tx:.0} kbit/s as {c_rx:.0} kbit/s, {c_w} px, {c_fps:.0} fps"
    );
    let _ = stop.send(());
}

/// Not a check: how `tests/fixtures/rtp/vp9_chromium_l3t3_key.txt` was
/// made. One Chromium publishes VP9 `L3T3_KEY` to the SFU, which captures
/// its socket with the SRTP decrypted ([`Server::set_capture_file`]);
/// the publisher's video packets (the SSRC with the most RTP packets
/// inbound on `srtp-plaintext`) are written to `$RTCLAB_VP9_CAPTURE` as
/// `seq timestamp marker payload-hex` lines. Run by hand:
/// `RTCLAB_VP9_CAPTURE=/tmp/vp9.txt cargo test --test sfu_browser -- --ignored capture_vp9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes a fixture; run by hand"]
async fn capture_vp9_svc_publisher() {
    use rtclab::capture::pcapng;
    let Ok(out) = std::env::var("RTCLAB_VP9_CAPTURE") else {
        return;
    };
    let pcap = std::env::temp_dir().join(format!("rtclab-vp9-{}.pcapng", std::process::id()));
    let file = std::fs::File::create(&pcap).expect("pcap");
    let (url, mut reports, stop) = start_config(true, true, Some(file)).await;
    let Some(a) = launch(
        BrowserKind::Chromium,
        &format!("{url}?room=cap&autotest=1&codec=VP9&svc=L3T3_KEY"),
    ) else {
        return;
    };
    let secs: u64 = std::env::var("RTCLAB_VP9_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    reports.drain_for(Duration::from_secs(secs)).await;
    eprintln!("{:#?}", reports.last);
    drop(a);
    let _ = stop.send(());
    // The capture is flushed once a second, and when the server stops.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let data = std::fs::read(&pcap).expect("read pcap");
    let cap = pcapng::read(&data).expect("pcapng");
    let mut by_ssrc: HashMap<u32, Vec<Vec<u8>>> = HashMap::new();
    for p in &cap.packets {
        let iface = &cap.interfaces[p.interface];
        if iface.name != "srtp-plaintext" || p.direction != Some(pcapng::Direction::Inbound) {
            continue;
        }
        let Some(udp) = pcapng::udp(iface.link_type, p.data) else {
            continue;
        };
        if let Ok(rtp) = rtclab::rtp::RtpPacket::new_checked(udp.payload)
            && !(200..=206).contains(&(udp.payload[1] & 0x7f | 0x80))
        {
            by_ssrc
                .entry(rtp.ssrc())
                .or_default()
                .push(udp.payload.to_vec());
        }
    }
    let video = by_ssrc.values().max_by_key(|v| v.len()).expect("some RTP");
    let mut text = String::new();
    for p in video {
        let rtp = rtclab::rtp::RtpPacket::new_checked(p).unwrap();
        let hex: String = rtp.payload().iter().map(|b| format!("{b:02x}")).collect();
        text.push_str(&format!(
            "{} {} {} {} {hex}\n",
            rtp.sequence_number(),
            rtp.timestamp(),
            u8::from(rtp.marker()),
            rtp.payload_type()
        ));
    }
    std::fs::write(&out, text).expect("write");
    let _ = std::fs::remove_file(&pcap);
}
