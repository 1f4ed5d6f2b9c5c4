#![no_main]
//! DTLS 1.3 handshake messages and ACKs: reassembly, typed parsing and
//! re-encoding of every 1.3 message.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dtls13_handshake(data));
