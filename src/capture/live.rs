//! The x-ray panel's feed: a capture's datagrams decoded as they are
//! captured (by the same [`Ladder`] as `rtclab xray`), thinned to what a
//! person can read as it scrolls.
//!
//! ```text
//!   Capture::datagram ─► Ladder::packet ─► lines ─┬─ RTP (SRTP or decrypted): counted,
//!                                                 │    one line a second and direction
//!                                                 ├─ SRTCP on the wire: dropped (its
//!                                                 │    decrypted twin is shown)
//!                                                 └─ the rest: at most `lines_per_second`,
//!                                                      the excess summed up in one line
//! ```
//!
//! Everything is bounded: the lines waiting to be taken
//! ([`Config::max_pending`]; the oldest go first) and the decoder's state
//! (see [`Ladder`]). Time is the capture's: since it started.

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use super::pcapng::Direction;
use super::xray::{Datagram, Ladder, Layer, Line};

/// How much a [`Live`] feed lets through.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Config {
    /// Lines a second beyond the RTP summaries (default 40).
    pub lines_per_second: usize,
    /// Lines kept until taken (default 1000).
    pub max_pending: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            lines_per_second: 40,
            max_pending: 1000,
        }
    }
}

/// RTP packets of one second in one direction.
#[derive(Default)]
struct RtpSecond {
    packets: u64,
    bytes: u64,
    ssrcs: BTreeSet<String>,
    /// The last decrypted header's line (its fields), else the last
    /// SRTP one.
    last: Option<Line>,
    ends: Option<(SocketAddr, SocketAddr)>,
}

/// A live ladder (see the module doc).
pub struct Live {
    ladder: Ladder,
    config: Config,
    pending: VecDeque<Line>,
    /// Lines dropped because nobody took them.
    dropped: u64,
    /// The second being counted (whole seconds since the start).
    second: u64,
    shown: usize,
    /// Lines over the budget this second, per layer.
    over: Vec<(Layer, u64)>,
    rtp_in: RtpSecond,
    rtp_out: RtpSecond,
    scratch: Vec<Line>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("pending", &self.pending.len())
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// A feed that decodes with fields (for a panel to expand).
    pub fn new(config: Config) -> Live {
        Live {
            ladder: Ladder::with_fields(),
            config,
            pending: VecDeque::new(),
            dropped: 0,
            second: 0,
            shown: 0,
            over: Vec::new(),
            rtp_in: RtpSecond::default(),
            rtp_out: RtpSecond::default(),
            scratch: Vec::new(),
        }
    }

    /// A key log line (the DTLS secrets): later records are decrypted.
    pub fn key_log(&mut self, line: &str) {
        self.ladder.key_log(line);
    }

    /// Lines dropped because they were not taken in time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Decodes one captured datagram.
    pub fn datagram(&mut self, d: &Datagram<'_>) {
        self.roll(d.time);
        let mut lines = std::mem::take(&mut self.scratch);
        lines.clear();
        self.ladder.packet(d, &mut lines);
        for l in lines.drain(..) {
            self.line(l, d.payload.len());
        }
        self.scratch = lines;
    }

    fn line(&mut self, l: Line, bytes: usize) {
        match l.layer {
            Layer::Rtp => {
                let s = if l.direction == Some(Direction::Outbound) {
                    &mut self.rtp_out
                } else {
                    &mut self.rtp_in
                };
                // The wire's SRTP counts; its decrypted twin gives the fields.
                if !l.plaintext {
                    s.packets += 1;
                    s.bytes += bytes as u64;
                    s.ends = Some((l.source, l.destination));
                    if let Some(ssrc) = l.text.split_whitespace().nth(3)
                        && s.ssrcs.len() < 16
                    {
                        s.ssrcs.insert(ssrc.to_string());
                    }
                }
                if l.plaintext || s.last.as_ref().is_none_or(|x| !x.plaintext) {
                    s.last = Some(l);
                }
            }
            Layer::Rtcp if !l.plaintext => {}
            // A channel's OPEN and ACK are rare and the point of the
            // panel: never thinned away by a busy second (the pending
            // queue still bounds them).
            Layer::Dcep => self.emit(l),
            layer => {
                if self.shown < self.config.lines_per_second {
                    self.shown += 1;
                    self.emit(l);
                } else {
                    match self.over.iter_mut().find(|(x, _)| *x == layer) {
                        Some((_, n)) => *n += 1,
                        None => self.over.push((layer, 1)),
                    }
                }
            }
        }
    }

    fn emit(&mut self, l: Line) {
        if self.pending.len() >= self.config.max_pending {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(l);
    }

    /// Closes the seconds before `now`: their RTP summaries and what went
    /// over the budget.
    fn roll(&mut self, now: Duration) {
        let second = now.as_secs();
        if second <= self.second {
            return;
        }
        let end = Duration::from_secs(self.second.saturating_add(1));
        for out in [false, true] {
            let s = std::mem::take(if out {
                &mut self.rtp_out
            } else {
                &mut self.rtp_in
            });
            let (Some((source, destination)), Some(last)) = (s.ends, s.last) else {
                continue;
            };
            let mut text = format!(
                "{} packets/s, {} kbit/s, SSRC {}",
                s.packets,
                s.bytes * 8 / 1000,
                s.ssrcs.iter().cloned().collect::<Vec<_>>().join(" ")
            );
            let _ = write!(text, " · last: {}", last.text);
            self.emit(Line {
                time: end,
                source,
                destination,
                text,
                fields: last.fields,
                ..last
            });
        }
        if !self.over.is_empty() {
            let total: u64 = self.over.iter().map(|(_, n)| n).sum();
            let each: Vec<String> = self
                .over
                .iter()
                .map(|(l, n)| format!("{} {n}", l.name()))
                .collect();
            let unspecified: SocketAddr = ([0, 0, 0, 0], 0).into();
            self.emit(Line {
                time: end,
                packet: 0,
                source: unspecified,
                destination: unspecified,
                plaintext: false,
                direction: None,
                layer: Layer::Other,
                text: format!(
                    "… {total} more lines in that second, not shown ({}); the capture has them all",
                    each.join(", ")
                ),
                fields: String::new(),
            });
            self.over.clear();
        }
        self.second = second;
        self.shown = 0;
    }

    /// The lines decoded since the last call, up to `now` (which closes
    /// the seconds before it).
    pub fn take(&mut self, now: Duration) -> Vec<Line> {
        self.roll(now);
        self.pending.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stun_binding() -> Vec<u8> {
        let mut b = Vec::new();
        let typ = crate::stun::MessageType {
            class: crate::stun::Class::Request,
            method: crate::stun::Method::BINDING,
        };
        crate::stun::MessageEncoder::new(&mut b, typ, crate::stun::TransactionId([1; 12]))
            .finish()
            .unwrap();
        b
    }

    #[test]
    fn lines_are_limited_per_second_and_rtp_is_summed() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "198.51.100.2:6000".parse().unwrap();
        let mut live = Live::new(Config {
            lines_per_second: 3,
            max_pending: 100,
        });
        let stun = stun_binding();
        let mut rtp = vec![0x80, 96, 0, 1, 0, 0, 0, 9, 0xde, 0xad, 0xbe, 0xef];
        rtp.extend_from_slice(&[0; 20]);
        for i in 0..10u64 {
            let t = Duration::from_millis(i * 10);
            live.datagram(&Datagram {
                time: t,
                packet: i as usize + 1,
                source: a,
                destination: b,
                direction: Some(Direction::Outbound),
                plaintext: false,
                payload: &stun,
            });
            live.datagram(&Datagram {
                time: t,
                packet: 100 + i as usize,
                source: b,
                destination: a,
                direction: Some(Direction::Inbound),
                plaintext: false,
                payload: &rtp,
            });
        }
        let first = live.take(Duration::from_millis(500));
        assert_eq!(first.len(), 3, "{first:?}");
        assert!(first[0].text.starts_with("Binding Request"));
        assert!(
            first[0].fields.contains("transaction id: 0101"),
            "{first:?}"
        );
        let rest = live.take(Duration::from_millis(1500));
        assert_eq!(rest.len(), 2, "{rest:?}");
        assert_eq!(rest[0].layer, Layer::Rtp);
        assert!(
            rest[0]
                .text
                .starts_with("10 packets/s, 2 kbit/s, SSRC 0xdeadbeef"),
            "{}",
            rest[0].text
        );
        assert_eq!(rest[0].direction, Some(Direction::Inbound));
        assert!(rest[1].text.contains("7 more lines"), "{}", rest[1].text);
        assert!(rest[1].text.contains("STUN 7"), "{}", rest[1].text);
        assert!(live.take(Duration::from_secs(3)).is_empty());
    }

    #[test]
    fn pending_lines_are_bounded() {
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let mut live = Live::new(Config {
            lines_per_second: 1000,
            max_pending: 5,
        });
        for i in 0..20 {
            live.datagram(&Datagram {
                time: Duration::ZERO,
                packet: i,
                source: a,
                destination: a,
                direction: None,
                plaintext: false,
                payload: &[0xff, 0xff],
            });
        }
        assert_eq!(live.dropped(), 15);
        assert_eq!(live.take(Duration::ZERO).len(), 5);
    }
}
