//! `application/trickle-ice-sdpfrag` (RFC 8840 §9): the body of a WHIP or
//! WHEP `PATCH`, a piece of SDP with just the ICE lines.
//!
//! ```text
//!   a=ice-options:trickle ice2        session level (optional)
//!   a=group:BUNDLE 0 1
//!   m=audio 9 UDP/TLS/RTP/SAVPF 111   one fragment per m-section
//!   a=mid:0
//!   a=ice-ufrag:EsAw                  new ufrag/pwd: an ICE restart
//!   a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1
//!   a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host
//!   a=end-of-candidates
//! ```
//!
//! [`SdpFrag::parse`] keeps every line (attributes it does not know, in
//! order, as text), so `parse(emit(x)) == x`. Candidate lines are kept as
//! text: a backend hands them to `PeerConnection::add_ice_candidate`,
//! which parses them. Limits: [`MAX_BYTES`] of body, [`MAX_MEDIA`]
//! m-sections; a line that is neither `a=` nor `m=` is an error.

use std::fmt;

/// The largest fragment read (a browser's trickled fragment is a few
/// hundred bytes; an ICE restart with every candidate a few KiB).
pub const MAX_BYTES: usize = 16 * 1024;
/// The most m-sections a fragment may have.
pub const MAX_MEDIA: usize = 64;

/// One m-section's part of a fragment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FragMedia {
    /// The `m=` line's value (`audio 9 UDP/TLS/RTP/SAVPF 111`).
    pub media: String,
    /// `a=mid`.
    pub mid: Option<String>,
    /// `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// `a=candidate:…` lines, each as `candidate:…` (without `a=`).
    pub candidates: Vec<String>,
    /// `a=end-of-candidates` (RFC 8840 §8.2).
    pub end_of_candidates: bool,
    /// Other attributes, as written after `a=`.
    pub other: Vec<String>,
}

/// A trickle-ice-sdpfrag body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SdpFrag {
    /// Session-level `a=ice-options` (`trickle ice2`).
    pub ice_options: Option<String>,
    /// Session-level `a=ice-ufrag`.
    pub ice_ufrag: Option<String>,
    /// Session-level `a=ice-pwd`.
    pub ice_pwd: Option<String>,
    /// Other session-level attributes (`group:BUNDLE 0 1`), after `a=`.
    pub other: Vec<String>,
    /// The m-sections.
    pub media: Vec<FragMedia>,
}

/// Why a fragment could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FragError {
    /// Longer than [`MAX_BYTES`].
    TooLong(usize),
    /// Not UTF-8.
    NotUtf8,
    /// A line is not an `a=` or `m=` line, or a value is empty (1-based
    /// line number).
    BadLine {
        /// Its line number.
        line: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// More than [`MAX_MEDIA`] m-sections.
    TooManyMedia,
}

impl fmt::Display for FragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FragError::TooLong(n) => write!(f, "sdpfrag of {n} bytes, more than {MAX_BYTES}"),
            FragError::NotUtf8 => f.write_str("sdpfrag is not UTF-8"),
            FragError::BadLine { line, reason } => write!(f, "sdpfrag line {line}: {reason}"),
            FragError::TooManyMedia => write!(f, "sdpfrag with more than {MAX_MEDIA} m-sections"),
        }
    }
}

impl std::error::Error for FragError {}

impl SdpFrag {
    /// Reads a fragment (CRLF or LF line ends; empty lines skipped).
    pub fn parse(body: &[u8]) -> Result<SdpFrag, FragError> {
        if body.len() > MAX_BYTES {
            return Err(FragError::TooLong(body.len()));
        }
        let text = std::str::from_utf8(body).map_err(|_| FragError::NotUtf8)?;
        let mut frag = SdpFrag::default();
        for (n, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.is_empty() {
                continue;
            }
            let bad = |reason| FragError::BadLine {
                line: n + 1,
                reason,
            };
            if line.contains('\r') {
                return Err(bad("a carriage return inside a line"));
            }
            if let Some(m) = line.strip_prefix("m=") {
                if m.is_empty() {
                    return Err(bad("an empty m= line"));
                }
                if frag.media.len() == MAX_MEDIA {
                    return Err(FragError::TooManyMedia);
                }
                frag.media.push(FragMedia {
                    media: m.to_string(),
                    ..FragMedia::default()
                });
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else {
                return Err(bad("neither an a= nor an m= line (RFC 8840 §9)"));
            };
            if attr.is_empty() {
                return Err(bad("an empty a= line"));
            }
            let (name, value) = match attr.split_once(':') {
                Some((n, v)) => (n, Some(v)),
                None => (attr, None),
            };
            match frag.media.last_mut() {
                None => match (name, value) {
                    ("ice-options", Some(v)) => frag.ice_options = Some(v.to_string()),
                    ("ice-ufrag", Some(v)) => frag.ice_ufrag = Some(v.to_string()),
                    ("ice-pwd", Some(v)) => frag.ice_pwd = Some(v.to_string()),
                    _ => frag.other.push(attr.to_string()),
                },
                Some(m) => match (name, value) {
                    ("mid", Some(v)) => m.mid = Some(v.to_string()),
                    ("ice-ufrag", Some(v)) => m.ice_ufrag = Some(v.to_string()),
                    ("ice-pwd", Some(v)) => m.ice_pwd = Some(v.to_string()),
                    ("candidate", Some(_)) => m.candidates.push(attr.to_string()),
                    ("end-of-candidates", None) => m.end_of_candidates = true,
                    _ => m.other.push(attr.to_string()),
                },
            }
        }
        Ok(frag)
    }

    /// Writes the fragment, CRLF line ends; appends to `out`.
    pub fn emit(&self, out: &mut String) {
        let mut line = |s: &str, v: &str| {
            out.push_str(s);
            out.push_str(v);
            out.push_str("\r\n");
        };
        if let Some(v) = &self.ice_options {
            line("a=ice-options:", v);
        }
        if let Some(v) = &self.ice_ufrag {
            line("a=ice-ufrag:", v);
        }
        if let Some(v) = &self.ice_pwd {
            line("a=ice-pwd:", v);
        }
        for o in &self.other {
            line("a=", o);
        }
        for m in &self.media {
            line("m=", &m.media);
            if let Some(v) = &m.mid {
                line("a=mid:", v);
            }
            if let Some(v) = &m.ice_ufrag {
                line("a=ice-ufrag:", v);
            }
            if let Some(v) = &m.ice_pwd {
                line("a=ice-pwd:", v);
            }
            for c in &m.candidates {
                line("a=", c);
            }
            for o in &m.other {
                line("a=", o);
            }
            if m.end_of_candidates {
                line("a=end-of-candidates", "");
            }
        }
    }

    /// The fragment as text.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.emit(&mut s);
        s
    }

    /// The ICE credentials it carries (session level first, then the first
    /// m-section's): a new pair means an ICE restart (RFC 8840 §4.4).
    pub fn credentials(&self) -> Option<(&str, &str)> {
        if let (Some(u), Some(p)) = (&self.ice_ufrag, &self.ice_pwd) {
            return Some((u, p));
        }
        self.media
            .iter()
            .find_map(|m| match (&m.ice_ufrag, &m.ice_pwd) {
                (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
                _ => None,
            })
    }

    /// The ufrag it carries, if any (with or without a password).
    pub fn ufrag(&self) -> Option<&str> {
        self.ice_ufrag
            .as_deref()
            .or_else(|| self.media.iter().find_map(|m| m.ice_ufrag.as_deref()))
    }

    /// Every candidate line, with the mid of its m-section.
    pub fn candidates(&self) -> impl Iterator<Item = (Option<&str>, &str)> {
        self.media.iter().flat_map(|m| {
            m.candidates
                .iter()
                .map(move |c| (m.mid.as_deref(), c.as_str()))
        })
    }

    /// Whether any m-section says `end-of-candidates`.
    pub fn end_of_candidates(&self) -> bool {
        self.media.iter().any(|m| m.end_of_candidates)
    }
}

/// The `ice-ufrag` of an SDP offer (session level or the first m-section),
/// read line by line: what a PATCH's fragment is compared with to tell an
/// ICE restart from trickle.
pub fn offer_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A trickle fragment in the shape of RFC 9725's example (§4.3.2).
    const TRICKLE: &str = "a=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        a=mid:0\r\n\
        a=ice-ufrag:EsAw\r\n\
        a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y\r\n\
        a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
        a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n\
        a=end-of-candidates\r\n";

    #[test]
    fn reads_a_trickle_fragment() {
        let f = SdpFrag::parse(TRICKLE.as_bytes()).expect("frag");
        assert_eq!(f.other, ["group:BUNDLE 0 1"]);
        assert_eq!(f.media.len(), 1);
        let m = &f.media[0];
        assert_eq!(m.media, "audio 9 UDP/TLS/RTP/SAVPF 111");
        assert_eq!(m.mid.as_deref(), Some("0"));
        assert_eq!(f.credentials(), Some(("EsAw", "bP+XJMM09aR8AiX1jdukzR6Y")));
        assert_eq!(f.candidates().count(), 2);
        assert!(f.end_of_candidates());
        assert_eq!(f.to_text(), TRICKLE);
        // LF only is read too.
        let lf = TRICKLE.replace("\r\n", "\n");
        assert_eq!(SdpFrag::parse(lf.as_bytes()), Ok(f));
    }

    #[test]
    fn refuses_what_is_not_a_fragment() {
        for (text, line) in [
            ("v=0\r\n", 1),
            ("a=mid:0\r\nhello\r\n", 2),
            ("a=\r\n", 1),
            ("m=\r\n", 1),
            ("a=x\rb\n", 1),
        ] {
            match SdpFrag::parse(text.as_bytes()) {
                Err(FragError::BadLine { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert_eq!(SdpFrag::parse(&[0xff]), Err(FragError::NotUtf8));
        assert!(matches!(
            SdpFrag::parse(&vec![b'a'; MAX_BYTES + 1]),
            Err(FragError::TooLong(_))
        ));
        let many = "m=audio 9 X 0\r\n".repeat(MAX_MEDIA + 1);
        assert_eq!(
            SdpFrag::parse(many.as_bytes()),
            Err(FragError::TooManyMedia)
        );
        assert_eq!(SdpFrag::parse(b""), Ok(SdpFrag::default()));
    }

    #[test]
    fn offer_ufrag_is_found() {
        let sdp = "v=0\r\nm=audio 9 X 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n";
        assert_eq!(offer_ufrag(sdp), Some("abcd"));
        assert_eq!(offer_ufrag("v=0\r\n"), None);
    }

    fn value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9+/ .:=-]{1,24}"
    }

    fn other() -> impl Strategy<Value = String> {
        "x-[a-z0-9 :]{0,16}"
    }

    fn media() -> impl Strategy<Value = FragMedia> {
        (
            "[a-z]{1,8} [0-9]{1,5} [A-Z/]{1,12} [0-9 ]{0,8}",
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::option::of(value()),
            proptest::collection::vec("candidate:[a-z0-9 .]{1,40}", 0..4),
            any::<bool>(),
            proptest::collection::vec(other(), 0..3),
        )
            .prop_map(
                |(media, mid, ice_ufrag, ice_pwd, candidates, end_of_candidates, other)| {
                    FragMedia {
                        media,
                        mid,
                        ice_ufrag,
                        ice_pwd,
                        candidates,
                        end_of_candidates,
                        other,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn round_trip(
            ice_options in proptest::option::of(value()),
            ice_ufrag in proptest::option::of(value()),
            ice_pwd in proptest::option::of(value()),
            other in proptest::collection::vec(other(), 0..3),
            media in proptest::collection::vec(media(), 0..4),
        ) {
            let f = SdpFrag { ice_options, ice_ufrag, ice_pwd, other, media };
            prop_assert_eq!(SdpFrag::parse(f.to_text().as_bytes()), Ok(f));
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SdpFrag::parse(&data);
        }
    }
}
