//! The RTP receive hot path (parse + VP8 depacketize into a reused buffer)
//! allocates nothing per packet: counted with a wrapping global allocator.

use rtclab::rtp::vp8::Vp8Depacketizer;
use rtclab::speed::rtp::{parse_vp8_depacketize, sample_packets};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn parse_and_depacketize_do_not_allocate() {
    let packets = sample_packets(8);
    let mut frame = Vec::with_capacity(8 * 1200);
    let mut depack = Vp8Depacketizer;
    // One warm-up pass, then count.
    parse_vp8_depacketize(&packets, &mut depack, &mut frame);
    let before = allocations();
    let mut total = 0;
    for _ in 0..100 {
        total += parse_vp8_depacketize(&packets, &mut depack, &mut frame);
    }
    let after = allocations();
    assert!(total > 0);
    assert_eq!(after - before, 0, "allocations on the hot path");
}

#[test]
fn frame_assembler_allocates_only_the_frame() {
    use rtclab::rtp::{FrameAssembler, RtpPacket};
    let packets = sample_packets(40);
    let mut a = FrameAssembler::new(Vp8Depacketizer, 64);
    let mut frames: Vec<Vec<u8>> = Vec::with_capacity(64);
    let feed = |a: &mut FrameAssembler<Vp8Depacketizer>,
                range: std::ops::Range<usize>,
                frames: &mut Vec<Vec<u8>>| {
        for p in &packets[range] {
            let p = RtpPacket::new_checked(p).expect("sample packet");
            a.insert_packet(&p);
            while let Some(f) = a.pop_frame() {
                frames.push(f.data);
            }
        }
    };
    // Warm up the buffer pool, then count: one allocation per frame (its data).
    feed(&mut a, 0..packets.len() / 2, &mut frames);
    let emitted = frames.len();
    let before = allocations();
    feed(&mut a, packets.len() / 2..packets.len(), &mut frames);
    let after = allocations();
    assert_eq!(frames.len(), 40);
    assert_eq!(
        after - before,
        frames.len() - emitted,
        "allocations beyond one per frame"
    );
}
