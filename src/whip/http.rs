//! The HTTP side of WHIP and WHEP, sans-IO: [`Endpoint::request`] reads a
//! request and either answers it at once (a refusal, `OPTIONS`) or names
//! the [`Call`] to make on the [`Backend`](super::Backend);
//! [`Endpoint::complete`] turns the call's outcome into the response. The
//! endpoint keeps, per session, its kind, its ETag and the client's ICE
//! ufrag: enough to answer 404, 412 and 428 without the backend, and to
//! tell an ICE restart from trickle.
//!
//! | request | answer |
//! |---|---|
//! | `POST /whip/ROOM`, `POST /whep/ROOM`, `application/sdp` | 201, `Location`, `ETag`, `Accept-Patch`, `Link` (ICE servers, RFC 9725 §4.6), the answer |
//! | `PATCH /whip/resource/ID`, `application/trickle-ice-sdpfrag` | 204 (trickle), 200 with the server's fragment and a new `ETag` (ICE restart, `If-Match: *`) |
//! | `DELETE /whip/resource/ID` | 200 |
//! | `OPTIONS` either | 204 with CORS and `Accept-Post: application/sdp` (no token needed: a browser's preflight carries none) |
//! | no or wrong bearer token | 401, `WWW-Authenticate: Bearer` (RFC 6750 §3) |
//! | other media type | 415; SDP the backend refuses: 400 |
//! | `If-Match` not the session's ETag | 412 (RFC 9110 §13.1.1); an ICE restart without `If-Match`: 428 (RFC 6585 §3) |
//! | another method | 405 with `Allow` (a method HTTP does not define: 501) |
//! | backend at capacity | 503 with `Retry-After` |
//! | body over the limit | 413 |

use std::collections::HashMap;

use super::sdpfrag::{self, SdpFrag};
use super::{Error, Kind, ResourceId};

/// The media type of WHIP/WHEP offers and answers.
pub const SDP: &str = "application/sdp";
/// The media type of PATCH bodies (RFC 8840 §9).
pub const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

/// An ICE server handed to clients in a `Link` header (RFC 9725 §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServerLink {
    /// `stun:host:port` or `turn:host:port?transport=udp`.
    pub url: String,
    /// TURN username and password (`credential-type="password"`).
    pub credentials: Option<(String, String)>,
}

impl IceServerLink {
    /// The `Link` header value.
    pub fn header(&self) -> String {
        let mut s = format!("<{}>; rel=\"ice-server\"", self.url);
        if let Some((u, p)) = &self.credentials {
            s += &format!(
                "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                quoted(u),
                quoted(p)
            );
        }
        s
    }
}

/// Escapes `"` and `\` for an RFC 9110 quoted-string.
fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// What the endpoint allows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// The bearer token every request but `OPTIONS` must carry; `None`:
    /// no authentication.
    pub token: Option<String>,
    /// ICE servers for clients, as `Link` headers of the 201.
    pub ice_servers: Vec<IceServerLink>,
    /// The largest body read (an SDP offer with simulcast and many codecs
    /// is ~10 KiB).
    pub max_body: usize,
    /// The most sessions at once; past it, 503.
    pub max_sessions: usize,
    /// The `Retry-After` seconds of a 503 the endpoint gives itself.
    pub retry_after: u32,
    /// `Access-Control-Allow-Origin` (`*` by default: a token, not a
    /// cookie, authenticates, so any page may call).
    pub allow_origin: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: None,
            ice_servers: Vec::new(),
            max_body: 64 * 1024,
            max_sessions: 1024,
            retry_after: 5,
            allow_origin: "*".into(),
        }
    }
}

impl Config {
    /// The defaults with a bearer token.
    pub fn with_token(token: Option<String>) -> Config {
        Config {
            token,
            ..Config::default()
        }
    }
}

/// An HTTP request, as much of it as WHIP reads.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`, `PATCH`, …
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// `Content-Type`.
    pub content_type: Option<&'a str>,
    /// `Authorization`.
    pub authorization: Option<&'a str>,
    /// `If-Match`.
    pub if_match: Option<&'a str>,
    /// The body (the caller stops reading past [`Config::max_body`] and
    /// passes [`Request::too_long`]).
    pub body: &'a [u8],
    /// The body was longer than [`Config::max_body`].
    pub too_long: bool,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    fn text(self, body: impl Into<String>) -> Response {
        let mut r = self.header("Content-Type", "text/plain; charset=utf-8");
        r.body = body.into().into_bytes();
        r
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the caller must ask the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// [`Backend::publish`](super::Backend::publish) or `play`.
    Create {
        /// Publish or play.
        kind: Kind,
        /// The id the session will have.
        resource: ResourceId,
        /// The room.
        room: String,
        /// The client's offer.
        offer: String,
    },
    /// [`Backend::patch`](super::Backend::patch).
    Patch {
        /// The session.
        resource: ResourceId,
        /// The fragment.
        frag: SdpFrag,
        /// New ICE credentials: an ICE restart.
        restart: bool,
    },
    /// [`Backend::delete`](super::Backend::delete).
    Delete {
        /// The session.
        resource: ResourceId,
    },
}

/// The backend's answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `Create`: the SDP answer.
    Created(String),
    /// `Patch`: the server's fragment after an ICE restart.
    Patched(Option<SdpFrag>),
    /// `Delete` done.
    Deleted,
    /// Refused.
    Failed(Error),
}

/// What [`Endpoint::request`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this.
    Respond(Response),
    /// Make this call, then [`Endpoint::complete`].
    Call(Call),
}

struct Session {
    kind: Kind,
    etag: String,
    /// The client's ICE ufrag (from its offer, then its restarts).
    remote_ufrag: Option<String>,
}

/// The WHIP/WHEP HTTP semantics (see the [module doc](self)).
pub struct Endpoint {
    config: Config,
    sessions: HashMap<ResourceId, Session>,
    /// Creations under way (counted against `max_sessions`).
    creating: usize,
    etags: u64,
    rng: rand::rngs::StdRng,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

enum Route<'a> {
    /// `/whip/ROOM` or `/whep/ROOM`.
    Room(Kind, &'a str),
    /// `/whip/resource/ID` (or `/whep/…`).
    Resource(Kind, ResourceId),
}

/// Room names: 1–64 letters, digits, `-`, `_`, `.` (one path segment).
fn room_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s != "."
        && s != ".."
}

fn route(path: &str) -> Option<Route<'_>> {
    let mut parts = path.strip_prefix('/')?.split('/');
    let kind = match parts.next()? {
        "whip" => Kind::Publish,
        "whep" => Kind::Play,
        _ => return None,
    };
    let r = match (parts.next(), parts.next(), parts.next()) {
        (Some("resource"), Some(id), None) => Route::Resource(kind, ResourceId::parse(id)?),
        (Some(room), None, None) if room_name(room) && room != "resource" => {
            Route::Room(kind, room)
        }
        _ => return None,
    };
    Some(r)
}

/// The media type of a `Content-Type` value, without parameters.
fn media_type(v: Option<&str>) -> Option<String> {
    Some(v?.split(';').next()?.trim().to_ascii_lowercase())
}

/// Methods RFC 9110 §9 and RFC 5789 define (others get 501).
fn known_method(m: &str) -> bool {
    matches!(
        m,
        "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH"
    )
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Endpoint {
    /// An endpoint with no session; `rng` makes resource ids and ETags.
    pub fn new(config: Config, rng: rand::rngs::StdRng) -> Endpoint {
        Endpoint {
            config,
            sessions: HashMap::new(),
            creating: 0,
            etags: 0,
            rng,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How many sessions exist.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The session's kind, if it exists.
    pub fn session_kind(&self, id: &ResourceId) -> Option<Kind> {
        self.sessions.get(id).map(|s| s.kind)
    }

    fn cors(&self, mut r: Response) -> Response {
        r.headers.push((
            "Access-Control-Allow-Origin",
            self.config.allow_origin.clone(),
        ));
        r.headers.push((
            "Access-Control-Expose-Headers",
            "Location, ETag, Link, Accept-Patch, Retry-After".into(),
        ));
        r
    }

    fn new_etag(&mut self) -> String {
        use rand::Rng;
        self.etags += 1;
        let salt: u32 = self.rng.random();
        format!("\"{:x}-{salt:08x}\"", self.etags)
    }

    /// Reads a request: a response now, or a call to make.
    pub fn request(&mut self, req: &Request<'_>) -> Step {
        match self.decide(req) {
            Ok(call) => Step::Call(call),
            Err(resp) => Step::Respond(self.cors(resp)),
        }
    }

    fn decide(&mut self, req: &Request<'_>) -> Result<Call, Response> {
        let method = req.method;
        if !known_method(method) {
            return Err(Response::new(501).text(format!("{method} is not implemented")));
        }
        let Some(route) = route(req.path) else {
            return Err(Response::new(404).text("no such WHIP/WHEP endpoint or session"));
        };
        let allow = match route {
            Route::Room(..) => "POST, OPTIONS",
            Route::Resource(..) => "PATCH, DELETE, OPTIONS",
        };
        if method == "OPTIONS" {
            // A CORS preflight (or a client asking what is allowed): no
            // token, since browsers send none with a preflight.
            let mut r = Response::new(204)
                .header("Allow", allow)
                .header("Access-Control-Allow-Methods", allow)
                .header(
                    "Access-Control-Allow-Headers",
                    "Authorization, Content-Type, If-Match",
                )
                .header("Access-Control-Max-Age", "86400");
            r = match route {
                Route::Room(..) => r.header("Accept-Post", SDP),
                Route::Resource(..) => r.header("Accept-Patch", SDPFRAG),
            };
            return Err(r);
        }
        let allowed = matches!(
            (&route, method),
            (Route::Room(..), "POST") | (Route::Resource(..), "PATCH" | "DELETE")
        );
        if !allowed {
            return Err(Response::new(405)
                .header("Allow", allow)
                .text(format!("{method} is not allowed here")));
        }
        self.authorize(req)?;
        if req.too_long {
            return Err(Response::new(413).text(format!(
                "the body is longer than {} bytes",
                self.config.max_body
            )));
        }
        // ANCHOR: whip_routes
        match route {
            Route::Room(kind, room) => self.create(kind, room, req),
            Route::Resource(kind, resource) => {
                let Some(session) = self.sessions.get(&resource).filter(|s| s.kind == kind) else {
                    return Err(Response::new(404).text("no such session"));
                };
                if method == "DELETE" {
                    return Ok(Call::Delete { resource });
                }
                self.patch(resource, session, req)
            }
        }
        // ANCHOR_END: whip_routes
    }

    fn authorize(&self, req: &Request<'_>) -> Result<(), Response> {
        let Some(token) = &self.config.token else {
            return Ok(());
        };
        // RFC 6750 §2.1: "Bearer" (case-insensitive scheme), one space, the token.
        let given = req.authorization.and_then(|v| {
            let (scheme, t) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| t.trim())
        });
        match given {
            Some(t) if same_secret(t.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(Response::new(401)
                .header(
                    "WWW-Authenticate",
                    "Bearer realm=\"rtclab\", error=\"invalid_token\"",
                )
                .text("wrong bearer token")),
            None => Err(Response::new(401)
                .header("WWW-Authenticate", "Bearer realm=\"rtclab\"")
                .text("a bearer token is required")),
        }
    }

    fn create(&mut self, kind: Kind, room: &str, req: &Request<'_>) -> Result<Call, Response> {
        if media_type(req.content_type).as_deref() != Some(SDP) {
            return Err(Response::new(415)
                .header("Accept-Post", SDP)
                .text("the offer must be application/sdp"));
        }
        let Ok(offer) = std::str::from_utf8(req.body) else {
            return Err(Response::new(400).text("the offer is not UTF-8"));
        };
        if !offer.starts_with("v=0") {
            return Err(Response::new(400).text("the body is not an SDP offer (no v=0)"));
        }
        if self.sessions.len() + self.creating >= self.config.max_sessions {
            return Err(Response::new(503)
                .header("Retry-After", self.config.retry_after.to_string())
                .text("too many sessions"));
        }
        self.creating += 1;
        Ok(Call::Create {
            kind,
            resource: ResourceId::random(&mut self.rng),
            room: room.to_string(),
            offer: offer.to_string(),
        })
    }

    fn patch(
        &self,
        resource: ResourceId,
        session: &Session,
        req: &Request<'_>,
    ) -> Result<Call, Response> {
        if media_type(req.content_type).as_deref() != Some(SDPFRAG) {
            return Err(Response::new(415)
                .header("Accept-Patch", SDPFRAG)
                .text("PATCH takes application/trickle-ice-sdpfrag"));
        }
        let frag = SdpFrag::parse(req.body)
            .map_err(|e| Response::new(400).text(format!("bad fragment: {e}")))?;
        // RFC 8840 §4.4: new credentials mean an ICE restart.
        let restart = frag
            .ufrag()
            .is_some_and(|u| Some(u) != session.remote_ufrag.as_deref());
        let if_match = req.if_match.map(str::trim);
        match (restart, if_match) {
            // RFC 9725 §4.3.3 (ICE restarts): the PATCH carries If-Match: *
            // (RFC 9110 §13.1.1); trickle may carry the ETag.
            (true, None) => {
                return Err(Response::new(428).text("an ICE restart needs If-Match: *"));
            }
            (true, Some("*")) => {}
            (true, Some(tag)) | (false, Some(tag)) if tag != "*" && tag != session.etag => {
                return Err(Response::new(412).text("If-Match does not match the ICE session"));
            }
            _ => {}
        }
        if restart && frag.credentials().is_none() {
            return Err(Response::new(400).text("an ICE restart needs ice-ufrag and ice-pwd"));
        }
        Ok(Call::Patch {
            resource,
            frag,
            restart,
        })
    }

    /// The response to `call` given the backend's `outcome`.
    pub fn complete(&mut self, call: Call, outcome: Outcome) -> Response {
        let r = match (call, outcome) {
            (Call::Create { .. }, Outcome::Failed(e)) => {
                self.creating = self.creating.saturating_sub(1);
                failed(e)
            }
            (
                Call::Create {
                    kind,
                    resource,
                    offer,
                    ..
                },
                Outcome::Created(answer),
            ) => {
                self.creating = self.creating.saturating_sub(1);
                let etag = self.new_etag();
                let location = format!("/{}/resource/{resource}", kind.prefix());
                self.sessions.insert(
                    resource,
                    Session {
                        kind,
                        etag: etag.clone(),
                        remote_ufrag: sdpfrag::offer_ufrag(&offer).map(str::to_string),
                    },
                );
                let mut r = Response::new(201)
                    .header("Content-Type", SDP)
                    .header("Location", location)
                    .header("ETag", etag)
                    .header("Accept-Patch", SDPFRAG);
                for s in &self.config.ice_servers {
                    r = r.header("Link", s.header());
                }
                r.body = answer.into_bytes();
                r
            }
            (Call::Delete { resource }, Outcome::Deleted | Outcome::Failed(Error::NotFound)) => {
                self.sessions.remove(&resource);
                Response::new(200)
            }
            (
                Call::Patch {
                    resource,
                    frag,
                    restart: true,
                },
                Outcome::Patched(Some(answer)),
            ) => {
                let etag = self.new_etag();
                match self.sessions.get_mut(&resource) {
                    Some(s) => {
                        s.etag = etag.clone();
                        s.remote_ufrag = frag.ufrag().map(str::to_string);
                        let mut r = Response::new(200)
                            .header("Content-Type", SDPFRAG)
                            .header("ETag", etag);
                        r.body = answer.to_text().into_bytes();
                        r
                    }
                    None => Response::new(404).text("the session ended"),
                }
            }
            (Call::Patch { restart: false, .. }, Outcome::Patched(_)) => Response::new(204),
            (Call::Patch { restart: true, .. }, Outcome::Patched(None)) => {
                Response::new(500).text("the backend restarted ICE but gave no fragment")
            }
            (Call::Patch { resource, .. }, Outcome::Failed(Error::NotFound))
            | (Call::Delete { resource }, Outcome::Failed(_)) => {
                // The backend lost it: so do we.
                self.sessions.remove(&resource);
                Response::new(404).text("no such session")
            }
            (_, Outcome::Failed(e)) => failed(e),
            (call, outcome) => {
                Response::new(500).text(format!("backend answered {outcome:?} to {call:?}"))
            }
        };
        self.cors(r)
    }
}

fn failed(e: Error) -> Response {
    match e {
        Error::BadSdp(why) => Response::new(400).text(format!("bad SDP: {why}")),
        Error::NotFound => Response::new(404).text("not found"),
        Error::Full { retry_after } => Response::new(503)
            .header("Retry-After", retry_after.to_string())
            .text("at capacity"),
        Error::Unsupported(what) => Response::new(422).text(format!("not supported: {what}")),
        Error::Internal(why) => Response::new(500).text(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ep(token: Option<&str>) -> Endpoint {
        Endpoint::new(
            Config::with_token(token.map(str::to_string)),
            rand::rngs::StdRng::seed_from_u64(3),
        )
    }

    fn req<'a>(method: &'a str, path: &'a str, ct: Option<&'a str>, body: &'a [u8]) -> Request<'a> {
        Request {
            method,
            path,
            content_type: ct,
            authorization: Some("Bearer s3cret"),
            if_match: None,
            body,
            too_long: false,
        }
    }

    const OFFER: &[u8] = b"v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-ufrag:cli1\r\na=ice-pwd:pwpwpwpwpwpwpwpwpwpwpw\r\n";

    fn respond(s: Step) -> Response {
        match s {
            Step::Respond(r) => r,
            Step::Call(c) => panic!("expected a response, got {c:?}"),
        }
    }

    /// POSTs and completes with an answer: (location, etag, resource).
    fn created(e: &mut Endpoint, kind: &str) -> (String, String, ResourceId) {
        let path = format!("/{kind}/room1");
        let Step::Call(call) = e.request(&req("POST", &path, Some(SDP), OFFER)) else {
            panic!("no call")
        };
        let Call::Create { resource, .. } = call.clone() else {
            panic!("{call:?}")
        };
        let r = e.complete(call, Outcome::Created("v=0\r\nanswer".into()));
        assert_eq!(r.status, 201);
        assert_eq!(r.get("content-type"), Some(SDP));
        assert_eq!(r.get("Accept-Patch"), Some(SDPFRAG));
        assert_eq!(r.get("Access-Control-Allow-Origin"), Some("*"));
        assert_eq!(r.body, b"v=0\r\nanswer");
        (
            r.get("Location").expect("location").to_string(),
            r.get("ETag").expect("etag").to_string(),
            resource,
        )
    }

    #[test]
    fn post_creates_a_session_with_location_and_etag() {
        let mut e = ep(Some("s3cret"));
        let (loc, etag, id) = created(&mut e, "whip");
        assert_eq!(loc, format!("/whip/resource/{id}"));
        assert!(etag.starts_with('"') && etag.ends_with('"'));
        let (loc2, etag2, _) = created(&mut e, "whep");
        assert!(loc2.starts_with("/whep/resource/"));
        assert_ne!(etag, etag2);
        assert_eq!(e.sessions(), 2);
        // A WHIP session is not found under /whep/.
        let p = format!("/whep/resource/{id}");
        let r = respond(e.request(&req("DELETE", &p, None, b"")));
        assert_eq!(r.status, 404);
    }

    #[test]
    fn refusals_have_the_rfc_status_codes() {
        let mut e = ep(Some("s3cret"));
        // No token, wrong token: 401 with a Bearer challenge.
        let mut r0 = req("POST", "/whip/a", Some(SDP), OFFER);
        r0.authorization = None;
        let r = respond(e.request(&r0));
        assert_eq!(
            (r.status, r.get("WWW-Authenticate")),
            (401, Some("Bearer realm=\"rtclab\""))
        );
        r0.authorization = Some("Bearer nope");
        let r = respond(e.request(&r0));
        assert_eq!(r.status, 401);
        assert!(
            r.get("WWW-Authenticate")
                .is_some_and(|v| v.contains("invalid_token"))
        );
        // Wrong media type, not SDP, body too long.
        let r = respond(e.request(&req("POST", "/whip/a", Some("text/plain"), OFFER)));
        assert_eq!((r.status, r.get("Accept-Post")), (415, Some(SDP)));
        let r = respond(e.request(&req("POST", "/whip/a", Some(SDP), b"hello")));
        assert_eq!(r.status, 400);
        let mut long = req("POST", "/whip/a", Some(SDP), b"");
        long.too_long = true;
        assert_eq!(respond(e.request(&long)).status, 413);
        // Methods: 405 with Allow, 501 for unknown ones.
        let r = respond(e.request(&req("GET", "/whip/a", None, b"")));
        assert_eq!((r.status, r.get("Allow")), (405, Some("POST, OPTIONS")));
        assert_eq!(
            respond(e.request(&req("BREW", "/whip/a", None, b""))).status,
            501
        );
        // Paths: unknown, bad room names, unknown session.
        for p in [
            "/other",
            "/whip/",
            "/whip/a/b",
            "/whip/..",
            "/whip/resource/zz",
            "/whip/resource/abc",
        ] {
            let r = respond(e.request(&req("DELETE", p, None, b"")));
            assert!(matches!(r.status, 404 | 405), "{p}: {}", r.status);
        }
        // Backend refusals.
        let Step::Call(call) = e.request(&req("POST", "/whip/a", Some(SDP), OFFER)) else {
            panic!()
        };
        let r = e.complete(call, Outcome::Failed(Error::Full { retry_after: 7 }));
        assert_eq!((r.status, r.get("Retry-After")), (503, Some("7")));
        let Step::Call(call) = e.request(&req("POST", "/whip/a", Some(SDP), OFFER)) else {
            panic!()
        };
        let r = e.complete(call, Outcome::Failed(Error::BadSdp("no m-line".into())));
        assert_eq!(r.status, 400);
        assert_eq!(e.sessions(), 0);
    }

    #[test]
    fn options_is_a_cors_preflight_without_a_token() {
        let mut e = ep(Some("s3cret"));
        let mut r0 = req("OPTIONS", "/whip/room", None, b"");
        r0.authorization = None;
        let r = respond(e.request(&r0));
        assert_eq!(r.status, 204);
        assert_eq!(r.get("Accept-Post"), Some(SDP));
        assert_eq!(r.get("Access-Control-Allow-Origin"), Some("*"));
        assert!(
            r.get("Access-Control-Allow-Headers")
                .is_some_and(|h| h.contains("Authorization"))
        );
        assert!(
            r.get("Access-Control-Allow-Methods")
                .is_some_and(|h| h.contains("POST"))
        );
    }

    #[test]
    fn capacity_is_enforced_by_the_endpoint_too() {
        let mut c = Config::with_token(None);
        c.max_sessions = 1;
        let mut e = Endpoint::new(c, rand::rngs::StdRng::seed_from_u64(1));
        let mut r0 = req(
            "POST",
            "/whep/x",
            Some("application/sdp; charset=utf-8"),
            OFFER,
        );
        r0.authorization = None;
        let Step::Call(_) = e.request(&r0) else {
            panic!()
        };
        let r = respond(e.request(&r0));
        assert_eq!((r.status, r.get("Retry-After")), (503, Some("5")));
    }

    #[test]
    fn patch_trickle_restart_and_delete() {
        let mut e = ep(Some("s3cret"));
        let (loc, etag, id) = created(&mut e, "whip");
        let trickle = b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=ice-ufrag:cli1\r\na=ice-pwd:pwpwpwpwpwpwpwpwpwpwpw\r\na=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n";
        // Wrong media type.
        let r = respond(e.request(&req("PATCH", &loc, Some(SDP), trickle)));
        assert_eq!(r.status, 415);
        // Wrong ETag: 412.
        let mut p = req("PATCH", &loc, Some(SDPFRAG), trickle);
        p.if_match = Some("\"nope\"");
        assert_eq!(respond(e.request(&p)).status, 412);
        // Right ETag (or none): a trickle call, 204.
        p.if_match = Some(&etag);
        let Step::Call(call) = e.request(&p) else {
            panic!()
        };
        assert!(
            matches!(&call, Call::Patch { restart: false, resource, frag } if *resource == id && frag.candidates().count() == 1)
        );
        assert_eq!(e.complete(call, Outcome::Patched(None)).status, 204);
        // New credentials: a restart; without If-Match 428, with * a call.
        let restart = b"a=ice-ufrag:cli2\r\na=ice-pwd:qwqwqwqwqwqwqwqwqwqwqw\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n";
        let mut p = req("PATCH", &loc, Some(SDPFRAG), restart);
        assert_eq!(respond(e.request(&p)).status, 428);
        p.if_match = Some("*");
        let Step::Call(call) = e.request(&p) else {
            panic!()
        };
        assert!(matches!(call, Call::Patch { restart: true, .. }));
        let server = SdpFrag {
            ice_ufrag: Some("srv2".into()),
            ice_pwd: Some("zzzzzzzzzzzzzzzzzzzzzz".into()),
            ..SdpFrag::default()
        };
        let r = e.complete(call.clone(), Outcome::Patched(Some(server.clone())));
        assert_eq!(r.status, 200);
        assert_eq!(r.get("Content-Type"), Some(SDPFRAG));
        assert_ne!(r.get("ETag"), Some(etag.as_str()));
        assert_eq!(SdpFrag::parse(&r.body), Ok(server));
        // The old ETag no longer matches.
        let mut p = req("PATCH", &loc, Some(SDPFRAG), b"a=ice-ufrag:cli2\r\n");
        p.if_match = Some(&etag);
        assert_eq!(respond(e.request(&p)).status, 412);
        // A backend without restart: 422.
        let r = e.complete(call, Outcome::Failed(Error::Unsupported("ICE restart")));
        assert_eq!(r.status, 422);
        // DELETE: 200, then 404.
        let Step::Call(call) = e.request(&req("DELETE", &loc, None, b"")) else {
            panic!()
        };
        assert_eq!(e.complete(call, Outcome::Deleted).status, 200);
        assert_eq!(
            respond(e.request(&req("DELETE", &loc, None, b""))).status,
            404
        );
        assert_eq!(e.sessions(), 0);
    }
}
