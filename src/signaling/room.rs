//! The rooms, sans-IO: which client is in which room, and who is told what.
//!
//! [`Rooms`] knows nothing of sockets or tasks. The caller (the server in
//! [`super::server`], or a test, or a chapter's example) tells it that a client
//! connected ([`Rooms::connect`]), sent some text ([`Rooms::handle_text`]) or
//! went away ([`Rooms::disconnect`]), then drains [`Rooms::poll_output`]: a list
//! of `(recipient, message)` pairs to deliver. The same input always gives the
//! same output, so every rule below is a plain unit test.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use super::message::{ClientMessage, Data, ErrorCode, ServerMessage};

/// A connected client (a browser tab's WebSocket, or a Rust member). Ids are
/// handed out in order from 1 and never reused while a [`Rooms`] lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The limits of a [`Rooms`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Most members in one room (the codelab's rooms hold two: a call).
    pub room_size: usize,
    /// Longest text a client may send, in bytes. A longer one gets an
    /// [`ErrorCode::TooLarge`] error and is dropped.
    pub max_message_bytes: usize,
    /// Most rooms at once; a `create or join` that would open one more gets
    /// [`ErrorCode::TooManyRooms`].
    pub max_rooms: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            room_size: 2,
            // An SDP offer with a few media sections and candidates is a few
            // KiB; 64 KiB leaves room and bounds what one client can make
            // the server hold.
            max_message_bytes: 64 * 1024,
            max_rooms: 10_000,
        }
    }
}

/// Longest room name, in bytes.
pub const MAX_ROOM_NAME: usize = 64;

/// Why a room name is refused: it must be 1 to [`MAX_ROOM_NAME`] characters
/// from `A-Z a-z 0-9 - _ .` (a name the page can take from its URL and show
/// without escaping).
pub fn validate_room_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the room name is empty".into());
    }
    if name.len() > MAX_ROOM_NAME {
        return Err(format!(
            "the room name is {} bytes long; at most {MAX_ROOM_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "the room name has {c:?}; only A-Z a-z 0-9 - _ . are allowed"
        ));
    }
    Ok(())
}

/// One message to deliver: to whom, and what.
#[derive(Clone, Debug, PartialEq)]
pub struct Outgoing {
    /// The recipient.
    pub to: ClientId,
    /// The message.
    pub message: ServerMessage,
}

/// Where a room's members are kept and how a step reaches them: in this
/// process alone ([`Local`], the default), or on a bus that several nodes
/// share ([`OnBus`](super::cluster::OnBus)). [`Rooms`] holds every rule
/// (who may enter, who hears what); a transport only says whether a step
/// is decided here and now, or later by the bus, which then calls back
/// into [`Rooms`].
pub trait Transport {
    /// `client` asks to enter `room`, which holds `members` as far as this
    /// node knows (at most `cap`): `Some(admitted)` when decided now,
    /// `None` when the bus decides.
    fn join(
        &mut self,
        client: ClientId,
        room: &str,
        members: &[ClientId],
        cap: usize,
    ) -> Option<bool>;
    /// `client` leaves `room`: whether the others hear it now, rather than
    /// when the bus announces it.
    fn leave(&mut self, client: ClientId, room: &str) -> bool;
    /// `data` from `client` to member `to`, or to every other member of
    /// `room`: whether it is delivered now, rather than when the bus
    /// carries it back.
    fn relay(&mut self, client: ClientId, room: &str, to: Option<ClientId>, data: &Data) -> bool;
    /// This node has a member in `room` now (or one asking to enter), and
    /// had none.
    fn follow(&mut self, _room: &str) {}
    /// This node's last member of `room` left it.
    fn unfollow(&mut self, _room: &str) {}
}

/// Rooms in this process alone: every step is decided at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct Local;

impl Transport for Local {
    fn join(&mut self, _: ClientId, _: &str, members: &[ClientId], cap: usize) -> Option<bool> {
        Some(members.is_empty() || members.len() < cap)
    }

    fn leave(&mut self, _: ClientId, _: &str) -> bool {
        true
    }

    fn relay(&mut self, _: ClientId, _: &str, _: Option<ClientId>, _: &Data) -> bool {
        true
    }
}

/// All rooms of one server, sans-IO. See the [module doc](super) for the
/// messages and the rules. With a [`Transport`] other than [`Local`], this
/// node's share of rooms that span nodes ([`super::cluster::Cluster`]).
#[derive(Debug)]
pub struct Rooms<T = Local> {
    pub(super) config: Config,
    next_id: u64,
    /// Every connected client, and the room it is in, if any.
    pub(super) clients: BTreeMap<ClientId, Option<String>>,
    /// The room a client asked to enter, until the transport answers.
    pub(super) joining: BTreeMap<ClientId, String>,
    /// Every room with a member here, and its members (here and, over a
    /// bus, elsewhere), in join order.
    pub(super) rooms: BTreeMap<String, Vec<ClientId>>,
    /// The members here (in, or asking to enter) of each room.
    pub(super) interest: BTreeMap<String, usize>,
    output: VecDeque<Outgoing>,
    pub(super) transport: T,
}

impl Rooms {
    /// No clients, no rooms.
    pub fn new(config: Config) -> Self {
        Rooms::with_transport(config, 1, Local)
    }
}

impl<T: Transport> Rooms<T> {
    /// No clients, no rooms; client ids start at `first_id`.
    pub(super) fn with_transport(config: Config, first_id: u64, transport: T) -> Self {
        Rooms {
            config,
            next_id: first_id,
            clients: BTreeMap::new(),
            joining: BTreeMap::new(),
            rooms: BTreeMap::new(),
            interest: BTreeMap::new(),
            output: VecDeque::new(),
            transport,
        }
    }

    /// The limits in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A new client: returns its id. It is in no room yet.
    pub fn connect(&mut self) -> ClientId {
        let id = ClientId(self.next_id);
        self.next_id += 1;
        self.clients.insert(id, None);
        id
    }

    /// The client went away (socket closed, task ended): it leaves its room,
    /// whose other members get `bye`. Unknown ids are ignored.
    pub fn disconnect(&mut self, client: ClientId) {
        self.leave(client);
        self.clients.remove(&client);
    }

    /// Text from a client: parsed as one [`ClientMessage`]. Too long or not a
    /// message → an `error` to that client only; nothing else changes.
    pub fn handle_text(&mut self, client: ClientId, text: &str) {
        if !self.clients.contains_key(&client) {
            return;
        }
        if text.len() > self.config.max_message_bytes {
            let limit = self.config.max_message_bytes;
            self.error(
                client,
                ErrorCode::TooLarge,
                format!("the message is {} bytes; at most {limit}", text.len()),
            );
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

    /// A binary frame from a client: signaling messages are text, so this is
    /// an `error` to that client.
    pub fn handle_binary(&mut self, client: ClientId, len: usize) {
        if self.clients.contains_key(&client) {
            let reason = format!("a binary frame of {len} bytes; messages are JSON text");
            self.error(client, ErrorCode::Malformed, reason);
        }
    }

    /// A parsed message from a client (what [`Rooms::handle_text`] calls; a
    /// Rust member sends these directly).
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

    /// The next message to deliver, in the order they arose.
    pub fn poll_output(&mut self) -> Option<Outgoing> {
        self.output.pop_front()
    }

    /// The room `client` is in.
    pub fn room_of(&self, client: ClientId) -> Option<&str> {
        self.clients.get(&client)?.as_deref()
    }

    /// The members of `room`, in join order (empty if there is no such room).
    pub fn members(&self, room: &str) -> &[ClientId] {
        self.rooms.get(room).map_or(&[], Vec::as_slice)
    }

    /// How many rooms have members here.
    pub fn room_count(&self) -> usize {
        self.interest.len()
    }

    /// How many clients are connected.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    fn send(&mut self, to: ClientId, message: ServerMessage) {
        self.output.push_back(Outgoing { to, message });
    }

    pub(super) fn error(&mut self, to: ClientId, code: ErrorCode, reason: String) {
        self.send(to, ServerMessage::Error { code, reason });
    }

    /// Whether `id` is a client here, in `room`.
    fn is_here_in(&self, id: ClientId, room: &str) -> bool {
        self.room_of(id) == Some(room)
    }

    // The codelab's server, step 7: the first client creates the room; a
    // later one is announced to the others (`join`), told `joined`, and then
    // every member hears `ready`; past the size limit, `full`. In this
    // process the transport admits at once; over a bus, the bus decides,
    // and every node tells its own members when it announces the entry.
    // ANCHOR: create_or_join
    fn create_or_join(&mut self, client: ClientId, room: String) {
        if let Err(reason) = validate_room_name(&room) {
            self.error(client, ErrorCode::BadRoom, reason);
            return;
        }
        if let Some(current) = self
            .room_of(client)
            .or(self.joining.get(&client).map(String::as_str))
        {
            let reason = format!("already in room {current:?}; send bye first");
            self.error(client, ErrorCode::AlreadyInRoom, reason);
            return;
        }
        if !self.interest.contains_key(&room) && self.interest.len() >= self.config.max_rooms {
            let reason = format!("the server has {} rooms already", self.interest.len());
            self.error(client, ErrorCode::TooManyRooms, reason);
            return;
        }
        self.joining.insert(client, room.clone());
        self.gain_interest(&room);
        let members = self.members(&room).to_vec();
        match self
            .transport
            .join(client, &room, &members, self.config.room_size)
        {
            Some(true) => {
                self.entered(&room, client, true, members);
            }
            Some(false) => self.not_admitted(client, &room, None),
            None => {}
        }
    }

    /// `id` (a client here if `here`) entered `room` after `before`, as
    /// this process decided or the bus announced: the members here hear
    /// `join`, the newcomer `created` or `joined`, and, with two or more,
    /// everyone here `ready`. False if this node does not follow the room.
    pub(super) fn entered(
        &mut self,
        room: &str,
        id: ClientId,
        here: bool,
        before: Vec<ClientId>,
    ) -> bool {
        let newcomer_here = here && self.joining.get(&id).is_some_and(|r| r == room);
        if !newcomer_here && !self.rooms.contains_key(room) {
            // Not ours to follow yet (our own join comes later).
            return false;
        }
        for &m in &before {
            if self.is_here_in(m, room) {
                let join = ServerMessage::Join {
                    room: room.to_string(),
                    id,
                };
                self.send(m, join);
            }
        }
        if newcomer_here {
            self.joining.remove(&id);
            self.clients.insert(id, Some(room.to_string()));
            let m = if before.is_empty() {
                ServerMessage::Created {
                    room: room.to_string(),
                    id,
                }
            } else {
                ServerMessage::Joined {
                    room: room.to_string(),
                    id,
                    members: before.clone(),
                }
            };
            self.send(id, m);
        }
        let mut all = before;
        all.push(id);
        if all.len() >= 2 {
            for &m in &all {
                if self.is_here_in(m, room) {
                    let ready = ServerMessage::Ready {
                        room: room.to_string(),
                        members: all.clone(),
                    };
                    self.send(m, ready);
                }
            }
        }
        self.rooms.insert(room.to_string(), all);
        true
    }
    // ANCHOR_END: create_or_join

    /// `client` did not enter `room`: it is `full`, or the bus was
    /// `unreachable`. Ignored unless `client` is still asking for `room`.
    pub(super) fn not_admitted(
        &mut self,
        client: ClientId,
        room: &str,
        unreachable: Option<String>,
    ) {
        if self.joining.get(&client).is_none_or(|r| r != room) {
            return;
        }
        self.joining.remove(&client);
        self.lose_interest(room);
        match unreachable {
            None => self.send(
                client,
                ServerMessage::Full {
                    room: room.to_string(),
                },
            ),
            Some(e) => self.error(
                client,
                ErrorCode::Unavailable,
                format!("create or join: {e}"),
            ),
        }
    }

    // ANCHOR: relay
    // Unlike the codelab (which broadcasts to every socket), a message goes
    // to the other members of the sender's room only, or to one of them.
    fn relay(&mut self, client: ClientId, to: Option<ClientId>, data: Data) {
        let Some(room) = self.room_of(client).map(str::to_string) else {
            let reason = "message: join a room first".into();
            self.error(client, ErrorCode::NotInRoom, reason);
            return;
        };
        if let Some(t) = to
            && (t == client || !self.members(&room).contains(&t))
        {
            let reason = format!("message: {t} is not another member of this room");
            self.error(client, ErrorCode::NoSuchMember, reason);
            return;
        }
        if self.transport.relay(client, &room, to, &data) {
            self.deliver(&room, client, to, data);
        }
    }

    /// `data` from `from` reaches member `to`, or every other member of
    /// `room`, that is a client here.
    pub(super) fn deliver(&mut self, room: &str, from: ClientId, to: Option<ClientId>, data: Data) {
        let recipients: Vec<ClientId> = self
            .members(room)
            .iter()
            .copied()
            .filter(|&m| m != from && to.is_none_or(|t| t == m) && self.is_here_in(m, room))
            .collect();
        // The recipients share one copy of the text.
        for m in recipients {
            let data = data.clone();
            self.send(m, ServerMessage::Message { from, data });
        }
    }
    // ANCHOR_END: relay

    /// Takes `client` out of its room (or the room it is asking to enter);
    /// false if it was in none.
    fn leave(&mut self, client: ClientId) -> bool {
        let Some(slot) = self.clients.get_mut(&client) else {
            return false;
        };
        let Some(room) = slot.take().or_else(|| self.joining.remove(&client)) else {
            return false;
        };
        if self.transport.leave(client, &room) {
            self.left(&room, client);
        }
        self.lose_interest(&room);
        true
    }

    /// `id` left `room`, as this process decided or the bus announced: the
    /// other members here hear `bye`. A client here that another node
    /// removed (it thought this one dead) is out of the room.
    pub(super) fn left(&mut self, room: &str, id: ClientId) {
        let Some(members) = self.rooms.get_mut(room) else {
            return;
        };
        members.retain(|&m| m != id);
        let others = members.clone();
        for m in others {
            if self.is_here_in(m, room) {
                let bye = ServerMessage::Bye {
                    room: room.to_string(),
                    id,
                };
                self.send(m, bye);
            }
        }
        if self.is_here_in(id, room) {
            self.clients.insert(id, None);
            self.lose_interest(room);
        }
    }

    fn gain_interest(&mut self, room: &str) {
        let n = self.interest.entry(room.to_string()).or_insert(0);
        *n += 1;
        if *n == 1 {
            self.transport.follow(room);
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
            self.transport.unfollow(room);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn drain(r: &mut Rooms) -> Vec<(u64, serde_json::Value)> {
        let mut out = Vec::new();
        while let Some(o) = r.poll_output() {
            let v = serde_json::to_value(&o.message).expect("serializes");
            out.push((o.to.0, v));
        }
        out
    }

    fn join(r: &mut Rooms, c: ClientId, room: &str) {
        r.handle_text(
            c,
            &json!({"type": "create or join", "room": room}).to_string(),
        );
    }

    fn two_in(room: &str) -> (Rooms, ClientId, ClientId) {
        let mut r = Rooms::new(Config::default());
        let a = r.connect();
        let b = r.connect();
        join(&mut r, a, room);
        join(&mut r, b, room);
        drain(&mut r);
        (r, a, b)
    }

    #[test]
    fn first_client_creates_the_room() {
        let mut r = Rooms::new(Config::default());
        let a = r.connect();
        join(&mut r, a, "foo");
        assert_eq!(
            drain(&mut r),
            vec![(1, json!({"type": "created", "room": "foo", "id": 1}))]
        );
        assert_eq!(r.room_of(a), Some("foo"));
        assert_eq!(r.members("foo"), &[a]);
    }

    #[test]
    fn second_client_joins_and_everyone_hears_ready() {
        let mut r = Rooms::new(Config::default());
        let a = r.connect();
        let b = r.connect();
        join(&mut r, a, "foo");
        drain(&mut r);
        join(&mut r, b, "foo");
        assert_eq!(
            drain(&mut r),
            vec![
                (1, json!({"type": "join", "room": "foo", "id": 2})),
                (
                    2,
                    json!({"type": "joined", "room": "foo", "id": 2, "members": [1]})
                ),
                (
                    1,
                    json!({"type": "ready", "room": "foo", "members": [1, 2]})
                ),
                (
                    2,
                    json!({"type": "ready", "room": "foo", "members": [1, 2]})
                ),
            ]
        );
    }

    #[test]
    fn third_client_finds_the_room_full() {
        let (mut r, a, b) = two_in("foo");
        let c = r.connect();
        join(&mut r, c, "foo");
        assert_eq!(
            drain(&mut r),
            vec![(3, json!({"type": "full", "room": "foo"}))]
        );
        assert_eq!(r.members("foo"), &[a, b]);
        assert_eq!(r.room_of(c), None);
    }

    #[test]
    fn room_size_is_configurable() {
        let mut r = Rooms::new(Config {
            room_size: 3,
            ..Config::default()
        });
        let ids: Vec<_> = (0..4).map(|_| r.connect()).collect();
        for &c in &ids[..3] {
            join(&mut r, c, "big");
        }
        drain(&mut r);
        assert_eq!(r.members("big").len(), 3);
        join(&mut r, ids[3], "big");
        assert_eq!(
            drain(&mut r),
            vec![(4, json!({"type": "full", "room": "big"}))]
        );
    }

    #[test]
    fn a_message_goes_to_the_other_members_only() {
        let mut r = Rooms::new(Config {
            room_size: 3,
            ..Config::default()
        });
        let a = r.connect();
        let b = r.connect();
        let c = r.connect();
        let elsewhere = r.connect();
        for x in [a, b, c] {
            join(&mut r, x, "room");
        }
        join(&mut r, elsewhere, "other");
        drain(&mut r);
        let sdp = json!({"type": "offer", "sdp": "v=0\r\n"});
        r.handle_text(
            a,
            &json!({"type": "message", "data": sdp.clone()}).to_string(),
        );
        assert_eq!(
            drain(&mut r),
            vec![
                (
                    2,
                    json!({"type": "message", "from": 1, "data": sdp.clone()})
                ),
                (3, json!({"type": "message", "from": 1, "data": sdp})),
            ]
        );
    }

    #[test]
    fn a_message_can_go_to_one_member() {
        let mut r = Rooms::new(Config {
            room_size: 3,
            ..Config::default()
        });
        let a = r.connect();
        let b = r.connect();
        let c = r.connect();
        for x in [a, b, c] {
            join(&mut r, x, "room");
        }
        drain(&mut r);
        r.handle_text(c, r#"{"type":"message","to":1,"data":"hi"}"#);
        assert_eq!(
            drain(&mut r),
            vec![(1, json!({"type": "message", "from": 3, "data": "hi"}))]
        );
        // Not to oneself, nor to someone outside the room.
        for to in [3, 9] {
            r.handle_text(
                c,
                &json!({"type": "message", "to": to, "data": 1}).to_string(),
            );
            let out = drain(&mut r);
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].0, 3);
            assert_eq!(out[0].1["code"], "no-such-member");
        }
    }

    #[test]
    fn a_message_outside_a_room_is_an_error() {
        let mut r = Rooms::new(Config::default());
        let a = r.connect();
        r.handle_text(a, r#"{"type":"message","data":"x"}"#);
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1["type"], "error");
        assert_eq!(out[0].1["code"], "not-in-room");
    }

    #[test]
    fn a_message_to_a_room_of_one_reaches_no_one() {
        let mut r = Rooms::new(Config::default());
        let a = r.connect();
        join(&mut r, a, "alone");
        drain(&mut r);
        r.handle_text(a, r#"{"type":"message","data":"anyone?"}"#);
        assert_eq!(drain(&mut r), vec![]);
    }

    #[test]
    fn bye_on_disconnect_tells_the_others() {
        let (mut r, a, b) = two_in("foo");
        r.disconnect(a);
        assert_eq!(
            drain(&mut r),
            vec![(2, json!({"type": "bye", "room": "foo", "id": 1}))]
        );
        assert_eq!(r.members("foo"), &[b]);
        assert_eq!(r.client_count(), 1);
        // The last one out closes the room.
        r.disconnect(b);
        assert_eq!(drain(&mut r), vec![]);
        assert_eq!(r.room_count(), 0);
        assert_eq!(r.client_count(), 0);
    }

    #[test]
    fn bye_from_a_client_leaves_the_room_and_it_can_join_again() {
        let (mut r, a, b) = two_in("foo");
        r.handle_text(a, r#"{"type":"bye"}"#);
        assert_eq!(
            drain(&mut r),
            vec![(2, json!({"type": "bye", "room": "foo", "id": 1}))]
        );
        assert_eq!(r.room_of(a), None);
        join(&mut r, a, "foo");
        let out = drain(&mut r);
        assert_eq!(out[0], (2, json!({"type": "join", "room": "foo", "id": 1})));
        assert_eq!(r.members("foo"), &[b, a]);
        // A second bye outside any room is an error to that client.
        r.handle_text(a, r#"{"type":"bye"}"#);
        drain(&mut r);
        r.handle_text(a, r#"{"type":"bye"}"#);
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1["code"], "not-in-room");
    }

    #[test]
    fn a_freed_place_can_be_taken() {
        let (mut r, a, _b) = two_in("foo");
        let c = r.connect();
        r.disconnect(a);
        drain(&mut r);
        join(&mut r, c, "foo");
        let out = drain(&mut r);
        assert!(out.iter().any(|(to, m)| *to == 3 && m["type"] == "joined"));
    }

    #[test]
    fn create_or_join_twice_is_an_error() {
        let (mut r, a, _b) = two_in("foo");
        join(&mut r, a, "bar");
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 1);
        assert_eq!(out[0].1["code"], "already-in-room");
        assert_eq!(r.room_of(a), Some("foo"));
        assert_eq!(r.room_count(), 1);
    }

    #[test]
    fn malformed_json_is_an_error_to_that_client_and_the_room_goes_on() {
        let (mut r, a, b) = two_in("foo");
        for bad in [
            "",
            "{",
            "not json",
            "[1,2]",
            r#"{"type":"dance"}"#,
            r#"{"type":"create or join"}"#,
            r#"{"type":"create or join","room":7}"#,
            r#"{"type":"message","to":"x","data":1}"#,
            r#"{"room":"foo"}"#,
        ] {
            r.handle_text(a, bad);
            let out = drain(&mut r);
            assert_eq!(out.len(), 1, "{bad:?}: {out:?}");
            assert_eq!(out[0].0, 1, "{bad:?}");
            assert_eq!(out[0].1["type"], "error", "{bad:?}");
            assert_eq!(out[0].1["code"], "malformed", "{bad:?}");
        }
        r.handle_text(a, r#"{"type":"message","data":"still here"}"#);
        assert_eq!(
            drain(&mut r),
            vec![(
                2,
                json!({"type": "message", "from": 1, "data": "still here"})
            )]
        );
        assert_eq!(r.members("foo"), &[a, b]);
    }

    #[test]
    fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
        let (mut r, a, _b) = two_in("foo");
        let deep = format!(
            r#"{{"type":"message","data":{}1{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        r.handle_text(a, &deep);
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1["code"], "malformed");
    }

    #[test]
    fn oversized_message_is_an_error_and_not_relayed() {
        let mut r = Rooms::new(Config {
            max_message_bytes: 100,
            ..Config::default()
        });
        let a = r.connect();
        let b = r.connect();
        join(&mut r, a, "foo");
        join(&mut r, b, "foo");
        drain(&mut r);
        let big = json!({"type": "message", "data": "x".repeat(100)}).to_string();
        r.handle_text(a, &big);
        let out = drain(&mut r);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, 1);
        assert_eq!(out[0].1["code"], "too-large");
        // Exactly at the limit is fine.
        let fits = json!({"type": "message", "data": "x".repeat(70)}).to_string();
        let padded = format!("{fits:<100}");
        assert_eq!(padded.len(), 100);
        r.handle_text(a, &padded);
        assert_eq!(drain(&mut r)[0].0, 2);
    }

    #[test]
    fn room_names_are_validated() {
        let mut r = Rooms::new(Config::default());
        let a = r.connect();
        let long = "x".repeat(MAX_ROOM_NAME + 1);
        for bad in ["", "a b", "é", "../x", "<script>", long.as_str()] {
            join(&mut r, a, bad);
            let out = drain(&mut r);
            assert_eq!(out.len(), 1, "{bad:?}");
            assert_eq!(out[0].1["code"], "bad-room", "{bad:?}");
        }
        assert_eq!(r.room_count(), 0);
        for good in ["a", "Room-1_2.x", &"y".repeat(MAX_ROOM_NAME)] {
            assert_eq!(validate_room_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn the_number_of_rooms_is_bounded() {
        let mut r = Rooms::new(Config {
            max_rooms: 2,
            ..Config::default()
        });
        let ids: Vec<_> = (0..4).map(|_| r.connect()).collect();
        join(&mut r, ids[0], "r1");
        join(&mut r, ids[1], "r2");
        drain(&mut r);
        join(&mut r, ids[2], "r3");
        assert_eq!(drain(&mut r)[0].1["code"], "too-many-rooms");
        // Joining an existing room is still fine.
        join(&mut r, ids[3], "r1");
        assert!(drain(&mut r).iter().any(|(_, m)| m["type"] == "joined"));
    }

    #[test]
    fn rooms_are_independent() {
        let mut r = Rooms::new(Config::default());
        let ids: Vec<_> = (0..6).map(|_| r.connect()).collect();
        for (i, &c) in ids.iter().enumerate() {
            join(&mut r, c, &format!("room{}", i / 2));
        }
        drain(&mut r);
        assert_eq!(r.room_count(), 3);
        r.handle_text(ids[2], r#"{"type":"message","data":"to room1"}"#);
        assert_eq!(
            drain(&mut r),
            vec![(4, json!({"type": "message", "from": 3, "data": "to room1"}))]
        );
        r.disconnect(ids[4]);
        assert_eq!(
            drain(&mut r),
            vec![(6, json!({"type": "bye", "room": "room2", "id": 5}))]
        );
    }

    #[test]
    fn unknown_clients_are_ignored() {
        let mut r = Rooms::new(Config::default());
        r.handle_text(ClientId(42), r#"{"type":"create or join","room":"x"}"#);
        r.disconnect(ClientId(42));
        assert_eq!(drain(&mut r), vec![]);
        assert_eq!(r.room_count(), 0);
    }

    proptest::proptest! {
        /// Arbitrary text from any client never panics, and afterwards every
        /// room's members are connected clients that know they are in it.
        #[test]
        fn arbitrary_input_keeps_the_books_straight(
            steps in proptest::collection::vec((0u64..4, 0u8..6, "[a-c]{0,2}"), 0..60)
        ) {
            let mut r = Rooms::new(Config::default());
            let ids: Vec<_> = (0..4).map(|_| r.connect()).collect();
            for (who, what, arg) in steps {
                let c = ids[who as usize];
                match what {
                    0 => join(&mut r, c, &arg),
                    1 => r.handle_text(c, r#"{"type":"message","data":1}"#),
                    2 => r.handle_text(c, r#"{"type":"bye"}"#),
                    3 => r.disconnect(c),
                    4 => r.handle_text(c, &arg),
                    _ => r.handle_text(c, &format!(r#"{{"type":"message","to":{who},"data":0}}"#)),
                }
                drain(&mut r);
            }
            for (name, members) in &r.rooms {
                proptest::prop_assert!(!members.is_empty());
                proptest::prop_assert!(members.len() <= r.config.room_size);
                for m in members {
                    proptest::prop_assert_eq!(r.room_of(*m), Some(name.as_str()));
                }
            }
            for (c, room) in &r.clients {
                if let Some(room) = room {
                    proptest::prop_assert!(r.members(room).contains(c));
                }
            }
        }
    }
}
