//! Cascading over real sockets (issue 21): two `rtclab sfu` servers on
//! loopback, node A linked to node B by `POST /cascade/ROOM`
//! (`Handle::cascade`); a Rust peer publishes VP8 into A by WHIP, three
//! play the room from B by WHEP and decode its frames; the link carried
//! each published packet once (B's three viewers did not triple it).

#[path = "common/sfu_server.rs"]
mod sfu_server;

use std::net::SocketAddr;
use std::time::Duration;

use rtclab::peer;
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::speed::sfu::{GenPeer, SfuUnderTest, Whip, http_request, receive_only, vp8_frame};
use sfu_server::start_sfu;

#[test]
fn a_publisher_on_one_node_plays_on_the_other_and_crosses_once() {
    let (http_a, node_a) = start_sfu(None);
    let (http_b, node_b) = start_sfu(None);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let room = "cascaded";
    rt.block_on(node_a.cascade(room, &format!("http://{http_b}")))
        .expect("A links the room to B");
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let bind = || {
        rt.block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
            .expect("bind")
    };
    let mut live = bind();
    let video = live.add_track(MediaKind::Video).expect("track");
    let mut publisher = GenPeer::new(live);
    Whip::at(http_a)
        .publish(room, &mut publisher)
        .expect("WHIP into A");
    let mut p = publisher.live;
    let mut n = 0u32;
    // Publish until B has the remote track (WHEP takes the tracks that
    // exist when it offers).
    let published_on_b = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let r = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut f = Vec::new();
                        vp8_frame(&mut f, 3000, n % 30 == 0, n);
                        let _ = p.send_frame(video, n * 3000, &f);
                        n += 1;
                        if n % 10 == 0
                            && node_b.stats().await.is_some_and(|(s, c)| c.rtp_received > 0 && s.received > 0)
                        {
                            return;
                        }
                    }
                    e = p.next_event() => { e.expect("io"); }
                }
            }
        })
        .await;
        r.is_ok()
    });
    assert!(published_on_b, "B receives the link's packets");
    let mut viewers = Vec::new();
    let mut whep = Whip::at(http_b);
    for _ in 0..3 {
        let mut live = bind();
        receive_only(&mut live).expect("recvonly");
        let mut viewer = GenPeer::new(live);
        whep.subscribe(room, &[], &mut viewer).expect("WHEP from B");
        viewers.push(viewer.live);
    }
    let (mut a, mut b, mut c) = (viewers.remove(0), viewers.remove(0), viewers.remove(0));
    let (got, sent_from) = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut frames = [0usize; 3];
        let before = node_a.stats().await.expect("A").1.rtp_sent;
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while frames.iter().any(|&f| f < 60) {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut f = Vec::new();
                        vp8_frame(&mut f, 3000, n % 30 == 0, n);
                        let _ = p.send_frame(video, n * 3000, &f);
                        n += 1;
                    }
                    e = p.next_event() => { e.expect("io"); }
                    e = a.next_event() => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames[0] += 1; }
                    }
                    e = b.next_event() => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames[1] += 1; }
                    }
                    e = c.next_event() => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames[2] += 1; }
                    }
                }
            }
        })
        .await;
        (frames, before)
    });
    assert!(
        got.iter().all(|&f| f >= 60),
        "frames through A, the link and B: {got:?}"
    );
    let (sa, ca) = rt.block_on(node_a.stats()).expect("A");
    let (sb, cb) = rt.block_on(node_b.stats()).expect("B");
    let published: u64 = p
        .connection()
        .stats()
        .outbound
        .iter()
        .map(|o| o.packets_sent)
        .sum();
    eprintln!(
        "published {published}; A {sa:?} {ca:?}; B {sb:?} {cb:?}; link since viewers {}",
        ca.rtp_sent - sent_from
    );
    // Each published packet crossed once: the link never carried more
    // than was published, though B forwarded it to three viewers.
    assert!(ca.rtp_sent <= sa.received, "{ca:?} {sa:?}");
    assert!(ca.rtp_sent * 100 >= sa.received * 90, "{ca:?} {sa:?}");
    assert!(sb.forwarded >= (ca.rtp_sent - sent_from) * 2, "{sb:?}");
    assert_eq!(sa.forwarded, 0, "A has no subscriber of its own: {sa:?}");
}

/// `POST /cascade/ROOM` wants the node's token, an SDP body and a room
/// name; a link to a node that is not there fails with a clear error.
#[test]
fn the_cascade_endpoint_refuses_what_it_should() {
    let (http, node) = start_sfu(Some("s3cret"));
    let post = |headers: &[(&str, &str)], path: &str| {
        http_request(
            http,
            "POST",
            path,
            headers,
            b"v=0\r\n",
            Duration::from_secs(5),
        )
        .expect("POST")
        .status
    };
    assert_eq!(
        post(&[("Content-Type", "application/sdp")], "/cascade/r"),
        401
    );
    let auth = ("Authorization", "Bearer s3cret");
    assert_eq!(post(&[auth], "/cascade/r"), 415);
    assert_eq!(
        post(
            &[auth, ("Content-Type", "application/sdp")],
            "/cascade/r%20x"
        ),
        400
    );
    // A bad offer: 400 with the reason, and no link left behind.
    assert_eq!(
        post(&[auth, ("Content-Type", "application/sdp")], "/cascade/r"),
        400
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let url = format!("http://{}", dead.local_addr().expect("addr"));
    drop(dead);
    let e = rt
        .block_on(node.cascade("r", &url))
        .expect_err("nobody there");
    assert!(e.contains("/cascade/r"), "{e}");
    let (s, _) = rt.block_on(node.stats()).expect("stats");
    assert_eq!(s, rtclab::sfu::Stats::default());
}
