//! # rtclab — a WebRTC stack written from scratch, to learn from and to use
//!
//! rtclab implements the protocols under `RTCPeerConnection` by hand, one module
//! per layer, and proves them against real peers (coturn, OpenSSL, Chromium). The
//! tutorial in `chapters/` walks through them in the order of Google's codelab
//! "Real time communication with WebRTC".
//!
//! ## The layers
//!
//! ```text
//!   peer::PeerConnection          JSEP-like API, ties the layers to one 5-tuple
//!     ├─ sdp                      offer/answer text
//!     ├─ datachannel → sctp       DCEP; SCTP association over DTLS
//!     ├─ rtp → srtp               RTP/RTCP, packetizers; SRTP keyed by DTLS
//!     ├─ dtls                     DTLS 1.2 handshake and records
//!     └─ ice → stun (turn)        candidates, connectivity checks
//!
//!   one UDP 5-tuple carries everything; the first byte picks the layer
//!   (RFC 7983): 0..=3 STUN · 20..=63 DTLS · 128..=191 RTP/RTCP
//! ```
//!
//! Modules present today: [`stun`] (RFC 8489, 5769, 5780), [`turn`] (RFC 8656
//! client and server), [`ice`] (RFC 8445, 8838, 7675), [`dtls`] (RFC 6347,
//! 5246, 5705, 5764, 7627), [`srtp`] (RFC 3711, 7714), [`rtp`] (RFC 3550,
//! 8285, 4585, 7741, 6184, 7587), [`sctp`] (RFC 9260, 8261, 3758, 6525),
//! [`datachannel`] (DCEP and the channel manager, RFC 8831, 8832), [`sdp`]
//! (RFC 8866, and offer/answer per RFC 3264, 8829, 8843, 8842), [`peer`] (the
//! PeerConnection, and the transport under it: ICE, DTLS and SRTP on one
//! 5-tuple),
//! [`signaling`] (the WebSocket rooms server of codelab step 7), [`sfu`] (the
//! selective forwarding unit of chapter 10: many to many through one UDP
//! port, simulcast, repair and instant join), [`sim`] (the
//! deterministic network), [`runtime`] (tokio over real UDP), [`machine`] (the
//! shared sans-IO contract) and [`speed`] (the benchmarks behind `rtclab
//! speed`).
//!
//! ## Where things go: the tiers
//!
//! Who may import whom (DESIGN §1; `tests/layering.rs` reads every
//! `crate::` path in `src/` and fails on an edge this map does not allow):
//!
//! ```text
//!  drivers    runtime (the only sockets, clock, OS randomness; LivePeer,
//!             the OS's interfaces) · capture · sim · speed · fuzzing
//!                 ▲ may import everything below (and one another)
//!  app        demo · signaling · sfu · whip   (the demo's and the
//!             SFU's servers also use runtime and capture: they run peers
//!             on sockets and record them)
//!                 ▲
//!  peer       PeerConnection, its transport, PeerSet
//!                 ▲
//!  protocol   stun ← turn ← ice · dtls · srtp ← rtp · sctp ← datachannel ·
//!             sdp   (sans-IO; sideways only down the tree above)
//!                 ▲
//!  leaf       machine (the sans-IO contract) · vocab (DtlsRole,
//!             Fingerprint, Candidate, Mid, MediaKind, the codec registry)
//! ```
//!
//! A new feature goes:
//!
//! - a protocol rule, message or state: into its layer's module, sans-IO,
//!   with the RFC section in its doc comment and a test beside it;
//! - a type two protocols both speak (SDP and DTLS, SDP and ICE): into
//!   [`vocab`], which imports nothing from the crate, never one protocol
//!   importing its sibling;
//! - gluing layers on one 5-tuple: into [`peer`];
//! - something a user runs: into the app tier, with a subcommand in
//!   `src/bin/rtclab/`;
//! - sockets, threads, the clock, getifaddrs: into [`runtime`];
//! - a benchmark: `src/speed/` (one file per layer); a fuzz harness:
//!   [`fuzzing`]; a simulator adapter: [`sim`]; never inside a protocol
//!   module.
//!
//! Time and randomness come in from the caller: `now: Instant` on every
//! input, and one rule for randomness. **A state machine that draws
//! randomness over its life owns an `StdRng` its caller passes in by value**
//! (so a test seeds it: `dtls::endpoint::Endpoint::client(config, peer, rng,
//! now)`, `ice::Agent::new`, `sctp::Association`, `turn::Server::new`,
//! `Sfu::new`); **a function that draws once takes `&mut (impl Rng +
//! ?Sized)`** (`stun::TransactionId::random`, `ice::Credentials::random`,
//! `Certificate::generate`, a packetizer's first picture id). Only code
//! that owns the I/O (the runtime, the app tier's servers, the binaries)
//! seeds from the OS (`StdRng::from_os_rng()`); `tests/layering.rs` refuses
//! OS randomness in the sans-IO tiers (ring's key generation and signing,
//! which take no other source, are the one exception). A `u64`
//! seed for a whole scenario (the simulator's `Sim::new(seed)`, the fuzz
//! harnesses', a synthetic clip's content) is not a machine's RNG: the
//! scenario derives its machines' `StdRng`s from it.

//! ## The sans-IO contract
//!
//! Every state machine is a plain struct driven through the [`machine::Machine`]
//! trait: `handle_receive(now, datagram)`, `handle_timeout(now)` and API calls go
//! in; `poll_transmit()`, `poll_event()` and `poll_timeout()` come out. No
//! sockets, clocks, threads or global randomness below [`runtime`]; events are
//! enum values; state changes through `&mut self`.
//!
//! ## The run loop
//!
//! Driving a machine over a real socket is a few lines (this is what
//! [`runtime::Driver`] does):
//!
//! ```text
//! loop {
//!     while let Some(t) = machine.poll_transmit() { socket.send_to(&t.contents, t.destination) }
//!     while let Some(e) = machine.poll_event()    { application(e) }
//!     select! {
//!         (len, from) = socket.recv_from(&mut buf) => machine.handle_receive(now(), Receive { .. }),
//!         _ = sleep_until(machine.poll_timeout())  => machine.handle_timeout(now()),
//!     }
//! }
//! ```
//!
//! ## Chapters
//!
//! One or two chapters per step of the codelab, each with the step's page
//! in `web/`: 1. Introduction · 2. Overview: the crate tour · 3. Get the
//! code, and your first packets: STUN · 4. Media as RTP · 5. Two peers ·
//! 6. Data channels · 7. Signaling · 8a. NATs, ICE and TURN · 8b. A browser
//! calls Rust · 9. Big messages · 10. Congratulations: many to many, and
//! what next. Build the book with `mdbook build chapters`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bus;
pub mod capture;
pub mod datachannel;
pub mod demo;
pub mod dtls;
#[doc(hidden)]
pub mod fuzzing;
pub mod ice;
pub mod machine;
pub mod peer;
pub mod rtp;
pub mod runtime;
pub mod sctp;
pub mod sdp;
pub mod sfu;
pub mod signaling;
pub mod sim;
pub mod speed;
pub mod srtp;
pub mod stun;
pub mod turn;
pub mod vocab;
pub mod whip;
