#![no_main]
//! SRTP and SRTCP packets from the network: unprotect with every profile, and
//! protect → unprotect round trips of the same bytes taken as plain packets.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::srtp_unprotect(data));
