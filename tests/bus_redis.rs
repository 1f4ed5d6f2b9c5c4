//! The bus on a real Redis (Debian's `redis-server`, started here on a free
//! loopback port in a temporary directory, no persistence) and on the
//! in-process bus: the bus contract, signaling rooms shared by two nodes
//! (join, ready, relay, bye, a room full across nodes even when everyone
//! joins at once), a node killed with SIGKILL whose members leave within
//! the TTL, Redis restarted under a room in progress, and nothing left in
//! Redis afterwards. Every wait is bounded.

mod common;

use common::redis::Redis;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rtclab::bus::{Bus, MemoryHub, RedisBus};
use rtclab::signaling::{BusNode, Config, Handle, Server};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(10);

async fn node(
    bus: Arc<dyn Bus>,
    name: &str,
    room_size: usize,
) -> (SocketAddr, Handle, JoinHandle<std::io::Result<()>>) {
    let mut config = Config::with_room_size(room_size);
    config.bus = Some(BusNode {
        bus,
        node: name.to_string(),
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    let handle = server.handle();
    (addr, handle, tokio::spawn(server.run()))
}

async fn client(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect in time")
    .expect("handshake");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into()))
        .await
        .expect("send");
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).expect("JSON");
        }
    }
}

async fn recv_type(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = recv(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn join(ws: &mut Ws, room: &str) -> Value {
    send(ws, json!({"type": "create or join", "room": room})).await;
    recv(ws).await
}

/// Waits until `bus` has no key under `prefix`; the keys left otherwise.
async fn empty(bus: &dyn Bus, prefix: &str, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let keys = bus.keys(prefix).await.unwrap_or_default();
        if keys.is_empty() || Instant::now() > deadline {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two nodes, one room: the same messages as on one node.
async fn two_nodes_share_a_room(a: Arc<dyn Bus>, b: Arc<dyn Bus>, probe: Arc<dyn Bus>) {
    let (addr_a, ha, ta) = node(a, "a", 2).await;
    let (addr_b, hb, tb) = node(b, "b", 2).await;
    let mut x = client(addr_a).await;
    let mut y = client(addr_b).await;
    let created = join(&mut x, "r1").await;
    assert_eq!(created["type"], "created", "{created}");
    let xid = created["id"].clone();
    let joined = join(&mut y, "r1").await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(joined["members"], json!([xid]));
    let yid = joined["id"].clone();
    assert_ne!(xid, yid, "ids are unique across nodes");
    let ready = recv(&mut y).await;
    assert_eq!(
        ready,
        json!({"type": "ready", "room": "r1", "members": [xid, yid]})
    );
    assert_eq!(
        recv(&mut x).await,
        json!({"type": "join", "room": "r1", "id": yid})
    );
    assert_eq!(recv(&mut x).await, ready);
    // Relayed both ways, to all or to one.
    send(&mut x, json!({"type": "message", "data": {"sdp": "offer"}})).await;
    assert_eq!(
        recv(&mut y).await,
        json!({"type": "message", "from": xid, "data": {"sdp": "offer"}})
    );
    send(
        &mut y,
        json!({"type": "message", "to": xid, "data": "answer"}),
    )
    .await;
    assert_eq!(
        recv(&mut x).await,
        json!({"type": "message", "from": yid, "data": "answer"})
    );
    // The same errors as on one node.
    send(&mut y, json!({"type": "message", "to": 12345, "data": 1})).await;
    assert_eq!(recv(&mut y).await["code"], "no-such-member");
    send(&mut y, json!({"type": "create or join", "room": "r2"})).await;
    assert_eq!(recv(&mut y).await["code"], "already-in-room");
    // A third member, on either node, finds the room full.
    for addr in [addr_a, addr_b] {
        let mut z = client(addr).await;
        assert_eq!(
            join(&mut z, "r1").await,
            json!({"type": "full", "room": "r1"})
        );
    }
    // Bye crosses too; then the place is free again.
    send(&mut x, json!({"type": "bye"})).await;
    assert_eq!(
        recv(&mut y).await,
        json!({"type": "bye", "room": "r1", "id": xid})
    );
    let again = join(&mut x, "r1").await;
    assert_eq!(again["type"], "joined", "{again}");
    drop(x);
    assert_eq!(recv_type(&mut y, "bye").await["id"], xid);
    drop(y);
    // Everyone gone: no room is left on the bus; the nodes' own keys go
    // when they stop.
    let rooms = empty(probe.as_ref(), "rtclab:sig:room:", WAIT).await;
    assert!(rooms.is_empty(), "left behind: {rooms:?}");
    ha.shutdown();
    hb.shutdown();
    let _ = tokio::time::timeout(WAIT, ta).await;
    let _ = tokio::time::timeout(WAIT, tb).await;
    let left = empty(probe.as_ref(), "rtclab:", WAIT).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Ten members join one room of four at once, five through each node:
/// exactly four get in.
async fn a_full_room_is_decided_once(a: Arc<dyn Bus>, b: Arc<dyn Bus>) {
    let (addr_a, _ha, _ta) = node(a, "a", 4).await;
    let (addr_b, _hb, _tb) = node(b, "b", 4).await;
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(client(if i % 2 == 0 { addr_a } else { addr_b }).await);
    }
    for ws in &mut all {
        send(ws, json!({"type": "create or join", "room": "race"})).await;
    }
    let mut admitted = 0;
    let mut full = 0;
    for ws in &mut all {
        match recv(ws).await["type"].as_str() {
            Some("created" | "joined") => admitted += 1,
            Some("full") => full += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((admitted, full), (4, 6));
}

#[tokio::test]
async fn the_in_process_bus_shares_rooms_between_nodes() {
    let hub = MemoryHub::new();
    two_nodes_share_a_room(
        Arc::new(hub.node()),
        Arc::new(hub.node()),
        Arc::new(hub.node()),
    )
    .await;
    let hub = MemoryHub::new();
    a_full_room_is_decided_once(Arc::new(hub.node()), Arc::new(hub.node())).await;
}

#[tokio::test]
async fn redis_keeps_the_bus_contract() {
    let Some(redis) = Redis::start() else { return };
    let a = RedisBus::open(&redis.url()).unwrap();
    let b = RedisBus::open(&redis.url()).unwrap();
    rtclab::bus::contract::check(&a, &b, "contract:").await;
}

#[tokio::test]
async fn signaling_nodes_share_rooms_over_redis() {
    let Some(redis) = Redis::start() else { return };
    let bus = |r: &Redis| -> Arc<dyn Bus> { Arc::new(RedisBus::open(&r.url()).unwrap()) };
    two_nodes_share_a_room(bus(&redis), bus(&redis), bus(&redis)).await;
    a_full_room_is_decided_once(bus(&redis), bus(&redis)).await;
}

fn rtclab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rtclab"))
}

/// A node killed with SIGKILL: its members leave the room (the others hear
/// `bye`) once its liveness key expires, and nothing of it stays in Redis.
#[tokio::test]
async fn a_killed_signaling_node_releases_its_members() {
    let Some(redis) = Redis::start() else { return };
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let args: Vec<String> = [
        "signaling",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--bus",
        &redis.url(),
        "--node",
        "doomed",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut doomed = common::Peer::start("rtclab-signaling", &rtclab_bin(), &args);
    assert!(
        doomed.wait_for_output("rtclab signaling on", WAIT),
        "{}",
        doomed.output()
    );
    let probe: Arc<dyn Bus> = Arc::new(RedisBus::open(&redis.url()).unwrap());
    let (addr_b, _hb, _tb) = node(Arc::new(RedisBus::open(&redis.url()).unwrap()), "b", 2).await;
    let mut x = client(format!("127.0.0.1:{port}").parse().unwrap()).await;
    let mut y = client(addr_b).await;
    let xid = join(&mut x, "r").await["id"].clone();
    assert_eq!(join(&mut y, "r").await["type"], "joined");
    recv_type(&mut y, "ready").await;
    let killed = Instant::now();
    doomed.kill();
    let bye = recv_type(&mut y, "bye").await;
    let took = killed.elapsed();
    assert_eq!(bye["id"], xid);
    println!("bus.signaling_failover_ms {} ms", took.as_millis());
    assert!(took < Duration::from_secs(8), "bye after {took:?}");
    // The place is free again.
    let mut z = client(addr_b).await;
    assert_eq!(join(&mut z, "r").await["type"], "joined");
    drop((x, y, z));
    let rooms = empty(probe.as_ref(), "rtclab:sig:room:", WAIT).await;
    assert!(rooms.is_empty(), "{rooms:?}");
    let dead = empty(probe.as_ref(), "rtclab:sig:node:doomed", WAIT).await;
    assert!(dead.is_empty(), "{dead:?}");
}

/// Redis killed and restarted (empty) under a room in progress: the
/// members stay connected, relaying works again within seconds, and the
/// room's list is put back.
#[tokio::test]
async fn a_room_survives_a_redis_restart() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let (addr_a, _ha, _ta) = node(Arc::new(RedisBus::open(&redis.url()).unwrap()), "a", 2).await;
    let (addr_b, _hb, _tb) = node(Arc::new(RedisBus::open(&redis.url()).unwrap()), "b", 2).await;
    let mut x = client(addr_a).await;
    let mut y = client(addr_b).await;
    let xid = join(&mut x, "r").await["id"].clone();
    join(&mut y, "r").await;
    recv_type(&mut y, "ready").await;
    recv_type(&mut x, "ready").await;
    redis.restart(Duration::from_millis(500));
    let back = Instant::now();
    let probe = RedisBus::open(&redis.url()).unwrap();
    // Relayed again once both nodes are back on Redis.
    let mut n = 0;
    let took = loop {
        n += 1;
        send(&mut x, json!({"type": "message", "data": n})).await;
        if let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_millis(300), y.next()).await
        {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == "message" {
                assert_eq!(v["from"], xid);
                break back.elapsed();
            }
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "no relay after the restart"
        );
    };
    println!("bus.redis_restart_relay_ms {} ms", took.as_millis());
    // The room's list is back, with both members, so the size still holds.
    let deadline = Instant::now() + WAIT;
    loop {
        let m = probe.members("rtclab:sig:room:r").await.unwrap_or_default();
        if m.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "members after restart: {m:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut z = client(addr_a).await;
    assert_eq!(join(&mut z, "r").await["type"], "full");
}

// ---- SFU room placement -------------------------------------------------

use rtclab::peer;
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::sfu::placement::{self, Placement};
use rtclab::speed::sfu::{GenPeer, SfuUnderTest, Whip, http_request, receive_only, vp8_frame};

/// An in-process `rtclab sfu` node on the bus, on a thread of its own,
/// taking `capacity` participants: its HTTP address, placement and handle.
fn sfu_node(
    url: &str,
    name: &str,
    capacity: usize,
) -> (SocketAddr, Arc<Placement>, rtclab::sfu::server::Handle) {
    let (tx, rx) = std::sync::mpsc::channel();
    let url = url.to_string();
    let name = name.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            let cert =
                rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
                    .expect("certificate");
            let server = rtclab::sfu::server::Server::bind(rtclab::sfu::server::Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                udp: "127.0.0.1:0".parse().unwrap(),
                sfu: rtclab::sfu::Config::new(cert, Vec::new()),
                reports: None,
                whip: Some(None),
            })
            .await
            .expect("bind");
            let http = server.http_addr();
            let bus: Arc<dyn Bus> = Arc::new(RedisBus::open(&url).expect("bus"));
            let p = Placement::new(placement::Config::new(
                bus,
                &name,
                &format!("http://{http}"),
                capacity,
            ));
            tx.send((http, p.clone(), server.handle())).expect("send");
            let _ = server
                .with_placement(p)
                .run_until(std::future::pending())
                .await;
        });
    });
    rx.recv().expect("the SFU started")
}

/// `(status, Location)` of a request.
fn probe(http: SocketAddr, method: &str, path: &str) -> (u16, Option<String>) {
    let r = http_request(
        http,
        method,
        path,
        &[("Content-Type", "application/sdp")],
        b"v=0\r\n",
        WAIT,
    )
    .expect("HTTP");
    (r.status, r.header("location").map(str::to_string))
}

/// Publishes VP8 by WHIP at `http` into `room`, retrying while the room
/// is moving (503); `(publisher, its video track, resource)`.
fn publish(
    rt: &tokio::runtime::Runtime,
    http: SocketAddr,
    room: &str,
) -> (LivePeer, rtclab::peer::TrackId, String) {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut live = rt
            .block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
            .expect("bind");
        let video = live.add_track(MediaKind::Video).expect("track");
        let mut peer = GenPeer::new(live);
        match Whip::at(http).publish(room, &mut peer) {
            Ok(leg) => return (peer.live, video, leg.resource),
            Err(e) => {
                assert!(Instant::now() < deadline, "WHIP publish at {http}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn play(rt: &tokio::runtime::Runtime, http: SocketAddr, room: &str) -> (LivePeer, String) {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut live = rt
            .block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
            .expect("bind");
        receive_only(&mut live).expect("recvonly");
        let mut peer = GenPeer::new(live);
        match Whip::at(http).subscribe(room, &[], &mut peer) {
            Ok(leg) => return (peer.live, leg.resource),
            Err(e) => {
                assert!(Instant::now() < deadline, "WHEP play at {http}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Sends frames for `for_` (and then until the viewer decoded `want`, at
/// most 15 s); the frames the viewer decoded.
fn call(
    rt: &tokio::runtime::Runtime,
    p: &mut LivePeer,
    video: rtclab::peer::TrackId,
    viewer: Option<&mut LivePeer>,
    n: &mut u32,
    for_: Duration,
    want: usize,
) -> usize {
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut frames = 0usize;
        let start = Instant::now();
        let mut viewer = viewer;
        let _ = tokio::time::timeout(Duration::from_secs(15) + for_, async {
            while start.elapsed() < for_ || frames < want {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut f = Vec::new();
                        vp8_frame(&mut f, 3000, *n % 30 == 0, *n);
                        let _ = p.send_frame(video, *n * 3000, &f);
                        *n += 1;
                    }
                    e = p.next_event() => { e.expect("io"); }
                    e = async { match viewer.as_mut() { Some(v) => v.next_event().await, None => std::future::pending().await } } => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames += 1; }
                    }
                }
            }
        })
        .await;
        frames
    })
}

/// Two SFU nodes: a room opens on the less loaded one, a participant who
/// reaches the other is redirected (page 307, WebSocket `redirect`, WHIP
/// 307); the owner is killed with SIGKILL mid-call and the participants,
/// retrying at the node they entered by, are back on the other node within
/// the TTL and a few seconds; Redis restarted under that call does not
/// interrupt it; nothing is left in Redis afterwards.
#[test]
fn sfu_rooms_are_placed_and_move_when_their_node_dies() {
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (b, pb, _) = sfu_node(&redis.url(), "b", 100);
    // b carries two participants elsewhere: a (none) is the less loaded.
    let _ballast = (pb.seat("ballast"), pb.seat("ballast"));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = SocketAddr::from(([127, 0, 0, 1], port));
    let args: Vec<String> = [
        "sfu",
        "--listen",
        &a.to_string(),
        "--udp",
        "127.0.0.1:0",
        "--bus",
        &redis.url(),
        "--node",
        "a",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut node_a = common::Peer::start("rtclab-sfu-a", &rtclab_bin(), &args);
    assert!(
        node_a.wait_for_output("rtclab sfu on", WAIT),
        "{}",
        node_a.output()
    );
    // Both on the bus, with their loads.
    let deadline = Instant::now() + WAIT;
    loop {
        let nodes = rt.block_on(pb.nodes()).unwrap_or_default();
        if nodes.contains_key("a") && nodes.get("b").is_some_and(|i| i.load == 2) {
            break;
        }
        assert!(Instant::now() < deadline, "nodes on the bus: {nodes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let to_a = format!("http://{a}");
    // The participant reaching b is sent to a, however it comes.
    let (status, location) = probe(b, "GET", "/sfu/?room=r");
    assert_eq!(
        (status, location.as_deref()),
        (307, Some(format!("{to_a}/sfu/?room=r").as_str()))
    );
    let (status, location) = probe(b, "POST", "/whip/r");
    assert_eq!(
        (status, location.as_deref()),
        (307, Some(format!("{to_a}/whip/r").as_str()))
    );
    let redirect = rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{b}/sfu/ws?room=r"))
            .await
            .expect("ws");
        recv(&mut ws).await
    });
    assert_eq!(
        redirect,
        json!({"type": "redirect", "url": format!("{to_a}/sfu/?room=r")})
    );
    // The call, on a.
    let (mut p, video, _) = publish(&rt, a, "r");
    let mut n = 0;
    call(
        &rt,
        &mut p,
        video,
        None,
        &mut n,
        Duration::from_millis(500),
        0,
    );
    let (mut v, _) = play(&rt, a, "r");
    let got = call(&rt, &mut p, video, Some(&mut v), &mut n, Duration::ZERO, 10);
    assert!(got >= 10, "frames on a: {got}");
    // a dies; the participants start again at b (where they entered).
    let killed = Instant::now();
    node_a.kill();
    let (mut p, video, res_p) = publish(&rt, b, "r");
    let republished = killed.elapsed();
    call(
        &rt,
        &mut p,
        video,
        None,
        &mut n,
        Duration::from_millis(300),
        0,
    );
    let (mut v, res_v) = play(&rt, b, "r");
    let got = call(&rt, &mut p, video, Some(&mut v), &mut n, Duration::ZERO, 10);
    let failover = killed.elapsed();
    assert!(got >= 10, "frames on b: {got}");
    println!("bus.sfu_failover_publish_ms {} ms", republished.as_millis());
    println!("bus.sfu_failover_decoding_ms {} ms", failover.as_millis());
    assert!(failover < Duration::from_secs(12), "{failover:?}");
    let owner = rt.block_on(async {
        let probe = RedisBus::open(&redis.url()).unwrap();
        probe.get(&placement::owner_key("r")).await.unwrap()
    });
    assert_eq!(owner.as_deref(), Some("b"));
    // Redis restarts (empty) under the call: frames keep coming, and b
    // claims its room again.
    redis.restart(Duration::from_millis(300));
    let during = call(
        &rt,
        &mut p,
        video,
        Some(&mut v),
        &mut n,
        Duration::from_secs(3),
        0,
    );
    assert!(during >= 45, "frames through a Redis restart: {during}");
    let _inside = rt.enter();
    let probe_bus = RedisBus::open(&redis.url()).unwrap();
    let deadline = Instant::now() + WAIT;
    while rt
        .block_on(probe_bus.get(&placement::owner_key("r")))
        .ok()
        .flatten()
        .as_deref()
        != Some("b")
    {
        assert!(
            Instant::now() < deadline,
            "room not re-claimed after the Redis restart"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Everyone leaves: the room's claim goes; a's node key is long gone.
    for res in [res_p, res_v] {
        let r = http_request(b, "DELETE", &res, &[], b"", WAIT).expect("DELETE");
        assert_eq!(r.status, 200);
    }
    drop(_ballast);
    let left = rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut keys = probe_bus
                .keys("rtclab:sfu:owner:")
                .await
                .unwrap_or_default();
            keys.extend(
                probe_bus
                    .keys("rtclab:sfu:node:a")
                    .await
                    .unwrap_or_default(),
            );
            if keys.is_empty() || Instant::now() > deadline {
                return keys;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// A room outgrows its owner: node a takes one participant, so a viewer
/// who reaches b is served on b, which links the room to a (the page's
/// `GET` and the WHEP `POST` are answered there, not redirected); a
/// second viewer on b reuses that link; a newcomer reaching the full a is
/// sent to b. When b's viewers leave, the link closes on both nodes; when
/// the publisher leaves, nothing of the room is left in Redis.
#[test]
fn a_full_owner_cascades_its_newcomers_to_another_node() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (a, pa, ha) = sfu_node(&redis.url(), "a", 1);
    let (b, _, hb) = sfu_node(&redis.url(), "b", 4);
    let on_bus = |load_a: usize| {
        let deadline = Instant::now() + WAIT;
        loop {
            let nodes = rt.block_on(pa.nodes()).unwrap_or_default();
            if nodes.get("a").is_some_and(|i| i.load == load_a) && nodes.contains_key("b") {
                return;
            }
            assert!(Instant::now() < deadline, "nodes on the bus: {nodes:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    on_bus(0);
    // Both empty: the room opens on a (the smaller name), which is then
    // full.
    let (mut p, video, res_p) = publish(&rt, a, "big");
    on_bus(1);
    // A page reaching b is served there: b links the room to a.
    let (status, location) = probe(b, "GET", "/sfu/?room=big");
    assert_eq!((status, location), (200, None), "served on b");
    assert_eq!(hb.cascades().len(), 1, "b linked the room to a");
    let mut n = 0;
    let deadline = Instant::now() + WAIT;
    let received = || {
        rt.block_on(hb.stats())
            .is_some_and(|(_, c)| c.rtp_received > 0)
    };
    while !received() {
        assert!(Instant::now() < deadline, "b receives a's publisher");
        call(
            &rt,
            &mut p,
            video,
            None,
            &mut n,
            Duration::from_millis(200),
            0,
        );
    }
    let (mut v1, res_v1) = play(&rt, b, "big");
    let got = call(
        &rt,
        &mut p,
        video,
        Some(&mut v1),
        &mut n,
        Duration::ZERO,
        10,
    );
    assert!(got >= 10, "frames on b through the link: {got}");
    let (mut v2, res_v2) = play(&rt, b, "big");
    let got = call(
        &rt,
        &mut p,
        video,
        Some(&mut v2),
        &mut n,
        Duration::ZERO,
        10,
    );
    assert!(got >= 10, "frames on b's second viewer: {got}");
    assert_eq!(hb.cascades().len(), 1, "one link for both viewers");
    assert_eq!(ha.accepted_cascades(), 1);
    // A newcomer reaching the full owner goes to b.
    let (status, location) = probe(a, "GET", "/sfu/?room=big");
    assert_eq!(
        (status, location.as_deref()),
        (307, Some(format!("http://{b}/sfu/?room=big").as_str()))
    );
    // b's viewers leave: the link closes on both nodes.
    for res in [&res_v1, &res_v2] {
        let r = http_request(b, "DELETE", res, &[], b"", WAIT).expect("DELETE");
        assert_eq!(r.status, 200);
    }
    let deadline = Instant::now() + WAIT;
    while !(hb.cascades().is_empty() && ha.accepted_cascades() == 0) {
        assert!(Instant::now() < deadline, "the link closed on both nodes");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The publisher leaves: nothing of the room stays in Redis.
    let r = http_request(a, "DELETE", &res_p, &[], b"", WAIT).expect("DELETE");
    assert_eq!(r.status, 200);
    let _inside = rt.enter();
    let probe_bus = RedisBus::open(&redis.url()).unwrap();
    let left = rt.block_on(empty(&probe_bus, "rtclab:sfu:owner:", WAIT));
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// The owner of a cascaded room dies (SIGKILL): the cascaded node drops
/// its link to it as soon as its node key runs out (not when the link's
/// ICE consent would, 30 s later), takes the room over, and the
/// publisher, starting again there, is played there.
#[test]
fn a_cascaded_room_goes_on_when_its_owner_dies() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (b, pb, hb) = sfu_node(&redis.url(), "b", 4);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let a = SocketAddr::from(([127, 0, 0, 1], port));
    let args: Vec<String> = [
        "sfu",
        "--listen",
        &a.to_string(),
        "--udp",
        "127.0.0.1:0",
        "--bus",
        &redis.url(),
        "--node",
        "a",
        "--max-participants",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut node_a = common::Peer::start("rtclab-sfu-a", &rtclab_bin(), &args);
    assert!(
        node_a.wait_for_output("rtclab sfu on", WAIT),
        "{}",
        node_a.output()
    );
    let loads = |want_a: usize| {
        let deadline = Instant::now() + WAIT;
        loop {
            let nodes = rt.block_on(pb.nodes()).unwrap_or_default();
            if nodes.get("a").is_some_and(|i| i.load == want_a) && nodes.contains_key("b") {
                return;
            }
            assert!(Instant::now() < deadline, "nodes on the bus: {nodes:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    loads(0);
    let room = "phoenix";
    let (mut p, video, _) = publish(&rt, a, room);
    loads(1);
    assert_eq!(probe(b, "GET", &format!("/sfu/?room={room}")).0, 200);
    assert_eq!(hb.cascades().len(), 1, "b linked the room to a");
    let mut n = 0;
    let received = || {
        rt.block_on(hb.stats())
            .is_some_and(|(_, c)| c.rtp_received > 0)
    };
    let deadline = Instant::now() + WAIT;
    while !received() {
        assert!(Instant::now() < deadline, "b receives a's publisher");
        call(
            &rt,
            &mut p,
            video,
            None,
            &mut n,
            Duration::from_millis(200),
            0,
        );
    }
    let (mut v, _) = play(&rt, b, room);
    let got = call(&rt, &mut p, video, Some(&mut v), &mut n, Duration::ZERO, 10);
    assert!(got >= 10, "frames on b through the link: {got}");
    drop(v);
    // a dies.
    let killed = Instant::now();
    node_a.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !hb.cascades().is_empty() {
        assert!(Instant::now() < deadline, "b still links to the dead a");
        std::thread::sleep(Duration::from_millis(50));
    }
    let dropped = killed.elapsed();
    // The publisher starts again where it can: b, which took the room.
    let (mut p, video, _) = publish(&rt, b, room);
    call(
        &rt,
        &mut p,
        video,
        None,
        &mut n,
        Duration::from_millis(300),
        0,
    );
    let (mut v, _) = play(&rt, b, room);
    let got = call(&rt, &mut p, video, Some(&mut v), &mut n, Duration::ZERO, 10);
    let failover = killed.elapsed();
    assert!(got >= 10, "frames on b after a died: {got}");
    let owner = rt.block_on(async {
        let probe = RedisBus::open(&redis.url()).unwrap();
        probe.get(&placement::owner_key(room)).await.unwrap()
    });
    assert_eq!(owner.as_deref(), Some("b"));
    println!("bus.sfu_cascade_link_dropped_ms {} ms", dropped.as_millis());
    println!(
        "bus.sfu_cascade_failover_decoding_ms {} ms",
        failover.as_millis()
    );
    assert!(dropped < Duration::from_secs(6), "{dropped:?}");
}
