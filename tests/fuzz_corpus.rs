//! Replays the checked-in fuzz corpus (`fuzz/corpus/TARGET/*`) through the same
//! harnesses the cargo-fuzz targets run, so every input that once found a bug
//! (or widened coverage) is checked by `cargo test`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::{SeedableRng, rngs::StdRng};
use rtclab::fuzzing::rtp;

/// A fuzz harness: takes arbitrary bytes, panics only on a bug.
type Harness = fn(&[u8]);

/// Every fuzz target and its harness. A corpus folder without a row here (or
/// a row without a corpus) fails `every_corpus_is_replayed`.
const TARGETS: &[(&str, Harness)] = &[
    ("stun_message", rtclab::fuzzing::stun_message),
    ("srtp_unprotect", rtclab::fuzzing::srtp_unprotect),
    ("rtp_packet", rtp::rtp_packet),
    ("rtp_streams", rtp::rtp_streams),
    ("rtcp_compound", rtp::rtcp_compound),
    ("vp8_depacketize", rtp::vp8_depacketize),
    ("vp9_depacketize", rtp::vp9_depacketize),
    ("av1_depacketize", rtp::av1_depacketize),
    ("dependency_descriptor", rtp::dependency_descriptor),
    ("h264_depacketize", rtp::h264_depacketize),
    ("opus_depacketize", rtp::opus_depacketize),
    ("media_files", rtp::media_files),
    ("dtls_record", rtclab::fuzzing::dtls_record),
    ("dtls_handshake", rtclab::fuzzing::dtls_handshake),
    ("dtls_endpoint", rtclab::fuzzing::dtls_endpoint),
    ("dtls13_record", rtclab::fuzzing::dtls13_record),
    ("dtls13_handshake", rtclab::fuzzing::dtls13_handshake),
    ("dtls13_endpoint", rtclab::fuzzing::dtls13_endpoint),
    ("ice_candidate", rtclab::fuzzing::ice_candidate),
    ("ice_agent", rtclab::fuzzing::ice_agent),
    ("turn_message", rtclab::fuzzing::turn_message),
    ("turn_stream", rtclab::fuzzing::turn_stream),
    ("peer_transport", rtclab::fuzzing::peer_transport),
    ("sdp", rtclab::fuzzing::sdp),
    ("dcep", rtclab::fuzzing::dcep),
    ("peer_connection", rtclab::fuzzing::peer_connection),
    ("sctp_packet", rtclab::fuzzing::sctp_packet),
    ("sctp_association", rtclab::fuzzing::sctp_association),
    ("signaling_rooms", rtclab::fuzzing::signaling_rooms),
    ("signaling_cluster", rtclab::fuzzing::signaling_cluster),
    ("bwe_feedback", rtclab::fuzzing::bwe_feedback),
    ("whip_sdpfrag", rtclab::fuzzing::whip_sdpfrag),
    ("sfu_cascade_control", rtclab::fuzzing::sfu_cascade_control),
    ("peer_set", rtclab::fuzzing::peer_set),
    ("http_response", rtclab::fuzzing::http_response),
    ("capture_xray", rtclab::fuzzing::capture_xray),
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

/// The seeds are real flights of an in-process handshake; they go through
/// the harnesses on every run, minimized corpus or not.
#[test]
fn dtls_seed_inputs_pass_the_harnesses() {
    let seeds = rtclab::fuzzing::dtls_seed_inputs();
    for target in ["dtls_record", "dtls_handshake", "dtls_endpoint"] {
        assert!(
            seeds.iter().any(|(t, _)| *t == target),
            "no seed for {target}"
        );
    }
    for (target, input) in seeds {
        match target {
            "dtls_record" => rtclab::fuzzing::dtls_record(&input),
            "dtls_handshake" => rtclab::fuzzing::dtls_handshake(&input),
            _ => rtclab::fuzzing::dtls_endpoint(&input),
        }
    }
}

/// Writes the DTLS seed corpus (`fuzz/corpus/dtls_*/seed-*`) from a real
/// in-process handshake. Run by hand before fuzzing:
/// `cargo test --test fuzz_corpus -- --ignored write_dtls_seed_corpus`.
#[test]
#[ignore = "writes files; run by hand to reseed the DTLS corpora"]
fn write_dtls_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (i, (target, input)) in rtclab::fuzzing::dtls_seed_inputs().into_iter().enumerate() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("create corpus dir");
        std::fs::write(dir.join(format!("seed-{i:03}")), input).expect("write seed");
    }
}

/// The `dtls_endpoint` seeds are worth their name: replayed into a fresh
/// endpoint with the harness's seeds, the captured client flights pass the
/// server's cookie check (it answers with flight 4), and the captured
/// server flights pass the client's signature check (it sends flight 5,
/// whose Finished is in epoch 1).
#[test]
fn dtls_endpoint_seeds_reach_deep_states() {
    use rtclab::dtls::cert::Certificate;
    use rtclab::dtls::endpoint::{Config, Endpoint};
    use rtclab::fuzzing::{
        DTLS_FUZZ_CLIENT, DTLS_FUZZ_CLIENT_SEED, DTLS_FUZZ_SERVER, DTLS_FUZZ_SERVER_SEED,
    };
    use rtclab::machine::{Machine, Receive};
    use std::net::SocketAddr;
    use std::time::Instant;

    let unframe = |input: &[u8]| {
        let mut out = Vec::new();
        let mut rest = &input[1..];
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            out.push(rest[2..2 + len].to_vec());
            rest = &rest[2 + len..];
        }
        out
    };
    let config = || {
        let mut rng = StdRng::seed_from_u64(4);
        Config::new(Certificate::generate(&mut rng, std::time::SystemTime::now()).unwrap())
    };
    let (client, server) = (
        SocketAddr::from(DTLS_FUZZ_CLIENT),
        SocketAddr::from(DTLS_FUZZ_SERVER),
    );
    let seeds = rtclab::fuzzing::dtls_seed_inputs();
    let now = Instant::now();
    for (client_role, from, to) in [(false, client, server), (true, server, client)] {
        let input = &seeds
            .iter()
            .find(|(t, i)| *t == "dtls_endpoint" && i[0] == u8::from(client_role))
            .expect("a seed")
            .1;
        let mut ep = if client_role {
            Endpoint::client(
                config(),
                server,
                StdRng::seed_from_u64(DTLS_FUZZ_CLIENT_SEED),
                now,
            )
        } else {
            Endpoint::server(config(), StdRng::seed_from_u64(DTLS_FUZZ_SERVER_SEED))
        };
        let mut sent = Vec::new();
        for d in unframe(input) {
            ep.handle_receive(
                now,
                Receive {
                    source: from,
                    destination: to,
                    contents: &d,
                },
            );
            while let Some(t) = ep.poll_transmit() {
                sent.push(t.contents);
            }
        }
        if client_role {
            // A record of epoch 1 (bytes 3..5 of its header): the Finished.
            assert!(
                sent.iter()
                    .any(|d| d.len() > 5 && d[0] == 22 && d[3..5] == [0, 1]),
                "the client never got to flight 5"
            );
        } else {
            assert!(
                sent.iter().any(|d| d.len() > 300),
                "the server never sent flight 4"
            );
        }
    }
}

/// The `peer_connection` seeds (a real offer, then datagrams of each
/// layer) go through the harness on every run.
#[test]
fn peer_connection_seed_inputs_pass_the_harness() {
    let seeds = rtclab::fuzzing::peer_connection_seed_inputs();
    assert!(seeds.len() >= 2);
    for s in &seeds {
        rtclab::fuzzing::peer_connection(s);
    }
}

/// DTLS 1.3's seeds (records sealed with the harness's own keys, typed
/// messages) go through their harnesses on every run.
#[test]
fn dtls13_seeds_pass_the_harnesses() {
    let seeds = rtclab::fuzzing::dtls13_record_seeds();
    assert!(!seeds.is_empty());
    for seed in seeds {
        rtclab::fuzzing::dtls13_record(&seed);
    }
    let seeds = rtclab::fuzzing::dtls13_handshake_seeds();
    assert!(!seeds.is_empty());
    for seed in seeds {
        rtclab::fuzzing::dtls13_handshake(&seed);
    }
}
