//! Replays the checked-in corpus of the `rtp` fuzz targets
//! (`fuzz/corpus/TARGET/*`) through the same harnesses cargo-fuzz runs.

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
fn rtp_corpora() {
    use rtclab::rtp::fuzz;
    replay("rtp_packet", fuzz::rtp_packet);
    replay("rtcp_compound", fuzz::rtcp_compound);
    replay("vp8_depacketize", fuzz::vp8_depacketize);
    replay("h264_depacketize", fuzz::h264_depacketize);
    replay("opus_depacketize", fuzz::opus_depacketize);
    replay("vp9_depacketize", fuzz::vp9_depacketize);
    replay("media_files", fuzz::media_files);
}
