//! Variable-length parameters of INIT, INIT ACK and RE-CONFIG (RFC 9260 §3.2.1,
//! RFC 3758 §3.1, RFC 5061 §4.2.7, RFC 6525 §4), and error causes (RFC 9260 §3.3.10).

use super::Error;

/// RFC 9260 §3.3.3: State Cookie.
pub const STATE_COOKIE: u16 = 7;
/// RFC 9260 §3.3.3: Unrecognized Parameter (in INIT ACK).
pub const UNRECOGNIZED_PARAMETER: u16 = 8;
/// RFC 9260 §3.3.5: Heartbeat Info.
pub const HEARTBEAT_INFO: u16 = 1;
/// RFC 5061 §4.2.7: Supported Extensions.
pub const SUPPORTED_EXTENSIONS: u16 = 0x8008;
/// RFC 3758 §3.1: Forward-TSN-Supported.
pub const FORWARD_TSN_SUPPORTED: u16 = 0xC000;
/// RFC 6525 §4.1: Outgoing SSN Reset Request.
pub const OUTGOING_RESET_REQUEST: u16 = 13;
/// RFC 6525 §4.2: Incoming SSN Reset Request.
pub const INCOMING_RESET_REQUEST: u16 = 14;
/// RFC 6525 §4.4: Re-configuration Response.
pub const RECONFIG_RESPONSE: u16 = 16;

/// A bounds-checked big-endian reader over a byte slice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
    pub(crate) what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.remaining() < n {
            return Err(Error::Truncated {
                what: self.what,
                needed: self.pos + n,
                got: self.buf.len(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub(crate) fn u16(&mut self) -> Result<u16, Error> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, Error> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Pads `out` with zero bytes to a multiple of four (RFC 9260 §3.2: chunks and
/// parameters end on a 4-byte boundary; the padding is not counted in lengths).
pub(crate) fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Iterates over TLV parameters (type, value) with 4-byte padding, as in
/// INIT, INIT ACK, RE-CONFIG and error causes. A length below 4 or past the
/// buffer ends the walk with an error.
pub(crate) fn tlvs<'a>(
    buf: &'a [u8],
    what: &'static str,
) -> impl Iterator<Item = Result<(u16, &'a [u8]), Error>> + 'a {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let rest = &buf[pos..];
        if rest.len() < 4 {
            failed = true;
            return Some(Err(Error::Truncated {
                what,
                needed: pos + 4,
                got: buf.len(),
            }));
        }
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len < 4 || len > rest.len() {
            failed = true;
            return Some(Err(Error::BadLength {
                what,
                offset: pos,
                length: len,
            }));
        }
        let value = &rest[4..len];
        pos += (len + 3) & !3;
        Some(Ok((typ, value)))
    })
}

/// Writes one TLV. It first pads what came before to a 4-byte boundary and
/// leaves its own padding to whatever follows: RFC 9260 §3.2 counts the
/// padding of every parameter in the chunk length except the last one's.
pub(crate) fn emit_tlv(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
    pad4(out);
    out.extend_from_slice(&typ.to_be_bytes());
    out.extend_from_slice(&((value.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// A parameter of INIT or INIT ACK (RFC 9260 §3.3.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// The signed state cookie the INIT ACK carries (RFC 9260 §3.3.3).
    StateCookie(Vec<u8>),
    /// Chunk types the sender supports beyond RFC 9260 (RFC 5061 §4.2.7).
    SupportedExtensions(Vec<u8>),
    /// The sender understands FORWARD TSN (RFC 3758 §3.1).
    ForwardTsnSupported,
    /// A parameter of the INIT we did not understand, echoed whole (type,
    /// length, value) in the INIT ACK (RFC 9260 §3.3.3).
    UnrecognizedParameter(Vec<u8>),
    /// Any other parameter (addresses, ECN, AUTH, …), kept as type and value.
    Unknown {
        /// Parameter type; its upper two bits say what to do with it (RFC 9260 §3.2.1).
        typ: u16,
        /// The value, without padding.
        value: Vec<u8>,
    },
}

impl Param {
    /// Parses one parameter from its type and value.
    pub fn parse(typ: u16, value: &[u8]) -> Result<Param, Error> {
        Ok(match typ {
            STATE_COOKIE => Param::StateCookie(value.to_vec()),
            SUPPORTED_EXTENSIONS => Param::SupportedExtensions(value.to_vec()),
            FORWARD_TSN_SUPPORTED => {
                if !value.is_empty() {
                    return Err(Error::BadLength {
                        what: "Forward-TSN-Supported",
                        offset: 0,
                        length: value.len() + 4,
                    });
                }
                Param::ForwardTsnSupported
            }
            UNRECOGNIZED_PARAMETER => Param::UnrecognizedParameter(value.to_vec()),
            typ => Param::Unknown {
                typ,
                value: value.to_vec(),
            },
        })
    }

    /// The parameter type.
    pub fn typ(&self) -> u16 {
        match self {
            Param::StateCookie(_) => STATE_COOKIE,
            Param::SupportedExtensions(_) => SUPPORTED_EXTENSIONS,
            Param::ForwardTsnSupported => FORWARD_TSN_SUPPORTED,
            Param::UnrecognizedParameter(_) => UNRECOGNIZED_PARAMETER,
            Param::Unknown { typ, .. } => *typ,
        }
    }

    /// Appends the parameter (padding what precedes it, see `emit_tlv`).
    pub fn emit(&self, out: &mut Vec<u8>) {
        match self {
            Param::StateCookie(v)
            | Param::SupportedExtensions(v)
            | Param::UnrecognizedParameter(v) => emit_tlv(out, self.typ(), v),
            Param::ForwardTsnSupported => emit_tlv(out, FORWARD_TSN_SUPPORTED, &[]),
            Param::Unknown { typ, value } => emit_tlv(out, *typ, value),
        }
    }
}

/// RFC 9260 §3.3.10: an error cause in ABORT or ERROR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorCause {
    /// Cause code (1 invalid stream, 3 stale cookie, 6 unrecognized chunk
    /// type, 8 unrecognized parameters, 12 user-initiated abort, 13 protocol
    /// violation, …).
    pub code: u16,
    /// Cause-specific information.
    pub info: Vec<u8>,
}

impl ErrorCause {
    /// RFC 9260 §3.3.10.6: Unrecognized Chunk Type.
    pub const UNRECOGNIZED_CHUNK: u16 = 6;
    /// RFC 9260 §3.3.10.8: Unrecognized Parameters.
    pub const UNRECOGNIZED_PARAMETERS: u16 = 8;
    /// RFC 9260 §3.3.10.3: Stale Cookie.
    pub const STALE_COOKIE: u16 = 3;
    /// RFC 9260 §3.3.10.12: User-Initiated Abort.
    pub const USER_INITIATED_ABORT: u16 = 12;
    /// RFC 9260 §3.3.10.13: Protocol Violation.
    pub const PROTOCOL_VIOLATION: u16 = 13;

    /// Parses the causes of an ABORT or ERROR chunk.
    pub fn parse_all(buf: &[u8]) -> Result<Vec<ErrorCause>, Error> {
        tlvs(buf, "error cause")
            .map(|r| {
                r.map(|(code, info)| ErrorCause {
                    code,
                    info: info.to_vec(),
                })
            })
            .collect()
    }

    /// Appends the cause (padding what precedes it).
    pub fn emit(&self, out: &mut Vec<u8>) {
        emit_tlv(out, self.code, &self.info);
    }

    /// A readable description.
    pub fn describe(&self) -> String {
        let name = match self.code {
            1 => "invalid stream identifier",
            2 => "missing mandatory parameter",
            3 => "stale cookie",
            4 => "out of resource",
            5 => "unresolvable address",
            6 => "unrecognized chunk type",
            7 => "invalid mandatory parameter",
            8 => "unrecognized parameters",
            9 => "no user data",
            10 => "cookie received while shutting down",
            11 => "restart with new addresses",
            12 => "user-initiated abort",
            13 => "protocol violation",
            _ => "unknown cause",
        };
        if matches!(self.code, 12 | 13) && !self.info.is_empty() {
            format!("{name}: {}", String::from_utf8_lossy(&self.info))
        } else {
            format!("{name} (cause {})", self.code)
        }
    }
}

/// A parameter of a RE-CONFIG chunk (RFC 6525 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReConfigParam {
    /// RFC 6525 §4.1: the sender resets its outgoing streams (the receiver's
    /// incoming ones); an empty list means all streams.
    OutgoingResetRequest {
        /// Re-configuration Request Sequence Number.
        request_seq: u32,
        /// Re-configuration Response Sequence Number (the peer request this answers, if any).
        response_seq: u32,
        /// Sender's Last Assigned TSN.
        last_tsn: u32,
        /// The streams.
        streams: Vec<u16>,
    },
    /// RFC 6525 §4.2: asks the receiver to reset its outgoing streams.
    IncomingResetRequest {
        /// Re-configuration Request Sequence Number.
        request_seq: u32,
        /// The streams.
        streams: Vec<u16>,
    },
    /// RFC 6525 §4.4: the answer to a request.
    Response {
        /// The Request Sequence Number this answers.
        response_seq: u32,
        /// Result (0 nothing to do, 1 performed, 2 denied, 3 wrong SSN, 4
        /// in progress already, 5 bad sequence number, 6 in progress).
        result: u32,
        /// Sender's and receiver's next TSN (only for a TSN reset).
        next_tsns: Option<(u32, u32)>,
    },
    /// Any other request (SSN/TSN reset, add streams), kept as type and value.
    Unknown {
        /// Parameter type.
        typ: u16,
        /// Value.
        value: Vec<u8>,
    },
}

impl ReConfigParam {
    /// RFC 6525 §4.4: Success - Performed.
    pub const RESULT_PERFORMED: u32 = 1;
    /// RFC 6525 §4.4: Denied.
    pub const RESULT_DENIED: u32 = 2;
    /// RFC 6525 §4.4: Error - Bad Sequence Number.
    pub const RESULT_BAD_SEQ: u32 = 5;
    /// RFC 6525 §4.4: In progress.
    pub const RESULT_IN_PROGRESS: u32 = 6;

    /// Parses one parameter from its type and value.
    pub fn parse(typ: u16, value: &[u8]) -> Result<ReConfigParam, Error> {
        let mut r = Reader::new(value, "RE-CONFIG parameter");
        let streams = |r: &mut Reader<'_>| -> Result<Vec<u16>, Error> {
            let rest = r.rest();
            if rest.len() % 2 != 0 {
                return Err(Error::BadLength {
                    what: "reset stream list",
                    offset: 0,
                    length: rest.len(),
                });
            }
            Ok(rest
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect())
        };
        Ok(match typ {
            OUTGOING_RESET_REQUEST => ReConfigParam::OutgoingResetRequest {
                request_seq: r.u32()?,
                response_seq: r.u32()?,
                last_tsn: r.u32()?,
                streams: streams(&mut r)?,
            },
            INCOMING_RESET_REQUEST => ReConfigParam::IncomingResetRequest {
                request_seq: r.u32()?,
                streams: streams(&mut r)?,
            },
            RECONFIG_RESPONSE => {
                let response_seq = r.u32()?;
                let result = r.u32()?;
                let next_tsns = if r.remaining() >= 8 {
                    Some((r.u32()?, r.u32()?))
                } else {
                    None
                };
                if r.remaining() != 0 {
                    return Err(Error::BadLength {
                        what: "Re-configuration Response",
                        offset: 0,
                        length: value.len() + 4,
                    });
                }
                ReConfigParam::Response {
                    response_seq,
                    result,
                    next_tsns,
                }
            }
            typ => ReConfigParam::Unknown {
                typ,
                value: value.to_vec(),
            },
        })
    }

    /// Appends the parameter (padding what precedes it, see `emit_tlv`).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let mut v = Vec::with_capacity(16);
        let typ = match self {
            ReConfigParam::OutgoingResetRequest {
                request_seq,
                response_seq,
                last_tsn,
                streams,
            } => {
                v.extend_from_slice(&request_seq.to_be_bytes());
                v.extend_from_slice(&response_seq.to_be_bytes());
                v.extend_from_slice(&last_tsn.to_be_bytes());
                for s in streams {
                    v.extend_from_slice(&s.to_be_bytes());
                }
                OUTGOING_RESET_REQUEST
            }
            ReConfigParam::IncomingResetRequest {
                request_seq,
                streams,
            } => {
                v.extend_from_slice(&request_seq.to_be_bytes());
                for s in streams {
                    v.extend_from_slice(&s.to_be_bytes());
                }
                INCOMING_RESET_REQUEST
            }
            ReConfigParam::Response {
                response_seq,
                result,
                next_tsns,
            } => {
                v.extend_from_slice(&response_seq.to_be_bytes());
                v.extend_from_slice(&result.to_be_bytes());
                if let Some((a, b)) = next_tsns {
                    v.extend_from_slice(&a.to_be_bytes());
                    v.extend_from_slice(&b.to_be_bytes());
                }
                RECONFIG_RESPONSE
            }
            ReConfigParam::Unknown { typ, value } => {
                v.extend_from_slice(value);
                *typ
            }
        };
        emit_tlv(out, typ, &v);
    }
}
