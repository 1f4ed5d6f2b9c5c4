#![no_main]
//! AV1 payloads: depacketizer, frame assembler, packetizer round trip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::av1_depacketize(data));
