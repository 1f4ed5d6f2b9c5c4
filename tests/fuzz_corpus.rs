//! Replays the checked-in fuzz corpus (`fuzz/corpus/TARGET/*`) through the same
//! harnesses the cargo-fuzz targets run, so every input that once found a bug
//! (or widened coverage) is checked by `cargo test`.

use std::path::Path;

fn replay(target: &str, harness: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).expect("read corpus file");
        harness(&data);
        n += 1;
    }
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn stun_message_corpus() {
    replay("stun_message", rtclab::fuzzing::stun_message);
}

#[test]
fn srtp_unprotect_corpus() {
    replay("srtp_unprotect", rtclab::fuzzing::srtp_unprotect);
}

#[test]
fn turn_message_corpus() {
    replay("turn_message", rtclab::fuzzing::turn_message);
}
