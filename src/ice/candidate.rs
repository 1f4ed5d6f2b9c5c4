//! The `candidate:` attribute (RFC 8839 §5.1), candidate priorities
//! (RFC 8445 §5.1.2) and foundations (RFC 8445 §5.1.1.3): the types live in
//! the leaf vocabulary ([`crate::vocab::candidate`]), since SDP's
//! `a=candidate` lines and signaling's trickled candidates carry the same
//! value the agent pairs.

pub use crate::vocab::candidate::*;
