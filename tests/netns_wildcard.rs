//! Servers listening on a wildcard address (`0.0.0.0:P`) on a host with two
//! addresses must answer from the address each request was sent to: a NAT in
//! front of the client drops an answer from the other one.
//!
//! Each test builds its own three network namespaces (`ip netns`, as root):
//!
//! ```text
//!  client 10.202.0.2 ── 10.202.0.254 router 10.201.0.254 ── server 10.201.0.1
//!         fd02::2        fd02::fe     (MASQUERADE) fd01::fe         10.201.0.2
//!                                                                   fd01::1
//!                                                                   fd01::2
//! ```
//!
//! and aims the client at each of the server's addresses (whichever the
//! kernel would pick for a reply, the other one shows the bug). Nothing is
//! sent outside these namespaces; every wait is bounded, and the namespaces
//! are deleted when the test ends, even on a panic. Without root (or `ip`,
//! `iptables`) the tests skip loudly, and fail under `RTCLAB_REQUIRE_INTEROP=1`.

#![cfg(target_os = "linux")]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Peer, interop_required, run_bounded};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::runtime::Driver;
use rtclab::turn::{self, Client};

const SERVER_FIRST: &str = "10.201.0.1";
const SERVER_SECOND: &str = "10.201.0.2";
const ROUTER_SERVER_SIDE: &str = "10.201.0.254";
const PORT: u16 = 3478;

/// The three namespaces of one test; deleted on drop.
struct Lab {
    prefix: String,
    /// Whether the IPv6 half (NAT66 on the router) is up.
    v6: bool,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Builds the topology, or `None` (after a loud skip) when this host
    /// cannot.
    fn new(tag: &str) -> Option<Lab> {
        let mut lab = Lab {
            prefix: format!("rtclab-wc-{}-{tag}", std::process::id()),
            v6: false,
        };
        let (srv, rtr, cli) = (lab.ns("srv"), lab.ns("rtr"), lab.ns("cli"));
        if let Err(e) = ip(&["netns", "add", &srv]) {
            assert!(
                !interop_required(),
                "cannot create a network namespace and RTCLAB_REQUIRE_INTEROP=1: {e}"
            );
            eprintln!(
                "\n*** SKIPPED: cannot create network namespaces ({e}); run as root with iproute2 and iptables ***\n"
            );
            return None;
        }
        // From here on, `lab` is dropped (namespaces deleted) on any failure.
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &rtr],
            vec!["netns", "add", &cli],
            // The links are made inside the router's namespace, so that
            // their names cannot clash with another test's.
            vec![
                "-n", &rtr, "link", "add", "rs0", "type", "veth", "peer", "name", "s0", "netns",
                &srv,
            ],
            vec![
                "-n", &rtr, "link", "add", "rc0", "type", "veth", "peer", "name", "c0", "netns",
                &cli,
            ],
            vec!["-n", &srv, "addr", "add", "10.201.0.1/24", "dev", "s0"],
            vec!["-n", &srv, "addr", "add", "10.201.0.2/24", "dev", "s0"],
            vec!["-n", &rtr, "addr", "add", "10.201.0.254/24", "dev", "rs0"],
            vec!["-n", &rtr, "addr", "add", "10.202.0.254/24", "dev", "rc0"],
            vec!["-n", &cli, "addr", "add", "10.202.0.2/24", "dev", "c0"],
            vec!["-n", &srv, "link", "set", "lo", "up"],
            vec!["-n", &rtr, "link", "set", "lo", "up"],
            vec!["-n", &cli, "link", "set", "lo", "up"],
            vec!["-n", &srv, "link", "set", "s0", "up"],
            vec!["-n", &rtr, "link", "set", "rs0", "up"],
            vec!["-n", &rtr, "link", "set", "rc0", "up"],
            vec!["-n", &cli, "link", "set", "c0", "up"],
            vec!["-n", &srv, "route", "add", "default", "via", "10.201.0.254"],
            vec!["-n", &cli, "route", "add", "default", "via", "10.202.0.254"],
        ];
        for s in &steps {
            if let Err(e) = ip(s) {
                lab.unavailable(&e);
                return None;
            }
        }
        let nat: [&[&str]; 2] = [
            &["sysctl", "-qw", "net.ipv4.ip_forward=1"],
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "10.202.0.0/24",
                "-o",
                "rs0",
                "-j",
                "MASQUERADE",
            ],
        ];
        for cmd in nat {
            if let Err(e) = lab.exec(&rtr, cmd) {
                lab.unavailable(&e);
                return None;
            }
        }
        // The same over IPv6, NAT66 included (`nodad`: usable at once).
        let steps6: Vec<Vec<&str>> = vec![
            vec![
                "-n",
                &srv,
                "addr",
                "add",
                "fd01::1/64",
                "dev",
                "s0",
                "nodad",
            ],
            vec![
                "-n",
                &srv,
                "addr",
                "add",
                "fd01::2/64",
                "dev",
                "s0",
                "nodad",
            ],
            vec![
                "-n",
                &rtr,
                "addr",
                "add",
                "fd01::fe/64",
                "dev",
                "rs0",
                "nodad",
            ],
            vec![
                "-n",
                &rtr,
                "addr",
                "add",
                "fd02::fe/64",
                "dev",
                "rc0",
                "nodad",
            ],
            vec![
                "-n",
                &cli,
                "addr",
                "add",
                "fd02::2/64",
                "dev",
                "c0",
                "nodad",
            ],
            vec![
                "-n", &srv, "-6", "route", "add", "default", "via", "fd01::fe",
            ],
            vec![
                "-n", &cli, "-6", "route", "add", "default", "via", "fd02::fe",
            ],
            vec![
                "netns",
                "exec",
                &rtr,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.forwarding=1",
            ],
            vec![
                "netns",
                "exec",
                &rtr,
                "ip6tables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                "fd02::/64",
                "-o",
                "rs0",
                "-j",
                "MASQUERADE",
            ],
        ];
        match steps6.iter().try_for_each(|s| ip(s)) {
            Ok(()) => lab.v6 = true,
            Err(e) => {
                assert!(
                    !interop_required(),
                    "cannot build the IPv6 half and RTCLAB_REQUIRE_INTEROP=1: {e}"
                );
                eprintln!("\n*** SKIPPED (IPv6 half only): {e} ***\n");
            }
        }
        Some(lab)
    }

    fn unavailable(&self, e: &str) {
        assert!(
            !interop_required(),
            "cannot build the namespaces and RTCLAB_REQUIRE_INTEROP=1: {e}"
        );
        eprintln!("\n*** SKIPPED: cannot build the test's network namespaces ({e}) ***\n");
    }

    /// Runs `cmd` in namespace `ns` and waits (bounded) for it.
    fn exec(&self, ns: &str, cmd: &[&str]) -> Result<(), String> {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        ip(&args)
    }

    /// Starts a long-running `rtclab` subcommand in namespace `ns`.
    fn spawn_rtclab(&self, ns: &str, name: &str, args: &[&str]) -> Peer {
        let bin = env!("CARGO_BIN_EXE_rtclab");
        let mut all: Vec<String> = ["netns", "exec", ns, bin]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(args.iter().map(|s| s.to_string()));
        Peer::start(name, &PathBuf::from("ip"), &all)
    }

    /// A UDP socket bound to `addr` inside namespace `ns` (made on a thread
    /// that enters the namespace; the socket stays in it).
    fn udp_socket_in(&self, ns: &str, addr: &str) -> UdpSocket {
        let path = format!("/run/netns/{ns}");
        let addr = addr.to_string();
        std::thread::spawn(move || {
            let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            UdpSocket::bind(&addr).unwrap_or_else(|e| panic!("bind {addr} in {path}: {e}"))
        })
        .join()
        .expect("the namespace thread")
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for role in ["cli", "rtr", "srv"] {
            let _ = ip(&["netns", "del", &self.ns(role)]);
        }
    }
}

/// Runs `ip args…` (at most 10 s); the error carries its output.
fn ip(args: &[&str]) -> Result<(), String> {
    let mut child = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                break;
            }
        }
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// `rtclab stun-server --listen 0.0.0.0:P` (one thread, then two on
/// SO_REUSEPORT sockets), and on `[::]:P`, answers a Binding request sent
/// through a NAT to each of its addresses.
#[test]
fn stun_server_on_wildcard_answers_from_the_address_asked() {
    for (k, (any, threads)) in [("0.0.0.0", "1"), ("0.0.0.0", "2"), ("[::]", "2")]
        .into_iter()
        .enumerate()
    {
        let Some(lab) = Lab::new(&format!("s{k}")) else {
            return;
        };
        let targets: Vec<(String, String)> = if any == "0.0.0.0" {
            [SERVER_SECOND, SERVER_FIRST]
                .iter()
                .map(|t| (format!("{t}:{PORT}"), format!("{ROUTER_SERVER_SIDE}:")))
                .collect()
        } else if lab.v6 {
            ["fd01::2", "fd01::1"]
                .iter()
                .map(|t| (format!("[{t}]:{PORT}"), "[fd01::fe]:".to_string()))
                .collect()
        } else {
            continue;
        };
        let listen = format!("{any}:{PORT}");
        let server = lab.spawn_rtclab(
            &lab.ns("srv"),
            "rtclab-stun-server",
            &["stun-server", "--listen", &listen, "--threads", threads],
        );
        assert!(
            server.wait_for_output("listening on", Duration::from_secs(10)),
            "the STUN server did not start:\n{}",
            server.output()
        );
        for (to, mapped) in &targets {
            let bin = env!("CARGO_BIN_EXE_rtclab");
            let args: Vec<String> = ["netns", "exec", &lab.ns("cli"), bin, "stun", to]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let (ok, out) = run_bounded(&PathBuf::from("ip"), &args, Duration::from_secs(10));
            assert!(
                ok && out.contains(&format!("Mapped address: {mapped}")),
                "STUN Binding to {to} through the NAT (on {listen}, {threads} server thread(s)) failed:\n{out}\n---- server ----\n{}",
                server.output()
            );
        }
        drop(server);
        drop(lab);
    }
}

/// `rtclab turn-server --listen 0.0.0.0:P` answers an Allocate sent through a
/// NAT to its second address, and relays a peer's answer back from that
/// address too.
#[test]
fn turn_server_on_wildcard_answers_from_the_address_asked() {
    let Some(lab) = Lab::new("t") else {
        return;
    };
    let listen = format!("0.0.0.0:{PORT}");
    let server = lab.spawn_rtclab(
        &lab.ns("srv"),
        "rtclab-turn-server",
        &[
            "turn-server",
            "--listen",
            &listen,
            "--relay-ip",
            SERVER_FIRST,
            "--relays",
            "4",
            "--user",
            "alice:secret",
        ],
    );
    assert!(
        server.wait_for_output("TURN server on", Duration::from_secs(10)),
        "the TURN server did not start:\n{}",
        server.output()
    );
    // The peer: a UDP echo on the router's server side.
    let peer = lab.udp_socket_in(&lab.ns("rtr"), &format!("{ROUTER_SERVER_SIDE}:0"));
    let peer_addr = peer.local_addr().expect("peer address");
    peer.set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = peer.recv_from(&mut buf) {
                    let _ = peer.send_to(&buf[..n], from);
                }
            }
        })
    };
    let client_socket = lab.udp_socket_in(&lab.ns("cli"), "0.0.0.0:0");
    client_socket.set_nonblocking(true).expect("nonblocking");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let result = rt.block_on(async {
        let socket = tokio::net::UdpSocket::from_std(client_socket).expect("tokio socket");
        let to: SocketAddr = format!("{SERVER_SECOND}:{PORT}").parse().expect("addr");
        let client = Client::new(
            turn::client::Config::new(to, "alice", "secret"),
            StdRng::seed_from_u64(7),
        );
        let mut d = Driver::from_sockets(client, vec![socket]).expect("driver");
        d.machine_mut().allocate(Instant::now()).expect("allocate");
        let allocated = next(&mut d).await?;
        let turn::client::Event::Allocated {
            relayed, mapped, ..
        } = allocated
        else {
            return Err(format!("Allocate: {allocated:?}"));
        };
        if relayed.ip().to_string() != SERVER_FIRST
            || mapped.map(|m| m.ip().to_string()) != Some(ROUTER_SERVER_SIDE.into())
        {
            return Err(format!("relayed {relayed}, mapped {mapped:?}"));
        }
        d.machine_mut()
            .send_to(Instant::now(), peer_addr, b"through the relay")
            .map_err(|e| format!("send: {e}"))?;
        let mut events = Vec::new();
        while events.len() < 2 {
            events.push(next(&mut d).await?);
        }
        let want = turn::client::Event::Data {
            peer: peer_addr,
            data: b"through the relay".to_vec(),
        };
        if !events.contains(&want) {
            return Err(format!("after the send: {events:?}"));
        }
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
    if let Err(e) = result {
        panic!(
            "TURN through the NAT to {SERVER_SECOND}:{PORT}: {e}\n---- server ----\n{}",
            server.output()
        );
    }
    drop(server);
    drop(lab);
}

async fn next(d: &mut Driver<Client>) -> Result<turn::client::Event, String> {
    match tokio::time::timeout(Duration::from_secs(5), d.next_event()).await {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(e)) => Err(format!("io: {e}")),
        Err(_) => Err("no answer within 5 s".into()),
    }
}
