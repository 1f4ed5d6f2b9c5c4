//! `rtclab dtls server|client`: a small `openssl s_server/s_client` for
//! learners. One DTLS association (1.2, 1.3, or either: `--dtls`) over real
//! UDP, driven by the tokio [`Driver`]; prints what was negotiated and the
//! SRTP keying material, then carries stdin lines as application data until
//! EOF and prints what arrives.

use std::io::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use rand::{SeedableRng, rngs::StdRng};
use rtclab::dtls::cert::{Certificate, Fingerprint};
use rtclab::dtls::endpoint::{Config, Connected, Event, Version};
use rtclab::dtls::endpoint_auto::AutoEndpoint as Endpoint;
use rtclab::dtls::handshake::SrtpProfile;
use rtclab::runtime::Driver;
use tokio::sync::mpsc;

/// `rtclab dtls …`.
#[derive(Subcommand)]
pub enum DtlsCommand {
    /// Wait for one DTLS client (e.g. `openssl s_client -dtls1_2`), then
    /// exchange stdin lines with it.
    Server {
        /// The address to listen on, e.g. 127.0.0.1:4433 (port 0: any free port).
        #[arg(long)]
        listen: SocketAddr,
        #[command(flatten)]
        common: Common,
    },
    /// Connect to a DTLS server (e.g. `openssl s_server -dtls1_2`), then
    /// exchange stdin lines with it.
    Client {
        /// The server, `IP:PORT`.
        server: SocketAddr,
        #[command(flatten)]
        common: Common,
    },
}

/// Which DTLS versions to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DtlsVersion {
    /// DTLS 1.2 only (RFC 6347).
    #[value(name = "1.2")]
    V12,
    /// DTLS 1.3 only (RFC 9147): a client offers nothing else, a server
    /// refuses a 1.2 ClientHello with a protocol_version alert.
    #[value(name = "1.3")]
    V13,
    /// 1.3 when the peer speaks it, else 1.2 (what browsers do; the
    /// downgrade sentinel is checked).
    Auto,
}

/// Options both roles share.
#[derive(Args)]
pub struct Common {
    /// The DTLS version: 1.2, 1.3, or auto (1.3 with a fallback to 1.2).
    #[arg(
        long = "dtls",
        value_enum,
        default_value = "1.2",
        value_name = "VERSION"
    )]
    dtls: DtlsVersion,
    /// SRTP profiles to offer (client) or accept (server), preferred first,
    /// separated by `:` or `,`, in IANA or OpenSSL spelling
    /// (SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80); `none` for no
    /// use_srtp. Default: all four WebRTC profiles.
    #[arg(long, value_name = "PROFILES")]
    srtp: Option<String>,
    /// The fingerprint the peer's certificate must have, as in SDP's
    /// `a=fingerprint`: "sha-256 AB:CD:…" (the hex pairs that `openssl x509
    /// -noout -fingerprint -sha256` prints). A mismatch aborts the handshake.
    #[arg(long, value_name = "FINGERPRINT")]
    fingerprint: Option<String>,
    /// Our certificate (PEM). Default: a fresh self-signed ECDSA P-256 one.
    #[arg(long, value_name = "PEM", requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY`, P-256).
    #[arg(long, value_name = "PEM", requires = "cert")]
    key: Option<PathBuf>,
    /// Largest datagram we send (handshake flights are fragmented to fit).
    #[arg(long, default_value_t = 1200)]
    mtu: usize,
    /// Capture every datagram into this pcapng file, with the key log in
    /// it: Wireshark decrypts it with no other file.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

/// Starts `--pcap`'s capture on the driver.
fn start_capture(driver: &mut Driver<Endpoint>, common: &Common) -> Result<(), String> {
    if let Some(path) = &common.pcap {
        let sink = rtclab::capture::Capture::create(path).map_err(|e| e.to_string())?;
        driver.set_capture(sink, |e, sink| {
            if let Some(line) = e.key_log_line() {
                sink.key_log_line(&line);
            }
        });
    }
    Ok(())
}

/// Parses `--srtp`.
pub fn parse_profiles(text: &str) -> Result<Vec<SrtpProfile>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split([':', ','])
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            SrtpProfile::from_name(s).ok_or_else(|| {
                format!(
                    "unknown SRTP profile {s:?} (known: {})",
                    SrtpProfile::ALL.map(|p| p.name().unwrap_or("?")).join(", ")
                )
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn config(common: &Common) -> Result<Config, String> {
    let certificate = match (&common.cert, &common.key) {
        (Some(c), Some(k)) => {
            Certificate::from_pem(&read(c)?, &read(k)?).map_err(|e| format!("--cert/--key: {e}"))?
        }
        _ => Certificate::generate(&mut rand::rng(), SystemTime::now())
            .map_err(|e| format!("cannot generate a certificate: {e}"))?,
    };
    let mut config = Config::new(certificate);
    if let Some(p) = &common.srtp {
        config.srtp_profiles = parse_profiles(p)?;
    }
    if let Some(f) = &common.fingerprint {
        config.expected_fingerprint =
            Some(Fingerprint::parse(f).map_err(|e| format!("--fingerprint {f:?}: {e}"))?);
    }
    if common.mtu < 200 {
        return Err(format!("--mtu {} is too small (at least 200)", common.mtu));
    }
    config.mtu = common.mtu;
    if common.dtls != DtlsVersion::V12 {
        config.max_version = Version::Dtls13;
    }
    Ok(config)
}

/// Runs `rtclab dtls …`.
pub async fn run(command: DtlsCommand) -> Result<(), String> {
    match command {
        DtlsCommand::Server { listen, common } => {
            let config = config(&common)?;
            println!("Our fingerprint: {}", config.certificate.fingerprint());
            let rng = StdRng::from_os_rng();
            let endpoint = match common.dtls {
                DtlsVersion::V13 => Endpoint::server_dtls13_only(config, rng),
                DtlsVersion::V12 | DtlsVersion::Auto => Endpoint::server(config, rng),
            };
            let mut driver = Driver::bind(endpoint, &[listen])
                .await
                .map_err(|e| e.to_string())?;
            start_capture(&mut driver, &common)?;
            for a in driver.local_addrs() {
                println!("Listening on {a}");
            }
            flush_stdout();
            session(driver).await
        }
        DtlsCommand::Client { server, common } => {
            let config = config(&common)?;
            println!("Our fingerprint: {}", config.certificate.fingerprint());
            let any: SocketAddr = if server.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = tokio::net::UdpSocket::bind(any)
                .await
                .map_err(|e| format!("cannot bind {any}: {e}"))?;
            let (rng, now) = (StdRng::from_os_rng(), Instant::now());
            let endpoint = match common.dtls {
                DtlsVersion::V13 => Endpoint::client_dtls13_only(config, server, rng, now),
                DtlsVersion::V12 | DtlsVersion::Auto => Endpoint::client(config, server, rng, now),
            };
            let mut driver =
                Driver::from_sockets(endpoint, vec![socket]).map_err(|e| e.to_string())?;
            start_capture(&mut driver, &common)?;
            println!("Connecting to {server}");
            flush_stdout();
            session(driver).await
        }
    }
}

fn flush_stdout() {
    let _ = std::io::stdout().flush();
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// What `s_client` prints as its session summary, our way.
fn print_connected(peer: Option<SocketAddr>, c: &Connected) {
    if let Some(p) = peer {
        println!("Connected to {p}");
    }
    match c.version {
        Version::Dtls12 => println!("Protocol: DTLSv1.2"),
        Version::Dtls13 => println!("Protocol: DTLSv1.3"),
    }
    if let Some(g) = c.key_share_group {
        println!(
            "Key share: {} (0x{:04x})",
            g.name().unwrap_or("unknown"),
            g.0
        );
    }
    println!(
        "Cipher suite: {} (0x{:04x})",
        c.cipher_suite.name(),
        c.cipher_suite.code()
    );
    if c.version == Version::Dtls12 {
        println!(
            "Extended master secret: {}",
            if c.extended_master_secret {
                "yes"
            } else {
                "no"
            }
        );
    }
    match c.srtp_profile {
        Some(p) => println!(
            "SRTP profile: {} (0x{:04x})",
            p.name().unwrap_or("unknown"),
            p.0
        ),
        None => println!("SRTP profile: none"),
    }
    println!("Peer fingerprint: {}", c.peer_fingerprint);
    match &c.srtp_keying_material {
        Some(k) => println!("Keying material: {}", hex_upper(k)),
        None => println!("Keying material: none (no SRTP profile negotiated)"),
    }
    flush_stdout();
}

/// Appends the NSS key log lines to `$SSLKEYLOGFILE` (if set), so Wireshark
/// can decrypt a capture of this association: 1.2's CLIENT_RANDOM line, or
/// 1.3's handshake and traffic secrets.
fn write_key_log(endpoint: &Endpoint) -> Result<(), String> {
    let Some(path) = std::env::var_os("SSLKEYLOGFILE").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let Some(line) = endpoint.key_log_line() else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("SSLKEYLOGFILE {}: {e}", Path::new(&path).display()))?;
    writeln!(f, "{line}")
        .map_err(|e| format!("SSLKEYLOGFILE {}: {e}", Path::new(&path).display()))?;
    eprintln!("Key log appended to {}", Path::new(&path).display());
    Ok(())
}

fn failure(event: Event) -> Option<String> {
    match event {
        Event::Failed(e) => Some(format!("DTLS failed: {e}")),
        Event::PeerAlert(a) => Some(format!(
            "the peer sent a fatal alert: {:?} (description {})",
            a.level, a.description.0
        )),
        _ => None,
    }
}

/// Stdin, line by line, from a thread of its own; `None` at EOF. (tokio's
/// stdin reads on its blocking pool, and a runtime waits for that read to
/// finish before it shuts down: the program would hang after the peer
/// closed until the user pressed Enter. A plain thread dies with the
/// process.)
fn stdin_lines() -> mpsc::Receiver<Option<String>> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(Some(line)).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(None);
    });
    rx
}

/// The handshake, then stdin lines out and application data in.
async fn session(mut driver: Driver<Endpoint>) -> Result<(), String> {
    loop {
        match driver.next_event().await.map_err(|e| e.to_string())? {
            Event::Connected(c) => {
                print_connected(driver.machine().peer(), &c);
                write_key_log(driver.machine())?;
                break;
            }
            Event::Closed => return Err("the peer closed during the handshake".into()),
            Event::ApplicationData(_) => {}
            other => {
                if let Some(e) = failure(other) {
                    return Err(e);
                }
            }
        }
    }
    let mut lines = stdin_lines();
    let mut stdout = std::io::stdout();
    loop {
        tokio::select! {
            event = driver.next_event() => match event.map_err(|e| e.to_string())? {
                Event::ApplicationData(d) => {
                    let _ = stdout.write_all(&d);
                    let _ = stdout.flush();
                }
                Event::Closed => {
                    eprintln!("The peer closed the association (close_notify).");
                    return Ok(());
                }
                Event::Connected(_) => {}
                other => {
                    if let Some(e) = failure(other) {
                        return Err(e);
                    }
                }
            },
            // `Receiver::recv` is cancel-safe: a line is never lost when
            // the other branch wins.
            line = lines.recv() => match line {
                Some(Some(mut l)) => {
                    l.push('\n');
                    // One record carries at most 2^14 bytes.
                    for chunk in l.as_bytes().chunks(16 * 1024) {
                        driver.machine_mut().send(chunk).map_err(|e| e.to_string())?;
                    }
                    driver.flush().await.map_err(|e| e.to_string())?;
                }
                Some(None) | None => {
                    // EOF: close_notify (RFC 5246 §7.2.1), sent before we go.
                    driver.machine_mut().close();
                    driver.flush().await.map_err(|e| e.to_string())?;
                    return Ok(());
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_in_both_spellings() {
        assert_eq!(
            parse_profiles("SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80").unwrap(),
            vec![
                SrtpProfile::AEAD_AES_128_GCM,
                SrtpProfile::AES128_CM_HMAC_SHA1_80
            ]
        );
        assert_eq!(
            parse_profiles("SRTP_AES128_CM_HMAC_SHA1_32,aead_aes_256_gcm").unwrap(),
            vec![
                SrtpProfile::AES128_CM_HMAC_SHA1_32,
                SrtpProfile::AEAD_AES_256_GCM
            ]
        );
        assert_eq!(parse_profiles("none").unwrap(), vec![]);
        assert!(parse_profiles("SRTP_NULL").unwrap_err().contains("unknown"));
    }
}
