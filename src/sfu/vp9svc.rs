//! Scalable video forwarding by the VP9 payload descriptor.
//!
//! Chromium sends VP9 SVC (`scalabilityMode: "L3T3_KEY"`, `"L2T2"`, …) as
//! one RTP stream with no Dependency Descriptor: each packet's VP9 payload
//! descriptor (RFC 9628 §4.2, read by [`Vp9Header`]) carries the picture
//! id, the frame's layer indices (spatial id SID, temporal id TID, the
//! switching-up flag U, the inter-layer dependency D), whether upper
//! spatial layers refer to the frame (Z), and in flexible mode the
//! pictures the frame refers to (P_DIFF); a key picture carries the
//! scalability structure (§4.2.1: how many spatial layers, their sizes).
//! Chromium 156 uses flexible mode for its SVC modes
//! (`tests/fixtures/rtp/vp9_chromium_l3t3_key.txt`).
//!
//! The decode targets are the pairs (spatial S, temporal T). A frame is
//! in target (S, T) when its TID ≤ T and either its SID is S, or its SID
//! is below S and upper layers may refer to it (Z clear): in `_KEY` modes
//! an upper layer refers to the lower ones only in key pictures, so a
//! 1280 px subscriber gets only the 1280 px frames between key pictures;
//! in full SVC (`L3T3`) every lower frame is Z-clear and goes along.
//! Each subscriber gets the target its estimate carries (the same chooser
//! and per-target rates as the Dependency Descriptor's, [`super::svc`]).
//!
//! Per subscriber, every frame forwarded is remembered (per spatial
//! layer, by picture id); a frame goes out only if what it refers to went
//! out (its P_DIFF pictures of its own layer; with D, the lower layer's
//! frame of the same picture). That makes the switches safe:
//! - a move down in temporal layers happens at any picture;
//! - a move up in temporal layers at a key picture, or a picture whose
//!   TID the subscriber already gets and whose U is set (frames above it
//!   then refer to nothing above it from before, §4.2);
//! - a move up in spatial layers only at a key picture (the first frame
//!   of its SID 0 not inter-picture predicted), decided at the picture's
//!   first packet so that no higher layer is added to a picture whose
//!   end the subscriber's marker has already closed;
//! - a move down in spatial layers at the first frame of the lower layer
//!   whose references the subscriber has (at once in full SVC; in `_KEY`
//!   modes at the next key picture, which it asks for).
//!
//! The marker bit ends the picture (§4.1: the last packet of the highest
//! spatial layer frame; an SFU that removes upper layers sets it on the
//! target layer's last packet): it is set on the last packet (E) of the
//! subscriber's top spatial layer, and the publisher's stays. Picture ids
//! are left as sent: in flexible mode the P_DIFFs are differences of
//! picture id, and a gap (a temporal layer dropped) is what the receiver
//! expects of a thinned stream. Sequence numbers are rewritten over the
//! dropped packets as for the Dependency Descriptor ([`super::Rewriter::skip`]).

use std::time::{Duration, Instant};

use super::svc::{FrameWindow, SvcForward, TargetRates, choose_target};
use crate::rtp::RtpPacket;
use crate::rtp::vp8::PictureId;
use crate::rtp::vp9::Vp9Header;

/// The most spatial and temporal layers followed (the descriptor's 3-bit
/// ids allow 8 each; Chromium sends at most 3).
const MAX_LAYERS: u8 = 4;

/// What one packet's descriptor says, for the forwarding decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Frame {
    /// The picture id (15 bits).
    pub picture_id: u16,
    /// SID.
    pub spatial_id: u8,
    /// TID.
    pub temporal_id: u8,
    /// B: the packet begins the frame.
    pub start_of_frame: bool,
    /// E: the packet ends the frame.
    pub end_of_frame: bool,
    /// The publisher's marker: the packet ends the picture as sent.
    pub marker: bool,
    /// P: the frame refers to earlier pictures.
    pub inter_picture: bool,
    /// U: switching up point.
    pub switching_up: bool,
    /// D: the frame refers to the lower spatial layer of its picture.
    pub inter_layer: bool,
    /// Z: no upper spatial layer refers to the frame.
    pub not_upper_reference: bool,
    /// The pictures of its own layer it refers to.
    refs: [u16; 3],
    ref_count: u8,
}

impl Vp9Frame {
    /// The first packet of a key picture (SID 0 predicted from nothing).
    pub fn starts_key_picture(&self) -> bool {
        self.start_of_frame && self.spatial_id == 0 && !self.inter_picture
    }

    /// Whether the frame is in decode target (`spatial`, `temporal`).
    pub fn in_target(&self, (spatial, temporal): (u8, u8)) -> bool {
        self.temporal_id <= temporal
            && (self.spatial_id == spatial
                || (self.spatial_id < spatial && !self.not_upper_reference))
    }

    fn refs(&self) -> &[u16] {
        &self.refs[..usize::from(self.ref_count.min(3))]
    }
}

/// One VP9 SVC track of a publisher: its layers and the rate of each
/// decode target.
#[derive(Debug, Default)]
pub struct Vp9Track {
    rates: TargetRates,
    /// Per decode target, its spatial and temporal layer (spatial-major).
    layers: Vec<(u8, u8)>,
    /// Spatial layers, as the last scalability structure says.
    spatial: u8,
    /// Temporal layers, as the TIDs seen say.
    temporal: u8,
    /// Non-flexible mode: per (SID, TID), the last picture id seen.
    last_picture: [[Option<u16>; MAX_LAYERS as usize]; MAX_LAYERS as usize],
}

impl Vp9Track {
    /// A track whose descriptors have not been seen yet.
    pub fn new() -> Vp9Track {
        Vp9Track::default()
    }

    /// Reads the descriptor of a packet and counts the packet into the
    /// rate of every decode target its frame belongs to. `None` when the
    /// descriptor cannot be followed (malformed, no picture id or no
    /// layer indices, a layer beyond [`MAX_LAYERS`]).
    pub fn on_packet(&mut self, now: Instant, rtp: &RtpPacket<'_>) -> Option<Vp9Frame> {
        let h = Vp9Header::parse(rtp.payload()).ok()?;
        let Some(PictureId::Fifteen(picture_id)) = h.picture_id else {
            return None;
        };
        let l = h.layer?;
        if l.spatial_id >= MAX_LAYERS || l.temporal_id >= MAX_LAYERS {
            return None;
        }
        let (sid, tid) = (l.spatial_id, l.temporal_id);
        let mut frame = Vp9Frame {
            picture_id,
            spatial_id: sid,
            temporal_id: tid,
            start_of_frame: h.start_of_frame,
            end_of_frame: h.end_of_frame,
            marker: rtp.marker(),
            inter_picture: h.inter_picture,
            switching_up: l.switching_up,
            inter_layer: l.inter_layer,
            not_upper_reference: h.not_upper_reference,
            refs: [0; 3],
            ref_count: 0,
        };
        if h.flexible {
            for (r, d) in frame.refs.iter_mut().zip(h.p_diffs()) {
                *r = picture_id.wrapping_sub(u16::from(*d)) & 0x7FFF;
                frame.ref_count += 1;
            }
        } else if h.inter_picture {
            // No P_DIFF: the latest picture of this layer at this TID or
            // below stands for what the picture group refers to.
            frame.refs[0] = self.last_picture[usize::from(sid)][..=usize::from(tid)]
                .iter()
                .flatten()
                .copied()
                .min_by_key(|p| picture_id.wrapping_sub(*p).wrapping_sub(1) & 0x7FFF)
                .unwrap_or(picture_id.wrapping_sub(1) & 0x7FFF);
            frame.ref_count = 1;
        }
        if h.start_of_frame {
            self.last_picture[usize::from(sid)][usize::from(tid)] = Some(picture_id);
        }
        let spatial =
            h.ss.map(|ss| ss.spatial_layers().min(MAX_LAYERS))
                .unwrap_or(self.spatial)
                .max(sid + 1);
        let temporal = self.temporal.max(tid + 1);
        if (spatial, temporal) != (self.spatial, self.temporal) {
            self.spatial = spatial;
            self.temporal = temporal;
            self.layers = (0..spatial)
                .flat_map(|s| (0..temporal).map(move |t| (s, t)))
                .collect();
            self.rates = TargetRates::default();
            self.rates.resize(self.layers.len());
        }
        let layers = &self.layers;
        self.rates.count(now, rtp, |i| {
            layers.get(i).is_some_and(|&l| frame.in_target(l))
        });
        Some(frame)
    }

    /// The decode targets the publisher sends now (frames within
    /// `within`), with their measured rates.
    pub fn target_rates(&self, now: Instant, within: Duration) -> Vec<(usize, u64)> {
        self.rates.active(now, within, |_| true)
    }

    /// The spatial and temporal layer of each decode target.
    pub fn layers(&self) -> &[(u8, u8)] {
        &self.layers
    }
}

/// One subscriber's view of a VP9 SVC track.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp9Down {
    /// The layers forwarded now (`None`: nothing yet).
    pub current: Option<(u8, u8)>,
    /// The layers wanted.
    pub target: Option<(u8, u8)>,
    /// Per spatial layer, the pictures whose frame was forwarded.
    sent: [FrameWindow<15>; MAX_LAYERS as usize],
    /// The picture whose first packet came last.
    picture: Option<u16>,
    /// When the subscriber last moved down a spatial layer.
    down_at: Option<Instant>,
    /// A frame of the wanted or current top layer could not be
    /// forwarded: what it refers to was not.
    stuck: bool,
}

impl Vp9Down {
    /// The current target's index in `layers`.
    pub fn current_index(&self, layers: &[(u8, u8)]) -> Option<usize> {
        let c = self.current?;
        layers.iter().position(|l| *l == c)
    }

    /// The decode target (index in `layers`) for an `estimate`, as
    /// [`choose_target`] picks it.
    pub fn choose(
        &self,
        now: Instant,
        rates: &[(usize, u64)],
        layers: &[(u8, u8)],
        estimate: Option<u64>,
    ) -> Option<usize> {
        choose_target(
            now,
            self.current_index(layers),
            self.down_at,
            rates,
            layers,
            estimate,
        )
    }

    /// Takes the target the chooser picked (an index in `layers`), moves
    /// towards it where the stream allows (see the module's docs), and
    /// says what to do with the packet. Returns whether the layers
    /// forwarded changed.
    pub fn on_packet(
        &mut self,
        now: Instant,
        frame: &Vp9Frame,
        target: Option<usize>,
        layers: &[(u8, u8)],
    ) -> (bool, SvcForward) {
        self.target = target.and_then(|i| layers.get(i)).copied();
        let before = self.current;
        let new_picture =
            frame.start_of_frame && self.picture.is_none_or(|p| ahead(frame.picture_id, p) > 0);
        if new_picture {
            self.picture = Some(frame.picture_id);
            self.at_picture_start(frame);
        }
        // Down to a lower spatial layer at its first frame the subscriber
        // can decode.
        if let (Some(c), Some(t)) = (self.current, self.target)
            && t.0 < c.0
            && frame.start_of_frame
            && frame.spatial_id == t.0
            && frame.temporal_id <= t.1
        {
            if self.decodable(frame) {
                self.current = Some((t.0, t.1.min(c.1)));
                self.down_at = Some(now);
                self.stuck = false;
            } else {
                self.stuck = true;
            }
        }
        let switched = self.current != before;
        let Some(cur) = self.current else {
            return (switched, SvcForward::Drop);
        };
        if !frame.in_target(cur) {
            return (switched, SvcForward::Drop);
        }
        // Every packet of a frame carries its references: the first one
        // that comes decides (the frame's first may be lost and come late).
        let sid = usize::from(frame.spatial_id);
        if !self.sent[sid].contains(frame.picture_id) {
            if !self.decodable(frame) {
                if frame.spatial_id == cur.0 && frame.start_of_frame {
                    self.stuck = true;
                }
                return (switched, SvcForward::Drop);
            }
            self.sent[sid].insert(frame.picture_id);
        }
        let marker = frame.marker || (frame.end_of_frame && frame.spatial_id >= cur.0);
        (switched, SvcForward::Send { marker })
    }

    /// At a picture's first packet: the first target, and the moves that
    /// are only safe there.
    fn at_picture_start(&mut self, frame: &Vp9Frame) {
        let Some(t) = self.target else {
            return;
        };
        let key = frame.starts_key_picture();
        let Some(c) = self.current else {
            if key {
                self.current = Some(t);
                self.stuck = false;
            }
            return;
        };
        let spatial = if t.0 > c.0 && key { t.0 } else { c.0 };
        let temporal = if t.1 < c.1
            || (t.1 > c.1 && (key || (frame.switching_up && frame.temporal_id <= c.1)))
        {
            t.1
        } else {
            c.1
        };
        if key {
            self.stuck = false;
        }
        self.current = Some((spatial, temporal));
    }

    /// Whether what `frame` refers to was forwarded to this subscriber.
    fn decodable(&self, frame: &Vp9Frame) -> bool {
        let sid = usize::from(frame.spatial_id);
        let own = !frame.inter_picture || frame.refs().iter().all(|&r| self.sent[sid].contains(r));
        let lower = !frame.inter_layer
            || sid
                .checked_sub(1)
                .is_some_and(|l| self.sent[l].contains(frame.picture_id));
        own && lower
    }

    /// The subscriber waits for its first layers, for a higher spatial
    /// layer, or for a frame it could decode: a key picture is the way
    /// (a move between temporal layers needs none).
    pub fn wants_keyframe(&self) -> bool {
        match (self.current, self.target) {
            (None, Some(_)) => true,
            (Some(c), Some(t)) => t.0 > c.0 || self.stuck,
            _ => self.stuck,
        }
    }
}

/// `a - b` over 15-bit picture ids, signed.
fn ahead(a: u16, b: u16) -> i16 {
    ((a.wrapping_sub(b) << 1) as i16) >> 1
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::rtp::{HeaderFields, emit_rtp_packet};

    /// One packet of the capture.
    pub(crate) struct Captured {
        pub seq: u16,
        pub timestamp: u32,
        pub marker: bool,
        pub payload: Vec<u8>,
    }

    /// Chromium 156's VP9 `L3T3_KEY`, as the SFU received it
    /// (`tests/fixtures/rtp/vp9_chromium_l3t3_key.txt`).
    pub(crate) fn chromium_vp9_l3t3_key() -> Vec<Captured> {
        include_str!("../../tests/fixtures/rtp/vp9_chromium_l3t3_key.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let hex = f[3].as_bytes();
                Captured {
                    seq: f[0].parse().unwrap(),
                    timestamp: f[1].parse().unwrap(),
                    marker: f[2] == "1",
                    payload: hex
                        .chunks(2)
                        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 16).unwrap())
                        .collect(),
                }
            })
            .collect()
    }

    fn rtp(p: &Captured) -> Vec<u8> {
        let fields = HeaderFields {
            marker: p.marker,
            payload_type: 98,
            sequence_number: p.seq,
            timestamp: p.timestamp,
            ssrc: 1,
        };
        let mut out = Vec::new();
        emit_rtp_packet(fields, &[], false, &p.payload, &mut out).unwrap();
        out
    }

    /// One frame of the capture, as the descriptors tell it.
    #[derive(Debug, Clone)]
    struct FrameInfo {
        spatial_id: u8,
        temporal_id: u8,
        not_upper_reference: bool,
        /// (picture, spatial id) of every frame it refers to.
        refs: Vec<(u16, u8)>,
    }

    /// What one subscriber got of the capture.
    #[derive(Default)]
    struct Received {
        /// The packets forwarded, with the marker each was sent with.
        packets: Vec<(usize, bool)>,
        /// Frames forwarded, in order: (picture, spatial id).
        frames: Vec<(u16, u8)>,
        /// Picture at each switch, with the layers then forwarded.
        switches: Vec<(u16, (u8, u8))>,
        /// Pictures at which the subscriber wanted a key frame.
        keyframe_wanted: Vec<u16>,
    }

    /// Feeds the capture through one track and a subscriber that wants
    /// `target(picture id)` (the best the track knows of, if it does not
    /// know that one yet).
    fn replay(target: impl Fn(u16) -> (u8, u8)) -> (Received, BTreeMap<(u16, u8), FrameInfo>) {
        let packets = chromium_vp9_l3t3_key();
        let start = Instant::now();
        let mut track = Vp9Track::new();
        let mut down = Vp9Down::default();
        let mut got = Received::default();
        let mut all = BTreeMap::new();
        for (i, p) in packets.iter().enumerate() {
            let at = start
                + Duration::from_micros(
                    u64::from(p.timestamp.wrapping_sub(packets[0].timestamp)) * 100 / 9,
                );
            let bytes = rtp(p);
            let packet = RtpPacket::new_checked(&bytes).unwrap();
            let frame = track.on_packet(at, &packet).expect("readable");
            let h = Vp9Header::parse(&p.payload).unwrap();
            let (pid, sid) = (frame.picture_id, frame.spatial_id);
            let mut refs: Vec<(u16, u8)> = h
                .p_diffs()
                .iter()
                .map(|d| ((pid.wrapping_sub(u16::from(*d))) & 0x7FFF, sid))
                .collect();
            if frame.inter_layer {
                refs.push((pid, sid - 1));
            }
            all.insert(
                (pid, sid),
                FrameInfo {
                    spatial_id: sid,
                    temporal_id: frame.temporal_id,
                    not_upper_reference: frame.not_upper_reference,
                    refs,
                },
            );
            let layers = track.layers().to_vec();
            let (s, t) = target(pid);
            let wanted = layers
                .iter()
                .rposition(|l| l.0 <= s && l.1 <= t)
                .expect("a layer");
            let (switched, fwd) = down.on_packet(at, &frame, Some(wanted), &layers);
            if switched {
                got.switches.push((pid, down.current.unwrap()));
            }
            if down.wants_keyframe() && frame.start_of_frame {
                got.keyframe_wanted.push(pid);
            }
            if let SvcForward::Send { marker } = fwd {
                if frame.start_of_frame {
                    got.frames.push((pid, sid));
                }
                got.packets.push((i, marker));
            }
        }
        got.keyframe_wanted.dedup();
        (got, all)
    }

    /// Every forwarded frame's references were forwarded before it, and
    /// the marker is on the last packet forwarded of each picture, only.
    fn assert_decodable(got: &Received, all: &BTreeMap<(u16, u8), FrameInfo>) {
        let packets = chromium_vp9_l3t3_key();
        let mut sent = std::collections::HashSet::new();
        for f in &got.frames {
            for r in &all[f].refs {
                assert!(
                    sent.contains(r),
                    "frame {f:?} refers to {r:?}, not sent (switches {:?})",
                    got.switches
                );
            }
            sent.insert(*f);
        }
        // Per picture: (marker, E) of each packet forwarded.
        let mut pictures: BTreeMap<u32, Vec<(bool, bool)>> = BTreeMap::new();
        for (i, m) in &got.packets {
            let e = Vp9Header::parse(&packets[*i].payload).unwrap().end_of_frame;
            pictures
                .entry(packets[*i].timestamp)
                .or_default()
                .push((*m, e));
        }
        for (ts, markers) in &pictures {
            let last = markers.len() - 1;
            for (i, (m, e)) in markers.iter().enumerate() {
                // The last packet ends the picture, unless the publisher
                // cut its frame short (Chromium did, at 28462's S2).
                assert_eq!(*m, i == last && *e, "picture at {ts}: {markers:?}");
            }
        }
    }

    #[test]
    fn the_capture_reads_as_chromium_sends_it() {
        let packets = chromium_vp9_l3t3_key();
        assert_eq!(packets.len(), 138);
        let mut spatial_layers = Vec::new();
        let mut pictures = std::collections::BTreeSet::new();
        for p in &packets {
            let h = Vp9Header::parse(&p.payload).unwrap();
            assert!(h.flexible && h.layer.is_some());
            pictures.insert(h.picture_id.unwrap().value());
            if let Some(ss) = h.ss {
                spatial_layers.push(ss.spatial_layers());
                assert_eq!(ss.resolution(0), Some((320, 180)));
                if ss.spatial_layers() == 3 {
                    assert_eq!(ss.resolution(2), Some((1280, 720)));
                }
                assert_eq!(ss.group().count(), 0, "flexible mode: no picture group");
            }
        }
        assert_eq!(spatial_layers, [1, 3, 2, 3]);
        assert_eq!(pictures.len(), 24);
    }

    /// Each of the nine targets held from the start: exactly the frames
    /// of the target (its layer, the lower layers' frames that upper ones
    /// refer to, up to its TID), once the stream has that layer, each
    /// decodable, one marker per picture.
    #[test]
    fn chromium_vp9_l3t3_key_every_target_forwards_what_it_needs() {
        for s in 0..3u8 {
            for t in 0..3u8 {
                let (got, all) = replay(|_| (s, t));
                assert_decodable(&got, &all);
                // From its first key picture, every frame in the layers
                // the subscriber had then (its target, or S1 while the
                // publisher's structure said two layers: 28466-28467)
                // whose references came is sent, and nothing else.
                assert_eq!(got.switches.last().map(|s| s.1), Some((s, t)));
                let layers_at = |pid: u16| {
                    got.switches
                        .iter()
                        .rev()
                        .find(|(p, _)| *p <= pid)
                        .map(|s| s.1)
                };
                let wanted: Vec<(u16, u8)> = {
                    let mut sent = std::collections::HashSet::new();
                    let mut v = Vec::new();
                    for (k, f) in &all {
                        let Some((s, t)) = layers_at(k.0) else {
                            continue;
                        };
                        let in_target = f.temporal_id <= t
                            && (f.spatial_id == s || (f.spatial_id < s && !f.not_upper_reference));
                        if in_target && f.refs.iter().all(|r| sent.contains(r)) {
                            sent.insert(*k);
                            v.push(*k);
                        }
                    }
                    v
                };
                let mut frames = got.frames.clone();
                frames.sort_unstable();
                assert_eq!(frames, wanted, "target S{s}T{t}");
                let top = got.frames.iter().map(|f| f.1).max();
                assert_eq!(top, Some(s), "S{s}T{t}");
                eprintln!(
                    "S{s}T{t}: switches {:?}, {} frames",
                    got.switches,
                    got.frames.len()
                );
            }
        }
    }

    /// Temporal moves happen at once going down and at the next
    /// switching-up point going up; a move down a spatial layer in a
    /// `_KEY` mode happens at the lower layer's first frame that refers
    /// only to what was sent (the key picture's), and after that waits
    /// for (and asks for) a key picture.
    #[test]
    fn chromium_vp9_l3t3_key_switches_where_the_stream_allows() {
        // Down to T0 at 28470 (a T1 picture), up again from 28473 (T2):
        // the next picture at T0 or below, 28476, is where it goes.
        let (got, all) = replay(|p| {
            if (28470..28473).contains(&p) {
                (2, 0)
            } else {
                (2, 2)
            }
        });
        assert_eq!(
            got.switches[4..],
            [(28470, (2, 0)), (28476, (2, 2))],
            "{:?}",
            got.switches
        );
        assert!(!got.frames.contains(&(28473, 2)) && !got.frames.contains(&(28475, 2)));
        assert_decodable(&got, &all);
        // Down to S0 from 28472: its T0 frame there refers to 28468's S0,
        // which came with the key picture: the move is made at once.
        let (got, all) = replay(|p| if p < 28472 { (2, 2) } else { (0, 2) });
        assert_eq!(got.switches.last(), Some(&(28472, (0, 2))));
        assert_decodable(&got, &all);
        // From 28476 on, S0's frames refer to S0 frames not sent (28472):
        // the subscriber keeps S2 and wants a key picture (the capture has
        // none after 28468).
        let (got, all) = replay(|p| if p < 28476 { (2, 2) } else { (0, 2) });
        assert_eq!(got.switches.last(), Some(&(28468, (2, 2))));
        assert_eq!(got.keyframe_wanted.first(), Some(&28476));
        assert!(got.frames.iter().all(|f| f.0 < 28476 || f.1 == 2));
        assert_decodable(&got, &all);
        // A subscriber that comes after the last key picture gets
        // nothing, and asks for one at once.
        let (got, _) = replay(|_| (1, 1));
        assert!(!got.frames.is_empty());
        let mut late = Vp9Down::default();
        let mut track = Vp9Track::new();
        let mut asked = false;
        for p in chromium_vp9_l3t3_key().iter().skip(40) {
            let bytes = rtp(p);
            let f = track
                .on_packet(Instant::now(), &RtpPacket::new_checked(&bytes).unwrap())
                .unwrap();
            let (_, fwd) = late.on_packet(Instant::now(), &f, Some(0), track.layers());
            assert_eq!(fwd, SvcForward::Drop);
            asked |= late.wants_keyframe();
        }
        assert!(asked && late.current.is_none());
    }

    /// A frame whose first packet the SFU lost still goes out (its other
    /// packets carry the same references), and so does that first packet
    /// when it comes late (a retransmission).
    #[test]
    fn a_frame_goes_out_without_its_first_packet() {
        let packets = chromium_vp9_l3t3_key();
        let mut track = Vp9Track::new();
        let mut down = Vp9Down::default();
        let now = Instant::now();
        let mut run = |p: &Captured| {
            let bytes = rtp(p);
            let f = track
                .on_packet(now, &RtpPacket::new_checked(&bytes).unwrap())
                .unwrap();
            let layers = track.layers().to_vec();
            let want = layers.iter().position(|l| *l == (2, 2)).or(Some(0));
            down.on_packet(now, &f, want, &layers).1
        };
        // 7986 begins the S2 frame of key picture 28468; it is lost.
        let lost = packets.iter().position(|p| p.seq == 7986).unwrap();
        for (i, p) in packets.iter().enumerate().take(lost + 9) {
            if i == lost {
                continue;
            }
            let fwd = run(p);
            if i > lost {
                assert!(matches!(fwd, SvcForward::Send { .. }), "{}", p.seq);
            }
        }
        assert!(matches!(
            run(&packets[lost]),
            SvcForward::Send { marker: false }
        ));
    }

    /// The frames a receiver assembles from what one subscriber got, per
    /// picture, as VP9 superframes (VP9 bitstream specification, Annex B:
    /// the frames, then an index of their sizes between two marker
    /// bytes); a frame cut short (no E) is left out, as a receiver would.
    /// With the top spatial layer of each picture.
    fn superframes(got: &Received) -> Vec<(Vec<u8>, u8)> {
        let packets = chromium_vp9_l3t3_key();
        // Per picture: its frames as (spatial id, bytes, ended).
        type Frames = Vec<(u8, Vec<u8>, bool)>;
        let mut pictures: Vec<(u16, Frames)> = Vec::new();
        for (i, _) in &got.packets {
            let p = &packets[*i].payload;
            let h = Vp9Header::parse(p).unwrap();
            let pid = h.picture_id.unwrap().value();
            let sid = h.layers().0;
            if pictures.last().is_none_or(|(q, _)| *q != pid) {
                pictures.push((pid, Vec::new()));
            }
            let frames = &mut pictures.last_mut().unwrap().1;
            if h.start_of_frame {
                frames.push((sid, Vec::new(), false));
            }
            if let Some(f) = frames.last_mut().filter(|f| f.0 == sid) {
                f.1.extend_from_slice(&p[h.len..]);
                f.2 |= h.end_of_frame;
            }
        }
        pictures
            .into_iter()
            .filter_map(|(_, frames)| {
                let whole: Vec<(u8, Vec<u8>)> = frames
                    .into_iter()
                    .filter(|f| f.2)
                    .map(|f| (f.0, f.1))
                    .collect();
                let top = whole.last()?.0;
                if whole.len() == 1 {
                    return Some((whole.into_iter().next()?.1, top));
                }
                let marker = 0b1100_0000 | 3 << 3 | (whole.len() as u8 - 1);
                let mut out: Vec<u8> = whole.iter().flat_map(|f| f.1.clone()).collect();
                out.push(marker);
                for f in &whole {
                    out.extend_from_slice(&(f.1.len() as u32).to_le_bytes());
                }
                out.push(marker);
                Some((out, top))
            })
            .collect()
    }

    /// What each target forwards decodes: its pictures written to IVF and
    /// decoded by libvpx's `vpxdec`, every picture shown, at the size of
    /// its top layer. Skipped (loudly) without `vpxdec` (vpx-tools).
    #[test]
    fn chromium_vp9_l3t3_key_every_target_decodes_with_vpxdec() {
        use crate::rtp::ivf::{IvfHeader, IvfWriter};
        if std::process::Command::new("vpxdec")
            .arg("--help")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED: vpxdec not installed (vpx-tools)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("rtclab-vp9svc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sizes = [(320usize, 180usize), (640, 360), (1280, 720)];
        for s in 0..3u8 {
            for t in 0..3u8 {
                let (got, _) = replay(|_| (s, t));
                let pictures = superframes(&got);
                let mut ivf = IvfWriter::new(&IvfHeader {
                    fourcc: *b"VP90",
                    width: 1280,
                    height: 720,
                    timebase_den: 30,
                    timebase_num: 1,
                    frame_count: 0,
                });
                for (i, (f, _)) in pictures.iter().enumerate() {
                    ivf.write_frame(i as u64, f).unwrap();
                }
                let file = dir.join(format!("s{s}t{t}.ivf"));
                let yuv = dir.join(format!("s{s}t{t}.yuv"));
                std::fs::write(&file, ivf.finish()).unwrap();
                let out = std::process::Command::new("vpxdec")
                    .arg("--summary")
                    .arg("--i420")
                    .arg("-o")
                    .arg(&yuv)
                    .arg(&file)
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stderr).to_string()
                    + &String::from_utf8_lossy(&out.stdout);
                let n = pictures.len();
                assert!(out.status.success(), "S{s}T{t}: {text}");
                assert!(
                    text.contains(&format!("{n} decoded frames/{n} showed frames")),
                    "S{s}T{t}: {n} pictures: {text}"
                );
                let expected: usize = pictures
                    .iter()
                    .map(|(_, top)| sizes[usize::from(*top)].0 * sizes[usize::from(*top)].1 * 3 / 2)
                    .sum();
                let decoded = std::fs::metadata(&yuv).unwrap().len() as usize;
                assert_eq!(decoded, expected, "S{s}T{t}: the top layer's size");
                eprintln!("S{s}T{t}: {n} pictures decoded");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
