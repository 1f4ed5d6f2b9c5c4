//! The delay-based half of GCC (draft-ietf-rmcat-gcc-02 §5): packet groups
//! and their delay variation, the trendline filter, the over-use detector
//! with its adaptive threshold, the AIMD rate controller, and the
//! acknowledged-bitrate measurement the controller decreases to.
//!
//! ```text
//!  (send, arrival) ──► InterArrival ──► d(i) ──► Trendline ──► m(i) ──► OveruseDetector
//!   per packet          5 ms groups    per group   slope × gain       │ Normal/Over/Under
//!                                                                     ▼
//!  AckedBitrate (R_hat, 150 ms window of received bytes) ──────► AimdRateController ──► A_hat
//! ```
//!
//! All times are microseconds on two clocks: send times on ours, arrival
//! times on the receiver's (only differences of arrival times are used, so
//! the clocks need no common origin). Everything here is plain arithmetic
//! on values the caller passes in: no clock, no I/O, and no input (however
//! hostile the arrival times) panics or grows memory.

use std::collections::VecDeque;

use super::Bitrate;

/// draft-ietf-rmcat-gcc-02 §5.2: packets sent within `burst_time` (5 ms) of
/// a group's first packet belong to that group.
pub const BURST_TIME_US: i64 = 5_000;
/// A group whose arrival lies more than this beyond what its send time
/// predicts means the receiver's clock jumped (or the feedback lies): the
/// grouping restarts instead of feeding a huge delta to the filter
/// (libwebrtc uses the same 3 s).
const ARRIVAL_OFFSET_RESET_US: i64 = 3_000_000;
/// A burst (§5.2) never stretches a group beyond this many µs of arrivals.
///
/// libwebrtc allows 100 ms. That merges every packet of a saturated path
/// into 100 ms groups when the sender paces in 5 ms bursts (as
/// [`super::pacer`] does): each burst leaves 5 ms after the last and, behind
/// a standing queue, arrives less than 5 ms after it (a 1200-byte packet
/// takes 3.8 ms at 2.5 Mbit/s), which is the burst rule's signature. The
/// detector then gets one delta per 100 ms and sees a growing queue late.
/// Limiting a burst to `burst_time` of arrivals keeps what the rule is for
/// (packets released together by a radio link or a switch) and nothing more.
const MAX_BURST_DURATION_US: i64 = BURST_TIME_US;

/// One received packet as the delay-based estimator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketTiming {
    /// Send time on the sender's clock, µs.
    pub send_us: i64,
    /// Arrival time on the receiver's clock, µs.
    pub arrival_us: i64,
    /// Bytes on the wire (as the sender counted them).
    pub size: usize,
}

#[derive(Debug, Clone, Copy)]
struct Group {
    first_send: i64,
    last_send: i64,
    first_arrival: i64,
    last_arrival: i64,
    size: usize,
}

impl Group {
    fn new(p: PacketTiming) -> Self {
        Group {
            first_send: p.send_us,
            last_send: p.send_us,
            first_arrival: p.arrival_us,
            last_arrival: p.arrival_us,
            size: p.size,
        }
    }
}

/// The difference between two consecutive packet groups (§5.1:
/// `d(i) = t(i) - t(i-1) - (T(i) - T(i-1))`, taken at each group's last
/// packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupDelta {
    /// `T(i) - T(i-1)`: send-time difference, µs.
    pub send_delta_us: i64,
    /// `t(i) - t(i-1)`: arrival-time difference, µs.
    pub arrival_delta_us: i64,
    /// Size difference of the two groups in bytes.
    pub size_delta: i64,
    /// Arrival time of the newer group's last packet.
    pub arrival_us: i64,
}

impl GroupDelta {
    /// `d(i)`, the inter-group delay variation in µs.
    pub fn delay_variation_us(&self) -> i64 {
        self.arrival_delta_us - self.send_delta_us
    }
}

/// §5.2 pre-filtering: splits the packet stream into groups of packets sent
/// within 5 ms of each other (or released together by the path) and reports
/// the delta between consecutive complete groups.
#[derive(Debug, Clone, Default)]
pub struct InterArrival {
    current: Option<Group>,
    previous: Option<Group>,
}

impl InterArrival {
    /// An empty grouping.
    pub fn new() -> Self {
        Self::default()
    }

    /// §5.2: a packet joins the current group if it was sent within
    /// `burst_time` of the group's first packet, or if it arrived within
    /// `burst_time` of the previous one with a negative delay variation
    /// (a burst released together by a queue on the path).
    fn belongs(g: &Group, p: PacketTiming) -> bool {
        if p.send_us - g.first_send <= BURST_TIME_US {
            return true;
        }
        let arrival_delta = p.arrival_us - g.last_arrival;
        let send_delta = p.send_us - g.last_send;
        send_delta == 0
            || (arrival_delta - send_delta < 0
                && (0..=BURST_TIME_US).contains(&arrival_delta)
                && p.arrival_us - g.first_arrival < MAX_BURST_DURATION_US)
    }

    /// Feeds one packet (in arrival order). Returns the delta between the two
    /// previous groups when this packet opens a new one.
    pub fn on_packet(&mut self, p: PacketTiming) -> Option<GroupDelta> {
        let Some(cur) = self.current.as_mut() else {
            self.current = Some(Group::new(p));
            return None;
        };
        if p.send_us < cur.first_send {
            // Sent before the current group: a reordered packet, too late to
            // place (libwebrtc drops these too).
            return None;
        }
        if Self::belongs(cur, p) {
            cur.last_send = cur.last_send.max(p.send_us);
            cur.last_arrival = cur.last_arrival.max(p.arrival_us);
            cur.size = cur.size.saturating_add(p.size);
            return None;
        }
        let cur = *cur;
        let mut out = None;
        if let Some(prev) = self.previous {
            let send_delta_us = cur.last_send - prev.last_send;
            let arrival_delta_us = cur.last_arrival.saturating_sub(prev.last_arrival);
            if arrival_delta_us < 0
                || arrival_delta_us.saturating_sub(send_delta_us) > ARRIVAL_OFFSET_RESET_US
            {
                // The receiver's clock went backwards or jumped: start over.
                self.previous = None;
                self.current = Some(Group::new(p));
                return None;
            }
            out = Some(GroupDelta {
                send_delta_us,
                arrival_delta_us,
                size_delta: cur.size as i64 - prev.size as i64,
                arrival_us: cur.last_arrival,
            });
        }
        self.previous = Some(cur);
        self.current = Some(Group::new(p));
        out
    }
}

/// The trendline filter: libwebrtc's modern replacement for the Kalman
/// filter of draft-ietf-rmcat-gcc-02 §5.3. It accumulates the delay
/// variations `d(i)`, smooths the accumulated delay exponentially, and fits
/// a least-squares line through the last 20 (arrival time, smoothed delay)
/// points; the slope says whether the queue is growing (> 0) or draining.
/// The detector compares `min(n, 60) · slope · 4` (the "modified trend", in
/// ms) with its threshold, where `n` counts the deltas seen.
#[derive(Debug, Clone)]
pub struct Trendline {
    window: VecDeque<(f64, f64)>,
    first_arrival_us: Option<i64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    num_deltas: u32,
    trend: f64,
}

/// Points in the least-squares fit.
pub const TRENDLINE_WINDOW: usize = 20;
/// Exponential smoothing of the accumulated delay.
const SMOOTHING: f64 = 0.9;
/// Gain applied to the slope before it is compared with the threshold.
const THRESHOLD_GAIN: f64 = 4.0;
/// The number of deltas scaling the slope saturates here.
const MAX_DELTAS: u32 = 60;

impl Default for Trendline {
    fn default() -> Self {
        Trendline {
            window: VecDeque::with_capacity(TRENDLINE_WINDOW + 1),
            first_arrival_us: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            num_deltas: 0,
            trend: 0.0,
        }
    }
}

impl Trendline {
    /// An empty filter.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one group delta; returns `(modified trend in ms, raw slope)`.
    pub fn update(&mut self, d: &GroupDelta) -> (f64, f64) {
        let delta_ms = d.delay_variation_us() as f64 / 1000.0;
        self.num_deltas = (self.num_deltas + 1).min(1000);
        let first = *self.first_arrival_us.get_or_insert(d.arrival_us);
        self.accumulated_ms += delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        let x = (d.arrival_us.saturating_sub(first)) as f64 / 1000.0;
        self.window.push_back((x, self.smoothed_ms));
        if self.window.len() > TRENDLINE_WINDOW {
            self.window.pop_front();
        }
        if self.window.len() == TRENDLINE_WINDOW
            && let Some(slope) = linear_fit_slope(&self.window)
        {
            self.trend = slope;
        }
        (self.modified_trend(), self.trend)
    }

    /// `min(n, 60) · slope · gain`, the value the detector thresholds.
    pub fn modified_trend(&self) -> f64 {
        self.num_deltas.min(MAX_DELTAS) as f64 * self.trend * THRESHOLD_GAIN
    }

    /// Deltas seen so far (saturates at 1000).
    pub fn num_deltas(&self) -> u32 {
        self.num_deltas
    }
}

/// Least-squares slope of `y` over `x`, `None` when the `x` do not vary.
fn linear_fit_slope(points: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in points {
        num += (x - mx) * (y - my);
        den += (x - mx) * (x - mx);
    }
    let slope = num / den;
    (den > 0.0 && slope.is_finite()).then_some(slope)
}

/// What the over-use detector concluded (§5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthUsage {
    /// The delay is stable: the path is not congested.
    Normal,
    /// The delay grows: a queue is filling.
    Overusing,
    /// The delay shrinks: a queue is draining.
    Underusing,
}

/// §5.4 over-use detector with the adaptive threshold `del_var_th`.
///
/// RFC-style rule encoded here (draft-ietf-rmcat-gcc-02 §5.4): over-use is
/// signalled when the estimate stays above the threshold for at least
/// `overuse_time_th` (10 ms) and does not shrink; under-use when it is below
/// `-del_var_th`. The threshold adapts as
/// `del_var_th(i) = del_var_th(i-1) + Δt · K(i) · (|m(i)| - del_var_th(i-1))`
/// with `K = K_u` when `|m(i)|` is above it and `K_d` below, is not updated
/// by outliers more than 15 ms above it, and stays within 6..600 ms. The
/// draft's `K_u = 0.01`, `K_d = 0.00018` suit the Kalman filter's estimate;
/// for the trendline's modified trend we use libwebrtc's `K_u = 0.0087`,
/// `K_d = 0.039` and its 12.5 ms starting threshold.
#[derive(Debug, Clone)]
pub struct OveruseDetector {
    threshold_ms: f64,
    last_update_us: Option<i64>,
    time_over_using_ms: f64,
    overuse_counter: u32,
    prev_trend: f64,
    state: BandwidthUsage,
}

const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const OVERUSE_TIME_TH_MS: f64 = 10.0;
const MAX_ADAPT_OFFSET_MS: f64 = 15.0;
const MAX_TIME_DELTA_MS: f64 = 100.0;

impl Default for OveruseDetector {
    fn default() -> Self {
        OveruseDetector {
            threshold_ms: 12.5,
            last_update_us: None,
            time_over_using_ms: -1.0,
            overuse_counter: 0,
            prev_trend: 0.0,
            state: BandwidthUsage::Normal,
        }
    }
}

impl OveruseDetector {
    /// A detector in the Normal state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current threshold `del_var_th`, ms.
    pub fn threshold_ms(&self) -> f64 {
        self.threshold_ms
    }

    /// The last conclusion.
    pub fn state(&self) -> BandwidthUsage {
        self.state
    }

    /// Classifies one modified trend `m` (ms) with raw slope `trend`;
    /// `send_delta_us` is the group's send-time delta, `now_us` its arrival.
    pub fn detect(
        &mut self,
        m: f64,
        trend: f64,
        send_delta_us: i64,
        num_deltas: u32,
        now_us: i64,
    ) -> BandwidthUsage {
        if num_deltas < 2 {
            return BandwidthUsage::Normal;
        }
        let ts_delta_ms = send_delta_us as f64 / 1000.0;
        if m > self.threshold_ms {
            if self.time_over_using_ms < 0.0 {
                // Assume over-use began halfway between the two groups.
                self.time_over_using_ms = ts_delta_ms / 2.0;
            } else {
                self.time_over_using_ms += ts_delta_ms;
            }
            self.overuse_counter += 1;
            if self.time_over_using_ms > OVERUSE_TIME_TH_MS
                && self.overuse_counter > 1
                && trend >= self.prev_trend
            {
                self.time_over_using_ms = 0.0;
                self.overuse_counter = 0;
                self.state = BandwidthUsage::Overusing;
            }
        } else if m < -self.threshold_ms {
            self.time_over_using_ms = -1.0;
            self.overuse_counter = 0;
            self.state = BandwidthUsage::Underusing;
        } else {
            self.time_over_using_ms = -1.0;
            self.overuse_counter = 0;
            self.state = BandwidthUsage::Normal;
        }
        self.prev_trend = trend;
        self.adapt_threshold(m, now_us);
        self.state
    }

    fn adapt_threshold(&mut self, m: f64, now_us: i64) {
        let last = *self.last_update_us.get_or_insert(now_us);
        let abs = m.abs();
        if !abs.is_finite() || abs > self.threshold_ms + MAX_ADAPT_OFFSET_MS {
            // An outlier (a sudden route change, a hostile report): ignore it.
            self.last_update_us = Some(now_us);
            return;
        }
        let k = if abs < self.threshold_ms {
            K_DOWN
        } else {
            K_UP
        };
        let dt_ms = ((now_us.saturating_sub(last)) as f64 / 1000.0).clamp(0.0, MAX_TIME_DELTA_MS);
        self.threshold_ms += k * (abs - self.threshold_ms) * dt_ms;
        self.threshold_ms = self.threshold_ms.clamp(6.0, 600.0);
        self.last_update_us = Some(now_us);
    }
}

/// §5.5's three states of the rate controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateControlState {
    /// Keep the estimate (the queue drains).
    Hold,
    /// Raise it, multiplicatively or additively.
    Increase,
    /// Lower it to `beta` times the received rate.
    Decrease,
}

/// §5.5 AIMD: multiplicative decrease `beta = 0.85`.
pub const BETA: f64 = 0.85;
/// §5.5: multiplicative increase of 8 % per second far from convergence.
const ETA: f64 = 1.08;

/// The link capacity the controller converged to: the received rate at the
/// over-uses, smoothed, with its spread (§5.5 "average and standard
/// deviation of the incoming bitrate at the time of over-use"). While an
/// estimate lies within three deviations of it, the controller is "near
/// convergence" and increases additively.
#[derive(Debug, Clone, Default)]
struct LinkCapacity {
    estimate_kbps: Option<f64>,
    /// Variance normalised by the estimate (kbit/s), kept in 0.4..=2.5.
    deviation_kbps: f64,
}

impl LinkCapacity {
    fn std_kbps(&self, avg: f64) -> f64 {
        (self.deviation_kbps * avg).sqrt()
    }
    fn upper_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|a| (a + 3.0 * self.std_kbps(a)) * 1000.0)
    }
    fn lower_bps(&self) -> Option<f64> {
        self.estimate_kbps
            .map(|a| (a - 3.0 * self.std_kbps(a)).max(0.0) * 1000.0)
    }
    fn on_overuse(&mut self, acked_bps: f64) {
        let sample = acked_bps / 1000.0;
        const ALPHA: f64 = 0.05;
        let avg = match self.estimate_kbps {
            None => sample,
            Some(a) => (1.0 - ALPHA) * a + ALPHA * sample,
        };
        let norm = avg.max(1.0);
        let err = avg - sample;
        self.deviation_kbps =
            ((1.0 - ALPHA) * self.deviation_kbps + ALPHA * err * err / norm).clamp(0.4, 2.5);
        self.estimate_kbps = Some(avg);
    }
    fn reset(&mut self) {
        self.estimate_kbps = None;
    }
}

/// §5.5 AIMD rate controller: turns the detector's signal and the received
/// (acknowledged) rate into the delay-based estimate `A_hat`.
///
/// It starts in Increase; state changes follow the draft's table:
/// over-use → Decrease, under-use → Hold, normal → Increase from Hold.
/// Increase is multiplicative, `A_hat *= 1.08^min(Δt, 1 s)`, far from
/// convergence, and additive near it: one expected packet per response time
/// (`100 ms + RTT`), the packet size taken from `A_hat` at 30 frames a
/// second in packets of at most 1200 bytes (the draft's formula). The draft
/// adds half a packet per response time; we add a whole one, as libwebrtc
/// does, which halves the time to climb back after a decrease. Decrease
/// sets `A_hat = 0.85 · R_hat` (the received rate), then holds; a further
/// decrease waits a round trip (see `time_to_reduce_further`). `A_hat`
/// never grows beyond `1.5 · R_hat` (+10 kbit/s, so a quiet start can still
/// climb): an increase the sender never used proves nothing.
#[derive(Debug, Clone)]
pub struct AimdRateController {
    estimate: Bitrate,
    min: Bitrate,
    max: Bitrate,
    state: RateControlState,
    last_change_us: Option<i64>,
    capacity: LinkCapacity,
    rtt_us: i64,
}

/// §5.5 `expected_packet_size_bits`: the average packet of a frame at
/// `rate_bps` and 30 frames a second, split into packets of at most 1200
/// bytes.
fn expected_packet_bits(rate_bps: f64) -> f64 {
    let bits_per_frame = (rate_bps / 30.0).max(1.0);
    let packets_per_frame = (bits_per_frame / (1200.0 * 8.0)).ceil().max(1.0);
    bits_per_frame / packets_per_frame
}

impl AimdRateController {
    /// A controller starting at `start`, kept within `min..=max` (a `min`
    /// above `max` is taken as `max`).
    pub fn new(start: Bitrate, min: Bitrate, max: Bitrate) -> Self {
        let min = min.min(max);
        AimdRateController {
            estimate: start.clamp(min, max),
            min,
            max,
            state: RateControlState::Increase,
            last_change_us: None,
            capacity: LinkCapacity::default(),
            rtt_us: 200_000,
        }
    }

    /// The current estimate `A_hat`.
    pub fn estimate(&self) -> Bitrate {
        self.estimate
    }

    /// The current state.
    pub fn state(&self) -> RateControlState {
        self.state
    }

    /// True while the controller thinks it is near the link capacity
    /// (additive increase).
    pub fn near_convergence(&self) -> bool {
        self.capacity.estimate_kbps.is_some()
    }

    /// Sets the round-trip time used for the additive increase.
    pub fn set_rtt(&mut self, rtt_us: i64) {
        self.rtt_us = rtt_us.clamp(1_000, 10_000_000);
    }

    /// Overrides the estimate (a probe measured more; a start value).
    pub fn set_estimate(&mut self, now_us: i64, rate: Bitrate) {
        self.estimate = rate.clamp(self.min, self.max);
        self.last_change_us = Some(now_us);
    }

    /// A further decrease is allowed once a round trip (10..=200 ms) passed
    /// since the last change, or at once if the received rate fell below
    /// half the estimate (libwebrtc's rule: without it, one over-use seen in
    /// consecutive feedbacks cuts the rate two or three times in a row).
    fn time_to_reduce_further(&self, now_us: i64, acked: Option<Bitrate>) -> bool {
        let interval = self.rtt_us.clamp(10_000, 200_000);
        match self.last_change_us {
            None => true,
            Some(t) if now_us.saturating_sub(t) >= interval => true,
            Some(_) => acked.is_some_and(|a| a.as_f64() < 0.5 * self.estimate.as_f64()),
        }
    }

    /// Updates with one detector signal at `now_us`; `acked` is `R_hat`.
    pub fn update(
        &mut self,
        now_us: i64,
        usage: BandwidthUsage,
        acked: Option<Bitrate>,
    ) -> Bitrate {
        if usage == BandwidthUsage::Overusing && !self.time_to_reduce_further(now_us, acked) {
            // The last change is younger than a round trip: its effect on
            // the queue cannot have been seen yet.
            return self.estimate;
        }
        // §5.5 state transitions.
        self.state = match (usage, self.state) {
            (BandwidthUsage::Overusing, _) => RateControlState::Decrease,
            (BandwidthUsage::Underusing, _) => RateControlState::Hold,
            (BandwidthUsage::Normal, RateControlState::Hold) => RateControlState::Increase,
            (BandwidthUsage::Normal, s) => s,
        };
        let current = self.estimate.as_f64();
        let acked_bps = acked.map(|a| a.as_f64());
        let mut new = current;
        match self.state {
            RateControlState::Hold => {}
            RateControlState::Increase => {
                if let (Some(a), Some(upper)) = (acked_bps, self.capacity.upper_bps())
                    && a > upper
                {
                    // The path carries clearly more than it did at the last
                    // over-use: far from convergence again.
                    self.capacity.reset();
                }
                let dt_us = self
                    .last_change_us
                    .map_or(0, |t| now_us.saturating_sub(t).clamp(0, 1_000_000));
                let dt_s = dt_us as f64 / 1e6;
                let increase = if self.near_convergence() {
                    let response_s = (100_000 + self.rtt_us) as f64 / 1e6;
                    let per_s = (expected_packet_bits(current) / response_s).max(4000.0);
                    per_s * dt_s
                } else {
                    (current * (ETA.powf(dt_s) - 1.0)).max(1000.0 * dt_s)
                };
                new = current + increase;
                if let Some(a) = acked_bps {
                    let limit = 1.5 * a + 10_000.0;
                    if new > limit {
                        new = current.max(limit);
                    }
                }
                self.last_change_us = Some(now_us);
            }
            RateControlState::Decrease => {
                if let Some(a) = acked_bps {
                    let mut decreased = BETA * a;
                    if decreased > current
                        && let Some(c) = self.capacity.estimate_kbps
                    {
                        decreased = BETA * c * 1000.0;
                    }
                    if decreased < current {
                        new = decreased;
                    }
                    if self.capacity.lower_bps().is_some_and(|l| a < l) {
                        self.capacity.reset();
                    }
                    self.capacity.on_overuse(a);
                } else {
                    new = BETA * current;
                }
                self.state = RateControlState::Hold;
                self.last_change_us = Some(now_us);
            }
        }
        self.estimate = Bitrate::from_f64(new).clamp(self.min, self.max);
        self.estimate
    }
}

/// `R_hat`: the rate at which the receiver got our packets, from the arrival
/// times the feedback reports, over a sliding window of 150 ms of arrival
/// time. The draft recommends 0.5 to 1 s (§5.5); libwebrtc measures over
/// 150 ms, and so do we: right after a probe raised the estimate, a long
/// window still remembers the old rate, and the first over-use would cut
/// to 0.85 times that. Bounded: at most 8192 packets are kept.
#[derive(Debug, Clone, Default)]
pub struct AckedBitrate {
    window: VecDeque<(i64, usize)>,
    bytes: u64,
    first_us: Option<i64>,
    latest_us: Option<i64>,
}

const ACKED_WINDOW_US: i64 = 150_000;
const ACKED_MAX_PACKETS: usize = 8192;

impl AckedBitrate {
    /// An empty measurement.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a packet of `size` bytes that arrived at `arrival_us`.
    pub fn on_packet(&mut self, arrival_us: i64, size: usize) {
        let latest = self.latest_us.map_or(arrival_us, |l| l.max(arrival_us));
        if self
            .latest_us
            .is_some_and(|l| arrival_us.saturating_sub(l) > 10 * ACKED_WINDOW_US)
            || arrival_us < latest.saturating_sub(ACKED_WINDOW_US)
        {
            if arrival_us < latest {
                return; // too old to count
            }
            // A long silence (or a clock jump): start measuring afresh.
            self.window.clear();
            self.bytes = 0;
            self.first_us = Some(arrival_us);
        }
        self.first_us.get_or_insert(arrival_us);
        self.latest_us = Some(latest);
        self.window.push_back((arrival_us, size));
        self.bytes = self.bytes.saturating_add(size as u64);
        while let Some(&(t, s)) = self.window.front() {
            if t <= latest.saturating_sub(ACKED_WINDOW_US) || self.window.len() > ACKED_MAX_PACKETS
            {
                self.window.pop_front();
                self.bytes = self.bytes.saturating_sub(s as u64);
            } else {
                break;
            }
        }
    }

    /// The received rate, once a whole window of arrivals was seen.
    pub fn rate(&self) -> Option<Bitrate> {
        let (first, latest) = (self.first_us?, self.latest_us?);
        if latest.saturating_sub(first) < ACKED_WINDOW_US {
            return None;
        }
        Bitrate::from_bytes_over(self.bytes, ACKED_WINDOW_US)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(send_ms: f64, arrival_ms: f64) -> PacketTiming {
        PacketTiming {
            send_us: (send_ms * 1000.0) as i64,
            arrival_us: (arrival_ms * 1000.0) as i64,
            size: 1200,
        }
    }

    #[test]
    fn groups_are_5ms_send_bursts() {
        let mut ia = InterArrival::new();
        // Group A: 0, 2, 4 ms; group B: 10, 12; group C opens at 20.
        for (s, a) in [(0.0, 50.0), (2.0, 52.0), (4.0, 54.0), (10.0, 61.0)] {
            assert_eq!(ia.on_packet(p(s, a)), None);
        }
        assert_eq!(ia.on_packet(p(12.0, 63.0)), None);
        let d = ia.on_packet(p(20.0, 70.0)).unwrap();
        assert_eq!(d.send_delta_us, 8_000);
        assert_eq!(d.arrival_delta_us, 9_000);
        assert_eq!(d.delay_variation_us(), 1_000);
        assert_eq!(d.size_delta, -1200);
    }

    #[test]
    fn a_queue_released_burst_joins_the_group() {
        let mut ia = InterArrival::new();
        ia.on_packet(p(0.0, 50.0));
        // Sent 8 ms later but arrived 1 ms later: released together.
        assert_eq!(ia.on_packet(p(8.0, 51.0)), None);
        ia.on_packet(p(20.0, 70.0));
        let d = ia.on_packet(p(40.0, 90.0)).unwrap();
        assert_eq!(d.send_delta_us, 12_000);
    }

    #[test]
    fn a_clock_jump_resets_the_grouping() {
        let mut ia = InterArrival::new();
        ia.on_packet(p(0.0, 0.0));
        ia.on_packet(p(10.0, 10.0));
        assert!(ia.on_packet(p(20.0, 20.0)).is_some());
        // 10 s later on the receiver for 10 ms of sending: the group this
        // packet opens is compared when it closes, and the grouping restarts.
        assert!(ia.on_packet(p(30.0, 10_030.0)).is_some());
        assert_eq!(ia.on_packet(p(40.0, 5.0)), None);
        assert_eq!(ia.on_packet(p(50.0, 15.0)), None);
        assert!(ia.on_packet(p(60.0, 25.0)).is_some());
        // A clock that runs backwards restarts it too.
        assert!(ia.on_packet(p(70.0, 0.0)).is_some());
        assert_eq!(ia.on_packet(p(80.0, 10.0)), None);
        assert_eq!(ia.on_packet(p(90.0, 20.0)), None);
        assert!(ia.on_packet(p(100.0, 30.0)).is_some());
    }

    /// Feeds groups every 10 ms whose delay grows by `growth_ms` each.
    fn detect_run(growth_ms: f64, groups: usize) -> Vec<BandwidthUsage> {
        let mut tl = Trendline::new();
        let mut det = OveruseDetector::new();
        let mut out = Vec::new();
        for i in 1..=groups {
            let d = GroupDelta {
                send_delta_us: 10_000,
                arrival_delta_us: 10_000 + (growth_ms * 1000.0) as i64,
                size_delta: 0,
                arrival_us: i as i64 * 10_000,
            };
            let (m, slope) = tl.update(&d);
            out.push(det.detect(m, slope, d.send_delta_us, tl.num_deltas(), d.arrival_us));
        }
        out
    }

    #[test]
    fn growing_delay_is_overuse_and_steady_delay_is_normal() {
        let steady = detect_run(0.0, 100);
        assert!(steady.iter().all(|u| *u == BandwidthUsage::Normal));
        // A queue growing 1 ms per 10 ms group (10 % over the link).
        let growing = detect_run(1.0, 60);
        assert!(growing.contains(&BandwidthUsage::Overusing));
        let draining = detect_run(-1.0, 60);
        assert!(draining.contains(&BandwidthUsage::Underusing));
        assert!(!draining.contains(&BandwidthUsage::Overusing));
    }

    #[test]
    fn threshold_adapts_within_bounds() {
        let mut det = OveruseDetector::new();
        for i in 0..10_000 {
            det.detect(0.0, 0.0, 10_000, 10, i * 10_000);
        }
        assert_eq!(det.threshold_ms(), 6.0);
        for i in 10_000..20_000 {
            // Always just above the threshold: it creeps up after it.
            let m = det.threshold_ms() + 10.0;
            det.detect(m, 0.0, 10_000, 10, i * 10_000);
        }
        assert!(det.threshold_ms() > 100.0 && det.threshold_ms() <= 600.0);
        // Outliers and non-finite values leave it alone.
        let before = det.threshold_ms();
        det.detect(f64::INFINITY, 0.0, 10_000, 10, 300_000_000);
        det.detect(f64::NAN, 0.0, 10_000, 10, 300_100_000);
        assert_eq!(det.threshold_ms(), before);
    }

    #[test]
    fn aimd_increases_8_percent_a_second_then_decreases_to_085_acked() {
        let mut c =
            AimdRateController::new(Bitrate::kbps(1000), Bitrate::kbps(30), Bitrate::mbps(100));
        let acked = Some(Bitrate::kbps(1000));
        c.update(0, BandwidthUsage::Normal, acked);
        for i in 1..=10 {
            c.update(i * 100_000, BandwidthUsage::Normal, acked);
        }
        let after_1s = c.estimate().as_f64();
        assert!((after_1s / 1.08e6 - 1.0).abs() < 0.01, "{after_1s}");
        // It never runs beyond 1.5 × what was acknowledged.
        for i in 11..=100 {
            c.update(i * 100_000, BandwidthUsage::Normal, acked);
        }
        assert_eq!(c.estimate(), Bitrate::bps(1_510_000));
        // Not within a round trip (200 ms until one is known) of the last
        // change...
        c.update(
            10_100_000,
            BandwidthUsage::Overusing,
            Some(Bitrate::kbps(1200)),
        );
        assert_eq!(c.estimate(), Bitrate::bps(1_510_000));
        // ... but after it.
        c.update(
            10_400_000,
            BandwidthUsage::Overusing,
            Some(Bitrate::kbps(1200)),
        );
        assert_eq!(c.estimate(), Bitrate::bps(1_020_000));
        assert_eq!(c.state(), RateControlState::Hold);
        assert!(c.near_convergence());
        // Near convergence the increase is additive: about a packet per
        // response time (100 ms + RTT), not 8 %.
        c.set_rtt(50_000);
        c.update(
            10_500_000,
            BandwidthUsage::Normal,
            Some(Bitrate::kbps(1000)),
        );
        let before = c.estimate().as_f64();
        c.update(
            11_500_000,
            BandwidthUsage::Normal,
            Some(Bitrate::kbps(1000)),
        );
        let gained = c.estimate().as_f64() - before;
        // 1.02 Mbit/s at 30 fps: 34 000-bit frames in 4 packets of 8500 bits.
        assert_eq!(expected_packet_bits(1_020_000.0), 8500.0);
        let want = expected_packet_bits(before) / 0.15;
        assert!((gained - want).abs() < 100.0, "{gained} vs {want}");
    }

    #[test]
    fn acked_bitrate_over_the_window() {
        let mut a = AckedBitrate::new();
        assert_eq!(a.rate(), None);
        // 1250 bytes every 10 ms = 1 Mbit/s.
        for i in 0..200 {
            a.on_packet(i * 10_000, 1250);
        }
        let r = a.rate().unwrap().as_f64();
        assert!((r / 1e6 - 1.0).abs() < 0.03, "{r}");
        // A jump far ahead starts over; a packet from long before is ignored.
        a.on_packet(100_000_000, 1250);
        assert_eq!(a.rate(), None);
        a.on_packet(0, 1250);
        assert_eq!(a.rate(), None);
    }
}
