//! [`negotiate`]: what an offer/answer pair agreed, read from our side.

use super::section::*;
use super::types::*;
use crate::sdp::attribute::*;
use crate::sdp::description::{MediaDescription, SessionDescription};

/// Reads what an offer/answer pair agreed, from our side: `local` is the
/// description we sent, `remote` the one we received, and
/// `local_is_offerer` says which was the offer.
///
/// Checks the rules the answer must follow (RFC 3264 §6: same m-lines, a
/// subset of the offered payload types; RFC 8842 §5: setup roles; RTCP mux
/// and BUNDLE, which rtclab requires).
pub fn negotiate(
    local: &SessionDescription,
    remote: &SessionDescription,
    local_is_offerer: bool,
) -> Result<Negotiated, NegotiationError> {
    let (offer, answer) = if local_is_offerer {
        (local, remote)
    } else {
        (remote, local)
    };
    if offer.media.len() != answer.media.len() {
        return Err(NegotiationError::MediaCount {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    let bundle: Vec<String> = answer
        .bundle_group()
        .map(|g| g.mids.clone())
        .unwrap_or_default();
    let mut media = Vec::new();
    let mut accepted = Vec::new();
    let mut dtls_role = None;
    let mut remote_transport: Option<(usize, Transport<'_>)> = None;
    for (index, (om, am)) in offer.media.iter().zip(&answer.media).enumerate() {
        if om.media != am.media {
            return Err(NegotiationError::Mismatch {
                index,
                what: "media kind",
            });
        }
        let rejected = om.is_rejected() || am.is_rejected();
        let (lm, rm, lsd, rsd) = if local_is_offerer {
            (om, am, offer, answer)
        } else {
            (am, om, answer, offer)
        };
        let mut n = NegotiatedMedia {
            index,
            mid: am.mid().or(om.mid()).map(str::to_string),
            kind: MediaKind::parse(&om.media),
            rejected,
            direction: Direction::Inactive,
            codecs: Vec::new(),
            extensions: Vec::new(),
            remote_ssrcs: Vec::new(),
            remote_rtx_ssrcs: Vec::new(),
            remote_cname: None,
            remote_msid: None,
            remote_rids: Vec::new(),
            remote_simulcast: None,
            receive_rids: Vec::new(),
            send_rids: Vec::new(),
            rtcp_rsize: false,
            sctp: None,
        };
        if rejected {
            media.push(n);
            continue;
        }
        if n.mid.is_none() {
            return Err(NegotiationError::Mid { index });
        }
        accepted.push(index);
        // Transport: the answer's setup decides the DTLS roles.
        let ot = transport_of(offer, om);
        let at = transport_of(answer, am);
        for (t, sd_index) in [(&ot, index), (&at, index)] {
            if t.ufrag.is_none() || t.pwd.is_none() {
                return Err(NegotiationError::MissingIceCredentials { index: sd_index });
            }
            if t.fingerprints.is_empty() {
                return Err(NegotiationError::MissingFingerprint { index: sd_index });
            }
        }
        // RFC 8843 §7.1.3, §7.3.1: in a BUNDLE group `a=setup` (a
        // TRANSPORT-category attribute) belongs to the tagged m-line; what
        // the other bundled m-lines say is ignored. (Firefox answers an
        // m-line added by a subsequent offer with `setup:active` while the
        // tagged one keeps `setup:passive`, its real role.)
        let bundled = n.mid.as_ref().is_some_and(|m| bundle.contains(m));
        if !(bundled && dtls_role.is_some()) {
            // RFC 8842 §5.2/§5.3: actpass offers take active or passive; an
            // active offer needs a passive answer and vice versa.
            let answerer_is_client = match (ot.setup, at.setup) {
                (Some(Setup::ActPass) | None, Some(Setup::Active)) => true,
                (Some(Setup::ActPass) | None, Some(Setup::Passive)) => false,
                (Some(Setup::Active), Some(Setup::Passive)) => false,
                (Some(Setup::Passive), Some(Setup::Active)) => true,
                (o, a) => {
                    return Err(NegotiationError::Setup {
                        offer: o,
                        answer: a,
                    });
                }
            };
            let role = if answerer_is_client != local_is_offerer {
                DtlsRole::Client
            } else {
                DtlsRole::Server
            };
            if dtls_role.is_some_and(|r| r != role) {
                return Err(NegotiationError::Setup {
                    offer: ot.setup,
                    answer: at.setup,
                });
            }
            dtls_role = Some(role);
        }
        if remote_transport.is_none() || bundle.first().map(String::as_str) == n.mid.as_deref() {
            let rt = if local_is_offerer { at } else { ot };
            remote_transport = Some((index, rt));
        }
        // Directions: ours, intersected with the reverse of theirs.
        n.direction = direction_of(lsd, lm).intersect(direction_of(rsd, rm).reverse());
        if is_data_channel(om) {
            n.sctp = Some(SctpParams {
                local_port: lm.sctp_port().unwrap_or(5000),
                remote_port: rm.sctp_port().unwrap_or(5000),
                remote_max_message_size: rm.max_message_size().unwrap_or(65536),
            });
            n.direction = Direction::SendRecv;
        } else if is_rtp(om) {
            if !am.has(&Attribute::RtcpMux) {
                return Err(NegotiationError::RtcpMuxRequired { index });
            }
            n.rtcp_rsize = om.has(&Attribute::RtcpRsize) && am.has(&Attribute::RtcpRsize);
            n.codecs = agreed_codecs(index, om, am, lm, rm)?;
            for e in am.extmaps() {
                if om.extmaps().any(|o| o.uri == e.uri && o.id == e.id) {
                    n.extensions.push((e.id, e.uri.clone()));
                }
            }
            read_remote_sources(rm, &mut n);
            n.receive_rids = simulcast_receive(lm, rm);
            n.send_rids = simulcast_agreed(lm, RidDirection::Send, rm, RidDirection::Recv);
        }
        media.push(n);
    }
    if accepted.len() > 1 {
        let all_bundled = accepted.iter().all(|i| {
            answer.media[*i]
                .mid()
                .is_some_and(|mid| bundle.iter().any(|b| b == mid))
        });
        if !all_bundled {
            return Err(NegotiationError::BundleRequired);
        }
    }
    let (rindex, rt) = remote_transport.ok_or(NegotiationError::Misuse(
        "every m-line is rejected: nothing to connect",
    ))?;
    let rm = &remote.media[rindex];
    Ok(Negotiated {
        media,
        bundle,
        dtls_role: dtls_role.unwrap_or(DtlsRole::Client),
        remote_ice_ufrag: rt.ufrag.unwrap_or_default().to_string(),
        remote_ice_pwd: rt.pwd.unwrap_or_default().to_string(),
        remote_ice_lite: remote.has(&Attribute::IceLite),
        remote_candidates: rm.candidates().cloned().collect(),
        remote_end_of_candidates: rm.has(&Attribute::EndOfCandidates),
        remote_fingerprints: rt.fingerprints,
    })
}

/// The codecs of an answer that the offer had, with RTX attached.
fn agreed_codecs(
    index: usize,
    om: &MediaDescription,
    am: &MediaDescription,
    lm: &MediaDescription,
    rm: &MediaDescription,
) -> Result<Vec<NegotiatedCodec>, NegotiationError> {
    let offered = unique_pts(om);
    let mut codecs = Vec::new();
    let mut rtx = Vec::new();
    for pt in unique_pts(am) {
        if !offered.contains(&pt) {
            return Err(NegotiationError::CodecNotOffered {
                index,
                payload_type: pt,
            });
        }
        let (Some(d), Some(_)) = (describe(om, pt), describe(am, pt)) else {
            continue;
        };
        if is_rtx(&d) {
            if let (Some(a), Some(b)) = (apt(om, pt), apt(am, pt)) {
                if a == b {
                    rtx.push((a, pt));
                }
            }
            continue;
        }
        let of = feedback_of(om, pt);
        codecs.push(NegotiatedCodec {
            payload_type: pt,
            name: d.name.to_string(),
            clock_rate: d.clock_rate,
            channels: d.channels,
            remote_fmtp: rm.fmtp(pt).map(|f| f.params.clone()),
            local_fmtp: lm.fmtp(pt).map(|f| f.params.clone()),
            feedback: feedback_of(am, pt)
                .into_iter()
                .filter(|f| of.contains(f))
                .collect(),
            rtx_payload_type: None,
        });
    }
    for (apt, pt) in rtx {
        if let Some(c) = codecs.iter_mut().find(|c| c.payload_type == apt) {
            c.rtx_payload_type = Some(pt);
        }
    }
    Ok(codecs)
}

/// The rids both our `a=simulcast:recv` and the remote's
/// `a=simulcast:send` list (RFC 8853 §5.1), in our order.
fn simulcast_receive(lm: &MediaDescription, rm: &MediaDescription) -> Vec<String> {
    simulcast_agreed(lm, RidDirection::Recv, rm, RidDirection::Send)
}

/// The rids our `a=simulcast:{ours}` and the remote's
/// `a=simulcast:{theirs}` both list, in our order (RFC 8853 §5.2: the
/// answer lists what the answerer takes; what it left out is not sent).
fn simulcast_agreed(
    lm: &MediaDescription,
    ours: RidDirection,
    rm: &MediaDescription,
    theirs: RidDirection,
) -> Vec<String> {
    let other = simulcast_list(rm, theirs);
    let mut rids = simulcast_list(lm, ours);
    rids.retain(|r| other.contains(r));
    rids
}

fn read_remote_sources(rm: &MediaDescription, n: &mut NegotiatedMedia) {
    for g in rm.ssrc_groups() {
        if g.semantics == "FID" && g.ssrcs.len() == 2 {
            n.remote_rtx_ssrcs.push((g.ssrcs[0], g.ssrcs[1]));
        }
    }
    for s in rm.ssrc_attributes() {
        let is_rtx = n.remote_rtx_ssrcs.iter().any(|(_, r)| *r == s.ssrc);
        if !is_rtx && !n.remote_ssrcs.contains(&s.ssrc) {
            n.remote_ssrcs.push(s.ssrc);
        }
        if s.name == "cname" && n.remote_cname.is_none() {
            n.remote_cname = s.value.clone();
        }
    }
    n.remote_msid = rm.find(|a| match a {
        Attribute::Msid(m) => Some(m.clone()),
        _ => None,
    });
    n.remote_rids = rm
        .attributes
        .iter()
        .filter_map(|a| match a {
            Attribute::Rid(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    n.remote_simulcast = rm.find(|a| match a {
        Attribute::Simulcast(s) => Some(s.clone()),
        _ => None,
    });
}

// ---------------------------------------------------------------------------
// The session: offers, answers and renegotiation.
