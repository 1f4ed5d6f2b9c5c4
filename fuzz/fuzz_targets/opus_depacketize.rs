#![no_main]
//! Opus payloads through the depacketizer and frame assembler.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::opus_depacketize(data));
