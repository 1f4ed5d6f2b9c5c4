//! The Dependency Descriptor RTP header extension (AV1 RTP spec, Appendix A).
//!
//! Each packet of a (possibly scalable) video stream says, in a few bytes,
//! which frame it belongs to and how that frame depends on others, so that
//! a forwarder (an SFU) can pick layers without reading the payload:
//!
//! ```text
//!  0                   1                   2
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |S|E| template id |         frame_number          |  mandatory (A.8.2)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |T|A|D|F|C| template dependency structure ...     |  extended, when the
//! | active decode targets | custom DTIs, fdiffs, chains | extension has more
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  than 3 bytes
//! ```
//!
//! The template dependency structure (templates of spatial/temporal id,
//! decode target indications, frame diffs and chain diffs; the decode
//! targets' chains; render resolutions) arrives in the first packet of a
//! keyframe; later descriptors name a template by id and may override its
//! DTIs, fdiffs or chain diffs. Parsing a descriptor therefore takes the last
//! structure seen ([`DependencyDescriptor::parse`], or [`DdReader`] that
//! keeps it). The bit reader never reads past its input and every count is
//! bounded by the bits there (templates by 64).

use super::Error;

/// The extension's URI (AV1 RTP §A.9).
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";

/// The most templates a structure may have (template ids are 6 bits).
pub const MAX_TEMPLATES: usize = 64;
/// The most decode targets (`dt_cnt_minus_one` is 5 bits).
pub const MAX_DECODE_TARGETS: usize = 32;

fn bad(what: &'static str) -> Error {
    Error::BadExtension(what)
}

/// A decode target indication (AV1 RTP §A.8.3, table A.1): how a frame
/// matters to one decode target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dti {
    /// Not in the decode target.
    NotPresent = 0,
    /// In it, but no later frame of the target depends on it.
    Discardable = 1,
    /// In it, and a decoder may switch to the target here.
    Switch = 2,
    /// In it, and needed by later frames of the target.
    Required = 3,
}

impl Dti {
    fn from_bits(b: u32) -> Dti {
        match b & 3 {
            0 => Dti::NotPresent,
            1 => Dti::Discardable,
            2 => Dti::Switch,
            _ => Dti::Required,
        }
    }
}

/// One frame dependency template (AV1 RTP §A.8.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FrameTemplate {
    /// The spatial id of frames of this template.
    pub spatial_id: u8,
    /// The temporal id.
    pub temporal_id: u8,
    /// One DTI per decode target.
    pub dtis: Vec<Dti>,
    /// Frame-number differences to the frames this one refers to (1..=16).
    pub fdiffs: Vec<u8>,
    /// Per chain, the frame-number difference to the previous frame of the
    /// chain (0..=15; 0: none).
    pub chain_fdiffs: Vec<u8>,
}

/// The template dependency structure (AV1 RTP §A.8.2
/// `template_dependency_structure`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Structure {
    /// The template id of the first template (0..64).
    pub template_id_offset: u8,
    /// The number of decode targets (1..=32).
    pub decode_targets: u8,
    /// The templates, in the order `template_layers` writes them: the first
    /// is spatial 0 temporal 0, each next one has the same ids, the next
    /// temporal id, or the next spatial id at temporal 0.
    pub templates: Vec<FrameTemplate>,
    /// The number of chains (0..=decode targets).
    pub chains: u8,
    /// For each decode target, the chain that protects it (empty without
    /// chains).
    pub protected_by: Vec<u8>,
    /// The largest render width and height per spatial id, if sent.
    pub resolutions: Option<Vec<(u32, u32)>>,
}

impl Structure {
    /// The highest spatial id of the templates.
    pub fn max_spatial_id(&self) -> u8 {
        self.templates
            .iter()
            .map(|t| t.spatial_id)
            .max()
            .unwrap_or(0)
    }

    /// Per decode target, the highest spatial and temporal id of the
    /// templates present in it (§A.8.2 `decode_target_layers`).
    pub fn decode_target_layers(&self) -> Vec<(u8, u8)> {
        (0..usize::from(self.decode_targets))
            .map(|dt| {
                self.templates
                    .iter()
                    .filter(|t| t.dtis.get(dt).is_some_and(|d| *d != Dti::NotPresent))
                    .fold((0, 0), |(s, t), x| {
                        (s.max(x.spatial_id), t.max(x.temporal_id))
                    })
            })
            .collect()
    }

    /// The template a frame's template id names, if any.
    pub fn template(&self, template_id: u8) -> Option<&FrameTemplate> {
        let index = (usize::from(template_id) + 64 - usize::from(self.template_id_offset)) % 64;
        self.templates.get(index)
    }

    fn check(&self) -> Result<(), Error> {
        let dts = usize::from(self.decode_targets);
        let bad = Error::Invalid;
        if self.template_id_offset >= 64 {
            return Err(bad("DD template_id_offset is 6 bits"));
        }
        if !(1..=MAX_DECODE_TARGETS).contains(&dts) {
            return Err(bad("DD decode targets must be 1..=32"));
        }
        if self.templates.is_empty() || self.templates.len() > MAX_TEMPLATES {
            return Err(bad("DD structure needs 1..=64 templates"));
        }
        if usize::from(self.chains) > dts
            || self.protected_by.len() != if self.chains > 0 { dts } else { 0 }
            || self.protected_by.iter().any(|&c| c >= self.chains)
        {
            return Err(bad(
                "DD chains: at most one per decode target, each protects",
            ));
        }
        let mut prev: Option<(u8, u8)> = None;
        for t in &self.templates {
            let ids = (t.spatial_id, t.temporal_id);
            let ok = match prev {
                None => ids == (0, 0),
                Some((s, tid)) => {
                    ids == (s, tid) || ids == (s, tid.wrapping_add(1)) || ids == (s + 1, 0)
                }
            };
            if !ok {
                return Err(bad(
                    "DD templates must go by same ids, next temporal id or next spatial id",
                ));
            }
            prev = Some(ids);
            if t.dtis.len() != dts
                || t.fdiffs.iter().any(|&f| !(1..=16).contains(&f))
                || t.chain_fdiffs.len() != usize::from(self.chains)
                || t.chain_fdiffs.iter().any(|&c| c > 15)
            {
                return Err(bad(
                    "DD template: one DTI per decode target, fdiffs 1..=16, chain diffs 0..=15",
                ));
            }
        }
        let spatial_layers = usize::from(self.max_spatial_id()) + 1;
        if self.resolutions.as_ref().is_some_and(|r| {
            r.len() != spatial_layers
                || r.iter()
                    .any(|&(w, h)| !(1..=65_536).contains(&w) || !(1..=65_536).contains(&h))
        }) {
            return Err(bad("DD resolutions: one size of 1..=65536 per spatial id"));
        }
        Ok(())
    }

    fn read(r: &mut BitReader<'_>) -> Result<Structure, Error> {
        let template_id_offset = r.bits(6)? as u8;
        let dts = r.bits(5)? as usize + 1;
        // template_layers()
        let mut ids = Vec::new();
        let (mut s, mut t) = (0u8, 0u8);
        loop {
            if ids.len() == MAX_TEMPLATES {
                return Err(bad("DD structure with more than 64 templates"));
            }
            ids.push((s, t));
            match r.bits(2)? {
                0 => {}
                1 => t += 1,
                2 => {
                    s += 1;
                    t = 0;
                }
                _ => break,
            }
        }
        let mut templates: Vec<FrameTemplate> = ids
            .into_iter()
            .map(|(spatial_id, temporal_id)| FrameTemplate {
                spatial_id,
                temporal_id,
                dtis: Vec::new(),
                fdiffs: Vec::new(),
                chain_fdiffs: Vec::new(),
            })
            .collect();
        for tpl in &mut templates {
            for _ in 0..dts {
                tpl.dtis.push(Dti::from_bits(r.bits(2)?));
            }
        }
        for tpl in &mut templates {
            while r.bits(1)? == 1 {
                tpl.fdiffs.push(r.bits(4)? as u8 + 1);
            }
        }
        let chains = r.ns(dts as u32 + 1)? as u8;
        let mut protected_by = Vec::new();
        if chains > 0 {
            for _ in 0..dts {
                protected_by.push(r.ns(u32::from(chains))? as u8);
            }
            for tpl in &mut templates {
                for _ in 0..chains {
                    tpl.chain_fdiffs.push(r.bits(4)? as u8);
                }
            }
        }
        let max_spatial = templates.last().map_or(0, |t| t.spatial_id);
        let resolutions = if r.bits(1)? == 1 {
            let mut v = Vec::new();
            for _ in 0..=max_spatial {
                let w = r.bits(16)? + 1;
                let h = r.bits(16)? + 1;
                v.push((w, h));
            }
            Some(v)
        } else {
            None
        };
        Ok(Structure {
            template_id_offset,
            decode_targets: dts as u8,
            templates,
            chains,
            protected_by,
            resolutions,
        })
    }

    fn emit(&self, w: &mut BitWriter) {
        w.put(6, self.template_id_offset.into());
        w.put(5, u32::from(self.decode_targets) - 1);
        for (i, t) in self.templates.iter().enumerate() {
            let idc = match self.templates.get(i + 1) {
                None => 3,
                Some(n) if n.spatial_id != t.spatial_id => 2,
                Some(n) if n.temporal_id != t.temporal_id => 1,
                Some(_) => 0,
            };
            w.put(2, idc);
        }
        for t in &self.templates {
            for d in &t.dtis {
                w.put(2, *d as u32);
            }
        }
        for t in &self.templates {
            for &f in &t.fdiffs {
                w.put(1, 1);
                w.put(4, u32::from(f) - 1);
            }
            w.put(1, 0);
        }
        w.ns(u32::from(self.decode_targets) + 1, self.chains.into());
        if self.chains > 0 {
            for &c in &self.protected_by {
                w.ns(self.chains.into(), c.into());
            }
            for t in &self.templates {
                for &c in &t.chain_fdiffs {
                    w.put(4, c.into());
                }
            }
        }
        match &self.resolutions {
            Some(r) => {
                w.put(1, 1);
                for &(wd, ht) in r {
                    w.put(16, wd - 1);
                    w.put(16, ht - 1);
                }
            }
            None => w.put(1, 0),
        }
    }
}

/// One packet's dependency descriptor, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DependencyDescriptor {
    /// The packet's payload begins a frame.
    pub start_of_frame: bool,
    /// The packet ends a frame.
    pub end_of_frame: bool,
    /// `frame_dependency_template_id` (6 bits).
    pub template_id: u8,
    /// The frame number (16 bits, wraps).
    pub frame_number: u16,
    /// A new template dependency structure (the first packet of a coded
    /// video sequence).
    pub structure: Option<Structure>,
    /// `active_decode_targets_bitmask`, when sent (bit i: decode target i).
    pub active_decode_targets: Option<u32>,
    /// The frame's own DTIs instead of its template's.
    pub custom_dtis: Option<Vec<Dti>>,
    /// The frame's own frame diffs (1..=4096) instead of its template's.
    pub custom_fdiffs: Option<Vec<u16>>,
    /// The frame's own chain diffs (0..=255) instead of its template's.
    pub custom_chains: Option<Vec<u8>>,
}

/// What a descriptor says of its frame, its template and overrides
/// resolved against the structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameDependency {
    /// Spatial id.
    pub spatial_id: u8,
    /// Temporal id.
    pub temporal_id: u8,
    /// One DTI per decode target.
    pub dtis: Vec<Dti>,
    /// Frame-number differences to the referred frames.
    pub fdiffs: Vec<u16>,
    /// Per chain, the difference to the chain's previous frame.
    pub chain_fdiffs: Vec<u8>,
    /// The largest render size of the frame's spatial layer, if known.
    pub resolution: Option<(u32, u32)>,
}

impl DependencyDescriptor {
    /// The structure this descriptor is read with: its own, else `latest`.
    fn structure_with<'a>(&'a self, latest: Option<&'a Structure>) -> Option<&'a Structure> {
        self.structure.as_ref().or(latest)
    }

    fn extended(&self) -> bool {
        self.structure.is_some()
            || self.active_decode_targets.is_some()
            || self.custom_dtis.is_some()
            || self.custom_fdiffs.is_some()
            || self.custom_chains.is_some()
    }

    /// Parses one extension element's data (§A.8.2 `dependency_descriptor`),
    /// with `latest` the last structure seen on the stream (needed to size
    /// the custom fields and the active-targets mask when the descriptor
    /// carries no structure of its own).
    pub fn parse(data: &[u8], latest: Option<&Structure>) -> Result<Self, Error> {
        if data.len() < 3 {
            return Err(super::truncated("dependency descriptor", 3, data.len()));
        }
        let mut r = BitReader::new(data);
        let mut d = DependencyDescriptor {
            start_of_frame: r.bits(1)? == 1,
            end_of_frame: r.bits(1)? == 1,
            template_id: r.bits(6)? as u8,
            frame_number: r.bits(16)? as u16,
            structure: None,
            active_decode_targets: None,
            custom_dtis: None,
            custom_fdiffs: None,
            custom_chains: None,
        };
        if data.len() == 3 {
            return Ok(d);
        }
        let has_structure = r.bits(1)? == 1;
        let has_active = r.bits(1)? == 1;
        let has_dtis = r.bits(1)? == 1;
        let has_fdiffs = r.bits(1)? == 1;
        let has_chains = r.bits(1)? == 1;
        if has_structure {
            d.structure = Some(Structure::read(&mut r)?);
        }
        let needs_structure = has_active || has_dtis || has_chains;
        let s = d.structure.as_ref().or(latest);
        let (dts, chains) = match s {
            Some(s) => (u32::from(s.decode_targets), u32::from(s.chains)),
            None if needs_structure => {
                return Err(bad("DD custom fields before any template structure"));
            }
            None => (0, 0),
        };
        if has_active {
            d.active_decode_targets = Some(r.bits(dts)?);
        }
        if has_dtis {
            let mut v = Vec::new();
            for _ in 0..dts {
                v.push(Dti::from_bits(r.bits(2)?));
            }
            d.custom_dtis = Some(v);
        }
        if has_fdiffs {
            let mut v = Vec::new();
            loop {
                let size = r.bits(2)?;
                if size == 0 {
                    break;
                }
                v.push(r.bits(4 * size)? as u16 + 1);
            }
            d.custom_fdiffs = Some(v);
        }
        if has_chains {
            let mut v = Vec::new();
            for _ in 0..chains {
                v.push(r.bits(8)? as u8);
            }
            d.custom_chains = Some(v);
        }
        // The rest is zero padding, ignored (§A.8.3).
        Ok(d)
    }

    /// Appends the descriptor's bytes: three when it has only the mandatory
    /// fields, else the extended fields too, zero-padded to a byte.
    /// `latest` sizes the custom fields when it carries no structure.
    pub fn emit(&self, latest: Option<&Structure>, out: &mut Vec<u8>) -> Result<(), Error> {
        if self.template_id >= 64 {
            return Err(Error::Invalid("DD template id is 6 bits"));
        }
        let mut w = BitWriter::default();
        w.put(1, self.start_of_frame.into());
        w.put(1, self.end_of_frame.into());
        w.put(6, self.template_id.into());
        w.put(16, self.frame_number.into());
        if self.extended() {
            if let Some(s) = &self.structure {
                s.check()?;
            }
            let s = self.structure_with(latest);
            let (dts, chains) = s.map_or((0, 0), |s| (s.decode_targets, s.chains));
            let needs = self.active_decode_targets.is_some()
                || self.custom_dtis.is_some()
                || self.custom_chains.is_some();
            if needs && s.is_none() {
                return Err(Error::Invalid("DD custom fields need a template structure"));
            }
            w.put(1, self.structure.is_some().into());
            w.put(1, self.active_decode_targets.is_some().into());
            w.put(1, self.custom_dtis.is_some().into());
            w.put(1, self.custom_fdiffs.is_some().into());
            w.put(1, self.custom_chains.is_some().into());
            if let Some(s) = &self.structure {
                s.emit(&mut w);
            }
            if let Some(mask) = self.active_decode_targets {
                if dts < 32 && mask >> dts != 0 {
                    return Err(Error::Invalid(
                        "DD active decode targets beyond the decode target count",
                    ));
                }
                w.put(dts.into(), mask);
            }
            if let Some(v) = &self.custom_dtis {
                if v.len() != usize::from(dts) {
                    return Err(Error::Invalid("DD custom DTIs: one per decode target"));
                }
                for d in v {
                    w.put(2, *d as u32);
                }
            }
            if let Some(v) = &self.custom_fdiffs {
                for &f in v {
                    let m = u32::from(f).wrapping_sub(1);
                    let size = match m {
                        0..=0xf => 1,
                        0x10..=0xff => 2,
                        0x100..=0xfff => 3,
                        _ => return Err(Error::Invalid("DD frame diff must be 1..=4096")),
                    };
                    w.put(2, size);
                    w.put(4 * size, m);
                }
                w.put(2, 0);
            }
            if let Some(v) = &self.custom_chains {
                if v.len() != usize::from(chains) {
                    return Err(Error::Invalid("DD custom chain diffs: one per chain"));
                }
                for &c in v {
                    w.put(8, c.into());
                }
            }
        }
        out.extend_from_slice(&w.finish());
        Ok(())
    }

    /// The frame this descriptor describes: its template (named by id in
    /// the descriptor's structure, else `latest`) with the custom fields
    /// applied (§A.8.2 `frame_dependency_definition`).
    pub fn frame(&self, latest: Option<&Structure>) -> Result<FrameDependency, Error> {
        let s = self
            .structure_with(latest)
            .ok_or(bad("DD frame without a template structure"))?;
        let t = s
            .template(self.template_id)
            .ok_or(bad("DD template id outside the structure"))?;
        Ok(FrameDependency {
            spatial_id: t.spatial_id,
            temporal_id: t.temporal_id,
            dtis: self.custom_dtis.clone().unwrap_or_else(|| t.dtis.clone()),
            fdiffs: self
                .custom_fdiffs
                .clone()
                .unwrap_or_else(|| t.fdiffs.iter().map(|&f| f.into()).collect()),
            chain_fdiffs: self
                .custom_chains
                .clone()
                .unwrap_or_else(|| t.chain_fdiffs.clone()),
            resolution: s
                .resolutions
                .as_ref()
                .and_then(|r| r.get(usize::from(t.spatial_id)).copied()),
        })
    }
}

/// Reads a stream's descriptors, keeping the latest template structure
/// and the active decode targets.
#[derive(Debug, Clone, Default)]
pub struct DdReader {
    structure: Option<Structure>,
    /// `active_decode_targets_bitmask` as last set (§A.8.2: every target
    /// of a new structure, until a descriptor sends the mask).
    active: u32,
}

impl DdReader {
    /// A reader that has seen no structure yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The latest structure seen.
    pub fn structure(&self) -> Option<&Structure> {
        self.structure.as_ref()
    }

    /// The decode targets the sender says are available now, bit `i` for
    /// decode target `i` (§A.8.2 `active_decode_targets_bitmask`: a target
    /// left out may miss frames it needs, the sender having turned its
    /// layer off). Every target of the structure until a descriptor says
    /// otherwise; 0 before any structure.
    pub fn active_decode_targets(&self) -> u32 {
        self.active
    }

    /// Parses one descriptor and resolves its frame; a structure it carries
    /// replaces the kept one (and makes every decode target active), a
    /// mask it carries replaces the active decode targets.
    pub fn read(&mut self, data: &[u8]) -> Result<(DependencyDescriptor, FrameDependency), Error> {
        let d = DependencyDescriptor::parse(data, self.structure.as_ref())?;
        // The frame is resolved against the structure it carries, if any.
        let f = d.frame(self.structure.as_ref())?;
        if let Some(s) = &d.structure {
            self.structure = Some(s.clone());
            self.active = all_targets(s.decode_targets);
        }
        if let Some(mask) = d.active_decode_targets {
            self.active = mask;
        }
        Ok((d, f))
    }
}

/// The mask with every one of `n` decode targets (`n` at most 32).
fn all_targets(n: u8) -> u32 {
    u32::MAX >> (32 - u32::from(n.clamp(1, 32)))
}

/// Reads bits high to low (§A.8.2 `f(n)`); never past its input.
#[derive(Debug)]
struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// `f(n)`, n at most 32.
    fn bits(&mut self, n: u32) -> Result<u32, Error> {
        let n = n as usize;
        if n > 32 || self.pos + n > self.data.len() * 8 {
            return Err(super::truncated(
                "dependency descriptor",
                (self.pos + n).div_ceil(8),
                self.data.len(),
            ));
        }
        let mut x: u64 = 0;
        for _ in 0..n {
            let bit = (self.data[self.pos / 8] >> (7 - self.pos % 8)) & 1;
            x = x << 1 | u64::from(bit);
            self.pos += 1;
        }
        Ok(x as u32)
    }

    /// `ns(n)`: a value in 0..n in the fewest bits.
    fn ns(&mut self, n: u32) -> Result<u32, Error> {
        let w = u32::BITS - n.leading_zeros();
        if w == 0 {
            return Ok(0);
        }
        let m = (1u32 << w) - n;
        let v = self.bits(w - 1)?;
        if v < m {
            return Ok(v);
        }
        let extra = self.bits(1)?;
        Ok((v << 1) - m + extra)
    }
}

/// Writes bits high to low.
#[derive(Debug, Default)]
struct BitWriter {
    out: Vec<u8>,
    bits: usize,
}

impl BitWriter {
    fn put(&mut self, n: u32, v: u32) {
        for i in (0..n).rev() {
            if self.bits % 8 == 0 {
                self.out.push(0);
            }
            let bit = ((u64::from(v) >> i) & 1) as u8;
            if let Some(last) = self.out.last_mut() {
                *last |= bit << (7 - self.bits % 8);
            }
            self.bits += 1;
        }
    }

    /// `write_ns(n, v)`.
    fn ns(&mut self, n: u32, v: u32) {
        if n <= 1 {
            return;
        }
        let w = u32::BITS - n.leading_zeros();
        let m = (1u32 << w) - n;
        if v < m {
            self.put(w - 1, v);
        } else {
            self.put(w, v + m);
        }
    }

    fn finish(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use Dti::{Discardable as D, NotPresent as N, Switch as S};
    use proptest::prelude::*;

    /// The spec's L1T3 example (§A.10.2.1): one chain over the temporal-0
    /// frames; decode targets 30, 15 and 7.5 fps.
    fn l1t3() -> Structure {
        let t = |temporal_id, dtis: [Dti; 3], fdiffs: &[u8], chain| FrameTemplate {
            spatial_id: 0,
            temporal_id,
            dtis: dtis.to_vec(),
            fdiffs: fdiffs.to_vec(),
            chain_fdiffs: vec![chain],
        };
        Structure {
            template_id_offset: 0,
            decode_targets: 3,
            templates: vec![
                t(0, [S, S, S], &[], 0),
                t(0, [S, S, S], &[4], 4),
                t(1, [S, D, N], &[2], 2),
                t(2, [D, N, N], &[1], 1),
                t(2, [D, N, N], &[1, 3], 3),
            ],
            chains: 1,
            protected_by: vec![0, 0, 0],
            resolutions: Some(vec![(640, 480)]),
        }
    }

    /// The bits of a keyframe's descriptor with the L1T3 structure, written
    /// out by hand from §A.8.2.
    fn l1t3_keyframe_bytes() -> Vec<u8> {
        let bits = concat!(
            "1",
            "1",
            "000000",
            "0000000000000001", // S E template 0, frame 1
            "10000",            // structure present, nothing else
            "000000",
            "00010", // offset 0, 3 decode targets
            "00",
            "01",
            "01",
            "00",
            "11", // layers T0 T0 T1 T2 T2
            "101010",
            "101010",
            "100100",
            "010000",
            "010000", // DTIs
            "0",
            "100110",
            "100010",
            "100000",
            "1000010010",
            "0",  // fdiffs - ,4 ,2 ,1 ,1 3
            "01", // ns(4) = 1 chain; ns(1) x3 = no bits
            "0000",
            "0100",
            "0010",
            "0001",
            "0011", // chain diffs
            "1",
            "0000001001111111",
            "0000000111011111", // 640x480
        );
        let mut out = Vec::new();
        let b: Vec<u8> = bits.bytes().map(|c| c - b'0').collect();
        for chunk in b.chunks(8) {
            let mut byte = 0u8;
            for (i, bit) in chunk.iter().enumerate() {
                byte |= bit << (7 - i);
            }
            out.push(byte);
        }
        out
    }

    #[test]
    fn l1t3_keyframe_descriptor_matches_hand_built_bits() {
        let d = DependencyDescriptor {
            start_of_frame: true,
            end_of_frame: true,
            template_id: 0,
            frame_number: 1,
            structure: Some(l1t3()),
            active_decode_targets: None,
            custom_dtis: None,
            custom_fdiffs: None,
            custom_chains: None,
        };
        let mut b = Vec::new();
        d.emit(None, &mut b).unwrap();
        assert_eq!(b, l1t3_keyframe_bytes());
        assert_eq!(DependencyDescriptor::parse(&b, None), Ok(d));
        assert_eq!(l1t3().decode_target_layers(), [(0, 2), (0, 1), (0, 0)]);
    }

    #[test]
    fn frames_resolve_against_the_latest_structure() {
        let mut r = DdReader::new();
        // Before any structure, only the mandatory fields parse; the frame
        // cannot be resolved.
        assert!(r.read(&[0x80, 0x00, 0x01]).is_err());
        let (_, f) = r.read(&l1t3_keyframe_bytes()).unwrap();
        assert_eq!((f.spatial_id, f.temporal_id), (0, 0));
        assert_eq!(f.resolution, Some((640, 480)));
        // Template 4 (T2, fdiffs 1 and 3), frame 4: mandatory fields only.
        let (d, f) = r.read(&[0xc4, 0x00, 0x04]).unwrap();
        assert_eq!(d.frame_number, 4);
        assert_eq!(f.temporal_id, 2);
        assert_eq!(f.fdiffs, [1, 3]);
        assert_eq!(f.dtis, [D, N, N]);
        assert_eq!(f.chain_fdiffs, [3]);
        // Custom fdiffs (a 300-frame diff takes 12 bits), chains and an
        // active mask, sized by the kept structure.
        let d = DependencyDescriptor {
            start_of_frame: true,
            end_of_frame: false,
            template_id: 1,
            frame_number: 9,
            structure: None,
            active_decode_targets: Some(0b011),
            custom_dtis: Some(vec![S, S, N]),
            custom_fdiffs: Some(vec![1, 17, 300]),
            custom_chains: Some(vec![200]),
        };
        let mut b = Vec::new();
        d.emit(r.structure(), &mut b).unwrap();
        let (d2, f) = r.read(&b).unwrap();
        assert_eq!(d2, d);
        assert_eq!(f.fdiffs, [1, 17, 300]);
        assert_eq!(f.chain_fdiffs, [200]);
        // A template id outside the structure.
        assert!(r.read(&[0x85, 0x00, 0x05]).is_err());
    }

    #[test]
    fn malformed_descriptors_are_errors() {
        assert!(DependencyDescriptor::parse(&[0x80, 0], None).is_err());
        // Custom DTIs without a structure.
        assert!(DependencyDescriptor::parse(&[0x80, 0, 1, 0x20], None).is_err());
        // A structure cut short.
        let b = l1t3_keyframe_bytes();
        for n in 4..b.len() - 4 {
            assert!(DependencyDescriptor::parse(&b[..n], None).is_err(), "{n}");
        }
        // 65 templates: next_layer_idc 0 forever.
        let mut b = vec![0x80, 0, 1, 0x80, 0, 0];
        b.extend([0u8; 40]);
        assert!(DependencyDescriptor::parse(&b, None).is_err());
        // An invalid structure does not emit.
        let mut s = l1t3();
        s.templates[1].temporal_id = 2;
        let d = DependencyDescriptor {
            start_of_frame: true,
            end_of_frame: true,
            template_id: 0,
            frame_number: 0,
            structure: Some(s),
            active_decode_targets: None,
            custom_dtis: None,
            custom_fdiffs: None,
            custom_chains: None,
        };
        assert!(d.emit(None, &mut Vec::new()).is_err());
    }

    /// One packet of the captured Chromium stream
    /// (`tests/fixtures/rtp/dd_chromium_av1_l3t3_key.txt`).
    pub(crate) struct Captured {
        pub seq: u16,
        pub timestamp: u32,
        pub marker: bool,
        pub len: usize,
        pub descriptor: Vec<u8>,
    }

    /// Chromium 156's AV1 `L3T3_KEY` descriptors, as it sent them to the
    /// SFU in the browser test.
    pub(crate) fn chromium_l3t3_key() -> Vec<Captured> {
        include_str!("../../tests/fixtures/rtp/dd_chromium_av1_l3t3_key.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let hex = f[4];
                Captured {
                    seq: f[0].parse().unwrap(),
                    timestamp: f[1].parse().unwrap(),
                    marker: f[2] == "1",
                    len: f[3].parse().unwrap(),
                    descriptor: (0..hex.len())
                        .step_by(2)
                        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                        .collect(),
                }
            })
            .collect()
    }

    /// The structure Chromium sends with every AV1 `L3T3_KEY` key frame,
    /// read against §A.8.2: nine decode targets (spatial id × 3 + temporal
    /// id), fifteen templates (per spatial layer: T0 key/delta, T1, T2
    /// twice), one chain per spatial layer protecting its three targets,
    /// and the three sizes of a 1280×720 camera.
    #[test]
    fn chromium_l3t3_key_structure() {
        let packets = chromium_l3t3_key();
        let d = DependencyDescriptor::parse(&packets[0].descriptor, None).unwrap();
        let s = d
            .structure
            .as_ref()
            .expect("the key frame carries the structure");
        assert_eq!(
            (d.start_of_frame, d.template_id, d.frame_number),
            (true, 0, 1)
        );
        assert_eq!(s.template_id_offset, 0);
        assert_eq!(s.decode_targets, 9);
        let ids: Vec<(u8, u8)> = s
            .templates
            .iter()
            .map(|t| (t.spatial_id, t.temporal_id))
            .collect();
        let per_layer = |sid| [(sid, 0), (sid, 0), (sid, 1), (sid, 2), (sid, 2)];
        assert_eq!(ids, [per_layer(0), per_layer(1), per_layer(2)].concat());
        let dt: Vec<(u8, u8)> = (0..3).flat_map(|s| (0..3).map(move |t| (s, t))).collect();
        assert_eq!(s.decode_target_layers(), dt);
        assert_eq!(s.chains, 3);
        assert_eq!(s.protected_by, [0, 0, 0, 1, 1, 1, 2, 2, 2]);
        assert_eq!(
            s.resolutions,
            Some(vec![(320, 180), (640, 360), (1280, 720)])
        );
        // The key frame (template 0) is every target's switch point and
        // starts every chain; the S0 delta frame at T0 (template 1) is a
        // switch point of the S0 targets only, and refers to the frame
        // 12 before (the previous T0 of a 4-frame T0-T2-T1-T2 cycle of
        // three spatial layers): the `_KEY` mode's spatial layers depend
        // on each other only at key frames.
        let key = &s.templates[0];
        assert_eq!(key.dtis, [S; 9]);
        assert!(key.fdiffs.is_empty());
        assert_eq!(key.chain_fdiffs, [0, 0, 0]);
        let t1 = &s.templates[1];
        assert_eq!(t1.dtis, [S, S, S, N, N, N, N, N, N]);
        assert_eq!(t1.fdiffs, [12]);
        // S0T1: discardable for 15 fps, a switch point for 30 fps.
        assert_eq!(s.templates[2].dtis, [N, D, S, N, N, N, N, N, N]);
        // The S1 key frame's second layer refers to the S0 key frame.
        assert_eq!(s.templates[5].dtis, [N, N, N, S, S, S, S, S, S]);
        assert_eq!(s.templates[5].fdiffs, [1]);
        // Round trip: what we write is what Chromium wrote (bar the
        // padding bits).
        let mut b = Vec::new();
        d.emit(None, &mut b).unwrap();
        assert_eq!(b, packets[0].descriptor);
    }

    /// Every frame of the capture read against the spec's meaning: frame
    /// numbers one apart, a frame refers only to frames of each target it
    /// belongs to (and never to one discardable for it), each chain's
    /// previous frame was sent, the marker closes each temporal unit,
    /// spatial ids rise within one, and the active decode targets follow
    /// the layers Chromium's encoder sends as its rate ramps up and down
    /// (S0+S1, all three, S0 alone, S0+S1, all three).
    #[test]
    fn chromium_l3t3_key_frames_mean_what_the_spec_says() {
        let packets = chromium_l3t3_key();
        let mut r = DdReader::new();
        // frame number -> (spatial id, DTIs)
        let mut frames: std::collections::HashMap<u16, (u8, Vec<Dti>)> = Default::default();
        let mut last_frame: Option<u16> = None;
        let mut masks = Vec::new();
        let mut top_spatial_per_unit = std::collections::BTreeMap::new();
        for (i, p) in packets.iter().enumerate() {
            let (d, f) = r.read(&p.descriptor).unwrap();
            if masks.last() != Some(&r.active_decode_targets()) {
                masks.push(r.active_decode_targets());
            }
            let next = packets.get(i + 1);
            // The marker ends a temporal unit (the next packet has another
            // timestamp) and a frame.
            assert_eq!(
                p.marker,
                next.is_none_or(|n| n.timestamp != p.timestamp),
                "{}",
                p.seq
            );
            if p.marker {
                assert!(d.end_of_frame, "{}", p.seq);
            }
            let top = top_spatial_per_unit
                .entry(p.timestamp)
                .or_insert(f.spatial_id);
            assert!(
                f.spatial_id >= *top,
                "spatial ids rise in a unit: {}",
                p.seq
            );
            *top = f.spatial_id;
            if !d.start_of_frame {
                assert_eq!(last_frame, Some(d.frame_number));
                continue;
            }
            if let Some(l) = last_frame {
                assert_eq!(d.frame_number, l.wrapping_add(1), "{}", p.seq);
            }
            last_frame = Some(d.frame_number);
            for &fd in &f.fdiffs {
                let (sid, dtis) = &frames[&d.frame_number.wrapping_sub(fd)];
                assert!(*sid <= f.spatial_id);
                for (t, dti) in f.dtis.iter().enumerate() {
                    if *dti != Dti::NotPresent {
                        assert!(
                            !matches!(dtis[t], Dti::NotPresent | Dti::Discardable),
                            "frame {} refers to {fd} before, not kept for target {t}",
                            d.frame_number
                        );
                    }
                }
            }
            for &c in &f.chain_fdiffs {
                if c > 0 {
                    assert!(frames.contains_key(&d.frame_number.wrapping_sub(c.into())));
                }
            }
            frames.insert(d.frame_number, (f.spatial_id, f.dtis));
        }
        assert_eq!(
            masks,
            [
                0b000_111_111,
                0b111_111_111,
                0b000_000_111,
                0b000_111_111,
                0b111_111_111
            ]
        );
        assert_eq!(frames.len(), 55);
    }

    fn dti() -> impl Strategy<Value = Dti> {
        (0u32..4).prop_map(Dti::from_bits)
    }

    fn structure() -> impl Strategy<Value = Structure> {
        (1u8..=8, 0u8..64, prop::collection::vec(0u8..3, 0..10))
            .prop_flat_map(|(dts, offset, steps)| {
                // Template ids from next_layer_idc steps.
                let mut ids = vec![(0u8, 0u8)];
                for s in steps {
                    let (sp, t) = *ids.last().unwrap_or(&(0, 0));
                    ids.push(match s {
                        0 => (sp, t),
                        1 => (sp, t + 1),
                        _ => (sp + 1, 0),
                    });
                }
                let n = ids.len();
                let max_spatial = ids.iter().map(|i| i.0).max().unwrap_or(0);
                (
                    Just((dts, offset, ids)),
                    0..=dts,
                    prop::collection::vec(
                        (
                            prop::collection::vec(dti(), usize::from(dts)),
                            prop::collection::vec(1u8..=16, 0..4),
                            prop::collection::vec(0u8..16, usize::from(dts)),
                        ),
                        n,
                    ),
                    prop::collection::vec(any::<u8>(), usize::from(dts)),
                    prop::option::of(prop::collection::vec(
                        (1u32..=65_536, 1u32..=65_536),
                        usize::from(max_spatial) + 1,
                    )),
                )
            })
            .prop_map(
                |((dts, offset, ids), chains, tpls, prot, resolutions)| Structure {
                    template_id_offset: offset,
                    decode_targets: dts,
                    templates: ids
                        .into_iter()
                        .zip(tpls)
                        .map(|((s, t), (dtis, fdiffs, mut chain))| {
                            chain.truncate(usize::from(chains));
                            FrameTemplate {
                                spatial_id: s,
                                temporal_id: t,
                                dtis,
                                fdiffs,
                                chain_fdiffs: chain,
                            }
                        })
                        .collect(),
                    chains,
                    protected_by: if chains > 0 {
                        prot.into_iter().map(|p| p % chains).collect()
                    } else {
                        Vec::new()
                    },
                    resolutions,
                },
            )
    }

    fn descriptor() -> impl Strategy<Value = (DependencyDescriptor, Structure)> {
        (structure(), any::<bool>()).prop_flat_map(|(s, with_structure)| {
            let dts = usize::from(s.decode_targets);
            let chains = usize::from(s.chains);
            let mask = if dts == 32 {
                u32::MAX
            } else {
                (1u32 << dts) - 1
            };
            (
                Just(s),
                Just(with_structure),
                any::<(bool, bool, u16)>(),
                0u8..64,
                prop::option::of(any::<u32>().prop_map(move |m| m & mask)),
                prop::option::of(prop::collection::vec(dti(), dts)),
                prop::option::of(prop::collection::vec(1u16..=4096, 0..5)),
                prop::option::of(prop::collection::vec(any::<u8>(), chains)),
            )
                .prop_map(
                    |(s, with_structure, (sof, eof, n), tid, active, dtis, fdiffs, chains)| {
                        (
                            DependencyDescriptor {
                                start_of_frame: sof,
                                end_of_frame: eof,
                                template_id: tid,
                                frame_number: n,
                                structure: with_structure.then(|| s.clone()),
                                active_decode_targets: active,
                                custom_dtis: dtis,
                                custom_fdiffs: fdiffs,
                                custom_chains: chains,
                            },
                            s,
                        )
                    },
                )
        })
    }

    proptest! {
        /// parse(emit(x)) == x, with the structure in the descriptor or
        /// kept from an earlier one.
        #[test]
        fn descriptors_round_trip((d, s) in descriptor()) {
            let mut b = Vec::new();
            d.emit(Some(&s), &mut b).unwrap();
            prop_assert_eq!(b.len() == 3, !d.extended());
            prop_assert_eq!(DependencyDescriptor::parse(&b, Some(&s)), Ok(d.clone()));
            if let Ok(f) = d.frame(Some(&s)) {
                prop_assert_eq!(f.dtis.len(), usize::from(s.decode_targets));
            }
        }

        /// Arbitrary bytes never panic, with or without a structure.
        #[test]
        fn junk_never_panics(b in prop::collection::vec(any::<u8>(), 0..64)) {
            for latest in [None, Some(&l1t3())] {
                if let Ok(d) = DependencyDescriptor::parse(&b, latest) {
                    let _ = d.frame(latest);
                    let mut out = Vec::new();
                    d.emit(latest, &mut out).unwrap();
                    prop_assert_eq!(DependencyDescriptor::parse(&out, latest), Ok(d));
                }
            }
        }
    }
}
