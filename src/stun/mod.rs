//! # STUN — Session Traversal Utilities for NAT (RFC 8489, RFC 5389, RFC 5780)
//!
//! STUN is the first thing a WebRTC endpoint says on the network. A client asks
//! a server "what address do you see me at?" (a Binding request) and learns its
//! *server-reflexive* address, the public side of its NAT. ICE reuses the same
//! messages, with short-term credentials, as connectivity checks between peers,
//! and TURN extends them to allocate relays.
//!
//! ```text
//!   client 10.0.0.2:5000 ──► NAT 203.0.113.7:61000 ──► server 198.51.100.1:3478
//!        Binding request  (transaction id T)
//!   client ◄── NAT ◄── Binding success (T, XOR-MAPPED-ADDRESS 203.0.113.7:61000)
//! ```
//!
//! A message is a 20-byte header and a list of TLV attributes (see
//! [`message`] and [`attributes`] for the diagrams).
//!
//! ## What is here
//!
//! - [`message`]: header, classes, methods, transaction ids; [`Message`], a
//!   zero-copy checked view, and [`MessageEncoder`] (RFC 8489 §5, §14).
//! - [`attributes`]: every attribute of RFC 8489 §14, the ICE attributes of
//!   RFC 8445 §16.1 and the RFC 5780 ones, typed; the rest kept raw.
//! - [`integrity`]: short- and long-term credentials (MD5 and SHA-256 password
//!   algorithms), MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256, FINGERPRINT
//!   (RFC 8489 §9, §14.5–14.7).
//! - [`client`]: sans-IO client transactions with the retransmission schedule
//!   of RFC 8489 §6.2.1 (RTO doubling, Rc, Rm).
//! - [`server`]: a sans-IO Binding server, with RFC 5780's CHANGE-REQUEST,
//!   RESPONSE-PORT, RESPONSE-ORIGIN and OTHER-ADDRESS when it has a second
//!   address; its answers carry nothing unasked (SOFTWARE only when
//!   configured, FINGERPRINT only when the request had one), to amplify as
//!   little as the RFCs allow.
//! - [`nat`]: NAT behaviour discovery (RFC 5780 §4.3, §4.4): mapping and
//!   filtering, each endpoint-independent, address-dependent or
//!   address-and-port-dependent.
//!
//! ## What is left out
//!
//! STUN over TCP/TLS framing, DNS SRV discovery, the OpaqueString (SASLprep)
//! normalisation of passwords, the nonce cookie "security features" of RFC 8489
//! §9.2 (server side), and RFC 5780's PADDING reflection (the server never
//! pads its responses, so it never answers with more than a fixed size).

pub mod attributes;
pub mod client;
mod error;
pub mod integrity;
pub mod message;
pub mod nat;
pub mod server;

pub use attributes::{Attribute, ErrorCode, PasswordAlgorithm, attr};
pub use client::{Client, Response, TransactionError};
pub use error::Error;
pub use integrity::IntegrityKey;
pub use message::{
    Class, HEADER_LEN, MAGIC_COOKIE, Message, MessageEncoder, MessageType, Method, RawAttribute,
    TransactionId, is_stun,
};
pub use nat::{
    DiscoveryError, DiscoveryMode, FilteringBehavior, MappingBehavior, NatDiscovery, NatReport,
};
pub use server::BindingServer;

#[cfg(test)]
mod tests;
