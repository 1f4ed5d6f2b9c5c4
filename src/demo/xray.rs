//! The demo page's x-ray panel, the Rust side: each session's capture kept
//! in memory ([`SharedBuffer`]), its live ladder ([`Capture::set_live`])
//! sent to the page as `xray` messages, and `GET /demo/capture/TOKEN.pcapng`
//! handing over the capture so far.
//!
//! The `xray` messages are [`crate::capture::live::messages`]'s; the page
//! draws them with the panel the SFU's page shares
//! ([`crate::capture::live::PANEL_SCRIPT`]).
//!
//! The token is 128 random bits, told only to the session's page over its
//! signaling: the capture holds the call's DTLS secrets and decrypted
//! media, so only the page that made the call can fetch it. A session's
//! capture is forgotten when its session ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

use crate::capture::xray::Line;
use crate::capture::{Capture, SharedBuffer, Tee};

/// The captures being served, by token.
#[derive(Clone, Default, Debug)]
pub(super) struct Captures(Arc<Mutex<HashMap<String, SharedBuffer>>>);

/// The routes: `GET /demo/capture/TOKEN.pcapng`.
pub(super) fn routes(captures: Captures) -> Router {
    Router::new()
        .route("/demo/capture/{file}", get(download))
        .with_state(captures)
}

async fn download(State(captures): State<Captures>, Path(file): Path<String>) -> Response {
    let token = file.strip_suffix(".pcapng").unwrap_or(&file);
    let buffer = captures.0.lock().ok().and_then(|m| m.get(token).cloned());
    let Some(buffer) = buffer else {
        return (StatusCode::NOT_FOUND, "no such capture (the call ended?)\n").into_response();
    };
    let (bytes, _) = buffer.snapshot();
    (
        [
            (header::CONTENT_TYPE, "application/x-pcapng"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"rtclab-demo.pcapng\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response()
}

/// One session's capture, served while it lives.
#[derive(Debug)]
pub(super) struct Recording {
    captures: Captures,
    token: String,
    buffer: SharedBuffer,
}

impl Recording {
    /// A new capture of at most `limit` bytes, registered under a fresh
    /// token.
    pub(super) fn new(captures: &Captures, limit: usize) -> Recording {
        let token = format!("{:032x}", rand::random::<u128>());
        let buffer = SharedBuffer::new(limit);
        if let Ok(mut m) = captures.0.lock() {
            m.insert(token.clone(), buffer.clone());
        }
        Recording {
            captures: captures.clone(),
            token,
            buffer,
        }
    }

    /// The download's path.
    pub(super) fn url(&self) -> String {
        format!("/demo/capture/{}.pcapng", self.token)
    }

    /// Whether the limit cut the capture.
    pub(super) fn truncated(&self) -> bool {
        self.buffer.snapshot().1
    }

    /// The sink: into memory, and into `file` too (`--pcap`), decoding
    /// live.
    pub(super) fn capture(&self, file: Option<std::fs::File>) -> Capture {
        let mut c = match file {
            Some(f) => Capture::new(Tee(self.buffer.clone(), f)),
            None => Capture::new(self.buffer.clone()),
        };
        c.set_live(Some(crate::capture::live::Config::default()));
        c
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if let Ok(mut m) = self.captures.0.lock() {
            m.remove(&self.token);
        }
    }
}

/// `lines` as `xray` messages for the session's page (see
/// [`crate::capture::live::messages`]).
pub(super) fn messages(recording: &Recording, lines: &[Line]) -> Vec<Value> {
    crate::capture::live::messages(&recording.url(), recording.truncated(), lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::live::MAX_MESSAGE;
    use crate::capture::pcapng::Direction;
    use crate::capture::xray::Layer;
    use std::time::Duration;

    #[test]
    fn messages_stay_small_and_tokens_are_forgotten() {
        let captures = Captures::default();
        let r = Recording::new(&captures, 1000);
        assert!(r.url().starts_with("/demo/capture/") && r.url().ends_with(".pcapng"));
        let a = "192.0.2.1:5000".parse().unwrap();
        let line = Line {
            time: Duration::from_millis(1500),
            packet: 3,
            source: a,
            destination: a,
            plaintext: false,
            direction: Some(Direction::Outbound),
            layer: Layer::Dtls,
            text: "epoch 0 seq 0 Handshake: ClientHello".into(),
            fields: "x".repeat(2000),
        };
        let lines = vec![line; 50];
        let m = messages(&r, &lines);
        assert!(m.len() >= 3, "{}", m.len());
        assert!(m.iter().all(|v| v.to_string().len() <= MAX_MESSAGE + 4096));
        let n: usize = m.iter().map(|v| v["lines"].as_array().unwrap().len()).sum();
        assert_eq!(n, 50);
        assert_eq!(m[0]["lines"][0]["dir"], "out");
        assert_eq!(m[0]["lines"][0]["t"], 1.5);
        assert_eq!(captures.0.lock().unwrap().len(), 1);
        drop(r);
        assert!(captures.0.lock().unwrap().is_empty());
    }
}
