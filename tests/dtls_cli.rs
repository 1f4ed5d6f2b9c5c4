//! `rtclab dtls client|server` as a user runs them, against OpenSSL:
//!
//! - our CLI client against `openssl s_server -dtls1_2 -use_srtp …
//!   -keymatexport EXTRACTOR-dtls_srtp`: both print the same keying
//!   material, both write the same key log line (`SSLKEYLOGFILE` for us,
//!   `-keylogfile` for OpenSSL), stdin lines travel both ways;
//! - `openssl s_client` against our CLI server, with certificates and keys
//!   that OpenSSL wrote (our PEM/SEC1/PKCS#8 reader);
//! - a wrong `--fingerprint` aborts with a clear error and an alert;
//! - `--dtls 1.3` both sides (the hybrid key share, 1.3's key log lines in
//!   `SSLKEYLOGFILE` and the pcapng), `--dtls auto` against 1.2 and 1.3
//!   servers, `--dtls 1.3` refused by a 1.2 server.
//!
//! Every wait is bounded; a failure prints both sides' output (the `Peer`
//! guard). A missing `openssl` is a loud skip, a failure with
//! `RTCLAB_REQUIRE_INTEROP=1`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Peer, free_udp_port, require_binary};

const WAIT: Duration = Duration::from_secs(15);

fn rtclab() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rtclab"))
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("rtclab-dtls-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Runs openssl to completion (bounded), panicking with its output on failure.
fn openssl(openssl: &PathBuf, args: &[&str], dir: &Path) -> String {
    let mut p = Peer::start_in("openssl", openssl, &s(args), Some(dir), &[], false);
    let status = p.wait_exit(WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "openssl {args:?} failed:\n{}",
        p.output()
    );
    p.output()
}

/// An ECDSA P-256 certificate and key written by OpenSSL (`PRIVATE KEY`,
/// PKCS#8, or with `sec1` the `EC PRIVATE KEY` form), and its fingerprint
/// in SDP form (`sha-256 AB:CD:…`).
fn openssl_cert(o: &PathBuf, dir: &Path, name: &str, sec1: bool) -> String {
    let key = format!("{name}.key");
    if sec1 {
        openssl(
            o,
            &[
                "ecparam",
                "-genkey",
                "-name",
                "prime256v1",
                "-noout",
                "-out",
                &key,
            ],
            dir,
        );
    } else {
        openssl(
            o,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
            dir,
        );
    }
    let cert = format!("{name}.pem");
    openssl(
        o,
        &[
            "req",
            "-new",
            "-x509",
            "-key",
            &key,
            "-subj",
            "/CN=interop",
            "-days",
            "2",
            "-out",
            &cert,
        ],
        dir,
    );
    let out = openssl(
        o,
        &["x509", "-noout", "-fingerprint", "-sha256", "-in", &cert],
        dir,
    );
    // `sha256 Fingerprint=AB:CD:…` (the part after `=` is what SDP carries).
    let hex = out
        .lines()
        .find_map(|l| l.split_once('=').map(|(_, h)| h.trim().to_string()))
        .unwrap_or_else(|| panic!("no fingerprint in {out:?}"));
    format!("sha-256 {hex}")
}

/// The value after `label` on the first line of `text` that has it.
fn field(text: &str, label: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string()))
}

fn key_log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("CLIENT_RANDOM "))
        .map(str::to_string)
        .collect()
}

fn client_against_s_server(o: &PathBuf, profile: &str, keylen: usize) {
    let dir = TempDir::new(&format!("client-{profile}"));
    let fingerprint = openssl_cert(o, &dir.0, "server", false);
    let port = free_udp_port(false);
    let mut server = Peer::start_in(
        "openssl s_server",
        o,
        &s(&[
            "s_server",
            "-dtls1_2",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-use_srtp",
            profile,
            "-keymatexport",
            "EXTRACTOR-dtls_srtp",
            "-keymatexportlen",
            &keylen.to_string(),
            "-keylogfile",
            "openssl.keys",
            "-listen", // HelloVerifyRequest first
            "-verify",
            "1",
            "-naccept",
            "1",
        ]),
        Some(&dir.0),
        &[],
        true, // s_server exits when its stdin closes
    );
    assert!(
        server.wait_for_output("ACCEPT", WAIT),
        "s_server did not start"
    );
    let our_keys = dir.path("rtclab.keys");
    let mut client = Peer::start_in(
        "rtclab dtls client",
        &rtclab(),
        &s(&[
            "dtls",
            "client",
            &format!("127.0.0.1:{port}"),
            "--srtp",
            profile,
            "--fingerprint",
            &fingerprint,
        ]),
        None,
        &[("SSLKEYLOGFILE", our_keys.to_str().expect("UTF-8 temp path"))],
        true,
    );
    assert!(
        client.wait_for_output("Keying material:", WAIT),
        "our client did not connect"
    );
    let ours = client.output();
    assert_eq!(
        field(&ours, "Protocol:").as_deref(),
        Some("DTLSv1.2"),
        "{ours}"
    );
    assert_eq!(
        field(&ours, "Peer fingerprint:").as_deref(),
        Some(fingerprint.as_str())
    );
    let srtp = field(&ours, "SRTP profile:").expect("an SRTP profile line");
    assert!(
        srtp.starts_with(&profile.replace("CM_SHA1", "CM_HMAC_SHA1")),
        "{srtp} for {profile}"
    );
    let keying = field(&ours, "Keying material:").expect("keying material");
    assert_eq!(keying.len(), 2 * keylen, "{keying}");

    // Data both ways: a stdin line of ours arrives at s_server, then one of
    // its own comes back.
    client.send_line("hello from rtclab");
    assert!(
        server.wait_for_output("hello from rtclab", WAIT),
        "s_server never printed our line"
    );
    server.send_line("hello from openssl");
    assert!(
        client.wait_for_output("hello from openssl", WAIT),
        "our client never printed s_server's line"
    );
    let theirs = server.output();
    assert!(
        theirs
            .to_uppercase()
            .contains(&format!("KEYING MATERIAL: {keying}")),
        "keying material differs: ours {keying}\ns_server said:\n{theirs}"
    );
    // EOF on stdin: close_notify, exit 0.
    client.close_stdin();
    let status = client.wait_exit(WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "client exit: {status:?}"
    );

    // The same master secret in both key logs: Wireshark can decrypt the
    // capture with either.
    let ours = key_log_lines(&our_keys);
    let theirs = key_log_lines(&dir.path("openssl.keys"));
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(
        theirs.contains(&ours[0]),
        "ours {ours:?}\nOpenSSL's {theirs:?}"
    );
}

#[test]
fn cli_client_against_openssl_s_server() {
    let Some(o) = require_binary("openssl", "openssl") else {
        return;
    };
    for (profile, keylen) in [
        ("SRTP_AES128_CM_SHA1_80", 60),
        ("SRTP_AEAD_AES_128_GCM", 56),
        ("SRTP_AEAD_AES_256_GCM", 88),
    ] {
        client_against_s_server(&o, profile, keylen);
    }
}

#[test]
fn openssl_s_client_against_cli_server() {
    let Some(o) = require_binary("openssl", "openssl") else {
        return;
    };
    let dir = TempDir::new("server");
    // Our server's certificate in SEC1 form, the client's in PKCS#8: both
    // of OpenSSL's key formats go through our PEM reader.
    openssl_cert(&o, &dir.0, "server", true);
    let client_fingerprint = openssl_cert(&o, &dir.0, "client", false);
    let mut server = Peer::start_in(
        "rtclab dtls server",
        &rtclab(),
        &s(&[
            "dtls",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--srtp",
            "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80",
            "--cert",
            "server.pem",
            "--key",
            "server.key",
            "--fingerprint",
            &client_fingerprint,
        ]),
        Some(&dir.0),
        &[],
        true,
    );
    assert!(
        server.wait_for_output("Listening on 127.0.0.1:", WAIT),
        "our server did not start"
    );
    let listen = field(&server.output(), "Listening on").expect("listening line");
    let mut client = Peer::start_in(
        "openssl s_client",
        &o,
        &s(&[
            "s_client",
            "-dtls1_2",
            "-connect",
            &listen,
            "-cert",
            "client.pem",
            "-key",
            "client.key",
            "-use_srtp",
            "SRTP_AES128_CM_SHA1_80",
            "-keymatexport",
            "EXTRACTOR-dtls_srtp",
            "-keymatexportlen",
            "60",
        ]),
        Some(&dir.0),
        &[],
        true,
    );
    assert!(
        server.wait_for_output("Keying material:", WAIT),
        "our server did not complete the handshake"
    );
    let ours = server.output();
    assert_eq!(
        field(&ours, "Peer fingerprint:").as_deref(),
        Some(client_fingerprint.as_str())
    );
    assert!(
        ours.contains("SRTP profile: SRTP_AES128_CM_HMAC_SHA1_80"),
        "{ours}"
    );
    let keying = field(&ours, "Keying material:").expect("keying material");
    assert!(
        client.wait_for_output("Keying material:", WAIT),
        "s_client printed no keying material"
    );
    let theirs = client.output();
    assert!(
        theirs
            .to_uppercase()
            .contains(&format!("KEYING MATERIAL: {keying}")),
        "keying material differs: ours {keying}\ns_client said:\n{theirs}"
    );
    client.send_line("hello from openssl");
    assert!(
        server.wait_for_output("hello from openssl", WAIT),
        "our server never printed s_client's line"
    );
    server.send_line("hello from rtclab");
    assert!(
        client.wait_for_output("hello from rtclab", WAIT),
        "s_client never printed our line"
    );
    // Our EOF closes the association; s_client sees the close_notify.
    server.close_stdin();
    let status = server.wait_exit(WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "server exit: {status:?}"
    );
}

#[test]
fn wrong_fingerprint_aborts_the_handshake() {
    let Some(o) = require_binary("openssl", "openssl") else {
        return;
    };
    let dir = TempDir::new("mismatch");
    openssl_cert(&o, &dir.0, "server", false);
    let port = free_udp_port(false);
    let server = Peer::start_in(
        "openssl s_server",
        &o,
        &s(&[
            "s_server",
            "-dtls1_2",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-naccept",
            "1",
        ]),
        Some(&dir.0),
        &[],
        true,
    );
    assert!(
        server.wait_for_output("ACCEPT", WAIT),
        "s_server did not start"
    );
    let wrong = format!("sha-256 {}", vec!["AB"; 32].join(":"));
    let mut client = Peer::start_in(
        "rtclab dtls client",
        &rtclab(),
        &s(&[
            "dtls",
            "client",
            &format!("127.0.0.1:{port}"),
            "--fingerprint",
            &wrong,
        ]),
        None,
        &[],
        true,
    );
    let status = client.wait_exit(WAIT);
    let out = client.output();
    assert!(
        status.is_some_and(|s| !s.success()),
        "status {status:?}:\n{out}"
    );
    assert!(
        out.contains(
            "error: DTLS failed: peer certificate does not match the expected fingerprint"
        ),
        "{out}"
    );
    assert!(!out.contains("Keying material"), "{out}");
    // Our fatal bad_certificate alert reached s_server.
    assert!(
        server.wait_for_output("bad certificate", WAIT),
        "s_server saw no alert"
    );
}

/// Our client against our server, over loopback: no OpenSSL needed.
#[test]
fn cli_client_against_cli_server() {
    let pcap = std::env::temp_dir().join(format!("rtclab-dtls-cli-{}.pcapng", std::process::id()));
    let mut server = Peer::start_in(
        "rtclab dtls server",
        &rtclab(),
        &s(&["dtls", "server", "--listen", "127.0.0.1:0", "--mtu", "300"]),
        None,
        &[],
        true,
    );
    assert!(
        server.wait_for_output("Listening on 127.0.0.1:", WAIT),
        "our server did not start"
    );
    let out = server.output();
    let listen = field(&out, "Listening on").expect("listening line");
    let server_fingerprint = field(&out, "Our fingerprint:").expect("fingerprint line");
    let mut client = Peer::start_in(
        "rtclab dtls client",
        &rtclab(),
        &s(&[
            "dtls",
            "client",
            &listen,
            "--srtp",
            "SRTP_AES128_CM_HMAC_SHA1_32",
            "--fingerprint",
            &server_fingerprint,
            "--mtu",
            "300",
            "--pcap",
            pcap.to_str().expect("UTF-8 temp path"),
        ]),
        None,
        &[],
        true,
    );
    assert!(
        client.wait_for_output("Keying material:", WAIT),
        "no handshake"
    );
    assert!(
        server.wait_for_output("Keying material:", WAIT),
        "no handshake"
    );
    let (c, sv) = (client.output(), server.output());
    assert_eq!(
        field(&c, "Keying material:"),
        field(&sv, "Keying material:"),
        "client:\n{c}\nserver:\n{sv}"
    );
    assert_eq!(field(&c, "Keying material:").map(|k| k.len()), Some(120));
    assert_eq!(
        field(&sv, "Peer fingerprint:"),
        field(&c, "Our fingerprint:")
    );
    client.send_line("ping");
    assert!(server.wait_for_output("ping", WAIT));
    server.send_line("pong");
    assert!(client.wait_for_output("pong", WAIT));
    // The client's EOF: close_notify; the server sees it and exits too.
    client.close_stdin();
    assert!(client.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(
        server.output().contains("The peer closed the association"),
        "{}",
        server.output()
    );
    // The client's --pcap: the handshake and the lines, decrypted with the
    // key log the file carries.
    let file = std::fs::read(&pcap).expect("the --pcap file");
    let _ = std::fs::remove_file(&pcap);
    let ladder = rtclab::capture::xray::xray(&file, &Default::default()).expect("pcapng");
    for needle in [
        "Handshake: ClientHello",
        "Handshake: Finished (decrypted)",
        "\"ping\\n\"",
        "\"pong\\n\"",
        "close_notify",
    ] {
        assert!(ladder.contains(needle), "{needle} not in:\n{ladder}");
    }
}

#[test]
fn bad_arguments_are_refused_clearly() {
    for (args, want) in [
        (
            vec!["dtls", "client", "127.0.0.1:9", "--srtp", "SRTP_NULL"],
            "unknown SRTP profile",
        ),
        (
            vec![
                "dtls",
                "client",
                "127.0.0.1:9",
                "--fingerprint",
                "sha-256 AB:CD",
            ],
            "--fingerprint",
        ),
        (
            vec![
                "dtls",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--cert",
                "/nonexistent.pem",
                "--key",
                "/nonexistent.key",
            ],
            "cannot read /nonexistent.pem",
        ),
        (
            vec![
                "dtls",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--cert",
                "x.pem",
            ],
            "--key",
        ),
    ] {
        let mut p = Peer::start_in("rtclab", &rtclab(), &s(&args), None, &[], false);
        let status = p.wait_exit(WAIT);
        let out = p.output();
        assert!(
            status.is_some_and(|s| !s.success()),
            "{args:?}: {status:?}\n{out}"
        );
        assert!(out.contains(want), "{args:?}: no {want:?} in\n{out}");
    }
}

/// Starts `rtclab dtls server --dtls VERSION` on a free loopback port; its
/// address.
fn cli_server(version: &str) -> (Peer, String) {
    let server = Peer::start_in(
        "rtclab dtls server",
        &rtclab(),
        &s(&[
            "dtls",
            "server",
            "--listen",
            "127.0.0.1:0",
            "--dtls",
            version,
        ]),
        None,
        &[],
        true,
    );
    assert!(
        server.wait_for_output("Listening on 127.0.0.1:", WAIT),
        "our server did not start"
    );
    let listen = field(&server.output(), "Listening on").expect("listening line");
    (server, listen)
}

/// `--dtls 1.3` both sides: DTLS 1.3 with the hybrid key share, the same
/// SRTP keying material, lines both ways; `SSLKEYLOGFILE` gets 1.3's
/// secrets (RFC 8446 §7.1's labels, NSS key log format) for the
/// ClientHello's random, and the `--pcap` file carries them in its
/// Decryption Secrets Block.
#[test]
fn cli_dtls13_client_against_cli_dtls13_server() {
    let dir = TempDir::new("dtls13");
    let keylog = dir.0.join("keys.log");
    let pcap = dir.0.join("c.pcapng");
    let (mut server, listen) = cli_server("1.3");
    let mut client = Peer::start_in(
        "rtclab dtls client",
        &rtclab(),
        &s(&[
            "dtls",
            "client",
            &listen,
            "--dtls",
            "1.3",
            "--pcap",
            pcap.to_str().expect("UTF-8 temp path"),
        ]),
        None,
        &[("SSLKEYLOGFILE", keylog.to_str().expect("UTF-8 temp path"))],
        true,
    );
    assert!(
        client.wait_for_output("Keying material:", WAIT),
        "no handshake"
    );
    assert!(
        server.wait_for_output("Keying material:", WAIT),
        "no handshake"
    );
    let (c, sv) = (client.output(), server.output());
    for out in [&c, &sv] {
        assert_eq!(
            field(out, "Protocol:").as_deref(),
            Some("DTLSv1.3"),
            "{out}"
        );
        assert_eq!(
            field(out, "Key share:").as_deref(),
            Some("X25519MLKEM768 (0x11ec)"),
            "{out}"
        );
        assert_eq!(
            field(out, "Cipher suite:").as_deref(),
            Some("TLS_AES_128_GCM_SHA256 (0x1301)")
        );
    }
    assert_eq!(
        field(&c, "Keying material:"),
        field(&sv, "Keying material:")
    );
    client.send_line("ping13");
    assert!(server.wait_for_output("ping13", WAIT));
    server.send_line("pong13");
    assert!(client.wait_for_output("pong13", WAIT));
    client.close_stdin();
    assert!(client.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));

    let log = std::fs::read_to_string(&keylog).expect("SSLKEYLOGFILE written");
    let mut randoms = std::collections::BTreeSet::new();
    for label in [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
    ] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("{label} ")))
            .unwrap_or_else(|| panic!("no {label} in:\n{log}"));
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert_eq!(parts[1].len(), 64, "client random: {line}");
        assert_eq!(parts[2].len(), 64, "SHA-256 secret: {line}");
        randoms.insert(parts[1].to_string());
    }
    assert_eq!(randoms.len(), 1, "one ClientHello random:\n{log}");
    let file = std::fs::read(&pcap).expect("the --pcap file");
    let text = String::from_utf8_lossy(&file);
    for line in log.lines() {
        assert!(text.contains(line), "{line} not in the pcapng's DSB");
    }
    // rtclab xray opens the protected records with those secrets: the
    // encrypted handshake, the ACKs, the lines and close_notify.
    let ladder = rtclab::capture::xray::xray(&file, &Default::default()).expect("pcapng");
    for needle in [
        "Handshake: ClientHello",
        "Handshake: HelloRetryRequest",
        "epoch 2 seq 0 (unified header 16-bit seq, length) Handshake: EncryptedExtensions (decrypted)",
        "Handshake: CertificateVerify (decrypted)",
        "Handshake: Finished (decrypted)",
        "ACK [2/0 2/1 2/2] (decrypted)",
        "\"ping13\\n\"",
        "\"pong13\\n\"",
        "Alert close_notify (decrypted)",
    ] {
        assert!(ladder.contains(needle), "{needle} not in:\n{ladder}");
    }
    assert!(!ladder.contains("encrypted,"), "{ladder}");
}

/// `rtclab dtls client --dtls VERSION` against `listen`.
fn cli_client(listen: &str, version: &str) -> Peer {
    Peer::start_in(
        "rtclab dtls client",
        &rtclab(),
        &s(&["dtls", "client", listen, "--dtls", version]),
        None,
        &[],
        true,
    )
}

/// A client of `client` against a server of `server` connects in
/// `expected`, then closes.
fn versions_connect(client: &str, server: &str, expected: &str) {
    let (mut server, listen) = cli_server(server);
    let mut client = cli_client(&listen, client);
    for p in [&mut client, &mut server] {
        assert!(p.wait_for_output("Keying material:", WAIT), "no handshake");
        assert_eq!(field(&p.output(), "Protocol:").as_deref(), Some(expected));
    }
    client.close_stdin();
    assert!(client.wait_exit(WAIT).is_some_and(|s| s.success()));
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));
}

/// `--dtls auto` offers 1.3 and falls back to a 1.2-only server; `--dtls
/// 1.3` refuses to (the server's 1.2 answer ends the handshake).
#[test]
fn cli_dtls_versions_negotiate_or_refuse() {
    versions_connect("auto", "1.2", "DTLSv1.2");
    versions_connect("auto", "1.3", "DTLSv1.3");
    versions_connect("1.2", "auto", "DTLSv1.2");
    versions_connect("auto", "auto", "DTLSv1.3");

    // A 1.3-only client and a 1.2-only server: no common version.
    let (server, listen) = cli_server("1.2");
    let mut client = cli_client(&listen, "1.3");
    let status = client.wait_exit(WAIT).expect("the client gives up");
    assert!(!status.success(), "{}", client.output());
    assert!(
        client.output().contains("DTLS failed") || client.output().contains("fatal alert"),
        "{}",
        client.output()
    );
    drop(server);
}
