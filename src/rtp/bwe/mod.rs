//! # Bandwidth estimation: how fast may we send?
//!
//! A video sender must pick a bitrate the path can carry: too low wastes
//! quality, too high fills a queue somewhere (delay grows, then packets drop).
//! Google Congestion Control (GCC, draft-ietf-rmcat-gcc-02) answers from the
//! sender's side with two controllers:
//!
//! - **delay-based** (§5): the receiver reports when each packet arrived
//!   (transport-wide CC feedback, [`crate::rtp::twcc`]). Packets sent in 5 ms
//!   bursts form groups; if groups arrive further apart than they were sent,
//!   a queue is growing. A trendline filter (libwebrtc's replacement for the
//!   draft's Kalman filter) turns those delay variations into a slope, an
//!   over-use detector with an adaptive threshold classifies it, and an AIMD
//!   controller raises the estimate 8 % a second (additively once near the
//!   capacity seen before) or cuts it to 0.85 × the rate the receiver
//!   actually got. See [`delay`].
//! - **loss-based** (§6): above 10 % loss the estimate shrinks, under 2 % it
//!   may grow, in between it holds. See [`loss`].
//!
//! The estimate is the smaller of the two. Probing ([`probe`]) gets a new
//! call from its 300 kbit/s start to the path's rate within a second or two,
//! and the [`pacer`] spreads packets at 2.5 × the estimate so the detector
//! sees the path, not the encoder's bursts. For senders whose receiver only
//! speaks REMB, [`remb`] runs the same delay detector on the receiving side.
//!
//! ```text
//!   encoder ──► Pacer ──► network ──► receiver: TwccRecorder ──► TransportCc
//!      ▲          │ on_packet_sent(seq, size)                        │
//!      │          ▼                                                  ▼
//!      └── estimate() ◄── SendSideBwe ◄──────────── on_feedback(now, &fb)
//!                          history (ring) → matched (send, arrival, size)
//!                          ├─ delay: InterArrival → Trendline → Overuse → AIMD
//!                          ├─ AckedBitrate (R_hat)   ├─ probe results
//!                          └─ loss: LossBasedBwe      └─ min(A_hat, A_s)
//! ```
//!
//! Every part is sans-IO: the caller passes `now`, the sent packets, the
//! feedback, and reads [`SendSideBwe::estimate`] or drains
//! [`SendSideBwe::poll_event`]. Memory is bounded (a ring of the packets
//! sent in the last [`MAX_FEEDBACK_DELAY`], at most [`Config::history`];
//! every window is capped), and no
//! feedback — for unknown, old or future sequence numbers, with absurd
//! arrival times or wrapped counters — panics (`fuzzing::bwe_feedback`).
//!
//! ## Using it
//!
//! ```
//! use std::time::{Duration, Instant};
//! use rtclab::rtp::bwe::{pacer, Config, Event, Pacer, Priority, Release, SendSideBwe};
//! use rtclab::rtp::twcc::TransportCc;
//!
//! let t0 = Instant::now();
//! let mut bwe = SendSideBwe::new(Config::default());
//! let mut pacer: Pacer<Vec<u8>> = Pacer::new(pacer::Config::default(), bwe.estimate());
//! bwe.start(t0); // asks for the start-up probes
//! while let Some(event) = bwe.poll_event() {
//!     match event {
//!         Event::Estimate(rate) => pacer.set_estimate(rate), // and the encoder's target
//!         Event::Probe(cluster) => pacer.start_probe(t0, cluster),
//!     }
//! }
//! // The encoder queues a packet; the pacer says what may go now (a probe
//! // is running: the packet, then padding at the probe's rate).
//! pacer.enqueue(t0, Priority::Video, 1200, vec![0; 1200]).unwrap();
//! let mut twcc_seq = 0u16;
//! while let Some(release) = pacer.poll_release(t0) {
//!     let (size, probe) = match release {
//!         Release::Packet { size, probe, .. } => (size, probe),
//!         Release::Padding { size, probe } => (size, Some(probe)),
//!     };
//!     // ... stamp `twcc_seq` in the packet's header extension and send it ...
//!     bwe.on_packet_sent(t0, twcc_seq, size, probe);
//!     twcc_seq = twcc_seq.wrapping_add(1);
//! }
//! assert_eq!(twcc_seq, 1, "the next probe packet waits for its time");
//! // The receiver's feedback: packet 0 arrived (at 20 ms on its clock).
//! let feedback = TransportCc::from_arrivals(1, 2, 0, 0, &[Some(20_000)]).unwrap();
//! bwe.on_feedback(t0 + Duration::from_millis(60), &feedback);
//! assert_eq!(bwe.rtt(), Some(Duration::from_millis(60)));
//! ```
//!
//! ## Left out
//!
//! The draft's Kalman filter (the trendline replaces it, as in libwebrtc),
//! application-limited-region (ALR) probing and periodic probing after
//! start-up, libwebrtc's newer loss-based estimator (v2), the pushback of
//! the encoder rate when the congestion window is full, and the pacer's
//! 2 s queue-time limit.

pub mod delay;
pub mod loss;
pub mod pacer;
pub mod probe;
pub mod remb;

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::rtcp::ReportBlock;
use super::seq::SeqUnwrapper;
use super::twcc::TransportCc;
use delay::{
    AckedBitrate, AimdRateController, BandwidthUsage, InterArrival, OveruseDetector, PacketTiming,
    Trendline,
};
use loss::LossBasedBwe;
pub use pacer::{Pacer, Priority, Release};
pub use probe::ProbeCluster;
use probe::{ProbeController, ProbeEstimator};

/// A bitrate in bits per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bitrate(u64);

impl Bitrate {
    /// Zero.
    pub const ZERO: Bitrate = Bitrate(0);

    /// `n` bit/s.
    pub const fn bps(n: u64) -> Bitrate {
        Bitrate(n)
    }

    /// `n` kbit/s (1000 bit/s).
    pub const fn kbps(n: u64) -> Bitrate {
        Bitrate(n * 1000)
    }

    /// `n` Mbit/s (10^6 bit/s).
    pub const fn mbps(n: u64) -> Bitrate {
        Bitrate(n * 1_000_000)
    }

    /// Bits per second.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Bits per second as a float.
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }

    /// From a float (rounded; negative and NaN give zero, huge saturates).
    pub fn from_f64(bps: f64) -> Bitrate {
        if bps.is_nan() || bps <= 0.0 {
            Bitrate(0)
        } else {
            Bitrate(bps.round().min(u64::MAX as f64) as u64)
        }
    }

    /// `bytes` over `micros` µs (`None` for an empty interval).
    pub fn from_bytes_over(bytes: u64, micros: i64) -> Option<Bitrate> {
        (micros > 0).then(|| Bitrate::from_f64(bytes as f64 * 8e6 / micros as f64))
    }

    /// Scaled by `f`.
    pub fn mul_f64(self, f: f64) -> Bitrate {
        Bitrate::from_f64(self.0 as f64 * f)
    }

    /// Bytes sent at this rate in `d`.
    pub fn bytes_in(self, d: Duration) -> f64 {
        self.0 as f64 / 8.0 * d.as_secs_f64()
    }
}

impl fmt::Display for Bitrate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1_000_000 {
            write!(f, "{:.2} Mbit/s", self.0 as f64 / 1e6)
        } else {
            write!(f, "{:.1} kbit/s", self.0 as f64 / 1e3)
        }
    }
}

/// Settings of [`SendSideBwe`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The estimate before any feedback.
    pub start: Bitrate,
    /// The estimate never goes below this...
    pub min: Bitrate,
    /// ... nor above this.
    pub max: Bitrate,
    /// Sent packets remembered for matching feedback (a ring; older ones are
    /// forgotten, and feedback about them ignored).
    pub history: usize,
    /// Probe at start-up (3× and 6× `start`, then doubling).
    pub probing: bool,
}

impl Default for Config {
    /// 300 kbit/s start, 30 kbit/s .. 50 Mbit/s, 8192 packets (several
    /// seconds at video rates), probing on.
    fn default() -> Self {
        Config {
            start: Bitrate::kbps(300),
            min: Bitrate::kbps(30),
            max: Bitrate::mbps(50),
            history: 8192,
            probing: true,
        }
    }
}

/// What the estimator tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The estimate changed: set the encoder's target and the pacer.
    Estimate(Bitrate),
    /// Send this probe cluster ([`Pacer::start_probe`]).
    Probe(ProbeCluster),
}

/// A sent packet awaiting feedback: 24 bytes (one is kept per packet of
/// the last [`MAX_FEEDBACK_DELAY`]).
#[derive(Debug, Clone, Copy)]
struct SentPacket {
    send_us: i64,
    size: u32,
    /// The probe cluster's id and its `min_packets`, if `probed`.
    probe_id: u32,
    probe_min: u16,
    probed: bool,
    acked: bool,
    reported_lost: bool,
}

/// Feedback about a packet sent longer ago than this is ignored: its
/// record is dropped (transport-cc feedback goes every 50–100 ms, so it
/// is this late only if lost; a ring of every packet of several seconds
/// is most of a sender's memory at a few hundred packets a second).
pub const MAX_FEEDBACK_DELAY: Duration = Duration::from_secs(3);

/// The send-side bandwidth estimator: the public face of this module.
#[derive(Debug, Clone)]
pub struct SendSideBwe {
    config: Config,
    epoch: Option<Instant>,
    unwrapper: SeqUnwrapper,
    /// Slot `i` holds extended sequence number `first_ext + i`.
    history: VecDeque<Option<SentPacket>>,
    first_ext: u64,
    /// The newest packet's send time: records older than it by
    /// [`MAX_FEEDBACK_DELAY`] are not matched, though they wait for the
    /// next trim ([`AGE_TRIM_EVERY`]).
    newest_send_us: i64,
    /// Packets sent since the history was last trimmed by age.
    since_trim: u8,
    inter_arrival: InterArrival,
    trendline: Trendline,
    detector: OveruseDetector,
    aimd: AimdRateController,
    acked: AckedBitrate,
    loss: LossBasedBwe,
    probes: ProbeController,
    probe_estimator: ProbeEstimator,
    /// Clusters asked for: id → min_packets.
    asked: VecDeque<(u32, usize)>,
    rtt_us: Option<i64>,
    estimate: Bitrate,
    events: VecDeque<Event>,
    started: bool,
}

/// Events kept when nobody drains them.
const MAX_EVENTS: usize = 32;
/// The history's records too old for feedback go once per this many
/// packets sent, not at each: the ring's oldest end was a cold cache line
/// read per packet (a forwarder sends for hundreds of connections in
/// turn), and this way it is a few lines read together.
const AGE_TRIM_EVERY: u8 = 16;

impl SendSideBwe {
    /// An estimator at `config.start` (a `min` above `max` is taken as both
    /// being `max`).
    pub fn new(mut config: Config) -> Self {
        config.min = config.min.min(config.max);
        let start = config.start.clamp(config.min, config.max);
        SendSideBwe {
            epoch: None,
            unwrapper: SeqUnwrapper::new(),
            history: VecDeque::new(),
            first_ext: 0,
            newest_send_us: 0,
            since_trim: 0,
            inter_arrival: InterArrival::new(),
            trendline: Trendline::new(),
            detector: OveruseDetector::new(),
            aimd: AimdRateController::new(start, config.min, config.max),
            acked: AckedBitrate::new(),
            loss: LossBasedBwe::new(),
            probes: ProbeController::new(config.max, config.probing),
            probe_estimator: ProbeEstimator::new(),
            asked: VecDeque::new(),
            rtt_us: None,
            estimate: start,
            events: VecDeque::new(),
            started: false,
            config,
        }
    }

    /// The current estimate: min(delay-based, loss-based).
    pub fn estimate(&self) -> Bitrate {
        self.estimate
    }

    /// The delay-based estimate `A_hat`.
    pub fn delay_based_estimate(&self) -> Bitrate {
        self.aimd.estimate()
    }

    /// The loss-based estimate `A_s`, while loss limits the rate.
    pub fn loss_based_estimate(&self) -> Option<Bitrate> {
        self.loss.estimate()
    }

    /// The rate the receiver got our packets at (`R_hat`).
    pub fn acked_bitrate(&self) -> Option<Bitrate> {
        self.acked.rate()
    }

    /// The last loss fraction measured (0..=1).
    pub fn loss_fraction(&self) -> Option<f64> {
        self.loss.last_loss()
    }

    /// The round-trip time seen through feedback (send → feedback received;
    /// includes the receiver's feedback interval).
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt_us
            .map(|us| Duration::from_micros(us.max(0) as u64))
    }

    /// The detector's last verdict.
    pub fn usage(&self) -> BandwidthUsage {
        self.detector.state()
    }

    /// Sent packets remembered now (at most [`Config::history`]).
    pub fn history_len(&self) -> usize {
        self.history.len()
    }

    /// The next event, if any (estimate changes, probes to send).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }

    fn us(&mut self, now: Instant) -> i64 {
        let epoch = *self.epoch.get_or_insert(now);
        now.saturating_duration_since(epoch)
            .as_micros()
            .min(i64::MAX as u128) as i64
    }

    /// Asks for the start-up probes (done by the first `on_packet_sent` if
    /// not called before; call it early so the probes go out with the first
    /// media).
    pub fn start(&mut self, now: Instant) {
        if self.started {
            return;
        }
        self.started = true;
        let now_us = self.us(now);
        for c in self.probes.on_start(now_us, self.estimate) {
            self.ask_probe(c);
        }
        let e = self.estimate;
        self.push_event(Event::Estimate(e));
    }

    /// Asks for a probe at `rate` now (see
    /// [`probe::ProbeController::on_request`]): [`Event::Probe`] follows
    /// unless probing is off.
    pub fn request_probe(&mut self, now: Instant, rate: Bitrate) {
        let now_us = self.us(now);
        if let Some(c) = self.probes.on_request(now_us, rate) {
            self.ask_probe(c);
        }
    }

    fn ask_probe(&mut self, c: ProbeCluster) {
        if self.asked.len() >= 16 {
            self.asked.pop_front();
        }
        self.asked.push_back((c.id, c.min_packets));
        self.push_event(Event::Probe(c));
    }

    /// Records a packet handed to the network: its transport-wide sequence
    /// number (extended internally), its size in bytes (what the path
    /// carries: count what your rate should count), and the probe cluster it
    /// belongs to (from [`Release`]), if any. Padding counts like media.
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        twcc_seq: u16,
        size_bytes: usize,
        probe: Option<u32>,
    ) {
        self.start(now);
        let send_us = self.us(now);
        let ext = self.unwrapper.unwrap(twcc_seq);
        let cap = self.config.history.max(1);
        if self.history.is_empty() {
            self.first_ext = ext;
        }
        if ext < self.first_ext {
            return; // older than everything remembered
        }
        let mut idx = ext - self.first_ext;
        if idx >= self.history.len() as u64 + cap as u64 {
            // A jump beyond the whole ring: start it afresh.
            self.history.clear();
            self.first_ext = ext;
            idx = 0;
        }
        let idx = idx as usize;
        while self.history.len() <= idx {
            self.history.push_back(None);
        }
        let probe = probe.and_then(|id| {
            self.asked
                .iter()
                .find(|(i, _)| *i == id)
                .map(|&(i, n)| (i, u16::try_from(n).unwrap_or(u16::MAX)))
        });
        self.history[idx] = Some(SentPacket {
            send_us,
            size: u32::try_from(size_bytes).unwrap_or(u32::MAX),
            probe_id: probe.map_or(0, |p| p.0),
            probe_min: probe.map_or(0, |p| p.1),
            probed: probe.is_some(),
            acked: false,
            reported_lost: false,
        });
        self.newest_send_us = self.newest_send_us.max(send_us);
        // The oldest go past the cap, or once feedback about them is too
        // late to count (gaps in the numbering with them): those by age
        // every AGE_TRIM_EVERY packets.
        self.since_trim = self.since_trim.saturating_add(1);
        let by_age = self.since_trim >= AGE_TRIM_EVERY;
        if by_age {
            self.since_trim = 0;
        }
        let horizon = self.horizon_us();
        while self.history.len() > cap
            || (by_age
                && self
                    .history
                    .front()
                    .is_some_and(|p| p.is_none_or(|p| p.send_us < horizon)))
        {
            self.history.pop_front();
            self.first_ext += 1;
        }
    }

    /// Packets sent before this are past feedback (see
    /// [`MAX_FEEDBACK_DELAY`]).
    fn horizon_us(&self) -> i64 {
        self.newest_send_us
            .saturating_sub(MAX_FEEDBACK_DELAY.as_micros() as i64)
    }

    /// Where `seq` lives in the ring, if it is remembered.
    fn slot(&self, seq: u16) -> Option<usize> {
        let len = self.history.len() as u64;
        if len == 0 {
            return None;
        }
        let highest = self.first_ext + len - 1;
        let d = seq.wrapping_sub(highest as u16) as i16 as i64;
        let ext = highest as i64 + d;
        if ext < self.first_ext as i64 || ext > highest as i64 {
            return None;
        }
        Some((ext as u64 - self.first_ext) as usize)
    }

    /// Processes transport-wide CC feedback received at `now`: matches the
    /// reports with the sent packets, runs the delay-based estimator over
    /// the newly acknowledged ones (in arrival order), measures probes and
    /// loss, and updates the estimate. Reports about unknown sequence
    /// numbers are ignored; each packet counts once.
    pub fn on_feedback(&mut self, now: Instant, feedback: &TransportCc) {
        let now_us = self.us(now);
        let mut acked: Vec<PacketTiming> = Vec::new();
        // Newly reported lost; newly received; received after being
        // reported lost (already counted once).
        let (mut lost, mut received, mut recovered) = (0u64, 0u64, 0u64);
        let mut newest_send: Option<i64> = None;
        let horizon = self.horizon_us();
        for (seq, arrival) in feedback.arrivals() {
            let Some(i) = self.slot(seq) else { continue };
            let Some(p) = self.history[i].as_mut() else {
                continue;
            };
            if p.acked || p.send_us < horizon {
                continue;
            }
            match arrival {
                None => {
                    if !p.reported_lost {
                        p.reported_lost = true;
                        lost += 1;
                    }
                }
                Some(arrival_us) => {
                    p.acked = true;
                    if p.reported_lost {
                        recovered += 1;
                    } else {
                        received += 1;
                    }
                    let t = PacketTiming {
                        send_us: p.send_us,
                        arrival_us,
                        size: p.size as usize,
                    };
                    if p.probed {
                        self.probe_estimator.on_packet(
                            p.probe_id,
                            usize::from(p.probe_min),
                            t.send_us,
                            arrival_us,
                            t.size,
                        );
                    }
                    newest_send = Some(newest_send.map_or(t.send_us, |n| n.max(t.send_us)));
                    acked.push(t);
                }
            }
        }
        if let Some(s) = newest_send {
            let rtt = now_us.saturating_sub(s).max(0);
            self.rtt_us = Some(rtt);
            self.aimd.set_rtt(rtt);
        }
        acked.sort_by_key(|t| (t.arrival_us, t.send_us));
        for t in &acked {
            self.acked.on_packet(t.arrival_us, t.size);
        }
        let acked_rate = self.acked.rate();
        // Delay-based: one detector verdict per completed group, the
        // strongest of this feedback driving the controller.
        let mut usage: Option<BandwidthUsage> = None;
        for t in &acked {
            if let Some(d) = self.inter_arrival.on_packet(*t) {
                let (m, slope) = self.trendline.update(&d);
                let u = self.detector.detect(
                    m,
                    slope,
                    d.send_delta_us,
                    self.trendline.num_deltas(),
                    d.arrival_us,
                );
                usage = Some(match (usage, u) {
                    (_, BandwidthUsage::Overusing) | (Some(BandwidthUsage::Overusing), _) => {
                        BandwidthUsage::Overusing
                    }
                    (_, u) => u,
                });
            }
        }
        // Probes: a result above the estimate raises it at once.
        while let Some(result) = self.probe_estimator.poll_result() {
            if usage != Some(BandwidthUsage::Overusing) && result > self.aimd.estimate() {
                self.aimd.set_estimate(now_us, result);
            }
            if let Some(c) = self.probes.on_result(now_us, result) {
                self.ask_probe(c);
            }
        }
        self.probes.on_time(now_us);
        if let Some(u) = usage {
            self.aimd.update(now_us, u, acked_rate);
        }
        let delay_based = self.aimd.estimate();
        self.loss
            .on_feedback(now_us, received, lost, recovered, delay_based);
        self.update_estimate();
    }

    /// A receiver report block about our stream: its fraction lost drives the
    /// loss-based controller (RFC 3550 §6.4.1; about one a second).
    pub fn on_report_block(&mut self, _now: Instant, block: &ReportBlock) {
        self.loss
            .on_fraction_lost(block.fraction_lost, self.aimd.estimate());
        self.update_estimate();
    }

    fn update_estimate(&mut self) {
        let delay = self.aimd.estimate();
        let e = match self.loss.estimate() {
            Some(l) => delay.min(l),
            None => delay,
        }
        .clamp(self.config.min, self.config.max);
        if e != self.estimate {
            self.estimate = e;
            self.push_event(Event::Estimate(e));
        }
    }
}

#[cfg(test)]
mod tests;
