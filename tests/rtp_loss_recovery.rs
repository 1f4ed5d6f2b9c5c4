//! Frames → packetize → lossy, reordering, duplicating link → NACK / RTX →
//! frame assembly → the same frames, for VP8, VP9, H.264 and Opus. Virtual time,
//! seeded randomness: deterministic.
//!
//! (A stand-in for the `sim` network until it lands: the link here is a
//! priority queue of deliveries with random delay, loss and duplication.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use rtclab::rtp::h264::{H264Depacketizer, H264Packetizer};
use rtclab::rtp::nack::{NackGenerator, RtxSender, decode_rtx};
use rtclab::rtp::opus::{OpusDepacketizer, OpusPacketizer};
use rtclab::rtp::rtcp::RtcpPacket;
use rtclab::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};
use rtclab::rtp::{Depacketizer, FrameAssembler, Packetizer, RtpHeader, RtpPacket};

const SSRC: u32 = 0x1111;
const RTX_SSRC: u32 = 0x2222;
const PT: u8 = 96;
const RTX_PT: u8 = 97;

/// A one-way link: delay 10..40 ms (so packets reorder), loss, duplication.
struct Link {
    queue: BTreeMap<(Duration, u64), Vec<u8>>,
    n: u64,
    loss: f64,
}

impl Link {
    fn send(&mut self, rng: &mut StdRng, now: Duration, pkt: Vec<u8>) {
        let copies = if rng.random_bool(0.02) { 2 } else { 1 };
        for _ in 0..copies {
            // The very first packet always arrives: a loss before the first
            // packet a receiver sees is invisible to it (real receivers start
            // with a PLI instead).
            if self.n > 0 && rng.random_bool(self.loss) {
                continue;
            }
            let at = now + Duration::from_millis(rng.random_range(10..40));
            self.n += 1;
            self.queue.insert((at, self.n), pkt.clone());
        }
    }

    fn due(&mut self, now: Duration) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(e) = self.queue.first_entry() {
            if e.key().0 > now {
                break;
            }
            out.push(e.remove());
        }
        out
    }
}

fn run<P: Packetizer, D: Depacketizer>(
    seed: u64,
    mut pk: P,
    dp: D,
    frames: &[Vec<u8>],
    mtu: usize,
) -> (Vec<Vec<u8>>, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let mut forward = Link {
        queue: BTreeMap::new(),
        n: 0,
        loss: 0.1,
    };
    let mut back = Link {
        queue: BTreeMap::new(),
        n: 0,
        loss: 0.05,
    };
    let mut rtx = RtxSender::new(1024, RTX_SSRC, RTX_PT, 9000);
    let mut nacks = NackGenerator::new();
    nacks.retry_interval = Duration::from_millis(80);
    nacks.max_retries = 20;
    let mut asm = FrameAssembler::new(dp, 4096);
    let mut got = Vec::new();
    let mut seq: u16 = 65500; // wraps during the run
    let mut nacked = 0;
    let end = Duration::from_millis(33 * (frames.len() as u64 + 10) + 3000);
    let mut now = Duration::ZERO;
    while now < end {
        // Sender: one frame every 33 ms.
        if now.as_millis() % 33 == 0 {
            let i = (now.as_millis() / 33) as usize;
            // A receiver learns of a lost packet only from a later one, so a
            // few more frames follow the ones compared.
            let f = frames
                .get(i)
                .or_else(|| frames.last().filter(|_| i < frames.len() + 10));
            if let Some(f) = f {
                let mut payloads = Vec::new();
                pk.packetize(f, mtu, &mut payloads).unwrap();
                let n = payloads.len();
                for (k, p) in payloads.iter().enumerate() {
                    let h = RtpHeader {
                        marker: k + 1 == n,
                        payload_type: PT,
                        sequence_number: seq,
                        timestamp: 3000 * i as u32,
                        ssrc: SSRC,
                        ..Default::default()
                    };
                    let mut pkt = Vec::new();
                    h.write_packet(p, 0, &mut pkt).unwrap();
                    rtx.history.store(&pkt).unwrap();
                    forward.send(&mut rng, now, pkt);
                    seq = seq.wrapping_add(1);
                }
            }
        }
        // Receiver.
        for d in forward.due(now) {
            let p = RtpPacket::new_checked(&d).unwrap();
            let original;
            let p = if p.payload_type() == RTX_PT {
                let mut o = Vec::new();
                decode_rtx(&d, SSRC, PT, &mut o).unwrap();
                original = o;
                RtpPacket::new_checked(&original).unwrap()
            } else {
                p
            };
            nacks.on_packet(p.sequence_number());
            asm.insert_packet(&p);
        }
        while let Some(f) = asm.pop_frame() {
            got.push(f.data);
        }
        assert!(!asm.take_keyframe_request(), "nothing should be given up");
        if let Some(n) = nacks.poll_nack_packet(start + now, 0xAAAA, SSRC) {
            nacked += n.lost().count() as u64;
            let mut buf = Vec::new();
            RtcpPacket::Nack(n).write(&mut buf).unwrap();
            back.send(&mut rng, now, buf);
        }
        // Sender: NACKs in, RTX out.
        for d in back.due(now) {
            for p in RtcpPacket::parse_compound(&d, true).unwrap() {
                if let RtcpPacket::Nack(n) = p {
                    for r in rtx.on_nack(&n) {
                        forward.send(&mut rng, now, r);
                    }
                }
            }
        }
        now += Duration::from_millis(1);
    }
    if got.len() < frames.len() || got[..frames.len()] != *frames {
        let i = got.iter().zip(frames).position(|(a, b)| a != b);
        eprintln!(
            "got {} of {} frames, first difference at {:?}",
            got.len(),
            frames.len(),
            i
        );
    }
    got.truncate(frames.len());
    (got, nacked)
}

fn body(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random_range(1..=255u8)).collect()
}

#[test]
fn vp8_survives_loss_reordering_duplication() {
    let mut rng = StdRng::seed_from_u64(1);
    let frames: Vec<Vec<u8>> = (0..120)
        .map(|i| {
            let mut f = body(&mut rng, if i % 30 == 0 { 6000 } else { 1500 });
            f[0] = if i % 30 == 0 { 0x10 } else { 0x11 }; // P bit: keyframe or not
            f
        })
        .collect();
    let (got, nacked) = run(7, Vp8Packetizer::new(5), Vp8Depacketizer, &frames, 1100);
    assert!(
        nacked > 10,
        "the link should have lost packets ({nacked} NACKed)"
    );
    assert_eq!(got, frames);
}

#[test]
fn h264_survives_loss_reordering_duplication() {
    let mut rng = StdRng::seed_from_u64(2);
    let au = |nals: Vec<Vec<u8>>| -> Vec<u8> {
        nals.into_iter()
            .flat_map(|n| [0, 0, 0, 1].into_iter().chain(n))
            .collect()
    };
    let frames: Vec<Vec<u8>> = (0..90)
        .map(|i| {
            let nal = |t: u8, len: usize, rng: &mut StdRng| {
                let mut n = body(rng, len);
                n[0] = 0x60 | t;
                n[1] |= 0x80; // first_mb_in_slice = 0
                n
            };
            if i % 30 == 0 {
                au(vec![
                    nal(7, 12, &mut rng),
                    nal(8, 5, &mut rng),
                    nal(5, 5000, &mut rng),
                ])
            } else {
                au(vec![nal(1, 300 + i * 20, &mut rng)])
            }
        })
        .collect();
    let (got, nacked) = run(
        8,
        H264Packetizer::new(),
        H264Depacketizer::new(),
        &frames,
        1100,
    );
    assert!(nacked > 10, "{nacked}");
    assert_eq!(got, frames);
}

#[test]
fn opus_survives_loss_reordering_duplication() {
    let mut rng = StdRng::seed_from_u64(3);
    let frames: Vec<Vec<u8>> = (0..200).map(|_| body(&mut rng, 80)).collect();
    let (got, nacked) = run(9, OpusPacketizer, OpusDepacketizer, &frames, 1100);
    assert!(nacked > 10, "{nacked}");
    assert_eq!(got, frames);
}

#[test]
fn vp9_survives_loss_reordering_duplication() {
    use rtclab::rtp::vp9::{Vp9Depacketizer, Vp9Packetizer};
    let mut rng = StdRng::seed_from_u64(4);
    let frames: Vec<Vec<u8>> = (0..90)
        .map(|i| {
            let mut f = body(&mut rng, if i % 30 == 0 { 5000 } else { 1200 });
            f[0] = if i % 30 == 0 { 0x82 } else { 0x86 }; // VP9 frame_type: key or inter
            f
        })
        .collect();
    let (got, nacked) = run(10, Vp9Packetizer::new(5), Vp9Depacketizer, &frames, 1100);
    assert!(nacked > 10, "{nacked}");
    assert_eq!(got, frames);
}
