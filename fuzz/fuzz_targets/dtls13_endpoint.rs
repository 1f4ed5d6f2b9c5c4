#![no_main]
//! The version-negotiating DTLS endpoint with 1.3 on (server or client),
//! datagram by datagram, with timers: version choice, HelloRetryRequest
//! cookies, ACKs, retransmissions, the fallback to 1.2.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dtls13_endpoint(data));
