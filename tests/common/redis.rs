//! A `redis-server` of a test's own (Debian's), on a free loopback port
//! in a temporary directory, with no persistence: for the bus tests and
//! the SFU nodes that share rooms over it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtclab::bus::{Bus, RedisBus};

use super::Peer;

/// A `redis-server` of this test's own.
pub struct Redis {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    proc: Option<Peer>,
}

impl Redis {
    /// Starts one, or `None` (a loud skip; a failure under
    /// `RTCLAB_REQUIRE_INTEROP=1`) when Redis is not installed.
    pub fn start() -> Option<Redis> {
        let bin = super::require_binary("redis-server", "redis-server")?;
        let port = free_tcp_port();
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
        let p = Peer::start("redis-server", &self.bin, &args);
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

    /// A bus client of this server (inside a tokio runtime).
    pub fn bus(&self) -> Arc<dyn Bus> {
        Arc::new(RedisBus::open(&self.url()).expect("bus"))
    }

    /// `rtclab SUBCOMMAND --listen 127.0.0.1:PORT --bus URL --node NODE
    /// EXTRA…` in a process of its own (so that a test can SIGKILL it),
    /// once it says it is up: its address and the process (killed when
    /// dropped).
    pub fn rtclab_node(&self, subcommand: &str, node: &str, extra: &[&str]) -> (SocketAddr, Peer) {
        let listen = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
        let args: Vec<String> = [subcommand, "--listen", &listen.to_string()]
            .iter()
            .chain(&["--bus", &self.url(), "--node", node])
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_rtclab"));
        let p = Peer::start(&format!("rtclab-{subcommand}-{node}"), &bin, &args);
        let up = format!("rtclab {subcommand} on");
        assert!(
            p.wait_for_output(&up, Duration::from_secs(10)),
            "{}",
            p.output()
        );
        (listen, p)
    }
}

/// A loopback TCP port free a moment ago.
fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
