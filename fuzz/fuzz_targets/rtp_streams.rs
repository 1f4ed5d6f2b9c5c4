#![no_main]
//! One RTP stream's receive and send parts fed arbitrary RTP and RTCP.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::rtp_streams(data));
