//! Parser unit tests, error messages, caps, and proptest round trips.

use proptest::prelude::*;

use super::*;
use crate::vocab::{Candidate, CandidateKind};

const MINIMAL: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

fn parse(s: &str) -> Result<SessionDescription, Error> {
    SessionDescription::parse_str(s)
}

#[test]
fn minimal_description() {
    let sd = parse(MINIMAL).unwrap();
    assert_eq!(sd.origin.username, "-");
    assert_eq!(sd.timings.len(), 1);
    assert_eq!(sd.to_string(), MINIMAL);
}

#[test]
fn bare_lf_and_missing_final_newline_are_accepted() {
    let lf = MINIMAL.replace("\r\n", "\n");
    assert_eq!(parse(&lf).unwrap(), parse(MINIMAL).unwrap());
    assert_eq!(parse(lf.trim_end()).unwrap(), parse(MINIMAL).unwrap());
}

#[test]
fn every_line_type_round_trips() {
    let text = "v=0\r\n\
        o=alice 2890844526 2890842807 IN IP4 198.51.100.1\r\n\
        s=Seminar\r\n\
        i=A talk\r\n\
        u=http://example.com/seminar\r\n\
        e=alice@example.com (Alice)\r\n\
        p=+1 617 555-6011\r\n\
        c=IN IP4 233.252.0.1/127\r\n\
        b=CT:128\r\n\
        t=2873397496 2873404696\r\n\
        r=7d 1h 0 25h\r\n\
        z=2882844526 -1h 2898848070 0\r\n\
        t=0 0\r\n\
        k=clear:secret\r\n\
        a=recvonly\r\n\
        m=audio 49170/2 RTP/AVP 0\r\n\
        i=voice\r\n\
        c=IN IP4 233.252.0.1/127\r\n\
        b=AS:64\r\n\
        k=prompt\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        m=video 51372 RTP/AVP 99\r\n\
        a=rtpmap:99 h263-1998/90000\r\n";
    let sd = parse(text).unwrap();
    assert_eq!(sd.timings.len(), 2);
    assert_eq!(sd.timings[0].repeats, ["7d 1h 0 25h"]);
    assert!(sd.timings[0].zone.is_some());
    assert_eq!(sd.media[0].port_count, Some(2));
    assert_eq!(sd.media[0].bandwidths[0].value, 64);
    assert_eq!(sd.to_string(), text);
}

#[test]
fn errors_name_the_line_and_what_was_expected() {
    let bad = format!("{MINIMAL}a=rtpmap:96 VP8\r\n");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.line(), Some(5));
    let msg = e.to_string();
    assert!(msg.starts_with("line 5: expected rtpmap:"), "{msg}");
    assert!(msg.contains("a=rtpmap:96 VP8"), "{msg}");

    let e = parse("v=0\r\ns=-\r\n").unwrap_err();
    assert_eq!(e.line(), Some(2));
    assert!(
        e.to_string().contains("unexpected s= line; expected o="),
        "{e}"
    );

    let e = parse("v=0\r\no=- 1 2 IN IP4 x\r\ns=-\r\n").unwrap_err();
    assert!(e.to_string().contains("description ended"), "{e}");

    let e = parse(&format!("{MINIMAL}c=IN IP4 0.0.0.0\r\n")).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Unexpected {
                line: 5,
                found: 'c',
                ..
            }
        ),
        "{e}"
    );

    let e = parse(&format!("{MINIMAL}m=audio 9 RTP/AVP\r\n")).unwrap_err();
    assert!(matches!(e, Error::Malformed { line: 5, .. }), "{e}");

    let e = parse(&format!("{MINIMAL}x\r\n")).unwrap_err();
    assert!(e.to_string().contains("<letter>=<value>"), "{e}");

    let e = parse(&format!("{MINIMAL}a=setup:sometimes\r\n")).unwrap_err();
    assert!(e.to_string().contains("setup:active|passive"), "{e}");

    let e = parse(&format!("{MINIMAL}a=rtcp-mux:yes\r\n")).unwrap_err();
    assert!(e.to_string().contains("without a value"), "{e}");

    let e = parse("v=1\r\n").unwrap_err();
    assert!(e.to_string().contains("expected v=0"), "{e}");

    let e = SessionDescription::parse(b"v=0\r\no=- 1 2 IN IP4 \xff\r\n").unwrap_err();
    assert_eq!(e, Error::BadText { line: 2 });
}

#[test]
fn caps_hold() {
    let big = vec![b'a'; MAX_SDP_LEN + 1];
    assert_eq!(
        SessionDescription::parse(&big),
        Err(Error::TooLong(MAX_SDP_LEN + 1))
    );
    let mut many = MINIMAL.to_string();
    for _ in 0..=MAX_MEDIA {
        many.push_str("m=audio 9 RTP/AVP 0\r\n");
    }
    assert!(matches!(
        parse(&many),
        Err(Error::TooMany {
            what: "media sections",
            ..
        })
    ));
    let mut attrs = format!("{MINIMAL}m=audio 9 RTP/AVP 0\r\n");
    for _ in 0..=MAX_ATTRIBUTES {
        attrs.push_str("a=x\r\n");
    }
    assert!(matches!(parse(&attrs), Err(Error::TooMany { .. })));
    let section = format!(
        "m=audio 9 RTP/AVP 0\r\n{}",
        "a=x\r\n".repeat(MAX_ATTRIBUTES - 1)
    );
    let lines = format!(
        "{MINIMAL}{}",
        section.repeat(MAX_LINES / MAX_ATTRIBUTES + 1)
    );
    assert!(matches!(
        parse(&lines),
        Err(Error::TooMany { what: "lines", .. })
    ));
    let formats = format!(
        "{MINIMAL}m=audio 9 RTP/AVP{}\r\n",
        " 0".repeat(MAX_LIST + 1)
    );
    assert!(matches!(
        parse(&formats),
        Err(Error::TooMany {
            what: "formats",
            ..
        })
    ));
    let mids = format!("{MINIMAL}a=group:BUNDLE{}\r\n", " 0".repeat(MAX_LIST + 1));
    assert!(parse(&mids).is_err());
}

#[test]
fn typed_attributes_parse() {
    let a = |s: &str| Attribute::parse(s).unwrap();
    assert_eq!(a("sendonly"), Attribute::Direction(Direction::SendOnly));
    assert_eq!(
        a("rtcp-fb:* nack"),
        Attribute::RtcpFb(RtcpFb {
            payload_type: None,
            kind: "nack".into(),
            param: None
        })
    );
    assert_eq!(
        a("simulcast:send 1;~2,3 recv 4"),
        Attribute::Simulcast(Simulcast {
            streams: vec![
                (
                    RidDirection::Send,
                    vec![
                        vec![SimulcastId {
                            rid: "1".into(),
                            paused: false
                        }],
                        vec![
                            SimulcastId {
                                rid: "2".into(),
                                paused: true
                            },
                            SimulcastId {
                                rid: "3".into(),
                                paused: false
                            }
                        ]
                    ]
                ),
                (
                    RidDirection::Recv,
                    vec![vec![SimulcastId {
                        rid: "4".into(),
                        paused: false
                    }]]
                )
            ]
        })
    );
    assert_eq!(
        a("rid:hi send pt=96;max-width=1280"),
        Attribute::Rid(Rid {
            id: "hi".into(),
            direction: RidDirection::Send,
            restrictions: Some("pt=96;max-width=1280".into())
        })
    );
    assert_eq!(a("rtcp-mux-only"), Attribute::RtcpMuxOnly);
    assert_eq!(a("bundle-only"), Attribute::BundleOnly);
    assert_eq!(
        a("x-custom:1 2"),
        Attribute::Other {
            name: "x-custom".into(),
            value: Some("1 2".into())
        }
    );
    assert_eq!(
        a("fingerprint:SHA-256 ab:CD").to_string(),
        "fingerprint:SHA-256 AB:CD"
    );
    for bad in [
        "rtpmap:128 x/1",
        "fmtp:96",
        "extmap:0 urn:x",
        "ssrc:1",
        "ssrc-group:FID x",
        "simulcast:send",
        "sctp-port:70000",
        "mid:",
        "msid:a b c",
        "rid:1 both",
    ] {
        assert!(Attribute::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn direction_algebra() {
    use Direction::*;
    assert_eq!(SendOnly.reverse(), RecvOnly);
    assert_eq!(SendRecv.reverse(), SendRecv);
    assert_eq!(SendRecv.intersect(RecvOnly), RecvOnly);
    assert_eq!(SendOnly.intersect(RecvOnly), Inactive);
}

// ---------------------------------------------------------------------------
// proptest: generated descriptions round-trip; arbitrary input never panics.

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9+/._-]{1,12}"
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 +/._:-]{0,20}"
}

/// Text that ends an `a=` line: never in whitespace, which the parser drops
/// there (parse liberally, write strictly), so no value can end in it.
fn value() -> impl Strategy<Value = String> {
    "([a-zA-Z0-9 +/._:-]{0,19}[a-zA-Z0-9+/._:-])?"
}

fn direction() -> impl Strategy<Value = Direction> {
    prop_oneof![
        Just(Direction::SendRecv),
        Just(Direction::SendOnly),
        Just(Direction::RecvOnly),
        Just(Direction::Inactive)
    ]
}

fn rid_direction() -> impl Strategy<Value = RidDirection> {
    prop_oneof![Just(RidDirection::Send), Just(RidDirection::Recv)]
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        "[0-9]{1,10}",
        1u16..=2,
        any::<u32>(),
        any::<[u8; 4]>(),
        any::<u16>(),
    )
        .prop_map(|(f, comp, prio, ip, port)| {
            Candidate::new(
                f,
                comp,
                CandidateKind::Host,
                prio,
                std::net::SocketAddr::from((ip, port)),
                None,
            )
        })
}

fn attribute() -> impl Strategy<Value = Attribute> {
    let pt = 0u8..=127;
    prop_oneof![
        token().prop_map(Attribute::IceUfrag),
        token().prop_map(Attribute::IcePwd),
        prop::collection::vec(token(), 1..4).prop_map(Attribute::IceOptions),
        Just(Attribute::IceLite),
        candidate().prop_map(Attribute::Candidate),
        Just(Attribute::EndOfCandidates),
        (token(), prop::collection::vec(any::<u8>(), 1..64)).prop_map(|(algorithm, value)| {
            Attribute::Fingerprint(Fingerprint { algorithm, value })
        }),
        prop_oneof![
            Just(Setup::Active),
            Just(Setup::Passive),
            Just(Setup::ActPass),
            Just(Setup::HoldConn)
        ]
        .prop_map(Attribute::Setup),
        token().prop_map(Attribute::Mid),
        (token(), prop::collection::vec(token(), 0..4))
            .prop_map(|(semantics, mids)| Attribute::Group(Group { semantics, mids })),
        Just(Attribute::BundleOnly),
        (any::<u16>(), prop::option::of((token(), token(), token())))
            .prop_map(|(port, address)| Attribute::Rtcp(Rtcp { port, address })),
        Just(Attribute::RtcpMux),
        Just(Attribute::RtcpMuxOnly),
        Just(Attribute::RtcpRsize),
        (
            pt.clone(),
            "[a-zA-Z0-9-]{1,10}",
            any::<u32>(),
            prop::option::of(any::<u16>())
        )
            .prop_map(
                |(payload_type, encoding, clock_rate, channels)| Attribute::RtpMap(RtpMap {
                    payload_type,
                    encoding,
                    clock_rate,
                    channels
                })
            ),
        (pt.clone(), "[a-z0-9=;/ -]{0,29}[a-z0-9=;/-]").prop_map(|(payload_type, params)| {
            Attribute::Fmtp(Fmtp {
                payload_type,
                params,
            })
        }),
        (
            prop::option::of(pt.clone()),
            token(),
            prop::option::of(value().prop_filter("non-empty", |s| !s.is_empty()))
        )
            .prop_map(|(payload_type, kind, param)| Attribute::RtcpFb(RtcpFb {
                payload_type,
                kind,
                param
            })),
        (
            1u16..=255,
            prop::option::of(direction()),
            token(),
            prop::option::of(token())
        )
            .prop_map(
                |(id, direction, uri, attributes)| Attribute::Extmap(Extmap {
                    id,
                    direction,
                    uri,
                    attributes
                })
            ),
        Just(Attribute::ExtmapAllowMixed),
        (token(), prop::option::of(token()))
            .prop_map(|(stream, track)| Attribute::Msid(Msid { stream, track })),
        (any::<bool>(), token(), prop::collection::vec(token(), 0..3)).prop_map(
            |(leading_space, semantic, identifiers)| Attribute::MsidSemantic(MsidSemantic {
                leading_space,
                semantic,
                identifiers
            })
        ),
        (any::<u32>(), "[a-z]{1,8}", prop::option::of(value())).prop_map(|(ssrc, name, value)| {
            Attribute::Ssrc(SsrcAttribute { ssrc, name, value })
        }),
        (token(), prop::collection::vec(any::<u32>(), 0..4))
            .prop_map(|(semantics, ssrcs)| Attribute::SsrcGroup(SsrcGroup { semantics, ssrcs })),
        (
            token(),
            rid_direction(),
            prop::option::of("[a-z0-9=;-]{1,20}")
        )
            .prop_map(|(id, direction, restrictions)| Attribute::Rid(Rid {
                id,
                direction,
                restrictions
            })),
        prop::collection::vec(
            (
                rid_direction(),
                prop::collection::vec(
                    prop::collection::vec(
                        ("[a-z0-9]{1,4}", any::<bool>())
                            .prop_map(|(rid, paused)| SimulcastId { rid, paused }),
                        1..3
                    ),
                    1..3
                )
            ),
            1..3
        )
        .prop_map(|streams| Attribute::Simulcast(Simulcast { streams })),
        any::<u16>().prop_map(Attribute::SctpPort),
        (0u64..=1 << 60).prop_map(Attribute::MaxMessageSize),
        direction().prop_map(Attribute::Direction),
        ("x-[a-z-]{1,10}", prop::option::of(value()))
            .prop_map(|(name, value)| Attribute::Other { name, value }),
    ]
}

fn media() -> impl Strategy<Value = MediaDescription> {
    (
        "[a-z]{1,11}",
        any::<u16>(),
        prop::option::of(any::<u16>()),
        "[A-Z/]{1,16}",
        prop::collection::vec(token(), 1..6),
        prop::option::of(text()),
        prop::collection::vec((token(), token(), token()), 0..2),
        prop::collection::vec(attribute(), 0..12),
    )
        .prop_map(
            |(media, port, port_count, protocol, formats, title, conns, attributes)| {
                MediaDescription {
                    media,
                    port,
                    port_count,
                    protocol,
                    formats,
                    title,
                    connections: conns
                        .into_iter()
                        .map(|(net_type, addr_type, address)| Connection {
                            net_type,
                            addr_type,
                            address,
                        })
                        .collect(),
                    bandwidths: vec![],
                    key: None,
                    attributes,
                }
            },
        )
}

fn description() -> impl Strategy<Value = SessionDescription> {
    (
        (token(), any::<u64>(), any::<u64>()),
        text(),
        prop::option::of(text()),
        prop::collection::vec((token(), any::<u64>()), 0..2),
        prop::collection::vec(
            (
                any::<u64>(),
                any::<u64>(),
                prop::collection::vec(text(), 0..2),
            ),
            1..3,
        ),
        prop::collection::vec(attribute(), 0..10),
        prop::collection::vec(media(), 0..4),
    )
        .prop_map(
            |(
                (username, session_id, session_version),
                session_name,
                information,
                bw,
                times,
                attributes,
                media,
            )| {
                SessionDescription {
                    version: 0,
                    origin: Origin {
                        username,
                        session_id,
                        session_version,
                        net_type: "IN".into(),
                        addr_type: "IP4".into(),
                        address: "127.0.0.1".into(),
                    },
                    session_name,
                    information,
                    uri: None,
                    emails: vec![],
                    phones: vec![],
                    connection: None,
                    bandwidths: bw
                        .into_iter()
                        .map(|(kind, value)| Bandwidth { kind, value })
                        .collect(),
                    timings: times
                        .into_iter()
                        .map(|(start, stop, repeats)| Timing {
                            start,
                            stop,
                            repeats,
                            zone: None,
                        })
                        .collect(),
                    key: None,
                    attributes,
                    media,
                }
            },
        )
}

proptest! {
    #[test]
    fn generated_descriptions_round_trip(sd in description()) {
        let text = sd.to_string();
        let back = SessionDescription::parse_str(&text);
        prop_assert!(back.is_ok(), "{:?}\n{}", back, text);
        prop_assert_eq!(back.unwrap(), sd);
    }

    #[test]
    fn generated_attributes_round_trip(a in attribute()) {
        let text = a.to_string();
        prop_assert_eq!(Attribute::parse(&text), Ok(a));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        crate::fuzzing::sdp(&data);
    }

    #[test]
    fn arbitrary_lines_never_panic(lines in prop::collection::vec("[a-z]=[ -~]{0,60}", 0..40)) {
        let text = format!("{MINIMAL}{}", lines.join("\r\n"));
        crate::fuzzing::sdp(text.as_bytes());
    }

    /// Whatever follows the name of an optional attribute, the description
    /// is not refused for it (issue 15: pion's `a=rtcp-fb:96 nack `), and a
    /// line that does not parse is dropped, not kept half-read.
    #[test]
    fn malformed_optional_attributes_never_refuse_the_description(
        lines in prop::collection::vec(
            (
                prop::sample::select(&[
                    "candidate", "end-of-candidates", "ice-options", "rtcp", "rtcp-rsize",
                    "fmtp", "rtcp-fb", "extmap", "extmap-allow-mixed", "msid",
                    "msid-semantic", "ssrc", "ssrc-group", "rid", "simulcast", "x-unknown",
                ][..]),
                prop::option::of("[ -~\t]{0,40}"),
            ),
            0..12,
        ),
        in_media in any::<bool>(),
    ) {
        let mut text = MINIMAL.to_string();
        if in_media {
            text.push_str(MEDIA);
        }
        for (name, value) in &lines {
            match value {
                Some(v) => text.push_str(&format!("a={name}:{v}\r\n")),
                None => text.push_str(&format!("a={name}\r\n")),
            }
        }
        let sd = parse(&text);
        prop_assert!(sd.is_ok(), "{:?}\n{}", sd, text);
        let sd = sd.unwrap();
        let kept = if in_media { &sd.media[0].attributes } else { &sd.attributes };
        let mid = usize::from(in_media);
        prop_assert!(kept.len() <= lines.len() + mid);
        crate::fuzzing::sdp(text.as_bytes());
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let base: &[u8] = match which {
            0 => include_bytes!("../../tests/fixtures/sdp/chromium_offer.sdp"),
            1 => include_bytes!("../../tests/fixtures/sdp/firefox_offer.sdp"),
            _ => include_bytes!("../../tests/fixtures/sdp/aiortc_offer.sdp"),
        };
        let mut data = base.to_vec();
        for (i, b) in edits {
            let i = i.index(data.len());
            data[i] = b;
        }
        crate::fuzzing::sdp(&data);
    }
}

// ---------------------------------------------------------------------------
// Parse liberally (issue 15): trailing whitespace on a= lines, and malformed
// optional attributes skipped; mandatory ones still refused.

const MEDIA: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n";

#[test]
fn trailing_whitespace_on_attribute_lines_is_accepted() {
    let text = format!(
        "{MINIMAL}{MEDIA}a=rtpmap:96 VP8/90000 \r\na=rtcp-fb:96 nack \r\n\
         a=rtcp-fb:96 nack pli\t \r\na=rtcp-fb:96 ccm fir\r\r\na=sendrecv \r\n"
    );
    let sd = parse(&text).unwrap();
    let m = &sd.media[0];
    let fbs: Vec<_> = m
        .rtcp_fbs(96)
        .map(|f| (f.kind.as_str(), f.param.as_deref()))
        .collect();
    assert_eq!(
        fbs,
        [("nack", None), ("nack", Some("pli")), ("ccm", Some("fir"))]
    );
    assert_eq!(m.rtpmap(96).unwrap().encoding, "VP8");
    assert_eq!(m.direction(), Some(Direction::SendRecv));
    // Written strictly: no trailing whitespace, and a fixed point.
    let out = sd.to_string();
    assert_eq!(
        out,
        format!(
            "{MINIMAL}{MEDIA}a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\n\
             a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 ccm fir\r\na=sendrecv\r\n"
        )
    );
    assert_eq!(parse(&out).unwrap(), sd);
    // Not on other lines: `s= ` is RFC 8866 §5.3's name for "no name".
    let s = parse("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns= \r\nt=0 0\r\n").unwrap();
    assert_eq!(s.session_name, " ");
    // A CR inside a line is still refused.
    assert_eq!(
        parse(&format!("{MINIMAL}a=rtcp-fb:96 nack\rpli\r\n")),
        Err(Error::BadText { line: 5 })
    );
}

#[test]
fn malformed_optional_attributes_are_skipped() {
    let bad = [
        "a=rtcp-fb:abc nack",
        "a=rtcp-fb:96",
        "a=extmap:x y",
        "a=extmap:0 urn:x",
        "a=ssrc:notanumber cname:x",
        "a=ssrc-group:FID 1 x",
        "a=fmtp:abc apt=96",
        "a=msid:",
        "a=msid-semantic:",
        "a=rid:1 sideways",
        "a=simulcast:send",
        "a=candidate:not a candidate",
        "a=ice-options:",
        "a=end-of-candidates:now",
        "a=extmap-allow-mixed:yes",
        "a=rtcp:x",
        "a=rtcp-rsize:yes",
    ];
    for b in bad {
        let with = format!("{MINIMAL}{MEDIA}a=rtpmap:96 VP8/90000\r\n{b}\r\na=sendrecv\r\n");
        let without = format!("{MINIMAL}{MEDIA}a=rtpmap:96 VP8/90000\r\na=sendrecv\r\n");
        let sd = parse(&with).unwrap_or_else(|e| panic!("{b}: {e}"));
        assert_eq!(sd, parse(&without).unwrap(), "{b}");
        assert_eq!(sd.to_string(), without, "{b}");
        // At the session level too.
        let session = format!("{MINIMAL}{b}\r\n{MEDIA}");
        assert_eq!(
            parse(&session).unwrap_or_else(|e| panic!("{b}: {e}")),
            parse(&format!("{MINIMAL}{MEDIA}")).unwrap(),
            "{b}"
        );
    }
    // A skipped line still has to be where a= may be (RFC 8866 §5 order).
    let e = parse("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\na=rtcp-fb:abc nack\r\nt=0 0\r\n")
        .unwrap_err();
    assert!(matches!(e, Error::Unexpected { line: 4, .. }), "{e}");
}

#[test]
fn malformed_mandatory_attributes_still_fail() {
    let cases = [
        ("a=fingerprint:sha-256 zz", "fingerprint:<hash>"),
        ("a=fingerprint:sha-256", "fingerprint:<hash>"),
        ("a=ice-ufrag:a b", "ice-ufrag:<ufrag>"),
        ("a=ice-pwd", "ice-pwd:<password>"),
        ("a=ice-lite:yes", "ice-lite without a value"),
        ("a=setup:sometimes", "setup:active|passive"),
        ("a=mid:a b", "mid:<id>"),
        ("a=group:", "group:<semantics>"),
        ("a=bundle-only:yes", "bundle-only without a value"),
        ("a=rtcp-mux:yes", "rtcp-mux without a value"),
        ("a=rtcp-mux-only:yes", "rtcp-mux-only without a value"),
        ("a=rtpmap:96 VP8", "rtpmap:<payload type>"),
        ("a=sctp-port:x", "sctp-port:<port>"),
        ("a=max-message-size:x", "max-message-size:<bytes>"),
        ("a=sendonly:yes", "a direction without a value"),
    ];
    for (line, expected) in cases {
        let text = format!("{MINIMAL}{MEDIA}{line}\r\n");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line(), Some(8), "{line}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("line 8: expected {expected}")),
            "{line}: {e}"
        );
        // Trailing whitespace does not change the verdict.
        let e2 = parse(&format!("{MINIMAL}{MEDIA}{line} \r\n")).unwrap_err();
        assert_eq!(e2.line(), Some(8), "{line}: {e2}");
    }
    // A bad m= line too.
    let e = parse(&format!("{MINIMAL}m=video x UDP/TLS/RTP/SAVPF 96\r\n")).unwrap_err();
    assert!(matches!(e, Error::Malformed { line: 5, .. }), "{e}");
    assert!(e.to_string().contains("m=<media>"), "{e}");
}
