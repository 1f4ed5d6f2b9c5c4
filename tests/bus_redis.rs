//! The bus on a real Redis (Debian's `redis-server`, started here on a free
//! loopback port in a temporary directory, no persistence) and on the
//! in-process bus: the bus contract, signaling rooms shared by two nodes
//! (join, ready, relay, bye, a room full across nodes even when everyone
//! joins at once), a node killed with SIGKILL whose members leave within
//! the TTL, Redis restarted under a room in progress, and nothing left in
//! Redis afterwards. Every wait is bounded.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// A `redis-server` of this test's own.
pub struct Redis {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    proc: Option<common::Peer>,
}

impl Redis {
    /// Starts one, or `None` (a loud skip; a failure under
    /// `RTCLAB_REQUIRE_INTEROP=1`) when Redis is not installed.
    pub fn start() -> Option<Redis> {
        let bin = common::require_binary("redis-server", "redis-server")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("rtclab-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut r = Redis {
            bin,
            dir,
            port,
            proc: None,
        };
        r.up();
        Some(r)
    }

    fn up(&mut self) {
        let args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.dir.to_str().expect("utf-8 path"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let p = common::Peer::start("redis-server", &self.bin, &args);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start:\n{}",
                p.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc = Some(p);
    }

    /// Kills it (SIGKILL: everything in memory is lost) and starts it again
    /// on the same port after `pause`.
    pub fn restart(&mut self, pause: Duration) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
        std::thread::sleep(pause);
        self.up();
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
    assert!(took < Duration::from_secs(6), "bye after {took:?}");
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
