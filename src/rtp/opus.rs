//! Opus payload format (RFC 7587): exactly one Opus packet per RTP payload
//! (§4.2), no payload header; the RTP clock is always 48 kHz (§4.1).

use super::Error;
use super::payload::{Depacketizer, Packetizer, Payloads};

/// RFC 7587 §4.1: the RTP timestamp always counts 48 kHz samples.
pub const CLOCK_RATE: u32 = 48_000;

/// One Opus packet per payload; refuses frames larger than the MTU (Opus
/// cannot be fragmented, RFC 7587 §4.2).
#[derive(Debug, Clone, Copy, Default)]
pub struct OpusPacketizer;

impl Packetizer for OpusPacketizer {
    fn packetize_into(
        &mut self,
        frame: &[u8],
        mtu: usize,
        out: &mut Payloads,
    ) -> Result<(), Error> {
        if frame.is_empty() {
            return Err(Error::Invalid("empty Opus packet"));
        }
        if frame.len() > mtu {
            return Err(Error::Invalid(
                "Opus packet larger than the MTU (cannot be fragmented)",
            ));
        }
        out.push(frame);
        Ok(())
    }
}

/// Copies the Opus packet out; every packet is a whole frame and a keyframe.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpusDepacketizer;

impl Depacketizer for OpusDepacketizer {
    fn depacketize(&mut self, payload: &[u8], frame: &mut Vec<u8>) -> Result<(), Error> {
        if payload.is_empty() {
            return Err(Error::BadPayload("empty Opus payload"));
        }
        frame.extend_from_slice(payload);
        Ok(())
    }

    fn is_frame_start(&self, _: &[u8]) -> bool {
        true
    }

    fn is_keyframe(&self, _: &[u8]) -> bool {
        true
    }

    /// RFC 7587 §4.2: one Opus packet per RTP packet, so every packet is a
    /// whole frame (the marker bit only flags the end of a silence, §4.1).
    fn is_frame_end(&self, _: &[u8], _: bool) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn too_big_or_empty() {
        let mut out = Vec::new();
        assert!(OpusPacketizer.packetize(&[1; 200], 100, &mut out).is_err());
        assert!(OpusPacketizer.packetize(&[], 100, &mut out).is_err());
        assert!(OpusDepacketizer.depacketize(&[], &mut Vec::new()).is_err());
    }

    proptest! {
        #[test]
        fn packetize_depacketize(frame in proptest::collection::vec(any::<u8>(), 1..1500), mtu in 1usize..1500) {
            let mut out = Vec::new();
            let r = OpusPacketizer.packetize(&frame, mtu, &mut out);
            if frame.len() > mtu {
                prop_assert!(r.is_err());
            } else {
                prop_assert_eq!(out.len(), 1);
                let mut back = Vec::new();
                OpusDepacketizer.depacketize(&out[0], &mut back).unwrap();
                prop_assert_eq!(back, frame);
            }
        }
    }
}
