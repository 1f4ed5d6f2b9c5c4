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
//! What runs on it here: [`LivePeer`] ([`live`]: a `PeerConnection` on one
//! UDP socket, with its host candidates from [`interfaces`], the OS's
//! addresses) and the TURN server ([`turn_server`]).
//!
//! A machine with several local addresses (the RFC 5780 STUN server has four)
//! gets one socket per address; a [`Transmit`] whose `source` is `None` goes
//! out of the first.
//!
//! A socket bound to a wildcard address (`0.0.0.0:P`, `[::]:P`) receives on
//! every address of the host. On Linux the driver asks the kernel which one
//! each datagram was sent to (`IP_PKTINFO`, `IPV6_RECVPKTINFO`: RFC 3542
//! §6), hands it to the machine as [`Receive::destination`], and sends a
//! [`Transmit`] from the address its `source` names (the same ancillary
//! data on `sendmsg`). Without this the kernel picks the source of a reply
//! by its route, and on a host with several addresses a client behind a NAT
//! drops an answer that comes from an address it did not ask. A STUN answer
//! must leave from the address the request went to (RFC 8489 §6.3.1.2; an
//! ICE agent checks it, RFC 8445 §7.2.5.2.1), and a TURN allocation is
//! known by its 5-tuple, whose server address is the one the client sent to
//! (RFC 8656 §2).
//!
//! Every machine's datagrams go out and come in in batches (Linux): the
//! driver drains `poll_transmit_into` into one reused buffer and hands each
//! run of same-size datagrams to one destination to the kernel in one
//! `sendmsg` with UDP generic segmentation offload (`UDP_SEGMENT`: the
//! kernel cuts it into datagrams, walking its stack once per run), and reads
//! with UDP generic receive offload (`UDP_GRO`: the kernel hands over a run
//! of datagrams of one flow in one read, with their size; on loopback a
//! GSO run arrives whole). A kernel or interface that refuses GSO is
//! remembered and the datagrams go one by one. Socket buffers are asked to
//! be [`SOCKET_BUFFER`] each way.
//!
//! Memory: an idle driver holds no datagram buffers. The 64 KiB receive
//! buffer is made when a wake-up reads and released after one that read a
//! single datagram; the send buffer after a flush of one datagram or none.
//! A busy socket keeps them until nothing moved for 100 ms.
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

use tokio::io::Interest;
use tokio::net::UdpSocket;

#[cfg(doc)]
use crate::machine::Transmit;
use crate::machine::{Machine, Receive, TransmitMeta};

/// The largest datagram we read. UDP payloads can reach 65,507 bytes; WebRTC
/// traffic stays near 1,200, but a STUN server must not misread a big one.
/// With GRO one read also brings up to this many bytes of a run of datagrams.
const RECV_BUF: usize = 65_536;

/// The socket buffer size asked of the kernel each way (`SO_RCVBUF`,
/// `SO_SNDBUF`): a data channel's burst (a congestion window of
/// 1,200-byte datagrams, a GSO run of 64 KiB at a time) must not overflow
/// them. Linux caps the request at `net.core.rmem_max`/`wmem_max` (often
/// 208 KiB by default) without an error; what the kernel grants is used
/// as it is. It is kernel memory, used only while datagrams wait.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` was 64
/// before Linux 6.x).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most bytes in one GSO send: one UDP payload (65,507 bytes over IPv4),
/// with room to spare.
const GSO_MAX_BYTES: usize = 65_000;

/// A send buffer larger than this is released after a quiet flush.
const TX_IDLE_CAPACITY: usize = 2048;

/// Buffers kept after a busy wake-up are released when no datagram came
/// for this long (a video stream's frames come closer together).
const BUFFER_IDLE: std::time::Duration = std::time::Duration::from_millis(100);

/// A run of datagrams gathered for one send: same addresses, every one
/// `segment` bytes but the last, which may be shorter (then the run is
/// closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    meta: TransmitMeta,
    segment: usize,
    count: usize,
    closed: bool,
}

/// How many waiting datagrams one wake-up reads at most (see `turn`).
const BURST: usize = 32;

/// With GRO one read brings up to 64 datagrams: the general loop stops
/// reading after this many, so that a machine's events (bounded queues, a
/// data-channel message per datagram or more) reach the caller between
/// bursts.
const BURST_DATAGRAMS: usize = 64;

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

/// The index of a readable socket among `sockets`, polled round-robin
/// from `start` so that none starves.
fn readable(
    sockets: &[(SocketAddr, UdpSocket)],
    start: usize,
) -> impl std::future::Future<Output = io::Result<usize>> + '_ {
    poll_fn(move |cx| {
        for k in 0..sockets.len() {
            let i = (start + k) % sockets.len();
            match sockets[i].1.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(i)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        Poll::Pending
    })
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => std::future::pending().await,
    }
}

/// Reads one waiting datagram without blocking: (length, source, the local
/// address it was sent to, the GRO segment size or 0 for one datagram).
/// `msg`: the socket has packet information or GRO on (`recvmsg` with
/// ancillary data).
fn recv_one(
    socket: &UdpSocket,
    bound: SocketAddr,
    msg: bool,
    buf: &mut [u8],
    cmsg: &mut [u8],
) -> io::Result<(usize, SocketAddr, SocketAddr, usize)> {
    #[cfg(target_os = "linux")]
    if msg {
        return batch::recv_msg(socket, bound, buf, cmsg);
    }
    let _ = (msg, cmsg);
    let (len, from) = socket.try_recv_from(buf)?;
    Ok((len, from, bound, 0))
}

/// Asks for [`SOCKET_BUFFER`] bytes of socket buffer each way, where the
/// socket has less; quietly keeps what the kernel grants (it caps the
/// request at its maximum).
fn size_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    if s.recv_buffer_size().is_ok_and(|n| n < SOCKET_BUFFER) {
        let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    }
    if s.send_buffer_size().is_ok_and(|n| n < SOCKET_BUFFER) {
        let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    }
}

/// Drives a machine over tokio UDP sockets.
#[derive(Debug)]
pub struct Driver<M> {
    machine: M,
    sockets: Vec<(SocketAddr, UdpSocket)>,
    /// Per socket: bound to a wildcard address with packet information on
    /// (Linux), so that datagrams carry their real local address.
    pktinfo: Vec<bool>,
    /// Per socket: UDP GRO is on (Linux; turned on by the first read of
    /// the general loop, never for a fast path's batches).
    gro: Vec<bool>,
    /// The ancillary data buffer of one `recvmsg` (packet information,
    /// GRO segment size).
    cmsg: Vec<u8>,
    /// Socket index by local address (a TURN server has one per relay).
    index: HashMap<SocketAddr, usize>,
    /// The receive buffer, [`RECV_BUF`] bytes while reading, empty when
    /// idle (see the module doc).
    buf: Vec<u8>,
    /// Where a fast path writes the datagram it forwards.
    out: Vec<u8>,
    /// Datagrams drained from the machine and not sent yet: `run`, then
    /// `next` (kept here, not in `flush`'s locals, so that a cancelled
    /// flush loses nothing).
    tx: Vec<u8>,
    run: Option<Run>,
    /// A datagram after `run` that does not join it: addresses, length.
    next: Option<(TransmitMeta, usize)>,
    /// GSO may be tried (false once the kernel refused it).
    gso: bool,
    /// When a burst last read or a flush last sent several datagrams (the
    /// buffers are kept until [`BUFFER_IDLE`] after).
    last_busy: Option<Instant>,
    next_socket: usize,
    /// Batched reads and writes for the fast path, made on first use.
    #[cfg(target_os = "linux")]
    batch: Option<Box<batch::Batch>>,
    /// Datagrams of the general loop that share no GSO run with their
    /// neighbours (a forwarder's, one per receiver), gathered to leave in
    /// one `sendmmsg`; made on first use.
    #[cfg(target_os = "linux")]
    singles: Option<Box<batch::Batch>>,
    /// The packet capture, if one is set ([`Driver::set_capture`]).
    capture: Option<Box<CaptureTap<M>>>,
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

    /// Wraps a machine and sockets the caller already bound. A socket bound
    /// to a wildcard address gets packet information turned on (Linux; see
    /// the module's doc).
    pub fn from_sockets(machine: M, sockets: Vec<UdpSocket>) -> io::Result<Self> {
        let sockets = sockets
            .into_iter()
            .map(|s| Ok((s.local_addr()?, s)))
            .collect::<io::Result<Vec<_>>>()?;
        let pktinfo = sockets
            .iter()
            .map(|(a, s)| a.ip().is_unspecified() && pktinfo::enable(s, *a))
            .collect();
        for (_, s) in &sockets {
            size_buffers(s);
        }
        let pktinfo_len = sockets.len();
        let index = sockets
            .iter()
            .enumerate()
            .map(|(i, (a, _))| (*a, i))
            .collect();
        Ok(Driver {
            machine,
            sockets,
            pktinfo,
            gro: vec![false; pktinfo_len],
            cmsg: Vec::new(),
            index,
            buf: Vec::new(),
            out: Vec::new(),
            tx: Vec::new(),
            run: None,
            next: None,
            gso: cfg!(target_os = "linux"),
            last_busy: None,
            next_socket: 0,
            #[cfg(target_os = "linux")]
            batch: None,
            #[cfg(target_os = "linux")]
            singles: None,
            capture: None,
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

    /// The socket to send from `source`: the one bound to it, else a
    /// wildcard one on its port (of its family first), else the first.
    fn socket_index(&self, source: Option<SocketAddr>) -> usize {
        let pick = source.and_then(|src| {
            if let Some(&i) = self.index.get(&src) {
                return Some(i);
            }
            let wildcard = |same_family: bool| {
                self.sockets.iter().position(|(a, _)| {
                    a.ip().is_unspecified()
                        && a.port() == src.port()
                        && (!same_family || a.is_ipv4() == src.is_ipv4())
                })
            };
            wildcard(true).or_else(|| wildcard(false))
        });
        // `bind` and `from_sockets` never leave the list empty… unless the
        // caller gave no sockets to `from_sockets`; then the transmit is lost
        // with an error logged in `flush`.
        pick.unwrap_or(0)
    }

    /// The source address to put in a datagram's packet information: only
    /// on a wildcard socket with packet information, for a specific address.
    fn pktinfo_source(&self, socket: usize, source: Option<SocketAddr>) -> Option<SocketAddr> {
        source.filter(|s| self.pktinfo[socket] && !s.ip().is_unspecified())
    }

    // ANCHOR: flush
    /// Sends one datagram from the socket `source` picks, and from the
    /// address `source` names when that socket is a wildcard one.
    async fn send_from(
        &self,
        source: Option<SocketAddr>,
        bytes: &[u8],
        to: SocketAddr,
    ) -> io::Result<usize> {
        let i = self.socket_index(source);
        let (bound, socket) = &self.sockets[i];
        if let Some(info) = self
            .pktinfo_source(i, source)
            .and_then(|s| pktinfo::Info::new(s, bound.is_ipv6()))
        {
            let send = || pktinfo::send(socket, bytes, to, &info);
            return match socket.try_io(Interest::WRITABLE, send) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    socket.async_io(Interest::WRITABLE, send).await
                }
                r => r,
            };
        }
        match socket.try_send_to(bytes, to) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(bytes, to).await,
            r => r,
        }
    }

    /// Sends everything the machine has queued. A send that fails (an
    /// unreachable network, say) is logged and dropped: UDP is lossy anyway,
    /// and one bad destination must not stop a server.
    ///
    /// The datagrams come through [`Machine::poll_transmit_into`] into one
    /// reused buffer; each run of same-size datagrams to one destination
    /// (the last may be shorter) leaves in one GSO send (see the module
    /// doc). Cancel-safe: what was drained and not yet sent stays for the
    /// next call (a run cut short while going out one by one may then send
    /// its first datagrams twice, which UDP allows).
    pub async fn flush(&mut self) -> io::Result<()> {
        if self.sockets.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no sockets"));
        }
        let mut drained = 0usize;
        loop {
            if self.next.is_some() || self.run.is_some_and(|r| r.closed) {
                self.send_run().await;
                continue;
            }
            let start = self.tx.len();
            let Some(meta) = self.machine.poll_transmit_into(&mut self.tx) else {
                break;
            };
            drained += 1;
            self.capture_sent(meta, start);
            let len = self.tx.len() - start;
            match &mut self.run {
                Some(r)
                    if self.gso
                        && r.meta == meta
                        && len <= r.segment
                        && len > 0
                        && r.count < GSO_MAX_SEGMENTS
                        && self.tx.len() <= GSO_MAX_BYTES =>
                {
                    r.count += 1;
                    r.closed = len < r.segment;
                }
                Some(_) => self.next = Some((meta, len)),
                None => {
                    self.run = Some(Run {
                        meta,
                        segment: len,
                        count: 1,
                        closed: false,
                    })
                }
            }
        }
        if self.run.is_some() {
            self.send_run().await;
        }
        self.send_singles().await;
        if drained <= 1 && self.tx.capacity() > TX_IDLE_CAPACITY {
            self.tx = Vec::new();
        } else if drained > 1 {
            self.last_busy = Some(tokio::time::Instant::now().into_std());
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
        // Wait for a readable socket; the reading happens below, into a
        // buffer made then.
        let ready = readable(&self.sockets, self.next_socket);
        let sleep = sleep_until(self.machine.poll_timeout());
        // Buffers kept after a busy wake-up go when nothing came for
        // BUFFER_IDLE: an idle driver holds none.
        let held = self.buf.capacity() > 0 || self.tx.capacity() > TX_IDLE_CAPACITY;
        let release = async {
            match self.last_busy.filter(|_| held) {
                Some(t) => tokio::time::sleep_until((t + BUFFER_IDLE).into()).await,
                None => std::future::pending().await,
            }
        };
        let i = tokio::select! {
            r = ready => match r {
                Ok(i) => i,
                Err(e) if is_icmp_error(&e) => return Ok(()),
                Err(e) => return Err(e),
            },
            _ = sleep => {
                self.machine.handle_timeout(Instant::now());
                return Ok(());
            }
            _ = release => {
                self.release_buffers();
                return Ok(());
            }
        };
        self.next_socket = (i + 1) % self.sockets.len();
        // Under load more datagrams are usually waiting on the same socket:
        // take a few without going back through the select, answering each
        // before reading the next.
        #[cfg(target_os = "linux")]
        if let Some(fast) = fast {
            return self.burst_batched(i, fast).await;
        }
        self.burst(i, fast).await
    }

    /// Reads what waits on socket `i` (at most [`BURST`] reads, each one
    /// datagram or, with GRO, a run of them), flushing between reads.
    async fn burst(&mut self, i: usize, fast: Option<FastPath<M>>) -> io::Result<()> {
        if self.buf.len() < RECV_BUF {
            self.buf = vec![0; RECV_BUF];
        }
        #[cfg(target_os = "linux")]
        if fast.is_none() && !self.gro[i] {
            self.gro[i] = batch::enable_gro(&self.sockets[i].1);
            if self.cmsg.is_empty() {
                self.cmsg = batch::cmsg_buffer();
            }
        }
        if self.pktinfo[i] && self.cmsg.is_empty() {
            self.cmsg = batch::cmsg_buffer();
        }
        let mut datagrams = 0usize;
        let mut result = Ok(());
        for _ in 0..BURST {
            let (bound, socket) = &self.sockets[i];
            let got = socket.try_io(Interest::READABLE, || {
                recv_one(
                    socket,
                    *bound,
                    self.pktinfo[i] || self.gro[i],
                    &mut self.buf,
                    &mut self.cmsg,
                )
            });
            match got {
                Ok((len, from, to, segment)) => {
                    let segment = if segment == 0 { len.max(1) } else { segment };
                    let mut off = 0;
                    while off < len {
                        let end = (off + segment).min(len);
                        self.deliver(off..end, from, to, fast).await;
                        datagrams += 1;
                        off = end;
                    }
                    if len == 0 {
                        self.deliver(0..0, from, to, fast).await;
                        datagrams += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if is_icmp_error(&e) => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
            if let Err(e) = self.flush().await {
                result = Err(e);
                break;
            }
            if datagrams >= BURST_DATAGRAMS {
                break;
            }
        }
        if datagrams <= 1 {
            // A quiet socket: an idle peer holds no receive buffer.
            self.buf = Vec::new();
        } else {
            // A busy one keeps it until BUFFER_IDLE passes without a read.
            self.last_busy = Some(tokio::time::Instant::now().into_std());
        }
        result
    }

    /// Hands `buf[range]` to the machine (or to `fast`, sending what it
    /// forwards at once).
    async fn deliver(
        &mut self,
        range: std::ops::Range<usize>,
        from: SocketAddr,
        destination: SocketAddr,
        fast: Option<FastPath<M>>,
    ) {
        let d = Receive {
            source: from,
            destination,
            contents: &self.buf[range.clone()],
        };
        let Some(fast) = fast else {
            self.machine.handle_receive(Instant::now(), d);
            self.capture_received(range, from, destination);
            return;
        };
        let Some((source, to)) = fast(&mut self.machine, Instant::now(), d, &mut self.out) else {
            return;
        };
        if let Err(e) = self.send_from(Some(source), &self.out, to).await {
            tracing::warn!(destination = %to, error = %e, "UDP send failed");
        }
    }
    // ANCHOR_END: turn

    /// Sends the gathered run (the front of `tx`), then makes `next` the
    /// run. Errors are logged and the datagrams dropped (see `flush`).
    async fn send_run(&mut self) {
        let Some(run) = self.run else {
            if let Some((meta, len)) = self.next.take() {
                self.run = Some(Run {
                    meta,
                    segment: len,
                    count: 1,
                    closed: false,
                });
            }
            return;
        };
        let end = self.tx.len() - self.next.map_or(0, |(_, len)| len);
        let to = run.meta.destination;
        if run.count > 1 && self.gso {
            // What waits to leave singly goes first: a destination's
            // datagrams keep their order.
            self.send_singles().await;
            match self.send_gso(&run, end).await {
                Ok(()) => {}
                Err(e) if batch::gso_refused(&e) => {
                    tracing::debug!(error = %e, "UDP GSO refused: sending datagrams one by one from now on");
                    self.gso = false;
                    self.send_singly(&run, end).await;
                }
                Err(e) => tracing::warn!(destination = %to, error = %e, "UDP send failed"),
            }
        } else if !self.gather_single(&run, end) {
            // Not gathered (an empty datagram; or no sendmmsg): after
            // what was, in order.
            self.send_singles().await;
            self.send_singly(&run, end).await;
        }
        if self.singles_full() {
            self.send_singles().await;
        }
        self.tx.drain(..end);
        self.run = None;
        if let Some((meta, len)) = self.next.take() {
            self.run = Some(Run {
                meta,
                segment: len,
                count: 1,
                closed: false,
            });
        }
    }

    /// Gathers a run of one datagram to leave with others in one
    /// `sendmmsg` ([`Driver::send_singles`]); false where there is no
    /// such call (the caller sends it at once).
    fn gather_single(&mut self, run: &Run, end: usize) -> bool {
        #[cfg(target_os = "linux")]
        if run.count == 1 && end > 0 {
            let i = self.socket_index(run.meta.source);
            let source = self.pktinfo_source(i, run.meta.source);
            let b = self
                .singles
                .get_or_insert_with(|| Box::new(batch::Batch::for_sending()));
            b.push_out_from(i, source, run.meta.destination, &self.tx[..end]);
            return true;
        }
        let _ = (run, end);
        false
    }

    /// Whether a `sendmmsg`'s worth of datagrams is gathered.
    fn singles_full(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self
            .singles
            .as_ref()
            .is_some_and(|b| b.queued() >= batch::N);
        #[cfg(not(target_os = "linux"))]
        false
    }

    /// Sends the gathered datagrams (one `sendmmsg` per source socket and
    /// address; one by one from where the kernel stops taking them). A
    /// flush cancelled while a full socket buffer holds this up loses
    /// what was gathered, as the full buffer would have.
    async fn send_singles(&mut self) {
        #[cfg(target_os = "linux")]
        if let Some(mut b) = self.singles.take() {
            if b.queued() > 0 {
                self.send_batch(&mut b).await;
                b.clear_out();
            }
            self.singles = Some(b);
        }
    }

    /// The run's datagrams one `sendto` (or `sendmsg`) each.
    async fn send_singly(&self, run: &Run, end: usize) {
        let to = run.meta.destination;
        if end == 0 {
            // An empty datagram is one too.
            if let Err(e) = self.send_from(run.meta.source, &[], to).await {
                tracing::warn!(destination = %to, error = %e, "UDP send failed");
            }
        }
        for d in self.tx[..end].chunks(run.segment.max(1)) {
            if let Err(e) = self.send_from(run.meta.source, d, to).await {
                tracing::warn!(destination = %to, error = %e, "UDP send failed");
            }
        }
    }

    /// The run in one GSO `sendmsg`, waiting while the socket buffer is full.
    async fn send_gso(&self, run: &Run, end: usize) -> io::Result<()> {
        let i = self.socket_index(run.meta.source);
        let (bound, socket) = &self.sockets[i];
        let info = self
            .pktinfo_source(i, run.meta.source)
            .and_then(|s| pktinfo::Info::new(s, bound.is_ipv6()));
        let bytes = &self.tx[..end];
        let segment = u16::try_from(run.segment).unwrap_or(u16::MAX);
        let send = || batch::send_gso(socket, bytes, segment, run.meta.destination, info.as_ref());
        match socket.try_io(Interest::WRITABLE, send) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                socket.async_io(Interest::WRITABLE, send).await.map(drop)
            }
            r => r.map(drop),
        }
    }

    /// Gives back the receive buffer, and the send buffer unless it holds
    /// datagrams.
    fn release_buffers(&mut self) {
        self.buf = Vec::new();
        if self.tx.is_empty() {
            self.tx = Vec::new();
        }
        self.last_busy = None;
    }

    /// The fast path's burst on Linux: `recvmmsg` takes up to
    /// [`batch::N`] waiting datagrams in one call, the fast path handles
    /// them, and what it forwards leaves in one `sendmmsg` per source
    /// socket: two system calls per batch instead of two per datagram.
    #[cfg(target_os = "linux")]
    async fn burst_batched(&mut self, i: usize, fast: FastPath<M>) -> io::Result<()> {
        let mut b = self
            .batch
            .take()
            .unwrap_or_else(|| Box::new(batch::Batch::new()));
        let bound = self.sockets[i].0;
        let info = self.pktinfo[i];
        let mut result = Ok(());
        for _ in 0..BURST {
            if let Err(e) = self.flush().await {
                result = Err(e);
                break;
            }
            let socket = &self.sockets[i].1;
            let n = match socket.try_io(Interest::READABLE, || {
                if info {
                    b.recv_pktinfo(socket, bound)
                } else {
                    b.recv(socket)
                }
            }) {
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
                    destination: b.destination(k).unwrap_or(bound),
                    contents,
                };
                if let Some((from, to)) = fast(&mut self.machine, now, d, &mut self.out) {
                    let s = self.socket_index(Some(from));
                    let src = self.pktinfo_source(s, Some(from));
                    b.push_out_from(s, src, to, &self.out);
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
    /// socket and address; if a socket's buffer is full, the rest go one by
    /// one.
    #[cfg(target_os = "linux")]
    async fn send_batch(&mut self, b: &mut batch::Batch) {
        let mut start = 0;
        while let Some(run) = b.run_from(start) {
            let (sock, end) = run;
            let (bound, socket) = &self.sockets[sock];
            let info = b
                .source(start)
                .and_then(|s| pktinfo::Info::new(s, bound.is_ipv6()));
            let sent = socket
                .try_io(Interest::WRITABLE, || {
                    b.send_with(socket, start, end, info.as_ref())
                })
                .unwrap_or(0);
            for k in start + sent..end {
                let (to, bytes) = b.out(k);
                let source = b.source(k).or(Some(*bound));
                if let Err(e) = self.send_from(source, bytes, to).await {
                    tracing::warn!(destination = %to, error = %e, "UDP send failed");
                }
            }
            start = end;
        }
    }

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

/// A driver's capture sink and the machine's hook (see
/// [`Driver::set_capture`]).
struct CaptureTap<M> {
    sink: crate::capture::Capture,
    hook: fn(&mut M, &mut crate::capture::Capture),
}

impl<M> std::fmt::Debug for CaptureTap<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sink.fmt(f)
    }
}

/// Packet capture (see [`crate::capture`]).
impl<M: Machine> Driver<M> {
    /// Captures every datagram the machine sends and receives (the general
    /// loop's; not a fast path's) into `sink`. Before each datagram is
    /// written, `hook` may hand the sink what only the machine knows: its
    /// TLS key log lines ([`Capture::key_log_line`](crate::capture::Capture::key_log_line)),
    /// its decrypted RTP ([`Capture::plaintext`](crate::capture::Capture::plaintext)).
    /// A received datagram is written after the machine handled it, so a
    /// secret it derived from it comes first.
    pub fn set_capture(
        &mut self,
        sink: crate::capture::Capture,
        hook: fn(&mut M, &mut crate::capture::Capture),
    ) {
        self.capture = Some(Box::new(CaptureTap { sink, hook }));
    }

    /// Stops capturing and gives the sink back (flush it, or drop it to
    /// flush).
    pub fn take_capture(&mut self) -> Option<crate::capture::Capture> {
        self.capture.take().map(|t| t.sink)
    }

    /// The capture being written, if any (to flush it, or to read its live
    /// ladder).
    pub fn capture_mut(&mut self) -> Option<&mut crate::capture::Capture> {
        self.capture.as_mut().map(|t| &mut t.sink)
    }

    /// The local address a datagram from `source` leaves from.
    fn local_for(&self, source: Option<SocketAddr>) -> SocketAddr {
        let bound = self.sockets.get(self.socket_index(source)).map(|(a, _)| *a);
        match (source, bound) {
            (Some(s), _) if !s.ip().is_unspecified() => s,
            (_, Some(b)) => b,
            (Some(s), None) => s,
            (None, None) => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    /// Captures the datagram drained into `tx[start..]`.
    fn capture_sent(&mut self, meta: TransmitMeta, start: usize) {
        if self.capture.is_none() {
            return;
        }
        let local = self.local_for(meta.source);
        let Some(tap) = &mut self.capture else { return };
        (tap.hook)(&mut self.machine, &mut tap.sink);
        tap.sink.datagram(
            Instant::now(),
            crate::capture::Direction::Outbound,
            local,
            meta.destination,
            &self.tx[start..],
        );
    }

    /// Captures the datagram in `buf[range]`, just handled.
    fn capture_received(
        &mut self,
        range: std::ops::Range<usize>,
        from: SocketAddr,
        local: SocketAddr,
    ) {
        let Some(tap) = &mut self.capture else { return };
        (tap.hook)(&mut self.machine, &mut tap.sink);
        let contents = self.buf.get(range).unwrap_or_default();
        tap.sink.datagram(
            Instant::now(),
            crate::capture::Direction::Inbound,
            local,
            from,
            contents,
        );
    }
}

pub mod interfaces;
pub mod live;
pub mod turn_server;

pub use live::LivePeer;

/// The local address of each datagram on a wildcard socket (Linux
/// `IP_PKTINFO`, `IPV6_RECVPKTINFO`; RFC 3542 §6 for IPv6), and the source
/// address of each reply, through `nix`'s safe `recvmsg` and `sendmsg`.
#[cfg(target_os = "linux")]
pub(crate) mod pktinfo {
    use std::io::{self, IoSlice};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
    use std::os::fd::{AsFd, AsRawFd};

    use nix::libc;
    use nix::sys::socket::{
        self, ControlMessage, ControlMessageOwned, MsgFlags, RecvMsg, SockaddrStorage, sockopt,
    };

    /// Turns packet information on for a socket bound to `bound` (a
    /// wildcard address); false, logged, if the kernel refuses (the socket
    /// then works as before, its bound address as every destination).
    pub fn enable(socket: &impl AsFd, bound: SocketAddr) -> bool {
        let r = if bound.is_ipv4() {
            socket::setsockopt(socket, sockopt::Ipv4PacketInfo, &true)
        } else {
            // On a dual-stack socket this covers IPv4 too: the kernel reports
            // an IPv4 destination as a v4-mapped IPv6 one.
            socket::setsockopt(socket, sockopt::Ipv6RecvPacketInfo, &true)
        };
        if let Err(e) = &r {
            tracing::warn!(%bound, error = %e, "no packet information on a wildcard socket: replies leave from the address the kernel picks");
        }
        r.is_ok()
    }

    /// A buffer for the ancillary data of one received datagram.
    pub fn cmsg_buffer() -> Vec<u8> {
        nix::cmsg_space!(libc::in6_pktinfo)
    }

    pub(super) fn std_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = a.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
    }

    /// The local address a received datagram was sent to: the address of
    /// its packet information with the socket's port, or `bound` without
    /// one (or with its ancillary data cut short).
    pub fn local_address(m: &RecvMsg<'_, '_, SockaddrStorage>, bound: SocketAddr) -> SocketAddr {
        let Ok(cmsgs) = m.cmsgs() else {
            return bound;
        };
        for c in cmsgs {
            match c {
                // `ipi_spec_dst`: the local address (for a broadcast,
                // `ipi_addr` is the broadcast address), the one to answer from.
                ControlMessageOwned::Ipv4PacketInfo(i) => {
                    let ip = Ipv4Addr::from(i.ipi_spec_dst.s_addr.to_ne_bytes());
                    return SocketAddr::new(IpAddr::V4(ip), bound.port());
                }
                ControlMessageOwned::Ipv6PacketInfo(i) => {
                    let ip = Ipv6Addr::from(i.ipi6_addr.s6_addr);
                    // A link-local address means nothing without its link.
                    let scope = if ip.is_unicast_link_local() {
                        i.ipi6_ifindex
                    } else {
                        0
                    };
                    return SocketAddr::V6(SocketAddrV6::new(ip, bound.port(), 0, scope));
                }
                _ => {}
            }
        }
        bound
    }

    /// The packet information that makes a datagram leave from one address.
    pub enum Info {
        V4(libc::in_pktinfo),
        V6(libc::in6_pktinfo),
    }

    impl Info {
        /// For a datagram from `source` on a socket of the given family;
        /// `None` when the socket cannot send from it (IPv6 on an IPv4 one).
        pub fn new(source: SocketAddr, v6_socket: bool) -> Option<Info> {
            let v6 = |ip: Ipv6Addr, scope: u32| {
                Info::V6(libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: scope,
                })
            };
            match (source, v6_socket) {
                (SocketAddr::V4(s), false) => Some(Info::V4(libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from_ne_bytes(s.ip().octets()),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                })),
                (SocketAddr::V4(s), true) => Some(v6(s.ip().to_ipv6_mapped(), 0)),
                (SocketAddr::V6(s), true) => Some(v6(*s.ip(), s.scope_id())),
                (SocketAddr::V6(s), false) => s
                    .ip()
                    .to_ipv4_mapped()
                    .and_then(|ip| Info::new(SocketAddr::new(IpAddr::V4(ip), s.port()), false)),
            }
        }

        pub fn cmsg(&self) -> ControlMessage<'_> {
            match self {
                Info::V4(i) => ControlMessage::Ipv4PacketInfo(i),
                Info::V6(i) => ControlMessage::Ipv6PacketInfo(i),
            }
        }

        /// Exactly the space of [`Info::cmsg`] (`sendmmsg` hands the kernel
        /// the whole buffer of each message).
        pub fn space(&self) -> Vec<u8> {
            match self {
                Info::V4(_) => nix::cmsg_space!(libc::in_pktinfo),
                Info::V6(_) => nix::cmsg_space!(libc::in6_pktinfo),
            }
        }
    }

    /// Sends one datagram without blocking, from the address of `info`.
    pub fn send(
        socket: &impl AsRawFd,
        bytes: &[u8],
        to: SocketAddr,
        info: &Info,
    ) -> io::Result<usize> {
        socket::sendmsg(
            socket.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &[info.cmsg()],
            MsgFlags::MSG_DONTWAIT,
            Some(&SockaddrStorage::from(to)),
        )
        .map_err(io::Error::from)
    }
}

/// Without packet information (not Linux), a wildcard socket's datagrams
/// carry its bound address, and replies leave from the address the kernel
/// picks.
#[cfg(not(target_os = "linux"))]
mod pktinfo {
    use std::io;
    use std::net::SocketAddr;

    pub fn enable<S>(_: &S, _: SocketAddr) -> bool {
        false
    }

    pub enum Info {}

    impl Info {
        pub fn new(_: SocketAddr, _: bool) -> Option<Info> {
            None
        }
    }

    pub fn send<S>(_: &S, _: &[u8], _: SocketAddr, info: &Info) -> io::Result<usize> {
        match *info {}
    }
}

/// Without GSO and GRO (not Linux) the driver sends and reads one datagram
/// per call.
#[cfg(not(target_os = "linux"))]
mod batch {
    use std::io;
    use std::net::SocketAddr;

    pub fn cmsg_buffer() -> Vec<u8> {
        Vec::new()
    }

    pub fn gso_refused(_: &io::Error) -> bool {
        true
    }

    pub fn send_gso<S>(
        _: &S,
        _: &[u8],
        _: u16,
        _: SocketAddr,
        _: Option<&super::pktinfo::Info>,
    ) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Batched datagram I/O, the one module for it in rtclab (through `nix`:
/// rtclab has no `unsafe`): UDP GSO sends and GRO reads for the driver's
/// general loop, `recvmmsg(2)` and `sendmmsg(2)` batches for the fast path
/// (the TURN relay), and blocking batches for the load generators of
/// `rtclab speed`.
#[cfg(target_os = "linux")]
pub(crate) mod batch {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::net::SocketAddr;
    use std::ops::Range;
    use std::os::fd::{AsFd, AsRawFd};

    use nix::libc;
    use nix::sys::socket::{
        self, ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage, sockopt,
    };

    /// Turns UDP generic receive offload on (`UDP_GRO`): one read may then
    /// bring a run of same-size datagrams of one flow, their size in the
    /// ancillary data ([`recv_msg`] splits nothing; the caller does). False,
    /// quietly, if the kernel refuses (reads then bring one datagram).
    pub fn enable_gro(socket: &impl AsFd) -> bool {
        socket::setsockopt(socket, sockopt::UdpGroSegment, &true).is_ok()
    }

    /// An ancillary data buffer for one [`recv_msg`]: packet information
    /// and the GRO segment size.
    pub fn cmsg_buffer() -> Vec<u8> {
        nix::cmsg_space!(libc::in6_pktinfo, libc::c_int)
    }

    /// Reads one datagram (or, with GRO, one run of them) without
    /// blocking: (bytes, source, the local address it was sent to — its
    /// packet information, else `bound` —, GRO segment size or 0). A
    /// datagram without a source address (none on UDP) is skipped.
    pub fn recv_msg(
        socket: &impl AsRawFd,
        bound: SocketAddr,
        buf: &mut [u8],
        cmsg: &mut [u8],
    ) -> io::Result<(usize, SocketAddr, SocketAddr, usize)> {
        loop {
            let mut iov = [IoSliceMut::new(&mut *buf)];
            let m = socket::recvmsg::<SockaddrStorage>(
                socket.as_raw_fd(),
                &mut iov,
                Some(&mut *cmsg),
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(io::Error::from)?;
            let Some(from) = m.address.as_ref().and_then(super::pktinfo::std_addr) else {
                continue;
            };
            let to = super::pktinfo::local_address(&m, bound);
            let mut segment = 0;
            if let Ok(cmsgs) = m.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::UdpGroSegments(n) = c {
                        segment = usize::try_from(n).unwrap_or(0);
                    }
                }
            }
            return Ok((m.bytes, from, to, segment));
        }
    }

    /// Sends `bytes` as datagrams of `segment` bytes each (the last may be
    /// shorter) in one `sendmsg` with UDP generic segmentation offload
    /// (`UDP_SEGMENT`), from the address of `info` if given. Does not block.
    pub fn send_gso(
        socket: &impl AsRawFd,
        bytes: &[u8],
        segment: u16,
        to: SocketAddr,
        info: Option<&super::pktinfo::Info>,
    ) -> io::Result<usize> {
        let iov = [IoSlice::new(bytes)];
        let addr = SockaddrStorage::from(to);
        let gso = ControlMessage::UdpGsoSegments(&segment);
        let sent = match info {
            Some(i) => socket::sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[gso, i.cmsg()],
                MsgFlags::MSG_DONTWAIT,
                Some(&addr),
            ),
            None => socket::sendmsg(
                socket.as_raw_fd(),
                &iov,
                &[gso],
                MsgFlags::MSG_DONTWAIT,
                Some(&addr),
            ),
        };
        sent.map_err(io::Error::from)
    }

    /// Whether a GSO send failed because GSO is not available here (an old
    /// kernel, an interface or route without checksum offload, a segment
    /// above the path's MTU): then datagrams must go one by one.
    pub fn gso_refused(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT)
        )
    }

    /// Most datagrams per system call.
    pub const N: usize = 32;
    /// One slot per datagram, as large as the largest UDP payload (a
    /// server must not misread a big one).
    const SLOT: usize = super::RECV_BUF;

    /// Receive slots, and the datagrams to send (concatenated). The
    /// `mmsghdr` arrays are made per call: they hold raw pointers, and a
    /// driver must stay `Send`.
    pub struct Batch {
        bufs: Vec<u8>,
        /// Bytes per receive slot.
        slot: usize,
        /// `MSG_WAITFORONE` reads and blocking sends (a blocking socket of
        /// a load generator), else `MSG_DONTWAIT`.
        blocking: bool,
        lens: [usize; N],
        from: [Option<SocketAddr>; N],
        /// The local address of each datagram (read with packet information).
        to: [Option<SocketAddr>; N],
        out: Vec<u8>,
        /// (source socket, source address for packet information,
        /// destination, bytes in `out`).
        outs: Vec<(usize, Option<SocketAddr>, SocketAddr, Range<usize>)>,
    }

    impl std::fmt::Debug for Batch {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Batch")
                .field("queued", &self.outs.len())
                .finish()
        }
    }

    use super::pktinfo::{self, Info, std_addr};

    impl Batch {
        pub fn new() -> Batch {
            Batch::with_slot(SLOT, false)
        }

        /// For sending only (no receive slots).
        pub fn for_sending() -> Batch {
            Batch::with_slot(0, false)
        }

        /// How many datagrams are queued to send.
        pub fn queued(&self) -> usize {
            self.outs.len()
        }

        /// For a blocking socket of a load generator (`rtclab speed`):
        /// receive slots of `slot` bytes (a longer datagram is cut), reads
        /// that wait for the first datagram (up to the socket's read
        /// timeout) then take what else waits, sends that block.
        pub fn blocking(slot: usize) -> Batch {
            Batch::with_slot(slot, true)
        }

        fn with_slot(slot: usize, blocking: bool) -> Batch {
            Batch {
                bufs: vec![0; N * slot],
                slot,
                blocking,
                lens: [0; N],
                from: [None; N],
                to: [None; N],
                out: Vec::with_capacity(N * 2048),
                outs: Vec::with_capacity(N),
            }
        }

        /// Takes up to [`N`] waiting datagrams without blocking
        /// (`WouldBlock` when there are none).
        pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
            self.recv_inner(socket, None)
        }

        /// As [`Batch::recv`] on a wildcard socket bound to `bound` with
        /// packet information on: [`Batch::destination`] gives each
        /// datagram's local address.
        pub fn recv_pktinfo(
            &mut self,
            socket: &impl AsRawFd,
            bound: SocketAddr,
        ) -> io::Result<usize> {
            self.recv_inner(socket, Some(bound))
        }

        fn recv_inner(
            &mut self,
            socket: &impl AsRawFd,
            pktinfo_bound: Option<SocketAddr>,
        ) -> io::Result<usize> {
            let flags = if self.blocking {
                MsgFlags::MSG_WAITFORONE
            } else {
                MsgFlags::MSG_DONTWAIT
            };
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
                .bufs
                .chunks_mut(self.slot)
                .map(|c| [IoSliceMut::new(c)])
                .collect();
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(
                N,
                pktinfo_bound.map(|_| pktinfo::cmsg_buffer()),
            );
            let got = socket::recvmmsg(
                socket.as_raw_fd(),
                &mut headers,
                slices.iter_mut(),
                flags,
                None,
            )
            .map_err(io::Error::from)?;
            let mut n = 0;
            for m in got {
                self.lens[n] = m.bytes.min(self.slot);
                self.from[n] = m.address.as_ref().and_then(std_addr);
                self.to[n] = pktinfo_bound.map(|b| pktinfo::local_address(&m, b));
                n += 1;
            }
            Ok(n)
        }

        /// The k-th datagram of the last [`Batch::recv`] and its source.
        pub fn datagram(&self, k: usize) -> Option<(SocketAddr, &[u8])> {
            let from = (*self.from.get(k)?)?;
            let start = k * self.slot;
            Some((from, self.bufs.get(start..start + self.lens[k])?))
        }

        /// The local address of the k-th datagram, if it was read with
        /// [`Batch::recv_pktinfo`].
        pub fn destination(&self, k: usize) -> Option<SocketAddr> {
            *self.to.get(k)?
        }

        /// Queues every datagram of the last read back to its source, from
        /// socket 0 (an echoing peer).
        pub fn echo_all(&mut self, n: usize) {
            self.clear_out();
            for k in 0..n.min(N) {
                let Some(from) = self.from[k] else { continue };
                let start = k * self.slot;
                let bytes = &self.bufs[start..start + self.lens[k]];
                let at = self.out.len();
                self.out.extend_from_slice(bytes);
                self.outs.push((0, None, from, at..self.out.len()));
            }
        }

        /// Forgets what was queued to send.
        pub fn clear_out(&mut self) {
            self.out.clear();
            self.outs.clear();
        }

        /// Queues `bytes` to `to` from socket `sock`.
        pub fn push_out(&mut self, sock: usize, to: SocketAddr, bytes: &[u8]) {
            self.push_out_from(sock, None, to, bytes);
        }

        /// Queues `bytes` to `to` from socket `sock`, and from address
        /// `source` (a wildcard socket's packet information) if given.
        pub fn push_out_from(
            &mut self,
            sock: usize,
            source: Option<SocketAddr>,
            to: SocketAddr,
            bytes: &[u8],
        ) {
            let start = self.out.len();
            self.out.extend_from_slice(bytes);
            self.outs.push((sock, source, to, start..self.out.len()));
        }

        /// From queued datagram `start`, the run sharing its source socket
        /// and address: (socket, end of the run).
        pub fn run_from(&self, start: usize) -> Option<(usize, usize)> {
            let (sock, source, ..) = self.outs.get(start)?;
            let len = self.outs[start..]
                .iter()
                .take_while(|(s, src, ..)| s == sock && src == source)
                .count();
            Some((*sock, start + len))
        }

        /// The k-th queued datagram.
        pub fn out(&self, k: usize) -> (SocketAddr, &[u8]) {
            let (_, _, to, r) = &self.outs[k];
            (*to, &self.out[r.clone()])
        }

        /// The source address the k-th queued datagram was queued with.
        pub fn source(&self, k: usize) -> Option<SocketAddr> {
            self.outs.get(k)?.1
        }

        /// Sends queued datagrams `start..end` (one source socket), [`N`]
        /// per call; how many the kernel took (fewer than asked when it
        /// refused one: `sendmmsg(2)` stops there).
        pub fn send(
            &mut self,
            socket: &impl AsRawFd,
            start: usize,
            end: usize,
        ) -> io::Result<usize> {
            self.send_with(socket, start, end, None)
        }

        /// As [`Batch::send`], every datagram with the packet information
        /// `info` (one source address for the run: `sendmmsg` shares its
        /// ancillary data across the messages).
        pub fn send_with(
            &mut self,
            socket: &impl AsRawFd,
            start: usize,
            end: usize,
            info: Option<&Info>,
        ) -> io::Result<usize> {
            let mut sent = 0;
            let mut headers =
                MultiHeaders::<SockaddrStorage>::preallocate(N, info.map(Info::space));
            for chunk_start in (start..end).step_by(N) {
                let chunk_end = (chunk_start + N).min(end);
                let slices: Vec<[IoSlice<'_>; 1]> = (chunk_start..chunk_end)
                    .map(|k| [IoSlice::new(&self.out[self.outs[k].3.clone()])])
                    .collect();
                let addrs: Vec<Option<SockaddrStorage>> = (chunk_start..chunk_end)
                    .map(|k| Some(SockaddrStorage::from(self.outs[k].2)))
                    .collect();
                let cmsgs: Vec<ControlMessage<'_>> = info.map(Info::cmsg).into_iter().collect();
                match socket::sendmmsg(
                    socket.as_raw_fd(),
                    &mut headers,
                    &slices,
                    &addrs,
                    &cmsgs,
                    if self.blocking {
                        MsgFlags::empty()
                    } else {
                        MsgFlags::MSG_DONTWAIT
                    },
                ) {
                    // The kernel stops at a datagram it refuses (an
                    // unreachable destination): the caller sends from
                    // there one by one, and learns which.
                    Ok(results) => {
                        let took = results.count();
                        sent += took;
                        if took < chunk_end - chunk_start {
                            return Ok(sent);
                        }
                    }
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
    use crate::machine::Transmit;
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

    /// Sends `bursts` from `client` to `server`, each burst (sizes) as GSO
    /// runs on Linux, and checks every datagram comes back whole, alone and
    /// in order.
    async fn echo_bursts(client: &UdpSocket, server: SocketAddr, bursts: &[Vec<usize>]) {
        let mut buf = vec![0u8; 65_536];
        let mut tag = 0u8;
        for sizes in bursts {
            let mut sent = Vec::new();
            let mut bytes = Vec::new();
            for &n in sizes {
                tag = tag.wrapping_add(1);
                let d = vec![tag; n];
                bytes.extend_from_slice(&d);
                sent.push(d);
            }
            #[cfg(target_os = "linux")]
            {
                // One GSO send per run of equal sizes (the last shorter).
                let mut off = 0;
                let mut i = 0;
                while i < sizes.len() {
                    let seg = sizes[i];
                    let mut j = i + 1;
                    let fits = |j: usize| j - i < 64 && (j - i + 1) * seg <= 65_000;
                    while j < sizes.len() && seg > 0 && sizes[j] == seg && fits(j) {
                        j += 1;
                    }
                    if j < sizes.len() && sizes[j] < seg && fits(j) {
                        j += 1;
                    }
                    let len: usize = sizes[i..j].iter().sum();
                    if j == i + 1 {
                        client
                            .send_to(&bytes[off..off + len], server)
                            .await
                            .unwrap();
                        off += len;
                        i = j;
                        continue;
                    }
                    batch::send_gso(
                        client,
                        &bytes[off..off + len],
                        u16::try_from(seg).unwrap(),
                        server,
                        None,
                    )
                    .unwrap();
                    off += len;
                    i = j;
                }
            }
            #[cfg(not(target_os = "linux"))]
            for d in &sent {
                client.send_to(d, server).await.unwrap();
            }
            for d in &sent {
                let (n, from) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    client.recv_from(&mut buf),
                )
                .await
                .expect("an echo in time")
                .unwrap();
                assert_eq!(from, server);
                assert_eq!(&buf[..n], &d[..], "one datagram, whole, in order");
            }
        }
    }

    /// The general loop reads GSO runs (coalesced by GRO on loopback) and
    /// hands the machine each datagram alone; the echoes leave as GSO runs
    /// and arrive as the datagrams they were. Then the same with GSO
    /// refused (as an old kernel would): one by one, same result. On Linux
    /// also from a wildcard socket, asked at 127.0.0.2: the runs carry
    /// packet information with GSO and leave from the address asked.
    #[tokio::test]
    async fn gso_runs_in_and_out_keep_datagram_boundaries() {
        let wildcard = cfg!(target_os = "linux");
        for (gso, any) in [(true, false), (false, false), (true, wildcard)] {
            let bind: SocketAddr = if any {
                ([0, 0, 0, 0], 0).into()
            } else {
                ([127, 0, 0, 1], 0).into()
            };
            let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
            let mut d = Driver::bind(Echo::default(), &[bind]).await.unwrap();
            d.gso &= gso;
            let mut server = d.local_addrs()[0];
            if any {
                server = ([127, 0, 0, 2], server.port()).into();
            }
            let client = UdpSocket::bind(loopback).await.unwrap();
            let bursts = [
                vec![1200; 40],
                [vec![1200; 30], vec![700], vec![300; 5], vec![1200; 3]].concat(),
                vec![0, 10, 10, 5],
                vec![1400; 64],
            ];
            tokio::select! {
                r = d.serve() => panic!("driver stopped: {r:?}"),
                () = echo_bursts(&client, server, &bursts) => {}
            }
            // The kernel took the runs: GSO was not given up on.
            assert_eq!(d.gso, gso && cfg!(target_os = "linux"));
        }
    }

    /// On each datagram (a count, one byte), that many rounds of one
    /// numbered datagram to each of its destinations in turn: a
    /// forwarder's pattern, no two neighbours to the same address.
    struct Fanout {
        to: Vec<SocketAddr>,
        queue: std::collections::VecDeque<Transmit>,
    }

    impl Machine for Fanout {
        type Event = ();

        fn handle_receive(&mut self, _now: Instant, d: Receive<'_>) {
            for round in 0..u32::from(d.contents[0]) {
                for &to in &self.to {
                    self.queue.push_back(Transmit {
                        source: None,
                        destination: to,
                        contents: round.to_be_bytes().to_vec(),
                    });
                }
            }
        }

        fn handle_timeout(&mut self, _now: Instant) {}

        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.queue.pop_front()
        }

        fn poll_event(&mut self) -> Option<()> {
            None
        }

        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    /// Datagrams to many destinations leave gathered (`sendmmsg` on
    /// Linux, more than one call's worth), each destination's in order;
    /// a destination the kernel refuses in the middle (an IPv6 address
    /// from an IPv4 socket) costs its own datagrams only.
    #[tokio::test]
    async fn datagrams_to_many_destinations_arrive_in_order_past_a_refused_one() {
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut clients = Vec::new();
        for _ in 0..3 {
            clients.push(UdpSocket::bind(loopback).await.unwrap());
        }
        let mut to: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        to.insert(1, "[::1]:9".parse().unwrap());
        let fanout = Fanout {
            to,
            queue: Default::default(),
        };
        let mut d = Driver::bind(fanout, &[loopback]).await.unwrap();
        let server = d.local_addrs()[0];
        let task = tokio::spawn(async move { d.serve().await });
        let rounds = 40u32;
        clients[0].send_to(&[rounds as u8], server).await.unwrap();
        for c in &clients {
            let mut buf = [0u8; 16];
            for round in 0..rounds {
                let (n, from) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), c.recv_from(&mut buf))
                        .await
                        .expect("a datagram in time")
                        .unwrap();
                assert_eq!(from, server);
                assert_eq!(&buf[..n], &round.to_be_bytes(), "in order, none lost");
            }
        }
        task.abort();
    }

    /// Answers every datagram with the local address it arrived on (as
    /// text), from that address.
    #[derive(Default)]
    struct WhereTo(std::collections::VecDeque<Transmit>);

    impl Machine for WhereTo {
        type Event = ();

        fn handle_receive(&mut self, _now: Instant, d: Receive<'_>) {
            self.0.push_back(Transmit {
                source: Some(d.destination),
                destination: d.source,
                contents: d.destination.to_string().into_bytes(),
            });
        }

        fn handle_timeout(&mut self, _now: Instant) {}

        fn poll_transmit(&mut self) -> Option<Transmit> {
            self.0.pop_front()
        }

        fn poll_event(&mut self) -> Option<()> {
            None
        }

        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    /// `WhereTo` for the fast path.
    fn where_to_fast(
        _m: &mut WhereTo,
        _now: Instant,
        d: Receive<'_>,
        out: &mut Vec<u8>,
    ) -> Option<(SocketAddr, SocketAddr)> {
        out.clear();
        out.extend_from_slice(d.destination.to_string().as_bytes());
        Some((d.destination, d.source))
    }

    /// Sends to each of `targets` (the driver's port) from `client` and
    /// checks that the answer comes from that address and names it.
    async fn ask(client: &UdpSocket, targets: &[SocketAddr], named: &[&str]) {
        let mut buf = [0u8; 128];
        for (to, name) in targets.iter().zip(named) {
            client.send_to(b"where?", to).await.unwrap();
            let (n, from) = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                client.recv_from(&mut buf),
            )
            .await
            .expect("an answer in time")
            .unwrap();
            assert_eq!(
                (from, std::str::from_utf8(&buf[..n]).unwrap()),
                (*to, *name),
                "asked {to}"
            );
        }
    }

    /// A socket on 0.0.0.0 hands the machine the address each datagram was
    /// sent to, and answers from it: 127.0.0.2 is not the address the
    /// kernel would pick to reach 127.0.0.1. Both loops: the plain one and
    /// the fast path (batched on Linux).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn wildcard_socket_answers_from_the_address_asked() {
        for fast in [false, true] {
            let any: SocketAddr = ([0, 0, 0, 0], 0).into();
            let mut d = Driver::bind(WhereTo::default(), &[any]).await.unwrap();
            let port = d.local_addrs()[0].port();
            let task = tokio::spawn(async move {
                if fast {
                    d.serve_with_fast_path(where_to_fast).await
                } else {
                    d.serve().await
                }
            });
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let second: SocketAddr = ([127, 0, 0, 2], port).into();
            let first: SocketAddr = ([127, 0, 0, 1], port).into();
            let (s2, s1) = (second.to_string(), first.to_string());
            ask(&client, &[second, first, second], &[&s2, &s1, &s2]).await;
            // A burst to both addresses at once: the fast path reads it in
            // batches (`recvmmsg`) and answers each run of one source
            // address in one `sendmmsg`.
            let mut buf = [0u8; 128];
            for round in 0..4 {
                let targets: Vec<SocketAddr> = (0..96)
                    .map(|k| {
                        if (k / (round + 1)) % 2 == 0 {
                            second
                        } else {
                            first
                        }
                    })
                    .collect();
                for to in &targets {
                    client.send_to(b"where?", to).await.unwrap();
                }
                for to in &targets {
                    let (n, from) = tokio::time::timeout(
                        std::time::Duration::from_secs(5),
                        client.recv_from(&mut buf),
                    )
                    .await
                    .expect("an answer in time")
                    .unwrap();
                    assert_eq!(from, *to, "round {round}");
                    assert_eq!(&buf[..n], to.to_string().as_bytes(), "round {round}");
                }
            }
            task.abort();
        }
    }

    /// The same on [::] (IPV6_RECVPKTINFO): to ::1, and to 127.0.0.2
    /// through the dual-stack socket (a v4-mapped address).
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn ipv6_wildcard_socket_answers_from_the_address_asked() {
        let any: SocketAddr = "[::]:0".parse().unwrap();
        let Ok(mut d) = Driver::bind(WhereTo::default(), &[any]).await else {
            eprintln!("*** SKIPPED: no IPv6 on this host ***");
            return;
        };
        let port = d.local_addrs()[0].port();
        let task = tokio::spawn(async move { d.serve().await });
        let Ok(client) = UdpSocket::bind("[::1]:0").await else {
            eprintln!("*** SKIPPED: no ::1 on this host ***");
            task.abort();
            return;
        };
        let to: SocketAddr = format!("[::1]:{port}").parse().unwrap();
        ask(&client, &[to], &[&to.to_string()]).await;
        let v4 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let second: SocketAddr = ([127, 0, 0, 2], port).into();
        ask(&v4, &[second], &[&format!("[::ffff:127.0.0.2]:{port}")]).await;
        task.abort();
    }
}
