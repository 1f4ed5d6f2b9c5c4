//! The association state machine (RFC 9260 §4–§9, RFC 3758, RFC 6525).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use ring::hmac;

use super::chunk::{
    Chunk, DATA_HEADER_LEN, FLAG_BEGIN, FLAG_END, FLAG_IMMEDIATE, FLAG_T, FLAG_UNORDERED,
    ForwardTsn, Init, Sack, kind,
};
use super::congestion::{Ack, Controller, NewReno};
use super::packet::{self, CommonHeader, HEADER_LEN};
use super::param::{ErrorCause, Param, ReConfigParam};
use super::rack::Rack;
use super::receive::ReceiveTracker;
use super::reset::{ResponseOutcome, StreamReset};
use super::rto::RttEstimator;
use super::send_queue::{Pending, SendQueue};
use super::timer::{Timer, Timers};
use super::{Config, Error, Event, Reliability, SendOptions, State};

/// Control chunks and whole packets waiting to go out are capped, so that no
/// input (an INIT flood, a stream of HEARTBEATs) grows memory without bound.
const MAX_QUEUED_CONTROL: usize = 64;
/// Out-of-order TSNs further than this above the cumulative TSN are dropped.
const MAX_TSN_GAP: u64 = 1 << 20;
/// Most disjoint received ranges kept above the cumulative TSN.
const MAX_RANGES: usize = 4096;
/// Most reassembly runs (fragments of partial messages, by consecutive
/// TSNs) kept above the cumulative TSN.
const MAX_RUNS: usize = 4096;
/// What one held message or reassembly run costs besides its bytes (its
/// map entry, its allocation), charged to the receive window so that a
/// window of one-byte messages is not a million allocations.
const HELD_OVERHEAD: usize = 64;
/// Largest user data one DATA chunk can carry (its length field is 16 bits).
const MAX_DATA_PAYLOAD: usize = 65535 - DATA_HEADER_LEN;
/// The state cookie: version, timestamp, tags, TSNs, windows, streams, flags,
/// then an HMAC-SHA256 over all of it.
const COOKIE_BODY_LEN: usize = 1 + 8 + 4 + 4 + 4 + 4 + 4 + 2 + 2 + 1;
const COOKIE_LEN: usize = COOKIE_BODY_LEN + 32;

/// Serial number arithmetic on TSNs (RFC 9260 §1.6): `a < b`.
fn lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}
fn le(a: u32, b: u32) -> bool {
    a == b || lt(a, b)
}
fn ssn_lt(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) < 0
}

/// A DATA chunk sent and not yet acknowledged cumulatively.
#[derive(Debug)]
struct Sent {
    tsn: u32,
    stream: u16,
    ssn: u16,
    ppid: u32,
    flags: u8,
    data: Bytes,
    sent_at: Instant,
    /// Order of the latest transmission among all transmissions.
    sent_seq: u64,
    transmissions: u32,
    max_rtx: Option<u16>,
    expires: Option<Instant>,
    /// Acknowledged by a gap block.
    acked: bool,
    /// Given up on (PR-SCTP).
    abandoned: bool,
    /// Waiting in the retransmission queue.
    marked: bool,
    /// Counted in the flight size.
    in_flight: bool,
    misses: u8,
}

/// Consecutive fragments of one message (by TSN), joined as they arrive:
/// a fragment that continues a run is appended to its buffer, so an in-order
/// message costs one growing buffer, not one allocation per DATA chunk. Loss
/// splits a message into several runs; the fragment that fills the hole
/// joins them.
#[derive(Debug)]
struct Run {
    /// TSN of the last fragment in the run (the map key is the first).
    last: u64,
    stream: u16,
    ssn: u16,
    /// PPID of the first fragment (the one that counts when it has B set).
    ppid: u32,
    unordered: bool,
    /// The first fragment has the B bit: the run starts the message.
    begin: bool,
    /// The last fragment has the E bit: the run ends the message.
    end: bool,
    data: Vec<u8>,
}

impl Run {
    /// Whether a fragment may belong to the same message (RFC 9260 §6.9:
    /// one stream; ordered fragments share their SSN).
    fn matches(&self, stream: u16, ssn: u16, unordered: bool) -> bool {
        self.stream == stream && self.unordered == unordered && (unordered || self.ssn == ssn)
    }
}

#[derive(Debug, Default)]
struct OutStream {
    next_ssn: u16,
    /// Bytes sent by the user and not yet acknowledged or abandoned.
    buffered: usize,
    /// Fragments still waiting for a TSN.
    unsent: usize,
    resetting: bool,
}

#[derive(Debug, Default)]
struct InStream {
    next_ssn: u16,
    /// Complete ordered messages waiting for their turn, by SSN.
    waiting: HashMap<u16, (u32, Vec<u8>)>,
}

/// The handshake facts a state cookie carries (RFC 9260 §5.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cookie {
    created_ms: u64,
    local_tag: u32,
    local_tsn: u32,
    peer_tag: u32,
    peer_tsn: u32,
    peer_rwnd: u32,
    out_streams: u16,
    in_streams: u16,
    peer_forward_tsn: bool,
    peer_reconfig: bool,
}

/// What one SACK acknowledged, gathered step by step in
/// [`Association::on_sack`].
#[derive(Debug, Default)]
struct AckScan {
    /// The SACK moved the cumulative TSN.
    cum_advanced: bool,
    /// The flight size before the SACK.
    flight_before: usize,
    /// Bytes newly acknowledged by the cumulative TSN ack.
    cum_bytes: usize,
    /// Bytes newly acknowledged by gap blocks.
    gap_bytes: usize,
    /// The newly acknowledged chunk sent last: (send order, send time)
    /// (RACK, RFC 8985 §6.2).
    newest: Option<(u64, Instant)>,
    /// The RTT probe, if this SACK acknowledges it: (send order, RTT,
    /// transmissions).
    probe_hit: Option<(u64, Duration, u32)>,
    /// The highest TSN newly acknowledged by a gap block, and the latest
    /// send order among the chunks the gap blocks acknowledged (§7.2.4).
    htna: Option<u32>,
    htna_seq: u64,
}

/// What [`Association::emit_data_chunks`] put in the packet so far.
#[derive(Debug, Default)]
struct DataWritten {
    /// Any DATA chunk, new or retransmitted.
    wrote_data: bool,
    /// Where the last DATA chunk of the packet starts.
    last_chunk: Option<usize>,
    /// The TSN of the last new chunk.
    last_new_tsn: Option<u32>,
}

/// An SCTP association: sans-IO, deterministic given its RNG.
///
/// ```text
///  active side                                    passive side
///  connect() ── INIT ─────────────────────────────►  (no state kept)
///            ◄────────────────── INIT ACK + cookie ─┘
///            ── COOKIE ECHO ──────────────────────►  verify HMAC → ESTABLISHED
///  ESTABLISHED ◄──────────────────── COOKIE ACK ───┘
/// ```
#[derive(Debug)]
pub struct Association {
    config: Config,
    rng: StdRng,
    state: State,
    /// The first instant the association was given: cookie timestamps count from it.
    epoch: Option<Instant>,
    /// The last instant the association was given (`None` before the
    /// first input: a sans-IO machine reads no clock, DESIGN §2).
    now: Option<Instant>,
    cookie_key: hmac::Key,

    local_tag: u32,
    peer_tag: u32,
    local_initial_tsn: u32,
    init_chunk: Vec<u8>,
    cookie: Vec<u8>,
    /// Every timer of the association, one table.
    timers: Timers,
    init_retransmits: u32,
    peer_forward_tsn: bool,
    peer_reconfig: bool,
    out_streams: u16,
    in_streams: u16,
    connected_reported: bool,

    // Sender.
    next_tsn: u32,
    cum_ack: u32,
    advanced_peer_ack: u32,
    /// Fragments waiting for a TSN, per stream, round robin by message.
    send_queue: SendQueue,
    queued_bytes: usize,
    current_ssn: u16,
    inflight: VecDeque<Sent>,
    flight_size: usize,
    rtx_queue: VecDeque<u32>,
    peer_rwnd: u32,
    /// The congestion controller (RFC 9260 §7.2: [`NewReno`]).
    cc: Box<dyn Controller>,
    fast_rtx_packet: bool,
    /// SRTT, RTTVAR and RTO (RFC 9260 §6.3.1).
    rtt: RttEstimator,
    rtt_probe: Option<(u32, Instant)>,
    /// RFC 8985 RACK: the latest transmission known delivered.
    rack: Rack,
    error_count: u32,
    burst_left: usize,
    send_seq: u64,
    forward_tsn_pending: bool,
    out: HashMap<u16, OutStream>,
    touched: Vec<u16>,
    total_buffered: usize,

    // Receiver.
    /// Which TSNs arrived (cumulative TSN, gap blocks, duplicates).
    rx: ReceiveTracker,
    /// Runs of fragments by their first TSN.
    reassembly: BTreeMap<u64, Run>,
    rx_buffered: usize,
    inbound: HashMap<u16, InStream>,
    sack_now: bool,
    data_packets_unacked: u32,

    // Stream reset (RFC 6525).
    reset: StreamReset,

    // Liveness.
    heartbeat_nonce: Option<u64>,

    control: VecDeque<Vec<u8>>,
    packets: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    /// COOKIE ECHOs with a bad signature or a stale timestamp, dropped.
    pub bad_cookies: u64,
    /// Counters of what the sender did.
    pub stats: Stats,
}

/// What an association's sender did (for tests, benchmarks and chapters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// T3-rtx expirations.
    pub timeouts: u64,
    /// Chunks marked for fast retransmission.
    pub fast_retransmits: u64,
    /// DATA chunks sent again.
    pub retransmitted_chunks: u64,
    /// DATA chunks sent for the first time.
    pub sent_chunks: u64,
    /// Packets written.
    pub packets: u64,
}

impl Association {
    /// A closed association. Call [`Association::connect`] to be the active
    /// side, or just feed it packets: an INIT is answered (passive side).
    pub fn new(config: Config, rng: StdRng) -> Association {
        let mtu = config.mtu.max(HEADER_LEN + DATA_HEADER_LEN + 4);
        Association::with_controller(config, rng, Box::new(NewReno::new(mtu)))
    }

    /// As [`Association::new`], with another congestion controller.
    pub fn with_controller(
        config: Config,
        mut rng: StdRng,
        cc: Box<dyn Controller>,
    ) -> Association {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mtu = config.mtu.max(HEADER_LEN + DATA_HEADER_LEN + 4);
        let config = Config { mtu, ..config };
        Association {
            cookie_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            rng,
            state: State::Closed,
            epoch: None,
            now: None,
            local_tag: 0,
            peer_tag: 0,
            local_initial_tsn: 0,
            init_chunk: Vec::new(),
            cookie: Vec::new(),
            timers: Timers::default(),
            init_retransmits: 0,
            peer_forward_tsn: false,
            peer_reconfig: false,
            out_streams: config.streams,
            in_streams: config.streams,
            connected_reported: false,
            next_tsn: 0,
            cum_ack: 0,
            advanced_peer_ack: 0,
            send_queue: SendQueue::default(),
            queued_bytes: 0,
            current_ssn: 0,
            inflight: VecDeque::new(),
            flight_size: 0,
            rtx_queue: VecDeque::new(),
            peer_rwnd: 0,
            cc,
            fast_rtx_packet: false,
            rtt: RttEstimator::new(config.rto_initial, config.rto_min, config.rto_max),
            rtt_probe: None,
            rack: Rack::default(),
            error_count: 0,
            burst_left: config.max_burst,
            send_seq: 0,
            forward_tsn_pending: false,
            out: HashMap::new(),
            touched: Vec::new(),
            total_buffered: 0,
            rx: ReceiveTracker::default(),
            reassembly: BTreeMap::new(),
            rx_buffered: 0,
            inbound: HashMap::new(),
            sack_now: false,
            data_packets_unacked: 0,
            reset: StreamReset::default(),
            heartbeat_nonce: None,
            control: VecDeque::new(),
            packets: VecDeque::new(),
            events: VecDeque::new(),
            bad_cookies: 0,
            stats: Stats::default(),
            config,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> usize {
        self.cc.window()
    }

    /// Bytes sent and not yet acknowledged (the flight size).
    pub fn flight_size(&self) -> usize {
        self.flight_size
    }

    /// Bytes queued in total (all streams): unsent plus unacknowledged.
    pub fn total_buffered(&self) -> usize {
        self.total_buffered
    }

    /// Bytes of incoming data held for reassembly and ordering, plus a
    /// fixed 64 bytes per held message or run (its bookkeeping): at most
    /// the receive window, except for what chunks that fill the hole at the
    /// cumulative TSN + 1 add past it, and never more than
    /// [`Association::receive_limit`].
    pub fn receive_buffered(&self) -> usize {
        self.rx_buffered
    }

    /// The most bytes of incoming data this association ever holds: the
    /// receive window, plus room for the chunks at the cumulative TSN + 1
    /// that fill a hole, which are taken past the window (RFC 9260 §6.2).
    /// A peer that keeps to our window needs that room only for the one
    /// message it has us reassemble in order: `max_message_size`, and one
    /// chunk more (each held message or run also counts `HELD_OVERHEAD`
    /// bytes).
    pub fn receive_limit(&self) -> usize {
        (self.config.receive_window as usize)
            .saturating_add(self.config.max_message_size)
            .saturating_add(MAX_DATA_PAYLOAD)
            .saturating_add(2 * HELD_OVERHEAD)
    }

    /// Inbound streams with receive state (for tests).
    #[cfg(test)]
    pub(crate) fn inbound_stream_states(&self) -> usize {
        self.inbound.len()
    }

    /// Negotiated outbound and inbound stream counts.
    pub fn streams(&self) -> (u16, u16) {
        (self.out_streams, self.in_streams)
    }

    fn elapsed_ms(&self, now: Instant) -> u64 {
        self.epoch
            .map_or(0, |e| now.saturating_duration_since(e).as_millis() as u64)
    }

    /// Notes the current time (and the epoch, the first time).
    fn touch(&mut self, now: Instant) {
        self.now = Some(now);
        if self.epoch.is_none() {
            self.epoch = Some(now);
        }
    }

    fn nonzero_u32(&mut self) -> u32 {
        loop {
            let v: u32 = self.rng.random();
            if v != 0 {
                return v;
            }
        }
    }

    fn our_init_params(&self) -> Vec<Param> {
        vec![
            Param::SupportedExtensions(vec![kind::RE_CONFIG, kind::FORWARD_TSN]),
            Param::ForwardTsnSupported,
        ]
    }

    // ---------------------------------------------------------------- API

    /// Sends INIT (the active side, RFC 9260 §5.1 step A). Does nothing
    /// unless the association is closed.
    pub fn connect(&mut self, now: Instant) {
        self.touch(now);
        if self.state != State::Closed {
            return;
        }
        self.local_tag = self.nonzero_u32();
        self.local_initial_tsn = self.rng.random();
        self.reset_sender(self.local_initial_tsn);
        let init = Init {
            initiate_tag: self.local_tag,
            a_rwnd: self.config.receive_window,
            outbound_streams: self.config.streams,
            max_inbound_streams: self.config.streams,
            initial_tsn: self.local_initial_tsn,
            params: self.our_init_params(),
        };
        self.init_chunk.clear();
        Chunk::Init(init).emit(&mut self.init_chunk);
        self.state = State::CookieWait;
        self.init_retransmits = 0;
        self.rtt.restart();
        self.timers.set(Timer::T1, now + self.rtt.rto());
        let c = self.init_chunk.clone();
        self.queue_packet(0, &c);
    }

    fn reset_sender(&mut self, initial_tsn: u32) {
        self.next_tsn = initial_tsn;
        self.cum_ack = initial_tsn.wrapping_sub(1);
        self.advanced_peer_ack = self.cum_ack;
        self.reset.start_local(initial_tsn);
    }

    /// Queues one user message (RFC 9260 §6.9: fragmented here into DATA
    /// chunks that fit the MTU). Allowed from `connect` until shutdown.
    pub fn send(
        &mut self,
        now: Instant,
        stream: u16,
        ppid: u32,
        data: &[u8],
        options: SendOptions,
    ) -> Result<(), Error> {
        self.touch(now);
        match self.state {
            State::CookieWait | State::CookieEchoed | State::Established => {}
            s => return Err(Error::InvalidState(s)),
        }
        if data.is_empty() {
            return Err(Error::EmptyMessage);
        }
        if data.len() > self.config.max_message_size {
            return Err(Error::MessageTooLarge {
                size: data.len(),
                max: self.config.max_message_size,
            });
        }
        if stream >= self.out_streams {
            return Err(Error::InvalidStream(stream));
        }
        if self.total_buffered + data.len() > self.config.send_buffer {
            return Err(Error::BufferFull);
        }
        let st = self.out.entry(stream).or_default();
        if st.resetting {
            return Err(Error::StreamResetting(stream));
        }
        let (max_rtx, expires) = match options.reliability {
            Reliability::Reliable => (None, None),
            Reliability::MaxRetransmits(n) => (Some(n), None),
            Reliability::Lifetime(d) => (None, Some(now + d)),
        };
        // ANCHOR: fragment
        let max_payload = self.config.mtu - HEADER_LEN - DATA_HEADER_LEN;
        let mut all = Bytes::copy_from_slice(data);
        let n = data.len().div_ceil(max_payload);
        st.buffered += data.len();
        st.unsent += n;
        self.total_buffered += data.len();
        self.queued_bytes += data.len();
        let u = if options.unordered { FLAG_UNORDERED } else { 0 };
        for i in 0..n {
            let start = i * max_payload;
            let end = (start + max_payload).min(data.len());
            let mut flags = u;
            if i == 0 {
                flags |= FLAG_BEGIN;
            }
            if i == n - 1 {
                flags |= FLAG_END;
            }
            self.send_queue.push(Pending {
                stream,
                ppid,
                flags,
                // A one-chunk message takes the buffer as it is: slicing
                // (or cloning) a fresh `Bytes` allocates its shared header.
                data: if n == 1 {
                    std::mem::take(&mut all)
                } else {
                    all.slice(start..end)
                },
                max_rtx,
                expires,
            });
        }
        // ANCHOR_END: fragment
        if self.flight_size == 0 {
            self.burst_left = self.config.max_burst;
        }
        Ok(())
    }

    /// Bytes queued on `stream`: sent by the user, not yet acknowledged or abandoned.
    pub fn buffered_amount(&self, stream: u16) -> usize {
        self.out.get(&stream).map_or(0, |s| s.buffered)
    }

    /// Resets our outgoing `streams` (RFC 6525 §5.1.2; closing a data
    /// channel, RFC 8831 §6.7). Data already queued on them is sent first;
    /// `send` on them fails until [`Event::OutgoingStreamsReset`].
    pub fn reset_streams(&mut self, now: Instant, streams: &[u16]) -> Result<(), Error> {
        self.touch(now);
        if self.state != State::Established {
            return Err(Error::InvalidState(self.state));
        }
        if !self.peer_reconfig {
            return Err(Error::ResetNotSupported);
        }
        for &s in streams {
            if s >= self.out_streams {
                return Err(Error::InvalidStream(s));
            }
        }
        for &s in streams {
            let st = self.out.entry(s).or_default();
            if !st.resetting {
                st.resetting = true;
                self.reset.queue(s);
            }
        }
        self.try_send_reset(now);
        Ok(())
    }

    /// Starts a graceful shutdown (RFC 9260 §9.2): queued data is delivered
    /// first, then SHUTDOWN. [`Event::Closed`] follows.
    pub fn shutdown(&mut self, now: Instant) {
        self.touch(now);
        match self.state {
            State::Established => {
                self.state = State::ShutdownPending;
                self.check_shutdown(now);
            }
            State::CookieWait | State::CookieEchoed => {
                self.enter_closed();
                self.events.push_back(Event::Closed);
            }
            _ => {}
        }
    }

    /// Ends the association at once with ABORT (RFC 9260 §9.1).
    pub fn abort(&mut self, now: Instant) {
        self.touch(now);
        self.abort_with(ErrorCause::USER_INITIATED_ABORT, "aborted locally");
    }

    fn abort_with(&mut self, code: u16, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        if self.peer_tag != 0 {
            let mut c = Vec::new();
            Chunk::Abort {
                t: false,
                causes: vec![ErrorCause {
                    code,
                    info: reason.as_bytes().to_vec(),
                }],
            }
            .emit(&mut c);
            let tag = self.peer_tag;
            self.enter_closed();
            self.queue_packet(tag, &c);
        } else {
            self.enter_closed();
        }
        self.events.push_back(Event::Aborted {
            reason: reason.to_string(),
        });
    }

    fn enter_closed(&mut self) {
        tracing::debug!(from = ?self.state, "SCTP association closed");
        self.state = State::Closed;
        self.timers.stop_all();
        self.send_queue.clear();
        self.inflight.clear();
        self.rtx_queue.clear();
        self.reassembly.clear();
        self.rx.clear_ranges();
        self.inbound.clear();
        self.control.clear();
        self.packets.clear();
        self.flight_size = 0;
        self.queued_bytes = 0;
        self.total_buffered = 0;
        self.rx_buffered = 0;
        self.out.clear();
        self.peer_tag = 0;
        self.local_tag = 0;
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Association::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.poll_timeout()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _span = self.span().entered();
        self.touch(now);
        self.burst_left = self.burst_left.max(self.config.max_burst);
        // Each in turn, checked as its turn comes: a handler may stop or
        // start a later timer.
        for timer in Timer::ALL {
            if !self.timers.is_expired(timer, now) {
                continue;
            }
            match timer {
                Timer::T1 => self.on_t1(now),
                Timer::T2 => self.on_t2(now),
                Timer::T3 => self.on_t3(now),
                Timer::Rack => {
                    self.timers.stop(Timer::Rack);
                    if self.rack_detect_lost_retransmissions(now) {
                        self.enter_fast_recovery();
                        self.abandon_expired(now);
                    }
                }
                Timer::DelayedSack => {
                    self.timers.stop(Timer::DelayedSack);
                    self.sack_now = true;
                }
                Timer::Reconfig => self.on_reset_timer(now),
                Timer::Heartbeat => self.on_heartbeat_timer(now),
            }
        }
    }

    /// RFC 9260 §6.1 (D): Max.Burst limits the packets of new data sent in
    /// answer to one incoming packet. The credit adds up over the packets
    /// handled before the next transmission (a receive batch of several
    /// SACKs earns each its share), plus one packet per MTU a SACK removed
    /// from the network, so that SACKs that each cover many packets keep
    /// the ack clock going; it never exceeds cwnd plus Max.Burst packets.
    fn add_burst_credit(&mut self, packets: usize) {
        let cap = self.cc.window().div_ceil(self.config.mtu) + self.config.max_burst;
        self.burst_left = self.burst_left.saturating_add(packets).min(cap);
    }

    fn back_off(&mut self) {
        self.rtt.back_off();
    }

    /// RFC 9260 §5.1 T1-init / T1-cookie.
    fn on_t1(&mut self, now: Instant) {
        self.timers.stop(Timer::T1);
        if !matches!(self.state, State::CookieWait | State::CookieEchoed) {
            return;
        }
        self.init_retransmits += 1;
        if self.init_retransmits > self.config.max_init_retransmits {
            self.enter_closed();
            self.events.push_back(Event::Aborted {
                reason: "handshake timed out".into(),
            });
            return;
        }
        self.back_off();
        self.timers.set(Timer::T1, now + self.rtt.rto());
        if self.state == State::CookieWait {
            let c = self.init_chunk.clone();
            self.queue_packet(0, &c);
        } else {
            let mut c = Vec::new();
            Chunk::CookieEcho(self.cookie.clone()).emit(&mut c);
            self.queue_control(c);
        }
    }

    /// RFC 9260 §9.2 T2-shutdown.
    fn on_t2(&mut self, now: Instant) {
        self.timers.stop(Timer::T2);
        self.error_count += 1;
        if self.error_count > self.config.max_retransmits {
            self.abort_with(ErrorCause::PROTOCOL_VIOLATION, "shutdown timed out");
            return;
        }
        self.back_off();
        match self.state {
            State::ShutdownSent => self.send_shutdown(now),
            State::ShutdownAckSent => self.send_shutdown_ack(now),
            _ => {}
        }
    }

    /// RFC 9260 §6.3.3: T3-rtx expiry.
    fn on_t3(&mut self, now: Instant) {
        self.timers.stop(Timer::T3);
        if self.inflight.is_empty() && !self.forward_tsn_pending {
            return;
        }
        self.stats.timeouts += 1;
        self.error_count += 1;
        if self.error_count > self.config.max_retransmits {
            self.abort_with(
                ErrorCause::PROTOCOL_VIOLATION,
                "peer unreachable: too many retransmissions",
            );
            return;
        }
        // §7.2.3: back to slow start.
        self.cc.on_timeout();
        self.back_off();
        self.rtt_probe = None;
        // Mark everything outstanding for retransmission. RFC 9260 §6.3.3 E3:
        // the earliest outstanding TSNs go first, so the queue is rebuilt in
        // TSN order (`inflight` is kept in TSN order) rather than appended
        // behind chunks already queued by fast retransmit.
        self.rtx_queue.clear();
        for i in 0..self.inflight.len() {
            let s = &self.inflight[i];
            if s.acked || s.abandoned {
                continue;
            }
            self.mark_lost(i);
        }
        self.abandon_expired(now);
        if lt(self.cum_ack, self.advanced_peer_ack) {
            self.forward_tsn_pending = true;
        }
        self.timers.set(Timer::T3, now + self.rtt.rto());
    }

    fn on_heartbeat_timer(&mut self, now: Instant) {
        self.timers.stop(Timer::Heartbeat);
        let Some(interval) = self.config.heartbeat_interval else {
            return;
        };
        if self.state != State::Established {
            return;
        }
        if self.heartbeat_nonce.is_some() {
            self.error_count += 1;
            if self.error_count > self.config.max_retransmits {
                self.abort_with(
                    ErrorCause::PROTOCOL_VIOLATION,
                    "peer unreachable: heartbeats unanswered",
                );
                return;
            }
        }
        let nonce: u64 = self.rng.random();
        self.heartbeat_nonce = Some(nonce);
        let mut info = Vec::with_capacity(16);
        info.extend_from_slice(&self.elapsed_ms(now).to_be_bytes());
        info.extend_from_slice(&nonce.to_be_bytes());
        let mut c = Vec::new();
        Chunk::Heartbeat(info).emit(&mut c);
        self.queue_control(c);
        self.timers
            .set(Timer::Heartbeat, now + interval + self.rtt.rto());
    }

    fn on_reset_timer(&mut self, now: Instant) {
        self.timers.stop(Timer::Reconfig);
        if self.reset.is_outstanding() {
            self.error_count += 1;
            if self.error_count > self.config.max_retransmits {
                self.abort_with(ErrorCause::PROTOCOL_VIOLATION, "stream reset unanswered");
                return;
            }
            self.back_off();
            self.send_reset_request(now);
        }
    }

    fn queue_control(&mut self, chunk: Vec<u8>) {
        if self.control.len() < MAX_QUEUED_CONTROL {
            self.control.push_back(chunk);
        }
    }

    /// Queues a whole packet with its own verification tag (INIT, INIT ACK,
    /// out-of-the-blue answers).
    fn queue_packet(&mut self, vtag: u32, chunks: &[u8]) {
        if self.packets.len() >= MAX_QUEUED_CONTROL {
            return;
        }
        let mut p = Vec::with_capacity(HEADER_LEN + chunks.len());
        CommonHeader {
            source_port: self.config.local_port,
            destination_port: self.config.remote_port,
            verification_tag: vtag,
        }
        .emit(&mut p);
        p.extend_from_slice(chunks);
        packet::finish(&mut p);
        self.packets.push_back(p);
    }

    fn queue_packet_t(&mut self, vtag: u32, chunk: Chunk<'_>) {
        let mut c = Vec::new();
        chunk.emit(&mut c);
        self.queue_packet(vtag, &c);
    }

    // ---------------------------------------------------------------- input

    /// Handles one received SCTP packet. Malformed packets are dropped; a
    /// protocol violation aborts the association with an event.
    pub fn handle_packet(&mut self, now: Instant, pkt: &[u8]) {
        let _span = self.span().entered();
        self.touch(now);
        self.add_burst_credit(self.config.max_burst);
        if let Err(e) = packet::verify(pkt) {
            tracing::trace!(%e, "SCTP packet dropped");
            return;
        }
        packet::trace("in", pkt);
        let Ok(header) = CommonHeader::parse(pkt) else {
            return;
        };
        if header.destination_port != self.config.local_port {
            return;
        }
        // §3.2 / §6.10: every chunk length must be sound before any is acted on.
        let mut count = 0usize;
        let mut first = None;
        for c in packet::chunks(pkt) {
            match c {
                Ok(c) => {
                    if first.is_none() {
                        first = Some(c.typ);
                    }
                    count += 1;
                }
                Err(_) => return,
            }
        }
        let Some(first) = first else { return };
        // §6.10: INIT, INIT ACK and SHUTDOWN COMPLETE travel alone.
        if matches!(first, kind::INIT | kind::INIT_ACK | kind::SHUTDOWN_COMPLETE) && count > 1 {
            return;
        }
        let vtag = header.verification_tag;
        // §8.5.1: verification tag rules.
        match first {
            kind::INIT => {
                if vtag != 0 {
                    return;
                }
            }
            kind::ABORT | kind::SHUTDOWN_COMPLETE => {
                let t = pkt[13] & FLAG_T != 0;
                let ok = self.state != State::Closed
                    && ((!t && vtag == self.local_tag)
                        || (t && self.peer_tag != 0 && vtag == self.peer_tag));
                if !ok {
                    return;
                }
            }
            kind::COOKIE_ECHO => {} // checked against the cookie
            kind::SHUTDOWN_ACK if self.state == State::Closed || vtag != self.local_tag => {
                // §8.4 rule 5: answer with SHUTDOWN COMPLETE, T bit set.
                self.queue_packet_t(vtag, Chunk::ShutdownComplete { t: true });
                return;
            }
            _ => {
                if self.state == State::Closed {
                    // §8.4 rule 8: out of the blue → ABORT with the T bit.
                    if first != kind::ABORT {
                        self.queue_packet_t(
                            vtag,
                            Chunk::Abort {
                                t: true,
                                causes: Vec::new(),
                            },
                        );
                    }
                    return;
                }
                if vtag != self.local_tag {
                    return;
                }
            }
        }

        let mut got_data = false;
        let mut immediate = false;
        let had_gaps = self.rx.has_gaps();
        for raw in packet::chunks(pkt) {
            let Ok(raw) = raw else { return };
            if raw.typ == kind::DATA {
                // The hot path: no allocation for a whole message in one chunk.
                if raw.value.len() < 12 {
                    return;
                }
                let v = raw.value;
                let d = super::chunk::Data {
                    flags: raw.flags,
                    tsn: u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                    stream: u16::from_be_bytes([v[4], v[5]]),
                    ssn: u16::from_be_bytes([v[6], v[7]]),
                    ppid: u32::from_be_bytes([v[8], v[9], v[10], v[11]]),
                    payload: &v[12..],
                };
                if !matches!(
                    self.state,
                    State::Established | State::ShutdownPending | State::ShutdownSent
                ) {
                    continue;
                }
                if d.flags & FLAG_IMMEDIATE != 0 {
                    immediate = true;
                }
                got_data = true;
                self.on_data(now, d);
                if self.state == State::Closed {
                    return;
                }
                continue;
            }
            let chunk = match raw.parse() {
                Ok(c) => c,
                Err(_) => return,
            };
            let go_on = self.on_chunk(now, vtag, chunk, raw.value, pkt, raw.offset);
            if !go_on || self.state == State::Closed && raw.typ != kind::COOKIE_ECHO {
                break;
            }
        }
        if got_data {
            self.data_packets_unacked += 1;
            // §6.2: SACK at least every second packet, at once on gaps or
            // duplicates (§6.7: after each packet while a gap is open). Also
            // at once on the packet that closes a gap, as TCP does (RFC 5681
            // §4.2), so that the sender learns without the 200 ms delay that
            // its retransmission arrived (§6.2 bounds how long a SACK may
            // wait, never how soon it may go).
            if immediate
                || had_gaps
                || self.data_packets_unacked >= 2
                || self.rx.has_gaps()
                || self.rx.has_dups()
            {
                self.sack_now = true;
            } else if !self.timers.is_running(Timer::DelayedSack) {
                self.timers
                    .set(Timer::DelayedSack, now + self.config.delayed_sack);
            }
            self.check_deferred_reset(now);
        }
        if self.state == State::Established {
            if let Some(i) = self.config.heartbeat_interval {
                if self.heartbeat_nonce.is_none() {
                    self.timers.set(Timer::Heartbeat, now + i);
                }
            }
        }
    }

    /// Handles one control chunk; returns false to stop processing the packet.
    fn on_chunk(
        &mut self,
        now: Instant,
        vtag: u32,
        chunk: Chunk<'_>,
        value: &[u8],
        pkt: &[u8],
        offset: usize,
    ) -> bool {
        match chunk {
            Chunk::Init(init) => self.on_init(init),
            Chunk::InitAck(init) => self.on_init_ack(now, init),
            Chunk::CookieEcho(cookie) => return self.on_cookie_echo(now, vtag, &cookie),
            Chunk::CookieAck => {
                if self.state == State::CookieEchoed {
                    self.timers.stop(Timer::T1);
                    self.establish(now);
                }
            }
            Chunk::Sack(sack) => self.on_sack(now, &sack),
            Chunk::Heartbeat(info) => {
                let mut c = Vec::new();
                Chunk::HeartbeatAck(info).emit(&mut c);
                self.queue_control(c);
            }
            Chunk::HeartbeatAck(info) => {
                if info.len() == 16 {
                    let sent = u64::from_be_bytes(info[..8].try_into().unwrap_or([0; 8]));
                    let nonce = u64::from_be_bytes(info[8..].try_into().unwrap_or([0; 8]));
                    if Some(nonce) == self.heartbeat_nonce {
                        self.heartbeat_nonce = None;
                        self.error_count = 0;
                        let rtt = self.elapsed_ms(now).saturating_sub(sent);
                        self.rtt.sample(Duration::from_millis(rtt));
                        if let Some(i) = self.config.heartbeat_interval {
                            self.timers.set(Timer::Heartbeat, now + i);
                        }
                    }
                }
            }
            Chunk::Abort { causes, .. } => {
                let reason = if causes.is_empty() {
                    "aborted by peer".to_string()
                } else {
                    format!(
                        "aborted by peer: {}",
                        causes
                            .iter()
                            .map(ErrorCause::describe)
                            .collect::<Vec<_>>()
                            .join("; ")
                    )
                };
                self.enter_closed();
                self.events.push_back(Event::Aborted { reason });
                return false;
            }
            Chunk::Shutdown { cum_tsn_ack } => self.on_shutdown(now, cum_tsn_ack),
            Chunk::ShutdownAck => {
                if matches!(self.state, State::ShutdownSent | State::ShutdownAckSent) {
                    let tag = self.peer_tag;
                    self.enter_closed();
                    self.queue_packet_t(tag, Chunk::ShutdownComplete { t: false });
                    self.events.push_back(Event::Closed);
                    return false;
                }
            }
            Chunk::ShutdownComplete { .. } => {
                if self.state == State::ShutdownAckSent {
                    self.enter_closed();
                    self.events.push_back(Event::Closed);
                    return false;
                }
            }
            Chunk::Error(_) => {}
            Chunk::ForwardTsn(f) => self.on_forward_tsn(now, &f),
            Chunk::ReConfig(params) => self.on_reconfig(now, params),
            Chunk::Data(_) | Chunk::IData(_) | Chunk::IForwardTsn(_) => {
                // I-DATA was never negotiated (§3.2 of RFC 8260: a peer must not send it).
                self.abort_with(ErrorCause::PROTOCOL_VIOLATION, "I-DATA without negotiation");
                return false;
            }
            Chunk::Unknown { typ, .. } => {
                // §3.2: the upper two bits of the type.
                let report = typ & 0x40 != 0;
                let skip = typ & 0x80 != 0;
                if report {
                    let len = (4 + value.len()).min(pkt.len() - offset);
                    let mut c = Vec::new();
                    Chunk::Error(vec![ErrorCause {
                        code: ErrorCause::UNRECOGNIZED_CHUNK,
                        info: pkt[offset..offset + len].to_vec(),
                    }])
                    .emit(&mut c);
                    if self.state != State::Closed {
                        self.queue_control(c);
                    }
                }
                return skip;
            }
        }
        true
    }

    fn on_init(&mut self, init: Init) {
        if init.initiate_tag == 0 {
            return;
        }
        // §5.2.1: in COOKIE-WAIT / COOKIE-ECHOED answer with our original
        // tag and TSN; when closed, with fresh ones kept only in the cookie.
        let (tag, tsn) = match self.state {
            State::Closed => (self.nonzero_u32(), self.rng.random()),
            State::CookieWait | State::CookieEchoed => (self.local_tag, self.local_initial_tsn),
            // Restart (§5.2.2 / case A) is not supported: ignore.
            _ => return,
        };
        let mut unrecognized = Vec::new();
        let (peer_forward_tsn, peer_reconfig) = peer_features(&init.params, &mut unrecognized);
        let cookie = Cookie {
            created_ms: self.now.map_or(0, |now| self.elapsed_ms(now)),
            local_tag: tag,
            local_tsn: tsn,
            peer_tag: init.initiate_tag,
            peer_tsn: init.initial_tsn,
            peer_rwnd: init.a_rwnd,
            out_streams: self.config.streams.min(init.max_inbound_streams),
            in_streams: self.config.streams.min(init.outbound_streams),
            peer_forward_tsn,
            peer_reconfig,
        };
        let mut params = vec![Param::StateCookie(self.sign_cookie(&cookie))];
        params.extend(self.our_init_params());
        params.extend(unrecognized.into_iter().map(Param::UnrecognizedParameter));
        let ack = Init {
            initiate_tag: tag,
            a_rwnd: self.config.receive_window,
            outbound_streams: self.config.streams,
            max_inbound_streams: self.config.streams,
            initial_tsn: tsn,
            params,
        };
        self.queue_packet_t(init.initiate_tag, Chunk::InitAck(ack));
    }

    fn on_init_ack(&mut self, now: Instant, ack: Init) {
        if self.state != State::CookieWait || ack.initiate_tag == 0 {
            return;
        }
        let Some(cookie) = ack.params.iter().find_map(|p| match p {
            Param::StateCookie(c) => Some(c.clone()),
            _ => None,
        }) else {
            self.abort_with(2, "INIT ACK without state cookie");
            return;
        };
        let mut unrecognized = Vec::new();
        let (f, r) = peer_features(&ack.params, &mut unrecognized);
        self.peer_forward_tsn = f;
        self.peer_reconfig = r;
        self.peer_tag = ack.initiate_tag;
        self.peer_rwnd = ack.a_rwnd;
        self.cc.on_peer_window(ack.a_rwnd);
        self.out_streams = self.config.streams.min(ack.max_inbound_streams);
        self.in_streams = self.config.streams.min(ack.outbound_streams);
        self.init_receiver(ack.initial_tsn);
        self.cookie = cookie;
        self.state = State::CookieEchoed;
        self.init_retransmits = 0;
        self.timers.set(Timer::T1, now + self.rtt.rto());
        let mut c = Vec::new();
        Chunk::CookieEcho(self.cookie.clone()).emit(&mut c);
        self.queue_control(c);
    }

    fn init_receiver(&mut self, peer_initial_tsn: u32) {
        // Unwrapped TSNs start at 2^32 so that serial arithmetic never goes negative.
        self.rx.init(peer_initial_tsn);
        self.reset.start_peer(peer_initial_tsn);
    }

    fn sign_cookie(&self, c: &Cookie) -> Vec<u8> {
        let mut v = Vec::with_capacity(COOKIE_LEN);
        v.push(1);
        v.extend_from_slice(&c.created_ms.to_be_bytes());
        v.extend_from_slice(&c.local_tag.to_be_bytes());
        v.extend_from_slice(&c.local_tsn.to_be_bytes());
        v.extend_from_slice(&c.peer_tag.to_be_bytes());
        v.extend_from_slice(&c.peer_tsn.to_be_bytes());
        v.extend_from_slice(&c.peer_rwnd.to_be_bytes());
        v.extend_from_slice(&c.out_streams.to_be_bytes());
        v.extend_from_slice(&c.in_streams.to_be_bytes());
        v.push(c.peer_forward_tsn as u8 | (c.peer_reconfig as u8) << 1);
        let tag = hmac::sign(&self.cookie_key, &v);
        v.extend_from_slice(tag.as_ref());
        v
    }

    /// RFC 9260 §5.1.5: a cookie is ours if its HMAC verifies and it is not stale.
    fn open_cookie(&self, now: Instant, v: &[u8]) -> Option<Cookie> {
        if v.len() != COOKIE_LEN || v[0] != 1 {
            return None;
        }
        let (body, mac) = v.split_at(COOKIE_BODY_LEN);
        hmac::verify(&self.cookie_key, body, mac).ok()?;
        let u32at = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
        let u16at = |i: usize| u16::from_be_bytes([body[i], body[i + 1]]);
        let mut ms = [0u8; 8];
        ms.copy_from_slice(&body[1..9]);
        let c = Cookie {
            created_ms: u64::from_be_bytes(ms),
            local_tag: u32at(9),
            local_tsn: u32at(13),
            peer_tag: u32at(17),
            peer_tsn: u32at(21),
            peer_rwnd: u32at(25),
            out_streams: u16at(29),
            in_streams: u16at(31),
            peer_forward_tsn: body[33] & 1 != 0,
            peer_reconfig: body[33] & 2 != 0,
        };
        let age = self.elapsed_ms(now).checked_sub(c.created_ms)?;
        if age > self.config.cookie_lifetime.as_millis() as u64 {
            return None;
        }
        Some(c)
    }

    /// RFC 9260 §5.1 step D and §5.2.4. Returns whether to go on with the packet.
    fn on_cookie_echo(&mut self, now: Instant, vtag: u32, raw: &[u8]) -> bool {
        let Some(c) = self.open_cookie(now, raw) else {
            self.bad_cookies += 1;
            return false;
        };
        if vtag != c.local_tag {
            return false;
        }
        match self.state {
            State::Closed => {
                self.local_tag = c.local_tag;
                self.local_initial_tsn = c.local_tsn;
                self.reset_sender(c.local_tsn);
            }
            State::CookieWait | State::CookieEchoed => {
                // §5.2.4 case B (collision: our tag, the peer's new tag) or D.
                if c.local_tag != self.local_tag {
                    return false;
                }
                self.timers.stop(Timer::T1);
            }
            _ => {
                // Case D in ESTABLISHED: our COOKIE ACK was lost; send it again.
                if c.local_tag == self.local_tag && c.peer_tag == self.peer_tag {
                    let mut a = Vec::new();
                    Chunk::CookieAck.emit(&mut a);
                    self.queue_control(a);
                    return true;
                }
                return false;
            }
        }
        self.peer_tag = c.peer_tag;
        self.peer_rwnd = c.peer_rwnd;
        self.cc.on_peer_window(c.peer_rwnd);
        self.out_streams = c.out_streams;
        self.in_streams = c.in_streams;
        self.peer_forward_tsn = c.peer_forward_tsn;
        self.peer_reconfig = c.peer_reconfig;
        self.init_receiver(c.peer_tsn);
        let mut a = Vec::new();
        Chunk::CookieAck.emit(&mut a);
        self.queue_control(a);
        self.establish(now);
        true
    }

    fn establish(&mut self, now: Instant) {
        self.state = State::Established;
        self.init_retransmits = 0;
        self.error_count = 0;
        // §6.3.1: the RTO was backed off by handshake losses; start afresh.
        self.rtt.restart();
        if let Some(i) = self.config.heartbeat_interval {
            self.timers.set(Timer::Heartbeat, now + i);
        }
        if !self.connected_reported {
            self.connected_reported = true;
            tracing::debug!(peer_tag = self.peer_tag, "SCTP association established");
            self.events.push_back(Event::Connected);
        }
    }

    // ---------------------------------------------------------------- receiver

    fn unwrap_tsn(&self, tsn: u32) -> u64 {
        self.rx.unwrap(tsn)
    }

    fn a_rwnd(&self) -> u32 {
        (self.config.receive_window as usize).saturating_sub(self.rx_buffered) as u32
    }

    fn on_data(&mut self, now: Instant, d: super::chunk::Data<'_>) {
        if d.payload.is_empty() {
            // §6.2: a DATA chunk without user data.
            self.abort_with(9, "DATA chunk without user data");
            return;
        }
        let t = self.unwrap_tsn(d.tsn);
        if self.rx.is_received(t) {
            self.rx.note_duplicate(d.tsn);
            return;
        }
        if t > self.rx.cum() + MAX_TSN_GAP {
            return;
        }
        if !self.admits(t, &d) {
            // §6.2: a DATA chunk dropped for want of room is answered at
            // once with a SACK that shows only what was accepted.
            self.sack_now = true;
            return;
        }
        let advances = t == self.rx.cum() + 1;
        self.rx.record(t);
        if d.stream >= self.in_streams {
            // §6.5: acknowledge, discard, report an invalid stream.
            let mut info = Vec::with_capacity(4);
            info.extend_from_slice(&d.stream.to_be_bytes());
            info.extend_from_slice(&[0, 0]);
            let mut c = Vec::new();
            Chunk::Error(vec![ErrorCause { code: 1, info }]).emit(&mut c);
            self.queue_control(c);
        } else {
            self.take_data(now, t, d);
        }
        if advances {
            // The cumulative TSN moved (maybe past ranges received before).
            self.drop_dead_runs();
        }
    }

    /// Delivers a whole message or joins a fragment to its run.
    fn take_data(&mut self, now: Instant, t: u64, d: super::chunk::Data<'_>) {
        let unordered = d.flags & FLAG_UNORDERED != 0;
        if d.flags & (FLAG_BEGIN | FLAG_END) == FLAG_BEGIN | FLAG_END {
            self.deliver(now, d.stream, d.ssn, unordered, d.ppid, d.payload.to_vec());
        } else {
            self.add_fragment(now, t, d);
        }
    }

    /// RFC 9260 §6.2: whether a DATA chunk for the new TSN `t` may be
    /// kept. The receive window bounds what we hold. With no room, §6.2
    /// drops a chunk above the highest TSN received (MUST) and, for one
    /// below it, would rather drop the highest TSN held (renege) to make
    /// room (SHOULD). We do not renege (a sender must then notice that
    /// gap-acked data is gone); instead, past the window, a chunk below the
    /// highest TSN is taken only if it is the one at the cumulative TSN +
    /// 1, since it alone is sure to let held data drain (the cumulative
    /// TSN moves up to that data, completing or extending messages), and
    /// only within [`Association::receive_limit`]. Anything else is dropped
    /// and comes again: otherwise a peer could fill every hole of a
    /// 2^20-TSN gap with fragments that never complete. Chunks that would
    /// open one more range of received TSNs or one more reassembly run are
    /// dropped likewise past `MAX_RANGES` and `MAX_RUNS`.
    fn admits(&self, t: u64, d: &super::chunk::Data<'_>) -> bool {
        let advances = t == self.rx.cum() + 1;
        let limit = if advances && t < self.rx.highest() {
            self.receive_limit()
        } else {
            self.config.receive_window as usize
        };
        if self.rx_buffered + d.payload.len() + HELD_OVERHEAD > limit {
            return false;
        }
        if advances {
            return true;
        }
        // A new range unless it touches one: t - 1 received, or t + 1 a start.
        let touches = self.rx.is_received(t - 1) || self.rx.range_starts_at(t + 1);
        if !touches && self.rx.range_count() >= MAX_RANGES {
            return false;
        }
        let whole = d.flags & (FLAG_BEGIN | FLAG_END) == FLAG_BEGIN | FLAG_END;
        if !whole && self.reassembly.len() >= MAX_RUNS {
            // Only a middle or last fragment that continues a run adds none.
            let continues = d.flags & FLAG_BEGIN == 0
                && self
                    .reassembly
                    .range(..t)
                    .next_back()
                    .is_some_and(|(_, r)| r.last == t - 1 && !r.end);
            if !continues {
                return false;
            }
        }
        true
    }

    /// Accounts for one held message or run, of `bytes`, let go.
    fn release(&mut self, bytes: usize) {
        self.rx_buffered = self.rx_buffered.saturating_sub(bytes + HELD_OVERHEAD);
    }

    /// Drops the reassembly runs that can no longer complete once the
    /// cumulative TSN has passed their edge: a run without its E fragment
    /// whose next TSN was received and did not join it, or a run without
    /// its B fragment whose previous TSN was. RFC 9260 §6.9: the fragments
    /// of one message take consecutive TSNs, so a fragment arriving at
    /// either edge would have been joined to the run when it came.
    fn drop_dead_runs(&mut self) {
        let cum = self.rx.cum();
        loop {
            let dead = self
                .reassembly
                .range(..=cum + 1)
                .find(|(_, r)| !r.begin || (!r.end && r.last < cum))
                .map(|(&k, _)| k);
            let Some(k) = dead else {
                break;
            };
            if let Some(run) = self.reassembly.remove(&k) {
                self.release(run.data.len());
            }
        }
    }

    /// RFC 9260 §6.9: joins a fragment to the run it continues (or starts a
    /// run), joins the run that follows it, and delivers the message once
    /// one run goes from a B fragment to an E fragment. Fragments that
    /// disagree on stream or SSN, or a message past `max_message_size`,
    /// abort the association.
    fn add_fragment(&mut self, now: Instant, t: u64, d: super::chunk::Data<'_>) {
        let unordered = d.flags & FLAG_UNORDERED != 0;
        let begin = d.flags & FLAG_BEGIN != 0;
        let end = d.flags & FLAG_END != 0;
        let mut key = None;
        let mut consistent = true;
        if !begin && t > 0 {
            if let Some((&k, r)) = self.reassembly.range_mut(..t).next_back() {
                if r.last == t - 1 && !r.end {
                    if r.matches(d.stream, d.ssn, unordered) {
                        r.data.extend_from_slice(d.payload);
                        r.last = t;
                        r.end = end;
                        key = Some(k);
                    } else {
                        consistent = false;
                    }
                }
            }
        }
        self.rx_buffered += d.payload.len();
        let key = match key {
            Some(k) => k,
            None => {
                self.rx_buffered += HELD_OVERHEAD;
                self.reassembly.insert(
                    t,
                    Run {
                        last: t,
                        stream: d.stream,
                        ssn: d.ssn,
                        ppid: d.ppid,
                        unordered,
                        begin,
                        end,
                        data: d.payload.to_vec(),
                    },
                );
                t
            }
        };
        // The run that starts right after this one may now join it.
        let Some(run) = self.reassembly.get(&key) else {
            return;
        };
        let (last, run_end) = (run.last, run.end);
        if !run_end && self.reassembly.get(&(last + 1)).is_some_and(|n| !n.begin) {
            if let Some(next) = self.reassembly.remove(&(last + 1)) {
                self.release(0);
                if let Some(run) = self.reassembly.get_mut(&key) {
                    if run.matches(next.stream, next.ssn, next.unordered) {
                        run.data.extend_from_slice(&next.data);
                        run.last = next.last;
                        run.end = next.end;
                    } else {
                        self.rx_buffered = self.rx_buffered.saturating_sub(next.data.len());
                        consistent = false;
                    }
                }
            }
        }
        if !consistent {
            self.abort_with(
                ErrorCause::PROTOCOL_VIOLATION,
                "fragments of one message disagree on stream or SSN",
            );
            return;
        }
        let Some(run) = self.reassembly.get(&key) else {
            return;
        };
        // ANCHOR: reassembly_cap
        if run.data.len() > self.config.max_message_size {
            self.abort_with(
                ErrorCause::PROTOCOL_VIOLATION,
                "reassembled message exceeds max message size",
            );
            return;
        }
        // ANCHOR_END: reassembly_cap
        if run.begin && run.end {
            if let Some(run) = self.reassembly.remove(&key) {
                self.release(run.data.len());
                self.deliver(now, run.stream, run.ssn, run.unordered, run.ppid, run.data);
            }
        }
    }

    fn deliver(
        &mut self,
        _now: Instant,
        stream: u16,
        ssn: u16,
        unordered: bool,
        ppid: u32,
        data: Vec<u8>,
    ) {
        if unordered {
            self.events.push_back(Event::Message { stream, ppid, data });
            return;
        }
        let st = self.inbound.entry(stream).or_default();
        if ssn == st.next_ssn {
            st.next_ssn = st.next_ssn.wrapping_add(1);
            self.events.push_back(Event::Message { stream, ppid, data });
            while let Some((ppid, data)) = st.waiting.remove(&st.next_ssn) {
                self.rx_buffered = self.rx_buffered.saturating_sub(data.len() + HELD_OVERHEAD);
                st.next_ssn = st.next_ssn.wrapping_add(1);
                self.events.push_back(Event::Message { stream, ppid, data });
            }
        } else if ssn_lt(st.next_ssn, ssn) {
            self.rx_buffered += data.len() + HELD_OVERHEAD;
            if let Some((_, old)) = st.waiting.insert(ssn, (ppid, data)) {
                self.rx_buffered = self.rx_buffered.saturating_sub(old.len() + HELD_OVERHEAD);
            }
        }
        // An SSN below next_ssn is a stale duplicate: dropped.
    }

    /// RFC 3758 §3.6: move the cumulative TSN, drop fragments below it,
    /// deliver what was waiting behind the skipped messages.
    fn on_forward_tsn(&mut self, now: Instant, f: &ForwardTsn) {
        if !matches!(
            self.state,
            State::Established | State::ShutdownPending | State::ShutdownSent
        ) {
            return;
        }
        self.sack_now = true;
        let new = self.unwrap_tsn(f.new_cum_tsn);
        if new <= self.rx.cum() || new > self.rx.cum() + MAX_TSN_GAP {
            return;
        }
        // Drop ranges at or below the new point, then merge what touches it.
        self.rx.forward_to(new);
        // Runs that start at or below the new point belong to skipped
        // messages (the sender abandons whole messages, RFC 3758 §3.5 A3).
        let keep = self.reassembly.split_off(&(new + 1));
        let dropped = std::mem::replace(&mut self.reassembly, keep);
        for (_, run) in dropped {
            self.release(run.data.len());
        }
        for &(stream, ssn) in &f.streams {
            if stream >= self.in_streams {
                // No such stream (§6.5 for DATA): no state to move, none to make.
                continue;
            }
            let Some(st) = self.inbound.get_mut(&stream) else {
                self.inbound.entry(stream).or_default().next_ssn = ssn.wrapping_add(1);
                continue;
            };
            // Deliver the complete messages up to the skipped SSN, then move on.
            while ssn_lt(st.next_ssn, ssn.wrapping_add(1)) {
                if let Some((ppid, data)) = st.waiting.remove(&st.next_ssn) {
                    self.rx_buffered = self.rx_buffered.saturating_sub(data.len() + HELD_OVERHEAD);
                    self.events.push_back(Event::Message { stream, ppid, data });
                }
                st.next_ssn = st.next_ssn.wrapping_add(1);
            }
            while let Some((ppid, data)) = st.waiting.remove(&st.next_ssn) {
                self.rx_buffered = self.rx_buffered.saturating_sub(data.len() + HELD_OVERHEAD);
                st.next_ssn = st.next_ssn.wrapping_add(1);
                self.events.push_back(Event::Message { stream, ppid, data });
            }
        }
        self.drop_dead_runs();
        self.check_deferred_reset(now);
    }

    /// Writes a SACK for the current receive state (RFC 9260 §6.2, §3.3.4).
    fn emit_sack(&mut self, out: &mut Vec<u8>, room: usize) {
        let a_rwnd = self.a_rwnd();
        self.rx.emit_sack(out, room, a_rwnd);
        self.sack_now = false;
        self.timers.stop(Timer::DelayedSack);
        self.data_packets_unacked = 0;
    }

    // ---------------------------------------------------------------- sender

    fn index_of(&self, tsn: u32) -> Option<usize> {
        let i = tsn.wrapping_sub(self.cum_ack.wrapping_add(1)) as usize;
        (i < self.inflight.len()).then_some(i)
    }

    fn note_decrease(&mut self, stream: u16, bytes: usize) {
        if let Some(st) = self.out.get_mut(&stream) {
            st.buffered = st.buffered.saturating_sub(bytes);
        }
        self.total_buffered = self.total_buffered.saturating_sub(bytes);
        if !self.touched.contains(&stream) {
            self.touched.push(stream);
        }
    }

    fn flush_decreases(&mut self) {
        for i in 0..self.touched.len() {
            let stream = self.touched[i];
            let buffered = self.buffered_amount(stream);
            self.events
                .push_back(Event::BufferedAmountDecreased { stream, buffered });
        }
        self.touched.clear();
    }

    /// RFC 9260 §6.2.1, §7.2: process a SACK, in steps: check it, advance
    /// the cumulative TSN, mark what the gap blocks acknowledge, take an
    /// RTT sample, detect losses, update the congestion window, restart
    /// or stop T3-rtx.
    fn on_sack(&mut self, now: Instant, sack: &Sack) {
        if !self.sack_is_acceptable(sack) {
            return;
        }
        let mut scan = AckScan {
            cum_advanced: lt(self.cum_ack, sack.cum_tsn_ack),
            flight_before: self.flight_size,
            ..AckScan::default()
        };
        self.advance_cum_ack(now, sack.cum_tsn_ack, &mut scan);
        self.mark_gap_acks(now, sack, &mut scan);
        self.take_rtt_sample(&scan);
        self.add_burst_credit((scan.cum_bytes + scan.gap_bytes).div_ceil(self.config.mtu));
        // §6.2.1: rwnd = a_rwnd minus what is still in flight.
        self.peer_rwnd = sack.a_rwnd.saturating_sub(self.flight_size as u32);
        let new_loss = self.detect_losses(now, sack, &mut scan);
        self.update_congestion_window(now, new_loss, &scan);
        if scan.cum_advanced {
            self.error_count = 0;
        }
        self.restart_t3(now, scan.cum_advanced);
        // RFC 3758 §3.5 C1–C3: advance the peer ack point over abandoned chunks.
        self.advance_peer_ack_point();
        self.flush_decreases();
        self.try_send_reset(now);
        self.check_shutdown(now);
    }

    /// Whether a SACK is one to act on: in a state that sends data, not
    /// older than what we know (out of order), and acknowledging nothing
    /// never sent (a protocol violation: the association is aborted).
    fn sack_is_acceptable(&mut self, sack: &Sack) -> bool {
        if !matches!(
            self.state,
            State::Established
                | State::ShutdownPending
                | State::ShutdownSent
                | State::ShutdownReceived
        ) {
            return false;
        }
        let cum = sack.cum_tsn_ack;
        if lt(cum, self.cum_ack) {
            return false; // stale, out of order
        }
        let highest_sent = self.next_tsn.wrapping_sub(1);
        if lt(highest_sent, cum) {
            self.abort_with(
                ErrorCause::PROTOCOL_VIOLATION,
                "SACK acknowledges a TSN never sent",
            );
            return false;
        }
        for g in &sack.gaps {
            let end = cum.wrapping_add(g.end as u32);
            if g.start == 0 || g.start > g.end || lt(highest_sent, end) {
                self.abort_with(
                    ErrorCause::PROTOCOL_VIOLATION,
                    "SACK gap block acknowledges a TSN never sent",
                );
                return false;
            }
        }
        true
    }

    /// Notes, while scanning a SACK, that the chunk `s` (with TSN `tsn`)
    /// was newly acknowledged: for RACK (the one sent last) and the RTT
    /// probe.
    fn note_newly_acked(
        &mut self,
        now: Instant,
        tsn: u32,
        sent_seq: u64,
        sent_at: Instant,
        transmissions: u32,
        scan: &mut AckScan,
    ) {
        if scan.newest.is_none_or(|(q, _)| q < sent_seq) {
            scan.newest = Some((sent_seq, sent_at));
        }
        if let Some((p, at)) = self.rtt_probe
            && p == tsn
        {
            self.rtt_probe = None;
            scan.probe_hit = Some((sent_seq, now.saturating_duration_since(at), transmissions));
        }
    }

    /// §6.2.1 step: the cumulative TSN ack. Chunks up to it leave the
    /// flight and the retransmission bookkeeping.
    fn advance_cum_ack(&mut self, now: Instant, cum: u32, scan: &mut AckScan) {
        while let Some(front) = self.inflight.front() {
            if !le(front.tsn, cum) {
                break;
            }
            let Some(s) = self.inflight.pop_front() else {
                break;
            };
            self.cum_ack = s.tsn;
            if s.in_flight {
                self.flight_size = self.flight_size.saturating_sub(s.data.len());
            }
            if !s.acked {
                scan.cum_bytes += s.data.len();
                if scan.newest.is_none_or(|(q, _)| q < s.sent_seq) {
                    scan.newest = Some((s.sent_seq, s.sent_at));
                }
            }
            if let Some((p, at)) = self.rtt_probe
                && p == s.tsn
            {
                self.rtt_probe = None;
                scan.probe_hit = Some((
                    s.sent_seq,
                    now.saturating_duration_since(at),
                    s.transmissions,
                ));
            }
            if !s.abandoned {
                self.note_decrease(s.stream, s.data.len());
            }
        }
        if lt(self.cum_ack, cum) {
            // Acked past what we still track (abandoned chunks the peer skipped).
            self.cum_ack = cum;
        }
        if lt(self.advanced_peer_ack, self.cum_ack) {
            self.advanced_peer_ack = self.cum_ack;
        }
    }

    /// §6.2.1 step: chunks in the gap blocks are acknowledged (not yet
    /// cumulatively): out of the flight, not to be retransmitted.
    fn mark_gap_acks(&mut self, now: Instant, sack: &Sack, scan: &mut AckScan) {
        let cum = sack.cum_tsn_ack;
        for g in &sack.gaps {
            for off in g.start..=g.end {
                let tsn = cum.wrapping_add(off as u32);
                let Some(i) = self.index_of(tsn) else {
                    continue;
                };
                let s = &mut self.inflight[i];
                if s.acked {
                    continue;
                }
                s.acked = true;
                s.marked = false;
                if s.in_flight {
                    s.in_flight = false;
                    self.flight_size = self.flight_size.saturating_sub(s.data.len());
                }
                scan.gap_bytes += s.data.len();
                // Gap blocks ascend: the last newly acked TSN is the highest.
                scan.htna = Some(tsn);
                scan.htna_seq = scan.htna_seq.max(s.sent_seq);
                let (sent_seq, sent_at, transmissions) = (s.sent_seq, s.sent_at, s.transmissions);
                self.note_newly_acked(now, tsn, sent_seq, sent_at, transmissions, scan);
            }
        }
    }

    /// §6.3.1 C5 (Karn): never a retransmitted chunk. And only when the
    /// probe is the newest chunk this SACK acknowledges: the peer SACKed
    /// at once on it (it carried the I bit). A SACK that also covers
    /// later chunks, or that comes after an earlier SACK was lost, may
    /// have waited for the peer's delayed-SACK timer, and one such
    /// sample (220 ms on a 20 ms path) holds the RTO near 700 ms for
    /// many round trips.
    fn take_rtt_sample(&mut self, scan: &AckScan) {
        if let Some((seq, r, transmissions)) = scan.probe_hit
            && transmissions == 1
            && scan.newest.is_some_and(|(q, _)| q == seq)
        {
            self.rtt.sample(r);
        }
    }

    /// §7.2.4 fast-retransmit detection, and RACK for retransmissions.
    /// Returns whether a chunk was newly found lost.
    ///
    /// Miss indications go to TSNs below the highest newly acked one. A
    /// chunk counts a miss only when a chunk sent after its latest
    /// transmission was acked (as RACK does, RFC 8985), so that a lost
    /// retransmission is fast-retransmitted again instead of waiting for
    /// the T3 timer; a chunk still gets one retransmission per three
    /// later acks at most, which keeps §7.2.4's intent. In fast recovery,
    /// a SACK that advances the cumulative TSN counts a miss for every TSN
    /// it reports missing (below its highest gap block), even when no gap
    /// block acknowledged anything new.
    fn detect_losses(&mut self, now: Instant, sack: &Sack, scan: &mut AckScan) -> bool {
        let cum = sack.cum_tsn_ack;
        if scan.htna.is_none() && scan.cum_advanced && self.cc.in_recovery() {
            if let Some(last) = sack.gaps.last() {
                let top = cum.wrapping_add(last.end as u32);
                if let Some(i) = self.index_of(top) {
                    scan.htna = Some(top);
                    scan.htna_seq = self.inflight[i].sent_seq;
                }
            }
        }
        let mut new_loss = false;
        if let Some(h) = scan.htna {
            for i in 0..self.inflight.len() {
                let s = &mut self.inflight[i];
                if !lt(s.tsn, h) {
                    break;
                }
                if s.acked || s.abandoned || s.marked || s.sent_seq >= scan.htna_seq {
                    continue;
                }
                s.misses += 1;
                if s.misses >= 3 {
                    self.mark_lost(i);
                    self.stats.fast_retransmits += 1;
                    new_loss = true;
                }
            }
        }
        if let Some((seq, sent_at)) = scan.newest {
            self.rack.on_delivered(seq, sent_at, now);
        }
        new_loss |= self.rack_detect_lost_retransmissions(now);
        new_loss
    }

    /// §7.2: the congestion controller learns of the loss or of the
    /// acknowledged bytes.
    fn update_congestion_window(&mut self, now: Instant, new_loss: bool, scan: &AckScan) {
        if new_loss {
            self.enter_fast_recovery();
            self.abandon_expired(now);
        } else {
            self.cc.on_ack(&Ack {
                cum_advanced: scan.cum_advanced,
                cum_bytes: scan.cum_bytes,
                gap_bytes: scan.gap_bytes,
                flight_before: scan.flight_before,
            });
        }
        self.cc.on_end_acks(self.cum_ack);
    }

    /// §6.3.2: timer rules after a SACK: stop T3-rtx when nothing is
    /// outstanding (R2), restart it when the cumulative TSN advanced (R3),
    /// start it when it is not running (R1).
    fn restart_t3(&mut self, now: Instant, cum_advanced: bool) {
        if self.inflight.is_empty() {
            self.timers.stop(Timer::T3);
            if self.flight_size != 0 {
                self.flight_size = 0;
            }
        } else if cum_advanced || !self.timers.is_running(Timer::T3) {
            self.timers.set(Timer::T3, now + self.rtt.rto());
        }
    }

    /// RFC 9260 §7.2.4: one window reduction per loss event (the
    /// controller's), and one packet of retransmissions regardless of cwnd.
    fn enter_fast_recovery(&mut self) {
        self.cc.on_congestion_event(self.next_tsn.wrapping_sub(1));
        self.fast_rtx_packet = true;
    }

    /// RFC 8985 §6.2 (RACK), for retransmitted chunks only (see
    /// [`Rack`]): a retransmission is lost once a chunk sent after it was
    /// acknowledged and a round trip plus a reordering window has passed
    /// since it went out. First transmissions keep the three-miss rule.
    /// Marks what is lost, arms the RACK timer for the rest; returns
    /// whether it marked anything.
    fn rack_detect_lost_retransmissions(&mut self, now: Instant) -> bool {
        self.timers.stop(Timer::Rack);
        let Some(rack_seq) = self.rack.latest_seq() else {
            return false;
        };
        let wait = self.rack.loss_delay(self.rtt.srtt());
        let mut lost = false;
        let mut next: Option<Instant> = None;
        for i in 0..self.inflight.len() {
            let s = &mut self.inflight[i];
            if s.transmissions < 2 || s.acked || s.abandoned || s.marked || s.sent_seq >= rack_seq {
                continue;
            }
            let deadline = s.sent_at + wait;
            if deadline > now {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
                continue;
            }
            self.mark_lost(i);
            self.stats.fast_retransmits += 1;
            lost = true;
        }
        self.timers.set_opt(Timer::Rack, next);
        lost
    }

    /// Takes the chunk at `i` out of the flight and queues it for
    /// retransmission: found lost by three miss indications (§7.2.4), by
    /// RACK, or by the T3 timer (§6.3.3 E3).
    fn mark_lost(&mut self, i: usize) {
        let s = &mut self.inflight[i];
        s.marked = true;
        if s.in_flight {
            s.in_flight = false;
            self.flight_size = self.flight_size.saturating_sub(s.data.len());
        }
        let tsn = s.tsn;
        self.rtx_queue.push_back(tsn);
    }

    fn advance_peer_ack_point(&mut self) {
        if !self.peer_forward_tsn {
            return;
        }
        let mut adv = self.advanced_peer_ack;
        for s in &self.inflight {
            if le(s.tsn, adv) {
                continue;
            }
            if s.abandoned && s.tsn == adv.wrapping_add(1) {
                adv = s.tsn;
            } else {
                break;
            }
        }
        self.advanced_peer_ack = adv;
        if lt(self.cum_ack, adv) {
            self.forward_tsn_pending = true;
            if !self.timers.is_running(Timer::T3)
                && let Some(now) = self.now
            {
                self.timers.set(Timer::T3, now + self.rtt.rto());
            }
        } else {
            self.forward_tsn_pending = false;
        }
    }

    /// Abandons the whole message around inflight index `i` (RFC 3758 §3.5
    /// A3: all fragments of a message go together).
    fn abandon_message(&mut self, i: usize) {
        let mut start = i;
        while start > 0 && self.inflight[start].flags & FLAG_BEGIN == 0 {
            start -= 1;
        }
        let mut end = i;
        while end + 1 < self.inflight.len() && self.inflight[end].flags & FLAG_END == 0 {
            end += 1;
        }
        let ends_inside = self.inflight[end].flags & FLAG_END != 0;
        for k in start..=end {
            let s = &mut self.inflight[k];
            if s.abandoned {
                continue;
            }
            s.abandoned = true;
            s.marked = false;
            if s.in_flight {
                s.in_flight = false;
                self.flight_size = self.flight_size.saturating_sub(s.data.len());
            }
            let (stream, len, acked) = (s.stream, s.data.len(), s.acked);
            let _ = acked;
            self.note_decrease(stream, len);
        }
        if !ends_inside {
            // The rest of the message has not been sent yet: drop it.
            while let Some(p) = self.send_queue.pop() {
                self.queued_bytes = self.queued_bytes.saturating_sub(p.data.len());
                if let Some(st) = self.out.get_mut(&p.stream) {
                    st.unsent = st.unsent.saturating_sub(1);
                }
                self.note_decrease(p.stream, p.data.len());
                if p.flags & FLAG_END != 0 {
                    break;
                }
            }
        }
    }

    /// Whether a chunk's reliability is used up (RFC 3758 §3.5 A3).
    fn should_abandon(s: &Sent, now: Instant) -> bool {
        s.max_rtx.is_some_and(|n| s.transmissions > n as u32) || s.expires.is_some_and(|e| e <= now)
    }

    fn abandon_expired(&mut self, now: Instant) {
        if !self.peer_forward_tsn {
            return;
        }
        let mut i = 0;
        while i < self.inflight.len() {
            let s = &self.inflight[i];
            if !s.abandoned && !s.acked && s.marked && Self::should_abandon(s, now) {
                self.abandon_message(i);
            }
            i += 1;
        }
        self.advance_peer_ack_point();
    }

    fn emit_forward_tsn(&mut self, out: &mut Vec<u8>) {
        let mut streams: Vec<(u16, u16)> = Vec::new();
        for s in &self.inflight {
            if !le(s.tsn, self.advanced_peer_ack) {
                break;
            }
            if s.abandoned && s.flags & FLAG_UNORDERED == 0 {
                match streams.iter_mut().find(|(st, _)| *st == s.stream) {
                    Some(e) => {
                        if ssn_lt(e.1, s.ssn) {
                            e.1 = s.ssn;
                        }
                    }
                    None => streams.push((s.stream, s.ssn)),
                }
            }
        }
        Chunk::ForwardTsn(ForwardTsn {
            new_cum_tsn: self.advanced_peer_ack,
            streams,
        })
        .emit(out);
    }

    // ---------------------------------------------------------------- stream reset

    /// RFC 6525 §5.1.2: sends the queued streams' reset request once none
    /// is outstanding and the data queued on them has its TSNs.
    fn try_send_reset(&mut self, now: Instant) {
        if self.reset.is_outstanding()
            || self.reset.queued().is_empty()
            || self.state != State::Established
        {
            return;
        }
        // Data queued before the reset goes first (its TSNs must be assigned).
        if self
            .reset
            .queued()
            .iter()
            .any(|s| self.out.get(s).is_some_and(|st| st.unsent > 0))
        {
            return;
        }
        self.reset.begin_request(self.next_tsn.wrapping_sub(1));
        self.send_reset_request(now);
    }

    fn send_reset_request(&mut self, now: Instant) {
        let Some(p) = self.reset.request_param() else {
            return;
        };
        let mut c = Vec::new();
        Chunk::ReConfig(vec![p]).emit(&mut c);
        self.queue_control(c);
        self.timers.set(Timer::Reconfig, now + self.rtt.rto());
    }

    /// RFC 6525 §5.2: a RE-CONFIG chunk's requests and responses.
    fn on_reconfig(&mut self, now: Instant, params: Vec<ReConfigParam>) {
        if !matches!(
            self.state,
            State::Established
                | State::ShutdownPending
                | State::ShutdownSent
                | State::ShutdownReceived
        ) {
            return;
        }
        let mut answers = Vec::new();
        for p in params {
            match p {
                ReConfigParam::OutgoingResetRequest {
                    request_seq,
                    last_tsn,
                    streams,
                    ..
                } => {
                    let received = self.unwrap_tsn(last_tsn) <= self.rx.cum();
                    let (result, perform) =
                        self.reset
                            .on_outgoing_request(request_seq, last_tsn, streams, received);
                    if let Some(streams) = perform {
                        self.perform_incoming_reset(&streams);
                    }
                    answers.push((request_seq, result));
                }
                ReConfigParam::IncomingResetRequest {
                    request_seq,
                    streams,
                } => {
                    // The peer asks us to reset our outgoing streams: do so.
                    if self.reset.on_incoming_request(request_seq) {
                        let streams: Vec<u16> = streams
                            .into_iter()
                            .filter(|s| *s < self.out_streams)
                            .collect();
                        for &s in &streams {
                            let st = self.out.entry(s).or_default();
                            if !st.resetting {
                                st.resetting = true;
                                self.reset.queue(s);
                            }
                        }
                        answers.push((request_seq, ReConfigParam::RESULT_PERFORMED));
                    }
                }
                ReConfigParam::Response {
                    response_seq,
                    result,
                    ..
                } => match self.reset.on_response(response_seq, result) {
                    ResponseOutcome::Ignored => {}
                    ResponseOutcome::InProgress => {
                        // Ask again later (the timer re-sends the same request).
                        self.timers.set(Timer::Reconfig, now + self.rtt.rto());
                    }
                    ResponseOutcome::Done { request, result } => {
                        self.timers.stop(Timer::Reconfig);
                        self.error_count = 0;
                        for &s in &request.streams {
                            let st = self.out.entry(s).or_default();
                            st.resetting = false;
                            if result == ReConfigParam::RESULT_PERFORMED {
                                st.next_ssn = 0;
                            }
                        }
                        if result == ReConfigParam::RESULT_PERFORMED {
                            self.events.push_back(Event::OutgoingStreamsReset {
                                streams: request.streams,
                            });
                        }
                        self.try_send_reset(now);
                    }
                },
                ReConfigParam::Unknown { .. } => {}
            }
        }
        for (seq, result) in answers {
            let mut c = Vec::new();
            Chunk::ReConfig(vec![ReConfigParam::Response {
                response_seq: seq,
                result,
                next_tsns: None,
            }])
            .emit(&mut c);
            self.queue_control(c);
        }
        self.try_send_reset(now);
    }

    fn perform_incoming_reset(&mut self, streams: &[u16]) {
        if streams.is_empty() {
            for st in self.inbound.values_mut() {
                st.next_ssn = 0;
                for (_, (_, d)) in st.waiting.drain() {
                    self.rx_buffered = self.rx_buffered.saturating_sub(d.len() + HELD_OVERHEAD);
                }
            }
        } else {
            for &s in streams {
                if let Some(st) = self.inbound.get_mut(&s) {
                    st.next_ssn = 0;
                    for (_, (_, d)) in st.waiting.drain() {
                        self.rx_buffered = self.rx_buffered.saturating_sub(d.len() + HELD_OVERHEAD);
                    }
                }
            }
        }
        self.events.push_back(Event::StreamsReset {
            streams: streams.to_vec(),
        });
    }

    /// RFC 6525 §5.2.2: a deferred request of the peer is performed once
    /// every TSN up to its last TSN arrived.
    fn check_deferred_reset(&mut self, _now: Instant) {
        let cum = self.rx.cum();
        let rx = &self.rx;
        let Some((seq, streams)) = self.reset.take_ready(|last_tsn| rx.unwrap(last_tsn) <= cum)
        else {
            return;
        };
        self.perform_incoming_reset(&streams);
        let mut c = Vec::new();
        Chunk::ReConfig(vec![ReConfigParam::Response {
            response_seq: seq,
            result: ReConfigParam::RESULT_PERFORMED,
            next_tsns: None,
        }])
        .emit(&mut c);
        self.queue_control(c);
    }

    // ---------------------------------------------------------------- shutdown

    fn on_shutdown(&mut self, now: Instant, cum_tsn_ack: u32) {
        match self.state {
            State::Established | State::ShutdownPending | State::ShutdownReceived => {
                let sack = Sack {
                    cum_tsn_ack,
                    a_rwnd: self.peer_rwnd + self.flight_size as u32,
                    gaps: Vec::new(),
                    dups: Vec::new(),
                };
                if le(self.cum_ack, cum_tsn_ack) {
                    self.on_sack(now, &sack);
                }
                if self.state == State::Closed {
                    return;
                }
                self.state = State::ShutdownReceived;
                self.check_shutdown(now);
            }
            State::ShutdownSent => {
                // §9.2: both sides shut down at once.
                self.send_shutdown_ack(now);
            }
            _ => {}
        }
    }

    fn check_shutdown(&mut self, now: Instant) {
        let drained = self.send_queue.is_empty() && self.inflight.is_empty();
        match self.state {
            State::ShutdownPending if drained => self.send_shutdown(now),
            State::ShutdownReceived if drained => self.send_shutdown_ack(now),
            _ => {}
        }
    }

    fn send_shutdown(&mut self, now: Instant) {
        self.state = State::ShutdownSent;
        let mut c = Vec::new();
        Chunk::Shutdown {
            cum_tsn_ack: self.rx.cum() as u32,
        }
        .emit(&mut c);
        self.queue_control(c);
        self.timers.set(Timer::T2, now + self.rtt.rto());
    }

    fn send_shutdown_ack(&mut self, now: Instant) {
        self.state = State::ShutdownAckSent;
        self.timers.stop(Timer::T3);
        let mut c = Vec::new();
        Chunk::ShutdownAck.emit(&mut c);
        self.queue_control(c);
        self.timers.set(Timer::T2, now + self.rtt.rto());
    }

    // ---------------------------------------------------------------- output

    /// The next SCTP packet to send (at most `config.mtu` bytes), if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        self.poll_transmit_into(&mut out).then_some(out)
    }

    /// Like [`Association::poll_transmit`] but writes into `out` (cleared
    /// first), so that a caller can reuse one buffer. Returns whether a
    /// packet was written.
    pub fn poll_transmit_into(&mut self, out: &mut Vec<u8>) -> bool {
        let _span = self.span().entered();
        out.clear();
        if let Some(p) = self.packets.pop_front() {
            out.extend_from_slice(&p);
            packet::trace("out", out);
            return true;
        }
        if self.state == State::Closed || self.peer_tag == 0 {
            self.control.clear();
            return false;
        }
        // Not closed: some input gave the association its time.
        let Some(now) = self.now else {
            return false;
        };
        let mtu = self.config.mtu;
        out.reserve(mtu);
        CommonHeader {
            source_port: self.config.local_port,
            destination_port: self.config.remote_port,
            verification_tag: self.peer_tag,
        }
        .emit(out);
        // Control chunks first (§6.10: control before DATA).
        while let Some(c) = self.control.front() {
            if out.len() + c.len() > mtu && out.len() > HEADER_LEN {
                break;
            }
            if let Some(c) = self.control.pop_front() {
                out.extend_from_slice(&c);
            }
        }
        let data_state = matches!(
            self.state,
            State::Established | State::ShutdownPending | State::ShutdownReceived
        );
        // A SACK rides along whenever one is owed, delayed or not.
        let sack_owed =
            self.sack_now || self.timers.is_running(Timer::DelayedSack) || self.rx.has_dups();
        if sack_owed
            && matches!(
                self.state,
                State::Established
                    | State::ShutdownPending
                    | State::ShutdownSent
                    | State::ShutdownReceived
            )
        {
            let room = mtu.saturating_sub(out.len());
            if room >= 16 {
                let will_send_data =
                    data_state && (!self.rtx_queue.is_empty() || !self.send_queue.is_empty());
                if self.sack_now || will_send_data {
                    self.emit_sack(out, room);
                }
            }
        }
        if self.forward_tsn_pending && out.len() + 8 + 4 * 16 <= mtu {
            self.forward_tsn_pending = false;
            self.emit_forward_tsn(out);
        }
        if data_state {
            self.emit_data_chunks(out, now);
        }
        if out.len() == HEADER_LEN {
            out.clear();
            return false;
        }
        packet::finish(out);
        self.stats.packets += 1;
        packet::trace("out", out);
        true
    }

    /// The association's `tracing` span (`sctp`, with its verification
    /// tag and state); free when the level is off.
    fn span(&self) -> tracing::Span {
        tracing::debug_span!("sctp", tag = self.local_tag, state = ?self.state)
    }

    /// Fills the rest of the packet with DATA: retransmissions first
    /// (§6.1 / §7.2.4), then new data within the windows, then the I bit
    /// on the last chunk when a SACK must come before more can go.
    fn emit_data_chunks(&mut self, out: &mut Vec<u8>, now: Instant) {
        let mut w = DataWritten::default();
        self.emit_retransmissions(out, now, &mut w);
        if self.rtx_queue.is_empty() && self.burst_left > 0 {
            self.emit_new_data(out, now, &mut w);
        }
        self.flag_last_chunk(out, now, &w);
        if w.wrote_data && !self.timers.is_running(Timer::T3) {
            self.timers.set(Timer::T3, now + self.rtt.rto());
        }
        if !self.reset.queued().is_empty() {
            self.try_send_reset(now);
        }
    }

    /// Chunks marked for retransmission, oldest first, within cwnd (or
    /// one packet regardless of it after a fast retransmit).
    fn emit_retransmissions(&mut self, out: &mut Vec<u8>, now: Instant, w: &mut DataWritten) {
        let mtu = self.config.mtu;
        while let Some(&tsn) = self.rtx_queue.front() {
            let Some(i) = self.index_of(tsn) else {
                self.rtx_queue.pop_front();
                continue;
            };
            if !self.inflight[i].marked || self.inflight[i].acked || self.inflight[i].abandoned {
                self.rtx_queue.pop_front();
                continue;
            }
            if self.peer_forward_tsn && Self::should_abandon(&self.inflight[i], now) {
                self.rtx_queue.pop_front();
                self.abandon_message(i);
                self.advance_peer_ack_point();
                continue;
            }
            let len = self.inflight[i].data.len();
            if out.len() + DATA_HEADER_LEN + len > mtu {
                break;
            }
            // Fast retransmit may send one packet regardless of cwnd.
            if !self.fast_rtx_packet
                && self.flight_size + len > self.cc.window()
                && self.flight_size > 0
            {
                break;
            }
            self.rtx_queue.pop_front();
            let s = &mut self.inflight[i];
            s.marked = false;
            s.transmissions += 1;
            s.sent_at = now;
            s.sent_seq = self.send_seq;
            self.stats.retransmitted_chunks += 1;
            s.misses = 0;
            self.send_seq += 1;
            s.in_flight = true;
            self.flight_size += len;
            w.last_chunk = Some(out.len());
            super::chunk::emit_data(out, s.flags, s.tsn, s.stream, s.ssn, s.ppid, &s.data);
            if self.rtt_probe.is_some_and(|(p, _)| p == s.tsn) {
                self.rtt_probe = None;
            }
            w.wrote_data = true;
        }
        if w.wrote_data {
            self.fast_rtx_packet = false;
        }
    }

    /// New data from the send queue, a TSN each, within cwnd and the
    /// peer's window: at most one packet of it per call, counted against
    /// Max.Burst.
    fn emit_new_data(&mut self, out: &mut Vec<u8>, now: Instant, w: &mut DataWritten) {
        let mtu = self.config.mtu;
        let mut new_data = false;
        while let Some(p) = self.send_queue.peek() {
            let len = p.data.len();
            let (flags, expires) = (p.flags, p.expires);
            // PR-SCTP: a whole message that outlived its lifetime before
            // its first transmission is dropped without a TSN.
            if flags & FLAG_BEGIN != 0 && expires.is_some_and(|e| e <= now) && self.peer_forward_tsn
            {
                self.drop_unsent_message();
                continue;
            }
            if out.len() + DATA_HEADER_LEN + len > mtu {
                break;
            }
            // ANCHOR: window
            // §7.2.1 / §6.1 rule B: cwnd and the peer's window (one probe
            // when the window is zero and nothing is in flight).
            if self.flight_size >= self.cc.window() {
                break;
            }
            if (self.peer_rwnd as usize) < len
                && !(self.flight_size == 0 && !new_data && !w.wrote_data)
            {
                break;
            }
            // ANCHOR_END: window
            let Some(p) = self.send_queue.pop() else {
                break;
            };
            self.queued_bytes = self.queued_bytes.saturating_sub(len);
            let tsn = self.next_tsn;
            self.next_tsn = tsn.wrapping_add(1);
            let st = self.out.entry(p.stream).or_default();
            st.unsent = st.unsent.saturating_sub(1);
            let ssn = if p.flags & FLAG_UNORDERED != 0 {
                0
            } else {
                if p.flags & FLAG_BEGIN != 0 {
                    self.current_ssn = st.next_ssn;
                    st.next_ssn = st.next_ssn.wrapping_add(1);
                }
                self.current_ssn
            };
            w.last_chunk = Some(out.len());
            super::chunk::emit_data(out, p.flags, tsn, p.stream, ssn, p.ppid, &p.data);
            self.flight_size += len;
            self.peer_rwnd = self.peer_rwnd.saturating_sub(len as u32);
            w.last_new_tsn = Some(tsn);
            self.send_seq += 1;
            self.stats.sent_chunks += 1;
            self.inflight.push_back(Sent {
                tsn,
                stream: p.stream,
                ssn,
                ppid: p.ppid,
                flags: p.flags,
                data: p.data,
                sent_at: now,
                sent_seq: self.send_seq,
                transmissions: 1,
                max_rtx: p.max_rtx,
                expires: p.expires,
                acked: false,
                abandoned: false,
                marked: false,
                in_flight: true,
                misses: 0,
            });
            new_data = true;
        }
        if new_data {
            self.burst_left -= 1;
            w.wrote_data = true;
        }
    }

    /// Sets the I bit on the packet's last DATA chunk when it is the last
    /// we can send before a SACK, and makes it the RTT probe.
    fn flag_last_chunk(&mut self, out: &mut [u8], now: Instant, w: &DataWritten) {
        // ANCHOR: immediate
        // RFC 9260 §3.3.1 (the I bit, from RFC 7053): when this packet is
        // the last we can send before a SACK comes (nothing more queued, or
        // the congestion window, the peer's window or the burst limit is
        // used up), ask the peer to SACK it at once rather than after its
        // delayed-SACK timer (up to 200 ms, §6.2). A lone message is then
        // acknowledged in one round trip, a window that ends on an odd
        // packet does not sit idle for 200 ms, and the RTT samples carry no
        // ack delay, so `rto_min` can sit below the peer's delayed-SACK
        // timer without retransmitting a chunk whose SACK is merely held
        // back. Only the wire copy is flagged: a retransmission decides anew.
        if let Some(at) = w.last_chunk {
            let blocked = self.flight_size >= self.cc.window()
                || self.burst_left == 0
                || self
                    .send_queue
                    .peek()
                    .is_some_and(|p| p.data.len() > self.peer_rwnd as usize);
            let drained = self.rtx_queue.is_empty() && self.send_queue.peek().is_none();
            if blocked || drained {
                out[at + 1] |= FLAG_IMMEDIATE;
                // §6.3.1 leaves the choice of the chunk that measures the
                // RTT (one at a time, C4/C5) to us: the one the peer SACKs
                // at once. The first chunk of a burst, if the packet after
                // it were lost, could be SACKed 200 ms late, and a first
                // sample of 220 ms instead of 20 sets the RTO near 700 ms.
                if let Some(tsn) = w.last_new_tsn
                    && self.rtt_probe.is_none()
                {
                    self.rtt_probe = Some((tsn, now));
                }
            }
        }
        // ANCHOR_END: immediate
    }

    fn drop_unsent_message(&mut self) {
        while let Some(p) = self.send_queue.pop() {
            self.queued_bytes = self.queued_bytes.saturating_sub(p.data.len());
            if let Some(st) = self.out.get_mut(&p.stream) {
                st.unsent = st.unsent.saturating_sub(1);
            }
            self.note_decrease(p.stream, p.data.len());
            if p.flags & FLAG_END != 0 {
                break;
            }
        }
        self.flush_decreases();
    }
}

/// Reads the peer's extensions from INIT / INIT ACK parameters (RFC 3758
/// §3.3, RFC 5061 §4.2.7) and collects parameters to report as unrecognized
/// (RFC 9260 §3.2.1: upper bits 01 and 11 ask for a report; 00 and 01 stop
/// the processing of further parameters).
fn peer_features(params: &[Param], unrecognized: &mut Vec<Vec<u8>>) -> (bool, bool) {
    let mut forward_tsn = false;
    let mut reconfig = false;
    for p in params {
        match p {
            Param::ForwardTsnSupported => forward_tsn = true,
            Param::SupportedExtensions(types) => {
                forward_tsn |= types.contains(&kind::FORWARD_TSN);
                reconfig |= types.contains(&kind::RE_CONFIG);
            }
            Param::Unknown { typ, value } => {
                if typ & 0x4000 != 0 && unrecognized.len() < 8 {
                    let mut raw = Vec::new();
                    p.emit(&mut raw);
                    let _ = value;
                    unrecognized.push(raw);
                }
                if typ & 0x8000 == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    (forward_tsn, reconfig)
}
