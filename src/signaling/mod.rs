//! Signaling: how two peers find each other and trade offers, answers and
//! candidates before any WebRTC packet flows (codelab step 7).
//!
//! WebRTC defines what peers must exchange (SDP offers and answers, ICE
//! candidates; RFC 8829 JSEP) but not how: that is the application's job. This
//! module is the codelab's signaling service done in Rust: WebSocket + JSON
//! over HTTP, grouped in *rooms*. The server never looks inside what it
//! relays.
//!
//! ```text
//!   browser A                 rtclab signaling                 browser B
//!      │ GET /ws (Upgrade: websocket, RFC 6455)   │                  │
//!      │── {"type":"create or join","room":"r"} ─▶│                  │
//!      │◀─ {"type":"created","room":"r","id":1} ──│                  │
//!      │                                          │◀─ create or join ─│
//!      │◀─ {"type":"join","room":"r","id":2} ─────│── joined (id 2) ─▶│
//!      │◀─ ready (members [1,2]) ─────────────────│── ready ─────────▶│
//!      │── {"type":"message","data":{offer}} ────▶│── message ───────▶│
//!      │◀─ message {"from":2,"data":{answer}} ────│◀─ message ────────│
//!      │  (socket closes)                         │── bye (id 1) ────▶│
//! ```
//!
//! ## The messages
//!
//! One WebSocket text frame carries one JSON object; `type` names it.
//! Ids are numbers the server gives each connection.
//!
//! | direction | `type` | other fields | meaning |
//! |---|---|---|---|
//! | client → server | `create or join` | `room` | enter `room`, creating it if empty |
//! | client → server | `message` | `data`, optional `to` | relay `data` (any JSON) to the room's other members, or to member `to` only |
//! | client → server | `bye` | — | leave the room (a closed socket does the same) |
//! | server → client | `created` | `room`, `id` | you are the room's first member; `id` is you |
//! | server → client | `joined` | `room`, `id`, `members` | you entered; `members` were there before you |
//! | server → client | `join` | `room`, `id` | (to those already in) member `id` is entering |
//! | server → client | `ready` | `room`, `members` | (to every member, after each join) two or more are here: start the call |
//! | server → client | `full` | `room` | the room has `room_size` members already (default 2) |
//! | server → client | `message` | `from`, `data` | relayed from member `from` |
//! | server → client | `bye` | `room`, `id` | member `id` left |
//! | server → client | `error` | `code`, `reason` | your last message was refused; nothing changed |
//!
//! Error codes: `malformed` (not JSON, unknown `type`, missing or extra
//! fields, `data` nested more than 100 deep, a binary frame), `too-large` (over the message size limit, 64 KiB
//! by default), `bad-room` (a room name must be 1–64 characters of
//! `A-Z a-z 0-9 - _ .`), `already-in-room`, `not-in-room`, `no-such-member`,
//! `too-many-rooms`, `busy` (a `message` not delivered to a member whose
//! queue is full; the reason names it).
//!
//! Differences from the codelab's Socket.IO server: messages go to the other
//! members of the sender's room only (the codelab broadcasts them to every
//! connected socket); room size, message size and room count are limits;
//! bad input gets an `error` and changes nothing; a WebSocket frame larger
//! than twice the message limit closes the connection (code 1008).
//!
//! A slow reader cannot grow the server's memory: each client's outbox is
//! bounded in bytes (256 KiB by default, payloads kept as their JSON text)
//! and in messages (256). A relayed message that does not fit is not
//! queued, and its sender hears `busy`: a reader that keeps reading keeps
//! its place however fast the sender. A sender whose own outbox (of `busy`
//! errors) is full is not read from until it drains. The server's own small
//! messages have 8 KiB of headroom past the bound; a client that overflows
//! that is disconnected (code 1013), as is one whose socket took no write
//! for 10 s (`send_timeout`). So the server holds at most about
//! `outbox_bytes + 8 KiB` per connection. The server pings every client
//! each 30 s (`ping_interval`; browsers answer by themselves): one that has
//! not answered by the next ping is disconnected, so a client that stops
//! reading is gone within a minute even when nothing is sent to it.
//!
//! Nor can idle sockets: at most 1024 TCP connections at once, fewer if
//! the open-file limit is low (`max_tcp_connections`; one more is closed as
//! it is accepted), a
//! request's headers must arrive within 10 s (`header_read_timeout`: a
//! socket that sends nothing, or a slowloris, is closed), and an HTTP
//! connection with no byte moving for 60 s (`idle_timeout`) is closed.
//! A WebSocket has no idle timeout: a call's signaling is quiet for long.
//!
//! ## Layout
//!
//! - [`room`]: the rooms, sans-IO ([`Rooms`]): text in, `(recipient,
//!   message)` out; every rule is a unit test there. Where the members are
//!   kept is its [`Transport`](room::Transport): this process by default.
//! - [`message`]: the JSON messages ([`ClientMessage`], [`ServerMessage`])
//!   with serde.
//! - [`server`]: the tokio server ([`Server`]): hyper for HTTP/1.1, axum
//!   for routing and WebSocket (`GET /ws`), the example pages at `/` and `/NN_name/` (from [`web`]),
//!   and in-process members ([`Handle::member`]) for a Rust peer.
//!
//! - [`cluster`]: the same rooms shared by several server processes over
//!   a [`Bus`](crate::bus::Bus) (`rtclab signaling --bus redis://…`):
//!   [`Rooms`] with the bus as its transport.
//!
//! Left out: authentication, TLS (put a reverse proxy in front, or use it
//! on a trusted network), and persistence.

pub mod cluster;
pub mod message;
pub mod room;
pub mod server;
pub mod web;

pub use message::{ClientMessage, Data, ErrorCode, ServerMessage};
pub use room::{ClientId, Outgoing, Rooms, validate_room_name};
pub use server::{BusNode, Config, Handle, Member, Server, default_tcp_cap};
pub use web::{PAGES, Page};
