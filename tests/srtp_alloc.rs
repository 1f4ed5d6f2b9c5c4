//! SRTP's hot path allocates nothing per packet once the buffer has room for
//! the tag (issue 5 §4): counted here with a counting global allocator.

use rtclab::srtp::{Config, ProtectionProfile, SrtpContext};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn protect_and_unprotect_do_not_allocate() {
    // The counter sees allocations at all.
    let before = allocations();
    std::hint::black_box(Vec::<u8>::with_capacity(10));
    assert_eq!(allocations(), before + 1);

    for profile in ProtectionProfile::ALL {
        let key = vec![1; profile.master_key_len()];
        let salt = vec![2; profile.master_salt_len()];
        let mut tx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
        let mut rx = SrtpContext::new(profile, &key, &salt, Config::default()).unwrap();
        let mut rtp = Vec::with_capacity(1500);
        let mut rtcp = Vec::with_capacity(1500);
        let mut run = |seq: u16| {
            rtp.clear();
            rtp.extend_from_slice(&[0x80, 96]);
            rtp.extend_from_slice(&seq.to_be_bytes());
            rtp.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]);
            rtp.resize(1212, 0xab);
            tx.protect_rtp(&mut rtp).unwrap();
            rx.unprotect_rtp(&mut rtp).unwrap();
            rtcp.clear();
            rtcp.extend_from_slice(&[0x80, 201, 0, 1, 1, 2, 3, 4]);
            rtcp.resize(100, 0xcd);
            tx.protect_rtcp(&mut rtcp).unwrap();
            rx.unprotect_rtcp(&mut rtcp).unwrap();
        };
        // The first packet of an SSRC creates its state (and may allocate).
        run(65000);
        let before = allocations();
        for seq in 65001..=u16::MAX {
            run(seq);
        }
        for seq in 0..1000 {
            run(seq);
        }
        assert_eq!(allocations() - before, 0, "{profile} allocated per packet");
    }
}
