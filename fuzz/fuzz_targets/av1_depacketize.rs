#![no_main]
//! AV1 payloads: depacketizer, frame assembler, packetizer round trip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::rtp::fuzz::av1_depacketize(data));
