//! TCP in the x-ray: the signaling beside the media (chapter 7's WebSocket
//! server, a capture of `07_signaling -- --pcap`). Each direction of a
//! connection is reassembled in order (by sequence number, RFC 9293 §3.4;
//! what arrives out of order or twice is named, not reassembled) and read
//! as HTTP/1.1 heads until a `101 Switching Protocols`, then as WebSocket
//! frames (RFC 6455 §5.2: opcode, mask, payload length; a client's frames
//! are unmasked with their key, §5.3), each frame one line, its text shown
//! as it is.
//!
//! Bounded: at most 64 connections' directions are followed (the oldest
//! forgotten first), and at most 256 KiB waits per direction for the rest
//! of a frame (beyond: skipped, and said so).

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::capture::pcapng::Tcp;

/// Most directions followed.
const MAX_STREAMS: usize = 64;
/// Most bytes waiting for the rest of a head or a frame.
const MAX_PENDING: usize = 256 * 1024;
/// Most characters of a text frame shown.
const MAX_TEXT: usize = 400;

/// One direction of a connection.
#[derive(Debug, Default)]
struct Stream {
    /// The next sequence number expected (after the SYN).
    next: Option<u32>,
    pending: Vec<u8>,
    /// HTTP until the upgrade, WebSocket frames after.
    websocket: bool,
}

/// The TCP connections of a capture, read as HTTP and WebSocket.
#[derive(Debug, Default)]
pub(super) struct Streams {
    streams: HashMap<(SocketAddr, SocketAddr), Stream>,
    order: VecDeque<(SocketAddr, SocketAddr)>,
}

impl Streams {
    /// The lines of one segment.
    pub(super) fn segment(&mut self, s: &Tcp<'_>, out: &mut Vec<String>) {
        let key = (s.source, s.destination);
        if !self.streams.contains_key(&key) {
            if self.streams.len() >= MAX_STREAMS
                && let Some(old) = self.order.pop_front()
            {
                self.streams.remove(&old);
            }
            self.order.push_back(key);
        }
        let st = self.streams.entry(key).or_default();
        let flags = flag_names(s.flags);
        let mut upgraded = false;
        if s.flags & 0x02 != 0 {
            // SYN: the data starts one after its sequence number. A new
            // connection from the same port starts over.
            *st = Stream {
                next: Some(s.seq.wrapping_add(1)),
                ..Stream::default()
            };
            out.push(format!("{flags} seq {}", s.seq));
            return;
        }
        if !s.payload.is_empty() {
            match st.next {
                Some(n) if n != s.seq => {
                    out.push(format!(
                        "{flags} seq {} {} bytes (out of order or repeated: not reassembled)",
                        s.seq,
                        s.payload.len()
                    ));
                }
                _ => {
                    st.next = Some(s.seq.wrapping_add(s.payload.len() as u32));
                    if st.pending.len() + s.payload.len() > MAX_PENDING {
                        out.push(format!(
                            "{} bytes skipped (a frame larger than the x-ray follows)",
                            st.pending.len() + s.payload.len()
                        ));
                        st.pending.clear();
                    } else {
                        st.pending.extend_from_slice(s.payload);
                        upgraded = read(st, out);
                    }
                }
            }
        }
        if s.flags & 0x05 != 0 {
            // FIN or RST: this direction is over.
            if s.flags & 0x01 != 0 {
                st.next = st.next.map(|n| n.wrapping_add(1));
            }
            out.push(format!("{flags} seq {}", s.seq));
        }
        if upgraded {
            // Both directions speak WebSocket after the 101.
            let back = (s.destination, s.source);
            if let Some(b) = self.streams.get_mut(&back) {
                b.websocket = true;
            }
        }
    }
}

fn flag_names(flags: u8) -> String {
    let names = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
    ];
    let v: Vec<&str> = names
        .iter()
        .filter(|(b, _)| flags & b != 0)
        .map(|(_, n)| *n)
        .collect();
    v.join(", ")
}

/// Reads what is complete in `st.pending`; true if an HTTP `101` head
/// upgraded the connection.
fn read(st: &mut Stream, out: &mut Vec<String>) -> bool {
    let mut upgraded = false;
    loop {
        if !st.websocket {
            let Some(end) = st.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                return upgraded;
            };
            let head = String::from_utf8_lossy(&st.pending[..end]).into_owned();
            st.pending.drain(..end + 4);
            let first = head.lines().next().unwrap_or("").to_string();
            let upgrade = head.lines().any(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with("upgrade:") && l.contains("websocket")
            });
            let switching = first.starts_with("HTTP/1.1 101");
            out.push(format!(
                "HTTP {first}{}",
                if upgrade { " (Upgrade: websocket)" } else { "" }
            ));
            if switching {
                st.websocket = true;
                upgraded = true;
            } else if first.starts_with("GET ") && upgrade {
                // The client's frames follow its request at once.
                st.websocket = true;
            }
            continue;
        }
        match frame(&st.pending) {
            Some((text, used)) => {
                out.push(text);
                st.pending.drain(..used);
            }
            None => return upgraded,
        }
    }
}

/// One WebSocket frame at the start of `b` (RFC 6455 §5.2): its line and
/// its length, or `None` if it is not all there yet.
fn frame(b: &[u8]) -> Option<(String, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (u64::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?])), 4),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 10),
        n => (u64::from(n), 2),
    };
    let key: Option<[u8; 4]> = if masked {
        let k = b.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(k)
    } else {
        None
    };
    let len = usize::try_from(len).ok()?;
    let mut payload = b.get(at..at.checked_add(len)?)?.to_vec();
    if let Some(k) = key {
        // §5.3: octet i is XORed with key octet i mod 4.
        for (i, x) in payload.iter_mut().enumerate() {
            *x ^= k[i % 4];
        }
    }
    let name = match opcode {
        0 => "continuation",
        1 => "text",
        2 => "binary",
        8 => "close",
        9 => "ping",
        10 => "pong",
        _ => "reserved opcode",
    };
    let mut line = format!("WebSocket {name}");
    if !fin {
        line.push_str(" (not final)");
    }
    if masked {
        line.push_str(" masked");
    }
    match opcode {
        1 => {
            let t = String::from_utf8_lossy(&payload);
            let shown: String = t.chars().take(MAX_TEXT).collect();
            let more = if shown.len() < t.len() { "…" } else { "" };
            let _ = write!(line, " {shown}{more}");
        }
        8 if payload.len() >= 2 => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let _ = write!(line, " code {code}");
        }
        _ => {
            let _ = write!(line, " {} bytes", payload.len());
        }
    }
    Some((line, at + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg<'a>(from: &str, to: &str, seq: u32, flags: u8, payload: &'a [u8]) -> Tcp<'a> {
        Tcp {
            source: from.parse().unwrap(),
            destination: to.parse().unwrap(),
            seq,
            ack: 0,
            flags,
            payload,
        }
    }

    #[test]
    fn an_upgrade_then_frames_split_across_segments() {
        let (c, s) = ("127.0.0.1:40000", "127.0.0.1:8080");
        let mut streams = Streams::default();
        let mut out = Vec::new();
        streams.segment(&seg(c, s, 99, 0x02, b""), &mut out);
        streams.segment(&seg(s, c, 499, 0x12, b""), &mut out);
        let get = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n";
        streams.segment(&seg(c, s, 100, 0x18, get), &mut out);
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        streams.segment(&seg(s, c, 500, 0x18, ok), &mut out);
        // A masked "hi" from the client, in two segments.
        let key = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x82];
        f.extend_from_slice(&key);
        f.extend_from_slice(&[b'h' ^ 1, b'i' ^ 2]);
        let n = 100 + get.len() as u32;
        streams.segment(&seg(c, s, n, 0x18, &f[..3]), &mut out);
        streams.segment(&seg(c, s, n + 3, 0x18, &f[3..]), &mut out);
        // The server's reply, unmasked, and a repeated segment.
        let m = 500 + ok.len() as u32;
        streams.segment(&seg(s, c, m, 0x18, b"\x81\x02ok"), &mut out);
        streams.segment(&seg(s, c, m, 0x18, b"\x81\x02ok"), &mut out);
        streams.segment(&seg(c, s, n + 8, 0x11, b""), &mut out);
        assert_eq!(
            out,
            [
                "SYN seq 99",
                "SYN, ACK seq 499",
                "HTTP GET /ws HTTP/1.1 (Upgrade: websocket)",
                "HTTP HTTP/1.1 101 Switching Protocols (Upgrade: websocket)",
                "WebSocket text masked hi",
                "WebSocket text ok",
                "PSH, ACK seq 556 4 bytes (out of order or repeated: not reassembled)",
                "FIN, ACK seq 157",
            ]
        );
    }

    #[test]
    fn garbage_never_panics_or_grows() {
        let mut streams = Streams::default();
        let mut out = Vec::new();
        for i in 0..200u32 {
            let from = format!("127.0.0.{}:{}", i % 250 + 1, 1000 + i);
            let junk = vec![0xffu8; (i as usize * 37) % 3000];
            streams.segment(&seg(&from, "127.0.0.1:1", i, 0x18, &junk), &mut out);
        }
        assert!(streams.streams.len() <= MAX_STREAMS);
    }
}
