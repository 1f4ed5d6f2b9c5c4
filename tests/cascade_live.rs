//! Cascading over real sockets (issue 21): two `rtclab sfu` servers on
//! loopback, node A linked to node B by `POST /cascade/ROOM`
//! (`Handle::cascade`); a Rust peer publishes VP8 into A by WHIP, three
//! play the room from B by WHEP and decode its frames; the link carried
//! each published packet once (B's three viewers did not triple it).

#[path = "common/sfu_server.rs"]
mod sfu_server;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtclab::peer;
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::speed::sfu::{GenPeer, SfuUnderTest, Whip, http_request, receive_only, vp8_frame};
use sfu_server::{start_sfu, start_sfu_at};

#[test]
fn a_publisher_on_one_node_plays_on_the_other_and_crosses_once() {
    let (http_a, node_a) = start_sfu(None);
    let (http_b, node_b) = start_sfu(None);
    let rt = runtime();
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
    let rt = runtime();
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

// ---- three nodes, teardown, --public-ip ---------------------------------

/// Sends VP8 frames at 30 frames/s from `p` while every viewer's decoded
/// frames are counted, until `done(frames)` or `limit`: the counts.
fn run(
    rt: &tokio::runtime::Runtime,
    p: &mut LivePeer,
    video: rtclab::peer::TrackId,
    n: &mut u32,
    viewers: &mut [LivePeer],
    limit: Duration,
    done: impl Fn(&[usize]) -> bool,
) -> Vec<usize> {
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut frames = vec![0usize; viewers.len()];
        let _ = tokio::time::timeout(limit, async {
            while !done(&frames) {
                let any_viewer = async {
                    if viewers.is_empty() {
                        return std::future::pending().await;
                    }
                    let polls = viewers.iter_mut().map(|v| Box::pin(v.next_event()));
                    let (e, i, _) = futures_util::future::select_all(polls).await;
                    (e, i)
                };
                tokio::select! {
                    _ = tick.tick() => {
                        let mut f = Vec::new();
                        vp8_frame(&mut f, 3000, *n % 30 == 0, *n);
                        let _ = p.send_frame(video, *n * 3000, &f);
                        *n += 1;
                    }
                    e = p.next_event() => { e.expect("io"); }
                    (e, i) = any_viewer => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames[i] += 1; }
                    }
                }
            }
        })
        .await;
        frames
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn bind(rt: &tokio::runtime::Runtime) -> LivePeer {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    rt.block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
        .expect("bind")
}

/// A WHIP publisher of VP8 into `room` at `http`: it, its track and its
/// WHIP resource.
fn whip_publisher(
    rt: &tokio::runtime::Runtime,
    http: SocketAddr,
    room: &str,
) -> (LivePeer, rtclab::peer::TrackId, String) {
    let mut live = bind(rt);
    let video = live.add_track(MediaKind::Video).expect("track");
    let mut publisher = GenPeer::new(live);
    let leg = Whip::at(http)
        .publish(room, &mut publisher)
        .expect("WHIP publish");
    (publisher.live, video, leg.resource)
}

/// A WHEP viewer of `room` at `http`, and its resource.
fn whep_viewer(rt: &tokio::runtime::Runtime, http: SocketAddr, room: &str) -> (LivePeer, String) {
    let mut live = bind(rt);
    receive_only(&mut live).expect("recvonly");
    let mut viewer = GenPeer::new(live);
    let leg = Whip::at(http)
        .subscribe(room, &[], &mut viewer)
        .expect("WHEP play");
    (viewer.live, leg.resource)
}

fn delete(http: SocketAddr, resource: &str) -> u16 {
    http_request(http, "DELETE", resource, &[], b"", Duration::from_secs(5))
        .expect("DELETE")
        .status
}

/// Publishes (bounded) until `cond` holds of the nodes' counters.
fn publish_until(
    rt: &tokio::runtime::Runtime,
    p: &mut LivePeer,
    video: rtclab::peer::TrackId,
    n: &mut u32,
    what: &str,
    cond: impl Fn() -> bool,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        run(rt, p, video, n, &mut [], Duration::from_millis(200), |_| {
            false
        });
    }
}

/// Waits (bounded) until `cond`.
fn wait_until(what: &str, cond: impl Fn() -> bool) -> Duration {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// A room on three nodes, a star around A (as placement builds it: B
/// and C link to the owner): B's publisher plays on A and on C; its
/// packets cross B→A once and A→C once, and never come back to B.
#[test]
fn three_nodes_in_a_star_forward_each_track_once_per_link() {
    let (http_a, node_a) = start_sfu(None);
    let (http_b, node_b) = start_sfu(None);
    let (http_c, node_c) = start_sfu(None);
    let rt = runtime();
    let room = "star";
    let hub = format!("http://{http_a}");
    rt.block_on(node_b.cascade(room, &hub))
        .expect("B links to A");
    rt.block_on(node_c.cascade(room, &hub))
        .expect("C links to A");
    let (mut p, video, _) = whip_publisher(&rt, http_b, room);
    let mut n = 0;
    publish_until(
        &rt,
        &mut p,
        video,
        &mut n,
        "C receives B's track through A",
        || {
            rt.block_on(node_c.stats())
                .is_some_and(|(_, c)| c.rtp_received > 0)
        },
    );
    let (on_a, _) = whep_viewer(&rt, http_a, room);
    let (on_c, _) = whep_viewer(&rt, http_c, room);
    let mut viewers = [on_a, on_c];
    let got = run(
        &rt,
        &mut p,
        video,
        &mut n,
        &mut viewers,
        Duration::from_secs(15),
        |f| f.iter().all(|&x| x >= 60),
    );
    assert!(got.iter().all(|&f| f >= 60), "frames on A and C: {got:?}");
    let (sa, ca) = rt.block_on(node_a.stats()).expect("A");
    let (sb, cb) = rt.block_on(node_b.stats()).expect("B");
    let (sc, cc) = rt.block_on(node_c.stats()).expect("C");
    eprintln!("A {sa:?} {ca:?}\nB {sb:?} {cb:?}\nC {sc:?} {cc:?}");
    // B sends its publisher's packets once, on its one link.
    assert!(cb.rtp_sent <= sb.received, "{cb:?} {sb:?}");
    assert!(cb.rtp_sent * 100 >= sb.received * 90, "{cb:?} {sb:?}");
    // A relays what came from B once to C, and nothing back to B.
    assert!(ca.rtp_sent <= ca.rtp_received, "{ca:?}");
    assert!(ca.rtp_sent * 100 >= ca.rtp_received * 80, "{ca:?}");
    assert_eq!(cb.rtp_received, 0, "nothing came back to B: {cb:?}");
    // C sends nothing: it has no publisher, and relays no further.
    assert_eq!(cc.rtp_sent, 0, "{cc:?}");
    assert!(cc.rtp_received <= ca.rtp_sent, "{cc:?} {ca:?}");
}

/// Links close when a room empties: the node whose last participant
/// left closes its link, the other node learns it at once (DTLS
/// close_notify) and the link's resource is `DELETE`d; a `DELETE` of the
/// resource closes it too. `Handle::cascade` reuses an open link.
#[test]
fn a_link_closes_on_both_nodes_when_its_room_empties() {
    let (http_a, node_a) = start_sfu(None);
    let (http_b, node_b) = start_sfu(None);
    let rt = runtime();
    let to_b = format!("http://{http_b}");
    let closed = || node_a.cascades().is_empty() && node_b.accepted_cascades() == 0;
    // A DELETE of the resource closes the link on both nodes.
    rt.block_on(node_a.cascade("idle", &to_b)).expect("link");
    let (_, _, resource) = node_a.cascades().pop().expect("a link");
    assert!(
        resource.starts_with(&format!("{to_b}/cascade/idle/")),
        "{resource}"
    );
    let path = resource.strip_prefix(&to_b).expect("path");
    // Connected first (loopback: milliseconds): a link closed before its
    // DTLS is up sends no close_notify, and its other end learns only
    // when its ICE checks go unanswered.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(delete(http_b, path), 200);
    assert_eq!(delete(http_b, path), 404, "gone");
    wait_until("the link closed on A after B's DELETE", closed);
    // A room with a publisher on A and a viewer on B; a second cascade
    // call for it gives back the same link.
    let room = "emptied";
    let link = rt.block_on(node_a.cascade(room, &to_b)).expect("link");
    let again = rt.block_on(node_a.cascade(room, &to_b)).expect("link");
    assert_eq!(link, again, "one link per room and node");
    assert_eq!(node_a.cascades().len(), 1);
    let (mut p, video, res_p) = whip_publisher(&rt, http_a, room);
    let mut n = 0;
    publish_until(&rt, &mut p, video, &mut n, "B receives A's track", || {
        rt.block_on(node_b.stats())
            .is_some_and(|(_, c)| c.rtp_received > 0)
    });
    let (v, res_v) = whep_viewer(&rt, http_b, room);
    let mut viewers = [v];
    let got = run(
        &rt,
        &mut p,
        video,
        &mut n,
        &mut viewers,
        Duration::from_secs(10),
        |f| f[0] >= 10,
    );
    assert!(got[0] >= 10, "frames on B: {got:?}");
    // The viewer, B's last participant of the room, leaves: B closes the
    // link, A hears it and forgets its side.
    assert_eq!(delete(http_b, &res_v), 200);
    let took = wait_until("the link closed on both nodes after B emptied", closed);
    eprintln!("link closed on both nodes {took:?} after B's last participant left");
    // Linked again; now A's last participant leaves: A closes the link
    // and DELETEs it at B.
    rt.block_on(node_a.cascade(room, &to_b))
        .expect("link again");
    publish_until(
        &rt,
        &mut p,
        video,
        &mut n,
        "B receives A's track again",
        || node_b.accepted_cascades() == 1,
    );
    assert_eq!(delete(http_a, &res_p), 200);
    let took = wait_until("the link closed on both nodes after A emptied", closed);
    eprintln!("link closed on both nodes {took:?} after A's last participant left");
}

/// `--public-ip`: the host candidate every answer carries (WHIP, the
/// page's WebSocket, a cascade link's `POST`) names the public address,
/// with the socket's port.
#[test]
fn candidates_carry_the_public_ip() {
    use futures_util::{SinkExt, StreamExt};
    use rand::SeedableRng;
    use rtclab::datachannel::ChannelInit;
    use rtclab::peer::{Config as PeerConfig, PeerConnection, SdpType, TrackCodec};
    use tokio_tungstenite::tungstenite::Message;
    let public = "192.0.2.7";
    let (http, _) = start_sfu_at(None, Some(public.parse().unwrap()));
    let offer = |video: bool| {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let cert =
            rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
                .expect("certificate");
        let mut pc = PeerConnection::new(
            PeerConfig::new(cert, vec!["127.0.0.1:9".parse().unwrap()]),
            rng,
        );
        if video {
            pc.add_track_with_codec(TrackCodec::Vp8).expect("track");
        }
        pc.create_data_channel(ChannelInit::new("chat"))
            .expect("channel");
        let now = std::time::Instant::now();
        let o = pc.create_offer(now).expect("offer");
        pc.set_local_description(now, SdpType::Offer, &o)
            .expect("local");
        o
    };
    // Every host candidate in `text`: its address.
    let hosts = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("a=").or(Some(l.trim())))
            .filter(|l| l.starts_with("candidate:") && l.contains(" typ host"))
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .collect()
    };
    let post = |path: &str, sdp: &str| {
        let r = http_request(
            http,
            "POST",
            path,
            &[("Content-Type", "application/sdp")],
            sdp.as_bytes(),
            Duration::from_secs(5),
        )
        .expect("POST");
        assert_eq!(
            r.status,
            201,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        String::from_utf8(r.body).expect("utf-8")
    };
    for (path, video) in [("/whip/nat", true), ("/cascade/nat", false)] {
        let answer = post(path, &offer(video));
        let found = hosts(&answer);
        assert!(!found.is_empty(), "{path}: no host candidate:\n{answer}");
        assert!(found.iter().all(|a| a == public), "{path}: {found:?}");
        assert!(
            answer
                .lines()
                .any(|l| l.trim() == format!("c=IN IP4 {public}"))
                || !answer.contains("c=IN IP4 127.0.0.1"),
            "{path}: c= line\n{answer}"
        );
    }
    // The page: its answer and trickled candidates.
    let rt = runtime();
    let seen = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/sfu/ws?room=nat"))
            .await
            .expect("ws");
        let o = serde_json::json!({"type": "offer", "sdp": offer(true)}).to_string();
        ws.send(Message::Text(o.into())).await.expect("send");
        let mut seen = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("JSON");
                match v["type"].as_str() {
                    Some("answer") => seen.extend(hosts(v["sdp"].as_str().unwrap_or(""))),
                    Some("candidate") => seen.extend(hosts(v["candidate"].as_str().unwrap_or(""))),
                    _ => {}
                }
            }
        })
        .await;
        seen
    });
    assert!(!seen.is_empty(), "the page got no host candidate");
    assert!(seen.iter().all(|a| a == public), "the page's: {seen:?}");
}

/// A one-to-one NAT in front of an SFU node, on loopback: what reaches
/// `public` goes to `private` (from a port of the NAT's own per client,
/// as the private side of a real NAT sees a client's mapped address), and
/// the replies come back from `public`. The datagrams it carried in each
/// direction.
fn nat_1_1(public: SocketAddr, private: SocketAddr) -> Arc<[std::sync::atomic::AtomicU64; 2]> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let c = counts.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let outside = Arc::new(tokio::net::UdpSocket::bind(public).await.expect("public"));
            tx.send(()).expect("ready");
            let mut inside: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 2048];
            loop {
                let Ok((n, client)) = outside.recv_from(&mut buf).await else {
                    return;
                };
                let up = match inside.get(&client) {
                    Some(u) => u.clone(),
                    None => {
                        let u = Arc::new(
                            tokio::net::UdpSocket::bind("127.0.0.1:0")
                                .await
                                .expect("inside"),
                        );
                        inside.insert(client, u.clone());
                        let (u2, out, c2) = (u.clone(), outside.clone(), c.clone());
                        tokio::spawn(async move {
                            let mut b = vec![0u8; 2048];
                            while let Ok(n) = u2.recv(&mut b).await {
                                c2[1].fetch_add(1, Ordering::Relaxed);
                                let _ = out.send_to(&b[..n], client).await;
                            }
                        });
                        u
                    }
                };
                c[0].fetch_add(1, Ordering::Relaxed);
                let _ = up.send_to(&buf[..n], private).await;
            }
        });
    });
    rx.recv().expect("the NAT started");
    counts
}

/// `--public-ip` through a one-to-one NAT: the node's socket is on
/// 127.0.0.1, the NAT's public side on 127.0.0.2 (same port), and the
/// publisher sends no candidate of its own, so the only way in is the
/// address the answer advertises; its media reaches the SFU.
#[test]
fn a_publisher_reaches_a_node_behind_a_nat_by_its_public_ip() {
    use std::sync::atomic::Ordering;
    let (http, node) = start_sfu_at(None, Some("127.0.0.2".parse().unwrap()));
    let rt = runtime();
    let mut live = bind(&rt);
    let video = live.add_track(MediaKind::Video).expect("track");
    let offer = live.offer().expect("offer");
    // Our candidates are never signaled: the SFU learns our (mapped)
    // address from our checks alone.
    while rtclab::machine::Machine::poll_event(live.connection_mut()).is_some() {}
    let r = http_request(
        http,
        "POST",
        "/whip/nat",
        &[("Content-Type", "application/sdp")],
        offer.as_bytes(),
        Duration::from_secs(5),
    )
    .expect("POST");
    assert_eq!(r.status, 201);
    let answer = String::from_utf8(r.body).expect("utf-8");
    let public: SocketAddr = answer
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.trim().split(' ').collect();
            (l.starts_with("a=candidate:") && f.len() > 7 && f[7] == "host")
                .then(|| format!("{}:{}", f[4], f[5]).parse().ok())?
        })
        .expect("a host candidate");
    assert_eq!(public.ip().to_string(), "127.0.0.2", "{answer}");
    let private = SocketAddr::from(([127, 0, 0, 1], public.port()));
    let counts = nat_1_1(public, private);
    live.accept_answer(&answer).expect("answer");
    let mut n = 0;
    publish_until(
        &rt,
        &mut live,
        video,
        &mut n,
        "media through the NAT",
        || {
            rt.block_on(node.stats())
                .is_some_and(|(s, _)| s.received >= 30)
        },
    );
    let (inbound, outbound) = (
        counts[0].load(Ordering::Relaxed),
        counts[1].load(Ordering::Relaxed),
    );
    eprintln!("through the NAT: {inbound} datagrams in, {outbound} out");
    assert!(inbound > 30 && outbound > 0, "{inbound} {outbound}");
}
