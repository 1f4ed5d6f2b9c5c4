//! ICE servers as the W3C `RTCConfiguration` gives them: `iceServers`
//! (STUN and TURN URLs with credentials) and `iceTransportPolicy`.
//!
//! URLs follow RFC 7064 (`stun:host[:port]`) and RFC 7065
//! (`turn:host[:port][?transport=udp|tcp]`). A sans-IO connection cannot
//! resolve names, so the host must be an IP address (an IPv6 one in
//! brackets): resolve names before building the configuration. rtclab's
//! TURN client reaches its server over UDP or, with `?transport=tcp`, over
//! a TCP connection that [`LivePeer`](crate::runtime::LivePeer) opens (RFC 8656 §3.1); the
//! relay to peers is UDP either way. `turns:` (TLS) is refused with an
//! error that says so.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use crate::turn::ServerTransport;

/// One entry of `iceServers`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceServer {
    /// `stun:` or `turn:` URLs.
    pub urls: Vec<String>,
    /// The TURN username.
    pub username: Option<String>,
    /// The TURN password.
    pub credential: Option<String>,
}

impl IceServer {
    /// A STUN server at `url`.
    pub fn stun(url: &str) -> IceServer {
        IceServer {
            urls: vec![url.to_string()],
            ..IceServer::default()
        }
    }

    /// A TURN server at `url` with its long-term credentials.
    pub fn turn(url: &str, username: &str, credential: &str) -> IceServer {
        IceServer {
            urls: vec![url.to_string()],
            username: Some(username.to_string()),
            credential: Some(credential.to_string()),
        }
    }
}

/// W3C `RTCIceTransportPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IceTransportPolicy {
    /// Every candidate.
    #[default]
    All,
    /// Relayed candidates only: the peer never learns our addresses.
    Relay,
}

/// Why an ICE server was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServerError {
    /// The URL.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for IceServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ICE server {:?}: {}", self.url, self.reason)
    }
}

impl std::error::Error for IceServerError {}

/// What the ICE servers come to: at most one STUN and one TURN server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolved {
    /// The STUN server (server-reflexive candidates).
    pub stun: Option<SocketAddr>,
    /// The TURN server and its credentials (a relayed candidate).
    pub turn: Option<(SocketAddr, String, String)>,
    /// How the TURN client reaches it (`?transport=`).
    pub turn_transport: ServerTransport,
}

/// Reads `servers`: the first STUN URL and the first TURN URL are used
/// (each gives one candidate; more add nothing a single peer needs).
pub fn resolve(servers: &[IceServer]) -> Result<Resolved, IceServerError> {
    let mut out = Resolved::default();
    for s in servers {
        for url in &s.urls {
            let err = |reason| IceServerError {
                url: url.clone(),
                reason,
            };
            let (scheme, rest) = url
                .split_once(':')
                .ok_or(err("no scheme (stun: or turn:)"))?;
            let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
            match scheme.to_ascii_lowercase().as_str() {
                "stun" => {
                    if !query.is_empty() {
                        return Err(err("a stun: URL takes no query (RFC 7064 §3.1)"));
                    }
                    let addr = host_port(hostport, 3478).ok_or(err(
                        "the host must be an IP address and port (names are not resolved here)",
                    ))?;
                    out.stun.get_or_insert(addr);
                }
                "turn" => {
                    let transport = match query.to_ascii_lowercase().as_str() {
                        "" | "transport=udp" => ServerTransport::Udp,
                        "transport=tcp" => ServerTransport::Tcp,
                        _ => return Err(err("unknown query (RFC 7065 §3.1: transport=udp|tcp)")),
                    };
                    let addr = host_port(hostport, 3478).ok_or(err(
                        "the host must be an IP address and port (names are not resolved here)",
                    ))?;
                    let (Some(user), Some(pass)) = (&s.username, &s.credential) else {
                        return Err(err("a TURN server needs a username and a credential"));
                    };
                    if out.turn.is_none() {
                        out.turn = Some((addr, user.clone(), pass.clone()));
                        out.turn_transport = transport;
                    }
                }
                "turns" | "stuns" => return Err(err("TLS to the server is not supported")),
                _ => return Err(err("unknown scheme (stun: or turn:)")),
            }
        }
    }
    Ok(out)
}

/// `1.2.3.4:5`, `[::1]:5`, or either without the port (`default` then).
fn host_port(s: &str, default: u16) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(a);
    }
    let host = s
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(s);
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_of_both_kinds_are_read() {
        let r = resolve(&[
            IceServer::stun("stun:192.0.2.1"),
            IceServer::turn("turn:[2001:db8::1]:3479?transport=udp", "u", "p"),
            IceServer::stun("stun:192.0.2.2:9"),
        ])
        .unwrap();
        assert_eq!(r.stun, Some("192.0.2.1:3478".parse().unwrap()));
        assert_eq!(
            r.turn,
            Some((
                "[2001:db8::1]:3479".parse().unwrap(),
                "u".into(),
                "p".into()
            ))
        );
    }

    #[test]
    fn turn_over_tcp_is_read() {
        let r = resolve(&[IceServer::turn(
            "turn:192.0.2.1:3479?transport=tcp",
            "u",
            "p",
        )])
        .unwrap();
        assert_eq!(r.turn_transport, ServerTransport::Tcp);
        assert_eq!(r.turn.unwrap().0, "192.0.2.1:3479".parse().unwrap());
        let r = resolve(&[IceServer::turn("turn:192.0.2.1", "u", "p")]).unwrap();
        assert_eq!(r.turn_transport, ServerTransport::Udp);
    }

    #[test]
    fn what_cannot_be_used_says_why() {
        let bad = |s: IceServer| resolve(&[s]).unwrap_err().reason;
        assert!(bad(IceServer::stun("stun:example.org")).contains("IP address"));
        assert!(bad(IceServer::turn("turn:192.0.2.1?transport=sctp", "u", "p")).contains("query"));
        assert!(bad(IceServer::stun("turn:192.0.2.1")).contains("username"));
        assert!(bad(IceServer::stun("http://192.0.2.1")).contains("scheme"));
        assert!(bad(IceServer::stun("turns:192.0.2.1")).contains("TLS"));
    }
}
