//! The peer: the layers tied together on one 5-tuple. [`PeerConnection`] is
//! the JSEP-like face (SDP offer/answer text, trickle ICE, tracks that take
//! and give encoded frames, data channels, W3C-like states as events), built
//! on its transport core, [`Transport`].
//!
//! ## PeerConnection (JSEP, RFC 8829)
//!
//! ```text
//!   offerer A                                          answerer B
//!   add_track / create_data_channel                    add_track
//!   create_offer(now) ─ set_local_description ── SDP ─► set_remote_description
//!     (ICE controlling, a=setup:actpass)                 create_answer (a=setup:active)
//!   set_remote_description ◄──────────────────── SDP ── set_local_description
//!   Event::LocalCandidate ──── add_ice_candidate ────► (and back: trickle, RFC 8838)
//!   ICE checks ─► DTLS (B is the client) ─► SRTP keys + SCTP INIT from B
//!   Event::ConnectionState(Connected), Event::Track, DataChannel(Open)
//!   send_frame ─► packetizer ─► RTP (+ sdes:mid ext) ─► SRTP ─► Event::Frame
//!   send_text / send_binary ─► DCEP/SCTP ─► DTLS app data ─► DataChannel(Message)
//! ```
//!
//! One [`Transport`] carries every m-line (max-bundle, RFC 8843); incoming
//! RTP goes to a receiver by SSRC (from `a=ssrc`), else by the
//! `urn:ietf:params:rtp-hdrext:sdes:mid` extension (RFC 8843 §9.2), else by
//! a payload type only one m-line uses; the SSRC is then learned. The DTLS
//! role comes from the answer (RFC 8842 §5), the peer's fingerprints from
//! its `a=fingerprint` (a mismatch fails the connection, RFC 8122 §5), SCTP
//! ports and the peer's `max-message-size` from the data m-line (RFC 8841).
//!
//! PLI and FIR on our SSRCs surface as `KeyframeRequested`; [`PeerConnection::request_keyframe`]
//! sends a PLI (receivers also send one when they give up a frame).
//!
//! Video senders keep a history and answer NACKs on their RTX stream
//! (`a=ssrc-group:FID`, RFC 4588); video receivers NACK holes (RFC 4585
//! §6.2.1), rebuild originals from RTX, and give a frame up after
//! a second, asking for a keyframe instead. [`MediaStats`] counts it all.
//!
//! RTCP reports (RFC 3550 §6): while connected, a compound packet goes out
//! every [`Config::rtcp_interval`] (1 s, randomised ×[0.5, 1.5] per
//! §6.3.1): an SR for each track that sent since the last one (report
//! blocks for what we receive in the first), else an RR, then SDES with
//! our CNAME. All SSRCs share the one RTCP stream of the bundled 5-tuple
//! (RFC 8843, RFC 8108); feedback (NACK, PLI) goes alone, reduced-size
//! (RFC 5506). Report blocks that come back give the round-trip time from
//! LSR/DLSR (§6.4.1) and the peer's loss. [`PeerConnection::stats`] returns
//! a small `getStats()` ([`StatsReport`]): inbound-rtp and outbound-rtp per
//! stream, the transport and the data channels.
//!
//! Tracks send any codec of the registry ([`TrackCodec`], which is
//! [`rtp::codec::Codec`](crate::rtp::codec::Codec)): VP8, VP9, AV1, H.264
//! (packetization-mode 1, Annex-B access units) or Opus; receivers
//! depacketize whatever negotiated payload type arrives.
//! [`PeerConnection::remove_track`] takes effect with the next offer/answer
//! (and an RTCP BYE ends the peer's receiver at once,
//! [`Event::TrackEnded`]); [`PeerConnection::remove_data_channels`]
//! closes every channel at once, gracefully, and rejects the m-line in the
//! next offer. Consent loss (RFC 7675) fails the connection and frees it: no
//! timer is left.
//!
//! [`SdpType::Rollback`] cancels a pending offer (JSEP §4.1.10.2); an offer
//! that arrives while ours is pending rolls ours back (glare: the W3C
//! implicit rollback the polite peer relies on). Local ICE credentials can
//! be chosen ([`Config::ice_credentials`]).
//!
//! Not yet in `PeerConnection`: simulcast, congestion control (REMB and
//! transport-cc are negotiated, not acted on), ICE restart through the JSEP
//! API, provisional answers (`pranswer`).
//!
//! A WebRTC connection runs four protocols over one UDP socket pair (BUNDLE
//! and rtcp-mux, RFC 8843 and RFC 5761): ICE finds the path, DTLS
//! authenticates the peer and agrees keys, SRTP protects media with keys
//! the DTLS exporter gives, and SCTP (data channels) rides inside DTLS. The
//! [`Transport`] owns the first three and hands DTLS application data up for
//! SCTP:
//!
//! ```text
//!        application: send_rtp / send_rtcp        send_application_data
//!                     Event::Rtp / Event::Rtcp     Event::ApplicationData
//!   ┌──────────────────────────┬──────────────────────────────────────────┐
//!   │  SRTP contexts (tx, rx)  │   DTLS endpoint (client or server)       │
//!   │  keyed by ───────────────┤── exporter "EXTRACTOR-dtls_srtp"         │
//!   │  (RFC 5764 §4.2)         │   peer certificate checked against the   │
//!   │                          │   signaled fingerprint (RFC 8122 §5)     │
//!   ├──────────────────────────┴──────────────────────────────────────────┤
//!   │  demultiplexer: first byte of each datagram (RFC 7983 §7)          │
//!   ├─────────────────────────────────────────────────────────────────────┤
//!   │  ICE agent: checks, nomination, consent; sends everything over     │
//!   │  the selected pair                                                  │
//!   └─────────────────────────────────────────────────────────────────────┘
//!                               one UDP 5-tuple
//! ```
//!
//! ## Demultiplexing (RFC 7983 §7, RFC 5761 §4)
//!
//! | first byte | second byte | goes to | when it cannot |
//! |---|---|---|---|
//! | 0–3 | — | ICE agent (STUN checks, responses, consent) | the agent answers 400/401 or drops |
//! | 20–63 | — | DTLS endpoint | not a valid pair's address: dropped; from a remote candidate not validated yet, or before the endpoint exists: held (8 datagrams) and read once it may be |
//! | 128–191 | 192–223 | SRTCP unprotect → [`Event::Rtcp`] | before keys, not a valid pair's address, bad tag, replay: dropped and counted |
//! | 128–191 | other | SRTP unprotect → [`Event::Rtp`] | as above |
//! | anything else (ZRTP 16–19, TURN channels 64–79, …) | — | dropped, counted in [`Stats::dropped_unknown_kind`] | |
//!
//! ## The sequence
//!
//! 1. ICE checks run as soon as remote credentials and a remote candidate
//!    are known; the controlling side nominates.
//! 2. As soon as ICE has a valid pair (RFC 8445 §12.1: data may use one
//!    before a pair is selected), the DTLS client sends its ClientHello
//!    over it; the server endpoint exists from the moment our DTLS role and
//!    the peer's fingerprint are known, and answers over the same path.
//!    When a pair is selected, DTLS follows it. DTLS and SRTP are read only
//!    from the remote address of a *valid* pair, one our own check reached
//!    and got an authenticated answer from (RFC 8445 §7.2.5.2.1): a check
//!    received proves nothing, since MESSAGE-INTEGRITY does not cover the
//!    source and a captured check can be replayed from anywhere. DTLS from
//!    a remote candidate not validated yet, or from before the endpoint
//!    exists (the answerer's ClientHello may beat the answer SDP), is held
//!    (8 datagrams at most) and read once it may be; anything else is
//!    dropped and counted. A record never re-aims DTLS: where we send
//!    follows ICE's selected pair only.
//! 3. The peer's certificate must hash to a signaled fingerprint: with one
//!    fingerprint (the usual case) the endpoint checks it inside the
//!    handshake and aborts with a `bad_certificate` alert; with several, the
//!    transport checks after the handshake. Either way a mismatch is
//!    [`Error::FingerprintMismatch`] naming expected and actual, and no SRTP
//!    key is ever derived.
//! 4. SRTP keys from the exporter, split by DTLS role (RFC 5764 §4.2);
//!    [`Event::Connected`] reports the profile, role and selected pair.
//! 5. Consent freshness (RFC 7675) keeps running; its loss fails the
//!    transport, which then drops the agent, the endpoint and the keys:
//!    `poll_timeout()` is `None` from then on.
//!
//! [`Transport::accepts`] lets one socket host many transports (an SFU):
//! STUN requests by the ufrag in USERNAME, everything else by a known
//! remote address.
//!
//! ## Media on [`PeerConnection`]
//!
//! Each track of ours is an [`rtp::stream::SendStream`](crate::rtp::stream::SendStream)
//! and each m-line the peer sends on an
//! [`rtp::stream::ReceiveStream`](crate::rtp::stream::ReceiveStream): the
//! same parts chapter 4's `rtp::session` machines are made of. A track
//! sends frames ([`PeerConnection::send_frame`]) or, in RTP mode, packets
//! ([`PeerConnection::send_rtp`]); a receiver gives frames
//! ([`Event::Frame`]) or, in RTP mode
//! ([`PeerConnection::set_rtp_mode`]), packets ([`Event::Rtp`]), whose
//! header extensions carry the ids of [`RTP_MODE_EXTENSIONS`] so that a
//! packet received on one connection can be sent on another unchanged.
//! An RTCP BYE from the peer ends its track; a REMB becomes
//! [`Event::Remb`].
//!
//! ## Left out (for now)
//!
//! ICE restart; TURN over TCP or TLS to the server (the TURN client speaks
//! UDP); resolving names in `ice_servers` (give IP addresses).
//!
//! ## ICE servers
//!
//! [`Config::ice_servers`] takes STUN and TURN URLs as the W3C
//! `iceServers` does; a TURN server gives a relayed candidate through the
//! ICE transport's TURN client, and datagrams of a relayed pair go out as
//! Send indications or ChannelData. With
//! [`Config::ice_transport_policy`] `Relay`, only the relayed candidate
//! is signaled and used.

mod connection;
mod demux;
pub mod ice_servers;
pub mod set;
mod stats;
pub mod transport;

pub use connection::{
    Config, Error, Event, HANDSHAKE_RTO, MediaStats, PeerConnection, PeerConnectionState,
    RTP_MODE_DEPENDENCY_DESCRIPTOR, RTP_MODE_EXTENSIONS, Renumber, SdpType, SignalingState,
    TrackCodec, TrackId,
};
pub use ice_servers::{IceServer, IceTransportPolicy};
pub use set::{PeerKey, PeerSet};
pub use stats::{DataChannelStats, InboundRtpStats, OutboundRtpStats, StatsReport, TransportStats};

pub use demux::{PacketKind, classify};
pub use transport::{
    Connected, DtlsRole, ICE_CHECK_RTO, IceRole, Plaintext, State, Stats, Transport,
    verify_fingerprint,
};
