//! `rtclab demo`: a browser talks to a WebRTC peer written from scratch.
//!
//! The demo is one process: the signaling server of [`crate::signaling`]
//! (HTTP + WebSocket), the demo's web page (`web/demo/`, compiled in), and
//! one Rust peer ([`crate::runtime::LivePeer`]) per browser visitor, each on
//! its own UDP port.
//!
//! ```text
//!   browser (web/demo/)                       rtclab demo (one process)
//!   ──────────────────                        ───────────────────────────────────────
//!   GET /demo/ ─────────────────────────────► pages (signaling::Config.pages)
//!   WebSocket /ws: create or join "rust-…" ─► signaling rooms
//!   POST /report {"invite":"rust-…"} ───────► Demo: a Session joins the room as a
//!                                             signaling Member (in-process)
//!   ◄──── join, ready ─────────────────────── (room of two: page + Rust peer)
//!   offer (camera m-line + data channel) ───► Session: LivePeer::answer
//!   ◄──── answer, candidates ──────────────── trickle both ways
//!   ICE ◄─► DTLS (Rust is the client) ◄─► SRTP + SCTP: one UDP 5-tuple
//!   camera VP8 ──── RTP ────────────────────► Frame events ─┐ reflected on the
//!   <video> "reflected" ◄── RTP ───────────── send_frame ◄──┘ Rust peer's track
//!   chat channel ───────────────────────────► echo and a reply
//!   photo channel: header, chunks ──────────► SHA-256 checked, ack
//!   ◄──── {"type":"stats"} each second ────── what the Rust side sees, per layer
//! ```
//!
//! A visitor's page joins a fresh room and asks for a Rust peer with a
//! `POST /report` whose body is `{"invite":"ROOM"}` (any other body goes
//! on to [`Config::reports`], where a browser test reads its page's
//! results). The page is the offerer, as the codelab's room creator is;
//! the Rust peer answers, adds a video track when the offer has a camera,
//! and sends each VP8 frame it receives back out on that track (a visitor
//! that offers its camera `sendonly` gets a `recvonly` answer and no track).
//! A client that only answers sends `offer-request` instead, and the Rust
//! peer offers (the page does with `?offer=rust`). A keyframe
//! request from the browser (PLI) becomes a keyframe request to the browser
//! for the camera, since the Rust peer has no encoder of its own.
//!
//! The page's second mode is codelab step 8: two tabs in one room call each
//! other directly; the server only relays their signaling.
//!
//! The signaling data the page and the Rust peer exchange (inside the
//! signaling server's `message`):
//!
//! | `type` | fields | from |
//! |---|---|---|
//! | `offer`, `answer` | `sdp` | page / Rust (or Rust / client after `offer-request`) |
//! | `offer-request` | `video` (bool, default true) | a client that only answers: the Rust peer offers a VP8 track and the `chat` and `photo` channels |
//! | `candidate` | `candidate` (`candidate:…`, empty = end), `sdpMid`, `sdpMLineIndex` | both |
//! | `stats` | the live panel (see `session.rs`) | Rust, each second |
//! | `xray` | `capture` (the download's URL), `lines` (the ladder, see `xray.rs`) | Rust, every 250 ms while packets flow |
//! | `error` | `message` | Rust, when its peer fails |
//!
//! [`Demo::run_until`] stops on a signal (Ctrl-C): every session closes its
//! peer (SCTP ABORT, DTLS close_notify) and says `bye`, then the server
//! closes every WebSocket.

mod session;
mod xray;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::signaling::{self, Page, Server};

/// The demo's pages, compiled in from `web/demo/`.
pub const PAGES: &[Page] = &[
    Page {
        path: "/demo/",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/demo/index.html"),
    },
    Page {
        path: "/demo/demo.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../web/demo/demo.js"),
    },
    Page {
        path: "/demo/demo.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../web/demo/demo.css"),
    },
    Page {
        path: "/demo/xray.js",
        content_type: "text/javascript; charset=utf-8",
        body: crate::capture::live::PANEL_SCRIPT.as_bytes(),
    },
    Page {
        path: "/demo/xray.css",
        content_type: "text/css; charset=utf-8",
        body: crate::capture::live::PANEL_STYLE.as_bytes(),
    },
    Page {
        path: "/demo/bench.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../web/demo/bench.html"),
    },
];

/// How the demo runs.
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// The HTTP address (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The IP the Rust peers bind their UDP sockets on (default: the
    /// listening IP; for `0.0.0.0`, every interface's address is a host
    /// candidate).
    pub udp_ip: Option<IpAddr>,
    /// Most Rust peers at once; more invitations are refused.
    pub max_sessions: usize,
    /// Where page reports that are not invitations go (a browser test).
    pub reports: Option<mpsc::Sender<String>>,
    /// More pages to serve (a test's page).
    pub pages: Vec<Page>,
    /// Capture each Rust peer's datagrams as pcapng with its DTLS key log
    /// (`rtclab demo --pcap FILE`): session N writes `FILE` with `-N`
    /// before its extension (`call.pcapng` → `call-1.pcapng`).
    pub pcap: Option<std::path::PathBuf>,
    /// The page's live x-ray panel: each Rust peer captures its call in
    /// memory (at most this many bytes; default 32 MiB), streams the
    /// decoded ladder to its page, and serves the capture so far at
    /// `/demo/capture/TOKEN.pcapng` (`TOKEN`: random, told only to the
    /// page). `0`: no panel.
    pub xray_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            udp_ip: None,
            max_sessions: 64,
            reports: None,
            pages: Vec::new(),
            pcap: None,
            xray_bytes: 32 << 20,
        }
    }
}

impl Config {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Config {
        Config {
            listen,
            ..Config::default()
        }
    }
}

/// The demo server, bound, not yet running.
pub struct Demo {
    server: Server,
    captures: xray::Captures,
    invites: mpsc::Receiver<String>,
    config: Config,
    addr: SocketAddr,
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Rust peers started.
    pub sessions: usize,
    /// Invitations refused (bad room name, too many sessions).
    pub refused: usize,
}

impl Demo {
    /// Binds the HTTP listener.
    pub async fn bind(config: Config) -> std::io::Result<Demo> {
        let (tx, invites) = mpsc::channel(256);
        let captures = xray::Captures::default();
        let mut sc = signaling::Config {
            report_to: Some(tx),
            routes: Some(xray::routes(captures.clone())),
            ..Default::default()
        };
        sc.pages.extend_from_slice(PAGES);
        sc.pages.extend(config.pages.iter().copied());
        // `/` is the demo itself; the examples' index moves to /examples/.
        if let Some(p) = sc.pages.iter_mut().find(|p| p.path == "/") {
            p.path = "/examples/";
        }
        sc.pages.push(Page {
            path: "/",
            content_type: "text/html; charset=utf-8",
            body: include_bytes!("../../web/demo/index.html"),
        });
        let server = Server::bind(config.listen, sc).await?;
        let addr = server.local_addr()?;
        Ok(Demo {
            server,
            captures,
            invites,
            config,
            addr,
        })
    }

    /// The HTTP address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `signal` completes, then closes every peer cleanly and
    /// stops the signaling server.
    pub async fn run_until(
        self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Summary> {
        let Demo {
            server,
            captures,
            mut invites,
            config,
            addr,
        } = self;
        let handle = server.handle();
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut server_stop = stop_rx.clone();
        let server_task = tokio::spawn(server.run_until(async move {
            let _ = server_stop.wait_for(|s| *s).await;
        }));
        let udp_ip = config.udp_ip.unwrap_or(addr.ip()).to_canonical();
        let live = Arc::new(AtomicUsize::new(0));
        let mut sessions = JoinSet::new();
        let mut summary = Summary::default();
        tokio::pin!(signal);
        loop {
            tokio::select! {
                () = &mut signal => break,
                body = invites.recv() => {
                    let Some(body) = body else { break };
                    let Some(room) = invitation(&body) else {
                        if let Some(r) = &config.reports {
                            let _ = r.try_send(body);
                        }
                        continue;
                    };
                    if signaling::validate_room_name(&room).is_err() {
                        summary.refused += 1;
                        tracing::warn!(%room, "demo: invitation refused: bad room name");
                        continue;
                    }
                    if live.load(Ordering::Acquire) >= config.max_sessions {
                        summary.refused += 1;
                        tracing::warn!(%room, "demo: invitation refused: too many peers");
                        if let Some(member) = handle.member() {
                            let why = format!(
                                "the demo already runs its limit of {} Rust peers; try again later",
                                config.max_sessions
                            );
                            sessions.spawn(session::refuse(member, room, why));
                        }
                        continue;
                    }
                    let Some(member) = handle.member() else {
                        summary.refused += 1;
                        continue;
                    };
                    summary.sessions += 1;
                    live.fetch_add(1, Ordering::AcqRel);
                    let live = live.clone();
                    let stop = stop_rx.clone();
                    let pcap = config.pcap.as_deref().map(|p| numbered(p, summary.sessions));
                    let xray = (config.xray_bytes > 0)
                        .then(|| xray::Recording::new(&captures, config.xray_bytes));
                    sessions.spawn(async move {
                        session::run(member, room, udp_ip, pcap, xray, stop).await;
                        live.fetch_sub(1, Ordering::AcqRel);
                    });
                }
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        // Ctrl-C: every session closes its peer (close_notify, SCTP ABORT)
        // and leaves its room; then the server closes the WebSockets.
        stop_tx.send_replace(true);
        let closing = async { while sessions.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(3), closing)
            .await
            .is_err()
        {
            sessions.abort_all();
        }
        handle.shutdown();
        match server_task.await {
            Ok(r) => r?,
            Err(e) => tracing::warn!("demo: signaling task ended badly: {e}"),
        }
        Ok(summary)
    }
}

/// `{"invite":"ROOM"}` → `ROOM`.
fn invitation(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    Some(v.get("invite")?.as_str()?.to_string())
}

/// `path` with `-n` before its extension.
fn numbered(path: &std::path::Path, n: usize) -> std::path::PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(e) => format!("{stem}-{n}.{}", e.to_string_lossy()),
        None => format!("{stem}-{n}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invitations_are_recognised() {
        assert_eq!(invitation(r#"{"invite":"rust-1"}"#), Some("rust-1".into()));
        assert_eq!(invitation(r#"{"frames":3}"#), None);
        assert_eq!(invitation("not json"), None);
        assert_eq!(invitation(r#"{"invite":7}"#), None);
    }
}
