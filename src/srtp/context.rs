//! [`SrtpContext`]: one sender's session keys and the per-SSRC state.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::crypto::{E_BIT, Transform};
use super::replay::{Refused, ReplayWindow, estimate_index};
use super::{Config, Error, ProtectionProfile, check_lengths};

/// What SRTP needs of an RTP header: its length and two fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpHeader {
    /// 12 + 4 * CC, plus 4 + 4 * length if X is set (RFC 3550 §5.1, §5.3.1).
    pub(crate) len: usize,
    pub(crate) seq: u16,
    pub(crate) ssrc: u32,
}

impl RtpHeader {
    /// Parses just enough of an RTP header; the full parser lives in `rtp`.
    pub(crate) fn parse(packet: &[u8]) -> Result<RtpHeader, Error> {
        let too_short = |needed| Error::Truncated {
            what: "RTP header",
            needed,
            got: packet.len(),
        };
        if packet.len() < 12 {
            return Err(too_short(12));
        }
        let version = packet[0] >> 6;
        if version != 2 {
            return Err(Error::BadVersion(version));
        }
        let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
        if packet[0] & 0x10 != 0 {
            // Extension: 16-bit profile, 16-bit length in 32-bit words.
            if packet.len() < len + 4 {
                return Err(too_short(len + 4));
            }
            let words = u16::from_be_bytes([packet[len + 2], packet[len + 3]]);
            len += 4 + 4 * usize::from(words);
        }
        if packet.len() < len {
            return Err(too_short(len));
        }
        Ok(RtpHeader {
            len,
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        })
    }
}

/// The SSRC of the first RTCP packet's header (RFC 3550 §6.4), which SRTCP
/// uses for its IV (RFC 3711 §3.4).
fn rtcp_ssrc(packet: &[u8]) -> Result<u32, Error> {
    if packet.len() < 8 {
        return Err(Error::Truncated {
            what: "RTCP header",
            needed: 8,
            got: packet.len(),
        });
    }
    let version = packet[0] >> 6;
    if version != 2 {
        return Err(Error::BadVersion(version));
    }
    Ok(u32::from_be_bytes([
        packet[4], packet[5], packet[6], packet[7],
    ]))
}

/// State kept per SSRC (the RTP sending side's is in [`SentIndices`]).
#[derive(Debug)]
struct Stream {
    /// Next SRTCP index to send.
    next_rtcp_index: u32,
    /// Received SRTP indices; its highest is `ROC * 2^16 + s_l`.
    rtp_window: ReplayWindow,
    /// Received SRTCP indices.
    rtcp_window: ReplayWindow,
}

impl Stream {
    fn new(config: &Config) -> Self {
        Stream {
            next_rtcp_index: 0,
            rtp_window: ReplayWindow::new(config.replay_window),
            rtcp_window: ReplayWindow::new(config.replay_window),
        }
    }
}

/// A hasher for SSRC keys. Streams are only created for packets this context
/// sent or that authenticated, so an attacker cannot choose the keys; a
/// multiplicative hash is then enough and much cheaper than SipHash per packet.
#[derive(Default)]
struct SsrcHasher(u64);

impl Hasher for SsrcHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Streams = HashMap<u32, Stream, BuildHasherDefault<SsrcHasher>>;

/// How many sending SSRCs [`SentIndices`] keeps inline: a connection's
/// audio, video and its retransmissions.
const SENT_INLINE: usize = 4;

/// The highest SRTP index protected per SSRC, from which the sender's ROC
/// comes (RFC 3711 §3.3.1): the first [`SENT_INLINE`] SSRCs inline, any
/// more in a map. A forwarder protects each packet for hundreds of
/// contexts in turn, each cold in the cache; a map's probe costs three
/// cache misses a packet there, the inline slots none beyond the context's
/// own.
#[derive(Debug, Default)]
struct SentIndices {
    inline: [(u32, u64); SENT_INLINE],
    len: usize,
    more: HashMap<u32, u64, BuildHasherDefault<SsrcHasher>>,
}

impl SentIndices {
    fn get_mut(&mut self, ssrc: u32) -> Option<&mut u64> {
        match self.inline[..self.len].iter_mut().find(|(s, _)| *s == ssrc) {
            Some((_, highest)) => Some(highest),
            None => self.more.get_mut(&ssrc),
        }
    }

    fn get(&self, ssrc: u32) -> Option<u64> {
        match self.inline[..self.len].iter().find(|(s, _)| *s == ssrc) {
            Some(&(_, highest)) => Some(highest),
            None => self.more.get(&ssrc).copied(),
        }
    }

    /// A new SSRC (not already kept).
    fn insert(&mut self, ssrc: u32, highest: u64) {
        match self.inline.get_mut(self.len) {
            Some(slot) => {
                *slot = (ssrc, highest);
                self.len += 1;
            }
            None => {
                self.more.insert(ssrc, highest);
            }
        }
    }

    fn len(&self) -> usize {
        self.len + self.more.len()
    }
}

/// One sender's SRTP and SRTCP session keys, and the state of every SSRC they
/// protect: the rollover counter, the SRTCP index and the replay windows.
///
/// Make one per direction. Each method works in place on a `Vec<u8>`;
/// `protect_*` appends at most [`ProtectionProfile::rtcp_overhead`] bytes and
/// allocates nothing if the buffer has that much spare capacity. A failing
/// `unprotect_*` changes nothing in the context; the buffer is left as it was,
/// except that with GCM an auth failure zeroes the encrypted part.
pub struct SrtpContext {
    profile: ProtectionProfile,
    config: Config,
    rtp: Transform,
    rtcp: Transform,
    /// The RTP sending side, per SSRC.
    sent: SentIndices,
    streams: Streams,
}

impl std::fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtpContext")
            .field("profile", &self.profile)
            .field("config", &self.config)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

impl SrtpContext {
    /// Derives the session keys (RFC 3711 §4.3, key derivation rate 0) from a
    /// sender's master key and salt.
    pub fn new(
        profile: ProtectionProfile,
        master_key: &[u8],
        master_salt: &[u8],
        config: Config,
    ) -> Result<SrtpContext, Error> {
        check_lengths(profile, master_key, master_salt)?;
        config.validate()?;
        let rtp = Transform::derive(profile, master_key, master_salt, false)?;
        let rtcp = Transform::derive(profile, master_key, master_salt, true)?;
        Ok(Self::from_transforms(profile, config, rtp, rtcp))
    }

    /// The same, from a [`MasterKey`](super::MasterKey).
    pub fn from_master_key(key: &super::MasterKey, config: Config) -> Result<SrtpContext, Error> {
        Self::new(key.profile(), key.key(), key.salt(), config)
    }

    pub(crate) fn from_transforms(
        profile: ProtectionProfile,
        config: Config,
        rtp: Transform,
        rtcp: Transform,
    ) -> SrtpContext {
        SrtpContext {
            profile,
            config,
            rtp,
            rtcp,
            sent: SentIndices::default(),
            streams: Streams::default(),
        }
    }

    /// The profile the keys belong to.
    pub fn profile(&self) -> ProtectionProfile {
        self.profile
    }

    /// How many SSRCs the context keeps state for, besides the highest
    /// index it protected of each SSRC it sent RTP on.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The rollover counter of `ssrc` on the receiving side (the ROC of the
    /// highest index that authenticated), if any packet of it was received.
    pub fn received_roc(&self, ssrc: u32) -> Option<u32> {
        let highest = self.streams.get(&ssrc)?.rtp_window.highest()?;
        Some((highest >> 16) as u32)
    }

    /// The rollover counter of `ssrc` on the sending side.
    pub fn sent_roc(&self, ssrc: u32) -> Option<u32> {
        let highest = self.sent.get(ssrc)?;
        Some((highest >> 16) as u32)
    }

    fn stream_mut<'a>(
        streams: &'a mut Streams,
        config: &Config,
        ssrc: u32,
    ) -> Result<&'a mut Stream, Error> {
        let len = streams.len();
        match streams.entry(ssrc) {
            std::collections::hash_map::Entry::Occupied(o) => Ok(o.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                if len >= config.max_streams {
                    return Err(Error::TooManyStreams {
                        limit: config.max_streams,
                    });
                }
                Ok(v.insert(Stream::new(config)))
            }
        }
    }

    /// Protects the RTP packet in `buf`: encrypts the payload and appends the
    /// tag (RFC 3711 §3.3; RFC 7714 §8). The sender's ROC advances when the
    /// sequence number wraps.
    pub fn protect_rtp(&mut self, buf: &mut Vec<u8>) -> Result<(), Error> {
        let header = RtpHeader::parse(buf)?;
        let index = match self.sent.get(header.ssrc) {
            Some(highest) => estimate_index(highest, header.seq)
                .ok_or(Error::IndexExhausted { ssrc: header.ssrc })?,
            None if self.sent.len() >= self.config.max_streams => {
                return Err(Error::TooManyStreams {
                    limit: self.config.max_streams,
                });
            }
            None => u64::from(header.seq),
        };
        buf.reserve(self.rtp.tag_len());
        self.rtp.protect_rtp(buf, header.len, header.ssrc, index)?;
        match self.sent.get_mut(header.ssrc) {
            Some(highest) => *highest = (*highest).max(index),
            None => self.sent.insert(header.ssrc, index),
        }
        tracing::trace!(
            ssrc = header.ssrc,
            seq = header.seq,
            roc = index >> 16,
            bytes = buf.len(),
            "SRTP protect"
        );
        Ok(())
    }

    /// Unprotects the SRTP packet in `buf`: estimates its index (RFC 3711
    /// §3.3.1), checks the replay window, verifies the tag, decrypts and
    /// removes the tag. Only then are the ROC and window updated.
    pub fn unprotect_rtp(&mut self, buf: &mut Vec<u8>) -> Result<(), Error> {
        let tag_len = self.rtp.tag_len();
        if buf.len() < 12 + tag_len {
            return Err(Error::Truncated {
                what: "SRTP packet",
                needed: 12 + tag_len,
                got: buf.len(),
            });
        }
        let header = RtpHeader::parse(&buf[..buf.len() - tag_len])?;
        let ssrc = header.ssrc;
        let rtp = &self.rtp;
        let auth_failed = |index| {
            tracing::debug!(ssrc, index, "SRTP authentication failed");
            Error::AuthenticationFailed { ssrc, index }
        };
        if let Some(stream) = self.streams.get_mut(&ssrc) {
            let index = match stream.rtp_window.highest() {
                None => u64::from(header.seq),
                Some(highest) => {
                    estimate_index(highest, header.seq).ok_or(Error::IndexExhausted { ssrc })?
                }
            };
            stream
                .rtp_window
                .check(index)
                .map_err(|r| refused(r, ssrc, index))?;
            rtp.unprotect_rtp(buf, header.len, ssrc, index)
                .map_err(|()| auth_failed(index))?;
            // Authenticated: only now may the ROC and window move.
            stream.rtp_window.accept(index);
            tracing::trace!(ssrc, seq = header.seq, roc = index >> 16, "SRTP unprotect");
            return Ok(());
        }
        // A new SSRC: its first packet sets ROC 0 and s_l = SEQ.
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        let index = u64::from(header.seq);
        rtp.unprotect_rtp(buf, header.len, ssrc, index)
            .map_err(|()| auth_failed(index))?;
        let mut stream = Stream::new(&self.config);
        stream.rtp_window.accept(index);
        self.streams.insert(ssrc, stream);
        tracing::debug!(ssrc, seq = header.seq, "SRTP: a new stream");
        Ok(())
    }

    /// Protects the (compound) RTCP packet in `buf`: encrypts all but the
    /// first 8 bytes, adds E=1 and the SRTCP index, and the tag (RFC 3711
    /// §3.4; RFC 7714 §9).
    pub fn protect_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), Error> {
        self.protect_rtcp_with(buf, true)
    }

    /// As [`protect_rtcp`](Self::protect_rtcp); `encrypt == false` sends an
    /// authenticated-only packet (E = 0), as the RFC 7714 §17 vectors do.
    pub(crate) fn protect_rtcp_with(
        &mut self,
        buf: &mut Vec<u8>,
        encrypt: bool,
    ) -> Result<(), Error> {
        let ssrc = rtcp_ssrc(buf)?;
        let stream = Self::stream_mut(&mut self.streams, &self.config, ssrc)?;
        let index = stream.next_rtcp_index;
        if index > 0x7fff_ffff {
            return Err(Error::IndexExhausted { ssrc });
        }
        buf.reserve(self.rtcp.tag_len() + 4);
        self.rtcp.protect_rtcp(buf, ssrc, index, encrypt)?;
        stream.next_rtcp_index = index + 1;
        tracing::trace!(ssrc, index, encrypt, bytes = buf.len(), "SRTCP protect");
        Ok(())
    }

    /// Unprotects the SRTCP packet in `buf`: reads E and the index, checks
    /// the replay window, verifies the tag, decrypts if E = 1, and removes the
    /// trailer and tag. Only then is the window updated.
    pub fn unprotect_rtcp(&mut self, buf: &mut Vec<u8>) -> Result<(), Error> {
        let tag_len = self.rtcp.tag_len();
        let needed = 8 + 4 + tag_len;
        if buf.len() < needed {
            return Err(Error::Truncated {
                what: "SRTCP packet",
                needed,
                got: buf.len(),
            });
        }
        let ssrc = rtcp_ssrc(buf)?;
        // RFC 3711 §3.4: E|index precedes the tag; RFC 7714 §9 puts it last.
        let at = if self.profile.is_aead() {
            buf.len() - 4
        } else {
            buf.len() - 4 - tag_len
        };
        let trailer = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let index = u64::from(trailer & !E_BIT);
        let rtcp = &self.rtcp;
        let auth_failed = || {
            tracing::debug!(ssrc, index, "SRTCP authentication failed");
            Error::AuthenticationFailed { ssrc, index }
        };
        if let Some(stream) = self.streams.get_mut(&ssrc) {
            stream
                .rtcp_window
                .check(index)
                .map_err(|r| refused(r, ssrc, index))?;
            rtcp.unprotect_rtcp(buf, ssrc, trailer)
                .map_err(|()| auth_failed())?;
            stream.rtcp_window.accept(index);
            tracing::trace!(ssrc, index, "SRTCP unprotect");
            return Ok(());
        }
        if self.streams.len() >= self.config.max_streams {
            return Err(Error::TooManyStreams {
                limit: self.config.max_streams,
            });
        }
        rtcp.unprotect_rtcp(buf, ssrc, trailer)
            .map_err(|()| auth_failed())?;
        let mut stream = Stream::new(&self.config);
        stream.rtcp_window.accept(index);
        self.streams.insert(ssrc, stream);
        Ok(())
    }

    /// Test hook: the next SRTCP index to send for `ssrc`.
    #[cfg(test)]
    pub(crate) fn set_next_rtcp_index(&mut self, ssrc: u32, index: u32) -> Result<(), Error> {
        Self::stream_mut(&mut self.streams, &self.config, ssrc)?.next_rtcp_index = index;
        Ok(())
    }

    /// Test hook: a snapshot of everything a failed unprotect must not change.
    #[cfg(test)]
    pub(crate) fn state_fingerprint(&self) -> String {
        let mut keys: Vec<_> = self.streams.keys().copied().collect();
        keys.sort_unstable();
        keys.iter()
            .map(|k| format!("{k}:{:?};", self.streams[k]))
            .collect()
    }
}

fn refused(r: Refused, ssrc: u32, index: u64) -> Error {
    match r {
        Refused::Replayed => Error::Replayed { ssrc, index },
        Refused::TooOld { highest } => Error::TooOld {
            ssrc,
            index,
            highest,
        },
    }
}
