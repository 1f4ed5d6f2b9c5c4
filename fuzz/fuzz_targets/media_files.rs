#![no_main]
//! IVF and Ogg Opus files.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::rtp::media_files(data));
