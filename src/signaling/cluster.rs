//! Rooms shared by several signaling nodes over a [`Bus`](crate::bus::Bus),
//! sans-IO: [`super::Rooms`] itself (the same messages, rules and limits)
//! with the [`OnBus`] transport, which keeps each room's membership on the
//! bus.
//!
//! [`Cluster`] is one node's part. It never waits for the bus: what must
//! happen there comes out of [`Cluster::poll_op`] as an [`Op`] (join a
//! room's list, publish, leave, subscribe), which the server runs in order;
//! what the bus says comes back in through [`Cluster::handle_bus`]. Every
//! change of a room is an announcement on the room's channel, published by
//! the bus in the same atomic step as the change (see
//! [`Bus::join_capped`](crate::bus::Bus::join_capped)), and every node with
//! members there acts on the announcements in the bus's one order; the
//! node that asked is no exception. So members on different nodes hear
//! `join`, `joined`, `ready` and `bye` exactly as on one node.
//!
//! ```text
//!  client c (node a)          node a             bus               node b        client d
//!   create or join "r" ───▶ Op::Join ──▶ join_capped (cap = room_size) │
//!                                        └ publish "join 9@a 4@b" ──▶ │
//!   ◀── joined, ready ──── handle_bus ◀──┘                   handle_bus ──▶ join, ready
//!   message {data} ───────▶ Op::Publish ─▶ {"from":9,"data":…} ───────▶ message ──▶
//! ```
//!
//! The room size is decided by the bus (a Lua script on Redis), never by
//! two nodes counting at once. Client ids are unique across nodes: the
//! node name's hash in the high bits, a counter in the low 32 (ids stay
//! below 2^53, exact in JavaScript). Limits that differ from one node: the
//! room count (`too-many-rooms`) is this node's rooms with members here; a
//! relayed message refused by a full outbox on another node is dropped
//! there without a `busy` to its sender.

use std::collections::{BTreeMap, VecDeque};

use serde::Deserialize;
use serde_json::value::RawValue;

use super::message::{Data, ErrorCode};
use super::room::{ClientId, Config, Rooms, Transport};
use crate::bus::Announce;

/// What the server must do on the bus for a [`Cluster`], in order.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Receive the room's channel (before joining it, so that nothing is
    /// missed).
    Subscribe {
        /// The channel.
        channel: String,
    },
    /// Stop receiving it.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Append `member` to the room's list if it holds fewer than `cap`
    /// ([`Bus::join_capped`](crate::bus::Bus::join_capped)); then tell
    /// [`Cluster::handle_join_result`].
    Join {
        /// Who asked.
        client: ClientId,
        /// The room.
        room: String,
        /// The room's list.
        key: String,
        /// `ID@NODE`.
        member: String,
        /// The room size.
        cap: usize,
        /// Its channel.
        channel: String,
    },
    /// Remove `member` from the list ([`Bus::leave`](crate::bus::Bus::leave)).
    Leave {
        /// The room's list.
        key: String,
        /// `ID@NODE`.
        member: String,
        /// Its channel.
        channel: String,
    },
    /// Publish a relayed message; if the bus is away, tell
    /// [`Cluster::handle_publish_failed`].
    Publish {
        /// Who sent it.
        client: ClientId,
        /// The channel.
        channel: String,
        /// `{"from":ID,"to":ID,"data":…}`.
        payload: String,
    },
    /// Put `member` back after the bus restarted
    /// ([`Bus::restore`](crate::bus::Bus::restore)).
    Restore {
        /// The room's list.
        key: String,
        /// `ID@NODE`.
        member: String,
    },
}

/// The bus key of a room's member list.
pub fn room_key(room: &str) -> String {
    format!("rtclab:sig:room:{room}")
}

/// The bus channel of a room.
pub fn room_channel(room: &str) -> String {
    format!("rtclab:sig:{room}")
}

/// The bus key of a signaling node's liveness.
pub fn node_key(node: &str) -> String {
    format!("rtclab:sig:node:{node}")
}

/// The room of a channel name.
fn channel_room(channel: &str) -> Option<&str> {
    channel.strip_prefix("rtclab:sig:")
}

/// A member written on the bus: `ID@NODE`.
fn member(id: ClientId, node: &str) -> String {
    format!("{}@{node}", id.0)
}

/// A member read from the bus.
fn parse_member(m: &str) -> Option<(ClientId, &str)> {
    let (id, node) = m.split_once('@')?;
    Some((ClientId(id.parse().ok()?), node))
}

/// The high bits of a node's client ids: 21 bits of the FNV-1a hash of its
/// name, so that ids are below 2^53.
pub fn id_base(node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ((h & 0x1f_ffff) | 1) << 32
}

/// A relayed message on the bus.
#[derive(Deserialize)]
struct Relayed<'a> {
    from: ClientId,
    #[serde(default)]
    to: Option<ClientId>,
    #[serde(borrow)]
    data: &'a RawValue,
}

/// The [`Transport`] of rooms kept on a bus: each step becomes an [`Op`]
/// for the server to run there.
#[derive(Debug)]
pub struct OnBus {
    node: String,
    /// The node of each member of each room this node follows, as the bus
    /// announced them.
    nodes: BTreeMap<String, BTreeMap<ClientId, String>>,
    ops: VecDeque<Op>,
}

impl Transport for OnBus {
    fn join(&mut self, client: ClientId, room: &str, _: &[ClientId], cap: usize) -> Option<bool> {
        self.ops.push_back(Op::Join {
            client,
            key: room_key(room),
            member: member(client, &self.node),
            cap,
            channel: room_channel(room),
            room: room.to_string(),
        });
        None
    }

    fn leave(&mut self, client: ClientId, room: &str) -> bool {
        self.ops.push_back(Op::Leave {
            key: room_key(room),
            member: member(client, &self.node),
            channel: room_channel(room),
        });
        false
    }

    fn relay(&mut self, client: ClientId, room: &str, to: Option<ClientId>, data: &Data) -> bool {
        let payload = match to {
            Some(t) => format!(
                r#"{{"from":{},"to":{},"data":{}}}"#,
                client.0,
                t.0,
                data.get()
            ),
            None => format!(r#"{{"from":{},"data":{}}}"#, client.0, data.get()),
        };
        self.ops.push_back(Op::Publish {
            client,
            channel: room_channel(room),
            payload,
        });
        false
    }

    fn follow(&mut self, room: &str) {
        self.ops.push_back(Op::Subscribe {
            channel: room_channel(room),
        });
    }

    fn unfollow(&mut self, room: &str) {
        self.nodes.remove(room);
        self.ops.push_back(Op::Unsubscribe {
            channel: room_channel(room),
        });
    }
}

/// One signaling node's share of rooms that span nodes. See the [module
/// doc](self).
pub type Cluster = Rooms<OnBus>;

impl Cluster {
    /// Node `node`'s part (its name must pass [`crate::bus::valid_token`]
    /// without `@`; the server checks it). Its client ids are unique
    /// across nodes.
    pub fn for_node(config: Config, node: &str) -> Cluster {
        let bus = OnBus {
            node: node.to_string(),
            nodes: BTreeMap::new(),
            ops: VecDeque::new(),
        };
        Rooms::with_transport(config, id_base(node) + 1, bus)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.transport.node
    }

    /// The next thing to do on the bus.
    pub fn poll_op(&mut self) -> Option<Op> {
        self.transport.ops.pop_front()
    }

    /// Every room with members here, with its members on other nodes as
    /// `(member, node)`: the server refreshes these rooms' lists on the
    /// bus and removes the members whose node is dead.
    pub fn rooms(&self) -> Vec<(String, Vec<(String, String)>)> {
        let no_nodes = BTreeMap::new();
        self.rooms
            .iter()
            .map(|(room, ms)| {
                let nodes = self.transport.nodes.get(room).unwrap_or(&no_nodes);
                let remote = ms
                    .iter()
                    .filter_map(|id| Some((*id, nodes.get(id)?)))
                    .filter(|(_, n)| *n != self.node())
                    .map(|(id, n)| (member(id, n), n.clone()))
                    .collect();
                (room.clone(), remote)
            })
            .collect()
    }

    /// The bus answered an [`Op::Join`]: `Ok(true)` admitted (the
    /// announcement does the rest), `Ok(false)` full, `Err` unreachable.
    pub fn handle_join_result(
        &mut self,
        client: ClientId,
        room: &str,
        result: Result<bool, String>,
    ) {
        match result {
            Ok(true) => {}
            Ok(false) => self.not_admitted(client, room, None),
            Err(e) => self.not_admitted(client, room, Some(e)),
        }
    }

    /// A relayed message could not be published (the bus is away).
    pub fn handle_publish_failed(&mut self, client: ClientId, reason: &str) {
        if self.clients.contains_key(&client) {
            let reason = format!("message not delivered: {reason}");
            self.error(client, ErrorCode::Unavailable, reason);
        }
    }

    /// The bus came back, maybe empty: put this node's members back.
    pub fn handle_reconnected(&mut self) {
        for (id, room) in &self.clients {
            if let Some(room) = room {
                self.transport.ops.push_back(Op::Restore {
                    key: room_key(room),
                    member: member(*id, &self.transport.node),
                });
            }
        }
    }

    /// A message from the bus on `channel`. Anything unexpected is ignored.
    pub fn handle_bus(&mut self, channel: &str, payload: &str) {
        let Some(room) = channel_room(channel) else {
            return;
        };
        let room = room.to_string();
        if !self.interest.contains_key(&room) {
            return;
        }
        if let Some(a) = Announce::parse(payload) {
            match a {
                Announce::Join { member, before } => self.announced_join(&room, &member, &before),
                Announce::Leave { member } => {
                    if let Some((id, _)) = parse_member(&member) {
                        self.left(&room, id);
                        if let Some(nodes) = self.transport.nodes.get_mut(&room) {
                            nodes.remove(&id);
                        }
                    }
                }
            }
            return;
        }
        // A relayed message: never longer than a client may send, plus the
        // envelope.
        if payload.len() > self.config.max_message_bytes + 256 {
            return;
        }
        let Ok(r) = serde_json::from_str::<Relayed>(payload) else {
            return;
        };
        self.deliver(&room, r.from, r.to, Data::from(r.data.to_owned()));
    }

    fn announced_join(&mut self, room: &str, who: &str, before: &[String]) {
        let Some((id, node)) = parse_member(who) else {
            return;
        };
        let mut all: Vec<(ClientId, &str)> =
            before.iter().filter_map(|m| parse_member(m)).collect();
        let ids = all.iter().map(|(i, _)| *i).collect();
        if self.entered(room, id, node == self.node(), ids) {
            all.push((id, node));
            let nodes = all.iter().map(|(i, n)| (*i, n.to_string())).collect();
            self.transport.nodes.insert(room.to_string(), nodes);
        }
    }
}
