//! A `redis-server` of a test's own (Debian's), on a free loopback port
//! in a temporary directory, with no persistence: for the bus tests and
//! the SFU nodes that share rooms over it.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.proc = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
