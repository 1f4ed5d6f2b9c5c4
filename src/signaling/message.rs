//! The JSON messages of the signaling protocol (the table is in the
//! [module doc](super)). One WebSocket text frame carries one message, a JSON
//! object whose `type` names it.

use serde::{Deserialize, Serialize};

use super::room::ClientId;

impl Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(ClientId)
    }
}

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
#[non_exhaustive]
pub enum ClientMessage {
    /// `{"type":"create or join","room":"foo"}`: enter a room, creating it if
    /// it is empty (the codelab's event name, space included).
    #[serde(rename = "create or join")]
    CreateOrJoin {
        /// The room's name (see [`super::validate_room_name`]).
        room: String,
    },
    /// `{"type":"message","data":…}`: relay `data` (any JSON: an offer, an
    /// answer, a candidate) to the other members of the room, or with
    /// `"to":ID` to that member only. The server never looks inside `data`.
    #[serde(rename = "message")]
    Message {
        /// One member to send to, or every other member when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<ClientId>,
        /// The payload, relayed as it came.
        data: serde_json::Value,
    },
    /// `{"type":"bye"}`: leave the room (closing the socket does the same).
    #[serde(rename = "bye")]
    Bye {},
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum ServerMessage {
    /// To the first client of a room: the room is yours, and `id` is you.
    #[serde(rename = "created")]
    Created {
        /// The room.
        room: String,
        /// The client's own id.
        id: ClientId,
    },
    /// To a client entering a room that had members: `members` were there
    /// before you, `id` is you.
    #[serde(rename = "joined")]
    Joined {
        /// The room.
        room: String,
        /// The client's own id.
        id: ClientId,
        /// The members already there, in join order.
        members: Vec<ClientId>,
    },
    /// To the members already in a room: `id` is entering.
    #[serde(rename = "join")]
    Join {
        /// The room.
        room: String,
        /// The newcomer.
        id: ClientId,
    },
    /// To every member after a join: the room has two or more members, so a
    /// call can start (in the codelab, the creator then makes the offer).
    #[serde(rename = "ready")]
    Ready {
        /// The room.
        room: String,
        /// All members, in join order (the first is the creator).
        members: Vec<ClientId>,
    },
    /// To a client whose room already has `room_size` members.
    #[serde(rename = "full")]
    Full {
        /// The room.
        room: String,
    },
    /// A relayed message from another member of the room.
    #[serde(rename = "message")]
    Message {
        /// The sender.
        from: ClientId,
        /// The payload, as the sender gave it.
        data: serde_json::Value,
    },
    /// To the remaining members: `id` left (it said bye or disconnected).
    #[serde(rename = "bye")]
    Bye {
        /// The room.
        room: String,
        /// Who left.
        id: ClientId,
    },
    /// To one client: its last message was refused; nothing changed.
    #[serde(rename = "error")]
    Error {
        /// What kind of mistake, for programs.
        code: ErrorCode,
        /// What went wrong, for people.
        reason: String,
    },
}

/// The `code` of an `error` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, or not one of the client messages.
    Malformed,
    /// Longer than the server's message size limit.
    TooLarge,
    /// The room name is empty, too long or has other characters than
    /// `A-Z a-z 0-9 - _ .`.
    BadRoom,
    /// `create or join` while already in a room.
    AlreadyInRoom,
    /// `message` or `bye` while in no room.
    NotInRoom,
    /// `message` with a `to` that is not another member of the room.
    NoSuchMember,
    /// The server's limit on rooms is reached.
    TooManyRooms,
}

impl ServerMessage {
    /// The message as one line of JSON (what goes in a WebSocket text frame).
    pub fn to_json(&self) -> String {
        // Safe: these types hold only strings, numbers and JSON values, which
        // always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl ClientMessage {
    /// The message as one line of JSON (what goes in a WebSocket text frame).
    pub fn to_json(&self) -> String {
        // Safe: as for `ServerMessage::to_json`.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn client_messages_read_the_codelab_names() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"create or join","room":"foo"}"#).expect("parses");
        assert_eq!(m, ClientMessage::CreateOrJoin { room: "foo".into() });
        let m: ClientMessage = serde_json::from_str(r#"{"type":"bye"}"#).expect("parses");
        assert_eq!(m, ClientMessage::Bye {});
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"message","data":{"sdp":"v=0"}}"#).expect("parses");
        assert_eq!(
            m,
            ClientMessage::Message {
                to: None,
                data: json!({"sdp": "v=0"})
            }
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"bye","room":"x"}"#).is_err());
    }

    #[test]
    fn server_messages_round_trip() {
        let all = [
            ServerMessage::Created {
                room: "r".into(),
                id: ClientId(1),
            },
            ServerMessage::Joined {
                room: "r".into(),
                id: ClientId(2),
                members: vec![ClientId(1)],
            },
            ServerMessage::Join {
                room: "r".into(),
                id: ClientId(2),
            },
            ServerMessage::Ready {
                room: "r".into(),
                members: vec![ClientId(1), ClientId(2)],
            },
            ServerMessage::Full { room: "r".into() },
            ServerMessage::Message {
                from: ClientId(1),
                data: json!([1, "two", {"three": null}]),
            },
            ServerMessage::Bye {
                room: "r".into(),
                id: ClientId(1),
            },
            ServerMessage::Error {
                code: ErrorCode::TooLarge,
                reason: "big".into(),
            },
        ];
        for m in all {
            let text = m.to_json();
            let back: ServerMessage = serde_json::from_str(&text).expect("parses");
            assert_eq!(back, m, "{text}");
        }
        assert_eq!(
            ServerMessage::Error {
                code: ErrorCode::NoSuchMember,
                reason: "r".into()
            }
            .to_json(),
            r#"{"type":"error","code":"no-such-member","reason":"r"}"#
        );
    }

    proptest::proptest! {
        #[test]
        fn client_messages_round_trip(room in "[a-z]{1,8}", to in proptest::option::of(0u64..1000), s in ".{0,20}") {
            for m in [
                ClientMessage::CreateOrJoin { room: room.clone() },
                ClientMessage::Message { to: to.map(ClientId), data: json!({"s": s}) },
                ClientMessage::Bye {},
            ] {
                let back: ClientMessage = serde_json::from_str(&m.to_json()).expect("parses");
                proptest::prop_assert_eq!(back, m);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,200}") {
            let _ = serde_json::from_str::<ClientMessage>(&s);
        }
    }
}
