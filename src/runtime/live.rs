//! [`LivePeer`]: a [`PeerConnection`] on a real UDP socket, with an async
//! face for applications and examples (DESIGN §2: the tokio runtime is the
//! only place with sockets and clocks).
//!
//! `LivePeer` is thin on purpose: it owns one [`Driver`] (one UDP socket,
//! the timer loop of [`crate::runtime`]) around one sans-IO
//! [`PeerConnection`], and every call delegates to it with `Instant::now()`
//! filled in. There are no locks, callbacks or background tasks: the
//! application awaits [`LivePeer::next_event`], and that one call sends
//! what is queued, reads the socket and fires the timers until the
//! connection has something to say.
//!
//! ```text
//!   application                LivePeer                         network
//!   offer()/answer()  ──►  PeerConnection (sans-IO)
//!   send_text/frame   ──►    queued transmits  ── next_event() ──► UDP
//!   next_event().await ◄──   poll_event()      ◄── handle_receive ◄── UDP
//!                            poll_timeout()    ─── sleep ──► handle_timeout
//! ```
//!
//! Calls that send (`send_frame`, `send_text`, …) only queue datagrams; they
//! leave on the next `next_event().await` (or [`LivePeer::flush`]). That is
//! what lets an application `select!` between `next_event()` and its own
//! inputs (a signaling socket, a UI) in one task. `next_event` may be
//! cancelled (dropped by a `select!`) at any point without losing an event
//! or a queued datagram; at worst a datagram being sent goes twice, which
//! UDP allows.
//!
//! A TURN server given as `turn:IP:PORT?transport=tcp` (RFC 8656 §3.1) is
//! reached over one TCP connection that [`LivePeer::bind`] opens: the TURN
//! client's messages to that server leave the driver's UDP path and are
//! written back to back on the stream, and what the stream brings is cut
//! into messages ([`crate::turn::Framer`]) and handed to the connection as
//! if it had come from the server by UDP. The relay to peers stays UDP.
//!
//! The driver sends in GSO runs and reads with GRO (see [`crate::runtime`]),
//! and an idle `LivePeer` holds no datagram buffers: `rtclab speed setup`'s
//! `peer.idle_bytes` counts one with its driver.
//!
//! # Example
//!
//! Two peers on loopback, signaled in-process; the offerer's data channel
//! carries one message:
//!
//! ```
//! use rtclab::datachannel::{ChannelInit, Event as DcEvent, Message};
//! use rtclab::peer;
//! use rtclab::runtime::LivePeer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let loopback = "127.0.0.1:0".parse()?;
//! let mut alice = LivePeer::bind(LivePeer::config()?, loopback).await?;
//! let mut bob = LivePeer::bind(LivePeer::config()?, loopback).await?;
//! let chat = alice.create_data_channel(ChannelInit::new("chat"))?;
//! let offer = alice.offer()?; // create_offer + set_local_description
//! let answer = bob.answer(&offer)?; // set_remote + create_answer + set_local
//! alice.accept_answer(&answer)?;
//! loop {
//!     tokio::select! {
//!         e = alice.next_event() => match e? {
//!             // Trickle ICE: hand each candidate to the other side.
//!             peer::Event::LocalCandidate(c) => bob.add_ice_candidate(&c.to_string())?,
//!             peer::Event::DataChannel(DcEvent::Open(id)) => alice.send_text(id, "hello")?,
//!             _ => {}
//!         },
//!         e = bob.next_event() => match e? {
//!             peer::Event::LocalCandidate(c) => alice.add_ice_candidate(&c.to_string())?,
//!             peer::Event::DataChannel(DcEvent::Message { message, .. }) => {
//!                 assert_eq!(message, Message::Text("hello".into()));
//!                 break;
//!             }
//!             _ => {}
//!         },
//!     }
//! }
//! # let _ = chat;
//! alice.close().await;
//! bob.close().await;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::Driver;
use super::interfaces::{HostOptions, host_addresses};
use crate::capture::{Capture, Direction};
use crate::datachannel::{ChannelId, ChannelInit};
use crate::dtls::cert::Certificate;
use crate::machine::{Machine, Receive, Transmit, TransmitMeta};
use crate::peer::{self, PeerConnection, SdpType, TrackId};
use crate::sdp::MediaKind;
use crate::turn::{Framer, ServerTransport};

/// How long [`LivePeer::bind`] waits for the TCP connection to a TURN
/// server.
const TCP_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A [`PeerConnection`] driven over one UDP socket by tokio (see the
/// [module doc](self)).
#[derive(Debug)]
pub struct LivePeer {
    driver: Driver<Routed>,
    /// The TCP connection to a TURN server, when it is reached over TCP.
    tcp: Option<TurnStream>,
    /// `$SSLKEYLOGFILE`, until the key log line was appended to it.
    key_log_file: Option<std::path::PathBuf>,
}

/// The connection as the driver sees it: transmits to a TURN server
/// reached over TCP are taken out of the UDP path and queued for the
/// stream.
#[derive(Debug)]
struct Routed {
    pc: PeerConnection,
    /// The TURN server on TCP, and where its messages go.
    stream: Option<(SocketAddr, mpsc::UnboundedSender<Vec<u8>>)>,
}

impl Routed {
    /// Whether `t` goes on the stream (and was queued there).
    fn to_stream(&self, destination: SocketAddr, bytes: &[u8]) -> bool {
        match &self.stream {
            Some((server, tx)) if *server == destination => {
                if tx.send(bytes.to_vec()).is_err() {
                    tracing::debug!("TURN over TCP: the stream is gone; message dropped");
                }
                true
            }
            _ => false,
        }
    }
}

impl Machine for Routed {
    type Event = peer::Event;

    fn handle_receive(&mut self, now: Instant, d: Receive<'_>) {
        self.pc.handle_receive(now, d);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.pc.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        loop {
            let t = self.pc.poll_transmit()?;
            if !self.to_stream(t.destination, &t.contents) {
                return Some(t);
            }
        }
    }

    fn poll_transmit_into(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        loop {
            let start = buf.len();
            let m = self.pc.poll_transmit_into(buf)?;
            if !self.to_stream(m.destination, buf.get(start..).unwrap_or_default()) {
                return Some(m);
            }
            buf.truncate(start);
        }
    }

    fn poll_event(&mut self) -> Option<peer::Event> {
        self.pc.poll_event()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.pc.poll_timeout()
    }
}

/// One TCP connection to a TURN server (RFC 8656 §3.1): messages out as
/// the client made them (ChannelData already padded), messages in cut by
/// a [`Framer`].
#[derive(Debug)]
struct TurnStream {
    server: SocketAddr,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    outgoing: mpsc::UnboundedReceiver<Vec<u8>>,
    framer: Framer,
    buf: Vec<u8>,
    /// Set once the stream ended or failed: nothing more is read.
    closed: bool,
}

impl LivePeer {
    /// WebRTC defaults around a fresh self-signed certificate (ECDSA P-256,
    /// valid 30 days); the host candidates are filled in by
    /// [`LivePeer::bind`].
    pub fn config() -> Result<peer::Config, crate::dtls::Error> {
        let mut rng = StdRng::from_os_rng();
        let cert = Certificate::generate(&mut rng, SystemTime::now())?;
        Ok(peer::Config::new(cert, Vec::new()))
    }

    /// Binds a UDP socket on `addr` (port 0: a free port) and makes the
    /// connection, seeded from the OS.
    ///
    /// Host candidates: when `config.host_candidates` is empty, the bound
    /// address; if `addr` is unspecified (`0.0.0.0`, `[::]`), every
    /// non-loopback address of the machine's interfaces (of that family),
    /// with the bound port. A given candidate with port 0 gets the bound
    /// port.
    pub async fn bind(config: peer::Config, addr: SocketAddr) -> io::Result<LivePeer> {
        LivePeer::bind_with_rng(config, addr, StdRng::from_os_rng()).await
    }

    /// As [`LivePeer::bind`], with a caller-seeded RNG (ICE credentials,
    /// SSRCs, DTLS and SCTP randomness): reproducible runs.
    pub async fn bind_with_rng(
        mut config: peer::Config,
        addr: SocketAddr,
        rng: StdRng,
    ) -> io::Result<LivePeer> {
        let socket = UdpSocket::bind(addr).await.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot bind UDP socket on {addr}: {e}"))
        })?;
        let bound = socket.local_addr()?;
        if config.host_candidates.is_empty() {
            config.host_candidates = if bound.ip().is_unspecified() {
                let options = HostOptions {
                    loopback: false,
                    ipv4_only: bound.is_ipv4(),
                };
                host_addresses(options)?
                    .into_iter()
                    .filter(|ip: &IpAddr| ip.is_ipv4() == bound.is_ipv4())
                    .map(|ip| SocketAddr::new(ip, bound.port()))
                    .collect()
            } else {
                vec![bound]
            };
        }
        for c in &mut config.host_candidates {
            if c.port() == 0 {
                c.set_port(bound.port());
            }
        }
        let tcp_turn = match crate::peer::ice_servers::resolve(&config.ice_servers) {
            Ok(r) if r.turn_transport == ServerTransport::Tcp => r.turn.map(|t| t.0),
            // A bad entry fails the first offer or answer, with its reason.
            _ => None,
        };
        let pc = PeerConnection::new(config, rng);
        let (tcp, stream) = match tcp_turn {
            Some(server) => {
                let s = tokio::time::timeout(TCP_CONNECT_TIMEOUT, TcpStream::connect(server))
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("TURN server {server}: no TCP connection in 5 s"),
                        )
                    })?
                    .map_err(|e| {
                        io::Error::new(e.kind(), format!("TURN server {server} over TCP: {e}"))
                    })?;
                // Small messages (ChannelData of one datagram) go at once.
                s.set_nodelay(true)?;
                let (reader, writer) = s.into_split();
                let (tx, rx) = mpsc::unbounded_channel();
                let t = TurnStream {
                    server,
                    reader,
                    writer,
                    outgoing: rx,
                    framer: Framer::new(),
                    buf: vec![0; 16 * 1024],
                    closed: false,
                };
                (Some(t), Some((server, tx)))
            }
            None => (None, None),
        };
        Ok(LivePeer {
            driver: Driver::from_sockets(Routed { pc, stream }, vec![socket])?,
            tcp,
            key_log_file: std::env::var_os("SSLKEYLOGFILE")
                .filter(|p| !p.is_empty())
                .map(Into::into),
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        // `from_sockets` was given exactly one socket.
        self.driver.local_addrs()[0]
    }

    /// The sans-IO connection, to read its state and statistics.
    pub fn connection(&self) -> &PeerConnection {
        &self.driver.machine().pc
    }

    /// The sans-IO connection, for calls this face does not wrap.
    pub fn connection_mut(&mut self) -> &mut PeerConnection {
        &mut self.driver.machine_mut().pc
    }

    /// The local address of the TCP connection to a TURN server reached
    /// over TCP, if there is one (and it is still open).
    pub fn turn_tcp_local_addr(&self) -> Option<SocketAddr> {
        let t = self.tcp.as_ref().filter(|t| !t.closed)?;
        t.writer.local_addr().ok()
    }

    // ---- JSEP ------------------------------------------------------------

    /// `addTrack`: a VP8 (video) or Opus (audio) sender, signaled by the
    /// next offer or answer.
    pub fn add_track(&mut self, kind: MediaKind) -> Result<TrackId, peer::Error> {
        self.connection_mut().add_track(kind)
    }

    /// `createDataChannel`; it opens with a `DataChannel(Open(id))` event.
    pub fn create_data_channel(&mut self, init: ChannelInit) -> Result<ChannelId, peer::Error> {
        self.connection_mut().create_data_channel(init)
    }

    /// `createOffer`: our offer as SDP text.
    pub fn create_offer(&mut self) -> Result<String, peer::Error> {
        self.connection_mut().create_offer(Instant::now())
    }

    /// `createAnswer`: our answer to the remote offer as SDP text.
    pub fn create_answer(&mut self) -> Result<String, peer::Error> {
        self.connection_mut().create_answer()
    }

    /// `setLocalDescription`.
    pub fn set_local_description(&mut self, kind: SdpType, sdp: &str) -> Result<(), peer::Error> {
        self.connection_mut()
            .set_local_description(Instant::now(), kind, sdp)
    }

    /// `setRemoteDescription`.
    pub fn set_remote_description(&mut self, kind: SdpType, sdp: &str) -> Result<(), peer::Error> {
        self.connection_mut()
            .set_remote_description(Instant::now(), kind, sdp)
    }

    /// The offerer's step: `create_offer` then `set_local_description`;
    /// returns the offer to signal.
    pub fn offer(&mut self) -> Result<String, peer::Error> {
        let offer = self.create_offer()?;
        self.set_local_description(SdpType::Offer, &offer)?;
        Ok(offer)
    }

    /// The answerer's step: `set_remote_description(offer)`,
    /// `create_answer`, `set_local_description`; returns the answer to
    /// signal.
    pub fn answer(&mut self, offer: &str) -> Result<String, peer::Error> {
        self.set_remote_description(SdpType::Offer, offer)?;
        let answer = self.create_answer()?;
        self.set_local_description(SdpType::Answer, &answer)?;
        Ok(answer)
    }

    /// The offerer's last step: `set_remote_description(answer)`.
    pub fn accept_answer(&mut self, answer: &str) -> Result<(), peer::Error> {
        self.set_remote_description(SdpType::Answer, answer)
    }

    /// `addIceCandidate`: a trickled candidate line (`candidate:…`, with or
    /// without `a=`).
    pub fn add_ice_candidate(&mut self, candidate: &str) -> Result<(), peer::Error> {
        self.connection_mut()
            .add_ice_candidate(Instant::now(), candidate)
    }

    /// The peer has no more candidates (RFC 8838 end-of-candidates).
    pub fn add_end_of_candidates(&mut self) {
        self.connection_mut().add_end_of_candidates(Instant::now());
    }

    // ---- media and data --------------------------------------------------

    /// Sends one encoded frame on `track` with RTP timestamp `timestamp`
    /// (90 kHz for video, 48 kHz for Opus); returns the RTP packet count.
    pub fn send_frame(
        &mut self,
        track: TrackId,
        timestamp: u32,
        frame: &[u8],
    ) -> Result<usize, peer::Error> {
        self.connection_mut()
            .send_frame(Instant::now(), track, timestamp, frame)
    }

    /// Asks the peer for a keyframe on the m-line `mid` it sends (PLI).
    pub fn request_keyframe(&mut self, mid: &str) -> Result<(), peer::Error> {
        self.connection_mut().request_keyframe(mid)
    }

    /// Sends a text message on a data channel.
    pub fn send_text(&mut self, channel: ChannelId, text: &str) -> Result<(), peer::Error> {
        self.connection_mut()
            .send_text(Instant::now(), channel, text)
    }

    /// Sends a binary message on a data channel.
    pub fn send_binary(&mut self, channel: ChannelId, data: &[u8]) -> Result<(), peer::Error> {
        self.connection_mut()
            .send_binary(Instant::now(), channel, data)
    }

    /// Closes one data channel (its stream is reset).
    pub fn close_data_channel(&mut self, channel: ChannelId) {
        self.connection_mut()
            .close_data_channel(Instant::now(), channel);
    }

    // ---- running ---------------------------------------------------------

    /// Sends what is queued, then reads the socket and fires timers until
    /// the connection has an event. Cancel-safe (see the module doc).
    pub async fn next_event(&mut self) -> io::Result<peer::Event> {
        let e = self.next_event_routed().await;
        if self.key_log_file.is_some() {
            self.append_key_log();
        }
        e
    }

    /// [`LivePeer::next_event`] without the key log: the driver's events,
    /// with the TURN server's TCP stream served alongside.
    async fn next_event_routed(&mut self) -> io::Result<peer::Event> {
        loop {
            let Some(t) = self.tcp.as_mut().filter(|t| !t.closed) else {
                return self.driver.next_event().await;
            };
            // Cancel-safe all three: the driver's (see the module doc), a
            // channel's recv, and a read into our buffer.
            tokio::select! {
                e = self.driver.next_event() => return e,
                Some(message) = t.outgoing.recv() => {
                    t.write(&message).await;
                    t.write_queued().await;
                }
                r = t.reader.read(&mut t.buf) => {
                    let server = t.server;
                    let local = self.local_addr();
                    let t = self.tcp.as_mut().filter(|t| !t.closed);
                    let Some(t) = t else { continue };
                    let n = match r {
                        Ok(0) => {
                            tracing::warn!(%server, "TURN over TCP: the server closed the connection");
                            t.closed = true;
                            continue;
                        }
                        Ok(n) => n,
                        Err(e) => {
                            tracing::warn!(%server, error = %e, "TURN over TCP: read failed");
                            t.closed = true;
                            continue;
                        }
                    };
                    if let Err(e) = t.framer.push(t.buf.get(..n).unwrap_or_default()) {
                        tracing::warn!(%server, error = %e, "TURN over TCP: not a TURN stream");
                        t.closed = true;
                        continue;
                    }
                    let now = Instant::now();
                    let pc = &mut self.driver.machine_mut().pc;
                    loop {
                        match t.framer.next_message() {
                            Ok(Some(m)) => pc.handle_receive(
                                now,
                                Receive { source: server, destination: local, contents: m },
                            ),
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!(%server, error = %e, "TURN over TCP: not a TURN stream");
                                t.closed = true;
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sends every queued datagram now (and every queued message to a TURN
    /// server over TCP).
    pub async fn flush(&mut self) -> io::Result<()> {
        self.driver.flush().await?;
        if let Some(t) = self.tcp.as_mut().filter(|t| !t.closed) {
            t.write_queued().await;
        }
        Ok(())
    }

    /// `close()`: aborts SCTP, sends DTLS close_notify, frees the
    /// connection's state, and sends those last datagrams.
    pub async fn close(&mut self) {
        self.connection_mut().close(Instant::now());
        if let Err(e) = self.flush().await {
            tracing::debug!(error = %e, "live peer: last datagrams not sent");
        }
    }
}

impl TurnStream {
    /// Writes one message; a failed write closes the stream.
    async fn write(&mut self, message: &[u8]) {
        if self.closed {
            return;
        }
        if let Err(e) = self.writer.write_all(message).await {
            tracing::warn!(server = %self.server, error = %e, "TURN over TCP: write failed");
            self.closed = true;
        }
    }

    /// Writes every message already queued.
    async fn write_queued(&mut self) {
        while let Ok(m) = self.outgoing.try_recv() {
            self.write(&m).await;
        }
    }
}

/// Packet captures and key logs (see [`crate::capture`]).
impl LivePeer {
    /// Captures every datagram of this peer into `sink` (pcapng with the
    /// DTLS key log in a Decryption Secrets Block, and the decrypted RTP
    /// and RTCP on the `srtp-plaintext` interface). Drop the peer, or
    /// [`LivePeer::take_capture`], to finish the file.
    pub fn set_capture(&mut self, sink: Capture) {
        self.driver
            .set_capture(sink, |r: &mut Routed, s| capture_hook(&mut r.pc, s));
    }

    /// Stops capturing and gives the sink back.
    pub fn take_capture(&mut self) -> Option<Capture> {
        self.driver.take_capture()
    }

    /// The capture being written, if any.
    pub fn capture_mut(&mut self) -> Option<&mut Capture> {
        self.driver.capture_mut()
    }

    /// Appends the DTLS key log line to `$SSLKEYLOGFILE` once it exists, as
    /// browsers do (NSS key log format), so Wireshark can decrypt a capture
    /// taken elsewhere (tcpdump, dumpcap).
    fn append_key_log(&mut self) {
        let Some(line) = key_log_line(self.connection()) else {
            return;
        };
        let Some(path) = self.key_log_file.take() else {
            return;
        };
        use std::io::Write as _;
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = r {
            tracing::warn!(path = %path.display(), error = %e, "SSLKEYLOGFILE not written");
        }
    }
}

/// The connection's DTLS key log line (NSS format), once its master secret
/// exists.
pub fn key_log_line(pc: &PeerConnection) -> Option<String> {
    pc.transport()?.dtls()?.key_log_line()
}

/// The [`Driver::set_capture`] hook of a peer connection: its key log line,
/// and the plaintext of its SRTP (the tap is turned on once the transport
/// exists).
pub fn capture_hook(pc: &mut PeerConnection, sink: &mut Capture) {
    // A connection has one DTLS association (BUNDLE): its line once.
    if sink.secrets() == 0
        && let Some(line) = key_log_line(pc)
    {
        sink.key_log_line(&line);
    }
    let Some(t) = pc.transport_mut() else { return };
    t.set_plaintext_tap(true);
    let now = Instant::now();
    while let Some(p) = t.poll_plaintext() {
        let dir = if p.outbound {
            Direction::Outbound
        } else {
            Direction::Inbound
        };
        sink.plaintext(now, dir, p.local.ip(), p.remote.ip(), p.rtcp, &p.packet);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::datachannel::{Event as DcEvent, Message};
    use crate::peer::PeerConnectionState;

    /// Two live peers on loopback: a data-channel message and a VP8 frame
    /// from the offerer to the answerer, and a reply back.
    #[tokio::test]
    async fn two_live_peers_exchange_a_message_and_a_frame() {
        let lo: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut a = LivePeer::bind(LivePeer::config().expect("cert"), lo)
            .await
            .expect("bind a");
        let mut b = LivePeer::bind(LivePeer::config().expect("cert"), lo)
            .await
            .expect("bind b");
        assert_eq!(a.local_addr().ip(), lo.ip());
        a.set_capture(Capture::in_memory(Instant::now(), Duration::ZERO));
        let video = a.add_track(MediaKind::Video).expect("track");
        let chat = a
            .create_data_channel(ChannelInit::new("chat"))
            .expect("channel");
        let offer = a.offer().expect("offer");
        let answer = b.answer(&offer).expect("answer");
        a.accept_answer(&answer).expect("accept");

        let mut frame = vec![0x10u8; 2500]; // a VP8 keyframe-looking payload
        frame[1] = 3;
        let mut sent = false;
        let mut got_frame = None;
        let mut got_message = None;
        let mut got_reply = None;
        let done = tokio::time::timeout(Duration::from_secs(20), async {
            while got_frame.is_none() || got_message.is_none() || got_reply.is_none() {
                tokio::select! {
                    e = a.next_event() => match e.expect("io a") {
                        peer::Event::LocalCandidate(c) => b.add_ice_candidate(&c.to_string()).expect("cand"),
                        peer::Event::GatheringComplete => b.add_end_of_candidates(),
                        peer::Event::DataChannel(DcEvent::Open(id)) if id == chat && !sent => {
                            sent = true;
                            a.send_text(chat, "hello from a").expect("text");
                            a.send_frame(video, 9000, &frame).expect("frame");
                        }
                        peer::Event::DataChannel(DcEvent::Message { message, .. }) => got_reply = Some(message),
                        peer::Event::Error(e) => panic!("a: {e}"),
                        _ => {}
                    },
                    e = b.next_event() => match e.expect("io b") {
                        peer::Event::LocalCandidate(c) => a.add_ice_candidate(&c.to_string()).expect("cand"),
                        peer::Event::GatheringComplete => a.add_end_of_candidates(),
                        peer::Event::Frame { frame, .. } => got_frame = Some(frame),
                        peer::Event::DataChannel(DcEvent::Message { channel, message }) => {
                            b.send_binary(channel, b"reply").expect("reply");
                            got_message = Some(message);
                        }
                        peer::Event::Error(e) => panic!("b: {e}"),
                        _ => {}
                    },
                }
            }
        })
        .await;
        assert!(done.is_ok(), "not done in time");
        assert_eq!(got_message, Some(Message::Text("hello from a".into())));
        assert_eq!(got_reply, Some(Message::Binary(b"reply".to_vec())));
        let f = got_frame.expect("frame");
        assert_eq!(f.data, frame);
        assert_eq!(f.timestamp, 9000);
        a.close().await;
        // A's capture: its datagrams both ways, the key log line that
        // decrypts them, and the VP8 packets it sent in plaintext.
        let bytes = a.take_capture().expect("capture").take_bytes();
        let cap = crate::capture::pcapng::read(&bytes).expect("pcapng");
        assert!(cap.key_log.starts_with("CLIENT_RANDOM "), "{}", cap.key_log);
        assert_eq!(cap.key_log.len(), "CLIENT_RANDOM ".len() + 64 + 1 + 96 + 1);
        let names: Vec<&str> = cap.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["127.0.0.1", crate::capture::PLAINTEXT_INTERFACE]);
        let on = |i: usize, d: Direction| {
            cap.packets
                .iter()
                .filter(|p| p.interface == i && p.direction == Some(d))
                .count()
        };
        assert!(on(0, Direction::Outbound) >= 4 && on(0, Direction::Inbound) >= 4);
        assert!(on(1, Direction::Outbound) >= 2, "VP8 plaintext: {cap:?}");
        assert_eq!(
            a.connection().connection_state(),
            PeerConnectionState::Closed
        );
        // B hears the close_notify.
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let peer::Event::ConnectionState(PeerConnectionState::Closed) =
                    b.next_event().await.expect("io b")
                {
                    break;
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "b did not see the close");
    }
}
