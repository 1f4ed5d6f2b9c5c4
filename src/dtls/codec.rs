//! The small reader/writer for TLS presentation-language structures (RFC 5246
//! §4): big-endian integers of 1, 2, 3 and 6 bytes, and vectors prefixed by a
//! 1-, 2- or 3-byte length. Every read checks the length first and names the
//! field it was reading in the error.

use super::Error;

/// A cursor over a byte slice that never panics.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], Error> {
        if self.remaining() < n {
            return Err(Error::Truncated {
                what,
                offset: self.pos,
                needed: n,
                got: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes everything left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, Error> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self, what: &'static str) -> Result<u32, Error> {
        let b = self.take(3, what)?;
        Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    pub(crate) fn u48(&mut self, what: &'static str) -> Result<u64, Error> {
        let b = self.take(6, what)?;
        Ok(u64::from_be_bytes([
            0, 0, b[0], b[1], b[2], b[3], b[4], b[5],
        ]))
    }

    /// A vector with a 1-byte length prefix.
    pub(crate) fn vec8(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u8(what)? as usize;
        self.take(n, what)
    }

    /// A vector with a 2-byte length prefix.
    pub(crate) fn vec16(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u16(what)? as usize;
        self.take(n, what)
    }

    /// A vector with a 3-byte length prefix.
    pub(crate) fn vec24(&mut self, what: &'static str) -> Result<&'a [u8], Error> {
        let n = self.u24(what)? as usize;
        self.take(n, what)
    }

    /// Fails unless everything was consumed.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), Error> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(Error::TrailingBytes {
                what,
                offset: self.pos,
                count: self.remaining(),
            })
        }
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u24(out: &mut Vec<u8>, v: u32) {
    debug_assert!(v < 1 << 24, "u24 overflow is a bug in rtclab");
    out.extend_from_slice(&v.to_be_bytes()[1..]);
}

/// Writes a vector with an `N`-byte length prefix (N = 1, 2 or 3), the body
/// written by `body`. Panics only if the body exceeds the prefix's range,
/// which the typed encoders rule out by construction (their proptests check
/// it); callers with unbounded data must check first.
pub(crate) fn put_vec<F: FnOnce(&mut Vec<u8>)>(out: &mut Vec<u8>, prefix: usize, body: F) {
    let at = out.len();
    out.extend(std::iter::repeat_n(0, prefix));
    body(out);
    let len = out.len() - at - prefix;
    assert!(
        len < 1usize << (8 * prefix),
        "vector of {len} bytes does not fit a {prefix}-byte length (bug in rtclab)"
    );
    let bytes = (len as u32).to_be_bytes();
    out[at..at + prefix].copy_from_slice(&bytes[4 - prefix..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_errors() {
        let mut r = Reader::new(&[1, 0, 2, 0, 0, 3, 2, 9, 9, 7]);
        assert_eq!(r.u8("a").unwrap(), 1);
        assert_eq!(r.u16("b").unwrap(), 2);
        assert_eq!(r.u24("c").unwrap(), 3);
        assert_eq!(r.vec8("d").unwrap(), &[9, 9]);
        assert!(r.finish("x").is_err());
        assert!(matches!(
            r.u16("e"),
            Err(Error::Truncated {
                what: "e",
                offset: 9,
                ..
            })
        ));
    }

    #[test]
    fn put_vec_prefixes() {
        let mut v = Vec::new();
        put_vec(&mut v, 3, |o| o.extend_from_slice(&[1, 2]));
        assert_eq!(v, [0, 0, 2, 1, 2]);
    }
}
