//! `rtclab sfu`'s server on loopback for the tests that talk to it over
//! real sockets (WHIP/WHEP, cascades).

use std::net::SocketAddr;

use rand::SeedableRng;
use rtclab::sfu::server::{Config, Handle, Server};

/// A server on loopback in a thread of its own: its HTTP address and a
/// handle.
pub fn start_sfu(token: Option<&str>) -> (SocketAddr, Handle) {
    start_sfu_at(token, None)
}

#[allow(dead_code)] // not every test that includes this file uses it
/// [`start_sfu`] behind a one-to-one NAT to `public_ip`
/// (`rtclab sfu --public-ip`), when given.
pub fn start_sfu_at(
    token: Option<&str>,
    public_ip: Option<std::net::IpAddr>,
) -> (SocketAddr, Handle) {
    let (tx, rx) = std::sync::mpsc::channel();
    let token = token.map(str::to_string);
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let cert =
                rtclab::dtls::cert::Certificate::generate(&mut rng, std::time::SystemTime::now())
                    .expect("certificate");
            let mut sfu = rtclab::sfu::Config::new(cert, Vec::new());
            sfu.public_ip = public_ip;
            let server = Server::bind(Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                udp: "127.0.0.1:0".parse().unwrap(),
                sfu,
                reports: None,
                whip: Some(token),
            })
            .await
            .expect("bind");
            tx.send((server.http_addr(), server.handle()))
                .expect("send");
            let _ = server.run_until(std::future::pending()).await;
        });
    });
    rx.recv().expect("the SFU started")
}
