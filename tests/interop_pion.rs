//! pion v3 (Go: pion/ice, pion/dtls, pion/sctp, pion/srtp; Debian's
//! `golang-github-pion-webrtc.v3-dev`, 3.1.56 on bookworm) against a Rust
//! [`rtclab::runtime::LivePeer`]. tests/interop/pion/main.go is built at test
//! time in GOPATH mode (`GO111MODULE=off`, Debian's sources in
//! `/usr/share/gocode`, nothing downloaded) into `target/pion-peer`, and
//! signals as JSON lines on its stdin/stdout (tests/interop/harness.rs).
//!
//! GOPATH mode resolves `github.com/pion/webrtc/v3` to Debian's
//! `…/pion/webrtc` only for a package that sits in a GOPATH tree with a
//! `go.mod` (Go's minimal module compatibility), so the build copies
//! main.go into `target/pion-gopath/src/rtclabpion/` beside a one-line
//! go.mod.
//!
//! Cases, each one call on 127.0.0.1, as for aiortc (tests/interop_aiortc.rs):
//! data channels (ordered, unordered, `maxRetransmits: 0`,
//! `maxPacketLifeTime`; a 65535-byte message, see [`PION_LARGEST`]; 4 MiB
//! echoed and checksummed) and VP8 both
//! ways frame by frame (pion's sample builder on its side), with rtclab
//! offering (pion answers `setup:active`: rtclab is the DTLS server) and
//! pion offering (rtclab is the DTLS client); and pion relay-only
//! (`ICETransportPolicyRelay`) through `rtclab turn-server`, pion
//! offering with only its side relayed, and rtclab offering with both
//! relayed (relay to relay, [`relay_to_relay_rtclab_offers`]).
//!
//! H.264 both ways too (pion registering only H.264, 42e01f, as PT 112),
//! from tests/fixtures/media/h264-smpte-240x176.ivf, access units compared
//! as their NAL units (harness `canonical`).

#[path = "interop/harness.rs"]
mod harness;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use harness::{Case, Foreign};
use rtclab::dtls::endpoint::Role;

/// Builds the pion peer once per test binary; `None` after a loud skip
/// when Go or the pion sources are missing.
fn binary() -> Option<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let gocode = PathBuf::from("/usr/share/gocode/src/github.com/pion/webrtc");
        if !gocode.join("peerconnection.go").is_file() {
            return Err("pion v3 sources (Debian package golang-github-pion-webrtc.v3-dev)".into());
        }
        let target = harness::root().join("target");
        let gopath = target.join("pion-gopath");
        let dir = gopath.join("src/rtclabpion");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        std::fs::copy(
            harness::root().join("tests/interop/pion/main.go"),
            dir.join("main.go"),
        )
        .map_err(|e| e.to_string())?;
        std::fs::write(dir.join("go.mod"), "module rtclabpion\n\ngo 1.19\n")
            .map_err(|e| e.to_string())?;
        let out = target.join("pion-peer");
        let gopath_env = format!("{}:/usr/share/gocode", gopath.display());
        let result = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&dir)
            .env("GO111MODULE", "off")
            .env("GOPATH", gopath_env)
            .env("GOCACHE", target.join("pion-gocache"))
            .env("GOFLAGS", "")
            .output();
        match result {
            Err(_) => Err("go (Debian package golang-go)".into()),
            Ok(o) if !o.status.success() => panic!(
                "building the pion peer failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Ok(_) => Ok(out),
        }
    });
    match built {
        Ok(p) => Some(p.clone()),
        Err(what) => {
            harness::skip(what, "run scripts/test, which installs it");
            None
        }
    }
}

fn start() -> Option<Foreign> {
    let bin = binary()?;
    Some(Foreign::start("pion", &bin, &[], &[]))
}

const LIMIT: Duration = Duration::from_secs(60);

/// pion 3.1 reads a data-channel message into a 65535-byte buffer
/// (`dataChannelBufferSize = math.MaxUint16`, "message size limit for
/// Chromium"), one byte short of the 64 KiB that RFC 8841 §6.1 makes the
/// default when, as pion's does, an SDP has no `max-message-size`: a 65536-byte
/// message fails pion's read loop. The large message is 65535 bytes here.
const PION_LARGEST: usize = 65535;

fn data(rtclab_offers: bool) -> Case {
    Case {
        large_message: PION_LARGEST,
        ..Case::data(rtclab_offers)
    }
}

#[tokio::test]
async fn data_channels_rtclab_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("pion", f, &data(true), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Server));
}

#[tokio::test]
async fn data_channels_pion_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("pion", f, &data(false), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Client));
}

#[tokio::test]
async fn vp8_both_ways_rtclab_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("pion", f, &Case::video(true), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Server));
}

#[tokio::test]
async fn vp8_both_ways_pion_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("pion", f, &Case::video(false), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Client));
}

#[tokio::test]
async fn h264_both_ways_rtclab_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("pion", f, &Case::h264(true), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Server));
}

#[tokio::test]
async fn h264_both_ways_pion_offers() {
    let Some(f) = start() else { return };
    let out = harness::run("pion", f, &Case::h264(false), LIMIT).await;
    assert_eq!(out.dtls_role, Some(Role::Client));
}

#[tokio::test]
async fn relay_only_through_rtclab_turn_server() {
    let Some(f) = start() else { return };
    let mut case = data(false);
    case.video = Some("VP8");
    case.bulk_bytes = 1 << 20;
    case.turn = true;
    let out = harness::run("pion", f, &case, LIMIT).await;
    assert!(
        !out.foreign_candidate_types.is_empty()
            && out.foreign_candidate_types.iter().all(|t| t == "relay"),
        "pion signaled {:?}",
        out.foreign_candidate_types
    );
}

/// Relay to relay, rtclab offering: both sides relay-only through one
/// `rtclab turn-server`, data channels and 1 MiB.
#[tokio::test]
async fn relay_to_relay_rtclab_offers() {
    let Some(f) = start() else { return };
    let case = Case {
        bulk_bytes: 1 << 20,
        turn: true,
        rtclab_relayed: true,
        ..data(true)
    };
    let out = harness::run("pion", f, &case, LIMIT).await;
    harness::assert_relayed(&out);
}
