#![no_main]
//! ICE: `ice_agent` harness in src/fuzzing.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::ice_agent(data));
