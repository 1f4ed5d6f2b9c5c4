//! The `candidate:` attribute (RFC 8839 §5.1), candidate priorities
//! (RFC 8445 §5.1.2) and foundations (RFC 8445 §5.1.1.3).
//!
//! ```text
//! candidate:3178603626 1 udp 2122260223 192.0.2.7 41520 typ srflx raddr 10.0.0.2 rport 5000 generation 0 network-id 1 network-cost 50
//!           └foundation┘ │  │   └priority┘ └address┘ └port┘ └type┘ └related address/port────┘ └extensions, kept in order──────────┘
//!                component  transport
//! ```
//!
//! Parsing keeps every token's spelling (`UDP` or `udp`, the extension order,
//! unknown extensions), so a browser's line written back is byte for byte the
//! same. A host address that is not an IP (an mDNS `….local` name) is kept as a
//! name; the agent cannot send to it and skips it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// The most bytes a `candidate:` attribute may have (a browser's is < 200).
pub const MAX_CANDIDATE_LEN: usize = 1024;
/// The most extension name/value pairs kept from one line.
pub const MAX_EXTENSIONS: usize = 16;

/// RFC 8445 §5.1.2.2 recommended type preferences.
pub mod type_preference {
    /// Host candidates.
    pub const HOST: u32 = 126;
    /// Peer-reflexive candidates.
    pub const PEER_REFLEXIVE: u32 = 110;
    /// Server-reflexive candidates.
    pub const SERVER_REFLEXIVE: u32 = 100;
    /// Relayed candidates.
    pub const RELAYED: u32 = 0;
}

/// The candidate type (RFC 8445 §5.1.1, `typ` in RFC 8839 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateKind {
    /// An address of a local interface.
    Host,
    /// The address a NAT gave us, learned from a STUN server.
    ServerReflexive,
    /// The address a NAT gave us, learned from a connectivity check.
    PeerReflexive,
    /// An address on a TURN server.
    Relayed,
}

impl CandidateKind {
    /// The SDP token: `host`, `srflx`, `prflx` or `relay`.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateKind::Host => "host",
            CandidateKind::ServerReflexive => "srflx",
            CandidateKind::PeerReflexive => "prflx",
            CandidateKind::Relayed => "relay",
        }
    }

    /// RFC 8445 §5.1.2.2: the recommended type preference.
    pub fn type_preference(self) -> u32 {
        match self {
            CandidateKind::Host => type_preference::HOST,
            CandidateKind::PeerReflexive => type_preference::PEER_REFLEXIVE,
            CandidateKind::ServerReflexive => type_preference::SERVER_REFLEXIVE,
            CandidateKind::Relayed => type_preference::RELAYED,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "host" => CandidateKind::Host,
            "srflx" => CandidateKind::ServerReflexive,
            "prflx" => CandidateKind::PeerReflexive,
            "relay" => CandidateKind::Relayed,
            _ => return None,
        })
    }
}

impl fmt::Display for CandidateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 8445 §5.1.2.1: `priority = 2^24 × type preference + 2^8 × local
/// preference + (256 − component id)`.
pub fn priority(type_preference: u32, local_preference: u16, component: u16) -> u32 {
    let tp = type_preference.min(126);
    let c = u32::from(component.clamp(1, 256));
    (tp << 24) | (u32::from(local_preference) << 8) | (256 - c)
}

/// RFC 8445 §5.1.1.3: candidates share a foundation when they have the same
/// type, base IP, STUN/TURN server and transport. The foundation is a short
/// token (`ice-char`s) derived from those (FNV-1a, written in decimal as
/// Chromium does).
pub fn foundation(
    kind: CandidateKind,
    base: IpAddr,
    server: Option<SocketAddr>,
    transport: &str,
) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    eat(kind.as_str().as_bytes());
    eat(base.to_string().as_bytes());
    if let Some(s) = server {
        eat(s.to_string().as_bytes());
    }
    eat(transport.to_ascii_lowercase().as_bytes());
    h.to_string()
}

/// A connection address: an IP, or a name (an mDNS `.local` host name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A host name, kept as written.
    Name(String),
}

impl Address {
    /// The IP, if it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Address::Ip(ip) => Some(*ip),
            Address::Name(_) => None,
        }
    }

    fn parse(s: &str) -> Address {
        // An IP written in a non-canonical form (e.g. `::0:1`) is kept as a
        // name so that the line is written back exactly as received.
        match s.parse::<IpAddr>() {
            Ok(ip) if ip.to_string() == s => Address::Ip(ip),
            _ => Address::Name(s.to_string()),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "{ip}"),
            Address::Name(n) => f.write_str(n),
        }
    }
}

/// Why a `candidate:` attribute did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CandidateError {
    /// The input is longer than [`MAX_CANDIDATE_LEN`].
    TooLong(usize),
    /// The input is not UTF-8.
    NotUtf8,
    /// It does not start with `candidate:`.
    MissingPrefix,
    /// A required field is missing.
    Missing(&'static str),
    /// A field is malformed.
    Invalid {
        /// Which field.
        field: &'static str,
        /// The token found.
        token: String,
    },
    /// More than [`MAX_EXTENSIONS`] extensions.
    TooManyExtensions,
}

impl fmt::Display for CandidateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CandidateError::TooLong(n) => {
                write!(
                    f,
                    "candidate attribute of {n} bytes (max {MAX_CANDIDATE_LEN})"
                )
            }
            CandidateError::NotUtf8 => f.write_str("candidate attribute is not UTF-8"),
            CandidateError::MissingPrefix => {
                f.write_str("attribute does not start with 'candidate:'")
            }
            CandidateError::Missing(field) => write!(f, "candidate attribute has no {field}"),
            CandidateError::Invalid { field, token } => {
                write!(f, "candidate attribute has an invalid {field}: {token:?}")
            }
            CandidateError::TooManyExtensions => {
                write!(
                    f,
                    "candidate attribute has more than {MAX_EXTENSIONS} extensions"
                )
            }
        }
    }
}

impl std::error::Error for CandidateError {}

/// One ICE candidate as signaled in SDP (RFC 8839 §5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// 1 to 32 `ice-char`s (ALPHA / DIGIT / `+` / `/`).
    pub foundation: String,
    /// The component id, 1 to 256 (1 = RTP, 2 = RTCP).
    pub component: u16,
    /// The transport token as written (`udp`, `UDP`, `tcp`, …).
    pub transport: String,
    /// The candidate priority (RFC 8445 §5.1.2).
    pub priority: u32,
    /// The connection address.
    pub address: Address,
    /// The port.
    pub port: u16,
    /// The candidate type.
    pub kind: CandidateKind,
    /// `raddr`: the related address (the base of a reflexive candidate).
    pub related_address: Option<Address>,
    /// `rport`: the related port.
    pub related_port: Option<u16>,
    /// Every extension after the type and related address, in order
    /// (`tcptype`, `generation`, `ufrag`, `network-id`, `network-cost`, and
    /// unknown ones).
    pub extensions: Vec<(String, String)>,
}

fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

fn is_token(s: &str) -> bool {
    // RFC 8839 §5.1: extension names and values are byte-strings without
    // NUL, CR, LF or space; we also refuse other control characters.
    !s.is_empty() && s.chars().all(|c| !c.is_control() && c != ' ')
}

impl Candidate {
    /// A candidate with no extensions.
    pub fn new(
        foundation: String,
        component: u16,
        kind: CandidateKind,
        priority: u32,
        addr: SocketAddr,
        related: Option<SocketAddr>,
    ) -> Candidate {
        Candidate {
            foundation,
            component,
            transport: "udp".to_string(),
            priority,
            address: Address::Ip(addr.ip()),
            port: addr.port(),
            kind,
            related_address: related.map(|r| Address::Ip(r.ip())),
            related_port: related.map(|r| r.port()),
            extensions: Vec::new(),
        }
    }

    /// The transport address, when the address is an IP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.address.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// Whether the transport is UDP (any case).
    pub fn is_udp(&self) -> bool {
        self.transport.eq_ignore_ascii_case("udp")
    }

    /// The value of extension `name`, if present.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `tcptype` (RFC 6544): `active`, `passive` or `so`.
    pub fn tcptype(&self) -> Option<&str> {
        self.extension("tcptype")
    }

    /// `generation` (a libwebrtc extension; the ICE generation).
    pub fn generation(&self) -> Option<u32> {
        self.extension("generation").and_then(|v| v.parse().ok())
    }

    /// `ufrag`: the username fragment this candidate belongs to.
    pub fn ufrag(&self) -> Option<&str> {
        self.extension("ufrag")
    }

    /// `network-id` (libwebrtc).
    pub fn network_id(&self) -> Option<u32> {
        self.extension("network-id").and_then(|v| v.parse().ok())
    }

    /// `network-cost` (libwebrtc: 10 wired, 50 unknown/loopback, 900 cellular).
    pub fn network_cost(&self) -> Option<u32> {
        self.extension("network-cost").and_then(|v| v.parse().ok())
    }

    /// Parses `candidate:…`, with or without a leading `a=`.
    pub fn parse_bytes(input: &[u8]) -> Result<Candidate, CandidateError> {
        if input.len() > MAX_CANDIDATE_LEN {
            return Err(CandidateError::TooLong(input.len()));
        }
        let s = std::str::from_utf8(input).map_err(|_| CandidateError::NotUtf8)?;
        Candidate::parse(s)
    }

    /// Parses `candidate:…`, with or without a leading `a=` (RFC 8839 §5.1
    /// grammar; tokens are separated by single spaces).
    pub fn parse(input: &str) -> Result<Candidate, CandidateError> {
        if input.len() > MAX_CANDIDATE_LEN {
            return Err(CandidateError::TooLong(input.len()));
        }
        let s = input.strip_prefix("a=").unwrap_or(input);
        let s = s
            .strip_prefix("candidate:")
            .ok_or(CandidateError::MissingPrefix)?;
        let mut it = s.split(' ');
        let mut next = |field: &'static str| -> Result<&str, CandidateError> {
            match it.next() {
                Some(t) if !t.is_empty() => Ok(t),
                Some(t) => Err(CandidateError::Invalid {
                    field,
                    token: t.to_string(),
                }),
                None => Err(CandidateError::Missing(field)),
            }
        };
        let invalid = |field: &'static str, token: &str| CandidateError::Invalid {
            field,
            token: token.chars().take(64).collect(),
        };
        let foundation = next("foundation")?;
        if foundation.len() > 32 || !foundation.chars().all(is_ice_char) {
            return Err(invalid("foundation", foundation));
        }
        let component_tok = next("component id")?;
        let component: u16 = digits(component_tok, 3)
            .filter(|c| (1..=256).contains(c))
            .and_then(|c| u16::try_from(c).ok())
            .ok_or_else(|| invalid("component id", component_tok))?;
        let transport = next("transport")?;
        if !transport
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(invalid("transport", transport));
        }
        let priority_tok = next("priority")?;
        let priority = digits(priority_tok, 10)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or_else(|| invalid("priority", priority_tok))?;
        let address_tok = next("connection address")?;
        if !is_token(address_tok) {
            return Err(invalid("connection address", address_tok));
        }
        let port_tok = next("port")?;
        let port = parse_port(port_tok).ok_or_else(|| invalid("port", port_tok))?;
        let typ = next("'typ'")?;
        if typ != "typ" {
            return Err(invalid("'typ'", typ));
        }
        let kind_tok = next("candidate type")?;
        let kind =
            CandidateKind::parse(kind_tok).ok_or_else(|| invalid("candidate type", kind_tok))?;
        let rest: Vec<&str> = it.collect();
        let mut i = 0;
        let mut related_address = None;
        let mut related_port = None;
        if rest.get(i) == Some(&"raddr") {
            let a = rest
                .get(i + 1)
                .ok_or(CandidateError::Missing("raddr value"))?;
            if !is_token(a) {
                return Err(invalid("raddr", a));
            }
            related_address = Some(Address::parse(a));
            i += 2;
        }
        if rest.get(i) == Some(&"rport") {
            let p = rest
                .get(i + 1)
                .ok_or(CandidateError::Missing("rport value"))?;
            related_port = Some(parse_port(p).ok_or_else(|| invalid("rport", p))?);
            i += 2;
        }
        let mut extensions = Vec::new();
        while i < rest.len() {
            let name = rest[i];
            let value = rest
                .get(i + 1)
                .ok_or(CandidateError::Missing("extension value"))?;
            if !is_token(name) || name == "raddr" || name == "rport" {
                return Err(invalid("extension name", name));
            }
            if !is_token(value) {
                return Err(invalid("extension value", value));
            }
            if extensions.len() >= MAX_EXTENSIONS {
                return Err(CandidateError::TooManyExtensions);
            }
            extensions.push((name.to_string(), value.to_string()));
            i += 2;
        }
        Ok(Candidate {
            foundation: foundation.to_string(),
            component,
            transport: transport.to_string(),
            priority,
            address: Address::parse(address_tok),
            port,
            kind,
            related_address,
            related_port,
            extensions,
        })
    }

    /// Appends `candidate:…` (without `a=` or a line ending) to `out`.
    pub fn emit(&self, out: &mut String) {
        use fmt::Write;
        // Writing to a String cannot fail.
        let _ = write!(out, "{self}");
    }
}

/// 1 to `max` ASCII digits.
fn digits(s: &str, max: usize) -> Option<u64> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_port(s: &str) -> Option<u16> {
    digits(s, 5).and_then(|p| u16::try_from(p).ok())
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "candidate:{} {} {} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.transport,
            self.priority,
            self.address,
            self.port,
            self.kind
        )?;
        if let Some(a) = &self.related_address {
            write!(f, " raddr {a}")?;
        }
        if let Some(p) = self.related_port {
            write!(f, " rport {p}")?;
        }
        for (n, v) in &self.extensions {
            write!(f, " {n} {v}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Candidate {
    type Err = CandidateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Candidate::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fixture_lines() -> Vec<String> {
        let mut lines = Vec::new();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures");
        let dir = std::path::Path::new(dir);
        let dir = if dir.exists() {
            dir.to_path_buf()
        } else {
            std::path::PathBuf::from("/work/shared/fixtures")
        };
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().extension().is_some_and(|x| x == "sdp")
                    && let Ok(text) = std::fs::read_to_string(e.path())
                {
                    for l in text.lines() {
                        if let Some(c) = l.strip_prefix("a=") {
                            if c.starts_with("candidate:") {
                                lines.push(c.to_string());
                            }
                        }
                    }
                }
            }
        }
        lines
    }

    #[test]
    fn fixtures_round_trip_byte_for_byte() {
        let lines = fixture_lines();
        if lines.is_empty() {
            eprintln!("SKIP: /work/shared/fixtures not found");
            return;
        }
        for l in &lines {
            let c = Candidate::parse(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert_eq!(c.to_string(), *l);
        }
    }

    #[test]
    fn browser_lines() {
        let c = Candidate::parse(
            "a=candidate:3178603626 1 udp 2122260223 127.0.0.1 41520 typ host generation 0 network-id 1 network-cost 50",
        )
        .unwrap();
        assert_eq!(c.foundation, "3178603626");
        assert_eq!(c.kind, CandidateKind::Host);
        assert_eq!(c.generation(), Some(0));
        assert_eq!(c.network_id(), Some(1));
        assert_eq!(c.network_cost(), Some(50));
        assert_eq!(c.socket_addr(), Some("127.0.0.1:41520".parse().unwrap()));

        let l = "candidate:2 1 TCP 2105458943 127.0.0.1 9 typ host tcptype active";
        let c = Candidate::parse(l).unwrap();
        assert_eq!(c.tcptype(), Some("active"));
        assert!(!c.is_udp());
        assert_eq!(c.to_string(), l);

        let l = "candidate:1 1 udp 2122262783 3b1c2f4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f.local 54321 typ host generation 0 ufrag abCD network-cost 999";
        let c = Candidate::parse(l).unwrap();
        assert_eq!(
            c.address,
            Address::Name("3b1c2f4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f.local".into())
        );
        assert_eq!(c.ufrag(), Some("abCD"));
        assert_eq!(c.socket_addr(), None);
        assert_eq!(c.to_string(), l);

        let l = "candidate:842163049 1 udp 1677729535 203.0.113.9 61002 typ srflx raddr 0.0.0.0 rport 0 generation 0 network-cost 999 x-unknown yes";
        let c = Candidate::parse(l).unwrap();
        assert_eq!(c.kind, CandidateKind::ServerReflexive);
        assert_eq!(c.related_port, Some(0));
        assert_eq!(c.extension("x-unknown"), Some("yes"));
        assert_eq!(c.to_string(), l);
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "candidate:",
            "candidate:1 1 udp 1 1.2.3.4 5 typ",
            "candidate:1 0 udp 1 1.2.3.4 5 typ host",
            "candidate:1 257 udp 1 1.2.3.4 5 typ host",
            "candidate:1 1 udp 4294967296 1.2.3.4 5 typ host",
            "candidate:1 1 udp 1 1.2.3.4 65536 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ nat",
            "candidate:1 1 udp 1 1.2.3.4 5 type host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ host generation",
            "candidate:1  1 udp 1 1.2.3.4 5 typ host",
            "candidate:f_o 1 udp 1 1.2.3.4 5 typ host",
            "candidate:1 1 udp 1 1.2.3.4 5 typ srflx raddr",
        ] {
            assert!(Candidate::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    /// RFC 8445 §5.1.2.1 and the numbers browsers put on the wire.
    #[test]
    fn priorities() {
        // Firefox: host, local preference 0xFFFF - …; Chromium: 2122260223
        // = 126 << 24 | 0xFF7F << 8 (approx) | 255.
        assert_eq!(priority(126, 65535, 1), 2130706431);
        assert_eq!(priority(126, 65535, 2), 2130706430);
        assert_eq!(priority(100, 65535, 1), 1694498815);
        assert_eq!(priority(0, 65535, 1), 16777215);
        assert_eq!(2122260223 >> 24, 126);
        assert_eq!(2122260223 & 0xFF, 255);
        assert_eq!(CandidateKind::PeerReflexive.type_preference(), 110);
    }

    #[test]
    fn foundations() {
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        let s: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let a = foundation(CandidateKind::Host, ip, None, "udp");
        assert_eq!(a, foundation(CandidateKind::Host, ip, None, "UDP"));
        assert_ne!(
            a,
            foundation(CandidateKind::ServerReflexive, ip, Some(s), "udp")
        );
        assert!(a.chars().all(is_ice_char) && a.len() <= 32);
    }

    fn arb_addr() -> impl Strategy<Value = Address> {
        prop_oneof![
            any::<std::net::Ipv4Addr>().prop_map(|a| Address::Ip(a.into())),
            any::<std::net::Ipv6Addr>().prop_map(|a| Address::Ip(a.into())),
            "[a-f0-9-]{1,36}\\.local".prop_map(Address::Name),
        ]
    }

    fn arb_candidate() -> impl Strategy<Value = Candidate> {
        (
            "[A-Za-z0-9+/]{1,32}",
            1u16..=256,
            prop_oneof![Just("udp"), Just("UDP"), Just("tcp"), Just("TCP")],
            any::<u32>(),
            arb_addr(),
            any::<u16>(),
            prop_oneof![
                Just(CandidateKind::Host),
                Just(CandidateKind::ServerReflexive),
                Just(CandidateKind::PeerReflexive),
                Just(CandidateKind::Relayed)
            ],
            proptest::option::of((arb_addr(), any::<u16>())),
            proptest::collection::vec(("[a-z][a-z-]{0,11}", "[!-~]{1,12}"), 0..5),
        )
            .prop_map(|(f, c, t, p, a, port, kind, rel, ext)| Candidate {
                foundation: f,
                component: c,
                transport: t.to_string(),
                priority: p,
                address: a,
                port,
                kind,
                related_address: rel.as_ref().map(|r| r.0.clone()),
                related_port: rel.map(|r| r.1),
                extensions: ext
                    .into_iter()
                    .filter(|(n, _)| n != "raddr" && n != "rport")
                    .collect(),
            })
    }

    proptest! {
        #[test]
        fn round_trip(c in arb_candidate()) {
            let text = c.to_string();
            let back = Candidate::parse(&text).unwrap();
            prop_assert_eq!(&back, &c);
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,200}") {
            let _ = Candidate::parse(&s);
            let _ = Candidate::parse(&format!("candidate:{s}"));
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Candidate::parse_bytes(&b);
        }

        #[test]
        fn mutated_lines_never_panic(i in 0usize..120, ch in any::<char>()) {
            let mut l = String::from("candidate:842163049 1 udp 1677729535 203.0.113.9 61002 typ srflx raddr 10.0.0.2 rport 5000 generation 0");
            let i = i.min(l.len());
            if l.is_char_boundary(i) { l.insert(i, ch); }
            let _ = Candidate::parse(&l);
        }
    }
}
