//! ICE: Interactive Connectivity Establishment (RFC 8445), with trickle
//! (RFC 8838) and consent freshness (RFC 7675).
//!
//! Two peers behind NATs do not know which of their addresses can reach each
//! other. ICE has each side list its **candidates** (a local socket: *host*;
//! the address a NAT gave it, learned from a STUN server: *server-reflexive*;
//! an address on a TURN relay: *relayed*), exchange them over signaling
//! (trickled one by one as `a=candidate:` lines, see [`Candidate`]), pair
//! them, and try every **pair** with a STUN Binding request — a
//! *connectivity check* — authenticated with the peer's password. A check
//! that gets a response on the same 5-tuple makes its pair *valid*; the
//! **controlling** side then *nominates* one valid pair by checking it again
//! with USE-CANDIDATE, and both sides send their data (DTLS, SRTP) over it.
//!
//! ```text
//!  A (controlling)                                          B (controlled)
//!   │ Binding request  USERNAME=B:A PRIORITY ICE-CONTROLLING     │
//!   │                  MESSAGE-INTEGRITY(B's pwd) FINGERPRINT    │
//!   ├──────────────────────────────────────────────────────────►│ verify, learn
//!   │◄──────────────────────────────────────────────────────────┤ prflx; 200 with
//!   │          Binding success  XOR-MAPPED-ADDRESS (A as B sees)  │ XOR-MAPPED-ADDRESS
//!   │◄──────────────────────────────────────────────────────────┤ triggered check
//!   ├──────────────────────────────────────────────────────────►│ B → A, answered
//!   │  pair valid on both sides                                  │
//!   │ Binding request  … USE-CANDIDATE                           │
//!   ├──────────────────────────────────────────────────────────►│ nominated:
//!   │◄──────────────────────────────────────────────────────────┤ selected
//!   │ selected                     data (DTLS, SRTP) ⇄           │
//!   │ consent check every 5 s ±20%  ⇄  (lost after 30 s silent)  │
//! ```
//!
//! Check list, one component (BUNDLE + rtcp-mux):
//!
//! ```text
//!  pair (local base → remote)        priority            state
//!  10.0.1.2:5000 → 10.0.2.2:5000     9151314442783293438 Frozen → Waiting → InProgress → Failed
//!  10.0.1.2:5000 → 203.0.113.3:57389 7277816997797167103 Waiting → InProgress → Succeeded (nominated)
//! ```
//!
//! ## What is implemented
//!
//! - [`candidate`]: the `candidate:` attribute (RFC 8839 §5.1) parsed and
//!   written byte for byte as browsers do, priorities (RFC 8445 §5.1.2),
//!   foundations (§5.1.1.3).
//! - [`agent::Agent`], a sans-IO [`Machine`](crate::machine::Machine):
//!   host candidates given by the caller, server-reflexive gathering through
//!   [`stun::Client`](crate::stun::Client) (§5.1.1.2), relayed candidates
//!   given by the caller ([`Agent::add_local_relayed`]); pairing and pruning
//!   (§6.1.2.2, §6.1.2.4), pair priority (§6.1.2.3), frozen/waiting and
//!   foundation unfreezing (§6.1.2.6, §6.1.4.2, §7.2.5.3.3), Ta pacing (§14.2,
//!   50 ms) of ordinary and triggered checks, with the first check and the
//!   nominating check sent at once (§8.1.1), checks with USERNAME, PRIORITY, ICE-CONTROLLING/-CONTROLLED,
//!   MESSAGE-INTEGRITY and FINGERPRINT (§7.1, §7.2.4), answering checks
//!   (§7.3: 400 without USERNAME or integrity, 401 for a wrong ufrag or
//!   password, never any state from those), triggered checks (§7.3.1.4),
//!   peer-reflexive candidates from requests (§7.3.1.3) and responses
//!   (§7.2.5.3.1), the symmetric-response rule (§7.2.5.2.1), role conflicts
//!   (§7.3.1.1, §7.2.5.1: 487), regular nomination (§8.1.1), failure
//!   (RFC 8838 §8: all pairs failed after end-of-candidates, or a checking
//!   timeout), trickle (RFC 8838), ICE restart (§9), consent freshness
//!   (RFC 7675 §5.1; it doubles as the §11 keepalive), caps on remote,
//!   peer-reflexive candidates, pairs and transactions.
//! - [`transport::IceTransport`]: the agent with its TURN allocation
//!   (relayed candidates end to end, RFC 8656 §7, §9, §11, §12).
//! - The machine's addresses for host candidates come from the OS
//!   (`getifaddrs`, §5.1.1.1) in the runtime tier
//!   ([`crate::runtime::interfaces`]); the caller binds a socket on each and
//!   passes it to [`Agent::add_local_host`].
//! - Data: [`Agent::send`] sends over the selected pair; datagrams that are
//!   not STUN (RFC 7983) from a remote candidate's address come up as
//!   [`Event::Data`].
//!
//! ## Relayed candidates: the choice made
//!
//! A [`LocalCandidate`] has a `base`. A relayed candidate's base is its
//! relayed address itself (RFC 8445 §5.1.1.2), so every
//! [`Transmit`](crate::machine::Transmit) the agent emits has `source:
//! Some(base)`: when `base` is a relayed address the owner of the TURN
//! client sends the datagram through its allocation instead of a socket, and
//! feeds what arrives through the allocation back with `destination` set to
//! the relayed address. No callback, no new type: the tag is the address.
//!
//! [`IceTransport`] is that owner: an [`Agent`] plus a
//! [`turn::Client`](crate::turn::Client) as one
//! [`Machine`](crate::machine::Machine). It allocates, adds the relayed
//! candidate, asks permissions for remote candidates, binds a channel for
//! a selected relayed pair, and unwraps Data indications and ChannelData
//! back into the agent. Use it instead of a bare [`Agent`] whenever a TURN
//! server is available.
//!
//! ## Left out
//!
//! Aggressive nomination (deprecated), several components (RTCP without mux)
//! and several data streams (one agent per stream), ICE-TCP (RFC 6544; TCP
//! candidates are parsed and kept but not used), mDNS resolution of `.local`
//! candidates, ICE-lite peers' special rules, cancelling an in-progress
//! check on a triggered one (the old transaction keeps running and its
//! response still counts), the `Completed` checklist state, and nominating a
//! better pair after one was selected (so a selected relayed pair stays;
//! before settling for a relay the controlling agent waits
//! [`Config::relay_nomination_delay`] for a direct pair).

pub mod agent;
pub mod candidate;
pub mod transport;

pub use agent::{
    Agent, CandidatePair, Config, ConnectionState, Credentials, Error, Event, FailureReason,
    LocalCandidate, PairState,
};
pub use candidate::{Address, Candidate, CandidateError, CandidateKind};
pub use transport::{IceTransport, RelayStats, RelayStatus, TransportConfig};
