//! The media hot path of `peer::Transport`: sending allocates nothing per
//! packet when the datagram is taken with `Machine::poll_transmit_into`
//! into a reused buffer (SRTP protects in a reused buffer, the transport
//! queues in a reused outbox), and once with `poll_transmit` (the owned
//! `Vec` it hands out); receiving allocates once, the decrypted packet
//! handed up in `Event::Rtp`. Counted with a counting global allocator.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::machine::{Machine, Receive};
use rtclab::peer::transport::{Config, Event};
use rtclab::peer::{DtlsRole, IceRole, State, Transport};
use rtclab::sim::Sim;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const A: &str = "192.0.2.1:5000";
const B: &str = "198.51.100.2:6000";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

#[test]
fn one_allocation_per_packet_each_way() {
    let mut rng = StdRng::seed_from_u64(1);
    let ca = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let cb = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let (fa, fb) = (ca.fingerprint(), cb.fingerprint());
    let mut sim = Sim::new(1);
    let now = sim.now();
    let mut config_a = Config::new(IceRole::Controlling, ca);
    config_a.host_candidates = vec![addr(A)];
    config_a.dtls_role = Some(DtlsRole::Client);
    config_a.remote_fingerprints = vec![fb];
    let mut config_b = Config::new(IceRole::Controlled, cb);
    config_b.host_candidates = vec![addr(B)];
    config_b.dtls_role = Some(DtlsRole::Server);
    config_b.remote_fingerprints = vec![fa];
    let mut a = Transport::new(config_a, now, StdRng::seed_from_u64(2)).expect("A");
    let mut b = Transport::new(config_b, now, StdRng::seed_from_u64(3)).expect("B");
    let (ka, kb) = (a.local_credentials().clone(), b.local_credentials().clone());
    a.set_remote_credentials(now, &kb);
    b.set_remote_credentials(now, &ka);
    let hosts = [sim.add_host(a, &[addr(A)]), sim.add_host(b, &[addr(B)])];
    let connected = sim.run_for_with(Duration::from_secs(5), |sim| {
        for side in 0..2 {
            let now = sim.now();
            for e in sim.events::<Transport>(hosts[side]) {
                if let Event::LocalCandidate(c) = e {
                    let _ = sim
                        .machine_mut::<Transport>(hosts[1 - side])
                        .add_remote_candidate(now, c);
                }
            }
        }
        hosts
            .iter()
            .all(|&h| sim.machine::<Transport>(h).state() == State::Connected)
    });
    assert!(connected);
    sim.flush_transmits();
    let now = sim.now();
    for h in hosts {
        let t = sim.machine_mut::<Transport>(h);
        while t.poll_transmit().is_some() {}
        while t.poll_event().is_some() {}
    }

    let mut packet = vec![0x80, 96, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef];
    packet.resize(1100, 0xab);
    let mut out = Vec::with_capacity(1500);
    let mut round = |seq: u16, owned: bool| -> (usize, usize) {
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        let start = allocations();
        let a = sim.machine_mut::<Transport>(hosts[0]);
        a.send_rtp(&packet).expect("send");
        let contents = if owned {
            a.poll_transmit().expect("a datagram").contents
        } else {
            out.clear();
            a.poll_transmit_into(&mut out).expect("a datagram");
            Vec::new()
        };
        let sent = allocations() - start;
        let t = if owned { &contents } else { &out };
        let start = allocations();
        let b = sim.machine_mut::<Transport>(hosts[1]);
        b.handle_receive(
            now,
            Receive {
                source: addr(A),
                destination: addr(B),
                contents: t,
            },
        );
        let e = b.poll_event();
        let received = allocations() - start;
        assert_eq!(e, Some(Event::Rtp(packet.clone())));
        (sent, received)
    };
    // Warm up (queues reach their size), then count.
    for seq in 0..100 {
        round(seq, false);
    }
    let (mut sent, mut received, mut sent_owned) = (0, 0, 0);
    let n = 1000;
    for seq in 100..100 + n {
        let (s, r) = round(seq, false);
        sent += s;
        received += r;
    }
    for seq in 100 + n..100 + 2 * n {
        sent_owned += round(seq, true).0;
    }
    eprintln!(
        "allocations per packet: send {:.2} ({:.2} through poll_transmit), receive {:.2}",
        sent as f64 / f64::from(n),
        sent_owned as f64 / f64::from(n),
        received as f64 / f64::from(n)
    );
    assert_eq!(sent, 0, "send path through poll_transmit_into");
    assert_eq!(sent_owned, n as usize, "send path through poll_transmit");
    assert_eq!(received, n as usize, "receive path");
}
