//! Replays the checked-in fuzz corpus (`fuzz/corpus/TARGET/*`) through the same
//! harnesses the cargo-fuzz targets run, so every input that once found a bug
//! (or widened coverage) is checked by `cargo test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rtclab::rtp::fuzz as rtp;

/// A fuzz harness: takes arbitrary bytes, panics only on a bug.
type Harness = fn(&[u8]);

/// Every fuzz target and its harness. A corpus folder without a row here (or
/// a row without a corpus) fails `every_corpus_is_replayed`.
const TARGETS: &[(&str, Harness)] = &[
    ("stun_message", rtclab::fuzzing::stun_message),
    ("srtp_unprotect", rtclab::fuzzing::srtp_unprotect),
    ("rtp_packet", rtp::rtp_packet),
    ("rtcp_compound", rtp::rtcp_compound),
    ("vp8_depacketize", rtp::vp8_depacketize),
    ("vp9_depacketize", rtp::vp9_depacketize),
    ("h264_depacketize", rtp::h264_depacketize),
    ("opus_depacketize", rtp::opus_depacketize),
    ("media_files", rtp::media_files),
];

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

#[test]
fn every_corpus_is_replayed() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(corpus_root())
        .expect("fuzz/corpus")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let listed: BTreeSet<String> = TARGETS.iter().map(|(t, _)| t.to_string()).collect();
    assert_eq!(on_disk, listed, "fuzz/corpus folders and TARGETS differ");
}

#[test]
fn replay_every_corpus() {
    for (target, harness) in TARGETS {
        let dir = corpus_root().join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("read corpus file");
            harness(&data);
            n += 1;
        }
        assert!(n > 0, "empty corpus for {target}");
    }
}
