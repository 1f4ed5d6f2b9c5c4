//! Many peers behind one UDP socket: [`PeerSet`], the host an SFU or a
//! WHIP/WHEP server runs every [`PeerConnection`] on.
//!
//! A browser sends everything of one connection (STUN, DTLS, SRTP, SCTP
//! inside DTLS) over one 5-tuple (RFC 8843 BUNDLE, RFC 5761 rtcp-mux), so a
//! server needs one port for all its peers if it can tell, for each
//! datagram, whose it is:
//!
//! ```text
//!   datagram (remote, local)
//!        │
//!        ├─ STUN Binding request with USERNAME "LFRAG:RFRAG" ──► the peer whose
//!        │    local ice-ufrag is LFRAG (RFC 8445 §7.2.2), even from a
//!        │    5-tuple we know: the ufrag is what the check is addressed to
//!        ├─ a known 5-tuple ───────────────────────────────────► its peer
//!        └─ anything else (DTLS, SRTP, STUN responses from a
//!           5-tuple no peer validated, garbage) ────────────────► dropped, counted
//! ```
//!
//! ## Which 5-tuples are learned
//!
//! A 5-tuple (the remote address and our local address) is learned for a
//! peer only when the peer's own ICE agent holds its remote address as a
//! candidate ([`PeerConnection::accepts`] for a datagram that is not STUN):
//! after a check routed by its ufrag (the agent made a peer-reflexive
//! candidate of it once the check's MESSAGE-INTEGRITY verified, RFC 8445
//! §7.3.1.3, or it was signaled), or when the peer sends to a signaled
//! candidate (so the answer to its own check finds it). A check routed by
//! ufrag may take a 5-tuple over from another peer (that peer's credentials
//! are not involved, and the ufrag names the receiver); a transmit never
//! does. Each peer keeps at most [`MAX_TUPLES_PER_PEER`] (oldest forgotten
//! first), so a flood of spoofed sources cannot grow the table: a spoofed
//! check either fails MESSAGE-INTEGRITY (no candidate, nothing learned) or
//! names a peer whose table is bounded. Removing a peer removes its
//! 5-tuples.
//!
//! UDP source addresses are not authenticated: whoever knows a peer's ufrag
//! and password and can spoof a source could redirect that 5-tuple, as in
//! ICE itself; DTLS and SRTP then drop what is not the peer's, and consent
//! freshness (RFC 7675) ends a path the peer stopped answering on.
//!
//! ## Left out
//!
//! Peers in a set should gather host candidates only (an SFU's public
//! address). Answers from a STUN server cannot be told apart by 5-tuple
//! when several peers ask the same server from the one socket (that would
//! need routing by transaction id), so they are dropped; and a TURN server
//! knows an allocation by its 5-tuple, so only one peer of a set could
//! have one there. A TCP socket (RFC 6544) is not served yet.
//!
//! ## Timers at scale
//!
//! [`Machine::poll_timeout`] is called after every wake-up of the driver.
//! With a thousand peers, asking each for its next deadline every time is
//! a thousand calls per datagram. The set keeps each peer's deadline in a
//! min-heap instead (lazy deletion: an entry is live while it equals the
//! peer's recorded deadline); a peer's deadline is read again only after
//! the set touched that peer (a datagram, a timer, an API call through
//! [`PeerMut`]). `poll_timeout` is a peek, `handle_timeout` pops only the
//! due peers: O(log n) per touched peer. Stale entries are swept when the
//! heap grows past twice the number of peers.
//!
//! ## Fairness
//!
//! Output is drained round-robin: each `poll_transmit` takes one datagram
//! from the peer at the front of the queue of peers with output and moves
//! it to the back, so one busy peer (a big data-channel transfer) cannot
//! starve the others' media in a batch the driver sends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use super::connection::{Event, PeerConnection};
use super::demux::{PacketKind, classify};
use crate::machine::{Machine, Receive, Transmit, TransmitMeta};

/// The most 5-tuples a peer keeps in the routing table (a browser's ICE
/// validates a few: host, server-reflexive and relayed paths, v4 and v6).
pub const MAX_TUPLES_PER_PEER: usize = 8;

/// A peer's name in its [`PeerSet`]: never reused, even after
/// [`PeerSet::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerKey(u64);

impl PeerKey {
    /// The key as a number (for logs, resource ids).
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PeerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer{}", self.0)
    }
}

/// What a [`PeerSet`] needs of the machines it hosts, beyond [`Machine`]:
/// implemented by [`PeerConnection`] (and by test machines).
pub trait Hosted: Machine {
    /// Our local ICE ufrag, once we have one: STUN checks whose USERNAME
    /// starts with it are ours.
    fn local_ufrag(&self) -> Option<&str>;
    /// Whether our ICE agent holds `source` as a remote candidate
    /// (signaled, or peer-reflexive from an authenticated check).
    fn knows_remote(&self, source: SocketAddr) -> bool;
}

impl Hosted for PeerConnection {
    fn local_ufrag(&self) -> Option<&str> {
        self.transport()
            .map(|t| t.local_credentials().ufrag.as_str())
    }

    fn knows_remote(&self, source: SocketAddr) -> bool {
        // `accepts` reads a datagram that is not STUN (an empty one) as
        // "does it come from one of our remote candidates?".
        self.accepts(&[], source)
    }
}

/// Counters of a [`PeerSet`] (routing decisions and timer work).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams given to a peer by their known 5-tuple.
    pub routed_by_tuple: u64,
    /// STUN Binding requests given to a peer by the ufrag in USERNAME.
    pub routed_by_ufrag: u64,
    /// Dropped: not a STUN request, from a 5-tuple no peer validated.
    pub dropped_unknown_tuple: u64,
    /// Dropped: a STUN request whose USERNAME names no peer of ours.
    pub dropped_unknown_ufrag: u64,
    /// Dropped: looked like a STUN request (first byte 0–3, from an unknown
    /// 5-tuple) but had no readable USERNAME.
    pub dropped_malformed_stun: u64,
    /// 5-tuples learned.
    pub tuples_learned: u64,
    /// 5-tuples forgotten because their peer had [`MAX_TUPLES_PER_PEER`].
    pub tuples_evicted: u64,
    /// A peer was inserted whose ufrag another peer already has (the first
    /// keeps it; checks for the second are not routed by ufrag).
    pub ufrag_collisions: u64,
    /// How many times the set asked a peer for its deadline: grows with the
    /// peers touched, not with calls to `poll_timeout`.
    pub deadline_reads: u64,
}

struct Slot<P> {
    peer: P,
    /// The ufrag this peer is indexed under.
    ufrag: Option<String>,
    /// 5-tuples (remote, local) learned for this peer, oldest first (some
    /// may have been taken over by another peer since).
    tuples: VecDeque<(SocketAddr, SocketAddr)>,
    /// Its deadline as the heap knows it.
    deadline: Option<Instant>,
    /// Whether it is in the output queue.
    queued: bool,
    /// The last 5-tuple it sent on (learning is skipped when unchanged).
    last_sent: Option<(SocketAddr, SocketAddr)>,
}

/// Everything but the peers, so that a [`PeerMut`] can hold a peer and the
/// bookkeeping at once.
struct Index<E> {
    next_key: u64,
    by_tuple: HashMap<(SocketAddr, SocketAddr), PeerKey>,
    by_ufrag: HashMap<String, PeerKey>,
    timers: BinaryHeap<Reverse<(Instant, PeerKey)>>,
    output: VecDeque<PeerKey>,
    events: VecDeque<(PeerKey, E)>,
    stats: Stats,
}

/// Many peers on one socket (see the [module doc](self)). A [`Machine`]:
/// drive it with `runtime::Driver` on one UDP socket, or put it in the
/// simulator as one host.
pub struct PeerSet<P: Hosted = PeerConnection> {
    peers: HashMap<PeerKey, Slot<P>>,
    index: Index<P::Event>,
}

impl<P: Hosted> Default for PeerSet<P> {
    fn default() -> Self {
        PeerSet::new()
    }
}

impl<P: Hosted> fmt::Debug for PeerSet<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSet")
            .field("peers", &self.peers.len())
            .field("tuples", &self.index.by_tuple.len())
            .field("stats", &self.index.stats)
            .finish_non_exhaustive()
    }
}

impl<P: Hosted> PeerSet<P> {
    /// An empty set.
    pub fn new() -> Self {
        PeerSet {
            peers: HashMap::new(),
            index: Index {
                next_key: 0,
                by_tuple: HashMap::new(),
                by_ufrag: HashMap::new(),
                timers: BinaryHeap::new(),
                output: VecDeque::new(),
                events: VecDeque::new(),
                stats: Stats::default(),
            },
        }
    }

    /// Adds a peer (new, or already negotiating: its ufrag, deadline,
    /// output and events are taken in now). Its key is never reused.
    pub fn insert(&mut self, peer: P) -> PeerKey {
        let key = PeerKey(self.index.next_key);
        self.index.next_key += 1;
        let slot = self.peers.entry(key).or_insert(Slot {
            peer,
            ufrag: None,
            tuples: VecDeque::new(),
            deadline: None,
            queued: false,
            last_sent: None,
        });
        self.index.touched(key, slot);
        self.index.settle(&self.peers);
        key
    }

    /// Takes a peer out, with its 5-tuples and ufrag; its pending events
    /// stay in the set's queue (they were already drained from it).
    pub fn remove(&mut self, key: PeerKey) -> Option<P> {
        let slot = self.peers.remove(&key)?;
        for t in &slot.tuples {
            if self.index.by_tuple.get(t) == Some(&key) {
                self.index.by_tuple.remove(t);
            }
        }
        if let Some(u) = &slot.ufrag
            && self.index.by_ufrag.get(u) == Some(&key)
        {
            self.index.by_ufrag.remove(u);
        }
        // Its heap entry and output-queue entry go stale and are skipped.
        self.index.settle(&self.peers);
        Some(slot.peer)
    }

    /// A peer, to read.
    pub fn get(&self, key: PeerKey) -> Option<&P> {
        self.peers.get(&key).map(|s| &s.peer)
    }

    /// A peer, to call its API: when the guard is dropped the set reads the
    /// peer's new deadline, ufrag, output and events.
    pub fn get_mut(&mut self, key: PeerKey) -> Option<PeerMut<'_, P>> {
        let slot = self.peers.get_mut(&key)?;
        Some(PeerMut {
            key,
            slot,
            index: &mut self.index,
        })
    }

    /// The keys of the peers in the set (in no particular order).
    pub fn keys(&self) -> impl Iterator<Item = PeerKey> + '_ {
        self.peers.keys().copied()
    }

    /// How many peers the set holds.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether the set holds no peer.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The routing counters.
    pub fn stats(&self) -> Stats {
        self.index.stats
    }

    /// How many 5-tuples the routing table holds (at most
    /// [`MAX_TUPLES_PER_PEER`] per peer).
    pub fn tuple_count(&self) -> usize {
        self.index.by_tuple.len()
    }

    /// The peer a datagram would go to, and whether it was found by ufrag.
    fn route(&mut self, d: &Receive<'_>) -> Option<(PeerKey, bool)> {
        let stats = &mut self.index.stats;
        let tuple = (d.source, d.destination);
        let known = self.index.by_tuple.get(&tuple).copied();
        if classify(d.contents) == PacketKind::Stun {
            match binding_request_ufrag(d.contents) {
                Some(ufrag) => {
                    if let Some(&k) = self.index.by_ufrag.get(ufrag) {
                        stats.routed_by_ufrag += 1;
                        return Some((k, known != Some(k)));
                    }
                    if known.is_none() {
                        stats.dropped_unknown_ufrag += 1;
                        return None;
                    }
                }
                None if known.is_none() => {
                    if is_stun_request(d.contents) {
                        stats.dropped_malformed_stun += 1;
                    } else {
                        stats.dropped_unknown_tuple += 1;
                    }
                    return None;
                }
                None => {}
            }
        }
        match known {
            Some(k) => {
                stats.routed_by_tuple += 1;
                Some((k, false))
            }
            None => {
                stats.dropped_unknown_tuple += 1;
                None
            }
        }
    }
}

/// The next peer in the output queue (round-robin), skipping removed ones.
fn next_output<'a, P: Hosted>(
    peers: &'a mut HashMap<PeerKey, Slot<P>>,
    output: &mut VecDeque<PeerKey>,
) -> Option<(PeerKey, &'a mut Slot<P>)> {
    loop {
        let key = output.pop_front()?;
        // A removed peer's entry is stale: skip it.
        if peers.contains_key(&key) {
            return peers.get_mut(&key).map(|slot| (key, slot));
        }
    }
}

impl<E> Index<E> {
    /// After the set touched `key`: its events, ufrag, deadline and output.
    fn touched<P: Hosted<Event = E>>(&mut self, key: PeerKey, slot: &mut Slot<P>) {
        while let Some(e) = slot.peer.poll_event() {
            self.events.push_back((key, e));
        }
        self.reindex_ufrag(key, slot);
        self.refresh_deadline(key, slot);
        if !slot.queued {
            slot.queued = true;
            self.output.push_back(key);
        }
    }

    fn reindex_ufrag<P: Hosted>(&mut self, key: PeerKey, slot: &mut Slot<P>) {
        let now = slot.peer.local_ufrag();
        if now == slot.ufrag.as_deref() {
            return;
        }
        if let Some(old) = slot.ufrag.take()
            && self.by_ufrag.get(&old) == Some(&key)
        {
            self.by_ufrag.remove(&old);
        }
        if let Some(u) = now {
            match self.by_ufrag.get(u) {
                Some(&other) if other != key => self.stats.ufrag_collisions += 1,
                _ => {
                    self.by_ufrag.insert(u.to_string(), key);
                }
            }
            slot.ufrag = Some(u.to_string());
        }
    }

    fn refresh_deadline<P: Hosted>(&mut self, key: PeerKey, slot: &mut Slot<P>) {
        self.stats.deadline_reads += 1;
        let d = slot.peer.poll_timeout();
        if d != slot.deadline {
            slot.deadline = d;
            if let Some(t) = d {
                self.timers.push(Reverse((t, key)));
            }
        }
    }

    /// Makes the heap's top a live entry (so `poll_timeout(&self)` is a
    /// peek), and sweeps stale entries when they outnumber the live ones.
    fn settle<P: Hosted>(&mut self, peers: &HashMap<PeerKey, Slot<P>>) {
        let live = |&Reverse((t, k)): &Reverse<(Instant, PeerKey)>| {
            peers.get(&k).is_some_and(|s| s.deadline == Some(t))
        };
        if self.timers.len() > 2 * peers.len() + 16 {
            let timers = std::mem::take(&mut self.timers);
            self.timers = timers.into_iter().filter(live).collect();
        }
        while let Some(top) = self.timers.peek() {
            if live(top) {
                break;
            }
            self.timers.pop();
        }
    }

    /// Learns `tuple` for `key` if its ICE agent knows the remote address;
    /// `take_over`: even if another peer has it.
    fn learn<P: Hosted>(
        &mut self,
        key: PeerKey,
        slot: &mut Slot<P>,
        tuple: (SocketAddr, SocketAddr),
        take_over: bool,
    ) {
        match self.by_tuple.get(&tuple) {
            Some(&k) if k == key => return,
            Some(_) if !take_over => return,
            _ => {}
        }
        if !slot.peer.knows_remote(tuple.0) {
            return;
        }
        self.by_tuple.insert(tuple, key);
        self.stats.tuples_learned += 1;
        slot.tuples.retain(|t| *t != tuple);
        slot.tuples.push_back(tuple);
        while slot.tuples.len() > MAX_TUPLES_PER_PEER {
            if let Some(old) = slot.tuples.pop_front()
                && self.by_tuple.get(&old) == Some(&key)
            {
                self.by_tuple.remove(&old);
                self.stats.tuples_evicted += 1;
            }
        }
    }
}

/// A peer of a [`PeerSet`], borrowed to call its API (derefs to it). When
/// dropped, the set takes in what the calls changed: new events, output,
/// the next deadline, the ufrag.
pub struct PeerMut<'a, P: Hosted> {
    key: PeerKey,
    slot: &'a mut Slot<P>,
    index: &'a mut Index<P::Event>,
}

impl<P: Hosted> PeerMut<'_, P> {
    /// The peer's key.
    pub fn key(&self) -> PeerKey {
        self.key
    }
}

impl<P: Hosted> Deref for PeerMut<'_, P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.slot.peer
    }
}

impl<P: Hosted> DerefMut for PeerMut<'_, P> {
    fn deref_mut(&mut self) -> &mut P {
        &mut self.slot.peer
    }
}

impl<P: Hosted> Drop for PeerMut<'_, P> {
    fn drop(&mut self) {
        self.index.touched(self.key, self.slot);
        // The heap top may be this peer's old entry: pop stale tops. Only
        // this peer's entries changed, so this is the cheap part of
        // `settle` (no sweep: that needs the whole map).
        while let Some(Reverse((t, k))) = self.index.timers.peek() {
            if *k == self.key && self.slot.deadline != Some(*t) {
                self.index.timers.pop();
            } else {
                break;
            }
        }
    }
}

impl<P: Hosted> Machine for PeerSet<P> {
    type Event = (PeerKey, P::Event);

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        let Some((key, by_ufrag)) = self.route(&d) else {
            return;
        };
        let Some(slot) = self.peers.get_mut(&key) else {
            return;
        };
        slot.peer.handle_receive(now, d);
        if by_ufrag {
            self.index.learn(key, slot, (d.source, d.destination), true);
        }
        self.index.touched(key, slot);
        self.index.settle(&self.peers);
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&Reverse((t, k))) = self.index.timers.peek() {
            if t > now {
                break;
            }
            self.index.timers.pop();
            if let Some(slot) = self.peers.get_mut(&k)
                && slot.deadline == Some(t)
            {
                slot.deadline = None;
                due.push(k);
            }
        }
        for k in due {
            if let Some(slot) = self.peers.get_mut(&k) {
                slot.peer.handle_timeout(now);
                self.index.touched(k, slot);
            }
        }
        self.index.settle(&self.peers);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let (key, slot) = next_output(&mut self.peers, &mut self.index.output)?;
            if let Some(t) = slot.peer.poll_transmit() {
                if let Some(local) = t.source {
                    let tuple = (t.destination, local);
                    if slot.last_sent != Some(tuple) {
                        slot.last_sent = Some(tuple);
                        self.index.learn(key, slot, tuple, false);
                    }
                }
                self.index.output.push_back(key);
                return Some(t);
            }
            slot.queued = false;
        }
    }

    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        loop {
            let (key, slot) = next_output(&mut self.peers, &mut self.index.output)?;
            if let Some(m) = slot.peer.poll_transmit_into(buf) {
                if let Some(local) = m.source {
                    let tuple = (m.destination, local);
                    if slot.last_sent != Some(tuple) {
                        slot.last_sent = Some(tuple);
                        self.index.learn(key, slot, tuple, false);
                    }
                }
                self.index.output.push_back(key);
                return Some(m);
            }
            slot.queued = false;
        }
    }

    fn poll_event(&mut self) -> Option<(PeerKey, P::Event)> {
        self.index.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.index.timers.peek().map(|Reverse((t, _))| *t)
    }
}

/// An event of a [`PeerSet`] of [`PeerConnection`]s.
pub type SetEvent = (PeerKey, Event);

/// Whether `d` is a STUN request (RFC 8489 §5: class bits C1 C0 = 00).
fn is_stun_request(d: &[u8]) -> bool {
    d.len() >= 2 && d[0] & 0xC0 == 0 && d[0] & 0x01 == 0 && d[1] & 0x10 == 0
}

/// The local ufrag a STUN Binding request is addressed to: the part of its
/// USERNAME before the colon (RFC 8445 §7.2.2: "RFRAG:LFRAG" as the sender
/// writes it, our fragment first). Reads only the header (RFC 8489 §5:
/// type, length, magic cookie) and walks the attributes (§14: type,
/// length, value padded to 4) to USERNAME (0x0006, at most 763 bytes,
/// §14.3); `None` for anything else. Never panics; allocates nothing.
pub fn binding_request_ufrag(d: &[u8]) -> Option<&str> {
    const BINDING_REQUEST: u16 = 0x0001;
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const USERNAME: u16 = 0x0006;
    let header = d.get(..20)?;
    if u16::from_be_bytes([header[0], header[1]]) != BINDING_REQUEST || header[4..8] != MAGIC_COOKIE
    {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    let mut attrs = d.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let kind = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + alen)?;
        if kind == USERNAME {
            if alen > 763 {
                return None;
            }
            let user = std::str::from_utf8(value).ok()?;
            let (ours, _) = user.split_once(':')?;
            return (!ours.is_empty()).then_some(ours);
        }
        let padded = 4 + alen.div_ceil(4) * 4;
        attrs = attrs.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{
        Attribute, IntegrityKey, Message, MessageEncoder, MessageType, TransactionId,
    };
    use proptest::prelude::*;
    use std::time::Duration;

    /// A stand-in peer: a ufrag, known remotes, a timer, output on demand.
    struct Fake {
        ufrag: Option<String>,
        remotes: Vec<SocketAddr>,
        deadline: Option<Instant>,
        received: Vec<Vec<u8>>,
        fired: u32,
        out: VecDeque<Transmit>,
    }

    impl Fake {
        fn new(ufrag: &str) -> Fake {
            Fake {
                ufrag: Some(ufrag.into()),
                remotes: Vec::new(),
                deadline: None,
                received: Vec::new(),
                fired: 0,
                out: VecDeque::new(),
            }
        }
    }

    impl Machine for Fake {
        type Event = u32;
        fn handle_receive(&mut self, _: Instant, d: Receive<'_>) {
            self.received.push(d.contents.to_vec());
        }
        fn handle_timeout(&mut self, now: Instant) {
            if self.deadline.is_some_and(|d| d <= now) {
                self.fired += 1;
                self.deadline = None;
            }
        }
        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.pop_front()
        }
        fn poll_event(&mut self) -> Option<u32> {
            None
        }
        fn poll_timeout(&self) -> Option<Instant> {
            self.deadline
        }
    }

    impl Hosted for Fake {
        fn local_ufrag(&self) -> Option<&str> {
            self.ufrag.as_deref()
        }
        fn knows_remote(&self, source: SocketAddr) -> bool {
            self.remotes.contains(&source)
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    const LOCAL: &str = "192.0.2.100:3478";

    fn check(username: &str) -> Vec<u8> {
        let mut out = Vec::new();
        MessageEncoder::new(
            &mut out,
            MessageType::BINDING_REQUEST,
            TransactionId([7; 12]),
        )
        .attribute(&Attribute::Username(username))
        .message_integrity(&IntegrityKey::short_term("password-of-the-peer-xx"))
        .fingerprint()
        .finish()
        .expect("a check");
        out
    }

    fn recv<'a>(from: &str, contents: &'a [u8]) -> Receive<'a> {
        Receive {
            source: a(from),
            destination: a(LOCAL),
            contents,
        }
    }

    #[test]
    fn ufrag_of_a_real_binding_request() {
        let m = check("srvfrag1:clientfr");
        assert_eq!(binding_request_ufrag(&m), Some("srvfrag1"));
        assert!(Message::parse(&m).is_ok());
        // A response is not routed by ufrag.
        let mut resp = m.clone();
        resp[0] = 0x01;
        assert_eq!(binding_request_ufrag(&resp), None);
        // No colon, empty ufrag, truncated.
        assert_eq!(binding_request_ufrag(&check("nocolon")), None);
        assert_eq!(binding_request_ufrag(&check(":x")), None);
        assert_eq!(binding_request_ufrag(&m[..30]), None);
    }

    #[test]
    fn routes_by_ufrag_then_by_learned_tuple() {
        let t0 = Instant::now();
        let mut set = PeerSet::new();
        let mut f1 = Fake::new("aaaa");
        f1.remotes.push(a("203.0.113.1:1000"));
        let k1 = set.insert(f1);
        let k2 = set.insert(Fake::new("bbbb"));
        // DTLS from an unknown tuple: dropped.
        set.handle_receive(t0, recv("203.0.113.1:1000", &[22, 254, 253]));
        assert_eq!(set.stats().dropped_unknown_tuple, 1);
        // A check for aaaa: routed, its tuple learned (f1 knows it).
        set.handle_receive(t0, recv("203.0.113.1:1000", &check("aaaa:cccc")));
        assert_eq!(set.stats().routed_by_ufrag, 1);
        assert_eq!(set.tuple_count(), 1);
        set.handle_receive(t0, recv("203.0.113.1:1000", &[22, 254, 253]));
        assert_eq!(set.stats().routed_by_tuple, 1);
        assert_eq!(set.get(k1).map(|f| f.received.len()), Some(2));
        // A check for bbbb from an address bbbb does not know: routed, not
        // learned.
        set.handle_receive(t0, recv("203.0.113.9:9", &check("bbbb:cccc")));
        assert_eq!(set.get(k2).map(|f| f.received.len()), Some(1));
        assert_eq!(set.tuple_count(), 1);
        // Unknown ufrag, garbage: dropped and counted.
        set.handle_receive(t0, recv("203.0.113.9:9", &check("zzzz:cccc")));
        set.handle_receive(t0, recv("203.0.113.9:9", &[0, 1, 0, 0]));
        set.handle_receive(t0, recv("203.0.113.9:9", &[]));
        let s = set.stats();
        assert_eq!(s.dropped_unknown_ufrag, 1);
        assert_eq!(s.dropped_malformed_stun, 1);
        assert_eq!(s.dropped_unknown_tuple, 2);
        // Removing the peer removes its tuple.
        assert!(set.remove(k1).is_some());
        assert_eq!(set.tuple_count(), 0);
        set.handle_receive(t0, recv("203.0.113.1:1000", &[22, 254, 253]));
        assert_eq!(set.stats().dropped_unknown_tuple, 3);
        // Keys are not reused.
        let k3 = set.insert(Fake::new("aaaa"));
        assert!(k3 != k1 && k3 != k2);
    }

    #[test]
    fn spoofed_sources_do_not_grow_the_table() {
        let t0 = Instant::now();
        let mut set = PeerSet::new();
        let mut f = Fake::new("aaaa");
        // The peer "knows" every address (the worst case: a peer that
        // signaled or validated anything): still bounded.
        for i in 0..1000u16 {
            f.remotes.push(SocketAddr::from(([203, 0, 113, 1], i)));
        }
        set.insert(f);
        for i in 0..1000u16 {
            let from = SocketAddr::from(([203, 0, 113, 1], i));
            let c = check("aaaa:x");
            set.handle_receive(
                t0,
                Receive {
                    source: from,
                    destination: a(LOCAL),
                    contents: &c,
                },
            );
        }
        assert_eq!(set.tuple_count(), MAX_TUPLES_PER_PEER);
        assert_eq!(
            set.stats().tuples_evicted,
            1000 - MAX_TUPLES_PER_PEER as u64
        );
        // Sources it does not know are never learned at all.
        let mut set = PeerSet::new();
        set.insert(Fake::new("aaaa"));
        for i in 0..1000u16 {
            let c = check("aaaa:x");
            set.handle_receive(
                t0,
                Receive {
                    source: SocketAddr::from(([198, 51, 100, 7], i)),
                    destination: a(LOCAL),
                    contents: &c,
                },
            );
        }
        assert_eq!(set.tuple_count(), 0);
    }

    #[test]
    fn a_check_by_ufrag_takes_a_tuple_over_a_transmit_does_not() {
        let t0 = Instant::now();
        let shared = a("203.0.113.5:5000");
        let mut set = PeerSet::new();
        let mut f1 = Fake::new("aaaa");
        f1.remotes.push(shared);
        let mut f2 = Fake::new("bbbb");
        f2.remotes.push(shared);
        let k1 = set.insert(f1);
        let k2 = set.insert(f2);
        let c = check("aaaa:x");
        set.handle_receive(t0, recv("203.0.113.5:5000", &c));
        // k2 sends there: it does not take the tuple.
        if let Some(mut p) = set.get_mut(k2) {
            p.out.push_back(Transmit {
                source: Some(a(LOCAL)),
                destination: shared,
                contents: vec![1],
            });
        }
        while set.poll_transmit().is_some() {}
        set.handle_receive(t0, recv("203.0.113.5:5000", &[22]));
        assert_eq!(set.get(k1).map(|f| f.received.len()), Some(2));
        // A check for bbbb from there: k2 takes it over.
        let c = check("bbbb:x");
        set.handle_receive(t0, recv("203.0.113.5:5000", &c));
        set.handle_receive(t0, recv("203.0.113.5:5000", &[22]));
        assert_eq!(set.get(k2).map(|f| f.received.len()), Some(2));
        assert_eq!(set.tuple_count(), 1);
    }

    #[test]
    fn output_is_round_robin() {
        let mut set = PeerSet::new();
        let keys: Vec<PeerKey> = (0..3)
            .map(|i| {
                let mut f = Fake::new(&format!("peer{i}"));
                for n in 0..4u8 {
                    f.out.push_back(Transmit {
                        source: None,
                        destination: a("203.0.113.1:1"),
                        contents: vec![i, n],
                    });
                }
                set.insert(f)
            })
            .collect();
        assert_eq!(keys.len(), 3);
        let mut order = Vec::new();
        let mut buf = Vec::new();
        while let Some(m) = set.poll_transmit_into(&mut buf) {
            assert_eq!(m.destination, a("203.0.113.1:1"));
        }
        for pair in buf.chunks(2) {
            order.push(pair[0]);
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    }

    /// 1,000 idle peers with timers: `poll_timeout` reads no peer,
    /// `handle_timeout` reads only the due ones (the heap does the rest).
    #[test]
    fn timers_cost_does_not_scan_the_peers() {
        let t0 = Instant::now();
        let mut set = PeerSet::new();
        let mut keys = Vec::new();
        for i in 0..1000u64 {
            let mut f = Fake::new(&format!("peer{i:04}"));
            f.deadline = Some(t0 + Duration::from_millis(1000 + i));
            keys.push(set.insert(f));
        }
        let reads = set.stats().deadline_reads;
        assert_eq!(reads, 1000);
        for _ in 0..10_000 {
            assert_eq!(set.poll_timeout(), Some(t0 + Duration::from_millis(1000)));
        }
        assert_eq!(set.stats().deadline_reads, reads);
        // Ten are due: ten fire, ten deadlines read.
        set.handle_timeout(t0 + Duration::from_millis(1009));
        assert_eq!(set.stats().deadline_reads, reads + 10);
        let fired: u32 = keys
            .iter()
            .filter_map(|&k| set.get(k))
            .map(|f| f.fired)
            .sum();
        assert_eq!(fired, 10);
        assert_eq!(set.poll_timeout(), Some(t0 + Duration::from_millis(1010)));
        // An API call moves one peer's deadline earlier: seen at once.
        if let Some(mut p) = set.get_mut(keys[500]) {
            p.deadline = Some(t0 + Duration::from_millis(5));
        }
        assert_eq!(set.poll_timeout(), Some(t0 + Duration::from_millis(5)));
        // ... or later (the stale top is popped).
        if let Some(mut p) = set.get_mut(keys[500]) {
            p.deadline = Some(t0 + Duration::from_secs(60));
        }
        assert_eq!(set.poll_timeout(), Some(t0 + Duration::from_millis(1010)));
        // Removing the earliest peer: the next one is next.
        set.remove(keys[10]);
        assert_eq!(set.poll_timeout(), Some(t0 + Duration::from_millis(1011)));
        // Many refreshes of one peer do not grow the heap without bound.
        for i in 0..10_000u64 {
            if let Some(mut p) = set.get_mut(keys[700]) {
                p.deadline = Some(t0 + Duration::from_millis(2000 + i));
            }
            set.handle_timeout(t0);
        }
        assert!(set.index.timers.len() <= 2 * set.len() + 17);
    }

    proptest! {
        #[test]
        fn ufrag_reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = binding_request_ufrag(&data);
            let mut set: PeerSet<Fake> = PeerSet::new();
            set.insert(Fake::new("aaaa"));
            set.handle_receive(Instant::now(), recv("203.0.113.1:1", &data));
        }

        #[test]
        fn ufrag_reader_agrees_with_the_stun_codec(
            l in "[a-zA-Z0-9+/]{4,32}", r in "[a-zA-Z0-9+/]{4,32}",
        ) {
            let m = check(&format!("{l}:{r}"));
            prop_assert_eq!(binding_request_ufrag(&m), Some(l.as_str()));
        }
    }
}
