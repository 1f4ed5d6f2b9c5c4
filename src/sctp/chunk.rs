//! SCTP chunks (RFC 9260 §3.2, §3.3; RFC 3758 §3.2; RFC 6525 §3.1; RFC 8260 §2).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Chunk Type  | Chunk  Flags  |        Chunk Length           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! \                          Chunk Value                          \
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! The length counts the 4-byte header and the value, not the padding to a
//! multiple of four that follows.

use super::Error;
use super::param::{
    ErrorCause, HEARTBEAT_INFO, Param, ReConfigParam, Reader, emit_tlv, pad4, tlvs,
};

/// Chunk type numbers.
pub mod kind {
    /// RFC 9260 §3.3.1.
    pub const DATA: u8 = 0;
    /// RFC 9260 §3.3.2.
    pub const INIT: u8 = 1;
    /// RFC 9260 §3.3.3.
    pub const INIT_ACK: u8 = 2;
    /// RFC 9260 §3.3.4.
    pub const SACK: u8 = 3;
    /// RFC 9260 §3.3.5.
    pub const HEARTBEAT: u8 = 4;
    /// RFC 9260 §3.3.6.
    pub const HEARTBEAT_ACK: u8 = 5;
    /// RFC 9260 §3.3.7.
    pub const ABORT: u8 = 6;
    /// RFC 9260 §3.3.8.
    pub const SHUTDOWN: u8 = 7;
    /// RFC 9260 §3.3.9.
    pub const SHUTDOWN_ACK: u8 = 8;
    /// RFC 9260 §3.3.10.
    pub const ERROR: u8 = 9;
    /// RFC 9260 §3.3.11.
    pub const COOKIE_ECHO: u8 = 10;
    /// RFC 9260 §3.3.12.
    pub const COOKIE_ACK: u8 = 11;
    /// RFC 9260 §3.3.13.
    pub const SHUTDOWN_COMPLETE: u8 = 14;
    /// RFC 8260 §2.1.
    pub const I_DATA: u8 = 64;
    /// RFC 6525 §3.1.
    pub const RE_CONFIG: u8 = 130;
    /// RFC 3758 §3.2.
    pub const FORWARD_TSN: u8 = 192;
    /// RFC 8260 §2.3.
    pub const I_FORWARD_TSN: u8 = 194;
}

/// DATA/I-DATA flag: the last fragment (E).
pub const FLAG_END: u8 = 0x01;
/// DATA/I-DATA flag: the first fragment (B).
pub const FLAG_BEGIN: u8 = 0x02;
/// DATA/I-DATA flag: unordered (U).
pub const FLAG_UNORDERED: u8 = 0x04;
/// DATA/I-DATA flag: SACK immediately (I, RFC 7053).
pub const FLAG_IMMEDIATE: u8 = 0x08;
/// ABORT / SHUTDOWN COMPLETE flag: the verification tag is the sender's own
/// (reflected) tag (T).
pub const FLAG_T: u8 = 0x01;

/// Size of a DATA chunk header (RFC 9260 §3.3.1).
pub const DATA_HEADER_LEN: usize = 16;

/// A DATA chunk (RFC 9260 §3.3.1), borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Data<'a> {
    /// Flags: `FLAG_UNORDERED | FLAG_BEGIN | FLAG_END | FLAG_IMMEDIATE`.
    pub flags: u8,
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Stream sequence number (ignored when unordered).
    pub ssn: u16,
    /// Payload protocol identifier (WebRTC: 50 DCEP, 51 string, 53 binary, …).
    pub ppid: u32,
    /// User data (one fragment of a message).
    pub payload: &'a [u8],
}

impl Data<'_> {
    /// Appends the chunk header for a payload of `len` bytes; the caller
    /// appends the payload and the padding (the send path copies straight
    /// from its queue, see [`emit_data`]).
    pub fn emit_header(
        out: &mut Vec<u8>,
        flags: u8,
        tsn: u32,
        stream: u16,
        ssn: u16,
        ppid: u32,
        len: usize,
    ) {
        out.push(kind::DATA);
        out.push(flags);
        out.extend_from_slice(&((DATA_HEADER_LEN + len) as u16).to_be_bytes());
        out.extend_from_slice(&tsn.to_be_bytes());
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(&ssn.to_be_bytes());
        out.extend_from_slice(&ppid.to_be_bytes());
    }
}

/// Appends a whole DATA chunk with padding.
pub fn emit_data(
    out: &mut Vec<u8>,
    flags: u8,
    tsn: u32,
    stream: u16,
    ssn: u16,
    ppid: u32,
    payload: &[u8],
) {
    Data::emit_header(out, flags, tsn, stream, ssn, ppid, payload.len());
    out.extend_from_slice(payload);
    pad4(out);
}

/// An I-DATA chunk (RFC 8260 §2.1), borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IData<'a> {
    /// Flags as for DATA.
    pub flags: u8,
    /// Transmission sequence number.
    pub tsn: u32,
    /// Stream identifier.
    pub stream: u16,
    /// Message identifier.
    pub mid: u32,
    /// PPID when `B` is set, else the fragment sequence number (FSN).
    pub ppid_or_fsn: u32,
    /// User data.
    pub payload: &'a [u8],
}

/// INIT and INIT ACK (RFC 9260 §3.3.2, §3.3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Init {
    /// The tag the receiver must put in every packet it sends us (non-zero).
    pub initiate_tag: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Number of outbound streams the sender wants.
    pub outbound_streams: u16,
    /// Maximum inbound streams the sender allows.
    pub max_inbound_streams: u16,
    /// The first TSN the sender will use.
    pub initial_tsn: u32,
    /// Optional/variable parameters.
    pub params: Vec<Param>,
}

/// A gap-ack block: TSNs `cum + start ..= cum + end` were received (RFC 9260 §3.3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapBlock {
    /// Start offset from the cumulative TSN ack.
    pub start: u16,
    /// End offset (inclusive).
    pub end: u16,
}

/// SACK (RFC 9260 §3.3.4).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sack {
    /// Every TSN up to here was received.
    pub cum_tsn_ack: u32,
    /// Advertised receiver window credit.
    pub a_rwnd: u32,
    /// Blocks received above the cumulative TSN.
    pub gaps: Vec<GapBlock>,
    /// TSNs received more than once since the last SACK.
    pub dups: Vec<u32>,
}

/// FORWARD TSN (RFC 3758 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardTsn {
    /// The receiver moves its cumulative TSN to here.
    pub new_cum_tsn: u32,
    /// For ordered streams: (stream, largest skipped SSN).
    pub streams: Vec<(u16, u16)>,
}

/// I-FORWARD-TSN (RFC 8260 §2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IForwardTsn {
    /// The receiver moves its cumulative TSN to here.
    pub new_cum_tsn: u32,
    /// (stream, unordered, largest skipped MID).
    pub streams: Vec<(u16, bool, u32)>,
}

/// One SCTP chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// User data.
    Data(Data<'a>),
    /// Start of the handshake.
    Init(Init),
    /// Answer to INIT, with the state cookie.
    InitAck(Init),
    /// Selective acknowledgement.
    Sack(Sack),
    /// Path probe; the value is the Heartbeat Info the ACK must echo.
    Heartbeat(Vec<u8>),
    /// Echo of a heartbeat's info.
    HeartbeatAck(Vec<u8>),
    /// Ends the association at once.
    Abort {
        /// T bit: the verification tag is reflected.
        t: bool,
        /// Why.
        causes: Vec<ErrorCause>,
    },
    /// Graceful close: no more data from the sender.
    Shutdown {
        /// The sender's cumulative TSN ack.
        cum_tsn_ack: u32,
    },
    /// Answer to SHUTDOWN once all data was acknowledged.
    ShutdownAck,
    /// Last packet of a graceful close.
    ShutdownComplete {
        /// T bit: the verification tag is reflected.
        t: bool,
    },
    /// An operational error that does not end the association.
    Error(Vec<ErrorCause>),
    /// The cookie from INIT ACK, sent back.
    CookieEcho(Vec<u8>),
    /// The association is up.
    CookieAck,
    /// Partial reliability: skip TSNs.
    ForwardTsn(ForwardTsn),
    /// Stream reconfiguration: one or two parameters.
    ReConfig(Vec<ReConfigParam>),
    /// User data with message identifiers (RFC 8260).
    IData(IData<'a>),
    /// I-FORWARD-TSN (RFC 8260).
    IForwardTsn(IForwardTsn),
    /// A chunk type we do not know; what to do with it is in the upper two
    /// bits of the type (RFC 9260 §3.2).
    Unknown {
        /// The chunk type.
        typ: u8,
        /// The flags.
        flags: u8,
        /// The value.
        value: &'a [u8],
    },
}

fn exact(what: &'static str, value: &[u8], len: usize) -> Result<(), Error> {
    if value.len() != len {
        return Err(Error::BadLength {
            what,
            offset: 0,
            length: value.len() + 4,
        });
    }
    Ok(())
}

impl<'a> Chunk<'a> {
    /// Parses one chunk from its type, flags and value (the bytes after the
    /// 4-byte chunk header, without padding).
    pub fn parse(typ: u8, flags: u8, value: &'a [u8]) -> Result<Chunk<'a>, Error> {
        let mut r = Reader::new(value, "chunk");
        Ok(match typ {
            kind::DATA => {
                r.what = "DATA";
                Chunk::Data(Data {
                    flags,
                    tsn: r.u32()?,
                    stream: r.u16()?,
                    ssn: r.u16()?,
                    ppid: r.u32()?,
                    payload: r.rest(),
                })
            }
            kind::I_DATA => {
                r.what = "I-DATA";
                let tsn = r.u32()?;
                let stream = r.u16()?;
                r.u16()?;
                Chunk::IData(IData {
                    flags,
                    tsn,
                    stream,
                    mid: r.u32()?,
                    ppid_or_fsn: r.u32()?,
                    payload: r.rest(),
                })
            }
            kind::INIT | kind::INIT_ACK => {
                r.what = if typ == kind::INIT {
                    "INIT"
                } else {
                    "INIT ACK"
                };
                let initiate_tag = r.u32()?;
                let a_rwnd = r.u32()?;
                let outbound_streams = r.u16()?;
                let max_inbound_streams = r.u16()?;
                let initial_tsn = r.u32()?;
                let mut params = Vec::new();
                for p in tlvs(r.rest(), "INIT parameter") {
                    let (t, v) = p?;
                    params.push(Param::parse(t, v)?);
                }
                let init = Init {
                    initiate_tag,
                    a_rwnd,
                    outbound_streams,
                    max_inbound_streams,
                    initial_tsn,
                    params,
                };
                if typ == kind::INIT {
                    Chunk::Init(init)
                } else {
                    Chunk::InitAck(init)
                }
            }
            kind::SACK => {
                r.what = "SACK";
                let cum_tsn_ack = r.u32()?;
                let a_rwnd = r.u32()?;
                let ngaps = r.u16()? as usize;
                let ndups = r.u16()? as usize;
                if r.remaining() != ngaps * 4 + ndups * 4 {
                    return Err(Error::BadLength {
                        what: "SACK",
                        offset: 0,
                        length: value.len() + 4,
                    });
                }
                let mut gaps = Vec::with_capacity(ngaps);
                for _ in 0..ngaps {
                    gaps.push(GapBlock {
                        start: r.u16()?,
                        end: r.u16()?,
                    });
                }
                let mut dups = Vec::with_capacity(ndups);
                for _ in 0..ndups {
                    dups.push(r.u32()?);
                }
                Chunk::Sack(Sack {
                    cum_tsn_ack,
                    a_rwnd,
                    gaps,
                    dups,
                })
            }
            kind::HEARTBEAT | kind::HEARTBEAT_ACK => {
                let mut info = None;
                for p in tlvs(value, "HEARTBEAT") {
                    let (t, v) = p?;
                    if t == HEARTBEAT_INFO && info.is_none() {
                        info = Some(v.to_vec());
                    }
                }
                let info = info.ok_or(Error::MissingParameter {
                    chunk: "HEARTBEAT",
                    param: "Heartbeat Info",
                })?;
                if typ == kind::HEARTBEAT {
                    Chunk::Heartbeat(info)
                } else {
                    Chunk::HeartbeatAck(info)
                }
            }
            kind::ABORT => Chunk::Abort {
                t: flags & FLAG_T != 0,
                causes: ErrorCause::parse_all(value)?,
            },
            kind::ERROR => Chunk::Error(ErrorCause::parse_all(value)?),
            kind::SHUTDOWN => {
                exact("SHUTDOWN", value, 4)?;
                Chunk::Shutdown {
                    cum_tsn_ack: r.u32()?,
                }
            }
            kind::SHUTDOWN_ACK => {
                exact("SHUTDOWN ACK", value, 0)?;
                Chunk::ShutdownAck
            }
            kind::SHUTDOWN_COMPLETE => {
                exact("SHUTDOWN COMPLETE", value, 0)?;
                Chunk::ShutdownComplete {
                    t: flags & FLAG_T != 0,
                }
            }
            kind::COOKIE_ECHO => Chunk::CookieEcho(value.to_vec()),
            kind::COOKIE_ACK => {
                exact("COOKIE ACK", value, 0)?;
                Chunk::CookieAck
            }
            kind::FORWARD_TSN => {
                r.what = "FORWARD TSN";
                let new_cum_tsn = r.u32()?;
                if r.remaining() % 4 != 0 {
                    return Err(Error::BadLength {
                        what: "FORWARD TSN",
                        offset: 0,
                        length: value.len() + 4,
                    });
                }
                let mut streams = Vec::with_capacity(r.remaining() / 4);
                while r.remaining() > 0 {
                    streams.push((r.u16()?, r.u16()?));
                }
                Chunk::ForwardTsn(ForwardTsn {
                    new_cum_tsn,
                    streams,
                })
            }
            kind::I_FORWARD_TSN => {
                r.what = "I-FORWARD-TSN";
                let new_cum_tsn = r.u32()?;
                if r.remaining() % 8 != 0 {
                    return Err(Error::BadLength {
                        what: "I-FORWARD-TSN",
                        offset: 0,
                        length: value.len() + 4,
                    });
                }
                let mut streams = Vec::with_capacity(r.remaining() / 8);
                while r.remaining() > 0 {
                    let s = r.u16()?;
                    let u = r.u16()? & 1 == 1;
                    streams.push((s, u, r.u32()?));
                }
                Chunk::IForwardTsn(IForwardTsn {
                    new_cum_tsn,
                    streams,
                })
            }
            kind::RE_CONFIG => {
                let mut params = Vec::with_capacity(2);
                for p in tlvs(value, "RE-CONFIG parameter") {
                    let (t, v) = p?;
                    params.push(ReConfigParam::parse(t, v)?);
                }
                Chunk::ReConfig(params)
            }
            typ => Chunk::Unknown { typ, flags, value },
        })
    }

    /// The chunk type.
    pub fn typ(&self) -> u8 {
        match self {
            Chunk::Data(_) => kind::DATA,
            Chunk::Init(_) => kind::INIT,
            Chunk::InitAck(_) => kind::INIT_ACK,
            Chunk::Sack(_) => kind::SACK,
            Chunk::Heartbeat(_) => kind::HEARTBEAT,
            Chunk::HeartbeatAck(_) => kind::HEARTBEAT_ACK,
            Chunk::Abort { .. } => kind::ABORT,
            Chunk::Shutdown { .. } => kind::SHUTDOWN,
            Chunk::ShutdownAck => kind::SHUTDOWN_ACK,
            Chunk::ShutdownComplete { .. } => kind::SHUTDOWN_COMPLETE,
            Chunk::Error(_) => kind::ERROR,
            Chunk::CookieEcho(_) => kind::COOKIE_ECHO,
            Chunk::CookieAck => kind::COOKIE_ACK,
            Chunk::ForwardTsn(_) => kind::FORWARD_TSN,
            Chunk::ReConfig(_) => kind::RE_CONFIG,
            Chunk::IData(_) => kind::I_DATA,
            Chunk::IForwardTsn(_) => kind::I_FORWARD_TSN,
            Chunk::Unknown { typ, .. } => *typ,
        }
    }

    /// Appends the chunk (header, value, padding).
    pub fn emit(&self, out: &mut Vec<u8>) {
        if let Chunk::Data(d) = self {
            emit_data(out, d.flags, d.tsn, d.stream, d.ssn, d.ppid, d.payload);
            return;
        }
        let start = out.len();
        let flags = match self {
            Chunk::Abort { t: true, .. } | Chunk::ShutdownComplete { t: true } => FLAG_T,
            Chunk::IData(d) => d.flags,
            Chunk::Unknown { flags, .. } => *flags,
            _ => 0,
        };
        out.push(self.typ());
        out.push(flags);
        out.extend_from_slice(&[0, 0]);
        match self {
            Chunk::Data(_) => {}
            Chunk::IData(d) => {
                out.extend_from_slice(&d.tsn.to_be_bytes());
                out.extend_from_slice(&d.stream.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&d.mid.to_be_bytes());
                out.extend_from_slice(&d.ppid_or_fsn.to_be_bytes());
                out.extend_from_slice(d.payload);
            }
            Chunk::Init(i) | Chunk::InitAck(i) => {
                out.extend_from_slice(&i.initiate_tag.to_be_bytes());
                out.extend_from_slice(&i.a_rwnd.to_be_bytes());
                out.extend_from_slice(&i.outbound_streams.to_be_bytes());
                out.extend_from_slice(&i.max_inbound_streams.to_be_bytes());
                out.extend_from_slice(&i.initial_tsn.to_be_bytes());
                for p in &i.params {
                    p.emit(out);
                }
            }
            Chunk::Sack(s) => emit_sack_body(out, s.cum_tsn_ack, s.a_rwnd, &s.gaps, &s.dups),
            Chunk::Heartbeat(info) | Chunk::HeartbeatAck(info) => {
                emit_tlv(out, HEARTBEAT_INFO, info)
            }
            Chunk::Abort { causes, .. } | Chunk::Error(causes) => {
                for c in causes {
                    c.emit(out);
                }
            }
            Chunk::Shutdown { cum_tsn_ack } => out.extend_from_slice(&cum_tsn_ack.to_be_bytes()),
            Chunk::ShutdownAck | Chunk::ShutdownComplete { .. } | Chunk::CookieAck => {}
            Chunk::CookieEcho(c) => out.extend_from_slice(c),
            Chunk::ForwardTsn(f) => {
                out.extend_from_slice(&f.new_cum_tsn.to_be_bytes());
                for (s, n) in &f.streams {
                    out.extend_from_slice(&s.to_be_bytes());
                    out.extend_from_slice(&n.to_be_bytes());
                }
            }
            Chunk::IForwardTsn(f) => {
                out.extend_from_slice(&f.new_cum_tsn.to_be_bytes());
                for (s, u, m) in &f.streams {
                    out.extend_from_slice(&s.to_be_bytes());
                    out.extend_from_slice(&(*u as u16).to_be_bytes());
                    out.extend_from_slice(&m.to_be_bytes());
                }
            }
            Chunk::ReConfig(params) => {
                for p in params {
                    p.emit(out);
                }
            }
            Chunk::Unknown { value, .. } => out.extend_from_slice(value),
        }
        // RFC 9260 §3.2: the length counts inner padding but not the last
        // parameter's nor the chunk's own, which `emit_tlv` leaves to here.
        let len = out.len() - start;
        out[start + 2..start + 4].copy_from_slice(&(len as u16).to_be_bytes());
        pad4(out);
    }

    /// The encoded length including padding.
    pub fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.emit(&mut v);
        v.len()
    }
}

/// Appends a SACK chunk from its parts (the send path, without building a [`Sack`]).
pub fn emit_sack(
    out: &mut Vec<u8>,
    cum_tsn_ack: u32,
    a_rwnd: u32,
    gaps: &[GapBlock],
    dups: &[u32],
) {
    out.push(kind::SACK);
    out.push(0);
    out.extend_from_slice(&((16 + 4 * gaps.len() + 4 * dups.len()) as u16).to_be_bytes());
    emit_sack_body(out, cum_tsn_ack, a_rwnd, gaps, dups);
}

fn emit_sack_body(
    out: &mut Vec<u8>,
    cum_tsn_ack: u32,
    a_rwnd: u32,
    gaps: &[GapBlock],
    dups: &[u32],
) {
    out.extend_from_slice(&cum_tsn_ack.to_be_bytes());
    out.extend_from_slice(&a_rwnd.to_be_bytes());
    out.extend_from_slice(&(gaps.len() as u16).to_be_bytes());
    out.extend_from_slice(&(dups.len() as u16).to_be_bytes());
    for g in gaps {
        out.extend_from_slice(&g.start.to_be_bytes());
        out.extend_from_slice(&g.end.to_be_bytes());
    }
    for d in dups {
        out.extend_from_slice(&d.to_be_bytes());
    }
}
