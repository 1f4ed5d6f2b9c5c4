//! The signaling server against real WebSocket clients (tokio-tungstenite)
//! on a free loopback port: rooms, relaying, bye, bad input, limits, many
//! rooms at once, an in-process Rust member, the pages, shutdown, and the
//! `rtclab signaling` command with Ctrl-C. Every wait is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtclab::signaling::{ClientMessage, Config, Handle, Server, ServerMessage};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(200);

async fn start(config: Config) -> (SocketAddr, Handle, JoinHandle<std::io::Result<()>>) {
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("local addr");
    let handle = server.handle();
    let task = tokio::spawn(server.run());
    (addr, handle, task)
}

async fn client(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws")),
    )
    .await
    .expect("connect in time")
    .expect("WebSocket handshake");
    ws
}

async fn send(ws: &mut Ws, v: Value) {
    send_text(ws, v.to_string()).await;
}

async fn send_text(ws: &mut Ws, text: String) {
    tokio::time::timeout(WAIT, ws.send(Message::Text(text.into())))
        .await
        .expect("send in time")
        .expect("send");
}

/// The next text message, as JSON.
async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the stream is open")
            .expect("a frame");
        match m {
            Message::Text(t) => {
                return serde_json::from_str(t.as_str()).expect("JSON from the server");
            }
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Nothing arrives for a short while.
async fn silent(ws: &mut Ws) {
    if let Ok(m) = tokio::time::timeout(QUIET, ws.next()).await {
        panic!("expected silence, got {m:?}");
    }
}

async fn join(ws: &mut Ws, room: &str) -> Value {
    send(ws, json!({"type": "create or join", "room": room})).await;
    recv(ws).await
}

/// Two clients in `room`, all their join messages read; returns (a, b, a's id, b's id).
async fn pair(addr: SocketAddr, room: &str) -> (Ws, Ws, u64, u64) {
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    let created = join(&mut a, room).await;
    assert_eq!(created["type"], "created", "{created}");
    let joined = join(&mut b, room).await;
    assert_eq!(joined["type"], "joined", "{joined}");
    assert_eq!(recv(&mut a).await["type"], "join");
    assert_eq!(recv(&mut a).await["type"], "ready");
    assert_eq!(recv(&mut b).await["type"], "ready");
    let ida = created["id"].as_u64().expect("id");
    let idb = joined["id"].as_u64().expect("id");
    (a, b, ida, idb)
}

#[tokio::test]
async fn create_join_ready_and_full() {
    let (addr, _h, _t) = start(Config::default()).await;
    let mut a = client(addr).await;
    let mut b = client(addr).await;
    let mut c = client(addr).await;

    let created = join(&mut a, "foo").await;
    assert_eq!(created["type"], "created");
    assert_eq!(created["room"], "foo");
    let ida = created["id"].clone();

    let joined = join(&mut b, "foo").await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["members"], json!([ida]));
    let idb = joined["id"].clone();
    assert_ne!(ida, idb);
    assert_eq!(
        recv(&mut a).await,
        json!({"type": "join", "room": "foo", "id": idb})
    );
    let ready = json!({"type": "ready", "room": "foo", "members": [ida, idb]});
    assert_eq!(recv(&mut a).await, ready);
    assert_eq!(recv(&mut b).await, ready);

    assert_eq!(
        join(&mut c, "foo").await,
        json!({"type": "full", "room": "foo"})
    );
    silent(&mut a).await;
    silent(&mut b).await;
}

#[tokio::test]
async fn room_size_comes_from_the_config() {
    let (addr, _h, _t) = start(Config::with_room_size(3)).await;
    let mut ws = Vec::new();
    for i in 0..3 {
        let mut c = client(addr).await;
        let r = join(&mut c, "trio").await;
        assert_eq!(r["type"], if i == 0 { "created" } else { "joined" });
        ws.push(c);
    }
    let mut d = client(addr).await;
    assert_eq!(join(&mut d, "trio").await["type"], "full");
}

#[tokio::test]
async fn messages_reach_the_other_member_of_the_room_only() {
    let (addr, _h, _t) = start(Config::default()).await;
    let (mut a, mut b, ida, _) = pair(addr, "one").await;
    let (mut c, mut d, _, _) = pair(addr, "two").await;

    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    send(&mut a, json!({"type": "message", "data": offer})).await;
    assert_eq!(
        recv(&mut b).await,
        json!({"type": "message", "from": ida, "data": offer})
    );
    silent(&mut a).await;
    silent(&mut c).await;
    silent(&mut d).await;

    // And the other way, in the other room.
    send(&mut d, json!({"type": "message", "data": "hello c"})).await;
    assert_eq!(recv(&mut c).await["data"], "hello c");
    silent(&mut a).await;
    silent(&mut b).await;
}

#[tokio::test]
async fn bye_when_a_member_leaves_closes_or_vanishes() {
    let (addr, _h, _t) = start(Config::default()).await;

    // An explicit bye.
    let (mut a, mut b, _, idb) = pair(addr, "r1").await;
    send(&mut b, json!({"type": "bye"})).await;
    assert_eq!(
        recv(&mut a).await,
        json!({"type": "bye", "room": "r1", "id": idb})
    );

    // A clean WebSocket close.
    let (mut a, mut b, _, idb) = pair(addr, "r2").await;
    b.close(None).await.expect("close");
    assert_eq!(
        recv(&mut a).await,
        json!({"type": "bye", "room": "r2", "id": idb})
    );

    // The TCP connection just goes away.
    let (mut a, b, _, idb) = pair(addr, "r3").await;
    drop(b);
    assert_eq!(
        recv(&mut a).await,
        json!({"type": "bye", "room": "r3", "id": idb})
    );

    // The freed place can be taken again.
    let mut c = client(addr).await;
    assert_eq!(join(&mut c, "r3").await["type"], "joined");
}

#[tokio::test]
async fn malformed_json_gets_an_error_and_the_room_goes_on() {
    let (addr, _h, _t) = start(Config::default()).await;
    let (mut a, mut b, ida, _) = pair(addr, "r").await;
    for bad in [
        "not json",
        "{",
        r#"{"type":"dance"}"#,
        r#"{"type":"create or join","room":"a b"}"#,
    ] {
        send_text(&mut a, bad.to_string()).await;
        let e = recv(&mut a).await;
        assert_eq!(e["type"], "error", "{bad}: {e}");
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
    }
    // A binary frame is refused the same way.
    a.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    assert_eq!(recv(&mut a).await["code"], "malformed");
    silent(&mut b).await;
    send(&mut a, json!({"type": "message", "data": 42})).await;
    assert_eq!(
        recv(&mut b).await,
        json!({"type": "message", "from": ida, "data": 42})
    );
}

#[tokio::test]
async fn oversized_messages_get_an_error_or_close_the_connection() {
    let mut config = Config::default();
    config.rooms.max_message_bytes = 1000;
    let (addr, _h, _t) = start(config).await;
    let (mut a, mut b, ida, _) = pair(addr, "r").await;

    // A bit over the limit: an error, not relayed, the connection stays.
    let big = json!({"type": "message", "data": "x".repeat(1500)}).to_string();
    send_text(&mut a, big).await;
    let e = recv(&mut a).await;
    assert_eq!(e["code"], "too-large", "{e}");
    silent(&mut b).await;
    send(&mut a, json!({"type": "message", "data": "small"})).await;
    assert_eq!(recv(&mut b).await["data"], "small");

    // Far over: refused by the WebSocket layer before it is buffered; the
    // connection is closed (policy violation) and the room hears bye.
    let huge = json!({"type": "message", "data": "x".repeat(100_000)}).to_string();
    let _ = a.send(Message::Text(huge.into())).await;
    let end = tokio::time::timeout(WAIT, async {
        loop {
            match a.next().await {
                Some(Ok(Message::Close(frame))) => return Some(frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("the server ends the connection within 5 s");
    if let Some(Some(frame)) = end {
        assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
    }
    assert_eq!(
        recv(&mut b).await,
        json!({"type": "bye", "room": "r", "id": ida})
    );
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped_not_buffered() {
    let mut config = Config::default();
    config.outbox = 4;
    config.send_timeout = Duration::from_millis(500);
    let (addr, handle, _t) = start(config).await;
    let (_deaf, mut b, ida, _) = pair(addr, "r").await;
    // b floods the deaf member: once TCP's buffers and its outbox are full,
    // b hears busy; once a write to the deaf one has waited 0.5 s, the
    // server drops it, and b hears bye. At most 40 MB are sent.
    let chunk = "x".repeat(50_000);
    let mut bye = None;
    'flood: for _ in 0..800 {
        send(&mut b, json!({"type": "message", "data": chunk})).await;
        while let Some(Some(Ok(Message::Text(t)))) = futures_util::FutureExt::now_or_never(b.next())
        {
            let m = serde_json::from_str::<Value>(t.as_str()).expect("JSON");
            if m["type"] == "bye" {
                bye = Some(m);
                break 'flood;
            }
            assert_eq!(m["code"], "busy", "{m}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let bye = match bye {
        Some(m) => m,
        None => loop {
            let m = recv(&mut b).await;
            if m["type"] != "error" {
                break m;
            }
        },
    };
    assert_eq!(bye, json!({"type": "bye", "room": "r", "id": ida}));
    assert_eq!(handle.counts().0, 1);
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_dropped() {
    let mut config = Config::default();
    config.ping_interval = Duration::from_millis(200);
    let (addr, handle, _t) = start(config).await;
    let (deaf, mut b, ida, _) = pair(addr, "r").await;
    // b reads (tungstenite answers pings as it reads); the deaf one is
    // never polled again.
    assert_eq!(
        recv(&mut b).await,
        json!({"type": "bye", "room": "r", "id": ida})
    );
    let until = tokio::time::Instant::now() + Duration::from_millis(1000);
    while let Ok(m) = tokio::time::timeout_at(until, b.next()).await {
        match m {
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("b got {other:?}"),
        }
    }
    assert_eq!(handle.counts().0, 1);
    drop(deaf);
}

/// Floods `ws` (a room member) with `message` until `until`, reading what
/// comes back as it goes; returns (messages sent, `busy` errors heard).
async fn flood(ws: Ws, message: String, until: tokio::time::Instant) -> (usize, usize) {
    let (mut w, mut r) = ws.split();
    let reader = tokio::spawn(async move {
        let mut busy = 0;
        while let Ok(Some(Ok(m))) = tokio::time::timeout(WAIT, r.next()).await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "error" {
                    assert_eq!(v["code"], "busy", "{v}");
                    busy += 1;
                }
            }
        }
        busy
    });
    let mut sent = 0;
    while tokio::time::Instant::now() < until {
        let text = Message::Text(message.clone().into());
        match tokio::time::timeout(WAIT, w.send(text)).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
        tokio::task::yield_now().await;
    }
    // Every busy error was made as its message came in: let them arrive.
    tokio::time::sleep(QUIET).await;
    let _ = w.close().await;
    let busy = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .map_or(0, |b| b.unwrap_or(0));
    (sent, busy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_receivers_hold_a_bounded_number_of_bytes() {
    // Three rooms, each with a member that never reads (its WebSocket is
    // not polled: TCP's buffers fill, then the server's writes block) and
    // one that sends 60 KB messages as fast as it can for 1.5 s.
    const PAIRS: usize = 3;
    let mut config = Config::default();
    config.send_timeout = Duration::from_secs(1);
    config.ping_interval = Duration::from_millis(500);
    let per_client = config.outbox_bytes + 8192;
    let (addr, handle, _t) = start(config).await;
    let message = json!({"type": "message", "data": "x".repeat(60_000)}).to_string();
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut deaf = Vec::new();
    let mut floods = Vec::new();
    for i in 0..PAIRS {
        let (a, b, _, _) = pair(addr, &format!("stall-{i}")).await;
        deaf.push(a);
        floods.push(tokio::spawn(flood(b, message.clone(), until)));
    }
    let mut peak = 0;
    while !floods.iter().all(|f| f.is_finished()) {
        peak = peak.max(handle.queued_bytes());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut busy = 0;
    for f in floods {
        busy += f.await.expect("flood").1;
    }
    // The server held at most one bounded outbox per stalled client.
    assert!(
        peak <= PAIRS * per_client,
        "{peak} bytes queued at the peak, over {PAIRS} × {per_client}"
    );
    assert!(busy > 0, "the senders heard busy");
    // The stalled members are dropped once a write to them has waited 1 s
    // or a ping of theirs went unanswered for 0.5 s, and their queues are
    // freed.
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.counts().0 > 0 || handle.queued_bytes() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "clients {:?}, {} bytes queued",
            handle.counts(),
            handle.queued_bytes()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(deaf);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_receiver_is_not_dropped_for_a_fast_sender() {
    // b reads, but slower than a writes: a hears busy for what did not
    // fit in b's outbox; b gets the rest and stays.
    let (addr, handle, _t) = start(Config::default()).await;
    let (a, mut b, _, _) = pair(addr, "fast").await;
    let message = json!({"type": "message", "data": "y".repeat(20_000)}).to_string();
    let until = tokio::time::Instant::now() + Duration::from_millis(1000);
    let flood = tokio::spawn(flood(a, message, until));
    let mut got = 0;
    loop {
        match tokio::time::timeout(Duration::from_millis(500), b.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
                if v["type"] == "bye" {
                    break;
                }
                assert_eq!(v["type"], "message", "{v}");
                got += 1;
                // A slow reader: 2 ms a message.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Ok(Some(Ok(other))) => panic!("b got {other:?}"),
            Ok(other) => panic!("b was cut off: {other:?}"),
            Err(_) if flood.is_finished() => break,
            Err(_) => {}
        }
    }
    let (sent, busy) = flood.await.expect("flood");
    assert!(busy > 0, "a sent {sent} and never heard busy");
    assert_eq!(got + busy, sent, "each message was delivered or refused");
    // b is still there and still hears a message.
    let mut c = client(addr).await;
    assert_eq!(join(&mut c, "fast").await["type"], "joined");
    assert_eq!(handle.counts().0, 2);
}

#[tokio::test]
async fn connections_past_the_limit_are_refused() {
    let mut config = Config::default();
    config.max_connections = 2;
    let (addr, handle, _t) = start(config).await;
    let _a = client(addr).await;
    let _member = handle.member().expect("a member");
    let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    assert!(handle.member().is_none());
    drop(_member);
    let _b = client(addr).await;
}

/// Whether the server closes `s` within `within` (reads until EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

fn short_timeouts() -> Config {
    let mut config = Config::default();
    config.header_read_timeout = Duration::from_millis(500);
    config.idle_timeout = Duration::from_millis(700);
    config
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let (addr, _h, _t) = start(short_timeouts()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
}

#[tokio::test]
async fn a_slowloris_is_closed_after_the_header_timeout() {
    let (addr, _h, _t) = start(short_timeouts()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // A header line every 100 ms, never the blank line that ends them:
    // never idle, but the headers take too long.
    s.write_all(b"GET / HTTP/1.1\r\n").await.expect("write");
    let start = tokio::time::Instant::now();
    let mut closed = false;
    for i in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(format!("X-{i}: y\r\n").as_bytes())
            .await
            .is_err()
            || closed_within(&mut s, Duration::from_millis(1)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "still open after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_millis(1500));
}

#[tokio::test]
async fn a_request_whose_body_stops_is_closed_after_the_idle_timeout() {
    let (addr, _h, _t) = start(short_timeouts()).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    // Headers in time, then a body that never comes.
    let req = format!("POST /report HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100\r\n\r\nab");
    s.write_all(req.as_bytes()).await.expect("write");
    let start = tokio::time::Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn tcp_connections_past_the_cap_are_closed_at_once() {
    let mut config = Config::default();
    config.max_tcp_connections = 3;
    let (addr, _h, _t) = start(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(QUIET).await;
    // The fourth is accepted and closed; a page is served once one goes.
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_within(&mut extra, Duration::from_secs(1)).await);
    for s in &mut held {
        assert!(!closed_within(s, Duration::from_millis(10)).await);
    }
    held.pop();
    tokio::time::sleep(QUIET).await;
    assert!(http_get(addr, "/").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn many_rooms_at_once() {
    const ROOMS: usize = 50;
    let (addr, handle, _t) = start(Config::default()).await;
    let mut tasks = Vec::new();
    for i in 0..ROOMS {
        tasks.push(tokio::spawn(async move {
            let room = format!("room-{i}");
            let (mut a, mut b, _, _) = pair(addr, &room).await;
            send(
                &mut a,
                json!({"type": "message", "data": {"from": "a", "room": room}}),
            )
            .await;
            send(
                &mut b,
                json!({"type": "message", "data": {"from": "b", "room": room}}),
            )
            .await;
            let to_b = recv(&mut b).await;
            let to_a = recv(&mut a).await;
            assert_eq!(to_b["data"], json!({"from": "a", "room": room}));
            assert_eq!(to_a["data"], json!({"from": "b", "room": room}));
            (a, b)
        }));
    }
    let mut sockets = Vec::new();
    for t in tasks {
        sockets.push(
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("in time")
                .expect("task"),
        );
    }
    assert_eq!(handle.counts(), (2 * ROOMS, ROOMS));
    drop(sockets);
    // Every room empties as its members go.
    let deadline = tokio::time::Instant::now() + WAIT;
    while handle.counts() != (0, 0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "left: {:?}",
            handle.counts()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_rust_member_talks_with_a_websocket_client() {
    let (addr, handle, _t) = start(Config::default()).await;
    let mut rust = handle.member().expect("a member");
    rust.send(ClientMessage::CreateOrJoin {
        room: "mixed".into(),
    });
    let id = rust.id();
    assert_eq!(
        rust.recv().await,
        Some(ServerMessage::Created {
            room: "mixed".into(),
            id
        })
    );

    let mut browser = client(addr).await;
    assert_eq!(join(&mut browser, "mixed").await["type"], "joined");
    assert!(matches!(
        rust.recv().await,
        Some(ServerMessage::Join { .. })
    ));
    assert!(matches!(
        rust.recv().await,
        Some(ServerMessage::Ready { .. })
    ));
    assert_eq!(recv(&mut browser).await["type"], "ready");

    rust.send(ClientMessage::Message {
        to: None,
        data: json!({"sdp": "offer"}).into(),
    });
    assert_eq!(
        recv(&mut browser).await,
        json!({"type": "message", "from": id.0, "data": {"sdp": "offer"}})
    );
    send(
        &mut browser,
        json!({"type": "message", "data": {"sdp": "answer"}}),
    )
    .await;
    match tokio::time::timeout(WAIT, rust.recv())
        .await
        .expect("in time")
    {
        Some(ServerMessage::Message { data, .. }) => assert_eq!(data, json!({"sdp": "answer"})),
        other => panic!("{other:?}"),
    }

    drop(rust);
    assert_eq!(recv(&mut browser).await["type"], "bye");
}

/// One plain HTTP/1.1 GET; returns the whole response.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn the_pages_are_served() {
    let (addr, _h, _t) = start(Config::default()).await;
    let index = http_get(addr, "/").await;
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(index.contains("/07_signaling/"), "{index}");
    let page = http_get(addr, "/07_signaling/?room=x").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{page}"
    );
    assert!(page.contains("<script src=\"main.js\">"), "{page}");
    let js = http_get(addr, "/07_signaling/main.js").await;
    assert!(js.contains("create or join"), "{js}");
    let redirect = http_get(addr, "/07_signaling").await;
    assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect}");
    assert!(
        redirect
            .to_ascii_lowercase()
            .contains("location: /07_signaling/"),
        "{redirect}"
    );
    let missing = http_get(addr, "/nothing").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // Nothing a page loads comes from elsewhere: no CDN.
    for p in rtclab::signaling::PAGES {
        let body = String::from_utf8_lossy(p.body);
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{} links out",
            p.path
        );
    }
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_going_away() {
    let (addr, handle, task) = start(Config::default()).await;
    let (mut a, mut b, _, _) = pair(addr, "r").await;
    let mut member = handle.member().expect("member");
    handle.shutdown();
    for ws in [&mut a, &mut b] {
        let frame = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => return f,
                    Some(Ok(_)) => continue,
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        })
        .await
        .expect("closed in time");
        assert_eq!(frame.map(|f| u16::from(f.code)), Some(1001));
    }
    assert_eq!(
        tokio::time::timeout(WAIT, member.recv())
            .await
            .expect("in time"),
        None
    );
    drop(member);
    drop((a, b));
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run() returns in time")
        .expect("task")
        .expect("no I/O error");
    assert!(handle.member().is_none(), "no new members after shutdown");
    assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
}

#[test]
fn the_command_serves_until_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let mut child = Command::new(env!("CARGO_BIN_EXE_rtclab"))
        .args(["signaling", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start rtclab signaling");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("readable");
    // "rtclab signaling on http://127.0.0.1:PORT/ (…)"
    let addr: SocketAddr = first
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("no address in {first:?}")
        });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut ws = rt.block_on(async {
        let mut ws = client(addr).await;
        assert_eq!(join(&mut ws, "cli").await["type"], "created");
        ws
    });

    // Ctrl-C is SIGINT.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    rt.block_on(async {
        let closed = tokio::time::timeout(WAIT, async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => continue,
                    _ => return None,
                }
            }
        })
        .await
        .expect("closed in time");
        assert_eq!(closed, Some(1001));
    });
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("rtclab signaling did not stop on SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}
