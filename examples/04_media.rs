//! Chapter 4: media as RTP.
//!
//! Part 1 takes the first frame of a VP8 clip and turns it into SRTP packets
//! by hand: the VP8 packetizer, the RTP header, SRTP protection, printing
//! each layer.
//!
//! Part 2 sends the whole clip through a simulated lossy network with
//! [`rtp::session`](rtclab::rtp::session)'s sender and receiver machines
//! (SRTP, NACK and RTX, receiver reports), writes the received frames back
//! into an IVF file and checks that it is byte-identical to the original.
//!
//! The clip is synthetic (no camera, no encoder): VP8-shaped frames made up
//! from a seed by [`synthetic_vp8_clip`]. Everything runs at virtual time
//! from fixed seeds, so every run prints the same.
//!
//! Run it with `cargo run --example 04_media`; it saves both clips in the
//! temporary directory.

#[path = "common/pcap.rs"]
#[allow(clippy::duplicate_mod)] // tests/examples.rs includes several examples
mod pcap;

use std::error::Error;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use rtclab::rtp::ivf::{IvfHeader, IvfReader, synthetic_vp8_clip, write_frame};
use rtclab::rtp::session::{MediaReceiver, MediaSender, SenderEvent, SessionStats, StreamConfig};
use rtclab::rtp::vp8::{Vp8Depacketizer, Vp8Descriptor, Vp8Packetizer};
use rtclab::rtp::{Packetizer, RtpHeader, RtpPacket};
use rtclab::sim::{LinkConfig, Sim};
use rtclab::srtp::{Config, ProtectionProfile, SrtpContext};

/// Frames in the clip: three seconds at 30 frames per second.
const FRAMES: u32 = 90;
/// The media SSRC; RTX uses the next one.
const SSRC: u32 = 0x5eed_0001;
/// The profile Chromium and Firefox both offer first.
const PROFILE: ProtectionProfile = ProtectionProfile::AeadAes128Gcm;

fn main() -> Result<(), Box<dyn Error>> {
    let clip = synthetic_vp8_clip(FRAMES, 30, 4);
    let mut stdout = std::io::stdout();
    let received = run_with(&clip, &mut stdout)?;
    let dir = std::env::temp_dir();
    std::fs::write(dir.join("rtclab-04-sent.ivf"), &clip)?;
    std::fs::write(dir.join("rtclab-04-received.ivf"), &received)?;
    writeln!(
        stdout,
        "saved {} and {}",
        dir.join("rtclab-04-sent.ivf").display(),
        dir.join("rtclab-04-received.ivf").display()
    )?;
    Ok(())
}

/// Runs both parts on the synthetic clip, printing to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    let clip = synthetic_vp8_clip(FRAMES, 30, 4);
    run_with(&clip, out).map(|_| ())
}

/// Runs both parts on `clip`; returns the received clip.
pub fn run_with(clip: &[u8], out: &mut dyn Write) -> Result<Vec<u8>, Box<dyn Error>> {
    let (header, reader) = IvfReader::new(clip)?;
    let frames: Vec<(u64, &[u8])> = reader.collect::<Result<_, _>>()?;
    let keyframes = frames.iter().filter(|(_, f)| f[0] & 1 == 0).count();
    writeln!(out, "== the clip ==")?;
    writeln!(
        out,
        "{} {}x{}, {} frames at {}/{} s, {} keyframes, {} bytes",
        String::from_utf8_lossy(&header.fourcc),
        header.width,
        header.height,
        frames.len(),
        header.timebase_num,
        header.timebase_den,
        keyframes,
        clip.len()
    )?;
    one_frame_by_hand(frames[0].1, out)?;
    let received = through_the_network(&header, &frames, out)?;
    writeln!(out, "== the received clip ==")?;
    let same = received == clip;
    writeln!(
        out,
        "{} bytes, byte-identical to the clip sent: {}",
        received.len(),
        if same { "yes" } else { "NO" }
    )?;
    if !same {
        return Err("the received clip differs from the clip sent".into());
    }
    Ok(received)
}

/// Part 1: one keyframe, packetized and protected by hand.
fn one_frame_by_hand(frame: &[u8], out: &mut dyn Write) -> Result<(), Box<dyn Error>> {
    writeln!(out, "== one frame by hand ==")?;
    let tag = u32::from_le_bytes([frame[0], frame[1], frame[2], 0]);
    writeln!(
        out,
        "frame 0: {} bytes, VP8 frame tag {:02x} {:02x} {:02x}: {}, show_frame {}, first partition {} bytes",
        frame.len(),
        frame[0],
        frame[1],
        frame[2],
        if tag & 1 == 0 {
            "keyframe"
        } else {
            "interframe"
        },
        tag >> 4 & 1,
        tag >> 5
    )?;
    // ANCHOR: packetize
    // Cut the frame into payloads of at most 1200 bytes, each with a VP8
    // payload descriptor in front (RFC 7741 §4.2).
    let mut payloads = Vec::new();
    Vp8Packetizer::new(0x1234).packetize(frame, 1200, &mut payloads)?;

    // One RTP header per payload: same timestamp, consecutive sequence
    // numbers, the marker bit on the frame's last packet (RFC 3550 §5.1).
    let mut packets = Vec::new();
    for (i, payload) in payloads.iter().enumerate() {
        let header = RtpHeader {
            marker: i + 1 == payloads.len(),
            payload_type: 96, // a=rtpmap:96 VP8/90000
            sequence_number: 17_000 + i as u16,
            timestamp: 90_000, // 1 s on the 90 kHz clock
            ssrc: SSRC,
            ..Default::default()
        };
        let mut packet = Vec::with_capacity(12 + payload.len() + 16);
        header.emit_packet(payload, 0, &mut packet)?;
        packets.push(packet);
    }
    // ANCHOR_END: packetize
    for (i, packet) in packets.iter().enumerate() {
        let p = RtpPacket::new_checked(packet)?;
        let (d, n) = Vp8Descriptor::parse(p.payload())?;
        writeln!(
            out,
            "packet {i}: {} bytes = RTP header {} (M={} PT={} seq={} ts={} SSRC={:#010x}) + VP8 descriptor {n} (S={} PID={} picture id {}) + {} bytes of frame",
            packet.len(),
            p.header_len(),
            u8::from(p.marker()),
            p.payload_type(),
            p.sequence_number(),
            p.timestamp(),
            p.ssrc(),
            u8::from(d.start_of_partition),
            d.partition_id,
            d.picture_id.map_or(0, |id| id.value()),
            p.payload().len() - n,
        )?;
    }
    // ANCHOR: protect
    // Keys come from the DTLS exporter in a real call (chapter 5); here, from
    // fixed bytes. One context per direction and master key.
    let material = [0x42u8; 56];
    let (sender_key, _receiver_key) = PROFILE.split_keying_material(&material)?;
    let mut tx = SrtpContext::from_master_key(&sender_key, Config::default())?;
    let mut rx = SrtpContext::from_master_key(&sender_key, Config::default())?;
    let mut packet = packets[0].clone();
    tx.protect_rtp(&mut packet)?; // encrypts the payload, appends the tag
    // ANCHOR_END: protect
    let clear = &packets[0];
    writeln!(
        out,
        "SRTP ({PROFILE}): {} → {} bytes; header unchanged: {}; payload starts {:02x?} → {:02x?}",
        clear.len(),
        packet.len(),
        packet[..12] == clear[..12],
        &clear[12..18],
        &packet[12..18],
    )?;
    let duplicate = packet.clone(); // what a network duplicate would carry
    rx.unprotect_rtp(&mut packet)?;
    writeln!(out, "unprotected again: {}", packet == *clear)?;
    writeln!(
        out,
        "the same packet a second time: {}",
        match rx.unprotect_rtp(&mut duplicate.clone()) {
            Ok(()) => "accepted".to_string(),
            Err(e) => e.to_string(),
        }
    )?;
    Ok(())
}

/// Part 2: the whole clip through a lossy simulated network.
fn through_the_network(
    header: &IvfHeader,
    frames: &[(u64, &[u8])],
    out: &mut dyn Write,
) -> Result<Vec<u8>, Box<dyn Error>> {
    // ANCHOR: setup
    let mut sim = Sim::new(4);
    let sender_addr: SocketAddr = "192.0.2.1:5004".parse()?;
    let receiver_addr: SocketAddr = "198.51.100.2:5004".parse()?;
    let material: Vec<u8> = (0..PROFILE.keying_material_len() as u8).collect();
    let (sender_key, receiver_key) = PROFILE.split_keying_material(&material)?;
    let config = StreamConfig::video(SSRC);
    let sender = MediaSender::new(
        sim.now(),
        config.clone(),
        receiver_addr,
        Vp8Packetizer::new(0x1234),
        &sender_key,
        &receiver_key,
        17_000,
    )?;
    let receiver = MediaReceiver::new(
        config,
        sender_addr,
        Vp8Depacketizer,
        &receiver_key,
        &sender_key,
    )?;
    let tx = sim.add_host(sender, &[sender_addr]);
    let rx = sim.add_host(receiver, &[receiver_addr]);
    // A bad path both ways: 10 % loss, 2 % duplicates, 5 % held back 15 ms,
    // 5 ms of jitter on top of 10 ms one way.
    let bad = LinkConfig {
        loss: 0.10,
        duplicate: 0.02,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(15),
        jitter: Duration::from_millis(5),
        ..LinkConfig::default()
    };
    // ANCHOR_END: setup
    pcap::start(&mut sim); // `--pcap FILE`: the sender's capture (SRTP; no DTLS here, no key log)
    writeln!(out, "== through a lossy network ==")?;
    writeln!(
        out,
        "{sender_addr} → {receiver_addr}: {} ms one way, {:.0} % loss, {:.0} % duplicated, {:.0} % reordered",
        10,
        bad.loss * 100.0,
        bad.duplicate * 100.0,
        bad.reorder * 100.0
    )?;

    // ANCHOR: send_loop
    let ticks_per_frame = 90_000 * header.timebase_num / header.timebase_den.max(1);
    let frame_time = Duration::from_secs(1) * header.timebase_num / header.timebase_den.max(1);
    let mut received = Vec::new();
    // A few frames more than the clip: a loss in the clip's last packet is
    // noticed (and repaired) only when a later packet arrives.
    let fillers = 5;
    for i in 0..frames.len() + fillers {
        let (pts, frame) = frames[i.min(frames.len() - 1)];
        let pts = if i < frames.len() { pts } else { i as u64 };
        let timestamp = 90_000 + ticks_per_frame * pts as u32;
        let now = sim.now();
        sim.machine_mut::<MediaSender<Vp8Packetizer>>(tx)
            .send_frame(now, timestamp, frame)?;
        sim.run_for(frame_time);
        if i == 0 {
            // The first frame gets through: a receiver cannot NACK packets
            // before the first one it sees (a browser sends a PLI instead).
            sim.set_uplink(tx, bad.clone());
            sim.set_uplink(rx, bad.clone());
        }
        received.extend(sim.events::<MediaReceiver<Vp8Depacketizer>>(rx));
    }
    sim.run_for(Duration::from_secs(2));
    received.extend(sim.events::<MediaReceiver<Vp8Depacketizer>>(rx));
    // ANCHOR_END: send_loop
    pcap::save(&mut sim, tx, &[])?;

    let sent: SessionStats = sim.machine::<MediaSender<Vp8Packetizer>>(tx).stats();
    let got: SessionStats = sim.machine::<MediaReceiver<Vp8Depacketizer>>(rx).stats();
    let link = sim.host_stats(tx);
    let back = sim.host_stats(rx);
    let mut rtts = Vec::new();
    let mut keyframe_requests = 0;
    for e in sim.events::<MediaSender<Vp8Packetizer>>(tx) {
        match e {
            SenderEvent::Report { rtt: Some(r), .. } => rtts.push(r),
            SenderEvent::KeyframeRequested => keyframe_requests += 1,
            _ => {}
        }
    }
    writeln!(
        out,
        "sender:   {} frames (the clip's {} and {fillers} fillers) in {} RTP packets, {} SR; {} NACKed sequence numbers answered with {} RTX packets; {} PLI",
        frames.len() + fillers,
        frames.len(),
        sent.packets,
        sent.reports,
        sent.nacked,
        sent.retransmitted,
        keyframe_requests
    )?;
    writeln!(
        out,
        "network:  media path lost {} and duplicated {} of {} datagrams; feedback path lost {} of {}",
        link.lost, link.duplicated, link.sent, back.lost, back.sent
    )?;
    writeln!(
        out,
        "receiver: {} packets first time, {} recovered by RTX, {} duplicates refused by SRTP's replay window, {} RR",
        got.packets, got.retransmitted, got.replays, got.reports
    )?;
    // Each RR gives one RTT (LSR/DLSR): 20 ms of propagation plus each
    // way's 0-5 ms of jitter, the wait behind an earlier, more delayed
    // packet (the link keeps its order) and, for 5 % of the datagrams,
    // 15 ms held back.
    rtts.sort();
    if let (Some(min), Some(max)) = (rtts.first(), rtts.last()) {
        let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
        writeln!(
            out,
            "RTT from {} RR (LSR/DLSR): min {:.1} ms, median {:.1} ms, max {:.1} ms on a 2 × 10 ms path",
            rtts.len(),
            ms(min),
            ms(&rtts[rtts.len() / 2]),
            ms(max)
        )?;
    }

    // ANCHOR: write_back
    // Back into IVF: the presentation time from the RTP timestamp.
    let mut clip = Vec::new();
    header.write(&mut clip);
    let mut keyframes = 0;
    for frame in received.iter().take(frames.len()) {
        let pts = frame.timestamp.wrapping_sub(90_000) / ticks_per_frame;
        keyframes += usize::from(frame.keyframe);
        write_frame(u64::from(pts), &frame.data, &mut clip)?;
    }
    // ANCHOR_END: write_back
    writeln!(
        out,
        "frames:   {} of {} received, {} keyframes",
        received.len().min(frames.len()),
        frames.len(),
        keyframes
    )?;
    Ok(clip)
}
