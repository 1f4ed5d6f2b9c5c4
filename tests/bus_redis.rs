//! The bus on a real Redis (Debian's `redis-server`, started here on a free
//! loopback port in a temporary directory, no persistence) and on the
//! in-process bus: the bus contract, signaling rooms shared by two nodes
//! (join, ready, relay, bye, a room full across nodes even when everyone
//! joins at once), a node killed with SIGKILL whose members leave within
//! the TTL, Redis restarted under a room in progress, and nothing left in
//! Redis afterwards. Every wait is bounded.

mod common;
#[path = "common/sfu_server.rs"]
mod sfu_server;

use common::redis::Redis;

use std::net::SocketAddr;
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

/// An in-process signaling node on a bus; shut down when dropped.
struct Node {
    addr: SocketAddr,
    handle: Handle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Node {
    /// Node `name` on `bus`, with rooms of `room_size`.
    async fn start(bus: Arc<dyn Bus>, name: &str, room_size: usize) -> Node {
        let mut config = Config::with_room_size(room_size);
        config.bus = Some(BusNode {
            bus,
            node: name.to_string(),
        });
        let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
            .await
            .expect("bind");
        Node {
            addr: server.local_addr().expect("addr"),
            handle: server.handle(),
            task: Some(tokio::spawn(server.run())),
        }
    }

    /// A new WebSocket client of this node.
    async fn client(&self) -> Ws {
        client(self.addr).await
    }

    /// Shuts it down and waits (at most [`WAIT`]) until it has stopped.
    async fn stop(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(WAIT, task).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Nodes "a" on `a` and "b" on `b`, with rooms of `room_size`.
async fn two_nodes(a: Arc<dyn Bus>, b: Arc<dyn Bus>, room_size: usize) -> (Node, Node) {
    (
        Node::start(a, "a", room_size).await,
        Node::start(b, "b", room_size).await,
    )
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
    let (a, b) = two_nodes(a, b, 2).await;
    let mut x = a.client().await;
    let mut y = b.client().await;
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
    for node in [&a, &b] {
        let mut z = node.client().await;
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
    tokio::join!(a.stop(), b.stop());
    let left = empty(probe.as_ref(), "rtclab:", WAIT).await;
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Ten members join one room of four at once, five through each node:
/// exactly four get in.
async fn a_full_room_is_decided_once(a: Arc<dyn Bus>, b: Arc<dyn Bus>) {
    let (a, b) = two_nodes(a, b, 4).await;
    let mut all = Vec::new();
    for i in 0..10 {
        all.push(if i % 2 == 0 { &a } else { &b }.client().await);
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
    two_nodes_share_a_room(redis.bus(), redis.bus(), redis.bus()).await;
    a_full_room_is_decided_once(redis.bus(), redis.bus()).await;
}

/// A node killed with SIGKILL: its members leave the room (the others hear
/// `bye`) once its liveness key expires, and nothing of it stays in Redis.
#[tokio::test]
async fn a_killed_signaling_node_releases_its_members() {
    let Some(redis) = Redis::start() else { return };
    let (addr, mut doomed) = redis.rtclab_node("signaling", "doomed", &[]);
    let probe = redis.bus();
    let b = Node::start(redis.bus(), "b", 2).await;
    let mut x = client(addr).await;
    let mut y = b.client().await;
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
    let mut z = b.client().await;
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
    let (a, b) = two_nodes(redis.bus(), redis.bus(), 2).await;
    let mut x = a.client().await;
    let mut y = b.client().await;
    let xid = join(&mut x, "r").await["id"].clone();
    join(&mut y, "r").await;
    recv_type(&mut y, "ready").await;
    recv_type(&mut x, "ready").await;
    redis.restart(Duration::from_millis(500));
    let back = Instant::now();
    let probe = redis.bus();
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
    let mut z = a.client().await;
    assert_eq!(join(&mut z, "r").await["type"], "full");
}

// ---- SFU room placement -------------------------------------------------

use rtclab::peer::{self, TrackId};
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::sfu::placement::{self, Placement};
use rtclab::sfu::server::Handle as SfuHandle;
use rtclab::speed::sfu::{GenPeer, Leg, SfuUnderTest, Whip, http_request, receive_only, vp8_frame};
use sfu_server::start_sfu_node;
use tokio::runtime::Runtime;

/// The test's own runtime (the SFU nodes run on theirs).
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A bus client of `redis`, opened on `rt`.
fn bus_on(rt: &Runtime, redis: &Redis) -> Arc<dyn Bus> {
    let _inside = rt.enter();
    redis.bus()
}

/// The node that owns `room`, as the bus says.
fn owner(rt: &Runtime, bus: &dyn Bus, room: &str) -> Option<String> {
    rt.block_on(bus.get(&placement::owner_key(room))).unwrap()
}

/// Waits until `p` sees nodes a and b on the bus, carrying `load_a` and
/// `load_b` participants when those are given.
fn wait_loads(rt: &Runtime, p: &Placement, load_a: Option<usize>, load_b: Option<usize>) {
    let carries = |info: Option<&placement::NodeInfo>, load: Option<usize>| {
        info.is_some_and(|i| load.is_none_or(|l| i.load == l))
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let nodes = rt.block_on(p.nodes()).unwrap_or_default();
        if carries(nodes.get("a"), load_a) && carries(nodes.get("b"), load_b) {
            return;
        }
        assert!(Instant::now() < deadline, "nodes on the bus: {nodes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `done` every 50 ms; fails with `what` if it does not hold within
/// `within`.
fn wait_until(within: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the node behind `h` has received RTP over a cascade link.
fn receives(rt: &Runtime, h: &SfuHandle) -> bool {
    rt.block_on(h.stats())
        .is_some_and(|(_, c)| c.rtp_received > 0)
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

/// Ends a WHIP or WHEP leg by its resource.
fn delete(http: SocketAddr, resource: &str) {
    let r = http_request(http, "DELETE", resource, &[], b"", WAIT).expect("DELETE");
    assert_eq!(r.status, 200);
}

/// A loopback peer set up by `setup`, negotiated by `ask` (WHIP or WHEP at
/// `http`), again with a new peer every 200 ms while that fails (the room
/// is moving: 503), at most 15 s: the peer, what `setup` returned and the
/// leg's resource.
fn leg<T>(
    rt: &Runtime,
    http: SocketAddr,
    setup: impl Fn(&mut LivePeer) -> T,
    ask: impl Fn(&mut Whip, &mut GenPeer) -> Result<Leg, String>,
) -> (LivePeer, T, String) {
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut live = rt
            .block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
            .expect("bind");
        let made = setup(&mut live);
        let mut peer = GenPeer::new(live);
        match ask(&mut Whip::at(http), &mut peer) {
            Ok(leg) => return (peer.live, made, leg.resource),
            Err(e) => {
                assert!(Instant::now() < deadline, "WHIP/WHEP at {http}: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// A VP8 publisher by WHIP, and the frames it has sent.
struct Publisher {
    live: LivePeer,
    video: TrackId,
    resource: String,
    n: u32,
}

/// Publishes VP8 by WHIP at `http` into `room` (retried while the room is
/// moving).
fn publish(rt: &Runtime, http: SocketAddr, room: &str) -> Publisher {
    let video = |l: &mut LivePeer| l.add_track(MediaKind::Video).expect("track");
    let (live, video, resource) = leg(rt, http, video, |w, p| w.publish(room, p));
    Publisher {
        live,
        video,
        resource,
        n: 0,
    }
}

/// Plays `room` by WHEP at `http` (retried while the room is moving): the
/// viewer and its resource.
fn play(rt: &Runtime, http: SocketAddr, room: &str) -> (LivePeer, String) {
    let recv_only = |l: &mut LivePeer| receive_only(l).expect("recvonly");
    let (live, (), resource) = leg(rt, http, recv_only, |w, p| w.subscribe(room, &[], p));
    (live, resource)
}

impl Publisher {
    /// Sends frames for `for_` (and then until the viewer decoded `want`,
    /// at most 15 s); the frames the viewer decoded.
    fn send(
        &mut self,
        rt: &Runtime,
        viewer: Option<&mut LivePeer>,
        for_: Duration,
        want: usize,
    ) -> usize {
        let Publisher { live, video, n, .. } = self;
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
                            let _ = live.send_frame(*video, *n * 3000, &f);
                            *n += 1;
                        }
                        e = live.next_event() => { e.expect("io"); }
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

    /// Sends frames for `for_`, with no one watching.
    fn send_for(&mut self, rt: &Runtime, for_: Duration) {
        self.send(rt, None, for_, 0);
    }

    /// Sends until `viewer` decoded ten frames (at most 15 s): how many it
    /// decoded.
    fn ten_frames_to(&mut self, rt: &Runtime, viewer: &mut LivePeer) -> usize {
        self.send(rt, Some(viewer), Duration::ZERO, 10)
    }

    /// Sends 200 ms at a time until `done`; fails with `what` after
    /// [`WAIT`].
    fn send_until(&mut self, rt: &Runtime, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            self.send_for(rt, Duration::from_millis(200));
        }
    }
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
    let rt = runtime();
    let (b, _, pb) = start_sfu_node(&redis.url(), "b", 100);
    // b carries two participants elsewhere: a (none) is the less loaded.
    let _ballast = (pb.seat("ballast"), pb.seat("ballast"));
    let (a, mut node_a) = redis.rtclab_node("sfu", "a", &["--udp", "127.0.0.1:0"]);
    // Both on the bus, with their loads.
    wait_loads(&rt, &pb, None, Some(2));
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
    let mut p = publish(&rt, a, "r");
    p.send_for(&rt, Duration::from_millis(500));
    let (mut v, _) = play(&rt, a, "r");
    let got = p.ten_frames_to(&rt, &mut v);
    assert!(got >= 10, "frames on a: {got}");
    // a dies; the participants start again at b (where they entered).
    let killed = Instant::now();
    node_a.kill();
    let mut p = Publisher {
        n: p.n,
        ..publish(&rt, b, "r")
    };
    let republished = killed.elapsed();
    p.send_for(&rt, Duration::from_millis(300));
    let (mut v, res_v) = play(&rt, b, "r");
    let got = p.ten_frames_to(&rt, &mut v);
    let failover = killed.elapsed();
    assert!(got >= 10, "frames on b: {got}");
    println!("bus.sfu_failover_publish_ms {} ms", republished.as_millis());
    println!("bus.sfu_failover_decoding_ms {} ms", failover.as_millis());
    assert!(failover < Duration::from_secs(12), "{failover:?}");
    assert_eq!(
        owner(&rt, bus_on(&rt, &redis).as_ref(), "r").as_deref(),
        Some("b")
    );
    // Redis restarts (empty) under the call: frames keep coming, and b
    // claims its room again.
    redis.restart(Duration::from_millis(300));
    let during = p.send(&rt, Some(&mut v), Duration::from_secs(3), 0);
    assert!(during >= 45, "frames through a Redis restart: {during}");
    let probe_bus = bus_on(&rt, &redis);
    wait_until(WAIT, "room not re-claimed after the Redis restart", || {
        owner(&rt, probe_bus.as_ref(), "r").as_deref() == Some("b")
    });
    // Everyone leaves: the room's claim goes; a's node key is long gone.
    for res in [&p.resource, &res_v] {
        delete(b, res);
    }
    drop(_ballast);
    for prefix in ["rtclab:sfu:owner:", "rtclab:sfu:node:a"] {
        let left = rt.block_on(empty(probe_bus.as_ref(), prefix, WAIT));
        assert!(left.is_empty(), "left behind: {left:?}");
    }
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
    let rt = runtime();
    let (a, ha, pa) = start_sfu_node(&redis.url(), "a", 1);
    let (b, hb, _) = start_sfu_node(&redis.url(), "b", 4);
    wait_loads(&rt, &pa, Some(0), None);
    // Both empty: the room opens on a (the smaller name), which is then
    // full.
    let mut p = publish(&rt, a, "big");
    wait_loads(&rt, &pa, Some(1), None);
    // A page reaching b is served there: b links the room to a.
    let (status, location) = probe(b, "GET", "/sfu/?room=big");
    assert_eq!((status, location), (200, None), "served on b");
    assert_eq!(hb.cascades().len(), 1, "b linked the room to a");
    p.send_until(&rt, "b receives a's publisher", || receives(&rt, &hb));
    let (mut v1, res_v1) = play(&rt, b, "big");
    let got = p.ten_frames_to(&rt, &mut v1);
    assert!(got >= 10, "frames on b through the link: {got}");
    let (mut v2, res_v2) = play(&rt, b, "big");
    let got = p.ten_frames_to(&rt, &mut v2);
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
        delete(b, res);
    }
    wait_until(WAIT, "the link closed on both nodes", || {
        hb.cascades().is_empty() && ha.accepted_cascades() == 0
    });
    // The publisher leaves: nothing of the room stays in Redis.
    delete(a, &p.resource);
    let probe_bus = bus_on(&rt, &redis);
    let left = rt.block_on(empty(probe_bus.as_ref(), "rtclab:sfu:owner:", WAIT));
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
    let rt = runtime();
    let (b, hb, pb) = start_sfu_node(&redis.url(), "b", 4);
    let extra = ["--udp", "127.0.0.1:0", "--max-participants", "1"];
    let (a, mut node_a) = redis.rtclab_node("sfu", "a", &extra);
    wait_loads(&rt, &pb, Some(0), None);
    let room = "phoenix";
    let mut p = publish(&rt, a, room);
    wait_loads(&rt, &pb, Some(1), None);
    assert_eq!(probe(b, "GET", &format!("/sfu/?room={room}")).0, 200);
    assert_eq!(hb.cascades().len(), 1, "b linked the room to a");
    p.send_until(&rt, "b receives a's publisher", || receives(&rt, &hb));
    let (mut v, _) = play(&rt, b, room);
    let got = p.ten_frames_to(&rt, &mut v);
    assert!(got >= 10, "frames on b through the link: {got}");
    drop(v);
    // a dies.
    let killed = Instant::now();
    node_a.kill();
    wait_until(WAIT, "b still links to the dead a", || {
        hb.cascades().is_empty()
    });
    let dropped = killed.elapsed();
    // The publisher starts again where it can: b, which took the room.
    let mut p = Publisher {
        n: p.n,
        ..publish(&rt, b, room)
    };
    p.send_for(&rt, Duration::from_millis(300));
    let (mut v, _) = play(&rt, b, room);
    let got = p.ten_frames_to(&rt, &mut v);
    let failover = killed.elapsed();
    assert!(got >= 10, "frames on b after a died: {got}");
    assert_eq!(
        owner(&rt, bus_on(&rt, &redis).as_ref(), room).as_deref(),
        Some("b")
    );
    println!("bus.sfu_cascade_link_dropped_ms {} ms", dropped.as_millis());
    println!(
        "bus.sfu_cascade_failover_decoding_ms {} ms",
        failover.as_millis()
    );
    assert!(dropped < Duration::from_secs(6), "{dropped:?}");
}
