#![no_main]
//! TURN over TCP: the stream framer and the TURN server's stream path.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::turn_stream(data));
