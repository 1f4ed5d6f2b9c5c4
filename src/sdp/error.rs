//! Errors of the SDP parser and of offer/answer.

use std::fmt;

/// Why a session description did not parse (RFC 8866 §5, §9).
///
/// Every error about a line carries its 1-based line number, so that a
/// signaling server or a learner can point at the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is longer than [`MAX_SDP_LEN`](super::MAX_SDP_LEN).
    TooLong(usize),
    /// The input is empty.
    Empty,
    /// A cap was hit: too many lines, media sections, attributes or list
    /// items (the caps in [`sdp`](super)).
    TooMany {
        /// The line where the cap was hit.
        line: usize,
        /// What there were too many of.
        what: &'static str,
        /// The cap.
        max: usize,
    },
    /// A line is not UTF-8, or holds a NUL or a stray CR.
    BadText {
        /// The line.
        line: usize,
    },
    /// A line is not `<letter>=<value>`, or its value is not what its type
    /// requires.
    Malformed {
        /// The line.
        line: usize,
        /// What the parser expected there.
        expected: &'static str,
        /// The line as found (at most 80 characters).
        found: String,
    },
    /// A line appears where RFC 8866 §5's order does not allow it (or the
    /// description ended early).
    Unexpected {
        /// The line (one past the last line when the input ended early).
        line: usize,
        /// The line type found (`'\0'` at the end of input).
        found: char,
        /// What may come here.
        expected: &'static str,
    },
}

impl Error {
    pub(crate) fn malformed(line: usize, expected: &'static str, found: &str) -> Error {
        Error::Malformed {
            line,
            expected,
            found: found.chars().take(80).collect(),
        }
    }

    /// The 1-based line number the error is about, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            Error::TooMany { line, .. }
            | Error::BadText { line }
            | Error::Malformed { line, .. }
            | Error::Unexpected { line, .. } => Some(*line),
            Error::TooLong(_) | Error::Empty => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLong(n) => write!(
                f,
                "session description of {n} bytes (max {})",
                super::MAX_SDP_LEN
            ),
            Error::Empty => f.write_str("empty session description"),
            Error::TooMany { line, what, max } => {
                write!(f, "line {line}: more than {max} {what}")
            }
            Error::BadText { line } => {
                write!(f, "line {line}: not UTF-8 text, or a NUL or CR inside")
            }
            Error::Malformed {
                line,
                expected,
                found,
            } => write!(f, "line {line}: expected {expected}, found {found:?}"),
            Error::Unexpected {
                line,
                found: '\0',
                expected,
            } => write!(f, "line {line}: description ended; expected {expected}"),
            Error::Unexpected {
                line,
                found,
                expected,
            } => write!(
                f,
                "line {line}: unexpected {found}= line; expected {expected}"
            ),
        }
    }
}

impl std::error::Error for Error {}
