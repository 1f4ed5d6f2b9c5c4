#![no_main]
//! SDP: `sdp` harness in src/fuzzing.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::sdp(data));
