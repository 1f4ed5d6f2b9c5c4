//! `rtclab sfu`'s server on loopback for the tests that talk to it over
//! real sockets (WHIP/WHEP, cascades, rooms placed over a bus).
#![allow(dead_code)] // not every test that includes this file uses all of it

use std::net::SocketAddr;
use std::sync::Arc;

use rand::SeedableRng;
use rtclab::bus::{Bus, RedisBus};
use rtclab::sfu::placement::{self, Placement};
use rtclab::sfu::server::{Config, Handle, Server};

/// A server on loopback in a thread of its own: its HTTP address and a
/// handle.
pub fn start_sfu(token: Option<&str>) -> (SocketAddr, Handle) {
    start_sfu_at(token, None)
}

/// [`start_sfu`] behind a one-to-one NAT to `public_ip`
/// (`rtclab sfu --public-ip`), when given.
pub fn start_sfu_at(
    token: Option<&str>,
    public_ip: Option<std::net::IpAddr>,
) -> (SocketAddr, Handle) {
    let token = token.map(str::to_string);
    let configure = move |c: &mut Config| {
        c.whip = Some(token);
        c.sfu.public_ip = public_ip;
    };
    let (http, handle, ()) = start_sfu_with(configure, |server| (server, ()));
    (http, handle)
}

/// An `rtclab sfu --bus URL --node NAME` node taking `capacity`
/// participants, in this process: its HTTP address, placement and handle.
pub fn start_sfu_node(
    url: &str,
    name: &str,
    capacity: usize,
) -> (SocketAddr, Handle, Arc<Placement>) {
    let (url, name) = (url.to_string(), name.to_string());
    start_sfu_with(
        |_| {},
        move |server| {
            let bus: Arc<dyn Bus> = Arc::new(RedisBus::open(&url).expect("bus"));
            let http = format!("http://{}", server.http_addr());
            let p = Placement::new(placement::Config::new(bus, &name, &http, capacity));
            (server.with_placement(p.clone()), p)
        },
    )
}

/// A server on loopback (WHIP on, no token; `configure` changes that),
/// set up by `setup` on its runtime and run there in a thread of its own:
/// its HTTP address, a handle and what `setup` returned.
pub fn start_sfu_with<T: Send + 'static>(
    configure: impl FnOnce(&mut Config) + Send + 'static,
    setup: impl FnOnce(Server) -> (Server, T) + Send + 'static,
) -> (SocketAddr, Handle, T) {
    let (tx, rx) = std::sync::mpsc::channel();
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
            let mut config = Config {
                listen: "127.0.0.1:0".parse().unwrap(),
                udp: "127.0.0.1:0".parse().unwrap(),
                sfu: rtclab::sfu::Config::new(cert, Vec::new()),
                reports: None,
                whip: Some(None),
            };
            configure(&mut config);
            let server = Server::bind(config).await.expect("bind");
            let (http, handle) = (server.http_addr(), server.handle());
            let (server, made) = setup(server);
            tx.send((http, handle, made)).expect("send");
            let _ = server.run_until(std::future::pending()).await;
        });
    });
    rx.recv().expect("the SFU started")
}
