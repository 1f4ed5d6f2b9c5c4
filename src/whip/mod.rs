//! WHIP and WHEP: WebRTC sessions set up with one HTTP request each way.
//!
//! WHIP (RFC 9725, the WebRTC-HTTP Ingestion Protocol) publishes media
//! into a server; WHEP (draft-ietf-wish-whep, the Egress Protocol) plays
//! it. Both are plain HTTP around one SDP offer/answer:
//!
//! ```text
//!   client                                      server (this module + a backend)
//!   POST /whip/ROOM   Content-Type: application/sdp   (offer)
//!     Authorization: Bearer TOKEN           ──►  backend.publish(room, offer)
//!   ◄── 201 Created, Location: /whip/resource/ID, ETag, Accept-Patch,
//!       Link: <stun:…>; rel="ice-server", body: the SDP answer
//!   PATCH /whip/resource/ID  Content-Type: application/trickle-ice-sdpfrag
//!     If-Match: ETag      (trickled candidates)  ──►  204 No Content
//!     If-Match: *         (new ufrag/pwd: ICE restart) ──► 200 OK + answer fragment
//!   DELETE /whip/resource/ID                     ──►  200 OK, the session ends
//! ```
//!
//! WHEP is the same with `/whep/` and a `recvonly` offer from the client.
//!
//! The HTTP semantics live in [`http::Endpoint`], sans-IO: a request goes
//! in, either a response comes out or a call the caller makes on the
//! [`Backend`] (which owns the `PeerConnection`s: the SFU), whose outcome
//! goes back in for the response. [`server::Mount`] puts it on axum, as
//! the signaling server does when its `whip` option is set.
//! [`SdpFrag`] reads and writes the `application/trickle-ice-sdpfrag` body
//! (RFC 8840 §9).
//!
//! Implemented: every status code RFC 9725 names for these requests (201,
//! 204, 200, 400, 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3), 404,
//! 405 with `Allow`, 412, 413, 415, 422, 428, 501, 503 with
//! `Retry-After`), CORS preflight for browsers (`OPTIONS`, `Accept-Post`),
//! ICE servers as `Link` headers (RFC 9725 §4.6), ETags per ICE session.
//! Left out: redirects (307) and the WHEP extensions (server-sent events,
//! layer selection).

pub mod http;
pub mod sdpfrag;
pub mod server;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

pub use http::{Config, Endpoint, Request, Response};
pub use sdpfrag::{FragError, FragMedia, SdpFrag};

/// What a client asked for: publish (WHIP) or play (WHEP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `POST /whip/ROOM`: the client sends media into the room.
    Publish,
    /// `POST /whep/ROOM`: the client receives the room's media.
    Play,
}

impl Kind {
    /// The first path segment: `whip` or `whep`.
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Publish => "whip",
            Kind::Play => "whep",
        }
    }
}

/// A WHIP or WHEP session's name in URLs (`/whip/resource/ID`): chosen by
/// the [`Endpoint`], 128 random bits in hex, so that it cannot be guessed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    /// A fresh random id.
    pub fn random(rng: &mut (impl rand::Rng + ?Sized)) -> ResourceId {
        let n: u128 = rng.random();
        ResourceId(format!("{n:032x}"))
    }

    /// The id as it appears in the URL, if `s` is one (hex digits, 1–64).
    pub fn parse(s: &str) -> Option<ResourceId> {
        ((1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| ResourceId(s.to_ascii_lowercase()))
    }

    /// The id's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a backend refused a request; each maps to the status RFC 9725 (or
/// RFC 9110) names for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The offer (or fragment) is not SDP the backend can use: 400.
    BadSdp(String),
    /// No such room to play, or the resource is gone: 404.
    NotFound,
    /// At capacity (peers per room, in total, bitrate): 503 with
    /// `Retry-After` in seconds (RFC 9725 §4.5).
    Full {
        /// Seconds the client should wait before trying again.
        retry_after: u32,
    },
    /// Trickle ICE or ICE restart is not supported by this session: 422
    /// (RFC 9725 §4.3.1).
    Unsupported(&'static str),
    /// Something failed inside the server: 500.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadSdp(why) => write!(f, "bad SDP: {why}"),
            Error::NotFound => f.write_str("not found"),
            Error::Full { retry_after } => {
                write!(f, "at capacity, try again in {retry_after} s")
            }
            Error::Unsupported(what) => write!(f, "not supported: {what}"),
            Error::Internal(why) => write!(f, "internal error: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A future a [`Backend`] returns (it may await the SFU's task).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What serves the sessions: the SFU implements it (it owns the
/// `PeerConnection`s); the tests implement it on `LivePeer`s.
pub trait Backend: Send + Sync + 'static {
    /// WHIP: a session publishing into `room` from the client's `offer`;
    /// returns the SDP answer, which should carry the server's candidates
    /// (clients need not trickle; see [`answer_with_candidates`]).
    fn publish(
        &self,
        resource: ResourceId,
        room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, Error>>;

    /// WHEP: a session playing `room` to the client (whose offer is
    /// `recvonly`); returns the SDP answer.
    fn play(
        &self,
        resource: ResourceId,
        room: String,
        offer: String,
    ) -> BoxFuture<'_, Result<String, Error>>;

    /// PATCH: trickled candidates (`restart` false; the fragment's
    /// `a=candidate` and `a=end-of-candidates` lines), or an ICE restart
    /// (`restart` true: new `ice-ufrag`/`ice-pwd`), which returns the
    /// server's new fragment.
    fn patch(
        &self,
        resource: ResourceId,
        frag: SdpFrag,
        restart: bool,
    ) -> BoxFuture<'_, Result<Option<SdpFrag>, Error>>;

    /// DELETE: ends the session.
    fn delete(&self, resource: ResourceId) -> BoxFuture<'_, Result<(), Error>>;
}

/// `answer` with `candidates` (values of `a=candidate:` lines, without
/// the `a=`) and, if `complete`, `a=end-of-candidates` (RFC 8840 §8.2)
/// added at the end of its first m-section: with BUNDLE (RFC 8843 §7.1.3)
/// the first m-section's transport carries every one. WHIP answers carry
/// the server's candidates so that a client without trickle connects.
pub fn answer_with_candidates(answer: &str, candidates: &[String], complete: bool) -> String {
    let mut out = String::with_capacity(answer.len() + 96 * candidates.len() + 32);
    let mut added = false;
    let mut in_first_media = false;
    let add = |out: &mut String| {
        for c in candidates {
            out.push_str("a=");
            out.push_str(c);
            out.push_str("\r\n");
        }
        if complete {
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in answer.lines() {
        if line.starts_with("m=") {
            if in_first_media && !added {
                add(&mut out);
                added = true;
            }
            in_first_media = !added;
        }
        if !line.is_empty() {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    if !added && in_first_media {
        add(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_go_into_the_first_m_section() {
        let answer = "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n";
        let c = vec!["candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".to_string()];
        let out = answer_with_candidates(answer, &c, true);
        assert_eq!(
            out,
            "v=0\r\ns=-\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n\
             a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"
        );
        // One m-section: at the end.
        let one = "v=0\r\nm=audio 9 X 0\r\na=mid:0\r\n";
        assert!(
            answer_with_candidates(one, &c, false)
                .ends_with("a=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\n")
        );
    }

    #[test]
    fn resource_ids() {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
        let id = ResourceId::random(&mut rng);
        assert_eq!(id.as_str().len(), 32);
        assert_eq!(ResourceId::parse(id.as_str()), Some(id));
        assert_eq!(ResourceId::parse("../etc"), None);
        assert_eq!(ResourceId::parse(""), None);
    }
}
