#![no_main]
//! DCEP messages from the network: the DATA_CHANNEL_OPEN/ACK parser, and a
//! channel manager fed arbitrary SCTP user messages, resets and buffer reports.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::dcep(data));
