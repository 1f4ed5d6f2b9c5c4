//! Captures that decrypt themselves, checked by Wireshark's own dissectors:
//! a simulated data-channel call's pcapng (rtclab's writer, the DTLS key log
//! in a Decryption Secrets Block) read by `tshark` with no key file shows
//! the DCEP OPEN with its label and every data-channel text message, and the
//! SRTP plaintext interface decodes as RTP with VP8.
//!
//! tshark is Debian's `tshark`; without it the test skips loudly (fails
//! with `RTCLAB_REQUIRE_INTEROP=1`).
//!
//! Wireshark 4.0 decrypts the DTLS records with the DSB's secrets alone,
//! but has no way to guess that their plaintext is SCTP (no heuristic, and
//! "Decode As" does not offer SCTP under DTLS): it must be told, through
//! the DTLS "RSA keys list" whose rows name a port and an application
//! protocol (the RSA key of the row is unused by an ECDHE handshake, but
//! must load: [`sctp_over_dtls`] makes a throwaway one).

mod common;
#[path = "common/tshark.rs"]
mod tshark;
#[path = "common/xray_call.rs"]
mod xray_call;

use tshark::{dcep, sctp_over_dtls, texts, tshark};

#[test]
fn tshark_decrypts_a_simulated_call_from_the_pcapng_alone() {
    let Some(bin) = common::require_binary("tshark", "tshark") else {
        return;
    };
    let Some(openssl) = common::require_binary("openssl", "openssl") else {
        return;
    };
    let dir = tempdir();
    let file = dir.join("sim-call.pcapng");
    std::fs::write(&file, xray_call::capture()).expect("write capture");
    let sctp = sctp_over_dtls(&openssl, &dir, 5000);

    // DCEP: the OPEN with the label, then the ACK.
    let dcep = dcep(&bin, &file, &sctp);
    let lines: Vec<&str> = dcep.lines().collect();
    assert!(
        lines.contains(&format!("3\t{}", xray_call::LABEL).as_str()),
        "no DATA_CHANNEL_OPEN labelled {:?} in:\n{dcep}",
        xray_call::LABEL
    );
    assert!(lines.contains(&"2\t"), "no DATA_CHANNEL_ACK in:\n{dcep}");

    // Every text message (PPID 51), decrypted.
    // (The payload shows as data with upper-layer dissection off.)
    let got: Vec<String> = texts(&bin, &file, &sctp)
        .into_iter()
        .map(|t| String::from_utf8(t).expect("utf-8 message"))
        .collect();
    for m in xray_call::MESSAGES {
        assert!(got.iter().any(|g| g == m), "message {m:?} not in {got:?}");
    }
    assert!(got.iter().any(|g| g == "reply from B"), "{got:?}");

    // The SRTP plaintext interface: RTP with VP8 payload descriptors.
    let rtp = tshark(
        &bin,
        &file,
        &[
            "-d",
            "udp.port==5004,rtp",
            "-d",
            "udp.port==5005,rtcp",
            "-o",
            "vp8.dynamic.payload.type:96",
            "-Y",
            "vp8",
        ],
    );
    assert!(rtp.lines().count() >= 3, "no plaintext VP8:\n{rtp}");
    assert!(rtp.contains("Keyframe"), "no VP8 keyframe:\n{rtp}");
    let rtcp = tshark(&bin, &file, &["-d", "udp.port==5005,rtcp", "-Y", "rtcp"]);
    assert!(!rtcp.is_empty(), "no plaintext RTCP");

    // A pcapng written by tshark itself (its own blocks, the DSB kept) is
    // read by `rtclab xray` alike.
    let rewritten = dir.join("rewritten.pcapng");
    let _ = tshark(
        &bin,
        &file,
        &["-w", rewritten.to_str().expect("UTF-8 temp path")],
    );
    let bytes = std::fs::read(&rewritten).expect("tshark's pcapng");
    let ladder = rtclab::capture::xray::xray(&bytes, &Default::default()).expect("pcapng");
    let label = format!("DATA_CHANNEL_OPEN label {:?}", xray_call::LABEL);
    assert!(ladder.contains(&label), "{ladder}");
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("rtclab-xray-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
