//! The real offers and answers of Chromium, Firefox, aiortc, pion,
//! GStreamer's webrtcbin and Janus
//! (tests/fixtures/sdp/: the browsers' and the first aiortc offer copied
//! from shared/fixtures, the others saved by tests/interop_*.rs with
//! `RTCLAB_SAVE_SDP=DIR`) parse, and write back byte for byte (pion's with
//! the trailing whitespace of its `a=` lines dropped).

use std::path::Path;

use rtclab::sdp::{Attribute, Direction, SessionDescription, Setup};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sdp")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

const ALL: &[&str] = &[
    "aiortc_answer.sdp",
    "aiortc_offer.sdp",
    "aiortc_offer_relay.sdp",
    "chromium_answer.sdp",
    "chromium_offer.sdp",
    "chromium_offer_datachannel_only.sdp",
    "firefox_answer.sdp",
    "firefox_offer.sdp",
    "firefox_offer_datachannel_only.sdp",
    "gstreamer_answer.sdp",
    "gstreamer_offer.sdp",
    "janus_answer.sdp",
    "janus_offer.sdp",
];

#[test]
fn every_fixture_round_trips_byte_for_byte() {
    for name in ALL {
        let input = fixture(name);
        let sd = SessionDescription::parse(&input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut out = Vec::new();
        sd.emit(&mut out);
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&input),
            "{name}"
        );
        // And semantically: what was written parses to the same value.
        assert_eq!(SessionDescription::parse(&out).unwrap(), sd, "{name}");
        // No attribute a browser sent that we type fell through to `Other`,
        // except the ones we keep untyped on purpose.
        for a in sd
            .attributes
            .iter()
            .chain(sd.media.iter().flat_map(|m| &m.attributes))
        {
            if let Attribute::Other { name: n, .. } = a {
                // `a=framerate` (RFC 8866 §6.17, webrtcbin) means nothing
                // to RTP here: kept as written, like `rtcp-xr`.
                assert!(
                    n == "rtcp-xr" || n == "framerate",
                    "{name}: untyped attribute {n}"
                );
            }
        }
    }
}

#[test]
fn chromium_offer_reads_as_expected() {
    let sd = SessionDescription::parse(&fixture("chromium_offer.sdp")).unwrap();
    assert_eq!(sd.origin.session_id, 694047503375889831);
    assert_eq!(sd.origin.session_version, 2);
    assert_eq!(sd.bundle_group().unwrap().mids, ["0", "1", "2"]);
    assert!(sd.has(&Attribute::ExtmapAllowMixed));
    assert_eq!(sd.media.len(), 3);
    let audio = &sd.media[0];
    assert_eq!(audio.media, "audio");
    assert_eq!(audio.port, 38176);
    assert_eq!(audio.protocol, "UDP/TLS/RTP/SAVPF");
    assert_eq!(audio.mid(), Some("0"));
    assert_eq!(audio.setup(), Some(Setup::ActPass));
    assert_eq!(audio.direction(), Some(Direction::SendRecv));
    assert_eq!(audio.ice_ufrag(), Some("oGJo"));
    assert_eq!(audio.ice_pwd(), Some("r94agy6EbgYU+wMDYRdIt8dA"));
    assert_eq!(audio.ice_options().collect::<Vec<_>>(), ["trickle"]);
    let fp = audio.fingerprints().next().unwrap();
    assert_eq!(fp.algorithm, "sha-256");
    assert_eq!(fp.value.len(), 32);
    assert_eq!(fp.value[0], 0xD1);
    assert!(fp.to_dtls().is_some());
    assert!(audio.has(&Attribute::RtcpMux) && audio.has(&Attribute::RtcpRsize));
    let opus = audio.rtpmap(111).unwrap();
    assert_eq!(
        (opus.encoding.as_str(), opus.clock_rate, opus.channels),
        ("opus", 48000, Some(2))
    );
    assert_eq!(audio.fmtp(111).unwrap().param("useinbandfec"), Some("1"));
    assert_eq!(
        audio.payload_types().collect::<Vec<_>>(),
        [111, 63, 9, 0, 8, 13, 110, 126]
    );
    let c = audio.candidates().next().unwrap();
    assert_eq!(c.port, 38176);
    assert_eq!(audio.extmaps().count(), 4);
    assert_eq!(audio.ssrc_attributes().next().unwrap().ssrc, 4272854257);
    let video = &sd.media[1];
    let fid = video.ssrc_groups().next().unwrap();
    assert_eq!(
        (fid.semantics.as_str(), fid.ssrcs.as_slice()),
        ("FID", &[31844878, 3711763957][..])
    );
    assert_eq!(video.rtcp_fbs(96).count(), 5);
    assert_eq!(video.fmtp(97).unwrap().param("apt"), Some("96"));
    let h264 = video.fmtp(102).unwrap();
    assert_eq!(h264.param("profile-level-id"), Some("42001f"));
    let app = &sd.media[2];
    assert_eq!(app.protocol, "UDP/DTLS/SCTP");
    assert_eq!(app.formats, ["webrtc-datachannel"]);
    assert_eq!(app.sctp_port(), Some(5000));
    assert_eq!(app.max_message_size(), Some(262144));
}

#[test]
fn firefox_offer_reads_as_expected() {
    let sd = SessionDescription::parse(&fixture("firefox_offer.sdp")).unwrap();
    // Session-level fingerprint and direction.
    assert_eq!(sd.fingerprints().count(), 1);
    assert_eq!(sd.direction(), Some(Direction::SendRecv));
    let audio = &sd.media[0];
    assert_eq!(audio.candidates().count(), 8);
    assert!(audio.has(&Attribute::EndOfCandidates));
    let e = audio.extmaps().find(|e| e.id == 2).unwrap();
    assert_eq!(e.direction, Some(Direction::RecvOnly));
    assert_eq!(e.uri, "urn:ietf:params:rtp-hdrext:csrc-audio-level");
    assert_eq!(audio.rtpmap(9).unwrap().channels, Some(1));
    assert_eq!(audio.fmtp(101).unwrap().params, "0-15");
    assert_eq!(sd.media[2].max_message_size(), Some(1073741823));
}

#[test]
fn aiortc_offer_has_three_fingerprints() {
    let sd = SessionDescription::parse(&fixture("aiortc_offer.sdp")).unwrap();
    let algs: Vec<_> = sd.media[0]
        .fingerprints()
        .map(|f| f.algorithm.as_str())
        .collect();
    assert_eq!(algs, ["sha-256", "sha-384", "sha-512"]);
    assert!(sd.media[0].fingerprints().all(|f| f.to_dtls().is_some()));
}

/// The hand-written pion-style offer (see tests/sdp_negotiation.rs) is not
/// written back byte for byte on purpose: whitespace at the end of its `a=`
/// lines is dropped (parse liberally, write strictly).
#[test]
fn trailing_whitespace_on_attribute_lines_is_dropped() {
    for name in [
        "pion_style_offer_handwritten.sdp",
        "pion_offer.sdp",
        "pion_answer.sdp",
    ] {
        written_without_trailing_whitespace(name);
    }
}

fn written_without_trailing_whitespace(name: &str) {
    let input = fixture(name);
    let sd = SessionDescription::parse(&input).unwrap();
    let mut out = Vec::new();
    sd.emit(&mut out);
    let expected: Vec<u8> = String::from_utf8(input)
        .unwrap()
        .split("\r\n")
        .map(|l| {
            if l.starts_with("a=") {
                l.trim_end_matches([' ', '\t', '\r'])
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        .into_bytes();
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&expected),
        "{name}"
    );
    assert_eq!(SessionDescription::parse(&out).unwrap(), sd, "{name}");
}

/// pion 3.1's offer (video and data, relay-only through `rtclab
/// turn-server`): a session-level fingerprint, every codec it has, and
/// `rtcp-fb` lines with a trailing space read as their type alone.
#[test]
fn pion_offer_reads_as_expected() {
    let sd = SessionDescription::parse(&fixture("pion_offer.sdp")).unwrap();
    assert_eq!(sd.fingerprints().count(), 1);
    assert_eq!(sd.bundle_group().unwrap().mids, ["0", "1"]);
    let video = &sd.media[0];
    assert_eq!(video.setup(), Some(Setup::ActPass));
    assert_eq!(video.rtpmap(96).unwrap().encoding, "VP8");
    assert!(
        video
            .rtcp_fbs(96)
            .any(|f| f.kind == "nack" && f.param.is_none())
    );
    assert!(video.candidates().all(|c| c.kind.to_string() == "relay"));
    let app = &sd.media[1];
    assert_eq!(app.protocol, "UDP/DTLS/SCTP");
    assert_eq!(app.sctp_port(), Some(5000));
}

/// aiortc's relay-only offer: every candidate relayed.
#[test]
fn aiortc_relay_offer_has_only_relay_candidates() {
    let sd = SessionDescription::parse(&fixture("aiortc_offer_relay.sdp")).unwrap();
    let video = &sd.media[0];
    assert!(video.candidates().count() > 0);
    assert!(video.candidates().all(|c| c.kind.to_string() == "relay"));
    assert_eq!(video.rtpmap(97).unwrap().encoding, "VP8");
}
