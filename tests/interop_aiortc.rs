//! aiortc (Python: aioice, OpenSSL DTLS through pyOpenSSL, its own SCTP,
//! libvpx through PyAV) against a Rust [`rtclab::peer::LivePeer`]:
//! tests/interop/aiortc_peer.py runs in the venv `scripts/test` makes
//! (`target/interop-venv`, or `RTCLAB_AIORTC_PYTHON`), signaling as JSON
//! lines on its stdin/stdout (tests/interop/harness.rs).
//!
//! Cases, each one call on 127.0.0.1:
//! - data channels created by the offerer, rtclab offering (aiortc answers
//!   `setup:active`: rtclab is the DTLS server) and aiortc offering (rtclab
//!   is the DTLS client): ordered, unordered, `maxRetransmits: 0`,
//!   `maxPacketLifeTime`, each seen with the same options on both sides and
//!   every message echoed back; a 64 KiB message; 4 MiB echoed, checked by
//!   SHA-256. Loopback loses nothing, so partial reliability is checked as
//!   negotiated (DCEP), not as dropping under loss (tests/sim_datachannel.rs
//!   does that).
//! - VP8 both ways, both offer directions: each side sends the 60 frames of
//!   tests/fixtures/media/fake-camera-vp8.ivf as they are (aiortc packs
//!   pre-encoded frames without re-encoding), and every frame received on
//!   either side is compared with the clip's by SHA-256.
//! - relay only: aiortc with `iceTransportPolicy: relay` through
//!   `rtclab turn-server`; the Rust peer has no TURN client yet, so only
//!   aiortc's side is relayed (the server relays to the Rust peer's host
//!   candidate, `--allow-loopback-peers`).
//!
//! - H.264 both ways with rtclab offering (aiortc offering: a known
//!   failure, see [`h264_both_ways_aiortc_offers`]), from
//!   tests/fixtures/media/h264-smpte-240x176.ivf (40 access units), aiortc
//!   held to H.264 by its codec preferences; access units compared as
//!   their NAL units (harness `canonical`: AUDs dropped, 4-byte start codes).

#[path = "interop/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::time::Duration;

use harness::{Case, Foreign};
use rtclab::dtls::endpoint::Role;

/// The venv's python with aiortc importable, or `None` after a loud skip.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("RTCLAB_AIORTC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| harness::root().join("target/interop-venv/bin/python"));
    let ok = std::process::Command::new(&python)
        .args(["-c", "import aiortc"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        harness::skip(
            &format!("aiortc ({})", python.display()),
            "run scripts/test, which makes target/interop-venv with `pip install aiortc`",
        );
        return None;
    }
    Some(python)
}

fn start() -> Option<Foreign> {
    let python = python()?;
    let script = harness::root().join("tests/interop/aiortc_peer.py");
    Some(Foreign::start(
        "aiortc",
        &python,
        &[
            script.display().to_string(),
            std::env::var("RTCLAB_AIORTC_ARGS").unwrap_or_default(),
        ],
        &[],
    ))
}

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn data_channels_rtclab_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("aiortc", f, &Case::data(true), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Server));
    assert!(out.foreign_sdp.contains("a=setup:active"));
}

#[tokio::test]
async fn data_channels_aiortc_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("aiortc", f, &Case::data(false), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Client));
}

#[tokio::test]
async fn vp8_both_ways_rtclab_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("aiortc", f, &Case::video(true), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Server));
}

#[tokio::test]
async fn vp8_both_ways_aiortc_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("aiortc", f, &Case::video(false), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Client));
}

#[tokio::test]
async fn h264_both_ways_rtclab_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("aiortc", f, &Case::h264(true), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Server));
}

/// Known failure, not yet understood: when aiortc offers H.264 (its PTs
/// 99/101 with RTX 100/102; rtclab answers 101 with RTX 102), rtclab
/// receives aiortc's RTP (138 packets) but assembles no access unit and
/// sends PLI after PLI, in either DTLS role; the same clip from aiortc when
/// rtclab offers (PT 102), and from pion offering H.264 (PT 112), arrives
/// 40/40. rtclab's 40 access units reach aiortc in both cases.
#[tokio::test]
#[ignore = "aiortc's H.264 as offerer: rtclab assembles no frame"]
async fn h264_both_ways_aiortc_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("aiortc", f, &Case::h264(false), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Client));
}

#[tokio::test]
async fn relay_only_through_rtclab_turn_server() {
    let Some(f) = start() else { return };
    let mut case = Case::data(false);
    case.video = Some("VP8");
    case.bulk_bytes = 1 << 20;
    case.turn = true;
    let out = harness::run("aiortc", f, &case, LIMIT).await;
    assert!(
        !out.foreign_candidate_types.is_empty()
            && out.foreign_candidate_types.iter().all(|t| t == "relay"),
        "aiortc signaled {:?}",
        out.foreign_candidate_types
    );
}
