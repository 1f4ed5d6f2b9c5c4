//! `rtclab xray` on a simulated call's capture: the whole ladder and a
//! filtered one are golden files (`tests/fixtures/xray/*.txt`; run with
//! `RTCLAB_BLESS=1` to rewrite them after a deliberate change), and the CLI
//! prints what the library renders. The call runs at virtual time from fixed
//! seeds, so the ladder is the same every run (the DTLS secrets differ, but
//! the ladder shows what they decrypt, not them).

#[path = "common/xray_call.rs"]
mod xray_call;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rtclab::capture::xray::{Filter, Layer, xray};

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/xray")
        .join(name);
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (RTCLAB_BLESS=1 writes it)",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "the ladder differs from {} (RTCLAB_BLESS=1 rewrites it)",
        path.display()
    );
}

#[test]
fn ladder_of_a_simulated_call() {
    let file = xray_call::capture();
    let all = xray(&file, &Filter::default()).expect("ladder");
    // Decrypted with the capture's own key log: the handshake's Finished,
    // SCTP's handshake, DCEP and the messages.
    for needle in [
        "Handshake: Finished (decrypted)",
        "SCTP  INIT ACK",
        "DCEP  DATA_CHANNEL_OPEN label \"chat\"",
        "DCEP  DATA_CHANNEL_ACK",
        "DCEP  text \"hello over SCTP\"",
        "SACK cum TSN",
        "VP8 S=1 PID=0 picture",
        "keyframe",
    ] {
        assert!(all.contains(needle), "{needle:?} not in:\n{all}");
    }
    golden("sim_call.txt", &all);

    let sctp_only = Filter {
        layers: vec![Layer::Sctp, Layer::Dcep],
        from: Some(Duration::from_millis(100)),
        to: Some(Duration::from_millis(200)),
    };
    let some = xray(&file, &sctp_only).expect("ladder");
    assert!(
        some.lines()
            .all(|l| l.contains("SCTP  ") || l.contains("DCEP  ")),
        "{some}"
    );
    golden("sim_call_sctp.txt", &some);

    // The CLI prints the same.
    let dir = std::env::temp_dir().join(format!("rtclab-xray-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path: PathBuf = dir.join("call.pcapng");
    std::fs::write(&path, &file).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtclab"))
        .arg("xray")
        .arg(&path)
        .args(["--layer", "sctp,dcep", "--from", "0.1", "--to", "0.2"])
        .output()
        .expect("run rtclab xray");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), some);
    // --svg: the same packets as a sequence diagram.
    let svg_path = dir.join("call.svg");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rtclab"))
        .arg("xray")
        .arg(&path)
        .args(["--layer", "dtls,sctp,dcep", "--svg"])
        .arg(&svg_path)
        .output()
        .expect("run rtclab xray --svg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = std::fs::read_to_string(&svg_path).expect("the SVG");
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("DCEP DATA_CHANNEL_OPEN label &quot;chat&quot;"),
        "{svg}"
    );
    assert_eq!(svg.matches("class=\"lifeline\"").count(), 2);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_rtclab"))
        .args(["xray", "--layer", "ip"])
        .arg(&path)
        .output()
        .expect("run rtclab xray");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown layer"));
}

/// The example binary cargo built beside this test (`cargo test` builds
/// them into `target/PROFILE/examples/`), if it is newer than its source.
fn built_example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let bin = exe
        .parent()?
        .parent()?
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let built = std::fs::metadata(&bin).ok()?.modified().ok()?;
    let written = std::fs::metadata(&source).ok()?.modified().ok()?;
    (built >= written).then_some(bin)
}

/// `cargo run --example NN -- --pcap FILE` writes the example's capture,
/// decrypted by xray from the key log inside.
#[test]
fn examples_write_their_capture_with_pcap() {
    // (example, a line it must show, whether it runs DTLS to decrypt)
    for (example, needle, dtls) in [
        ("01_hello", "DCEP  text \"hello, world\"", true),
        (
            "05_peer_connection",
            "DATA_CHANNEL_OPEN label \"chat\"",
            true,
        ),
        // SCTP straight over UDP on a lossy link: SACKs with gap blocks.
        ("06_data_channels", " gap ", false),
        // SRTP with keys of its own (no DTLS): the clear headers.
        ("04_media", "(SRTP, ", false),
        // Datagrams moved by hand: the client's view.
        ("02_sans_io", "STUN  Binding Request", false),
        ("05_dtls", "ApplicationData (decrypted, ", true),
        // Real UDP on loopback: the STUN server's four sockets.
        ("03_stun", "STUN  Binding Request", false),
        // The photo's lossy run, SCTP straight over UDP.
        ("09_photo", " gap ", false),
        // The answer to Chromium's offer: its first ICE checks.
        ("08_browser_offer", "STUN  Binding Request", false),
        // The mesh of two: video between two PeerConnections.
        ("10_mesh", "(SRTP, ", true),
        // The SFU's lossy subscriber: its SRTP and the feedback.
        ("10_sfu", "RTPFB (PT 205)", true),
        // Signaling over TCP: the upgrade, then the JSON of each frame.
        (
            "07_signaling",
            "WebSocket text masked {\"type\":\"create or join\"",
            false,
        ),
        // Two processes on loopback: the controlling side's checks, the
        // nominating one, the answers.
        ("ice_pair", "ICE-CONTROLLING USE-CANDIDATE", false),
        // Part 2's run behind a NAT, with TURN: the allocation, the
        // checks, the relayed ones in Send indications.
        ("nat_traversal", "STUN  Allocate Request", false),
    ] {
        let Some(bin) = built_example(example) else {
            eprintln!("note: example {example} not built (run the whole `cargo test`); not run");
            continue;
        };
        let file =
            std::env::temp_dir().join(format!("rtclab-{example}-{}.pcapng", std::process::id()));
        let out = std::process::Command::new(&bin)
            .arg("--pcap")
            .arg(&file)
            .output()
            .expect("run the example");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bytes = std::fs::read(&file).expect("the --pcap file");
        let _ = std::fs::remove_file(&file);
        let ladder = xray(&bytes, &Filter::default()).expect("pcapng");
        assert!(
            ladder.contains(needle),
            "{example}: {needle:?} not in:\n{ladder}"
        );
        if dtls {
            assert!(ladder.contains("Finished (decrypted)"), "{ladder}");
        }
    }
}

/// The book's sequence diagram of a data-channel call (chapter 6) is this
/// tool's output for the simulated call above: the DTLS flights, SCTP's
/// four-way handshake, DCEP and the first messages, regenerated and
/// compared here (`RTCLAB_BLESS=1` rewrites the image).
#[test]
fn the_books_sequence_diagram_is_xrays_output() {
    use rtclab::capture::{pcapng, xray as x};
    let file = xray_call::capture();
    let capture = pcapng::read(&file).expect("capture");
    let lines = x::decode(&capture);
    let filter = Filter {
        layers: vec![Layer::Dtls, Layer::Sctp, Layer::Dcep],
        from: None,
        to: Some(Duration::from_millis(400)),
    };
    let svg = x::svg(&lines, &filter);
    assert!(svg.contains("DATA_CHANNEL_OPEN"), "{svg}");
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("chapters/src/img/xray-datachannel-call.svg");
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &svg).expect("write the image");
        return;
    }
    let book = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        svg,
        book,
        "{} is not what `rtclab xray --svg` draws (RTCLAB_BLESS=1 rewrites it)",
        path.display()
    );
}

#[path = "../examples/01_hello.rs"]
#[allow(dead_code)]
mod ex01;
#[path = "../examples/05_peer_connection.rs"]
#[allow(dead_code)]
mod ex05_pc;
#[path = "../examples/06_data_channels.rs"]
#[allow(dead_code)]
mod ex06;

/// An example's `run`: its whole output goes to the writer.
type Run = fn(&mut dyn std::io::Write) -> Result<(), Box<dyn std::error::Error>>;

/// Runs an example in-process with its `--pcap` capture asked for (the
/// example's `pcap::capture_to`), and returns the capture's bytes.
fn example_capture(name: &str, capture_to: fn(Option<PathBuf>), run: Run) -> Vec<u8> {
    let file =
        std::env::temp_dir().join(format!("rtclab-book-{name}-{}.pcapng", std::process::id()));
    capture_to(Some(file.clone()));
    let mut out = Vec::new();
    let ran = run(&mut out);
    capture_to(None);
    ran.unwrap_or_else(|e| panic!("example {name} runs: {e}"));
    let bytes = std::fs::read(&file).expect("the example's capture");
    let _ = std::fs::remove_file(&file);
    bytes
}

/// Compares `actual` with a file of the book (`chapters/src/…`), or
/// rewrites it under `RTCLAB_BLESS=1`.
fn book_file(path: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write the book's file");
        return;
    }
    let book = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        actual,
        book,
        "{} is not what `rtclab xray` prints for its capture (RTCLAB_BLESS=1 rewrites it)",
        path.display()
    );
}

/// Chapters 1, 5 and 6 show their example's call as `rtclab xray` prints
/// it (and chapter 1 as the SVG `--svg` draws): the examples run in the
/// simulator from fixed seeds, so the ladder of
/// `cargo run --example NN -- --pcap FILE` is the same every run, and is
/// compared here with the files the chapters include.
#[test]
fn the_books_example_ladders_are_xrays_output() {
    use rtclab::capture::{pcapng, xray as x};

    let hello = example_capture("01_hello", ex01::pcap::capture_to, ex01::run);
    let ladder = xray(&hello, &Filter::default()).expect("ladder");
    for needle in [
        "STUN  Binding Request",
        "Handshake: Finished (decrypted)",
        "SCTP  COOKIE ACK",
        "DCEP  DATA_CHANNEL_OPEN label \"hello\"",
        "DCEP  text \"hello, world\"",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    book_file("chapters/src/output/xray-01_hello.txt", &ladder);
    let capture = pcapng::read(&hello).expect("capture");
    let svg = x::svg(&x::decode(&capture), &Filter::default());
    assert_eq!(svg.matches("class=\"lifeline\"").count(), 2);
    book_file("chapters/src/img/xray-01_hello.svg", &svg);

    let pc = example_capture(
        "05_peer_connection",
        ex05_pc::pcap::capture_to,
        ex05_pc::run,
    );
    let ladder = xray(&pc, &Filter::default()).expect("ladder");
    for needle in [
        "ServerHello",
        "Finished (decrypted)",
        "DATA_CHANNEL_OPEN label \"chat\"",
        "text \"hello from A\"",
        // The keyframe, as SRTP: the header in clear, the payload not.
        "ts 0 M (SRTP, ",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    book_file("chapters/src/output/xray-05_peer_connection.txt", &ladder);

    // Chapter 6: the first 50 ms of its example's part 2, the four channels
    // opened, each DCEP OPEN with its channel type and reliability.
    let dc = example_capture("06_data_channels", ex06::pcap::capture_to, ex06::run);
    let opens = Filter {
        to: Some(Duration::from_millis(50)),
        ..Filter::default()
    };
    let ladder = xray(&dc, &opens).expect("ladder");
    for needle in [
        "unordered, max 0 retransmissions",
        "ordered, lifetime 150 ms",
        "DCEP  DATA_CHANNEL_ACK",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    book_file("chapters/src/output/xray-06_data_channels.txt", &ladder);
}

/// Chapter 8b shows the start of a real call, headless Chromium calling the
/// demo's Rust peer, as `rtclab xray` prints it and as its SVG: the
/// capture is checked in (`tests/fixtures/xray/chromium_call.pcapng`,
/// written by tests/xray_browser.rs under `RTCLAB_BLESS=1`: the Rust
/// peer's packets up to its first echo, SRTP left out, the key log
/// inside), so the ladder is the same every run.
#[test]
fn the_books_chromium_call_is_xrays_output() {
    use rtclab::capture::{pcapng, xray as x};
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xray/chromium_call.pcapng");
    let file = std::fs::read(&path).expect("the checked-in capture");
    let ladder = xray(&file, &Filter::default()).expect("ladder");
    for needle in [
        "Handshake: ClientHello",
        "Handshake: Finished (decrypted)",
        "SCTP  INIT ",
        "DATA_CHANNEL_OPEN label \"chat\"",
        "text \"echo: hello rust\"",
    ] {
        assert!(ladder.contains(needle), "{needle:?} not in:\n{ladder}");
    }
    book_file("chapters/src/output/xray-chromium_call.txt", &ladder);
    let capture = pcapng::read(&file).expect("capture");
    let filter = Filter {
        layers: vec![Layer::Dtls, Layer::Sctp, Layer::Dcep],
        ..Filter::default()
    };
    let svg = x::svg(&x::decode(&capture), &filter);
    book_file("chapters/src/img/xray-chromium-call.svg", &svg);
}
