//! Cascading: one room spanning two SFU nodes, each published track
//! crossing between them once (issue 21).
//!
//! A room too big for one node, or whose members reached different nodes,
//! is served by several [`Sfu`]s. Between each pair of nodes of the room
//! runs one *link*: a [`PeerConnection`] of ours, a participant of each
//! node's room with the role [`Role::Cascade`].
//!
//! ```text
//!   node A                                        node B
//!   alice ─camera─► Sfu ══ link (one PeerConnection) ══► Sfu ─► dave
//!                    │     alice's layers, once each      ├──► erin
//!   bob ◄────────────┤ ◄══ carol's layers, once each ═══  │◄─camera─ carol
//! ```
//!
//! - **Sending**: every layer of every track published in the room is a
//!   track of each link of its own, fed like a subscriber's but with no
//!   layer choice: each packet crosses once, however many subscribers the
//!   other node has. What came over a link goes on to the room's *other*
//!   links, never back: the links of a room must form a tree (no loops,
//!   each track once per link). Placement makes it a star: a node that
//!   takes a room's newcomer while the owner is full links to the owner
//!   ([`super::placement`]), so a room of three nodes is the owner and two
//!   leaves, and a leaf's track crosses twice (leaf → owner → leaf) rather
//!   than once over a full mesh's direct link: the price of one link per
//!   node instead of one per pair, and of a topology every node derives
//!   from the owner key alone.
//! - **Receiving**: a publisher of the other node appears here as a
//!   participant of its own, [`Role::Remote`], whose tracks are fed by
//!   the link's packets; local subscribers get it as any publisher
//!   (`joined`, its stream id, its layers chosen per subscriber, the
//!   keyframe cache, the active speaker from its audio level).
//! - **Repair**: the link's receiver NACKs what this node lost on the link
//!   (RFC 4585 §6.2.1) and the other node answers from the link's RTX
//!   history (RFC 4588), as for any subscriber; a local subscriber's NACK
//!   is answered from its own history here, and what this node never had
//!   is NACKed over the link.
//! - **Keyframes**: local subscribers' PLI/FIR are throttled per remote
//!   layer here ([`super::KeyframeThrottle`]) and cross the link as one
//!   PLI (RFC 4585 §6.3.1), which the other node throttles again before
//!   asking its publisher.
//! - **Control**: a data channel `cascade` on the link carries JSON text:
//!   the renegotiations (`offer`, `answer`), which link m-line carries which
//!   publisher's track and layer (`publish`, `unpublish`), `leave` and the
//!   room's `chat`.
//!
//! Signaling: the node that opens the link ([`Sfu::dial_cascade`]) offers
//! once through HTTP (`POST /cascade/ROOM` of the other node's
//! `rtclab sfu`, answered by [`Sfu::accept_cascade`]); from then on both
//! nodes offer on the control channel as their publishers come and go.
//! Offers may cross: "perfect negotiation" (W3C WebRTC §10.7 example,
//! JSEP §4.1.10.2 rollback), the dialing node polite (its pending offer is
//! rolled back by the other's), the accepting node impolite (it ignores a
//! crossing offer and waits for the answer to its own).
//!
//! Identities: each node numbers its participants itself; a remote
//! publisher is `pN` of this node (the control messages name it by the
//! other node's id, mapped here).
//!
//! Teardown: when the last participant of a node's own leaves a room and
//! the room has one link there (a leaf; or a hub left with one), the link
//! closes: its DTLS close_notify tells the other node at once, and the
//! server `DELETE`s the link's resource when it opened it
//! ([`super::server`]).
//!
//! Left out: a link does not pick layers by its bandwidth (every layer
//! crosses); links configured by hand (`--cascade`) into a cycle would
//! loop.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::{Value, json};

use super::{Down, Error};
use super::{Event, Participant, ParticipantId, PubLayer, Published, Role, Sfu, forward::Rewriter};
use crate::datachannel::{ChannelId, ChannelInit};
use crate::machine::{Machine, Transmit, TransmitMeta};
use crate::peer::{SdpType, SignalingState, TrackId};
use crate::rtp::RtpPacket;
use crate::rtp::codec::Codec;
use crate::sdp::Mid;
use crate::sfu::ClientSignal;

/// The control channel's label.
pub const CONTROL_LABEL: &str = "cascade";
/// The largest control message taken (an offer of a link carrying many
/// tracks is a few tens of KB).
const MAX_CONTROL: usize = 512 * 1024;
/// Tracks one remote publisher may announce, and layers per track.
const MAX_REMOTE_TRACKS: usize = 8;
const MAX_LAYERS: usize = 4;

/// A message of a link's control channel (JSON text, one per data-channel
/// message; both nodes are rtclab, the format is ours):
///
/// | `type` | fields |
/// |---|---|
/// | `offer`, `answer` | `sdp` |
/// | `publish` | `from` (`pN` of the sender), `mid`, `codec`, `fmtp`, `layers`: `[{rid, link}]` (the link's m-line of each layer) |
/// | `unpublish` | `from`, `mid` |
/// | `leave` | `from` |
/// | `chat` | `from`, `text` |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// A renegotiation offer.
    Offer(String),
    /// The answer to one.
    Answer(String),
    /// A publisher's track, and which m-lines of the link carry its layers.
    Publish {
        /// The publisher, as the sending node names it.
        from: String,
        /// Its track's mid (on the publisher's own connection).
        mid: Mid,
        /// The codec its packets carry.
        codec: Codec,
        /// Each layer: its rid (`None`: the only one) and the link's mid.
        layers: Vec<(Option<Mid>, Mid)>,
    },
    /// A publisher's track ended.
    Unpublish {
        /// The publisher.
        from: String,
        /// The track.
        mid: Mid,
    },
    /// A participant of the sending node left.
    Leave {
        /// Who.
        from: String,
    },
    /// A chat message of a participant of the sending node.
    Chat {
        /// Who.
        from: String,
        /// What.
        text: String,
    },
}

/// Why a control message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    /// Longer than a control message may be.
    TooLong(usize),
    /// Not a JSON object.
    NotJson(String),
    /// A field is missing or not a string.
    Missing(&'static str),
    /// A field's value is out of bounds.
    Bad(&'static str),
    /// An unknown `type`.
    UnknownType(String),
}

impl std::fmt::Display for ControlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ControlError::TooLong(n) => {
                write!(f, "a control message of {n} bytes, over {MAX_CONTROL}")
            }
            ControlError::NotJson(e) => write!(f, "a control message is not JSON: {e}"),
            ControlError::Missing(k) => write!(f, "a control message without \"{k}\""),
            ControlError::Bad(k) => write!(f, "a control message with a bad \"{k}\""),
            ControlError::UnknownType(t) => write!(f, "a control message of unknown type {t:?}"),
        }
    }
}

impl std::error::Error for ControlError {}

/// A participant id as a node names it: `pN`-like, at most 32 bytes.
fn id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

impl Control {
    /// Reads one message.
    pub fn parse(text: &[u8]) -> Result<Control, ControlError> {
        if text.len() > MAX_CONTROL {
            return Err(ControlError::TooLong(text.len()));
        }
        let v: Value =
            serde_json::from_slice(text).map_err(|e| ControlError::NotJson(e.to_string()))?;
        let field = |k: &'static str| {
            v.get(k)
                .and_then(Value::as_str)
                .ok_or(ControlError::Missing(k))
        };
        let from = || {
            let f = field("from")?;
            id_ok(f)
                .then(|| f.to_string())
                .ok_or(ControlError::Bad("from"))
        };
        let mid = || Mid::new(field("mid")?).ok_or(ControlError::Bad("mid"));
        Ok(match field("type")? {
            "offer" => Control::Offer(field("sdp")?.to_string()),
            "answer" => Control::Answer(field("sdp")?.to_string()),
            "publish" => {
                let fmtp = match v.get("fmtp") {
                    None | Some(Value::Null) => None,
                    Some(f) => Some(f.as_str().ok_or(ControlError::Bad("fmtp"))?),
                };
                let codec =
                    Codec::from_sdp(field("codec")?, fmtp).ok_or(ControlError::Bad("codec"))?;
                let list = v
                    .get("layers")
                    .and_then(Value::as_array)
                    .ok_or(ControlError::Missing("layers"))?;
                if list.is_empty() || list.len() > MAX_LAYERS {
                    return Err(ControlError::Bad("layers"));
                }
                let layers = list
                    .iter()
                    .map(|l| {
                        let rid = match l.get("rid") {
                            None | Some(Value::Null) => None,
                            Some(r) => Some(
                                r.as_str()
                                    .and_then(Mid::new)
                                    .ok_or(ControlError::Bad("rid"))?,
                            ),
                        };
                        let link = l
                            .get("link")
                            .and_then(Value::as_str)
                            .and_then(Mid::new)
                            .ok_or(ControlError::Bad("link"))?;
                        Ok((rid, link))
                    })
                    .collect::<Result<Vec<_>, ControlError>>()?;
                Control::Publish {
                    from: from()?,
                    mid: mid()?,
                    codec,
                    layers,
                }
            }
            "unpublish" => Control::Unpublish {
                from: from()?,
                mid: mid()?,
            },
            "leave" => Control::Leave { from: from()? },
            "chat" => {
                let text = field("text")?;
                if text.len() > 16 * 1024 {
                    return Err(ControlError::Bad("text"));
                }
                Control::Chat {
                    from: from()?,
                    text: text.to_string(),
                }
            }
            t => return Err(ControlError::UnknownType(t.chars().take(32).collect())),
        })
    }

    /// Writes it.
    pub fn emit(&self) -> String {
        match self {
            Control::Offer(sdp) => json!({"type": "offer", "sdp": sdp}),
            Control::Answer(sdp) => json!({"type": "answer", "sdp": sdp}),
            Control::Publish { from, mid, codec, layers } => {
                let layers: Vec<Value> = layers
                    .iter()
                    .map(|(rid, link)| json!({"rid": rid.as_ref().map(Mid::as_str), "link": link.as_str()}))
                    .collect();
                json!({
                    "type": "publish",
                    "from": from,
                    "mid": mid.as_str(),
                    "codec": codec.name(),
                    "fmtp": codec.fmtp(),
                    "layers": layers,
                })
            }
            Control::Unpublish { from, mid } => json!({"type": "unpublish", "from": from, "mid": mid.as_str()}),
            Control::Leave { from } => json!({"type": "leave", "from": from}),
            Control::Chat { from, text } => json!({"type": "chat", "from": from, "text": text}),
        }
        .to_string()
    }
}

/// Counters of the links, for tests and `rtclab speed sfu --cascade`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CascadeStats {
    /// RTP packets sent over links (each published packet once per link).
    pub rtp_sent: u64,
    /// RTP packets received from links and fed to a remote publisher.
    pub rtp_received: u64,
    /// RTP packets from a link on an m-line not announced (yet).
    pub rtp_unmapped: u64,
    /// Copies from a link dropped (repairs that came twice, probe padding).
    pub rtp_duplicates: u64,
    /// Keyframe requests (PLI) sent over links.
    pub keyframe_requests: u64,
    /// NACKs sent over links for what a local subscriber lost and this
    /// node never had.
    pub nacks: u64,
    /// Control messages received that were malformed or out of turn.
    pub bad_control: u64,
    /// Renegotiations: offers sent over links.
    pub offers: u64,
}

/// One link's state (the participant holds its connection).
struct Link {
    room: String,
    /// The dialing node yields when offers cross.
    polite: bool,
    control: Option<ChannelId>,
    /// The other node's participant id (`pN` there) → the remote
    /// publisher here.
    remotes: HashMap<String, ParticipantId>,
    /// The link's m-lines we receive on → (remote publisher, its mid, layer).
    incoming: HashMap<Mid, Incoming>,
    /// Local tracks on the link not announced yet.
    unannounced: Vec<(ParticipantId, Mid)>,
    /// Our tracks in the offer in flight, and those an answer accepted.
    offered: Vec<TrackId>,
    negotiated: Vec<TrackId>,
}

/// What one m-line of a link feeds.
struct Incoming {
    to: (ParticipantId, Mid, Option<Mid>),
    seen: SeqWindow,
}

/// The sequence numbers received lately on one m-line of a link: a copy
/// (the other node's retransmission of what arrived after all, or probe
/// padding, which is RTX copies of the newest packet) is dropped here
/// rather than forwarded to every subscriber.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeqWindow {
    highest: Option<u16>,
    /// Bit `n`: `highest - n` was received.
    bits: u128,
}

impl SeqWindow {
    /// Whether `seq` is new (and now seen); one older than the window's
    /// 128 packets is taken as new (a restarted stream).
    pub fn accept(&mut self, seq: u16) -> bool {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            self.bits = 1;
            return true;
        };
        let ahead = seq.wrapping_sub(h) as i16;
        if ahead > 0 {
            let n = ahead as u32;
            self.bits = if n >= 128 { 0 } else { self.bits << n };
            self.bits |= 1;
            self.highest = Some(seq);
            return true;
        }
        let back = (-i32::from(ahead)) as u32;
        if back >= 128 {
            *self = SeqWindow::default();
            return self.accept(seq);
        }
        let bit = 1u128 << back;
        let new = self.bits & bit == 0;
        self.bits |= bit;
        new
    }
}

/// Every link of the SFU.
#[derive(Default)]
pub(super) struct Links {
    links: HashMap<ParticipantId, Link>,
    /// Each remote publisher's link.
    fed_by: HashMap<ParticipantId, ParticipantId>,
    /// The last datagrams of links closed (DTLS close_notify), to send.
    parting: VecDeque<Transmit>,
    stats: CascadeStats,
}

/// The last datagrams kept of one closed link.
const MAX_PARTING: usize = 16;

impl Sfu {
    /// Opens a link of `room` to another node: the offer to send it
    /// (`POST /cascade/ROOM`); its answer goes to
    /// [`Sfu::handle_signal`] as [`ClientSignal::Answer`], its candidates
    /// as [`ClientSignal::Candidate`].
    pub fn dial_cascade(
        &mut self,
        now: Instant,
        room: &str,
    ) -> Result<(ParticipantId, String), Error> {
        let id = self.join_as(now, room, Role::Cascade)?;
        let offer = self.participants.get_mut(&id).map(|p| {
            p.pc.create_data_channel(ChannelInit::new(CONTROL_LABEL))
                .and_then(|_| p.pc.create_offer(now))
                .and_then(|o| {
                    p.pc.set_local_description(now, SdpType::Offer, &o)
                        .map(|()| o)
                })
        });
        match offer {
            Some(Ok(o)) => {
                self.cascades.links.insert(id, Link::new(room, true));
                self.touch(now, id);
                self.process(now);
                Ok((id, self.advertised(o)))
            }
            Some(Err(e)) => {
                self.leave(now, id);
                Err(Error::Peer(e))
            }
            None => Err(Error::UnknownParticipant),
        }
    }

    /// Accepts a link of `room` opened by another node with `offer`: the
    /// answer (without candidates: [`Sfu::host_candidate`] is ours).
    pub fn accept_cascade(
        &mut self,
        now: Instant,
        room: &str,
        offer: String,
    ) -> Result<(ParticipantId, String), Error> {
        let id = self.join_as(now, room, Role::Cascade)?;
        self.cascades.links.insert(id, Link::new(room, false));
        if let Err(e) = self.handle_signal(now, id, ClientSignal::Offer(offer)) {
            self.leave(now, id);
            return Err(e);
        }
        match self.take_answer(id) {
            Some(a) => Ok((id, a)),
            None => {
                self.leave(now, id);
                Err(Error::Protocol("no answer to the link's offer"))
            }
        }
    }

    /// The links' counters.
    pub fn cascade_stats(&self) -> CascadeStats {
        self.cascades.stats
    }

    /// The links of `room`.
    pub fn cascade_links(&self, room: &str) -> Vec<ParticipantId> {
        let mut v: Vec<ParticipantId> = self
            .cascades
            .links
            .iter()
            .filter(|(_, l)| l.room == room)
            .map(|(id, _)| *id)
            .collect();
        v.sort_unstable();
        v
    }

    /// The remote publishers a link feeds (`pN` of the other node → here).
    pub fn cascade_remotes(&self, link: ParticipantId) -> Vec<(String, ParticipantId)> {
        let mut v: Vec<(String, ParticipantId)> = self
            .cascades
            .links
            .get(&link)
            .map(|l| l.remotes.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    // ---- hooks called by the SFU's event loop -------------------------------

    /// A packet from participant `id` on `mid`: from a link, the remote
    /// publisher, track and layer it belongs to (`None`: not announced,
    /// dropped); from anyone else, itself.
    pub(super) fn cascade_source(
        &mut self,
        id: ParticipantId,
        mid: Mid,
        rid: Option<Mid>,
        packet: &[u8],
    ) -> Option<(ParticipantId, Mid, Option<Mid>)> {
        let Some(link) = self.cascades.links.get_mut(&id) else {
            return Some((id, mid, rid));
        };
        match link.incoming.get_mut(&mid) {
            Some(x) => {
                let seq = RtpPacket::new_checked(packet).ok()?.sequence_number();
                if !x.seen.accept(seq) {
                    self.cascades.stats.rtp_duplicates += 1;
                    return None;
                }
                self.cascades.stats.rtp_received += 1;
                Some(x.to)
            }
            None => {
                self.cascades.stats.rtp_unmapped += 1;
                None
            }
        }
    }

    /// A link's m-line has media: its packets come to the SFU as they are
    /// (RTP mode). `false` for anyone else's.
    pub(super) fn cascade_track(&mut self, id: ParticipantId, mid: &str) -> bool {
        if !self.cascades.links.contains_key(&id) {
            return false;
        }
        if let Some(p) = self.participants.get_mut(&id) {
            let _ = p.pc.set_rtp_mode(mid, true);
        }
        true
    }

    /// A local publisher's packet of layer `li` of `mid`: once on every
    /// link of its room.
    pub(super) fn cascade_forward(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        mid: Mid,
        li: usize,
        packet: &[u8],
    ) {
        if self.cascades.links.is_empty() {
            return;
        }
        let Some(room) = self.participants.get(&publisher).map(|p| p.room.clone()) else {
            return;
        };
        let Some(from) = self.origin(publisher) else {
            return;
        };
        let Ok(rtp) = RtpPacket::new_checked(packet) else {
            return;
        };
        let (ssrc, seq, ts) = (rtp.ssrc(), rtp.sequence_number(), rtp.timestamp());
        for (&lid, link) in &self.cascades.links {
            if link.room != room || from == Some(lid) {
                continue;
            }
            let Some(s) = self.participants.get_mut(&lid) else {
                continue;
            };
            let Some(d) = s.down.iter_mut().find(|d| {
                d.publisher == publisher && d.mid == mid && d.current == Some(li) && !d.removed
            }) else {
                continue;
            };
            if d.rewriter.source() != Some(ssrc) {
                d.rewriter.switch_to(now, ssrc, seq, ts);
            }
            let Some(renumber) = d.rewriter.renumber(now, &rtp) else {
                continue;
            };
            if self
                .forwarded
                .send(&mut s.pc, now, d.track, packet, renumber)
            {
                self.cascades.stats.rtp_sent += 1;
            }
        }
    }

    /// A keyframe request for a remote publisher's layer: one PLI over
    /// its link (already throttled here).
    pub(super) fn cascade_keyframe(&mut self, remote: ParticipantId, mid: Mid, rid: Option<Mid>) {
        let Some((lid, link_mid)) = self.link_mid(remote, mid, rid) else {
            return;
        };
        if let Some(p) = self.participants.get_mut(&lid)
            && p.pc.request_keyframe_layer(&link_mid, None).is_ok()
        {
            self.cascades.stats.keyframe_requests += 1;
            self.mark(lid);
        }
    }

    /// A local subscriber lost packets of a remote publisher that this
    /// node never had either: NACKed over the link.
    pub(super) fn cascade_nack(
        &mut self,
        remote: ParticipantId,
        mid: Mid,
        rid: Option<Mid>,
        seqs: &[u16],
    ) {
        let Some((lid, link_mid)) = self.link_mid(remote, mid, rid) else {
            return;
        };
        if let Some(p) = self.participants.get_mut(&lid)
            && p.pc.send_nack(&link_mid, seqs).is_ok()
        {
            self.cascades.stats.nacks += 1;
            self.mark(lid);
        }
    }

    /// A publisher published `mid`: onto every link of its room but the
    /// one it came by.
    pub(super) fn cascade_publish(&mut self, now: Instant, publisher: ParticipantId, mid: Mid) {
        if self.cascades.links.is_empty() {
            return;
        }
        let Some(from) = self.origin(publisher) else {
            return;
        };
        let Some(room) = self.participants.get(&publisher).map(|p| p.room.clone()) else {
            return;
        };
        for lid in self.cascade_links(&room) {
            if from != Some(lid) {
                self.add_slots(now, lid, publisher, mid);
            }
        }
    }

    /// A local publisher's track ended: the other nodes drop it (the
    /// SFU removed the link's tracks with everyone's).
    pub(super) fn cascade_unpublish(&mut self, now: Instant, publisher: ParticipantId, mid: Mid) {
        if self.cascades.links.is_empty() {
            return;
        }
        let Some(from) = self.origin(publisher) else {
            return;
        };
        let Some(room) = self.participants.get(&publisher).map(|p| p.room.clone()) else {
            return;
        };
        let msg = Control::Unpublish {
            from: publisher.to_string(),
            mid,
        }
        .emit();
        for lid in self.cascade_links(&room) {
            if from == Some(lid) {
                continue;
            }
            if let Some(l) = self.cascades.links.get_mut(&lid) {
                l.unannounced
                    .retain(|(p, m)| !(*p == publisher && *m == mid));
            }
            self.send_control(now, lid, &msg);
        }
    }

    /// Someone left (already out of the SFU's tables): a link takes its
    /// remote publishers with it; a publisher, local or relayed, is gone
    /// from the other nodes too. Then the room's links may close
    /// ([`Sfu::prune_links`]).
    pub(super) fn cascade_left(&mut self, now: Instant, p: &Participant) {
        let from = match p.role {
            Role::Cascade => {
                if let Some(link) = self.cascades.links.remove(&p.id) {
                    for (_, r) in link.remotes {
                        self.leave(now, r);
                    }
                }
                self.prune_links(now, &p.room);
                return;
            }
            Role::Remote => {
                for l in self.cascades.links.values_mut() {
                    l.remotes.retain(|_, r| *r != p.id);
                    l.incoming.retain(|_, x| x.to.0 != p.id);
                }
                self.cascades.fed_by.remove(&p.id)
            }
            Role::Page | Role::Publisher | Role::Viewer => None,
        };
        let links = self.cascade_links(&p.room);
        if links.is_empty() {
            return;
        }
        if p.role != Role::Viewer {
            let msg = Control::Leave {
                from: p.id.to_string(),
            }
            .emit();
            for &lid in &links {
                if let Some(l) = self.cascades.links.get_mut(&lid) {
                    l.unannounced.retain(|(x, _)| *x != p.id);
                }
                if from != Some(lid) {
                    self.send_control(now, lid, &msg);
                }
            }
        }
        if super::local_role(p.role) {
            self.prune_links(now, &p.room);
        }
    }

    /// A room with no participant of this node's own left and at most one
    /// link has nothing to forward: its link closes (the other node sees
    /// the DTLS close_notify at once; the server `DELETE`s a link it
    /// opened). A node with two links or more stays on as their relay
    /// (the hub of a star whose own participants left), until all but
    /// one of them closed.
    fn prune_links(&mut self, now: Instant, room: &str) {
        let links = self.cascade_links(room);
        let locals = self.room_members(room).into_iter().any(|m| {
            self.participants
                .get(&m)
                .is_some_and(|x| super::local_role(x.role))
        });
        if locals || links.len() > 1 {
            return;
        }
        for lid in links {
            self.leave(now, lid);
        }
    }

    /// A link leaving: its last datagrams (DTLS close_notify, which tells
    /// the other node at once) are kept to send.
    pub(super) fn cascade_parting(&mut self, p: &mut Participant) {
        if p.role != Role::Cascade {
            return;
        }
        for _ in 0..MAX_PARTING {
            let Some(t) = p.pc.poll_transmit() else {
                break;
            };
            self.cascades.parting.push_back(t);
        }
    }

    /// The next of the closed links' last datagrams.
    pub(super) fn cascade_poll_parting(&mut self, buf: &mut Vec<u8>) -> Option<TransmitMeta> {
        let t = self.cascades.parting.pop_front()?;
        // Appended, as poll_transmit_into's contract asks.
        buf.extend_from_slice(&t.contents);
        Some(t.meta())
    }

    /// A local participant's chat message: to the room's other nodes.
    pub(super) fn cascade_chat(
        &mut self,
        now: Instant,
        room: &str,
        from: ParticipantId,
        text: &str,
    ) {
        if self.cascades.links.is_empty() {
            return;
        }
        let Some(origin) = self.origin(from) else {
            return;
        };
        let msg = Control::Chat {
            from: from.to_string(),
            text: text.to_string(),
        }
        .emit();
        for lid in self.cascade_links(room) {
            if origin != Some(lid) {
                self.send_control(now, lid, &msg);
            }
        }
    }

    /// A data channel opened: a link's control channel starts the link
    /// (every local track onto it).
    pub(super) fn cascade_open(&mut self, now: Instant, id: ParticipantId, ch: ChannelId) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let is_control =
            p.pc.data_channels()
                .and_then(|d| d.channel(ch))
                .is_some_and(|c| c.label() == CONTROL_LABEL);
        let room = p.room.clone();
        let Some(link) = self.cascades.links.get_mut(&id) else {
            return;
        };
        if !is_control || link.control.is_some() {
            return;
        }
        link.control = Some(ch);
        let tracks: Vec<(ParticipantId, Mid)> = self
            .room_members(&room)
            .into_iter()
            .filter(|m| self.origin(*m).is_some_and(|from| from != Some(id)))
            .filter_map(|m| self.participants.get(&m))
            .flat_map(|p| p.published.iter().map(move |t| (p.id, t.mid)))
            .collect();
        for (publisher, mid) in tracks {
            self.add_slots(now, id, publisher, mid);
        }
        self.touch(now, id);
    }

    /// A text message on a link's control channel (`true`: it was one).
    pub(super) fn cascade_message(
        &mut self,
        now: Instant,
        id: ParticipantId,
        channel: ChannelId,
        text: &str,
    ) -> bool {
        let Some(link) = self.cascades.links.get(&id) else {
            return false;
        };
        if link.control != Some(channel) {
            return false;
        }
        if let Err(e) = self.on_control(now, id, text) {
            self.cascades.stats.bad_control += 1;
            tracing::debug!(link = %id, error = e, "sfu: cascade control message refused");
        }
        self.touch(now, id);
        true
    }

    /// A link's turn in the event loop (`false`: not a link): announce
    /// what an answer negotiated, offer what changed.
    pub(super) fn cascade_renegotiate(&mut self, now: Instant, id: ParticipantId) -> bool {
        let Some(link) = self.cascades.links.get(&id) else {
            return false;
        };
        let Some(ch) = link.control else {
            return true;
        };
        self.announce(now, id);
        let Some(p) = self.participants.get_mut(&id) else {
            return true;
        };
        if !p.needs_offer || p.pc.signaling_state() != SignalingState::Stable {
            return true;
        }
        p.needs_offer = false;
        let offered: Vec<TrackId> = p
            .down
            .iter()
            .filter(|d| !d.removed)
            .map(|d| d.track)
            .collect();
        match p.pc.create_offer(now).and_then(|o| {
            p.pc.set_local_description(now, SdpType::Offer, &o)
                .map(|()| o)
        }) {
            Ok(o) => {
                let msg = Control::Offer(super::public_ip::signaled(&self.config, o)).emit();
                let _ = p.pc.send_text(now, ch, &msg);
                p.down.retain(|d| !d.removed);
                self.cascades.stats.offers += 1;
                if let Some(l) = self.cascades.links.get_mut(&id) {
                    l.offered = offered;
                    // Removed tracks are forgotten (bounded by the live ones).
                    l.negotiated
                        .retain(|t| p.down.iter().any(|d| d.track == *t));
                }
            }
            Err(e) => tracing::debug!(link = %id, error = %e, "sfu: cannot offer on a link"),
        }
        true
    }

    // ---- the link's inside ---------------------------------------------------

    /// Where a publisher's media comes from: `Some(None)`, this node (a
    /// page, a WHIP publisher); `Some(Some(link))`, a remote publisher fed
    /// by `link`; `None`: it publishes nothing (a viewer, a link).
    fn origin(&self, id: ParticipantId) -> Option<Option<ParticipantId>> {
        match self.participants.get(&id)?.role {
            Role::Page | Role::Publisher => Some(None),
            Role::Remote => Some(self.cascades.fed_by.get(&id).copied()),
            Role::Viewer | Role::Cascade => None,
        }
    }

    /// The link feeding `remote`'s layer, and the link's m-line for it.
    fn link_mid(
        &self,
        remote: ParticipantId,
        mid: Mid,
        rid: Option<Mid>,
    ) -> Option<(ParticipantId, Mid)> {
        self.cascades.links.iter().find_map(|(lid, l)| {
            l.incoming
                .iter()
                .find(|(_, x)| x.to == (remote, mid, rid))
                .map(|(m, _)| (*lid, *m))
        })
    }

    /// Marks a participant for the event loop (output to send).
    fn mark(&mut self, id: ParticipantId) {
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
    }

    fn send_control(&mut self, now: Instant, lid: ParticipantId, msg: &str) {
        let Some(ch) = self.cascades.links.get(&lid).and_then(|l| l.control) else {
            return;
        };
        if let Some(p) = self.participants.get_mut(&lid) {
            let _ = p.pc.send_text(now, ch, msg);
        }
        self.touch(now, lid);
    }

    /// Every layer of `publisher`'s track `mid` becomes a track of the
    /// link (renegotiated, then announced).
    fn add_slots(&mut self, now: Instant, lid: ParticipantId, publisher: ParticipantId, mid: Mid) {
        let Some((codec, kind, layers)) = self.participants.get(&publisher).and_then(|p| {
            let t = p.published.iter().find(|t| t.mid == mid)?;
            Some((t.codec?, t.kind, t.layers.len()))
        }) else {
            return;
        };
        let Some(s) = self.participants.get_mut(&lid) else {
            return;
        };
        if s.down
            .iter()
            .any(|d| d.publisher == publisher && d.mid == mid && !d.removed)
        {
            return;
        }
        let stream = publisher.to_string();
        for li in 0..layers {
            match s.pc.add_track_in_stream(codec, Some(&stream)) {
                Ok(track) => s.down.push(Down {
                    publisher,
                    mid,
                    track,
                    kind,
                    rewriter: Rewriter::new(codec.clock_rate()),
                    current: Some(li),
                    target: Some(li),
                    svc: super::SvcDown::default(),
                    vp9: Default::default(),
                    own_history: false,
                    removed: false,
                }),
                Err(e) => {
                    tracing::debug!(link = %lid, error = %e, "sfu: cannot add a link track");
                    return;
                }
            }
        }
        s.needs_offer = true;
        if let Some(l) = self.cascades.links.get_mut(&lid) {
            l.unannounced.push((publisher, mid));
        }
        self.touch(now, lid);
    }

    /// Tells the other node which m-lines carry the local tracks an
    /// answer accepted.
    fn announce(&mut self, now: Instant, lid: ParticipantId) {
        let Some(link) = self.cascades.links.get(&lid) else {
            return;
        };
        if link.unannounced.is_empty() {
            return;
        }
        let Some(s) = self.participants.get(&lid) else {
            return;
        };
        if s.pc.signaling_state() != SignalingState::Stable {
            return;
        }
        let mut done = Vec::new();
        let mut msgs = Vec::new();
        for &(publisher, mid) in &link.unannounced {
            let Some(t) = self
                .participants
                .get(&publisher)
                .and_then(|p| p.published.iter().find(|t| t.mid == mid))
            else {
                done.push((publisher, mid));
                continue;
            };
            let Some(codec) = t.codec else {
                done.push((publisher, mid));
                continue;
            };
            let slots: Vec<&Down> = s
                .down
                .iter()
                .filter(|d| d.publisher == publisher && d.mid == mid && !d.removed)
                .collect();
            let ready =
                !slots.is_empty() && slots.iter().all(|d| link.negotiated.contains(&d.track));
            if !ready {
                continue;
            }
            let layers: Vec<(Option<Mid>, Mid)> = slots
                .iter()
                .filter_map(|d| {
                    let rid = t.layers.get(d.current?)?.rid;
                    Some((rid, Mid::new(s.pc.track_mid(d.track)?)?))
                })
                .collect();
            msgs.push(
                Control::Publish {
                    from: publisher.to_string(),
                    mid,
                    codec,
                    layers,
                }
                .emit(),
            );
            done.push((publisher, mid));
        }
        if let Some(l) = self.cascades.links.get_mut(&lid) {
            l.unannounced.retain(|x| !done.contains(x));
        }
        for m in msgs {
            self.send_control(now, lid, &m);
        }
    }

    /// One control message from the other node.
    fn on_control(&mut self, now: Instant, lid: ParticipantId, text: &str) -> Result<(), String> {
        match Control::parse(text.as_bytes()).map_err(|e| e.to_string())? {
            Control::Offer(sdp) => self.on_link_offer(now, lid, &sdp),
            Control::Answer(sdp) => {
                let p = self.participants.get_mut(&lid).ok_or("no link")?;
                if p.pc.signaling_state() != SignalingState::HaveLocalOffer {
                    return Err("an answer without an offer".into());
                }
                p.pc.set_remote_description(now, SdpType::Answer, &sdp)
                    .map_err(|e| e.to_string())?;
                if let Some(l) = self.cascades.links.get_mut(&lid) {
                    let offered = std::mem::take(&mut l.offered);
                    l.negotiated.extend(offered);
                }
                Ok(())
            }
            Control::Publish {
                from,
                mid,
                codec,
                layers,
            } => self.on_link_publish(now, lid, &from, mid, codec, &layers),
            Control::Unpublish { from, mid } => {
                let remote = self.remote(lid, &from).ok_or("an unknown publisher")?;
                if let Some(l) = self.cascades.links.get_mut(&lid) {
                    l.incoming
                        .retain(|_, x| !(x.to.0 == remote && x.to.1 == mid));
                }
                self.on_track_ended(now, remote, mid.as_str());
                Ok(())
            }
            Control::Leave { from } => {
                let remote = self
                    .cascades
                    .links
                    .get_mut(&lid)
                    .and_then(|l| l.remotes.remove(&from));
                if let Some(r) = remote {
                    self.leave(now, r);
                }
                Ok(())
            }
            Control::Chat { from, text } => {
                let from = self.remote_or_join(now, lid, &from)?;
                let room = self
                    .cascades
                    .links
                    .get(&lid)
                    .map(|l| l.room.clone())
                    .unwrap_or_default();
                let msg =
                    json!({"type": "chat", "from": from.to_string(), "text": text}).to_string();
                self.broadcast(now, &room, Some(from), &msg);
                self.cascade_chat(now, &room, from, &text);
                Ok(())
            }
        }
    }

    /// The other node offers: answered, unless our own offer crossed it
    /// and we are the impolite side (then ours is answered first).
    fn on_link_offer(&mut self, now: Instant, lid: ParticipantId, sdp: &str) -> Result<(), String> {
        let polite = self.cascades.links.get(&lid).is_some_and(|l| l.polite);
        let p = self.participants.get_mut(&lid).ok_or("no link")?;
        let crossing = p.pc.signaling_state() != SignalingState::Stable;
        if crossing && !polite {
            return Ok(());
        }
        // Polite: our offer is rolled back (its tracks stay, for the next).
        p.pc.set_remote_description(now, SdpType::Offer, sdp)
            .map_err(|e| e.to_string())?;
        let answer = p.pc.create_answer().and_then(|a| {
            p.pc.set_local_description(now, SdpType::Answer, &a)
                .map(|()| a)
        });
        let answer = answer.map_err(|e| e.to_string())?;
        // Tracks the rolled-back offer carried, or that the answer could
        // not take, go in our next offer (announced after its answer).
        let pending = p
            .down
            .iter()
            .any(|d| !d.removed && !self.cascades.links[&lid].negotiated.contains(&d.track));
        if crossing || pending {
            p.needs_offer = true;
        }
        if let Some(l) = self.cascades.links.get_mut(&lid) {
            l.offered.clear();
        }
        let msg = Control::Answer(self.advertised(answer)).emit();
        self.send_control(now, lid, &msg);
        Ok(())
    }

    /// The other node's publisher `from` announced a track: a remote
    /// publisher here (joining the room if new), its track, and the link's
    /// m-lines feeding its layers.
    fn on_link_publish(
        &mut self,
        now: Instant,
        lid: ParticipantId,
        from: &str,
        mid: Mid,
        codec: Codec,
        layers: &[(Option<Mid>, Mid)],
    ) -> Result<(), String> {
        let kind = codec.kind();
        let remote = self.remote_or_join(now, lid, from)?;
        let Some(p) = self.participants.get_mut(&remote) else {
            return Err("the remote publisher is gone".into());
        };
        if p.published.iter().any(|t| t.mid == mid) || p.published.len() >= MAX_REMOTE_TRACKS {
            return Err("a track announced twice, or too many".into());
        }
        let interval = self.config.keyframe_interval;
        p.published.push(Published {
            mid,
            kind,
            codec: Some(codec),
            layers: layers
                .iter()
                .map(|(rid, _)| PubLayer::new(*rid, interval))
                .collect(),
            depacketizer: Some(codec.depacketizer()),
            svc: None,
            vp9: None,
            level: 127.0,
        });
        let room = p.room.clone();
        if let Some(l) = self.cascades.links.get_mut(&lid) {
            for (rid, link_mid) in layers {
                l.incoming.insert(
                    *link_mid,
                    Incoming {
                        to: (remote, mid, *rid),
                        seen: SeqWindow::default(),
                    },
                );
            }
        }
        if let Some(p) = self.participants.get_mut(&lid) {
            for (_, link_mid) in layers {
                let _ = p.pc.set_rtp_mode(link_mid.as_str(), true);
            }
        }
        self.events.push_back(Event::Published {
            participant: remote,
            mid,
            kind,
        });
        for m in self.room_members(&room) {
            if m != remote {
                self.add_down(m, remote, mid, kind, codec);
                self.touch(now, m);
            }
        }
        // On to the room's other links (a star's hub relays).
        self.cascade_publish(now, remote, mid);
        Ok(())
    }

    /// The remote publisher for the other node's `from`.
    fn remote(&self, lid: ParticipantId, from: &str) -> Option<ParticipantId> {
        self.cascades.links.get(&lid)?.remotes.get(from).copied()
    }

    /// [`Sfu::remote`], joining the room as a new remote publisher if
    /// unknown.
    fn remote_or_join(
        &mut self,
        now: Instant,
        lid: ParticipantId,
        from: &str,
    ) -> Result<ParticipantId, String> {
        if let Some(r) = self.remote(lid, from) {
            return Ok(r);
        }
        if !id_ok(from) {
            return Err("a bad participant id".into());
        }
        let room = self
            .cascades
            .links
            .get(&lid)
            .map(|l| l.room.clone())
            .ok_or("no link")?;
        let r = self
            .join_as(now, &room, Role::Remote)
            .map_err(|e| e.to_string())?;
        if let Some(l) = self.cascades.links.get_mut(&lid) {
            l.remotes.insert(from.to_string(), r);
        }
        self.cascades.fed_by.insert(r, lid);
        Ok(r)
    }
}

impl Link {
    fn new(room: &str, polite: bool) -> Link {
        Link {
            room: room.to_string(),
            polite,
            control: None,
            remotes: HashMap::new(),
            incoming: HashMap::new(),
            unannounced: Vec::new(),
            offered: Vec::new(),
            negotiated: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Codec, Control, Mid, SeqWindow};
    use proptest::prelude::*;

    #[test]
    fn copies_are_dropped_and_late_repairs_taken() {
        let mut w = SeqWindow::default();
        assert!(w.accept(65_534));
        assert!(w.accept(1)); // across the wrap; 65_535 and 0 lost
        assert!(!w.accept(1));
        assert!(w.accept(65_535)); // the repair of a loss
        assert!(!w.accept(65_535));
        assert!(w.accept(0));
        assert!(!w.accept(65_534));
        // Far behind: a restarted stream, taken.
        assert!(w.accept(30_000));
        assert!(!w.accept(30_000));
    }

    fn mid() -> impl Strategy<Value = Mid> {
        "[a-z0-9]{1,16}".prop_map(|m| Mid::new(&m).expect("a mid"))
    }

    fn control() -> impl Strategy<Value = Control> {
        let from = "[A-Za-z0-9._-]{1,32}";
        let codec = proptest::sample::select(Codec::ALL.to_vec());
        prop_oneof![
            ".{0,200}".prop_map(Control::Offer),
            ".{0,200}".prop_map(Control::Answer),
            (
                from,
                mid(),
                codec,
                proptest::collection::vec((proptest::option::of(mid()), mid()), 1..=4)
            )
                .prop_map(|(from, mid, codec, layers)| Control::Publish {
                    from,
                    mid,
                    codec,
                    layers
                }),
            (from, mid()).prop_map(|(from, mid)| Control::Unpublish { from, mid }),
            from.prop_map(|from| Control::Leave { from }),
            (from, ".{0,100}").prop_map(|(from, text)| Control::Chat { from, text }),
        ]
    }

    #[test]
    fn bad_control_messages_say_why() {
        let e = |t: &str| Control::parse(t.as_bytes()).unwrap_err().to_string();
        assert!(e("{").contains("not JSON"));
        assert!(e(r#"{"type":"offer"}"#).contains("\"sdp\""));
        assert!(e(r#"{"type":"bye"}"#).contains("unknown type"));
        assert!(e(r#"{"type":"leave","from":"p 1"}"#).contains("\"from\""));
        let no_layers = r#"{"type":"publish","from":"p1","mid":"0","codec":"VP8","layers":[]}"#;
        assert!(e(no_layers).contains("\"layers\""));
        let bad_codec = r#"{"type":"publish","from":"p1","mid":"0","codec":"MP4V","layers":[]}"#;
        assert!(e(bad_codec).contains("\"codec\""));
    }

    proptest! {
        /// Every control message written reads back the same.
        #[test]
        fn control_round_trips(c in control()) {
            prop_assert_eq!(Control::parse(c.emit().as_bytes()), Ok(c));
        }

        /// Any order of any sequence numbers within the window: each is
        /// new exactly once.
        #[test]
        fn each_number_is_new_once(start in any::<u16>(), offs in proptest::collection::vec(0u16..100, 1..300)) {
            let mut w = SeqWindow::default();
            w.accept(start.wrapping_add(100));
            let mut seen = std::collections::HashSet::new();
            seen.insert(100u16);
            for o in offs {
                prop_assert_eq!(w.accept(start.wrapping_add(o)), seen.insert(o));
            }
        }
    }
}
