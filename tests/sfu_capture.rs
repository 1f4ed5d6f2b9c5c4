//! `rtclab sfu --pcap FILE` with `$SSLKEYLOGFILE`: a Rust peer publishes
//! VP8 over WHIP for two seconds; after Ctrl-C (SIGINT) the capture holds
//! the call (STUN, the DTLS handshake decrypted with the key log inside,
//! SRTP, and the SRTP decrypted on the `srtp-plaintext` interface) as
//! `rtclab xray` and tshark read it, and the key log file has the
//! participant's line.

mod common;
#[path = "common/tshark.rs"]
mod tshark;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::{Peer, http_get};
use rtclab::runtime::LivePeer;
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
    // The publisher's VP8 as the SFU decrypted it: RTP headers and VP8
    // payload descriptors, and the SFU's RTCP feedback to it.
    let plain: Vec<&str> = ladder.lines().filter(|l| l.contains(" ⇢ ")).collect();
    assert!(
        plain
            .iter()
            .any(|l| l.contains("RTP ") && l.contains(" VP8 ")),
        "no decrypted VP8 in:\n{ladder}"
    );
    assert!(
        plain.iter().any(|l| l.contains("RTCP ")),
        "no decrypted RTCP in:\n{ladder}"
    );
    if let Some(bin) = common::require_binary("tshark", "tshark") {
        let rtp = tshark::tshark(
            &bin,
            &pcap,
            &[
                "-d",
                "udp.port==5004,rtp",
                "-d",
                "udp.port==5005,rtcp",
                "-Y",
                "rtp && frame.interface_name == \"srtp-plaintext\"",
                "-T",
                "fields",
                "-e",
                "rtp.p_type",
                "-e",
                "rtp.seq",
            ],
        );
        assert!(
            rtp.lines().filter(|l| l.starts_with("96\t")).count() >= 30,
            "tshark shows no decrypted RTP of payload type 96:\n{rtp}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `rtclab sfu --xray` (Server::set_downloads): a page (here a Rust peer
/// over the page's WebSocket protocol) is told its capture's URL in
/// `welcome`; once connected, the URL serves its own share of the SFU's
/// capture: its handshake, decrypted with its key log line, and its SRTP.
#[tokio::test]
async fn a_sfu_page_downloads_its_own_capture() {
    use futures_util::{SinkExt, StreamExt};
    use rtclab::peer::{self, PeerConnectionState};
    use rtclab::sfu::server::{Config, Server};
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Message;

    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let cert = rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
        .expect("certificate");
    let mut server = Server::bind(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp: "127.0.0.1:0".parse().unwrap(),
        sfu: rtclab::sfu::Config::new(cert, Vec::new()),
        reports: None,
        whip: None,
    })
    .await
    .expect("bind");
    server.set_downloads(8 << 20);
    let http = server.http_addr();
    tokio::spawn(server.run_until(std::future::pending()));

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/sfu/ws?room=x"))
        .await
        .expect("WebSocket");
    let welcome: Value = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).expect("JSON"),
        other => panic!("no welcome: {other:?}"),
    };
    let url = welcome["capture"]
        .as_str()
        .expect("a capture URL")
        .to_string();
    assert!(url.starts_with("/sfu/capture/"), "{url}");

    let lo = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut peer = LivePeer::bind(LivePeer::config().expect("cert"), lo)
        .await
        .expect("bind");
    let video = peer.add_track(MediaKind::Video).expect("track");
    let offer = peer.offer().expect("offer");
    let text = |v: Value| Message::Text(v.to_string().into());
    ws.send(text(json!({"type": "offer", "sdp": offer})))
        .await
        .expect("send");
    let mut connected = false;
    let mut n = 0u32;
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut sent_after_connect = 0;
    while sent_after_connect < 45 {
        assert!(tokio::time::Instant::now() < deadline, "no call");
        tokio::select! {
            m = ws.next() => {
                let Some(Ok(Message::Text(t))) = m else { panic!("signaling ended: {m:?}") };
                let v: Value = serde_json::from_str(&t).expect("JSON");
                match v["type"].as_str() {
                    Some("answer") => peer.accept_answer(v["sdp"].as_str().unwrap_or("")).expect("answer"),
                    Some("candidate") => match v["candidate"].as_str() {
                        Some("") | None => peer.add_end_of_candidates(),
                        Some(c) => { let _ = peer.add_ice_candidate(c); }
                    },
                    _ => {}
                }
            }
            e = peer.next_event() => match e.expect("io") {
                peer::Event::LocalCandidate(c) => {
                    ws.send(text(json!({"type": "candidate", "candidate": c.to_string()}))).await.expect("send");
                }
                peer::Event::ConnectionState(PeerConnectionState::Connected) => connected = true,
                _ => {}
            },
            _ = tick.tick(), if connected => {
                let mut f = Vec::new();
                vp8_frame(&mut f, 3000, n % 30 == 0, n);
                let _ = peer.send_frame(video, n * 3000, &f);
                n += 1;
                sent_after_connect += 1;
            }
        }
    }
    // The SFU flushes its capture each second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (head, bytes) = http_get(http, &url).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (missing, _) = http_get(http, "/sfu/capture/00.pcapng").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let cap = rtclab::capture::pcapng::read(&bytes).expect("pcapng");
    assert_eq!(cap.key_log.lines().count(), 1, "{}", cap.key_log);
    let ladder = rtclab::capture::xray::xray(&bytes, &Default::default()).expect("ladder");
    for needle in ["Handshake: ClientHello", "Finished (decrypted)", "(SRTP, "] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    // Its VP8 as the SFU decrypted it, on the plaintext interface.
    assert!(
        ladder
            .lines()
            .any(|l| l.contains(" ⇢ ") && l.contains(" VP8 ")),
        "no decrypted VP8 in the share:\n{ladder}"
    );
    let local = peer.local_addr().to_string();
    assert!(
        ladder
            .lines()
            .all(|l| !(l.contains(" → ") || l.contains(" ⇢ ")) || l.contains(&local)),
        "another address in the share:\n{ladder}"
    );
}
