#![no_main]
//! DTLS handshake payloads: fragments, the bounded reassembler, every
//! handshake message type and its re-encoding.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dtls_handshake(data));
