//! Helpers shared by the interop tests: finding (or loudly skipping) a peer
//! binary, starting it with its output kept, free ports, and cleanup.
#![allow(dead_code)]

pub mod browser;
pub mod demo;
mod ports;
pub mod redis;
pub mod rtc;

#[allow(unused_imports)]
pub use ports::free_udp_port;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Whether interop is mandatory (CI sets `RTCLAB_REQUIRE_INTEROP=1`).
pub fn interop_required() -> bool {
    std::env::var("RTCLAB_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// The path of `name` on PATH, or `None` after a loud skip message. With
/// `RTCLAB_REQUIRE_INTEROP=1` a missing binary fails the test instead.
pub fn require_binary(name: &str, package: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            !interop_required(),
            "{name} is missing and RTCLAB_REQUIRE_INTEROP=1: install the Debian package `{package}`"
        );
        eprintln!(
            "\n*** SKIPPED: {name} not found (Debian package `{package}`); this interop test did not run ***\n"
        );
    }
    found
}

/// A child process whose output goes to a log file; killed when dropped.
pub struct Peer {
    child: Child,
    log: PathBuf,
    name: String,
    stdin: Option<ChildStdin>,
}

impl Peer {
    /// Starts `program args…` with stdout and stderr into a temporary log.
    pub fn start(name: &str, program: &PathBuf, args: &[String]) -> Peer {
        Self::start_in(name, program, args, None, &[], false)
    }

    /// Starts `program args…` in `dir` (if given) with extra environment
    /// variables and, if `piped_stdin`, a stdin the test writes with
    /// [`Peer::send_line`] (`openssl s_server` exits when its stdin closes).
    pub fn start_in(
        name: &str,
        program: &PathBuf,
        args: &[String],
        dir: Option<&std::path::Path>,
        env: &[(&str, &str)],
        piped_stdin: bool,
    ) -> Peer {
        let log = std::env::temp_dir().join(format!(
            "rtclab-{name}-{}-{}.log",
            std::process::id(),
            rand_suffix()
        ));
        let out = std::fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(if piped_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out)
            .stderr(err);
        if let Some(d) = dir {
            command.current_dir(d);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdin = child.stdin.take();
        Peer {
            child,
            log,
            name: name.to_string(),
            stdin,
        }
    }

    /// Writes `line` and a newline to the peer's stdin (started with
    /// `piped_stdin`).
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("peer started with piped stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("writing to {}'s stdin: {e}", self.name));
    }

    /// Closes the peer's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits until the output contains `text`; false after `limit`.
    pub fn wait_for_output(&self, text: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.output().contains(text) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.output().contains(text)
    }

    /// Waits for the peer to exit; `None` if it still runs after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the peer now (dropping does the same, later).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id (to send it a signal).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// What the peer printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- output of {} ----\n{}\n---- end ----",
                self.name,
                self.output()
            );
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `GET path` over HTTP/1.1 (the connection closed after it): the status
/// line and headers, and the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut all = Vec::new();
    s.read_to_end(&mut all).await.expect("read");
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&all[..end]).into_owned();
    (head, all[end + 4..].to_vec())
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// Waits until a STUN server answers a Binding request at `addr`.
pub fn wait_for_stun(addr: SocketAddr, within: Duration) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(Duration::from_millis(50))).ok();
    let req = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        let _ = s.send_to(&req, addr);
        if let Ok((n, _)) = s.recv_from(&mut buf) {
            if n >= 20 && buf[0] == 0x01 && buf[1] == 0x01 {
                return true;
            }
        }
    }
    false
}

/// Runs a command with a bounded time and returns (success, combined output).
pub fn run_bounded(program: &PathBuf, args: &[String], limit: Duration) -> (bool, String) {
    let log = std::env::temp_dir().join(format!(
        "rtclab-run-{}-{}.log",
        std::process::id(),
        rand_suffix()
    ));
    let out = std::fs::File::create(&log).expect("create log");
    let err = out.try_clone().expect("clone log");
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    (status.is_some_and(|s| s.success()), text)
}

/// Starts coturn's `turnserver` on 127.0.0.1:`port` with what every test
/// needs (no configuration file, no CLI, no TLS/DTLS, logs on stdout, a pid
/// file of its own) plus `extra`, and waits until it answers a Binding
/// request. `None`, after a loud skip, when coturn is not installed.
pub fn start_coturn(port: u16, extra: &[&str]) -> Option<Peer> {
    let bin = require_binary("turnserver", "coturn")?;
    let pid = std::env::temp_dir().join(format!(
        "rtclab-coturn-{port}-{}-{}.pid",
        std::process::id(),
        rand_suffix()
    ));
    let mut args: Vec<String> = [
        "-n",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--listening-ip",
        "127.0.0.1",
        "--listening-port",
        &port.to_string(),
        "--log-file",
        "stdout",
        "--simple-log",
        "--pidfile",
        pid.to_str().expect("utf-8 temp dir"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let peer = Peer::start("coturn", &bin, &args);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        wait_for_stun(addr, Duration::from_secs(10)),
        "coturn did not answer on {addr}:\n{}",
        peer.output()
    );
    Some(peer)
}
