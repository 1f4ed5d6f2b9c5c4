//! What the whole data path of two `PeerConnection`s allocates per
//! data-channel message once warmed up (issue 16 item 7), counted with a
//! counting global allocator. The two connections are wired back to back in
//! memory: every datagram leaves through `Machine::poll_transmit_into` into
//! one of a few reused buffers and goes straight into the other side's
//! `handle_receive`; time advances 1 ms per message.
//!
//! Allowed per 16 KiB message, and nothing else:
//!
//! - sending (`send_binary`, then every datagram out through
//!   `poll_transmit_into`): the copies of the message the data-channel and
//!   SCTP layers keep until it is acknowledged ([`SEND_COPIES`]). Sealing
//!   each DTLS record, queueing and handing out each datagram allocate
//!   nothing.
//! - receiving, per message: the buffer handed to the application in
//!   `Event::Message`, and the doubling growth of the message being
//!   reassembled (at most [`REASSEMBLY_GROWTH`] reallocations).
//! - receiving, per datagram that carries a DTLS record (the DATA packets
//!   on one side, the SACKs on the other): nothing. The decrypted record
//!   goes from the transport to the data channels as an owned `Vec`
//!   (`transport::Event::ApplicationData`), and `PeerConnection` gives it
//!   back to the DTLS record layer for the next one.
//!
//! The media half (video frames through the same path) is
//! `tests/peer_media_alloc.rs`.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
use rtclab::dtls::cert::Certificate;
use rtclab::machine::{Machine, Receive};
use rtclab::peer::{self, PeerConnection, PeerConnectionState, SdpType};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const A: &str = "192.0.2.1:5000";
const B: &str = "198.51.100.2:6000";

/// Reallocations allowed while one 16 KiB message is reassembled (doubling
/// from the first fragment's size).
const REASSEMBLY_GROWTH: usize = 5;

/// Allocations allowed per message sent: the copies the data-channel and
/// SCTP layers keep of it until it is acknowledged (three today, whatever
/// the message's size; fourteen datagrams each allocating would show).
const SEND_COPIES: usize = 3;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

/// Datagrams in flight from one side, in buffers reused from message to
/// message (so that the harness itself allocates nothing once warm).
struct Wire {
    bufs: Vec<Vec<u8>>,
    used: usize,
}

impl Wire {
    fn new() -> Wire {
        Wire {
            bufs: (0..256).map(|_| Vec::with_capacity(1500)).collect(),
            used: 0,
        }
    }

    /// Everything `from` has to send; how many datagrams.
    fn drain(&mut self, from: &mut PeerConnection) -> usize {
        self.used = 0;
        loop {
            let Some(buf) = self.bufs.get_mut(self.used) else {
                panic!("more than 256 datagrams at once");
            };
            buf.clear();
            if from.poll_transmit_into(buf).is_none() {
                return self.used;
            }
            self.used += 1;
        }
    }

    fn deliver(&self, now: Instant, source: SocketAddr, to: &mut PeerConnection) {
        let destination = to_addr(source);
        for b in &self.bufs[..self.used] {
            to.handle_receive(
                now,
                Receive {
                    source,
                    destination,
                    contents: b,
                },
            );
        }
    }
}

fn to_addr(source: SocketAddr) -> SocketAddr {
    if source == addr(A) { addr(B) } else { addr(A) }
}

fn fire(now: Instant, p: &mut PeerConnection) {
    if p.poll_timeout().is_some_and(|t| t <= now) {
        p.handle_timeout(now);
    }
}

/// Two connected peers and the offerer's open channel.
fn connected() -> (
    PeerConnection,
    PeerConnection,
    rtclab::datachannel::ChannelId,
    Instant,
) {
    let mut rng = StdRng::seed_from_u64(7);
    let ca = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let cb = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let mut a = PeerConnection::new(
        peer::Config::new(ca, vec![addr(A)]),
        StdRng::seed_from_u64(1),
    );
    let mut b = PeerConnection::new(
        peer::Config::new(cb, vec![addr(B)]),
        StdRng::seed_from_u64(2),
    );
    let mut now = Instant::now();
    let ch = a
        .create_data_channel(ChannelInit::new("bulk"))
        .expect("channel");
    let offer = a.create_offer(now).expect("offer");
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("local");
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("local");
    a.set_remote_description(now, SdpType::Answer, &answer)
        .expect("remote");
    let mut wire = Wire::new();
    let (mut open_a, mut open_b) = (false, false);
    for _ in 0..10_000 {
        wire.drain(&mut a);
        wire.deliver(now, addr(A), &mut b);
        wire.drain(&mut b);
        wire.deliver(now, addr(B), &mut a);
        for side in 0..2 {
            let (this, other) = if side == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            while let Some(e) = this.poll_event() {
                match e {
                    peer::Event::LocalCandidate(c) => other
                        .add_ice_candidate(now, &c.to_string())
                        .expect("candidate"),
                    peer::Event::GatheringComplete => other.add_end_of_candidates(now),
                    peer::Event::DataChannel(DcEvent::Open(_)) if side == 0 => open_a = true,
                    peer::Event::DataChannel(DcEvent::Open(_)) => open_b = true,
                    _ => {}
                }
            }
        }
        if open_a && open_b {
            return (a, b, ch, now);
        }
        now += Duration::from_millis(1);
        fire(now, &mut a);
        fire(now, &mut b);
    }
    panic!("not connected");
}

#[test]
fn data_channel_messages_allocate_only_the_message() {
    let (mut a, mut b, ch, mut now) = connected();
    assert_eq!(a.connection_state(), PeerConnectionState::Connected);
    let msg = vec![0x5au8; 16 * 1024];
    let (mut out_a, mut out_b) = (Wire::new(), Wire::new());

    #[derive(Default, Debug)]
    struct Count {
        send: usize,
        receive: usize,
        sack: usize,
        data_datagrams: usize,
        sack_datagrams: usize,
        messages: usize,
    }

    let mut round = |count: &mut Count| {
        let start = allocations();
        a.send_binary(now, ch, &msg).expect("send");
        let n = out_a.drain(&mut a);
        count.send += allocations() - start;
        count.data_datagrams += n;

        let start = allocations();
        out_a.deliver(now, addr(A), &mut b);
        while let Some(e) = b.poll_event() {
            if let peer::Event::DataChannel(DcEvent::Message { message, .. }) = e {
                assert!(matches!(&message, Message::Binary(d) if *d == msg));
                count.messages += 1;
            }
        }
        count.receive += allocations() - start;
        let start = allocations();
        let n = out_b.drain(&mut b);
        out_b.deliver(now, addr(B), &mut a);
        while a.poll_event().is_some() {}
        count.sack += allocations() - start;
        count.sack_datagrams += n;
        now += Duration::from_millis(1);
        fire(now, &mut a);
        fire(now, &mut b);
    };
    // Warm up: queues, windows and buffers reach their working size.
    let mut warm = Count::default();
    for _ in 0..300 {
        round(&mut warm);
    }
    let mut c = Count::default();
    let n = 500;
    for _ in 0..n {
        round(&mut c);
    }
    eprintln!(
        "per message: send {:.2} allocations ({:.1} datagrams), receive {:.2} ({:.1} records), \
         SACKs back {:.2} ({:.1} records)",
        c.send as f64 / n as f64,
        c.data_datagrams as f64 / n as f64,
        c.receive as f64 / n as f64,
        c.data_datagrams as f64 / n as f64,
        c.sack as f64 / n as f64,
        c.sack_datagrams as f64 / n as f64,
    );
    // The warm-up's last message may complete in the first counted round.
    assert!(c.messages.abs_diff(n) <= 1, "messages delivered: {c:?}");
    assert!(
        c.send <= SEND_COPIES * n,
        "send path: the message's copies, nothing per datagram: {c:?}"
    );
    assert!(
        c.receive <= n * (1 + REASSEMBLY_GROWTH),
        "receive path: the message and its reassembly, nothing per record: {c:?}"
    );
    assert_eq!(c.sack, 0, "SACKs back: nothing per record: {c:?}");
}
