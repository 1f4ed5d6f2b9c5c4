//! Rooms shared by several signaling nodes over a [`Bus`](crate::bus::Bus),
//! sans-IO: the same messages, rules and limits as [`super::Rooms`], with
//! the room's membership kept on the bus.
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

use super::message::{ClientMessage, Data, ErrorCode, ServerMessage};
use super::room::{ClientId, Config, Outgoing, validate_room_name};
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

#[derive(Debug, Default)]
struct Local {
    /// The room it is in.
    room: Option<String>,
    /// The room it asked to join, until the bus answers.
    joining: Option<String>,
}

/// One signaling node's share of rooms that span nodes. See the [module
/// doc](self).
#[derive(Debug)]
pub struct Cluster {
    config: Config,
    node: String,
    next_id: u64,
    clients: BTreeMap<ClientId, Local>,
    /// The members of each room this node has a member in (or is joining),
    /// in join order, as the bus announced them.
    rooms: BTreeMap<String, Vec<(ClientId, String)>>,
    /// Local members (joined or joining) per room.
    interest: BTreeMap<String, usize>,
    output: VecDeque<Outgoing>,
    ops: VecDeque<Op>,
}

impl Cluster {
    /// Node `node`'s part (its name must pass [`crate::bus::valid_token`]
    /// without `@`; the server checks it).
    pub fn new(config: Config, node: &str) -> Cluster {
        Cluster {
            config,
            node: node.to_string(),
            next_id: id_base(node) + 1,
            clients: BTreeMap::new(),
            rooms: BTreeMap::new(),
            interest: BTreeMap::new(),
            output: VecDeque::new(),
            ops: VecDeque::new(),
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// A new client; its id is unique across nodes.
    pub fn connect(&mut self) -> ClientId {
        let id = ClientId(self.next_id);
        self.next_id += 1;
        self.clients.insert(id, Local::default());
        id
    }

    /// The client went away: it leaves its room (the others hear `bye`
    /// when the bus announces it).
    pub fn disconnect(&mut self, client: ClientId) {
        self.leave(client);
        self.clients.remove(&client);
    }

    /// Text from a client, as [`super::Rooms::handle_text`].
    pub fn handle_text(&mut self, client: ClientId, text: &str) {
        if !self.clients.contains_key(&client) {
            return;
        }
        if text.len() > self.config.max_message_bytes {
            let limit = self.config.max_message_bytes;
            let reason = format!("the message is {} bytes; at most {limit}", text.len());
            self.error(client, ErrorCode::TooLarge, reason);
            return;
        }
        match serde_json::from_str::<ClientMessage>(text) {
            Ok(m) => self.handle_message(client, m),
            Err(e) => self.error(
                client,
                ErrorCode::Malformed,
                format!("not a signaling message: {e}"),
            ),
        }
    }

    /// A binary frame: an error, as on one node.
    pub fn handle_binary(&mut self, client: ClientId, len: usize) {
        if self.clients.contains_key(&client) {
            let reason = format!("a binary frame of {len} bytes; messages are JSON text");
            self.error(client, ErrorCode::Malformed, reason);
        }
    }

    /// A parsed message from a client.
    pub fn handle_message(&mut self, client: ClientId, message: ClientMessage) {
        if !self.clients.contains_key(&client) {
            return;
        }
        match message {
            ClientMessage::CreateOrJoin { room } => self.create_or_join(client, room),
            ClientMessage::Message { to, data } => self.relay(client, to, data),
            ClientMessage::Bye {} => {
                if !self.leave(client) {
                    self.error(client, ErrorCode::NotInRoom, "bye: not in a room".into());
                }
            }
        }
    }

    /// The next message for a local client.
    pub fn poll_output(&mut self) -> Option<Outgoing> {
        self.output.pop_front()
    }

    /// The next thing to do on the bus.
    pub fn poll_op(&mut self) -> Option<Op> {
        self.ops.pop_front()
    }

    /// The room `client` is in.
    pub fn room_of(&self, client: ClientId) -> Option<&str> {
        self.clients.get(&client)?.room.as_deref()
    }

    /// How many rooms have members on this node.
    pub fn room_count(&self) -> usize {
        self.interest.len()
    }

    /// How many clients are connected to this node.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Every room with members here, with its members on other nodes as
    /// `(member, node)`: the server refreshes these rooms' lists on the
    /// bus and removes the members whose node is dead.
    pub fn rooms(&self) -> Vec<(String, Vec<(String, String)>)> {
        self.rooms
            .iter()
            .map(|(room, ms)| {
                let remote = ms
                    .iter()
                    .filter(|(_, n)| *n != self.node)
                    .map(|(id, n)| (member(*id, n), n.clone()))
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
        let admitted = matches!(result, Ok(true));
        if admitted {
            return;
        }
        let Some(local) = self.clients.get_mut(&client) else {
            return;
        };
        if local.joining.as_deref() != Some(room) {
            return;
        }
        local.joining = None;
        self.lose_interest(room);
        match result {
            Ok(_) => self.send(
                client,
                ServerMessage::Full {
                    room: room.to_string(),
                },
            ),
            Err(e) => self.error(
                client,
                ErrorCode::Unavailable,
                format!("create or join: {e}"),
            ),
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
        for (id, local) in &self.clients {
            if let Some(room) = &local.room {
                self.ops.push_back(Op::Restore {
                    key: room_key(room),
                    member: member(*id, &self.node),
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
                Announce::Leave { member } => self.announced_leave(&room, &member),
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
        let data = Data::from(r.data.to_owned());
        let recipients: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(id, l)| {
                **id != r.from
                    && l.room.as_deref() == Some(room.as_str())
                    && r.to.is_none_or(|t| t == **id)
            })
            .map(|(id, _)| *id)
            .collect();
        for to in recipients {
            let data = data.clone();
            self.send(to, ServerMessage::Message { from: r.from, data });
        }
    }

    fn announced_join(&mut self, room: &str, who: &str, before: &[String]) {
        let Some((id, node)) = parse_member(who) else {
            return;
        };
        let node = node.to_string();
        let joining_here = node == self.node
            && self
                .clients
                .get(&id)
                .is_some_and(|l| l.joining.as_deref() == Some(room));
        if !joining_here && !self.rooms.contains_key(room) {
            // Not ours to follow yet (our own join comes later).
            return;
        }
        let before: Vec<(ClientId, String)> = before
            .iter()
            .filter_map(|m| parse_member(m).map(|(i, n)| (i, n.to_string())))
            .collect();
        let ids: Vec<ClientId> = before.iter().map(|(i, _)| *i).collect();
        let locals_before: Vec<ClientId> = ids
            .iter()
            .copied()
            .filter(|i| self.is_local_in(*i, room))
            .collect();
        for &m in &locals_before {
            let join = ServerMessage::Join {
                room: room.to_string(),
                id,
            };
            self.send(m, join);
        }
        if joining_here {
            if let Some(l) = self.clients.get_mut(&id) {
                l.joining = None;
                l.room = Some(room.to_string());
            }
            let m = if ids.is_empty() {
                ServerMessage::Created {
                    room: room.to_string(),
                    id,
                }
            } else {
                ServerMessage::Joined {
                    room: room.to_string(),
                    id,
                    members: ids.clone(),
                }
            };
            self.send(id, m);
        }
        let mut all = before;
        all.push((id, node));
        if all.len() >= 2 {
            let members: Vec<ClientId> = all.iter().map(|(i, _)| *i).collect();
            for &m in &members {
                if self.is_local_in(m, room) {
                    let ready = ServerMessage::Ready {
                        room: room.to_string(),
                        members: members.clone(),
                    };
                    self.send(m, ready);
                }
            }
        }
        self.rooms.insert(room.to_string(), all);
    }

    fn announced_leave(&mut self, room: &str, who: &str) {
        let Some((id, _)) = parse_member(who) else {
            return;
        };
        let Some(members) = self.rooms.get_mut(room) else {
            return;
        };
        members.retain(|(m, _)| *m != id);
        let others: Vec<ClientId> = members.iter().map(|(m, _)| *m).collect();
        for m in others {
            if self.is_local_in(m, room) {
                let bye = ServerMessage::Bye {
                    room: room.to_string(),
                    id,
                };
                self.send(m, bye);
            }
        }
        // A member of this node removed by another (it thought this node
        // dead): it is out of the room.
        if let Some(l) = self.clients.get_mut(&id)
            && l.room.as_deref() == Some(room)
        {
            l.room = None;
            self.lose_interest(room);
        }
    }

    fn is_local_in(&self, id: ClientId, room: &str) -> bool {
        self.clients
            .get(&id)
            .is_some_and(|l| l.room.as_deref() == Some(room))
    }

    fn send(&mut self, to: ClientId, message: ServerMessage) {
        self.output.push_back(Outgoing { to, message });
    }

    fn error(&mut self, to: ClientId, code: ErrorCode, reason: String) {
        self.send(to, ServerMessage::Error { code, reason });
    }

    fn gain_interest(&mut self, room: &str) {
        let n = self.interest.entry(room.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.ops.push_back(Op::Subscribe {
                channel: room_channel(room),
            });
        }
    }

    fn lose_interest(&mut self, room: &str) {
        let Some(n) = self.interest.get_mut(room) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.interest.remove(room);
            self.rooms.remove(room);
            self.ops.push_back(Op::Unsubscribe {
                channel: room_channel(room),
            });
        }
    }

    fn create_or_join(&mut self, client: ClientId, room: String) {
        if let Err(reason) = validate_room_name(&room) {
            self.error(client, ErrorCode::BadRoom, reason);
            return;
        }
        let Some(local) = self.clients.get(&client) else {
            return;
        };
        if let Some(current) = local.room.as_ref().or(local.joining.as_ref()) {
            let reason = format!("already in room {current:?}; send bye first");
            self.error(client, ErrorCode::AlreadyInRoom, reason);
            return;
        }
        if !self.interest.contains_key(&room) && self.interest.len() >= self.config.max_rooms {
            let reason = format!("the server has {} rooms already", self.interest.len());
            self.error(client, ErrorCode::TooManyRooms, reason);
            return;
        }
        if let Some(l) = self.clients.get_mut(&client) {
            l.joining = Some(room.clone());
        }
        self.gain_interest(&room);
        self.ops.push_back(Op::Join {
            client,
            key: room_key(&room),
            member: member(client, &self.node),
            cap: self.config.room_size,
            channel: room_channel(&room),
            room,
        });
    }

    fn relay(&mut self, client: ClientId, to: Option<ClientId>, data: Data) {
        let Some(room) = self.clients.get(&client).and_then(|l| l.room.clone()) else {
            let reason = "message: join a room first".into();
            self.error(client, ErrorCode::NotInRoom, reason);
            return;
        };
        if let Some(t) = to {
            let member = self
                .rooms
                .get(&room)
                .is_some_and(|ms| ms.iter().any(|(m, _)| *m == t));
            if t == client || !member {
                let reason = format!("message: {t} is not another member of this room");
                self.error(client, ErrorCode::NoSuchMember, reason);
                return;
            }
        }
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
            channel: room_channel(&room),
            payload,
        });
    }

    /// Takes `client` out of its room (or the room it is joining); false
    /// if it was in none.
    fn leave(&mut self, client: ClientId) -> bool {
        let Some(l) = self.clients.get_mut(&client) else {
            return false;
        };
        let Some(room) = l.room.take().or_else(|| l.joining.take()) else {
            return false;
        };
        self.ops.push_back(Op::Leave {
            key: room_key(&room),
            member: member(client, &self.node),
            channel: room_channel(&room),
        });
        self.lose_interest(&room);
        true
    }
}
