//! `rtclab sfu --pcap FILE` with `$SSLKEYLOGFILE`: a Rust peer publishes
//! VP8 over WHIP for two seconds; after Ctrl-C (SIGINT) the capture holds
//! the call (STUN, the DTLS handshake decrypted with the key log inside,
//! SRTP) as `rtclab xray` reads it, and the key log file has the
//! participant's line.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::Peer;
use rtclab::peer::LivePeer;
use rtclab::sdp::MediaKind;
use rtclab::speed::sfu::{GenPeer, SfuUnderTest, Whip, vp8_frame};

const BIN: &str = env!("CARGO_BIN_EXE_rtclab");

#[test]
fn rtclab_sfu_captures_a_whip_call() {
    let dir = std::env::temp_dir().join(format!("rtclab-sfu-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let pcap = dir.join("sfu.pcapng");
    let keys = dir.join("keys.log");
    let args: Vec<String> = ["sfu", "--listen", "127.0.0.1:0", "--pcap"]
        .iter()
        .map(|s| s.to_string())
        .chain([pcap.display().to_string()])
        .collect();
    let keys_env = keys.display().to_string();
    let mut sfu = Peer::start_in(
        "sfu-capture",
        &PathBuf::from(BIN),
        &args,
        None,
        &[("SSLKEYLOGFILE", keys_env.as_str())],
        false,
    );
    assert!(
        sfu.wait_for_output("rtclab sfu on http://", Duration::from_secs(10)),
        "{}",
        sfu.output()
    );
    let out = sfu.output();
    let http: SocketAddr = out
        .split("rtclab sfu on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("the SFU's address");

    let mut whip = Whip::at(http);
    let room = whip.create_room(1).expect("room");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut live = rt
        .block_on(LivePeer::bind(LivePeer::config().expect("cert"), lo))
        .expect("bind");
    let video = live.add_track(MediaKind::Video).expect("track");
    let mut publisher = GenPeer::new(live);
    whip.publish(&room, &mut publisher).expect("WHIP publish");
    let mut p = publisher.live;
    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        let mut n = 0u32;
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
    drop(p);

    // Ctrl-C: the SFU stops and its capture is flushed.
    let ok = std::process::Command::new("kill")
        .args(["-INT", &sfu.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
    sfu.wait_exit(Duration::from_secs(10))
        .expect("the SFU exits");

    let key_log = std::fs::read_to_string(&keys).expect("$SSLKEYLOGFILE written");
    assert!(key_log.starts_with("CLIENT_RANDOM "), "{key_log}");
    let out = std::process::Command::new(BIN)
        .arg("xray")
        .arg(&pcap)
        .output()
        .expect("rtclab xray");
    let ladder = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{ladder}");
    for needle in [
        "STUN  Binding Request",
        "Handshake: ClientHello",
        "Finished (decrypted)",
        "(SRTP, ",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
