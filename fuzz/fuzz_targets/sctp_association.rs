#![no_main]
//! SCTP from the network: an established association's receive path (DATA, SACK, FORWARD TSN, RE-CONFIG, shutdown, …).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::sctp_association(data));
