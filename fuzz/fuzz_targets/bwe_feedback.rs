#![no_main]
//! Transport-wide CC feedback from the network into the send-side bandwidth
//! estimator: matching with sent packets, hostile sequence numbers and times.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::bwe_feedback(data));
