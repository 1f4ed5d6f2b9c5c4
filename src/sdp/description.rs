//! Whole session descriptions (RFC 8866 §5): the session part, time
//! descriptions, and media descriptions, each line parsed into a field.

use std::fmt;

use super::attribute::{
    Attribute, Direction, Extmap, Fingerprint, Fmtp, Group, RtcpFb, RtpMap, Setup, SsrcAttribute,
    SsrcGroup,
};
use super::error::Error;
use super::{MAX_ATTRIBUTES, MAX_LINE_LEN, MAX_LINES, MAX_LIST, MAX_MEDIA, MAX_SDP_LEN};
use crate::vocab::Candidate;

/// `o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`
/// (RFC 8866 §5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The user name (`-` when there is none).
    pub username: String,
    /// The session id (browsers write a random 63-bit number).
    pub session_id: u64,
    /// The version, incremented with every change (JSEP §5.2.2).
    pub session_version: u64,
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address (browsers write `127.0.0.1` or `0.0.0.0`).
    pub address: String,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

/// `c=<nettype> <addrtype> <connection-address>` (RFC 8866 §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// `IN`.
    pub net_type: String,
    /// `IP4` or `IP6`.
    pub addr_type: String,
    /// The address, with `/ttl` and `/count` as written.
    pub address: String,
}

impl Connection {
    /// `IN IP4 0.0.0.0`, what JSEP §5.2.1 writes before candidates are known.
    pub fn unspecified() -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "0.0.0.0".into(),
        }
    }
}

impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

/// `b=<bwtype>:<bandwidth>` (RFC 8866 §5.8): `AS`, `CT`, `TIAS` in kbit/s
/// (TIAS in bit/s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// The type, as written.
    pub kind: String,
    /// The value.
    pub value: u64,
}

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

/// A time description: `t=` with its `r=` and `z=` lines (RFC 8866 §5.9 to
/// §5.11). WebRTC always writes `t=0 0`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timing {
    /// Start time (NTP seconds; 0 = unbounded).
    pub start: u64,
    /// Stop time (0 = unbounded).
    pub stop: u64,
    /// `r=` lines, as written.
    pub repeats: Vec<String>,
    /// The `z=` line, as written.
    pub zone: Option<String>,
}

/// `m=<media> <port>[/<count>] <proto> <fmt> …` and what follows it up to
/// the next `m=` (RFC 8866 §5.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `application`, …
    pub media: String,
    /// The port; 0 rejects the section (RFC 3264 §6) unless it is
    /// `a=bundle-only` (RFC 8843 §6).
    pub port: u16,
    /// `/<number of ports>`, when written.
    pub port_count: Option<u16>,
    /// `UDP/TLS/RTP/SAVPF`, `UDP/DTLS/SCTP`, …
    pub protocol: String,
    /// The formats: RTP payload types, or `webrtc-datachannel`.
    pub formats: Vec<String>,
    /// `i=`.
    pub title: Option<String>,
    /// `c=` lines.
    pub connections: Vec<Connection>,
    /// `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// `k=` (obsolete; kept).
    pub key: Option<String>,
    /// `a=` lines in order.
    pub attributes: Vec<Attribute>,
}

/// A whole session description (RFC 8866 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `v=` (always 0).
    pub version: u32,
    /// `o=`.
    pub origin: Origin,
    /// `s=` (`-` in WebRTC).
    pub session_name: String,
    /// `i=`.
    pub information: Option<String>,
    /// `u=`.
    pub uri: Option<String>,
    /// `e=` lines.
    pub emails: Vec<String>,
    /// `p=` lines.
    pub phones: Vec<String>,
    /// `c=`.
    pub connection: Option<Connection>,
    /// `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// Time descriptions (at least one).
    pub timings: Vec<Timing>,
    /// `k=` (obsolete; kept).
    pub key: Option<String>,
    /// Session-level `a=` lines in order.
    pub attributes: Vec<Attribute>,
    /// The media descriptions in order.
    pub media: Vec<MediaDescription>,
}

/// Finders over a list of attributes, shared by the session and media levels.
macro_rules! attribute_finders {
    () => {
        /// The first attribute for which `f` returns a value.
        pub fn find<'a, T>(&'a self, f: impl FnMut(&'a Attribute) -> Option<T>) -> Option<T> {
            self.attributes.iter().find_map(f)
        }

        /// Whether an attribute equal to `a` is present (for flags such as
        /// [`Attribute::RtcpMux`]).
        pub fn has(&self, a: &Attribute) -> bool {
            self.attributes.contains(a)
        }

        /// `a=ice-ufrag`.
        pub fn ice_ufrag(&self) -> Option<&str> {
            self.find(|a| match a {
                Attribute::IceUfrag(v) => Some(v.as_str()),
                _ => None,
            })
        }

        /// `a=ice-pwd`.
        pub fn ice_pwd(&self) -> Option<&str> {
            self.find(|a| match a {
                Attribute::IcePwd(v) => Some(v.as_str()),
                _ => None,
            })
        }

        /// `a=ice-options` tokens (all lines).
        pub fn ice_options(&self) -> impl Iterator<Item = &str> {
            self.attributes
                .iter()
                .flat_map(|a| match a {
                    Attribute::IceOptions(v) => v.as_slice(),
                    _ => &[],
                })
                .map(String::as_str)
        }

        /// `a=fingerprint` lines.
        pub fn fingerprints(&self) -> impl Iterator<Item = &Fingerprint> {
            self.attributes.iter().filter_map(|a| match a {
                Attribute::Fingerprint(v) => Some(v),
                _ => None,
            })
        }

        /// `a=setup`.
        pub fn setup(&self) -> Option<Setup> {
            self.find(|a| match a {
                Attribute::Setup(v) => Some(*v),
                _ => None,
            })
        }

        /// `a=sendrecv` / `sendonly` / `recvonly` / `inactive`, if written.
        pub fn direction(&self) -> Option<Direction> {
            self.find(|a| match a {
                Attribute::Direction(v) => Some(*v),
                _ => None,
            })
        }

        /// `a=candidate` lines.
        pub fn candidates(&self) -> impl Iterator<Item = &Candidate> {
            self.attributes.iter().filter_map(|a| match a {
                Attribute::Candidate(v) => Some(v),
                _ => None,
            })
        }

        /// `a=extmap` lines.
        pub fn extmaps(&self) -> impl Iterator<Item = &Extmap> {
            self.attributes.iter().filter_map(|a| match a {
                Attribute::Extmap(v) => Some(v),
                _ => None,
            })
        }
    };
}

impl SessionDescription {
    attribute_finders!();

    /// `a=group` lines.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Group(v) => Some(v),
            _ => None,
        })
    }

    /// The first `a=group:BUNDLE` (RFC 8843 §7.1).
    pub fn bundle_group(&self) -> Option<&Group> {
        self.groups().find(|g| g.semantics == "BUNDLE")
    }

    /// The media section with `a=mid:<mid>`.
    pub fn media_by_mid(&self, mid: &str) -> Option<&MediaDescription> {
        self.media.iter().find(|m| m.mid() == Some(mid))
    }

    /// Parses a whole description. Lines end in CRLF or LF (RFC 8866 §5
    /// lets a parser accept a bare LF); the last line ending may be missing.
    pub fn parse(input: &[u8]) -> Result<SessionDescription, Error> {
        let _span = tracing::debug_span!("sdp", bytes = input.len()).entered();
        tracing::trace!(text = %String::from_utf8_lossy(input), "SDP to parse");
        let parsed = Parser::parse(input);
        match &parsed {
            Ok(d) => tracing::debug!(media = d.media.len(), "SDP parsed"),
            Err(e) => tracing::debug!(%e, "SDP refused"),
        }
        parsed
    }

    /// Parses a description given as text.
    pub fn parse_str(input: &str) -> Result<SessionDescription, Error> {
        Self::parse(input.as_bytes())
    }

    /// Appends the description to `out`, every line ending in CRLF.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(self.to_string().as_bytes());
        tracing::trace!(
            text = %String::from_utf8_lossy(&out[start..]),
            "SDP written"
        );
    }
}

impl MediaDescription {
    attribute_finders!();

    /// `a=mid`.
    pub fn mid(&self) -> Option<&str> {
        self.find(|a| match a {
            Attribute::Mid(v) => Some(v.as_str()),
            _ => None,
        })
    }

    /// Port 0 without `a=bundle-only`: the section is rejected or stopped
    /// (RFC 3264 §6, RFC 8843 §6).
    pub fn is_rejected(&self) -> bool {
        self.port == 0 && !self.has(&Attribute::BundleOnly)
    }

    /// `a=rtpmap` lines.
    pub fn rtpmaps(&self) -> impl Iterator<Item = &RtpMap> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::RtpMap(v) => Some(v),
            _ => None,
        })
    }

    /// The `a=rtpmap` of payload type `pt`.
    pub fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps().find(|r| r.payload_type == pt)
    }

    /// The `a=fmtp` of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&Fmtp> {
        self.find(|a| match a {
            Attribute::Fmtp(v) if v.payload_type == pt => Some(v),
            _ => None,
        })
    }

    /// The `a=rtcp-fb` lines that apply to `pt` (its own and `*`).
    pub fn rtcp_fbs(&self, pt: u8) -> impl Iterator<Item = &RtcpFb> {
        self.attributes.iter().filter_map(move |a| match a {
            Attribute::RtcpFb(v) if v.payload_type.is_none_or(|p| p == pt) => Some(v),
            _ => None,
        })
    }

    /// The formats that are RTP payload types, in order.
    pub fn payload_types(&self) -> impl Iterator<Item = u8> {
        self.formats.iter().filter_map(|f| {
            super::attribute::number(f, 3)
                .and_then(|n| u8::try_from(n).ok())
                .filter(|p| *p <= 127)
        })
    }

    /// `a=ssrc` lines.
    pub fn ssrc_attributes(&self) -> impl Iterator<Item = &SsrcAttribute> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Ssrc(v) => Some(v),
            _ => None,
        })
    }

    /// `a=ssrc-group` lines.
    pub fn ssrc_groups(&self) -> impl Iterator<Item = &SsrcGroup> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::SsrcGroup(v) => Some(v),
            _ => None,
        })
    }

    /// `a=sctp-port`.
    pub fn sctp_port(&self) -> Option<u16> {
        self.find(|a| match a {
            Attribute::SctpPort(v) => Some(*v),
            _ => None,
        })
    }

    /// `a=max-message-size`.
    pub fn max_message_size(&self) -> Option<u64> {
        self.find(|a| match a {
            Attribute::MaxMessageSize(v) => Some(*v),
            _ => None,
        })
    }
}

impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v={}\r\n", self.version)?;
        write!(f, "o={}\r\n", self.origin)?;
        write!(f, "s={}\r\n", self.session_name)?;
        if let Some(i) = &self.information {
            write!(f, "i={i}\r\n")?;
        }
        if let Some(u) = &self.uri {
            write!(f, "u={u}\r\n")?;
        }
        for e in &self.emails {
            write!(f, "e={e}\r\n")?;
        }
        for p in &self.phones {
            write!(f, "p={p}\r\n")?;
        }
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        for t in &self.timings {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
            for r in &t.repeats {
                write!(f, "r={r}\r\n")?;
            }
            if let Some(z) = &t.zone {
                write!(f, "z={z}\r\n")?;
            }
        }
        if let Some(k) = &self.key {
            write!(f, "k={k}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "{m}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.port_count {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.protocol)?;
        for fmt in &self.formats {
            write!(f, " {fmt}")?;
        }
        f.write_str("\r\n")?;
        if let Some(i) = &self.title {
            write!(f, "i={i}\r\n")?;
        }
        for c in &self.connections {
            write!(f, "c={c}\r\n")?;
        }
        for b in &self.bandwidths {
            write!(f, "b={b}\r\n")?;
        }
        if let Some(k) = &self.key {
            write!(f, "k={k}\r\n")?;
        }
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        Ok(())
    }
}

/// Where the parser is in RFC 8866 §5's order. Each line type may appear
/// only at or after its own position in the list; the position only moves
/// forward (except that a new `t=` or `m=` starts its block again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Pos {
    Start,
    V,
    O,
    S,
    I,
    U,
    E,
    P,
    C,
    B,
    T,
    R,
    Z,
    K,
    A,
    // In a media section.
    M,
    MI,
    MC,
    MB,
    MK,
    MA,
}

/// The line-by-line parser.
struct Parser {
    line: usize,
    pos: Pos,
}

/// Whitespace-separated tokens; a few more than [`MAX_LIST`] are kept so
/// that callers can tell a list that is too long.
fn split_ws(s: &str) -> Vec<&str> {
    s.split_ascii_whitespace().take(MAX_LIST + 4).collect()
}

impl Parser {
    fn parse(input: &[u8]) -> Result<SessionDescription, Error> {
        if input.len() > MAX_SDP_LEN {
            return Err(Error::TooLong(input.len()));
        }
        if input.is_empty() {
            return Err(Error::Empty);
        }
        let mut p = Parser {
            line: 0,
            pos: Pos::Start,
        };
        let mut sd = SessionDescription {
            version: 0,
            origin: Origin {
                username: String::new(),
                session_id: 0,
                session_version: 0,
                net_type: String::new(),
                addr_type: String::new(),
                address: String::new(),
            },
            session_name: String::new(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            timings: Vec::new(),
            key: None,
            attributes: Vec::new(),
            media: Vec::new(),
        };
        let mut rest = input;
        // A trailing line ending does not start an empty last line.
        while !rest.is_empty() {
            let (raw, next) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            rest = next;
            p.line += 1;
            if p.line > MAX_LINES {
                return Err(Error::TooMany {
                    line: p.line,
                    what: "lines",
                    max: MAX_LINES,
                });
            }
            let mut raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            // Liberal parse (see the module doc): whitespace and stray CRs
            // at the end of an `a=` line are not part of its value. Other
            // lines keep theirs (`s= ` is RFC 8866 §5.3's "no name").
            if raw.starts_with(b"a=") {
                while let [rest @ .., b' ' | b'\t' | b'\r'] = raw {
                    raw = rest;
                }
            }
            if raw.len() > MAX_LINE_LEN {
                return Err(Error::TooMany {
                    line: p.line,
                    what: "bytes in a line",
                    max: MAX_LINE_LEN,
                });
            }
            if raw.contains(&b'\r') || raw.contains(&0) {
                return Err(Error::BadText { line: p.line });
            }
            let line = std::str::from_utf8(raw).map_err(|_| Error::BadText { line: p.line })?;
            p.line_of(&mut sd, line)?;
        }
        p.finish(&sd)?;
        Ok(sd)
    }

    fn malformed(&self, expected: &'static str, found: &str) -> Error {
        Error::malformed(self.line, expected, found)
    }

    fn unexpected(&self, found: char, expected: &'static str) -> Error {
        Error::Unexpected {
            line: self.line,
            found,
            expected,
        }
    }

    /// Moves to `to` if the order allows it.
    fn advance(&mut self, to: Pos, found: char, repeatable: bool) -> Result<(), Error> {
        let ok = if repeatable {
            self.pos <= to
        } else {
            self.pos < to
        };
        if !ok {
            return Err(self.unexpected(found, self.expected()));
        }
        self.pos = to;
        Ok(())
    }

    /// What may come next, for error messages.
    fn expected(&self) -> &'static str {
        match self.pos {
            Pos::Start => "v=0",
            Pos::V => "o=",
            Pos::O => "s=",
            Pos::S | Pos::I | Pos::U | Pos::E | Pos::P | Pos::C | Pos::B => {
                "i=, u=, e=, p=, c=, b= or t= (RFC 8866 §5 order)"
            }
            Pos::T | Pos::R | Pos::Z | Pos::K | Pos::A => {
                "t=, r=, z=, k=, a= or m= (RFC 8866 §5 order)"
            }
            _ => "i=, c=, b=, k=, a= or m= (RFC 8866 §5 order)",
        }
    }

    fn line_of(&mut self, sd: &mut SessionDescription, line: &str) -> Result<(), Error> {
        let b = line.as_bytes();
        if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_lowercase() {
            return Err(self.malformed("a <letter>=<value> line", line));
        }
        let typ = char::from(b[0]);
        let value = &line[2..];
        // v=, o= and s= come first, in that order, and are required.
        let first = match self.pos {
            Pos::Start => Some('v'),
            Pos::V => Some('o'),
            Pos::O => Some('s'),
            _ => None,
        };
        if first.is_some_and(|f| f != typ) {
            return Err(self.unexpected(typ, self.expected()));
        }
        let in_media = self.pos >= Pos::M;
        match typ {
            'v' => {
                self.advance(Pos::V, typ, false)?;
                if value != "0" {
                    return Err(self.malformed("v=0", line));
                }
                sd.version = 0;
            }
            'o' => {
                self.advance(Pos::O, typ, false)?;
                let t = split_ws(value);
                let what = "o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>";
                if t.len() != 6 {
                    return Err(self.malformed(what, line));
                }
                let id =
                    super::attribute::number(t[1], 20).ok_or_else(|| self.malformed(what, line))?;
                let ver =
                    super::attribute::number(t[2], 20).ok_or_else(|| self.malformed(what, line))?;
                sd.origin = Origin {
                    username: t[0].to_string(),
                    session_id: id,
                    session_version: ver,
                    net_type: t[3].to_string(),
                    addr_type: t[4].to_string(),
                    address: t[5].to_string(),
                };
            }
            's' => {
                self.advance(Pos::S, typ, false)?;
                sd.session_name = value.to_string();
            }
            'i' if in_media => {
                self.advance(Pos::MI, typ, false)?;
                self.media(sd)?.title = Some(value.to_string());
            }
            'i' => {
                self.advance(Pos::I, typ, false)?;
                sd.information = Some(value.to_string());
            }
            'u' => {
                self.advance(Pos::U, typ, false)?;
                sd.uri = Some(value.to_string());
            }
            'e' => {
                self.advance(Pos::E, typ, true)?;
                self.cap(sd.emails.len(), MAX_LIST, "e= lines")?;
                sd.emails.push(value.to_string());
            }
            'p' => {
                self.advance(Pos::P, typ, true)?;
                self.cap(sd.phones.len(), MAX_LIST, "p= lines")?;
                sd.phones.push(value.to_string());
            }
            'c' => {
                let c = self.connection(value, line)?;
                if in_media {
                    self.advance(Pos::MC, typ, true)?;
                    let m = self.media(sd)?;
                    if m.connections.len() >= MAX_LIST {
                        return Err(self.too_many("c= lines", MAX_LIST));
                    }
                    m.connections.push(c);
                } else {
                    self.advance(Pos::C, typ, false)?;
                    sd.connection = Some(c);
                }
            }
            'b' => {
                let what = "b=<bwtype>:<bandwidth>";
                let (kind, v) = value
                    .split_once(':')
                    .ok_or_else(|| self.malformed(what, line))?;
                let v =
                    super::attribute::number(v, 20).ok_or_else(|| self.malformed(what, line))?;
                if kind.is_empty() || kind.bytes().any(|b| b.is_ascii_whitespace()) {
                    return Err(self.malformed(what, line));
                }
                let bw = Bandwidth {
                    kind: kind.to_string(),
                    value: v,
                };
                if in_media {
                    self.advance(Pos::MB, typ, true)?;
                    let m = self.media(sd)?;
                    if m.bandwidths.len() >= MAX_LIST {
                        return Err(self.too_many("b= lines", MAX_LIST));
                    }
                    m.bandwidths.push(bw);
                } else {
                    self.advance(Pos::B, typ, true)?;
                    self.cap(sd.bandwidths.len(), MAX_LIST, "b= lines")?;
                    sd.bandwidths.push(bw);
                }
            }
            't' => {
                // A new time description may follow a previous one's r=/z=.
                if in_media || !(self.pos < Pos::T || matches!(self.pos, Pos::T | Pos::R | Pos::Z))
                {
                    return Err(self.unexpected(typ, self.expected()));
                }
                self.pos = Pos::T;
                let what = "t=<start> <stop>";
                let t = split_ws(value);
                if t.len() != 2 {
                    return Err(self.malformed(what, line));
                }
                let start =
                    super::attribute::number(t[0], 20).ok_or_else(|| self.malformed(what, line))?;
                let stop =
                    super::attribute::number(t[1], 20).ok_or_else(|| self.malformed(what, line))?;
                self.cap(sd.timings.len(), MAX_LIST, "t= lines")?;
                sd.timings.push(Timing {
                    start,
                    stop,
                    ..Timing::default()
                });
            }
            'r' => {
                if !matches!(self.pos, Pos::T | Pos::R) {
                    return Err(self.unexpected(typ, self.expected()));
                }
                self.pos = Pos::R;
                let t = sd
                    .timings
                    .last_mut()
                    .ok_or_else(|| self.unexpected(typ, "t= before r="))?;
                if t.repeats.len() >= MAX_LIST {
                    return Err(self.too_many("r= lines", MAX_LIST));
                }
                t.repeats.push(value.to_string());
            }
            'z' => {
                if !matches!(self.pos, Pos::T | Pos::R) {
                    return Err(self.unexpected(typ, self.expected()));
                }
                self.pos = Pos::Z;
                let t = sd
                    .timings
                    .last_mut()
                    .ok_or_else(|| self.unexpected(typ, "t= before z="))?;
                t.zone = Some(value.to_string());
            }
            'k' if in_media => {
                self.advance(Pos::MK, typ, false)?;
                self.media(sd)?.key = Some(value.to_string());
            }
            'k' => {
                if self.pos < Pos::T {
                    return Err(self.unexpected(typ, self.expected()));
                }
                self.advance(Pos::K, typ, false)?;
                sd.key = Some(value.to_string());
            }
            'a' => {
                let a = self.attribute(value, line)?;
                // A skipped line still has to stand where an `a=` may.
                if in_media {
                    self.advance(Pos::MA, typ, true)?;
                    let m = self.media(sd)?;
                    if m.attributes.len() >= MAX_ATTRIBUTES {
                        return Err(self.too_many("attributes in a media section", MAX_ATTRIBUTES));
                    }
                    m.attributes.extend(a);
                } else {
                    if self.pos < Pos::T {
                        return Err(self.unexpected(typ, self.expected()));
                    }
                    self.advance(Pos::A, typ, true)?;
                    self.cap(sd.attributes.len(), MAX_ATTRIBUTES, "session attributes")?;
                    sd.attributes.extend(a);
                }
            }
            'm' => {
                if self.pos < Pos::T {
                    return Err(self.unexpected(typ, self.expected()));
                }
                if sd.media.len() >= MAX_MEDIA {
                    return Err(self.too_many("media sections", MAX_MEDIA));
                }
                self.pos = Pos::M;
                let m = self.media_line(value, line)?;
                sd.media.push(m);
            }
            _ => {
                return Err(self.malformed(
                    "a line type of RFC 8866 §5 (v o s i u e p c b t r z k a m)",
                    line,
                ));
            }
        }
        Ok(())
    }

    /// An `a=` line's attribute; `None` for a malformed optional one, which
    /// is skipped with a debug log ([`Attribute::is_mandatory`]).
    fn attribute(&self, value: &str, line: &str) -> Result<Option<Attribute>, Error> {
        match Attribute::parse(value) {
            Ok(a) => Ok(Some(a)),
            Err(expected) => {
                let name = value.split_once(':').map_or(value, |(n, _)| n);
                if Attribute::is_mandatory(name.trim_ascii()) {
                    return Err(self.malformed(expected, line));
                }
                tracing::debug!(
                    line = self.line,
                    found = %line.chars().take(80).collect::<String>(),
                    expected,
                    "SDP: malformed optional attribute skipped"
                );
                Ok(None)
            }
        }
    }

    fn cap(&self, len: usize, max: usize, what: &'static str) -> Result<(), Error> {
        if len >= max {
            Err(self.too_many(what, max))
        } else {
            Ok(())
        }
    }

    fn too_many(&self, what: &'static str, max: usize) -> Error {
        Error::TooMany {
            line: self.line,
            what,
            max,
        }
    }

    fn media<'a>(&self, sd: &'a mut SessionDescription) -> Result<&'a mut MediaDescription, Error> {
        let line = self.line;
        sd.media.last_mut().ok_or(Error::Unexpected {
            line,
            found: 'm',
            expected: "an m= line first",
        })
    }

    fn connection(&self, value: &str, line: &str) -> Result<Connection, Error> {
        let t = split_ws(value);
        if t.len() != 3 {
            return Err(self.malformed("c=<nettype> <addrtype> <address>", line));
        }
        Ok(Connection {
            net_type: t[0].to_string(),
            addr_type: t[1].to_string(),
            address: t[2].to_string(),
        })
    }

    fn media_line(&self, value: &str, line: &str) -> Result<MediaDescription, Error> {
        let what = "m=<media> <port>[/<count>] <proto> <fmt> …";
        let t = split_ws(value);
        if t.len() < 4 {
            return Err(self.malformed(what, line));
        }
        if t.len() > MAX_LIST + 3 {
            return Err(self.too_many("formats", MAX_LIST));
        }
        let (port, port_count) = match t[1].split_once('/') {
            Some((p, n)) => (p, Some(n)),
            None => (t[1], None),
        };
        let port = super::attribute::number(port, 5)
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| self.malformed(what, line))?;
        let port_count = match port_count {
            None => None,
            Some(n) => Some(
                super::attribute::number(n, 5)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or_else(|| self.malformed(what, line))?,
            ),
        };
        Ok(MediaDescription {
            media: t[0].to_string(),
            port,
            port_count,
            protocol: t[2].to_string(),
            formats: t[3..].iter().map(|s| s.to_string()).collect(),
            title: None,
            connections: Vec::new(),
            bandwidths: Vec::new(),
            key: None,
            attributes: Vec::new(),
        })
    }

    fn finish(&mut self, sd: &SessionDescription) -> Result<(), Error> {
        self.line += 1;
        if self.pos < Pos::T || sd.timings.is_empty() {
            return Err(self.unexpected('\0', self.expected()));
        }
        Ok(())
    }
}
