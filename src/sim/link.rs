//! Access links: what happens to a datagram between a host and the network.
//!
//! Every host has two one-way links, the uplink (host → network) and the
//! downlink (network → host). A datagram crosses the sender's uplink, then any
//! NATs on the way, then the receiver's downlink. Each link applies, in order:
//!
//! ```text
//!   size check (mtu) ──► loss ──► bottleneck queue (rate_bps, drop-tail)
//!        ──► duplication ──► propagation delay + jitter
//!        ──► (sometimes) reordering delay
//! ```
//!
//! Sizes on a link are IP packet sizes: the UDP payload plus 28 bytes of
//! IPv4 + UDP header (48 for IPv6), so a 1000-byte datagram occupies 1028
//! bytes of queue and of rate. Link-layer framing is not modelled.
//!
//! Jitter alone never reorders: a link delivers in FIFO order unless a packet
//! is picked for reordering (probability `reorder`), in which case it gets
//! `reorder_delay` on top and is exempt from the FIFO rule, so the packets
//! sent during that extra delay overtake it.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::StdRng;

/// How one direction of a host's access link treats datagrams.
///
/// Fields are public so a test can write
/// `LinkConfig { loss: 0.3, ..LinkConfig::default() }`. Probabilities are
/// clamped to `0.0..=1.0` by their meaning: `≤ 0` never happens, `≥ 1` always
/// does.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// One-way propagation delay of this link. A host-to-host path crosses two
    /// links (the sender's uplink and the receiver's downlink), so with the
    /// default 5 ms the one-way delay is 10 ms and the round trip 20 ms.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `0..=jitter` per packet. Does not
    /// reorder by itself (see [`LinkConfig::reorder`]).
    pub jitter: Duration,
    /// Probability that a packet is lost on this link (in the good state of
    /// [`LinkConfig::burst_loss`], if that is set).
    pub loss: f64,
    /// Bursty loss: a two-state Gilbert-Elliott channel on top of `loss`.
    /// `None` (the default) means independent losses.
    pub burst_loss: Option<GilbertElliott>,
    /// Probability that a packet is delivered twice (the copy gets its own
    /// jitter).
    pub duplicate: f64,
    /// Probability that a packet is held back by [`LinkConfig::reorder_delay`]
    /// so that later packets overtake it.
    pub reorder: f64,
    /// Extra delay given to a reordered packet.
    pub reorder_delay: Duration,
    /// Bottleneck rate in bits per second (of IP packets); `None` means
    /// unlimited (no queue). `Some(0)` passes nothing.
    pub rate_bps: Option<u64>,
    /// Size of the drop-tail queue in front of the bottleneck, in bytes: a
    /// packet that would make the backlog exceed it is dropped (an idle link
    /// always accepts one packet, however large). Unused without `rate_bps`.
    pub queue_limit_bytes: usize,
    /// Largest IP packet the link carries; bigger ones are dropped, as if
    /// sent with Don't Fragment (1500 on Ethernet, so 1472 bytes of UDP
    /// payload over IPv4). `None` (the default) carries any size, as if IP
    /// fragmentation worked.
    pub mtu: Option<usize>,
}

impl Default for LinkConfig {
    /// 5 ms one way, no jitter, no loss, no duplication, no reordering,
    /// unlimited rate (64 KiB queue if a rate is set), no MTU limit.
    fn default() -> Self {
        LinkConfig {
            delay: Duration::from_millis(5),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_loss: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(10),
            rate_bps: None,
            queue_limit_bytes: 64 * 1024,
            mtu: None,
        }
    }
}

impl LinkConfig {
    /// A perfect link: no delay, no loss, unlimited rate.
    pub fn ideal() -> Self {
        LinkConfig {
            delay: Duration::ZERO,
            ..LinkConfig::default()
        }
    }
}

/// A Gilbert-Elliott loss model: the link is either *good* (loses with
/// [`LinkConfig::loss`]) or *bad* (loses with `bad_loss`), and before each
/// packet it moves good → bad with probability `enter_bad` and bad → good
/// with `leave_bad`. Losses then come in bursts of mean length about
/// `1 / leave_bad` packets, and the long-run share of time spent bad is
/// `enter_bad / (enter_bad + leave_bad)`: radio fades, a congested queue
/// overflowing, a route flapping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability per packet of moving from good to bad.
    pub enter_bad: f64,
    /// Probability per packet of moving from bad back to good.
    pub leave_bad: f64,
    /// Loss probability in the bad state.
    pub bad_loss: f64,
}

impl GilbertElliott {
    /// The long-run loss rate, with `good_loss` in the good state.
    pub fn mean_loss(&self, good_loss: f64) -> f64 {
        let total = self.enter_bad + self.leave_bad;
        if total <= 0.0 {
            return good_loss;
        }
        let bad = self.enter_bad / total;
        bad * self.bad_loss + (1.0 - bad) * good_loss
    }
}

/// What a link did with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transit {
    /// Dropped by random loss.
    Lost,
    /// Dropped because the bottleneck queue was full.
    QueueFull,
    /// Dropped because it was bigger than the link's MTU.
    TooBig,
    /// Leaves the link at `first` (and a duplicate at `duplicate`).
    Pass {
        first: Instant,
        duplicate: Option<Instant>,
    },
}

/// One direction of an access link: its configuration and its state.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) config: LinkConfig,
    rng: StdRng,
    /// When the bottleneck finishes sending what is queued (rate model).
    busy_until: Option<Instant>,
    /// Latest exit time of an in-order packet (FIFO under jitter).
    last_exit: Option<Instant>,
    /// The Gilbert-Elliott state: true while the link is bad.
    bad: bool,
}

/// Draws `true` with probability `p` (clamped to `0..=1`); draws nothing when
/// `p ≤ 0` so that a link without loss does not consume randomness.
fn chance(rng: &mut StdRng, p: f64) -> bool {
    if p <= 0.0 {
        false
    } else if p >= 1.0 {
        true
    } else {
        rng.random::<f64>() < p
    }
}

impl Link {
    pub(crate) fn new(config: LinkConfig, rng: StdRng) -> Self {
        Link {
            config,
            rng,
            busy_until: None,
            last_exit: None,
            bad: false,
        }
    }

    /// Changes the configuration; the queue and FIFO state carry over.
    pub(crate) fn set_config(&mut self, config: LinkConfig) {
        self.config = config;
    }

    /// Bytes waiting in (or being sent by) the bottleneck at `now`.
    fn backlog_bytes(&self, now: Instant, rate_bps: u64) -> u128 {
        let backlog = self
            .busy_until
            .map_or(Duration::ZERO, |b| b.saturating_duration_since(now));
        backlog.as_nanos() * u128::from(rate_bps) / 8_000_000_000
    }

    /// Sends one IP packet of `len` bytes into the link at `now`.
    pub(crate) fn transit(&mut self, now: Instant, len: usize) -> Transit {
        if self.config.mtu.is_some_and(|mtu| len > mtu) {
            return Transit::TooBig;
        }
        let loss = match self.config.burst_loss {
            Some(ge) => {
                let flip = if self.bad { ge.leave_bad } else { ge.enter_bad };
                if chance(&mut self.rng, flip) {
                    self.bad = !self.bad;
                }
                if self.bad {
                    ge.bad_loss
                } else {
                    self.config.loss
                }
            }
            None => self.config.loss,
        };
        if chance(&mut self.rng, loss) {
            return Transit::Lost;
        }
        let depart = match self.config.rate_bps {
            Some(0) => return Transit::QueueFull,
            Some(rate) => {
                let backlog = self.backlog_bytes(now, rate);
                let limit = self.config.queue_limit_bytes as u128;
                if backlog > 0 && backlog + len as u128 > limit {
                    return Transit::QueueFull;
                }
                // Serialisation time, rounded up to the nanosecond.
                let bits_ns = len as u128 * 8_000_000_000;
                let tx_ns = bits_ns.div_ceil(u128::from(rate));
                let tx = Duration::from_nanos(u64::try_from(tx_ns).unwrap_or(u64::MAX));
                let start = self.busy_until.map_or(now, |b| b.max(now));
                let done = start + tx;
                self.busy_until = Some(done);
                done
            }
            None => now,
        };
        let duplicated = chance(&mut self.rng, self.config.duplicate);
        let first = self.propagate(depart);
        let duplicate = duplicated.then(|| self.propagate(depart));
        Transit::Pass { first, duplicate }
    }

    /// Delay, jitter, FIFO order and reordering for a packet leaving the
    /// bottleneck at `depart`.
    fn propagate(&mut self, depart: Instant) -> Instant {
        let jitter_ns = u64::try_from(self.config.jitter.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if jitter_ns > 0 {
            Duration::from_nanos(self.rng.random_range(0..=jitter_ns))
        } else {
            Duration::ZERO
        };
        let exit = depart + self.config.delay + jitter;
        if chance(&mut self.rng, self.config.reorder) {
            // Held back and exempt from FIFO: later packets overtake it.
            return exit + self.config.reorder_delay;
        }
        let exit = self.last_exit.map_or(exit, |last| exit.max(last));
        self.last_exit = Some(exit);
        exit
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn link(config: LinkConfig) -> Link {
        Link::new(config, StdRng::seed_from_u64(7))
    }

    #[test]
    fn default_link_delays_by_five_ms() {
        let t0 = Instant::now();
        let mut l = link(LinkConfig::default());
        assert_eq!(
            l.transit(t0, 100),
            Transit::Pass {
                first: t0 + Duration::from_millis(5),
                duplicate: None
            }
        );
    }

    #[test]
    fn jitter_keeps_fifo_order() {
        let t0 = Instant::now();
        let mut l = link(LinkConfig {
            jitter: Duration::from_millis(20),
            ..LinkConfig::default()
        });
        let mut last = t0;
        for i in 0..1000 {
            let now = t0 + Duration::from_micros(100 * i);
            let Transit::Pass { first, .. } = l.transit(now, 100) else {
                panic!("no loss configured")
            };
            assert!(first >= last);
            assert!(first >= now + Duration::from_millis(5));
            assert!(first <= now + Duration::from_millis(25));
            last = first;
        }
    }

    #[test]
    fn rate_serialises_and_queue_drops() {
        let t0 = Instant::now();
        // 1 Mbit/s: 1000 bytes take 8 ms. Queue of 5000 bytes.
        let mut l = link(LinkConfig {
            delay: Duration::ZERO,
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 5000,
            ..LinkConfig::default()
        });
        let mut exits = Vec::new();
        let mut dropped = 0;
        for _ in 0..10 {
            match l.transit(t0, 1000) {
                Transit::Pass { first, .. } => exits.push(first),
                Transit::QueueFull => dropped += 1,
                Transit::Lost | Transit::TooBig => panic!("no loss or MTU configured"),
            }
        }
        assert_eq!(exits.len(), 5);
        assert_eq!(dropped, 5);
        for (i, e) in exits.iter().enumerate() {
            assert_eq!(*e, t0 + Duration::from_millis(8 * (i as u64 + 1)));
        }
        // Once drained, the queue accepts again.
        let later = t0 + Duration::from_millis(40);
        assert!(matches!(l.transit(later, 1000), Transit::Pass { .. }));
    }

    #[test]
    fn idle_link_accepts_one_oversized_packet() {
        let t0 = Instant::now();
        let mut l = link(LinkConfig {
            rate_bps: Some(1_000_000),
            queue_limit_bytes: 100,
            ..LinkConfig::default()
        });
        assert!(matches!(l.transit(t0, 1500), Transit::Pass { .. }));
        assert_eq!(l.transit(t0, 1500), Transit::QueueFull);
    }

    #[test]
    fn gilbert_elliott_losses_come_in_bursts() {
        let t0 = Instant::now();
        let ge = GilbertElliott {
            enter_bad: 0.01,
            leave_bad: 0.2,
            bad_loss: 1.0,
        };
        let mut l = link(LinkConfig {
            burst_loss: Some(ge),
            ..LinkConfig::default()
        });
        let n = 100_000;
        let lost: Vec<bool> = (0..n)
            .map(|_| l.transit(t0, 100) == Transit::Lost)
            .collect();
        let losses = lost.iter().filter(|l| **l).count();
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count();
        let mean = ge.mean_loss(0.0);
        assert!((mean - 0.0476).abs() < 0.001);
        let rate = losses as f64 / n as f64;
        assert!((rate - mean).abs() < 0.01, "loss rate {rate}");
        // Mean burst length 1 / 0.2 = 5 packets.
        let burst = losses as f64 / bursts as f64;
        assert!((burst - 5.0).abs() < 0.5, "mean burst {burst}");
    }

    #[test]
    fn mtu_and_zero_rate() {
        let t0 = Instant::now();
        let mut l = link(LinkConfig {
            mtu: Some(1500),
            ..LinkConfig::default()
        });
        assert!(matches!(l.transit(t0, 1500), Transit::Pass { .. }));
        assert_eq!(l.transit(t0, 1501), Transit::TooBig);
        l.set_config(LinkConfig {
            rate_bps: Some(0),
            ..LinkConfig::default()
        });
        assert_eq!(l.transit(t0, 1), Transit::QueueFull);
    }

    #[test]
    fn certain_loss_and_duplication() {
        let t0 = Instant::now();
        let mut l = link(LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        });
        assert_eq!(l.transit(t0, 1), Transit::Lost);
        l.set_config(LinkConfig {
            duplicate: 1.0,
            ..LinkConfig::default()
        });
        assert!(matches!(
            l.transit(t0, 1),
            Transit::Pass {
                duplicate: Some(_),
                ..
            }
        ));
    }
}
