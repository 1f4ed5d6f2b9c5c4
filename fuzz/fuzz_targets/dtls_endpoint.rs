#![no_main]
//! A whole DTLS endpoint's receive path (server or client), datagram by
//! datagram, with timers: flights, cookies, certificates, signatures, keys.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dtls_endpoint(data));
