#![no_main]
//! peer::Transport: `peer_transport` harness in src/fuzzing.rs.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::peer_transport(data));
