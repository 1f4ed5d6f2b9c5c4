#![no_main]
//! RTCP compound packets: every type, write-back stability.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::rtcp_compound(data));
