//! [`Mid`]: an m-line's identification tag (`a=mid`, RFC 5888 §4; RFC 8843
//! §15 carries it in RTP as a header extension) as a small `Copy` value.

use std::fmt;
use std::ops::Deref;

/// A media id held inline: copying or comparing one allocates nothing, so
/// it can label every packet of [`crate::peer::transport::Event::Rtp`].
///
/// At most [`Mid::MAX_LEN`] bytes: the RTP mid extension holds 16 in its
/// one-byte form (RFC 8285 §4.2), and browsers use one to three digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mid {
    len: u8,
    bytes: [u8; Mid::MAX_LEN],
}

impl Mid {
    /// The longest mid held.
    pub const MAX_LEN: usize = 16;

    /// `mid`, or `None` if it is longer than [`Mid::MAX_LEN`] bytes.
    pub fn new(mid: &str) -> Option<Mid> {
        let len = mid.len();
        if len > Self::MAX_LEN {
            return None;
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..len].copy_from_slice(mid.as_bytes());
        Some(Mid {
            len: len as u8,
            bytes,
        })
    }

    /// The mid as text.
    pub fn as_str(&self) -> &str {
        // Built from a `&str` and never changed: the bytes are UTF-8.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or_default()
    }
}

impl Deref for Mid {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mid({:?})", self.as_str())
    }
}

impl fmt::Display for Mid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for Mid {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Mid {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_up_to_sixteen_bytes() {
        let m = Mid::new("video-0").unwrap();
        assert_eq!(m, "video-0");
        assert_eq!(m.to_string(), "video-0");
        assert_eq!(Mid::new(&"x".repeat(16)).map(|m| m.len()), Some(16));
        assert_eq!(Mid::new(&"x".repeat(17)), None);
        assert_eq!(Mid::new("").as_deref(), Some(""));
    }
}
