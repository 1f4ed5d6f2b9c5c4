#![no_main]
//! Capture files (pcapng, pcap) read and decoded into an x-ray ladder.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::capture_xray(data));
