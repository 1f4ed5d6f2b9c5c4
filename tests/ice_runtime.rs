//! ICE over the tokio runtime: two [`ice::Agent`]s, each driven by its own
//! [`runtime::Driver`] on a real loopback UDP socket, in one process. They
//! exchange credentials and candidates (the signaling, here by hand),
//! connect, and send application data both ways over the selected pair. The
//! same agent code runs in `tests/sim_ice.rs` at virtual time; this proves it
//! runs unchanged at wall-clock time over real sockets.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::ice::{self, Agent, Candidate, CandidateKind, ConnectionState};
use rtclab::machine::Machine;
use rtclab::runtime::Driver;

/// Generous for a loaded CI machine: the agents need about Ta + the
/// nomination delay (some 300 ms).
const LIMIT: Duration = Duration::from_secs(20);

async fn agent_on_loopback(controlling: bool, seed: u64) -> io::Result<Driver<Agent>> {
    let agent = Agent::new(
        ice::Config {
            controlling,
            ..ice::Config::default()
        },
        StdRng::seed_from_u64(seed),
    );
    let mut d = Driver::bind(agent, &["127.0.0.1:0".parse().expect("addr")]).await?;
    let local = d.local_addrs()[0];
    d.machine_mut()
        .add_local_host(Instant::now(), local)
        .map_err(|e| io::Error::other(e.to_string()))?;
    Ok(d)
}

/// The candidates an agent reported so far (what it would trickle).
fn local_candidates(d: &mut Driver<Agent>) -> Vec<Candidate> {
    let mut v = Vec::new();
    while let Some(e) = d.machine_mut().poll_event() {
        if let ice::Event::LocalCandidate(c) = e {
            v.push(c);
        }
    }
    v
}

/// What one side saw: the selected pair's remote address and the data the
/// peer sent.
struct Outcome {
    remote: SocketAddr,
    local_kind: CandidateKind,
    received: Vec<u8>,
}

/// Runs one agent until it has selected a pair and received the peer's data;
/// sends `payload` as soon as its pair is selected.
async fn run_side(mut d: Driver<Agent>, payload: &'static [u8]) -> io::Result<Outcome> {
    let mut selected = None;
    let mut received = None;
    loop {
        match d.next_event().await? {
            ice::Event::SelectedPair { local, remote } => {
                let addr = remote
                    .socket_addr()
                    .ok_or_else(|| io::Error::other("selected remote has no IP address"))?;
                selected = Some((addr, local.kind));
                d.machine_mut()
                    .send(payload)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                // Out now: the loop may end before it flushes again.
                d.flush().await?;
            }
            ice::Event::Data { data, .. } => received = Some(data),
            ice::Event::Failed(why) => return Err(io::Error::other(why.to_string())),
            _ => {}
        }
        if let (Some((remote, local_kind)), Some(received)) = (selected, received.clone()) {
            assert_eq!(d.machine().state(), ConnectionState::Connected);
            return Ok(Outcome {
                remote,
                local_kind,
                received,
            });
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_connect_over_loopback_udp_and_exchange_data() {
    let mut a = agent_on_loopback(true, 1).await.expect("bind A");
    let mut b = agent_on_loopback(false, 2).await.expect("bind B");
    let (addr_a, addr_b) = (a.local_addrs()[0], b.local_addrs()[0]);

    // Signaling by hand: credentials and candidates both ways.
    let (creds_a, creds_b) = (
        a.machine().local_credentials().clone(),
        b.machine().local_credentials().clone(),
    );
    let (cands_a, cands_b) = (local_candidates(&mut a), local_candidates(&mut b));
    assert_eq!(cands_a.len(), 1, "one host candidate each");
    assert_eq!(cands_b.len(), 1, "one host candidate each");
    let now = Instant::now();
    a.machine_mut()
        .set_remote_credentials(now, &creds_b.ufrag, &creds_b.pwd);
    b.machine_mut()
        .set_remote_credentials(now, &creds_a.ufrag, &creds_a.pwd);
    for c in cands_b {
        a.machine_mut()
            .add_remote_candidate(now, c)
            .expect("B's candidate");
    }
    for c in cands_a {
        b.machine_mut()
            .add_remote_candidate(now, c)
            .expect("A's candidate");
    }
    a.machine_mut().end_of_remote_candidates(now);
    b.machine_mut().end_of_remote_candidates(now);

    let started = Instant::now();
    let both = async {
        let ta = tokio::spawn(run_side(a, b"hello from A"));
        let tb = tokio::spawn(run_side(b, b"hello from B"));
        let (ra, rb) = tokio::join!(ta, tb);
        (
            ra.expect("A's task").expect("A connects"),
            rb.expect("B's task").expect("B connects"),
        )
    };
    let (oa, ob) = tokio::time::timeout(LIMIT, both)
        .await
        .expect("both agents connect and exchange data in time");
    eprintln!("connected and exchanged data in {:?}", started.elapsed());

    assert_eq!(oa.remote, addr_b);
    assert_eq!(ob.remote, addr_a);
    assert_eq!(oa.local_kind, CandidateKind::Host);
    assert_eq!(ob.local_kind, CandidateKind::Host);
    assert_eq!(oa.received, b"hello from B");
    assert_eq!(ob.received, b"hello from A");
}
