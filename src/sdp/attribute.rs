//! `a=` lines: the attributes WebRTC uses, typed; every other one kept as
//! written.
//!
//! Each typed value writes back the spelling browsers use (and, for the
//! fixtures in `tests/fixtures/`, byte for byte what they sent). A value
//! written by hand with unusual spacing or lower-case hex parses to the same
//! value and is written back in the canonical form.

use std::fmt;

use crate::vocab::Candidate;

use super::MAX_LIST;

/// The media direction (RFC 8866 §6.7, RFC 3264 §5.1), from the point of
/// view of the side that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    /// `a=sendrecv` (the default when none is given).
    #[default]
    SendRecv,
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=inactive`.
    Inactive,
}

impl Direction {
    /// The attribute name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn parse(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// A direction from whether the side sends and receives.
    pub fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// Whether the side that wrote it sends.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that wrote it receives.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The same direction seen from the other side (`sendonly` ↔ `recvonly`).
    pub fn reverse(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// Both at once: sends only if both send, receives only if both receive.
    pub fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `a=setup` (RFC 4145 §4, RFC 8842 §5): who opens the DTLS association.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    /// `active`: this side is the DTLS client.
    Active,
    /// `passive`: this side is the DTLS server.
    Passive,
    /// `actpass`: either; an offer says this (RFC 8842 §5.2).
    ActPass,
    /// `holdconn`: not now.
    HoldConn,
}

impl Setup {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::ActPass => "actpass",
            Setup::HoldConn => "holdconn",
        }
    }

    fn parse(s: &str) -> Option<Setup> {
        Some(match s {
            "active" => Setup::Active,
            "passive" => Setup::Passive,
            "actpass" => Setup::ActPass,
            "holdconn" => Setup::HoldConn,
            _ => return None,
        })
    }
}

/// `a=fingerprint` (RFC 8122 §5): the hash of the DTLS certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash function's name as written (`sha-256`; compared without
    /// regard to case).
    pub algorithm: String,
    /// The digest.
    pub value: Vec<u8>,
}

impl Fingerprint {
    /// The DTLS module's fingerprint (for certificate checks), if the hash
    /// function is one it knows.
    pub fn to_dtls(&self) -> Option<crate::vocab::Fingerprint> {
        crate::vocab::Fingerprint::parse(&self.to_string()).ok()
    }
}

impl From<&crate::vocab::Fingerprint> for Fingerprint {
    fn from(f: &crate::vocab::Fingerprint) -> Fingerprint {
        Fingerprint {
            algorithm: f.algorithm.name().to_string(),
            value: f.value.clone(),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.algorithm)?;
        for (i, b) in self.value.iter().enumerate() {
            write!(f, "{}{b:02X}", if i == 0 { ' ' } else { ':' })?;
        }
        Ok(())
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]` (RFC 8866 §6.6).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpMap {
    /// The payload type.
    pub payload_type: u8,
    /// The encoding name as written (`opus`, `VP8`, `H264`, `rtx`).
    pub encoding: String,
    /// The RTP clock rate.
    pub clock_rate: u32,
    /// The channel count, when written (`opus/48000/2`, `G722/8000/1`).
    pub channels: Option<u16>,
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{}",
            self.payload_type, self.encoding, self.clock_rate
        )?;
        if let Some(c) = self.channels {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// `a=fmtp:<pt> <parameters>` (RFC 8866 §6.15): format parameters, kept as
/// written; [`Fmtp::params`] reads the usual `key=value;…` form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fmtp {
    /// The payload type.
    pub payload_type: u8,
    /// The parameters as written (`minptime=10;useinbandfec=1`, `0-15`).
    pub params: String,
}

impl Fmtp {
    /// The `key=value` pairs of the `;`-separated list (spaces around each
    /// pair ignored); a pair without `=` gives an empty value.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        split_params(&self.params)
    }

    /// The value of parameter `key` (compared without regard to case).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    }
}

/// Splits `a=1;b=2` into pairs.
pub fn split_params(s: &str) -> impl Iterator<Item = (&str, &str)> {
    s.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => (p, ""),
        })
}

/// `a=rtcp-fb:<pt|*> <type> [<parameter>]` (RFC 4585 §4.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtcpFb {
    /// The payload type, or `None` for `*` (every format).
    pub payload_type: Option<u8>,
    /// The feedback type (`nack`, `ccm`, `goog-remb`, `transport-cc`).
    pub kind: String,
    /// The parameter, as written (`pli`, `fir`).
    pub param: Option<String>,
}

impl fmt::Display for RtcpFb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.payload_type {
            Some(pt) => write!(f, "{pt} {}", self.kind)?,
            None => write!(f, "* {}", self.kind)?,
        }
        if let Some(p) = &self.param {
            write!(f, " {p}")?;
        }
        Ok(())
    }
}

/// `a=extmap:<id>[/<direction>] <uri> [<attributes>]` (RFC 8285 §8): an RTP
/// header extension and its local id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Extmap {
    /// The id (1..=14 one-byte, up to 255 with two-byte headers).
    pub id: u16,
    /// The direction, when written.
    pub direction: Option<Direction>,
    /// The extension's URI.
    pub uri: String,
    /// Extension attributes, as written.
    pub attributes: Option<String>,
}

impl fmt::Display for Extmap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id)?;
        if let Some(d) = self.direction {
            write!(f, "/{d}")?;
        }
        write!(f, " {}", self.uri)?;
        if let Some(a) = &self.attributes {
            write!(f, " {a}")?;
        }
        Ok(())
    }
}

/// `a=msid:<stream id> [<track id>]` (RFC 8830 §2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Msid {
    /// The MediaStream id (`-` for none).
    pub stream: String,
    /// The track id ("appdata"), when written.
    pub track: Option<String>,
}

impl fmt::Display for Msid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.stream)?;
        if let Some(t) = &self.track {
            write!(f, " {t}")?;
        }
        Ok(())
    }
}

/// `a=msid-semantic:` (a draft of RFC 8830, still sent by browsers):
/// `WMS` and the stream ids (or `*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MsidSemantic {
    /// Whether a space follows the colon (Chromium writes `msid-semantic: WMS`).
    pub leading_space: bool,
    /// The semantic token (`WMS`).
    pub semantic: String,
    /// The stream ids, or `*`.
    pub identifiers: Vec<String>,
}

impl fmt::Display for MsidSemantic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.leading_space {
            f.write_str(" ")?;
        }
        f.write_str(&self.semantic)?;
        for i in &self.identifiers {
            write!(f, " {i}")?;
        }
        Ok(())
    }
}

/// `a=ssrc:<ssrc> <attribute>[:<value>]` (RFC 5576 §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SsrcAttribute {
    /// The SSRC.
    pub ssrc: u32,
    /// The source attribute's name (`cname`, `msid`).
    pub name: String,
    /// Its value (after the `:`), as written.
    pub value: Option<String>,
}

impl fmt::Display for SsrcAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.ssrc, self.name)?;
        if let Some(v) = &self.value {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}

/// `a=ssrc-group:<semantics> <ssrc>…` (RFC 5576 §4.2): `FID` pairs a media
/// SSRC with its RTX SSRC.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SsrcGroup {
    /// `FID`, `SIM`, `FEC-FR`, …
    pub semantics: String,
    /// The SSRCs in order (for `FID`: media, then repair).
    pub ssrcs: Vec<u32>,
}

impl fmt::Display for SsrcGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.semantics)?;
        for s in &self.ssrcs {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

/// `a=group:<semantics> <mid>…` (RFC 5888 §5): `BUNDLE` (RFC 8843), `LS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    /// `BUNDLE`, `LS`, …
    pub semantics: String,
    /// The media ids, in order (for `BUNDLE` the first is the tagged one).
    pub mids: Vec<String>,
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.semantics)?;
        for m in &self.mids {
            write!(f, " {m}")?;
        }
        Ok(())
    }
}

/// `a=rtcp:<port> [IN IP4 <address>]` (RFC 3605 §2.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rtcp {
    /// The RTCP port.
    pub port: u16,
    /// `IN IP4 0.0.0.0`: network type, address type, address.
    pub address: Option<(String, String, String)>,
}

impl fmt::Display for Rtcp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.port)?;
        if let Some((n, t, a)) = &self.address {
            write!(f, " {n} {t} {a}")?;
        }
        Ok(())
    }
}

/// `send` or `recv` in `a=rid` and `a=simulcast` (RFC 8851, 8853).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RidDirection {
    /// `send`.
    Send,
    /// `recv`.
    Recv,
}

impl RidDirection {
    fn parse(s: &str) -> Option<RidDirection> {
        match s {
            "send" => Some(RidDirection::Send),
            "recv" => Some(RidDirection::Recv),
            _ => None,
        }
    }

    /// The token.
    pub fn as_str(self) -> &'static str {
        match self {
            RidDirection::Send => "send",
            RidDirection::Recv => "recv",
        }
    }
}

/// `a=rid:<id> <send|recv> [<restrictions>]` (RFC 8851 §10).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Rid {
    /// The RTP stream id.
    pub id: String,
    /// `send` or `recv`.
    pub direction: RidDirection,
    /// `pt=…;max-width=…`, as written.
    pub restrictions: Option<String>,
}

impl fmt::Display for Rid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.id, self.direction.as_str())?;
        if let Some(r) = &self.restrictions {
            write!(f, " {r}")?;
        }
        Ok(())
    }
}

/// One rid in a simulcast list; `~` marks it paused (RFC 8853 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SimulcastId {
    /// The rid.
    pub rid: String,
    /// Written with a leading `~`.
    pub paused: bool,
}

/// `a=simulcast:send 1;2,3 recv 4` (RFC 8853 §5.1): per direction, a list of
/// streams, each a list of alternative rids.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Simulcast {
    /// The directions in the order written, each with its streams.
    pub streams: Vec<(RidDirection, Vec<Vec<SimulcastId>>)>,
}

impl fmt::Display for Simulcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (dir, list)) in self.streams.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{} ", dir.as_str())?;
            for (j, alts) in list.iter().enumerate() {
                if j > 0 {
                    f.write_str(";")?;
                }
                for (k, id) in alts.iter().enumerate() {
                    if k > 0 {
                        f.write_str(",")?;
                    }
                    if id.paused {
                        f.write_str("~")?;
                    }
                    f.write_str(&id.rid)?;
                }
            }
        }
        Ok(())
    }
}

/// One `a=` line.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// `a=ice-ufrag` (RFC 8839 §5.4).
    IceUfrag(String),
    /// `a=ice-pwd` (RFC 8839 §5.4).
    IcePwd(String),
    /// `a=ice-options:trickle …` (RFC 8839 §5.6).
    IceOptions(Vec<String>),
    /// `a=ice-lite` (RFC 8839 §5.3).
    IceLite,
    /// `a=candidate` (RFC 8839 §5.1), parsed by [`Candidate`].
    Candidate(Candidate),
    /// `a=end-of-candidates` (RFC 8840 §8.2).
    EndOfCandidates,
    /// `a=fingerprint` (RFC 8122 §5).
    Fingerprint(Fingerprint),
    /// `a=setup` (RFC 4145 §4).
    Setup(Setup),
    /// `a=mid` (RFC 5888 §4).
    Mid(String),
    /// `a=group` (RFC 5888 §5).
    Group(Group),
    /// `a=bundle-only` (RFC 8843 §6).
    BundleOnly,
    /// `a=rtcp` (RFC 3605).
    Rtcp(Rtcp),
    /// `a=rtcp-mux` (RFC 5761 §5.1.1).
    RtcpMux,
    /// `a=rtcp-mux-only` (RFC 8858).
    RtcpMuxOnly,
    /// `a=rtcp-rsize` (RFC 5506 §5).
    RtcpRsize,
    /// `a=rtpmap`.
    RtpMap(RtpMap),
    /// `a=fmtp`.
    Fmtp(Fmtp),
    /// `a=rtcp-fb`.
    RtcpFb(RtcpFb),
    /// `a=extmap`.
    Extmap(Extmap),
    /// `a=extmap-allow-mixed` (RFC 8285 §6).
    ExtmapAllowMixed,
    /// `a=msid`.
    Msid(Msid),
    /// `a=msid-semantic`.
    MsidSemantic(MsidSemantic),
    /// `a=ssrc`.
    Ssrc(SsrcAttribute),
    /// `a=ssrc-group`.
    SsrcGroup(SsrcGroup),
    /// `a=rid`.
    Rid(Rid),
    /// `a=simulcast`.
    Simulcast(Simulcast),
    /// `a=sctp-port` (RFC 8841 §5).
    SctpPort(u16),
    /// `a=max-message-size` (RFC 8841 §6).
    MaxMessageSize(u64),
    /// `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`.
    Direction(Direction),
    /// Any other attribute, kept as written: `a=<name>[:<value>]`.
    Other {
        /// The name.
        name: String,
        /// The value after the first `:`, if any.
        value: Option<String>,
    },
}

/// Tokens separated by whitespace, at most [`MAX_LIST`] of them.
fn tokens(s: &str) -> Option<Vec<String>> {
    let v: Vec<String> = s
        .split_ascii_whitespace()
        .take(MAX_LIST + 1)
        .map(str::to_string)
        .collect();
    (v.len() <= MAX_LIST).then_some(v)
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace())
}

/// 1 to `max` ASCII digits.
pub(crate) fn number(s: &str, max_digits: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max_digits || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn payload_type(s: &str) -> Option<u8> {
    number(s, 3)
        .and_then(|n| u8::try_from(n).ok())
        .filter(|p| *p <= 127)
}

fn hex_fingerprint(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for pair in s.split(':') {
        if pair.len() != 2 || out.len() >= 64 {
            return None;
        }
        out.push(u8::from_str_radix(pair, 16).ok()?);
    }
    Some(out)
}

impl Attribute {
    /// Whether a malformed `a=<name>` line refuses the whole description
    /// (true) or is skipped (false). See the [module doc](super) for the
    /// rule; in short, what JSEP (RFC 8829 §5.8) stores and acts on for the
    /// transport, its security, and what the media section is refuses the
    /// description, so that an ambiguous line is never read two ways:
    ///
    /// - `ice-ufrag`, `ice-pwd` (RFC 8839 §5.4) and `ice-lite` (§5.3: it
    ///   changes who controls ICE);
    /// - `fingerprint` (RFC 8122 §5: the DTLS certificate check) and
    ///   `setup` (RFC 8842 §5: who is the DTLS client);
    /// - `mid`, `group` (RFC 5888) and `bundle-only` (RFC 8843 §6): which
    ///   m-lines share a transport;
    /// - `rtcp-mux`, `rtcp-mux-only` (RFC 5761, 8858: required here);
    /// - `rtpmap` (RFC 8866 §6.6: what a dynamic payload type is);
    /// - `sctp-port`, `max-message-size` (RFC 8841 §5, §6);
    /// - the four directions (RFC 3264 §5.1: skipped, one would read as
    ///   `sendrecv`).
    ///
    /// Every other attribute (`candidate`, `end-of-candidates`,
    /// `ice-options`, `rtcp`, `rtcp-rsize`, `fmtp`, `rtcp-fb`, `extmap`,
    /// `extmap-allow-mixed`, `msid`, `msid-semantic`, `ssrc`, `ssrc-group`,
    /// `rid`, `simulcast`, and names we do not know) is optional: without it
    /// the description still says everything needed to connect, and at worst
    /// a feature is not negotiated.
    pub fn is_mandatory(name: &str) -> bool {
        matches!(
            name,
            "ice-ufrag"
                | "ice-pwd"
                | "ice-lite"
                | "fingerprint"
                | "setup"
                | "mid"
                | "group"
                | "bundle-only"
                | "rtcp-mux"
                | "rtcp-mux-only"
                | "rtpmap"
                | "sctp-port"
                | "max-message-size"
                | "sendrecv"
                | "sendonly"
                | "recvonly"
                | "inactive"
        )
    }

    /// Parses the part after `a=`. On error, returns what was expected.
    pub fn parse(line: &str) -> Result<Attribute, &'static str> {
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (line, None),
        };
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err("an attribute name");
        }
        // Attributes that are flags take no value.
        let flag = |a: Attribute, what: &'static str| match value {
            None => Ok(a),
            Some(_) => Err(what),
        };
        // The others need one.
        let need = |what: &'static str| value.ok_or(what);
        Ok(match name {
            "ice-ufrag" => {
                let v = need("ice-ufrag:<ufrag>")?;
                if !is_token(v) {
                    return Err("ice-ufrag:<ufrag>");
                }
                Attribute::IceUfrag(v.to_string())
            }
            "ice-pwd" => {
                let v = need("ice-pwd:<password>")?;
                if !is_token(v) {
                    return Err("ice-pwd:<password>");
                }
                Attribute::IcePwd(v.to_string())
            }
            "ice-options" => {
                let v = tokens(need("ice-options:<option> …")?)
                    .ok_or("ice-options with fewer options")?;
                if v.is_empty() {
                    return Err("ice-options:<option> …");
                }
                Attribute::IceOptions(v)
            }
            "ice-lite" => flag(Attribute::IceLite, "ice-lite without a value")?,
            "candidate" => Attribute::Candidate(
                Candidate::parse(line).map_err(|_| "a candidate (RFC 8839 §5.1)")?,
            ),
            "end-of-candidates" => flag(
                Attribute::EndOfCandidates,
                "end-of-candidates without a value",
            )?,
            "fingerprint" => {
                let what = "fingerprint:<hash> <XX:XX:…>";
                let (alg, hex) = need(what)?.split_once(' ').ok_or(what)?;
                if !is_token(alg) {
                    return Err(what);
                }
                Attribute::Fingerprint(Fingerprint {
                    algorithm: alg.to_string(),
                    value: hex_fingerprint(hex.trim()).ok_or(what)?,
                })
            }
            "setup" => Attribute::Setup(
                Setup::parse(need("setup:<role>")?)
                    .ok_or("setup:active|passive|actpass|holdconn")?,
            ),
            "mid" => {
                let v = need("mid:<id>")?;
                if !is_token(v) {
                    return Err("mid:<id>");
                }
                Attribute::Mid(v.to_string())
            }
            "group" => {
                let what = "group:<semantics> <mid> …";
                let mut t = tokens(need(what)?).ok_or("a group with fewer mids")?;
                if t.is_empty() {
                    return Err(what);
                }
                let semantics = t.remove(0);
                Attribute::Group(Group { semantics, mids: t })
            }
            "bundle-only" => flag(Attribute::BundleOnly, "bundle-only without a value")?,
            "rtcp" => {
                let what = "rtcp:<port> [IN IP4 <address>]";
                let t = tokens(need(what)?).ok_or(what)?;
                let port = t
                    .first()
                    .and_then(|p| number(p, 5))
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or(what)?;
                let address = match t.len() {
                    1 => None,
                    4 => Some((t[1].clone(), t[2].clone(), t[3].clone())),
                    _ => return Err(what),
                };
                Attribute::Rtcp(Rtcp { port, address })
            }
            "rtcp-mux" => flag(Attribute::RtcpMux, "rtcp-mux without a value")?,
            "rtcp-mux-only" => flag(Attribute::RtcpMuxOnly, "rtcp-mux-only without a value")?,
            "rtcp-rsize" => flag(Attribute::RtcpRsize, "rtcp-rsize without a value")?,
            "rtpmap" => {
                let what = "rtpmap:<payload type> <encoding>/<clock rate>[/<channels>]";
                let (pt, enc) = need(what)?.split_once(' ').ok_or(what)?;
                let payload_type = payload_type(pt).ok_or(what)?;
                let mut parts = enc.split('/');
                let encoding = parts.next().filter(|e| is_token(e)).ok_or(what)?;
                let clock_rate = parts
                    .next()
                    .and_then(|c| number(c, 10))
                    .and_then(|c| u32::try_from(c).ok())
                    .ok_or(what)?;
                let channels = match parts.next() {
                    None => None,
                    Some(c) => Some(
                        number(c, 5)
                            .and_then(|c| u16::try_from(c).ok())
                            .ok_or(what)?,
                    ),
                };
                if parts.next().is_some() {
                    return Err(what);
                }
                Attribute::RtpMap(RtpMap {
                    payload_type,
                    encoding: encoding.to_string(),
                    clock_rate,
                    channels,
                })
            }
            "fmtp" => {
                let what = "fmtp:<payload type> <parameters>";
                let (pt, params) = need(what)?.split_once(' ').ok_or(what)?;
                Attribute::Fmtp(Fmtp {
                    payload_type: payload_type(pt).ok_or(what)?,
                    params: params.to_string(),
                })
            }
            "rtcp-fb" => {
                let what = "rtcp-fb:<payload type|*> <type> [<parameter>]";
                let (pt, rest) = need(what)?.split_once(' ').ok_or(what)?;
                let payload_type = match pt {
                    "*" => None,
                    _ => Some(payload_type(pt).ok_or(what)?),
                };
                let (kind, param) = match rest.split_once(' ') {
                    Some((k, p)) => (k, Some(p)),
                    None => (rest, None),
                };
                if !is_token(kind) || param.is_some_and(str::is_empty) {
                    return Err(what);
                }
                Attribute::RtcpFb(RtcpFb {
                    payload_type,
                    kind: kind.to_string(),
                    param: param.map(str::to_string),
                })
            }
            "extmap" => {
                let what = "extmap:<id>[/<direction>] <uri> [<attributes>]";
                let (head, rest) = need(what)?.split_once(' ').ok_or(what)?;
                let (id, direction) = match head.split_once('/') {
                    Some((id, d)) => (id, Some(Direction::parse(d).ok_or(what)?)),
                    None => (head, None),
                };
                let id = number(id, 5)
                    .and_then(|i| u16::try_from(i).ok())
                    .filter(|i| *i > 0)
                    .ok_or(what)?;
                let (uri, attributes) = match rest.split_once(' ') {
                    Some((u, a)) => (u, Some(a)),
                    None => (rest, None),
                };
                if !is_token(uri) || attributes.is_some_and(str::is_empty) {
                    return Err(what);
                }
                Attribute::Extmap(Extmap {
                    id,
                    direction,
                    uri: uri.to_string(),
                    attributes: attributes.map(str::to_string),
                })
            }
            "extmap-allow-mixed" => flag(
                Attribute::ExtmapAllowMixed,
                "extmap-allow-mixed without a value",
            )?,
            "msid" => {
                let what = "msid:<stream id> [<track id>]";
                let v = need(what)?;
                let (stream, track) = match v.split_once(' ') {
                    Some((s, t)) => (s, Some(t)),
                    None => (v, None),
                };
                if !is_token(stream) || track.is_some_and(|t| !is_token(t)) {
                    return Err(what);
                }
                Attribute::Msid(Msid {
                    stream: stream.to_string(),
                    track: track.map(str::to_string),
                })
            }
            "msid-semantic" => {
                let what = "msid-semantic:<semantic> [<stream id> …]";
                let v = need(what)?;
                let leading_space = v.starts_with(' ');
                let mut t = tokens(v).ok_or(what)?;
                if t.is_empty() {
                    return Err(what);
                }
                let semantic = t.remove(0);
                Attribute::MsidSemantic(MsidSemantic {
                    leading_space,
                    semantic,
                    identifiers: t,
                })
            }
            "ssrc" => {
                let what = "ssrc:<ssrc> <attribute>[:<value>]";
                let (ssrc, rest) = need(what)?.split_once(' ').ok_or(what)?;
                let ssrc = number(ssrc, 10)
                    .and_then(|s| u32::try_from(s).ok())
                    .ok_or(what)?;
                let (name, value) = match rest.split_once(':') {
                    Some((n, v)) => (n, Some(v)),
                    None => (rest, None),
                };
                if !is_token(name) {
                    return Err(what);
                }
                Attribute::Ssrc(SsrcAttribute {
                    ssrc,
                    name: name.to_string(),
                    value: value.map(str::to_string),
                })
            }
            "ssrc-group" => {
                let what = "ssrc-group:<semantics> <ssrc> …";
                let mut t = tokens(need(what)?).ok_or(what)?;
                if t.is_empty() {
                    return Err(what);
                }
                let semantics = t.remove(0);
                let ssrcs = t
                    .iter()
                    .map(|s| number(s, 10).and_then(|s| u32::try_from(s).ok()))
                    .collect::<Option<Vec<u32>>>()
                    .ok_or(what)?;
                Attribute::SsrcGroup(SsrcGroup { semantics, ssrcs })
            }
            "rid" => {
                let what = "rid:<id> send|recv [<restrictions>]";
                let v = need(what)?;
                let mut it = v.splitn(3, ' ');
                let id = it.next().filter(|i| is_token(i)).ok_or(what)?;
                let direction = it.next().and_then(RidDirection::parse).ok_or(what)?;
                let restrictions = it.next();
                if restrictions.is_some_and(|r| !is_token(r)) {
                    return Err(what);
                }
                Attribute::Rid(Rid {
                    id: id.to_string(),
                    direction,
                    restrictions: restrictions.map(str::to_string),
                })
            }
            "simulcast" => {
                let what = "simulcast:send|recv <rid>[,<rid>][;…] …";
                let t = tokens(need(what)?).ok_or(what)?;
                if t.is_empty() || t.len() % 2 != 0 || t.len() > 4 {
                    return Err(what);
                }
                let mut streams = Vec::new();
                for pair in t.chunks(2) {
                    let dir = RidDirection::parse(&pair[0]).ok_or(what)?;
                    let mut list = Vec::new();
                    for alts in pair[1].split(';') {
                        let mut ids = Vec::new();
                        for id in alts.split(',') {
                            let (paused, rid) = match id.strip_prefix('~') {
                                Some(r) => (true, r),
                                None => (false, id),
                            };
                            if rid.is_empty() || rid.contains('~') {
                                return Err(what);
                            }
                            ids.push(SimulcastId {
                                rid: rid.to_string(),
                                paused,
                            });
                        }
                        list.push(ids);
                    }
                    streams.push((dir, list));
                }
                Attribute::Simulcast(Simulcast { streams })
            }
            "sctp-port" => Attribute::SctpPort(
                number(need("sctp-port:<port>")?, 5)
                    .and_then(|p| u16::try_from(p).ok())
                    .ok_or("sctp-port:<port>")?,
            ),
            "max-message-size" => Attribute::MaxMessageSize(
                number(need("max-message-size:<bytes>")?, 20).ok_or("max-message-size:<bytes>")?,
            ),
            "sendrecv" | "sendonly" | "recvonly" | "inactive" => {
                // The match arm names exactly the four directions.
                let d = Direction::parse(name).unwrap_or_default();
                flag(Attribute::Direction(d), "a direction without a value")?
            }
            _ => Attribute::Other {
                name: name.to_string(),
                value: value.map(str::to_string),
            },
        })
    }

    /// The attribute's name (the part before `:`).
    pub fn name(&self) -> &str {
        match self {
            Attribute::IceUfrag(_) => "ice-ufrag",
            Attribute::IcePwd(_) => "ice-pwd",
            Attribute::IceOptions(_) => "ice-options",
            Attribute::IceLite => "ice-lite",
            Attribute::Candidate(_) => "candidate",
            Attribute::EndOfCandidates => "end-of-candidates",
            Attribute::Fingerprint(_) => "fingerprint",
            Attribute::Setup(_) => "setup",
            Attribute::Mid(_) => "mid",
            Attribute::Group(_) => "group",
            Attribute::BundleOnly => "bundle-only",
            Attribute::Rtcp(_) => "rtcp",
            Attribute::RtcpMux => "rtcp-mux",
            Attribute::RtcpMuxOnly => "rtcp-mux-only",
            Attribute::RtcpRsize => "rtcp-rsize",
            Attribute::RtpMap(_) => "rtpmap",
            Attribute::Fmtp(_) => "fmtp",
            Attribute::RtcpFb(_) => "rtcp-fb",
            Attribute::Extmap(_) => "extmap",
            Attribute::ExtmapAllowMixed => "extmap-allow-mixed",
            Attribute::Msid(_) => "msid",
            Attribute::MsidSemantic(_) => "msid-semantic",
            Attribute::Ssrc(_) => "ssrc",
            Attribute::SsrcGroup(_) => "ssrc-group",
            Attribute::Rid(_) => "rid",
            Attribute::Simulcast(_) => "simulcast",
            Attribute::SctpPort(_) => "sctp-port",
            Attribute::MaxMessageSize(_) => "max-message-size",
            Attribute::Direction(d) => d.as_str(),
            Attribute::Other { name, .. } => name,
        }
    }
}

/// Writes the part after `a=` (no line ending).
impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The candidate writes its own `candidate:` prefix.
            Attribute::Candidate(c) => return write!(f, "{c}"),
            Attribute::Other { name, value } => {
                f.write_str(name)?;
                if let Some(v) = value {
                    write!(f, ":{v}")?;
                }
                return Ok(());
            }
            _ => {}
        }
        f.write_str(self.name())?;
        match self {
            Attribute::IceUfrag(v) | Attribute::IcePwd(v) | Attribute::Mid(v) => {
                write!(f, ":{v}")
            }
            Attribute::IceOptions(v) => write!(f, ":{}", v.join(" ")),
            Attribute::Fingerprint(v) => write!(f, ":{v}"),
            Attribute::Setup(s) => write!(f, ":{}", s.as_str()),
            Attribute::Group(v) => write!(f, ":{v}"),
            Attribute::Rtcp(v) => write!(f, ":{v}"),
            Attribute::RtpMap(v) => write!(f, ":{v}"),
            Attribute::Fmtp(v) => write!(f, ":{} {}", v.payload_type, v.params),
            Attribute::RtcpFb(v) => write!(f, ":{v}"),
            Attribute::Extmap(v) => write!(f, ":{v}"),
            Attribute::Msid(v) => write!(f, ":{v}"),
            Attribute::MsidSemantic(v) => write!(f, ":{v}"),
            Attribute::Ssrc(v) => write!(f, ":{v}"),
            Attribute::SsrcGroup(v) => write!(f, ":{v}"),
            Attribute::Rid(v) => write!(f, ":{v}"),
            Attribute::Simulcast(v) => write!(f, ":{v}"),
            Attribute::SctpPort(p) => write!(f, ":{p}"),
            Attribute::MaxMessageSize(m) => write!(f, ":{m}"),
            _ => Ok(()),
        }
    }
}
