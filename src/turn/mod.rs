//! # TURN — Traversal Using Relays around NAT (RFC 8656, formerly RFC 5766)
//!
//! When neither peer can reach the other directly (both behind symmetric
//! NATs, or a firewall that lets only outbound UDP through), ICE falls back to
//! a relay: a TURN server on the public internet gives the client a *relayed
//! transport address* on the server itself, and forwards datagrams between
//! that address and the peers the client has given a *permission*.
//!
//! ```text
//!   client ──── NAT ─────────► TURN server ◄──────────── peer
//!  10.0.0.2:5000       listening 198.51.100.1:3478
//!                      relayed   198.51.100.1:50000 ────► 203.0.113.9:7000
//!
//!  client→server: Send indication (XOR-PEER-ADDRESS, DATA) or ChannelData
//!  server→peer:   plain UDP from the relayed address
//!  peer→server:   plain UDP to the relayed address (dropped without a permission)
//!  server→client: Data indication or ChannelData
//! ```
//!
//! TURN messages are STUN messages with new methods (Allocate, Refresh,
//! CreatePermission, ChannelBind, Send, Data) and attributes; requests are
//! authenticated with long-term credentials (RFC 8489 §9.2). Once a channel is
//! bound, data travels with a 4-byte [`ChannelData`] header instead of a
//! 36-byte indication.
//!
//! ## What is here
//!
//! - [`attributes`]: the TURN attributes of RFC 8656 §18, typed.
//! - [`channel_data`]: ChannelData framing and its padding rule (§12.4–12.6).
//! - [`client`]: a sans-IO client (§7 allocations with the 401/438 dance and
//!   refreshes, §9 permissions, §10–11 Send/Data indications, §12 channels).
//! - [`peer_policy`]: the IP ranges a server refuses to relay to (403) or
//!   allows, with rtclab's defaults beside coturn's.
//! - [`throttle`]: the server ignores, for a growing back-off, a source that
//!   keeps failing authentication (password guessing), in a capped table.
//! - [`stream`]: TURN over TCP, a stream cut into STUN and ChannelData
//!   messages (RFC 8656 §3.1, §12.5) in a bounded buffer.
//! - [`server`]: a sans-IO server (over UDP and TCP, relay ports bound on
//!   demand with EVEN-PORT pairs and RESERVATION-TOKEN, ephemeral
//!   credentials from a shared secret) with quotas, stateless nonces bound to the
//!   client's 5-tuple (a replayed request from elsewhere gets 438), permission
//!   and channel lifetimes and the RFC's error codes, and unauthenticated
//!   answers no bigger than RFC 8489 §9.2.4 requires; its relay path is O(1)
//!   per datagram and allocation-free ([`Server::handle_relay`]), its
//!   lifetimes sit in a deadline heap.
//!
//! ## What is left out
//!
//! TURN over TLS/DTLS to the server and TCP relaying (RFC 6062), IPv4 and
//! IPv6 dual allocations (ADDITIONAL-ADDRESS-FAMILY, §7.2 ¶ on dual stack),
//! EVEN-PORT/RESERVATION-TOKEN semantics in the client (the attributes are
//! typed), DONT-FRAGMENT handling, ICMP forwarding (§11.5), the SHA-256
//! password algorithm negotiation of RFC 8489 (MD5 keys only), and mobility
//! (RFC 8016). The client speaks UDP only.

pub mod attributes;
pub mod channel_data;
pub mod client;
pub mod peer_policy;
pub mod server;
pub mod stream;
pub mod throttle;

pub use attributes::{AddressFamily, TurnAttribute};
pub use channel_data::{ChannelData, ChannelDataError};
pub use client::{Client, Error, ServerTransport, State};
pub use peer_policy::{IpRange, RangeError};
pub use server::{RelayPorts, Route, Server, ServerStats, Transport};
pub use stream::{FrameError, Framer};
