//! The RTP receive hot path (parse + VP8 depacketize into a reused buffer)
//! allocates nothing per packet: counted with a wrapping global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use rtclab::rtp::bench::{parse_vp8_depacketize, sample_packets};
use rtclab::rtp::vp8::Vp8Depacketizer;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// A thin wrapper: forwards every call to System and counts allocations.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn parse_and_depacketize_do_not_allocate() {
    let packets = sample_packets(8);
    let mut frame = Vec::with_capacity(8 * 1200);
    let mut depack = Vp8Depacketizer;
    // One warm-up pass, then count.
    parse_vp8_depacketize(&packets, &mut depack, &mut frame);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let mut total = 0;
    for _ in 0..100 {
        total += parse_vp8_depacketize(&packets, &mut depack, &mut frame);
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(total > 0);
    assert_eq!(after - before, 0, "allocations on the hot path");
}
