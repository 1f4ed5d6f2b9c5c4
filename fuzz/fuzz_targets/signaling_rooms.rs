#![no_main]
//! Signaling rooms: scripts of client text, binary frames, byes and
//! disconnects; the rooms' books must balance after every step.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::signaling_rooms(data));
