//! [`Mid`]: an m-line's identification tag (`a=mid`, RFC 5888 §4), kept in
//! the leaf vocabulary ([`crate::vocab::mid`]) since RTP carries it too
//! (RFC 8843 §15).

pub use crate::vocab::mid::Mid;
