//! Interop: rtclab's DTLS 1.2 client against `openssl s_server -dtls1_2`.
//!
//! Each case starts its own s_server on 127.0.0.1 with our certificate,
//! cookies (`-listen`), a client-certificate request (`-verify`), one SRTP
//! profile and one suite, completes a handshake, checks that both sides
//! print the same SRTP keying material, and sends application data both
//! ways. The ECDHE_RSA cases give s_server an RSA-2048 certificate (the
//! kind GStreamer's webrtcbin presents) and check its fingerprint as the
//! SDP would. A missing `openssl` is a loud skip, or a failure when
//! `RTCLAB_REQUIRE_INTEROP=1`.

use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use rand::{SeedableRng, rngs::StdRng};
use rtclab::dtls::cert::{Certificate, Fingerprint, HashAlgorithm};
use rtclab::dtls::endpoint::{Config, Endpoint, Event};
use rtclab::dtls::handshake::SrtpProfile;
use rtclab::dtls::record::CipherSuite;
use rtclab::machine::{Machine, Receive};

fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("RTCLAB_REQUIRE_INTEROP").as_deref() == Ok("1") {
            panic!("openssl is required (RTCLAB_REQUIRE_INTEROP=1) but not found");
        }
        eprintln!("SKIPPED: no `openssl` binary on PATH");
    }
    ok
}

struct Server {
    child: Child,
    out_path: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl Server {
    fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.out_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The RSA-2048 certificate and PKCS#8 key of the ECDHE_RSA cases (DER).
const RSA_CERT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/dtls/rsa2048_cert.der"
);
const RSA_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/dtls/rsa2048_key.pk8.der"
);

fn start_server(
    name: &str,
    cipher: &str,
    srtp: &str,
    keylen: usize,
    groups: &str,
    rsa: bool,
) -> (Server, SocketAddr) {
    let dir = std::env::temp_dir().join(format!("rtclab-dtls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if rsa {
        let pem = |der: &str, label: &str| {
            let out = Command::new("openssl")
                .args([label, "-inform", "DER", "-in", der])
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl {label}: {out:?}");
            out.stdout
        };
        std::fs::write(dir.join("cert.pem"), pem(RSA_CERT, "x509")).unwrap();
        std::fs::write(dir.join("key.pem"), pem(RSA_KEY, "pkey")).unwrap();
    } else {
        let mut rng = StdRng::seed_from_u64(9);
        let cert = Certificate::generate(&mut rng, SystemTime::now()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.certificate_pem()).unwrap();
        std::fs::write(dir.join("key.pem"), cert.private_key_pem()).unwrap();
    }
    let port = free_port();
    let out_path = dir.join("out.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-dtls1_2",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
            "-cipher",
            cipher,
            "-use_srtp",
            srtp,
            "-keymatexport",
            "EXTRACTOR-dtls_srtp",
            "-keymatexportlen",
            &keylen.to_string(),
            "-verify",
            "1",
            "-listen",
            "-groups",
            groups,
            "-naccept",
            "1",
        ])
        .current_dir(&dir)
        .stdin(Stdio::piped()) // s_server exits when its stdin closes
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let server = Server {
        child,
        out_path,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.output().contains("ACCEPT") {
        assert!(
            Instant::now() < deadline,
            "s_server did not start:\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (server, SocketAddr::from(([127, 0, 0, 1], port)))
}

fn run_client(suite: CipherSuite, cipher: &str, profile: SrtpProfile, srtp: &str, keylen: usize) {
    run_client_groups(suite, cipher, profile, srtp, keylen, "X25519:P-256");
}

fn run_client_groups(
    suite: CipherSuite,
    cipher: &str,
    profile: SrtpProfile,
    srtp: &str,
    keylen: usize,
    groups: &str,
) {
    run_client_with(
        &[suite],
        suite,
        cipher,
        profile,
        srtp,
        keylen,
        groups,
        false,
    );
}

/// A handshake offering `offered`, expecting `suite`; `rsa`: s_server has
/// the RSA certificate, whose SHA-256 fingerprint the client then requires.
#[allow(clippy::too_many_arguments)]
fn run_client_with(
    offered: &[CipherSuite],
    suite: CipherSuite,
    cipher: &str,
    profile: SrtpProfile,
    srtp: &str,
    keylen: usize,
    groups: &str,
    rsa: bool,
) {
    let (mut server, addr) = start_server(
        &format!("{:04x}-{:04x}-{}", suite.code(), profile.0, offered.len()),
        cipher,
        srtp,
        keylen,
        groups,
        rsa,
    );
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut config = Config::new(Certificate::generate(&mut rng, SystemTime::now()).unwrap());
    config.cipher_suites = offered.to_vec();
    config.srtp_profiles = vec![profile];
    let expected_fp =
        rsa.then(|| Fingerprint::of(HashAlgorithm::Sha256, &std::fs::read(RSA_CERT).unwrap()));
    config.expected_fingerprint = expected_fp.clone();
    // s_server then sends a NewSessionTicket before its ChangeCipherSpec.
    config.offer_session_ticket = true;
    let mut ep = Endpoint::client(config, addr, StdRng::seed_from_u64(7), Instant::now());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    let mut keying = None;
    let mut got_data = false;
    let mut sent_from_server = false;
    while Instant::now() < deadline && !(keying.is_some() && got_data) {
        while let Some(t) = ep.poll_transmit() {
            sock.send_to(&t.contents, t.destination).unwrap();
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::Connected(c) => {
                    assert_eq!(c.cipher_suite, suite);
                    assert_eq!(c.srtp_profile, Some(profile));
                    if let Some(fp) = &expected_fp {
                        assert_eq!(&c.peer_fingerprint, fp);
                    }
                    keying = c.srtp_keying_material.clone();
                    ep.send(b"hello from rtclab\n").unwrap();
                }
                Event::ApplicationData(d) => {
                    assert_eq!(d, b"hello from openssl\n");
                    got_data = true;
                }
                other => panic!("{other:?}\ns_server said:\n{}", server.output()),
            }
        }
        if keying.is_some() && !sent_from_server && server.output().contains("hello from rtclab") {
            let stdin = server.child.stdin.as_mut().unwrap();
            stdin.write_all(b"hello from openssl\n").unwrap();
            stdin.flush().unwrap();
            sent_from_server = true;
        }
        wait_and_feed(&mut ep, &sock, local, &mut buf);
    }
    let out = server.output();
    let keying = keying.unwrap_or_else(|| panic!("no handshake; s_server said:\n{out}"));
    assert!(got_data, "no data from s_server:\n{out}");
    assert_eq!(keying.len(), keylen);
    let hex: String = keying.iter().map(|b| format!("{b:02X}")).collect();
    assert!(
        out.to_uppercase()
            .contains(&format!("KEYING MATERIAL: {hex}")),
        "keying material differs: ours {hex}\ns_server said:\n{out}"
    );
    assert!(out.contains("hello from rtclab"), "{out}");
}

#[test]
fn client_against_openssl_each_suite() {
    if !openssl_available() {
        return;
    }
    for (suite, name) in [
        (
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            CipherSuite::EcdheEcdsaAes256GcmSha384,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ] {
        run_client(
            suite,
            name,
            SrtpProfile::AES128_CM_HMAC_SHA1_80,
            "SRTP_AES128_CM_SHA1_80",
            60,
        );
    }
}

/// An RSA-certificate server (as GStreamer's webrtcbin is): each ECDHE_RSA
/// suite, its ServerKeyExchange's RSA signature verified, the RSA
/// certificate's fingerprint checked.
#[test]
fn client_against_openssl_rsa_server_each_suite() {
    if !openssl_available() {
        return;
    }
    for (suite, name) in [
        (
            CipherSuite::EcdheRsaAes128GcmSha256,
            "ECDHE-RSA-AES128-GCM-SHA256",
        ),
        (
            CipherSuite::EcdheRsaAes256GcmSha384,
            "ECDHE-RSA-AES256-GCM-SHA384",
        ),
        (
            CipherSuite::EcdheRsaChacha20Poly1305Sha256,
            "ECDHE-RSA-CHACHA20-POLY1305",
        ),
    ] {
        run_client_with(
            &[suite],
            suite,
            name,
            SrtpProfile::AES128_CM_HMAC_SHA1_80,
            "SRTP_AES128_CM_SHA1_80",
            60,
            "X25519:P-256",
            true,
        );
    }
}

/// Our default offer (every suite) against an RSA server with OpenSSL's
/// default cipher list: it picks ECDHE-RSA-AES128-GCM over P-256 only too.
#[test]
fn client_default_suites_against_openssl_rsa_server() {
    if !openssl_available() {
        return;
    }
    for groups in ["X25519:P-256", "P-256"] {
        run_client_with(
            &CipherSuite::ALL,
            CipherSuite::EcdheRsaAes128GcmSha256,
            "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
            SrtpProfile::AEAD_AES_128_GCM,
            "SRTP_AEAD_AES_128_GCM",
            56,
            groups,
            true,
        );
    }
}

/// ECDHE over P-256 when the server does not do X25519.
#[test]
fn client_against_openssl_p256_only() {
    if !openssl_available() {
        return;
    }
    run_client_groups(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        SrtpProfile::AEAD_AES_128_GCM,
        "SRTP_AEAD_AES_128_GCM",
        56,
        "P-256",
    );
}

#[test]
fn client_against_openssl_each_srtp_profile() {
    if !openssl_available() {
        return;
    }
    for (profile, name, len) in [
        (
            SrtpProfile::AES128_CM_HMAC_SHA1_32,
            "SRTP_AES128_CM_SHA1_32",
            60,
        ),
        (SrtpProfile::AEAD_AES_128_GCM, "SRTP_AEAD_AES_128_GCM", 56),
        (SrtpProfile::AEAD_AES_256_GCM, "SRTP_AEAD_AES_256_GCM", 88),
    ] {
        run_client(
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            profile,
            name,
            len,
        );
    }
}

/// `openssl s_client -dtls1_2` (with a client certificate) against our
/// server: same keying material, data both ways.
fn run_server(suite: CipherSuite, cipher: &str, profile: SrtpProfile, srtp: &str, keylen: usize) {
    run_server_groups(suite, cipher, profile, srtp, keylen, "X25519:P-256");
}

fn run_server_groups(
    suite: CipherSuite,
    cipher: &str,
    profile: SrtpProfile,
    srtp: &str,
    keylen: usize,
    groups: &str,
) {
    let dir = std::env::temp_dir().join(format!(
        "rtclab-dtls-client-{:04x}-{:04x}-{}",
        suite.code(),
        profile.0,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let client_cert = Certificate::generate(&mut rng, SystemTime::now()).unwrap();
    std::fs::write(dir.join("cert.pem"), client_cert.certificate_pem()).unwrap();
    std::fs::write(dir.join("key.pem"), client_cert.private_key_pem()).unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = sock.local_addr().unwrap();
    let mut config = Config::new(Certificate::generate(&mut rng, SystemTime::now()).unwrap());
    config.cipher_suites = vec![suite];
    config.srtp_profiles = vec![profile];
    config.expected_fingerprint = Some(client_cert.fingerprint());
    let mut ep = Endpoint::server(config, StdRng::seed_from_u64(11));
    let out_path = dir.join("out.txt");
    let out = std::fs::File::create(&out_path).unwrap();
    let child = Command::new("openssl")
        .args([
            "s_client",
            "-dtls1_2",
            "-connect",
            &local.to_string(),
            "-cert",
            "cert.pem",
            "-key",
            "key.pem",
            "-cipher",
            cipher,
            "-use_srtp",
            srtp,
            "-keymatexport",
            "EXTRACTOR-dtls_srtp",
            "-keymatexportlen",
            &keylen.to_string(),
            "-groups",
            groups,
        ])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut client = Server {
        child,
        out_path,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    let mut keying = None;
    let mut got_data = false;
    let mut sent_from_client = false;
    while Instant::now() < deadline && !(keying.is_some() && got_data) {
        while let Some(t) = ep.poll_transmit() {
            sock.send_to(&t.contents, t.destination).unwrap();
        }
        while let Some(e) = ep.poll_event() {
            match e {
                Event::Connected(c) => {
                    assert_eq!(c.cipher_suite, suite);
                    assert_eq!(c.srtp_profile, Some(profile));
                    assert_eq!(c.peer_fingerprint, client_cert.fingerprint());
                    keying = c.srtp_keying_material.clone();
                    ep.send(b"hello from rtclab\n").unwrap();
                }
                Event::ApplicationData(d) => {
                    assert_eq!(d, b"hello from openssl\n");
                    got_data = true;
                }
                other => panic!("{other:?}\ns_client said:\n{}", client.output()),
            }
        }
        if keying.is_some() && !sent_from_client && client.output().contains("hello from rtclab") {
            let stdin = client.child.stdin.as_mut().unwrap();
            stdin.write_all(b"hello from openssl\n").unwrap();
            stdin.flush().unwrap();
            sent_from_client = true;
        }
        wait_and_feed(&mut ep, &sock, local, &mut buf);
    }
    let out = client.output();
    let keying = keying.unwrap_or_else(|| panic!("no handshake; s_client said:\n{out}"));
    assert!(got_data, "no data from s_client:\n{out}");
    let hex: String = keying.iter().map(|b| format!("{b:02X}")).collect();
    assert!(
        out.to_uppercase()
            .contains(&format!("KEYING MATERIAL: {hex}")),
        "keying material differs: ours {hex}\ns_client said:\n{out}"
    );
}

#[test]
fn openssl_client_against_our_server() {
    if !openssl_available() {
        return;
    }
    for (suite, name) in [
        (
            CipherSuite::EcdheEcdsaAes128GcmSha256,
            "ECDHE-ECDSA-AES128-GCM-SHA256",
        ),
        (
            CipherSuite::EcdheEcdsaAes256GcmSha384,
            "ECDHE-ECDSA-AES256-GCM-SHA384",
        ),
        (
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
            "ECDHE-ECDSA-CHACHA20-POLY1305",
        ),
    ] {
        run_server(
            suite,
            name,
            SrtpProfile::AEAD_AES_128_GCM,
            "SRTP_AEAD_AES_128_GCM",
            56,
        );
    }
    run_server(
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        SrtpProfile::AES128_CM_HMAC_SHA1_80,
        "SRTP_AES128_CM_SHA1_80",
        60,
    );
    // A client without X25519: ECDHE over P-256.
    run_server_groups(
        CipherSuite::EcdheEcdsaAes256GcmSha384,
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        SrtpProfile::AEAD_AES_256_GCM,
        "SRTP_AEAD_AES_256_GCM",
        88,
        "P-256",
    );
}

/// Blocks until the endpoint's next timer (at most 50 ms) or a datagram on
/// `sock`, and feeds whichever came first.
fn wait_and_feed(ep: &mut Endpoint, sock: &UdpSocket, local: SocketAddr, buf: &mut [u8]) {
    let wait = ep
        .poll_timeout()
        .map(|t| t.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::from_millis(50))
        .clamp(Duration::from_millis(1), Duration::from_millis(50));
    sock.set_read_timeout(Some(wait)).unwrap();
    match sock.recv_from(buf) {
        Ok((n, from)) => ep.handle_receive(
            Instant::now(),
            Receive {
                source: from,
                destination: local,
                contents: &buf[..n],
            },
        ),
        Err(_) => ep.handle_timeout(Instant::now()),
    }
}
