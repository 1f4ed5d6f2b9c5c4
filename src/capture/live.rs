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

use serde_json::{Value, json};

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

/// Most bytes of one `xray` message (the demo's rooms relay at most
/// 64 KiB).
pub const MAX_MESSAGE: usize = 40 * 1024;

/// The x-ray panel's script, shared by the demo's page and the SFU's
/// (`web/xray/panel.js`): `XrayPanel(section, {in, out})` builds the
/// panel inside `section` and draws `xray` messages ([`messages`]).
pub const PANEL_SCRIPT: &str = include_str!("../../web/xray/panel.js");
/// The panel's style sheet (`web/xray/panel.css`).
pub const PANEL_STYLE: &str = include_str!("../../web/xray/panel.css");

/// A ladder line as a panel reads it.
fn line_json(l: &Line) -> Value {
    let dir = match l.direction {
        Some(Direction::Inbound) => "in",
        Some(Direction::Outbound) => "out",
        None => "",
    };
    json!({
        "t": (l.time.as_secs_f64() * 1000.0).round() / 1000.0,
        "n": l.packet,
        "dir": dir,
        "from": l.source.to_string(),
        "to": l.destination.to_string(),
        "layer": l.layer.name(),
        "text": l.text,
        "fields": l.fields,
        "plain": l.plaintext,
    })
}

/// `lines` as `xray` messages of at most [`MAX_MESSAGE`] bytes each (at
/// least one, so that a page learns its `capture` URL early):
/// `{"type":"xray","capture":URL,"truncated":bool,"lines":[LINE…]}`, a LINE
/// being `{"t":seconds,"n":packet,"dir":"in"|"out"|"","from":addr,
/// "to":addr,"layer":"DTLS","text":…,"fields":…,"plain":bool}` (`dir`: as
/// the capturing side sees it; `plain`: decrypted SRTP; `fields`:
/// `name: value` lines to expand; `truncated`: the capture reached its
/// size limit).
pub fn messages(capture: &str, truncated: bool, lines: &[Line]) -> Vec<Value> {
    let head = |lines: Vec<Value>| {
        json!({
            "type": "xray",
            "capture": capture,
            "truncated": truncated,
            "lines": lines,
        })
    };
    let mut out = Vec::new();
    let (mut batch, mut size) = (Vec::new(), 0);
    for l in lines {
        let v = line_json(l);
        let n = v.to_string().len();
        if size + n > MAX_MESSAGE && !batch.is_empty() {
            out.push(head(std::mem::take(&mut batch)));
            size = 0;
        }
        size += n;
        batch.push(v);
    }
    if !batch.is_empty() || out.is_empty() {
        out.push(head(batch));
    }
    out
}

/// Most datagrams a [`Feeds`] keeps per participant between two takes
/// (the excess is dropped and counted as dropped lines).
const FEED_DATAGRAMS: usize = 4096;
/// Most datagrams a [`Feeds`] keeps whose sender is not known yet.
const UNROUTED_DATAGRAMS: usize = 512;
/// An unrouted datagram older than this is dropped (nobody claimed it).
const UNROUTED_FOR: Duration = Duration::from_secs(3);

/// A captured datagram, copied for later decoding.
#[derive(Debug)]
struct Held {
    time: Duration,
    packet: usize,
    source: SocketAddr,
    destination: SocketAddr,
    direction: Option<Direction>,
    plaintext: bool,
    payload: Vec<u8>,
}

impl Held {
    fn new(d: &Datagram<'_>) -> Held {
        Held {
            time: d.time,
            packet: d.packet,
            source: d.source,
            destination: d.destination,
            direction: d.direction,
            plaintext: d.plaintext,
            payload: d.payload.to_vec(),
        }
    }

    fn datagram(&self) -> Datagram<'_> {
        Datagram {
            time: self.time,
            packet: self.packet,
            source: self.source,
            destination: self.destination,
            direction: self.direction,
            plaintext: self.plaintext,
            payload: &self.payload,
        }
    }

    /// The far end: the sender of what came in, the receiver of what went
    /// out (a server's capture always knows which).
    fn remote(&self) -> SocketAddr {
        match self.direction {
            Some(Direction::Outbound) => self.destination,
            _ => self.source,
        }
    }
}

/// One participant's feed in a [`Feeds`].
#[derive(Debug)]
struct Feed {
    live: Live,
    held: VecDeque<Held>,
}

/// The live ladders of a server's participants (the SFU page's panel, one
/// per page): every datagram of the server's one capture goes to the feed
/// of its remote end, each with a [`Live`] ladder of its own (its own DTLS
/// session, its own key log line, its own rate limit).
///
/// ```text
///   Capture::datagram ─► Feeds ─┬─ remote address routed to a watched key: held in its feed
///                               ├─ routed elsewhere (a participant with no panel): dropped
///                               └─ not known yet: held unrouted (≤ 512, ≤ 3 s) until
///                                  the server says whose it is (Feeds::route)
///   Feeds::take(key) ─► the feed's held datagrams decoded ─► Live's lines
/// ```
///
/// Only the server knows which participant an address belongs to (its
/// demultiplexer learns it from ICE), so routing is asked of it
/// ([`Feeds::unrouted`], [`Feeds::route`]). Decoding waits for
/// [`Feeds::take`], so that a key log line handed over by then
/// ([`Feeds::key_log`]) decrypts the DTLS Finished that came in just
/// before the server derived it. Everything is bounded: datagrams held per
/// feed and unrouted, and the routes (at most 8 per watched key, as the
/// SFU keeps).
#[derive(Debug)]
pub struct Feeds {
    config: Config,
    feeds: std::collections::HashMap<u64, Feed>,
    /// Remote address → key (watched or not).
    routes: std::collections::HashMap<SocketAddr, u64>,
    unrouted: VecDeque<Held>,
    /// Datagrams dropped because their feed was full.
    dropped: u64,
}

/// Most routes kept per key (the SFU's own bound on a participant's
/// remote addresses).
const ROUTES_PER_KEY: usize = 8;
/// Most routes kept in all.
const MAX_ROUTES: usize = 4096;

impl Feeds {
    /// No feeds yet; each will let `config`'s lines through.
    pub fn new(config: Config) -> Feeds {
        Feeds {
            config,
            feeds: Default::default(),
            routes: Default::default(),
            unrouted: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Starts a ladder for `key` (a participant with a panel); its
    /// datagrams are decoded from now on.
    pub fn watch(&mut self, key: u64) {
        self.feeds.entry(key).or_insert_with(|| Feed {
            live: Live::new(self.config),
            held: VecDeque::new(),
        });
    }

    /// The keys being watched.
    pub fn watched(&self) -> impl Iterator<Item = u64> + '_ {
        self.feeds.keys().copied()
    }

    /// Forgets `key`: its ladder and its routes.
    pub fn forget(&mut self, key: u64) {
        self.feeds.remove(&key);
        self.routes.retain(|_, k| *k != key);
    }

    /// A key log line of `key`'s DTLS session.
    pub fn key_log(&mut self, key: u64, line: &str) {
        if let Some(f) = self.feeds.get_mut(&key) {
            f.live.key_log(line);
        }
    }

    /// Datagrams held because their feed was full.
    pub fn dropped(&self) -> u64 {
        self.dropped + self.feeds.values().map(|f| f.live.dropped()).sum::<u64>()
    }

    /// A captured datagram.
    pub fn datagram(&mut self, d: &Datagram<'_>) {
        let remote = match d.direction {
            Some(Direction::Outbound) => d.destination,
            _ => d.source,
        };
        match self.routes.get(&remote) {
            // Someone with no panel: not even copied.
            Some(key) if !self.feeds.contains_key(key) => {}
            Some(key) => self.hold(*key, Held::new(d)),
            None => {
                if self.unrouted.len() >= UNROUTED_DATAGRAMS {
                    self.unrouted.pop_front();
                }
                self.unrouted.push_back(Held::new(d));
            }
        }
    }

    fn hold(&mut self, key: u64, held: Held) {
        let Some(f) = self.feeds.get_mut(&key) else {
            return;
        };
        if f.held.len() >= FEED_DATAGRAMS {
            f.held.pop_front();
            self.dropped += 1;
        }
        f.held.push_back(held);
    }

    /// The remote addresses of the datagrams not routed yet (each once).
    pub fn unrouted(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = Vec::new();
        for h in &self.unrouted {
            let r = h.remote();
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// Routes the datagrams held unrouted: `owner` says whose an address
    /// is, if known. Those still unknown after 3 s are dropped (`now`:
    /// the capture's time).
    pub fn route(&mut self, now: Duration, mut owner: impl FnMut(SocketAddr) -> Option<u64>) {
        let mut still = VecDeque::new();
        for held in std::mem::take(&mut self.unrouted) {
            let remote = held.remote();
            let key = match self.routes.get(&remote) {
                Some(k) => Some(*k),
                None => owner(remote).inspect(|k| self.learn(remote, *k)),
            };
            match key {
                Some(k) => self.hold(k, held),
                None if now.saturating_sub(held.time) < UNROUTED_FOR => still.push_back(held),
                None => {}
            }
        }
        self.unrouted = still;
    }

    fn learn(&mut self, remote: SocketAddr, key: u64) {
        if self.routes.len() >= MAX_ROUTES {
            // Those of participants with no panel go first (gone, most).
            let feeds = &self.feeds;
            self.routes.retain(|_, k| feeds.contains_key(k));
        }
        if self.routes.values().filter(|k| **k == key).count() >= ROUTES_PER_KEY {
            let old = self
                .routes
                .iter()
                .find(|(_, k)| **k == key)
                .map(|(a, _)| *a);
            if let Some(a) = old {
                self.routes.remove(&a);
            }
        }
        self.routes.insert(remote, key);
    }

    /// `key`'s lines since the last take, decoded now (`now`: the
    /// capture's time, closing the seconds before it).
    pub fn take(&mut self, key: u64, now: Duration) -> Vec<Line> {
        let Some(f) = self.feeds.get_mut(&key) else {
            return Vec::new();
        };
        for h in f.held.drain(..) {
            f.live.datagram(&h.datagram());
        }
        f.live.take(now)
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
    fn feeds_route_by_remote_address_and_decode_on_take() {
        let server: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let (p1, p2, p3): (SocketAddr, SocketAddr, SocketAddr) = (
            "198.51.100.1:6000".parse().unwrap(),
            "198.51.100.1:6001".parse().unwrap(),
            "198.51.100.9:6000".parse().unwrap(),
        );
        let stun = stun_binding();
        let mut feeds = Feeds::new(Config::default());
        feeds.watch(1);
        feeds.watch(2);
        let mut n = 0;
        let mut datagram = |feeds: &mut Feeds, remote: SocketAddr, ms: u64, dir| {
            n += 1;
            let (source, destination) = match dir {
                Direction::Inbound => (remote, server),
                Direction::Outbound => (server, remote),
            };
            feeds.datagram(&Datagram {
                time: Duration::from_millis(ms),
                packet: n,
                source,
                destination,
                direction: Some(dir),
                plaintext: false,
                payload: &stun,
            });
        };
        // Nobody known yet: held until the server says whose.
        datagram(&mut feeds, p1, 0, Direction::Inbound);
        datagram(&mut feeds, p2, 1, Direction::Inbound);
        datagram(&mut feeds, p3, 2, Direction::Inbound);
        assert_eq!(feeds.unrouted(), [p1, p2, p3]);
        assert!(feeds.take(1, Duration::from_millis(3)).is_empty());
        // p1 and p2 share an IP address, and stay apart; p3 is someone
        // with no panel (3).
        let owner = |a: SocketAddr| [(p1, 1), (p2, 2), (p3, 3)].into_iter().find(|x| x.0 == a);
        feeds.route(Duration::from_millis(4), |a| owner(a).map(|x| x.1));
        assert!(feeds.unrouted().is_empty());
        datagram(&mut feeds, p1, 5, Direction::Outbound);
        datagram(&mut feeds, p3, 6, Direction::Outbound);
        let one = feeds.take(1, Duration::from_millis(10));
        assert_eq!(one.len(), 2, "{one:?}");
        assert!(one.iter().all(|l| l.source == p1 || l.destination == p1));
        let two = feeds.take(2, Duration::from_millis(10));
        assert_eq!(two.len(), 1, "{two:?}");
        assert_eq!(two[0].source, p2);
        // An address nobody claims is dropped after a while.
        let stray: SocketAddr = "203.0.113.5:1".parse().unwrap();
        datagram(&mut feeds, stray, 20, Direction::Inbound);
        feeds.route(Duration::from_millis(30), |_| None);
        assert_eq!(feeds.unrouted(), [stray]);
        feeds.route(Duration::from_secs(5), |_| None);
        assert!(feeds.unrouted().is_empty());
        // A page gone: its ladder and routes go too.
        feeds.forget(1);
        datagram(&mut feeds, p1, 40, Direction::Inbound);
        assert_eq!(feeds.unrouted(), [p1]);
        assert_eq!(feeds.watched().collect::<Vec<_>>(), [2]);
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
