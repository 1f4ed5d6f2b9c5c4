//! `rtclab`: the command-line face of the crate (STUN client and server, a
//! DTLS client and server, the benchmarks; later TURN, the demo and the SFU).

#[path = "rtclab/dtls.rs"]
mod dtls;
#[path = "rtclab/peer.rs"]
mod peer;
#[path = "rtclab/xray.rs"]
mod xray;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::runtime::Driver;
use rtclab::stun::{self, BindingServer, DiscoveryMode, NatDiscovery};

#[derive(Parser)]
#[command(
    name = "rtclab",
    version,
    about = "A WebRTC stack written from scratch, to learn from"
)]
struct Cli {
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ask a STUN server for our mapped address, or test the NAT's behaviour.
    Stun {
        /// The server, `HOST[:PORT]` (port 3478 when omitted).
        server: String,
        /// What to find out.
        #[arg(long, value_enum, default_value_t = Mode::Binding)]
        mode: Mode,
        /// Local address to send from (default: any address, a free port).
        #[arg(long)]
        local: Option<SocketAddr>,
    },
    /// Serve STUN Binding (RFC 8489); with --alt, NAT behaviour discovery too (RFC 5780).
    StunServer {
        /// The primary address, e.g. 127.0.0.1:3478; on 0.0.0.0 or [::], each
        /// answer leaves from the address its request was sent to.
        #[arg(long, default_value = "0.0.0.0:3478")]
        listen: SocketAddr,
        /// The alternate address (another IP and another port), e.g. 127.0.0.2:3479.
        #[arg(long)]
        alt: Option<SocketAddr>,
        /// Threads answering in parallel, each with its own sockets on the same
        /// addresses (SO_REUSEPORT); default: one per core.
        #[arg(long)]
        threads: Option<usize>,
        /// Send SOFTWARE ("rtclab VERSION") in answers; off by default, since
        /// every byte of an answer to a forged source is amplification.
        #[arg(long)]
        software: bool,
    },
    /// Serve TURN (RFC 8656) over UDP and TCP, relaying over UDP, with
    /// long-term or ephemeral (--auth-secret) credentials.
    ///
    /// Peers refused by default (403): link-local 169.254.0.0/16 (cloud
    /// metadata) and fe80::/10, 0.0.0.0/8, multicast, 255.255.255.255,
    /// unspecified, and loopback and every IP of this host's interfaces
    /// unless --allow-loopback-peers, except this server's own relayed
    /// addresses (the relay port range on the relay IP: relay to relay, as
    /// coturn allows). Private ranges are relayed: on a public server
    /// add `--denied-peer-ip 10.0.0.0/8 --denied-peer-ip 172.16.0.0/12
    /// --denied-peer-ip 192.168.0.0/16 --denied-peer-ip 100.64.0.0/10
    /// --denied-peer-ip fc00::/7` (coturn's recommended configuration denies
    /// these; coturn itself denies only loopback and, with
    /// --no-multicast-peers, multicast).
    TurnServer(TurnArgs),
    /// The main demo: open http://127.0.0.1:8080 and your browser talks to a
    /// Rust WebRTC peer (video reflected, chat, photo, a live panel per layer);
    /// two tabs can also call each other. Ctrl-C closes every peer cleanly.
    Demo {
        /// The HTTP address (0.0.0.0:8080 to open it from other machines).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The IP the Rust peers' UDP sockets bind (default: the --listen IP).
        #[arg(long)]
        udp_ip: Option<IpAddr>,
        /// Most Rust peers at once.
        #[arg(long, default_value_t = 64)]
        max_peers: usize,
        /// Capture each Rust peer's datagrams into pcapng files with the
        /// DTLS key log inside (peer N writes FILE with -N before its
        /// extension); `rtclab xray` or Wireshark reads them.
        #[arg(long, value_name = "FILE")]
        pcap: Option<std::path::PathBuf>,
    },
    /// The selective forwarding unit: open http://127.0.0.1:8090/sfu/?room=NAME
    /// in several browsers; everyone publishes camera and microphone once
    /// and sees everyone else, through one UDP port.
    Sfu(SfuArgs),
    /// DTLS 1.2 client or server, like `openssl s_client/s_server -dtls1_2`:
    /// prints what was negotiated and the SRTP keying material, then carries
    /// stdin lines as application data. `SSLKEYLOGFILE` names a key log for
    /// Wireshark.
    Dtls {
        #[command(subcommand)]
        command: dtls::DtlsCommand,
    },
    /// Serve WebSocket signaling (rooms: create or join, full, bye) and the
    /// examples' web pages (codelab step 7).
    Signaling {
        /// The listening address, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for the LAN).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Most members per room.
        #[arg(long, default_value_t = 2)]
        room_size: usize,
        /// Longest message a client may send, in bytes.
        #[arg(long, default_value_t = 64 * 1024)]
        max_message: usize,
        /// Most TCP connections at once (pages and WebSockets); more are
        /// closed as they come. Default: 1024, or the open-file limit
        /// (ulimit -n) less 128 if that is lower.
        #[arg(long, default_value_t = rtclab::signaling::default_tcp_cap())]
        max_connections: usize,
        /// Share rooms with other nodes over this bus: redis://HOST:PORT
        /// (default: this process alone).
        #[arg(long)]
        bus: Option<String>,
        /// This node's name on the bus (unique among the nodes).
        #[arg(long, default_value = "node1")]
        node: String,
    },
    /// A Rust peer as a process: joins a room of `rtclab signaling`, offers
    /// or answers as the room decides, then echoes data channels, sends and
    /// saves files, sends and records IVF video; prints each layer's state.
    Peer(peer::PeerArgs),
    /// Print a capture (pcapng or pcap) as a ladder, one line per packet
    /// and layer: STUN, DTLS (decrypted with the capture's key log), SCTP,
    /// DCEP, RTP and RTCP.
    Xray(xray::XrayArgs),
    /// Measure each layer on this machine (like `openssl speed`).
    Speed {
        /// Layers to measure: stun, stun-server, turn, ice, dtls, srtp, rtp,
        /// setup, datachannel (default: all); `sfu` and `bus` only when named.
        layers: Vec<String>,
        /// sfu: drive Janus's VideoRoom (Debian's `janus`).
        #[arg(long)]
        janus: bool,
        /// sfu: drive `BIN sfu` over WHIP/WHEP.
        #[arg(long, value_name = "BIN")]
        rtclab: Option<std::path::PathBuf>,
        /// sfu: the steps of 1 publisher × N subscribers (comma-separated;
        /// default 10,50,100,200,400,800,1600 until loss or a full core).
        #[arg(long, value_delimiter = ',')]
        subscribers: Vec<usize>,
        /// sfu: rooms of four participants (default 10; 0 skips).
        #[arg(long)]
        rooms: Option<usize>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// The mapped (server-reflexive) address.
    Binding,
    /// The NAT's mapping behaviour (RFC 5780 §4.3).
    Behavior,
    /// The NAT's filtering behaviour (RFC 5780 §4.4).
    Filtering,
    /// Both behaviours.
    Full,
}

fn main() -> ExitCode {
    rtclab::speed::peer::set_heap_counter(heap::live_bytes);
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    // The SFU's media task keeps its thread busy while datagrams keep
    // coming, and tokio makes a busy task yield only every 128 socket
    // reads: on one thread, a loaded SFU answered WHIP/WHEP and page
    // requests seconds late (a POST after over 10 s at 368 subscribers on
    // a crowded core). With worker threads, HTTP and WebSockets run beside
    // it. Every other command is one machine and keeps one thread.
    let mut builder = if matches!(cli.command, Command::Sfu(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Stun {
                server,
                mode,
                local,
            } => stun_client(&server, mode, local).await,
            Command::StunServer {
                listen,
                alt,
                threads,
                software,
            } => stun_server(listen, alt, threads, software).await,
            Command::Demo {
                listen,
                udp_ip,
                max_peers,
                pcap,
            } => demo(listen, udp_ip, max_peers, pcap).await,
            Command::Dtls { command } => dtls::run(command).await,
            Command::Sfu(args) => sfu(args).await,
            Command::TurnServer(args) => turn_server(args).await,
            Command::Signaling {
                listen,
                room_size,
                max_message,
                max_connections,
                bus,
                node,
            } => signaling(listen, room_size, max_message, max_connections, bus, node).await,
            Command::Peer(args) => peer::run(args).await,
            Command::Speed {
                layers,
                janus,
                rtclab,
                subscribers,
                rooms,
            } => {
                rtclab::speed::sfu::configure(rtclab::speed::sfu::Options {
                    janus,
                    rtclab,
                    subscribers,
                    rooms,
                });
                rtclab::speed::run(&layers).map_err(|e| e.to_string())
            }
            Command::Xray(args) => xray::run(args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn resolve(server: &str) -> Result<SocketAddr, String> {
    let with_port = if server.parse::<SocketAddr>().is_ok() {
        server.to_string()
    } else if server.parse::<IpAddr>().is_ok() {
        // A bare IP (an IPv6 one needs brackets to take a port).
        match server.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => format!("[{ip}]:3478"),
            _ => format!("{server}:3478"),
        }
    } else if server
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        server.to_string()
    } else {
        format!("{server}:3478")
    };
    let mut addrs = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("bad server address {server:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("bad server address {server:?}: it resolves to nothing"))
}

/// Our address as the server would see it without a NAT: the local IP the
/// kernel picks for the route to `server` (no packet is sent), with our port.
fn local_address(server: SocketAddr, port: u16) -> Option<SocketAddr> {
    let any: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any).ok()?;
    probe.connect(server).ok()?;
    Some(SocketAddr::new(probe.local_addr().ok()?.ip(), port))
}

async fn stun_client(server: &str, mode: Mode, local: Option<SocketAddr>) -> Result<(), String> {
    let server = resolve(server).await?;
    let bind = local.unwrap_or(if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    });
    let socket = tokio::net::UdpSocket::bind(bind)
        .await
        .map_err(|e| format!("cannot bind {bind}: {e}"))?;
    let port = socket.local_addr().map_err(|e| e.to_string())?.port();
    let local = match local {
        Some(l) if !l.ip().is_unspecified() => Some(SocketAddr::new(l.ip(), port)),
        _ => local_address(server, port),
    };
    let discovery_mode = match mode {
        Mode::Binding => DiscoveryMode::Binding,
        Mode::Behavior => DiscoveryMode::Mapping,
        Mode::Filtering => DiscoveryMode::Filtering,
        Mode::Full => DiscoveryMode::Both,
    };
    let machine = NatDiscovery::new(
        std::time::Instant::now(),
        server,
        local,
        discovery_mode,
        StdRng::from_os_rng(),
    );
    let mut driver =
        Driver::from_sockets(machine, vec![socket]).map_err(|e| format!("socket: {e}"))?;
    let report = driver
        .next_event()
        .await
        .map_err(|e| format!("network: {e}"))?
        .map_err(|e| e.to_string())?;
    if let Some(l) = report.local {
        println!("Local address: {l}");
    }
    println!("Mapped address: {}", report.mapped);
    if let Some(o) = report.other_address {
        println!("Other address: {o}");
    }
    if let Some(s) = &report.software {
        println!("Server software: {s}");
    }
    if report.direct {
        println!("Mapping behaviour: no NAT (direct mapping)");
    } else if let Some(m) = report.mapping {
        println!("Mapping behaviour: {m}");
    }
    if let Some(f) = report.filtering {
        println!("Filtering behaviour: {f}");
    }
    Ok(())
}

async fn stun_server(
    listen: SocketAddr,
    alt: Option<SocketAddr>,
    threads: Option<usize>,
    software: bool,
) -> Result<(), String> {
    if alt.is_some() && listen.ip().is_unspecified() {
        // RFC 5780 §6.1: CHANGE-REQUEST picks the other IP, so both must be
        // named; a wildcard primary would answer from wherever it was asked.
        return Err("with --alt, give --listen a specific IP (not 0.0.0.0 or [::])".into());
    }
    let mut config = stun::server::Config::new(listen);
    config.alternate = alt;
    if software {
        config.software = Some(rtclab::stun::server::SOFTWARE.to_string());
    }
    let threads = threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let server = BindingServer::new(config.clone()).map_err(|e| e.to_string())?;
    let addrs = server.local_addrs().to_vec();
    let mut driver = if threads == 1 {
        Driver::bind(server, &addrs).await
    } else {
        Driver::bind_reuse_port(server, &addrs).await
    }
    .map_err(|e| e.to_string())?;
    let bound = driver.local_addrs();
    for a in &bound {
        eprintln!("STUN server listening on {a}");
    }
    // The Binding server keeps no state per client, so more threads, each
    // with its own sockets on the same addresses, answer in parallel.
    for _ in 1..threads {
        let server = BindingServer::new(config.clone()).map_err(|e| e.to_string())?;
        let bound = bound.clone();
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                match Driver::bind_reuse_port(server, &bound).await {
                    Ok(mut d) => {
                        if let Err(e) = d.serve().await {
                            eprintln!("error: STUN server thread: {e}");
                        }
                    }
                    Err(e) => eprintln!("error: STUN server thread: {e}"),
                }
            });
        });
    }
    tokio::select! {
        r = driver.serve() => r.map_err(|e| e.to_string()),
        _ = tokio::signal::ctrl_c() => {
            let s = driver.machine().stats();
            eprintln!(
                "stopped: this thread answered {}, {} errors, {} dropped",
                s.success, s.errors, s.dropped
            );
            Ok(())
        }
    }
}

async fn demo(
    listen: SocketAddr,
    udp_ip: Option<IpAddr>,
    max_peers: usize,
    pcap: Option<std::path::PathBuf>,
) -> Result<(), String> {
    let mut config = rtclab::demo::Config::new(listen);
    config.pcap = pcap;
    config.udp_ip = udp_ip;
    config.max_sessions = max_peers;
    let demo = rtclab::demo::Demo::bind(config).await.map_err(|e| {
        format!(
            "cannot listen on {listen}: {e} (another demo running? try --listen 127.0.0.1:8081)"
        )
    })?;
    let addr = demo.local_addr();
    println!("rtclab demo on http://{addr}/");
    println!("  open it in a browser: your camera comes back through a Rust WebRTC peer,");
    println!("  with a chat, a photo button and a live panel of every layer.");
    println!(
        "  two tabs calling each other: open http://{addr}/demo/?call=new, then its invite link in a second tab"
    );
    println!("  Ctrl-C closes every peer (DTLS close_notify, SCTP ABORT) and stops.");
    let summary = demo
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "stopped: {} Rust peer(s) served, every connection closed",
        summary.sessions
    );
    Ok(())
}

/// `rtclab sfu`'s flags.
#[derive(clap::Args)]
struct SfuArgs {
    /// The HTTP address of the page and its WebSocket.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// The one UDP address of every participant's media (port 0: any).
    #[arg(long, default_value = "127.0.0.1:0")]
    udp: SocketAddr,
    /// Participants per room.
    #[arg(long, default_value_t = 16)]
    room_size: usize,
    /// Participants in all.
    #[arg(long, default_value_t = 500)]
    max_participants: usize,
    /// What one publisher may send, in kbit/s.
    #[arg(long, default_value_t = 5000)]
    max_publisher_kbps: u64,
    /// Turn the keyframe cache (instant join) off.
    #[arg(long)]
    no_keyframe_cache: bool,
    /// Forward scalable video (AV1 or VP9 with one encoding in several
    /// layers, e.g. the page's `?codec=AV1&svc=L3T3_KEY`) per subscriber
    /// by decode target, read from the Dependency Descriptor or VP9's
    /// payload descriptor (`sfu::Config::scalable_video`).
    #[arg(long)]
    scalable_video: bool,
    /// The bearer token WHIP and WHEP requests must carry
    /// (`Authorization: Bearer TOKEN`); without it they need none.
    #[arg(long)]
    token: Option<String>,
    /// Capture every datagram of the SFU to this pcapng file, with each
    /// participant's DTLS key log inside (`rtclab xray FILE`, Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Keep the SFU's capture in memory (at most MIB mebibytes) so that
    /// each page can download its own packets and DTLS secrets.
    #[arg(long, value_name = "MIB", num_args = 0..=1, default_missing_value = "64")]
    xray: Option<usize>,
    /// Cascade ROOM with the `rtclab sfu` at URL (`ROOM=http://HOST:PORT`,
    /// repeatable; the same --token): one room spanning both nodes.
    #[arg(long, value_name = "ROOM=URL")]
    cascade: Vec<String>,
    /// Share rooms with other SFU nodes over this bus: redis://HOST:PORT.
    /// Each room lives on one node (the least loaded when it opens);
    /// participants who reach another node are sent there.
    #[arg(long)]
    bus: Option<String>,
    /// This node's name on the bus (unique among the nodes).
    #[arg(long, default_value = "sfu1")]
    node: String,
    /// The address participants reach this node at (default: the
    /// --listen address): in the bus's redirects, and in the ICE
    /// candidates of participants and cascade links, for a node behind a
    /// one-to-one NAT (the socket keeps its own address).
    #[arg(long)]
    public_ip: Option<std::net::IpAddr>,
}

async fn sfu(args: SfuArgs) -> Result<(), String> {
    use rand::SeedableRng;
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let certificate =
        rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
    let mut sfu = rtclab::sfu::Config::new(certificate, Vec::new());
    sfu.max_room_size = args.room_size.max(1);
    sfu.max_participants = args.max_participants.max(1);
    sfu.max_publisher_bitrate = args.max_publisher_kbps.saturating_mul(1000);
    sfu.keyframe_cache = !args.no_keyframe_cache;
    sfu.scalable_video = args.scalable_video;
    sfu.public_ip = args.public_ip;
    let mut server = rtclab::sfu::server::Server::bind(rtclab::sfu::server::Config {
        listen: args.listen,
        udp: args.udp,
        sfu,
        reports: None,
        whip: Some(args.token),
    })
    .await
    .map_err(|e| format!("cannot listen on {} / {}: {e}", args.listen, args.udp))?;
    if let Some(path) = &args.pcap {
        let file = std::fs::File::create(path)
            .map_err(|e| format!("capture file {}: {e}", path.display()))?;
        server.set_capture_file(file);
    }
    if let Some(mib) = args.xray {
        server.set_downloads(mib.max(1) << 20);
    }
    let http = server.http_addr();
    let server = match &args.bus {
        None => server,
        Some(url) => {
            if !rtclab::bus::valid_token(&args.node) || args.node.contains('@') {
                return Err(format!(
                    "--node {:?}: 1 to 64 of A-Z a-z 0-9 - _ .",
                    args.node
                ));
            }
            let bus = rtclab::bus::connect(Some(url)).map_err(|e| e.to_string())?;
            let ip = args.public_ip.unwrap_or(http.ip());
            let me = format!("http://{}", SocketAddr::new(ip, http.port()));
            let config = rtclab::sfu::placement::Config::new(
                bus,
                &args.node,
                &me,
                args.max_participants.max(1),
            );
            println!("node {} on the bus {url}, reached at {me}", args.node);
            server.with_placement(rtclab::sfu::placement::Placement::new(config))
        }
    };
    println!(
        "rtclab sfu on http://{http}/sfu/?room=NAME (media on UDP {})",
        server.udp_addr()
    );
    println!("  open it in several browsers (or tabs) with the same room name;");
    println!(
        "  WHIP: POST http://{http}/whip/ROOM, WHEP: POST http://{http}/whep/ROOM (RFC 9725)."
    );
    for c in &args.cascade {
        let (room, url) = c
            .split_once('=')
            .ok_or_else(|| format!("--cascade {c}: ROOM=URL"))?;
        // The other node may start after this one: a few tries.
        let (room, url, h) = (room.to_string(), url.to_string(), server.handle());
        tokio::spawn(async move {
            for _ in 0..10 {
                match h.cascade(&room, &url).await {
                    Ok(id) => return println!("  cascade: room {room} linked to {url} ({id})"),
                    Err(e) => eprintln!("  cascade: room {room} to {url}: {e}"),
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
    }
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())
}

/// `rtclab turn-server`'s flags.
#[derive(clap::Args)]
struct TurnArgs {
    /// The listening address, e.g. 127.0.0.1:3478.
    #[arg(long, default_value = "127.0.0.1:3478")]
    listen: SocketAddr,
    /// The realm of the credentials.
    #[arg(long, default_value = "rtclab")]
    realm: String,
    /// A user, `NAME:PASSWORD` (repeat for more).
    #[arg(long = "user", required_unless_present = "auth_secret")]
    users: Vec<String>,
    /// The shared secret of ephemeral credentials (the TURN REST API, as
    /// coturn's static-auth-secret): username `EXPIRY:NAME` (Unix
    /// seconds), password base64(HMAC-SHA1(SECRET, username)).
    #[arg(long, value_name = "SECRET")]
    auth_secret: Option<String>,
    /// The IP to relay from (default: the listening IP).
    #[arg(long)]
    relay_ip: Option<IpAddr>,
    /// The lowest relay port: each allocation's relay socket is bound on
    /// demand on a port of --min-port..=--max-port (coturn's defaults).
    #[arg(long, default_value_t = 49152)]
    min_port: u16,
    /// The highest relay port.
    #[arg(long, default_value_t = 65535)]
    max_port: u16,
    /// Instead of ports on demand, bind N relay sockets at start, on
    /// ports the system picks (a fixed pool; no EVEN-PORT pairs).
    #[arg(long, value_name = "N")]
    relays: Option<usize>,
    /// Do not listen on TCP (by default TURN is served over TCP on the
    /// --listen port too, RFC 8656 §3.1; relaying stays UDP).
    #[arg(long)]
    no_tcp: bool,
    /// Threads relaying in parallel, each a server of its own on the same
    /// address (SO_REUSEPORT: a client always reaches the same one, which
    /// holds its allocation and relay sockets); default: one per core. The
    /// quotas then count per thread (--total-quota is divided among them).
    /// With --relays, one.
    #[arg(long)]
    threads: Option<usize>,
    /// Most allocations per username at once; 0: no limit (as coturn).
    #[arg(long, alias = "quota", default_value_t = 0)]
    user_quota: usize,
    /// Most allocations at once in all; 0: no limit but the relay ports.
    #[arg(long, default_value_t = 0)]
    total_quota: usize,
    /// Relay to loopback peers and the server's own IPs (tests on one host).
    #[arg(long)]
    allow_loopback_peers: bool,
    /// Also refuse peers in RANGE (`a.b.c.d/n`, `FIRST-LAST` or one
    /// address; repeat for more), besides the default denials.
    #[arg(long = "denied-peer-ip", value_name = "RANGE")]
    denied_peer_ips: Vec<rtclab::turn::IpRange>,
    /// Relay to peers in RANGE even when denied (repeat for more), as
    /// coturn's allowed-peer-ip; never to the server's listening socket.
    #[arg(long = "allowed-peer-ip", value_name = "RANGE")]
    allowed_peer_ips: Vec<rtclab::turn::IpRange>,
    /// Send SOFTWARE ("rtclab VERSION") in answers; off by default, since
    /// every byte of a 401 to a forged source is amplification.
    #[arg(long)]
    software: bool,
}

async fn turn_server(flags: TurnArgs) -> Result<(), String> {
    let (listen, realm) = (flags.listen, flags.realm.clone());
    let relay_ip = flags.relay_ip.unwrap_or(listen.ip());
    if relay_ip.is_unspecified() {
        return Err("with an unspecified --listen IP, give --relay-ip".into());
    }
    if flags.min_port > flags.max_port {
        return Err("--min-port is above --max-port".into());
    }
    let threads = match flags.relays {
        Some(_) => 1,
        None => flags
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1),
    };
    let (main, tcp) = if threads > 1 {
        rtclab::runtime::turn_server::bind_shard(listen, !flags.no_tcp, threads as u32)
            .map_err(|e| e.to_string())?
    } else {
        let main = tokio::net::UdpSocket::bind(listen)
            .await
            .map_err(|e| format!("cannot bind {listen}: {e}"))?;
        let tcp = if flags.no_tcp {
            None
        } else {
            Some(
                tokio::net::TcpListener::bind(main.local_addr().map_err(|e| e.to_string())?)
                    .await
                    .map_err(|e| format!("cannot listen on TCP {listen}: {e}"))?,
            )
        };
        (main, tcp)
    };
    let listen = main.local_addr().map_err(|e| e.to_string())?;
    // With --relays, a pool bound now and handed to the sans-IO server by
    // address; else ports on demand.
    let mut sockets = vec![main];
    let mut pool = Vec::new();
    for _ in 0..flags.relays.unwrap_or(0) {
        let s = tokio::net::UdpSocket::bind(SocketAddr::new(relay_ip, 0))
            .await
            .map_err(|e| format!("cannot bind a relay socket on {relay_ip}: {e}"))?;
        pool.push(s.local_addr().map_err(|e| e.to_string())?);
        sockets.push(s);
    }
    let mut config = rtclab::turn::server::Config::new(listen, pool, &realm);
    if flags.relays.is_none() {
        config.relay_ports = Some(rtclab::turn::RelayPorts {
            ip: relay_ip,
            min: flags.min_port,
            max: flags.max_port,
        });
    }
    for u in &flags.users {
        let (name, password) = u
            .split_once(':')
            .ok_or_else(|| format!("--user {u:?} is not NAME:PASSWORD"))?;
        config.users.push((name.to_string(), password.to_string()));
    }
    config.quota_per_user = flags.user_quota;
    config.total_quota = flags.total_quota.div_ceil(threads);
    config.auth_secret = flags.auth_secret.clone();
    if flags.software {
        config.software = Some(rtclab::stun::server::SOFTWARE.to_string());
    }
    config.allow_loopback_peers = flags.allow_loopback_peers;
    if !flags.allow_loopback_peers {
        // The sans-IO server knows only the addresses it serves on; the
        // host's other interfaces are peers on the server itself too.
        let host = host_ips();
        config
            .denied_peer_ips
            .extend(host.into_iter().map(rtclab::turn::IpRange::single));
    }
    config.denied_peer_ips.extend(flags.denied_peer_ips);
    config.allowed_peer_ips = flags.allowed_peer_ips;
    let make_server = |config: rtclab::turn::server::Config| {
        let now = std::time::Instant::now();
        let mut server = rtclab::turn::Server::new(config, now, StdRng::from_os_rng());
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        server.set_unix_time(now, unix);
        server
    };
    // The other shards, each on a thread with its own runtime, sockets and
    // server (see --threads).
    let tcp_on = tcp.is_some();
    let (started_tx, started) = std::sync::mpsc::channel();
    for _ in 1..threads {
        let config = config.clone();
        let started_tx = started_tx.clone();
        std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return drop(started_tx.send(Err(e.to_string()))),
            };
            rt.block_on(async {
                let bound =
                    rtclab::runtime::turn_server::bind_shard(listen, tcp_on, threads as u32);
                let (udp, tcp) = match bound {
                    Ok(b) => b,
                    Err(e) => return drop(started_tx.send(Err(e.to_string()))),
                };
                let _ = started_tx.send(Ok(()));
                let server = make_server(config);
                if let Err(e) = rtclab::runtime::turn_server::serve(server, vec![udp], tcp).await {
                    eprintln!("error: TURN server thread: {e}");
                }
            });
        });
    }
    drop(started_tx);
    // Every shard bound, or none serves: with one missing, the steering
    // would send some clients nowhere. (One answer per thread: the
    // senders live on in the threads.)
    for _ in 1..threads {
        started
            .recv()
            .map_err(|e| format!("TURN server thread: {e}"))?
            .map_err(|e| format!("TURN server thread: {e}"))?;
    }
    let server = make_server(config);
    let relays = match flags.relays {
        Some(n) => format!("{n} relay sockets on {relay_ip}"),
        None => format!(
            "relay ports {}-{} on {relay_ip}",
            flags.min_port, flags.max_port
        ),
    };
    let tcp_note = if tcp.is_some() { "UDP and TCP" } else { "UDP" };
    println!(
        "TURN server on {listen} over {tcp_note} (realm {realm}, {relays}, {threads} thread{})",
        if threads == 1 { "" } else { "s" }
    );
    // An allocation's relay socket and its client's 5-tuple reach the same
    // sans-IO server: the one of the thread the kernel gives the client to
    // (SO_REUSEPORT), which opened the relay socket itself. Relayed
    // datagrams take the server's no-allocation fast path.
    rtclab::runtime::turn_server::serve(server, sockets, tcp)
        .await
        .map_err(|e| e.to_string())
}

/// Every IP address of this host's interfaces (none where the platform
/// cannot list them).
fn host_ips() -> Vec<IpAddr> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "macos"))]
    {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        addrs
            .filter_map(|a| a.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|v4| IpAddr::V4(v4.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
            })
            .collect()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
    {
        Vec::new()
    }
}

async fn signaling(
    listen: SocketAddr,
    room_size: usize,
    max_message: usize,
    max_connections: usize,
    bus: Option<String>,
    node: String,
) -> Result<(), String> {
    if room_size == 0 {
        return Err("--room-size must be at least 1".into());
    }
    if max_connections == 0 {
        return Err("--max-connections must be at least 1".into());
    }
    let mut config = rtclab::signaling::Config::with_room_size(room_size);
    config.rooms.max_message_bytes = max_message;
    config.max_tcp_connections = max_connections;
    if let Some(url) = &bus {
        if !rtclab::bus::valid_token(&node) || node.contains('@') {
            return Err(format!("--node {node:?}: 1 to 64 of A-Z a-z 0-9 - _ ."));
        }
        let bus = rtclab::bus::connect(Some(url)).map_err(|e| e.to_string())?;
        config.bus = Some(rtclab::signaling::BusNode {
            bus,
            node: node.clone(),
        });
        println!("node {node} on the bus {url}");
    }
    let server = rtclab::signaling::Server::bind(listen, config)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    println!("rtclab signaling on http://{addr}/ (WebSocket at ws://{addr}/ws)");
    println!("  pages: http://{addr}/07_signaling/?room=NAME (open it in two tabs)");
    println!("  Ctrl-C stops it.");
    server
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string())?;
    println!("stopped: every connection closed");
    Ok(())
}

/// The heap bytes live, for `rtclab speed setup`'s `peer.idle_bytes`: a
/// global allocator that counts around the system one (the library forbids
/// `unsafe`, so it lives here).
mod heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LIVE: AtomicUsize = AtomicUsize::new(0);

    struct Counting;

    // SAFETY: every call goes to the system allocator with the same
    // arguments; the counter on the side changes nothing it returns.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller keeps GlobalAlloc::alloc's contract.
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller keeps GlobalAlloc::alloc_zeroed's contract.
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size(), Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: the caller keeps GlobalAlloc::dealloc's contract.
            unsafe { System.dealloc(ptr, layout) };
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: the caller keeps GlobalAlloc::realloc's contract.
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(new_size, Ordering::Relaxed);
                LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            }
            p
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Bytes allocated and not yet freed, over every thread.
    pub fn live_bytes() -> usize {
        LIVE.load(Ordering::Relaxed)
    }
}
