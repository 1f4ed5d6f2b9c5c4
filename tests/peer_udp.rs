//! `peer::Transport` over real UDP on loopback, driven by `runtime::Driver`:
//! two transports in one process connect in both DTLS roles, RTP and DTLS
//! application data flow both ways, and both close. Bounded by a timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::peer::transport::{Config, Event};
use rtclab::peer::{DtlsRole, IceRole, State, Transport};
use rtclab::rtp::RtpHeader;
use rtclab::runtime::Driver;
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(20);

async fn bound() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let a = s.local_addr().expect("local addr");
    (s, a)
}

fn rtp(ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        payload_type: 111,
        sequence_number: seq,
        timestamp: u32::from(seq) * 960,
        ssrc,
        ..RtpHeader::default()
    };
    let mut p = Vec::new();
    h.emit_packet(payload, 0, &mut p).expect("write");
    p
}

/// What each side saw.
#[derive(Default, Debug)]
struct Seen {
    connected: bool,
    rtp: Vec<Vec<u8>>,
    data: Vec<Vec<u8>>,
    closed: bool,
    failed: Option<String>,
}

/// Handles one event of `side`; signaling (candidates) goes to `other`.
fn on_event(side: &mut Seen, other: &mut Transport, e: Event) {
    let now = Instant::now();
    match e {
        Event::LocalCandidate(c) => {
            let c = c.to_string().parse().expect("candidate");
            other.add_remote_candidate(now, c).expect("add candidate");
        }
        Event::GatheringComplete => other.end_of_candidates(now),
        Event::Connected(_) => side.connected = true,
        Event::Rtp(p) => side.rtp.push(p),
        Event::ApplicationData(d) => side.data.push(d),
        Event::Closed => side.closed = true,
        Event::Failed(e) => side.failed = Some(e.to_string()),
        _ => {}
    }
}

async fn run_pair(a_role: DtlsRole, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ca = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let cb = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let (fa, fb) = (ca.fingerprint(), cb.fingerprint());
    let (sa, aa) = bound().await;
    let (sb, ab) = bound().await;
    let now = Instant::now();
    let b_role = match a_role {
        DtlsRole::Client => DtlsRole::Server,
        DtlsRole::Server => DtlsRole::Client,
    };
    let mut config_a = Config::new(IceRole::Controlling, ca);
    config_a.host_candidates = vec![aa];
    config_a.dtls_role = Some(a_role);
    config_a.remote_fingerprints = vec![fb];
    let mut config_b = Config::new(IceRole::Controlled, cb);
    config_b.host_candidates = vec![ab];
    config_b.dtls_role = Some(b_role);
    config_b.remote_fingerprints = vec![fa];
    let mut a = Transport::new(config_a, now, StdRng::seed_from_u64(seed + 1)).expect("A");
    let mut b = Transport::new(config_b, now, StdRng::seed_from_u64(seed + 2)).expect("B");
    let (ka, kb) = (a.local_credentials().clone(), b.local_credentials().clone());
    a.set_remote_credentials(now, &kb);
    b.set_remote_credentials(now, &ka);
    let mut da = Driver::from_sockets(a, vec![sa]).expect("driver A");
    let mut db = Driver::from_sockets(b, vec![sb]).expect("driver B");
    let mut seen = [Seen::default(), Seen::default()];

    let packets: Vec<Vec<u8>> = (0..50u16).map(|i| rtp(0xA, i, &[i as u8; 160])).collect();
    let start = Instant::now();
    let mut connected_after = None;
    let mut sent = false;
    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            tokio::select! {
                e = da.next_event() => on_event(&mut seen[0], db.machine_mut(), e.expect("I/O A")),
                e = db.next_event() => on_event(&mut seen[1], da.machine_mut(), e.expect("I/O B")),
            }
            if let Some(f) = seen.iter().find_map(|s| s.failed.clone()) {
                panic!("{a_role:?}: failed: {f}");
            }
            if seen[0].connected && seen[1].connected && !sent {
                connected_after = Some(start.elapsed());
                sent = true;
                for p in &packets {
                    da.machine_mut().send_rtp(p).expect("send_rtp");
                }
                db.machine_mut()
                    .send_rtp(&rtp(0xB, 7, b"from B"))
                    .expect("send_rtp");
                da.machine_mut()
                    .send_application_data(b"data from A")
                    .expect("data");
                db.machine_mut()
                    .send_application_data(b"data from B")
                    .expect("data");
            }
            // Loopback loses nothing in practice; all of it must arrive.
            if sent
                && seen[1].rtp.len() == packets.len()
                && !seen[0].rtp.is_empty()
                && !seen[0].data.is_empty()
                && !seen[1].data.is_empty()
            {
                break;
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{a_role:?}: not done within {LIMIT:?}: A {:?} {:?}, B {:?} {:?}",
        da.machine().state(),
        seen[0],
        db.machine().state(),
        seen[1]
    );
    eprintln!(
        "loopback, A as DTLS {a_role:?}: connected after {:?}",
        connected_after.unwrap_or_default()
    );
    assert_eq!(seen[1].rtp, packets);
    assert_eq!(seen[0].rtp, vec![rtp(0xB, 7, b"from B")]);
    assert_eq!(seen[1].data, vec![b"data from A".to_vec()]);
    assert_eq!(seen[0].data, vec![b"data from B".to_vec()]);

    // A closes; B hears close_notify.
    da.machine_mut().close();
    da.flush().await.expect("flush");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while !seen[1].closed {
            let e = db.next_event().await.expect("I/O B");
            on_event(&mut seen[1], da.machine_mut(), e);
        }
    })
    .await;
    assert!(closed.is_ok(), "B never heard close_notify");
    assert_eq!(da.machine().state(), State::Closed);
    assert_eq!(db.machine().state(), State::Closed);
}

#[tokio::test(flavor = "current_thread")]
async fn loopback_a_as_dtls_client() {
    run_pair(DtlsRole::Client, 1).await;
}

#[tokio::test(flavor = "current_thread")]
async fn loopback_a_as_dtls_server() {
    run_pair(DtlsRole::Server, 2).await;
}
