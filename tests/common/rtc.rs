//! A Rust `PeerConnection` for the browser tests: bound to a real UDP
//! socket on 127.0.0.1, driven by `runtime::Driver`, and signaled through
//! the test's own `signaling::Server` as an in-process room member. The
//! page on the other side speaks the same messages (the `data` of a room
//! `message`):
//!
//! ```text
//! {"type":"offer"|"answer","sdp":"v=0…"}
//! {"type":"candidate","candidate":"candidate:…","sdpMid":"0","sdpMLineIndex":0}
//! {"type":"end-of-candidates"}
//! ```
//!
//! [`RtcPeer::next`] does the signaling by itself (answers an offer, offers
//! when the room is ready if [`RtcPeer::offer_when_ready`], trickles
//! candidates both ways) and hands the test every other `peer::Event`.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rtclab::dtls::cert::Certificate;
use rtclab::peer::{self, PeerConnection, SdpType};
use rtclab::runtime::Driver;
use rtclab::signaling::{ClientId, ClientMessage, Handle, Member, ServerMessage};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

/// The Rust side of a browser test.
pub struct RtcPeer {
    /// The PeerConnection and its socket.
    pub driver: Driver<PeerConnection>,
    member: Member,
    remote: Option<ClientId>,
    /// Make the offer when the room is ready (else wait for the page's).
    pub offer_when_ready: bool,
    /// Everything signaled, both ways, with times (printed on failure).
    pub trace: Vec<String>,
    started: Instant,
}

impl RtcPeer {
    /// A PeerConnection on a fresh 127.0.0.1 socket, `configure`d by the
    /// caller, joined to `room` on the server behind `handle`.
    pub async fn join(
        handle: &Handle,
        room: &str,
        seed: u64,
        configure: impl FnOnce(&mut peer::Config),
    ) -> RtcPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let addr: SocketAddr = socket.local_addr().expect("local addr");
        let mut rng = StdRng::seed_from_u64(seed);
        let cert = Certificate::generate(&mut rng, SystemTime::now()).expect("certificate");
        let mut config = peer::Config::new(cert, vec![addr]);
        configure(&mut config);
        let pc = PeerConnection::new(config, StdRng::seed_from_u64(seed + 1));
        let driver = Driver::from_sockets(pc, vec![socket]).expect("driver");
        let member = handle.member().expect("a signaling member");
        member.send(ClientMessage::CreateOrJoin { room: room.into() });
        RtcPeer {
            driver,
            member,
            remote: None,
            offer_when_ready: false,
            trace: Vec::new(),
            started: Instant::now(),
        }
    }

    /// The PeerConnection.
    pub fn pc(&mut self) -> &mut PeerConnection {
        self.driver.machine_mut()
    }

    fn note(&mut self, what: String) {
        let ms = self.started.elapsed().as_millis();
        self.trace.push(format!("{ms:>6} ms  {what}"));
    }

    fn signal(&mut self, data: Value) {
        let short: String = data.to_string().chars().take(120).collect();
        self.note(format!("→ {short}"));
        self.member.send(ClientMessage::Message {
            to: self.remote,
            data: data.into(),
        });
    }

    /// The next event the test should see; signaling and candidates are
    /// handled here. An error is a signaling or SDP failure (fatal).
    pub async fn next(&mut self) -> Result<peer::Event, String> {
        loop {
            tokio::select! {
                e = self.driver.next_event() => {
                    let e = e.map_err(|e| format!("socket: {e}"))?;
                    match e {
                        peer::Event::LocalCandidate(c) => {
                            let line = format!("candidate:{}", c.to_string().trim_start_matches("candidate:"));
                            self.signal(json!({"type": "candidate", "candidate": line,
                                "sdpMid": "0", "sdpMLineIndex": 0}));
                        }
                        peer::Event::GatheringComplete => {
                            self.signal(json!({"type": "end-of-candidates"}));
                        }
                        e => {
                            if !matches!(e, peer::Event::DataChannel(rtclab::datachannel::Event::Message { .. })) {
                                let short: String = format!("{e:?}").chars().take(160).collect();
                                self.note(format!("event {short}"));
                            }
                            return Ok(e);
                        }
                    }
                }
                m = self.member.recv() => {
                    let m = m.ok_or("the signaling server went away")?;
                    self.on_signal(m)?;
                }
            }
        }
    }

    fn on_signal(&mut self, m: ServerMessage) -> Result<(), String> {
        let now = Instant::now();
        match m {
            ServerMessage::Ready { members, .. } => {
                let me = self.member.id();
                self.remote = members.into_iter().find(|&id| id != me);
                self.note(format!("ready, remote {:?}", self.remote));
                if self.offer_when_ready
                    && self.pc().signaling_state() == rtclab::peer::SignalingState::Stable
                    && self.pc().negotiated().is_none()
                {
                    let offer = self
                        .pc()
                        .create_offer(now)
                        .map_err(|e| format!("create_offer: {e}"))?;
                    self.pc()
                        .set_local_description(now, SdpType::Offer, &offer)
                        .map_err(|e| format!("set_local_description(offer): {e}"))?;
                    self.note(format!("offer:\n{offer}"));
                    self.signal(json!({"type": "offer", "sdp": offer}));
                }
            }
            ServerMessage::Message { from, data } => {
                let data = data.to_value();
                self.remote = Some(from);
                let kind = data["type"].as_str().unwrap_or("").to_string();
                match kind.as_str() {
                    "offer" => {
                        let sdp = data["sdp"].as_str().ok_or("offer without sdp")?;
                        self.note(format!("← offer:\n{sdp}"));
                        self.pc()
                            .set_remote_description(now, SdpType::Offer, sdp)
                            .map_err(|e| format!("set_remote_description(offer): {e}\n{sdp}"))?;
                        let answer = self
                            .pc()
                            .create_answer()
                            .map_err(|e| format!("create_answer: {e}"))?;
                        self.pc()
                            .set_local_description(now, SdpType::Answer, &answer)
                            .map_err(|e| format!("set_local_description(answer): {e}"))?;
                        self.note(format!("answer:\n{answer}"));
                        self.signal(json!({"type": "answer", "sdp": answer}));
                    }
                    "answer" => {
                        let sdp = data["sdp"].as_str().ok_or("answer without sdp")?;
                        self.note(format!("← answer:\n{sdp}"));
                        self.pc()
                            .set_remote_description(now, SdpType::Answer, sdp)
                            .map_err(|e| format!("set_remote_description(answer): {e}\n{sdp}"))?;
                    }
                    "candidate" => {
                        let line = data["candidate"].as_str().unwrap_or("").to_string();
                        self.note(format!("← {line}"));
                        if !line.is_empty()
                            && let Err(e) = self.pc().add_ice_candidate(now, &line)
                        {
                            // A candidate we cannot use is not fatal (a
                            // browser may signal TCP or IPv6 ones).
                            self.note(format!("   refused: {e}"));
                        }
                    }
                    "end-of-candidates" => {
                        self.note("← end-of-candidates".into());
                        self.pc().add_end_of_candidates(now);
                    }
                    other => self.note(format!("← unknown message type {other:?}")),
                }
            }
            other => self.note(format!("← {other:?}")),
        }
        Ok(())
    }

    /// What was signaled and what happened, one line each (for failure
    /// messages), and the state of each layer now.
    pub fn trace_text(&self) -> String {
        let pc = self.driver.machine();
        let mut s = self.trace.join("\n");
        s += &format!(
            "\nnow: connection {:?}, signaling {:?}",
            pc.connection_state(),
            pc.signaling_state()
        );
        if let Some(t) = pc.transport() {
            s += &format!(
                "\ntransport: {:?}, DTLS role {:?}, {:?}",
                t.state(),
                t.dtls_role(),
                t.stats()
            );
            if let Some((l, r)) = t.selected_pair() {
                s += &format!("\nselected pair: {l} → {r}");
            }
        }
        if let Some(d) = pc.data_channels() {
            let a = d.association();
            s += &format!(
                "\nSCTP: {:?}, rto {:?}, cwnd {}, flight {}, buffered {}, receive buffered {}, {:?}",
                a.state(),
                a.rto(),
                a.cwnd(),
                a.flight_size(),
                a.total_buffered(),
                a.receive_buffered(),
                a.stats
            );
            for c in d.channels() {
                s += &format!(
                    "\nchannel {:?} {:?} stream {:?}: {:?}, buffered {}",
                    c.id(),
                    c.label(),
                    c.stream(),
                    c.ready_state(),
                    c.buffered_amount()
                );
            }
        }
        s
    }
}
