#![no_main]
//! RTP packets: the checked view, extensions, header round trip, RTX decoding.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::rtp_packet(data));
