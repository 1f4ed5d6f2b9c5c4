//! `rtclab sfu`: the [`Sfu`] on one UDP socket, its page (`/sfu/`) and
//! its WebSocket signaling (`/sfu/ws?room=NAME`), over tokio.
//!
//! One task owns the [`Sfu`] and its socket ([`Driver`]); each WebSocket
//! is a task of its own that talks to it through a bounded channel of
//! commands, and receives its page's [`ServerSignal`]s through a bounded
//! outbox (a page that does not read its WebSocket loses its place, not
//! the SFU's memory).
//!
//! The page's signaling messages, JSON text frames:
//!
//! | `type` | fields | from |
//! |---|---|---|
//! | `offer` | `sdp` | page (once, first) and SFU (when tracks come or go) |
//! | `answer` | `sdp` | SFU (to the page's offer) and page (to the SFU's) |
//! | `candidate` | `candidate` (`candidate:…`; empty = end) | both |
//! | `limit` | `kbps` (absent: no limit) | page: the most it wants to receive |
//! | `welcome` | `id` (`pN`: the stream id of this participant's media elsewhere); `capture` (with `--xray`: the URL of this participant's own pcapng) | SFU |
//! | `joined`, `left` | `id` | SFU |
//! | `error` | `message` | SFU |
//!
//! Cascading (issue 21, [`super::cascade`]): `POST /cascade/ROOM` with an
//! SDP offer (`application/sdp`, the `--token` bearer if one is set) opens
//! a link of ROOM from another node, answered `201 Created` with the
//! answer, this node's host candidate and the link's resource in
//! `Location`, as WHIP is (RFC 9725 §4.2); a `DELETE` of that resource
//! closes the link (as it ends a WHIP session). [`Handle::cascade`] (and
//! `rtclab sfu --cascade ROOM=URL`) opens one to another node, or gives
//! back the one already open for that room and node; the node `DELETE`s
//! it when the SFU closes it (its room's last participant here left,
//! [`super::cascade`]). With room placement, a node that takes a newcomer
//! of a room whose owner is full opens the link to the owner itself
//! ([`super::placement::Cascade`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use super::placement::{Decision, Placement, Seat};
use super::{ClientSignal, Config as SfuConfig, Event, ParticipantId, Role, ServerSignal, Sfu};
use crate::machine::Machine;
use crate::runtime::Driver;
use crate::whip::{self, Backend, BoxFuture, ResourceId, SdpFrag, answer_with_candidates};

/// How `rtclab sfu` runs.
#[derive(Debug)]
pub struct Config {
    /// HTTP (page and WebSocket).
    pub listen: SocketAddr,
    /// The one UDP socket every participant's media uses.
    pub udp: SocketAddr,
    /// The SFU's limits and behaviour (its host candidate is set to the
    /// bound UDP address).
    pub sfu: SfuConfig,
    /// Where a page's `POST /sfu/report` goes (browser tests).
    pub reports: Option<mpsc::Sender<String>>,
    /// WHIP and WHEP (`POST /whip/ROOM`, `POST /whep/ROOM`, RFC 9725):
    /// served when `Some`, with this bearer token (`Some(None)`: none).
    pub whip: Option<Option<String>>,
}

/// A running server: its addresses, and how to stop it.
pub struct Server {
    http: TcpListener,
    udp: UdpSocket,
    config: Config,
    /// `rtclab sfu --pcap` (see [`Server::set_capture_file`]).
    capture_file: Option<std::fs::File>,
    /// `rtclab sfu --xray` (see [`Server::set_downloads`]).
    downloads: Option<usize>,
    commands: mpsc::Sender<Command>,
    rx: mpsc::Receiver<Command>,
    placement: Option<Arc<Placement>>,
    book: Arc<LinkBook>,
}

/// Commands to a running (or soon running) [`Server`] from elsewhere:
/// what the bus's room placement calls.
#[derive(Clone)]
pub struct Handle {
    commands: mpsc::Sender<Command>,
    token: Option<String>,
    book: Arc<LinkBook>,
}

/// The cascade links of a server, by how they were opened.
#[derive(Default)]
struct LinkBook {
    /// Opened here: (room, other node's URL) → the link and its resource
    /// there (`http://HOST:PORT/cascade/ROOM/ID`).
    dialed: std::sync::Mutex<HashMap<(String, String), (ParticipantId, String)>>,
    /// Opened by another node: resource id → the link.
    accepted: std::sync::Mutex<HashMap<String, ParticipantId>>,
    /// One link opened at a time, so that two newcomers of a room open one.
    dialing: tokio::sync::Mutex<()>,
}

impl LinkBook {
    /// A link left the SFU: its resource at the other node, if it was
    /// opened here (to `DELETE`).
    fn gone(&self, id: ParticipantId) -> Option<String> {
        if let Ok(mut a) = self.accepted.lock() {
            a.retain(|_, l| *l != id);
        }
        let mut d = self.dialed.lock().ok()?;
        let key = d.iter().find(|(_, (l, _))| *l == id)?.0.clone();
        d.remove(&key).map(|(_, resource)| resource)
    }
}

enum Command {
    Join {
        room: String,
        outbox: mpsc::Sender<ServerSignal>,
        reply: oneshot::Sender<Result<ParticipantId, String>>,
    },
    Signal(ParticipantId, ClientSignal),
    Leave(ParticipantId),
    /// Another node opens a cascade link of `room` with its offer.
    CascadeAccept {
        room: String,
        offer: String,
        reply: oneshot::Sender<Result<(ParticipantId, String), String>>,
    },
    /// The SFU's counters and its links'.
    Stats(oneshot::Sender<(super::Stats, super::cascade::CascadeStats)>),
    /// Opens a cascade link of `room`: its id and offer back.
    CascadeDial {
        room: String,
        reply: oneshot::Sender<Result<(ParticipantId, String), String>>,
    },
    /// A WHIP publisher or WHEP viewer with its offer: the answer back.
    Whip {
        role: Role,
        room: String,
        offer: String,
        reply: oneshot::Sender<Result<(ParticipantId, String), whip::Error>>,
    },
}

/// WHIP and WHEP sessions as SFU participants ([`Role::Publisher`],
/// [`Role::Viewer`]).
struct WhipBackend {
    commands: mpsc::Sender<Command>,
    sessions: std::sync::Mutex<HashMap<ResourceId, ParticipantId>>,
    /// The sessions' seats in their rooms (placement across nodes).
    seats: std::sync::Mutex<HashMap<ResourceId, Seat>>,
    placement: Option<Arc<Placement>>,
}

impl WhipBackend {
    async fn create(
        &self,
        resource: ResourceId,
        role: Role,
        room: String,
        offer: String,
    ) -> Result<String, whip::Error> {
        let (reply, answer) = oneshot::channel();
        let room_of_seat = room.clone();
        self.commands
            .send(Command::Whip {
                role,
                room,
                offer,
                reply,
            })
            .await
            .map_err(|_| whip::Error::Internal("the SFU stopped".into()))?;
        let (id, answer) = answer
            .await
            .map_err(|_| whip::Error::Internal("the SFU stopped".into()))??;
        if let (Some(p), Ok(mut seats)) = (&self.placement, self.seats.lock()) {
            seats.insert(resource.clone(), p.seat(&room_of_seat));
        }
        if let Ok(mut s) = self.sessions.lock() {
            s.insert(resource, id);
        }
        Ok(answer)
    }

    fn session(&self, resource: &ResourceId) -> Result<ParticipantId, whip::Error> {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(resource).copied())
            .ok_or(whip::Error::NotFound)
    }
}

// ANCHOR: whip_backend
impl Backend for WhipBackend {
    fn publish(
        &self,
        resource: ResourceId,
        room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, whip::Error>> {
        Box::pin(self.create(resource, Role::Publisher, room, offer))
    }

    fn play(
        &self,
        resource: ResourceId,
        room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, whip::Error>> {
        Box::pin(self.create(resource, Role::Viewer, room, offer))
    }
    // ANCHOR_END: whip_backend

    fn patch(
        &self,
        resource: ResourceId,
        frag: SdpFrag,
        restart: bool,
    ) -> BoxFuture<'_, Result<Option<SdpFrag>, whip::Error>> {
        Box::pin(async move {
            // PeerConnection has no ICE restart yet: RFC 9725 §4.3.1's 422.
            if restart {
                return Err(whip::Error::Unsupported("ICE restart"));
            }
            let id = self.session(&resource)?;
            for (_, c) in frag.candidates() {
                let _ = self
                    .commands
                    .send(Command::Signal(id, ClientSignal::Candidate(c.to_string())))
                    .await;
            }
            if frag.end_of_candidates() {
                let _ = self
                    .commands
                    .send(Command::Signal(id, ClientSignal::Candidate(String::new())))
                    .await;
            }
            Ok(None)
        })
    }

    fn delete(&self, resource: ResourceId) -> BoxFuture<'_, Result<(), whip::Error>> {
        Box::pin(async move {
            let id = self
                .sessions
                .lock()
                .ok()
                .and_then(|mut s| s.remove(&resource))
                .ok_or(whip::Error::NotFound)?;
            if let Ok(mut seats) = self.seats.lock() {
                seats.remove(&resource);
            }
            let _ = self.commands.send(Command::Leave(id)).await;
            Ok(())
        })
    }
}

#[derive(Clone)]
struct Shared {
    commands: mpsc::Sender<Command>,
    reports: Option<mpsc::Sender<String>>,
    downloads: Option<std::sync::Arc<Downloads>>,
    /// The bearer token `POST /cascade/ROOM` must carry (WHIP's).
    token: Option<String>,
    placement: Option<Arc<Placement>>,
    book: Arc<LinkBook>,
}

/// The page, compiled in.
const PAGE: &str = include_str!("../../web/sfu/index.html");
const SCRIPT: &str = include_str!("../../web/sfu/sfu.js");
/// Signaling messages of one page waiting to be written, at most.
const OUTBOX: usize = 256;
/// The largest WebSocket message a page may send (an SDP offer with
/// simulcast is ~6 KB).
const MAX_MESSAGE: usize = 64 * 1024;

impl Server {
    /// Binds the HTTP listener and the UDP socket.
    pub async fn bind(mut config: Config) -> std::io::Result<Server> {
        let http = TcpListener::bind(config.listen).await?;
        let udp = UdpSocket::bind(config.udp).await?;
        let bound = udp.local_addr()?;
        config.sfu.host_candidates = vec![bound];
        let (commands, rx) = mpsc::channel(1024);
        Ok(Server {
            http,
            udp,
            config,
            capture_file: None,
            downloads: None,
            commands,
            rx,
            placement: None,
            book: Arc::default(),
        })
    }

    /// Captures every datagram of the SFU's socket into `file` as pcapng
    /// (`rtclab sfu --pcap`), with each participant's DTLS key log line in
    /// a Decryption Secrets Block once its connection is up.
    pub fn set_capture_file(&mut self, file: std::fs::File) {
        self.capture_file = Some(file);
    }

    /// Keeps the SFU's capture in memory (at most `limit` bytes: later
    /// packets are not kept) so that each page can download its own share
    /// (`rtclab sfu --xray`): the `welcome` message then carries `capture`,
    /// a URL with a random token, serving that participant's packets and
    /// DTLS key log line only ([`crate::capture::extract`]).
    pub fn set_downloads(&mut self, limit: usize) {
        self.downloads = Some(limit);
    }

    /// A handle to give commands to the server once it runs.
    pub fn handle(&self) -> Handle {
        Handle {
            commands: self.commands.clone(),
            token: self.config.whip.clone().flatten(),
            book: self.book.clone(),
        }
    }

    /// Opens a cascade link of `room` to the `rtclab sfu` at `url`
    /// (`http://HOST:PORT`): the future completes once the other node
    /// answered (it may be spawned before [`Server::run_until`]).
    pub fn cascade(
        &self,
        room: &str,
        url: &str,
    ) -> impl std::future::Future<Output = Result<ParticipantId, String>> + Send + 'static {
        let (h, room, url) = (self.handle(), room.to_string(), url.to_string());
        async move { h.cascade(&room, &url).await }
    }

    /// Shares rooms with other nodes: each room on one node, participants
    /// sent to it (see [`super::placement`]); a room whose owner is full
    /// goes on here, cascaded with the owner (this server's [`Handle`] is
    /// the placement's [`super::placement::Cascade`]).
    pub fn with_placement(mut self, placement: Arc<Placement>) -> Server {
        placement.set_cascade(Arc::new(self.handle()));
        self.placement = Some(placement);
        self
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound")
    }

    /// The UDP address.
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp.local_addr().expect("bound")
    }

    /// Serves until `stop` completes.
    pub async fn run_until(
        self,
        stop: impl std::future::Future<Output = ()>,
    ) -> std::io::Result<()> {
        let Server {
            http,
            udp,
            config,
            capture_file,
            downloads,
            commands,
            rx,
            placement,
            book,
        } = self;
        let downloads = downloads.map(|limit| std::sync::Arc::new(Downloads::new(limit)));
        let capture = capture_sink(capture_file, downloads.as_deref());
        let token = config.whip.clone().flatten();
        let whip = config.whip.map(|token| {
            let backend = WhipBackend {
                commands: commands.clone(),
                sessions: std::sync::Mutex::new(HashMap::new()),
                seats: std::sync::Mutex::new(HashMap::new()),
                placement: placement.clone(),
            };
            crate::whip::server::Mount::new(
                crate::whip::Config::with_token(token),
                std::sync::Arc::new(backend),
            )
        });
        let shared = Shared {
            commands,
            reports: config.reports,
            downloads: downloads.clone(),
            token,
            placement: placement.clone(),
            book: book.clone(),
        };
        let (placed_stop, placed_stopped) = oneshot::channel::<()>();
        let placed = placement.clone().map(|p| {
            tokio::spawn(p.run(async move {
                let _ = placed_stopped.await;
            }))
        });
        let sfu = Sfu::new(config.sfu, rand::SeedableRng::from_os_rng());
        let mut driver = Driver::from_sockets(sfu, vec![udp])?;
        if let Some(c) = capture {
            driver.set_capture(c, |_, _| {});
        }
        let media = tokio::spawn(media_task(driver, rx, downloads, book));
        let app = Router::new()
            .route("/sfu/", get(page))
            .route(
                "/sfu/sfu.js",
                get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], SCRIPT) }),
            )
            .route("/sfu/ws", get(websocket))
            .route("/sfu/report", post(report))
            .route("/sfu/capture/{file}", get(download))
            .route("/cascade/{room}", post(cascade_accept))
            .route(
                "/cascade/{room}/{link}",
                axum::routing::delete(cascade_delete),
            )
            .route("/", get(|| async { axum::response::Redirect::to("/sfu/") }))
            .with_state(shared.clone());
        let app = match whip {
            Some(m) => app.merge(m.router().layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                whip_placement,
            ))),
            None => app,
        };
        let service = TowerToHyperService::new(app);
        // A flood of TCP connections meets a cap, not only the OS's limits:
        // one past it is closed at once. (A WebSocket leaves the count when
        // upgraded; the SFU's own participant limit bounds those.)
        let places = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = http.accept() => {
                    let Ok((stream, _)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let Ok(place) = places.clone().try_acquire_owned() else {
                        tracing::debug!("sfu: {MAX_HTTP_CONNECTIONS} HTTP connections already; closed a new one");
                        drop(stream);
                        continue;
                    };
                    let service = service.clone();
                    tokio::spawn(async move {
                        let _place = place;
                        let mut h = http1::Builder::new();
                        h.timer(TokioTimer::new())
                            .header_read_timeout(Duration::from_secs(10));
                        let conn = h.serve_connection(TokioIo::new(stream), service).with_upgrades();
                        if let Err(e) = conn.await {
                            tracing::debug!("sfu: HTTP connection: {e}");
                        }
                    });
                }
            }
        }
        media.abort();
        let _ = placed_stop.send(());
        if let Some(t) = placed {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        Ok(())
    }
}

/// The most HTTP connections served at once (WebSockets once upgraded
/// are not counted: the SFU's participant limit bounds them).
const MAX_HTTP_CONNECTIONS: usize = 1024;

/// The task that owns the SFU: datagrams, timers and commands.
async fn media_task(
    mut driver: Driver<Sfu>,
    mut rx: mpsc::Receiver<Command>,
    downloads: Option<std::sync::Arc<Downloads>>,
    book: Arc<LinkBook>,
) {
    let mut outboxes: HashMap<ParticipantId, mpsc::Sender<ServerSignal>> = HashMap::new();
    // The pages' downloads read what the capture flushed: once a second.
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = flush.tick(), if downloads.is_some() => {
                if let Some(c) = driver.capture_mut() {
                    let _ = c.flush();
                }
            }
            e = driver.next_event() => match e {
                Ok(e) => deliver(&mut driver, &mut outboxes, downloads.as_deref(), &book, e),
                Err(e) => {
                    tracing::warn!("sfu: UDP: {e}");
                    return;
                }
            },
            c = rx.recv() => {
                let Some(c) = c else { return };
                let now = Instant::now();
                let sfu = driver.machine_mut();
                match c {
                    Command::Join { room, outbox, reply } => {
                        let r = sfu.join(now, &room).map_err(|e| e.to_string());
                        if let Ok(id) = r {
                            outboxes.insert(id, outbox);
                        }
                        let _ = reply.send(r);
                    }
                    Command::Signal(id, s) => {
                        if let Err(e) = sfu.handle_signal(now, id, s)
                            && let Some(o) = outboxes.get(&id)
                        {
                            let _ = o.try_send(ServerSignal::Error(e.to_string()));
                        }
                    }
                    Command::Leave(id) => {
                        sfu.leave(now, id);
                        outboxes.remove(&id);
                    }
                    Command::CascadeAccept { room, offer, reply } => {
                        let host = sfu.host_candidate();
                        let r = sfu.accept_cascade(now, &room, offer).map(|(id, answer)| {
                            let lines: Vec<String> = host.into_iter().collect();
                            (id, answer_with_candidates(&answer, &lines, true))
                        });
                        let _ = reply.send(r.map_err(|e| e.to_string()));
                    }
                    Command::Stats(reply) => {
                        let _ = reply.send((sfu.stats(), sfu.cascade_stats()));
                    }
                    Command::CascadeDial { room, reply } => {
                        let _ = reply.send(sfu.dial_cascade(now, &room).map_err(|e| e.to_string()));
                    }
                    Command::Whip { role, room, offer, reply } => {
                        let host = sfu.host_candidate();
                        let r = whip_session(sfu, now, role, &room, offer);
                        let _ = reply.send(r.map(|(id, answer)| {
                            // RFC 9725 §4.3.2: the answer carries the
                            // server's candidates (clients need not trickle).
                            let lines: Vec<String> = host.into_iter().collect();
                            (id, answer_with_candidates(&answer, &lines, true))
                        }));
                    }
                }
                // What the command produced.
                while let Some(e) = driver.machine_mut().poll_event() {
                    deliver(&mut driver, &mut outboxes, downloads.as_deref(), &book, e);
                }
            }
        }
    }
}

/// A WHIP/WHEP participant joins with its offer; its answer is taken out
/// of the SFU's signals here (the HTTP response carries it).
fn whip_session(
    sfu: &mut Sfu,
    now: Instant,
    role: Role,
    room: &str,
    offer: String,
) -> Result<(ParticipantId, String), whip::Error> {
    let id = sfu.join_as(now, room, role).map_err(|e| match e {
        super::Error::RoomFull | super::Error::Full => whip::Error::Full { retry_after: 5 },
        e => whip::Error::Internal(e.to_string()),
    })?;
    if let Err(e) = sfu.handle_signal(now, id, ClientSignal::Offer(offer)) {
        sfu.leave(now, id);
        return Err(whip::Error::BadSdp(e.to_string()));
    }
    sfu.take_answer(id)
        .map(|a| (id, a))
        .ok_or_else(|| whip::Error::Internal("no answer".into()))
}

fn deliver(
    driver: &mut Driver<Sfu>,
    outboxes: &mut HashMap<ParticipantId, mpsc::Sender<ServerSignal>>,
    downloads: Option<&Downloads>,
    book: &LinkBook,
    e: Event,
) {
    match e {
        Event::Signal {
            participant,
            signal,
        } => {
            let full = outboxes
                .get(&participant)
                .is_some_and(|o| o.try_send(signal).is_err());
            if full {
                // A page that does not read its signaling is dropped.
                outboxes.remove(&participant);
                driver.machine_mut().leave(Instant::now(), participant);
            }
        }
        Event::Connected(id) => {
            tracing::info!(participant = %id, "sfu: connected");
            record_key_log(driver, id, downloads);
        }
        Event::Left(id) => {
            tracing::info!(participant = %id, "sfu: left");
            outboxes.remove(&id);
            // A link opened here: its resource at the other node goes too
            // (the other node may have learned it from close_notify first:
            // then 404, no matter).
            if let Some(resource) = book.gone(id) {
                tracing::info!(link = %id, %resource, "sfu: cascade link closed");
                tokio::spawn(async move {
                    if let Err(e) = http_delete(&resource).await {
                        tracing::debug!(%resource, "sfu: cascade DELETE: {e}");
                    }
                });
            }
        }
        Event::Published {
            participant, kind, ..
        } => tracing::info!(%participant, ?kind, "sfu: publishes"),
        Event::ActiveSpeaker { room, participant } => {
            tracing::debug!(%room, %participant, "sfu: active speaker")
        }
    }
}

/// A participant's DTLS key log line, once connected: into the capture
/// (`--pcap`) and appended to `$SSLKEYLOGFILE`, as browsers do.
fn record_key_log(driver: &mut Driver<Sfu>, id: ParticipantId, downloads: Option<&Downloads>) {
    let key_log_file = std::env::var_os("SSLKEYLOGFILE");
    if key_log_file.is_none() && driver.capture_mut().is_none() {
        return;
    }
    let pc = driver.machine().peer(id);
    let line = pc.and_then(crate::runtime::live::key_log_line);
    if let Some(d) = downloads {
        let remote = pc
            .and_then(|pc| pc.transport())
            .and_then(|t| t.selected_pair())
            .and_then(|(_, r)| r.socket_addr());
        d.connected(id, remote, line.clone());
    }
    let Some(line) = line else {
        return;
    };
    if let Some(c) = driver.capture_mut() {
        c.key_log_line(&line);
    }
    if let Some(path) = key_log_file {
        use std::io::Write as _;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{}", line.trim_end()));
        if let Err(e) = written {
            tracing::warn!(path = %std::path::Path::new(&path).display(), error = %e, "SSLKEYLOGFILE not written");
        }
    }
}

/// The SFU's capture in memory and who may download which share of it
/// (see [`Server::set_downloads`]).
struct Downloads {
    buffer: crate::capture::SharedBuffer,
    /// Token → participant.
    tokens: std::sync::Mutex<HashMap<String, ParticipantId>>,
    /// A connected participant's remote address and key log line.
    connected: std::sync::Mutex<HashMap<ParticipantId, Share>>,
}

/// A participant's remote addresses and DTLS key log line.
type Share = (Vec<SocketAddr>, Option<String>);

impl Downloads {
    fn new(limit: usize) -> Downloads {
        Downloads {
            buffer: crate::capture::SharedBuffer::new(limit),
            tokens: Default::default(),
            connected: Default::default(),
        }
    }

    /// A fresh token for `id`'s page: the URL of its download.
    fn register(&self, id: ParticipantId) -> String {
        let token = format!("{:032x}", rand::random::<u128>());
        if let Ok(mut t) = self.tokens.lock() {
            t.insert(token.clone(), id);
        }
        format!("/sfu/capture/{token}.pcapng")
    }

    fn connected(&self, id: ParticipantId, remote: Option<SocketAddr>, key_log: Option<String>) {
        if let Ok(mut c) = self.connected.lock() {
            c.insert(id, (remote.into_iter().collect(), key_log));
        }
    }

    fn forget(&self, id: ParticipantId) {
        if let Ok(mut t) = self.tokens.lock() {
            t.retain(|_, p| *p != id);
        }
        if let Ok(mut c) = self.connected.lock() {
            c.remove(&id);
        }
    }

    /// The pcapng of the participant whose token is `token`.
    fn share(&self, token: &str) -> Result<Vec<u8>, (StatusCode, &'static str)> {
        let id = self
            .tokens
            .lock()
            .ok()
            .and_then(|t| t.get(token).copied())
            .ok_or((StatusCode::NOT_FOUND, "no such capture\n"))?;
        let (addresses, key_log) = self
            .connected
            .lock()
            .ok()
            .and_then(|c| c.get(&id).cloned())
            .ok_or((StatusCode::NOT_FOUND, "not connected yet\n"))?;
        let (all, _) = self.buffer.snapshot();
        let key_log: Vec<String> = key_log.into_iter().collect();
        crate::capture::extract(&all, &addresses, &key_log)
            .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "capture unreadable\n"))
    }
}

/// The driver's capture: into the `--pcap` file, into memory for the
/// pages' downloads, or both.
fn capture_sink(
    file: Option<std::fs::File>,
    downloads: Option<&Downloads>,
) -> Option<crate::capture::Capture> {
    use crate::capture::{Capture, Tee};
    Some(match (file, downloads) {
        (Some(f), Some(d)) => Capture::new(Tee(d.buffer.clone(), f)),
        (Some(f), None) => Capture::new(f),
        (None, Some(d)) => Capture::new(d.buffer.clone()),
        (None, None) => return None,
    })
}

/// `GET /sfu/capture/TOKEN.pcapng`: the page's own share of the capture.
async fn download(
    State(shared): State<Shared>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Response {
    let Some(d) = &shared.downloads else {
        return (
            StatusCode::NOT_FOUND,
            "captures are off (rtclab sfu --xray)\n",
        )
            .into_response();
    };
    let token = file.strip_suffix(".pcapng").unwrap_or(&file);
    match d.share(token) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/x-pcapng"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"rtclab-sfu.pcapng\"",
                ),
                (header::CACHE_CONTROL, "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /cascade/ROOM`: another node opens a link of ROOM.
async fn cascade_accept(
    State(shared): State<Shared>,
    Path(room): Path<String>,
    headers: axum::http::HeaderMap,
    offer: String,
) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    if !room_name(&room) {
        return (
            StatusCode::BAD_REQUEST,
            "a room name is 1 to 64 of [A-Za-z0-9._-]\n",
        )
            .into_response();
    }
    let is_sdp = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/sdp"));
    if !is_sdp {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an SDP offer: application/sdp\n",
        )
            .into_response();
    }
    let (reply, answer) = oneshot::channel();
    let room_of_link = room.clone();
    let sent = shared
        .commands
        .send(Command::CascadeAccept { room, offer, reply })
        .await;
    match (sent, answer.await) {
        (Ok(()), Ok(Ok((id, answer)))) => {
            // A random resource id (RFC 9725 §4.2: the Location of the
            // session), not the guessable participant id.
            let resource = format!("{:032x}", rand::random::<u128>());
            if let Ok(mut a) = shared.book.accepted.lock() {
                a.insert(resource.clone(), id);
            }
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/sdp".to_string()),
                    (
                        header::LOCATION,
                        format!("/cascade/{room_of_link}/{resource}"),
                    ),
                ],
                answer,
            )
                .into_response()
        }
        (Ok(()), Ok(Err(e))) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "the SFU stopped\n").into_response(),
    }
}

/// `DELETE /cascade/ROOM/ID`: the node that opened the link closes it.
async fn cascade_delete(
    State(shared): State<Shared>,
    Path((_room, link)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Some(refused) = unauthorized(&shared, &headers) {
        return refused;
    }
    let id = shared
        .book
        .accepted
        .lock()
        .ok()
        .and_then(|mut a| a.remove(&link));
    match id {
        Some(id) => {
            let _ = shared.commands.send(Command::Leave(id)).await;
            StatusCode::OK.into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such link\n").into_response(),
    }
}

/// The `--token` check of the cascade endpoints: `Some(401)` when the
/// request does not carry it.
fn unauthorized(shared: &Shared, headers: &axum::http::HeaderMap) -> Option<Response> {
    let t = shared.token.as_ref()?;
    // RFC 6750 §2.1: "Bearer", one space, the token.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|s| s.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    if given.is_some_and(|g| same_secret(g.as_bytes(), t.as_bytes())) {
        return None;
    }
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"rtclab\"")],
            "a link needs the node's bearer token\n",
        )
            .into_response(),
    )
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A room name: 1 to 64 of `[A-Za-z0-9._-]` (no percent-decoding needed).
fn room_name(room: &str) -> bool {
    !room.is_empty()
        && room.len() <= 64
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Handle {
    /// The SFU's counters and its cascade links' (`None`: it stopped).
    pub async fn stats(&self) -> Option<(super::Stats, super::cascade::CascadeStats)> {
        let (reply, stats) = oneshot::channel();
        self.commands.send(Command::Stats(reply)).await.ok()?;
        stats.await.ok()
    }

    /// Opens a cascade link of `room` to the `rtclab sfu` at `url`
    /// (`http://HOST:PORT`, this node's bearer token sent along): the
    /// link's participant id once the other node answered.
    pub async fn cascade(&self, room: &str, url: &str) -> Result<ParticipantId, String> {
        if !room_name(room) {
            return Err(format!("{room:?} is no room name"));
        }
        let url = url.trim_end_matches('/');
        let key = (room.to_string(), url.to_string());
        let _one_at_a_time = self.book.dialing.lock().await;
        if let Some((id, _)) = self
            .book
            .dialed
            .lock()
            .ok()
            .and_then(|d| d.get(&key).cloned())
        {
            return Ok(id);
        }
        let (reply, offer) = oneshot::channel();
        self.commands
            .send(Command::CascadeDial {
                room: room.to_string(),
                reply,
            })
            .await
            .map_err(|_| "the SFU stopped".to_string())?;
        let (id, offer) = offer.await.map_err(|_| "the SFU stopped".to_string())??;
        let path = format!("/cascade/{room}");
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            post_sdp(url, &path, self.token.as_deref(), &offer),
        )
        .await
        .unwrap_or_else(|_| Err(format!("POST {url}{path}: no answer in 10 s")));
        let (answer, location) = match answer {
            Ok(a) => a,
            Err(e) => {
                let _ = self.commands.send(Command::Leave(id)).await;
                return Err(e);
            }
        };
        // Known before the answer is applied: a link that fails at once
        // still finds its resource to DELETE.
        let resource = match location {
            Some(l) if l.starts_with('/') => format!("{url}{l}"),
            Some(l) => l,
            None => String::new(),
        };
        if let Ok(mut d) = self.book.dialed.lock() {
            d.insert(key, (id, resource));
        }
        self.commands
            .send(Command::Signal(id, ClientSignal::Answer(answer)))
            .await
            .map_err(|_| "the SFU stopped".to_string())?;
        Ok(id)
    }

    /// The cascade links this server opened and has open: `(room, the
    /// other node's URL, the link's resource there)`, sorted.
    pub fn cascades(&self) -> Vec<(String, String, String)> {
        let mut v: Vec<(String, String, String)> = self
            .book
            .dialed
            .lock()
            .map(|d| {
                d.iter()
                    .map(|((r, u), (_, res))| (r.clone(), u.clone(), res.clone()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// How many links other nodes opened here are open.
    pub fn accepted_cascades(&self) -> usize {
        self.book.accepted.lock().map(|a| a.len()).unwrap_or(0)
    }
}

impl super::placement::Cascade for Handle {
    fn cascade(
        &self,
        room: &str,
        owner_url: &str,
    ) -> crate::bus::BoxFuture<'_, Result<(), String>> {
        let (room, url) = (room.to_string(), owner_url.to_string());
        Box::pin(async move { Handle::cascade(self, &room, &url).await.map(|_| ()) })
    }

    fn linked(&self, room: &str) -> Vec<String> {
        self.cascades()
            .into_iter()
            .filter(|(r, _, _)| r == room)
            .map(|(_, url, _)| url)
            .collect()
    }

    fn unlink(&self, room: &str, url: &str) {
        let key = (room.to_string(), url.trim_end_matches('/').to_string());
        let id = self
            .book
            .dialed
            .lock()
            .ok()
            .and_then(|d| d.get(&key).map(|(id, _)| *id));
        if let Some(id) = id {
            // The SFU closes it; its Left removes it from the book and
            // DELETEs its resource (a dead node's DELETE fails, no matter).
            let _ = self.commands.try_send(Command::Leave(id));
        }
    }
}

/// The largest answer read from another node.
const MAX_ANSWER: usize = 1 << 20;

/// `POST url+path` with an SDP offer (HTTP/1.1, one request per
/// connection): the `201 Created` answer's body and its `Location`.
async fn post_sdp(
    url: &str,
    path: &str,
    token: Option<&str>,
    offer: &str,
) -> Result<(String, Option<String>), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let err = |e: std::io::Error| format!("POST {url}{path}: {e}");
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (host, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let mut s = tokio::net::TcpStream::connect(host).await.map_err(err)?;
    let mut req = format!(
        "POST {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n",
        offer.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(offer);
    s.write_all(req.as_bytes()).await.map_err(err)?;
    let mut raw = Vec::new();
    (&mut s)
        .take(MAX_ANSWER as u64)
        .read_to_end(&mut raw)
        .await
        .map_err(err)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("POST {url}{path}: a response without a header end"))?;
    let status = head.split(' ').nth(1).unwrap_or("");
    if status != "201" {
        return Err(format!(
            "POST {url}{path}: {} {}",
            head.lines().next().unwrap_or(""),
            body.trim()
        ));
    }
    // A body framed by Content-Length (axum's) or by the connection's end.
    let header_value = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let len = header_value("content-length").and_then(|v| v.parse::<usize>().ok());
    let body = match len {
        Some(n) => body.get(..n).unwrap_or(body).to_string(),
        None => body.to_string(),
    };
    Ok((body, header_value("location")))
}

/// `DELETE` of a link's resource (`http://HOST:PORT/cascade/ROOM/ID`) at
/// the node that accepted it; its status line.
async fn http_delete(resource: &str) -> Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let err = |e: std::io::Error| format!("DELETE {resource}: {e}");
    let rest = resource
        .strip_prefix("http://")
        .ok_or_else(|| format!("{resource}: only http:// URLs"))?;
    let (host, path) = rest
        .find('/')
        .map(|i| (&rest[..i], &rest[i..]))
        .ok_or_else(|| format!("{resource}: no path"))?;
    let connect = tokio::net::TcpStream::connect(host);
    let mut s = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| format!("DELETE {resource}: no connection in 5 s"))?
        .map_err(err)?;
    let req = format!(
        "DELETE {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.map_err(err)?;
    let mut raw = Vec::new();
    let mut taken = (&mut s).take(4096);
    let read = taken.read_to_end(&mut raw);
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    let text = String::from_utf8_lossy(&raw);
    Ok(text.lines().next().unwrap_or("").to_string())
}

async fn report(State(shared): State<Shared>, body: String) -> StatusCode {
    match &shared.reports {
        Some(r) if body.len() <= MAX_MESSAGE => {
            let _ = r.try_send(body);
            StatusCode::NO_CONTENT
        }
        _ => StatusCode::NOT_FOUND,
    }
}

/// The page; with placement, `307` to the room's owner when it is another
/// node.
async fn page(State(shared): State<Shared>, RawQuery(q): RawQuery) -> Response {
    if let (Some(p), Some(room)) = (&shared.placement, room_param(q.as_deref())) {
        match p.place(&room).await {
            Decision::Here => {}
            Decision::Redirect(url) => {
                let to = format!("{url}/sfu/?{}", q.as_deref().unwrap_or(""));
                return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
            }
            Decision::Retry(after) => return retry(after),
        }
    }
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

fn retry(after: Duration) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, after.as_secs().max(1).to_string())],
        "the room's node is moving; retry\n",
    )
        .into_response()
}

/// `room=NAME` of a query, if present and valid.
fn room_param(q: Option<&str>) -> Option<String> {
    let room = q?.split('&').find_map(|kv| kv.strip_prefix("room="))?;
    crate::signaling::validate_room_name(room).ok()?;
    Some(room.to_string())
}

/// WHIP/WHEP `POST /whip/ROOM` and `/whep/ROOM` with placement: `307` to
/// the room's owner when it is another node (RFC 9725 §4.5 lets a WHIP
/// endpoint redirect with 307), `503` while the owner's claim runs out.
async fn whip_placement(
    State(shared): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let room = request
        .uri()
        .path()
        .strip_prefix("/whip/")
        .or_else(|| request.uri().path().strip_prefix("/whep/"))
        .filter(|r| !r.contains('/'))
        .map(str::to_string);
    if let (Some(p), Some(room), true) = (
        &shared.placement,
        room,
        request.method() == axum::http::Method::POST,
    ) {
        match p.place(&room).await {
            Decision::Here => {}
            Decision::Redirect(url) => {
                let to = format!("{url}{}", request.uri());
                return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, to)]).into_response();
            }
            Decision::Retry(after) => return retry(after),
        }
    }
    next.run(request).await
}

async fn websocket(
    State(shared): State<Shared>,
    RawQuery(q): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    // `room=NAME`; the names allowed need no percent-decoding.
    let room = q
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("room="))
        .unwrap_or("lobby")
        .to_string();
    if room.is_empty()
        || room.len() > 64
        || !room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return (
            StatusCode::BAD_REQUEST,
            "a room name is 1 to 64 of [A-Za-z0-9._-]\n",
        )
            .into_response();
    }
    let mut seat = None;
    if let Some(p) = &shared.placement {
        match p.place(&room).await {
            Decision::Here => seat = Some(p.seat(&room)),
            Decision::Redirect(url) => {
                // A browser does not follow a redirect of a WebSocket
                // handshake: the page hears where to go, and goes.
                let to = format!("{url}/sfu/?{}", q.as_deref().unwrap_or(""));
                return upgrade.on_upgrade(move |mut socket| async move {
                    let m = json!({"type": "redirect", "url": to}).to_string();
                    let _ = socket.send(WsMessage::Text(m.into())).await;
                    let _ = socket.send(WsMessage::Close(None)).await;
                });
            }
            Decision::Retry(after) => return retry(after),
        }
    }
    upgrade
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            connection(socket, shared, room).await;
            drop(seat);
        })
}

/// One page: join, relay signaling both ways, leave when it closes.
async fn connection(mut socket: WebSocket, shared: Shared, room: String) {
    let (outbox, mut inbox) = mpsc::channel(OUTBOX);
    let (reply, joined) = oneshot::channel();
    if shared
        .commands
        .send(Command::Join {
            room,
            outbox,
            reply,
        })
        .await
        .is_err()
    {
        return;
    }
    let id = match joined.await {
        Ok(Ok(id)) => id,
        Ok(Err(e)) => {
            let _ = socket
                .send(WsMessage::Text(
                    json!({"type": "error", "message": e}).to_string().into(),
                ))
                .await;
            return;
        }
        Err(_) => return,
    };
    let mut welcome = json!({"type": "welcome", "id": id.to_string()});
    if let Some(d) = &shared.downloads {
        welcome["capture"] = json!(d.register(id));
    }
    let welcome = welcome.to_string();
    if socket.send(WsMessage::Text(welcome.into())).await.is_ok() {
        let _ = relay(&mut socket, &shared, id, &mut inbox).await;
    }
    let _ = shared.commands.send(Command::Leave(id)).await;
    if let Some(d) = &shared.downloads {
        d.forget(id);
    }
}

async fn relay(
    socket: &mut WebSocket,
    shared: &Shared,
    id: ParticipantId,
    inbox: &mut mpsc::Receiver<ServerSignal>,
) -> ControlFlow<()> {
    loop {
        tokio::select! {
            m = socket.recv() => {
                let text = match m {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return ControlFlow::Break(()),
                    Some(Ok(_)) => continue,
                };
                match parse(&text) {
                    Ok(s) => {
                        if shared.commands.send(Command::Signal(id, s)).await.is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                    Err(e) => {
                        let m = json!({"type": "error", "message": e}).to_string();
                        if socket.send(WsMessage::Text(m.into())).await.is_err() {
                            return ControlFlow::Break(());
                        }
                    }
                }
            }
            s = inbox.recv() => {
                let Some(s) = s else { return ControlFlow::Break(()) };
                let m = match s {
                    ServerSignal::Answer(sdp) => json!({"type": "answer", "sdp": sdp}),
                    ServerSignal::Offer(sdp) => json!({"type": "offer", "sdp": sdp}),
                    ServerSignal::Candidate(c) => json!({"type": "candidate", "candidate": c}),
                    ServerSignal::Joined(p) => json!({"type": "joined", "id": p.to_string()}),
                    ServerSignal::Left(p) => json!({"type": "left", "id": p.to_string()}),
                    ServerSignal::Error(e) => json!({"type": "error", "message": e}),
                };
                if socket.send(WsMessage::Text(m.to_string().into())).await.is_err() {
                    return ControlFlow::Break(());
                }
            }
        }
    }
}

/// A page's message.
fn parse(text: &str) -> Result<ClientSignal, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("missing \"{k}\""))
    };
    match v.get("type").and_then(Value::as_str) {
        Some("offer") => Ok(ClientSignal::Offer(field("sdp")?)),
        Some("answer") => Ok(ClientSignal::Answer(field("sdp")?)),
        Some("candidate") => Ok(ClientSignal::Candidate(
            v.get("candidate")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        )),
        Some("limit") => Ok(ClientSignal::MaxReceiveBitrate(
            v.get("kbps")
                .and_then(Value::as_u64)
                .map(|k| k.saturating_mul(1000)),
        )),
        Some(t) => Err(format!("unknown type {t:?}")),
        None => Err("missing \"type\"".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_messages_parse_or_say_why_not() {
        assert_eq!(
            parse(r#"{"type":"offer","sdp":"v=0"}"#),
            Ok(ClientSignal::Offer("v=0".into()))
        );
        assert_eq!(
            parse(r#"{"type":"candidate","candidate":""}"#),
            Ok(ClientSignal::Candidate(String::new()))
        );
        assert!(parse("{").unwrap_err().contains("not JSON"));
        assert!(parse(r#"{"type":"answer"}"#).unwrap_err().contains("sdp"));
        assert!(parse(r#"{"type":"bye"}"#).unwrap_err().contains("unknown"));
    }

    #[allow(dead_code)]
    fn _is_send(s: Server) -> impl Send {
        s.run_until(async {})
    }

    #[allow(dead_code)]
    fn _machine_bound(s: &Sfu) -> Option<Instant> {
        s.poll_timeout()
    }
}
