//! RTP header extensions (RFC 8285).
//!
//! RFC 3550 §5.3.1 allows one extension block after the CSRCs: a 16-bit profile
//! word, a 16-bit length in 32-bit words, then the data. RFC 8285 fills that block
//! with small elements, each naming a local ID negotiated in SDP (`a=extmap`):
//!
//! ```text
//! one-byte form (profile 0xBEDE, §4.2):   two-byte form (profile 0x100X, §4.3):
//! +-+-+-+-+-+-+-+-+---------+              +---------------+---------------+-----
//! |  ID   |  L-1  |  data   |              |      ID       |    length     | data
//! +-+-+-+-+-+-+-+-+---------+              +---------------+---------------+-----
//!  ID 1..=14, 1..=16 bytes                   ID 1..=255, 0..=255 bytes
//! ```
//!
//! A zero byte between elements is padding in both forms. A packet uses one form
//! for all its elements; with `a=extmap-allow-mixed` (§4.1.1, §6) a sender may
//! switch per packet, so a writer picks the one-byte form when every element fits
//! it and the two-byte form otherwise.

use super::Error;

/// RFC 8285 §4.2: the profile word that announces one-byte elements.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// RFC 8285 §4.3: the two-byte form's profile is 0x100 in the top 12 bits, then
/// 4 "appbits" the application may use.
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Which element layout an extension block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionForm {
    /// RFC 8285 §4.2, profile 0xBEDE.
    OneByte,
    /// RFC 8285 §4.3, profile 0x100X with the 4 appbits.
    TwoByte {
        /// The low 4 bits of the profile word.
        appbits: u8,
    },
}

impl ExtensionForm {
    /// The form announced by an extension profile word, if it is an RFC 8285 one.
    pub fn from_profile(profile: u16) -> Option<ExtensionForm> {
        if profile == ONE_BYTE_PROFILE {
            Some(ExtensionForm::OneByte)
        } else if profile & 0xFFF0 == TWO_BYTE_PROFILE {
            Some(ExtensionForm::TwoByte {
                appbits: (profile & 0xF) as u8,
            })
        } else {
            None
        }
    }

    /// The profile word for this form.
    pub fn profile(self) -> u16 {
        match self {
            ExtensionForm::OneByte => ONE_BYTE_PROFILE,
            ExtensionForm::TwoByte { appbits } => TWO_BYTE_PROFILE | (appbits & 0xF) as u16,
        }
    }
}

/// One element of an extension block, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionElement<'a> {
    /// The local identifier (from `a=extmap`).
    pub id: u8,
    /// The element's data.
    pub data: &'a [u8],
}

/// Iterates the elements of an RFC 8285 extension block without allocating.
///
/// Yields an error (once, then stops) if an element runs past the block.
#[derive(Debug, Clone)]
pub struct ExtensionIter<'a> {
    form: ExtensionForm,
    data: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> ExtensionIter<'a> {
    /// Iterates `data` laid out in `form`.
    pub fn new(form: ExtensionForm, data: &'a [u8]) -> Self {
        ExtensionIter {
            form,
            data,
            pos: 0,
            done: false,
        }
    }

    /// An iterator that yields nothing.
    pub fn empty() -> Self {
        ExtensionIter {
            form: ExtensionForm::OneByte,
            data: &[],
            pos: 0,
            done: true,
        }
    }
}

impl<'a> Iterator for ExtensionIter<'a> {
    type Item = Result<ExtensionElement<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let rest = self.data.get(self.pos..).unwrap_or(&[]);
            let Some(&first) = rest.first() else {
                self.done = true;
                return None;
            };
            // RFC 8285 §4.2/§4.3: a zero byte is padding, skipped.
            if first == 0 {
                self.pos += 1;
                continue;
            }
            let (id, len, hdr) = match self.form {
                ExtensionForm::OneByte => {
                    let id = first >> 4;
                    if id == 15 {
                        // RFC 8285 §4.2: ID 15 is reserved; stop processing the block.
                        self.done = true;
                        return None;
                    }
                    (id, (first & 0x0F) as usize + 1, 1)
                }
                ExtensionForm::TwoByte { .. } => {
                    let Some(&len) = rest.get(1) else {
                        self.done = true;
                        return Some(Err(Error::BadExtension("two-byte element without length")));
                    };
                    (first, len as usize, 2)
                }
            };
            let Some(data) = rest.get(hdr..hdr + len) else {
                self.done = true;
                return Some(Err(Error::BadExtension(
                    "element runs past the extension block",
                )));
            };
            self.pos += hdr + len;
            return Some(Ok(ExtensionElement { id, data }));
        }
    }
}

/// An owned list of extension elements, for building packets.
///
/// The elements are kept in order; [`Extensions::emit`] picks the form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extensions {
    /// `(id, data)` pairs in wire order.
    pub elements: Vec<(u8, Vec<u8>)>,
}

impl Extensions {
    /// No elements.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an element.
    pub fn push(&mut self, id: u8, data: &[u8]) -> &mut Self {
        self.elements.push((id, data.to_vec()));
        self
    }

    /// The data of the first element with `id`.
    pub fn get(&self, id: u8) -> Option<&[u8]> {
        self.elements
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| d.as_slice())
    }

    /// Collects the elements of a block (`profile`, `data`) from a packet.
    pub fn parse(profile: u16, data: &[u8]) -> Result<Extensions, Error> {
        let form = ExtensionForm::from_profile(profile)
            .ok_or(Error::BadExtension("profile is not an RFC 8285 one"))?;
        let mut out = Extensions::new();
        for e in ExtensionIter::new(form, data) {
            let e = e?;
            out.elements.push((e.id, e.data.to_vec()));
        }
        Ok(out)
    }

    /// The form a writer uses: one-byte when every element fits it (id 1..=14,
    /// 1..=16 bytes), else two-byte if `allow_two_byte` (the two-byte form was
    /// negotiated or `a=extmap-allow-mixed` is on, RFC 8285 §4.1.1, §6).
    pub fn form(&self, allow_two_byte: bool) -> Result<ExtensionForm, Error> {
        let one_byte_ok = self
            .elements
            .iter()
            .all(|(id, d)| (1..=14).contains(id) && (1..=16).contains(&d.len()));
        if one_byte_ok {
            return Ok(ExtensionForm::OneByte);
        }
        if !allow_two_byte {
            return Err(Error::Invalid(
                "extension needs the two-byte form (id > 14 or length 0 or > 16) but it is not allowed",
            ));
        }
        if self
            .elements
            .iter()
            .any(|(id, d)| *id == 0 || d.len() > 255)
        {
            return Err(Error::Invalid(
                "extension id 0 or element longer than 255 bytes",
            ));
        }
        Ok(ExtensionForm::TwoByte { appbits: 0 })
    }

    /// Writes the block's profile word and padded data (without the length
    /// word): returns `(profile, data)` ready for [`super::RtpHeader`].
    pub fn emit(&self, allow_two_byte: bool) -> Result<(u16, Vec<u8>), Error> {
        let form = self.form(allow_two_byte)?;
        let mut data = Vec::new();
        for (id, d) in &self.elements {
            match form {
                ExtensionForm::OneByte => data.push((id << 4) | (d.len() as u8 - 1)),
                ExtensionForm::TwoByte { .. } => data.extend_from_slice(&[*id, d.len() as u8]),
            }
            data.extend_from_slice(d);
        }
        // RFC 3550 §5.3.1: the block is a whole number of 32-bit words; pad with zeros.
        while data.len() % 4 != 0 {
            data.push(0);
        }
        Ok((form.profile(), data))
    }
}

/// Writes a whole extension block (profile word, length word, elements,
/// zero padding to a 32-bit boundary, RFC 3550 §5.3.1) for `elements`,
/// appended to `out` with no allocation of its own. The form is chosen as
/// [`Extensions::form`] does: one-byte when every element has an id 1–14
/// and 1–16 bytes (RFC 8285 §4.2), else two-byte if allowed (§4.3).
pub fn emit_extension_block(
    elements: &[(u8, &[u8])],
    allow_two_byte: bool,
    out: &mut Vec<u8>,
) -> Result<ExtensionForm, Error> {
    let one_byte_ok = elements
        .iter()
        .all(|(id, d)| (1..=14).contains(id) && (1..=16).contains(&d.len()));
    let form = if one_byte_ok {
        ExtensionForm::OneByte
    } else if !allow_two_byte {
        return Err(Error::Invalid(
            "extension needs the two-byte form (id > 14 or length 0 or > 16) but it is not allowed",
        ));
    } else if elements.iter().any(|(id, d)| *id == 0 || d.len() > 255) {
        return Err(Error::Invalid(
            "extension id 0 or element longer than 255 bytes",
        ));
    } else {
        ExtensionForm::TwoByte { appbits: 0 }
    };
    let start = out.len();
    out.extend_from_slice(&form.profile().to_be_bytes());
    out.extend_from_slice(&[0, 0]); // the length, known below
    for (id, d) in elements {
        match form {
            ExtensionForm::OneByte => out.push((id << 4) | (d.len() as u8 - 1)),
            ExtensionForm::TwoByte { .. } => out.extend_from_slice(&[*id, d.len() as u8]),
        }
        out.extend_from_slice(d);
    }
    while (out.len() - start) % 4 != 0 {
        out.push(0);
    }
    let words = (out.len() - start - 4) / 4;
    let Ok(words) = u16::try_from(words) else {
        out.truncate(start);
        return Err(Error::Invalid("extension block longer than 65535 words"));
    };
    out[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
    Ok(form)
}

/// Values of the header extensions WebRTC negotiates (the element data only;
/// the local id comes from `a=extmap`).
pub mod values {
    /// `http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01`
    /// (§2): a 16-bit transport-wide sequence number.
    pub fn transport_cc_seq(data: &[u8]) -> Option<u16> {
        Some(u16::from_be_bytes(data.get(..2)?.try_into().ok()?))
    }

    /// `http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time`: send time
    /// as 6.18 fixed-point seconds (24 bits).
    pub fn abs_send_time(data: &[u8]) -> Option<u32> {
        let b = data.get(..3)?;
        Some(u32::from_be_bytes([0, b[0], b[1], b[2]]))
    }

    /// The abs-send-time bytes for a 64-bit NTP time (its bits 14..38).
    pub fn abs_send_time_from_ntp(ntp: u64) -> [u8; 3] {
        let v = ((ntp >> 14) & 0xFF_FFFF) as u32;
        let b = v.to_be_bytes();
        [b[1], b[2], b[3]]
    }

    /// RFC 6464 §3 client-to-mixer audio level: `(voice activity, level in −dBov 0..=127)`.
    pub fn audio_level(data: &[u8]) -> Option<(bool, u8)> {
        let &b = data.first()?;
        Some((b & 0x80 != 0, b & 0x7F))
    }

    /// RFC 8843 §15.1 `urn:ietf:params:rtp-hdrext:sdes:mid`: the media id text.
    pub fn mid(data: &[u8]) -> Option<&str> {
        std::str::from_utf8(data).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_byte_elements_with_padding() {
        // id 1 len 1 (audio level), padding, id 3 len 2 (twcc seq), id 15 stops.
        let data = [0x10, 0x85, 0x00, 0x31, 0x12, 0x34, 0xF0, 0x99];
        let v: Vec<_> = ExtensionIter::new(ExtensionForm::OneByte, &data).collect();
        assert_eq!(
            v,
            vec![
                Ok(ExtensionElement {
                    id: 1,
                    data: &[0x85]
                }),
                Ok(ExtensionElement {
                    id: 3,
                    data: &[0x12, 0x34]
                }),
            ]
        );
    }

    #[test]
    fn two_byte_elements_allow_empty_and_big_ids() {
        let data = [0x20, 0x00, 0x00, 0xC8, 0x03, 1, 2, 3];
        let v: Vec<_> = ExtensionIter::new(ExtensionForm::TwoByte { appbits: 0 }, &data)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            v,
            vec![
                ExtensionElement {
                    id: 0x20,
                    data: &[]
                },
                ExtensionElement {
                    id: 200,
                    data: &[1, 2, 3]
                },
            ]
        );
    }

    #[test]
    fn extension_values() {
        assert_eq!(values::transport_cc_seq(&[0x12, 0x34]), Some(0x1234));
        assert_eq!(values::transport_cc_seq(&[0x12]), None);
        // 1.5 s in NTP is 0x0000_0001_8000_0000; 6.18 fixed: 1.5 * 2^18.
        let b = values::abs_send_time_from_ntp(0x0000_0001_8000_0000);
        assert_eq!(values::abs_send_time(&b), Some(3 << 17));
        assert_eq!(values::audio_level(&[0x85]), Some((true, 5)));
        assert_eq!(values::mid(b"0"), Some("0"));
    }

    #[test]
    fn overlong_element_is_an_error() {
        let data = [0x13, 0x00];
        let mut it = ExtensionIter::new(ExtensionForm::OneByte, &data);
        assert!(matches!(it.next(), Some(Err(Error::BadExtension(_)))));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn writer_picks_the_form() {
        let mut e = Extensions::new();
        e.push(3, &[0, 1]);
        assert_eq!(e.form(false), Ok(ExtensionForm::OneByte));
        let (p, d) = e.emit(false).unwrap();
        assert_eq!(p, 0xBEDE);
        assert_eq!(d, vec![0x31, 0, 1, 0]);
        // A mid longer than 16 bytes or an id above 14 needs the two-byte form.
        e.push(20, b"a-long-mid-value-here");
        assert!(e.form(false).is_err());
        let (p, d) = e.emit(true).unwrap();
        assert_eq!(p, 0x1000);
        assert_eq!(Extensions::parse(p, &d).unwrap(), e);
    }

    fn arb_elements(two_byte: bool) -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        if two_byte {
            proptest::collection::vec(
                (1u8..=255, proptest::collection::vec(any::<u8>(), 0..40)),
                0..8,
            )
            .boxed()
        } else {
            proptest::collection::vec(
                (1u8..=14, proptest::collection::vec(any::<u8>(), 1..=16)),
                0..8,
            )
            .boxed()
        }
    }

    proptest! {
        #[test]
        fn round_trip(elements in any::<bool>().prop_flat_map(arb_elements)) {
            let e = Extensions { elements };
            let (p, d) = e.emit(true).unwrap();
            prop_assert_eq!(d.len() % 4, 0);
            prop_assert_eq!(Extensions::parse(p, &d).unwrap(), e);
        }

        #[test]
        fn arbitrary_bytes_never_panic(profile in any::<u16>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(form) = ExtensionForm::from_profile(profile) {
                for e in ExtensionIter::new(form, &data).flatten() {
                    prop_assert!(e.data.len() <= data.len());
                }
            }
            let _ = Extensions::parse(profile, &data);
        }
    }
}
