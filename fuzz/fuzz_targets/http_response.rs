#![no_main]
//! HTTP/1.1 responses (the Janus and WHIP/WHEP client of `rtclab speed sfu`).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::http_response(data));
