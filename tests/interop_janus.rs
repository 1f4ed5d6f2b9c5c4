//! Interop with Janus's VideoRoom (Debian's `janus`: libnice ICE, OpenSSL
//! DTLS, libsrtp): one rtclab publisher sends VP8 and Opus-sized audio
//! into a room, one rtclab subscriber gets Janus's offer, answers, and
//! receives the publisher's frames byte for byte. Both DTLS roles run:
//! Janus answers the publisher `a=setup:active` (Janus is the client) and
//! offers the subscriber `actpass` (we answer active: we are the client).
//!
//! This is the path `rtclab speed sfu` loads (`src/speed/sfu.rs`), with its
//! Janus driver and signaling.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtclab::peer;
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::speed::sfu::{GenPeer, Janus, SfuUnderTest, vp8_frame};

#[test]
fn rust_publisher_to_janus_videoroom_to_rust_subscriber() {
    if common::require_binary("janus", "janus").is_none() {
        return;
    }
    let mut janus = match Janus::find() {
        Ok(j) => j,
        Err(e) => {
            assert!(!common::interop_required(), "{e}");
            eprintln!("\n*** SKIPPED: {e} ***\n");
            return;
        }
    };
    janus.start(None).expect("start janus");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bind = || {
        let addr = SocketAddr::new(janus.peer_ip(), 0);
        rt.block_on(LivePeer::bind(LivePeer::config().expect("cert"), addr))
            .expect("bind")
    };
    let mut publisher = GenPeer::new(bind());
    let video = publisher.live.add_track(MediaKind::Video).expect("video");
    let audio = publisher.live.add_track(MediaKind::Audio).expect("audio");
    let mut subscriber = GenPeer::new(bind());

    let room = janus.create_room(1).expect("room");
    let leg = janus.publish(&room, &mut publisher).expect("publish");
    let feed = leg.feed.expect("feed id");
    let janus_answer = publisher.remote().to_string();
    let started = Instant::now();
    let mut p = publisher.live;
    // VideoRoom takes subscribers of a feed once its publisher is up
    // (ICE and DTLS done).
    let up = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match p.next_event().await.expect("publisher io") {
                    peer::Event::ConnectionState(rtclab::peer::PeerConnectionState::Connected) => {
                        break;
                    }
                    peer::Event::Error(e) => panic!("publisher: {e}"),
                    _ => {}
                }
            }
        })
        .await
    });
    assert!(up.is_ok(), "the publisher did not connect to Janus in 10 s");
    janus
        .subscribe(&room, &[feed], &mut subscriber)
        .expect("subscribe");
    let offer = subscriber.remote().to_string();
    assert!(
        offer.contains("m=video") && offer.contains("m=audio"),
        "{offer}"
    );

    let mut s = subscriber.live;
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut audio_frames = 0;
    let done = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        tokio::time::timeout(Duration::from_secs(15), async {
            while got.len() < 10 || audio_frames < 5 {
                tokio::select! {
                    _ = tick.tick() => {
                        let n = sent.len() as u32;
                        let mut f = Vec::new();
                        // A keyframe every 10 frames: Janus asks for one
                        // (PLI) when the subscriber starts, and we send it
                        // either way.
                        vp8_frame(&mut f, 3000, n % 10 == 0, n);
                        p.send_frame(video, n * 3000, &f).expect("video frame");
                        p.send_frame(audio, n * 1584, &[0xf8; 80]).expect("audio");
                        sent.push(f);
                    }
                    e = p.next_event() => {
                        if let peer::Event::Error(e) = e.expect("publisher io") {
                            panic!("publisher: {e}");
                        }
                    }
                    e = s.next_event() => match e.expect("subscriber io") {
                        peer::Event::Frame { mid, frame } => {
                            if offer_kind(&offer, &mid) == Some(MediaKind::Audio) {
                                audio_frames += 1;
                            } else {
                                got.push(frame.data);
                            }
                        }
                        peer::Event::Error(e) => panic!("subscriber: {e}"),
                        _ => {}
                    },
                }
            }
        })
        .await
    });
    janus.stop();
    assert!(
        done.is_ok(),
        "after {:?}: {} frames sent, {} video and {audio_frames} audio frames received",
        started.elapsed(),
        sent.len(),
        got.len()
    );
    // Every frame received is one that was sent, whole and unchanged.
    for f in &got {
        assert!(sent.contains(f), "a received frame was never sent");
    }
    assert_eq!(
        got[0][0] & 1,
        0,
        "the subscriber's first frame is a keyframe"
    );
    // `RTCLAB_SAVE_SDP=DIR`: keep Janus's answer to the publisher and its
    // offer to the subscriber (tests/fixtures/sdp/janus_*.sdp).
    if let Some(dir) = std::env::var_os("RTCLAB_SAVE_SDP") {
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("janus_answer.sdp"), &janus_answer).expect("save SDP");
        std::fs::write(dir.join("janus_offer.sdp"), &offer).expect("save SDP");
    }
}

/// The kind of the m-line `mid` in an SDP.
fn offer_kind(sdp: &str, mid: &str) -> Option<MediaKind> {
    let mut kind = None;
    for l in sdp.lines().map(str::trim) {
        if let Some(m) = l.strip_prefix("m=") {
            kind = Some(if m.starts_with("audio") {
                MediaKind::Audio
            } else {
                MediaKind::Video
            });
        } else if l.strip_prefix("a=mid:") == Some(mid) {
            return kind;
        }
    }
    None
}
