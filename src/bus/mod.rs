//! The bus between nodes: how several `rtclab signaling` or `rtclab sfu`
//! processes share rooms.
//!
//! One process needs nothing: [`MemoryBus`] keeps everything in memory
//! (and lets a test run several nodes in one process). Beyond one machine,
//! [`RedisBus`] puts the same operations on a Redis server: pub/sub for
//! messages, keys with a time to live (TTL) for who owns what and who is
//! alive, and a list per room whose size limit is checked by a Lua script,
//! so that two nodes never both admit the last place.
//!
//! ```text
//!   node a ──┐  PUBLISH rtclab:room:foo "join 7@a 3@b"     ┌── node b
//!            ├─────────────────▶  Redis  ─────────────────▶┤
//!            │  SET rtclab:owner:foo a NX PX 4000           │
//!            │  SET rtclab:node:a {"load":3,…} PX 3000      │
//! ```
//!
//! What lives on the bus, and for how long:
//!
//! | key | kind | TTL | refreshed by |
//! |---|---|---|---|
//! | `rtclab:node:NAME` | string (the node's URL and load) | [`NODE_TTL`] | the node, every [`HEARTBEAT`] |
//! | `rtclab:room:NAME` | list of members `ID@NODE` | [`ROOM_TTL`] | every node with a member there |
//! | `rtclab:owner:NAME` | string (the owning node) | [`NODE_TTL`] | the SFU node that owns the room |
//!
//! A node that dies stops refreshing: its keys expire, the other nodes
//! notice its members' node key is gone and remove them (announcing
//! `leave`), and an empty room's list is deleted by Redis itself. So
//! nothing outlives its users by more than a few seconds.
//!
//! The bus is an app-tier service: the machines below it never see it;
//! the servers (src/signaling/server.rs, src/sfu/placement.rs) call it
//! around their sans-IO cores.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub mod contract;
pub mod memory;
pub mod redis;

pub use memory::{MemoryBus, MemoryHub};
pub use redis::RedisBus;

/// A boxed future, so that [`Bus`] can be used as `dyn Bus`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How often a node refreshes what it holds on the bus.
pub const HEARTBEAT: Duration = Duration::from_millis(1000);
/// How long a node's liveness key (and a room it owns) outlives its last
/// refresh: a node killed with `kill -9` is known dead, and its rooms free,
/// within this time.
pub const NODE_TTL: Duration = Duration::from_millis(3000);
/// How long a room's member list outlives its last refresh (when every
/// node with a member there died at once).
pub const ROOM_TTL: Duration = Duration::from_millis(5000);

/// What went wrong on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The bus address could not be used (`redis://HOST:PORT` expected).
    BadUrl(String),
    /// The bus server could not be reached or dropped the connection; the
    /// operation did not happen (or its reply was lost). The bus reconnects
    /// by itself.
    Unavailable(String),
    /// The bus server answered something this client did not expect.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::BadUrl(e) => write!(f, "bad bus address: {e}"),
            Error::Unavailable(e) => write!(f, "the bus is unreachable: {e}"),
            Error::Protocol(e) => write!(f, "unexpected answer from the bus: {e}"),
        }
    }
}

impl std::error::Error for Error {}

/// What a node hears from the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message published on a channel this node subscribed to.
    Message {
        /// The channel.
        channel: String,
        /// The text published.
        payload: String,
    },
    /// The connection to the bus was lost and is back: the bus may have
    /// restarted empty, so a node puts back what it holds (its liveness,
    /// its rooms' members with [`Bus::restore`], the rooms it owns).
    /// Subscriptions are already renewed. Messages published while it was
    /// away are lost.
    Reconnected,
}

/// An announcement of a member list: what [`Bus::join_capped`] and
/// [`Bus::leave`] publish on the list's channel, in the same atomic step as
/// the change, so that every subscriber sees changes in one order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Announce {
    /// `join MEMBER BEFORE…`: `member` was appended to a list that held
    /// `before`.
    Join {
        /// Who joined.
        member: String,
        /// The members before it, in order.
        before: Vec<String>,
    },
    /// `leave MEMBER`: `member` was removed.
    Leave {
        /// Who left.
        member: String,
    },
}

impl Announce {
    /// Reads an announcement; `None` if `payload` is something else.
    pub fn parse(payload: &str) -> Option<Announce> {
        let mut words = payload.split(' ');
        match words.next()? {
            "join" => {
                let member = words.next().filter(|m| !m.is_empty())?.to_string();
                // A room holds at most a few hundred members: bound what a
                // corrupt message can make us allocate anyway.
                let before: Vec<String> = words
                    .take(MAX_MEMBERS)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect();
                Some(Announce::Join { member, before })
            }
            "leave" => {
                let member = words.next().filter(|m| !m.is_empty())?.to_string();
                Some(Announce::Leave { member })
            }
            _ => None,
        }
    }

    /// The text published.
    pub fn to_text(&self) -> String {
        match self {
            Announce::Join { member, before } => {
                let mut s = format!("join {member}");
                for b in before {
                    s.push(' ');
                    s.push_str(b);
                }
                s
            }
            Announce::Leave { member } => format!("leave {member}"),
        }
    }
}

/// Most members an [`Announce::Join`] is read with.
pub const MAX_MEMBERS: usize = 4096;

/// Is `s` usable as a member, node name or key part: 1 to 64 of
/// `A-Z a-z 0-9 - _ . @` (no spaces: announcements are space-separated).
pub fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
}

/// The operations nodes share. Every call is one atomic step on the bus
/// server (a command or a Lua script on Redis; one lock in memory).
pub trait Bus: Send + Sync {
    /// Publishes `payload` on `channel` to every node subscribed to it.
    fn publish(&self, channel: &str, payload: &str) -> BoxFuture<'_, Result<(), Error>>;
    /// Publishes each `(channel, payload)` in order, in one round trip
    /// where the bus allows (a Redis pipeline): what a node's relays
    /// cost when many are queued.
    fn publish_batch<'a>(
        &'a self,
        messages: &'a [(String, String)],
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            for (channel, payload) in messages {
                self.publish(channel, payload).await?;
            }
            Ok(())
        })
    }
    /// From now on, messages on `channel` come as [`Event::Message`].
    fn subscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>>;
    /// No more messages from `channel`.
    fn unsubscribe(&self, channel: &str) -> BoxFuture<'_, Result<(), Error>>;
    /// The events for this node (taken once; `None` after).
    fn take_events(&self) -> Option<tokio::sync::mpsc::Receiver<Event>>;

    /// Sets `key` to `value` for `ttl` if it is absent (Redis `SET NX PX`):
    /// true if this call set it.
    fn claim(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>>;
    /// Extends `key`'s life to `ttl` if it still holds `value`; false if it
    /// expired or someone else holds it.
    fn refresh(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>>;
    /// Deletes `key` if it holds `value`.
    fn release(&self, key: &str, value: &str) -> BoxFuture<'_, Result<bool, Error>>;
    /// Sets `key` to `value` for `ttl`, whatever it held.
    fn put(&self, key: &str, value: &str, ttl: Duration) -> BoxFuture<'_, Result<(), Error>>;
    /// The string at `key`.
    fn get(&self, key: &str) -> BoxFuture<'_, Result<Option<String>, Error>>;
    /// Every string key starting with `prefix`, with its value.
    fn scan(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<(String, String)>, Error>>;
    /// Every key (of any kind) starting with `prefix`.
    fn keys(&self, prefix: &str) -> BoxFuture<'_, Result<Vec<String>, Error>>;

    /// Appends `member` to the list at `key` if it holds fewer than `cap`
    /// (and not `member` already), gives the list `ttl`, and publishes
    /// [`Announce::Join`] on `channel`, all in one step: `Some(before)`,
    /// the members before it, or `None` when the list is full.
    fn join_capped(
        &self,
        key: &str,
        member: &str,
        cap: usize,
        ttl: Duration,
        channel: &str,
    ) -> BoxFuture<'_, Result<Option<Vec<String>>, Error>>;
    /// Removes `member` from the list at `key` (deleting an emptied list)
    /// and, if it was there, publishes [`Announce::Leave`] on `channel`:
    /// true if it was there.
    fn leave(&self, key: &str, member: &str, channel: &str) -> BoxFuture<'_, Result<bool, Error>>;
    /// Puts `member` back in the list at `key` if it is missing, without
    /// announcing it, and gives the list `ttl` (after [`Event::Reconnected`]:
    /// a member admitted before the bus restarted keeps its place).
    fn restore(&self, key: &str, member: &str, ttl: Duration) -> BoxFuture<'_, Result<(), Error>>;
    /// Gives `key` (of any kind) `ttl` from now: false if it is absent.
    fn touch(&self, key: &str, ttl: Duration) -> BoxFuture<'_, Result<bool, Error>>;
    /// The list at `key`.
    fn members(&self, key: &str) -> BoxFuture<'_, Result<Vec<String>, Error>>;
}

/// A bus from its address: `memory` (or nothing) for the in-process bus,
/// `redis://HOST:PORT[/DB]` for Redis.
pub fn connect(url: Option<&str>) -> Result<Arc<dyn Bus>, Error> {
    match url {
        None | Some("memory") | Some("") => Ok(Arc::new(MemoryHub::new().node())),
        Some(u) if u.starts_with("redis://") => Ok(Arc::new(RedisBus::open(u)?)),
        Some(u) => Err(Error::BadUrl(format!(
            "{u:?}: expected redis://HOST:PORT or memory"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_and_junk_is_not_one() {
        let a = Announce::Join {
            member: "7@a".into(),
            before: vec!["3@b".into(), "4@a".into()],
        };
        assert_eq!(a.to_text(), "join 7@a 3@b 4@a");
        assert_eq!(Announce::parse(&a.to_text()), Some(a));
        let first = Announce::Join {
            member: "1@a".into(),
            before: vec![],
        };
        assert_eq!(Announce::parse("join 1@a"), Some(first));
        let l = Announce::Leave {
            member: "7@a".into(),
        };
        assert_eq!(Announce::parse("leave 7@a"), Some(l));
        for junk in ["", "join", "join ", "leave", "{\"from\":1}", "hello 1"] {
            assert_eq!(Announce::parse(junk), None, "{junk:?}");
        }
        let huge = format!("join x {}", "y ".repeat(100_000));
        match Announce::parse(&huge) {
            Some(Announce::Join { before, .. }) => assert_eq!(before.len(), MAX_MEMBERS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tokens_are_checked() {
        assert!(valid_token("node-1.a_b@c"));
        for bad in ["", "a b", "é", "a*", &"x".repeat(65)] {
            assert!(!valid_token(bad), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn announcements_round_trip(
            member in "[a-z0-9@]{1,10}",
            before in proptest::collection::vec("[a-z0-9@]{1,10}", 0..20),
            leave in proptest::bool::ANY,
        ) {
            let a = if leave {
                Announce::Leave { member }
            } else {
                Announce::Join { member, before }
            };
            proptest::prop_assert_eq!(Announce::parse(&a.to_text()), Some(a));
        }

        #[test]
        fn any_text_parses_without_panicking(s in ".{0,200}") {
            let _ = Announce::parse(&s);
        }
    }
}
