#![no_main]
//! VP8 payloads: descriptor, depacketizer, frame assembler.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::vp8_depacketize(data));
