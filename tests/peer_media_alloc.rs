//! The media path through `PeerConnection` allocates nothing per packet
//! beyond what the API hands over: counted with a counting global allocator
//! over two connected peers, A sending VP8 frames to B, after a warm-up.
//!
//! Allowed, and asserted exactly:
//! - sending, drained with `poll_transmit_into` into reused buffers as the
//!   runtime does: nothing;
//! - receiving frames: what `Event::Frame` hands up, two per frame (the
//!   frame's data and its mid `String`);
//! - receiving in RTP mode: nothing (the application recycles each
//!   `Event::Rtp` buffer with `recycle_rtp`).
//!
//! Timers and RTCP (reports every second, transport-cc feedback every
//! 50 ms, consent checks) are counted apart and printed, not asserted:
//! they allocate per interval, not per packet.
//!
//! Everything else (packetizing, the RTP header and its extensions, the RTX
//! history, SRTP, routing, RTX/NACK state, frame assembly) reuses buffers.

#[path = "common/sim_peers.rs"]
mod sim_peers;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use std::time::Duration;

use counting_alloc::allocations;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::machine::{Machine, Receive};
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType, TrackCodec, TrackId};
use rtclab::sim::Sim;
use sim_peers::{A, B, addr, certificate, pump};

/// A and B connected in the simulator; A has a VP8 track.
fn connected() -> (Sim, [rtclab::sim::HostId; 2], TrackId, String) {
    let mut rng = StdRng::seed_from_u64(5);
    let (ca, cb) = (certificate(&mut rng), certificate(&mut rng));
    let mut sim = Sim::new(5);
    let now = sim.now();
    let mut a = PeerConnection::new(
        peer::Config::new(ca, vec![addr(A)]),
        StdRng::seed_from_u64(6),
    );
    let mut b = PeerConnection::new(
        peer::Config::new(cb, vec![addr(B)]),
        StdRng::seed_from_u64(7),
    );
    let track = a.add_track_with_codec(TrackCodec::Vp8).expect("track");
    let offer = a.create_offer(now).expect("offer");
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("offer");
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("offer");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("answer");
    a.set_remote_description(now, SdpType::Answer, &answer)
        .expect("answer");
    let mid = a.track_mid(track).expect("mid").to_string();
    let hosts = [sim.add_host(a, &[addr(A)]), sim.add_host(b, &[addr(B)])];
    let mut log = [Vec::new(), Vec::new()];
    sim.run_for_with(Duration::from_secs(5), |sim| {
        pump(sim, hosts, &mut log);
        hosts.iter().all(|&h| {
            sim.machine::<PeerConnection>(h).connection_state() == PeerConnectionState::Connected
        })
    });
    sim.flush_transmits();
    (sim, hosts, track, mid)
}

/// Sends `rounds` frames of 3 packets from A to B by hand (no simulator
/// in between), returning the allocations of the send side and of the
/// receive side, and the frames / RTP packets B gave.
fn rounds(
    sim: &mut Sim,
    hosts: [rtclab::sim::HostId; 2],
    track: TrackId,
    first: u32,
    rounds: u32,
) -> (usize, usize, usize, usize) {
    let frame = vec![0x10u8; 3000]; // 3 packets of ≤ 1100 bytes
    let mut datagrams = Vec::with_capacity(8);
    // The runtime's reused datagram buffers, made before counting.
    let mut media: Vec<Vec<u8>> = Vec::with_capacity(8);
    let mut pool: Vec<Vec<u8>> = (0..8).map(|_| Vec::with_capacity(1500)).collect();
    let (mut sent, mut received, mut frames, mut packets) = (0, 0, 0, 0);
    let mut feedback = 0;
    for i in first..first + rounds {
        let now = sim.now() + Duration::from_millis(33 * u64::from(i));
        let start = allocations();
        let a = sim.machine_mut::<PeerConnection>(hosts[0]);
        a.send_frame(now, track, 3000 * i, &frame).expect("send");
        // Drained as a runtime does: into reused buffers.
        loop {
            let mut b = pool.pop().unwrap_or_else(|| Vec::with_capacity(1500));
            b.clear();
            if a.poll_transmit_into(&mut b).is_none() {
                pool.push(b);
                break;
            }
            media.push(b);
        }
        sent += allocations() - start;
        let start = allocations();
        let b = sim.machine_mut::<PeerConnection>(hosts[1]);
        for d in media.drain(..) {
            b.handle_receive(
                now,
                Receive {
                    source: addr(A),
                    destination: addr(B),
                    contents: &d,
                },
            );
            pool.push(d);
        }
        while let Some(e) = b.poll_event() {
            match e {
                peer::Event::Frame { frame, .. } => {
                    frames += 1;
                    drop(frame);
                }
                peer::Event::Rtp { packet, .. } => {
                    packets += 1;
                    b.recycle_rtp(packet);
                }
                _ => {}
            }
        }
        received += allocations() - start;
        // Timers (reports, transport-cc feedback) and B's RTCP back to A.
        let start = allocations();
        for side in [1, 0] {
            let m = sim.machine_mut::<PeerConnection>(hosts[side]);
            if m.poll_timeout().is_some_and(|t| t <= now) {
                m.handle_timeout(now);
            }
        }
        // What the timers sent (reports, feedback, consent checks) is
        // delivered both ways until quiet, so that the send and receive
        // counts above see media only.
        loop {
            let mut moved = false;
            for (from, to, src, dst) in [(0, 1, A, B), (1, 0, B, A)] {
                while let Some(t) = sim
                    .machine_mut::<PeerConnection>(hosts[from])
                    .poll_transmit()
                {
                    datagrams.push(t);
                }
                let m = sim.machine_mut::<PeerConnection>(hosts[to]);
                for t in datagrams.drain(..) {
                    moved = true;
                    m.handle_receive(
                        now,
                        Receive {
                            source: addr(src),
                            destination: addr(dst),
                            contents: &t.contents,
                        },
                    );
                }
                while m.poll_event().is_some() {}
            }
            if !moved {
                break;
            }
        }
        feedback += allocations() - start;
    }
    // Not per packet: feedback every 50 ms and reports every second.
    eprintln!("timers and feedback: {feedback} allocations over {rounds} frames");
    (sent, received, frames, packets)
}

#[test]
fn a_frame_costs_nothing_to_send_and_its_event_to_receive() {
    let (mut sim, hosts, track, _) = connected();
    rounds(&mut sim, hosts, track, 1, 2800); // warm-up: the RTX ring and the estimator's history (8192 packets) fill
    let n = 500;
    let (sent, received, frames, _) = rounds(&mut sim, hosts, track, 2801, n);
    let n = n as usize;
    eprintln!(
        "per frame of 3 packets: send {:.2} allocations, receive {:.2}",
        sent as f64 / n as f64,
        received as f64 / n as f64
    );
    assert_eq!(frames, n);
    assert_eq!(sent, 0, "send through poll_transmit_into: nothing");
    assert_eq!(received, 2 * n, "receive: the frame and its mid handed up");
}

#[test]
fn rtp_mode_receives_without_allocating() {
    let (mut sim, hosts, track, mid) = connected();
    sim.machine_mut::<PeerConnection>(hosts[1])
        .set_rtp_mode(&mid, true)
        .expect("rtp mode");
    rounds(&mut sim, hosts, track, 1, 2800);
    let n = 500;
    let (_, received, _, packets) = rounds(&mut sim, hosts, track, 2801, n);
    assert_eq!(packets, 3 * n as usize);
    assert_eq!(received, 0, "receive in RTP mode: nothing");
}
