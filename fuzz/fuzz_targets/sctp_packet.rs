#![no_main]
//! SCTP from the network: the packet and chunk parsers, and their round trip.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::sctp_packet(data));
