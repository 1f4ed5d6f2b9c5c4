//! The SFU across nodes with real browsers (issue 21): two `rtclab sfu`
//! nodes on loopback sharing rooms over one `redis-server`; node a takes
//! one participant. A Chromium page opens the room on a; two more reach
//! b, which serves them there and cascades the room with a (placement's
//! cascade hook, one link for both). Every page must decode the video of
//! every other, across the link or not; and each track crosses the link
//! once however many subscribers the other node has (a's camera is
//! watched by two pages on b, and still crosses once). A missing browser
//! or Redis is a loud skip (a failure under `RTCLAB_REQUIRE_INTEROP=1`).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::browser::{Browser, BrowserKind, launch};
use common::redis::Redis;
use rand::SeedableRng;
use rtclab::bus::{Bus, RedisBus};
use rtclab::sfu::placement::{self, Placement};
use rtclab::sfu::server::{Config, Handle, Server};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Frames decoded per remote video stream that count as "decoding".
const DECODING: u64 = 30;

/// One node's pages' reports, by participant id (ids are per node).
struct Reports {
    rx: mpsc::Receiver<String>,
    last: HashMap<String, Value>,
}

impl Reports {
    fn drain(&mut self) {
        while let Ok(body) = self.rx.try_recv() {
            if let Ok(v) = serde_json::from_str::<Value>(&body)
                && let Some(me) = v["me"].as_str()
            {
                self.last.insert(me.to_string(), v);
            }
        }
    }

    /// Frames decoded of each remote video stream of each page.
    fn decoded(&self) -> Vec<Vec<u64>> {
        let mut pages: Vec<(&String, &Value)> = self.last.iter().collect();
        pages.sort_by_key(|(k, _)| *k);
        pages
            .into_iter()
            .map(|(_, r)| {
                r["inbound"].as_array().map_or(Vec::new(), |a| {
                    a.iter()
                        .filter(|i| i["audio"] != true)
                        .map(|i| i["framesDecoded"].as_u64().unwrap_or(0))
                        .collect()
                })
            })
            .collect()
    }

    /// Whether `pages` pages each decode `streams` remote videos, at
    /// least `frames` frames of each.
    fn decoding(&self, pages: usize, streams: usize, frames: u64) -> bool {
        let d = self.decoded();
        d.len() == pages
            && d.iter()
                .all(|p| p.iter().filter(|&&f| f >= frames).count() >= streams)
    }
}

/// An SFU node on the bus taking `capacity` participants, in this runtime.
async fn node(
    redis: &str,
    name: &str,
    capacity: usize,
) -> (String, Handle, Arc<Placement>, Reports, oneshot::Sender<()>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
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
    let http: SocketAddr = server.http_addr();
    let url = format!("http://{http}");
    let bus: Arc<dyn Bus> = Arc::new(RedisBus::open(redis).expect("bus"));
    let p = Placement::new(placement::Config::new(bus, name, &url, capacity));
    let handle = server.handle();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.with_placement(p.clone()).run_until(async {
        let _ = stopped.await;
    }));
    let reports = Reports {
        rx,
        last: HashMap::new(),
    };
    (url, handle, p, reports, stop)
}

fn open(url: &str, room: &str) -> Option<Browser> {
    launch(
        BrowserKind::Chromium,
        &format!("{url}/sfu/?room={room}&autotest=1"),
    )
}

fn dump(a: &Reports, b: &Reports, browsers: &mut [Browser]) -> String {
    let mut s = format!("a: {:#?}\nb: {:#?}\n", a.last, b.last);
    for br in browsers {
        s.push_str(&br.process.output());
    }
    s
}

/// Waits (bounded) until `done` of both nodes' reports.
async fn wait(
    a: &mut Reports,
    b: &mut Reports,
    limit: Duration,
    done: impl Fn(&Reports, &Reports) -> bool,
) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.drain();
        b.drain();
        if done(a, b) {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_pages_on_two_nodes_of_one_room_decode_each_other() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(redis) = Redis::start() else {
        return;
    };
    let (url_a, ha, pa, mut ra, stop_a) = node(&redis.url(), "a", 1).await;
    let (url_b, hb, _pb, mut rb, stop_b) = node(&redis.url(), "b", 8).await;
    // Both on the bus before the first page: the room opens on a.
    let load_of_a = |n: usize| {
        let pa = pa.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                let nodes = pa.nodes().await.unwrap_or_default();
                if nodes.get("a").is_some_and(|i| i.load == n) && nodes.contains_key("b") {
                    return true;
                }
                if Instant::now() > end {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(load_of_a(0).await, "both nodes on the bus");
    let room = "across";
    let Some(first) = open(&url_a, room) else {
        return;
    };
    let mut browsers = vec![first];
    // a says it is full before anyone reaches b.
    assert!(load_of_a(1).await, "a carries its page");
    for _ in 0..2 {
        let Some(br) = open(&url_b, room) else {
            return;
        };
        browsers.push(br);
    }
    let ok = wait(&mut ra, &mut rb, Duration::from_secs(90), |a, b| {
        a.decoding(1, 2, DECODING) && b.decoding(2, 2, DECODING)
    })
    .await;
    assert!(
        ok,
        "every page decodes both others' video:\n{}",
        dump(&ra, &rb, &mut browsers)
    );
    assert_eq!(hb.cascades().len(), 1, "b's two pages share one link");
    assert_eq!(ha.accepted_cascades(), 1);
    // Each track crosses once: over a few seconds, what each node sent on
    // the link is at most what its own pages published (a's camera is
    // watched by two pages on b and is not sent twice), and every page's
    // decoded frames keep growing.
    let (sa0, ca0) = ha.stats().await.expect("a");
    let (sb0, cb0) = hb.stats().await.expect("b");
    let before = (ra.decoded(), rb.decoded());
    tokio::time::sleep(Duration::from_secs(5)).await;
    ra.drain();
    rb.drain();
    let (sa1, ca1) = ha.stats().await.expect("a");
    let (sb1, cb1) = hb.stats().await.expect("b");
    let own = |s0: rtclab::sfu::Stats,
               c0: rtclab::sfu::cascade::CascadeStats,
               s1: rtclab::sfu::Stats,
               c1: rtclab::sfu::cascade::CascadeStats| {
        (s1.received - c1.rtp_received) - (s0.received - c0.rtp_received)
    };
    let (own_a, own_b) = (own(sa0, ca0, sa1, ca1), own(sb0, cb0, sb1, cb1));
    let (sent_a, sent_b) = (ca1.rtp_sent - ca0.rtp_sent, cb1.rtp_sent - cb0.rtp_sent);
    let fwd_b = sb1.forwarded - sb0.forwarded;
    eprintln!(
        "over 5 s: a's pages published {own_a} packets, a sent {sent_a} on the link; \
         b's published {own_b}, b sent {sent_b}; b forwarded {fwd_b} to its pages"
    );
    assert!(sent_a > 0 && sent_b > 0, "both directions cross");
    // Once each: not more (not once per subscriber), and not fewer (every
    // layer crosses; a few at the window's edges may fall either side).
    assert!(
        sent_a <= own_a,
        "a's packets cross at most once: {sent_a} > {own_a}"
    );
    assert!(
        sent_b <= own_b,
        "b's packets cross at most once: {sent_b} > {own_b}"
    );
    assert!(sent_a * 100 >= own_a * 90, "a's cross: {sent_a} of {own_a}");
    assert!(sent_b * 100 >= own_b * 90, "b's cross: {sent_b} of {own_b}");
    let grew = |b: &[Vec<u64>], a: &[Vec<u64>]| {
        b.iter()
            .zip(a)
            .all(|(x, y)| x.iter().zip(y).all(|(f0, f1)| f1 > f0))
    };
    assert!(
        grew(&before.0, &ra.decoded()) && grew(&before.1, &rb.decoded()),
        "frames decoded keep growing: {before:?} → {:?} {:?}",
        ra.decoded(),
        rb.decoded()
    );
    // The pages leave: b's link closes on both nodes, and nothing of the
    // room stays in Redis.
    drop(browsers);
    let end = Instant::now() + Duration::from_secs(60);
    while !(hb.cascades().is_empty() && ha.accepted_cascades() == 0) {
        assert!(Instant::now() < end, "the link closed once the pages left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let probe = RedisBus::open(&redis.url()).expect("bus");
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let keys = probe.keys("rtclab:sfu:owner:").await.unwrap_or_default();
        if keys.is_empty() {
            break;
        }
        assert!(Instant::now() < end, "left in Redis: {keys:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = (stop_a.send(()), stop_b.send(()));
}
