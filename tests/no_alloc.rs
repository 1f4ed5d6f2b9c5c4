//! Hot paths that must not touch the heap, checked with a counting allocator:
//! decoding and verifying a STUN message (issue target: decode without heap
//! allocation), and encoding into a reused buffer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rtclab::stun::{IntegrityKey, Message, TransactionId};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn stun_decode_verify_and_encode_do_not_allocate() {
    let key = IntegrityKey::short_term("y8hWcoDrEX5R7u7ex0n/BGDR");
    let mut buf = Vec::with_capacity(256);
    rtclab::speed::ice_binding_request(&mut buf, TransactionId([1; 12]), &key);
    let msg = buf.clone();

    let n = allocations_in(|| {
        let m = Message::decode(&msg).expect("decodes");
        assert!(m.username().expect("valid").is_some());
        m.verify_integrity(&key).expect("integrity");
        assert_eq!(m.verify_fingerprint(), Ok(true));
        assert!(m.xor_mapped_address().expect("valid").is_none());
    });
    assert_eq!(n, 0, "decode + verify allocated {n} times");

    let n = allocations_in(|| {
        buf.clear();
        rtclab::speed::ice_binding_request(&mut buf, TransactionId([2; 12]), &key);
    });
    assert_eq!(n, 0, "encoding into a reused buffer allocated {n} times");
}
