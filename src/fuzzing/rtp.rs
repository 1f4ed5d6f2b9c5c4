//! Fuzz harnesses for the `rtp` module: the functions the cargo-fuzz targets
//! `fuzz/fuzz_targets/rtp_*.rs` call, kept in the library so that `cargo test`
//! replays the checked-in corpus through the same code
//! (`tests/fuzz_corpus.rs`). Each panics only on a real bug.

use crate::rtp::h264::{AnnexBReader, H264Depacketizer};
use crate::rtp::nack::parse_rtx;
use crate::rtp::opus::OpusDepacketizer;
use crate::rtp::packet::{RtpHeader, RtpPacket};
use crate::rtp::payload::{Depacketizer, Packetizer};
use crate::rtp::rtcp::{RtcpIter, RtcpPacket};
use crate::rtp::vp8::Vp8Depacketizer;
use crate::rtp::{FrameAssembler, ivf, ogg};

/// RTP packets: the checked view, every accessor, extensions, and a write /
/// parse round trip of what parsed; RTX decoding.
pub fn rtp_packet(data: &[u8]) {
    if let Ok(p) = RtpPacket::new_checked(data) {
        assert!(p.header_len() + p.payload().len() + p.padding_len() == data.len());
        let _ = (
            p.marker(),
            p.payload_type(),
            p.sequence_number(),
            p.timestamp(),
            p.ssrc(),
        );
        let _ = p.csrcs().count();
        for e in p.extensions().flatten() {
            assert!(e.data.len() <= data.len());
        }
        let h = RtpHeader::from_packet(&p);
        let _ = h.extensions();
        let mut out = Vec::new();
        h.emit_packet(p.payload(), p.padding_len().min(255) as u8, &mut out)
            .expect("a parsed header writes");
        let (h2, payload2, _) = RtpHeader::parse(&out).expect("a written packet parses");
        assert_eq!(h2, h);
        assert_eq!(payload2, p.payload());
    }
    let _ = parse_rtx(data, 1, 96, &mut Vec::new());
    // The mutable view: any remap and any setter keep the packet valid and
    // its length, and the view reads what was set.
    let mut buf = data.to_vec();
    if let Ok(mut m) = crate::rtp::RtpPacketMut::new_checked(&mut buf) {
        let salt = data.first().copied().unwrap_or(0);
        m.remap_extension_ids(|id| id.checked_add(salt % 3).filter(|n| n % 5 != 0));
        m.set_sequence_number(0xBEEF);
        m.set_ssrc(7);
        if let Some(e) = m.extension_element_mut(1) {
            e.fill(0x55);
        }
        let _ = m.payload_mut().len();
        let p = RtpPacket::new_checked(&buf).expect("a rewritten packet parses");
        assert_eq!((p.sequence_number(), p.ssrc()), (0xBEEF, 7));
        assert_eq!(buf.len(), data.len());
    }
}

/// One stream's receive and send parts (`rtp::stream`) fed arbitrary RTP
/// packets (media, RTX, any SSRC) and RTCP (NACKs asking for anything),
/// with time moving: no panic, bounded state, and whatever comes out
/// parses. The first byte picks frame mode or RTP mode.
pub fn rtp_streams(data: &[u8]) {
    use crate::rtp::stream::{ReceiveStream, SendStream};
    use crate::rtp::vp8::Vp8Depacketizer;
    use std::time::{Duration, Instant};
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let mut rx: ReceiveStream<Vp8Depacketizer> = ReceiveStream::new(
        90_000,
        (mode & 1 == 0).then_some(Vp8Depacketizer),
        64,
        true,
        Duration::from_millis(500),
    );
    rx.set_rtx_types(vec![(97, 96)]);
    let mut tx = SendStream::new(7, 96, 90_000, 0);
    tx.set_rtx(8, 97, 32, 0);
    let mut out = Vec::new();
    let mut n = 0u64;
    while rest.len() >= 2 && n < 256 {
        let len = usize::from(rest[0]).min(rest.len() - 1);
        let (chunk, tail) = rest[1..].split_at(len);
        rest = tail;
        n += 1;
        let now = t0 + Duration::from_millis(20 * n);
        if let Ok(p) = RtpPacket::new_checked(chunk) {
            rx.receive(now, &p);
            // The sender writes one packet per input and keeps it for RTX.
            out.clear();
            tx.emit_packet(now, n as u32, true, &[(1, b"0")], p.payload(), &mut out)
                .expect("a packet writes");
        }
        for r in RtcpIter::new(chunk).flatten() {
            if let RtcpPacket::Nack(nack) = &r {
                tx.on_nack(now, nack, |rtx| {
                    assert!(RtpPacket::new_checked(rtx).is_ok());
                    true
                });
            }
            if let RtcpPacket::SenderReport(sr) = &r {
                rx.on_sender_report(now, sr);
            }
        }
        rx.feedback(now, 1, |p| {
            let mut b = Vec::new();
            p.emit(&mut b).expect("feedback writes");
        });
        while let Some(f) = rx.pop_frame() {
            assert!(f.data.len() <= 64 * 1500);
        }
        let _ = rx.report_block(now);
    }
}

/// RTCP compound packets: iterate; whatever parsed writes, and writing is
/// stable after one normalisation (padding, rounding of REMB).
pub fn rtcp_compound(data: &[u8]) {
    let _ = RtcpPacket::parse_compound(data, true);
    for p in RtcpIter::new(data).flatten() {
        let mut b1 = Vec::new();
        if p.emit(&mut b1).is_err() {
            continue;
        }
        let p2 = RtcpPacket::parse(&b1).expect("a written packet parses");
        let mut b2 = Vec::new();
        p2.emit(&mut b2).expect("a parsed packet writes");
        assert_eq!(b1, b2, "RTCP write is not stable for {p:?}");
        if let RtcpPacket::Nack(n) = &p {
            let _ = n.lost().count();
        }
        if let RtcpPacket::TransportCc(t) = &p {
            let _ = t.arrivals().count();
        }
    }
}

/// Splits fuzz input into payloads: each is preceded by one length byte.
fn payloads(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&n, r)) = rest.split_first() {
        let n = (n as usize).min(r.len());
        out.push(&r[..n]);
        rest = &r[n..];
    }
    out
}

fn depacketize_all<D: Depacketizer + Clone>(d: D, data: &[u8]) {
    let ps = payloads(data);
    let mut frame = Vec::new();
    let mut dd = d.clone();
    for p in &ps {
        let _ = (
            dd.depacketize(p, &mut frame),
            dd.is_keyframe(p),
            dd.is_frame_start(p),
            dd.is_frame_end(p, false),
        );
    }
    // The same payloads through the frame assembler, as a jittery stream: the
    // first byte of each payload perturbs sequence number, timestamp and marker.
    let mut a = FrameAssembler::new(d, 32);
    for (i, p) in ps.iter().enumerate() {
        let k = p.first().copied().unwrap_or(0);
        let seq = (i as u16).wrapping_add((k & 0x07) as u16).wrapping_sub(3);
        a.insert(seq, (i as u32 / 3) * 3000, k & 0x80 != 0, p);
        while a.pop_frame().is_some() {}
        if k == 0x55 {
            a.give_up();
        }
        let _ = a.missing(16);
        assert!(a.len() <= 32);
    }
}

/// VP8 payloads through the depacketizer and the frame assembler.
pub fn vp8_depacketize(data: &[u8]) {
    depacketize_all(Vp8Depacketizer, data);
}

/// H.264 payloads through the depacketizer and the frame assembler, and the
/// input as an Annex-B stream.
pub fn h264_depacketize(data: &[u8]) {
    depacketize_all(H264Depacketizer::new(), data);
    let n: usize = AnnexBReader::new(data).map(<[u8]>::len).sum();
    assert!(n <= data.len());
}

/// VP9 payloads through the depacketizer and the frame assembler, and the
/// descriptor's write-back.
pub fn vp9_depacketize(data: &[u8]) {
    if let Ok(h) = crate::rtp::vp9::Vp9Header::parse(data) {
        assert!(h.len <= data.len());
        if let Some(s) = h.ss {
            let _ = (s.resolution(0), s.group().count(), s.temporal_layers());
        }
    }
    if let Ok((d, n)) = crate::rtp::vp9::Vp9Descriptor::parse(data) {
        let mut out = Vec::new();
        d.emit(&mut out).expect("a parsed VP9 descriptor writes");
        assert_eq!(
            crate::rtp::vp9::Vp9Descriptor::parse(&out),
            Ok((d, out.len()))
        );
        assert!(n <= data.len());
    }
    depacketize_all(crate::rtp::vp9::Vp9Depacketizer, data);
}

/// AV1 payloads through the depacketizer and the frame assembler; the input
/// as a temporal unit through the packetizer, whose payloads must come back
/// whole (OBUs with their size fields).
pub fn av1_depacketize(data: &[u8]) {
    use crate::rtp::av1::{Av1Depacketizer, Av1Packetizer, ObuReader, TEMPORAL_DELIMITER};
    depacketize_all(Av1Depacketizer::new(), data);
    let mut ps = Vec::new();
    let mtu = 50 + usize::from(data.first().copied().unwrap_or(0));
    if Av1Packetizer::new().packetize(data, mtu, &mut ps).is_ok() {
        let mut d = Av1Depacketizer::new();
        let mut frame = Vec::new();
        for p in &ps {
            assert!(p.len() <= mtu);
            d.depacketize(p, &mut frame)
                .expect("our own AV1 payloads depacketize");
        }
        let obus = ObuReader::new(&frame).count();
        assert!(frame.starts_with(&TEMPORAL_DELIMITER) && obus >= 2);
    }
}

/// Dependency descriptors: parsed with no structure and with the one the
/// input's first descriptor carries; whatever parsed writes and parses back
/// equal.
pub fn dependency_descriptor(data: &[u8]) {
    use crate::rtp::dd::{DdReader, DependencyDescriptor};
    let mut reader = DdReader::new();
    for chunk in payloads(data) {
        let latest = reader.structure().cloned();
        if let Ok(d) = DependencyDescriptor::parse(chunk, latest.as_ref()) {
            let _ = d.frame(latest.as_ref());
            let mut out = Vec::new();
            d.emit(latest.as_ref(), &mut out)
                .expect("a parsed descriptor writes");
            assert_eq!(DependencyDescriptor::parse(&out, latest.as_ref()), Ok(d));
        }
        let _ = reader.read(chunk);
    }
}

/// Opus payloads through the depacketizer and the frame assembler.
pub fn opus_depacketize(data: &[u8]) {
    depacketize_all(OpusDepacketizer, data);
}

/// IVF and Ogg Opus files.
pub fn media_files(data: &[u8]) {
    if let Ok((_, r)) = ivf::IvfReader::new(data) {
        let _ = r.count();
    }
    if let Ok((_, r)) = ogg::OggOpusReader::new(data) {
        let _ = r.count();
    }
    let _ = ogg::parse_page(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::payload::Packetizer;

    /// Writes seed inputs for each target into `fuzz/corpus/` (run once by
    /// hand: `cargo test --lib fuzzing::rtp -- --ignored`).
    #[test]
    #[ignore = "writes files into fuzz/corpus"]
    fn generate_corpus() {
        use std::fs;
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let put = |target: &str, name: &str, data: &[u8]| {
            let d = root.join(target);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(name), data).unwrap();
        };
        // RTP: the bench stream's first packet, one with CSRCs, padding and a
        // two-byte extension.
        let pkts = crate::speed::rtp::sample_packets(1);
        put("rtp_packet", "vp8_one_byte_ext", &pkts[0]);
        let mut e = crate::rtp::Extensions::new();
        e.push(20, b"mid-value-long-enough").push(1, &[0x85]);
        let mut h = RtpHeader {
            payload_type: 111,
            csrcs: vec![1, 2],
            ..Default::default()
        };
        h.set_extensions(&e, true).unwrap();
        let mut b = Vec::new();
        h.emit_packet(b"opus", 4, &mut b).unwrap();
        put("rtp_packet", "csrc_padding_two_byte_ext", &b);
        // RTCP: one compound with every type.
        let mut b = Vec::new();
        use crate::rtp::rtcp::*;
        let all = vec![
            RtcpPacket::ReceiverReport(ReceiverReport {
                ssrc: 1,
                reports: vec![ReportBlock {
                    ssrc: 2,
                    fraction_lost: 3,
                    cumulative_lost: -1,
                    ..Default::default()
                }],
                profile_extension: vec![],
            }),
            RtcpPacket::Sdes(Sdes {
                chunks: vec![SdesChunk {
                    ssrc: 1,
                    items: vec![(1, b"cname".to_vec())],
                }],
            }),
            RtcpPacket::Nack(Nack::from_lost(1, 2, [5, 7, 30])),
            RtcpPacket::Pli(Pli {
                sender_ssrc: 1,
                media_ssrc: 2,
            }),
            RtcpPacket::Fir(Fir {
                sender_ssrc: 1,
                entries: vec![(2, 9)],
            }),
            RtcpPacket::Remb(Remb {
                sender_ssrc: 1,
                bitrate: 1_500_000,
                ssrcs: vec![2],
            }),
            RtcpPacket::TransportCc(
                crate::rtp::twcc::TransportCc::from_arrivals(
                    1,
                    2,
                    100,
                    0,
                    &[Some(1000), None, Some(5000), Some(900_000)],
                )
                .unwrap(),
            ),
            RtcpPacket::Bye(Bye {
                sources: vec![1],
                reason: Some(b"bye".to_vec()),
            }),
            RtcpPacket::App(App {
                subtype: 1,
                ssrc: 1,
                name: *b"TEST",
                data: vec![1, 2, 3, 4],
            }),
        ];
        RtcpPacket::emit_compound(&all, &mut b).unwrap();
        put("rtcp_compound", "every_type", &b);
        let mut b = Vec::new();
        RtcpPacket::SenderReport(SenderReport {
            ssrc: 9,
            ntp_time: 1 << 40,
            ..Default::default()
        })
        .emit(&mut b)
        .unwrap();
        put("rtcp_compound", "sender_report", &b);
        // Payload streams: length-prefixed payloads.
        let framed = |ps: &[Vec<u8>]| -> Vec<u8> {
            ps.iter()
                .flat_map(|p| {
                    std::iter::once(p.len().min(255) as u8).chain(p.iter().take(255).copied())
                })
                .collect()
        };
        let mut ps = Vec::new();
        let mut f = vec![0x10u8; 400];
        f[1] = 0x9d;
        crate::rtp::vp8::Vp8Packetizer::new(3)
            .packetize(&f, 120, &mut ps)
            .unwrap();
        put("vp8_depacketize", "keyframe_4_packets", &framed(&ps));
        let mut ps = Vec::new();
        let mut au = vec![
            0, 0, 0, 1, 0x67, 0x42, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0, 0, 0, 1, 0x65, 0x88,
        ];
        au.extend(std::iter::repeat_n(0x11u8, 300));
        crate::rtp::h264::H264Packetizer::new()
            .packetize(&au, 100, &mut ps)
            .unwrap();
        put("h264_depacketize", "sps_pps_idr_stap_fu", &framed(&ps));
        put("h264_depacketize", "annex_b", &au);
        let mut ps = Vec::new();
        crate::rtp::vp9::Vp9Packetizer::new(3)
            .packetize(&[0x82; 300], 120, &mut ps)
            .unwrap();
        put("vp9_depacketize", "keyframe_3_packets", &framed(&ps));
        let desc = [
            0xAA, 0x81, 0x02, 0x20, 0x07, 0x18, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x04, 0x01, 0xEE,
        ];
        put("vp9_depacketize", "descriptor_with_ss", &desc);
        // Chromium's VP9 L3T3_KEY (flexible mode): a key picture's first
        // descriptor with its three-layer structure, and a delta frame's
        // with one P_DIFF (tests/fixtures/rtp/vp9_chromium_l3t3_key.txt).
        let desc = [
            0xBA, 0xEF, 0x2E, 0x10, 0x50, 0x01, 0x40, 0x00, 0xB4, 0x02, 0x80, 0x01, 0x68, 0x05,
            0x00, 0x02, 0xD0, 0x82, 0x49,
        ];
        put("vp9_depacketize", "chromium_flexible_ss", &desc);
        put(
            "vp9_depacketize",
            "chromium_flexible_delta",
            &[0xF9, 0xEF, 0x38, 0x12, 0x08, 0x87],
        );
        // AV1: a keyframe unit (delimiter, sequence header, a frame OBU cut
        // over three packets), framed as payloads, and as a temporal unit.
        let mut tu = vec![0x12, 0x00, 0x0a, 0x03, 0, 0, 0x40, 0x32, 0xfa, 0x01];
        tu.extend(std::iter::repeat_n(0x5au8, 250));
        let mut ps = Vec::new();
        crate::rtp::av1::Av1Packetizer::new()
            .packetize(&tu, 100, &mut ps)
            .unwrap();
        put("av1_depacketize", "keyframe_3_packets", &framed(&ps));
        put("av1_depacketize", "temporal_unit", &tu);
        // Dependency descriptors: an L1T3 keyframe's, then a delta frame's.
        put(
            "dependency_descriptor",
            "l1t3_structure_then_delta",
            &framed(&[
                vec![
                    0xc0, 0x00, 0x01, 0x80, 0x02, 0x14, 0xea, 0xaa, 0x44, 0x10, 0x4d, 0x14, 0x10,
                    0x91, 0x04, 0x21, 0x38, 0x13, 0xf8, 0x0e, 0xf8,
                ],
                vec![0xc4, 0x00, 0x04],
            ]),
        );
        put(
            "opus_depacketize",
            "two_frames",
            &framed(&[vec![0xfc, 1, 2], vec![0xfc, 3]]),
        );
        // Media files.
        let mut b = Vec::new();
        ivf::IvfHeader {
            fourcc: *b"VP80",
            width: 64,
            height: 48,
            timebase_den: 30,
            timebase_num: 1,
            frame_count: 1,
        }
        .write(&mut b);
        ivf::write_frame(0, &f, &mut b).unwrap();
        put("media_files", "ivf", &b);
        let head = ogg::OpusHead {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
        };
        let mut w = ogg::OggOpusWriter::new(1, head);
        w.write_packet(&[0xfc; 300], 960, true).unwrap();
        put("media_files", "ogg_opus", &w.out);
    }

    #[test]
    fn harnesses_accept_junk() {
        for data in [&b""[..], &[0x80; 40], &[0xff; 3], b"OggS\0\0\0\0"] {
            rtp_packet(data);
            rtcp_compound(data);
            vp8_depacketize(data);
            h264_depacketize(data);
            opus_depacketize(data);
            vp9_depacketize(data);
            av1_depacketize(data);
            dependency_descriptor(data);
            media_files(data);
        }
    }
}
