//! Scalable video (SVC) forwarding by the Dependency Descriptor.
//!
//! A publisher that encodes one stream with several spatial and temporal
//! layers (AV1 or VP9 with `scalabilityMode: "L3T3_KEY"`, say) describes
//! every frame in the Dependency Descriptor header extension (AV1 RTP
//! specification, Appendix A; parsed by [`crate::rtp::dd`]): its spatial
//! and temporal id and, per *decode target* (one way of decoding the
//! stream: "720p at 30 fps", "180p at 15 fps", …), whether the frame is in
//! it ([`Dti`]). The SFU reads no payload: for each subscriber it picks a
//! decode target whose measured rate fits the subscriber's estimate, drops
//! every packet of a frame that is not in that target, and sets the RTP
//! marker on the last packet of the target's top spatial layer (the end
//! of the temporal unit as that subscriber sees it, AV1 RTP §7.1).
//!
//! Switching target is allowed where the stream says so: at a frame whose
//! DTI for the new target is [`Dti::Switch`] (every decode target switches
//! at a keyframe; `_KEY` modes have no other up-switch points, so going up
//! asks the publisher for a keyframe).

use std::time::{Duration, Instant};

use super::forward::RateMeter;
use crate::rtp::dd::{DdReader, Dti};

/// The most decode targets followed (a structure has at most 32).
const MAX_TARGETS: usize = 32;
/// The most spatial layers followed.
const MAX_SPATIAL: usize = 8;
/// A spatial layer with no frame for this long is taken as not sent (the
/// publisher's encoder turned it off for its own uplink).
const SPATIAL_ACTIVE: Duration = Duration::from_millis(500);

/// What one packet's descriptor says, for the forwarding decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvcFrame {
    /// The packet begins a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// The frame's spatial id.
    pub spatial_id: u8,
    /// The highest spatial id the publisher sends now (a frame of it
    /// within the last half second).
    pub top_spatial: u8,
    /// The frame's DTI per decode target.
    pub dtis: Vec<Dti>,
}

/// One SVC track of a publisher: its descriptors, and the rate of each
/// decode target (the bytes of the frames in it).
#[derive(Debug, Default)]
pub struct SvcTrack {
    reader: DdReader,
    rates: Vec<RateMeter>,
    /// Per decode target, its highest spatial and temporal id.
    layers: Vec<(u8, u8)>,
    /// When a frame of each spatial layer was last seen.
    spatial_seen: [Option<Instant>; MAX_SPATIAL],
}

impl SvcTrack {
    /// A track whose descriptors have not been seen yet.
    pub fn new() -> SvcTrack {
        SvcTrack::default()
    }

    /// Reads the descriptor of a packet of `len` bytes and counts it into
    /// the rate of every decode target its frame belongs to. `None` for a
    /// descriptor that cannot be read (malformed, or before the first
    /// structure): such a packet is not forwarded.
    pub fn on_packet(&mut self, now: Instant, descriptor: &[u8], len: usize) -> Option<SvcFrame> {
        let (d, f) = self.reader.read(descriptor).ok()?;
        if let Some(s) = &d.structure {
            self.layers = s.decode_target_layers();
            self.layers.truncate(MAX_TARGETS);
            self.rates
                .resize_with(self.layers.len(), RateMeter::default);
        }
        for (rate, dti) in self.rates.iter_mut().zip(&f.dtis) {
            if *dti != Dti::NotPresent {
                rate.on_packet(now, len);
            }
        }
        if let Some(seen) = self.spatial_seen.get_mut(usize::from(f.spatial_id)) {
            *seen = Some(now);
        }
        let top_spatial = self
            .spatial_seen
            .iter()
            .rposition(|t| t.is_some_and(|t| now.saturating_duration_since(t) <= SPATIAL_ACTIVE))
            .unwrap_or(0) as u8;
        Some(SvcFrame {
            start_of_frame: d.start_of_frame,
            end_of_frame: d.end_of_frame,
            spatial_id: f.spatial_id,
            top_spatial,
            dtis: f.dtis,
        })
    }

    /// The decode targets with their measured rates, for
    /// [`super::forward::choose_layer`] (a target includes the ones below
    /// it, so its rate is theirs and more).
    pub fn target_rates(&self, now: Instant, within: Duration) -> Vec<(usize, u64)> {
        self.rates
            .iter()
            .enumerate()
            .filter(|(_, r)| r.active(now, within))
            .map(|(i, r)| (i, r.bitrate()))
            .collect()
    }

    /// The highest spatial and temporal id of each decode target.
    pub fn layers(&self) -> &[(u8, u8)] {
        &self.layers
    }
}

/// One subscriber's view of an SVC track: the decode target forwarded
/// now, and the one its estimate asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SvcDown {
    /// The target forwarded now (`None`: nothing yet, waiting for a
    /// switch point).
    pub current: Option<usize>,
    /// The target wanted.
    pub target: Option<usize>,
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
    /// Takes the target the chooser picked; at a frame start that is a
    /// switch point for it, it becomes the current one. Returns whether
    /// it switched, and what to do with the packet.
    pub fn on_packet(
        &mut self,
        frame: &SvcFrame,
        target: Option<usize>,
        layers: &[(u8, u8)],
    ) -> (bool, SvcForward) {
        self.target = target;
        let mut switched = false;
        if let Some(t) = target
            && self.current != Some(t)
            && frame.start_of_frame
            && frame.dtis.get(t) == Some(&Dti::Switch)
        {
            self.current = Some(t);
            switched = true;
        }
        let Some(cur) = self.current else {
            return (switched, SvcForward::Drop);
        };
        match frame.dtis.get(cur) {
            Some(Dti::NotPresent) | None => (switched, SvcForward::Drop),
            Some(_) => {
                // The temporal unit ends with the target's top spatial
                // layer, or the top one the publisher still sends.
                let top = layers.get(cur).map_or(0, |l| l.0).min(frame.top_spatial);
                let marker = frame.end_of_frame && frame.spatial_id >= top;
                (switched, SvcForward::Send { marker })
            }
        }
    }

    /// The subscriber waits for a target above the current one (or for
    /// its first): a keyframe is the switch point to ask for.
    pub fn wants_keyframe(&self) -> bool {
        match (self.current, self.target) {
            (None, Some(_)) => true,
            (Some(c), Some(t)) => t > c,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::dd::{DependencyDescriptor, FrameTemplate, Structure};

    /// L2T1 with key frames: S0 and S1 frames, two decode targets (S0;
    /// S0+S1), the second switching only at the key frame.
    fn structure() -> Structure {
        use Dti::*;
        Structure {
            template_id_offset: 0,
            decode_targets: 2,
            templates: vec![
                FrameTemplate {
                    spatial_id: 0,
                    temporal_id: 0,
                    dtis: vec![Switch, Switch],
                    fdiffs: vec![],
                    chain_fdiffs: vec![0, 0],
                },
                FrameTemplate {
                    spatial_id: 0,
                    temporal_id: 0,
                    dtis: vec![Switch, Required],
                    fdiffs: vec![2],
                    chain_fdiffs: vec![2, 2],
                },
                FrameTemplate {
                    spatial_id: 1,
                    temporal_id: 0,
                    dtis: vec![NotPresent, Switch],
                    fdiffs: vec![1],
                    chain_fdiffs: vec![1, 1],
                },
                FrameTemplate {
                    spatial_id: 1,
                    temporal_id: 0,
                    dtis: vec![NotPresent, Required],
                    fdiffs: vec![1, 2],
                    chain_fdiffs: vec![1, 1],
                },
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
        d.emit(Some(&structure_only()), &mut out).unwrap();
        out
    }

    fn structure_only() -> Structure {
        structure()
    }

    #[test]
    fn a_low_subscriber_gets_s0_with_the_marker_a_high_one_both() {
        let now = Instant::now();
        let mut track = SvcTrack::new();
        let (mut low, mut high) = (SvcDown::default(), SvcDown::default());
        // Key frame (S0, template 0, with the structure), then S1 (2).
        let packets = [
            dd(0, 1, Some(structure())),
            dd(2, 2, None),
            dd(1, 3, None),
            dd(3, 4, None),
        ];
        let mut got_low = Vec::new();
        let mut got_high = Vec::new();
        for p in &packets {
            let f = track.on_packet(now, p, 1000).unwrap();
            let layers = track.layers().to_vec();
            got_low.push(low.on_packet(&f, Some(0), &layers).1);
            got_high.push(high.on_packet(&f, Some(1), &layers).1);
        }
        use SvcForward::*;
        assert_eq!(
            got_low,
            [Send { marker: true }, Drop, Send { marker: true }, Drop]
        );
        // The first S0 frame ends the temporal unit as far as anyone
        // knows (no S1 seen yet); once S1 comes, S1 ends it.
        assert_eq!(
            got_high,
            [
                Send { marker: true },
                Send { marker: true },
                Send { marker: false },
                Send { marker: true }
            ]
        );
        // Both targets counted: the high one carries more.
        for p in &packets {
            let at = now + Duration::from_millis(1100);
            track.on_packet(at, p, 1000).unwrap();
        }
        let at = now + Duration::from_millis(1100);
        let rates = track.target_rates(at, Duration::from_secs(1));
        assert_eq!(rates.len(), 2);
        assert!(rates[1].1 > rates[0].1, "{rates:?}");
    }

    #[test]
    fn going_up_waits_for_a_switch_point_and_asks_for_a_keyframe() {
        let now = Instant::now();
        let mut track = SvcTrack::new();
        let mut down = SvcDown::default();
        let f = track
            .on_packet(now, &dd(0, 1, Some(structure())), 500)
            .unwrap();
        let layers = track.layers().to_vec();
        assert_eq!(
            down.on_packet(&f, Some(0), &layers),
            (true, SvcForward::Send { marker: true })
        );
        // Target 1 wanted: S1's delta frame is no switch point.
        let f = track.on_packet(now, &dd(3, 4, None), 500).unwrap();
        assert_eq!(
            down.on_packet(&f, Some(1), &layers),
            (false, SvcForward::Drop)
        );
        assert!(down.wants_keyframe());
        assert_eq!(down.current, Some(0));
        // The next key frame switches.
        let f = track
            .on_packet(now, &dd(0, 5, Some(structure())), 500)
            .unwrap();
        assert_eq!(
            down.on_packet(&f, Some(1), &layers),
            (true, SvcForward::Send { marker: false })
        );
        assert!(!down.wants_keyframe());
    }

    #[test]
    fn unreadable_descriptors_are_not_forwarded() {
        let now = Instant::now();
        let mut track = SvcTrack::new();
        // No structure seen yet.
        assert!(track.on_packet(now, &dd(1, 3, None), 100).is_none());
        assert!(track.on_packet(now, &[0x80], 100).is_none());
        assert!(track.on_packet(now, &[0xff; 40], 100).is_none());
    }
}
