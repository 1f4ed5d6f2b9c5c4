#![no_main]
//! STUN messages from the network: decoding, attributes, integrity, the
//! Binding server and the client's response path.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::stun_message(data));
