//! Frames → packetize → SRTP protect → a `sim` link with loss, reordering
//! and duplication → SRTP unprotect → NACK / RTX → frame assembly → the same
//! frames, for VP8, VP9, H.264 and Opus. `rtp::session`'s sender and receiver
//! machines run in the simulator at virtual time, deterministic by seed.

use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use rtclab::rtp::h264::{H264Depacketizer, H264Packetizer};
use rtclab::rtp::ivf::{IvfReader, synthetic_vp8_clip};
use rtclab::rtp::opus::{OpusDepacketizer, OpusPacketizer};
use rtclab::rtp::session::{MediaReceiver, MediaSender, SenderEvent, SessionStats, StreamConfig};
use rtclab::rtp::vp8::{Vp8Depacketizer, Vp8Packetizer};
use rtclab::rtp::vp9::{Vp9Depacketizer, Vp9Packetizer};
use rtclab::rtp::{Depacketizer, Packetizer};
use rtclab::sim::{LinkConfig, Sim};
use rtclab::srtp::ProtectionProfile;

/// A bad path: 10 % loss, 2 % duplicates, 5 % of packets held back 15 ms
/// (so later ones overtake them), 5 ms of jitter.
fn lossy(loss: f64) -> LinkConfig {
    LinkConfig {
        jitter: Duration::from_millis(5),
        loss,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        ..LinkConfig::default()
    }
}

struct Outcome {
    frames: Vec<Vec<u8>>,
    sender: SessionStats,
    receiver: SessionStats,
    keyframe_requests: usize,
}

/// Sends `frames` one every `interval`, `ticks` media-clock ticks apart,
/// then a few filler frames (a receiver learns of a lost packet only from
/// a later one), and returns what the receiver assembled.
#[allow(clippy::too_many_arguments)]
fn run<P, D>(
    seed: u64,
    profile: ProtectionProfile,
    config: StreamConfig,
    packetizer: P,
    depacketizer: D,
    frames: &[Vec<u8>],
    interval: Duration,
    ticks: u32,
) -> Outcome
where
    P: Packetizer + 'static,
    D: Depacketizer + 'static,
{
    run_cut(
        seed,
        profile,
        config,
        packetizer,
        depacketizer,
        frames,
        interval,
        ticks,
        0..0,
    )
}

/// As [`run`], with the media path cut (100 % loss) while frames `cut` are
/// sent.
#[allow(clippy::too_many_arguments)]
fn run_cut<P, D>(
    seed: u64,
    profile: ProtectionProfile,
    config: StreamConfig,
    packetizer: P,
    depacketizer: D,
    frames: &[Vec<u8>],
    interval: Duration,
    ticks: u32,
    cut: std::ops::Range<usize>,
) -> Outcome
where
    P: Packetizer + 'static,
    D: Depacketizer + 'static,
{
    let mut sim = Sim::new(seed);
    let tx_addr: SocketAddr = "192.0.2.1:5004".parse().unwrap();
    let rx_addr: SocketAddr = "192.0.2.2:5004".parse().unwrap();
    // Keys as the DTLS exporter would give them (RFC 5764 §4.2).
    let mut rng = sim.rng(99);
    let material: Vec<u8> = (0..profile.keying_material_len())
        .map(|_| rng.random())
        .collect();
    let (client, server) = profile.split_keying_material(&material).unwrap();
    let sender = MediaSender::new(
        sim.now(),
        config.clone(),
        rx_addr,
        packetizer,
        &client,
        &server,
        65_500, // wraps during the run
    )
    .unwrap();
    let receiver = MediaReceiver::new(config, tx_addr, depacketizer, &server, &client).unwrap();
    let tx = sim.add_host(sender, &[tx_addr]);
    let rx = sim.add_host(receiver, &[rx_addr]);

    let mut got = Vec::new();
    let mut keyframe_requests = 0;
    let fillers = 10;
    for i in 0..frames.len() + fillers {
        let frame = frames.get(i).unwrap_or(&frames[frames.len() - 1]);
        if i == cut.start && !cut.is_empty() {
            sim.set_uplink(
                tx,
                LinkConfig {
                    loss: 1.0,
                    ..lossy(0.0)
                },
            );
        } else if i == cut.end && !cut.is_empty() {
            sim.set_uplink(tx, lossy(0.10));
        }
        let now = sim.now();
        sim.machine_mut::<MediaSender<P>>(tx)
            .send_frame(now, 1000u32.wrapping_add(ticks * i as u32), frame)
            .unwrap();
        sim.run_for(interval);
        if i == 0 {
            // A loss before the first packet a receiver sees is invisible to
            // it (a browser starts with a PLI); from the second frame on the
            // path is bad.
            sim.set_uplink(tx, lossy(0.10));
            sim.set_uplink(rx, lossy(0.05));
        }
        got.extend(
            sim.events::<MediaReceiver<D>>(rx)
                .into_iter()
                .map(|f| f.data),
        );
    }
    sim.run_for(Duration::from_secs(3));
    got.extend(
        sim.events::<MediaReceiver<D>>(rx)
            .into_iter()
            .map(|f| f.data),
    );
    for e in sim.events::<MediaSender<P>>(tx) {
        if e == SenderEvent::KeyframeRequested {
            keyframe_requests += 1;
        }
    }
    got.truncate(frames.len());
    Outcome {
        frames: got,
        sender: sim.machine::<MediaSender<P>>(tx).stats(),
        receiver: sim.machine::<MediaReceiver<D>>(rx).stats(),
        keyframe_requests,
    }
}

/// What every lossy run must show: the frames came through, losses were
/// repaired by RTX, duplicates were refused by SRTP's replay window, and no
/// frame was given up.
fn check(o: &Outcome, frames: &[Vec<u8>]) {
    assert_eq!(o.frames.len(), frames.len(), "frames missing");
    assert!(o.frames == frames, "frames differ");
    assert!(o.receiver.nacked > 10, "{:?}", o.receiver);
    assert!(o.sender.retransmitted > 10, "{:?}", o.sender);
    assert!(o.receiver.retransmitted > 5, "{:?}", o.receiver);
    assert!(
        o.receiver.replays > 0,
        "no duplicate refused: {:?}",
        o.receiver
    );
    assert_eq!(o.receiver.rejected, 0, "{:?}", o.receiver);
    assert_eq!(o.receiver.plis, 0, "{:?}", o.receiver);
    assert_eq!(o.keyframe_requests, 0);
    assert!(o.sender.reports > 0 && o.receiver.reports > 0);
}

fn body(rng: &mut StdRng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

fn vp8_clip_frames(frames: u32) -> Vec<Vec<u8>> {
    let clip = synthetic_vp8_clip(frames, 30, 1);
    let (_, reader) = IvfReader::new(&clip).unwrap();
    reader.map(|f| f.unwrap().1.to_vec()).collect()
}

const FRAME_30FPS: Duration = Duration::from_micros(33_333);

#[test]
fn vp8_survives_loss_reordering_duplication() {
    let frames = vp8_clip_frames(120);
    let o = run(
        7,
        ProtectionProfile::AeadAes128Gcm,
        StreamConfig::video(0x1111),
        Vp8Packetizer::new(5),
        Vp8Depacketizer,
        &frames,
        FRAME_30FPS,
        3000, // 90 kHz / 30 fps
    );
    check(&o, &frames);
}

#[test]
fn vp8_with_every_srtp_profile() {
    let frames = vp8_clip_frames(40);
    for (i, profile) in ProtectionProfile::ALL.into_iter().enumerate() {
        let o = run(
            20 + i as u64,
            profile,
            StreamConfig::video(0x1111),
            Vp8Packetizer::new(5),
            Vp8Depacketizer,
            &frames,
            FRAME_30FPS,
            3000,
        );
        assert!(o.frames == frames, "{profile}");
        assert!(o.receiver.retransmitted > 0, "{profile}: {:?}", o.receiver);
    }
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
            // Bodies without zero bytes: no accidental Annex-B start codes.
            let nal = |t: u8, len: usize, rng: &mut StdRng| {
                let mut n: Vec<u8> = (0..len).map(|_| rng.random_range(1..=255u8)).collect();
                n[0] = 0x60 | t;
                n[1] |= 0x80; // first_mb_in_slice = 0
                n
            };
            if i % 30 == 0 {
                // SPS, PPS, IDR slice: STAP-A for the first two, FU-A for the slice.
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
    let o = run(
        8,
        ProtectionProfile::Aes128CmHmacSha1_80,
        StreamConfig::video(0x2222),
        H264Packetizer::new(),
        H264Depacketizer::new(),
        &frames,
        FRAME_30FPS,
        3000,
    );
    check(&o, &frames);
}

#[test]
fn opus_survives_loss_reordering_duplication() {
    let mut rng = StdRng::seed_from_u64(3);
    let frames: Vec<Vec<u8>> = (0..300).map(|_| body(&mut rng, 80)).collect();
    let o = run(
        9,
        ProtectionProfile::AeadAes256Gcm,
        StreamConfig::audio(0x3333),
        OpusPacketizer,
        OpusDepacketizer,
        &frames,
        Duration::from_millis(20),
        960, // 48 kHz × 20 ms
    );
    check(&o, &frames);
}

#[test]
fn vp9_survives_loss_reordering_duplication() {
    let mut rng = StdRng::seed_from_u64(4);
    let frames: Vec<Vec<u8>> = (0..90)
        .map(|i| {
            let mut f = body(&mut rng, if i % 30 == 0 { 5000 } else { 1200 });
            f[0] = if i % 30 == 0 { 0x82 } else { 0x86 }; // VP9 frame_type: key or inter
            f
        })
        .collect();
    let o = run(
        10,
        ProtectionProfile::AeadAes128Gcm,
        StreamConfig::video(0x4444),
        Vp9Packetizer::new(5),
        Vp9Depacketizer,
        &frames,
        FRAME_30FPS,
        3000,
    );
    check(&o, &frames);
}

#[test]
fn same_seed_same_run() {
    let frames = vp8_clip_frames(30);
    let go = || {
        let o = run(
            11,
            ProtectionProfile::AeadAes128Gcm,
            StreamConfig::video(0x1111),
            Vp8Packetizer::new(5),
            Vp8Depacketizer,
            &frames,
            FRAME_30FPS,
            3000,
        );
        (o.sender, o.receiver)
    };
    assert_eq!(go(), go());
}

#[test]
fn a_short_outage_is_repaired_by_nack() {
    // Half a second without a single packet: well within the receiver's
    // patience (1 s) and the sender's history, so RTX fills it all in.
    let frames = vp8_clip_frames(90);
    let o = run_cut(
        12,
        ProtectionProfile::AeadAes128Gcm,
        StreamConfig::video(0x1111),
        Vp8Packetizer::new(5),
        Vp8Depacketizer,
        &frames,
        FRAME_30FPS,
        3000,
        35..50,
    );
    assert!(o.frames == frames);
    assert_eq!(o.keyframe_requests, 0);
    assert!(o.receiver.retransmitted > 20, "{:?}", o.receiver);
}

#[test]
fn a_long_outage_ends_in_a_pli_and_a_keyframe() {
    // Two seconds cut, and a sender that keeps only its last 64 packets:
    // the oldest holes cannot be filled, so the receiver gives the blocked
    // frame up after 1 s, asks for a keyframe (PLI), and resumes at one.
    let frames = vp8_clip_frames(150);
    let o = run_cut(
        13,
        ProtectionProfile::AeadAes128Gcm,
        StreamConfig {
            history: 64,
            ..StreamConfig::video(0x1111)
        },
        Vp8Packetizer::new(5),
        Vp8Depacketizer,
        &frames,
        FRAME_30FPS,
        3000,
        35..95,
    );
    assert!(o.receiver.plis >= 1, "{:?}", o.receiver);
    assert!(o.keyframe_requests >= 1);
    assert!(o.sender.plis >= 1, "{:?}", o.sender);
    // Before the cut: everything. Then only whole frames, in order, the
    // first one after the gap a keyframe, and the clip's tail complete.
    assert_eq!(o.frames[..35], frames[..35]);
    let mut next = 35;
    for (k, f) in o.frames[35..].iter().enumerate() {
        if next == frames.len() {
            break; // the filler frames after the clip
        }
        let at = frames[next..]
            .iter()
            .position(|x| x == f)
            .unwrap_or_else(|| panic!("frame {k} after the cut is not a sent frame in order"));
        if k == 0 {
            assert_eq!(f[0] & 1, 0, "the first frame after the gap is a keyframe");
            assert!(next + at > 35, "some frames were lost");
        }
        next += at + 1;
    }
    assert_eq!(next, frames.len(), "the clip's last frame arrived");
}
