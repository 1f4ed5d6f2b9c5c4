//! The TURN server's runtime: the sans-IO [`turn::Server`] over UDP and TCP,
//! with relay sockets opened on demand.
//!
//! One task owns the server and every UDP socket (the listening one and one
//! per allocation, bound when the server asks with
//! [`turn::server::Event::BindRelay`], closed on [`turn::server::Event::CloseRelay`]), and
//! relays through [`Driver`]'s fast path (batched on Linux). Each TCP
//! connection (RFC 8656 §3.1) gets a small task that cuts its stream into
//! messages with [`turn::Framer`] and passes them to the owner; answers and
//! peers' data for it come back through a bounded queue.
//!
//! A TCP connection is closed when it stops being TURN (a framing error),
//! when it holds no allocation and has sent no whole message for
//! [`TCP_IDLE`] (a slow-loris costs one message's buffer for that long),
//! and past [`MAX_TCP_CONNECTIONS`] new ones are refused. What waits to be
//! written to a client that does not read is capped (256 KiB, then
//! dropped as UDP would). When a client closes its connection, its
//! allocation is deleted.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::{Driver, is_icmp_error, readable, sleep_until};
use crate::machine::{Machine, Receive};
use crate::turn::{self, Transport};

/// A TCP connection without an allocation is closed after this long
/// without a whole message.
pub const TCP_IDLE: Duration = Duration::from_secs(30);
/// Most TCP connections at once.
pub const MAX_TCP_CONNECTIONS: usize = 4096;
/// Messages queued for one TCP connection before more are dropped (a
/// client that does not read).
const TCP_QUEUE: usize = 256;
/// Bytes queued for one TCP connection before more are dropped.
const TCP_QUEUE_BYTES: usize = 256 * 1024;
/// Bytes one read from a TCP connection takes.
const TCP_READ: usize = 16 * 1024;

/// What a connection task tells the owner.
enum FromConnection {
    Message {
        id: u64,
        client: SocketAddr,
        local: SocketAddr,
        bytes: Vec<u8>,
    },
    Closed {
        id: u64,
        client: SocketAddr,
    },
}

struct Connection {
    id: u64,
    to_client: mpsc::Sender<Vec<u8>>,
    /// Bytes queued in `to_client` and not written yet.
    queued: Arc<AtomicUsize>,
    /// Tokio's clock, so that tests can pause it.
    last_message: tokio::time::Instant,
}

/// One input the owner's select took.
enum Input {
    /// Socket `i` is readable.
    Udp(io::Result<usize>),
    Stream(Option<FromConnection>),
    Accept(io::Result<(TcpStream, SocketAddr)>),
    Timer,
    Sweep,
}

/// Serves `server` on `udp` (its listening socket first, then the relay
/// pool's if it has one) and, when given, on `tcp`, until an I/O error on
/// a UDP socket.
pub async fn serve(
    server: turn::Server,
    udp: Vec<UdpSocket>,
    tcp: Option<TcpListener>,
) -> io::Result<()> {
    serve_with_idle(server, udp, tcp, TCP_IDLE).await
}

/// [`serve`], closing TCP connections without allocation after `idle`
/// without a whole message.
pub async fn serve_with_idle(
    server: turn::Server,
    udp: Vec<UdpSocket>,
    tcp: Option<TcpListener>,
    idle: Duration,
) -> io::Result<()> {
    let mut driver = Driver::from_sockets(server, udp)?;
    let (from_conn_tx, mut from_conn) = mpsc::channel::<FromConnection>(256);
    let mut conns: HashMap<SocketAddr, Connection> = HashMap::new();
    let mut next_id = 0u64;
    let mut sweep = tokio::time::interval(idle / 4);
    let fast: super::FastPath<turn::Server> = |s, now, d, out| {
        s.handle_relay(now, d, out)
            .map(|r| (r.source, r.destination))
    };
    loop {
        // Everything the server wants done, until it wants nothing.
        loop {
            driver.flush().await?;
            let mut busy = false;
            while let Some(e) = driver.machine.poll_event() {
                busy = true;
                match e {
                    turn::server::Event::BindRelay(a) => {
                        let ok = driver.add_relay(a);
                        driver.machine.relay_bound(Instant::now(), a, ok);
                    }
                    turn::server::Event::CloseRelay(a) => driver.remove_relay(a),
                }
            }
            while let Some(t) = driver.machine.poll_stream_transmit() {
                match conns.get(&t.destination) {
                    Some(c) => {
                        let len = t.contents.len();
                        let full = c.queued.load(Ordering::Relaxed) + len > TCP_QUEUE_BYTES;
                        if full || c.to_client.try_send(t.contents).is_err() {
                            tracing::debug!(client = %t.destination, "TCP client not reading: message dropped");
                        } else {
                            c.queued.fetch_add(len, Ordering::Relaxed);
                        }
                    }
                    None => {
                        tracing::debug!(client = %t.destination, "no TCP connection for a message")
                    }
                }
            }
            if !busy {
                break;
            }
        }
        let deadline = driver.machine.poll_timeout();
        let input = {
            // A readable socket; the driver's burst reads it below.
            let recv = readable(&driver.sockets, driver.next_socket);
            let sleep = sleep_until(deadline);
            let accept = async {
                match &tcp {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = recv => Input::Udp(r),
                m = from_conn.recv() => Input::Stream(m),
                a = accept => Input::Accept(a),
                _ = sleep => Input::Timer,
                _ = sweep.tick() => Input::Sweep,
            }
        };
        match input {
            Input::Udp(Ok(i)) => {
                driver.next_socket = (i + 1) % driver.sockets.len();
                #[cfg(target_os = "linux")]
                driver.burst_batched(i, fast).await?;
                #[cfg(not(target_os = "linux"))]
                driver.burst(i, Some(fast)).await?;
            }
            Input::Udp(Err(e)) if is_icmp_error(&e) => {}
            Input::Udp(Err(e)) => return Err(e),
            Input::Timer => driver.machine.handle_timeout(Instant::now()),
            Input::Stream(None) => {}
            Input::Stream(Some(FromConnection::Message {
                id,
                client,
                local,
                bytes,
            })) => {
                if let Some(c) = conns.get_mut(&client).filter(|c| c.id == id) {
                    c.last_message = tokio::time::Instant::now();
                    driver.machine.handle_stream(
                        Instant::now(),
                        Receive {
                            source: client,
                            destination: local,
                            contents: &bytes,
                        },
                    );
                }
            }
            Input::Stream(Some(FromConnection::Closed { id, client })) => {
                if conns.get(&client).is_some_and(|c| c.id == id) {
                    conns.remove(&client);
                    driver.machine.stream_closed(client);
                    tracing::debug!(%client, "TCP connection closed");
                }
            }
            Input::Accept(Ok((stream, client))) => {
                if conns.len() >= MAX_TCP_CONNECTIONS {
                    tracing::warn!(%client, "too many TCP connections: refused");
                    continue;
                }
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                next_id += 1;
                let (to_client, rx) = mpsc::channel(TCP_QUEUE);
                let queued = Arc::new(AtomicUsize::new(0));
                if let Some(old) = conns.insert(
                    client,
                    Connection {
                        id: next_id,
                        to_client,
                        queued: queued.clone(),
                        last_message: tokio::time::Instant::now(),
                    },
                ) {
                    // The same address again: the old connection is gone.
                    drop(old);
                    driver.machine.stream_closed(client);
                }
                tracing::debug!(%client, %local, "TCP connection");
                tokio::spawn(connection(
                    stream,
                    next_id,
                    client,
                    local,
                    from_conn_tx.clone(),
                    rx,
                    queued,
                ));
            }
            Input::Accept(Err(e)) => {
                // Out of file descriptors, say: wait a little, keep serving.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Input::Sweep => {
                let now = tokio::time::Instant::now();
                let server = &driver.machine;
                conns.retain(|&client, c| {
                    let keep = server.has_allocation(Transport::Tcp, client)
                        || now.duration_since(c.last_message) < idle;
                    if !keep {
                        tracing::debug!(%client, "idle TCP connection without allocation closed");
                    }
                    keep
                });
            }
        }
    }
}

/// Binds one shard's listening sockets, for a server run on several
/// threads: UDP and (with `tcp`) TCP on `listen`, both with `SO_REUSEPORT`,
/// so that the kernel spreads clients across the shards by their addresses.
/// A client's 5-tuple always reaches the same shard, whose [`turn::Server`]
/// holds its allocation (and issued its nonces), and whose relay sockets
/// are the ones its peers send to: the shards share nothing. On Linux the
/// kernel is told to pick the shard by the client's IP address alone (a
/// classic BPF program, [`steer_by_source_ip`]), so that one host's
/// sockets share a shard: a RESERVATION-TOKEN (RFC 8656 §7.2, "a
/// server-wide reservation") is redeemed by the RTCP socket of the client
/// whose RTP allocation got it, on the shard that holds the reserved port.
/// Call it from within the shard's tokio runtime, shard 0 first.
pub fn bind_shard(
    listen: SocketAddr,
    tcp: bool,
    shards: u32,
) -> io::Result<(UdpSocket, Option<TcpListener>)> {
    let domain = socket2::Domain::for_address(listen);
    let udp = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    udp.set_reuse_port(true)?;
    udp.set_nonblocking(true)?;
    udp.bind(&listen.into()).map_err(|e| {
        io::Error::new(e.kind(), format!("cannot bind UDP socket on {listen}: {e}"))
    })?;
    steer_by_source_ip(&udp, shards);
    let udp = UdpSocket::from_std(udp.into())?;
    let tcp = if tcp {
        let t = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        t.set_reuse_port(true)?;
        t.set_nonblocking(true)?;
        t.bind(&listen.into())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on TCP {listen}: {e}")))?;
        // (No SO_REUSEADDR: beside SO_REUSEPORT it makes the second
        // shard's listen fail with EADDRINUSE.)
        t.listen(1024)?;
        // Once listening: that is when a TCP socket joins its group.
        steer_by_source_ip(&t, shards);
        Some(TcpListener::from_std(t.into())?)
    } else {
        None
    };
    Ok((udp, tcp))
}

/// Tells the kernel to give a datagram or connection to the socket of its
/// `SO_REUSEPORT` group whose index is the client's IP address modulo
/// `shards` (the last 32 bits of an IPv6 one): a classic BPF program
/// (`SO_ATTACH_REUSEPORT_CBPF`) reading the IP header before the transport
/// payload it is given. Logged and left to the kernel's 4-tuple hash if
/// refused.
#[cfg(target_os = "linux")]
pub fn steer_by_source_ip(socket: &impl std::os::fd::AsFd, shards: u32) {
    use nix::libc::{sock_filter, sock_fprog};
    use nix::sys::socket::{setsockopt, sockopt};
    if shards < 2 {
        return;
    }
    // SKF_NET_OFF: offsets from the network header.
    const NET: i32 = -0x0010_0000;
    let at = |off: i32| NET.wrapping_add(off) as u32;
    let op = |code: u16, jt: u8, jf: u8, k: u32| sock_filter { code, jt, jf, k };
    let mut program = [
        op(0x30, 0, 0, at(0)),  // ldb [net + 0]: version and IHL
        op(0x74, 0, 0, 4),      // rsh #4: the version
        op(0x15, 0, 2, 6),      // jeq #6: IPv6 at 3, IPv4 at 5
        op(0x20, 0, 0, at(20)), // ld [net + 20]: last 32 bits of the IPv6 source
        op(0x05, 0, 0, 1),      // ja 6
        op(0x20, 0, 0, at(12)), // ld [net + 12]: the IPv4 source
        op(0x94, 0, 0, shards), // mod #shards
        op(0x16, 0, 0, 0),      // ret a: the socket's index in the group
    ];
    let fprog = sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    if let Err(e) = setsockopt(socket, sockopt::AttachReusePortCbpf, &fprog) {
        tracing::warn!(error = %e, "clients not steered by IP address: RESERVATION-TOKEN may reach another thread");
    }
}

/// Elsewhere the kernel's own hash spreads clients (see the Linux one).
#[cfg(not(target_os = "linux"))]
pub fn steer_by_source_ip<S>(_: &S, _: u32) {}

/// One TCP connection: messages in, to the owner; queued messages out.
async fn connection(
    stream: TcpStream,
    id: u64,
    client: SocketAddr,
    local: SocketAddr,
    to_owner: mpsc::Sender<FromConnection>,
    mut to_client: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut framer = turn::Framer::new();
    let mut buf = vec![0u8; TCP_READ];
    'run: loop {
        tokio::select! {
            r = rd.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => break 'run,
                    Ok(n) => n,
                };
                if let Err(e) = framer.push(&buf[..n]) {
                    tracing::debug!(%client, error = %e, "TCP stream refused");
                    break 'run;
                }
                loop {
                    match framer.next_message() {
                        Ok(Some(m)) => {
                            let bytes = m.to_vec();
                            let msg = FromConnection::Message { id, client, local, bytes };
                            if to_owner.send(msg).await.is_err() {
                                break 'run;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::debug!(%client, error = %e, "not a TURN stream: closed");
                            break 'run;
                        }
                    }
                }
            }
            m = to_client.recv() => match m {
                Some(bytes) => {
                    let written = wr.write_all(&bytes).await;
                    queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                    if written.is_err() {
                        break 'run;
                    }
                }
                // The owner closed this connection.
                None => break 'run,
            },
        }
    }
    let _ = wr.shutdown().await;
    let _ = to_owner.send(FromConnection::Closed { id, client }).await;
}

impl Driver<turn::Server> {
    /// Binds a relay socket on `a`; false (logged) if the port is taken or
    /// no descriptor is left.
    fn add_relay(&mut self, a: SocketAddr) -> bool {
        let bound = std::net::UdpSocket::bind(a).and_then(|s| {
            s.set_nonblocking(true)?;
            UdpSocket::from_std(s)
        });
        match bound {
            Ok(s) => {
                self.index.insert(a, self.sockets.len());
                self.sockets.push((a, s));
                self.pktinfo.push(false);
                true
            }
            Err(e) => {
                tracing::debug!(relay = %a, error = %e, "relay socket not bound");
                false
            }
        }
    }

    /// Closes the relay socket on `a`.
    fn remove_relay(&mut self, a: SocketAddr) {
        // Never the listening socket (index 0), which the server never
        // names here.
        let Some(&i) = self
            .index
            .get(&a)
            .filter(|&&i| i > 0 && i < self.sockets.len())
        else {
            return;
        };
        self.index.remove(&a);
        self.sockets.swap_remove(i);
        self.pktinfo.swap_remove(i);
        if let Some((moved, _)) = self.sockets.get(i) {
            self.index.insert(*moved, i);
        }
        self.next_socket = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use tokio::io::AsyncReadExt;

    /// A server on 127.0.0.1 (one relay in a pool), its UDP and TCP
    /// addresses.
    async fn start(idle: Duration) -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let listen = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(listen).await.unwrap();
        let relay = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut config = turn::server::Config::new(listen, vec![relay.local_addr().unwrap()], "t");
        config.users.push(("u".into(), "p".into()));
        let server =
            turn::Server::new(config, Instant::now(), rand::rngs::StdRng::seed_from_u64(1));
        tokio::spawn(serve_with_idle(server, vec![udp, relay], Some(tcp), idle));
        listen
    }

    /// A Binding request over TCP is answered on the connection.
    #[tokio::test]
    async fn binding_over_tcp() {
        let listen = start(TCP_IDLE).await;
        let mut c = TcpStream::connect(listen).await.unwrap();
        let mut req = Vec::new();
        crate::stun::MessageEncoder::new(
            &mut req,
            crate::stun::MessageType::BINDING_REQUEST,
            crate::stun::TransactionId([5; 12]),
        )
        .finish()
        .unwrap();
        // Split in two writes: the framer joins them.
        c.write_all(&req[..7]).await.unwrap();
        c.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.write_all(&req[7..]).await.unwrap();
        let mut answer = [0u8; 32];
        c.read_exact(&mut answer).await.unwrap();
        let m = crate::stun::Message::parse(&answer).unwrap();
        assert_eq!(m.class(), crate::stun::Class::Success);
        assert_eq!(m.transaction_id(), crate::stun::TransactionId([5; 12]));
    }

    /// A slow-loris (a 64 KiB ChannelData announced, 100 bytes sent, no
    /// allocation) is closed once idle; bytes that are not TURN close the
    /// connection at once.
    #[tokio::test]
    async fn idle_and_non_turn_connections_are_closed() {
        let idle = Duration::from_millis(400);
        let listen = start(idle).await;
        let mut loris = TcpStream::connect(listen).await.unwrap();
        loris.write_all(&[0x40, 0x00, 0xff, 0xff]).await.unwrap();
        loris.write_all(&[0xaa; 100]).await.unwrap();
        let t0 = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(idle * 3, loris.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t0.elapsed() >= idle, "{:?}", t0.elapsed());
        // (Not HTTP: "GE" reads as ChannelData channel 0x4745, which the
        // idle rule closes; a first byte of 0x80 or more is neither.)
        let mut not_turn = TcpStream::connect(listen).await.unwrap();
        not_turn
            .write_all(&[0x80, 0, 0, 4, 1, 2, 3, 4])
            .await
            .unwrap();
        let t1 = tokio::time::Instant::now();
        let n = tokio::time::timeout(idle * 3, not_turn.read(&mut buf))
            .await
            .expect("closed")
            .unwrap_or(0);
        assert_eq!(n, 0);
        assert!(t1.elapsed() < idle);
    }

    /// An allocation made over TCP (rtclab's TURN client's messages carried
    /// on a real connection) gets a relay socket bound on demand, and
    /// closing the connection deletes the allocation: its port can be
    /// bound again at once.
    #[tokio::test]
    async fn closing_the_connection_frees_the_allocation() {
        use crate::turn::{self, Client};
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let listen = udp.local_addr().unwrap();
        let tcp = TcpListener::bind(listen).await.unwrap();
        let mut config = turn::server::Config::new(listen, Vec::new(), "t");
        config.relay_ports = Some(turn::RelayPorts {
            ip: listen.ip(),
            min: 40000,
            max: 60000,
        });
        config.users.push(("u".into(), "p".into()));
        let server =
            turn::Server::new(config, Instant::now(), rand::rngs::StdRng::seed_from_u64(1));
        tokio::spawn(serve(server, vec![udp], Some(tcp)));

        let mut stream = TcpStream::connect(listen).await.unwrap();
        let local = stream.local_addr().unwrap();
        let mut client = Client::new(
            turn::client::Config::new(listen, "u", "p"),
            rand::rngs::StdRng::seed_from_u64(2),
        );
        client.allocate(Instant::now()).unwrap();
        let mut framer = turn::Framer::new();
        let mut buf = [0u8; 4096];
        let relayed = loop {
            while let Some(t) = client.poll_transmit() {
                stream.write_all(&t.contents).await.unwrap();
            }
            if let Some(e) = client.poll_event() {
                match e {
                    turn::client::Event::Allocated { relayed, .. } => break relayed,
                    e => panic!("{e:?}"),
                }
            }
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("an answer")
                .unwrap();
            assert!(n > 0, "the server closed the connection");
            framer.push(&buf[..n]).unwrap();
            while let Some(m) = framer.next_message().unwrap() {
                let m = m.to_vec();
                client.handle_receive(
                    Instant::now(),
                    Receive {
                        source: listen,
                        destination: local,
                        contents: &m,
                    },
                );
            }
        };
        assert!((40000..=60000).contains(&relayed.port()), "{relayed}");
        // The relay socket is the server's now.
        assert!(std::net::UdpSocket::bind(relayed).is_err());
        drop(stream);
        let mut free = false;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if std::net::UdpSocket::bind(relayed).is_ok() {
                free = true;
                break;
            }
        }
        assert!(free, "the relay socket on {relayed} was not closed");
    }
}
