//! [`Session`]: the JSEP writer of offers and answers (RFC 8829 §5.2,
//! §5.3), keeping the m-lines in order across renegotiations.

use super::read::negotiate;
use super::section::*;
use super::types::*;
use crate::sdp::attribute::*;
use crate::sdp::codec::{Codec, match_codec};
use crate::sdp::description::{Connection, MediaDescription, Origin, SessionDescription, Timing};
use crate::vocab::Candidate;

/// Who owns an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Transceiver(TransceiverId),
    Data,
    /// Rejected; recyclable once the rejection was negotiated.
    Nobody,
}

/// One m-line of the session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Section {
    mid: String,
    media: String,
    protocol: String,
    formats: Vec<String>,
    owner: Owner,
    /// The rejection has been through a complete offer/answer.
    rejection_negotiated: bool,
    /// The codecs of the last negotiation (payload types to keep).
    codecs: Vec<NegotiatedCodec>,
}

/// Offer/answer state of one PeerConnection (JSEP §5): transceivers, the
/// m-lines in order, and the descriptions exchanged so far.
///
/// ```text
///  offerer                                   answerer
///  create_offer() ──── SessionDescription ──► create_answer(&offer)
///  set_remote_answer(&answer) ◄────────────── (answer, Negotiated)
///  → Negotiated
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    capabilities: Capabilities,
    transport: TransportParams,
    session_id: u64,
    version: u64,
    transceivers: Vec<Transceiver>,
    data_channel: bool,
    sections: Vec<Section>,
    /// `(id, uri)` of every header extension in use (the same id across
    /// all bundled m-lines).
    extension_ids: Vec<(u16, String)>,
    /// Every mid this session has seen: a new m-line never reuses one
    /// (JSEP §5.2.2).
    used_mids: Vec<String>,
    pending_offer: Option<(SessionDescription, Vec<Section>)>,
    local: Option<SessionDescription>,
    remote: Option<SessionDescription>,
    negotiated: Option<Negotiated>,
}

impl Session {
    /// A session with no m-lines yet. `session_id` goes into `o=` (JSEP
    /// §5.2.1: a random 62-bit number).
    pub fn new(capabilities: Capabilities, transport: TransportParams, session_id: u64) -> Session {
        Session {
            capabilities,
            transport,
            session_id: session_id & ((1 << 62) - 1),
            version: 1,
            transceivers: Vec::new(),
            data_channel: false,
            sections: Vec::new(),
            extension_ids: Vec::new(),
            used_mids: Vec::new(),
            pending_offer: None,
            local: None,
            remote: None,
            negotiated: None,
        }
    }

    /// Our capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// Our transport (update candidates, or credentials for an ICE restart).
    pub fn transport_mut(&mut self) -> &mut TransportParams {
        &mut self.transport
    }

    /// Adds a transceiver; it gets an m-line in the next offer (or takes an
    /// m-line of the same kind from the next remote offer).
    pub fn add_transceiver(
        &mut self,
        kind: MediaKind,
        direction: Direction,
        sender: Option<LocalSender>,
    ) -> TransceiverId {
        self.transceivers.push(Transceiver {
            kind,
            direction,
            sender,
            mid: None,
            stopped: false,
        });
        self.transceivers.len() - 1
    }

    /// The transceivers.
    pub fn transceivers(&self) -> &[Transceiver] {
        &self.transceivers
    }

    /// One transceiver, to change its direction or sender (the change is
    /// signaled by the next offer).
    pub fn transceiver_mut(&mut self, id: TransceiverId) -> Option<&mut Transceiver> {
        self.transceivers.get_mut(id)
    }

    /// JSEP `removeTrack`: no sender; we stop sending (`sendrecv` →
    /// `recvonly`, `sendonly` → `inactive`).
    pub fn remove_track(&mut self, id: TransceiverId) -> Result<(), NegotiationError> {
        let t = self
            .transceivers
            .get_mut(id)
            .ok_or(NegotiationError::Misuse("no such transceiver"))?;
        t.sender = None;
        t.direction = Direction::from_flags(false, t.direction.receives());
        Ok(())
    }

    /// Stops a transceiver: its m-line is rejected (port 0) from the next
    /// offer on, and may be recycled afterwards.
    pub fn stop(&mut self, id: TransceiverId) -> Result<(), NegotiationError> {
        let t = self
            .transceivers
            .get_mut(id)
            .ok_or(NegotiationError::Misuse("no such transceiver"))?;
        t.stopped = true;
        Ok(())
    }

    /// Asks for a data-channel m-line in the next offer.
    pub fn add_data_channel(&mut self) {
        self.data_channel = true;
    }

    /// Drops the data channel: its m-line is rejected in the next offer.
    pub fn remove_data_channel(&mut self) {
        self.data_channel = false;
    }

    /// The last local description set (offer or answer).
    pub fn local_description(&self) -> Option<&SessionDescription> {
        self.local.as_ref()
    }

    /// The last remote description set.
    pub fn remote_description(&self) -> Option<&SessionDescription> {
        self.remote.as_ref()
    }

    /// The result of the last complete offer/answer.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    fn next_mid(&self, sections: &[Section]) -> String {
        let mut n = 0u32;
        loop {
            let mid = n.to_string();
            if !sections.iter().any(|s| s.mid == mid) && !self.used_mids.contains(&mid) {
                return mid;
            }
            n += 1;
        }
    }

    /// The id of extension `uri`, allocating a free one (1..=14, the
    /// one-byte form) if new.
    fn extension_id(&mut self, uri: &str) -> Option<u16> {
        if let Some((id, _)) = self.extension_ids.iter().find(|(_, u)| u == uri) {
            return Some(*id);
        }
        let id = (1..=14).find(|i| !self.extension_ids.iter().any(|(x, _)| x == i))?;
        self.extension_ids.push((id, uri.to_string()));
        Some(id)
    }

    /// Our codecs for an m-line, with the payload types of its previous
    /// negotiation kept, and other payload types moved off any taken ones.
    fn offer_codecs(&self, kind: MediaKind, previous: &[NegotiatedCodec]) -> Vec<Codec> {
        let audio = kind == MediaKind::Audio;
        let mut out: Vec<Codec> = Vec::new();
        let mut used: Vec<u8> = previous
            .iter()
            .flat_map(|c| [Some(c.payload_type), c.rtx_payload_type])
            .flatten()
            .collect();
        let fresh = |used: &mut Vec<u8>, want: u8| -> Option<u8> {
            let pt = if used.contains(&want) {
                (96..=127).chain(35..=63).find(|p| !used.contains(p))?
            } else {
                want
            };
            used.push(pt);
            Some(pt)
        };
        for local in &self.capabilities.media(kind).codecs {
            let prev = previous.iter().find(|p| {
                match_codec(
                    &p.name,
                    p.clock_rate,
                    p.channels,
                    p.local_fmtp.as_deref().or(p.remote_fmtp.as_deref()),
                    audio,
                    local,
                )
                .is_some()
            });
            let mut c = local.clone();
            match prev {
                Some(p) => {
                    c.payload_type = p.payload_type;
                    if c.rtx_payload_type.is_some() {
                        c.rtx_payload_type = match p.rtx_payload_type {
                            Some(r) => Some(r),
                            None => local.rtx_payload_type.and_then(|r| fresh(&mut used, r)),
                        };
                    }
                }
                None => {
                    let Some(pt) = fresh(&mut used, local.payload_type) else {
                        continue;
                    };
                    c.payload_type = pt;
                    c.rtx_payload_type = local.rtx_payload_type.and_then(|r| fresh(&mut used, r));
                }
            }
            out.push(c);
        }
        // JSEP §5.2.2: a subsequent offer keeps the codecs the last answer
        // agreed, in its order, ahead of the others. A browser sends the
        // first codec of the description it answers, so an SFU's re-offer
        // in its own order would switch a page from VP9 to VP8.
        out.sort_by_key(|c| {
            previous
                .iter()
                .position(|p| p.payload_type == c.payload_type)
                .unwrap_or(usize::MAX)
        });
        out
    }

    fn origin(&mut self) -> Origin {
        self.version += 1;
        Origin {
            username: "-".into(),
            session_id: self.session_id,
            session_version: self.version,
            net_type: "IN".into(),
            addr_type: "IP4".into(),
            address: "127.0.0.1".into(),
        }
    }

    /// JSEP §5.2: an offer. Existing m-lines keep their place and mid; a
    /// stopped transceiver's m-line is rejected (port 0) and stays in place;
    /// new transceivers (and the data channel) take a rejected m-line whose
    /// rejection was negotiated, or are added at the end.
    pub fn create_offer(&mut self) -> Result<SessionDescription, NegotiationError> {
        let mut sections = self.sections.clone();
        // Retire the m-lines of stopped transceivers and a dropped data channel.
        for s in &mut sections {
            let retire = match s.owner {
                Owner::Transceiver(t) => self.transceivers[t].stopped,
                Owner::Data => !self.data_channel,
                Owner::Nobody => false,
            };
            if retire {
                s.owner = Owner::Nobody;
                s.rejection_negotiated = false;
            }
        }
        // Transceivers without an m-line (a mid from an offer that was never
        // answered does not count: that offer is replaced by this one).
        let mut wanted: Vec<Owner> = (0..self.transceivers.len())
            .filter(|t| {
                !self.transceivers[*t].stopped
                    && !sections.iter().any(|s| s.owner == Owner::Transceiver(*t))
            })
            .map(Owner::Transceiver)
            .collect();
        if self.data_channel && !sections.iter().any(|s| s.owner == Owner::Data) {
            wanted.push(Owner::Data);
        }
        for owner in wanted {
            let earlier = match owner {
                Owner::Transceiver(t) => self.transceivers[t].mid.clone(),
                _ => None,
            };
            let mid = earlier
                .filter(|m| !sections.iter().any(|s| s.mid == *m))
                .unwrap_or_else(|| self.next_mid(&sections));
            let (media, protocol, formats) = match owner {
                Owner::Transceiver(t) => (
                    self.transceivers[t].kind.as_str().to_string(),
                    RTP_PROTOCOL.to_string(),
                    Vec::new(),
                ),
                _ => (
                    "application".to_string(),
                    SCTP_PROTOCOL.to_string(),
                    vec![DATA_CHANNEL_FORMAT.to_string()],
                ),
            };
            let section = Section {
                mid,
                media,
                protocol,
                formats,
                owner,
                rejection_negotiated: false,
                codecs: Vec::new(),
            };
            match sections
                .iter_mut()
                .find(|s| s.owner == Owner::Nobody && s.rejection_negotiated)
            {
                Some(slot) => *slot = section,
                None => sections.push(section),
            }
        }
        let origin = self.origin();
        let bundle: Vec<String> = sections
            .iter()
            .filter(|s| s.owner != Owner::Nobody)
            .map(|s| s.mid.clone())
            .collect();
        let mut media = Vec::new();
        let mut first = true;
        for s in &mut sections {
            let m = match s.owner {
                Owner::Nobody => rejected_section(s),
                Owner::Data => {
                    let dc = self.capabilities.data_channel.unwrap_or_default();
                    let mut m = self.bundled_section(s, Setup::ActPass, first);
                    m.attributes.push(Attribute::SctpPort(dc.sctp_port));
                    m.attributes
                        .push(Attribute::MaxMessageSize(dc.max_message_size));
                    m
                }
                Owner::Transceiver(t) => {
                    let kind = self.transceivers[t].kind;
                    let codecs = self.offer_codecs(kind, &s.codecs);
                    let uris = self.capabilities.media(kind).extensions.clone();
                    let extensions: Vec<Extmap> = uris
                        .iter()
                        .filter_map(|u| {
                            self.extension_id(u).map(|id| Extmap {
                                id,
                                direction: None,
                                uri: u.clone(),
                                attributes: None,
                            })
                        })
                        .collect();
                    self.transceivers[t].mid = Some(s.mid.clone());
                    let tr = &self.transceivers[t];
                    let direction = Direction::from_flags(
                        tr.direction.sends() && tr.sender.is_some(),
                        tr.direction.receives(),
                    );
                    let mut m = self.bundled_section(s, Setup::ActPass, first);
                    m.formats = format_list(&codecs);
                    s.formats = m.formats.clone();
                    rtp_attributes(
                        &mut m,
                        &extensions,
                        direction,
                        tr.sender.as_ref(),
                        &codecs,
                        true,
                    );
                    if let Some(sender) = tr.sender.as_ref().filter(|_| direction.sends()) {
                        offer_simulcast(&mut m, sender, &extensions);
                    }
                    // JSEP §5.2.2: a subsequent offer keeps the simulcast
                    // the m-line receives, or the peer would stop it.
                    let receiving = self
                        .negotiated
                        .as_ref()
                        .and_then(|n| n.media.iter().find(|n| n.mid.as_ref() == Some(&s.mid)))
                        .map(|n| n.receive_rids.clone())
                        .unwrap_or_default();
                    if direction.receives() && receiving.len() > 1 {
                        simulcast_lines(&mut m, RidDirection::Recv, &receiving);
                    }
                    m
                }
            };
            if s.owner != Owner::Nobody {
                first = false;
            }
            media.push(m);
        }
        // RFC 8285 §6: a re-offer keeps `a=extmap-allow-mixed` once the
        // peer has offered it (we read both header forms): a browser that
        // answered with it dropped would lose its large elements, the
        // dependency descriptor's template structure among them.
        let allow_mixed = self
            .remote
            .as_ref()
            .is_some_and(|r| r.has(&Attribute::ExtmapAllowMixed));
        let sd = self.description(origin, &bundle, media, allow_mixed);
        self.pending_offer = Some((sd.clone(), sections));
        self.local = Some(sd.clone());
        Ok(sd)
    }

    /// Sets the remote answer to our pending offer: checks it and returns
    /// (and keeps) what was agreed.
    pub fn set_remote_answer(
        &mut self,
        answer: &SessionDescription,
    ) -> Result<Negotiated, NegotiationError> {
        let (offer, mut sections) = self
            .pending_offer
            .take()
            .ok_or(NegotiationError::Misuse("no pending local offer"))?;
        let negotiated = match negotiate(&offer, answer, true) {
            Ok(n) => n,
            Err(e) => {
                self.pending_offer = Some((offer, sections));
                return Err(e);
            }
        };
        self.apply(&mut sections, &negotiated);
        self.sections = sections;
        self.remote = Some(answer.clone());
        self.negotiated = Some(negotiated.clone());
        Ok(negotiated)
    }

    /// Records a completed negotiation in the sections and transceivers.
    fn apply(&mut self, sections: &mut [Section], n: &Negotiated) {
        for s in sections.iter() {
            if !self.used_mids.contains(&s.mid) {
                self.used_mids.push(s.mid.clone());
            }
        }
        for (s, m) in sections.iter_mut().zip(&n.media) {
            if m.rejected {
                if let Owner::Transceiver(t) = s.owner {
                    self.transceivers[t].stopped = true;
                }
                if s.owner == Owner::Data {
                    self.data_channel = false;
                }
                s.owner = Owner::Nobody;
                s.rejection_negotiated = true;
                s.codecs.clear();
            } else {
                s.codecs = m.codecs.clone();
            }
        }
    }

    /// JSEP §5.3: answers a remote offer. m-lines the offer adds create
    /// transceivers (or take an unassociated local one of the same kind);
    /// m-lines we cannot use (no common codec, no rtcp-mux, unknown kind,
    /// data channels when we have none) are rejected with port 0.
    pub fn create_answer(
        &mut self,
        offer: &SessionDescription,
    ) -> Result<(SessionDescription, Negotiated), NegotiationError> {
        // Nothing changes unless the answer is made.
        let saved = (
            self.transceivers.clone(),
            self.extension_ids.clone(),
            self.data_channel,
            self.version,
        );
        let result = self.answer(offer);
        if result.is_err() {
            (
                self.transceivers,
                self.extension_ids,
                self.data_channel,
                self.version,
            ) = saved;
        }
        result
    }

    fn answer(
        &mut self,
        offer: &SessionDescription,
    ) -> Result<(SessionDescription, Negotiated), NegotiationError> {
        let mut sections = self.sections.clone();
        // RFC 3264 §8: an offer keeps every existing m-line in place.
        if offer.media.len() < sections.len() {
            return Err(NegotiationError::MediaCount {
                offer: offer.media.len(),
                answer: sections.len(),
            });
        }
        let mut mids = Vec::new();
        for (index, m) in offer.media.iter().enumerate() {
            if let Some(mid) = m.mid() {
                if mids.contains(&mid) {
                    return Err(NegotiationError::Mid { index });
                }
                mids.push(mid);
            } else if !m.is_rejected() {
                return Err(NegotiationError::Mid { index });
            }
        }
        let offer_bundle: Vec<&str> = offer
            .bundle_group()
            .map(|g| g.mids.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let setup = self.answer_setup(offer)?;
        let origin = self.origin();
        let mut media = Vec::new();
        let mut bundle = Vec::new();
        let mut first = true;
        for (index, om) in offer.media.iter().enumerate() {
            let mid = om.mid().unwrap_or_default().to_string();
            // Match the m-line to a section: the same one, a recycled one, or new.
            if index < sections.len() {
                let s = &sections[index];
                if s.mid != mid {
                    if s.owner != Owner::Nobody {
                        return Err(NegotiationError::Mismatch { index, what: "mid" });
                    }
                    sections[index] = new_section(om, mid.clone());
                } else if s.media != om.media {
                    return Err(NegotiationError::Mismatch {
                        index,
                        what: "media kind",
                    });
                }
            } else {
                sections.push(new_section(om, mid.clone()));
            }
            // Transceivers that already have an m-line.
            let taken: Vec<TransceiverId> = sections
                .iter()
                .filter_map(|s| match s.owner {
                    Owner::Transceiver(t) => Some(t),
                    _ => None,
                })
                .collect();
            let s = &mut sections[index];
            let bundled = offer_bundle.contains(&mid.as_str())
                || (offer_bundle.is_empty() && offer.media.len() == 1);
            let usable = !om.is_rejected() && bundled && transport_of(offer, om).ufrag.is_some();
            let kind = MediaKind::parse(&om.media);
            let accept = match (usable, kind) {
                (false, _) | (true, None) => None,
                (true, Some(MediaKind::Application)) => (is_data_channel(om)
                    && self.capabilities.data_channel.is_some())
                .then_some(Owner::Data),
                (true, Some(k)) if is_rtp(om) && om.has(&Attribute::RtcpMux) => {
                    let codecs = answer_codecs(om, self.capabilities.media(k), k);
                    if codecs.is_empty() {
                        None
                    } else {
                        let t = match s.owner {
                            Owner::Transceiver(t) if !self.transceivers[t].stopped => Some(t),
                            Owner::Transceiver(_) => None,
                            _ => {
                                // JSEP §5.10: a local transceiver of the kind
                                // without an m-line takes it; else a new one.
                                let free = (0..self.transceivers.len()).find(|t| {
                                    let tr = &self.transceivers[*t];
                                    tr.kind == k && !tr.stopped && !taken.contains(t)
                                });
                                Some(free.unwrap_or_else(|| {
                                    self.add_transceiver(k, Direction::RecvOnly, None)
                                }))
                            }
                        };
                        t.map(|t| {
                            self.transceivers[t].mid = Some(mid.clone());
                            Owner::Transceiver(t)
                        })
                    }
                }
                _ => None,
            };
            let Some(owner) = accept else {
                match s.owner {
                    Owner::Transceiver(t) => self.transceivers[t].stopped = true,
                    Owner::Data => self.data_channel = false,
                    Owner::Nobody => {}
                }
                s.owner = Owner::Nobody;
                s.rejection_negotiated = true;
                media.push(rejected_answer(om));
                continue;
            };
            s.owner = owner;
            bundle.push(mid.clone());
            let mut am = self.bundled_section(s, setup, first);
            first = false;
            am.media = om.media.clone();
            am.protocol = om.protocol.clone();
            match owner {
                Owner::Data => {
                    let dc = self.capabilities.data_channel.unwrap_or_default();
                    am.formats = om.formats.clone();
                    am.attributes.push(Attribute::SctpPort(dc.sctp_port));
                    am.attributes
                        .push(Attribute::MaxMessageSize(dc.max_message_size));
                    self.data_channel = true;
                }
                Owner::Transceiver(t) => {
                    let k = self.transceivers[t].kind;
                    let codecs = answer_codecs(om, self.capabilities.media(k), k);
                    let local_uris = &self.capabilities.media(k).extensions;
                    let extensions: Vec<Extmap> = om
                        .extmaps()
                        .filter(|e| local_uris.contains(&e.uri))
                        .map(|e| Extmap {
                            id: e.id,
                            direction: e.direction.map(Direction::reverse),
                            uri: e.uri.clone(),
                            attributes: None,
                        })
                        .collect();
                    for e in &extensions {
                        if !self.extension_ids.iter().any(|(i, _)| *i == e.id) {
                            self.extension_ids.push((e.id, e.uri.clone()));
                        }
                    }
                    let tr = &self.transceivers[t];
                    // JSEP §5.3.1: the offer's direction reversed, and ours.
                    let ours = Direction::from_flags(
                        tr.direction.sends() && tr.sender.is_some(),
                        tr.direction.receives(),
                    );
                    let direction = direction_of(offer, om).reverse().intersect(ours);
                    // The offer's formats order, filtered to what we accept.
                    let pts: Vec<u8> = codecs
                        .iter()
                        .flat_map(|c| [Some(c.payload_type), c.rtx_payload_type])
                        .flatten()
                        .collect();
                    am.formats = om
                        .payload_types()
                        .filter(|p| pts.contains(p))
                        .map(|p| p.to_string())
                        .collect();
                    let rsize = om.has(&Attribute::RtcpRsize);
                    rtp_attributes(
                        &mut am,
                        &extensions,
                        direction,
                        tr.sender.as_ref(),
                        &codecs,
                        rsize,
                    );
                    if self.capabilities.receive_simulcast && direction.receives() {
                        answer_simulcast(&mut am, om, &extensions);
                    }
                    if let Some(sender) = tr.sender.as_ref().filter(|_| direction.sends()) {
                        answer_simulcast_send(&mut am, om, sender, &extensions);
                    }
                }
                Owner::Nobody => {}
            }
            s.formats = am.formats.clone();
            media.push(am);
        }
        let answer = self.description(
            origin,
            &bundle,
            media,
            offer.has(&Attribute::ExtmapAllowMixed),
        );
        let negotiated = negotiate(&answer, offer, false)?;
        self.apply(&mut sections, &negotiated);
        self.sections = sections;
        self.pending_offer = None;
        self.local = Some(answer.clone());
        self.remote = Some(offer.clone());
        self.negotiated = Some(negotiated.clone());
        Ok((answer, negotiated))
    }

    /// RFC 8842 §5.3: the answer's `a=setup`. An `actpass` offer gets our
    /// configured role the first time and the established one afterwards
    /// (so that a renegotiation keeps the DTLS association).
    fn answer_setup(&self, offer: &SessionDescription) -> Result<Setup, NegotiationError> {
        let offered = offer
            .media
            .iter()
            .find(|m| !m.is_rejected())
            .and_then(|m| m.setup())
            .or(offer.setup());
        Ok(match offered {
            Some(Setup::Active) => Setup::Passive,
            Some(Setup::Passive) => Setup::Active,
            Some(Setup::ActPass) | None => match self.negotiated.as_ref().map(|n| n.dtls_role) {
                Some(DtlsRole::Client) => Setup::Active,
                Some(DtlsRole::Server) => Setup::Passive,
                None => match self.transport.answer_setup {
                    Setup::Passive => Setup::Passive,
                    _ => Setup::Active,
                },
            },
            Some(Setup::HoldConn) => {
                return Err(NegotiationError::Setup {
                    offer: Some(Setup::HoldConn),
                    answer: None,
                });
            }
        })
    }

    /// An accepted m-line with our transport attributes (every bundled
    /// m-line carries the same ones; candidates only in the first).
    fn bundled_section(&self, s: &Section, setup: Setup, first: bool) -> MediaDescription {
        let t = &self.transport;
        let default = t
            .candidates
            .iter()
            .find(|c| c.is_udp() && c.component == 1)
            .and_then(Candidate::socket_addr);
        let (port, connection) = match default {
            Some(a) => (
                a.port(),
                Connection {
                    net_type: "IN".into(),
                    addr_type: if a.is_ipv4() { "IP4" } else { "IP6" }.into(),
                    address: a.ip().to_string(),
                },
            ),
            // JSEP §5.2.1: port 9 and 0.0.0.0 until a candidate is known.
            None => (9, Connection::unspecified()),
        };
        let mut attributes = Vec::new();
        if first {
            attributes.extend(t.candidates.iter().cloned().map(Attribute::Candidate));
            if t.end_of_candidates {
                attributes.push(Attribute::EndOfCandidates);
            }
        }
        attributes.push(Attribute::IceUfrag(t.ice_ufrag.clone()));
        attributes.push(Attribute::IcePwd(t.ice_pwd.clone()));
        if !t.ice_options.is_empty() {
            attributes.push(Attribute::IceOptions(t.ice_options.clone()));
        }
        attributes.extend(t.fingerprints.iter().cloned().map(Attribute::Fingerprint));
        attributes.push(Attribute::Setup(setup));
        attributes.push(Attribute::Mid(s.mid.clone()));
        MediaDescription {
            media: s.media.clone(),
            port,
            port_count: None,
            protocol: s.protocol.clone(),
            formats: s.formats.clone(),
            title: None,
            connections: vec![connection],
            bandwidths: Vec::new(),
            key: None,
            attributes,
        }
    }

    fn description(
        &self,
        origin: Origin,
        bundle: &[String],
        media: Vec<MediaDescription>,
        allow_mixed: bool,
    ) -> SessionDescription {
        let mut attributes = Vec::new();
        if !bundle.is_empty() {
            attributes.push(Attribute::Group(Group {
                semantics: "BUNDLE".into(),
                mids: bundle.to_vec(),
            }));
        }
        if allow_mixed {
            attributes.push(Attribute::ExtmapAllowMixed);
        }
        let mut streams: Vec<String> = Vec::new();
        for t in &self.transceivers {
            if let Some(s) = &t.sender {
                if !streams.contains(&s.stream_id) {
                    streams.push(s.stream_id.clone());
                }
            }
        }
        attributes.push(Attribute::MsidSemantic(MsidSemantic {
            leading_space: true,
            semantic: "WMS".into(),
            identifiers: streams,
        }));
        SessionDescription {
            version: 0,
            origin,
            session_name: "-".into(),
            information: None,
            uri: None,
            emails: Vec::new(),
            phones: Vec::new(),
            connection: None,
            bandwidths: Vec::new(),
            timings: vec![Timing::default()],
            key: None,
            attributes,
            media,
        }
    }
}

fn new_section(om: &MediaDescription, mid: String) -> Section {
    Section {
        mid,
        media: om.media.clone(),
        protocol: om.protocol.clone(),
        formats: om.formats.clone(),
        owner: Owner::Nobody,
        rejection_negotiated: false,
        codecs: Vec::new(),
    }
}

/// A rejected m-line in an offer: port 0, the mid kept (JSEP §5.2.2).
fn rejected_section(s: &Section) -> MediaDescription {
    MediaDescription {
        media: s.media.clone(),
        port: 0,
        port_count: None,
        protocol: s.protocol.clone(),
        formats: if s.formats.is_empty() {
            vec!["0".into()]
        } else {
            s.formats.clone()
        },
        title: None,
        connections: vec![Connection::unspecified()],
        bandwidths: Vec::new(),
        key: None,
        attributes: vec![Attribute::Mid(s.mid.clone())],
    }
}

/// A rejected m-line in an answer (RFC 3264 §6: port 0, same media and
/// formats; JSEP §5.3.1 keeps the mid).
fn rejected_answer(om: &MediaDescription) -> MediaDescription {
    let mut attributes = Vec::new();
    if let Some(mid) = om.mid() {
        attributes.push(Attribute::Mid(mid.to_string()));
    }
    MediaDescription {
        media: om.media.clone(),
        port: 0,
        port_count: None,
        protocol: om.protocol.clone(),
        formats: om.formats.clone(),
        title: None,
        connections: vec![Connection::unspecified()],
        bandwidths: Vec::new(),
        key: None,
        attributes,
    }
}

/// The `m=` formats of codecs: each payload type, then its RTX.
fn format_list(codecs: &[Codec]) -> Vec<String> {
    codecs
        .iter()
        .flat_map(|c| [Some(c.payload_type), c.rtx_payload_type])
        .flatten()
        .map(|p| p.to_string())
        .collect()
}

/// The codecs we accept from an offered m-line, with the offer's payload
/// types and our fmtp and feedback (RFC 3264 §6.1; RTX by `apt=`, RFC 4588
/// §8.6).
fn answer_codecs(om: &MediaDescription, caps: &MediaCapabilities, kind: MediaKind) -> Vec<Codec> {
    let audio = kind == MediaKind::Audio;
    let mut out: Vec<Codec> = Vec::new();
    let pts = unique_pts(om);
    // `(apt, rtx payload type)` of every offered RTX codec.
    let rtx_of: Vec<(u8, u8)> = pts
        .iter()
        .filter(|r| describe(om, **r).is_some_and(|rd| is_rtx(&rd)))
        .filter_map(|r| apt(om, *r).map(|a| (a, *r)))
        .collect();
    for pt in pts {
        let Some(d) = describe(om, pt) else { continue };
        if is_rtx(&d) {
            continue;
        }
        let found = caps.codecs.iter().find_map(|local| {
            match_codec(d.name, d.clock_rate, d.channels, d.fmtp, audio, local).map(|m| (local, m))
        });
        let Some((local, matched)) = found else {
            continue;
        };
        let offered_fb = feedback_of(om, pt);
        out.push(Codec {
            payload_type: pt,
            name: d.name.to_string(),
            clock_rate: d.clock_rate,
            channels: d.channels,
            fmtp: matched.fmtp,
            feedback: local
                .feedback
                .iter()
                .filter(|f| offered_fb.contains(f))
                .cloned()
                .collect(),
            // Paired below, from the offer's RTX payload types.
            rtx_payload_type: None,
        });
        let wants_rtx = local.rtx_payload_type.is_some();
        if wants_rtx {
            let rtx = rtx_of.iter().find(|(a, _)| *a == pt).map(|(_, r)| *r);
            if let Some(c) = out.last_mut() {
                c.rtx_payload_type = rtx;
            }
        }
    }
    out
}

/// The RTP attributes of an m-line, in the order browsers write them.
/// RFC 8853 §5.3 (and JSEP §5.3.1): an offer that sends simulcast
/// (`a=simulcast:send` over `a=rid:… send` lines) is answered with one
/// `a=rid:… recv` per offered rid we take and `a=simulcast:recv` listing
/// them in the offer's order; paused rids (`~`) stay paused. Only when
/// the rid header extension (RFC 8852) was accepted on the m-line: without
/// it the streams could not be told apart. Alternatives (`a,b`) keep their
/// first rid, which RFC 8853 §5.3 lets the answerer choose.
fn answer_simulcast(am: &mut MediaDescription, om: &MediaDescription, extensions: &[Extmap]) {
    if !extensions
        .iter()
        .any(|e| e.uri == crate::sdp::codec::uri::RTP_STREAM_ID)
    {
        return;
    }
    let Some(send) = om.attributes.iter().find_map(|a| match a {
        Attribute::Simulcast(s) => s
            .streams
            .iter()
            .find(|(d, _)| *d == RidDirection::Send)
            .map(|(_, l)| l),
        _ => None,
    }) else {
        return;
    };
    let offered: Vec<&Rid> = om
        .attributes
        .iter()
        .filter_map(|a| match a {
            Attribute::Rid(r) if r.direction == RidDirection::Send => Some(r),
            _ => None,
        })
        .collect();
    let mut list = Vec::new();
    for alternatives in send {
        // RFC 8853 §5.3: every rid in the list must have its a=rid line.
        let Some(first) = alternatives
            .iter()
            .find(|id| offered.iter().any(|r| r.id == id.rid))
        else {
            continue;
        };
        if list
            .iter()
            .any(|l: &Vec<SimulcastId>| l[0].rid == first.rid)
        {
            continue;
        }
        list.push(vec![first.clone()]);
    }
    if list.len() < 2 {
        return;
    }
    for l in &list {
        am.attributes.push(Attribute::Rid(Rid {
            id: l[0].rid.clone(),
            direction: RidDirection::Recv,
            restrictions: None,
        }));
    }
    am.attributes.push(Attribute::Simulcast(Simulcast {
        streams: vec![(RidDirection::Recv, list)],
    }));
}

/// RFC 8853 §5.1: an offer that sends simulcast lists each layer as
/// `a=rid:<id> send` (RFC 8851 §4) and the layers, lowest first, in
/// `a=simulcast:send`; only with the rid header extension offered (RFC
/// 8852), since the answerer tells the layers apart by it. The a=ssrc
/// lines stay those of the first layer, which is what a peer that does
/// not take simulcast receives.
fn offer_simulcast(m: &mut MediaDescription, sender: &LocalSender, extensions: &[Extmap]) {
    let has_rid = extensions
        .iter()
        .any(|e| e.uri == crate::sdp::codec::uri::RTP_STREAM_ID);
    if sender.rids.len() < 2 || !has_rid {
        return;
    }
    simulcast_lines(m, RidDirection::Send, &sender.rids);
}

/// RFC 8853 §5.3: an offer that receives simulcast (`a=simulcast:recv`,
/// an SFU's subsequent offer) is answered by a simulcast track with the
/// layers of ours the offer lists, in the offer's order, as `a=rid:… send`
/// and `a=simulcast:send`: the answerer sends what both named.
fn answer_simulcast_send(
    am: &mut MediaDescription,
    om: &MediaDescription,
    sender: &LocalSender,
    extensions: &[Extmap],
) {
    let has_rid = extensions
        .iter()
        .any(|e| e.uri == crate::sdp::codec::uri::RTP_STREAM_ID);
    if sender.rids.len() < 2 || !has_rid {
        return;
    }
    let wanted = simulcast_list(om, RidDirection::Recv);
    let rids: Vec<String> = wanted
        .into_iter()
        .filter(|r| sender.rids.contains(r))
        .collect();
    if rids.len() > 1 {
        simulcast_lines(am, RidDirection::Send, &rids);
    }
}

/// One `a=rid:<id> <direction>` per layer (RFC 8851 §4) and the
/// `a=simulcast:<direction>` list of them, one stream each (RFC 8853 §5.1).
fn simulcast_lines(m: &mut MediaDescription, direction: RidDirection, rids: &[String]) {
    for rid in rids {
        m.attributes.push(Attribute::Rid(Rid {
            id: rid.clone(),
            direction,
            restrictions: None,
        }));
    }
    let list = rids
        .iter()
        .map(|rid| {
            vec![SimulcastId {
                rid: rid.clone(),
                paused: false,
            }]
        })
        .collect();
    m.attributes.push(Attribute::Simulcast(Simulcast {
        streams: vec![(direction, list)],
    }));
}

fn rtp_attributes(
    m: &mut MediaDescription,
    extensions: &[Extmap],
    direction: Direction,
    sender: Option<&LocalSender>,
    codecs: &[Codec],
    rtcp_rsize: bool,
) {
    let a = &mut m.attributes;
    a.extend(extensions.iter().cloned().map(Attribute::Extmap));
    a.push(Attribute::Direction(direction));
    let sender = sender.filter(|_| direction.sends());
    if let Some(s) = sender {
        a.push(Attribute::Msid(Msid {
            stream: s.stream_id.clone(),
            track: Some(s.track_id.clone()),
        }));
    }
    a.push(Attribute::RtcpMux);
    if rtcp_rsize {
        a.push(Attribute::RtcpRsize);
    }
    let mut has_rtx = false;
    for c in codecs {
        a.push(Attribute::RtpMap(RtpMap {
            payload_type: c.payload_type,
            encoding: c.name.clone(),
            clock_rate: c.clock_rate,
            channels: c.channels,
        }));
        for f in &c.feedback {
            a.push(Attribute::RtcpFb(RtcpFb {
                payload_type: Some(c.payload_type),
                kind: f.kind.clone(),
                param: f.param.clone(),
            }));
        }
        if let Some(p) = &c.fmtp {
            a.push(Attribute::Fmtp(Fmtp {
                payload_type: c.payload_type,
                params: p.clone(),
            }));
        }
        if let Some(r) = c.rtx_payload_type {
            has_rtx = true;
            a.push(Attribute::RtpMap(RtpMap {
                payload_type: r,
                encoding: "rtx".into(),
                clock_rate: c.clock_rate,
                channels: None,
            }));
            a.push(Attribute::Fmtp(Fmtp {
                payload_type: r,
                params: format!("apt={}", c.payload_type),
            }));
        }
    }
    if let Some(s) = sender {
        let mut ssrcs = vec![s.ssrc];
        if let Some(r) = s.rtx_ssrc.filter(|_| has_rtx) {
            a.push(Attribute::SsrcGroup(SsrcGroup {
                semantics: "FID".into(),
                ssrcs: vec![s.ssrc, r],
            }));
            ssrcs.push(r);
        }
        for ssrc in ssrcs {
            a.push(Attribute::Ssrc(SsrcAttribute {
                ssrc,
                name: "cname".into(),
                value: Some(s.cname.clone()),
            }));
            a.push(Attribute::Ssrc(SsrcAttribute {
                ssrc,
                name: "msid".into(),
                value: Some(format!("{} {}", s.stream_id, s.track_id)),
            }));
        }
    }
}
