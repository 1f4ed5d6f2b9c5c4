//! Measurements behind `rtclab speed rtp` (DESIGN §5): one line per figure,
//! `NAME VALUE UNIT`.
//!
//! The hot path measured is what a receiver does per video packet: check the
//! RTP header ([`RtpPacket::new_checked`]) and strip the VP8 payload descriptor
//! into a frame buffer that is reused, so nothing is allocated per packet. The
//! ceiling beside it is a bare `memcpy` of the same payload bytes. A second
//! figure runs the packets through the [`FrameAssembler`](crate::rtp::FrameAssembler)
//! (ordering, gap detection, one allocation per frame).

use std::hint::black_box;

use crate::rtp::ext::Extensions;
use crate::rtp::packet::{RtpHeader, RtpPacket};
use crate::rtp::payload::{Depacketizer, Packetizer};
use crate::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};

/// Payload budget used for the packets (a typical WebRTC video payload).
pub const MTU: usize = 1200;
/// Packets per frame in the measured stream.
const PACKETS_PER_FRAME: usize = 4;

/// Builds a Chromium-shaped VP8 stream: one-byte extensions (abs-send-time,
/// transport-cc, mid), 15-bit picture ids, frames of 4 packets.
pub fn sample_packets(frames: usize) -> Vec<Vec<u8>> {
    let mut pk = Vp8Packetizer::new(1234);
    let mut out = Vec::new();
    let mut seq: u16 = 65000;
    for f in 0..frames {
        let frame: Vec<u8> = (0..PACKETS_PER_FRAME * (MTU - 4))
            .map(|i| (i * 7 + f) as u8)
            .collect();
        let mut payloads = Vec::new();
        // The frame size is a multiple of the chunk, so the packet count is exact.
        if pk.packetize(&frame, MTU, &mut payloads).is_err() {
            continue;
        }
        let n = payloads.len();
        for (k, p) in payloads.iter().enumerate() {
            let mut ext = Extensions::new();
            ext.push(2, &[0x12, 0x34, 0x56])
                .push(3, &seq.to_be_bytes())
                .push(4, b"0");
            let mut h = RtpHeader {
                marker: k + 1 == n,
                payload_type: 96,
                sequence_number: seq,
                timestamp: 3000 * f as u32,
                ssrc: 0x1234_5678,
                ..Default::default()
            };
            // Known-good elements (ids 2..=4, 1..=3 bytes): the one-byte form always fits.
            if h.set_extensions(&ext, false).is_err() {
                continue;
            }
            let mut pkt = Vec::with_capacity(h.len() + p.len());
            if h.emit_packet(p, 0, &mut pkt).is_ok() {
                out.push(pkt);
            }
            seq = seq.wrapping_add(1);
        }
    }
    out
}

/// Parses and depacketizes every packet of `packets` once, appending to the
/// reused `frame` buffer (cleared after each marker). Returns the bytes seen so
/// the work cannot be optimised away. Allocates nothing once `frame` has grown.
#[inline]
pub fn parse_vp8_depacketize(
    packets: &[Vec<u8>],
    depack: &mut Vp8Depacketizer,
    frame: &mut Vec<u8>,
) -> usize {
    let mut total = 0;
    for buf in packets {
        let Ok(p) = RtpPacket::new_checked(buf) else {
            continue;
        };
        if depack.depacketize(p.payload(), frame).is_err() {
            continue;
        }
        if p.marker() {
            total += frame.len();
            black_box(&frame[..]);
            frame.clear();
        }
    }
    total
}

/// Runs the measurements and returns `(name, value, unit)` lines.
pub fn speed() -> Vec<(String, f64, &'static str)> {
    let packets = sample_packets(16);
    let n = packets.len();
    let mut depack = Vp8Depacketizer;
    let mut frame = Vec::with_capacity(PACKETS_PER_FRAME * MTU);
    // Warm up, then time enough rounds for ~0.3 s at the target speed.
    let rounds = 50_000;
    black_box(parse_vp8_depacketize(&packets, &mut depack, &mut frame));
    let t = cpu_time::ThreadTime::now();
    for _ in 0..rounds {
        black_box(parse_vp8_depacketize(
            black_box(&packets),
            &mut depack,
            &mut frame,
        ));
    }
    let ns = t.elapsed().as_nanos() as f64 / (rounds * n) as f64;

    // Ceiling: copying the same payload bytes with no parsing at all.
    let payloads: Vec<(usize, usize)> = packets
        .iter()
        .filter_map(|b| {
            RtpPacket::new_checked(b)
                .ok()
                .map(|p| (p.header_len() + 4, b.len()))
        })
        .collect();
    let t = cpu_time::ThreadTime::now();
    for _ in 0..rounds {
        for (buf, &(s, e)) in black_box(&packets).iter().zip(&payloads) {
            frame.extend_from_slice(&buf[s..e]);
            if frame.len() >= PACKETS_PER_FRAME * (MTU - 4) {
                black_box(&frame[..]);
                frame.clear();
            }
        }
    }
    let memcpy_ns = t.elapsed().as_nanos() as f64 / (rounds * n) as f64;

    let t = cpu_time::ThreadTime::now();
    let mut ok = 0usize;
    for _ in 0..rounds {
        for b in black_box(&packets) {
            ok += RtpPacket::new_checked(b).map_or(0, |p| p.payload().len());
        }
    }
    let parse_ns = t.elapsed().as_nanos() as f64 / (rounds * n) as f64;
    black_box(ok);

    // The whole receive path with reordering handled: parse, frame assembler
    // (payloads copied into recycled buffers), one frame buffer per frame.
    let mut asm = crate::rtp::jitter::FrameAssembler::new(Vp8Depacketizer, 256);
    let asm_rounds = rounds / 10;
    let t = cpu_time::ThreadTime::now();
    let mut bytes = 0usize;
    for _ in 0..asm_rounds {
        for b in black_box(&packets) {
            if let Ok(p) = RtpPacket::new_checked(b) {
                asm.insert_packet(&p);
                while let Some(f) = asm.pop_frame() {
                    bytes += f.data.len();
                }
            }
        }
        // The next round repeats the same sequence numbers: start afresh.
        asm = crate::rtp::jitter::FrameAssembler::new(Vp8Depacketizer, 256);
    }
    black_box(bytes);
    let assemble_ns = t.elapsed().as_nanos() as f64 / (asm_rounds * n) as f64;

    vec![
        ("rtp.parse_ns".to_string(), parse_ns, "ns"),
        ("rtp.parse_assemble_vp8_ns".to_string(), assemble_ns, "ns"),
        ("rtp.parse_vp8_depacketize_ns".to_string(), ns, "ns"),
        (
            "rtp.parse_vp8_depacketize_pps".to_string(),
            1e9 / ns,
            "packets/s",
        ),
        (
            format!("rtp.ceiling.memcpy_{}_ns", MTU - 4),
            memcpy_ns,
            "ns",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_stream_depacketizes() {
        let packets = sample_packets(3);
        assert_eq!(packets.len(), 3 * PACKETS_PER_FRAME);
        assert!(packets.iter().all(|p| p.len() <= MTU + 24 + 12));
        let mut frame = Vec::new();
        let total = parse_vp8_depacketize(&packets, &mut Vp8Depacketizer, &mut frame);
        assert_eq!(total, 3 * PACKETS_PER_FRAME * (MTU - 4));
    }

    /// `cargo test --release --lib speed::rtp -- --ignored --nocapture` prints
    /// the figures until `rtclab speed rtp` is wired up.
    #[test]
    #[ignore = "a measurement, not a test; run in release"]
    fn print_speed() {
        for (name, value, unit) in speed() {
            println!("{name} {value:.1} {unit}");
        }
    }
}
