#![no_main]
//! DTLS 1.3 records: demultiplexing, unified headers, record number
//! encryption, AEAD opening, sequence reconstruction and replay windows.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dtls13_record(data));
