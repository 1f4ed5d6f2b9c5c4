//! The SCTP data path does not allocate per DATA chunk (issue 6 §4): two
//! associations wired back to back (no simulator, no DTLS), a counting
//! allocator around the sender's `send` + `poll_transmit_into` + SACK
//! handling and around the receiver's `handle_packet` + `poll_event`.
//!
//! What may allocate: one buffer per user message on each side (the
//! sender's copy of the message, the receiver's `Event::Message` data) and,
//! on the receiver, the doubling growth of a message being reassembled (a
//! few reallocations per message, not one per fragment).

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::sctp::{Association, Config, Event, SendOptions, State};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

struct Pair {
    a: Association,
    b: Association,
    now: Instant,
    pkt: Vec<u8>,
    /// Allocations counted on each side.
    a_allocs: usize,
    b_allocs: usize,
    /// DATA chunks the sender wrote.
    chunks: u64,
    messages: u64,
}

impl Pair {
    fn new() -> Pair {
        let cfg = Config {
            heartbeat_interval: None,
            ..Config::default()
        };
        let mut p = Pair {
            a: Association::new(cfg.clone(), StdRng::seed_from_u64(1)),
            b: Association::new(cfg, StdRng::seed_from_u64(2)),
            now: Instant::now(),
            pkt: Vec::with_capacity(2048),
            a_allocs: 0,
            b_allocs: 0,
            chunks: 0,
            messages: 0,
        };
        p.a.connect(p.now);
        for _ in 0..10 {
            p.step();
        }
        assert_eq!(p.a.state(), State::Established);
        assert_eq!(p.b.state(), State::Established);
        p
    }

    /// Moves every packet both ways once; counts allocations per side.
    fn step(&mut self) {
        self.now += Duration::from_micros(50);
        let now = self.now;
        loop {
            let mut moved = false;
            let before = allocations();
            let sent = self.a.poll_transmit_into(&mut self.pkt);
            self.a_allocs += allocations() - before;
            if sent {
                moved = true;
                let before = allocations();
                self.b.handle_packet(now, &self.pkt);
                while let Some(e) = self.b.poll_event() {
                    if let Event::Message { .. } = e {
                        self.messages += 1;
                    }
                }
                self.b_allocs += allocations() - before;
            }
            let before = allocations();
            let sent = self.b.poll_transmit_into(&mut self.pkt);
            if sent {
                moved = true;
            }
            self.b_allocs += allocations() - before;
            if sent {
                let before = allocations();
                self.a.handle_packet(now, &self.pkt);
                while self.a.poll_event().is_some() {}
                self.a_allocs += allocations() - before;
            }
            if !moved {
                break;
            }
        }
        let before = allocations();
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        self.b_allocs += allocations() - before;
        let before = allocations();
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        self.a_allocs += allocations() - before;
    }

    /// Sends `count` messages of `size` bytes, keeping about 1 MB queued.
    fn transfer(&mut self, count: u64, size: usize) {
        let msg = vec![7u8; size];
        let chunks_before = self.a.stats.sent_chunks;
        let messages_before = self.messages;
        let mut sent = 0;
        for _ in 0..100_000 {
            while sent < count && self.a.buffered_amount(1) < 1 << 20 {
                let before = allocations();
                self.a
                    .send(self.now, 1, 53, &msg, SendOptions::default())
                    .expect("send");
                self.a_allocs += allocations() - before;
                sent += 1;
            }
            self.step();
            if self.messages - messages_before >= count {
                break;
            }
        }
        assert_eq!(self.messages - messages_before, count, "all delivered");
        self.chunks = self.a.stats.sent_chunks - chunks_before;
    }

    fn reset_counts(&mut self) {
        self.a_allocs = 0;
        self.b_allocs = 0;
    }
}

#[test]
fn bulk_transfer_allocates_per_message_not_per_chunk() {
    let mut p = Pair::new();
    // Warm up: queues and maps grow to their working size.
    p.transfer(40, 64 * 1024);
    p.reset_counts();
    let count = 100;
    p.transfer(count, 64 * 1024);
    let chunks = p.chunks as usize;
    assert!(chunks >= 56 * count as usize, "{chunks} chunks");
    let (a, b) = (p.a_allocs, p.b_allocs);
    eprintln!(
        "64 KiB messages: {count} messages, {chunks} DATA chunks; sender {a}, receiver {b} allocations"
    );
    // Sender: the message copy, plus the odd event-queue growth.
    assert!(
        a <= 2 * count as usize,
        "sender allocated {a} times for {chunks} chunks"
    );
    // Receiver: the reassembly buffer and its doubling (64 KiB from 1172-byte
    // fragments: about 7 growths), far below one per chunk.
    assert!(
        b <= 10 * count as usize,
        "receiver allocated {b} times for {chunks} chunks"
    );
    assert!(
        b * 4 < chunks,
        "receiver: {b} allocations for {chunks} chunks"
    );
}

#[test]
fn small_messages_allocate_once_per_message() {
    let mut p = Pair::new();
    p.transfer(2000, 200);
    p.reset_counts();
    let count = 5000;
    p.transfer(count, 200);
    let (a, b) = (p.a_allocs, p.b_allocs);
    eprintln!("200-byte messages: {count}; sender {a}, receiver {b} allocations");
    assert!(a <= count as usize + 50, "sender allocated {a} times");
    assert!(b <= count as usize + 50, "receiver allocated {b} times");
}
