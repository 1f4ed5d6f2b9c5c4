//! `peer::PeerConnection` over real UDP on loopback, driven by
//! `runtime::Driver`: two peers in one process, signaled in-process (SDP
//! text and trickled candidates), connect with the answerer as DTLS client
//! (`a=setup:active`) and as DTLS server (`passive`); a VP8 frame, an Opus
//! frame and data-channel messages go both ways. Bounded by a timeout.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
use rtclab::dtls::cert::Certificate;
use rtclab::peer::{self, DtlsRole, PeerConnection, PeerConnectionState, SdpType, TrackId};
use rtclab::runtime::Driver;
use rtclab::sdp::{MediaKind, Setup};
use tokio::net::UdpSocket;

const LIMIT: Duration = Duration::from_secs(20);

async fn bound() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let a = s.local_addr().expect("local addr");
    (s, a)
}

#[derive(Default, Debug)]
struct Seen {
    connected: bool,
    open: Vec<rtclab::datachannel::ChannelId>,
    frames: Vec<Vec<u8>>,
    messages: Vec<Message>,
    failed: Option<String>,
}

fn on_event(side: &mut Seen, other: &mut PeerConnection, e: peer::Event) {
    let now = Instant::now();
    match e {
        peer::Event::LocalCandidate(c) => other
            .add_ice_candidate(now, &c.to_string())
            .expect("candidate"),
        peer::Event::GatheringComplete => other.add_end_of_candidates(now),
        peer::Event::ConnectionState(PeerConnectionState::Connected) => side.connected = true,
        peer::Event::ConnectionState(PeerConnectionState::Failed) => {
            side.failed.get_or_insert_with(|| "failed".into());
        }
        peer::Event::Error(e) => side.failed = Some(e.to_string()),
        peer::Event::Frame { frame, .. } => side.frames.push(frame.data),
        peer::Event::DataChannel(DcEvent::Open(id)) => side.open.push(id),
        peer::Event::DataChannel(DcEvent::Message { message, .. }) => side.messages.push(message),
        _ => {}
    }
}

fn peer(cert: Certificate, addr: SocketAddr, setup: Setup, seed: u64) -> PeerConnection {
    let mut config = peer::Config::new(cert, vec![addr]);
    config.answer_setup = setup;
    PeerConnection::new(config, StdRng::seed_from_u64(seed))
}

async fn run_pair(answer_setup: Setup, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let ca = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let cb = Certificate::generate(&mut rng, SystemTime::now()).expect("cert");
    let (sa, aa) = bound().await;
    let (sb, ab) = bound().await;
    let mut a = peer(ca, aa, answer_setup, seed + 1);
    let mut b = peer(cb, ab, answer_setup, seed + 2);
    let tracks: [[TrackId; 2]; 2] = [
        [
            a.add_track(MediaKind::Video).expect("v"),
            a.add_track(MediaKind::Audio).expect("a"),
        ],
        [
            b.add_track(MediaKind::Video).expect("v"),
            b.add_track(MediaKind::Audio).expect("a"),
        ],
    ];
    let ch = a
        .create_data_channel(ChannelInit::new("chat"))
        .expect("channel");
    let now = Instant::now();
    let offer = a.create_offer(now).expect("offer");
    a.set_local_description(now, SdpType::Offer, &offer)
        .expect("local offer");
    b.set_remote_description(now, SdpType::Offer, &offer)
        .expect("remote offer");
    let answer = b.create_answer().expect("answer");
    b.set_local_description(now, SdpType::Answer, &answer)
        .expect("local answer");
    a.set_remote_description(now, SdpType::Answer, &answer)
        .expect("remote answer");
    let b_role = match answer_setup {
        Setup::Passive => DtlsRole::Server,
        _ => DtlsRole::Client,
    };
    assert_eq!(b.transport().and_then(|t| t.dtls_role()), Some(b_role));

    let mut da = Driver::from_sockets(a, vec![sa]).expect("driver A");
    let mut db = Driver::from_sockets(b, vec![sb]).expect("driver B");
    let mut seen = [Seen::default(), Seen::default()];
    let mut vp8 = vec![0x10u8; 3000]; // P bit 0: a keyframe
    vp8[1] = 7;
    let opus = vec![0x55u8; 120];
    let start = Instant::now();
    let mut sent = false;
    let outcome = tokio::time::timeout(LIMIT, async {
        loop {
            tokio::select! {
                e = da.next_event() => on_event(&mut seen[0], db.machine_mut(), e.expect("I/O A")),
                e = db.next_event() => on_event(&mut seen[1], da.machine_mut(), e.expect("I/O B")),
            }
            if let Some(f) = seen.iter().find_map(|s| s.failed.clone()) {
                panic!("{answer_setup:?}: failed: {f}");
            }
            if !sent && seen.iter().all(|s| s.connected && !s.open.is_empty()) {
                sent = true;
                let now = Instant::now();
                for (side, d) in [&mut da, &mut db].into_iter().enumerate() {
                    let pc = d.machine_mut();
                    pc.send_frame(now, tracks[side][0], 0, &vp8).expect("vp8");
                    pc.send_frame(now, tracks[side][1], 0, &opus).expect("opus");
                }
                da.machine_mut()
                    .send_text(now, ch, "hi from A")
                    .expect("text");
                let bch = seen[1].open[0];
                db.machine_mut()
                    .send_text(now, bch, "hi from B")
                    .expect("text");
            }
            if sent
                && seen
                    .iter()
                    .all(|s| s.frames.len() == 2 && s.messages.len() == 1)
            {
                break;
            }
        }
    })
    .await;
    assert!(
        outcome.is_ok(),
        "{answer_setup:?}: not done within {LIMIT:?}: A {:?}, B {:?}",
        seen[0],
        seen[1]
    );
    eprintln!(
        "loopback, answerer {answer_setup:?}: offer to media and messages both ways in {:?}",
        start.elapsed()
    );
    for s in &seen {
        assert!(s.frames.contains(&vp8));
        assert!(s.frames.contains(&opus));
    }
    assert_eq!(seen[1].messages, [Message::Text("hi from A".into())]);
    assert_eq!(seen[0].messages, [Message::Text("hi from B".into())]);
    let now = Instant::now();
    da.machine_mut().close(now);
    db.machine_mut().close(now);
    let _ = da.flush().await;
    let _ = db.flush().await;
    assert_eq!(da.machine().connection_state(), PeerConnectionState::Closed);
}

#[tokio::test]
async fn loopback_answerer_active_is_dtls_client() {
    run_pair(Setup::Active, 10).await;
}

#[tokio::test]
async fn loopback_answerer_passive_is_dtls_server() {
    run_pair(Setup::Passive, 20).await;
}
