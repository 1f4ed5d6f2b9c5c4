#![no_main]
//! `whip_sdpfrag` harness in src/fuzzing.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::whip_sdpfrag(data));
