//! A leaky-bucket pacer: smooths what the encoder produces in bursts (a
//! keyframe is dozens of packets at once) into the network at a steady
//! pacing rate, 2.5 × the bandwidth estimate by default, released in 5 ms
//! bursts, so that a frame's packets do not all land in the bottleneck
//! queue together and the delay-based estimator sees the path, not the
//! encoder.
//!
//! ```text
//!  enqueue(Audio)          ┌────────────┐
//!  enqueue(Video)  ──────► │ 3 queues,  │ ── budget += rate · Δt (≤ rate · 5 ms) ──► poll_release
//!  enqueue(Retransmission) │ by priority│     (never above one burst)
//!                          └────────────┘
//!  start_probe(cluster) ─► probe packets (queued media, else padding) at the probe's rate
//! ```
//!
//! The pacer holds opaque items (`T`: the caller's packets) with their size;
//! it never reads a clock: `poll_release(now)` hands out what may go now and
//! `poll_timeout()` says when to ask again. Its queue is bounded in packets
//! and bytes; [`Pacer::enqueue`] refuses a packet that does not fit
//! ([`Error::QueueFull`]), and the caller decides what to drop (an
//! encoder would rather skip to the next keyframe).

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use super::Bitrate;
use super::probe::ProbeCluster;

/// Which queue a packet waits in; the lower the variant, the sooner it goes.
/// Audio first (small and steady), then video, then retransmissions (as
/// this crate's design asks; libwebrtc ranks retransmissions above video).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Audio packets.
    Audio = 0,
    /// Video (new media).
    Video = 1,
    /// Retransmissions (RTX).
    Retransmission = 2,
}

/// Pacer settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Pacing rate = this × the estimate ([`Pacer::set_estimate`]).
    pub pacing_factor: f64,
    /// The burst interval: a spent budget waits at least `burst` before the
    /// next release, and the budget never holds more than `rate · burst`.
    pub burst: Duration,
    /// Most packets queued at once.
    pub max_packets: usize,
    /// Most bytes queued at once.
    pub max_bytes: usize,
    /// Size of the padding packets asked for when a probe finds no media to
    /// send (0: never pad; a probe then uses queued media only).
    pub padding_size: usize,
}

impl Default for Config {
    /// 2.5 × the estimate in 5 ms bursts, 2048 packets / 2 MiB, 1200-byte padding.
    fn default() -> Self {
        Config {
            pacing_factor: 2.5,
            burst: Duration::from_millis(5),
            max_packets: 2048,
            max_bytes: 2 << 20,
            padding_size: 1200,
        }
    }
}

/// Why the pacer refused a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The queue is full (the packet is handed back by [`Pacer::enqueue`]).
    QueueFull {
        /// Packets queued.
        packets: usize,
        /// Bytes queued.
        bytes: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::QueueFull { packets, bytes } => write!(
                f,
                "pacer queue full ({packets} packets, {bytes} bytes queued): packet dropped"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// What the pacer lets go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release<T> {
    /// A queued packet.
    Packet {
        /// The caller's item.
        item: T,
        /// Its size as enqueued.
        size: usize,
        /// The probe cluster it belongs to, to pass to
        /// [`super::SendSideBwe::on_packet_sent`].
        probe: Option<u32>,
    },
    /// Send `size` bytes of padding (an RTP padding-only packet) for probe
    /// cluster `probe`.
    Padding {
        /// Bytes to send.
        size: usize,
        /// The probe cluster.
        probe: u32,
    },
}

#[derive(Debug, Clone)]
struct ActiveProbe {
    cluster: ProbeCluster,
    sent_bytes: usize,
    sent_packets: usize,
    next_send: Option<Instant>,
}

/// The pacer. `T` is whatever the caller queues (a datagram, an index).
#[derive(Debug, Clone)]
pub struct Pacer<T> {
    config: Config,
    queues: [VecDeque<(usize, T)>; 3],
    queued_bytes: usize,
    rate: Bitrate,
    /// Bytes that may go now: grows at the pacing rate up to one burst,
    /// goes negative by what the last packet overshot.
    budget: f64,
    /// When `budget` was last brought up to date.
    last_credit: Option<Instant>,
    /// No burst starts before this (the budget is spent in bursts).
    gate: Option<Instant>,
    probe: Option<ActiveProbe>,
    pending_probes: VecDeque<ProbeCluster>,
    /// The latest `now` seen: what `poll_timeout` answers when due at once.
    now: Option<Instant>,
}

/// Probe clusters waiting their turn, at most.
const MAX_PENDING_PROBES: usize = 8;

impl<T> Pacer<T> {
    /// An empty pacer for an estimate of `estimate`.
    pub fn new(config: Config, estimate: Bitrate) -> Self {
        let rate = estimate.mul_f64(config.pacing_factor);
        Pacer {
            config,
            queues: [VecDeque::new(), VecDeque::new(), VecDeque::new()],
            queued_bytes: 0,
            rate,
            budget: 0.0,
            last_credit: None,
            gate: None,
            probe: None,
            pending_probes: VecDeque::new(),
            now: None,
        }
    }

    /// Follows a new bandwidth estimate (pacing rate = factor × estimate).
    pub fn set_estimate(&mut self, estimate: Bitrate) {
        self.rate = estimate.mul_f64(self.config.pacing_factor);
        self.budget = self.budget.min(self.burst_bytes());
    }

    /// The pacing rate.
    pub fn rate(&self) -> Bitrate {
        self.rate
    }

    /// The most bytes one burst may release (`rate · burst`).
    pub fn burst_bytes(&self) -> f64 {
        self.rate.as_f64() / 8.0 * self.config.burst.as_secs_f64()
    }

    /// Packets queued.
    pub fn queued_packets(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// How long the queued bytes take at the pacing rate.
    pub fn expected_queue_time(&self) -> Duration {
        let rate = self.rate.as_f64().max(1.0);
        Duration::from_secs_f64((self.queued_bytes as f64 * 8.0 / rate).min(3600.0))
    }

    fn see(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |n| n.max(now)));
    }

    /// Queues a packet of `size` bytes at `now`; a full queue hands it back.
    pub fn enqueue(
        &mut self,
        now: Instant,
        priority: Priority,
        size: usize,
        item: T,
    ) -> Result<(), (Error, T)> {
        if self.queued_packets() >= self.config.max_packets
            || self.queued_bytes.saturating_add(size) > self.config.max_bytes
        {
            let err = Error::QueueFull {
                packets: self.queued_packets(),
                bytes: self.queued_bytes,
            };
            return Err((err, item));
        }
        self.see(now);
        self.queued_bytes += size;
        self.queues[priority as usize].push_back((size, item));
        Ok(())
    }

    /// Asks for a probe cluster (from [`super::Event::Probe`]); clusters go
    /// one after another.
    pub fn start_probe(&mut self, now: Instant, cluster: ProbeCluster) {
        self.see(now);
        if self.pending_probes.len() >= MAX_PENDING_PROBES {
            self.pending_probes.pop_front();
        }
        self.pending_probes.push_back(cluster);
    }

    /// True while a probe cluster is being sent or waits.
    pub fn probing(&self) -> bool {
        self.probe.is_some() || !self.pending_probes.is_empty()
    }

    fn pop_queued(&mut self) -> Option<(usize, T)> {
        let (size, item) = self.queues.iter_mut().find_map(|q| q.pop_front())?;
        self.queued_bytes -= size;
        Some((size, item))
    }

    /// Brings the budget up to `now`: a leaky bucket that fills at the
    /// pacing rate and holds at most one burst, so idle time is not saved up
    /// beyond that.
    fn credit(&mut self, now: Instant) {
        let burst = self.burst_bytes();
        match self.last_credit {
            None => self.budget = burst,
            Some(last) => {
                let elapsed = now.saturating_duration_since(last).as_secs_f64();
                self.budget = (self.budget + self.rate.as_f64() / 8.0 * elapsed).min(burst);
            }
        }
        self.last_credit = Some(self.last_credit.map_or(now, |l| l.max(now)));
    }

    /// When the budget turns positive again, at the earliest one burst
    /// interval after `now`.
    fn close_burst(&mut self, now: Instant) {
        let rate = self.rate.as_f64().max(1.0) / 8.0;
        let refill = Duration::from_secs_f64((-self.budget / rate).clamp(0.0, 3600.0));
        self.gate = Some(now + refill.max(self.config.burst));
    }

    /// The next packet that may go at `now`, if any. Call until `None`, then
    /// again at [`Pacer::poll_timeout`].
    pub fn poll_release(&mut self, now: Instant) -> Option<Release<T>> {
        self.see(now);
        if let Some(r) = self.poll_probe(now) {
            return Some(r);
        }
        if self.probe.is_some() || self.queued_packets() == 0 {
            return None;
        }
        self.credit(now);
        if self.gate.is_some_and(|g| now < g) {
            return None;
        }
        if self.budget <= 0.0 {
            self.close_burst(now);
            return None;
        }
        let (size, item) = self.pop_queued()?;
        self.budget -= size as f64;
        if self.budget <= 0.0 {
            self.close_burst(now);
        }
        Some(Release::Packet {
            item,
            size,
            probe: None,
        })
    }

    /// Probe clusters go at their own rate, one packet at a time, and hold
    /// media back meanwhile (their packets are the media when there is any).
    fn poll_probe(&mut self, now: Instant) -> Option<Release<T>> {
        if self.probe.is_none() {
            let cluster = self.pending_probes.pop_front()?;
            self.probe = Some(ActiveProbe {
                cluster,
                sent_bytes: 0,
                sent_packets: 0,
                next_send: None,
            });
        }
        let p = self.probe.as_ref()?;
        if p.next_send.is_some_and(|t| now < t) {
            return None;
        }
        let id = p.cluster.id;
        let release = match self.pop_queued() {
            Some((size, item)) => Release::Packet {
                item,
                size,
                probe: Some(id),
            },
            None if self.config.padding_size > 0 => Release::Padding {
                size: self.config.padding_size,
                probe: id,
            },
            None => {
                // Nothing to probe with: give the cluster up.
                self.probe = None;
                return None;
            }
        };
        let size = match &release {
            Release::Packet { size, .. } | Release::Padding { size, .. } => *size,
        };
        let p = self.probe.as_mut()?;
        p.sent_bytes += size;
        p.sent_packets += 1;
        let gap = size as f64 * 8.0 / p.cluster.rate.as_f64().max(1000.0);
        p.next_send = Some(now + Duration::from_nanos((gap.min(1.0) * 1e9).round() as u64));
        if p.sent_bytes >= p.cluster.min_bytes && p.sent_packets >= p.cluster.min_packets {
            self.probe = None;
            // Media waits its normal turn after the probe.
            self.credit(now);
            self.budget = self.budget.min(0.0);
            self.close_burst(now);
        }
        Some(release)
    }

    /// When to call [`Pacer::poll_release`] next (`None`: nothing to send).
    /// A time not after the latest `now` given means "now".
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(p) = &self.probe {
            return p.next_send.or(self.now);
        }
        if !self.pending_probes.is_empty() {
            return self.now;
        }
        if self.queued_packets() == 0 {
            return None;
        }
        match self.gate {
            Some(g) => Some(self.now.map_or(g, |n| n.max(g))),
            None => self.now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(p: &mut Pacer<u32>, now: Instant) -> Vec<Release<u32>> {
        std::iter::from_fn(|| p.poll_release(now)).collect()
    }

    #[test]
    fn releases_in_5ms_bursts_at_the_pacing_rate() {
        let t0 = Instant::now();
        // 1 Mbit/s estimate → 2.5 Mbit/s pacing → 1562.5 bytes per 5 ms.
        let mut p = Pacer::new(Config::default(), Bitrate::mbps(1));
        for i in 0..20 {
            p.enqueue(t0, Priority::Video, 1000, i).unwrap();
        }
        assert_eq!(drain(&mut p, t0).len(), 2);
        assert_eq!(p.poll_timeout(), Some(t0 + Duration::from_millis(5)));
        assert!(drain(&mut p, t0 + Duration::from_millis(4)).is_empty());
        // 1562.5 - 2000 + 1562.5 = 1125 → one packet, then two, ...
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(5)).len(), 2);
        let mut sent = 4;
        let mut now = t0 + Duration::from_millis(5);
        while let Some(t) = p.poll_timeout() {
            now = now.max(t);
            sent += drain(&mut p, now).len();
        }
        assert_eq!(sent, 20);
        // 20 kB at 2.5 Mbit/s take 64 ms; the first burst went at once.
        let took = now - t0;
        assert!(
            took >= Duration::from_millis(55) && took <= Duration::from_millis(65),
            "{took:?}"
        );
    }

    #[test]
    fn audio_first_then_video_then_retransmissions() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Config::default(), Bitrate::mbps(100));
        p.enqueue(t0, Priority::Retransmission, 100, 3).unwrap();
        p.enqueue(t0, Priority::Video, 100, 2).unwrap();
        p.enqueue(t0, Priority::Audio, 100, 1).unwrap();
        p.enqueue(t0, Priority::Video, 100, 4).unwrap();
        let order: Vec<u32> = drain(&mut p, t0)
            .into_iter()
            .map(|r| match r {
                Release::Packet { item, .. } => item,
                Release::Padding { .. } => 0,
            })
            .collect();
        assert_eq!(order, [1, 2, 4, 3]);
    }

    #[test]
    fn a_full_queue_refuses_and_hands_back() {
        let cfg = Config {
            max_packets: 2,
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut p = Pacer::new(cfg, Bitrate::kbps(100));
        p.enqueue(t0, Priority::Video, 10, 1).unwrap();
        p.enqueue(t0, Priority::Video, 10, 2).unwrap();
        let (err, item) = p.enqueue(t0, Priority::Audio, 10, 3).unwrap_err();
        assert_eq!(item, 3);
        assert!(err.to_string().contains("full"));
        let cfg = Config {
            max_bytes: 1500,
            ..Config::default()
        };
        let mut p = Pacer::new(cfg, Bitrate::kbps(100));
        p.enqueue(t0, Priority::Video, 1000, 1).unwrap();
        assert!(p.enqueue(t0, Priority::Video, 1000, 2).is_err());
        assert_eq!((p.queued_packets(), p.queued_bytes()), (1, 1000));
    }

    #[test]
    fn a_probe_sends_media_then_padding_at_its_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Config::default(), Bitrate::kbps(300));
        p.enqueue(t0, Priority::Video, 1200, 1).unwrap();
        p.start_probe(
            t0,
            ProbeCluster {
                id: 9,
                rate: Bitrate::kbps(1920),
                min_bytes: 6000,
                min_packets: 5,
            },
        );
        let mut now = t0;
        let mut got = Vec::new();
        while p.probing() {
            if let Some(r) = p.poll_release(now) {
                got.push((now - t0, r));
            } else {
                now = p.poll_timeout().unwrap().max(now);
            }
        }
        assert_eq!(got.len(), 5);
        assert_eq!(
            got[0].1,
            Release::Packet {
                item: 1,
                size: 1200,
                probe: Some(9)
            }
        );
        assert_eq!(
            got[1].1,
            Release::Padding {
                size: 1200,
                probe: 9
            }
        );
        // 1200 bytes at 1.92 Mbit/s = 5 ms apart.
        assert_eq!(got[4].0, Duration::from_millis(20));
        assert!(p.poll_timeout().is_none());
    }

    proptest! {
        /// Over any window of 50 ms or more, the pacer releases at most
        /// `rate · window` plus one burst plus one packet.
        #[test]
        fn never_faster_than_its_rate(
            rate_kbps in 50u64..20_000,
            arrivals in proptest::collection::vec((0u64..2_000, 1usize..1500, 0u8..3), 1..300),
            rate_change in proptest::option::of((0u64..2_000, 50u64..20_000)),
        ) {
            let t0 = Instant::now();
            let mut p = Pacer::new(Config::default(), Bitrate::kbps(rate_kbps));
            let mut arrivals = arrivals;
            arrivals.sort_by_key(|a| a.0);
            let mut i = 0;
            let mut now = t0;
            let mut log: Vec<(Instant, usize)> = Vec::new();
            let mut changed = false;
            // The bound holds per rate: check up to the change with the
            // higher of the two.
            let max_rate = rate_kbps.max(rate_change.map_or(0, |c| c.1));
            loop {
                while i < arrivals.len() && t0 + Duration::from_millis(arrivals[i].0) <= now {
                    let pr = [Priority::Audio, Priority::Video, Priority::Retransmission][arrivals[i].2 as usize];
                    let _ = p.enqueue(now, pr, arrivals[i].1, 0u32);
                    i += 1;
                }
                if let Some((at, r)) = rate_change
                    && !changed && t0 + Duration::from_millis(at) <= now
                {
                    p.set_estimate(Bitrate::kbps(r));
                    changed = true;
                }
                while let Some(Release::Packet { size, .. }) = p.poll_release(now) {
                    log.push((now, size));
                }
                let next_arrival = arrivals.get(i).map(|a| t0 + Duration::from_millis(a.0));
                let next = match (p.poll_timeout(), next_arrival) {
                    (Some(a), Some(b)) => a.min(b),
                    (a, b) => match a.or(b) { Some(t) => t, None => break },
                };
                now = next.max(now + Duration::from_micros(1));
            }
            let rate_bytes_per_s = max_rate as f64 * 1000.0 * 2.5 / 8.0;
            let burst = rate_bytes_per_s * 0.005;
            for a in 0..log.len() {
                let mut sum = 0usize;
                for b in a..log.len() {
                    sum += log[b].1;
                    let w = (log[b].0 - log[a].0).as_secs_f64();
                    if w >= 0.05 {
                        prop_assert!(sum as f64 <= rate_bytes_per_s * w + burst + 1500.0,
                            "{} bytes in {w} s", sum);
                    }
                }
            }
        }
    }
}
