//! Two ICE agents in two processes connect over loopback UDP, exchanging
//! their credentials and candidates through files (a stand-in for
//! signaling), then send one message each over the selected pair.
//!
//! ```text
//! cargo run --example ice_pair                 # starts both processes itself
//! cargo run --example ice_pair -- controlling DIR   # or run the two halves
//! cargo run --example ice_pair -- controlled DIR    # by hand, in two terminals
//! ```
//!
//! Each side writes `DIR/<role>.txt`: `ice-ufrag`, `ice-pwd`, its
//! `candidate:` lines and `end-of-candidates`, then waits for the other's.

use std::io;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::ice::{self, Agent, Candidate, ConnectionState};
use rtclab::machine::{Machine, Receive};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [role, dir] => run_side(role == "controlling", Path::new(dir)),
        [] => run_both(),
        _ => Err("usage: ice_pair [controlling|controlled DIR]".into()),
    }
}

/// Starts the two halves as two processes and waits for both.
fn run_both() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("rtclab-ice-pair-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = std::env::current_exe()?;
    let mut children = Vec::new();
    for role in ["controlling", "controlled"] {
        children.push(Command::new(&exe).arg(role).arg(&dir).spawn()?);
    }
    let mut ok = true;
    for mut c in children {
        ok &= c.wait()?.success();
    }
    let _ = std::fs::remove_dir_all(&dir);
    if ok {
        println!("both sides connected");
        Ok(())
    } else {
        Err("a side failed".into())
    }
}

fn run_side(controlling: bool, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let me = if controlling {
        "controlling"
    } else {
        "controlled"
    };
    let peer = if controlling {
        "controlled"
    } else {
        "controlling"
    };
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.set_read_timeout(Some(Duration::from_millis(2)))?;
    let local = socket.local_addr()?;
    let config = ice::Config {
        controlling,
        ..ice::Config::default()
    };
    let seed = u64::from(std::process::id());
    let mut agent = Agent::new(config, StdRng::seed_from_u64(seed));
    agent.add_local_host(Instant::now(), local)?;

    // Our half of the signaling.
    let creds = agent.local_credentials().clone();
    let mut text = format!("ice-ufrag {}\nice-pwd {}\n", creds.ufrag, creds.pwd);
    while let Some(e) = agent.poll_event() {
        if let ice::Event::LocalCandidate(c) = e {
            text.push_str(&format!("{c}\n"));
        }
    }
    text.push_str("end-of-candidates\n");
    let tmp = dir.join(format!("{me}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(format!("{me}.txt")))?;

    // The peer's half.
    let theirs = wait_for(&dir.join(format!("{peer}.txt")), Duration::from_secs(10))?;
    let now = Instant::now();
    let (mut ufrag, mut pwd) = (String::new(), String::new());
    for line in theirs.lines() {
        if let Some(u) = line.strip_prefix("ice-ufrag ") {
            ufrag = u.to_string();
        } else if let Some(p) = line.strip_prefix("ice-pwd ") {
            pwd = p.to_string();
        } else if line.starts_with("candidate:") {
            agent.add_remote_candidate(now, Candidate::parse(line)?)?;
        } else if line == "end-of-candidates" {
            agent.end_of_remote_candidates(now);
        }
    }
    agent.set_remote_credentials(now, &ufrag, &pwd);

    // The run loop.
    let start = Instant::now();
    let mut buf = vec![0u8; 2048];
    let mut sent = false;
    loop {
        let now = Instant::now();
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
        while let Some(t) = agent.poll_transmit() {
            socket.send_to(&t.contents, t.destination)?;
        }
        while let Some(e) = agent.poll_event() {
            match e {
                ice::Event::SelectedPair { local, remote } => {
                    println!("{me}: selected {local} <-> {remote}");
                }
                ice::Event::Data { data, .. } => {
                    println!("{me}: received {:?}", String::from_utf8_lossy(&data[1..]));
                    // Linger a little so the peer's last checks get answers.
                    let until = Instant::now() + Duration::from_millis(100);
                    while Instant::now() < until {
                        pump(&mut agent, &socket, local, &mut buf)?;
                    }
                    return Ok(());
                }
                ice::Event::Failed(why) => return Err(format!("{me}: ICE failed: {why}").into()),
                _ => {}
            }
        }
        if !sent && agent.state() == ConnectionState::Connected {
            // 0x17 first: not STUN (RFC 7983), so the peer passes it up as data.
            let msg = format!("\x17hello from the {me} side");
            agent.send(msg.as_bytes())?;
            sent = true;
            continue;
        }
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{me}: no connection within 10 s").into());
        }
        pump(&mut agent, &socket, local, &mut buf)?;
    }
}

/// Sends what is queued and feeds one received datagram (or waits 2 ms).
fn pump(
    agent: &mut Agent,
    socket: &UdpSocket,
    local: std::net::SocketAddr,
    buf: &mut [u8],
) -> io::Result<()> {
    let now = Instant::now();
    if agent.poll_timeout().is_some_and(|t| t <= now) {
        agent.handle_timeout(now);
    }
    while let Some(t) = agent.poll_transmit() {
        socket.send_to(&t.contents, t.destination)?;
    }
    match socket.recv_from(buf) {
        Ok((n, from)) => {
            agent.handle_receive(
                Instant::now(),
                Receive {
                    source: from,
                    destination: local,
                    contents: &buf[..n],
                },
            );
            Ok(())
        }
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn wait_for(path: &Path, limit: Duration) -> io::Result<String> {
    let start = Instant::now();
    loop {
        if let Ok(t) = std::fs::read_to_string(path) {
            return Ok(t);
        }
        if start.elapsed() > limit {
            return Err(io::Error::other(format!(
                "{} never appeared",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
