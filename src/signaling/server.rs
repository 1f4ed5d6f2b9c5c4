//! The signaling server over tokio: HTTP and WebSocket from axum, the rooms
//! from the sans-IO [`Rooms`].
//!
//! One [`Rooms`] sits behind a mutex (held for microseconds, never across an
//! `.await`). Each WebSocket connection is a task with an *outbox*, a bounded
//! channel of [`ServerMessage`]s; after every input, the rooms' output is
//! dispatched to the outboxes. A client too slow to drain its outbox is
//! disconnected rather than buffered without bound. A Rust task joins the
//! same way, without a socket: [`Handle::member`] gives it a [`Member`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use super::message::{ClientMessage, ServerMessage};
use super::room::{self, ClientId, Rooms};
use super::web::{PAGES, Page};

/// What a [`Server`] allows and serves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The rooms' limits (room size, message size, number of rooms).
    pub rooms: room::Config,
    /// Most WebSocket connections (and members) at once; more get HTTP 503.
    pub max_connections: usize,
    /// Messages queued for one client before it counts as too slow and is
    /// disconnected.
    pub outbox: usize,
    /// The web pages served over HTTP (default: [`PAGES`], the examples').
    pub pages: Vec<Page>,
    /// Where the bodies of `POST /report` go, if anywhere: a browser test's
    /// page reports its results there (at most 1 MiB each).
    pub report_to: Option<mpsc::Sender<String>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rooms: room::Config::default(),
            max_connections: 1024,
            outbox: 256,
            pages: PAGES.to_vec(),
            report_to: None,
        }
    }
}

impl Config {
    /// The default configuration with rooms of `room_size` members.
    pub fn with_room_size(room_size: usize) -> Self {
        let mut c = Config::default();
        c.rooms.room_size = room_size;
        c
    }
}

/// Close code for "going away" (RFC 6455 §7.4.1): the server stops.
const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code for "policy violation" (RFC 6455 §7.4.1): a frame the server
/// will not take (too big, or not a WebSocket frame at all).
const CLOSE_POLICY: u16 = 1008;
/// Close code for "try again later" (RFC 6455 §7.4.1, IANA registry): the
/// client fell too far behind.
const CLOSE_TRY_AGAIN: u16 = 1013;

/// How long one WebSocket write may take before the client counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

struct Hub {
    rooms: Rooms,
    outboxes: HashMap<ClientId, mpsc::Sender<ServerMessage>>,
    closed: bool,
}

struct Shared {
    hub: Mutex<Hub>,
    config: Config,
    connections: AtomicUsize,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves the rooms consistent
        // enough (each step is a few map operations); keep serving.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new client with its outbox; `None` once the server stops.
    fn register(&self) -> Option<(ClientId, mpsc::Receiver<ServerMessage>)> {
        let mut hub = self.hub();
        if hub.closed {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.config.outbox.max(1));
        let id = hub.rooms.connect();
        hub.outboxes.insert(id, tx);
        Some((id, rx))
    }

    /// Runs `f` on the rooms, then delivers what they output.
    fn with_rooms(&self, f: impl FnOnce(&mut Rooms)) {
        let mut hub = self.hub();
        f(&mut hub.rooms);
        hub.dispatch();
    }
}

// ANCHOR: dispatch
impl Hub {
    fn dispatch(&mut self) {
        loop {
            let mut slow = Vec::new();
            while let Some(out) = self.rooms.poll_output() {
                let Some(tx) = self.outboxes.get(&out.to) else {
                    continue;
                };
                if tx.try_send(out.message).is_err() {
                    slow.push(out.to);
                }
            }
            if slow.is_empty() {
                return;
            }
            // Full (too slow) or closed (its task ended): drop its outbox,
            // which tells its task to close, and take it out of its room.
            for id in slow {
                if self.outboxes.remove(&id).is_some() {
                    tracing::debug!(client = %id, "signaling: client too slow, disconnected");
                }
                self.rooms.disconnect(id);
            }
        }
    }
}
// ANCHOR_END: dispatch

/// A signaling server bound to a TCP port, not yet serving.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
}

/// A handle on a running (or about to run) [`Server`]: add Rust members, stop
/// it, look at its rooms. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
}

impl Server {
    /// Binds `addr` (port 0: a free port).
    pub async fn bind(addr: SocketAddr, config: Config) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub {
                rooms: Rooms::new(config.rooms.clone()),
                outboxes: HashMap::new(),
                closed: false,
            }),
            config,
            connections: AtomicUsize::new(0),
        });
        let (stop, _) = watch::channel(false);
        Ok(Server {
            listener,
            shared,
            stop: Arc::new(stop),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle to add members and stop the server.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
            stop: self.stop.clone(),
        }
    }

    /// Serves until [`Handle::shutdown`].
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(std::future::pending()).await
    }

    /// Serves until `signal` completes (e.g. `tokio::signal::ctrl_c()`) or
    /// [`Handle::shutdown`] is called. Then it stops accepting, closes every
    /// WebSocket with "going away" (1001), ends every member's stream, and
    /// returns once the connections have closed (at most about 2 s later).
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shared = self.shared.clone();
        let mut stopped = self.stop.subscribe();
        let trigger = async move {
            tokio::select! {
                () = signal => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
            let mut hub = shared.hub();
            hub.closed = true;
            // Every task sees its outbox end and closes its socket.
            hub.outboxes.clear();
        };
        let app = Router::new()
            .route("/ws", get(websocket))
            .route("/report", post(report))
            .fallback(page)
            .with_state(self.shared.clone());
        axum::serve(self.listener, app)
            .with_graceful_shutdown(trigger)
            .await?;
        // The upgraded connections run on their own tasks: give them a
        // moment to send their close frames.
        for _ in 0..200 {
            if self.shared.connections.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }
}

impl Handle {
    /// A new room member driven by Rust code instead of a WebSocket (the
    /// demo's Rust peer). `None` once the server stops or is at its
    /// connection limit.
    pub fn member(&self) -> Option<Member> {
        let count = self.shared.connections.fetch_add(1, Ordering::AcqRel);
        if count >= self.shared.config.max_connections {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let Some((id, rx)) = self.shared.register() else {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            return None;
        };
        Some(Member {
            id,
            rx,
            shared: self.shared.clone(),
        })
    }

    /// Stops the server (as Ctrl-C would).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }

    /// `(connected clients, rooms with members)` right now.
    pub fn counts(&self) -> (usize, usize) {
        let hub = self.shared.hub();
        (hub.rooms.client_count(), hub.rooms.room_count())
    }
}

/// A room member inside the server's process: it sends [`ClientMessage`]s
/// and receives [`ServerMessage`]s exactly as a WebSocket client does, minus
/// the JSON. Dropping it disconnects it (its room hears `bye`).
pub struct Member {
    id: ClientId,
    rx: mpsc::Receiver<ServerMessage>,
    shared: Arc<Shared>,
}

impl Member {
    /// Its id in the rooms.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Sends a message, as a client would.
    pub fn send(&self, message: ClientMessage) {
        self.shared
            .with_rooms(|r| r.handle_message(self.id, message));
    }

    /// The next message for this member; `None` once the server stopped or
    /// dropped it (too slow).
    pub async fn recv(&mut self) -> Option<ServerMessage> {
        self.rx.recv().await
    }

    /// A message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<ServerMessage> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let id = self.id;
        self.shared.with_rooms(|r| r.disconnect(id));
        self.shared.hub().outboxes.remove(&id);
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Counts a connection while it lives.
struct Counted(Arc<Shared>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn websocket(State(shared): State<Arc<Shared>>, upgrade: WebSocketUpgrade) -> Response {
    let count = shared.connections.fetch_add(1, Ordering::AcqRel);
    let counted = Counted(shared.clone());
    if count >= shared.config.max_connections {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many connections\n").into_response();
    }
    // Frames up to twice the message limit are read and answered with a
    // JSON error; anything larger is refused by the WebSocket layer before
    // it is buffered, and the connection is closed.
    let cap = shared
        .config
        .rooms
        .max_message_bytes
        .saturating_mul(2)
        .max(4096);
    upgrade
        .max_message_size(cap)
        .max_frame_size(cap)
        .on_upgrade(move |socket| async move {
            connection(socket, shared).await;
            drop(counted);
        })
}

fn close(code: u16, reason: &str) -> Message {
    // RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of
    // them the code.
    let mut reason = reason.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

// ANCHOR: connection
async fn connection(mut socket: WebSocket, shared: Arc<Shared>) {
    let Some((id, mut outbox)) = shared.register() else {
        let frame = close(CLOSE_GOING_AWAY, "the server is stopping");
        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await;
        return;
    };
    tracing::debug!(client = %id, "signaling: connected");
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    tracing::trace!(client = %id, %text, "signaling: ←");
                    shared.with_rooms(|r| r.handle_text(id, text.as_str()));
                }
                Some(Ok(Message::Binary(b))) => {
                    shared.with_rooms(|r| r.handle_binary(id, b.len()));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::debug!(client = %id, "signaling: read error: {e}");
                    let frame = close(CLOSE_POLICY, &e.to_string());
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await;
                    break;
                }
            },
            out = outbox.recv() => match out {
                Some(m) => {
                    let text = m.to_json();
                    tracing::trace!(client = %id, %text, "signaling: →");
                    // A client that stops reading would block this send
                    // forever once TCP's buffers fill: give up after a while.
                    let frame = Message::Text(text.into());
                    let sent = tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
                None => {
                    let stopping = shared.hub().closed;
                    let frame = if stopping {
                        close(CLOSE_GOING_AWAY, "the server is stopping")
                    } else {
                        close(CLOSE_TRY_AGAIN, "too slow: messages were piling up")
                    };
                    let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(frame)).await;
                    break;
                }
            },
        }
    }
    shared.with_rooms(|r| r.disconnect(id));
    shared.hub().outboxes.remove(&id);
    tracing::debug!(client = %id, "signaling: disconnected");
}
// ANCHOR_END: connection

async fn report(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    let Some(tx) = &shared.config.report_to else {
        return StatusCode::NOT_FOUND;
    };
    if body.len() > 1 << 20 {
        return StatusCode::PAYLOAD_TOO_LARGE;
    }
    match tx.try_send(body) {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn page(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let path = uri.path();
    let pages = &shared.config.pages;
    if let Some(p) = pages.iter().find(|p| p.path == path) {
        return (
            [
                (header::CONTENT_TYPE, p.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            p.body,
        )
            .into_response();
    }
    // `/07_signaling` → `/07_signaling/`, so that the page's relative links
    // (`main.js`) resolve inside its folder.
    let with_slash = format!("{path}/");
    if pages.iter().any(|p| p.path == with_slash) {
        return (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, with_slash)],
        )
            .into_response();
    }
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}
