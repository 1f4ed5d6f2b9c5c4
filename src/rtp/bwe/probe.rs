//! Bandwidth probing: short clusters of packets sent faster than the current
//! estimate, whose arrival spacing measures what the path can carry.
//!
//! GCC's AIMD rises only 8 % a second (draft-ietf-rmcat-gcc-02 §5.5), so from
//! a 300 kbit/s start it would need half a minute to fill 5 Mbit/s. Like
//! libwebrtc, the sender therefore probes at start: two clusters at 3× and
//! 6× the start rate, then, while a probe comes back at 70 % or more of the
//! rate it was sent at, another at twice what it measured ("exponential
//! probing"). A probe's result is the lower of its send rate and its receive
//! rate (the first packet's size is not counted on the receive side, nor the
//! last one's on the send side, as each marks an interval's start); a
//! cluster received much slower than sent (under 90 %) hit the capacity,
//! and its result is 95 % of the receive rate.

use std::collections::VecDeque;

use super::Bitrate;

/// A request to send one probe cluster: `min_bytes` (at least `min_packets`
/// packets) at `rate`, each packet tagged with `id` when it is reported
/// sent ([`super::SendSideBwe::on_packet_sent`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    /// Identifies the cluster's packets.
    pub id: u32,
    /// The rate to send them at.
    pub rate: Bitrate,
    /// Bytes to send in all.
    pub min_bytes: usize,
    /// Packets to send at least.
    pub min_packets: usize,
}

/// A cluster lasts at least this long. libwebrtc sends 15 ms; with 5 to
/// 10 ms of jitter on the path a 15 ms cluster's receive interval is mostly
/// jitter, its receive rate comes out low, and exponential probing stopped
/// at 1.6 Mbit/s on a 5 Mbit/s link in `tests/bwe_sim.rs`. 30 ms costs a
/// few kilobytes more queue once, at start.
const MIN_PROBE_DURATION_US: u64 = 30_000;
/// ... and has at least this many packets.
const MIN_PROBE_PACKETS: usize = 5;
/// Probe again at 2× while the result is at least this share of the probed rate.
const PROBE_FURTHER_SHARE: f64 = 0.7;
/// A probe with no result after this long is given up.
const PROBE_TIMEOUT_US: i64 = 1_000_000;
/// Clusters whose packets are being matched at once.
const MAX_TRACKED_CLUSTERS: usize = 8;

impl ProbeCluster {
    fn new(id: u32, rate: Bitrate) -> Self {
        let min_bytes = (rate.as_f64() * MIN_PROBE_DURATION_US as f64 / 8e6) as usize;
        ProbeCluster {
            id,
            rate,
            min_bytes: min_bytes.max(MIN_PROBE_PACKETS * 1000),
            min_packets: MIN_PROBE_PACKETS,
        }
    }
}

#[derive(Debug, Clone)]
enum ProbeState {
    /// No probe was asked for yet.
    Init,
    /// Waiting for the result of a probe at `rate`, asked for at `since_us`.
    Waiting { rate: Bitrate, since_us: i64 },
    /// Exponential probing is over.
    Done,
}

/// Decides when to probe and at what rate.
#[derive(Debug, Clone)]
pub struct ProbeController {
    state: ProbeState,
    next_id: u32,
    max: Bitrate,
    enabled: bool,
}

impl ProbeController {
    /// A controller that never probes above `max` (and never at all when
    /// not `enabled`).
    pub fn new(max: Bitrate, enabled: bool) -> Self {
        ProbeController {
            state: ProbeState::Init,
            next_id: 1,
            max,
            enabled,
        }
    }

    fn cluster(&mut self, rate: Bitrate) -> ProbeCluster {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        ProbeCluster::new(id, rate.min(self.max))
    }

    /// The start-up probes (3× and 6× the start estimate), once.
    pub fn on_start(&mut self, now_us: i64, start: Bitrate) -> Vec<ProbeCluster> {
        if !self.enabled || !matches!(self.state, ProbeState::Init) {
            return Vec::new();
        }
        let rates = [start.mul_f64(3.0), start.mul_f64(6.0)];
        self.state = ProbeState::Waiting {
            rate: rates[1].min(self.max),
            since_us: now_us,
        };
        rates.into_iter().map(|r| self.cluster(r)).collect()
    }

    /// A probe the application asks for (an SFU that wants to know
    /// whether a subscriber's link carries the next simulcast layer): a
    /// cluster at `rate`, whose result may lead further as after the
    /// start-up probes. `None` when probing is off.
    pub fn on_request(&mut self, now_us: i64, rate: Bitrate) -> Option<ProbeCluster> {
        if !self.enabled {
            return None;
        }
        let rate = rate.min(self.max);
        self.state = ProbeState::Waiting {
            rate,
            since_us: now_us,
        };
        Some(self.cluster(rate))
    }

    /// A probe measured `result`: maybe probe further.
    pub fn on_result(&mut self, now_us: i64, result: Bitrate) -> Option<ProbeCluster> {
        let ProbeState::Waiting { rate, .. } = self.state else {
            return None;
        };
        if result.as_f64() < PROBE_FURTHER_SHARE * rate.as_f64() {
            // Not yet the larger cluster's result? Keep waiting for it; a
            // smaller one came back first.
            return None;
        }
        let next = result.mul_f64(2.0).min(self.max);
        if next <= rate {
            self.state = ProbeState::Done;
            return None;
        }
        self.state = ProbeState::Waiting {
            rate: next,
            since_us: now_us,
        };
        Some(self.cluster(next))
    }

    /// Gives up a probe whose result never came.
    pub fn on_time(&mut self, now_us: i64) {
        if let ProbeState::Waiting { since_us, .. } = self.state
            && now_us.saturating_sub(since_us) > PROBE_TIMEOUT_US
        {
            self.state = ProbeState::Done;
        }
    }

    /// True while exponential probing goes on.
    pub fn probing(&self) -> bool {
        matches!(self.state, ProbeState::Waiting { .. })
    }
}

#[derive(Debug, Clone)]
struct ClusterStats {
    id: u32,
    min_packets: usize,
    first_send: i64,
    last_send: i64,
    last_send_size: usize,
    first_arrival: i64,
    first_arrival_size: usize,
    last_arrival: i64,
    bytes: u64,
    packets: usize,
    reported: bool,
}

/// Measures each probe cluster from its packets' send and arrival times.
#[derive(Debug, Clone, Default)]
pub struct ProbeEstimator {
    clusters: VecDeque<ClusterStats>,
}

/// Longest interval a probe may span on either side (libwebrtc: 1 s).
const MAX_PROBE_INTERVAL_US: i64 = 1_000_000;
/// A receive rate this far below the send rate means the probe is invalid.
const MAX_VALID_RATIO: f64 = 2.0;
/// Below this share of the send rate, the probe hit the capacity.
const MIN_RATIO_FOR_UNSATURATED: f64 = 0.9;
/// ... and its result is this share of the receive rate.
const TARGET_UTILIZATION: f64 = 0.95;

impl ProbeEstimator {
    /// Nothing tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// One acknowledged packet of cluster `id` (`min_packets` from its
    /// [`ProbeCluster`]).
    pub fn on_packet(
        &mut self,
        id: u32,
        min_packets: usize,
        send_us: i64,
        arrival_us: i64,
        size: usize,
    ) {
        let c = match self.clusters.iter().position(|c| c.id == id) {
            Some(i) => &mut self.clusters[i],
            None => {
                if self.clusters.len() >= MAX_TRACKED_CLUSTERS {
                    self.clusters.pop_front();
                }
                self.clusters.push_back(ClusterStats {
                    id,
                    min_packets,
                    first_send: send_us,
                    last_send: send_us,
                    last_send_size: size,
                    first_arrival: arrival_us,
                    first_arrival_size: size,
                    last_arrival: arrival_us,
                    bytes: 0,
                    packets: 0,
                    reported: false,
                });
                let Some(c) = self.clusters.back_mut() else {
                    return;
                };
                c
            }
        };
        if send_us < c.first_send {
            c.first_send = send_us;
        }
        if send_us >= c.last_send {
            c.last_send = send_us;
            c.last_send_size = size;
        }
        if arrival_us < c.first_arrival {
            c.first_arrival = arrival_us;
            c.first_arrival_size = size;
        }
        c.last_arrival = c.last_arrival.max(arrival_us);
        c.bytes = c.bytes.saturating_add(size as u64);
        c.packets += 1;
    }

    /// The result of a cluster that now has enough packets in (80 % of
    /// `min_packets`), once per cluster. Call after a whole feedback was fed.
    pub fn poll_result(&mut self) -> Option<Bitrate> {
        self.clusters
            .iter_mut()
            .filter(|c| !c.reported && c.packets * 5 >= c.min_packets * 4)
            .find_map(|c| {
                // Measured (or found invalid) once: never again.
                c.reported = true;
                Self::measure(c)
            })
    }

    fn measure(c: &ClusterStats) -> Option<Bitrate> {
        let send_interval = c.last_send - c.first_send;
        let recv_interval = c.last_arrival.saturating_sub(c.first_arrival);
        if send_interval <= 0
            || recv_interval <= 0
            || send_interval > MAX_PROBE_INTERVAL_US
            || recv_interval > MAX_PROBE_INTERVAL_US
        {
            return None;
        }
        let send_rate = Bitrate::from_bytes_over(
            c.bytes.saturating_sub(c.last_send_size as u64),
            send_interval,
        )?;
        let recv_rate = Bitrate::from_bytes_over(
            c.bytes.saturating_sub(c.first_arrival_size as u64),
            recv_interval,
        )?;
        if send_rate.as_f64() > MAX_VALID_RATIO * recv_rate.as_f64() {
            return None;
        }
        let mut result = send_rate.min(recv_rate);
        if recv_rate.as_f64() < MIN_RATIO_FOR_UNSATURATED * send_rate.as_f64() {
            result = recv_rate.mul_f64(TARGET_UTILIZATION);
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_probes_then_exponential() {
        let mut pc = ProbeController::new(Bitrate::mbps(10), true);
        let c = pc.on_start(0, Bitrate::kbps(300));
        assert_eq!(
            c.iter().map(|c| c.rate).collect::<Vec<_>>(),
            [Bitrate::kbps(900), Bitrate::kbps(1800)]
        );
        assert!(pc.on_start(0, Bitrate::kbps(300)).is_empty());
        // The 900k cluster's result is below 70 % of 1.8M: wait.
        assert_eq!(pc.on_result(10, Bitrate::kbps(900)), None);
        let next = pc.on_result(20, Bitrate::kbps(1700)).unwrap();
        assert_eq!(next.rate, Bitrate::kbps(3400));
        assert_eq!(next.min_bytes, 3_400_000 * 30 / 8000);
        let next = pc.on_result(30, Bitrate::kbps(3300)).unwrap();
        assert_eq!(next.rate, Bitrate::kbps(6600));
        // Capped by the link: 4.9M of 6.6M probed is above 70 % → 9.8M;
        // then 5M of 9.8M is not: done.
        assert_eq!(
            pc.on_result(40, Bitrate::kbps(4900)).unwrap().rate,
            Bitrate::kbps(9800)
        );
        assert_eq!(pc.on_result(50, Bitrate::kbps(5000)), None);
        assert!(pc.probing());
        pc.on_time(2_000_000);
        assert!(!pc.probing());
    }

    #[test]
    fn estimator_takes_the_lower_rate() {
        let mut pe = ProbeEstimator::new();
        // 10 packets of 1000 bytes sent 1 ms apart (8 Mbit/s), received
        // 2 ms apart (4 Mbit/s): saturated, so 95 % of 4 Mbit/s.
        for i in 0..10 {
            pe.on_packet(7, 5, i * 1000, 50_000 + i * 2000, 1000);
        }
        assert_eq!(pe.poll_result(), Some(Bitrate::kbps(3800)));
        assert_eq!(pe.poll_result(), None);
        // Same spacing both sides: the send rate.
        for i in 0..10 {
            pe.on_packet(8, 5, i * 1000, 50_000 + i * 1000, 1000);
        }
        assert_eq!(pe.poll_result(), Some(Bitrate::mbps(8)));
        // Too few packets: no result.
        pe.on_packet(9, 5, 0, 0, 1000);
        assert_eq!(pe.poll_result(), None);
    }
}
