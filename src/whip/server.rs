//! [`Mount`]: the WHIP/WHEP [`Endpoint`] on axum, the signaling server's
//! HTTP stack (`signaling::Config::whip` mounts it there). The only I/O
//! here is reading the body (at most [`Config::max_body`] bytes) and
//! awaiting the [`Backend`]; every decision is the endpoint's.
//!
//! A backend call runs on its own task: a client that hangs up while the
//! SFU sets up its session does not leave a session the endpoint does not
//! know about.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::any;

use super::http::{Call, Config, Endpoint, Outcome, Request, Response, Step};
use super::{Backend, Kind};

struct Inner {
    endpoint: Mutex<Endpoint>,
    backend: Arc<dyn Backend>,
}

/// WHIP and WHEP routes (`/whip/…`, `/whep/…`) around a [`Backend`].
/// Cheap to clone.
#[derive(Clone)]
pub struct Mount(Arc<Inner>);

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("whip::Mount").finish_non_exhaustive()
    }
}

impl Mount {
    /// The routes of `config` around `backend`.
    pub fn new(config: Config, backend: Arc<dyn Backend>) -> Mount {
        let rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
        Mount(Arc::new(Inner {
            endpoint: Mutex::new(Endpoint::new(config, rng)),
            backend,
        }))
    }

    /// The axum router to merge into a server's.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/whip/{*rest}", any(handle))
            .route("/whep/{*rest}", any(handle))
            .with_state(self.clone())
    }

    /// How many sessions exist.
    pub fn sessions(&self) -> usize {
        self.endpoint().sessions()
    }

    fn endpoint(&self) -> MutexGuard<'_, Endpoint> {
        // Each step holds the lock for a few map operations; a panic
        // inside one leaves the map usable.
        self.0.endpoint.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn handle(State(mount): State<Mount>, req: HttpRequest) -> HttpResponse {
    let (parts, body) = req.into_parts();
    let max = mount.endpoint().config().max_body;
    let declared =
        header_str(&parts.headers, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    let (bytes, too_long) = if declared.is_some_and(|n| n > max) {
        (Default::default(), true)
    } else {
        match axum::body::to_bytes(body, max).await {
            Ok(b) => (b, false),
            // Past the limit (or the client broke off): the endpoint says 413.
            Err(_) => (Default::default(), true),
        }
    };
    let request = Request {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        content_type: header_str(&parts.headers, header::CONTENT_TYPE),
        authorization: header_str(&parts.headers, header::AUTHORIZATION),
        if_match: header_str(&parts.headers, header::IF_MATCH),
        body: &bytes,
        too_long,
    };
    let step = mount.endpoint().request(&request);
    let response = match step {
        Step::Respond(r) => r,
        Step::Call(call) => {
            let m = mount.clone();
            let task = tokio::spawn(async move {
                let outcome = call_backend(m.0.backend.as_ref(), call.clone()).await;
                m.endpoint().complete(call, outcome)
            });
            match task.await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("whip: backend task failed: {e}");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
            }
        }
    };
    into_http(response)
}

async fn call_backend(backend: &dyn Backend, call: Call) -> Outcome {
    let result = match call {
        Call::Create {
            kind,
            resource,
            room,
            offer,
        } => match kind {
            Kind::Publish => backend.publish(resource, room, offer).await,
            Kind::Play => backend.play(resource, room, offer).await,
        }
        .map(Outcome::Created),
        Call::Patch {
            resource,
            frag,
            restart,
        } => backend
            .patch(resource, frag, restart)
            .await
            .map(Outcome::Patched),
        Call::Delete { resource } => backend.delete(resource).await.map(|()| Outcome::Deleted),
    };
    result.unwrap_or_else(Outcome::Failed)
}

fn into_http(r: Response) -> HttpResponse {
    let mut out = HttpResponse::new(Body::from(r.body));
    *out.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.append(HeaderName::from_static(lower(name)), v);
        }
    }
    out
}

/// `HeaderName::from_static` wants lower case; the endpoint's names are
/// a fixed set, written as the RFCs do.
fn lower(name: &'static str) -> &'static str {
    match name {
        "Content-Type" => "content-type",
        "Location" => "location",
        "ETag" => "etag",
        "Accept-Patch" => "accept-patch",
        "Accept-Post" => "accept-post",
        "Link" => "link",
        "Allow" => "allow",
        "Retry-After" => "retry-after",
        "WWW-Authenticate" => "www-authenticate",
        "Access-Control-Allow-Origin" => "access-control-allow-origin",
        "Access-Control-Allow-Methods" => "access-control-allow-methods",
        "Access-Control-Allow-Headers" => "access-control-allow-headers",
        "Access-Control-Expose-Headers" => "access-control-expose-headers",
        "Access-Control-Max-Age" => "access-control-max-age",
        _ => "x-rtclab-unknown",
    }
}
