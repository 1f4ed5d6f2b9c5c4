//! `rtclab peer` across two real kernel NATs (issue 15 §5), as a deployment
//! would meet them: each test builds its own network namespaces (`ip
//! netns`, as root):
//!
//! ```text
//!                      pub: 203.0.113.1 (+ .2)  bridge br0
//!        rtclab signaling :8080, stun-server :3478 (alt .2:3480),
//!        turn-server :3479 (relay ports 50000-50199)
//!              │                                   │
//!   203.0.113.10 ra (NAT)                   203.0.113.20 rb (NAT)
//!     10.0.1.1 │                                   │ 10.0.2.1
//!     10.0.1.2  a: rtclab peer          b: rtclab peer  10.0.2.2
//! ```
//!
//! Each router masquerades its private segment (iptables MASQUERADE) and,
//! as a home router's firewall does, drops what comes unsolicited from the
//! WAN to the router itself (without that, see `Lab::build`, the kernel's
//! "cone" NAT maps per destination whenever the peer's check comes first).
//! Plain MASQUERADE keeps the source port when it is free: one socket
//! gets one public port whatever it sends to (endpoint-independent
//! mapping), and conntrack lets in only replies from where it sent
//! (address-and-port-dependent filtering): a port-restricted cone NAT.
//! `MASQUERADE --random-fully` draws a new port for every new flow: each
//! destination sees another port (address-and-port-dependent mapping), a
//! symmetric NAT. `rtclab stun --mode behavior` (RFC 5780 §4.3) checks
//! both from inside before the peers run (on this kernel `--random` alone
//! gives the same, see the test of it).
//!
//! Cases: cone–cone connects directly (a server-reflexive pair, no relay);
//! symmetric–symmetric only through the relay; relay-only on both sides
//! through the one TURN server (relay to relay); and a peer whose router
//! lets no UDP out, relay-only through the TURN server over TCP. Each time a 256 KiB file
//! goes each way, hashes checked. Every wait is bounded, nothing is sent
//! outside the namespaces, and they are deleted when the test ends, even
//! on a panic. Without root (or `ip`, `iptables`) the tests skip loudly,
//! and fail under `RTCLAB_REQUIRE_INTEROP=1`.

#![cfg(target_os = "linux")]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Peer, interop_required};

const BIN: &str = env!("CARGO_BIN_EXE_rtclab");
const SERVER: &str = "203.0.113.1";
const SERVER_ALT: &str = "203.0.113.2";
/// The TURN server over UDP, for `call`.
const UDP_TURN: &[&str] = &["--turn", "turn:203.0.113.1:3479"];

/// How a router maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nat {
    /// `MASQUERADE`: port-restricted cone.
    Cone,
    /// `MASQUERADE --random-fully`: symmetric.
    Symmetric,
    /// `MASQUERADE --random`.
    Random,
}

impl Nat {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Nat::Cone => &[],
            Nat::Symmetric => &["--random-fully"],
            Nat::Random => &["--random"],
        }
    }
}

/// The five namespaces of one test; deleted on drop.
struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Builds the topology with router A doing `nat_a`, router B `nat_b`;
    /// `None` (after a loud skip) when this host cannot.
    fn new(tag: &str, nat_a: Nat, nat_b: Nat) -> Option<Lab> {
        let mut lab = Lab {
            prefix: format!("rtclab-nat-{}-{tag}", std::process::id()),
            made: Vec::new(),
        };
        let first = lab.ns("pub");
        if let Err(e) = ip(&["netns", "add", &first]) {
            assert!(
                !interop_required(),
                "cannot create a network namespace and RTCLAB_REQUIRE_INTEROP=1: {e}"
            );
            eprintln!(
                "\n*** SKIPPED: cannot create network namespaces ({e}); run as root with iproute2 and iptables ***\n"
            );
            return None;
        }
        lab.made.push(first);
        if let Err(e) = lab.build(nat_a, nat_b) {
            assert!(
                !interop_required(),
                "cannot build the namespaces and RTCLAB_REQUIRE_INTEROP=1: {e}"
            );
            eprintln!("\n*** SKIPPED: cannot build the test's network namespaces ({e}) ***\n");
            return None;
        }
        Some(lab)
    }

    fn build(&mut self, nat_a: Nat, nat_b: Nat) -> Result<(), String> {
        let p = self.ns("pub");
        for role in ["ra", "rb", "a", "b"] {
            let n = self.ns(role);
            ip(&["netns", "add", &n])?;
            self.made.push(n);
        }
        let (ra, rb, a, b) = (self.ns("ra"), self.ns("rb"), self.ns("a"), self.ns("b"));
        let mut steps: Vec<Vec<&str>> = vec![
            vec!["-n", &p, "link", "add", "br0", "type", "bridge"],
            vec!["-n", &p, "addr", "add", "203.0.113.1/24", "dev", "br0"],
            vec!["-n", &p, "addr", "add", "203.0.113.2/24", "dev", "br0"],
            vec!["-n", &p, "link", "set", "br0", "up"],
            vec!["-n", &p, "link", "set", "lo", "up"],
        ];
        // Links are made inside the routers' namespaces, so that their
        // names cannot clash with another test's.
        for (r, host, wan, lan, host_ip, gw) in [
            (
                &ra,
                &a,
                "203.0.113.10/24",
                "10.0.1.1/24",
                "10.0.1.2/24",
                "10.0.1.1",
            ),
            (
                &rb,
                &b,
                "203.0.113.20/24",
                "10.0.2.1/24",
                "10.0.2.2/24",
                "10.0.2.1",
            ),
        ] {
            let port = if r == &ra { "pa" } else { "pb" };
            steps.extend([
                vec![
                    "-n", r, "link", "add", "wan", "type", "veth", "peer", "name", port, "netns",
                    &p,
                ],
                vec![
                    "-n", r, "link", "add", "lan", "type", "veth", "peer", "name", "eth0", "netns",
                    host,
                ],
                vec!["-n", &p, "link", "set", port, "master", "br0"],
                vec!["-n", &p, "link", "set", port, "up"],
                vec!["-n", r, "addr", "add", wan, "dev", "wan"],
                vec!["-n", r, "addr", "add", lan, "dev", "lan"],
                vec!["-n", host, "addr", "add", host_ip, "dev", "eth0"],
                vec!["-n", r, "link", "set", "lo", "up"],
                vec!["-n", r, "link", "set", "wan", "up"],
                vec!["-n", r, "link", "set", "lan", "up"],
                vec!["-n", host, "link", "set", "lo", "up"],
                vec!["-n", host, "link", "set", "eth0", "up"],
                vec!["-n", host, "route", "add", "default", "via", gw],
            ]);
        }
        for s in &steps {
            ip(s)?;
        }
        for (r, nat, lan) in [(&ra, nat_a, "10.0.1.0/24"), (&rb, nat_b, "10.0.2.0/24")] {
            self.exec(r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            let mut rule = vec![
                "iptables",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-s",
                lan,
                "-o",
                "wan",
                "-j",
                "MASQUERADE",
            ];
            rule.extend_from_slice(nat.flags());
            self.exec(r, &rule)?;
            // A router's firewall: nothing unsolicited from the WAN reaches
            // the router itself. Without it, a peer's check that arrives
            // before our first packet to it is tracked as a flow to the
            // router (conntrack confirms it on the way in, then the
            // kernel answers port unreachable), and our own first packet
            // to that peer then clashes with that flow's tuple: MASQUERADE
            // gives it another port, and the "cone" NAT maps per
            // destination after all. Dropped in INPUT, the packet is never
            // confirmed, leaves no flow, and the port is kept.
            self.exec(r, &["iptables", "-A", "INPUT", "-i", "wan", "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Runs `cmd` in namespace `ns` and waits (bounded) for it.
    fn exec(&self, ns: &str, cmd: &[&str]) -> Result<(), String> {
        let mut args = vec!["netns", "exec", ns];
        args.extend_from_slice(cmd);
        ip(&args)
    }

    fn rtclab_args(&self, ns: &str, args: &[String]) -> Vec<String> {
        let mut all: Vec<String> = ["netns", "exec", &self.ns(ns), BIN]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend_from_slice(args);
        all
    }

    /// Starts a long-running `rtclab` subcommand in namespace `ns`.
    fn spawn(&self, ns: &str, name: &str, args: &[&str]) -> Peer {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        Peer::start(name, &PathBuf::from("ip"), &self.rtclab_args(ns, &args))
    }

    /// The servers on the public segment: signaling, STUN (with an
    /// alternate address, RFC 5780), TURN.
    fn servers(&self) -> Vec<Peer> {
        let signaling = self.spawn(
            "pub",
            "signaling",
            &["signaling", "--listen", &format!("{SERVER}:8080")],
        );
        let stun = self.spawn(
            "pub",
            "stun-server",
            &[
                "stun-server",
                "--listen",
                &format!("{SERVER}:3478"),
                "--alt",
                &format!("{SERVER_ALT}:3480"),
                "--threads",
                "1",
            ],
        );
        let turn = self.spawn(
            "pub",
            "turn-server",
            &[
                "turn-server",
                "--listen",
                &format!("{SERVER}:3479"),
                "--user",
                "alice:secret",
                "--min-port",
                "50000",
                "--max-port",
                "50199",
                "--threads",
                "1",
            ],
        );
        assert!(
            signaling.wait_for_output("WebSocket at", Duration::from_secs(10)),
            "signaling did not start:\n{}",
            signaling.output()
        );
        assert!(
            stun.wait_for_output("listening", Duration::from_secs(10)),
            "stun-server did not start:\n{}",
            stun.output()
        );
        vec![signaling, stun, turn]
    }

    /// `rtclab stun --mode behavior` from `ns`: the NAT's mapping as RFC
    /// 5780 §4.3 finds it.
    fn mapping(&self, ns: &str) -> String {
        let args = self.rtclab_args(
            ns,
            &[
                "stun".into(),
                format!("{SERVER}:3478"),
                "--mode".into(),
                "behavior".into(),
            ],
        );
        let (ok, out) = common::run_bounded(&PathBuf::from("ip"), &args, Duration::from_secs(15));
        assert!(ok, "rtclab stun failed:\n{out}");
        out.lines()
            .find_map(|l| l.strip_prefix("Mapping behaviour: "))
            .unwrap_or_else(|| panic!("no mapping behaviour in:\n{out}"))
            .to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in self.made.iter().rev() {
            let _ = ip(&["netns", "del", n]);
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

/// `n` bytes made up from `seed`.
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

/// The selected pair a peer printed: `(local kind, remote kind)`.
fn selected_pair(out: &str) -> (String, String) {
    let line = out
        .lines()
        .find(|l| l.starts_with("ice: selected pair"))
        .unwrap_or_else(|| panic!("no selected pair in:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    // "ice: selected pair local KIND ADDR <-> remote KIND ADDR"
    (words[4].to_string(), words[8].to_string())
}

/// Two `rtclab peer`s, one behind each router, swap a 256 KiB file through
/// the servers, each with its `extra` flags (its TURN URL at least);
/// returns their outputs.
fn call(lab: &Lab, extra: [&[&str]; 2]) -> [String; 2] {
    let _servers = lab.servers();
    let dir = std::env::temp_dir().join(format!("{}-files", lab.prefix));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let files = [content(256 << 10, 11), content(256 << 10, 12)];
    let started = Instant::now();
    let mut peers = Vec::new();
    for (i, ns) in ["a", "b"].into_iter().enumerate() {
        let send = dir.join(format!("from-{ns}.bin"));
        std::fs::write(&send, &files[i]).expect("write");
        let save = dir.join(format!("inbox-{ns}"));
        let (send, save) = (send.display().to_string(), save.display().to_string());
        let mut args = vec![
            "peer",
            "--server",
            "ws://203.0.113.1:8080",
            "--room",
            "nat",
            "--stun",
            "stun:203.0.113.1:3478",
            "--user",
            "alice:secret",
            "--send",
            &send,
            "--save",
            &save,
            "--exit-after-transfer",
            "--connect-timeout",
            "25",
        ];
        args.extend_from_slice(extra[i]);
        let p = lab.spawn(ns, &format!("peer-{ns}"), &args);
        if i == 0 {
            assert!(
                p.wait_for_output("created room nat", Duration::from_secs(10)),
                "peer a did not join:\n{}",
                p.output()
            );
        }
        peers.push(p);
    }
    for p in &mut peers {
        let status = p.wait_exit(Duration::from_secs(40));
        assert!(
            status.is_some_and(|s| s.success()),
            "a peer failed or hung:\n{}",
            p.output()
        );
    }
    for (i, ns) in ["a", "b"].into_iter().enumerate() {
        let other = if ns == "a" { "b" } else { "a" };
        let got = std::fs::read(dir.join(format!("inbox-{other}/from-{ns}.bin"))).expect("saved");
        assert!(got == files[i], "the file from {ns} arrived changed");
    }
    let _ = std::fs::remove_dir_all(&dir);
    let outs = [peers[0].output(), peers[1].output()];
    eprintln!(
        "call in {:.2} s; a: {:?}; b: {:?}",
        started.elapsed().as_secs_f64(),
        selected_pair(&outs[0]),
        selected_pair(&outs[1])
    );
    outs
}

/// Port-restricted cone on both sides: STUN sees endpoint-independent
/// mapping, and the peers connect directly (a server-reflexive pair,
/// checks crossing through both NATs), no relay.
#[test]
fn cone_to_cone_connects_directly() {
    let Some(lab) = Lab::new("cc", Nat::Cone, Nat::Cone) else {
        return;
    };
    let t = Instant::now();
    let _servers = lab.servers();
    assert_eq!(lab.mapping("a"), "endpoint-independent mapping");
    drop(_servers);
    let [a, b] = call(&lab, [UDP_TURN, UDP_TURN]);
    for out in [&a, &b] {
        let (local, remote) = selected_pair(out);
        // Our side shows as the server-reflexive candidate (or its base,
        // RFC 8445 §6.1.2.4, host); the remote is the peer's NAT address,
        // signaled (srflx) or learned from its checks first (prflx).
        assert!(local == "srflx" || local == "host", "{out}");
        assert!(remote == "srflx" || remote == "prflx", "{out}");
    }
    eprintln!("cone-cone case: {:.2} s", t.elapsed().as_secs_f64());
}

/// Symmetric on both sides: STUN sees address-and-port-dependent mapping,
/// no direct pair can work, and the call goes through the relay.
#[test]
fn symmetric_to_symmetric_connects_through_the_relay() {
    let Some(lab) = Lab::new("ss", Nat::Symmetric, Nat::Symmetric) else {
        return;
    };
    let t = Instant::now();
    let servers = lab.servers();
    assert_eq!(lab.mapping("a"), "address-and-port-dependent mapping");
    drop(servers);
    let [a, b] = call(&lab, [UDP_TURN, UDP_TURN]);
    for out in [&a, &b] {
        let (local, remote) = selected_pair(out);
        assert!(
            local == "relay" || remote == "relay",
            "no relayed candidate in the pair:\n{out}"
        );
    }
    eprintln!(
        "symmetric-symmetric case: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// `--relay-only` on both sides (cone NATs, where a direct pair would
/// work): relay to relay through the one server.
#[test]
fn relay_only_goes_relay_to_relay_through_one_server() {
    let Some(lab) = Lab::new("ro", Nat::Cone, Nat::Cone) else {
        return;
    };
    let t = Instant::now();
    let relay_only = &["--turn", "turn:203.0.113.1:3479", "--relay-only"];
    let [a, b] = call(&lab, [relay_only, relay_only]);
    for out in [&a, &b] {
        assert_eq!(
            selected_pair(out),
            ("relay".to_string(), "relay".to_string()),
            "{out}"
        );
        assert!(!out.contains("10.0."), "a private address leaked:\n{out}");
    }
    eprintln!("relay-only case: {:.2} s", t.elapsed().as_secs_f64());
}

/// Behind a firewall that lets no UDP out, a peer still calls: relay-only
/// through the TURN server reached over TCP (RFC 8656 §3.1), to a peer
/// behind a symmetric NAT that uses the server over UDP.
#[test]
fn behind_a_udp_blocking_firewall_over_turn_tcp() {
    let Some(lab) = Lab::new("tcp", Nat::Cone, Nat::Symmetric) else {
        return;
    };
    lab.exec(
        &lab.ns("ra"),
        &[
            "iptables", "-A", "FORWARD", "-i", "lan", "-p", "udp", "-j", "DROP",
        ],
    )
    .expect("the firewall rule");
    let t = Instant::now();
    let tcp = &[
        "--turn",
        "turn:203.0.113.1:3479?transport=tcp",
        "--relay-only",
    ];
    let [a, b] = call(&lab, [tcp, UDP_TURN]);
    assert_eq!(selected_pair(&a).0, "relay", "{a}");
    assert_eq!(selected_pair(&b).1, "relay", "{b}");
    eprintln!(
        "UDP-blocked TCP TURN case: {:.2} s",
        t.elapsed().as_secs_f64()
    );
}

/// What `MASQUERADE --random` does on this kernel: its mapping as STUN
/// finds it (printed; the symmetric case uses `--random-fully`).
#[test]
fn masquerade_random_mapping_on_this_kernel() {
    let Some(lab) = Lab::new("rn", Nat::Random, Nat::Cone) else {
        return;
    };
    let _servers = lab.servers();
    let m = lab.mapping("a");
    eprintln!("MASQUERADE --random: {m}");
    assert!(m.contains("mapping"), "{m}");
}
