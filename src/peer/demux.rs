//! Which layer a datagram belongs to, from its first bytes (RFC 7983 §7,
//! RFC 5761 §4).

/// What a datagram on the shared 5-tuple is, by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// 0–3: STUN (ICE checks, consent, Binding responses).
    Stun,
    /// 20–63: a DTLS record (handshake, alert, application data).
    Dtls,
    /// 128–191 with a second byte outside 192–223: SRTP.
    Rtp,
    /// 128–191 with a second byte (packet type) in 192–223: SRTCP.
    Rtcp,
    /// Anything else: ZRTP (16–19), TURN ChannelData (64–79, which a TURN
    /// client strips before us), unassigned ranges, or a datagram too short
    /// to tell. Dropped and counted.
    Unknown,
}

// ANCHOR: classify
/// Classifies a datagram by its first byte, as RFC 7983 §7 (which updates
/// RFC 5764 §5.1.2) tells a receiver to:
///
/// ```text
///              +----------------+
///              | [0..3]    -----+--> STUN
///              | [16..19]  -----+--> ZRTP          (dropped here)
///   packet --> | [20..63]  -----+--> DTLS
///              | [64..79]  -----+--> TURN Channel  (dropped here)
///              | [128..191] ----+--> RTP/RTCP
///              +----------------+
/// ```
///
/// RTP and RTCP share the 5-tuple too (rtcp-mux): RFC 5761 §4 tells them
/// apart by the second byte. RTCP packet types 192–223 (SR 200, RR 201, SDES,
/// BYE, APP, RTPFB 205, PSFB 206, …) sit where an RTP marker bit plus a
/// payload type 64–95 would, which is why RTP must not use payload types
/// 64–95 on a muxed session.
pub fn classify(datagram: &[u8]) -> PacketKind {
    match datagram.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => match datagram.get(1) {
            Some(192..=223) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}
// ANCHOR_END: classify

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc_7983_ranges() {
        for b in 0..=255u8 {
            let k = classify(&[b, 96, 0, 0]);
            let want = match b {
                0..=3 => PacketKind::Stun,
                20..=63 => PacketKind::Dtls,
                128..=191 => PacketKind::Rtp,
                _ => PacketKind::Unknown,
            };
            assert_eq!(k, want, "first byte {b}");
        }
    }

    #[test]
    fn rtcp_by_packet_type() {
        // SR (200), RR (201), PSFB (206), and the edges of 192..=223.
        for pt in [192u8, 200, 201, 206, 223] {
            assert_eq!(classify(&[0x80, pt, 0, 6]), PacketKind::Rtcp, "{pt}");
        }
        // RTP with PT 96 and the marker bit (0xE0), PT 0, PT 127 without it.
        for b1 in [0xE0u8, 0, 127, 191, 224] {
            assert_eq!(classify(&[0x80, b1, 0, 1]), PacketKind::Rtp, "{b1}");
        }
    }

    #[test]
    fn short_datagrams() {
        assert_eq!(classify(&[]), PacketKind::Unknown);
        assert_eq!(classify(&[0x80]), PacketKind::Unknown);
        assert_eq!(classify(&[0]), PacketKind::Stun);
        assert_eq!(classify(&[22]), PacketKind::Dtls);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = classify(&data);
        }
    }
}
