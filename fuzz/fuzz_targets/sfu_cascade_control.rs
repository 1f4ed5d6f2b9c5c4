#![no_main]
//! An SFU cascade link's control messages: parse, write, parse again.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::sfu_cascade_control(data));
