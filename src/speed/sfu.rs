//! `rtclab speed sfu`: a load generator of ours that drives a selective
//! forwarding unit over real UDP on loopback, and the figures of issue 17 §4
//! for every SFU it can start in the same run: Janus's VideoRoom (Debian's
//! `janus`, the anchor) and `rtclab sfu` (WHIP/WHEP, RFC 9725).
//!
//! ```text
//!   generator (pinned to core 1)                    SFU (pinned to core 0)
//!   publisher  PeerConnection ── VP8 1 Mbit/s ──►   receive once,
//!              30 fps + Opus-sized audio 50/s      forward to every
//!   subscriber PeerConnection × N ◄── RTP ───────   subscriber
//!     (RTP mode: counts packets, sequence holes,
//!      the first whole keyframe)
//!   signaling: Janus's HTTP API (long poll) or WHIP/WHEP POSTs
//! ```
//!
//! Every peer is an rtclab [`LivePeer`] on its own UDP socket; all of them
//! share one tokio worker thread, so the generator uses one core and leaves
//! the other to the SFU. The SFU's cost is read from the kernel, never
//! from the generator: CPU time as `utime + stime` of `/proc/PID/stat`
//! (all its threads), memory as `VmRSS` of `/proc/PID/status`.
//!
//! Scenarios: one publisher and N subscribers (N grows by steps, 10, 50,
//! 100, 200, …, until a step loses packets, the SFU's core is saturated
//! or the generator's is), and rooms of four (each participant publishes
//! and subscribes to the other three). Per step the generator waits until
//! every new subscriber has its first frame, then counts what subscribers
//! receive over a window. Figures:
//!
//! - `fwd_pps_per_core`: packets delivered to subscribers per CPU second
//!   of the SFU (the most loaded step without loss); `cpu_per_pkt_us` its
//!   inverse.
//! - `subscribers_per_core_1mbps`: subscribers of a 1 Mbit/s publisher one
//!   core carries: `fwd_pps_per_core` over the packets per second one
//!   subscriber gets at that rate (linear in N, as the steps show).
//! - `bytes_per_subscriber`: the slope of the SFU's RSS over N (least
//!   squares over the steps).
//! - `join_first_frame_p50_ms`/`p95`: from the subscriber's first signaling
//!   request to its first whole keyframe (every packet from a keyframe's
//!   first to its marker, in sequence).
//!
//! Loss is counted from sequence-number holes per SSRC (a hole later
//! filled by a retransmission is not counted).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::machine::Machine;
use crate::peer::{self, PeerConnectionState, TrackId};
use crate::rtp::RtpPacket;
use crate::runtime::LivePeer;
use crate::sdp::MediaKind;
use crate::speed::Figure;

// ---- options --------------------------------------------------------------

/// What `rtclab speed sfu` runs (set by the CLI before [`crate::speed::run`]).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run against Janus (`--janus`).
    pub janus: bool,
    /// Run against `BIN sfu` (`--rtclab BIN`).
    pub rtclab: Option<PathBuf>,
    /// The steps of the 1 × N scenario (`--subscribers N`, repeatable);
    /// empty: 10, 50, 100, 200, 400, 800, 1600 until a limit.
    pub subscribers: Vec<usize>,
    /// Rooms of four in the second scenario (0: skip it).
    pub rooms: Option<usize>,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// Sets the options of the next `rtclab speed sfu` (once per process).
pub fn configure(options: Options) {
    let _ = OPTIONS.set(options);
}

/// The default steps of the 1 × N scenario.
const STEPS: &[usize] = &[10, 50, 100, 200, 400, 800, 1600];
/// The publisher's video: 1 Mbit/s at 30 frames per second.
const VIDEO_BITRATE: u64 = 1_000_000;
const FPS: u64 = 30;
/// Opus-sized audio: one 100-byte packet every 20 ms (40 kbit/s).
const AUDIO_BYTES: usize = 100;
const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
/// How long each step counts.
const WINDOW: Duration = Duration::from_secs(8);
/// How long a new subscriber may take to its first frame.
const FIRST_FRAME_LIMIT: Duration = Duration::from_secs(15);
/// A step is the last when it loses more than this share of packets …
const LOSS_LIMIT: f64 = 0.01;
/// … or uses more than this share of the SFU's core or the generator's.
const CPU_LIMIT: f64 = 0.9;

// ---- a small HTTP/1.1 client -----------------------------------------------

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The largest response read (a JSON event batch or an SDP).
const MAX_RESPONSE: u64 = 4 << 20;

/// One request on its own connection (`Connection: close`), read to the
/// end.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let err = |e: std::io::Error| format!("HTTP {method} http://{addr}{path}: {e}");
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(err)?;
    s.set_read_timeout(Some(timeout)).map_err(err)?;
    s.set_write_timeout(Some(timeout)).map_err(err)?;
    let _ = s.set_nodelay(true);
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out).map_err(err)?;
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut raw).map_err(err)?;
    parse_response(&raw).map_err(|e| format!("HTTP {method} http://{addr}{path}: {e}"))
}

/// Parses a whole HTTP/1.1 response (RFC 9112: status line, header
/// fields, a body framed by `Transfer-Encoding: chunked`, by
/// `Content-Length`, or by the end of the connection).
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response without the end of its header")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "header is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 status line: {status_line:?}"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (100..1000).contains(s))
        .ok_or_else(|| format!("bad status in {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| format!("header line without a colon: {line:?}"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let mut r = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if r.header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
    {
        r.body = dechunk(rest)?;
    } else if let Some(len) = r.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        if rest.len() < len {
            return Err(format!("body of {} bytes, {len} announced", rest.len()));
        }
        r.body = rest[..len].to_vec();
    } else {
        r.body = rest.to_vec();
    }
    Ok(r)
}

/// The body of a chunked transfer coding (RFC 9112 §7.1); extensions and
/// trailers are skipped.
fn dechunk(mut p: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = p
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let line = std::str::from_utf8(&p[..eol]).map_err(|_| "chunk size not UTF-8")?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {hex:?}"))?;
        p = &p[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if p.len() < size + 2 {
            return Err(format!("chunk of {size} bytes truncated at {}", p.len()));
        }
        body.extend_from_slice(&p[..size]);
        p = &p[size + 2..];
    }
}

// ---- the SFU under test ----------------------------------------------------

/// One side of an offer/answer exchange: the generator's peer. The SFU's
/// signaling calls what its protocol needs (Janus offers to subscribers,
/// WHEP lets the client offer).
pub trait Negotiate {
    /// Our offer (set as our local description).
    fn offer(&mut self) -> Result<String, String>;
    /// Our answer to the SFU's offer (both descriptions set).
    fn answer(&mut self, offer: &str) -> Result<String, String>;
    /// The SFU's answer to our offer.
    fn accept_answer(&mut self, answer: &str) -> Result<(), String>;
    /// Our candidates gathered so far (`candidate:…` lines).
    fn candidates(&mut self) -> Vec<String>;
}

/// A publication or subscription the SFU made for us.
#[derive(Debug, Clone, Default)]
pub struct Leg {
    /// The publisher's id in its room (Janus's feed id), what subscribers
    /// name.
    pub feed: Option<String>,
    /// The SFU's name for the session (Janus: session/handle; WHIP: the
    /// `Location`).
    pub resource: String,
}

/// A selective forwarding unit the generator can drive.
pub trait SfuUnderTest {
    /// Its name in the figures (`janus`, `rtclab`).
    fn name(&self) -> &'static str;
    /// Starts it (pinned to core `core` when given).
    fn start(&mut self, core: Option<usize>) -> Result<(), String>;
    /// A new room for up to `publishers` publishers; its name.
    fn create_room(&mut self, publishers: usize) -> Result<String, String>;
    /// Publishes `peer`'s tracks into `room`.
    fn publish(&mut self, room: &str, peer: &mut dyn Negotiate) -> Result<Leg, String>;
    /// Subscribes `peer` to the publishers `feeds` of `room` (an SFU that
    /// plays a whole room, as WHEP does, may ignore `feeds`).
    fn subscribe(
        &mut self,
        room: &str,
        feeds: &[String],
        peer: &mut dyn Negotiate,
    ) -> Result<Leg, String>;
    /// Whether a subscriber offers (WHEP) rather than answers the SFU's
    /// offer (Janus): the generator then gives it receive-only m-lines.
    fn subscriber_offers(&self) -> bool {
        false
    }
    /// The process to measure.
    fn pid(&self) -> Option<u32>;
    /// The address the generator's peers bind (the SFU's candidates must
    /// reach it).
    fn peer_ip(&self) -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }
    /// Ends the sessions made so far, so that a later scenario finds the
    /// SFU's participant limit free (else they would hold it until their
    /// consent ran out).
    fn end_sessions(&mut self) {}
    /// Stops it.
    fn stop(&mut self);
}

fn free_tcp_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port: {e}"))
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// `program args` pinned to `core` with `taskset` when given and present.
fn command_on_core(program: &Path, core: Option<usize>) -> Command {
    match (core, find_on_path("taskset")) {
        (Some(c), Some(taskset)) => {
            let mut cmd = Command::new(taskset);
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        _ => Command::new(program),
    }
}

/// Janus's VideoRoom over Janus's HTTP (REST) transport: the API its docs
/// give (`create` a session, `attach` `janus.plugin.videoroom`, `create` a
/// room; a publisher `joinandconfigure`s with our offer and gets Janus's
/// answer; a subscriber `join`s as `ptype: subscriber` with `streams` of
/// feeds, gets Janus's offer and answers with `start`). Asynchronous
/// replies come by long poll (`GET /janus/SESSION`).
#[derive(Debug)]
pub struct Janus {
    program: PathBuf,
    plugins: PathBuf,
    transports: PathBuf,
    dir: PathBuf,
    http: Option<SocketAddr>,
    child: Option<Child>,
    next_room: u64,
    next_transaction: u64,
    ip: IpAddr,
}

/// The address Janus gathers on and the generator binds: the first
/// non-loopback IPv4 address of the host. Janus (1.1) never gathers on a
/// loopback interface, and the kernel drops what a non-loopback address
/// sends to 127.0.0.1 (a martian), so both sides use this one; the traffic
/// still never leaves the host (it crosses `lo`).
fn janus_ip() -> Result<IpAddr, String> {
    let options = crate::runtime::interfaces::HostOptions {
        loopback: false,
        ipv4_only: true,
    };
    crate::runtime::interfaces::host_addresses(options)
        .map_err(|e| format!("the host's addresses: {e}"))?
        .into_iter()
        .next()
        .ok_or_else(|| "Janus needs a non-loopback IPv4 address on this host".into())
}

/// Where Debian (and a source build) puts Janus's plugins.
fn janus_lib_dir() -> Option<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/janus"),
        PathBuf::from("/opt/janus/lib/janus"),
        PathBuf::from("/usr/local/lib/janus"),
    ];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with("-linux-gnu") {
                dirs.push(e.path().join("janus"));
            }
        }
    }
    dirs.into_iter()
        .find(|d| d.join("plugins/libjanus_videoroom.so").is_file())
}

impl Janus {
    /// Janus if installed (the `janus` program and its VideoRoom and HTTP
    /// plugins), else why not.
    pub fn find() -> Result<Janus, String> {
        let program = find_on_path("janus").ok_or("janus is not installed (Debian: janus)")?;
        let lib = janus_lib_dir().ok_or("Janus's libjanus_videoroom.so not found")?;
        let transports = lib.join("transports/libjanus_http.so");
        if !transports.is_file() {
            return Err("Janus's libjanus_http.so not found".into());
        }
        Ok(Janus {
            program,
            plugins: lib.join("plugins/libjanus_videoroom.so"),
            transports,
            dir: PathBuf::new(),
            http: None,
            child: None,
            next_room: 1000,
            next_transaction: 0,
            ip: janus_ip()?,
        })
    }

    /// The configuration, written into `self.dir`: only the VideoRoom
    /// plugin and the HTTP transport (their folders hold one link each),
    /// host candidates on loopback only, no session timeout, warnings only
    /// in the log.
    fn write_config(&self, port: u16) -> Result<(), String> {
        let d = &self.dir;
        let io = |e: std::io::Error| format!("Janus configuration in {}: {e}", d.display());
        for sub in ["plugins", "transports", "none"] {
            std::fs::create_dir_all(d.join(sub)).map_err(io)?;
        }
        std::os::unix::fs::symlink(&self.plugins, d.join("plugins/libjanus_videoroom.so"))
            .map_err(io)?;
        std::os::unix::fs::symlink(&self.transports, d.join("transports/libjanus_http.so"))
            .map_err(io)?;
        let dir = d.display();
        let janus = format!(
            "general: {{\n  configs_folder = \"{dir}\"\n  plugins_folder = \"{dir}/plugins\"\n  \
             transports_folder = \"{dir}/transports\"\n  events_folder = \"{dir}/none\"\n  \
             loggers_folder = \"{dir}/none\"\n  debug_level = 3\n  session_timeout = 0\n}}\n\
             media: {{\n  rtp_port_range = \"20000-60000\"\n}}\n\
             nat: {{\n  ice_enforce_list = \"{ip}\"\n  nice_debug = false\n}}\n",
            ip = self.ip
        );
        let http = format!(
            "general: {{\n  json = \"plain\"\n  base_path = \"/janus\"\n  http = true\n  \
             port = {port}\n  ip = \"127.0.0.1\"\n}}\nadmin: {{\n  admin_http = false\n}}\n"
        );
        std::fs::write(d.join("janus.jcfg"), janus).map_err(io)?;
        std::fs::write(d.join("janus.transport.http.jcfg"), http).map_err(io)?;
        std::fs::write(d.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n").map_err(io)?;
        Ok(())
    }

    fn transaction(&mut self) -> String {
        self.next_transaction += 1;
        format!("t{}", self.next_transaction)
    }

    fn http(&self) -> Result<SocketAddr, String> {
        self.http.ok_or_else(|| "Janus is not started".to_string())
    }

    /// POSTs a Janus request to `path`; the reply's JSON.
    fn post(&mut self, path: &str, mut msg: Value) -> Result<Value, String> {
        let t = self.transaction();
        msg["transaction"] = json!(t);
        let body = msg.to_string();
        let r = http_request(
            self.http()?,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
            Duration::from_secs(10),
        )?;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("Janus answered {path} with no JSON ({e})"))?;
        if v["janus"] == "error" {
            return Err(format!("Janus refused {msg}: {}", v["error"]));
        }
        Ok(v)
    }

    fn create_session(&mut self) -> Result<u64, String> {
        let v = self.post("/janus", json!({"janus": "create"}))?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("no session id in {v}"))
    }

    fn attach(&mut self, session: u64) -> Result<u64, String> {
        let v = self.post(
            &format!("/janus/{session}"),
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("no handle id in {v}"))
    }

    /// Sends a VideoRoom request (with an SDP when given) and waits for
    /// the plugin's event (its `ack` first, then the event by long poll).
    fn request(
        &mut self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<(&str, &str)>,
    ) -> Result<Value, String> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some((kind, sdp)) = jsep {
            msg["jsep"] = json!({"type": kind, "sdp": sdp});
        }
        let t = self.transaction();
        msg["transaction"] = json!(t);
        let r = http_request(
            self.http()?,
            "POST",
            &format!("/janus/{session}/{handle}"),
            &[("Content-Type", "application/json")],
            msg.to_string().as_bytes(),
            Duration::from_secs(10),
        )?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("Janus: {e}"))?;
        match v["janus"].as_str() {
            Some("success") => return plugin_result(v),
            Some("ack") => {}
            _ => return Err(format!("Janus refused {body}: {v}")),
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let r = http_request(
                self.http()?,
                "GET",
                &format!("/janus/{session}?maxev=10"),
                &[],
                &[],
                Duration::from_secs(40),
            )?;
            let v: Value = serde_json::from_slice(&r.body).map_err(|e| format!("Janus: {e}"))?;
            let events = match v {
                Value::Array(a) => a,
                one => vec![one],
            };
            for e in events {
                if e["transaction"] == t.as_str() && e["janus"] == "event" {
                    return plugin_result(e);
                }
            }
        }
        Err(format!("Janus did not answer {body} in 20 s"))
    }

    /// Trickles our candidates and end-of-candidates to a handle.
    fn trickle(
        &mut self,
        session: u64,
        handle: u64,
        mid: &str,
        peer: &mut dyn Negotiate,
    ) -> Result<(), String> {
        let path = format!("/janus/{session}/{handle}");
        for c in peer.candidates() {
            self.post(
                &path,
                json!({"janus": "trickle", "candidate":
                    {"candidate": c, "sdpMid": mid, "sdpMLineIndex": 0}}),
            )?;
        }
        self.post(
            &path,
            json!({"janus": "trickle", "candidate": {"completed": true}}),
        )?;
        Ok(())
    }
}

/// The `plugindata.data` of a Janus event, with its JSEP if any; an error
/// when the plugin reports one.
fn plugin_result(v: Value) -> Result<Value, String> {
    let data = &v["plugindata"]["data"];
    if !data["error"].is_null() {
        return Err(format!(
            "Janus VideoRoom error {}: {}",
            data["error_code"], data["error"]
        ));
    }
    Ok(json!({"data": data.clone(), "jsep": v["jsep"].clone()}))
}

/// The first `a=mid:` of an SDP.
fn first_mid(sdp: &str) -> String {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix("a=mid:"))
        .unwrap_or("0")
        .to_string()
}

/// Each m-line's mid and media kind (audio/video only).
fn media_mids(sdp: &str) -> Vec<(String, MediaKind)> {
    let mut out = Vec::new();
    let mut kind = None;
    for l in sdp.lines().map(str::trim) {
        if let Some(m) = l.strip_prefix("m=") {
            kind = if m.starts_with("video") {
                Some(MediaKind::Video)
            } else if m.starts_with("audio") {
                Some(MediaKind::Audio)
            } else {
                None
            };
        } else if let (Some(mid), Some(k)) = (l.strip_prefix("a=mid:"), kind) {
            out.push((mid.to_string(), k));
        }
    }
    out
}

impl SfuUnderTest for Janus {
    fn name(&self) -> &'static str {
        "janus"
    }

    fn start(&mut self, core: Option<usize>) -> Result<(), String> {
        self.dir = std::env::temp_dir().join(format!(
            "rtclab-janus-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(rand::random::<u32>())
        ));
        let port = free_tcp_port()?;
        self.write_config(port)?;
        let log = std::fs::File::create(self.dir.join("janus.log"))
            .map_err(|e| format!("Janus log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("Janus log: {e}"))?;
        let child = command_on_core(&self.program, core)
            .arg("-F")
            .arg(&self.dir)
            .arg("-C")
            .arg(self.dir.join("janus.jcfg"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start janus: {e}"))?;
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.http = Some(addr);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if http_request(addr, "GET", "/janus/info", &[], &[], Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200)
            {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!(
                    "janus exited ({status}); its log: {}",
                    self.dir.join("janus.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("janus did not answer on HTTP in 15 s".into())
    }

    fn create_room(&mut self, publishers: usize) -> Result<String, String> {
        self.next_room += 1;
        let room = self.next_room;
        let session = self.create_session()?;
        let handle = self.attach(session)?;
        self.request(
            session,
            handle,
            json!({"request": "create", "room": room, "publishers": publishers.max(1),
                   "bitrate": 0, "fir_freq": 0, "videocodec": "vp8", "audiocodec": "opus",
                   "notify_joining": false}),
            None,
        )?;
        Ok(room.to_string())
    }

    fn publish(&mut self, room: &str, peer: &mut dyn Negotiate) -> Result<Leg, String> {
        let room: u64 = room
            .parse()
            .map_err(|_| format!("bad Janus room {room:?}"))?;
        let session = self.create_session()?;
        let handle = self.attach(session)?;
        let offer = peer.offer()?;
        let r = self.request(
            session,
            handle,
            json!({"request": "joinandconfigure", "room": room, "ptype": "publisher",
                   "display": "rtclab", "audio": true, "video": true}),
            Some(("offer", &offer)),
        )?;
        let answer = r["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("Janus's publisher reply has no answer: {r}"))?;
        peer.accept_answer(answer)?;
        self.trickle(session, handle, &first_mid(&offer), peer)?;
        let feed = r["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("no feed id in {r}"))?;
        Ok(Leg {
            feed: Some(feed.to_string()),
            resource: format!("{session}/{handle}"),
        })
    }

    fn subscribe(
        &mut self,
        room: &str,
        feeds: &[String],
        peer: &mut dyn Negotiate,
    ) -> Result<Leg, String> {
        let room: u64 = room
            .parse()
            .map_err(|_| format!("bad Janus room {room:?}"))?;
        let streams: Vec<Value> = feeds
            .iter()
            .filter_map(|f| f.parse::<u64>().ok())
            .map(|f| json!({"feed": f}))
            .collect();
        let session = self.create_session()?;
        let handle = self.attach(session)?;
        // VideoRoom refuses (428, "No such feed") a feed whose publisher's
        // PeerConnection is not up on its side yet (its DTLS handshake
        // ends a moment after ours): ask again for a while.
        let deadline = Instant::now() + Duration::from_secs(5);
        let r = loop {
            let join = json!({"request": "join", "room": room, "ptype": "subscriber",
                              "streams": streams});
            match self.request(session, handle, join, None) {
                Err(e) if e.contains("error 428") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other?,
            }
        };
        let offer = r["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("Janus's subscriber reply has no offer: {r}"))?
            .to_string();
        let answer = peer.answer(&offer)?;
        self.request(
            session,
            handle,
            json!({"request": "start"}),
            Some(("answer", &answer)),
        )?;
        self.trickle(session, handle, &first_mid(&answer), peer)?;
        Ok(Leg {
            feed: None,
            resource: format!("{session}/{handle}"),
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn peer_ip(&self) -> IpAddr {
        self.ip
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // RTCLAB_KEEP_JANUS=1 keeps the configuration and janus.log.
        if !self.dir.as_os_str().is_empty() && std::env::var_os("RTCLAB_KEEP_JANUS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `rtclab sfu` (or any WHIP/WHEP server) through RFC 9725: `POST
/// /whip/ROOM` with our offer publishes, `POST /whep/ROOM` plays the room;
/// each answers `201 Created` with `Location` and the SDP answer. Our
/// offer carries our candidates (non-trickle, RFC 9725 §4.1 allows
/// either).
#[derive(Debug)]
pub struct Whip {
    program: Option<PathBuf>,
    http: Option<SocketAddr>,
    child: Option<Child>,
    next_room: u64,
    resources: Vec<String>,
}

impl Whip {
    /// `BIN sfu --listen 127.0.0.1:P --udp 127.0.0.1:U`, started by
    /// [`SfuUnderTest::start`].
    pub fn rtclab(bin: PathBuf) -> Whip {
        Whip {
            program: Some(bin),
            http: None,
            child: None,
            next_room: 0,
            resources: Vec::new(),
        }
    }

    /// A WHIP/WHEP server already running at `http` (the generator does not
    /// start or measure it).
    pub fn at(http: SocketAddr) -> Whip {
        Whip {
            program: None,
            http: Some(http),
            child: None,
            next_room: 0,
            resources: Vec::new(),
        }
    }

    /// The offer with our candidates in every m-section (and
    /// `a=end-of-candidates`), as an SDP a non-trickling client sends.
    fn with_candidates(offer: &str, candidates: &[String]) -> String {
        let mut out = String::with_capacity(offer.len() + 256);
        let mut in_media = false;
        let close = |out: &mut String| {
            for c in candidates {
                out.push_str(&format!("a={c}\r\n"));
            }
            out.push_str("a=end-of-candidates\r\n");
        };
        for l in offer.lines().map(|l| l.trim_end_matches('\r')) {
            if l.starts_with("m=") {
                if in_media {
                    close(&mut out);
                }
                in_media = true;
            }
            if l.starts_with("a=candidate:") || l == "a=end-of-candidates" || l.is_empty() {
                continue;
            }
            out.push_str(l);
            out.push_str("\r\n");
        }
        if in_media {
            close(&mut out);
        }
        out
    }

    fn exchange(&mut self, path: &str, peer: &mut dyn Negotiate) -> Result<Leg, String> {
        let http = self.http.ok_or("the WHIP server is not started")?;
        let offer = peer.offer()?;
        let offer = Whip::with_candidates(&offer, &peer.candidates());
        let r = http_request(
            http,
            "POST",
            path,
            &[("Content-Type", "application/sdp")],
            offer.as_bytes(),
            Duration::from_secs(10),
        )?;
        if r.status != 201 {
            return Err(format!(
                "POST {path}: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        let location = r
            .header("location")
            .ok_or_else(|| format!("POST {path}: 201 without Location (RFC 9725 §4.2)"))?
            .to_string();
        let answer =
            String::from_utf8(r.body).map_err(|_| format!("POST {path}: answer not UTF-8"))?;
        peer.accept_answer(&answer)?;
        self.resources.push(location.clone());
        Ok(Leg {
            feed: None,
            resource: location,
        })
    }
}

impl SfuUnderTest for Whip {
    fn name(&self) -> &'static str {
        "rtclab"
    }

    fn start(&mut self, core: Option<usize>) -> Result<(), String> {
        let Some(bin) = self.program.clone() else {
            return Ok(());
        };
        let port = free_tcp_port()?;
        let udp = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("no free UDP port: {e}"))?;
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let child = command_on_core(&bin, core)
            .args([
                "sfu",
                "--listen",
                &listen.to_string(),
                "--udp",
                &udp.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {} sfu: {e}", bin.display()))?;
        self.child = Some(child);
        self.http = Some(listen);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&listen, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(format!("{} sfu exited ({status})", bin.display()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("{} sfu did not listen in 15 s", bin.display()))
    }

    fn create_room(&mut self, _publishers: usize) -> Result<String, String> {
        self.next_room += 1;
        Ok(format!("speed{}", self.next_room))
    }

    fn publish(&mut self, room: &str, peer: &mut dyn Negotiate) -> Result<Leg, String> {
        let mut leg = self.exchange(&format!("/whip/{room}"), peer)?;
        leg.feed = Some(leg.resource.clone());
        Ok(leg)
    }

    fn subscribe(
        &mut self,
        room: &str,
        _feeds: &[String],
        peer: &mut dyn Negotiate,
    ) -> Result<Leg, String> {
        self.exchange(&format!("/whep/{room}"), peer)
    }

    fn subscriber_offers(&self) -> bool {
        true
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn end_sessions(&mut self) {
        if let (Some(http), Some(_)) = (self.http, &self.child) {
            // RFC 9725 §4.2: DELETE ends a session (best effort).
            for r in std::mem::take(&mut self.resources) {
                let path = if r.starts_with('/') {
                    r
                } else {
                    r.split_once("://")
                        .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
                        .unwrap_or(r)
                };
                let _ = http_request(http, "DELETE", &path, &[], &[], Duration::from_secs(1));
            }
        }
    }

    fn stop(&mut self) {
        self.end_sessions();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Whip {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---- the generator's peers --------------------------------------------------

/// A [`LivePeer`] as the [`Negotiate`] side of signaling. Its events are
/// read here only before the peer runs (candidates); the peer's task reads
/// the rest.
#[derive(Debug)]
pub struct GenPeer {
    /// The peer.
    pub live: LivePeer,
    candidates: Vec<String>,
    /// The SFU's description (offer or answer).
    remote: String,
}

impl GenPeer {
    /// Wraps a bound peer (before its offer or answer).
    pub fn new(live: LivePeer) -> GenPeer {
        GenPeer {
            live,
            candidates: Vec::new(),
            remote: String::new(),
        }
    }

    /// The SFU's description (its offer or answer), once signaled.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    fn collect(&mut self) {
        while let Some(e) = self.live.connection_mut().poll_event() {
            if let peer::Event::LocalCandidate(c) = e {
                self.candidates.push(c.to_string());
            }
        }
    }
}

impl Negotiate for GenPeer {
    fn offer(&mut self) -> Result<String, String> {
        let o = self.live.offer().map_err(|e| e.to_string())?;
        self.collect();
        Ok(o)
    }

    fn answer(&mut self, offer: &str) -> Result<String, String> {
        let a = self.live.answer(offer).map_err(|e| e.to_string())?;
        self.remote = offer.to_string();
        self.collect();
        Ok(a)
    }

    fn accept_answer(&mut self, answer: &str) -> Result<(), String> {
        self.live.accept_answer(answer).map_err(|e| e.to_string())?;
        self.remote = answer.to_string();
        self.collect();
        Ok(())
    }

    fn candidates(&mut self) -> Vec<String> {
        self.collect();
        std::mem::take(&mut self.candidates)
    }
}

/// Gives a peer that is to offer a receive-only audio and video m-line
/// (a WHEP client's offer, RFC 9725 §4.2). `PeerConnection` has no
/// `addTransceiver(kind, {direction: "recvonly"})`: a track added and
/// removed before the first offer leaves its m-line `recvonly`
/// (JSEP §4.1.8).
pub fn receive_only(live: &mut LivePeer) -> Result<(), String> {
    for kind in [MediaKind::Audio, MediaKind::Video] {
        let t = live.add_track(kind).map_err(|e| e.to_string())?;
        live.connection_mut()
            .remove_track(t)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// What one subscriber saw (written by its task, read by the generator).
#[derive(Debug, Default)]
pub struct SubscriberCounters {
    /// Video RTP packets received.
    pub video: AtomicU64,
    /// Audio RTP packets received.
    pub audio: AtomicU64,
    /// Sequence-number holes not (yet) filled.
    pub holes: AtomicU64,
    /// Microseconds from the first signaling request to the first whole
    /// keyframe; 0 until then.
    pub first_frame_us: AtomicU64,
    /// The connection failed or closed.
    pub failed: AtomicBool,
}

impl SubscriberCounters {
    fn received(&self) -> u64 {
        self.video.load(Ordering::Relaxed) + self.audio.load(Ordering::Relaxed)
    }
}

/// A receive stream's sequence state (per SSRC).
struct SeqState {
    ssrc: u32,
    unwrap: crate::rtp::SeqUnwrapper,
    highest: u64,
    /// Collecting the first keyframe: the next sequence number it needs.
    key_next: Option<u64>,
}

/// Counts one received packet; true when it completes the first keyframe.
fn count_packet(
    streams: &mut Vec<SeqState>,
    c: &SubscriberCounters,
    kind: MediaKind,
    packet: &[u8],
    want_frame: bool,
) -> bool {
    let Ok(p) = RtpPacket::new_checked(packet) else {
        return false;
    };
    match kind {
        MediaKind::Video => c.video.fetch_add(1, Ordering::Relaxed),
        _ => c.audio.fetch_add(1, Ordering::Relaxed),
    };
    let ssrc = p.ssrc();
    let i = match streams.iter().position(|s| s.ssrc == ssrc) {
        Some(i) => i,
        None => {
            let mut unwrap = crate::rtp::SeqUnwrapper::new();
            let first = unwrap.unwrap(p.sequence_number());
            streams.push(SeqState {
                ssrc,
                unwrap,
                highest: first.wrapping_sub(1),
                key_next: None,
            });
            streams.len() - 1
        }
    };
    let s = &mut streams[i];
    let seq = s.unwrap.unwrap(p.sequence_number());
    if seq > s.highest {
        c.holes.fetch_add(seq - s.highest - 1, Ordering::Relaxed);
        s.highest = seq;
    } else if s.highest - seq < 1000 {
        // A retransmission (or a reordered packet) fills a hole.
        let _ = c
            .holes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| h.checked_sub(1));
    }
    if !want_frame || kind != MediaKind::Video {
        return false;
    }
    if crate::rtp::vp8::is_keyframe(p.payload()) {
        s.key_next = Some(seq);
    }
    match s.key_next {
        Some(n) if n == seq => {
            if p.marker() {
                return true;
            }
            s.key_next = Some(seq + 1);
            false
        }
        Some(_) => {
            s.key_next = None;
            false
        }
        None => false,
    }
}

async fn run_subscriber(
    mut live: LivePeer,
    mids: Vec<(String, MediaKind)>,
    c: Arc<SubscriberCounters>,
    joined: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut streams = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            e = live.next_event() => match e {
                Ok(peer::Event::Rtp { mid, packet, .. }) => {
                    let kind = mids
                        .iter()
                        .find(|(m, _)| m.as_str() == &*mid)
                        .map_or(MediaKind::Video, |(_, k)| *k);
                    let want = c.first_frame_us.load(Ordering::Relaxed) == 0;
                    if count_packet(&mut streams, &c, kind, &packet, want) {
                        let us = joined.elapsed().as_micros().max(1) as u64;
                        c.first_frame_us.store(us, Ordering::Relaxed);
                    }
                    live.connection_mut().recycle_rtp(packet);
                }
                Ok(peer::Event::ConnectionState(
                    PeerConnectionState::Failed | PeerConnectionState::Closed,
                ))
                | Err(_) => {
                    c.failed.store(true, Ordering::Relaxed);
                    break;
                }
                Ok(_) => {}
            },
        }
    }
    live.close().await;
}

/// What a publisher sent.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// RTP packets sent (video and audio).
    pub packets: AtomicU64,
    /// Keyframes sent.
    pub keyframes: AtomicU64,
    /// Video frames sent.
    pub frames: AtomicU64,
    /// Video RTP packets sent.
    pub video_packets: AtomicU64,
    /// Connected (sending).
    pub connected: AtomicBool,
    /// The connection failed.
    pub failed: AtomicBool,
}

/// A synthetic VP8 frame of `size` bytes: a real frame tag (RFC 6386
/// §9.1: key_frame bit, version 0, show_frame, first-partition size) and,
/// for a keyframe, the start code and a 640×480 size, so that SFUs that
/// look for keyframes find them; the rest is filler.
pub fn vp8_frame(out: &mut Vec<u8>, size: usize, key: bool, n: u32) {
    let size = size.max(10);
    out.clear();
    let first_part = (size as u32 / 4).min(0x7_ffff);
    let tag = u32::from(!key) | (1 << 4) | (first_part << 5);
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if key {
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&640u16.to_le_bytes());
        out.extend_from_slice(&480u16.to_le_bytes());
    }
    let mut x = n.wrapping_mul(2_654_435_761) | 1;
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out.push(x as u8);
    }
}

async fn run_publisher(
    mut live: LivePeer,
    video: TrackId,
    audio: TrackId,
    c: Arc<PublisherCounters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let frame_bytes = (VIDEO_BITRATE / 8 / FPS) as usize;
    let mut frame_tick = tokio::time::interval(Duration::from_micros(1_000_000 / FPS));
    let mut audio_tick = tokio::time::interval(AUDIO_INTERVAL);
    // Late ticks (a loaded machine) are caught up: the publisher keeps its
    // bitrate on average.
    frame_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    audio_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut frame = Vec::with_capacity(frame_bytes);
    let audio_payload = vec![0xf8u8; AUDIO_BYTES];
    let (mut n, mut audio_n) = (0u32, 0u32);
    let mut key = true;
    let mut last_key = Instant::now();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = frame_tick.tick(), if c.connected.load(Ordering::Relaxed) => {
                // A keyframe on request, at most one per 500 ms (many
                // joiners, one keyframe), and every 10 s regardless.
                let key_now = (key && last_key.elapsed() >= Duration::from_millis(500))
                    || last_key.elapsed() >= Duration::from_secs(10) || n == 0;
                vp8_frame(&mut frame, frame_bytes, key_now, n);
                if key_now {
                    key = false;
                    last_key = Instant::now();
                    c.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(k) = live.send_frame(video, n.wrapping_mul(90_000 / FPS as u32), &frame) {
                    c.packets.fetch_add(k as u64, Ordering::Relaxed);
                    c.video_packets.fetch_add(k as u64, Ordering::Relaxed);
                    c.frames.fetch_add(1, Ordering::Relaxed);
                }
                n = n.wrapping_add(1);
                if live.flush().await.is_err() {
                    break;
                }
            }
            _ = audio_tick.tick(), if c.connected.load(Ordering::Relaxed) => {
                if let Ok(k) = live.send_frame(audio, audio_n.wrapping_mul(960), &audio_payload) {
                    c.packets.fetch_add(k as u64, Ordering::Relaxed);
                }
                audio_n = audio_n.wrapping_add(1);
            }
            e = live.next_event() => match e {
                Ok(peer::Event::ConnectionState(PeerConnectionState::Connected)) => {
                    c.connected.store(true, Ordering::Relaxed);
                }
                Ok(peer::Event::KeyframeRequested(t)) if t == video => key = true,
                Ok(peer::Event::ConnectionState(
                    PeerConnectionState::Failed | PeerConnectionState::Closed,
                ))
                | Err(_) => {
                    c.failed.store(true, Ordering::Relaxed);
                    break;
                }
                Ok(_) => {}
            },
        }
    }
    live.close().await;
}

// ---- the load generator -----------------------------------------------------

/// CPU time (user + system, all threads) of a process, from
/// `/proc/PID/stat` (fields 14 and 15, in USER_HZ ticks of 10 ms).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let ticks = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks.saturating_mul(10)))
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`).
pub fn process_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// One measured step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// Subscriber connections (1 × N), or participants (rooms of four).
    pub subscribers: usize,
    /// Wall time of the window.
    pub wall_s: f64,
    /// The SFU's CPU seconds in the window.
    pub sfu_cpu_s: f64,
    /// The generator's CPU seconds in the window.
    pub gen_cpu_s: f64,
    /// Packets subscribers received in the window.
    pub received: u64,
    /// Packets publishers sent in the window.
    pub sent: u64,
    /// Holes subscribers counted in the window.
    pub holes: u64,
    /// The SFU's RSS at the end of the window, bytes.
    pub rss: u64,
    /// Subscribers (of this step's new ones) with no first frame in time.
    pub no_first_frame: usize,
    /// Subscribers whose connection failed.
    pub failed: usize,
    /// Subscribers that received nothing in the window.
    pub silent: usize,
    /// Video packets subscribers received in the window.
    pub video: u64,
}

impl Step {
    fn loss(&self) -> f64 {
        let lost = self.holes as f64;
        if self.received == 0 {
            1.0
        } else {
            lost / (lost + self.received as f64)
        }
    }
    fn sfu_util(&self) -> f64 {
        self.sfu_cpu_s / self.wall_s.max(1e-9)
    }
    fn gen_util(&self) -> f64 {
        self.gen_cpu_s / self.wall_s.max(1e-9)
    }
    fn pps_per_core(&self) -> f64 {
        if self.sfu_cpu_s > 0.0 {
            self.received as f64 / self.sfu_cpu_s
        } else {
            f64::NAN
        }
    }
    fn healthy(&self) -> bool {
        self.loss() <= LOSS_LIMIT
            && self.no_first_frame == 0
            && self.failed == 0
            && self.sfu_util() < CPU_LIMIT
    }
}

/// The generator's state for one SFU.
struct Generator {
    rt: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    subscribers: Vec<Arc<SubscriberCounters>>,
    publishers: Vec<Arc<PublisherCounters>>,
    joins: Vec<f64>,
}

impl Generator {
    fn new() -> Result<Generator, String> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        Ok(Generator {
            rt,
            stop: tokio::sync::watch::channel(false).0,
            tasks: Vec::new(),
            subscribers: Vec::new(),
            publishers: Vec::new(),
            joins: Vec::new(),
        })
    }

    fn bind(&self, ip: IpAddr) -> Result<LivePeer, String> {
        let config = LivePeer::config().map_err(|e| e.to_string())?;
        let lo = SocketAddr::new(ip, 0);
        self.rt
            .block_on(LivePeer::bind(config, lo))
            .map_err(|e| e.to_string())
    }

    /// A publisher of 1 Mbit/s VP8 and Opus-sized audio in `room`; its
    /// feed.
    fn publish(&mut self, sfu: &mut dyn SfuUnderTest, room: &str) -> Result<String, String> {
        let mut live = self.bind(sfu.peer_ip())?;
        let video = live
            .add_track(MediaKind::Video)
            .map_err(|e| e.to_string())?;
        let audio = live
            .add_track(MediaKind::Audio)
            .map_err(|e| e.to_string())?;
        let mut peer = GenPeer {
            live,
            candidates: Vec::new(),
            remote: String::new(),
        };
        let leg = sfu.publish(room, &mut peer)?;
        let c = Arc::new(PublisherCounters::default());
        self.publishers.push(c.clone());
        let stop = self.stop.subscribe();
        self.tasks.push(
            self.rt
                .spawn(run_publisher(peer.live, video, audio, c.clone(), stop)),
        );
        let deadline = Instant::now() + Duration::from_secs(15);
        while !c.connected.load(Ordering::Relaxed) {
            if Instant::now() > deadline || c.failed.load(Ordering::Relaxed) {
                return Err(format!("the publisher did not connect to {}", sfu.name()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        leg.feed
            .ok_or_else(|| format!("{} gave the publisher no feed id", sfu.name()))
    }

    fn subscribe(
        &mut self,
        sfu: &mut dyn SfuUnderTest,
        room: &str,
        feeds: &[String],
    ) -> Result<Arc<SubscriberCounters>, String> {
        let mut live = self.bind(sfu.peer_ip())?;
        if sfu.subscriber_offers() {
            receive_only(&mut live)?;
        }
        let mut peer = GenPeer {
            live,
            candidates: Vec::new(),
            remote: String::new(),
        };
        let joined = Instant::now();
        sfu.subscribe(room, feeds, &mut peer)?;
        let mids = media_mids(&peer.remote);
        for (mid, _) in &mids {
            // Only m-lines we receive on have a receiver.
            let _ = peer.live.connection_mut().set_rtp_mode(mid, true);
        }
        let c = Arc::new(SubscriberCounters::default());
        self.subscribers.push(c.clone());
        let stop = self.stop.subscribe();
        self.tasks.push(
            self.rt
                .spawn(run_subscriber(peer.live, mids, c.clone(), joined, stop)),
        );
        Ok(c)
    }

    /// Waits for the first frame of `new` subscribers; how many had none.
    fn wait_first_frames(&mut self, new: &[Arc<SubscriberCounters>]) -> usize {
        let deadline = Instant::now() + FIRST_FRAME_LIMIT;
        loop {
            let pending = new
                .iter()
                .filter(|c| {
                    c.first_frame_us.load(Ordering::Relaxed) == 0
                        && !c.failed.load(Ordering::Relaxed)
                })
                .count();
            if pending == 0 || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut missing = 0;
        for c in new {
            match c.first_frame_us.load(Ordering::Relaxed) {
                0 => missing += 1,
                us => self.joins.push(us as f64 / 1000.0),
            }
        }
        missing
    }

    fn totals(&self) -> (u64, u64, u64) {
        let received = self.subscribers.iter().map(|c| c.received()).sum();
        let holes = self
            .subscribers
            .iter()
            .map(|c| c.holes.load(Ordering::Relaxed))
            .sum();
        let sent = self
            .publishers
            .iter()
            .map(|c| c.packets.load(Ordering::Relaxed))
            .sum();
        (received, holes, sent)
    }

    /// Counts over one window.
    fn measure(&self, pid: u32, window: Duration) -> Step {
        let gen_cpu = || cpu_time::ProcessTime::try_now().map(|t| t.as_duration());
        let each: Vec<u64> = self.subscribers.iter().map(|c| c.received()).collect();
        let video = || -> u64 {
            self.subscribers
                .iter()
                .map(|c| c.video.load(Ordering::Relaxed))
                .sum()
        };
        let v0 = video();
        let (r0, h0, s0) = self.totals();
        let (c0, g0, t0) = (process_cpu(pid), gen_cpu(), Instant::now());
        std::thread::sleep(window);
        let (r1, h1, s1) = self.totals();
        let (c1, g1, t1) = (process_cpu(pid), gen_cpu(), Instant::now());
        let secs = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
            _ => f64::NAN,
        };
        Step {
            subscribers: self.subscribers.len(),
            wall_s: (t1 - t0).as_secs_f64(),
            sfu_cpu_s: secs(c0, c1),
            gen_cpu_s: secs(g0.ok(), g1.ok()),
            received: r1 - r0,
            sent: s1 - s0,
            holes: h1.saturating_sub(h0),
            rss: process_rss(pid).unwrap_or(0),
            no_first_frame: 0,
            failed: self
                .subscribers
                .iter()
                .filter(|c| c.failed.load(Ordering::Relaxed))
                .count(),
            silent: self
                .subscribers
                .iter()
                .zip(each)
                .filter(|(c, before)| c.received() == *before)
                .count(),
            video: video() - v0,
        }
    }

    fn finish(self) {
        let _ = self.stop.send(true);
        let tasks = self.tasks;
        self.rt.block_on(async move {
            for t in tasks {
                let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
            }
        });
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Pins this process's threads to `core` (`taskset -a -p`); best effort.
/// The cores this process may use, as read the first time: before
/// [`pin_self`], which narrows what `available_parallelism` reports to one.
/// (Read again after the first SFU's run, it said 1, so the second SFU of a
/// run, `rtclab sfu` after Janus, was started unpinned and shared the
/// generator's core.)
fn machine_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn pin_self(core: usize) {
    if let Some(taskset) = find_on_path("taskset") {
        let _ = Command::new(taskset)
            .args([
                "-a",
                "-p",
                "-c",
                &core.to_string(),
                &std::process::id().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The results of one SFU.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `janus` or `rtclab`.
    pub name: &'static str,
    /// The 1 × N steps.
    pub fan_out: Vec<Step>,
    /// The RSS with only the publisher connected.
    pub rss_base: u64,
    /// Join → first frame of every subscriber, ms.
    pub joins_ms: Vec<f64>,
    /// Rooms of four (participants and counts), if run.
    pub rooms: Option<Step>,
    /// Why the steps stopped.
    pub stopped: String,
    /// Packets per second one subscriber gets at the nominal rate (1 Mbit/s
    /// VP8 at 30 fps in the publisher's packets per frame, and 50 audio
    /// packets).
    pub nominal_pps: f64,
}

fn fig(name: &str, value: f64, unit: &'static str) -> Figure {
    Figure {
        name: name.to_string(),
        value,
        unit,
    }
}

fn log(line: &str) {
    eprintln!("speed sfu: {line}");
}

fn describe(s: &Step) -> String {
    format!(
        "{:>5} subs: sfu {:>5.1}% cpu, gen {:>5.1}%, sent {:.0} pkt/s, {:>8.0} pkt/s delivered ({:.0} video), {:>8.0} pkt/s per core, loss {:.2}%, {} silent, rss {:.1} MB{}{}",
        s.subscribers,
        s.sfu_util() * 100.0,
        s.gen_util() * 100.0,
        s.sent as f64 / s.wall_s,
        s.received as f64 / s.wall_s,
        s.video as f64 / s.wall_s,
        s.pps_per_core(),
        s.loss() * 100.0,
        s.silent,
        s.rss as f64 / 1e6,
        if s.no_first_frame > 0 {
            format!(", {} without a first frame", s.no_first_frame)
        } else {
            String::new()
        },
        if s.failed > 0 {
            format!(", {} failed", s.failed)
        } else {
            String::new()
        },
    )
}

/// Runs both scenarios against one SFU.
pub fn drive(
    sfu: &mut dyn SfuUnderTest,
    steps: &[usize],
    rooms: usize,
    window: Duration,
) -> Result<Report, String> {
    let pin = machine_cores() >= 2;
    sfu.start(pin.then_some(0))?;
    let mut report = Report {
        name: sfu.name(),
        ..Report::default()
    };
    let pid = sfu.pid();
    let result = (|| -> Result<(), String> {
        if pin {
            pin_self(1);
        }
        let Some(pid) = pid else {
            return Err(format!("{}: no process to measure", sfu.name()));
        };
        // 1 × N.
        let mut g = Generator::new()?;
        let room = sfu.create_room(1)?;
        let feed = g.publish(sfu, &room)?;
        std::thread::sleep(Duration::from_millis(500));
        report.rss_base = process_rss(pid).unwrap_or(0);
        report.stopped = "every step ran".into();
        for &n in steps {
            let mut new = Vec::new();
            while g.subscribers.len() < n {
                match g.subscribe(sfu, &room, std::slice::from_ref(&feed)) {
                    Ok(c) => new.push(c),
                    Err(e) => {
                        report.stopped =
                            format!("subscriber {} refused: {e}", g.subscribers.len() + 1);
                        break;
                    }
                }
            }
            let missing = g.wait_first_frames(&new);
            std::thread::sleep(Duration::from_secs(1));
            let mut step = g.measure(pid, window);
            step.no_first_frame = missing;
            log(&format!("{} 1×N {}", sfu.name(), describe(&step)));
            let healthy = step.healthy();
            let gen_busy = step.gen_util() >= CPU_LIMIT;
            report.fan_out.push(step);
            if g.subscribers.len() < n {
                break;
            }
            if !healthy {
                report.stopped = format!("the SFU's limit at {n} subscribers");
                break;
            }
            if gen_busy {
                report.stopped = format!("the generator's core is saturated at {n} subscribers");
                break;
            }
        }
        report.joins_ms = std::mem::take(&mut g.joins);
        if let Some(p) = g.publishers.first() {
            let frames = p.frames.load(Ordering::Relaxed).max(1) as f64;
            let per_frame = p.video_packets.load(Ordering::Relaxed) as f64 / frames;
            report.nominal_pps = per_frame * FPS as f64 + 1.0 / AUDIO_INTERVAL.as_secs_f64();
        }
        g.finish();
        sfu.end_sessions();
        // Rooms of four.
        if rooms > 0 {
            let mut g = Generator::new()?;
            let mut all = Vec::new();
            for _ in 0..rooms {
                let room = sfu.create_room(4)?;
                let mut feeds = Vec::new();
                for _ in 0..4 {
                    feeds.push(g.publish(sfu, &room)?);
                }
                for i in 0..4 {
                    let others: Vec<String> = feeds
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, f)| f.clone())
                        .collect();
                    all.push(g.subscribe(sfu, &room, &others)?);
                }
            }
            let missing = g.wait_first_frames(&all);
            std::thread::sleep(Duration::from_secs(1));
            let mut step = g.measure(pid, window);
            step.no_first_frame = missing;
            step.subscribers = rooms * 4;
            log(&format!("{} rooms of 4: {}", sfu.name(), describe(&step)));
            report.rooms = Some(step);
            g.finish();
        }
        Ok(())
    })();
    sfu.stop();
    result.map(|()| report)
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return f64::NAN;
    }
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let num: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if den == 0.0 { f64::NAN } else { num / den }
}

impl Report {
    /// The most loaded healthy 1 × N step (else the first).
    fn reference(&self) -> Option<&Step> {
        self.fan_out
            .iter()
            .filter(|s| s.healthy())
            .max_by_key(|s| s.subscribers)
            .or(self.fan_out.first())
    }

    /// The figures, `sfu.NAME.*`.
    pub fn figures(&self) -> Vec<Figure> {
        let p = |f: &str| format!("sfu.{}.{f}", self.name);
        let mut out = Vec::new();
        if let Some(s) = self.reference() {
            out.push(fig(&p("fwd_pps_per_core"), s.pps_per_core(), "pkt/s"));
            out.push(fig(&p("cpu_per_pkt_us"), 1e6 / s.pps_per_core(), "us"));
            // The SFU's packets per CPU second over what one subscriber
            // gets per second at the nominal rate: linear in N, as the
            // steps show, and not lowered when a loaded machine's
            // publisher falls behind its rate.
            out.push(fig(
                &p("subscribers_per_core_1mbps"),
                s.pps_per_core() / self.nominal_pps,
                "subscribers",
            ));
            out.push(fig(
                &p("measured_at_subscribers"),
                s.subscribers as f64,
                "subscribers",
            ));
            out.push(fig(&p("measured_at_loss_pct"), s.loss() * 100.0, "%"));
        }
        let healthy_max = self
            .fan_out
            .iter()
            .filter(|s| s.healthy())
            .map(|s| s.subscribers)
            .max()
            .unwrap_or(0);
        out.push(fig(
            &p("max_subscribers_without_loss"),
            healthy_max as f64,
            "subscribers",
        ));
        let mut points: Vec<(f64, f64)> = vec![(0.0, self.rss_base as f64)];
        points.extend(
            self.fan_out
                .iter()
                .map(|s| (s.subscribers as f64, s.rss as f64)),
        );
        out.push(fig(&p("bytes_per_subscriber"), slope(&points), "B"));
        out.push(fig(
            &p("join_first_frame_p50_ms"),
            percentile(&self.joins_ms, 0.5),
            "ms",
        ));
        out.push(fig(
            &p("join_first_frame_p95_ms"),
            percentile(&self.joins_ms, 0.95),
            "ms",
        ));
        if let Some(r) = &self.rooms {
            out.push(fig(
                &p("rooms4_participants"),
                r.subscribers as f64,
                "peers",
            ));
            out.push(fig(
                &p("rooms4_fwd_pps_per_core"),
                r.pps_per_core(),
                "pkt/s",
            ));
            out.push(fig(&p("rooms4_cpu_pct"), r.sfu_util() * 100.0, "%"));
            out.push(fig(&p("rooms4_loss_pct"), r.loss() * 100.0, "%"));
        }
        out
    }
}

/// `rtclab speed sfu`: the figures of every SFU it could run, and the
/// side-by-side table and ratios when there are two.
pub fn speed() -> Result<Vec<Figure>, String> {
    // Read while the process may still use every core.
    machine_cores();
    let o = OPTIONS.get().cloned().unwrap_or_default();
    let steps = if o.subscribers.is_empty() {
        STEPS.to_vec()
    } else {
        o.subscribers.clone()
    };
    let rooms = o.rooms.unwrap_or(10);
    let both = !o.janus && o.rtclab.is_none();
    let mut sfus: Vec<Box<dyn SfuUnderTest + Send>> = Vec::new();
    if o.janus || both {
        match Janus::find() {
            Ok(j) => sfus.push(Box::new(j)),
            Err(e) if o.janus => return Err(e),
            Err(e) => log(&format!("janus skipped: {e}")),
        }
    }
    let rtclab = o
        .rtclab
        .clone()
        .or_else(|| both.then(|| std::env::current_exe().ok()).flatten());
    if let Some(bin) = rtclab {
        let has_sfu = Command::new(&bin)
            .args(["sfu", "--help"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if has_sfu {
            sfus.push(Box::new(Whip::rtclab(bin)));
        } else if o.rtclab.is_some() {
            return Err(format!("{} has no `sfu` subcommand", bin.display()));
        } else {
            log(&format!(
                "rtclab skipped: {} has no `sfu` subcommand yet",
                bin.display()
            ));
        }
    }
    if sfus.is_empty() {
        return Err("no SFU to measure (install janus, or give --rtclab BIN)".into());
    }
    // On a thread of its own: the generator makes its own tokio runtime,
    // which cannot start inside the caller's.
    let reports = std::thread::spawn(move || -> Result<Vec<Report>, String> {
        let mut reports = Vec::new();
        for sfu in &mut sfus {
            reports.push(drive(sfu.as_mut(), &steps, rooms, WINDOW)?);
        }
        Ok(reports)
    })
    .join()
    .map_err(|_| "the load generator panicked".to_string())??;
    let mut figures = Vec::new();
    for r in &reports {
        log(&format!("{}: {}", r.name, r.stopped));
        figures.extend(r.figures());
    }
    if let [a, b] = &reports[..] {
        print_table(a, b);
        let get = |r: &Report, f: &str| {
            r.figures()
                .into_iter()
                .find(|x| x.name.ends_with(f))
                .map_or(f64::NAN, |x| x.value)
        };
        for f in ["fwd_pps_per_core", "subscribers_per_core_1mbps"] {
            figures.push(fig(
                &format!("sfu.{}_over_{}.{f}", b.name, a.name),
                get(b, f) / get(a, f),
                "x",
            ));
        }
    }
    Ok(figures)
}

fn print_table(a: &Report, b: &Report) {
    let fa = a.figures();
    let fb = b.figures();
    println!("{:<32} {:>14} {:>14}", "figure", a.name, b.name);
    for x in &fa {
        let short = x.name.trim_start_matches(&format!("sfu.{}.", a.name));
        let other = fb
            .iter()
            .find(|y| y.name.ends_with(&format!(".{short}")))
            .map_or(f64::NAN, |y| y.value);
        println!("{short:<32} {:>14.1} {:>14.1} {}", x.value, other, x.unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_and_chunked_responses() {
        let r = parse_response(
            b"HTTP/1.1 201 Created\r\nLocation: /whip/r/1\r\nContent-Length: 3\r\n\r\nv=0extra",
        )
        .expect("response");
        assert_eq!(r.status, 201);
        assert_eq!(r.header("LOCATION"), Some("/whip/r/1"));
        assert_eq!(r.body, b"v=0");
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc").is_err());
        assert!(parse_response(b"SIP/2.0 200 OK\r\n\r\n").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }

    /// A WHIP/WHEP resource server in one thread per request: each POST
    /// gets a fresh `LivePeer` that answers (its candidates in the
    /// answer); `/whip/…` reports the first frame it receives, `/whep/…`
    /// sends frames once connected.
    fn whip_answerer(listener: TcpListener, got: std::sync::mpsc::Sender<String>) {
        for (k, stream) in listener.incoming().flatten().enumerate() {
            let got = got.clone();
            std::thread::spawn(move || serve_one(stream, k, got));
        }
    }

    fn serve_one(mut stream: TcpStream, k: usize, got: std::sync::mpsc::Sender<String>) {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let (head, body) = loop {
            let n = stream.read(&mut buf).expect("read");
            raw.extend_from_slice(&buf[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if raw.len() >= end + 4 + len {
                    break (head, raw[end + 4..end + 4 + len].to_vec());
                }
            }
            assert!(n > 0, "request cut short");
        };
        assert!(head.contains("Content-Type: application/sdp"), "{head}");
        let path = head.split(' ').nth(1).unwrap_or_default().to_string();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut live = rt
            .block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
            .expect("bind");
        let whep = path.starts_with("/whep/");
        let track = whep.then(|| live.add_track(MediaKind::Video).expect("track"));
        let offer = String::from_utf8(body).expect("utf-8");
        let mut peer = GenPeer::new(live);
        let answer = peer.answer(&offer).expect("answer");
        let answer = Whip::with_candidates(&answer, &peer.candidates());
        let reply = format!(
            "HTTP/1.1 201 Created\r\nLocation: /resource/{k}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        stream.write_all(reply.as_bytes()).expect("reply");
        drop(stream);
        let mut live = peer.live;
        rt.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            let mut connected = false;
            let mut n = 0u32;
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    tokio::select! {
                        _ = tick.tick(), if connected && whep => {
                            let mut f = Vec::new();
                            vp8_frame(&mut f, 3000, n % 10 == 0, n);
                            if let Some(t) = track {
                                let _ = live.send_frame(t, n * 3000, &f);
                            }
                            n += 1;
                        }
                        e = live.next_event() => match e.expect("io") {
                            peer::Event::ConnectionState(PeerConnectionState::Connected) => connected = true,
                            peer::Event::Frame { .. } if !whep => {
                                let _ = got.send(path.clone());
                                return;
                            }
                            _ => {}
                        },
                    }
                }
            })
            .await;
        });
    }

    /// The WHIP and WHEP client against an in-process answerer: a
    /// publisher's frames reach the resource (WHIP), and the resource's
    /// frames reach a subscriber that offered receive-only (WHEP).
    #[test]
    fn whip_and_whep_clients_exchange_media_with_an_answerer() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || whip_answerer(listener, tx));
        let mut whip = Whip::at(addr);
        let room = whip.create_room(1).expect("room");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        let bind = || {
            rt.block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
                .expect("bind")
        };
        // WHIP: publish.
        let mut live = bind();
        let video = live.add_track(MediaKind::Video).expect("track");
        let mut publisher = GenPeer::new(live);
        let leg = whip.publish(&room, &mut publisher).expect("WHIP");
        assert_eq!(leg.resource, "/resource/0");
        let mut p = publisher.live;
        // WHEP: play.
        let mut live = bind();
        receive_only(&mut live).expect("recvonly");
        let mut subscriber = GenPeer::new(live);
        whip.subscribe(&room, &[], &mut subscriber).expect("WHEP");
        assert!(
            subscriber.remote().contains("a=sendonly"),
            "{}",
            subscriber.remote()
        );
        let mut s = subscriber.live;
        let done = rt.block_on(async {
            let mut tick = tokio::time::interval(Duration::from_millis(33));
            let mut n = 0u32;
            let mut published = false;
            let mut played = false;
            tokio::time::timeout(Duration::from_secs(10), async {
                while !(published && played) {
                    tokio::select! {
                        _ = tick.tick() => {
                            let mut f = Vec::new();
                            vp8_frame(&mut f, 3000, n % 10 == 0, n);
                            let _ = p.send_frame(video, n * 3000, &f);
                            n += 1;
                            published |= rx.try_recv().is_ok_and(|path| path.starts_with("/whip/"));
                        }
                        e = p.next_event() => { e.expect("io"); }
                        e = s.next_event() => {
                            if let peer::Event::Frame { .. } = e.expect("io") {
                                played = true;
                            }
                        }
                    }
                }
            })
            .await
        });
        assert!(done.is_ok(), "WHIP or WHEP media did not flow");
    }

    #[test]
    fn vp8_frames_carry_a_real_frame_tag() {
        let mut f = Vec::new();
        vp8_frame(&mut f, 4166, true, 0);
        assert_eq!(f.len(), 4166);
        assert_eq!(f[0] & 1, 0, "keyframe bit");
        assert_eq!(&f[3..6], &[0x9d, 0x01, 0x2a]);
        vp8_frame(&mut f, 4166, false, 1);
        assert_eq!(f[0] & 1, 1);
    }

    #[test]
    fn offers_carry_candidates_in_every_media_section() {
        let offer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n";
        let c = vec!["candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".to_string()];
        let out = Whip::with_candidates(offer, &c);
        assert_eq!(out.matches("a=candidate:1 1 udp").count(), 2);
        assert_eq!(out.matches("a=end-of-candidates").count(), 2);
        assert_eq!(
            media_mids(&out),
            vec![
                ("0".into(), MediaKind::Audio),
                ("1".into(), MediaKind::Video)
            ]
        );
    }

    #[test]
    fn counts_holes_and_the_first_keyframe() {
        let mut streams = Vec::new();
        let c = SubscriberCounters::default();
        let pkt = |seq: u16, marker: bool, key: bool| {
            let mut payload = vec![0x10u8]; // S=1, PID=0
            payload.push(if key { 0x00 } else { 0x01 });
            payload.extend_from_slice(&[0; 20]);
            let mut out = Vec::new();
            crate::rtp::emit_rtp_packet(
                crate::rtp::HeaderFields {
                    marker,
                    payload_type: 96,
                    sequence_number: seq,
                    timestamp: 0,
                    ssrc: 7,
                },
                &[],
                false,
                &payload,
                &mut out,
            )
            .expect("rtp");
            out
        };
        // A delta frame, then a keyframe with a hole in it, then a whole one.
        let want =
            |s: &mut Vec<SeqState>, p: Vec<u8>| count_packet(s, &c, MediaKind::Video, &p, true);
        assert!(!want(&mut streams, pkt(10, true, false)));
        assert!(!want(&mut streams, pkt(11, false, true)));
        assert!(!want(&mut streams, pkt(13, true, false)));
        assert_eq!(c.holes.load(Ordering::Relaxed), 1);
        assert!(!want(&mut streams, pkt(12, false, false)), "late fill");
        assert_eq!(c.holes.load(Ordering::Relaxed), 0);
        assert!(!want(&mut streams, pkt(14, false, true)));
        assert!(want(&mut streams, pkt(15, true, false)));
        assert_eq!(c.video.load(Ordering::Relaxed), 6);
    }
}
