//! # TURN — Traversal Using Relays around NAT (RFC 8656, formerly RFC 5766)
//!
//! Placeholder doc, completed with the client.

pub mod attributes;
pub mod channel_data;

pub use attributes::{AddressFamily, TurnAttribute};
pub use channel_data::{ChannelData, ChannelDataError};
