//! The tokio runtime: drives any sans-IO [`Machine`] over real UDP sockets.
//!
//! This is the only place in rtclab with sockets and a clock. The loop is the
//! one of DESIGN §2:
//!
//! ```text
//! loop {
//!     send every poll_transmit()            (from the socket its `source` names)
//!     hand every poll_event() to the caller
//!     wait for the first of: a datagram on any socket → handle_receive(now, …)
//!                            the instant poll_timeout() → handle_timeout(now)
//! }
//! ```
//!
//! A machine with several local addresses (the RFC 5780 STUN server has four)
//! gets one socket per address; a [`Transmit`] whose `source` is `None` goes
//! out of the first.
//!
//! A relay (the TURN server) can skip the queue for what it forwards:
//! [`Driver::serve_with_fast_path`] hands each datagram to a [`FastPath`]
//! that writes the forwarded datagram into the driver's one buffer, sent at
//! once; no [`Transmit`] is allocated per datagram.

use std::collections::HashMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::task::Poll;
use std::time::Instant;

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

use crate::machine::{Machine, Receive, Transmit};

/// The largest datagram we read. UDP payloads can reach 65,507 bytes; WebRTC
/// traffic stays near 1,200, but a STUN server must not misread a big one.
const RECV_BUF: usize = 65_536;

/// How many waiting datagrams one wake-up reads at most (see `turn`).
const BURST: usize = 32;

/// ICMP errors (port unreachable) surface as these on some systems: not fatal.
fn is_icmp_error(e: &io::Error) -> bool {
    let ignored = matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
    );
    if ignored {
        tracing::debug!(error = %e, "UDP receive error ignored");
    }
    ignored
}

/// Drives a machine over tokio UDP sockets.
#[derive(Debug)]
pub struct Driver<M> {
    machine: M,
    sockets: Vec<(SocketAddr, UdpSocket)>,
    /// Socket index by local address (a TURN server has one per relay).
    index: HashMap<SocketAddr, usize>,
    buf: Vec<u8>,
    /// Where a fast path writes the datagram it forwards.
    out: Vec<u8>,
    next_socket: usize,
    /// Batched reads and writes for the fast path, made on first use.
    #[cfg(target_os = "linux")]
    batch: Option<Box<batch::Batch>>,
}

/// A forwarding fast path for [`Driver::serve_with_fast_path`]: it handles a
/// datagram as `handle_receive` would, but may write one datagram into the
/// buffer and return `(source, destination)` for the driver to send at once,
/// instead of queuing a [`Transmit`] (no allocation per datagram). A TURN
/// server's relay path is one: [`turn::Server::handle_relay`](crate::turn::Server::handle_relay).
pub type FastPath<M> =
    fn(&mut M, Instant, Receive<'_>, &mut Vec<u8>) -> Option<(SocketAddr, SocketAddr)>;

impl<M: Machine> Driver<M> {
    /// Binds one socket per address (port 0 picks a free port) and wraps the
    /// machine.
    pub async fn bind(machine: M, addrs: &[SocketAddr]) -> io::Result<Self> {
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a driver needs at least one local address",
            ));
        }
        let mut sockets = Vec::with_capacity(addrs.len());
        for a in addrs {
            let s = UdpSocket::bind(a).await.map_err(|e| {
                io::Error::new(e.kind(), format!("cannot bind UDP socket on {a}: {e}"))
            })?;
            sockets.push(s);
        }
        Self::from_sockets(machine, sockets)
    }

    /// As [`Driver::bind`], with `SO_REUSEPORT` on every socket: several
    /// drivers (one per thread) can then bind the same addresses, and the
    /// kernel spreads the clients across them by their address and port. For
    /// stateless machines only (a STUN Binding server), since one client's
    /// datagrams always reach the same socket but different clients reach
    /// different machines. With port 0 each call picks its own port: bind the
    /// first, then the others to its [`Driver::local_addrs`].
    pub async fn bind_reuse_port(machine: M, addrs: &[SocketAddr]) -> io::Result<Self> {
        let mut sockets = Vec::with_capacity(addrs.len());
        for a in addrs {
            let s = socket2::Socket::new(
                socket2::Domain::for_address(*a),
                socket2::Type::DGRAM,
                Some(socket2::Protocol::UDP),
            )?;
            s.set_reuse_port(true)?;
            s.set_nonblocking(true)?;
            s.bind(&(*a).into()).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot bind UDP socket on {a}: {e}"))
            })?;
            sockets.push(UdpSocket::from_std(s.into())?);
        }
        if sockets.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a driver needs at least one local address",
            ));
        }
        Self::from_sockets(machine, sockets)
    }

    /// Wraps a machine and sockets the caller already bound.
    pub fn from_sockets(machine: M, sockets: Vec<UdpSocket>) -> io::Result<Self> {
        let sockets = sockets
            .into_iter()
            .map(|s| Ok((s.local_addr()?, s)))
            .collect::<io::Result<Vec<_>>>()?;
        let index = sockets
            .iter()
            .enumerate()
            .map(|(i, (a, _))| (*a, i))
            .collect();
        Ok(Driver {
            machine,
            sockets,
            index,
            buf: vec![0; RECV_BUF],
            out: Vec::with_capacity(2048),
            next_socket: 0,
            #[cfg(target_os = "linux")]
            batch: None,
        })
    }

    /// The bound local addresses, in the order given.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(a, _)| *a).collect()
    }

    /// The machine.
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, to call its API (start a transaction, send data, …).
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// Gives the machine back.
    pub fn into_machine(self) -> M {
        self.machine
    }

    fn socket_for(&self, t: &Transmit) -> &UdpSocket {
        self.socket_from(t.source)
    }

    fn socket_from(&self, source: Option<SocketAddr>) -> &UdpSocket {
        let pick = source.and_then(|src| {
            if let Some(&i) = self.index.get(&src) {
                return Some(&self.sockets[i].1);
            }
            self.sockets
                .iter()
                .find(|(a, _)| a.ip().is_unspecified() && a.port() == src.port())
                .map(|(_, s)| s)
        });
        // `bind` and `from_sockets` never leave the list empty… unless the
        // caller gave no sockets to `from_sockets`; then the transmit is lost
        // with an error logged in `flush`.
        pick.unwrap_or(&self.sockets[0].1)
    }

    // ANCHOR: flush
    /// Sends everything the machine has queued. A send that fails (an
    /// unreachable network, say) is logged and dropped: UDP is lossy anyway,
    /// and one bad destination must not stop a server.
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.sockets.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no sockets"));
        }
        while let Some(t) = self.machine.poll_transmit() {
            let socket = self.socket_for(&t);
            let r = match socket.try_send_to(&t.contents, t.destination) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.send_to(&t.contents, t.destination).await
                }
                r => r,
            };
            if let Err(e) = r {
                tracing::warn!(destination = %t.destination, error = %e, "UDP send failed");
            }
        }
        Ok(())
    }
    // ANCHOR_END: flush

    // ANCHOR: turn
    /// Waits for one input (a datagram or the machine's timer) and feeds it.
    async fn turn(&mut self) -> io::Result<()> {
        self.turn_with(None).await
    }

    /// [`Driver::turn`], handing datagrams to `fast` when given.
    async fn turn_with(&mut self, fast: Option<FastPath<M>>) -> io::Result<()> {
        let deadline = self.machine.poll_timeout();
        let sockets = &self.sockets;
        let buf = &mut self.buf;
        let start = self.next_socket;
        let recv = poll_fn(|cx| {
            // Poll the sockets round-robin so that none starves.
            for k in 0..sockets.len() {
                let i = (start + k) % sockets.len();
                let mut rb = ReadBuf::new(buf);
                match sockets[i].1.poll_recv_from(cx, &mut rb) {
                    Poll::Ready(Ok(from)) => return Poll::Ready(Ok((i, rb.filled().len(), from))),
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        });
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            r = recv => match r {
                Ok((i, len, from)) => {
                    self.next_socket = (i + 1) % self.sockets.len();
                    self.deliver(i, len, from, fast).await;
                    Some(i)
                }
                Err(e) if is_icmp_error(&e) => None,
                Err(e) => return Err(e),
            },
            _ = sleep => {
                self.machine.handle_timeout(Instant::now());
                None
            }
        };
        // Under load more datagrams are usually waiting on the same socket:
        // take a few without going back through the select (a server's fast
        // path), answering each before reading the next.
        #[cfg(target_os = "linux")]
        if let (Some(i), Some(fast)) = (received, fast) {
            return self.burst_batched(i, fast).await;
        }
        if let Some(i) = received {
            for _ in 0..BURST {
                self.flush().await?;
                match self.sockets[i].1.try_recv_from(&mut self.buf) {
                    Ok((len, from)) => self.deliver(i, len, from, fast).await,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if is_icmp_error(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The fast path's burst on Linux: `recvmmsg` takes up to
    /// [`batch::N`] waiting datagrams in one call, the fast path handles
    /// them, and what it forwards leaves in one `sendmmsg` per source
    /// socket: two system calls per batch instead of two per datagram.
    #[cfg(target_os = "linux")]
    async fn burst_batched(&mut self, i: usize, fast: FastPath<M>) -> io::Result<()> {
        use tokio::io::Interest;
        let mut b = self
            .batch
            .take()
            .unwrap_or_else(|| Box::new(batch::Batch::new()));
        let destination = self.sockets[i].0;
        let mut result = Ok(());
        for _ in 0..BURST {
            if let Err(e) = self.flush().await {
                result = Err(e);
                break;
            }
            let socket = &self.sockets[i].1;
            let n = match socket.try_io(Interest::READABLE, || b.recv(socket)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_icmp_error(&e) => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let now = Instant::now();
            b.clear_out();
            for k in 0..n {
                let Some((source, contents)) = b.datagram(k) else {
                    continue;
                };
                let d = Receive {
                    source,
                    destination,
                    contents,
                };
                if let Some((from, to)) = fast(&mut self.machine, now, d, &mut self.out) {
                    let s = self.index.get(&from).copied().unwrap_or(0);
                    b.push_out(s, to, &self.out);
                }
            }
            self.send_batch(&mut b).await;
            if n < batch::N {
                break;
            }
        }
        self.batch = Some(b);
        result
    }

    /// Sends what a batch queued, one `sendmmsg` per run of one source
    /// socket; if a socket's buffer is full, the rest go one by one.
    #[cfg(target_os = "linux")]
    async fn send_batch(&mut self, b: &mut batch::Batch) {
        use tokio::io::Interest;
        let mut start = 0;
        while let Some(run) = b.run_from(start) {
            let (sock, end) = run;
            let socket = &self.sockets[sock].1;
            let sent = socket
                .try_io(Interest::WRITABLE, || b.send(socket, start, end))
                .unwrap_or(0);
            for k in start + sent..end {
                let (to, bytes) = b.out(k);
                if let Err(e) = socket.send_to(bytes, to).await {
                    tracing::warn!(destination = %to, error = %e, "UDP send failed");
                }
            }
            start = end;
        }
    }

    async fn deliver(
        &mut self,
        socket: usize,
        len: usize,
        from: SocketAddr,
        fast: Option<FastPath<M>>,
    ) {
        let destination = self.sockets[socket].0;
        let d = Receive {
            source: from,
            destination,
            contents: &self.buf[..len],
        };
        let Some(fast) = fast else {
            self.machine.handle_receive(Instant::now(), d);
            return;
        };
        let Some((source, to)) = fast(&mut self.machine, Instant::now(), d, &mut self.out) else {
            return;
        };
        let s = self.socket_from(Some(source));
        let r = match s.try_send_to(&self.out, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => s.send_to(&self.out, to).await,
            r => r,
        };
        if let Err(e) = r {
            tracing::warn!(destination = %to, error = %e, "UDP send failed");
        }
    }
    // ANCHOR_END: turn

    // ANCHOR: run_loop
    /// Runs until the machine emits an event, and returns it.
    pub async fn next_event(&mut self) -> io::Result<M::Event> {
        loop {
            self.flush().await?;
            if let Some(e) = self.machine.poll_event() {
                return Ok(e);
            }
            self.turn().await?;
        }
    }

    /// Runs until `on_event` breaks, handing it every event. With a machine
    /// that has no events (a server), this runs until an I/O error.
    pub async fn run<B>(
        &mut self,
        mut on_event: impl FnMut(&mut M, M::Event) -> ControlFlow<B>,
    ) -> io::Result<B> {
        loop {
            self.flush().await?;
            while let Some(e) = self.machine.poll_event() {
                if let ControlFlow::Break(b) = on_event(&mut self.machine, e) {
                    self.flush().await?;
                    return Ok(b);
                }
            }
            self.turn().await?;
        }
    }

    /// Runs until an I/O error, dropping events: for servers, whose machines
    /// have none worth reporting.
    pub async fn serve(&mut self) -> io::Result<()> {
        self.run(|_, _| ControlFlow::<()>::Continue(())).await
    }

    /// As [`Driver::serve`], with every datagram handed to `fast` (on Linux
    /// in batches: `recvmmsg` and `sendmmsg`): what it
    /// forwards is sent at once from the driver's buffer, what it queues is
    /// sent as usual. For a relay (the TURN server), whose forwarding is the
    /// hot path.
    pub async fn serve_with_fast_path(&mut self, fast: FastPath<M>) -> io::Result<()> {
        loop {
            self.flush().await?;
            while self.machine.poll_event().is_some() {}
            self.turn_with(Some(fast)).await?;
        }
    }
    // ANCHOR_END: run_loop
}

/// Batched datagram I/O for the fast path (Linux `recvmmsg(2)` and
/// `sendmmsg(2)`, through `nix`: rtclab has no `unsafe`).
#[cfg(target_os = "linux")]
pub(crate) mod batch {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::SocketAddr;
    use std::ops::Range;
    use std::os::fd::AsRawFd;

    use nix::sys::socket::{self, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};

    /// Most datagrams per system call.
    pub const N: usize = 32;
    /// One slot per datagram, as large as the largest UDP payload.
    const SLOT: usize = super::RECV_BUF;

    /// Receive slots, and the datagrams to send (concatenated). The
    /// `mmsghdr` arrays are made per call: they hold raw pointers, and a
    /// driver must stay `Send`.
    pub struct Batch {
        bufs: Vec<u8>,
        lens: [usize; N],
        from: [Option<SocketAddr>; N],
        out: Vec<u8>,
        /// (source socket, destination, bytes in `out`).
        outs: Vec<(usize, SocketAddr, Range<usize>)>,
    }

    impl std::fmt::Debug for Batch {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Batch")
                .field("queued", &self.outs.len())
                .finish()
        }
    }

    fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }

    impl Batch {
        pub fn new() -> Batch {
            Batch {
                bufs: vec![0; N * SLOT],
                lens: [0; N],
                from: [None; N],
                out: Vec::with_capacity(N * 2048),
                outs: Vec::with_capacity(N),
            }
        }

        /// Takes up to [`N`] waiting datagrams without blocking
        /// (`WouldBlock` when there are none).
        pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .bufs
                .chunks_mut(SLOT)
                .map(|c| [IoSliceMut::new(c)])
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(N, None);
            let got = socket::recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(io::Error::from)?;
            let mut n = 0;
            for m in got {
                self.lens[n] = m.bytes.min(SLOT);
                self.from[n] = m.address.as_ref().and_then(std_addr);
                n += 1;
            }
            Ok(n)
        }

        /// The k-th datagram of the last [`Batch::recv`] and its source.
        pub fn datagram(&self, k: usize) -> Option<(SocketAddr, &[u8])> {
            let from = (*self.from.get(k)?)?;
            let start = k * SLOT;
            Some((from, self.bufs.get(start..start + self.lens[k])?))
        }

        pub fn clear_out(&mut self) {
            self.out.clear();
            self.outs.clear();
        }

        /// Queues `bytes` to `to` from socket `sock`.
        pub fn push_out(&mut self, sock: usize, to: SocketAddr, bytes: &[u8]) {
            let start = self.out.len();
            self.out.extend_from_slice(bytes);
            self.outs.push((sock, to, start..self.out.len()));
        }

        /// From queued datagram `start`, the run sharing its source socket:
        /// (socket, end of the run).
        pub fn run_from(&self, start: usize) -> Option<(usize, usize)> {
            let (sock, ..) = self.outs.get(start)?;
            let len = self.outs[start..]
                .iter()
                .take_while(|(s, ..)| s == sock)
                .count();
            Some((*sock, start + len))
        }

        /// The k-th queued datagram.
        pub fn out(&self, k: usize) -> (SocketAddr, &[u8]) {
            let (_, to, r) = &self.outs[k];
            (*to, &self.out[r.clone()])
        }

        /// Sends queued datagrams `start..end` (one source socket) in one
        /// call; how many the kernel took (all of them when it succeeds: a
        /// short count is not reported through `nix`, and UDP drops on a
        /// full buffer anyway).
        pub fn send(
            &mut self,
            socket: &impl AsRawFd,
            start: usize,
            end: usize,
        ) -> io::Result<usize> {
            let mut sent = 0;
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(N, None);
            for chunk_start in (start..end).step_by(N) {
                let chunk_end = (chunk_start + N).min(end);
                let slices: Vec<[IoSlice<'_>; 1]> = (chunk_start..chunk_end)
                    .map(|k| [IoSlice::new(&self.out[self.outs[k].2.clone()])])
                    .collect();
                let addrs: Vec<Option<SockaddrStorage>> = (chunk_start..chunk_end)
                    .map(|k| Some(SockaddrStorage::from(self.outs[k].1)))
                    .collect();
                let none: [ControlMessage<'_>; 0] = [];
                match socket::sendmmsg(
                    socket.as_raw_fd(),
                    &mut headers,
                    &slices,
                    &addrs,
                    none,
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    Ok(_) => sent = chunk_end - start,
                    Err(e) if sent > 0 => {
                        tracing::debug!(error = %e, "sendmmsg stopped part way");
                        return Ok(sent);
                    }
                    Err(e) => return Err(io::Error::from(e)),
                }
            }
            Ok(sent)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Echo;

    /// Echo's fast path: every datagram back to its source, from the
    /// address it arrived on.
    fn echo_fast(
        _m: &mut Echo,
        _now: Instant,
        d: Receive<'_>,
        out: &mut Vec<u8>,
    ) -> Option<(SocketAddr, SocketAddr)> {
        out.clear();
        out.extend_from_slice(d.contents);
        Some((d.destination, d.source))
    }

    /// Windows of datagrams through the fast path (batched on Linux) come
    /// back complete and in order.
    #[tokio::test]
    async fn fast_path_forwards_bursts_in_order() {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut d = Driver::bind(Echo::default(), &[loopback]).await.unwrap();
        let server = d.local_addrs()[0];
        let task = tokio::spawn(async move { d.serve_with_fast_path(echo_fast).await });
        let client = UdpSocket::bind(loopback).await.unwrap();
        let mut buf = [0u8; 64];
        let mut next = 0u32;
        for _ in 0..8 {
            for k in 0..64u32 {
                client
                    .send_to(&(next + k).to_be_bytes(), server)
                    .await
                    .unwrap();
            }
            for k in 0..64u32 {
                let (n, from) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    client.recv_from(&mut buf),
                )
                .await
                .expect("echo in time")
                .unwrap();
                assert_eq!(from, server);
                assert_eq!(&buf[..n], &(next + k).to_be_bytes());
            }
            next += 64;
        }
        task.abort();
    }
}
