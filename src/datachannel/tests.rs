//! The channel manager against a fake in-memory transport: two managers
//! whose outputs are delivered to each other in order, loss-free, the way
//! reliable ordered SCTP would.

use super::dcep::{ChannelType, DataChannelOpen, ReliabilityKind};
use super::*;
use crate::vocab::DtlsRole as Role;
use proptest::prelude::*;
use std::time::Duration;

struct Pair {
    a: ChannelManager,
    b: ChannelManager,
    /// Everything that went over the fake wire: (from 'A' or 'B', output).
    wire: Vec<(char, Output)>,
    /// Report "SCTP sent it" (buffered 0) after each delivered message.
    drain_buffers: bool,
}

impl Pair {
    fn new() -> Pair {
        let cfg = |role| Config {
            role: Some(role),
            ..Config::default()
        };
        Pair {
            a: ChannelManager::new(cfg(Role::Client)),
            b: ChannelManager::new(cfg(Role::Server)),
            wire: Vec::new(),
            drain_buffers: true,
        }
    }

    fn connected() -> Pair {
        let mut p = Pair::new();
        p.a.handle_connected();
        p.b.handle_connected();
        p
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some(o) = self.a.poll_output() {
                moved = true;
                deliver(&mut self.a, &mut self.b, &o, self.drain_buffers);
                self.wire.push(('A', o));
            }
            while let Some(o) = self.b.poll_output() {
                moved = true;
                deliver(&mut self.b, &mut self.a, &o, self.drain_buffers);
                self.wire.push(('B', o));
            }
            if !moved {
                break;
            }
        }
    }
}

fn deliver(from: &mut ChannelManager, to: &mut ChannelManager, o: &Output, drain: bool) {
    match o {
        Output::Message(m) => {
            to.handle_message(m.stream, m.ppid.to_u32(), m.data.clone());
            if drain {
                from.handle_buffered_amount(m.stream, 0);
            }
        }
        Output::ResetStreams(v) => {
            to.handle_streams_reset(v);
            from.handle_outgoing_streams_reset(v);
        }
    }
}

/// A DATA_CHANNEL_OPEN of a reliable, ordered channel with this label.
fn reliable_open(label: &str) -> DcepMessage {
    DcepMessage::Open(DataChannelOpen {
        channel_type: ChannelType::from_u8(0).unwrap(),
        priority: 256,
        reliability_parameter: 0,
        label: label.into(),
        protocol: String::new(),
    })
}

fn events(m: &mut ChannelManager) -> Vec<Event> {
    std::iter::from_fn(|| m.poll_event()).collect()
}

fn opened(events: &[Event]) -> Vec<ChannelId> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Open(id) => Some(*id),
            _ => None,
        })
        .collect()
}

fn messages(events: &[Event]) -> Vec<Message> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn open_ack_handshake_creates_the_channel_on_the_other_side() {
    let mut p = Pair::connected();
    let init = ChannelInit {
        protocol: "chat-v1".into(),
        ordered: false,
        max_retransmits: Some(3),
        priority: 512,
        ..ChannelInit::new("chat")
    };
    let a = p.a.create_channel(init).unwrap();
    assert_eq!(p.a.channel(a).unwrap().stream(), Some(0));
    assert_eq!(opened(&events(&mut p.a)), [a]);
    // RFC 8832 §6: the initiator may send before the ACK, ordered.
    p.a.send_text(a, "early").unwrap();
    let Some(Output::Message(open)) = p.a.poll_output() else {
        panic!("no OPEN")
    };
    assert_eq!(open.ppid, Ppid::Dcep);
    assert!(!open.unordered);
    assert_eq!(
        DcepMessage::parse(&open.data).unwrap(),
        DcepMessage::Open(DataChannelOpen {
            channel_type: ChannelType {
                reliability: ReliabilityKind::PartialRexmit,
                unordered: true
            },
            priority: 512,
            reliability_parameter: 3,
            label: "chat".into(),
            protocol: "chat-v1".into(),
        })
    );
    let Some(Output::Message(early)) = p.a.poll_output() else {
        panic!("no message")
    };
    assert!(!early.unordered, "sent unordered before the ACK");
    assert_eq!(early.reliability, Reliability::MaxRetransmits(3));
    p.b.handle_message(open.stream, 50, open.data);
    p.b.handle_message(early.stream, early.ppid.to_u32(), early.data);
    let ev = events(&mut p.b);
    let b = opened(&ev)[0];
    let ch = p.b.channel(b).unwrap();
    assert!(ch.is_incoming());
    assert_eq!(
        (ch.label(), ch.protocol(), ch.ordered(), ch.priority()),
        ("chat", "chat-v1", false, 512)
    );
    assert_eq!(ch.max_retransmits(), Some(3));
    assert_eq!(messages(&ev), [Message::Text("early".into())]);
    // B answers with the ACK on the same stream; after it A goes unordered.
    p.pump();
    let ack = p.wire.iter().find(|(from, _)| *from == 'B').unwrap();
    assert_eq!(
        ack.1,
        Output::Message(OutgoingMessage {
            stream: 0,
            ppid: Ppid::Dcep,
            data: vec![2],
            unordered: false,
            reliability: Reliability::Reliable
        })
    );
    p.a.send_binary(a, b"late").unwrap();
    let Some(Output::Message(late)) = p.a.poll_output() else {
        panic!()
    };
    assert!(late.unordered);
    assert_eq!(late.ppid, Ppid::Binary);
}

#[test]
fn stream_ids_follow_the_dtls_role() {
    let mut p = Pair::connected();
    let ids: Vec<u16> = (0..3)
        .map(|_| {
            let id = p.a.create_channel(ChannelInit::new("x")).unwrap();
            p.a.channel(id).unwrap().stream().unwrap()
        })
        .collect();
    assert_eq!(ids, [0, 2, 4]);
    let ids: Vec<u16> = (0..3)
        .map(|_| {
            let id = p.b.create_channel(ChannelInit::new("x")).unwrap();
            p.b.channel(id).unwrap().stream().unwrap()
        })
        .collect();
    assert_eq!(ids, [1, 3, 5]);
    p.pump();
    // Each side now sees all six channels, with the same stream ids.
    let mut streams: Vec<u16> = p.a.channels().filter_map(|c| c.stream()).collect();
    streams.sort();
    assert_eq!(streams, [0, 1, 2, 3, 4, 5]);
}

#[test]
fn channels_made_before_the_role_is_known_get_ids_later() {
    let mut m = ChannelManager::new(Config::default());
    let c = m.create_channel(ChannelInit::new("early")).unwrap();
    assert_eq!(m.channel(c).unwrap().stream(), None);
    assert_eq!(m.channel(c).unwrap().ready_state(), ReadyState::Connecting);
    assert!(matches!(
        m.send_text(c, "x"),
        Err(Error::NotOpen {
            state: ReadyState::Connecting
        })
    ));
    m.set_role(Role::Server);
    assert_eq!(m.channel(c).unwrap().stream(), Some(1));
    assert!(m.poll_output().is_none());
    m.handle_connected();
    assert!(
        matches!(m.poll_output(), Some(Output::Message(o)) if o.stream == 1 && o.ppid == Ppid::Dcep)
    );
    assert_eq!(opened(&events(&mut m)), [c]);
}

#[test]
fn negotiated_channels_send_no_dcep() {
    let mut p = Pair::new();
    let init = ChannelInit {
        negotiated: Some(7),
        max_packet_life_time: Some(150),
        ..ChannelInit::new("pre")
    };
    let a = p.a.create_channel(init.clone()).unwrap();
    let b = p.b.create_channel(init.clone()).unwrap();
    // Any parity is fine for a negotiated id; the same id twice is not.
    assert_eq!(p.a.create_channel(init), Err(Error::IdInUse { stream: 7 }));
    p.a.handle_connected();
    p.b.handle_connected();
    assert_eq!(opened(&events(&mut p.a)), [a]);
    assert_eq!(opened(&events(&mut p.b)), [b]);
    assert_eq!(
        p.a.channel(a).unwrap().reliability(),
        Reliability::Lifetime(Duration::from_millis(150))
    );
    p.a.send_text(a, "no handshake").unwrap();
    p.pump();
    assert!(
        p.wire
            .iter()
            .all(|(_, o)| !matches!(o, Output::Message(m) if m.ppid == Ppid::Dcep))
    );
    assert_eq!(
        messages(&events(&mut p.b)),
        [Message::Text("no handshake".into())]
    );
    // A non-negotiated channel skips the negotiated id.
    let c = p.a.create_channel(ChannelInit::new("x")).unwrap();
    assert_eq!(p.a.channel(c).unwrap().stream(), Some(0));
}

#[test]
fn empty_messages_travel_as_one_zero_byte() {
    let mut p = Pair::connected();
    let a = p.a.create_channel(ChannelInit::new("e")).unwrap();
    p.pump();
    p.a.send_text(a, "").unwrap();
    p.a.send_binary(a, &[]).unwrap();
    p.a.send(a, &Message::Binary(vec![1, 2])).unwrap();
    let sent: Vec<(Ppid, Vec<u8>)> = std::iter::from_fn(|| p.a.poll_output())
        .filter_map(|o| match o {
            Output::Message(m) => Some((m.ppid, m.data)),
            _ => None,
        })
        .collect();
    assert_eq!(
        sent,
        [
            (Ppid::StringEmpty, vec![0]),
            (Ppid::BinaryEmpty, vec![0]),
            (Ppid::Binary, vec![1, 2])
        ]
    );
    for (ppid, data) in sent {
        p.b.handle_message(0, ppid.to_u32(), data);
    }
    assert_eq!(
        messages(&events(&mut p.b)),
        [
            Message::Text(String::new()),
            Message::Binary(Vec::new()),
            Message::Binary(vec![1, 2])
        ]
    );
}

#[test]
fn max_message_size_is_enforced_with_a_clear_error() {
    let mut p = Pair::connected();
    let a = p.a.create_channel(ChannelInit::new("big")).unwrap();
    p.a.set_max_message_size(1000);
    assert!(p.a.send_binary(a, &[0; 1000]).is_ok());
    let err = p.a.send_binary(a, &[0; 1001]).unwrap_err();
    assert_eq!(
        err,
        Error::MessageTooLarge {
            size: 1001,
            max: 1000
        }
    );
    assert_eq!(
        err.to_string(),
        "message of 1001 bytes exceeds the maximum message size of 1000 bytes"
    );
    assert_eq!(p.a.buffered_amount(a), 1000);
}

fn close_from(initiator_is_a: bool) {
    let mut p = Pair::connected();
    p.drain_buffers = false; // no BufferedAmountLow in the way
    let a = p.a.create_channel(ChannelInit::new("c")).unwrap();
    p.pump();
    let b = opened(&events(&mut p.b))[0];
    events(&mut p.a);
    p.a.send_text(a, "last words").unwrap();
    if initiator_is_a {
        p.a.close(a);
        assert_eq!(p.a.channel(a).unwrap().ready_state(), ReadyState::Closing);
        assert!(p.a.send_text(a, "too late").is_err());
    } else {
        p.b.close(b);
    }
    p.pump();
    let (ea, eb) = (events(&mut p.a), events(&mut p.b));
    if initiator_is_a {
        assert_eq!(
            eb,
            [
                Event::Message {
                    channel: b,
                    message: Message::Text("last words".into())
                },
                Event::Closing(b),
                Event::Closed(b)
            ]
        );
        assert_eq!(ea, [Event::Closed(a)]);
    } else {
        assert_eq!(ea, [Event::Closing(a), Event::Closed(a)]);
        // W3C: B called close() first, so A's message finds B's channel
        // closing and is discarded.
        assert_eq!(eb, [Event::Closed(b)]);
    }
    assert!(p.a.channel(a).is_none() && p.b.channel(b).is_none());
    // The reset went after the message.
    let kinds: Vec<_> = p
        .wire
        .iter()
        .map(|(from, o)| match o {
            Output::Message(m) => format!("{from}:{:?}", m.ppid),
            Output::ResetStreams(s) => format!("{from}:reset{s:?}"),
        })
        .collect();
    if initiator_is_a {
        assert_eq!(
            kinds,
            ["A:Dcep", "B:Dcep", "A:String", "A:reset[0]", "B:reset[0]"]
        );
    }
    // Stream 0 is free again.
    let again = p.a.create_channel(ChannelInit::new("again")).unwrap();
    assert_eq!(p.a.channel(again).unwrap().stream(), Some(0));
}

#[test]
fn close_from_the_opener() {
    close_from(true);
}

#[test]
fn close_from_the_answerer() {
    close_from(false);
}

#[test]
fn closing_many_channels_costs_one_reset() {
    let mut p = Pair::connected();
    let ids: Vec<_> = (0..10)
        .map(|i| {
            p.a.create_channel(ChannelInit::new(&i.to_string()))
                .unwrap()
        })
        .collect();
    p.pump();
    p.wire.clear();
    for id in &ids {
        p.a.close(*id);
    }
    p.pump();
    let resets: Vec<_> = p
        .wire
        .iter()
        .filter_map(|(f, o)| match o {
            Output::ResetStreams(s) => Some((*f, s.len())),
            _ => None,
        })
        .collect();
    assert_eq!(resets, [('A', 10), ('B', 10)]);
    assert_eq!(p.a.channels().count(), 0);
    assert_eq!(p.b.channels().count(), 0);
}

#[test]
fn close_before_connect_is_immediate() {
    let mut m = ChannelManager::new(Config::default());
    let c = m.create_channel(ChannelInit::new("x")).unwrap();
    m.close(c);
    assert_eq!(events(&mut m), [Event::Closed(c)]);
    m.handle_connected();
    assert!(m.poll_output().is_none());
}

#[test]
fn open_on_our_parity_is_refused_without_ack() {
    let mut b = ChannelManager::new(Config {
        role: Some(Role::Server),
        ..Config::default()
    });
    b.handle_connected();
    let open = reliable_open("odd");
    // The server owns odd ids: an OPEN from the client on stream 3 is wrong.
    b.handle_message(3, 50, open.to_vec());
    assert_eq!(b.poll_output(), Some(Output::ResetStreams(vec![3])));
    assert_eq!(b.poll_output(), None);
    assert_eq!(
        events(&mut b),
        [Event::Error {
            channel: None,
            error: Error::WrongStreamParity { stream: 3 }
        }]
    );
    // A message on that stream afterwards is dropped.
    b.handle_message(3, 51, b"x".to_vec());
    assert!(b.poll_event().is_none());
}

#[test]
fn malformed_open_is_refused_without_panic() {
    let mut b = ChannelManager::new(Config {
        role: Some(Role::Server),
        ..Config::default()
    });
    b.handle_connected();
    // Label length 200, but only 1 byte follows.
    b.handle_message(2, 50, vec![3, 0, 1, 0, 0, 0, 0, 0, 0, 200, 0, 0, b'a']);
    assert_eq!(b.poll_output(), Some(Output::ResetStreams(vec![2])));
    assert!(matches!(
        events(&mut b)[..],
        [Event::Error {
            channel: None,
            error: Error::BadLength { .. }
        }]
    ));
    // Unknown channel type 0x05.
    b.handle_message(4, 50, vec![3, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(b.poll_output(), Some(Output::ResetStreams(vec![4])));
    assert!(matches!(
        events(&mut b)[..],
        [Event::Error {
            error: Error::UnknownChannelType(5),
            ..
        }]
    ));
    assert_eq!(b.channels().count(), 0);
}

#[test]
fn open_on_a_used_stream_closes_that_channel() {
    let mut p = Pair::connected();
    let a = p.a.create_channel(ChannelInit::new("one")).unwrap();
    p.pump();
    events(&mut p.a);
    let b = opened(&events(&mut p.b))[0];
    // A second OPEN on stream 0.
    let open = reliable_open("two");
    p.b.handle_message(0, 50, open.to_vec());
    p.pump();
    let eb = events(&mut p.b);
    assert_eq!(
        eb[0],
        Event::Error {
            channel: Some(b),
            error: Error::StreamInUse { stream: 0 }
        }
    );
    assert_eq!(eb.last(), Some(&Event::Closed(b)));
    assert_eq!(events(&mut p.a), [Event::Closing(a), Event::Closed(a)]);
}

#[test]
fn a_reset_without_ack_means_the_peer_refused() {
    let mut a = ChannelManager::new(Config {
        role: Some(Role::Client),
        ..Config::default()
    });
    a.handle_connected();
    let c = a.create_channel(ChannelInit::new("no")).unwrap();
    while a.poll_output().is_some() {}
    events(&mut a);
    a.handle_streams_reset(&[0]);
    assert_eq!(a.poll_output(), Some(Output::ResetStreams(vec![0])));
    a.handle_outgoing_streams_reset(&[0]);
    assert_eq!(
        events(&mut a),
        [
            Event::Error {
                channel: Some(c),
                error: Error::OpenRefused { stream: 0 }
            },
            Event::Closing(c),
            Event::Closed(c)
        ]
    );
}

#[test]
fn user_data_before_the_ack_counts_as_the_ack() {
    let mut p = Pair::connected();
    let a =
        p.a.create_channel(ChannelInit {
            ordered: false,
            ..ChannelInit::new("u")
        })
        .unwrap();
    let Some(Output::Message(open)) = p.a.poll_output() else {
        panic!()
    };
    p.b.handle_message(0, 50, open.data);
    let Some(Output::Message(_ack_lost)) = p.b.poll_output() else {
        panic!()
    };
    let b = opened(&events(&mut p.b))[0];
    p.b.send_text(b, "reply").unwrap();
    p.pump();
    p.a.send_text(a, "now unordered").unwrap();
    let Some(Output::Message(m)) = p.a.poll_output() else {
        panic!()
    };
    assert!(m.unordered);
}

#[test]
fn buffered_amount_and_the_low_threshold_follow_w3c() {
    let mut p = Pair::connected();
    p.drain_buffers = false;
    let a = p.a.create_channel(ChannelInit::new("buf")).unwrap();
    p.pump();
    events(&mut p.a);
    p.a.set_buffered_amount_low_threshold(a, 100);
    assert_eq!(p.a.channel(a).unwrap().buffered_amount_low_threshold(), 100);
    p.a.send_binary(a, &[1; 150]).unwrap();
    p.a.send_text(a, "").unwrap(); // counts 0
    p.a.send_text(a, "ünï").unwrap(); // 5 bytes of UTF-8
    assert_eq!(p.a.buffered_amount(a), 155);
    p.pump(); // handed to "SCTP", which still holds it
    assert_eq!(p.a.buffered_amount(a), 155);
    p.a.handle_buffered_amount(0, 120);
    assert!(events(&mut p.a).is_empty());
    p.a.handle_buffered_amount(0, 100);
    assert_eq!(events(&mut p.a), [Event::BufferedAmountLow(a)]);
    p.a.handle_buffered_amount(0, 0);
    assert!(events(&mut p.a).is_empty(), "fires on the crossing only");
    assert_eq!(p.a.buffered_amount(a), 0);
}

#[test]
fn stream_ids_run_out_cleanly() {
    let mut m = ChannelManager::new(Config {
        role: Some(Role::Client),
        max_streams: 6,
        ..Config::default()
    });
    for want in [0, 2, 4] {
        let c = m.create_channel(ChannelInit::new("x")).unwrap();
        assert_eq!(m.channel(c).unwrap().stream(), Some(want));
    }
    assert_eq!(
        m.create_channel(ChannelInit::new("x")),
        Err(Error::NoStreamAvailable)
    );
    assert!(matches!(
        m.create_channel(ChannelInit {
            negotiated: Some(6),
            ..ChannelInit::default()
        }),
        Err(Error::InvalidInit(_))
    ));
    assert!(matches!(
        m.create_channel(ChannelInit {
            max_retransmits: Some(1),
            max_packet_life_time: Some(1),
            ..ChannelInit::default()
        }),
        Err(Error::InvalidInit(_))
    ));
}

#[test]
fn a_thousand_channels_open_and_talk() {
    let mut p = Pair::connected();
    let ids: Vec<_> = (0..1000)
        .map(|i| {
            let m = if i % 2 == 0 { &mut p.a } else { &mut p.b };
            m.create_channel(ChannelInit::new(&format!("ch{i}")))
                .unwrap()
        })
        .collect();
    p.pump();
    for (i, id) in ids.iter().enumerate() {
        let m = if i % 2 == 0 { &mut p.a } else { &mut p.b };
        m.send_text(*id, &format!("hello {i}")).unwrap();
    }
    p.pump();
    let (ea, eb) = (events(&mut p.a), events(&mut p.b));
    assert_eq!(opened(&ea).len(), 1000);
    assert_eq!(opened(&eb).len(), 1000);
    assert_eq!(messages(&ea).len(), 500);
    assert_eq!(messages(&eb).len(), 500);
}

#[test]
fn transport_abort_closes_everything_with_an_error() {
    let mut p = Pair::connected();
    let a = p.a.create_channel(ChannelInit::new("x")).unwrap();
    p.pump();
    events(&mut p.a);
    p.a.handle_transport_aborted("peer said so");
    assert_eq!(
        events(&mut p.a),
        [
            Event::Error {
                channel: Some(a),
                error: Error::TransportAborted("peer said so".into())
            },
            Event::Closed(a)
        ]
    );
    let b = p.b.channels().next().unwrap().id();
    p.b.handle_transport_closed();
    assert_eq!(events(&mut p.b).last(), Some(&Event::Closed(b)));
}

#[test]
fn deprecated_partial_messages_are_reassembled_up_to_the_cap() {
    let mut p = Pair::connected();
    p.b.config_for_test().max_receive_message_size = 10;
    let a = p.a.create_channel(ChannelInit::new("p")).unwrap();
    p.pump();
    let _ = a;
    events(&mut p.b);
    p.b.handle_message(0, 54, b"hel".to_vec());
    p.b.handle_message(0, 54, b"lo ".to_vec());
    p.b.handle_message(0, 51, b"you".to_vec());
    p.b.handle_message(0, 52, vec![1; 8]);
    p.b.handle_message(0, 52, vec![1; 8]); // over 10: dropped, reported
    p.b.handle_message(0, 53, vec![2]);
    p.b.handle_message(0, 99, vec![2]);
    p.b.handle_message(0, 51, vec![0xff]);
    let ev = events(&mut p.b);
    assert_eq!(
        messages(&ev),
        [Message::Text("hello you".into()), Message::Binary(vec![2])]
    );
    let errors: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Error { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            Error::MessageTooLarge { size: 16, max: 10 },
            Error::UnknownPpid {
                stream: 0,
                ppid: 99
            },
            Error::TextNotUtf8 { stream: 0 }
        ]
    );
}

#[derive(Debug, Clone)]
enum Input {
    Message(u16, u32, Vec<u8>),
    Reset(Vec<u16>),
    OutgoingReset(Vec<u16>),
    Buffered(u16, usize),
    Create(bool, Option<u16>),
    Send(u8, Vec<u8>),
    Close(u8),
}

fn arb_input() -> impl Strategy<Value = Input> {
    let stream = 0u16..8;
    prop_oneof![
        (
            stream.clone(),
            prop::sample::select(vec![50u32, 51, 52, 53, 54, 56, 57, 7]),
            prop::collection::vec(any::<u8>(), 0..24)
        )
            .prop_map(|(s, p, d)| Input::Message(s, p, d)),
        // DCEP messages that parse, to go deep.
        (stream.clone(), any::<u8>(), ".{0,4}").prop_map(|(s, t, l)| Input::Message(
            s,
            50,
            DcepMessage::Open(DataChannelOpen {
                channel_type: ChannelType::from_u8(t % 3).unwrap(),
                priority: 256,
                reliability_parameter: u32::from(t),
                label: l,
                protocol: String::new()
            })
            .to_vec()
        )),
        stream.clone().prop_map(|s| Input::Message(s, 50, vec![2])),
        prop::collection::vec(stream.clone(), 0..3).prop_map(Input::Reset),
        prop::collection::vec(stream.clone(), 0..3).prop_map(Input::OutgoingReset),
        (stream.clone(), 0usize..300).prop_map(|(s, n)| Input::Buffered(s, n)),
        (any::<bool>(), prop::option::of(stream)).prop_map(|(o, n)| Input::Create(o, n)),
        (any::<u8>(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(c, d)| Input::Send(c, d)),
        any::<u8>().prop_map(Input::Close),
    ]
}

proptest! {
    /// Whatever SCTP and the application throw at it, the manager neither
    /// panics nor loses track: every channel it lists is on the stream its
    /// map says, and every stream it uses is below the limit.
    #[test]
    fn arbitrary_inputs_never_panic(
        server in any::<bool>(),
        inputs in prop::collection::vec(arb_input(), 0..40),
    ) {
        let mut m = ChannelManager::new(Config {
            role: Some(if server { Role::Server } else { Role::Client }),
            max_streams: 8,
            ..Config::default()
        });
        m.handle_connected();
        for input in inputs {
            let ids: Vec<ChannelId> = m.channels().map(|c| c.id()).collect();
            let pick = |i: u8| ids.get(usize::from(i) % ids.len().max(1)).copied();
            match input {
                Input::Message(s, p, d) => m.handle_message(s, p, d),
                Input::Reset(v) => m.handle_streams_reset(&v),
                Input::OutgoingReset(v) => m.handle_outgoing_streams_reset(&v),
                Input::Buffered(s, n) => m.handle_buffered_amount(s, n),
                Input::Create(ordered, negotiated) => {
                    let _ = m.create_channel(ChannelInit { ordered, negotiated, ..ChannelInit::default() });
                }
                Input::Send(c, d) => if let Some(id) = pick(c) {
                    let _ = m.send_binary(id, &d);
                },
                Input::Close(c) => if let Some(id) = pick(c) { m.close(id) },
            }
            while let Some(o) = m.poll_output() {
                if let Output::Message(msg) = o {
                    prop_assert!(msg.stream < 8);
                }
            }
            while m.poll_event().is_some() {}
            for c in m.channels() {
                let s = c.stream().expect("role known: every channel has a stream");
                prop_assert_eq!(m.channel_on_stream(s).map(|c| c.id()), Some(c.id()));
            }
        }
    }
}

/// An OPEN on a stream at or above the negotiated count (here 16) would
/// make a channel whose ACK could never be sent: it is refused, with no ACK,
/// no reset (there is no outgoing stream 17 to reset) and no channel.
#[test]
fn open_beyond_max_streams_is_refused() {
    let mut b = ChannelManager::new(Config {
        role: Some(Role::Server),
        max_streams: 16,
        ..Config::default()
    });
    b.handle_connected();
    let open = reliable_open("far");
    for stream in [16, 18, 65534] {
        b.handle_message(stream, 50, open.to_vec());
        assert_eq!(b.poll_output(), None, "stream {stream}");
        assert_eq!(
            events(&mut b),
            [Event::Error {
                channel: None,
                error: Error::StreamOutOfRange {
                    stream,
                    max_streams: 16
                }
            }]
        );
        assert!(b.channel_on_stream(stream).is_none());
    }
    assert_eq!(b.channels().count(), 0);
    // One inside the range still opens.
    b.handle_message(14, 50, open.to_vec());
    assert!(matches!(b.poll_output(), Some(Output::Message(m)) if m.stream == 14));
}
