//! Hot paths that must not touch the heap, checked with a counting allocator:
//! decoding and verifying a STUN message (issue target: decode without heap
//! allocation), and encoding into a reused buffer.

use rtclab::stun::{IntegrityKey, Message, TransactionId};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations_in;

#[test]
fn stun_decode_verify_and_encode_do_not_allocate() {
    let key = IntegrityKey::short_term("y8hWcoDrEX5R7u7ex0n/BGDR");
    let mut buf = Vec::with_capacity(256);
    rtclab::speed::ice_binding_request(&mut buf, TransactionId([1; 12]), &key);
    let msg = buf.clone();

    let n = allocations_in(|| {
        let m = Message::parse(&msg).expect("decodes");
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
