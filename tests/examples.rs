//! Smoke-runs the chapters' examples, so that no chapter can rot.
//!
//! How: each example keeps its logic in `pub fn run(out: &mut dyn Write)`,
//! and `main` only calls it with stdout. This test compiles the example's
//! file into itself (`#[path]`) and calls `run` with a buffer. That is fast
//! (no nested `cargo run`, which would wait on the build-directory lock the
//! outer `cargo test` holds, and would rebuild in a second profile), needs
//! nothing on disk, and checks exactly the code the reader runs.
//!
//! `cargo test` also builds the example binaries (into `target/*/examples/`);
//! when a binary is there and newer than its source, the test runs it too,
//! with a bounded timeout, and checks that it exits 0 and prints its key
//! result (`main` is then covered as well).
//!
//! Where an example's output is deterministic, it is compared with the
//! transcript the chapter shows (`chapters/src/output/*.txt`); run with
//! `RTCLAB_BLESS=1` to rewrite those after a deliberate change.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../examples/02_sans_io.rs"]
#[allow(dead_code)]
mod ex02;

#[path = "../examples/03_stun.rs"]
#[allow(dead_code)]
mod ex03;

#[path = "../examples/04_media.rs"]
#[allow(dead_code)]
mod ex04;

#[path = "../examples/05_dtls.rs"]
#[allow(dead_code)]
mod ex05;

#[path = "../examples/05_peer_connection.rs"]
#[allow(dead_code)]
mod ex05_pc;
#[path = "../examples/06_data_channels.rs"]
#[allow(dead_code)]
mod ex06;
#[path = "../examples/07_signaling.rs"]
#[allow(dead_code)]
mod ex07;
#[path = "../examples/nat_traversal.rs"]
#[allow(dead_code)]
mod ex08_nat;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the transcript file the chapter includes.
fn check_transcript(name: &str, actual: &str) {
    let path = root().join("chapters/src/output").join(name);
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
        std::fs::write(&path, actual).expect("write transcript");
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
        "the output differs from {} (the chapter shows that file; RTCLAB_BLESS=1 rewrites it)",
        path.display()
    );
}

/// Replaces every port number after an address (`127.0.0.1:54321`) with
/// `PORT`, and FINGERPRINT values (which cover the ports) with `..`.
fn without_ports(line: &str) -> String {
    let line = hide_fingerprints(line);
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        out.push(c);
        if c == ':'
            && (prev.is_ascii_digit() || prev == ']')
            && chars.peek().is_some_and(char::is_ascii_digit)
        {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push_str("PORT");
        }
        prev = c;
    }
    out
}

fn hide_fingerprints(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("Fingerprint(") {
        let start = i + "Fingerprint(".len();
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push_str("..");
            rest = &rest[digits..];
        }
    }
    out.push_str(rest);
    out
}

/// Checks that the lines of the transcript `name` appear in `actual` in
/// order (other lines may come between), port numbers aside. With
/// `RTCLAB_BLESS=1`, the part of `actual` from the server's start on is
/// written as the new transcript.
fn check_lines_in_order(name: &str, actual: &str) {
    let path = root().join("chapters/src/output").join(name);
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        let from = actual.find("== our STUN server ==").unwrap_or(0);
        std::fs::write(&path, &actual[from..]).expect("write transcript");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (RTCLAB_BLESS=1 writes it)",
            path.display()
        )
    });
    let mut have = actual.lines().map(without_ports);
    for want in expected.lines().map(without_ports) {
        assert!(
            have.any(|l| l == want),
            "{} shows the line\n  {want}\nwhich this run did not print (in that order):\n{actual}",
            path.display()
        );
    }
}

/// The example binary cargo built beside this test, if it is there and
/// newer than its source. Test binaries live in `target/PROFILE/deps/`,
/// examples in `target/PROFILE/examples/`.
fn built_example(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let source = root().join("examples").join(format!("{name}.rs"));
    let built = std::fs::metadata(&bin).ok()?.modified().ok()?;
    let written = std::fs::metadata(&source).ok()?.modified().ok()?;
    if built < written {
        eprintln!("note: {} is older than its source; not run", bin.display());
        return None;
    }
    Some(bin)
}

/// Runs a binary with a time limit; returns (exit success, stdout, stderr).
fn run_bounded(bin: &Path, limit: Duration) -> (bool, String, String) {
    let out_path = std::env::temp_dir().join(format!(
        "rtclab-example-{}-{}.out",
        std::process::id(),
        bin.file_name().and_then(|n| n.to_str()).unwrap_or("x")
    ));
    let err_path = out_path.with_extension("err");
    let mut child = Command::new(bin)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("create stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let deadline = Instant::now() + limit;
    let ok = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    (ok, stdout, stderr)
}

#[test]
fn ports_are_hidden_from_transcript_comparison() {
    assert_eq!(
        without_ports("from 127.0.0.1:4242 to [::1]:80, t=0.5s: Fingerprint(123) ok"),
        "from 127.0.0.1:PORT to [::1]:PORT, t=0.5s: Fingerprint(..) ok"
    );
}

#[test]
fn example_02_sans_io_drives_two_machines_by_hand() {
    let mut buf = Vec::new();
    ex02::run(&mut buf).expect("example 02 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "t=0.000s network: dropped it",
        "t=0.000s client: poll_timeout() = t=0.500s",
        "t=0.500s client → 198.51.100.1:3478",
        "NAT: source 10.0.0.2:5000 becomes 203.0.113.7:61000",
        "server → 203.0.113.7:61000",
        "XorMappedAddress(203.0.113.7:61000)",
        "client event: transaction",
        "our server-reflexive address: 203.0.113.7:61000",
        "client: poll_timeout() = None",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    check_transcript("02_sans_io.txt", &out);

    if let Some(bin) = built_example("02_sans_io") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(30));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        // Not compared byte for byte: after `cargo test --test examples` alone
        // the binary may predate a library change that the test saw.
        assert!(
            stdout.contains("our server-reflexive address: 203.0.113.7:61000"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn example_03_stun_decodes_the_rfc5769_samples() {
    let mut buf = Vec::new();
    ex03::walk_sample_request(&mut buf).expect("the sample request decodes");
    ex03::unxor_sample_response(&mut buf).expect("the sample response decodes");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "transaction id b7e7a701bc34d686fa87dfae",
        "SOFTWARE (type 0x8022, comprehension-optional), length 16",
        "Software(\"STUN test client\")",
        "Priority(1845494271 = 0x6e0001ff)",
        "USERNAME (type 0x0006, comprehension-required), length 9",
        "+ 3 padding",
        "MESSAGE-INTEGRITY: ok",
        "FINGERPRINT: ok",
        "X-Port    0xa147 ^ 0x2112 = 0x8055 = 32853",
        "= 192.0.2.1",
        "Message::xor_mapped_address() = 192.0.2.1:32853",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    check_transcript("03_rfc5769.txt", &out);
}

#[test]
fn example_03_stun_queries_our_server_over_loopback() {
    let mut buf = Vec::new();
    ex03::run(&mut buf).expect("example 03 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "== our STUN server ==",
        "listening on 127.0.0.2:",
        "Request Binding, ",
        "Success Binding, ",
        "XorMappedAddress(127.0.0.1:",
        "ChangeRequest { change_ip: true, change_port: true }",
        "Other address: 127.0.0.2:",
        "Server software: rtclab",
        "Mapping behaviour: no NAT (direct mapping)",
        "Filtering behaviour: endpoint-independent filtering",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }

    // The chapter shows one real run. Ports differ from run to run, and a
    // slow machine may add a retransmission, so the check is: every line of
    // the transcript appears in this run's output, in order, ports aside.
    check_lines_in_order("03_stun_server.txt", &out);

    if let Some(bin) = built_example("03_stun") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("Filtering behaviour: endpoint-independent filtering"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

/// Replaces every run of 16 or more hex digits (keys, fingerprints: fresh
/// on every run) with `<hex>`, and fingerprints' `AB:CD:…` pairs too.
fn without_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let words: Vec<String> = line
            .split(' ')
            .map(|w| {
                let digits = w.chars().filter(|c| c.is_ascii_hexdigit()).count();
                let hexish = w.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
                if hexish && digits >= 16 {
                    "<hex>".to_string()
                } else {
                    w.to_string()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn example_05_dtls_shows_the_flights_and_the_keys() {
    let mut buf = Vec::new();
    ex05::run(&mut buf).expect("example 05 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "flight 1: client → server",
        "HelloVerifyRequest (cookie) (message_seq 0)",
        "flight 3: client → server",
        "ClientHello (message_seq 1)",
        "ServerKeyExchange (ECDHE share, signed)",
        "CertificateRequest",
        "flight 5: client → server",
        "CertificateVerify (signature)",
        "change_cipher_spec  epoch 0",
        "handshake  epoch 1  encrypted: Finished",
        "flight 6: server → client",
        "client: connected, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "server: SRTP profile SRTP_AEAD_AES_128_GCM",
        "exporter output, 56 bytes: ",
        "the same on both sides: true",
        "client write salt ",
        "server received \"hello from the client\"",
        "client received \"hello from the server\"",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(!out.contains("flight 7"), "{out}");
    // The chapter shows one run; keys and fingerprints differ every time.
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        check_transcript("05_dtls.txt", &out);
    } else {
        let path = root().join("chapters/src/output/05_dtls.txt");
        let shown = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e} (RTCLAB_BLESS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            without_secrets(&out),
            without_secrets(&shown),
            "the output differs from {} beyond keys and fingerprints (RTCLAB_BLESS=1 rewrites it)",
            path.display()
        );
    }

    if let Some(bin) = built_example("05_dtls") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(30));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("the same on both sides: true"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn secrets_are_hidden_from_transcript_comparison() {
    assert_eq!(
        without_secrets(
            "key 00112233445566778899aabbccddeeff and sha-256 AB:CD:EF:01:23:45:67:89:AB\nx"
        ),
        "key <hex> and sha-256 <hex>\nx\n"
    );
}

#[test]
fn example_04_media_sends_a_clip_through_a_lossy_network() {
    let mut buf = Vec::new();
    ex04::run(&mut buf).expect("example 04 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "VP80 320x240, 90 frames at 1/30 s, 3 keyframes",
        "keyframe, show_frame 1",
        "RTP header 12 (M=1 PT=96",
        "VP8 descriptor 4 (S=1 PID=0",
        "header unchanged: true",
        "unprotected again: true",
        "the same packet a second time: SRTP: replayed packet",
        "RTX packets; 0 PLI",
        "duplicates refused by SRTP's replay window",
        "frames:   90 of 90 received, 3 keyframes",
        "byte-identical to the clip sent: yes",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Virtual time and fixed seeds: the same output every run.
    check_transcript("04_media.txt", &out);

    if let Some(bin) = built_example("04_media") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("byte-identical to the clip sent: yes"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn example_07_signaling_plays_the_codelab_rooms() {
    let mut buf = Vec::new();
    ex07::run(&mut buf).expect("example 07 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        r#"alice → {"type":"create or join","room":"codelab"}"#,
        r#"alice ← {"type":"created","room":"codelab","id":1}"#,
        r#"  bob ← {"type":"joined","room":"codelab","id":2,"members":[1]}"#,
        r#"alice ← {"type":"ready","room":"codelab","members":[1,2]}"#,
        r#"  bob ← {"type":"message","from":1,"data":{"#,
        "carol (a Rust member) ← Full",
        r#"alice ← {"type":"error","code":"malformed""#,
        r#"alice ← {"type":"bye","room":"codelab","id":2}"#,
        "server stopped",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // The same run every time but for the port.
    let normal = |t: &str| t.lines().map(without_ports).collect::<Vec<_>>().join("\n");
    if std::env::var("RTCLAB_BLESS").is_ok_and(|v| v == "1") {
        check_transcript("07_signaling.txt", &out);
    } else {
        let path = root().join("chapters/src/output/07_signaling.txt");
        let shown = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e} (RTCLAB_BLESS=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            normal(&out),
            normal(&shown),
            "the output differs from {} beyond the port (RTCLAB_BLESS=1 rewrites it)",
            path.display()
        );
    }

    if let Some(bin) = built_example("07_signaling") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(30));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("server stopped"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

/// `examples/ice_pair.rs`: two processes connect over loopback UDP after
/// exchanging candidates through files, and each receives the other's message.
#[test]
fn example_ice_pair_connects_two_processes() {
    let Some(bin) = built_example("ice_pair") else {
        eprintln!("SKIP: the ice_pair example binary is not built");
        return;
    };
    let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(30));
    assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
    for want in [
        "controlling: received \"hello from the controlled side\"",
        "controlled: received \"hello from the controlling side\"",
        "both sides connected",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}\n{stderr}");
    }
}

#[test]
fn example_nat_traversal_prints_the_matrix() {
    let mut buf = Vec::new();
    ex08_nat::run(&mut buf).expect("nat_traversal runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "  APD      203.0.113.1:",
        "  APD        passes      dropped     dropped",
        "A's candidates, gathered in the first 100 ms:",
        "typ relay raddr 203.0.113.2",
        "selected after ",
        "no TURN server ==",
        "a TURN relay is needed",
        "with TURN ==",
        " APD/APD | prflx-host  prflx-srflx prflx-srflx prflx-relay",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // With TURN, no cell fails.
    let with_turn = out
        .split("), with TURN ==")
        .nth(1)
        .expect("the TURN matrix");
    assert!(!with_turn.contains("fails"), "{with_turn}");
    // Virtual time and fixed seeds: the same output every run.
    check_transcript("08_nat_traversal.txt", &out);

    if let Some(bin) = built_example("nat_traversal") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("with TURN =="),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn example_06_data_channels_opens_sends_and_closes() {
    let mut buf = Vec::new();
    ex06::run(&mut buf).expect("example 06 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "A → B  INIT (",
        "A ← B  INIT ACK (",
        "COOKIE ECHO",
        "COOKIE ACK",
        "PPID 50: DATA_CHANNEL_OPEN label \"chat\"",
        "PPID 50: DATA_CHANNEL_ACK",
        "B event: open: channel \"chat\" on stream 0 (opened by the peer)",
        "PPID 51: text \"hello from A\"",
        "B event: message: text \"hello from A\"",
        "A event: message: binary [1, 2, 3]",
        "RE-CONFIG reset my outgoing streams [0]",
        "B event: Closing(",
        "A event: Closed(",
        "reliable, ordered                  100 of 100 arrived, in order",
        "reliable, unordered                100 of 100 arrived",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Virtual time and fixed seeds: the same output every run.
    check_transcript("06_data_channels.txt", &out);

    if let Some(bin) = built_example("06_data_channels") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("DATA_CHANNEL_ACK"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn example_05_peer_connection_connects_and_delivers() {
    let mut buf = Vec::new();
    ex05_pc::run(&mut buf).expect("example 05_peer_connection runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    assert!(
        out.contains("B got A's keyframe and message: true"),
        "{out}"
    );
    check_transcript("05_peer_connection.txt", &out);
}

#[path = "../examples/09_photo.rs"]
#[allow(dead_code)]
mod ex09;

#[test]
fn example_09_photo_fragments_recovers_and_reassembles() {
    let mut buf = Vec::new();
    ex09::run(&mut buf).expect("example 09 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "error: message of 307200 bytes exceeds the maximum message size of 262144 bytes",
        "5 binary pieces of [64000, 64000, 64000, 64000, 51200] bytes",
        "DATA #1 B- stream 0",
        "-E stream 0",
        "✗ lost",
        "gap blocks [",
        "B event: message: binary, 10000 bytes",
        "A event: BufferedAmountLow (buffered_amount 0)",
        "thumbnail intact: true",
        "BufferedAmountLow (",
        "(307200 of 307200)",
        "identical",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    assert!(!out.contains("DIFFERENT"), "{out}");
    // Virtual time and fixed seeds: the same output every run.
    check_transcript("09_photo.txt", &out);

    if let Some(bin) = built_example("09_photo") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("thumbnail intact: true"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[path = "../examples/01_hello.rs"]
#[allow(dead_code)]
mod ex01;

#[test]
fn example_01_hello_connects_every_layer_and_says_hello() {
    let mut buf = Vec::new();
    ex01::run(&mut buf).expect("example 01 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "STUN  Binding request (connectivity check)",
        "STUN  Binding request, USE-CANDIDATE (nomination)",
        "ICE   state Connected",
        "DTLS  ClientHello",
        "ServerHello (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)",
        "peer  connection state Connected",
        "SCTP inside, encrypted",
        "SCTP  association Established",
        "data channel \"hello\" open",
        "B received: \"hello, world\"",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Virtual time and fixed seeds: the same output every run.
    check_transcript("01_hello.txt", &out);

    if let Some(bin) = built_example("01_hello") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("B received: \"hello, world\""),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[path = "../examples/08_browser_offer.rs"]
#[allow(dead_code)]
mod ex08_offer;

#[test]
fn example_08_browser_offer_answers_chromium_and_firefox() {
    let mut buf = Vec::new();
    ex08_offer::run(&mut buf).expect("example 08_browser_offer runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "== Chromium's offer ==",
        "== Firefox ESR's offer ==",
        "     rust | a=setup:active",
        "     rust | m=application 50000 UDP/DTLS/SCTP webrtc-datachannel",
        "DTLS role: client",
        "→ 127.0.0.1:49497: Binding request: Username(\"x1h3:",
        "→ 127.0.0.1:59532: Binding request: Username(\"1b3eeb76:",
        "ICE-CONTROLLED, MESSAGE-INTEGRITY, FINGERPRINT",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Fixed seeds, the fingerprint elided: the same output every run.
    check_transcript("08_browser_offer.txt", &out);
}

#[path = "../examples/10_mesh.rs"]
#[allow(dead_code)]
mod ex10;

#[test]
fn example_10_mesh_measures_the_upload_growing_with_the_call() {
    let mut buf = Vec::new();
    ex10::run(&mut buf).expect("example 10 runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "           2            1                               1",
        "           5           10                               4",
        "through an SFU, each participant would upload one copy",
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Virtual time and fixed seeds: the same output every run.
    check_transcript("10_mesh.txt", &out);

    if let Some(bin) = built_example("10_mesh") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(60));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("through an SFU"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}

#[path = "../examples/10_sfu.rs"]
#[allow(dead_code)]
mod ex10_sfu;

#[test]
fn example_10_sfu_uploads_once_repairs_joins_instantly_switches_layers_and_finds_the_speaker() {
    let mut buf = Vec::new();
    ex10_sfu::run(&mut buf).expect("example 10_sfu runs");
    let out = String::from_utf8(buf).expect("UTF-8 output");
    for want in [
        "           5         6.10 Mbit/s        1.53 Mbit/s",
        "NACKs the SFU passed on to publishers:  0",
        "NACKs each publisher received:          [0, 0, 0]",
        "PLIs to publishers",
        // The 300 kbit/s subscriber on the low layers, the others on the
        // high ones.
        "20.0 s  hhh    hhh    hhh    lll",
        "the SFU: p1 is the active speaker",
        "the SFU: p2 is the active speaker",
        r#"{"from":"p1","text":"hello, room","type":"chat"}"#,
    ] {
        assert!(out.contains(want), "no {want:?} in:\n{out}");
    }
    // Virtual time and fixed seeds: the same output every run. The
    // chapter includes each part at its step: one file per `== N.` part.
    let mut parts: Vec<String> = Vec::new();
    for line in out.lines() {
        if line.starts_with("== ") || parts.is_empty() {
            parts.push(String::new());
        }
        if let Some(p) = parts.last_mut() {
            p.push_str(line);
            p.push('\n');
        }
    }
    assert_eq!(parts.len(), 5, "{out}");
    for (i, part) in parts.iter().enumerate() {
        check_transcript(
            &format!("10_sfu_{}.txt", i + 1),
            part.trim_end_matches('\n'),
        );
    }

    if let Some(bin) = built_example("10_sfu") {
        eprintln!("running {}", bin.display());
        let (ok, stdout, stderr) = run_bounded(&bin, Duration::from_secs(120));
        assert!(ok, "{} failed:\n{stdout}\n{stderr}", bin.display());
        assert!(
            stdout.contains("NACKs the SFU passed on to publishers:  0"),
            "the binary printed:\n{stdout}\n{stderr}"
        );
    }
}
