//! The web pages of the examples, compiled into the binary with
//! `include_bytes!` from the repository's top-level `web/` folder, so that
//! `rtclab signaling` (and the demo) serve them from anywhere, with no build
//! step and nothing fetched from elsewhere. Editing a page needs a rebuild.
//!
//! A new example page adds its files here, one line each.

/// A file served over HTTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// The URL path (`/07_signaling/` for a folder's `index.html`).
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes.
    pub body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Every page of the examples.
pub const PAGES: &[Page] = &[
    Page {
        path: "/",
        content_type: HTML,
        body: include_bytes!("../../web/index.html"),
    },
    Page {
        path: "/style.css",
        content_type: CSS,
        body: include_bytes!("../../web/style.css"),
    },
    Page {
        path: "/04_camera/",
        content_type: HTML,
        body: include_bytes!("../../web/04_camera/index.html"),
    },
    Page {
        path: "/04_camera/main.js",
        content_type: JS,
        body: include_bytes!("../../web/04_camera/main.js"),
    },
    Page {
        path: "/05_peerconnection/",
        content_type: HTML,
        body: include_bytes!("../../web/05_peerconnection/index.html"),
    },
    Page {
        path: "/05_peerconnection/main.js",
        content_type: JS,
        body: include_bytes!("../../web/05_peerconnection/main.js"),
    },
    Page {
        path: "/06_datachannel/",
        content_type: HTML,
        body: include_bytes!("../../web/06_datachannel/index.html"),
    },
    Page {
        path: "/06_datachannel/main.js",
        content_type: JS,
        body: include_bytes!("../../web/06_datachannel/main.js"),
    },
    Page {
        path: "/07_signaling/",
        content_type: HTML,
        body: include_bytes!("../../web/07_signaling/index.html"),
    },
    Page {
        path: "/07_signaling/main.js",
        content_type: JS,
        body: include_bytes!("../../web/07_signaling/main.js"),
    },
    Page {
        path: "/08_call/",
        content_type: HTML,
        body: include_bytes!("../../web/08_call/index.html"),
    },
    Page {
        path: "/08_call/main.js",
        content_type: JS,
        body: include_bytes!("../../web/08_call/main.js"),
    },
    Page {
        path: "/09_photo/",
        content_type: HTML,
        body: include_bytes!("../../web/09_photo/index.html"),
    },
    Page {
        path: "/09_photo/main.js",
        content_type: JS,
        body: include_bytes!("../../web/09_photo/main.js"),
    },
    // The WHIP/WHEP page is served under /wish/ (the IETF working group):
    // /whip/… and /whep/… are the endpoints' when the server mounts them.
    Page {
        path: "/wish/",
        content_type: HTML,
        body: include_bytes!("../../web/whip/index.html"),
    },
    Page {
        path: "/wish/whip.js",
        content_type: JS,
        body: include_bytes!("../../web/whip/whip.js"),
    },
];
