//! Slowing down password guessing: sources whose requests keep failing
//! authentication are ignored for a while.
//!
//! A wrong MESSAGE-INTEGRITY (or an unknown user or realm) costs the
//! server an MD5 and an HMAC and answers 401, so without a limit a client
//! tries thousands of passwords a second. RFC 8489 §9.2 leaves the defence
//! to the server; TURN has no "try again later" code (STUN's 429 needs
//! the client to understand it), so a source past
//! [`FAILURES_ALLOWED`] failures within [`FAILURE_WINDOW`] gets no answer
//! at all for a back-off that doubles with each block, from
//! [`FIRST_BACKOFF`] up to [`MAX_BACKOFF`]. The first, credential-less 401
//! of every allocation and a 438 are not failures.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host's worth of
//! addresses); its port does not count, since ports are free to change.
//! Failures only come from sources that received the nonce (nonces are
//! bound to the 5-tuple), so forged source addresses cannot fill the
//! table; and the table holds at most [`MAX_SOURCES`] entries, pruning
//! the forgotten ones and then evicting the oldest eighth, so no sender
//! can grow it. Time comes from the caller (`now`): the table is sans-IO.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures within [`FAILURE_WINDOW`] before a source is ignored.
pub const FAILURES_ALLOWED: u32 = 5;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// The first back-off.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest back-off.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Most sources remembered at once.
pub const MAX_SOURCES: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures since `window_start`.
    failures: u32,
    window_start: Instant,
    last_failure: Instant,
    /// Ignored until then.
    blocked_until: Option<Instant>,
    /// The next block's length.
    backoff: Duration,
}

impl Entry {
    /// Past this the entry says nothing any more: no block running, no
    /// failure in the window, and a quiet back-off's worth of time since
    /// the last block (so the doubling is remembered that long).
    fn forget_at(&self) -> Instant {
        let window_end = self.last_failure + FAILURE_WINDOW;
        match self.blocked_until {
            Some(b) => window_end.max(b + self.backoff),
            None => window_end,
        }
    }
}

/// The failure table, by source.
#[derive(Debug)]
pub struct AuthThrottle {
    sources: HashMap<IpAddr, Entry>,
    cap: usize,
}

/// The key of a source: an IPv4 address, or the /64 of an IPv6 one (an
/// IPv4-mapped IPv6 address is its IPv4 address).
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl AuthThrottle {
    /// An empty table of at most `cap` sources.
    pub fn new(cap: usize) -> Self {
        AuthThrottle {
            sources: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// How many sources are remembered.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether no source is remembered.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Whether requests from `ip` are to be dropped unanswered now.
    pub fn blocked(&self, now: Instant, ip: IpAddr) -> bool {
        self.sources
            .get(&source_key(ip))
            .and_then(|e| e.blocked_until)
            .is_some_and(|b| now < b)
    }

    /// Counts one failed authentication from `ip`; returns whether it
    /// started a block.
    pub fn failure(&mut self, now: Instant, ip: IpAddr) -> bool {
        let key = source_key(ip);
        if !self.sources.contains_key(&key) && self.sources.len() >= self.cap {
            self.make_room(now);
        }
        let e = self.sources.entry(key).or_insert(Entry {
            failures: 0,
            window_start: now,
            last_failure: now,
            blocked_until: None,
            backoff: FIRST_BACKOFF,
        });
        if now >= e.forget_at() {
            // Quiet long enough: a fresh start, back-off included.
            e.backoff = FIRST_BACKOFF;
            e.blocked_until = None;
        }
        if now.saturating_duration_since(e.window_start) >= FAILURE_WINDOW {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        e.last_failure = now;
        if e.failures < FAILURES_ALLOWED {
            return false;
        }
        e.blocked_until = Some(now + e.backoff);
        e.backoff = (e.backoff * 2).min(MAX_BACKOFF);
        e.failures = 0;
        e.window_start = now;
        true
    }

    /// Drops the entries that say nothing any more, and if that frees
    /// nothing, the eighth of them whose last failure is oldest: one scan
    /// per `cap / 8` new sources, not one per failure.
    fn make_room(&mut self, now: Instant) {
        self.sources.retain(|_, e| now < e.forget_at());
        if self.sources.len() < self.cap {
            return;
        }
        let mut by_age: Vec<(Instant, IpAddr)> = self
            .sources
            .iter()
            .map(|(&k, e)| (e.last_failure, k))
            .collect();
        let k = (by_age.len() / 8).max(1) - 1;
        by_age.select_nth_unstable(k);
        for (_, key) in &by_age[..=k] {
            self.sources.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    #[test]
    fn blocks_after_the_threshold_and_doubles() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(16);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 1..FAILURES_ALLOWED {
            assert!(!t.failure(t0, ip));
        }
        assert!(t.failure(t0, ip));
        assert!(t.blocked(t0 + FIRST_BACKOFF - Duration::from_millis(1), ip));
        let t1 = t0 + FIRST_BACKOFF;
        assert!(!t.blocked(t1, ip));
        for _ in 1..FAILURES_ALLOWED {
            t.failure(t1, ip);
        }
        assert!(t.failure(t1, ip));
        assert!(t.blocked(t1 + 2 * FIRST_BACKOFF - Duration::from_millis(1), ip));
        assert!(!t.blocked(t1 + 2 * FIRST_BACKOFF, ip));
    }

    #[test]
    fn a_quiet_source_starts_afresh() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(16);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let block = |t: &mut AuthThrottle, at: Instant| {
            for _ in 1..FAILURES_ALLOWED {
                t.failure(at, ip);
            }
            assert!(t.failure(at, ip));
        };
        block(&mut t, t0);
        // Blocked 2 s, then quiet for the next back-off (4 s) and past
        // the failure window: the next block is 2 s again, not 4.
        let t1 = t0 + (FIRST_BACKOFF + 2 * FIRST_BACKOFF).max(FAILURE_WINDOW);
        block(&mut t, t1);
        assert!(!t.blocked(t1 + FIRST_BACKOFF, ip));
    }

    /// A guesser retrying every millisecond it is not blocked (every 10
    /// while it is) gets fewer than 100 answers in an hour (95) (about 4,800 a second without the
    /// throttle).
    #[test]
    fn an_hour_of_guessing_gets_few_answers() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(16);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut answered = 0;
        let mut ms = 0u64;
        while ms < 3_600_000 {
            let now = t0 + Duration::from_millis(ms);
            if t.blocked(now, ip) {
                ms += 10;
                continue;
            }
            answered += 1;
            t.failure(now, ip);
            ms += 1;
        }
        assert!(answered < 100, "{answered} answers");
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(16);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..20u32 {
            // One failure every 3 s: never 5 within 10 s.
            assert!(!t.failure(t0 + Duration::from_secs(3) * i, ip));
        }
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(16);
        for i in 0..FAILURES_ALLOWED {
            let ip: IpAddr = format!("2001:db8:1:2::{i:x}").parse().unwrap();
            t.failure(t0, ip);
        }
        assert!(t.blocked(t0, "2001:db8:1:2:ffff::1".parse().unwrap()));
        assert!(!t.blocked(t0, "2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_full_table_evicts_and_stays_at_its_cap() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(MAX_SOURCES);
        for i in 0..(3 * MAX_SOURCES as u32) {
            t.failure(t0, IpAddr::V4(Ipv4Addr::from(i)));
            assert!(t.len() <= MAX_SOURCES);
        }
        assert!(t.len() > MAX_SOURCES / 8 * 7);
        // Once forgotten, old entries make room without evicting live ones.
        let later = t0 + FAILURE_WINDOW;
        t.failure(later, "192.0.2.1".parse().unwrap());
        assert_eq!(t.len(), 1);
    }

    proptest! {
        /// Whatever the sources and times, the table never passes its cap,
        /// and a source below the threshold is never blocked.
        #[test]
        fn bounded_and_never_blocks_early(
            events in proptest::collection::vec((0u32..64, 0u64..30_000), 0..400),
        ) {
            let t0 = Instant::now();
            let mut t = AuthThrottle::new(8);
            let mut sorted = events;
            sorted.sort_by_key(|&(_, ms)| ms);
            let mut counts = HashMap::new();
            for (src, ms) in sorted {
                let ip = IpAddr::V4(Ipv4Addr::from(src));
                let now = t0 + Duration::from_millis(ms);
                let started = t.failure(now, ip);
                let n = counts.entry(src).or_insert(0u32);
                *n += 1;
                prop_assert!(!started || *n >= FAILURES_ALLOWED);
                prop_assert!(t.len() <= 8);
            }
        }
    }
}
