#![no_main]
//! Dependency descriptors: parse with the kept structure, write-back.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::dependency_descriptor(data));
