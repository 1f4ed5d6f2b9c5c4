//! Packet captures that decrypt themselves: every datagram a machine sends
//! and receives, written as pcapng with the DTLS secrets inside.
//!
//! A [`Capture`] is the sink a driver feeds: the runtime's
//! [`Driver::set_capture`](crate::runtime::Driver::set_capture) (so
//! [`LivePeer::set_capture`](crate::runtime::LivePeer::set_capture), `rtclab
//! demo --pcap`, `rtclab dtls --pcap`) and the simulator's records
//! ([`sim_pcapng`]). It writes:
//!
//! ```text
//!   SHB                          one section, written by "rtclab"
//!   IDB per local IP address     LINKTYPE_RAW, ns timestamps, if_name = the address
//!   DSB (TLS key log)            each new key log line, before the next packet
//!   EPB per datagram             synthetic IPv4/IPv6 + UDP headers, epb_flags in/out
//!   IDB "srtp-plaintext"         decrypted RTP and RTCP, see below
//! ```
//!
//! The Decryption Secrets Block (draft-ietf-opsawg-pcapng §4.7, secrets type
//! `0x544c534b`) carries NSS key log lines (`CLIENT_RANDOM <random>
//! <master secret>`), so Wireshark and tshark decrypt the DTLS records and
//! show SCTP, DCEP and data-channel messages from the capture file alone.
//! The block goes in front of the first packet captured after the secret
//! exists; a received datagram is captured after the machine handled it, so
//! the DSB precedes the peer's encrypted Finished too.
//!
//! Wireshark cannot decrypt SRTP. A machine that hands its plaintext over
//! (see [`Capture::plaintext`]) gets it written on a second interface named
//! `srtp-plaintext`: each decrypted RTP packet as a UDP datagram between
//! the same IP addresses on port [`PLAINTEXT_RTP_PORT`] (5004), RTCP on
//! [`PLAINTEXT_RTCP_PORT`] (5005). Decode them with
//! `tshark -d udp.port==5004,rtp -d udp.port==5005,rtcp`. A server's
//! capture (the SFU's, [`Capture::plaintext_to`]) keeps the remote end's
//! real port, so that participants behind one IP address stay apart; the
//! local end's port still says RTP or RTCP.
//!
//! A driver with no capture set pays one `Option` check per datagram.

pub mod live;
pub mod pcapng;
pub mod xray;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

pub use pcapng::Direction;
use pcapng::Writer;

use crate::peer::Plaintext;
use crate::sim::{CaptureKind, CaptureRecord, HostId};

/// The UDP port decrypted RTP is written to on the `srtp-plaintext` interface.
pub const PLAINTEXT_RTP_PORT: u16 = 5004;
/// The UDP port decrypted RTCP is written to on the `srtp-plaintext` interface.
pub const PLAINTEXT_RTCP_PORT: u16 = 5005;
/// The `if_name` of the plaintext interface.
pub const PLAINTEXT_INTERFACE: &str = "srtp-plaintext";

/// Bytes gathered before they are written to the output.
const FLUSH_AT: usize = 64 * 1024;

/// A pcapng capture being written (see the module doc).
pub struct Capture {
    buf: Vec<u8>,
    out: Option<Box<dyn Write + Send + Sync>>,
    /// `start` is `epoch` after the Unix epoch.
    start: Instant,
    epoch: Duration,
    /// Interface id per local IP address.
    interfaces: HashMap<IpAddr, u32>,
    plaintext_interface: Option<u32>,
    next_interface: u32,
    secrets: HashSet<String>,
    packets: u64,
    ip_id: u16,
    error: Option<io::Error>,
    scratch: Vec<u8>,
    /// The x-ray panel's feed, if asked for ([`Capture::set_live`]).
    live: Option<Box<live::Live>>,
    /// A server's panels, one per participant ([`Capture::set_feeds`]).
    feeds: Option<Box<live::Feeds>>,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("interfaces", &self.interfaces)
            .field("packets", &self.packets)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// A capture written to `out` (a file, say), timestamped by the wall
    /// clock: now is read once, here.
    pub fn new(out: impl Write + Send + Sync + 'static) -> Capture {
        let epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Capture::with_clock(Some(Box::new(out)), Instant::now(), epoch)
    }

    /// A capture created at a file path (truncated), wall-clock timestamps.
    pub fn create(path: &std::path::Path) -> io::Result<Capture> {
        let f = std::fs::File::create(path).map_err(|e| {
            io::Error::new(e.kind(), format!("capture file {}: {e}", path.display()))
        })?;
        Ok(Capture::new(f))
    }

    /// A capture kept in memory ([`Capture::take_bytes`]) whose clock is
    /// `start` = `epoch` after the Unix epoch (the simulator passes its start
    /// and zero: timestamps are then virtual time).
    pub fn in_memory(start: Instant, epoch: Duration) -> Capture {
        Capture::with_clock(None, start, epoch)
    }

    fn with_clock(
        out: Option<Box<dyn Write + Send + Sync>>,
        start: Instant,
        epoch: Duration,
    ) -> Capture {
        let mut buf = Vec::new();
        Writer::section(&mut buf);
        Capture {
            buf,
            out,
            start,
            epoch,
            interfaces: HashMap::new(),
            plaintext_interface: None,
            next_interface: 0,
            secrets: HashSet::new(),
            packets: 0,
            ip_id: 0,
            error: None,
            scratch: Vec::new(),
            live: None,
            feeds: None,
        }
    }

    /// Also decodes every packet as it is captured, for a live ladder
    /// ([`Capture::take_live`]; see [`live`]); `None` stops it.
    pub fn set_live(&mut self, config: Option<live::Config>) {
        self.live = config.map(|c| {
            let mut l = live::Live::new(c);
            for s in &self.secrets {
                l.key_log(s);
            }
            Box::new(l)
        });
    }

    /// The live ladder's lines decoded since the last call (none without
    /// [`Capture::set_live`]); `now` closes the seconds before it (their
    /// RTP summaries).
    pub fn take_live(&mut self, now: Instant) -> Vec<xray::Line> {
        let t = now.saturating_duration_since(self.start);
        self.live.as_mut().map_or_else(Vec::new, |l| l.take(t))
    }

    /// Also keeps every packet for per-participant live ladders (a
    /// server's pages, see [`live::Feeds`]); `None` stops it.
    pub fn set_feeds(&mut self, config: Option<live::Config>) {
        self.feeds = config.map(|c| Box::new(live::Feeds::new(c)));
    }

    /// The per-participant ladders, if set ([`Capture::set_feeds`]).
    pub fn feeds_mut(&mut self) -> Option<&mut live::Feeds> {
        self.feeds.as_deref_mut()
    }

    /// The capture's time of `now` (since it started), as its live
    /// ladders count it.
    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }

    /// How many packets were captured.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// How many distinct key log lines were recorded.
    pub fn secrets(&self) -> usize {
        self.secrets.len()
    }

    fn time(&self, now: Instant) -> Duration {
        self.epoch + now.saturating_duration_since(self.start)
    }

    fn interface(&mut self, local: IpAddr) -> u32 {
        if let Some(&i) = self.interfaces.get(&local) {
            return i;
        }
        let i = self.next_interface;
        self.next_interface += 1;
        Writer::interface(&mut self.buf, &local.to_string(), "rtclab local address");
        self.interfaces.insert(local, i);
        i
    }

    /// Records one datagram sent from or received on `local`.
    pub fn datagram(
        &mut self,
        now: Instant,
        direction: Direction,
        local: SocketAddr,
        remote: SocketAddr,
        contents: &[u8],
    ) {
        let t = self.time(now);
        self.datagram_at(t, direction, local, remote, contents);
    }

    /// As [`Capture::datagram`], at `time` since the Unix epoch.
    pub fn datagram_at(
        &mut self,
        time: Duration,
        direction: Direction,
        local: SocketAddr,
        remote: SocketAddr,
        contents: &[u8],
    ) {
        let iface = self.interface(local.ip());
        self.write_udp(iface, time, direction, local, remote, contents);
    }

    /// Records decrypted RTP (or RTCP) on the `srtp-plaintext` interface, as
    /// UDP between the addresses of the datagram it came in or went out in,
    /// on the ports [`PLAINTEXT_RTP_PORT`] / [`PLAINTEXT_RTCP_PORT`].
    pub fn plaintext(
        &mut self,
        now: Instant,
        direction: Direction,
        local: IpAddr,
        remote: IpAddr,
        rtcp: bool,
        packet: &[u8],
    ) {
        let t = self.time(now);
        self.plaintext_at(t, direction, local, remote, rtcp, packet);
    }

    /// As [`Capture::plaintext`], at `time` since the Unix epoch.
    pub fn plaintext_at(
        &mut self,
        time: Duration,
        direction: Direction,
        local: IpAddr,
        remote: IpAddr,
        rtcp: bool,
        packet: &[u8],
    ) {
        let port = plaintext_port(rtcp);
        let remote = SocketAddr::new(remote, port);
        self.plaintext_between(time, direction, local, remote, rtcp, packet);
    }

    /// As [`Capture::plaintext`], but the remote end keeps its real
    /// address (IP and port): a server's capture, where many participants
    /// may share one IP address (a NAT, loopback), so that each one's
    /// decrypted media can be told apart ([`extract`], the SFU's live
    /// panels). The local end is on the RTP or RTCP port as ever, which
    /// is what tells them apart (`tshark -d udp.port==5004,rtp` matches
    /// either end).
    pub fn plaintext_to(
        &mut self,
        now: Instant,
        direction: Direction,
        local: IpAddr,
        remote: SocketAddr,
        rtcp: bool,
        packet: &[u8],
    ) {
        let t = self.time(now);
        self.plaintext_between(t, direction, local, remote, rtcp, packet);
    }

    fn plaintext_between(
        &mut self,
        time: Duration,
        direction: Direction,
        local: IpAddr,
        remote: SocketAddr,
        rtcp: bool,
        packet: &[u8],
    ) {
        let iface = match self.plaintext_interface {
            Some(i) => i,
            None => {
                let i = self.next_interface;
                self.next_interface += 1;
                Writer::interface(
                    &mut self.buf,
                    PLAINTEXT_INTERFACE,
                    "decrypted SRTP: RTP on UDP port 5004, RTCP on 5005",
                );
                self.plaintext_interface = Some(i);
                i
            }
        };
        let local = SocketAddr::new(local, plaintext_port(rtcp));
        self.write_udp(iface, time, direction, local, remote, packet);
    }

    fn write_udp(
        &mut self,
        iface: u32,
        time: Duration,
        direction: Direction,
        local: SocketAddr,
        remote: SocketAddr,
        contents: &[u8],
    ) {
        let (src, dst) = match direction {
            Direction::Outbound => (local, remote),
            Direction::Inbound => (remote, local),
        };
        // A datagram between families (an IPv4-mapped socket) is written
        // with both addresses in the local one's family where possible.
        let (src, dst) = same_family(src, dst);
        self.scratch.clear();
        self.ip_id = self.ip_id.wrapping_add(1);
        if !crate::sim::ip_udp_packet(src, dst, contents, self.ip_id, &mut self.scratch) {
            return;
        }
        Writer::packet(&mut self.buf, iface, time, Some(direction), &self.scratch);
        self.packets += 1;
        if self.live.is_some() || self.feeds.is_some() {
            let d = xray::Datagram {
                time: time.saturating_sub(self.epoch),
                packet: usize::try_from(self.packets).unwrap_or(usize::MAX),
                source: src,
                destination: dst,
                direction: Some(direction),
                plaintext: Some(iface) == self.plaintext_interface,
                payload: contents,
            };
            if let Some(l) = self.live.as_mut() {
                l.datagram(&d);
            }
            if let Some(f) = self.feeds.as_mut() {
                f.datagram(&d);
            }
        }
        if self.buf.len() >= FLUSH_AT {
            self.write_out();
        }
    }

    /// A TCP connection `local` opened to `remote` (signaling, say): its
    /// handshake (SYN, SYN-ACK, ACK) is written, and the flow numbers the
    /// bytes that follow ([`Capture::tcp_data`]) as TCP would (RFC 9293
    /// §3.4), so that Wireshark follows the stream (HTTP, WebSocket) and
    /// `rtclab xray` reads it.
    pub fn tcp_open(&mut self, now: Instant, local: SocketAddr, remote: SocketAddr) -> TcpFlow {
        let mut flow = TcpFlow {
            local,
            remote,
            next_out: 1_000,
            next_in: 50_000,
        };
        let t = self.time(now);
        let (out, inb) = (Direction::Outbound, Direction::Inbound);
        self.tcp_segment(t, &flow, out, flow.next_out, 0, TCP_SYN, &[]);
        let ack = flow.next_out.wrapping_add(1);
        self.tcp_segment(t, &flow, inb, flow.next_in, ack, TCP_SYN | TCP_ACK, &[]);
        flow.next_out = flow.next_out.wrapping_add(1);
        flow.next_in = flow.next_in.wrapping_add(1);
        self.tcp_segment(t, &flow, out, flow.next_out, flow.next_in, TCP_ACK, &[]);
        flow
    }

    /// Bytes of `flow` sent (outbound) or received, as segments of at
    /// most 16 KiB.
    pub fn tcp_data(
        &mut self,
        now: Instant,
        flow: &mut TcpFlow,
        direction: Direction,
        data: &[u8],
    ) {
        let t = self.time(now);
        for chunk in data.chunks(16 * 1024) {
            let (seq, ack) = flow.numbers(direction);
            self.tcp_segment(t, flow, direction, seq, ack, TCP_PSH | TCP_ACK, chunk);
            flow.advance(direction, chunk.len());
        }
    }

    /// The end of one direction of `flow` (a FIN from its sender).
    pub fn tcp_close(&mut self, now: Instant, flow: &mut TcpFlow, direction: Direction) {
        let t = self.time(now);
        let (seq, ack) = flow.numbers(direction);
        self.tcp_segment(t, flow, direction, seq, ack, TCP_FIN | TCP_ACK, &[]);
        flow.advance(direction, 1);
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp_segment(
        &mut self,
        time: Duration,
        flow: &TcpFlow,
        direction: Direction,
        seq: u32,
        ack: u32,
        flags: u8,
        data: &[u8],
    ) {
        let (src, dst) = match direction {
            Direction::Outbound => (flow.local, flow.remote),
            Direction::Inbound => (flow.remote, flow.local),
        };
        let (src, dst) = same_family(src, dst);
        // RFC 9293 §3.1: ports, sequence and acknowledgment numbers, data
        // offset (5 words), flags, window, checksum (filled in below),
        // urgent pointer.
        let mut seg = Vec::with_capacity(20 + data.len());
        seg.extend_from_slice(&src.port().to_be_bytes());
        seg.extend_from_slice(&dst.port().to_be_bytes());
        seg.extend_from_slice(&seq.to_be_bytes());
        seg.extend_from_slice(&ack.to_be_bytes());
        seg.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        seg.extend_from_slice(data);
        self.scratch.clear();
        self.ip_id = self.ip_id.wrapping_add(1);
        let (s, d, id) = (src.ip(), dst.ip(), self.ip_id);
        if !crate::sim::ip_transport_packet(s, d, 6, &mut seg, 16, id, &mut self.scratch) {
            return;
        }
        let iface = self.interface(flow.local.ip());
        Writer::packet(&mut self.buf, iface, time, Some(direction), &self.scratch);
        self.packets += 1;
        if self.buf.len() >= FLUSH_AT {
            self.write_out();
        }
    }

    /// Records a TLS key log line (`CLIENT_RANDOM …`, or a DTLS 1.3 secret)
    /// in a Decryption Secrets Block, once per distinct line.
    pub fn key_log_line(&mut self, line: &str) {
        let line = line.trim_end();
        if line.is_empty() || self.secrets.contains(line) {
            return;
        }
        self.secrets.insert(line.to_string());
        if let Some(l) = self.live.as_mut() {
            l.key_log(line);
        }
        Writer::secrets(&mut self.buf, &format!("{line}\n"));
    }

    fn write_out(&mut self) {
        let Some(out) = &mut self.out else {
            return;
        };
        if self.error.is_none() {
            if let Err(e) = out.write_all(&self.buf) {
                tracing::warn!(error = %e, "capture write failed; capturing stops");
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    /// Writes what is gathered to the output and flushes it; the first
    /// write error, if any.
    pub fn flush(&mut self) -> io::Result<()> {
        self.write_out();
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        match &mut self.out {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }

    /// The bytes written so far (of an in-memory capture: the whole file),
    /// taken out.
    pub fn take_bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

/// One participant's share of a server's capture `file`: the packets whose
/// UDP source or destination is in `addresses` (on the plaintext
/// interface too: a server writes the remote end of decrypted media with
/// its real address, [`Capture::plaintext_to`]), after a DSB of `key_log`
/// only, so that one person's download holds neither other people's
/// packets nor their secrets, even when they share an IP address.
pub fn extract(
    file: &[u8],
    addresses: &[SocketAddr],
    key_log: &[String],
) -> Result<Vec<u8>, pcapng::Error> {
    let cap = pcapng::read(file)?;
    let mut out = Vec::new();
    Writer::section(&mut out);
    for line in key_log {
        Writer::secrets(&mut out, &format!("{}\n", line.trim_end()));
    }
    let mut ids: HashMap<usize, u32> = HashMap::new();
    for p in &cap.packets {
        let Some(iface) = cap.interfaces.get(p.interface) else {
            continue;
        };
        let Some(u) = pcapng::udp(iface.link_type, p.data) else {
            continue;
        };
        let ours = |a: SocketAddr| addresses.contains(&a);
        if !ours(u.source) && !ours(u.destination) {
            continue;
        }
        let next = u32::try_from(ids.len()).unwrap_or(u32::MAX);
        let id = *ids.entry(p.interface).or_insert_with(|| {
            Writer::interface(&mut out, &iface.name, &iface.description);
            next
        });
        Writer::packet(&mut out, id, p.time, p.direction, p.data);
    }
    Ok(out)
}

/// A capture's output kept in memory and shared with whoever hands it
/// over (the demo's "download capture"): whole blocks only, up to a limit
/// past which further writes are dropped (the file so far stays valid).
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(std::sync::Arc<std::sync::Mutex<SharedInner>>);

#[derive(Debug, Default)]
struct SharedInner {
    bytes: Vec<u8>,
    limit: usize,
    full: bool,
}

impl SharedBuffer {
    /// An empty buffer that keeps at most `limit` bytes.
    pub fn new(limit: usize) -> SharedBuffer {
        SharedBuffer(std::sync::Arc::new(std::sync::Mutex::new(SharedInner {
            bytes: Vec::new(),
            limit,
            full: false,
        })))
    }

    /// A copy of what was written so far, and whether the limit cut it.
    pub fn snapshot(&self) -> (Vec<u8>, bool) {
        match self.0.lock() {
            Ok(i) => (i.bytes.clone(), i.full),
            Err(_) => (Vec::new(), true),
        }
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Ok(mut i) = self.0.lock() {
            if i.full || i.bytes.len() + buf.len() > i.limit {
                i.full = true;
            } else {
                i.bytes.extend_from_slice(buf);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes to both: a capture kept in memory and written to a file.
#[derive(Debug)]
pub struct Tee<A, B>(pub A, pub B);

impl<A: Write, B: Write> Write for Tee<A, B> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_all(buf)?;
        self.1.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()?;
        self.1.flush()
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

/// One TCP connection in a capture ([`Capture::tcp_open`]): its ends and
/// the next sequence number of each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlow {
    local: SocketAddr,
    remote: SocketAddr,
    next_out: u32,
    next_in: u32,
}

impl TcpFlow {
    /// The sequence and acknowledgment numbers of the next segment sent in
    /// `direction`.
    fn numbers(&self, direction: Direction) -> (u32, u32) {
        match direction {
            Direction::Outbound => (self.next_out, self.next_in),
            Direction::Inbound => (self.next_in, self.next_out),
        }
    }

    fn advance(&mut self, direction: Direction, n: usize) {
        let n = n as u32; // sequence numbers wrap (RFC 9293 §3.4)
        match direction {
            Direction::Outbound => self.next_out = self.next_out.wrapping_add(n),
            Direction::Inbound => self.next_in = self.next_in.wrapping_add(n),
        }
    }
}

/// The local port of decrypted RTP or RTCP on the plaintext interface.
fn plaintext_port(rtcp: bool) -> u16 {
    if rtcp {
        PLAINTEXT_RTCP_PORT
    } else {
        PLAINTEXT_RTP_PORT
    }
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let v4 = |a: SocketAddr| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(a, |v4| SocketAddr::new(v4.into(), a.port())),
        IpAddr::V4(_) => a,
    };
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(_), IpAddr::V6(_)) => (src, v4(dst)),
        (IpAddr::V6(_), IpAddr::V4(_)) => (v4(src), dst),
        _ => (src, dst),
    }
}

/// The pcapng of one simulated host's view: every datagram it sent and was
/// delivered (its NAT-side addresses), with `key_log` lines in a DSB before
/// the first packet, and `plaintext` (what its transport's tap copied, with
/// the virtual time it was drained at) on the `srtp-plaintext` interface.
/// Timestamps are virtual time (as [`crate::sim::write_pcap`]'s).
pub fn sim_pcapng<'a>(
    records: impl IntoIterator<Item = &'a CaptureRecord>,
    host: HostId,
    key_log: &[String],
    plaintext: &[(Duration, Plaintext)],
) -> Vec<u8> {
    let mut c = Capture::in_memory(Instant::now(), Duration::ZERO);
    for line in key_log {
        c.key_log_line(line);
    }
    let mut plain = plaintext.iter().peekable();
    let dir = |out: bool| {
        if out {
            Direction::Outbound
        } else {
            Direction::Inbound
        }
    };
    let mut write_plain = |c: &mut Capture, until: Option<Duration>| {
        while let Some((t, p)) = plain.next_if(|(t, _)| until.is_none_or(|u| *t <= u)) {
            let (l, r) = (p.local.ip(), p.remote.ip());
            c.plaintext_at(*t, dir(p.outbound), l, r, p.rtcp, &p.packet);
        }
    };
    for r in records.into_iter().filter(|r| r.host == host) {
        write_plain(&mut c, Some(r.time));
        match r.kind {
            CaptureKind::Sent => {
                c.datagram_at(r.time, dir(true), r.source, r.destination, &r.contents);
            }
            CaptureKind::Delivered => {
                c.datagram_at(r.time, dir(false), r.destination, r.source, &r.contents);
            }
            CaptureKind::Dropped(_) => {}
        }
    }
    write_plain(&mut c, None);
    c.take_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_writes_interfaces_secrets_and_packets() {
        let start = Instant::now();
        let mut c = Capture::in_memory(start, Duration::from_secs(1000));
        let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let b: SocketAddr = "198.51.100.2:6000".parse().unwrap();
        c.datagram(start, Direction::Outbound, a, b, b"one");
        c.key_log_line("CLIENT_RANDOM aa bb");
        c.key_log_line("CLIENT_RANDOM aa bb\n"); // once only
        c.datagram(
            start + Duration::from_millis(5),
            Direction::Inbound,
            a,
            b,
            b"two",
        );
        c.plaintext(
            start,
            Direction::Inbound,
            a.ip(),
            b.ip(),
            false,
            b"\x80\x60rtp",
        );
        let bytes = c.take_bytes();
        let cap = pcapng::read(&bytes).unwrap();
        assert_eq!(cap.interfaces.len(), 2);
        assert_eq!(cap.interfaces[1].name, PLAINTEXT_INTERFACE);
        assert_eq!(cap.key_log, "CLIENT_RANDOM aa bb\n");
        assert_eq!(cap.packets.len(), 3);
        let u = pcapng::udp(101, cap.packets[1].data).unwrap();
        assert_eq!((u.source, u.destination, u.payload), (b, a, &b"two"[..]));
        assert_eq!(cap.packets[1].time, Duration::from_millis(1_000_005));
        assert_eq!(cap.packets[1].direction, Some(Direction::Inbound));
        let u = pcapng::udp(101, cap.packets[2].data).unwrap();
        assert_eq!(u.destination.port(), PLAINTEXT_RTP_PORT);
    }

    #[test]
    fn tcp_flows_read_back_as_segments() {
        let start = Instant::now();
        let mut c = Capture::in_memory(start, Duration::ZERO);
        let (a, b): (SocketAddr, SocketAddr) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:8080".parse().unwrap(),
        );
        let mut flow = c.tcp_open(start, a, b);
        c.tcp_data(
            start,
            &mut flow,
            Direction::Outbound,
            b"GET / HTTP/1.1\r\n\r\n",
        );
        c.tcp_data(
            start,
            &mut flow,
            Direction::Inbound,
            b"HTTP/1.1 200 OK\r\n\r\n",
        );
        c.tcp_close(start, &mut flow, Direction::Outbound);
        let bytes = c.take_bytes();
        let cap = pcapng::read(&bytes).unwrap();
        let segs: Vec<pcapng::Tcp<'_>> = cap
            .packets
            .iter()
            .map(|p| pcapng::tcp(101, p.data).unwrap())
            .collect();
        let flags: Vec<u8> = segs.iter().map(|s| s.flags).collect();
        assert_eq!(flags, [0x02, 0x12, 0x10, 0x18, 0x18, 0x11]);
        assert_eq!(
            (segs[3].source, segs[3].seq, segs[3].ack),
            (a, 1001, 50_001)
        );
        assert_eq!(
            (segs[4].source, segs[4].seq, segs[4].ack),
            (b, 50_001, 1019)
        );
        assert_eq!(segs[4].payload, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(segs[5].seq, 1019);
        let ladder = xray::xray(&bytes, &xray::Filter::default()).unwrap();
        assert!(ladder.contains("TCP   HTTP GET / HTTP/1.1"), "{ladder}");
    }

    #[test]
    fn a_participants_share_of_a_capture() {
        let start = Instant::now();
        let mut c = Capture::in_memory(start, Duration::ZERO);
        let sfu: SocketAddr = "192.0.2.1:5000".parse().unwrap();
        let (p1, p2): (SocketAddr, SocketAddr) = (
            "198.51.100.1:6000".parse().unwrap(),
            "198.51.100.2:6000".parse().unwrap(),
        );
        c.key_log_line("CLIENT_RANDOM p1 secret");
        c.key_log_line("CLIENT_RANDOM p2 secret");
        c.datagram(start, Direction::Inbound, sfu, p1, b"from p1");
        c.datagram(start, Direction::Outbound, sfu, p2, b"to p2");
        c.datagram(start, Direction::Outbound, sfu, p1, b"to p1");
        // Decrypted media of both, who share an IP address.
        let p3: SocketAddr = "198.51.100.1:7000".parse().unwrap();
        c.plaintext_to(start, Direction::Inbound, sfu.ip(), p1, false, b"rtp of p1");
        c.plaintext_to(
            start,
            Direction::Outbound,
            sfu.ip(),
            p3,
            true,
            b"rtcp to p3",
        );
        let all = c.take_bytes();
        let mine = extract(&all, &[p1], &["CLIENT_RANDOM p1 secret".into()]).unwrap();
        let cap = pcapng::read(&mine).unwrap();
        assert_eq!(cap.key_log, "CLIENT_RANDOM p1 secret\n");
        assert_eq!(cap.packets.len(), 3);
        let last = pcapng::udp(101, cap.packets[1].data).unwrap();
        assert_eq!((last.destination, last.payload), (p1, &b"to p1"[..]));
        let plain = pcapng::udp(101, cap.packets[2].data).unwrap();
        assert_eq!(cap.interfaces[1].name, PLAINTEXT_INTERFACE);
        assert_eq!((plain.source, plain.payload), (p1, &b"rtp of p1"[..]));
        assert_eq!(plain.destination.port(), PLAINTEXT_RTP_PORT);
        assert!(extract(b"junk", &[p1], &[]).is_err());
    }
}
