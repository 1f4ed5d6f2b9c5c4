//! The two faces of every RTP payload format: a packetizer that cuts an encoded
//! frame into payloads no larger than the MTU budget, and a depacketizer that
//! glues payloads back into the frame.

use super::Error;

/// Cuts encoded frames into RTP payloads.
///
/// Implement [`Packetizer::packetize`] or [`Packetizer::packetize_into`]
/// (or both); each has a default written with the other. The second is the
/// hot path: its payloads go into one buffer that is reused frame after
/// frame, so packetizing allocates nothing once warm.
pub trait Packetizer {
    /// Splits one frame into payloads of at most `mtu` bytes each (the payload
    /// budget: the path MTU minus IP/UDP/RTP/SRTP overhead), appending them to
    /// `out` in sending order. The last one gets the RTP marker bit.
    fn packetize(&mut self, frame: &[u8], mtu: usize, out: &mut Vec<Vec<u8>>) -> Result<(), Error> {
        let mut p = Payloads::default();
        self.packetize_into(frame, mtu, &mut p)?;
        out.extend(p.iter().map(<[u8]>::to_vec));
        Ok(())
    }

    /// [`Packetizer::packetize`] into `out` (appended; the caller clears it).
    fn packetize_into(
        &mut self,
        frame: &[u8],
        mtu: usize,
        out: &mut Payloads,
    ) -> Result<(), Error> {
        let mut v = Vec::new();
        self.packetize(frame, mtu, &mut v)?;
        for p in &v {
            out.push(p);
        }
        Ok(())
    }
}

/// The payloads of a frame, back to back in one buffer that is reused:
/// [`Payloads::clear`] keeps its capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payloads {
    data: Vec<u8>,
    /// Where each payload ends in `data`.
    ends: Vec<usize>,
}

impl Payloads {
    /// Forgets the payloads, keeping the room.
    pub fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }

    /// Appends one payload.
    pub fn push(&mut self, payload: &[u8]) {
        self.data.extend_from_slice(payload);
        self.ends.push(self.data.len());
    }

    /// Appends one payload written by `write` (into the shared buffer:
    /// it must only append).
    pub fn push_with(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let start = self.data.len();
        if let Err(e) = write(&mut self.data) {
            self.data.truncate(start);
            return Err(e);
        }
        self.ends.push(self.data.len());
        Ok(())
    }

    /// How many payloads.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The payloads in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| &self.data[a..b])
    }
}

/// Reassembles frames from RTP payloads.
pub trait Depacketizer {
    /// Appends the media data carried by `payload` to `frame`. Called for each
    /// packet of one frame in sequence order, after [`Depacketizer::reset`].
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error>;

    /// Forgets any state carried between packets (call at each frame start).
    fn reset(&mut self) {}

    /// True if `payload` is the first packet of a frame.
    fn is_frame_start(&self, payload: &[u8]) -> bool;

    /// True if `payload` starts a frame a decoder can start from (a keyframe).
    fn is_keyframe(&self, payload: &[u8]) -> bool;

    /// True if the packet ends its frame. Video uses the RTP marker bit (RFC
    /// 3550 §5.1); audio formats with one frame per packet end every frame.
    fn is_frame_end(&self, _payload: &[u8], marker: bool) -> bool {
        marker
    }
}
