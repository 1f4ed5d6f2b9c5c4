#![no_main]
//! A whole PeerConnection: a remote offer, trickled candidates and datagrams.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rtclab::fuzzing::peer_connection(data));
