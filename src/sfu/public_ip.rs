//! `rtclab sfu --public-ip IP`: a node behind a one-to-one NAT (a cloud
//! VM's private address mapped to a public one, port for port) advertises
//! the public address in its ICE candidates, as coturn's `--external-ip`
//! and Janus's `nat_1_1_mapping` do.
//!
//! The SFU's ICE agent keeps its real socket address as the candidate's
//! base: checks arrive there (the NAT rewrote their destination) and the
//! agent pairs them by it (RFC 8445 §7.3: a request is matched to the
//! local candidate whose base received it). Only what is *signaled*
//! changes: the address of the host candidate carrying the bound
//! address, and the `c=` line that repeats it (RFC 8839 §4.2.1.2: the
//! default candidate's address), in answers, offers and trickled
//! candidates. The peer sends to the public address; the NAT brings it to
//! the socket; replies leave from the socket and the NAT makes them come
//! from the public address, the one the peer paired.

use std::net::{IpAddr, SocketAddr};

/// `text` as the SFU of `config` signals it: [`advertise`]d with its
/// `public_ip`, if one is set.
pub fn signaled(config: &super::Config, text: String) -> String {
    match (config.public_ip, config.host_candidates.first()) {
        (Some(ip), Some(&bound)) => advertise(&text, bound, ip),
        _ => text,
    }
}

/// `text` (an SDP, or one `candidate:` value) with the candidate of
/// `bound` and the `c=` lines naming `bound`'s address rewritten to
/// `public`. Anything else is kept as it is.
pub fn advertise(text: &str, bound: SocketAddr, public: IpAddr) -> String {
    if bound.ip() == public {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while !rest.is_empty() {
        let (line, end) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i..=i]),
            None => (rest, ""),
        };
        rest = &rest[line.len() + end.len()..];
        let (body, cr) = match line.strip_suffix('\r') {
            Some(b) => (b, "\r"),
            None => (line, ""),
        };
        out.push_str(&rewrite_line(body, bound, public));
        out.push_str(cr);
        out.push_str(end);
    }
    out
}

fn rewrite_line(line: &str, bound: SocketAddr, public: IpAddr) -> String {
    let family = if public.is_ipv4() { "IP4" } else { "IP6" };
    if let Some(addr) = line.strip_prefix("c=IN ").and_then(|r| r.split_once(' ')) {
        if addr.1.parse::<IpAddr>().ok() == Some(bound.ip()) {
            return format!("c=IN {family} {public}");
        }
        return line.to_string();
    }
    let (prefix, value) = if let Some(v) = line.strip_prefix("a=candidate:") {
        ("a=candidate:", v)
    } else if let Some(v) = line.strip_prefix("candidate:") {
        ("candidate:", v)
    } else {
        return line.to_string();
    };
    // RFC 8839 §5.1: foundation component transport priority address port
    // "typ" type …
    let fields: Vec<&str> = value.split(' ').collect();
    let same = fields.len() >= 8
        && fields[4].parse::<IpAddr>().ok() == Some(bound.ip())
        && fields[5].parse::<u16>().ok() == Some(bound.port())
        && fields[6] == "typ"
        && fields[7] == "host";
    if !same {
        return line.to_string();
    }
    let public = public.to_string();
    let mut fields = fields;
    fields[4] = &public;
    format!("{prefix}{}", fields.join(" "))
}

#[cfg(test)]
mod tests {
    use super::advertise;

    #[test]
    fn the_bound_host_candidate_and_its_c_line_carry_the_public_address() {
        let bound = "10.0.0.5:3478".parse().unwrap();
        let public = "203.0.113.9".parse().unwrap();
        let sdp = "v=0\r\nm=video 3478 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 10.0.0.5\r\n\
                   a=candidate:1 1 udp 2130706431 10.0.0.5 3478 typ host\r\n\
                   a=candidate:2 1 udp 2130706431 10.0.0.6 3478 typ host\r\n\
                   a=candidate:3 1 udp 1694498815 10.0.0.5 3479 typ host\r\n";
        let out = advertise(sdp, bound, public);
        assert_eq!(
            out,
            "v=0\r\nm=video 3478 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 203.0.113.9\r\n\
             a=candidate:1 1 udp 2130706431 203.0.113.9 3478 typ host\r\n\
             a=candidate:2 1 udp 2130706431 10.0.0.6 3478 typ host\r\n\
             a=candidate:3 1 udp 1694498815 10.0.0.5 3479 typ host\r\n"
        );
        assert_eq!(
            advertise(
                "candidate:1 1 udp 2130706431 10.0.0.5 3478 typ host",
                bound,
                public
            ),
            "candidate:1 1 udp 2130706431 203.0.113.9 3478 typ host"
        );
        // Nothing to do, or nothing that matches: kept byte for byte.
        assert_eq!(advertise(sdp, bound, bound.ip()), sdp);
        assert_eq!(
            advertise("a=candidate:x\n", bound, public),
            "a=candidate:x\n"
        );
    }
}
