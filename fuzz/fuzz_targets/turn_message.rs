#![no_main]
//! TURN from the network: TURN attributes, ChannelData framing, the TURN
//! server's request and relay paths and the client's response path.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::turn_message(data));
