//! Scalable video (SVC) forwarding by the Dependency Descriptor.
//!
//! A publisher that encodes one stream with several spatial and temporal
//! layers (AV1 or VP9 with `scalabilityMode: "L3T3_KEY"`, say) describes
//! every frame in the Dependency Descriptor header extension (AV1 RTP
//! specification, Appendix A; parsed by [`crate::rtp::dd`]): its spatial
//! and temporal id and, per *decode target* (one way of decoding the
//! stream: "720p at 30 fps", "180p at 15 fps", …), whether the frame is in
//! it ([`Dti`]). The SFU reads no payload: for each subscriber it picks a
//! decode target whose measured rate fits the subscriber's estimate (among
//! the targets the publisher says are active), drops every packet of a
//! frame that is not in that target, and sets the RTP marker on the last
//! packet of the target's top spatial layer (the end of the temporal unit
//! as that subscriber sees it, AV1 RTP §7.1; the publisher's own marker
//! stays, for a unit whose upper layers it did not send). The descriptor
//! itself goes on unchanged: the receiver needs its frame numbers and
//! dependencies to assemble the frames, and frames it never gets are
//! simply never referred to by those it gets.
//!
//! Switching target is allowed where the stream says so (§A.4 and the
//! chains of §A.8.3): at a frame whose DTI for the new target is
//! [`Dti::Switch`], when the chain protecting that target is intact *for
//! this subscriber*, i.e. the chain's previous frame (the frame's chain
//! diff back) was forwarded to it, or the frame starts the chain (a key
//! frame). So a new subscriber starts at a key frame, a move down waits
//! for the lower target's next switch frame, and a move up to a spatial
//! layer the subscriber has not been getting (whose chain it missed) waits
//! for a key frame, which it asks the publisher for. A switch never adds
//! a higher spatial layer to a temporal unit the subscriber's marker has
//! already closed.

use std::time::{Duration, Instant};

use super::forward::{RateMeter, choose_layer};
use crate::rtp::RtpPacket;
use crate::rtp::dd::{DdReader, Dti};

/// The most decode targets followed (a structure has at most 32).
const MAX_TARGETS: usize = 32;
/// After a move down to a lower spatial layer, how long a subscriber
/// stays off the higher ones: going back up costs a key frame for
/// everyone, and a target whose rate hovers at the estimate would
/// otherwise flap.
const SPATIAL_UP_HOLD: Duration = Duration::from_secs(10);

/// What one packet's descriptor says, for the forwarding decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcFrame {
    /// The packet begins a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// The frame's number (16 bits, one more per frame).
    pub frame_number: u16,
    /// The packet's RTP timestamp (one per temporal unit).
    pub timestamp: u32,
    /// The publisher's marker: the packet ends the temporal unit as sent.
    pub marker: bool,
    /// The frame's spatial id.
    pub spatial_id: u8,
    /// The frame's DTI per decode target.
    pub dtis: Vec<Dti>,
    /// Per chain, the frame-number difference to the chain's previous
    /// frame (0: the frame starts the chain).
    pub chain_fdiffs: Vec<u8>,
}

/// One SVC track of a publisher: its descriptors, and the rate of each
/// decode target (the bytes of the frames in it).
#[derive(Debug, Default)]
pub struct SvcTrack {
    reader: DdReader,
    rates: TargetRates,
    /// Per decode target, its highest spatial and temporal id.
    layers: Vec<(u8, u8)>,
    /// Per decode target, the chain that protects it (empty: no chains).
    protected_by: Vec<u8>,
}

/// The measured rate of each decode target of a scalable track (the
/// bytes of the packets in it), the Dependency Descriptor's or VP9's
/// ([`super::vp9svc`]).
#[derive(Debug, Default)]
pub struct TargetRates {
    rates: Vec<RateMeter>,
    /// The highest sequence number seen: older packets (retransmissions,
    /// a sender's probes) are forwarded but not counted in the rates.
    highest_seq: Option<u16>,
}

impl TargetRates {
    /// Follows `n` decode targets (those already measured keep their
    /// rate).
    pub fn resize(&mut self, n: usize) {
        self.rates
            .resize_with(n.min(MAX_TARGETS), RateMeter::default);
    }

    /// Counts a packet into the rate of every decode target `in_target`
    /// says it belongs to, unless it is older than one counted before.
    pub fn count(&mut self, now: Instant, rtp: &RtpPacket<'_>, in_target: impl Fn(usize) -> bool) {
        let seq = rtp.sequence_number();
        if self
            .highest_seq
            .is_some_and(|h| (seq.wrapping_sub(h) as i16) <= 0)
        {
            return;
        }
        self.highest_seq = Some(seq);
        let len = rtp.as_bytes().len();
        for (i, rate) in self.rates.iter_mut().enumerate() {
            if in_target(i) {
                rate.on_packet(now, len);
            }
        }
    }

    /// The targets `active` says the publisher sends and that had
    /// packets within `within`, with their rates.
    pub fn active(
        &self,
        now: Instant,
        within: Duration,
        active: impl Fn(usize) -> bool,
    ) -> Vec<(usize, u64)> {
        self.rates
            .iter()
            .enumerate()
            .filter(|(i, r)| active(*i) && r.active(now, within))
            .map(|(i, r)| (i, r.bitrate()))
            .collect()
    }
}

/// The decode target for a subscriber's `estimate`: [`choose_layer`] over
/// the active targets' rates, except that a move up to a higher spatial
/// layer waits [`SPATIAL_UP_HOLD`] after a move down (`down_at`).
pub fn choose_target(
    now: Instant,
    current: Option<usize>,
    down_at: Option<Instant>,
    rates: &[(usize, u64)],
    layers: &[(u8, u8)],
    estimate: Option<u64>,
) -> Option<usize> {
    let spatial = |i: usize| layers.get(i).map_or(0, |l| l.0);
    let target = choose_layer(rates, estimate, current);
    match (current, target, down_at) {
        (Some(c), Some(t), Some(at))
            if spatial(t) > spatial(c) && now.saturating_duration_since(at) < SPATIAL_UP_HOLD =>
        {
            let lower: Vec<(usize, u64)> = rates
                .iter()
                .copied()
                .filter(|&(i, _)| spatial(i) <= spatial(c))
                .collect();
            choose_layer(&lower, estimate, current).or(Some(c))
        }
        _ => target,
    }
}

impl SvcTrack {
    /// A track whose descriptors have not been seen yet.
    pub fn new() -> SvcTrack {
        SvcTrack::default()
    }

    /// Reads the descriptor of a packet and counts the packet into the
    /// rate of every decode target its frame belongs to. `None` for a
    /// descriptor that cannot be read (malformed, or before the first
    /// structure): such a packet is not forwarded.
    pub fn on_packet(
        &mut self,
        now: Instant,
        rtp: &RtpPacket<'_>,
        descriptor: &[u8],
    ) -> Option<SvcFrame> {
        let (d, f) = self.reader.read(descriptor).ok()?;
        if let Some(s) = &d.structure {
            self.layers = s.decode_target_layers();
            self.layers.truncate(MAX_TARGETS);
            self.protected_by = s.protected_by.clone();
            self.rates.resize(self.layers.len());
        }
        self.rates.count(now, rtp, |i| {
            f.dtis.get(i).is_some_and(|d| *d != Dti::NotPresent)
        });
        Some(SvcFrame {
            start_of_frame: d.start_of_frame,
            end_of_frame: d.end_of_frame,
            frame_number: d.frame_number,
            timestamp: rtp.timestamp(),
            marker: rtp.marker(),
            spatial_id: f.spatial_id,
            dtis: f.dtis,
            chain_fdiffs: f.chain_fdiffs,
        })
    }

    /// The decode targets the publisher sends now (active in its
    /// descriptors, and with frames within `within`), with their measured
    /// rates, for [`SvcDown::choose`].
    pub fn target_rates(&self, now: Instant, within: Duration) -> Vec<(usize, u64)> {
        let active = self.reader.active_decode_targets();
        self.rates.active(now, within, |i| active >> i & 1 == 1)
    }

    /// Whether a template structure has come (before it, no descriptor
    /// can be read).
    pub fn has_structure(&self) -> bool {
        self.reader.structure().is_some()
    }

    /// The highest spatial and temporal id of each decode target.
    pub fn layers(&self) -> &[(u8, u8)] {
        &self.layers
    }

    /// The chain protecting each decode target (empty without chains).
    pub fn protected_by(&self) -> &[u8] {
        &self.protected_by
    }
}

/// The frame numbers (or VP9 picture ids) forwarded lately: a window of
/// the last 128 below the highest (older ones count as not forwarded,
/// which only makes a switch wait for a key frame). The numbers count
/// modulo 2^`BITS` (16 for the descriptor's frame numbers, 15 for VP9's
/// picture ids).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FrameWindow<const BITS: u32> {
    top: Option<u16>,
    /// Bit `i`: frame `top - i` was forwarded.
    bits: u128,
}

impl<const BITS: u32> FrameWindow<BITS> {
    /// `a - b` modulo 2^BITS, as a signed difference.
    fn diff(a: u16, b: u16) -> i16 {
        ((a.wrapping_sub(b) << (16 - BITS)) as i16) >> (16 - BITS)
    }

    pub(super) fn insert(&mut self, n: u16) {
        let Some(top) = self.top else {
            self.top = Some(n);
            self.bits = 1;
            return;
        };
        let ahead = Self::diff(n, top);
        if ahead > 0 {
            let ahead = u32::from(ahead.unsigned_abs());
            self.bits = self.bits.checked_shl(ahead).unwrap_or(0) | 1;
            self.top = Some(n);
        } else if let Some(bit) = 1u128.checked_shl(u32::from(ahead.unsigned_abs())) {
            self.bits |= bit;
        }
    }

    pub(super) fn contains(&self, n: u16) -> bool {
        self.top.is_some_and(|top| {
            let back = Self::diff(top, n);
            (0..128).contains(&back) && self.bits >> back & 1 == 1
        })
    }
}

/// One subscriber's view of an SVC track: the decode target forwarded
/// now, the one its estimate asks for, and what it was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SvcDown {
    /// The target forwarded now (`None`: nothing yet, waiting for a
    /// switch point).
    pub current: Option<usize>,
    /// The target wanted.
    pub target: Option<usize>,
    /// The frames forwarded (their first packet).
    sent: FrameWindow<16>,
    /// The timestamp of the last temporal unit a marker closed.
    closed_unit: Option<u32>,
    /// When the subscriber last moved down a spatial layer.
    down_at: Option<Instant>,
}

/// What to do with one packet for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvcForward {
    /// Not in the subscriber's decode target: dropped (its sequence number
    /// is taken out of the subscriber's numbering).
    Drop,
    /// Forwarded, with this marker bit.
    Send {
        /// The packet ends the temporal unit the subscriber decodes.
        marker: bool,
    },
}

impl SvcDown {
    /// The decode target for an `estimate`: [`choose_layer`] over the
    /// active targets' rates, except that a move up to a higher spatial
    /// layer waits [`SPATIAL_UP_HOLD`] after a move down.
    pub fn choose(
        &self,
        now: Instant,
        rates: &[(usize, u64)],
        layers: &[(u8, u8)],
        estimate: Option<u64>,
    ) -> Option<usize> {
        choose_target(now, self.current, self.down_at, rates, layers, estimate)
    }

    /// Takes the target the chooser picked; at a frame that is a safe
    /// switch point to it (see the module's docs) it becomes the current
    /// one. Returns whether it switched, and what to do with the packet.
    /// `layers` and `protected_by` are the track's ([`SvcTrack::layers`],
    /// [`SvcTrack::protected_by`]).
    pub fn on_packet(
        &mut self,
        now: Instant,
        frame: &SvcFrame,
        target: Option<usize>,
        layers: &[(u8, u8)],
        protected_by: &[u8],
    ) -> (bool, SvcForward) {
        self.target = target;
        let mut switched = false;
        if let Some(t) = target
            && self.current != Some(t)
            && self.can_switch(frame, t, layers, protected_by)
        {
            let spatial = |i: Option<usize>| i.and_then(|i| layers.get(i)).map(|l| l.0);
            if spatial(Some(t)) < spatial(self.current) {
                self.down_at = Some(now);
            }
            self.current = Some(t);
            switched = true;
        }
        let Some(cur) = self.current else {
            return (switched, SvcForward::Drop);
        };
        match frame.dtis.get(cur) {
            Some(Dti::NotPresent) | None => (switched, SvcForward::Drop),
            Some(_) => {
                if frame.start_of_frame {
                    self.sent.insert(frame.frame_number);
                }
                // The temporal unit ends with the target's top spatial
                // layer, or where the publisher ended it.
                let top = layers.get(cur).map_or(0, |l| l.0);
                let marker = frame.marker || (frame.end_of_frame && frame.spatial_id >= top);
                if marker {
                    self.closed_unit = Some(frame.timestamp);
                }
                (switched, SvcForward::Send { marker })
            }
        }
    }

    /// Whether `frame` is where this subscriber may start decoding target
    /// `t`: its first packet, a switch indication for `t`, the chain
    /// protecting `t` intact as far as this subscriber was sent it, and
    /// no higher spatial layer into a unit already closed.
    fn can_switch(
        &self,
        frame: &SvcFrame,
        t: usize,
        layers: &[(u8, u8)],
        protected_by: &[u8],
    ) -> bool {
        if !frame.start_of_frame || frame.dtis.get(t) != Some(&Dti::Switch) {
            return false;
        }
        let chain_intact = match protected_by.get(t) {
            // No chains: the switch indication alone.
            None => protected_by.is_empty(),
            Some(&c) => match frame.chain_fdiffs.get(usize::from(c)) {
                Some(0) => true,
                Some(&d) => self
                    .sent
                    .contains(frame.frame_number.wrapping_sub(d.into())),
                None => false,
            },
        };
        let spatial = |i: Option<usize>| i.and_then(|i| layers.get(i)).map(|l| l.0);
        let higher = spatial(Some(t)) > spatial(self.current);
        chain_intact && !(higher && self.closed_unit == Some(frame.timestamp))
    }

    /// The subscriber waits for its first target, or for one with a
    /// higher spatial layer than it gets: a key frame is the switch point
    /// to ask for (a `_KEY` stream's spatial layers meet nowhere else;
    /// a move between temporal layers needs none).
    pub fn wants_keyframe(&self, layers: &[(u8, u8)]) -> bool {
        let spatial = |i: usize| layers.get(i).map_or(0, |l| l.0);
        match (self.current, self.target) {
            (None, Some(_)) => true,
            (Some(c), Some(t)) => spatial(t) > spatial(c),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap, HashSet};

    use super::*;
    use crate::rtp::dd::tests::{Captured, chromium_l3t3_key};
    use crate::rtp::dd::{DependencyDescriptor, FrameTemplate, Structure};
    use crate::rtp::{HeaderFields, emit_rtp_packet};

    /// An RTP packet of `len` bytes with this header.
    fn rtp(seq: u16, timestamp: u32, marker: bool, len: usize) -> Vec<u8> {
        let fields = HeaderFields {
            marker,
            payload_type: 96,
            sequence_number: seq,
            timestamp,
            ssrc: 1,
        };
        let mut out = Vec::new();
        emit_rtp_packet(
            fields,
            &[],
            false,
            &vec![0; len.saturating_sub(12)],
            &mut out,
        )
        .unwrap();
        out
    }

    /// L2T1 with key frames: S0 and S1 frames, two decode targets (S0;
    /// S0+S1), the second switching only at the key frame; chain 0 over
    /// the S0 frames, chain 1 over the S1 ones (and the key frame).
    fn structure() -> Structure {
        use Dti::*;
        let t = |spatial_id, dtis: [Dti; 2], fdiffs: &[u8], chains: [u8; 2]| FrameTemplate {
            spatial_id,
            temporal_id: 0,
            dtis: dtis.to_vec(),
            fdiffs: fdiffs.to_vec(),
            chain_fdiffs: chains.to_vec(),
        };
        Structure {
            template_id_offset: 0,
            decode_targets: 2,
            templates: vec![
                t(0, [Switch, Switch], &[], [0, 0]),
                t(0, [Switch, NotPresent], &[2], [2, 1]),
                t(1, [NotPresent, Switch], &[1], [1, 1]),
                t(1, [NotPresent, Required], &[2], [1, 2]),
            ],
            chains: 2,
            protected_by: vec![0, 1],
            resolutions: Some(vec![(320, 180), (640, 360)]),
        }
    }

    fn dd(template: u8, frame: u16, structure: Option<Structure>) -> Vec<u8> {
        let d = DependencyDescriptor {
            start_of_frame: true,
            end_of_frame: true,
            template_id: template,
            frame_number: frame,
            structure,
            active_decode_targets: None,
            custom_dtis: None,
            custom_fdiffs: None,
            custom_chains: None,
        };
        let mut out = Vec::new();
        d.emit(Some(&self::structure()), &mut out).unwrap();
        out
    }

    #[test]
    fn a_low_subscriber_gets_s0_with_the_marker_a_high_one_both() {
        let now = Instant::now();
        let mut track = SvcTrack::new();
        let (mut low, mut high) = (SvcDown::default(), SvcDown::default());
        // Key frame (S0 with the structure, then S1), then a delta unit;
        // the publisher marks the end of each unit.
        let unit = |n: u16| {
            let ts = u32::from(n) * 1500;
            [
                (rtp(n, ts, false, 1000), dd(0, n, Some(structure()))),
                (rtp(n + 1, ts, true, 1000), dd(2, n + 1, None)),
                (rtp(n + 2, ts + 3000, false, 1000), dd(1, n + 2, None)),
                (rtp(n + 3, ts + 3000, true, 1000), dd(3, n + 3, None)),
            ]
        };
        let packets = unit(1);
        let mut got_low = Vec::new();
        let mut got_high = Vec::new();
        for (p, d) in &packets {
            let f = track
                .on_packet(now, &RtpPacket::new_checked(p).unwrap(), d)
                .unwrap();
            let (layers, chains) = (track.layers().to_vec(), track.protected_by().to_vec());
            got_low.push(low.on_packet(now, &f, Some(0), &layers, &chains).1);
            got_high.push(high.on_packet(now, &f, Some(1), &layers, &chains).1);
        }
        use SvcForward::*;
        assert_eq!(
            got_low,
            [Send { marker: true }, Drop, Send { marker: true }, Drop]
        );
        // The high target's S1 delta frame refers to S1 only (a `_KEY`
        // mode): the S0 delta frame is not in it.
        assert_eq!(
            got_high,
            [
                Send { marker: false },
                Send { marker: true },
                Drop,
                Send { marker: true }
            ]
        );
        // Both targets counted: the high one carries more. A packet seen
        // again (a retransmission) is not counted twice.
        let at = now + Duration::from_millis(1100);
        let later = unit(5);
        for (p, d) in later.iter().chain(&later) {
            track.on_packet(at, &RtpPacket::new_checked(p).unwrap(), d);
        }
        // The first window: 2 packets of 1000 bytes in 1.1 s in the low
        // target, 3 in the high one.
        let rates = [(0, 2 * 8000 * 10 / 11), (1, 3 * 8000 * 10 / 11)];
        assert_eq!(track.target_rates(at, Duration::from_secs(1)), rates);
        // The second window the same: the repeated packets did not count.
        let at = at + Duration::from_millis(1100);
        for (p, d) in &unit(9) {
            track.on_packet(at, &RtpPacket::new_checked(p).unwrap(), d);
        }
        assert_eq!(track.target_rates(at, Duration::from_secs(1)), rates);
    }

    #[test]
    fn unreadable_descriptors_are_not_forwarded() {
        let now = Instant::now();
        let mut track = SvcTrack::new();
        let p = rtp(1, 0, false, 100);
        let p = RtpPacket::new_checked(&p).unwrap();
        // No structure seen yet.
        assert!(track.on_packet(now, &p, &dd(1, 3, None)).is_none());
        assert!(track.on_packet(now, &p, &[0x80]).is_none());
        assert!(track.on_packet(now, &p, &[0xff; 40]).is_none());
    }

    /// A move back up a spatial layer waits a while after a move down;
    /// moves within the layer do not.
    #[test]
    fn going_back_up_a_spatial_layer_waits() {
        let now = Instant::now();
        let layers = [(0, 0), (0, 1), (1, 0), (1, 1)];
        let down = SvcDown {
            current: Some(0),
            down_at: Some(now),
            ..SvcDown::default()
        };
        let rates = [(0, 40_000), (1, 60_000), (2, 80_000), (3, 140_000)];
        let est = Some(100_000);
        assert_eq!(
            down.choose(now + Duration::from_secs(1), &rates, &layers, est),
            Some(1)
        );
        assert_eq!(
            down.choose(now + Duration::from_secs(11), &rates, &layers, est),
            Some(2)
        );
        // Nothing fits: the lowest, as choose_layer says.
        assert_eq!(down.choose(now, &rates, &layers, Some(10_000)), Some(0));
    }

    /// Every frame of the capture: spatial id, DTIs, frame diffs.
    type Frames = HashMap<u16, (u8, Vec<Dti>, Vec<u16>)>;

    /// What one subscriber got of the captured Chromium stream.
    #[derive(Default)]
    struct Received {
        /// Frame numbers forwarded, in order.
        frames: Vec<u16>,
        /// Per timestamp, the marker of each packet forwarded.
        units: BTreeMap<u32, Vec<bool>>,
        /// Frame number at each switch, with the new target.
        switches: Vec<(u16, usize)>,
        /// Frame numbers at which the subscriber asked for a key frame.
        keyframe_wanted: Vec<u16>,
    }

    /// Feeds the capture through one track and a subscriber whose wanted
    /// target `target(frame number)` gives.
    fn replay(target: impl Fn(u16) -> usize) -> (Received, Frames) {
        let packets: Vec<Captured> = chromium_l3t3_key();
        let start = Instant::now();
        let mut track = SvcTrack::new();
        let mut down = SvcDown::default();
        let mut got = Received::default();
        let mut reader = crate::rtp::dd::DdReader::new();
        let mut all = HashMap::new();
        for p in &packets {
            let (d, f) = reader.read(&p.descriptor).unwrap();
            all.insert(
                d.frame_number,
                (f.spatial_id, f.dtis.clone(), f.fdiffs.clone()),
            );
            let at = start
                + Duration::from_micros(
                    u64::from(p.timestamp.wrapping_sub(packets[0].timestamp)) * 100 / 9,
                );
            let bytes = rtp(p.seq, p.timestamp, p.marker, p.len);
            let frame = track
                .on_packet(at, &RtpPacket::new_checked(&bytes).unwrap(), &p.descriptor)
                .unwrap();
            let (layers, chains) = (track.layers().to_vec(), track.protected_by().to_vec());
            let (switched, fwd) = down.on_packet(
                at,
                &frame,
                Some(target(frame.frame_number)),
                &layers,
                &chains,
            );
            if switched {
                got.switches
                    .push((frame.frame_number, down.current.unwrap()));
            }
            if down.wants_keyframe(&layers) && frame.start_of_frame {
                got.keyframe_wanted.push(frame.frame_number);
            }
            if let SvcForward::Send { marker } = fwd {
                if frame.start_of_frame {
                    got.frames.push(frame.frame_number);
                }
                got.units.entry(p.timestamp).or_default().push(marker);
            }
        }
        (got, all)
    }

    /// Every forwarded frame's references were forwarded before it, and
    /// the marker is on the last packet of each unit forwarded, only.
    fn assert_decodable(got: &Received, all: &Frames) {
        let mut sent = HashSet::new();
        for n in &got.frames {
            for fd in &all[n].2 {
                assert!(
                    sent.contains(&n.wrapping_sub(*fd)),
                    "frame {n} refers to {} not sent (switches {:?})",
                    n.wrapping_sub(*fd),
                    got.switches
                );
            }
            sent.insert(*n);
        }
        for (ts, markers) in &got.units {
            let last = markers.len() - 1;
            for (i, m) in markers.iter().enumerate() {
                assert_eq!(*m, i == last, "unit {ts}: {markers:?}");
            }
        }
    }

    /// Each of the nine decode targets of Chromium's `L3T3_KEY`, held
    /// from the first key frame: exactly the frames in the target, each
    /// decodable, one marker per unit.
    #[test]
    fn chromium_l3t3_key_every_target_forwards_what_it_needs() {
        for t in 0..9 {
            let (got, all) = replay(|_| t);
            assert_eq!(got.switches, [(1, t)]);
            let wanted: Vec<u16> = {
                let mut v: Vec<u16> = all
                    .iter()
                    .filter(|(_, f)| f.1[t] != Dti::NotPresent)
                    .map(|(n, _)| *n)
                    .collect();
                v.sort_unstable();
                v
            };
            assert_eq!(got.frames, wanted, "target {t}");
            assert_decodable(&got, &all);
            // The lowest targets are S0 alone; the top ones reach S2.
            let top = got.frames.iter().map(|n| all[n].0).max();
            assert_eq!(top, Some((t / 3) as u8), "target {t}");
        }
    }

    /// Down from the top target to S0 at 30 fps at its next switch frame;
    /// then up again: S2's chain was broken for this subscriber, and the
    /// S2T1 frame that would be a switch point comes in a unit already
    /// closed at S0, so it waits for (and asks for) the next key frame.
    #[test]
    fn chromium_l3t3_key_switches_at_switch_frames_and_intact_chains() {
        let (got, all) = replay(|n| match n {
            ..=10 => 8,
            11 => 2,
            _ => 8,
        });
        // Frame 11 (S0T1) is DT2's switch frame; 13 (S2T1, a switch frame
        // of DT8 whose chain this subscriber has) is refused: its unit was
        // closed by frame 11's marker. Frame 18 is the next key frame.
        assert_eq!(got.switches, [(1, 8), (11, 2), (18, 8)]);
        assert_eq!(got.keyframe_wanted, [12, 13, 14, 15, 16, 17]);
        assert_decodable(&got, &all);
        // Going down mid-unit keeps the unit's lower frames and moves the
        // marker to the new top (frame 38's unit: down at its S1 frame).
        let (got, all) = replay(|n| if n < 39 { 8 } else { 5 });
        assert_eq!(got.switches, [(1, 8), (39, 5)]);
        assert_decodable(&got, &all);
    }
}
