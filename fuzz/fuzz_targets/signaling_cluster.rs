#![no_main]
//! Signaling rooms across nodes: client frames and bus messages into one node.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::signaling_cluster(data));
