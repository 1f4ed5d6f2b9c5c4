//! The signaling server over tokio: HTTP/1.1 from hyper (driven here, for
//! its header-read timeout, an idle timeout and a cap on TCP connections),
//! routes and WebSocket from axum, the rooms from the sans-IO [`Rooms`].
//!
//! One [`Rooms`] sits behind a mutex (held for microseconds, never across an
//! `.await`). Each WebSocket connection is a task with an *outbox*, a
//! channel of [`ServerMessage`]s bounded in bytes and count; after every
//! input, the rooms' output is dispatched to the outboxes (see
//! [`Config::outbox_bytes`] for who is refused or disconnected when one is
//! full; [`Handle::queued_bytes`] is the total). A Rust task joins the
//! same way, without a socket: [`Handle::member`] gives it a [`Member`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::cluster::{self, Cluster, Op};
use super::message::{ClientMessage, ErrorCode, ServerMessage};
use super::room::{self, ClientId, Rooms};
use super::web::{PAGES, Page};
use crate::bus::{self, Bus};

/// What a [`Server`] allows and serves.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The rooms' limits (room size, message size, number of rooms).
    pub rooms: room::Config,
    /// Most WebSocket connections (and members) at once; more get HTTP 503.
    pub max_connections: usize,
    /// Most relayed messages queued for one client; past it (or past
    /// `outbox_bytes`) a message to it is refused and its sender hears
    /// `busy`.
    pub outbox: usize,
    /// Most bytes queued for one client (payload text plus a few dozen
    /// bytes a message), the bound on what a slow reader makes the server
    /// hold. Past it, a relayed message is refused and its sender hears
    /// `busy`; the server's own messages have 8 KiB and 16 messages of
    /// headroom beyond it, and a client that overflows even that is
    /// disconnected (close code 1013). One message always fits an empty
    /// outbox.
    pub outbox_bytes: usize,
    /// How long one WebSocket write may wait (the client's TCP window
    /// closed: it is not reading) before the client is disconnected and its
    /// outbox freed.
    pub send_timeout: Duration,
    /// Most TCP connections at once (HTTP, and WebSockets after their
    /// upgrade); one accepted past it is closed at once. Default: 1024, or
    /// fewer when the process may open fewer files (see
    /// [`default_tcp_cap`]), so that idle sockets cannot use up the file
    /// descriptors the rest of the process needs.
    pub max_tcp_connections: usize,
    /// How long a client may take to send a request's headers (from the
    /// connection's start, or the end of the previous response) before the
    /// connection is closed: a slowloris, or a socket that sends nothing.
    pub header_read_timeout: Duration,
    /// How long an HTTP connection (not yet a WebSocket) may go without a
    /// byte read or written, say in the middle of a request's body, before
    /// it is closed.
    pub idle_timeout: Duration,
    /// How often the server pings each WebSocket client (RFC 6455 §5.5.2;
    /// browsers answer on their own). A client that has not answered a
    /// ping when the next is due is not reading, and is disconnected, even
    /// when nothing is queued for it.
    pub ping_interval: Duration,
    /// The web pages served over HTTP (default: [`PAGES`], the examples').
    pub pages: Vec<Page>,
    /// Where the bodies of `POST /report` go, if anywhere: a browser test's
    /// page reports its results there (at most 1 MiB each).
    pub report_to: Option<mpsc::Sender<String>>,
    /// WHIP and WHEP (`/whip/…`, `/whep/…`) around a backend, if set;
    /// `None` (the default): not served.
    pub whip: Option<crate::whip::server::Mount>,
    /// More routes merged into the server's (the demo's capture
    /// downloads); `None` (the default): none.
    pub routes: Option<Router>,
    /// Share rooms with other nodes over this bus (see
    /// [`super::cluster`]); `None` (the default): this process alone.
    pub bus: Option<BusNode>,
}

/// This node on a bus shared with other signaling nodes.
#[derive(Clone)]
pub struct BusNode {
    /// The bus.
    pub bus: Arc<dyn Bus>,
    /// This node's name, unique among the nodes (1 to 64 of `A-Z a-z 0-9
    /// - _ .`).
    pub node: String,
}

impl std::fmt::Debug for BusNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BusNode({})", self.node)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rooms: room::Config::default(),
            max_connections: 1024,
            outbox: 256,
            outbox_bytes: 256 * 1024,
            send_timeout: Duration::from_secs(10),
            max_tcp_connections: default_tcp_cap(),
            ping_interval: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            pages: PAGES.to_vec(),
            report_to: None,
            whip: None,
            routes: None,
            bus: None,
        }
    }
}

/// The default [`Config::max_tcp_connections`]: 1024, but at most the
/// process's open-file limit less 128 descriptors kept for everything else
/// (the demo's UDP sockets, files), and at least 16. The limit is read from
/// `/proc/self/limits` (Linux); where that cannot be read, 1024.
pub fn default_tcp_cap() -> usize {
    const CAP: usize = 1024;
    const RESERVE: usize = 128;
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| open_files_soft_limit(&text));
    match soft {
        Some(n) => n.saturating_sub(RESERVE).clamp(16, CAP),
        None => CAP,
    }
}

/// The soft "Max open files" limit in the text of `/proc/self/limits`
/// (`None` if absent or "unlimited").
fn open_files_soft_limit(text: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
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

/// Room in an outbox beyond [`Config::outbox_bytes`] for the server's own
/// messages (join, ready, bye, error: a few hundred bytes each).
const CONTROL_HEADROOM_BYTES: usize = 8 * 1024;
/// The same in messages, beyond [`Config::outbox`].
const CONTROL_HEADROOM_COUNT: usize = 16;

/// The rooms of this process alone, or its share of rooms across nodes.
enum Logic {
    One(Rooms),
    Many(Cluster),
}

impl Logic {
    fn connect(&mut self) -> ClientId {
        match self {
            Logic::One(r) => r.connect(),
            Logic::Many(c) => c.connect(),
        }
    }

    fn disconnect(&mut self, id: ClientId) {
        match self {
            Logic::One(r) => r.disconnect(id),
            Logic::Many(c) => c.disconnect(id),
        }
    }

    fn handle_text(&mut self, id: ClientId, text: &str) {
        match self {
            Logic::One(r) => r.handle_text(id, text),
            Logic::Many(c) => c.handle_text(id, text),
        }
    }

    fn handle_binary(&mut self, id: ClientId, len: usize) {
        match self {
            Logic::One(r) => r.handle_binary(id, len),
            Logic::Many(c) => c.handle_binary(id, len),
        }
    }

    fn handle_message(&mut self, id: ClientId, m: ClientMessage) {
        match self {
            Logic::One(r) => r.handle_message(id, m),
            Logic::Many(c) => c.handle_message(id, m),
        }
    }

    fn poll_output(&mut self) -> Option<room::Outgoing> {
        match self {
            Logic::One(r) => r.poll_output(),
            Logic::Many(c) => c.poll_output(),
        }
    }

    fn client_count(&self) -> usize {
        match self {
            Logic::One(r) => r.client_count(),
            Logic::Many(c) => c.client_count(),
        }
    }

    fn room_count(&self) -> usize {
        match self {
            Logic::One(r) => r.room_count(),
            Logic::Many(c) => c.room_count(),
        }
    }
}

struct Hub {
    rooms: Logic,
    /// What the cluster asked of the bus, for the bus task.
    ops: Option<mpsc::Sender<Op>>,
    outboxes: HashMap<ClientId, Outbox>,
    closed: bool,
}

/// The sending end of a client's queue, and the bytes queued in it.
struct Outbox {
    tx: mpsc::Sender<Queued>,
    bytes: Arc<AtomicUsize>,
}

/// A message in an outbox with its cost, charged to the client's count and
/// the server's total until it is dropped (sent, or its queue dropped).
struct Queued {
    message: ServerMessage,
    _charge: Charge,
}

struct Charge {
    bytes: usize,
    client: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.client.fetch_sub(self.bytes, Ordering::AcqRel);
        self.total.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// What a queued message costs in memory: the enum itself plus what it
/// points to (a relayed payload is counted in full for each recipient,
/// although they share it).
fn cost(m: &ServerMessage) -> usize {
    let heap = match m {
        ServerMessage::Created { room, .. }
        | ServerMessage::Join { room, .. }
        | ServerMessage::Full { room }
        | ServerMessage::Bye { room, .. } => room.len(),
        ServerMessage::Joined { room, members, .. } | ServerMessage::Ready { room, members } => {
            room.len() + members.len() * std::mem::size_of::<ClientId>()
        }
        ServerMessage::Message { data, .. } => data.len(),
        ServerMessage::Error { reason, .. } => reason.len(),
    };
    std::mem::size_of::<ServerMessage>() + heap
}

struct Shared {
    hub: Mutex<Hub>,
    config: Config,
    connections: AtomicUsize,
    /// Bytes in every outbox (see [`cost`]).
    queued: Arc<AtomicUsize>,
}

impl Shared {
    fn hub(&self) -> MutexGuard<'_, Hub> {
        // A panic while holding the lock leaves the rooms consistent
        // enough (each step is a few map operations); keep serving.
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new client with its outbox; `None` once the server stops.
    fn register(&self) -> Option<(ClientId, mpsc::Receiver<Queued>, Arc<AtomicUsize>)> {
        let mut hub = self.hub();
        if hub.closed {
            return None;
        }
        let (tx, rx) = mpsc::channel(self.config.outbox.max(1) + CONTROL_HEADROOM_COUNT);
        let id = hub.rooms.connect();
        let bytes = Arc::new(AtomicUsize::new(0));
        hub.outboxes.insert(
            id,
            Outbox {
                tx,
                bytes: bytes.clone(),
            },
        );
        Some((id, rx, bytes))
    }

    /// Runs `f` on the rooms, then delivers what they output (and hands
    /// what they ask of the bus to the bus task).
    fn with_rooms(&self, f: impl FnOnce(&mut Logic)) {
        let mut hub = self.hub();
        f(&mut hub.rooms);
        hub.dispatch(&self.config, &self.queued);
    }

    /// Runs `f` on the cluster (if this node has one), then as
    /// [`Shared::with_rooms`].
    fn with_cluster(&self, f: impl FnOnce(&mut Cluster)) {
        self.with_rooms(|l| {
            if let Logic::Many(c) = l {
                f(c)
            }
        });
    }
}

// ANCHOR: dispatch
impl Hub {
    /// Delivers what the rooms output to the outboxes. A relayed message
    /// that does not fit its recipient's outbox is not queued and its
    /// sender hears `busy`: a fast sender slows itself, the reader keeps its
    /// place. The server's own messages (join, ready, bye, error: small, and
    /// caused by the client or its room) have some headroom beyond the
    /// bound; a client whose outbox overflows even that is not reading at
    /// all, and is disconnected.
    fn dispatch(&mut self, limits: &Config, total: &Arc<AtomicUsize>) {
        self.deliver(limits, total);
        if self.hand_ops() {
            self.deliver(limits, total);
        }
    }

    /// Hands the cluster's bus operations to the bus task, in order. The
    /// queue is bounded: a relayed message that does not fit is refused
    /// (`unavailable` to its sender); the others (joins, leaves: one per
    /// client action) wait on a task of their own.
    fn hand_ops(&mut self) -> bool {
        let Logic::Many(cluster) = &mut self.rooms else {
            return false;
        };
        let mut refused = Vec::new();
        while let Some(op) = cluster.poll_op() {
            let Some(tx) = &self.ops else {
                continue;
            };
            match tx.try_send(op) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(Op::Publish { client, .. })) => {
                    refused.push(client);
                }
                Err(mpsc::error::TrySendError::Full(op)) => {
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(op).await;
                    });
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        for &client in &refused {
            cluster.handle_publish_failed(client, "the bus queue is full");
        }
        !refused.is_empty()
    }

    fn deliver(&mut self, limits: &Config, total: &Arc<AtomicUsize>) {
        let mut busy = VecDeque::new();
        loop {
            let mut slow = Vec::new();
            while let Some(out) = self.rooms.poll_output().or_else(|| busy.pop_front()) {
                let Some(outbox) = self.outboxes.get(&out.to) else {
                    continue;
                };
                let relayed_from = match &out.message {
                    ServerMessage::Message { from, .. } => Some(*from),
                    _ => None,
                };
                match outbox.offer(out.message, relayed_from.is_some(), limits, total) {
                    Offer::Queued => {}
                    Offer::Full(queued) => match relayed_from {
                        Some(from) => busy.push_back(room::Outgoing {
                            to: from,
                            message: ServerMessage::Error {
                                code: ErrorCode::Busy,
                                reason: format!(
                                    "member {} reads slower than you send ({queued} bytes \
                                     wait for it): this message was not delivered to it",
                                    out.to
                                ),
                            },
                        }),
                        None => slow.push(out.to),
                    },
                    Offer::Gone => slow.push(out.to),
                }
            }
            if slow.is_empty() {
                return;
            }
            // Not reading at all, or its task ended: drop its outbox, which
            // tells its task to close, and take it out of its room.
            for id in slow {
                if self.outboxes.remove(&id).is_some() {
                    tracing::debug!(client = %id, "signaling: client not reading, disconnected");
                }
                self.rooms.disconnect(id);
            }
        }
    }
}

/// What became of a message offered to an outbox.
enum Offer {
    Queued,
    /// Over the bound; the outbox holds this many bytes.
    Full(usize),
    /// The client's task has ended.
    Gone,
}

impl Outbox {
    fn offer(
        &self,
        message: ServerMessage,
        relayed: bool,
        limits: &Config,
        total: &Arc<AtomicUsize>,
    ) -> Offer {
        let bytes = cost(&message);
        let queued = self.bytes.load(Ordering::Acquire);
        let in_channel = self.tx.max_capacity() - self.tx.capacity();
        let (byte_limit, count_limit) = if relayed {
            (limits.outbox_bytes, limits.outbox)
        } else {
            (
                limits.outbox_bytes + CONTROL_HEADROOM_BYTES,
                limits.outbox + CONTROL_HEADROOM_COUNT,
            )
        };
        // One message always fits an empty outbox, however large.
        if queued > 0 && (queued + bytes > byte_limit || in_channel >= count_limit) {
            return Offer::Full(queued);
        }
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        total.fetch_add(bytes, Ordering::AcqRel);
        let charge = Charge {
            bytes,
            client: self.bytes.clone(),
            total: total.clone(),
        };
        match self.tx.try_send(Queued {
            message,
            _charge: charge,
        }) {
            Ok(()) => Offer::Queued,
            Err(mpsc::error::TrySendError::Full(_)) => Offer::Full(queued),
            Err(mpsc::error::TrySendError::Closed(_)) => Offer::Gone,
        }
    }
}
// ANCHOR_END: dispatch

/// A signaling server bound to a TCP port, not yet serving.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: Arc<watch::Sender<bool>>,
    /// The cluster's bus operations, queued from the start (members may
    /// join before [`Server::run`] begins), for the bus task.
    ops: Option<mpsc::Receiver<Op>>,
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
        let (ops_tx, ops_rx) = match &config.bus {
            Some(_) => {
                let (tx, rx) = mpsc::channel(OPS_QUEUE);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            hub: Mutex::new(Hub {
                rooms: match &config.bus {
                    None => Logic::One(Rooms::new(config.rooms.clone())),
                    Some(b) => Logic::Many(Cluster::for_node(config.rooms.clone(), &b.node)),
                },
                ops: ops_tx,
                outboxes: HashMap::new(),
                closed: false,
            }),
            config,
            connections: AtomicUsize::new(0),
            queued: Arc::new(AtomicUsize::new(0)),
        });
        let (stop, _) = watch::channel(false);
        Ok(Server {
            listener,
            shared,
            stop: Arc::new(stop),
            ops: ops_rx,
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
    ///
    /// Each TCP connection holds one of [`Config::max_tcp_connections`]
    /// places until it closes (a WebSocket keeps its connection's); one
    /// accepted past the cap is closed at once. HTTP/1.1 comes from hyper,
    /// with [`Config::header_read_timeout`] and [`Config::idle_timeout`].
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Server {
            listener,
            shared,
            stop,
            ops,
        } = self;
        let mut stopped = stop.subscribe();
        let trigger = async move {
            tokio::select! {
                () = signal => {}
                _ = stopped.wait_for(|s| *s) => {}
            }
        };
        tokio::pin!(trigger);
        let app = Router::new()
            .route("/ws", get(websocket))
            .route("/report", post(report))
            .fallback(page)
            .with_state(shared.clone());
        let app = match &shared.config.whip {
            Some(whip) => app.merge(whip.router()),
            None => app,
        };
        let app = match &shared.config.routes {
            Some(routes) => app.merge(routes.clone()),
            None => app,
        };
        let service = TowerToHyperService::new(app);
        let bus_task = shared.config.bus.clone().zip(ops).map(|(b, rx)| {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            (stop, tokio::spawn(bus_task(shared.clone(), b, rx, stopped)))
        });
        let cap = shared.config.max_tcp_connections.max(1);
        let places = Arc::new(Semaphore::new(cap));
        let (closing, closing_rx) = watch::channel(false);
        loop {
            tokio::select! {
                () = &mut trigger => break,
                accepted = listener.accept() => {
                    let stream = match accepted {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of file descriptors, say: wait for some to
                            // close rather than spin.
                            tracing::debug!("signaling: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(place) = places.clone().try_acquire_owned() else {
                        tracing::debug!("signaling: {cap} TCP connections already; closed a new one");
                        drop(stream);
                        continue;
                    };
                    let io = Tracked::new(stream, place);
                    let config = &shared.config;
                    let task = http_connection(
                        io,
                        service.clone(),
                        config.header_read_timeout,
                        config.idle_timeout,
                        closing_rx.clone(),
                    );
                    tokio::spawn(task);
                }
            }
        }
        drop(listener);
        {
            let mut hub = shared.hub();
            hub.closed = true;
            // Every task sees its outbox end and closes its socket.
            hub.outboxes.clear();
        }
        closing.send_replace(true);
        // The connections run on their own tasks: give them a moment to
        // finish their responses and send their close frames.
        for _ in 0..200 {
            if shared.connections.load(Ordering::Acquire) == 0 && places.available_permits() == cap
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The members' leaves are on the bus's queue: done before the
        // node says goodbye.
        if let Some((stop, task)) = bus_task {
            let _ = stop.send(());
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        Ok(())
    }
}

/// Heartbeats in a row a node's liveness key must be missing before its
/// members are removed.
const DEAD_AFTER: u32 = 2;

/// Bus operations waiting for the bus task, at most.
const OPS_QUEUE: usize = 4096;

/// This node's work on the bus: runs the cluster's operations in order,
/// brings the bus's messages to the cluster, and every
/// [`bus::HEARTBEAT`] says this node is alive, refreshes its rooms' lists
/// and removes the members of nodes that died. On `stop`, finishes what is
/// queued and deletes its liveness key.
async fn bus_task(
    shared: Arc<Shared>,
    node: BusNode,
    mut ops: mpsc::Receiver<Op>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let bus = node.bus.clone();
    let Some(mut events) = bus.take_events() else {
        tracing::warn!("signaling: the bus's events were taken already");
        return;
    };
    let alive = cluster::node_key(&node.node);
    let mut beat = tokio::time::interval(bus::HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    // Say this node is alive before it admits anyone.
    if let Err(e) = bus.put(&alive, "1", bus::NODE_TTL).await {
        tracing::warn!("signaling: the bus: {e}");
    }
    let mut missing = HashMap::new();
    loop {
        tokio::select! {
            biased;
            op = ops.recv() => {
                let Some(op) = op else { break };
                // Relays queued one after another go in one round trip
                // (in order); anything else ends the batch and runs after.
                let mut batch = Vec::new();
                let mut next = Some(op);
                loop {
                    match next.take() {
                        Some(Op::Publish { client, channel, payload }) => {
                            batch.push((client, channel, payload));
                            if batch.len() >= PUBLISH_BATCH {
                                break;
                            }
                            next = ops.try_recv().ok();
                        }
                        other => {
                            next = other;
                            break;
                        }
                    }
                }
                if !batch.is_empty() {
                    publish(&shared, bus.as_ref(), batch).await;
                }
                if let Some(op) = next {
                    run_op(&shared, bus.as_ref(), op).await;
                }
            }
            e = events.recv() => match e {
                Some(bus::Event::Message { channel, payload }) => {
                    shared.with_cluster(|c| c.handle_bus(&channel, &payload));
                }
                Some(bus::Event::Reconnected) => {
                    let _ = bus.put(&alive, "1", bus::NODE_TTL).await;
                    // The bus restarted empty: the other nodes put their
                    // keys back within a heartbeat; start counting afresh.
                    missing.clear();
                    shared.with_cluster(Cluster::handle_reconnected);
                }
                None => break,
            },
            _ = beat.tick(), if !stopping => heartbeat(&shared, bus.as_ref(), &node.node, &alive, &mut missing).await,
            _ = &mut stop, if !stopping => stopping = true,
            () = tokio::time::sleep(Duration::from_millis(200)), if stopping => break,
        }
        if stopping && ops.is_empty() {
            break;
        }
    }
    while let Ok(op) = ops.try_recv() {
        run_op(&shared, bus.as_ref(), op).await;
    }
    let _ = bus.release(&alive, "1").await;
}

/// Relays published at once, at most.
const PUBLISH_BATCH: usize = 256;

/// Publishes relayed messages in one round trip; if the bus is away, each
/// sender hears `unavailable`.
async fn publish(shared: &Shared, bus: &dyn Bus, batch: Vec<(ClientId, String, String)>) {
    let messages: Vec<(String, String)> = batch
        .iter()
        .map(|(_, c, p)| (c.clone(), p.clone()))
        .collect();
    if let Err(e) = bus.publish_batch(&messages).await {
        let reason = e.to_string();
        shared.with_cluster(|c| {
            for (client, _, _) in &batch {
                c.handle_publish_failed(*client, &reason);
            }
        });
    }
}

async fn run_op(shared: &Shared, bus: &dyn Bus, op: Op) {
    match op {
        Op::Subscribe { channel } => {
            if let Err(e) = bus.subscribe(&channel).await {
                tracing::debug!("signaling: subscribe {channel}: {e}");
            }
        }
        Op::Unsubscribe { channel } => {
            if let Err(e) = bus.unsubscribe(&channel).await {
                tracing::debug!("signaling: unsubscribe {channel}: {e}");
            }
        }
        Op::Join {
            client,
            room,
            key,
            member,
            cap,
            channel,
        } => {
            let r = bus
                .join_capped(&key, &member, cap, bus::ROOM_TTL, &channel)
                .await
                .map(|before| before.is_some())
                .map_err(|e| e.to_string());
            shared.with_cluster(|c| c.handle_join_result(client, &room, r));
        }
        Op::Leave {
            key,
            member,
            channel,
        } => {
            if let Err(e) = bus.leave(&key, &member, &channel).await {
                tracing::debug!("signaling: leave {key} {member}: {e}");
            }
        }
        Op::Publish {
            client,
            channel,
            payload,
        } => {
            if let Err(e) = bus.publish(&channel, &payload).await {
                let reason = e.to_string();
                shared.with_cluster(|c| c.handle_publish_failed(client, &reason));
            }
        }
        Op::Restore { key, member } => {
            if let Err(e) = bus.restore(&key, &member, bus::ROOM_TTL).await {
                tracing::debug!("signaling: restore {key} {member}: {e}");
            }
        }
    }
}

/// Says this node is alive, keeps its rooms' lists alive, and removes the
/// members of nodes whose liveness key has been gone at [`DEAD_AFTER`]
/// heartbeats in a row (`missing` counts them): one absence may be a node
/// that has not yet put its key back after the bus restarted.
async fn heartbeat(
    shared: &Shared,
    bus: &dyn Bus,
    node: &str,
    alive: &str,
    missing: &mut HashMap<String, u32>,
) {
    if let Err(e) = bus.put(alive, "1", bus::NODE_TTL).await {
        tracing::debug!("signaling: heartbeat: {e}");
        return;
    }
    let rooms = match &shared.hub().rooms {
        Logic::Many(c) => c.rooms(),
        Logic::One(_) => return,
    };
    let mut known: HashMap<String, bool> = HashMap::new();
    known.insert(node.to_string(), true);
    let mut seen_missing = std::collections::HashSet::new();
    for (room, remote) in rooms {
        let key = cluster::room_key(&room);
        let _ = bus.touch(&key, bus::ROOM_TTL).await;
        for (member, n) in remote {
            let live = match known.get(&n) {
                Some(l) => *l,
                None => {
                    let present = !matches!(bus.get(&cluster::node_key(&n)).await, Ok(None));
                    let l = if present {
                        missing.remove(&n);
                        true
                    } else {
                        let count = missing.entry(n.clone()).or_insert(0);
                        if seen_missing.insert(n.clone()) {
                            *count += 1;
                        }
                        *count < DEAD_AFTER
                    };
                    known.insert(n.clone(), l);
                    l
                }
            };
            if !live {
                tracing::info!(%room, %member, node = %n, "signaling: node gone, member removed");
                let _ = bus
                    .leave(&key, &member, &cluster::room_channel(&room))
                    .await;
            }
        }
    }
}

/// A TCP connection that holds its place under the cap until dropped and
/// notes when a byte last moved (for the idle timeout).
struct Tracked {
    stream: TcpStream,
    start: tokio::time::Instant,
    /// Milliseconds from `start` to the last read or write.
    last: Arc<AtomicU64>,
    _place: OwnedSemaphorePermit,
}

impl Tracked {
    fn new(stream: TcpStream, place: OwnedSemaphorePermit) -> Tracked {
        Tracked {
            stream,
            start: tokio::time::Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
            _place: place,
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Release);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// One HTTP/1.1 connection until it closes, is upgraded to a WebSocket
/// (which then runs on its own task), goes idle, or the server stops.
async fn http_connection(
    io: Tracked,
    service: TowerToHyperService<Router>,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let (start, last) = (io.start, io.last.clone());
    let mut http = http1::Builder::new();
    // hyper's header timer runs from when it starts waiting for a request
    // head: it closes a connection that sends nothing, or its headers too
    // slowly (a slowloris), and one idle between keep-alive requests.
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let mut stopping = false;
    loop {
        let idle_since = start + Duration::from_millis(last.load(Ordering::Acquire));
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("signaling: HTTP connection: {e}");
                }
                return;
            }
            () = tokio::time::sleep_until(idle_since + idle_timeout) => {
                let moved = start + Duration::from_millis(last.load(Ordering::Acquire));
                if moved + idle_timeout <= tokio::time::Instant::now() {
                    tracing::debug!("signaling: HTTP connection idle for {idle_timeout:?}; closed");
                    return;
                }
            }
            _ = closing.wait_for(|c| *c), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
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
        let Some((id, rx, _)) = self.shared.register() else {
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

    /// Bytes queued for clients right now, in every outbox together (what
    /// the server holds for clients that read slower than others write).
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
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
    rx: mpsc::Receiver<Queued>,
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
        self.rx.recv().await.map(|q| q.message)
    }

    /// A message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<ServerMessage> {
        self.rx.try_recv().ok().map(|q| q.message)
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
    let Some((id, mut outbox, queued)) = shared.register() else {
        let frame = close(CLOSE_GOING_AWAY, "the server is stopping");
        let _ = tokio::time::timeout(shared.config.send_timeout, socket.send(frame)).await;
        return;
    };
    tracing::debug!(client = %id, "signaling: connected");
    let limits = &shared.config;
    let every = limits.ping_interval.max(Duration::from_millis(1));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    // After a long write, one tick, not a burst of missed ones.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut unanswered = false;
    loop {
        // Back-pressure: while this client's own outbox is at its bound
        // (say, `busy` errors for a flood it sends), read nothing more from
        // it until the outbox drains.
        let backlog =
            outbox.len() >= limits.outbox || queued.load(Ordering::Acquire) >= limits.outbox_bytes;
        tokio::select! {
            _ = ping.tick() => {
                if unanswered {
                    tracing::debug!(client = %id, "signaling: no pong in {every:?}, disconnected");
                    break;
                }
                unanswered = true;
                let frame = Message::Ping(axum::body::Bytes::from_static(b"rtclab"));
                let sent = tokio::time::timeout(limits.send_timeout, socket.send(frame)).await;
                if !matches!(sent, Ok(Ok(()))) {
                    break;
                }
            }
            incoming = socket.recv(), if !backlog => match incoming {
                Some(Ok(Message::Text(text))) => {
                    tracing::trace!(client = %id, %text, "signaling: ←");
                    shared.with_rooms(|r| r.handle_text(id, text.as_str()));
                }
                Some(Ok(Message::Binary(b))) => {
                    shared.with_rooms(|r| r.handle_binary(id, b.len()));
                }
                Some(Ok(Message::Pong(_))) => unanswered = false,
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    tracing::debug!(client = %id, "signaling: read error: {e}");
                    let frame = close(CLOSE_POLICY, &e.to_string());
                    let _ = tokio::time::timeout(shared.config.send_timeout, socket.send(frame)).await;
                    break;
                }
            },
            out = outbox.recv() => match out {
                Some(queued) => {
                    let text = queued.message.to_json();
                    tracing::trace!(client = %id, %text, "signaling: →");
                    // A client that stops reading would block this send
                    // forever once TCP's buffers fill: give up after a while.
                    let frame = Message::Text(text.into());
                    let sent = tokio::time::timeout(shared.config.send_timeout, socket.send(frame)).await;
                    // Charged until sent.
                    drop(queued);
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
                    let _ = tokio::time::timeout(shared.config.send_timeout, socket.send(frame)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::{Data, ErrorCode};

    #[test]
    fn the_tcp_cap_leaves_file_descriptors_for_the_rest() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            512                  4096                 files     \n";
        assert_eq!(open_files_soft_limit(limits), Some(512));
        assert_eq!(
            open_files_soft_limit("Max open files  unlimited  unlimited  files"),
            None
        );
        assert_eq!(open_files_soft_limit(""), None);
        let cap = default_tcp_cap();
        assert!((16..=1024).contains(&cap), "{cap}");
        if let Some(soft) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| open_files_soft_limit(&t))
        {
            assert!(cap <= soft.saturating_sub(128).max(16), "{cap} of {soft}");
        }
    }

    proptest::proptest! {
        /// Whatever is offered to an outbox and drained from it, it holds
        /// no more than its bound plus the headroom for the server's own
        /// messages (or one message, when it was empty), its count and the
        /// server's total agree, and both are zero once it is gone.
        #[test]
        fn an_outbox_stays_within_its_bound(
            ops in proptest::collection::vec((0u8..3, 0usize..20_000), 0..120)
        ) {
            let config = Config {
                outbox: 8,
                outbox_bytes: 10_000,
                ..Config::default()
            };
            let (tx, mut rx) = mpsc::channel(config.outbox + CONTROL_HEADROOM_COUNT);
            let bytes = Arc::new(AtomicUsize::new(0));
            let total = Arc::new(AtomicUsize::new(0));
            let outbox = Outbox { tx, bytes: bytes.clone() };
            let mut largest = 0;
            for (op, size) in ops {
                let (message, relayed) = match op {
                    0 => {
                        let data = Data::from_value(&serde_json::json!("x".repeat(size)));
                        (ServerMessage::Message { from: ClientId(1), data }, true)
                    }
                    1 => {
                        let reason = "r".repeat(size % 300);
                        (ServerMessage::Error { code: ErrorCode::Busy, reason }, false)
                    }
                    _ => {
                        drop(rx.try_recv());
                        continue;
                    }
                };
                let was = bytes.load(Ordering::Acquire);
                let c = cost(&message);
                match outbox.offer(message, relayed, &config, &total) {
                    Offer::Queued => largest = largest.max(c),
                    Offer::Full(q) => proptest::prop_assert!(q > 0 && q == was),
                    Offer::Gone => proptest::prop_assert!(false, "the receiver is alive"),
                }
                let held = bytes.load(Ordering::Acquire);
                proptest::prop_assert_eq!(held, total.load(Ordering::Acquire));
                let bound = config.outbox_bytes + CONTROL_HEADROOM_BYTES;
                proptest::prop_assert!(held <= bound.max(largest), "{} > {}", held, bound);
                proptest::prop_assert!(rx.len() <= config.outbox + CONTROL_HEADROOM_COUNT);
            }
            drop(outbox);
            drop(rx);
            proptest::prop_assert_eq!(total.load(Ordering::Acquire), 0);
            proptest::prop_assert_eq!(bytes.load(Ordering::Acquire), 0);
        }
    }
}
