//! WHIP and WHEP (RFC 9725) into `rtclab sfu`: a Rust peer publishes VP8
//! through `POST /whip/ROOM`, two others play the room through
//! `POST /whep/ROOM`, each receiving the publisher's frames through the SFU;
//! `DELETE` ends a session and a second `DELETE` is 404. The WHIP/WHEP
//! client is `rtclab speed sfu`'s (the one it drives Janus and rtclab with).

#[path = "common/sfu_server.rs"]
mod sfu_server;

use std::net::SocketAddr;
use std::time::Duration;

use rtclab::peer;
use rtclab::runtime::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::speed::sfu::{GenPeer, SfuUnderTest, Whip, http_request, receive_only, vp8_frame};
use sfu_server::start_sfu;

#[test]
fn whip_publishes_into_a_room_and_whep_plays_it() {
    let (http, _) = start_sfu(None);
    let mut whip = Whip::at(http);
    let room = whip.create_room(1).expect("room");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let bind = || {
        rt.block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
            .expect("bind")
    };
    let mut live = bind();
    let video = live.add_track(MediaKind::Video).expect("track");
    let mut publisher = GenPeer::new(live);
    let leg = whip.publish(&room, &mut publisher).expect("WHIP publish");
    assert!(
        leg.resource.starts_with("/whip/resource/"),
        "{}",
        leg.resource
    );
    let mut p = publisher.live;
    // The publisher's track must exist in the room before a viewer offers:
    // send a few frames first.
    let mut n = 0u32;
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut f = Vec::new();
                        vp8_frame(&mut f, 3000, n % 30 == 0, n);
                        let _ = p.send_frame(video, n * 3000, &f);
                        n += 1;
                    }
                    e = p.next_event() => { e.expect("io"); }
                }
            }
        })
        .await;
    });
    let mut viewers = Vec::new();
    for _ in 0..2 {
        let mut live = bind();
        receive_only(&mut live).expect("recvonly");
        let mut viewer = GenPeer::new(live);
        whip.subscribe(&room, &[], &mut viewer).expect("WHEP play");
        viewers.push(viewer.live);
    }
    let (mut a, mut b) = (viewers.remove(0), viewers.remove(0));
    let got = rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut frames = [0usize; 2];
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while frames.iter().any(|&f| f < 10) {
                tokio::select! {
                    _ = tick.tick() => {
                        let mut f = Vec::new();
                        vp8_frame(&mut f, 3000, n % 30 == 0, n);
                        let _ = p.send_frame(video, n * 3000, &f);
                        n += 1;
                    }
                    e = p.next_event() => { e.expect("io"); }
                    e = a.next_event() => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames[0] += 1; }
                    }
                    e = b.next_event() => {
                        if let peer::Event::Frame { .. } = e.expect("io") { frames[1] += 1; }
                    }
                }
            }
        })
        .await;
        frames
    });
    assert!(
        got.iter().all(|&f| f >= 10),
        "frames through the SFU: {got:?}"
    );
    // DELETE ends the publisher's session; a second one is 404.
    let del = |path: &str| {
        http_request(http, "DELETE", path, &[], b"", Duration::from_secs(5))
            .expect("DELETE")
            .status
    };
    assert_eq!(del(&leg.resource), 200);
    assert_eq!(del(&leg.resource), 404);
}
