//! `rtclab speed bus`: what the bus between nodes carries. Signaling
//! messages relayed from a member on one node to a member on another
//! (through the in-process bus, then through Redis), and Redis's own
//! round trip for one `PUBLISH`, the ceiling beside them.
//!
//! Redis: the `redis-server` on PATH is started on a free loopback port in
//! a temporary directory (no persistence), or `RTCLAB_REDIS=redis://…`
//! names one; with neither, the Redis figures are left out (said on
//! stderr).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Figure;
use crate::bus::{Bus, MemoryHub, RedisBus};
use crate::signaling::{BusNode, ClientMessage, Config, Data, Server, ServerMessage};

/// Messages in flight at once (below a member's outbox of 256).
const WINDOW: usize = 128;
/// How long each figure is measured.
const RUN: Duration = Duration::from_secs(2);

/// Relayed messages per second from node a's member to node b's.
async fn relay_rate(a: Arc<dyn Bus>, b: Arc<dyn Bus>) -> Result<f64, String> {
    let node = |bus: Arc<dyn Bus>, name: &str| {
        let mut c = Config::with_room_size(2);
        c.bus = Some(BusNode {
            bus,
            node: name.to_string(),
        });
        c
    };
    let lo = "127.0.0.1:0".parse().map_err(|_| "address")?;
    let sa = Server::bind(lo, node(a, "a"))
        .await
        .map_err(|e| e.to_string())?;
    let sb = Server::bind(lo, node(b, "b"))
        .await
        .map_err(|e| e.to_string())?;
    let (ha, hb) = (sa.handle(), sb.handle());
    tokio::spawn(sa.run());
    tokio::spawn(sb.run());
    let mut x = ha.member().ok_or("no member")?;
    let mut y = hb.member().ok_or("no member")?;
    let room = format!("speed{}", std::process::id());
    x.send(ClientMessage::CreateOrJoin { room: room.clone() });
    y.send(ClientMessage::CreateOrJoin { room });
    // Until both hear they are in (ready).
    let wait = Duration::from_secs(5);
    for m in [&mut x, &mut y] {
        loop {
            match tokio::time::timeout(wait, m.recv()).await {
                Ok(Some(ServerMessage::Ready { .. })) => break,
                Ok(Some(_)) => {}
                _ => return Err("the members did not meet over the bus".into()),
            }
        }
    }
    // A candidate-sized payload (~200 bytes).
    let data = Data::from(serde_json::json!({
        "candidate": "candidate:1 1 UDP 2122260223 192.168.1.20 54321 typ host generation 0 ufrag abcd network-id 1 network-cost 10",
        "sdpMid": "0"
    }));
    let start = Instant::now();
    let mut received = 0usize;
    while start.elapsed() < RUN {
        for _ in 0..WINDOW {
            x.send(ClientMessage::Message {
                to: None,
                data: data.clone(),
            });
        }
        let mut got = 0;
        while got < WINDOW {
            match tokio::time::timeout(wait, y.recv()).await {
                Ok(Some(ServerMessage::Message { .. })) => got += 1,
                Ok(Some(_)) => {}
                _ => {
                    let first = x.try_recv();
                    return Err(format!(
                        "{got} of {WINDOW} relayed messages arrived; the sender heard {first:?}"
                    ));
                }
            }
        }
        received += got;
    }
    let rate = received as f64 / start.elapsed().as_secs_f64();
    drop((x, y));
    ha.shutdown();
    hb.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(rate)
}

/// A redis-server of our own, killed when dropped.
struct OwnRedis {
    child: Child,
    dir: std::path::PathBuf,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn own_redis() -> Result<(String, OwnRedis), String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let dir = std::env::temp_dir().join(format!("rtclab-speed-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("redis-server: {e}"))?;
    let r = OwnRedis { child, dir };
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("redis-server did not listen in 5 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((format!("redis://127.0.0.1:{port}"), r))
}

/// The bus's figures (on a thread of their own, with their own runtime:
/// `rtclab` calls this from inside its runtime).
pub fn speed() -> Result<Vec<Figure>, String> {
    std::thread::spawn(measure)
        .join()
        .map_err(|_| "speed bus panicked".to_string())?
}

fn measure() -> Result<Vec<Figure>, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let hub = MemoryHub::new();
    let memory = rt.block_on(relay_rate(Arc::new(hub.node()), Arc::new(hub.node())))?;
    out.push(Figure::new("bus.memory_relay_msgs", memory, "msg/s"));
    let (url, _own) = match std::env::var("RTCLAB_REDIS") {
        Ok(u) => (u, None),
        Err(_) => match own_redis() {
            Ok((u, r)) => (u, Some(r)),
            Err(e) => {
                eprintln!("speed bus: no Redis ({e}); set RTCLAB_REDIS or install redis-server");
                return Ok(out);
            }
        },
    };
    let _inside = rt.enter();
    let bus = |u: &str| -> Result<Arc<dyn Bus>, String> {
        Ok(Arc::new(RedisBus::open(u).map_err(|e| e.to_string())?))
    };
    let redis = rt.block_on(relay_rate(bus(&url)?, bus(&url)?))?;
    out.push(Figure::new("bus.redis_relay_msgs", redis, "msg/s"));
    // The ceiling: one client's PUBLISH round trips, one after another.
    let probe = RedisBus::open(&url).map_err(|e| e.to_string())?;
    let (n, took) = rt.block_on(async {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < RUN {
            if probe.publish("rtclab:speed", "x").await.is_err() {
                break;
            }
            n += 1;
        }
        (n, start.elapsed())
    });
    out.push(Figure::new(
        "bus.redis_publish_rtt_us",
        took.as_secs_f64() * 1e6 / f64::from(n.max(1)),
        "us",
    ));
    Ok(out)
}
