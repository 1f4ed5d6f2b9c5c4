//! `--pcap FILE` for the chapter examples: the simulator's capture of one
//! host, written as pcapng with the DTLS key log inside, so Wireshark or
//! `rtclab xray FILE` shows the example's packets decrypted:
//!
//! ```text
//! cargo run --example 05_peer_connection -- --pcap ch05.pcapng
//! cargo run -- xray ch05.pcapng --layer dtls,sctp,dcep
//! ```
//!
//! The examples call [`start`] on their simulator and [`save`] at the end;
//! both do nothing unless `--pcap FILE` is on the command line (so the tests
//! that run the examples in-process are unaffected), or a test that runs an
//! example in-process asked for its capture with [`capture_to`].
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::PathBuf;

use rtclab::peer::PeerConnection;
use rtclab::runtime::live;
use rtclab::sim::{CaptureRecord, HostId, Sim};

thread_local! {
    /// The capture file a test asked for on this thread (see [`capture_to`]).
    static CAPTURE_TO: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Makes the examples run on this thread write their capture to `file`,
/// as `--pcap FILE` would (`None`: back to the command line). For tests
/// that call an example's `run` in-process: the book's x-ray ladders are
/// drawn from these captures and checked in `tests/xray.rs`. A
/// thread-local, so tests running side by side do not see each other's.
pub fn capture_to(file: Option<PathBuf>) {
    CAPTURE_TO.with(|c| *c.borrow_mut() = file);
}

/// The FILE of `--pcap FILE` on the command line (or of [`capture_to`]).
pub fn requested() -> Option<PathBuf> {
    if let Some(file) = CAPTURE_TO.with(|c| c.borrow().clone()) {
        return Some(file);
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--pcap" {
            return args.next().map(PathBuf::from);
        }
        if let Some(f) = a.strip_prefix("--pcap=") {
            return Some(PathBuf::from(f));
        }
    }
    None
}

/// Turns the simulator's capture on (with room for a long example) when
/// `--pcap` was asked for.
pub fn start(sim: &mut Sim) {
    if requested().is_some() {
        sim.set_capture(true);
        sim.set_capture_limit(1_000_000);
    }
}

/// The key log line of a PeerConnection host (call it while the
/// connection is up: a closed one has forgotten its secrets).
pub fn key_log(sim: &Sim, host: HostId) -> Vec<String> {
    sim.try_machine::<PeerConnection>(host)
        .and_then(live::key_log_line)
        .into_iter()
        .collect()
}

/// Writes what the simulator captured of `host` (with `key_log`) to the
/// `--pcap` file, and says so on stderr.
pub fn save(sim: &mut Sim, host: HostId, key_log: &[String]) -> std::io::Result<()> {
    if requested().is_none() {
        return Ok(());
    }
    let records = sim.drain_capture();
    save_records(&records, host, key_log)
}

/// As [`save`], for an example that drained the capture records itself.
pub fn save_records(
    records: &[CaptureRecord],
    host: HostId,
    key_log: &[String],
) -> std::io::Result<()> {
    let Some(path) = requested() else {
        return Ok(());
    };
    let bytes = rtclab::capture::sim_pcapng(records, host, key_log, &[]);
    std::fs::write(&path, bytes)?;
    eprintln!(
        "capture written to {} (open it with `rtclab xray` or Wireshark)",
        path.display()
    );
    Ok(())
}

/// A capture in memory, timestamped by the wall clock.
fn in_memory() -> rtclab::capture::Capture {
    let epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rtclab::capture::Capture::in_memory(std::time::Instant::now(), epoch)
}

/// A capture of datagrams an example moves by hand (no simulator): one
/// side's view, in memory until [`Hand::save`]; nothing unless `--pcap
/// FILE` is on the command line.
pub struct Hand {
    capture: Option<rtclab::capture::Capture>,
    local: std::net::SocketAddr,
}

impl Hand {
    /// The view of the side at `local`.
    pub fn new(local: std::net::SocketAddr) -> Hand {
        Hand {
            capture: requested().map(|_| in_memory()),
            local,
        }
    }

    /// A datagram `local` sent to `remote`.
    pub fn sent(&mut self, now: std::time::Instant, remote: std::net::SocketAddr, data: &[u8]) {
        if let Some(c) = &mut self.capture {
            c.datagram(
                now,
                rtclab::capture::Direction::Outbound,
                self.local,
                remote,
                data,
            );
        }
    }

    /// A datagram `local` received from `remote`.
    pub fn received(&mut self, now: std::time::Instant, remote: std::net::SocketAddr, data: &[u8]) {
        if let Some(c) = &mut self.capture {
            c.datagram(
                now,
                rtclab::capture::Direction::Inbound,
                self.local,
                remote,
                data,
            );
        }
    }

    /// A TLS key log line (DTLS's secrets), if there is one.
    pub fn key_log(&mut self, line: Option<String>) {
        if let (Some(c), Some(l)) = (&mut self.capture, line) {
            c.key_log_line(&l);
        }
    }

    /// Writes the capture to the `--pcap` file.
    pub fn save(self) -> std::io::Result<()> {
        let (Some(mut c), Some(path)) = (self.capture, requested()) else {
            return Ok(());
        };
        std::fs::write(&path, c.take_bytes())?;
        eprintln!(
            "capture written to {} (open it with `rtclab xray` or Wireshark)",
            path.display()
        );
        Ok(())
    }
}

/// The capture of the TCP connections an example opens with
/// [`tcp_connect`] (its signaling), while `--pcap` asked for one.
static TCP: std::sync::Mutex<Option<rtclab::capture::Capture>> = std::sync::Mutex::new(None);

/// Connects to `addr` (`HOST:PORT`) over TCP; with `--pcap`, every byte
/// both ways is captured (HTTP, WebSocket) until [`save_tcp`].
pub async fn tcp_connect(addr: &str) -> std::io::Result<Recorded<tokio::net::TcpStream>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let flow = match requested() {
        Some(_) => {
            let (local, remote) = (stream.local_addr()?, stream.peer_addr()?);
            let mut tcp = TCP.lock().map_err(|_| std::io::Error::other("poisoned"))?;
            let c = tcp.get_or_insert_with(in_memory);
            Some(c.tcp_open(std::time::Instant::now(), local, remote))
        }
        None => None,
    };
    Ok(Recorded {
        inner: stream,
        flow,
        ended: false,
    })
}

/// Writes what [`tcp_connect`]'s connections carried to the `--pcap` file.
pub fn save_tcp() -> std::io::Result<()> {
    let Some(path) = requested() else {
        return Ok(());
    };
    let taken = TCP.lock().ok().and_then(|mut t| t.take());
    let Some(mut c) = taken else {
        return Ok(());
    };
    std::fs::write(&path, c.take_bytes())?;
    eprintln!(
        "capture written to {} (open it with `rtclab xray` or Wireshark)",
        path.display()
    );
    Ok(())
}

/// A TCP stream whose bytes go into the example's capture (see
/// [`tcp_connect`]).
pub struct Recorded<S> {
    inner: S,
    flow: Option<rtclab::capture::TcpFlow>,
    /// The other side's FIN is in the capture.
    ended: bool,
}

impl<S> Recorded<S> {
    fn record(&mut self, direction: rtclab::capture::Direction, data: Option<&[u8]>) {
        let (Some(flow), Ok(mut tcp)) = (self.flow.as_mut(), TCP.lock()) else {
            return;
        };
        let Some(c) = tcp.as_mut() else { return };
        let now = std::time::Instant::now();
        match data {
            Some(d) => c.tcp_data(now, flow, direction, d),
            None => c.tcp_close(now, flow, direction),
        }
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Recorded<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let (before, room) = (buf.filled().len(), buf.remaining() > 0);
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = r {
            let got = buf.filled()[before..].to_vec();
            if !got.is_empty() {
                self.record(rtclab::capture::Direction::Inbound, Some(&got));
            } else if room && !self.ended {
                // Nothing read with room to read: the other side's FIN.
                self.ended = true;
                self.record(rtclab::capture::Direction::Inbound, None);
            }
        }
        r
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Recorded<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.record(rtclab::capture::Direction::Outbound, buf.get(..n));
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_shutdown(cx);
        if let std::task::Poll::Ready(Ok(())) = r {
            self.record(rtclab::capture::Direction::Outbound, None);
        }
        r
    }
}
