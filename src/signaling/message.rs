//! The JSON messages of the signaling protocol (the table is in the
//! [module doc](super)). One WebSocket text frame carries one message, a JSON
//! object whose `type` names it.

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// The payload of a `message`: any JSON value, kept as the text it came in
/// (checked to be JSON, never turned into a tree). The server relays it
/// without looking inside, so it holds it as compactly as it can: a parsed
/// [`serde_json::Value`] takes about 16 times its text's size, which a
/// queue of relayed messages would multiply. Clones share the text.
#[derive(Clone)]
pub struct Data(Arc<RawValue>);

impl Data {
    /// `value` written as JSON text.
    pub fn from_value(value: &serde_json::Value) -> Data {
        // Safe: a `Value` always serializes, to valid JSON.
        let raw =
            serde_json::value::to_raw_value(value).unwrap_or_else(|_| RawValue::NULL.to_owned());
        Data(Arc::from(raw))
    }

    /// Checks that `text` is one JSON value and keeps it as it is.
    pub fn from_text(text: &str) -> serde_json::Result<Data> {
        let raw: Box<RawValue> = serde_json::from_str(text)?;
        Ok(Data(Arc::from(raw)))
    }

    /// The JSON text, as the sender wrote it.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The text's length in bytes.
    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    /// Never true: the shortest JSON value is one byte.
    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// The value parsed into a tree (for a program that reads it, like the
    /// demo's Rust peer).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl From<serde_json::Value> for Data {
    fn from(value: serde_json::Value) -> Data {
        Data::from_value(&value)
    }
}

impl From<Box<RawValue>> for Data {
    fn from(raw: Box<RawValue>) -> Data {
        Data(Arc::from(raw))
    }
}

/// Two payloads are equal when their JSON values are (`{"a": 1}` equals
/// `{"a":1}`).
impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.get() == other.get() || self.to_value() == other.to_value()
    }
}

impl PartialEq<serde_json::Value> for Data {
    fn eq(&self, other: &serde_json::Value) -> bool {
        self.to_value() == *other
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Data({})", self.get())
    }
}

impl Serialize for Data {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

/// Through a parsed [`serde_json::Value`]: a `RawValue` cannot be read from
/// inside serde's internally tagged enums (which buffer their fields), so
/// [`ServerMessage`]'s derived `Deserialize` (a client's, not the server's)
/// goes this way. The server reads [`ClientMessage`] with its own
/// `Deserialize`, which takes the raw text directly.
impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(|v| Data::from_value(&v))
    }
}

/// What a client sends.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type")]
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
        data: Data,
    },
    /// `{"type":"bye"}`: leave the room (closing the socket does the same).
    #[serde(rename = "bye")]
    Bye {},
}

/// Every field any client message has; which ones a `type` takes is checked
/// after (a derived `Deserialize` of the tagged enum could not take `data`
/// as raw text, see [`Data`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    to: Option<ClientId>,
    // `null` is a payload too, not a missing one.
    #[serde(default, borrow, deserialize_with = "some_raw")]
    data: Option<&'a RawValue>,
}

/// How deep `data` may nest: under serde_json's own limit (127 levels) when
/// it parses a tree, so whatever the server relays, a Rust member can read
/// with [`Data::to_value`] (and a browser with `JSON.parse`).
pub const MAX_NESTING: usize = 100;

/// The deepest nesting of arrays and objects in valid JSON `text`, by one
/// pass over its bytes (brackets inside strings do not count).
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn some_raw<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for ClientMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = Fields::deserialize(d)?;
        let extra = |field: &str| {
            D::Error::custom(format!("a {:?} message has no field `{field}`", f.kind))
        };
        match &*f.kind {
            "create or join" => {
                if f.to.is_some() {
                    return Err(extra("to"));
                }
                if f.data.is_some() {
                    return Err(extra("data"));
                }
                let room = f.room.ok_or_else(|| D::Error::missing_field("room"))?;
                Ok(ClientMessage::CreateOrJoin { room })
            }
            "message" => {
                if f.room.is_some() {
                    return Err(extra("room"));
                }
                let data = f.data.ok_or_else(|| D::Error::missing_field("data"))?;
                let depth = nesting(data.get());
                if depth > MAX_NESTING {
                    return Err(D::Error::custom(format!(
                        "data nests {depth} arrays or objects deep; at most {MAX_NESTING}"
                    )));
                }
                Ok(ClientMessage::Message {
                    to: f.to,
                    data: Data::from(data.to_owned()),
                })
            }
            "bye" => {
                for (name, present) in [
                    ("room", f.room.is_some()),
                    ("to", f.to.is_some()),
                    ("data", f.data.is_some()),
                ] {
                    if present {
                        return Err(extra(name));
                    }
                }
                Ok(ClientMessage::Bye {})
            }
            other => Err(D::Error::unknown_variant(
                other,
                &["create or join", "message", "bye"],
            )),
        }
    }
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
        data: Data,
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
    /// A `message` was not delivered to a member whose queue is full (it
    /// reads slower than the sender sends); `reason` names it. Try again
    /// later.
    Busy,
    /// The bus between signaling nodes (`rtclab signaling --bus`) is
    /// unreachable, so the room's other nodes could not be asked; nothing
    /// changed. Try again in a few seconds (the node reconnects by itself).
    Unavailable,
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
                data: json!({"sdp": "v=0"}).into()
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
                data: json!([1, "two", {"three": null}]).into(),
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

    #[test]
    fn nesting_counts_brackets_outside_strings() {
        assert_eq!(nesting("1"), 0);
        assert_eq!(nesting(r#"{"a":[1,{"b":[]}]}"#), 4);
        assert_eq!(nesting(r#"["[[[\"{{", "\\", []]"#), 2);
        let deep = format!("{}{}", "[".repeat(MAX_NESTING), "]".repeat(MAX_NESTING));
        let m = format!(r#"{{"type":"message","data":{deep}}}"#);
        let m: ClientMessage = serde_json::from_str(&m).expect("at the limit");
        let ClientMessage::Message { data, .. } = m else {
            panic!("{m:?}")
        };
        assert!(data.to_value().is_array(), "serde_json reads it too");
        let deeper = format!("[{deep}]");
        let m = format!(r#"{{"type":"message","data":{deeper}}}"#);
        assert!(serde_json::from_str::<ClientMessage>(&m).is_err());
    }

    #[test]
    fn data_stays_the_text_it_came_as() {
        let text = r#"{"type":"message","to":2,"data":{ "sdp" : "v=0\r\n", "n": 1.50 }}"#;
        let m: ClientMessage = serde_json::from_str(text).expect("parses");
        let ClientMessage::Message { to, data } = m else {
            panic!("{m:?}")
        };
        assert_eq!(to, Some(ClientId(2)));
        assert_eq!(data.get(), r#"{ "sdp" : "v=0\r\n", "n": 1.50 }"#);
        let out = ServerMessage::Message {
            from: ClientId(1),
            data,
        };
        assert_eq!(
            out.to_json(),
            r#"{"type":"message","from":1,"data":{ "sdp" : "v=0\r\n", "n": 1.50 }}"#
        );
        // null is a payload; a missing data, or a field another type has, is not.
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"message","data":null}"#).expect("null");
        assert!(matches!(m, ClientMessage::Message { data, .. } if data.get() == "null"));
        for bad in [
            r#"{"type":"message"}"#,
            r#"{"type":"message","room":"r","data":1}"#,
            r#"{"type":"create or join","room":"r","data":1}"#,
            r#"{"type":"create or join","room":"r","to":1}"#,
            r#"{"type":"bye","to":1}"#,
            r#"{"type":"bye","data":1}"#,
            r#"{"type":"dance"}"#,
            r#"{"type":"message","data":1,"extra":2}"#,
            r#"{"data":1}"#,
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn client_messages_round_trip(room in "[a-z]{1,8}", to in proptest::option::of(0u64..1000), s in ".{0,20}") {
            for m in [
                ClientMessage::CreateOrJoin { room: room.clone() },
                ClientMessage::Message { to: to.map(ClientId), data: json!({"s": s}).into() },
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
