#![no_main]
//! `peer_set` harness in src/fuzzing.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::peer_set(data));
