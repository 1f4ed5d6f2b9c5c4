//! DESIGN §7's tracing: with `RUST_LOG=rtclab::sctp=trace` (and the same
//! for srtp, rtp, sdp) a simulated call's log reads like `rtclab xray`:
//! every SCTP chunk decoded in and out inside the association's span, the
//! DCEP OPEN's DATA chunk with its PPID, SRTP per packet, RTP headers, the
//! SDP parsed. (The allocation tests — no_alloc, sctp_alloc, rtp_no_alloc,
//! srtp_alloc — run the same paths with tracing off.)

#[path = "common/xray_call.rs"]
mod xray_call;

use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Log {
    type Writer = Log;
    fn make_writer(&'a self) -> Log {
        self.clone()
    }
}

#[test]
fn rust_log_trace_reads_like_the_xray() {
    let log = Log::default();
    let filter = tracing_subscriber::EnvFilter::new(
        "rtclab::sctp=trace,rtclab::srtp=trace,rtclab::rtp=trace,rtclab::sdp=trace",
    );
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        xray_call::capture();
    });
    let text = String::from_utf8(log.0.lock().unwrap().clone()).expect("UTF-8");
    // `RTCLAB_SHOW_TRACE=1 cargo test --test tracing_layers -- --nocapture`
    // prints the call's SCTP lines, to read.
    if std::env::var_os("RTCLAB_SHOW_TRACE").is_some() {
        for l in text.lines().filter(|l| l.contains("sctp")).take(40) {
            eprintln!("{l}");
        }
    }
    for needle in [
        // SCTP: the handshake chunks, inside the association's span.
        "sctp{tag=",
        "direction=\"out\" vtag=0 chunk=\"INIT\" initiate_tag=",
        "chunk=\"INIT ACK\"",
        "chunk=\"COOKIE ECHO\" bytes=",
        "chunk=CookieAck",
        "SCTP association established",
        // DCEP's OPEN (PPID 50) and a text message (PPID 51) as DATA.
        "ppid=50",
        "ppid=51",
        "chunk=Sack(",
        // SRTP and RTP per packet, SDP at its entry points.
        "SRTP protect",
        "SRTP unprotect",
        "RTP sent",
        "RTP received",
        "SDP parsed",
        "SDP to parse",
    ] {
        assert!(text.contains(needle), "{needle:?} not in the log:\n{text}");
    }
}
