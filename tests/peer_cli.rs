//! `rtclab peer` as a process: two of them meet in a room of `rtclab
//! signaling` on loopback and send each other a 1 MiB file, each hash
//! checked; and headless Chromium and Firefox, on a codelab-style page, meet one in a
//! room and gets its message echoed, once as the offerer and once as the
//! answerer. A missing browser is a loud skip (a failure under
//! `RTCLAB_REQUIRE_INTEROP=1`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Peer;
use common::browser::{BrowserKind, launch};
use rtclab::signaling::{Config, Page, Server};
use serde_json::Value;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_rtclab");

/// `n` bytes made up from `seed` (a xorshift stream).
fn content(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtclab-peer-cli-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// `rtclab signaling` on a free port; returns it and its address.
fn signaling() -> (Peer, String) {
    let server = Peer::start(
        "signaling",
        &PathBuf::from(BIN),
        &["signaling".into(), "--listen".into(), "127.0.0.1:0".into()],
    );
    assert!(
        server.wait_for_output("WebSocket at ws://", Duration::from_secs(10)),
        "rtclab signaling did not start"
    );
    let out = server.output();
    let addr = out
        .split("WebSocket at ws://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("the server's address")
        .to_string();
    (server, addr)
}

#[test]
fn two_rtclab_peers_send_each_other_a_mib_through_signaling() {
    let dir = scratch("two");
    let (_server, addr) = signaling();
    let files = [content(1 << 20, 1), content(1 << 20, 2)];
    let mut peers = Vec::new();
    for (i, data) in files.iter().enumerate() {
        let send = dir.join(format!("from-{i}.bin"));
        std::fs::write(&send, data).expect("write");
        let save = dir.join(format!("inbox-{i}"));
        let mut args: Vec<String> = [
            "peer",
            "--server",
            &format!("ws://{addr}"),
            "--room",
            "files",
            "--udp",
            "127.0.0.1:0",
            "--send",
            &send.display().to_string(),
            "--save",
            &save.display().to_string(),
            "--exit-after-transfer",
            "--connect-timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Peer 0 captures its call (--pcap); peer 1 writes its DTLS key
        // log where $SSLKEYLOGFILE says, as browsers do.
        let key_log = dir.join("keys.log").display().to_string();
        let env: &[(&str, &str)] = if i == 0 {
            args.extend([
                "--pcap".into(),
                dir.join("peer-0.pcapng").display().to_string(),
            ]);
            &[]
        } else {
            &[("SSLKEYLOGFILE", key_log.as_str())]
        };
        let p = Peer::start_in(
            &format!("peer-{i}"),
            &PathBuf::from(BIN),
            &args,
            None,
            env,
            false,
        );
        if i == 0 {
            // The first creates the room (and will offer).
            assert!(p.wait_for_output("created room files", Duration::from_secs(10)));
        }
        peers.push(p);
    }
    let started = Instant::now();
    for p in &mut peers {
        let status = p.wait_exit(Duration::from_secs(60)).expect("peer exits");
        assert!(status.success(), "peer failed:\n{}", p.output());
    }
    eprintln!("both transfers in {:?}", started.elapsed());
    for (i, data) in files.iter().enumerate() {
        let other = 1 - i;
        let got = std::fs::read(dir.join(format!("inbox-{other}/from-{i}.bin"))).expect("saved");
        assert!(got == *data, "file {i} arrived changed");
    }
    let (a, b) = (peers[0].output(), peers[1].output());
    for out in [&a, &b] {
        for line in [
            "ice: selected pair local host 127.0.0.1:",
            "dtls: connected as ",
            "sctp: association established",
            "datachannel: \"file\" open",
            "hash matches",
            "sent and acknowledged (1048576 bytes",
        ] {
            assert!(out.contains(line), "no {line:?} in:\n{out}");
        }
    }
    assert!(a.contains("we offer"), "{a}");
    assert!(b.contains("answer sent"), "{b}");
    // Peer 1's key log: one CLIENT_RANDOM line, as NSS writes them.
    let keys = std::fs::read_to_string(dir.join("keys.log")).expect("$SSLKEYLOGFILE written");
    assert!(keys.starts_with("CLIENT_RANDOM "), "{keys}");
    // Peer 0's capture, read by `rtclab xray`: decrypted down to DCEP.
    let out = std::process::Command::new(BIN)
        .args(["xray", "--layer", "dtls,dcep"])
        .arg(dir.join("peer-0.pcapng"))
        .output()
        .expect("rtclab xray");
    let ladder = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{ladder}");
    for needle in [
        "Handshake: ClientHello",
        "Finished (decrypted)",
        "DATA_CHANNEL_OPEN label \"file\"",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits (without blocking the runtime) for `text` in `p`'s output.
async fn output_has(p: &Peer, text: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if p.output().contains(text) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn chromium_page_meets_rtclab_peer_in_a_room() {
    page_meets_rtclab_peer(BrowserKind::Chromium).await;
}

#[tokio::test]
async fn firefox_page_meets_rtclab_peer_in_a_room() {
    page_meets_rtclab_peer(BrowserKind::Firefox).await;
}

async fn page_meets_rtclab_peer(kind: BrowserKind) {
    let (reports, mut reported) = mpsc::channel(8);
    let mut config = Config::default();
    config.report_to = Some(reports);
    config.pages.push(Page {
        path: "/test/peer.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("pages/peer_cli.html"),
    });
    // Room `rust-first`: rtclab peer creates it and offers; room
    // `page-first`: the page does.
    config.pages.push(Page {
        path: "/test/two.html",
        content_type: "text/html; charset=utf-8",
        body: br#"<!doctype html><title>two rooms</title>
<iframe src="/test/peer.html?room=rust-first"></iframe>
<iframe src="/test/peer.html?room=page-first"></iframe>"#,
    });
    let server = Server::bind("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("bind");
    let addr = server.local_addr().expect("addr");
    tokio::spawn(server.run());
    let peer = |room: &str| {
        let args: Vec<String> = [
            "peer",
            "--server",
            &format!("ws://{addr}"),
            "--room",
            room,
            "--udp",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Peer::start(&format!("peer-{room}"), &PathBuf::from(BIN), &args)
    };
    let first = peer("rust-first");
    assert!(output_has(&first, "created room rust-first", Duration::from_secs(10)).await);

    let Some(_browser) = launch(kind, &format!("http://{addr}/test/two.html")) else {
        return;
    };
    let mut second = None;
    let mut echoes: Vec<Value> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while echoes.len() < 2 {
        let body = match tokio::time::timeout_at(deadline, reported.recv()).await {
            Ok(Some(b)) => b,
            _ => panic!(
                "no echo in 60 s; got {echoes:?}\n---- rust-first ----\n{}\n---- page-first ----\n{}",
                first.output(),
                second.as_ref().map(Peer::output).unwrap_or_default()
            ),
        };
        let v: Value = serde_json::from_str(&body).expect("a JSON report");
        assert!(v.get("error").is_none(), "the page failed: {v}");
        if v["created"] == true && v["room"] == "page-first" {
            // The page made this room: now the Rust peer joins, and answers.
            second = Some(peer("page-first"));
        } else if v.get("echo").is_some() {
            echoes.push(v);
        }
    }
    for v in &echoes {
        assert_eq!(v["echo"], v["sent"], "{v}");
        assert_eq!(v["state"], "connected", "{v}");
    }
    assert!(first.output().contains("we offer"), "{}", first.output());
    let second = second.expect("the second peer ran");
    assert!(
        second.output().contains("answer sent"),
        "{}",
        second.output()
    );
    for p in [&first, &second] {
        let out = p.output();
        assert!(out.contains("dtls: connected as "), "{out}");
        assert!(out.contains("datachannel: \"chat\" open"), "{out}");
    }
}

/// `--video` sends an IVF clip at its pace; the other side's `--record`
/// writes what arrived, frame for frame the clip's.
#[test]
fn rtclab_peer_sends_ivf_video_and_the_other_records_it() {
    let dir = scratch("video");
    let (_server, addr) = signaling();
    let clip = rtclab::rtp::ivf::synthetic_vp8_clip(45, 15, 7);
    let clip_path = dir.join("clip.ivf");
    std::fs::write(&clip_path, &clip).expect("write clip");
    let record = dir.join("got.ivf");
    let run = |name: &str, extra: &[String]| {
        let mut args: Vec<String> = [
            "peer",
            "--server",
            &format!("ws://{addr}"),
            "--room",
            "video",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(["--udp".into(), "127.0.0.1:0".into()]);
        args.extend_from_slice(extra);
        Peer::start(name, &PathBuf::from(BIN), &args)
    };
    // The recorder creates the room and offers (a recvonly video m-line).
    let mut recorder = run(
        "recorder",
        &["--record".into(), record.display().to_string()],
    );
    assert!(recorder.wait_for_output("created room video", Duration::from_secs(10)));
    let mut sender = run(
        "sender",
        &[
            "--video".into(),
            clip_path.display().to_string(),
            "--exit-after-transfer".into(),
        ],
    );
    let s = sender
        .wait_exit(Duration::from_secs(30))
        .expect("sender exits");
    assert!(s.success(), "sender failed:\n{}", sender.output());
    let r = recorder
        .wait_exit(Duration::from_secs(10))
        .expect("recorder exits when the sender leaves");
    assert!(r.success(), "recorder failed:\n{}", recorder.output());
    assert!(sender.output().contains("video: 45 frames sent"));
    let got = std::fs::read(&record).expect("the recording");
    let (_, want) = rtclab::rtp::ivf::IvfReader::new(&clip).expect("clip");
    let want: Vec<Vec<u8>> = want.map(|f| f.expect("frame").1.to_vec()).collect();
    let (header, frames) = rtclab::rtp::ivf::IvfReader::new(&got).expect("an IVF file");
    assert_eq!(&header.fourcc, b"VP80");
    let frames: Vec<Vec<u8>> = frames.map(|f| f.expect("frame").1.to_vec()).collect();
    // On loopback every frame arrives; the last ones may still be in
    // flight when the sender closes.
    assert!(frames.len() >= 40, "{} frames recorded", frames.len());
    for f in &frames {
        assert!(want.contains(f), "a recorded frame is not the clip's");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
