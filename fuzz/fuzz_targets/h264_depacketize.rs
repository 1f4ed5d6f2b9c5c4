#![no_main]
//! H.264 payloads (single NAL, STAP-A, FU-A), frame assembler, Annex-B reader.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::h264_depacketize(data));
