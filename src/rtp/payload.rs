//! The two faces of every RTP payload format: a packetizer that cuts an encoded
//! frame into payloads no larger than the MTU budget, and a depacketizer that
//! glues payloads back into the frame.

use super::RtpError;

/// Cuts encoded frames into RTP payloads.
pub trait Packetizer {
    /// Splits one frame into payloads of at most `mtu` bytes each (the payload
    /// budget: the path MTU minus IP/UDP/RTP/SRTP overhead), appending them to
    /// `out` in sending order. The last one gets the RTP marker bit.
    fn packetize(
        &mut self,
        frame: &[u8],
        mtu: usize,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), RtpError>;
}

/// Reassembles frames from RTP payloads.
pub trait Depacketizer {
    /// Appends the media data carried by `payload` to `frame`. Called for each
    /// packet of one frame in sequence order, after [`Depacketizer::reset`].
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), RtpError>;

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
