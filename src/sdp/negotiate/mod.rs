//! Offer/answer (RFC 3264) as JSEP (RFC 8829) uses it for WebRTC: a
//! [`Session`] that writes offers and answers from local capabilities and
//! transceivers, and [`negotiate`], which reads what an offer/answer pair
//! agreed ([`Negotiated`]).
//!
//! rtclab always bundles (RFC 8843 "max-bundle": one ICE/DTLS transport for
//! every m-line) and always multiplexes RTCP (RFC 5761, RFC 8858).
//!
//! The module's three jobs, one file each:
//!
//! - `types.rs`: what goes in and what comes out ([`Capabilities`],
//!   [`TransportParams`], [`Transceiver`], [`Negotiated`],
//!   [`NegotiationError`]);
//! - `read.rs`: [`negotiate`], the reader of an offer/answer pair;
//! - `session.rs`: [`Session`], the JSEP writer of offers and answers
//!   (RFC 8829 §5.2, §5.3), which keeps the m-lines in order across
//!   renegotiations;
//!
//! and `section.rs`, what both the reader and the writer look up in one
//! media section (its codecs, transport attributes, direction).

mod read;
mod section;
mod session;
mod types;

pub use read::negotiate;
pub use session::Session;
pub use types::*;
