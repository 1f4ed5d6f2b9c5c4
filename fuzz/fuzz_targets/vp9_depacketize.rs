#![no_main]
//! VP9 payloads: descriptor parse and write-back, depacketizer, frame assembler.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::vp9_depacketize(data));
