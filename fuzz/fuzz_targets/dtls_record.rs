#![no_main]
//! DTLS records from the network: framing, re-encoding, AEAD opening with
//! every suite, the replay window and the future-epoch buffer.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dtls_record(data));
